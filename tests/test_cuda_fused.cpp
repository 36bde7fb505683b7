// The fused CUDA kernels (kernels/cuda/softmax_xent.cuh, optim_update.cuh, amp.cuh), launched on
// device buffers (host memory under the emulator), against their CPU counterparts in kernels/cpu/
// and the plain-loop references, for f32, f64, f16 and bf16 where the kernel takes them:
// - softmax_xent fwd/bwd: loss, lse and dx against the _ref (summing in double) and the CPU's fast
//   kernel, on B, C not multiples of 32, C = 1, C = 1000, with and without label smoothing and with
//   logits shifted by 1000 (the max subtraction); tolerance a few ulp of the accumulation type
//   (scaled by the row's magnitude) plus one rounding of the storage type.
// Run also with STRATA_EMU_SCHEDULE=reverse (blocks and threads in reverse order).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <iomanip>
#include <random>
#include <type_traits>
#include <vector>

#include "strata/backend/runtime.hpp"
#include "strata/core/half.hpp"

#include "kernels/cpu/softmax_xent.hpp"
#include "kernels/cuda/softmax_xent.cuh"

namespace test_cuda_fused {

namespace cuda = strata::cuda;

/// The host type with the same bits as device storage type S (strata::f16 for cuda::f16_t, ...).
template <class S>
using host_t = std::conditional_t<std::is_same_v<S, cuda::f16_t>, strata::f16,
                                  std::conditional_t<std::is_same_v<S, cuda::bf16_t>, strata::bf16, S>>;

/// Machine epsilon of storage type S (2^-10 for f16, 2^-7 for bf16).
template <class S>
constexpr double eps_of() {
  if constexpr (std::is_same_v<S, cuda::f16_t>) return 0x1p-10;
  else if constexpr (std::is_same_v<S, cuda::bf16_t>) return 0x1p-7;
  else if constexpr (std::is_same_v<S, float>) return 0x1p-23;
  else return 0x1p-52;
}

/// A device array that frees itself, made from a host vector (any type of the same size).
template <class T>
class DeviceArray {
 public:
  explicit DeviceArray(size_t n) : n_(n), p_(static_cast<T*>(cuda::malloc(n * sizeof(T)))) {
    cuda::memset(p_, 0, n * sizeof(T));
  }
  template <class H>
  explicit DeviceArray(const std::vector<H>& host) : DeviceArray(host.size()) {
    static_assert(sizeof(H) == sizeof(T));
    cuda::memcpy(p_, host.data(), n_ * sizeof(T));
  }
  ~DeviceArray() { cuda::free(p_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() const { return p_; }
  /// The contents as host values of H.
  template <class H = T>
  std::vector<H> host() const {
    static_assert(sizeof(H) == sizeof(T));
    std::vector<H> h(n_);
    cuda::memcpy(h.data(), p_, n_ * sizeof(T));
    return h;
  }

 private:
  size_t n_;
  T* p_;
};

/// n normal values * scale + shift, rounded to H.
template <class H>
std::vector<H> randn(size_t n, double scale, double shift, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0, 1);
  std::vector<H> v(n);
  for (auto& x : v) x = H(d(rng) * scale + shift);
  return v;
}

/// |got - want| <= tol for each element; reports the first few failures and the worst excess.
template <class G, class W, class Tol>
void check_close(const std::vector<G>& got, const std::vector<W>& want, Tol tol, const char* what) {
  REQUIRE(got.size() == want.size());
  int failures = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]), t = tol(i);
    const bool ok = (std::isnan(g) && std::isnan(w)) || std::abs(g - w) <= t;
    if (!ok && failures++ < 5) FAIL_CHECK(what << "[" << i << "]: got " << std::setprecision(17) << g << ", want " << w << " (tol " << t << ")");
  }
  CHECK(failures == 0);
}

// ---------------------------------------------------------------- softmax_xent

template <class S>
void check_softmax_xent(int64_t B, int64_t C, double eps, double shift, uint64_t seed) {
  using H = host_t<S>;
  using A = cuda::compute_type<S>;
  INFO("softmax_xent " << sizeof(S) * 8 << "-bit " << (std::is_same_v<S, cuda::bf16_t> ? "bf16" : "") << " B=" << B
                       << " C=" << C << " eps=" << eps << " shift=" << shift);
  const size_t n = size_t(B * C), nb = size_t(B);
  const std::vector<H> x = randn<H>(n, 3, shift, seed), dloss = randn<H>(nb, 1, 0, seed + 1);
  std::vector<int64_t> y(nb);
  std::mt19937_64 rng(seed + 2);
  for (auto& t : y) t = int64_t(rng() % uint64_t(C));

  // truth: the plain loops in double; the CPU counterpart: the fast kernel in A
  std::vector<H> loss_ref(nb), dx_ref(n), loss_cpu(nb), dx_cpu(n);
  std::vector<double> lse_ref(nb);
  std::vector<A> lse_cpu(nb);
  strata::cpu::softmax_xent_fwd_ref<H, double>(x.data(), y.data(), loss_ref.data(), lse_ref.data(), B, C, eps);
  strata::cpu::softmax_xent_bwd_ref<H, double>(dloss.data(), x.data(), y.data(), lse_ref.data(), dx_ref.data(), B, C,
                                              eps);
  strata::cpu::softmax_xent_fwd<H, A>(x.data(), y.data(), loss_cpu.data(), lse_cpu.data(), B, C, eps);
  strata::cpu::softmax_xent_bwd<H, A>(dloss.data(), x.data(), y.data(), lse_cpu.data(), dx_cpu.data(), B, C, eps);

  DeviceArray<S> dx_d(x), dl_d(dloss), loss_d(nb), dxo_d(n);
  DeviceArray<int64_t> y_d(y);
  DeviceArray<A> lse_d(nb);
  cuda::softmax_xent_fwd<S>(dx_d.get(), y_d.get(), loss_d.get(), lse_d.get(), B, C, eps);
  cuda::softmax_xent_bwd<S>(dl_d.get(), dx_d.get(), y_d.get(), lse_d.get(), dxo_d.get(), B, C, eps);
  const std::vector<H> loss = loss_d.template host<H>(), dx = dxo_d.template host<H>();
  const std::vector<A> lse = lse_d.host();

  // a few ulp of A per unit of the row's magnitude (max |x|, |lse|), plus one rounding to S
  const double ea = eps_of<A>() * 16, es = std::is_same_v<S, A> ? 0.0 : eps_of<S>() * 2;
  const double tiny = std::is_same_v<S, cuda::f16_t> ? 0x1p-24 : 0.0;  // f16's subnormal spacing
  std::vector<double> mag(nb, 1.0);
  for (size_t i = 0; i < n; ++i) mag[i / size_t(C)] = std::max(mag[i / size_t(C)], std::abs(double(x[i])));
  for (int64_t b = 0; b < B; ++b) mag[size_t(b)] = std::max(mag[size_t(b)], std::abs(lse_ref[size_t(b)]));
  const auto loss_tol = [&](size_t b) { return ea * mag[b] + es * std::abs(double(loss_ref[b])) + tiny; };
  const auto dx_tol = [&](size_t i) {
    const size_t b = i / size_t(C);
    const double d = std::abs(double(dloss[b]));
    return d * ea * mag[b] + es * (std::abs(double(dx_ref[i])) + d) + tiny;
  };
  check_close(lse, lse_ref, [&](size_t b) { return ea * mag[b]; }, "lse vs ref");
  check_close(loss, loss_ref, loss_tol, "loss vs ref");
  check_close(dx, dx_ref, dx_tol, "dx vs ref");
  check_close(lse, lse_cpu, [&](size_t b) { return 2 * ea * mag[b]; }, "lse vs cpu");
  check_close(loss, loss_cpu, [&](size_t b) { return 2 * loss_tol(b); }, "loss vs cpu");
  check_close(dx, dx_cpu, [&](size_t i) { return 2 * dx_tol(i); }, "dx vs cpu");
}

template <class S>
void softmax_xent_cases() {
  uint64_t seed = 100;
  for (const auto& [B, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {3, 1}, {5, 7}, {33, 10}, {2, 33},
                                                                     {7, 100}, {17, 1000}})
    for (const double eps : {0.0, 0.1}) check_softmax_xent<S>(B, C, eps, 0.0, ++seed);
  check_softmax_xent<S>(6, 257, 0.1, 1000.0, ++seed);  // large logits: only the max subtraction keeps exp finite
  check_softmax_xent<S>(4, 50, 1.0, -20.0, ++seed);    // eps = 1: the uniform target
}

}  // namespace test_cuda_fused

TEST_CASE("cuda fused: softmax_xent fwd/bwd equals the CPU kernel and the reference", "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  SECTION("f32") { softmax_xent_cases<float>(); }
  SECTION("f64") { softmax_xent_cases<double>(); }
  SECTION("f16") { softmax_xent_cases<cuda::f16_t>(); }
  SECTION("bf16") { softmax_xent_cases<cuda::bf16_t>(); }
}

TEST_CASE("cuda fused: softmax_xent empty batch, bad arguments", "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  cuda::softmax_xent_fwd<float>(nullptr, nullptr, nullptr, nullptr, 0, 10, 0.0);  // B = 0: nothing to do
  CHECK_THROWS_WITH(cuda::softmax_xent_fwd<float>(nullptr, nullptr, nullptr, nullptr, 2, 0, 0.0),
                    Catch::Contains("softmax_xent_fwd") && Catch::Contains("C = 0"));
  CHECK_THROWS_WITH(cuda::softmax_xent_bwd<float>(nullptr, nullptr, nullptr, nullptr, nullptr, 2, 3, 1.5),
                    Catch::Contains("softmax_xent_bwd") && Catch::Contains("eps = 1.5"));
  CHECK_THROWS_WITH(cuda::softmax_xent_fwd<float>(nullptr, nullptr, nullptr, nullptr, 2, 3, 0.0),
                    Catch::Contains("softmax_xent_fwd") && Catch::Contains("null"));
}
