// CudaHook: where an op's cuda path plugs in.
//
// An op header declares the hook for its cuda kernels next to its CPU kernel call, and calls it
// when its tensors are on a cuda device:
//
//   // tensor/reduce.hpp
//   inline detail::CudaHook<void(const Tensor& out, const Tensor& x, uint32_t mask, double scale)>
//       cuda_sum_hook{"sum"};
//   ...
//   if (x.device().is_cuda()) cuda_sum_hook(out, x, mask, scale); else cpu::reduce_kernel<T>(...);
//
// The implementation lives in include/strata/backend/cuda/<family>.hpp, which launches the
// kernels of kernels/cuda/<family>.cuh (or calls cuBLASLt/cuDNN) and fills the hook at static
// initialization:
//
//   inline const bool sum_registered = (cuda_sum_hook.fn = &cuda_sum_impl, true);
//
// Including <strata/backend/cuda.hpp> fills every hook. Why a hook and not a direct call: the CPU
// build stays free of kernel templates it never launches (compile time), and a cuda op that has
// no kernel yet fails with an Error that names it instead of a link error. The hook is a constant-
// initialized aggregate, so it is valid before any dynamic initializer runs.
#pragma once

#include <utility>

#include "strata/core/error.hpp"

namespace strata::detail {

template <class Sig>
struct CudaHook;

/// A function pointer with the op's name; calling it unfilled throws an Error naming the op.
template <class R, class... Args>
struct CudaHook<R(Args...)> {
  const char* op;
  R (*fn)(Args...) = nullptr;

  R operator()(Args... args) const {
    STRATA_CHECK(fn != nullptr, op, "got tensors on a cuda device, expected a registered cuda kernel for it: "
                 "include <strata/backend/cuda.hpp> (the emulator with g++, a GPU with STRATA_CUDA)");
    return fn(std::forward<Args>(args)...);
  }
};

}  // namespace strata::detail
