// Batch norm and layer norm kernels, forward and backward.
//
// Batch norm: x, y [B, C, S] contiguous (S = product of the spatial dims, 1 for [B, C]); per channel c
// over the N = B * S values:
//   training: mean = sum x / N,  var = sum (x - mean)^2 / N (biased);  eval: mean, var given
//   invstd = 1 / sqrt(var + eps),  y = (x - mean) * invstd * w + b       (w = 1, b = 0 when absent)
//   backward, xhat = (x - mean) * invstd:
//     db = sum dy,  dw = sum dy * xhat
//     training: dx = w * invstd / N * (N * dy - sum dy - xhat * sum(dy * xhat))
//     eval:     dx = w * invstd * dy
// Forward: one task per channel; the channel's statistics come from one pass over its B rows of S
// contiguous values (each row's mean and squared deviations are taken while it is in cache and the
// rows combined with Chan's update, so no sum-of-squares cancellation), a second pass writes
// y = (x - mean) * scale + b. Backward: one pass for sum dy and sum dy * (x - mean), one that
// writes dx = a * (dy - mean dy - (x - mean) * q) (centred, so no cancellation for a large mean).
// With S == 1 ([B, C] input) channels are adjacent in memory, so the work is split over column
// ranges instead and SIMD runs across channels.
// Layer norm: x, y [M, N] contiguous, normalized over each row of N, w, b [N]:
//   mean, rstd = 1 / sqrt(var + eps) per row,  y = (x - mean) * rstd * w + b
//   backward, g = dy * w:  dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
//                          dw = sum over rows dy * xhat, db = sum over rows dy
// One fused pass: blocks of rows in parallel, each writing dx and a partial dw, db.
// Statistics and weights are in A = acc_t<T> (float for f32/f16/bf16, double for f64); row sums
// use Vec<T> lanes in blocks of kNormBlock added in double. References: PyTorch
// aten/src/ATen/native/Normalization.cpp, cpu/layer_norm_kernel.cpp; Chan, Golub, LeVeque,
// "Algorithms for computing the sample variance" (1983). The `_ref` loops are in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "strata/core/dtype.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// Values summed in SIMD lanes before the partial sum is added in double.
inline constexpr int64_t kNormBlock = 2048;
/// Elements of work below which a norm kernel stays on one thread.
inline constexpr int64_t kNormGrain = 32768;
/// SIMD paths need the storage type to be the accumulation type (float, double).
template <class T, class A>
inline constexpr bool norm_vec = has_vec<T> && std::is_same_v<T, A>;

// ---------------------------------------------------------------- reference

/// Batch norm forward in double: x, y [B, C, S]; w, b [C] or null; mean, var, invstd [C]
/// (mean and var written when training, read otherwise).
template <class T, class A>
void batch_norm_fwd_ref(const T* x, T* y, const A* w, const A* b, A* mean, A* var, A* invstd, int64_t B, int64_t C,
                        int64_t S, double eps, bool training) {
  auto at = [&](int64_t n, int64_t c, int64_t s) { return (n * C + c) * S + s; };
  for (int64_t c = 0; c < C; ++c) {
    double m = mean[c], v = var[c];
    if (training) {
      double sum = 0, sq = 0;  // two passes: mean, then mean squared deviation
      for (int64_t n = 0; n < B; ++n)
        for (int64_t s = 0; s < S; ++s) sum += double(static_cast<A>(x[at(n, c, s)]));
      m = sum / double(B * S);
      for (int64_t n = 0; n < B; ++n)
        for (int64_t s = 0; s < S; ++s) sq += std::pow(double(static_cast<A>(x[at(n, c, s)])) - m, 2);
      v = sq / double(B * S);
      mean[c] = A(m), var[c] = A(v);
    }
    const double is = 1 / std::sqrt(v + eps);
    invstd[c] = A(is);
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const double xhat = (double(static_cast<A>(x[at(n, c, s)])) - m) * is;
        y[at(n, c, s)] = cast_value<T>(xhat * (w ? double(w[c]) : 1.0) + (b ? double(b[c]) : 0.0));
      }
  }
}

/// Batch norm backward in double from the forward's mean and invstd; dx, dw, db may be null.
template <class T, class A>
void batch_norm_bwd_ref(const T* dy, const T* x, const A* w, const A* mean, const A* invstd, T* dx, A* dw, A* db,
                        int64_t B, int64_t C, int64_t S, bool training) {
  auto at = [&](int64_t n, int64_t c, int64_t s) { return (n * C + c) * S + s; };
  const double N = double(B * S);
  for (int64_t c = 0; c < C; ++c) {
    const double m = mean[c], is = invstd[c], wc = w ? double(w[c]) : 1.0;
    auto g = [&](int64_t i) { return double(static_cast<A>(dy[i])); };
    auto xhat = [&](int64_t i) { return (double(static_cast<A>(x[i])) - m) * is; };
    double sdy = 0, sdyx = 0;  // sum dy, sum dy * xhat
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) sdy += g(at(n, c, s)), sdyx += g(at(n, c, s)) * xhat(at(n, c, s));
    if (dw) dw[c] = A(sdyx);
    if (db) db[c] = A(sdy);
    if (!dx) continue;
    for (int64_t n = 0; n < B; ++n)
      for (int64_t s = 0; s < S; ++s) {
        const int64_t i = at(n, c, s);
        dx[i] = cast_value<T>(training ? wc * is / N * (N * g(i) - sdy - xhat(i) * sdyx) : wc * is * g(i));
      }
  }
}

/// Layer norm forward in double: x, y [M, N]; w, b [N] or null; mean, rstd [M] written.
template <class T, class A>
void layer_norm_fwd_ref(const T* x, T* y, const A* w, const A* b, A* mean, A* rstd, int64_t M, int64_t N, double eps) {
  for (int64_t i = 0; i < M; ++i) {
    auto xv = [&](int64_t j) { return double(static_cast<A>(x[i * N + j])); };
    double m = 0, v = 0;
    for (int64_t j = 0; j < N; ++j) m += xv(j);
    m /= double(N);
    for (int64_t j = 0; j < N; ++j) v += (xv(j) - m) * (xv(j) - m);
    const double r = 1 / std::sqrt(v / double(N) + eps);
    mean[i] = A(m), rstd[i] = A(r);
    for (int64_t j = 0; j < N; ++j)
      y[i * N + j] = cast_value<T>((xv(j) - m) * r * (w ? double(w[j]) : 1.0) + (b ? double(b[j]) : 0.0));
  }
}

/// Layer norm backward in double; dx [M, N], dw, db [N] may be null.
template <class T, class A>
void layer_norm_bwd_ref(const T* dy, const T* x, const A* w, const A* mean, const A* rstd, T* dx, A* dw, A* db,
                        int64_t M, int64_t N) {
  std::vector<double> sw(size_t(N), 0.0), sb(size_t(N), 0.0);
  for (int64_t i = 0; i < M; ++i) {
    auto xhat = [&](int64_t j) { return (double(static_cast<A>(x[i * N + j])) - double(mean[i])) * double(rstd[i]); };
    auto g = [&](int64_t j) { return double(static_cast<A>(dy[i * N + j])) * (w ? double(w[j]) : 1.0); };
    double mg = 0, mgx = 0;  // mean(g), mean(g * xhat)
    for (int64_t j = 0; j < N; ++j) mg += g(j), mgx += g(j) * xhat(j);
    mg /= double(N), mgx /= double(N);
    for (int64_t j = 0; j < N; ++j) {
      if (dx) dx[i * N + j] = cast_value<T>(double(rstd[i]) * (g(j) - mg - xhat(j) * mgx));
      sw[size_t(j)] += double(static_cast<A>(dy[i * N + j])) * xhat(j);
      sb[size_t(j)] += double(static_cast<A>(dy[i * N + j]));
    }
  }
  for (int64_t j = 0; j < N; ++j) {
    if (dw) dw[j] = A(sw[size_t(j)]);
    if (db) db[j] = A(sb[size_t(j)]);
  }
}

// ---------------------------------------------------------------- row helpers

/// sum x and sum (x - m)^2 over a contiguous run, or, with `dy`, sum dy and sum dy * (x - m):
/// Vec<T> lanes within blocks of kNormBlock, blocks added in double. `second` = false skips the
/// second sum (one pass for the plain sum).
template <class T, class A>
void norm_row_sums(const T* x, const T* dy, int64_t n, A m, bool second, double& s1, double& s2) {
  s1 = 0, s2 = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kNormBlock) {
    const int64_t b1 = std::min(n, b0 + kNormBlock);
    int64_t i = b0;
    A p1 = 0, p2 = 0;
    if constexpr (norm_vec<T, A>) {
      using V = Vec<T>;
      V v1(T(0)), v2(T(0));
      const V vm(m);
      for (; i + V::size <= b1; i += V::size) {
        const V d = V::load(x + i) - vm;
        if (dy) {
          const V g = V::load(dy + i);
          v1 = v1 + g;
          v2 = vfmadd(g, d, v2);
        } else {
          v1 = v1 + V::load(x + i);
          if (second) v2 = vfmadd(d, d, v2);
        }
      }
      p1 = reduce_add(v1), p2 = reduce_add(v2);
    }
    for (; i < b1; ++i) {
      const A d = static_cast<A>(x[i]) - m;
      if (dy) p1 += static_cast<A>(dy[i]), p2 += static_cast<A>(dy[i]) * d;
      else p1 += static_cast<A>(x[i]), p2 += second ? d * d : A(0);
    }
    s1 += double(p1), s2 += double(p2);
  }
}

/// y = (x - m) * a + c over a contiguous run (centering first: no cancellation for a large m).
template <class T, class A>
void norm_row_scale(const T* x, T* y, int64_t n, A m, A a, A c) {
  int64_t i = 0;
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    const V vm(m), va(a), vc(c);
    for (; i + V::size <= n; i += V::size) vfmadd(V::load(x + i) - vm, va, vc).store(y + i);
  }
  for (; i < n; ++i) y[i] = cast_value<T>((static_cast<A>(x[i]) - m) * a + c);
}

/// dx = a * (dy - mdy - (x - m) * q) over a contiguous run; x may be null when q == 0 (dx = a * (dy - mdy)).
template <class T, class A>
void norm_row_dx(const T* dy, const T* x, T* dx, int64_t n, A a, A mdy, A m, A q) {
  int64_t i = 0;
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    const V va(a), vmdy(mdy), vm(m), vq(q);
    if (x)
      for (; i + V::size <= n; i += V::size)
        (va * vfmadd(vm - V::load(x + i), vq, V::load(dy + i) - vmdy)).store(dx + i);
    else
      for (; i + V::size <= n; i += V::size) (va * (V::load(dy + i) - vmdy)).store(dx + i);
  }
  for (; i < n; ++i)
    dx[i] = cast_value<T>(a * (static_cast<A>(dy[i]) - mdy - (x ? (static_cast<A>(x[i]) - m) * q : A(0))));
}

// ---------------------------------------------------------------- batch norm

/// Per-channel statistics of [B, C] (S == 1) columns [c0, c1): mean and biased var over B rows,
/// two passes with SIMD across channels.
template <class T, class A>
void batch_norm_cols_stats(const T* x, A* mean, A* var, int64_t B, int64_t C, int64_t c0, int64_t c1) {
  std::vector<A> s(size_t(c1 - c0), A(0));
  for (int pass = 0; pass < 2; ++pass) {
    for (int64_t n = 0; n < B; ++n) {
      const T* xr = x + n * C;
      int64_t c = c0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        for (; c + V::size <= c1; c += V::size) {
          const V xv = V::load(xr + c), acc = V::load(s.data() + (c - c0));
          if (pass == 0) {
            (acc + xv).store(s.data() + (c - c0));
          } else {
            const V d = xv - V::load(mean + c);
            vfmadd(d, d, acc).store(s.data() + (c - c0));
          }
        }
      }
      for (; c < c1; ++c) {
        const A xv = static_cast<A>(xr[c]);
        s[size_t(c - c0)] += pass == 0 ? xv : (xv - mean[c]) * (xv - mean[c]);
      }
    }
    for (int64_t c = c0; c < c1; ++c) {
      (pass == 0 ? mean : var)[c] = s[size_t(c - c0)] / A(B);
      s[size_t(c - c0)] = 0;
    }
  }
}

/// Batch norm forward: x, y [B, C, S]; w, b [C] or null; mean, var, invstd [C] (mean and var are
/// computed when training, read otherwise; invstd is always written). Needs B * S > 0.
template <class T, class A>
void batch_norm_fwd_kernel(const T* x, T* y, const A* w, const A* b, A* mean, A* var, A* invstd, int64_t B,
                           int64_t C, int64_t S, double eps, bool training) {
  const int64_t per_channel = B * S;
  if (C == 0 || per_channel == 0) return;
  auto finish = [&](int64_t c) { invstd[c] = A(1) / std::sqrt(var[c] + A(eps)); };
  if (S == 1) {
    const int64_t grain = std::max<int64_t>(16, kNormGrain / B);
    parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
      if (training) batch_norm_cols_stats<T, A>(x, mean, var, B, C, c0, c1);
      std::vector<A> scale(size_t(c1 - c0)), shift(size_t(c1 - c0));  // y = (x - mean) * scale + shift
      for (int64_t c = c0; c < c1; ++c) {
        finish(c);
        scale[size_t(c - c0)] = invstd[c] * (w ? w[c] : A(1));
        shift[size_t(c - c0)] = b ? b[c] : A(0);
      }
      for (int64_t n = 0; n < B; ++n) {
        const T* xr = x + n * C;
        T* yr = y + n * C;
        int64_t c = c0;
        if constexpr (norm_vec<T, A>) {
          using V = Vec<T>;
          const A *sc = scale.data(), *sh = shift.data();
          for (; c + V::size <= c1; c += V::size)
            vfmadd(V::load(xr + c) - V::load(mean + c), V::load(sc + (c - c0)), V::load(sh + (c - c0))).store(yr + c);
        }
        for (; c < c1; ++c)
          yr[c] = cast_value<T>((static_cast<A>(xr[c]) - mean[c]) * scale[size_t(c - c0)] + shift[size_t(c - c0)]);
      }
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kNormGrain / per_channel);
  parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      if (training) {  // Chan's update over rows: (count, mean, m2) += (S, row mean, row m2)
        double cm = 0, m2 = 0;
        for (int64_t n = 0; n < B; ++n) {
          const T* xr = x + (n * C + c) * S;
          double s, unused;
          norm_row_sums<T, A>(xr, nullptr, S, A(0), false, s, unused);
          const A rm = A(s / double(S));
          double rm2;
          norm_row_sums<T, A>(xr, nullptr, S, rm, true, unused, rm2);
          const double cnt = double(n * S), delta = double(rm) - cm, tot = cnt + double(S);
          cm += delta * double(S) / tot;
          m2 += rm2 + delta * delta * cnt * double(S) / tot;
        }
        mean[c] = A(cm), var[c] = A(m2 / double(per_channel));
      }
      finish(c);
      const A scale = invstd[c] * (w ? w[c] : A(1)), shift = b ? b[c] : A(0);
      for (int64_t n = 0; n < B; ++n)
        norm_row_scale<T, A>(x + (n * C + c) * S, y + (n * C + c) * S, S, mean[c], scale, shift);
    }
  });
}

/// Batch norm backward: dy, x, dx [B, C, S]; w [C] or null; mean, invstd [C] from the forward;
/// dw, db [C]. Any of dx, dw, db may be null (not wanted). Needs B * S > 0.
template <class T, class A>
void batch_norm_bwd_kernel(const T* dy, const T* x, const A* w, const A* mean, const A* invstd, T* dx, A* dw, A* db,
                           int64_t B, int64_t C, int64_t S, bool training) {
  const int64_t per_channel = B * S;
  if (C == 0 || per_channel == 0) return;
  const bool need_sums = dw || db || (dx && training);
  const A inv_n = A(1) / A(per_channel);
  // dx = a * (dy - mdy - (x - mean) * q), from sdy = sum dy and sdx = sum dy * (x - mean):
  // a = w * invstd, mdy = sdy / N, q = invstd^2 * sdx / N (mdy = q = 0 in eval)
  auto coefficients = [&](int64_t c, A sdy, A sdx, A& a, A& mdy, A& q) {
    a = invstd[c] * (w ? w[c] : A(1));
    mdy = training ? sdy * inv_n : A(0);
    q = training ? invstd[c] * invstd[c] * sdx * inv_n : A(0);
  };
  if (S == 1) {
    const int64_t grain = std::max<int64_t>(16, kNormGrain / B);
    parallel_for(0, C, grain, [&](int64_t lo, int64_t hi) {
      const size_t w_ = size_t(hi - lo);
      std::vector<A> sdy(w_, A(0)), sdx(w_, A(0)), ka(w_), kmdy(w_), kq(w_);
      if (need_sums)
        for (int64_t n = 0; n < B; ++n) {
          const T *gr = dy + n * C, *xr = x + n * C;
          int64_t c = lo;
          if constexpr (norm_vec<T, A>) {
            using V = Vec<T>;
            for (; c + V::size <= hi; c += V::size) {
              const size_t j = size_t(c - lo);
              const V g = V::load(gr + c), d = V::load(xr + c) - V::load(mean + c);
              (V::load(sdy.data() + j) + g).store(sdy.data() + j);
              vfmadd(g, d, V::load(sdx.data() + j)).store(sdx.data() + j);
            }
          }
          for (; c < hi; ++c) {
            const A g = static_cast<A>(gr[c]);
            sdy[size_t(c - lo)] += g, sdx[size_t(c - lo)] += g * (static_cast<A>(xr[c]) - mean[c]);
          }
        }
      for (int64_t c = lo; c < hi; ++c) {
        const size_t j = size_t(c - lo);
        if (dw) dw[c] = sdx[j] * invstd[c];
        if (db) db[c] = sdy[j];
        coefficients(c, sdy[j], sdx[j], ka[j], kmdy[j], kq[j]);
      }
      if (!dx) return;
      for (int64_t n = 0; n < B; ++n) {
        const T *gr = dy + n * C, *xr = x + n * C;
        T* dr = dx + n * C;
        int64_t c = lo;
        if constexpr (norm_vec<T, A>) {
          using V = Vec<T>;
          for (; c + V::size <= hi; c += V::size) {
            const size_t j = size_t(c - lo);
            const V t = vfmadd(V::load(mean + c) - V::load(xr + c), V::load(kq.data() + j),
                               V::load(gr + c) - V::load(kmdy.data() + j));
            (V::load(ka.data() + j) * t).store(dr + c);
          }
        }
        for (; c < hi; ++c) {
          const size_t j = size_t(c - lo);
          dr[c] = cast_value<T>(ka[j] * (static_cast<A>(gr[c]) - kmdy[j] - (static_cast<A>(xr[c]) - mean[c]) * kq[j]));
        }
      }
    });
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kNormGrain / per_channel);
  parallel_for(0, C, grain, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double sdy = 0, sdx = 0;
      if (need_sums)
        for (int64_t n = 0; n < B; ++n) {
          double s1, s2;
          norm_row_sums<T, A>(x + (n * C + c) * S, dy + (n * C + c) * S, S, mean[c], true, s1, s2);
          sdy += s1, sdx += s2;
        }
      if (dw) dw[c] = A(sdx) * invstd[c];
      if (db) db[c] = A(sdy);
      if (!dx) continue;
      A a, mdy, q;
      coefficients(c, A(sdy), A(sdx), a, mdy, q);
      for (int64_t n = 0; n < B; ++n) {
        const int64_t off = (n * C + c) * S;
        norm_row_dx<T, A>(dy + off, training ? x + off : nullptr, dx + off, S, a, mdy, mean[c], q);
      }
    }
  });
}

// ---------------------------------------------------------------- layer norm

/// Layer norm forward: x, y [M, N]; w, b [N] or null; mean, rstd [M] written. Parallel over rows;
/// each row: sum (one pass), squared deviations (a second pass, from cache), then y.
template <class T, class A>
void layer_norm_fwd_kernel(const T* x, T* y, const A* w, const A* b, A* mean, A* rstd, int64_t M, int64_t N,
                           double eps) {
  if (M == 0 || N == 0) return;
  const int64_t grain = std::max<int64_t>(1, kNormGrain / N);
  parallel_for(0, M, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      const T* xr = x + i * N;
      T* yr = y + i * N;
      double s, sq, unused;
      norm_row_sums<T, A>(xr, nullptr, N, A(0), false, s, unused);
      const A m = A(s / double(N));
      norm_row_sums<T, A>(xr, nullptr, N, m, true, unused, sq);
      const A r = A(1) / std::sqrt(A(sq / double(N)) + A(eps));
      mean[i] = m, rstd[i] = r;
      if (!w && !b) {
        norm_row_scale<T, A>(xr, yr, N, m, r, A(0));
        continue;
      }
      int64_t j = 0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        const V vm(m), vr(r), one(T(1)), zero(T(0));
        for (; j + V::size <= N; j += V::size) {
          const V t = (V::load(xr + j) - vm) * vr;
          vfmadd(t, w ? V::load(w + j) : one, b ? V::load(b + j) : zero).store(yr + j);
        }
      }
      for (; j < N; ++j)
        yr[j] = cast_value<T>((static_cast<A>(xr[j]) - m) * r * (w ? w[j] : A(1)) + (b ? b[j] : A(0)));
    }
  });
}

/// Most row blocks the layer norm backward splits M into (each keeps a partial dw, db of N values).
inline constexpr int64_t kNormMaxBlocks = 64;

/// One row of the layer norm backward: dr = dx of the row (when not null), and the row's
/// dy * xhat and dy added into pw, pb (when not null).
template <class T, class A>
void layer_norm_bwd_row(const T* gr, const T* xr, const A* w, A m, A r, T* dr, A* pw, A* pb, int64_t N) {
  if (dr) {
    A sg = 0, sgx = 0;  // sum g, sum g * (x - mean), g = dy * w
    int64_t j = 0;
    if constexpr (norm_vec<T, A>) {
      using V = Vec<T>;
      V v1(T(0)), v2(T(0));
      for (; j + V::size <= N; j += V::size) {
        const V g = w ? V::load(gr + j) * V::load(w + j) : V::load(gr + j);
        v1 = v1 + g;
        v2 = vfmadd(g, V::load(xr + j) - V(m), v2);
      }
      sg = reduce_add(v1), sgx = reduce_add(v2);
    }
    for (; j < N; ++j) {
      const A g = static_cast<A>(gr[j]) * (w ? w[j] : A(1));
      sg += g, sgx += g * (static_cast<A>(xr[j]) - m);
    }
    // dx = r * (g - mg - (x - mean) * q), mg = sg / N, q = r^2 * sgx / N
    const A mg = sg / A(N), q = r * r * sgx / A(N);
    if (!w) {
      norm_row_dx<T, A>(gr, xr, dr, N, r, mg, m, q);
    } else {
      j = 0;
      if constexpr (norm_vec<T, A>) {
        using V = Vec<T>;
        const V vr(r), vmg(mg), vm(m), vq(q);
        for (; j + V::size <= N; j += V::size) {
          const V g = V::load(gr + j) * V::load(w + j);
          (vr * vfmadd(vm - V::load(xr + j), vq, g - vmg)).store(dr + j);
        }
      }
      for (; j < N; ++j)
        dr[j] = cast_value<T>(r * (static_cast<A>(gr[j]) * w[j] - mg - (static_cast<A>(xr[j]) - m) * q));
    }
  }
  if (!pw) return;
  int64_t j = 0;  // the row is in L1 now: dw += dy * xhat, db += dy
  if constexpr (norm_vec<T, A>) {
    using V = Vec<T>;
    const V vm(m), vr(r);
    for (; j + V::size <= N; j += V::size) {
      const V g = V::load(gr + j);
      vfmadd(g, (V::load(xr + j) - vm) * vr, V::load(pw + j)).store(pw + j);
      (V::load(pb + j) + g).store(pb + j);
    }
  }
  for (; j < N; ++j) {
    const A g = static_cast<A>(gr[j]);
    pw[j] += g * (static_cast<A>(xr[j]) - m) * r;
    pb[j] += g;
  }
}

/// Layer norm backward: dy, x [M, N]; w [N] or null; mean, rstd [M] from the forward; writes
/// dx [M, N], dw, db [N] where not null. One pass over the data: the rows are cut into at most
/// kNormMaxBlocks blocks (parallel), each computing its dx rows and a partial dw, db; the partials
/// are then added in block order, so the result does not depend on the thread count.
template <class T, class A>
void layer_norm_bwd_kernel(const T* dy, const T* x, const A* w, const A* mean, const A* rstd, T* dx, A* dw, A* db,
                           int64_t M, int64_t N) {
  if (N == 0) return;
  const bool params = dw || db;
  const int64_t rows = std::max({int64_t(1), kNormGrain / N, (M + kNormMaxBlocks - 1) / kNormMaxBlocks});
  const int64_t blocks = (M + rows - 1) / rows;
  std::vector<A> part(params ? size_t(2 * blocks * N) : 0, A(0));  // per block: dw partial [N], db partial [N]
  parallel_for(0, blocks, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t k = lo; k < hi; ++k)
      for (int64_t i = k * rows; i < std::min(M, (k + 1) * rows); ++i)
        layer_norm_bwd_row<T, A>(dy + i * N, x + i * N, w, mean[i], rstd[i], dx ? dx + i * N : nullptr,
                                 params ? part.data() + 2 * k * N : nullptr,
                                 params ? part.data() + (2 * k + 1) * N : nullptr, N);
  });
  auto add_partials = [&](A* out, int64_t which) {  // out = sum over blocks, in block order
    if (!out) return;
    std::fill(out, out + N, A(0));
    for (int64_t k = 0; k < blocks; ++k) {
      const A* p = part.data() + (2 * k + which) * N;
      for (int64_t j = 0; j < N; ++j) out[j] += p[j];
    }
  };
  add_partials(dw, 0);
  add_partials(db, 1);
}

}  // namespace strata::cpu
