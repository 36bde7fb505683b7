// Bias + activation in one pass, for x [rows, C] (contiguous) and a bias b [C] broadcast over the rows,
// as after a Linear layer (or a conv seen as [N*H*W, C] in channels-last):
//   z = x + b;  y = act(z)
//   backward (z recomputed from x and b, nothing stored): dz = dout * act'(z);  dx = dz;
//                                                          db_c = sum over rows of dz_rc
// act (BiasAct): none (y = z), relu (max(0, z): NaN stays NaN, -0 stays -0), gelu (exact, with erf:
// z Phi(z)), silu (z / (1 + e^-z)); the formulas of tensor/unary.hpp's ops. Compare bias add, then
// the activation, then their backwards: four passes over [rows, C] and a stored z.
// db is written, not accumulated (the op adds it to a parameter's gradient).
//
//   cpu::bias_act_fwd(x, b, y, rows, C, cpu::BiasAct::gelu);
//   cpu::bias_act_bwd(dout, x, b, dx, db, rows, C, cpu::BiasAct::gelu);
//
// Element types: float, double, f16, bf16 (bias the same type as x); the fast kernels compute in
// float (double for double) and round once to T. References (_ref): plain loops in double: the
// source of truth. The CUDA twin is kernels/cuda/bias_act.cuh.
// Idea: cuBLASLt's bias/activation epilogues (CUBLASLT_EPILOGUE_GELU_BIAS, ..._DGELU_BGRAD).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <type_traits>
#include <vector>

#include "strata/core/half.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// The activation after the bias.
enum class BiasAct : int { none = 0, relu = 1, gelu = 2, silu = 3 };

/// The type bias_act computes in for element type T: double for double, float otherwise.
template <class T>
using bias_act_compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

namespace detail {
/// act(z).
template <class A>
inline A bias_act_value(BiasAct act, A z) {
  switch (act) {
    case BiasAct::relu: return A(0) > z ? A(0) : z;
    case BiasAct::gelu: return A(0.5) * z * (A(1) + std::erf(z * A(std::numbers::sqrt2 / 2)));
    case BiasAct::silu: return z / (A(1) + std::exp(-z));
    case BiasAct::none: break;
  }
  return z;
}
/// g act'(z).
template <class A>
inline A bias_act_grad(BiasAct act, A g, A z) {
  switch (act) {
    case BiasAct::relu: return z > A(0) ? g : A(0);
    case BiasAct::gelu: {
      const A cdf = A(0.5) * (A(1) + std::erf(z * A(std::numbers::sqrt2 / 2)));
      const A pdf = std::exp(A(-0.5) * z * z) * A(0.5 * std::numbers::inv_sqrtpi * std::numbers::sqrt2);
      return g * (cdf + z * pdf);
    }
    case BiasAct::silu: {
      const A s = A(1) / (A(1) + std::exp(-z));
      return g * s * (A(1) + z * (A(1) - s));
    }
    case BiasAct::none: break;
  }
  return g;
}
}  // namespace detail

// ---------------------------------------------------------------- references

/// y [rows, C] = act(x [rows, C] + b [C]).
template <class T>
void bias_act_fwd_ref(const T* x, const T* b, T* y, int64_t rows, int64_t C, BiasAct act) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c) {
      const double z = double(x[r * C + c]) + double(b[c]);  // z = x + b
      y[r * C + c] = T(detail::bias_act_value(act, z));      // y = act(z)
    }
}

/// dx [rows, C] = dout act'(x + b), db [C] = its sum over the rows.
template <class T>
void bias_act_bwd_ref(const T* dout, const T* x, const T* b, T* dx, T* db, int64_t rows, int64_t C, BiasAct act) {
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const double z = double(x[r * C + c]) + double(b[c]);                   // z again
      const double dz = detail::bias_act_grad(act, double(dout[r * C + c]), z);  // dz = dout act'(z)
      dx[r * C + c] = T(dz);
      sum += dz;                                                               // db = sum_r dz
    }
    db[c] = T(sum);
  }
}

// ---------------------------------------------------------------- kernels

/// bias_act_fwd_ref in the compute type (float; double for double), rows split over the threads.
template <class T>
void bias_act_fwd(const T* x, const T* b, T* y, int64_t rows, int64_t C, BiasAct act) {
  using A = bias_act_compute_t<T>;
  parallel_for(0, rows, std::max<int64_t>(1, 16384 / std::max<int64_t>(C, 1)), [&](int64_t lo, int64_t hi) {
    for (int64_t r = lo; r < hi; ++r)
      for (int64_t c = 0; c < C; ++c) y[r * C + c] = T(detail::bias_act_value(act, A(A(x[r * C + c]) + A(b[c]))));
  });
}

/// bias_act_bwd_ref in the compute type; columns split over the threads (each sums its own db).
template <class T>
void bias_act_bwd(const T* dout, const T* x, const T* b, T* dx, T* db, int64_t rows, int64_t C, BiasAct act) {
  using A = bias_act_compute_t<T>;
  parallel_for(0, C, std::max<int64_t>(16, 16384 / std::max<int64_t>(rows, 1)), [&](int64_t lo, int64_t hi) {
    std::vector<A> sum(size_t(hi - lo), A(0));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = lo; c < hi; ++c) {
        const A dz = detail::bias_act_grad(act, A(dout[r * C + c]), A(A(x[r * C + c]) + A(b[c])));
        dx[r * C + c] = T(dz);
        sum[size_t(c - lo)] += dz;
      }
    for (int64_t c = lo; c < hi; ++c) db[c] = T(sum[size_t(c - lo)]);
  });
}

}  // namespace strata::cpu
