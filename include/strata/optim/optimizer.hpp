// Optimizer: parameter groups with their hyper-parameters, per-parameter state, and a list of
// stats and steppers run on every parameter that has a gradient (fastai v2's Optimizer).
//
// Contract:
// - step() runs `steps`, in order, under NoGrad, on every param that requires grad and has a
//   defined grad; the state it reads and writes is the param's ParamState.
// - zero_grad() zeroes the grads in place, as fastai does (zero_grad(true) drops them instead, as
//   PyTorch's set_to_none).
// - Hypers are per group. set_hyper takes one value (every group), one per group, or a Slice:
//   Slice{lo, hi} spreads lo..hi geometrically over the groups (even_mults), Slice{0, hi} (fastai's
//   slice(hi)) gives hi / 10 to every group but the last, hi to the last.
// - freeze_to(n): groups before n stop requiring grad (except params whose state has force_train),
//   the others require it; n < 0 counts from the end. freeze() = freeze_to(-1), unfreeze() = freeze_to(0).
// - state_dict(): "hypers.<g>.<name>" (0-dim f64), "state.<g>.<i>.<name>" (a copy of each state tensor),
//   "scalars.<g>.<i>.<name>" (0-dim f64). load_state_dict takes that back onto the same group layout.
// Tensor handles share storage and autograd fields, so the Tensors in param_groups are the model's
// parameters. Reference: fastai/optimizer.py (Optimizer, _BaseOptimizer).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "strata/optim/steppers.hpp"

namespace strata {

/// One parameter group: its params and its hyper-parameters.
struct ParamGroup {
  std::vector<Tensor> params;
  Hypers hypers;
};

/// Parameters split into groups (body, head, ...); a single group is {params}.
using ParamGroups = std::vector<std::vector<Tensor>>;

/// fastai's slice for hypers: Slice{lo, hi} or, with start 0, slice(hi).
struct Slice {
  double start = 0;
  double stop = 0;
};

/// n values from start to stop in equal ratios (start * (stop/start)^(i/(n-1))); {stop} when n == 1.
inline std::vector<double> even_mults(double start, double stop, int64_t n) {
  STRATA_CHECK(n >= 1, "even_mults", "got n = ", n, ", expected n >= 1");
  if (n == 1) return {stop};
  STRATA_CHECK(start != 0 && stop / start > 0, "even_mults", "got start ", start, " and stop ", stop,
               ", expected two nonzero values of the same sign");
  const double step = std::pow(stop / start, 1.0 / double(n - 1));
  std::vector<double> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = start * std::pow(step, double(i));
  return out;
}

class Optimizer {
 public:
  Optimizer(ParamGroups groups, std::vector<OptStep> steps_, Hypers defaults) : steps(std::move(steps_)) {
    STRATA_CHECK(!groups.empty(), "Optimizer", "got no parameter groups, expected at least one");
    std::unordered_set<const TensorImpl*> seen;
    for (size_t g = 0; g < groups.size(); ++g)
      for (size_t i = 0; i < groups[g].size(); ++i) {
        const Tensor& p = groups[g][i];
        STRATA_CHECK(p.defined(), "Optimizer", "got an undefined tensor as parameter ", i, " of group ", g,
                     ", expected defined parameters");
        STRATA_CHECK(p.is_floating_point(), "Optimizer", "got a parameter of dtype ", p.dtype(), " (parameter ",
                     i, " of group ", g, "), expected a floating dtype");
        STRATA_CHECK(seen.insert(&p.impl()).second, "Optimizer", "got parameter ", i, " of group ", g,
                     " a second time, expected each parameter in one group once");
      }
    for (auto& params : groups) param_groups.push_back({std::move(params), defaults});
    state_.resize(param_groups.size());
  }
  /// One group.
  Optimizer(std::vector<Tensor> params, std::vector<OptStep> steps_, Hypers defaults)
      : Optimizer(ParamGroups{std::move(params)}, std::move(steps_), std::move(defaults)) {}
  virtual ~Optimizer() = default;

  /// Runs the steps, in order, on every param that requires grad and has a defined grad.
  /// Fused cuda steps in the last position are batched and launched together at the end (multi-tensor);
  /// when a step throws, the parameters stepped before it are still updated (as on the cpu).
  virtual void step() {
    NoGrad no_grad;
    detail::CudaStepBatch batch;
    try {
      for (size_t g = 0; g < param_groups.size(); ++g) {
        ParamGroup& group = param_groups[g];
        std::vector<ParamState>& states = state_for(g);
        for (size_t i = 0; i < group.params.size(); ++i) {
          Tensor& p = group.params[i];
          if (!p.requires_grad() || !p.grad().defined()) continue;
          for (size_t k = 0; k < steps.size(); ++k) {
            const detail::CudaStepBatchScope scope(k + 1 == steps.size() ? &batch : nullptr);
            steps[k](p, states[i], group.hypers);
          }
        }
      }
    } catch (...) {
      batch.launch();  // their state (step count, averages) has moved on: so must they
      throw;
    }
    batch.launch();
  }

  /// Zeroes every param's grad in place (fastai); set_to_none drops the grads instead.
  void zero_grad(bool set_to_none = false) {
    NoGrad no_grad;
    for (ParamGroup& group : param_groups)
      for (Tensor& p : group.params) {
        if (!p.grad().defined()) continue;
        if (set_to_none) {
          p.set_grad(Tensor());
        } else {
          Tensor g = p.grad();
          g.zero_();
        }
      }
  }

  /// The states of group g's params, in the order of param_groups[g].params.
  std::vector<ParamState>& state_for(size_t g) {
    STRATA_CHECK(g < param_groups.size(), "state_for", "got group ", g, ", expected a group index below ",
                 param_groups.size());
    if (state_.size() < param_groups.size()) state_.resize(param_groups.size());
    state_[g].resize(param_groups[g].params.size());  // params added to a group after construction
    return state_[g];
  }
  /// The state of parameter p (the same tensor, or a copy of its handle).
  ParamState& state_of(const Tensor& p) {
    for (size_t g = 0; g < param_groups.size(); ++g)
      for (size_t i = 0; i < param_groups[g].params.size(); ++i)
        if (param_groups[g].params[i].is_same(p)) return state_for(g)[i];
    detail::fail("state_of", "got a tensor of shape ", p.shape(), ", expected one of the optimizer's params");
  }
  /// Every param, group by group.
  std::vector<Tensor> all_params() const {
    std::vector<Tensor> out;
    for (const ParamGroup& group : param_groups) out.insert(out.end(), group.params.begin(), group.params.end());
    return out;
  }
  /// Drops the stats (averages, step counts), keeping force_train and do_wd.
  void clear_state() {
    for (size_t g = 0; g < param_groups.size(); ++g)
      for (ParamState& s : state_for(g)) s = flags_of(s);
  }

  // ---- hyper-parameters
  /// hypers[name] = v in every group.
  void set_hyper(const std::string& name, double v) { set_hyper(name, std::vector<double>{v}); }
  /// hypers[name] = v[g] in group g (one value: every group).
  void set_hyper(const std::string& name, const std::vector<double>& v) {
    STRATA_CHECK(v.size() == 1 || v.size() == param_groups.size(), "set_hyper", "got ", v.size(), " values for \"",
                 name, "\", expected 1 or one per parameter group (", param_groups.size(), ")");
    for (size_t g = 0; g < param_groups.size(); ++g) param_groups[g].hypers[name] = v.size() == 1 ? v[0] : v[g];
  }
  /// Slice{lo, hi}: even_mults(lo, hi, groups); Slice{0, hi}: hi / 10 for all groups but the last, hi last.
  void set_hyper(const std::string& name, Slice s) {
    const int64_t n = int64_t(param_groups.size());
    if (s.start != 0) return set_hyper(name, even_mults(s.start, s.stop, n));
    std::vector<double> v(size_t(n), s.stop / 10);
    v.back() = s.stop;
    set_hyper(name, v);
  }
  /// One Hypers per group (the Recorder reads the last group's lr and mom).
  std::vector<Hypers> hypers() const {
    std::vector<Hypers> out;
    for (const ParamGroup& group : param_groups) out.push_back(group.hypers);
    return out;
  }

  // ---- freezing
  /// Groups before n (n < 0: from the end) stop requiring grad unless force_train; the rest require it.
  void freeze_to(int64_t n) {
    const int64_t groups = int64_t(param_groups.size());
    frozen_idx_ = std::clamp(n >= 0 ? n : groups + n, int64_t(0), groups);
    for (int64_t g = 0; g < groups; ++g) {
      std::vector<ParamState>& states = state_for(size_t(g));
      for (size_t i = 0; i < param_groups[size_t(g)].params.size(); ++i)
        param_groups[size_t(g)].params[i].requires_grad_(g >= frozen_idx_ || states[i].force_train);
    }
  }
  /// Freezes every group but the last.
  void freeze() {
    STRATA_CHECK(param_groups.size() > 1, "freeze", "got ", param_groups.size(),
                 " parameter group, expected at least 2 (freeze trains only the last group)");
    freeze_to(-1);
  }
  void unfreeze() { freeze_to(0); }
  /// Index of the first group that trains.
  int64_t frozen_idx() const { return frozen_idx_; }

  // ---- checkpoints
  virtual std::map<std::string, Tensor> state_dict() const {
    std::map<std::string, Tensor> sd;
    for (size_t g = 0; g < param_groups.size(); ++g) {
      const std::string gs = std::to_string(g);
      for (const auto& [name, v] : param_groups[g].hypers)
        sd["hypers." + gs + "." + name] = scalar_tensor(v, {.dtype = DType::f64});
      if (g >= state_.size()) continue;
      for (size_t i = 0; i < state_[g].size(); ++i) {
        const std::string ps = gs + "." + std::to_string(i) + ".";
        for (const auto& [name, t] : state_[g][i].tensors)
          if (t.defined()) sd["state." + ps + name] = clone(detach(t));
        for (const auto& [name, v] : state_[g][i].scalars)
          sd["scalars." + ps + name] = scalar_tensor(v, {.dtype = DType::f64});
      }
    }
    return sd;
  }
  /// Replaces hypers and stats by those of state_dict() from an optimizer with the same groups.
  virtual void load_state_dict(const std::map<std::string, Tensor>& sd) {
    std::vector<Hypers> hypers(param_groups.size());
    std::vector<std::vector<ParamState>> states(param_groups.size());
    for (size_t g = 0; g < param_groups.size(); ++g) {
      states[g] = state_for(g);
      for (ParamState& s : states[g]) s = flags_of(s);
    }
    for (const auto& [key, t] : sd) {
      // key: kind.g.name or kind.g.i.name
      const size_t a = key.find('.'), b = a == std::string::npos ? a : key.find('.', a + 1);
      STRATA_CHECK(b != std::string::npos, "load_state_dict", "got key \"", key,
                   "\", expected hypers.<g>.<name>, state.<g>.<i>.<name> or scalars.<g>.<i>.<name>");
      const std::string kind = key.substr(0, a);
      const size_t g = parse_index(key.substr(a + 1, b - a - 1), key);
      STRATA_CHECK(g < param_groups.size(), "load_state_dict", "got key \"", key, "\" for group ", g,
                   ", expected a state dict of ", param_groups.size(), " groups");
      if (kind == "hypers") {
        hypers[g][key.substr(b + 1)] = t.item<double>();
        continue;
      }
      const size_t c = key.find('.', b + 1);
      STRATA_CHECK((kind == "state" || kind == "scalars") && c != std::string::npos, "load_state_dict", "got key \"",
                   key, "\", expected hypers.<g>.<name>, state.<g>.<i>.<name> or scalars.<g>.<i>.<name>");
      const size_t i = parse_index(key.substr(b + 1, c - b - 1), key);
      STRATA_CHECK(i < states[g].size(), "load_state_dict", "got key \"", key, "\" for parameter ", i,
                   ", expected group ", g, " to have ", states[g].size(), " parameters");
      if (kind == "state") states[g][i].tensors[key.substr(c + 1)] = clone(detach(t));
      else states[g][i].scalars[key.substr(c + 1)] = t.item<double>();
    }
    for (size_t g = 0; g < param_groups.size(); ++g)
      STRATA_CHECK(!hypers[g].empty() || param_groups[g].hypers.empty(), "load_state_dict", "got no hypers for group ", g, ", expected a state dict of ",
                   param_groups.size(), " groups");
    for (size_t g = 0; g < param_groups.size(); ++g) param_groups[g].hypers = std::move(hypers[g]);
    state_ = std::move(states);
  }

  std::vector<ParamGroup> param_groups;
  /// The stats and steppers step() runs, in order.
  std::vector<OptStep> steps;

 private:
  /// A fresh state that keeps only what the Learner set (force_train, do_wd), as fastai's clear_state.
  static ParamState flags_of(const ParamState& s) {
    ParamState out;
    out.force_train = s.force_train;
    out.do_wd = s.do_wd;
    return out;
  }
  static size_t parse_index(const std::string& s, const std::string& key) {
    STRATA_CHECK(!s.empty() && s.size() < 10 && s.find_first_not_of("0123456789") == std::string::npos,
                 "load_state_dict", "got key \"", key, "\", expected a number where \"", s, "\" is");
    return size_t(std::stoul(s));
  }

  std::vector<std::vector<ParamState>> state_;  // [group][param], parallel to param_groups
  int64_t frozen_idx_ = 0;
};

}  // namespace strata
