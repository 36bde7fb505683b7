// ParamScheduler: sets hyper-parameters from schedules of the training position, before every
// training batch (fastai v2, callback/schedule.py); and the Learner's fit_one_cycle, fit_flat_cos and
// fine_tune.
//
//   before_batch (training): opt.set_hyper(name, sched(learn.pct_train)) for each scheduled name
//   after_batch  (training): hps[name] gets what the last parameter group now has
// A name may carry one schedule (every group) or one per parameter group (discriminative lrs).
//
// fit_one_cycle(n, lr_max, div = 25, div_final = 1e5, pct_start = 0.25, wd, moms = learn.moms):
//   per group g, with lr_max[g] from lr_max (a number, or a Slice spread over the groups):
//   lr  = combined_cos(pct_start, lr_max[g] / div, lr_max[g], lr_max[g] / div_final)
//   mom = combined_cos(pct_start, moms[0], moms[1], moms[2])           (0.95 -> 0.85 -> 0.95)
// fit_flat_cos(n, lr, div_final = 1e5, pct_start = 0.75, wd):
//   lr  = combined_cos(pct_start, lr[g], lr[g], lr[g] / div_final)     (flat, then cosine down)
// Both then fit(n, wd, cbs = {ParamScheduler, cbs...}, reset_opt), as fastai does.
// fine_tune(epochs, base_lr = 2e-3, freeze_epochs = 1, lr_mult = 100, pct_start = 0.3, div = 5), fastai's recipe:
//   freeze(); fit_one_cycle(freeze_epochs, slice(base_lr), pct_start = 0.99)   (head at base_lr, body groups / 10)
//   base_lr /= 2; unfreeze(); fit_one_cycle(epochs, Slice{base_lr / lr_mult, base_lr}, div, pct_start)
//
// Included by learner.hpp's last lines; see recorder.hpp for the include guard.
#include "strata/learn/learner.hpp"

#ifndef STRATA_LEARN_CALLBACKS_PARAM_SCHEDULER_HPP
#define STRATA_LEARN_CALLBACKS_PARAM_SCHEDULER_HPP

#include <map>
#include <memory>
#include <string>
#include <variant>
#include <vector>

#include "strata/optim/schedule.hpp"

namespace strata {

/// Schedules by hyper-parameter name: one for every group, or one per parameter group.
using HyperSchedules = std::map<std::string, std::vector<Schedule>>;

class ParamScheduler : public Callback {
 public:
  /// One schedule per name, for every parameter group: {{"lr", sched_cos(1e-3, 1e-5)}}.
  explicit ParamScheduler(const std::map<std::string, Schedule>& s) {
    for (const auto& [k, f] : s) scheds[k] = {f};
    init();
  }
  /// One schedule per name and per parameter group (or a single one for all groups).
  explicit ParamScheduler(HyperSchedules s) : scheds(std::move(s)) { init(); }
  std::string name() const override { return "ParamScheduler"; }

  HyperSchedules scheds;
  /// What the last group had at each training batch of the fit, by name.
  std::map<std::string, std::vector<double>> hps;

  void before_fit() override {
    hps.clear();
    const size_t groups = learn->opt->param_groups.size();
    for (const auto& [k, fs] : scheds) {
      STRATA_CHECK(fs.size() == 1 || fs.size() == groups, "ParamScheduler", "got ", fs.size(), " schedules for \"", k,
                   "\", expected 1 or one per parameter group (", groups, ")");
      hps[k] = {};
    }
  }
  void before_batch() override { update_val(learn->pct_train); }
  void after_batch() override {
    const Hypers h = learn->opt->hypers().back();
    for (auto& [k, v] : hps) v.push_back(h.at(k));
  }

 protected:
  /// Sets every scheduled hyper-parameter to its value at pos.
  void update_val(double pos) {
    for (const auto& [k, fs] : scheds) {
      std::vector<double> v;
      for (const Schedule& f : fs) v.push_back(f(pos));
      learn->opt->set_hyper(k, v);
    }
  }

 private:
  void init() {
    order = 60;
    run_valid = false;
    for (const auto& [k, fs] : scheds) {
      STRATA_CHECK(!fs.empty(), "ParamScheduler", "got no schedule for \"", k, "\", expected at least one");
      for (const Schedule& f : fs)
        STRATA_CHECK(f != nullptr, "ParamScheduler", "got an empty schedule for \"", k, "\", expected a function");
    }
  }
};

namespace detail {
/// The lr of each group after opt.set_hyper("lr", lr) (a number, or a Slice over the groups).
inline std::vector<double> group_lrs(Optimizer& opt, const std::variant<double, Slice>& lr) {
  std::visit([&](const auto& v) { opt.set_hyper("lr", v); }, lr);
  std::vector<double> out;
  for (const Hypers& h : opt.hypers()) out.push_back(h.at("lr"));
  return out;
}
}  // namespace detail

inline void Learner::fit_one_cycle(int n_epoch_, std::optional<std::variant<double, Slice>> lr_max, double div, double div_final,
                                   double pct_start, std::optional<double> wd_, std::vector<double> moms_,
                                   std::vector<CallbackPtr> cbs_, bool reset_opt) {
  STRATA_CHECK(div > 0 && div_final > 0, "fit_one_cycle", "got div = ", div, " and div_final = ", div_final,
               ", expected both > 0");
  STRATA_CHECK(pct_start >= 0 && pct_start <= 1, "fit_one_cycle", "got pct_start = ", pct_start,
               ", expected 0 <= pct_start <= 1");
  const std::vector<double> m = moms_.empty() ? moms : moms_;
  STRATA_CHECK(m.size() == 3, "fit_one_cycle", "got ", m.size(), " moms, expected 3 (start, middle, end)");
  if (!opt) create_opt();
  HyperSchedules s;
  for (double l : detail::group_lrs(*opt, lr_max.value_or(lr)))
    s["lr"].push_back(combined_cos(pct_start, l / div, l, l / div_final));
  s["mom"] = {combined_cos(pct_start, m[0], m[1], m[2])};
  cbs_.insert(cbs_.begin(), std::make_shared<ParamScheduler>(std::move(s)));
  fit(n_epoch_, {}, wd_, std::move(cbs_), reset_opt);
}

inline void Learner::fit_flat_cos(int n_epoch_, std::optional<std::variant<double, Slice>> lr_, double div_final, double pct_start,
                                  std::optional<double> wd_, std::vector<CallbackPtr> cbs_, bool reset_opt) {
  STRATA_CHECK(div_final > 0, "fit_flat_cos", "got div_final = ", div_final, ", expected div_final > 0");
  STRATA_CHECK(pct_start >= 0 && pct_start <= 1, "fit_flat_cos", "got pct_start = ", pct_start,
               ", expected 0 <= pct_start <= 1");
  if (!opt) create_opt();
  HyperSchedules s;
  for (double l : detail::group_lrs(*opt, lr_.value_or(lr))) s["lr"].push_back(combined_cos(pct_start, l, l, l / div_final));
  cbs_.insert(cbs_.begin(), std::make_shared<ParamScheduler>(std::move(s)));
  fit(n_epoch_, {}, wd_, std::move(cbs_), reset_opt);
}

inline void Learner::fine_tune(int epochs, double base_lr, int freeze_epochs, double lr_mult, double pct_start,
                               double div, std::optional<double> wd_, std::vector<CallbackPtr> cbs_) {
  STRATA_CHECK(base_lr > 0 && lr_mult > 0, "fine_tune", "got base_lr = ", base_lr, " and lr_mult = ", lr_mult,
               ", expected both > 0");
  freeze();
  fit_one_cycle(freeze_epochs, Slice{0, base_lr}, 25, 1e5, 0.99, wd_, {}, cbs_);  // slice(base_lr): head at base_lr
  base_lr /= 2;
  unfreeze();
  fit_one_cycle(epochs, Slice{base_lr / lr_mult, base_lr}, div, 1e5, pct_start, wd_, {}, std::move(cbs_));
}

}  // namespace strata

#endif  // STRATA_LEARN_CALLBACKS_PARAM_SCHEDULER_HPP
