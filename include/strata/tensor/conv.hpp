// conv2d: 2-D convolution (cross-correlation) with PyTorch's semantics (torch.nn.functional.conv2d).
//
//   x: [B, Cin, H, W], w: [Cout, Cin/groups, kH, kW], b: [Cout] or undefined -> out: [B, Cout, OH, OW]
//   OH = floor((H + 2 padding[0] - dilation[0] (kH - 1) - 1) / stride[0]) + 1, OW likewise
//   out[n, o, y, z] = b[o] + sum_{c, i, j} w[o, c, i, j] x[n, g Cin/groups + c, y s0 - p0 + i d0, z s1 - p1 + j d1]
//     (g = o / (Cout/groups); x is 0 outside the image)
//   backward: dx = the transposed convolution of dout with w; dw[o, c, i, j] = sum_{n, y, z} dout x(tap);
//             db[o] = sum_{n, y, z} dout[n, o, y, z]
// dtypes: float32 and float64 (x, w, b all the same); float16/bfloat16 are computed in float32 and
// rounded once. On cuda: cuDNN (backend/cuda/dnn.hpp; the CPU kernels under the emulator). x may be any view (its strides go to the kernel); w, b are made contiguous.
// Layout (PyTorch's rule): a channels-last x (dense, strides (H W C, 1, W C, C); a 1-channel x only
// when its strides say so, stride(1) == 1) gives a channels-last out, and its backward a
// channels-last dx (dout is read channels-last); the direct path then reads and writes them in
// place, with no NCHW <-> NHWC transposes. Any other x gives a contiguous NCHW out.
// conv2d_relu(...) = relu(conv2d(...)) with the ReLU applied in the forward kernel's output store
// (inference fusion; with autograd it is relu(conv2d(...))).
// Autocast (strata/tensor/autocast.hpp): inside an Autocast(bf16), float32 x and w are rounded to
// bf16 (dout too in backward) and multiplied with float32 accumulation; out, dx, dw are float32.
// db sums dout unrounded (a sum, not a product). On the CPU the kernels round the operands as they
// read them (cpu::Conv2dParams::round_bf16: no bf16 copies); elsewhere the operands are rounded copies.
// Kernels (NHWC direct tiles, im2col + GEMM, depthwise loops) and reference loops: kernels/cpu/conv.hpp.
#pragma once

#include <array>
#include <vector>

#include "kernels/cpu/conv.hpp"
#include "strata/tensor/autocast.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

namespace detail {
inline std::string conv_pair(const std::array<int64_t, 2>& a) {
  return "(" + std::to_string(a[0]) + ", " + std::to_string(a[1]) + ")";
}

/// A dense copy of t (detached) in dtype dt: channels-last when cl, else contiguous NCHW (t itself
/// when it already is).
inline Tensor conv_dense(const Tensor& t, DType dt, bool cl) {
  if (!cl) return contiguous(to(detach(t), dt));
  return contiguous(to(detach(t).permute({0, 2, 3, 1}), dt)).permute({0, 3, 1, 2});
}
}  // namespace detail

/// Whether conv2d treats x [B, C, H, W] as channels-last: dense with strides (H W C, 1, W C, C).
/// A 1-channel x counts only when stride(1) == 1 says so (its NCHW strides fit the rest too).
inline bool conv2d_channels_last(const Tensor& x) {
  if (x.dim() != 4) return false;
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3);
  return x.stride(1) == 1 && x.stride(3) == C && x.stride(2) == W * C && (x.stride(0) == H * W * C || x.size(0) == 1);
}

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

/// conv2d's cuda path (backend/cuda/dnn.hpp fills it: cuDNN, the CPU kernels under the emulator):
/// out (allocated: contiguous NCHW, or channels-last when ep.channels_last) = conv2d(x, w) + b as p
/// says, then ReLU when ep.relu; x with any strides, w and b (or undefined) contiguous, one
/// floating dtype (float16/bfloat16 accumulate in float32 and round once).
inline detail::CudaHook<void(const Tensor& out, const Tensor& x, const Tensor& w, const Tensor& b,
                             const cpu::Conv2dParams& p, cpu::ConvEpilogue ep)>
    cuda_conv2d_fwd_hook{"conv2d"};
/// conv2d_backward's cuda path: fills dx, dw, db (each allocated, or undefined when not asked for;
/// dx channels-last when channels_last, else contiguous) from dout (dense, channels-last when
/// channels_last), x (any strides; undefined without dw) and w (contiguous; undefined without dx).
inline detail::CudaHook<void(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& dx, const Tensor& dw,
                             const Tensor& db, const cpu::Conv2dParams& p, bool channels_last)>
    cuda_conv2d_bwd_hook{"conv2d_backward"};

/// out = conv2d(x, w) + b for checked sizes p (see conv2d_params), then ReLU when ep.relu; no
/// autograd. out is channels-last when x is (conv2d_channels_last) or ep.channels_last asks for it.
inline Tensor conv2d_fwd(const Tensor& x, const Tensor& w, const Tensor& b, const cpu::Conv2dParams& p,
                         cpu::ConvEpilogue ep = {}) {
  const DType dt = x.dtype();
  ep.channels_last = ep.channels_last || conv2d_channels_last(x);
  // no 16-bit CPU kernel: compute in float32, round once (cuda takes 16-bit operands as they are)
  if (!x.device().is_cuda() && (dt == DType::f16 || dt == DType::bf16))
    return detail::conv_dense(conv2d_fwd(to(detach(x), DType::f32), to(detach(w), DType::f32),
                                         b.defined() ? to(detach(b), DType::f32) : Tensor(), p, ep),
                              dt, ep.channels_last);
  Tensor out = ep.channels_last ? Tensor::empty({p.B, p.OH(), p.OW(), p.Cout}, dt, x.device()).permute({0, 3, 1, 2})
                                : Tensor::empty({p.B, p.Cout, p.OH(), p.OW()}, dt, x.device());
  const Tensor wc = contiguous(detach(w)), bc = b.defined() ? contiguous(detach(b)) : Tensor();
  if (x.device().is_cuda()) {
    cuda_conv2d_fwd_hook(out, detach(x), wc, bc, p, ep);
    return out;
  }
  const cpu::ConvStrides xs{x.stride(0), x.stride(1), x.stride(2), x.stride(3)};
  dispatch_float(dt, "conv2d", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
      cpu::conv2d_fwd_kernel<T>(p, x.data_ptr<T>(), xs, wc.data_ptr<T>(), bc.defined() ? bc.data_ptr<T>() : nullptr,
                                out.data_ptr<T>(), cpu::ConvAlgo::automatic, ep);
  });
  return out;
}

/// Which gradients conv2d_bwd computes.
struct Conv2dGrads {
  bool x = true, w = true, b = true;
};

/// {dx, dw, db} of out = conv2d(x, w) + b from dout [B, Cout, OH, OW], only those asked for (the
/// others undefined). x is read only for dw, w only for dx (either may be undefined otherwise).
/// channels_last: dout is read and dx written channels-last (conv2d passes whether x was).
inline std::vector<Tensor> conv2d_bwd(const Tensor& dout, const Tensor& x, const Tensor& w,
                                      const cpu::Conv2dParams& p, Conv2dGrads need, bool channels_last = false) {
  const Shape out_shape{p.B, p.Cout, p.OH(), p.OW()};
  STRATA_CHECK(dout.shape() == out_shape, "conv2d_backward", "got dout of shape ", dout.shape(),
               ", expected the output's shape ", out_shape);
  const DType dt = dout.dtype();
  if (!dout.device().is_cuda() && (dt == DType::f16 || dt == DType::bf16)) {
    auto f32 = [](const Tensor& t) { return t.defined() ? to(detach(t), DType::f32) : Tensor(); };
    std::vector<Tensor> g = conv2d_bwd(f32(dout), f32(x), f32(w), p, need, channels_last);
    for (size_t k = 0; k < g.size(); ++k)
      if (g[k].defined()) g[k] = detail::conv_dense(g[k], dt, k == 0 && channels_last);
    return g;
  }
  Tensor dx, dw, db;
  const Tensor dc = detail::conv_dense(dout, dt, channels_last);
  const Tensor xd = need.w ? to(detach(x), dt) : Tensor(), wc = need.x ? contiguous(to(detach(w), dt)) : Tensor();
  if (need.x)
    dx = channels_last ? Tensor::empty({p.B, p.H, p.W, p.Cin}, dt, dout.device()).permute({0, 3, 1, 2})
                       : Tensor::empty({p.B, p.Cin, p.H, p.W}, dt, dout.device());
  if (need.w) dw = Tensor::empty({p.Cout, p.Cin / p.groups, p.kH, p.kW}, dt, dout.device());
  if (need.b) db = Tensor::empty({p.Cout}, dt, dout.device());
  if (dout.device().is_cuda()) {
    cuda_conv2d_bwd_hook(dc, xd, wc, dx, dw, db, p, channels_last);
    return {dx, dw, db};
  }
  const cpu::ConvStrides xs = need.w ? cpu::ConvStrides{xd.stride(0), xd.stride(1), xd.stride(2), xd.stride(3)}
                                     : cpu::ConvStrides{};
  dispatch_float(dt, "conv2d_backward", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>) {
      auto ptr = [](const Tensor& t) { return t.defined() ? t.data_ptr<T>() : nullptr; };
      cpu::conv2d_bwd_kernel<T>(p, ptr(xd), xs, ptr(wc), dc.data_ptr<T>(), ptr(dx), ptr(dw), ptr(db),
                                cpu::ConvAlgo::automatic, channels_last);
    }
  });
  return {dx, dw, db};
}

namespace detail {
/// conv2d, and conv2d_relu when relu (see the top).
inline Tensor conv2d_op(const Tensor& x, const Tensor& w, const Tensor& b, std::array<int64_t, 2> stride,
                        std::array<int64_t, 2> padding, std::array<int64_t, 2> dilation, int64_t groups, bool relu) {
  cpu::Conv2dParams p = conv2d_params(x, w, b, stride, padding, dilation, groups);
  const bool grad = any_requires_grad({x, w, b});
  if (relu && grad) return strata::relu(conv2d_op(x, w, b, stride, padding, dilation, groups, false));
  const bool cl = conv2d_channels_last(x);
  const DType dt = x.dtype(), cast = autocast_dtype();
  const Conv2dGrads need{.x = x.requires_grad(), .w = w.requires_grad(), .b = b.defined() && b.requires_grad()};
  // autocast(bf16) on the CPU: the kernels round x, w (and dout in backward) to bf16 as they read
  // them (p.round_bf16), in the transposes and copies they make anyway; the float32 path below
  // otherwise, saving x and w themselves
  if (cast == DType::bf16 && dt == DType::f32 && !x.device().is_cuda()) p.round_bf16 = true;
  if (cast != DType::f32 && dt == DType::f32 && !p.round_bf16) {
    // autocast elsewhere (cuda, f16): x and w rounded to the autocast dtype (kept so, half the
    // memory, for backward), multiplied in float32; dout rounded likewise for dx and dw, db from dout
    // as it is (as on the CPU); out, dx, dw float32
    const Tensor xr = conv_dense(x, cast, cl), wr = contiguous(to(detach(w), cast));
    Tensor out = conv2d_fwd(conv_dense(xr, DType::f32, cl), to(wr, DType::f32), b, p, {.channels_last = cl, .relu = relu});
    if (!grad) return out;
    const Saved xd = need.w ? Saved(xr) : Saved(), wd = need.x ? Saved(wr) : Saved();
    return record("conv2d_backward", out, {x, w, b}, [xd, wd, p, need, cl, cast](const Tensor& dout) {
      auto f32 = [cl](const Tensor& t, bool c) { return t.defined() ? conv_dense(t, DType::f32, c && cl) : Tensor(); };
      std::vector<Tensor> g;
      if (need.x || need.w)
        g = conv2d_bwd(f32(conv_dense(dout, cast, cl), true), f32(xd.get(), true), f32(wd.get(), false), p,
                       {.x = need.x, .w = need.w, .b = false}, cl);
      else
        g = {Tensor(), Tensor(), Tensor()};
      if (need.b) g[2] = conv2d_bwd(f32(dout, true), Tensor(), Tensor(), p, {.x = false, .w = false, .b = true}, cl)[2];
      return g;
    });
  }
  Tensor out = conv2d_fwd(x, w, b, p, {.channels_last = cl, .relu = relu});
  if (!grad) return out;
  // keep only what the backward reads: x for dw, w for dx
  const Saved xd = need.w ? Saved(x) : Saved(), wd = need.x ? Saved(w) : Saved();
  return record("conv2d_backward", out, {x, w, b}, [xd, wd, p, need, dt, cl](const Tensor& dout) {
    return conv2d_bwd(to(dout, dt), xd.get(), wd.get(), p, need, cl);
  });
}
}  // namespace detail

/// 2-D convolution of x [B, Cin, H, W] with w [Cout, Cin/groups, kH, kW] plus b [Cout] (or an
/// undefined Tensor() for none) -> [B, Cout, OH, OW], as torch.nn.functional.conv2d. Channels-last
/// x: channels-last out; under Autocast(bf16): bf16 operands, float32 result (see the top).
inline Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                     std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0},
                     std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  return detail::conv2d_op(x, w, b, stride, padding, dilation, groups, false);
}

/// relu(conv2d(x, w, b, ...)) with the ReLU fused into the forward kernel's output store (no
/// extra pass over out); when a gradient is needed, relu(conv2d(...)).
inline Tensor conv2d_relu(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(),
                          std::array<int64_t, 2> stride = {1, 1}, std::array<int64_t, 2> padding = {0, 0},
                          std::array<int64_t, 2> dilation = {1, 1}, int64_t groups = 1) {
  return detail::conv2d_op(x, w, b, stride, padding, dilation, groups, true);
}

}  // namespace strata
