// batch_norm, layer_norm and dropout: values against double reference loops (training and eval,
// [B, C] and [B, C, spatial...] layouts, with and without weight/bias, non-contiguous inputs), the
// running-statistics update, the fused backwards against their formulas and f64 gradcheck, the
// kernels against their `_ref` loops, PyTorch golden values (tools/make_poolnorm_golden.py), dropout's
// mask statistics and reproducibility, and errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "golden/poolnorm.hpp"
#include "helpers.hpp"
#include "strata/nn/conv.hpp"
#include "strata/nn/linear.hpp"
#include "strata/tensor/autocast.hpp"
#include "strata/tensor/dropout.hpp"
#include "strata/tensor/norm.hpp"

namespace test_norm {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

/// wave(shape, a, b): element i = sin(a i + b) * 2 + 0.001 i, as in the golden script.
Tensor wave(const Shape& shape, double a, double b, DType dt = DType::f64) {
  std::vector<double> v(size_t(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(a * double(i) + b) * 2 + 0.001 * double(i);
  return th::make(v, shape, dt);
}

const std::vector<double>& golden_values(const std::string& name) { return golden::poolnorm.at(name); }

/// Per-channel statistics of x [B, C, ...] in double: mean and biased variance.
struct Stats {
  std::vector<double> mean, var;
};
Stats ref_stats(const Tensor& x) {
  const int64_t C = x.size(1), S = x.numel() / (x.size(0) * C);
  const std::vector<double> v = th::values(x);
  Stats s{std::vector<double>(size_t(C), 0.0), std::vector<double>(size_t(C), 0.0)};
  const double N = double(x.numel() / C);
  for (size_t i = 0; i < v.size(); ++i) s.mean[size_t(int64_t(i) / S % C)] += v[i] / N;
  for (size_t i = 0; i < v.size(); ++i) s.var[size_t(int64_t(i) / S % C)] += std::pow(v[i] - s.mean[size_t(int64_t(i) / S % C)], 2) / N;
  return s;
}

/// y = (x - mean) / sqrt(var + eps) * w + b per channel, in double.
std::vector<double> ref_bn(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                           const Tensor& w, const Tensor& b, double eps) {
  const int64_t C = x.size(1), S = x.numel() / (x.size(0) * C);
  const std::vector<double> v = th::values(x), wv = w.defined() ? th::values(w) : std::vector<double>(size_t(C), 1.0),
                            bv = b.defined() ? th::values(b) : std::vector<double>(size_t(C), 0.0);
  std::vector<double> y(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = size_t(int64_t(i) / S % C);
    y[i] = (v[i] - mean[c]) / std::sqrt(var[c] + eps) * wv[c] + bv[c];
  }
  return y;
}

/// Batch norm gradients in double: {dx, dw, db}, training or eval (mean/var given).
std::vector<std::vector<double>> ref_bn_bwd(const Tensor& x, const Tensor& g, const std::vector<double>& mean,
                                            const std::vector<double>& var, const Tensor& w, double eps, bool training) {
  const int64_t C = x.size(1), S = x.numel() / (x.size(0) * C);
  const double N = double(x.numel() / C);
  const std::vector<double> v = th::values(x), gv = th::values(g),
                            wv = w.defined() ? th::values(w) : std::vector<double>(size_t(C), 1.0);
  std::vector<double> dx(v.size()), dw(size_t(C), 0.0), db(size_t(C), 0.0);
  auto ch = [&](size_t i) { return size_t(int64_t(i) / S % C); };
  auto xhat = [&](size_t i) { return (v[i] - mean[ch(i)]) / std::sqrt(var[ch(i)] + eps); };
  for (size_t i = 0; i < v.size(); ++i) db[ch(i)] += gv[i], dw[ch(i)] += gv[i] * xhat(i);
  for (size_t i = 0; i < v.size(); ++i) {
    const size_t c = ch(i);
    const double is = 1 / std::sqrt(var[c] + eps);
    dx[i] = training ? wv[c] * is / N * (N * gv[i] - db[c] - xhat(i) * dw[c]) : wv[c] * is * gv[i];
  }
  return {dx, dw, db};
}

/// Layer norm over the last n values of each row, in double: y, and {dx, dw, db} for dout g.
std::vector<double> ref_ln(const Tensor& x, int64_t n, const Tensor& w, const Tensor& b, double eps) {
  const std::vector<double> v = th::values(x);
  const std::vector<double> wv = w.defined() ? th::values(w) : std::vector<double>(size_t(n), 1.0),
                            bv = b.defined() ? th::values(b) : std::vector<double>(size_t(n), 0.0);
  std::vector<double> y(v.size());
  for (size_t r = 0; r < v.size() / size_t(n); ++r) {
    double m = 0, var = 0;
    for (int64_t j = 0; j < n; ++j) m += v[r * size_t(n) + size_t(j)] / double(n);
    for (int64_t j = 0; j < n; ++j) var += std::pow(v[r * size_t(n) + size_t(j)] - m, 2) / double(n);
    for (int64_t j = 0; j < n; ++j)
      y[r * size_t(n) + size_t(j)] = (v[r * size_t(n) + size_t(j)] - m) / std::sqrt(var + eps) * wv[size_t(j)] + bv[size_t(j)];
  }
  return y;
}
std::vector<std::vector<double>> ref_ln_bwd(const Tensor& x, const Tensor& g, int64_t n, const Tensor& w, double eps) {
  const std::vector<double> v = th::values(x), gv = th::values(g);
  const std::vector<double> wv = w.defined() ? th::values(w) : std::vector<double>(size_t(n), 1.0);
  std::vector<double> dx(v.size()), dw(size_t(n), 0.0), db(size_t(n), 0.0);
  for (size_t r = 0; r < v.size() / size_t(n); ++r) {
    const size_t o = r * size_t(n);
    double m = 0, var = 0;
    for (int64_t j = 0; j < n; ++j) m += v[o + size_t(j)] / double(n);
    for (int64_t j = 0; j < n; ++j) var += std::pow(v[o + size_t(j)] - m, 2) / double(n);
    const double rs = 1 / std::sqrt(var + eps);
    double mg = 0, mgx = 0;
    for (int64_t j = 0; j < n; ++j) {
      const double xh = (v[o + size_t(j)] - m) * rs, gg = gv[o + size_t(j)] * wv[size_t(j)];
      mg += gg / double(n), mgx += gg * xh / double(n);
      dw[size_t(j)] += gv[o + size_t(j)] * xh, db[size_t(j)] += gv[o + size_t(j)];
    }
    for (int64_t j = 0; j < n; ++j) {
      const double xh = (v[o + size_t(j)] - m) * rs;
      dx[o + size_t(j)] = rs * (gv[o + size_t(j)] * wv[size_t(j)] - mg - xh * mgx);
    }
  }
  return {dx, dw, db};
}

std::vector<double> times(const std::vector<double>& v, double k) {
  std::vector<double> r(v);
  for (double& e : r) e *= k;
  return r;
}

}  // namespace

TEST_CASE("batch_norm training and eval values against the reference loop", "[norm]") {
  // [B, C] (channels adjacent, SIMD across channels), spatial layouts, long rows (SIMD + Chan merge)
  const std::vector<Shape> shapes = {{4, 3}, {64, 21}, {2, 3, 5}, {3, 4, 2, 5}, {2, 16, 3, 3}, {5, 2, 70}, {2, 3, 1, 2, 3}};
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : shapes)
      for (bool nc : {false, true})
        for (bool affine : {false, true}) {
          const int64_t C = s[1];
          const Tensor x = th::random(s, dt, nc, -3, 5);
          const Tensor w = affine ? th::random({C}, dt) : Tensor(), b = affine ? th::random({C}, dt) : Tensor();
          std::ostringstream os;
          os << dt << " " << s << " nc " << nc << " affine " << affine;
          const Stats st = ref_stats(x);
          const Tensor y = batch_norm(x, Tensor(), Tensor(), w, b, true, 0.1, 1e-5);
          REQUIRE(y.shape() == s);
          REQUIRE(y.dtype() == dt);
          const double t = dt == DType::f32 ? 2e-5 : 1e-10;
          th::check_close(th::values(y), ref_bn(x, st.mean, st.var, w, b, 1e-5), t, t, "train " + os.str());
          const Tensor rm = th::random({C}, dt), rv = th::random({C}, dt, false, 0.5, 2);
          const Tensor ye = batch_norm(x, rm, rv, w, b, false, 0.1, 1e-3);
          th::check_close(th::values(ye), ref_bn(x, th::values(rm), th::values(rv), w, b, 1e-3), t, t, "eval " + os.str());
        }
}

TEST_CASE("batch_norm statistics stay accurate for a large mean", "[norm]") {
  // sum-of-squares variance would cancel catastrophically in float here; per-row moments do not
  const Tensor x = add(th::random({8, 2, 40, 40}, DType::f32, false, -1, 1), 1000.0);
  const Stats st = ref_stats(x);
  const Tensor rm = zeros({2}), rv = ones({2});
  const Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, 1.0);
  th::check_close(th::values(y), ref_bn(x, st.mean, st.var, Tensor(), Tensor(), 1e-5), 1e-3, 1e-3, "large mean");
  const double n = double(x.numel() / 2);
  th::check_close(th::values(rv), times(st.var, n / (n - 1)), 0, 1e-4, "var of a large-mean batch");
}

TEST_CASE("batch_norm updates running stats like PyTorch, without recording them", "[norm]") {
  for (DType rdt : {DType::f32, DType::f64})
    for (const Shape& s : std::vector<Shape>{{6, 3}, {3, 3, 4, 2}}) {
      const Tensor x = th::random(s, DType::f32, true).requires_grad_();
      Tensor rm = th::random({3}, rdt), rv = th::random({3}, rdt, false, 0.5, 2);
      const std::vector<double> rm0 = th::values(rm), rv0 = th::values(rv);
      const Stats st = ref_stats(x.detach());
      const double n = double(x.numel() / 3), mom = 0.3;
      const Tensor y = batch_norm(x, rm, rv, Tensor(), Tensor(), true, mom);
      std::vector<double> want_m(3), want_v(3);
      for (size_t c = 0; c < 3; ++c) {
        want_m[c] = (1 - mom) * rm0[c] + mom * st.mean[c];
        want_v[c] = (1 - mom) * rv0[c] + mom * st.var[c] * n / (n - 1);  // unbiased
      }
      th::check_close(th::values(rm), want_m, 1e-6, 1e-6, "running_mean");
      th::check_close(th::values(rv), want_v, 1e-6, 1e-6, "running_var");
      CHECK(rm.dtype() == rdt);
      CHECK(!rm.requires_grad());
      CHECK(rm.grad_fn() == nullptr);
      CHECK(y.requires_grad());
      // eval leaves the running stats alone
      batch_norm(x, rm, rv, Tensor(), Tensor(), false);
      th::check_close(th::values(rm), want_m, 1e-6, 1e-6, "running_mean after eval");
    }
}

TEST_CASE("batch_norm backward against the formula", "[norm][grad]") {
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : std::vector<Shape>{{5, 4}, {40, 19}, {2, 3, 6}, {3, 2, 4, 33}})
      for (bool training : {true, false})
        for (bool affine : {false, true}) {
          const int64_t C = s[1];
          const Tensor x = th::random(s, dt, true).requires_grad_();
          Tensor w = affine ? th::random({C}, dt).requires_grad_() : Tensor();
          Tensor b = affine ? th::random({C}, dt).requires_grad_() : Tensor();
          const Tensor rm = th::random({C}, dt), rv = th::random({C}, dt, false, 0.5, 2);
          const Stats st = training ? ref_stats(x.detach()) : Stats{th::values(rm), th::values(rv)};
          const Tensor y = batch_norm(x, training ? Tensor() : rm, training ? Tensor() : rv, w, b, training);
          const Tensor g = th::random(s, dt, true);
          y.backward(g);
          const auto want = ref_bn_bwd(x.detach(), g, st.mean, st.var, w.defined() ? w.detach() : Tensor(), 1e-5, training);
          std::ostringstream os;
          os << dt << " " << s << " training " << training << " affine " << affine;
          const double t = dt == DType::f32 ? 5e-5 : 1e-9;
          th::check_close(th::values(x.grad()), want[0], t, t, "dx " + os.str());
          if (!affine) continue;
          th::check_close(th::values(w.grad()), want[1], t, t, "dw " + os.str());
          th::check_close(th::values(b.grad()), want[2], t, t, "db " + os.str());
        }
  // only the parameters need gradients: dx is skipped, dw/db still right
  Tensor w = th::random({3}).requires_grad_(), b = th::random({3}).requires_grad_();
  const Tensor x = th::random({4, 3, 5});
  batch_norm(x, Tensor(), Tensor(), w, b, true).sum().backward();
  th::check_close(th::values(b.grad()), std::vector<double>(3, 20.0), 1e-5, 1e-6, "db of a sum");
  th::check_close(th::values(w.grad()), std::vector<double>(3, 0.0), 1e-4, 0, "dw of a sum (sum of xhat is 0)");
}

TEST_CASE("batch_norm gradcheck in float64", "[norm][grad]") {
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true); },
                   {th::random({3, 2, 4}, DType::f64, true), th::random({2}), th::random({2})});
  th::gradcheck_ok([](V v) { return batch_norm(v[0], Tensor(), Tensor(), v[1], v[2], true); },
                   {th::random({6, 5}), th::random({5}), th::random({5})});
  th::gradcheck_ok([](V v) { return batch_norm(v[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
                   {th::random({2, 3, 2, 3}, DType::f64, true)});
  const Tensor rm = th::random({3}, DType::f64), rv = th::random({3}, DType::f64, false, 0.5, 2);
  th::gradcheck_ok([&](V v) { return batch_norm(v[0], rm, rv, v[1], v[2], false); },
                   {th::random({2, 3, 4}, DType::f64, true), th::random({3}), th::random({3})});
  // training with running stats: gradcheck re-runs f, so the buffers move; the gradient must not care
  Tensor rm2 = zeros({3}, {.dtype = DType::f64}), rv2 = ones({3}, {.dtype = DType::f64});
  th::gradcheck_ok([&](V v) { return batch_norm(v[0], rm2, rv2, v[1], Tensor(), true, 0.5); },
                   {th::random({4, 3}), th::random({3})});
}

TEST_CASE("batch_norm and layer_norm match PyTorch golden values", "[norm][golden]") {
  auto check = [](const Tensor& t, const char* name, double tol = 1e-12) {
    th::check_close(th::values(t), golden_values(name), tol, tol, name);
  };
  const Tensor x0 = wave({4, 3, 5}, 0.9, 0.1), w0 = wave({3}, 1.3, 0.5), b0 = wave({3}, 0.4, 1.0);
  Tensor rm = mul(wave({3}, 0.5, 0.2), 0.1), rv = add(abs(wave({3}, 0.6, 0.0)), 0.5);
  for (bool training : {true, false}) {
    Tensor x = x0.clone().requires_grad_(), w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
    const Tensor y = training ? batch_norm(x, rm, rv, w, b, true, 0.2, 1e-5) : batch_norm(x, rm, rv, w, b, false, 0.2, 1e-3);
    y.backward(wave(y.shape(), 0.3, 0.2));
    const std::string p = training ? "bn_train_" : "bn_eval_";
    check(y, (p + "y").c_str());
    check(x.grad(), (p + "dx").c_str());
    check(w.grad(), (p + "dw").c_str());
    check(b.grad(), (p + "db").c_str());
    if (!training) continue;
    check(rm, "bn_running_mean");
    check(rv, "bn_running_var");
    // float32 on the same data stays within float rounding
    Tensor rmf = mul(wave({3}, 0.5, 0.2, DType::f32), 0.1), rvf = add(abs(wave({3}, 0.6, 0.0, DType::f32)), 0.5);
    check(batch_norm(x0.to(DType::f32), rmf, rvf, w0.to(DType::f32), b0.to(DType::f32), true, 0.2), "bn_train_y", 1e-5);
    check(rmf, "bn_running_mean", 1e-6);
    check(rvf, "bn_running_var", 1e-6);
  }
  const Tensor x2 = wave({6, 4}, 0.8, 0.7).requires_grad_();
  const Tensor y2 = batch_norm(x2, Tensor(), Tensor(), Tensor(), Tensor(), true);
  y2.backward(wave(y2.shape(), 0.3, 0.2));
  check(y2, "bn_2d_y");
  check(x2.grad(), "bn_2d_dx");
  const Tensor xl = wave({3, 4, 5}, 0.45, 0.9).requires_grad_(), wl = wave({4, 5}, 0.33, 0.1).requires_grad_(),
               bl = wave({4, 5}, 0.21, 0.4).requires_grad_();
  const Tensor yl = layer_norm(xl, {4, 5}, wl, bl);
  yl.backward(wave(yl.shape(), 0.3, 0.2));
  check(yl, "ln_y");
  check(xl.grad(), "ln_dx");
  check(wl.grad(), "ln_dw");
  check(bl.grad(), "ln_db");
}

TEST_CASE("layer_norm values and backward against the reference loop", "[norm]") {
  const std::vector<std::pair<Shape, Shape>> cases = {
      {{4, 7}, {7}}, {{2, 3, 40}, {40}}, {{3, 4, 5}, {4, 5}}, {{2, 300}, {300}}, {{5}, {5}}, {{2, 2, 3, 3}, {2, 3, 3}}};
  for (DType dt : {DType::f32, DType::f64})
    for (const auto& [s, ns] : cases)
      for (bool nc : {false, true})
        for (bool affine : {false, true}) {
          const int64_t n = numel(ns);
          const Tensor x = th::random(s, dt, nc, -3, 5).requires_grad_();
          Tensor w = affine ? th::random(ns, dt).requires_grad_() : Tensor();
          Tensor b = affine ? th::random(ns, dt).requires_grad_() : Tensor();
          std::ostringstream os;
          os << dt << " " << s << " over " << ns << " nc " << nc << " affine " << affine;
          const Tensor y = layer_norm(x, ns, w, b, 1e-5);
          REQUIRE(y.shape() == s);
          const double t = dt == DType::f32 ? 2e-5 : 1e-10;
          th::check_close(th::values(y), ref_ln(x.detach(), n, w.defined() ? w.detach() : Tensor(),
                                                b.defined() ? b.detach() : Tensor(), 1e-5), t, t, "y " + os.str());
          const Tensor g = th::random(s, dt, true);
          y.backward(g);
          const auto want = ref_ln_bwd(x.detach(), g, n, w.defined() ? w.detach() : Tensor(), 1e-5);
          th::check_close(th::values(x.grad()), want[0], 5 * t, 5 * t, "dx " + os.str());
          if (!affine) continue;
          th::check_close(th::values(w.grad()), want[1], 5 * t, 5 * t, "dw " + os.str());
          th::check_close(th::values(b.grad()), want[2], 5 * t, 5 * t, "db " + os.str());
        }
}

TEST_CASE("layer_norm gradcheck in float64", "[norm][grad]") {
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { return layer_norm(v[0], {4}, v[1], v[2]); },
                   {th::random({3, 4}, DType::f64, true), th::random({4}), th::random({4})});
  th::gradcheck_ok([](V v) { return layer_norm(v[0], {2, 3}, v[1], v[2]); },
                   {th::random({2, 2, 3}, DType::f64, true), th::random({2, 3}, DType::f64, true), th::random({2, 3})});
  th::gradcheck_ok([](V v) { return layer_norm(v[0], {9}); }, {th::random({2, 9})});
}

TEST_CASE("norm kernels against their reference loops", "[norm][kernel]") {
  // S == 1, blocked rows, short rows; the last two are large enough for parallel_for to split them
  for (const Shape& s : std::vector<Shape>{{37, 19, 1}, {3, 5, 2100}, {4, 3, 7}, {16, 8, 1024}, {1024, 100, 1}}) {
    const int64_t B = s[0], C = s[1], S = s[2], n = B * C * S;
    const Tensor x = th::random({n}, DType::f32, false, -2, 6), w = th::random({C}), b = th::random({C}), dy = th::random({n});
    const cpu::BatchNormDims dims{.B = B, .C = C, .S = S};
    for (bool training : {true, false}) {
      std::vector<float> y(static_cast<size_t>(n)), yr(y), dx(y), dxr(y);
      std::vector<float> m(static_cast<size_t>(C), 0.5f), v(static_cast<size_t>(C), 1.5f), is(m), mr(m), vr(v), isr(m);
      std::vector<float> dw(m), db(m), dwr(m), dbr(m);
      cpu::batch_norm_fwd_kernel<float, float>(x.data_ptr<float>(), y.data(), w.data_ptr<float>(), b.data_ptr<float>(),
                                               m.data(), v.data(), is.data(), dims, 1e-5, training);
      cpu::batch_norm_fwd_ref<float, float>(x.data_ptr<float>(), yr.data(), w.data_ptr<float>(), b.data_ptr<float>(),
                                            mr.data(), vr.data(), isr.data(), dims, 1e-5, training);
      auto d = [](const std::vector<float>& a) { return std::vector<double>(a.begin(), a.end()); };
      th::check_close(d(m), d(mr), 1e-5, 1e-5, "bn mean");
      th::check_close(d(v), d(vr), 1e-5, 1e-5, "bn var");
      th::check_close(d(y), d(yr), 1e-5, 1e-5, "bn y");
      cpu::batch_norm_bwd_kernel<float, float>(dy.data_ptr<float>(), x.data_ptr<float>(), nullptr, w.data_ptr<float>(),
                                               b.data_ptr<float>(), m.data(), is.data(), dx.data(), dw.data(),
                                               db.data(), dims, training);
      cpu::batch_norm_bwd_ref<float, float>(dy.data_ptr<float>(), x.data_ptr<float>(), nullptr, w.data_ptr<float>(),
                                            m.data(), is.data(), dxr.data(), dwr.data(), dbr.data(), dims, training);
      th::check_close(d(dx), d(dxr), 1e-5, 1e-4, "bn dx");
      th::check_close(d(dw), d(dwr), 1e-4, 1e-5, "bn dw");
      th::check_close(d(db), d(dbr), 1e-4, 1e-5, "bn db");
    }
    const int64_t M = B, N = C * S;  // layer norm over the rows of the same data
    std::vector<float> y(static_cast<size_t>(n)), yr(y), dx(y), dxr(y), mean(static_cast<size_t>(M)), rstd(mean), mr(mean), rr(mean);
    const Tensor lw = th::random({N}), lb = th::random({N});
    std::vector<float> dw(static_cast<size_t>(N)), db(dw), dwr(dw), dbr(dw);
    cpu::layer_norm_fwd_kernel<float, float>(x.data_ptr<float>(), y.data(), lw.data_ptr<float>(), lb.data_ptr<float>(),
                                             mean.data(), rstd.data(), M, N, 1e-5);
    cpu::layer_norm_fwd_ref<float, float>(x.data_ptr<float>(), yr.data(), lw.data_ptr<float>(), lb.data_ptr<float>(),
                                          mr.data(), rr.data(), M, N, 1e-5);
    auto d = [](const std::vector<float>& a) { return std::vector<double>(a.begin(), a.end()); };
    th::check_close(d(y), d(yr), 1e-5, 1e-5, "ln y");
    th::check_close(d(rstd), d(rr), 1e-5, 1e-5, "ln rstd");
    cpu::layer_norm_bwd_kernel<float, float>(dy.data_ptr<float>(), x.data_ptr<float>(), lw.data_ptr<float>(), mean.data(),
                                             rstd.data(), dx.data(), dw.data(), db.data(), M, N);
    cpu::layer_norm_bwd_ref<float, float>(dy.data_ptr<float>(), x.data_ptr<float>(), lw.data_ptr<float>(), mean.data(),
                                          rstd.data(), dxr.data(), dwr.data(), dbr.data(), M, N);
    th::check_close(d(dx), d(dxr), 1e-5, 1e-4, "ln dx");
    th::check_close(d(dw), d(dwr), 1e-4, 1e-5, "ln dw");
    th::check_close(d(db), d(dbr), 1e-4, 1e-5, "ln db");
  }
}

TEST_CASE("norms in bfloat16 with float32 parameters", "[norm]") {
  const Tensor x = th::random({4, 3, 10}, DType::bf16), w = th::random({3}), b = th::random({3});
  const Tensor y = batch_norm(x, Tensor(), Tensor(), w, b, true);
  CHECK(y.dtype() == DType::bf16);
  const Stats st = ref_stats(x);
  th::check_close(th::values(y), ref_bn(x, st.mean, st.var, w, b, 1e-5), 3e-2, 1e-2, "bf16 batch_norm");
  const Tensor lw = th::random({10}), lb = th::random({10});
  th::check_close(th::values(layer_norm(x, {10}, lw, lb)), ref_ln(x, 10, lw, lb, 1e-5), 3e-2, 1e-2, "bf16 layer_norm");
  Tensor wg = th::random({3}).requires_grad_();
  batch_norm(x, Tensor(), Tensor(), wg, Tensor(), true).sum().backward();
  CHECK(wg.grad().dtype() == DType::f32);
}

TEST_CASE("dropout: mask statistics, scaling, reproducibility and gradient", "[dropout]") {
  const Tensor x = th::random({200, 100}, DType::f32, false, 1, 2);
  for (double p : {0.1, 0.5, 0.8}) {
    const Tensor y = dropout(x, p, true);
    const std::vector<double> xv = th::values(x), yv = th::values(y);
    int64_t zeros_seen = 0;
    bool scaled = true;
    for (size_t i = 0; i < xv.size(); ++i) {
      if (yv[i] == 0) ++zeros_seen;
      else scaled = scaled && std::abs(yv[i] - xv[i] / (1 - p)) <= 1e-6 * std::abs(yv[i]);
    }
    CHECK(scaled);
    const double frac = double(zeros_seen) / double(xv.size());  // 20000 draws: 5 sigma < 0.018
    INFO("p " << p << " dropped fraction " << frac);
    CHECK(std::abs(frac - p) < 0.018);
  }
  manual_seed(42);
  const Tensor a = dropout(x, 0.3, true);
  const Tensor b2 = dropout(x, 0.3, true);
  manual_seed(42);
  const Tensor c = dropout(x, 0.3, true);
  th::check_close(a, c, 0, 0, "same seed, same mask");
  CHECK(th::values(a) != th::values(b2));
  CHECK(dropout(x, 0.3, false).is_same(x));
  CHECK(dropout(x, 0.0, true).is_same(x));
  th::check_close(dropout(x, 1.0, true), zeros_like(x), 0, 0, "p = 1");
  // non-contiguous input: the mask follows the logical layout; backward is dout * mask
  const Tensor xn = th::random({6, 8}, DType::f64, true).requires_grad_();
  manual_seed(7);
  const Tensor yn = dropout(xn, 0.5, true);
  const Tensor g = th::random({6, 8}, DType::f64);
  yn.backward(g);
  const std::vector<double> yv = th::values(yn), xv = th::values(xn.detach()), gv = th::values(g), dxv = th::values(xn.grad());
  for (size_t i = 0; i < yv.size(); ++i) CHECK(dxv[i] == (yv[i] == 0 ? 0.0 : gv[i] * 2.0));
  for (size_t i = 0; i < yv.size(); ++i) CHECK((yv[i] == 0 || std::abs(yv[i] - 2 * xv[i]) < 1e-12));
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { manual_seed(3); return dropout(v[0], 0.4, true); }, {th::random({4, 5}, DType::f64, true)});
}

TEST_CASE("norm and dropout errors name the op, the shapes and what was expected", "[norm]") {
  const Tensor x = th::random({4, 3, 5});
  th::check_throws([&] { batch_norm(th::random({5}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
                   {"batch_norm", "[5]", "at least 2 dims"});
  th::check_throws([&] { batch_norm(x, Tensor(), Tensor(), th::random({4}), Tensor(), true); },
                   {"batch_norm", "weight of shape [4]", "[4, 3, 5]", "expected shape [3]"});
  th::check_throws([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), th::random({3, 1}), true); },
                   {"batch_norm", "bias of shape [3, 1]"});
  th::check_throws([&] { batch_norm(x, zeros({2}), ones({3}), Tensor(), Tensor(), true); },
                   {"batch_norm", "running_mean of shape [2]"});
  th::check_throws([&] { batch_norm(x, zeros({3}), Tensor(), Tensor(), Tensor(), true); },
                   {"batch_norm", "running_var undefined", "both or neither"});
  th::check_throws([&] { batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false); },
                   {"batch_norm", "eval mode"});
  th::check_throws([&] { batch_norm(th::random({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
                   {"batch_norm", "[1, 3]", "more than 1 value per channel"});
  th::check_throws([&] { batch_norm(ones({2, 3}, {.dtype = DType::i32}), Tensor(), Tensor(), Tensor(), Tensor(), true); },
                   {"batch_norm", "int32"});
  th::check_throws([&] { layer_norm(x, {4}); }, {"layer_norm", "[4, 3, 5]", "normalized_shape [4]", "last dims"});
  th::check_throws([&] { layer_norm(x, {}); }, {"layer_norm", "non-empty"});
  th::check_throws([&] { layer_norm(x, {3, 5}, th::random({5})); }, {"layer_norm", "weight of shape [5]", "expected shape [3, 5]"});
  th::check_throws([&] { dropout(x, 1.5, true); }, {"dropout", "p = 1.5", "[0, 1]"});
  th::check_throws([&] { dropout(ones({3}, {.dtype = DType::i64}), 0.5, true); }, {"dropout", "int64"});
}

// ---------------------------------------------------------------- channels-last and the fused BatchNorm + ReLU

namespace {

/// x [B, C, H, W] with channels-last strides (memory [B][H][W][C]), random in [lo, hi).
Tensor channels_last_random(const Shape& s, DType dt, double lo = -2, double hi = 2) {
  return permute(th::random({s[0], s[2], s[3], s[1]}, dt, false, lo, hi), {0, 3, 1, 2});
}

/// A fresh leaf that requires grad with t's values and layout.
Tensor leaf(const Tensor& t) {
  Tensor l = t.detach();
  l.requires_grad_(true);
  return l;
}

}  // namespace

namespace {

/// The batch norm kernels in T on one [B, C, S] case against their reference loops (f32 tolerances for
/// 16-bit and f32 storage, tight ones for f64); with the fused ReLU, the backward that recomputes the
/// mask from x (y = null) against the one that reads y: bit for bit, as the masks must be the same.
/// ties: x = 0.5 + k / 4 (k in -2 .. 2) and, in eval (mean 0.5, no bias), z == 0 exactly at x == 0.5:
/// y = 0 there, so a mask of z >= 0 would differ.
template <class T>
void check_bn_kernels(const Shape& s, bool affine, bool ties) {
  using A = acc_t<T>;
  const int64_t B = s[0], C = s[1], S = s[2], n = B * C * S;
  const DType dt = dtype_v<T>;
  std::vector<double> tie(static_cast<size_t>(n));
  for (size_t i = 0; i < tie.size(); ++i) tie[i] = 0.5 + 0.25 * double(int64_t(i % 5) - 2);
  const Tensor x = ties ? th::make(tie, {n}, dt) : th::random({n}, dt, false, -2, 6);
  const Tensor dy = th::random({n}, dt), w = th::random({C}, dtype_v<A>), b = th::random({C}, dtype_v<A>);
  const A* wp = affine ? w.data_ptr<A>() : nullptr;
  const A* bp = affine ? b.data_ptr<A>() : nullptr;
  const T *xp = x.data_ptr<T>(), *dyp = dy.data_ptr<T>();
  const bool wide = std::is_same_v<T, double>;
  const double tol = wide ? 1e-12 : 1e-5;
  auto d = [](const auto& a) {
    std::vector<double> r;
    for (const auto& v : a) r.push_back(double(cast_value<double>(v)));
    return r;
  };
  for (bool cl : {false, true})
    for (bool relu : {false, true})
      for (bool training : {true, false}) {
        const cpu::BatchNormDims dims{.B = B, .C = C, .S = S, .channels_last = cl, .relu = relu};
        const std::string what = std::string(dtype_name(dt)) + " B C S " + std::to_string(B) + " " +
                                 std::to_string(C) + " " + std::to_string(S) + (cl ? " channels-last" : " channels-first") +
                                 (relu ? " relu" : "") + (training ? " training" : " eval") + (affine ? "" : " no w, b") +
                                 (ties ? " ties" : "");
        INFO(what);
        std::vector<T> y(static_cast<size_t>(n)), yr(y), dx(y), dxr(y), dxy(y);
        std::vector<A> m(static_cast<size_t>(C), A(0.5)), v(static_cast<size_t>(C), A(1.5)), is(m), mr(m), vr(v), isr(m);
        std::vector<A> dw(m), db(m), dwr(m), dbr(m), dwy(m), dby(m);
        cpu::batch_norm_fwd_kernel<T, A>(xp, y.data(), wp, bp, m.data(), v.data(), is.data(), dims, 1e-5, training);
        cpu::batch_norm_fwd_ref<T, A>(xp, yr.data(), wp, bp, mr.data(), vr.data(), isr.data(), dims, 1e-5, training);
        th::check_close(d(m), d(mr), tol, tol, "mean " + what);
        th::check_close(d(v), d(vr), tol, tol, "var " + what);
        th::check_close(d(y), d(yr), wide ? tol : 1e-2, tol, "y " + what);
        if (relu) CHECK(*std::min_element(y.begin(), y.end()) == T(0));
        cpu::batch_norm_bwd_kernel<T, A>(dyp, xp, nullptr, wp, bp, m.data(), is.data(), dx.data(), dw.data(), db.data(),
                                         dims, training);
        cpu::batch_norm_bwd_ref<T, A>(dyp, xp, y.data(), wp, m.data(), is.data(), dxr.data(), dwr.data(), dbr.data(),
                                      dims, training);
        th::check_close(d(dx), d(dxr), wide ? tol : 1e-2, wide ? 1e-10 : 1e-4, "dx " + what);
        th::check_close(d(dw), d(dwr), wide ? 1e-10 : 1e-4, tol, "dw " + what);
        th::check_close(d(db), d(dbr), wide ? 1e-10 : 1e-4, tol, "db " + what);
        if (!relu) continue;
        cpu::batch_norm_bwd_kernel<T, A>(dyp, xp, y.data(), wp, bp, m.data(), is.data(), dxy.data(), dwy.data(),
                                         dby.data(), dims, training);
        CHECK(std::memcmp(dx.data(), dxy.data(), dx.size() * sizeof(T)) == 0);
        CHECK(std::memcmp(dw.data(), dwy.data(), dw.size() * sizeof(A)) == 0);
        CHECK(std::memcmp(db.data(), dby.data(), db.size() * sizeof(A)) == 0);
      }
}

}  // namespace

TEST_CASE("batch norm kernels in both layouts, with and without the fused ReLU, against their reference loops",
          "[norm][kernel]") {
  // odd channel counts hit the SIMD tails; {4, 64, 300} and {8, 13, 1000} span several row blocks and tiles;
  // {8, 13, 1000} and {12, 3, 196} have enough rows per channel for the channels-first prefetches;
  // 53 and 37 channels: groups of 3 and 2 vectors (and 4 + 2 on AVX2) plus tails in channels-last;
  // {2, 3, 2100}: rows longer than kNormBlock, in several blocks
  for (const Shape& s : std::vector<Shape>{
           {3, 5, 7}, {2, 19, 33}, {2, 3, 1}, {4, 64, 300}, {8, 13, 1000}, {12, 3, 196}, {3, 53, 7}, {2, 37, 9}})
    check_bn_kernels<float>(s, true, false);
  for (const Shape& s : std::vector<Shape>{{3, 5, 7}, {2, 19, 33}, {2, 3, 2100}, {3, 53, 7}}) {
    check_bn_kernels<double>(s, true, false);
    check_bn_kernels<float>(s, false, false);
  }
  for (const Shape& s : std::vector<Shape>{{3, 5, 7}, {2, 19, 33}, {3, 53, 7}}) {
    check_bn_kernels<float>(s, false, true);
    check_bn_kernels<double>(s, false, true);
    check_bn_kernels<bf16>(s, true, false);
    check_bn_kernels<f16>(s, true, false);
  }
  // the recomputed mask is y > 0 as stored: a 16-bit y rounds a tiny z > 0 to 0; a NaN z gives a NaN y
  CHECK_FALSE(cpu::norm_relu_keeps<f16, float>(1e-9f));
  CHECK(cpu::norm_relu_keeps<float, float>(1e-9f));
  CHECK_FALSE(cpu::norm_relu_keeps<float, float>(std::nanf("")));
}

TEST_CASE("batch norm row loops write the same values with non-temporal stores", "[norm][kernel]") {
  // the channels-first passes stream y and dx past the caches for large tensors (kNormStreamBytes):
  // the same rows here, small, with and without stream (taken on AVX-512 for 64-byte aligned whole lines)
  alignas(64) float x[160], dy[160], mask[160], y0[160], y1[160];
  for (int i = 0; i < 160; ++i)
    x[i] = float(i % 13) * 0.3f - 1.5f, dy[i] = float(i % 7) * 0.5f - 1.0f, mask[i] = float(i % 3) - 1.0f;
#if defined(__AVX512F__)
  CHECK(cpu::norm_streams<float, float>(y1, 160));
#endif
  CHECK_FALSE(cpu::norm_streams<float, float>(y1 + 1, 144));
  for (int64_t n : {160, 150})
    for (bool relu : {false, true}) {
      cpu::norm_row_scale<float, float>(x, y0, n, 0.25f, 1.5f, -0.1f, relu, 0, false);
      cpu::norm_row_scale<float, float>(x, y1, n, 0.25f, 1.5f, -0.1f, relu, 0, true);
      cpu::norm_stream_fence();
      CHECK(std::equal(y0, y0 + n, y1));
      for (int mk = 0; mk < 3; ++mk)  // no mask, y's, x's
        for (const float* xx : {static_cast<const float*>(nullptr), static_cast<const float*>(x)}) {
          if (mk == 2 && !xx) continue;
          const cpu::NormRelu<float, float> rl{mk == 1 ? mask : nullptr, mk == 2, 0.7f, -0.1f};
          cpu::norm_row_dx<float, float>(dy, xx, y0, n, 0.7f, 0.1f, 0.25f, xx ? 0.3f : 0.0f, rl, 0, false);
          cpu::norm_row_dx<float, float>(dy, xx, y1, n, 0.7f, 0.1f, 0.25f, xx ? 0.3f : 0.0f, rl, 0, true);
          cpu::norm_stream_fence();
          CHECK(std::equal(y0, y0 + n, y1));
        }
    }
}

TEST_CASE("batch_norm_relu matches relu(batch_norm) in values, gradients and running stats, in every layout",
          "[norm][grad]") {
  const Shape s{4, 6, 5, 3};
  for (DType dt : {DType::f32, DType::f64})
    for (int layout = 0; layout < 3; ++layout)  // contiguous, channels-last, a strided view
      for (bool training : {true, false})
        for (bool affine : {true, false}) {
          const std::string what = std::string(dtype_name(dt)) + " layout " + std::to_string(layout) +
                                   (training ? " training" : " eval") + (affine ? " affine" : "");
          INFO(what);
          const Tensor x0 = layout == 0   ? th::random(s, dt)
                            : layout == 1 ? channels_last_random(s, dt)
                                          : th::random(s, dt, true);
          const Tensor g = th::random(s, dt), w0 = th::random({6}), b0 = th::random({6}, DType::f32, false, -1, 1);
          const Tensor rm0 = th::random({6}), rv0 = th::random({6}, DType::f32, false, 0.5, 2);
          struct Run {
            Tensor y, x, w, b, rm, rv;
          };
          auto run = [&](bool fused) {
            Run r{Tensor(), leaf(x0), affine ? leaf(w0) : Tensor(), affine ? leaf(b0) : Tensor(), clone(rm0),
                  clone(rv0)};
            r.y = fused ? batch_norm_relu(r.x, r.rm, r.rv, r.w, r.b, training, 0.3, 1e-4)
                        : relu(batch_norm(r.x, r.rm, r.rv, r.w, r.b, training, 0.3, 1e-4));
            mul(r.y, g).sum().backward();
            return r;
          };
          const Run f = run(true), u = run(false);
          const double t = dt == DType::f64 ? 1e-12 : 1e-5;
          th::check_close(f.y, u.y, t, t, "y");
          th::check_close(f.x.grad(), u.x.grad(), t, t, "dx");
          th::check_close(f.rm, u.rm, 0, 0, "running_mean");
          th::check_close(f.rv, u.rv, 0, 0, "running_var");
          if (affine) {
            th::check_close(f.w.grad(), u.w.grad(), 10 * t, t, "dweight");
            th::check_close(f.b.grad(), u.b.grad(), 10 * t, t, "dbias");
          }
          if (layout == 1) {  // channels-last in, channels-last out (no copy to NCHW), and dx too
            CHECK(f.y.stride(1) == 1);
            const std::vector<Tensor> r = batch_norm_fwd(x0, Tensor(), Tensor(), Tensor(), Tensor(), true, 1e-5, true);
            CHECK(batch_norm_bwd(g, x0, Tensor(), Tensor(), r[1], r[3], true, {true, false, false}, true)[0].stride(1) ==
                  1);
            CHECK(batch_norm(x0, rm0, rv0, w0.to(dt), Tensor(), false).stride(1) == 1);
          }
          // against the double reference: relu of the plain reference values
          const Stats st = training ? ref_stats(x0) : Stats{th::values(rm0), th::values(rv0)};
          std::vector<double> want = ref_bn(x0, st.mean, st.var, affine ? w0 : Tensor(), affine ? b0 : Tensor(), 1e-4);
          for (double& v : want) v = std::max(v, 0.0);
          th::check_close(th::values(f.y), want, dt == DType::f64 ? 1e-10 : 1e-5, 1e-5, "y vs reference");
        }
}

TEST_CASE("batch_norm in channels-last equals batch_norm of the contiguous copy", "[norm]") {
  for (bool training : {true, false}) {
    const Tensor x0 = channels_last_random({3, 16, 7, 5}, DType::f32, -1, 3), w = th::random({16}), b = th::random({16});
    const Tensor rm = th::random({16}), rv = th::random({16}, DType::f32, false, 0.5, 2), g = th::random({3, 16, 7, 5});
    Tensor xa = leaf(x0), xb = leaf(contiguous(x0));
    const Tensor ya = batch_norm(xa, clone(rm), clone(rv), w, b, training), yb = batch_norm(xb, clone(rm), clone(rv), w, b, training);
    CHECK(ya.stride(1) == 1);
    CHECK(yb.is_contiguous());
    mul(ya, g).sum().backward();
    mul(yb, g).sum().backward();
    th::check_close(ya, yb, 1e-5, 1e-5, "y");
    th::check_close(xa.grad(), xb.grad(), 1e-5, 1e-5, "dx");
  }
}

TEST_CASE("batch_norm_relu gradcheck in float64", "[norm][grad]") {
  using V = const std::vector<Tensor>&;
  // values away from the ReLU's kink: finite differences across it would not match
  const Tensor rm = th::random({3}, DType::f64), rv = th::random({3}, DType::f64, false, 0.5, 2);
  th::gradcheck_ok([](V v) { return batch_norm_relu(v[0], Tensor(), Tensor(), v[1], v[2], true); },
                   {th::random({4, 3, 5}, DType::f64, true), th::random({3}), th::random({3})});
  th::gradcheck_ok([](V v) { return batch_norm_relu(v[0], Tensor(), Tensor(), v[1], v[2], true); },
                   {channels_last_random({2, 3, 3, 2}, DType::f64), th::random({3}), th::random({3})});
  th::gradcheck_ok([&](V v) { return batch_norm_relu(v[0], rm, rv, v[1], v[2], false); },
                   {channels_last_random({2, 3, 2, 2}, DType::f64), th::random({3}), th::random({3})});
  th::gradcheck_ok([](V v) { return batch_norm_relu(v[0], Tensor(), Tensor(), Tensor(), Tensor(), true); },
                   {th::random({6, 3}, DType::f64)});
}

// ---------------------------------------------------------------- fusion in Sequential (nn/fusion.hpp)

namespace {

/// Random batch-norm statistics and affine parameters, so that folding them is really tested.
void randomize_bn(nn::Module& model) {
  NoGrad ng;
  for (auto& [name, m] : model.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNormBase*>(m)) {
      const int64_t C = bn->num_features;
      if (bn->running_mean.defined()) bn->running_mean.copy_(th::random({C}));
      if (bn->running_var.defined()) bn->running_var.copy_(th::random({C}, DType::f32, false, 0.5, 2));
      if (bn->weight.defined()) bn->weight.copy_(th::random({C}, DType::f32, false, 0.5, 1.5));
      if (bn->bias.defined()) bn->bias.copy_(th::random({C}, DType::f32, false, -0.5, 0.5));
    }
}

struct FusionRun {
  Tensor y, dx;
  nn::NamedTensors grads, state;
  std::string node;  // the output's grad_fn, and the one below it
};

/// model(x) (fused or not), then backward of sum(y * g): outputs, gradients, state after.
FusionRun run_model(nn::Module& model, const Tensor& x0, const Tensor& g, bool fused) {
  nn::set_fusion(fused);
  FusionRun r;
  Tensor x = leaf(x0);
  try {
    r.y = model(x);
  } catch (...) {
    nn::set_fusion(true);
    throw;
  }
  nn::set_fusion(true);
  if (r.y.grad_fn()) {
    r.node = r.y.grad_fn()->name;
    if (!r.y.grad_fn()->next.empty() && r.y.grad_fn()->next[0].fn) r.node += " < " + r.y.grad_fn()->next[0].fn->name;
  }
  mul(r.y, g).sum().backward();
  r.dx = x.grad();
  for (auto& [n, p] : model.named_parameters()) r.grads.emplace_back(n, p.grad().defined() ? clone(p.grad()) : Tensor());
  for (auto& [n, t] : model.state_dict()) r.state.emplace_back(n, clone(t));
  return r;
}

/// Runs two copies of make()'s model, fused and not, in train or eval, and compares everything.
/// Returns the fused run's node names.
std::string check_fusion(const std::function<nn::ModulePtr()>& make, const Tensor& x0, bool training) {
  nn::ModulePtr a = make(), b = make();
  randomize_bn(*a);
  b->load_state_dict(a->state_dict());
  a->train(training), b->train(training);
  Tensor y0 = (*b)(x0.detach());
  const Tensor g = th::random(y0.shape());
  b->load_state_dict(a->state_dict());  // undo that forward's running-stat update
  const FusionRun f = run_model(*a, x0, g, true), u = run_model(*b, x0, g, false);
  th::check_close(f.y, u.y, 1e-5, 1e-5, "y");
  th::check_close(f.dx, u.dx, 1e-5, 1e-4, "dx");
  REQUIRE(f.grads.size() == u.grads.size());
  for (size_t i = 0; i < f.grads.size(); ++i) {
    REQUIRE(f.grads[i].second.defined() == u.grads[i].second.defined());
    if (f.grads[i].second.defined()) th::check_close(f.grads[i].second, u.grads[i].second, 1e-4, 1e-4, f.grads[i].first);
  }
  for (size_t i = 0; i < f.state.size(); ++i) th::check_close(f.state[i].second, u.state[i].second, 1e-6, 1e-6, f.state[i].first);
  CHECK(u.node.find("batch_norm_relu") == std::string::npos);  // the unfused run really is unfused
  return f.node;
}

nn::ModulePtr conv_bn_relu() {
  return std::make_shared<nn::Sequential>(nn::Conv2d({.in = 3, .out = 8, .k = 3, .pad = 1, .bias = false}),
                                          nn::BatchNorm2d(8), nn::ReLU());
}

}  // namespace

TEST_CASE("Sequential fuses Conv2d, BatchNorm2d, ReLU with the unfused outputs, gradients and running stats",
          "[norm][fusion]") {
  for (bool cl : {false, true}) {
    INFO((cl ? "channels-last" : "contiguous") << " input");
    const Tensor x = cl ? channels_last_random({2, 3, 7, 6}, DType::f32) : th::random({2, 3, 7, 6});
    CHECK(check_fusion(conv_bn_relu, x, true) == "batch_norm_relu_backward < conv2d_backward");
    CHECK(check_fusion(conv_bn_relu, x, false) == "relu_backward < conv2d_backward");  // BN folded into the conv
    // fastai's ConvLayer: a Sequential subclass; without an activation, conv + BN alone fold in eval
    auto conv_layer = [] { return std::make_shared<nn::ConvLayer>(nn::ConvLayerOptions{.in = 3, .out = 5}); };
    CHECK(check_fusion(conv_layer, x, true) == "batch_norm_relu_backward < conv2d_backward");
    CHECK(check_fusion(conv_layer, x, false) == "relu_backward < conv2d_backward");
    auto no_act = [] {
      return std::make_shared<nn::ConvLayer>(nn::ConvLayerOptions{.in = 3, .out = 5, .bias = 1, .act_cls = {}});
    };
    CHECK(check_fusion(no_act, x, false) == "conv2d_backward");  // x is a leaf: nothing below
    CHECK(check_fusion(no_act, x, true) == "batch_norm_backward < conv2d_backward");
  }
  // BatchNorm1d + ReLU in a head
  auto head = [] { return std::make_shared<nn::Sequential>(nn::Linear(6, 4), nn::BatchNorm1d(4), nn::ReLU()); };
  CHECK(check_fusion(head, th::random({5, 6}), true) == "batch_norm_relu_backward < add_backward");
  CHECK(check_fusion(head, th::random({5, 6}), false) == "batch_norm_relu_backward < add_backward");
}

TEST_CASE("Sequential does not fuse hooked layers, subclasses, or batch norms without running stats",
          "[norm][fusion]") {
  const Tensor x = th::random({2, 3, 5, 5});
  // a forward hook on the batch norm sees its own output (negative values: before the ReLU)
  for (bool training : {true, false}) {
    int calls = 0;
    double min_seen = 0;
    auto hooked = [&] {
      auto s = conv_bn_relu();
      (*std::static_pointer_cast<nn::Sequential>(s))[1].register_forward_hook(
          [&](nn::Module&, const Tensor&, Tensor& out) { ++calls, min_seen = std::min(min_seen, out.min().item<double>()); });
      return s;
    };
    const std::string node = check_fusion(hooked, x, training);
    CHECK(node == "relu_backward < batch_norm_backward");
    CHECK(calls == 3);  // the shape run, fused, unfused
    CHECK(min_seen < 0);
  }
  // a pre-hook on the ReLU
  auto pre_hooked = [] {
    auto s = conv_bn_relu();
    (*std::static_pointer_cast<nn::Sequential>(s))[2].register_forward_pre_hook([](nn::Module&, Tensor&) {});
    return s;
  };
  CHECK(check_fusion(pre_hooked, x, true) == "relu_backward < batch_norm_backward");
  CHECK(check_fusion(pre_hooked, x, false) == "relu_backward < conv2d_backward");  // conv + BN still fold
  // a subclass of ReLU may change forward: not fused
  struct MyReLU : nn::ReLU {};
  auto sub = [] {
    return std::make_shared<nn::Sequential>(nn::Conv2d({.in = 3, .out = 4, .k = 1}), nn::BatchNorm2d(4), MyReLU());
  };
  CHECK(check_fusion(sub, x, true) == "relu_backward < batch_norm_backward");
  CHECK(check_fusion(sub, x, false) == "relu_backward < conv2d_backward");  // conv + BN still fold
  // without running stats eval uses the batch's statistics: no fold, but BN + ReLU fuse
  auto no_stats = [] {
    return std::make_shared<nn::Sequential>(nn::Conv2d({.in = 3, .out = 4, .k = 1}),
                                            nn::BatchNorm2d(4, {.track_running_stats = false}), nn::ReLU());
  };
  CHECK(check_fusion(no_stats, x, false) == "batch_norm_relu_backward < conv2d_backward");
  CHECK(nn::fusion_enabled());
}

TEST_CASE("Under autocast, eval still folds Conv2d + BatchNorm2d: within bf16 rounding of the float32 model",
          "[norm][fusion]") {
  // the fold runs in float32 and conv2d rounds the folded weights to bf16; unfolded, conv2d rounds w and
  // the batch norm scales in float32: both are the float32 model up to bf16 rounding
  for (bool cl : {false, true}) {
    INFO((cl ? "channels-last" : "contiguous") << " input");
    const Tensor x0 = cl ? channels_last_random({4, 3, 9, 8}, DType::f32) : th::random({4, 3, 9, 8});
    nn::ModulePtr m = conv_bn_relu();
    randomize_bn(*m);
    m->eval();
    nn::set_fusion(false);
    const Tensor y32 = (*m)(x0);  // the float32 model, unfused
    Tensor yf, yu;
    std::string node;
    {
      Autocast ac(DType::bf16);
      nn::set_fusion(true);
      const Tensor x = leaf(x0);
      yf = (*m)(x);
      node = yf.grad_fn()->name + " < " + yf.grad_fn()->next[0].fn->name;
      mul(yf, th::random(yf.shape())).sum().backward();  // the folded path is differentiable under autocast
      CHECK(x.grad().defined());
      nn::set_fusion(false);
      yu = (*m)(x0);
      nn::set_fusion(true);
    }
    CHECK(node == "relu_backward < conv2d_backward");  // folded: no batch norm node
    const double scale = y32.abs().max().item<double>();
    const double err_f = sub(yf, y32).abs().max().item<double>(), err_u = sub(yu, y32).abs().max().item<double>();
    INFO("max |y32| " << scale << ", folded bf16 error " << err_f << ", unfolded bf16 error " << err_u);
    CHECK(err_f > 0);             // the operands really were rounded
    CHECK(err_f < 1e-2 * scale);  // 27 products per output, each operand within 2^-9 relative
    CHECK(err_f < 4 * err_u + 1e-4 * scale);
  }
  CHECK(nn::fusion_enabled());
}

}  // namespace test_norm
