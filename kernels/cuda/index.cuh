// Index kernels on the device: gather and scatter-add along one dim (under index_select, gather,
// scatter_add, index_add and their backwards) and one_hot: the CUDA twins of kernels/cpu/index.hpp.
//
//   // gather: positions p over out's shape; x's stride along dim is 0 in the indexer (the index picks it)
//   cuda::GatherGeom g{.pos = make_indexer<3>(shape, {{out_st, x_st_with_0_at_dim, index_st}}),
//                      .indexed_step = x_stride_dim, .indexed_size = x_size_dim, .bad = flag};
//   cuda::index_gather<T, I>(g, out, x, index);          // flag: the first bad position, or ~0
//   // scatter_add: rows = positions without dim; dim walked inside each row, in order
//   cuda::ScatterGeom s{.rows = make_indexer<3>(rows, {{src_st, out_st, index_st}}), .n = index_size_dim,
//                       .dense_step = ..., .index_step = ..., .indexed_step = ..., .indexed_size = ..., .bad = flag};
//   cuda::index_scatter_add<T, I>(s, out, src, index);
//   cuda::one_hot<I>(n, labels, classes, out);            // labels checked in range by the caller
//
// The problem is cpu::IndexLoop's (kernels/cpu/index.hpp): the "dense" operand (out for gather,
// src for scatter) and the index follow the positions p; the "indexed" operand (x for gather, out
// for scatter) follows p in every dim but `dim`, where the index value picks the element:
//   gather:       out[p] = x[p with p[dim] := index[p]]
//   scatter_add:  out[p with p[dim] := index[p]] += src[p]
// Strides are in elements, any sign, 0 for broadcast (index_select/index_add: an index of stride 0
// in every dim but dim), through kernels/cuda/indexer.cuh.
//   gather: one thread per position (grid-stride loop over the position indexer), a copy of T's bits.
//   scatter_add: one thread owns a row (all positions that differ only along dim) and adds its
//     positions in order j = 0, 1, ... n-1. Two rows never touch the same output element (they
//     differ in a dim other than dim, which the output follows), so there are no atomics on the
//     data and the additions are the CPU kernel's, in the CPU's order: results equal the CPU's
//     bit for bit, deterministically, repeated indices included. f16/bf16 add in float and round
//     after each addition (the CPU's cast_value(compute_t(o) + compute_t(s))).
//     Cost: the parallelism is the number of rows; a problem with few rows and a long dim (a 1-D
//     scatter) runs on few threads. A sort-based or segmented scheme is the next rung.
//   Out-of-range index values (outside [0, indexed_size), no negative wrap) are neither read
//     through nor written: the thread records the linear position of the bad index with atomicMin
//     into *bad (a device u64 the caller sets to ~0 first) and skips it (scatter: stops its row,
//     as the CPU stops). The caller reads the position back, fetches that index value and throws
//     the CPU's Error. The smallest bad position wins, so the error is deterministic.
//   one_hot: out [n, classes] int64 = (labels[i] == c), one thread per output element; labels [n]
//     contiguous and in range (the caller reads them on the host to check them and to find the
//     class count, as the CPU does, so no device flag is needed).
// References: the CPU reference loops cpu::gather_ref / cpu::scatter_add_ref (kernels/cpu/index.hpp);
// PyTorch's aten/src/ATen/native/cuda/ScatterGatherKernel.cu (which uses atomics for scatter_add).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/indexer.cuh"

namespace strata::cuda {

/// No bad index was met: the value *bad keeps (the caller memsets it to 0xff bytes).
inline constexpr unsigned long long kNoBadIndex = ~0ull;

/// A gather: positions over the output; operands {out, x (0 stride along dim), index}.
struct GatherGeom {
  Indexer<3> pos;                     // element offsets of {out, x without dim, index} per position
  int64_t indexed_step = 0;           // x's element stride along dim (times the index value)
  int64_t indexed_size = 0;           // valid index values: [0, indexed_size)
  unsigned long long* bad = nullptr;  // device u64: min linear position of a bad index, or kNoBadIndex
};

/// A scatter-add: rows over the positions without dim; operands {src (dense), out (indexed), index}.
struct ScatterGeom {
  Indexer<3> rows;                    // element offsets of {src, out, index} per row (dim removed)
  int64_t n = 0;                      // positions along dim (index.size(dim))
  int64_t dense_step = 0;             // src's element stride along dim
  int64_t index_step = 0;             // index's element stride along dim
  int64_t indexed_step = 0;           // out's element stride along dim (times the index value)
  int64_t indexed_size = 0;           // valid index values: [0, indexed_size)
  unsigned long long* bad = nullptr;  // device u64: min (row * n + j) of a bad index, or kNoBadIndex
};

inline constexpr unsigned kIndexThreads = 256;
inline constexpr int64_t kIndexMaxBlocks = 132 * 32;

// ---------------------------------------------------------------- kernels

/// out[p] = x[p with p[dim] := index[p]] over g.pos.numel positions; grid-stride loop.
template <class T, class I>
__global__ void index_gather_kernel(GatherGeom g, T* out, const T* x, const I* index) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < g.pos.numel; i += step) {
    int64_t off[3];
    g.pos.offsets(i, off);
    const int64_t v = int64_t(index[off[2]]);
    if (v < 0 || v >= g.indexed_size) {  // not read through: recorded for the host
      atomicMin(g.bad, static_cast<unsigned long long>(i));
      continue;
    }
    out[off[0]] = x[off[1] + v * g.indexed_step];
  }
}

/// out[row with dim := index[row, j]] += src[row, j] for j = 0..n-1 in order; one thread per row.
template <class T, class I>
__global__ void index_scatter_add_kernel(ScatterGeom g, T* out, const T* src, const I* index) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t r = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; r < g.rows.numel; r += step) {
    int64_t off[3];
    g.rows.offsets(r, off);
    const T* s = src + off[0];
    T* o = out + off[1];
    const I* ix = index + off[2];
    for (int64_t j = 0; j < g.n; ++j) {
      const int64_t v = int64_t(ix[j * g.index_step]);
      if (v < 0 || v >= g.indexed_size) {  // stop this row, as the CPU stops: recorded for the host
        atomicMin(g.bad, static_cast<unsigned long long>(r * g.n + j));
        break;
      }
      T* t = o + v * g.indexed_step;
      store(t, load(t) + load(s + j * g.dense_step));  // compute type: float for f16/bf16
    }
  }
}

/// out [n, classes] = (labels[i] == c) as int64; labels [n] contiguous.
template <class I>
__global__ void one_hot_kernel(int64_t n, const I* labels, int64_t classes, int64_t* out) {
  const int64_t total = n * classes, step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < total; k += step)
    out[k] = int64_t(labels[k / classes]) == k % classes ? 1 : 0;
}

// ---------------------------------------------------------------- launchers

namespace detail {
/// Blocks of a grid-stride loop over n items.
inline unsigned index_blocks(int64_t n) {
  return unsigned(std::clamp<int64_t>((n + kIndexThreads - 1) / kIndexThreads, 1, kIndexMaxBlocks));
}
}  // namespace detail

/// Gather (device pointers): out, index over g.pos; x indexed along dim. *g.bad must be kNoBadIndex.
template <class T, class I>
void index_gather(const GatherGeom& g, T* out, const T* x, const I* index, Stream stream = {}) {
  STRATA_CHECK(g.indexed_size >= 0 && g.bad != nullptr, "index_gather", "got indexed_size ", g.indexed_size,
               " and bad flag ", static_cast<const void*>(g.bad), ", expected a size >= 0 and a device flag");
  if (g.pos.numel == 0) return;
  launch(index_gather_kernel<T, I>, dim3(detail::index_blocks(g.pos.numel)), dim3(kIndexThreads), 0, stream, g,
         out, x, index);
}

/// Scatter-add (device pointers): src, index over g.rows x n; out indexed along dim, updated in place.
template <class T, class I>
void index_scatter_add(const ScatterGeom& g, T* out, const T* src, const I* index, Stream stream = {}) {
  static_assert(!std::is_same_v<T, bool>, "index_scatter_add: T is a numeric storage type");
  STRATA_CHECK(g.n >= 0 && g.indexed_size >= 0 && g.bad != nullptr, "index_scatter_add", "got n ", g.n,
               ", indexed_size ", g.indexed_size, " and bad flag ", static_cast<const void*>(g.bad),
               ", expected sizes >= 0 and a device flag");
  if (g.rows.numel == 0 || g.n == 0) return;
  launch(index_scatter_add_kernel<T, I>, dim3(detail::index_blocks(g.rows.numel)), dim3(kIndexThreads), 0, stream,
         g, out, src, index);
}

/// one_hot (device pointers): out [n, classes] int64 from labels [n] (each in [0, classes)).
template <class I>
void one_hot(int64_t n, const I* labels, int64_t classes, int64_t* out, Stream stream = {}) {
  STRATA_CHECK(n >= 0 && classes >= 0, "one_hot", "got n ", n, " and classes ", classes, ", expected sizes >= 0");
  if (n * classes == 0) return;
  launch(one_hot_kernel<I>, dim3(detail::index_blocks(n * classes)), dim3(kIndexThreads), 0, stream, n, labels,
         classes, out);
}

}  // namespace strata::cuda
