// Stats and steppers: the pieces an Optimizer is composed of (fastai v2, fastai/optimizer.py).
//
// An optimizer is an ordered list of OptSteps run on every parameter that has a gradient. A *stat*
// updates the parameter's state (a running average of the gradient, a step count); a *stepper*
// changes the parameter (or its gradient) from that state and the group's hyper-parameters. Each
// optimizer in optimizers.hpp lists its steps in the order of its paper's algorithm, and each step
// here names the line it implements. State keys follow fastai: tensors "grad_avg", "sqr_avg",
// "slow_p"; scalars "step", "lookahead_count".
//
// Contract: steps run under NoGrad (Optimizer::step sets it) and change p, p.grad() and the state in
// place; p.grad() is defined. Notation below: g = p.grad(), t = step count, lr/mom/sqr_mom/eps/wd/beta
// the group's hypers.
// Fused steps: fused_adam and fused_sgd_momentum run a whole optimizer's stats and steppers in one
// pass per parameter (kernels/cpu/optim_update.hpp), with the same state keys, so checkpoints and
// the unfused composition are interchangeable; adam() and sgd() use them. On cuda, Optimizer::step
// collects the fused updates of all its parameters and launches them as multi-tensor kernels (a
// launch per run of parameters sharing device, dtype and scalars; detail::CudaStepBatch).
// References: Kingma & Ba 2015 (Adam, Algorithm 1); Loshchilov & Hutter 2019 (AdamW, Algorithm 2);
// Liu et al. 2020 (RAdam, Algorithm 2); You et al. 2020 (LAMB, Algorithm 2); Zhang et al. 2019
// (Lookahead, Algorithm 1).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/optim_update.hpp"
#include "strata/autograd/grad_mode.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

/// Hyper-parameters of one parameter group: "lr", "mom", "sqr_mom", "eps", "wd", "beta", ...
using Hypers = std::map<std::string, double>;

/// What an optimizer keeps per parameter.
struct ParamState {
  std::map<std::string, Tensor> tensors;  // "grad_avg", "sqr_avg", "slow_p"
  std::map<std::string, double> scalars;  // "step", "lookahead_count"
  bool force_train = false;               // never frozen (BatchNorm params when train_bn)
  bool do_wd = true;                      // false: weight_decay and l2_reg skip this parameter
};

/// One stat or stepper: updates state and/or the parameter p (under NoGrad) from p.grad() and the
/// group's hypers.
using OptStep = std::function<void(Tensor& p, ParamState& state, const Hypers& h)>;

namespace detail {
/// h[name], or an error naming the step that needed it.
inline double hyper(const Hypers& h, const char* name, const char* step) {
  const auto it = h.find(name);
  STRATA_CHECK(it != h.end(), step, "got hypers without \"", name,
               "\", expected the optimizer's defaults (or set_hyper) to set it");
  return it->second;
}
/// state.tensors[name], which an earlier stat must have made.
inline Tensor& stat(ParamState& s, const char* name, const char* step) {
  const auto it = s.tensors.find(name);
  STRATA_CHECK(it != s.tensors.end(), step, "got a parameter state without \"", name,
               "\", expected a stat that makes it (average_grad, average_sqr_grad) earlier in the steps");
  return it->second;
}
/// The step count t that step_stat keeps.
inline double step_count(const ParamState& s, const char* step) {
  const auto it = s.scalars.find("step");
  STRATA_CHECK(it != s.scalars.end() && it->second >= 1, step,
               "got a parameter state without a step count, expected step_stat earlier in the steps");
  return it->second;
}
/// Bias correction of an exponential average started at zero: 1 - mom^t (fastai's debias with
/// dampening 1 - mom).
inline double debias(double mom, double t) { return 1.0 - std::pow(mom, t); }
/// sqrt(sqr_avg / (1 - sqr_mom^t)) + eps, a fresh tensor (Adam's denominator sqrt(v̂_t) + eps).
inline Tensor adam_denominator(const Tensor& sqr_avg, double debias2, double eps) {
  Tensor denom = sqrt(sqr_avg);
  denom.mul_(1.0 / std::sqrt(debias2));
  if (eps != 0) denom.add_(eps);
  return denom;
}
}  // namespace detail

// ---------------------------------------------------------------- stats

/// t <- t + 1 (state.scalars["step"]).
inline void step_stat(Tensor&, ParamState& s, const Hypers&) { s.scalars["step"] += 1; }

/// grad_avg <- mom * grad_avg + damp * g, damp = 1 - mom with dampening, else 1.
/// Adam line 6: m_t = β1 m_{t-1} + (1 - β1) g_t (dampening); SGD momentum: v = μ v + g.
inline OptStep average_grad(bool dampening = false) {
  return [dampening](Tensor& p, ParamState& s, const Hypers& h) {
    const Tensor g = p.grad();
    Tensor& avg = s.tensors["grad_avg"];
    if (!avg.defined()) avg = zeros_like(g);
    const double mom = detail::hyper(h, "mom", "average_grad");
    avg.mul_(mom).add_(g, dampening ? 1.0 - mom : 1.0);
  };
}

/// sqr_avg <- sqr_mom * sqr_avg + damp * g^2, damp = 1 - sqr_mom with dampening, else 1.
/// Adam line 7: v_t = β2 v_{t-1} + (1 - β2) g_t^2.
inline OptStep average_sqr_grad(bool dampening = true) {
  return [dampening](Tensor& p, ParamState& s, const Hypers& h) {
    const Tensor g = p.grad();
    Tensor& avg = s.tensors["sqr_avg"];
    if (!avg.defined()) avg = zeros_like(g);
    const double sqr_mom = detail::hyper(h, "sqr_mom", "average_sqr_grad");
    Tensor g2 = mul(g, g);
    if (dampening) g2.mul_(1.0 - sqr_mom);
    avg.mul_(sqr_mom).add_(g2);
  };
}

// ---------------------------------------------------------------- steppers

/// p <- p - lr * g.  SGD: θ_t = θ_{t-1} - η g_t.
inline void sgd_step(Tensor& p, ParamState&, const Hypers& h) {
  p.add_(p.grad(), -detail::hyper(h, "lr", "sgd_step"));
}

/// Decoupled weight decay: p <- p * (1 - lr * wd).  AdamW line 12: θ_t = θ_{t-1} - η λ θ_{t-1}
/// (with the schedule multiplier folded into lr, as fastai and PyTorch do).
inline void weight_decay(Tensor& p, ParamState& s, const Hypers& h) {
  const double wd = detail::hyper(h, "wd", "weight_decay");
  if (s.do_wd && wd != 0) p.mul_(1.0 - detail::hyper(h, "lr", "weight_decay") * wd);
}

/// L2 regularisation: g <- g + wd * p.  AdamW line 6: g_t = ∇f(θ_{t-1}) + λ θ_{t-1}.
inline void l2_reg(Tensor& p, ParamState& s, const Hypers& h) {
  const double wd = detail::hyper(h, "wd", "l2_reg");
  if (!s.do_wd || wd == 0) return;
  Tensor g = p.grad();
  g.add_(p, wd);
}

/// p <- p - lr * grad_avg.  SGD with momentum: θ_t = θ_{t-1} - η v_t.
inline void momentum_step(Tensor& p, ParamState& s, const Hypers& h) {
  p.add_(detail::stat(s, "grad_avg", "momentum_step"), -detail::hyper(h, "lr", "momentum_step"));
}

/// p <- p - lr * m̂ / (sqrt(v̂) + eps), m̂ = grad_avg / (1 - mom^t), v̂ = sqr_avg / (1 - sqr_mom^t).
/// Adam lines 8-10 (bias-corrected moments, then the update).
inline void adam_step(Tensor& p, ParamState& s, const Hypers& h) {
  const char* op = "adam_step";
  const double t = detail::step_count(s, op), lr = detail::hyper(h, "lr", op);
  const double debias1 = detail::debias(detail::hyper(h, "mom", op), t);
  const double debias2 = detail::debias(detail::hyper(h, "sqr_mom", op), t);
  const Tensor denom = detail::adam_denominator(detail::stat(s, "sqr_avg", op), debias2, detail::hyper(h, "eps", op));
  Tensor update = div(detail::stat(s, "grad_avg", op), denom);
  update.mul_(-lr / debias1);
  p.add_(update);
}

/// RAdam: with ρ∞ = 2 / (1 - sqr_mom) - 1 and ρ_t = ρ∞ - 2 t sqr_mom^t / (1 - sqr_mom^t),
///   ρ_t > 5:  p <- p - lr * r_t * m̂ / (sqrt(v̂) + eps),
///             r_t = sqrt((ρ_t - 4)(ρ_t - 2) ρ∞ / ((ρ∞ - 4)(ρ∞ - 2) ρ_t))   (RAdam lines 8-12)
///   else:     p <- p - lr * m̂                                              (RAdam line 14)
/// beta != 0 passes the denominator through softplus(beta * x) / beta (fastai's option).
inline void radam_step(Tensor& p, ParamState& s, const Hypers& h) {
  const char* op = "radam_step";
  const double t = detail::step_count(s, op), lr = detail::hyper(h, "lr", op);
  const double sqr_mom = detail::hyper(h, "sqr_mom", op);
  const double debias1 = detail::debias(detail::hyper(h, "mom", op), t);
  const double debias2 = detail::debias(sqr_mom, t);
  const double r_inf = 2.0 / (1.0 - sqr_mom) - 1.0;
  const double r = r_inf - 2.0 * t * std::pow(sqr_mom, t) / debias2;
  const Tensor& grad_avg = detail::stat(s, "grad_avg", op);
  if (r <= 5) {  // variance not tractable yet: un-adapted momentum step
    p.add_(grad_avg, -lr / debias1);
    return;
  }
  const double rect = std::sqrt((r - 4) * (r - 2) * r_inf / ((r_inf - 4) * (r_inf - 2) * r));
  Tensor denom = detail::adam_denominator(detail::stat(s, "sqr_avg", op), debias2, detail::hyper(h, "eps", op));
  const double beta = detail::hyper(h, "beta", op);
  if (beta != 0) {
    denom = softplus(mul(denom, beta));
    denom.mul_(1.0 / beta);
  }
  Tensor update = div(grad_avg, denom);
  update.mul_(-lr * rect / debias1);
  p.add_(update);
}

/// LAMB, as fastai writes it: u = m̂ / (sqrt(v̂) + eps), q = min(rms(p) / rms(u), 10) (1 when either
/// is 0), p <- p - lr * q * u.  LAMB lines 9-12, with the trust ratio φ(||θ||)/||u|| clamped to 10
/// and weight decay left to a separate weight_decay step.
inline void lamb_step(Tensor& p, ParamState& s, const Hypers& h) {
  const char* op = "lamb_step";
  const double t = detail::step_count(s, op), lr = detail::hyper(h, "lr", op);
  const double debias1 = detail::debias(detail::hyper(h, "mom", op), t);
  const double debias2 = detail::debias(detail::hyper(h, "sqr_mom", op), t);
  const Tensor denom = detail::adam_denominator(detail::stat(s, "sqr_avg", op), debias2, detail::hyper(h, "eps", op));
  Tensor update = div(detail::stat(s, "grad_avg", op), denom);
  update.mul_(1.0 / debias1);
  const double r1 = std::sqrt(mean(mul(p, p)).item<double>());
  const double r2 = std::sqrt(mean(mul(update, update)).item<double>());
  const double q = r1 == 0 || r2 == 0 ? 1.0 : std::min(r1 / r2, 10.0);
  update.mul_(-lr * q);
  p.add_(update);
}

/// Lookahead, before the inner steps: slow weights φ <- θ the first time p is stepped
/// (Lookahead line 1: φ_0 = θ_0).
inline void lookahead_init(Tensor& p, ParamState& s, const Hypers&) {
  Tensor& slow = s.tensors["slow_p"];
  if (!slow.defined()) slow = clone(detach(p));
}

/// Lookahead, after the inner steps: every k-th step of p, φ <- φ + alpha (θ - φ), θ <- φ
/// (Lookahead lines 6-7: φ_t = φ_{t-1} + α (θ_{t,k} - φ_{t-1}), then θ_{t+1,0} = φ_t).
inline OptStep lookahead_sync(int64_t k, double alpha) {
  STRATA_CHECK(k >= 1, "lookahead", "got k = ", k, ", expected k >= 1 (steps between syncs)");
  STRATA_CHECK(alpha >= 0 && alpha <= 1, "lookahead", "got alpha = ", alpha, ", expected 0 <= alpha <= 1");
  return [k, alpha](Tensor& p, ParamState& s, const Hypers&) {
    const double count = s.scalars["lookahead_count"] += 1;
    if (std::fmod(count, double(k)) != 0) return;
    Tensor& slow = detail::stat(s, "slow_p", "lookahead_sync");
    Tensor diff = sub(p, slow);
    diff.mul_(alpha);
    slow.add_(diff);
    p.copy_(slow);
  };
}

// ---------------------------------------------------------------- fused

namespace detail {
/// Whether the fused kernels can run: every tensor defined, contiguous, on p's device, of p's dtype and size;
/// p f32 or f64 on the CPU, any floating dtype on cuda.
inline bool fusable(const Tensor& p, std::initializer_list<const Tensor*> ts) {
  const bool wide = p.dtype() == DType::f32 || p.dtype() == DType::f64;
  if (!(p.device().is_cuda() ? p.is_floating_point() : wide) || !p.is_contiguous()) return false;
  for (const Tensor* t : ts)
    if (!t->defined() || t->dtype() != p.dtype() || !t->is_contiguous() || t->numel() != p.numel() ||
        t->device() != p.device())
      return false;
  return true;
}

/// One parameter's fused cuda step: its tensors and scalars.
struct CudaAdamItem {
  Tensor p, g, m, v;
  cpu::AdamArgs a;
};
struct CudaSgdItem {
  Tensor p, g, m;
  cpu::SgdArgs a;
};

/// The cuda path of the fused steps (include/strata/backend/cuda/optim.hpp: kernels/cuda/optim_update.cuh):
/// one multi-tensor launch over a list of parameters of one device and dtype that share their scalars.
inline CudaHook<void(std::span<const CudaAdamItem> items)> cuda_adam_hook{"adam_step"};
inline CudaHook<void(std::span<const CudaSgdItem> items)> cuda_sgd_momentum_hook{"momentum_step"};

inline bool same_args(const cpu::AdamArgs& x, const cpu::AdamArgs& y) {
  return x.lr == y.lr && x.mom == y.mom && x.sqr_mom == y.sqr_mom && x.eps == y.eps && x.wd == y.wd &&
         x.decay == y.decay && x.debias1 == y.debias1 && x.debias2 == y.debias2;
}
inline bool same_args(const cpu::SgdArgs& x, const cpu::SgdArgs& y) {
  return x.lr == y.lr && x.mom == y.mom && x.wd == y.wd && x.decay == y.decay;
}

/// Launches items in runs that share device, dtype and scalars: one multi-tensor launch per run
/// (a model's parameters usually make two runs, with and without weight decay).
template <class Item, class Hook>
void launch_runs(std::vector<Item>& items, const Hook& hook) {
  std::vector<bool> done(items.size(), false);
  std::vector<Item> run;
  for (size_t i = 0; i < items.size(); ++i) {
    if (done[i]) continue;
    run.clear();
    for (size_t j = i; j < items.size(); ++j)
      if (!done[j] && items[j].p.device() == items[i].p.device() && items[j].p.dtype() == items[i].p.dtype() &&
          same_args(items[j].a, items[i].a)) {
        run.push_back(items[j]);
        done[j] = true;
      }
    hook(std::span<const Item>(run));
  }
  items.clear();
}

/// The fused cuda steps of an Optimizer::step, kept while it runs its last step over every parameter
/// and launched together at the end (multi-tensor apply: a few launches instead of one per parameter).
/// Only the last step is batched, so no later step can read a parameter before its update.
struct CudaStepBatch {
  std::vector<CudaAdamItem> adam;
  std::vector<CudaSgdItem> sgd;
  void launch() {
    launch_runs(adam, cuda_adam_hook);
    launch_runs(sgd, cuda_sgd_momentum_hook);
  }
};
/// The batch the fused steps add to on this thread (nullptr: launch at once).
inline thread_local CudaStepBatch* cuda_step_batch = nullptr;

/// Points cuda_step_batch at `b` for a scope.
class CudaStepBatchScope {
 public:
  explicit CudaStepBatchScope(CudaStepBatch* b) : prev_(cuda_step_batch) { cuda_step_batch = b; }
  ~CudaStepBatchScope() { cuda_step_batch = prev_; }
  CudaStepBatchScope(const CudaStepBatchScope&) = delete;
  CudaStepBatchScope& operator=(const CudaStepBatchScope&) = delete;

 private:
  CudaStepBatch* prev_;
};

/// Adds the step to this thread's batch, or launches it alone when there is none.
template <class Item>
void cuda_fused_step(Item item) {
  if constexpr (std::is_same_v<Item, CudaAdamItem>) {
    if (cuda_step_batch) return cuda_step_batch->adam.push_back(std::move(item));
    cuda_adam_hook(std::span<const CudaAdamItem>(&item, 1));
  } else {
    if (cuda_step_batch) return cuda_step_batch->sgd.push_back(std::move(item));
    cuda_sgd_momentum_hook(std::span<const CudaSgdItem>(&item, 1));
  }
}
/// Which decay a fused step applies to p.
inline cpu::DecayMode decay_mode(const ParamState& s, const Hypers& h, bool decouple_wd, const char* op) {
  const double wd = hyper(h, "wd", op);
  if (!s.do_wd || wd == 0) return cpu::DecayMode::none;
  return decouple_wd ? cpu::DecayMode::decoupled : cpu::DecayMode::l2;
}
}  // namespace detail

/// Adam in one pass per parameter: step_stat, l2_reg | weight_decay, average_grad(dampening), average_sqr_grad
/// and adam_step, fused (kernels/cpu/optim_update.hpp: adam_update; on cuda kernels/cuda/optim_update.cuh). Runs
/// those steps in turn instead when a tensor is not a contiguous tensor of p's dtype and device (f32/f64 on the CPU).
inline OptStep fused_adam(bool decouple_wd) {
  const std::vector<OptStep> steps{step_stat, decouple_wd ? OptStep(weight_decay) : OptStep(l2_reg),
                                   average_grad(/*dampening=*/true), average_sqr_grad(), adam_step};
  return [decouple_wd, steps](Tensor& p, ParamState& s, const Hypers& h) {
    const char* op = "adam_step";
    Tensor g = p.grad();
    Tensor& m = s.tensors["grad_avg"];
    Tensor& v = s.tensors["sqr_avg"];
    if (!m.defined()) m = zeros_like(g);
    if (!v.defined()) v = zeros_like(g);
    if (!detail::fusable(p, {&g, &m, &v})) {
      for (const OptStep& st : steps) st(p, s, h);
      return;
    }
    const double t = s.scalars["step"] += 1;
    const double mom = detail::hyper(h, "mom", op), sqr_mom = detail::hyper(h, "sqr_mom", op);
    const cpu::AdamArgs a{.lr = detail::hyper(h, "lr", op), .mom = mom, .sqr_mom = sqr_mom,
                          .eps = detail::hyper(h, "eps", op), .wd = detail::hyper(h, "wd", op),
                          .decay = detail::decay_mode(s, h, decouple_wd, op),
                          .debias1 = detail::debias(mom, t), .debias2 = detail::debias(sqr_mom, t)};
    if (p.device().is_cuda()) return detail::cuda_fused_step(detail::CudaAdamItem{p, g, m, v, a});
    dispatch_float(p.dtype(), op, [&]<class T>(type_tag<T>) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::adam_update<T>(p.data_ptr<T>(), g.data_ptr<T>(), m.data_ptr<T>(), v.data_ptr<T>(), p.numel(), a);
    });
  };
}

/// SGD with momentum in one pass per parameter: l2_reg | weight_decay, average_grad and momentum_step, fused
/// (kernels/cpu/optim_update.hpp: sgd_momentum_update); runs those steps in turn when it cannot fuse.
inline OptStep fused_sgd_momentum(bool decouple_wd) {
  const std::vector<OptStep> steps{decouple_wd ? OptStep(weight_decay) : OptStep(l2_reg), average_grad(),
                                   momentum_step};
  return [decouple_wd, steps](Tensor& p, ParamState& s, const Hypers& h) {
    const char* op = "momentum_step";
    Tensor g = p.grad();
    Tensor& m = s.tensors["grad_avg"];
    if (!m.defined()) m = zeros_like(g);
    if (!detail::fusable(p, {&g, &m})) {
      for (const OptStep& st : steps) st(p, s, h);
      return;
    }
    const cpu::SgdArgs a{.lr = detail::hyper(h, "lr", op), .mom = detail::hyper(h, "mom", op),
                         .wd = detail::hyper(h, "wd", op), .decay = detail::decay_mode(s, h, decouple_wd, op)};
    if (p.device().is_cuda()) return detail::cuda_fused_step(detail::CudaSgdItem{p, g, m, a});
    dispatch_float(p.dtype(), op, [&]<class T>(type_tag<T>) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::sgd_momentum_update<T>(p.data_ptr<T>(), g.data_ptr<T>(), m.data_ptr<T>(), p.numel(), a);
    });
  };
}

}  // namespace strata
