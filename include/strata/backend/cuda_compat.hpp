// What a CUDA kernel source (kernels/cuda/*.cuh, tests/*.cuh) includes first.
//
// Under nvcc (__CUDACC__) it is plain CUDA: the CUDA runtime, cuda_fp16.h and cuda_bf16.h.
// Under any other compiler it is the emulator (backend/emu/emu.hpp) and STRATA_CUDA_EMULATE is
// defined, so the same source runs on the CPU. Either way it provides
//   STRATA_DYNAMIC_SHARED(T, name);   // T* name: the block's dynamic shared memory (16-byte aligned),
//                                     // sized by launch's shared_bytes argument
// Conventions for kernel sources, so they compile under both: a kernel in a header is a template
// or `static __global__` (nvcc ignores `inline` on a kernel, with a warning), a device helper is
// `__device__ inline` or `__forceinline__`, or a template; no `<<<>>>` (strata::cuda::launch);
// static shared memory as `__shared__ T name[N];` inside the kernel; only the CUDA built-ins and
// intrinsics the emulator provides (see emu/*.hpp).
#pragma once

#if defined(__CUDACC__)

#if defined(STRATA_CUDA_EMULATE)
#error "STRATA_CUDA_EMULATE is for g++/clang builds; nvcc compiles the kernels natively"
#endif
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#define STRATA_DYNAMIC_SHARED(T, name)                                          \
  extern __shared__ __align__(16) unsigned char strata_dynamic_shared_bytes_[]; \
  T* name = reinterpret_cast<T*>(strata_dynamic_shared_bytes_)

#else

#if defined(STRATA_CUDA) && !defined(STRATA_CUDA_EMULATE)
#error "with STRATA_CUDA on, CUDA kernel sources must be compiled by nvcc (or define STRATA_CUDA_EMULATE)"
#endif
#ifndef STRATA_CUDA_EMULATE
#define STRATA_CUDA_EMULATE 1
#endif
#include "strata/backend/emu/emu.hpp"

#define STRATA_DYNAMIC_SHARED(T, name) \
  T* name = reinterpret_cast<T*>(::strata::emu::detail::dynamic_shared())

#endif
