// Hooks and ActivationStats: Hook / Hooks / hook_output against the module's own output and a
// hand-computed gradient; activation_stat against torch.histc / torch.std numbers; ActivationStats
// during real fits against statistics recomputed with plain loops from the outputs an independent
// forward hook captured; every = k; hooks off after fit, after CancelFit and after an exception;
// a small CNN on Fashion-MNIST with the plots (PNG size and pixel variance), and BatchNorm's
// closed form (training-mode output has mean beta and std gamma per channel) on the real stats.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/learn/callbacks/activation_stats.hpp"
#include "strata/learn/hook.hpp"
#include "strata/nn/layers.hpp"
#include "strata/nn/models/xresnet.hpp"

#include <strata/io/image.hpp>

namespace test_activation_stats {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;
namespace fs = std::filesystem;

namespace {

/// The reference: mean, unbiased std, fraction <= 0.05, torch.histc(40, 0, 10) by plain loops.
struct RefStat {
  double mean = 0, std = 0, near_zero = 0;
  std::vector<double> hist = std::vector<double>(40, 0.0);
};
RefStat ref_stat(const std::vector<double>& v) {
  RefStat r;
  for (double x : v) r.mean += x;
  r.mean /= double(v.size());
  double ss = 0;
  for (double x : v) ss += (x - r.mean) * (x - r.mean);
  r.std = std::sqrt(ss / double(v.size() - 1));
  for (double x : v) r.near_zero += float(x) <= 0.05f;  // the data is f32: torch compares in float
  r.near_zero /= double(v.size());
  for (double x : v) {
    if (x < 0 || x > 10) continue;
    int b = int(x * 4);  // (x - 0) * 40 / (10 - 0)
    if (b == 40) b = 39;
    r.hist[size_t(b)] += 1;
  }
  return r;
}

/// Conv, BatchNorm, ReLU, Flatten, Linear: three layers with parameters ("0", "1", "4").
std::shared_ptr<nn::Sequential> small_net() {
  manual_seed(3);
  return std::make_shared<nn::Sequential>(nn::Conv2d({.in = 1, .out = 4, .k = 3, .pad = 1}), nn::BatchNorm2d(4),
                                          nn::ReLU(), nn::Flatten(), nn::Linear(4 * 5 * 5, 3));
}

/// n items [1, 5, 5] scaled by 3 (activations spread over several bins), labels i % 3; valid: 8 items.
DataLoaders small_dls(int64_t n, int64_t bs) {
  manual_seed(11);
  Tensor x = randn({n, 1, 5, 5}) * 3.0;
  std::vector<double> y(static_cast<size_t>(n)), yv(8);
  for (int64_t i = 0; i < n; ++i) y[size_t(i)] = double(i % 3);
  for (int64_t i = 0; i < 8; ++i) yv[size_t(i)] = double(i % 3);
  return {.train = DataLoader(std::make_shared<TensorDataset>(std::vector<Tensor>{x}, std::vector<Tensor>{th::make(y, {n}, DType::i64)}),
                              {.bs = bs}),
          .valid = DataLoader(std::make_shared<TensorDataset>(std::vector<Tensor>{randn({8, 1, 5, 5})},
                                                              std::vector<Tensor>{th::make(yv, {8}, DType::i64)}),
                              {.bs = 8}),
          .c = 3};
}

std::unique_ptr<Learner> small_learner(int64_t n, int64_t bs) {
  auto learn = std::make_unique<Learner>(small_dls(n, bs), small_net(), nn::CrossEntropyLossFlat(),
                                         LearnerOptions{.opt_func = SGD(), .lr = 0.1});
  learn->remove_cb<ProgressCallback>();
  return learn;
}

/// An independent observer: forward hooks of its own on the given modules, capturing each training
/// forward's output values (per training batch, per module).
struct Capture {
  std::vector<nn::HookHandle> handles;
  std::vector<std::vector<std::vector<double>>> outs;  // [batch][module] values
  Capture(Learner& learn, const std::vector<nn::Module*>& ms) {
    for (size_t k = 0; k < ms.size(); ++k)
      handles.push_back(ms[k]->register_forward_hook([&learn, this, k, n = ms.size()](nn::Module&, const Tensor&, Tensor& out) {
        if (!learn.training) return;
        if (k == 0) outs.emplace_back(n);
        outs.back()[k] = th::values(out);
      }));
  }
  ~Capture() {
    for (auto& h : handles) h.remove();
  }
};

void check_against(const ActivationStat& s, const std::vector<double>& out, bool with_hist) {
  const RefStat r = ref_stat(out);
  CHECK(s.mean == Approx(r.mean).epsilon(1e-9).margin(1e-12));
  CHECK(s.std == Approx(r.std).epsilon(1e-9));
  CHECK(s.near_zero == r.near_zero);
  if (!with_hist) {
    CHECK(!s.hist.defined());
    return;
  }
  REQUIRE(s.hist.defined());
  CHECK(th::values(s.hist) == r.hist);
}

/// Throws a plain error (not a Cancel*) at after_pred of training batch `at`.
struct Thrower : Callback {
  int64_t at;
  bool cancel;
  Thrower(int64_t a, bool c) : at(a), cancel(c) {}
  void after_pred() override {
    if (!learn->training || learn->train_iter != at) return;
    if (cancel) throw CancelFitException();
    throw std::runtime_error("boom at batch " + std::to_string(at));
  }
};

}  // namespace

TEST_CASE("activation_stat: torch.histc(40, 0, 10) bins, torch.std (unbiased), near zero", "[actstats]") {
  // torch 1.13: x.histc(40, 0, 10) -> nonzero bins {0: 4, 1: 2, 4: 1, 13: 1, 19: 1, 20: 1, 28: 1, 38: 1, 39: 3};
  // x.mean() = 4.192641258239746, x.std() = 4.359648704528809, (x <= 0.05).sum() / n = 3 / 17
  const std::vector<double> v = {-0.5, 0.0, 0.05, 0.06, 0.2499, 0.25, 0.26, 1.0,  4.99,
                                 5.0,  9.74, 9.75, 9.99, 10.0, 10.01, 3.3, 7.125};
  for (DType dt : {DType::f32, DType::f64}) {
    const ActivationStat s = activation_stat(th::make(v, {17}, dt), true);
    std::vector<double> expect(40, 0.0);
    for (auto [b, c] : std::vector<std::pair<int, double>>{{0, 4}, {1, 2}, {4, 1}, {13, 1}, {19, 1}, {20, 1}, {28, 1}, {38, 1}, {39, 3}})
      expect[size_t(b)] = c;
    CHECK(th::values(s.hist) == expect);
    CHECK(s.mean == Approx(4.192641258239746).epsilon(1e-6));
    CHECK(s.std == Approx(4.359648704528809).epsilon(1e-6));
    CHECK(s.near_zero == Approx(3.0 / 17));
  }
  // NaN is ignored by the histogram (torch 1.13 counts it in bin 0); a non-contiguous view is read as its values
  const ActivationStat n = activation_stat(th::make({std::nan(""), 2.0, -1.0}, {3}), true);
  CHECK(th::values(n.hist)[8] == 1);
  CHECK(th::values(n.hist.sum())[0] == 1);
  Tensor m = th::random({6, 7}, DType::f32, true, -1, 12);
  std::vector<double> mv = th::values(m);
  const ActivationStat ms = activation_stat(m, true);
  check_against(ms, mv, true);
  CHECK(std::isnan(activation_stat(th::make({1.0}, {1})).std));  // torch: std of one element is nan
  th::check_throws([] { activation_stat(th::make({1.0}, {1}, DType::i64)); }, {"activation_stat", "int64"});
}

TEST_CASE("Hook, Hooks, hook_output: stored values, removal, RAII, gradient hooks", "[actstats]") {
  auto net = small_net();
  manual_seed(5);
  const Tensor x = randn({2, 1, 5, 5});
  {
    Hook<Tensor> h = hook_output((*net)[0]);
    CHECK(!h.stored());
    const Tensor y = (*net)[0](x);
    REQUIRE(h.stored());
    CHECK(th::values(*h.stored()) == th::values(y));
    CHECK(!h.stored()->requires_grad());  // detached
    h.remove();
    CHECK(h.removed());
    (*net)[0](x * 2.0);
    CHECK(th::values(*h.stored()) == th::values(y));  // removed: not called again
  }
  // RAII: a Hooks going out of scope leaves nothing on the modules
  int calls = 0;
  {
    Hooks<int> hs(flatten_model(*net), [&](nn::Module&, const Tensor&, const Tensor&) { return ++calls; });
    CHECK(hs.size() == 5);
    (*net)(x);
    CHECK(calls == 5);
    std::vector<std::optional<int>> st = hs.stored();
    CHECK(*st[0] == 1);
    CHECK(*st[4] == 5);
  }
  (*net)(x);
  CHECK(calls == 5);
  // a moved Hook keeps working and is removed once
  {
    Hook<double> a((*net)[4], [](nn::Module&, const Tensor&, const Tensor& out) { return double(out.numel()); });
    Hook<double> b = std::move(a);
    (*net)(x);
    CHECK(!a.stored());
    CHECK(*b.stored() == 6);
  }
  // the default layers: leaves with parameters (conv, bn, linear), named as in named_modules
  auto layers = hookable_layers(*net);
  REQUIRE(layers.size() == 3);
  CHECK(layers[0].first == "0");
  CHECK(layers[1].first == "1");
  CHECK(layers[2].first == "4");
  CHECK(hookable_layers(*net, true).size() == 5);
  CHECK(has_params(*net));
  CHECK(!has_params((*net)[2]));
  // gradient hook: for loss = sum(out^2) the gradient of the Linear's output is 2 * out
  Hook<Tensor> g = hook_output((*net)[4], true, /*grad=*/true);
  Tensor out = (*net)(x);
  (out * out).sum().backward();
  REQUIRE(g.stored());
  const std::vector<double> o = th::values(out), go = th::values(*g.stored());
  REQUIRE(go.size() == o.size());
  for (size_t i = 0; i < o.size(); ++i) CHECK(go[i] == Approx(2 * o[i]).epsilon(1e-6));
}

TEST_CASE("ActivationStats: per-batch mean, std, near_zero, histogram against plain loops", "[actstats]") {
  for (bool with_hist : {false, true}) {
    auto learn = small_learner(24, 8);  // 3 training batches, 1 validation batch
    auto stats = std::make_shared<ActivationStats>(with_hist);
    learn->add_cb(stats);
    auto& net = static_cast<nn::Sequential&>(*learn->model);
    Capture cap(*learn, {&net[0], &net[1], &net[4]});
    learn->fit(1);
    REQUIRE(cap.outs.size() == 3);
    REQUIRE(stats->stats.size() == 3);  // training batches only
    CHECK(stats->module_names == std::vector<std::string>{"0", "1", "4"});
    for (size_t b = 0; b < 3; ++b) {
      REQUIRE(stats->stats[b].size() == 3);
      for (size_t l = 0; l < 3; ++l) {
        INFO("batch " << b << " layer " << l);
        check_against(stats->stats[b][l], cap.outs[b][l], with_hist);
      }
    }
    // the ReLU-free BatchNorm output spreads over several bins; the accessors read the same numbers
    const LayerStats ls = stats->layer_stats(-2);
    CHECK(ls.mean == std::vector<double>{stats->stats[0][1].mean, stats->stats[1][1].mean, stats->stats[2][1].mean});
    CHECK(ls.near_zero[2] == stats->stats[2][1].near_zero);
    CHECK(stats->hooks.removed());
    if (with_hist) {
      const Tensor h = stats->hist(1);
      CHECK(h.shape() == Shape{40, 3});
      const std::vector<double> hv = th::values(h);
      const RefStat r = ref_stat(cap.outs[2][1]);
      for (size_t k = 0; k < 40; ++k) CHECK(hv[k * 3 + 2] == Approx(std::log1p(r.hist[k])).epsilon(1e-6));
      int used = 0;
      for (double c : r.hist) used += c > 0;
      CHECK(used >= 5);
    } else {
      th::check_throws([&] { stats->hist(0); }, {"hist", "with_hist = false"});
    }
    th::check_throws([&] { stats->layer_stats(3); }, {"layer_stats", "index 3", "[-3, 3)"});
    // a later get_preds neither records nor wipes the stats
    learn->get_preds();
    CHECK(stats->stats.size() == 3);
    CHECK(stats->hooks.removed());
  }
}

/// A HookCallback of one's own: the gradient of the Linear's output (is_forward = false) at every batch.
struct OutputGrads : HookCallback<Tensor> {
  std::vector<std::pair<Tensor, Tensor>> seen;  // (stored gradient, softmax(pred) - onehot(y)) / B per batch
  explicit OutputGrads(nn::Module* m) : HookCallback({.modules = {m}, .is_forward = false}) {}
  Tensor hook(nn::Module&, const Tensor&, const Tensor& grad) override { return grad.clone(); }
  void after_batch() override {
    if (learn->training && hooks[0].stored()) {
      NoGrad ng;
      const Tensor p = learn->pred.detach().softmax(-1);
      const Tensor expect = (p - one_hot(learn->yb[0], 3).to(DType::f32)) / double(p.size(0));
      seen.emplace_back(*hooks[0].stored(), expect);
    }
    HookCallback::after_batch();
  }
};

TEST_CASE("HookCallback: gradient hooks on chosen modules; include_paramless", "[actstats]") {
  auto learn = small_learner(24, 8);
  auto& net = static_cast<nn::Sequential&>(*learn->model);
  auto grads = std::make_shared<OutputGrads>(&net[4]);
  learn->fit(1, {}, {}, {grads});
  CHECK(grads->module_names == std::vector<std::string>{"4"});
  REQUIRE(grads->seen.size() == 3);
  for (auto& [got, expect] : grads->seen) {  // cross entropy (mean): d loss / d pred = (softmax(pred) - onehot) / B
    const std::vector<double> g = th::values(got), e = th::values(expect);
    REQUIRE(g.size() == e.size());
    for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == Approx(e[i]).margin(1e-6));
  }
  CHECK(grads->hooks.removed());
  auto all = std::make_shared<ActivationStats>(false, HookCallbackOptions{.include_paramless = true});
  learn->fit(1, {}, {}, {all});
  CHECK(all->module_names == std::vector<std::string>{"0", "1", "2", "3", "4"});
  REQUIRE(all->stats.size() == 3);
  CHECK(all->stats[0][2].near_zero >= 0.5);  // ReLU output of a BatchNorm: about half is zero
  CHECK(all->stats[0][3].mean == all->stats[0][2].mean);  // Flatten changes nothing
}

TEST_CASE("ActivationStats: every = k keeps the training batches with train_iter % k == 0", "[actstats]") {
  auto learn = small_learner(24, 8);
  auto stats = std::make_shared<ActivationStats>(true, 2);
  learn->add_cb(stats);
  auto& net = static_cast<nn::Sequential&>(*learn->model);
  Capture cap(*learn, {&net[0], &net[1], &net[4]});
  // the hooks are on only during the kept batches
  struct Peek : Callback {
    std::shared_ptr<ActivationStats> s;
    std::vector<bool> on;
    void after_pred() override {
      if (learn->training) on.push_back(!s->hooks.removed());
    }
  };
  auto peek = std::make_shared<Peek>();
  peek->s = stats;
  learn->fit(2, {}, {}, {peek});  // train_iter 0..5
  REQUIRE(cap.outs.size() == 6);
  CHECK(peek->on == std::vector<bool>{true, false, true, false, true, false});
  REQUIRE(stats->stats.size() == 3);
  for (size_t k = 0; k < 3; ++k)
    for (size_t l = 0; l < 3; ++l) {
      INFO("kept " << k << " layer " << l);
      check_against(stats->stats[k][l], cap.outs[2 * k][l], true);
    }
  CHECK(stats->hooks.removed());
  // a second fit starts a new list
  learn->fit(1);
  CHECK(stats->stats.size() == 2);  // train_iter 0 and 2
  th::check_throws([] { ActivationStats(false, -1); }, {"HookCallback", "every = -1"});
}

TEST_CASE("ActivationStats: hooks come off after CancelFit and after an exception", "[actstats]") {
  auto learn = small_learner(24, 8);
  auto stats = std::make_shared<ActivationStats>(true);
  learn->add_cb(stats);
  auto& net = static_cast<nn::Sequential&>(*learn->model);
  manual_seed(2);
  const Tensor x = randn({4, 1, 5, 5});

  learn->fit(1, {}, {}, {std::make_shared<Thrower>(1, true)});  // CancelFit in batch 1: after_fit runs
  CHECK(stats->stats.size() == 1);
  CHECK(stats->hooks.removed());

  CHECK_THROWS_WITH(learn->fit(1, {}, {}, {std::make_shared<Thrower>(2, false)}), Catch::Contains("boom at batch 2"));
  CHECK(stats->stats.size() == 2);  // batches 0 and 1 completed
  CHECK(stats->hooks.removed());    // at once: after_exception
  // the model used outside the loop records nothing
  learn->model->train();
  net(x);
  CHECK(stats->stats.size() == 2);
  // a new fit hooks once (not twice) and ends clean
  auto& stats_ref = *stats;
  Capture cap(*learn, {&net[0], &net[1], &net[4]});
  learn->fit(1);
  REQUIRE(stats_ref.stats.size() == 3);
  check_against(stats_ref.stats[2][0], cap.outs[2][0], true);
  CHECK(stats_ref.hooks.removed());
  // an exception before the first batch ended
  CHECK_THROWS(learn->fit(1, {}, {}, {std::make_shared<Thrower>(0, false)}));
  CHECK(stats_ref.hooks.removed());
  learn->fit(1);
  CHECK(stats_ref.stats.size() == 3);
  CHECK(stats_ref.hooks.removed());
}

TEST_CASE("ActivationStats on Fashion-MNIST: a small CNN, 20 batches, the plots", "[actstats][real]") {
  DataLoaders dls = fashion_mnist({.bs = 64, .num_workers = 0, .n_train = 20 * 64, .n_valid = 256});
  manual_seed(1);
  auto net = std::make_shared<nn::Sequential>(
      nn::ConvLayer({.in = 1, .out = 8, .stride = 2}),               // 14x14   "0.0" conv, "0.1" bn
      nn::ConvLayer({.in = 8, .out = 16, .stride = 2}),              // 7x7     "1.0", "1.1"
      nn::ResBlock(1, 16, 16),                                       //         "2.convpath.{0,1}.{0,1}"
      nn::ConvLayer({.in = 16, .out = 10, .stride = 2, .norm = nn::NormType::None, .act_cls = {}}),  // "3.0"
      std::make_shared<nn::Sequential>(nn::AdaptiveAvgPool2d(1), nn::Flatten()));
  Learner learn(std::move(dls), net, nn::CrossEntropyLossFlat(), {.metrics = {accuracy()}});
  learn.remove_cb<ProgressCallback>();
  auto stats = std::make_shared<ActivationStats>(true);
  learn.fit_one_cycle(1, 1e-2, 25, 1e5, 0.25, {}, {}, {stats});
  REQUIRE(stats->stats.size() == 20);
  REQUIRE(stats->n_layers() == 9);
  CHECK(stats->module_names[1] == "0.1");
  CHECK(stats->module_names[5] == "2.convpath.0.1");

  // BatchNorm in training mode: per channel, the output's batch mean is beta and its std gamma. At batch 0
  // gamma = 1, beta = 1e-3 (ConvLayer's init): overall mean 1e-3, std ~1. The ResBlock's last BN is
  // BatchZero (gamma = 0): its output is the constant beta, all of it near zero and in bin 0.
  const ActivationStat bn0 = stats->stats[0][1];
  CHECK(bn0.mean == Approx(1e-3).margin(1e-5));
  CHECK(bn0.std == Approx(1.0).margin(2e-3));
  const ActivationStat bz = stats->stats[0][7];
  CHECK(stats->module_names[7] == "2.convpath.1.1");
  CHECK(bz.mean == Approx(1e-3).margin(1e-6));
  CHECK(bz.std == Approx(0).margin(1e-6));
  CHECK(bz.near_zero == 1.0);
  CHECK(th::values(bz.hist)[0] == double(64 * 16 * 7 * 7));
  // the net learns a little in 20 batches (seen: valid loss 1.98, accuracy 0.24; chance: ln(10) = 2.30, 0.1)
  const std::vector<double> res = learn.recorder().values.back();
  INFO("train loss " << res[0] << ", valid loss " << res[1] << ", accuracy " << res[2]);
  CHECK(res[1] < 2.15);
  CHECK(res[2] > 0.18);

  const th::TempDir dir("strata_test_actstats");  // removed even when a REQUIRE below fails
  stats->plot_layer_stats(dir / "layer_stats.png", 1);
  th::check_png(dir / "layer_stats.png", 1200, 300);
  stats->color_dim(dir / "color_dim.png", -6);  // layer 3, "1.1" BatchNorm2d
  th::check_png(dir / "color_dim.png", 800, 400);
  stats->plot_layers(dir / "layers.png", {.cols = 3});
  th::check_png(dir / "layers.png", 3 * 480, 3 * 260);
  // bin 0 is drawn at the bottom: the BatchZero layer (all in bin 0) is bright at the bottom, dark on top
  stats->color_dim(dir / "bz.png", 7, {.width = 200, .height = 80});
  const Tensor bzimg = th::check_png(dir / "bz.png", 200, 80, 0.0);
  const std::vector<double> px = th::values(bzimg);  // [3, 80, 200]
  CHECK(px[size_t(79 * 200 + 5)] > 250);             // batch 0 (x < 10): red of viridis' yellow, bottom row
  CHECK(px[size_t(0 * 200 + 5)] < 90);               // red of viridis' dark purple, top row
  if (const char* keep = std::getenv("STRATA_KEEP_PLOTS")) {
    for (const char* f : {"layer_stats.png", "color_dim.png", "layers.png", "bz.png"})
      fs::copy_file(dir / f, fs::path(keep) / f, fs::copy_options::overwrite_existing);
  }
}

TEST_CASE("ActivationStats: plots after its Learner and model are gone (names and types copied at before_fit)",
          "[actstats]") {
  auto stats = std::make_shared<ActivationStats>(true);
  // remove_end = false: its hooks stay on the modules and come off in its destructor, after the model is gone
  auto kept = std::make_shared<ActivationStats>(false, HookCallbackOptions{.remove_end = false});
  std::weak_ptr<nn::Module> model;
  {
    auto learn = small_learner(12, 4);
    model = learn->model;
    learn->fit(1, 0.1, {}, {stats, kept});
    CHECK(!kept->hooks.removed());
  }
  REQUIRE(model.expired());  // the callbacks are the only owners left
  REQUIRE(stats->stats.size() == 3);
  CHECK(stats->n_layers() == 3);
  CHECK(stats->module_names == std::vector<std::string>{"0", "1", "4"});
  CHECK(stats->module_types == std::vector<std::string>{"Conv2d", "BatchNorm2d", "Linear"});
  CHECK(kept->module_types == stats->module_types);
  const th::TempDir dir("strata_test_actstats_gone");
  stats->plot_layers(dir / "layers.png", {.cols = 2, .width = 200, .height = 100});
  th::check_png(dir / "layers.png", 2 * 200, 2 * 100);
  stats->color_dim(dir / "cd.png", -1, {.width = 60, .height = 40});
  th::check_png(dir / "cd.png", 60, 40);
  if (const char* keep = std::getenv("STRATA_KEEP_PLOTS"))
    fs::copy_file(dir / "layers.png", fs::path(keep) / "layers_gone.png", fs::copy_options::overwrite_existing);
  kept.reset();  // removes hooks whose modules are gone: the handles hold only weak_ptrs to the hook lists
  SUCCEED();
}

TEST_CASE("colormap: linear between evenly spaced stops; viridis / inferno / blues at their samples", "[actstats]") {
  const std::vector<Color> two = {{0, 0, 0}, {100, 200, 255}}, three = {{0, 0, 0}, {200, 100, 50}, {0, 0, 0}};
  CHECK(colormap(two, 0.25) == Color{25, 50, 64});  // 255 / 4 = 63.75 rounds to 64
  CHECK(colormap(three, 0.25) == Color{100, 50, 25});
  CHECK(colormap(three, 0.5) == Color{200, 100, 50});
  CHECK(colormap(three, 0.75) == Color{100, 50, 25});
  CHECK(colormap(three, -1) == three[0]);  // clamped
  CHECK(colormap(two, 2) == two[1]);
  CHECK(colormap(two, std::numeric_limits<double>::infinity()) == two[1]);
  CHECK(colormap(two, std::nan("")) == two[0]);
  CHECK(colormap(std::vector<Color>{{1, 2, 3}}, 0.7) == Color{1, 2, 3});
  th::check_throws([] { colormap({}, 0.5); }, {"colormap", "no stops"});
  // matplotlib's samples at t = 0, 1/8, 1 and the middle of the first segment
  CHECK(viridis(0) == Color{68, 1, 84});
  CHECK(viridis(0.125) == Color{71, 45, 123});
  CHECK(viridis(1) == Color{253, 231, 37});
  CHECK(viridis(0.0625) == Color{70, 23, 104});  // (68 + 71) / 2 = 69.5 -> 70, (84 + 123) / 2 = 103.5 -> 104
  CHECK(inferno(0) == Color{0, 0, 4});
  CHECK(inferno(1) == Color{252, 255, 164});
  CHECK(blues(0) == Color{247, 251, 255});
  CHECK(blues(1) == Color{8, 48, 107});
}

}  // namespace test_activation_stats
