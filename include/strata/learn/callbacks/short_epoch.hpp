// ShortEpochCallback: trains (and, with short_valid, validates) on only the first pct of each epoch's
// batches, for quick checks of a training setup (fastai v2, callback/training.py).
//
// after_batch: once iter / n_iter >= pct, cancel the phase: CancelTrainException while training,
// CancelValidException while validating when short_valid. So a phase of n batches runs the first
// min(n, k + 1) of them, k the smallest index with k / n >= pct (k = ceil(pct * n) up to rounding):
// pct = 0.01 of 100 batches runs 2, pct = 0 runs 1.
//
//   learn.fit(1, 1e-3, {}, {std::make_shared<ShortEpochCallback>(0.1)});
#pragma once

#include "strata/learn/learner.hpp"

namespace strata {

class ShortEpochCallback : public Callback {
 public:
  double pct;
  bool short_valid;

  explicit ShortEpochCallback(double pct_ = 0.01, bool short_valid_ = true) : pct(pct_), short_valid(short_valid_) {
    STRATA_CHECK(pct >= 0 && pct <= 1, "ShortEpochCallback", "got pct = ", pct, ", expected 0 <= pct <= 1");
  }
  std::string name() const override { return "ShortEpochCallback"; }

  void after_batch() override {
    if (double(learn->iter) / double(learn->n_iter) < pct) return;
    if (learn->training) throw CancelTrainException();
    if (short_valid) throw CancelValidException();
  }
};

}  // namespace strata
