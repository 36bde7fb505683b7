// The cuda path of the fused softmax cross entropy (nn/loss.hpp's softmax_cross_entropy, under
// cross_entropy and CrossEntropyLossFlat): kernels/cuda/softmax_xent.cuh, one block per row forward
// and one elementwise pass backward, for f32, f64, f16 and bf16 logits (lse in float32, or float64
// for float64 logits, as on the CPU). Included by <strata/backend/cuda.hpp>.
#pragma once

#include "kernels/cuda/softmax_xent.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/nn/loss.hpp"

namespace strata::detail {

inline void cuda_softmax_xent_fwd_impl(const Tensor& x, const Tensor& y, const Tensor& loss, const Tensor& lse,
                                       double eps) {
  const cuda::DeviceGuard guard(x.device().index);
  cuda::dispatch_device_floating(x.dtype(), "cross_entropy", [&]<class S>(type_tag<S>) {
    cuda::softmax_xent_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<const int64_t>(y), cuda_ptr<S>(loss),
                              cuda_ptr<cuda::compute_type<S>>(lse), x.size(0), x.size(1), eps);
  });
}

inline void cuda_softmax_xent_bwd_impl(const Tensor& dloss, const Tensor& x, const Tensor& y, const Tensor& lse,
                                       const Tensor& dx, double eps) {
  const cuda::DeviceGuard guard(x.device().index);
  cuda::dispatch_device_floating(x.dtype(), "cross_entropy_backward", [&]<class S>(type_tag<S>) {
    cuda::softmax_xent_bwd<S>(cuda_ptr<const S>(dloss), cuda_ptr<const S>(x), cuda_ptr<const int64_t>(y),
                              cuda_ptr<const cuda::compute_type<S>>(lse), cuda_ptr<S>(dx), x.size(0), x.size(1), eps);
  });
}

inline const bool cuda_softmax_xent_registered = [] {
  nn::detail::cuda_softmax_xent_fwd_hook.fn = &cuda_softmax_xent_fwd_impl;
  nn::detail::cuda_softmax_xent_bwd_hook.fn = &cuda_softmax_xent_bwd_impl;
  return true;
}();

}  // namespace strata::detail
