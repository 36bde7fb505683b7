// softmax / log_softmax, dropout and conv2d's bias + ReLU epilogue on cuda tensors (include
// <strata/backend/cuda.hpp>; the emulator under g++) against the same ops on the cpu, same values.
// - softmax / log_softmax (backend/cuda/softmax.hpp, kernels/cuda/softmax.cuh): every dim of 1- to
//   4-d tensors, contiguous and strided x, rows of 1, 7, 32, 1000, 5000 values along the last dim
//   (rows_warp / rows_block paths; rows of up to 32 share a warp) and along an earlier dim (cols path;
//   each case asserts its path), more rows than the grid has blocks (the grid-stride loops),
//   inf / -inf / NaN / large values, forward, softmax_bwd on the same y and dout, and gradients
//   through autograd, for f32 f64 f16 bf16. Tolerances: the cuda sums run in another order than the
//   cpu's (trees vs SIMD lanes), so f32 agrees to a few ulp (4e-6 relative plus 1e-6 of the
//   largest |value|), f64 to 1e-12; f16/bf16 results are rounded once from float on cuda, and the
//   cpu's cols path rounds exp(x - m) to the dtype before scaling, so they may land 1-2 ulp apart.
// - dropout (backend/cuda/dropout.hpp, kernels/cuda/dropout.cuh): y, the mask (as x's gradient) and
//   the next number drawn equal the cpu's bit for bit for the same seed; strided x too.
// STRATA_TEST_VERBOSE=1 prints each tolerance comparison's worst |error| / tolerance.
// - conv2d / conv2d_relu with and without bias, NCHW and channels-last (backend/cuda/dnn.hpp's one
//   bias_act launch after the convolution), forward against the cpu.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/backend/cuda/dnn.hpp"  // also through cuda.hpp; named here as the headers under test
#include "strata/backend/cuda/dropout.hpp"
#include "strata/backend/cuda/softmax.hpp"

namespace test_cuda_softmax {

using namespace strata;

const std::vector<DType> kFloat = {DType::f32, DType::f64, DType::f16, DType::bf16};

/// |got - want| <= rtol |want| + atol max|want| per dtype (see the top); both NaN or the same inf pass.
inline void check_same(const Tensor& got, const Tensor& want, const std::string& what, double scale = 1) {
  INFO(what << ": got " << got.shape() << " " << got.dtype() << " on " << got.device() << ", want " << want.shape()
            << " " << want.dtype());
  REQUIRE(got.device().is_cuda());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  double rtol = 0, atol = 0;
  switch (want.dtype()) {
    case DType::f64: rtol = 1e-12, atol = 1e-13; break;
    case DType::f32: rtol = 4e-6, atol = 1e-6; break;
    case DType::f16: rtol = 2e-3, atol = 1e-3; break;
    default: rtol = 1.6e-2, atol = 8e-3; break;  // bf16
  }
  const std::vector<double> w = th::values(want);
  double big = 0;
  for (double v : w)
    if (std::isfinite(v)) big = std::max(big, std::abs(v));
  const std::vector<double> g = th::values(to(got, kCPU));
  th::check_close(g, w, atol * scale * big, rtol * scale, what);
  if (std::getenv("STRATA_TEST_VERBOSE")) {  // the worst |error| / tolerance of the comparison
    double worst = 0;
    for (size_t i = 0; i < g.size() && i < w.size(); ++i)
      if (std::isfinite(w[i])) worst = std::max(worst, std::abs(g[i] - w[i]) / (atol * scale * big + rtol * scale * std::abs(w[i])));
    std::printf("%-70s worst error / tolerance %.3f\n", what.c_str(), worst);
  }
}

/// Bit-for-bit equality (NaN equal to NaN, -0 equal to 0).
inline void check_exact(const Tensor& got, const Tensor& want, const std::string& what) {
  INFO(what);
  REQUIRE(got.device().is_cuda());
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  th::check_close(th::values(to(got, kCPU)), th::values(want), 0, 0, what);
}

/// A leaf copy of t that requires grad.
inline Tensor leaf(const Tensor& t) {
  Tensor r = t.detach();
  r.requires_grad_();
  return r;
}

/// The [outer, n, inner] sizes of softmax over dim d of shape s.
inline cuda::SoftmaxPath path_of(const Shape& s, int d) {
  int64_t outer, n, inner;
  detail::softmax_sizes(s, d, outer, n, inner);
  return cuda::softmax_plan(outer, n, inner).path;
}

/// softmax and log_softmax of x (cpu) over dim on cuda against the cpu: forward, softmax_bwd on the
/// same y and dout, and x's gradient through autograd. view: how x is seen (strided) on both devices.
inline void check_softmax(const Tensor& xc, int64_t dim, const std::string& what,
                          const std::function<Tensor(const Tensor&)>& view = [](const Tensor& t) { return t; },
                          bool autograd = true) {
  const Tensor xg = to(xc, kCUDA);
  const Tensor xcv = view(xc), xgv = view(xg);
  const int d = int(dim < 0 ? dim + std::max<int64_t>(xc.dim(), 1) : dim);
  for (const bool log : {false, true}) {
    const std::string w = what + (log ? " log_softmax" : " softmax") + " " + std::string(dtype_name(xc.dtype())) +
                          " dim " + std::to_string(dim);
    const Tensor yc = softmax_fwd(xcv, d, log), yg = softmax_fwd(xgv, d, log);
    check_same(yg, yc, w + " forward");
    // backward on the same y and dout (the cpu's y on both devices)
    const Tensor dout = th::random(xcv.shape(), xc.dtype());
    const Tensor dxc = softmax_bwd(dout, yc, d, log), dxg = softmax_bwd(to(dout, kCUDA), to(yc, kCUDA), d, log);
    check_same(dxg, dxc, w + " softmax_bwd", 2);
    // autograd end to end (f32 / f64: 16-bit y differ in rounding, amplified by the backward)
    if (autograd && (xc.dtype() == DType::f32 || xc.dtype() == DType::f64)) {
      Tensor lc = leaf(xcv), lg = leaf(xgv);
      (log ? log_softmax(lc, dim) : softmax(lc, dim)).backward(dout);
      (log ? log_softmax(lg, dim) : softmax(lg, dim)).backward(to(dout, kCUDA));
      check_same(lg.grad(), lc.grad(), w + " autograd dx", 4);
    }
  }
}

TEST_CASE("softmax and log_softmax on cuda equal the cpu's: rows of 1 to 5000, every dim, all paths",
          "[cuda][softmax]") {
  manual_seed(3);
  struct Case {
    Shape shape;
    int64_t dim;
    cuda::SoftmaxPath path;
  };
  using P = cuda::SoftmaxPath;
  const std::vector<Case> cases = {
      {{3, 1}, 1, P::rows_warp},       {{5, 7}, 1, P::rows_warp},      {{9, 32}, -1, P::rows_warp},
      {{3, 1000}, 1, P::rows_warp},    {{2, 5000}, 1, P::rows_block},  {{3, 1500}, -1, P::rows_block},
      {{1, 7}, 0, P::cols},            {{7, 3}, 0, P::cols},           {{1000, 5}, 0, P::cols},
      {{5000, 2}, 0, P::cols},         {{2, 32, 40}, 1, P::cols},      {{4, 5, 6}, 0, P::cols},
      {{4, 5, 6}, 1, P::cols},         {{4, 5, 6}, 2, P::rows_warp},   {{2, 3, 4, 5}, 2, P::cols},
      {{2, 3, 4, 5}, -3, P::cols},     {{2, 3, 4, 5}, 3, P::rows_warp}, {{6}, 0, P::rows_warp},
      {{1, 1}, 0, P::rows_warp},       {{33, 1, 3}, 1, P::cols},       {{130, 7}, 1, P::rows_warp},
      {{37, 3}, 1, P::rows_warp},      {{300, 17}, 1, P::rows_warp},   {{65, 2}, -1, P::rows_warp},
  };
  for (const DType dt : kFloat)
    for (const Case& c : cases) {
      const std::string what = "x " + to_string(c.shape);
      INFO(what << " dim " << c.dim);
      const int d = int(c.dim < 0 ? c.dim + int64_t(c.shape.size()) : c.dim);
      REQUIRE(path_of(c.shape, d) == c.path);
      check_softmax(th::random(c.shape, DType::f64, false, -4, 4).to(dt), c.dim, what);
    }
  // a 0-dim x (one row of one value) and an empty x
  for (const DType dt : kFloat) {
    check_softmax(full({}, 1.5, {.dtype = dt}), 0, "0-dim x");
    check_softmax(Tensor::empty({0, 5}, dt), 1, "empty x");
  }
}

TEST_CASE("softmax and log_softmax on cuda: more rows / tiles than the grid's blocks (grid-stride loops)",
          "[cuda][softmax]") {
  manual_seed(5);
  // cols: 4300 tiles of one outer index > kSoftmaxMaxBlocks; rows_warp: 4 rows a block, 17000 rows
  REQUIRE(4300 > cuda::kSoftmaxMaxBlocks);
  REQUIRE(cuda::softmax_plan(4300, 2, 3).grid.x == unsigned(cuda::kSoftmaxMaxBlocks));
  const auto same = [](const Tensor& t) { return t; };
  check_softmax(th::random({4300, 2, 3}, DType::f32), 1, "x [4300, 2, 3]", same, false);
  REQUIRE(cuda::softmax_plan(17000, 33, 1).grid.x == unsigned(cuda::kSoftmaxMaxBlocks));
  REQUIRE(17000 > 4 * cuda::kSoftmaxMaxBlocks);
  check_softmax(th::random({17000, 33}, DType::f32), 1, "x [17000, 33]", same, false);
}

TEST_CASE("softmax and log_softmax on cuda: strided x", "[cuda][softmax]") {
  manual_seed(4);
  for (const DType dt : kFloat) {
    const Tensor x = th::random({6, 40}, DType::f64, false, -3, 3).to(dt);
    auto transposed = [](const Tensor& t) { return t.t(); };          // [40, 6], strides (1, 40)
    auto every_other = [](const Tensor& t) { return slice(t, 1, 0, 40, 2); };  // [6, 20], stride 2
    for (const int64_t dim : {0, 1}) {
      check_softmax(x, dim, "transposed x", transposed);
      check_softmax(x, dim, "sliced x", every_other);
    }
    // a permuted view [2, 3, 1100] of [1100, 2, 3]: rows_block (dim 2) and cols (dims 0, 1) once contiguous
    const Tensor x3 = th::random({1100, 2, 3}, DType::f64, false, -3, 3).to(dt);
    const auto permuted = [](const Tensor& t) { return t.permute({1, 2, 0}); };
    REQUIRE(path_of({2, 3, 1100}, 2) == cuda::SoftmaxPath::rows_block);
    for (const int64_t dim : {0, 1, 2}) check_softmax(x3, dim, "permuted x", permuted);
  }
}

TEST_CASE("softmax and log_softmax on cuda: inf, -inf, NaN and large values as the cpu", "[cuda][softmax]") {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  for (const DType dt : kFloat) {
    const double big = dt == DType::f16 ? 6e4 : dt == DType::bf16 ? 1e38 : dt == DType::f32 ? 3e38 : 1e300;
    // rows: -inf entries, all -inf (NaN), a +inf (NaN), a NaN (NaN), large and spread values, one big value
    const std::vector<std::vector<double>> rows = {
        {1, -inf, 2, -inf, 0.5}, {-inf, -inf, -inf, -inf, -inf}, {1, inf, 2, 3, 4}, {1, 2, nan, 3, 4},
        {big, big / 2, -big, 0, big}, {-big, -big, -big, -big, -big}, {1e4, -1e4, 0, 20, -20}, {0, 0, 0, 0, 88}};
    std::vector<double> flat;
    for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
    const Tensor x = from_vector(flat, {int64_t(rows.size()), 5}).to(dt);
    check_softmax(x, 1, "special values, rows");
    check_softmax(contiguous(x.t()), 0, "special values, columns");  // the same rows along dim 0: cols path
    // long rows (rows_block) with a -inf and a large value
    Tensor xl = th::random({2, 3000}, DType::f64, false, -5, 5);
    xl.data_ptr<double>()[17] = -inf, xl.data_ptr<double>()[3000 + 2999] = dt == DType::f16 ? 6e4 : 1e4;
    check_softmax(xl.to(dt), 1, "long rows with -inf and large values");
  }
}

TEST_CASE("softmax on cuda: errors name the op", "[cuda][softmax]") {
  const Tensor y = to(th::random({3, 4}), kCUDA);
  CHECK_THROWS_WITH(softmax_bwd(to(th::random({3, 5}), kCUDA), y, 1, false), Catch::Contains("softmax_backward"));
  CHECK_THROWS_WITH(softmax_bwd(th::random({3, 4}), y, 1, true), Catch::Contains("log_softmax_backward"));
  CHECK_THROWS_WITH(softmax(to(ones({3}, {.dtype = DType::i64}), kCUDA), 0), Catch::Contains("softmax"));
}

// ---------------------------------------------------------------- dropout

TEST_CASE("dropout on cuda draws the cpu's mask on the device; the generator advances as on the cpu",
          "[cuda][dropout]") {
  for (const DType dt : kFloat)
    for (const double p : {0.1, 0.5, 1.0})
      for (const bool strided : {false, true}) {
        const std::string what = "dropout " + std::string(dtype_name(dt)) + " p " + std::to_string(p) +
                                 (strided ? " strided x" : "");
        manual_seed(11);
        const Tensor x0 = th::random({13, 7}, DType::f64).to(dt);  // 91 values: not a multiple of 4
        const Tensor x = strided ? x0.t() : x0, xgv = strided ? to(x0, kCUDA).t() : to(x0, kCUDA);
        manual_seed(5);
        Tensor lc = leaf(x);
        const Tensor yc = dropout(lc, p, true);
        const Tensor after_c = rand({6});
        manual_seed(5);
        Tensor lg = leaf(xgv);
        const Tensor yg = dropout(lg, p, true);
        const Tensor after_g = rand({6});
        check_exact(yg, yc, what + " y");
        REQUIRE(th::values(after_g) == th::values(after_c));  // the next draw: the generator advanced alike
        // the mask, as x's gradient for dout = 1, equals the cpu's dropout_mask for the seed
        manual_seed(5);
        const Tensor mask = dropout_mask(x.shape(), dt, p);
        yg.backward(ones(yg.shape(), {.dtype = dt, .device = kCUDA}));
        yc.backward(ones(yc.shape(), {.dtype = dt}));
        check_exact(lg.grad(), mask, what + " mask (x's gradient)");
        check_exact(lg.grad(), lc.grad(), what + " dx");
      }
  // no grad needed: no mask kept, the same y
  manual_seed(8);
  const Tensor x = th::random({1001});
  manual_seed(9);
  const Tensor yc = dropout(x, 0.3, true);
  manual_seed(9);
  const Tensor yg = dropout(to(x, kCUDA), 0.3, true);
  CHECK_FALSE(yg.requires_grad());
  check_exact(yg, yc, "dropout without grad");
}

// ---------------------------------------------------------------- conv2d epilogue

TEST_CASE("conv2d and conv2d_relu on cuda: bias and ReLU in one pass after the convolution, as the cpu",
          "[cuda][conv]") {
  manual_seed(12);
  for (const DType dt : kFloat)
    for (const bool channels_last : {false, true})
      for (const bool relu : {false, true})
        for (const bool bias : {false, true}) {
          const std::string what = std::string(relu ? "conv2d_relu " : "conv2d ") + std::string(dtype_name(dt)) +
                                   (channels_last ? " channels-last" : " NCHW") + (bias ? " bias" : " no bias");
          const Tensor x0 = th::random({2, 5, 6, 7}, DType::f64, false, -1, 1).to(dt);
          const Tensor w = th::random({6, 5, 3, 3}, DType::f64, false, -1, 1).to(dt);
          const Tensor b = bias ? th::random({6}, DType::f64, false, -1, 1).to(dt) : Tensor();
          auto layout = [&](const Tensor& t) { return channels_last ? contiguous(t, MemoryFormat::channels_last) : t; };
          const Tensor x = layout(x0);
          auto run = [&](const Tensor& xx, const Tensor& ww, const Tensor& bb) {
            return relu ? conv2d_relu(xx, ww, bb, {1, 1}, {1, 1}) : conv2d(xx, ww, bb, {1, 1}, {1, 1});
          };
          const Tensor want = run(x, w, b);
          const Tensor got = run(layout(to(x0, kCUDA)), to(w, kCUDA), bias ? to(b, kCUDA) : Tensor());
          REQUIRE(conv2d_channels_last(got) == channels_last);
          if (relu) CHECK(th::values(amin(to(got, kCPU), {0, 1, 2, 3}))[0] >= 0);
          check_same(got, want, what, 8);  // sums of 45 products in another order
        }
}

}  // namespace test_cuda_softmax
