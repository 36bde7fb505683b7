// Test-time augmentation (learn/tta.hpp) and ProgressiveResizing (learn/callbacks/progressive_resizing.hpp).
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "strata/data/datablock.hpp"
#include "strata/learn/callbacks/progressive_resizing.hpp"
#include "strata/learn/tta.hpp"

namespace test_tta {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

// A train-only item transform with a known effect: adds a per-item draw in [1, 2) to the Regression input.
struct Jitter {
  static constexpr const char* name = "Jitter";
  static constexpr Split split = Split::train;
  double d = 0;
  void before_call(const Tuple&, TfmContext& ctx) { d = ctx.rng.uniform(1.0, 2.0); }
  Regression encodes(const Regression& x) const { return Regression{x.data + d}; }
};

std::vector<int64_t> iota(int64_t n) {
  std::vector<int64_t> v(size_t(n), 0);
  for (int64_t i = 0; i < n; ++i) v[size_t(i)] = i;
  return v;
}

// x = item index (input), y = 2 * index (target); valid = items 0..9.
DataLoaders jitter_dls() {
  DataBlock<int64_t> dblock{.blocks = {RegressionBlock(), RegressionBlock()},
                            .getters = {[](const int64_t& i) -> Raw { return double(i); },
                                        [](const int64_t& i) -> Raw { return 2.0 * double(i); }},
                            .splitter = IndexSplitter(iota(10)),
                            .item_tfms = {make_transform(Jitter{})}};
  return dblock.dataloaders(iota(30), {.bs = 4, .seed = 5});
}

}  // namespace

TEST_CASE("tta: lerp of the mean augmented predictions and the plain ones", "[tta]") {
  auto model = std::make_shared<nn::Lambda>([](const Tensor& x) { return x * 1.0; }, "Identity");
  Learner learn(jitter_dls(), model, nn::MSELossFlat());
  auto [plain, targs] = learn.get_preds();
  REQUIRE(plain.numel() == 10);
  CHECK(th::values(plain.flatten()) == th::values(arange(0, 10, 1, {.dtype = DType::f32})));

  auto [blend, targs2] = tta(learn, {.n = 4, .beta = 0.25});
  CHECK(th::values(targs2) == th::values(targs));
  // aug = x + mean of 4 draws in [1, 2), so blend - x = 0.75 * mean draw, in [0.75, 1.5), and draws differ per item
  const std::vector<double> b = th::values(blend.flatten()), x = th::values(plain.flatten());
  std::vector<double> shift;
  for (size_t i = 0; i < b.size(); ++i) shift.push_back(b[i] - x[i]);
  for (double s : shift) {
    CHECK(s >= 0.75);
    CHECK(s < 1.5);
  }
  CHECK(*std::max_element(shift.begin(), shift.end()) - *std::min_element(shift.begin(), shift.end()) > 1e-3);
  // beta = 1: the plain predictions; use_max: above both
  CHECK(th::values(tta(learn, {.n = 2, .beta = 1.0}).first.flatten()) == x);
  const std::vector<double> mx = th::values(tta(learn, {.n = 2, .use_max = true}).first.flatten());
  for (size_t i = 0; i < mx.size(); ++i) CHECK(mx[i] >= x[i] + 1.0);
  // loaders that cannot switch to training transforms: a clear error
  Learner plain_learn(th::blob_dls(16, 8, 4), std::make_shared<nn::Linear>(2, 3), nn::CrossEntropyLossFlat());
  th::check_throws([&] { tta(plain_learn); }, {"tta", "DataBlock"});
  th::check_throws([&] { tta(learn, {.n = 0}); }, {"tta", "n = 0"});
}

TEST_CASE("ProgressiveResizing: the schedule and the sizes the model sees", "[tta]") {
  ProgressiveResizing pr({.initial_scale = 0.5, .start = 0.5, .finish = 0.75, .increase_by = 4});
  CHECK(pr.side_at(32, 0.0) == 16);
  CHECK(pr.side_at(32, 0.5) == 16);
  CHECK(pr.side_at(32, 0.625) == 24);  // halfway: scale 0.75
  CHECK(pr.side_at(32, 0.7) == 28);    // scale 0.9 -> 28.8 -> 28
  CHECK(pr.side_at(32, 0.75) == 32);
  CHECK(pr.side_at(6, 0.0) == 4);      // never below increase_by
  th::check_throws([] { ProgressiveResizing({.start = 0.8, .finish = 0.5}); }, {"ProgressiveResizing", "start = 0.8"});

  // a constant-per-image batch keeps its value through the bilinear resize; record the sizes seen
  const int64_t n = 16;
  Tensor imgs = (arange(0, n, 1, {.dtype = DType::f32}) / double(n)).reshape({n, 1, 1, 1}).expand({n, 1, 32, 32}).contiguous();
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < n; ++i) labels.push_back(i % 2);
  Tensor ys = from_vector(labels);
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{imgs}, std::vector<Tensor>{ys});
  DataLoaders dls = DataLoaders::from_dsets(ds, ds, {.bs = 4, .seed = 1});
  std::vector<int64_t> train_sizes, valid_sizes;
  std::vector<double> means;
  auto body = std::make_shared<nn::Lambda>([&](const Tensor& x) {
    (is_grad_enabled() ? train_sizes : valid_sizes).push_back(x.size(2));
    if (is_grad_enabled()) means.push_back(x.mean().item<double>());
    return x.mean({2, 3});
  }, "Probe");
  auto model = std::make_shared<nn::Sequential>(body, std::make_shared<nn::Linear>(1, 2));
  Learner learn(dls, model, nn::CrossEntropyLossFlat());
  learn.add_cb(std::make_shared<ProgressiveResizing>(ProgressiveResizingOptions{}));
  learn.fit(2, 1e-3);  // 8 training batches: pct_train 0, 1/8, ... 7/8
  CHECK(train_sizes == std::vector<int64_t>{16, 16, 16, 16, 16, 24, 32, 32});
  for (int64_t s : valid_sizes) CHECK(s == 32);
  REQUIRE(means.size() == 8);  // constant images keep their values through the resize: batch means = label means
  for (double m : means) CHECK(m == Approx(means[0]).margin(0.5));
}

TEST_CASE("Learner::predict on DataBlock loaders: the batch transforms run on an input-only batch", "[tta]") {
  // 4x4 grey images whose pixels are 10 * label; ImageBlock's IntToFloat is a batch transform
  DataBlock<int64_t> dblock{.blocks = {ImageBlock({.channels = 1}), CategoryBlock()},
                            .get_x = [](const int64_t& i) -> Raw { return full({1, 4, 4}, 10.0 * double(i % 3), {.dtype = DType::u8}); },
                            .get_y = [](const int64_t& i) -> Raw { return i % 3; },
                            .splitter = IndexSplitter({0, 1, 2})};
  DataLoaders dls = dblock.dataloaders(iota(12), {.bs = 4});
  REQUIRE(dls.c == 3);
  // logits = (mean pixel, after IntToFloat) * (0, 1, 2): the probabilities show whether IntToFloat ran
  auto model = std::make_shared<nn::Lambda>([](const Tensor& x) {
    return x.mean({1, 2, 3}).unsqueeze(1) * from_vector(std::vector<float>{0.f, 1.f, 2.f}).unsqueeze(0);
  }, "MeanTimes");
  Learner learn(dls, model, nn::CrossEntropyLossFlat());
  auto [decoded, probs] = learn.predict(full({1, 4, 4}, 255.0, {.dtype = DType::u8}));
  REQUIRE(probs.numel() == 3);
  const std::vector<double> p = th::values(probs);
  const double z = 1 + std::exp(1.0) + std::exp(2.0);  // logits 0, 1, 2 when the pixel became 1.0
  CHECK(p[0] == Approx(1 / z).epsilon(1e-5));
  CHECK(p[2] == Approx(std::exp(2.0) / z).epsilon(1e-5));
  CHECK(th::values(decoded) == std::vector<double>{2});
}

}  // namespace test_tta
