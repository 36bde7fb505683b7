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
// layer_norm, x [..., *normalized_shape], over the last normalized_shape.size() dims of each row:
//   y = (x - mean) / sqrt(var + eps) * weight + bias         (weight, bias of normalized_shape)
//   backward (g = dy * weight): dx = invstd * (g - mean(g) - xhat mean(g * xhat)),
//     dweight = sum over rows dy * xhat, dbias = sum over rows dy
// Statistics are kept in float32 (float64 for float64 x); weight, bias and running stats may have
// another floating dtype than x (float32 parameters for a bfloat16 x). Both backwards are one fused
// kernel each, not a chain of ops. Kernels and reference loops: kernels/cpu/batchnorm.hpp.
// References: Ioffe & Szegedy 2015 (batch norm); Ba, Kiros & Hinton 2016 (layer norm).
#pragma once

#include <vector>

#include "kernels/cpu/batchnorm.hpp"
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

/// [B, C, S] sizes of a batch-norm input.
inline void batch_norm_sizes(const Shape& s, int64_t& B, int64_t& C, int64_t& S) {
  B = s[0], C = s[1], S = 1;
  for (size_t i = 2; i < s.size(); ++i) S *= s[i];
}

}  // namespace detail

/// Batch norm forward: (y, mean, var, invstd), the last three [C] in the statistics dtype. training:
/// batch statistics; else mean = running_mean, var = running_var (copied). weight, bias may be undefined.
inline std::vector<Tensor> batch_norm_fwd(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                                          const Tensor& weight, const Tensor& bias, bool training, double eps) {
  int64_t B, C, S;
  detail::batch_norm_sizes(x.shape(), B, C, S);
  const DType st = detail::norm_stat_dtype(x);
  const Tensor xc = contiguous(detach(x)), w = detail::norm_param(weight, st), b = detail::norm_param(bias, st);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = training ? Tensor::empty({C}, st, x.device()) : clone(detail::norm_param(running_mean, st));
  Tensor var = training ? Tensor::empty({C}, st, x.device()) : clone(detail::norm_param(running_var, st));
  Tensor invstd = Tensor::empty({C}, st, x.device());
  dispatch_float(x.dtype(), "batch_norm", [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    cpu::batch_norm_fwd_kernel<T, A>(xc.data_ptr<T>(), y.data_ptr<T>(), detail::ptr_or_null<A>(w),
                                     detail::ptr_or_null<A>(b), mean.data_ptr<A>(), var.data_ptr<A>(),
                                     invstd.data_ptr<A>(), B, C, S, eps, training);
  });
  return {y, mean, var, invstd};
}

/// Batch norm backward: {dx, dweight, dbias} from the forward's mean and invstd; each only where its
/// `need` flag is set (else undefined). dweight and dbias come in the statistics dtype.
inline std::vector<Tensor> batch_norm_bwd(const Tensor& dout, const Tensor& x, const Tensor& weight, const Tensor& mean,
                                          const Tensor& invstd, bool training, std::array<bool, 3> need) {
  STRATA_CHECK(dout.shape() == x.shape(), "batch_norm_backward", "got dout of shape ", dout.shape(),
               " for x of shape ", x.shape(), ", expected equal shapes");
  int64_t B, C, S;
  detail::batch_norm_sizes(x.shape(), B, C, S);
  const DType st = mean.dtype();
  const Tensor xc = contiguous(x), dc = contiguous(to(detach(dout), x.dtype())), w = detail::norm_param(weight, st);
  Tensor dx = need[0] ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
  Tensor dw = need[1] ? Tensor::empty({C}, st, x.device()) : Tensor();
  Tensor db = need[2] ? Tensor::empty({C}, st, x.device()) : Tensor();
  dispatch_float(x.dtype(), "batch_norm_backward", [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    cpu::batch_norm_bwd_kernel<T, A>(dc.data_ptr<T>(), xc.data_ptr<T>(), detail::ptr_or_null<A>(w), mean.data_ptr<A>(),
                                     invstd.data_ptr<A>(), detail::ptr_or_null<T>(dx), detail::ptr_or_null<A>(dw),
                                     detail::ptr_or_null<A>(db), B, C, S, training);
  });
  return {dx, dw, db};
}

/// Batch normalization over dim 1 of x [B, C, ...]. training: batch statistics (biased variance),
/// and running_mean/running_var, when defined, updated in place with the unbiased variance:
/// running = (1 - momentum) * running + momentum * stat. eval: running statistics. weight and
/// bias ([C]) may be undefined.
inline Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var, const Tensor& weight,
                         const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5) {
  const char* name = "batch_norm";
  STRATA_CHECK(x.dim() >= 2, name, "got x of shape ", x.shape(), ", expected at least 2 dims [B, C, ...]");
  detail::check_floating(x, name);
  const Shape c_shape{x.size(1)};
  detail::check_norm_param(weight, name, "weight", c_shape, x);
  detail::check_norm_param(bias, name, "bias", c_shape, x);
  detail::check_norm_param(running_mean, name, "running_mean", c_shape, x);
  detail::check_norm_param(running_var, name, "running_var", c_shape, x);
  STRATA_CHECK(running_mean.defined() == running_var.defined(), name, "got running_mean ",
               running_mean.defined() ? "defined" : "undefined", " and running_var ",
               running_var.defined() ? "defined" : "undefined", ", expected both or neither");
  STRATA_CHECK(training || running_mean.defined(), name,
               "got training = false without running_mean and running_var, expected running statistics in eval mode");
  const int64_t n = x.size(1) ? x.numel() / x.size(1) : 0;
  STRATA_CHECK(!training || n > 1, name, "got x of shape ", x.shape(),
               " in training mode, expected more than 1 value per channel");
  std::vector<Tensor> r = batch_norm_fwd(x, running_mean, running_var, weight, bias, training, eps);
  if (training && running_mean.defined()) {  // buffers, not part of the graph
    NoGrad ng;
    const Tensor m64 = to(r[1], DType::f64), v64 = mul(to(r[2], DType::f64), double(n) / double(n - 1));
    Tensor rm = running_mean, rv = running_var;
    rm.copy_(add(mul(to(detach(rm), DType::f64), 1.0 - momentum), mul(m64, momentum)));
    rv.copy_(add(mul(to(detach(rv), DType::f64), 1.0 - momentum), mul(v64, momentum)));
  }
  const Saved xs = x, ws = weight;
  const Tensor mean = r[1], invstd = r[3];
  const std::array<bool, 3> need = {x.requires_grad(), weight.defined() && weight.requires_grad(),
                                    bias.defined() && bias.requires_grad()};
  const DType wdt = weight.defined() ? weight.dtype() : x.dtype(), bdt = bias.defined() ? bias.dtype() : x.dtype();
  return record("batch_norm_backward", r[0], {x, weight, bias},
                [xs, ws, mean, invstd, training, need, wdt, bdt](const Tensor& dout) {
                  const Tensor wt = ws.defined() ? ws.get() : Tensor();
                  std::vector<Tensor> g = batch_norm_bwd(dout, xs, wt, mean, invstd, training, need);
                  if (g[1].defined()) g[1] = to(g[1], wdt);
                  if (g[2].defined()) g[2] = to(g[2], bdt);
                  return g;
                });
}

/// Layer norm forward: (y, mean, rstd), mean and rstd [M] (M = rows of N = numel(normalized_shape)).
inline std::vector<Tensor> layer_norm_fwd(const Tensor& x, int64_t N, const Tensor& weight, const Tensor& bias,
                                          double eps) {
  const int64_t M = N ? x.numel() / N : 0;
  const DType st = detail::norm_stat_dtype(x);
  const Tensor xc = contiguous(detach(x)), w = detail::norm_param(weight, st), b = detail::norm_param(bias, st);
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  Tensor mean = Tensor::empty({M}, st, x.device()), rstd = Tensor::empty({M}, st, x.device());
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
