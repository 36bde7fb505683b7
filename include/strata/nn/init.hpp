// Parameter initializers, as torch.nn.init: each fills a tensor in place (under NoGrad, so
// parameters can be filled) from strata's random generator (manual_seed makes them repeatable), and
// returns it.
//
//   gain(nonlinearity, a): linear/conv/sigmoid 1, tanh 5/3, relu sqrt(2),
//                          leaky_relu sqrt(2 / (1 + a^2)), selu 3/4
//   fan_in = size(1) * receptive field, fan_out = size(0) * receptive field (receptive = prod size(2:))
//   kaiming_uniform_: U(-b, b), b = gain * sqrt(3 / fan)      kaiming_normal_: N(0, gain / sqrt(fan))
//   xavier_uniform_:  U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))
//   xavier_normal_:   N(0, gain * sqrt(2 / (fan_in + fan_out)))
//   dirac_: the identity convolution (1 at the kernel centre for out channel i, in channel i per group)
// NoInit: while one is alive (on this thread) every initializer leaves its tensor as it is, so a
// model whose weights will be loaded is built without drawing millions of random numbers first
// (PyTorch's torch.nn.utils.skip_init); its values are then unspecified until loaded.
// Reference: He et al. 2015 (arXiv:1502.01852), Glorot & Bengio 2010; torch/nn/init.py.
#pragma once

#include <cmath>
#include <string_view>
#include <utility>

#include "strata/tensor/tensor.hpp"

namespace strata::nn::init {

namespace detail {
inline bool& skipping() {
  thread_local bool on = false;
  return on;
}
}  // namespace detail

/// Turns every initializer into a no-op for its lifetime: `{ nn::init::NoInit ni; auto m = resnet34(); }`.
class NoInit {
 public:
  NoInit() : prev_(detail::skipping()) { detail::skipping() = true; }
  ~NoInit() { detail::skipping() = prev_; }
  NoInit(const NoInit&) = delete;
  NoInit& operator=(const NoInit&) = delete;

 private:
  bool prev_;
};

/// The recommended gain for a nonlinearity (`a` is leaky_relu's negative slope).
inline double calculate_gain(std::string_view nonlinearity, double a = 0.01) {
  if (nonlinearity == "linear" || nonlinearity == "conv1d" || nonlinearity == "conv2d" ||
      nonlinearity == "conv3d" || nonlinearity == "sigmoid" || nonlinearity == "conv_transpose2d")
    return 1.0;
  if (nonlinearity == "tanh") return 5.0 / 3.0;
  if (nonlinearity == "relu") return std::sqrt(2.0);
  if (nonlinearity == "leaky_relu") return std::sqrt(2.0 / (1.0 + a * a));
  if (nonlinearity == "selu") return 0.75;
  STRATA_CHECK(false, "calculate_gain", "got nonlinearity '", nonlinearity,
               "', expected linear, conv1d, conv2d, conv3d, sigmoid, tanh, relu, leaky_relu or selu");
  return 1.0;
}

/// {fan_in, fan_out} of a weight of at least 2 dims: [out, in, k...].
inline std::pair<int64_t, int64_t> calculate_fan_in_and_fan_out(const Tensor& t) {
  STRATA_CHECK(t.dim() >= 2, "calculate_fan_in_and_fan_out", "got a tensor of shape ", t.shape(),
               ", expected at least 2 dims ([out, in, kernel...])");
  int64_t receptive = 1;
  for (int d = 2; d < t.dim(); ++d) receptive *= t.size(d);
  return {t.size(1) * receptive, t.size(0) * receptive};
}

namespace detail {
inline int64_t fan(const Tensor& t, std::string_view mode, const char* op) {
  STRATA_CHECK(mode == "fan_in" || mode == "fan_out", op, "got mode '", mode, "', expected fan_in or fan_out");
  auto [in, out] = calculate_fan_in_and_fan_out(t);
  return mode == "fan_in" ? in : out;
}
inline void check_float(const Tensor& t, const char* op) {
  STRATA_CHECK(t.is_floating_point(), op, "got a tensor of dtype ", t.dtype(), ", expected a floating dtype");
}
/// The dtype random values are drawn in for t: its own, or float32 for the 16-bit floats (rounded once).
inline DType draw_dtype(const Tensor& t) { return t.dtype() == DType::f64 ? DType::f64 : DType::f32; }
/// Overwrites t with src (any dtype), bypassing autograd: t may be a parameter.
inline Tensor& fill_from(Tensor& t, const Tensor& src) {
  if (skipping()) return t;
  NoGrad ng;
  t.copy_(src);
  return t;
}
}  // namespace detail

/// Fills t with U(a, b).
inline Tensor& uniform_(Tensor& t, double a = 0.0, double b = 1.0) {
  detail::check_float(t, "uniform_");
  STRATA_CHECK(a <= b, "uniform_", "got a=", a, " b=", b, ", expected a <= b");
  if (detail::skipping()) return t;
  return detail::fill_from(t, add(mul(rand(t.shape(), {.dtype = detail::draw_dtype(t)}), b - a), a));
}

/// Fills t with N(mean, std^2).
inline Tensor& normal_(Tensor& t, double mean = 0.0, double std = 1.0) {
  detail::check_float(t, "normal_");
  STRATA_CHECK(std >= 0, "normal_", "got std=", std, ", expected std >= 0");
  if (detail::skipping()) return t;
  return detail::fill_from(t, add(mul(randn(t.shape(), {.dtype = detail::draw_dtype(t)}), std), mean));
}

/// Fills t with `value`.
inline Tensor& constant_(Tensor& t, double value) {
  if (detail::skipping()) return t;
  NoGrad ng;
  t.fill_(value);
  return t;
}
inline Tensor& zeros_(Tensor& t) { return constant_(t, 0.0); }
inline Tensor& ones_(Tensor& t) { return constant_(t, 1.0); }

/// He uniform: U(-b, b), b = gain(nonlinearity, a) * sqrt(3 / fan).
inline Tensor& kaiming_uniform_(Tensor& t, double a = 0.0, std::string_view mode = "fan_in",
                                std::string_view nonlinearity = "leaky_relu") {
  const double bound = calculate_gain(nonlinearity, a) * std::sqrt(3.0 / double(detail::fan(t, mode, "kaiming_uniform_")));
  return uniform_(t, -bound, bound);
}

/// He normal: N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan).
inline Tensor& kaiming_normal_(Tensor& t, double a = 0.0, std::string_view mode = "fan_in",
                               std::string_view nonlinearity = "leaky_relu") {
  return normal_(t, 0.0, calculate_gain(nonlinearity, a) / std::sqrt(double(detail::fan(t, mode, "kaiming_normal_"))));
}

/// Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).
inline Tensor& xavier_uniform_(Tensor& t, double gain = 1.0) {
  auto [in, out] = calculate_fan_in_and_fan_out(t);
  const double bound = gain * std::sqrt(6.0 / double(in + out));
  return uniform_(t, -bound, bound);
}

/// Glorot normal: N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
inline Tensor& xavier_normal_(Tensor& t, double gain = 1.0) {
  auto [in, out] = calculate_fan_in_and_fan_out(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / double(in + out)));
}

/// The identity convolution: a [out, in/groups, k...] weight (3 to 5 dims) that passes channel i of
/// each group through unchanged (as many channels as min(out/groups, in/groups)).
inline Tensor& dirac_(Tensor& t, int64_t groups = 1) {
  STRATA_CHECK(t.dim() >= 3 && t.dim() <= 5, "dirac_", "got a tensor of shape ", t.shape(),
               ", expected 3 to 5 dims ([out, in, kernel...])");
  STRATA_CHECK(groups >= 1 && t.size(0) % groups == 0, "dirac_", "got ", t.size(0), " output channels and groups=",
               groups, ", expected output channels divisible by groups");
  const int64_t out_per_group = t.size(0) / groups, n = std::min(out_per_group, t.size(1));
  Tensor w = zeros(t.shape(), {.dtype = DType::f64});
  double* p = w.data_ptr<double>();
  const Strides& s = w.strides();
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t i = 0; i < n; ++i) {
      int64_t off = (g * out_per_group + i) * s[0] + i * s[1];
      for (int d = 2; d < t.dim(); ++d) off += (t.size(d) / 2) * s[size_t(d)];
      p[off] = 1.0;
    }
  return detail::fill_from(t, w);
}

}  // namespace strata::nn::init
