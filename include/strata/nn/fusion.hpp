// Layer fusion in Sequential: adjacent layers run as fewer ops with the same result.
//
//   BatchNorm1d/2d, ReLU          -> batch_norm_relu: one node, one pass writing y after the statistics,
//                                    and the pre-ReLU value is never kept (training or eval)
//   Conv2d, BatchNorm2d [, ReLU]  -> in eval, one conv2d with the batch norm folded into its weights:
//       scale = gamma / sqrt(running_var + eps)        (gamma = 1, beta = 0 without affine)
//       w' = w * scale[o],  b' = (b - running_mean) * scale + beta        (b = 0 without a conv bias)
//     then the ReLU (conv2d_relu: in the conv's output store). w' and b' are computed at each forward
//     with differentiable ops, so gradients stay right when someone takes them in eval (saliency
//     maps, frozen batch norms), and nothing is cached that could go stale when the weights or
//     statistics change. Under an Autocast(bf16) the fold runs too, in float32, and conv2d then rounds
//     w' to bf16 (as PyTorch's frozen inference graphs fold before autocast): the unfolded path rounds
//     w and scales after, so the two differ by bf16 rounding, both that close to the float32 model.
// Not fused: a module with forward hooks or pre-hooks (the hook must see its own module's output), a
// subclass of these layers (exact dynamic type checked: a subclass may change forward), and for the
// fold: a batch norm in training mode or without running statistics, or a conv whose out channels do
// not match.
// nn::set_fusion(false) turns all of it off, for debugging and for tests that compare both ways.
// This header registers itself with Sequential (module.hpp sits below the layers and cannot include
// them); nn/conv.hpp includes it, so any program that has Conv2d fuses.
#pragma once

#include <atomic>
#include <typeinfo>

#include "strata/nn/activation.hpp"
#include "strata/nn/conv.hpp"
#include "strata/nn/module.hpp"
#include "strata/nn/norm.hpp"

namespace strata::nn {

namespace detail {
inline std::atomic<bool> fusion_on{true};
}  // namespace detail

/// Turns Sequential's layer fusion on or off for the whole program (on by default).
inline void set_fusion(bool on) { detail::fusion_on.store(on, std::memory_order_relaxed); }
/// Whether Sequential fuses adjacent layers.
inline bool fusion_enabled() { return detail::fusion_on.load(std::memory_order_relaxed); }

namespace detail {

/// m as an M when it is exactly an M (not a subclass) and has no forward hooks, else null.
template <class M>
M* fusable_as(Module* m) {
  if (!m || typeid(*m) != typeid(M) || m->has_forward_hooks()) return nullptr;
  return static_cast<M*>(m);
}

/// conv then bn (eval, running statistics) as one conv2d with bn folded into its weight and bias,
/// then the ReLU in the conv's output store when relu.
inline Tensor conv_bn_folded(Conv2d& conv, BatchNormBase& bn, const Tensor& x, bool relu) {
  const DType dt = conv.weight.dtype();
  const int64_t O = conv.options.out;
  Tensor scale = rsqrt(add(to(bn.running_var, dt), bn.options.eps));  // [O]
  if (bn.weight.defined()) scale = mul(scale, to(bn.weight, dt));
  Tensor b = neg(to(bn.running_mean, dt));
  if (conv.bias.defined()) b = add(b, conv.bias);
  b = mul(b, scale);
  if (bn.bias.defined()) b = add(b, to(bn.bias, dt));
  const Tensor w = mul(conv.weight, reshape(scale, {O, 1, 1, 1}));
  const Conv2dOptions& o = conv.options;
  return (relu ? conv2d_relu : conv2d)(x, w, b, o.stride, o.pad, o.dilation, o.groups);
}

/// Runs layers[i...] fused when the graph allows (see the top of this file): writes the output to
/// out and returns how many layers it ran, or 0 when layers[i] does not start a fusable run.
inline size_t run_fused(std::vector<ModulePtr>& layers, size_t i, Tensor& out) {
  auto at = [&](size_t j) { return j < layers.size() ? layers[j].get() : nullptr; };
  if (auto* conv = fusable_as<Conv2d>(at(i))) {
    auto* bn = fusable_as<BatchNorm2d>(at(i + 1));
    if (!bn || bn->training || !bn->options.track_running_stats || conv->options.out != bn->num_features) return 0;
    const bool relu = fusable_as<ReLU>(at(i + 2)) != nullptr;
    out = conv_bn_folded(*conv, *bn, out, relu);
    return relu ? 3 : 2;
  }
  BatchNormBase* bn = fusable_as<BatchNorm2d>(at(i));
  if (!bn) bn = fusable_as<BatchNorm1d>(at(i));
  if (bn && fusable_as<ReLU>(at(i + 1))) {
    out = bn->forward_relu(out);
    return 2;
  }
  return 0;
}

/// Sequential's forward with fusion: each layer in order, runs of fusable layers as one op.
inline Tensor fused_sequential_forward(Sequential& seq, const Tensor& x) {
  Tensor out = x;
  const bool on = fusion_enabled();
  for (size_t i = 0; i < seq.layers.size();) {
    const size_t n = on ? run_fused(seq.layers, i, out) : 0;
    if (n) {
      i += n;
    } else {
      out = (*seq.layers[i])(out);
      ++i;
    }
  }
  return out;
}

/// Hands fused_sequential_forward to Sequential (at static initialization).
inline const bool fusion_registered = (sequential_forward = &fused_sequential_forward, true);

}  // namespace detail

}  // namespace strata::nn
