// TerminateOnNaNCallback: stops the fit at the first batch whose loss is NaN or infinite (fastai v2,
// callback/tracker.py). after_batch (training and validation): a non-finite learn.loss raises
// CancelFitException, so after_cancel_fit and after_fit still run (the Recorder keeps what it has),
// after printing to `out` which epoch and iteration it was. Order -9, as fastai's.
//
//   learn.fit(10, 1e-2, {}, {std::make_shared<TerminateOnNaNCallback>()});
#pragma once

#include <cmath>
#include <iostream>

#include "strata/learn/learner.hpp"

namespace strata {

class TerminateOnNaNCallback : public Callback {
 public:
  /// Where the message goes (null: nowhere).
  std::ostream* out = &std::cerr;
  /// Whether the last fit was stopped by this callback, and where.
  bool terminated = false;
  int epoch = -1;
  int64_t iter = -1;

  TerminateOnNaNCallback() { order = -9; }
  std::string name() const override { return "TerminateOnNaNCallback"; }

  void before_fit() override {
    terminated = false;
    epoch = -1;
    iter = -1;
  }
  void after_batch() override {
    if (!learn->loss.defined()) return;
    const double l = learn->loss.to(DType::f64).item<double>();
    if (std::isfinite(l)) return;
    terminated = true;
    epoch = learn->epoch;
    iter = learn->iter;
    if (out)
      *out << "TerminateOnNaNCallback: loss is " << l << " at epoch " << epoch << ", iter " << iter << " ("
           << (learn->training ? "training" : "validation") << "); stopping the fit\n";
    throw CancelFitException();
  }
};

}  // namespace strata
