// batch_norm and layer_norm (torch.nn.functional semantics).
//
// batch_norm, x [B, C, ...] (channels at dim 1, any rank >= 2), per channel c over the N values of
// all other dims:
//   training: mean, var = sum (x - mean)^2 / N (biased) of the batch;  eval: running_mean, running_var
//   y = (x - mean) / sqrt(var + eps) * weight + bias        (weight, bias [C], may be undefined)
//   training with running stats: running = (1 - momentum) running + momentum stat, where the
//   variance stat is unbiased (N / (N - 1) var); done in place under NoGrad, not recorded
//   backward (xhat = (x - mean) * invstd):  dbias = sum dy,  dweight = sum dy * xhat,
//     training: dx = weight * invstd / N * (N dy - sum dy - xhat sum(dy * xhat));  eval: dx = weight * invstd * dy
//   layouts: x contiguous ([B][C][S] memory) or channels-last dense (C innermost: x.stride(1) == 1, then the
//   spatial dims, then B) is read in place and y, dx come back in the same layout; any other x is copied
//   to contiguous first.
// batch_norm_relu, the fused y = max(batch_norm(x, ...), 0): the same statistics and running-stat update,
//   y written in one pass after the statistics. It saves x, weight, bias and the [C] statistics, not y
//   or the pre-ReLU value: the backward is batch_norm's with dy masked by y > 0 (g = dy [y > 0], relu's
//   mask), in one fused kernel that recomputes the mask and xhat from x (the CPU kernel computes
//   bn(x) with the forward's own operations, so the same bits and the same mask, and reads no y; cuda
//   reads the mask from y, which the node keeps there).
// layer_norm, x [..., *normalized_shape], over the last normalized_shape.size() dims of each row:
//   y = (x - mean) / sqrt(var + eps) * weight + bias         (weight, bias of normalized_shape)
//   backward (g = dy * weight): dx = invstd * (g - mean(g) - xhat mean(g * xhat)),
//     dweight = sum over rows dy * xhat, dbias = sum over rows dy
// Statistics are kept in float32 (float64 for float64 x); weight, bias and running stats may have
// another floating dtype than x (float32 parameters for a bfloat16 x). Both backwards are one fused
// kernel each, not a chain of ops. Kernels and reference loops: kernels/cpu/batchnorm.hpp.
// On cuda the kernel calls go to the hooks below (filled by backend/cuda/norm.hpp, kernels/cuda/batchnorm.cuh);
// everything around them (layouts, parameter casts, the running-stat update, the node) is the same.
// References: Ioffe & Szegedy 2015 (batch norm); Ba, Kiros & Hinton 2016 (layer norm).
#pragma once

#include <vector>

#include "kernels/cpu/batchnorm.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

namespace detail {

/// Statistics dtype for x: float64 for float64 x, else float32.
inline DType norm_stat_dtype(const Tensor& x) { return x.dtype() == DType::f64 ? DType::f64 : DType::f32; }

/// A defined parameter as a contiguous tensor of dtype dt (no graph), or an undefined tensor.
inline Tensor norm_param(const Tensor& p, DType dt) { return p.defined() ? contiguous(to(detach(p), dt)) : Tensor(); }

/// t's data, or null for an undefined tensor (an optional kernel argument).
template <class A>
A* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<A>() : nullptr;
}

/// Checks that an optional per-channel (or per-feature) tensor is floating with shape `want`.
inline void check_norm_param(const Tensor& p, const char* op, const char* what, const Shape& want, const Tensor& x) {
  if (!p.defined()) return;
  STRATA_CHECK(p.shape() == want, op, "got ", what, " of shape ", p.shape(), " for x of shape ", x.shape(),
               ", expected shape ", want);
  STRATA_CHECK(is_floating(p.dtype()), op, "got ", what, " of dtype ", p.dtype(), ", expected a floating dtype");
}

/// [B, C, S] sizes of a batch-norm input, in the layout `channels_last` says.
inline cpu::BatchNormDims batch_norm_dims(const Shape& s, bool channels_last, bool relu) {
  cpu::BatchNormDims d{.B = s[0], .C = s[1], .S = 1, .channels_last = channels_last, .relu = relu};
  for (size_t i = 2; i < s.size(); ++i) d.S *= s[i];
  return d;
}

/// Whether x [B, C, ...] (3 dims or more) is dense with C innermost: x.stride(1) == 1, then the
/// spatial dims from the last, then B (size-1 dims may have any stride).
inline bool is_channels_last_dense(const Tensor& x) {
  if (x.dim() < 3 || x.is_contiguous()) return false;
  int64_t expect = 1;
  auto next = [&](int d) {
    const bool ok = x.size(d) == 1 || x.stride(d) == expect;
    expect *= x.size(d);
    return ok;
  };
  bool ok = next(1);
  for (int d = x.dim() - 1; d >= 2; --d) ok = ok && next(d);
  return ok && next(0);
}

/// The dims order [B, spatial..., C] of a channels-last tensor of rank n, and its inverse.
inline std::vector<int64_t> channels_last_order(int n, bool inverse) {
  std::vector<int64_t> p{0};
  if (inverse) p.push_back(n - 1);
  for (int d = inverse ? 1 : 2; d < (inverse ? n - 1 : n); ++d) p.push_back(d);
  if (!inverse) p.push_back(1);
  return p;
}

/// t (no graph) in the layout the kernels read: contiguous, or channels-last dense when `channels_last`
/// (a copy only where t is not that already).
inline Tensor norm_in_layout(const Tensor& t, bool channels_last) {
  if (!channels_last) return contiguous(detach(t));
  if (is_channels_last_dense(t)) return detach(t);
  const int n = t.dim();
  return permute(contiguous(permute(detach(t), channels_last_order(n, false))), channels_last_order(n, true));
}

/// An uninitialised tensor of `shape` in the layout `channels_last` says.
inline Tensor norm_empty(const Shape& shape, DType dt, Device dev, bool channels_last) {
  if (!channels_last) return Tensor::empty(shape, dt, dev);
  const int n = int(shape.size());
  Shape s;
  for (int64_t d : channels_last_order(n, false)) s.push_back(shape[size_t(d)]);
  return permute(Tensor::empty(s, dt, dev), channels_last_order(n, true));
}

/// The cuda kernels' calls: the tensors as the CPU kernels get them (undefined for a null argument).
inline CudaHook<void(const Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b, const Tensor& mean,
                     const Tensor& var, const Tensor& invstd, const cpu::BatchNormDims& d, double eps, bool training)>
    cuda_batch_norm_fwd_hook{"batch_norm"};
inline CudaHook<void(const Tensor& dout, const Tensor& x, const Tensor& y, const Tensor& w, const Tensor& mean,
                     const Tensor& invstd, const Tensor& dx, const Tensor& dw, const Tensor& db,
                     const cpu::BatchNormDims& d, bool training)>
    cuda_batch_norm_bwd_hook{"batch_norm_backward"};
inline CudaHook<void(const Tensor& x, const Tensor& y, const Tensor& w, const Tensor& b, const Tensor& mean,
                     const Tensor& rstd, int64_t M, int64_t N, double eps)>
    cuda_layer_norm_fwd_hook{"layer_norm"};
inline CudaHook<void(const Tensor& dout, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd,
                     const Tensor& dx, const Tensor& dw, const Tensor& db, int64_t M, int64_t N)>
    cuda_layer_norm_bwd_hook{"layer_norm_backward"};

}  // namespace detail

/// Batch norm forward: (y, mean, var, invstd), the last three [C] in the statistics dtype. training:
/// batch statistics; else mean = running_mean, var = running_var (copied). weight, bias may be undefined.
/// relu: y = max(y, 0). y comes in x's layout when x is channels-last dense, else contiguous.
inline std::vector<Tensor> batch_norm_fwd(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                                          const Tensor& weight, const Tensor& bias, bool training, double eps,
                                          bool relu = false) {
  const bool cl = detail::is_channels_last_dense(x);
  const cpu::BatchNormDims d = detail::batch_norm_dims(x.shape(), cl, relu);
  const DType st = detail::norm_stat_dtype(x);
  const Tensor xc = detail::norm_in_layout(x, cl), w = detail::norm_param(weight, st), b = detail::norm_param(bias, st);
  Tensor y = detail::norm_empty(x.shape(), x.dtype(), x.device(), cl);
  Tensor mean = training ? Tensor::empty({d.C}, st, x.device()) : clone(detail::norm_param(running_mean, st));
  Tensor var = training ? Tensor::empty({d.C}, st, x.device()) : clone(detail::norm_param(running_var, st));
  Tensor invstd = Tensor::empty({d.C}, st, x.device());
  if (x.device().is_cuda()) {
    detail::cuda_batch_norm_fwd_hook(xc, y, w, b, mean, var, invstd, d, eps, training);
    return {y, mean, var, invstd};
  }
  dispatch_float(x.dtype(), relu ? "batch_norm_relu" : "batch_norm", [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    cpu::batch_norm_fwd_kernel<T, A>(xc.data_ptr<T>(), y.data_ptr<T>(), detail::ptr_or_null<A>(w),
                                     detail::ptr_or_null<A>(b), mean.data_ptr<A>(), var.data_ptr<A>(),
                                     invstd.data_ptr<A>(), d, eps, training);
  });
  return {y, mean, var, invstd};
}

/// Batch norm backward: {dx, dweight, dbias} from the forward's mean and invstd; each only where its
/// `need` flag is set (else undefined). dweight and dbias come in the statistics dtype. relu: the fused
/// ReLU's backward, dout masked by the forward's y > 0: the CPU recomputes it from x, weight and bias
/// (the forward's; y is not read), cuda reads it from y, the forward's output (needed there). dx comes
/// in x's layout when x is channels-last dense (dout and y are brought to it), else contiguous.
inline std::vector<Tensor> batch_norm_bwd(const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& bias,
                                          const Tensor& mean, const Tensor& invstd, bool training,
                                          std::array<bool, 3> need, bool relu = false, const Tensor& y = Tensor()) {
  const char* name = relu ? "batch_norm_relu_backward" : "batch_norm_backward";
  STRATA_CHECK(dout.shape() == x.shape(), name, "got dout of shape ", dout.shape(), " for x of shape ", x.shape(),
               ", expected equal shapes");
  STRATA_CHECK(!y.defined() || y.shape() == x.shape(), name, "got y of shape ", y.shape(), " for x of shape ",
               x.shape(), ", expected equal shapes");
  const bool cl = detail::is_channels_last_dense(x);
  const cpu::BatchNormDims d = detail::batch_norm_dims(x.shape(), cl, relu);
  const DType st = mean.dtype();
  const Tensor xc = detail::norm_in_layout(x, cl), dc = detail::norm_in_layout(to(detach(dout), x.dtype()), cl);
  const Tensor w = detail::norm_param(weight, st), b = relu ? detail::norm_param(bias, st) : Tensor();
  Tensor dx = need[0] ? detail::norm_empty(x.shape(), x.dtype(), x.device(), cl) : Tensor();
  Tensor dw = need[1] ? Tensor::empty({d.C}, st, x.device()) : Tensor();
  Tensor db = need[2] ? Tensor::empty({d.C}, st, x.device()) : Tensor();
  if (x.device().is_cuda()) {
    STRATA_CHECK(!relu || y.defined(), name, "got relu = true and no y on cuda, expected the forward's output y");
    const Tensor yc = relu ? detail::norm_in_layout(y, cl) : Tensor();
    detail::cuda_batch_norm_bwd_hook(dc, xc, yc, w, mean, invstd, dx, dw, db, d, training);
    return {dx, dw, db};
  }
  dispatch_float(x.dtype(), name, [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    cpu::batch_norm_bwd_kernel<T, A>(dc.data_ptr<T>(), xc.data_ptr<T>(), nullptr, detail::ptr_or_null<A>(w),
                                     detail::ptr_or_null<A>(b), mean.data_ptr<A>(), invstd.data_ptr<A>(),
                                     detail::ptr_or_null<T>(dx), detail::ptr_or_null<A>(dw),
                                     detail::ptr_or_null<A>(db), d, training);
  });
  return {dx, dw, db};
}

namespace detail {

/// batch_norm (relu = false) and batch_norm_relu: checks, forward, the running-stat update, the node.
inline Tensor batch_norm_op(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                            const Tensor& weight, const Tensor& bias, bool training, double momentum, double eps,
                            bool relu) {
  const char* name = relu ? "batch_norm_relu" : "batch_norm";
  STRATA_CHECK(x.dim() >= 2, name, "got x of shape ", x.shape(), ", expected at least 2 dims [B, C, ...]");
  check_floating(x, name);
  const Shape c_shape{x.size(1)};
  check_norm_param(weight, name, "weight", c_shape, x);
  check_norm_param(bias, name, "bias", c_shape, x);
  check_norm_param(running_mean, name, "running_mean", c_shape, x);
  check_norm_param(running_var, name, "running_var", c_shape, x);
  STRATA_CHECK(running_mean.defined() == running_var.defined(), name, "got running_mean ",
               running_mean.defined() ? "defined" : "undefined", " and running_var ",
               running_var.defined() ? "defined" : "undefined", ", expected both or neither");
  STRATA_CHECK(training || running_mean.defined(), name,
               "got training = false without running_mean and running_var, expected running statistics in eval mode");
  const int64_t n = x.size(1) ? x.numel() / x.size(1) : 0;
  STRATA_CHECK(!training || n > 1, name, "got x of shape ", x.shape(),
               " in training mode, expected more than 1 value per channel");
  std::vector<Tensor> r = batch_norm_fwd(x, running_mean, running_var, weight, bias, training, eps, relu);
  if (training && running_mean.defined()) {  // buffers, not part of the graph
    NoGrad ng;
    const Tensor m64 = to(r[1], DType::f64), v64 = mul(to(r[2], DType::f64), double(n) / double(n - 1));
    Tensor rm = running_mean, rv = running_var;
    rm.copy_(add(mul(to(detach(rm), DType::f64), 1.0 - momentum), mul(m64, momentum)));
    rv.copy_(add(mul(to(detach(rv), DType::f64), 1.0 - momentum), mul(v64, momentum)));
  }
  if (!any_requires_grad({x, weight, bias})) return r[0];
  // saved: x, weight, bias (the CPU's ReLU mask is recomputed from them) and the [C] statistics; y only
  // for cuda's ReLU mask
  const Saved xs = x, ws = weight, bs = relu ? Saved(bias) : Saved();
  const Saved ys = relu && x.device().is_cuda() ? Saved(r[0]) : Saved();
  const Tensor mean = r[1], invstd = r[3];
  const std::array<bool, 3> need = {x.requires_grad(), weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const DType wdt = weight.defined() ? weight.dtype() : x.dtype(), bdt = bias.defined() ? bias.dtype() : x.dtype();
  return record(relu ? "batch_norm_relu_backward" : "batch_norm_backward", r[0], {x, weight, bias},
                [xs, ws, bs, ys, mean, invstd, training, need, wdt, bdt, relu](const Tensor& dout) {
                  const Tensor wt = ws.defined() ? ws.get() : Tensor(), bt = bs.defined() ? bs.get() : Tensor();
                  const Tensor yt = ys.defined() ? ys.get() : Tensor();
                  std::vector<Tensor> g = batch_norm_bwd(dout, xs, wt, bt, mean, invstd, training, need, relu, yt);
                  if (g[1].defined()) g[1] = to(g[1], wdt);
                  if (g[2].defined()) g[2] = to(g[2], bdt);
                  return g;
                });
}

}  // namespace detail

/// Batch normalization over dim 1 of x [B, C, ...]. training: batch statistics (biased variance),
/// and running_mean/running_var, when defined, updated in place with the unbiased variance:
/// running = (1 - momentum) * running + momentum * stat. eval: running statistics. weight and
/// bias ([C]) may be undefined.
inline Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                         const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5) {
  return detail::batch_norm_op(x, running_mean, running_var, weight, bias, training, momentum, eps, false);
}

/// relu(batch_norm(x, ...)) as one op: the same values, gradients and running-stat update, one
/// activation-sized tensor less kept for the backward (see the top of this file).
inline Tensor batch_norm_relu(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                              const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                              double eps = 1e-5) {
  return detail::batch_norm_op(x, running_mean, running_var, weight, bias, training, momentum, eps, true);
}

/// Layer norm forward: (y, mean, rstd), mean and rstd [M] (M = rows of N = numel(normalized_shape)).
inline std::vector<Tensor> layer_norm_fwd(const Tensor& x, int64_t N, const Tensor& weight, const Tensor& bias,
                                          double eps) {
  const int64_t M = N ? x.numel() / N : 0;
  const DType st = detail::norm_stat_dtype(x);
  const Tensor xc = contiguous(detach(x)), w = detail::norm_param(weight, st), b = detail::norm_param(bias, st);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({M}, st, x.device()), rstd = Tensor::empty({M}, st, x.device());
  if (x.device().is_cuda()) {
    detail::cuda_layer_norm_fwd_hook(xc, y, w, b, mean, rstd, M, N, eps);
    return {y, mean, rstd};
  }
  dispatch_float(x.dtype(), "layer_norm", [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    cpu::layer_norm_fwd_kernel<T, A>(xc.data_ptr<T>(), y.data_ptr<T>(), detail::ptr_or_null<A>(w),
                                     detail::ptr_or_null<A>(b), mean.data_ptr<A>(), rstd.data_ptr<A>(), M, N, eps);
  });
  return {y, mean, rstd};
}

/// Layer norm backward: {dx, dweight, dbias} where `need` says (else undefined); dweight and dbias
/// have shape `param_shape` and the statistics dtype.
inline std::vector<Tensor> layer_norm_bwd(const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                          const Tensor& rstd, const Shape& param_shape, std::array<bool, 3> need) {
  STRATA_CHECK(dout.shape() == x.shape(), "layer_norm_backward", "got dout of shape ", dout.shape(),
               " for x of shape ", x.shape(), ", expected equal shapes");
  const int64_t N = numel(param_shape), M = mean.numel();
  const DType st = mean.dtype();
  const Tensor xc = contiguous(x), dc = contiguous(to(detach(dout), x.dtype())), w = detail::norm_param(weight, st);
  Tensor dx = need[0] ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
  Tensor dw = need[1] ? Tensor::empty(param_shape, st, x.device()) : Tensor();
  Tensor db = need[2] ? Tensor::empty(param_shape, st, x.device()) : Tensor();
  if (x.device().is_cuda()) {
    detail::cuda_layer_norm_bwd_hook(dc, xc, w, mean, rstd, dx, dw, db, M, N);
    return {dx, dw, db};
  }
  dispatch_float(x.dtype(), "layer_norm_backward", [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    cpu::layer_norm_bwd_kernel<T, A>(dc.data_ptr<T>(), xc.data_ptr<T>(), detail::ptr_or_null<A>(w), mean.data_ptr<A>(),
                                     rstd.data_ptr<A>(), detail::ptr_or_null<T>(dx), detail::ptr_or_null<A>(dw),
                                     detail::ptr_or_null<A>(db), M, N);
  });
  return {dx, dw, db};
}

/// Layer normalization of x over its last dims, which must equal normalized_shape; weight and bias
/// (of normalized_shape) may be undefined.
inline Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = Tensor(),
                         const Tensor& bias = Tensor(), double eps = 1e-5) {
  const char* name = "layer_norm";
  detail::check_floating(x, name);
  const int k = normalized_shape.dim();
  bool match = k >= 1 && x.dim() >= k;
  for (int i = 0; match && i < k; ++i) match = x.shape()[size_t(x.dim() - k + i)] == normalized_shape[size_t(i)];
  STRATA_CHECK(match, name, "got x of shape ", x.shape(), " and normalized_shape ", normalized_shape,
               ", expected a non-empty normalized_shape equal to the last dims of x");
  detail::check_norm_param(weight, name, "weight", normalized_shape, x);
  detail::check_norm_param(bias, name, "bias", normalized_shape, x);
  std::vector<Tensor> r = layer_norm_fwd(x, numel(normalized_shape), weight, bias, eps);
  const Saved xs = x, ws = weight;
  const Tensor mean = r[1], rstd = r[2];
  const std::array<bool, 3> need = {x.requires_grad(), weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const DType wdt = weight.defined() ? weight.dtype() : x.dtype(), bdt = bias.defined() ? bias.dtype() : x.dtype();
  return record("layer_norm_backward", r[0], {x, weight, bias},
                [xs, ws, mean, rstd, normalized_shape, need, wdt, bdt](const Tensor& dout) {
                  const Tensor wt = ws.defined() ? ws.get() : Tensor();
                  std::vector<Tensor> g = layer_norm_bwd(dout, xs, wt, mean, rstd, normalized_shape, need);
                  if (g[1].defined()) g[1] = to(g[1], wdt);
                  if (g[2].defined()) g[2] = to(g[2], bdt);
                  return g;
                });
}

}  // namespace strata
