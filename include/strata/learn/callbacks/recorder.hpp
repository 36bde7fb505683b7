// Recorder: what a fit did, batch by batch and epoch by epoch (fastai v2's Recorder and
// AvgSmoothLoss in learner.py, CSVLogger in callback/progress.py). One of the Learner's default
// callbacks (order 50); learn.recorder() returns it.
//
// Per training batch that has targets:
//   losses         the raw loss
//   smooth_losses  fastai's AvgSmoothLoss: v_n = beta v_{n-1} + (1 - beta) loss_n, v_0 = 0, reported
//                  debiased as v_n / (1 - beta^n) (beta = 0.98); n counts over the whole fit
//   lrs, moms      opt->hypers().back()["lr"], ["mom"] (the last group's, NaN when it has no "mom")
// Per epoch:
//   epochs         the epoch number
//   values         {train_loss, valid_loss, metrics...}: train_loss is the smoothed loss at the end of
//                  the training phase, valid_loss the item-weighted mean of the validation losses
//                  (fastai's AvgLoss), metrics as learn.metrics say (reset / accumulate / value on the
//                  validation set); NaN for a phase that was cancelled, did not run or had no targets
//   times          seconds the epoch took
//   iters          training batches recorded so far at the epoch's end (where plot_loss puts the
//                  valid loss on its x axis; fastai's iters)
//   metric_names   {"epoch", "train_loss", "valid_loss", metric names..., "time"}
// plot_loss (the smoothed train loss, and the valid loss at each epoch end), plot_sched (lr and mom
// side by side) and to_csv (fastai's CSVLogger columns) write files.
//
// Unlike fastai, validate() / get_preds() / predict() (a "fit" without a training phase) leave the
// Recorder's history as it was: it restarts at the first training phase of a fit, not at before_fit.
//
// Included by learner.hpp's last lines; this header includes learner.hpp first and keeps its body
// behind an include guard, so that it can also be the first header a program includes.
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_CALLBACKS_RECORDER_HPP
#define STRATA_LEARN_CALLBACKS_RECORDER_HPP

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "strata/io/plot.hpp"

namespace strata {

/// fastai's AvgSmoothLoss: a debiased exponential moving average of the training losses.
struct SmoothLoss {
  double beta = 0.98;
  double val = 0;
  int64_t count = 0;
  void reset() {
    val = 0;
    count = 0;
  }
  void accumulate(double loss) {
    ++count;
    val = beta * val + (1 - beta) * loss;  // torch.lerp(loss, val, beta)
  }
  /// NaN before the first loss.
  double value() const {
    return count ? val / (1 - std::pow(beta, double(count))) : std::numeric_limits<double>::quiet_NaN();
  }
};

/// "mm:ss", or "h:mm:ss" from an hour on (fastprogress's format_time).
inline std::string format_time(double seconds) {
  const int64_t t = std::isfinite(seconds) && seconds > 0 ? int64_t(seconds) : 0;
  const int64_t h = t / 3600, m = (t / 60) % 60, s = t % 60;
  char buf[48];
  if (h != 0) std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)h, (long long)m, (long long)s);
  else std::snprintf(buf, sizeof buf, "%02lld:%02lld", (long long)m, (long long)s);
  return buf;
}

class Recorder : public Callback {
 public:
  /// add_time: a "time" column; beta: the smoothing of the training loss.
  explicit Recorder(bool add_time_ = true, double beta = 0.98) : add_time(add_time_) {
    order = 50;
    smooth.beta = beta;
  }
  std::string name() const override { return "Recorder"; }

  bool add_time;
  SmoothLoss smooth;
  // per training batch
  std::vector<double> losses, smooth_losses, lrs, moms;
  // per epoch
  std::vector<int64_t> epochs;
  std::vector<std::vector<double>> values;
  std::vector<double> times;
  std::vector<int64_t> iters;
  std::vector<std::string> metric_names;
  /// Epochs recorded since this Recorder was made (never reset; ProgressCallback watches it).
  int64_t epochs_logged = 0;

  /// The current smoothed training loss (fastai's learn.smooth_loss).
  double smooth_loss() const { return smooth.value(); }

  void before_fit() override {
    metric_names = {"epoch", "train_loss", "valid_loss"};
    for (const Metric& m : learn->metrics) metric_names.push_back(m.name);
    if (add_time) metric_names.push_back("time");
    started_ = false;
  }
  void before_epoch() override {
    start_ = std::chrono::steady_clock::now();
    train_loss_ = nan();
    valid_ran_ = cancel_train_ = cancel_valid_ = false;
  }
  void before_train() override { start_fit(); }
  void after_cancel_train() override { cancel_train_ = true; }
  void after_train() override {
    start_fit();  // a callback before this one may have cancelled training in before_train
    train_loss_ = cancel_train_ ? nan() : smooth.value();
    cancel_train_ = false;
  }
  void before_validate() override {
    if (!started_) return;
    valid_ran_ = true;
    valid_total_ = 0;
    valid_count_ = 0;
    for (Metric& m : learn->metrics) m.reset();
  }
  void after_cancel_validate() override { cancel_valid_ = true; }
  void after_batch() override {
    if (!started_ || learn->yb.empty() || !learn->loss.defined()) return;
    const double l = learn->loss.to(DType::f64).item<double>();
    if (!learn->training) {  // fastai's AvgLoss, and the metrics
      const int64_t bs = find_bs(learn->yb);
      valid_total_ += l * double(bs);
      valid_count_ += bs;
      for (Metric& m : learn->metrics) m.accumulate(*learn);
      return;
    }
    smooth.accumulate(l);
    losses.push_back(l);
    smooth_losses.push_back(smooth.value());
    const Hypers h = learn->opt ? learn->opt->hypers().back() : Hypers{};
    lrs.push_back(h.count("lr") ? h.at("lr") : nan());
    moms.push_back(h.count("mom") ? h.at("mom") : nan());
  }
  void after_epoch() override {
    if (!started_) return;  // validate() / get_preds(): keep the last fit's history
    std::vector<double> row{train_loss_};
    const bool valid_ok = valid_ran_ && !cancel_valid_;
    row.push_back(valid_ok && valid_count_ ? valid_total_ / double(valid_count_) : nan());
    for (const Metric& m : learn->metrics) row.push_back(valid_ok ? m.value() : nan());
    epochs.push_back(learn->epoch);
    values.push_back(std::move(row));
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
    iters.push_back(smooth.count);
    ++epochs_logged;
  }

  /// The smoothed training loss against the step from skip_start on, and (with_valid) the valid
  /// loss at each epoch's last step, written as a PNG to path.
  void plot_loss(const std::string& path, int64_t skip_start = 5, bool with_valid = true) const {
    STRATA_CHECK(skip_start >= 0, "plot_loss", "got skip_start = ", skip_start, ", expected >= 0");
    if (learn && !learn->is_main_process()) return;  // distributed: rank 0 plots
    STRATA_CHECK(!smooth_losses.empty(), "plot_loss", "got a Recorder with no training batches recorded, expected ",
                 "a plot after fit()");
    Series train{.label = "train"};
    for (size_t i = size_t(skip_start); i < smooth_losses.size(); ++i) {
      train.x.push_back(double(i));
      train.y.push_back(smooth_losses[i]);
    }
    std::vector<Series> series{train};
    if (with_valid) {
      Series valid{.label = "valid"};
      for (size_t e = 0; e < values.size(); ++e)
        if (iters[e] >= skip_start) {
          valid.x.push_back(double(iters[e]));
          valid.y.push_back(values[e][1]);
        }
      series.push_back(valid);
    }
    plot_lines(path, series, {.title = "learning curve", .xlabel = "steps", .ylabel = "loss"});
  }

  /// The lr and (when the optimizer has one) the momentum of each training step, side by side.
  void plot_sched(const std::string& path) const {
    STRATA_CHECK(!lrs.empty(), "plot_sched", "got a Recorder with no training batches recorded, expected a plot ",
                 "after fit()");
    if (learn && !learn->is_main_process()) return;
    std::vector<std::pair<std::vector<Series>, PlotOptions>> panels;
    panels.push_back({{Series{.y = lrs}}, {.xlabel = "steps", .ylabel = "lr", .width = 600, .height = 400}});
    bool has_mom = false;
    for (double m : moms) has_mom = has_mom || std::isfinite(m);
    if (has_mom)
      panels.push_back({{Series{.y = moms}}, {.xlabel = "steps", .ylabel = "mom", .width = 600, .height = 400}});
    plot_grid(path, panels, 2);
  }

  /// fastai's CSVLogger text: csv_header(), then csv_row(e) for each recorded epoch, each line ended by "\n".
  std::string csv() const {
    std::string out = csv_header() + "\n";
    for (size_t e = 0; e < values.size(); ++e) out += csv_row(e) + "\n";
    return out;
  }
  /// The CSV header line (no "\n"): metric_names joined by ",".
  std::string csv_header() const {
    std::string out;
    for (size_t i = 0; i < metric_names.size(); ++i) out += (i ? "," : "") + metric_names[i];
    return out;
  }
  /// The CSV line (no "\n") of the epoch-th recorded row (0 <= epoch < values.size()): the epoch number,
  /// the values in their shortest exact form (NaN as "nan"), and the time as mm:ss when add_time.
  std::string csv_row(size_t epoch) const {
    STRATA_CHECK(epoch < values.size(), "csv_row", "got row ", epoch, ", expected < ", values.size(),
                 " (the epochs recorded)");
    std::string out = std::to_string(epochs[epoch]);
    for (double v : values[epoch]) out += "," + shortest(v);
    if (add_time) out += "," + format_time(times[epoch]);
    return out;
  }
  /// Writes csv() to path (atomically).
  void to_csv(const std::string& path) const {
    if (learn && !learn->is_main_process()) return;
    const std::string text = csv();
    detail::write_file_atomic(path, std::vector<unsigned char>(text.begin(), text.end()), "to_csv");
  }

  /// The shortest text that reads back as v ("0.1", "1e-05", "nan").
  static std::string shortest(double v) {
    if (std::isnan(v)) return "nan";
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
  }

 private:
  static double nan() { return std::numeric_limits<double>::quiet_NaN(); }
  /// The first training phase of a fit restarts the history.
  void start_fit() {
    if (started_) return;
    started_ = true;
    losses.clear();
    smooth_losses.clear();
    lrs.clear();
    moms.clear();
    epochs.clear();
    values.clear();
    times.clear();
    iters.clear();
    smooth.reset();
  }

  bool started_ = false, cancel_train_ = false, cancel_valid_ = false, valid_ran_ = false;
  double train_loss_ = 0, valid_total_ = 0;
  int64_t valid_count_ = 0;
  std::chrono::steady_clock::time_point start_{};
};

}  // namespace strata

#endif  // STRATA_LEARN_CALLBACKS_RECORDER_HPP
