// CUDA reduction kernels: sum (with a scale: mean = sum * 1/n), max and min over any set of dims
// of a strided tensor, and arg-max/min (index and value) along one dim.
//
//   cuda::ReduceGeom g = ...;  // copied from cpu::make_reduce_geom (backend/cuda/reduce.hpp does it)
//   cuda::reduce_workspace(g);                             // A values of scratch reduce() may need
//   cuda::reduce<f16_t, float>(g, x, out, cuda::SumOp<float>{0.0f}, cuda::ScalePost<float>{0.5f}, ws);
//   cuda::arg_reduce<float, true>(g, x, values_or_null, indices);
//
// The geometry is the CPU's (kernels/cpu/reduce.hpp, ReduceGeom): kept dims give the outputs, laid
// out contiguously (k_out strides); reduced dims have input strides r_in; both groups sorted by
// stride with contiguous neighbours merged, so row-major over the reduced dims reads in memory order.
// Three kernels, chosen by the launcher (reduce_path):
//   reduce_block_kernel   one block (kReduceThreads threads) per output and split: thread t folds
//                         positions t, t + kReduceThreads, ... of its split, then the block folds the
//                         threads' values: warp shuffles, the warps' results through shared memory,
//                         shuffles again in warp 0 (two barriers). Long reductions are cut into up
//                         to kMaxSplits splits (grid.y), whose partials (one A each, in a workspace)
//                         a second pass of the same kernel folds: so a 2^20-element sum is spread
//                         over 256 blocks, and each thread folds at most ~16 elements before the tree.
//   reduce_cols_kernel    reductions across rows (innermost kept dim contiguous, reduced dims not:
//                         a sum over dim 0 of [N, C], a channels-last batch norm's statistics): a
//                         block of 32 x kReduceRows threads takes 32 neighbouring outputs (lanes:
//                         columns, so a warp reads 32 neighbouring values, coalesced) and kReduceRows
//                         interleaved row streams of its split, folded at the end through shared memory.
//                         Split into grid.y like the block kernel, with the same second pass.
//   reduce_thread_kernel  one thread per output (grid-stride loop): short reductions (n_red <=
//                         kThreadMaxRed), where a block's worth of threads would idle.
// Accumulation in A: float for f16/bf16/f32, double for f64, int64 for integer/bool sums, the
// compute type for max/min. A thread's serial fold is cascaded (chunks of kCascade, groups of
// kCascade chunks) so its rounding error grows like 2 * kCascade + n / kCascade^2, not n; the tree
// and the split passes add log2 levels. Results match the CPU to float rounding, not bit for bit
// (the CPU sums pairwise in a different order).
// NaN: max/min propagate NaN (a NaN input wins and a NaN accumulator stays, in any order); argmax/
// argmin count NaN as larger and smaller than everything, the first NaN wins, and ties go to the
// first index, as cpu::arg_reduce_kernel. Extrema are exact, so they equal the CPU's bit for bit
// (up to the sign of a zero tied with another zero).
// Ops carry their identity (init), computed on the host, so device code needs no numeric_limits.
// References: PyTorch's Reduce.cuh (block/thread strategies, split reductions with a second pass);
// Harris, "Optimizing Parallel Reduction in CUDA" (tree reductions; warp shuffles replace its
// unrolled last warp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/dtype.cuh"
#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"

namespace strata::cuda {

inline constexpr int kReduceMaxDims = 16;        // = cpu::kMaxDims
inline constexpr unsigned kReduceThreads = 256;  // threads per block (a power of two)
static_assert(kReduceThreads % 32 == 0 && kReduceThreads <= 1024, "kReduceThreads: whole warps, at most 32");
inline constexpr int64_t kReducePerThread = 16;  // elements a thread folds before the tree (more past kMaxSplits)
inline constexpr int64_t kMaxSplits = 4096;      // splits per output (so the second pass needs one block each)
inline constexpr int64_t kThreadMaxRed = 64;     // reductions this short: one thread per output
inline constexpr unsigned kReduceRows = kReduceThreads / 32;  // row streams of the cols kernel
inline constexpr int kCascade = 32;
inline constexpr int64_t kReduceMaxBlocks = 65535;  // grid.x cap (grid-stride over outputs beyond it)

/// A reduction's iteration space: the fields of cpu::ReduceGeom (same meaning), as a plain struct
/// passed to kernels by value (664 bytes).
struct ReduceGeom {
  int nk = 0, nr = 0;
  int64_t k_size[kReduceMaxDims] = {}, k_in[kReduceMaxDims] = {}, k_out[kReduceMaxDims] = {};  // kept dims
  int64_t r_size[kReduceMaxDims] = {}, r_in[kReduceMaxDims] = {};                              // reduced dims
  int64_t n_out = 1, n_red = 1;  // outputs, reduced elements per output

  /// Input and output offsets (elements) of output o (row-major over the kept dims).
  __host__ __device__ void kept_offsets(int64_t o, int64_t& in, int64_t& out) const {
    in = 0;
    out = 0;
    for (int d = nk - 1; d >= 0; --d) {
      const int64_t q = o / k_size[d], i = o - q * k_size[d];
      o = q;
      in += i * k_in[d];
      out += i * k_out[d];
    }
  }
  /// Input offset of reduced position p (row-major over the reduced dims) from the output's first element.
  __host__ __device__ int64_t reduced_offset(int64_t p) const {
    if (nr == 1) return p * r_in[0];
    int64_t off = 0;
    for (int d = nr - 1; d >= 0; --d) {
      const int64_t q = p / r_size[d], i = p - q * r_size[d];
      p = q;
      off += i * r_in[d];
    }
    return off;
  }
};

// ---------------------------------------------------------------- ops
// init: the identity (set on the host); step(acc, x) folds a value or a partial result in.

template <class A>
struct SumOp {
  A init;
  __host__ __device__ A step(A acc, A x) const { return A(acc + x); }
};

/// max (kMax) or min; NaN wins (x != x is the NaN test: no std:: call in device code).
template <class A, bool kMax>
struct ExtremumOp {
  A init;
  __host__ __device__ A step(A acc, A x) const {
    if constexpr (std::is_floating_point_v<A>) {
      if (x != x) return x;
    }
    return (kMax ? x > acc : x < acc) ? x : acc;  // a NaN acc stays: comparisons with it are false
  }
};

/// out = a * scale (sum, mean).
template <class A>
struct ScalePost {
  A scale;
  __host__ __device__ A operator()(A a) const { return A(a * scale); }
};
/// out = a (integer sums, max, min, partials).
struct IdentityPost {
  template <class A>
  __host__ __device__ A operator()(A a) const { return a; }
};

// ---------------------------------------------------------------- device helpers

/// Folds the n positions first, first + step, ... of the reduction starting at x (cascaded: see top).
template <class T, class A, class Op>
__device__ __forceinline__ A reduce_fold(const ReduceGeom& g, const T* x, int64_t first, int64_t step, int64_t n,
                                         const Op& op) {
  A total = op.init, group = op.init;
  int64_t k = 0;
  while (k < n) {
    A chunk = op.init;
    const int64_t end = n - k < kCascade ? n : k + kCascade;
    for (; k < end; ++k) chunk = op.step(chunk, A(load(x + g.reduced_offset(first + k * step))));
    group = op.step(group, chunk);
    if (k % (int64_t(kCascade) * kCascade) == 0) {
      total = op.step(total, group);
      group = op.init;
    }
  }
  return op.step(total, group);
}

/// v of lane + delta (shuffle down over the full warp); 1- and 2-byte types travel as int (the
/// CUDA shuffles take 4- and 8-byte types).
template <class V>
__device__ __forceinline__ V shfl_down(V v, unsigned delta) {
  if constexpr (sizeof(V) < 4) return V(__shfl_down_sync(0xffffffffu, int(v), delta));
  else return __shfl_down_sync(0xffffffffu, v, delta);
}

/// The fold of v over the block's kReduceThreads threads, valid in thread 0: shuffles within each
/// warp, the warps' results through s_warp (kReduceThreads / 32 values), then shuffles in warp 0.
/// Every thread of the block must call it; it ends with s_warp free for reuse.
template <class A, class Op>
__device__ __forceinline__ A block_fold(A v, const Op& op, A* s_warp) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (unsigned delta = 16; delta > 0; delta /= 2) v = op.step(v, shfl_down(v, delta));
  if (lane == 0) s_warp[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < kReduceThreads / 32 ? s_warp[lane] : op.init;
    for (unsigned delta = 16; delta > 0; delta /= 2) v = op.step(v, shfl_down(v, delta));
  }
  __syncthreads();  // s_warp read before anyone writes it again
  return v;
}

// ---------------------------------------------------------------- kernels

/// Block (o, s) for outputs o = blockIdx.x, blockIdx.x + gridDim.x, ... and split s = blockIdx.y of
/// `splits`: folds the split's reduced positions of output o into out[output offset * splits + s]
/// = post(result): the outputs when splits == 1, else partials (Out = A, post the identity).
/// x: the input's first element.
template <class T, class A, class Out, class Op, class Post>
__global__ void reduce_block_kernel(ReduceGeom g, const T* x, Out* out, Op op, Post post, int64_t splits) {
  __shared__ A s_warp[kReduceThreads / 32];
  const unsigned t = threadIdx.x;
  const int64_t s = blockIdx.y;
  const int64_t per_split = (g.n_red + splits - 1) / splits;
  const int64_t lo = s * per_split, hi = lo + per_split < g.n_red ? lo + per_split : g.n_red;
  for (int64_t o = blockIdx.x; o < g.n_out; o += gridDim.x) {
    int64_t in, oo;
    g.kept_offsets(o, in, oo);
    const int64_t first = lo + t;
    const int64_t n = first < hi ? (hi - first + kReduceThreads - 1) / kReduceThreads : 0;
    const A v = block_fold(reduce_fold<T, A>(g, x + in, first, kReduceThreads, n, op), op, s_warp);
    if (t == 0) store(out + (oo * splits + s), post(v));
  }
}

/// Block (tile, s) for tiles of 32 outputs tile * 32 + threadIdx.x (tile = blockIdx.x, + gridDim.x,
/// ...) and split s = blockIdx.y: thread (x, y) folds positions y, y + kReduceRows, ... of the split
/// for its output; out[output offset * splits + s] = post(the fold of the kReduceRows streams).
/// blockDim = (32, kReduceRows). x: the input's first element.
template <class T, class A, class Out, class Op, class Post>
__global__ void reduce_cols_kernel(ReduceGeom g, const T* x, Out* out, Op op, Post post, int64_t splits) {
  __shared__ A s_part[kReduceRows][33];  // 33: a column of it spans all banks
  const unsigned tx = threadIdx.x, ty = threadIdx.y;
  const int64_t s = blockIdx.y;
  const int64_t per_split = (g.n_red + splits - 1) / splits;
  const int64_t lo = s * per_split, hi = lo + per_split < g.n_red ? lo + per_split : g.n_red;
  for (int64_t tile = blockIdx.x; tile * 32 < g.n_out; tile += gridDim.x) {
    const int64_t o = tile * 32 + tx;
    A v = op.init;
    int64_t oo = 0;
    if (o < g.n_out) {
      int64_t in;
      g.kept_offsets(o, in, oo);
      const int64_t first = lo + ty;
      const int64_t n = first < hi ? (hi - first + kReduceRows - 1) / kReduceRows : 0;
      v = reduce_fold<T, A>(g, x + in, first, kReduceRows, n, op);
    }
    s_part[ty][tx] = v;
    __syncthreads();
    if (ty == 0 && o < g.n_out) {
      for (unsigned r = 1; r < kReduceRows; ++r) v = op.step(v, s_part[r][tx]);
      store(out + (oo * splits + s), post(v));
    }
    __syncthreads();  // s_part read before the next tile writes it
  }
}

/// out[output offset] = post(fold of output o's reduced elements), one thread per output o
/// (grid-stride loop). x: the input's first element.
template <class T, class A, class Out, class Op, class Post>
__global__ void reduce_thread_kernel(ReduceGeom g, const T* x, Out* out, Op op, Post post) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < g.n_out; o += step) {
    int64_t in, oo;
    g.kept_offsets(o, in, oo);
    store(out + oo, post(reduce_fold<T, A>(g, x + in, 0, 1, g.n_red, op)));
  }
}

/// Whether v beats best for argmax (kMax) / argmin: NaN beats everything but an earlier NaN.
template <class C, bool kMax>
__device__ __forceinline__ bool arg_better(C v, C best) {
  if constexpr (std::is_floating_point_v<C>) {
    if (best != best) return false;
    if (v != v) return true;
  }
  return kMax ? v > best : v < best;
}

/// As arg_better, and on a tie (equal, or both NaN) the smaller index wins: combines two threads' results.
template <class C, bool kMax>
__device__ __forceinline__ bool arg_better_at(C v, int64_t i, C best, int64_t bi) {
  if (arg_better<C, kMax>(v, best)) return true;
  if (arg_better<C, kMax>(best, v)) return false;
  return i < bi;
}

/// (best, bi) = the best of the warp's 32 pairs (arg_better_at), valid in lane 0.
template <class C, bool kMax>
__device__ __forceinline__ void arg_warp_fold(C& best, int64_t& bi) {
  for (unsigned delta = 16; delta > 0; delta /= 2) {
    const C v = shfl_down(best, delta);
    const int64_t i = shfl_down(bi, delta);
    if (arg_better_at<C, kMax>(v, i, best, bi)) best = v, bi = i;
  }
}

/// Arg-max/min along the one reduced dim (n = g.r_size[0] > 0 elements, stride g.r_in[0]), one
/// block per output (grid-stride over blockIdx.x): indices[output offset] = first index of the
/// extremum, values[output offset] = it (values may be null).
template <class T, bool kMax>
__global__ void arg_reduce_block_kernel(ReduceGeom g, const T* x, T* values, int64_t* indices) {
  using C = compute_type<T>;
  __shared__ C s_best[kReduceThreads / 32];
  __shared__ int64_t s_index[kReduceThreads / 32];
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned t = threadIdx.x;
  const int64_t n = g.r_size[0], rs = g.r_in[0];
  for (int64_t o = blockIdx.x; o < g.n_out; o += gridDim.x) {
    int64_t in, oo;
    g.kept_offsets(o, in, oo);
    const T* p = x + in;
    C best = load(p);  // element 0 stands in for threads that get no element (index 0 wins its ties)
    int64_t bi = 0;
    for (int64_t i = t; i < n; i += kReduceThreads) {
      const C v = load(p + i * rs);
      if (arg_better<C, kMax>(v, best)) best = v, bi = i;
    }
    arg_warp_fold<C, kMax>(best, bi);  // within each warp, then the warps' results in warp 0
    if (lane == 0) s_best[warp] = best, s_index[warp] = bi;
    __syncthreads();
    if (warp == 0) {
      best = s_best[lane < kReduceThreads / 32 ? lane : 0];  // warp 0's own result stands in: ties
      bi = s_index[lane < kReduceThreads / 32 ? lane : 0];   // with itself change nothing
      arg_warp_fold<C, kMax>(best, bi);
      if (lane == 0) {
        indices[oo] = bi;
        if (values) store(values + oo, best);
      }
    }
    __syncthreads();  // s_best, s_index read before the next output writes them
  }
}

/// As arg_reduce_block_kernel, one thread per output (grid-stride loop).
template <class T, bool kMax>
__global__ void arg_reduce_thread_kernel(ReduceGeom g, const T* x, T* values, int64_t* indices) {
  using C = compute_type<T>;
  const int64_t n = g.r_size[0], rs = g.r_in[0];
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < g.n_out; o += step) {
    int64_t in, oo;
    g.kept_offsets(o, in, oo);
    const T* p = x + in;
    C best = load(p);
    int64_t bi = 0;
    for (int64_t i = 1; i < n; ++i) {
      const C v = load(p + i * rs);
      if (arg_better<C, kMax>(v, best)) best = v, bi = i;
    }
    indices[oo] = bi;
    if (values) store(values + oo, best);
  }
}

// ---------------------------------------------------------------- launchers

/// Whether g reduces across rows: the innermost kept dim is contiguous, the reduced dims are not.
inline bool reduce_across_rows(const ReduceGeom& g) {
  return g.nk > 0 && g.k_in[g.nk - 1] == 1 && g.nr > 0 && g.r_in[g.nr - 1] != 1;
}

enum class ReducePath { thread, block, cols };

/// The kernel reduce() runs for g (see the top of this file).
inline ReducePath reduce_path(const ReduceGeom& g) {
  if (g.n_red <= kThreadMaxRed) return ReducePath::thread;
  return reduce_across_rows(g) ? ReducePath::cols : ReducePath::block;
}

/// Splits per output reduce() uses for g (1: no workspace needed): each thread folds at most
/// kReducePerThread elements, up to kMaxSplits splits.
inline int64_t reduce_splits(const ReduceGeom& g) {
  const ReducePath path = reduce_path(g);
  if (path == ReducePath::thread) return 1;
  const int64_t per_split = int64_t(path == ReducePath::cols ? kReduceRows : kReduceThreads) * kReducePerThread;
  return std::clamp<int64_t>((g.n_red + per_split - 1) / per_split, 1, kMaxSplits);
}

/// Elements of type A that reduce() needs as workspace for g (0: none).
inline int64_t reduce_workspace(const ReduceGeom& g) {
  const int64_t s = reduce_splits(g);
  return s > 1 ? g.n_out * s : 0;
}

inline unsigned reduce_thread_blocks(int64_t n_out) {
  return unsigned(std::clamp<int64_t>((n_out + kReduceThreads - 1) / kReduceThreads, 1, kReduceMaxBlocks));
}

/// out[o] = post(fold of op over the reduced elements of output o), for the g.n_out outputs laid
/// out as g says (contiguous). x: the input's first element (device), out: g.n_out values of Out
/// (device), workspace: reduce_workspace(g) values of A (device; may be null when that is 0).
/// On the default stream (finished on return under the emulator).
template <class T, class A, class Out, class Op, class Post>
void reduce(const ReduceGeom& g, const T* x, Out* out, Op op, Post post, A* workspace) {
  if (g.n_out == 0) return;
  STRATA_CHECK(out != nullptr && (x != nullptr || g.n_red == 0), "cuda::reduce",
               "got a null input or output pointer, expected device memory");
  const ReducePath path = reduce_path(g);
  if (path == ReducePath::thread) {
    launch(reduce_thread_kernel<T, A, Out, Op, Post>, dim3(reduce_thread_blocks(g.n_out)), dim3(kReduceThreads), 0,
           Stream{}, g, x, out, op, post);
    return;
  }
  const int64_t splits = reduce_splits(g);
  const bool cols = path == ReducePath::cols;
  const dim3 block = cols ? dim3(32, kReduceRows) : dim3(kReduceThreads);
  const unsigned blocks = unsigned(std::min<int64_t>(cols ? (g.n_out + 31) / 32 : g.n_out, kReduceMaxBlocks));
  if (splits == 1) {
    if (cols)
      launch(reduce_cols_kernel<T, A, Out, Op, Post>, dim3(blocks), block, 0, Stream{}, g, x, out, op, post,
             int64_t(1));
    else
      launch(reduce_block_kernel<T, A, Out, Op, Post>, dim3(blocks), block, 0, Stream{}, g, x, out, op, post,
             int64_t(1));
    return;
  }
  STRATA_CHECK(workspace != nullptr, "cuda::reduce", "got no workspace, expected ", g.n_out * splits,
               " accumulator values for ", splits, " splits per output");
  // pass 1: partials[output offset * splits + s]
  if (cols)
    launch(reduce_cols_kernel<T, A, A, Op, IdentityPost>, dim3(blocks, unsigned(splits)), block, 0, Stream{}, g, x,
           workspace, op, IdentityPost{}, splits);
  else
    launch(reduce_block_kernel<T, A, A, Op, IdentityPost>, dim3(blocks, unsigned(splits)), block, 0, Stream{}, g, x,
           workspace, op, IdentityPost{}, splits);
  // pass 2: each output folds its splits partials (contiguous)
  ReduceGeom g2;
  g2.n_out = g.n_out;
  g2.n_red = splits;
  g2.nk = 1;
  g2.k_size[0] = g.n_out;
  g2.k_in[0] = splits;
  g2.k_out[0] = 1;
  g2.nr = 1;
  g2.r_size[0] = splits;
  g2.r_in[0] = 1;
  const A* partials = workspace;
  if (splits <= kThreadMaxRed)
    launch(reduce_thread_kernel<A, A, Out, Op, Post>, dim3(reduce_thread_blocks(g.n_out)), dim3(kReduceThreads), 0,
           Stream{}, g2, partials, out, op, post);
  else
    launch(reduce_block_kernel<A, A, Out, Op, Post>, dim3(unsigned(std::min<int64_t>(g.n_out, kReduceMaxBlocks))),
           dim3(kReduceThreads), 0, Stream{}, g2, partials, out, op, post, int64_t(1));
}

/// indices[o] (and values[o] unless null) = the first index (and value) of the max (kMax) or min
/// along the one reduced dim of g (g.nr == 1, g.r_size[0] > 0). x: the input's first element.
template <class T, bool kMax>
void arg_reduce(const ReduceGeom& g, const T* x, T* values, int64_t* indices) {
  if (g.n_out == 0) return;
  STRATA_CHECK(g.nr == 1 && g.r_size[0] > 0, "cuda::arg_reduce", "got ", g.nr, " reduced dims of ", g.n_red,
               " elements, expected one non-empty reduced dim");
  STRATA_CHECK(x != nullptr && indices != nullptr, "cuda::arg_reduce",
               "got a null input or indices pointer, expected device memory");
  // one thread per output: short rows, or across rows with enough outputs to fill the device
  const bool by_thread = g.r_size[0] <= kThreadMaxRed || (reduce_across_rows(g) && g.n_out >= 2048);
  if (by_thread) {
    launch(arg_reduce_thread_kernel<T, kMax>, dim3(reduce_thread_blocks(g.n_out)), dim3(kReduceThreads), 0, Stream{},
           g, x, values, indices);
  } else {
    launch(arg_reduce_block_kernel<T, kMax>, dim3(unsigned(std::min<int64_t>(g.n_out, kReduceMaxBlocks))),
           dim3(kReduceThreads), 0, Stream{}, g, x, values, indices);
  }
}

}  // namespace strata::cuda
