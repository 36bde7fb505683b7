// Gradient unscaling for mixed precision on the device: every gradient of a list divided by the
// loss scale and checked for inf/NaN in one pass and one launch (PyTorch's
// _amp_foreach_non_finite_check_and_unscale_). The CUDA twin of kernels/cpu/amp.hpp.
//
//   std::vector<cuda::TensorPtrs<cuda::f16_t, 1>> grads = {{{g0}, n0}, {{g1}, n1}};  // device pointers
//   cuda::memset(found_inf, 0, sizeof(float));               // found_inf: one float of device memory
//   cuda::amp_unscale<cuda::f16_t>(grads, 1.0f / scale, found_inf);
//   // *found_inf == 1.0f if any element was inf or NaN (before scaling); else left as it was
//
// Element types T: cuda::f16_t, cuda::bf16_t, float (computed in float), double (in double): the
// CPU kernel's arithmetic, x <- T(x * inv_scale), so results agree bit for bit. found_inf is only
// ever set (so several calls, e.g. one per dtype, accumulate into one flag; the caller zeroes it)
// and is a float like PyTorch's found_inf tensor, so the flags of several devices can be summed.
// Each block ORs its threads' flags with __syncthreads_or; one thread of a block that saw a
// non-finite value writes the flag with atomicExch: at most one atomic per block, none when all is
// finite. The check and the scaling happen in the same read, so a gradient is read and written once.
#pragma once

#include <cstdint>
#include <span>

#include "strata/backend/cuda_compat.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/multi_tensor.cuh"

namespace strata::cuda {

namespace detail {
/// Whether v is neither inf nor NaN (exponent bits not all ones), without isfinite's overloads.
__device__ __forceinline__ bool amp_finite(float v) { return (__float_as_uint(v) & 0x7f800000u) != 0x7f800000u; }
__device__ __forceinline__ bool amp_finite(double v) {
  return (static_cast<unsigned long long>(__double_as_longlong(v)) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}
}  // namespace detail

// ---------------------------------------------------------------- kernels (op of multi_tensor_kernel)

/// x *= inv_scale on elements [lo, hi) of ptrs = {x}; *found_inf = 1 if one was inf/NaN.
template <class T>
struct AmpUnscaleOp {
  using C = compute_type<T>;
  float inv_scale;
  float* found_inf;
  __device__ void operator()(T* const (&ptrs)[1], int64_t lo, int64_t hi) const {
    T* g_x = ptrs[0];
    int r_bad = 0;
    for (int64_t i = lo + threadIdx.x; i < hi; i += blockDim.x) {
      const C v = load(g_x + i);
      r_bad |= !detail::amp_finite(v);
      store(g_x + i, C(v * C(inv_scale)));
    }
    if (__syncthreads_or(r_bad) && threadIdx.x == 0) atomicExch(found_inf, 1.0f);
  }
};

// ---------------------------------------------------------------- launchers

/// Every gradient {x} of `grads` *= inv_scale in place; *found_inf (device memory) set to 1.0f if any
/// element was inf or NaN, left alone otherwise.
template <class T>
void amp_unscale(std::span<const TensorPtrs<T, 1>> grads, float inv_scale, float* found_inf,
                 int64_t chunk = kMultiTensorChunk, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "amp_unscale: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(found_inf != nullptr, "amp_unscale", "got a null found_inf, expected one float of device memory");
  multi_tensor_apply<T, 1>("amp_unscale", grads, AmpUnscaleOp<T>{inv_scale, found_inf}, chunk, stream);
}

}  // namespace strata::cuda
