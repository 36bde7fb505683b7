// nn layers: forward against reference loops / PyTorch's formulas, f64 gradcheck over the input and
// every parameter, BatchNorm running statistics and eval mode, Dropout train vs eval, initializer
// statistics, PyTorch-style printing, and errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <numbers>

#include "helpers.hpp"
#include "strata/nn/layers.hpp"

namespace test_layers {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

/// f64 gradcheck of m(x) over x and every parameter of m (m is converted to float64).
void module_gradcheck(nn::Module& m, const Tensor& x, bool x_grad = true) {
  m.to(DType::f64);
  std::vector<Tensor> inputs{x.to(DType::f64)};
  for (auto& p : m.parameters()) inputs.push_back(p);
  auto set_params = [&m](const std::vector<Tensor>& in) {
    size_t k = 1;
    m.apply([&](nn::Module& mm) {
      nn::Visitor v;
      v.on_param = [&](const std::string&, Tensor& t) { t = in[k++]; };
      mm.visit(v);
    });
  };
  {  // the parameters handed in are the ones forward uses: each gets a gradient
    std::vector<Tensor> leaves;
    for (auto& t : inputs) leaves.push_back(t.is_floating_point() ? t.detach().requires_grad_() : t);
    if (!x_grad) leaves[0] = x;
    set_params(leaves);
    sum(m(leaves[0])).backward();
    for (size_t k = 1; k < leaves.size(); ++k) REQUIRE(leaves[k].grad().defined());
  }
  if (!x_grad) {  // integer or non-differentiable input: check only the parameters
    const Tensor xi = x;
    inputs.erase(inputs.begin());
    th::gradcheck_ok([&](const std::vector<Tensor>& in) {
      std::vector<Tensor> all{xi};
      all.insert(all.end(), in.begin(), in.end());
      set_params(all);
      return m(xi);
    }, inputs);
  } else {
    th::gradcheck_ok([&](const std::vector<Tensor>& in) {
      set_params(in);
      return m(in[0]);
    }, inputs);
  }
}

/// out[b, o, y, z] = bias[o] + sum w[o, c, i, j] x[b, g*cin_g + c, y*s - p + i*d, z*s - p + j*d], in double.
Tensor ref_conv2d(const Tensor& x, const Tensor& w, const Tensor& b, int64_t s, int64_t p, int64_t d, int64_t groups) {
  const int64_t B = x.size(0), H = x.size(2), W = x.size(3), O = w.size(0), Cg = w.size(1), K0 = w.size(2),
                K1 = w.size(3);
  const int64_t OH = (H + 2 * p - d * (K0 - 1) - 1) / s + 1, OW = (W + 2 * p - d * (K1 - 1) - 1) / s + 1;
  std::vector<double> out;
  for (int64_t n = 0; n < B; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t y = 0; y < OH; ++y)
        for (int64_t z = 0; z < OW; ++z) {
          double acc = b.defined() ? th::at(b, {o}) : 0.0;
          const int64_t g = o / (O / groups);
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < K0; ++i)
              for (int64_t j = 0; j < K1; ++j) {
                const int64_t iy = y * s - p + i * d, iz = z * s - p + j * d;
                if (iy >= 0 && iy < H && iz >= 0 && iz < W)
                  acc += th::at(w, {o, c, i, j}) * th::at(x, {n, g * Cg + c, iy, iz});
              }
          out.push_back(acc);
        }
  return th::make(out, {B, O, OH, OW}, DType::f64);
}

/// Normalizes x [B, C, ...] per channel with the given mean/var and affine weight/bias, in double.
std::vector<double> ref_bn(const Tensor& x, const std::vector<double>& mean, const std::vector<double>& var,
                           const Tensor& w, const Tensor& b, double eps) {
  std::vector<double> out;
  for (int64_t n = 0; n < x.numel(); ++n) {
    auto idx = th::unravel(n, x.shape());
    const size_t c = size_t(idx[1]);
    out.push_back((th::at(x, idx) - mean[c]) / std::sqrt(var[c] + eps) * th::at(w, {idx[1]}) + th::at(b, {idx[1]}));
  }
  return out;
}

/// Per-channel {mean, biased var} of x [B, C, ...].
std::pair<std::vector<double>, std::vector<double>> channel_stats(const Tensor& x) {
  const size_t C = size_t(x.size(1));
  std::vector<double> s(C), s2(C), cnt(C);
  for (int64_t n = 0; n < x.numel(); ++n) {
    auto idx = th::unravel(n, x.shape());
    const double v = th::at(x, idx);
    s[size_t(idx[1])] += v, s2[size_t(idx[1])] += v * v, cnt[size_t(idx[1])] += 1;
  }
  for (size_t c = 0; c < C; ++c) s[c] /= cnt[c], s2[c] = s2[c] / cnt[c] - s[c] * s[c];
  return {s, s2};
}

constexpr double kUlp = 1 + 1e-6;  // float32 draws may round onto a bound
double mean_of(const Tensor& t) { return mean(t.to(DType::f64)).item<double>(); }
double std_of(const Tensor& t) { return t.to(DType::f64).std().item<double>(); }
double absmax_of(const Tensor& t) { return amax(abs(t.to(DType::f64))).item<double>(); }

}  // namespace

TEST_CASE("Linear: x w^T + b, PyTorch's default init, gradcheck, printing", "[nn]") {
  manual_seed(10);
  nn::Linear lin(5, 3);
  CHECK(lin.weight.shape() == Shape{3, 5});
  CHECK(absmax_of(lin.weight) <= kUlp / std::sqrt(5.0));
  CHECK(absmax_of(lin.bias) <= kUlp / std::sqrt(5.0));
  const Tensor x = th::random({2, 4, 5}, DType::f32, true);
  std::vector<double> want;
  for (int64_t n = 0; n < 8; ++n)
    for (int64_t o = 0; o < 3; ++o) {
      double acc = th::at(lin.bias, {o});
      for (int64_t i = 0; i < 5; ++i) acc += th::at(x, {n / 4, n % 4, i}) * th::at(lin.weight, {o, i});
      want.push_back(acc);
    }
  const Tensor y = lin(x);
  CHECK(y.shape() == Shape{2, 4, 3});
  th::check_close(th::values(y), want, 1e-5, 1e-5, "linear");
  CHECK(lin.repr() == "Linear(in_features=5, out_features=3, bias=True)");
  nn::Linear nb(3, 2, false);
  CHECK(nb.named_parameters().size() == 1);
  module_gradcheck(lin, th::random({3, 5}, DType::f64, true));
  module_gradcheck(nb, th::random({4, 3}));
  th::check_throws([&] { lin(zeros({2, 4})); }, {"Linear", "[2, 4]", "last dim 5"});
}

TEST_CASE("Conv2d: values against a reference loop (stride, padding, dilation, groups), gradcheck", "[nn]") {
  manual_seed(11);
  struct Case { nn::Conv2dOptions o; Shape x; };
  const std::vector<Case> cases = {
      {{.in = 3, .out = 4, .k = 3, .stride = 1, .pad = 1}, {2, 3, 6, 5}},
      {{.in = 4, .out = 6, .k = 3, .stride = 2, .pad = 1, .dilation = 2, .groups = 2, .bias = false}, {1, 4, 7, 7}},
      {{.in = 2, .out = 2, .k = {1, 3}, .stride = {2, 1}, .groups = 2}, {2, 2, 5, 4}},
  };
  for (const auto& c : cases) {
    nn::Conv2d conv(c.o);
    const double bound = 1 / std::sqrt(double(c.o.in / c.o.groups * c.o.k.h * c.o.k.w));
    CHECK(absmax_of(conv.weight) <= bound * kUlp);
    const Tensor x = th::random(c.x, DType::f32, true);
    if (c.o.stride.h != c.o.stride.w || c.o.k.h != c.o.k.w) continue;  // the reference takes square sizes
    const Tensor want = ref_conv2d(x, conv.weight, conv.bias, c.o.stride.h, c.o.pad.h, c.o.dilation.h, c.o.groups);
    th::check_close(conv(x), want.to(DType::f32), 1e-5, 1e-5, conv.repr());
  }
  // the asymmetric-stride case by hand: kernel (1, 3), stride (2, 1) on a 5x4 image -> 3x2
  nn::Conv2d asym(cases[2].o);
  const Tensor xa = th::random({2, 2, 5, 4});
  const Tensor ya = asym(xa);
  REQUIRE(ya.shape() == Shape{2, 2, 3, 2});
  for (int64_t n = 0; n < 2; ++n)
    for (int64_t o = 0; o < 2; ++o)
      for (int64_t y = 0; y < 3; ++y)
        for (int64_t z = 0; z < 2; ++z) {
          double acc = th::at(asym.bias, {o});
          for (int64_t j = 0; j < 3; ++j) acc += th::at(asym.weight, {o, 0, 0, j}) * th::at(xa, {n, o, 2 * y, z + j});
          CHECK(th::at(ya, {n, o, y, z}) == Approx(acc).margin(1e-5));
        }
  nn::Conv2d small({.in = 2, .out = 3, .k = 3, .stride = 2, .pad = 1});
  module_gradcheck(small, th::random({2, 2, 5, 4}));
  CHECK(nn::Conv2d({.in = 3, .out = 16, .k = 3, .pad = 1, .bias = false}).repr() ==
        "Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)");
  CHECK(nn::Conv2d({.in = 16, .out = 8, .k = {1, 3}, .stride = 2, .dilation = 2, .groups = 2}).repr() ==
        "Conv2d(16, 8, kernel_size=(1, 3), stride=(2, 2), dilation=(2, 2), groups=2)");
  th::check_throws([] { nn::Conv2d({.in = 3, .out = 4}); }, {"Conv2d", "kernel size", "set .k"});
  th::check_throws([] { nn::Conv2d({.in = 3, .out = 4, .k = 3, .groups = 2}); }, {"Conv2d", "groups=2", "divisible"});
}

TEST_CASE("BatchNorm: batch statistics in training, running statistics, eval mode, gradcheck", "[nn]") {
  manual_seed(12);
  nn::BatchNorm2d bn(3);
  {
    NoGrad ng;
    bn.weight.copy_(th::make({1.5, -0.5, 2}, {3}));
    bn.bias.copy_(th::make({0.1, 0.2, -0.3}, {3}));
  }
  std::vector<double> rm(3, 0.0), rv(3, 1.0);
  for (int step = 0; step < 2; ++step) {
    const Tensor x = th::random({4, 3, 3, 2}, DType::f32, step == 1, -1, 3);
    auto [m, v] = channel_stats(x);
    th::check_close(th::values(bn(x)), ref_bn(x, m, v, bn.weight, bn.bias, 1e-5), 1e-5, 1e-5, "bn train");
    for (size_t c = 0; c < 3; ++c)  // running stats use the unbiased variance, N = 4*3*2
      rm[c] = 0.9 * rm[c] + 0.1 * m[c], rv[c] = 0.9 * rv[c] + 0.1 * v[c] * 24.0 / 23.0;
  }
  th::check_close(th::values(bn.running_mean), rm, 1e-6, 1e-5, "running_mean");
  th::check_close(th::values(bn.running_var), rv, 1e-6, 1e-5, "running_var");
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);
  CHECK(bn.num_batches_tracked.dtype() == DType::i64);

  bn.eval();
  const Tensor xe = th::random({2, 3, 2, 2});
  th::check_close(th::values(bn(xe)), ref_bn(xe, rm, rv, bn.weight, bn.bias, 1e-5), 1e-5, 1e-5, "bn eval");
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);  // eval leaves the statistics alone
  th::check_close(th::values(bn.running_mean), rm, 1e-6, 1e-5, "running_mean unchanged in eval");

  // momentum = None: the cumulative average of the batch statistics
  nn::BatchNorm1d cum(2, {.eps = 1e-3, .momentum = std::nullopt});
  const Tensor a = th::random({5, 2}), b = th::random({5, 2, 3});
  cum(a);
  cum(b);
  auto [ma, va] = channel_stats(a);
  auto [mb, vb] = channel_stats(b);
  th::check_close(th::values(cum.running_mean), {(ma[0] + mb[0]) / 2, (ma[1] + mb[1]) / 2}, 1e-6, 1e-5, "cumulative");
  cum.eval();
  th::check_close(th::values(cum(a)), ref_bn(a, {(ma[0] + mb[0]) / 2, (ma[1] + mb[1]) / 2},
                                             {(va[0] * 5 / 4 + vb[0] * 15 / 14) / 2, (va[1] * 5 / 4 + vb[1] * 15 / 14) / 2},
                                             cum.weight, cum.bias, 1e-3),
                  1e-5, 1e-5, "bn1d eval");
  // no running stats: batch statistics in eval too, and no buffers
  nn::BatchNorm2d nostats(3, {.affine = false, .track_running_stats = false});
  CHECK(nostats.state_dict().empty());
  nostats.eval();
  auto [m2, v2] = channel_stats(xe);
  th::check_close(th::values(nostats(xe)), ref_bn(xe, m2, v2, ones({3}), zeros({3}), 1e-5), 1e-5, 1e-5, "no stats");

  nn::BatchNorm2d g(2);
  module_gradcheck(g, th::random({3, 2, 2, 2}, DType::f64, true));
  g.eval();
  module_gradcheck(g, th::random({3, 2, 2, 2}));
  nn::BatchNorm1d g1(3);
  module_gradcheck(g1, th::random({4, 3}));

  std::vector<std::string> keys;
  for (auto& [k, t] : bn.state_dict()) keys.push_back(k);
  CHECK(keys == std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  nn::Sequential net(nn::Linear(2, 2), nn::BatchNorm1d(2), nn::BatchNorm2d(2));
  int found = 0;
  net.apply([&](nn::Module& m) { found += dynamic_cast<nn::BatchNormBase*>(&m) != nullptr; });
  CHECK(found == 2);
  th::check_throws([&] { bn(zeros({2, 3, 4})); }, {"BatchNorm2d", "[2, 3, 4]", "[B, C, H, W]"});
  th::check_throws([&] { g1(zeros({2, 4})); }, {"BatchNorm1d", "[2, 4]", "3 channels"});
  bn.train();
  th::check_throws([&] { bn(zeros({1, 3, 1, 1})); }, {"batch_norm", "more than 1 value per channel"});
  CHECK(bn.num_batches_tracked.item<int64_t>() == 2);  // the refused batch is not counted
}

TEST_CASE("LayerNorm: normalizes the trailing dims, gradcheck", "[nn]") {
  manual_seed(13);
  nn::LayerNorm ln(Shape{2, 3}, 1e-4);
  {
    NoGrad ng;
    ln.weight.copy_(th::random({2, 3}));
    ln.bias.copy_(th::random({2, 3}));
  }
  const Tensor x = th::random({4, 2, 3}, DType::f32, true);
  std::vector<double> want;
  for (int64_t n = 0; n < 4; ++n) {
    double s = 0, s2 = 0;
    for (int64_t k = 0; k < 6; ++k) s += th::at(x, {n, k / 3, k % 3});
    s /= 6;
    for (int64_t k = 0; k < 6; ++k) s2 += std::pow(th::at(x, {n, k / 3, k % 3}) - s, 2);
    s2 /= 6;
    for (int64_t k = 0; k < 6; ++k)
      want.push_back((th::at(x, {n, k / 3, k % 3}) - s) / std::sqrt(s2 + 1e-4) * th::at(ln.weight, {k / 3, k % 3}) +
                     th::at(ln.bias, {k / 3, k % 3}));
  }
  th::check_close(th::values(ln(x)), want, 1e-5, 1e-5, "layer_norm");
  module_gradcheck(ln, th::random({3, 2, 3}));
  CHECK(nn::LayerNorm(4).repr() == "LayerNorm((4,), eps=1e-05, elementwise_affine=True)");
}

TEST_CASE("activations follow their formulas; gradcheck", "[nn]") {
  const Tensor x = th::make({-3, -1, -0.25, 0.5, 2, 4}, {6}, DType::f64);
  auto expect = [&](nn::Module&& m, auto f) {
    std::vector<double> want;
    for (double v : th::values(x)) want.push_back(f(v));
    th::check_close(th::values(m(x)), want, 1e-12, 1e-12, m.repr());
  };
  const double k = std::sqrt(2 / std::numbers::pi);
  expect(nn::ReLU(), [](double v) { return v > 0 ? v : 0; });
  expect(nn::LeakyReLU(0.2), [](double v) { return v > 0 ? v : 0.2 * v; });
  expect(nn::GELU(), [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); });
  expect(nn::GELU("tanh"), [&](double v) { return 0.5 * v * (1 + std::tanh(k * (v + 0.044715 * v * v * v))); });
  expect(nn::SiLU(), [](double v) { return v / (1 + std::exp(-v)); });
  expect(nn::Sigmoid(), [](double v) { return 1 / (1 + std::exp(-v)); });
  expect(nn::Tanh(), [](double v) { return std::tanh(v); });
  expect(nn::Identity(), [](double v) { return v; });
  for (nn::Module* m : std::initializer_list<nn::Module*>{new nn::GELU("tanh"), new nn::LeakyReLU(0.1), new nn::SiLU()}) {
    module_gradcheck(*m, th::random({3, 4}, DType::f64, true));
    delete m;
  }
  th::check_throws([] { nn::GELU("fast"); }, {"GELU", "'fast'"});
}

TEST_CASE("Dropout: identity in eval; in training zeroes about p and scales the rest", "[nn]") {
  manual_seed(14);
  nn::Dropout d(0.3);
  const Tensor x = ones({100, 100});
  const Tensor y = d(x);
  int64_t zeros_n = 0;
  for (double v : th::values(y)) {
    if (v == 0) ++zeros_n;
    else CHECK(v == Approx(1 / 0.7));
  }
  CHECK(double(zeros_n) / 1e4 == Approx(0.3).margin(0.02));
  d.eval();
  CHECK(d(x).is_same(x));
  d.train();
  manual_seed(5);
  const Tensor a = d(x);
  manual_seed(5);
  CHECK(th::values(d(x)) == th::values(a));  // seeded: the same mask again
  CHECK(nn::Dropout(0.25).repr() == "Dropout(p=0.25, inplace=False)");
  th::check_throws([] { nn::Dropout(1.5); }, {"Dropout", "p=1.5"});
}

TEST_CASE("pooling layers: windows against reference loops, fastai's concat pool order, gradcheck", "[nn]") {
  manual_seed(15);
  const Tensor x = th::random({2, 3, 5, 6}, DType::f32, true);
  // MaxPool2d(3, stride 2, pad 1): max over the in-bounds taps of each window
  nn::MaxPool2d mp({.k = 3, .stride = 2, .pad = 1});
  const Tensor y = mp(x);
  REQUIRE(y.shape() == Shape{2, 3, 3, 3});
  for (int64_t n = 0; n < y.numel(); ++n) {
    auto i = th::unravel(n, y.shape());
    double m = -INFINITY;
    for (int64_t a = i[2] * 2 - 1; a < i[2] * 2 + 2; ++a)
      for (int64_t b = i[3] * 2 - 1; b < i[3] * 2 + 2; ++b)
        if (a >= 0 && a < 5 && b >= 0 && b < 6) m = std::max(m, th::at(x, {i[0], i[1], a, b}));
    CHECK(th::at(y, i) == m);
  }
  // AvgPool2d(2, ceil_mode) as in xresnet's idpath: the cut-off last window averages its in-bounds taps
  nn::AvgPool2d ap({.k = 2, .ceil_mode = true});
  const Tensor z = ap(x);
  REQUIRE(z.shape() == Shape{2, 3, 3, 3});
  for (int64_t n = 0; n < z.numel(); ++n) {
    auto i = th::unravel(n, z.shape());
    double s = 0, c = 0;
    for (int64_t a = i[2] * 2; a < std::min<int64_t>(i[2] * 2 + 2, 5); ++a)
      for (int64_t b = i[3] * 2; b < std::min<int64_t>(i[3] * 2 + 2, 6); ++b) s += th::at(x, {i[0], i[1], a, b}), c += 1;
    CHECK(th::at(z, i) == Approx(s / c).margin(1e-6));
  }
  // adaptive pools to 1x1 are the global mean / max; concat pool puts max first
  const Tensor gavg = nn::AdaptiveAvgPool2d(1)(x), gmax = nn::AdaptiveMaxPool2d(1)(x);
  th::check_close(th::values(gavg), th::values(mean(x, {2, 3})), 1e-6, 1e-5, "global avg");
  th::check_close(th::values(gmax), th::values(amax(x, {2, 3})), 0, 0, "global max");
  const Tensor cp = nn::AdaptiveConcatPool2d()(x);
  REQUIRE(cp.shape() == Shape{2, 6, 1, 1});
  th::check_close(cp.narrow(1, 0, 3), gmax, 0, 0, "concat: max first");
  th::check_close(cp.narrow(1, 3, 3), gavg, 0, 0, "concat: then avg");
  CHECK(nn::AdaptiveAvgPool2d({2, 3})(x).shape() == Shape{2, 3, 2, 3});

  nn::AvgPool2d ag({.k = 3, .stride = 2, .pad = 1});
  module_gradcheck(ag, th::random({1, 2, 5, 4}, DType::f64, true));
  module_gradcheck(mp, th::random({1, 2, 5, 4}));
  nn::AdaptiveConcatPool2d acp(2);
  module_gradcheck(acp, th::random({2, 2, 5, 3}));

  CHECK(nn::MaxPool2d(2).repr() == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  CHECK(nn::AvgPool2d({.k = 3, .stride = 2, .pad = 1}).repr() == "AvgPool2d(kernel_size=3, stride=2, padding=1)");
  CHECK(nn::AdaptiveMaxPool2d({2, 3}).repr() == "AdaptiveMaxPool2d(output_size=(2, 3))");
  CHECK(acp.repr() ==
        "AdaptiveConcatPool2d(\n  (ap): AdaptiveAvgPool2d(output_size=2)\n  (mp): AdaptiveMaxPool2d(output_size=2)\n)");
}

TEST_CASE("Flatten and Embedding", "[nn]") {
  manual_seed(16);
  CHECK(nn::Flatten()(zeros({2, 3, 4, 5})).shape() == Shape{2, 60});
  CHECK(nn::Flatten(0, 1)(zeros({2, 3, 4})).shape() == Shape{6, 4});
  CHECK(nn::Flatten().repr() == "Flatten(start_dim=1, end_dim=-1)");

  nn::Embedding emb(10, 4);
  CHECK(std_of(nn::Embedding(1000, 50).weight) == Approx(1.0).margin(0.03));  // N(0, 1)
  const Tensor idx = from_vector(std::vector<int64_t>{3, 7, 3, 0, 9, 3}, {2, 3});
  const Tensor y = emb(idx);
  REQUIRE(y.shape() == Shape{2, 3, 4});
  for (int64_t n = 0; n < 6; ++n)
    for (int64_t k = 0; k < 4; ++k)
      CHECK(th::at(y, {n / 3, n % 3, k}) == th::at(emb.weight, {th::values(idx)[size_t(n)] == 3 ? 3 : int64_t(th::values(idx)[size_t(n)]), k}));
  sum(y).backward();  // repeated indices accumulate: row 3 is used three times
  CHECK(th::values(emb.weight.grad().select(0, 3)) == std::vector<double>(4, 3.0));
  CHECK(th::values(emb.weight.grad().select(0, 1)) == std::vector<double>(4, 0.0));
  module_gradcheck(emb, idx, false);

  nn::Embedding pad(5, 2, 0);
  CHECK(th::values(pad.weight.select(0, 0)) == std::vector<double>{0, 0});
  sum(pad(from_vector(std::vector<int64_t>{0, 1, 0}))).backward();
  CHECK(th::values(pad.weight.grad().select(0, 0)) == std::vector<double>{0, 0});  // padding row: no gradient
  CHECK(th::values(pad.weight.grad().select(0, 1)) == std::vector<double>{1, 1});
  CHECK(pad.repr() == "Embedding(5, 2, padding_idx=0)");
  th::check_throws([&] { emb(zeros({2})); }, {"Embedding", "dtype float32", "int64"});
}

TEST_CASE("initializers: statistics match their formulas", "[nn][init]") {
  manual_seed(17);
  Tensor w = empty({256, 128, 3, 3});  // fan_in 1152, fan_out 2304
  CHECK(nn::init::calculate_fan_in_and_fan_out(w) == std::pair<int64_t, int64_t>{1152, 2304});
  nn::init::kaiming_normal_(w);
  CHECK(mean_of(w) == Approx(0).margin(2e-3));
  CHECK(std_of(w) == Approx(std::sqrt(2.0 / 1152)).epsilon(0.01));
  nn::init::kaiming_normal_(w, 0, "fan_out", "relu");
  CHECK(std_of(w) == Approx(std::sqrt(2.0 / 2304)).epsilon(0.01));
  nn::init::kaiming_uniform_(w, std::sqrt(5.0));  // PyTorch's Linear/Conv default: bound 1/sqrt(fan_in)
  const double b = 1 / std::sqrt(1152.0);
  CHECK(absmax_of(w) <= b * kUlp);
  CHECK(absmax_of(w) == Approx(b).epsilon(1e-3));
  CHECK(std_of(w) == Approx(b / std::sqrt(3.0)).epsilon(0.01));
  nn::init::xavier_uniform_(w, 2.0);
  CHECK(absmax_of(w) <= 2 * std::sqrt(6.0 / 3456) * kUlp);
  CHECK(std_of(w) == Approx(2 * std::sqrt(2.0 / 3456)).epsilon(0.01));
  nn::init::xavier_normal_(w);
  CHECK(std_of(w) == Approx(std::sqrt(2.0 / 3456)).epsilon(0.01));
  nn::init::uniform_(w, 2, 3);
  CHECK(mean_of(w) == Approx(2.5).epsilon(1e-3));
  nn::init::normal_(w, -1, 0.5);
  CHECK(mean_of(w) == Approx(-1).margin(2e-3));
  CHECK(std_of(w) == Approx(0.5).epsilon(0.01));
  nn::init::constant_(w, 0.25);
  CHECK(absmax_of(w - 0.25) == 0);
  Tensor d64 = zeros({4, 2}, {.dtype = DType::f64});
  nn::init::ones_(d64);
  CHECK(th::values(d64) == std::vector<double>(8, 1.0));
  nn::init::zeros_(d64);
  CHECK(th::values(d64) == std::vector<double>(8, 0.0));
  // parameters can be filled (under NoGrad inside), and the same seed gives the same values
  nn::Linear lin(4, 3);
  manual_seed(3);
  nn::init::kaiming_normal_(lin.weight);
  const auto first = th::values(lin.weight);
  manual_seed(3);
  nn::init::kaiming_normal_(lin.weight);
  CHECK(th::values(lin.weight) == first);
  CHECK(lin.weight.requires_grad());
  CHECK(nn::init::calculate_gain("relu") == Approx(std::sqrt(2.0)));
  CHECK(nn::init::calculate_gain("leaky_relu", 0.2) == Approx(std::sqrt(2.0 / 1.04)));
  CHECK(nn::init::calculate_gain("tanh") == Approx(5.0 / 3));
  // dirac_: a conv with these weights passes its input through
  nn::Conv2d id({.in = 3, .out = 3, .k = 3, .pad = 1, .bias = false});
  nn::init::dirac_(id.weight);
  const Tensor x = th::random({1, 3, 4, 4});
  th::check_close(id(x), x, 0, 0, "dirac conv");
  th::check_throws([] { Tensor t = zeros({5}); nn::init::kaiming_normal_(t); }, {"calculate_fan_in_and_fan_out", "[5]"});
  th::check_throws([] { Tensor t = zeros({5, 2}); nn::init::kaiming_normal_(t, 0, "fan"); }, {"kaiming_normal_", "'fan'"});
  th::check_throws([] { nn::init::calculate_gain("swish"); }, {"calculate_gain", "'swish'"});
}

TEST_CASE("layers print like PyTorch", "[nn]") {
  nn::Sequential net(nn::Conv2d({.in = 3, .out = 16, .k = 3, .pad = 1, .bias = false}), nn::BatchNorm2d(16), nn::ReLU(),
                     nn::MaxPool2d(2), nn::AdaptiveAvgPool2d(1), nn::Flatten(), nn::Dropout(0.25), nn::Linear(8, 4),
                     nn::LeakyReLU(0.2), nn::GELU(), nn::LayerNorm(4), nn::Embedding(10, 3),
                     nn::BatchNorm1d(4, {.eps = 1e-3, .momentum = std::nullopt}), nn::SiLU(), nn::Identity());
  CHECK(net.repr() == R"(Sequential(
  (0): Conv2d(3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
  (1): BatchNorm2d(16, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)
  (2): ReLU()
  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)
  (4): AdaptiveAvgPool2d(output_size=1)
  (5): Flatten(start_dim=1, end_dim=-1)
  (6): Dropout(p=0.25, inplace=False)
  (7): Linear(in_features=8, out_features=4, bias=True)
  (8): LeakyReLU(negative_slope=0.2)
  (9): GELU(approximate='none')
  (10): LayerNorm((4,), eps=1e-05, elementwise_affine=True)
  (11): Embedding(10, 3)
  (12): BatchNorm1d(4, eps=0.001, momentum=None, affine=True, track_running_stats=True)
  (13): SiLU()
  (14): Identity()
))");
  CHECK(nn::detail::py_float(1.0) == "1.0");
  CHECK(nn::detail::py_float(1e-4) == "0.0001");
  CHECK(nn::detail::py_float(1e16) == "1e+16");
  CHECK(nn::detail::py_float(123.25) == "123.25");
  CHECK(nn::detail::py_float(-2.5e-7) == "-2.5e-07");
}

}  // namespace test_layers
