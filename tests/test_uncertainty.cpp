// Learner::uncertainty: entropy, margin and least confidence against plain loops over a softmax
// written out here, on a model that passes fixed logits through (Identity); hand-ranked orders
// with ties; the DataLoader overload (shuffled, with targets the loss could not take) matches the
// Tensor overload; error texts; and on real Fashion-MNIST, after a few batches of a linear model,
// the most uncertain test items have smaller top1-top2 gaps and lower accuracy than the most certain.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/learn/uncertainty.hpp"

namespace test_uncertainty {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

void quiet(Learner& learn) {
  for (auto& cb : learn.sorted_cbs())
    if (cb->name().find("Progress") != std::string::npos) learn.remove_cb(cb);
}

/// A Learner whose model returns its input: the items are the logits.
struct LogitsLearner {
  Learner learn;
  explicit LogitsLearner(nn::ModulePtr m = std::make_shared<nn::Identity>())
      : learn(th::blob_dls(8, 8, 4), std::move(m), nn::CrossEntropyLossFlat()) {
    quiet(learn);
  }
};

/// Reference: softmax of each row in double, then the three scores by plain loops.
struct Ref {
  std::vector<double> probs, entropy, margin, least;
};
Ref reference(const std::vector<double>& logits, int64_t N, int64_t C) {
  Ref r;
  for (int64_t i = 0; i < N; ++i) {
    double mx = -INFINITY, z = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, logits[size_t(i * C + c)]);
    for (int64_t c = 0; c < C; ++c) z += std::exp(logits[size_t(i * C + c)] - mx);
    std::vector<double> p;
    for (int64_t c = 0; c < C; ++c) p.push_back(std::exp(logits[size_t(i * C + c)] - mx) / z);
    double h = 0;
    for (double v : p) h -= v > 0 ? v * std::log(v) : 0.0;
    std::vector<double> sorted = p;
    std::sort(sorted.rbegin(), sorted.rend());
    r.probs.insert(r.probs.end(), p.begin(), p.end());
    r.entropy.push_back(h);
    r.margin.push_back(1 - (sorted[0] - sorted[1]));
    r.least.push_back(1 - sorted[0]);
  }
  return r;
}

std::vector<int64_t> ref_order(const std::vector<double>& s) {
  std::vector<int64_t> o(s.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int64_t a, int64_t b) { return s[size_t(a)] > s[size_t(b)]; });
  return o;
}

}  // namespace

TEST_CASE("uncertainty: entropy, margin, least confidence against plain loops", "[uncertainty]") {
  LogitsLearner l;
  const int64_t N = 37, C = 5;
  manual_seed(3);
  Tensor logits = th::random({N, C}, DType::f32, false, -4, 4);
  const std::vector<double> lv = th::values(logits);  // the f32 values, exactly, as doubles
  const Ref ref = reference(lv, N, C);
  const std::pair<Uncertainty, const std::vector<double>*> cases[] = {
      {Uncertainty::entropy, &ref.entropy}, {Uncertainty::margin, &ref.margin}, {Uncertainty::least_confidence, &ref.least}};
  for (auto [method, want] : cases) {
    INFO("method " << uncertainty_name(method));
    const UncertaintyResult r = l.learn.uncertainty(logits, method, 8);
    CHECK(r.scores.dtype() == DType::f64);
    CHECK(r.scores.shape() == Shape{N});
    CHECK(r.probs.shape() == Shape{N, C});
    th::check_close(th::values(r.scores), *want, 1e-12);
    th::check_close(th::values(r.probs), ref.probs, 1e-12);
    CHECK(r.order == ref_order(*want));
  }
  // the default is entropy
  CHECK(th::values(l.learn.uncertainty(logits).scores) == th::values(l.learn.uncertainty(logits, Uncertainty::entropy).scores));
}

TEST_CASE("uncertainty: hand-ranked orders, ties by index", "[uncertainty]") {
  LogitsLearner l;
  // 0 and 3 uniform; 2 split between two classes; 4 leaning; 1 sure
  Tensor logits = th::make({0, 0, 0, /**/ 4, 0, 0, /**/ 2, 2, -30, /**/ 0, 0, 0, /**/ 1, 0, 0}, {5, 3});
  // entropy: log 3 (0, 3) > 0.975 (4) > log 2 (2) > 0.17 (1)
  CHECK(l.learn.uncertainty(logits, Uncertainty::entropy).order == std::vector<int64_t>{0, 3, 4, 2, 1});
  // margin: 1 (0, 2, 3: the top two are equal) > 0.636 (4) > 0.053 (1)
  CHECK(l.learn.uncertainty(logits, Uncertainty::margin).order == std::vector<int64_t>{0, 2, 3, 4, 1});
  // least confidence: 2/3 (0, 3) > 1/2 (2) > 0.424 (4) > 0.035 (1)
  CHECK(l.learn.uncertainty(logits, Uncertainty::least_confidence).order == std::vector<int64_t>{0, 3, 2, 4, 1});
  const UncertaintyResult m = l.learn.uncertainty(logits, Uncertainty::margin, 2);
  CHECK(th::values(m.scores)[0] == 1.0);
  CHECK(th::values(m.scores)[2] == 1.0);
  CHECK(th::values(m.scores)[4] == Approx(1 - (std::exp(1) - 1) / (std::exp(1) + 2)).epsilon(1e-12));
  // a one-class prediction is certain by entropy and least confidence
  Tensor one = th::make({3, -1, 7}, {3, 1});
  CHECK(th::values(l.learn.uncertainty(one, Uncertainty::entropy).scores) == std::vector<double>{0, 0, 0});
  CHECK(th::values(l.learn.uncertainty(one, Uncertainty::least_confidence).scores) == std::vector<double>{0, 0, 0});
}

TEST_CASE("uncertainty: the DataLoader overload, eval mode, no grad, callbacks restored", "[uncertainty]") {
  // Dropout(0.9) would scramble the logits in training mode: the same scores show eval mode
  auto model = std::make_shared<nn::Sequential>(nn::Dropout(0.9), nn::Identity());
  LogitsLearner l(model);
  const int64_t N = 11, C = 4;
  manual_seed(5);
  Tensor logits = th::random({N, C}, DType::f32, false, -3, 3);
  const Ref ref = reference(th::values(logits), N, C);
  // shuffled, drop_last, and targets of a shape cross-entropy refuses: all must not matter
  DataLoader dl(std::make_shared<TensorDataset>(std::vector<Tensor>{logits}, std::vector<Tensor>{zeros({N, 7})}),
                {.bs = 3, .shuffle = true, .drop_last = true, .seed = 9});
  const size_t n_cbs = l.learn.cbs.size();
  const UncertaintyResult r = l.learn.uncertainty(dl, Uncertainty::margin);
  CHECK(l.learn.cbs.size() == n_cbs);
  th::check_close(th::values(r.scores), ref.margin, 1e-12);
  CHECK(r.order == ref_order(ref.margin));
  CHECK_FALSE(r.probs.requires_grad());
  // a model with parameters: outputs need no grad
  LogitsLearner lin(std::make_shared<nn::Linear>(C, 3));
  const UncertaintyResult q = lin.learn.uncertainty(logits, Uncertainty::least_confidence, 0);
  CHECK_FALSE(q.probs.requires_grad());
  CHECK_FALSE(q.scores.requires_grad());
  CHECK(q.probs.shape() == Shape{N, 3});
}

TEST_CASE("uncertainty: errors", "[uncertainty]") {
  LogitsLearner l;
  th::check_throws([&] { l.learn.uncertainty(zeros({0, 3})); }, {"uncertainty", "got items of shape", "N >= 1"});
  th::check_throws([&] { l.learn.uncertainty(Tensor()); }, {"uncertainty", "(undefined)"});
  th::check_throws([&] { l.learn.uncertainty(zeros({4, 3, 2})); }, {"uncertainty", "[4, 3, 2]", "expected 2-D"});
  th::check_throws([&] { l.learn.uncertainty(zeros({4, 1}), Uncertainty::margin); },
                   {"uncertainty", "got 1 class", "margin", "C >= 2"});
  th::check_throws([&] { l.learn.uncertainty(zeros({4, 3}), Uncertainty::entropy, -1); }, {"uncertainty", "bs = -1"});
  DataLoader empty_dl;
  th::check_throws([&] { l.learn.uncertainty(empty_dl); }, {"uncertainty", "0 items"});
  th::check_throws([&] { l.learn.uncertainty(th::make({0, NAN}, {1, 2})); }, {"uncertainty", "expected finite"});
  th::check_throws([&] { uncertainty_scores(zeros({3}), Uncertainty::entropy); }, {"uncertainty", "expected 2-D"});
}

TEST_CASE("uncertainty: real data, the most uncertain Fashion-MNIST items are the least sure and least right",
          "[uncertainty]") {
  manual_seed(1);
  DataLoaders dls = fashion_mnist({.bs = 64, .num_workers = 0, .n_train = 640, .n_valid = 600});
  auto model = std::make_shared<nn::Sequential>(nn::Flatten(), nn::Linear(784, 10));
  Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.lr = 3e-3});
  quiet(learn);
  learn.fit(1);  // 10 batches: a weak but informed model
  for (Uncertainty method : {Uncertainty::margin, Uncertainty::entropy}) {
    INFO("method " << uncertainty_name(method));
    const UncertaintyResult r = learn.uncertainty(dls.valid, method);
    REQUIRE(r.probs.shape() == Shape{600, 10});
    const std::vector<double> p = th::values(r.probs);
    const std::vector<double> y = th::values(dls.valid.dataset().get_batch(std::vector<int64_t>(r.order)).yb[0]);
    // gap and correctness of item r.order[k], by plain loops over its probabilities
    auto gap = [&](size_t k) {
      std::vector<double> row(p.begin() + int64_t(r.order[k]) * 10, p.begin() + int64_t(r.order[k]) * 10 + 10);
      std::sort(row.rbegin(), row.rend());
      return row[0] - row[1];
    };
    auto right = [&](size_t k) {
      const auto* row = &p[size_t(r.order[k]) * 10];
      return double(std::max_element(row, row + 10) - row == int64_t(y[k]));
    };
    double gap_top = 0, gap_bottom = 0, acc_top = 0, acc_bottom = 0;
    const size_t K = 100;
    for (size_t k = 0; k < K; ++k) {
      gap_top += gap(k) / K, gap_bottom += gap(r.order.size() - 1 - k) / K;
      acc_top += right(k) / K, acc_bottom += right(r.order.size() - 1 - k) / K;
    }
    INFO("mean top1-top2 gap: most uncertain " << gap_top << ", least uncertain " << gap_bottom
                                                << "; accuracy " << acc_top << " vs " << acc_bottom);
    CHECK(gap_top < gap_bottom - 0.3);
    CHECK(acc_top + 0.25 < acc_bottom);
    // the scores are sorted along the order
    const std::vector<double> s = th::values(r.scores);
    for (size_t k = 1; k < r.order.size(); ++k) CHECK(s[size_t(r.order[k - 1])] >= s[size_t(r.order[k])]);
  }
}

}  // namespace test_uncertainty
