// Hyper-parameter schedules: functions of the training position pos in [0, 1] (fastai's
// callback/schedule.py). Pure math; a ParamScheduler callback calls them and set_hyper()s the result.
//
//   sched_lin(a, b)(pos)  = a + pos (b - a)
//   sched_cos(a, b)(pos)  = a + (1 + cos(pi (1 - pos))) (b - a) / 2
//   sched_no(a, b)(pos)   = a
//   sched_exp(a, b)(pos)  = a (b / a)^pos
//   sched_poly(a, b, k)(pos) = a + (b - a) pos^k
//   combine_scheds(pcts, scheds): scheds[i] runs over the i-th share pcts[i] of [0, 1], rescaled to [0, 1]
//   combined_cos(pct, a, m, b) = combine_scheds({pct, 1 - pct}, {sched_cos(a, m), sched_cos(m, b)})
// fit_one_cycle: lr combined_cos(pct_start, lr_max / div, lr_max, lr_max / div_final),
//                mom combined_cos(pct_start, 0.95, 0.85, 0.95).
// Unlike fastai, segment bounds are kept in double (fastai's are a float32 tensor), and a segment of
// zero width is never picked (fastai gives NaN at its boundary).
#pragma once

#include <cmath>
#include <functional>
#include <numbers>
#include <utility>
#include <vector>

#include "strata/core/error.hpp"

namespace strata {

/// A hyper-parameter value as a function of the training position pos in [0, 1].
using Schedule = std::function<double(double pos)>;

/// Linear from start to end.
inline Schedule sched_lin(double start, double end) {
  return [=](double pos) { return start + pos * (end - start); };
}
/// Half a cosine from start to end (flat at both ends).
inline Schedule sched_cos(double start, double end) {
  return [=](double pos) { return start + (1 + std::cos(std::numbers::pi * (1 - pos))) * (end - start) / 2; };
}
/// Constant start.
inline Schedule sched_no(double start, double /*end*/) {
  return [=](double) { return start; };
}
/// Exponential (geometric) from start to end; both nonzero with the same sign.
inline Schedule sched_exp(double start, double end) {
  STRATA_CHECK(start != 0 && end / start > 0, "sched_exp", "got start ", start, " and end ", end,
               ", expected two nonzero values of the same sign");
  return [=](double pos) { return start * std::pow(end / start, pos); };
}
/// Polynomial of degree `power` from start to end.
inline Schedule sched_poly(double start, double end, double power) {
  return [=](double pos) { return start + (end - start) * std::pow(pos, power); };
}

/// scheds[i] over the share pcts[i] of [0, 1] (pcts >= 0, summing to 1), each seeing its own pos in [0, 1].
inline Schedule combine_scheds(std::vector<double> pcts, std::vector<Schedule> scheds) {
  STRATA_CHECK(!pcts.empty() && pcts.size() == scheds.size(), "combine_scheds", "got ", pcts.size(), " pcts and ",
               scheds.size(), " schedules, expected as many of each (at least one)");
  std::vector<double> bounds{0};  // bounds[i], bounds[i+1]: where scheds[i] starts and ends
  for (double p : pcts) {
    STRATA_CHECK(p >= 0, "combine_scheds", "got pct ", p, ", expected pcts >= 0");
    bounds.push_back(bounds.back() + p);
  }
  STRATA_CHECK(std::abs(bounds.back() - 1) < 1e-9, "combine_scheds", "got pcts summing to ", bounds.back(),
               ", expected them to sum to 1");
  bounds.back() = 1;
  return [bounds = std::move(bounds), scheds = std::move(scheds)](double pos) {
    STRATA_CHECK(pos >= 0 && pos <= 1, "combine_scheds", "got pos ", pos, ", expected 0 <= pos <= 1");
    // the last segment of nonzero width that starts at or before pos
    size_t idx = 0;
    for (size_t i = 0; i + 1 < bounds.size(); ++i)
      if (bounds[i + 1] > bounds[i] && pos >= bounds[i]) idx = i;
    return scheds[idx]((pos - bounds[idx]) / (bounds[idx + 1] - bounds[idx]));
  };
}

/// Cosine annealing start -> middle over the first pct of training, middle -> end over the rest.
inline Schedule combined_cos(double pct, double start, double middle, double end) {
  STRATA_CHECK(pct >= 0 && pct <= 1, "combined_cos", "got pct ", pct, ", expected 0 <= pct <= 1");
  return combine_scheds({pct, 1 - pct}, {sched_cos(start, middle), sched_cos(middle, end)});
}

}  // namespace strata
