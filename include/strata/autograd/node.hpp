// Node: one recorded op in the define-by-run graph, and `record`, which ops call to add one.
//
// Every op has one output. Its Node keeps one Edge per tensor input: to the input's own grad_fn
// (a non-leaf), to the input's impl (a leaf that requires grad, where the gradient accumulates), or
// nothing (no gradient wanted). `backward(dout)` returns one gradient per input, each shaped like
// that input (undefined where the input needs none). Saved tensors live in the closure.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "strata/autograd/grad_mode.hpp"
#include "strata/tensor/detail/tensor_class.hpp"

namespace strata {

struct Edge {
  std::shared_ptr<Node> fn;            // the input's grad_fn, if it has one
  std::shared_ptr<TensorImpl> leaf;    // else the leaf input that requires grad
  bool active() const { return fn || leaf; }
};

using BackwardFn = std::function<std::vector<Tensor>(const Tensor& dout)>;

struct Node {
  std::string name;                    // "mul_backward"
  std::vector<Edge> next;              // one per input, in the op's argument order
  BackwardFn backward;
  std::vector<TensorHook> hooks;       // hooks registered on the output tensor
  std::weak_ptr<TensorImpl> retained;  // output that asked for retain_grad()

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  /// Frees the chain of nodes only this one keeps alive with a loop, not recursion, so dropping a
  /// graph of 100k ops does not overflow the stack.
  ~Node() {
    std::vector<std::shared_ptr<Node>> doomed;
    auto take = [&](Node& n) {
      for (Edge& e : n.next)
        if (e.fn && e.fn.use_count() == 1) doomed.push_back(std::move(e.fn));
    };
    take(*this);
    while (!doomed.empty()) {
      std::shared_ptr<Node> n = std::move(doomed.back());
      doomed.pop_back();
      take(*n);
    }  // n is destroyed here with its unique children already moved out
  }
};

/// What a backward needs to know about an input without keeping the input (and its graph) alive.
struct InputInfo {
  Shape shape;
  DType dtype;
  bool requires_grad;
};
inline InputInfo info(const Tensor& t) { return {t.shape(), t.dtype(), t.requires_grad()}; }

/// A tensor saved for backward, with the storage version it had when saved. Reading it in backward
/// after an in-place change (x.mul_(2) under NoGrad, say) throws instead of giving a wrong gradient,
/// as PyTorch's "modified by an inplace operation" check does. Converts to const Tensor&, so a
/// backward reads it like a tensor: `mul(dout, xd)`.
class Saved {
 public:
  Saved() = default;
  Saved(const Tensor& t)  // NOLINT: implicit, `Saved xd = x;` reads well
      : t_(t.defined() ? t.as_strided_(t.shape(), t.strides(), t.offset()) : Tensor()),
        version_(t.defined() ? t.storage()->version() : 0) {}
  const Tensor& get() const {
    STRATA_CHECK(!t_.defined() || t_.storage()->version() == version_, "backward",
                 "got a tensor of shape ", t_.shape(), " saved for the gradient and changed in place since ",
                 "(version ", t_.storage()->version(), ", saved at ", version_,
                 "), expected it unchanged until backward (change a clone() instead)");
    return t_;
  }
  operator const Tensor&() const { return get(); }  // NOLINT
  bool defined() const { return t_.defined(); }

 private:
  Tensor t_;
  uint64_t version_ = 0;
};

/// Whether any of the inputs needs a gradient (and grad mode is on).
inline bool any_requires_grad(std::span<const Tensor> inputs) {
  if (!is_grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
inline bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  return any_requires_grad(std::span<const Tensor>(inputs.begin(), inputs.size()));
}

/// Makes `out` the result of op `name` on `inputs` in the graph, when any input requires grad.
/// `backward(dout)` must return one gradient per input, shaped like that input.
inline Tensor record(const char* name, Tensor out, std::span<const Tensor> inputs, BackwardFn backward) {
  if (!any_requires_grad(inputs)) return out;
  auto node = std::make_shared<Node>();
  node->name = name;
  node->backward = std::move(backward);
  for (const Tensor& t : inputs) {
    Edge e;
    if (t.defined() && t.requires_grad()) {
      if (t.grad_fn()) e.fn = t.grad_fn();
      else e.leaf = t.impl_ptr();
    }
    node->next.push_back(std::move(e));
  }
  out.impl().requires_grad = true;
  out.impl().grad_fn = std::move(node);
  return out;
}
/// record() for a fixed list of inputs: record("mul_backward", out, {a, b}, ...).
inline Tensor record(const char* name, Tensor out, std::initializer_list<Tensor> inputs, BackwardFn backward) {
  return record(name, std::move(out), std::span<const Tensor>(inputs.begin(), inputs.size()), std::move(backward));
}
/// record() for a run-time number of inputs (cat): the same contract, one gradient per input.
inline Tensor record(const char* name, Tensor out, const std::vector<Tensor>& inputs, BackwardFn backward) {
  return record(name, std::move(out), std::span<const Tensor>(inputs), std::move(backward));
}

}  // namespace strata

// the ops (and the methods that forward to them) come after record(), which they use
#include "strata/tensor/tensor.hpp"
