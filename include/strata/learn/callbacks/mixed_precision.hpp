// MixedPrecision: bf16 mixed-precision training (CPU or cuda) and fp16 with dynamic loss scaling
// (cuda) (fastai v2, callback/fp16.py, and learn.to_bf16() / learn.to_fp16() / learn.to_fp32()).
//
//   learn.to_bf16().fit_one_cycle(5, 1e-2);      // or: learn.add_cb(std::make_shared<MixedPrecision>())
//   learn.to(kCUDA).to_fp16().fit_one_cycle(5, 1e-2);
//   learn.to_fp32();                             // back to plain float32
//
// Each batch's forward pass, loss and (when training) backward pass run inside an Autocast(bf16)
// guard (tensor/autocast.hpp): matmul, linear and conv2d round their float32 operands to bfloat16
// and multiply with float32 accumulation; everything else, the parameters (the master weights),
// their gradients and the optimizer stay float32. The guard opens at before_batch and closes at
// after_backward, so the optimizer step runs outside it; after_cancel_batch, after_batch, after_fit
// and after_exception close it too, so it never outlives a batch however the batch ends.
// Validation (and validate / get_preds / predict) runs its forward pass inside the guard as well.
// No loss scaling for bf16: it has float32's exponent range (fastai's to_bf16 does not scale either).
// fp16 (a cuda Learner only) scales dynamically with a GradScaler (tensor/amp.hpp), as fastai's
// to_fp16 does with PyTorch's: before_backward multiplies loss_grad by the scale; after_backward
// divides every gradient by it in one pass and notes whether any was inf/NaN; before_step then
// skips the step (CancelStepException) on overflow; after_step halves the scale after a skipped
// step and doubles it after growth_interval clean ones.
// Order 10, as fastai's: GradientClip (11) sees the unscaled float32 gradients.
#pragma once

#include <optional>
#include <string>

#include "strata/learn/learner.hpp"
#include "strata/tensor/amp.hpp"
#include "strata/tensor/autocast.hpp"

namespace strata {

/// Runs each batch's forward, loss and backward under Autocast(dtype) (fastai's MixedPrecision).
class MixedPrecision : public Callback {
 public:
  DType dtype;

  GradScaler scaler;  // used for fp16 only

  explicit MixedPrecision(DType dtype_ = DType::bf16, GradScalerOptions scaling = {}) : dtype(dtype_), scaler(scaling) {
    STRATA_CHECK(dtype == DType::bf16 || dtype == DType::f16, "MixedPrecision", "got dtype ", dtype,
                 ", expected bfloat16 or float16");
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
  void before_fit() override {
    STRATA_CHECK(dtype != DType::f16 || learn->device.is_cuda(), "MixedPrecision",
                 "got float16 on a Learner on ", learn->device,
                 ", expected a cuda Learner (learn.to(kCUDA)); on the cpu use bf16 (learn.to_bf16())");
  }
  void before_backward() override {
    if (dtype == DType::f16) learn->loss_grad = scaler.scale(learn->loss_grad);
  }
  void after_backward() override {
    guard_.reset();
    if (dtype != DType::f16) return;
    std::vector<Tensor> grads;
    for (const Tensor& p : learn->model->parameters())
      if (p.grad().defined()) grads.push_back(p.grad());
    found_inf_ = scaler.unscale_(grads);
  }
  /// fp16: a step whose gradients overflowed is skipped (the scale is halved in after_step).
  void before_step() override {
    if (dtype == DType::f16 && found_inf_) throw CancelStepException();
  }
  void after_step() override {
    if (dtype == DType::f16) scaler.update(found_inf_);
    found_inf_ = false;
  }
  void after_cancel_batch() override { guard_.reset(); }
  void after_batch() override { guard_.reset(); }
  void after_fit() override { guard_.reset(); }
  void after_exception() override { guard_.reset(); }

 private:
  std::optional<Autocast> guard_;  // open only inside a batch
  bool found_inf_ = false;         // fp16: this batch's gradients overflowed
};

inline Learner& Learner::to_bf16() {
  remove_cb<MixedPrecision>();
  return add_cb(std::make_shared<MixedPrecision>(DType::bf16));
}

inline Learner& Learner::to_fp16(GradScalerOptions scaling) {
  remove_cb<MixedPrecision>();
  return add_cb(std::make_shared<MixedPrecision>(DType::f16, scaling));
}

inline Learner& Learner::to_fp32() { return remove_cb<MixedPrecision>(); }

}  // namespace strata
