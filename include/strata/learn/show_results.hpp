// show_results: a valid batch with the model's predictions beside the targets, as a PNG grid
// (fastai's learn.show_results). A free function, since Learner's header stays free of drawing:
//
//   show_results(learn, "results.png");                 // 9 validation samples
//   show_results(learn, "results.png", {.max_n = 16});
//
// Contract: the first min(bs, max_n) items of dls.valid's first batch go through learn.get_preds
// (the model in eval mode, without grad, every callback of the validation phase running), then the
// loss function's activation and decodes (argmax for cross-entropy, threshold for BCE). Targets and
// predictions are decoded as show_batch decodes batches (the DataBlock's decode_batch when
// dls.block is set, else xb[0] as Image and integer targets as Categories labelled with dls.vocab).
// The first target decides the layout:
//   Category / MultiCategory  one cell per sample titled "pred / actual", green (0, 128, 0) when the
//                             prediction equals the target, red (255, 0, 0) when not (fastai's colours)
//   Regression                one cell per sample titled "pred / actual" in black
//   Mask / Points / BBoxes    two cells per sample, side by side: the input with the actual target
//                             ("actual"), then with the prediction ("pred")
// Options as show_batch's (ShowOptions::titles and title_colors, when given, replace these).
#pragma once

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "strata/data/show.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

/// Predictions of the model on the first items of dls.valid beside their targets, as a PNG grid at path.
inline void show_results(Learner& learn, const std::string& path, ShowOptions o = {}) {
  const char* op = "show_results";
  STRATA_CHECK(o.max_n >= 1, op, "got max_n = ", o.max_n, ", expected at least 1");
  const Batch full = detail::first_batch(learn.dls, false, op);
  STRATA_CHECK(!full.yb.empty(), op, "got a valid batch without targets, expected targets to compare with");
  const Tensor& y0 = full.yb[0];
  STRATA_CHECK(y0.defined() && y0.dim() >= 1, op, "got yb[0] of shape ",
               y0.defined() ? to_string(y0.shape()) : std::string("(undefined)"), ", expected a batch of targets");
  const int64_t n = std::min<int64_t>(y0.size(0), o.max_n);

  // the first n items, through the Learner's validation loop
  Batch b;
  for (const Tensor& x : full.xb) b.xb.push_back(x.narrow(0, 0, n));
  for (const Tensor& y : full.yb) b.yb.push_back(y.narrow(0, 0, n));
  DataLoader one(std::make_shared<TensorDataset>(b.xb, b.yb), {.bs = n});
  Tensor preds = learn.get_preds(&one, /*with_decoded=*/true).first;
  STRATA_CHECK(preds.defined() && preds.dim() >= 1 && preds.size(0) == n, op, "got predictions of shape ",
               preds.defined() ? to_string(preds.shape()) : std::string("(undefined)"), " for ", n,
               " items, expected one prediction per item");
  const Tensor& y = b.yb[0];
  if (preds.shape() != y.shape() && preds.numel() == y.numel()) preds = preds.reshape(y.shape());
  if (preds.dtype() != y.dtype()) preds = preds.to(y.dtype());
  Batch pb = b;
  pb.yb[0] = preds;

  auto [actual, vocabs] = detail::decoded_batch(learn.dls, b, op);
  Tuple predicted = detail::decoded_batch(learn.dls, pb, op).first;
  const size_t target = actual.size() - b.yb.size();  // targets come last
  const std::vector<Tuple> act = batch_to_samples(actual), pred = batch_to_samples(predicted);
  if (o.vocabs.empty()) o.vocabs = vocabs;
  const std::vector<std::string>* vocab =
      target < o.vocabs.size() && !o.vocabs[target].empty() ? &o.vocabs[target] : nullptr;

  const ItemKind kind = kind_of(actual[target]);
  std::vector<Tuple> cells;
  std::vector<std::string> titles;
  std::vector<Color> colors;
  for (size_t i = 0; i < act.size(); ++i) {
    if (kind == ItemKind::category || kind == ItemKind::multi_category || kind == ItemKind::regression) {
      const std::string p = detail::item_label(pred[i][target], vocab, op);
      const std::string a = detail::item_label(act[i][target], vocab, op);
      cells.push_back(act[i]);
      titles.push_back(p + " / " + a);
      colors.push_back(kind == ItemKind::regression ? Color{0, 0, 0} : p == a ? Color{0, 128, 0} : Color{255, 0, 0});
    } else {
      cells.push_back(act[i]);
      titles.push_back("actual");
      cells.push_back(pred[i]);
      titles.push_back("pred");
      colors.insert(colors.end(), 2, Color{0, 0, 0});
    }
  }
  const bool paired = cells.size() > act.size();
  if (paired && o.ncols == 0) o.ncols = 2;
  for (size_t i = 0; i < o.titles.size() && i < titles.size(); ++i) titles[i] = o.titles[i];
  for (size_t i = 0; i < o.title_colors.size() && i < colors.size(); ++i) colors[i] = o.title_colors[i];
  o.titles = std::move(titles);
  o.title_colors = std::move(colors);
  o.max_n = int(cells.size());
  show_tuples(path, cells, o);
}

}  // namespace strata
