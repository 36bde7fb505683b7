// Metrics: values computed over the validation set each epoch (fastai v2, metrics.py and learner.py).
//
//   Learner learn(dls, model, nn::CrossEntropyLossFlat(), {.metrics = {accuracy(), error_rate()}});
//
// A Metric is reset() before the validation phase, accumulate()s each batch (pred, yb) and gives
// value() at the end; the Recorder drives it. Two kinds, as in fastai:
// - avg   (AvgMetric):   value = sum_b fn(pred_b, y_b) * bs_b / sum_b bs_b, a mean over batches
//                        weighted by batch size; right for per-item means such as accuracy.
// - accum (AccumMetric): value = fn(cat(preds), cat(targs)) over the whole epoch, optionally after
//                        softmax / sigmoid / argmax / threshold of the predictions; right for
//                        metrics that are not per-item means (rmse, F1, ...).
// Metrics see detached tensors and return a 0-dim tensor (any dtype); value() is a double, NaN
// before anything was accumulated (fastai's None). A Metric is a value: a copy has its own state.
//
// accuracy(pred [B, C] or [B, C, d...] with classes on `axis`, y [B] or [B, d...]) =
//   mean(argmax(pred, axis) == y);   error_rate = 1 - accuracy;
// top_k_accuracy(k): mean over items of [y is among the k largest predictions] (an item counts when
//   fewer than k classes score strictly higher than its target);
// mse = mean((pred - y)^2), mae = mean(|pred - y|) (avg), rmse = sqrt(mse over the epoch) (accum).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "strata/autograd/grad_mode.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata {

/// What AccumMetric does to the predictions before storing them (fastai's ActivationType).
enum class MetricActivation { none, softmax, sigmoid };

/// Options of an AccumMetric (fastai's AccumMetric arguments).
struct AccumOptions {
  std::optional<int64_t> dim_argmax = {};                // argmax over this dim (after the activation, if any)
  MetricActivation activation = MetricActivation::none;  // softmax over dim_argmax (default 1) or sigmoid
  std::optional<double> thresh;                          // pred = pred >= thresh (as f32)
  bool flatten = true;                                   // flatten preds and targets (sizes must match)
};

/// fastai's find_bs: the batch size of a batch's targets (or inputs), the first dim of the first tensor.
inline int64_t find_bs(const std::vector<Tensor>& b) {
  STRATA_CHECK(!b.empty() && b[0].defined(), "find_bs", "got ", b.size(),
               " tensors, expected at least one defined tensor (a batch's targets or inputs)");
  return b[0].dim() > 0 ? b[0].size(0) : 1;
}

class Metric {
 public:
  using Fn = std::function<Tensor(const Tensor& pred, const Tensor& y)>;
  enum class Kind { avg, accum };

  std::string name;
  Kind kind = Kind::avg;
  Fn fn;
  AccumOptions accum_options;

  Metric() = default;
  /// fastai's AvgMetric: fn's value averaged over batches, weighted by batch size.
  static Metric avg(std::string name, Fn fn) {
    Metric m;
    m.name = std::move(name);
    m.fn = std::move(fn);
    return m;
  }
  /// fastai's AccumMetric: fn on the predictions and targets of the whole epoch.
  static Metric accum(std::string name, Fn fn, AccumOptions o = {}) {
    Metric m = avg(std::move(name), std::move(fn));
    m.kind = Kind::accum;
    m.accum_options = o;
    return m;
  }

  void reset() {
    total_ = 0;
    count_ = 0;
    preds_.clear();
    targs_.clear();
  }
  /// Adds one batch from the Learner (its pred and yb).
  template <class L>
  void accumulate(const L& learn) {
    accumulate(learn.pred, learn.yb);
  }
  /// Adds one batch: pred and the batch's targets (fn takes yb[0]).
  void accumulate(const Tensor& pred, const std::vector<Tensor>& yb) {
    STRATA_CHECK(fn != nullptr, "Metric", "got metric \"", name, "\" without a function, expected Metric::avg or ::accum");
    STRATA_CHECK(yb.size() == 1 && pred.defined(), "Metric", "got ", yb.size(), " targets for metric \"", name,
                 "\"", pred.defined() ? "" : " and no prediction", ", expected a prediction and one target");
    NoGrad ng;
    const Tensor p = pred.detach(), y = yb[0].detach();
    if (kind == Kind::avg) {
      const int64_t bs = find_bs(yb);
      total_ += fn(p, y).to(DType::f64).item<double>() * double(bs);
      count_ += bs;
      return;
    }
    Tensor q = p;
    const AccumOptions& o = accum_options;
    if (o.activation == MetricActivation::softmax) q = softmax(q, o.dim_argmax.value_or(1));
    else if (o.activation == MetricActivation::sigmoid) q = sigmoid(q);
    else if (o.dim_argmax) q = argmax(q, *o.dim_argmax);
    if (o.thresh) q = ge_scalar(q, *o.thresh);
    Tensor t = y;
    if (o.flatten) {
      STRATA_CHECK(q.numel() == t.numel(), "Metric", "got predictions of shape ", q.shape(), " and targets of shape ",
                   t.shape(), " for metric \"", name, "\", expected the same number of elements");
      q = reshape(q.contiguous(), {-1});
      t = reshape(t.contiguous(), {-1});
    }
    preds_.push_back(q.clone());
    targs_.push_back(t.clone());
  }
  /// The epoch's value; NaN when nothing was accumulated.
  double value() const {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    if (kind == Kind::avg) return count_ ? total_ / double(count_) : nan;
    if (preds_.empty()) return nan;
    NoGrad ng;
    return fn(cat(preds_, 0), cat(targs_, 0)).to(DType::f64).item<double>();
  }

 private:
  static Tensor ge_scalar(const Tensor& x, double thresh) {
    // x >= thresh  <=>  !(x < thresh); as f32 0/1
    return sub(scalar_tensor(1.0), lt(x, scalar_tensor(thresh, {.dtype = x.dtype()})).to(DType::f32));
  }

  double total_ = 0;
  int64_t count_ = 0;
  std::vector<Tensor> preds_, targs_;
};

namespace detail {
/// argmax over `axis` of pred, flattened next to the flattened targets (fastai's flatten_check).
inline std::pair<Tensor, Tensor> argmax_flat(const Tensor& pred, const Tensor& y, int64_t axis, const char* op) {
  STRATA_CHECK(pred.dim() >= 1, op, "got predictions of shape ", pred.shape(), ", expected a class dim");
  const Tensor a = argmax(pred, axis);
  STRATA_CHECK(a.numel() == y.numel(), op, "got predictions of shape ", pred.shape(), " and targets of shape ",
               y.shape(), ", expected one target per prediction (", a.numel(), ")");
  return {reshape(a.contiguous(), {-1}), reshape(y.contiguous(), {-1}).to(DType::i64)};
}
/// pred and y flattened to 1-D f64, with matching sizes.
inline std::pair<Tensor, Tensor> flat_pair(const Tensor& pred, const Tensor& y, const char* op) {
  STRATA_CHECK(pred.numel() == y.numel(), op, "got predictions of shape ", pred.shape(), " and targets of shape ",
               y.shape(), ", expected the same number of elements");
  return {reshape(pred.contiguous(), {-1}).to(DType::f64), reshape(y.contiguous(), {-1}).to(DType::f64)};
}
}  // namespace detail

/// Fraction of items whose largest prediction (over `axis`) is the target.
inline Metric accuracy(int64_t axis = -1) {
  return Metric::avg("accuracy", [axis](const Tensor& pred, const Tensor& y) {
    auto [p, t] = detail::argmax_flat(pred, y, axis, "accuracy");
    return mean(eq(p, t).to(DType::f64));
  });
}

/// 1 - accuracy.
inline Metric error_rate(int64_t axis = -1) {
  return Metric::avg("error_rate", [axis](const Tensor& pred, const Tensor& y) {
    auto [p, t] = detail::argmax_flat(pred, y, axis, "error_rate");
    return sub(scalar_tensor(1.0, {.dtype = DType::f64}), mean(eq(p, t).to(DType::f64)));
  });
}

/// Fraction of items whose target is among the k largest predictions. pred [B, C], y [B].
inline Metric top_k_accuracy(int64_t k = 5) {
  STRATA_CHECK(k >= 1, "top_k_accuracy", "got k = ", k, ", expected k >= 1");
  return Metric::avg("top_k_accuracy", [k](const Tensor& pred, const Tensor& y) {
    STRATA_CHECK(pred.dim() == 2 && y.dim() == 1 && y.size(0) == pred.size(0), "top_k_accuracy",
                 "got predictions of shape ", pred.shape(), " and targets of shape ", y.shape(),
                 ", expected [B, C] and [B]");
    const Tensor p = pred.to(DType::f64);
    const Tensor target_score = gather(p, 1, y.to(DType::i64).unsqueeze(1));        // [B, 1]
    const Tensor higher = sum(gt(p, target_score).to(DType::i64), {1});              // [B]: classes above the target
    return mean(lt(higher, scalar_tensor(double(k), {.dtype = DType::i64})).to(DType::f64));
  });
}

/// Mean squared error, averaged over batches.
inline Metric mse() {
  return Metric::avg("mse", [](const Tensor& pred, const Tensor& y) {
    auto [p, t] = detail::flat_pair(pred, y, "mse");
    return mean(square(sub(p, t)));
  });
}

/// Mean absolute error, averaged over batches.
inline Metric mae() {
  return Metric::avg("mae", [](const Tensor& pred, const Tensor& y) {
    auto [p, t] = detail::flat_pair(pred, y, "mae");
    return mean(sub(p, t).abs());
  });
}

/// Root mean squared error over the whole epoch.
inline Metric rmse() {
  return Metric::accum("rmse", [](const Tensor& pred, const Tensor& y) {
    auto [p, t] = detail::flat_pair(pred, y, "rmse");
    return mean(square(sub(p, t))).sqrt();
  });
}

}  // namespace strata
