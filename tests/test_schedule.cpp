// Schedules: sched_lin/cos/no/exp/poly at chosen points against fastai's formulas written out here;
// combine_scheds (segment choice, rescaled position, zero-width segments); combined_cos at 0, pct,
// 1 and the midpoints (fit_one_cycle's lr and mom); errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "helpers.hpp"
#include <strata/optim/schedule.hpp>

namespace test_schedule {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {
const double kPi = 3.14159265358979323846;
const std::vector<double> kPoints = {0, 0.1, 0.25, 0.5, 0.7, 0.999, 1};
}  // namespace

TEST_CASE("single schedules equal fastai's formulas", "[schedule]") {
  const double a = 0.4, b = 2.5;
  for (double pos : kPoints) {
    INFO("pos " << pos);
    CHECK(sched_lin(a, b)(pos) == Approx(a + pos * (b - a)).epsilon(1e-15));
    CHECK(sched_cos(a, b)(pos) == Approx(a + (1 + std::cos(kPi * (1 - pos))) * (b - a) / 2).epsilon(1e-15));
    CHECK(sched_no(a, b)(pos) == a);
    CHECK(sched_exp(a, b)(pos) == Approx(a * std::pow(b / a, pos)).epsilon(1e-15));
    CHECK(sched_poly(a, b, 2.0)(pos) == Approx(a + (b - a) * pos * pos).epsilon(1e-15));
    CHECK(sched_poly(b, a, 0.5)(pos) == Approx(b + (a - b) * std::sqrt(pos)).epsilon(1e-15));
  }
  // the ends and the middle, exactly where they must be
  CHECK(sched_cos(a, b)(0) == Approx(a).epsilon(1e-15));
  CHECK(sched_cos(a, b)(1) == Approx(b).epsilon(1e-15));
  CHECK(sched_cos(a, b)(0.5) == Approx((a + b) / 2).epsilon(1e-15));
  CHECK(sched_exp(1e-7, 10)(0.5) == Approx(1e-3).epsilon(1e-12));  // lr_find's geometric sweep
  CHECK(sched_lin(a, b)(0.5) == Approx((a + b) / 2).epsilon(1e-15));
}

TEST_CASE("combine_scheds runs each schedule over its share, rescaled", "[schedule]") {
  // [0, 0.3): lin 1 -> 2 ; [0.3, 1]: cos 2 -> 0
  const Schedule s = combine_scheds({0.3, 0.7}, {sched_lin(1, 2), sched_cos(2, 0)});
  auto cos_part = [](double u) { return 2 + (1 + std::cos(kPi * (1 - u))) * (0 - 2) / 2; };
  CHECK(s(0) == Approx(1).epsilon(1e-15));
  CHECK(s(0.15) == Approx(1.5).epsilon(1e-14));
  CHECK(s(0.3) == Approx(2).epsilon(1e-14));  // the boundary starts the second schedule
  CHECK(s(0.65) == Approx(cos_part(0.5)).epsilon(1e-14));
  CHECK(s(0.86) == Approx(cos_part(0.8)).epsilon(1e-14));
  CHECK(s(1) == Approx(0).margin(1e-15));

  // three parts, the middle one empty: never chosen
  const Schedule z = combine_scheds({0.5, 0, 0.5}, {sched_lin(0, 1), sched_no(7, 7), sched_lin(1, 3)});
  CHECK(z(0.25) == Approx(0.5).epsilon(1e-15));
  CHECK(z(0.5) == Approx(1).epsilon(1e-15));
  CHECK(z(0.75) == Approx(2).epsilon(1e-15));
  const Schedule last_empty = combine_scheds({1, 0}, {sched_lin(0, 1), sched_no(7, 7)});
  CHECK(last_empty(1) == Approx(1).epsilon(1e-15));
}

TEST_CASE("combined_cos at 0, pct, 1 and the midpoints; fit_one_cycle's lr and mom", "[schedule]") {
  const double pct = 0.25, lr_max = 1e-2, div = 25, div_final = 1e5;
  const Schedule lr = combined_cos(pct, lr_max / div, lr_max, lr_max / div_final);
  CHECK(lr(0) == Approx(lr_max / div).epsilon(1e-14));
  CHECK(lr(pct) == Approx(lr_max).epsilon(1e-14));
  CHECK(lr(1) == Approx(lr_max / div_final).epsilon(1e-9));  // cancellation in start + (end - start)
  // half way through each part, the cosine is half way between its ends
  CHECK(lr(pct / 2) == Approx((lr_max / div + lr_max) / 2).epsilon(1e-14));
  CHECK(lr(pct + (1 - pct) / 2) == Approx((lr_max + lr_max / div_final) / 2).epsilon(1e-14));
  // a quarter into the second part: start + (1 + cos(3pi/4)) (end - start) / 2
  const double q = pct + (1 - pct) / 4;
  CHECK(lr(q) == Approx(lr_max + (1 + std::cos(kPi * 0.75)) * (lr_max / div_final - lr_max) / 2).epsilon(1e-14));

  const Schedule mom = combined_cos(pct, 0.95, 0.85, 0.95);
  CHECK(mom(0) == Approx(0.95).epsilon(1e-15));
  CHECK(mom(pct) == Approx(0.85).epsilon(1e-15));
  CHECK(mom(pct / 2) == Approx(0.9).epsilon(1e-15));
  CHECK(mom(1) == Approx(0.95).epsilon(1e-15));

  // fine_tune's frozen phase: pct_start 0.99; and the flat-cos edge pct = 0 / 1
  CHECK(combined_cos(0.99, 1, 2, 0)(0.99) == Approx(2).epsilon(1e-14));
  CHECK(combined_cos(0, 1, 2, 0)(0) == Approx(2).epsilon(1e-15));
  CHECK(combined_cos(1, 1, 2, 0)(1) == Approx(2).epsilon(1e-15));
}

TEST_CASE("schedule errors name the op and what it expected", "[schedule]") {
  th::check_throws([] { combine_scheds({0.3, 0.6}, {sched_no(1, 1), sched_no(1, 1)}); },
                   {"combine_scheds", "summing to 0.9", "sum to 1"});
  th::check_throws([] { combine_scheds({1.2, -0.2}, {sched_no(1, 1), sched_no(1, 1)}); },
                   {"combine_scheds", "got pct -0.2", ">= 0"});
  th::check_throws([] { combine_scheds({1}, {sched_no(1, 1), sched_no(1, 1)}); },
                   {"combine_scheds", "got 1 pcts and 2 schedules"});
  th::check_throws([] { combined_cos(0.3, 1, 2, 3)(1.5); }, {"combine_scheds", "got pos 1.5", "0 <= pos <= 1"});
  th::check_throws([] { combined_cos(1.3, 1, 2, 3); }, {"combined_cos", "got pct 1.3"});
  th::check_throws([] { sched_exp(0, 1); }, {"sched_exp", "got start 0", "same sign"});
}

}  // namespace test_schedule
