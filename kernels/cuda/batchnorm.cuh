// Batch norm (with the optional fused ReLU) and layer norm on the device, forward and backward: the
// CUDA twins of kernels/cpu/batchnorm.hpp (same math, same argument order, same BatchNormDims fields).
//
//   cuda::batch_norm_fwd<T>(x, y, w, b, mean, var, invstd, d, eps, training);   // device pointers
//   cuda::batch_norm_bwd<T>(dy, x, y, w, mean, invstd, dx, dw, db, d, training);
//   cuda::layer_norm_fwd<T>(x, y, w, b, mean, rstd, M, N, eps);
//   cuda::layer_norm_bwd<T>(dy, x, w, mean, rstd, dx, dw, db, M, N);
//
// Batch norm: x, y [B, C, S] in one of two layouts (BatchNormDims): channels-first, memory
// [B][C][S], or channels-last, memory [B][S][C]; per channel c over its N = B * S values:
//   training: mean = sum x / N,  var = sum (x - mean)^2 / N (biased);  eval: mean, var given
//   invstd = 1 / sqrt(var + eps),  y = (x - mean) * invstd * w + b,  y = max(y, 0) with d.relu
//   backward, g = dy (g = dy [y > 0] with d.relu, y the forward's output), xhat = (x - mean) invstd:
//     db = sum g,  dw = sum g xhat
//     training: dx = w invstd (g - sum g / N - (x - mean) invstd^2 sum(g (x - mean)) / N)
//     eval:     dx = w invstd g
// Layer norm: x, y [M, N] contiguous, over each row of N; w, b [N]:
//   y = (x - mean) rstd w + b,  rstd = 1 / sqrt(var + eps)
//   backward, g = dy w: dx = rstd (g - mean(g) - (x - mean) rstd^2 mean(g (x - mean)))
//                       dw = sum over rows dy xhat, db = sum over rows dy
//
// Element types T: float, double, cuda::f16_t, cuda::bf16_t; statistics, w, b, dw, db in
// A = compute_type<T> (float, double for double x), as on the CPU. One kernel per direction, each
// block owning whole channels, so the statistics and the output are one launch (the fused
// BatchNorm + ReLU of issue 8):
//   channels-first: one block per channel, 1-D threads walking its N values (flattened n * S + s);
//     sums combined by warp shuffles (xor butterfly) and one shared slot per warp;
//   channels-last (and S == 1): one block per 32 channels, block (32, kBnRows): lane x owns a
//     channel, the rows are walked with stride kBnRows (coalesced: a warp reads 32 adjacent
//     channels of a row); sums combined over threadIdx.y in shared memory.
//   Forward: sum -> mean, sum of squared deviations -> var (two passes, no cancellation), then y.
//   Backward: sum g and sum g (x - mean) in one pass, then dx (x is not read in eval).
// Layer norm: one block per row (forward, and dx); dw, db by a second kernel, one block per 32
// columns walking the rows (no atomics; with a workspace and few columns, the rows in chunks whose
// partials are added in chunk order). Every thread reduces in a fixed order, so a run gives the
// same bits every time; sums are in a different order from the CPU's (tiles, Chan's merge in
// double), so results agree within a few ulp of A, not bit for bit.
// Few channels and many values (fewer than kBnMinBlocks channel blocks): with a workspace the
// launchers split each channel into chunks instead (partial statistics per chunk, merged per
// channel in chunk order by Chan's update, then an elementwise pass: three launches, see "split
// path" below), so a GPU is not left with a handful of busy SMs. Not timed on a GPU yet.
// Idea: PyTorch's batch_norm_collect_statistics / batch_norm_backward_reduce kernels (one block per
// channel); llm.c's layernorm kernels. CPU reference: kernels/cpu/batchnorm.hpp (`_ref` loops).
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

/// Sizes and memory layout of a batch-norm input x [B, C, S]: the fields of cpu::BatchNormDims.
struct BatchNormDims {
  int64_t B = 0, C = 0, S = 1;
  bool channels_last = false;  // memory [B][S][C] (C innermost), else [B][C][S]
  bool relu = false;           // fused ReLU: y = max(bn(x), 0), and the backward masks dy by y > 0
};

/// Threads of a channels-first (or layer-norm row) block; rows of a channels-last block (x 32 lanes).
inline constexpr unsigned kBnThreads = 256;
inline constexpr unsigned kBnRows = 16;
/// The split path (below): taken when the one-block-per-channel grid has fewer than kBnMinBlocks
/// blocks (two waves of an H100's 132 SMs) and a channel has at least 2 kBnChunk values.
inline constexpr int64_t kBnMinBlocks = 264;
inline constexpr int64_t kBnChunk = 1024;
/// Rows per chunk (at least) of layer norm's dw, db when they are split the same way.
inline constexpr int64_t kLnRowChunk = 256;
inline constexpr int64_t kBnMaxGrid = 132 * 32;

namespace detail {

/// a, b summed over threadIdx.y of a (32, kBnRows) block, per lane x, returned to every thread of the
/// column. s_red: 2 * 32 * kBnRows shared slots.
template <class A>
__device__ __forceinline__ void bn_column_sum2(A& a, A& b, A* s_red) {
  const unsigned x = threadIdx.x, y = threadIdx.y, rows = blockDim.y;
  __syncthreads();
  s_red[y * 32 + x] = a, s_red[(rows + y) * 32 + x] = b;
  __syncthreads();
  a = s_red[x], b = s_red[rows * 32 + x];
  for (unsigned k = 1; k < rows; ++k) a += s_red[k * 32 + x], b += s_red[(rows + k) * 32 + x];
}

/// This thread's part of a channel: the channel c, the values i = first, first + step, ... < n
/// (n = B * S), `active` false for the lanes past C of the last channels-last block, `leader` for
/// the one thread that writes the channel's statistics.
struct BnWalk {
  int64_t c, first, step, n;
  bool active, leader;
};

template <bool CL>
__device__ __forceinline__ BnWalk bn_walk(const BatchNormDims& d) {
  if constexpr (CL) {
    const int64_t c = int64_t(blockIdx.x) * 32 + threadIdx.x;
    return {c, int64_t(threadIdx.y), int64_t(blockDim.y), d.B * d.S, c < d.C, c < d.C && threadIdx.y == 0};
  } else {
    return {int64_t(blockIdx.x), int64_t(threadIdx.x), int64_t(blockDim.x), d.B * d.S, true, threadIdx.x == 0};
  }
}

/// Offset of value i (= n * S + s) of channel c.
template <bool CL>
__device__ __forceinline__ int64_t bn_offset(const BatchNormDims& d, int64_t c, int64_t i) {
  if constexpr (CL) {
    return i * d.C + c;
  } else {
    const int64_t n = i / d.S;
    return (n * d.C + c) * d.S + (i - n * d.S);
  }
}

template <bool CL, class A>
__device__ __forceinline__ void bn_sum2(A& a, A& b, A* s_red) {
  if constexpr (CL) bn_column_sum2(a, b, s_red);
  else block_sum2(a, b, s_red);
}

}  // namespace detail

// ---------------------------------------------------------------- kernels

/// Batch norm forward, one channel (channels-first) or 32 channels (CL) per block: x, y [B, C, S]
/// laid out as d says; w, b [C] or null; mean, var [C] written when training, read otherwise;
/// invstd [C] written.
template <class T, class A, bool CL>
__global__ void batch_norm_fwd_kernel(const T* x, T* y, const A* w, const A* b, A* mean, A* var, A* invstd,
                                      BatchNormDims d, A eps, bool training) {
  __shared__ A s_red[2 * 32 * kBnRows];
  const detail::BnWalk k = detail::bn_walk<CL>(d);
  A m = 0, v = 0, unused = 0;
  if (training) {
    A r_sum = 0;
    for (int64_t i = k.first; k.active && i < k.n; i += k.step) r_sum += A(load(x + detail::bn_offset<CL>(d, k.c, i)));
    detail::bn_sum2<CL>(r_sum, unused, s_red);
    m = r_sum / A(k.n);                                                              // mean
    A r_sq = 0;
    for (int64_t i = k.first; k.active && i < k.n; i += k.step) {
      const A dv = A(load(x + detail::bn_offset<CL>(d, k.c, i))) - m;
      r_sq += dv * dv;
    }
    detail::bn_sum2<CL>(r_sq, unused, s_red);
    v = r_sq / A(k.n);                                                               // biased var
    if (k.leader) mean[k.c] = m, var[k.c] = v;
  } else if (k.active) {
    m = mean[k.c], v = var[k.c];
  }
  if (!k.active) return;  // no barrier below
  const A is = A(1) / m_sqrt(v + eps);                                               // invstd
  if (k.leader) invstd[k.c] = is;
  const A scale = is * (w ? w[k.c] : A(1)), shift = b ? b[k.c] : A(0);
  for (int64_t i = k.first; i < k.n; i += k.step) {
    const int64_t o = detail::bn_offset<CL>(d, k.c, i);
    const A z = (A(load(x + o)) - m) * scale + shift;
    store(y + o, d.relu && z < A(0) ? A(0) : z);                                     // relu keeps NaN
  }
}

/// Batch norm backward, blocks as the forward: dy, x, dx [B, C, S]; y [B, C, S] read only with
/// d.relu (g = dy [y > 0]); w [C] or null; mean, invstd [C] from the forward; dx, dw, db may be null.
template <class T, class A, bool CL>
__global__ void batch_norm_bwd_kernel(const T* dy, const T* x, const T* y, const A* w, const A* mean,
                                      const A* invstd, T* dx, A* dw, A* db, BatchNormDims d, bool training) {
  __shared__ A s_red[2 * 32 * kBnRows];
  const detail::BnWalk k = detail::bn_walk<CL>(d);
  const A m = k.active ? mean[k.c] : A(0), is = k.active ? invstd[k.c] : A(0);
  auto g = [&](int64_t o) { return d.relu && !(A(load(y + o)) > A(0)) ? A(0) : A(load(dy + o)); };
  A sdy = 0, sdx = 0;  // sum g, sum g (x - mean)
  if (dw || db || (dx && training)) {
    for (int64_t i = k.first; k.active && i < k.n; i += k.step) {
      const int64_t o = detail::bn_offset<CL>(d, k.c, i);
      const A gv = g(o);
      sdy += gv;
      sdx += gv * (A(load(x + o)) - m);
    }
    detail::bn_sum2<CL>(sdy, sdx, s_red);
  }
  if (!k.active) return;  // no barrier below
  if (k.leader && dw) dw[k.c] = sdx * is;
  if (k.leader && db) db[k.c] = sdy;
  if (!dx) return;
  // dx = a (g - mdy - (x - mean) q): a = w invstd, mdy = sdy / N, q = invstd^2 sdx / N (0 in eval)
  const A inv_n = A(1) / A(k.n);
  const A a = is * (w ? w[k.c] : A(1));
  const A mdy = training ? sdy * inv_n : A(0), q = training ? is * is * sdx * inv_n : A(0);
  for (int64_t i = k.first; i < k.n; i += k.step) {
    const int64_t o = detail::bn_offset<CL>(d, k.c, i);
    const A t = training ? (A(load(x + o)) - m) * q : A(0);
    store(dx + o, a * (g(o) - mdy - t));
  }
}

/// Layer norm forward, one row per block: x, y [M, N]; w, b [N] or null; mean, rstd [M] written.
template <class T, class A>
__global__ void layer_norm_fwd_kernel(const T* x, T* y, const A* w, const A* b, A* mean, A* rstd, int64_t N, A eps) {
  __shared__ A s_red[32];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * N;
  T* yr = y + row * N;
  A r_sum = 0;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) r_sum += A(load(xr + j));
  const A m = block_reduce(r_sum, SumFn{}, s_red) / A(N);
  A r_sq = 0;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    const A dv = A(load(xr + j)) - m;
    r_sq += dv * dv;
  }
  const A r = A(1) / m_sqrt(block_reduce(r_sq, SumFn{}, s_red) / A(N) + eps);
  if (threadIdx.x == 0) mean[row] = m, rstd[row] = r;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x)
    store(yr + j, (A(load(xr + j)) - m) * r * (w ? w[j] : A(1)) + (b ? b[j] : A(0)));
}

/// Layer norm dx, one row per block: dy, x, dx [M, N]; w [N] or null; mean, rstd [M].
template <class T, class A>
__global__ void layer_norm_bwd_dx_kernel(const T* dy, const T* x, const A* w, const A* mean, const A* rstd, T* dx,
                                         int64_t N) {
  __shared__ A s_red[64];
  const int64_t row = blockIdx.x;
  const T *gr = dy + row * N, *xr = x + row * N;
  const A m = mean[row], r = rstd[row];
  A sg = 0, sgx = 0;  // sum g, sum g (x - mean), g = dy w
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    const A gv = A(load(gr + j)) * (w ? w[j] : A(1));
    sg += gv;
    sgx += gv * (A(load(xr + j)) - m);
  }
  block_sum2(sg, sgx, s_red);
  const A mg = sg / A(N), q = r * r * sgx / A(N);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x)
    store(dx + row * N + j, r * (A(load(gr + j)) * (w ? w[j] : A(1)) - mg - (A(load(xr + j)) - m) * q));
}

/// Layer norm dw, db, 32 columns per block (32, kBnRows) over the rows [y chunk, (y + 1) chunk) of
/// blockIdx.y = y: dw[y N + j] = sum over those rows dy xhat, db[y N + j] = sum dy; either may be null
/// (one chunk: dw, db themselves; more: partials, added by layer_norm_bwd_params_finish_kernel).
template <class T, class A>
__global__ void layer_norm_bwd_params_kernel(const T* dy, const T* x, const A* mean, const A* rstd, A* dw, A* db,
                                             int64_t M, int64_t N, int64_t chunk) {
  __shared__ A s_red[2 * 32 * kBnRows];
  const int64_t j = int64_t(blockIdx.x) * 32 + threadIdx.x, lo = int64_t(blockIdx.y) * chunk;
  const int64_t hi = lo + chunk < M ? lo + chunk : M;
  if (dw) dw += int64_t(blockIdx.y) * N;
  if (db) db += int64_t(blockIdx.y) * N;
  A sw = 0, sb = 0;
  for (int64_t i = lo + threadIdx.y; j < N && i < hi; i += blockDim.y) {
    const A gv = A(load(dy + i * N + j));
    sw += gv * ((A(load(x + i * N + j)) - mean[i]) * rstd[i]);
    sb += gv;
  }
  detail::bn_column_sum2(sw, sb, s_red);
  if (j >= N || threadIdx.y != 0) return;
  if (dw) dw[j] = sw;
  if (db) db[j] = sb;
}

/// dw[j], db[j] (either may be null) = the P partials of part [2][P][N] added in chunk order.
template <class A>
__global__ void layer_norm_bwd_params_finish_kernel(const A* part, A* dw, A* db, int64_t N, int64_t P) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= N) return;
  A sw = 0, sb = 0;
  for (int64_t s = 0; s < P; ++s) sw += part[s * N + j], sb += part[(P + s) * N + j];
  if (dw) dw[j] = sw;
  if (db) db[j] = sb;
}

// ---------------------------------------------------------------- split path (few channels, many values)
// With few channel blocks the one-block-per-channel kernels leave most of a GPU idle, so the
// launchers split each channel's N values into `splits` chunks of kBnChunk or more when the caller
// passes a workspace: a grid (channel blocks, splits) of partial kernels writes per-chunk
// statistics, one thread per channel merges them in chunk order, and an elementwise kernel over all
// B * C * S values writes y (or dx). Workspace (A): 3 * C * (splits + 1) values, laid out
// [3][splits][C] (partials) then [3][C] (the backward's dx coefficients a, mdy, q).

/// Training forward partials: count, mean and m2 (sum of squared deviations from the chunk's own
/// mean, two passes) of chunk blockIdx.y of each channel.
template <class T, class A, bool CL>
__global__ void batch_norm_fwd_partial_kernel(const T* x, A* work, BatchNormDims d, int64_t chunk) {
  __shared__ A s_red[2 * 32 * kBnRows];
  const detail::BnWalk k = detail::bn_walk<CL>(d);
  const int64_t lo = int64_t(blockIdx.y) * chunk, hi = lo + chunk < k.n ? lo + chunk : k.n, P = gridDim.y;
  A r_sum = 0, unused = 0;
  for (int64_t i = lo + k.first; k.active && i < hi; i += k.step) r_sum += A(load(x + detail::bn_offset<CL>(d, k.c, i)));
  detail::bn_sum2<CL>(r_sum, unused, s_red);
  const A m = r_sum / A(hi - lo);
  A r_sq = 0;
  for (int64_t i = lo + k.first; k.active && i < hi; i += k.step) {
    const A dv = A(load(x + detail::bn_offset<CL>(d, k.c, i))) - m;
    r_sq += dv * dv;
  }
  detail::bn_sum2<CL>(r_sq, unused, s_red);
  if (!k.leader) return;
  work[(0 * P + blockIdx.y) * d.C + k.c] = A(hi - lo);
  work[(1 * P + blockIdx.y) * d.C + k.c] = m;
  work[(2 * P + blockIdx.y) * d.C + k.c] = r_sq;
}

/// Forward, one thread per channel: training merges the P partials in chunk order (Chan's update)
/// into mean and var; then invstd.
template <class A>
__global__ void batch_norm_fwd_finish_kernel(const A* work, A* mean, A* var, A* invstd, int64_t C, int64_t P, A eps,
                                             bool training) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  if (training) {
    A cnt = 0, m = 0, m2 = 0;
    for (int64_t s = 0; s < P; ++s) {
      const A nb = work[s * C + c], mb = work[(P + s) * C + c], qb = work[(2 * P + s) * C + c];
      const A tot = cnt + nb, delta = mb - m;
      m += delta * nb / tot;
      m2 += qb + delta * delta * cnt * nb / tot;
      cnt = tot;
    }
    mean[c] = m, var[c] = m2 / cnt;
  }
  invstd[c] = A(1) / m_sqrt(var[c] + eps);
}

/// y = (x - mean) invstd w + b (relu: max(., 0)), grid-stride over all n = B * C * S values.
template <class T, class A>
__global__ void batch_norm_apply_kernel(const T* x, T* y, const A* w, const A* b, const A* mean, const A* invstd,
                                        BatchNormDims d, int64_t n) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  const bool cl = d.channels_last || d.S == 1;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t c = cl ? i % d.C : i / d.S % d.C;
    const A scale = invstd[c] * (w ? w[c] : A(1)), shift = b ? b[c] : A(0);
    const A z = (A(load(x + i)) - mean[c]) * scale + shift;
    store(y + i, d.relu && z < A(0) ? A(0) : z);
  }
}

/// Backward partials: sum g and sum g (x - mean) over chunk blockIdx.y of each channel.
template <class T, class A, bool CL>
__global__ void batch_norm_bwd_partial_kernel(const T* dy, const T* x, const T* y, const A* mean, A* work,
                                              BatchNormDims d, int64_t chunk) {
  __shared__ A s_red[2 * 32 * kBnRows];
  const detail::BnWalk k = detail::bn_walk<CL>(d);
  const int64_t lo = int64_t(blockIdx.y) * chunk, hi = lo + chunk < k.n ? lo + chunk : k.n, P = gridDim.y;
  const A m = k.active ? mean[k.c] : A(0);
  A sdy = 0, sdx = 0;
  for (int64_t i = lo + k.first; k.active && i < hi; i += k.step) {
    const int64_t o = detail::bn_offset<CL>(d, k.c, i);
    const A gv = d.relu && !(A(load(y + o)) > A(0)) ? A(0) : A(load(dy + o));
    sdy += gv;
    sdx += gv * (A(load(x + o)) - m);
  }
  detail::bn_sum2<CL>(sdy, sdx, s_red);
  if (!k.leader) return;
  work[(0 * P + blockIdx.y) * d.C + k.c] = sdy;
  work[(1 * P + blockIdx.y) * d.C + k.c] = sdx;
}

/// Backward, one thread per channel: the P partial sums of `part` added in chunk order (P = 0: none),
/// dw, db, and dx's coefficients a, mdy, q into coef [3][C].
template <class A>
__global__ void batch_norm_bwd_finish_kernel(const A* w, const A* invstd, const A* part, A* coef, A* dw, A* db,
                                             int64_t C, int64_t P, int64_t n, bool training) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  A sdy = 0, sdx = 0;
  for (int64_t s = 0; s < P; ++s) sdy += part[s * C + c], sdx += part[(P + s) * C + c];
  const A is = invstd[c], inv_n = A(1) / A(n);
  if (dw) dw[c] = sdx * is;
  if (db) db[c] = sdy;
  coef[c] = is * (w ? w[c] : A(1));
  coef[C + c] = training ? sdy * inv_n : A(0);
  coef[2 * C + c] = training ? is * is * sdx * inv_n : A(0);
}

/// dx = a (g - mdy - (x - mean) q) per channel, grid-stride over all n values (x unread in eval).
template <class T, class A>
__global__ void batch_norm_dx_kernel(const T* dy, const T* x, const T* y, const A* mean, const A* coef, T* dx,
                                     BatchNormDims d, int64_t n, bool training) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  const bool cl = d.channels_last || d.S == 1;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t c = cl ? i % d.C : i / d.S % d.C;
    const A g = d.relu && !(A(load(y + i)) > A(0)) ? A(0) : A(load(dy + i));
    const A t = training ? (A(load(x + i)) - mean[c]) * coef[2 * d.C + c] : A(0);
    store(dx + i, coef[c] * (g - coef[d.C + c] - t));
  }
}

// ---------------------------------------------------------------- launchers

namespace detail {
inline void check_bn_dims(const BatchNormDims& d, const char* op) {
  STRATA_CHECK(d.B >= 0 && d.C >= 0 && d.S >= 0, op, "got B = ", d.B, ", C = ", d.C, ", S = ", d.S,
               ", expected sizes >= 0");
  STRATA_CHECK(d.C < (int64_t(1) << 31), op, "got C = ", d.C, " channels, expected fewer than 2^31");
}
/// Threads of a 1-D block walking n values: a multiple of 32, at most kBnThreads.
inline unsigned bn_threads(int64_t n) { return unsigned(std::clamp<int64_t>((n + 31) / 32 * 32, 32, kBnThreads)); }
/// Blocks of a grid-stride loop over n values.
inline unsigned bn_grid(int64_t n) {
  return unsigned(std::clamp<int64_t>((n + kBnThreads - 1) / kBnThreads, 1, kBnMaxGrid));
}
}  // namespace detail

/// Chunks each channel's values are split into on the split path (1: the one-kernel path): enough
/// blocks to fill kBnMinBlocks, each chunk at least kBnChunk values.
inline int64_t batch_norm_splits(const BatchNormDims& d) {
  const int64_t n = d.B * d.S, blocks = d.channels_last || d.S == 1 ? (d.C + 31) / 32 : d.C;
  if (blocks <= 0 || blocks >= kBnMinBlocks || n < 2 * kBnChunk) return 1;
  return std::clamp<int64_t>(std::min(kBnMinBlocks / blocks, n / kBnChunk), 1, 65535);
}

/// Workspace values (of compute_type) that batch_norm_fwd / batch_norm_bwd use for d's split path;
/// 0 when d takes the one-kernel path.
inline int64_t batch_norm_workspace(const BatchNormDims& d) {
  const int64_t p = batch_norm_splits(d);
  return p > 1 ? 3 * d.C * (p + 1) : 0;
}

/// Batch norm forward (see the top of this file); device pointers; needs B * S > 0 when C > 0 (the
/// tensor op checks it). A = compute_type<T>. work: batch_norm_workspace(d) values of device memory
/// for the split path, or null (then always the one-kernel path).
template <class T>
void batch_norm_fwd(const T* x, T* y, const compute_type<T>* w, const compute_type<T>* b, compute_type<T>* mean,
                    compute_type<T>* var, compute_type<T>* invstd, const BatchNormDims& d, double eps, bool training,
                    compute_type<T>* work = nullptr, Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "batch_norm_fwd: T is float, double, f16_t or bf16_t");
  detail::check_bn_dims(d, "batch_norm_fwd");
  if (d.C == 0 || d.B * d.S == 0) return;
  const int64_t P = batch_norm_splits(d), n = d.B * d.S;
  if (work && P > 1) {
    const int64_t chunk = (n + P - 1) / P;
    const bool cl = d.channels_last || d.S == 1;
    if (training && cl)
      launch(batch_norm_fwd_partial_kernel<T, A, true>, dim3(unsigned((d.C + 31) / 32), unsigned(P)),
             dim3(32, kBnRows), 0, stream, x, work, d, chunk);
    else if (training)
      launch(batch_norm_fwd_partial_kernel<T, A, false>, dim3(unsigned(d.C), unsigned(P)),
             dim3(detail::bn_threads(chunk)), 0, stream, x, work, d, chunk);
    launch(batch_norm_fwd_finish_kernel<A>, dim3(unsigned((d.C + 127) / 128)), dim3(128), 0, stream, work, mean, var,
           invstd, d.C, P, A(eps), training);
    launch(batch_norm_apply_kernel<T, A>, dim3(detail::bn_grid(n * d.C)), dim3(kBnThreads), 0, stream, x, y, w, b,
           mean, invstd, d, n * d.C);
    return;
  }
  if (d.channels_last || d.S == 1)
    launch(batch_norm_fwd_kernel<T, A, true>, dim3(unsigned((d.C + 31) / 32)), dim3(32, kBnRows), 0, stream, x, y,
           w, b, mean, var, invstd, d, A(eps), training);
  else
    launch(batch_norm_fwd_kernel<T, A, false>, dim3(unsigned(d.C)), dim3(detail::bn_threads(d.B * d.S)), 0, stream,
           x, y, w, b, mean, var, invstd, d, A(eps), training);
}

/// Batch norm backward (see the top of this file); device pointers; y read only with d.relu; any of
/// dx, dw, db may be null. work: as batch_norm_fwd's.
template <class T>
void batch_norm_bwd(const T* dy, const T* x, const T* y, const compute_type<T>* w, const compute_type<T>* mean,
                    const compute_type<T>* invstd, T* dx, compute_type<T>* dw, compute_type<T>* db,
                    const BatchNormDims& d, bool training, compute_type<T>* work = nullptr, Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "batch_norm_bwd: T is float, double, f16_t or bf16_t");
  detail::check_bn_dims(d, "batch_norm_bwd");
  STRATA_CHECK(!d.relu || y, "batch_norm_bwd", "got relu = true and y = null, expected the forward's output y");
  if (d.C == 0 || d.B * d.S == 0) return;
  const int64_t P = batch_norm_splits(d), n = d.B * d.S;
  if (work && P > 1) {
    const int64_t chunk = (n + P - 1) / P;
    const bool cl = d.channels_last || d.S == 1, sums = dw || db || (dx && training);
    if (sums && cl)
      launch(batch_norm_bwd_partial_kernel<T, A, true>, dim3(unsigned((d.C + 31) / 32), unsigned(P)),
             dim3(32, kBnRows), 0, stream, dy, x, y, mean, work, d, chunk);
    else if (sums)
      launch(batch_norm_bwd_partial_kernel<T, A, false>, dim3(unsigned(d.C), unsigned(P)),
             dim3(detail::bn_threads(chunk)), 0, stream, dy, x, y, mean, work, d, chunk);
    launch(batch_norm_bwd_finish_kernel<A>, dim3(unsigned((d.C + 127) / 128)), dim3(128), 0, stream, w, invstd, work,
           work + 3 * P * d.C, dw, db, d.C, sums ? P : 0, n, training);
    if (dx)
      launch(batch_norm_dx_kernel<T, A>, dim3(detail::bn_grid(n * d.C)), dim3(kBnThreads), 0, stream, dy, x, y, mean,
             work + 3 * P * d.C, dx, d, n * d.C, training);
    return;
  }
  if (d.channels_last || d.S == 1)
    launch(batch_norm_bwd_kernel<T, A, true>, dim3(unsigned((d.C + 31) / 32)), dim3(32, kBnRows), 0, stream, dy, x,
           y, w, mean, invstd, dx, dw, db, d, training);
  else
    launch(batch_norm_bwd_kernel<T, A, false>, dim3(unsigned(d.C)), dim3(detail::bn_threads(d.B * d.S)), 0, stream,
           dy, x, y, w, mean, invstd, dx, dw, db, d, training);
}

/// Row chunks of layer norm's dw, db (1: one pass over all rows): when the ceil(N / 32) column blocks
/// are fewer than kBnMinBlocks, enough chunks of at least kLnRowChunk rows to fill them.
inline int64_t layer_norm_splits(int64_t M, int64_t N) {
  const int64_t blocks = (N + 31) / 32;
  if (blocks <= 0 || blocks >= kBnMinBlocks || M < 2 * kLnRowChunk) return 1;
  return std::clamp<int64_t>(std::min(kBnMinBlocks / blocks, M / kLnRowChunk), 1, 65535);
}

/// Workspace values (of compute_type) that layer_norm_bwd uses for dw, db's row chunks; 0 for one chunk.
inline int64_t layer_norm_workspace(int64_t M, int64_t N) {
  const int64_t p = layer_norm_splits(M, N);
  return p > 1 ? 2 * N * p : 0;
}

/// Layer norm forward: x, y [M, N]; w, b [N] or null; mean, rstd [M]; device pointers.
template <class T>
void layer_norm_fwd(const T* x, T* y, const compute_type<T>* w, const compute_type<T>* b, compute_type<T>* mean,
                    compute_type<T>* rstd, int64_t M, int64_t N, double eps, Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "layer_norm_fwd: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(M >= 0 && N >= 0 && M < (int64_t(1) << 31), "layer_norm_fwd", "got M = ", M, ", N = ", N,
               ", expected 0 <= M < 2^31 and N >= 0");
  if (M == 0 || N == 0) return;
  launch(layer_norm_fwd_kernel<T, A>, dim3(unsigned(M)), dim3(detail::bn_threads(N)), 0, stream, x, y, w, b, mean,
         rstd, N, A(eps));
}

/// Layer norm backward: dy, x [M, N]; w [N] or null; mean, rstd [M] from the forward; dx [M, N],
/// dw, db [N] written where not null (dw, db are 0 for M == 0); device pointers. work:
/// layer_norm_workspace(M, N) values for dw, db in row chunks, or null (one pass over the rows).
template <class T>
void layer_norm_bwd(const T* dy, const T* x, const compute_type<T>* w, const compute_type<T>* mean,
                    const compute_type<T>* rstd, T* dx, compute_type<T>* dw, compute_type<T>* db, int64_t M, int64_t N,
                    compute_type<T>* work = nullptr, Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "layer_norm_bwd: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(M >= 0 && N >= 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 36), "layer_norm_bwd", "got M = ",
               M, ", N = ", N, ", expected 0 <= M < 2^31 and 0 <= N < 2^36");
  if (N == 0) return;
  if (dx && M > 0)
    launch(layer_norm_bwd_dx_kernel<T, A>, dim3(unsigned(M)), dim3(detail::bn_threads(N)), 0, stream, dy, x, w, mean,
           rstd, dx, N);
  if (!dw && !db) return;
  const int64_t P = layer_norm_splits(M, N);
  if (work && P > 1) {
    launch(layer_norm_bwd_params_kernel<T, A>, dim3(unsigned((N + 31) / 32), unsigned(P)), dim3(32, kBnRows), 0,
           stream, dy, x, mean, rstd, work, work + P * N, M, N, (M + P - 1) / P);
    launch(layer_norm_bwd_params_finish_kernel<A>, dim3(unsigned((N + 127) / 128)), dim3(128), 0, stream, work, dw, db,
           N, P);
    return;
  }
  launch(layer_norm_bwd_params_kernel<T, A>, dim3(unsigned((N + 31) / 32)), dim3(32, kBnRows), 0, stream, dy, x,
         mean, rstd, dw, db, M, N, M);
}

}  // namespace strata::cuda
