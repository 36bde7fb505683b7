// The cuda path of softmax and log_softmax (tensor/softmax.hpp), forward and backward.
//
// Fills tensor/softmax.hpp's cuda_softmax_fwd_hook and cuda_softmax_bwd_hook with launchers of
// kernels/cuda/softmax.cuh, so softmax(x, dim) and log_softmax(x, dim) of a cuda x (and their
// backward, the autograd node unchanged) run there for f32, f64, f16 and bf16. The op has already
// made the operands contiguous [outer, n, inner] (a strided x is copied on the device); this file
// checks that they share a device, makes it current and passes device pointers.
// Included by <strata/backend/cuda.hpp>.
#pragma once

#include "kernels/cuda/softmax.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/tensor/softmax.hpp"

namespace strata::detail {

/// cuda_softmax_fwd_hook's implementation: y = softmax/log_softmax(x), both contiguous [outer, n, inner].
inline void cuda_softmax_fwd_impl(const Tensor& x, const Tensor& y, int64_t outer, int64_t n, int64_t inner,
                                  bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  STRATA_CHECK(y.device() == x.device() && y.dtype() == x.dtype(), name, "got x ", x.dtype(), " on ", x.device(),
               " and y ", y.dtype(), " on ", y.device(), ", expected one dtype and device");
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  cuda::dispatch_device_floating(x.dtype(), name, [&]<class S>(type_tag<S>) {
    cuda::softmax_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), outer, n, inner, log);
  });
}

/// cuda_softmax_bwd_hook's implementation: dx from dout and the forward's y, all contiguous [outer, n, inner].
inline void cuda_softmax_bwd_impl(const Tensor& dout, const Tensor& y, const Tensor& dx, int64_t outer, int64_t n,
                                  int64_t inner, bool log) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  for (const Tensor* t : {&dout, &dx})
    STRATA_CHECK(t->device() == y.device() && t->dtype() == y.dtype(), name, "got a ", t->dtype(), " tensor on ",
                 t->device(), " for y ", y.dtype(), " on ", y.device(), ", expected one dtype and device");
  const cuda::DeviceGuard guard(y.device().index);  // launch on y's device
  cuda::dispatch_device_floating(y.dtype(), name, [&]<class S>(type_tag<S>) {
    cuda::softmax_bwd<S>(cuda_ptr<const S>(dout), cuda_ptr<const S>(y), cuda_ptr<S>(dx), outer, n, inner, log);
  });
}

inline const bool cuda_softmax_registered = [] {
  cuda_softmax_fwd_hook.fn = &cuda_softmax_fwd_impl;
  cuda_softmax_bwd_hook.fn = &cuda_softmax_bwd_impl;
  return true;
}();

}  // namespace strata::detail
