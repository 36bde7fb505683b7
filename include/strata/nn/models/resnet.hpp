// torchvision's ResNet-18 and ResNet-34 (He et al. 2015, arXiv:1512.03385), with torchvision's exact
// state_dict keys, so converted torchvision weights load by name:
//   conv1 (7x7 s2) bn1 relu maxpool(3, s2, p1) | layer1..layer4 of BasicBlocks (64, 128, 256, 512
//   channels; the first block of layers 2-4 has stride 2 and a downsample = Sequential(1x1 conv s2, BN))
//   | avgpool (adaptive, 1x1) | flatten | fc
//   BasicBlock: relu(bn2(conv2(relu(bn1(conv1(x))))) + downsample(x))
// Init as torchvision: convs kaiming_normal_(mode = fan_out, relu), batch norms weight 1 bias 0, fc
// PyTorch's Linear default. Keys: conv1.weight, bn1.*, layer1.0.conv1.weight, layer2.0.downsample.0.weight,
// layer2.0.downsample.1.running_mean, ..., fc.weight, fc.bias.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "strata/nn/layers.hpp"

namespace strata::nn {

/// torchvision's BasicBlock: two 3x3 convs with batch norm, plus the (maybe downsampled) input.
class BasicBlock : public Module {
 public:
  std::shared_ptr<Conv2d> conv1, conv2;
  std::shared_ptr<BatchNorm2d> bn1, bn2;
  std::shared_ptr<ReLU> relu = std::make_shared<ReLU>();
  std::shared_ptr<Sequential> downsample;  // null when the shapes already match

  BasicBlock(int64_t in, int64_t out, int64_t stride)
      : conv1(std::make_shared<Conv2d>(Conv2dOptions{.in = in, .out = out, .k = 3, .stride = stride, .pad = 1, .bias = false})),
        conv2(std::make_shared<Conv2d>(Conv2dOptions{.in = out, .out = out, .k = 3, .stride = 1, .pad = 1, .bias = false})),
        bn1(std::make_shared<BatchNorm2d>(out)), bn2(std::make_shared<BatchNorm2d>(out)) {
    if (stride != 1 || in != out)
      downsample = std::make_shared<Sequential>(
          Conv2d({.in = in, .out = out, .k = 1, .stride = stride, .bias = false}), BatchNorm2d(out));
  }
  Tensor forward(const Tensor& x) override {
    const Tensor out = (*bn2)((*conv2)((*relu)((*bn1)((*conv1)(x)))));
    return (*relu)(out + (downsample ? (*downsample)(x) : x));
  }
  void visit(Visitor& v) override {
    v.child("conv1", conv1);
    v.child("bn1", bn1);
    v.child("relu", relu);
    v.child("conv2", conv2);
    v.child("bn2", bn2);
    v.child("downsample", downsample);
  }
  std::string type_name() const override { return "BasicBlock"; }
};

/// torchvision's ResNet with BasicBlocks; `layers` blocks per stage.
class ResNet : public Module {
 public:
  std::shared_ptr<Conv2d> conv1;
  std::shared_ptr<BatchNorm2d> bn1 = std::make_shared<BatchNorm2d>(64);
  std::shared_ptr<ReLU> relu = std::make_shared<ReLU>();
  std::shared_ptr<MaxPool2d> maxpool = std::make_shared<MaxPool2d>(MaxPool2dOptions{.k = 3, .stride = 2, .pad = 1});
  std::array<std::shared_ptr<Sequential>, 4> stages;  // layer1..layer4
  std::shared_ptr<AdaptiveAvgPool2d> avgpool = std::make_shared<AdaptiveAvgPool2d>(Size2(1, 1));
  std::shared_ptr<Linear> fc;

  ResNet(std::array<int, 4> layers, int64_t n_out = 1000, int64_t in_channels = 3)
      : conv1(std::make_shared<Conv2d>(
            Conv2dOptions{.in = in_channels, .out = 64, .k = 7, .stride = 2, .pad = 3, .bias = false})),
        fc(std::make_shared<Linear>(512, n_out)) {
    int64_t in = 64;
    for (int s = 0; s < 4; ++s) {
      const int64_t out = int64_t(64) << s;
      stages[size_t(s)] = std::make_shared<Sequential>();
      for (int b = 0; b < layers[size_t(s)]; ++b) {
        stages[size_t(s)]->add(BasicBlock(in, out, b == 0 && s > 0 ? 2 : 1));
        in = out;
      }
    }
    // torchvision's init: He normal on fan_out for every conv (batch norms start at weight 1, bias 0)
    apply([](Module& m) {
      if (auto* c = dynamic_cast<Conv2d*>(&m)) init::kaiming_normal_(c->weight, 0.0, "fan_out", "relu");
    });
  }
  Tensor forward(const Tensor& x) override {
    Tensor h = (*maxpool)((*relu)((*bn1)((*conv1)(x))));
    for (auto& s : stages) h = (*s)(h);
    return (*fc)(flatten((*avgpool)(h), 1));
  }
  void visit(Visitor& v) override {
    v.child("conv1", conv1);
    v.child("bn1", bn1);
    v.child("relu", relu);
    v.child("maxpool", maxpool);
    for (size_t s = 0; s < 4; ++s) v.child("layer" + std::to_string(s + 1), stages[s]);
    v.child("avgpool", avgpool);
    v.child("fc", fc);
  }
  std::string type_name() const override { return "ResNet"; }
};

/// torchvision.models.resnet18(num_classes = n_out), for in_channels-channel images.
inline std::shared_ptr<ResNet> resnet18(int64_t n_out = 1000, int64_t in_channels = 3) {
  return std::make_shared<ResNet>(std::array{2, 2, 2, 2}, n_out, in_channels);
}
/// torchvision.models.resnet34(num_classes = n_out), for in_channels-channel images.
inline std::shared_ptr<ResNet> resnet34(int64_t n_out = 1000, int64_t in_channels = 3) {
  return std::make_shared<ResNet>(std::array{3, 4, 6, 3}, n_out, in_channels);
}

}  // namespace strata::nn
