// Warp and block reductions whose result every thread receives: the one copy used by the softmax,
// softmax cross-entropy, batch-norm and layer-norm kernels.
//
//   __shared__ float s_red[32];
//   const float m = cuda::block_reduce(r_max, cuda::MaxFn{}, s_red);  // every thread: the block's max
//   const float s = cuda::block_reduce(r_sum, cuda::SumFn{}, s_red);  // s_red reused call after call
//   cuda::block_sum2(a, b, s_red64);                                  // two sums, one pass (64 slots)
//   v = cuda::warp_reduce(v, cuda::SumFn{}, 8);                       // over groups of 8 lanes
//
// warp_reduce is an xor butterfly (__shfl_xor_sync over the full mask), so each lane ends with the
// group's value; block_reduce is that butterfly in every warp, one shared slot per warp, then each
// thread folds the slots in order 0, 1, ...: all threads hold the same bits, and a run gives the same
// bits every time. Every thread of the block must call them (the shuffles use the full mask, and there
// are barriers), also threads with nothing to add: they pass the identity (0, -inf).
// Not the one for kernels/cuda/reduce.cuh: its block_fold (a shuffle-down tree whose result only
// thread 0 needs, folded again in warp 0) adds in another order, and its ops carry their identity.
// Idea: the warp-shuffle block reductions of PyTorch's block_reduce.cuh and llm.c's kernels.
#pragma once

#include "strata/backend/cuda_compat.hpp"

namespace strata::cuda {

/// max(a, b) as the CPU's max loops: b replaces a only when larger, so a NaN b is skipped (softmax
/// and cross-entropy then get NaN from the sum, as the CPU and PyTorch do).
struct MaxFn {
  template <class A>
  __device__ A operator()(A a, A b) const { return b > a ? b : a; }
};
struct SumFn {
  template <class A>
  __device__ A operator()(A a, A b) const { return a + b; }
};

/// op over groups of `lanes` (a power of 2 <= 32) neighbouring lanes, returned to each group's lanes.
template <class A, class Op>
__device__ __forceinline__ A warp_reduce(A v, Op op, unsigned lanes = 32) {
  for (unsigned o = lanes / 2; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, int(o), int(lanes)));
  return v;
}

/// op over the blockDim.x threads of a row, returned to every one: the lanes of a group alone when
/// blockDim.x <= 32 (a power of 2; blockDim.y rows of a block), else the whole block (blockDim.y == 1,
/// blockDim.x a multiple of 32, at most 1024). s_red: 32 shared slots, reused call after call (the
/// first barrier keeps the previous call's readers safe).
template <class A, class Op>
__device__ __forceinline__ A block_reduce(A v, Op op, A* s_red) {
  if (blockDim.x <= 32) return warp_reduce(v, op, blockDim.x);
  v = warp_reduce(v, op);
  const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  __syncthreads();
  if (lane == 0) s_red[warp] = v;
  __syncthreads();
  v = s_red[0];
  for (unsigned w = 1; w < warps; ++w) v = op(v, s_red[w]);
  return v;
}

/// a and b each summed over the block (1-D, blockDim.x a multiple of 32), returned to every thread: two
/// block_reduce(SumFn) in one pass, the same bits. s_red: 64 shared slots (a in 0..31, b in 32..63).
template <class A>
__device__ __forceinline__ void block_sum2(A& a, A& b, A* s_red) {
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

}  // namespace strata::cuda
