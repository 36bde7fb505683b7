// Fused optimizer updates on the CPU: one pass over a parameter, its gradient and its state
// instead of one pass per stat and stepper (include/strata/optim/steppers.hpp runs those as
// separate tensor ops: Adam reads and writes each buffer 4-8 times and allocates two temporaries).
//
// adam_update (Kingma & Ba Algorithm 1; AdamW's decoupled decay, Loshchilov & Hutter Algorithm 2),
// element i of p, g, m (grad_avg), v (sqr_avg), all [n] contiguous, one dtype:
//   l2 decay (wd_mode 1):         g <- g + wd p            (written back, as l2_reg does)
//   decoupled decay (wd_mode 2):  p <- p (1 - lr wd)
//   m <- mom m + (1 - mom) g
//   v <- sqr_mom v + (1 - sqr_mom) g^2
//   p <- p - lr / debias1 * m / (sqrt(v) / sqrt(debias2) + eps),  debias_k = 1 - beta_k^t
// sgd_momentum_update (fastai's SGD with momentum, no dampening):
//   decay as above;  m <- mom m + g;  p <- p - lr m
// The _ref versions are the same lines as plain loops: the source of truth. The fast versions run
// the same arithmetic on Vec<T> lanes (so results agree to rounding) and split n over the threads.
#pragma once

#include <cmath>
#include <cstdint>

#include "kernels/cpu/simd.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// Weight decay of a fused update: none, L2 (added to the gradient) or decoupled (applied to the weights).
enum class DecayMode : int { none = 0, l2 = 1, decoupled = 2 };

/// The scalars of one Adam step of one parameter.
struct AdamArgs {
  double lr = 1e-3, mom = 0.9, sqr_mom = 0.99, eps = 1e-5, wd = 0;
  DecayMode decay = DecayMode::none;
  double debias1 = 1, debias2 = 1;  // 1 - mom^t, 1 - sqr_mom^t
};

/// The scalars of one SGD-with-momentum step of one parameter.
struct SgdArgs {
  double lr = 1e-3, mom = 0.9, wd = 0;
  DecayMode decay = DecayMode::none;
};

inline constexpr int64_t kOptimGrain = 1 << 15;  // elements per thread chunk

// ---------------------------------------------------------------- references

template <class T>
void adam_update_ref(T* p, T* g, T* m, T* v, int64_t n, const AdamArgs& a) {
  for (int64_t i = 0; i < n; ++i) {
    if (a.decay == DecayMode::l2) g[i] = g[i] + T(a.wd) * p[i];              // g_t += λ θ_{t-1}
    if (a.decay == DecayMode::decoupled) p[i] = p[i] * T(1 - a.lr * a.wd);   // θ_{t-1} *= 1 - η λ
    m[i] = T(a.mom) * m[i] + T(1 - a.mom) * g[i];                              // m_t
    v[i] = T(a.sqr_mom) * v[i] + T(1 - a.sqr_mom) * (g[i] * g[i]);             // v_t
    const T denom = std::sqrt(v[i]) * T(1 / std::sqrt(a.debias2)) + T(a.eps);  // sqrt(v̂_t) + ε
    p[i] = p[i] + T(-a.lr / a.debias1) * (m[i] / denom);                      // θ_t = θ - η m̂_t / denom
  }
}

template <class T>
void sgd_momentum_update_ref(T* p, T* g, T* m, int64_t n, const SgdArgs& a) {
  for (int64_t i = 0; i < n; ++i) {
    if (a.decay == DecayMode::l2) g[i] = g[i] + T(a.wd) * p[i];
    if (a.decay == DecayMode::decoupled) p[i] = p[i] * T(1 - a.lr * a.wd);
    m[i] = T(a.mom) * m[i] + g[i];  // v_t = μ v_{t-1} + g_t
    p[i] = p[i] - T(a.lr) * m[i];   // θ_t = θ_{t-1} - η v_t
  }
}

// ---------------------------------------------------------------- kernels

namespace detail {
/// One Adam element (or Vec of elements) step; V is T or Vec<T>.
template <class V, class T>
inline void adam_lane(V& p, V& g, V& m, V& v, const AdamArgs& a) {
  if (a.decay == DecayMode::l2) g = g + V(T(a.wd)) * p;
  if (a.decay == DecayMode::decoupled) p = p * V(T(1 - a.lr * a.wd));
  m = V(T(a.mom)) * m + V(T(1 - a.mom)) * g;
  v = V(T(a.sqr_mom)) * v + V(T(1 - a.sqr_mom)) * (g * g);
  const V denom = vsqrt(v) * V(T(1 / std::sqrt(a.debias2))) + V(T(a.eps));
  p = p + V(T(-a.lr / a.debias1)) * (m / denom);
}
template <class V, class T>
inline void sgd_lane(V& p, V& g, V& m, const SgdArgs& a) {
  if (a.decay == DecayMode::l2) g = g + V(T(a.wd)) * p;
  if (a.decay == DecayMode::decoupled) p = p * V(T(1 - a.lr * a.wd));
  m = V(T(a.mom)) * m + g;
  p = p - V(T(a.lr)) * m;
}
}  // namespace detail

/// adam_update_ref's arithmetic, vectorized and threaded. p, g, m, v: [n] contiguous.
template <class T>
void adam_update(T* p, T* g, T* m, T* v, int64_t n, const AdamArgs& a) {
  parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
    using V = Vec<T>;
    int64_t i = lo;
    for (; i + V::size <= hi; i += V::size) {
      V vp = V::load(p + i), vg = V::load(g + i), vm = V::load(m + i), vv = V::load(v + i);
      detail::adam_lane<V, T>(vp, vg, vm, vv, a);
      vp.store(p + i), vm.store(m + i), vv.store(v + i);
      if (a.decay == DecayMode::l2) vg.store(g + i);
    }
    for (; i < hi; ++i) detail::adam_lane<T, T>(p[i], g[i], m[i], v[i], a);
  });
}

/// sgd_momentum_update_ref's arithmetic, vectorized and threaded. p, g, m: [n] contiguous.
template <class T>
void sgd_momentum_update(T* p, T* g, T* m, int64_t n, const SgdArgs& a) {
  parallel_for(0, n, kOptimGrain, [&](int64_t lo, int64_t hi) {
    using V = Vec<T>;
    int64_t i = lo;
    for (; i + V::size <= hi; i += V::size) {
      V vp = V::load(p + i), vg = V::load(g + i), vm = V::load(m + i);
      detail::sgd_lane<V, T>(vp, vg, vm, a);
      vp.store(p + i), vm.store(m + i);
      if (a.decay == DecayMode::l2) vg.store(g + i);
    }
    for (; i < hi; ++i) detail::sgd_lane<T, T>(p[i], g[i], m[i], a);
  });
}

}  // namespace strata::cpu
