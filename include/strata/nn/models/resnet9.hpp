// ResNet-9 from David Page's DAWNBench CIFAR-10 entry ("How to train your ResNet", myrtle.ai 2018):
//   prep   conv_bn(in_channels, 64)
//   layer1 conv_bn(64, 128), MaxPool2d(2), Residual(conv_bn(128, 128), conv_bn(128, 128))
//   layer2 conv_bn(128, 256), MaxPool2d(2)
//   layer3 conv_bn(256, 512), MaxPool2d(2), Residual(conv_bn(512, 512), conv_bn(512, 512))
//   pool   AdaptiveMaxPool2d(1)  (Page's MaxPool2d(4) on 32x32 inputs; adaptive so other sizes work)
//   flatten, linear Linear(512, n_out, bias = false), then out * 0.125 (Page's Mul(0.125))
// conv_bn = Sequential(Conv2d(3x3, pad 1, no bias), BatchNorm2d, ReLU); Residual(x) = x + res2(res1(x)).
// Keys: "prep.0.weight", "layer1.0.1.running_mean", "layer1.2.res1.0.weight", ..., "linear.weight".
#pragma once

#include <memory>
#include <string>

#include "strata/nn/layers.hpp"

namespace strata::nn {

namespace detail {
inline std::shared_ptr<Sequential> conv_bn(int64_t in, int64_t out) {
  return std::make_shared<Sequential>(Conv2d({.in = in, .out = out, .k = 3, .pad = 1, .bias = false}),
                                      BatchNorm2d(out), ReLU());
}
}  // namespace detail

/// x + res2(res1(x)).
class Residual : public Module {
 public:
  ModulePtr res1, res2;
  Residual(ModulePtr r1, ModulePtr r2) : res1(std::move(r1)), res2(std::move(r2)) {}
  Tensor forward(const Tensor& x) override { return x + (*res2)((*res1)(x)); }
  void visit(Visitor& v) override {
    v.child("res1", res1);
    v.child("res2", res2);
  }
  std::string type_name() const override { return "Residual"; }
};

class ResNet9 : public Module {
 public:
  std::shared_ptr<Sequential> prep, layer1, layer2, layer3;
  std::shared_ptr<AdaptiveMaxPool2d> pool = std::make_shared<AdaptiveMaxPool2d>(1);
  std::shared_ptr<Flatten> flatten_ = std::make_shared<Flatten>();
  std::shared_ptr<Linear> linear;
  double scale = 0.125;

  explicit ResNet9(int64_t in_channels = 3, int64_t n_out = 10)
      : prep(detail::conv_bn(in_channels, 64)),
        layer1(std::make_shared<Sequential>(detail::conv_bn(64, 128), MaxPool2d(2),
                                            Residual(detail::conv_bn(128, 128), detail::conv_bn(128, 128)))),
        layer2(std::make_shared<Sequential>(detail::conv_bn(128, 256), MaxPool2d(2))),
        layer3(std::make_shared<Sequential>(detail::conv_bn(256, 512), MaxPool2d(2),
                                            Residual(detail::conv_bn(512, 512), detail::conv_bn(512, 512)))),
        linear(std::make_shared<Linear>(512, n_out, false)) {}

  Tensor forward(const Tensor& x) override {
    return (*linear)((*flatten_)((*pool)((*layer3)((*layer2)((*layer1)((*prep)(x))))))) * scale;
  }
  void visit(Visitor& v) override {
    v.child("prep", prep);
    v.child("layer1", layer1);
    v.child("layer2", layer2);
    v.child("layer3", layer3);
    v.child("pool", pool);
    v.child("flatten", flatten_);
    v.child("linear", linear);
  }
  std::string type_name() const override { return "ResNet9"; }
  std::string extra_repr() const override { return "scale=" + detail::py_float(scale); }
};

/// Page's ResNet-9 for in_channels-channel images and n_out classes.
inline std::shared_ptr<ResNet9> resnet9(int64_t in_channels = 3, int64_t n_out = 10) {
  return std::make_shared<ResNet9>(in_channels, n_out);
}

}  // namespace strata::nn
