// Reductions: values against a plain reference loop (every subset of dims, negative dims, keepdim,
// non-contiguous inputs, empty tensors, several dtypes, shapes that reach each kernel path and the
// multi-threaded split), gradchecks for every differentiable reduction, and error messages.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "helpers.hpp"

namespace test_reduce {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

using Fold = std::function<double(const std::vector<double>&)>;

/// Reference: groups x's elements by output position (reduced dims set to 0) and folds each group.
/// Returns the outputs in row-major order of the keepdim shape.
std::vector<double> ref_reduce(const Tensor& x, const std::vector<int64_t>& dims, const Fold& fold) {
  const int nd = x.dim();
  std::vector<bool> red(size_t(nd), dims.empty());
  for (int64_t d : dims) red[size_t(d < 0 ? d + nd : d)] = true;
  Shape ks = x.shape();
  for (int d = 0; d < nd; ++d)
    if (red[size_t(d)]) ks[size_t(d)] = 1;
  std::vector<std::vector<double>> groups(size_t(numel(ks)));
  for (int64_t n = 0; n < x.numel(); ++n) {
    std::vector<int64_t> idx = th::unravel(n, x.shape());
    const double v = th::at(x, idx);
    int64_t o = 0;
    for (int d = 0; d < nd; ++d) o = o * ks[size_t(d)] + (red[size_t(d)] ? 0 : idx[size_t(d)]);
    groups[size_t(o)].push_back(v);
  }
  std::vector<double> out;
  for (const auto& g : groups) out.push_back(fold(g));
  return out;
}

Shape out_shape(const Shape& s, const std::vector<int64_t>& dims, bool keepdim) {
  std::vector<bool> red(s.size(), dims.empty());
  for (int64_t d : dims) red[size_t(d < 0 ? d + int64_t(s.size()) : d)] = true;
  Shape o;
  for (size_t d = 0; d < s.size(); ++d) {
    if (!red[d]) o.push_back(s[d]);
    else if (keepdim) o.push_back(1);
  }
  return o;
}

const Fold f_sum = [](const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0); };
const Fold f_mean = [](const std::vector<double>& v) { return f_sum(v) / double(v.size()); };
const Fold f_max = [](const std::vector<double>& v) {
  double m = -INFINITY;
  for (double a : v) m = std::isnan(a) || a > m ? a : m;
  return m;
};
const Fold f_min = [](const std::vector<double>& v) {
  double m = INFINITY;
  for (double a : v) m = std::isnan(a) || a < m ? a : m;
  return m;
};
Fold f_var(bool unbiased) {
  return [unbiased](const std::vector<double>& v) {
    if (v.empty()) return double(NAN);
    const double m = f_mean(v);
    double s = 0;
    for (double a : v) s += (a - m) * (a - m);
    return s / (double(v.size()) - (unbiased ? 1 : 0));
  };
}
const Fold f_lse = [](const std::vector<double>& v) {
  const double m = f_max(v);
  if (std::isinf(m)) return m;
  double s = 0;
  for (double a : v) s += std::exp(a - m);
  return m + std::log(s);
};

/// Every subset of dims of a shape (as non-negative dims), plus a couple written negatively.
std::vector<std::vector<int64_t>> dim_sets(int nd) {
  std::vector<std::vector<int64_t>> sets;
  for (int m = 1; m < (1 << nd); ++m) {
    std::vector<int64_t> d;
    for (int i = 0; i < nd; ++i)
      if (m >> i & 1) d.push_back(i);
    sets.push_back(d);
  }
  if (nd >= 1) sets.push_back({-1});
  if (nd >= 2) sets.push_back({0, -1});
  sets.push_back({});  // all
  return sets;
}

const std::vector<Shape> kShapes = {{}, {7}, {3, 4}, {2, 3, 5}, {4, 1, 6}, {2, 3, 2, 4}, {0}, {3, 0}, {2, 0, 3}};

/// Checks op(x, dims, keepdim) against the reference on every shape, dim set, keepdim, layout.
template <class Op>
void check_op(const char* what, Op op, const Fold& fold, DType dt, bool nonempty_only = false) {
  for (const Shape& s : kShapes)
    for (const auto& dims : dim_sets(s.dim()))
      for (bool keep : {false, true})
        for (bool nc : {false, true}) {
          if (nonempty_only) {  // max/min of an empty dim throw (tested elsewhere)
            bool empty_red = false;
            for (int d = 0; d < s.dim(); ++d) {
              bool r = dims.empty();
              for (int64_t e : dims) r = r || (e < 0 ? e + s.dim() : e) == d;
              empty_red = empty_red || (r && s[size_t(d)] == 0);
            }
            if (empty_red) continue;
          }
          const Tensor x = th::random(s, dt, nc);
          std::ostringstream os;
          os << what << " " << dt << " shape " << s << " dims " << Shape(dims) << " keepdim " << keep << " nc " << nc;
          const Tensor y = op(x, dims, keep);
          INFO(os.str());
          REQUIRE(y.shape() == out_shape(s, dims, keep));
          th::check_close(th::values(y), ref_reduce(x, dims, fold), th::tol(dt) * 4, th::tol(dt) * 4, os.str());
        }
}

}  // namespace

TEST_CASE("sum over every dim set, keepdim, layout and dtype", "[reduce]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16, DType::f16}) {
    check_op("sum", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return sum(x, d, k); }, f_sum, dt);
    check_op("mean", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return mean(x, d, k); }, f_mean, dt);
  }
  // integers and bool sum exactly in int64
  for (DType dt : {DType::i32, DType::i64, DType::u8, DType::b8}) {
    const Tensor x = th::random({3, 4, 5}, DType::f32, true, 0, 200).to(dt);
    const Tensor y = sum(x, {0, 2});
    CHECK(y.dtype() == DType::i64);
    th::check_close(th::values(y), ref_reduce(x, {0, 2}, f_sum), 0, 0, "int sum");
    CHECK(sum(x).dtype() == DType::i64);
  }
  CHECK(sum(th::random({4}, DType::f16)).dtype() == DType::f16);
  CHECK(sum(th::random({4}, DType::bf16)).dtype() == DType::bf16);
}

TEST_CASE("sum and mean of empty tensors", "[reduce]") {
  CHECK(sum(zeros({0})).item<double>() == 0);
  CHECK(sum(zeros({3, 0}), {1}).shape() == Shape{3});
  th::check_close(th::values(sum(zeros({3, 0}), {1})), {0, 0, 0});
  CHECK(sum(zeros({0, 3}), {1}).shape() == Shape{0});
  CHECK(std::isnan(mean(zeros({0})).item<double>()));
  CHECK(std::isnan(mean(zeros({2, 0}), {1}).select(0, 1).item<double>()));
  CHECK(sum(zeros({0}, {.dtype = DType::i32})).item<int64_t>() == 0);
  // a 0-dim tensor reduces over nothing: dim 0 and -1 are accepted
  const Tensor s = scalar_tensor(2.5);
  CHECK(sum(s, {0}).item<double>() == 2.5);
  CHECK(sum(s, {-1}, true).dim() == 0);
  CHECK(mean(s).item<double>() == 2.5);
}

TEST_CASE("sum fast paths: inner, outer, tiles, pairwise, threads", "[reduce]") {
  // shapes chosen to reach: inner rows longer than a pairwise block, outer tiles wider than
  // cpu::kTile (with a tail), narrow outer columns, strided fallbacks, and a per-thread split
  const std::vector<std::pair<Shape, std::vector<int64_t>>> cases = {
      {{5000}, {0}},          {{3, 5000}, {1}},     {{5000, 3}, {0}},     {{40, 2500}, {0}},
      {{7, 130, 9}, {0, 2}},  {{7, 130, 9}, {1}},   {{300, 70}, {0, 1}},  {{65, 3, 33}, {0}},
      {{200000}, {}},         {{100000, 3}, {0}},   {{3, 100000}, {1}},   {{64, 3, 30, 30}, {0, 2, 3}},
  };
  const int threads = num_threads();
  for (int nt : {1, 3}) {
    set_num_threads(nt);
    for (const auto& [s, dims] : cases)
      for (bool nc : {false, true})
        for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
          std::ostringstream os;
          os << "sum " << dt << " " << s << " dims " << Shape(dims) << " nc " << nc << " threads " << nt;
          const Tensor x = th::random(s, dt, nc);
          const Tensor y = sum(x, dims);
          const double t = dt == DType::bf16 ? 1e-2 : th::tol(dt);
          // rounding error grows with the count summed (~sqrt(n) for random signs), not with the result
          const double n = double(x.numel()) / double(std::max<int64_t>(1, y.numel()));
          th::check_close(th::values(y), ref_reduce(x, dims, f_sum), t * std::max(10.0, std::sqrt(n)), t, os.str());
          const Tensor mx = amax(x, dims), mn = amin(x, dims);
          th::check_close(th::values(mx), ref_reduce(x, dims, f_max), 0, 0, "max " + os.str());
          th::check_close(th::values(mn), ref_reduce(x, dims, f_min), 0, 0, "min " + os.str());
        }
  }
  set_num_threads(threads);
}

TEST_CASE("float32 sum of 10^7 elements is accurate to 1e-6", "[reduce]") {
  const Tensor x = rand({10000000});
  const double got = sum(x).item<double>(), want = sum(x.to(DType::f64)).item<double>();
  CHECK(std::abs(got - want) <= 1e-6 * want);
  // the outer (column) engine too: sum over dim 0 of [10^6, 4]
  const Tensor y = rand({1000000, 4});
  th::check_close(sum(y, {0}), sum(y.to(DType::f64), {0}).to(DType::f32), 0, 1e-6, "outer sum");
}

TEST_CASE("max, min, amax, amin values, dtypes and NaN", "[reduce]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    check_op("amax", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return amax(x, d, k); }, f_max, dt, true);
    check_op("amin", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return amin(x, d, k); }, f_min, dt, true);
  }
  for (DType dt : {DType::i32, DType::u8, DType::b8, DType::i64}) {
    const Tensor x = th::random({4, 6}, DType::f32, true, 0, 100).to(dt);
    th::check_close(th::values(amax(x, {1})), ref_reduce(x, {1}, f_max), 0, 0, "int amax");
    th::check_close(th::values(amin(x, {0})), ref_reduce(x, {0}, f_min), 0, 0, "int amin");
    CHECK(max(x).item<double>() == f_max(th::values(x)));
    CHECK(max(x).dtype() == dt);
  }
  // NaN propagates, in the SIMD paths (long rows, wide columns) and the scalar ones
  for (const Shape& s : std::vector<Shape>{{5, 3}, {4, 100}, {100, 40}}) {
    Tensor x = th::random(s);
    x.select(0, 2).select(0, 1).fill_(NAN);
    CHECK(std::isnan(max(x).item<double>()));
    CHECK(std::isnan(min(x).item<double>()));
    th::check_close(th::values(amax(x, {0})), ref_reduce(x, {0}, f_max), 0, 0, "nan amax 0");
    th::check_close(th::values(amin(x, {1})), ref_reduce(x, {1}, f_min), 0, 0, "nan amin 1");
  }
  // infinities are not mistaken for NaN
  Tensor x = th::random({3, 50});
  x.select(0, 1).select(0, 7).fill_(INFINITY);
  x.select(0, 2).select(0, 9).fill_(-INFINITY);
  th::check_close(th::values(amax(x, {1})), ref_reduce(x, {1}, f_max), 0, 0, "inf amax");
  th::check_close(th::values(amin(x, {1})), ref_reduce(x, {1}, f_min), 0, 0, "inf amin");
}

TEST_CASE("max/min along a dim give values and first indices; argmax, argmin", "[reduce]") {
  for (DType dt : {DType::f32, DType::f64, DType::f16, DType::i32})
    for (const Shape& s : std::vector<Shape>{{7}, {3, 4}, {2, 3, 5}, {300, 20}, {6, 300}})
      for (bool nc : {false, true})
        for (int64_t d = -s.dim(); d < s.dim(); ++d)
          for (bool keep : {false, true}) {
            // few distinct values: ties everywhere, the first index must win
            Tensor x = th::random(s, dt, nc);
            x.copy_(th::random(s, DType::f32, false, 0, 4).to(DType::i32));
            std::ostringstream os;
            os << dt << " " << s << " dim " << d << " keep " << keep << " nc " << nc;
            auto [v, i] = max_with_indices(x, d, keep);
            auto [vn, in] = min_with_indices(x, d, keep);
            const int dd = int(d < 0 ? d + s.dim() : d);
            REQUIRE(i.dtype() == DType::i64);
            REQUIRE(v.shape() == out_shape(s, {d}, keep));
            th::check_close(th::values(v), ref_reduce(x, {d}, f_max), 0, 0, "max values " + os.str());
            th::check_close(th::values(vn), ref_reduce(x, {d}, f_min), 0, 0, "min values " + os.str());
            th::check_close(th::values(max(x, d, keep)), th::values(v), 0, 0, "max(dim) " + os.str());
            // reference first index along dd
            const Shape ks = out_shape(s, {d}, true);
            std::vector<double> want_i, want_in;
            for (int64_t o = 0; o < numel(ks); ++o) {
              auto idx = th::unravel(o, ks);
              int64_t bi = 0, bn = 0;
              for (int64_t k = 0; k < s[size_t(dd)]; ++k) {
                idx[size_t(dd)] = k;
                const double a = th::at(x, idx);
                idx[size_t(dd)] = bi;
                if (a > th::at(x, idx)) bi = k;
                idx[size_t(dd)] = bn;
                if (a < th::at(x, idx)) bn = k;
              }
              want_i.push_back(double(bi));
              want_in.push_back(double(bn));
            }
            th::check_close(th::values(i), want_i, 0, 0, "argmax " + os.str());
            th::check_close(th::values(in), want_in, 0, 0, "argmin " + os.str());
            th::check_close(th::values(argmax(x, d, keep)), want_i, 0, 0, "argmax() " + os.str());
            th::check_close(th::values(argmin(x, d, keep)), want_in, 0, 0, "argmin() " + os.str());
          }
  // flattened argmax: first occurrence in row-major order, also for a transposed view
  const Tensor x = th::make({1, 2, 5, 5, 0, -1}, {2, 3});
  CHECK(argmax(x).item<int64_t>() == 2);
  CHECK(argmin(x).item<int64_t>() == 5);
  CHECK(argmax(x).dim() == 0);
  CHECK(argmax(x.t()).item<int64_t>() == 1);  // x.t() = [[1, 5], [2, 0], [5, -1]]: the first 5 is at 1
  CHECK(x.argmax(1).shape() == Shape{2});
  // NaN counts as the max and the min; the first NaN wins
  const Tensor n = th::make({1, NAN, 3, NAN}, {4});
  CHECK(argmax(n).item<int64_t>() == 1);
  CHECK(argmin(n).item<int64_t>() == 1);
  CHECK(std::isnan(max(n, 0).item<double>()));
  // 0-dim: dim 0 is the element itself
  auto [v0, i0] = max_with_indices(scalar_tensor(3.0), 0);
  CHECK(v0.item<double>() == 3.0);
  CHECK(i0.item<int64_t>() == 0);
}

TEST_CASE("var and std", "[reduce]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16})
    for (bool unbiased : {true, false}) {
      check_op("var", [unbiased](const Tensor& x, const std::vector<int64_t>& d, bool k) { return var(x, d, unbiased, k); },
               f_var(unbiased), dt);
      const Fold sd = [unbiased](const std::vector<double>& v) { return std::sqrt(f_var(unbiased)(v)); };
      check_op("std", [unbiased](const Tensor& x, const std::vector<int64_t>& d, bool k) { return strata::std(x, d, unbiased, k); },
               sd, dt);
    }
  // one element: NaN when unbiased, 0 when not (PyTorch); empty: NaN
  CHECK(std::isnan(var(ones({1})).item<double>()));
  CHECK(var(ones({1}), {}, false).item<double>() == 0);
  CHECK(std::isnan(var(zeros({0})).item<double>()));
  // a large offset does not cost precision (two-pass algorithm)
  const Tensor x = add(th::random({1000}, DType::f32), 1e4);
  CHECK(std::abs(var(x).item<double>() - var(x.to(DType::f64)).item<double>()) < 1e-3);
  CHECK(x.var({0}, true, true).shape() == Shape{1});
  CHECK(x.std().dim() == 0);
}

TEST_CASE("logsumexp", "[reduce]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16})
    check_op("logsumexp", [](const Tensor& x, const std::vector<int64_t>& d, bool k) { return logsumexp(x, d, k); },
             [](const std::vector<double>& v) { return v.empty() ? -INFINITY : f_lse(v); }, dt);
  // no overflow or underflow, infinite entries, integer promotion
  th::check_close(logsumexp(th::make({1000, 1000}, {2}), {0}), th::make({1000 + std::log(2.0)}, {}), 1e-3);
  th::check_close(logsumexp(th::make({-1000, -1000}, {2}), {0}), th::make({-1000 + std::log(2.0)}, {}), 1e-3);
  CHECK(logsumexp(th::make({-INFINITY, -INFINITY}, {2}), {0}).item<double>() == -INFINITY);
  CHECK(logsumexp(th::make({1, INFINITY}, {2}), {0}).item<double>() == INFINITY);
  CHECK(logsumexp(th::make({1, 2}, {2}, DType::i32), {0}).dtype() == DType::f32);
}

TEST_CASE("reduction gradients", "[reduce][grad]") {
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { return sum(v[0]); }, {th::random({3, 4})});
  th::gradcheck_ok([](V v) { return sum(v[0], {0, 2}); }, {th::random({2, 3, 4}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return sum(v[0], {-1}, true); }, {th::random({2, 3, 4})});
  th::gradcheck_ok([](V v) { return mean(v[0], {1}); }, {th::random({2, 3, 4}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return mean(v[0]); }, {th::random({5})});
  th::gradcheck_ok([](V v) { return max(v[0]); }, {th::random({3, 4})});
  th::gradcheck_ok([](V v) { return min(v[0]); }, {th::random({3, 4}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return amax(v[0], {0, 2}, true); }, {th::random({2, 3, 4})});
  th::gradcheck_ok([](V v) { return amin(v[0], {1}); }, {th::random({2, 3, 4}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return max(v[0], 1); }, {th::random({3, 5}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return min(v[0], -1, true); }, {th::random({2, 3, 4})});
  th::gradcheck_ok([](V v) { return max_with_indices(v[0], 0).first; }, {th::random({4, 3})});
  th::gradcheck_ok([](V v) { return var(v[0], {1}); }, {th::random({3, 5}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return var(v[0], {}, false, true); }, {th::random({2, 3})});
  th::gradcheck_ok([](V v) { return strata::std(v[0], {0, 2}); }, {th::random({3, 2, 4}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return logsumexp(v[0], {1}); }, {th::random({3, 5}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return logsumexp(v[0], {0, 1}, true); }, {th::random({3, 5})});
  th::gradcheck_ok([](V v) { return sum_to(v[0], {3, 1}); }, {th::random({2, 3, 4})});
  th::gradcheck_ok([](V v) { return v[0].sum({0}) * v[0].mean({0}); }, {th::random({4, 3})});

  // ties: the full max shares its gradient evenly; max(dim) sends it to the first index
  Tensor x = th::make({1, 3, 3, 2}, {4}, DType::f64).requires_grad_();
  max(x).backward();
  th::check_close(x.grad(), th::make({0, 0.5, 0.5, 0}, {4}, DType::f64));
  Tensor y = th::make({1, 3, 3, 2}, {2, 2}, DType::f64).requires_grad_();
  max(y, 1).sum().backward();
  th::check_close(y.grad(), th::make({0, 1, 1, 0}, {2, 2}, DType::f64));
  // gradients land in the input's dtype and shape
  Tensor h = th::random({3, 4}, DType::bf16).requires_grad_();
  mean(h, {1}).sum().backward();
  CHECK(h.grad().dtype() == DType::bf16);
  th::check_close(h.grad(), full({3, 4}, 0.25));
}

TEST_CASE("sum_to", "[reduce]") {
  const Tensor x = th::random({2, 3, 4});
  CHECK(sum_to(x, {2, 3, 4}).is_same(x));
  th::check_close(sum_to(x, {3, 1}), sum(x, {0, 2}).reshape({3, 1}));
  th::check_close(sum_to(x, {4}), sum(x, {0, 1}));
  th::check_close(sum_to(x, {}), sum(x));
  th::check_close(sum_to(x, {1, 1, 1}), sum(x).reshape({1, 1, 1}));
  th::check_throws([&] { sum_to(x, {5}); }, {"sum_to", "[2, 3, 4]", "[5]"});
  th::check_throws([&] { sum_to(x, {1, 2, 3, 4}); }, {"sum_to", "[2, 3, 4]"});
}

TEST_CASE("reduction errors name the op and the shape", "[reduce]") {
  const Tensor x = th::random({2, 3});
  th::check_throws([&] { sum(x, {2}); }, {"sum", "dim 2", "[2, 3]"});
  th::check_throws([&] { mean(x, {-3}); }, {"mean", "dim -3", "[2, 3]"});
  th::check_throws([&] { sum(x, {1, -1}); }, {"sum", "more than once", "[2, 3]"});
  th::check_throws([&] { amax(x, {5}); }, {"amax", "[2, 3]"});
  th::check_throws([&] { max(x, 2); }, {"max", "[2, 3]"});
  th::check_throws([&] { argmax(x, -3); }, {"argmax", "[2, 3]"});
  th::check_throws([&] { var(x, {3}); }, {"var", "[2, 3]"});
  th::check_throws([&] { logsumexp(x, {2}); }, {"logsumexp", "[2, 3]"});
  th::check_throws([&] { max(zeros({0})); }, {"max", "[0]", "size 0"});
  th::check_throws([&] { min(zeros({2, 0}), 1); }, {"min", "[2, 0]"});
  th::check_throws([&] { amax(zeros({2, 0}), {1}); }, {"amax", "[2, 0]"});
  th::check_throws([&] { argmax(zeros({0, 2})); }, {"argmax", "[0, 2]"});
  th::check_throws([&] { mean(ones({2}, {.dtype = DType::i64})); }, {"mean", "int64", "[2]"});
  th::check_throws([&] { var(ones({2}, {.dtype = DType::i32})); }, {"var", "int32"});
  // reducing a non-empty dim of an empty tensor is fine
  CHECK(amax(zeros({0, 3}), {1}).shape() == Shape{0});
}

TEST_CASE("reduction methods forward to the ops", "[reduce]") {
  const Tensor x = th::random({3, 4}, DType::f64);
  CHECK(x.sum().item<double>() == sum(x).item<double>());
  th::check_close(x.sum({1}, true), sum(x, {1}, true));
  th::check_close(x.mean({0}), mean(x, {0}));
  CHECK(x.mean().item<double>() == mean(x).item<double>());
  CHECK(x.max().item<double>() == max(x).item<double>());
  CHECK(x.min().item<double>() == min(x).item<double>());
  th::check_close(x.max(1), max(x, 1));
  th::check_close(x.min(0, true), min(x, 0, true));
  CHECK(x.argmax().item<int64_t>() == argmax(x).item<int64_t>());
  th::check_close(x.argmax(0), argmax(x, 0));
  th::check_close(x.var({1}, false), var(x, {1}, false));
  th::check_close(x.std({0}, true, true), strata::std(x, {0}, true, true));
}

TEST_CASE("reduce kernel against its reference loop", "[reduce][kernel]") {
  // the raw kernels on a permuted, strided view: sum through both engines and the reference
  const Tensor x = th::random({6, 5, 40}, DType::f32, true);
  for (uint32_t mask : {1u, 2u, 4u, 5u, 6u, 7u, 3u}) {
    const cpu::ReduceGeom g = cpu::make_reduce_geom(3, x.shape().data(), x.strides().data(), mask);
    std::vector<float> got(size_t(g.n_out)), want(size_t(g.n_out));
    auto post = [](float a) { return a; };
    cpu::reduce_kernel<float, float>(g, x.data_ptr<float>(), got.data(), cpu::SumOp{}, post);
    cpu::reduce_ref<float, float>(3, x.shape().data(), x.strides().data(), mask, x.data_ptr<float>(), want.data(),
                                  cpu::SumOp{}, post);
    th::check_close(std::vector<double>(got.begin(), got.end()), std::vector<double>(want.begin(), want.end()), 1e-4,
                    1e-5, "mask " + std::to_string(mask));
  }
}

}  // namespace test_reduce
