// fastai's XResNet ("bag of tricks" ResNet, He et al. 2018, arXiv:1812.01187) with fastai's
// state_dict keys (fastai/vision/models/xresnet.py, fastai/layers.py ResBlock):
//   0..2  stem: ConvLayer(c_in, 32, s2), ConvLayer(32, 32), ConvLayer(32, 64)   ("0.0.weight", "0.1.*")
//   3     MaxPool2d(3, s2, p1)
//   4..7  stages of ResBlocks (64, 128, 256, 512 channels x expansion; stride 2 from stage 2 on)
//   8 AdaptiveAvgPool2d(1), 9 Flatten, 10 Dropout(p), 11 Linear(512 x expansion, n_out)
// ResBlock: act(convpath(x) + idpath(x)); convpath = ConvLayer(ni, nf, 3, stride) + ConvLayer(nf, nf,
//   BatchZero, no act) (expansion 1) or 1x1, 3x3, 1x1 (expansion 4); idpath = [AvgPool2d(2, ceil_mode)
//   when strided] + [ConvLayer(ni, nf, 1, no act) when the channels change]  ("4.0.convpath.0.0.weight",
//   "5.0.idpath.1.0.weight").
// Init (fastai's init_cnn): every conv and linear weight kaiming_normal_, every bias 0 (batch norm
// biases too); batch norm weights 1, or 0 at the end of each convpath (BatchZero).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "strata/nn/layers.hpp"

namespace strata::nn {

/// fastai's ResBlock (plain: no SE, self-attention or groups).
class ResBlock : public Module {
 public:
  std::shared_ptr<Sequential> convpath, idpath;
  ModulePtr act;

  ResBlock(int64_t expansion, int64_t ni, int64_t nf, int64_t stride = 1, ActivationFactory act_cls = nn::act<ReLU>())
      : convpath(std::make_shared<Sequential>()), idpath(std::make_shared<Sequential>()),
        act(act_cls ? act_cls() : std::make_shared<Identity>()) {
    const int64_t nh = nf;
    nf *= expansion;
    ni *= expansion;
    if (expansion == 1) {
      convpath->add(ConvLayer({.in = ni, .out = nh, .ks = 3, .stride = stride, .act_cls = act_cls}));
      convpath->add(ConvLayer({.in = nh, .out = nf, .ks = 3, .norm = NormType::BatchZero, .act_cls = {}}));
    } else {
      convpath->add(ConvLayer({.in = ni, .out = nh, .ks = 1, .act_cls = act_cls}));
      convpath->add(ConvLayer({.in = nh, .out = nh, .ks = 3, .stride = stride, .act_cls = act_cls}));
      convpath->add(ConvLayer({.in = nh, .out = nf, .ks = 1, .norm = NormType::BatchZero, .act_cls = {}}));
    }
    if (stride != 1) idpath->add(AvgPool2d({.k = stride, .ceil_mode = true}));
    if (ni != nf) idpath->add(ConvLayer({.in = ni, .out = nf, .ks = 1, .act_cls = {}}));
  }
  Tensor forward(const Tensor& x) override { return (*act)((*convpath)(x) + (*idpath)(x)); }
  void visit(Visitor& v) override {
    v.child("convpath", convpath);
    v.child("idpath", idpath);
    v.child("act", act);
  }
  std::string type_name() const override { return "ResBlock"; }
};

/// fastai's init_cnn: kaiming_normal_ conv and linear weights, zero every bias.
inline void init_cnn(Module& m) {
  m.apply([](Module& l) {
    if (auto* c = dynamic_cast<Conv2d*>(&l)) init::kaiming_normal_(c->weight);
    if (auto* f = dynamic_cast<Linear*>(&l)) init::kaiming_normal_(f->weight);
    Visitor v;
    v.on_param = [](const std::string& name, Tensor& t) {
      if (name == "bias") init::zeros_(t);
    };
    l.visit(v);
  });
}

/// fastai's XResNet: stem, stages of ResBlocks, head (see the top of this file).
class XResNet : public Sequential {
 public:
  XResNet(int64_t expansion, const std::vector<int>& layers, int64_t c_in = 3, int64_t n_out = 1000, double p = 0.0,
          ActivationFactory act_cls = act<ReLU>()) {
    const std::vector<int64_t> stem{c_in, 32, 32, 64};
    for (size_t i = 0; i < 3; ++i)
      add(ConvLayer({.in = stem[i], .out = stem[i + 1], .ks = 3, .stride = i == 0 ? 2 : 1, .act_cls = act_cls}));
    add(MaxPool2d({.k = 3, .stride = 2, .pad = 1}));
    std::vector<int64_t> szs{64 / expansion, 64, 128, 256, 512};
    for (size_t i = 4; i < layers.size(); ++i) szs.push_back(256);
    for (size_t i = 0; i < layers.size(); ++i) {
      auto stage = std::make_shared<Sequential>();
      for (int b = 0; b < layers[i]; ++b)
        stage->add(ResBlock(expansion, b == 0 ? szs[i] : szs[i + 1], szs[i + 1], b == 0 && i > 0 ? 2 : 1, act_cls));
      add(stage);
    }
    add(AdaptiveAvgPool2d(1));
    add(Flatten());
    add(Dropout(p));
    add(Linear(szs.back() * expansion, n_out));
    init_cnn(*this);
  }
  std::string type_name() const override { return "XResNet"; }
};

inline std::shared_ptr<XResNet> xresnet18(int64_t n_out = 1000, int64_t c_in = 3, double p = 0.0) {
  return std::make_shared<XResNet>(1, std::vector{2, 2, 2, 2}, c_in, n_out, p);
}
inline std::shared_ptr<XResNet> xresnet34(int64_t n_out = 1000, int64_t c_in = 3, double p = 0.0) {
  return std::make_shared<XResNet>(1, std::vector{3, 4, 6, 3}, c_in, n_out, p);
}
inline std::shared_ptr<XResNet> xresnet50(int64_t n_out = 1000, int64_t c_in = 3, double p = 0.0) {
  return std::make_shared<XResNet>(4, std::vector{3, 4, 6, 3}, c_in, n_out, p);
}

}  // namespace strata::nn
