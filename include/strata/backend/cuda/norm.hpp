// The cuda path of batch_norm, batch_norm_relu and layer_norm (tensor/norm.hpp), forward and backward.
//
// Fills tensor/norm.hpp's hooks (cuda_batch_norm_fwd_hook, cuda_batch_norm_bwd_hook,
// cuda_layer_norm_fwd_hook, cuda_layer_norm_bwd_hook) with launchers of kernels/cuda/batchnorm.cuh,
// so batch_norm(x, ...) and layer_norm(x, ...) of a cuda x run there, with the running-stat update
// and the autograd node unchanged (they are built from elementwise ops). The tensor op has already
// brought x (and dout, y) to the layout the kernels read (contiguous, or channels-last dense) and
// the parameters to the statistics dtype; this file checks that they are on x's device, makes that
// device current, picks the device element type and passes device pointers. Included by <strata/backend/cuda.hpp>.
#pragma once

#include "kernels/cuda/batchnorm.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/backend/cuda/reduce.hpp"
#include "strata/tensor/norm.hpp"

namespace strata::detail {

/// cuda_ptr<S>(t), or null for an undefined tensor (an optional kernel argument).
template <class S>
S* cuda_ptr_or_null(const Tensor& t) {
  return t.defined() ? cuda_ptr<S>(t) : nullptr;
}

/// Checks that every defined tensor of `ts` is on x's device.
inline void check_norm_device(const Tensor& x, std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts)
    STRATA_CHECK(!t->defined() || t->device() == x.device(), op, "got x on ", x.device(), " and a ", t->shape(),
                 " tensor on ", t->device(), ", expected every tensor on one device");
}

/// Checks that the statistics tensors have x's statistics dtype (the kernels read them as compute_type).
inline void check_norm_stats(const Tensor& x, std::initializer_list<const Tensor*> ts, const char* op) {
  for (const Tensor* t : ts)
    STRATA_CHECK(t->dtype() == norm_stat_dtype(x), op, "got statistics of dtype ", t->dtype(), " for x of dtype ",
                 x.dtype(), ", expected ", norm_stat_dtype(x));
}

inline cuda::BatchNormDims cuda_bn_dims(const cpu::BatchNormDims& d) {
  return {.B = d.B, .C = d.C, .S = d.S, .channels_last = d.channels_last, .relu = d.relu};
}

/// cuda_batch_norm_fwd_hook's implementation.
inline void cuda_batch_norm_fwd_impl(const Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b,
                                     const Tensor& mean, const Tensor& var, const Tensor& invstd,
                                     const cpu::BatchNormDims& d, double eps, bool training) {
  const char* name = d.relu ? "batch_norm_relu" : "batch_norm";
  check_norm_device(x, {&y, &w, &b, &mean, &var, &invstd}, name);
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  const cuda::BatchNormDims cd = cuda_bn_dims(d);
  const int64_t ws = cuda::batch_norm_workspace(cd);  // the split path's partials (few channels)
  const Tensor work = ws ? Tensor::empty({ws}, mean.dtype(), x.device()) : Tensor();
  cuda::dispatch_device_floating(x.dtype(), name, [&]<class S>(type_tag<S>) {
    using A = cuda::compute_type<S>;
    cuda::batch_norm_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), cuda_ptr_or_null<const A>(w),
                            cuda_ptr_or_null<const A>(b), cuda_ptr<A>(mean), cuda_ptr<A>(var), cuda_ptr<A>(invstd), cd,
                            eps, training, cuda_ptr_or_null<A>(work));
  });
}

/// cuda_batch_norm_bwd_hook's implementation.
inline void cuda_batch_norm_bwd_impl(const Tensor& dout, const Tensor& x, const Tensor& y, const Tensor& w,
                                     const Tensor& mean, const Tensor& invstd, const Tensor& dx, const Tensor& dw,
                                     const Tensor& db, const cpu::BatchNormDims& d, bool training) {
  const char* name = d.relu ? "batch_norm_relu_backward" : "batch_norm_backward";
  check_norm_device(x, {&dout, &y, &w, &mean, &invstd, &dx, &dw, &db}, name);
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  check_norm_stats(x, {&mean, &invstd}, name);
  const cuda::BatchNormDims cd = cuda_bn_dims(d);
  const int64_t ws = cuda::batch_norm_workspace(cd);
  const Tensor work = ws ? Tensor::empty({ws}, mean.dtype(), x.device()) : Tensor();
  cuda::dispatch_device_floating(x.dtype(), name, [&]<class S>(type_tag<S>) {
    using A = cuda::compute_type<S>;
    cuda::batch_norm_bwd<S>(cuda_ptr<const S>(dout), cuda_ptr<const S>(x), cuda_ptr_or_null<const S>(y),
                            cuda_ptr_or_null<const A>(w), cuda_ptr<const A>(mean), cuda_ptr<const A>(invstd),
                            cuda_ptr_or_null<S>(dx), cuda_ptr_or_null<A>(dw), cuda_ptr_or_null<A>(db), cd, training,
                            cuda_ptr_or_null<A>(work));
  });
}

/// cuda_layer_norm_fwd_hook's implementation.
inline void cuda_layer_norm_fwd_impl(const Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b,
                                     const Tensor& mean, const Tensor& rstd, int64_t M, int64_t N, double eps) {
  check_norm_device(x, {&y, &w, &b, &mean, &rstd}, "layer_norm");
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  cuda::dispatch_device_floating(x.dtype(), "layer_norm", [&]<class S>(type_tag<S>) {
    using A = cuda::compute_type<S>;
    cuda::layer_norm_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), cuda_ptr_or_null<const A>(w),
                            cuda_ptr_or_null<const A>(b), cuda_ptr<A>(mean), cuda_ptr<A>(rstd), M, N, eps);
  });
}

/// cuda_layer_norm_bwd_hook's implementation.
inline void cuda_layer_norm_bwd_impl(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& mean,
                                     const Tensor& rstd, const Tensor& dx, const Tensor& dw, const Tensor& db,
                                     int64_t M, int64_t N) {
  check_norm_device(x, {&dout, &w, &mean, &rstd, &dx, &dw, &db}, "layer_norm_backward");
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  check_norm_stats(x, {&mean, &rstd}, "layer_norm_backward");
  const int64_t ws = dw.defined() || db.defined() ? cuda::layer_norm_workspace(M, N) : 0;  // dw, db row chunks
  const Tensor work = ws ? Tensor::empty({ws}, mean.dtype(), x.device()) : Tensor();
  cuda::dispatch_device_floating(x.dtype(), "layer_norm_backward", [&]<class S>(type_tag<S>) {
    using A = cuda::compute_type<S>;
    cuda::layer_norm_bwd<S>(cuda_ptr<const S>(dout), cuda_ptr<const S>(x), cuda_ptr_or_null<const A>(w),
                            cuda_ptr<const A>(mean), cuda_ptr<const A>(rstd), cuda_ptr_or_null<S>(dx),
                            cuda_ptr_or_null<A>(dw), cuda_ptr_or_null<A>(db), M, N, cuda_ptr_or_null<A>(work));
  });
}

inline const bool cuda_norm_registered = [] {
  cuda_batch_norm_fwd_hook.fn = &cuda_batch_norm_fwd_impl;
  cuda_batch_norm_bwd_hook.fn = &cuda_batch_norm_bwd_impl;
  cuda_layer_norm_fwd_hook.fn = &cuda_layer_norm_fwd_impl;
  cuda_layer_norm_bwd_hook.fn = &cuda_layer_norm_bwd_impl;
  return true;
}();

}  // namespace strata::detail
