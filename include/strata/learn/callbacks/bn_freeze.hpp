// BnFreeze: keeps the running statistics of frozen BatchNorm layers fixed while the rest of the model
// trains (fastai v2, callback/training.py: BnFreeze and set_bn_eval).
//
// before_train (after TrainEvalCallback has put the model in train mode): every BatchNorm layer
// (nn::BatchNormBase: BatchNorm1d, BatchNorm2d) whose parameters all have requires_grad == false is
// switched to eval mode, so it normalizes with its running statistics and no longer updates them.
//
// How that meets our freezing: Learner::freeze() / freeze_to(n) turn requires_grad off for the params
// of the frozen groups, except those whose optimizer state has force_train. create_opt gives norm
// layers' params force_train when LearnerOptions::train_bn is true (the default, as fastai's), so
// with train_bn the BatchNorm layers of a frozen body keep training (weights and running stats) and
// BnFreeze leaves them alone -- as in fastai, BnFreeze is meant for train_bn = false:
//
//   Learner learn(dls, model, loss, {.splitter = split, .train_bn = false});
//   learn.freeze();
//   learn.fit(1, 1e-3, {}, {std::make_shared<BnFreeze>()});   // the body's BN stats stay as they were
//
// A BatchNorm layer without parameters (affine = false) cannot be told frozen or not from them and is
// left in train mode (fastai's next(l.parameters()) would fail there). Validation is unchanged (every
// layer is in eval mode then). n_frozen counts the layers switched at the last before_train.
#pragma once

#include "strata/learn/learner.hpp"
#include "strata/nn/norm.hpp"

namespace strata {

/// Puts every BatchNorm layer of m whose params are all frozen in eval mode (use_eval) or back in
/// train mode; returns how many layers it switched (fastai's set_bn_eval).
inline int64_t set_bn_eval(nn::Module& m, bool use_eval = true) {
  int64_t n = 0;
  m.apply([&](nn::Module& l) {
    if (!dynamic_cast<nn::BatchNormBase*>(&l)) return;
    const std::vector<Tensor> ps = l.parameters();
    if (ps.empty()) return;
    for (const Tensor& p : ps)
      if (p.requires_grad()) return;
    l.train(!use_eval);
    ++n;
  });
  return n;
}

class BnFreeze : public Callback {
 public:
  /// BatchNorm layers put in eval mode at the last before_train.
  int64_t n_frozen = 0;

  BnFreeze() { order = 0; }  // after TrainEvalCallback (-10), which calls model.train()
  std::string name() const override { return "BnFreeze"; }

  void before_train() override { n_frozen = set_bn_eval(*learn->model); }
};

}  // namespace strata
