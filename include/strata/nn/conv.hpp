// Conv2d, and fastai's ConvLayer (conv, then batch norm and activation) that its models are built of.
//
// Conv2d: out = conv2d(x, weight, bias, stride, padding, dilation, groups) (math: tensor/conv.hpp);
//   weight [out, in/groups, kH, kW], bias [out]. Init as PyTorch's: weight kaiming_uniform_(a = sqrt(5)),
//   i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in/groups * kH * kW, bias the same bound.
// ConvLayer (fastai.layers.ConvLayer): Sequential(conv, norm, act) (bn_1st) or (conv, act, norm);
//   padding (ks - 1) / 2, bias only without batch norm; the conv weight re-initialized for the
//   activation (kaiming_uniform_ for ReLU/LeakyReLU/SiLU, xavier_uniform_ for Sigmoid/Tanh, else
//   PyTorch's default), a bias N(0, 0.01); batch norm weight 1 (0 for NormType::BatchZero), bias 1e-3.
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <string>

#include "strata/nn/activation.hpp"
#include "strata/nn/detail/layer_config.hpp"
#include "strata/nn/init.hpp"
#include "strata/nn/module.hpp"
#include "strata/nn/norm.hpp"
#include "strata/tensor/conv.hpp"

namespace strata::nn {

struct Conv2dOptions {
  int64_t in = 0, out = 0;  // channels
  Size2 k = 0;              // kernel size
  Size2 stride = 1, pad = 0, dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public Module {
 public:
  Tensor weight, bias;  // [out, in/groups, kH, kW], [out] (undefined without bias)
  Conv2dOptions options;

  explicit Conv2d(Conv2dOptions o) : options(o) {
    STRATA_CHECK(o.in >= 1 && o.out >= 1, "Conv2d", "got in=", o.in, " out=", o.out, ", expected channels >= 1");
    STRATA_CHECK(o.k.h >= 1 && o.k.w >= 1, "Conv2d", "got kernel size ", detail::py_pair(o.k),
                 ", expected sizes >= 1 (set .k)");
    STRATA_CHECK(o.groups >= 1 && o.in % o.groups == 0 && o.out % o.groups == 0, "Conv2d", "got in=", o.in,
                 " out=", o.out, " groups=", o.groups, ", expected in and out divisible by groups");
    weight = make_param(empty({o.out, o.in / o.groups, o.k.h, o.k.w}));
    if (o.bias) bias = make_param(empty({o.out}));
    reset_parameters();
  }

  /// PyTorch's default init (see the top of this file).
  void reset_parameters() {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double bound = 1.0 / std::sqrt(double(init::calculate_fan_in_and_fan_out(weight).first));
      init::uniform_(bias, -bound, bound);
    }
  }

  Tensor forward(const Tensor& x) override {
    return conv2d(x, weight, bias, options.stride, options.pad, options.dilation, options.groups);
  }
  void visit(Visitor& v) override {
    v.param("weight", weight);
    v.param("bias", bias);
  }
  std::string type_name() const override { return "Conv2d"; }
  std::string extra_repr() const override {
    const Conv2dOptions& o = options;
    std::string s = std::to_string(o.in) + ", " + std::to_string(o.out) + ", kernel_size=" + detail::py_pair(o.k) +
                    ", stride=" + detail::py_pair(o.stride);
    if (!o.pad.equals(0)) s += ", padding=" + detail::py_pair(o.pad);
    if (!o.dilation.equals(1)) s += ", dilation=" + detail::py_pair(o.dilation);
    if (o.groups != 1) s += ", groups=" + std::to_string(o.groups);
    if (!o.bias) s += ", bias=False";
    return s;
  }
};

/// fastai's NormType (the ones strata has): batch norm, batch norm starting at weight 0, or none.
enum class NormType { Batch, BatchZero, None };

/// Makes an activation module (fastai's act_cls); an empty function means no activation.
using ActivationFactory = std::function<ModulePtr()>;
template <class A>
ActivationFactory act() {
  return [] { return std::make_shared<A>(); };
}

struct ConvLayerOptions {
  int64_t in = 0, out = 0;        // channels
  int64_t ks = 3, stride = 1;
  int64_t pad = -1;               // -1: (ks - 1) / 2
  int64_t groups = 1;
  int bias = -1;                  // -1: bias only without batch norm; 0 or 1 to force
  NormType norm = NormType::Batch;
  ActivationFactory act_cls = act<ReLU>();  // {} for none
  bool bn_1st = true;             // conv, norm, act (else conv, act, norm)
};

/// fastai's ConvLayer: a Sequential named "0" (Conv2d), then the norm and activation in order.
class ConvLayer : public Sequential {
 public:
  explicit ConvLayer(ConvLayerOptions o) {
    const bool bn = o.norm != NormType::None;
    auto conv = std::make_shared<Conv2d>(Conv2dOptions{.in = o.in, .out = o.out, .k = o.ks, .stride = o.stride,
                                                       .pad = o.pad >= 0 ? o.pad : (o.ks - 1) / 2,
                                                       .groups = o.groups, .bias = o.bias >= 0 ? o.bias == 1 : !bn});
    ModulePtr a = o.act_cls ? o.act_cls() : nullptr;
    // fastai's init_linear: weight by the activation's default init, bias N(0, 0.01)
    if (dynamic_cast<ReLU*>(a.get()) || dynamic_cast<LeakyReLU*>(a.get()) || dynamic_cast<SiLU*>(a.get()))
      init::kaiming_uniform_(conv->weight);
    else if (dynamic_cast<Sigmoid*>(a.get()) || dynamic_cast<Tanh*>(a.get()))
      init::xavier_uniform_(conv->weight);
    if (conv->bias.defined()) init::normal_(conv->bias, 0.0, 0.01);
    add(conv);
    ModulePtr norm;
    if (bn) {
      auto b = std::make_shared<BatchNorm2d>(o.out);
      init::constant_(b->weight, o.norm == NormType::BatchZero ? 0.0 : 1.0);
      init::constant_(b->bias, 1e-3);
      norm = b;
    }
    if (o.bn_1st) {
      if (norm) add(norm);
      if (a) add(a);
    } else {
      if (a) add(a);
      if (norm) add(norm);
    }
  }
  std::string type_name() const override { return "ConvLayer"; }
};

}  // namespace strata::nn

// Sequential fuses Conv2d, BatchNorm2d and ReLU (nn/fusion.hpp), which needs all three defined: here, after them.
#include "strata/nn/fusion.hpp"
