// 00_tensor: tensors and autograd in a few lines.
//
// Fits y = 3x - 2 + noise with a hand-written gradient-descent loop: the low tier of the API,
// before any Module, Optimizer or Learner exists. Asserts that it recovers the line.
#include <cstdio>
#include <cstdlib>

#include <strata/strata.hpp>

int main() {
  using namespace strata;
  manual_seed(42);

  // data: 256 points on a noisy line
  Tensor x = rand({256, 1}) * 4.0 - 2.0;
  Tensor y = x * 3.0 - 2.0 + randn({256, 1}) * 0.1;

  // parameters
  Tensor w = zeros({1, 1}).requires_grad_();
  Tensor b = zeros({1}).requires_grad_();
  std::printf("x[:3] = %s\n", to_string(x.narrow(0, 0, 3).flatten()).c_str());

  const double lr = 0.1;
  double loss_value = 0;
  for (int step = 0; step < 200; ++step) {
    Tensor pred = matmul(x, w) + b;          // [256, 1]
    Tensor loss = (pred - y).pow(2).mean();  // mean squared error
    loss.backward();
    {
      NoGrad guard;  // update in place, outside the graph
      w.add_(w.grad(), -lr);
      b.add_(b.grad(), -lr);
      w.grad().zero_();
      b.grad().zero_();
    }
    loss_value = loss.item<double>();
    if (step % 50 == 0) std::printf("step %3d  loss %.5f\n", step, loss_value);
  }
  const double wv = w.item<double>(), bv = b.item<double>();
  std::printf("w = %.4f (3), b = %.4f (-2), loss = %.5f\n", wv, bv, loss_value);
  const bool ok = std::abs(wv - 3) < 0.05 && std::abs(bv + 2) < 0.05 && loss_value < 0.02;
  std::printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
