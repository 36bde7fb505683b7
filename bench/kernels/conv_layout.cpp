// The conv layout lab: the direct conv's NCHW <-> NHWC transposes (kernels/cpu/conv_direct.hpp:
// conv_to_nhwc, conv_from_nhwc), f32, 1 thread, in GB/s (bytes read + written).
//
// As conv2d runs them in the flagship CNN's training (batch 256, 2 threads: conv_plan's chunks are
// 2 images at 28x28, 6 at 14x14): the source of to_nhwc is a chunk of a whole activation (25.7 MB
// for [256, 32, 28, 28]: L3 or memory), its destination a per-thread scratch of the chunk (L2);
// from_nhwc reads the scratch and writes a chunk of the whole output. Cases per shape:
//   to      conv_to_nhwc over all chunks of the batch (x and dout)
//   to_bf16 the same with bf16 rounding (autocast)
//   from    conv_from_nhwc over all chunks (out and dx)
//   l2_to / l2_from  the first chunk over and over (both sides in L2)
//   memcpy  the same bytes as one copy per chunk (the rate to hold them against)
// Versions, old and new alternating in one process, medians of per-round ratios to v0:
//   v0 avx2   8 x 8 AVX2 blocks (unpack, shuffle, 128-bit permute), scalar tails (14x14: 196 pixels
//             = 24 blocks + 4)
//   v1 avx512 (shipped) 16 x 16 blocks in zmm registers (conv_transpose16: 64 shuffles), masked
//             loads and stores for partial blocks, each row stream prefetched 2 lines ahead
//             (kConvTransposeAhead; for writing in conv_from_nhwc). 2026-11-22, Xeon (Ice Lake SP),
//             1 thread, load ~2, 15 rounds, GB/s v0 -> v1 (median ratio), memcpy alongside:
//               [256, 32, 28, 28] nb 2  to 10.7 -> 19.6 (1.75x), bf16 5.0 -> 18.2, from 6.0 -> 19.1
//                                       (memcpy 16.5-17.3); L2: to 1.32x, bf16 1.57x, from 1.35x
//               [256, 64, 14, 14] nb 6  to 7.9 -> 16.4 (1.86x), bf16 3.9 -> 15.6, from 6.3 -> 11.2
//                                       (1.75x; memcpy 16.6-17.4); L2: 1.34x / 1.31x / 1.43x
//             (L2 memcpy ~75-85 GB/s, the transposes ~30-40: shuffle- and split-line bound.) Without
//             the prefetches the 16 x 16 blocks were only 1.1-1.3x from memory; 4 lines ahead about
//             the same as 2, 8 lines slower; before conv_transpose16 was always_inline, GCC passed
//             the 16 registers through the stack and v1 was no faster than v0.
//             In the model: the cnn's three direct conv layers (32->32 at 28x28, 32->64 and 64->64 at
//             14x14, 3x3, batch 256, 2 threads), forward + backward through conv2d_fwd_kernel /
//             conv2d_bwd_kernel, old and new transposes alternating in one process (a flag in a scratch
//             copy of the header): 1.09x (per-round ratio IQR 1.04-1.15; 1.05-1.12x per layer; 2 runs,
//             load ~4.5). perf of bench_e2e_train --model cnn (20 batches, 2 runs): the transposes'
//             CPU time 1.9-2.0 s -> 1.1-1.2 s of ~15 s (12.3% -> 8.2% of samples).
//   tried, dropped: non-temporal stores in conv_from_nhwc where HW is a multiple of 16 (28 x 28):
//             from memory 15.6 -> 22.4 GB/s, but 0.9x when the output stays in L2, the next op (batch
//             norm) would read the output from memory, and the gain is ~1 ms per pass at batch 256.
//             The 128-bit lane stages done by the loads (a 128-bit load and 3 vinsertf32x4 from memory
//             per register, ports 0 and 5, then in-lane 4 x 4 transposes: 32 port-5 shuffles instead
//             of 64): no faster in L2 or from memory (2 x 9 rounds against v0, binaries alternating).
//             Keeping the forward's NHWC x for dw (no third transpose per conv in training): the
//             forward would write a whole NHWC activation to memory instead of an L2 scratch per
//             chunk, about the traffic the backward's transpose saves; not done.
// Every version is checked bit-exact against a plain loop (tails, bf16 rounding) before timing.
// Build: the bench target bench_conv_layout (cmake -DSTRATA_BUILD_BENCH=ON); run:
//   build/bench/bench_conv_layout [rounds]
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/conv_direct.hpp"

namespace {

using namespace strata::cpu;
using detail::conv_scratch;

// ------------------------------------------------------------------ v0: the AVX2 8 x 8 blocks
namespace v0 {

template <class T, bool Round = false>
void block(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols, const T* add) {
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    if (rows == 8 && cols == 8) {
      auto row = [&](int64_t c) {
        const __m256 v = _mm256_loadu_ps(src + c * ss);
        if constexpr (Round) return round_to_bf16_ps(v);
        else return v;
      };
      const __m256 r0 = row(0), r1 = row(1), r2 = row(2), r3 = row(3), r4 = row(4), r5 = row(5), r6 = row(6),
                   r7 = row(7);
      const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1), t2 = _mm256_unpacklo_ps(r2, r3),
                   t3 = _mm256_unpackhi_ps(r2, r3), t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5),
                   t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE),
                   u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE),
                   u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE),
                   u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      __m256 o[8] = {_mm256_permute2f128_ps(u0, u4, 0x20), _mm256_permute2f128_ps(u1, u5, 0x20),
                     _mm256_permute2f128_ps(u2, u6, 0x20), _mm256_permute2f128_ps(u3, u7, 0x20),
                     _mm256_permute2f128_ps(u0, u4, 0x31), _mm256_permute2f128_ps(u1, u5, 0x31),
                     _mm256_permute2f128_ps(u2, u6, 0x31), _mm256_permute2f128_ps(u3, u7, 0x31)};
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + k * ds, add ? _mm256_add_ps(o[k], _mm256_set1_ps(add[k])) : o[k]);
      return;
    }
  }
#endif
  for (int64_t k = 0; k < cols; ++k)
    for (int64_t c = 0; c < rows; ++c) {
      T v = src[c * ss + k];
      if constexpr (Round) v = round_to_bf16(v);
      dst[k * ds + c] = add ? v + add[k] : v;
    }
}

template <class T>
void to_nhwc(const T* x, const std::array<int64_t, 4>& xs, int64_t nb, int64_t C, int64_t H, int64_t W, T* xh,
             int64_t ld, bool round = false) {
  constexpr int64_t kBlock = 8;
  const bool flat = xs[3] == 1 && xs[2] == W;
  const int64_t runs = flat ? 1 : H, len = flat ? H * W : W;
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t h = 0; h < runs; ++h)
      for (int64_t w0 = 0; w0 < len; w0 += kBlock) {
        const int64_t wn = std::min(kBlock, len - w0);
        T* dst = xh + ((n * H + h) * W + w0) * ld;
        const T* src = x + n * xs[0] + h * xs[2] + w0 * xs[3];
        if (xs[3] == 1)
          for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
            const int64_t cn = std::min(kBlock, C - c0);
            if (round) block<T, true>(src + c0 * xs[1], xs[1], dst + c0, ld, cn, wn, nullptr);
            else block<T>(src + c0 * xs[1], xs[1], dst + c0, ld, cn, wn, nullptr);
          }
        else
          for (int64_t c = 0; c < C; ++c)
            for (int64_t k = 0; k < wn; ++k) {
              const T v = src[c * xs[1] + k * xs[3]];
              dst[k * ld + c] = round ? round_to_bf16(v) : v;
            }
      }
}

template <class T>
void from_nhwc(const T* xh, int64_t ld, int64_t nb, int64_t C, int64_t HW, const T* bias, T* out) {
  constexpr int64_t kBlock = 8;
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t k0 = 0; k0 < HW; k0 += kBlock)
      for (int64_t c0 = 0; c0 < C; c0 += kBlock)
        block<T>(xh + (n * HW + k0) * ld + c0, ld, out + (n * C + c0) * HW + k0, HW, std::min(kBlock, HW - k0),
                 std::min(kBlock, C - c0), bias ? bias + c0 : nullptr);
}

}  // namespace v0

// ------------------------------------------------------------------ checks

using ToFn = std::function<void(const float*, const std::array<int64_t, 4>&, int64_t, int64_t, int64_t, int64_t,
                                float*, int64_t, bool)>;
using FromFn = std::function<void(const float*, int64_t, int64_t, int64_t, int64_t, const float*, float*)>;

/// Bit-exact checks of to/from against plain loops on odd shapes (tails), strided x, bf16 rounding.
bool check(const char* name, const ToFn& to, const FromFn& from) {
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> d(-3, 3);
  bool ok = true;
  for (auto [nb, C, H, W] : std::vector<std::array<int64_t, 4>>{
           {2, 32, 28, 28}, {3, 64, 14, 14}, {2, 5, 3, 7}, {1, 17, 5, 9}, {2, 40, 7, 7}, {1, 16, 4, 4}, {2, 33, 6, 11}}) {
    for (int mode = 0; mode < 3; ++mode) {  // 0: contiguous, 1: rows padded (xs[2] > W), 2: round
      const int64_t rowpad = mode == 1 ? 3 : 0, ws = W + rowpad, ld = C + (mode == 1 ? 5 : 0);
      const std::array<int64_t, 4> xs{C * H * ws + 1, H * ws, ws, 1};
      std::vector<float> x(size_t(nb * xs[0] + 16)), xh(size_t(nb * H * W * ld), -1.f), want(xh.size(), -1.f);
      for (float& v : x) v = d(gen);
      const bool round = mode == 2;
      for (int64_t n = 0; n < nb; ++n)
        for (int64_t c = 0; c < C; ++c)
          for (int64_t h = 0; h < H; ++h)
            for (int64_t w = 0; w < W; ++w) {
              const float v = x[size_t(n * xs[0] + c * xs[1] + h * xs[2] + w)];
              want[size_t(((n * H + h) * W + w) * ld + c)] = round ? round_to_bf16(v) : v;
            }
      to(x.data(), xs, nb, C, H, W, xh.data(), ld, round);
      if (std::memcmp(xh.data(), want.data(), xh.size() * sizeof(float)) != 0) {
        std::printf("%s: to_nhwc wrong at nb %ld C %ld %ldx%ld mode %d\n", name, nb, C, H, W, mode);
        ok = false;
      }
      // from: out[n][c][k] = xh[n][k][c] + bias[c]
      std::vector<float> bias(static_cast<size_t>(C)), out(static_cast<size_t>(nb * C * H * W)), wout(out.size());
      for (float& v : bias) v = d(gen);
      for (int b = 0; b < 2; ++b) {
        const float* bp = b ? bias.data() : nullptr;
        for (int64_t n = 0; n < nb; ++n)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t k = 0; k < H * W; ++k)
              wout[size_t((n * C + c) * H * W + k)] = xh[size_t((n * H * W + k) * ld + c)] + (bp ? bp[c] : 0.f);
        from(xh.data(), ld, nb, C, H * W, bp, out.data());
        if (std::memcmp(out.data(), wout.data(), out.size() * sizeof(float)) != 0) {
          std::printf("%s: from_nhwc wrong at nb %ld C %ld %ldx%ld mode %d bias %d\n", name, nb, C, H, W, mode, b);
          ok = false;
        }
      }
    }
  }
  return ok;
}

// ------------------------------------------------------------------ timing

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

/// A 64-byte aligned float buffer, as strata's tensor storage (core/storage.hpp).
struct Buf {
  float* p;
  explicit Buf(int64_t n) : p(static_cast<float*>(std::aligned_alloc(64, (size_t(n) * 4 + 63) / 64 * 64))) {}
  ~Buf() { std::free(p); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  float* data() const { return p; }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct Version {
  const char* name;
  ToFn to;
  FromFn from;
};

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 15;
  const std::vector<Version> versions = {
      {"v0 avx2", v0::to_nhwc<float>, v0::from_nhwc<float>},
      {"shipped", [](auto... a) { detail::conv_to_nhwc<float>(a...); },
       [](auto... a) { detail::conv_from_nhwc<float>(a...); }},
  };
  bool ok = true;
  for (const Version& v : versions) ok = check(v.name, v.to, v.from) && ok;
  if (!ok) return 1;
  std::printf("checks passed (bit-exact, tails, strided, bf16)\n");

  struct Shape {
    int64_t B, C, H, nb;
  };
  for (const Shape s : {Shape{256, 32, 28, 2}, Shape{256, 64, 14, 6}, Shape{256, 32, 14, 6}}) {
    const int64_t HW = s.H * s.H, img = s.C * HW, chunks = (s.B + s.nb - 1) / s.nb;
    Buf big(s.B * img), out(s.B * img);
    std::mt19937 gen(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (int64_t i = 0; i < s.B * img; ++i) big.p[i] = d(gen), out.p[i] = 0;
    float* scratch = conv_scratch<float>(0, s.nb * img);
    const std::array<int64_t, 4> xs{img, HW, s.H, 1};
    const double bytes = 2.0 * 4.0 * double(s.B * img);
    // case(version, l2): the time of one pass over the batch (or chunks x the first chunk)
    using Case = std::function<void(const Version&, bool)>;
    const std::vector<std::pair<std::string, Case>> cases = {
        {"to", [&](const Version& v, bool l2) {
           for (int64_t c = 0; c < chunks; ++c) {
             const int64_t n0 = l2 ? 0 : c * s.nb, nb = std::min(s.nb, s.B - n0);
             v.to(big.data() + n0 * img, xs, nb, s.C, s.H, s.H, scratch, s.C, false);
           }
         }},
        {"to_bf16", [&](const Version& v, bool l2) {
           for (int64_t c = 0; c < chunks; ++c) {
             const int64_t n0 = l2 ? 0 : c * s.nb, nb = std::min(s.nb, s.B - n0);
             v.to(big.data() + n0 * img, xs, nb, s.C, s.H, s.H, scratch, s.C, true);
           }
         }},
        {"from", [&](const Version& v, bool l2) {
           for (int64_t c = 0; c < chunks; ++c) {
             const int64_t n0 = l2 ? 0 : c * s.nb, nb = std::min(s.nb, s.B - n0);
             v.from(scratch, s.C, nb, s.C, HW, nullptr, out.data() + n0 * img);
           }
         }},
    };
    for (const bool l2 : {false, true}) {
      for (const auto& [cname, run] : cases) {
        // per round: memcpy, then every version, in an order that rotates
        std::vector<std::vector<double>> t(versions.size() + 1);
        for (int r = 0; r < rounds + 1; ++r) {
          for (size_t k = 0; k <= versions.size(); ++k) {
            const size_t i = (k + size_t(r)) % (versions.size() + 1);
            const double t0 = now();
            if (i == versions.size())
              for (int64_t c = 0; c < chunks; ++c) {
                const int64_t n0 = l2 ? 0 : c * s.nb, nb = std::min(s.nb, s.B - n0);
                if (cname == "from") std::memcpy(out.data() + n0 * img, scratch, size_t(nb * img) * 4);
                else std::memcpy(scratch, big.data() + n0 * img, size_t(nb * img) * 4);
              }
            else
              run(versions[i], l2);
            if (r > 0) t[i].push_back(now() - t0);  // round 0 warms up
          }
        }
        std::printf("[%ld, %ld, %ld, %ld] nb %ld %-3s %-8s memcpy %5.1f GB/s |", s.B, s.C, s.H, s.H, s.nb,
                    l2 ? "l2" : "", cname.c_str(), bytes / median(t.back()) * 1e-9);
        for (size_t i = 0; i < versions.size(); ++i) {
          std::vector<double> ratio;
          for (size_t r = 0; r < t[i].size(); ++r) ratio.push_back(t[0][r] / t[i][r]);
          std::printf(" %s %5.1f GB/s (x%.2f)", versions[i].name, bytes / median(t[i]) * 1e-9, median(ratio));
        }
        std::printf("\n");
      }
    }
  }
  return 0;
}
