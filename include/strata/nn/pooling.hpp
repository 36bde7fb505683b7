// Pooling layers over [B, C, H, W] (ops and math: tensor/pool.hpp):
//   MaxPool2d, AvgPool2d (sliding windows; stride 0 = the kernel size, as PyTorch's stride=None),
//   AdaptiveAvgPool2d, AdaptiveMaxPool2d (fixed output size), and fastai's AdaptiveConcatPool2d:
//   cat([adaptive max, adaptive avg], dim 1), so C channels become 2C (max first, as fastai).
#pragma once

#include <memory>
#include <string>

#include "strata/nn/detail/layer_config.hpp"
#include "strata/nn/module.hpp"
#include "strata/tensor/pool.hpp"

namespace strata::nn {

struct MaxPool2dOptions {
  Size2 k;             // kernel size
  Size2 stride = 0;    // 0: the kernel size
  Size2 pad = 0;
  Size2 dilation = 1;
  bool ceil_mode = false;
};

class MaxPool2d : public Module {
 public:
  MaxPool2dOptions options;
  explicit MaxPool2d(MaxPool2dOptions o) : options(o) {
    if (options.stride.equals(0)) options.stride = options.k;
  }
  explicit MaxPool2d(Size2 k, Size2 stride = 0, Size2 pad = 0) : MaxPool2d(MaxPool2dOptions{k, stride, pad}) {}

  Tensor forward(const Tensor& x) override {
    return max_pool2d(x, options.k, options.stride, options.pad, options.dilation, options.ceil_mode);
  }
  std::string type_name() const override { return "MaxPool2d"; }
  std::string extra_repr() const override {
    return "kernel_size=" + detail::py_size(options.k) + ", stride=" + detail::py_size(options.stride) +
           ", padding=" + detail::py_size(options.pad) + ", dilation=" + detail::py_size(options.dilation) +
           ", ceil_mode=" + detail::py_bool(options.ceil_mode);
  }
};

struct AvgPool2dOptions {
  Size2 k;             // kernel size
  Size2 stride = 0;    // 0: the kernel size
  Size2 pad = 0;
  bool ceil_mode = false;
  bool count_include_pad = true;
};

class AvgPool2d : public Module {
 public:
  AvgPool2dOptions options;
  explicit AvgPool2d(AvgPool2dOptions o) : options(o) {
    if (options.stride.equals(0)) options.stride = options.k;
  }
  explicit AvgPool2d(Size2 k, Size2 stride = 0, Size2 pad = 0) : AvgPool2d(AvgPool2dOptions{k, stride, pad}) {}

  Tensor forward(const Tensor& x) override {
    return avg_pool2d(x, options.k, options.stride, options.pad, options.ceil_mode, options.count_include_pad);
  }
  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override {
    return "kernel_size=" + detail::py_size(options.k) + ", stride=" + detail::py_size(options.stride) +
           ", padding=" + detail::py_size(options.pad);
  }
};

class AdaptiveAvgPool2d : public Module {
 public:
  Size2 output_size;
  explicit AdaptiveAvgPool2d(Size2 out = 1) : output_size(out) {}
  Tensor forward(const Tensor& x) override { return adaptive_avg_pool2d(x, output_size); }
  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override { return "output_size=" + detail::py_size(output_size); }
};

class AdaptiveMaxPool2d : public Module {
 public:
  Size2 output_size;
  explicit AdaptiveMaxPool2d(Size2 out = 1) : output_size(out) {}
  Tensor forward(const Tensor& x) override { return adaptive_max_pool2d(x, output_size); }
  std::string type_name() const override { return "AdaptiveMaxPool2d"; }
  std::string extra_repr() const override { return "output_size=" + detail::py_size(output_size); }
};

/// fastai's AdaptiveConcatPool2d: [B, C, H, W] -> [B, 2C, size, size], max pool channels first.
class AdaptiveConcatPool2d : public Module {
 public:
  std::shared_ptr<AdaptiveAvgPool2d> ap;
  std::shared_ptr<AdaptiveMaxPool2d> mp;
  explicit AdaptiveConcatPool2d(Size2 size = 1)
      : ap(std::make_shared<AdaptiveAvgPool2d>(size)), mp(std::make_shared<AdaptiveMaxPool2d>(size)) {}
  Tensor forward(const Tensor& x) override { return cat({(*mp)(x), (*ap)(x)}, 1); }
  void visit(Visitor& v) override {
    v.child("ap", ap);
    v.child("mp", mp);
  }
  std::string type_name() const override { return "AdaptiveConcatPool2d"; }
};

}  // namespace strata::nn
