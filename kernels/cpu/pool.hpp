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
    for (int64_t r = lo; r < hi; ++r) f(r / g.OH, r % g.OH);
  });
}

/// Max pool forward, x [planes, H, W] -> y, idx [planes, OH, OW]. Parallel over output rows; the
/// window loops carry no bounds checks (the window tables are already clipped).
template <class T>
void max_pool2d_fwd_kernel(const T* x, T* y, int64_t* idx, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.OH * g.OW == 0) return;
  const int64_t taps =
      (g.rows[0].hi - g.rows[0].lo + g.dh - 1) / g.dh * ((g.cols[0].hi - g.cols[0].lo + g.dw - 1) / g.dw);
  for_each_pool_row(g, g.OW * std::max<int64_t>(taps, 1), [&](int64_t p, int64_t oh) {
    const T* xp = x + p * g.H * g.W;
    T* yr = y + (p * g.OH + oh) * g.OW;
    int64_t* ir = idx + (p * g.OH + oh) * g.OW;
    const PoolWindow r = g.rows[oh];
    for (int64_t ow = 0; ow < g.OW; ++ow) {
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
      ir[ow] = at;
    }
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

/// Average pool forward (sliding and adaptive), x [planes, H, W] -> y [planes, OH, OW].
template <class T>
void avg_pool2d_fwd_kernel(const T* x, T* y, const Pool2dGeom& g) {
  using A = acc_t<T>;
  if (g.planes * g.OH * g.OW == 0) return;
  const int64_t taps = (g.rows[0].hi - g.rows[0].lo) * (g.cols[0].hi - g.cols[0].lo);
  for_each_pool_row(g, g.OW * std::max<int64_t>(taps, 1), [&](int64_t p, int64_t oh) {
    const T* xp = x + p * g.H * g.W;
    T* yr = y + (p * g.OH + oh) * g.OW;
    const PoolWindow r = g.rows[oh];
    for (int64_t ow = 0; ow < g.OW; ++ow) {
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
  const int64_t in_plane = g.H * g.W, out_plane = g.OH * g.OW;
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
        for (int64_t ow = 0; ow < g.OW; ++ow) {
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

}  // namespace strata::cpu
