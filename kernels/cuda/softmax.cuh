// Softmax and log-softmax over one dim on the device, forward and backward: the CUDA twin of
// kernels/cpu/softmax.hpp (same math, same arguments). The tensor is contiguous [outer, n, inner]
// with the softmax over n (the op layer makes strided inputs contiguous first). For each of the
// outer * inner rows x[0..n):
//   m = max x;  s = sum exp(x - m)
//   softmax:     y = exp(x - m) * (1 / s)                  dx = y * (dy - sum(dy * y))
//   log_softmax: y = (x - m) - log s                       dx = dy - exp(y) * sum(dy)
//
//   cuda::softmax_fwd<float>(x, y, outer, n, inner, log);          // device pointers
//   cuda::softmax_bwd<float>(dy, y, dx, outer, n, inner, log);
//
// Element types T: float, double, cuda::f16_t, cuda::bf16_t, computed in compute_type<T> (float;
// double for double) and rounded once to T. A row holding NaN or +inf gives NaN, a row of all -inf
// gives NaN (as the CPU and PyTorch do).
// Two layouts, three paths (softmax_plan says which):
//   rows_warp   inner == 1, n <= kSoftmaxWarpMaxN: one warp per row, or for n <= 32 a group of
//               2^k >= n lanes of one (so a warp holds 32 / 2^k short rows); 128 threads a block;
//               each lane walks the row with stride 2^k and the group combines with an xor
//               butterfly (__shfl_xor_sync), so every lane holds the row's max / sum; no shared
//               memory. The row loop is uniform over the block (lanes of a row past the end still
//               shuffle), as the full-mask shuffles need.
//   rows_block  inner == 1, longer rows: one block per row (64..512 threads); a warp butterfly,
//               one shared slot per warp, every thread summing the slots in the same order.
//   cols        inner > 1: a block of cx x cy threads (cx = min(32, inner rounded up to a power of
//               2), cy = min(256 / cx, n rounded up likewise)) owns cx neighbouring columns of one
//               outer index; thread (tx, ty)
//               walks elements ty, ty + cy, ... of column tx, so a warp reads cx adjacent values of
//               32 / cx consecutive rows (with inner < 32 those rows are adjacent too: coalesced);
//               the cy partials of a column are combined by a tree in shared memory.
// Each path reads the row twice forward (max; then sum, then y: three passes over x, the later
// ones from L1/L2) and twice backward. All reductions run in a fixed order: the same bits every run.
// Sums run in a different order from the CPU's: results agree within a few ulp of compute_type.
// Every kernel loops grid-stride over its rows/tiles (a grid of at most kSoftmaxMaxBlocks blocks).
// Idea: PyTorch's SoftMax.cu (persistent warp softmax for short rows, block softmax for long rows,
// the spatial kernel for inner > 1); OneFlow's softmax (warp / block paths by row length).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/block_reduce.cuh"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/math.cuh"

namespace strata::cuda {

inline constexpr int64_t kSoftmaxWarpMaxN = 1024;     // rows_warp up to this length
inline constexpr unsigned kSoftmaxWarpBlock = 128;    // threads a rows_warp block
inline constexpr unsigned kSoftmaxColThreads = 256;   // threads a cols block
inline constexpr unsigned kSoftmaxMaxRowBlock = 512;  // threads a rows_block block at most
inline constexpr int64_t kSoftmaxMaxBlocks = 132 * 32;

namespace detail {
/// op over the blockDim.y threads of column threadIdx.x, returned to all of them (a tree in
/// shared memory; blockDim.y a power of 2). s_red: blockDim.x * blockDim.y slots.
template <class A, class Op>
__device__ __forceinline__ A sm_col_reduce(A v, Op op, A* s_red) {
  const unsigned tx = threadIdx.x, ty = threadIdx.y, cx = blockDim.x;
  __syncthreads();  // the previous call's readers are done
  s_red[ty * cx + tx] = v;
  for (unsigned h = blockDim.y / 2; h > 0; h >>= 1) {
    __syncthreads();
    if (ty < h) s_red[ty * cx + tx] = op(s_red[ty * cx + tx], s_red[(ty + h) * cx + tx]);
  }
  __syncthreads();
  return s_red[tx];
}
}  // namespace detail

// ---------------------------------------------------------------- kernels

/// inner == 1: rows of n contiguous values, one row per blockDim.x threads (<= 32 lanes of a warp,
/// blockDim.y rows a block; or the whole block, blockDim.y == 1). x, y: [rows, n].
template <class T>
__global__ void softmax_rows_fwd_kernel(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  using A = compute_type<T>;
  __shared__ A s_red[32];
  const int64_t step = int64_t(gridDim.x) * blockDim.y;
  for (int64_t r0 = int64_t(blockIdx.x) * blockDim.y; r0 < rows; r0 += step) {  // uniform in the block
    const int64_t r = r0 + threadIdx.y, len = r < rows ? n : 0;                 // a row past the end: no values
    const T* g_x = x + (len ? r : 0) * n;
    T* g_y = y + (len ? r : 0) * n;
    A r_max = -A(INFINITY);
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) r_max = MaxFn{}(r_max, A(load(g_x + k)));
    const A m = block_reduce(r_max, MaxFn{}, s_red);
    A r_sum = 0;
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) r_sum += m_exp(A(load(g_x + k)) - m);
    const A s = block_reduce(r_sum, SumFn{}, s_red);
    const A f = log ? m_log(s) : A(1) / s;  // log s, or the scale 1/s
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
      const A v = A(load(g_x + k)) - m;
      store(g_y + k, log ? A(v - f) : A(m_exp(v) * f));
    }
  }
}

/// Backward of softmax_rows_fwd_kernel: dx from dy and y, all [rows, n].
template <class T>
__global__ void softmax_rows_bwd_kernel(const T* dy, const T* y, T* dx, int64_t rows, int64_t n, bool log) {
  using A = compute_type<T>;
  __shared__ A s_red[32];
  const int64_t step = int64_t(gridDim.x) * blockDim.y;
  for (int64_t r0 = int64_t(blockIdx.x) * blockDim.y; r0 < rows; r0 += step) {  // uniform in the block
    const int64_t r = r0 + threadIdx.y, len = r < rows ? n : 0;
    const int64_t off = (len ? r : 0) * n;
    const T *g_dy = dy + off, *g_y = y + off;
    T* g_dx = dx + off;
    A r_sum = 0;  // softmax: sum dy * y; log_softmax: sum dy
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x)
      r_sum += log ? A(load(g_dy + k)) : A(load(g_dy + k)) * A(load(g_y + k));
    const A s = block_reduce(r_sum, SumFn{}, s_red);
    for (int64_t k = threadIdx.x; k < len; k += blockDim.x) {
      const A g = load(g_dy + k), v = load(g_y + k);
      store(g_dx + k, log ? A(g - m_exp(v) * s) : A(v * (g - s)));
    }
  }
}

/// inner > 1: tile t (of outer * tiles) is outer index t / tiles, columns blockDim.x (t % tiles) + [0,
/// blockDim.x); thread (tx, ty) walks elements ty, ty + blockDim.y, ... of its column. x, y: [outer, n, inner].
template <class T>
__global__ void softmax_cols_fwd_kernel(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log) {
  using A = compute_type<T>;
  __shared__ A s_red[kSoftmaxColThreads];
  const int64_t tiles = (inner + blockDim.x - 1) / blockDim.x;
  for (int64_t t = blockIdx.x; t < outer * tiles; t += gridDim.x) {  // uniform in the block
    const int64_t o = t / tiles, j = (t % tiles) * blockDim.x + threadIdx.x;
    const bool on = j < inner;
    const T* g_x = x + o * n * inner + j;
    T* g_y = y + o * n * inner + j;
    A r_max = -A(INFINITY);
    if (on)
      for (int64_t k = threadIdx.y; k < n; k += blockDim.y) r_max = MaxFn{}(r_max, A(load(g_x + k * inner)));
    const A m = detail::sm_col_reduce(r_max, MaxFn{}, s_red);
    A r_sum = 0;
    if (on)
      for (int64_t k = threadIdx.y; k < n; k += blockDim.y) r_sum += m_exp(A(load(g_x + k * inner)) - m);
    const A s = detail::sm_col_reduce(r_sum, SumFn{}, s_red);
    const A f = log ? m_log(s) : A(1) / s;
    if (on)
      for (int64_t k = threadIdx.y; k < n; k += blockDim.y) {
        const A v = A(load(g_x + k * inner)) - m;
        store(g_y + k * inner, log ? A(v - f) : A(m_exp(v) * f));
      }
  }
}

/// Backward of softmax_cols_fwd_kernel: dx from dy and y, all [outer, n, inner].
template <class T>
__global__ void softmax_cols_bwd_kernel(const T* dy, const T* y, T* dx, int64_t outer, int64_t n, int64_t inner,
                                        bool log) {
  using A = compute_type<T>;
  __shared__ A s_red[kSoftmaxColThreads];
  const int64_t tiles = (inner + blockDim.x - 1) / blockDim.x;
  for (int64_t t = blockIdx.x; t < outer * tiles; t += gridDim.x) {
    const int64_t o = t / tiles, j = (t % tiles) * blockDim.x + threadIdx.x;
    const bool on = j < inner;
    const int64_t base = o * n * inner + j;
    A r_sum = 0;
    if (on)
      for (int64_t k = threadIdx.y; k < n; k += blockDim.y) {
        const int64_t i = base + k * inner;
        r_sum += log ? A(load(dy + i)) : A(load(dy + i)) * A(load(y + i));
      }
    const A s = detail::sm_col_reduce(r_sum, SumFn{}, s_red);
    if (on)
      for (int64_t k = threadIdx.y; k < n; k += blockDim.y) {
        const int64_t i = base + k * inner;
        const A g = load(dy + i), v = load(y + i);
        store(dx + i, log ? A(g - m_exp(v) * s) : A(v * (g - s)));
      }
  }
}

// ---------------------------------------------------------------- launchers

/// The path a problem takes and its launch geometry.
enum class SoftmaxPath { rows_warp, rows_block, cols };
struct SoftmaxPlan {
  SoftmaxPath path;
  dim3 grid, block;
};

/// How softmax_fwd / softmax_bwd launch for [outer, n, inner] (n, inner >= 1, outer >= 1).
inline SoftmaxPlan softmax_plan(int64_t outer, int64_t n, int64_t inner) {
  auto blocks = [](int64_t work) { return dim3(unsigned(std::clamp<int64_t>(work, 1, kSoftmaxMaxBlocks))); };
  if (inner == 1 && n <= kSoftmaxWarpMaxN) {  // lanes a row: 32, or the power of 2 >= n
    unsigned lanes = 1;
    while (lanes < 32 && lanes < n) lanes *= 2;
    const unsigned per_block = kSoftmaxWarpBlock / lanes;
    return {SoftmaxPath::rows_warp, blocks((outer + per_block - 1) / per_block), dim3(lanes, per_block)};
  }
  if (inner == 1) {  // about 8 values a thread, a power of 2 in [64, 512]
    unsigned t = 64;
    while (t < kSoftmaxMaxRowBlock && int64_t(t) * 8 < n) t *= 2;
    return {SoftmaxPath::rows_block, blocks(outer), dim3(t)};
  }
  unsigned cx = 1, cy = 1;  // columns a block: inner up to 32; row streams: n up to 256 / cx
  while (cx < 32 && cx < inner) cx *= 2;
  while (cy < kSoftmaxColThreads / cx && cy < n) cy *= 2;
  return {SoftmaxPath::cols, blocks(outer * ((inner + cx - 1) / cx)), dim3(cx, cy)};
}

namespace detail {
inline void check_softmax(const void* a, const void* b, const void* out, int64_t outer, int64_t n, int64_t inner,
                          const char* op) {
  STRATA_CHECK(outer >= 0 && n >= 0 && inner >= 0, op, "got outer = ", outer, ", n = ", n, ", inner = ", inner,
               ", expected sizes >= 0");
  STRATA_CHECK(outer * n * inner == 0 || (a && b && out), op, "got a null pointer, expected device memory of [",
               outer, ", ", n, ", ", inner, "]");
}
}  // namespace detail

/// y [outer, n, inner] = softmax (log = false) or log_softmax (log = true) of x over n; device pointers.
template <class T>
void softmax_fwd(const T* x, T* y, int64_t outer, int64_t n, int64_t inner, bool log, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "softmax_fwd: T is float, double, f16_t or bf16_t");
  detail::check_softmax(x, x, y, outer, n, inner, log ? "log_softmax" : "softmax");
  if (outer * n * inner == 0) return;
  const SoftmaxPlan p = softmax_plan(outer, n, inner);
  if (p.path == SoftmaxPath::cols) launch(softmax_cols_fwd_kernel<T>, p.grid, p.block, 0, stream, x, y, outer, n, inner, log);
  else launch(softmax_rows_fwd_kernel<T>, p.grid, p.block, 0, stream, x, y, outer, n, log);
}

/// dx [outer, n, inner] from dy and the forward's output y (same shape); device pointers.
template <class T>
void softmax_bwd(const T* dy, const T* y, T* dx, int64_t outer, int64_t n, int64_t inner, bool log,
                 Stream stream = {}) {
  static_assert(is_floating_storage<T>, "softmax_bwd: T is float, double, f16_t or bf16_t");
  detail::check_softmax(dy, y, dx, outer, n, inner, log ? "log_softmax_backward" : "softmax_backward");
  if (outer * n * inner == 0) return;
  const SoftmaxPlan p = softmax_plan(outer, n, inner);
  if (p.path == SoftmaxPath::cols)
    launch(softmax_cols_bwd_kernel<T>, p.grid, p.block, 0, stream, dy, y, dx, outer, n, inner, log);
  else launch(softmax_rows_bwd_kernel<T>, p.grid, p.block, 0, stream, dy, y, dx, outer, n, log);
}

}  // namespace strata::cuda
