// Losses: values and gradients against PyTorch goldens (tools/make_nn_golden.py), f64 gradcheck,
// f32 against f64, fastai's Flat loss objects, and the error texts for mismatched targets.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "nn_golden.hpp"
#include "strata/nn/loss.hpp"

namespace test_loss {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {
const th::Golden& goldens() {
  static const th::Golden g = th::load_golden("nn_losses.txt");
  return g;
}
using LossFn = std::function<Tensor(const Tensor&, const Tensor&, std::string_view)>;

/// Checks one golden case: the three reductions, then d<loss_none, v>/d(x, y) where the golden has them.
void check_case(const std::string& name, const LossFn& fn) {
  INFO("case " << name);
  const auto& g = goldens();
  Tensor x = g[name + ".x"].detach(), y = g[name + ".y"].detach();
  for (const char* red : {"mean", "sum", "none"})
    th::check_close(fn(x, y, red), g[name + "." + red], 1e-12, 1e-10, name + " " + red);
  x.requires_grad_();
  if (g.has(name + ".dy")) y.requires_grad_();
  sum(fn(x, y, "none") * g[name + ".v"]).backward();
  th::check_close(x.grad(), g[name + ".dx"], 1e-12, 1e-10, name + " dx");
  if (g.has(name + ".dy")) th::check_close(y.grad(), g[name + ".dy"], 1e-12, 1e-10, name + " dy");
}
}  // namespace

TEST_CASE("losses match PyTorch: values for each reduction and gradients", "[loss]") {
  auto ce = [](double ls) {
    return [ls](const Tensor& x, const Tensor& y, std::string_view r) { return nn::cross_entropy(x, y, ls, r); };
  };
  check_case("ce", ce(0));
  check_case("ce_ls", ce(0.1));
  check_case("ce_4d", ce(0.2));
  check_case("ce_prob", ce(0.15));
  check_case("ce_extreme", ce(0));
  check_case("nll", [](const Tensor& x, const Tensor& y, std::string_view r) { return nn::nll_loss(x, y, r); });
  check_case("mse", [](const Tensor& x, const Tensor& y, std::string_view r) { return nn::mse_loss(x, y, r); });
  check_case("l1", [](const Tensor& x, const Tensor& y, std::string_view r) { return nn::l1_loss(x, y, r); });
  check_case("bce", [](const Tensor& x, const Tensor& y, std::string_view r) {
    return nn::binary_cross_entropy_with_logits(x, y, r);
  });
}

TEST_CASE("losses pass gradcheck, in float32 agree with float64", "[loss]") {
  manual_seed(3);
  const Tensor x = th::random({4, 5}, DType::f64, true), y = randint(0, 5, {4});
  const Tensor x3 = th::random({2, 3, 4}, DType::f64), y3 = randint(0, 3, {2, 4});
  const Tensor p = softmax(th::random({4, 5}, DType::f64), 1), t = rand({4, 5}, {.dtype = DType::f64});
  th::gradcheck_ok([&](auto& in) { return nn::cross_entropy(in[0], y, 0.1); }, {x});
  th::gradcheck_ok([&](auto& in) { return nn::cross_entropy(in[0], y3, 0.0, "none"); }, {x3});
  th::gradcheck_ok([&](auto& in) { return nn::cross_entropy(in[0], in[1], 0.2, "sum"); }, {x, p});
  th::gradcheck_ok([&](auto& in) { return nn::nll_loss(log_softmax(in[0], 1), y); }, {x});
  th::gradcheck_ok([&](auto& in) { return nn::mse_loss(in[0], in[1]); }, {x, t});
  th::gradcheck_ok([&](auto& in) { return nn::l1_loss(in[0], in[1], "sum"); }, {x, t});
  th::gradcheck_ok([&](auto& in) { return nn::binary_cross_entropy_with_logits(in[0], in[1]); }, {x, t});
  // the hand-written BCE gradient at exactly 0 is sigmoid(0) - y (a composite of relu/abs would give -y)
  Tensor z = zeros({3}, {.requires_grad = true});
  nn::binary_cross_entropy_with_logits(z, th::make({0, 0.5, 1}, {3}), "sum").backward();
  CHECK(th::values(z.grad()) == std::vector<double>{0.5, 0, -0.5});
  // float32 inputs give float32 losses within float32 tolerance of float64
  const Tensor x32 = x.to(DType::f32);
  CHECK(nn::cross_entropy(x32, y, 0.1).dtype() == DType::f32);
  th::check_close(nn::cross_entropy(x32, y, 0.1, "none"), nn::cross_entropy(x, y, 0.1, "none").to(DType::f32), 1e-5,
                  1e-5, "ce f32");
  th::check_close(nn::binary_cross_entropy_with_logits(x32, t.to(DType::f32), "none"),
                  nn::binary_cross_entropy_with_logits(x, t, "none").to(DType::f32), 1e-5, 1e-5, "bce f32");
  // unbatched: logits [C] with a 0-dim target
  const Tensor one = nn::cross_entropy(x.select(0, 1), y.select(0, 1), 0.1, "none");
  CHECK(one.dim() == 0);
  CHECK(one.item<double>() == Approx(nn::cross_entropy(x, y, 0.1, "none").select(0, 1).item<double>()));
}

TEST_CASE("fastai loss objects: flattening, activation, decodes", "[loss]") {
  manual_seed(4);
  const Tensor x = th::random({2, 3, 4, 5}), y = randint(0, 3, {2, 4, 5});
  const nn::Loss ce = nn::CrossEntropyLossFlat();
  CHECK(ce.name == "CrossEntropyLossFlat");
  th::check_close(ce(x, y), nn::cross_entropy(x, y), 1e-6, 1e-6, "ce flat 4d");
  CHECK(ce.per_item(x, y).shape() == Shape{40});
  const Tensor x2 = th::random({6, 4}), y2 = randint(0, 4, {6, 1});  // [B, 1] targets flatten to [B]
  th::check_close(ce(x2, y2), nn::cross_entropy(x2, reshape(y2, {6})), 1e-6, 1e-6, "ce flat [B,1]");
  th::check_close(nn::CrossEntropyLossFlat(0.1)(x2, y2), nn::cross_entropy(x2, reshape(y2, {6}), 0.1), 1e-6, 1e-6,
                  "ce flat ls");
  th::check_close(ce.activation(x2), softmax(x2, 1), 0, 0, "ce activation");
  CHECK(th::values(ce.decodes(ce.activation(x2))) == th::values(argmax(x2, 1)));

  const Tensor p = th::random({4, 2}), t = randint(0, 2, {4, 2});  // int targets are converted (floatify)
  const nn::Loss bce = nn::BCEWithLogitsLossFlat(0.3);
  th::check_close(bce(p, t), nn::binary_cross_entropy_with_logits(p, t.to(DType::f32)), 1e-6, 1e-6, "bce flat");
  CHECK(th::values(bce.decodes(bce.activation(p))) == th::values(gt(sigmoid(p), 0.3)));
  th::check_close(nn::MSELossFlat()(p, t), nn::mse_loss(p, t.to(DType::f32)), 1e-6, 1e-6, "mse flat");
  th::check_close(nn::L1LossFlat()(reshape(p, {8}), t), nn::l1_loss(p, t.to(DType::f32)), 1e-6, 1e-6, "l1 flat");
  CHECK(th::values(nn::MSELossFlat().decodes(p)) == th::values(p));
}

TEST_CASE("losses name both shapes when targets do not match", "[loss]") {
  const Tensor x = zeros({8, 10}), y4 = zeros({4}, {.dtype = DType::i64});
  th::check_throws([&] { nn::cross_entropy(x, y4); },
                   {"cross_entropy: got predictions of shape [8, 10] and targets of shape [4], expected targets of shape [8]"});
  th::check_throws([&] { nn::cross_entropy(x, zeros({8})); }, {"cross_entropy", "[8, 10]", "float targets of shape [8]"});
  th::check_throws([&] { nn::cross_entropy(x, zeros({8}, {.dtype = DType::u8})); },
                   {"cross_entropy", "dtype uint8", "expected int64"});
  th::check_throws([&] { nn::cross_entropy(x, full({8}, 10, {.dtype = DType::i64})); },
                   {"cross_entropy", "target 10", "[0, 10)"});
  th::check_throws([&] { nn::cross_entropy(x, zeros({8}, {.dtype = DType::i64}), 0.0, "avg"); },
                   {"cross_entropy", "reduction 'avg'"});
  th::check_throws([&] { nn::nll_loss(x, y4); }, {"nll_loss", "[8, 10]", "[4]", "expected targets of shape [8]"});
  th::check_throws([&] { nn::mse_loss(x, zeros({8})); }, {"mse_loss", "[8, 10]", "[8]"});
  th::check_throws([&] { nn::mse_loss(x, zeros({8, 10}, {.dtype = DType::i64})); }, {"mse_loss", "dtype int64"});
  th::check_throws([&] { nn::l1_loss(x, zeros({10})); }, {"l1_loss", "[8, 10]", "[10]"});
  th::check_throws([&] { nn::binary_cross_entropy_with_logits(x, zeros({8, 1})); },
                   {"binary_cross_entropy_with_logits", "[8, 10]", "[8, 1]"});
  th::check_throws([&] { nn::CrossEntropyLossFlat()(x, y4); }, {"CrossEntropyLossFlat", "[8, 10]", "[4]"});
  th::check_throws([&] { nn::MSELossFlat()(x, zeros({4})); }, {"MSELossFlat", "[8, 10]", "[4]"});
}

TEST_CASE("fused softmax cross entropy kernels match their reference loops and the unfused composition", "[loss]") {
  manual_seed(11);
  for (auto [B, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {7, 10}, {300, 3}, {33, 1000}}) {
    for (double eps : {0.0, 0.1}) {
      INFO("B " << B << " C " << C << " eps " << eps);
      const Tensor x = randn({B, C}) * 4.0, y = randint(0, C, {B}), dl = randn({B});
      const size_t nb = static_cast<size_t>(B), nbc = static_cast<size_t>(B * C);
      std::vector<float> loss(nb), loss_ref(nb), lse(nb), lse_ref(nb);
      std::vector<float> dx(nbc), dx_ref(nbc);
      cpu::softmax_xent_fwd<float, float>(x.data_ptr<float>(), y.data_ptr<int64_t>(), loss.data(), lse.data(), B, C, eps);
      cpu::softmax_xent_fwd_ref<float, float>(x.data_ptr<float>(), y.data_ptr<int64_t>(), loss_ref.data(),
                                              lse_ref.data(), B, C, eps);
      cpu::softmax_xent_bwd<float, float>(dl.data_ptr<float>(), x.data_ptr<float>(), y.data_ptr<int64_t>(), lse.data(),
                                          dx.data(), B, C, eps);
      cpu::softmax_xent_bwd_ref<float, float>(dl.data_ptr<float>(), x.data_ptr<float>(), y.data_ptr<int64_t>(),
                                              lse_ref.data(), dx_ref.data(), B, C, eps);
      double worst = 0;
      for (size_t i = 0; i < loss.size(); ++i) worst = std::max(worst, double(std::abs(loss[i] - loss_ref[i])));
      for (size_t i = 0; i < dx.size(); ++i) worst = std::max(worst, double(std::abs(dx[i] - dx_ref[i])));
      CHECK(worst < 2e-5);
      // the op (fused for 2-D float logits) against log_softmax + gather written out, values and gradients
      Tensor a = x.detach().requires_grad_(), b = x.detach().requires_grad_();
      const Tensor fused = nn::cross_entropy(a, y, eps, "none");
      const Tensor logp = log_softmax(b, 1);
      const Tensor composed = neg(squeeze(gather(logp, 1, unsqueeze(y, 1)), 1)) * (1.0 - eps) - mean(logp, {1}) * eps;
      th::check_close(fused, composed, 1e-5, 1e-5, "loss");
      sum(fused * dl).backward(), sum(composed * dl).backward();
      th::check_close(a.grad(), b.grad(), 1e-5, 1e-5, "dx");
    }
  }
}

}  // namespace test_loss
