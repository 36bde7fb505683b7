// ClassificationInterpretation: where a classifier goes wrong (fastai's interpret.py).
//
//   auto interp = ClassificationInterpretation::from_learner(learn);   // on dls.valid
//   interp.plot_confusion_matrix("confusion_matrix.png");
//   for (auto& [actual, pred, n] : interp.most_confused(5)) ...
//   interp.plot_top_losses("top_losses.png", 9);
//   interp.print_classification_report();
//
// What it holds, one row per item of the loader in dataset order (as get_preds walks it):
//   inputs   xb[0] decoded for showing (the DataBlock's decode_batch, or a plain image batch brought
//            into [0, 1] as show_batch does); the raw xb[0] when it is not an image batch
//   preds    [N, C] probabilities (loss_func.activation of the raw predictions)
//   targs    i64 [N] class indices;  decoded  i64 [N] = argmax(preds, 1)
//   losses   [N] loss_func.per_item(raw predictions, targs): one unreduced loss per item
//   vocab    the class names (dls.vocab, else the DataBlock's target vocab, else "0", "1", ...)
// confusion_matrix()[i][j] counts items of actual class i predicted as j. most_confused lists the
// off-diagonal cells >= min_val as (actual, predicted, count), count descending (ties in row-major
// order, as Python's stable sort leaves fastai's); empty cells never (fastai lists them, and the
// zeroed diagonal, for min_val <= 0). top_losses(k) gives the k largest (smallest
// when !largest) losses and their item indices (ties: lower index first). plot_top_losses titles
// each image "{pred}/{actual} / {loss:.2f} / {prob:.2f}" with prob the top probability, as fastai.
// classification_report() is sklearn's text (fastai prints it): precision = tp / predicted,
// recall = tp / actual, f1 = 2pr / (p + r), 0 where a denominator is 0 (sklearn's zero_division),
// support = actual count, then the accuracy, macro avg and support-weighted avg lines, 2 decimals.
//
// plot_confusion_matrix draws fastai's figure: matplotlib's "Blues" heat map scaled from the
// smallest to the largest cell, class names on both axes (predicted along x, written vertically;
// actual along y), each cell's count (or row fraction with norm_dec decimals when normalize)
// written in white on cells above half the maximum and black elsewhere. The PNG is
// ConfusionMatrixLayout(C).width() x height() pixels.
// Differences from fastai: the interpretation is computed once at construction (fastai's newer
// versions re-run get_preds in confusion_matrix); only classification is covered (no segmentation).
// Reference: fastai/interpret.py; sklearn.metrics.classification_report.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <limits>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "strata/data/show.hpp"
#include "strata/io/canvas.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

/// One off-diagonal cell of the confusion matrix.
struct MostConfused {
  std::string actual, predicted;
  int64_t count = 0;
  friend bool operator==(const MostConfused&, const MostConfused&) = default;
};

/// Per-class precision, recall, F1 and support (sklearn's precision_recall_fscore_support).
struct ClassStats {
  std::vector<double> precision, recall, f1;
  std::vector<int64_t> support;
  double accuracy = 0;
};

/// Where things lie in plot_confusion_matrix's figure for C classes.
struct ConfusionMatrixLayout {
  static constexpr int kLeft = 140, kTop = 40, kBottom = 140, kRight = 16;  // label bands, title, margin
  int C = 1;
  int cell() const { return std::clamp(600 / std::max(C, 1), 12, 60); }
  int width() const { return kLeft + C * cell() + kRight; }
  int height() const { return kTop + C * cell() + kBottom; }
  /// Left edge of column j (predicted class j), top of row i (actual class i).
  int x0(int j) const { return kLeft + j * cell(); }
  int y0(int i) const { return kTop + i * cell(); }
};

namespace detail {

/// The text s shrunk (scale down to 1) and then cut with ".." to fit `room` pixels at `scale`.
inline std::pair<std::string, double> fit_text(std::string s, double room, double scale) {
  s = ascii_only(s);
  scale = std::min(scale, room / std::max(1.0, Canvas::text_width(s, 1)));
  if (scale >= 1) return {s, scale};
  while (s.size() > 1 && Canvas::text_width(s + "..", 1) > room) s.pop_back();
  return {s + "..", 1.0};
}

/// Collects what from_learner shows: xb[0] of every validation batch, decoded for display.
struct GatherInputs : Callback {
  std::vector<Tensor> inputs;
  GatherInputs() { run_train = false; }
  std::string name() const override { return "GatherInputs"; }
  void before_validate() override { inputs.clear(); }
  // defined in the class (an out-of-class inline definition would emit the vtable in every TU)
  void after_batch() override {
    if (learn->xb.empty() || !learn->xb[0].defined()) return;
    auto host = [](std::vector<Tensor> ts) {  // decoded and kept on the host (a cuda Learner's batches too)
      for (Tensor& t : ts)
        if (t.defined()) t = strata::to(t.detach(), kCPU);
      return ts;
    };
    const Batch b{host(learn->xb), host(learn->yb)};
    const Tensor& x = b.xb[0];
    const DataLoaders& dls = learn->dls;
    if (dls.block) {  // the block's decodes (back to u8 pixels), when its inputs hold an Image
      for (const Item& it : dls.block->decode_batch(b))
        if (const Image* img = std::get_if<Image>(&it)) {
          inputs.push_back(display_range(img->data));
          return;
        }
    } else if (x.dim() == 4 && (x.size(1) == 1 || x.size(1) == 3)) {  // a plain image batch, as show_batch shows it
      inputs.push_back(display_range(x.detach()));
      return;
    }
    inputs.push_back(x.detach());
  }
};

}  // namespace detail

class ClassificationInterpretation {
 public:
  Tensor inputs;   // [N, ...] decoded for showing (undefined: nothing to show)
  Tensor preds;    // f32 [N, C] probabilities
  Tensor targs;    // i64 [N]
  Tensor decoded;  // i64 [N] predicted classes
  Tensor losses;   // f32 [N] per-item losses
  std::vector<std::string> vocab;

  /// From tensors: inputs [N, ...] (may be undefined), preds [N, C] probabilities, targs [N] class
  /// indices, losses [N], vocab (C names, or empty for "0".."C-1").
  ClassificationInterpretation(Tensor inputs_, const Tensor& preds_, const Tensor& targs_, const Tensor& losses_,
                               std::vector<std::string> vocab_ = {})
      : inputs(std::move(inputs_)), vocab(std::move(vocab_)) {
    const char* op = "ClassificationInterpretation";
    STRATA_CHECK(preds_.defined() && preds_.dim() == 2 && preds_.size(0) > 0 && preds_.size(1) > 0, op,
                 "got preds of shape ", preds_.defined() ? to_string(preds_.shape()) : std::string("(undefined)"),
                 ", expected [N, C] probabilities with N, C > 0");
    STRATA_CHECK(preds_.is_floating_point(), op, "got preds of dtype ", preds_.dtype(), ", expected a floating dtype");
    const int64_t N = preds_.size(0), C = preds_.size(1);
    STRATA_CHECK(targs_.defined() && !targs_.is_floating_point() && targs_.numel() == N, op, "got targs ",
                 targs_.defined() ? "of dtype " + std::string(dtype_name(targs_.dtype())) + " and shape " +
                                        to_string(targs_.shape())
                                  : std::string("undefined"),
                 ", expected ", N, " integer class indices (one per row of preds)");
    STRATA_CHECK(losses_.defined() && losses_.numel() == N, op, "got losses of shape ",
                 losses_.defined() ? to_string(losses_.shape()) : std::string("(undefined)"), ", expected ", N,
                 " per-item losses");
    STRATA_CHECK(!inputs.defined() || (inputs.dim() >= 1 && inputs.size(0) == N), op, "got inputs of shape ",
                 inputs.defined() ? to_string(inputs.shape()) : std::string(), ", expected ", N, " items in dim 0");
    STRATA_CHECK(vocab.empty() || int64_t(vocab.size()) == C, op, "got a vocab of ", vocab.size(), " names for ", C,
                 " classes, expected one name per class (or none)");
    if (vocab.empty())
      for (int64_t c = 0; c < C; ++c) vocab.push_back(std::to_string(c));
    NoGrad ng;
    preds = preds_.detach().to(DType::f32).contiguous();
    targs = targs_.detach().reshape({N}).to(DType::i64).contiguous();
    losses = losses_.detach().reshape({N}).to(DType::f32).contiguous();
    decoded = argmax(preds, 1).to(DType::i64).contiguous();
    const int64_t* t = targs.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i)
      STRATA_CHECK(t[i] >= 0 && t[i] < C, op, "got target ", t[i], " at item ", i, " for ", C,
                   " classes, expected class indices in [0, ", C, ")");
  }

  /// Runs learn.get_preds on dl (default: dls.valid) and keeps inputs, probabilities, targets and
  /// per-item losses (loss_func.per_item on the raw predictions).
  static ClassificationInterpretation from_learner(Learner& learn, DataLoader* dl = nullptr) {
    const char* op = "ClassificationInterpretation::from_learner";
    STRATA_CHECK(learn.loss_func.per_item != nullptr, op, "got loss_func \"", learn.loss_func.name,
                 "\" without per_item, expected a loss that gives one loss per item (e.g. CrossEntropyLossFlat)");
    auto gather = std::make_shared<detail::GatherInputs>();
    struct Attached {
      Learner& learn;
      CallbackPtr cb;
      ~Attached() { learn.remove_cb(cb); }
    } attached{learn.add_cb(gather), gather};
    auto [raw, targs] = learn.get_preds(dl, /*with_decoded=*/false, /*act=*/false);
    STRATA_CHECK(raw.defined() && targs.defined(), op, "got ", raw.defined() ? "no targets" : "no predictions",
                 " from get_preds, expected a loader with targets");
    STRATA_CHECK(raw.dim() == 2 && targs.numel() == raw.size(0), op, "got predictions of shape ", raw.shape(),
                 " and targets of shape ", targs.shape(), ", expected [N, C] and [N] (a classifier)");
    NoGrad ng;
    const Tensor losses = learn.loss_func.per_item(raw, targs);
    const Tensor probs = learn.loss_func.activation ? learn.loss_func.activation(raw) : raw;
    std::vector<std::string> vocab = learn.dls.vocab;
    if (vocab.empty() && learn.dls.block && !learn.dls.block->vocabs.empty()) vocab = learn.dls.block->vocabs.back();
    if (int64_t(vocab.size()) != raw.size(1)) vocab.clear();
    Tensor inputs = gather->inputs.empty() ? Tensor() : cat(gather->inputs, 0);
    if (inputs.defined() && inputs.size(0) != raw.size(0)) inputs = Tensor();
    return ClassificationInterpretation(inputs, probs, targs, losses, std::move(vocab));
  }

  int64_t n_classes() const { return preds.size(1); }
  int64_t size() const { return preds.size(0); }

  /// i64 [C, C]: rows actual, columns predicted.
  Tensor confusion_matrix() const {
    const int64_t C = n_classes(), N = size();
    Tensor cm = zeros({C, C}, {.dtype = DType::i64});
    int64_t* m = cm.data_ptr<int64_t>();
    const int64_t *t = targs.data_ptr<int64_t>(), *d = decoded.data_ptr<int64_t>();
    for (int64_t i = 0; i < N; ++i) ++m[t[i] * C + d[i]];
    return cm;
  }

  /// Off-diagonal cells with count >= max(min_val, 1) as (actual, predicted, count), count descending.
  std::vector<MostConfused> most_confused(int64_t min_val = 1) const {
    const Tensor cm = confusion_matrix();
    const int64_t C = n_classes();
    const int64_t* m = cm.data_ptr<int64_t>();
    std::vector<MostConfused> out;
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j)
        if (i != j && m[i * C + j] >= min_val && m[i * C + j] > 0)
          out.push_back({vocab[size_t(i)], vocab[size_t(j)], m[i * C + j]});
    std::stable_sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.count > b.count; });
    return out;
  }

  /// The k largest (or smallest) losses, [k], and their item indices, i64 [k]; k < 0: all.
  std::pair<Tensor, Tensor> top_losses(int64_t k = -1, bool largest = true) const {
    const int64_t N = size();
    STRATA_CHECK(k <= N, "top_losses", "got k = ", k, " for ", N, " items, expected k <= ", N, " (or k < 0 for all)");
    if (k < 0) k = N;
    const float* l = losses.data_ptr<float>();
    std::vector<int64_t> idx(static_cast<size_t>(N));
    std::iota(idx.begin(), idx.end(), 0);
    // NaN counts as the largest loss, as in torch.topk (and keeps the ordering strict-weak)
    auto key = [&](int64_t i) { return std::isnan(l[i]) ? std::numeric_limits<double>::infinity() : double(l[i]); };
    std::stable_sort(idx.begin(), idx.end(),
                     [&](int64_t a, int64_t b) { return largest ? key(a) > key(b) : key(a) < key(b); });
    idx.resize(size_t(k));
    std::vector<double> v;
    for (int64_t i : idx) v.push_back(l[i]);
    Tensor values = from_vector(v, {k}).to(DType::f32);
    Tensor indices = from_vector(std::vector<double>(idx.begin(), idx.end()), {k}).to(DType::i64);
    return {values, indices};
  }

  /// The k items with the largest losses as a PNG grid, titled "pred/actual / loss / prob".
  void plot_top_losses(const std::string& path, int k = 9, ShowOptions o = ShowOptions{.cell = 224}) const {
    const char* op = "plot_top_losses";
    STRATA_CHECK(inputs.defined(), op, "got an interpretation without inputs, expected inputs to show");
    STRATA_CHECK(k >= 1, op, "got k = ", k, ", expected at least 1");
    const Tensor idx = top_losses(std::min<int64_t>(k, size())).second;
    std::vector<Tuple> cells;
    std::vector<std::string> titles;
    for (int64_t n = 0; n < idx.numel(); ++n) {
      const int64_t i = idx.data_ptr<int64_t>()[n];
      const int64_t p = decoded.data_ptr<int64_t>()[i], a = targs.data_ptr<int64_t>()[i];
      const double prob = preds.data_ptr<float>()[i * n_classes() + p];
      char nums[64];
      std::snprintf(nums, sizeof nums, " / %.2f / %.2f", double(losses.data_ptr<float>()[i]), prob);
      cells.push_back({Image{inputs.select(0, i)}});
      titles.push_back(vocab[size_t(p)] + "/" + vocab[size_t(a)] + nums);
    }
    o.titles = std::move(titles);
    o.max_n = int(cells.size());
    show_tuples(path, cells, o);
  }

  /// Per-class precision, recall, F1, support and the accuracy (see the top of this file).
  ClassStats class_stats() const {
    const Tensor cm = confusion_matrix();
    const int64_t C = n_classes();
    const int64_t* m = cm.data_ptr<int64_t>();
    ClassStats s;
    int64_t correct = 0;
    for (int64_t c = 0; c < C; ++c) {
      int64_t actual = 0, predicted = 0;
      for (int64_t j = 0; j < C; ++j) actual += m[c * C + j], predicted += m[j * C + c];
      const double tp = double(m[c * C + c]);
      correct += m[c * C + c];
      const double p = predicted ? tp / double(predicted) : 0, r = actual ? tp / double(actual) : 0;
      s.precision.push_back(p);
      s.recall.push_back(r);
      s.f1.push_back(p + r > 0 ? 2 * p * r / (p + r) : 0);
      s.support.push_back(actual);
    }
    s.accuracy = double(correct) / double(size());
    return s;
  }

  /// sklearn's classification_report text (2 decimals).
  std::string classification_report() const {
    const ClassStats s = class_stats();
    const size_t C = vocab.size();
    int width = int(std::string("weighted avg").size());
    for (const auto& v : vocab) width = std::max(width, int(v.size()));
    std::string out;
    char buf[512];
    std::snprintf(buf, sizeof buf, "%*s  %9s %9s %9s %9s\n\n", width, "", "precision", "recall", "f1-score", "support");
    out += buf;
    auto row = [&](const std::string& name, double p, double r, double f, int64_t n) {
      std::snprintf(buf, sizeof buf, "%*s  %9.2f %9.2f %9.2f %9lld\n", width, name.c_str(), p, r, f, (long long)n);
      out += buf;
    };
    for (size_t c = 0; c < C; ++c) row(vocab[c], s.precision[c], s.recall[c], s.f1[c], s.support[c]);
    out += "\n";
    const int64_t total = size();
    std::snprintf(buf, sizeof buf, "%*s  %9s %9s %9.2f %9lld\n", width, "accuracy", "", "", s.accuracy, (long long)total);
    out += buf;
    double mp = 0, mr = 0, mf = 0, wp = 0, wr = 0, wf = 0;
    for (size_t c = 0; c < C; ++c) {
      mp += s.precision[c], mr += s.recall[c], mf += s.f1[c];
      const double w = double(s.support[c]) / double(total);
      wp += w * s.precision[c], wr += w * s.recall[c], wf += w * s.f1[c];
    }
    row("macro avg", mp / double(C), mr / double(C), mf / double(C), total);
    row("weighted avg", wp, wr, wf, total);
    return out;
  }
  void print_classification_report() const { std::cout << classification_report() << std::flush; }

  /// fastai's confusion matrix figure as a PNG (see the top of this file).
  void plot_confusion_matrix(const std::string& path, bool normalize = false,
                             const std::string& title = "Confusion matrix", int norm_dec = 2,
                             bool plot_txt = true) const {
    const char* op = "plot_confusion_matrix";
    STRATA_CHECK(norm_dec >= 0 && norm_dec <= 6, op, "got norm_dec = ", norm_dec, ", expected 0..6");
    const int C = int(n_classes());
    const Tensor cm = confusion_matrix();
    std::vector<double> v(size_t(C) * size_t(C));
    for (int i = 0; i < C; ++i) {
      int64_t row = 0;
      for (int j = 0; j < C; ++j) row += cm.data_ptr<int64_t>()[i * C + j];
      for (int j = 0; j < C; ++j) {
        const double n = double(cm.data_ptr<int64_t>()[i * C + j]);
        v[size_t(i * C + j)] = normalize ? (row ? n / double(row) : 0.0) : n;  // numpy would give NaN for 0/0
      }
    }
    const double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    const ConfusionMatrixLayout L{.C = C};
    const int cs = L.cell();
    Canvas cv(L.width(), L.height());
    const Color ink{0, 0, 0}, white{255, 255, 255};
    for (int i = 0; i < C; ++i)
      for (int j = 0; j < C; ++j) {
        const double x = v[size_t(i * C + j)];
        cv.fill_rect(L.x0(j), L.y0(i), L.x0(j) + cs, L.y0(i) + cs, blues(hi > lo ? (x - lo) / (hi - lo) : 0));
        if (!plot_txt) continue;
        char buf[32];
        if (normalize) std::snprintf(buf, sizeof buf, "%.*f", norm_dec, x);
        else std::snprintf(buf, sizeof buf, "%lld", (long long)std::llround(x));
        const auto [s, sc] = detail::fit_text(buf, cs - 4, 1.5);
        cv.text(L.x0(j) + cs / 2.0, L.y0(i) + cs / 2.0, s, x > hi / 2 ? white : ink,
                {.scale = sc, .h = Align::center, .v = Align::center});
      }
    // frame, ticks and class names: predicted along x (vertical text), actual along y
    const int x1 = L.x0(C), y1 = L.y0(C);
    const Point frame[5] = {{double(L.x0(0)), double(L.y0(0))}, {double(x1), double(L.y0(0))},
                            {double(x1), double(y1)}, {double(L.x0(0)), double(y1)}, {double(L.x0(0)), double(L.y0(0))}};
    cv.polyline(frame, ink, 1);
    const double band = ConfusionMatrixLayout::kLeft - 34;  // room for tick labels
    for (int c = 0; c < C; ++c) {
      const double cx = L.x0(c) + cs / 2.0, cy = L.y0(c) + cs / 2.0;
      cv.line(cx, y1, cx, y1 + 4, ink);
      cv.line(L.x0(0) - 4, cy, L.x0(0), cy, ink);
      const auto [s, sc] = detail::fit_text(vocab[size_t(c)], band, 1.5);
      cv.text(L.x0(0) - 7, cy, s, ink, {.scale = sc, .h = Align::end, .v = Align::center});
      cv.text(cx, y1 + 7, s, ink, {.scale = sc, .h = Align::end, .v = Align::center, .vertical = true});
    }
    cv.text(L.x0(0) + C * cs / 2.0, y1 + ConfusionMatrixLayout::kBottom - 14, "Predicted", ink,
            {.scale = 2, .h = Align::center, .v = Align::center});
    cv.text(14, L.y0(0) + C * cs / 2.0, "Actual", ink, {.scale = 2, .h = Align::center, .v = Align::center, .vertical = true});
    const auto [t, tsc] = detail::fit_text(title, L.width() - 8, 2);
    cv.text(L.x0(0) + C * cs / 2.0, ConfusionMatrixLayout::kTop / 2.0, t, ink,
            {.scale = tsc, .h = Align::center, .v = Align::center});
    cv.save(path, op);
  }
};

}  // namespace strata
