// 2-d pooling kernels: max (with argmax indices) and average, for sliding and adaptive windows,
// forward and backward.
//
// The input is contiguous [planes, H, W] (planes = B * C), the output [planes, OH, OW]. Every pool
// is described by one window per output row and one per output column (PoolWindow): output
// (oh, ow) reads input rows rows[oh].lo, lo + dh, ... < rows[oh].hi and the same for columns, so
// sliding pools (kernel, stride, padding, dilation, ceil_mode) and adaptive pools share the
// kernels below; only the window tables differ (pool_windows, adaptive_windows).
//   max:  y = max over the window (NaN wins, the last NaN as in PyTorch), idx = ih * W + iw of it
//         (the first position on ties); backward dx[idx] += dy.
//   avg:  y = sum over the window / (rows[oh].count * cols[ow].count); backward spreads dy / count
//         over the window. count is the window size with or without padding (count_include_pad),
//         or the adaptive window's size.
// Accumulation in float for f32/f16/bf16, double for f64. Work is split over planes (and output
// rows, for the forward) with parallel_for; the row sums of wide windows (global average pooling)
// use Vec<T>. A window that lies entirely in the padding gives 0 (avg) or -inf with index -1 (max).
// References: PyTorch aten/src/ATen/native/cpu/MaxPoolKernel.cpp, AvgPoolKernel.cpp,
// AdaptiveAvgPoolKernel.cpp, Pool.h (pooling_output_shape). The `_ref` functions are the plain
// loops the fast kernels are checked against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/cpu/elementwise.hpp"
#include "strata/core/dtype.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// Input positions lo, lo + step, ... < hi read by one output position along one dim; count is
/// the average pool's divisor for that dim.
struct PoolWindow {
  int64_t lo = 0, hi = 0, count = 1;
};

/// A 2-d pool: x [planes, H, W] -> y [planes, OH, OW], windows rows[OH] and cols[OW].
struct Pool2dGeom {
  int64_t planes = 0, H = 0, W = 0, OH = 0, OW = 0;
  int64_t dh = 1, dw = 1;                  // dilation: step between the taps of a window
  const PoolWindow* rows = nullptr;        // [OH]
  const PoolWindow* cols = nullptr;        // [OW]
};

/// Output size of a sliding pool along one dim (PyTorch's pooling_output_shape): with ceil_mode the
/// last window may hang over the end, but must start inside the input or the left padding.
inline int64_t pool_output_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
  const int64_t span = in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0);
  int64_t out = (span >= 0 ? span / s : -((-span + s - 1) / s)) + 1;  // floor division
  if (ceil_mode && (out - 1) * s >= in + p) --out;
  return out;
}

/// Windows of a sliding pool along one dim: output o covers o*s - p + j*d for j < k, clipped to
/// the input. count = k - (the part beyond the right padding) with count_include_pad, else the
/// number of taps inside the input (d == 1 for average pools).
inline std::vector<PoolWindow> pool_windows(int64_t in, int64_t out, int64_t k, int64_t s, int64_t p, int64_t d,
                                            bool count_include_pad) {
  std::vector<PoolWindow> w(static_cast<size_t>(std::max<int64_t>(out, 0)));
  for (int64_t o = 0; o < out; ++o) {
    int64_t lo = o * s - p;
    const int64_t end = lo + (k - 1) * d + 1;               // one past the last tap
    const int64_t padded = std::min(end, in + p) - lo;      // taps inside input + padding (d == 1)
    while (lo < 0) lo += d;                                 // first tap inside the input
    const int64_t hi = std::min(end, in);
    w[size_t(o)] = {lo, hi, count_include_pad ? padded : std::max<int64_t>(hi - lo, 0)};
  }
  return w;
}

/// Windows of an adaptive pool: output o of `out` covers [floor(o*in/out), ceil((o+1)*in/out)).
inline std::vector<PoolWindow> adaptive_windows(int64_t in, int64_t out) {
  std::vector<PoolWindow> w(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t lo = o * in / out, hi = ((o + 1) * in + out - 1) / out;
    w[size_t(o)] = {lo, hi, hi - lo};
  }
  return w;
}

// ---------------------------------------------------------------- reference

/// y, idx: [planes, OH, OW]; the max over each window and its position ih * W + iw in the plane.
template <class T>
void max_pool2d_ref(const T* x, T* y, int64_t* idx, const Pool2dGeom& g) {
  using A = acc_t<T>;
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const PoolWindow r = g.rows[oh], c = g.cols[ow];
        A m = -std::numeric_limits<A>::infinity();
        int64_t at = -1;
        for (int64_t ih = r.lo; ih < r.hi; ih += g.dh)
          for (int64_t iw = c.lo; iw < c.hi; iw += g.dw) {
            const A v = static_cast<A>(x[p * g.H * g.W + ih * g.W + iw]);
            if (at < 0 || v > m || std::isnan(v)) m = v, at = ih * g.W + iw;  // strictly greater: first on ties
          }
        y[(p * g.OH + oh) * g.OW + ow] = cast_value<T>(m);
        idx[(p * g.OH + oh) * g.OW + ow] = at;
      }
}

/// dx [planes, H, W] = 0, then dx[idx] += dy for every output (idx < 0: nothing).
template <class T>
void max_pool2d_bwd_ref(const T* dy, const int64_t* idx, T* dx, int64_t planes, int64_t in_plane, int64_t out_plane) {
  using A = acc_t<T>;
  for (int64_t i = 0; i < planes * in_plane; ++i) dx[i] = T(0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t o = 0; o < out_plane; ++o) {
      const int64_t at = idx[p * out_plane + o];
      if (at >= 0) dx[p * in_plane + at] = cast_value<T>(A(dx[p * in_plane + at]) + A(dy[p * out_plane + o]));
    }
}

/// y [planes, OH, OW] = window sum / (rows[oh].count * cols[ow].count); 0 for an empty window.
template <class T>
void avg_pool2d_ref(const T* x, T* y, const Pool2dGeom& g) {
  using A = acc_t<T>;
  for (int64_t p = 0; p < g.planes; ++p)
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const PoolWindow r = g.rows[oh], c = g.cols[ow];
        A s = 0;
        for (int64_t ih = r.lo; ih < r.hi; ++ih)
          for (int64_t iw = c.lo; iw < c.hi; ++iw) s += static_cast<A>(x[p * g.H * g.W + ih * g.W + iw]);
        const bool empty = r.hi <= r.lo || c.hi <= c.lo;
        y[(p * g.OH + oh) * g.OW + ow] = cast_value<T>(empty ? A(0) : s / A(r.count * c.count));
      }
}

/// dx [planes, H, W]: each dy spread as dy / count over its window.
template <class T>
void avg_pool2d_bwd_ref(const T* dy, T* dx, const Pool2dGeom& g) {
  using A = acc_t<T>;
  std::vector<A> acc(size_t(g.H * g.W));
  for (int64_t p = 0; p < g.planes; ++p) {
    std::fill(acc.begin(), acc.end(), A(0));
    for (int64_t oh = 0; oh < g.OH; ++oh)
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const PoolWindow r = g.rows[oh], c = g.cols[ow];
        const A share = A(dy[(p * g.OH + oh) * g.OW + ow]) / A(r.count * c.count);
        for (int64_t ih = r.lo; ih < r.hi; ++ih)
          for (int64_t iw = c.lo; iw < c.hi; ++iw) acc[size_t(ih * g.W + iw)] += share;
      }
    for (int64_t i = 0; i < g.H * g.W; ++i) dx[p * g.H * g.W + i] = cast_value<T>(acc[size_t(i)]);
  }
}

// ---------------------------------------------------------------- kernels

/// Output rows of work below which a pool stays on one thread (in input elements read).
inline constexpr int64_t kPoolGrain = 32768;

/// Sum of n contiguous values in A; SIMD lanes for float/double when the run is long enough to pay.
template <class T, class A>
inline A pool_row_sum(const T* x, int64_t n) {
  int64_t i = 0;
  A s = 0;
  if constexpr (has_vec<T>) {
    using V = Vec<T>;
    if (n >= 2 * V::size) {
      V v0(T(0)), v1(T(0));
      for (; i + 2 * V::size <= n; i += 2 * V::size) v0 = v0 + V::load(x + i), v1 = v1 + V::load(x + i + V::size);
      s = reduce_add(v0 + v1);
    }
  }
  for (; i < n; ++i) s += static_cast<A>(x[i]);
  return s;
}

/// Calls f(plane, oh) for every output row, in parallel over (plane, oh) pairs.
template <class F>
void for_each_pool_row(const Pool2dGeom& g, int64_t work_per_row, F&& f) {
  const int64_t grain = std::max<int64_t>(1, kPoolGrain / std::max<int64_t>(1, work_per_row));
  parallel_for(0, g.planes * g.OH, grain, [&](int64_t lo, int64_t hi) {
    int64_t p = lo / g.OH, oh = lo % g.OH;  // one division per chunk, not per row
    for (int64_t r = lo; r < hi; ++r) {
      f(p, oh);
      if (++oh == g.OH) oh = 0, ++p;
    }
  });
}

/// Whether g is the plain 2x2 stride-2 pool (no padding, no dilation, no ceil overhang): output
/// (oh, ow) reads rows 2 oh, 2 oh + 1 and columns 2 ow, 2 ow + 1.
inline bool is_pool_2x2(const Pool2dGeom& g) {
  if (g.dh != 1 || g.dw != 1) return false;
  for (int64_t o = 0; o < g.OH; ++o)
    if (g.rows[o].lo != 2 * o || g.rows[o].hi != 2 * o + 2) return false;
  for (int64_t o = 0; o < g.OW; ++o)
    if (g.cols[o].lo != 2 * o || g.cols[o].hi != 2 * o + 2) return false;
  return true;
}

namespace detail {
/// One output row of the 2x2 stride-2 max pool: r0, r1 the two input rows (of a plane of width W,
/// r0 at row 2 oh), y, idx and taps (both nullable) the output row: idx the argmax position, taps its
/// tap number k (position (2 oh + k / 2) W + 2 ow + k % 2) in one byte. Same ties/NaN rule as the
/// reference.
/// AVX2 floats: 8 outputs at a time, the even and odd columns split by shuffles (the four taps
/// become four vectors), the argmax kept as the tap number and turned into int64 positions with
/// integer vector ops; without idx (inference) three vector maxes, the tap loop only for a block
/// with a NaN. A row shorter than 8 outputs (the 14x14 -> 7x7 pool of a small CNN) is one
/// block with masked stores; its loads read past the row (lanes unused) but never past x_end (one
/// past the end of x), masked there; a longer row's
/// tail redoes a few outputs of the last full block (same values). Everything else (f64, 16-bit)
/// is the scalar loop.
#if defined(__AVX2__)
/// 8 floats in one AVX2 register: the vector blocks below are written for this width, so they
/// compile and run the same on AVX-512 targets (where Vec<float> is 16 wide) as on AVX2 ones.
struct PoolF8 {
  static constexpr int size = 8;
  __m256 v;
  PoolF8() = default;
  PoolF8(__m256 x) : v(x) {}
  explicit PoolF8(float s) : v(_mm256_set1_ps(s)) {}
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend PoolF8 vmax(PoolF8 a, PoolF8 b) { return _mm256_max_ps(a.v, b.v); }
  friend PoolF8 select_lt(PoolF8 a, PoolF8 b, PoolF8 t, PoolF8 f) {  // a < b ? t : f, lane by lane
    return _mm256_blendv_ps(f.v, t.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ));
  }
  friend PoolF8 select_nan(PoolF8 x, PoolF8 t, PoolF8 f) {  // isnan(x) ? t : f
    return _mm256_blendv_ps(f.v, t.v, _mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
  }
};
#endif

template <class T>
inline void max_pool2d_2x2_row(const T* r0, const T* r1, [[maybe_unused]] const T* x_end, T* y, int64_t* idx,
                               uint8_t* taps_out, int64_t oh, int64_t W, int64_t OW) {
  using A = acc_t<T>;
  int64_t ow = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    using V = PoolF8;
    auto even = [](__m256 lo, __m256 hi) {  // lo0 lo2 lo4 lo6 hi0 hi2 hi4 hi6
      return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
    };
    auto odd = [](__m256 lo, __m256 hi) {
      return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
    };
    const __m256i one = _mm256_set1_epi32(1), w32 = _mm256_set1_epi32(int32_t(W));
    const __m256i lane_lo = _mm256_setr_epi64x(0, 2, 4, 6), lane_hi = _mm256_setr_epi64x(8, 10, 12, 14);
    const __m256i lanes32 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i lanes64_lo = _mm256_setr_epi64x(0, 1, 2, 3), lanes64_hi = _mm256_setr_epi64x(4, 5, 6, 7);
    // outputs ow .. ow + n (n <= 8; n < 8: masked, reading only the row's 2 n inputs per input row)
    auto block = [&](int64_t n) __attribute__((always_inline)) {
      __m256 a0, a1, b0, b1;
      if (n == V::size || r1 + 2 * ow + 16 <= x_end) {  // all 16 in x (r1 follows r0): lanes past the row unused
        a0 = _mm256_loadu_ps(r0 + 2 * ow), a1 = _mm256_loadu_ps(r0 + 2 * ow + 8);
        b0 = _mm256_loadu_ps(r1 + 2 * ow), b1 = _mm256_loadu_ps(r1 + 2 * ow + 8);
      } else {  // lane i of the low half is input 2 ow + i, of the high half 2 ow + 8 + i
        const __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(2 * n)), lanes32);
        const __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(2 * n - 8)), lanes32);
        a0 = _mm256_maskload_ps(r0 + 2 * ow, m0), a1 = _mm256_maskload_ps(r0 + 2 * ow + 8, m1);
        b0 = _mm256_maskload_ps(r1 + 2 * ow, m0), b1 = _mm256_maskload_ps(r1 + 2 * ow + 8, m1);
      }
      const V taps[4] = {V(even(a0, a1)), V(odd(a0, a1)), V(even(b0, b1)), V(odd(b0, b1))};
      V m(-std::numeric_limits<float>::infinity()), tap(0.0f);
      if (!idx && !taps_out) {  // values only (inference): max(v, m) keeps m on ties (the first tap), unless a NaN is near
        const __m256 mx = _mm256_max_ps(taps[3].v, _mm256_max_ps(taps[2].v, _mm256_max_ps(taps[1].v, taps[0].v)));
        const __m256 un = _mm256_or_ps(_mm256_cmp_ps(taps[0].v, taps[1].v, _CMP_UNORD_Q),
                                       _mm256_cmp_ps(taps[2].v, taps[3].v, _CMP_UNORD_Q));
        if (_mm256_testz_ps(un, un)) {
          if (n == V::size) _mm256_storeu_ps(y + ow, mx);
          else _mm256_maskstore_ps(y + ow, _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), lanes32), mx);
          return;
        }
      }
      for (int k = 0; k < 4; ++k) {  // the same steps as detail::max_window
        const V v = taps[k], kv = V(float(k));
        const V gt_m = select_lt(m, v, v, m), gt_k = select_lt(m, v, kv, tap);
        m = select_nan(v, v, gt_m);
        tap = select_nan(v, kv, gt_k);
      }
      if (n == V::size) m.store(y + ow);
      else _mm256_maskstore_ps(y + ow, _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(n)), lanes32), m.v);
      const __m256i k = _mm256_cvttps_epi32(tap.v);
      if (taps_out) {  // 8 x int32 -> 8 bytes
        const __m128i k16 = _mm_packus_epi32(_mm256_castsi256_si128(k), _mm256_extracti128_si256(k, 1));
        const __m128i k8 = _mm_packus_epi16(k16, k16);
        if (n == V::size) {
          _mm_storel_epi64(reinterpret_cast<__m128i*>(taps_out + ow), k8);
        } else {
          uint64_t t = uint64_t(_mm_cvtsi128_si64(k8));  // n bytes in at most three stores
          uint8_t* d = taps_out + ow;
          if (n & 4) std::memcpy(d, &t, 4), d += 4, t >>= 32;
          if (n & 2) std::memcpy(d, &t, 2), d += 2, t >>= 16;
          if (n & 1) *d = uint8_t(t);
        }
      }
      if (!idx) return;
      // position = (2 oh + k / 2) W + 2 ow + k % 2
      const __m256i off = _mm256_add_epi32(_mm256_and_si256(k, one), _mm256_mullo_epi32(_mm256_srli_epi32(k, 1), w32));
      const __m256i base = _mm256_set1_epi64x(2 * oh * W + 2 * ow);
      const __m256i lo = _mm256_add_epi64(_mm256_add_epi64(base, lane_lo), _mm256_cvtepi32_epi64(_mm256_castsi256_si128(off)));
      const __m256i hi = _mm256_add_epi64(_mm256_add_epi64(base, lane_hi), _mm256_cvtepi32_epi64(_mm256_extracti128_si256(off, 1)));
      long long* ip = reinterpret_cast<long long*>(idx + ow);
      if (n == V::size) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ip), lo);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(ip + 4), hi);
      } else {
        const __m256i nn = _mm256_set1_epi64x(n);
        _mm256_maskstore_epi64(ip, _mm256_cmpgt_epi64(nn, lanes64_lo), lo);
        _mm256_maskstore_epi64(ip + 4, _mm256_cmpgt_epi64(nn, lanes64_hi), hi);
      }
    };
    if (OW < V::size) {
      block(OW);
      return;
    }
    for (; ow < OW; ow += V::size) {
      if (ow + V::size > OW) ow = OW - V::size;  // the tail: redo a few outputs, same values
      block(V::size);
    }
  }
#endif
  for (; ow < OW; ++ow) {
    const A v[4] = {A(r0[2 * ow]), A(r0[2 * ow + 1]), A(r1[2 * ow]), A(r1[2 * ow + 1])};
    A m = v[0];
    int k = 0;
    for (int j = 1; j < 4; ++j) {  // selects, not branches: random data defeats prediction
      const bool take = v[j] > m || v[j] != v[j];
      m = take ? v[j] : m;
      k = take ? j : k;
    }
    y[ow] = cast_value<T>(m);
    if (idx) idx[ow] = (2 * oh + k / 2) * W + 2 * ow + k % 2;
    if (taps_out) taps_out[ow] = uint8_t(k);
  }
}
}  // namespace detail

namespace detail {
/// The output columns a stride-2 vector block can take: [a, b), the longest run of windows that are
/// whole (kw taps, the widest; dw = 1) and start two columns apart (3x3 stride-2 pools, but for the
/// padded edges). b - a < 8: no run.
struct Stride2Run {
  int64_t a = 0, b = 0, kw = 0;
};
inline Stride2Run stride2_run(const Pool2dGeom& g) {
  Stride2Run best;
  if (g.dw != 1) return best;
  int64_t kw = 0;
  for (int64_t o = 0; o < g.OW; ++o) kw = std::max(kw, g.cols[o].hi - g.cols[o].lo);
  for (int64_t o = 0; o < g.OW;) {
    int64_t e = o + 1;
    if (g.cols[o].hi - g.cols[o].lo == kw)
      while (e < g.OW && g.cols[e].hi - g.cols[e].lo == kw && g.cols[e].lo == g.cols[e - 1].lo + 2) ++e;
    if (g.cols[o].hi - g.cols[o].lo == kw && e - o > best.b - best.a) best = {o, e, kw};
    o = e;
  }
  return best;
}

#if defined(__AVX2__)
/// Max pool of 8 outputs y[0 .. 8) of one row whose windows are rows r (step dh) by columns
/// lo + 2 l .. lo + 2 l + kw (l < 8), from the plane xp of width W; idx (nullable) gets ih * W + iw.
/// Each tap is one vector: the even lanes of 16 floats loaded from column lo + j (lane 15 is loaded,
/// never used: the caller keeps it inside x). Same tap order, ties and NaN rule as the reference.
inline void max_pool2d_s2_block(const float* xp, float* y, int64_t* idx, const PoolWindow& r, int64_t lo, int64_t kw,
                                int64_t dh, int64_t W) {
  using V = PoolF8;
  V m(-std::numeric_limits<float>::infinity()), tap(0.0f);
  int64_t k = 0;  // the tap number, row-major over the window
  for (int64_t ih = r.lo; ih < r.hi; ih += dh) {
    const float* xr = xp + ih * W + lo;
    for (int64_t j = 0; j < kw; ++j, ++k) {
      const __m256 a = _mm256_loadu_ps(xr + j), b = _mm256_loadu_ps(xr + j + 8);  // a0 b0 a2 b2 ... -> a0 a2 a4 a6 b0 ..
      const V v(_mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, 0x88)), 0xD8)));
      if (!idx) {
        m = select_nan(v, v, vmax(v, m));
        continue;
      }
      const V kv(static_cast<float>(k));
      const V gt_m = select_lt(m, v, v, m), gt_k = select_lt(m, v, kv, tap);
      m = select_nan(v, v, gt_m);
      tap = select_nan(v, kv, gt_k);
    }
  }
  m.store(y);
  if (!idx) return;
  alignas(32) float taps[V::size];
  tap.store(taps);
  for (int64_t l = 0; l < V::size; ++l) {
    const int64_t t = int64_t(taps[l]);
    idx[l] = (r.lo + t / kw * dh) * W + lo + 2 * l + t % kw;
  }
}
#endif
}  // namespace detail

/// Max pool forward, x [planes, H, W] -> y, idx [planes, OH, OW] (idx may be null: no indices,
/// for inference). Parallel over output rows; the window loops carry no bounds checks (the
/// window tables are already clipped); the 2x2 stride-2 pool has its own vector loop, and other
/// pools with stride-2 columns (3x3 stride 2: ResNet stems) take 8-output vector blocks over their
/// whole windows (AVX2 floats; the padded edges and rows with fewer than 8 whole windows stay scalar).
template <class T>
void max_pool2d_fwd_kernel(const T* x, T* y, int64_t* idx, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.OH * g.OW == 0) return;
  if (is_pool_2x2(g)) {
    const T* x_end = x + g.planes * g.H * g.W;
    for_each_pool_row(g, g.OW * 4, [&](int64_t p, int64_t oh) {
      const T* r0 = x + p * g.H * g.W + 2 * oh * g.W;
      const int64_t o = (p * g.OH + oh) * g.OW;
      detail::max_pool2d_2x2_row<T>(r0, r0 + g.W, x_end, y + o, idx ? idx + o : nullptr, nullptr, oh, g.W, g.OW);
    });
    return;
  }
  const int64_t taps =
      (g.rows[0].hi - g.rows[0].lo + g.dh - 1) / g.dh * ((g.cols[0].hi - g.cols[0].lo + g.dw - 1) / g.dw);
  [[maybe_unused]] const detail::Stride2Run run = detail::stride2_run(g);
  [[maybe_unused]] const T* x_end = x + g.planes * g.H * g.W;
  for_each_pool_row(g, g.OW * std::max<int64_t>(taps, 1), [&](int64_t p, int64_t oh) {
    const T* xp = x + p * g.H * g.W;
    T* yr = y + (p * g.OH + oh) * g.OW;
    int64_t* ir = idx ? idx + (p * g.OH + oh) * g.OW : nullptr;
    const PoolWindow r = g.rows[oh];
    auto one = [&](int64_t ow) {  // one output, any window
      const PoolWindow c = g.cols[ow];
      A m = -std::numeric_limits<A>::infinity();
      int64_t at = r.lo < r.hi && c.lo < c.hi ? r.lo * g.W + c.lo : -1;
      bool nan = false;
      for (int64_t ih = r.lo; ih < r.hi; ih += g.dh) {
        const T* xr = xp + ih * g.W;
        for (int64_t iw = c.lo; iw < c.hi; iw += g.dw) {  // branch-free: random data defeats prediction
          const A v = static_cast<A>(xr[iw]);
          const int64_t take = -int64_t(v > m);  // all ones where v wins (a mask, so no branch)
          at ^= (at ^ (ih * g.W + iw)) & take;
          m = vmax(v, m);
          nan |= v != v;
        }
      }
      if (nan)  // rare: redo the window the NaN-aware way (the last NaN wins)
        for (int64_t ih = r.lo; ih < r.hi; ih += g.dh)
          for (int64_t iw = c.lo; iw < c.hi; iw += g.dw) {
            const A v = static_cast<A>(xp[ih * g.W + iw]);
            if (v != v) m = v, at = ih * g.W + iw;
          }
      yr[ow] = cast_value<T>(m);
      if (ir) ir[ow] = at;
    };
    int64_t ow = 0;
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) {
      if (run.b - run.a >= 8 && r.lo < r.hi) {  // 8 outputs a vector over the run of whole stride-2 windows
        for (; ow < run.a; ++ow) one(ow);
        for (; ow < run.b; ow += 8) {
          if (ow + 8 > run.b) ow = run.b - 8;  // the tail: redo a few outputs, same values
          const int64_t lo = g.cols[ow].lo;
          if (xp + (r.hi - 1) * g.W + lo + run.kw - 1 + 16 > x_end) {  // the last loads would leave x
            for (int64_t o = ow; o < ow + 8; ++o) one(o);
            continue;
          }
          detail::max_pool2d_s2_block(xp, yr + ow, ir ? ir + ow : nullptr, r, lo, run.kw, g.dh, g.W);
        }
      }
    }
#endif
    for (; ow < g.OW; ++ow) one(ow);
  });
}

/// Max pool backward (sliding and adaptive): dx [planes, in_plane] = 0, dx[idx] += dy. Parallel
/// over planes: the windows of one plane may overlap, so a plane is one task.
template <class T>
void max_pool2d_bwd_kernel(const T* dy, const int64_t* idx, T* dx, int64_t planes, int64_t in_plane,
                           int64_t out_plane) {
  using A = acc_t<T>;
  const int64_t grain = std::max<int64_t>(1, kPoolGrain / std::max<int64_t>(1, in_plane + out_plane));
  parallel_for(0, planes, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t p = lo; p < hi; ++p) {
      T* dxp = dx + p * in_plane;
      const T* dyp = dy + p * out_plane;
      const int64_t* ip = idx + p * out_plane;
      std::fill(dxp, dxp + in_plane, T(0));
      for (int64_t o = 0; o < out_plane; ++o)
        if (ip[o] >= 0) dxp[ip[o]] = cast_value<T>(A(dxp[ip[o]]) + A(dyp[o]));
    }
  });
}

/// The plain 2x2 stride-2 max pool (is_pool_2x2(g)) for training: y [planes, OH, OW] and the argmax as
/// its tap number k in one byte, taps [planes, OH, OW] (the position is (2 oh + k / 2) W + 2 ow + k % 2):
/// an eighth of the int64 positions' bytes, written here and read by max_pool2d_2x2_bwd_kernel.
template <class T>
void max_pool2d_2x2_fwd_kernel(const T* x, T* y, uint8_t* taps, const Pool2dGeom& g) {
  if (g.planes * g.OH * g.OW == 0) return;
  const T* x_end = x + g.planes * g.H * g.W;
  for_each_pool_row(g, g.OW * 4, [&](int64_t p, int64_t oh) {
    const T* r0 = x + p * g.H * g.W + 2 * oh * g.W;
    const int64_t o = (p * g.OH + oh) * g.OW;
    detail::max_pool2d_2x2_row<T>(r0, r0 + g.W, x_end, y + o, nullptr, taps + o, oh, g.W, g.OW);
  });
}

/// Backward of max_pool2d_2x2_fwd_kernel: dx [planes, H, W] = dy at each window's tap, 0 elsewhere (an odd
/// H's last row and W's last column too). Each output row writes its two input rows whole, one pass (no
/// zero fill, then scatter); the values are the scatter's, 0 + dy (-0 gives +0). AVX2 floats: 8 outputs
/// a step, dy masked by tap == k for the four taps, the pairs interleaved into the two rows. Rows of fewer
/// than 8 outputs (14 x 14 -> 7 x 7) take a plane at a time, zeroed, then the taps (per row, they ran
/// 0.8x the int64 scatter; per plane ~1.0-1.08x).
template <class T>
void max_pool2d_2x2_bwd_kernel(const T* dy, const uint8_t* taps, T* dx, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.H * g.W == 0) return;
  if (g.OH * g.OW == 0) {
    std::fill(dx, dx + g.planes * g.H * g.W, T(0));
    return;
  }
  if (g.OW < 8) {  // short rows (14 x 14 -> 7 x 7): per plane, zero it, then the taps
    const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
    parallel_for(0, g.planes, std::max<int64_t>(1, kPoolGrain / (in_plane + out_plane)), [&](int64_t lo, int64_t hi) {
      for (int64_t p = lo; p < hi; ++p) {
        T* dxp = dx + p * in_plane;
        const T* dyp = dy + p * out_plane;
        const uint8_t* tp = taps + p * out_plane;
        std::fill(dxp, dxp + in_plane, T(0));
        for (int64_t oh = 0, o = 0; oh < g.OH; ++oh)
          for (int64_t ow = 0; ow < g.OW; ++ow, ++o)
            dxp[(2 * oh + tp[o] / 2) * g.W + 2 * ow + tp[o] % 2] = cast_value<T>(A(0) + static_cast<A>(dyp[o]));
      }
    });
    return;
  }
  for_each_pool_row(g, g.OW * 4, [&](int64_t p, int64_t oh) {
    const int64_t o = (p * g.OH + oh) * g.OW;
    const T* dyr = dy + o;
    const uint8_t* tr = taps + o;
    T* d0 = dx + p * g.H * g.W + 2 * oh * g.W;
    T* d1 = d0 + g.W;
    int64_t ow = 0;
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) {
      const __m256 zero = _mm256_setzero_ps();
      auto pairs = [](float* d, __m256 a, __m256 b) {  // d[0 .. 16) = a0 b0 a1 b1 .. a7 b7
        const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);  // a0 b0 a1 b1 a4 b4 a5 b5, ..
        _mm256_storeu_ps(d, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(d + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
      };
      for (; ow < g.OW; ow += 8) {
        if (ow + 8 > g.OW) ow = g.OW - 8;  // the tail: rewrite a few outputs' rows, same values
        const __m256 v = _mm256_add_ps(zero, _mm256_loadu_ps(dyr + ow));  // 0 + dy, as the scatter
        const __m256i k = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(tr + ow)));
        auto at = [&](int j) {  // dy where the tap is j, else 0
          return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpeq_epi32(k, _mm256_set1_epi32(j))));
        };
        pairs(d0 + 2 * ow, at(0), at(1));
        pairs(d1 + 2 * ow, at(2), at(3));
      }
    }
#endif
    for (; ow < g.OW; ++ow) {
      const T v = cast_value<T>(A(0) + static_cast<A>(dyr[ow]));
      const int k = tr[ow];
      d0[2 * ow] = k == 0 ? v : T(0), d0[2 * ow + 1] = k == 1 ? v : T(0);
      d1[2 * ow] = k == 2 ? v : T(0), d1[2 * ow + 1] = k == 3 ? v : T(0);
    }
    if (g.W > 2 * g.OW) std::fill(d0 + 2 * g.OW, d0 + g.W, T(0)), std::fill(d1 + 2 * g.OW, d1 + g.W, T(0));
    if (oh == g.OH - 1 && g.H > 2 * g.OH) std::fill(d1 + g.W, dx + (p + 1) * g.H * g.W, T(0));  // rows past the pairs
  });
}

namespace detail {
/// How many leading output columns of g have the 2x2 stride-2 pool's whole windows [2 ow, 2 ow + 2)
/// with cols[0]'s count (fastai's ResBlock shortcut, AvgPool2d(2, ceil_mode=True): all but an odd
/// width's last, partial window); 0 with a column dilation.
inline int64_t pool_pair_cols(const Pool2dGeom& g) {
  int64_t n = 0;
  if (g.dw == 1)
    while (n < g.OW && g.cols[n].lo == 2 * n && g.cols[n].hi == 2 * n + 2 && g.cols[n].count == g.cols[0].count) ++n;
  return n;
}

/// y[o] = ((r0[2o] + r0[2o+1]) + (r1[2o] + r1[2o+1])) / div for o < n: a row of those windows over
/// input rows r0, r1 (the general loop's order of sums). AVX2 floats: 8 outputs at a time, each
/// row's column pairs added by hadd (in-lane) and put in order by one 64-bit permute; the general
/// loop took a call per window row and ran at ~10% of fashion_resnet's training.
template <class T, class A>
inline void avg_pool2d_pairs_row(const T* r0, const T* r1, T* y, int64_t n, A div) {
  int64_t o = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    auto pairs = [](const float* r) {  // r[2k] + r[2k+1], k < 8
      const __m256 h = _mm256_hadd_ps(_mm256_loadu_ps(r), _mm256_loadu_ps(r + 8));  // 01 23 | 45 67 per lane
      return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(h), 0xD8));
    };
    const __m256 d = _mm256_set1_ps(div);
    for (; o + 8 <= n; o += 8)
      _mm256_storeu_ps(y + o, _mm256_div_ps(_mm256_add_ps(pairs(r0 + 2 * o), pairs(r1 + 2 * o)), d));
  }
#endif
  for (; o < n; ++o)
    y[o] = cast_value<T>(((A(r0[2 * o]) + A(r0[2 * o + 1])) + (A(r1[2 * o]) + A(r1[2 * o + 1]))) / div);
}

/// acc[2o] += s, acc[2o+1] += s for s = dy[o] / div, o < n, on both rows a0 and a1: the backward
/// of avg_pool2d_pairs_row (AVX2 floats: 8 shares at a time, each duplicated by unpack + permute).
template <class T, class A>
inline void avg_pool2d_pairs_bwd_row(const T* dy, A* a0, A* a1, int64_t n, A div) {
  int64_t o = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float> && std::is_same_v<A, float>) {
    const __m256 d = _mm256_set1_ps(div);
    for (; o + 8 <= n; o += 8) {
      const __m256 s = _mm256_div_ps(_mm256_loadu_ps(dy + o), d);
      const __m256 lo = _mm256_unpacklo_ps(s, s), hi = _mm256_unpackhi_ps(s, s);  // s0 s0 s1 s1 | s4 s4 s5 s5
      const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20), second = _mm256_permute2f128_ps(lo, hi, 0x31);
      for (A* a : {a0, a1}) {
        _mm256_storeu_ps(a + 2 * o, _mm256_add_ps(_mm256_loadu_ps(a + 2 * o), first));
        _mm256_storeu_ps(a + 2 * o + 8, _mm256_add_ps(_mm256_loadu_ps(a + 2 * o + 8), second));
      }
    }
  }
#endif
  for (; o < n; ++o) {
    const A s = A(dy[o]) / div;
    a0[2 * o] += s, a0[2 * o + 1] += s, a1[2 * o] += s, a1[2 * o + 1] += s;
  }
}
}  // namespace detail

/// Average pool forward (sliding and adaptive), x [planes, H, W] -> y [planes, OH, OW]. Rows of
/// 2-row windows over column pairs (the 2x2 stride-2 pool) go through avg_pool2d_pairs_row first.
template <class T>
void avg_pool2d_fwd_kernel(const T* x, T* y, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.OH * g.OW == 0) return;
  const int64_t taps = (g.rows[0].hi - g.rows[0].lo) * (g.cols[0].hi - g.cols[0].lo);
  const int64_t pair_cols = detail::pool_pair_cols(g);
  for_each_pool_row(g, g.OW * std::max<int64_t>(taps, 1), [&](int64_t p, int64_t oh) {
    const T* xp = x + p * g.H * g.W;
    T* yr = y + (p * g.OH + oh) * g.OW;
    const PoolWindow r = g.rows[oh];
    int64_t ow = 0;
    if (pair_cols > 0 && g.dh == 1 && r.hi - r.lo == 2) {
      detail::avg_pool2d_pairs_row<T, A>(xp + r.lo * g.W, xp + (r.lo + 1) * g.W, yr, pair_cols,
                                         A(r.count * g.cols[0].count));
      ow = pair_cols;
    }
    for (; ow < g.OW; ++ow) {
      const PoolWindow c = g.cols[ow];
      if (r.hi <= r.lo || c.hi <= c.lo) {
        yr[ow] = T(0);
        continue;
      }
      A s = 0;
      if (c.lo == 0 && c.hi == g.W)  // whole rows: one contiguous run (global average pooling)
        s = pool_row_sum<T, A>(xp + r.lo * g.W, (r.hi - r.lo) * g.W);
      else
        for (int64_t ih = r.lo; ih < r.hi; ++ih) s += pool_row_sum<T, A>(xp + ih * g.W + c.lo, c.hi - c.lo);
      yr[ow] = cast_value<T>(s / A(r.count * c.count));
    }
  });
}

/// Average pool backward, dy [planes, OH, OW] -> dx [planes, H, W]. Parallel over planes; each
/// plane accumulates in a zeroed A buffer (float for f16/bf16), then is written once.
template <class T>
void avg_pool2d_bwd_kernel(const T* dy, T* dx, const Pool2dGeom& g) {
  using A = acc_t<T>;
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW, pair_cols = detail::pool_pair_cols(g);
  const int64_t grain = std::max<int64_t>(1, kPoolGrain / std::max<int64_t>(1, in_plane + out_plane));
  parallel_for(0, g.planes, grain, [&](int64_t lo, int64_t hi) {
    std::vector<A> buf;
    if constexpr (!std::is_same_v<T, A>) buf.resize(size_t(in_plane));
    for (int64_t p = lo; p < hi; ++p) {
      A* acc;
      if constexpr (std::is_same_v<T, A>) acc = dx + p * in_plane;
      else acc = buf.data();
      std::fill(acc, acc + in_plane, A(0));
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const PoolWindow r = g.rows[oh];
        int64_t ow = 0;
        if (pair_cols > 0 && g.dh == 1 && r.hi - r.lo == 2) {  // the forward's pairs, in the same order
          detail::avg_pool2d_pairs_bwd_row<T, A>(dy + p * out_plane + oh * g.OW, acc + r.lo * g.W,
                                                 acc + (r.lo + 1) * g.W, pair_cols, A(r.count * g.cols[0].count));
          ow = pair_cols;
        }
        for (; ow < g.OW; ++ow) {
          const PoolWindow c = g.cols[ow];
          const A share = A(dy[p * out_plane + oh * g.OW + ow]) / A(r.count * c.count);
          for (int64_t ih = r.lo; ih < r.hi; ++ih) {
            A* ar = acc + ih * g.W;
            for (int64_t iw = c.lo; iw < c.hi; ++iw) ar[iw] += share;
          }
        }
      }
      if constexpr (!std::is_same_v<T, A>)
        for (int64_t i = 0; i < in_plane; ++i) dx[p * in_plane + i] = cast_value<T>(acc[i]);
    }
  });
}

// ---------------------------------------------------------------- channels-last kernels
// x [B, H, W, C] -> y [B, OH, OW, C] (a channels-last [B, C, H, W] tensor's memory), the same
// windows (Pool2dGeom with planes = B) and the same indices ih * W + iw as the kernels above, so
// they are checked against the same `_ref` loops through a layout change. Each output pixel reads
// its taps as C-long contiguous runs: the channel loop is the vector loop (PyTorch's
// cpu_max_pool_channels_last idea). The argmax is kept per lane as the tap number (a small whole
// number, exact in T) with blends, then turned into ih * W + iw once per pixel.

namespace detail {
/// Max over one window for channels c0 .. c0 + V::size (or one channel when V is a scalar):
/// m, tap (the window's tap number of the max; the first on ties, the last NaN wins).
template <class T, class V, class LoadF>
inline void max_window(const PoolWindow& r, const PoolWindow& c, int64_t dh, int64_t dw, LoadF load, V& m,
                       V& tap) {
  int64_t k = 0;
  for (int64_t ih = r.lo; ih < r.hi; ih += dh)
    for (int64_t iw = c.lo; iw < c.hi; iw += dw, ++k) {
      const V v = load(ih, iw);
      const V kv(static_cast<T>(k));
      const V gt_m = select_lt(m, v, v, m);    // v > m ? v : m (false when either is NaN)
      const V gt_k = select_lt(m, v, kv, tap);
      m = select_nan(v, v, gt_m);              // a NaN tap always wins: the last NaN stays
      tap = select_nan(v, kv, gt_k);
    }
}
/// The max alone (inference, no indices): m = v when v > m (the first max stays on ties), a NaN tap
/// always wins: the same values as max_window, a third of its vector ops.
template <class T, class V, class LoadF>
inline void max_window_values(const PoolWindow& r, const PoolWindow& c, int64_t dh, int64_t dw, LoadF load, V& m) {
  for (int64_t ih = r.lo; ih < r.hi; ih += dh)
    for (int64_t iw = c.lo; iw < c.hi; iw += dw) {
      const V v = load(ih, iw);
      m = select_nan(v, v, vmax(v, m));
    }
}
/// The same for one element in the accumulation type A.
template <class A, class LoadF>
inline void max_window_scalar(const PoolWindow& r, const PoolWindow& c, int64_t dh, int64_t dw, LoadF load, A& m,
                              int64_t& tap) {
  int64_t k = 0;
  for (int64_t ih = r.lo; ih < r.hi; ih += dh)
    for (int64_t iw = c.lo; iw < c.hi; iw += dw, ++k) {
      const A v = load(ih, iw);
      if (v > m || v != v) m = v, tap = k;
    }
}
}  // namespace detail

/// Max pool forward, channels-last: x [B, H, W, C] -> y, idx [B, OH, OW, C] (idx may be null).
/// Parallel over output rows (b, oh); vectorized over C for float/double; without idx the vector
/// loop keeps the max alone (detail::max_window_values).
template <class T>
void max_pool2d_fwd_nhwc_kernel(const T* x, T* y, int64_t* idx, int64_t C, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.OH * g.OW * C == 0) return;
  const int64_t taps =
      (g.rows[0].hi - g.rows[0].lo + g.dh - 1) / g.dh * ((g.cols[0].hi - g.cols[0].lo + g.dw - 1) / g.dw);
  int64_t most_rows = 1, most_cols = 1;  // the largest window (windows differ at the edges)
  for (int64_t o = 0; o < g.OH; ++o) most_rows = std::max(most_rows, (g.rows[o].hi - g.rows[o].lo + g.dh - 1) / g.dh);
  for (int64_t o = 0; o < g.OW; ++o) most_cols = std::max(most_cols, (g.cols[o].hi - g.cols[o].lo + g.dw - 1) / g.dw);
  for_each_pool_row(g, g.OW * C * std::max<int64_t>(taps, 1), [&](int64_t b, int64_t oh) {
    std::vector<int64_t> pos(static_cast<size_t>(most_rows * most_cols));
    const T* xb = x + b * g.H * g.W * C;
    T* yr = y + (b * g.OH + oh) * g.OW * C;
    int64_t* ir = idx ? idx + (b * g.OH + oh) * g.OW * C : nullptr;
    const PoolWindow r = g.rows[oh];
    for (int64_t ow = 0; ow < g.OW; ++ow) {
      const PoolWindow cw = g.cols[ow];
      T* yp = yr + ow * C;
      int64_t* ip = ir ? ir + ow * C : nullptr;
      if (r.hi <= r.lo || cw.hi <= cw.lo) {  // all padding (cannot happen with padding <= k / 2)
        for (int64_t c = 0; c < C; ++c) {
          yp[c] = cast_value<T>(-std::numeric_limits<A>::infinity());
          if (ip) ip[c] = -1;
        }
        continue;
      }
      // position of each tap k of this window (tap numbers are row-major over the window)
      int64_t k = 0;
      for (int64_t ih = r.lo; ih < r.hi; ih += g.dh)
        for (int64_t iw = cw.lo; iw < cw.hi; iw += g.dw) pos[size_t(k++)] = ih * g.W + iw;
      auto position = [&](int64_t tap) { return pos[size_t(tap)]; };
      int64_t c = 0;
      if constexpr (has_vec<T>) {
        using V = Vec<T>;
        T taps_at[V::size];
        for (; c + V::size <= C; c += V::size) {
          V m(-std::numeric_limits<T>::infinity()), tap(T(0));
          auto load = [&](int64_t ih, int64_t iw) { return V::load(xb + (ih * g.W + iw) * C + c); };
          if (!ip) {
            detail::max_window_values<T, V>(r, cw, g.dh, g.dw, load, m);
            m.store(yp + c);
            continue;
          }
          detail::max_window<T, V>(r, cw, g.dh, g.dw, load, m, tap);
          m.store(yp + c);
          tap.store(taps_at);
          for (int l = 0; l < V::size; ++l) ip[c + l] = position(int64_t(taps_at[l]));
        }
      }
      for (; c < C; ++c) {
        A m = -std::numeric_limits<A>::infinity();
        int64_t tap = 0;
        detail::max_window_scalar<A>(r, cw, g.dh, g.dw,
                                     [&](int64_t ih, int64_t iw) { return static_cast<A>(xb[(ih * g.W + iw) * C + c]); },
                                     m, tap);
        yp[c] = cast_value<T>(m);
        if (ip) ip[c] = position(tap);
      }
    }
  });
}

/// Max pool backward, channels-last: dx [B, H, W, C] = 0, dx[b, idx, c] += dy[b, o, c]. Parallel
/// over images (the windows of one image may overlap).
template <class T>
void max_pool2d_bwd_nhwc_kernel(const T* dy, const int64_t* idx, T* dx, int64_t B, int64_t C, int64_t in_plane,
                                int64_t out_plane) {
  using A = acc_t<T>;
  const int64_t grain = std::max<int64_t>(1, kPoolGrain / std::max<int64_t>(1, (in_plane + out_plane) * C));
  parallel_for(0, B, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      T* dxb = dx + b * in_plane * C;
      const T* dyb = dy + b * out_plane * C;
      const int64_t* ib = idx + b * out_plane * C;
      std::fill(dxb, dxb + in_plane * C, T(0));
      for (int64_t o = 0; o < out_plane; ++o)
        for (int64_t c = 0; c < C; ++c) {
          const int64_t at = ib[o * C + c];
          if (at >= 0) dxb[at * C + c] = cast_value<T>(A(dxb[at * C + c]) + A(dyb[o * C + c]));
        }
    }
  });
}

/// Average pool forward, channels-last: x [B, H, W, C] -> y [B, OH, OW, C]. Each pixel sums its
/// taps into a C-long accumulator (float for f16/bf16), vectorized over C.
template <class T>
void avg_pool2d_fwd_nhwc_kernel(const T* x, T* y, int64_t C, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.OH * g.OW * C == 0) return;
  const int64_t taps = (g.rows[0].hi - g.rows[0].lo) * (g.cols[0].hi - g.cols[0].lo);
  const int64_t grain = std::max<int64_t>(1, kPoolGrain / std::max<int64_t>(1, g.OW * C * std::max<int64_t>(taps, 1)));
  parallel_for(0, g.planes * g.OH, grain, [&](int64_t lo, int64_t hi) {
    std::vector<A> acc(static_cast<size_t>(C));
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.OH, oh = row % g.OH;
      const T* xb = x + b * g.H * g.W * C;
      const PoolWindow r = g.rows[oh];
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        const PoolWindow cw = g.cols[ow];
        T* yp = y + ((b * g.OH + oh) * g.OW + ow) * C;
        const bool empty = r.hi <= r.lo || cw.hi <= cw.lo;
        const A count = A(r.count * cw.count);
        std::fill(acc.begin(), acc.end(), A(0));
        for (int64_t ih = r.lo; ih < r.hi; ++ih)
          for (int64_t iw = cw.lo; iw < cw.hi; ++iw) {
            const T* xp = xb + (ih * g.W + iw) * C;
            int64_t c = 0;
            if constexpr (has_vec<T>) {
              using V = Vec<T>;
              for (; c + V::size <= C; c += V::size) (V::load(acc.data() + c) + V::load(xp + c)).store(acc.data() + c);
            }
            for (; c < C; ++c) acc[size_t(c)] += static_cast<A>(xp[c]);
          }
        for (int64_t c = 0; c < C; ++c) yp[c] = cast_value<T>(empty ? A(0) : acc[size_t(c)] / count);
      }
    }
  });
}

/// Average pool backward, channels-last: dy [B, OH, OW, C] -> dx [B, H, W, C]. Parallel over
/// images; each image accumulates in A (float for f16/bf16), then is written once.
template <class T>
void avg_pool2d_bwd_nhwc_kernel(const T* dy, T* dx, int64_t C, const Pool2dGeom& g) {
  using A = acc_t<T>;
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const int64_t grain = std::max<int64_t>(1, kPoolGrain / std::max<int64_t>(1, (in_plane + out_plane) * C));
  parallel_for(0, g.planes, grain, [&](int64_t lo, int64_t hi) {
    std::vector<A> buf, share(static_cast<size_t>(C));
    if constexpr (!std::is_same_v<T, A>) buf.resize(size_t(in_plane * C));
    for (int64_t b = lo; b < hi; ++b) {
      A* acc;
      if constexpr (std::is_same_v<T, A>) acc = dx + b * in_plane * C;
      else acc = buf.data();
      std::fill(acc, acc + in_plane * C, A(0));
      for (int64_t oh = 0; oh < g.OH; ++oh) {
        const PoolWindow r = g.rows[oh];
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const PoolWindow cw = g.cols[ow];
          const T* dyp = dy + (b * out_plane + oh * g.OW + ow) * C;
          for (int64_t c = 0; c < C; ++c) share[size_t(c)] = A(dyp[c]) / A(r.count * cw.count);
          for (int64_t ih = r.lo; ih < r.hi; ++ih)
            for (int64_t iw = cw.lo; iw < cw.hi; ++iw) {
              A* ap = acc + (ih * g.W + iw) * C;
              int64_t c = 0;
              if constexpr (has_vec<A>) {
                using V = Vec<A>;
                for (; c + V::size <= C; c += V::size) (V::load(ap + c) + V::load(share.data() + c)).store(ap + c);
              }
              for (; c < C; ++c) ap[c] += share[size_t(c)];
            }
        }
      }
      if constexpr (!std::is_same_v<T, A>)
        for (int64_t i = 0; i < in_plane * C; ++i) dx[b * in_plane * C + i] = cast_value<T>(acc[i]);
    }
  });
}

}  // namespace strata::cpu
