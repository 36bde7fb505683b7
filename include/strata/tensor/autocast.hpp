// autocast: a thread-local mixed-precision mode, like torch.autocast("cpu", dtype=torch.bfloat16).
//
// Inside `Autocast ac(DType::bf16);` the matmul-like ops (matmul, linear, conv2d) take float32
// inputs as bfloat16 (rounded once, differentiably) and multiply them with float32 accumulation,
// returning a float32 result; every other op runs in the dtype it is given. Parameters stay
// float32 (the master weights); only the operands of the multiplications are rounded. Guards nest
// and restore the previous mode on destruction. Off by default; learn.to_bf16() turns it on for
// the forward and backward passes of training and for validation.
#pragma once

#include "strata/core/dtype.hpp"

namespace strata {

namespace detail {
inline thread_local DType autocast_dtype_ = DType::f32;  // f32: autocast off
}  // namespace detail

/// The dtype matmul-like ops round float32 operands to: bf16 (or f16) inside an Autocast, else f32 (off).
inline DType autocast_dtype() { return detail::autocast_dtype_; }
/// Whether an Autocast guard is active on this thread.
inline bool autocast_enabled() { return detail::autocast_dtype_ != DType::f32; }

/// RAII guard: `Autocast ac(DType::bf16);` turns autocast on for this thread until it is destroyed;
/// `Autocast ac(DType::bf16, false)` turns it off inside an enclosing guard.
class Autocast {
 public:
  explicit Autocast(DType dt = DType::bf16, bool enabled = true) : prev_(detail::autocast_dtype_) {
    detail::autocast_dtype_ = enabled ? dt : DType::f32;
  }
  ~Autocast() { detail::autocast_dtype_ = prev_; }
  Autocast(const Autocast&) = delete;
  Autocast& operator=(const Autocast&) = delete;

 private:
  DType prev_;
};

}  // namespace strata
