// Gradient unscaling for mixed precision, in one pass: x <- x * inv_scale, and whether any element
// (before scaling) was inf or NaN, for an fp16/bf16 (or f32/f64) gradient x [n] (contiguous).
// PyTorch's _amp_foreach_non_finite_check_and_unscale_: the loss scaler multiplies the loss by
// `scale` before backward, then divides every gradient by it here; if any gradient overflowed, the
// step is skipped and the scale halved (issue 8, GPU mixed precision).
//
//   bool found = cpu::amp_unscale(g, n, 1.0f / scale);    // g: f16*, bf16*, float* or double*
//
// Arithmetic: v = x in float (double for double x); x <- T(v * inv_scale), rounded to nearest even.
// Non-finite elements are scaled too (inf stays inf, NaN stays NaN), as PyTorch does: the step is
// skipped anyway. The CUDA twin is kernels/cuda/amp.cuh (a list of tensors in one launch).
// Reference (amp_unscale_ref): the plain loop. amp_unscale: the same arithmetic, threaded.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "strata/core/half.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// The type amp_unscale computes in for element type T: double for double, float otherwise.
template <class T>
using amp_compute_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

// ---------------------------------------------------------------- references

/// x [n] *= inv_scale in place; returns whether any element was inf or NaN before.
template <class T>
bool amp_unscale_ref(T* x, int64_t n, float inv_scale) {
  using A = amp_compute_t<T>;
  bool found = false;
  for (int64_t i = 0; i < n; ++i) {
    const A v = A(x[i]);
    if (!std::isfinite(v)) found = true;  // inf or NaN: the step will be skipped
    x[i] = T(v * A(inv_scale));           // unscaled gradient
  }
  return found;
}

// ---------------------------------------------------------------- kernels

inline constexpr int64_t kAmpGrain = 1 << 15;  // elements per thread chunk

/// amp_unscale_ref's arithmetic, n split over the threads.
template <class T>
bool amp_unscale(T* x, int64_t n, float inv_scale) {
  using A = amp_compute_t<T>;
  std::atomic<bool> found{false};
  parallel_for(0, n, kAmpGrain, [&](int64_t lo, int64_t hi) {
    bool bad = false;
    for (int64_t i = lo; i < hi; ++i) {
      const A v = A(x[i]);
      bad |= !std::isfinite(v);
      x[i] = T(v * A(inv_scale));
    }
    if (bad) found.store(true, std::memory_order_relaxed);
  });
  return found.load();
}

}  // namespace strata::cpu
