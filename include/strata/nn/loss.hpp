// Losses, functional with PyTorch's semantics, and fastai's loss objects that the Learner takes.
//
//   cross_entropy(x [B, C, d...], y int64 [B, d...]), logp = log_softmax(x, 1), eps = label_smoothing:
//       l = -(1 - eps) * logp[y] - eps * mean_c logp_c
//     or y float [B, C, d...] (probabilities): l = -sum_c t_c logp_c, t = (1 - eps) y + eps / C
//   nll_loss(logp [B, C, d...], y [B, d...]):  l = -logp[y]
//   mse_loss: l = (x - y)^2      l1_loss: l = |x - y|
//   binary_cross_entropy_with_logits: l = max(x, 0) - x y + log(1 + exp(-|x|))  (never exp of a large x)
//       dl/dx = sigmoid(x) - y, dl/dy = -x
// reduction: "mean" (over every element l; the default), "sum", or "none" (l itself).
// Predictions and targets must have matching shapes (no broadcasting: a mismatch is nearly always a
// bug); the error names the loss and both shapes.
// cross_entropy of float32/float64 logits [B, C] against class indices is one fused node
// (kernels/cpu/softmax_xent.hpp): no [B, C] log-probabilities are made or kept.
// Reference: torch.nn.functional; fastai's BaseLoss / CrossEntropyLossFlat (fastai/losses.py).
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "kernels/cpu/softmax_xent.hpp"
#include "strata/tensor/tensor.hpp"

namespace strata::nn {

namespace detail {
inline Tensor reduce_loss(const Tensor& l, std::string_view reduction, const char* op) {
  if (reduction == "mean") return mean(l);
  if (reduction == "sum") return sum(l);
  if (reduction == "none") return l;
  STRATA_CHECK(false, op, "got reduction '", reduction, "', expected 'mean', 'sum' or 'none'");
  return l;
}

/// Checks class-index targets against predictions [B, C, d...] (or [C] with a 0-dim target).
inline void check_class_targets(const Tensor& x, const Tensor& y, const char* op) {
  STRATA_CHECK(x.dim() >= 1, op, "got predictions of shape ", x.shape(), ", expected [B, C] or [B, C, d...]");
  Shape want = x.shape();
  want.erase(want.begin() + (x.dim() == 1 ? 0 : 1));
  STRATA_CHECK(y.dtype() == DType::i64 || y.dtype() == DType::i32, op, "got targets of dtype ", y.dtype(),
               " for predictions of shape ", x.shape(), ", expected int64 class indices of shape ", want,
               (std::string_view(op) == "cross_entropy" ? " (or float probabilities of the predictions' shape)" : ""));
  STRATA_CHECK(y.shape() == want, op, "got predictions of shape ", x.shape(), " and targets of shape ", y.shape(),
               ", expected targets of shape ", want);
  const int64_t C = x.size(x.dim() == 1 ? 0 : 1);
  const Tensor yc = strata::detail::copy_to_device(contiguous(detach(y)).to(DType::i64), kCPU);  // read on the host
  const int64_t* p = yc.data_ptr<int64_t>();
  for (int64_t i = 0; i < yc.numel(); ++i)
    STRATA_CHECK(p[i] >= 0 && p[i] < C, op, "got target ", p[i], " at element ", i, " for ", C,
                 " classes, expected class indices in [0, ", C, ")");
}

inline void check_same_shape(const Tensor& x, const Tensor& y, const char* op) {
  STRATA_CHECK(x.shape() == y.shape(), op, "got predictions of shape ", x.shape(), " and targets of shape ",
               y.shape(), ", expected targets of shape ", x.shape());
  STRATA_CHECK(x.is_floating_point(), op, "got predictions of dtype ", x.dtype(), ", expected a floating dtype");
  STRATA_CHECK(y.is_floating_point(), op, "got targets of dtype ", y.dtype(),
               ", expected a floating dtype (convert with .to(DType::f32))");
}
/// The cuda path of softmax_cross_entropy (include/strata/backend/cuda/loss.hpp): loss [B] and
/// lse [B] from x [B, C] and y [B] (contiguous, int64); then dx [B, C] from dloss [B].
inline strata::detail::CudaHook<void(const Tensor& x, const Tensor& y, const Tensor& loss, const Tensor& lse, double eps)>
    cuda_softmax_xent_fwd_hook{"cross_entropy"};
inline strata::detail::CudaHook<void(const Tensor& dloss, const Tensor& x, const Tensor& y, const Tensor& lse, const Tensor& dx,
                     double eps)>
    cuda_softmax_xent_bwd_hook{"cross_entropy_backward"};

/// Per-row softmax cross entropy of logits x [B, C] (float32/float64 on the CPU; any floating dtype on
/// cuda) against checked class indices y [B], with label smoothing eps, as one autograd node
/// (kernels/cpu/softmax_xent.hpp, kernels/cuda/softmax_xent.cuh).
inline Tensor softmax_cross_entropy(const Tensor& x, const Tensor& y, double eps) {
  const Tensor xc = contiguous(detach(x)), yc = contiguous(detach(y)).to(DType::i64);
  const int64_t B = x.size(0), C = x.size(1);
  const DType acc = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
  Tensor loss = Tensor::empty({B}, x.dtype(), x.device()), lse = Tensor::empty({B}, acc, x.device());
  if (x.device().is_cuda()) {
    cuda_softmax_xent_fwd_hook(xc, yc, loss, lse, eps);
  } else {
    dispatch_float(x.dtype(), "cross_entropy", [&]<class T>(type_tag<T>) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::softmax_xent_fwd<T, T>(xc.data_ptr<T>(), yc.data_ptr<int64_t>(), loss.data_ptr<T>(), lse.data_ptr<T>(), B,
                                    C, eps);
    });
  }
  const Saved xs = xc;  // version-checked: x changed in place before backward is an error, not a wrong gradient
  return record("cross_entropy_backward", loss, {x}, [xs, yc, lse, B, C, eps](const Tensor& dout) {
    const Tensor& xc = xs.get();
    const Tensor dc = contiguous(to(detach(dout), xc.dtype()));
    Tensor dx = Tensor::empty({B, C}, xc.dtype(), xc.device());
    if (xc.device().is_cuda()) {
      cuda_softmax_xent_bwd_hook(dc, xc, yc, lse, dx, eps);
      return std::vector{dx};
    }
    dispatch_float(xc.dtype(), "cross_entropy_backward", [&]<class T>(type_tag<T>) {
      if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
        cpu::softmax_xent_bwd<T, T>(dc.data_ptr<T>(), xc.data_ptr<T>(), yc.data_ptr<int64_t>(), lse.data_ptr<T>(),
                                    dx.data_ptr<T>(), B, C, eps);
    });
    return std::vector{dx};
  });
}
}  // namespace detail


/// -logp[y] for log-probabilities logp [B, C, d...] (or [C]) and class indices y [B, d...] (or []).
inline Tensor nll_loss(const Tensor& logp, const Tensor& y, std::string_view reduction = "mean") {
  detail::check_class_targets(logp, y, "nll_loss");
  const int64_t cdim = logp.dim() == 1 ? 0 : 1;
  const Tensor l = neg(squeeze(gather(logp, cdim, unsqueeze(y.to(DType::i64), cdim)), cdim));
  return detail::reduce_loss(l, reduction, "nll_loss");
}

/// Softmax cross entropy of logits x [B, C, d...] against class indices y [B, d...] or probabilities
/// y [B, C, d...], with optional label smoothing (see the top of this file).
inline Tensor cross_entropy(const Tensor& x, const Tensor& y, double label_smoothing = 0.0,
                            std::string_view reduction = "mean") {
  STRATA_CHECK(label_smoothing >= 0 && label_smoothing <= 1, "cross_entropy", "got label_smoothing=",
               label_smoothing, ", expected a value in [0, 1]");
  STRATA_CHECK(x.is_floating_point(), "cross_entropy", "got predictions of dtype ", x.dtype(),
               ", expected a floating dtype");
  if (x.dim() == 1 && y.dim() <= 1 && (y.dim() == 0 || y.is_floating_point())) {  // one unbatched sample
    const Tensor l = cross_entropy(unsqueeze(x, 0), unsqueeze(y, 0), label_smoothing, "none");
    return detail::reduce_loss(squeeze(l, 0), reduction, "cross_entropy");
  }
  const int64_t cdim = x.dim() == 1 ? 0 : 1;
  if (y.is_floating_point()) {  // probabilities over the classes
    STRATA_CHECK(y.shape() == x.shape(), "cross_entropy", "got predictions of shape ", x.shape(),
                 " and float targets of shape ", y.shape(), ", expected float targets of shape ", x.shape(),
                 " (probabilities) or int64 class indices");
    const Tensor logp = log_softmax(x, cdim);
    const double C = double(x.size(cdim));
    const Tensor t = label_smoothing > 0 ? y * (1.0 - label_smoothing) + label_smoothing / C : y;
    return detail::reduce_loss(neg(sum(logp * t, {cdim})), reduction, "cross_entropy");
  }
  detail::check_class_targets(x, y, "cross_entropy");
  if (x.dim() == 2 && (x.device().is_cuda() || x.dtype() == DType::f32 || x.dtype() == DType::f64))
    return detail::reduce_loss(detail::softmax_cross_entropy(x, y, label_smoothing), reduction, "cross_entropy");
  const Tensor logp = log_softmax(x, cdim);
  Tensor l = neg(squeeze(gather(logp, cdim, unsqueeze(y.to(DType::i64), cdim)), cdim));
  if (label_smoothing > 0) l = l * (1.0 - label_smoothing) - mean(logp, {cdim}) * label_smoothing;
  return detail::reduce_loss(l, reduction, "cross_entropy");
}

/// (x - y)^2, reduced.
inline Tensor mse_loss(const Tensor& x, const Tensor& y, std::string_view reduction = "mean") {
  detail::check_same_shape(x, y, "mse_loss");
  const Tensor d = x - y;
  return detail::reduce_loss(d * d, reduction, "mse_loss");
}

/// |x - y|, reduced.
inline Tensor l1_loss(const Tensor& x, const Tensor& y, std::string_view reduction = "mean") {
  detail::check_same_shape(x, y, "l1_loss");
  return detail::reduce_loss(abs(x - y), reduction, "l1_loss");
}

/// Elementwise max(x, 0) - x y + log(1 + exp(-|x|)) for logits x and targets y of x's shape; no autograd.
inline Tensor binary_cross_entropy_with_logits_fwd(const Tensor& x, const Tensor& y) {
  NoGrad ng;
  return relu(x) - x * y + log1p(exp(neg(abs(x))));
}

/// {dx, dy} = {dout * (sigmoid(x) - y), -dout * x}.
inline std::vector<Tensor> binary_cross_entropy_with_logits_bwd(const Tensor& dout, const Tensor& x, const Tensor& y) {
  NoGrad ng;
  return {dout * (sigmoid(x) - y), neg(dout * x)};
}

/// Binary cross entropy on logits, computed stably (see the top of this file); y may require grad.
inline Tensor binary_cross_entropy_with_logits(const Tensor& x, const Tensor& y, std::string_view reduction = "mean") {
  detail::check_same_shape(x, y, "binary_cross_entropy_with_logits");
  Tensor l = binary_cross_entropy_with_logits_fwd(x, y);
  l = record("binary_cross_entropy_with_logits_backward", l, {x, y},
             [xd = Saved(x), yd = Saved(y), xi = info(x), yi = info(y)](const Tensor& dout) {
    auto g = binary_cross_entropy_with_logits_bwd(dout, xd, yd);
    return std::vector{xi.requires_grad ? to(g[0], xi.dtype) : Tensor(), yi.requires_grad ? to(g[1], yi.dtype) : Tensor()};
  });
  return detail::reduce_loss(l, reduction, "binary_cross_entropy_with_logits");
}

// ---------------------------------------------------------------- fastai's loss objects

/// What the Learner takes as its loss: the loss itself and how to turn predictions into
/// probabilities (activation) and labels (decodes, applied to activation's output as fastai's
/// get_preds(with_decoded=True) does).
struct Loss {
  std::string name;
  std::function<Tensor(const Tensor& pred, const Tensor& y)> fn;
  std::function<Tensor(const Tensor& pred)> activation;  // to probabilities (softmax over dim 1, ...)
  std::function<Tensor(const Tensor& pred)> decodes;     // to labels (argmax over dim 1, ...)
  std::function<Tensor(const Tensor& pred, const Tensor& y)> per_item;  // unreduced, one loss per item (top losses)
  Tensor operator()(const Tensor& pred, const Tensor& y) const { return fn(pred, y); }
};

namespace detail {
/// pred [B, C, d...] -> [B*d..., C] (classes last), y -> [B*d...]; checks the element counts.
inline std::pair<Tensor, Tensor> flat_classes(const Tensor& pred, const Tensor& y, const char* op) {
  STRATA_CHECK(pred.dim() >= 2, op, "got predictions of shape ", pred.shape(), ", expected [B, C] or [B, C, d...]");
  const int64_t C = pred.size(1);
  STRATA_CHECK(y.numel() * C == pred.numel(), op, "got predictions of shape ", pred.shape(), " and targets of shape ",
               y.shape(), ", expected ", pred.numel() / std::max<int64_t>(C, 1), " targets (one per prediction row)");
  Tensor p = pred;
  if (p.dim() > 2) {
    std::vector<int64_t> perm{0};
    for (int64_t d = 2; d < p.dim(); ++d) perm.push_back(d);
    perm.push_back(1);
    p = permute(p, perm);
  }
  return {reshape(p, {-1, C}), reshape(y, {-1})};
}
/// pred and y flattened to 1-D, y converted to pred's dtype (fastai's floatify).
inline std::pair<Tensor, Tensor> flat_values(const Tensor& pred, const Tensor& y, const char* op) {
  STRATA_CHECK(pred.numel() == y.numel(), op, "got predictions of shape ", pred.shape(), " and targets of shape ",
               y.shape(), ", expected ", pred.numel(), " targets");
  return {reshape(pred, {-1}), reshape(y, {-1}).to(pred.dtype())};
}
}  // namespace detail

/// fastai's CrossEntropyLossFlat: classes on dim 1, everything else flattened; softmax / argmax.
inline Loss CrossEntropyLossFlat(double label_smoothing = 0) {
  auto run = [label_smoothing](const Tensor& pred, const Tensor& y, std::string_view reduction) {
    auto [p, t] = detail::flat_classes(pred, y, "CrossEntropyLossFlat");
    return cross_entropy(p, t, label_smoothing, reduction);
  };
  return {.name = label_smoothing > 0 ? "LabelSmoothingCrossEntropyFlat" : "CrossEntropyLossFlat",
          .fn = [run](const Tensor& p, const Tensor& y) { return run(p, y, "mean"); },
          .activation = [](const Tensor& p) { return softmax(p, 1); },
          .decodes = [](const Tensor& p) { return argmax(p, 1); },
          .per_item = [run](const Tensor& p, const Tensor& y) { return run(p, y, "none"); }};
}

/// fastai's LabelSmoothingCrossEntropyFlat: l = (1 - eps) * -logp[y] + eps * mean_c(-logp_c), classes on dim 1.
inline Loss LabelSmoothingCrossEntropyFlat(double eps = 0.1) {
  Loss l = CrossEntropyLossFlat(eps);
  l.name = "LabelSmoothingCrossEntropyFlat";
  return l;
}

/// fastai's MSELossFlat: both flattened, targets converted to the predictions' dtype.
inline Loss MSELossFlat() {
  auto run = [](const Tensor& pred, const Tensor& y, std::string_view reduction) {
    auto [p, t] = detail::flat_values(pred, y, "MSELossFlat");
    return mse_loss(p, t, reduction);
  };
  return {.name = "MSELossFlat",
          .fn = [run](const Tensor& p, const Tensor& y) { return run(p, y, "mean"); },
          .activation = [](const Tensor& p) { return p; },
          .decodes = [](const Tensor& p) { return p; },
          .per_item = [run](const Tensor& p, const Tensor& y) { return run(p, y, "none"); }};
}

/// fastai's L1LossFlat: both flattened, targets converted to the predictions' dtype.
inline Loss L1LossFlat() {
  auto run = [](const Tensor& pred, const Tensor& y, std::string_view reduction) {
    auto [p, t] = detail::flat_values(pred, y, "L1LossFlat");
    return l1_loss(p, t, reduction);
  };
  return {.name = "L1LossFlat",
          .fn = [run](const Tensor& p, const Tensor& y) { return run(p, y, "mean"); },
          .activation = [](const Tensor& p) { return p; },
          .decodes = [](const Tensor& p) { return p; },
          .per_item = [run](const Tensor& p, const Tensor& y) { return run(p, y, "none"); }};
}

/// fastai's BCEWithLogitsLossFlat (multi-label): sigmoid activation, decodes = probability > thresh.
inline Loss BCEWithLogitsLossFlat(double thresh = 0.5) {
  auto run = [](const Tensor& pred, const Tensor& y, std::string_view reduction) {
    auto [p, t] = detail::flat_values(pred, y, "BCEWithLogitsLossFlat");
    return binary_cross_entropy_with_logits(p, t, reduction);
  };
  return {.name = "BCEWithLogitsLossFlat",
          .fn = [run](const Tensor& p, const Tensor& y) { return run(p, y, "mean"); },
          .activation = [](const Tensor& p) { return sigmoid(p); },
          .decodes = [thresh](const Tensor& p) { return gt(p, thresh); },
          .per_item = [run](const Tensor& p, const Tensor& y) { return run(p, y, "none"); }};
}

}  // namespace strata::nn
