// TimeToAccuracy: the DAWNBench numbers of a fit (Coleman et al., "DAWNBench: An End-to-End Deep
// Learning Benchmark and Competition", 2017): wall time of the whole fit, the wall time at the end of
// the first epoch whose validation metric reaches a target, and training throughput (items per
// second spent in the training phases, validation excluded).
//
//   auto tta = std::make_shared<TimeToAccuracy>(0.925);   // metric "accuracy" by default
//   learn.add_cb(tta); learn.fit_one_cycle(5, 1e-2);
//   std::cout << tta->summary() << "\n";
//
// It reads the metric from the Recorder's row for the epoch, so it runs after it (order 55).
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_CALLBACKS_TIME_TO_ACCURACY_HPP
#define STRATA_LEARN_CALLBACKS_TIME_TO_ACCURACY_HPP

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace strata {

class TimeToAccuracy : public Callback {
 public:
  double target;
  std::string metric;
  // results, valid after the fit
  double wall_s = 0, train_s = 0;                                      // whole fit, training phases only
  double time_to_target_s = std::numeric_limits<double>::quiet_NaN();  // NaN: never reached
  int epoch_reached = -1;                                              // 1-based; -1: never reached
  double final_value = std::numeric_limits<double>::quiet_NaN(), best_value = final_value;
  int64_t train_items = 0;

  explicit TimeToAccuracy(double target_, std::string metric_ = "accuracy")
      : target(target_), metric(std::move(metric_)) {
    order = 55;
  }
  std::string name() const override { return "TimeToAccuracy"; }

  double items_per_s() const { return train_s > 0 ? double(train_items) / train_s : 0.0; }
  bool reached() const { return epoch_reached > 0; }

  /// One line: "accuracy 0.9312 | target 0.925 reached at epoch 4 after 312.4 s | wall 380.2 s | 1234 items/s".
  std::string summary() const {
    char buf[320];
    char reached_txt[96];
    if (reached())
      std::snprintf(reached_txt, sizeof reached_txt, "reached at epoch %d after %.1f s", epoch_reached,
                    time_to_target_s);
    else
      std::snprintf(reached_txt, sizeof reached_txt, "not reached");
    std::snprintf(buf, sizeof buf, "%s %.4f | target %g %s | wall %.1f s | training %.0f items/s", metric.c_str(),
                  final_value, target, reached_txt, wall_s, items_per_s());
    return buf;
  }

  // validate(), get_preds() and predict() send before_fit/after_fit too (as fastai does): the numbers
  // reset only when a fit really trains, so they survive a validate() after the fit.
  void before_fit() override {
    fit_start_ = Clock::now();
    trained_ = false;
  }
  void before_train() override {
    if (!trained_) start_fit();
    train_start_ = Clock::now();
  }
  void after_batch() override {
    if (learn->training && !learn->xb.empty()) train_items += learn->xb[0].size(0);
  }
  void after_train() override { train_s += seconds_since(train_start_); }
  void after_epoch() override {
    if (!trained_) return;
    const auto& values = learn->recorder().values;
    if (values.empty() || int(values.back().size()) <= column_) return;
    const double v = values.back()[column_];
    if (std::isnan(v)) return;
    final_value = v;
    if (std::isnan(best_value) || v > best_value) best_value = v;
    if (!reached() && v >= target) {
      epoch_reached = learn->epoch + 1;
      time_to_target_s = seconds_since(fit_start_);
    }
  }
  void after_fit() override {
    if (trained_) wall_s = seconds_since(fit_start_);
  }

 private:
  using Clock = std::chrono::steady_clock;
  void start_fit() {
    trained_ = true;
    wall_s = train_s = 0;
    time_to_target_s = std::numeric_limits<double>::quiet_NaN();
    epoch_reached = -1;
    final_value = best_value = std::numeric_limits<double>::quiet_NaN();
    train_items = 0;
    column_ = -1;
    const auto& names = learn->recorder().metric_names;  // "epoch", "train_loss", "valid_loss", metrics..., "time"
    for (size_t i = 1; i < names.size(); ++i)
      if (names[i] == metric) column_ = int(i) - 1;  // values[] has no "epoch" column
    STRATA_CHECK(column_ >= 0, "TimeToAccuracy", "got metric \"", metric,
                 "\", expected one of the Learner's metrics (give it in LearnerOptions::metrics)");
  }
  static double seconds_since(Clock::time_point t) {
    return std::chrono::duration<double>(Clock::now() - t).count();
  }
  Clock::time_point fit_start_, train_start_;
  bool trained_ = false;
  int column_ = -1;
};

}  // namespace strata

#endif  // STRATA_LEARN_CALLBACKS_TIME_TO_ACCURACY_HPP
