// winograd_probe: checks bench/kernels/conv_winograd.hpp (F(2x2, 3x3)) against conv2d_fwd_ref on odd
// shapes, then times it against strata's conv2d forward on the flagship's and ResNet-9's 3x3 layers
// (best of 5, alternating). Not part of the CMake build:
//   g++ -std=c++20 -O2 -march=native -DNDEBUG -Iinclude -I. bench/kernels/winograd_probe.cpp -o /tmp/wp -pthread && /tmp/wp
// Measured 2026-11-21 (2 threads, quiet): speedup over the direct path 0.31x (32->32 28x28, bs 256),
// 0.39x (64->64 14x14), 0.79x (64->128 28x28, bs 64), 0.60x (128->128 14x14), 0.50x (256->256 7x7),
// 0.38x (512->512 3x3): see the STATUS in conv_winograd.hpp.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>
#include "bench/kernels/conv_winograd.hpp"
using namespace strata::cpu;
static double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
int main() {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-1, 1);
  // correctness on odd shapes
  for (auto [B, Cin, Cout, H, W, pad] : std::vector<std::array<int64_t, 6>>{{2, 3, 5, 7, 9, 1}, {1, 17, 9, 5, 4, 0}, {3, 8, 16, 6, 6, 1}, {2, 4, 3, 3, 3, 2}, {1, 1, 1, 4, 4, 1}}) {
    Conv2dParams p{.B = B, .Cin = Cin, .H = H, .W = W, .Cout = Cout, .kH = 3, .kW = 3};
    p.padding = {pad, pad};
    std::vector<float> x(B * Cin * H * W), w(Cout * Cin * 9), b(Cout), o1(B * Cout * p.OH() * p.OW()), o2(o1.size());
    for (auto& v : x) v = u(rng);
    for (auto& v : w) v = u(rng);
    for (auto& v : b) v = u(rng);
    ConvStrides xs{Cin * H * W, H * W, W, 1};
    conv2d_fwd_ref<float>(p, x.data(), xs, w.data(), b.data(), o1.data());
    conv2d_fwd_winograd(p, x.data(), xs, w.data(), b.data(), o2.data());
    double err = 0;
    for (size_t i = 0; i < o1.size(); ++i) err = std::max(err, double(std::abs(o1[i] - o2[i])));
    std::printf("B%ld Cin%ld Cout%ld %ldx%ld pad%ld: max err %.2e\n", B, Cin, Cout, H, W, pad, err);
  }
  // speed: resnet9 / cnn layers, bs 256 (bs 64 for the big ones), best of 3, alternating
  for (auto [B, Cin, Cout, H] : std::vector<std::array<int64_t, 4>>{{256, 32, 32, 28}, {256, 64, 64, 14}, {64, 64, 128, 28}, {64, 128, 128, 14}, {64, 256, 256, 7}, {64, 512, 512, 3}}) {
    Conv2dParams p{.B = B, .Cin = Cin, .H = H, .W = H, .Cout = Cout, .kH = 3, .kW = 3};
    p.padding = {1, 1};
    std::vector<float> x(B * Cin * H * H), w(Cout * Cin * 9), b(Cout), o1(B * Cout * p.OH() * p.OW()), o2(o1.size());
    for (auto& v : x) v = u(rng);
    for (auto& v : w) v = u(rng);
    ConvStrides xs{Cin * H * H, H * H, H, 1};
    double td = 1e9, tw = 1e9;
    for (int r = 0; r < 5; ++r) {
      double t0 = now();
      conv2d_fwd_kernel<float>(p, x.data(), xs, w.data(), b.data(), o1.data());
      double t1 = now();
      conv2d_fwd_winograd(p, x.data(), xs, w.data(), b.data(), o2.data());
      double t2 = now();
      td = std::min(td, t1 - t0); tw = std::min(tw, t2 - t1);
    }
    double err = 0, mx = 0;
    for (size_t i = 0; i < o1.size(); ++i) { err = std::max(err, double(std::abs(o1[i] - o2[i]))); mx = std::max(mx, double(std::abs(o1[i]))); }
    double fl = 2.0 * B * Cout * Cin * 9 * p.OH() * p.OW();
    std::printf("B%ld %ld->%ld %ldx%ld: current %.2f ms (%.0f GF/s)  winograd %.2f ms (%.0f eff GF/s)  speedup %.2fx  err %.1e/%.1e\n",
                B, Cin, Cout, H, H, td * 1e3, fl / td / 1e9, tw * 1e3, fl / tw / 1e9, td / tw, err, mx);
  }
}
