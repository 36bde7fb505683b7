// Pools: max_pool2d, avg_pool2d, adaptive_avg_pool2d, adaptive_max_pool2d against a double reference
// loop written from PyTorch's formulas (kernel, stride, padding, dilation, ceil_mode,
// count_include_pad), on random shapes and non-contiguous inputs; argmax indices; backward against
// the reference scatter and f64 gradcheck; the fast kernels against their `_ref` loops; PyTorch
// golden values (tools/make_poolnorm_golden.py); errors.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <limits>

#include "golden/poolnorm.hpp"
#include "helpers.hpp"
#include "strata/tensor/pool.hpp"

namespace test_pool {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
using P2 = std::array<int64_t, 2>;

namespace {

/// A tensor of wave(shape, a, b): element i = sin(a i + b) * 2 + 0.001 i (as the golden script).
Tensor wave(const Shape& shape, double a, double b, DType dt = DType::f64) {
  std::vector<double> v(size_t(numel(shape)));
  for (size_t i = 0; i < v.size(); ++i) v[i] = std::sin(a * double(i) + b) * 2 + 0.001 * double(i);
  return th::make(v, shape, dt);
}

const std::vector<double>& golden_values(const std::string& name) { return golden::poolnorm.at(name); }

struct Pool {
  P2 k, s, p, d{1, 1};
  bool ceil = false, cip = true;
};

/// PyTorch's pooling_output_shape.
int64_t out_size(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil) {
  const double span = double(in + 2 * p - d * (k - 1) - 1);
  int64_t o = int64_t(ceil ? std::ceil(span / double(s)) : std::floor(span / double(s))) + 1;
  if (ceil && (o - 1) * s >= in + p) --o;
  return o;
}

/// Reference results in double, all [planes, OH, OW] row-major: values, argmax (max only).
struct Ref {
  Shape shape;
  std::vector<double> y;
  std::vector<int64_t> idx;
};

/// Sliding max (is_max) or average pool straight from PyTorch's loops, over every kernel tap.
Ref ref_pool(const Tensor& x, const Pool& q, bool is_max) {
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  const int64_t OH = out_size(H, q.k[0], q.s[0], q.p[0], q.d[0], q.ceil), OW = out_size(W, q.k[1], q.s[1], q.p[1], q.d[1], q.ceil);
  const std::vector<double> xv = th::values(x);
  Ref r;
  r.shape = x.shape();
  r.shape[r.shape.size() - 2] = OH, r.shape.back() = OW;
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        double m = -INFINITY, s = 0;
        int64_t at = -1, inside = 0;
        for (int64_t i = 0; i < q.k[0]; ++i)
          for (int64_t j = 0; j < q.k[1]; ++j) {
            const int64_t ih = oh * q.s[0] - q.p[0] + i * q.d[0], iw = ow * q.s[1] - q.p[1] + j * q.d[1];
            if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
            const double v = xv[size_t(pl * H * W + ih * W + iw)];
            ++inside, s += v;
            if (at < 0 || v > m || std::isnan(v)) m = v, at = ih * W + iw;
          }
        // avg divisor: taps inside input + padding (not past the padding), or inside the input only
        const int64_t h0 = oh * q.s[0] - q.p[0], w0 = ow * q.s[1] - q.p[1];
        const int64_t hs = std::min(h0 + q.k[0], H + q.p[0]) - h0, ws = std::min(w0 + q.k[1], W + q.p[1]) - w0;
        r.y.push_back(is_max ? m : inside == 0 ? 0.0 : s / double(q.cip ? hs * ws : inside));
        r.idx.push_back(at);
      }
  return r;
}

/// Adaptive max or average pool: output o covers [floor(o in / out), ceil((o + 1) in / out)).
Ref ref_adaptive(const Tensor& x, P2 os, bool is_max) {
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  const std::vector<double> xv = th::values(x);
  Ref r;
  r.shape = x.shape();
  r.shape[r.shape.size() - 2] = os[0], r.shape.back() = os[1];
  for (int64_t pl = 0; pl < planes; ++pl)
    for (int64_t oh = 0; oh < os[0]; ++oh)
      for (int64_t ow = 0; ow < os[1]; ++ow) {
        const int64_t h0 = int64_t(std::floor(double(oh * H) / double(os[0]))), h1 = int64_t(std::ceil(double((oh + 1) * H) / double(os[0])));
        const int64_t w0 = int64_t(std::floor(double(ow * W) / double(os[1]))), w1 = int64_t(std::ceil(double((ow + 1) * W) / double(os[1])));
        double m = -INFINITY, s = 0;
        int64_t at = -1;
        for (int64_t ih = h0; ih < h1; ++ih)
          for (int64_t iw = w0; iw < w1; ++iw) {
            const double v = xv[size_t(pl * H * W + ih * W + iw)];
            s += v;
            if (at < 0 || v > m || std::isnan(v)) m = v, at = ih * W + iw;
          }
        r.y.push_back(is_max ? m : s / double((h1 - h0) * (w1 - w0)));
        r.idx.push_back(at);
      }
  return r;
}

/// dx of a max pool: dout scattered to the reference argmax positions.
std::vector<double> ref_max_bwd(const Tensor& x, const Ref& r, const Tensor& g) {
  const int64_t HW = x.size(-2) * x.size(-1), out_plane = r.shape[r.shape.size() - 2] * r.shape.back();
  std::vector<double> dx(size_t(x.numel()), 0.0), gv = th::values(g);
  for (size_t o = 0; o < gv.size(); ++o)
    if (r.idx[o] >= 0) dx[size_t(int64_t(o) / out_plane * HW + r.idx[o])] += gv[o];
  return dx;
}

/// dx of a pool that is linear in x: the reference forward's Jacobian applied by finite basis
/// vectors would be slow, so the average pool's dx is rebuilt from <dx, e_i> = <g, pool(e_i)>.
template <class F>
std::vector<double> ref_linear_bwd(const Tensor& x, const Tensor& g, F pool_of) {
  std::vector<double> dx(size_t(x.numel()));
  const std::vector<double> gv = th::values(g);
  for (int64_t i = 0; i < x.numel(); ++i) {
    std::vector<double> e(size_t(x.numel()), 0.0);
    e[size_t(i)] = 1;
    const std::vector<double> y = pool_of(th::make(e, x.shape(), DType::f64)).y;
    double s = 0;
    for (size_t o = 0; o < y.size(); ++o) s += y[o] * gv[o];
    dx[size_t(i)] = s;
  }
  return dx;
}

std::string describe(const Shape& s, const Pool& q, DType dt, bool nc) {
  std::ostringstream os;
  os << dt << " " << s << " k " << q.k[0] << "," << q.k[1] << " s " << q.s[0] << "," << q.s[1] << " p " << q.p[0] << ","
     << q.p[1] << " d " << q.d[0] << "," << q.d[1] << " ceil " << q.ceil << " cip " << q.cip << " nc " << nc;
  return os.str();
}

const std::vector<Pool> kPools = {
    {{2, 2}, {2, 2}, {0, 0}},                      // the CNN classic
    {{3, 3}, {2, 2}, {1, 1}},                      // ResNet stem
    {{3, 2}, {1, 2}, {1, 0}, {1, 1}, true, false}, // ceil_mode, no pad count
    {{3, 3}, {2, 1}, {1, 1}, {2, 1}, true},        // dilation (max only) with ceil_mode
    {{2, 3}, {3, 2}, {1, 1}, {1, 1}, true, true},  // last window hanging over the end
    {{1, 1}, {2, 3}, {0, 0}},                      // strided pick
    {{4, 5}, {1, 1}, {2, 2}, {1, 1}, false, false},
    {{2, 3}, {1, 2}, {0, 1}, {3, 1}},              // row dilation, stride-2 columns (max only)
    {{2, 2}, {2, 2}, {0, 0}, {1, 1}, true},        // fastai's ResBlock shortcut: odd sizes end in a partial window
};

}  // namespace

TEST_CASE("max_pool2d and avg_pool2d against the reference loop", "[pool]") {
  const std::vector<Shape> shapes = {{2, 3, 7, 9}, {1, 2, 8, 8}, {3, 5, 6}, {2, 1, 11, 5}};
  for (DType dt : {DType::f32, DType::f64})
    for (const Shape& s : shapes)
      for (const Pool& q : kPools)
        for (bool nc : {false, true}) {
          const Tensor x = th::random(s, dt, nc);
          const std::string what = describe(s, q, dt, nc);
          auto [y, idx] = max_pool2d_with_indices(x, q.k, q.s, q.p, q.d, q.ceil);
          const Ref rm = ref_pool(x, q, true);
          REQUIRE(y.shape() == rm.shape);
          REQUIRE(y.dtype() == dt);
          th::check_close(th::values(y), rm.y, 0, 0, "max " + what);  // a max is exact
          CHECK(th::values(idx) == std::vector<double>(rm.idx.begin(), rm.idx.end()));
          if (q.d[0] != 1 || q.d[1] != 1) continue;
          const Tensor a = avg_pool2d(x, q.k, q.s, q.p, q.ceil, q.cip);
          const Ref ra = ref_pool(x, q, false);
          REQUIRE(a.shape() == ra.shape);
          th::check_close(th::values(a), ra.y, th::tol(dt), th::tol(dt), "avg " + what);
        }
}

TEST_CASE("adaptive pools against the reference loop", "[pool]") {
  const std::vector<std::pair<Shape, P2>> cases = {{{2, 3, 7, 9}, {3, 4}}, {{1, 2, 8, 8}, {1, 1}},  {{3, 5, 6}, {5, 6}},
                                                   {{2, 2, 5, 7}, {7, 3}}, {{1, 3, 10, 40}, {2, 1}}, {{2, 4, 3, 3}, {2, 2}}};
  for (DType dt : {DType::f32, DType::f64})
    for (const auto& [s, os] : cases)
      for (bool nc : {false, true}) {
        const Tensor x = th::random(s, dt, nc);
        std::ostringstream what;
        what << dt << " " << s << " -> " << os[0] << "x" << os[1] << " nc " << nc;
        const Ref ra = ref_adaptive(x, os, false), rm = ref_adaptive(x, os, true);
        const Tensor a = adaptive_avg_pool2d(x, os);
        REQUIRE(a.shape() == ra.shape);
        th::check_close(th::values(a), ra.y, th::tol(dt), th::tol(dt), "adaptive avg " + what.str());
        auto [m, idx] = adaptive_max_pool2d_with_indices(x, os);
        REQUIRE(m.shape() == rm.shape);
        th::check_close(th::values(m), rm.y, 0, 0, "adaptive max " + what.str());
        CHECK(th::values(idx) == std::vector<double>(rm.idx.begin(), rm.idx.end()));
        th::check_close(adaptive_max_pool2d(x, os), m, 0, 0);
      }
  // global average pooling over a wide plane runs the SIMD row sums
  const Tensor x = th::random({2, 3, 9, 70});
  th::check_close(th::values(adaptive_avg_pool2d(x, {1, 1})), th::values(x.to(DType::f64).mean({2, 3})), 1e-6, 1e-5,
                  "global avg");
}

TEST_CASE("max pool ties, NaN and -inf follow PyTorch", "[pool]") {
  // ties: the first position in the window; NaN wins (the last NaN); a window of -inf: its first tap
  const Tensor x = th::make({3, 3, NAN, 1, 2, NAN, 5, 0, -INFINITY, -INFINITY, 0, 1}, {1, 1, 3, 4});
  auto [y, idx] = max_pool2d_with_indices(x, {1, 2}, {1, 2});
  const std::vector<double> yv = th::values(y);
  CHECK((yv[0] == 3 && std::isnan(yv[1]) && std::isnan(yv[2]) && yv[3] == 5 && yv[4] == -INFINITY && yv[5] == 1));
  CHECK(th::values(idx) == std::vector<double>{0, 2, 5, 6, 8, 11});
  auto [y2, idx2] = max_pool2d_with_indices(x, {3, 4});
  CHECK(std::isnan(y2.item<double>()));
  CHECK(idx2.item<int64_t>() == 5);
  auto [y3, idx3] = adaptive_max_pool2d_with_indices(x, {1, 1});
  CHECK(idx3.item<int64_t>() == 5);
}

TEST_CASE("pool backward against the reference scatter", "[pool][grad]") {
  for (DType dt : {DType::f32, DType::f64})
    for (const Pool& q : kPools) {
      const Shape s{2, 2, 7, 6};
      const Tensor x = th::random(s, dt, true).requires_grad_();
      const Tensor y = max_pool2d(x, q.k, q.s, q.p, q.d, q.ceil);
      const Tensor g = th::random(y.shape(), dt, true);
      y.backward(g);
      th::check_close(th::values(x.grad()), ref_max_bwd(x, ref_pool(x.detach(), q, true), g), th::tol(dt), th::tol(dt),
                      "max bwd " + describe(s, q, dt, true));
      if (q.d[0] != 1 || q.d[1] != 1) continue;
      const Tensor xa = th::random({1, 2, 5, 6}, dt, true).requires_grad_();
      const Tensor ya = avg_pool2d(xa, q.k, q.s, q.p, q.ceil, q.cip);
      const Tensor ga = th::random(ya.shape(), dt);
      ya.backward(ga);
      const auto want = ref_linear_bwd(xa.detach(), ga, [&](const Tensor& e) { return ref_pool(e, q, false); });
      th::check_close(th::values(xa.grad()), want, th::tol(dt) * 4, th::tol(dt), "avg bwd " + describe({1, 2, 5, 6}, q, dt, true));
    }
  for (P2 os : {P2{3, 4}, P2{1, 1}, P2{5, 2}}) {
    const Tensor x = th::random({2, 3, 5, 7}, DType::f32, true).requires_grad_();
    const Tensor y = adaptive_max_pool2d(x, os);
    const Tensor g = th::random(y.shape());
    y.backward(g);
    th::check_close(th::values(x.grad()), ref_max_bwd(x, ref_adaptive(x.detach(), os, true), g), 1e-6, 1e-6, "adaptive max bwd");
    const Tensor xa = th::random({1, 2, 5, 7}, DType::f32, true).requires_grad_();
    const Tensor ya = adaptive_avg_pool2d(xa, os);
    const Tensor ga = th::random(ya.shape());
    ya.backward(ga);
    const auto want = ref_linear_bwd(xa.detach(), ga, [&](const Tensor& e) { return ref_adaptive(e, os, false); });
    th::check_close(th::values(xa.grad()), want, 1e-6, 1e-5, "adaptive avg bwd");
  }
}

TEST_CASE("pool gradcheck in float64", "[pool][grad]") {
  using V = const std::vector<Tensor>&;
  th::gradcheck_ok([](V v) { return max_pool2d(v[0], {2, 2}); }, {th::random({2, 2, 4, 5}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return max_pool2d(v[0], {3, 3}, {2, 1}, {1, 1}, {1, 2}, true); }, {th::random({1, 2, 6, 7})});
  th::gradcheck_ok([](V v) { return avg_pool2d(v[0], {3, 2}, {2, 2}, {1, 1}, true, false); }, {th::random({2, 2, 5, 6}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return avg_pool2d(v[0], {2, 3}, {1, 2}, {1, 1}, false, true); }, {th::random({2, 4, 5})});
  th::gradcheck_ok([](V v) { return adaptive_avg_pool2d(v[0], {3, 2}); }, {th::random({2, 2, 5, 7}, DType::f64, true)});
  th::gradcheck_ok([](V v) { return adaptive_max_pool2d(v[0], {2, 3}); }, {th::random({2, 2, 5, 7}, DType::f64, true)});
}

TEST_CASE("pools match PyTorch golden values", "[pool][golden]") {
  const Tensor x0 = wave({2, 2, 7, 8}, 0.7, 0.3);
  auto run = [&](const char* name, const std::function<Tensor(const Tensor&)>& f) {
    const Tensor x = x0.clone().requires_grad_();
    const Tensor y = f(x);
    y.backward(wave(y.shape(), 0.3, 0.2));
    th::check_close(th::values(y), golden_values(std::string(name) + "_y"), 1e-12, 1e-12, name);
    th::check_close(th::values(x.grad()), golden_values(std::string(name) + "_dx"), 1e-12, 1e-12, name);
    // float32 on the same input: within float rounding of the float64 golden
    const Tensor yf = f(x0.to(DType::f32));
    th::check_close(th::values(yf), golden_values(std::string(name) + "_y"), 1e-5, 1e-5, std::string(name) + " f32");
  };
  run("max_pool", [](const Tensor& x) { return max_pool2d(x, {3, 2}, {2, 1}, {1, 1}, {2, 1}, true); });
  run("max_pool_2x2", [](const Tensor& x) { return max_pool2d(x, {2, 2}); });
  run("avg_pool_cip1", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, true, true); });
  run("avg_pool_cip0", [](const Tensor& x) { return avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, true, false); });
  run("adaptive_avg", [](const Tensor& x) { return adaptive_avg_pool2d(x, {3, 5}); });
  run("adaptive_max", [](const Tensor& x) { return adaptive_max_pool2d(x, {4, 3}); });
  CHECK(th::values(max_pool2d_with_indices(x0, {3, 2}, {2, 1}, {1, 1}, {2, 1}, true).second) == golden_values("max_pool_idx"));
  CHECK(th::values(adaptive_max_pool2d_with_indices(x0, {4, 3}).second) == golden_values("adaptive_max_idx"));
}

TEST_CASE("pool kernels against their reference loops", "[pool][kernel]") {
  // W > 2 SIMD widths: the row sums vectorize; 96 planes of 32 x 32: parallel_for splits the work;
  // stride-2 max pools with 8 or more whole windows a row take 8-output vector blocks (the last
  // plane's last blocks fall back to the scalar loop where a load would leave x)
  // 14 x 14 and 7 x 7 (fashion_resnet's shortcut pools): rows of 7 and 3 pairs, all in the masked tail
  for (auto [H, W, planes] : std::vector<std::array<int64_t, 3>>{{9, 37, 5}, {32, 32, 96}, {14, 14, 6}, {7, 7, 4}})
    for (const Pool& q : kPools) {
      const int64_t OH = cpu::pool_output_size(H, q.k[0], q.s[0], q.p[0], q.d[0], q.ceil);
      const int64_t OW = cpu::pool_output_size(W, q.k[1], q.s[1], q.p[1], q.d[1], q.ceil);
      for (bool adaptive : {false, true}) {
        const auto rows = adaptive ? cpu::adaptive_windows(H, 4) : cpu::pool_windows(H, OH, q.k[0], q.s[0], q.p[0], q.d[0], q.cip);
        const auto cols = adaptive ? cpu::adaptive_windows(W, 1) : cpu::pool_windows(W, OW, q.k[1], q.s[1], q.p[1], q.d[1], q.cip);
        const cpu::Pool2dGeom g{.planes = planes, .H = H, .W = W, .OH = int64_t(rows.size()), .OW = int64_t(cols.size()),
                                .dh = adaptive ? 1 : q.d[0], .dw = adaptive ? 1 : q.d[1], .rows = rows.data(), .cols = cols.data()};
        const Tensor x = th::random({planes, H, W});
        const int64_t n_out = planes * g.OH * g.OW;
        std::vector<float> y(static_cast<size_t>(n_out)), yr(y), dx(static_cast<size_t>(x.numel())), dxr(dx);
        std::vector<int64_t> id(static_cast<size_t>(n_out)), idr(id);
        cpu::max_pool2d_fwd_kernel<float>(x.data_ptr<float>(), y.data(), id.data(), g);
        cpu::max_pool2d_ref<float>(x.data_ptr<float>(), yr.data(), idr.data(), g);
        CHECK(y == yr);
        CHECK(id == idr);
        const Tensor dy = th::random({n_out});
        cpu::max_pool2d_bwd_kernel<float>(dy.data_ptr<float>(), id.data(), dx.data(), planes, H * W, g.OH * g.OW);
        cpu::max_pool2d_bwd_ref<float>(dy.data_ptr<float>(), idr.data(), dxr.data(), planes, H * W, g.OH * g.OW);
        CHECK(dx == dxr);
        if (cpu::is_pool_2x2(g)) {  // the training path's one-byte taps: the same y, argmax and dx
          std::vector<float> y2(y.size()), dx2(dx.size(), 1.0f);
          std::vector<uint8_t> taps(y.size());
          cpu::max_pool2d_2x2_fwd_kernel<float>(x.data_ptr<float>(), y2.data(), taps.data(), g);
          CHECK(y2 == yr);
          int64_t bad = 0;
          for (int64_t i = 0; i < n_out; ++i) {
            const int64_t oh = i / g.OW % g.OH, ow = i % g.OW, k = taps[size_t(i)];
            bad += idr[size_t(i)] != (2 * oh + k / 2) * W + 2 * ow + k % 2;
          }
          CHECK(bad == 0);
          cpu::max_pool2d_2x2_bwd_kernel<float>(dy.data_ptr<float>(), taps.data(), dx2.data(), g);
          CHECK(dx2 == dxr);
        }
        if (g.dh != 1 || g.dw != 1) continue;
        cpu::avg_pool2d_fwd_kernel<float>(x.data_ptr<float>(), y.data(), g);
        cpu::avg_pool2d_ref<float>(x.data_ptr<float>(), yr.data(), g);
        th::check_close(std::vector<double>(y.begin(), y.end()), std::vector<double>(yr.begin(), yr.end()), 1e-6, 1e-5, "avg kernel");
        cpu::avg_pool2d_bwd_kernel<float>(dy.data_ptr<float>(), dx.data(), g);
        cpu::avg_pool2d_bwd_ref<float>(dy.data_ptr<float>(), dxr.data(), g);
        th::check_close(std::vector<double>(dx.begin(), dx.end()), std::vector<double>(dxr.begin(), dxr.end()), 1e-6, 1e-5, "avg bwd kernel");
      }
    }
}

TEST_CASE("pools in bfloat16 and float16 accumulate in float", "[pool]") {
  for (DType dt : {DType::bf16, DType::f16}) {
    const Tensor x = th::random({2, 3, 6, 40}, dt);
    th::check_close(th::values(avg_pool2d(x, {3, 3}, {2, 2}, {1, 1})), ref_pool(x, {{3, 3}, {2, 2}, {1, 1}}, false).y,
                    th::tol(dt), th::tol(dt), "avg 16-bit");
    th::check_close(th::values(adaptive_avg_pool2d(x, {1, 1})), ref_adaptive(x, {1, 1}, false).y, th::tol(dt), th::tol(dt),
                    "global avg 16-bit");
    th::check_close(th::values(max_pool2d(x, {2, 2})), ref_pool(x, {{2, 2}, {2, 2}, {0, 0}}, true).y, 0, 0, "max 16-bit");
  }
}

TEST_CASE("pool errors name the op, the shapes and what was expected", "[pool]") {
  const Tensor x = th::random({1, 2, 4, 4});
  th::check_throws([&] { max_pool2d(th::random({4, 4}), {2, 2}); }, {"max_pool2d", "[4, 4]", "[B, C, H, W]"});
  th::check_throws([&] { avg_pool2d(th::random({1, 1, 1, 4, 4}), {2, 2}); }, {"avg_pool2d", "[1, 1, 1, 4, 4]"});
  th::check_throws([&] { max_pool2d(x, {5, 5}); }, {"max_pool2d", "[1, 2, 4, 4]", "kernel [5, 5]", "at least 1x1"});
  th::check_throws([&] { max_pool2d(x, {3, 3}, {1, 1}, {0, 0}, {2, 2}); }, {"max_pool2d", "dilation [2, 2]", "output size [0, 0]"});
  th::check_throws([&] { avg_pool2d(x, {2, 2}, {1, 1}, {2, 0}); }, {"avg_pool2d", "padding [2, 0]", "kernel [2, 2]", "half"});
  th::check_throws([&] { max_pool2d(x, {0, 2}); }, {"max_pool2d", "kernel [0, 2]"});
  th::check_throws([&] { max_pool2d(x, {2, 2}, {-1, 1}); }, {"max_pool2d", "stride [-1, 1]"});
  th::check_throws([&] { max_pool2d(x, {2, 2}, {0, 0}, {0, 0}, {0, 1}); }, {"max_pool2d", "dilation [0, 1]"});
  th::check_throws([&] { adaptive_avg_pool2d(x, {0, 2}); }, {"adaptive_avg_pool2d", "output size [0, 2]"});
  th::check_throws([&] { adaptive_max_pool2d(th::random({2, 0, 3}), {1, 1}); }, {"adaptive_max_pool2d", "[2, 0, 3]", "H > 0"});
  th::check_throws([&] { max_pool2d(ones({1, 1, 4, 4}, {.dtype = DType::i64}), {2, 2}); }, {"max_pool2d", "int64"});
}

TEST_CASE("pools keep the batch-free [C, H, W] layout and empty batches", "[pool]") {
  const Tensor x = th::random({3, 6, 5});
  th::check_close(max_pool2d(x, {2, 2}), max_pool2d(x.unsqueeze(0), {2, 2}).squeeze(0), 0, 0);
  th::check_close(avg_pool2d(x, {3, 3}, {1, 1}, {1, 1}), avg_pool2d(x.unsqueeze(0), {3, 3}, {1, 1}, {1, 1}).squeeze(0), 0, 0);
  CHECK(max_pool2d(zeros({0, 3, 4, 4}), {2, 2}).shape() == Shape{0, 3, 2, 2});
  CHECK(adaptive_avg_pool2d(zeros({0, 3, 4, 4}), {3, 3}).shape() == Shape{0, 3, 3, 3});
}

TEST_CASE("channels-last pools match the reference loop and stay channels-last", "[pool][layout]") {
  const auto cl = MemoryFormat::channels_last;
  // C = 3 (all tail), 17 (two f32 vectors + tail, four f64 vectors + tail), 8 (exact vectors)
  const std::vector<Shape> shapes = {{2, 3, 7, 9}, {2, 17, 6, 5}, {1, 8, 8, 8}};
  for (DType dt : {DType::f32, DType::f64, DType::bf16})
    for (const Shape& s : shapes)
      for (const Pool& q : kPools) {
        const Tensor x = th::random(s, dt).contiguous(cl);
        const std::string what = describe(s, q, dt, false) + " channels_last";
        auto [y, idx] = max_pool2d_with_indices(x, q.k, q.s, q.p, q.d, q.ceil);
        const Ref rm = ref_pool(x, q, true);
        REQUIRE(y.shape() == rm.shape);
        CHECK(y.is_contiguous(cl));
        CHECK(idx.is_contiguous(cl));
        th::check_close(th::values(y), rm.y, 0, 0, "max " + what);
        CHECK(th::values(idx) == std::vector<double>(rm.idx.begin(), rm.idx.end()));
        if (q.d[0] != 1 || q.d[1] != 1) continue;
        const Tensor a = avg_pool2d(x, q.k, q.s, q.p, q.ceil, q.cip);
        CHECK(a.is_contiguous(cl));
        th::check_close(th::values(a), ref_pool(x, q, false).y, th::tol(dt), th::tol(dt), "avg " + what);
      }
  for (DType dt : {DType::f32, DType::f64})
    for (P2 os : {P2{3, 4}, P2{1, 1}, P2{7, 2}}) {
      const Tensor x = th::random({2, 11, 7, 9}, dt).contiguous(cl);
      const Tensor a = adaptive_avg_pool2d(x, os);
      CHECK(a.is_contiguous(cl));
      th::check_close(th::values(a), ref_adaptive(x, os, false).y, th::tol(dt), th::tol(dt), "adaptive avg channels_last");
      auto [m, idx] = adaptive_max_pool2d_with_indices(x, os);
      const Ref rm = ref_adaptive(x, os, true);
      th::check_close(th::values(m), rm.y, 0, 0, "adaptive max channels_last");
      CHECK(th::values(idx) == std::vector<double>(rm.idx.begin(), rm.idx.end()));
    }
  // large enough for parallel_for to split the rows; matches the plain layout exactly
  const Tensor big = th::random({4, 16, 32, 32});
  th::check_close(max_pool2d(big.contiguous(cl), {2, 2}), max_pool2d(big, {2, 2}), 0, 0, "2x2 big");
  th::check_close(avg_pool2d(big.contiguous(cl), {3, 3}, {2, 2}, {1, 1}), avg_pool2d(big, {3, 3}, {2, 2}, {1, 1}), 1e-6,
                  1e-6, "avg big");
  // ties, NaN and -inf in every lane and in the tail (C = 11): as in the plain layout
  const Tensor t = th::make({3, 3, NAN, 1, 2, NAN, 5, 0, -INFINITY, -INFINITY, 0, 1}, {1, 1, 3, 4});
  const Tensor tc = t.expand({1, 11, 3, 4}).contiguous(cl);
  auto [ty, tidx] = max_pool2d_with_indices(tc, {1, 2}, {1, 2});
  th::check_close(ty, max_pool2d(t, {1, 2}, {1, 2}).expand({1, 11, 3, 2}), 0, 0, "NaN channels_last");
  CHECK(th::values(tidx) == th::values(max_pool2d_with_indices(t, {1, 2}, {1, 2}).second.expand({1, 11, 3, 2})));
  // without indices (inference: 8 channels in the vector loop that keeps the max alone, 3 in the scalar one)
  th::check_close(max_pool2d(tc, {1, 2}, {1, 2}), ty, 0, 0, "NaN channels_last without indices");
  th::check_close(max_pool2d(tc, {2, 2}, {1, 1}, {1, 1}), max_pool2d_with_indices(tc, {2, 2}, {1, 1}, {1, 1}).first, 0, 0,
                  "NaN channels_last 2x2 padded without indices");
  CHECK(th::values(adaptive_max_pool2d_with_indices(tc, {1, 1}).second) == std::vector<double>(11, 5.0));
}

TEST_CASE("channels-last pool backward matches the reference and stays channels-last", "[pool][layout][grad]") {
  const auto cl = MemoryFormat::channels_last;
  for (DType dt : {DType::f32, DType::f64})
    for (const Pool& q : kPools) {
      const Shape s{2, 10, 7, 6};
      const Tensor x = th::random(s, dt).contiguous(cl).requires_grad_();
      const Tensor y = max_pool2d(x, q.k, q.s, q.p, q.d, q.ceil);
      const Tensor g = th::random(y.shape(), dt, true);  // a non-contiguous dout is converted
      y.backward(g);  // (the engine stores a leaf's grad as a contiguous clone: check dx itself below)
      CHECK(max_pool2d_bwd(g, max_pool2d_with_indices(x, q.k, q.s, q.p, q.d, q.ceil).second, s, dt).is_contiguous(cl));
      th::check_close(th::values(x.grad()), ref_max_bwd(x, ref_pool(x.detach(), q, true), g), th::tol(dt), th::tol(dt),
                      "max bwd channels_last " + describe(s, q, dt, false));
      if (q.d[0] != 1 || q.d[1 ] != 1) continue;
      const Tensor xa = th::random({1, 9, 5, 6}, dt).contiguous(cl).requires_grad_();
      const Tensor ya = avg_pool2d(xa, q.k, q.s, q.p, q.ceil, q.cip);
      const Tensor ga = th::random(ya.shape(), dt).contiguous(cl);
      ya.backward(ga);
      CHECK(avg_pool2d_bwd(ga, detail::pool_plan(xa, "avg_pool2d", q.k, q.s, q.p, {1, 1}, q.ceil, q.cip), dt).is_contiguous(cl));
      const auto want = ref_linear_bwd(xa.detach(), ga, [&](const Tensor& e) { return ref_pool(e, q, false); });
      th::check_close(th::values(xa.grad()), want, th::tol(dt) * 4, th::tol(dt), "avg bwd channels_last " + describe({1, 9, 5, 6}, q, dt, false));
    }
  // bf16 runs the scalar channel loop and accumulates in float
  const Tensor xb = th::random({1, 9, 5, 6}, DType::bf16).contiguous(cl).requires_grad_();
  const Tensor yb = avg_pool2d(xb, {3, 3}, {2, 2}, {1, 1});
  yb.backward(ones_like(yb));
  const Tensor xf = xb.detach().to(DType::f32).requires_grad_();
  avg_pool2d(xf, {3, 3}, {2, 2}, {1, 1}).sum().backward();
  th::check_close(xb.grad(), xf.grad(), 1e-2, 1e-2, "avg bwd bf16 channels_last");
}

TEST_CASE("channels-last pool gradcheck in float64", "[pool][layout][grad]") {
  using V = const std::vector<Tensor>&;
  const auto cl = MemoryFormat::channels_last;
  auto x = [&](Shape s) { return th::random(s, DType::f64).contiguous(cl); };
  th::gradcheck_ok([](V v) { return max_pool2d(v[0], {2, 2}); }, {x({2, 5, 4, 5})});
  th::gradcheck_ok([](V v) { return max_pool2d(v[0], {3, 3}, {2, 1}, {1, 1}, {1, 2}, true); }, {x({1, 6, 6, 7})});
  th::gradcheck_ok([](V v) { return avg_pool2d(v[0], {3, 2}, {2, 2}, {1, 1}, true, false); }, {x({2, 5, 5, 6})});
  th::gradcheck_ok([](V v) { return adaptive_avg_pool2d(v[0], {3, 2}); }, {x({2, 5, 5, 7})});
  th::gradcheck_ok([](V v) { return adaptive_max_pool2d(v[0], {2, 3}); }, {x({2, 5, 5, 7})});
}

TEST_CASE("the 2x2 stride-2 max pool fast path: ties, NaN, tails, values without indices", "[pool]") {
  // OW = 18 (two 8-wide vectors and a tail), 8 (one vector), 7 and 3 (one masked block: the 14x14
  // and 7x7 maps of a small CNN), 1; odd and even W and H (H = 8: the last row pair ends the buffer,
  // where the short rows' loads must stay masked); values on a coarse grid make many ties
  for (DType dt : {DType::f32, DType::f64})
    for (bool nc : {false, true})
      for (auto [H, W] : std::vector<std::array<int64_t, 2>>{{7, 37}, {8, 16}, {7, 14}, {8, 14}, {8, 7}, {3, 3}}) {
        Tensor x = mul(th::random({2, 3, H, W}, DType::f64, nc), 2.0).to(DType::i64).to(dt);
        if (!nc && W > 5) {
          NoGrad ng;
          x.narrow(3, 5, 1).fill_(NAN);  // a NaN column: every window over it is NaN
          x.select(2, 2).narrow(2, W / 2, 2).fill_(NAN);
          x.select(2, 4).narrow(2, W - 4, 3).fill_(-INFINITY);
        }
        const Pool q{{2, 2}, {2, 2}, {0, 0}};
        auto [y, idx] = max_pool2d_with_indices(x, q.k, q.s, q.p);
        const Ref r = ref_pool(x, q, true);
        th::check_close(th::values(y), r.y, 0, 0, "2x2 " + describe(x.shape(), q, dt, nc));
        CHECK(th::values(idx) == std::vector<double>(r.idx.begin(), r.idx.end()));
        {  // training: max_pool2d keeps one-byte taps; the same gradient as the int64 indices, bit for bit
          const Tensor xa = x.detach().requires_grad_(), xb = x.detach().requires_grad_(), g = th::random(y.shape(), dt);
          max_pool2d(xa, {2, 2}).backward(g);
          max_pool2d_with_indices(xb, {2, 2}).first.backward(g);
          CHECK(th::values(xa.grad()) == th::values(xb.grad()));
        }
        NoGrad ng;  // inference: the values alone, same as with indices
        th::check_close(max_pool2d(x, {2, 2}), y, 0, 0, "2x2 without indices");
        th::check_close(max_pool2d(x.contiguous(MemoryFormat::channels_last), {2, 2}), y, 0, 0, "2x2 cl without indices");
        th::check_close(max_pool2d(x, {3, 3}, {2, 2}, {1, 1}), max_pool2d_with_indices(x, {3, 3}, {2, 2}, {1, 1}).first, 0, 0,
                        "3x3 without indices");
        th::check_close(adaptive_max_pool2d(x, {2, 5}), adaptive_max_pool2d_with_indices(x, {2, 5}).first, 0, 0,
                        "adaptive without indices");
      }
}

}  // namespace test_pool
