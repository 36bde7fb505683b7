// MixUp and CutMix: train on blends of two images and of their losses (fastai v2, callback/mixup.py;
// Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"; Yun et al. 2019, "CutMix").
//
//   learn.fit_one_cycle(5, 1e-3, {}, {}, {}, {std::make_shared<MixUp>()});    // alpha 0.4
//   learn.fit_one_cycle(5, 1e-3, {}, {}, {}, {std::make_shared<CutMix>()});   // alpha 1.0
//
// MixHandler (their base; training only, run_valid = false):
//   before_train: learn.loss_func = a mixing loss over the original one (its activation, decodes and
//     per_item are kept) that, for this handler's batch, computes
//         loss = mean(lerp(l(pred, y1), l(pred, y), lam)),  lerp(a, b, w) = a + w (b - a),
//     with l = the original's per_item (one loss per item) and lam broadcast per item;
//   after_train / after_cancel_train / after_cancel_epoch / after_cancel_fit / after_fit: the original
//     loss_func is put back, so validation, get_preds and later fits see the plain loss.
//   Float targets (soft labels, regression) are mixed directly instead, yb = lerp(yb1, yb, lam), and
//   the loss stays plain for that batch (fastai's non-y_int path).
// MixUp(alpha = 0.4), before_batch: lam_i ~ Beta(alpha, alpha), lam_i = max(lam_i, 1 - lam_i) per item,
//   shuffle = a random permutation of the batch, xb = lerp(xb[shuffle], xb, lam) for every input (lam
//   viewed [B, 1, 1, ...]), yb1 = yb[shuffle].
// CutMix(alpha = 1.0), before_batch: one lam ~ Beta(alpha, alpha), a permutation, fastai's rand_bbox:
//   cut = sqrt(1 - lam), cut_w = round(W cut), cut_h = round(H cut), a uniform centre (cx, cy), box =
//   [cx - cut_w / 2, cx + cut_w / 2) x [cy - cut_h / 2, cy + cut_h / 2) clipped to the image; xb[0][..., box]
//   = xb[0][shuffle][..., box] (on a copy: the loader's batch is not written), then
//   lam = 1 - box area / (H W), so lam is the share of each image that is still its own.
// Randomness: TfmRng(seed, n): n counts the training batches this callback has mixed, over all its
// fits (so fine_tune's two fits, or fit(1) in a loop, draw new values); the same seed and the same
// batch count draw the same lam / shuffle / box.
// Members lam, shuffle, yb1 (and CutMix's box) hold the last batch's draws, for tests and plots.
//
// Where we differ from fastai: the original loss is also put back at after_fit, after_cancel_epoch,
// at the next before_fit and when a fit ends by an exception (after_exception). One mixing callback
// at a time: a second one replaces the first's loss.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <numeric>
#include <vector>

#include "strata/data/transform.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

namespace detail {
/// What a MixHandler shares with the mixing loss it puts in learn.loss_func.
struct MixState {
  nn::Loss orig;        // the loss it replaced
  bool active = false;  // between its handler's before_train and after_train
  Tensor lam, y, y1;    // this batch: lam [B] or [], the targets the Learner will pass, y[shuffle]
};
/// The mixing loss: mean(lerp(orig.per_item(pred, y1), orig.per_item(pred, y), lam)) for the batch set
/// up by the handler, orig(pred, y) for anything else.
struct MixLossFn {
  std::shared_ptr<MixState> s;
  Tensor operator()(const Tensor& pred, const Tensor& y) const {
    const MixState& st = *s;
    if (!st.active || !st.lam.defined() || !st.y.defined() || !y.is_same(st.y)) return st.orig(pred, y);
    Tensor l1 = st.orig.per_item(pred, st.y1), l0 = st.orig.per_item(pred, y);
    Tensor w = st.lam.to(l0.dtype());
    if (w.dim() == 1) {  // one lam per item; per-item losses may be [B * d...] (segmentation): view [B, d]
      const int64_t B = w.size(0);
      STRATA_CHECK(l0.dim() >= 1 && l0.numel() % B == 0 && l0.size(0) % B == 0, "MixUp", "got per-item losses of shape ",
                   l0.shape(), " from \"", st.orig.name, "\", expected a multiple of the batch size ", B, " leading");
      l0 = reshape(l0, {B, -1});
      l1 = reshape(l1, {B, -1});
      w = reshape(w, {B, 1});
    }
    return mean(l1 + w * (l0 - l1));
  }
};
}  // namespace detail

/// The base of MixUp and CutMix: swaps in the mixing loss for the training phase (see the top of this file).
class MixHandler : public Callback {
 public:
  double alpha;
  uint64_t seed;
  /// The last training batch's draws: lam (MixUp [B], CutMix 0-dim, the inputs' dtype), shuffle (int64 [B])
  /// and the shuffled targets yb1 = yb[shuffle].
  Tensor lam, shuffle;
  std::vector<Tensor> yb1;

  explicit MixHandler(double alpha_ = 0.5, uint64_t seed_ = 0)
      : alpha(alpha_), seed(seed_), state_(std::make_shared<detail::MixState>()) {
    STRATA_CHECK(alpha > 0, "MixHandler", "got alpha = ", alpha, ", expected alpha > 0 (Beta(alpha, alpha))");
    run_valid = false;
  }
  ~MixHandler() override { state_->active = false; }  // a mixing loss left behind turns plain
  MixHandler(const MixHandler&) = delete;
  MixHandler& operator=(const MixHandler&) = delete;

  void before_fit() override { restore(); }  // one left by an exception in an earlier fit
  void before_train() override {
    nn::Loss& lf = learn->loss_func;
    if (auto* f = lf.fn.target<detail::MixLossFn>()) {
      if (f->s == state_) {  // ours, never put back (an exception ended the last fit)
        state_->active = true;
        return;
      }
      lf = f->s->orig;  // another handler's, left behind: mix the loss it replaced
    }
    STRATA_CHECK(lf.per_item != nullptr, name(), "got loss_func \"", lf.name,
                 "\" without per_item, expected a loss that can give one loss per item (e.g. CrossEntropyLossFlat)");
    state_->orig = lf;
    state_->active = true;
    nn::Loss mixing = lf;
    mixing.name = name() + "(" + lf.name + ")";
    mixing.fn = detail::MixLossFn{state_};
    lf = std::move(mixing);
  }
  void after_train() override { restore(); }
  void after_cancel_train() override { restore(); }
  void after_cancel_epoch() override { restore(); }
  void after_cancel_fit() override { restore(); }
  void after_fit() override { restore(); }
  void after_exception() override { restore(); }

 protected:
  /// The next training batch's stream.
  TfmRng batch_rng() { return TfmRng(seed, n_batches_++); }
  uint64_t n_batches_ = 0;

  /// A uniformly random permutation of 0..n-1 (Fisher-Yates).
  static std::vector<int64_t> randperm(int64_t n, TfmRng& rng) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    std::iota(p.begin(), p.end(), int64_t(0));
    for (int64_t i = n - 1; i > 0; --i) std::swap(p[size_t(i)], p[size_t(rng.randint(0, i + 1))]);
    return p;
  }

  /// yb1 = yb[shuffle]; integer targets: the mixing loss gets (lam, y, y1) for this batch; float
  /// targets: yb = lerp(yb1, yb, lam) and the loss stays plain.
  void mix_targets() {
    NoGrad ng;
    yb1.clear();
    for (const Tensor& y : learn->yb) yb1.push_back(index_select(y, 0, shuffle));
    state_->lam = state_->y = state_->y1 = Tensor();
    if (learn->yb.empty()) return;
    if (learn->yb[0].is_floating_point()) {
      for (size_t k = 0; k < learn->yb.size(); ++k) learn->yb[k] = lerp_items(yb1[k], learn->yb[k], lam);
      return;
    }
    state_->lam = lam;
    state_->y = learn->yb[0];
    state_->y1 = yb1[0];
  }

  /// a + lam (b - a) with lam [B] viewed [B, 1, ...] against a [B, ...] (or lam 0-dim).
  static Tensor lerp_items(const Tensor& a, const Tensor& b, const Tensor& lam) {
    Tensor w = lam.to(a.dtype());
    if (w.dim() == 1) {
      Shape s(size_t(a.dim()), 1);
      s[0] = w.size(0);
      w = reshape(w, s);
    }
    return a + w * (b - a);
  }

  /// Checks the batch holds a floating input of at least min_dim dims; returns B.
  int64_t check_batch(int min_dim) const {
    STRATA_CHECK(!learn->xb.empty() && learn->xb[0].dim() >= min_dim && learn->xb[0].is_floating_point(), name(),
                 "got an input batch of shape ", learn->xb.empty() ? Shape{} : learn->xb[0].shape(),
                 ", expected a floating batch with at least ", min_dim, " dims");
    const int64_t B = learn->xb[0].size(0);
    for (const Tensor& y : learn->yb)
      STRATA_CHECK(y.dim() >= 1 && y.size(0) == B, name(), "got targets of shape ", y.shape(), " for a batch of ", B,
                   ", expected one target per item");
    return B;
  }

 private:
  void restore() {
    if (learn)
      if (auto* f = learn->loss_func.fn.target<detail::MixLossFn>(); f && f->s == state_)
        learn->loss_func = state_->orig;
    state_->active = false;
    state_->lam = state_->y = state_->y1 = Tensor();
  }

  std::shared_ptr<detail::MixState> state_;
};

/// MixUp: each item blended with another of the batch, lam ~ Beta(alpha, alpha) folded to >= 0.5.
class MixUp : public MixHandler {
 public:
  explicit MixUp(double alpha_ = 0.4, uint64_t seed_ = 0) : MixHandler(alpha_, seed_) {}
  std::string name() const override { return "MixUp"; }

  void before_batch() override {
    const int64_t B = check_batch(1);
    TfmRng rng = batch_rng();
    std::vector<double> l(static_cast<size_t>(B));
    for (double& v : l) {
      const double d = rng.beta(alpha, alpha);
      v = std::max(d, 1.0 - d);
    }
    shuffle = from_vector(randperm(B, rng), {B});
    lam = from_vector(l, {B}, {.dtype = learn->xb[0].dtype()});
    NoGrad ng;
    for (Tensor& x : learn->xb) {
      STRATA_CHECK(x.is_floating_point() && x.dim() >= 1 && x.size(0) == B, name(), "got an input of shape ",
                   x.shape(), " and dtype ", x.dtype(), ", expected floating inputs of batch size ", B);
      x = lerp_items(index_select(x, 0, shuffle), x, lam);
    }
    mix_targets();
  }
};

/// CutMix: a box of each image replaced by the same box of another image of the batch.
class CutMix : public MixHandler {
 public:
  /// The last box, fastai's (x1, y1, x2, y2): columns [x1, x2), rows [y1, y2).
  std::array<int64_t, 4> box{};

  explicit CutMix(double alpha_ = 1.0, uint64_t seed_ = 0) : MixHandler(alpha_, seed_) {}
  std::string name() const override { return "CutMix"; }

  /// fastai's rand_bbox: a box of about (1 - lam) H W pixels at a uniform centre, clipped to W x H.
  static std::array<int64_t, 4> rand_bbox(int64_t W, int64_t H, double lam, TfmRng& rng) {
    const double cut_rat = std::sqrt(1.0 - lam);
    const int64_t cut_w = int64_t(std::nearbyint(double(W) * cut_rat)), cut_h = int64_t(std::nearbyint(double(H) * cut_rat));
    const int64_t cx = rng.randint(0, W), cy = rng.randint(0, H);
    return {std::clamp<int64_t>(cx - cut_w / 2, 0, W), std::clamp<int64_t>(cy - cut_h / 2, 0, H),
            std::clamp<int64_t>(cx + cut_w / 2, 0, W), std::clamp<int64_t>(cy + cut_h / 2, 0, H)};
  }

  void before_batch() override {
    const int64_t B = check_batch(3);
    Tensor& x = learn->xb[0];
    const int64_t hd = x.dim() - 2, wd = x.dim() - 1, H = x.size(hd), W = x.size(wd);
    TfmRng rng = batch_rng();
    const double lam0 = rng.beta(alpha, alpha);
    shuffle = from_vector(randperm(B, rng), {B});
    box = rand_bbox(W, H, lam0, rng);
    const auto [x1, y1, x2, y2] = box;
    NoGrad ng;
    Tensor out = clone(x);
    if (x2 > x1 && y2 > y1) {
      Tensor patch = index_select(x, 0, shuffle).slice(hd, y1, y2).slice(wd, x1, x2);
      out.slice(hd, y1, y2).slice(wd, x1, x2).copy_(patch);
    }
    x = out;
    lam = full({}, 1.0 - double((x2 - x1) * (y2 - y1)) / double(W * H), {.dtype = x.dtype()});
    mix_targets();
  }
};

}  // namespace strata
