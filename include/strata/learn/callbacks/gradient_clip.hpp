// GradientClip: clips the global norm of the model's gradients before each optimizer step
// (fastai v2, callback/training.py; the clipping is PyTorch's torch.nn.utils.clip_grad_norm_).
//
//   learn.fit_one_cycle(3, 1e-3, {}, {}, {}, {std::make_shared<GradientClip>(1.0)});
//
// clip_grad_norm_(params, max_norm, p), over every param g = p.grad that is defined:
//   total = (sum_g sum_i |g_i|^p)^(1/p)          (p = inf: total = max_g max_i |g_i|)
//   coef  = max_norm / (total + 1e-6);  if coef < 1: g *= coef for every g
//   returns total (the norm before clipping)
// so afterwards the global norm is max_norm (up to the 1e-6) and smaller gradients are untouched.
// The norm is accumulated in double. Order 11 = fastai's MixedPrecision.order + 1: with mixed
// precision the grads are unscaled before they are clipped; GradientAccumulation (6) cancels the
// batches without a step before this runs, so the accumulated gradient is what gets clipped.
#pragma once

#include <cmath>
#include <limits>
#include <vector>

#include "strata/learn/learner.hpp"

namespace strata {

/// PyTorch's clip_grad_norm_: scales the grads of params so that their global norm_type-norm is at
/// most max_norm; returns the norm before clipping (0 when no param has a grad).
inline double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2) {
  STRATA_CHECK(max_norm >= 0, "clip_grad_norm_", "got max_norm = ", max_norm, ", expected max_norm >= 0");
  STRATA_CHECK(norm_type > 0, "clip_grad_norm_", "got norm_type = ", norm_type,
               ", expected a norm_type > 0 (e.g. 2, 1 or INFINITY)");
  NoGrad ng;
  std::vector<Tensor> grads;
  for (const Tensor& p : params)
    if (p.defined() && p.grad().defined()) grads.push_back(p.grad());
  if (grads.empty()) return 0.0;
  const bool inf = std::isinf(norm_type);
  double total = 0;
  for (const Tensor& g : grads) {
    const Tensor a = abs(g.to(DType::f64));
    if (inf) total = std::max(total, amax(a).item<double>());
    else total += (norm_type == 2 ? sum(a * a) : sum(a.pow(norm_type))).item<double>();
  }
  if (!inf) total = std::pow(total, 1.0 / norm_type);
  const double coef = max_norm / (total + 1e-6);
  if (coef < 1.0)
    for (Tensor& g : grads) g.mul_(coef);
  return total;
}

/// Clips the global norm of learn.model's gradients to max_norm before every step (fastai's GradientClip).
class GradientClip : public Callback {
 public:
  double max_norm, norm_type;
  /// The global norm before clipping, at the last step.
  double last_norm = 0;

  explicit GradientClip(double max_norm_ = 1.0, double norm_type_ = 2) : max_norm(max_norm_), norm_type(norm_type_) {
    STRATA_CHECK(max_norm >= 0 && norm_type > 0, "GradientClip", "got max_norm = ", max_norm, ", norm_type = ",
                 norm_type, ", expected max_norm >= 0 and norm_type > 0");
    order = 11;
  }
  std::string name() const override { return "GradientClip"; }

  void before_step() override { last_norm = clip_grad_norm_(learn->model->parameters(), max_norm, norm_type); }
};

}  // namespace strata
