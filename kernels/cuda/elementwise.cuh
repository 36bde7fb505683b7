// CUDA elementwise kernels over strided and broadcast operands: one grid-stride kernel template,
// any layout through kernels/cuda/indexer.cuh.
//
//   auto ix = cuda::make_indexer<3>(out_shape, {{out_strides, a_strides, b_strides}});
//   cuda::cuda_elementwise<float>(cuda::ew::Add{}, n, ix, out_ptr, a_ptr, b_ptr);   // out = a + b
//   cuda::cuda_elementwise<float>(cuda::ew::Exp{}, n, ix1, out_ptr, x_ptr);         // out = exp(x)
//
// elementwise_kernel<T, Op, NIn>: thread i of the grid handles elements i, i + gridDim.x*blockDim.x,
// ... (grid-stride loop), reads in[k][off[k + 1]] for its element through the indexer and writes
// out[off[0]] = op(in...). Ops are functors with a __host__ __device__ operator() on T (f32, f64);
// they compute in T, in the same order as the CPU ops (tensor/binary.hpp, unary.hpp), so add, sub,
// mul, div, neg and relu match the CPU bit for bit; exp uses the device's expf/exp (<= 1-2 ulp).
// Assumptions: pointers are device pointers (or host pointers under the emulator) of T; the output
// does not overlap an input other than element for element. No vectorized loads yet (a contiguous
// fast path with 16-byte loads is the next rung). The CPU reference is kernels/cpu/elementwise.hpp.
// Reference: the grid-stride loop of "CUDA Pro Tip: Write Flexible Kernels with Grid-Stride Loops".
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/indexer.cuh"

namespace strata::cuda {

namespace ew {  // the ops, as functors usable on host and device
struct Add { template <class T> __host__ __device__ T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> __host__ __device__ T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> __host__ __device__ T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> __host__ __device__ T operator()(T a, T b) const { return a / b; } };
struct Neg { template <class T> __host__ __device__ T operator()(T x) const { return -x; } };
// NaN x gives NaN (x < 0 is false), -0 stays -0: as the CPU's max(0, x)
struct Relu { template <class T> __host__ __device__ T operator()(T x) const { return x < T(0) ? T(0) : x; } };
struct Exp {
  template <class T> __host__ __device__ T operator()(T x) const {
    if constexpr (sizeof(T) == 4) return ::expf(x);
    else return ::exp(x);
  }
};
}  // namespace ew

/// NIn input pointers, passed to the kernel by value.
template <class T, int NIn>
struct InPtrs {
  const T* p[NIn];
};

namespace detail {
template <class T, class Op, int NIn, int... Is>
__device__ __forceinline__ T elementwise_apply(const Op& op, const InPtrs<T, NIn>& in, const int64_t (&off)[NIn + 1],
                                               std::integer_sequence<int, Is...>) {
  return op(in.p[Is][off[Is + 1]]...);
}
}  // namespace detail

// kernels

/// out[off[0]] = op(in[0][off[1]], ..., in[NIn-1][off[NIn]]) for the n elements of ix.
/// out: the output, in: NIn inputs, laid out as ix says; grid-stride loop over the n elements.
template <class T, class Op, int NIn>
__global__ void elementwise_kernel(Op op, int64_t n, Indexer<NIn + 1> ix, T* out, InPtrs<T, NIn> in) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[NIn + 1];
    ix.offsets(i, off);
    out[off[0]] = detail::elementwise_apply(op, in, off, std::make_integer_sequence<int, NIn>{});
  }
}

// launchers

inline constexpr unsigned kElementwiseBlock = 256;
/// Enough blocks for a few waves on the largest GPUs; the grid-stride loop covers the rest.
inline constexpr int64_t kElementwiseMaxBlocks = 132 * 32;

/// out = op(in...) over the n elements that `ix` describes (operand 0 = out, then the inputs in
/// order), on the default stream (finished on return under the emulator). T is float or double.
template <class T, class Op, class... In>
void cuda_elementwise(Op op, int64_t n, const Indexer<1 + int(sizeof...(In))>& ix, T* out, In... in) {
  constexpr int NIn = int(sizeof...(In));
  static_assert(NIn >= 1, "cuda_elementwise: at least one input");
  static_assert((std::is_convertible_v<In, const T*> && ...), "cuda_elementwise: inputs must be T pointers");
  STRATA_CHECK(n == ix.numel, "cuda_elementwise", "got n = ", n, ", expected the indexer's ", ix.numel,
               " elements");
  if (n == 0) return;
  const InPtrs<T, NIn> ptrs{{static_cast<const T*>(in)...}};
  STRATA_CHECK(out != nullptr, "cuda_elementwise", "got a null output pointer, expected device memory");
  for (int k = 0; k < NIn; ++k)
    STRATA_CHECK(ptrs.p[k] != nullptr, "cuda_elementwise", "got a null pointer for input ", k,
                 ", expected device memory");
  const int64_t blocks = std::min<int64_t>((n + kElementwiseBlock - 1) / kElementwiseBlock, kElementwiseMaxBlocks);
  launch(elementwise_kernel<T, Op, NIn>, dim3(unsigned(blocks)), dim3(kElementwiseBlock), 0, Stream{}, op, n, ix,
         out, ptrs);
}

}  // namespace strata::cuda
