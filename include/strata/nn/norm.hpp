// Normalization layers: BatchNorm1d, BatchNorm2d (sharing BatchNormBase) and LayerNorm, with
// PyTorch's parameter and buffer names (weight, bias, running_mean, running_var, num_batches_tracked).
//
// BatchNorm (math in tensor/norm.hpp): training normalizes with the batch statistics and, when
// tracking, updates running = (1 - momentum) running + momentum stat (unbiased variance) and counts
// num_batches_tracked; eval normalizes with the running statistics. momentum = nullopt gives
// PyTorch's momentum=None: a cumulative average, factor 1 / num_batches_tracked.
// Defaults: weight 1, bias 0, running_mean 0, running_var 1, eps 1e-5, momentum 0.1.
// LayerNorm: over the trailing normalized_shape dims, weight 1, bias 0 of that shape.
// The Learner finds batch norms with dynamic_cast<BatchNormBase*> (fastai's train_bn, bn_bias_state).
#pragma once

#include <optional>
#include <string>

#include "strata/nn/detail/layer_config.hpp"
#include "strata/nn/module.hpp"
#include "strata/tensor/norm.hpp"

namespace strata::nn {

struct BatchNormOptions {
  double eps = 1e-5;
  std::optional<double> momentum = 0.1;  // nullopt: cumulative moving average
  bool affine = true;                    // learnable weight and bias
  bool track_running_stats = true;       // keep running_mean / running_var (else batch stats in eval too)
};

/// What BatchNorm1d and BatchNorm2d share; they differ only in the input ranks they accept.
class BatchNormBase : public Module {
 public:
  Tensor weight, bias;                                      // [C], params (affine)
  Tensor running_mean, running_var, num_batches_tracked;   // [C], [C], int64 [] buffers (tracking)
  int64_t num_features;
  BatchNormOptions options;

  BatchNormBase(int64_t C, BatchNormOptions o) : num_features(C), options(o) {
    STRATA_CHECK(C >= 1, "BatchNorm", "got num_features=", C, ", expected >= 1");
    STRATA_CHECK(o.eps > 0, "BatchNorm", "got eps=", o.eps, ", expected > 0");
    if (o.affine) {
      weight = make_param(ones({C}));
      bias = make_param(zeros({C}));
    }
    if (o.track_running_stats) {
      running_mean = zeros({C});
      running_var = ones({C});
      num_batches_tracked = zeros({}, {.dtype = DType::i64});
    }
  }

  /// Running statistics back to mean 0, variance 1, no batches seen.
  void reset_running_stats() {
    if (!options.track_running_stats) return;
    NoGrad ng;
    running_mean.zero_();
    running_var.fill_(1.0);
    num_batches_tracked.zero_();
  }

  Tensor forward(const Tensor& x) override { return run(x, false); }
  /// relu(forward(x)) as one op (batch_norm_relu): what Sequential runs for a BatchNorm then a ReLU
  /// (nn/fusion.hpp). The same values, gradients, running statistics and num_batches_tracked.
  Tensor forward_relu(const Tensor& x) { return run(x, true); }
  void visit(Visitor& v) override {
    v.param("weight", weight);
    v.param("bias", bias);
    v.buffer("running_mean", running_mean);
    v.buffer("running_var", running_var);
    v.buffer("num_batches_tracked", num_batches_tracked);
  }
  std::string extra_repr() const override {
    return std::to_string(num_features) + ", eps=" + detail::py_float(options.eps) +
           ", momentum=" + (options.momentum ? detail::py_float(*options.momentum) : "None") +
           ", affine=" + detail::py_bool(options.affine) +
           ", track_running_stats=" + detail::py_bool(options.track_running_stats);
  }

 protected:
  virtual void check_input(const Tensor& x) const = 0;
  void check_channels(const Tensor& x) const {
    STRATA_CHECK(x.size(1) == num_features, type_name(), "got input of shape ", x.shape(), ", expected ", num_features,
                 " channels at dim 1");
  }

 private:
  Tensor run(const Tensor& x, bool relu) {
    check_input(x);
    const bool counting = training && options.track_running_stats;
    const double factor = !counting       ? 0.0
                          : options.momentum ? *options.momentum
                                             : 1.0 / double(num_batches_tracked.item<int64_t>() + 1);
    // without running stats (undefined then), eval normalizes with the batch's own statistics, as PyTorch does
    const bool batch_stats = training || !options.track_running_stats;
    Tensor y = relu ? batch_norm_relu(x, running_mean, running_var, weight, bias, batch_stats, factor, options.eps)
                    : batch_norm(x, running_mean, running_var, weight, bias, batch_stats, factor, options.eps);
    if (counting) {  // after the op: a refused batch is not counted
      NoGrad ng;
      num_batches_tracked.add_(1.0);
    }
    return y;
  }
};

/// Batch norm over [B, C] or [B, C, L] (statistics per channel C).
class BatchNorm1d : public BatchNormBase {
 public:
  explicit BatchNorm1d(int64_t C, BatchNormOptions o = {}) : BatchNormBase(C, o) {}
  std::string type_name() const override { return "BatchNorm1d"; }

 protected:
  void check_input(const Tensor& x) const override {
    STRATA_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1d", "got input of shape ", x.shape(),
                 ", expected [B, C] or [B, C, L]");
    check_channels(x);
  }
};

/// Batch norm over [B, C, H, W] (statistics per channel C).
class BatchNorm2d : public BatchNormBase {
 public:
  explicit BatchNorm2d(int64_t C, BatchNormOptions o = {}) : BatchNormBase(C, o) {}
  std::string type_name() const override { return "BatchNorm2d"; }

 protected:
  void check_input(const Tensor& x) const override {
    STRATA_CHECK(x.dim() == 4, "BatchNorm2d", "got input of shape ", x.shape(), ", expected [B, C, H, W]");
    check_channels(x);
  }
};

/// Layer norm over the trailing `normalized_shape` dims of each input.
class LayerNorm : public Module {
 public:
  Tensor weight, bias;  // normalized_shape (elementwise_affine)
  Shape normalized_shape;
  double eps;

  explicit LayerNorm(Shape shape, double eps_ = 1e-5, bool elementwise_affine = true)
      : normalized_shape(std::move(shape)), eps(eps_) {
    STRATA_CHECK(normalized_shape.dim() >= 1, "LayerNorm", "got normalized_shape ", normalized_shape,
                 ", expected at least one dim");
    if (elementwise_affine) {
      weight = make_param(ones(normalized_shape));
      bias = make_param(zeros(normalized_shape));
    }
  }
  explicit LayerNorm(int64_t n, double eps_ = 1e-5, bool elementwise_affine = true)
      : LayerNorm(Shape{n}, eps_, elementwise_affine) {}

  Tensor forward(const Tensor& x) override { return layer_norm(x, normalized_shape, weight, bias, eps); }
  void visit(Visitor& v) override {
    v.param("weight", weight);
    v.param("bias", bias);
  }
  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override {
    return detail::py_tuple(normalized_shape) + ", eps=" + detail::py_float(eps) +
           ", elementwise_affine=" + detail::py_bool(weight.defined());
  }
};

}  // namespace strata::nn
