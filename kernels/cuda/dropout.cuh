// Dropout on the device with strata's Philox stream: the same mask as the CPU's dropout_mask
// (tensor/dropout.hpp, core/random.hpp) for the same seed and offset, so a run on cuda drops the
// same elements as on the CPU. Inverted dropout of x [n] (contiguous), keep-scale 1 / (1 - p):
//   mask_k = (u_k < p ? 0 : T(1 / (1 - p)));  y_k = x_k * mask_k;   backward: dx_k = dout_k * mask_k
// with u_k = uint_to_unit_float(word k % 4 of philox4x32(counter first + k / 4, key seed)).
//
//   const uint64_t first = gen.reserve((n + 3) / 4);                 // as the CPU's random_fill does
//   cuda::dropout_fwd<float>(x, y, mask, n, p, gen.seed(), first);   // mask may be nullptr
//   cuda::dropout_bwd<float>(dout, dx, n, p, gen.seed(), first);     // the mask drawn again: none kept
//   cuda::dropout_mask<float>(mask, n, p, gen.seed(), first);        // the CPU's dropout_mask
//
// Element types T: float, double, cuda::f16_t, cuda::bf16_t. The product is taken in compute_type<T>
// with the keep-scale rounded to T first (the CPU's mask has dtype T) and rounded to T, as the CPU's
// mul(x, mask): so y equals the CPU's dropout(x, p) bit for bit (x * 0 for a dropped element: -0
// for negative x, NaN for inf/NaN x, as there). p == 1 drops everything (mask 0); p == 0 keeps
// everything with mask 1.
// One thread per Philox counter (4 elements: one 128-bit draw each, grid-stride). The comparison
// u < p is done on the integers: u = (w >> 8) 2^-24 < p  <=>  (w >> 8) < ceil(p 2^24), exactly.
// Reference: Salmon et al., "Parallel random numbers: as easy as 1, 2, 3" (SC'11); PyTorch's
// fused_dropout kernel (philox seed + offset, 4 values per draw).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/philox.cuh"

namespace strata::cuda {

// ---------------------------------------------------------------- kernels

/// For the n elements: m = mask value (0 if dropped, else keep); y[k] = x[k] * m when y is given,
/// mask[k] = m when mask is given. drop_below: ceil(p 2^24). Thread per Philox counter, grid-stride.
template <class T>
__global__ void dropout_kernel(const T* x, T* y, T* mask, int64_t n, uint32_t drop_below, T keep, uint64_t seed,
                               uint64_t first) {
  using C = compute_type<T>;
  const C r_keep = load(&keep), r_drop = C(0);
  const int64_t counters = (n + 3) / 4, step = int64_t(blockDim.x) * gridDim.x;
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < counters; c += step) {
    const PhiloxWords r = philox4x32_10(first + uint64_t(c), seed);
    for (int j = 0; j < 4; ++j) {
      const int64_t k = 4 * c + j;
      if (k >= n) break;
      const C m = (r.w[j] >> 8) < drop_below ? r_drop : r_keep;
      if (y) store(y + k, C(load(x + k) * m));
      if (mask) store(mask + k, m);
    }
  }
}

// ---------------------------------------------------------------- launchers

inline constexpr unsigned kDropoutBlock = 256;
inline constexpr int64_t kDropoutMaxBlocks = 132 * 32;

namespace detail {
template <class T>
void dropout_launch(const char* op, const T* x, T* y, T* mask, int64_t n, double p, uint64_t seed, uint64_t first,
                    Stream stream) {
  static_assert(is_floating_storage<T>, "dropout: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(p >= 0 && p <= 1, op, "got p = ", p, ", expected a probability in [0, 1]");
  STRATA_CHECK(n >= 0, op, "got n = ", n, ", expected n >= 0");
  if (n == 0) return;
  STRATA_CHECK((!y || (x && y)) && (y || mask), op, "got a null pointer, expected device memory for ",
               (y ? "x" : "the mask"));
  const uint32_t drop_below = uint32_t(std::ceil(p * 0x1p24));              // u < p  <=>  (w >> 8) < this
  const T keep = from_compute<T>(compute_type<T>(p < 1 ? 1.0 / (1.0 - p) : 0.0));  // as the CPU's mask
  const int64_t counters = (n + 3) / 4;
  const int64_t blocks = std::min<int64_t>((counters + kDropoutBlock - 1) / kDropoutBlock, kDropoutMaxBlocks);
  launch(dropout_kernel<T>, dim3(unsigned(blocks)), dim3(kDropoutBlock), 0, stream, x, y, mask, n, drop_below, keep,
         seed, first);
}
}  // namespace detail

/// y [n] = x [n] * mask, mask [n] (if not nullptr) = the scaled keep-mask, from (seed, first counter).
template <class T>
void dropout_fwd(const T* x, T* y, T* mask, int64_t n, double p, uint64_t seed, uint64_t first, Stream stream = {}) {
  STRATA_CHECK(y != nullptr || n == 0, "dropout_fwd", "got a null y, expected device memory of [", n, "]");
  detail::dropout_launch<T>("dropout_fwd", x, y, mask, n, p, seed, first, stream);
}

/// dx [n] = dout [n] * mask, the forward's mask drawn again from the same (seed, first counter).
template <class T>
void dropout_bwd(const T* dout, T* dx, int64_t n, double p, uint64_t seed, uint64_t first, Stream stream = {}) {
  STRATA_CHECK(dx != nullptr || n == 0, "dropout_bwd", "got a null dx, expected device memory of [", n, "]");
  detail::dropout_launch<T>("dropout_bwd", dout, dx, static_cast<T*>(nullptr), n, p, seed, first, stream);
}

/// mask [n] = the scaled keep-mask (the CPU's dropout_mask) from (seed, first counter).
template <class T>
void dropout_mask(T* mask, int64_t n, double p, uint64_t seed, uint64_t first, Stream stream = {}) {
  STRATA_CHECK(mask != nullptr || n == 0, "dropout_mask", "got a null mask, expected device memory of [", n, "]");
  detail::dropout_launch<T>("dropout_mask", static_cast<const T*>(nullptr), static_cast<T*>(nullptr), mask, n, p, seed,
                            first, stream);
}

}  // namespace strata::cuda
