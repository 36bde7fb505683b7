// The CUDA emulator: runs ordinary CUDA kernel source on the CPU, compiled by g++ or clang.
//
// Kernel sources do not include this file directly: they include backend/cuda_compat.hpp, which
// includes this one (and defines STRATA_CUDA_EMULATE) when the compiler is not nvcc. Kernels are
// launched with strata::cuda::launch (backend/launch.hpp), device memory comes from
// backend/runtime.hpp. What each part provides:
//   dim3.hpp      dim3, uint3
//   fiber.hpp     the fibers each CUDA thread runs on (context switch, stacks, ASan annotations)
//   grid.hpp      run_grid: blocks on the thread pool, fibers scheduled at barriers and warp ops
//   builtins.hpp  keywords, threadIdx/blockIdx/blockDim/gridDim, __syncthreads, warp operations
//   atomics.hpp   atomicAdd/Max/Min/CAS/Exch/... as real atomics
//   math.hpp      __expf __logf rsqrtf __fdividef ..., __half/__nv_bfloat16 conversions, bit ops
// Limits: the static __shared__ size of a kernel is not measured (nvcc checks it at compile time);
// a block runs on one OS thread, so a block's threads never run truly in parallel: a race between
// threads of a block shows only when the schedule order makes a thread read too early (run the
// tests once with STRATA_EMU_SCHEDULE=reverse as well); races between blocks are real.
// Cost (g++ -O1, one core, tests/test_emu.cpp [.emu_bench]): about 15-20 ns per CUDA thread for a
// kernel without barriers; a thread that waits costs a fiber start and 15-25 ns per barrier or
// warp operation it passes.
// Env: STRATA_NUM_THREADS (workers), STRATA_EMU_SCHEDULE=reverse, STRATA_EMU_STACK_KB (fiber stack).
#pragma once

#include "strata/backend/emu/atomics.hpp"
#include "strata/backend/emu/builtins.hpp"
#include "strata/backend/emu/dim3.hpp"
#include "strata/backend/emu/grid.hpp"
#include "strata/backend/emu/math.hpp"

#undef STRATA_EMU_HOT
