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
//
// Synchronized batch norm (PyTorch's SyncBatchNorm): a layer whose `sync` is set (by
// dist::convert_sync_batchnorm, or learn.to_distributed({.sync_bn = true}); nn knows nothing of dist:
// BatchNormSync is the interface dist implements) normalizes, in training, with the statistics of the
// GLOBAL batch, every process's samples: over the N values of each channel on all processes,
//   n = sum of the processes' counts, mean = all_reduce_sum(sum x) / n,
//   var = all_reduce_sum(sum (x - mean)^2) / n (two passes: as exact as one process's kernel),
//   y = (x - mean) (rsqrt(var + eps) w) + b (then max(y, 0) for forward_relu),
// and updates the running statistics with mean and var n / (n - 1). It is a composite of
// differentiable ops (statistics in float32, float64 for float64 x; the all-reduced sums and the count
// in float64), so autograd gives the exact backward for the global batch: the all-reduces' backward
// sums the gradients over the processes (PyTorch's all-reduce of sum(dy) and sum(dy xhat)). Eval
// (running statistics) never syncs.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

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

/// How a synchronized BatchNorm reaches the other processes (dist/sync_batch_norm.hpp implements it).
struct BatchNormSync {
  virtual ~BatchNormSync() = default;
  /// The sum over all processes of t (each passes its own t, same shape and dtype), differentiable:
  /// t's gradient is the sum over the processes of the result's gradients. Every process calls it in
  /// the same order (a collective).
  virtual Tensor all_reduce_sum(const Tensor& t) = 0;
};

/// What BatchNorm1d and BatchNorm2d share; they differ only in the input ranks they accept.
class BatchNormBase : public Module {
 public:
  Tensor weight, bias;                                      // [C], params (affine)
  Tensor running_mean, running_var, num_batches_tracked;   // [C], [C], int64 [] buffers (tracking)
  int64_t num_features;
  BatchNormOptions options;
  std::shared_ptr<BatchNormSync> sync;  // set: training normalizes with the global batch (see the top)

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
    if (sync && training) return run_synced(x, relu, counting, factor);
    Tensor y = relu ? batch_norm_relu(x, running_mean, running_var, weight, bias, batch_stats, factor, options.eps)
                    : batch_norm(x, running_mean, running_var, weight, bias, batch_stats, factor, options.eps);
    if (counting) {  // after the op: a refused batch is not counted
      NoGrad ng;
      num_batches_tracked.add_(1.0);
    }
    return y;
  }

  /// Training with global-batch statistics through `sync` (see the top of this file).
  Tensor run_synced(const Tensor& x, bool relu, bool counting, double factor) {
    const char* op = relu ? "batch_norm_relu" : "batch_norm";
    strata::detail::check_floating(x, op);
    const int64_t C = x.size(1), n_local = C ? x.numel() / C : 0;
    std::vector<int64_t> dims{0};  // every dim but the channels'
    Shape bshape(size_t(x.dim()), 1);  // [1, C, 1, ...]: a [C] statistic broadcast against x
    bshape[1] = C;
    for (int d = 2; d < x.dim(); ++d) dims.push_back(d);
    const DType st = x.dtype() == DType::f64 ? DType::f64 : DType::f32;
    const Tensor xs = strata::to(x, st);
    // one all-reduce for the sums and the count, in float64 (the count exact at any size; [C + 1] values)
    const TensorOptions f64{.dtype = DType::f64, .device = x.device()};
    const Tensor s1 =
        sync->all_reduce_sum(cat({strata::to(sum(xs, dims), DType::f64), full({1}, double(n_local), f64)}));
    const double n = s1.narrow(0, C, 1).detach().to(kCPU).item<double>();
    STRATA_CHECK(n > 1, op, "got x of shape ", x.shape(), " in training mode (", n,
                 " values per channel over all processes), expected more than 1 value per channel");
    const Tensor mean = strata::to(div(s1.narrow(0, 0, C), n), st);
    const Tensor xc = sub(xs, view(mean, bshape));
    const Tensor var = strata::to(div(sync->all_reduce_sum(strata::to(sum(mul(xc, xc), dims), DType::f64)), n), st);
    // y = (x - mean) scale + bias with scale = rsqrt(var + eps) w per channel: one pass less than two products
    Tensor scale = rsqrt(add(var, options.eps));
    if (weight.defined()) scale = mul(scale, strata::to(weight, st));
    Tensor y = mul(xc, view(scale, bshape));
    if (bias.defined()) y = add(y, view(strata::to(bias, st), bshape));
    if (relu) y = strata::relu(y);
    y = strata::to(y, x.dtype());
    if (counting) {  // as batch_norm's update: in float64, with the unbiased variance
      NoGrad ng;
      const Tensor m64 = strata::to(detach(mean), DType::f64);
      const Tensor v64 = mul(strata::to(detach(var), DType::f64), n / (n - 1));
      running_mean.copy_(add(mul(strata::to(detach(running_mean), DType::f64), 1.0 - factor), mul(m64, factor)));
      running_var.copy_(add(mul(strata::to(detach(running_var), DType::f64), 1.0 - factor), mul(v64, factor)));
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
