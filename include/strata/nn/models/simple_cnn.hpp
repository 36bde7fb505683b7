// fastai's simple_cnn (fastai.layers.SimpleCNN): one stride-2 ConvLayer per pair of filter sizes,
// then adaptive average pooling to 1x1 and Flatten.
//
//   simple_cnn({1, 16, 32, 10}): ConvLayer(1->16, s2), ConvLayer(16->32, s2), ConvLayer(32->10, s2),
//   Sequential(AdaptiveAvgPool2d(1), Flatten())   [B, 1, H, W] -> [B, 10]
// As in fastai, every ConvLayer has conv + batch norm + ReLU except that the last has no batch norm
// (so its conv has a bias); it keeps its ReLU unless last_act = false. Keys: "0.0.weight",
// "0.1.running_mean", ..., "2.0.bias".
#pragma once

#include <memory>
#include <vector>

#include "strata/nn/conv.hpp"
#include "strata/nn/flatten.hpp"
#include "strata/nn/pooling.hpp"

namespace strata::nn {

/// filters: channel counts (input first); kernel_szs, strides: one per layer (empty: 3 and 2).
inline std::shared_ptr<Sequential> simple_cnn(const std::vector<int64_t>& filters, std::vector<int64_t> kernel_szs = {},
                                              std::vector<int64_t> strides = {}, bool bn = true, bool last_act = true) {
  STRATA_CHECK(filters.size() >= 2, "simple_cnn", "got ", filters.size(), " filter sizes, expected at least 2");
  const size_t nl = filters.size() - 1;
  if (kernel_szs.empty()) kernel_szs.assign(nl, 3);
  if (strides.empty()) strides.assign(nl, 2);
  STRATA_CHECK(kernel_szs.size() == nl && strides.size() == nl, "simple_cnn", "got ", kernel_szs.size(),
               " kernel sizes and ", strides.size(), " strides for ", nl, " layers, expected one each per layer");
  auto net = std::make_shared<Sequential>();
  for (size_t i = 0; i < nl; ++i)
    net->add(ConvLayer({.in = filters[i], .out = filters[i + 1], .ks = kernel_szs[i], .stride = strides[i],
                        .norm = bn && i + 1 < nl ? NormType::Batch : NormType::None,
                        .act_cls = i + 1 < nl || last_act ? act<ReLU>() : ActivationFactory()}));
  net->add(Sequential(AdaptiveAvgPool2d(1), Flatten()));
  return net;
}

}  // namespace strata::nn
