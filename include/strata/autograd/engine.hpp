// The backward engine: runs the recorded graph in reverse topological order.
//
// From the root's grad_fn, a depth-first walk (iterative, so deep graphs do not overflow the stack)
// counts how many edges point at each node (and at each leaf). Nodes run once all of their consumers
// have sent their gradient, which the engine sums. A leaf's gradient is summed over all its uses,
// passed once through the leaf's hooks, then accumulated (+=) into leaf.grad as soon as the last node
// that feeds it has run, while the rest of backward goes on (PyTorch's AccumulateGrad: data-parallel
// training starts all-reducing the last layers' gradients from a leaf hook while the first layers'
// are still being computed). So a leaf hook may see other leaves' .grad already updated, and a
// backward that throws midway leaves the finished leaves' .grad updated (zero them to retry; the
// Learner does). The graph is not freed after backward (no retain_graph flag is needed to call it twice);
// backward itself runs without recording, so there are no higher-order gradients.
#pragma once

#include <unordered_map>
#include <utility>
#include <vector>

#include "strata/autograd/node.hpp"

namespace strata {

namespace detail {

inline Tensor run_hooks(const std::vector<TensorHook>& hooks, Tensor g) {
  for (const TensorHook& h : hooks) {
    Tensor r = h(g);
    if (r.defined()) g = r;
  }
  return g;
}

inline void accumulate_leaf(TensorImpl& leaf, Tensor g) {
  g = run_hooks(leaf.hooks, std::move(g));
  STRATA_CHECK(g.shape() == leaf.shape, "backward", "got a gradient of shape ", g.shape(),
               " for a leaf of shape ", leaf.shape, ", expected equal shapes");
  if (g.dtype() != leaf.dtype) g = g.to(leaf.dtype);
  if (!leaf.grad) {
    leaf.grad = g.clone().impl_ptr();  // own copy: the same dout may flow to several leaves
  } else {
    Tensor(leaf.grad).add_(g);
  }
}

inline void add_grad(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) slot = g;
  else slot = slot + g;  // not in place: `slot` may alias a gradient that another node holds
}

}  // namespace detail

/// Backpropagates `gradient` (ones for a one-element root) from `root` to every leaf that requires grad.
inline void run_backward(const Tensor& root, Tensor gradient) {
  STRATA_CHECK(root.requires_grad(), "backward",
               "got a tensor that does not require grad, expected one produced from a tensor with "
               "requires_grad_() (or called outside NoGrad)");
  if (!gradient.defined()) {
    STRATA_CHECK(root.numel() == 1, "backward", "got a non-scalar root of shape ", root.shape(),
                 ", expected a one-element tensor or an explicit gradient");
    gradient = ones_like(root);
  }
  STRATA_CHECK(gradient.shape() == root.shape(), "backward", "got a gradient of shape ",
               gradient.shape(), " for a root of shape ", root.shape(), ", expected equal shapes");
  NoGrad no_grad;
  if (!root.grad_fn()) {  // the root is itself a leaf
    detail::accumulate_leaf(root.impl(), gradient);
    return;
  }
  // 1. count the consumers of every node reachable from the root
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{root.grad_fn().get()};
  deps[root.grad_fn().get()] = 0;
  std::unordered_map<TensorImpl*, int> leaf_deps;  // edges into each leaf: complete when all have run
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    for (const Edge& e : n->next) {
      if (e.leaf) ++leaf_deps[e.leaf.get()];
      if (!e.fn) continue;
      auto [it, inserted] = deps.try_emplace(e.fn.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(e.fn.get());
    }
  }
  // 2. run nodes whose consumers are all done
  std::unordered_map<Node*, Tensor> grads;
  grads[root.grad_fn().get()] = gradient;
  std::vector<Node*> ready{root.grad_fn().get()};
  std::unordered_map<TensorImpl*, size_t> leaf_slot;  // leaf -> index in `leaves` (arrival order)
  std::vector<std::pair<std::shared_ptr<TensorImpl>, Tensor>> leaves;
  // one more edge into a leaf has run: once the last has, its summed gradient goes in at once
  auto leaf_edge_done = [&](const Edge& e) {
    if (--leaf_deps[e.leaf.get()] != 0) return;
    auto it = leaf_slot.find(e.leaf.get());
    if (it == leaf_slot.end()) return;  // no defined gradient reached it
    auto& [leaf, g] = leaves[it->second];
    if (g.defined()) detail::accumulate_leaf(*leaf, std::move(g));
    g = Tensor();
  };
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor dout = std::move(grads[n]);
    grads.erase(n);
    if (!dout.defined()) {  // every consumer sent "no gradient": pass the news on
      for (const Edge& e : n->next) {
        if (e.fn && --deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
        if (e.leaf) leaf_edge_done(e);
      }
      continue;
    }
    dout = detail::run_hooks(n->hooks, std::move(dout));
    if (auto kept = n->retained.lock()) {
      if (!kept->grad) kept->grad = dout.clone().impl_ptr();
      else Tensor(kept->grad).add_(dout);
    }
    std::vector<Tensor> dins;
    try {
      dins = n->backward(dout);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " [in " + n->name + "]");
    }
    STRATA_CHECK(dins.size() == n->next.size(), n->name, "got ", dins.size(),
                 " gradients from backward, expected one per input (", n->next.size(), ")");
    for (size_t i = 0; i < dins.size(); ++i) {
      const Edge& e = n->next[i];
      if (!e.active()) continue;
      if (e.leaf) {  // summed over all uses first, so leaf hooks see the total once (PyTorch)
        if (dins[i].defined()) {
          auto [it, fresh] = leaf_slot.try_emplace(e.leaf.get(), leaves.size());
          if (fresh) leaves.emplace_back(e.leaf, Tensor());
          detail::add_grad(leaves[it->second].second, dins[i]);
        }
        leaf_edge_done(e);
        continue;
      }
      if (dins[i].defined()) detail::add_grad(grads[e.fn.get()], dins[i]);
      if (--deps[e.fn.get()] == 0) ready.push_back(e.fn.get());
    }
  }
  for (auto& [leaf, g] : leaves)  // every leaf went in above; this only guards the invariant
    if (g.defined()) detail::accumulate_leaf(*leaf, std::move(g));
}

inline void Tensor::backward(const Tensor& gradient) const { run_backward(*this, gradient); }

inline void Tensor::retain_grad() {
  if (is_leaf()) return;  // leaves keep their gradient anyway
  impl().retains_grad = true;
  grad_fn()->retained = impl_ptr();
}

inline void Tensor::register_hook(TensorHook hook) {
  STRATA_CHECK(requires_grad(), "register_hook",
               "got a tensor that does not require grad, expected one that does");
  if (is_leaf()) impl().hooks.push_back(std::move(hook));
  else grad_fn()->hooks.push_back(std::move(hook));
}

}  // namespace strata
