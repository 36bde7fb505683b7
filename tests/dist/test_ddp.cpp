// learn.to_distributed() (learn/callbacks/distributed.hpp) under mpirun -np 1, 2, 3.
//
// The known answer: with W equal shards and a mean-reduced loss, W ranks of bs items train exactly
// like one process on the global batches of bs * W items (items b * bs * W .. of the same shuffled
// order). Every rank trains the same f64 MLP with DDP (each starting from its own init, which the
// broadcast must replace by rank 0's) and, alone, a reference Learner on the global batches from
// rank 0's init; parameters, per-batch losses, the valid loss and accuracy (a 13-item validation set:
// padded shards, gathered) must agree, and the parameters of all ranks must be bit-identical.
// BatchNorm: without sync_bn the running stats are rank 0's (lr = 0); with sync_bn (SyncBatchNorm)
// the MLP with BatchNorm1d trains like one process (lr > 0). sync_batch_norm.hpp has the rest.
// The shard arithmetic (DataLoaderOptions::shard) is checked against a plain loop.
//
// On cuda ("[cuda]": every rank on the emulated cuda device with g++): the known answer above holds
// with every rank's Learner on cuda (against the one cpu process; replicas bit-identical; sync_bn with
// BatchNorm), and the collectives on cuda tensors of cuda_collectives.hpp run here too. They live
// in this file, not one of their own, to share its compile time (the cuda backend makes this the
// slowest file of strata_dist_tests).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>
#include <vector>

#include <strata/backend/cuda.hpp>
#include <strata/learn/callbacks/distributed.hpp>
#include <strata/learn/learner.hpp>
#include <strata/nn/activation.hpp>
#include <strata/nn/linear.hpp>
#include <strata/nn/norm.hpp>

#include "cuda_collectives.hpp"  // the collectives on cuda tensors (also in strata_dist_nccl_tests)
#include "sync_batch_norm.hpp"   // synchronized BatchNorm (the same compile)

namespace ddp_test {
using namespace strata;

constexpr int64_t kD = 5, kC = 3;

/// n items: x ~ N(0, 1) [n, kD] f64, y = argmax of x's first kC features (learnable).
std::shared_ptr<TensorDataset> dataset(int64_t n, uint64_t seed) {
  manual_seed(seed);
  Tensor x = randn({n, kD}, {.dtype = DType::f64});
  Tensor y = argmax(x.narrow(1, 0, kC).contiguous(), 1);
  return std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{y});
}

/// A small f64 MLP (with a BatchNorm1d when bn), initialized from seed.
nn::ModulePtr mlp(uint64_t seed, bool bn) {
  manual_seed(seed);
  nn::ModulePtr m = bn ? std::make_shared<nn::Sequential>(nn::Linear(kD, 8), nn::BatchNorm1d(8), nn::ReLU(),
                                                          nn::Linear(8, kC))
                       : std::make_shared<nn::Sequential>(nn::Linear(kD, 8), nn::ReLU(), nn::Linear(8, kC));
  m->to(DType::f64);
  return m;
}

/// A Learner on n_train / 13 items with batch size bs (shuffle seed 7), Adam, accuracy, no progress output.
std::unique_ptr<Learner> make_learner(nn::ModulePtr m, int64_t bs, int64_t n_train = 48) {
  auto dls = DataLoaders::from_dsets(dataset(n_train, 1), dataset(13, 2), {.bs = bs, .seed = 7});
  auto l = std::make_unique<Learner>(dls, m, nn::CrossEntropyLossFlat(), LearnerOptions{.metrics = {accuracy()}});
  l->remove_cb<ProgressCallback>();
  return l;
}

/// Every parameter (then every buffer, when with_buffers) flattened into one f64 vector.
Tensor flat_state(nn::Module& m, bool with_buffers = false) {
  NoGrad ng;
  std::vector<Tensor> parts;
  for (Tensor& p : m.parameters()) parts.push_back(p.detach().to(kCPU).contiguous().reshape({-1}).to(DType::f64));
  if (with_buffers)
    for (Tensor& b : m.buffers())
      if (b.is_floating_point()) parts.push_back(b.to(kCPU).contiguous().reshape({-1}).to(DType::f64));
  return cat(parts, 0).contiguous();
}

double max_abs_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.numel() == b.numel());
  const double* p = a.contiguous().data_ptr<double>();
  const double* q = b.contiguous().data_ptr<double>();
  double d = 0;
  for (int64_t i = 0; i < a.numel(); ++i) d = std::max(d, std::abs(p[i] - q[i]));
  return d;
}

/// Largest difference between any rank's v and rank 0's (0 when bit-identical).
double spread_over_ranks(const Tensor& v) {
  Tensor all = dist::group().all_gather(v.contiguous());  // [W, n]
  double d = 0;
  for (int64_t r = 1; r < all.size(0); ++r) d = std::max(d, max_abs_diff(all.select(0, r), all.select(0, 0)));
  return d;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

TEST_CASE("ddp: shards pad by repeating the order's start (or cut with drop_last), every rank the same batches",
          "[ddp]") {
  const int64_t bs = 3;
  for (int64_t n : {10, 12})
    for (bool shuffle : {false, true})
      for (bool drop_last : {false, true})
        for (int W : {1, 2, 3, 4}) {
          auto ids = std::make_shared<TensorDataset>(std::vector<Tensor>{arange(double(n), {.dtype = DType::i64})},
                                                     std::vector<Tensor>{});
          DataLoader whole(ids, {.bs = n, .shuffle = shuffle, .seed = 5});
          const Tensor order_t = whole.one_batch().xb[0];
          std::vector<int64_t> order(order_t.data_ptr<int64_t>(), order_t.data_ptr<int64_t>() + n);
          const int64_t m = drop_last ? n / W : (n + W - 1) / W;  // items per rank
          const int64_t kept = drop_last ? m / bs * bs : m;       // after DataLoader's drop_last
          for (int r = 0; r < W; ++r) {
            DataLoader dl(ids, {.bs = bs, .shuffle = shuffle, .drop_last = drop_last, .seed = 5,
                                .shard = {.rank = r, .world = W}});
            CHECK(dl.size() == (drop_last ? m / bs : (m + bs - 1) / bs));
            std::vector<int64_t> got;
            for (Batch& b : dl)
              for (int64_t i = 0; i < b.xb[0].numel(); ++i) got.push_back(b.xb[0].data_ptr<int64_t>()[i]);
            std::vector<int64_t> want;
            for (int64_t i = 0; i < kept; ++i) want.push_back(order[size_t((r + i * W) % n)]);
            INFO("n " << n << " shuffle " << shuffle << " drop_last " << drop_last << " W " << W << " rank " << r);
            CHECK(got == want);
          }
        }
  auto ids = std::make_shared<TensorDataset>(std::vector<Tensor>{arange(4.0)}, std::vector<Tensor>{});
  CHECK_THROWS_WITH(DataLoader(ids, {.shard = {.rank = 2, .world = 2}}),
                    Catch::Contains("DataLoader") && Catch::Contains("expected 0 <= rank < world"));
}

TEST_CASE("ddp: W ranks train like one process on the global batch (f64 MLP, Adam), replicas bit-identical",
          "[ddp]") {
  auto& pg = dist::group();
  const int W = pg.world_size(), rank = pg.rank();
  const int64_t bs = 4;
  // each rank starts from its own init: the broadcast at before_fit must replace it by rank 0's
  auto ddp = make_learner(mlp(100 + uint64_t(rank), false), bs);
  std::ostringstream log;
  ddp->add_cb(std::make_shared<ProgressCallback>(log));
  ddp->to_distributed({.bucket_mb = 1e-4});  // ~100 bytes: about a bucket per parameter
  auto trainer = ddp->get_cb<DistributedTrainer>();
  REQUIRE(trainer != nullptr);
  CHECK(ddp->rank == rank);
  CHECK(ddp->world_size == W);
  CHECK(ddp->is_main_process() == (rank == 0));
  ddp->fit(2, 1e-2);

  auto ref = make_learner(mlp(100, false), bs * W);  // rank 0's init, the global batches, one process
  ref->fit(2, 1e-2);

  CHECK(trainer->n_buckets() >= 3);
  CHECK(trainer->steps == 2 * 48 / (bs * W));
  CHECK(ddp->dls.train.options().shard.world == 1);  // put back after the fit
  CHECK(ddp->dls.valid.options().shard.world == 1);
  const Tensor mine = flat_state(*ddp->model);
  const double spread = spread_over_ranks(mine);
  const double diff = max_abs_diff(mine, flat_state(*ref->model));
  const double loss_diff = max_abs_diff(ddp->recorder().losses, ref->recorder().losses);
  REQUIRE(ddp->recorder().values.size() == 2);
  const double row_diff = max_abs_diff(ddp->recorder().values.back(), ref->recorder().values.back());
  if (rank == 0)
    std::printf("ddp np=%d: max |param - one process| = %.3g, spread over ranks = %.3g, batch losses %.3g, "
                "epoch row (train_loss, valid_loss, accuracy) %.3g; %zu buckets, %lld steps, wait share %.3f\n",
                W, diff, spread, loss_diff, row_diff, trainer->n_buckets(), (long long)trainer->steps,
                trainer->wait_share());
  CHECK(spread == 0);
  CHECK(diff < 1e-10);
  CHECK(loss_diff < 1e-12);
  CHECK(row_diff < 1e-12);  // valid loss and accuracy over all 13 items, gathered from padded shards
  CHECK(ddp->recorder().values.back()[2] == ref->recorder().values.back()[2]);  // accuracy: counts
  // only rank 0 prints the table
  CHECK(log.str().empty() == (rank != 0));
  if (rank == 0) CHECK(log.str().find("valid_loss") != std::string::npos);
  // validate() outside a fit: every rank on the whole set, the same answer as one process
  const std::vector<double> v = ddp->validate(), vr = ref->validate();
  CHECK(max_abs_diff(v, vr) < 1e-10);
  // ...and no collective: rank 0 alone may call it (before, it broadcast and waited at a barrier,
  // then the group timed out and broke); the group still works for everyone after
  if (rank == 0) CHECK(max_abs_diff(ddp->validate(), vr) < 1e-10);
  const int64_t before = dist::group().collectives_started();
  dist::group().barrier();
  CHECK(dist::group().collectives_started() == before + 1);
}

TEST_CASE("ddp: an epoch that does not split evenly still gives every rank the same steps", "[ddp]") {
  auto& pg = dist::group();
  const int W = pg.world_size();
  auto ddp = make_learner(mlp(200 + uint64_t(pg.rank()), false), 4, 50);
  ddp->to_distributed({.bucket_mb = 1e-4});
  ddp->fit(1, 1e-2);
  auto trainer = ddp->get_cb<DistributedTrainer>();
  const int64_t per_rank = (50 + W - 1) / W;
  CHECK(trainer->steps == (per_rank + 3) / 4);
  Tensor steps = Tensor::empty({1}, DType::i64);
  steps.data_ptr<int64_t>()[0] = trainer->steps;
  CHECK(spread_over_ranks(steps.to(DType::f64)) == 0);
  CHECK(spread_over_ranks(flat_state(*ddp->model)) == 0);
}

TEST_CASE("ddp: BatchNorm running stats are rank 0's, or with sync_bn one process's (lr > 0: also the weights)",
          "[ddp]") {
  auto& pg = dist::group();
  const int W = pg.world_size(), rank = pg.rank();
  auto running_mean = [](nn::Module& m) { return m.named_buffers()[0].second.contiguous(); };
  for (bool sync : {false, true}) {
    const double lr = sync ? 1e-2 : 0.0;
    auto ref = make_learner(mlp(300, true), 4 * W);
    ref->fit(1, lr);
    REQUIRE(ref->model->named_buffers()[0].first == "1.running_mean");
    auto ddp = make_learner(mlp(300 + uint64_t(rank), true), 4);
    ddp->to_distributed({.bucket_mb = 1e-4, .sync_bn = sync});
    ddp->fit(1, lr);
    const Tensor state = flat_state(*ddp->model, true);
    CHECK(spread_over_ranks(state) == 0);
    const double d = max_abs_diff(running_mean(*ddp->model), running_mean(*ref->model));
    const double all = max_abs_diff(state, flat_state(*ref->model, true));
    if (rank == 0)
      std::printf("ddp np=%d: sync_bn=%d lr=%g, vs one process: running_mean %.3g, params and buffers %.3g\n", W,
                  int(sync), lr, d, all);
    if (sync || W == 1) CHECK(all < 5e-12);  // the composite vs the fused kernel, drifting through 12 Adam steps
    else CHECK(d > 1e-6);  // rank 0's statistics of its own shard, not the global batch's
  }
}

TEST_CASE("ddp: buckets start all-reducing while backward still runs", "[ddp]") {
  auto& pg = dist::group();
  auto model = mlp(500, false);
  auto& seq = dynamic_cast<nn::Sequential&>(*model);
  int64_t at_backward = -1, at_first_layer = -1;
  // the first layer's output gradient arrives after the last layer's parameter gradients are
  // complete and before the first layer's backward runs
  seq.layers[0]->register_forward_hook([&](nn::Module&, const Tensor&, Tensor& out) {
    if (out.requires_grad())
      out.register_hook([&](const Tensor&) {
        at_first_layer = pg.collectives_started();
        return Tensor();
      });
  });
  struct Probe : Callback {
    int64_t* at = nullptr;
    Probe() { order = 7; }  // after the trainer (5) armed its buckets
    void before_backward() override { *at = dist::group().collectives_started(); }
  };
  auto probe = std::make_shared<Probe>();
  probe->at = &at_backward;
  auto l = make_learner(model, 4, 8);
  l->to_distributed({.bucket_mb = 1e-6});  // every parameter its own bucket
  l->add_cb(probe);
  l->fit(1, 1e-2);
  REQUIRE(l->get_cb<DistributedTrainer>()->n_buckets() == 4);
  // layer 2's bias and weight buckets (the first two, in reverse parameter order) have started
  CHECK(at_first_layer - at_backward == 2);
}

// ---- cuda: data-parallel training ------------------------------------------------------------

TEST_CASE("dist cuda: rank_device puts a cuda:0 Learner on cuda(local_rank % devices), keeps others",
          "[dist][cuda]") {
  CHECK(rank_device(kCUDA, 3, 2) == Device::cuda(1));
  CHECK(rank_device(kCUDA, 5, 8) == Device::cuda(5));
  CHECK(rank_device(kCUDA, 0, 4) == Device::cuda(0));
  CHECK(rank_device(Device::cuda(2), 1, 4) == Device::cuda(2));  // chosen by the user
  CHECK(rank_device(kCPU, 1, 4) == kCPU);
  CHECK(rank_device(kCUDA, 1, 0) == kCUDA);  // no device found: left as it is
}

TEST_CASE("dist cuda: W ranks on cuda train like one process on the global batch (f64 MLP, Adam)",
          "[dist][cuda][ddp]") {
  auto& pg = dist::group();
  const int W = pg.world_size(), rank = pg.rank();
  const int64_t bs = 4;
  auto ddp = make_learner(mlp(100 + uint64_t(rank), false), bs);  // each rank its own init
  ddp->to(kCUDA);
  ddp->to_distributed({.bucket_mb = 1e-4});  // about a bucket per parameter
  CHECK(ddp->device == Device::cuda(pg.local_rank() % cuda::device_count()));
  ddp->fit(2, 1e-2);
  for (Tensor& p : ddp->model->parameters()) CHECK(p.device().is_cuda());
  auto trainer = ddp->get_cb<DistributedTrainer>();
  REQUIRE(trainer != nullptr);

  auto ref = make_learner(mlp(100, false), bs * W);  // rank 0's init, the global batches, one cpu process
  ref->fit(2, 1e-2);

  CHECK(trainer->steps == 2 * 48 / (bs * W));
  const Tensor mine = flat_state(*ddp->model);
  const double spread = spread_over_ranks(mine);
  const double diff = max_abs_diff(mine, flat_state(*ref->model));
  const double loss_diff = max_abs_diff(ddp->recorder().losses, ref->recorder().losses);
  REQUIRE(ddp->recorder().values.size() == 2);
  const double row_diff = max_abs_diff(ddp->recorder().values.back(), ref->recorder().values.back());
  if (rank == 0)
    std::printf("ddp cuda np=%d: max |param - one cpu process| = %.3g, spread over ranks = %.3g, batch losses "
                "%.3g, epoch row %.3g; %zu buckets, %lld steps\n",
                W, diff, spread, loss_diff, row_diff, trainer->n_buckets(), (long long)trainer->steps);
  CHECK(spread == 0);
  CHECK(diff < 1e-10);
  CHECK(loss_diff < 1e-12);
  CHECK(row_diff < 1e-12);  // valid loss and accuracy over all 13 items, gathered on cuda from padded shards
  CHECK(ddp->recorder().values.back()[2] == ref->recorder().values.back()[2]);
}

TEST_CASE("dist cuda: learn.to(kCUDA) after to_distributed; with sync_bn BatchNorm trains like one process",
          "[dist][cuda][ddp]") {
  auto& pg = dist::group();
  const int W = pg.world_size(), rank = pg.rank();
  auto ref = make_learner(mlp(300, true), 4 * W);
  ref->fit(1, 1e-2);
  auto ddp = make_learner(mlp(300 + uint64_t(rank), true), 4);
  ddp->to_distributed({.sync_bn = true});
  ddp->to(kCUDA);  // the trainer places it at before_fit
  ddp->fit(1, 1e-2);
  CHECK(ddp->device.is_cuda());
  const Tensor state = flat_state(*ddp->model, true);
  CHECK(spread_over_ranks(state) == 0);
  CHECK(ddp->model->named_buffers()[0].second.device().is_cuda());
  const double d = max_abs_diff(state, flat_state(*ref->model, true));
  if (rank == 0) std::printf("ddp cuda np=%d: sync_bn, params and buffers vs one process: %.3g\n", W, d);
  CHECK(d < 5e-12);  // as above
}

}  // namespace ddp_test
