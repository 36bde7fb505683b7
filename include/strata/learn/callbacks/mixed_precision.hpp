// MixedPrecision: bf16 mixed-precision training on the CPU (fastai v2, callback/fp16.py, and
// learn.to_bf16() / learn.to_fp32()).
//
//   learn.to_bf16().fit_one_cycle(5, 1e-2);      // or: learn.add_cb(std::make_shared<MixedPrecision>())
//   learn.to_fp32();                             // back to plain float32
//
// Each batch's forward pass, loss and (when training) backward pass run inside an Autocast(bf16)
// guard (tensor/autocast.hpp): matmul, linear and conv2d round their float32 operands to bfloat16
// and multiply with float32 accumulation; everything else, the parameters (the master weights),
// their gradients and the optimizer stay float32. The guard opens at before_batch and closes at
// after_backward, so the optimizer step runs outside it; after_cancel_batch, after_batch, after_fit
// and after_exception close it too, so it never outlives a batch however the batch ends.
// Validation (and validate / get_preds / predict) runs its forward pass inside the guard as well.
// No loss scaling: bf16 has float32's exponent range (fastai's to_bf16 does not scale either).
// float16 needs dynamic loss scaling and belongs to the GPU backend: it is refused here.
// Order 10, as fastai's: GradientClip (11) sees the float32 gradients.
#pragma once

#include <optional>
#include <string>

#include "strata/learn/learner.hpp"
#include "strata/tensor/autocast.hpp"

namespace strata {

/// Runs each batch's forward, loss and backward under Autocast(dtype) (fastai's MixedPrecision).
class MixedPrecision : public Callback {
 public:
  DType dtype;

  explicit MixedPrecision(DType dtype_ = DType::bf16) : dtype(dtype_) {
    STRATA_CHECK(dtype == DType::bf16, "MixedPrecision", "got dtype ", dtype,
                 ", expected bfloat16 (bf16 mixed precision on the CPU is what is supported; "
                 "float16 needs dynamic loss scaling on the GPU, not built yet)");
    order = 10;
  }
  std::string name() const override { return "MixedPrecision"; }
  /// Whether this callback's Autocast guard is open (between before_batch and the end of the backward pass).
  bool active() const { return guard_.has_value(); }

  void before_batch() override {
    guard_.reset();
    guard_.emplace(dtype);
  }
  /// fastai's to_float(pred): a model that returns 16-bit predictions gives the loss float32 ones.
  void after_pred() override {
    if (learn->pred.defined() && (learn->pred.dtype() == DType::bf16 || learn->pred.dtype() == DType::f16))
      learn->pred = learn->pred.to(DType::f32);
  }
  void after_backward() override { guard_.reset(); }
  void after_cancel_batch() override { guard_.reset(); }
  void after_batch() override { guard_.reset(); }
  void after_fit() override { guard_.reset(); }
  void after_exception() override { guard_.reset(); }

 private:
  std::optional<Autocast> guard_;  // open only inside a batch
};

inline Learner& Learner::to_bf16() {
  remove_cb<MixedPrecision>();
  return add_cb(std::make_shared<MixedPrecision>(DType::bf16));
}

inline Learner& Learner::to_fp32() { return remove_cb<MixedPrecision>(); }

}  // namespace strata
