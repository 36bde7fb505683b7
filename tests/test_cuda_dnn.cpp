// conv2d on cuda (backend/cuda/dnn.hpp: cuDNN on a GPU, the CPU conv kernels under the emulator)
// against conv2d on the CPU, forward and backward (dx, dw, db), for f32, f64, f16 and bf16: padding,
// stride, dilation, groups, depthwise, a strided (sliced) x, a channels-last x (channels-last out
// and dx), conv2d_relu, no bias, and under Autocast(bf16). Tolerances are error bounds: k * u(accumulation) times the same
// conv of |x| and |w| in float64 (sums of |terms|), plus the 16-bit roundings, so the tests hold
// natively on a GPU too, where cuDNN sums in another order. The errors name the op.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/backend/cuda/dnn.hpp"

namespace test_cuda_dnn {

using namespace strata;

inline double unit_roundoff(DType t) {
  switch (t) {
    case DType::f64: return std::ldexp(1.0, -53);
    case DType::f32: return std::ldexp(1.0, -24);
    case DType::f16: return std::ldexp(1.0, -11);
    default: return std::ldexp(1.0, -8);  // bf16
  }
}

/// Row-major values of a cpu tensor as double, through its strides (a plain loop).
inline std::vector<double> host_values(const Tensor& t) {
  REQUIRE(t.device() == kCPU);
  return th::values(t);  // tests/helpers.hpp: a plain loop over the strides
}

/// Uniform values in [-1, 1) on the CPU (made in f64, rounded once).
inline Tensor uniform(const Shape& shape, DType t) {
  return to(sub(mul(rand(shape, {.dtype = DType::f64}), 2.0), 1.0), t);
}

/// got (cuda) equals want (cpu) within 2 (k + 1) u_acc bound + 16-bit roundings (see the top).
inline void check_against(const Tensor& got_cuda, const Tensor& want, const Tensor& bound, int64_t k,
                          const std::string& what) {
  INFO(what << ": got " << got_cuda.shape() << " " << got_cuda.dtype() << ", want " << want.shape() << " "
            << want.dtype());
  REQUIRE(got_cuda.device() == Device::cuda());
  REQUIRE(got_cuda.dtype() == want.dtype());
  REQUIRE(got_cuda.shape() == want.shape());
  const std::vector<double> g = host_values(to(got_cuda, kCPU)), w = host_values(want), s = host_values(bound);
  REQUIRE(s.size() == w.size());
  const DType t = want.dtype();
  const double u_acc = t == DType::f64 ? unit_roundoff(DType::f64) : unit_roundoff(DType::f32);
  const double u_out = t == DType::f16 || t == DType::bf16 ? unit_roundoff(t) : 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double tol = 2 * double(k + 1) * u_acc * s[i] + 2 * u_out * s[i] + 4 * u_out * std::abs(w[i]) + 1e-300;
    if (!(std::abs(g[i] - w[i]) <= tol)) {
      FAIL_CHECK(what << ": element " << i << " got " << g[i] << ", want " << w[i] << " (tolerance " << tol << ")");
      return;
    }
  }
  SUCCEED();
}

using V = std::vector<Tensor>;
using Fn = std::function<Tensor(const V&)>;
using View = std::function<Tensor(const Tensor&)>;
inline Tensor same(const Tensor& x) { return x; }

/// f(view(inputs[0]), inputs[1..]) forward and its gradients (cotangent g) on cuda against the CPU.
/// k: the longest sum behind any output or gradient element.
inline void check_conv(const Fn& f, const V& inputs, int64_t k, const std::string& what, const View& xv = same,
                       bool relu = false) {
  const DType t = inputs[0].dtype();
  auto with_view = [&](V xs) {
    xs[0] = xv(xs[0]);
    return xs;
  };
  auto run = [&](const V& xs, const Tensor* g, V* grads) {
    V leaves;
    for (const Tensor& x : xs) leaves.push_back(x.defined() ? x.detach().requires_grad_() : x);
    const Tensor out = f(with_view(leaves));
    if (g) {
      out.backward(*g);
      for (const Tensor& l : leaves) grads->push_back(l.defined() ? l.grad() : Tensor());
    }
    return out;
  };
  V abs_inputs, cuda_inputs;
  for (const Tensor& x : inputs) {
    abs_inputs.push_back(x.defined() ? abs(to(x, DType::f64)) : x);
    cuda_inputs.push_back(x.defined() ? to(x, Device::cuda()) : x);
  }
  // forward (no autograd: conv2d_relu fuses only then)
  {
    const Tensor want = f(with_view(inputs)), bound = f(with_view(abs_inputs)), got = f(with_view(cuda_inputs));
    if (!relu) REQUIRE(conv2d_channels_last(got) == conv2d_channels_last(want));
    check_against(got, want, bound, k, what + " forward");
  }
  if (relu) return;
  const Tensor g = uniform(f(with_view(inputs)).shape(), t);
  V want, bound, got;
  run(inputs, &g, &want);
  const Tensor g_abs = abs(to(g, DType::f64)), g_cuda = to(g, Device::cuda());
  run(abs_inputs, &g_abs, &bound);
  run(cuda_inputs, &g_cuda, &got);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].defined()) check_against(got[i], want[i], bound[i], k, what + " grad of input " + std::to_string(i));
}

TEST_CASE("conv2d on cuda equals the CPU op, forward and backward", "[cuda][conv]") {
  manual_seed(21);
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(t));
    const Fn pad1 = [](const V& x) { return conv2d(x[0], x[1], x[2], {1, 1}, {1, 1}); };
    check_conv(pad1, {uniform({2, 3, 7, 6}, t), uniform({4, 3, 3, 3}, t), uniform({4}, t)}, 2 * 7 * 6,
               "3x3 pad 1 bias" + d);
    check_conv(pad1, {uniform({2, 3, 7, 6}, t), uniform({4, 3, 3, 3}, t), Tensor()}, 2 * 7 * 6, "no bias" + d);
    const Fn strided = [](const V& x) { return conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {2, 1}, 2); };
    check_conv(strided, {uniform({2, 4, 9, 8}, t), uniform({6, 2, 3, 2}, t), uniform({6}, t)}, 2 * 4 * 11,
               "stride, dilation, groups" + d);
    const Fn depthwise = [](const V& x) { return conv2d(x[0], x[1], x[2], {1, 1}, {1, 1}, {1, 1}, 3); };
    check_conv(depthwise, {uniform({2, 3, 6, 6}, t), uniform({6, 1, 3, 3}, t), uniform({6}, t)}, 2 * 6 * 6,
               "depthwise" + d);
    // x a view with no dense layout: every other column
    const View cols = [](const Tensor& x) { return slice(x, 3, 0, 12, 2); };
    check_conv(pad1, {uniform({2, 3, 5, 12}, t), uniform({4, 3, 3, 3}, t), uniform({4}, t)}, 2 * 5 * 6,
               "strided x" + d, cols);
    // channels-last x: channels-last out and dx
    const View nhwc = [](const Tensor& x) { return contiguous(x, MemoryFormat::channels_last); };
    check_conv(pad1, {uniform({2, 8, 5, 5}, t), uniform({8, 8, 3, 3}, t), uniform({8}, t)}, 8 * 9,
               "channels-last" + d, nhwc);
    const Fn fused = [](const V& x) { return conv2d_relu(x[0], x[1], x[2], {1, 1}, {1, 1}); };
    check_conv(fused, {uniform({2, 3, 7, 6}, t), uniform({4, 3, 3, 3}, t), uniform({4}, t)}, 28, "conv2d_relu" + d,
               same, true);
  }
}

TEST_CASE("conv2d on cuda under Autocast(bf16): bf16 operands, float32 result and grads, like the CPU",
          "[cuda][conv]") {
  manual_seed(22);
  const Tensor x = uniform({2, 3, 6, 5}, DType::f32), w = uniform({4, 3, 3, 3}, DType::f32);
  const Tensor b = uniform({4}, DType::f32), g = uniform({2, 4, 6, 5}, DType::f32);
  auto r16 = [](const Tensor& t) { return abs(to(to(t, DType::bf16), DType::f64)); };  // |bf16(t)|
  V want_grads, got_grads;
  Tensor want, got;
  for (bool cuda : {false, true}) {
    const Device d = cuda ? Device::cuda() : kCPU;
    Tensor xl = to(x, d).detach().requires_grad_(), wl = to(w, d).detach().requires_grad_();
    Tensor bl = to(b, d).detach().requires_grad_();
    Tensor out;
    {
      Autocast ac(DType::bf16);
      out = conv2d(xl, wl, bl, {1, 1}, {1, 1});
    }
    out.backward(to(g, d));
    (cuda ? got : want) = out;
    (cuda ? got_grads : want_grads) = V{xl.grad(), wl.grad(), bl.grad()};
  }
  // bounds: the same conv and grads on the bf16-rounded |values| in float64 (+ |b|)
  V bound_grads;
  Tensor xa = r16(x).requires_grad_(), wa = r16(w).requires_grad_(), ba = abs(to(b, DType::f64)).requires_grad_();
  const Tensor bound = conv2d(xa, wa, ba, {1, 1}, {1, 1});
  bound.backward(r16(g));
  check_against(got, want, bound, 27, "autocast conv2d");
  check_against(got_grads[0], want_grads[0], xa.grad(), 36, "autocast conv2d dx");
  check_against(got_grads[1], want_grads[1], wa.grad(), 60, "autocast conv2d dw");
  check_against(got_grads[2], want_grads[2], ba.grad(), 60, "autocast conv2d db");
}

TEST_CASE("conv2d on cuda: errors name the op", "[cuda][conv]") {
  const Tensor x = uniform({1, 2, 4, 4}, DType::f32), w = uniform({3, 2, 3, 3}, DType::f32);
  try {
    conv2d(to(x, Device::cuda()), w);
    FAIL("expected an Error");
  } catch (const Error& e) {
    const std::string m = e.what();
    CHECK(m.find("conv2d: got devices x cuda:0 and w cpu") != std::string::npos);
  }
}

}  // namespace test_cuda_dnn
