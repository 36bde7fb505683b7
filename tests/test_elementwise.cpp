// Elementwise ops: values against a plain reference loop (broadcast, non-contiguous, empty, every
// float dtype), dtype promotion, in-place variants, and a float64 gradcheck per differentiable op.
#include "helpers.hpp"
#include <bit>
#include <limits>
#include <random>

namespace test_elementwise {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
using th::random;

namespace {

const std::vector<Shape> kShapes = {{}, {1}, {7}, {3, 5}, {2, 3, 4}, {0, 3}, {2, 1, 33}};
const std::vector<DType> kFloats = {DType::f32, DType::f64, DType::f16, DType::bf16};

/// Reference for a binary op: out[i] = f(a[bcast(i)], b[bcast(i)]) by explicit index arithmetic.
Tensor ref_binary(const Tensor& a, const Tensor& b, double (*f)(double, double), DType out_dt) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape());
  std::vector<double> out(size_t(numel(shape)));
  for (int64_t n = 0; n < numel(shape); ++n) {
    auto idx = th::unravel(n, shape);
    auto pick = [&](const Tensor& t) {
      std::vector<int64_t> j(t.dim());
      for (int d = 0; d < t.dim(); ++d) {
        const int64_t i = idx[idx.size() - t.dim() + d];
        j[d] = t.shape()[d] == 1 ? 0 : i;
      }
      return th::at(t, j);
    };
    out[size_t(n)] = f(pick(a), pick(b));
  }
  return th::make(out, shape, DType::f64).to(out_dt);
}

Tensor ref_unary(const Tensor& x, double (*f)(double)) {
  auto v = th::values(x);
  for (double& e : v) e = f(e);
  return th::make(v, x.shape(), DType::f64);
}

}  // namespace

TEST_CASE("binary ops match the reference loop on broadcast and strided inputs", "[elementwise]") {
  struct Case { const char* name; Tensor (*op)(const Tensor&, const Tensor&); double (*ref)(double, double); };
  const Case cases[] = {
      {"add", [](const Tensor& a, const Tensor& b) { return a + b; }, [](double a, double b) { return a + b; }},
      {"sub", [](const Tensor& a, const Tensor& b) { return a - b; }, [](double a, double b) { return a - b; }},
      {"mul", [](const Tensor& a, const Tensor& b) { return a * b; }, [](double a, double b) { return a * b; }},
      {"div", [](const Tensor& a, const Tensor& b) { return a / b; }, [](double a, double b) { return a / b; }},
      {"maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); }, [](double a, double b) { return std::max(a, b); }},
      {"minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); }, [](double a, double b) { return std::min(a, b); }},
      {"pow", [](const Tensor& a, const Tensor& b) { return pow(abs(a) + 0.5, b); }, [](double a, double b) { return std::pow(std::abs(a) + 0.5, b); }},
  };
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{3, 5}, {3, 5}}, {{3, 5}, {5}}, {{3, 1}, {1, 5}}, {{}, {4, 2}}, {{2, 3, 4}, {3, 1}}, {{0, 3}, {3}}, {{40000}, {40000}}, {{300, 1}, {300}}};
  for (const Case& c : cases)
    for (DType dt : kFloats)
      for (auto [sa, sb] : pairs)
        for (bool nc : {false, true}) {
          Tensor a = random(sa, dt, nc), b = random(sb, dt, nc);
          Tensor got = c.op(a, b);
          CHECK(got.dtype() == dt);
          // f16/bf16 results are rounded once from the float computation
          th::check_close(got, ref_binary(a, b, c.ref, dt), th::tol(dt) * 10, th::tol(dt) * 4,
                          std::string(c.name) + " " + std::string(dtype_name(dt)) + " " + to_string(sa) + " " + to_string(sb));
        }
}

TEST_CASE("comparisons and where", "[elementwise]") {
  Tensor a = random({4, 6}, DType::f32, true), b = random({6});
  th::check_close(lt(a, b), ref_binary(a, b, [](double x, double y) { return double(x < y); }, DType::b8), 0, 0, "lt");
  th::check_close(ge(a, b), ref_binary(a, b, [](double x, double y) { return double(x >= y); }, DType::b8), 0, 0, "ge");
  th::check_close(a == a, ones({4, 6}, {.dtype = DType::b8}), 0, 0, "eq");
  CHECK((a != a).dtype() == DType::b8);
  CHECK(th::values(gt(th::make({1, 2, 3}, {3}), 2.0)) == std::vector<double>{0, 0, 1});
  Tensor w = where(gt(a, 0.0), a, b);
  for (int64_t n = 0; n < 24; ++n) {
    auto i = th::unravel(n, {4, 6});
    const double av = th::at(a, i), bv = th::at(b, {i[1]});
    CHECK(th::values(w)[size_t(n)] == (av > 0 ? av : bv));
  }
  th::check_throws([&] { where(a, a, b); }, {"where", "float32", "bool"});
}

TEST_CASE("unary ops match std:: on every float dtype", "[elementwise]") {
  struct Case { const char* name; Tensor (*op)(const Tensor&); double (*ref)(double); double lo, hi; };
  const Case cases[] = {
      {"neg", [](const Tensor& x) { return -x; }, [](double x) { return -x; }, -3, 3},
      {"abs", [](const Tensor& x) { return abs(x); }, [](double x) { return std::abs(x); }, -3, 3},
      {"exp", [](const Tensor& x) { return exp(x); }, [](double x) { return std::exp(x); }, -10, 10},
      {"log", [](const Tensor& x) { return log(x); }, [](double x) { return std::log(x); }, 0.01, 10},
      {"sqrt", [](const Tensor& x) { return sqrt(x); }, [](double x) { return std::sqrt(x); }, 0, 10},
      {"rsqrt", [](const Tensor& x) { return rsqrt(x); }, [](double x) { return 1 / std::sqrt(x); }, 0.01, 10},
      {"sin", [](const Tensor& x) { return sin(x); }, [](double x) { return std::sin(x); }, -5, 5},
      {"cos", [](const Tensor& x) { return cos(x); }, [](double x) { return std::cos(x); }, -5, 5},
      {"tanh", [](const Tensor& x) { return tanh(x); }, [](double x) { return std::tanh(x); }, -5, 5},
      {"sigmoid", [](const Tensor& x) { return sigmoid(x); }, [](double x) { return 1 / (1 + std::exp(-x)); }, -8, 8},
      {"relu", [](const Tensor& x) { return relu(x); }, [](double x) { return std::max(x, 0.0); }, -3, 3},
      {"gelu", [](const Tensor& x) { return gelu(x); }, [](double x) { return 0.5 * x * (1 + std::erf(x / std::sqrt(2.0))); }, -4, 4},
      {"silu", [](const Tensor& x) { return silu(x); }, [](double x) { return x / (1 + std::exp(-x)); }, -8, 8},
      {"softplus", [](const Tensor& x) { return softplus(x); }, [](double x) { return x > 20 ? x : std::log1p(std::exp(x)); }, -30, 30},
      {"clamp", [](const Tensor& x) { return clamp(x, -0.5, 1.0); }, [](double x) { return std::clamp(x, -0.5, 1.0); }, -3, 3},
      {"leaky_relu", [](const Tensor& x) { return leaky_relu(x, 0.1); }, [](double x) { return x > 0 ? x : 0.1 * x; }, -3, 3},
  };
  for (const Case& c : cases)
    for (DType dt : kFloats)
      for (Shape s : std::vector<Shape>{{}, {37}, {3, 0}, {5, 7, 3}, {70000}})
        for (bool nc : {false, true}) {
          Tensor x = random(s, dt, nc, c.lo, c.hi);
          Tensor y = c.op(x);
          CHECK(y.dtype() == dt);
          th::check_close(y, ref_unary(x, c.ref).to(dt), th::tol(dt) * 10, th::tol(dt) * 4,
                          std::string(c.name) + " " + std::string(dtype_name(dt)) + " " + to_string(s));
        }
}

TEST_CASE("neg flips the sign bit: -(+0) is -0 on the vector path and the tail", "[elementwise]") {
  for (DType dt : {DType::f32, DType::f64}) {
    const std::vector<double> v = th::values(neg(zeros({37}, {.dtype = dt})));  // 37: vectors and a tail
    for (double x : v) CHECK(std::signbit(x));
    for (double x : th::values(neg(neg(zeros({37}, {.dtype = dt}))))) CHECK(!std::signbit(x));
  }
}

TEST_CASE("vectorized exp is accurate over the whole float range", "[elementwise]") {
  Tensor x = linspace(-87, 88, 100001);
  auto got = th::values(exp(x)), in = th::values(x);
  double worst = 0;
  for (size_t i = 0; i < in.size(); ++i) {
    const double want = double(std::exp(float(in[i])));
    worst = std::max(worst, std::abs(got[i] - want) / want);
  }
  CHECK(worst < 5e-7);  // about 4 ulp of float
  CHECK(th::values(exp(th::make({-200, 200}, {2}))) == std::vector<double>{0, INFINITY});
}

TEST_CASE("NaN propagates through maximum, minimum, relu and clamp", "[elementwise]") {
  // 20 elements: the first 16 take the SIMD path, the rest the scalar tail
  std::vector<double> av(20, 5.0), bv(20, 1.0);
  for (size_t i : {0u, 17u}) av[i] = NAN;
  for (size_t i : {1u, 18u}) bv[i] = NAN;
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    Tensor a = th::make(av, {20}, dt), b = th::make(bv, {20}, dt);
    for (Tensor r : {maximum(a, b), minimum(a, b), maximum(b, a)})
      for (size_t i : {0u, 1u, 17u, 18u}) CHECK(std::isnan(th::values(r)[i]));
    for (Tensor r : {relu(a), clamp(a, 0, 1.5), leaky_relu(a)})
      for (size_t i : {0u, 17u}) CHECK(std::isnan(th::values(r)[i]));
    CHECK(th::values(maximum(a, b))[2] == 5);
  }
}

TEST_CASE("dtype promotion follows PyTorch", "[elementwise]") {
  Tensor i = arange(4), f = ones({4}), h = ones({4}, {.dtype = DType::f16}), b16 = ones({4}, {.dtype = DType::bf16});
  CHECK((i + i).dtype() == DType::i64);
  CHECK((i + f).dtype() == DType::f32);
  CHECK((i + 1).dtype() == DType::i64);
  CHECK((i + 1.5).dtype() == DType::f32);
  CHECK((h + 2.0).dtype() == DType::f16);
  CHECK((h + b16).dtype() == DType::f32);
  CHECK((i / 2).dtype() == DType::f32);
  CHECK(th::values(i / 2) == std::vector<double>{0, 0.5, 1, 1.5});
  CHECK(th::values(i * 3 - 1) == std::vector<double>{-1, 2, 5, 8});
  CHECK(exp(i).dtype() == DType::f32);
  CHECK(relu(i - 2).dtype() == DType::i64);
  CHECK(th::values(abs(i - 2)) == std::vector<double>{2, 1, 0, 1});
  // 0-dim tensors decide the dtype only from a higher category (torch.result_type)
  CHECK((h + scalar_tensor(1.0)).dtype() == DType::f16);
  CHECK((i + scalar_tensor(1.0, {.dtype = DType::f64})).dtype() == DType::f64);
  CHECK((ones({2}, {.dtype = DType::u8}) + scalar_tensor(1, {.dtype = DType::i64})).dtype() == DType::u8);
  CHECK((scalar_tensor(1.0) + scalar_tensor(1.0, {.dtype = DType::f64})).dtype() == DType::f64);
  CHECK(where(gt(h, 0.0), h, scalar_tensor(0.0)).dtype() == DType::f16);
  // integer edge cases are errors, not silent truncation or undefined behaviour
  CHECK(clamp(i, 0.5, 2.5).dtype() == DType::f32);
  CHECK(th::values(clamp(i, 0.5, 2.5)) == std::vector<double>{0.5, 1, 2, 2.5});
  CHECK(clamp(i, 1, 2).dtype() == DType::i64);
  th::check_throws([&] { Tensor k = arange(4); k.div_(scalar_tensor(2)); }, {"div_", "int64"});
  th::check_throws([&] { pow(i, -1); }, {"pow", "non-negative exponent"});
  th::check_throws([&] { ones({2}, {.dtype = DType::i32}) + (int64_t(1) << 40); }, {"int32", "1099511627776"});
  th::check_throws([&] { ones({2}, {.dtype = DType::u8}) + 300; }, {"uint8", "300"});
  CHECK(th::values(pow(i, 2)) == std::vector<double>{0, 1, 4, 9});
  CHECK(th::values(pow(th::make({1, 2}, {2}, DType::i64), scalar_tensor(-1, {.dtype = DType::i64}))) ==
        std::vector<double>{1, 0});  // a tensor exponent computes, as in PyTorch 1.13
  // integer scalars are exact, never rounded through double
  const int64_t big = std::numeric_limits<int64_t>::max(), odd = (int64_t(1) << 53) + 1;
  CHECK((zeros({1}, {.dtype = DType::i64}) + big).item<int64_t>() == big);
  CHECK((zeros({1}, {.dtype = DType::i64}) + odd).item<int64_t>() == odd);
  CHECK(!eq(full({1}, 0, {.dtype = DType::i64}) + (int64_t(1) << 53), odd).item<bool>());
  th::check_throws([&] { zeros({1}, {.dtype = DType::i64}) + (uint64_t(1) << 63); }, {"int64", "9223372036854775808"});
  // integer clamp keeps its dtype only for bounds it can hold
  CHECK(clamp(th::make({-3, 4}, {2}, DType::i32), -1e10, 1e10).dtype() == DType::f32);
  CHECK(th::values(clamp(th::make({-3, 4}, {2}, DType::i32), -1e10, 1e10)) == std::vector<double>{-3, 4});
  CHECK(clamp(i, -INFINITY, 2).dtype() == DType::f32);
}

TEST_CASE("in-place ops write through views and refuse tensors that require grad", "[elementwise]") {
  Tensor x = zeros({3, 4});
  Tensor col = x.select(1, 2);
  col.add_(th::make({1, 2, 3}, {3}));
  col.mul_(2.0);
  CHECK(th::values(x.select(1, 2)) == std::vector<double>{2, 4, 6});
  CHECK(th::values(x.sum()) == std::vector<double>{12});
  x.add_(ones({4}), 0.5);  // broadcast, alpha
  CHECK(th::at(x, {0, 0}) == 0.5);
  x.fill_(7);
  CHECK(th::values(x.max()) == std::vector<double>{7});
  x.zero_();
  CHECK(th::values(x.abs().sum()) == std::vector<double>{0});
  Tensor t = zeros({2, 2});
  t.copy_(th::make({1, 2}, {2}, DType::f64));  // broadcast + cast
  CHECK(th::values(t) == std::vector<double>{1, 2, 1, 2});

  Tensor sq = arange(9).to(DType::f32).view({3, 3});
  sq.add_(sq.t());  // reads all of the transpose before writing
  CHECK(th::values(sq) == std::vector<double>{0, 4, 8, 4, 8, 12, 8, 12, 16});
  Tensor sq2 = arange(4).view({2, 2});
  sq2.copy_(sq2.t());
  CHECK(th::values(sq2) == std::vector<double>{0, 2, 1, 3});
  Tensor ex = zeros({3}).expand({2, 3});
  th::check_throws([&] { ex.add_(ones({2, 3})); }, {"add_", "[2, 3]", "stride 0"});
  th::check_throws([&] { ex.fill_(1); }, {"fill_", "stride 0"});

  Tensor w = ones({3}).requires_grad_();
  th::check_throws([&] { w.add_(ones({3})); }, {"add_", "requires grad"});
  {
    NoGrad guard;
    w.add_(ones({3}));
  }
  CHECK(th::values(w) == std::vector<double>{2, 2, 2});
  th::check_throws([&] { x.add_(ones({5})); }, {"add_", "[3, 4]", "[5]"});
}

TEST_CASE("bad binary inputs name the op and both shapes", "[elementwise]") {
  th::check_throws([] { ones({2, 3}) + ones({4}); }, {"add", "[2, 3]", "[4]"});
  th::check_throws([] { ones({2, 3}) * ones({3, 2}); }, {"mul", "[2, 3]", "[3, 2]"});
  th::check_throws([] { neg(ones({2}, {.dtype = DType::b8})); }, {"neg", "bool"});
}

TEST_CASE("gradcheck of every differentiable elementwise op", "[elementwise][grad]") {
  using V = std::vector<Tensor>;
  auto pos = [](Shape s) { return rand(s, {.dtype = DType::f64}) + 0.5; };
  Tensor a = random({3, 4}, DType::f64), b = random({4}, DType::f64), c = random({3, 1}, DType::f64);
  th::gradcheck_ok([](const V& v) { return v[0] + v[1]; }, {a, b});
  th::gradcheck_ok([](const V& v) { return v[0] - v[1]; }, {a, c});
  th::gradcheck_ok([](const V& v) { return v[0] * v[1]; }, {a, b});
  th::gradcheck_ok([](const V& v) { return v[0] / v[1]; }, {a, pos({4})});
  th::gradcheck_ok([](const V& v) { return pow(v[0], v[1]); }, {pos({3, 4}), b});
  th::gradcheck_ok([](const V& v) { return pow(v[0], 3.0) + 2.0 * v[0] - 1.0 / v[0]; }, {pos({5})});
  th::gradcheck_ok([](const V& v) { return maximum(v[0], v[1]); }, {a, b});
  th::gradcheck_ok([](const V& v) { return minimum(v[0], v[1]); }, {a, c});
  th::gradcheck_ok([](const V& v) { return where(gt(v[0], 0.0), v[0], v[1]); }, {a, b});
  for (auto f : std::vector<Tensor (*)(const Tensor&)>{neg, abs, exp, sin, cos, tanh, sigmoid, relu, gelu, silu, softplus})
    th::gradcheck_ok([f](const V& v) { return f(v[0]); }, {random({2, 5}, DType::f64, true)});
  for (auto f : std::vector<Tensor (*)(const Tensor&)>{log, sqrt, rsqrt, log1p})
    th::gradcheck_ok([f](const V& v) { return f(v[0]); }, {pos({2, 5})});
  th::gradcheck_ok([](const V& v) { return clamp(v[0], -0.5, 0.5); }, {random({2, 5}, DType::f64)});
  th::gradcheck_ok([](const V& v) { return leaky_relu(v[0], 0.2); }, {random({2, 5}, DType::f64)});
}

namespace {

/// Random small integers (ties are common) in a tensor of dtype dt, in th::random's layout.
Tensor ties(const Shape& shape, DType dt, bool nc) {
  Tensor x = random(shape, dt, nc);
  copy_(x, dt == DType::b8 ? gt(random(shape), 0.0) : random(shape, DType::i64, false, -3, 3));
  return x;
}

const char* const kCmpNames[] = {"eq", "ne", "lt", "le", "gt", "ge"};
Tensor cmp_fn(int k, const Tensor& a, const Tensor& b) {
  switch (k) { case 0: return eq(a, b); case 1: return ne(a, b); case 2: return lt(a, b); case 3: return le(a, b); case 4: return gt(a, b); default: return ge(a, b); }
}
Tensor cmp_op(int k, const Tensor& a, const Tensor& b) {
  switch (k) { case 0: return a == b; case 1: return a != b; case 2: return a < b; case 3: return a <= b; case 4: return a > b; default: return a >= b; }
}
template <class S>
Tensor cmp_scalar(int k, const Tensor& a, S s, bool as_operator) {
  if (as_operator) {
    switch (k) { case 0: return a == s; case 1: return a != s; case 2: return a < s; case 3: return a <= s; case 4: return a > s; default: return a >= s; }
  }
  switch (k) { case 0: return eq(a, s); case 1: return ne(a, s); case 2: return lt(a, s); case 3: return le(a, s); case 4: return gt(a, s); default: return ge(a, s); }
}
double cmp_ref(int k, double x, double y) {
  switch (k) { case 0: return x == y; case 1: return x != y; case 2: return x < y; case 3: return x <= y; case 4: return x > y; default: return x >= y; }
}

}  // namespace

TEST_CASE("comparisons: every op, operator and scalar form on broadcast shapes and dtypes", "[elementwise]") {
  const std::vector<std::pair<Shape, Shape>> pairs = {
      {{3, 5}, {3, 5}}, {{3, 5}, {5}}, {{3, 1}, {1, 5}}, {{}, {4, 2}}, {{2, 3, 4}, {3, 1}}, {{0, 3}, {3}}, {{2, 0}, {1}}, {{33}, {}}};
  const std::vector<std::pair<DType, DType>> dts = {{DType::f32, DType::f32}, {DType::f16, DType::f16}, {DType::bf16, DType::bf16},
                                                    {DType::i64, DType::i64}, {DType::b8, DType::i64}, {DType::i64, DType::f16}};
  for (int k = 0; k < 6; ++k)
    for (auto [da, db] : dts)
      for (auto [sa, sb] : pairs)
        for (bool nc : {false, true}) {
          const Tensor a = ties(sa, da, nc), b = ties(sb, db, nc);
          const std::string what = std::string(kCmpNames[k]) + " " + std::string(dtype_name(da)) + to_string(sa) + " " +
                                   std::string(dtype_name(db)) + to_string(sb) + (nc ? " strided" : "");
          const Shape shape = broadcast_shapes(sa, sb);
          std::vector<double> ref(size_t(numel(shape)));
          for (int64_t n = 0; n < numel(shape); ++n) {  // the reference: compare the broadcast elements
            auto i = th::unravel(n, shape);
            auto at = [&](const Tensor& t) {
              std::vector<int64_t> j(i.end() - t.dim(), i.end());
              for (int d = 0; d < t.dim(); ++d) if (t.shape()[d] == 1) j[d] = 0;
              return th::at(t, j);
            };
            ref[size_t(n)] = cmp_ref(k, at(a), at(b));
          }
          for (const Tensor& got : {cmp_fn(k, a, b), cmp_op(k, a, b)}) {
            CHECK(got.dtype() == DType::b8);
            th::check_close(got, th::make(ref, shape, DType::b8), 0, 0, what);
          }
          // scalar forms: an integer scalar and a floating one (which promotes integers to float)
          for (bool as_op : {false, true}) {
            auto scalar_ref = [&](double s) {
              auto v = th::values(a);
              for (double& e : v) e = cmp_ref(k, e, s);
              return th::make(v, a.shape(), DType::b8);
            };
            th::check_close(cmp_scalar(k, a, int64_t(1), as_op), scalar_ref(1), 0, 0, what + " int scalar");
            th::check_close(cmp_scalar(k, a, 0.5, as_op), scalar_ref(0.5), 0, 0, what + " float scalar");
          }
        }
  // values that differ only in a low bit still compare unequal after promotion
  CHECK(th::values(eq(th::make({16777217}, {1}, DType::i64), th::make({16777216}, {1}, DType::i64))) == std::vector<double>{0});
  CHECK(th::values(lt(th::make({0.1}, {1}, DType::f64), th::make({0.1}, {1}, DType::f32))) == std::vector<double>{1});
  th::check_throws([] { eq(ones({2, 3}), ones({4})); }, {"eq", "[2, 3]", "[4]"});
  th::check_throws([] { ones({2, 3}) < ones({3, 2}); }, {"lt", "[2, 3]", "[3, 2]"});
  th::check_throws([] { ge(zeros({0, 2}), ones({3})); }, {"ge", "[0, 2]", "[3]"});
}

TEST_CASE("bad inputs of more elementwise ops name the op and both shapes", "[elementwise]") {
  const Tensor a = ones({2, 3}), b = ones({4});
  th::check_throws([&] { a - b; }, {"sub", "[2, 3]", "[4]"});
  th::check_throws([&] { a / b; }, {"div", "[2, 3]", "[4]"});
  th::check_throws([&] { pow(a, b); }, {"pow", "[2, 3]", "[4]"});
  th::check_throws([&] { maximum(a, b); }, {"maximum", "[2, 3]", "[4]"});
  th::check_throws([&] { minimum(b, a); }, {"minimum", "[4]", "[2, 3]"});
  const Tensor c = ones({4}, {.dtype = DType::b8});
  th::check_throws([&] { where(c, a, ones({3})); }, {"where", "[4]", "[2, 3]"});
  th::check_throws([&] { where(gt(a, 0.0), a, b); }, {"where", "[2, 3]", "[4]"});
  th::check_throws([&] { where(arange(3), a, a); }, {"where", "int64", "bool"});
  Tensor s = zeros({3, 1});
  th::check_throws([&] { s.mul_(ones({3, 4})); }, {"mul_", "[3, 1]", "[3, 4]"});  // broadcasts, but not to self
  th::check_throws([&] { s.sub_(ones({2, 1})); }, {"sub_", "[3, 1]", "[2, 1]"});
  th::check_throws([&] { s.div_(ones({1, 3, 1})); }, {"div_", "[3, 1]", "[1, 3, 1]"});
  th::check_throws([&] { s.copy_(ones({2})); }, {"copy_", "[2]", "[3, 1]"});
  th::check_throws([&] { s.copy_(ones({3, 2})); }, {"copy_", "[3, 2]", "[3, 1]"});
  th::check_throws([] { arange(3).requires_grad_(); }, {"requires_grad_", "int64", "floating"});
  th::check_throws([] { ones({2}, {.dtype = DType::b8}).requires_grad_(); }, {"requires_grad_", "bool"});
  CHECK_FALSE(arange(3).requires_grad_(false).requires_grad());  // switching off is always allowed
}

TEST_CASE("in-place ops on f16, bf16, int64, strided targets and broadcast sources", "[elementwise]") {
  struct Target { const char* name; Tensor (*view)(const Tensor&); };
  const Target targets[] = {{"whole", [](const Tensor& t) { return t; }},
                            {"transposed", [](const Tensor& t) { return t.t(); }},
                            {"strided slice", [](const Tensor& t) { return t.slice(1, 1, 6, 2); }}};
  enum Op { Add, AddAlpha, Sub, Mul, Div, Copy, AddScalar, MulScalar };
  auto apply = [](Op op, Tensor& t, const Tensor& src) {
    switch (op) {
      case Add: t.add_(src); break;
      case AddAlpha: t.add_(src, -2.0); break;
      case Sub: t.sub_(src); break;
      case Mul: t.mul_(src); break;
      case Div: t.div_(src); break;
      case Copy: t.copy_(src); break;
      case AddScalar: t.add_(3.0); break;
      case MulScalar: t.mul_(-2.0); break;
    }
  };
  auto ref = [](Op op, double x, double s) {
    switch (op) {
      case Add: return x + s;
      case AddAlpha: return x - 2 * s;
      case Sub: return x - s;
      case Mul: return x * s;
      case Div: return x / s;
      case Copy: return s;
      case AddScalar: return x + 3;
      default: return x * -2;
    }
  };
  for (DType dt : {DType::f16, DType::bf16, DType::i64, DType::f32})
    for (const Target& tg : targets)
      for (Op op : {Add, AddAlpha, Sub, Mul, Div, Copy, AddScalar, MulScalar})
        for (int src_kind = 0; src_kind < 4; ++src_kind) {
          if (op == Div && !is_floating(dt)) continue;  // refused, tested above
          Tensor base = random({4, 6}, dt, false, -5, 5);
          const auto before = th::values(base);
          Tensor t = tg.view(base);
          const Tensor pos = tg.view(arange(24, {.dtype = DType::f64}).view({4, 6}));  // base position of each element
          const int64_t r = t.shape()[0], c = t.shape()[1];
          const Shape ss = src_kind == 0 ? Shape{r, c} : src_kind == 1 ? Shape{c} : src_kind == 2 ? Shape{r, 1} : Shape{};
          const Tensor src = op == Div ? random(ss, dt, src_kind == 0, 0.5, 3) : random(ss, dt, src_kind == 0, -5, 5);
          std::vector<double> want = before;
          for (int64_t n = 0; n < r * c; ++n) {
            auto i = th::unravel(n, {r, c});
            const double s = src_kind == 0 ? th::at(src, i) : src_kind == 1 ? th::at(src, {i[1]}) : src_kind == 2 ? th::at(src, {i[0], 0}) : th::at(src, {});
            want[size_t(th::at(pos, i))] = ref(op, th::at(t, i), s);
          }
          apply(op, t, src);
          const std::string what = std::string(dtype_name(dt)) + " " + tg.name + " op " + std::to_string(int(op)) + " source " + to_string(ss);
          // f16/bf16: computed in float, rounded once; elements outside the view are untouched
          th::check_close(base, th::make(want, {4, 6}, DType::f64).to(dt), th::tol(dt) * 4, th::tol(dt) * 2, what);
        }
  // fill_ and zero_ through strided targets leave the rest alone
  for (DType dt : {DType::f16, DType::bf16, DType::i64})
    for (const Target& tg : targets) {
      Tensor base = random({4, 6}, dt, false, -5, 5);
      const auto before = th::values(base);
      Tensor t = tg.view(base);
      const auto pos = th::values(tg.view(arange(24, {.dtype = DType::f64}).view({4, 6})));
      t.fill_(2.7);
      std::vector<double> want = before;
      const double filled = dt == DType::i64 ? 2 : double(float(dt == DType::f16 ? float(f16(2.7f)) : float(bf16(2.7f))));
      for (double p : pos) want[size_t(p)] = filled;
      CHECK(th::values(base) == want);
      t.zero_();
      for (double p : pos) want[size_t(p)] = 0;
      CHECK(th::values(base) == want);
    }
}

TEST_CASE("copy_ across dtypes rounds like cast_value, into strided targets", "[elementwise]") {
  const Tensor f = random({5, 8}, DType::f32, true, -1000, 1000);
  Tensor bbase = zeros({8, 10}, {.dtype = DType::bf16});
  Tensor b = bbase.slice(1, 0, 10, 2).t();  // [5, 8], strided and transposed
  b.copy_(f);
  for (int64_t n = 0; n < 40; ++n) {
    auto i = th::unravel(n, {5, 8});
    const bf16 want = cast_value<bf16>(float(th::at(f, i)));
    CHECK(th::at(b, i) == double(float(want)));
  }
  CHECK(th::values(bbase.slice(1, 1, 10, 2)) == std::vector<double>(40, 0.0));  // odd columns untouched
  // int64 -> f32 rounds to nearest float (2^24 + 1 is not a float), bool -> f32 gives 0/1
  Tensor fi = zeros({3});
  fi.copy_(th::make({16777217, -3, 1e15 + 1}, {3}, DType::i64));
  CHECK(th::values(fi) == std::vector<double>{double(float(16777217)), -3, double(float(int64_t(1e15) + 1))});
  Tensor fb = full({2, 3}, 5.0);
  fb.t().copy_(th::make({1, 0, 1}, {3, 1}, DType::b8));  // broadcast over the transposed target
  CHECK(th::values(fb) == std::vector<double>{1, 0, 1, 1, 0, 1});
  Tensor h = zeros({3}, {.dtype = DType::f16});
  h.copy_(th::make({65504, 70000, 1e-8}, {3}, DType::f64));  // through float: max, overflow to inf, underflow to 0
  CHECK(th::values(h) == std::vector<double>{65504, INFINITY, 0});
}

TEST_CASE("contiguous f32 <-> bf16 casts (the vector path) give the scalar conversion's exact bits", "[elementwise]") {
  std::mt19937 rng(7);
  auto from_bits = [](uint32_t u) { return std::bit_cast<float>(u); };
  std::vector<float> v = {0.f, -0.f, INFINITY, -INFINITY, std::numeric_limits<float>::max(),
                          -std::numeric_limits<float>::max(), std::numeric_limits<float>::denorm_min(),
                          from_bits(0x7f800001u), from_bits(0xffc00001u), from_bits(0x7fbfffffu),  // NaNs
                          from_bits(0x3f808000u), from_bits(0x3f818000u), from_bits(0x3f807fffu),  // ties, below
                          from_bits(0x7f7f8000u), from_bits(0x007f8000u)};  // tie to inf, subnormal tie
  while (v.size() < 1000) {
    const uint32_t u = uint32_t(rng());
    v.push_back(from_bits(v.size() % 3 ? u : (u & 0xffff0000u) | 0x8000u));  // any pattern; exact ties
  }
  v.resize(1000 + 7);  // a tail after the 16-lane blocks
  for (int64_t off : {0, 3}) {  // 3: a start that is not 64-byte aligned
    const Tensor f = from_vector(v, {int64_t(v.size())}).slice(0, off, int64_t(v.size()));
    const Tensor b = f.to(DType::bf16);
    const bf16* bp = b.data_ptr<bf16>();
    int bad = 0;
    for (int64_t i = 0; i < b.numel(); ++i) bad += bp[i].bits != strata::detail::float_to_bf16_bits(v[size_t(off + i)]);
    CHECK(bad == 0);
  }
  std::vector<float> all(65536 + 5);  // every bf16 pattern back to float: exact, NaN payloads too
  Tensor h = Tensor::empty({int64_t(all.size())}, DType::bf16);
  for (size_t i = 0; i < all.size(); ++i) h.data_ptr<bf16>()[i] = bf16::from_bits(uint16_t(i));
  const Tensor g = h.to(DType::f32);
  int bad = 0;
  for (size_t i = 0; i < all.size(); ++i) bad += std::bit_cast<uint32_t>(g.data_ptr<float>()[i]) != (uint32_t(i & 0xffff) << 16);
  CHECK(bad == 0);
}

TEST_CASE("elementwise outputs keep a dense input's layout; anything else is contiguous", "[elementwise][layout]") {
  const auto cl = MemoryFormat::channels_last;
  auto add_ref = [](double a, double b) { return a + b; };
  auto mul_ref = [](double a, double b) { return a * b; };
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    const Tensor x = random({2, 5, 3, 17}, dt).contiguous(cl), y = random({2, 5, 3, 17}, dt);
    const Tensor bias = random({5, 1, 1}, dt), row = random({17}, dt);
    // channels-last first input: the result is channels-last, whatever the other input is
    for (const Tensor& out : {add(x, y), add(x, bias), mul(x, row), add(x, x), sub(x, 1.0), relu(x), exp(x),
                              where(gt(x, 0.0), x, y), x.to(DType::f64), dropout(x, 0.5, true)})
      CHECK(out.is_contiguous(cl));
    th::check_close(add(x, y), ref_binary(x, y, add_ref, dt), th::tol(dt), th::tol(dt), "cl + contiguous");
    th::check_close(add(x, bias), ref_binary(x, bias, add_ref, dt), th::tol(dt), th::tol(dt), "cl + bias");
    th::check_close(mul(x, row), ref_binary(x, row, mul_ref, dt), th::tol(dt), th::tol(dt), "cl * row");
    th::check_close(add(y, x), ref_binary(y, x, add_ref, dt), th::tol(dt), th::tol(dt), "contiguous + cl");
    th::check_close(add(bias, x), ref_binary(bias, x, add_ref, dt), th::tol(dt), th::tol(dt), "bias + cl");
    th::check_close(relu(x), ref_unary(x, [](double v) { return v > 0 ? v : 0.0; }), th::tol(dt), th::tol(dt), "relu cl");
    // the first full-shape input decides: contiguous x first gives contiguous, a broadcast first defers
    CHECK(add(y, x).is_contiguous());
    CHECK(add(bias, x).is_contiguous(cl));
    CHECK(add(bias, y).is_contiguous());
  }
  // a transposed matrix is dense too: its transpose layout is kept (PyTorch does the same)
  const Tensor m = random({6, 9}).t();
  const Tensor e = exp(m);
  CHECK(e.strides() == m.strides());
  th::check_close(e, ref_unary(m, [](double v) { return std::exp(v); }), 1e-5, 1e-5, "exp of a transpose");
  // not dense (a slice, an expanded view): contiguous results, unchanged from before
  const Tensor s = random({4, 10}).slice(1, 0, 10, 2);
  CHECK(neg(s).is_contiguous());
  CHECK(add(random({4, 1}).expand({4, 6}), 1.0).is_contiguous());
  CHECK(add(random({3, 4}, DType::f32, true), 1.0).is_contiguous());  // th::random's strided views
  // views of channels-last results still work (reshape copies when it must)
  const Tensor r = relu(random({2, 4, 3, 3}).contiguous(cl));
  CHECK(r.reshape({2, -1}).shape() == Shape{2, 36});
  th::check_close(r.reshape({2, -1}), r.contiguous().view({2, 36}), 0, 0, "flatten of channels-last");
  CHECK(r.flatten(1).shape() == Shape{2, 36});
  // in-place ops write through the layout they find
  Tensor w = random({2, 4, 3, 3}).contiguous(cl);
  const Tensor w0 = w.clone();
  w.add_(random({4, 1, 1}).fill_(1.0));
  CHECK(w.is_contiguous(cl));
  th::check_close(w, add(w0, 1.0), 1e-6, 1e-6, "add_ into channels-last");
}

TEST_CASE("relu backward from the output at full speed keeps the layout; gradcheck", "[elementwise][layout][grad]") {
  const auto cl = MemoryFormat::channels_last;
  for (DType dt : {DType::f32, DType::f64}) {
    // 37 elements per row: vector body and scalar tail; zeros and NaN mixed in
    Tensor x = random({2, 3, 5, 37}, dt).contiguous(cl);
    {
      NoGrad ng;
      x.narrow(3, 0, 3).fill_(0.0);
      x.narrow(3, 3, 1).fill_(NAN);
    }
    x.requires_grad_();
    const Tensor y = relu(x);
    CHECK(y.is_contiguous(cl));
    const Tensor g = random(y.shape(), dt).contiguous(cl);
    y.backward(g);
    const Tensor dx = x.grad();
    std::vector<double> want = th::values(g), xv = th::values(x.detach());
    for (size_t i = 0; i < want.size(); ++i) want[i] = xv[i] > 0 ? want[i] : 0.0;  // NaN x: no gradient
    th::check_close(th::values(dx), want, 0, 0, "relu backward");
    CHECK(unary_bwd<ops::ReluBwd>("relu_backward", g, y.detach()).is_contiguous(cl));
  }
  th::gradcheck_ok([](const std::vector<Tensor>& v) { return relu(v[0]); },
                   {random({2, 3, 4, 5}, DType::f64).contiguous(cl)});
  th::gradcheck_ok([](const std::vector<Tensor>& v) { return add(relu(v[0]), v[1]); },
                   {random({2, 3, 4, 5}, DType::f64).contiguous(cl), random({3, 1, 1}, DType::f64)});
}

}  // namespace test_elementwise
