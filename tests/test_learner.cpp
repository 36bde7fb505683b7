// Learner: a tiny model trains; the exact order of fastai's events, and what runs and what is
// skipped after each Cancel*Exception (sequences written out by hand from fastai's learner.py);
// validation under NoGrad in eval mode; callbacks changing xb / pred / loss_grad; get_preds,
// predict and validate against hand-computed values; save/load round trip and the safetensors
// file; freeze/unfreeze with a splitter and train_bn; metrics against hand values; error texts;
// show_training_loop's layout.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/learn/learner.hpp"
#include "strata/nn/activation.hpp"
#include "strata/nn/linear.hpp"
#include "strata/nn/norm.hpp"

namespace test_learner {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

using th::blobs;
using th::blob_dls;

/// Drops the progress callback so tests print nothing.
void quiet(Learner& learn) {
  for (auto& cb : learn.sorted_cbs())
    if (cb->name().find("Progress") != std::string::npos) learn.remove_cb(cb);
}

/// Records every event it sees; may throw at the n-th occurrence of one event (or at every one).
struct Spy : Callback {
  std::vector<std::string> seen;
  std::optional<Event> raise_at;
  std::function<void()> raise;
  int skip = 0;         // occurrences of raise_at to let pass before raising
  bool always = false;  // raise at every occurrence
  bool fired = false;
  Spy() { order = 100; }
  void on(Event e) {
    seen.push_back(event_name(e));
    if (raise_at != e || (fired && !always)) return;
    if (skip > 0) {
      --skip;
      return;
    }
    fired = true;
    raise();
  }
  void before_fit() override { on(Event::before_fit); }
  void before_epoch() override { on(Event::before_epoch); }
  void before_train() override { on(Event::before_train); }
  void before_batch() override { on(Event::before_batch); }
  void after_pred() override { on(Event::after_pred); }
  void after_loss() override { on(Event::after_loss); }
  void before_backward() override { on(Event::before_backward); }
  void after_backward() override { on(Event::after_backward); }
  void before_step() override { on(Event::before_step); }
  void after_step() override { on(Event::after_step); }
  void after_cancel_batch() override { on(Event::after_cancel_batch); }
  void after_batch() override { on(Event::after_batch); }
  void after_cancel_train() override { on(Event::after_cancel_train); }
  void after_train() override { on(Event::after_train); }
  void before_validate() override { on(Event::before_validate); }
  void after_cancel_validate() override { on(Event::after_cancel_validate); }
  void after_validate() override { on(Event::after_validate); }
  void after_cancel_epoch() override { on(Event::after_cancel_epoch); }
  void after_epoch() override { on(Event::after_epoch); }
  void after_cancel_fit() override { on(Event::after_cancel_fit); }
  void after_fit() override { on(Event::after_fit); }
  void after_cancel_backward() override { on(Event::after_cancel_backward); }
  void after_cancel_step() override { on(Event::after_cancel_step); }
};

using Seq = std::vector<std::string>;
Seq operator+(Seq a, const Seq& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// fastai's loop, written out: a training batch, a validation batch, an epoch of 2 + 1 batches.
const Seq train_batch = {"before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
                         "before_step", "after_step", "after_batch"};
const Seq valid_batch = {"before_batch", "after_pred", "after_loss", "after_batch"};
const Seq valid_phase = Seq{"before_validate"} + valid_batch + Seq{"after_validate"};
const Seq full_epoch = Seq{"before_epoch", "before_train"} + train_batch + train_batch + Seq{"after_train"} +
                       valid_phase + Seq{"after_epoch"};

/// Runs fit(2) on 2 training batches and 1 validation batch with spy attached; returns what it saw.
Seq run_spy(const std::shared_ptr<Spy>& spy) {
  Learner learn(blob_dls(8, 4, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat(),
                {.opt_func = SGD(), .lr = 0.1, .cbs = {spy}});
  quiet(learn);
  learn.fit(2);
  return spy->seen;
}

template <class Ex>
std::shared_ptr<Spy> raiser(Event at, int skip = 0) {
  auto spy = std::make_shared<Spy>();
  spy->raise_at = at;
  spy->skip = skip;
  spy->raise = [] { throw Ex(); };
  return spy;
}

std::vector<double> param_values(nn::Module& m) {
  std::vector<double> out;
  for (auto& p : m.parameters())
    for (double v : th::values(p)) out.push_back(v);
  return out;
}

/// Sets a Linear's weight and bias from values.
void set_linear(nn::Linear& l, const std::vector<double>& w, const std::vector<double>& b) {
  NoGrad ng;
  l.weight.copy_(th::make(w, l.weight.shape()));
  l.bias.copy_(th::make(b, l.bias.shape()));
}

}  // namespace

TEST_CASE("Learner: a tiny classifier trains and its loss falls", "[learner]") {
  Learner learn(blob_dls(64, 32, 16), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat(),
                {.opt_func = SGD(0.9), .lr = 0.1, .metrics = {accuracy()}});
  quiet(learn);
  const std::vector<double> before = learn.validate();
  learn.fit(4);
  const std::vector<double> after = learn.validate();
  INFO("valid loss " << before[0] << " -> " << after[0] << ", accuracy " << before[1] << " -> " << after[1]);
  REQUIRE(before.size() == 2);
  CHECK(after[0] < 0.5 * before[0]);
  CHECK(after[0] < 0.2);
  CHECK(after[1] == 1.0);  // the blobs are 5 sigma apart
  CHECK(learn.n_epoch == 4);
  CHECK(learn.train_iter == 0);  // validate() starts a new "fit" (fastai's validation context)
}

TEST_CASE("Learner: fastai's exact event order for 2 epochs x (2 train + 1 valid) batches", "[learner]") {
  auto spy = std::make_shared<Spy>();
  CHECK(run_spy(spy) == Seq{"before_fit"} + full_epoch + full_epoch + Seq{"after_fit"});
}

TEST_CASE("Learner: each cancel exception skips exactly what fastai skips", "[learner]") {
  const Seq fit_start = {"before_fit"};
  const Seq fit_end = {"after_fit"};
  const Seq epoch_start = {"before_epoch", "before_train"};
  const Seq train_end_to_epoch_end = Seq{"after_train"} + valid_phase + Seq{"after_epoch"};

  SECTION("CancelBatchException in after_pred: after_cancel_batch, after_batch; the next batch runs") {
    const Seq b0 = {"before_batch", "after_pred", "after_cancel_batch", "after_batch"};
    CHECK(run_spy(raiser<CancelBatchException>(Event::after_pred)) ==
          fit_start + epoch_start + b0 + train_batch + train_end_to_epoch_end + full_epoch + fit_end);
  }
  SECTION("CancelStepException in before_step: only the step is skipped") {
    const Seq b0 = {"before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
                    "before_step", "after_cancel_step", "after_step", "after_batch"};
    CHECK(run_spy(raiser<CancelStepException>(Event::before_step)) ==
          fit_start + epoch_start + b0 + train_batch + train_end_to_epoch_end + full_epoch + fit_end);
  }
  SECTION("CancelBackwardException in before_backward: only the backward pass is skipped") {
    const Seq b0 = {"before_batch", "after_pred", "after_loss", "before_backward", "after_cancel_backward",
                    "after_backward", "before_step", "after_step", "after_batch"};
    CHECK(run_spy(raiser<CancelBackwardException>(Event::before_backward)) ==
          fit_start + epoch_start + b0 + train_batch + train_end_to_epoch_end + full_epoch + fit_end);
  }
  SECTION("CancelTrainException in before_batch: no after_batch; the rest of training skipped, validation runs") {
    CHECK(run_spy(raiser<CancelTrainException>(Event::before_batch)) ==
          fit_start + epoch_start + Seq{"before_batch", "after_cancel_train"} + train_end_to_epoch_end + full_epoch +
              fit_end);
  }
  SECTION("CancelValidException in the validation batch's after_pred") {
    // after_pred occurs twice in training first, so skip 2
    const Seq epoch0 = epoch_start + train_batch + train_batch +
                       Seq{"after_train", "before_validate", "before_batch", "after_pred", "after_cancel_validate",
                           "after_validate", "after_epoch"};
    CHECK(run_spy(raiser<CancelValidException>(Event::after_pred, 2)) == fit_start + epoch0 + full_epoch + fit_end);
  }
  SECTION("CancelEpochException in after_train: validation skipped, after_cancel_epoch, after_epoch, next epoch") {
    const Seq epoch0 = epoch_start + train_batch + train_batch + Seq{"after_train", "after_cancel_epoch", "after_epoch"};
    CHECK(run_spy(raiser<CancelEpochException>(Event::after_train)) == fit_start + epoch0 + full_epoch + fit_end);
  }
  SECTION("CancelFitException in after_step: no after_batch, straight to after_cancel_fit, after_fit") {
    const Seq b0 = {"before_batch", "after_pred", "after_loss", "before_backward", "after_backward",
                    "before_step", "after_step"};
    CHECK(run_spy(raiser<CancelFitException>(Event::after_step)) ==
          fit_start + epoch_start + b0 + Seq{"after_cancel_fit", "after_fit"});
  }
}

TEST_CASE("Learner: cancelled steps and backward passes leave the weights alone", "[learner]") {
  for (int which = 0; which < 2; ++which) {
    auto spy = which == 0 ? raiser<CancelStepException>(Event::before_step)
                          : raiser<CancelBackwardException>(Event::before_backward);
    spy->always = true;
    auto model = std::make_shared<nn::Linear>(2, 2);
    Learner learn(blob_dls(8, 4, 4), model, nn::CrossEntropyLossFlat(), {.opt_func = SGD(), .lr = 0.5, .cbs = {spy}});
    quiet(learn);
    const std::vector<double> w0 = param_values(*model);
    learn.fit(2);
    INFO((which == 0 ? "CancelStep" : "CancelBackward"));
    CHECK(param_values(*model) == w0);
    for (auto& p : model->parameters())  // zero_grad ran after every batch
      if (p.grad().defined()) CHECK(th::values(p.grad()) == std::vector<double>(size_t(p.numel()), 0.0));
  }
}

TEST_CASE("Learner: validation runs under NoGrad with the model in eval mode", "[learner]") {
  struct Probe : Callback {
    std::vector<std::string> log;
    void after_pred() override {
      log.push_back(std::string(learn->training ? "train" : "valid") + (is_grad_enabled() ? " grad" : " nograd") +
                    (learn->model->training ? " train-mode" : " eval-mode") +
                    (learn->pred.requires_grad() ? " graph" : " nograph") + (learn->logging ? " logging" : " quiet"));
    }
  };
  auto probe = std::make_shared<Probe>();
  Learner learn(blob_dls(4, 4, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat(), {.cbs = {probe}});
  quiet(learn);
  learn.fit(1);
  CHECK(probe->log == Seq{"train grad train-mode graph logging", "valid nograd eval-mode nograph logging"});
  probe->log.clear();
  learn.model->train();
  learn.validate();  // the validation context: NoGrad, eval mode, logging off
  learn.get_preds();
  learn.predict(th::make({0.5, 0.5}, {2}));
  CHECK(probe->log == Seq(3, "valid nograd eval-mode nograph quiet"));
  CHECK(learn.logging);
  CHECK(is_grad_enabled());
}

TEST_CASE("Learner: callbacks change xb, pred and loss_grad", "[learner]") {
  SECTION("xb zeroed in before_batch: the prediction is the bias") {
    struct ZeroInput : Callback {
      std::vector<double> preds;
      void before_batch() override { learn->xb[0] = mul(learn->xb[0], 0.0); }
      void after_pred() override {
        if (!learn->training) preds = th::values(learn->pred);
      }
    };
    auto cb = std::make_shared<ZeroInput>();
    auto model = std::make_shared<nn::Linear>(2, 2);
    Learner learn(blob_dls(4, 2, 4), model, nn::CrossEntropyLossFlat(), {.lr = 0.0, .cbs = {cb}});
    quiet(learn);
    learn.fit(1);
    const std::vector<double> b = th::values(model->bias);
    CHECK(cb->preds == std::vector<double>{b[0], b[1], b[0], b[1]});
  }
  SECTION("pred zeroed in after_pred: the loss of 2 equal logits is log 2") {
    struct ZeroPred : Callback {
      std::vector<double> losses;
      void after_pred() override { learn->pred = mul(learn->pred, 0.0); }
      void after_loss() override { losses.push_back(learn->loss.item<float>()); }
    };
    auto cb = std::make_shared<ZeroPred>();
    Learner learn(blob_dls(8, 4, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat(), {.cbs = {cb}});
    quiet(learn);
    learn.fit(1);
    REQUIRE(cb->losses.size() == 3);
    for (double l : cb->losses) CHECK(l == Approx(std::log(2.0)).epsilon(1e-6));
  }
  SECTION("loss_grad zeroed in after_loss: nothing learns (plain SGD)") {
    struct ZeroLoss : Callback {
      void after_loss() override {
        if (learn->training) learn->loss_grad = mul(learn->loss_grad, 0.0);
      }
    };
    auto model = std::make_shared<nn::Linear>(2, 2);
    Learner learn(blob_dls(8, 4, 4), model, nn::CrossEntropyLossFlat(),
                  {.opt_func = SGD(), .lr = 1.0, .cbs = {std::make_shared<ZeroLoss>()}});
    quiet(learn);
    const std::vector<double> w0 = param_values(*model);
    learn.fit(2);
    CHECK(param_values(*model) == w0);
    learn.remove_cb<ZeroLoss>();
    learn.fit(1);  // without it, it learns
    CHECK(param_values(*model) != w0);
  }
}

TEST_CASE("Learner: get_preds, predict and validate against hand-computed values", "[learner]") {
  // valid set of 10 items in batches 4, 4, 2 (validate weights the batches by size)
  auto model = std::make_shared<nn::Linear>(2, 2);
  const std::vector<double> w = {0.5, -1.0, -0.25, 2.0}, b = {0.1, -0.3};
  set_linear(*model, w, b);
  Learner learn(blob_dls(8, 10, 4), model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy(), error_rate()}});
  quiet(learn);
  auto ds = blobs(10, 2);
  const Batch all = ds->get_batch({0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  const std::vector<double> x = th::values(all.xb[0]), y = th::values(all.yb[0]);
  std::vector<double> probs, labels;
  double loss = 0, correct = 0;
  for (size_t i = 0; i < 10; ++i) {
    const double z0 = w[0] * x[2 * i] + w[1] * x[2 * i + 1] + b[0];
    const double z1 = w[2] * x[2 * i] + w[3] * x[2 * i + 1] + b[1];
    const double m = std::max(z0, z1), s = std::exp(z0 - m) + std::exp(z1 - m);
    probs.push_back(std::exp(z0 - m) / s);
    probs.push_back(std::exp(z1 - m) / s);
    labels.push_back(z1 > z0 ? 1 : 0);
    loss += -((y[i] == 1 ? z1 : z0) - m - std::log(s));
    correct += labels.back() == y[i];
  }
  loss /= 10;

  auto [p, t] = learn.get_preds();
  th::check_close(th::values(p), probs, 1e-6, 1e-5, "get_preds probabilities");
  CHECK(p.shape() == Shape{10, 2});
  CHECK(th::values(t) == y);
  auto [d, t2] = learn.get_preds(nullptr, true);
  CHECK(th::values(d) == labels);
  auto [raw, t3] = learn.get_preds(nullptr, false, false);  // no activation: the logits
  CHECK(th::values(raw)[1] == Approx(w[2] * x[0] + w[3] * x[1] + b[1]).epsilon(1e-5));

  const std::vector<double> v = learn.validate();
  REQUIRE(v.size() == 3);
  CHECK(v[0] == Approx(loss).epsilon(1e-5));
  CHECK(v[1] == Approx(correct / 10).epsilon(1e-12));
  CHECK(v[2] == Approx(1 - correct / 10).epsilon(1e-12));
  CHECK(learn.validate(&learn.dls.train).size() == 3);
  // the shuffled training loader: every item, in dataset order
  auto [tp, tt] = learn.get_preds(&learn.dls.train);
  CHECK(th::values(tt) == std::vector<double>{0, 1, 0, 1, 0, 1, 0, 1});
  CHECK(tp.shape() == Shape{8, 2});

  auto [label, pr] = learn.predict(select(all.xb[0], 0, 3));
  CHECK(label.dim() == 0);
  CHECK(label.item<int64_t>() == int64_t(labels[3]));
  th::check_close(th::values(pr), {probs[6], probs[7]}, 1e-6, 1e-5, "predict probabilities");
  CHECK(learn.model->training == false);
}

TEST_CASE("Learner: save then load gives identical predictions; the file is valid safetensors", "[learner]") {
  const std::string dir = (std::filesystem::temp_directory_path() / "strata_test_learner").string();
  std::filesystem::remove_all(dir);
  Learner learn(blob_dls(16, 8, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat(),
                {.opt_func = Adam(), .lr = 0.01, .path = dir});
  quiet(learn);
  learn.fit(1);
  const std::string file = learn.save("stage1");
  CHECK(file == dir + "/models/stage1.safetensors");
  {  // the safetensors layout: u64 little-endian header size, a JSON object, then the data
    std::ifstream in(file, std::ios::binary);
    unsigned char len[8];
    in.read(reinterpret_cast<char*>(len), 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = n << 8 | len[i];
    std::string header(n, ' ');
    in.read(header.data(), std::streamsize(n));
    REQUIRE(in.good());
    CHECK(header.front() == '{');
    CHECK(header.find("\"weight\"") != std::string::npos);
    CHECK(header.find("\"opt/hypers.0.lr\"") != std::string::npos);
    CHECK(header.find("\"opt/state.0.0.grad_avg\"") != std::string::npos);
  }
  const auto entries = load_safetensors(file);
  CHECK(entries.size() >= 4);

  auto [p0, t0] = learn.get_preds();
  Learner other(blob_dls(16, 8, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat(),
                {.opt_func = Adam(), .lr = 0.5, .path = dir});
  quiet(other);
  CHECK(th::values(other.get_preds().first) != th::values(p0));
  other.load("stage1");
  CHECK(th::values(other.get_preds().first) == th::values(p0));
  REQUIRE(other.opt != nullptr);
  CHECK(other.opt->hypers()[0].at("lr") == 0.01);
  CHECK(th::values(other.opt->state_for(0)[0].tensors.at("grad_avg")) ==
        th::values(learn.opt->state_for(0)[0].tensors.at("grad_avg")));

  learn.save("weights_only", false);
  for (auto& [k, t] : load_safetensors(dir + "/models/weights_only.safetensors")) CHECK(k.rfind("opt/", 0) != 0);

  th::check_throws([&] { other.load("missing"); }, {"missing.safetensors"});
  Learner wrong(blob_dls(16, 8, 4), std::make_shared<nn::Linear>(2, 3), nn::CrossEntropyLossFlat(), {.path = dir});
  th::check_throws([&] { wrong.load("stage1"); }, {"stage1.safetensors", "weight", "[3, 2]", "[2, 2]"});
  std::filesystem::remove_all(dir);
}

TEST_CASE("Learner: freeze / unfreeze with a splitter; train_bn keeps norm layers training", "[learner]") {
  for (bool train_bn : {true, false}) {
    INFO("train_bn " << train_bn);
    auto body = std::make_shared<nn::Linear>(2, 4);
    auto bn = std::make_shared<nn::BatchNorm1d>(4);
    auto head = std::make_shared<nn::Linear>(4, 2);
    auto model = std::make_shared<nn::Sequential>(body, bn, nn::ReLU(), head);
    Splitter split = [](nn::Module& m) {
      auto& s = static_cast<nn::Sequential&>(m);
      std::vector<Tensor> g0 = s[0].parameters(), g1 = s[1].parameters();
      g0.insert(g0.end(), g1.begin(), g1.end());
      return ParamGroups{g0, s[3].parameters()};
    };
    Learner learn(blob_dls(16, 4, 4), model, nn::CrossEntropyLossFlat(),
                  {.opt_func = SGD(), .lr = 0.1, .splitter = split, .train_bn = train_bn});
    quiet(learn);
    learn.freeze();
    REQUIRE(learn.opt->param_groups.size() == 2);
    CHECK_FALSE(body->weight.requires_grad());
    CHECK_FALSE(body->bias.requires_grad());
    CHECK(bn->weight.requires_grad() == train_bn);
    CHECK(bn->bias.requires_grad() == train_bn);
    CHECK(head->weight.requires_grad());
    // fastai's create_opt: norm params force_train (train_bn); norm params and biases get no weight decay
    CHECK(learn.opt->state_of(bn->weight).force_train == train_bn);
    CHECK_FALSE(learn.opt->state_of(body->weight).force_train);
    CHECK_FALSE(learn.opt->state_of(bn->weight).do_wd);
    CHECK_FALSE(learn.opt->state_of(head->bias).do_wd);
    CHECK(learn.opt->state_of(head->weight).do_wd);

    const std::vector<double> body0 = param_values(*body), bn0 = param_values(*bn), head0 = param_values(*head);
    learn.fit(1);
    CHECK(param_values(*body) == body0);
    CHECK((param_values(*bn) != bn0) == train_bn);
    CHECK(param_values(*head) != head0);

    learn.unfreeze();
    for (auto& p : model->parameters()) CHECK(p.requires_grad());
    learn.fit(1);
    CHECK(param_values(*body) != body0);
  }
}

TEST_CASE("metrics: accuracy, error_rate, top_k_accuracy, mse, mae, rmse against hand values", "[learner][metrics]") {
  // 4 items, 3 classes: argmax 1, 0, 2, 2; targets 1, 0, 0, 1 -> 2 of 4 right
  const Tensor pred = th::make({0.1, 0.9, 0.0, 0.8, 0.1, 0.1, 0.2, 0.3, 0.5, 0.3, 0.3, 0.4}, {4, 3});
  const Tensor y = th::make({1, 0, 0, 1}, {4}, DType::i64);
  auto value = [&](Metric m, const Tensor& p, const Tensor& t) {
    m.reset();
    m.accumulate(p, {t});
    return m.value();
  };
  CHECK(value(accuracy(), pred, y) == 0.5);
  CHECK(value(error_rate(), pred, y) == 0.5);
  // top-2: item 2's target (0.2) has 0.3 and 0.5 above it; the others are within the top 2
  CHECK(value(top_k_accuracy(2), pred, y) == 0.75);
  CHECK(value(top_k_accuracy(1), pred, y) == 0.5);
  CHECK(value(top_k_accuracy(3), pred, y) == 1.0);

  // batches are weighted by size: (2 right of 4) + (2 right of 2) = 4 of 6
  Metric acc = accuracy();
  acc.reset();
  CHECK(std::isnan(acc.value()));
  acc.accumulate(pred, {y});
  acc.accumulate(th::make({1, 0, 0, 1}, {2, 2}), {th::make({0, 1}, {2}, DType::i64)});
  CHECK(acc.value() == Approx(4.0 / 6).epsilon(1e-15));
  CHECK(acc.name == "accuracy");

  // regression: preds 1 2 3 | 4, targets 1 2 5 | 2
  auto two_batches = [](Metric m) {
    m.reset();
    m.accumulate(th::make({1, 2, 3}, {3}), {th::make({1, 2, 5}, {3})});
    m.accumulate(th::make({4}, {1}), {th::make({2}, {1})});
    return m.value();
  };
  CHECK(two_batches(mse()) == Approx((4.0 + 4.0) / 4).epsilon(1e-12));  // (4/3 * 3 + 4 * 1) / 4
  CHECK(two_batches(mae()) == Approx((2.0 + 2.0) / 4).epsilon(1e-12));
  CHECK(two_batches(rmse()) == Approx(std::sqrt(8.0 / 4)).epsilon(1e-12));

  th::check_throws([&] { value(accuracy(), pred, th::make({1, 0}, {2}, DType::i64)); },
                   {"accuracy", "[4, 3]", "[2]"});
}

TEST_CASE("Learner: a model/loss shape mismatch is a strata::Error naming both shapes", "[learner]") {
  auto model = std::make_shared<nn::Linear>(2, 3);  // 3 outputs, targets have 2 values per item
  auto ds = std::make_shared<TensorDataset>(std::vector<Tensor>{randn({8, 2})}, std::vector<Tensor>{randn({8, 2})});
  auto extra = std::make_shared<Spy>();
  Learner learn({.train = DataLoader(ds, {.bs = 4}), .valid = DataLoader(ds, {.bs = 4})}, model, nn::MSELossFlat());
  quiet(learn);
  th::check_throws([&] { learn.fit(1, {}, {}, {extra}); }, {"MSELossFlat", "[4, 3]", "[4, 2]"});
  // the Learner is left usable: no batch or graph held, the fit's callbacks removed, grads zero
  CHECK_FALSE(learn.pred.defined());
  CHECK(learn.get_cb<Spy>() == nullptr);
  CHECK(is_grad_enabled());
  CHECK(extra->seen == Seq{"before_fit", "before_epoch", "before_train", "before_batch", "after_pred"});
}

TEST_CASE("Learner: show_training_loop lists the callbacks of each event in fastai's layout", "[learner]") {
  struct Logger : Callback {
    Logger() { order = 5; }
    std::string name() const override { return "Logger"; }
    void before_fit() override {}
    void after_batch() override {}
    void after_cancel_train() override {}
  };
  Learner learn(blob_dls(4, 4, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat());
  for (auto& cb : learn.sorted_cbs())
    if (cb->name() != "TrainEvalCallback") learn.remove_cb(cb);
  learn.add_cb(std::make_shared<Logger>());
  const std::string want =
      "Start Fit\n"
      "   - before_fit     : [TrainEvalCallback, Logger]\n"
      "  Start Epoch Loop\n"
      "     - before_epoch   : []\n"
      "    Start Train\n"
      "       - before_train   : [TrainEvalCallback]\n"
      "      Start Batch Loop\n"
      "         - before_batch   : []\n"
      "         - after_pred     : []\n"
      "         - after_loss     : []\n"
      "         - before_backward: []\n"
      "         - after_cancel_backward: []\n"
      "         - after_backward : []\n"
      "         - before_step    : []\n"
      "         - after_cancel_step: []\n"
      "         - after_step     : []\n"
      "         - after_cancel_batch: []\n"
      "         - after_batch    : [TrainEvalCallback, Logger]\n"
      "      End Batch Loop\n"
      "    End Train\n"
      "     - after_cancel_train: [Logger]\n"
      "     - after_train    : []\n"
      "    Start Valid\n"
      "       - before_validate: [TrainEvalCallback]\n"
      "      Start Batch Loop\n"
      "         - **CBs same as train batch**: []\n"
      "      End Batch Loop\n"
      "    End Valid\n"
      "     - after_cancel_validate: []\n"
      "     - after_validate : []\n"
      "  End Epoch Loop\n"
      "   - after_cancel_epoch: []\n"
      "   - after_epoch    : []\n"
      "End Fit\n"
      " - after_cancel_fit: []\n"
      " - after_fit      : []\n";
  std::ostringstream out;
  auto* old = std::cout.rdbuf(out.rdbuf());
  const std::string got = learn.show_training_loop();
  std::cout.rdbuf(old);
  CHECK(got == want);
  CHECK(out.str() == want);
}

TEST_CASE("Learner: callbacks run sorted by order; add, remove and get by type", "[learner]") {
  struct A : Callback {
    std::vector<std::string>* log;
    explicit A(std::vector<std::string>* l, int o) : log(l) { order = o; }
    void before_fit() override { log->push_back(name() + std::to_string(order)); }
  };
  struct B : A {
    using A::A;
  };
  std::vector<std::string> log;
  Learner learn(blob_dls(4, 4, 4), std::make_shared<nn::Linear>(2, 2), nn::CrossEntropyLossFlat());
  std::vector<std::string> defaults;  // fastai's default callbacks
  for (auto& cb : learn.sorted_cbs()) defaults.push_back(cb->name());
  CHECK(defaults == Seq{"TrainEvalCallback", "Recorder", "ProgressCallback"});
  CHECK(&learn.recorder() == learn.get_cb<Recorder>().get());
  quiet(learn);
  auto b = std::make_shared<B>(&log, 3);
  learn.add_cb(std::make_shared<A>(&log, 7)).add_cb(b).add_cb(std::make_shared<A>(&log, 3));
  learn(Event::before_fit);
  CHECK(log == Seq{"B3", "A3", "A7"});
  CHECK(learn.get_cb<B>() == b);
  CHECK(b->learn == &learn);
  th::check_throws([&] { learn.add_cb(b); }, {"add_cb", "B"});
  learn.remove_cb(b);
  CHECK(b->learn == nullptr);
  CHECK(learn.get_cb<B>() == nullptr);
  learn.remove_cb<A>();
  CHECK(learn.get_cb<A>() == nullptr);
  CHECK(learn.get_cb<TrainEvalCallback>() != nullptr);
}

}  // namespace test_learner
