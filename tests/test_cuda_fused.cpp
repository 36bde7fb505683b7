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
// - dropout_fwd / dropout_bwd / dropout_mask (kernels/cuda/dropout.cuh): the mask, y and dx equal
//   a plain loop over core/random.hpp's Philox stream and (emulator build) the CPU's dropout_mask,
//   dropout(x, p) and mul(dout, mask) (tensor/dropout.hpp) bit for bit for the same seed and offset, f32 f64 f16 bf16, n not a multiple of 4, p = 0, 0.1, 0.5, 1,
//   inf/NaN/-x elements; the dropped fraction is near p.
// - bias_act_fwd / bias_act_bwd (none, relu, gelu, silu): y, dx, db against kernels/cpu/bias_act.hpp's
//   fast kernel and its double _ref, rows x C from 1 x 1 to 64 x 1000 and 700 x 3, rows = 0 (db = 0).
// Run also with STRATA_EMU_SCHEDULE=reverse (blocks and threads in reverse order).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
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
#include "kernels/cpu/bias_act.hpp"
#include "kernels/cpu/optim_update.hpp"
#include "kernels/cpu/softmax_xent.hpp"
#include "strata/core/random.hpp"
#if !defined(__CUDACC__)
#include "strata/tensor/tensor.hpp"  // before dropout.hpp: alone, it reaches unary.hpp before iter.hpp
#include "strata/tensor/dropout.hpp"
#endif

#include "kernels/cuda/amp.cuh"
#include "kernels/cuda/bias_act.cuh"
#include "kernels/cuda/dropout.cuh"
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
  double worst = 0;  // largest |got - want| / tol
  for (size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]), t = tol(i);
    const bool ok = (std::isnan(g) && std::isnan(w)) || std::abs(g - w) <= t;
    if (!std::isnan(g) && !std::isnan(w) && t > 0) worst = std::max(worst, std::abs(g - w) / t);
    if (!ok && failures++ < 5) FAIL_CHECK(what << "[" << i << "]: got " << std::setprecision(17) << g << ", want " << w << " (tol " << t << ")");
  }
  CHECK(failures == 0);
  if (const char* v = std::getenv("STRATA_TEST_VERBOSE"); v && *v == '1')
    std::printf("%s: worst |error| / tolerance %.3g over %zu values\n", what, worst, got.size());
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

// ---------------------------------------------------------------- dropout

/// got and want hold the same bits (or are both NaN).
template <class H>
void check_bits(const std::vector<H>& got, const H* want, const char* what) {
  int64_t differ = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool same = std::memcmp(&got[i], &want[i], sizeof(H)) == 0 ||
                      (std::isnan(double(got[i])) && std::isnan(double(want[i])));
    if (!same && differ++ < 3) FAIL_CHECK(what << "[" << i << "]: cuda " << double(got[i]) << ", cpu " << double(want[i]));
  }
  CHECK(differ == 0);
}

/// The CPU's dropout as a plain loop over core/random.hpp's stream (tensor/dropout.hpp's recipe):
/// mask_k = u_k < p ? 0 : H(1 / (1 - p)), u_k from word k % 4 of counter first + k / 4.
template <class H>
std::vector<H> dropout_mask_loop(int64_t n, double p, uint64_t seed, uint64_t first) {
  const strata::Generator gen(seed);
  const H keep = H(p < 1 ? 1.0 / (1.0 - p) : 0.0), drop = H(0.0);
  std::vector<H> mask(static_cast<size_t>(n));
  for (int64_t k = 0; k < n; ++k) {
    const uint32_t w = gen.block(first + uint64_t(k / 4))[size_t(k % 4)];
    mask[size_t(k)] = double(strata::uint_to_unit_float(w)) < p ? drop : keep;
  }
  return mask;
}

/// a * m rounded to H, computed in float (double for double), as the CPU's mul.
template <class H>
std::vector<H> times(const std::vector<H>& a, const std::vector<H>& m) {
  using A = std::conditional_t<std::is_same_v<H, double>, double, float>;
  std::vector<H> out(a.size());
  for (size_t i = 0; i < a.size(); ++i) out[i] = H(A(a[i]) * A(m[i]));
  return out;
}

template <class S>
void check_dropout(int64_t n, double p, uint64_t seed, uint64_t first) {
  using H = host_t<S>;
  INFO("dropout " << sizeof(S) * 8 << "-bit n=" << n << " p=" << p << " seed=" << seed << " offset=" << first);
  std::vector<H> x = randn<H>(size_t(n), 2, 0, seed), dout = randn<H>(size_t(n), 1, 0, seed + 1);
  if (n > 10) x[3] = H(INFINITY), x[7] = H(NAN), x[9] = H(-0.0);
  const std::vector<H> mask_ref = dropout_mask_loop<H>(n, p, seed, first);
  const std::vector<H> y_ref = times(x, mask_ref), dx_ref = times(dout, mask_ref);

  const size_t nn = size_t(n);
  DeviceArray<S> x_d(x), dout_d(dout), y_d(nn), mask_d(nn), mask2_d(nn), dx_d(nn);
  cuda::dropout_fwd<S>(x_d.get(), y_d.get(), mask_d.get(), n, p, seed, first);
  cuda::dropout_bwd<S>(dout_d.get(), dx_d.get(), n, p, seed, first);
  cuda::dropout_mask<S>(mask2_d.get(), n, p, seed, first);
  const std::vector<H> mask = mask_d.template host<H>(), y = y_d.template host<H>(), dx = dx_d.template host<H>();
  check_bits(mask, mask_ref.data(), "mask vs loop");
  check_bits(mask2_d.template host<H>(), mask_ref.data(), "dropout_mask vs loop");
  check_bits(y, y_ref.data(), "y vs loop");
  check_bits(dx, dx_ref.data(), "dx vs loop");
#if !defined(__CUDACC__)  // the Tensor ops themselves (the emulator build only: keeps the nvcc test build small)
  {
    const strata::Tensor xt = strata::from_vector(x), dt = strata::from_vector(dout);
    strata::manual_seed(seed);  // dropout draws from the default generator, moved to `first`
    strata::default_generator().reserve(first);
    const strata::Tensor y_cpu = strata::dropout(xt, p, true);
    strata::Generator gen(seed);
    gen.reserve(first);
    const strata::Tensor mask_cpu = strata::dropout_mask({n}, strata::dtype_v<H>, p, gen);
    check_bits(mask, mask_cpu.data_ptr<H>(), "mask vs dropout_mask");
    check_bits(y, (p == 0 ? xt : y_cpu).data_ptr<H>(), "y vs dropout");
    check_bits(dx, strata::mul(dt, mask_cpu).data_ptr<H>(), "dx vs mul(dout, mask)");
  }
#endif
  if (n >= 10000) {
    int64_t dropped = 0;
    for (const H m : mask) dropped += double(m) == 0;
    CHECK(std::abs(double(dropped) / double(n) - p) < 0.01);
  }
}

template <class S>
void dropout_cases() {
  uint64_t seed = 7;
  for (const int64_t n : {1, 3, 4, 5, 1001, 40003})
    for (const double p : {0.1, 0.5}) {
      ++seed;
      check_dropout<S>(n, p, seed, seed % 3 == 0 ? 0 : 12345);
    }
  check_dropout<S>(37, 0.0, ++seed, 1);
  check_dropout<S>(37, 1.0, ++seed, 2);
  check_dropout<S>(101, 0.3, 0xFFFFFFFFFFFFull, (uint64_t(1) << 32) - 5);  // the counter's high word changes
}

// ---------------------------------------------------------------- bias_act

template <class S>
void check_bias_act(int64_t rows, int64_t C, cpu::BiasAct act, uint64_t seed) {
  using H = host_t<S>;
  using A = cuda::compute_type<S>;
  INFO("bias_act " << sizeof(S) * 8 << "-bit rows=" << rows << " C=" << C << " act=" << int(act));
  const size_t n = size_t(rows * C), nc = size_t(C);
  const std::vector<H> x = randn<H>(n, 2, 0, seed), b = randn<H>(nc, 1, 0, seed + 1), dout = randn<H>(n, 1, 0, seed + 2);
  std::vector<H> y_ref(n), dx_ref(n), db_ref(nc), y_cpu(n), dx_cpu(n), db_cpu(nc);
  cpu::bias_act_fwd_ref<H>(x.data(), b.data(), y_ref.data(), rows, C, act);
  cpu::bias_act_bwd_ref<H>(dout.data(), x.data(), b.data(), dx_ref.data(), db_ref.data(), rows, C, act);
  cpu::bias_act_fwd<H>(x.data(), b.data(), y_cpu.data(), rows, C, act);
  cpu::bias_act_bwd<H>(dout.data(), x.data(), b.data(), dx_cpu.data(), db_cpu.data(), rows, C, act);

  DeviceArray<S> x_d(x), b_d(b), dout_d(dout), y_d(n), dx_d(n), db_d(nc);
  cuda::bias_act_fwd<S>(x_d.get(), b_d.get(), y_d.get(), rows, C, act);
  cuda::bias_act_bwd<S>(dout_d.get(), x_d.get(), b_d.get(), dx_d.get(), db_d.get(), rows, C, act);
  const std::vector<H> y = y_d.template host<H>(), dx = dx_d.template host<H>(), db = db_d.template host<H>();

  // a few ulp of A per unit of |z| (and |dout|), plus one rounding to S; db: per unit of sum |dz|
  const double ea = eps_of<A>() * 16, es = std::is_same_v<S, A> ? 0.0 : eps_of<S>() * 2;
  const double tiny = std::is_same_v<S, cuda::f16_t> ? 0x1p-24 : 0.0;
  const auto z = [&](size_t i) { return std::abs(double(x[i]) + double(b[i % nc])); };
  std::vector<double> abs_sum(nc, 0.0);
  for (size_t i = 0; i < n; ++i) abs_sum[i % nc] += std::abs(double(dx_ref[i]));
  const auto y_tol = [&](size_t i) { return ea * (1 + z(i)) + es * std::abs(double(y_ref[i])) + tiny; };
  const auto dx_tol = [&](size_t i) {
    return ea * std::abs(double(dout[i])) * (1 + z(i)) + es * std::abs(double(dx_ref[i])) + tiny;
  };
  const auto db_tol = [&](size_t c) {
    return ea * (1 + abs_sum[c]) + (es ? es * (std::abs(double(db_ref[c])) + abs_sum[c]) : 0.0) + tiny;
  };
  check_close(y, y_ref, y_tol, "y vs ref");
  check_close(dx, dx_ref, dx_tol, "dx vs ref");
  check_close(db, db_ref, db_tol, "db vs ref");
  check_close(y, y_cpu, [&](size_t i) { return 2 * y_tol(i); }, "y vs cpu");
  check_close(dx, dx_cpu, [&](size_t i) { return 2 * dx_tol(i); }, "dx vs cpu");
  check_close(db, db_cpu, [&](size_t c) { return 2 * db_tol(c); }, "db vs cpu");
}

template <class S>
void bias_act_cases() {
  uint64_t seed = 300;
  for (const auto act : {cpu::BiasAct::none, cpu::BiasAct::relu, cpu::BiasAct::gelu, cpu::BiasAct::silu})
    for (const auto& [rows, C] : std::vector<std::pair<int64_t, int64_t>>{{1, 1}, {5, 7}, {33, 40}, {700, 3}, {64, 1000}})
      check_bias_act<S>(rows, C, act, seed += 3);
  // no rows: db = 0
  DeviceArray<S> db(5);
  const std::vector<host_t<S>> ones(5, host_t<S>(1.0));
  cuda::memcpy(db.get(), ones.data(), 5 * sizeof(S));
  cuda::bias_act_bwd<S>(nullptr, nullptr, nullptr, nullptr, db.get(), 0, 5, cpu::BiasAct::gelu);
  for (const auto v : db.template host<host_t<S>>()) CHECK(double(v) == 0.0);
}

}  // namespace test_cuda_fused

TEST_CASE("cuda fused: bias_act fwd/bwd equals the CPU kernel and the reference", "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  SECTION("f32") { bias_act_cases<float>(); }
  SECTION("f64") { bias_act_cases<double>(); }
  SECTION("f16") { bias_act_cases<cuda::f16_t>(); }
  SECTION("bf16") { bias_act_cases<cuda::bf16_t>(); }
  DeviceArray<float> p(4);
  CHECK_THROWS_WITH(cuda::bias_act_fwd<float>(p.get(), p.get(), p.get(), 2, 2, cpu::BiasAct(7)),
                    Catch::Contains("bias_act_fwd") && Catch::Contains("activation 7"));
  CHECK_THROWS_WITH(cuda::bias_act_bwd<float>(p.get(), p.get(), p.get(), p.get(), nullptr, 2, 2, cpu::BiasAct::relu),
                    Catch::Contains("bias_act_bwd") && Catch::Contains("null"));
}

TEST_CASE("cuda fused: dropout's mask, forward and backward equal the CPU's for the same seed", "[cuda][fused][gpu]") {
  using namespace test_cuda_fused;
  SECTION("f32") { dropout_cases<float>(); }
  SECTION("f64") { dropout_cases<double>(); }
  SECTION("f16") { dropout_cases<cuda::f16_t>(); }
  SECTION("bf16") { dropout_cases<cuda::bf16_t>(); }
  CHECK_THROWS_WITH(cuda::dropout_fwd<float>(nullptr, nullptr, nullptr, 3, 0.5, 1, 0), Catch::Contains("dropout_fwd"));
  DeviceArray<float> mask(3);
  CHECK_THROWS_WITH(cuda::dropout_mask<float>(mask.get(), 3, 1.5, 1, 0), Catch::Contains("dropout_mask") &&
                    Catch::Contains("p = 1.5"));
}

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
  {  // a target outside [0, C) is not read: its loss is NaN, the other rows are right
    const std::vector<float> x = {1, 2, 3, 0, 0, 0};
    const std::vector<int64_t> y = {3, 1};
    DeviceArray<float> x_d(x), loss_d(2), lse_d(2);
    DeviceArray<int64_t> y_d(y);
    cuda::softmax_xent_fwd<float>(x_d.get(), y_d.get(), loss_d.get(), lse_d.get(), 2, 3, 0.0);
    const std::vector<float> loss = loss_d.host();
    CHECK(std::isnan(loss[0]));
    CHECK(loss[1] == Approx(std::log(3.0)).epsilon(1e-6));
  }
  CHECK_THROWS_WITH(cuda::softmax_xent_fwd<float>(nullptr, nullptr, nullptr, nullptr, 2, 0, 0.0),
                    Catch::Contains("softmax_xent_fwd") && Catch::Contains("C = 0"));
  CHECK_THROWS_WITH(cuda::softmax_xent_bwd<float>(nullptr, nullptr, nullptr, nullptr, nullptr, 2, 3, 1.5),
                    Catch::Contains("softmax_xent_bwd") && Catch::Contains("eps = 1.5"));
  CHECK_THROWS_WITH(cuda::softmax_xent_fwd<float>(nullptr, nullptr, nullptr, nullptr, 2, 3, 0.0),
                    Catch::Contains("softmax_xent_fwd") && Catch::Contains("null"));
}
