// HookCallback (fastai/callback/hook.py's HookCallback): a callback that hooks modules of
// learn.model during training and keeps what its hook() returns; ActivationStats is one.
//
// HookCallback<T> (fastai's HookCallback) hooks `modules` (default: every leaf of learn.model that
// has parameters: Conv2d, BatchNorm2d, Linear, ...; include_paramless adds the others) with its
// virtual hook(module, input, output) -> T. With every = 0 (fastai's every=None) the hooks go on at
// before_fit and come off at after_fit, which also runs after a CancelFitException; with every = k
// they go on at before_batch of the training batches with train_iter % k == 0 and come off at their
// after_batch. The hook function runs only during training batches (a validation forward stores
// nothing). The stored values are cleared at each training before_batch, so a layer that did not
// run in a batch has no value for it (fastai would repeat the previous batch's).
// When fit() ends by an exception other than a Cancel*, the hooks come off at after_exception.
// The default modules are looked up again at every fit (fastai keeps the list of the first fit),
// so a callback reused with a new model hooks the new model.
// The hooked modules are raw pointers into learn.model (`modules`), used only while a fit runs; the
// names and type names of the hooked layers are copied at before_fit (module_names, module_types),
// so whatever a subclass does after the fit (plots, summaries) may outlive the Learner and model.
// The hooks themselves are safe to remove after their module is gone (nn::HookHandle holds a
// weak_ptr to the module's hook list).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "strata/learn/hook.hpp"
#include "strata/learn/learner.hpp"

namespace strata {

struct HookCallbackOptions {
  std::vector<nn::Module*> modules = {};  // empty: the leaves of learn.model with parameters, at each fit
  int64_t every = 0;                      // 0: every training batch (fastai's None); k: train_iter % k == 0 only
  bool remove_end = true;                 // take the hooks off at after_fit
  bool is_forward = true;                 // false: hooks on the gradient of each output (see hook.hpp)
  bool detach = true;                     // the hook sees detached tensors
  bool include_paramless = false;         // default modules: all leaves, not only those with parameters
};

/// A callback that hooks modules during training (fastai's HookCallback); override hook().
template <class T>
class HookCallback : public Callback {
 public:
  HookCallbackOptions opts;
  /// The hooked modules (chosen at before_fit). Raw pointers into learn.model: valid only while the
  /// model lives; after the fit read module_names and module_types, which this callback owns.
  std::vector<nn::Module*> modules;
  std::vector<std::string> module_names;  // their dotted names in learn.model ("" when not found there)
  std::vector<std::string> module_types;  // their type_name()s ("Linear", "Conv2d", ...), taken at before_fit
  Hooks<T> hooks;

  explicit HookCallback(HookCallbackOptions o = {}) : opts(std::move(o)) {
    STRATA_CHECK(opts.every >= 0, "HookCallback", "got every = ", opts.every,
                 ", expected 0 (every batch) or a batch interval k >= 1");
  }
  ~HookCallback() override { hooks.remove(); }

  /// What each hook stores for module m with input x and output out (already detached with detach).
  virtual T hook(nn::Module& m, const Tensor& x, const Tensor& out) = 0;

  void before_fit() override {
    hooks.remove();  // left from an earlier fit (remove_end = false)
    modules.clear();
    module_names.clear();
    module_types.clear();
    if (opts.modules.empty()) {
      for (auto& [name, m] : hookable_layers(*learn->model, opts.include_paramless)) {
        modules.push_back(m);
        module_names.push_back(name);
        module_types.push_back(m->type_name());
      }
    } else {
      const auto named = learn->model->named_modules();
      for (nn::Module* m : opts.modules) {
        auto it = std::find_if(named.begin(), named.end(), [m](const auto& e) { return e.second == m; });
        STRATA_CHECK(m != nullptr, "HookCallback", "got a null module at position ", modules.size(),
                     " of opts.modules, expected modules of learn.model");
        modules.push_back(m);
        module_names.push_back(it == named.end() ? std::string() : it->first);
        module_types.push_back(m->type_name());
      }
    }
    if (opts.every == 0) register_hooks();
  }
  void before_batch() override {
    if (!learn->training) return;
    if (opts.every == 0) hooks.reset();
    else if (learn->train_iter % opts.every == 0) register_hooks();
  }
  void after_batch() override {
    if (opts.every > 0 && learn->training && learn->train_iter % opts.every == 0) hooks.remove();
  }
  void after_fit() override {
    if (opts.remove_end) hooks.remove();
  }
  void after_exception() override { hooks.remove(); }

  /// Whether this training batch is one whose activations are recorded (every k-th with every = k).
  bool recording() const {
    return learn && learn->training && (opts.every == 0 || learn->train_iter % opts.every == 0);
  }

 protected:
  void register_hooks() {
    hooks.remove();
    hooks = Hooks<T>(
        modules,
        [this](nn::Module& m, const Tensor& x, const Tensor& out) -> std::optional<T> {
          if (!learn || !learn->training || learn->dl == nullptr) return std::nullopt;
          return hook(m, x, out);
        },
        opts.is_forward, opts.detach);
  }
};

}  // namespace strata
