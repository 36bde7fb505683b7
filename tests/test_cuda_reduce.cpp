// cuda reductions (kernels/cuda/reduce.cuh through backend/cuda/reduce.hpp's hooks), run on cuda
// tensors (under the emulator with g++) against strata's CPU ops on the same values: sum (and mean)
// within dtype-scaled tolerances of the summed magnitudes, amax/amin and argmax/argmin (values and
// indices) exactly, for f32 f64 f16 bf16 and the integer and bool dtypes (integer sums exact, in
// int64), over every subset of dims (keepdim both ways) of contiguous, transposed, step-sliced,
// channels-last, expanded (stride 0) and 0-dim inputs. Also: NaN propagation (max/min NaN where a
// NaN is reduced, argmax/argmin the first NaN, against hand-written answers), ties (first index),
// the kernels' other paths (one thread per output across rows, split reductions with a second
// pass) and a 2^20-element sum against a double-precision plain loop, empty reductions (sum 0,
// max throws naming the op). Run once with STRATA_EMU_SCHEDULE=reverse too.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/tensor/tensor.hpp"

#include "strata/backend/cuda.hpp"
#include "strata/backend/cuda/reduce.hpp"

namespace test_cuda_reduce {

using namespace strata;

/// All elements of a cpu tensor in row-major order, as double: a plain loop over the strides.
inline std::vector<double> host_values(const Tensor& t) {
  REQUIRE(t.device() == kCPU);
  return th::values(t);  // tests/helpers.hpp: a plain loop over the strides
}

inline Tensor on_cuda(const Tensor& x) { return to(x, Device::cuda()); }

/// Relative tolerance of a sum in dtype d, against the sum of magnitudes (float error of the two
/// summation orders) plus the rounding of the result (one unit of the 16-bit formats).
inline double sum_tol(DType d) {
  switch (d) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-6;
    case DType::f16: return 1.0 / 1024;
    case DType::bf16: return 1.0 / 128;
    default: return 0.0;  // integer sums are exact
  }
}

/// got (cuda) equals expected (cpu): same shape and dtype; each value within tol * (mag + |e|),
/// mag the sum of magnitudes of what was reduced (empty: exact); NaN exactly where expected has NaN.
inline void check_close(const Tensor& got_cuda, const Tensor& expected, double tol, const Tensor& mag = Tensor()) {
  REQUIRE(got_cuda.device().is_cuda());
  const Tensor got = to(got_cuda, kCPU);
  REQUIRE(got.shape() == expected.shape());
  REQUIRE(got.dtype() == expected.dtype());
  const std::vector<double> g = host_values(got), e = host_values(expected);
  const std::vector<double> m = mag.defined() ? host_values(mag) : std::vector<double>(e.size(), 0.0);
  REQUIRE(m.size() == e.size());
  for (size_t i = 0; i < g.size(); ++i) {
    INFO("element " << i << " of shape " << expected.shape() << ": got " << g[i] << ", expected " << e[i]);
    if (std::isnan(e[i])) {
      CHECK(std::isnan(g[i]));
    } else if (std::isinf(e[i])) {
      CHECK(g[i] == e[i]);
    } else {
      CHECK(std::abs(g[i] - e[i]) <= tol * (m[i] + std::abs(e[i])));
    }
  }
}

/// A view of a base tensor, made the same way on the cpu and on cuda.
struct Layout {
  std::string name;
  Shape base;
  std::function<Tensor(const Tensor&)> view;
};

/// Random-sized layouts of every kind the kernels must handle.
inline std::vector<Layout> layouts(std::mt19937& rng) {
  auto size = [&](int lo, int hi) { return int64_t(std::uniform_int_distribution<int>(lo, hi)(rng)); };
  const int64_t a = size(1, 7), b = size(2, 9), c = size(1, 11), n = size(1, 3);
  return {
      {"contiguous", {a, b, c}, [](const Tensor& x) { return x; }},
      {"transposed", {a, b, c}, [](const Tensor& x) { return permute(x, {2, 0, 1}); }},
      {"sliced step 2", {a, 2 * b + 1, c + 2},
       [b, c](const Tensor& x) { return slice(slice(x, 1, 1, 2 * b, 2), 2, 1, c + 1); }},
      {"sliced step 3 dim 0", {3 * a, b}, [](const Tensor& x) { return slice(x, 0, 0, x.shape()[0], 3); }},
      {"channels-last", {n, b, c, a}, [](const Tensor& x) { return permute(x, {0, 3, 1, 2}); }},
      {"expanded", {a, 1, c}, [a, b, c](const Tensor& x) { return expand(x, {a, b, c}); }},
      {"expanded leading", {b, c}, [a, b, c](const Tensor& x) { return expand(x, {a, b, c}); }},
      {"expanded transposed", {c, 1}, [b, c](const Tensor& x) { return transpose(expand(x, {c, b}), 0, 1); }},
      {"0-dim", {}, [](const Tensor& x) { return x; }},
      {"one dim", {a * b * c}, [](const Tensor& x) { return x; }},
  };
}

/// Random values in dtype d: normal floats (rounded to d), or small integers (many ties).
inline Tensor random_values(const Shape& shape, DType d, Generator& gen) {
  if (is_floating(d)) return to(randn(shape, {}, gen), d);
  if (d == DType::b8) return to(randint(0, 2, shape, {.dtype = DType::i64}, gen), d);
  return to(randint(d == DType::u8 ? 0 : -50, 50, shape, {.dtype = DType::i64}, gen), d);
}

const std::vector<DType> kAllDtypes = {DType::f32, DType::f64, DType::f16, DType::bf16,
                                       DType::i32, DType::i64, DType::u8,  DType::b8};

TEST_CASE("cuda reduce: sum, amax, amin over every set of dims, every layout and dtype", "[cuda][reduce]") {
  std::mt19937 rng(7);
  Generator gen(11);
  for (int round = 0; round < 2; ++round) {
    for (const Layout& l : layouts(rng)) {
      for (DType d : kAllDtypes) {
        const Tensor base = random_values(l.base, d, gen);
        const Tensor x = l.view(base), xc = l.view(on_cuda(base));
        REQUIRE(xc.strides() == x.strides());
        const int nd = x.dim();
        for (uint32_t mask = 0; mask < (1u << nd); ++mask) {
          const bool keepdim = (mask + uint32_t(round)) % 2 == 1;
          INFO(l.name << " shape " << x.shape() << " strides " << x.strides() << " dtype " << d << " mask " << mask
                      << " keepdim " << keepdim);
          if (mask == 0) {  // no dim reduced (the ops' dims = {} means all): the _fwd functions
            check_close(sum_fwd(xc, 0, keepdim, 0.5), sum_fwd(x, 0, keepdim, 0.5), sum_tol(d));
            check_close(extremum_fwd<true>(xc, 0, keepdim, "amax"), extremum_fwd<true>(x, 0, keepdim, "amax"), 0.0);
            check_close(extremum_fwd<false>(xc, 0, keepdim, "amin"), extremum_fwd<false>(x, 0, keepdim, "amin"), 0.0);
          }
          // dims = {} (all) when mask is 0, else the masked dims
          const std::vector<int64_t> dims = detail::mask_dims(mask, nd);
          const Tensor mag = is_floating(d) ? sum(abs(x), dims, keepdim) : Tensor();
          check_close(sum(xc, dims, keepdim), sum(x, dims, keepdim), sum_tol(d), mag);
          check_close(amax(xc, dims, keepdim), amax(x, dims, keepdim), 0.0);
          check_close(amin(xc, dims, keepdim), amin(x, dims, keepdim), 0.0);
          if (is_floating(d)) check_close(mean(xc, dims, keepdim), mean(x, dims, keepdim), sum_tol(d), mag);
        }
      }
    }
  }
}

TEST_CASE("cuda reduce: argmax, argmin, max/min with indices along each dim", "[cuda][reduce]") {
  std::mt19937 rng(3);
  Generator gen(5);
  for (const Layout& l : layouts(rng)) {
    for (DType d : kAllDtypes) {
      const Tensor base = random_values(l.base, d, gen);
      const Tensor x = l.view(base), xc = l.view(on_cuda(base));
      for (int64_t dim = -1; dim < std::max<int64_t>(x.dim(), 1); ++dim) {
        for (bool keepdim : {false, true}) {
          INFO(l.name << " shape " << x.shape() << " strides " << x.strides() << " dtype " << d << " dim " << dim
                      << " keepdim " << keepdim);
          check_close(argmax(xc, dim, keepdim), argmax(x, dim, keepdim), 0.0);
          check_close(argmin(xc, dim, keepdim), argmin(x, dim, keepdim), 0.0);
          const auto [vmax, imax] = max_with_indices(xc, dim, keepdim);
          const auto [emax, eimax] = max_with_indices(x, dim, keepdim);
          check_close(vmax, emax, 0.0);
          check_close(imax, eimax, 0.0);
          const auto [vmin, imin] = min_with_indices(xc, dim, keepdim);
          const auto [emin, eimin] = min_with_indices(x, dim, keepdim);
          check_close(vmin, emin, 0.0);
          check_close(imin, eimin, 0.0);
        }
      }
    }
  }
}

TEST_CASE("cuda reduce: ties go to the first index, against hand-written answers", "[cuda][reduce]") {
  // rows: all equal; max at 1 and 3; min at 0 and 4; a long row (block kernel) with its max at 5 and 999
  const Tensor x = from_vector({2, 2, 2, 2, 2, 1, 5, 3, 5, 1, 0, 4, 4, 4, 0}, {3, 5});
  const Tensor xc = on_cuda(x);
  CHECK(host_values(to(argmax(xc, 1), kCPU)) == std::vector<double>{0, 1, 1});
  CHECK(host_values(to(argmin(xc, 1), kCPU)) == std::vector<double>{0, 0, 0});
  CHECK(host_values(to(argmax(xc, 0), kCPU)) == std::vector<double>{0, 1, 2, 1, 0});
  CHECK(host_values(to(argmin(xc, 0), kCPU)) == std::vector<double>{2, 0, 0, 0, 2});
  std::vector<float> long_row(1000, 1.0f);
  long_row[5] = long_row[999] = 7.0f;
  long_row[700] = long_row[3] = -2.0f;
  const Tensor lc = on_cuda(from_vector(long_row));
  CHECK(host_values(to(argmax(lc, 0), kCPU)) == std::vector<double>{5});
  CHECK(host_values(to(argmin(lc, 0), kCPU)) == std::vector<double>{3});
  // the same row in 3000 columns (contiguous on cuda: one thread per output), read down dim 0
  const Tensor cols = on_cuda(expand(reshape(from_vector(long_row), {1000, 1}), {1000, 3000}));
  const std::vector<double> am = host_values(to(argmax(cols, 0), kCPU)), an = host_values(to(argmin(cols, 0), kCPU));
  CHECK(am == std::vector<double>(3000, 5.0));
  CHECK(an == std::vector<double>(3000, 3.0));
}

TEST_CASE("cuda reduce: NaN propagates through max/min, argmax/argmin pick the first NaN", "[cuda][reduce]") {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    INFO("dtype " << d);
    // row 0 NaN in the middle, row 1 none (with inf), row 2 NaN first and last, row 3 all NaN
    const Tensor x = to(from_vector({1, 7, nan, 9, nan, -inf, 3, inf, 2, -1, nan, 4, 5, 6, nan, nan, nan, nan, nan, nan},
                                    {4, 5}),
                        d);
    const Tensor xc = on_cuda(x);
    const std::vector<double> mx = host_values(to(to(amax(xc, {1}), kCPU), DType::f64));
    const std::vector<double> mn = host_values(to(to(amin(xc, {1}), kCPU), DType::f64));
    CHECK((std::isnan(mx[0]) && mx[1] == inf && std::isnan(mx[2]) && std::isnan(mx[3])));
    CHECK((std::isnan(mn[0]) && mn[1] == -inf && std::isnan(mn[2]) && std::isnan(mn[3])));
    CHECK(host_values(to(argmax(xc, 1), kCPU)) == std::vector<double>{2, 2, 0, 0});
    CHECK(host_values(to(argmin(xc, 1), kCPU)) == std::vector<double>{2, 0, 0, 0});
    CHECK(std::isnan(host_values(to(to(max(xc), kCPU), DType::f64))[0]));
    CHECK(host_values(to(argmax(xc, 0), kCPU)) == std::vector<double>{2, 3, 0, 3, 0});
    check_close(amax(xc, {0}), amax(x, {0}), 0.0);
    check_close(amin(xc, {0}), amin(x, {0}), 0.0);
    check_close(sum(xc, {1}), sum(x, {1}), 0.0);  // NaN and inf rows: NaN where the CPU has NaN, else exact
    // a long row (block kernel, split sums) with one NaN at 4000 of 10000; a NaN-free row beside it
    std::vector<float> v(20000);
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(i % 97) - 40.0f;
    v[4000] = float(nan);
    const Tensor lc = on_cuda(to(from_vector(v, {2, 10000}), d));
    const std::vector<double> lmax = host_values(to(to(amax(lc, {1}), kCPU), DType::f64));
    CHECK((std::isnan(lmax[0]) && lmax[1] == 56.0));
    CHECK(std::isnan(host_values(to(to(sum(lc, {1}), kCPU), DType::f64))[0]));
    // row 1 holds (9 + j) % 97 - 40 (10000 % 97 = 9): first max 56 at j = 87, first min -40 at j = 88
    CHECK(host_values(to(argmax(lc, 1), kCPU)) == std::vector<double>{4000, 87});
    CHECK(host_values(to(argmin(lc, 1), kCPU)) == std::vector<double>{4000, 88});
  }
}

TEST_CASE("cuda reduce: each kernel path (thread per output, block, cols, split in two passes)", "[cuda][reduce]") {
  Generator gen(21);
  using P = cuda::ReducePath;
  struct Case {
    Shape shape;
    std::vector<int64_t> dims;
    P path;
    int64_t splits;  // per output (cols kernel: 128 rows a split; block kernel: 4096 elements)
  };
  const std::vector<Case> cases = {
      {{300, 2500}, {0}, P::cols, 3},  {{5000, 7}, {0}, P::cols, 40},      {{20, 300, 9}, {1}, P::cols, 3},
      {{40, 900}, {1}, P::block, 1},   {{3, 12000}, {1}, P::block, 3},     {{37, 1000}, {}, P::block, 10},
      {{3000, 50}, {1}, P::thread, 1}, {{50, 3000}, {0}, P::thread, 1},
  };
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16, DType::i64, DType::b8}) {
    for (const Case& c : cases) {
      INFO("shape " << c.shape << " dtype " << d << " dims " << c.dims.size());
      const Tensor x = random_values(c.shape, d, gen), xc = on_cuda(x);
      const cuda::ReduceGeom g = detail::cuda_reduce_geom(xc, detail::reduce_mask(xc, c.dims, "test"));
      REQUIRE(cuda::reduce_path(g) == c.path);
      REQUIRE(cuda::reduce_splits(g) == c.splits);
      const Tensor mag = is_floating(d) ? sum(abs(x), c.dims) : Tensor();
      check_close(sum(xc, c.dims), sum(x, c.dims), sum_tol(d), mag);
      check_close(amax(xc, c.dims), amax(x, c.dims), 0.0);
      check_close(amin(xc, c.dims), amin(x, c.dims), 0.0);
      if (c.dims.size() == 1) {
        check_close(argmax(xc, c.dims[0]), argmax(x, c.dims[0]), 0.0);
        check_close(argmin(xc, c.dims[0]), argmin(x, c.dims[0]), 0.0);
      }
    }
  }
}

TEST_CASE("cuda reduce: a 2^20-element sum against a double-precision plain loop", "[cuda][reduce]") {
  Generator gen(99);
  const int64_t n = int64_t(1) << 20;
  const Tensor x = rand({n}, {}, gen);  // [0, 1): no cancellation, so relative error is meaningful
  const std::vector<double> v = host_values(x);
  double exact = 0.0;
  for (double e : v) exact += e;  // float inputs summed in double: exact to ~1e-16 relative here
  const Tensor xc = on_cuda(x);
  const double got = host_values(to(sum(xc), kCPU))[0];
  CHECK(std::abs(got - exact) <= 1e-6 * exact);
  const double got_mean = host_values(to(mean(xc), kCPU))[0];
  CHECK(std::abs(got_mean - exact / double(n)) <= 1e-6 * exact / double(n));
  // the same values as [1024, 1024] summed down the columns, and along the rows
  const Tensor m = reshape(x, {1024, 1024}), mc = on_cuda(m);
  const std::vector<double> cols = host_values(to(sum(mc, {0}), kCPU)), rows = host_values(to(sum(mc, {1}), kCPU));
  for (int64_t j = 0; j < 1024; ++j) {
    double c = 0.0, r = 0.0;
    for (int64_t i = 0; i < 1024; ++i) {
      c += v[size_t(i * 1024 + j)];
      r += v[size_t(j * 1024 + i)];
    }
    CHECK(std::abs(cols[size_t(j)] - c) <= 1e-6 * c);
    CHECK(std::abs(rows[size_t(j)] - r) <= 1e-6 * r);
  }
  // f64 to 1e-12, and an int64 sum exactly
  CHECK(std::abs(host_values(to(sum(on_cuda(to(x, DType::f64))), kCPU))[0] - exact) <= 1e-12 * exact);
  const Tensor k = randint(-1000000, 1000000, {n}, {.dtype = DType::i64}, gen);
  int64_t ksum = 0;
  for (double e : host_values(k)) ksum += int64_t(e);
  const Tensor kc = to(sum(on_cuda(k)), kCPU);
  REQUIRE(kc.dtype() == DType::i64);
  CHECK(static_cast<const int64_t*>(kc.storage()->data())[kc.offset()] == ksum);
}

TEST_CASE("cuda reduce: empty reductions, 0-dim inputs and errors", "[cuda][reduce]") {
  const Tensor e = on_cuda(zeros({0, 3}));
  check_close(sum(e, {0}), zeros({3}), 0.0);                 // sum of nothing is 0
  check_close(sum(e, {0}, true), zeros({1, 3}), 0.0);
  check_close(sum(e, {1}), zeros({0}), 0.0);                 // no outputs
  check_close(sum(on_cuda(zeros({0, 3}, {.dtype = DType::i32})), {0}), zeros({3}, {.dtype = DType::i64}), 0.0);
  CHECK(std::isnan(host_values(to(mean(e, {0}), kCPU))[0]));  // mean of nothing is NaN
  check_close(amax(e, {1}), zeros({0}), 0.0);                // nothing to reduce over, no outputs
  auto message = [](auto f) {
    try {
      f();
    } catch (const Error& err) {
      return std::string(err.what());
    }
    return std::string();
  };
  CHECK(message([&] { amax(e, {0}); }).find("amax") != std::string::npos);
  CHECK(message([&] { amin(e); }).find("amin") != std::string::npos);
  CHECK(message([&] { argmax(e, 0); }).find("argmax") != std::string::npos);
  CHECK(message([&] { max(e); }).find("max") != std::string::npos);
  // the hooks called directly refuse an empty reduction and mismatched outputs too
  CHECK(message([&] { detail::cuda_amax_hook(on_cuda(zeros({3})), e, 1u); }).find("amax") != std::string::npos);
  CHECK(message([&] { detail::cuda_sum_hook(on_cuda(zeros({2})), e, 1u, 1.0); }).find("sum") != std::string::npos);
  CHECK(message([&] { detail::cuda_sum_hook(zeros({3}), e, 1u, 1.0); }).find("sum") != std::string::npos);
  // 0-dim
  const Tensor s = on_cuda(scalar_tensor(-2.5));
  CHECK(host_values(to(sum(s), kCPU)) == std::vector<double>{-2.5});
  CHECK(host_values(to(amax(s), kCPU)) == std::vector<double>{-2.5});
  CHECK(host_values(to(argmax(s, 0), kCPU)) == std::vector<double>{0});
  CHECK(to(argmax(s, -1, true), kCPU).dim() == 0);
}

TEST_CASE("cuda reduce: composites (var, std, logsumexp, sum_to) and gradients through the reductions",
          "[cuda][reduce]") {
  std::mt19937 rng(17);
  Generator gen(23);
  const std::vector<Layout> ls = layouts(rng);
  for (DType d : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    for (const Layout& l : ls) {
      const Tensor base = random_values(l.base, d, gen);
      const Tensor x = l.view(base), xc = l.view(on_cuda(base));
      const int nd = x.dim();
      for (uint32_t mask = 1; mask < (1u << nd); mask += 2) {  // the subsets with dim 0 (all of them for 0/1 dims)
        const std::vector<int64_t> dims = detail::mask_dims(mask, nd);
        INFO(l.name << " shape " << x.shape() << " strides " << x.strides() << " dtype " << d << " mask " << mask);
        const Tensor v = var(x, dims, true, true);
        check_close(var(xc, dims, true, true), v, sum_tol(d), v);  // relative to the variance itself
        check_close(xc.std(dims, false, false), x.std(dims, false, false), sum_tol(d));
        const Tensor lse = logsumexp(x, dims, mask % 4 == 1);  // relative to 1 + |lse| (lse may be ~0)
        check_close(logsumexp(xc, dims, mask % 4 == 1), lse, 2 * sum_tol(d), ones_like(lse));
        // sum_to the kept dims (size 1 where reduced), as a broadcast op's backward does
        Shape to_shape = x.shape();
        for (int64_t dd : dims) to_shape[size_t(dd)] = 1;
        check_close(sum_to(xc, to_shape), sum_to(x, to_shape), sum_tol(d), sum_to(abs(x), to_shape));
      }
    }
  }
  // gradients: a broadcast product (sum_to in the backward), amax with ties (shared gradient),
  // max along a dim (the gradient to the index), mean; cuda against the cpu
  const Tensor a = from_vector({1, 3, 3, -2, 0}, {1, 5}), b = from_vector({2, 2, -1, 0, 4, 4}, {3, 2, 1});
  Tensor ac = on_cuda(a), bc = on_cuda(b), ag = a.detach(), bg = b.detach();
  ac.requires_grad_(), bc.requires_grad_(), ag.requires_grad_(), bg.requires_grad_();
  auto loss = [](const Tensor& p, const Tensor& q) {
    const Tensor y = mul(p, q);  // [3, 2, 5]
    return add(add(sum(amax(y, {0, 2})), sum(max(y, 1))), add(mean(y), sum(mul(y, y))));
  };
  const Tensor lc = loss(ac, bc), lg = loss(ag, bg);
  check_close(lc, lg, 1e-6, abs(lg));
  lc.backward();
  lg.backward();
  REQUIRE(ac.grad().device().is_cuda());
  check_close(ac.grad(), ag.grad(), 1e-6, abs(ag.grad()));
  check_close(bc.grad(), bg.grad(), 1e-6, abs(bg.grad()));
  // argmax over all elements of a non-contiguous tensor (a reshape copy on cuda first)
  const Tensor t = permute(from_vector({3, 9, 9, 1, 0, 2}, {2, 3}), {1, 0});
  CHECK(host_values(to(argmax(on_cuda(from_vector({3, 9, 9, 1, 0, 2}, {2, 3})).t()), kCPU)) ==
        host_values(argmax(t)));
}

}  // namespace test_cuda_reduce
