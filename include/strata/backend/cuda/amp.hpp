// The cuda path of unscale_ (tensor/amp.hpp, under GradScaler and fp16 mixed precision):
// kernels/cuda/amp.cuh over the whole list of one dtype in one launch (multi-tensor apply), the
// inf/NaN flag a float in device memory read back once. Included by <strata/backend/cuda.hpp>.
#pragma once

#include <vector>

#include "kernels/cuda/amp.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/tensor/amp.hpp"

namespace strata::detail {

inline bool cuda_amp_unscale_impl(std::span<const Tensor> grads, double inv_scale) {
  if (grads.empty()) return false;
  const Device dev = grads[0].device();
  Tensor flag = zeros({}, {.device = dev});
  const cuda::DeviceGuard guard(dev.index);
  cuda::dispatch_device_floating(grads[0].dtype(), "unscale_", [&]<class S>(type_tag<S>) {
    std::vector<cuda::TensorPtrs<S, 1>> ptrs;
    for (const Tensor& g : grads) {
      STRATA_CHECK(g.device() == dev && g.dtype() == grads[0].dtype(), "unscale_", "got gradients on ", g.device(),
                   " of dtype ", g.dtype(), " with others on ", dev, " of dtype ", grads[0].dtype(),
                   ", expected one device and dtype per call");
      ptrs.push_back({{cuda_ptr<S>(g)}, g.numel()});
      g.storage()->bump_version();
    }
    cuda::amp_unscale<S>(std::span<const cuda::TensorPtrs<S, 1>>(ptrs), float(inv_scale), cuda_ptr<float>(flag));
  });
  return flag.item<float>() != 0.0f;
}

inline const bool cuda_amp_registered = (cuda_amp_unscale_hook.fn = &cuda_amp_unscale_impl, true);

}  // namespace strata::detail
