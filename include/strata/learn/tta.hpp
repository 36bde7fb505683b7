// Test-time augmentation (fastai's Learner.tta): predictions on the validation items averaged over
// n passes with the training transforms (random crops, flips, ...), blended with the plain
// predictions: lerp(aug_preds, preds, beta) = (1 - beta) * aug_preds + beta * preds, or the
// elementwise max of both with use_max.
//
//   auto [probs, targs] = tta(learn);                 // n = 4, beta = 0.25, on dls.valid
//   double acc = accuracy(probs, targs);
//
// The augmented passes need a loader whose items can switch to the training transforms: a
// DataBlock loader (Dataset::with_split). Each pass is a new epoch of the loader, so every pass
// draws other random transforms; the same loader seed gives the same result.
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_TTA_HPP
#define STRATA_LEARN_TTA_HPP

#include "strata/data/datablock.hpp"

namespace strata {

struct TtaOptions {
  int n = 4;              // augmented passes
  double beta = 0.25;     // weight of the plain predictions
  bool use_max = false;   // max of plain and augmented instead of the lerp
  DataLoader* dl = nullptr;  // default: learn.dls.valid
};

/// (blended probabilities, targets) over every item of the loader, in dataset order.
inline std::pair<Tensor, Tensor> tta(Learner& learn, TtaOptions o = {}) {
  STRATA_CHECK(o.n >= 1 && o.beta >= 0 && o.beta <= 1, "tta", "got n = ", o.n, ", beta = ", o.beta,
               ", expected n >= 1 and 0 <= beta <= 1");
  DataLoader& src = o.dl ? *o.dl : learn.dls.valid;
  STRATA_CHECK(src.dataset_ptr() != nullptr, "tta", "got an empty loader, expected the validation loader");
  std::shared_ptr<const Dataset> train_ds = src.dataset().with_split(true);
  STRATA_CHECK(train_ds != nullptr && learn.dls.block != nullptr, "tta",
               "got a loader whose items have no training transforms to switch to, expected DataLoaders made "
               "by DataBlock::dataloaders");
  DataLoaderOptions ao = src.options();
  ao.shuffle = false;
  ao.drop_last = false;
  ao.after_batch.clear();
  if (!learn.dls.block->after_batch.empty()) ao.after_batch.push_back(after_batch_transform(learn.dls.block, true));
  DataLoader aug(train_ds, ao);
  aug.set_epoch(src.epoch());
  Tensor aug_preds;
  for (int i = 0; i < o.n; ++i) {
    Tensor p = learn.get_preds(&aug).first;
    NoGrad ng;
    aug_preds = i == 0 ? p : (o.use_max ? maximum(aug_preds, p) : aug_preds + p);
  }
  NoGrad ng;
  if (!o.use_max) aug_preds = aug_preds / double(o.n);
  auto [preds, targs] = learn.get_preds(&src);
  if (o.use_max) return {maximum(preds, aug_preds), targs};
  return {aug_preds + (preds - aug_preds) * o.beta, targs};
}

}  // namespace strata

#endif  // STRATA_LEARN_TTA_HPP
