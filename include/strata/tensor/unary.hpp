// Unary ops: neg abs exp log sqrt rsqrt sin cos tanh sigmoid relu gelu silu softplus clamp
// (and sign, square, log1p, leaky_relu as helpers users expect).
//
// Math (x input, y output, dout the incoming gradient):
//   exp: dy = dout*y     log: dout/x         sqrt: dout/(2y)     rsqrt: -dout*y^3/2
//   sin: dout*cos x      cos: -dout*sin x    tanh: dout*(1-y^2)  sigmoid: dout*y*(1-y)
//   relu: dout*[y>0]     gelu (exact, erf): dout*(Phi(x) + x*phi(x))
//   silu: y = x*s(x), dy = dout*s*(1 + x*(1-s))   softplus (beta 1, threshold 20): dout*s(x)
//   clamp: dout*[lo <= x <= hi]   abs: dout*sign(x)
// Integer inputs to floating functions are promoted to float32 (as torch.exp(int_tensor) is).
// The hot activations (relu, gelu, silu, sigmoid, tanh) have fused backward kernels: one pass
// over (dout, x or y) instead of a chain of temporaries.
#pragma once

#include <cmath>
#include <limits>
#include <numbers>

#include "strata/tensor/binary.hpp"

namespace strata {

inline Tensor sign(const Tensor& x);
inline Tensor sin(const Tensor& x);
inline Tensor cos(const Tensor& x);
inline Tensor sigmoid(const Tensor& x);

namespace ops {
using cpu::vabs; using cpu::vexp; using cpu::vtanh; using cpu::vmax; using cpu::vmin; using cpu::vsqrt;
struct Neg { static constexpr EwOp cuda_op = EwOp::neg; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return -x; } };
struct Abs { static constexpr EwOp cuda_op = EwOp::abs; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return vabs(x); } };
struct Exp { static constexpr EwOp cuda_op = EwOp::exp; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return vexp(x); } };
struct Sqrt { static constexpr EwOp cuda_op = EwOp::sqrt; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return vsqrt(x); } };
struct Rsqrt { static constexpr EwOp cuda_op = EwOp::rsqrt; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return V(1) / vsqrt(x); } };
// max/min return their second operand when one is NaN: x goes second so NaN propagates, as in PyTorch
struct Relu { static constexpr EwOp cuda_op = EwOp::relu; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return vmax(V(0), x); } };
struct Sigmoid { static constexpr EwOp cuda_op = EwOp::sigmoid;
  static constexpr bool vectorized = true;
  template <class V> V operator()(V x) const { return V(1) / (V(1) + vexp(-x)); }
};
struct Silu { static constexpr EwOp cuda_op = EwOp::silu;
  static constexpr bool vectorized = true;
  template <class V> V operator()(V x) const { return x / (V(1) + vexp(-x)); }
};
struct Log { static constexpr EwOp cuda_op = EwOp::log; static constexpr bool vectorized = false; template <class V> V operator()(V x) const { return std::log(x); } };
struct Log1p { static constexpr EwOp cuda_op = EwOp::log1p; static constexpr bool vectorized = false; template <class V> V operator()(V x) const { return std::log1p(x); } };
struct Sin { static constexpr EwOp cuda_op = EwOp::sin; static constexpr bool vectorized = false; template <class V> V operator()(V x) const { return std::sin(x); } };
struct Cos { static constexpr EwOp cuda_op = EwOp::cos; static constexpr bool vectorized = false; template <class V> V operator()(V x) const { return std::cos(x); } };
struct Tanh { static constexpr EwOp cuda_op = EwOp::tanh; static constexpr bool vectorized = true; template <class V> V operator()(V x) const { return vtanh(x); } };
struct Sign { static constexpr EwOp cuda_op = EwOp::sign;
  static constexpr bool vectorized = false;
  template <class V> V operator()(V x) const {
    if constexpr (std::is_unsigned_v<V>) return V(V(0) < x);  // (nvcc warns on the pointless x < 0)
    else return V((V(0) < x) - (x < V(0)));
  }
};
struct Gelu { static constexpr EwOp cuda_op = EwOp::gelu;
  static constexpr bool vectorized = false;
  template <class V> V operator()(V x) const { return V(0.5) * x * (V(1) + V(std::erf(x * V(std::numbers::sqrt2 / 2)))); }
};
struct Softplus { static constexpr EwOp cuda_op = EwOp::softplus;  // log(1 + e^x), linear above 20 like PyTorch's default threshold
  static constexpr bool vectorized = false;
  template <class V> V operator()(V x) const { return x > V(20) ? x : V(std::log1p(std::exp(x))); }
};
struct Clamp { static constexpr EwOp cuda_op = EwOp::clamp;
  double lo, hi;
  static constexpr bool vectorized = true;
  template <class V> V operator()(V x) const { return vmin(V(hi), vmax(V(lo), x)); }
};
struct LeakyRelu { static constexpr EwOp cuda_op = EwOp::leaky_relu;
  double slope;
  static constexpr bool vectorized = false;
  template <class V> V operator()(V x) const { return x > V(0) ? x : V(slope) * x; }
};

// backward functors: (dout, saved) -> dx
struct ClampBwd { static constexpr EwOp cuda_op = EwOp::clamp_bwd;  // the gradient passes where lo <= x <= hi (NaN x passes nothing)
  double lo, hi;
  static constexpr bool vectorized = false;
  template <class V> V operator()(V g, V x) const { return x >= V(lo) && x <= V(hi) ? g : V(0); }
};
struct ReluBwd { static constexpr EwOp cuda_op = EwOp::relu_bwd;  // from the output y: y > 0 exactly where x > 0 (NaN x gives NaN y: no gradient either way)
  static constexpr bool vectorized = true;
  template <class V> V operator()(V g, V y) const {
    if constexpr (std::is_arithmetic_v<V>) return y > V(0) ? g : V(0);
    else return select_lt(V(0), y, g, V(0));  // a friend of Vec, found by ADL
  }
};
struct SigmoidBwd { static constexpr EwOp cuda_op = EwOp::sigmoid_bwd; static constexpr bool vectorized = true; template <class V> V operator()(V g, V y) const { return g * y * (V(1) - y); } };
struct TanhBwd { static constexpr EwOp cuda_op = EwOp::tanh_bwd; static constexpr bool vectorized = true; template <class V> V operator()(V g, V y) const { return g * (V(1) - y * y); } };
struct SiluBwd { static constexpr EwOp cuda_op = EwOp::silu_bwd;
  static constexpr bool vectorized = true;
  template <class V> V operator()(V g, V x) const {
    const V s = V(1) / (V(1) + vexp(-x));
    return g * s * (V(1) + x * (V(1) - s));
  }
};
struct GeluBwd { static constexpr EwOp cuda_op = EwOp::gelu_bwd;
  static constexpr bool vectorized = false;
  template <class V> V operator()(V g, V x) const {
    const V cdf = V(0.5) * (V(1) + V(std::erf(x * V(std::numbers::sqrt2 / 2))));
    // -(0.5 x x), not (-0.5) x x: the same floats, and V(-0.5) does not fit the unsigned dtypes
    const V pdf = V(std::exp(-(V(0.5) * x * x)) * V(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2));
    return g * (cdf + x * pdf);
  }
};
}  // namespace ops

/// y = op(x): same dtype for floating x (and for `keep_int` ops on integers), else float32.
template <class Op, bool keep_int = false>
Tensor unary_fwd(const char* name, const Tensor& x, Op op = {}) {
  const DType t = is_floating(x.dtype()) || keep_int ? x.dtype() : DType::f32;
  const Tensor xc = to(detach(x), t);
  Tensor out = detail::empty_output(x.shape(), t, x.device(), {&xc});
  if (out.device().is_cuda()) {
    if constexpr (keep_int) dispatch_numeric(t, name, [](auto) {});  // the CPU's dtype check
    else dispatch_float(t, name, [](auto) {});
    detail::cuda_elementwise_hook(Op::cuda_op, detail::ew_params(op), out, {&xc});
    return out;
  }
  auto L = make_loop<2>({&out, &xc}, name);
  auto run = [&]<class T>(type_tag<T>) { cpu::unary_kernel<T, T>(L, out.data_ptr<T>(), xc.data_ptr<T>(), op); };
  if constexpr (keep_int) dispatch_numeric(t, name, run);
  else dispatch_float(t, name, run);
  return out;
}

/// dx = op(dout, saved) for the fused activation backwards (same shapes, floating).
template <class Op>
Tensor unary_bwd(const char* name, const Tensor& dout, const Tensor& saved) {
  return binary_fwd<Op>(name, dout, saved, dout.dtype(), dout.dtype());
}

// One differentiable unary op. `saved` names what the backward reads: xd (the input), yd (the
// output) or none; only that is kept alive by the graph.
#define STRATA_UNARY(name, Op, keep_int, saved, backward_expr)                             \
  inline Tensor name(const Tensor& x) {                                                    \
    Tensor y = unary_fwd<ops::Op, keep_int>(#name, x);                                     \
    if (!any_requires_grad({x})) return y;                                                 \
    [[maybe_unused]] const Tensor& xd = x;                                                 \
    [[maybe_unused]] const Tensor& yd = y;                                                 \
    [[maybe_unused]] const Tensor none;                                                    \
    return record(#name "_backward", y, {x}, [saved = Saved(saved)](const Tensor& dout) {  \
      return std::vector<Tensor>{backward_expr};                                           \
    });                                                                                    \
  }

STRATA_UNARY(neg, Neg, true, none, mul(dout, -1.0))
STRATA_UNARY(abs, Abs, true, xd, mul(dout, sign(xd)))
STRATA_UNARY(exp, Exp, false, yd, mul(dout, yd))
STRATA_UNARY(log, Log, false, xd, div(dout, xd))
STRATA_UNARY(log1p, Log1p, false, xd, div(dout, add(xd, 1.0)))
STRATA_UNARY(sqrt, Sqrt, false, yd, div(dout, mul(yd, 2.0)))
STRATA_UNARY(rsqrt, Rsqrt, false, yd, mul(dout, mul(pow(yd, 3.0), -0.5)))
STRATA_UNARY(sin, Sin, false, xd, mul(dout, cos(xd)))
STRATA_UNARY(cos, Cos, false, xd, neg(mul(dout, sin(xd))))
STRATA_UNARY(tanh, Tanh, false, yd, unary_bwd<ops::TanhBwd>("tanh_backward", dout, yd))
STRATA_UNARY(sigmoid, Sigmoid, false, yd, unary_bwd<ops::SigmoidBwd>("sigmoid_backward", dout, yd))
STRATA_UNARY(relu, Relu, true, yd, unary_bwd<ops::ReluBwd>("relu_backward", dout, yd))
STRATA_UNARY(gelu, Gelu, false, xd, unary_bwd<ops::GeluBwd>("gelu_backward", dout, xd))
STRATA_UNARY(silu, Silu, false, xd, unary_bwd<ops::SiluBwd>("silu_backward", dout, xd))
STRATA_UNARY(softplus, Softplus, false, xd, mul(dout, sigmoid(xd)))
#undef STRATA_UNARY

/// -1, 0 or 1 by the sign of x (no gradient).
inline Tensor sign(const Tensor& x) { return unary_fwd<ops::Sign, true>("sign", x); }

/// x*x
inline Tensor square(const Tensor& x) { return mul(x, x); }

/// min(max(x, lo), hi); the gradient passes where lo <= x <= hi. Integer x with bounds that are not
/// whole numbers gives float32, as in PyTorch.
inline Tensor clamp(const Tensor& x, double lo, double hi) {
  STRATA_CHECK(lo <= hi, "clamp", "got lo=", lo, " hi=", hi, ", expected lo <= hi");
  // integer x keeps its dtype only for bounds it can hold exactly (finite, whole, in range)
  const bool fits = !is_floating(x.dtype()) && dispatch_numeric(x.dtype(), "clamp", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_integral_v<T>) {
      auto ok = [](double v) {
        return std::isfinite(v) && v == std::floor(v) && v >= double(std::numeric_limits<T>::min()) &&
               v < double(std::numeric_limits<T>::max()) + 1.0;  // max + 1 is exact
      };
      return ok(lo) && ok(hi);
    } else {
      return false;
    }
  });
  const Tensor xin = is_floating(x.dtype()) || fits ? x : to(x, DType::f32);
  Tensor y = unary_fwd<ops::Clamp, true>("clamp", xin, {lo, hi});
  return record("clamp_backward", y, {x}, [xd = Saved(x), lo, hi](const Tensor& dout) {
    return std::vector{binary_fwd<ops::ClampBwd>("clamp_backward", dout, to(xd.get(), dout.dtype()), dout.dtype(),
                                                 dout.dtype(), {lo, hi})};
  });
}

/// x for x > 0, slope*x otherwise.
inline Tensor leaky_relu(const Tensor& x, double slope = 0.01) {
  Tensor y = unary_fwd<ops::LeakyRelu>("leaky_relu", x, {slope});
  return record("leaky_relu_backward", y, {x}, [xd = Saved(x), slope](const Tensor& dout) {
    return std::vector{mul(dout, where(gt(xd, 0.0), 1.0, full({}, slope, options_of(dout))))};
  });
}

}  // namespace strata
