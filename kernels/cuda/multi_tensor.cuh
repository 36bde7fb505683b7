// Multi-tensor apply: one kernel launch over a list of tensors (PyTorch's multi_tensor_apply,
// ATen/native/cuda/MultiTensorApply.cuh), for fused optimizer steps and gradient unscaling, where
// a model's hundreds of small parameters would otherwise cost one launch each.
//
//   std::vector<cuda::TensorPtrs<float, 3>> list = {{{p0, g0, m0}, n0}, {{p1, g1, m1}, n1}};
//   cuda::multi_tensor_apply<float, 3>("sgd_momentum_update", list, op);   // op: see below
//
// Each tensor k is K device pointers of T (e.g. p, g, m: the same element i in each) and a length
// n. The tensors are cut into chunks of `chunk` elements; block j of a launch takes chunk
// block_chunk[j] of tensor block_tensor[j] and calls, on every thread of the block,
//   op(ptrs, lo, hi)      // T* const (&ptrs)[K]; elements [lo, hi) of this tensor
// which walks its range with stride blockDim.x (a __device__ operator() of a functor passed by
// value). The table of pointers and chunks travels as a kernel parameter (no device allocation,
// no copy before the launch), so it is bounded: at most kMultiTensorMaxTensors<K> tensors and
// kMultiTensorMaxBlocks chunks per launch (under CUDA's 4 KiB parameter limit); a longer list takes
// several launches, a tensor split across two launches continuing where the first stopped.
// Empty tensors are skipped. Assumptions: the K pointers of a tensor are device pointers to at
// least n elements each; distinct tensors do not overlap.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"

namespace strata::cuda {

/// K device pointers of one tensor (its parameter, gradient, state...) and their common length n.
template <class T, int K>
struct TensorPtrs {
  T* p[K];
  int64_t n;
};

/// Tensors per launch for K pointers each (PyTorch's depth_to_max_tensors).
template <int K>
inline constexpr int kMultiTensorMaxTensors = K == 1 ? 110 : K == 2 ? 64 : K == 3 ? 48 : K == 4 ? 36 : 30;
/// Chunks (blocks) per launch.
inline constexpr int kMultiTensorMaxBlocks = 320;
/// Elements per chunk by default, and threads per block (fewer for a chunk of fewer elements).
inline constexpr int64_t kMultiTensorChunk = 65536;
inline constexpr unsigned kMultiTensorBlock = 512;

/// The kernel parameter: up to kMultiTensorMaxTensors<K> tensors and which chunk each block takes.
template <class T, int K>
struct MultiTensorChunks {
  T* ptrs[kMultiTensorMaxTensors<K>][K];
  int64_t n[kMultiTensorMaxTensors<K>];
  int64_t chunk;
  uint8_t block_tensor[kMultiTensorMaxBlocks];
  int32_t block_chunk[kMultiTensorMaxBlocks];
};
static_assert(sizeof(MultiTensorChunks<double, 4>) + 64 <= 4096 && sizeof(MultiTensorChunks<float, 1>) + 64 <= 4096,
              "the multi-tensor table must fit CUDA's 4 KiB of kernel parameters, with room for the op");

// ---------------------------------------------------------------- kernels

/// Block blockIdx.x: op(ptrs of its tensor, lo, hi) over its chunk [lo, hi).
template <class T, int K, class Op>
__global__ void multi_tensor_kernel(MultiTensorChunks<T, K> list, Op op) {
  const int t = list.block_tensor[blockIdx.x];
  const int64_t lo = int64_t(list.block_chunk[blockIdx.x]) * list.chunk;
  const int64_t hi = lo + list.chunk < list.n[t] ? lo + list.chunk : list.n[t];
  op(list.ptrs[t], lo, hi);
}

// ---------------------------------------------------------------- launchers

/// Runs op over every element of every tensor of `tensors`, in as few launches as the table allows
/// (see the top of this file). `name` is the calling op, for errors.
template <class T, int K, class Op>
void multi_tensor_apply(const char* name, std::span<const TensorPtrs<T, K>> tensors, Op op,
                        int64_t chunk = kMultiTensorChunk, Stream stream = {}) {
  constexpr int kMaxTensors = kMultiTensorMaxTensors<K>;
  static_assert(sizeof(MultiTensorChunks<T, K>) + sizeof(Op) <= 4096, "multi_tensor_apply: the table and the op "
                "must fit CUDA's 4 KiB of kernel parameters (fewer tensors per launch, or a smaller op)");
  STRATA_CHECK(chunk >= 1, name, "got chunk = ", chunk, ", expected at least 1 element per chunk");
  MultiTensorChunks<T, K> list{};
  list.chunk = chunk;
  int nt = 0, nb = 0;
  // no more threads than a chunk has elements (small chunks are for tests and tiny lists)
  const unsigned threads = unsigned(std::min<int64_t>(kMultiTensorBlock, (chunk + 31) / 32 * 32));
  const auto run = [&] {
    launch(multi_tensor_kernel<T, K, Op>, dim3(unsigned(nb)), dim3(threads), 0, stream, list, op);
  };
  for (size_t k = 0; k < tensors.size(); ++k) {
    const TensorPtrs<T, K>& x = tensors[k];
    STRATA_CHECK(x.n >= 0, name, "got tensor ", k, " of length ", x.n, ", expected a length >= 0");
    if (x.n == 0) continue;
    for (int j = 0; j < K; ++j)
      STRATA_CHECK(x.p[j] != nullptr, name, "got a null pointer ", j, " for tensor ", k, " of ", x.n,
                   " elements, expected device memory");
    const int64_t chunks = (x.n + chunk - 1) / chunk;
    STRATA_CHECK(chunks < (int64_t(1) << 31), name, "got tensor ", k, " of ", x.n, " elements = ", chunks,
                 " chunks of ", chunk, ", expected fewer than 2^31 chunks");
    for (int j = 0; j < K; ++j) list.ptrs[nt][j] = x.p[j];
    list.n[nt++] = x.n;
    for (int64_t c = 0; c < chunks; ++c) {
      list.block_tensor[nb] = uint8_t(nt - 1);
      list.block_chunk[nb++] = int32_t(c);
      const bool last_chunk = c == chunks - 1;
      if (nb == kMultiTensorMaxBlocks || (last_chunk && nt == kMaxTensors)) {
        run();
        nb = 0;
        if (last_chunk) {
          nt = 0;
        } else {  // the tensor goes on in the next launch, as its first entry
          for (int j = 0; j < K; ++j) list.ptrs[0][j] = x.p[j];
          list.n[0] = x.n;
          nt = 1;
        }
      }
    }
  }
  if (nb > 0) run();
}

}  // namespace strata::cuda
