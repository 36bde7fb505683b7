// ops peer benchmark, strata side: median time of common tensor ops on fixed shapes, f32.
// The same cases, in the same order, are timed by ops.py with PyTorch; run_ops.sh runs both with
// the same thread count and prints the ratios. Output: one line per case, "name median_ms".
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <strata/strata.hpp>

using namespace strata;

static double median_ms(const std::function<void()>& f, int reps) {
  f();  // warm-up: caches, pool
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

/// conv2d forward + backward of a batch-128 flagship layer (x, w, b all require grad).
static std::function<void()> conv_fwd_bwd(int64_t cin, int64_t cout, int64_t h, int64_t k, int64_t s) {
  const int64_t oh = (h + 2 * (k / 2) - k) / s + 1;
  Tensor x = randn({128, cin, h, h}).requires_grad_(), w = randn({cout, cin, k, k}).requires_grad_();
  Tensor b = randn({cout}).requires_grad_(), g = randn({128, cout, oh, oh});
  return [=] { conv2d(x, w, b, {s, s}, {k / 2, k / 2}).backward(g); };
}

int main() {
  manual_seed(0);
  const Tensor a = randn({1 << 22}), b = randn({1 << 22}), m = randn({2048, 2048});
  const Tensor x = randn({256, 1000}), w = randn({256, 784}), xb = randn({128, 784});
  const Tensor s512a = randn({512, 512}), s512b = randn({512, 512});
  const Tensor bat_a = randn({64, 64, 64}), bat_b = randn({64, 64, 64});
  struct Case { const char* name; std::function<void()> f; int reps; };
  const std::vector<Case> cases = {
      {"add_4M", [&] { (void)(a + b); }, 30},
      {"mul_scalar_4M", [&] { (void)(a * 2.0); }, 30},
      {"exp_4M", [&] { (void)exp(a); }, 30},
      {"tanh_4M", [&] { (void)tanh(a); }, 30},
      {"relu_4M", [&] { (void)relu(a); }, 30},
      {"add_transposed_2048", [&] { (void)(m + m.t()); }, 10},
      {"sum_4M", [&] { (void)a.sum(); }, 30},
      {"sum_dim0_2048", [&] { (void)m.sum({0}); }, 30},
      {"sum_dim1_2048", [&] { (void)m.sum({1}); }, 30},
      {"max_dim1_2048", [&] { (void)m.max(1); }, 30},
      {"log_softmax_256x1000", [&] { (void)log_softmax(x, 1); }, 50},
      {"matmul_512", [&] { (void)matmul(s512a, s512b); }, 20},
      {"bmm_64x64x64", [&] { (void)matmul(bat_a, bat_b); }, 30},
      {"linear_128x784_256", [&] { (void)linear(xb, w); }, 50},
      {"mlp_fwd_bwd_128", [&] {
         Tensor w1 = w.detach().requires_grad_();
         Tensor loss = log_softmax(relu(linear(xb, w1)), 1).mean();
         loss.backward();
       }, 30},
      {"conv3x3_16_32_s2_28_fb", conv_fwd_bwd(16, 32, 28, 3, 2), 10},
      {"conv3x3_64_64_7_fb", conv_fwd_bwd(64, 64, 7, 3, 1), 10},
      {"conv3x3_128_128_4_fb", conv_fwd_bwd(128, 128, 4, 3, 1), 10},
      {"conv1x1_64_128_4_fb", conv_fwd_bwd(64, 128, 4, 1, 1), 20},
  };
  for (const Case& c : cases) std::printf("%s %.4f\n", c.name, median_ms(c.f, c.reps));
}
