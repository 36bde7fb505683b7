// vision_learner: fastai's create_head layer list (written out from fastai/vision/learner.py and
// LinBnDrop, not from our code) and a hand-computed forward; create_body's cut (fastai's
// has_pool_type rule and its own test model) and the kept torchvision names; the n_in adaptation of
// the first conv against closed forms; the resnet splitter's three groups against parameter counts
// computed from the architecture; pretrained loading (torchvision-keyed full state dicts, saved
// bodies, Learner checkpoints), freezing with train_bn, and the errors naming the bad key; fine_tune's
// two phases against fastai's one-cycle formulas written out in closed form.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <memory>
#include <numbers>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/apps/vision_learner.hpp"

namespace test_vision_learner {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

void quiet(Learner& learn) {
  for (auto& cb : learn.sorted_cbs())
    if (cb->name().find("Progress") != std::string::npos) learn.remove_cb(cb);
}

/// n random images [n, C, S, S] with labels i % c; train and valid loaders (bs divides n).
DataLoaders image_dls(int64_t n, int64_t C, int64_t S, int64_t c, int64_t bs, uint64_t seed = 1) {
  manual_seed(seed);
  auto make = [&](int64_t m) {
    std::vector<double> y(static_cast<size_t>(m));
    for (int64_t i = 0; i < m; ++i) y[size_t(i)] = double(c ? i % c : 0);
    return std::make_shared<TensorDataset>(std::vector<Tensor>{randn({m, C, S, S})},
                                           std::vector<Tensor>{from_vector(y, {m}, {.dtype = DType::i64})});
  };
  return {.train = DataLoader(make(n), {.bs = bs, .shuffle = true, .seed = 3}), .valid = DataLoader(make(bs), {.bs = bs}), .c = c};
}

std::vector<std::pair<std::string, Shape>> param_shapes(nn::Module& m) {
  std::vector<std::pair<std::string, Shape>> out;
  for (auto& [k, t] : m.named_parameters()) out.emplace_back(k, t.shape());
  return out;
}
std::vector<std::string> type_names(const nn::Sequential& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size(); ++i) out.push_back(s[i].type_name());
  return out;
}
int64_t numel_of(const std::vector<Tensor>& ts) {
  int64_t n = 0;
  for (const auto& t : ts) n += t.numel();
  return n;
}
bool same_values(const Tensor& a, const Tensor& b) { return a.shape() == b.shape() && th::values(a) == th::values(b); }
Tensor sd_get(nn::Module& m, const std::string& key) {
  for (auto& [k, t] : m.state_dict())
    if (k == key) return t;
  FAIL("no key " << key);
  return {};
}

/// arch::resnet18 built without drawing 11M random numbers (the tests below read shapes, names and
/// loaded values, never the initial ones).
VisionArch noinit(VisionArch a) {
  a.make = [make = a.make](int64_t n_in) {
    nn::init::NoInit ni;
    return make(n_in);
  };
  return a;
}
std::shared_ptr<nn::ResNet> resnet18_noinit_model() {
  nn::init::NoInit ni;
  return nn::resnet18();
}

}  // namespace

TEST_CASE("create_head: fastai's layers for nf = 512, n_out = 10", "[vision_learner]") {
  // fastai: lin_ftrs = [1024, 512, 10], ps = [0.25, 0.5], bns = [True, True, True], actns = [ReLU, None];
  // [AdaptiveConcatPool2d, Flatten] + LinBnDrop(1024, 512, p=.25, ReLU) + LinBnDrop(512, 10, p=.5)
  auto head = create_head(512, 10);
  CHECK(type_names(*head) == std::vector<std::string>{"AdaptiveConcatPool2d", "Flatten", "BatchNorm1d", "Dropout",
                                                      "Linear", "ReLU", "BatchNorm1d", "Dropout", "Linear"});
  CHECK(param_shapes(*head) == std::vector<std::pair<std::string, Shape>>{
                                   {"2.weight", {1024}}, {"2.bias", {1024}}, {"4.weight", {512, 1024}},
                                   {"6.weight", {512}}, {"6.bias", {512}}, {"8.weight", {10, 512}}});
  CHECK(dynamic_cast<nn::Dropout&>((*head)[3]).p == 0.25);
  CHECK(dynamic_cast<nn::Dropout&>((*head)[7]).p == 0.5);
  auto& bn = dynamic_cast<nn::BatchNorm1d&>((*head)[2]);  // fastai's BatchNorm(): weight 1, bias 1e-3
  CHECK(th::values(bn.weight) == std::vector<double>(1024, 1.0));
  th::check_close(th::values(bn.bias), std::vector<double>(1024, 1e-3), 1e-9, 0, "bn bias");

  // lin_first: Dropout(.25) first, ps = [.5] so zip runs one LinBnDrop (Linear, ReLU, BN, Dropout), then Linear(512, 10)
  auto lf = create_head(512, 10, {.lin_first = true});
  CHECK(type_names(*lf) == std::vector<std::string>{"AdaptiveConcatPool2d", "Flatten", "Dropout", "Linear", "ReLU",
                                                    "BatchNorm1d", "Dropout", "Linear"});
  CHECK(param_shapes(*lf) == std::vector<std::pair<std::string, Shape>>{
                                 {"3.weight", {512, 1024}}, {"5.weight", {512}}, {"5.bias", {512}},
                                 {"7.weight", {10, 512}}, {"7.bias", {10}}});
  // no concat pool, no first bn, no hidden layer, p = 0 (no Dropout), bn_final, y_range
  auto small = create_head(512, 10, {.lin_ftrs = {}, .ps = 0, .concat_pool = false, .first_bn = false,
                                     .bn_final = true, .y_range = std::pair{0.0, 5.0}});
  CHECK(type_names(*small) == std::vector<std::string>{"AdaptiveAvgPool2d", "Flatten", "Linear", "BatchNorm1d", "SigmoidRange"});
  CHECK(param_shapes(*small) == std::vector<std::pair<std::string, Shape>>{
                                    {"2.weight", {10, 512}}, {"2.bias", {10}}, {"3.weight", {10}}, {"3.bias", {10}}});
  CHECK(*dynamic_cast<nn::BatchNorm1d&>((*small)[3]).options.momentum == 0.01);
}

TEST_CASE("create_head: eval forward equals the layers computed by hand", "[vision_learner]") {
  manual_seed(5);
  const int64_t B = 2, nf = 3, H = 2, W = 3, hid = 4, n_out = 2;
  auto head = create_head(nf, n_out, {.lin_ftrs = {hid}});
  apply_init(*head);
  head->eval();
  const Tensor x = th::random({B, nf, H, W}, DType::f32);
  const Tensor out = (*head)(x);
  REQUIRE(out.shape() == Shape{B, n_out});
  const auto w1 = th::values(dynamic_cast<nn::Linear&>((*head)[4]).weight);  // [hid, 2nf]
  const auto w2 = th::values(dynamic_cast<nn::Linear&>((*head)[8]).weight);  // [n_out, hid]
  const double s = 1 / std::sqrt(1 + 1e-5);  // running stats 0 / 1, weight 1, bias 1e-3
  std::vector<double> want;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> f(static_cast<size_t>(2 * nf));
    for (int64_t c = 0; c < nf; ++c) {  // max pool channels first, then average
      double mx = -1e30, sum = 0;
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j) {
          const double v = th::at(x, {b, c, i, j});
          mx = std::max(mx, v);
          sum += v;
        }
      f[size_t(c)] = mx * s + 1e-3;
      f[size_t(nf + c)] = sum / double(H * W) * s + 1e-3;
    }
    std::vector<double> h(static_cast<size_t>(hid));
    for (int64_t k = 0; k < hid; ++k) {
      double a = 0;
      for (int64_t c = 0; c < 2 * nf; ++c) a += w1[size_t(k * 2 * nf + c)] * f[size_t(c)];
      h[size_t(k)] = std::max(a, 0.0) * s + 1e-3;
    }
    for (int64_t o = 0; o < n_out; ++o) {
      double a = 0;
      for (int64_t k = 0; k < hid; ++k) a += w2[size_t(o * hid + k)] * h[size_t(k)];
      want.push_back(a);
    }
  }
  th::check_close(th::values(out), want, 1e-5, 1e-5, "head forward");
}

TEST_CASE("create_body: fastai's cut rule and the model's own names", "[vision_learner]") {
  // fastai's test: Conv2d, BatchNorm2d, AvgPool2d(1), Linear -> cut before the pool (2 layers); cut = 3 keeps 3
  auto tst = [] {
    return std::make_shared<nn::Sequential>(nn::Conv2d({.in = 3, .out = 5, .k = 3}), nn::BatchNorm2d(5),
                                            nn::AvgPool2d(1), nn::Linear(3, 4));
  };
  CHECK(create_body(tst())->size() == 2);
  CHECK(create_body(tst(), 3)->size() == 3);
  CHECK(create_body(tst(), -1)->size() == 3);
  th::check_throws([&] { create_body(tst(), 7); }, {"create_body", "cut = 7", "4 children"});
  th::check_throws([&] { create_body(std::make_shared<nn::Sequential>(nn::Linear(2, 2))); }, {"without a pooling child"});

  auto model = resnet18_noinit_model();
  auto body = create_body(model);  // the has_pool_type rule gives torchvision's -2
  CHECK(body->names == std::vector<std::string>{"conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"});
  CHECK(create_body(model, -2)->names == body->names);
  std::vector<std::string> want_keys, got_keys;
  for (auto& [k, t] : model->state_dict())
    if (k.rfind("fc.", 0) != 0) want_keys.push_back(k);
  for (auto& [k, t] : body->state_dict()) got_keys.push_back(k);
  CHECK(got_keys == want_keys);
  CHECK(sd_get(*body, "layer4.1.bn2.running_var").is_same(sd_get(*model, "layer4.1.bn2.running_var")));  // shared layers
  NoGrad ng;
  body->eval();
  CHECK((*body)(zeros({1, 3, 32, 32})).shape() == Shape{1, 512, 1, 1});
  CHECK(num_features_model(*body, 3) == 512);
}

TEST_CASE("create_body: n_in adapts the first conv as fastai's _update_first_layer", "[vision_learner]") {
  manual_seed(11);
  auto tst = [] {
    return std::make_shared<nn::Sequential>(nn::Conv2d({.in = 3, .out = 4, .k = 3, .pad = 1}), nn::ReLU(),
                                            nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(4, 2));
  };
  for (int64_t n_in : {1, 2, 5}) {
    auto m = tst();
    const Tensor w = dynamic_cast<nn::Conv2d&>((*m)[0]).weight.detach().clone();  // [4, 3, 3, 3]
    auto body = create_body(m, {}, n_in);
    const auto& conv = dynamic_cast<nn::Conv2d&>((*body)[0]);
    REQUIRE(conv.weight.shape() == Shape{4, n_in, 3, 3});
    CHECK(conv.options.in == n_in);
    CHECK(conv.weight.requires_grad());
    std::vector<double> want;
    for (int64_t o = 0; o < 4; ++o)
      for (int64_t c = 0; c < n_in; ++c)
        for (int64_t i = 0; i < 3; ++i)
          for (int64_t j = 0; j < 3; ++j) {
            if (n_in == 1) want.push_back(th::at(w, {o, 0, i, j}) + th::at(w, {o, 1, i, j}) + th::at(w, {o, 2, i, j}));
            else if (n_in == 2) want.push_back(th::at(w, {o, c, i, j}) * 1.5);
            else want.push_back(c < 3 ? th::at(w, {o, c, i, j}) : 0.0);
          }
    th::check_close(th::values(conv.weight), want, 1e-6, 1e-6, "adapted weight n_in=" + std::to_string(n_in));
    NoGrad ng;
    CHECK((*body)(zeros({2, n_in, 5, 5})).shape() == Shape{2, 4, 5, 5});
  }
  th::check_throws([] { create_body(std::make_shared<nn::Sequential>(nn::Linear(3, 3), nn::AdaptiveAvgPool2d(1)), {}, 1); },
                   {"update_first_layer", "Linear", "expected a Conv2d"});
}

TEST_CASE("vision_learner: resnet18 splits into fastai's 3 groups", "[vision_learner]") {
  auto dls = image_dls(4, 3, 32, 10, 2);
  auto learn = vision_learner(dls, noinit(arch::resnet18()));
  quiet(learn);
  CHECK(learn.opt == nullptr);  // not pretrained: not frozen (no optimizer yet)
  learn.create_opt();
  REQUIRE(learn.opt->param_groups.size() == 3);
  auto conv = [](int64_t i, int64_t o, int64_t k) { return i * o * k * k; };
  auto bn = [](int64_t c) { return 2 * c; };
  auto block = [&](int64_t i, int64_t o) {  // BasicBlock with its downsample when the shape changes
    return conv(i, o, 3) + bn(o) + conv(o, o, 3) + bn(o) + (i != o ? conv(i, o, 1) + bn(o) : 0);
  };
  auto layer = [&](int64_t i, int64_t o) { return block(i, o) + block(o, o); };
  const int64_t g0 = conv(3, 64, 7) + bn(64) + layer(64, 64) + layer(64, 128);
  const int64_t g1 = layer(128, 256) + layer(256, 512);
  const int64_t g2 = bn(1024) + 1024 * 512 + bn(512) + 512 * 10;
  CHECK(numel_of(learn.opt->param_groups[0].params) == g0);
  CHECK(numel_of(learn.opt->param_groups[1].params) == g1);
  CHECK(numel_of(learn.opt->param_groups[2].params) == g2);
  CHECK(learn.opt->param_groups[0].params.size() == 30);
  CHECK(learn.opt->param_groups[1].params.size() == 30);
  CHECK(learn.opt->param_groups[2].params.size() == 6);
  CHECK(learn.model->num_parameters() == g0 + g1 + g2);
  // fastai's layout: model[0] body, model[1] head; the body keeps torchvision's names
  CHECK(learn.model->state_dict().front().first == "0.conv1.weight");
  CHECK(&learn.body() == &body_of(learn));
  CHECK(&learn.head() == &head_of(learn));

  // xresnet18: cut -4 (stem, maxpool, 4 stages), split {stem, the rest, head} (fastai's _xresnet_split)
  auto x = vision_learner(dls, noinit(arch::xresnet18()));
  quiet(x);
  CHECK(x.body().named_children().size() == 8);
  x.create_opt();
  REQUIRE(x.opt->param_groups.size() == 3);
  CHECK(numel_of(x.opt->param_groups[0].params) == conv(3, 32, 3) + bn(32) + conv(32, 32, 3) + bn(32) + conv(32, 64, 3) + bn(64));
  CHECK(numel_of(x.opt->param_groups[2].params) == g2);
}

TEST_CASE("vision_learner: a torchvision-keyed resnet18 file fills the body and freezes it", "[vision_learner]") {
  th::TempDir dir("strata_vision");
  manual_seed(21);
  auto src = resnet18_noinit_model();
  {  // a different constant in every tensor, random values in conv1
    NoGrad ng;
    double v = 0;
    for (auto& [k, t] : src->state_dict()) t.fill_(v += 0.25);
    sd_get(*src, "conv1.weight").copy_(randn({64, 3, 7, 7}));
  }
  const std::string file = dir / "resnet18.safetensors";
  save_safetensors(file, src->state_dict());  // conv1.weight ... fc.weight, fc.bias (torchvision's keys)

  auto dls = image_dls(4, 3, 32, 10, 2);
  auto learn = vision_learner(dls, arch::resnet18(), {.pretrained = file});
  quiet(learn);
  CHECK(same_values(sd_get(*learn.model, "0.conv1.weight"), sd_get(*src, "conv1.weight")));
  CHECK(same_values(sd_get(*learn.model, "0.layer4.1.bn2.running_mean"), sd_get(*src, "layer4.1.bn2.running_mean")));
  CHECK(same_values(sd_get(*learn.model, "0.layer2.0.downsample.0.weight"), sd_get(*src, "layer2.0.downsample.0.weight")));
  REQUIRE(learn.opt != nullptr);  // frozen: only the head's group trains, norm layers too (train_bn)
  CHECK(learn.opt->frozen_idx() == 2);
  CHECK_FALSE(sd_get(*learn.model, "0.layer3.0.conv1.weight").requires_grad());
  CHECK(sd_get(*learn.model, "0.layer3.0.bn1.weight").requires_grad());
  CHECK(sd_get(*learn.model, "1.4.weight").requires_grad());

  // one grey channel: fastai sums the pretrained first conv over its 3 input channels
  auto grey = vision_learner(image_dls(4, 1, 32, 10, 2), arch::resnet18(), {.pretrained = file});
  const Tensor w = sd_get(*src, "conv1.weight");
  th::check_close(sd_get(*grey.model, "0.conv1.weight"), sum(w, {1}, true), 1e-6, 1e-6, "grey conv1");
}

TEST_CASE("vision_learner: save_body, Learner checkpoints, frozen training and bad files", "[vision_learner]") {
  th::TempDir dir("strata_vision");
  auto dls = image_dls(16, 1, 8, 2, 8);
  manual_seed(31);
  auto a = vision_learner(dls, arch::fashion_resnet(), {.learner = {.path = dir.path.string()}});
  quiet(a);
  CHECK(a.opt == nullptr);
  CHECK(a.body().named_children().size() == 4);
  const std::string body_file = save_body(a, dir / "bodies/fashion.safetensors");
  CHECK(load_safetensors_metadata(body_file).at("format") == "strata.body");

  manual_seed(32);
  auto b = vision_learner(dls, arch::fashion_resnet(), {.pretrained = body_file});
  quiet(b);
  for (auto& [k, t] : a.body().state_dict()) {
    INFO(k);
    CHECK(same_values(sd_get(b.body(), k), t));
  }
  CHECK_FALSE(same_values(sd_get(b.head(), "4.weight"), sd_get(a.head(), "4.weight")));  // heads never loaded

  // frozen training: conv weights of the body keep their values (no grads), its batch norms and the head train
  const Tensor conv_before = sd_get(b.body(), "1.convpath.0.0.weight").detach().clone();
  const Tensor bn_before = sd_get(b.body(), "1.convpath.0.1.weight").detach().clone();
  const Tensor head_before = sd_get(b.head(), "4.weight").detach().clone();
  b.fit(1, 1e-2);
  CHECK(same_values(sd_get(b.body(), "1.convpath.0.0.weight"), conv_before));
  CHECK_FALSE(sd_get(b.body(), "1.convpath.0.0.weight").grad().defined());
  CHECK_FALSE(same_values(sd_get(b.body(), "1.convpath.0.1.weight"), bn_before));
  CHECK_FALSE(same_values(sd_get(b.head(), "4.weight"), head_before));

  // a Learner checkpoint: its body "0.*" is used, its head and optimizer state ignored
  a.fit(1, 1e-2);
  a.save("stage1");
  auto c = vision_learner(dls, arch::fashion_resnet(), {.pretrained = dir / "models/stage1.safetensors"});
  CHECK(same_values(sd_get(c.body(), "3.convpath.1.0.weight"), sd_get(a.body(), "3.convpath.1.0.weight")));
  CHECK(same_values(sd_get(c.body(), "0.1.running_var"), sd_get(a.body(), "0.1.running_var")));

  // bad files: the key is named, nothing is loaded
  auto write = [&](const std::string& name, auto edit) {
    std::vector<std::pair<std::string, Tensor>> ts;
    for (auto& [k, t] : a.body().state_dict()) ts.emplace_back(k, t);
    edit(ts);
    save_safetensors(dir / name, ts);
    return dir / name;
  };
  const std::string missing = write("missing.safetensors", [](auto& ts) { ts.erase(ts.begin() + 3); });
  const std::string missing_key = a.body().state_dict()[3].first;
  th::check_throws([&] { vision_learner(dls, arch::fashion_resnet(), {.pretrained = missing}); },
                   {"load_body", missing, "without \"" + missing_key + "\""});
  const std::string shape = write("shape.safetensors", [](auto& ts) {
    for (auto& [k, t] : ts)
      if (k == "2.convpath.0.0.weight") t = zeros({64, 32, 3, 1});
  });
  th::check_throws([&] { vision_learner(dls, arch::fashion_resnet(), {.pretrained = shape}); },
                   {"load_body", "\"2.convpath.0.0.weight\"", "shape [64, 32, 3, 1]", "expected shape [64, 32, 3, 3]"});
  const std::string extra = write("extra.safetensors", [](auto& ts) { ts.emplace_back("9.weight", zeros({2})); });
  th::check_throws([&] { vision_learner(dls, arch::fashion_resnet(), {.pretrained = extra}); },
                   {"load_body", "\"9.weight\"", "not a key of the body"});
  th::check_throws([&] { vision_learner(dls, arch::fashion_resnet(), {.pretrained = dir / "nope.safetensors"}); },
                   {"load_body", "does not exist"});
  th::check_throws([&] { vision_learner(image_dls(4, 1, 8, 0, 2), arch::fashion_resnet()); }, {"vision_learner", "dls.c = 0"});
}

namespace {
/// Every group's lr and whether the first body conv trains, at each training batch.
struct LrLog : Callback {
  std::vector<std::vector<double>> lrs;
  std::vector<bool> body_trains, bn_trains;
  Tensor body_w, body_bn;
  LrLog() { run_valid = false; }
  std::string name() const override { return "LrLog"; }
  void after_batch() override {
    std::vector<double> v;
    for (const auto& h : learn->opt->hypers()) v.push_back(h.at("lr"));
    lrs.push_back(v);
    body_trains.push_back(body_w.requires_grad());
    bn_trains.push_back(body_bn.requires_grad());
  }
};
/// fastai's combined_cos(pct, lo, mid, end) at p, written out: cosine lo -> mid over [0, pct], mid -> end after.
double one_cycle(double p, double pct, double lo, double mid, double end) {
  auto cos_sched = [](double a, double b, double t) { return a + (b - a) * (1 - std::cos(std::numbers::pi * t)) / 2; };
  return p < pct ? cos_sched(lo, mid, p / pct) : cos_sched(mid, end, (p - pct) / (1 - pct));
}
}  // namespace

TEST_CASE("fine_tune: fastai's frozen phase then discriminative lrs, ending unfrozen", "[vision_learner]") {
  // a 3-group arch made from a lambda: {conv, bn, relu}, {conv, relu}, head
  VisionArch tiny{.name = "tiny",
                  .make = [](int64_t n_in) {
                    return std::make_shared<nn::Sequential>(
                        nn::Conv2d({.in = n_in, .out = 4, .k = 3, .pad = 1}), nn::BatchNorm2d(4), nn::ReLU(),
                        nn::Conv2d({.in = 4, .out = 8, .k = 3, .stride = 2, .pad = 1}), nn::ReLU(),
                        nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(8, 10));
                  },
                  .split = [](nn::Module& body, nn::Module& head) -> ParamGroups {
                    const auto& b = dynamic_cast<nn::Sequential&>(body);
                    return {params_of(b, 0, 3), params_of(b, 3), head.parameters()};
                  }};
  auto dls = image_dls(32, 1, 6, 2, 8);  // 4 batches an epoch
  auto log = std::make_shared<LrLog>();
  manual_seed(41);
  auto learn = vision_learner(dls, tiny, {.learner = {.cbs = {log}}});
  quiet(learn);
  CHECK(learn.body().named_children().size() == 5);  // cut before the pool
  log->body_w = sd_get(*learn.model, "0.0.weight");
  log->body_bn = sd_get(*learn.model, "0.1.weight");
  const double base = 1e-2;
  learn.fine_tune(2, base, 1);
  REQUIRE(log->lrs.size() == 4 + 8);
  // phase 1: slice(base) = {base/10, base/10, base}, one cycle with div 25, div_final 1e5, pct_start 0.99
  const std::vector<double> l1{base / 10, base / 10, base};
  for (int i = 0; i < 4; ++i)
    for (size_t g = 0; g < 3; ++g) {
      INFO("phase 1 batch " << i << " group " << g);
      CHECK(log->lrs[size_t(i)][g] == Approx(one_cycle(i / 4.0, 0.99, l1[g] / 25, l1[g], l1[g] / 1e5)).epsilon(1e-9));
    }
  // phase 2: base/2 = 5e-3, even_mults(5e-5, 5e-3, 3) = {5e-5, 5e-4, 5e-3}, div 5, pct_start 0.3
  const std::vector<double> l2{5e-5, 5e-4, 5e-3};
  for (int i = 0; i < 8; ++i)
    for (size_t g = 0; g < 3; ++g) {
      INFO("phase 2 batch " << i << " group " << g);
      CHECK(log->lrs[size_t(4 + i)][g] == Approx(one_cycle(i / 8.0, 0.3, l2[g] / 5, l2[g], l2[g] / 1e5)).epsilon(1e-9));
    }
  for (int i = 0; i < 12; ++i) {
    INFO("batch " << i);
    CHECK(log->body_trains[size_t(i)] == (i >= 4));  // frozen in phase 1 only
    CHECK(log->bn_trains[size_t(i)]);                // train_bn
  }
  CHECK(learn.opt->frozen_idx() == 0);
  for (auto& p : learn.model->parameters()) CHECK(p.requires_grad());
}

}  // namespace test_vision_learner
