// The cuda path of the fused optimizer steps (optim/steppers.hpp's fused_adam and
// fused_sgd_momentum, under adam() and sgd()): kernels/cuda/optim_update.cuh, which reads and
// writes each element of p, g and the state once, with cpu::adam_update's arithmetic. The hooks
// take a list of parameters of one device and dtype sharing their scalars (Optimizer::step batches
// its parameters: detail::CudaStepBatch) and run it as one multi-tensor launch (more only when the
// list exceeds a launch's table). Included by <strata/backend/cuda.hpp>.
#pragma once

#include <span>
#include <vector>

#include "kernels/cuda/optim_update.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/optim/steppers.hpp"

namespace strata::detail {

inline void cuda_adam_impl(std::span<const CudaAdamItem> items) {
  if (items.empty()) return;
  const Tensor& p0 = items[0].p;
  const cuda::DeviceGuard guard(p0.device().index);
  cuda::dispatch_device_floating(p0.dtype(), "adam_step", [&]<class S>(type_tag<S>) {
    std::vector<cuda::TensorPtrs<S, 4>> t;
    t.reserve(items.size());
    for (const CudaAdamItem& x : items)
      t.push_back({{cuda_ptr<S>(x.p), cuda_ptr<S>(x.g), cuda_ptr<S>(x.m), cuda_ptr<S>(x.v)}, x.p.numel()});
    cuda::adam_update<S>(std::span<const cuda::TensorPtrs<S, 4>>(t), items[0].a);
  });
}

inline void cuda_sgd_momentum_impl(std::span<const CudaSgdItem> items) {
  if (items.empty()) return;
  const Tensor& p0 = items[0].p;
  const cuda::DeviceGuard guard(p0.device().index);
  cuda::dispatch_device_floating(p0.dtype(), "momentum_step", [&]<class S>(type_tag<S>) {
    std::vector<cuda::TensorPtrs<S, 3>> t;
    t.reserve(items.size());
    for (const CudaSgdItem& x : items) t.push_back({{cuda_ptr<S>(x.p), cuda_ptr<S>(x.g), cuda_ptr<S>(x.m)}, x.p.numel()});
    cuda::sgd_momentum_update<S>(std::span<const cuda::TensorPtrs<S, 3>>(t), items[0].a);
  });
}

inline const bool cuda_optim_registered = [] {
  cuda_adam_hook.fn = &cuda_adam_impl;
  cuda_sgd_momentum_hook.fn = &cuda_sgd_momentum_impl;
  return true;
}();

}  // namespace strata::detail
