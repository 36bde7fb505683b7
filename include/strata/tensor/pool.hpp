// 2-d pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d (torch.nn.functional).
//
//   x [B, C, H, W] or [C, H, W] -> y [B, C, OH, OW] or [C, OH, OW]
//   sliding: OH = floor((H + 2 pH - dH (kH - 1) - 1) / sH) + 1 (ceil with ceil_mode, as long as
//            the last window starts inside the input or the top padding); window rows of output oh:
//            oh sH - pH + j dH, j < kH, those outside the input skipped (padding never wins a max;
//            the average divides by kH kW, or by the taps inside the input without count_include_pad)
//   adaptive: output oh covers rows [floor(oh H / OH), ceil((oh + 1) H / OH)) (same for columns)
//   max:  y = max over the window, gradient to its argmax (the first on ties, NaN wins)
//   avg:  y = mean over the window, gradient dout / count to every tap
// Stride {0, 0} means stride = kernel. Padding at most half the kernel, as PyTorch requires. Any
// strides, floating dtypes (f16/bf16 accumulate in float). Layout: a channels-last x (4-D, dense
// as [B, H, W, C]) runs the channels-last kernels and gives a channels-last y (and dx); anything
// else is made contiguous first and gives contiguous results. Max pools keep the int64 argmax indices
// (position ih * W + iw in the plane) for backward; *_with_indices returns them. max_pool2d (no indices
// returned) of the plain 2x2 stride-2 pool of a CPU x not channels-last keeps each window's argmax as a
// one-byte tap number instead, and its backward writes dx from them in one pass
// (max_pool2d_2x2_fwd_kernel): an eighth of the index bytes written and read. Kernels and reference
// loops: kernels/cpu/pool.hpp. On cuda the kernel calls go to the hooks below (filled by
// backend/cuda/pool.hpp, kernels/cuda/pool.cuh).
#pragma once

#include <array>
#include <utility>
#include <vector>

#include "kernels/cpu/pool.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

namespace detail {

/// A pool's windows and shapes: x is seen as [planes, H, W], y as [planes, OH, OW].
struct PoolPlan {
  Shape in, out;                          // x's shape and y's (leading dims kept)
  std::vector<cpu::PoolWindow> rows, cols;
  int64_t dh = 1, dw = 1;                 // dilation
  bool channels_last = false;             // x is [B, C, H, W] stored as [B, H, W, C]
  /// The kernels' geometry: planes = B * C (or C), or B for the channels-last kernels.
  cpu::Pool2dGeom geom() const {
    const int64_t H = in[in.size() - 2], W = in.back();
    const int64_t planes = H * W != 0 ? numel(in) / (H * W) : 0;
    return {.planes = channels_last ? in[0] : planes, .H = H, .W = W, .OH = out[out.size() - 2],
            .OW = out.back(), .dh = dh, .dw = dw, .rows = rows.data(), .cols = cols.data()};
  }
  int64_t C() const { return in[in.size() - 3]; }
};

/// Whether x runs the channels-last kernels: 4-D and dense as [B, H, W, C] (a tensor that is also
/// contiguous, C == 1 or H == W == 1, takes the plain path: the memory is the same).
inline bool pool_channels_last(const Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(MemoryFormat::channels_last);
}

/// Checks the rank (3 or 4), dtype and non-empty H, W of a pool input.
inline void check_pool_input(const Tensor& x, const char* name) {
  STRATA_CHECK(x.dim() == 3 || x.dim() == 4, name, "got x of shape ", x.shape(),
               ", expected [B, C, H, W] or [C, H, W]");
  check_floating(x, name);
  STRATA_CHECK(x.size(-1) > 0 && x.size(-2) > 0, name, "got x of shape ", x.shape(), ", expected H > 0 and W > 0");
}

/// A pair of pool sizes as a Shape, for messages: "[3, 3]".
inline Shape pair_shape(std::array<int64_t, 2> a) { return {a[0], a[1]}; }

/// The plan of a sliding pool (avg when !with_dilation: dilation must be {1, 1}).
inline PoolPlan pool_plan(const Tensor& x, const char* name, std::array<int64_t, 2> k, std::array<int64_t, 2> s,
                          std::array<int64_t, 2> p, std::array<int64_t, 2> d, bool ceil_mode, bool count_include_pad) {
  check_pool_input(x, name);
  if (s[0] == 0 && s[1] == 0) s = k;
  STRATA_CHECK(k[0] > 0 && k[1] > 0, name, "got kernel ", pair_shape(k), ", expected sizes > 0");
  STRATA_CHECK(s[0] > 0 && s[1] > 0, name, "got stride ", pair_shape(s),
               ", expected strides > 0 (or {0, 0} for stride = kernel)");
  STRATA_CHECK(d[0] > 0 && d[1] > 0, name, "got dilation ", pair_shape(d), ", expected dilations > 0");
  STRATA_CHECK(p[0] >= 0 && p[1] >= 0 && p[0] <= k[0] / 2 && p[1] <= k[1] / 2, name, "got padding ", pair_shape(p),
               " for kernel ", pair_shape(k), ", expected padding >= 0 and at most half the kernel");
  PoolPlan plan;
  plan.in = x.shape();
  plan.out = x.shape();
  plan.channels_last = pool_channels_last(x);
  const int64_t H = x.size(-2), W = x.size(-1);
  const int64_t OH = cpu::pool_output_size(H, k[0], s[0], p[0], d[0], ceil_mode);
  const int64_t OW = cpu::pool_output_size(W, k[1], s[1], p[1], d[1], ceil_mode);
  STRATA_CHECK(OH > 0 && OW > 0, name, "got x of shape ", x.shape(), " with kernel ", pair_shape(k), ", stride ",
               pair_shape(s), ", padding ", pair_shape(p), ", dilation ", pair_shape(d), ": output size [", OH, ", ",
               OW, "], expected at least 1x1 (the dilated kernel is larger than the padded input)");
  plan.out[plan.out.size() - 2] = OH;
  plan.out.back() = OW;
  plan.rows = cpu::pool_windows(H, OH, k[0], s[0], p[0], d[0], count_include_pad);
  plan.cols = cpu::pool_windows(W, OW, k[1], s[1], p[1], d[1], count_include_pad);
  plan.dh = d[0], plan.dw = d[1];
  return plan;
}

/// The plan of an adaptive pool to out_size.
inline PoolPlan adaptive_plan(const Tensor& x, const char* name, std::array<int64_t, 2> out_size) {
  check_pool_input(x, name);
  STRATA_CHECK(out_size[0] > 0 && out_size[1] > 0, name, "got output size ", pair_shape(out_size),
               ", expected sizes > 0");
  PoolPlan plan;
  plan.in = x.shape();
  plan.out = x.shape();
  plan.channels_last = pool_channels_last(x);
  plan.out[plan.out.size() - 2] = out_size[0];
  plan.out.back() = out_size[1];
  plan.rows = cpu::adaptive_windows(x.size(-2), out_size[0]);
  plan.cols = cpu::adaptive_windows(x.size(-1), out_size[1]);
  return plan;
}

/// The cuda kernels' calls, with the tensors the CPU kernels get (idx undefined: no indices).
inline CudaHook<void(const Tensor& x, const Tensor& y, const Tensor& idx, const PoolPlan& plan)>
    cuda_max_pool2d_fwd_hook{"max_pool2d"};
inline CudaHook<void(const Tensor& dout, const Tensor& idx, const Tensor& dx, bool channels_last)>
    cuda_max_pool2d_bwd_hook{"max_pool2d_backward"};
inline CudaHook<void(const Tensor& x, const Tensor& y, const PoolPlan& plan)> cuda_avg_pool2d_fwd_hook{"avg_pool2d"};
inline CudaHook<void(const Tensor& dout, const Tensor& dx, const PoolPlan& plan)>
    cuda_avg_pool2d_bwd_hook{"avg_pool2d_backward"};

}  // namespace detail

/// Max pool of x by `plan`: (y, int64 argmax indices into each H * W plane); no autograd.
/// Channels-last plans give channels-last y and idx. Without `with_indices` idx is undefined (and
/// never computed: inference needs no argmax).
inline std::pair<Tensor, Tensor> max_pool2d_fwd(const Tensor& x, const detail::PoolPlan& plan,
                                                bool with_indices = true) {
  const auto format = plan.channels_last ? MemoryFormat::channels_last : MemoryFormat::contiguous;
  const Tensor xc = contiguous(detach(x), format);
  Tensor y = Tensor::empty(plan.out, x.dtype(), x.device(), format);
  Tensor idx = with_indices ? Tensor::empty(plan.out, DType::i64, x.device(), format) : Tensor();
  if (x.device().is_cuda()) {
    detail::cuda_max_pool2d_fwd_hook(xc, y, idx, plan);
    return {y, idx};
  }
  int64_t* ip = with_indices ? idx.data_ptr<int64_t>() : nullptr;
  const cpu::Pool2dGeom g = plan.geom();
  dispatch_float(x.dtype(), "max_pool2d", [&]<class T>(type_tag<T>) {
    if (plan.channels_last) cpu::max_pool2d_fwd_nhwc_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), ip, plan.C(), g);
    else cpu::max_pool2d_fwd_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), ip, g);
  });
  return {y, idx};
}

/// dx of shape x_shape: dout sent to the argmax positions `idx` (max and adaptive max pools);
/// channels-last when idx is (the forward's input was).
inline Tensor max_pool2d_bwd(const Tensor& dout, const Tensor& idx, const Shape& x_shape, DType dtype) {
  STRATA_CHECK(dout.shape() == idx.shape(), "max_pool2d_backward", "got dout of shape ", dout.shape(),
               " for an output of shape ", idx.shape(), ", expected equal shapes");
  const bool cl = detail::pool_channels_last(idx);
  const auto format = cl ? MemoryFormat::channels_last : MemoryFormat::contiguous;
  const Tensor dc = contiguous(to(detach(dout), dtype), format), ic = contiguous(idx, format);
  Tensor dx = Tensor::empty(x_shape, dtype, dout.device(), format);
  if (dout.device().is_cuda()) {
    detail::cuda_max_pool2d_bwd_hook(dc, ic, dx, cl);
    return dx;
  }
  const int64_t in_plane = x_shape[x_shape.size() - 2] * x_shape.back(), out_plane = idx.size(-2) * idx.size(-1);
  const int64_t planes = in_plane ? numel(x_shape) / in_plane : 0;
  dispatch_float(dtype, "max_pool2d_backward", [&]<class T>(type_tag<T>) {
    if (cl)
      cpu::max_pool2d_bwd_nhwc_kernel<T>(dc.data_ptr<T>(), ic.data_ptr<int64_t>(), dx.data_ptr<T>(), x_shape[0],
                                         x_shape[1], in_plane, out_plane);
    else
      cpu::max_pool2d_bwd_kernel<T>(dc.data_ptr<T>(), ic.data_ptr<int64_t>(), dx.data_ptr<T>(), planes, in_plane,
                                    out_plane);
  });
  return dx;
}

/// Average pool of x by `plan`; no autograd.
inline Tensor avg_pool2d_fwd(const Tensor& x, const detail::PoolPlan& plan) {
  const auto format = plan.channels_last ? MemoryFormat::channels_last : MemoryFormat::contiguous;
  const Tensor xc = contiguous(detach(x), format);
  Tensor y = Tensor::empty(plan.out, x.dtype(), x.device(), format);
  if (x.device().is_cuda()) {
    detail::cuda_avg_pool2d_fwd_hook(xc, y, plan);
    return y;
  }
  const cpu::Pool2dGeom g = plan.geom();
  dispatch_float(x.dtype(), "avg_pool2d", [&]<class T>(type_tag<T>) {
    if (plan.channels_last) cpu::avg_pool2d_fwd_nhwc_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), plan.C(), g);
    else cpu::avg_pool2d_fwd_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), g);
  });
  return y;
}

/// dx of shape plan.in: dout / count spread over each window (avg and adaptive avg pools).
inline Tensor avg_pool2d_bwd(const Tensor& dout, const detail::PoolPlan& plan, DType dtype) {
  STRATA_CHECK(dout.shape() == plan.out, "avg_pool2d_backward", "got dout of shape ", dout.shape(),
               " for an output of shape ", plan.out, ", expected equal shapes");
  const auto format = plan.channels_last ? MemoryFormat::channels_last : MemoryFormat::contiguous;
  const Tensor dc = contiguous(to(detach(dout), dtype), format);
  Tensor dx = Tensor::empty(plan.in, dtype, dout.device(), format);
  if (dout.device().is_cuda()) {
    detail::cuda_avg_pool2d_bwd_hook(dc, dx, plan);
    return dx;
  }
  const cpu::Pool2dGeom g = plan.geom();
  dispatch_float(dtype, "avg_pool2d_backward", [&]<class T>(type_tag<T>) {
    if (plan.channels_last) cpu::avg_pool2d_bwd_nhwc_kernel<T>(dc.data_ptr<T>(), dx.data_ptr<T>(), plan.C(), g);
    else cpu::avg_pool2d_bwd_kernel<T>(dc.data_ptr<T>(), dx.data_ptr<T>(), g);
  });
  return dx;
}

namespace detail {
/// The plain 2x2 stride-2 max pool of a contiguous CPU x for autograd: y recorded with a backward that
/// reads the one-byte argmax taps (see the top of this file).
inline Tensor max_pool2d_2x2_op(const Tensor& x, const PoolPlan& plan, const char* bwd_name) {
  const Tensor xc = contiguous(detach(x));
  Tensor y = Tensor::empty(plan.out, x.dtype(), x.device());
  const Tensor taps = Tensor::empty(plan.out, DType::u8, x.device());
  const cpu::Pool2dGeom g = plan.geom();
  dispatch_float(x.dtype(), "max_pool2d", [&]<class T>(type_tag<T>) {
    cpu::max_pool2d_2x2_fwd_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), taps.data_ptr<uint8_t>(), g);
  });
  const Saved ts = taps;
  const DType dt = x.dtype();
  return record(bwd_name, y, {x}, [ts, plan, dt](const Tensor& dout) {
    STRATA_CHECK(dout.shape() == plan.out, "max_pool2d_backward", "got dout of shape ", dout.shape(),
                 " for an output of shape ", plan.out, ", expected equal shapes");
    const Tensor dc = contiguous(to(detach(dout), dt)), t = ts.get();
    Tensor dx = Tensor::empty(plan.in, dt, dout.device());
    const cpu::Pool2dGeom g = plan.geom();
    dispatch_float(dt, "max_pool2d_backward", [&]<class T>(type_tag<T>) {
      cpu::max_pool2d_2x2_bwd_kernel<T>(dc.data_ptr<T>(), t.data_ptr<uint8_t>(), dx.data_ptr<T>(), g);
    });
    return std::vector{dx};
  });
}

/// (y, idx) recorded for autograd; with !want_indices and nothing to differentiate, y alone.
inline std::pair<Tensor, Tensor> max_pool_op(const Tensor& x, const PoolPlan& plan, const char* bwd_name,
                                             bool want_indices = true) {
  if (!want_indices && !any_requires_grad({x})) return max_pool2d_fwd(x, plan, false);
  if (!want_indices && !x.device().is_cuda() && !plan.channels_last && cpu::is_pool_2x2(plan.geom()))
    return {max_pool2d_2x2_op(x, plan, bwd_name), Tensor()};
  auto [y, idx] = max_pool2d_fwd(x, plan);
  const Saved id = idx;
  const Shape in = plan.in;
  const DType dt = x.dtype();
  y = record(bwd_name, y, {x},
             [id, in, dt](const Tensor& dout) { return std::vector{max_pool2d_bwd(dout, id, in, dt)}; });
  return {y, idx};
}
inline Tensor avg_pool_op(const Tensor& x, PoolPlan plan, const char* bwd_name) {
  Tensor y = avg_pool2d_fwd(x, plan);
  const DType dt = x.dtype();
  return record(bwd_name, y, {x}, [plan = std::move(plan), dt](const Tensor& dout) {
    return std::vector{avg_pool2d_bwd(dout, plan, dt)};
  });
}
}  // namespace detail

/// (max pool of x, int64 argmax indices into each H * W plane), like F.max_pool2d(..., return_indices=True).
inline std::pair<Tensor, Tensor> max_pool2d_with_indices(const Tensor& x, std::array<int64_t, 2> kernel,
                                                         std::array<int64_t, 2> stride = {0, 0},
                                                         std::array<int64_t, 2> padding = {0, 0},
                                                         std::array<int64_t, 2> dilation = {1, 1},
                                                         bool ceil_mode = false) {
  return detail::max_pool_op(x, detail::pool_plan(x, "max_pool2d", kernel, stride, padding, dilation, ceil_mode, true),
                             "max_pool2d_backward");
}

/// Max over each kernel window of x [B, C, H, W] (stride {0, 0} = kernel); padding never wins.
inline Tensor max_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                         std::array<int64_t, 2> padding = {0, 0}, std::array<int64_t, 2> dilation = {1, 1},
                         bool ceil_mode = false) {
  return detail::max_pool_op(x, detail::pool_plan(x, "max_pool2d", kernel, stride, padding, dilation, ceil_mode, true),
                             "max_pool2d_backward", false)
      .first;
}

/// Mean over each kernel window of x [B, C, H, W]; count_include_pad counts padded taps in the divisor.
inline Tensor avg_pool2d(const Tensor& x, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride = {0, 0},
                         std::array<int64_t, 2> padding = {0, 0}, bool ceil_mode = false,
                         bool count_include_pad = true) {
  return detail::avg_pool_op(
      x, detail::pool_plan(x, "avg_pool2d", kernel, stride, padding, {1, 1}, ceil_mode, count_include_pad),
      "avg_pool2d_backward");
}

/// Mean over adaptive windows giving out_size [OH, OW] (out_size {1, 1}: global average pooling).
inline Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> out_size) {
  return detail::avg_pool_op(x, detail::adaptive_plan(x, "adaptive_avg_pool2d", out_size),
                             "adaptive_avg_pool2d_backward");
}

/// (max over adaptive windows giving out_size, int64 argmax indices into each H * W plane).
inline std::pair<Tensor, Tensor> adaptive_max_pool2d_with_indices(const Tensor& x, std::array<int64_t, 2> out_size) {
  return detail::max_pool_op(x, detail::adaptive_plan(x, "adaptive_max_pool2d", out_size),
                             "adaptive_max_pool2d_backward");
}

/// Max over adaptive windows giving out_size [OH, OW].
inline Tensor adaptive_max_pool2d(const Tensor& x, std::array<int64_t, 2> out_size) {
  return detail::max_pool_op(x, detail::adaptive_plan(x, "adaptive_max_pool2d", out_size),
                             "adaptive_max_pool2d_backward", false)
      .first;
}

}  // namespace strata
