// Flatten: merges dims start_dim..end_dim into one (PyTorch's nn.Flatten, default start_dim = 1:
// [B, C, H, W] -> [B, C*H*W]).
#pragma once

#include <string>

#include "strata/nn/module.hpp"

namespace strata::nn {

class Flatten : public Module {
 public:
  int64_t start_dim, end_dim;
  explicit Flatten(int64_t start_dim_ = 1, int64_t end_dim_ = -1) : start_dim(start_dim_), end_dim(end_dim_) {}
  Tensor forward(const Tensor& x) override { return flatten(x, start_dim, end_dim); }
  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override {
    return "start_dim=" + std::to_string(start_dim) + ", end_dim=" + std::to_string(end_dim);
  }
};

}  // namespace strata::nn
