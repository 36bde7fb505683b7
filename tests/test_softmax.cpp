// softmax / log_softmax: values against a double reference loop over every dim (negative too),
// non-contiguous inputs, both kernel layouts (last dim rows, earlier-dim tiles wider than one
// tile), dtypes, extreme values, empty and 0-dim tensors; the fused backward against its formula
// and gradcheck; errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "helpers.hpp"

namespace test_softmax {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

/// softmax / log_softmax of x over dim d, in double, in row-major order of x's shape.
std::vector<double> ref_softmax(const Tensor& x, int d, bool log) {
  std::vector<double> out(size_t(x.numel()));
  for (int64_t n = 0; n < x.numel(); ++n) {
    std::vector<int64_t> idx = th::unravel(n, x.shape());
    const int64_t len = x.dim() ? x.shape()[size_t(d)] : 1;
    auto elem = [&](int64_t k) {
      if (x.dim()) idx[size_t(d)] = k;
      return th::at(x, idx);
    };
    const int64_t self = x.dim() ? idx[size_t(d)] : 0;
    double m = -INFINITY;
    for (int64_t k = 0; k < len; ++k) m = std::isnan(elem(k)) || elem(k) > m ? elem(k) : m;
    double s = 0;
    for (int64_t k = 0; k < len; ++k) s += std::exp(elem(k) - m);
    const double v = elem(self) - m;
    out[size_t(n)] = log ? v - std::log(s) : std::exp(v) / s;
  }
  return out;
}

/// The backward formulas, in double: softmax dy*(g - sum g*y); log_softmax g - exp(y) sum g.
std::vector<double> ref_backward(const Tensor& g, const Tensor& y, int d, bool log) {
  std::vector<double> out(size_t(y.numel()));
  for (int64_t n = 0; n < y.numel(); ++n) {
    std::vector<int64_t> idx = th::unravel(n, y.shape());
    const int64_t self = idx[size_t(d)];
    double s = 0;
    for (int64_t k = 0; k < y.shape()[size_t(d)]; ++k) {
      idx[size_t(d)] = k;
      s += log ? th::at(g, idx) : th::at(g, idx) * th::at(y, idx);
    }
    idx[size_t(d)] = self;
    const double gv = th::at(g, idx), yv = th::at(y, idx);
    out[size_t(n)] = log ? gv - std::exp(yv) * s : yv * (gv - s);
  }
  return out;
}

}  // namespace

TEST_CASE("softmax and log_softmax values over every dim", "[softmax]") {
  const std::vector<Shape> shapes = {{5}, {3, 7}, {2, 3, 4}, {4, 37, 5}, {2, 70}, {3, 4, 300}, {2, 0, 3}, {0}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16})
    for (const Shape& s : shapes)
      for (int64_t d = -s.dim(); d < s.dim(); ++d)
        for (bool nc : {false, true})
          for (bool log : {false, true}) {
            const Tensor x = th::random(s, dt, nc, -4, 4);
            const Tensor y = log ? log_softmax(x, d) : softmax(x, d);
            std::ostringstream os;
            os << (log ? "log_softmax " : "softmax ") << dt << " " << s << " dim " << d << " nc " << nc;
            REQUIRE(y.shape() == s);
            REQUIRE(y.dtype() == dt);
            const int dd = int(d < 0 ? d + s.dim() : d);
            th::check_close(th::values(y), ref_softmax(x, dd, log), th::tol(dt) * 4, th::tol(dt) * 4, os.str());
          }
}

TEST_CASE("softmax is stable for extreme inputs", "[softmax]") {
  // large, tiny and infinite logits, in a short row (scalar path) and a long one (SIMD path)
  for (int64_t len : {3, 40}) {
    std::vector<double> v(size_t(len), -1000.0);
    v[0] = 1000, v[1] = 999, v[2] = -INFINITY;
    const Tensor x = th::make(v, {len});
    th::check_close(th::values(softmax(x, 0)), ref_softmax(x, 0, false), 1e-6, 1e-5, "softmax extreme");
    th::check_close(th::values(log_softmax(x, 0)), ref_softmax(x, 0, true), 1e-4, 1e-5, "log_softmax extreme");
    if (len > 3) CHECK(std::isfinite(log_softmax(x, 0).select(0, 3).item<double>()));  // e^-2000 underflows, its log does not
  }
  // columns (softmax over dim 0 of [3, 20]) hit the tile path
  const Tensor c = mul(th::random({3, 20}), 500.0);
  th::check_close(th::values(softmax(c, 0)), ref_softmax(c, 0, false), 1e-6, 1e-5, "tile extreme");
  th::check_close(th::values(log_softmax(c, 0)), ref_softmax(c, 0, true), 1e-3, 1e-5, "tile log extreme");
  // a NaN poisons its row only; a row of all -inf gives NaN (as in PyTorch)
  const Tensor n = th::make({1, NAN, 2, 1, 2, 3, -INFINITY, -INFINITY, -INFINITY}, {3, 3});
  const std::vector<double> y = th::values(softmax(n, 1));
  CHECK(std::isnan(y[0]));
  CHECK(std::abs(y[5] - ref_softmax(n, 1, false)[5]) < 1e-6);
  CHECK(std::isnan(y[8]));
  // the same in the SIMD paths: long rows (last dim) and tiles (dim 0), float and double
  for (DType dt : {DType::f32, DType::f64}) {
    Tensor r = th::random({10, 40}, dt);  // transposed: [40, 10], tile columns 0-7 in SIMD lanes
    r.select(0, 0).select(0, 17).fill_(NAN);
    r.select(0, 1).slice(0, 0, 20).fill_(-INFINITY);  // masked logits get exactly 0
    for (const Tensor& v : {r, r.t().contiguous()}) {
      const int d = v.is_same(r) ? 1 : 0;
      const Tensor sm = softmax(v, d), lsm = log_softmax(v, d);
      const std::vector<double> want = ref_softmax(v, d, false), lwant = ref_softmax(v, d, true);
      th::check_close(th::values(sm), want, 1e-6, 1e-5, "softmax nan/-inf");
      th::check_close(th::values(lsm), lwant, 1e-5, 1e-5, "log_softmax nan/-inf");
      const Tensor masked = d == 1 ? sm.select(0, 1).slice(0, 0, 20) : sm.select(1, 1).slice(0, 0, 20);
      CHECK(th::values(amax(masked)) == std::vector<double>{0.0});
      CHECK(std::isnan((d == 1 ? sm.select(0, 0) : sm.select(1, 0)).select(0, 3).item<double>()));
    }
  }
}

TEST_CASE("softmax of 0-dim and empty tensors", "[softmax]") {
  CHECK(softmax(scalar_tensor(3.0), 0).item<double>() == 1.0);
  CHECK(log_softmax(scalar_tensor(3.0), -1).item<double>() == 0.0);
  CHECK(softmax(zeros({0, 4}), 1).shape() == Shape{0, 4});
  CHECK(log_softmax(zeros({4, 0}), 1).shape() == Shape{4, 0});
}

TEST_CASE("softmax backward: fused kernel against the formula, and gradcheck", "[softmax][grad]") {
  for (const Shape& s : std::vector<Shape>{{3, 7}, {2, 3, 4}, {4, 40, 3}, {2, 300}, {5, 3, 260}})
    for (int d = 0; d < s.dim(); ++d)
      for (bool log : {false, true})
        for (DType dt : {DType::f32, DType::bf16}) {
          const Tensor x = th::random(s, dt, true).requires_grad_();
          const Tensor y = log ? log_softmax(x, d) : softmax(x, d);
          const Tensor g = th::random(s, dt, true);  // a strided gradient
          y.backward(g);
          std::ostringstream os;
          os << (log ? "log_softmax " : "softmax ") << dt << " " << s << " dim " << d;
          const double t = dt == DType::bf16 ? 3e-2 : 1e-5;
          th::check_close(th::values(x.grad()), ref_backward(g, y.detach(), d, log), t, t, os.str());
        }
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { return softmax(v[0], 1); }, {th::random({3, 5})});
  th::gradcheck_ok([](V v) { return softmax(v[0], 0); }, {th::random({4, 3}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return log_softmax(v[0], -1); }, {th::random({2, 3, 4}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return log_softmax(v[0], 1); }, {th::random({2, 3, 4})});
  th::gradcheck_ok([](V v) { return softmax(v[0], -2).sum({-1}); }, {th::random({2, 5, 3})});
  // a common loss shape: mean of picked log-probabilities (dout arrives as a stride-0 expand)
  th::gradcheck_ok([](V v) { return log_softmax(v[0], 1).select(1, 2).mean(); }, {th::random({4, 6})});
}

TEST_CASE("softmax kernel against its reference loop", "[softmax][kernel]") {
  for (int64_t inner : {1, 3, 300})
    for (bool log : {false, true}) {
      const Tensor x = th::random({2, 17, inner});
      std::vector<float> got(size_t(x.numel())), want(size_t(x.numel()));
      cpu::softmax_fwd_kernel<float>(x.data_ptr<float>(), got.data(), 2, 17, inner, log);
      cpu::softmax_ref<float>(x.data_ptr<float>(), want.data(), 2, 17, inner, log);
      th::check_close(std::vector<double>(got.begin(), got.end()), std::vector<double>(want.begin(), want.end()),
                      1e-6, 1e-5, "fwd inner " + std::to_string(inner));
      const Tensor g = th::random({2, 17, inner});
      std::vector<float> dg(size_t(x.numel())), dw(size_t(x.numel()));
      cpu::softmax_bwd_kernel<float>(g.data_ptr<float>(), got.data(), dg.data(), 2, 17, inner, log);
      cpu::softmax_bwd_ref<float>(g.data_ptr<float>(), got.data(), dw.data(), 2, 17, inner, log);
      th::check_close(std::vector<double>(dg.begin(), dg.end()), std::vector<double>(dw.begin(), dw.end()), 1e-5,
                      1e-5, "bwd inner " + std::to_string(inner));
    }
}

TEST_CASE("softmax errors name the op and the shape", "[softmax]") {
  const Tensor x = th::random({2, 3});
  th::check_throws([&] { softmax(x, 2); }, {"softmax", "dim 2", "[2, 3]"});
  th::check_throws([&] { log_softmax(x, -3); }, {"log_softmax", "dim -3", "[2, 3]"});
  th::check_throws([&] { softmax(ones({2}, {.dtype = DType::i64}), 0); }, {"softmax", "int64"});
}

TEST_CASE("softmax methods", "[softmax]") {
  const Tensor x = th::random({3, 4});
  th::check_close(x.softmax(1), softmax(x, 1), 0, 0);
  th::check_close(x.log_softmax(0), log_softmax(x, 0), 0, 0);
  th::check_close(x.softmax(-1).sum({1}), ones({3}), 1e-6);
}

}  // namespace test_softmax
