// Dropout: in training, zeroes each element with probability p and scales the rest by 1 / (1 - p);
// in eval, the identity (op and mask: tensor/dropout.hpp; seeded by strata's generator).
#pragma once

#include <string>

#include "strata/nn/detail/layer_config.hpp"
#include "strata/nn/module.hpp"
#include "strata/tensor/dropout.hpp"

namespace strata::nn {

class Dropout : public Module {
 public:
  double p;
  explicit Dropout(double p_ = 0.5) : p(p_) {
    STRATA_CHECK(p >= 0 && p <= 1, "Dropout", "got p=", p, ", expected a probability in [0, 1]");
  }
  Tensor forward(const Tensor& x) override { return dropout(x, p, training); }
  std::string type_name() const override { return "Dropout"; }
  std::string extra_repr() const override { return "p=" + detail::py_float(p) + ", inplace=False"; }
};

}  // namespace strata::nn
