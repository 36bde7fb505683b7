// Uncertainty sampling for active learning: which unlabelled items is the model least sure about?
// Label those next (Settles 2009, "Active Learning Literature Survey", section 3.1).
//
//   auto u = learn.uncertainty(pool_x, Uncertainty::margin);   // pool_x [N, ...] as the model takes it
//   for (int64_t k = 0; k < 100; ++k) label(u.order[k]);        // the 100 most uncertain items
//
// With p = softmax(logits) over the C classes of one item (p_1 >= p_2 the two largest):
//   entropy           s = -sum_c p_c log p_c     (0 when sure, log C when uniform)
//   margin            s = 1 - (p_1 - p_2)        (1 - Scheffer's margin: higher = more uncertain)
//   least_confidence  s = 1 - p_1
// Higher s = more uncertain for all three; `order` sorts the items by s, highest first, ties by
// index (a stable sort), so the first k of it are the k items to label.
//
// Predictions come from Learner::get_preds (validation context: eval mode, no grad, every item in
// dataset order); the raw outputs [N, C] go through softmax over dim 1 in float64 (the activation of
// cross-entropy, whatever the Learner's loss_func, and near-certain items still rank apart instead
// of all rounding to p = 1 in float32). The Tensor overload takes inputs as the model takes them: no
// transforms are applied (for raw items pass a DataLoader with the valid loader's after_batch).
// The DataLoader overload reads only the batches' xb (targets, if any, are dropped before the
// model runs). fastai has no uncertainty API; the names follow the literature (modAL's
// entropy_sampling / margin_sampling / uncertainty_sampling compute the same scores).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "strata/learn/learner.hpp"
#include "strata/tensor/softmax.hpp"

namespace strata {

/// How uncertainty is scored (see the top of the file); entropy is the default.
enum class Uncertainty { entropy, margin, least_confidence };

inline const char* uncertainty_name(Uncertainty m) {
  switch (m) {
    case Uncertainty::entropy: return "entropy";
    case Uncertainty::margin: return "margin";
    case Uncertainty::least_confidence: return "least_confidence";
  }
  return "unknown";
}

/// What Learner::uncertainty found.
struct UncertaintyResult {
  Tensor scores;               // f64 [N], higher = more uncertain
  std::vector<int64_t> order;  // the N item indices, most uncertain first (ties by index)
  Tensor probs;                // f64 [N, C], softmax of the model's outputs
};

/// Scores of probabilities probs [N, C] (rows summing to 1) by method, and their order; the
/// computation behind Learner::uncertainty, usable on predictions made elsewhere.
inline UncertaintyResult uncertainty_scores(const Tensor& probs, Uncertainty method) {
  STRATA_CHECK(probs.defined() && probs.dim() == 2, "uncertainty", "got predictions of shape ",
               probs.defined() ? to_string(probs.shape()) : std::string("(undefined)"),
               ", expected 2-D [N, C] (one row of class scores per item)");
  const int64_t N = probs.size(0), C = probs.size(1);
  STRATA_CHECK(N > 0, "uncertainty", "got 0 items, expected at least one");
  STRATA_CHECK(C >= 1, "uncertainty", "got predictions with 0 classes, expected C >= 1");
  STRATA_CHECK(method != Uncertainty::margin || C >= 2, "uncertainty", "got ", C,
               " class for margin, expected C >= 2 (margin compares the two most probable classes)");
  STRATA_CHECK(int(method) >= 0 && int(method) <= int(Uncertainty::least_confidence), "uncertainty",
               "got method ", int(method), ", expected entropy, margin or least_confidence");
  UncertaintyResult r;
  r.probs = probs.to(DType::f64).contiguous();
  r.scores = empty({N}, {.dtype = DType::f64});
  const double* p = r.probs.data_ptr<double>();  // [N, C]
  double* s = r.scores.data_ptr<double>();        // [N]
  for (int64_t i = 0; i < N; ++i) {
    const double* row = p + i * C;
    double top1 = -1, top2 = -1, ent = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double v = row[c];
      STRATA_CHECK(std::isfinite(v), "uncertainty", "got probability ", v, " for item ", i, " class ", c,
                   ", expected finite predictions");
      if (v > 0) ent -= v * std::log(v);  // 0 log 0 = 0
      if (v > top1) top2 = top1, top1 = v;
      else if (v > top2) top2 = v;
    }
    switch (method) {
      case Uncertainty::entropy: s[i] = ent; break;
      case Uncertainty::margin: s[i] = 1 - (top1 - top2); break;
      case Uncertainty::least_confidence: s[i] = 1 - top1; break;
    }
  }
  r.order.resize(size_t(N));
  std::iota(r.order.begin(), r.order.end(), int64_t(0));
  std::stable_sort(r.order.begin(), r.order.end(), [s](int64_t a, int64_t b) { return s[a] > s[b]; });
  return r;
}

namespace detail {

/// Drops the targets of every batch before the model runs (uncertainty reads inputs only).
struct DropTargets : Callback {
  DropTargets() {
    order = -100;  // before every other callback's before_batch
    run_train = false;
  }
  std::string name() const override { return "DropTargets"; }
  void before_batch() override { learn->yb.clear(); }
};

}  // namespace detail

inline UncertaintyResult Learner::uncertainty(DataLoader& dl_, Uncertainty method) {
  STRATA_CHECK(dl_.dataset_ptr() != nullptr && dl_.n() > 0, "uncertainty", "got a loader with ", dl_.n(),
               " items, expected at least one");
  auto drop = std::make_shared<detail::DropTargets>();
  add_cb(drop);
  struct Remove {
    Learner& learn;
    CallbackPtr cb;
    ~Remove() { learn.remove_cb(cb); }
  } remove{*this, drop};
  Tensor logits = get_preds(&dl_, false, /*act=*/false).first;
  STRATA_CHECK(logits.defined() && logits.dim() == 2, "uncertainty", "got model outputs of shape ",
               logits.defined() ? to_string(logits.shape()) : std::string("(undefined)"),
               ", expected 2-D [N, C] class scores");
  NoGrad ng;
  return uncertainty_scores(softmax(logits.to(DType::f64), 1), method);
}

inline UncertaintyResult Learner::uncertainty(const Tensor& items, Uncertainty method, int64_t bs) {
  STRATA_CHECK(items.defined() && items.dim() >= 1 && items.size(0) > 0, "uncertainty", "got items of shape ",
               items.defined() ? to_string(items.shape()) : std::string("(undefined)"),
               ", expected [N, ...] with N >= 1 items");
  STRATA_CHECK(bs >= 0, "uncertainty", "got bs = ", bs, ", expected bs >= 1 (or 0: dls.valid's bs)");
  if (bs == 0) bs = dls.valid.dataset_ptr() ? dls.valid.bs() : 64;
  DataLoader dl_(std::make_shared<TensorDataset>(std::vector<Tensor>{items}, std::vector<Tensor>{}), {.bs = bs});
  return uncertainty(dl_, method);
}

}  // namespace strata
