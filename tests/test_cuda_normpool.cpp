// batch_norm, batch_norm_relu, layer_norm and the 2-d pools on cuda tensors (include
// <strata/backend/cuda.hpp>; the emulator under g++) against the same ops on the cpu, on the same
// values: forward, the running-stat update, and the gradients of x, weight and bias.
// Operands are made on the cpu, copied to cuda whole and viewed the same way on both devices
// (contiguous, channels-last), so the cuda kernels see the layouts the cpu kernels do.
// Tolerances: the norms sum in a different order than the cpu (blocks and shuffles vs tiles and
// Chan's merge in double), so f32 agrees to a few ulp of the values (1e-5 relative and absolute,
// the gradients summing over up to 4100 values), f64 to 1e-12; f16/bf16 results are rounded to
// the dtype and may land one ulp apart. The pools do the same arithmetic in the same order as the
// cpu kernels (max: the same comparisons; backward: the same additions, in output order), so max
// pool forward and backward and both pool backwards are exact; the avg forward is exact except
// where the cpu sums a wide window row in SIMD lanes (f32/f64), within a few ulp.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/backend/cuda/norm.hpp"  // also through cuda.hpp; named here as the headers under test
#include "strata/backend/cuda/pool.hpp"

namespace test_cuda_normpool {

using namespace strata;

using th::check_cuda_same;

/// Tolerance of a norm result of dtype dt (see the top of this file).
inline double norm_tol(DType dt) {
  switch (dt) {
    case DType::f64: return 1e-12;
    case DType::f32: return 1e-5;
    case DType::f16: return 4e-3;
    case DType::bf16: return 3e-2;
    default: return 0;
  }
}

const std::vector<DType> kFloat = {DType::f32, DType::f64, DType::f16, DType::bf16};

/// x in dtype dt with values in [lo, hi), channels-last (C innermost: 4-D or 3-D) when asked; the same
/// values on cuda.
inline std::pair<Tensor, Tensor> make_xs(const Shape& shape, DType dt, bool channels_last, double lo = -2,
                                         double hi = 2) {
  Tensor c = th::random(shape, DType::f64, false, lo, hi).to(dt);
  Tensor g = to(c, kCUDA);
  if (channels_last && shape.size() == 4)
    c = contiguous(c, MemoryFormat::channels_last), g = contiguous(g, MemoryFormat::channels_last);
  if (channels_last && shape.size() == 3) {  // [B, C, L] stored as [B, L, C]
    c = permute(contiguous(permute(c, {0, 2, 1})), {0, 2, 1});
    g = permute(contiguous(permute(g, {0, 2, 1})), {0, 2, 1});
  }
  if (channels_last) REQUIRE((!c.is_contiguous() && !g.is_contiguous()));
  return {c, g};
}

/// A leaf copy of t that requires grad.
inline Tensor leaf(const Tensor& t) {
  Tensor r = t.detach();
  r.requires_grad_();
  return r;
}

// ---------------------------------------------------------------- batch norm

struct BnCase {
  Shape shape;
  bool channels_last;
  int64_t splits = 1;  // the kernels' path: 1 = one block per channel(s), else chunks per channel
};

TEST_CASE("cuda batch_norm and batch_norm_relu equal the cpu's: forward, running stats, gradients",
          "[cuda][norm]") {
  const std::vector<BnCase> cases = {
      {{4, 5, 3, 6}, false},      {{4, 5, 3, 6}, true},  {{6, 7}, false},         {{3, 4, 9}, false},
      {{8, 3, 20, 20}, false, 3}, {{2, 37, 3, 4}, true}, {{5, 40}, false},        {{3, 5, 7}, true},
      {{1, 3, 1, 2}, false},      {{1, 5, 600}, false},  {{8, 20, 16, 16}, true, 2}, {{4100, 3}, false, 4},
  };
  for (const DType dt : kFloat)
    for (const BnCase& bc : cases)
      for (const bool relu : {false, true})
        for (const bool training : {true, false})
          for (const bool affine : {true, false}) {
            const int64_t C = bc.shape[1];
            const std::string what = std::string(relu ? "batch_norm_relu " : "batch_norm ") +
                                     std::string(dtype_name(dt)) + " " + (training ? "train " : "eval ") +
                                     (affine ? "affine " : "plain ") + (bc.channels_last ? "channels-last " : "") +
                                     "x " + std::to_string(bc.shape.size()) + "-d C " + std::to_string(C);
            const cpu::BatchNormDims d = detail::batch_norm_dims(bc.shape, bc.channels_last, relu);
            REQUIRE(cuda::batch_norm_splits(detail::cuda_bn_dims(d)) == bc.splits);
            auto [xc, xg] = make_xs(bc.shape, dt, bc.channels_last, -1.5, 3.5);  // a mean away from 0
            const DType pt = dt == DType::f64 ? DType::f64 : DType::f32;
            const Tensor w = th::random({C}, pt, false, 0.5, 1.5), b = th::random({C}, pt);
            const Tensor rm = th::random({C}, pt, false, -0.5, 0.5), rv = th::random({C}, pt, false, 0.5, 2);
            Tensor rmc = clone(rm), rvc = clone(rv), rmg = to(rm, kCUDA), rvg = to(rv, kCUDA);
            Tensor wc = leaf(w), bc_ = leaf(b), wg = leaf(to(w, kCUDA)), bg = leaf(to(b, kCUDA));
            Tensor xcl = leaf(xc), xgl = leaf(xg);
            auto run = [&](const Tensor& x, const Tensor& rmean, const Tensor& rvar, const Tensor& wt, const Tensor& bt) {
              return relu ? batch_norm_relu(x, rmean, rvar, affine ? wt : Tensor(), affine ? bt : Tensor(), training)
                          : batch_norm(x, rmean, rvar, affine ? wt : Tensor(), affine ? bt : Tensor(), training);
            };
            const Tensor yc = run(xcl, rmc, rvc, wc, bc_), yg = run(xgl, rmg, rvg, wg, bg);
            const double tol = norm_tol(dt);
            check_cuda_same(yg, yc, tol, what + " y");
            REQUIRE(yg.is_contiguous() == yc.is_contiguous());  // y keeps x's layout on both
            check_cuda_same(rmg, rmc, norm_tol(pt), what + " running_mean");
            check_cuda_same(rvg, rvc, norm_tol(pt), what + " running_var");
            if (relu) {  // the fused ReLU really clips (a test that can fail)
              REQUIRE(th::values(to(yg, kCPU)).size() > 0);
              for (double v : th::values(to(yg, kCPU))) REQUIRE(v >= 0);
            }
            const Tensor dout = th::random(bc.shape, dt);
            yc.backward(dout);
            yg.backward(to(dout, kCUDA));
            // dx sums over N values with cancellation: a little more room than y
            check_cuda_same(xgl.grad(), xcl.grad(), 4 * tol, what + " dx");
            if (affine) {
              check_cuda_same(wg.grad(), wc.grad(), 4 * tol, what + " dweight");
              check_cuda_same(bg.grad(), bc_.grad(), 4 * tol, what + " dbias");
            }
          }
}

TEST_CASE("cuda batch_norm matches a plain loop and keeps NaN through the fused ReLU", "[cuda][norm]") {
  // x [2, 2, 2]: channel 0 = {1, 2, 3, 4}, channel 1 = {-1, -1, 1, 1}; training, no params
  const Tensor x = to(th::make({1, 2, -1, -1, 3, 4, 1, 1}, {2, 2, 2}), kCUDA);
  const Tensor y = batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 0.0);
  // channel 0: mean 2.5, var 1.25; channel 1: mean 0, var 1
  const double s = 1 / std::sqrt(1.25);
  th::check_close(to(y, kCPU), th::make({-1.5 * s, -0.5 * s, -1, -1, 0.5 * s, 1.5 * s, 1, 1}, {2, 2, 2}), 1e-6, 1e-6,
                  "batch_norm by hand");
  const Tensor xn = to(th::make({NAN, 1, -1, 2}, {4, 1}), kCUDA);
  const Tensor rm = to(th::make({0}, {1}), kCUDA), rv = to(th::make({1}, {1}), kCUDA);
  const std::vector<double> yn = th::values(to(batch_norm_relu(xn, rm, rv, Tensor(), Tensor(), false, 0.1, 0.0), kCPU));
  REQUIRE(std::isnan(yn[0]));
  REQUIRE(yn[1] == 1);
  REQUIRE(yn[2] == 0);
  REQUIRE(yn[3] == 2);
}

TEST_CASE("cuda batch_norm errors name the op", "[cuda][norm]") {
  const Tensor x = zeros({4, 3, 2}, {.device = kCUDA});
  th::check_throws([&] { (void)batch_norm(x, Tensor(), Tensor(), ones({3}), Tensor(), true); },
                   {"batch_norm", "on one device"});
  th::check_throws([&] { (void)batch_norm_relu(x, Tensor(), Tensor(), Tensor(), Tensor(), false); },
                   {"batch_norm_relu", "running statistics"});
}

// ---------------------------------------------------------------- layer norm

TEST_CASE("cuda layer_norm equals the cpu's, forward and gradients", "[cuda][norm]") {
  struct Case {
    Shape x, norm;
    int64_t splits = 1;  // row chunks of dw, db (1: one pass over the rows)
  };
  const std::vector<Case> cases = {{{6, 10}, {10}},     {{2, 3, 4, 5}, {4, 5}}, {{3, 700}, {700}},
                                   {{5, 1}, {1}},       {{2, 40}, {40}},        {{600, 16}, {16}, 2},
                                   {{2, 1000, 24}, {24}, 7}};  // rows of 16+: not near-degenerate (tiny var)
  for (const DType dt : kFloat)
    for (const Case& c : cases)
      for (const bool affine : {true, false}) {
        const std::string what = std::string("layer_norm ") + std::string(dtype_name(dt)) + (affine ? " affine" : "") +
                                 " N " + std::to_string(numel(c.norm));
        REQUIRE(cuda::layer_norm_splits(numel(c.x) / numel(c.norm), numel(c.norm)) == c.splits);
        auto [xc, xg] = make_xs(c.x, dt, false, -1, 3);
        const DType pt = dt == DType::f64 ? DType::f64 : DType::f32;
        const Tensor w = th::random(c.norm, pt, false, 0.5, 1.5), b = th::random(c.norm, pt);
        Tensor xcl = leaf(xc), xgl = leaf(xg), wc = leaf(w), bc = leaf(b), wg = leaf(to(w, kCUDA)), bg = leaf(to(b, kCUDA));
        const Tensor yc = layer_norm(xcl, c.norm, affine ? wc : Tensor(), affine ? bc : Tensor());
        const Tensor yg = layer_norm(xgl, c.norm, affine ? wg : Tensor(), affine ? bg : Tensor());
        const double tol = norm_tol(dt);
        check_cuda_same(yg, yc, tol, what + " y");
        const Tensor dout = th::random(c.x, dt);
        yc.backward(dout);
        yg.backward(to(dout, kCUDA));
        check_cuda_same(xgl.grad(), xcl.grad(), 4 * tol, what + " dx");
        if (affine) {
          check_cuda_same(wg.grad(), wc.grad(), 4 * tol, what + " dweight");
          check_cuda_same(bg.grad(), bc.grad(), 4 * tol, what + " dbias");
        }
      }
  // a non-contiguous x (a transposed view) is made contiguous first, on both devices
  const Tensor base = th::random({12, 6}, DType::f32);
  check_cuda_same(layer_norm(transpose(to(base, kCUDA), 0, 1), {12}), layer_norm(transpose(base, 0, 1), {12}),
                  norm_tol(DType::f32), "layer_norm of a transposed x");
}

// ---------------------------------------------------------------- pools

using Pair = std::array<int64_t, 2>;

/// Pool inputs: values with ties (multiples of 0.5) when `ties`, NCHW or channels-last.
inline std::pair<Tensor, Tensor> pool_input(const Shape& shape, DType dt, bool channels_last, bool ties) {
  Tensor c = ties ? div(randint(-6, 7, shape).to(DType::f64), 2.0) : th::random(shape, DType::f64, false, -3, 3);
  c = c.to(dt);
  Tensor g = to(c, kCUDA);
  if (channels_last) c = contiguous(c, MemoryFormat::channels_last), g = contiguous(g, MemoryFormat::channels_last);
  return {c, g};
}

/// Runs pool on x (cpu) and its cuda twin: y compared within fwd_tol (exact for 0), then the
/// backward of a random dout, dx compared exactly; y and dx keep the layout the cpu gives.
template <class F>
void check_pool(const Shape& shape, DType dt, bool channels_last, bool ties, F pool, double fwd_tol,
                const std::string& what) {
  auto [xc, xg] = pool_input(shape, dt, channels_last, ties);
  Tensor xcl = leaf(xc), xgl = leaf(xg);
  const Tensor yc = pool(xcl), yg = pool(xgl);
  check_cuda_same(yg, yc, fwd_tol, what + " y");
  REQUIRE(yg.is_contiguous() == yc.is_contiguous());
  REQUIRE(yg.is_contiguous(MemoryFormat::channels_last) == yc.is_contiguous(MemoryFormat::channels_last));
  const Tensor dout = th::random(yc.shape(), dt);
  yc.backward(dout);
  yg.backward(to(dout, kCUDA));
  check_cuda_same(xgl.grad(), xcl.grad(), 0, what + " dx");
  REQUIRE(xgl.grad().is_contiguous() == xcl.grad().is_contiguous());
}

struct SlidingCase {
  Shape shape;
  Pair k, s, p, d;
  bool ceil;
};

const std::vector<SlidingCase> kSliding = {
    {{2, 3, 8, 8}, {2, 2}, {0, 0}, {0, 0}, {1, 1}, false},    // the 2x2 stride-2 pool
    {{2, 3, 9, 7}, {3, 3}, {2, 2}, {1, 1}, {1, 1}, false},    // overlapping, padded
    {{2, 3, 9, 7}, {3, 2}, {2, 3}, {1, 1}, {1, 1}, true},     // ceil_mode, uneven
    {{1, 4, 10, 11}, {3, 3}, {1, 1}, {0, 1}, {2, 2}, false},  // dilation (max only)
    {{3, 7, 6}, {2, 3}, {2, 2}, {1, 1}, {1, 1}, true},        // [C, H, W]
    {{2, 5, 5, 6}, {5, 6}, {1, 1}, {2, 3}, {1, 1}, false},    // whole-plane windows
};

TEST_CASE("cuda max_pool2d equals the cpu's: values, indices, gradients", "[cuda][pool]") {
  for (const DType dt : kFloat)
    for (const SlidingCase& c : kSliding)
      for (const bool cl : {false, true})
        for (const bool ties : {false, true}) {
          if (cl && c.shape.size() != 4) continue;
          const std::string what = std::string("max_pool2d ") + std::string(dtype_name(dt)) + (cl ? " channels-last" : "") +
                                   (ties ? " ties" : "") + " k " + std::to_string(c.k[0]) + "x" + std::to_string(c.k[1]) +
                                   " d " + std::to_string(c.d[0]) + (c.ceil ? " ceil" : "");
          check_pool(c.shape, dt, cl, ties, [&](const Tensor& x) { return max_pool2d(x, c.k, c.s, c.p, c.d, c.ceil); }, 0,
                     what);
          auto [xc, xg] = pool_input(c.shape, dt, cl, ties);
          const auto [yc, ic] = max_pool2d_with_indices(xc, c.k, c.s, c.p, c.d, c.ceil);
          const auto [yg, ig] = max_pool2d_with_indices(xg, c.k, c.s, c.p, c.d, c.ceil);
          check_cuda_same(yg, yc, 0, what + " with_indices y");
          check_cuda_same(ig, ic, 0, what + " indices");
        }
}

TEST_CASE("cuda avg_pool2d equals the cpu's: count_include_pad, ceil_mode, gradients", "[cuda][pool]") {
  for (const DType dt : kFloat)
    for (const SlidingCase& c : kSliding)
      for (const bool cl : {false, true})
        for (const bool include_pad : {true, false}) {
          if (c.d[0] != 1 || (cl && c.shape.size() != 4)) continue;
          const std::string what = std::string("avg_pool2d ") + std::string(dtype_name(dt)) + (cl ? " channels-last" : "") +
                                   (include_pad ? " count_include_pad" : "") + " k " + std::to_string(c.k[0]) + "x" +
                                   std::to_string(c.k[1]) + (c.ceil ? " ceil" : "");
          // f32/f64: the cpu sums rows of 16+ values in SIMD lanes (another order); 16-bit: exact
          const double tol = dt == DType::f32 ? 1e-6 : dt == DType::f64 ? 1e-14 : 0;
          check_pool(c.shape, dt, cl, false,
                     [&](const Tensor& x) { return avg_pool2d(x, c.k, c.s, c.p, c.ceil, include_pad); }, tol, what);
        }
}

TEST_CASE("cuda adaptive pools equal the cpu's", "[cuda][pool]") {
  const std::vector<std::pair<Shape, Pair>> cases = {
      {{2, 3, 7, 9}, {1, 1}}, {{2, 3, 7, 9}, {3, 5}}, {{2, 3, 5, 4}, {7, 6}}, {{4, 6, 6}, {2, 3}}, {{2, 40, 4, 4}, {1, 1}}};
  for (const DType dt : kFloat)
    for (const auto& [shape, out] : cases)
      for (const bool cl : {false, true}) {
        if (cl && shape.size() != 4) continue;
        const std::string what = std::string(dtype_name(dt)) + (cl ? " channels-last" : "") + " to " +
                                 std::to_string(out[0]) + "x" + std::to_string(out[1]);
        const double tol = dt == DType::f32 ? 1e-6 : dt == DType::f64 ? 1e-14 : 0;
        check_pool(shape, dt, cl, false, [&](const Tensor& x) { return adaptive_avg_pool2d(x, out); }, tol,
                   "adaptive_avg_pool2d " + what);
        check_pool(shape, dt, cl, true, [&](const Tensor& x) { return adaptive_max_pool2d(x, out); }, 0,
                   "adaptive_max_pool2d " + what);
      }
}

TEST_CASE("cuda pools match known answers and keep NaN", "[cuda][pool]") {
  // x [1, 1, 2, 4] = {1 5 2 2 / 3 -1 2 NaN}, 2x2 windows
  const Tensor x = to(th::make({1, 5, 2, 2, 3, -1, 2, NAN}, {1, 1, 2, 4}), kCUDA);
  const auto [y, idx] = max_pool2d_with_indices(x, {2, 2});
  const std::vector<double> yv = th::values(to(y, kCPU)), iv = th::values(to(idx, kCPU));
  REQUIRE(yv[0] == 5);
  REQUIRE(std::isnan(yv[1]));
  REQUIRE(iv == std::vector<double>{1, 7});
  const std::vector<double> yn = th::values(to(max_pool2d(x, {2, 2}), kCPU));  // no grad: no indices kept
  REQUIRE(yn[0] == 5);
  REQUIRE(std::isnan(yn[1]));
  const Tensor a = avg_pool2d(x, {2, 2}, {1, 1}, {1, 1}, false, false);  // padded corners: divide by 1 or 2
  const std::vector<double> av = th::values(to(a, kCPU));
  REQUIRE(av.size() == 15);
  REQUIRE(av[0] == 1);    // x[0][0] alone
  REQUIRE(av[1] == 3);    // (1 + 5) / 2
  REQUIRE(av[5] == 2);    // (1 + 3) / 2
  REQUIRE(av[6] == 2);    // (1 + 5 + 3 - 1) / 4
  REQUIRE(av[10] == 3);   // x[1][0] alone
}

TEST_CASE("cuda pool errors name the op", "[cuda][pool]") {
  const Tensor x = zeros({1, 2, 4, 4}, {.device = kCUDA});
  th::check_throws([&] { (void)max_pool2d(x, {3, 3}, {1, 1}, {2, 2}); }, {"max_pool2d", "padding"});
  const auto [y, idx] = max_pool2d_with_indices(x, {2, 2});
  th::check_throws([&] { (void)max_pool2d_bwd(y, to(idx, kCPU), x.shape(), DType::f32); },
                   {"max_pool2d_backward", "expected one device"});
}

}  // namespace test_cuda_normpool
