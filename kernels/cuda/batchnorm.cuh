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
// columns walking the rows (no atomics). Every thread reduces in a fixed order, so a run gives the
// same bits every time; sums are in a different order from the CPU's (tiles, Chan's merge in
// double), so results agree within a few ulp of A, not bit for bit.
// Assumption: one block per channel limits the parallelism to C (or C / 32) blocks: fine for the
// CNN layers strata trains (C >= 16, N up to ~10^6); a split-N version is the next rung.
// Idea: PyTorch's batch_norm_collect_statistics / batch_norm_backward_reduce kernels (one block per
// channel); llm.c's layernorm kernels. CPU reference: kernels/cpu/batchnorm.hpp (`_ref` loops).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/dtype.cuh"

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

namespace detail {

template <class A>
__device__ __forceinline__ A bn_sqrt(A v) {
  if constexpr (sizeof(A) == 4) return ::sqrtf(v);
  else return ::sqrt(v);
}

/// a, b summed over the block (1-D, blockDim.x a multiple of 32), returned to every thread in the
/// same order. s_red: 64 shared slots (the first barrier keeps a previous call's readers safe).
template <class A>
__device__ __forceinline__ void bn_block_sum2(A& a, A& b, A* s_red) {
  for (int o = 16; o > 0; o >>= 1) {
    a += __shfl_xor_sync(0xffffffffu, a, o);
    b += __shfl_xor_sync(0xffffffffu, b, o);
  }
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) s_red[warp] = a, s_red[32 + warp] = b;
  __syncthreads();
  a = s_red[0], b = s_red[32];
  for (unsigned w = 1; w < warps; ++w) a += s_red[w], b += s_red[32 + w];
}

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
  else bn_block_sum2(a, b, s_red);
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
  const A is = A(1) / detail::bn_sqrt(v + eps);                                      // invstd
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
  __shared__ A s_red[64];
  const int64_t row = blockIdx.x;
  const T* xr = x + row * N;
  T* yr = y + row * N;
  A r_sum = 0, unused = 0;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) r_sum += A(load(xr + j));
  detail::bn_block_sum2(r_sum, unused, s_red);
  const A m = r_sum / A(N);
  A r_sq = 0;
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x) {
    const A dv = A(load(xr + j)) - m;
    r_sq += dv * dv;
  }
  detail::bn_block_sum2(r_sq, unused, s_red);
  const A r = A(1) / detail::bn_sqrt(r_sq / A(N) + eps);
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
  detail::bn_block_sum2(sg, sgx, s_red);
  const A mg = sg / A(N), q = r * r * sgx / A(N);
  for (int64_t j = threadIdx.x; j < N; j += blockDim.x)
    store(dx + row * N + j, r * (A(load(gr + j)) * (w ? w[j] : A(1)) - mg - (A(load(xr + j)) - m) * q));
}

/// Layer norm dw, db, 32 columns per block (32, kBnRows): dw[j] = sum over rows dy xhat, db[j] = sum dy;
/// either may be null.
template <class T, class A>
__global__ void layer_norm_bwd_params_kernel(const T* dy, const T* x, const A* mean, const A* rstd, A* dw, A* db,
                                             int64_t M, int64_t N) {
  __shared__ A s_red[2 * 32 * kBnRows];
  const int64_t j = int64_t(blockIdx.x) * 32 + threadIdx.x;
  A sw = 0, sb = 0;
  for (int64_t i = threadIdx.y; j < N && i < M; i += blockDim.y) {
    const A gv = A(load(dy + i * N + j));
    sw += gv * ((A(load(x + i * N + j)) - mean[i]) * rstd[i]);
    sb += gv;
  }
  detail::bn_column_sum2(sw, sb, s_red);
  if (j >= N || threadIdx.y != 0) return;
  if (dw) dw[j] = sw;
  if (db) db[j] = sb;
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
}  // namespace detail

/// Batch norm forward (see the top of this file); device pointers; needs B * S > 0 when C > 0 (the
/// tensor op checks it). A = compute_type<T>.
template <class T>
void batch_norm_fwd(const T* x, T* y, const compute_type<T>* w, const compute_type<T>* b, compute_type<T>* mean,
                    compute_type<T>* var, compute_type<T>* invstd, const BatchNormDims& d, double eps, bool training,
                    Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "batch_norm_fwd: T is float, double, f16_t or bf16_t");
  detail::check_bn_dims(d, "batch_norm_fwd");
  if (d.C == 0 || d.B * d.S == 0) return;
  if (d.channels_last || d.S == 1)
    launch(batch_norm_fwd_kernel<T, A, true>, dim3(unsigned((d.C + 31) / 32)), dim3(32, kBnRows), 0, stream, x, y,
           w, b, mean, var, invstd, d, A(eps), training);
  else
    launch(batch_norm_fwd_kernel<T, A, false>, dim3(unsigned(d.C)), dim3(detail::bn_threads(d.B * d.S)), 0, stream,
           x, y, w, b, mean, var, invstd, d, A(eps), training);
}

/// Batch norm backward (see the top of this file); device pointers; y read only with d.relu; any of
/// dx, dw, db may be null.
template <class T>
void batch_norm_bwd(const T* dy, const T* x, const T* y, const compute_type<T>* w, const compute_type<T>* mean,
                    const compute_type<T>* invstd, T* dx, compute_type<T>* dw, compute_type<T>* db,
                    const BatchNormDims& d, bool training, Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "batch_norm_bwd: T is float, double, f16_t or bf16_t");
  detail::check_bn_dims(d, "batch_norm_bwd");
  STRATA_CHECK(!d.relu || y, "batch_norm_bwd", "got relu = true and y = null, expected the forward's output y");
  if (d.C == 0 || d.B * d.S == 0) return;
  if (d.channels_last || d.S == 1)
    launch(batch_norm_bwd_kernel<T, A, true>, dim3(unsigned((d.C + 31) / 32)), dim3(32, kBnRows), 0, stream, dy, x,
           y, w, mean, invstd, dx, dw, db, d, training);
  else
    launch(batch_norm_bwd_kernel<T, A, false>, dim3(unsigned(d.C)), dim3(detail::bn_threads(d.B * d.S)), 0, stream,
           dy, x, y, w, mean, invstd, dx, dw, db, d, training);
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
/// dw, db [N] written where not null (dw, db are 0 for M == 0); device pointers.
template <class T>
void layer_norm_bwd(const T* dy, const T* x, const compute_type<T>* w, const compute_type<T>* mean,
                    const compute_type<T>* rstd, T* dx, compute_type<T>* dw, compute_type<T>* db, int64_t M, int64_t N,
                    Stream stream = {}) {
  using A = compute_type<T>;
  static_assert(is_floating_storage<T>, "layer_norm_bwd: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(M >= 0 && N >= 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 36), "layer_norm_bwd", "got M = ",
               M, ", N = ", N, ", expected 0 <= M < 2^31 and 0 <= N < 2^36");
  if (N == 0) return;
  if (dx && M > 0)
    launch(layer_norm_bwd_dx_kernel<T, A>, dim3(unsigned(M)), dim3(detail::bn_threads(N)), 0, stream, dy, x, w, mean,
           rstd, dx, N);
  if (dw || db)
    launch(layer_norm_bwd_params_kernel<T, A>, dim3(unsigned((N + 31) / 32)), dim3(32, kBnRows), 0, stream, dy, x,
           mean, rstd, dw, db, M, N);
}

}  // namespace strata::cuda
