// TrainEvalCallback: counts training iterations and switches the model between train and eval mode
// (fastai v2, callback/core.py). One of the Learner's default callbacks; order -10, so it runs first.
//
//   before_fit:      train_iter = 0, pct_train = 0, epoch = 0
//   before_train:    pct_train = epoch / n_epoch, model.train(), training = true
//   after_batch:     (training batches only) pct_train += 1 / (n_iter * n_epoch), train_iter += 1
//   before_validate: model.eval(), training = false
// pct_train is the fraction of the fit done, which schedules (ParamScheduler) read.
#pragma once

#include "strata/learn/learner.hpp"

namespace strata {

class TrainEvalCallback : public Callback {
 public:
  TrainEvalCallback() {
    order = -10;
    run_valid = false;
  }
  std::string name() const override { return "TrainEvalCallback"; }

  void before_fit() override {
    learn->epoch = 0;
    learn->train_iter = 0;
    learn->pct_train = 0;
  }
  void before_train() override {
    learn->pct_train = double(learn->epoch) / double(learn->n_epoch);
    learn->model->train();
    learn->training = true;
  }
  void after_batch() override {
    learn->pct_train += 1.0 / double(learn->n_iter * learn->n_epoch);
    learn->train_iter += 1;
  }
  void before_validate() override {
    learn->model->eval();
    learn->training = false;
  }
};

}  // namespace strata
