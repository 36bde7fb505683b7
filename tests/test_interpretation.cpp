// ClassificationInterpretation (learn/interpretation.hpp) and saliency (learn/saliency.hpp):
// confusion matrix, most_confused, top_losses and the report's numbers against plain loops over
// hand-made predictions; the report's text against sklearn's format strings run by hand in Python;
// from_learner on a Linear over one-hot inputs (known logits) against softmax / cross entropy by
// hand; saliency against the closed form (a linear model's gradient is its weight row) and central
// finite differences through a small MLP with Dropout (eval mode); the params' grads, requires_grad
// and training flags left as they were; the three PNGs on real Fashion-MNIST items.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/data/fashion_mnist.hpp"
#include "strata/learn/interpretation.hpp"
#include "strata/learn/saliency.hpp"
#include "strata/nn/activation.hpp"
#include "strata/nn/dropout.hpp"
#include "strata/nn/flatten.hpp"
#include "strata/nn/linear.hpp"

namespace test_interpretation {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

void quiet(Learner& learn) {
  for (auto& cb : learn.sorted_cbs())
    if (cb->name().find("Progress") != std::string::npos) learn.remove_cb(cb);
}

// hand-made probabilities [N, C] whose argmax is decoded[i], from a fixed formula
Tensor probs_with_argmax(const std::vector<int64_t>& decoded, int64_t C) {
  const int64_t N = int64_t(decoded.size());
  std::vector<double> v(size_t(N * C));
  for (int64_t i = 0; i < N; ++i) {
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += v[size_t(i * C + c)] = 1.0 + double((i * 7 + c * 3) % 5) * 0.1;
    v[size_t(i * C + decoded[size_t(i)])] += 2.0;
    s += 2.0;
    for (int64_t c = 0; c < C; ++c) v[size_t(i * C + c)] /= s;
  }
  return th::make(v, {N, C}, DType::f32);
}

Tensor i64(const std::vector<int64_t>& v) {
  return th::make(std::vector<double>(v.begin(), v.end()), {int64_t(v.size())}, DType::i64);
}

}  // namespace

TEST_CASE("interpretation: confusion matrix, most_confused, top_losses, stats against loops", "[interp]") {
  const int64_t N = 60, C = 5;
  std::vector<int64_t> t, d;
  std::vector<double> l;
  for (int64_t i = 0; i < N; ++i) {
    t.push_back((i * 3 + i / 7) % C);
    d.push_back(i % 4 == 0 ? (t.back() + 1 + i % 3) % C : t.back());  // a quarter wrong
    l.push_back(double((i * 37) % 23) * 0.25);                         // with ties
  }
  const std::vector<std::string> vocab{"a", "b", "c", "d", "e"};
  ClassificationInterpretation interp(Tensor(), probs_with_argmax(d, C), i64(t), th::make(l, {N}), vocab);
  CHECK(th::values(interp.decoded) == std::vector<double>(d.begin(), d.end()));

  // confusion matrix: rows actual, columns predicted
  std::vector<double> cm(size_t(C * C), 0);
  for (int64_t i = 0; i < N; ++i) cm[size_t(t[size_t(i)] * C + d[size_t(i)])] += 1;
  const Tensor got = interp.confusion_matrix();
  CHECK(got.dtype() == DType::i64);
  CHECK(got.shape() == Shape{C, C});
  CHECK(th::values(got) == cm);

  // most_confused: off-diagonal cells >= min_val, count descending, ties row-major
  for (int64_t min_val : {1, 2, 3}) {
    std::vector<MostConfused> want;
    for (int64_t i = 0; i < C; ++i)
      for (int64_t j = 0; j < C; ++j)
        if (i != j && cm[size_t(i * C + j)] >= double(min_val))
          want.push_back({vocab[size_t(i)], vocab[size_t(j)], int64_t(cm[size_t(i * C + j)])});
    for (size_t a = 0; a < want.size(); ++a)  // insertion sort: stable
      for (size_t b = a; b > 0 && want[b].count > want[b - 1].count; --b) std::swap(want[b], want[b - 1]);
    INFO("min_val " << min_val);
    CHECK(interp.most_confused(min_val) == want);
    CHECK(!want.empty());
  }

  // top_losses: the k largest / smallest, ties by index
  std::vector<int64_t> order(static_cast<size_t>(N));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[size_t(a)] > l[size_t(b)]; });
  auto [tl, ti] = interp.top_losses(7);
  CHECK(th::values(ti) == std::vector<double>(order.begin(), order.begin() + 7));
  for (int k = 0; k < 7; ++k) CHECK(th::values(tl)[size_t(k)] == l[size_t(order[size_t(k)])]);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return l[size_t(a)] < l[size_t(b)]; });
  CHECK(th::values(interp.top_losses(4, false).second) == std::vector<double>(order.begin(), order.begin() + 4));
  CHECK(interp.top_losses().second.numel() == N);
  const ClassificationInterpretation with_nan(Tensor(), probs_with_argmax({0, 1, 0}, 2), i64({0, 1, 1}),
                                              th::make({1.0, NAN, 3.0}, {3}));
  CHECK(th::values(with_nan.top_losses(2).second) == std::vector<double>{1, 2});  // NaN first, as torch.topk
  CHECK(th::values(with_nan.top_losses(2, false).second) == std::vector<double>{0, 2});
  CHECK(with_nan.vocab == std::vector<std::string>{"0", "1"});

  // precision / recall / F1 / support
  const ClassStats s = interp.class_stats();
  int64_t correct = 0;
  for (int64_t c = 0; c < C; ++c) {
    double tp = 0, pred = 0, act = 0;
    for (int64_t i = 0; i < N; ++i) {
      tp += t[size_t(i)] == c && d[size_t(i)] == c;
      pred += d[size_t(i)] == c;
      act += t[size_t(i)] == c;
    }
    correct += int64_t(tp);
    const double p = tp / pred, r = tp / act;
    CHECK(s.precision[size_t(c)] == Approx(p));
    CHECK(s.recall[size_t(c)] == Approx(r));
    CHECK(s.f1[size_t(c)] == Approx(2 * p * r / (p + r)));
    CHECK(s.support[size_t(c)] == int64_t(act));
  }
  CHECK(s.accuracy == Approx(double(correct) / N));
}

TEST_CASE("interpretation: classification_report is sklearn's text", "[interp]") {
  // expected text: sklearn's format strings (classification_report, digits=2) run in Python by hand
  const std::vector<int64_t> t{0, 0, 0, 1, 1, 2, 2, 2, 2, 3}, d{0, 1, 0, 1, 1, 2, 0, 2, 1, 0};
  ClassificationInterpretation interp(Tensor(), probs_with_argmax(d, 4), i64(t), th::make(std::vector<double>(10, 1.0), {10}),
                                      {"cat", "dog", "a very long class", "owl"});
  const std::string want =
      "                   precision    recall  f1-score   support\n\n"
      "              cat       0.50      0.67      0.57         3\n"
      "              dog       0.50      1.00      0.67         2\n"
      "a very long class       1.00      0.50      0.67         4\n"
      "              owl       0.00      0.00      0.00         1\n\n"
      "         accuracy                           0.60        10\n"
      "        macro avg       0.50      0.54      0.48        10\n"
      "     weighted avg       0.65      0.60      0.57        10\n";
  CHECK(interp.classification_report() == want);
  th::check_throws([&] { ClassificationInterpretation(Tensor(), probs_with_argmax(d, 4), i64(t), i64(t), {"x"}); },
                   {"ClassificationInterpretation", "vocab of 1 names for 4 classes"});
  th::check_throws([&] { interp.top_losses(11); }, {"top_losses", "k = 11"});
  const th::TempDir dir("strata_test_interp");
  th::check_throws([&] { interp.plot_top_losses(dir / "none.png"); }, {"plot_top_losses", "without inputs"});
  CHECK(dir.entries() == 0);  // nothing written
}

TEST_CASE("interpretation: from_learner on known logits", "[interp]") {
  // a Linear on one-hot inputs: item i (class-one-hot e_{h(i)}) gets logits W[:, h(i)] + b
  const int64_t N = 11, H = 4, K = 3;
  std::vector<double> x(size_t(N * H), 0.0), y;
  for (int64_t i = 0; i < N; ++i) {
    x[size_t(i * H + (i * 5) % H)] = 1;
    y.push_back(double((i * 2) % K));
  }
  auto ds = std::make_shared<TensorDataset>(std::vector{th::make(x, {N, H})}, std::vector{th::make(y, {N}, DType::i64)});
  DataLoaders dls{.train = DataLoader(ds, {.bs = 4}), .valid = DataLoader(ds, {.bs = 3, .shuffle = true, .seed = 3})};
  dls.vocab = {"x", "y", "z"};
  auto lin = std::make_shared<nn::Linear>(H, K);
  const std::vector<double> W{1.0, -2.0, 0.5, 3.0, 0.0, 2.5, -1.0, 1.5, -0.5, 0.25, 2.0, -3.0}, b{0.1, -0.2, 0.3};
  {
    NoGrad ng;
    lin->weight.copy_(th::make(W, {K, H}));
    lin->bias.copy_(th::make(b, {K}));
  }
  Learner learn(dls, lin, nn::CrossEntropyLossFlat());
  quiet(learn);
  const size_t n_cbs = learn.cbs.size();
  const auto interp = ClassificationInterpretation::from_learner(learn);
  CHECK(learn.cbs.size() == n_cbs);  // its gathering callback is gone
  REQUIRE(interp.preds.shape() == Shape{N, K});
  CHECK(interp.vocab == dls.vocab);
  CHECK(th::values(interp.inputs) == x);  // not images: the raw inputs, in dataset order
  CHECK(th::values(interp.targs) == y);
  const std::vector<double> p = th::values(interp.preds), l = th::values(interp.losses), dec = th::values(interp.decoded);
  for (int64_t i = 0; i < N; ++i) {
    const int64_t h = (i * 5) % H;
    std::vector<double> z;
    for (int64_t k = 0; k < K; ++k) z.push_back(W[size_t(k * H + h)] + b[size_t(k)]);
    double se = 0;
    for (double v : z) se += std::exp(v);
    const int64_t am = std::max_element(z.begin(), z.end()) - z.begin();
    for (int64_t k = 0; k < K; ++k) CHECK(p[size_t(i * K + k)] == Approx(std::exp(z[size_t(k)]) / se).epsilon(1e-5));
    CHECK(l[size_t(i)] == Approx(std::log(se) - z[size_t(y[size_t(i)])]).epsilon(1e-5));  // cross entropy by hand
    CHECK(dec[size_t(i)] == double(am));
  }
  // top_losses' losses are those per-item cross entropies, the largest first
  auto [tl, ti] = interp.top_losses(3);
  for (int k = 0; k < 3; ++k) CHECK(th::values(tl)[size_t(k)] == l[size_t(th::values(ti)[size_t(k)])]);
  CHECK(th::values(tl)[0] == *std::max_element(l.begin(), l.end()));
}

TEST_CASE("saliency: a linear model's map is max over channels of |W[c]|", "[interp][saliency]") {
  const int64_t B = 2, C = 3, H = 4, W = 5, K = 4;
  manual_seed(11);
  auto lin = std::make_shared<nn::Linear>(C * H * W, K);
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), lin);
  DataLoaders dls{.train = DataLoader(std::make_shared<TensorDataset>(std::vector{zeros({1, 1})}, std::vector<Tensor>{})),
                  .valid = {}};
  Learner learn(dls, model, nn::CrossEntropyLossFlat());
  quiet(learn);
  const Tensor x = th::random({B, C, H, W}, DType::f32, false, -1.0, 1.0);
  const Tensor x_before = x.clone();
  // state to be left alone: a gradient on the weight, none on the bias, mixed training flags
  const Tensor wgrad = th::random({K, C * H * W}, DType::f32);
  lin->weight.set_grad(wgrad.clone());
  model->train(true);
  model->layers[0]->training = false;

  const std::vector<double> w = th::values(lin->weight), bias = th::values(lin->bias), xv = th::values(x);
  auto check_map = [&](const Tensor& m, int64_t item, int64_t cls) {
    const std::vector<double> mv = th::values(m);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t q = 0; q < W; ++q) {
        double want = 0;
        for (int64_t c = 0; c < C; ++c) want = std::max(want, std::abs(w[size_t(cls * C * H * W + (c * H + h) * W + q)]));
        CHECK(mv[size_t(item * H * W + h * W + q)] == Approx(want).epsilon(1e-6));
      }
  };
  // the predicted class, by hand
  std::vector<int64_t> pred;
  for (int64_t i = 0; i < B; ++i) {
    std::vector<double> z(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) {
      z[size_t(k)] = bias[size_t(k)];
      for (int64_t j = 0; j < C * H * W; ++j) z[size_t(k)] += w[size_t(k * C * H * W + j)] * xv[size_t(i * C * H * W + j)];
    }
    pred.push_back(std::max_element(z.begin(), z.end()) - z.begin());
  }
  const Tensor m = saliency(learn, x);
  REQUIRE(m.shape() == Shape{B, H, W});
  for (int64_t i = 0; i < B; ++i) check_map(m, i, pred[size_t(i)]);
  {
    NoGrad ng;  // works inside NoGrad too; one item [C, H, W] -> [H, W]; an explicit target
    const Tensor one = saliency(learn, x.select(0, 1), 2);
    REQUIRE(one.shape() == Shape{H, W});
    check_map(one.unsqueeze(0), 0, 2);
  }
  // nothing left behind
  CHECK(th::values(x) == th::values(x_before));
  CHECK(th::values(lin->weight.grad()) == th::values(wgrad));
  CHECK(!lin->bias.grad().defined());
  CHECK(lin->weight.requires_grad());
  CHECK(lin->bias.requires_grad());
  CHECK(model->training);
  CHECK(!model->layers[0]->training);
  CHECK(lin->training);
  th::check_throws([&] { saliency(learn, x, 4); }, {"saliency", "target 4", "[0, 4)"});
  th::check_throws([&] { saliency(learn, x.select(0, 0).select(0, 0)); }, {"saliency", "[C, H, W]"});
}

TEST_CASE("saliency: an MLP with Dropout against central finite differences (eval mode)", "[interp][saliency]") {
  const int64_t C = 2, H = 3, W = 3, K = 3;
  manual_seed(5);
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(C * H * W, 8), nn::Tanh(), nn::Dropout(0.5),
                                                nn::Linear(8, K));
  model->to(DType::f64);
  DataLoaders dls{.train = DataLoader(std::make_shared<TensorDataset>(std::vector{zeros({1, 1})}, std::vector<Tensor>{})),
                  .valid = {}};
  Learner learn(dls, model, nn::CrossEntropyLossFlat());
  quiet(learn);
  model->train(true);  // Dropout would scramble the gradient if saliency did not switch to eval
  const Tensor x = th::random({C, H, W}, DType::f64, false, -1.0, 1.0);
  const Tensor m = saliency(learn, x);
  CHECK(model->training);
  // f(x) = logits in eval mode, by the same model; class = argmax at x
  auto logits = [&](const std::vector<double>& xv) {
    NoGrad ng;
    model->eval();
    const Tensor z = model->forward(th::make(xv, {1, C, H, W}, DType::f64));
    model->train(true);
    return th::values(z);
  };
  const std::vector<double> x0 = th::values(x), z0 = logits(x0);
  const int64_t cls = std::max_element(z0.begin(), z0.end()) - z0.begin();
  const double eps = 1e-6;
  const std::vector<double> mv = th::values(m);
  for (int64_t p = 0; p < H * W; ++p) {
    double want = 0;
    for (int64_t c = 0; c < C; ++c) {
      std::vector<double> xp = x0, xm = x0;
      xp[size_t(c * H * W + p)] += eps;
      xm[size_t(c * H * W + p)] -= eps;
      want = std::max(want, std::abs((logits(xp)[size_t(cls)] - logits(xm)[size_t(cls)]) / (2 * eps)));
    }
    CHECK(mv[size_t(p)] == Approx(want).epsilon(1e-6).margin(1e-9));
  }
}

TEST_CASE("interpretation and saliency plots on Fashion-MNIST", "[interp][plot]") {
  manual_seed(1);
  auto dls = fashion_mnist({.bs = 64, .num_workers = 0, .n_train = 512, .n_valid = 200});
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 10));
  Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.lr = 1e-2});
  quiet(learn);
  learn.fit(1);
  const auto interp = ClassificationInterpretation::from_learner(learn);
  REQUIRE(interp.inputs.shape() == Shape{200, 1, 28, 28});
  CHECK(amin(interp.inputs).item<float>() >= 0.0f);  // decoded for showing: [0, 1]
  CHECK(amax(interp.inputs).item<float>() <= 1.0f);
  const Tensor cm = interp.confusion_matrix();
  CHECK(cm.sum().item<int64_t>() == 200);
  CHECK(interp.class_stats().accuracy > 0.5);  // a few batches of a linear model already beat chance by far

  const th::TempDir dir("strata_test_interp_plots");  // removed even when a REQUIRE below fails
  const std::string cm_path = dir / "confusion_matrix.png";
  interp.plot_confusion_matrix(cm_path);
  const ConfusionMatrixLayout L{.C = 10};
  CHECK(L.width() == 756);
  th::check_png(cm_path, L.width(), L.height());
  // the largest cell is Blues' darkest, the smallest its lightest, and the darkest carries white text
  const std::vector<double> cv = th::values(cm);
  const auto imax = std::max_element(cv.begin(), cv.end()) - cv.begin(), imin = std::min_element(cv.begin(), cv.end()) - cv.begin();
  const Tensor png = read_image(cm_path, 3);
  auto px = [&](int x, int y) { return Color{uint8_t(th::at(png, {0, y, x})), uint8_t(th::at(png, {1, y, x})), uint8_t(th::at(png, {2, y, x}))}; };
  const int r = int(imax / 10), c = int(imax % 10), rn = int(imin / 10), cn = int(imin % 10);
  CHECK(px(L.x0(c) + 2, L.y0(r) + 2) == Color{8, 48, 107});
  CHECK(px(L.x0(cn) + 2, L.y0(rn) + 2) == Color{247, 251, 255});
  int white = 0;
  for (int y = L.y0(r); y < L.y0(r) + L.cell(); ++y)
    for (int x = L.x0(c); x < L.x0(c) + L.cell(); ++x) white += px(x, y) == Color{255, 255, 255};
  CHECK(white > 10);
  interp.plot_confusion_matrix(dir / "confusion_matrix_norm.png", true, "Normalized");
  th::check_png(dir / "confusion_matrix_norm.png", L.width(), L.height());

  const std::string tl_path = dir / "top_losses.png";
  interp.plot_top_losses(tl_path, 9);
  th::check_png(tl_path, 3 * (224 + 4) + 4, 3 * (18 + 224 + 4) + 4);

  const std::string s_path = dir / "saliency.png";
  Batch vb = DataLoader(dls.valid).one_batch();
  const Tensor x0 = vb.xb[0].select(0, 0);
  plot_saliency(s_path, learn, x0);
  const Tensor spng = th::check_png(s_path, 2 * (224 + 4) + 4, 18 + 224 + 4 + 4);
  // the overlay: 0.5 grey + 0.5 inferno(t), t = map / its 99th percentile clipped at 1; the grey is
  // the item min-max scaled. Its most salient pixel is inferno(1) = (252, 255, 164) blended (28 px ->
  // 224: 8 px per pixel, probed at its centre)
  const std::vector<double> mv = th::values(saliency(learn, x0)), xv = th::values(x0);
  const double lo = *std::min_element(xv.begin(), xv.end()), hi = *std::max_element(xv.begin(), xv.end());
  auto probe = [&](size_t p, Color want) {
    const int x = 4 + 224 + 4 + int(p % 28) * 8 + 4, y = 4 + 18 + int(p / 28) * 8 + 4;
    const double g = (xv[p] - lo) / (hi - lo) * 255;
    INFO("pixel " << p << " grey " << g);
    CHECK(std::abs(th::at(spng, {0, y, x}) - (0.5 * g + 0.5 * want.r)) <= 1.5);
    CHECK(std::abs(th::at(spng, {1, y, x}) - (0.5 * g + 0.5 * want.g)) <= 1.5);
    CHECK(std::abs(th::at(spng, {2, y, x}) - (0.5 * g + 0.5 * want.b)) <= 1.5);
  };
  probe(size_t(std::max_element(mv.begin(), mv.end()) - mv.begin()), {252, 255, 164});
  plot_saliency(dir / "saliency2.png", learn, vb.xb[0].narrow(0, 0, 2), 3, 112);
  th::check_png(dir / "saliency2.png", 2 * (112 + 4) + 4, 2 * (18 + 112 + 4) + 4);
  if (const char* keep = std::getenv("STRATA_KEEP_PLOTS"))  // a directory to copy the PNGs to
    for (const char* n : {"confusion_matrix.png", "confusion_matrix_norm.png", "top_losses.png", "saliency.png", "saliency2.png"})
      std::filesystem::copy_file(dir / n, std::filesystem::path(keep) / n, std::filesystem::copy_options::overwrite_existing);
}

}  // namespace test_interpretation
