// EMACallback: an exponential moving average of the model's weights, updated after every optimizer
// step, used for validation and optionally kept at the end (fastxtend's EMACallback, after timm's
// ModelEmaV2; Polyak & Juditsky 1992; fastai core has no EMA callback).
//
//   auto ema = std::make_shared<EMACallback>(EMAOptions{.decay = 0.999});
//   learn.fit(5, 1e-3, {}, {ema});            // valid_loss / metrics are the EMA weights'
//   ema->copy_to(*other_model);               // or .replace_weights = true to keep them in learn.model
//
// At before_fit: ema = a copy of every tensor of model.state_dict() (names as there).
// After each step (training, in epochs >= start_epoch):   ema = decay * ema + (1 - decay) * w
// for floating parameters, and for floating buffers (BatchNorm running stats) when ema_bn; other
// buffers (ema_bn = false, integer counters) are copied from the model. Before start_epoch the EMA
// copies the model after each step, so averaging starts from the weights at start_epoch.
// validate_ema: the validation phase of each epoch runs on the EMA weights: they are copied into the
// model at before_validate and the model's own weights copied back at after_validate (which also
// follows a CancelValidException); on any other exception, at after_exception (also when this
// callback is destroyed, at its next before_fit, or by restore()). replace_weights: at after_fit the model
// gets the EMA weights. Order 11 (fastxtend: MixedPrecision's + 1). Off in validate(), get_preds(),
// predict() and lr_find() (as the trackers), which therefore use the model's own weights.
// The EMA lives in the parameters' dtype and device (fastxtend keeps it in the model's dtype too).
// With validate_ema, the recorded valid_loss and metrics are the EMA weights', and so is the "best"
// a SaveModelCallback (or EarlyStopping, ReduceLROnPlateau) tracks; but SaveModelCallback saves the
// model's own weights of that epoch (its after_epoch runs after this callback's after_validate has
// put them back), and loads those back at the end. To keep the EMA weights, set replace_weights
// (the model gets them at after_fit; SaveModelCallback, order 61, then loads its file over them
// unless at_end or every_epoch) or copy them out with copy_to.
#pragma once

#include "strata/learn/learner.hpp"
#include "strata/learn/callbacks/tracker.hpp"  // detail::is_non_training_fit

#include <algorithm>
#include <string>
#include <vector>

namespace strata {

/// EMACallback's options (fastxtend's EMACallback arguments).
struct EMAOptions {
  double decay = 0.9998;
  int start_epoch = 0;          // epochs before this one keep ema = the model's weights
  bool ema_bn = false;          // average floating buffers (BatchNorm running stats) too; else copy them
  bool validate_ema = true;     // run each epoch's validation on the EMA weights
  bool replace_weights = false; // put the EMA weights in the model at the end of the fit
};

class EMACallback : public Callback {
 public:
  double decay;
  int start_epoch;
  bool ema_bn, validate_ema, replace_weights;
  /// The EMA of every model.state_dict() tensor, by the same names (valid from the first before_fit).
  nn::NamedTensors ema;
  /// Averaging updates done in the current fit (steps in epochs >= start_epoch).
  int64_t n_updates = 0;

  explicit EMACallback(EMAOptions o = {})
      : decay(o.decay),
        start_epoch(o.start_epoch),
        ema_bn(o.ema_bn),
        validate_ema(o.validate_ema),
        replace_weights(o.replace_weights) {
    STRATA_CHECK(decay >= 0 && decay <= 1 && start_epoch >= 0, "EMACallback", "got decay = ", decay,
                 " and start_epoch = ", start_epoch, ", expected 0 <= decay <= 1 and start_epoch >= 0");
    order = 11;
  }
  /// fastxtend's positional spelling: EMACallback(0.999, 1).
  explicit EMACallback(double decay_, int start_epoch_ = 0, bool ema_bn_ = false, bool validate_ema_ = true,
                       bool replace_weights_ = false)
      : EMACallback(EMAOptions{decay_, start_epoch_, ema_bn_, validate_ema_, replace_weights_}) {}
  ~EMACallback() override {
    try {
      restore();
    } catch (...) {  // a destructor must not throw; the weights stay as they are
    }
  }
  EMACallback(const EMACallback&) = delete;
  EMACallback& operator=(const EMACallback&) = delete;
  std::string name() const override { return "EMACallback"; }

  /// The EMA tensor of state_dict entry `key`.
  const Tensor& ema_of(const std::string& key) const {
    for (const auto& [k, t] : ema)
      if (k == key) return t;
    detail::fail("EMACallback", "got key \"", key, "\", expected a state_dict name of the model (",
                 ema.empty() ? "no EMA yet: call after fit has started" : "e.g. \"" + ema.front().first + "\"", ")");
  }
  /// Loads the EMA weights into m (a module with the model's state_dict names and shapes).
  void copy_to(nn::Module& m) const {
    STRATA_CHECK(!ema.empty(), "EMACallback", "got copy_to before any fit, expected an EMA to copy");
    m.load_state_dict(ema);
  }
  /// Whether the model holds the EMA weights for validation right now.
  bool swapped() const { return !backup_.empty(); }
  /// Puts the model's own weights back after a validation on the EMA weights (no-op otherwise).
  void restore() {
    if (backup_.empty()) return;
    NoGrad ng;
    for (size_t i = 0; i < model_.size(); ++i) model_[i].second.copy_(backup_[i]);
    backup_.clear();
  }

  void before_fit() override {
    restore();  // a validation that ended by an exception
    run = !detail::is_non_training_fit(*learn);
    if (!run) return;
    NoGrad ng;
    model_ = learn->model->state_dict();
    std::vector<std::string> param_names;
    for (const auto& [k, p] : learn->model->named_parameters()) param_names.push_back(k);
    ema.clear();
    average_.clear();
    for (const auto& [k, t] : model_) {
      const bool is_param = std::find(param_names.begin(), param_names.end(), k) != param_names.end();
      ema.emplace_back(k, t.detach().clone());
      average_.push_back(t.is_floating_point() && (is_param || ema_bn));
    }
    n_updates = 0;
  }
  void after_step() override {
    NoGrad ng;
    const bool averaging = learn->epoch >= start_epoch;
    for (size_t i = 0; i < ema.size(); ++i) {
      const Tensor w = model_[i].second.detach();
      if (averaging && average_[i]) ema[i].second.mul_(decay).add_(w, 1.0 - decay);
      else ema[i].second.copy_(w);
    }
    if (averaging) ++n_updates;
  }
  void before_validate() override {
    if (!validate_ema || learn->epoch < start_epoch || ema.empty() || swapped()) return;  // before: ema == model
    NoGrad ng;
    backup_.reserve(model_.size());
    for (size_t i = 0; i < model_.size(); ++i) {
      backup_.push_back(model_[i].second.detach().clone());
      model_[i].second.copy_(ema[i].second);
    }
  }
  void after_validate() override { restore(); }
  void after_exception() override { restore(); }
  void after_fit() override {
    restore();
    if (!replace_weights || ema.empty()) return;
    NoGrad ng;
    for (size_t i = 0; i < model_.size(); ++i) model_[i].second.copy_(ema[i].second);
  }

 private:
  nn::NamedTensors model_;       // the model's state_dict tensors (handles sharing its storage)
  std::vector<bool> average_;    // per entry: averaged (else copied)
  std::vector<Tensor> backup_;   // the model's own weights while it holds the EMA ones
};

}  // namespace strata
