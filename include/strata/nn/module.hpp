// Module: the base of every layer and model, and Sequential.
//
// A Module holds its parameters and buffers as public Tensor members and its children as
// shared_ptr members, and names all three in ONE method:
//
//   void visit(Visitor& v) override { v.param("weight", weight); v.param("bias", bias);
//                                     v.buffer("running_mean", running_mean); v.child("0", *body); }
//
// Everything else comes from visit: parameters(), named_parameters() with PyTorch's dotted names
// ("layer1.0.conv1.weight"), buffers, children, train()/eval(), state_dict()/load_state_dict(),
// zero_grad(), to(dtype), apply(), printing. Undefined tensors (a Linear without bias) are skipped,
// so names match PyTorch's state_dict keys and converted weights load by name.
//
// forward(x) is the layer's math; call a module as m(x), which runs the forward hooks around it
// (PyTorch's register_forward_pre_hook / register_forward_hook). forward_batch(xb) is what the
// Learner calls with fastai's xb tuple; by default it takes the single input.
#pragma once

#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "strata/autograd/grad_mode.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata::nn {

class Module;
using ModulePtr = std::shared_ptr<Module>;
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

/// What a Module's visit() reports to. Each callback is optional; undefined tensors are skipped.
class Visitor {
 public:
  std::function<void(const std::string& name, Tensor& t)> on_param, on_buffer;
  std::function<void(const std::string& name, Module& m)> on_child;

  void param(const std::string& name, Tensor& t) {
    if (on_param && t.defined()) on_param(name, t);
  }
  void buffer(const std::string& name, Tensor& t) {
    if (on_buffer && t.defined()) on_buffer(name, t);
  }
  void child(const std::string& name, Module& m) {
    if (on_child) on_child(name, m);
  }
  template <class M>
  void child(const std::string& name, const std::shared_ptr<M>& m) {
    if (m) child(name, *m);
  }
};

/// A forward hook: sees the module, its input and its output, and may replace the output.
using ForwardHook = std::function<void(Module& m, const Tensor& x, Tensor& out)>;
/// A forward pre-hook: sees the module and its input, and may replace the input.
using ForwardPreHook = std::function<void(Module& m, Tensor& x)>;

/// Removes the hook it was returned for when remove() is called (not on destruction: keep or drop it freely).
class HookHandle {
 public:
  HookHandle() = default;
  explicit HookHandle(std::function<void()> remover) : remover_(std::move(remover)) {}
  void remove() {
    if (remover_) std::exchange(remover_, nullptr)();
  }

 private:
  std::function<void()> remover_;
};

class Module : public std::enable_shared_from_this<Module> {
 public:
  virtual ~Module() = default;

  /// The layer's math. Modules that take several inputs override forward_batch instead.
  virtual Tensor forward(const Tensor& x) {
    STRATA_CHECK(false, type_name(), "got one input, expected forward_batch() for this module");
    return x;
  }
  /// fastai's model(*xb): the Learner calls this with the batch's inputs.
  virtual Tensor forward_batch(const std::vector<Tensor>& xb) {
    STRATA_CHECK(xb.size() == 1, type_name(), "got ", xb.size(), " inputs, expected 1");
    return (*this)(xb[0]);
  }
  /// Names the parameters, buffers and children (see the top of this file).
  virtual void visit(Visitor&) {}
  /// The class name printed by repr(), e.g. "Conv2d".
  virtual std::string type_name() const { return "Module"; }
  /// The configuration printed inside the parentheses, e.g. "1, 16, kernel_size=(3, 3)".
  virtual std::string extra_repr() const { return ""; }

  /// Runs the pre-hooks, forward, then the hooks.
  Tensor operator()(const Tensor& x) {
    if ((!pre_hooks_ || pre_hooks_->empty()) && (!hooks_ || hooks_->empty())) return forward(x);
    Tensor in = x;
    if (pre_hooks_)
      for (auto& [id, h] : std::vector(*pre_hooks_)) h(*this, in);  // a copy: a hook may remove itself
    Tensor out = forward(in);
    if (hooks_)
      for (auto& [id, h] : std::vector(*hooks_)) h(*this, in, out);
    return out;
  }

  HookHandle register_forward_hook(ForwardHook hook) { return add_hook(hooks_, std::move(hook)); }
  HookHandle register_forward_pre_hook(ForwardPreHook hook) { return add_hook(pre_hooks_, std::move(hook)); }
  /// Whether any forward hook or pre-hook is registered (Sequential never fuses such a module away).
  bool has_forward_hooks() const { return (pre_hooks_ && !pre_hooks_->empty()) || (hooks_ && !hooks_->empty()); }

  // ---- training mode
  bool training = true;
  /// Sets training mode on this module and every descendant (Dropout and BatchNorm read it).
  Module& train(bool on = true) {
    apply([on](Module& m) { m.training = on; });
    return *this;
  }
  Module& eval() { return train(false); }

  // ---- walking the tree
  /// Calls fn on this module, then on every descendant (pre-order, children in visit order).
  void apply(const std::function<void(Module&)>& fn) {
    fn(*this);
    for (auto& [name, c] : named_children()) c->apply(fn);
  }
  /// The direct children with their names, in visit order.
  std::vector<std::pair<std::string, Module*>> named_children() {
    std::vector<std::pair<std::string, Module*>> out;
    Visitor v;
    v.on_child = [&](const std::string& n, Module& m) { out.emplace_back(n, &m); };
    visit(v);
    return out;
  }
  /// This module ("" or prefix) and every descendant with dotted names, pre-order.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "") {
    std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
    for (auto& [n, c] : named_children())
      for (auto& sub : c->named_modules(join(prefix, n))) out.push_back(std::move(sub));
    return out;
  }

  /// Parameters with PyTorch's dotted names, each module's own before its children's.
  NamedTensors named_parameters(const std::string& prefix = "") { return collect(prefix, true, false); }
  NamedTensors named_buffers(const std::string& prefix = "") { return collect(prefix, false, true); }
  std::vector<Tensor> parameters() {
    std::vector<Tensor> out;
    for (auto& [n, p] : named_parameters()) out.push_back(p);
    return out;
  }
  std::vector<Tensor> buffers() {
    std::vector<Tensor> out;
    for (auto& [n, b] : named_buffers()) out.push_back(b);
    return out;
  }
  /// Number of parameter elements (trainable_only: only those with requires_grad).
  int64_t num_parameters(bool trainable_only = false) {
    int64_t n = 0;
    for (auto& p : parameters())
      if (!trainable_only || p.requires_grad()) n += p.numel();
    return n;
  }

  /// Parameters and buffers by name, in PyTorch's order (a module's params, its buffers, then children).
  NamedTensors state_dict(const std::string& prefix = "") { return collect(prefix, true, true); }

  /// Copies values by name into this module's parameters and buffers (any dtype is converted).
  /// strict: every key must match both ways. Shapes must match; errors name the key and both shapes.
  void load_state_dict(const NamedTensors& sd, bool strict = true) {
    // First every check, then every copy: a refused dict leaves the module as it was.
    NamedTensors mine = state_dict();
    std::vector<std::string> missing, unexpected;
    std::vector<bool> used(sd.size(), false);
    std::vector<std::pair<Tensor*, const Tensor*>> copies;
    for (auto& [name, t] : mine) {
      size_t i = 0;
      while (i < sd.size() && sd[i].first != name) ++i;
      if (i == sd.size()) {
        missing.push_back(name);
        continue;
      }
      used[i] = true;
      STRATA_CHECK(sd[i].second.shape() == t.shape(), "load_state_dict", "got ", name, " of shape ",
                   sd[i].second.shape(), ", expected shape ", t.shape());
      copies.emplace_back(&t, &sd[i].second);
    }
    for (size_t i = 0; i < sd.size(); ++i)
      if (!used[i]) unexpected.push_back(sd[i].first);
    if (strict && (!missing.empty() || !unexpected.empty())) {
      std::ostringstream os;
      os << "got a state dict with " << sd.size() << " entries, expected exactly this module's keys;";
      if (!missing.empty()) os << " missing: " << join_names(missing) << ";";
      if (!unexpected.empty()) os << " unexpected: " << join_names(unexpected);
      throw Error("load_state_dict: " + os.str());
    }
    NoGrad ng;
    for (auto& [dst, src] : copies) dst->copy_(*src);
  }

  /// Sets every parameter's gradient to undefined (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad() {
    for (auto& p : parameters()) p.set_grad(Tensor());
  }

  /// Converts every floating parameter and buffer to dtype, in place (before building an optimizer).
  Module& to(DType dtype) {
    auto convert = [&](Tensor& t) {
      if (!t.is_floating_point() || t.dtype() == dtype) return;
      const bool rg = t.requires_grad();
      t = t.detach().to(dtype);
      if (rg) t.requires_grad_(true);
    };
    apply([&](Module& m) {
      Visitor v;
      v.on_param = [&](const std::string&, Tensor& t) { convert(t); };
      v.on_buffer = [&](const std::string&, Tensor& t) { convert(t); };
      m.visit(v);
    });
    return *this;
  }

  /// Moves every parameter and buffer to `device`, in place (PyTorch's model.to(device)); do it before
  /// building an optimizer, which holds the parameters it was given. cuda needs <strata/backend/cuda.hpp>.
  Module& to(Device device) {
    auto move = [&](Tensor& t) {
      if (!t.defined() || t.device() == device) return;
      const bool rg = t.requires_grad();
      t = strata::detail::copy_to_device(t.detach(), device);
      if (rg) t.requires_grad_(true);
    };
    apply([&](Module& m) {
      Visitor v;
      v.on_param = [&](const std::string&, Tensor& t) { move(t); };
      v.on_buffer = [&](const std::string&, Tensor& t) { move(t); };
      m.visit(v);
    });
    return *this;
  }

  /// PyTorch-style printing: "Sequential(\n  (0): Conv2d(1, 16, ...)\n  ...)".
  std::string repr(int indent = 0) {
    std::ostringstream os;
    os << type_name() << "(" << extra_repr();
    auto kids = named_children();
    if (!kids.empty()) {
      const std::string pad(indent + 2, ' ');
      os << "\n";
      for (auto& [n, c] : kids) os << pad << "(" << n << "): " << c->repr(indent + 2) << "\n";
      os << std::string(indent, ' ');
    }
    os << ")";
    return os.str();
  }

 protected:
  /// Makes a parameter: a leaf that requires grad.
  static Tensor make_param(Tensor t) {
    t = t.detach();
    t.requires_grad_(true);
    return t;
  }

 private:
  static std::string join(const std::string& prefix, const std::string& name) {
    return prefix.empty() ? name : prefix + "." + name;
  }
  static std::string join_names(const std::vector<std::string>& v) {
    std::string s;
    for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
    return s;
  }
  NamedTensors collect(const std::string& prefix, bool params, bool buffers) {
    NamedTensors out;
    std::vector<std::pair<std::string, Module*>> kids;
    Visitor v;
    if (params) v.on_param = [&](const std::string& n, Tensor& t) { out.emplace_back(join(prefix, n), t); };
    if (buffers) v.on_buffer = [&](const std::string& n, Tensor& t) { out.emplace_back(join(prefix, n), t); };
    v.on_child = [&](const std::string& n, Module& m) { kids.emplace_back(n, &m); };
    visit(v);
    for (auto& [n, c] : kids)
      for (auto& e : c->collect(join(prefix, n), params, buffers)) out.push_back(std::move(e));
    return out;
  }
  // Hook lists live behind shared_ptrs so a handle stays valid (or harmlessly dead) when the module moves.
  template <class H>
  using HookList = std::shared_ptr<std::vector<std::pair<int, H>>>;
  template <class H>
  HookHandle add_hook(HookList<H>& list, H hook) {
    if (!list) list = std::make_shared<std::vector<std::pair<int, H>>>();
    const int id = next_hook_id_++;
    list->emplace_back(id, std::move(hook));
    return HookHandle([weak = std::weak_ptr(list), id] {
      if (auto l = weak.lock()) std::erase_if(*l, [id](auto& e) { return e.first == id; });
    });
  }

  HookList<ForwardHook> hooks_;
  HookList<ForwardPreHook> pre_hooks_;
  int next_hook_id_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, Module& m) { return os << m.repr(); }

namespace detail {
/// Accepts a module by value (moved into a shared_ptr) or an existing shared_ptr to one.
template <class M>
ModulePtr to_module_ptr(M&& m) {
  using D = std::remove_cvref_t<M>;
  if constexpr (requires { typename D::element_type; }) {
    return std::static_pointer_cast<Module>(std::forward<M>(m));
  } else {
    static_assert(std::is_base_of_v<Module, D>, "Sequential takes modules or shared_ptrs to modules");
    return std::make_shared<D>(std::forward<M>(m));
  }
}
}  // namespace detail

class Sequential;
namespace detail {
/// Runs a Sequential's layers, fusing adjacent ones where that gives the same result (set by
/// nn/fusion.hpp, which nn/conv.hpp includes; while null, the layers run one by one).
inline Tensor (*sequential_forward)(Sequential& seq, const Tensor& x) = nullptr;
}  // namespace detail

/// Runs its children in order; they are named "0", "1", ... as in PyTorch. Adjacent Conv2d,
/// BatchNorm2d, ReLU run fused where nn/fusion.hpp says (nn::set_fusion(false) turns that off).
class Sequential : public Module {
 public:
  std::vector<ModulePtr> layers;

  Sequential() = default;
  template <class... Ms>
    requires(sizeof...(Ms) > 0 && (!std::is_same_v<std::remove_cvref_t<Ms>, Sequential> && ...))
  explicit Sequential(Ms&&... ms) {
    (layers.push_back(detail::to_module_ptr(std::forward<Ms>(ms))), ...);
  }
  explicit Sequential(std::vector<ModulePtr> ls) : layers(std::move(ls)) {}

  /// Appends a layer (a module by value or a shared_ptr); returns *this for chaining.
  template <class M>
  Sequential& add(M&& m) {
    layers.push_back(detail::to_module_ptr(std::forward<M>(m)));
    return *this;
  }
  size_t size() const { return layers.size(); }
  Module& operator[](size_t i) const {
    STRATA_CHECK(i < layers.size(), "Sequential", "got index ", i, ", expected < ", layers.size());
    return *layers[i];
  }

  Tensor forward(const Tensor& x) override {
    if (detail::sequential_forward) return detail::sequential_forward(*this, x);
    Tensor out = x;
    for (auto& l : layers) out = (*l)(out);
    return out;
  }
  void visit(Visitor& v) override {
    for (size_t i = 0; i < layers.size(); ++i) v.child(std::to_string(i), *layers[i]);
  }
  std::string type_name() const override { return "Sequential"; }
};

/// A module from a function, e.g. Lambda([](const Tensor& x) { return x * 2; }, "Double").
class Lambda : public Module {
 public:
  explicit Lambda(std::function<Tensor(const Tensor&)> fn, std::string name = "Lambda")
      : fn_(std::move(fn)), name_(std::move(name)) {}
  Tensor forward(const Tensor& x) override { return fn_(x); }
  std::string type_name() const override { return name_; }

 private:
  std::function<Tensor(const Tensor&)> fn_;
  std::string name_;
};

}  // namespace strata::nn
