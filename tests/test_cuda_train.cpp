// Training on cuda end to end (the emulator under g++): the flagship's kind of CNN (ConvLayer,
// ResBlock, AdaptiveAvgPool2d, Flatten, Linear; conv, batch norm, ReLU, pooling, the fused cross
// entropy, Adam) trains on real Fashion-MNIST images with learn.to(kCUDA), and its losses follow the
// cpu run of the same model, weights and batches step for step. The per-step losses of the two
// runs drift apart only by rounding (different summation orders in the reductions and GEMMs), so
// the tolerance grows a little per step; a wrong kernel anywhere shows up as a loss that differs
// in the first digits at once. Also: validation metrics and get_preds from a cuda Learner.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/data/show.hpp"

namespace test_cuda_train {

using namespace strata;

/// A small fashion_resnet (examples/01_fashion_mnist.cpp), seeded.
inline nn::ModulePtr small_resnet(uint64_t seed) {
  manual_seed(seed);
  auto model = std::make_shared<nn::Sequential>(nn::ConvLayer({.in = 1, .out = 8}), nn::ResBlock(1, 8, 16, 2),
                                                nn::ResBlock(1, 16, 32, 2), nn::AdaptiveAvgPool2d(1), nn::Flatten(),
                                                nn::Linear(32, 10));
  nn::init_cnn(*model);
  return model;
}

/// Per-batch training losses of `steps` batches of one epoch, on `device`.
inline std::vector<double> train_losses(Device device, int64_t steps, std::vector<double>* valid = nullptr,
                                        bool bf16 = false) {
  DataLoaders dls = fashion_mnist({.bs = 32, .num_workers = 0, .seed = 7, .n_train = steps * 32, .n_valid = 64});
  Learner learn(dls, small_resnet(3), nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
  learn.to(device);
  if (bf16) learn.to_bf16();
  learn.fit(1, 1e-3);
  if (valid) *valid = learn.recorder().values.back();
  return learn.recorder().losses;
}

TEST_CASE("a ResNet-style CNN trains on cuda with the cpu's losses step for step", "[cuda][train]") {
  const int64_t steps = 6;
  std::vector<double> valid_cpu, valid_gpu;
  const std::vector<double> cpu = train_losses(kCPU, steps, &valid_cpu);
  const std::vector<double> gpu = train_losses(Device::cuda(0), steps, &valid_gpu);
  REQUIRE(cpu.size() == size_t(steps));
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("step " << i << ": cuda loss " << gpu[i] << ", cpu loss " << cpu[i]);
    CHECK(std::abs(gpu[i] - cpu[i]) <= 1e-4 * (1 + double(i)) * std::abs(cpu[i]));
  }
  CHECK(cpu.back() < cpu.front());  // it learns at all
  REQUIRE(valid_gpu.size() == valid_cpu.size());
  for (size_t i = 0; i < valid_cpu.size(); ++i) CHECK(valid_gpu[i] == Approx(valid_cpu[i]).epsilon(1e-3));
}

TEST_CASE("bf16 mixed precision on cuda (no loss scaling) trains with the cpu's bf16 losses", "[cuda][train][amp]") {
  const int64_t steps = 6;
  const std::vector<double> cpu = train_losses(kCPU, steps, nullptr, true);
  const std::vector<double> gpu = train_losses(Device::cuda(0), steps, nullptr, true);
  const std::vector<double> f32 = train_losses(kCPU, steps);
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    INFO("step " << i << ": cuda bf16 loss " << gpu[i] << ", cpu bf16 loss " << cpu[i] << ", cpu f32 " << f32[i]);
    CHECK(std::isfinite(gpu[i]));
    // both round the same operands to bf16 and accumulate in f32; the order of the sums may differ
    CHECK(std::abs(gpu[i] - cpu[i]) <= 2e-3 * (1 + double(i)) * std::abs(cpu[i]));
    CHECK(std::abs(gpu[i] - f32[i]) <= 0.05 * std::abs(f32[i]));  // and bf16 stays near f32
  }
  CHECK(gpu.back() < gpu.front());
}

TEST_CASE("get_preds of a cuda Learner comes back on the cpu", "[cuda][train]") {
  DataLoaders dls = fashion_mnist({.bs = 32, .num_workers = 0, .n_train = 64, .n_valid = 40});
  Learner learn(dls, small_resnet(5), nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
  learn.to(kCUDA);
  const auto [preds, targs] = learn.get_preds();
  CHECK(preds.device().is_cpu());
  CHECK(targs.device().is_cpu());
  CHECK(preds.shape() == Shape{40, 10});
  th::check_close(preds.sum({1}), ones({40}), 1e-5, 1e-5, "softmax rows sum to 1");
  // a checkpoint of a cuda Learner (its tensors come over to the host to be written) loads back into
  // another cuda Learner, and into a cpu one, with the same predictions
  const th::TempDir tmp("cuda_train_ckpt");
  const std::string dir = tmp.path.string();
  // learn.to(kCUDA) made the loaders' batches cuda too (dls.to); show_batch brings one to the host to draw it
  CHECK(learn.dls.device().is_cuda());
  CHECK(learn.dls.valid.one_batch().xb[0].device().is_cuda());
  show_batch(learn.dls, dir + "/batch.png", {.max_n = 4});
  th::check_png(dir + "/batch.png");
  learn.path = dir;
  learn.save("m");
  Learner other(dls, small_resnet(99), nn::CrossEntropyLossFlat(), {.path = dir});
  other.to(kCUDA);
  other.load("m");
  th::check_close(other.get_preds().first, preds, 1e-6, 1e-6, "cuda -> file -> cuda");
  Learner host(dls, small_resnet(98), nn::CrossEntropyLossFlat(), {.path = dir});
  host.load("m");
  th::check_close(host.get_preds().first, preds, 1e-4, 1e-4, "cuda -> file -> cpu");
}

/// Makes the first gradient element of the first parameter infinite at after_backward of training
/// batch `at` (order 9: before MixedPrecision unscales at 10) and checks that this batch's step left
/// the parameters as they were.
class PoisonGrad : public Callback {
 public:
  int64_t at;
  bool poisoned = false, unchanged = false;
  explicit PoisonGrad(int64_t at_) : at(at_) { order = 9; }
  std::string name() const override { return "PoisonGrad"; }
  void before_batch() override {
    if (!learn->training || learn->iter != at) return;
    before_.clear();
    for (const Tensor& p : learn->model->parameters()) before_.push_back(to(p.detach(), kCPU));
  }
  void after_backward() override {
    if (!learn->training || learn->iter != at) return;
    Tensor g = learn->model->parameters()[0].grad();
    Tensor first = narrow(reshape(g, {-1}), 0, 0, 1);
    fill_(first, std::numeric_limits<double>::infinity());
    poisoned = true;
  }
  void after_batch() override {
    if (!learn->training || learn->iter != at) return;
    unchanged = true;
    const auto ps = learn->model->parameters();
    for (size_t i = 0; i < ps.size(); ++i)
      unchanged = unchanged && th::values(to(ps[i].detach(), kCPU)) == th::values(before_[i]);
  }

 private:
  std::vector<Tensor> before_;
};

TEST_CASE("fp16 mixed precision on cuda: the loss scaler skips an overflowing step and halves its scale",
          "[cuda][train][amp]") {
  DataLoaders dls = fashion_mnist({.bs = 32, .num_workers = 0, .n_train = 8 * 32, .n_valid = 32});
  manual_seed(11);
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 32), nn::ReLU(), nn::Linear(32, 10));
  Learner learn(dls, model, nn::CrossEntropyLossFlat());
  learn.to(kCUDA).to_fp16({.init_scale = 256, .growth_interval = 3});
  auto poison = std::make_shared<PoisonGrad>(4);
  learn.fit(1, 1e-3, {}, {poison});
  REQUIRE(poison->poisoned);
  CHECK(poison->unchanged);  // the poisoned step was skipped
  auto mp = learn.get_cb<MixedPrecision>();
  REQUIRE(mp);
  // batches 0-2 clean: 256 -> 512 after the third; 3 clean; 4 overflows: 512 -> 256; 5-7 clean: -> 512
  CHECK(mp->scaler.skipped_steps() == 1);
  CHECK(mp->scaler.get_scale() == 512);
  for (double l : learn.recorder().losses) CHECK(std::isfinite(l));
  CHECK(learn.recorder().losses.back() < learn.recorder().losses.front());
  // the parameters stay float32 master weights on cuda
  for (const Tensor& p : learn.model->parameters()) {
    CHECK(p.dtype() == DType::f32);
    CHECK(p.device().is_cuda());
  }
  // fp16 is for cuda Learners; on the cpu it is an Error at fit
  Learner cpu_learn(dls, std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 10)), nn::CrossEntropyLossFlat());
  cpu_learn.to_fp16();
  th::check_throws([&] { cpu_learn.fit(1, 1e-3); }, {"MixedPrecision", "float16", "cuda"});
}

TEST_CASE("unscale_ divides gradients in place and reports inf/NaN, on the cpu and on cuda", "[cuda][amp]") {
  for (const Device dev : {kCPU, Device::cuda(0)})
    for (const DType dt : {DType::f32, DType::f16, DType::bf16}) {
      std::vector<Tensor> gs = {to(th::make({2, 4, -8}, {3}, dt), dev), to(th::make({1, 0.5}, {2}, dt), dev)};
      CHECK_FALSE(unscale_(gs, 0.5));
      th::check_close(to(gs[0], kCPU), th::make({1, 2, -4}, {3}, dt), 0, 0, "unscaled");
      Tensor big = to(zeros({100000}, {.dtype = dt}), dev);
      Tensor mid = narrow(big, 0, 77777, 1);
      fill_(mid, std::numeric_limits<double>::quiet_NaN());
      gs.push_back(big);
      CHECK(unscale_(gs, 0.5));
    }
}

}  // namespace test_cuda_train
