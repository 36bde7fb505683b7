// CUDA elementwise kernels over strided and broadcast operands: one grid-stride kernel template,
// any layout through kernels/cuda/indexer.cuh.
//
//   auto ix = cuda::make_indexer<3>(out_shape, {{out_strides, a_strides, b_strides}});
//   cuda::cuda_elementwise<float>(cuda::ew::Add{}, n, ix, out_ptr, a_ptr, b_ptr);   // out = a + b
//   cuda::cuda_elementwise<float>(cuda::ew::Exp{}, n, ix1, out_ptr, x_ptr);         // out = exp(x)
//
// elementwise_kernel<O, Op, I...>: thread i of the grid handles elements i, i + gridDim.x*blockDim.x,
// ... (grid-stride loop), reads in[k][off[k + 1]] for its element through the indexer and writes
// out[off[0]] = op(in...). Every input is loaded as its compute type (kernels/cuda/dtype.cuh: float
// for f16/bf16, the type itself otherwise) and the result is stored rounded to O, so f16/bf16 compute
// in float as on the CPU. The ops (namespace ew) are functors with a __host__ __device__ operator()
// templated on the compute type, written in the same order of operations as the CPU ops
// (tensor/binary.hpp, unary.hpp), so add, sub, mul, div, max, min, neg, abs, relu, clamp and the
// comparisons match the CPU bit for bit; exp, log, tanh, erf and friends use the device's libm
// (expf, ...: a few ulp from the CPU's vectorized versions). Tensor-level glue:
// include/strata/backend/cuda/elementwise.hpp.
// Assumptions: pointers are device pointers (or host pointers under the emulator); the output
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
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/indexer.cuh"
#include "kernels/cuda/math.cuh"

namespace strata::cuda {

namespace ew {  // the ops, as functors usable on host and device, templated on the compute type T

template <class T> __host__ __device__ inline bool m_isnan(T x) { return x != x; }  // false for integers

// binary (same order of operations as tensor/binary.hpp's ops::)
struct Add { template <class T> __host__ __device__ T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> __host__ __device__ T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> __host__ __device__ T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> __host__ __device__ T operator()(T a, T b) const { return a / b; } };
// NaN in either gives NaN (a's if both); equal values give b, as the CPU's maxps/minps
struct Max { template <class T> __host__ __device__ T operator()(T a, T b) const { return m_isnan(a) ? a : m_isnan(b) ? b : a > b ? a : b; } };
struct Min { template <class T> __host__ __device__ T operator()(T a, T b) const { return m_isnan(a) ? a : m_isnan(b) ? b : a < b ? a : b; } };
struct Pow { template <class T> __host__ __device__ T operator()(T a, T b) const { return m_pow(a, b); } };
struct Eq { template <class T> __host__ __device__ bool operator()(T a, T b) const { return a == b; } };
struct Ne { template <class T> __host__ __device__ bool operator()(T a, T b) const { return a != b; } };
struct Lt { template <class T> __host__ __device__ bool operator()(T a, T b) const { return a < b; } };
struct Le { template <class T> __host__ __device__ bool operator()(T a, T b) const { return a <= b; } };
struct Gt { template <class T> __host__ __device__ bool operator()(T a, T b) const { return a > b; } };
struct Ge { template <class T> __host__ __device__ bool operator()(T a, T b) const { return a >= b; } };

// unary (tensor/unary.hpp's ops::)
struct Neg { template <class T> __host__ __device__ T operator()(T x) const { return T(-x); } };
struct Abs {
  template <class T> __host__ __device__ T operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return m_fabs(x);  // clears the sign bit: abs(-0) = +0
    else if constexpr (std::is_unsigned_v<T>) return x;
    else return x < T(0) ? T(-x) : x;
  }
};
// NaN x gives NaN (x < 0 is false), -0 stays -0: as the CPU's max(0, x)
struct Relu {  // (unsigned: x itself; nvcc warns on the pointless x < 0)
  template <class T> __host__ __device__ T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) return x;
    else return x < T(0) ? T(0) : x;
  }
};
struct Exp { template <class T> __host__ __device__ T operator()(T x) const { return m_exp(x); } };
struct Log { template <class T> __host__ __device__ T operator()(T x) const { return m_log(x); } };
struct Log1p { template <class T> __host__ __device__ T operator()(T x) const { return m_log1p(x); } };
struct Sqrt { template <class T> __host__ __device__ T operator()(T x) const { return m_sqrt(x); } };
struct Rsqrt { template <class T> __host__ __device__ T operator()(T x) const { return T(1) / m_sqrt(x); } };
struct Sin { template <class T> __host__ __device__ T operator()(T x) const { return m_sin(x); } };
struct Cos { template <class T> __host__ __device__ T operator()(T x) const { return m_cos(x); } };
struct Tanh { template <class T> __host__ __device__ T operator()(T x) const { return m_tanh(x); } };
struct Sigmoid { template <class T> __host__ __device__ T operator()(T x) const { return T(1) / (T(1) + m_exp(-x)); } };
struct Silu { template <class T> __host__ __device__ T operator()(T x) const { return x / (T(1) + m_exp(-x)); } };
struct Gelu {  // exact: x Phi(x)
  template <class T> __host__ __device__ T operator()(T x) const {
    return T(0.5) * x * (T(1) + m_erf(x * T(0.70710678118654752440)));
  }
};
struct Softplus {  // log(1 + e^x), linear above 20
  template <class T> __host__ __device__ T operator()(T x) const { return x > T(20) ? x : m_log1p(m_exp(x)); }
};
struct Sign {
  template <class T> __host__ __device__ T operator()(T x) const {
    if constexpr (std::is_unsigned_v<T>) return T(T(0) < x);
    else return T((T(0) < x) - (x < T(0)));
  }
};
struct Clamp {  // NaN passes through, as the CPU's min(hi, max(lo, x))
  double lo, hi;
  template <class T> __host__ __device__ T operator()(T x) const {
    const T y = T(lo) > x ? T(lo) : x;
    return T(hi) < y ? T(hi) : y;
  }
};
struct LeakyRelu {
  double slope;
  template <class T> __host__ __device__ T operator()(T x) const { return x > T(0) ? x : T(slope) * x; }
};

// backward: (dout, saved) -> dx
struct ReluBwd { template <class T> __host__ __device__ T operator()(T g, T y) const { return y > T(0) ? g : T(0); } };
struct SigmoidBwd { template <class T> __host__ __device__ T operator()(T g, T y) const { return g * y * (T(1) - y); } };
struct TanhBwd { template <class T> __host__ __device__ T operator()(T g, T y) const { return g * (T(1) - y * y); } };
struct SiluBwd {
  template <class T> __host__ __device__ T operator()(T g, T x) const {
    const T s = T(1) / (T(1) + m_exp(-x));
    return g * s * (T(1) + x * (T(1) - s));
  }
};
struct GeluBwd {
  template <class T> __host__ __device__ T operator()(T g, T x) const {
    const T cdf = T(0.5) * (T(1) + m_erf(x * T(0.70710678118654752440)));
    const T pdf = m_exp(T(-0.5) * x * x) * T(0.39894228040143267794);  // 1/sqrt(2 pi)
    return g * (cdf + x * pdf);
  }
};
struct ClampBwd {  // the gradient passes where lo <= x <= hi (NaN x passes nothing)
  double lo, hi;
  template <class T> __host__ __device__ T operator()(T g, T x) const { return x >= T(lo) && x <= T(hi) ? g : T(0); }
};
// out = c ? a : b (c is bool)
struct Where { template <class T> __host__ __device__ T operator()(bool c, T a, T b) const { return c ? a : b; } };
// out = x converted (the cast of copy_)
struct Identity { template <class T> __host__ __device__ T operator()(T x) const { return x; } };
}  // namespace ew

/// NIn input pointers (of the kernel's input types), passed to the kernel by value.
template <int NIn>
struct InPtrs {
  const void* p[NIn];
};

namespace detail {
template <class O, class Op, class... I, int... Is>
__device__ __forceinline__ void elementwise_apply(const Op& op, O* out, const InPtrs<int(sizeof...(I))>& in,
                                                  const int64_t (&off)[sizeof...(I) + 1],
                                                  std::integer_sequence<int, Is...>) {
  store(out + off[0], op(load(static_cast<const I*>(in.p[Is]) + off[Is + 1])...));
}
}  // namespace detail

// kernels

/// out[off[0]] = op(in[0][off[1]], ...) for the n elements of ix, each input loaded as its compute
/// type (float for f16/bf16) and the result stored rounded to O; grid-stride loop.
template <class O, class Op, class... I>
__global__ void elementwise_kernel(Op op, int64_t n, Indexer<int(sizeof...(I)) + 1> ix, O* out,
                                   InPtrs<int(sizeof...(I))> in) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[sizeof...(I) + 1];
    ix.offsets(i, off);
    detail::elementwise_apply<O, Op, I...>(op, out, in, off, std::make_integer_sequence<int, int(sizeof...(I))>{});
  }
}

/// out[off] = v for the n elements of ix (grid-stride loop).
template <class T>
__global__ void fill_kernel(int64_t n, Indexer<1> ix, T* out, T v) {
  const int64_t step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    int64_t off[1];
    ix.offsets(i, off);
    out[off[0]] = v;
  }
}

// launchers

inline constexpr unsigned kElementwiseBlock = 256;
/// Enough blocks for a few waves on the largest GPUs; the grid-stride loop covers the rest.
inline constexpr int64_t kElementwiseMaxBlocks = 132 * 32;

/// out = op(in...) over the n elements that `ix` describes (operand 0 = out, then the inputs in
/// order), on the default stream (finished on return under the emulator). Element types: any of
/// dtype.cuh's (float, double, f16_t, bf16_t, integers, bool); op gets each input's compute type.
template <class O, class Op, class... In>
void cuda_elementwise(Op op, int64_t n, const Indexer<1 + int(sizeof...(In))>& ix, O* out, const In*... in) {
  constexpr int NIn = int(sizeof...(In));
  static_assert(NIn >= 1, "cuda_elementwise: at least one input");
  STRATA_CHECK(n == ix.numel, "cuda_elementwise", "got n = ", n, ", expected the indexer's ", ix.numel,
               " elements");
  if (n == 0) return;
  const InPtrs<NIn> ptrs{{static_cast<const void*>(in)...}};
  STRATA_CHECK(out != nullptr, "cuda_elementwise", "got a null output pointer, expected device memory");
  for (int k = 0; k < NIn; ++k)
    STRATA_CHECK(ptrs.p[k] != nullptr, "cuda_elementwise", "got a null pointer for input ", k,
                 ", expected device memory");
  const int64_t blocks = std::min<int64_t>((n + kElementwiseBlock - 1) / kElementwiseBlock, kElementwiseMaxBlocks);
  launch(elementwise_kernel<O, Op, In...>, dim3(unsigned(blocks)), dim3(kElementwiseBlock), 0, Stream{}, op, n, ix,
         out, ptrs);
}

/// out = v over the n elements that `ix` describes, on the default stream.
template <class T>
void cuda_fill(int64_t n, const Indexer<1>& ix, T* out, T v) {
  STRATA_CHECK(n == ix.numel, "cuda_fill", "got n = ", n, ", expected the indexer's ", ix.numel, " elements");
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + kElementwiseBlock - 1) / kElementwiseBlock, kElementwiseMaxBlocks);
  launch(fill_kernel<T>, dim3(unsigned(blocks)), dim3(kElementwiseBlock), 0, Stream{}, n, ix, out, v);
}

}  // namespace strata::cuda
