// Softmax and log-softmax over one dim, forward and backward.
//
// The tensor is seen as contiguous [outer, n, inner] with the softmax over n (the op layer makes
// strided inputs contiguous first). For each of the outer * inner rows x[0..n):
//   m = max x;  s = sum exp(x - m)                        (subtracting m: no overflow, PyTorch's way)
//   softmax:     y = exp(x - m) / s                        dx = y * (dy - sum(dy * y))
//   log_softmax: y = x - m - log s                         dx = dy - exp(y) * sum(dy)
// Two layouts are fast: inner == 1 (softmax over the last dim: each row is contiguous, three SIMD
// passes over it) and inner > 1 (softmax over an earlier dim: a tile of up to kSoftmaxTile
// neighbouring rows is processed together, SIMD across the tile, so every read is contiguous).
// float and double use Vec<T> and vexp (< 2 ulp in float); f16/bf16 are computed in float
// (rows are widened into a float buffer), with a scalar loop. A row holding NaN gives NaN, a row
// of all -inf gives NaN (as PyTorch does). Work is split over rows/tiles with parallel_for.
// Reference: softmax_ref / softmax_bwd_ref below, plain loops in double.
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>

#include "kernels/cpu/reduce.hpp"

namespace strata::cpu {

/// Neighbouring rows (inner positions) processed together when inner > 1.
inline constexpr int kSoftmaxTile = 256;

// ---------------------------------------------------------------- reference

/// y = softmax (or log_softmax) of x over n; x, y: [outer, n, inner] contiguous.
template <class T>
void softmax_ref(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return o * n * inner + k * inner + i; };
      double m = -INFINITY;  // max, NaN-propagating
      for (int64_t k = 0; k < n; ++k) {
        const double v = double(static_cast<compute_t<T>>(x[at(k)]));
        m = std::isnan(v) || v > m ? v : m;
      }
      double s = 0;  // sum of exp(x - m)
      for (int64_t k = 0; k < n; ++k) s += std::exp(double(static_cast<compute_t<T>>(x[at(k)])) - m);
      for (int64_t k = 0; k < n; ++k) {
        const double v = double(static_cast<compute_t<T>>(x[at(k)])) - m;
        y[at(k)] = cast_value<T>(log ? v - std::log(s) : std::exp(v) / s);
      }
    }
}

/// dx from dy and the forward output y; all [outer, n, inner] contiguous.
template <class T>
void softmax_bwd_ref(const T* dy, const T* y, T* dx, int64_t outer, int64_t n, int64_t inner, bool log) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      auto at = [&](int64_t k) { return o * n * inner + k * inner + i; };
      auto val = [](T v) { return double(static_cast<compute_t<T>>(v)); };
      double s = 0;  // softmax: sum dy * y; log_softmax: sum dy
      for (int64_t k = 0; k < n; ++k) s += log ? val(dy[at(k)]) : val(dy[at(k)]) * val(y[at(k)]);
      for (int64_t k = 0; k < n; ++k) {
        const double g = val(dy[at(k)]), v = val(y[at(k)]);
        dx[at(k)] = cast_value<T>(log ? g - std::exp(v) * s : v * (g - s));
      }
    }
}

// ---------------------------------------------------------------- kernels

/// One contiguous row of n values (in C = float or double): y = softmax/log_softmax(x).
template <class C>
void softmax_row(const C* x, C* y, int64_t n, bool log) {
  int64_t i = 0;
  const C m = reduce_row<C, C>(x, n, 1, MaxOp{});
  C s = 0;
  if constexpr (has_vec<C>) {
    using V = Vec<C>;
    const V vm(m);
    V vs(C(0));
    for (; i + V::size <= n; i += V::size) {
      const V e = vexp(V::load(x + i) - vm);
      if (!log) e.store(y + i);
      vs = vs + e;
    }
    s = reduce_add(vs);
  }
  for (; i < n; ++i) {
    const C e = std::exp(x[i] - m);
    if (!log) y[i] = e;
    s += e;
  }
  i = 0;
  if (log) {
    const C ls = std::log(s);  // y = (x - m) - log s: x - m is exact near the max
    if constexpr (has_vec<C>) {
      using V = Vec<C>;
      for (; i + V::size <= n; i += V::size) (V::load(x + i) - V(m) - V(ls)).store(y + i);
    }
    for (; i < n; ++i) y[i] = (x[i] - m) - ls;
  } else {
    const C r = C(1) / s;
    if constexpr (has_vec<C>) {
      using V = Vec<C>;
      for (; i + V::size <= n; i += V::size) (V::load(y + i) * V(r)).store(y + i);
    }
    for (; i < n; ++i) y[i] *= r;
  }
}

/// One contiguous row: dx from dy and y.
template <class C>
void softmax_bwd_row(const C* dy, const C* y, C* dx, int64_t n, bool log) {
  int64_t i = 0;
  C s = 0;
  if constexpr (has_vec<C>) {
    using V = Vec<C>;
    V vs(C(0));
    for (; i + V::size <= n; i += V::size) vs = log ? vs + V::load(dy + i) : vfmadd(V::load(dy + i), V::load(y + i), vs);
    s = reduce_add(vs);
  }
  for (; i < n; ++i) s += log ? dy[i] : dy[i] * y[i];
  i = 0;
  if constexpr (has_vec<C>) {
    using V = Vec<C>;
    const V vs(s);
    for (; i + V::size <= n; i += V::size) {
      const V g = V::load(dy + i), v = V::load(y + i);
      (log ? g - vexp(v) * vs : v * (g - vs)).store(dx + i);
    }
  }
  for (; i < n; ++i) dx[i] = log ? dy[i] - std::exp(y[i]) * s : y[i] * (dy[i] - s);
}

/// A tile of w <= kSoftmaxTile neighbouring rows with stride `inner` between a row's elements:
/// x[k * inner + j], k < n, j < w. Three passes (max, exp and sum, scale), SIMD across j for
/// float/double. The SIMD max may skip a NaN, but the NaN then makes the sum NaN, so the whole
/// row still comes out NaN.
template <class T>
void softmax_tile(const T* x, T* y, int64_t n, int64_t inner, int w, bool log) {
  using C = compute_t<T>;
  C m[kSoftmaxTile], s[kSoftmaxTile];
  auto val = [](T v) { return static_cast<C>(v); };
  for (int j = 0; j < w; ++j) m[j] = -INFINITY, s[j] = 0;
  int wv = 0;  // columns done with SIMD
  if constexpr (has_vec<T>) wv = w / Vec<T>::size * Vec<T>::size;
  for (int64_t k = 0; k < n; ++k) {  // 1. m = max x
    const T* xr = x + k * inner;
    if constexpr (has_vec<T>) {
      using V = Vec<T>;
      for (int j = 0; j < wv; j += V::size) vmax(V::load(m + j), V::load(xr + j)).store(m + j);
    }
    for (int j = wv; j < w; ++j) m[j] = MaxOp::step(m[j], val(xr[j]));
  }
  for (int64_t k = 0; k < n; ++k) {  // 2. e = exp(x - m), s = sum e (softmax keeps e in y)
    const T* xr = x + k * inner;
    T* yr = y + k * inner;
    if constexpr (has_vec<T>) {
      using V = Vec<T>;
      for (int j = 0; j < wv; j += V::size) {
        const V e = vexp(V::load(xr + j) - V::load(m + j));
        if (!log) e.store(yr + j);
        (V::load(s + j) + e).store(s + j);
      }
    }
    for (int j = wv; j < w; ++j) {
      const C e = std::exp(val(xr[j]) - m[j]);
      if (!log) yr[j] = cast_value<T>(e);
      s[j] += e;
    }
  }
  for (int j = 0; j < w; ++j) s[j] = log ? std::log(s[j]) : C(1) / s[j];  // log s, or the scale 1/s
  for (int64_t k = 0; k < n; ++k) {  // 3. y = (x - m) - log s, or y = e / s
    const T* xr = x + k * inner;
    T* yr = y + k * inner;
    if constexpr (has_vec<T>) {
      using V = Vec<T>;
      for (int j = 0; j < wv; j += V::size)
        (log ? V::load(xr + j) - V::load(m + j) - V::load(s + j) : V::load(yr + j) * V::load(s + j)).store(yr + j);
    }
    for (int j = wv; j < w; ++j) yr[j] = cast_value<T>(log ? (val(xr[j]) - m[j]) - s[j] : val(yr[j]) * s[j]);
  }
}

/// Backward of a tile (layout as softmax_tile): s = sum dy*y (or sum dy), then dx.
template <class T>
void softmax_bwd_tile(const T* dy, const T* y, T* dx, int64_t n, int64_t inner, int w, bool log) {
  using C = compute_t<T>;
  C s[kSoftmaxTile];
  auto val = [](T v) { return static_cast<C>(v); };
  for (int j = 0; j < w; ++j) s[j] = 0;
  int wv = 0;
  if constexpr (has_vec<T>) wv = w / Vec<T>::size * Vec<T>::size;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t r = k * inner;
    if constexpr (has_vec<T>) {
      using V = Vec<T>;
      for (int j = 0; j < wv; j += V::size) {
        const V g = V::load(dy + r + j);
        (log ? V::load(s + j) + g : vfmadd(g, V::load(y + r + j), V::load(s + j))).store(s + j);
      }
    }
    for (int j = wv; j < w; ++j) s[j] += log ? val(dy[r + j]) : val(dy[r + j]) * val(y[r + j]);
  }
  for (int64_t k = 0; k < n; ++k) {
    const int64_t r = k * inner;
    if constexpr (has_vec<T>) {
      using V = Vec<T>;
      for (int j = 0; j < wv; j += V::size) {
        const V g = V::load(dy + r + j), v = V::load(y + r + j), vs = V::load(s + j);
        (log ? g - vexp(v) * vs : v * (g - vs)).store(dx + r + j);
      }
    }
    for (int j = wv; j < w; ++j) {
      const C g = val(dy[r + j]), v = val(y[r + j]);
      dx[r + j] = cast_value<T>(log ? g - std::exp(v) * s[j] : v * (g - s[j]));
    }
  }
}

/// Tile width for n rows: the tile (n * width values) should stay in L2 between the passes, and
/// each row segment should still be at least a cache line.
inline int64_t softmax_tile_width(int64_t n, int64_t inner) {
  const int64_t w = std::clamp<int64_t>((int64_t(1) << 16) / n / 16 * 16, 16, kSoftmaxTile);
  return std::min(w, inner);
}

// ---------------------------------------------------------------- launchers

/// Calls f(offset, width) in parallel for the column tiles of [outer, n, inner] data (inner > 1):
/// each tile is `width` <= softmax_tile_width adjacent columns of one outer index.
template <class F>
void for_each_softmax_tile(int64_t outer, int64_t n, int64_t inner, F&& f) {
  const int64_t tw = softmax_tile_width(n, inner), tiles = (inner + tw - 1) / tw;
  const int64_t grain = std::max<int64_t>(1, kReduceGrain / (n * tw));
  parallel_for(0, outer * tiles, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t t = lo; t < hi; ++t) {
      const int64_t o = t / tiles, c0 = (t % tiles) * tw;
      f(o * n * inner + c0, int(std::min(tw, inner - c0)));
    }
  });
}

/// y = softmax (log = false) or log_softmax (log = true) of x over n; x, y: [outer, n, inner].
template <class T>
void softmax_fwd_kernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  if (outer * n * inner == 0) return;
  if (inner == 1) {
    const int64_t grain = std::max<int64_t>(1, kReduceGrain / n);
    parallel_for(0, outer, grain, [&](int64_t lo, int64_t hi) {
      if constexpr (has_vec<T>) {
        for (int64_t o = lo; o < hi; ++o) softmax_row<T>(x + o * n, y + o * n, n, log);
      } else {  // widen each row to float, compute, narrow back
        std::unique_ptr<float[]> buf(new float[size_t(2 * n)]);
        for (int64_t o = lo; o < hi; ++o) {
          widen(x + o * n, buf.get(), n);
          softmax_row<float>(buf.get(), buf.get() + n, n, log);
          for (int64_t k = 0; k < n; ++k) y[o * n + k] = T(buf[n + k]);
        }
      }
    });
    return;
  }
  for_each_softmax_tile(outer, n, inner, [&](int64_t off, int w) { softmax_tile<T>(x + off, y + off, n, inner, w, log); });
}

/// dx from dy and the forward's y; all [outer, n, inner] contiguous.
template <class T>
void softmax_bwd_kernel(const T* dy, const T* y, T* dx, int64_t outer, int64_t n, int64_t inner, bool log) {
  if (outer * n * inner == 0) return;
  if (inner == 1) {
    const int64_t grain = std::max<int64_t>(1, kReduceGrain / n);
    parallel_for(0, outer, grain, [&](int64_t lo, int64_t hi) {
      if constexpr (has_vec<T>) {
        for (int64_t o = lo; o < hi; ++o) softmax_bwd_row<T>(dy + o * n, y + o * n, dx + o * n, n, log);
      } else {
        std::unique_ptr<float[]> buf(new float[size_t(3 * n)]);
        for (int64_t o = lo; o < hi; ++o) {
          for (int64_t k = 0; k < n; ++k) buf[k] = float(dy[o * n + k]), buf[n + k] = float(y[o * n + k]);
          softmax_bwd_row<float>(buf.get(), buf.get() + n, buf.get() + 2 * n, n, log);
          for (int64_t k = 0; k < n; ++k) dx[o * n + k] = T(buf[2 * n + k]);
        }
      }
    });
    return;
  }
  for_each_softmax_tile(outer, n, inner, [&](int64_t off, int w) {
    softmax_bwd_tile<T>(dy + off, y + off, dx + off, n, inner, w, log);
  });
}

}  // namespace strata::cpu
