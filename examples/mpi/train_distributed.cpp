// train_distributed: the flagship (example 01's ResNet and fit_one_cycle on Fashion-MNIST) trained
// data-parallel over the processes of an MPI job with learn.to_distributed(). Every rank runs this
// same program on its shard of each epoch; gradients are averaged by bucketed all-reduces that overlap
// the backward pass; rank 0 prints.
//
//   mpirun --allow-run-as-root -np 2 -x STRATA_NUM_THREADS=1 ./example_train_distributed
//   mpirun ... --quick          a few seconds on a subset (CI): asserts the loss falls, accuracy > 70%,
//                               and the ranks' weights are identical
//   options: --epochs N  --lr X  --bs N (global batch: bs / world_size per rank)  --bucket-mb X
//            --n-train N  --n-valid N (subsets; 0: all)  --timeout S (collectives; default 120)
//            --bf16  --channels-last  --target X  --out DIR
//            --sync-bn (SyncBatchNorm: BatchNorm normalizes with the global batch, as one process would)
// Prints, on rank 0: the epoch table, images/s over all ranks (training phases only) and the share of
// step time spent blocked waiting for all-reduces (what the overlap did not hide).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>

#include <strata/strata.hpp>
#include <strata/learn/callbacks/distributed.hpp>

using namespace strata;

struct Args {
  int epochs = 5, bs = 128;
  int64_t n_train = 0, n_valid = 0;  // 0: all (--quick: 6144 and 2000)
  double lr = 1e-2, target = 0.925, bucket_mb = 1, timeout_s = 120;
  bool quick = false, bf16 = false, channels_last = false, sync_bn = false;
  std::string out = ".";
};

/// Example 01's ResNet: a stem conv, three stride-2 ResBlocks (28 -> 14 -> 7 -> 4), pool, linear.
nn::ModulePtr fashion_resnet() {
  auto model = std::make_shared<nn::Sequential>(
      nn::ConvLayer({.in = 1, .out = 16}), nn::ResBlock(1, 16, 32, 2), nn::ResBlock(1, 32, 64, 2),
      nn::ResBlock(1, 64, 128, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(128, 10));
  nn::init_cnn(*model);
  return model;
}

int run(const Args& a) {
  dist::ProcessGroup& pg = dist::init_process_group({.timeout_s = a.timeout_s});  // a lost rank: an error, no hang
  const int W = pg.world_size();
  STRATA_CHECK(a.bs % W == 0, "train_distributed", "got --bs ", a.bs, " and ", W, " ranks, expected bs % ranks == 0");
  manual_seed(42);  // the same init everywhere (to_distributed broadcasts rank 0's anyway)
  auto dls = fashion_mnist({.bs = a.bs / W, .n_train = a.n_train, .n_valid = a.n_valid});
  Learner learn(dls, fashion_resnet(), nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}, .path = a.out});
  learn.to_distributed({.bucket_mb = a.bucket_mb, .sync_bn = a.sync_bn});
  if (a.bf16) learn.to_bf16();
  if (a.channels_last) learn.to_channelslast();
  auto tta = std::make_shared<TimeToAccuracy>(a.target);
  learn.add_cb(tta);
  learn.fit_one_cycle(a.epochs, a.lr);

  const auto ddp = learn.get_cb<DistributedTrainer>();
  const double images_per_s = tta->items_per_s() * W;  // every rank trains its own items at the same pace
  learn.recorder().plot_loss(a.out + "/distributed_loss.png");  // rank 0 only
  if (learn.is_main_process()) {
    std::printf("DAWNBench | Fashion-MNIST %lld test images | %d processes x %d threads | %s\n",
                (long long)dls.valid.n(), W, num_threads(), tta->summary().c_str());
    std::printf("distributed: %.1f images/s over %d ranks (global batch %d), all-reduce wait %.1f%% of step time "
                "(%.3f s of %.3f s over %lld steps, %zu buckets)\n",
                images_per_s, W, a.bs, 100 * ddp->wait_share(), ddp->wait_s, ddp->step_s, (long long)ddp->steps,
                ddp->n_buckets());
  }
  // the replicas must be identical: every rank's weights against rank 0's
  std::vector<Tensor> flat;
  for (Tensor& p : learn.model->parameters()) flat.push_back(p.detach().contiguous().reshape({-1}));
  const Tensor mine = cat(flat, 0).contiguous();
  const Tensor all = pg.all_gather(mine);
  double spread = 0;
  for (int r = 1; r < W; ++r) spread = std::max(spread, (all.select(0, r) - all.select(0, 0)).abs().max().to(DType::f64).item<double>());
  STRATA_CHECK(spread == 0, "train_distributed", "got weights that differ between ranks by ", spread,
               ", expected identical replicas");
  if (!a.quick) return tta->final_value >= a.target ? 0 : 1;
  const auto& losses = learn.recorder().smooth_losses;
  STRATA_CHECK(losses.size() > 10 && losses.back() < 0.6 * losses[5], "train_distributed", "got smoothed loss ",
               losses[5], " -> ", losses.back(), ", expected it to fall by 40%");
  STRATA_CHECK(tta->final_value >= 0.70, "train_distributed", "got accuracy ", tta->final_value,
               ", expected >= 0.70 after the quick run");
  if (learn.is_main_process())
    std::printf("quick checks passed: loss %.3f -> %.3f, accuracy %.4f, replicas identical on %d ranks\n", losses[5],
                losses.back(), tta->final_value, W);
  return 0;
}

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    auto next = [&] { return i + 1 < argc ? argv[++i] : (std::fprintf(stderr, "%s needs a value\n", argv[i]), "0"); };
    if (!std::strcmp(argv[i], "--quick")) a.quick = true, a.epochs = 1, a.n_train = 6144, a.n_valid = 2000;
    else if (!std::strcmp(argv[i], "--n-train")) a.n_train = std::atoll(next());
    else if (!std::strcmp(argv[i], "--n-valid")) a.n_valid = std::atoll(next());
    else if (!std::strcmp(argv[i], "--bf16")) a.bf16 = true;
    else if (!std::strcmp(argv[i], "--channels-last")) a.channels_last = true;
    else if (!std::strcmp(argv[i], "--sync-bn")) a.sync_bn = true;
    else if (!std::strcmp(argv[i], "--epochs")) a.epochs = std::atoi(next());
    else if (!std::strcmp(argv[i], "--bs")) a.bs = std::atoi(next());
    else if (!std::strcmp(argv[i], "--lr")) a.lr = std::atof(next());
    else if (!std::strcmp(argv[i], "--bucket-mb")) a.bucket_mb = std::atof(next());
    else if (!std::strcmp(argv[i], "--target")) a.target = std::atof(next());
    else if (!std::strcmp(argv[i], "--timeout")) a.timeout_s = std::atof(next());
    else if (!std::strcmp(argv[i], "--out")) a.out = next();
    else return std::fprintf(stderr, "unknown option %s (see the top of train_distributed.cpp)\n", argv[i]), 2;
  }
  std::filesystem::create_directories(a.out);
  try {
    return run(a);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
