// Models: a small CNN trained 3 plain SGD steps reproduces PyTorch's losses, gradient norms and
// batch-norm statistics (golden from tools/make_nn_golden.py); resnet18/34 have torchvision's exact
// state_dict keys and shapes, xresnet18 fastai's; every model runs forward on a small input.
#include <catch2/catch.hpp>

#include <cmath>

#include "helpers.hpp"
#include "nn_golden.hpp"
#include "strata/nn/nn.hpp"

namespace test_models {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {
/// "<model>:<key>" records of nn_model_keys.txt for one model, as (key, shape, dtype) in order.
std::vector<std::tuple<std::string, Shape, DType>> golden_keys(const th::Golden& g, const std::string& model) {
  std::vector<std::tuple<std::string, Shape, DType>> out;
  for (auto& [name, t] : g.in_order)
    if (name.rfind(model + ":", 0) == 0) out.emplace_back(name.substr(model.size() + 1), t.shape(), t.dtype());
  return out;
}
/// Requires m's state_dict to list exactly the golden keys, in order, with their shapes and dtypes.
void check_keys(nn::Module& m, const th::Golden& g, const std::string& model) {
  const auto want = golden_keys(g, model);
  const nn::NamedTensors sd = m.state_dict();
  INFO(model << ": " << sd.size() << " keys, golden " << want.size());
  REQUIRE(!want.empty());
  CHECK(sd.size() == want.size());
  for (size_t i = 0; i < std::min(sd.size(), want.size()); ++i) {
    INFO(model << " key " << i << ": " << sd[i].first << " " << sd[i].second.shape() << " vs golden "
               << std::get<0>(want[i]) << " " << std::get<1>(want[i]));
    REQUIRE(sd[i].first == std::get<0>(want[i]));
    CHECK(sd[i].second.shape() == std::get<1>(want[i]));
    CHECK(sd[i].second.dtype() == (std::get<2>(want[i]) == DType::i64 ? DType::i64 : DType::f32));
  }
}
double rel(double got, double want) { return std::abs(got - want) / std::max(std::abs(want), 1e-30); }
double std_of_conv(const Tensor& w) { return w.to(DType::f64).std().item<double>(); }
}  // namespace

TEST_CASE("small CNN: 3 SGD steps give PyTorch's losses, gradient norms and running stats", "[models]") {
  const th::Golden g = th::load_golden("nn_small_cnn.txt");
  nn::Sequential m(nn::Conv2d({.in = 3, .out = 8, .k = 3, .pad = 1}), nn::BatchNorm2d(8), nn::ReLU(), nn::MaxPool2d(2),
                   nn::Conv2d({.in = 8, .out = 16, .k = 3, .pad = 1}), nn::BatchNorm2d(16), nn::ReLU(),
                   nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Linear(16, 10));
  nn::NamedTensors sd;
  for (auto& [name, t] : g.in_order)
    if (name.rfind("sd.", 0) == 0) sd.emplace_back(name.substr(3), t);
  m.load_state_dict(sd);  // strict: every key by name, num_batches_tracked included
  const Tensor xb = g["xb"], yb = g["yb"];
  const double lr = g["lr"].item<double>();
  for (int step = 0; step < 3; ++step) {
    const std::string s = "step" + std::to_string(step);
    m.zero_grad();
    const Tensor loss = nn::cross_entropy(m(xb), yb);
    loss.backward();
    INFO(s << " loss " << loss.item<double>() << " vs " << g[s + ".loss"].item<double>());
    CHECK(rel(loss.item<double>(), g[s + ".loss"].item<double>()) < 1e-5);
    for (auto& [name, p] : m.named_parameters()) {
      const double norm = std::sqrt(sum(square(p.grad().to(DType::f64))).item<double>());
      const double want = g[s + ".gnorm." + name].item<double>();
      INFO(s << " grad norm of " << name << ": " << norm << " vs " << want);
      // absolute floor: a conv bias before batch norm has a zero gradient, its norm is rounding noise
      CHECK(std::abs(norm - want) <= 1e-4 * want + 1e-6);
    }
    NoGrad ng;
    for (auto& p : m.parameters()) p.add_(p.grad(), -lr);
  }
  for (auto& [name, t] : m.named_buffers())
    th::check_close(t, g["final.sd." + name], 1e-6, 1e-5, "final " + name);
}

TEST_CASE("resnet18/34 have torchvision's keys and shapes, xresnet18/50 fastai's", "[models]") {
  const th::Golden keys = th::load_golden("nn_model_keys.txt");
  nn::init::NoInit skip;  // only names and shapes are checked here: no need to draw 30M random numbers
  auto r18 = nn::resnet18();
  check_keys(*r18, keys, "resnet18");
  CHECK(r18->num_parameters() == 11689512);  // torchvision's count
  check_keys(*nn::resnet34(), keys, "resnet34");
  check_keys(*nn::xresnet18(), keys, "xresnet18");
  check_keys(*nn::xresnet50(), keys, "xresnet50");  // bottleneck blocks (expansion 4)
}

TEST_CASE("models run forward (and backward) on small inputs; fastai's xresnet init", "[models]") {
  manual_seed(20);
  std::shared_ptr<nn::ResNet> r;
  {
    nn::init::NoInit skip;  // the shapes are what is checked: cheap constant weights instead of 11M normals
    r = nn::resnet18(5, 1);  // one-channel input, 5 classes
  }
  for (auto& p : r->parameters()) nn::init::constant_(p, 0.01);
  CHECK(r->conv1->weight.shape() == Shape{64, 1, 7, 7});
  const Tensor x = randn({2, 1, 28, 28});
  CHECK((*r)(x).shape() == Shape{2, 5});
  r->eval();
  CHECK((*r)(x).shape() == Shape{2, 5});

  auto xr = nn::xresnet18(7, 3);
  // fastai's init: batch norm at the end of each convpath starts at 0, every bias at 0
  for (auto& [name, t] : xr->named_parameters()) {
    INFO(name);
    if (name == "4.0.convpath.1.1.weight") CHECK(amax(abs(t)).item<double>() == 0);
    if (name == "4.0.convpath.0.1.weight") CHECK(amin(t).item<double>() == 1);
    if (name.ends_with("bias")) CHECK(amax(abs(t)).item<double>() == 0);
    if (name == "0.0.weight") CHECK(std_of_conv(t) == Approx(std::sqrt(2.0 / 27)).epsilon(0.15));  // kaiming_normal_
  }
  // 36 -> 18 -> 9: odd sizes reach the ceil-mode average pool of the strided idpaths
  const Tensor xo = (*xr)(randn({2, 3, 36, 36}));
  CHECK(xo.shape() == Shape{2, 7});
  nn::cross_entropy(xo, from_vector(std::vector<int64_t>{0, 6})).backward();
  for (auto& [name, p] : xr->named_parameters()) {
    INFO(name);
    REQUIRE(p.grad().defined());
    CHECK(p.grad().shape() == p.shape());
  }

  auto r9 = nn::resnet9(1, 10);
  const Tensor y9 = (*r9)(randn({2, 1, 16, 16}));
  CHECK(y9.shape() == Shape{2, 10});
  std::vector<std::string> k9;
  for (auto& [name, t] : r9->named_parameters()) k9.push_back(name);
  CHECK(k9.front() == "prep.0.weight");
  CHECK(std::find(k9.begin(), k9.end(), "layer1.2.res1.0.weight") != k9.end());
  CHECK(std::find(k9.begin(), k9.end(), "layer3.2.res2.1.bias") != k9.end());
  CHECK(k9.back() == "linear.weight");  // no bias
  r9->eval();  // the 0.125 output scale
  const Tensor x9 = randn({1, 1, 16, 16});
  const Tensor feats = (*r9->flatten_)((*r9->pool)((*r9->layer3)((*r9->layer2)((*r9->layer1)((*r9->prep)(x9))))));
  th::check_close((*r9)(x9), (*r9->linear)(feats) * 0.125, 1e-6, 1e-5, "resnet9 scale");

  auto cnn = nn::simple_cnn({3, 8, 16, 10});
  CHECK((*cnn)(randn({2, 3, 16, 16})).shape() == Shape{2, 10});
  std::vector<std::string> kc;
  for (auto& [name, t] : cnn->state_dict()) kc.push_back(name);
  CHECK(kc == std::vector<std::string>{"0.0.weight", "0.1.weight", "0.1.bias", "0.1.running_mean", "0.1.running_var",
                                       "0.1.num_batches_tracked", "1.0.weight", "1.1.weight", "1.1.bias",
                                       "1.1.running_mean", "1.1.running_var", "1.1.num_batches_tracked", "2.0.weight",
                                       "2.0.bias"});
  CHECK(cnn->repr().find("(3): Sequential(\n    (0): AdaptiveAvgPool2d(output_size=1)\n    (1): Flatten(") !=
        std::string::npos);
}

}  // namespace test_models
