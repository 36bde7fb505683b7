// The optimizers, each a list of stats and steppers in the order of its paper's algorithm, with
// fastai's defaults; and OptFuncs, "which optimizer" for a Learner to build on its own groups.
//
//   sgd     SGD, with momentum when mom != 0          (fastai SGD)
//   adam    Adam; decoupled weight decay = AdamW      (fastai Adam; Kingma & Ba 2015, Loshchilov & Hutter 2019)
//   adamw   adam with decoupled weight decay always
//   radam   rectified Adam                            (fastai RAdam; Liu et al. 2020)
//   lamb    layer-wise trust ratio on the Adam step   (fastai Lamb; You et al. 2020)
//   lookahead(opt, k, alpha)  slow weights synced every k steps (fastai Lookahead; Zhang et al. 2019)
//   ranger  lookahead(radam(...))                     (fastai ranger)
// Weight decay: decouple_wd = true decays the weights (weight_decay: p *= 1 - lr*wd), false adds
// wd*p to the gradient (l2_reg). Params: ParamGroups (one vector per group) or one vector of tensors;
// braced groups of single tensors need the type spelled out: sgd(ParamGroups{{w}, {b}}, lr).
// Reference: fastai/optimizer.py.
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "strata/optim/optimizer.hpp"

namespace strata {

namespace detail {
/// The weight-decay half of every optimizer: l2_reg before the stats, or weight_decay before the update.
inline OptStep decay_step(bool decouple_wd) { return decouple_wd ? OptStep(weight_decay) : OptStep(l2_reg); }
}  // namespace detail

/// SGD: [l2_reg | weight_decay], then p -= lr * g, or with mom != 0 v = mom * v + g, p -= lr * v.
inline std::unique_ptr<Optimizer> sgd(ParamGroups params, double lr, double mom = 0, double wd = 0,
                                      bool decouple_wd = true) {
  // with momentum, fused_sgd_momentum runs in one pass: [l2_reg | weight_decay], v_t = μ v_{t-1} + g_t, θ_t = θ_{t-1} - η v_t
  std::vector<OptStep> steps = mom != 0 ? std::vector<OptStep>{fused_sgd_momentum(decouple_wd)}
                                        : std::vector<OptStep>{detail::decay_step(decouple_wd), sgd_step};
  return std::make_unique<Optimizer>(std::move(params), std::move(steps),
                                     Hypers{{"lr", lr}, {"mom", mom}, {"wd", wd}});
}

/// Adam (AdamW with decouple_wd): Kingma & Ba Algorithm 1 / Loshchilov & Hutter Algorithm 2.
inline std::unique_ptr<Optimizer> adam(ParamGroups params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                       double eps = 1e-5, double wd = 0.01, bool decouple_wd = true) {
  // fused_adam runs these steps in one pass per parameter:
  //   step_stat                         t <- t + 1
  //   l2_reg | weight_decay             g_t += λ θ_{t-1}  |  θ_{t-1} *= 1 - η λ
  //   average_grad(dampening = true)    m_t = β1 m_{t-1} + (1 - β1) g_t
  //   average_sqr_grad()                v_t = β2 v_{t-1} + (1 - β2) g_t^2
  //   adam_step                         θ_t = θ_{t-1} - η m̂_t / (sqrt(v̂_t) + ε)
  return std::make_unique<Optimizer>(std::move(params), std::vector<OptStep>{fused_adam(decouple_wd)},
                                     Hypers{{"lr", lr}, {"mom", mom}, {"sqr_mom", sqr_mom}, {"eps", eps}, {"wd", wd}});
}

/// AdamW: adam with decoupled weight decay.
inline std::unique_ptr<Optimizer> adamw(ParamGroups params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                        double eps = 1e-5, double wd = 0.01) {
  return adam(std::move(params), lr, mom, sqr_mom, eps, wd, /*decouple_wd=*/true);
}

/// RAdam: Liu et al. Algorithm 2 (momentum steps until the variance rectification is tractable).
inline std::unique_ptr<Optimizer> radam(ParamGroups params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                        double eps = 1e-5, double wd = 0, double beta = 0, bool decouple_wd = true) {
  std::vector<OptStep> steps{
      step_stat,                          // t <- t + 1
      detail::decay_step(decouple_wd),
      average_grad(/*dampening=*/true),   // m_t
      average_sqr_grad(),                 // v_t
      radam_step,                         // ρ_t > 5 ? rectified adaptive step : momentum step
  };
  return std::make_unique<Optimizer>(
      std::move(params), std::move(steps),
      Hypers{{"lr", lr}, {"mom", mom}, {"sqr_mom", sqr_mom}, {"eps", eps}, {"wd", wd}, {"beta", beta}});
}

/// LAMB: You et al. Algorithm 2, as fastai writes it (trust ratio of rms norms, clamped to 10).
inline std::unique_ptr<Optimizer> lamb(ParamGroups params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                       double eps = 1e-5, double wd = 0, bool decouple_wd = true) {
  std::vector<OptStep> steps{
      step_stat,                          // t <- t + 1
      detail::decay_step(decouple_wd),
      average_grad(/*dampening=*/true),   // m_t
      average_sqr_grad(),                 // v_t
      lamb_step,                          // θ_t = θ_{t-1} - η φ(||θ||)/||u|| u, u = m̂/(sqrt(v̂)+ε)
  };
  return std::make_unique<Optimizer>(std::move(params), std::move(steps),
                                     Hypers{{"lr", lr}, {"mom", mom}, {"sqr_mom", sqr_mom}, {"eps", eps}, {"wd", wd}});
}

/// Lookahead around `inner`: its steps run between lookahead_init and lookahead_sync, so each param's
/// slow weights move alpha of the way to the fast ones every k of its steps. fastai counts optimizer
/// steps instead and copies every param's slow weights at the first step; the two agree whenever all
/// params are stepped together (they differ only for params frozen or gradient-less for a while).
inline std::unique_ptr<Optimizer> lookahead(std::unique_ptr<Optimizer> inner, int64_t k = 6, double alpha = 0.5) {
  STRATA_CHECK(inner != nullptr, "lookahead", "got a null optimizer, expected one to wrap");
  OptStep sync = lookahead_sync(k, alpha);  // checks k and alpha
  inner->steps.insert(inner->steps.begin(), lookahead_init);  // φ_0 = θ_0
  inner->steps.push_back(std::move(sync));                    // every k: φ += α (θ - φ), θ = φ
  return inner;
}

/// Ranger: lookahead(radam(...)), with fastai's ranger defaults.
inline std::unique_ptr<Optimizer> ranger(ParamGroups params, double lr, double mom = 0.95, double sqr_mom = 0.99,
                                         double eps = 1e-6, double wd = 0.01, double beta = 0,
                                         bool decouple_wd = true, int64_t k = 6, double alpha = 0.5) {
  return lookahead(radam(std::move(params), lr, mom, sqr_mom, eps, wd, beta, decouple_wd), k, alpha);
}

// ---- one group of params
inline std::unique_ptr<Optimizer> sgd(std::vector<Tensor> params, double lr, double mom = 0, double wd = 0,
                                      bool decouple_wd = true) {
  return sgd(ParamGroups{std::move(params)}, lr, mom, wd, decouple_wd);
}
inline std::unique_ptr<Optimizer> adam(std::vector<Tensor> params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                       double eps = 1e-5, double wd = 0.01, bool decouple_wd = true) {
  return adam(ParamGroups{std::move(params)}, lr, mom, sqr_mom, eps, wd, decouple_wd);
}
inline std::unique_ptr<Optimizer> adamw(std::vector<Tensor> params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                        double eps = 1e-5, double wd = 0.01) {
  return adamw(ParamGroups{std::move(params)}, lr, mom, sqr_mom, eps, wd);
}
inline std::unique_ptr<Optimizer> radam(std::vector<Tensor> params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                        double eps = 1e-5, double wd = 0, double beta = 0, bool decouple_wd = true) {
  return radam(ParamGroups{std::move(params)}, lr, mom, sqr_mom, eps, wd, beta, decouple_wd);
}
inline std::unique_ptr<Optimizer> lamb(std::vector<Tensor> params, double lr, double mom = 0.9, double sqr_mom = 0.99,
                                       double eps = 1e-5, double wd = 0, bool decouple_wd = true) {
  return lamb(ParamGroups{std::move(params)}, lr, mom, sqr_mom, eps, wd, decouple_wd);
}
inline std::unique_ptr<Optimizer> ranger(std::vector<Tensor> params, double lr, double mom = 0.95,
                                         double sqr_mom = 0.99, double eps = 1e-6, double wd = 0.01, double beta = 0,
                                         bool decouple_wd = true, int64_t k = 6, double alpha = 0.5) {
  return ranger(ParamGroups{std::move(params)}, lr, mom, sqr_mom, eps, wd, beta, decouple_wd, k, alpha);
}

// ---------------------------------------------------------------- OptFuncs

/// "Which optimizer": builds one on a Learner's param groups with its lr.
using OptFunc = std::function<std::unique_ptr<Optimizer>(ParamGroups groups, double lr)>;

inline OptFunc SGD(double mom = 0, double wd = 0, bool decouple_wd = true) {
  return [=](ParamGroups g, double lr) { return sgd(std::move(g), lr, mom, wd, decouple_wd); };
}
inline OptFunc Adam(double mom = 0.9, double sqr_mom = 0.99, double eps = 1e-5, double wd = 0.01,
                    bool decouple_wd = true) {
  return [=](ParamGroups g, double lr) { return adam(std::move(g), lr, mom, sqr_mom, eps, wd, decouple_wd); };
}
inline OptFunc AdamW(double mom = 0.9, double sqr_mom = 0.99, double eps = 1e-5, double wd = 0.01) {
  return [=](ParamGroups g, double lr) { return adamw(std::move(g), lr, mom, sqr_mom, eps, wd); };
}
inline OptFunc RAdam(double mom = 0.9, double sqr_mom = 0.99, double eps = 1e-5, double wd = 0, double beta = 0,
                     bool decouple_wd = true) {
  return [=](ParamGroups g, double lr) { return radam(std::move(g), lr, mom, sqr_mom, eps, wd, beta, decouple_wd); };
}
inline OptFunc Lamb(double mom = 0.9, double sqr_mom = 0.99, double eps = 1e-5, double wd = 0,
                    bool decouple_wd = true) {
  return [=](ParamGroups g, double lr) { return lamb(std::move(g), lr, mom, sqr_mom, eps, wd, decouple_wd); };
}
inline OptFunc Ranger(double mom = 0.95, double sqr_mom = 0.99, double eps = 1e-6, double wd = 0.01, double beta = 0,
                      bool decouple_wd = true, int64_t k = 6, double alpha = 0.5) {
  return [=](ParamGroups g, double lr) {
    return ranger(std::move(g), lr, mom, sqr_mom, eps, wd, beta, decouple_wd, k, alpha);
  };
}
/// Lookahead around any OptFunc.
inline OptFunc Lookahead(OptFunc inner, int64_t k = 6, double alpha = 0.5) {
  lookahead_sync(k, alpha);  // check k and alpha now, not at the first fit
  return [inner = std::move(inner), k, alpha](ParamGroups g, double lr) {
    return lookahead(inner(std::move(g), lr), k, alpha);
  };
}

}  // namespace strata
