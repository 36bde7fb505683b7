// Indexer<N>: maps a linear element index of an elementwise op's output to the element offsets
// of its N operands (the output first, then the inputs), whatever their layouts.
//
//   // host: out [3, 4, 5] contiguous; a [3, 1, 5] broadcast (stride 0 on dim 1); b [4, 5] transposed
//   auto ix = cuda::make_indexer<3>({3, 4, 5}, {{{20, 5, 1}, {5, 0, 1}, {0, 1, 4}}});
//   // device (or host): int64_t off[3]; ix.offsets(i, off);  -> out[off[0]] = a[off[1]] + b[off[2]]
//
// One indexer serves every layout (contiguous, transposed, sliced, broadcast), so each elementwise
// family has one kernel, not one per layout. Strides are in elements (0 along broadcast dims; any
// sign). The host builder drops size-1 dims and merges neighbouring dims that are contiguous for
// every operand (as kernels/cpu/elementwise.hpp's make_loop does), so a contiguous tensor of any
// rank becomes one dim and offsets() is one multiply per operand. At most kIndexerMaxDims dims are
// left after merging (strata::Error "make_indexer" otherwise). Linear index i is row-major over
// the shape (the output's logical order).
// Cost per element: one divide/modulo per remaining dim (64-bit); a plain struct, passed to kernels
// by value (N = 3: 8 + 64 + 192 + 8 bytes, well under the 4 KiB kernel parameter limit).
// Reference: PyTorch's OffsetCalculator (ATen/cuda/detail/OffsetCalculator.cuh), simplified.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "strata/backend/cuda_compat.hpp"
#include "strata/core/error.hpp"

namespace strata::cuda {

inline constexpr int kIndexerMaxDims = 8;

/// Linear output index -> element offsets of N operands; dims stored innermost first.
template <int N>
struct Indexer {
  static_assert(N >= 1 && N <= 8, "Indexer: 1 to 8 operands");
  int dims = 0;                                  // dims left after merging (0: a single element)
  int64_t numel = 1;                             // product of sizes
  int64_t sizes[kIndexerMaxDims] = {};           // sizes[0] is the innermost dim
  int64_t strides[kIndexerMaxDims][N] = {};      // strides[d][k]: operand k's element stride on dim d

  /// off[k] = element offset of operand k for the element at row-major linear index i.
  __host__ __device__ void offsets(int64_t i, int64_t (&off)[N]) const {
    for (int k = 0; k < N; ++k) off[k] = 0;
    for (int d = 0; d < kIndexerMaxDims; ++d) {
      if (d == dims) break;
      const int64_t q = i / sizes[d], r = i - q * sizes[d];
      i = q;
      for (int k = 0; k < N; ++k) off[k] += r * strides[d][k];
    }
  }
};

/// An indexer for N operands over `shape` (outermost first); strides[k] holds operand k's element
/// strides, one per dim of shape (0 for broadcast dims). Operand 0 is the output by convention.
template <int N>
Indexer<N> make_indexer(const std::vector<int64_t>& shape, const std::array<std::vector<int64_t>, N>& strides) {
  const int nd = int(shape.size());
  for (int k = 0; k < N; ++k)
    STRATA_CHECK(int(strides[size_t(k)].size()) == nd, "make_indexer", "got ", strides[size_t(k)].size(),
                 " strides for operand ", k, ", expected one per dim of the shape (", nd, ")");
  Indexer<N> ix;
  for (int d = 0; d < nd; ++d) {
    STRATA_CHECK(shape[size_t(d)] >= 0, "make_indexer", "got size ", shape[size_t(d)], " on dim ", d,
                 ", expected sizes >= 0");
    ix.numel *= shape[size_t(d)];
  }
  // walk dims innermost first, dropping size-1 dims and merging into the previous (inner) dim when
  // every operand's stride continues it: stride_outer == stride_inner * size_inner
  std::vector<int64_t> sizes;
  std::vector<std::array<int64_t, N>> st;
  for (int d = nd - 1; d >= 0; --d) {
    const int64_t size = shape[size_t(d)];
    if (size == 1) continue;
    std::array<int64_t, N> s{};
    for (int k = 0; k < N; ++k) s[size_t(k)] = strides[size_t(k)][size_t(d)];
    bool merge = !sizes.empty();
    for (int k = 0; k < N && merge; ++k) merge = s[size_t(k)] == st.back()[size_t(k)] * sizes.back();
    if (merge) {
      sizes.back() *= size;
    } else {
      sizes.push_back(size);
      st.push_back(s);
    }
  }
  STRATA_CHECK(int(sizes.size()) <= kIndexerMaxDims, "make_indexer", "got ", sizes.size(),
               " dims after merging contiguous ones, expected at most ", kIndexerMaxDims);
  ix.dims = int(sizes.size());
  for (int d = 0; d < ix.dims; ++d) {
    ix.sizes[d] = sizes[size_t(d)];
    for (int k = 0; k < N; ++k) ix.strides[d][k] = st[size_t(d)][size_t(k)];
  }
  return ix;
}

}  // namespace strata::cuda
