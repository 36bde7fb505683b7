// dropout: inverted dropout (F.dropout).
//
//   training, 0 < p < 1:  y = x * mask,  mask = 1 / (1 - p) with probability 1 - p, else 0
//   p == 1: y = x * 0;  !training or p == 0: y = x (the same tensor)
//   backward: dx = dout * mask (through mul: the mask is a constant)
// The mask is drawn from strata's Philox generator (core/random.hpp; one 32-bit word per element,
// dropped when its uniform in [0, 1) falls below p), so manual_seed(s) before a call gives the
// same mask again, independent of the thread count. It is built in one parallel pass and applied
// with one mul, which records the backward; no hand-written backward is needed.
// On cuda tensors the device draws the same Philox stream (kernels/cuda/dropout.cuh, through
// cuda_dropout_hook, filled by backend/cuda/dropout.hpp): y and the mask in one kernel, bit for bit
// the CPU's for the same generator state, and the generator advances exactly as on the CPU (one
// Philox counter per 4 elements), so the next random op draws the same numbers too.
#pragma once

#include "strata/tensor/binary.hpp"
#include "strata/tensor/creation.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

namespace detail {
/// The cuda kernel's call: y = x * mask (both contiguous, x's dtype and device) and mask (undefined:
/// not kept) from Philox counters first, first + 1, ... under key seed.
inline CudaHook<void(const Tensor& x, const Tensor& y, const Tensor& mask, double p, uint64_t seed, uint64_t first)>
    cuda_dropout_hook{"dropout"};

/// dropout of a cuda x: one kernel draws the mask and applies it; backward dout * mask.
inline Tensor cuda_dropout(const Tensor& x, double p, Generator& gen) {
  const Tensor xc = contiguous(x);
  const bool grad = any_requires_grad({xc});
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  const Tensor mask = grad ? Tensor::empty(x.shape(), x.dtype(), x.device()) : Tensor();
  const uint64_t first = gen.reserve(uint64_t((x.numel() + 3) / 4));  // as random_fill: 4 values a counter
  cuda_dropout_hook(detach(xc), y, mask, p, gen.seed(), first);
  if (!grad) return y;
  const Saved md = mask;
  return record("dropout_backward", y, {xc}, [md](const Tensor& dout) { return std::vector{mul(dout, md)}; });
}
}  // namespace detail

/// The scaled keep-mask of dropout: 1 / (1 - p) with probability 1 - p, else 0; shape and dtype given.
inline Tensor dropout_mask(const Shape& shape, DType dtype, double p, Generator& gen = default_generator()) {
  Tensor mask = Tensor::empty(shape, dtype);
  dispatch_float(dtype, "dropout", [&]<class T>(type_tag<T>) {
    const T keep = cast_value<T>(p < 1 ? 1.0 / (1.0 - p) : 0.0), drop = cast_value<T>(0.0);
    detail::random_fill<T>(mask, gen, 1,
                           [&](const uint32_t* w) { return double(uint_to_unit_float(w[0])) < p ? drop : keep; });
  });
  return mask;
}

/// Inverted dropout: zeroes each element with probability p and scales the kept ones by 1 / (1 - p)
/// when training; x itself when !training or p == 0.
inline Tensor dropout(const Tensor& x, double p, bool training) {
  STRATA_CHECK(p >= 0 && p <= 1, "dropout", "got p = ", p, ", expected a probability in [0, 1]");
  detail::check_floating(x, "dropout");
  if (!training || p == 0) return x;
  if (x.device().is_cuda()) return detail::cuda_dropout(x, p, default_generator());
  return mul(x, dropout_mask(x.shape(), x.dtype(), p));
}

}  // namespace strata
