// Broadcasting binary ops: + - * / pow maximum minimum, comparisons, where; in-place add_ sub_ mul_ div_.
//
// out = op(a, b) with a and b broadcast to a common shape (core/shape.hpp) and promoted to a common
// dtype (PyTorch's lattice; a C++ scalar takes the tensor's dtype, or float32 when a floating scalar
// meets an integer tensor; `/` of integers gives float32). Comparisons give bool and no gradient.
// Gradients: d(a+b) = (dout, dout); d(a*b) = (dout*b, dout*a); d(a/b) = (dout/b, -dout*a/b^2);
// d(a^b) = (dout*b*a^(b-1), dout*a^b*ln a); maximum/minimum send dout to the larger/smaller input and
// split it evenly on ties. Each gradient is summed over the dims its input was broadcast along.
#pragma once

#include <cmath>
#include <type_traits>
#include <utility>

#include "strata/tensor/to_device.hpp"
#include "strata/tensor/view.hpp"

namespace strata {

inline Tensor neg(const Tensor& x);  // unary.hpp
inline Tensor log(const Tensor& x);  // unary.hpp
inline Tensor eq(const Tensor& a, const Tensor& b);
inline Tensor lt(const Tensor& a, const Tensor& b);
inline Tensor gt(const Tensor& a, const Tensor& b);
inline Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// ---------------------------------------------------------------- functors (scalar and Vec)
namespace ops {
struct Add { static constexpr EwOp cuda_op = EwOp::add; static constexpr bool vectorized = true; template <class V> V operator()(V a, V b) const { return a + b; } };
struct Sub { static constexpr EwOp cuda_op = EwOp::sub; static constexpr bool vectorized = true; template <class V> V operator()(V a, V b) const { return a - b; } };
struct Mul { static constexpr EwOp cuda_op = EwOp::mul; static constexpr bool vectorized = true; template <class V> V operator()(V a, V b) const { return a * b; } };
struct Div { static constexpr EwOp cuda_op = EwOp::div; static constexpr bool vectorized = true; template <class V> V operator()(V a, V b) const { return a / b; } };
// NaN in either input gives NaN (PyTorch): vmax returns b when one is NaN, select_nan covers a
struct Max { static constexpr EwOp cuda_op = EwOp::max; static constexpr bool vectorized = true; template <class V> V operator()(V a, V b) const { using cpu::vmax; using cpu::select_nan; return select_nan(a, a, vmax(a, b)); } };
struct Min { static constexpr EwOp cuda_op = EwOp::min; static constexpr bool vectorized = true; template <class V> V operator()(V a, V b) const { using cpu::vmin; using cpu::select_nan; return select_nan(a, a, vmin(a, b)); } };
struct Pow { static constexpr EwOp cuda_op = EwOp::pow;
  static constexpr bool vectorized = false;
  template <class V> V operator()(V a, V b) const { return V(std::pow(a, b)); }
};
#define STRATA_CMP(Name, cuda, expr) \
  struct Name { static constexpr EwOp cuda_op = EwOp::cuda; static constexpr bool vectorized = false; template <class V> bool operator()(V a, V b) const { return expr; } };
STRATA_CMP(Eq, eq, a == b)
STRATA_CMP(Ne, ne, a != b)
STRATA_CMP(Lt, lt, a < b)
STRATA_CMP(Le, le, a <= b)
STRATA_CMP(Gt, gt, a > b)
STRATA_CMP(Ge, ge, a >= b)
#undef STRATA_CMP
}  // namespace ops

// ---------------------------------------------------------------- forward (no autograd)

/// out = op(a, b) computed in dtype `compute` (inputs cast to it), result of dtype `result`.
template <class Op>
Tensor binary_fwd(const char* name, const Tensor& a, const Tensor& b, DType compute, DType result, Op op = {}) {
  STRATA_CHECK(a.device() == b.device(), name, "got devices ", a.device(), " and ", b.device(),
               ", expected the same device");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  const Tensor ac = to(detach(a), compute), bc = to(detach(b), compute);
  Tensor out = detail::empty_output(shape, result, a.device(), {&ac, &bc});
  if (out.device().is_cuda()) {
    detail::cuda_elementwise_hook(Op::cuda_op, detail::ew_params(op), out, {&ac, &bc});
    return out;
  }
  auto L = make_loop<3>({&out, &ac, &bc}, name);
  dispatch_numeric(compute, name, [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<std::invoke_result_t<Op, compute_t<T>, compute_t<T>>, bool>) {
      cpu::binary_kernel<bool, T>(L, out.data_ptr<bool>(), ac.data_ptr<T>(), bc.data_ptr<T>(), op);
    } else {
      cpu::binary_kernel<T, T>(L, out.data_ptr<T>(), ac.data_ptr<T>(), bc.data_ptr<T>(), op);
    }
  });
  return out;
}

namespace detail {
/// The gradient for input `x` from a broadcast result's gradient: summed to x's shape, in x's dtype.
inline Tensor grad_for(const Tensor& g, const InputInfo& x) {
  if (!x.requires_grad) return Tensor();
  return to(sum_to(g, x.shape), x.dtype);
}
/// A C++ scalar as a 0-dim tensor that combines with `t` the way PyTorch's Python scalars do.
template <class S>
Tensor wrap_scalar(S s, const Tensor& t) {
  DType d = t.dtype();
  if constexpr (std::is_floating_point_v<S>) {
    if (!is_floating(d)) d = DType::f32;
  } else {
    if (d == DType::b8) d = DType::i64;
    if (is_integral(d)) {  // exact, never through double; a value the dtype cannot hold is an error
      Tensor out = Tensor::empty({}, d, kCPU);  // written on the host, then moved
      dispatch_numeric(d, "scalar", [&]<class T>(type_tag<T>) {
        if constexpr (std::is_integral_v<T>) {
          STRATA_CHECK(std::in_range<T>(s), "scalar", "got ", +s, " with a tensor of dtype ", d,
                       ", expected a value that ", d, " can hold (convert the tensor first)");
          *out.data_ptr<T>() = T(s);
        }
      });
      return t.device().is_cpu() ? out : detail::copy_to_device(out, t.device());
    }
  }
  return full({}, double(s), {.dtype = d, .device = t.device()});
}
}  // namespace detail

/// The dtype of op(a, b) by PyTorch's rule: a 0-dim tensor only decides the dtype when it is of a
/// higher category (bool < integer < floating) than the tensor with dims, so
/// f16[N] + 0-dim f32 gives f16 while i64[N] + 0-dim f32 gives f32.
inline DType result_type(const Tensor& a, const Tensor& b) {
  if ((a.dim() == 0) == (b.dim() == 0)) return promote_types(a.dtype(), b.dtype());
  const Tensor& dimmed = a.dim() ? a : b;
  const Tensor& zero = a.dim() ? b : a;
  auto category = [](DType t) { return is_floating(t) ? 2 : is_integral(t) ? 1 : 0; };
  return category(zero.dtype()) > category(dimmed.dtype()) ? zero.dtype() : dimmed.dtype();
}

template <class S>
concept Scalar = std::is_arithmetic_v<S>;

// ---------------------------------------------------------------- differentiable ops

inline Tensor add(const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  Tensor out = binary_fwd<ops::Add>("add", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  return record("add_backward", out, {a, b}, [a = info(a), b = info(b)](const Tensor& dout) {
    return std::vector{detail::grad_for(dout, a), detail::grad_for(dout, b)};
  });
}

inline Tensor sub(const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  Tensor out = binary_fwd<ops::Sub>("sub", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  return record("sub_backward", out, {a, b}, [a = info(a), b = info(b)](const Tensor& dout) {
    return std::vector{detail::grad_for(dout, a), b.requires_grad ? detail::grad_for(neg(dout), b) : Tensor()};
  });
}

inline Tensor mul(const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  Tensor out = binary_fwd<ops::Mul>("mul", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  const Saved ad = b.requires_grad() ? Saved(a) : Saved(), bd = a.requires_grad() ? Saved(b) : Saved();
  return record("mul_backward", out, {a, b}, [a = info(a), b = info(b), ad, bd](const Tensor& dout) {
    return std::vector{a.requires_grad ? detail::grad_for(mul(dout, bd), a) : Tensor(),
                       b.requires_grad ? detail::grad_for(mul(dout, ad), b) : Tensor()};
  });
}

inline Tensor div(const Tensor& a, const Tensor& b) {
  DType t = result_type(a, b);
  if (!is_floating(t)) t = DType::f32;  // true division
  Tensor out = binary_fwd<ops::Div>("div", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  const Saved ad = b.requires_grad() ? Saved(a) : Saved(), bd = b;  // da needs b; db needs a and b
  return record("div_backward", out, {a, b}, [a = info(a), b = info(b), ad, bd](const Tensor& dout) {
    return std::vector{a.requires_grad ? detail::grad_for(div(dout, bd), a) : Tensor(),
                       b.requires_grad ? detail::grad_for(neg(div(mul(dout, ad), mul(bd, bd))), b) : Tensor()};
  });
}

inline Tensor pow(const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  Tensor out = binary_fwd<ops::Pow>("pow", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  const Saved ad = a, bd = b, od = out;
  return record("pow_backward", out, {a, b}, [a = info(a), b = info(b), ad, bd, od](const Tensor& dout) {
    Tensor da, db;
    if (a.requires_grad)  // b * a^(b-1); where b == 0 the term is 0 even at a == 0
      da = detail::grad_for(where(eq(bd, scalar_tensor(0, options_of(bd))), zeros_like(dout),
                                  mul(dout, mul(bd, pow(ad, sub(bd, ones_like(bd)))))), a);
    if (b.requires_grad)  // a^b ln a; PyTorch defines it as 0 where a == 0 and b >= 0
      db = detail::grad_for(mul(dout, where(eq(ad, zeros_like(ad)), zeros_like(od), mul(od, log(ad)))), b);
    return std::vector{da, db};
  });
}

namespace detail {
/// Gradient routing for maximum/minimum: dout where this side wins, half on ties.
inline Tensor pick_grad(const Tensor& dout, const Tensor& self, const Tensor& other, bool is_max) {
  Tensor wins = is_max ? gt(self, other) : lt(self, other);
  Tensor tie = eq(self, other);
  Tensor w = add(to(wins, dout.dtype()), mul(to(tie, dout.dtype()), scalar_tensor(0.5, options_of(dout))));
  return mul(dout, w);
}
}  // namespace detail

inline Tensor maximum(const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  Tensor out = binary_fwd<ops::Max>("maximum", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  const Saved ad = a, bd = b;
  return record("maximum_backward", out, {a, b},
                [a = info(a), b = info(b), ad, bd](const Tensor& dout) {
    return std::vector{a.requires_grad ? detail::grad_for(detail::pick_grad(dout, ad, bd, true), a) : Tensor(),
                       b.requires_grad ? detail::grad_for(detail::pick_grad(dout, bd, ad, true), b) : Tensor()};
  });
}

inline Tensor minimum(const Tensor& a, const Tensor& b) {
  const DType t = result_type(a, b);
  Tensor out = binary_fwd<ops::Min>("minimum", a, b, t, t);
  if (!any_requires_grad({a, b})) return out;
  const Saved ad = a, bd = b;
  return record("minimum_backward", out, {a, b},
                [a = info(a), b = info(b), ad, bd](const Tensor& dout) {
    return std::vector{a.requires_grad ? detail::grad_for(detail::pick_grad(dout, ad, bd, false), a) : Tensor(),
                       b.requires_grad ? detail::grad_for(detail::pick_grad(dout, bd, ad, false), b) : Tensor()};
  });
}

#define STRATA_COMPARISON(name, Op)                                                      \
  inline Tensor name(const Tensor& a, const Tensor& b) {                                 \
    return binary_fwd<ops::Op>(#name, a, b, result_type(a, b), DType::b8);      \
  }                                                                                      \
  template <Scalar S> Tensor name(const Tensor& a, S s) { return name(a, detail::wrap_scalar(s, a)); }
STRATA_COMPARISON(eq, Eq)
STRATA_COMPARISON(ne, Ne)
STRATA_COMPARISON(lt, Lt)
STRATA_COMPARISON(le, Le)
STRATA_COMPARISON(gt, Gt)
STRATA_COMPARISON(ge, Ge)
#undef STRATA_COMPARISON

/// out = cond ? a : b, all three broadcast together; cond must be bool.
inline Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  STRATA_CHECK(cond.dtype() == DType::b8, "where", "got a condition of dtype ", cond.dtype(), ", expected bool");
  const Shape shape = broadcast_shapes(broadcast_shapes(cond.shape(), a.shape(), "where"), b.shape(), "where");
  const DType t = result_type(a, b);
  const Tensor ac = to(detach(a), t), bc = to(detach(b), t);
  STRATA_CHECK(cond.device() == a.device() && a.device() == b.device(), "where", "got devices ", cond.device(),
               ", ", a.device(), " and ", b.device(), ", expected one device");
  Tensor out = detail::empty_output(shape, t, a.device(), {&cond, &ac, &bc});
  if (out.device().is_cuda()) {
    detail::cuda_elementwise_hook(EwOp::where, {}, out, {&cond, &ac, &bc});
  } else {
    auto L = make_loop<4>({&out, &cond, &ac, &bc}, "where");
    dispatch_all(t, "where", [&]<class T>(type_tag<T>) {
      cpu::where_kernel<T>(L, out.data_ptr<T>(), cond.data_ptr<bool>(), ac.data_ptr<T>(), bc.data_ptr<T>());
    });
  }
  if (!any_requires_grad({a, b})) return out;
  const Saved c = cond;
  return record("where_backward", out, {a, b}, [a = info(a), b = info(b), c](const Tensor& dout) {
    Tensor z = zeros({}, options_of(dout));
    return std::vector{a.requires_grad ? detail::grad_for(where(c, dout, z), a) : Tensor(),
                       b.requires_grad ? detail::grad_for(where(c, z, dout), b) : Tensor()};
  });
}

// scalar overloads: x + 1, 2.0 * x, x.pow(2), ...
#define STRATA_SCALAR_OVERLOADS(name)                                                          \
  template <Scalar S> Tensor name(const Tensor& a, S s) { return name(a, detail::wrap_scalar(s, a)); } \
  template <Scalar S> Tensor name(S s, const Tensor& b) { return name(detail::wrap_scalar(s, b), b); }
STRATA_SCALAR_OVERLOADS(add)
STRATA_SCALAR_OVERLOADS(sub)
STRATA_SCALAR_OVERLOADS(mul)
STRATA_SCALAR_OVERLOADS(div)
STRATA_SCALAR_OVERLOADS(maximum)
STRATA_SCALAR_OVERLOADS(minimum)
#undef STRATA_SCALAR_OVERLOADS
/// x^s; like PyTorch, an integer tensor refuses a negative integer exponent (the result is not an integer).
template <Scalar S> Tensor pow(const Tensor& a, S s) {
  STRATA_CHECK(!(is_integral(a.dtype()) && std::is_integral_v<S> && s < 0), "pow", "got an integer tensor of shape ",
               a.shape(), " and the exponent ", +s, ", expected a non-negative exponent for integers");
  return pow(a, detail::wrap_scalar(s, a));
}
template <Scalar S> Tensor pow(S s, const Tensor& b) { return pow(detail::wrap_scalar(s, b), b); }
template <Scalar S> Tensor where(const Tensor& c, const Tensor& a, S s) { return where(c, a, detail::wrap_scalar(s, a)); }
template <Scalar S> Tensor where(const Tensor& c, S s, const Tensor& b) { return where(c, detail::wrap_scalar(s, b), b); }

inline Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
inline Tensor operator-(const Tensor& a) { return neg(a); }
template <Scalar S> Tensor operator+(const Tensor& a, S s) { return add(a, s); }
template <Scalar S> Tensor operator+(S s, const Tensor& a) { return add(s, a); }
template <Scalar S> Tensor operator-(const Tensor& a, S s) { return sub(a, s); }
template <Scalar S> Tensor operator-(S s, const Tensor& a) { return sub(s, a); }
template <Scalar S> Tensor operator*(const Tensor& a, S s) { return mul(a, s); }
template <Scalar S> Tensor operator*(S s, const Tensor& a) { return mul(s, a); }
template <Scalar S> Tensor operator/(const Tensor& a, S s) { return div(a, s); }
template <Scalar S> Tensor operator/(S s, const Tensor& a) { return div(s, a); }
inline Tensor operator==(const Tensor& a, const Tensor& b) { return eq(a, b); }
inline Tensor operator!=(const Tensor& a, const Tensor& b) { return ne(a, b); }
inline Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
inline Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
inline Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
inline Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }
template <Scalar S> Tensor operator==(const Tensor& a, S s) { return eq(a, s); }
template <Scalar S> Tensor operator!=(const Tensor& a, S s) { return ne(a, s); }
template <Scalar S> Tensor operator<(const Tensor& a, S s) { return lt(a, s); }
template <Scalar S> Tensor operator<=(const Tensor& a, S s) { return le(a, s); }
template <Scalar S> Tensor operator>(const Tensor& a, S s) { return gt(a, s); }
template <Scalar S> Tensor operator>=(const Tensor& a, S s) { return ge(a, s); }

// ---------------------------------------------------------------- in place (not recorded)
namespace detail {
inline void check_inplace(const Tensor& t, const char* op) {
  STRATA_CHECK(!(is_grad_enabled() && t.requires_grad()), op,
               "got a tensor that requires grad, expected a NoGrad scope for in-place updates of it");
}
template <class Op>
Tensor& binary_inplace(const char* name, Tensor& self, const Tensor& other, Op op = {}) {
  check_inplace(self, name);
  const Shape shape = broadcast_shapes(self.shape(), other.shape(), name);
  STRATA_CHECK(shape == self.shape(), name, "got shapes ", self.shape(), " and ", other.shape(),
               ", expected the second to broadcast to the first");
  check_writable(self, name);
  STRATA_CHECK(self.device() == other.device(), name, "got devices ", self.device(), " and ", other.device(),
               ", expected the same device");
  const Tensor o = unaliased(to(detach(other), self.dtype()), self);
  if (self.device().is_cuda()) {
    cuda_elementwise_hook(Op::cuda_op, ew_params(op), self, {&self, &o});
  } else {
    auto L = make_loop<3>({&self, &self, &o}, name);
    dispatch_numeric(self.dtype(), name, [&]<class T>(type_tag<T>) {
      cpu::binary_kernel<T, T>(L, self.data_ptr<T>(), self.data_ptr<T>(), o.data_ptr<T>(), op);
    });
  }
  self.storage()->bump_version();
  return self;
}
}  // namespace detail

/// self += alpha * other
inline Tensor& add_(Tensor& self, const Tensor& other, double alpha = 1.0) {
  if (alpha == 1.0) return detail::binary_inplace<ops::Add>("add_", self, other);
  return detail::binary_inplace<ops::Add>("add_", self, mul(detach(other), alpha));
}
inline Tensor& sub_(Tensor& self, const Tensor& other) { return detail::binary_inplace<ops::Sub>("sub_", self, other); }
inline Tensor& mul_(Tensor& self, const Tensor& other) { return detail::binary_inplace<ops::Mul>("mul_", self, other); }
inline Tensor& div_(Tensor& self, const Tensor& other) {
  STRATA_CHECK(is_floating(self.dtype()), "div_", "got a tensor of dtype ", self.dtype(),
               ", expected a floating dtype (true division cannot be stored in integers)");
  return detail::binary_inplace<ops::Div>("div_", self, other);
}
inline Tensor& zero_(Tensor& self) {
  detail::check_inplace(self, "zero_");
  return fill_(self, 0.0);
}

}  // namespace strata
