// Optimizers: every factory (SGD, momentum, L2 vs decoupled weight decay, Adam, AdamW, RAdam on both
// sides of its rectification threshold, LAMB with its trust-ratio clamp, Lookahead, Ranger) run for
// several steps on a small quadratic, step by step against the paper's update written out below as
// plain double loops; a few steps against numbers from torch.optim; param groups with their own lrs;
// set_hyper (values, per group, Slice); hypers changed between steps; freeze_to / force_train;
// zero_grad; do_wd; state_dict round trip; errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <vector>

#include "helpers.hpp"
#include <strata/optim/optimizers.hpp>

namespace test_optim {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

using Values = std::vector<double>;

/// The test loss is sum_i a_i p_i^2 / 2 + b_i p_i, so g_i = a_i p_i + b_i, with a and b fixed per
/// element and per tensor (`which`).
Values grad_of(const Values& p, size_t which) {
  Values g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double a = 0.5 + 0.25 * double((i + which) % 5);
    const double b = 0.3 * double((i * 7 + which) % 3) - 0.35;
    g[i] = a * p[i] + b;
  }
  return g;
}

/// One param's reference state: the values and what the paper's algorithm keeps.
struct RefParam {
  Values p, m, v, slow;
  double t = 0, count = 0;
  explicit RefParam(Values init) : p(std::move(init)), m(p.size(), 0.0), v(p.size(), 0.0) {}
};
using RefStep = std::function<void(RefParam& r, Values& g)>;

/// Weight decay half of every reference: decoupled p *= 1 - lr wd, or L2 g += wd p.
void ref_decay(RefParam& r, Values& g, double lr, double wd, bool decouple) {
  for (size_t i = 0; i < r.p.size(); ++i) {
    if (decouple) r.p[i] *= 1 - lr * wd;
    else g[i] += wd * r.p[i];
  }
}

RefStep ref_sgd(double lr, double mom, double wd, bool decouple) {
  return [=](RefParam& r, Values& g) {
    ref_decay(r, g, lr, wd, decouple);
    for (size_t i = 0; i < r.p.size(); ++i) {
      if (mom != 0) {
        r.m[i] = mom * r.m[i] + g[i];  // v = μ v + g
        r.p[i] -= lr * r.m[i];
      } else {
        r.p[i] -= lr * g[i];
      }
    }
  };
}

// Adam (Kingma & Ba, Algorithm 1): m = β1 m + (1-β1) g; v = β2 v + (1-β2) g²;
// p -= lr (m / (1-β1^t)) / (sqrt(v / (1-β2^t)) + eps).
RefStep ref_adam(double lr, double mom, double sqr_mom, double eps, double wd, bool decouple) {
  return [=](RefParam& r, Values& g) {
    r.t += 1;
    ref_decay(r, g, lr, wd, decouple);
    for (size_t i = 0; i < r.p.size(); ++i) {
      r.m[i] = mom * r.m[i] + (1 - mom) * g[i];
      r.v[i] = sqr_mom * r.v[i] + (1 - sqr_mom) * g[i] * g[i];
      const double mhat = r.m[i] / (1 - std::pow(mom, r.t));
      const double vhat = r.v[i] / (1 - std::pow(sqr_mom, r.t));
      r.p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
    }
  };
}

// RAdam (Liu et al., Algorithm 2, with fastai's eps and softplus(beta) options); counts the steps
// taken by each branch in *rectified / *plain.
RefStep ref_radam(double lr, double mom, double sqr_mom, double eps, double wd, double beta, bool decouple,
                  int* rectified, int* plain) {
  return [=](RefParam& r, Values& g) {
    r.t += 1;
    ref_decay(r, g, lr, wd, decouple);
    const double rho_inf = 2 / (1 - sqr_mom) - 1;
    const double rho = rho_inf - 2 * r.t * std::pow(sqr_mom, r.t) / (1 - std::pow(sqr_mom, r.t));
    const bool rect = rho > 5;
    ++*(rect ? rectified : plain);
    for (size_t i = 0; i < r.p.size(); ++i) {
      r.m[i] = mom * r.m[i] + (1 - mom) * g[i];
      r.v[i] = sqr_mom * r.v[i] + (1 - sqr_mom) * g[i] * g[i];
      const double mhat = r.m[i] / (1 - std::pow(mom, r.t));
      if (!rect) {
        r.p[i] -= lr * mhat;
        continue;
      }
      const double rt = std::sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho));
      double denom = std::sqrt(r.v[i] / (1 - std::pow(sqr_mom, r.t))) + eps;
      if (beta != 0) denom = beta * denom > 20 ? denom : std::log1p(std::exp(beta * denom)) / beta;
      r.p[i] -= lr * rt * mhat / denom;
    }
  };
}

// LAMB as fastai: u = m̂ / (sqrt(v̂) + eps); q = min(rms(p) / rms(u), 10), 1 if either is 0; p -= lr q u.
RefStep ref_lamb(double lr, double mom, double sqr_mom, double eps, double wd, bool decouple, Values* ratios) {
  return [=](RefParam& r, Values& g) {
    r.t += 1;
    ref_decay(r, g, lr, wd, decouple);
    const size_t n = r.p.size();
    Values u(n);
    double sp = 0, su = 0;
    for (size_t i = 0; i < n; ++i) {
      r.m[i] = mom * r.m[i] + (1 - mom) * g[i];
      r.v[i] = sqr_mom * r.v[i] + (1 - sqr_mom) * g[i] * g[i];
      u[i] = (r.m[i] / (1 - std::pow(mom, r.t))) / (std::sqrt(r.v[i] / (1 - std::pow(sqr_mom, r.t))) + eps);
      sp += r.p[i] * r.p[i];
      su += u[i] * u[i];
    }
    const double r1 = std::sqrt(sp / double(n)), r2 = std::sqrt(su / double(n));
    const double q = (r1 == 0 || r2 == 0) ? 1 : std::min(r1 / r2, 10.0);
    ratios->push_back(q);
    for (size_t i = 0; i < n; ++i) r.p[i] -= lr * q * u[i];
  };
}

// Lookahead (Zhang et al., Algorithm 1): slow = p at the start; after every k inner steps
// slow += alpha (p - slow), p = slow.
RefStep ref_lookahead(RefStep inner, int k, double alpha) {
  return [=](RefParam& r, Values& g) {
    if (r.slow.empty()) r.slow = r.p;
    inner(r, g);
    r.count += 1;
    if (int(r.count) % k != 0) return;
    for (size_t i = 0; i < r.p.size(); ++i) {
      r.slow[i] += alpha * (r.p[i] - r.slow[i]);
      r.p[i] = r.slow[i];
    }
  };
}

/// Params of these shapes with fixed, varied values (the second one a transposed view).
std::vector<Tensor> make_params(DType dt = DType::f64, std::vector<Shape> shapes = {{3}, {2, 3}, {4}}) {
  std::vector<Tensor> ps;
  for (size_t k = 0; k < shapes.size(); ++k) {
    const int64_t n = numel(shapes[k]);
    Values v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[size_t(i)] = 0.8 * std::sin(1.3 * double(i) + double(k)) + 0.1 * double(k);
    Tensor p = th::make(v, shapes[k], dt);
    if (shapes[k].size() == 2) p = th::make(v, {shapes[k][1], shapes[k][0]}, dt).t();  // non-contiguous
    ps.push_back(p.requires_grad_());
  }
  return ps;
}

/// Sets each param's grad from the test loss at its current value.
void set_grads(std::vector<Tensor>& ps) {
  for (size_t k = 0; k < ps.size(); ++k)
    ps[k].set_grad(th::make(grad_of(th::values(ps[k]), k), ps[k].shape(), ps[k].dtype()));
}

/// `steps` steps of opt on ps and of the reference on copies of their values, compared after each;
/// `step_of[k]` is the reference for ps[k] (one per param, so groups can differ).
void run_against(Optimizer& opt, std::vector<Tensor> ps, const std::vector<RefStep>& step_of, int steps,
                 double tol = 1e-12) {
  std::vector<RefParam> ref;
  for (const Tensor& p : ps) ref.emplace_back(th::values(p));
  for (int s = 1; s <= steps; ++s) {
    set_grads(ps);
    opt.step();
    for (size_t k = 0; k < ps.size(); ++k) {
      Values g = grad_of(ref[k].p, k);
      step_of[k](ref[k], g);
      th::check_close(th::values(ps[k]), ref[k].p, tol, tol, "step " + std::to_string(s) + " param " + std::to_string(k));
    }
  }
}
void run_against(Optimizer& opt, std::vector<Tensor> ps, const RefStep& step, int steps, double tol = 1e-12) {
  run_against(opt, ps, std::vector<RefStep>(ps.size(), step), steps, tol);
}

}  // namespace

TEST_CASE("sgd, momentum, L2 and decoupled weight decay follow their update rules", "[optim]") {
  for (bool decouple : {true, false})
    for (double mom : {0.0, 0.9})
      for (double wd : {0.0, 0.1}) {
        INFO("mom " << mom << " wd " << wd << " decouple " << decouple);
        auto ps = make_params();
        auto opt = sgd(ps, 0.1, mom, wd, decouple);
        run_against(*opt, ps, ref_sgd(0.1, mom, wd, decouple), 6);
      }
}

TEST_CASE("L2 and decoupled weight decay differ for a momentum optimizer", "[optim]") {
  auto a = make_params(), b = make_params();
  auto l2 = adam(a, 0.05, 0.9, 0.99, 1e-5, 0.5, false), decoupled = adam(b, 0.05, 0.9, 0.99, 1e-5, 0.5, true);
  for (int s = 0; s < 3; ++s) {
    set_grads(a), set_grads(b);
    l2->step(), decoupled->step();
  }
  CHECK(std::abs(th::values(a[0])[0] - th::values(b[0])[0]) > 1e-4);
}

TEST_CASE("adam and adamw match the debiased Adam update", "[optim]") {
  for (bool decouple : {true, false}) {
    INFO("decouple " << decouple);
    auto ps = make_params();
    auto opt = adam(ps, 0.03, 0.9, 0.99, 1e-5, 0.02, decouple);
    run_against(*opt, ps, ref_adam(0.03, 0.9, 0.99, 1e-5, 0.02, decouple), 8);
  }
  auto ps = make_params();
  auto opt = adamw(ps, 0.01, 0.8, 0.95, 1e-3, 0.1);  // adamw: always decoupled
  run_against(*opt, ps, ref_adam(0.01, 0.8, 0.95, 1e-3, 0.1, true), 5);
}

TEST_CASE("adam on float32 params", "[optim]") {
  auto ps = make_params(DType::f32);
  auto opt = adam(ps, 0.03);
  run_against(*opt, ps, ref_adam(0.03, 0.9, 0.99, 1e-5, 0.01, true), 6, 2e-5);
}

TEST_CASE("radam takes momentum steps until rho_t > 5, then rectified ones", "[optim]") {
  // with sqr_mom = 0.99, rho_t = 1, 1.99, 2.99, 3.97, 4.96, 5.94, ...: steps 1-5 plain, 6 on rectified
  int rect = 0, plain = 0;
  auto ps = make_params();
  auto opt = radam(ps, 0.02, 0.9, 0.99, 1e-5, 0.01);
  run_against(*opt, ps, ref_radam(0.02, 0.9, 0.99, 1e-5, 0.01, 0, true, &rect, &plain), 9);
  CHECK(plain == 5 * 3);  // three params
  CHECK(rect == 4 * 3);

  rect = plain = 0;  // softplus(beta) denominator, L2 decay
  ps = make_params();
  opt = radam(ps, 0.02, 0.9, 0.99, 1e-5, 0.01, 50.0, false);
  run_against(*opt, ps, ref_radam(0.02, 0.9, 0.99, 1e-5, 0.01, 50.0, false, &rect, &plain), 8);
  CHECK(rect == 3 * 3);
}

TEST_CASE("lamb scales the Adam step by the clamped trust ratio", "[optim]") {
  // one param large (ratio clamped to 10), one small, one zero (ratio 1 at the first step)
  std::vector<Tensor> ps = make_params(DType::f64, {{4}, {3}, {2, 2}});
  {
    NoGrad ng;
    ps[0].mul_(60.0);
    ps[2].zero_();
  }
  Values ratios;
  auto opt = lamb(ps, 0.01, 0.9, 0.99, 1e-5, 0.05);
  run_against(*opt, ps, ref_lamb(0.01, 0.9, 0.99, 1e-5, 0.05, true, &ratios), 5);
  REQUIRE(ratios.size() == 15);
  CHECK(ratios[0] == 10.0);   // step 1, large param: clamped
  CHECK(ratios[1] < 10.0);    // small param
  CHECK(ratios[2] == 1.0);    // zero param
  CHECK(ratios[5] != 1.0);    // the zero param moved: a real ratio from step 2 on
}

TEST_CASE("lookahead syncs slow and fast weights every k steps; ranger = lookahead(radam)", "[optim]") {
  auto ps = make_params();
  auto opt = lookahead(sgd(ps, 0.1, 0.9), 3, 0.5);
  run_against(*opt, ps, ref_lookahead(ref_sgd(0.1, 0.9, 0, true), 3, 0.5), 8);

  int rect = 0, plain = 0;
  ps = make_params();
  opt = ranger(ps, 0.05);  // fastai's ranger: mom 0.95, eps 1e-6, wd 0.01, k 6, alpha 0.5
  run_against(*opt, ps, ref_lookahead(ref_radam(0.05, 0.95, 0.99, 1e-6, 0.01, 0, true, &rect, &plain), 6, 0.5), 13);
  CHECK(opt->state_for(0)[0].scalars.at("lookahead_count") == 13);
}

TEST_CASE("a few steps agree with torch.optim", "[optim]") {
  // p0 = [0.5, -1.0, 2.0], g = p - [0.1, 0.2, -0.3] each step; values from PyTorch 1.13
  // (torch.optim.SGD(momentum=0.9), AdamW(betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)), 4 steps.
  auto run = [](auto make_opt) {
    Tensor p = th::make({0.5, -1.0, 2.0}, {3}, DType::f64).requires_grad_();
    auto opt = make_opt(std::vector<Tensor>{p});
    for (int s = 0; s < 4; ++s) {
      p.set_grad(sub(detach(p), th::make({0.1, 0.2, -0.3}, {3}, DType::f64)));
      opt->step();
    }
    return th::values(p);
  };
  th::check_close(run([](std::vector<Tensor> p) { return sgd(p, 0.1, 0.9); }),
                  {0.19072, -0.07215999999999989, 0.22164000000000006}, 1e-12, 1e-12, "sgd momentum");
  th::check_close(run([](std::vector<Tensor> p) { return adamw(p, 0.1); }),
                  {0.11848533118139348, -0.5994754717771192, 1.5938139283816188}, 1e-12, 1e-12, "adamw");
}

TEST_CASE("param groups step with their own lrs; set_hyper values, per group and Slice", "[optim]") {
  auto ps = make_params();
  auto opt = sgd(ParamGroups{{ps[0]}, {ps[1], ps[2]}}, 0.1, 0.9);
  opt->set_hyper("lr", std::vector<double>{0.2, 0.05});
  run_against(*opt, ps, {ref_sgd(0.2, 0.9, 0, true), ref_sgd(0.05, 0.9, 0, true), ref_sgd(0.05, 0.9, 0, true)}, 4);

  auto three = sgd(ParamGroups{{ps[0]}, {ps[1]}, {ps[2]}}, 0.1);
  auto lrs = [&] {
    Values v;
    for (const Hypers& h : three->hypers()) v.push_back(h.at("lr"));
    return v;
  };
  three->set_hyper("lr", Slice{1e-4, 1e-2});  // even_mults: 1e-4, 1e-3, 1e-2
  th::check_close(lrs(), {1e-4, 1e-3, 1e-2}, 0, 1e-14, "Slice{lo, hi}");
  three->set_hyper("lr", Slice{0, 3e-2});  // slice(hi): hi/10 but the last
  th::check_close(lrs(), {3e-3, 3e-3, 3e-2}, 0, 1e-14, "Slice{0, hi}");
  three->set_hyper("lr", 0.5);
  th::check_close(lrs(), {0.5, 0.5, 0.5}, 0, 0, "one value");
  th::check_close(even_mults(2, 54, 4), {2, 6, 18, 54}, 0, 1e-14, "even_mults");
  auto one = sgd(std::vector<Tensor>{ps[0]}, 0.1);
  one->set_hyper("lr", Slice{1e-4, 1e-2});
  CHECK(one->hypers()[0].at("lr") == 1e-2);
  th::check_throws([&] { three->set_hyper("lr", std::vector<double>{1, 2}); }, {"set_hyper", "got 2 values", "(3)"});
}

TEST_CASE("hypers changed between steps take effect at the next step", "[optim]") {
  auto ps = make_params();
  auto opt = adam(ps, 0.03);
  std::vector<RefParam> ref;
  for (const Tensor& p : ps) ref.emplace_back(th::values(p));
  const std::vector<std::pair<double, double>> lr_mom = {{0.03, 0.9}, {0.01, 0.85}, {0.05, 0.95}, {0.0, 0.9}};
  for (size_t s = 0; s < lr_mom.size(); ++s) {
    opt->set_hyper("lr", lr_mom[s].first);
    opt->set_hyper("mom", lr_mom[s].second);
    set_grads(ps);
    opt->step();
    for (size_t k = 0; k < ps.size(); ++k) {
      Values g = grad_of(ref[k].p, k);
      ref_adam(lr_mom[s].first, lr_mom[s].second, 0.99, 1e-5, 0.01, true)(ref[k], g);
      th::check_close(th::values(ps[k]), ref[k].p, 1e-12, 1e-12, "step " + std::to_string(s));
    }
  }
}

TEST_CASE("freeze_to, freeze, unfreeze and force_train; frozen params are not stepped", "[optim]") {
  auto ps = make_params();
  auto opt = sgd(ParamGroups{{ps[0]}, {ps[1]}, {ps[2]}}, 0.1);
  auto rg = [&] { return std::vector<bool>{ps[0].requires_grad(), ps[1].requires_grad(), ps[2].requires_grad()}; };
  opt->freeze();
  CHECK(rg() == std::vector<bool>{false, false, true});
  CHECK(opt->frozen_idx() == 2);
  opt->freeze_to(1);
  CHECK(rg() == std::vector<bool>{false, true, true});
  opt->freeze_to(-2);
  CHECK(rg() == std::vector<bool>{false, true, true});
  opt->state_of(ps[0]).force_train = true;  // a BatchNorm param with train_bn
  opt->freeze_to(5);                        // past the end: everything frozen but force_train
  CHECK(rg() == std::vector<bool>{true, false, false});
  opt->unfreeze();
  CHECK(rg() == std::vector<bool>{true, true, true});

  opt->state_of(ps[0]).force_train = false;
  opt->freeze();
  set_grads(ps);  // even with a grad, a frozen param is left alone
  const Values before0 = th::values(ps[0]), before2 = th::values(ps[2]);
  opt->step();
  CHECK(th::values(ps[0]) == before0);
  CHECK(th::values(ps[2]) != before2);
  auto single = sgd(std::vector<Tensor>{ps[0]}, 0.1);
  th::check_throws([&] { single->freeze(); }, {"freeze", "got 1 parameter group", "at least 2"});
}

TEST_CASE("zero_grad zeroes in place or drops; params without grad are skipped; do_wd", "[optim]") {
  auto ps = make_params();
  auto opt = sgd(ps, 0.1, 0, 0.5);
  set_grads(ps);
  const Tensor g0 = ps[0].grad();
  ps[1].set_grad(Tensor());  // no grad: no step, not even weight decay
  opt->state_of(ps[2]).do_wd = false;
  const Values before1 = th::values(ps[1]), before2 = th::values(ps[2]), grad2 = th::values(ps[2].grad());
  opt->step();
  CHECK(th::values(ps[1]) == before1);
  Values want2 = before2;
  for (size_t i = 0; i < want2.size(); ++i) want2[i] -= 0.1 * grad2[i];  // sgd_step, no decay
  th::check_close(th::values(ps[2]), want2, 1e-14, 1e-14, "do_wd = false");

  opt->zero_grad();
  CHECK(ps[0].grad().is_same(g0));  // same tensor, zeroed
  CHECK(th::values(g0) == Values(3, 0.0));
  CHECK(!ps[1].grad().defined());
  opt->zero_grad(/*set_to_none=*/true);
  CHECK(!ps[0].grad().defined());
}

TEST_CASE("state_dict round trip continues the same trajectory", "[optim]") {
  auto a = make_params(), b = make_params();
  auto opt_a = adam(ParamGroups{{a[0]}, {a[1], a[2]}}, 0.03);
  auto opt_b = adam(ParamGroups{{b[0]}, {b[1], b[2]}}, 0.5);
  opt_a->set_hyper("lr", std::vector<double>{0.01, 0.02});
  for (int s = 0; s < 3; ++s) {
    set_grads(a);
    opt_a->step();
  }
  const auto sd = opt_a->state_dict();
  CHECK(sd.count("state.1.1.sqr_avg") == 1);
  CHECK(sd.at("scalars.0.0.step").item<double>() == 3);
  CHECK(sd.at("hypers.1.lr").item<double>() == 0.02);
  {
    NoGrad ng;
    for (size_t k = 0; k < a.size(); ++k) b[k].copy_(a[k]);
  }
  opt_b->load_state_dict(sd);
  CHECK(opt_b->hypers()[0].at("lr") == 0.01);
  for (int s = 0; s < 2; ++s) {
    set_grads(a), set_grads(b);
    opt_a->step(), opt_b->step();
  }
  for (size_t k = 0; k < a.size(); ++k) CHECK(th::values(a[k]) == th::values(b[k]));

  auto wrong = adam(ParamGroups{{b[0], b[1], b[2]}}, 0.1);
  th::check_throws([&] { wrong->load_state_dict(sd); }, {"load_state_dict", "for group 1", "of 1 groups"});
  auto bad = sd;
  bad["state.0.x.grad_avg"] = bad.at("state.0.0.grad_avg");
  th::check_throws([&] { opt_b->load_state_dict(bad); }, {"load_state_dict", "state.0.x.grad_avg", "a number"});
}

TEST_CASE("OptFuncs build optimizers with fastai's defaults on given groups", "[optim]") {
  auto ps = make_params();
  auto opt = Adam()(ParamGroups{{ps[0]}, {ps[1], ps[2]}}, 1e-3);
  REQUIRE(opt->param_groups.size() == 2);
  const Hypers want{{"lr", 1e-3}, {"mom", 0.9}, {"sqr_mom", 0.99}, {"eps", 1e-5}, {"wd", 0.01}};
  CHECK(opt->hypers()[1] == want);
  CHECK(SGD(0.9)(ParamGroups{ps}, 0.1)->hypers()[0].at("mom") == 0.9);
  CHECK(Ranger()(ParamGroups{ps}, 0.1)->steps.size() == 7);  // lookahead_init + radam's 5 + lookahead_sync
  CHECK(Lookahead(Lamb(), 4)(ParamGroups{ps}, 0.1)->hypers()[0].at("wd") == 0);
  th::check_throws([] { Lookahead(SGD(), 0); }, {"lookahead", "got k = 0", "k >= 1"});
}

TEST_CASE("optimizer errors name the op and what it expected", "[optim]") {
  auto ps = make_params();
  th::check_throws([&] { sgd(ParamGroups{{ps[0]}, {ps[1], ps[0]}}, 0.1); },
                   {"Optimizer", "parameter 1 of group 1", "a second time"});
  th::check_throws([&] { sgd(std::vector<Tensor>{th::make({1, 2}, {2}, DType::i64)}, 0.1); },
                   {"Optimizer", "dtype int64", "floating"});
  th::check_throws([&] { sgd(ParamGroups{}, 0.1); }, {"Optimizer", "no parameter groups"});
  Optimizer no_stat(ps, {momentum_step}, {{"lr", 0.1}});
  set_grads(ps);
  th::check_throws([&] { no_stat.step(); }, {"momentum_step", "without \"grad_avg\"", "average_grad"});
  Optimizer no_hyper(ps, {sgd_step}, {});
  th::check_throws([&] { no_hyper.step(); }, {"sgd_step", "without \"lr\""});
  Optimizer no_count(ps, {average_grad(true), average_sqr_grad(), adam_step},
                     {{"lr", 0.1}, {"mom", 0.9}, {"sqr_mom", 0.99}, {"eps", 1e-5}});
  th::check_throws([&] { no_count.step(); }, {"adam_step", "step_stat"});
  th::check_throws([&] { sgd(ps, 0.1)->state_of(th::make({1}, {1})); },
                   {"state_of", "one of the optimizer's params"});
}

TEST_CASE("fused adam and sgd-momentum steps equal their unfused stats and steppers", "[optim]") {
  // Large contiguous params (vector lanes, tails and thread chunks), both decay modes, do_wd off for one param.
  const std::vector<Shape> shapes{{100003}, {37, 129}, {5}};
  for (DType dt : {DType::f32, DType::f64})
    for (bool decouple : {true, false})
      for (bool is_adam : {true, false}) {
        INFO("dtype " << dt << " decouple " << decouple << " adam " << is_adam);
        std::vector<Tensor> a, b;
        for (size_t k = 0; k < shapes.size(); ++k) {
          const Tensor p = th::random(shapes[k], dt, false, -1, 1);
          a.push_back(clone(p).requires_grad_()), b.push_back(clone(p).requires_grad_());
        }
        const double wd = 0.05;
        auto fused = is_adam ? adam(a, 0.01, 0.9, 0.99, 1e-5, wd, decouple) : sgd(a, 0.01, 0.9, wd, decouple);
        std::vector<OptStep> steps =
            is_adam ? std::vector<OptStep>{step_stat, decouple ? OptStep(weight_decay) : OptStep(l2_reg),
                                           average_grad(true), average_sqr_grad(), adam_step}
                    : std::vector<OptStep>{decouple ? OptStep(weight_decay) : OptStep(l2_reg), average_grad(),
                                           momentum_step};
        Optimizer composed(b, steps, fused->param_groups[0].hypers);
        fused->state_for(0)[2].do_wd = composed.state_for(0)[2].do_wd = false;
        for (int s = 0; s < 4; ++s) {
          for (size_t k = 0; k < shapes.size(); ++k) {
            const Tensor g = th::random(shapes[k], dt, false, -1, 1);
            a[k].set_grad(clone(g)), b[k].set_grad(clone(g));
          }
          fused->step(), composed.step();
          const double tol = dt == DType::f32 ? 2e-6 : 1e-13;
          for (size_t k = 0; k < shapes.size(); ++k) {
            th::check_close(th::values(a[k]), th::values(b[k]), tol, tol, "param");
            th::check_close(th::values(a[k].grad()), th::values(b[k].grad()), tol, tol, "grad (l2 writes it)");
            for (const char* key : {"grad_avg", "sqr_avg"}) {
              if (!is_adam && std::string(key) == "sqr_avg") continue;
              th::check_close(th::values(fused->state_for(0)[k].tensors.at(key)),
                              th::values(composed.state_for(0)[k].tensors.at(key)), tol, tol, key);
            }
          }
        }
        if (is_adam) CHECK(fused->state_for(0)[0].scalars.at("step") == 4);
      }
}

TEST_CASE("adam_update and sgd_momentum_update kernels match their reference loops", "[optim]") {
  for (int64_t n : {1, 7, 8, 9, 33, 70001}) {
    for (cpu::DecayMode d : {cpu::DecayMode::none, cpu::DecayMode::l2, cpu::DecayMode::decoupled}) {
      INFO("n " << n << " decay " << int(d));
      std::vector<std::vector<float>> bufs(8, std::vector<float>(size_t(n)));
      for (size_t i = 0; i < size_t(n); ++i)
        for (size_t j = 0; j < 4; ++j)
          bufs[j][i] = bufs[j + 4][i] = float(std::sin(0.37 * double(i) + double(j))) * (j == 3 ? 0.2f : 1.0f) +
                                        (j == 3 ? 0.3f : 0.0f);  // v >= 0.1
      const cpu::AdamArgs a{.lr = 0.02, .mom = 0.8, .sqr_mom = 0.95, .eps = 1e-4, .wd = 0.1, .decay = d,
                            .debias1 = 0.5, .debias2 = 0.2};
      cpu::adam_update(bufs[0].data(), bufs[1].data(), bufs[2].data(), bufs[3].data(), n, a);
      cpu::adam_update_ref(bufs[4].data(), bufs[5].data(), bufs[6].data(), bufs[7].data(), n, a);
      auto max_diff = [&](size_t nbuf) {  // largest |fast - ref| / (|ref| + 1e-3) over the first nbuf buffers
        double d = 0;
        for (size_t j = 0; j < nbuf; ++j)
          for (size_t i = 0; i < size_t(n); ++i)
            d = std::max(d, std::abs(double(bufs[j][i]) - bufs[j + 4][i]) / (std::abs(double(bufs[j + 4][i])) + 1e-3));
        return d;
      };
      CHECK(max_diff(4) < 1e-6);
      const cpu::SgdArgs s{.lr = 0.05, .mom = 0.9, .wd = 0.1, .decay = d};
      cpu::sgd_momentum_update(bufs[0].data(), bufs[1].data(), bufs[2].data(), n, s);
      cpu::sgd_momentum_update_ref(bufs[4].data(), bufs[5].data(), bufs[6].data(), n, s);
      CHECK(max_diff(3) < 1e-6);
    }
  }
}

}  // namespace test_optim
