// The fused CUDA kernels (kernels/cuda/softmax_xent.cuh, optim_update.cuh, amp.cuh), launched on
// device buffers (host memory under the emulator), against their CPU counterparts in kernels/cpu/
// and the plain-loop references, for f32, f64, f16 and bf16 where the kernel takes them:
// - softmax_xent fwd/bwd: loss, lse and dx against the _ref (summing in double) and the CPU's fast
//   kernel, on B, C not multiples of 32, C = 1, C = 1000, with and without label smoothing and with
//   logits shifted by 1000 (the max subtraction); tolerance a few ulp of the accumulation type
//   (scaled by the row's magnitude) plus one rounding of the storage type.
// - adam_update / sgd_momentum_update over one list of parameters of mixed sizes (1, 7, 33, 1000,
//   70000 > one 65536-element chunk, 40 tiny ones > the 36 tensors one launch holds, an empty one),
//   also with 100-element chunks (a tensor split across launches), every decay mode, 3 steps:
//   p, g, m, v against the CPU kernel and its _ref (in f32/f64: equal bit for bit under the
//   emulator, within 8 ulp allowed for a GPU's fused multiply-adds; f16/bf16: the CPU kernel in
//   float on the upcast values, rounded back each step).
// - amp_unscale: f16, bf16, f32 gradient lists against cpu::amp_unscale bit for bit; found_inf
//   stays 0 for finite values, and is 1 for a single inf in the middle of the 70000-element tensor,
//   a NaN in the last element of the last tensor, a -inf in a 1-element tensor.
// Run also with STRATA_EMU_SCHEDULE=reverse (blocks and threads in reverse order).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <cstdint>
#include <iomanip>
#include <random>
#include <type_traits>
#include <vector>

#include "strata/backend/runtime.hpp"
#include "strata/core/half.hpp"

#include "kernels/cpu/amp.hpp"
#include "kernels/cpu/optim_update.hpp"
#include "kernels/cpu/softmax_xent.hpp"
#include "kernels/cuda/amp.cuh"
#include "kernels/cuda/optim_update.cuh"
#include "kernels/cuda/softmax_xent.cuh"

namespace test_cuda_fused {

namespace cuda = strata::cuda;
namespace cpu = strata::cpu;

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

// ---------------------------------------------------------------- optim_update

/// Lengths of a parameter list: tiny, odd, bigger than one chunk, more tensors than one launch holds.
inline std::vector<int64_t> param_sizes() {
  std::vector<int64_t> n = {1, 7, 33, 0, 1000, 70000};
  for (int k = 0; k < 40; ++k) n.push_back(1 + k % 5);
  return n;
}

/// One parameter's tensors, K of them (p, g, m[, v]) of n elements, on the host and the device.
template <class S, int K>
struct Param {
  using H = host_t<S>;
  std::vector<std::vector<H>> host;  // K vectors
  std::vector<std::unique_ptr<DeviceArray<S>>> dev;
  Param(int64_t n, uint64_t seed) {
    for (int k = 0; k < K; ++k) {
      std::vector<H> v = randn<H>(size_t(n), k == 1 ? 0.5 : 1.0, 0.0, seed + uint64_t(k));
      if (k == 3)
        for (auto& e : v) e = H(std::abs(double(e)));  // sqr_avg >= 0
      dev.push_back(std::make_unique<DeviceArray<S>>(v));
      host.push_back(std::move(v));
    }
  }
  cuda::TensorPtrs<S, K> ptrs(int64_t n) const {
    cuda::TensorPtrs<S, K> t{};
    for (int k = 0; k < K; ++k) t.p[k] = dev[size_t(k)]->get();
    t.n = n;
    return t;
  }
};

/// The CPU step on host vector set `h` (K of them): upcast to A, `step` on A pointers, round back.
template <class H, class A, class Step>
void cpu_step(std::vector<std::vector<H>>& h, Step step) {
  std::vector<std::vector<A>> a;
  for (auto& v : h) a.emplace_back(v.begin(), v.end());
  step(a);
  for (size_t k = 0; k < h.size(); ++k)
    for (size_t i = 0; i < h[k].size(); ++i) h[k][i] = H(a[k][i]);
}

template <class S, int K>
void check_optim(cpu::DecayMode decay, int64_t chunk) {
  using H = host_t<S>;
  using A = cuda::compute_type<S>;
  INFO((K == 4 ? "adam" : "sgd") << " " << sizeof(S) * 8 << "-bit decay " << int(decay) << " chunk " << chunk);
  const std::vector<int64_t> sizes = param_sizes();
  std::vector<Param<S, K>> params;
  std::vector<cuda::TensorPtrs<S, K>> list;
  for (size_t j = 0; j < sizes.size(); ++j) params.emplace_back(sizes[j], 1000 + 10 * j);
  for (size_t j = 0; j < sizes.size(); ++j) list.push_back(params[j].ptrs(sizes[j]));
  std::vector<std::vector<std::vector<H>>> fast, ref;  // [param][k][i]
  for (auto& p : params) fast.push_back(p.host), ref.push_back(p.host);

  for (int t = 1; t <= 3; ++t) {
    const cpu::AdamArgs adam{.lr = 0.01 * t, .mom = 0.9, .sqr_mom = 0.99, .eps = 1e-5, .wd = 0.1, .decay = decay,
                             .debias1 = 1 - std::pow(0.9, t), .debias2 = 1 - std::pow(0.99, t)};
    const cpu::SgdArgs sgd{.lr = 0.1 / t, .mom = 0.9, .wd = 0.05, .decay = decay};
    for (size_t j = 0; j < sizes.size(); ++j) {
      const int64_t n = sizes[j];
      if constexpr (K == 4) {
        cpu_step<H, A>(fast[j], [&](auto& a) { cpu::adam_update<A>(a[0].data(), a[1].data(), a[2].data(), a[3].data(), n, adam); });
        cpu_step<H, A>(ref[j], [&](auto& a) { cpu::adam_update_ref<A>(a[0].data(), a[1].data(), a[2].data(), a[3].data(), n, adam); });
      } else {
        cpu_step<H, A>(fast[j], [&](auto& a) { cpu::sgd_momentum_update<A>(a[0].data(), a[1].data(), a[2].data(), n, sgd); });
        cpu_step<H, A>(ref[j], [&](auto& a) { cpu::sgd_momentum_update_ref<A>(a[0].data(), a[1].data(), a[2].data(), n, sgd); });
      }
    }
    if constexpr (K == 4) cuda::adam_update<S>(list, adam, chunk);
    else cuda::sgd_momentum_update<S>(list, sgd, chunk);
  }
  // f32/f64: 8 ulp (a GPU's fused multiply-adds; the emulator is exact); 16-bit: one rounding
  const double tol = std::is_same_v<S, A> ? 8 * eps_of<S>() : eps_of<S>();
  const double tiny = std::is_same_v<S, cuda::f16_t> ? 0x1p-24 : 0.0;
  int64_t exact = 0, total = 0;
  for (size_t j = 0; j < sizes.size(); ++j)
    for (int k = 0; k < K; ++k) {
      INFO("param " << j << " (" << sizes[j] << " elements), tensor " << "pgmv"[k]);
      const std::vector<H> got = params[j].dev[size_t(k)]->template host<H>();
      const auto& want = fast[j][size_t(k)];
      check_close(got, want, [&](size_t i) { return tol * (1 + std::abs(double(want[i]))) + tiny; }, "vs cpu");
      check_close(got, ref[j][size_t(k)], [&](size_t i) { return tol * (1 + std::abs(double(want[i]))) + tiny; },
                  "vs ref");
      for (size_t i = 0; i < got.size(); ++i) exact += std::memcmp(&got[i], &want[i], sizeof(H)) == 0, ++total;
    }
  if (cuda::kEmulated) CHECK(exact == total);  // the same float operations in the same order
}

// ---------------------------------------------------------------- amp

template <class S>
void check_amp(float inv_scale, int64_t chunk, const std::vector<std::pair<size_t, size_t>>& poison, double bad,
               bool want_found) {
  using H = host_t<S>;
  INFO("amp_unscale " << sizeof(S) * 8 << "-bit inv_scale " << inv_scale << " chunk " << chunk << " poisoned "
                      << poison.size() << " with " << bad);
  const std::vector<int64_t> sizes = param_sizes();
  std::vector<std::vector<H>> host;
  std::vector<std::unique_ptr<DeviceArray<S>>> dev;
  std::vector<cuda::TensorPtrs<S, 1>> list;
  for (size_t j = 0; j < sizes.size(); ++j) {
    host.push_back(randn<H>(size_t(sizes[j]), 1000, 0, 500 + j));
    for (const auto& [t, i] : poison)
      if (t == j) host[j][i] = H(bad);
    dev.push_back(std::make_unique<DeviceArray<S>>(host[j]));
    list.push_back({{dev.back()->get()}, sizes[j]});
  }
  DeviceArray<float> found(1);
  cuda::amp_unscale<S>(list, inv_scale, found.get(), chunk);
  bool found_cpu = false, found_ref = false;
  for (size_t j = 0; j < sizes.size(); ++j) {
    std::vector<H> ref = host[j];
    found_cpu |= cpu::amp_unscale<H>(host[j].data(), sizes[j], inv_scale);
    found_ref |= cpu::amp_unscale_ref<H>(ref.data(), sizes[j], inv_scale);
    const std::vector<H> got = dev[j]->template host<H>();
    int64_t differ = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      const bool same = std::memcmp(&got[i], &host[j][i], sizeof(H)) == 0 ||
                        (std::isnan(double(got[i])) && std::isnan(double(host[j][i])));
      if (!same && differ++ < 3) FAIL_CHECK("tensor " << j << "[" << i << "]: cuda " << double(got[i]) << ", cpu " << double(host[j][i]));
      if (std::memcmp(&ref[i], &host[j][i], sizeof(H)) != 0 && !std::isnan(double(ref[i])))
        FAIL_CHECK("tensor " << j << "[" << i << "]: cpu " << double(host[j][i]) << ", ref " << double(ref[i]));
    }
    CHECK(differ == 0);
  }
  CHECK(found_cpu == want_found);
  CHECK(found_ref == want_found);
  CHECK(found.host()[0] == (want_found ? 1.0f : 0.0f));
}

template <class S>
void amp_cases() {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  const size_t big = 5, last = param_sizes().size() - 1, one = 0;  // 70000 elements; 5 elements; 1 element
  for (const int64_t chunk : {cuda::kMultiTensorChunk, int64_t(100)}) {
    check_amp<S>(1.0f / 1024, chunk, {}, 0, false);
    check_amp<S>(1.0f / 3, chunk, {}, 0, false);
    check_amp<S>(1.0f / 1024, chunk, {{big, 35001}}, inf, true);
    check_amp<S>(1.0f / 1024, chunk, {{last, 4}}, nan, true);
    check_amp<S>(0.5f, chunk, {{one, 0}}, -inf, true);
  }
}

}  // namespace test_cuda_fused

TEST_CASE("cuda fused: adam_update / sgd_momentum_update over a parameter list equal the CPU kernels",
          "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  using strata::cpu::DecayMode;
  for (const auto decay : {DecayMode::none, DecayMode::l2, DecayMode::decoupled})
    for (const int64_t chunk : {cuda::kMultiTensorChunk, int64_t(100)}) {
      check_optim<float, 4>(decay, chunk);
      check_optim<float, 3>(decay, chunk);
    }
  check_optim<double, 4>(DecayMode::decoupled, 100);
  check_optim<double, 3>(DecayMode::l2, cuda::kMultiTensorChunk);
  check_optim<cuda::f16_t, 4>(DecayMode::decoupled, 100);
  check_optim<cuda::bf16_t, 4>(DecayMode::l2, cuda::kMultiTensorChunk);
  check_optim<cuda::f16_t, 3>(DecayMode::none, cuda::kMultiTensorChunk);
  check_optim<cuda::bf16_t, 3>(DecayMode::decoupled, 100);
}

TEST_CASE("cuda fused: amp_unscale of a gradient list equals the CPU kernel and finds inf/NaN", "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  SECTION("f16") { amp_cases<cuda::f16_t>(); }
  SECTION("bf16") { amp_cases<cuda::bf16_t>(); }
  SECTION("f32") { amp_cases<float>(); }
}

TEST_CASE("cuda fused: multi-tensor errors name the op", "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  std::vector<cuda::TensorPtrs<float, 1>> list = {{{nullptr}, 5}};
  DeviceArray<float> found(1);
  CHECK_THROWS_WITH(cuda::amp_unscale<float>(list, 1.0f, found.get()),
                    Catch::Contains("amp_unscale") && Catch::Contains("null pointer 0 for tensor 0"));
  CHECK_THROWS_WITH(cuda::amp_unscale<float>(list, 1.0f, nullptr), Catch::Contains("amp_unscale") && Catch::Contains("found_inf"));
  list[0].n = -1;
  CHECK_THROWS_WITH(cuda::amp_unscale<float>(list, 1.0f, found.get()), Catch::Contains("length -1"));
  std::vector<cuda::TensorPtrs<float, 4>> adam = {{{found.get(), found.get(), found.get(), found.get()}, 1}};
  CHECK_THROWS_WITH(cuda::adam_update<float>(adam, strata::cpu::AdamArgs{.debias1 = 0}),
                    Catch::Contains("adam_update") && Catch::Contains("debias1 = 0"));
}

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
