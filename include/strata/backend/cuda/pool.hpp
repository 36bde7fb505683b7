// The cuda path of the 2-d pools (tensor/pool.hpp): max_pool2d, avg_pool2d, adaptive_avg_pool2d,
// adaptive_max_pool2d and their *_with_indices forms, forward and backward.
//
// Fills tensor/pool.hpp's hooks (cuda_max_pool2d_fwd_hook, cuda_max_pool2d_bwd_hook,
// cuda_avg_pool2d_fwd_hook, cuda_avg_pool2d_bwd_hook) with launchers of kernels/cuda/pool.cuh.
// The tensor op has already made the plan (the CPU's window tables: sliding or adaptive, ceil_mode,
// padding, count_include_pad, dilation) and brought x, dout and idx to the layout the kernels read
// (contiguous NCHW, or channels-last NHWC for a channels-last 4-D x). Here the window tables and
// the avg backward's inverse ranges go to device memory (one small int64 tensor per call), and the
// layout becomes the kernels' [planes, H, W, C]: planes = B * C with C = 1 for NCHW, planes = B for
// NHWC. Included by <strata/backend/cuda.hpp>.
#pragma once

#include <vector>

#include "kernels/cuda/pool.cuh"
#include "strata/backend/cuda/elementwise.hpp"
#include "strata/backend/cuda/reduce.hpp"
#include "strata/tensor/pool.hpp"

namespace strata::detail {

/// The kernels' dims of a pool from x [..., H, W] to y [..., OH, OW] (no tables yet).
inline cuda::Pool2dDims cuda_pool_dims(const Shape& in, const Shape& out, bool channels_last) {
  const int64_t H = in[in.size() - 2], W = in.back();
  cuda::Pool2dDims g{.H = H, .W = W, .OH = out[out.size() - 2], .OW = out.back()};
  g.C = channels_last ? in[1] : 1;
  g.planes = channels_last ? in[0] : (H * W != 0 ? numel(in) / (H * W) : 0);
  return g;
}

/// The plan's window tables (and the inverse ranges) in device memory on `device`, pointed to by g;
/// the returned tensor owns them (keep it until the kernel is launched: the caching allocator
/// orders a later reuse after it on the stream).
inline Tensor cuda_pool_tables(const PoolPlan& plan, cuda::Pool2dDims& g, Device device) {
  auto convert = [](const std::vector<cpu::PoolWindow>& w) {
    std::vector<cuda::PoolWindow> r;
    for (const cpu::PoolWindow& v : w) r.push_back({v.lo, v.hi, v.count});
    return r;
  };
  const std::vector<cuda::PoolWindow> rows = convert(plan.rows), cols = convert(plan.cols);
  const std::vector<int64_t> host = cuda::pool_tables(rows.data(), g.OH, cols.data(), g.OW, g.H, g.W);
  Tensor t = Tensor::empty({int64_t(host.size())}, DType::i64, device);
  if (!host.empty()) cuda::memcpy(cuda_ptr<int64_t>(t), host.data(), host.size() * sizeof(int64_t));
  cuda::point_pool_tables(g, cuda_ptr<const int64_t>(t));
  g.dh = plan.dh, g.dw = plan.dw;
  return t;
}

/// Checks that every defined tensor of `ts` is on the first one's device.
inline void check_pool_device(std::initializer_list<const Tensor*> ts, const char* op) {
  const Tensor& first = **ts.begin();
  for (const Tensor* t : ts)
    STRATA_CHECK(!t->defined() || t->device() == first.device(), op, "got tensors on ", first.device(), " and ",
                 t->device(), ", expected one device");
}

/// cuda_max_pool2d_fwd_hook's implementation.
inline void cuda_max_pool2d_fwd_impl(const Tensor& x, const Tensor& y, const Tensor& idx, const PoolPlan& plan) {
  check_pool_device({&x, &y, &idx}, "max_pool2d");
  const cuda::DeviceGuard guard(x.device().index);  // launch on its device
  cuda::Pool2dDims g = cuda_pool_dims(plan.in, plan.out, plan.channels_last);
  const Tensor tables = cuda_pool_tables(plan, g, x.device());
  cuda::dispatch_device_floating(x.dtype(), "max_pool2d", [&]<class S>(type_tag<S>) {
    cuda::max_pool2d_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), idx.defined() ? cuda_ptr<int64_t>(idx) : nullptr, g);
  });
}

/// cuda_max_pool2d_bwd_hook's implementation.
inline void cuda_max_pool2d_bwd_impl(const Tensor& dout, const Tensor& idx, const Tensor& dx, bool channels_last) {
  check_pool_device({&dout, &idx, &dx}, "max_pool2d_backward");
  const cuda::DeviceGuard guard(dx.device().index);  // launch on its device
  STRATA_CHECK(idx.dtype() == DType::i64, "max_pool2d_backward", "got indices of dtype ", idx.dtype(),
               ", expected int64");
  const cuda::Pool2dDims g = cuda_pool_dims(dx.shape(), idx.shape(), channels_last);
  cuda::dispatch_device_floating(dx.dtype(), "max_pool2d_backward", [&]<class S>(type_tag<S>) {
    cuda::max_pool2d_bwd<S>(cuda_ptr<const S>(dout), cuda_ptr<const int64_t>(idx), cuda_ptr<S>(dx), g);
  });
}

/// cuda_avg_pool2d_fwd_hook's implementation.
inline void cuda_avg_pool2d_fwd_impl(const Tensor& x, const Tensor& y, const PoolPlan& plan) {
  check_pool_device({&x, &y}, "avg_pool2d");
  const cuda::DeviceGuard guard(x.device().index);  // launch on its device
  cuda::Pool2dDims g = cuda_pool_dims(plan.in, plan.out, plan.channels_last);
  const Tensor tables = cuda_pool_tables(plan, g, x.device());
  cuda::dispatch_device_floating(x.dtype(), "avg_pool2d", [&]<class S>(type_tag<S>) {
    cuda::avg_pool2d_fwd<S>(cuda_ptr<const S>(x), cuda_ptr<S>(y), g);
  });
}

/// cuda_avg_pool2d_bwd_hook's implementation.
inline void cuda_avg_pool2d_bwd_impl(const Tensor& dout, const Tensor& dx, const PoolPlan& plan) {
  check_pool_device({&dout, &dx}, "avg_pool2d_backward");
  const cuda::DeviceGuard guard(dx.device().index);  // launch on its device
  cuda::Pool2dDims g = cuda_pool_dims(plan.in, plan.out, plan.channels_last);
  const Tensor tables = cuda_pool_tables(plan, g, dx.device());
  cuda::dispatch_device_floating(dx.dtype(), "avg_pool2d_backward", [&]<class S>(type_tag<S>) {
    cuda::avg_pool2d_bwd<S>(cuda_ptr<const S>(dout), cuda_ptr<S>(dx), g);
  });
}

inline const bool cuda_pool_registered = [] {
  cuda_max_pool2d_fwd_hook.fn = &cuda_max_pool2d_fwd_impl;
  cuda_max_pool2d_bwd_hook.fn = &cuda_max_pool2d_bwd_impl;
  cuda_avg_pool2d_fwd_hook.fn = &cuda_avg_pool2d_fwd_impl;
  cuda_avg_pool2d_bwd_hook.fn = &cuda_avg_pool2d_bwd_impl;
  return true;
}();

}  // namespace strata::detail
