// GradientAccumulation: steps the optimizer once every n_acc items instead of every batch, so k
// batches of bs items train like one batch of k * bs (fastai v2, callback/training.py).
//
//   learn.fit(1, 1e-2, {}, {std::make_shared<GradientAccumulation>(64)});   // bs 16: a step every 4 batches
//
// after_loss:  loss_grad /= n_acc / bs      (the mean loss of the batch weighted by its share of n_acc)
// before_step: loss_grad *= n_acc / bs      (back, so a callback reading it later sees the batch's loss);
//              count += bs; while count < n_acc: CancelBatchException, which skips the step and the
//              zero_grad (Learner::do_grad_opt), so the next backward adds to these gradients;
//              else count = 0 and the step runs on the sum of the batches' gradients.
// With n_acc = k * bs the summed gradient is sum_j (bs / n_acc) grad(mean loss of batch j) = the
// gradient of the mean loss over the k batches. The logged loss (learn.loss, copied before after_loss)
// is the batch's own mean loss. Training only (run_valid = false); order 6 = fastai's
// MixedPrecision.order - 4. A fit that ends with count > 0 drops the gradients of those items at
// after_fit (fastai leaves them in place, so the next fit's first step would add them in).
#pragma once

#include "strata/learn/learner.hpp"

namespace strata {

class GradientAccumulation : public Callback {
 public:
  double n_acc;
  /// Items seen since the last step.
  int64_t count = 0;

  explicit GradientAccumulation(double n_acc_ = 32) : n_acc(n_acc_) {
    STRATA_CHECK(n_acc > 0, "GradientAccumulation", "got n_acc = ", n_acc, ", expected n_acc > 0 (items per step)");
    order = 6;
    run_valid = false;
  }
  std::string name() const override { return "GradientAccumulation"; }

  void before_fit() override { count = 0; }
  void after_fit() override {
    if (count > 0 && learn->opt) learn->opt->zero_grad();
    count = 0;
  }
  void after_loss() override {
    if (!learn->loss_grad.defined()) return;
    learn->loss_grad = learn->loss_grad / (n_acc / double(find_bs(learn->yb)));
  }
  void before_step() override {
    const int64_t bs = find_bs(learn->yb);
    {
      NoGrad ng;
      learn->loss_grad = learn->loss_grad * (n_acc / double(bs));  // the backward pass is done
    }
    count += bs;
    if (double(count) < n_acc) throw CancelBatchException();  // skip the step and zero_grad
    count = 0;
  }
};

}  // namespace strata
