// The cuda path of the fused optimizer steps (optim/steppers.hpp's fused_adam and
// fused_sgd_momentum, under adam() and sgd()): kernels/cuda/optim_update.cuh, which reads and
// writes each element of p, g and the state once, with cpu::adam_update's arithmetic. One launch
// per parameter today (the Optimizer steps parameter by parameter); the kernels take a whole list
// (multi-tensor apply), which a group-level step can use later. Included by <strata/backend/cuda.hpp>.
#pragma once

#include <array>

#include "kernels/cuda/optim_update.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/optim/steppers.hpp"

namespace strata::detail {

inline void cuda_adam_impl(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, const cpu::AdamArgs& a) {
  const cuda::DeviceGuard guard(p.device().index);
  cuda::dispatch_device_floating(p.dtype(), "adam_step", [&]<class S>(type_tag<S>) {
    const std::array<cuda::TensorPtrs<S, 4>, 1> t{{{{cuda_ptr<S>(p), cuda_ptr<S>(g), cuda_ptr<S>(m), cuda_ptr<S>(v)}, p.numel()}}};
    cuda::adam_update<S>(std::span<const cuda::TensorPtrs<S, 4>>(t), a);
  });
}

inline void cuda_sgd_momentum_impl(const Tensor& p, const Tensor& g, const Tensor& m, const cpu::SgdArgs& a) {
  const cuda::DeviceGuard guard(p.device().index);
  cuda::dispatch_device_floating(p.dtype(), "momentum_step", [&]<class S>(type_tag<S>) {
    const std::array<cuda::TensorPtrs<S, 3>, 1> t{{{{cuda_ptr<S>(p), cuda_ptr<S>(g), cuda_ptr<S>(m)}, p.numel()}}};
    cuda::sgd_momentum_update<S>(std::span<const cuda::TensorPtrs<S, 3>>(t), a);
  });
}

inline const bool cuda_optim_registered = [] {
  cuda_adam_hook.fn = &cuda_adam_impl;
  cuda_sgd_momentum_hook.fn = &cuda_sgd_momentum_impl;
  return true;
}();

}  // namespace strata::detail
