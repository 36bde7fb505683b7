// Training-trick callbacks: GradientAccumulation against one big batch (gradients and parameters);
// clip_grad_norm_ against hand-computed 2-, 1- and inf-norms and GradientClip inside a fit; MixUp's
// and CutMix's inputs and losses against reference loops over the lam / shuffle / box they drew,
// plain validation loss, the loss function put back after a fit, a cancel and an exception; BnFreeze
// on frozen and unfrozen BatchNorm running stats; TerminateOnNaN on a diverging fit; ShortEpoch's batch
// counts; LabelSmoothingCrossEntropyFlat against its formula; MixUp and CutMix on a Fashion-MNIST subset;
// MixedPrecision (to_bf16): autocast on exactly inside each batch (cancel and exception included), matmul,
// linear and conv2d in its window against products of bit-rounded bf16 operands, a bf16 fit close to but
// not equal to the float32 one; ChannelsLast (to_channelslast): the strides reaching the model, same outputs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/learn/callbacks/bn_freeze.hpp"
#include "strata/learn/callbacks/gradient_accumulation.hpp"
#include "strata/learn/callbacks/gradient_clip.hpp"
#include "strata/learn/callbacks/mixup.hpp"
#include "strata/learn/callbacks/short_epoch.hpp"
#include "strata/learn/callbacks/terminate_on_nan.hpp"
#include "strata/learn/learn.hpp"

namespace test_tricks {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

/// A TensorDataset of n random inputs of shape item_shape and int64 labels in [0, classes).
std::shared_ptr<TensorDataset> random_ds(int64_t n, Shape item_shape, int64_t classes, uint64_t seed) {
  manual_seed(seed);
  Shape xs{n};
  xs.insert(xs.end(), item_shape.begin(), item_shape.end());
  return std::make_shared<TensorDataset>(std::vector<Tensor>{randn(xs)},
                                         std::vector<Tensor>{randint(0, classes, {n}, {.dtype = DType::i64})});
}

DataLoaders loaders(std::shared_ptr<TensorDataset> train, std::shared_ptr<TensorDataset> valid, int64_t bs,
                    bool shuffle = false) {
  return {.train = DataLoader(train, {.bs = bs, .shuffle = shuffle, .seed = 3}), .valid = DataLoader(valid, {.bs = bs})};
}

void quiet(Learner& learn) { learn.remove_cb<ProgressCallback>(); }

/// Per-item softmax cross entropy from logits [B, C] and labels, as a plain loop.
std::vector<double> ce_items(const Tensor& pred, const Tensor& y) {
  const std::vector<double> p = th::values(pred), t = th::values(y);
  const size_t B = t.size(), C = p.size() / B;
  std::vector<double> out(B);
  for (size_t i = 0; i < B; ++i) {
    double m = -INFINITY, s = 0;
    for (size_t c = 0; c < C; ++c) m = std::max(m, p[i * C + c]);
    for (size_t c = 0; c < C; ++c) s += std::exp(p[i * C + c] - m);
    out[i] = m + std::log(s) - p[i * C + size_t(t[i])];
  }
  return out;
}
double mean_of(const std::vector<double>& v) { return std::accumulate(v.begin(), v.end(), 0.0) / double(v.size()); }

double scalar(const Tensor& t) { return th::values(t).at(0); }

/// Every parameter's grad (or parameter) values, concatenated.
std::vector<double> all_values(nn::Module& m, bool grads) {
  std::vector<double> out;
  for (auto& p : m.parameters())
    for (double v : th::values(grads ? p.grad() : p)) out.push_back(v);
  return out;
}

nn::ModulePtr small_mlp(int64_t in, int64_t out) {
  return std::make_shared<nn::Sequential>(nn::Linear(in, 5), nn::ReLU(), nn::Linear(5, out));
}

}  // namespace

// ---------------------------------------------------------------- GradientAccumulation

namespace {
/// Records the grads and parameters at every real optimizer step (order 70: after GradientAccumulation
/// has cancelled the batches that do not step) and checks loss_grad against loss around the callback.
struct StepSpy : Callback {
  std::vector<std::vector<double>> grads, params;
  std::vector<double> loss_ratio_after_loss, loss_ratio_after_batch;
  int batches = 0;
  StepSpy() { order = 70; }
  void after_loss() override {
    if (learn->training) loss_ratio_after_loss.push_back(scalar(learn->loss_grad) / scalar(learn->loss));
  }
  void before_step() override { grads.push_back(all_values(*learn->model, true)); }
  void after_step() override { params.push_back(all_values(*learn->model, false)); }
  void after_batch() override {
    if (!learn->training) return;
    ++batches;
    loss_ratio_after_batch.push_back(scalar(learn->loss_grad) / scalar(learn->loss));
  }
};
}  // namespace

TEST_CASE("GradientAccumulation: k batches of bs give the gradients and step of one batch of k * bs", "[tricks]") {
  auto train = random_ds(16, {3}, 2, 11), valid = random_ds(4, {3}, 2, 12);
  auto model_a = small_mlp(3, 2), model_b = small_mlp(3, 2);
  model_b->load_state_dict(model_a->state_dict());

  // A: bs 2, a step every 8 items (4 batches); B: bs 8, a step every batch. Plain SGD, no momentum.
  Learner a(loaders(train, valid, 2), model_a, nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.5});
  Learner b(loaders(train, valid, 8), model_b, nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.5});
  quiet(a);
  quiet(b);
  auto spy_a = std::make_shared<StepSpy>(), spy_b = std::make_shared<StepSpy>();
  auto acc = std::make_shared<GradientAccumulation>(8);
  a.fit(1, {}, {}, {acc, spy_a});
  b.fit(1, {}, {}, {spy_b});

  CHECK(spy_a->batches == 8);
  REQUIRE(spy_a->grads.size() == 2);  // 16 items / n_acc 8
  REQUIRE(spy_b->grads.size() == 2);
  for (size_t s = 0; s < 2; ++s) {
    th::check_close(spy_a->grads[s], spy_b->grads[s], 1e-6, 1e-5, "gradients at step " + std::to_string(s));
    th::check_close(spy_a->params[s], spy_b->params[s], 1e-6, 1e-5, "parameters after step " + std::to_string(s));
  }
  th::check_close(all_values(*model_a, false), all_values(*model_b, false), 1e-6, 1e-5, "final parameters");
  // loss_grad is the batch loss * bs / n_acc for backward, multiplied back before the step
  for (double r : spy_a->loss_ratio_after_loss) CHECK(r == Approx(2.0 / 8.0).epsilon(1e-6));
  for (double r : spy_a->loss_ratio_after_batch) CHECK(r == Approx(1.0).epsilon(1e-6));
  CHECK(acc->count == 0);

  // n_acc not a multiple of the items: 16 items, a step at 6 and 12, 4 items left at the end of the fit,
  // whose gradients are dropped (not carried into the next fit's first step)
  auto acc6 = std::make_shared<GradientAccumulation>(6);
  auto spy6 = std::make_shared<StepSpy>();
  a.fit(1, {}, {}, {acc6, spy6});
  CHECK(spy6->grads.size() == 2);
  CHECK(acc6->count == 0);
  for (const Tensor& p : a.model->parameters())
    if (p.grad().defined())
      for (double g : th::values(p.grad())) CHECK(g == 0);

  th::check_throws([] { GradientAccumulation(0); }, {"GradientAccumulation", "n_acc = 0"});
}

// ---------------------------------------------------------------- clip_grad_norm_ / GradientClip

TEST_CASE("clip_grad_norm_: 2-, 1- and inf-norms by hand; grads below the limit untouched", "[tricks]") {
  auto params = [](std::vector<double> g0, std::vector<double> g1) {
    std::vector<Tensor> ps{zeros({int64_t(g0.size())}, {.requires_grad = true}),
                           zeros({int64_t(g1.size())}, {.requires_grad = true}), zeros({2}, {.requires_grad = true})};
    ps[0].set_grad(th::make(g0, {int64_t(g0.size())}));
    ps[1].set_grad(th::make(g1, {int64_t(g1.size())}));
    return ps;  // the third has no grad and is skipped
  };
  {  // 2-norm: sqrt(9 + 16 + 144) = 13
    auto ps = params({3, -4}, {12});
    CHECK(clip_grad_norm_(ps, 10.0) == Approx(13.0).epsilon(1e-12));
    const double c = 10.0 / (13.0 + 1e-6);
    th::check_close(th::values(ps[0].grad()), {3 * c, -4 * c}, 1e-6, 0);
    th::check_close(th::values(ps[1].grad()), {12 * c}, 1e-6, 0);
    CHECK_FALSE(ps[2].grad().defined());
  }
  {  // inf-norm: 12
    auto ps = params({3, -4}, {-12});
    CHECK(clip_grad_norm_(ps, 3.0, INFINITY) == Approx(12.0));
    const double c = 3.0 / (12.0 + 1e-6);
    th::check_close(th::values(ps[0].grad()), {3 * c, -4 * c}, 1e-6, 0);
    th::check_close(th::values(ps[1].grad()), {-12 * c}, 1e-6, 0);
  }
  {  // 1-norm: 19
    auto ps = params({3, -4}, {12});
    CHECK(clip_grad_norm_(ps, 1.9, 1) == Approx(19.0));
    th::check_close(th::values(ps[1].grad()), {12 * 1.9 / 19.0}, 1e-6, 0);
  }
  {  // below the limit: returned norm, grads bit for bit
    auto ps = params({0.3, 0.4}, {1.2});
    CHECK(clip_grad_norm_(ps, 10.0) == Approx(1.3));
    CHECK(th::values(ps[0].grad()) == th::values(th::make({0.3, 0.4}, {2})));
    CHECK(th::values(ps[1].grad()) == th::values(th::make({1.2}, {1})));
  }
  {  // random grads, f64: the global norm after clipping is max_norm
    std::vector<Tensor> ps{zeros({3, 4}, {.dtype = DType::f64, .requires_grad = true}),
                           zeros({5}, {.dtype = DType::f64, .requires_grad = true})};
    double ref = 0;
    for (auto& p : ps) {
      p.set_grad(th::random(p.shape(), DType::f64));
      for (double v : th::values(p.grad())) ref += v * v;
    }
    CHECK(clip_grad_norm_(ps, 0.5) == Approx(std::sqrt(ref)).epsilon(1e-12));
    double after = 0;
    for (auto& p : ps)
      for (double v : th::values(p.grad())) after += v * v;
    CHECK(std::sqrt(after) == Approx(0.5).epsilon(1e-5));
  }
  CHECK(clip_grad_norm_({zeros({2}, {.requires_grad = true})}, 1.0) == 0.0);
  th::check_throws([] { clip_grad_norm_({}, 1.0, 0); }, {"clip_grad_norm_", "norm_type = 0"});
}

namespace {
/// The global 2-norm of the model's grads at before_step, at its order.
struct NormSpy : Callback {
  std::vector<double> norms;
  explicit NormSpy(int o) { order = o; }
  void before_step() override {
    double s = 0;
    for (double v : all_values(*learn->model, true)) s += v * v;
    norms.push_back(std::sqrt(s));
  }
};
}  // namespace

TEST_CASE("GradientClip: clips the model's grads to max_norm before each step", "[tricks]") {
  auto train = random_ds(12, {3}, 2, 21), valid = random_ds(4, {3}, 2, 22);
  Learner learn(loaders(train, valid, 4), small_mlp(3, 2), nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.1});
  quiet(learn);
  auto before = std::make_shared<NormSpy>(5), after = std::make_shared<NormSpy>(20);
  auto clip = std::make_shared<GradientClip>(1e-3);
  learn.fit(1, {}, {}, {before, clip, after});
  REQUIRE(before->norms.size() == 3);
  REQUIRE(after->norms.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK(before->norms[i] > 1e-2);  // well above the limit
    CHECK(after->norms[i] == Approx(1e-3).epsilon(1e-4));
  }
  CHECK(clip->last_norm == Approx(before->norms.back()).epsilon(1e-6));
  CHECK(clip->order == 11);
  // a limit above the norms leaves every gradient as it was
  auto before2 = std::make_shared<NormSpy>(5), after2 = std::make_shared<NormSpy>(20);
  learn.fit(1, {}, {}, {before2, std::make_shared<GradientClip>(1e6), after2});
  REQUIRE(before2->norms.size() == 3);
  CHECK(after2->norms == before2->norms);
}

// ---------------------------------------------------------------- MixUp / CutMix

namespace {
/// Sees a training batch before (order -5) or after (order 5) the mixing callback, and the loss.
struct BatchSpy : Callback {
  std::vector<Tensor> xs, ys, preds, losses;
  std::vector<std::string> loss_names;
  std::vector<double> valid_losses, valid_plain;
  explicit BatchSpy(int o) { order = o; }
  void before_batch() override {
    if (!learn->training) return;
    xs.push_back(learn->xb[0]);
    ys.push_back(learn->yb[0]);
  }
  int kept_activation = 0;  // training batches where the mixing loss kept the original's activation / decodes
  void after_loss() override {
    loss_names.push_back(learn->loss_func.name);
    if (learn->training && learn->loss_func.activation && learn->loss_func.decodes && learn->loss_func.per_item) {
      NoGrad ng;
      const Tensor p = learn->pred.detach();
      kept_activation += th::values(learn->loss_func.activation(p)) == th::values(softmax(p, 1)) &&
                         th::values(learn->loss_func.decodes(p)) == th::values(argmax(p, 1));
    }
    if (learn->training) {
      preds.push_back(learn->pred.detach());
      losses.push_back(learn->loss);
    } else {
      valid_losses.push_back(scalar(learn->loss));
      valid_plain.push_back(mean_of(ce_items(learn->pred, learn->yb[0])));
    }
  }
};
struct Thrower : Callback {
  int64_t at;
  explicit Thrower(int64_t i) : at(i) { order = 80; }
  void after_loss() override {
    if (learn->training && learn->iter == at) throw std::runtime_error("boom");
  }
};
}  // namespace

TEST_CASE("MixUp: xb = lerp(xb[shuffle], xb, lam); loss = mean lerp of the two losses; plain validation", "[tricks]") {
  auto train = random_ds(12, {2, 3}, 3, 31), valid = random_ds(6, {2, 3}, 3, 32);
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(6, 3));
  Learner learn(loaders(train, valid, 6), model, nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.1});
  quiet(learn);
  auto pre = std::make_shared<BatchSpy>(-5), post = std::make_shared<BatchSpy>(5);
  auto mix = std::make_shared<MixUp>(0.4, 123);
  learn.add_cbs({pre, post, mix});
  learn.fit(1);
  REQUIRE(pre->xs.size() == 2);
  // the last batch: mix's members hold its draws
  const Tensor& x = pre->xs[1];
  const std::vector<double> lam = th::values(mix->lam), shf = th::values(mix->shuffle);
  REQUIRE(lam.size() == 6);
  std::vector<double> sorted = shf;
  std::sort(sorted.begin(), sorted.end());
  CHECK(sorted == std::vector<double>{0, 1, 2, 3, 4, 5});
  for (double l : lam) CHECK((l >= 0.5 && l <= 1.0));
  CHECK(*std::min_element(lam.begin(), lam.end()) < 0.99);  // really mixing (fails if lam were 1)
  const std::vector<double> xv = th::values(x), mixed = th::values(post->xs[1]);
  std::vector<double> want(xv.size());
  for (size_t i = 0; i < 6; ++i)
    for (size_t k = 0; k < 6; ++k) {
      const double a = xv[size_t(shf[i]) * 6 + k], b = xv[i * 6 + k];
      want[i * 6 + k] = a + lam[i] * (b - a);
    }
  th::check_close(mixed, want, 1e-6, 1e-6, "mixed inputs");
  // targets stay; yb1 = yb[shuffle]
  CHECK(th::values(post->ys[1]) == th::values(pre->ys[1]));
  const std::vector<double> y = th::values(pre->ys[1]), y1 = th::values(mix->yb1.at(0));
  for (size_t i = 0; i < 6; ++i) CHECK(y1[i] == y[size_t(shf[i])]);
  // loss = mean_i lerp(ce(pred_i, y1_i), ce(pred_i, y_i), lam_i), by hand from the predictions
  const std::vector<double> l0 = ce_items(post->preds[1], pre->ys[1]), l1 = ce_items(post->preds[1], mix->yb1[0]);
  double ref = 0;
  for (size_t i = 0; i < 6; ++i) ref += (l1[i] + lam[i] * (l0[i] - l1[i])) / 6.0;
  CHECK(scalar(post->losses[1]) == Approx(ref).epsilon(1e-5));
  CHECK(std::abs(ref - mean_of(l0)) > 1e-4);  // the mixed loss is not the plain one here
  // validation: the plain loss, under the original loss function
  REQUIRE(post->valid_losses.size() == 1);
  CHECK(post->valid_losses[0] == Approx(post->valid_plain[0]).epsilon(1e-5));
  CHECK(post->loss_names.front() == "MixUp(CrossEntropyLossFlat)");
  CHECK(post->kept_activation == 2);
  CHECK(post->loss_names.back() == "CrossEntropyLossFlat");
  CHECK(learn.loss_func.name == "CrossEntropyLossFlat");  // put back after the fit
  CHECK(learn.loss_func.fn.target<detail::MixLossFn>() == nullptr);

  // the same seed draws the same lam and shuffle for the same batch count; another seed does not,
  // and a second fit with the same callback draws new ones
  auto again = std::make_shared<MixUp>(0.4, 123), other = std::make_shared<MixUp>(0.4, 124);
  learn.remove_cbs({pre, post, mix});
  learn.fit(1, {}, {}, {again});
  CHECK(th::values(again->lam) == lam);
  CHECK(th::values(again->shuffle) == shf);
  learn.fit(1, {}, {}, {again});
  CHECK(th::values(again->lam) != lam);
  learn.fit(1, {}, {}, {other});
  CHECK(th::values(other->lam) != lam);
}

TEST_CASE("MixUp: the loss function is put back after a cancelled fit and after an exception", "[tricks]") {
  auto train = random_ds(12, {4}, 3, 41), valid = random_ds(6, {4}, 3, 42);
  Learner learn(loaders(train, valid, 4), small_mlp(4, 3), nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.1});
  quiet(learn);
  auto mix = std::make_shared<MixUp>();
  learn.add_cb(mix);
  {  // CancelFitException mid-training: after_cancel_fit / after_fit put it back
    struct CancelAt1 : Callback {
      void after_loss() override {
        if (learn->training && learn->iter == 1) throw CancelFitException();
      }
    };
    learn.fit(1, {}, {}, {std::make_shared<CancelAt1>()});
    CHECK(learn.loss_func.name == "CrossEntropyLossFlat");
  }
  {  // a real exception: after_exception puts the original back at once
    CHECK_THROWS_WITH(learn.fit(1, {}, {}, {std::make_shared<Thrower>(1)}), "boom");
    CHECK(learn.loss_func.name == "CrossEntropyLossFlat");
    CHECK(learn.loss_func.fn.target<detail::MixLossFn>() == nullptr);
    const Tensor p = randn({5, 3}), y = randint(0, 3, {5}, {.dtype = DType::i64});
    CHECK(scalar(learn.loss_func(p, y)) == Approx(mean_of(ce_items(p, y))).epsilon(1e-6));
    const std::vector<double> v = learn.validate();
    // and the validation loss is the plain one
    NoGrad ng;
    learn.model->eval();
    double total = 0;
    int64_t n = 0;
    for (Batch& b : learn.dls.valid) {
      const std::vector<double> l = ce_items(learn.model->forward_batch(b.xb), b.yb[0]);
      total += mean_of(l) * double(l.size());
      n += int64_t(l.size());
    }
    CHECK(v[0] == Approx(total / double(n)).epsilon(1e-5));
  }
  {  // the next fit mixes again and puts it back
    auto names = std::make_shared<BatchSpy>(5);
    learn.fit(1, {}, {}, {names});
    CHECK(names->loss_names.front() == "MixUp(CrossEntropyLossFlat)");
    CHECK(learn.loss_func.name == "CrossEntropyLossFlat");
  }
  {  // a loss without per_item is refused, naming it
    nn::Loss bare = nn::CrossEntropyLossFlat();
    bare.name = "Bare";
    bare.per_item = nullptr;
    learn.loss_func = bare;
    th::check_throws([&] { learn.fit(1); }, {"MixUp", "Bare", "per_item"});
    CHECK(learn.loss_func.name == "Bare");
  }
}

TEST_CASE("MixUp: float targets are mixed themselves and the loss stays plain", "[tricks]") {
  manual_seed(5);
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{randn({8, 3})}, std::vector<Tensor>{randn({8, 2})});
  Learner learn(loaders(ds, ds, 8), small_mlp(3, 2), nn::MSELossFlat(), {.opt_func = SGD(), .lr = 0.01});
  quiet(learn);
  auto pre = std::make_shared<BatchSpy>(-5);
  auto mix = std::make_shared<MixUp>(0.4, 9);
  struct After : Callback {
    Tensor y, pred, loss;
    After() { order = 5; }
    void after_loss() override {
      if (!learn->training) return;
      y = learn->yb[0];
      pred = learn->pred.detach();
      loss = learn->loss;
    }
  };
  auto post = std::make_shared<After>();
  learn.fit(1, {}, {}, {pre, mix, post});
  const std::vector<double> y = th::values(pre->ys[0]), lam = th::values(mix->lam), shf = th::values(mix->shuffle);
  const std::vector<double> got = th::values(post->y), pred = th::values(post->pred);
  double mse = 0;
  for (size_t i = 0; i < 8; ++i)
    for (size_t k = 0; k < 2; ++k) {
      const double a = y[size_t(shf[i]) * 2 + k], b = y[i * 2 + k], want = a + lam[i] * (b - a);
      CHECK(got[i * 2 + k] == Approx(want).epsilon(1e-5));
      mse += (pred[i * 2 + k] - want) * (pred[i * 2 + k] - want) / 16.0;
    }
  CHECK(scalar(post->loss) == Approx(mse).epsilon(1e-5));
}

TEST_CASE("CutMix: the box comes from xb[shuffle], the rest is untouched, lam = 1 - box area / (H W)", "[tricks]") {
  const int64_t H = 7, W = 9, B = 6;
  auto train = random_ds(12, {2, H, W}, 3, 51), valid = random_ds(6, {2, H, W}, 3, 52);
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(2 * H * W, 3));
  Learner learn(loaders(train, valid, B), model, nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.1});
  quiet(learn);
  auto pre = std::make_shared<BatchSpy>(-5), post = std::make_shared<BatchSpy>(5);
  int boxes_nonempty = 0;
  for (uint64_t seed : {1, 2, 3, 4}) {
    INFO("seed " << seed);
    auto cut = std::make_shared<CutMix>(1.0, seed);
    learn.fit(1, {}, {}, {pre, post, cut});
    const auto [x1, y1, x2, y2] = cut->box;
    CHECK((0 <= x1 && x1 <= x2 && x2 <= W && 0 <= y1 && y1 <= y2 && y2 <= H));
    boxes_nonempty += (x2 > x1 && y2 > y1);
    CHECK(scalar(cut->lam) == Approx(1.0 - double((x2 - x1) * (y2 - y1)) / double(H * W)).epsilon(1e-6));
    const std::vector<double> shf = th::values(cut->shuffle);
    const Tensor& x = pre->xs.back();
    const Tensor& mixed = post->xs.back();
    bool ok = true;
    for (int64_t i = 0; i < B; ++i)
      for (int64_t c = 0; c < 2; ++c)
        for (int64_t r = 0; r < H; ++r)
          for (int64_t q = 0; q < W; ++q) {
            const bool in = r >= y1 && r < y2 && q >= x1 && q < x2;
            const double want = th::at(x, {in ? int64_t(shf[size_t(i)]) : i, c, r, q});
            ok = ok && th::at(mixed, {i, c, r, q}) == want;
          }
    CHECK(ok);
    CHECK(th::values(learn.dls.train.one_batch().xb[0]) != th::values(mixed));
    // loss = mean_i lerp(ce(pred_i, y1_i), ce(pred_i, y_i), lam), one lam for the batch
    const double lam = scalar(cut->lam);
    const std::vector<double> l0 = ce_items(post->preds.back(), pre->ys.back()),
                              l1 = ce_items(post->preds.back(), cut->yb1.at(0));
    double ref = 0;
    for (int64_t i = 0; i < B; ++i) ref += (l1[size_t(i)] + lam * (l0[size_t(i)] - l1[size_t(i)])) / double(B);
    CHECK(scalar(post->losses.back()) == Approx(ref).epsilon(1e-5));
    CHECK(learn.loss_func.name == "CrossEntropyLossFlat");
  }
  CHECK(boxes_nonempty >= 2);
  // rand_bbox by itself: lam = 0.75 on 8 x 8 gives a 4 x 4 box when it is not clipped
  int unclipped = 0;
  for (uint64_t s = 0; s < 50; ++s) {
    TfmRng rng(s);
    const auto [a, b, c, d] = CutMix::rand_bbox(8, 8, 0.75, rng);
    CHECK((c - a <= 4 && d - b <= 4));
    unclipped += (c - a == 4 && d - b == 4);
  }
  CHECK(unclipped > 5);
}

// ---------------------------------------------------------------- BnFreeze

TEST_CASE("BnFreeze: frozen BatchNorm running stats stay, unfrozen ones move", "[tricks]") {
  auto train = random_ds(16, {3}, 2, 61), valid = random_ds(4, {3}, 2, 62);
  auto run = [&](bool with_bn_freeze, bool train_bn) {
    manual_seed(7);
    auto bn_body = std::make_shared<nn::BatchNorm1d>(4), bn_head = std::make_shared<nn::BatchNorm1d>(4);
    auto model = std::make_shared<nn::Sequential>(nn::Linear(3, 4), bn_body, nn::ReLU(), nn::Linear(4, 4), bn_head,
                                                  nn::ReLU(), nn::Linear(4, 2));
    Splitter split = [](nn::Module& m) {
      auto& s = static_cast<nn::Sequential&>(m);
      std::vector<Tensor> g0 = s[0].parameters(), g1 = s[1].parameters(), rest;
      g0.insert(g0.end(), g1.begin(), g1.end());
      for (size_t i = 3; i < s.size(); ++i)
        for (auto& p : s[i].parameters()) rest.push_back(p);
      return ParamGroups{g0, rest};
    };
    Learner learn(loaders(train, valid, 4), model, nn::CrossEntropyLossFlat(),
                  {.opt_func = SGD(), .lr = 0.1, .splitter = split, .train_bn = train_bn});
    quiet(learn);
    learn.freeze();
    const auto body0 = th::values(bn_body->running_mean), head0 = th::values(bn_head->running_mean);
    const auto body_var0 = th::values(bn_body->running_var);
    auto freeze = std::make_shared<BnFreeze>();
    learn.fit(1, {}, {}, with_bn_freeze ? std::vector<CallbackPtr>{freeze} : std::vector<CallbackPtr>{});
    const bool body_moved = th::values(bn_body->running_mean) != body0 || th::values(bn_body->running_var) != body_var0;
    const bool head_moved = th::values(bn_head->running_mean) != head0;
    return std::tuple{body_moved, head_moved, freeze->n_frozen};
  };
  {
    auto [body_moved, head_moved, n] = run(true, false);
    CHECK_FALSE(body_moved);
    CHECK(head_moved);
    CHECK(n == 1);
  }
  {  // without the callback the frozen body's stats still move (what BnFreeze is for)
    auto [body_moved, head_moved, n] = run(false, false);
    CHECK(body_moved);
    CHECK(head_moved);
  }
  {  // train_bn (the default): the body's BatchNorm params train, so they are not frozen
    auto [body_moved, head_moved, n] = run(true, true);
    CHECK(body_moved);
    CHECK(n == 0);
  }
}

// ---------------------------------------------------------------- TerminateOnNaN / ShortEpoch

namespace {
struct BatchCounter : Callback {
  int train = 0, valid = 0, after_nan = 0;
  bool seen_nan = false;
  BatchCounter() { order = -20; }  // before TerminateOnNaN's after_batch can cancel
  void after_batch() override {
    (learn->training ? train : valid) += 1;
    if (seen_nan) ++after_nan;
    if (learn->loss.defined() && !std::isfinite(scalar(learn->loss))) seen_nan = true;
  }
};
}  // namespace

TEST_CASE("TerminateOnNaNCallback: a diverging fit stops at the first non-finite loss", "[tricks]") {
  auto train = random_ds(32, {3}, 2, 71), valid = random_ds(8, {3}, 2, 72);
  for (bool with : {true, false}) {
    INFO("with TerminateOnNaN " << with);
    Learner learn(loaders(train, valid, 4), small_mlp(3, 2), nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 1e30});
    quiet(learn);
    auto count = std::make_shared<BatchCounter>();
    auto nan = std::make_shared<TerminateOnNaNCallback>();
    std::ostringstream msg;
    nan->out = &msg;
    std::vector<CallbackPtr> cbs{count};
    if (with) cbs.push_back(nan);
    learn.fit(3, {}, {}, cbs);
    REQUIRE(count->seen_nan);
    if (with) {
      CHECK(nan->terminated);
      CHECK(count->after_nan == 0);
      CHECK(count->train < 3 * 8);
      CHECK(count->train == nan->epoch * 8 + nan->iter + 1);
      CHECK(msg.str().find("epoch " + std::to_string(nan->epoch) + ", iter " + std::to_string(nan->iter)) !=
            std::string::npos);
    } else {
      CHECK(count->train == 3 * 8);
      CHECK(count->after_nan > 0);
    }
  }
}

TEST_CASE("ShortEpochCallback: runs the first batches up to pct of each phase", "[tricks]") {
  auto train = random_ds(20, {3}, 2, 81), valid = random_ds(10, {3}, 2, 82);
  Learner learn(loaders(train, valid, 2), small_mlp(3, 2), nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.1});
  quiet(learn);
  // 10 train batches: cancelled after iter 3 (3 / 10 >= 0.25): 4 batches; 5 valid: after iter 2: 3 batches
  struct Case {
    double pct;
    bool short_valid;
    int train, valid;
  };
  for (Case c : {Case{0.25, true, 4, 3}, Case{0.25, false, 4, 5}, Case{0.01, true, 2, 2}, Case{0.0, true, 1, 1},
                 Case{1.0, true, 10, 5}}) {
    INFO("pct " << c.pct << " short_valid " << c.short_valid);
    auto count = std::make_shared<BatchCounter>();
    learn.fit(2, {}, {}, {count, std::make_shared<ShortEpochCallback>(c.pct, c.short_valid)});
    CHECK(count->train == 2 * c.train);
    CHECK(count->valid == 2 * c.valid);
  }
}

// ---------------------------------------------------------------- LabelSmoothingCrossEntropyFlat

TEST_CASE("LabelSmoothingCrossEntropyFlat: (1 - eps) nll + eps mean_c(-logp_c)", "[tricks][loss]") {
  manual_seed(3);
  const Tensor x = randn({4, 5}), y = from_vector(std::vector<int64_t>{0, 4, 2, 2}, {4});
  for (double eps : {0.1, 0.3}) {
    const nn::Loss l = nn::LabelSmoothingCrossEntropyFlat(eps);
    CHECK(l.name == "LabelSmoothingCrossEntropyFlat");
    const std::vector<double> p = th::values(x);
    double ref = 0;
    std::vector<double> items;
    for (int64_t i = 0; i < 4; ++i) {
      double m = -INFINITY, s = 0, sum_logp = 0;
      for (int64_t c = 0; c < 5; ++c) m = std::max(m, p[size_t(i * 5 + c)]);
      for (int64_t c = 0; c < 5; ++c) s += std::exp(p[size_t(i * 5 + c)] - m);
      const double lse = m + std::log(s);
      for (int64_t c = 0; c < 5; ++c) sum_logp += p[size_t(i * 5 + c)] - lse;
      const double item = (1 - eps) * (lse - p[size_t(i * 5 + th::values(y)[size_t(i)])]) - eps * sum_logp / 5.0;
      items.push_back(item);
      ref += item / 4.0;
    }
    CHECK(scalar(l(x, y)) == Approx(ref).epsilon(1e-5));
    th::check_close(th::values(l.per_item(x, y)), items, 1e-5, 1e-5, "per item");
  }
  CHECK(nn::LabelSmoothingCrossEntropyFlat().name == "LabelSmoothingCrossEntropyFlat");
}

// ---------------------------------------------------------------- real data

TEST_CASE("MixUp and CutMix train an MLP on a Fashion-MNIST subset to a sane accuracy", "[tricks][fashion_mnist]") {
  for (int which = 0; which < 2; ++which) {
    INFO((which == 0 ? "MixUp" : "CutMix"));
    manual_seed(1);
    DataLoaders dls = fashion_mnist({.bs = 64, .num_workers = 0, .n_train = 3072, .n_valid = 1000});
    auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 64), nn::ReLU(), nn::Linear(64, 10));
    Learner learn(std::move(dls), model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
    quiet(learn);
    CallbackPtr cb = which == 0 ? CallbackPtr(std::make_shared<MixUp>(0.4, 1)) : CallbackPtr(std::make_shared<CutMix>(1.0, 1));
    learn.fit_one_cycle(1, 1e-2, 25, 1e5, 0.25, {}, {}, {cb});
    const std::vector<double> v = learn.validate();
    INFO("valid loss " << v[0] << " accuracy " << v[1]);
    CHECK(v[1] > 0.6);
    CHECK(learn.loss_func.name == "CrossEntropyLossFlat");
  }
}

// ---------------------------------------------------------------- MixedPrecision (to_bf16)
namespace {

/// A Linear whose forward records (training, autocast on) and whose backward records whether autocast is on.
struct AutocastProbe : nn::Module {
  std::shared_ptr<nn::Linear> lin = std::make_shared<nn::Linear>(2, 2);
  std::vector<std::pair<bool, bool>> fwd;
  std::vector<bool> bwd;
  Tensor forward(const Tensor& x) override {
    fwd.emplace_back(training, autocast_enabled());
    const Tensor y = (*lin)(x);
    return record("autocast_probe", y.detach(), {y}, [this](const Tensor& dout) {
      bwd.push_back(autocast_enabled());
      return std::vector<Tensor>{dout};
    });
  }
  void visit(nn::Visitor& v) override { v.child("lin", lin); }
  std::string type_name() const override { return "AutocastProbe"; }
};

/// Logs "event:0|1" (autocast off / on) at the events of a batch, after MixedPrecision (order 20);
/// throws `cancel` / a runtime_error at event `at` of training batch `at_iter`.
struct AutocastSpy : Callback {
  std::vector<std::string> log;
  std::string throw_at;
  bool throw_cancel = true;
  AutocastSpy() { order = 20; }
  void note(const char* e) {
    log.push_back(std::string(learn->training ? "t." : "v.") + e + ":" + (autocast_enabled() ? "1" : "0"));
    if (throw_at == e && learn->training && learn->iter == 0) {
      if (throw_cancel) throw CancelBatchException();
      throw std::runtime_error("spy");
    }
  }
  void before_fit() override { note("before_fit"); }
  void before_batch() override { note("before_batch"); }
  void after_pred() override { note("after_pred"); }
  void after_loss() override { note("after_loss"); }
  void before_backward() override { note("before_backward"); }
  void after_backward() override { note("after_backward"); }
  void before_step() override { note("before_step"); }
  void after_step() override { note("after_step"); }
  void after_cancel_batch() override { note("after_cancel_batch"); }
  void after_batch() override { note("after_batch"); }
  void after_fit() override { note("after_fit"); }
};

}  // namespace

TEST_CASE("MixedPrecision: autocast is on exactly for the forward, loss and backward of a batch", "[tricks][bf16]") {
  auto model = std::make_shared<AutocastProbe>();
  Learner learn(th::blob_dls(8, 4, 4, false), model, nn::CrossEntropyLossFlat());
  quiet(learn);
  CHECK(&learn.to_bf16() == &learn);
  auto spy = std::make_shared<AutocastSpy>();
  learn.add_cb(spy);
  learn.fit(1, 1e-2);
  const std::vector<std::string> train_batch{"t.before_batch:1", "t.after_pred:1", "t.after_loss:1",
                                             "t.before_backward:1", "t.after_backward:0", "t.before_step:0",
                                             "t.after_step:0", "t.after_batch:0"};
  std::vector<std::string> want{"v.before_fit:0"};  // TrainEvalCallback sets training at before_train
  for (int b = 0; b < 2; ++b) want.insert(want.end(), train_batch.begin(), train_batch.end());
  for (const char* e : {"v.before_batch:1", "v.after_pred:1", "v.after_loss:1", "v.after_batch:0", "v.after_fit:0"})
    want.push_back(e);
  CHECK(spy->log == want);
  CHECK(model->fwd == std::vector<std::pair<bool, bool>>{{true, true}, {true, true}, {false, true}});
  CHECK(model->bwd == std::vector<bool>{true, true});
  CHECK_FALSE(autocast_enabled());
  CHECK_FALSE(learn.get_cb<MixedPrecision>()->active());

  // get_preds runs the validation forward under autocast too
  model->fwd.clear();
  learn.get_preds();
  CHECK(model->fwd == std::vector<std::pair<bool, bool>>{{false, true}});
  CHECK_FALSE(autocast_enabled());

  // to_fp32: plain float32 again
  CHECK(&learn.to_fp32() == &learn);
  CHECK(learn.get_cb<MixedPrecision>() == nullptr);
  model->fwd.clear();
  model->bwd.clear();
  learn.fit(1, 1e-2);
  CHECK(model->fwd == std::vector<std::pair<bool, bool>>{{true, false}, {true, false}, {false, false}});
  CHECK(model->bwd == std::vector<bool>{false, false});
}

TEST_CASE("MixedPrecision: the guard closes after a cancelled batch and after an exception", "[tricks][bf16]") {
  auto model = std::make_shared<AutocastProbe>();
  Learner learn(th::blob_dls(8, 4, 4, false), model, nn::CrossEntropyLossFlat());
  quiet(learn);
  learn.to_bf16().to_bf16();  // a second call replaces the first callback
  int n_mp = 0;
  for (auto& cb : learn.cbs) n_mp += cb->name() == "MixedPrecision";
  CHECK(n_mp == 1);
  auto spy = std::make_shared<AutocastSpy>();
  learn.add_cb(spy);

  spy->throw_at = "after_loss";  // cancel the first training batch
  learn.fit(1, 1e-2);
  const std::vector<std::string> first(spy->log.begin() + 1, spy->log.begin() + 6);
  CHECK(first == std::vector<std::string>{"t.before_batch:1", "t.after_pred:1", "t.after_loss:1",
                                          "t.after_cancel_batch:0", "t.after_batch:0"});
  CHECK(spy->log.at(6) == "t.before_batch:1");  // the next batch opens it again
  CHECK(model->bwd == std::vector<bool>{true});
  CHECK_FALSE(autocast_enabled());

  for (const char* at : {"after_pred", "before_backward"}) {  // an exception inside the window
    spy->throw_at = at;
    spy->throw_cancel = false;
    CHECK_THROWS_WITH(learn.fit(1, 1e-2), "spy");
    CHECK_FALSE(autocast_enabled());
    CHECK_FALSE(learn.get_cb<MixedPrecision>()->active());
  }
  // and an exception in the model's backward pass
  spy->throw_at.clear();
  auto failing = std::make_shared<nn::Sequential>(nn::Linear(2, 2));
  learn.model = failing;
  learn.loss_func.name = "failing";
  learn.loss_func.fn = [](const Tensor& p, const Tensor&) {
    return record("fail", sum(p), {p}, [](const Tensor&) -> std::vector<Tensor> { throw std::runtime_error("backward failed"); });
  };
  CHECK_THROWS_WITH(learn.fit(1, 1e-2, {}, {}, true), "backward failed");
  CHECK_FALSE(autocast_enabled());
}

TEST_CASE("MixedPrecision: bfloat16 or float16 only, naming what is supported", "[tricks][bf16]") {
  th::check_throws([] { MixedPrecision mp(DType::f32); }, {"MixedPrecision", "float32", "bfloat16 or float16"});
  CHECK(MixedPrecision().dtype == DType::bf16);
  // float16 (with loss scaling) is for cuda Learners: a cpu Learner refuses it at fit (test_cuda_train.cpp)
  CHECK(MixedPrecision(DType::f16).dtype == DType::f16);
}

// ---------------------------------------------------------------- ChannelsLast (to_channelslast)
namespace {
/// Records the strides of what it is given and passes it on.
struct LayoutProbe : nn::Module {
  std::vector<Strides> seen;
  Tensor forward(const Tensor& x) override {
    seen.push_back(x.strides());
    return x;
  }
  std::string type_name() const override { return "LayoutProbe"; }
};
}  // namespace

TEST_CASE("ChannelsLast: 4-D batches reach the model channels-last; predictions and losses as without", "[tricks][channels_last]") {
  const auto train = random_ds(16, {3, 5, 6}, 3, 11), valid = random_ds(8, {3, 5, 6}, 3, 12);
  std::vector<std::shared_ptr<LayoutProbe>> probes;
  std::vector<std::vector<double>> losses, preds;
  for (bool cl : {false, true}) {
    auto probe = std::make_shared<LayoutProbe>();
    manual_seed(5);
    auto model = std::make_shared<nn::Sequential>(probe, nn::Conv2d({.in = 3, .out = 4, .k = 3, .pad = 1}), nn::ReLU(),
                                                  nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(4, 3));
    Learner learn(loaders(train, valid, 8), model, nn::CrossEntropyLossFlat());
    quiet(learn);
    if (cl) CHECK(&learn.to_channelslast().to_channelslast() == &learn);  // a second call replaces the first
    CHECK((learn.get_cb<ChannelsLast>() != nullptr) == cl);
    learn.fit(2, 1e-2);
    preds.push_back(th::values(learn.get_preds().first));
    losses.push_back(learn.recorder().losses);
    probes.push_back(probe);
  }
  // [B, C, H, W] = [8, 3, 5, 6]: NCHW strides {90, 30, 6, 1}, channels-last {90, 1, 18, 3}
  REQUIRE(probes[0]->seen.size() == 7);  // 2 epochs of (2 train + 1 valid batches), then get_preds
  for (const Strides& s : probes[0]->seen) CHECK(s == Strides{90, 30, 6, 1});
  for (const Strides& s : probes[1]->seen) CHECK(s == Strides{90, 1, 18, 3});
  CHECK(losses[1].size() == 4);
  th::check_close(losses[1], losses[0], 1e-5, 1e-5);
  th::check_close(preds[1], preds[0], 1e-5, 1e-5);
}

TEST_CASE("ChannelsLast: inputs that are not 4-D float pass untouched", "[tricks][channels_last]") {
  auto probe = std::make_shared<LayoutProbe>();
  Learner learn(th::blob_dls(8, 4, 4, false), std::make_shared<nn::Sequential>(probe, nn::Linear(2, 2)),
                nn::CrossEntropyLossFlat());
  quiet(learn);
  learn.to_channelslast().fit(1, 1e-2);
  REQUIRE(probe->seen.size() == 3);
  for (const Strides& s : probe->seen) CHECK(s == Strides{2, 1});
  learn.remove_cb<ChannelsLast>();
  CHECK(learn.get_cb<ChannelsLast>() == nullptr);
}

// ---------------------------------------------------------------- MixedPrecision: what autocast does
namespace {
/// bf16 rounding of a float, round to nearest even (finite inputs), as a bit operation.
float round_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  std::memcpy(&f, &u, 4);
  return f;
}
std::vector<double> round_bf16(std::vector<double> v) {
  for (double& e : v) e = round_bf16(float(e));
  return v;
}
/// a [M, K] @ b [K, N] (row-major values) in double.
std::vector<double> mm_ref(const std::vector<double>& a, const std::vector<double>& b, size_t M, size_t K, size_t N) {
  std::vector<double> out(M * N, 0.0);
  for (size_t m = 0; m < M; ++m)
    for (size_t n = 0; n < N; ++n)
      for (size_t k = 0; k < K; ++k) out[m * N + n] += a[m * K + k] * b[k * N + n];
  return out;
}
double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

/// At after_pred of the first training batch (inside MixedPrecision's window), and again after the fit:
/// matmul, linear and conv2d of fixed operands, each against the product of the bf16-rounded operands.
struct RoundingSpy : Callback {
  Tensor a = th::random({5, 37}), b = th::random({37, 6}), bias = th::random({5});
  Tensor x = th::random({2, 3, 5, 6}), w = th::random({4, 3, 3, 3});
  std::vector<double> mm, lin, conv;  // results inside the window
  RoundingSpy() { order = 20; }
  void after_pred() override {
    if (!learn->training || learn->iter != 0 || !mm.empty()) return;
    REQUIRE(autocast_enabled());
    mm = th::values(matmul(a, b));
    lin = th::values(linear(transpose(b, 0, 1), a, bias));  // [6, 37] @ [5, 37]^T + bias -> [6, 5]
    conv = th::values(conv2d(x, w, Tensor(), {1, 1}, {1, 1}));
  }
};
}  // namespace

TEST_CASE("MixedPrecision: inside its window matmul, linear and conv2d multiply bf16-rounded operands", "[tricks][bf16]") {
  auto spy = std::make_shared<RoundingSpy>();
  Learner learn(th::blob_dls(8, 4, 4, false), small_mlp(2, 2), nn::CrossEntropyLossFlat());
  quiet(learn);
  learn.to_bf16().fit(1, 1e-2, {}, {spy});
  REQUIRE_FALSE(spy->mm.empty());
  const std::vector<double> a = th::values(spy->a), b = th::values(spy->b), bias = th::values(spy->bias);
  const std::vector<double> exact = mm_ref(a, b, 5, 37, 6), rounded = mm_ref(round_bf16(a), round_bf16(b), 5, 37, 6);
  REQUIRE(max_abs_diff(exact, rounded) > 1e-2);  // the rounding shows at this size
  CHECK(max_abs_diff(spy->mm, rounded) < 1e-4);  // float32 accumulation of the rounded products
  // linear: x [6, 37] = b^T, weight [5, 37] = a, bias not rounded
  std::vector<double> lin_want(30);
  for (size_t i = 0; i < 6; ++i)
    for (size_t o = 0; o < 5; ++o) lin_want[i * 5 + o] = rounded[o * 6 + i] + bias[o];
  CHECK(max_abs_diff(spy->lin, lin_want) < 1e-4);
  // conv2d against float32 conv2d of the rounded operands (autocast off now)
  REQUIRE_FALSE(autocast_enabled());
  const Tensor xr = th::make(round_bf16(th::values(spy->x)), spy->x.shape());
  const Tensor wr = th::make(round_bf16(th::values(spy->w)), spy->w.shape());
  const std::vector<double> conv_rounded = th::values(conv2d(xr, wr, Tensor(), {1, 1}, {1, 1}));
  const std::vector<double> conv_exact = th::values(conv2d(spy->x, spy->w, Tensor(), {1, 1}, {1, 1}));
  REQUIRE(max_abs_diff(conv_exact, conv_rounded) > 1e-2);
  CHECK(max_abs_diff(spy->conv, conv_rounded) < 1e-4);
  // outside the window: plain float32
  CHECK(max_abs_diff(th::values(matmul(spy->a, spy->b)), exact) < 1e-4);
}

TEST_CASE("MixedPrecision: a short bf16 fit gives losses close to the float32 fit's, but not identical", "[tricks][bf16]") {
  const auto train = random_ds(64, {3, 6, 6}, 3, 21), valid = random_ds(16, {3, 6, 6}, 3, 22);
  std::vector<std::vector<double>> losses;
  std::vector<double> valid_loss;
  for (bool bf16 : {false, true}) {
    manual_seed(9);
    auto model = std::make_shared<nn::Sequential>(nn::Conv2d({.in = 3, .out = 8, .k = 3, .pad = 1}), nn::ReLU(),
                                                  nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(8, 3));
    Learner learn(loaders(train, valid, 16), model, nn::CrossEntropyLossFlat());
    quiet(learn);
    if (bf16) learn.to_bf16();
    learn.fit(2, 1e-2);
    losses.push_back(learn.recorder().losses);
    valid_loss.push_back(learn.validate().at(0));
    for (auto& p : model->parameters()) CHECK(p.dtype() == DType::f32);  // master weights stay float32
  }
  REQUIRE(losses[1].size() == 8);
  double max_rel = 0, max_abs = 0;
  for (size_t i = 0; i < losses[0].size(); ++i) {
    max_abs = std::max(max_abs, std::abs(losses[1][i] - losses[0][i]));
    max_rel = std::max(max_rel, std::abs(losses[1][i] - losses[0][i]) / std::abs(losses[0][i]));
  }
  CHECK(max_rel < 2e-2);
  CHECK(max_abs > 1e-6);  // autocast changed the arithmetic
  CHECK(std::abs(valid_loss[1] - valid_loss[0]) < 2e-2 * valid_loss[0]);
  CHECK(valid_loss[1] != valid_loss[0]);
}

}  // namespace test_tricks
