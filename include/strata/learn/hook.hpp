// Hook, Hooks, hook_output(s), flatten_model, has_params: fastai's callback/hook.py, on top of
// nn::Module's register_forward_hook.
//
//   Hook<Tensor> h = hook_output(*model->layers[0]);   // stores each forward's output, detached
//   model(x);  h.stored();                             // std::optional<Tensor>
//   { Hooks<double> hs(flatten_model(*model), [](nn::Module&, const Tensor&, const Tensor& out) {
//       return out.mean().item<double>(); });          // one hook per module
//     model(x);  hs.stored(); }                        // the hooks go with hs (RAII)
//
// A Hook<T> calls hook_func(module, input, output) after each forward of its module and keeps what it
// returns in stored() (fastai's Hook.stored); with detach the function sees input.detach() and
// output.detach() (fastai's to_detach), so storing them keeps no graph alive. A hook function may
// return std::optional<T>: std::nullopt leaves stored() as it was (a hook that only looks sometimes).
// remove() takes the hook off the module (once; a removed hook never calls its function again, even
// from a forward already running); the destructor removes it too (fastai's `with Hook(...)`).
// Hooks are move-only. is_forward = false makes a gradient hook (fastai's register_backward_hook):
// after each forward whose output requires grad, the output's gradient is hooked, and hook_func gets
// (module, undefined Tensor, grad of output) when backward reaches it: strata's modules have no
// grad_input, so the second argument is always undefined there (fastai passes grad_input).
//
// Differences from fastai: no cpu / gather flags (strata tensors live on the CPU; no distributed
// gather); the input passed is the module's single input, not a tuple.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "strata/nn/module.hpp"

namespace strata {

/// What a hook calls: (module, input, output) -> a value to store (or std::nullopt: store nothing).
template <class T>
using HookFunc = std::function<std::optional<T>(nn::Module& m, const Tensor& x, const Tensor& out)>;

/// A forward (or gradient) hook on one module that stores what hook_func returns (fastai's Hook).
template <class T>
class Hook {
 public:
  Hook() = default;
  /// Hooks m with f, a callable (Module&, const Tensor& x, const Tensor& out) returning T or std::optional<T>.
  template <class F>
  Hook(nn::Module& m, F&& f, bool is_forward = true, bool detach = true) : state_(std::make_shared<State>()) {
    state_->fn = HookFunc<T>(std::forward<F>(f));
    state_->module = &m;
    state_->detach = detach;
    std::shared_ptr<State> st = state_;
    if (is_forward) {
      handle_ = m.register_forward_hook([st](nn::Module& mod, const Tensor& x, Tensor& out) { st->call(mod, x, out); });
    } else {
      handle_ = m.register_forward_hook([st](nn::Module& mod, const Tensor&, Tensor& out) {
        if (st->removed || !out.defined() || !out.requires_grad()) return;
        nn::Module* mp = &mod;
        out.register_hook([st, mp](const Tensor& g) {
          st->call(*mp, Tensor(), g);
          return Tensor();  // the gradient goes on unchanged
        });
      });
    }
  }
  Hook(const Hook&) = delete;
  Hook& operator=(const Hook&) = delete;
  Hook(Hook&& o) noexcept : state_(std::move(o.state_)), handle_(std::exchange(o.handle_, nn::HookHandle())) {}
  Hook& operator=(Hook&& o) noexcept {
    if (this != &o) {
      remove();
      state_ = std::move(o.state_);
      handle_ = std::exchange(o.handle_, nn::HookHandle());
    }
    return *this;
  }
  ~Hook() { remove(); }

  /// What the hook function returned last (std::nullopt before its first call).
  const std::optional<T>& stored() const {
    static const std::optional<T> none;
    return state_ ? state_->stored : none;
  }
  /// Forgets the stored value.
  void reset() {
    if (state_) state_->stored.reset();
  }
  /// Takes the hook off its module (no-op when already removed).
  void remove() {
    if (state_) state_->removed = true;
    handle_.remove();
  }
  bool removed() const { return !state_ || state_->removed; }
  /// The hooked module (null for a default-constructed Hook); a raw pointer, valid only while the module lives.
  nn::Module* module() const { return state_ ? state_->module : nullptr; }

 private:
  struct State {
    HookFunc<T> fn;
    nn::Module* module = nullptr;
    bool detach = true, removed = false;
    std::optional<T> stored;
    void call(nn::Module& m, const Tensor& x, const Tensor& out) {
      if (removed) return;
      std::optional<T> r = detach ? fn(m, x.defined() ? x.detach() : x, out.defined() ? out.detach() : out)
                                  : fn(m, x, out);
      if (r) stored = std::move(r);
    }
  };
  std::shared_ptr<State> state_;
  nn::HookHandle handle_;
};

/// One Hook per module of a list, all with the same function (fastai's Hooks).
template <class T>
class Hooks {
 public:
  Hooks() = default;
  template <class F>
  Hooks(const std::vector<nn::Module*>& ms, const F& f, bool is_forward = true, bool detach = true) {
    hooks_.reserve(ms.size());
    for (nn::Module* m : ms) {
      STRATA_CHECK(m != nullptr, "Hooks", "got a null module at position ", hooks_.size(), ", expected modules");
      hooks_.emplace_back(*m, f, is_forward, detach);
    }
  }
  Hooks(Hooks&&) noexcept = default;
  Hooks& operator=(Hooks&& o) noexcept {
    if (this != &o) {
      remove();
      hooks_ = std::move(o.hooks_);
    }
    return *this;
  }
  ~Hooks() { remove(); }

  Hook<T>& operator[](size_t i) {
    STRATA_CHECK(i < hooks_.size(), "Hooks", "got index ", i, ", expected < ", hooks_.size());
    return hooks_[i];
  }
  size_t size() const { return hooks_.size(); }
  bool empty() const { return hooks_.empty(); }
  auto begin() { return hooks_.begin(); }
  auto end() { return hooks_.end(); }
  /// Each hook's stored value, in module order (fastai's Hooks.stored).
  std::vector<std::optional<T>> stored() const {
    std::vector<std::optional<T>> out;
    for (const Hook<T>& h : hooks_) out.push_back(h.stored());
    return out;
  }
  void reset() {
    for (Hook<T>& h : hooks_) h.reset();
  }
  /// Takes every hook off its module.
  void remove() {
    for (Hook<T>& h : hooks_) h.remove();
  }
  /// True when there are no hooks or all are removed.
  bool removed() const {
    for (const Hook<T>& h : hooks_)
      if (!h.removed()) return false;
    return true;
  }

 private:
  std::vector<Hook<T>> hooks_;
};

/// A Hook that stores the module's output (grad: the gradient of its output) (fastai's hook_output).
inline Hook<Tensor> hook_output(nn::Module& m, bool detach = true, bool grad = false) {
  return Hook<Tensor>(m, [](nn::Module&, const Tensor&, const Tensor& out) { return out; }, !grad, detach);
}

/// hook_output on every module of ms (fastai's hook_outputs).
inline Hooks<Tensor> hook_outputs(const std::vector<nn::Module*>& ms, bool detach = true, bool grad = false) {
  return Hooks<Tensor>(ms, [](nn::Module&, const Tensor&, const Tensor& out) { return out; }, !grad, detach);
}

/// The leaves of m's module tree (modules without children), pre-order; m itself if it has none
/// (fastai's flatten_model).
inline std::vector<nn::Module*> flatten_model(nn::Module& m) {
  std::vector<nn::Module*> out;
  for (auto& [name, mod] : m.named_modules())
    if (mod->named_children().empty()) out.push_back(mod);
  return out;
}

/// Whether m has at least one parameter, its descendants' included (fastai's has_params).
inline bool has_params(nn::Module& m) { return !m.named_parameters().empty(); }

/// The leaves of model that have parameters (all leaves with include_paramless), with their dotted
/// names: the layers fastai's HookCallback hooks by default.
inline std::vector<std::pair<std::string, nn::Module*>> hookable_layers(nn::Module& model, bool include_paramless = false) {
  std::vector<std::pair<std::string, nn::Module*>> out;
  for (auto& [name, mod] : model.named_modules())
    if (mod->named_children().empty() && (include_paramless || has_params(*mod))) out.emplace_back(name, mod);
  return out;
}

}  // namespace strata
