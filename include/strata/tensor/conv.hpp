// conv2d: 2-D convolution (cross-correlation) with PyTorch's semantics (torch.nn.functional.conv2d).
//
//   x: [B, Cin, H, W], w: [Cout, Cin/groups, kH, kW], b: [Cout] or undefined -> out: [B, Cout, OH, OW]
//   OH = floor((H + 2 padding[0] - dilation[0] (kH - 1) - 1) / stride[0]) + 1, OW likewise
//   out[n, o, y, z] = b[o] + sum_{c, i, j} w[o, c, i, j] x[n, g Cin/groups + c, y s0 - p0 + i d0, z s1 - p1 + j d1]
//     (g = o / (Cout/groups); x is 0 outside the image)
//   backward: dx = the transposed convolution of dout with w; dw[o, c, i, j] = sum_{n, y, z} dout x(tap);
//             db[o] = sum_{n, y, z} dout[n, o, y, z]
// dtypes: float32 and float64 (x, w, b all the same); float16/bfloat16 are computed in float32 and
// rounded once. x may be any view (its strides go to the kernel); w, b, dout are made contiguous.
// Kernels (NHWC direct tiles, im2col + GEMM, depthwise loops) and reference loops: kernels/cpu/conv.hpp.
#pragma once

#include <array>
#include <vector>

#include "kernels/cpu/conv.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

namespace detail {
inline std::string conv_pair(const std::array<int64_t, 2>& a) {
  return "(" + std::to_string(a[0]) + ", " + std::to_string(a[1]) + ")";
}
}  // namespace detail

/// The sizes of conv2d(x, w, b, stride, padding, dilation, groups) for the kernels, after checking
/// ranks, channels, groups, hyper-parameters, the output size, dtypes and devices.
inline cpu::Conv2dParams conv2d_params(const Tensor& x, const Tensor& w, const Tensor& b,
                                       std::array<int64_t, 2> stride, std::array<int64_t, 2> padding,
                                       std::array<int64_t, 2> dilation, int64_t groups) {
  STRATA_CHECK(x.dim() == 4, "conv2d", "got x of shape ", x.shape(), ", expected 4 dims [B, Cin, H, W]");
  STRATA_CHECK(w.dim() == 4, "conv2d", "got w of shape ", w.shape(), ", expected 4 dims [Cout, Cin/groups, kH, kW]");
  STRATA_CHECK(groups >= 1, "conv2d", "got groups = ", groups, ", expected groups >= 1");
  const int64_t Cin = x.size(1), Cout = w.size(0);
  STRATA_CHECK(Cin % groups == 0 && Cout % groups == 0, "conv2d", "got ", Cin, " input and ", Cout,
               " output channels (x ", x.shape(), ", w ", w.shape(), ") with groups = ", groups,
               ", expected groups to divide both");
  STRATA_CHECK(w.size(1) * groups == Cin, "conv2d", "got x of shape ", x.shape(), " and w of shape ", w.shape(),
               " with groups = ", groups, ", expected x.size(1) == w.size(1) * groups (", Cin, " != ",
               w.size(1) * groups, ")");
  STRATA_CHECK(stride[0] >= 1 && stride[1] >= 1, "conv2d", "got stride ", detail::conv_pair(stride), ", expected >= 1");
  STRATA_CHECK(padding[0] >= 0 && padding[1] >= 0, "conv2d", "got padding ", detail::conv_pair(padding), ", expected >= 0");
  STRATA_CHECK(dilation[0] >= 1 && dilation[1] >= 1, "conv2d", "got dilation ", detail::conv_pair(dilation),
               ", expected >= 1");
  if (b.defined())
    STRATA_CHECK(b.dim() == 1 && b.size(0) == Cout, "conv2d", "got b of shape ", b.shape(), " for w of shape ",
                 w.shape(), ", expected [", Cout, "]");
  STRATA_CHECK(x.dtype() == w.dtype() && (!b.defined() || b.dtype() == x.dtype()), "conv2d", "got dtypes x ",
               x.dtype(), ", w ", w.dtype(), b.defined() ? ", b " : "",
               b.defined() ? dtype_name(b.dtype()) : std::string_view(), ", expected one dtype");
  detail::check_floating(x, "conv2d");
  STRATA_CHECK(x.device() == w.device() && (!b.defined() || b.device() == x.device()), "conv2d", "got devices x ",
               x.device(), " and w ", w.device(), ", expected one device");
  cpu::Conv2dParams p{.B = x.size(0), .Cin = Cin, .H = x.size(2), .W = x.size(3), .Cout = Cout, .kH = w.size(2),
                      .kW = w.size(3), .stride = stride, .padding = padding, .dilation = dilation, .groups = groups};
  const int64_t eh = dilation[0] * (p.kH - 1) + 1, ew = dilation[1] * (p.kW - 1) + 1;  // the dilated kernel
  STRATA_CHECK(p.kH >= 1 && p.kW >= 1 && p.H + 2 * padding[0] >= eh && p.W + 2 * padding[1] >= ew, "conv2d",
               "got x of shape ", x.shape(), " (padded ", p.H + 2 * padding[0], "x", p.W + 2 * padding[1],
               ") and a ", p.kH, "x", p.kW, " kernel with dilation ", detail::conv_pair(dilation),
               " (spanning ", eh, "x", ew, "), expected an output size >= 1 (a kernel no larger than the padded input)");
  return p;
}

/// out = conv2d(x, w) + b for checked sizes p (see conv2d_params); no autograd.
inline Tensor conv2d_fwd(const Tensor& x, const Tensor& w, const Tensor& b, const cpu::Conv2dParams& p) {
  const DType dt = x.dtype();
  if (dt == DType::f16 || dt == DType::bf16)  // no 16-bit kernel: compute in float32, round once
    return to(conv2d_fwd(to(detach(x), DType::f32), to(detach(w), DType::f32),
                         b.defined() ? to(detach(b), DType::f32) : Tensor(), p), dt);
  Tensor out = Tensor::empty({p.B, p.Cout, p.OH(), p.OW()}, dt, x.device());
  const Tensor wc = contiguous(detach(w)), bc = b.defined() ? contiguous(detach(b)) : Tensor();
  const cpu::ConvStrides xs{x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  dispatch_float(dt, "conv2d", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      cpu::conv2d_fwd_kernel<T>(p, x.data_ptr<T>(), xs, wc.data_ptr<T>(), bc.defined() ? bc.data_ptr<T>() : nullptr,
                                out.data_ptr<T>());
  });
  return out;
}

/// Which gradients conv2d_bwd computes.
struct Conv2dGrads {
  bool x = true, w = true, b = true;
};

/// {dx, dw, db} of out = conv2d(x, w) + b from dout [B, Cout, OH, OW], only those asked for (the
/// others undefined). x is read only for dw, w only for dx (either may be undefined otherwise).
inline std::vector<Tensor> conv2d_bwd(const Tensor& dout, const Tensor& x, const Tensor& w,
                                      const cpu::Conv2dParams& p, Conv2dGrads need) {
  const Shape out_shape{p.B, p.Cout, p.OH(), p.OW()};
  STRATA_CHECK(dout.shape() == out_shape, "conv2d_backward", "got dout of shape ", dout.shape(),
               ", expected the output's shape ", out_shape);
  const DType dt = dout.dtype();
  if (dt == DType::f16 || dt == DType::bf16) {
    auto f32 = [](const Tensor& t) { return t.defined() ? to(detach(t), DType::f32) : Tensor(); };
    std::vector<Tensor> g = conv2d_bwd(f32(dout), f32(x), f32(w), p, need);
    for (Tensor& t : g)
      if (t.defined()) t = to(t, dt);
    return g;
  }
  Tensor dx, dw, db;
  const Tensor dc = contiguous(detach(dout));
  const Tensor xd = need.w ? to(detach(x), dt) : Tensor(), wc = need.x ? contiguous(to(detach(w), dt)) : Tensor();
  if (need.x) dx = Tensor::empty({p.B, p.Cin, p.H, p.W}, dt, dout.device());
  if (need.w) dw = Tensor::empty({p.Cout, p.Cin / p.groups, p.kH, p.kW}, dt, dout.device());
  if (need.b) db = Tensor::empty({p.Cout}, dt, dout.device());
  const cpu::ConvStrides xs = need.w ? cpu::ConvStrides{xd.stride(0), xd.stride(1), xd.stride(2), xd.stride(3)}
                                     : cpu::ConvStrides{};
  dispatch_float(dt, "conv2d_backward", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
      cpu::conv2d_bwd_kernel<T>(p, ptr(xd), xs, ptr(wc), dc.data_ptr<T>(), ptr(dx), ptr(dw), ptr(db));
    }
  });
  return {dx, dw, db};
}

/// 2-D convolution of x [B, Cin, H, W] with w [Cout, Cin/groups, kH, kW] plus b [Cout] (or an
/// undefined Tensor() for none) -> [B, Cout, OH, OW], as torch.nn.functional.conv2d.
inline Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                     std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0},
                     std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  const cpu::Conv2dParams p = conv2d_params(x, w, b, stride, padding, dilation, groups);
  Tensor out = conv2d_fwd(x, w, b, p);
  if (!any_requires_grad({x, w, b})) return out;
  const Conv2dGrads need{.x = x.requires_grad(), .w = w.requires_grad(), .b = b.defined() && b.requires_grad()};
  // keep only what the backward reads: x for dw, w for dx
  const Saved xd = need.w ? Saved(x) : Saved(), wd = need.x ? Saved(w) : Saved();
  const DType dt = x.dtype();
  return record("conv2d_backward", out, {x, w, b}, [xd, wd, p, need, dt](const Tensor& dout) {
    return conv2d_bwd(to(dout, dt), xd.get(), wd.get(), p, need);
  });
}

}  // namespace strata
