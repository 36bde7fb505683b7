// Tests of synchronized BatchNorm (nn/norm.hpp's BatchNormBase::sync, dist/sync_batch_norm.hpp), included
// by test_ddp.cpp (strata_dist_tests under mpirun -np 1, 2, 3; not a TU of its own, to share its compile).
//
// - One process: the composite sync path with a one-process sum (LocalSync) equals tensor/norm.hpp's fused
//   batch_norm / batch_norm_relu: y, dx, dweight, dbias, running stats and num_batches_tracked, for NCHW,
//   channels-last, BatchNorm1d [B, C] and [B, C, L], f64 tight, f32 and bf16 within a few epsilons.
// - gradcheck (f64) through the real all-reduce: every rank the same x, perturbed in lockstep. By symmetry
//   the finite difference of rank r's output then equals the sum over ranks of the gradients (what the
//   all-reduce's backward gives), so a missing backward all-reduce fails at np >= 2 (checked: NoBackwardSync).
// - The global batch: rank r takes rows of a global x (uneven: 2 + r rows), cpu and emulated cuda; y, dx
//   and the running stats equal the fused op on the whole x, the ranks' dweight and dbias sum to its.
// - Training (to_distributed({.sync_bn = true}), lr > 0): a conv-BN-ReLU-pool-linear CNN (f64) trains like
//   one process on the global batches (parameters and running stats), on the cpu and on emulated cuda.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <vector>

#include <strata/autograd/gradcheck.hpp>
#include <strata/dist.hpp>
#include <strata/learn/callbacks/distributed.hpp>
#include <strata/learn/learner.hpp>
#include <strata/nn/activation.hpp>
#include <strata/nn/conv.hpp>
#include <strata/nn/flatten.hpp>
#include <strata/nn/linear.hpp>
#include <strata/nn/norm.hpp>
#include <strata/nn/pooling.hpp>

namespace sync_bn_test {
using namespace strata;

/// The sum over one process: the sync path's math with no collective.
struct LocalSync : nn::BatchNormSync {
  Tensor all_reduce_sum(const Tensor& t) override { return mul(t, 1.0); }
};

/// The forward's all-reduce without the backward's: each rank's gradient stays its own (wrong for W > 1).
struct NoBackwardSync : nn::BatchNormSync {
  Tensor all_reduce_sum(const Tensor& t) override {
    return add(dist::all_reduce_sum(detach(t)), sub(t, detach(t)));
  }
};

/// Largest |a - b| (any device, dtype, layout).
double max_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return amax(abs(sub(a.detach().to(kCPU).to(DType::f64), b.detach().to(kCPU).to(DType::f64)))).item<double>();
}

/// A BatchNorm layer of `kind` ("2d" or "1d") on C channels with random weight, bias and running stats
/// (from seed), of dtype dt.
std::shared_ptr<nn::BatchNormBase> make_bn(const char* kind, int64_t C, DType dt, uint64_t seed,
                                           std::optional<double> momentum = 0.1) {
  std::shared_ptr<nn::BatchNormBase> bn;
  const nn::BatchNormOptions o{.momentum = momentum};
  if (kind[0] == '2') bn = std::make_shared<nn::BatchNorm2d>(C, o);
  else bn = std::make_shared<nn::BatchNorm1d>(C, o);
  Generator g(seed);
  NoGrad ng;
  bn->weight.copy_(add(randn({C}, {}, g), 1.0));
  bn->bias.copy_(randn({C}, {}, g));
  bn->running_mean.copy_(randn({C}, {}, g));
  bn->running_var.copy_(add(abs(randn({C}, {}, g)), 0.5));
  bn->to(dt);
  return bn;
}

/// One training step of bn on x (a leaf or a view of one) with upstream gradient dy: the output.
Tensor step(nn::BatchNormBase& bn, const Tensor& x, const Tensor& dy, bool relu) {
  bn.train();
  Tensor y = relu ? bn.forward_relu(x) : bn.forward(x);
  y.backward(dy);
  return y;
}

TEST_CASE("sync_bn: the composite path equals the fused batch_norm on one process (values, gradients, stats)",
          "[dist][sync_bn]") {
  struct Case {
    const char* kind;
    Shape shape;          // of x as the layer sees it
    bool channels_last;   // x a channels-last view of an [B, H, W, C] leaf
    DType dt;
    std::optional<double> momentum;
  };
  const std::vector<Case> cases = {
      {"2d", {4, 3, 5, 2}, false, DType::f64, 0.1},  {"2d", {3, 4, 3, 3}, true, DType::f64, 0.1},
      {"1d", {7, 5}, false, DType::f64, std::nullopt}, {"1d", {3, 2, 6}, false, DType::f64, 0.3},
      {"2d", {4, 3, 5, 2}, false, DType::f32, 0.1},  {"2d", {3, 4, 3, 3}, true, DType::f32, 0.1},
      {"2d", {4, 3, 5, 2}, false, DType::bf16, 0.1}};
  int seed = 0;
  for (const Case& c : cases)
    for (bool relu : {false, true}) {
      ++seed;
      const int64_t C = c.shape[1];
      auto plain = make_bn(c.kind, C, c.dt, uint64_t(seed), c.momentum);
      auto synced = make_bn(c.kind, C, c.dt, uint64_t(seed), c.momentum);
      synced->sync = std::make_shared<LocalSync>();
      manual_seed(uint64_t(100 + seed));
      Shape leaf_shape = c.shape;
      if (c.channels_last) leaf_shape = {c.shape[0], c.shape[2], c.shape[3], c.shape[1]};
      const Tensor x0 = mul(randn(leaf_shape, {.dtype = c.dt}), 2.0), dy0 = randn(c.shape, {.dtype = c.dt});
      Tensor xa = x0.clone().requires_grad_(), xb = x0.clone().requires_grad_();
      auto as_input = [&](const Tensor& leaf) { return c.channels_last ? leaf.permute({0, 3, 1, 2}) : leaf; };
      for (int it = 0; it < 2; ++it) {  // twice: the running stats' second update (cumulative with nullopt)
        const Tensor ya = step(*plain, as_input(xa), dy0, relu), yb = step(*synced, as_input(xb), dy0, relu);
        // bf16: both round the same float32 result to bf16, so a few ulps of values of up to ~4
        const double tol = c.dt == DType::f64 ? 1e-12 : c.dt == DType::f32 ? 2e-5 : 4 * 4 * 0.0078125;
        INFO("case " << c.kind << " " << c.shape << (c.channels_last ? " channels-last" : "") << " " << c.dt
                     << " relu " << relu << " step " << it);
        CHECK(yb.dtype() == c.dt);
        CHECK(max_diff(ya, yb) < tol);
        CHECK(max_diff(xa.grad(), xb.grad()) < tol);
        CHECK(max_diff(plain->weight.grad(), synced->weight.grad()) < tol * 10);  // sums of B*S terms
        CHECK(max_diff(plain->bias.grad(), synced->bias.grad()) < tol * 10);
        CHECK(max_diff(plain->running_mean, synced->running_mean) < tol);
        CHECK(max_diff(plain->running_var, synced->running_var) < tol);
        CHECK(synced->num_batches_tracked.item<int64_t>() == it + 1);
      }
      // eval: the running statistics, no sync
      plain->eval();
      synced->eval();
      CHECK(max_diff(plain->forward(as_input(x0)), synced->forward(as_input(x0))) < 1e-5);
    }
  // the global count is checked like the fused op's local one
  auto bn = make_bn("1d", 3, DType::f64, 1);
  bn->sync = std::make_shared<LocalSync>();
  CHECK_THROWS_WITH(bn->forward(randn({1, 3}, {.dtype = DType::f64})),
                    Catch::Contains("batch_norm") && Catch::Contains("expected more than 1 value per channel"));
}

TEST_CASE("sync_bn: gradcheck through the real all-reduce (every rank the same x, in lockstep)",
          "[dist][sync_bn]") {
  auto bn = make_bn("2d", 2, DType::f64, 7);
  dist::convert_sync_batchnorm(*bn);
  REQUIRE(bn->sync != nullptr);
  manual_seed(8);
  Tensor x = randn({3, 2, 2, 2}, {.dtype = DType::f64}).requires_grad_();
  Tensor w = bn->weight.detach().clone().requires_grad_(), b = bn->bias.detach().clone().requires_grad_();
  for (bool relu : {false, true}) {
    auto f = [&](const std::vector<Tensor>& in) {
      bn->weight = in[1];
      bn->bias = in[2];
      return relu ? bn->forward_relu(in[0]) : bn->forward(in[0]);
    };
    const GradcheckResult r = gradcheck(f, {x, w, b});
    INFO("relu " << relu << ": " << r.message);
    CHECK(r.ok);
  }
  // the check has teeth: without the backward's all-reduce it fails on 2 ranks or more
  bn->sync = std::make_shared<NoBackwardSync>();
  auto f = [&](const std::vector<Tensor>& in) {
    bn->weight = in[1];
    bn->bias = in[2];
    return bn->forward(in[0]);
  };
  CHECK(gradcheck(f, {x, w, b}).ok == (dist::group().world_size() == 1));
}

TEST_CASE("sync_bn: each rank's shard of a global batch (uneven) normalizes and differentiates as the whole",
          "[dist][sync_bn]") {
  auto& pg = dist::group();
  const int W = pg.world_size(), rank = pg.rank();
  int64_t G = 0, start = 0;  // rank r has 2 + r rows
  for (int r = 0; r < W; ++r) {
    if (r == rank) start = G;
    G += 2 + r;
  }
  const int64_t mine = 2 + rank;
  for (Device dev : {kCPU, kCUDA})
    for (const char* kind : {"2d", "1d"}) {
      const Shape shape = kind[0] == '2' ? Shape{G, 3, 2, 3} : Shape{G, 4};
      manual_seed(11);  // the same global x and dy on every rank
      const Tensor X = randn(shape, {.dtype = DType::f64}), DY = randn(shape, {.dtype = DType::f64});
      auto ref = make_bn(kind, shape[1], DType::f64, 3);
      Tensor Xl = X.clone().requires_grad_();
      const Tensor Y = step(*ref, Xl, DY, true);

      auto bn = make_bn(kind, shape[1], DType::f64, 3);
      bn->to(dev);
      CHECK(dist::convert_sync_batchnorm(*bn) == 1);
      Tensor x = X.narrow(0, start, mine).to(dev).requires_grad_();
      const Tensor y = step(*bn, x, DY.narrow(0, start, mine).to(dev), true);
      // the ranks' dweight and dbias: parts of the whole batch's sums
      Tensor dw = bn->weight.grad().to(kCPU).contiguous(), db = bn->bias.grad().to(kCPU).contiguous();
      pg.all_reduce(dw);
      pg.all_reduce(db);
      const double dy_diff = max_diff(y, Y.narrow(0, start, mine)),
                   dx_diff = max_diff(x.grad(), Xl.grad().narrow(0, start, mine));
      const double dp_diff = std::max(max_diff(dw, ref->weight.grad()), max_diff(db, ref->bias.grad()));
      const double stat_diff =
          std::max(max_diff(bn->running_mean, ref->running_mean), max_diff(bn->running_var, ref->running_var));
      if (rank == 0)
        std::printf("sync_bn np=%d %s %s: shard vs whole batch: y %.3g, dx %.3g, dweight/dbias %.3g, running %.3g\n",
                    W, dev.is_cuda() ? "cuda" : "cpu", kind, dy_diff, dx_diff, dp_diff, stat_diff);
      INFO(kind << " on " << dev);
      CHECK(y.device() == dev);
      CHECK(dy_diff < 1e-12);
      CHECK(dx_diff < 1e-12);
      CHECK(dp_diff < 1e-12);
      CHECK(stat_diff < 1e-12);
      CHECK(dist::revert_sync_batchnorm(*bn) == 1);
      CHECK(bn->sync == nullptr);
    }
}

// ---- training: W ranks with sync_bn == one process on the global batch ----------------------------

/// n images [n, 1, 6, 6] f64 ~ N(0, 1); label = argmax of the first row's first 3 pixels.
std::shared_ptr<TensorDataset> images(int64_t n, uint64_t seed) {
  manual_seed(seed);
  Tensor x = randn({n, 1, 6, 6}, {.dtype = DType::f64});
  Tensor y = argmax(x.select(1, 0).select(1, 0).narrow(1, 0, 3).contiguous(), 1);
  return std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{y});
}

/// conv-BN-ReLU-pool-linear (f64), initialized from seed.
nn::ModulePtr cnn(uint64_t seed) {
  manual_seed(seed);
  nn::ModulePtr m = std::make_shared<nn::Sequential>(nn::Conv2d({.in = 1, .out = 4, .k = 3, .pad = 1}),
                                                     nn::BatchNorm2d(4), nn::ReLU(), nn::MaxPool2d(2), nn::Flatten(),
                                                     nn::Linear(4 * 3 * 3, 3));
  m->to(DType::f64);
  return m;
}

std::unique_ptr<Learner> cnn_learner(nn::ModulePtr m, int64_t bs) {
  auto dls = DataLoaders::from_dsets(images(48, 21), images(13, 22), {.bs = bs, .seed = 7});
  auto l = std::make_unique<Learner>(dls, m, nn::CrossEntropyLossFlat());
  l->remove_cb<ProgressCallback>();
  return l;
}

/// Parameters then float buffers, flattened to one f64 cpu vector.
Tensor cnn_state(nn::Module& m) {
  NoGrad ng;
  std::vector<Tensor> parts;
  for (Tensor& p : m.parameters()) parts.push_back(p.detach().to(kCPU).contiguous().reshape({-1}).to(DType::f64));
  for (Tensor& b : m.buffers())
    if (b.is_floating_point()) parts.push_back(b.to(kCPU).contiguous().reshape({-1}).to(DType::f64));
  return cat(parts, 0).contiguous();
}

TEST_CASE("sync_bn: W ranks train a CNN with BatchNorm like one process on the global batch (lr > 0)",
          "[dist][sync_bn][ddp]") {
  auto& pg = dist::group();
  const int W = pg.world_size(), rank = pg.rank();
  const int64_t bs = 4;
  auto ref = cnn_learner(cnn(600), bs * W);  // rank 0's init, one process, plain BatchNorm
  ref->fit(1, 1e-2);
  const Tensor want = cnn_state(*ref->model);
  for (Device dev : {kCPU, kCUDA}) {
    auto ddp = cnn_learner(cnn(600 + uint64_t(rank)), bs);  // each rank its own init
    if (dev.is_cuda()) ddp->to(kCUDA);
    ddp->to_distributed({.bucket_mb = 1e-4, .sync_bn = true});
    ddp->fit(1, 1e-2);
    auto& bn = dynamic_cast<nn::BatchNormBase&>(*dynamic_cast<nn::Sequential&>(*ddp->model).layers[1]);
    CHECK(bn.sync == nullptr);  // the trainer's hook is off after the fit
    CHECK(bn.num_batches_tracked.to(kCPU).item<int64_t>() == 48 / (bs * W));
    const Tensor got = cnn_state(*ddp->model);
    Tensor all = pg.all_gather(got);
    double spread = 0;
    for (int r = 1; r < W; ++r) spread = std::max(spread, max_diff(all.select(0, r), all.select(0, 0)));
    const double diff = max_diff(got, want);
    const std::vector<double>&la = ddp->recorder().losses, &lb = ref->recorder().losses;
    REQUIRE(la.size() == lb.size());
    double loss_diff = 0;
    for (size_t i = 0; i < la.size(); ++i) loss_diff = std::max(loss_diff, std::abs(la[i] - lb[i]));
    if (rank == 0)
      std::printf("sync_bn np=%d %s: CNN, max |param or running stat - one process| = %.3g, spread over ranks = "
                  "%.3g, batch losses %.3g\n",
                  W, dev.is_cuda() ? "cuda" : "cpu", diff, spread, loss_diff);
    INFO("on " << dev);
    CHECK(spread == 0);
    CHECK(diff < 5e-12);  // 1.4e-13 - 6.3e-13 seen: the composite vs the fused kernel, through Adam's steps
    CHECK(loss_diff < 1e-12);
  }
}

}  // namespace sync_bn_test
