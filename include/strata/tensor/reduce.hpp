// Reductions: sum mean amax amin max min argmax argmin var std logsumexp, and sum_to.
//
// Every reduction takes a list of dims (negative counts from the end, empty = all dims) and
// keepdim (keep reduced dims as size 1), like torch.sum(x, dim, keepdim). Math, for x reduced to
// out over N elements per output, dout the incoming gradient broadcast back over the reduced dims:
//   sum:   out = sum x                      dx = dout
//   mean:  out = sum x / N                  dx = dout / N          (mean of nothing is NaN)
//   amax:  out = max x                      dx = dout * [x == out] / #[x == out]   (ties share)
//   max(x, dim): (values, indices)          dx = dout at the index (PyTorch's max(dim))
//   var:   out = sum (x - mean)^2 / (N - c), c = 1 if unbiased      dx = dout * 2 (x - mean) / (N - c)
//   std:   sqrt(var)                        (composite: dx = dvar / (2 std))
//   logsumexp: m + log sum exp(x - m), m = max x (inf m taken as 0)  (composite: dx = dout * softmax)
// Dtypes (PyTorch's rules): sum of integers or bool accumulates in and returns int64; f16/bf16
// accumulate in float and return their own dtype; mean, var and std need a floating dtype;
// max/min/argmax/argmin take every dtype; logsumexp promotes integers to float32.
// Empty reductions: sum gives 0, mean and var NaN, logsumexp -inf, and max/min/argmax/argmin of
// an empty dim throw. Kernels (and their accuracy notes) live in kernels/cpu/reduce.hpp; on cuda,
// sum_fwd, extremum_fwd and arg_extremum_fwd call the cuda hooks below, which
// backend/cuda/reduce.hpp fills (kernels/cuda/reduce.cuh); the composites follow from those.
#pragma once

#include <limits>
#include <utility>
#include <vector>

#include "kernels/cpu/reduce.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/unary.hpp"

namespace strata {

namespace detail {

/// Bit d set = dim d is reduced. Empty dims = all dims; negative dims wrap; repeats throw.
inline uint32_t reduce_mask(const Tensor& x, const std::vector<int64_t>& dims, std::string_view op) {
  const int nd = x.dim();
  STRATA_CHECK(nd <= cpu::kMaxDims, op, "got shape ", x.shape(), ", expected at most ", cpu::kMaxDims, " dims");
  if (dims.empty()) return nd == 0 ? 0u : uint32_t((uint64_t(1) << nd) - 1);
  uint32_t mask = 0;
  const int n = nd > 0 ? nd : 1;  // a 0-dim tensor accepts dim 0 and -1, like PyTorch
  for (int64_t d : dims) {
    STRATA_CHECK(d >= -n && d < n, op, "got dim ", d, " for a tensor of shape ", x.shape(),
                 ", expected a dim in [", -n, ", ", n - 1, "]");
    if (nd == 0) continue;
    const int w = int(d < 0 ? d + n : d);
    STRATA_CHECK(!(mask >> w & 1u), op, "got dim ", d, " more than once for shape ", x.shape(),
                 ", expected distinct dims");
    mask |= 1u << w;
  }
  return mask;
}

/// One dim, wrapped, with the shape in the error message.
inline int reduce_dim(const Tensor& x, int64_t dim, std::string_view op) {
  const int n = x.dim() > 0 ? x.dim() : 1;
  STRATA_CHECK(dim >= -n && dim < n, op, "got dim ", dim, " for a tensor of shape ", x.shape(),
               ", expected a dim in [", -n, ", ", n - 1, "]");
  return int(dim < 0 ? dim + n : dim);
}

inline Shape reduced_shape(const Shape& s, uint32_t mask, bool keepdim) {
  Shape out;
  for (int d = 0; d < s.dim(); ++d) {
    if (!(mask >> d & 1u)) out.push_back(s[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

inline int64_t reduced_numel(const Shape& s, uint32_t mask) {
  int64_t n = 1;
  for (int d = 0; d < s.dim(); ++d)
    if (mask >> d & 1u) n *= s[d];
  return n;
}

inline std::vector<int64_t> mask_dims(uint32_t mask, int ndim) {
  std::vector<int64_t> dims;
  for (int d = 0; d < ndim; ++d)
    if (mask >> d & 1u) dims.push_back(d);
  return dims;
}

inline cpu::ReduceGeom reduce_geom(const Tensor& x, uint32_t mask) {
  return cpu::make_reduce_geom(x.dim(), x.shape().data(), x.strides().data(), mask);
}

/// A reduction's gradient (or output) viewed with the reduced dims as size 1, so it broadcasts over x.
inline Tensor keep_reduced(const Tensor& t, const Shape& in, uint32_t mask) {
  return reshape(t, reduced_shape(in, mask, true));
}

/// Throws unless every reduced dim is non-empty (max/min/arg of nothing are undefined).
inline void check_nonempty(const Tensor& x, uint32_t mask, std::string_view op) {
  if (x.dim() == 0) return;
  for (int d = 0; d < x.dim(); ++d)
    STRATA_CHECK(!(mask >> d & 1u) || x.shape()[d] > 0, op, "got shape ", x.shape(), " reducing dim ", d,
                 " of size 0, expected non-empty reduced dims");
}

inline void check_floating(const Tensor& x, std::string_view op) {
  STRATA_CHECK(is_floating(x.dtype()), op, "got dtype ", x.dtype(), " for a tensor of shape ", x.shape(),
               ", expected a floating dtype (convert integers with .to(DType::f32))");
}

}  // namespace detail

// ---------------------------------------------------------------- sum, mean

namespace detail {
/// out = scale * (sum of x over the masked dims) on cuda; out allocated as sum_fwd says.
inline CudaHook<void(const Tensor& out, const Tensor& x, uint32_t mask, double scale)> cuda_sum_hook{"sum"};
}  // namespace detail

/// scale * (sum over the masked dims); floating x keeps its dtype, integers and bool give int64.
inline Tensor sum_fwd(const Tensor& x, uint32_t mask, bool keepdim, double scale = 1.0) {
  const DType od = is_floating(x.dtype()) ? x.dtype() : DType::i64;
  Tensor out = Tensor::empty(detail::reduced_shape(x.shape(), mask, keepdim), od, x.device());
  if (x.device().is_cuda()) {
    detail::cuda_sum_hook(out, x, mask, scale);
    return out;
  }
  const cpu::ReduceGeom g = detail::reduce_geom(x, mask);
  dispatch_all(x.dtype(), "sum", [&]<class T>(type_tag<T>) {
    using A = acc_t<T>;
    if constexpr (std::is_floating_point_v<compute_t<T>>) {
      const A s = A(scale);
      cpu::reduce_kernel<T, A>(g, x.data_ptr<T>(), out.data_ptr<T>(), cpu::SumOp{},
                               [s](A a) { return cast_value<T>(A(a * s)); });
    } else {
      cpu::reduce_kernel<T, A>(g, x.data_ptr<T>(), out.data_ptr<int64_t>(), cpu::SumOp{},
                               [](A a) { return int64_t(a); });
    }
  });
  return out;
}

/// dx = dout * scale, broadcast back over the reduced dims (a view, no copy when scale == 1).
inline Tensor sum_bwd(const Tensor& dout, const Shape& in, uint32_t mask, double scale = 1.0) {
  const Tensor g = scale == 1.0 ? dout : mul(dout, scale);
  return expand(detail::keep_reduced(g, in, mask), in);
}

/// Sum over `dims` (empty = all).
inline Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false) {
  const uint32_t mask = detail::reduce_mask(x, dims, "sum");
  const Shape in = x.shape();
  return record("sum_backward", sum_fwd(x, mask, keepdim), {x},
                [in, mask](const Tensor& dout) { return std::vector{sum_bwd(dout, in, mask)}; });
}
/// Sum of all elements (0-dim).
inline Tensor sum(const Tensor& x) { return sum(x, {}, false); }

/// Mean over `dims` (empty = all); floating dtypes only.
inline Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false) {
  detail::check_floating(x, "mean");
  const uint32_t mask = detail::reduce_mask(x, dims, "mean");
  const double scale = 1.0 / double(detail::reduced_numel(x.shape(), mask));  // inf for N = 0: NaN
  const Shape in = x.shape();
  return record("mean_backward", sum_fwd(x, mask, keepdim, scale), {x},
                [in, mask, scale](const Tensor& dout) { return std::vector{sum_bwd(dout, in, mask, scale)}; });
}
inline Tensor mean(const Tensor& x) { return mean(x, {}, false); }

/// Sums x down to `shape`, which must broadcast to x's shape (the gradient of a broadcast): leading
/// dims and dims where shape has 1 are summed away. Returns x itself when the shapes are equal.
inline Tensor sum_to(const Tensor& x, const Shape& shape) {
  if (x.shape() == shape) return x;
  const int lead = x.dim() - shape.dim();
  STRATA_CHECK(lead >= 0, "sum_to", "got shape ", x.shape(), " to sum to ", shape,
               ", expected a shape that broadcasts to it");
  std::vector<int64_t> dims;
  for (int i = 0; i < x.dim(); ++i) {
    if (i < lead) {
      dims.push_back(i);
      continue;
    }
    const int64_t want = shape[i - lead];
    STRATA_CHECK(want == x.shape()[i] || want == 1, "sum_to", "got shape ", x.shape(), " to sum to ", shape,
                 ", expected a shape that broadcasts to it (sizes equal or 1 at dim ", i, ")");
    if (want == 1 && x.shape()[i] != 1) dims.push_back(i);
  }
  if (dims.empty()) return reshape(x, shape);
  return reshape(sum(x, dims, true), shape);
}

// ---------------------------------------------------------------- amax, amin, max, min

namespace detail {
/// out = max (amax) / min (amin) of x over the masked dims on cuda (non-empty, checked before).
inline CudaHook<void(const Tensor& out, const Tensor& x, uint32_t mask)> cuda_amax_hook{"amax"};
inline CudaHook<void(const Tensor& out, const Tensor& x, uint32_t mask)> cuda_amin_hook{"amin"};
/// indices (int64) and values (same dtype as x; undefined when not wanted) of the max / min along
/// the one masked dim (mask 0 for a 0-dim x) on cuda; first index on ties, NaN counts as the max.
inline CudaHook<void(const Tensor& values, const Tensor& indices, const Tensor& x, uint32_t mask)>
    cuda_argmax_hook{"argmax"};
inline CudaHook<void(const Tensor& values, const Tensor& indices, const Tensor& x, uint32_t mask)>
    cuda_argmin_hook{"argmin"};
}  // namespace detail

/// Max (kMax) or min over the masked dims, same dtype as x; NaN propagates.
template <bool kMax>
Tensor extremum_fwd(const Tensor& x, uint32_t mask, bool keepdim, std::string_view name) {
  detail::check_nonempty(x, mask, name);
  Tensor out = Tensor::empty(detail::reduced_shape(x.shape(), mask, keepdim), x.dtype(), x.device());
  if (x.device().is_cuda()) {
    (kMax ? detail::cuda_amax_hook : detail::cuda_amin_hook)(out, x, mask);
    return out;
  }
  const cpu::ReduceGeom g = detail::reduce_geom(x, mask);
  dispatch_all(x.dtype(), name, [&]<class T>(type_tag<T>) {
    using A = compute_t<T>;
    cpu::reduce_kernel<T, A>(g, x.data_ptr<T>(), out.data_ptr<T>(), cpu::ExtremumOp<kMax>{},
                             [](A a) { return cast_value<T>(a); });
  });
  return out;
}

/// dx = dout * [x == out] / #[x == out]: the gradient is shared evenly among tied extrema.
inline Tensor extremum_bwd(const Tensor& dout, const Tensor& x, const Tensor& out, uint32_t mask) {
  const Tensor hit = to(eq(x, detail::keep_reduced(out, x.shape(), mask)), dout.dtype());
  const Tensor count = sum_fwd(hit, mask, true);
  return mul(div(detail::keep_reduced(dout, x.shape(), mask), count), hit);
}

namespace detail {
template <bool kMax>
Tensor extremum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* name) {
  const uint32_t mask = reduce_mask(x, dims, name);
  Tensor out = extremum_fwd<kMax>(x, mask, keepdim, name);
  const Saved xd = x, od = out;
  return record(kMax ? "amax_backward" : "amin_backward", out, {x}, [xd, od, mask](const Tensor& dout) {
    return std::vector{extremum_bwd(dout, xd, od, mask)};
  });
}
}  // namespace detail

/// Max over `dims` (empty = all); ties share the gradient evenly. Throws for an empty reduced dim.
inline Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  return detail::extremum<true>(x, dims, keepdim, "amax");
}
/// Min over `dims` (empty = all); ties share the gradient evenly.
inline Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false) {
  return detail::extremum<false>(x, dims, keepdim, "amin");
}
/// The largest element (0-dim); ties share the gradient evenly, as in PyTorch.
inline Tensor max(const Tensor& x) { return detail::extremum<true>(x, {}, false, "max"); }
/// The smallest element (0-dim).
inline Tensor min(const Tensor& x) { return detail::extremum<false>(x, {}, false, "min"); }

namespace detail {
/// (values, int64 indices) of the max/min along one dim; the first index on ties.
template <bool kMax>
std::pair<Tensor, Tensor> arg_extremum_fwd(const Tensor& x, int64_t dim, bool keepdim, bool want_values,
                                           std::string_view name) {
  const int d = reduce_dim(x, dim, name);
  const uint32_t mask = x.dim() == 0 ? 0u : 1u << d;
  check_nonempty(x, mask, name);
  const Shape os = reduced_shape(x.shape(), mask, keepdim);
  Tensor idx = Tensor::empty(os, DType::i64, x.device());
  Tensor vals = want_values ? Tensor::empty(os, x.dtype(), x.device()) : Tensor();
  if (x.device().is_cuda()) {
    (kMax ? cuda_argmax_hook : cuda_argmin_hook)(vals, idx, x, mask);
    return {vals, idx};
  }
  const cpu::ReduceGeom g = reduce_geom(x, mask);
  dispatch_all(x.dtype(), name, [&]<class T>(type_tag<T>) {
    cpu::arg_reduce_kernel<T, kMax>(g, x.data_ptr<T>(), want_values ? vals.data_ptr<T>() : nullptr,
                                    idx.data_ptr<int64_t>());
  });
  return {vals, idx};
}

template <bool kMax>
std::pair<Tensor, Tensor> extremum_with_indices(const Tensor& x, int64_t dim, bool keepdim, const char* name) {
  auto [vals, idx] = arg_extremum_fwd<kMax>(x, dim, keepdim, true, name);
  if (x.dim() == 0) return {record(kMax ? "max_backward" : "min_backward", vals, {x}, [](const Tensor& dout) { return std::vector{dout}; }), idx};
  const int d = reduce_dim(x, dim, name);
  const Shape in = x.shape();
  const Saved id = idx;
  vals = record(kMax ? "max_backward" : "min_backward", vals, {x}, [in, d, id](const Tensor& dout) {
    // one-hot along dim d: position == index
    Shape ps(in.size(), 1);
    ps[size_t(d)] = in[size_t(d)];
    const TensorOptions po{.dtype = DType::i64, .device = dout.device()};
    const Tensor pos = reshape(arange(0.0, double(in[size_t(d)]), 1.0, po), ps);
    const Tensor hit = eq(pos, keep_reduced(id, in, 1u << d));
    return std::vector{mul(keep_reduced(dout, in, 1u << d), to(hit, dout.dtype()))};
  });
  return {vals, idx};
}
}  // namespace detail

/// (values, indices) of the max along `dim`, like torch.max(x, dim); the gradient goes to the index.
inline std::pair<Tensor, Tensor> max_with_indices(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::extremum_with_indices<true>(x, dim, keepdim, "max");
}
inline std::pair<Tensor, Tensor> min_with_indices(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::extremum_with_indices<false>(x, dim, keepdim, "min");
}
/// Max values along `dim` (torch.max(x, dim).values).
inline Tensor max(const Tensor& x, int64_t dim, bool keepdim = false) { return max_with_indices(x, dim, keepdim).first; }
inline Tensor min(const Tensor& x, int64_t dim, bool keepdim = false) { return min_with_indices(x, dim, keepdim).first; }

/// Index of the max along `dim` (int64, first on ties; NaN counts as the max).
inline Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::arg_extremum_fwd<true>(x, dim, keepdim, false, "argmax").second;
}
inline Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false) {
  return detail::arg_extremum_fwd<false>(x, dim, keepdim, false, "argmin").second;
}
/// Index of the max in the flattened tensor (0-dim int64).
inline Tensor argmax(const Tensor& x) {
  STRATA_CHECK(x.numel() > 0, "argmax", "got an empty tensor of shape ", x.shape(), ", expected at least one element");
  return argmax(reshape(detach(x), {-1}), 0);
}
inline Tensor argmin(const Tensor& x) {
  STRATA_CHECK(x.numel() > 0, "argmin", "got an empty tensor of shape ", x.shape(), ", expected at least one element");
  return argmin(reshape(detach(x), {-1}), 0);
}

// ---------------------------------------------------------------- var, std, logsumexp

/// Variance over the masked dims (two passes: mean, then mean squared deviation); also returns
/// the keepdim mean. f16/bf16 are computed in float32.
inline std::pair<Tensor, Tensor> var_fwd(const Tensor& x, uint32_t mask, bool unbiased, bool keepdim) {
  const Tensor xf = x.dtype() == DType::f16 || x.dtype() == DType::bf16 ? to(detach(x), DType::f32) : detach(x);
  const int64_t n = detail::reduced_numel(x.shape(), mask);
  const Tensor m = sum_fwd(xf, mask, true, 1.0 / double(n));
  const Tensor dev = sub(xf, m);
  const double divisor = double(std::max<int64_t>(0, n - (unbiased ? 1 : 0)));
  const Tensor v = sum_fwd(mul(dev, dev), mask, keepdim, 1.0 / divisor);  // 0 * inf = NaN when N <= c
  return {to(v, x.dtype()), m};
}

/// Variance over `dims` (empty = all), unbiased (divide by N - 1) by default.
inline Tensor var(const Tensor& x, const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false) {
  detail::check_floating(x, "var");
  const uint32_t mask = detail::reduce_mask(x, dims, "var");
  auto [v, m] = var_fwd(x, mask, unbiased, keepdim);
  const int64_t n = detail::reduced_numel(x.shape(), mask);
  const double divisor = double(std::max<int64_t>(0, n - (unbiased ? 1 : 0)));
  const Saved xs = x;
  return record("var_backward", v, {x}, [xs, m, mask, divisor](const Tensor& dout) {
    const Tensor& xd = xs.get();
    const Tensor dev = sub(xd, to(m, xd.dtype()));
    return std::vector{mul(detail::keep_reduced(dout, xd.shape(), mask), mul(dev, 2.0 / divisor))};
  });
}

/// Standard deviation: sqrt(var(x, dims, unbiased, keepdim)).
inline Tensor std(const Tensor& x, const std::vector<int64_t>& dims = {}, bool unbiased = true, bool keepdim = false) {
  detail::check_floating(x, "std");
  return sqrt(var(x, dims, unbiased, keepdim));
}

/// log(sum(exp(x))) over `dims`, computed as m + log(sum(exp(x - m))) with m the max (0 where m
/// is infinite), so it neither overflows nor underflows; the gradient is softmax(x) over the dims.
inline Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false) {
  const uint32_t mask = detail::reduce_mask(x, dims, "logsumexp");
  const Tensor xf = is_floating(x.dtype()) ? x : to(x, DType::f32);
  const Shape os = detail::reduced_shape(x.shape(), mask, keepdim);
  if (detail::reduced_numel(x.shape(), mask) == 0)
    return full(os, -std::numeric_limits<double>::infinity(), options_of(xf));
  Tensor m = extremum_fwd<true>(detach(xf), mask, true, "logsumexp");
  m = where(eq(abs(m), std::numeric_limits<double>::infinity()), 0.0, m);
  const Tensor out = add(log(sum(exp(sub(xf, m)), detail::mask_dims(mask, x.dim()), true)), m);
  return keepdim ? out : reshape(out, os);
}

// ---------------------------------------------------------------- methods

inline Tensor Tensor::sum() const { return strata::sum(*this); }
inline Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const { return strata::sum(*this, dims, keepdim); }
inline Tensor Tensor::mean() const { return strata::mean(*this); }
inline Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const { return strata::mean(*this, dims, keepdim); }
inline Tensor Tensor::max() const { return strata::max(*this); }
inline Tensor Tensor::max(int64_t dim, bool keepdim) const { return strata::max(*this, dim, keepdim); }
inline Tensor Tensor::min() const { return strata::min(*this); }
inline Tensor Tensor::min(int64_t dim, bool keepdim) const { return strata::min(*this, dim, keepdim); }
inline Tensor Tensor::argmax() const { return strata::argmax(*this); }
inline Tensor Tensor::argmax(int64_t dim, bool keepdim) const { return strata::argmax(*this, dim, keepdim); }
inline Tensor Tensor::var(const std::vector<int64_t>& dims, bool unbiased, bool keepdim) const {
  return strata::var(*this, dims, unbiased, keepdim);
}
inline Tensor Tensor::std(const std::vector<int64_t>& dims, bool unbiased, bool keepdim) const {
  return strata::std(*this, dims, unbiased, keepdim);
}

}  // namespace strata
