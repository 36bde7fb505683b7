// Linear: y = x w^T + b, x [*, in] -> y [*, out]; weight [out, in], bias [out] (PyTorch's names).
//
// Init as PyTorch's nn.Linear: weight kaiming_uniform_(a = sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in)),
// bias U(-1/sqrt(in), 1/sqrt(in)).
#pragma once

#include <cmath>
#include <string>

#include "strata/nn/detail/layer_config.hpp"
#include "strata/nn/init.hpp"
#include "strata/nn/module.hpp"

namespace strata::nn {

class Linear : public Module {
 public:
  Tensor weight, bias;  // [out, in], [out] (undefined without bias)
  int64_t in_features, out_features;

  Linear(int64_t in, int64_t out, bool with_bias = true) : in_features(in), out_features(out) {
    STRATA_CHECK(in >= 0 && out >= 0, "Linear", "got in=", in, " out=", out, ", expected sizes >= 0");
    weight = make_param(empty({out, in}));
    if (with_bias) bias = make_param(empty({out}));
    reset_parameters();
  }
  /// PyTorch's default init (see the top of this file).
  void reset_parameters() {
    init::kaiming_uniform_(weight, std::sqrt(5.0));
    if (bias.defined()) {
      const double bound = in_features > 0 ? 1.0 / std::sqrt(double(in_features)) : 0.0;
      init::uniform_(bias, -bound, bound);
    }
  }

  Tensor forward(const Tensor& x) override {
    STRATA_CHECK(x.dim() >= 1 && x.size(-1) == in_features, "Linear", "got input of shape ", x.shape(),
                 ", expected last dim ", in_features);
    return linear(x, weight, bias);
  }
  void visit(Visitor& v) override {
    v.param("weight", weight);
    v.param("bias", bias);
  }
  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override {
    return "in_features=" + std::to_string(in_features) + ", out_features=" + std::to_string(out_features) +
           ", bias=" + detail::py_bool(bias.defined());
  }
};

}  // namespace strata::nn
