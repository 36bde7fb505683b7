// Activation layers (no parameters), each the module form of an op in tensor/unary.hpp:
//   ReLU max(0, x)   LeakyReLU x if x > 0 else slope*x   SiLU x*sigmoid(x)   Sigmoid   Tanh
//   GELU x*Phi(x) (exact, erf), or with approximate = "tanh": 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3)))
//   Identity x
#pragma once

#include <cmath>
#include <numbers>
#include <string>

#include "strata/nn/detail/layer_config.hpp"
#include "strata/nn/module.hpp"

namespace strata::nn {

class Identity : public Module {
 public:
  Tensor forward(const Tensor& x) override { return x; }
  std::string type_name() const override { return "Identity"; }
};

class ReLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return relu(x); }
  std::string type_name() const override { return "ReLU"; }
};

class LeakyReLU : public Module {
 public:
  double negative_slope;
  explicit LeakyReLU(double negative_slope_ = 0.01) : negative_slope(negative_slope_) {}
  Tensor forward(const Tensor& x) override { return leaky_relu(x, negative_slope); }
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override { return "negative_slope=" + detail::py_float(negative_slope); }
};

class GELU : public Module {
 public:
  std::string approximate;  // "none" (exact) or "tanh"
  explicit GELU(std::string approximate_ = "none") : approximate(std::move(approximate_)) {
    STRATA_CHECK(approximate == "none" || approximate == "tanh", "GELU", "got approximate='", approximate,
                 "', expected 'none' or 'tanh'");
  }
  Tensor forward(const Tensor& x) override {
    if (approximate == "none") return gelu(x);
    const double k = std::sqrt(2.0 / std::numbers::pi);
    return x * 0.5 * (tanh((x + x * x * x * 0.044715) * k) + 1.0);
  }
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override { return "approximate='" + approximate + "'"; }
};

class SiLU : public Module {
 public:
  Tensor forward(const Tensor& x) override { return silu(x); }
  std::string type_name() const override { return "SiLU"; }
};

class Sigmoid : public Module {
 public:
  Tensor forward(const Tensor& x) override { return sigmoid(x); }
  std::string type_name() const override { return "Sigmoid"; }
};

class Tanh : public Module {
 public:
  Tensor forward(const Tensor& x) override { return tanh(x); }
  std::string type_name() const override { return "Tanh"; }
};

}  // namespace strata::nn
