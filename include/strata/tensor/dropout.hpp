// dropout: inverted dropout (F.dropout).
//
//   training, 0 < p < 1:  y = x * mask,  mask = 1 / (1 - p) with probability 1 - p, else 0
//   p == 1: y = x * 0;  !training or p == 0: y = x (the same tensor)
//   backward: dx = dout * mask (through mul: the mask is a constant)
// The mask is drawn from strata's Philox generator (core/random.hpp; one 32-bit word per element,
// dropped when its uniform in [0, 1) falls below p), so manual_seed(s) before a call gives the
// same mask again, independent of the thread count. It is built in one parallel pass and applied
// with one mul, which records the backward; no hand-written backward is needed.
#pragma once

#include "strata/tensor/binary.hpp"
#include "strata/tensor/creation.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

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
  // on cuda the mask is drawn on the host (the same numbers) and copied over; kernels/cuda/dropout.cuh
  // draws the same Philox stream on the device and is the next step
  return mul(x, detail::copy_to_device(dropout_mask(x.shape(), x.dtype(), p), x.device()));
}

}  // namespace strata
