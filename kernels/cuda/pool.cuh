// 2-d pooling on the device: max (with int64 argmax indices) and average, for sliding and adaptive
// windows, forward and backward: the CUDA twins of kernels/cpu/pool.hpp.
//
//   auto t = cuda::pool_tables(rows, cols, H, W);   // host: windows + the inverse ranges, packed
//   ... copy t to device memory p, then:
//   cuda::Pool2dDims g{.planes = B * C, .H = H, .W = W, .OH = OH, .OW = OW, .rows = p, .cols = p + 3 * OH, ...};
//   cuda::max_pool2d_fwd<T>(x, y, idx, g);          cuda::max_pool2d_bwd<T>(dy, idx, dx, g);
//   cuda::avg_pool2d_fwd<T>(x, y, g);               cuda::avg_pool2d_bwd<T>(dy, dx, g);
//
// Memory: x [planes, H, W, C] -> y [planes, OH, OW, C]. Contiguous NCHW is planes = B * C with
// C = 1; channels-last NHWC is planes = B with the real C: one set of kernels for both layouts.
// Every pool is one window per output row and one per output column (PoolWindow, the same layout
// as cpu::PoolWindow; the CPU's pool_windows / adaptive_windows make them, so ceil_mode, padding,
// count_include_pad, dilation and adaptive pools all come from the host's table):
//   max:  y = max over the window's taps (lo, lo + dh, ... < hi), taken when v > m or v is NaN, the
//         first tap always: the first on ties, the last NaN wins; idx = ih * W + iw; an empty
//         window gives -inf and -1. The same comparisons as the CPU, so y and idx are exact.
//   avg:  y = (sum of the window, row-major) / (rows[oh].count * cols[ow].count); 0 when empty.
//   max backward: dx = 0, then dx[idx] += dy over the outputs in order. One thread owns a whole
//         (plane, channel) column and walks its outputs, so there are no atomics and the
//         additions are the CPU's, in the CPU's order (exact, deterministic).
//   avg backward: a gather, one thread per input element: it walks the outputs whose windows
//         contain it (the range tables in_rows [H], in_cols [W], made on the host), in output
//         order, adding dy / count: the CPU's additions in the CPU's order (exact).
// Accumulation in float for f16/bf16 (and f32), double for f64 (compute_type). Forward kernels are
// grid-stride loops over the outputs (adjacent threads: adjacent ow, or adjacent channels).
// References: PyTorch aten/src/ATen/native/cuda/DilatedMaxPool2d.cu, AveragePool2d.cu
// (a gather backward over the windows that contain an input), AdaptiveAveragePooling.cu.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/dtype.cuh"

namespace strata::cuda {

/// Input positions lo, lo + step, ... < hi read by one output position along one dim; count is the
/// average pool's divisor for that dim (the layout of cpu::PoolWindow).
struct PoolWindow {
  int64_t lo = 0, hi = 0, count = 1;
};

/// The outputs [lo, hi) along one dim whose windows contain an input position (empty: lo == hi).
struct PoolRange {
  int64_t lo = 0, hi = 0;
};

/// A 2-d pool, x [planes, H, W, C] -> y [planes, OH, OW, C]; the tables are device pointers.
struct Pool2dDims {
  int64_t planes = 0, C = 1, H = 0, W = 0, OH = 0, OW = 0;
  int64_t dh = 1, dw = 1;                 // dilation: step between the taps of a window
  const PoolWindow* rows = nullptr;       // [OH]
  const PoolWindow* cols = nullptr;       // [OW]
  const PoolRange* in_rows = nullptr;     // [H], avg backward only
  const PoolRange* in_cols = nullptr;     // [W], avg backward only
};

inline constexpr unsigned kPoolThreads = 256;
inline constexpr int64_t kPoolMaxBlocks = 132 * 32;

// ---------------------------------------------------------------- kernels

/// y, idx [planes, OH, OW, C] (idx may be null) from x [planes, H, W, C]; grid-stride over outputs.
template <class T>
__global__ void max_pool2d_fwd_kernel(const T* x, T* y, int64_t* idx, Pool2dDims g) {
  using A = compute_type<T>;
  const int64_t n = g.planes * g.OH * g.OW * g.C, step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += step) {
    const int64_t c = o % g.C, pix = o / g.C, ow = pix % g.OW, oh = pix / g.OW % g.OH, p = pix / (g.OW * g.OH);
    const PoolWindow r = g.rows[oh], cw = g.cols[ow];
    const T* xp = x + p * g.H * g.W * g.C + c;
    A m = -A(INFINITY);
    int64_t at = -1;
    for (int64_t ih = r.lo; ih < r.hi; ih += g.dh)
      for (int64_t iw = cw.lo; iw < cw.hi; iw += g.dw) {
        const A v = A(load(xp + (ih * g.W + iw) * g.C));
        if (at < 0 || v > m || v != v) m = v, at = ih * g.W + iw;  // first on ties; a NaN always wins
      }
    store(y + o, m);
    if (idx) idx[o] = at;
  }
}

/// dx [planes, H, W, C] from dy, idx [planes, OH, OW, C]: one thread per (plane, channel) column
/// zeroes its dx and adds its dy at idx in output order (idx < 0: nothing).
template <class T>
__global__ void max_pool2d_bwd_kernel(const T* dy, const int64_t* idx, T* dx, Pool2dDims g) {
  using A = compute_type<T>;
  const int64_t n = g.planes * g.C, in_plane = g.H * g.W, out_plane = g.OH * g.OW;
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < n; t += step) {
    const int64_t p = t / g.C, c = t % g.C;
    T* dxp = dx + p * in_plane * g.C + c;
    const T* dyp = dy + p * out_plane * g.C + c;
    const int64_t* ip = idx + p * out_plane * g.C + c;
    for (int64_t i = 0; i < in_plane; ++i) store(dxp + i * g.C, A(0));
    for (int64_t o = 0; o < out_plane; ++o) {
      const int64_t at = ip[o * g.C];
      if (at >= 0) store(dxp + at * g.C, A(load(dxp + at * g.C)) + A(load(dyp + o * g.C)));
    }
  }
}

/// y [planes, OH, OW, C] = window mean of x [planes, H, W, C]; grid-stride over outputs.
template <class T>
__global__ void avg_pool2d_fwd_kernel(const T* x, T* y, Pool2dDims g) {
  using A = compute_type<T>;
  const int64_t n = g.planes * g.OH * g.OW * g.C, step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < n; o += step) {
    const int64_t c = o % g.C, pix = o / g.C, ow = pix % g.OW, oh = pix / g.OW % g.OH, p = pix / (g.OW * g.OH);
    const PoolWindow r = g.rows[oh], cw = g.cols[ow];
    const T* xp = x + p * g.H * g.W * g.C + c;
    A s = 0;
    for (int64_t ih = r.lo; ih < r.hi; ++ih)
      for (int64_t iw = cw.lo; iw < cw.hi; ++iw) s += A(load(xp + (ih * g.W + iw) * g.C));
    const bool empty = r.hi <= r.lo || cw.hi <= cw.lo;
    store(y + o, empty ? A(0) : s / A(r.count * cw.count));
  }
}

/// dx [planes, H, W, C] from dy [planes, OH, OW, C]: each input element gathers dy / count from the
/// outputs whose windows contain it, in output order; grid-stride over inputs.
template <class T>
__global__ void avg_pool2d_bwd_kernel(const T* dy, T* dx, Pool2dDims g) {
  using A = compute_type<T>;
  const int64_t n = g.planes * g.H * g.W * g.C, step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t c = i % g.C, pix = i / g.C, iw = pix % g.W, ih = pix / g.W % g.H, p = pix / (g.W * g.H);
    const PoolRange rr = g.in_rows[ih], cr = g.in_cols[iw];
    const T* dyp = dy + p * g.OH * g.OW * g.C + c;
    A acc = 0;
    for (int64_t oh = rr.lo; oh < rr.hi; ++oh) {
      const PoolWindow r = g.rows[oh];
      if (ih < r.lo || ih >= r.hi) continue;
      for (int64_t ow = cr.lo; ow < cr.hi; ++ow) {
        const PoolWindow cw = g.cols[ow];
        if (iw < cw.lo || iw >= cw.hi) continue;
        acc += A(load(dyp + (oh * g.OW + ow) * g.C)) / A(r.count * cw.count);
      }
    }
    store(dx + i, acc);
  }
}

// ---------------------------------------------------------------- launchers

/// For each input position of a dim of size `in`: the outputs whose windows contain it. Windows
/// move forward (lo and hi do not decrease with the output), so that set is one range.
inline std::vector<PoolRange> pool_input_ranges(const PoolWindow* w, int64_t out, int64_t in) {
  std::vector<PoolRange> r(static_cast<size_t>(std::max<int64_t>(in, 0)));
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = std::max<int64_t>(w[o].lo, 0); i < std::min(w[o].hi, in); ++i) {
      PoolRange& ri = r[size_t(i)];
      if (ri.hi == ri.lo) ri.lo = o;
      ri.hi = o + 1;
    }
  return r;
}

/// The host image of a pool's device tables, as int64s: rows [OH] and cols [OW] (3 each), then
/// in_rows [H] and in_cols [W] (2 each). Offsets into it: 0, 3 OH, 3 (OH + OW), 3 (OH + OW) + 2 H.
inline std::vector<int64_t> pool_tables(const PoolWindow* rows, int64_t OH, const PoolWindow* cols, int64_t OW,
                                        int64_t H, int64_t W) {
  std::vector<int64_t> t;
  t.reserve(size_t(3 * (OH + OW) + 2 * (H + W)));
  for (int64_t o = 0; o < OH; ++o) t.insert(t.end(), {rows[o].lo, rows[o].hi, rows[o].count});
  for (int64_t o = 0; o < OW; ++o) t.insert(t.end(), {cols[o].lo, cols[o].hi, cols[o].count});
  for (const PoolRange& r : pool_input_ranges(rows, OH, H)) t.insert(t.end(), {r.lo, r.hi});
  for (const PoolRange& r : pool_input_ranges(cols, OW, W)) t.insert(t.end(), {r.lo, r.hi});
  return t;
}

/// g's tables pointed into a device copy `d` of pool_tables(...).
inline void point_pool_tables(Pool2dDims& g, const int64_t* d) {
  g.rows = reinterpret_cast<const PoolWindow*>(d);
  g.cols = reinterpret_cast<const PoolWindow*>(d + 3 * g.OH);
  g.in_rows = reinterpret_cast<const PoolRange*>(d + 3 * (g.OH + g.OW));
  g.in_cols = reinterpret_cast<const PoolRange*>(d + 3 * (g.OH + g.OW) + 2 * g.H);
}

namespace detail {
inline void check_pool_dims(const Pool2dDims& g, const char* op) {
  STRATA_CHECK(g.planes >= 0 && g.C >= 0 && g.H >= 0 && g.W >= 0 && g.OH >= 0 && g.OW >= 0 && g.dh > 0 && g.dw > 0,
               op, "got planes = ", g.planes, ", C = ", g.C, ", H = ", g.H, ", W = ", g.W, ", OH = ", g.OH,
               ", OW = ", g.OW, ", dilation ", g.dh, " x ", g.dw, ", expected sizes >= 0 and dilations > 0");
  STRATA_CHECK(g.OH * g.OW == 0 || (g.rows && g.cols), op, "got null window tables, expected device pointers");
}
/// Blocks of a grid-stride loop over n items.
inline unsigned pool_blocks(int64_t n) {
  return unsigned(std::clamp<int64_t>((n + kPoolThreads - 1) / kPoolThreads, 1, kPoolMaxBlocks));
}
}  // namespace detail

/// Max pool forward: y, idx [planes, OH, OW, C] (idx may be null) from x [planes, H, W, C]; device pointers.
template <class T>
void max_pool2d_fwd(const T* x, T* y, int64_t* idx, const Pool2dDims& g, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "max_pool2d_fwd: T is float, double, f16_t or bf16_t");
  detail::check_pool_dims(g, "max_pool2d_fwd");
  const int64_t n = g.planes * g.OH * g.OW * g.C;
  if (n == 0) return;
  launch(max_pool2d_fwd_kernel<T>, dim3(detail::pool_blocks(n)), dim3(kPoolThreads), 0, stream, x, y, idx, g);
}

/// Max pool backward: dx [planes, H, W, C] = 0, dx[idx] += dy; dy, idx [planes, OH, OW, C]. The
/// window tables are not read.
template <class T>
void max_pool2d_bwd(const T* dy, const int64_t* idx, T* dx, const Pool2dDims& g, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "max_pool2d_bwd: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(g.planes >= 0 && g.C >= 0 && g.H * g.W >= 0 && g.OH * g.OW >= 0, "max_pool2d_bwd", "got planes = ",
               g.planes, ", C = ", g.C, ", expected sizes >= 0");
  const int64_t n = g.planes * g.C;
  if (n == 0 || g.H * g.W == 0) return;
  launch(max_pool2d_bwd_kernel<T>, dim3(detail::pool_blocks(n)), dim3(kPoolThreads), 0, stream, dy, idx, dx, g);
}

/// Average pool forward: y [planes, OH, OW, C] from x [planes, H, W, C]; device pointers.
template <class T>
void avg_pool2d_fwd(const T* x, T* y, const Pool2dDims& g, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "avg_pool2d_fwd: T is float, double, f16_t or bf16_t");
  detail::check_pool_dims(g, "avg_pool2d_fwd");
  const int64_t n = g.planes * g.OH * g.OW * g.C;
  if (n == 0) return;
  launch(avg_pool2d_fwd_kernel<T>, dim3(detail::pool_blocks(n)), dim3(kPoolThreads), 0, stream, x, y, g);
}

/// Average pool backward: dx [planes, H, W, C] from dy [planes, OH, OW, C]; needs the range tables.
template <class T>
void avg_pool2d_bwd(const T* dy, T* dx, const Pool2dDims& g, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "avg_pool2d_bwd: T is float, double, f16_t or bf16_t");
  detail::check_pool_dims(g, "avg_pool2d_bwd");
  const int64_t n = g.planes * g.H * g.W * g.C;
  if (n == 0) return;
  STRATA_CHECK(g.in_rows && g.in_cols, "avg_pool2d_bwd", "got null input range tables, expected device pointers");
  launch(avg_pool2d_bwd_kernel<T>, dim3(detail::pool_blocks(n)), dim3(kPoolThreads), 0, stream, dy, dx, g);
}

}  // namespace strata::cuda
