// The cuda path of dropout (tensor/dropout.hpp): kernels/cuda/dropout.cuh draws strata's Philox
// stream on the device, so y = x * mask (and the mask, kept for backward only when x needs a
// gradient) come from one kernel, bit for bit the CPU's for the same generator state. The op has
// reserved the Philox counters on the generator (it advances as on the CPU) and made x contiguous;
// this file checks the tensors, makes x's device current and passes device pointers.
// Included by <strata/backend/cuda.hpp>.
#pragma once

#include "kernels/cuda/dropout.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/tensor/dropout.hpp"

namespace strata::detail {

/// cuda_dropout_hook's implementation: y [n] = x [n] * mask, mask [n] written when defined.
inline void cuda_dropout_impl(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed,
                              uint64_t first) {
  for (const Tensor* t : {&y, &mask})
    STRATA_CHECK(!t->defined() || (t->device() == x.device() && t->dtype() == x.dtype() &&
                                   t->numel() == x.numel() && t->is_contiguous()),
                 "dropout", "got a ", t->dtype(), " tensor of shape ", t->shape(), " on ", t->device(), " for x ",
                 x.dtype(), " ", x.shape(), " on ", x.device(), ", expected x's dtype, size and device, contiguous");
  STRATA_CHECK(x.is_contiguous(), "dropout", "got a non-contiguous x of shape ", x.shape(), ", expected contiguous");
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  cuda::dispatch_device_floating(x.dtype(), "dropout", [&]<class S>(type_tag<S>) {
    cuda::dropout_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), mask.defined() ? cuda_ptr<S>(mask) : nullptr,
                         x.numel(), p, seed, first);
  });
}

inline const bool cuda_dropout_registered = (cuda_dropout_hook.fn = &cuda_dropout_impl, true);

}  // namespace strata::detail
