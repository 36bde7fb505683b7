// LRFinder: the learning-rate range test (fastai v2's LRFinder, valley and Learner.lr_find in
// callback/schedule.py; Smith 2015, "Cyclical Learning Rates for Training Neural Networks").
//
// learn.lr_find(start_lr, end_lr, num_it, stop_div, plot_path) trains from the current weights with
//   lr_k = start_lr (end_lr / start_lr)^(k / num_it)   at training batch k = 0, 1, ...
// (every parameter group), num_it / len(train) + 1 epochs at most and no validation, and stops with
// CancelFitException after num_it batches, or (stop_div) as soon as the smoothed loss exceeds 4 x
// the best smoothed loss so far. The model's and the optimizer's state are kept in memory before the
// run and put back after it (also when it throws), so the weights end as they began.
// The suggestion is fastai's `valley` on the smoothed losses of batches [num_it / 10, n - 5) (cut at
// the first NaN): the longest run of decreasing losses (longest decreasing subsequence ending at
// each point, lds), from max_start = max_end - lds[max_end] to max_end; s = (max_end - max_start) / 3;
// idx = max_start + int(s) + int(s / 2) (a Python index: -1 is the last point).
// plot_path (empty: no plot) gets loss against lr on a log x axis, the last 5 batches left out, the
// suggestion marked (fastai's plot_lr_find).
//
// Included by learner.hpp's last lines; see recorder.hpp for the include guard.
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_CALLBACKS_LR_FINDER_HPP
#define STRATA_LEARN_CALLBACKS_LR_FINDER_HPP

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "strata/io/plot.hpp"
#include "strata/learn/callbacks/param_scheduler.hpp"
#include "strata/learn/callbacks/recorder.hpp"

namespace strata {

/// What lr_find found.
struct LRFindResult {
  double valley = std::numeric_limits<double>::quiet_NaN();       // the suggested lr (NaN: too few batches)
  double valley_loss = std::numeric_limits<double>::quiet_NaN();  // the smoothed loss there
  std::vector<double> lrs, losses;  // every batch of the run: its lr (last group) and smoothed loss
};

/// fastai's valley: the index into losses of the suggestion (losses not empty).
inline size_t valley_index(const std::vector<double>& losses) {
  STRATA_CHECK(!losses.empty(), "valley", "got no losses, expected at least one");
  const int64_t n = int64_t(losses.size());
  std::vector<int64_t> lds(size_t(n), 1);  // longest decreasing subsequence ending at i
  auto L = [&](int64_t i) -> int64_t& { return lds[size_t(i)]; };
  int64_t max_start = 0, max_end = 0;
  for (int64_t i = 1; i < n; ++i)
    for (int64_t j = 0; j < i; ++j) {
      if (losses[size_t(i)] < losses[size_t(j)] && L(i) < L(j) + 1) L(i) = L(j) + 1;
      if (L(max_end) < L(i)) {
        max_end = i;
        max_start = max_end - L(max_end);
      }
    }
  const double sections = double(max_end - max_start) / 3;
  int64_t idx = max_start + int64_t(sections) + int64_t(sections / 2);
  if (idx < 0) idx += n;  // Python's lrs[-1]
  return size_t(idx);
}

class LRFinder : public ParamScheduler {
 public:
  LRFinder(double start_lr = 1e-7, double end_lr = 10, int num_it_ = 100, bool stop_div_ = true)
      : ParamScheduler(std::map<std::string, Schedule>{{"lr", sched_exp(start_lr, end_lr)}}),
        num_it(std::max(num_it_, 6)),  // as fastai
        stop_div(stop_div_) {}
  std::string name() const override { return "LRFinder"; }

  int num_it;
  bool stop_div;
  double best_loss = std::numeric_limits<double>::infinity();
  SmoothLoss smooth;                // the same smoothing as the Recorder's
  std::vector<double> lrs, losses;  // per training batch: lr (last group), smoothed loss

  void before_fit() override {
    ParamScheduler::before_fit();
    save(*learn);
    best_loss = std::numeric_limits<double>::infinity();
    smooth.reset();
    lrs.clear();
    losses.clear();
  }
  void before_batch() override { update_val(double(learn->train_iter) / double(num_it)); }
  void after_batch() override {
    ParamScheduler::after_batch();
    if (learn->loss.defined() && !learn->yb.empty()) {
      smooth.accumulate(learn->loss.to(DType::f64).item<double>());
      const double s = smooth.value();
      lrs.push_back(learn->opt->hypers().back().at("lr"));
      losses.push_back(s);
      if (s < best_loss) best_loss = s;
      if (s > 4 * best_loss && stop_div) throw CancelFitException();
    }
    if (learn->train_iter >= num_it) throw CancelFitException();
  }
  void before_validate() override { throw CancelValidException(); }
  void after_fit() override {
    learn->opt->zero_grad();
    restore(*learn);
  }

  /// Keeps copies of the model's and the optimizer's state (fastai saves them to '_tmp').
  void save(Learner& l) {
    NoGrad ng;
    model_state_.clear();
    for (auto& [k, t] : l.model->state_dict()) model_state_.emplace_back(k, t.detach().clone());
    opt_state_ = l.opt ? l.opt->state_dict() : std::map<std::string, Tensor>{};
    saved_ = true;
  }
  /// Puts the saved state back (once).
  void restore(Learner& l) {
    if (!saved_) return;
    saved_ = false;
    l.model->load_state_dict(model_state_);
    if (l.opt && !opt_state_.empty()) l.opt->load_state_dict(opt_state_);
    model_state_.clear();
    opt_state_.clear();
  }

 private:
  bool saved_ = false;
  nn::NamedTensors model_state_;
  std::map<std::string, Tensor> opt_state_;
};

inline LRFindResult Learner::lr_find(double start_lr, double end_lr, int num_it, bool stop_div, std::string plot_path) {
  STRATA_CHECK(start_lr > 0 && end_lr > 0 && std::isfinite(start_lr) && std::isfinite(end_lr), "lr_find",
               "got start_lr = ", start_lr, " and end_lr = ", end_lr, ", expected finite lrs > 0");
  STRATA_CHECK(num_it >= 1, "lr_find", "got num_it = ", num_it, ", expected num_it >= 1");
  const int64_t nb = dls.train.size();
  STRATA_CHECK(nb > 0, "lr_find", "got a training loader with no batches, expected at least one");
  auto cb = std::make_shared<LRFinder>(start_lr, end_lr, num_it, stop_div);
  {
    struct Quiet {  // fastai's no_logging
      bool& flag;
      bool old;
      ~Quiet() { flag = old; }
    } quiet{logging, logging};
    logging = false;
    try {
      fit(int(num_it / nb + 1), {}, {}, {cb});
    } catch (...) {
      cb->restore(*this);
      throw;
    }
    cb->restore(*this);  // no-op unless a callback's after_fit stopped before the LRFinder's
  }
  LRFindResult r{.lrs = cb->lrs, .losses = cb->losses};
  // fastai: lrs[num_it // 10 : -5], cut at the first NaN loss
  const size_t n = r.losses.size(), lo = size_t(num_it / 10), hi = n > 5 ? n - 5 : 0;
  std::vector<double> lrs, losses;
  for (size_t i = lo; i < hi && !std::isnan(r.losses[i]); ++i) {
    lrs.push_back(r.lrs[i]);
    losses.push_back(r.losses[i]);
  }
  if (!losses.empty()) {
    const size_t idx = valley_index(losses);
    r.valley = lrs[idx];
    r.valley_loss = losses[idx];
  }
  if (!plot_path.empty() && is_main_process()) {
    Series s;
    for (size_t i = 0; i < hi; ++i) {
      s.x.push_back(r.lrs[i]);
      s.y.push_back(r.losses[i]);
    }
    PlotOptions o{.xlabel = "Learning Rate", .ylabel = "Loss", .log_x = true};
    if (!losses.empty()) o.markers.push_back({r.valley, r.valley_loss});
    plot_lines(plot_path, {s}, o);
  }
  return r;
}

}  // namespace strata

#endif  // STRATA_LEARN_CALLBACKS_LR_FINDER_HPP
