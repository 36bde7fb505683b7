// Trackers: callbacks that watch one value of the Recorder's per-epoch row and act on it (fastai v2,
// callback/tracker.py): TrackerCallback (the best value so far), EarlyStoppingCallback (stop the fit
// after `patience` epochs without improvement), SaveModelCallback (save the best model, load it back
// at the end) and ReduceLROnPlateau (divide the lr after `patience` epochs without improvement).
//
//   learn.fit(20, 1e-3, {}, {std::make_shared<EarlyStoppingCallback>("accuracy", std::nullopt, 0.01, 3),
//                            std::make_shared<SaveModelCallback>(SaveModelOptions{.monitor = "accuracy"})});
//
// The monitored value is learn.recorder().values.back()[i] at after_epoch, where i is the monitor's
// position in recorder().metric_names without its "epoch" column (the Recorder, order 50, has written
// the row). comp defaults to less when the name contains "loss" or "error", else greater. A value v is
// a new best when comp(v - min_delta, best), min_delta negated for less (fastai: an improvement must
// beat the best by at least |min_delta|). best starts at +inf (less) or -inf (greater) at every fit
// when reset_on_fit (else only at the first). A NaN value (a cancelled validation) never improves.
// Orders as fastai's: TrackerCallback 60, SaveModel 61, ReduceLROnPlateau 62, EarlyStopping 63, so a
// best model is saved before an early stop.
//
// They stay off (run = false) for a "fit" that is not training: validate(), get_preds(), predict()
// and lr_find() (fastai's hasattr(self, "lr_finder"/"gather_preds") test; here: the Learner's logging
// is off, as validate / get_preds / predict set it, or an LRFinder is attached). A user who turns
// learn.logging off for a real fit turns these callbacks off with it.
//
// ReduceLROnPlateau sets every param group's lr directly; a ParamScheduler (fit_one_cycle,
// fit_flat_cos) overwrites the lr at every batch, so, as in fastai, it is meant for plain fit().
#pragma once

#include "strata/learn/learner.hpp"
#include "strata/learn/callbacks/lr_finder.hpp"
#include "strata/learn/callbacks/recorder.hpp"

#include <algorithm>
#include <cmath>
#include <concepts>
#include <iostream>
#include <limits>
#include <optional>
#include <string>
#include <vector>

namespace strata {

/// How a monitored value improves: less (losses, error rates) or greater (accuracy, ...).
enum class Comp { less, greater };

namespace detail {
/// Whether the current "fit" is validate() / get_preds() / predict() / lr_find() rather than training.
// validate / get_preds / predict turn the Learner's logging off (validation_context); lr_find attaches an LRFinder.
inline bool is_non_training_fit(const Learner& learn) {
  return !learn.logging || learn.get_cb<LRFinder>() != nullptr;
}
}  // namespace detail

/// The options every tracker shares (fastai's TrackerCallback arguments).
struct TrackerOptions {
  std::string monitor = "valid_loss";
  std::optional<Comp> comp = {};  // default: less when monitor names a loss or an error, else greater
  double min_delta = 0;
  bool reset_on_fit = true;
};

/// Keeps the best value of `monitor` so far (fastai's TrackerCallback).
class TrackerCallback : public Callback {
 public:
  std::string monitor;
  Comp comp;
  double min_delta;  // signed as fastai: negative for Comp::less
  bool reset_on_fit;
  double best = std::numeric_limits<double>::quiet_NaN();  // NaN until the first fit
  bool new_best = false;
  double last_value = std::numeric_limits<double>::quiet_NaN();  // the value read at the last after_epoch

  explicit TrackerCallback(TrackerOptions o = {})
      : monitor(std::move(o.monitor)),
        comp(o.comp ? *o.comp : default_comp(monitor)),
        min_delta(comp == Comp::less ? -o.min_delta : o.min_delta),
        reset_on_fit(o.reset_on_fit) {
    order = 60;
  }
  std::string name() const override { return "TrackerCallback"; }

  /// less when name contains "loss" or "error", else greater (fastai's default comp).
  static Comp default_comp(const std::string& name) {
    return name.find("loss") != std::string::npos || name.find("error") != std::string::npos ? Comp::less
                                                                                               : Comp::greater;
  }
  /// Whether v is better than b by more than min_delta.
  bool improves(double v, double b) const {
    return comp == Comp::less ? v - min_delta < b : v - min_delta > b;
  }

  void before_fit() override {
    run = !detail::is_non_training_fit(*learn);
    if (!run) return;
    if (reset_on_fit || std::isnan(best))
      best = comp == Comp::less ? std::numeric_limits<double>::infinity() : -std::numeric_limits<double>::infinity();
    // the Recorder's values hold metric_names without "epoch" (first) and "time" (last, when add_time)
    const Recorder& rec = learn->recorder();
    std::vector<std::string> names(rec.metric_names.begin() + (rec.metric_names.empty() ? 0 : 1),
                                   rec.metric_names.end());
    if (rec.add_time && !names.empty() && names.back() == "time") names.pop_back();
    auto it = std::find(names.begin(), names.end(), monitor);
    if (it == names.end()) {
      std::string avail;
      for (const std::string& n : names) avail += (avail.empty() ? "" : ", ") + n;
      detail::fail(name(), "got monitor \"", monitor, "\", which the Recorder does not record; expected one of: ",
                   avail);
    }
    idx_ = size_t(it - names.begin());
  }
  void after_epoch() override {
    const Recorder& rec = learn->recorder();
    STRATA_CHECK(!rec.values.empty() && idx_ < rec.values.back().size(), name(), "got no Recorder row with column ",
                 idx_, " (\"", monitor, "\") at the end of epoch ", learn->epoch,
                 ", expected the Recorder (order 50) to run before this callback (order ", order, ")");
    last_value = rec.values.back()[idx_];
    new_best = !std::isnan(last_value) && improves(last_value, best);
    if (new_best) best = last_value;
  }

 protected:
  size_t idx_ = 0;
};

/// EarlyStoppingCallback's options.
struct EarlyStoppingOptions {
  std::string monitor = "valid_loss";
  std::optional<Comp> comp = {};
  double min_delta = 0;
  int patience = 1;
  bool reset_on_fit = true;
};

/// Stops the fit (CancelFitException) after `patience` epochs without improvement (fastai's EarlyStoppingCallback).
class EarlyStoppingCallback : public TrackerCallback {
 public:
  int patience;
  int wait = 0;  // epochs since the last improvement

  explicit EarlyStoppingCallback(EarlyStoppingOptions o = {})
      : TrackerCallback({.monitor = std::move(o.monitor), .comp = o.comp, .min_delta = o.min_delta,
                         .reset_on_fit = o.reset_on_fit}),
        patience(o.patience) {
    STRATA_CHECK(patience >= 1, "EarlyStoppingCallback", "got patience = ", patience, ", expected >= 1");
    order = 63;
  }
  /// fastai's positional spelling: EarlyStoppingCallback("accuracy", Comp::greater, 0.01, 3).
  // A template, so that EarlyStoppingCallback({.patience = 2}) picks the options: GCC otherwise weighs
  // a designated list against std::string and calls the two ambiguous.
  template <std::convertible_to<std::string> S>
  explicit EarlyStoppingCallback(S monitor, std::optional<Comp> comp = {}, double min_delta = 0,
                                 int patience = 1, bool reset_on_fit = true)
      : EarlyStoppingCallback(
            EarlyStoppingOptions{std::string(std::move(monitor)), comp, min_delta, patience, reset_on_fit}) {}
  std::string name() const override { return "EarlyStoppingCallback"; }

  void before_fit() override {
    wait = 0;
    TrackerCallback::before_fit();
  }
  void after_epoch() override {
    TrackerCallback::after_epoch();
    if (new_best) {
      wait = 0;
      return;
    }
    if (++wait >= patience) {
      if (learn->is_main_process())
        std::cout << "No improvement since epoch " << learn->epoch - wait << ": early stopping" << std::endl;
      throw CancelFitException();
    }
  }
};

/// SaveModelCallback's options.
struct SaveModelOptions {
  std::string monitor = "valid_loss";
  std::optional<Comp> comp = {};
  double min_delta = 0;
  std::string fname = "model";
  int every_epoch = 0;   // > 0: save fname_<epoch> every that many epochs instead of the best (true = every epoch)
  bool at_end = false;   // save fname at the end of the fit instead of loading the best back
  bool with_opt = false; // the optimizer state too
  bool reset_on_fit = true;
};

/// Saves the model at each new best (learn.save(fname)) and loads the best back at the end of the
/// fit (fastai's SaveModelCallback).
class SaveModelCallback : public TrackerCallback {
 public:
  std::string fname;
  int every_epoch;
  bool at_end, with_opt;
  std::string last_saved_path;  // the file written last ("" before any)

  explicit SaveModelCallback(SaveModelOptions o = {})
      : TrackerCallback({.monitor = std::move(o.monitor), .comp = o.comp, .min_delta = o.min_delta,
                         .reset_on_fit = o.reset_on_fit}),
        fname(std::move(o.fname)),
        every_epoch(o.every_epoch),
        at_end(o.at_end),
        with_opt(o.with_opt) {
    STRATA_CHECK(!(every_epoch && at_end), "SaveModelCallback", "got every_epoch = ", every_epoch,
                 " and at_end = true, expected at most one of them");
    STRATA_CHECK(every_epoch >= 0 && !fname.empty(), "SaveModelCallback", "got every_epoch = ", every_epoch,
                 " and fname \"", fname, "\", expected every_epoch >= 0 and a file name");
    order = 61;
  }
  /// fastai's positional spelling: SaveModelCallback("accuracy", {}, 0, "best").
  // (a template: see EarlyStoppingCallback)
  template <std::convertible_to<std::string> S>
  explicit SaveModelCallback(S monitor, std::optional<Comp> comp = {}, double min_delta = 0,
                             std::string fname = "model", int every_epoch = 0, bool at_end = false,
                             bool with_opt = false, bool reset_on_fit = true)
      : SaveModelCallback(SaveModelOptions{std::string(std::move(monitor)), comp, min_delta, std::move(fname),
                                           every_epoch, at_end, with_opt, reset_on_fit}) {}
  std::string name() const override { return "SaveModelCallback"; }

  void before_fit() override {
    const bool resets = reset_on_fit || std::isnan(best);  // TrackerCallback::before_fit resets best then
    TrackerCallback::before_fit();
    if (run && resets) saved_ = false;
  }
  void after_epoch() override {
    if (every_epoch) {
      if (learn->epoch % every_epoch == 0) save(fname + "_" + std::to_string(learn->epoch));
      return;
    }
    TrackerCallback::after_epoch();
    if (!new_best) return;
    if (learn->is_main_process())
      std::cout << "Better model found at epoch " << learn->epoch << " with " << monitor
                << " value: " << Recorder::shortest(best) << "." << std::endl;
    save(fname);
  }
  void after_fit() override {
    if (at_end) return save(fname);
    if (every_epoch) return;
    // fastai loads unconditionally; here a fit in which nothing was saved since best was last reset (every
    // value NaN) keeps its model, even when a file fname from an earlier fit or run is on disk
    if (saved_) learn->load(fname, with_opt);
  }

 private:
  bool saved_ = false;  // a save since best was last reset (before_fit)
  void save(const std::string& name) {
    last_saved_path = learn->save(name, with_opt);
    saved_ = true;
  }
};

/// ReduceLROnPlateau's options.
struct ReduceLROnPlateauOptions {
  std::string monitor = "valid_loss";
  std::optional<Comp> comp = {};
  double min_delta = 0;
  int patience = 1;
  double factor = 10;
  double min_lr = 0;
  bool reset_on_fit = true;
};

/// Divides every param group's lr by factor (not below min_lr) after `patience` epochs without
/// improvement, then waits `patience` epochs again (fastai's ReduceLROnPlateau). For plain fit():
/// a ParamScheduler would overwrite the lr at the next batch.
class ReduceLROnPlateau : public TrackerCallback {
 public:
  int patience;
  double factor, min_lr;
  int wait = 0;

  explicit ReduceLROnPlateau(ReduceLROnPlateauOptions o = {})
      : TrackerCallback({.monitor = std::move(o.monitor), .comp = o.comp, .min_delta = o.min_delta,
                         .reset_on_fit = o.reset_on_fit}),
        patience(o.patience),
        factor(o.factor),
        min_lr(o.min_lr) {
    STRATA_CHECK(patience >= 1 && factor > 0 && min_lr >= 0, "ReduceLROnPlateau", "got patience = ", patience,
                 ", factor = ", factor, ", min_lr = ", min_lr, ", expected patience >= 1, factor > 0, min_lr >= 0");
    order = 62;
  }
  /// fastai's positional spelling: ReduceLROnPlateau("valid_loss", {}, 0, 2, 10., 1e-6).
  // (a template: see EarlyStoppingCallback)
  template <std::convertible_to<std::string> S>
  explicit ReduceLROnPlateau(S monitor, std::optional<Comp> comp = {}, double min_delta = 0, int patience = 1,
                             double factor = 10, double min_lr = 0, bool reset_on_fit = true)
      : ReduceLROnPlateau(ReduceLROnPlateauOptions{std::string(std::move(monitor)), comp, min_delta, patience, factor,
                                                   min_lr, reset_on_fit}) {}
  std::string name() const override { return "ReduceLROnPlateau"; }

  void before_fit() override {
    wait = 0;
    TrackerCallback::before_fit();
  }
  void after_epoch() override {
    TrackerCallback::after_epoch();
    if (new_best) {
      wait = 0;
      return;
    }
    if (++wait < patience || !learn->opt) return;
    auto& groups = learn->opt->param_groups;
    const double old_lr = groups.back().hypers.at("lr");
    for (ParamGroup& g : groups) g.hypers["lr"] = std::max(g.hypers.at("lr") / factor, min_lr);
    wait = 0;
    const double new_lr = groups.back().hypers.at("lr");
    if (new_lr < old_lr && learn->is_main_process())
      std::cout << "Epoch " << learn->epoch << ": reducing lr to " << Recorder::shortest(new_lr) << std::endl;
  }
};

}  // namespace strata
