// Direct 2-D convolution in channels-last (NHWC) layout: conv2d's fast path for groups == 1.
//
// Idea (oneDNN's AVX2 direct convolution; Georganas et al., "Anatomy of High-Performance Deep
// Learning Convolutions on SIMD Architectures", SC 2018): a register tile of MR output pixels x NR
// output channels is accumulated straight from the input, with no im2col buffer and no packing of
// the pixel operand. For each tap (i, j) and input channel c it takes MR input values (one per
// pixel, broadcast) times one NR-wide row of the packed weights: the micro-kernel of cpu::gemm
// (kernels/cpu/gemm.hpp, same MR x NR tile), fed by pointers. In NHWC a pixel's channels are
// contiguous, so each of the MR pixels is one pointer walking c; a pixel whose tap falls in the
// padding points at a row of zeros, and a tap that is padding for all MR pixels is skipped.
// Pixels are numbered across the images of a chunk, so a 2x2 map still fills a 6-pixel tile, and
// they are visited grouped by which taps are valid for them (border rows and columns, stride
// phases), so that a tile's pixels share their taps: padding taps cost nothing, which matters on
// small maps (a 4x4 map with a 3x3 kernel has 31% padding taps).
//   forward: out_h[s][o] = sum_{t, c} x_h[pix(s, t)][c] wf[t][c][o]
//   dx:      dx_h[q][c]  = sum_{t, o} dout_h[pix'(q, t)][o] wd[t][o][c]: the same tile kernel, with
//            pix'(q, t) the output pixel that read input pixel q through tap t, when there is one
//            ((ih + ph - i dh) a multiple of sh and in range, likewise w).
//   dw:      dw_h[t][c][o] = sum_s x_h[pix(s, t)][c] dout_h[s][o]: a tile of MR input channels x
//            NR output channels, reduced over the pixels s whose tap t is inside the image (per
//            output row one run of consecutive pixels; MR broadcasts from one pointer per pixel).
// NCHW tensors are transposed to NHWC per chunk of images (x, dout) and the results back (out,
// dx): O(activations) copies against O(activations x channels x taps) multiply-adds. Channels-last
// tensors are read and written in place (out, dx: when the channels are a multiple of NR, the
// tiles' store width; else through a scratch copied row by row). The forward tiles start from the
// bias and apply ReLU in their store (the epilogue).
// Register tiles (MR, NR, Vec width) come from ConvBlocking<T>: AVX2 6 x 16 (f32), 6 x 8 (f64); they
// start as GemmBlocking<T>'s and are tuned apart from it (a conv's K is taps x channels, often small).
// AVX-512: 14 x 32 (f32), and 12 x 16 for outputs of one vector (conv_direct_sweep_for).
// Assumes groups == 1; P is cpu::Conv2dParams (kernels/cpu/conv.hpp), a template parameter so
// that this header stands alone. The launchers in kernels/cpu/conv.hpp choose this path.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu::detail {

/// A per-thread scratch buffer that only grows (slots 0..3), 64-byte aligned.
template <class T>
T* conv_scratch(int slot, int64_t n) {
  struct Buf {
    T* p = nullptr;
    int64_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[4];
  Buf& b = bufs[slot];
  if (b.n < n) {
    std::free(b.p);
    b.p = static_cast<T*>(std::aligned_alloc(64, (size_t(n) * sizeof(T) + 63) / 64 * 64));
    b.n = b.p ? n : 0;
    if (!b.p) throw std::bad_alloc();
  }
  return b.p;
}

/// The output columns z in [lo, hi) whose tap at input column z s - pad + off lies inside [0, W).
inline void conv_valid_range(int64_t OW, int64_t W, int64_t s, int64_t pad, int64_t off, int64_t& lo, int64_t& hi) {
  const int64_t first = off - pad;  // input column of output column 0
  lo = first >= 0 ? 0 : (-first + s - 1) / s;
  hi = W - 1 - first < 0 ? 0 : std::min(OW, (W - 1 - first) / s + 1);
  lo = std::min(lo, hi);
}

inline int64_t conv_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

/// The direct conv's register tile: MR pixels x NR output channels (NV vectors of VS lanes), the
/// accumulators plus NV weight vectors and one broadcast within the vector registers. dw's tile
/// (conv_dw_mr) is MR input channels x NR output channels, or on AVX-512 f32: DW_MR = 8 channels
/// (16 accumulators still cover the FMA latency) for the narrow layers that 14 would round up by
/// more than 1/8 (32 channels: 42), and DW64_MR = 6 channels x 64 outputs (DW64_NV = 4 vectors)
/// where the output channels come in 64s.
template <class T>
struct ConvBlocking {
  using V = Vec<T>;
  static constexpr int VS = V::size;
  static constexpr bool wide = VS * sizeof(T) >= 64;  // 512-bit registers (32 of them)
  static constexpr int NV = VS == 1 ? 4 : 2;
  static constexpr int MR = VS == 1 ? 4 : (wide ? 14 : 6);
  static constexpr int NR = NV * VS;
  static constexpr bool dw64 = wide && sizeof(T) == 4;  // the 6 x 64 dw tile exists
  static constexpr int DW_MR = dw64 ? 8 : MR;
  static constexpr int DW64_MR = 6, DW64_NV = 4;
  static constexpr int NARROW_MR = 12;  // AVX-512: pixels of the one-vector tile (conv_direct_sweep_for)
  static_assert(VS == 1 || MR * NV + NV + 1 <= (wide ? 32 : 16), "conv tile must fit the vector registers");
  static_assert(!wide || NARROW_MR + 2 <= 32, "the narrow tile must fit the vector registers");
};

/// conv_direct_sweep's groups of tiles: at most this many tiles, and about this many bytes of their
/// input rows; weights above kConvL2Bytes (a core's L2) take larger groups.
inline constexpr int64_t kConvMaxTiles = 32;
inline constexpr int64_t kConvGroupBytes = int64_t(384) << 10;
inline constexpr int64_t kConvL2Bytes = int64_t(512) << 10;

// ================================================================================ layouts

#if defined(__AVX512F__)
/// Transposes 16 x 16 floats in registers: r[k] lane c = r[c] lane k before. unpacklo/hi_ps,
/// unpacklo/hi_pd, then two rounds of 128-bit lane shuffles (shuffle_f32x4): 64 shuffles for 256
/// values (the AVX2 8 x 8 block takes 24 for 64).
[[gnu::always_inline]] inline void conv_transpose16(__m512 (&r)[16]) {
  __m512 t[16];
  STRATA_UNROLL(8)
  for (int i = 0; i < 16; i += 2) t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  // r[4 i + j] lane L: column 4 L + j of rows 4 i .. 4 i + 3
  STRATA_UNROLL(4)
  for (int i = 0; i < 16; i += 4) {
    const __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 1]), c = _mm512_castps_pd(t[i + 2]),
                  d = _mm512_castps_pd(t[i + 3]);
    r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c)), r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d)), r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  STRATA_UNROLL(4)
  for (int j = 0; j < 4; ++j) {
    t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88), t[j + 4] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xDD);
    t[j + 8] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88), t[j + 12] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xDD);
  }
  STRATA_UNROLL(4)
  for (int j = 0; j < 4; ++j) {
    r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88), r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xDD);
    r[j + 4] = _mm512_shuffle_f32x4(t[j + 4], t[j + 12], 0x88), r[j + 12] = _mm512_shuffle_f32x4(t[j + 4], t[j + 12], 0xDD);
  }
}
#endif

/// Rows x columns of conv_transpose_block's vector blocks: 16 x 16 floats on AVX-512, else 8 x 8.
template <class T>
inline constexpr int64_t kConvTransposeBlock =
#if defined(__AVX512F__)
    std::is_same_v<T, float> ? 16 : 8;
#else
    8;
#endif

/// Elements ahead that the AVX-512 transposes prefetch along each of their 16-64 row streams (a
/// channel plane, 3 KB at 28 x 28): 2 lines. The hardware prefetchers alone left conv_to_nhwc and
/// conv_from_nhwc on a whole activation (25.7 MB, from memory) at 13-14 GB/s against a memcpy's
/// 17-20; with it 18-21 (bench/kernels/conv_layout.cpp; 4 lines: about the same, 8: slower).
inline constexpr int64_t kConvTransposeAhead = 32;

/// dst[k ds + c] = src[c ss + k] (+ add[k] when add is not null) for c < rows, k < cols: a block
/// transpose. AVX-512, floats: any block up to 16 x 16 in registers (conv_transpose16), partial
/// ones through masked loads and stores (14 x 14 maps: 196 pixels = 12 blocks + 4). AVX2: full
/// 8 x 8 float blocks through shuffles (unpack, shuffle, 128-bit permute: the usual 24-instruction
/// transpose); other blocks through a scalar loop. Round: each src value rounded to bf16
/// (round_to_bf16, autocast's operands) on the way.
template <class T, bool Round = false>
void conv_transpose_block(const T* src, int64_t ss, T* dst, int64_t ds, int64_t rows, int64_t cols, const T* add) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    auto load = [&](__m512& v, const float* s, __mmask16 m) {
      v = _mm512_maskz_loadu_ps(m, s);
      if constexpr (Round) v = round_to_bf16_ps(v);
    };
    __m512 r[16];
    if (rows == 16 && cols == 16) {
      STRATA_UNROLL(16)
      for (int c = 0; c < 16; ++c) load(r[c], src + c * ss, 0xFFFF);
      conv_transpose16(r);
      STRATA_UNROLL(16)
      for (int k = 0; k < 16; ++k) _mm512_storeu_ps(dst + k * ds, add ? _mm512_add_ps(r[k], _mm512_set1_ps(add[k])) : r[k]);
      return;
    }
    if (rows <= 16 && cols <= 16) {  // a partial block: rows past `rows` are zeros, never stored
      const __mmask16 lm = __mmask16((1u << cols) - 1), sm = __mmask16((1u << rows) - 1);
      STRATA_UNROLL(16)
      for (int c = 0; c < 16; ++c)
        if (c < rows) load(r[c], src + c * ss, lm);
        else r[c] = _mm512_setzero_ps();
      conv_transpose16(r);
      for (int k = 0; k < cols; ++k)
        _mm512_mask_storeu_ps(dst + k * ds, sm, add ? _mm512_add_ps(r[k], _mm512_set1_ps(add[k])) : r[k]);
      return;
    }
  }
#elif defined(__AVX2__)
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
      STRATA_UNROLL(8)
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

/// xh[n][h][w][0, C) = x[n][c][h][w] for nb images (x: any strides xs); xh rows are ld apart.
/// round: each value rounded to bf16 (autocast's operands, see conv_transpose_block).
template <class T>
void conv_to_nhwc(const T* x, const std::array<int64_t, 4>& xs, int64_t nb, int64_t C, int64_t H, int64_t W, T* xh,
                  int64_t ld, bool round = false) {
  constexpr int64_t kBlock = kConvTransposeBlock<T>;  // channels x pixels at a time
  // contiguous planes are one run of H W pixels; otherwise each row is a run
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
            if constexpr (kBlock == 16)
              for (int64_t c = 0; c < cn; ++c) __builtin_prefetch(src + (c0 + c) * xs[1] + kConvTransposeAhead);
            if (round) conv_transpose_block<T, true>(src + c0 * xs[1], xs[1], dst + c0, ld, cn, wn, nullptr);
            else conv_transpose_block<T>(src + c0 * xs[1], xs[1], dst + c0, ld, cn, wn, nullptr);
          }
        else
          for (int64_t c = 0; c < C; ++c)
            for (int64_t k = 0; k < wn; ++k) {
              const T v = src[c * xs[1] + k * xs[3]];
              dst[k * ld + c] = round ? round_to_bf16(v) : v;
            }
      }
}

/// out[n][c][k] = xh[n][k][c] + (bias ? bias[c] : 0) for c < C, k < HW; xh rows are ld apart.
template <class T>
void conv_from_nhwc(const T* xh, int64_t ld, int64_t nb, int64_t C, int64_t HW, const T* bias, T* out) {
  constexpr int64_t kBlock = kConvTransposeBlock<T>;
  for (int64_t n = 0; n < nb; ++n) {
    for (int64_t k0 = 0; k0 < HW; k0 += kBlock)
      for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
        if constexpr (kBlock == 16)  // for writing
          for (int64_t c = c0; c < std::min(C, c0 + kBlock); ++c)
            __builtin_prefetch(out + (n * C + c) * HW + k0 + kConvTransposeAhead, 1);
        conv_transpose_block<T>(xh + (n * HW + k0) * ld + c0, ld, out + (n * C + c0) * HW + k0, HW,
                                std::min(kBlock, HW - k0), std::min(kBlock, C - c0), bias ? bias + c0 : nullptr);
      }
  }
}

// ================================================================================ micro-kernels

/// out[r][0, N) = bias[0, N) + sum_{t < ntaps} sum_{c < C} a[t][r][c] * w[toff[t] + c NR + (0, N)]
/// for r < mr, N = NV VS (NR, or one vector for the narrow tile), then max(., 0) when relu (the
/// epilogue, in the store). a: ntaps x MR row pointers (C values each), or with xoff MR pointers
/// and a[t][r] = a[r] + xoff[t] (a tile whose pixels use every tap); w + toff[t]: a [C][NR] weight
/// block, bias: N values or null, out: MR rows.
/// On AVX-512 the weight rows are prefetched 16 ahead: blocks of 64+ channels (73 KiB at 64 x 3x3)
/// stream from L2 for every tile, and the hardware prefetchers alone left the tile at 124 GFLOP/s
/// with 128 channels against 144 with 32 (131 with the prefetch; fwd and dx 3-12% faster on
/// ResNet-9's layers and 64 -> 64, 1 thread, in-process A/B; 8 ahead: the same).
template <class T, int MR = ConvBlocking<T>::MR, int NV = ConvBlocking<T>::NV>
void conv_direct_tile(int64_t ntaps, const T* const* a, const T* w, const int64_t* toff, int64_t C,
                      T* const* out, int mr, const T* bias = nullptr, bool relu = false,
                      const int64_t* xoff = nullptr) {
  using Cfg = ConvBlocking<T>;
  using V = Vec<T>;
  constexpr int NR = Cfg::NR, VS = Cfg::VS;  // NR: the packed weight rows' stride (NV VS or more)
  V acc[MR][NV];
  STRATA_UNROLL(32)
  for (int r = 0; r < MR; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) acc[r][j] = bias ? V::load(bias + j * VS) : V(T(0));
  for (int64_t t = 0; t < ntaps; ++t) {
    const T* ap[MR];
    if (xoff)
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) ap[r] = a[r] + xoff[t];
    else
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) ap[r] = a[t * MR + r];
    const T* bp = w + toff[t];
    for (int64_t c = 0; c < C; ++c, bp += NR) {
      if constexpr (Cfg::wide) {  // the weight rows 16 ahead (see above)
        STRATA_UNROLL(4)
        for (int j = 0; j < NV; ++j) __builtin_prefetch(bp + 16 * NR + j * VS);
      }
      V bv[NV];
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) bv[j] = V::load(bp + j * VS);
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) {
        const V ar(ap[r][c]);
        STRATA_UNROLL(4)
        for (int j = 0; j < NV; ++j) acc[r][j] = gemm_madd<V>(ar, bv[j], acc[r][j]);
      }
    }
  }
  if (relu)  // vmax(0, v) keeps a NaN, as torch.relu
    for (int r = 0; r < mr; ++r)
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) vmax(V(T(0)), acc[r][j]).store(out[r] + j * VS);
  else
    for (int r = 0; r < mr; ++r)
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) acc[r][j].store(out[r] + j * VS);
}

// ================================================================================ bf16 channel pairs

// Autocast's forward and dx on AVX512-BF16 (Zen 4, Sapphire Rapids; STRATA_CONV_BF16_PAIRS): the
// operands go to bf16 in the NHWC copies the direct path makes anyway, and vdpbf16ps multiplies a pair
// of adjacent channels per lane and instruction (acc += a[2l+1] b[2l+1], then += a[2l] b[2l]; a product
// of two bf16 is exact in float), so a tile runs C / 2 steps of the fp32 tile's C, with the same MR x NR
// registers. In NHWC a pixel's channels c, c + 1 are adjacent: one 32-bit broadcast; the weights are
// packed as [C/2][NR][2] (conv_pack_pairs). Channels are padded to even with a zero. dw reduces over
// pixels: it pairs pixels instead (conv_dw_tile_pairs: x and dout re-laid as pixel pairs, runs that
// start or end on half a pair zero the other half). Without AVX512-BF16 the autocast path multiplies
// the rounded values in fp32 (the same products).
// Tested through tests/bf16_emulation/ (the instruction emulated with AVX-512F).
#if defined(__AVX512BF16__) && defined(__AVX512F__)
#define STRATA_CONV_BF16_PAIRS 1
#else
#define STRATA_CONV_BF16_PAIRS 0
#endif

#if STRATA_CONV_BF16_PAIRS
/// conv_direct_tile on bf16 channel pairs: a[t][r] (or a[r] + xoff[t]) point at bf16 rows of C (even)
/// channels, w + toff[t] at a [C/2][NR][2] bf16 block (lane l of vector j: channels c and c + 1 of
/// output j 16 + l).
template <int MR, int NV>
void conv_direct_tile_pairs(int64_t ntaps, const bf16* const* a, const bf16* w, const int64_t* toff, int64_t C,
                            float* const* out, int mr, const float* bias = nullptr, bool relu = false,
                            const int64_t* xoff = nullptr) {
  constexpr int NR = ConvBlocking<float>::NR, VS = 16;
  static_assert(NR == NV * VS || NV == 1, "the pairs tile is the AVX-512 f32 tile");
  __m512 acc[MR][NV];
  STRATA_UNROLL(32)
  for (int r = 0; r < MR; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) acc[r][j] = bias ? _mm512_loadu_ps(bias + j * VS) : _mm512_setzero_ps();
  for (int64_t t = 0; t < ntaps; ++t) {
    const bf16* ap[MR];
    if (xoff)
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) ap[r] = a[r] + xoff[t];
    else
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) ap[r] = a[t * MR + r];
    const bf16* bp = w + toff[t];
    for (int64_t c = 0; c < C; c += 2, bp += 2 * NR) {
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) __builtin_prefetch(bp + 32 * NR + j * 2 * VS);  // 16 pairs ahead
      __m512bh bv[NV];
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(bp + j * 2 * VS);
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) {
        int32_t pair;
        std::memcpy(&pair, ap[r] + c, sizeof(pair));
        const __m512bh ar = (__m512bh)_mm512_set1_epi32(pair);
        STRATA_UNROLL(4)
        for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], ar, bv[j]);
      }
    }
  }
  const __m512 zero = _mm512_setzero_ps();
  for (int r = 0; r < mr; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(out[r] + j * VS, relu ? _mm512_max_ps(zero, acc[r][j]) : acc[r][j]);
}
#endif

/// A run of pixels whose tap reads consecutive input pixels: x (stepping xstep) and dout rows g.
template <class T>
struct ConvRun {
  const T* x;
  const T* g;
  int64_t len;
};

/// dst[r][0, NV VS) += sum over the runs' pixels of x[c0 + r] * g[goff + (0, NV VS)] for r < MR
/// (all MR rows of dst exist; rows past the channels read the next pixel's values or slack, and are
/// ignored).
template <class T, int MR, int NV>
void conv_dw_tile(const ConvRun<T>* runs, int64_t nruns, int64_t xstep, int64_t c0, int64_t goff, int64_t ldg, T* dst,
                  int64_t ldd) {
  using Cfg = ConvBlocking<T>;
  using V = Vec<T>;
  constexpr int VS = Cfg::VS;
  V acc[MR][NV];
  STRATA_UNROLL(32)
  for (int r = 0; r < MR; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) acc[r][j] = V::load(dst + r * ldd + j * VS);
  for (int64_t u = 0; u < nruns; ++u) {
    const T* a = runs[u].x + c0;
    const T* g = runs[u].g + goff;
    for (int64_t s = 0; s < runs[u].len; ++s, a += xstep, g += ldg) {
      V bv[NV];
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) bv[j] = V::load(g + j * VS);
      STRATA_UNROLL(32)
      for (int r = 0; r < MR; ++r) {
        const V ar(a[r]);
        STRATA_UNROLL(4)
        for (int j = 0; j < NV; ++j) acc[r][j] = gemm_madd<V>(ar, bv[j], acc[r][j]);
      }
    }
  }
  STRATA_UNROLL(32)
  for (int r = 0; r < MR; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) acc[r][j].store(dst + r * ldd + j * VS);
}

#if STRATA_CONV_BF16_PAIRS
/// A run of dw's pixels for the pairs tile: x at its first pixel in the pixel-paired x (x2: per
/// pixel and channel the bf16 pair (x[p][c], x[p + step][c]) as 32 bits), s its first pixel's index
/// in dout (pairs of dout pixels (2q, 2q + 1) are interleaved per channel: g2[q][o] = (g[2q][o],
/// g[2q + 1][o])), len pixels.
struct ConvPairRun {
  const uint32_t* x;
  int64_t s, len;
};

/// The bf16 pairs of two float rows already rounded to bf16: out[i] = (bf16(lo[i]), bf16(hi[i])) as
/// 32 bits (lo in the low half), hi null: zeros (n values).
inline void conv_pair_rows(const float* lo, const float* hi, uint32_t* out, int64_t n) {
  int64_t i = 0;
  if (hi) {
    const __m512i top = _mm512_set1_epi32(int(0xffff0000u));
    for (; i + 16 <= n; i += 16) {
      const __m512i a = _mm512_castps_si512(_mm512_loadu_ps(lo + i)), b = _mm512_castps_si512(_mm512_loadu_ps(hi + i));
      _mm512_storeu_si512(out + i, _mm512_or_si512(_mm512_srli_epi32(a, 16), _mm512_and_si512(b, top)));
    }
  }
  for (; i < n; ++i)
    out[i] = std::bit_cast<uint32_t>(lo[i]) >> 16 | (hi ? std::bit_cast<uint32_t>(hi[i]) & 0xffff0000u : 0u);
}

/// conv_dw_tile on pixel pairs (vdpbf16ps): dst[r][0, NV 16) += sum over the runs' pixels s of
/// x[c0 + r] * g[s][goff + (0, NV 16)], two pixels per instruction. A run starting at an odd s begins
/// with the pair (s - 1, s) and x's low half zeroed; one ending at an even s ends with (s, s + 1) and
/// the high half zeroed (so the other pixel's dout is multiplied by 0: an infinite dout there would
/// give NaN; training with one is lost anyway).
template <int MR, int NV>
void conv_dw_tile_pairs(const ConvPairRun* runs, int64_t nruns, int64_t xstep, int64_t c0, const uint32_t* g2,
                        int64_t goff, int64_t ldg, float* dst, int64_t ldd) {
  constexpr int VS = 16;
  __m512 acc[MR][NV];
  STRATA_UNROLL(32)
  for (int r = 0; r < MR; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_loadu_ps(dst + r * ldd + j * VS);
  // one pair of pixels: x pairs a[c0 + r] (Edge 1: high half only, 2: low half only), dout pair q
  auto step = [&]<int Edge>(const uint32_t* a, int64_t q) {
    const uint32_t* g = g2 + q * ldg + goff;
    __m512bh bv[NV];
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) bv[j] = (__m512bh)_mm512_loadu_si512(g + j * VS);
    STRATA_UNROLL(32)
    for (int r = 0; r < MR; ++r) {
      const uint32_t v = Edge == 1 ? a[r] << 16 : (Edge == 2 ? a[r] & 0xffffu : a[r]);
      const __m512bh ar = (__m512bh)_mm512_set1_epi32(int(v));
      STRATA_UNROLL(4)
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], ar, bv[j]);
    }
  };
  for (int64_t u = 0; u < nruns; ++u) {
    const uint32_t* a = runs[u].x + c0;
    int64_t s = runs[u].s;
    const int64_t end = s + runs[u].len;
    if (s & 1) step.template operator()<1>(a, s >> 1), a += xstep, ++s;
    for (; s + 1 < end; s += 2, a += 2 * xstep) step.template operator()<0>(a, s >> 1);
    if (s < end) step.template operator()<2>(a, s >> 1);
  }
  STRATA_UNROLL(32)
  for (int r = 0; r < MR; ++r)
    STRATA_UNROLL(4)
    for (int j = 0; j < NV; ++j) _mm512_storeu_ps(dst + r * ldd + j * VS, acc[r][j]);
}
#endif

/// dw's tile height for Cin -> Cout (dwh's channels are rounded up to it; it names the tile):
/// DW64_MR (AVX-512 f32, Cout a multiple of 64: 4 dout vectors and 6 broadcasts a pixel for 24
/// FMAs, against 2 and 14 for 28; dw 12-21% faster from 64 input channels up), else DW_MR where
/// rounding up to MR would add more than 1/8 (AVX-512: 32 channels to 42; dw 11-24% faster on 16-
/// and 32-channel inputs), else MR (8 is 10-15% slower at 256 and 512 channels: each 8-channel pass
/// reads all of dout's block again). 1 thread, in-process A/B.
template <class T>
int conv_dw_mr(int64_t Cin, int64_t Cout) {
  using Cfg = ConvBlocking<T>;
  if (Cfg::dw64 && Cout % (Cfg::DW64_NV * Cfg::VS) == 0) return Cfg::DW64_MR;
  return conv_round_up(Cin, Cfg::MR) * 8 > Cin * 9 ? Cfg::DW_MR : Cfg::MR;
}

// ================================================================================ weight packing

/// wf[ob][t][c][l] = w[ob NR + l][c][t] (0 past Cout): the forward's weight blocks, packed in
/// parallel over the blocks.
template <class T>
std::vector<T> conv_pack_wf(const T* w, int64_t Cout, int64_t Cin, int64_t taps) {
  constexpr int NR = ConvBlocking<T>::NR;
  const int64_t nob = conv_round_up(Cout, NR) / NR, block = taps * Cin * NR;
  std::vector<T> wf(size_t(nob * block));
  parallel_for(0, nob, std::max<int64_t>(1, (int64_t(1) << 14) / block), [&](int64_t lo, int64_t hi) {
    for (int64_t ob = lo; ob < hi; ++ob)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t c = 0; c < Cin; ++c) {
          T* dst = wf.data() + ((ob * taps + t) * Cin + c) * NR;
          for (int64_t l = 0; l < NR; ++l) dst[l] = ob * NR + l < Cout ? w[((ob * NR + l) * Cin + c) * taps + t] : T(0);
        }
  });
  return wf;
}

/// wd[cb][t][o][l] = w[o][cb NR + l][t] (0 past Cin): dx's weight blocks, packed in parallel.
template <class T>
std::vector<T> conv_pack_wd(const T* w, int64_t Cout, int64_t Cin, int64_t taps) {
  constexpr int NR = ConvBlocking<T>::NR;
  const int64_t ncb = conv_round_up(Cin, NR) / NR, block = taps * Cout * NR;
  std::vector<T> wd(size_t(ncb * block));
  parallel_for(0, ncb, std::max<int64_t>(1, (int64_t(1) << 14) / block), [&](int64_t lo, int64_t hi) {
    for (int64_t cb = lo; cb < hi; ++cb)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t o = 0; o < Cout; ++o) {
          T* dst = wd.data() + ((cb * taps + t) * Cout + o) * NR;
          for (int64_t l = 0; l < NR; ++l) dst[l] = cb * NR + l < Cin ? w[(o * Cin + cb * NR + l) * taps + t] : T(0);
        }
  });
  return wd;
}

/// The pairs layout of the weights (STRATA_CONV_BF16_PAIRS): out[b][t][k/2][l][k % 2] = bf16(at(b NR
/// + l, k, t)) for k < round_up(K, 2), l < NR, b < ceil(L / NR) (0 past L and K), in parallel over
/// the blocks; at(l, k, t) reads the weight of output lane l, reduced channel k, tap t.
template <class At>
std::vector<bf16> conv_pack_pairs(int64_t L, int64_t K, int64_t taps, At&& at) {
  constexpr int NR = ConvBlocking<float>::NR;
  const int64_t nb = conv_round_up(L, NR) / NR, kp = conv_round_up(K, 2), block = taps * kp * NR;
  std::vector<bf16> out(size_t(nb * block));
  parallel_for(0, nb, std::max<int64_t>(1, (int64_t(1) << 14) / block), [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b)
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t k = 0; k < kp; ++k) {
          bf16* dst = out.data() + ((b * taps + t) * kp + k / 2 * 2) * NR + k % 2;
          for (int64_t l = 0; l < NR; ++l)
            dst[2 * l] = b * NR + l < L && k < K ? bf16(float(at(b * NR + l, k, t))) : bf16::from_bits(0);
        }
  });
  return out;
}

/// conv_pack_wf in the pairs layout: wf[ob][t][c/2][l][c % 2] = bf16(w[ob NR + l][c][t]).
template <class T>
std::vector<bf16> conv_pack_wf_pairs(const T* w, int64_t Cout, int64_t Cin, int64_t taps) {
  return conv_pack_pairs(Cout, Cin, taps, [&](int64_t o, int64_t c, int64_t t) { return w[(o * Cin + c) * taps + t]; });
}

/// conv_pack_wd in the pairs layout: wd[cb][t][o/2][l][o % 2] = bf16(w[o][cb NR + l][t]).
template <class T>
std::vector<bf16> conv_pack_wd_pairs(const T* w, int64_t Cout, int64_t Cin, int64_t taps) {
  return conv_pack_pairs(Cin, Cout, taps, [&](int64_t c, int64_t o, int64_t t) { return w[(o * Cin + c) * taps + t]; });
}

// ================================================================================ drivers (one chunk of images)

/// Per kernel row i, for every position h of the grid that is read: the offset of the row tap i
/// reads (its index times `scale`), or -1 where that is padding or no row at all. tab[h * k + i].
/// Forward (transposed = false): input row h s - p + i d. dx (true): output row (h + p - i d) / s
/// when that divides exactly. Columns use the same table with the column sizes.
inline std::vector<int64_t> conv_tap_table(int64_t grid, int64_t k, int64_t limit, int64_t s, int64_t pad,
                                           int64_t d, int64_t scale, bool transposed) {
  std::vector<int64_t> tab(size_t(grid * k));
  for (int64_t h = 0; h < grid; ++h)
    for (int64_t i = 0; i < k; ++i) {
      int64_t v = -1;
      if (!transposed) {
        const int64_t ih = h * s - pad + i * d;
        if (ih >= 0 && ih < limit) v = ih * scale;
      } else {
        const int64_t y = h + pad - i * d;
        if (y >= 0 && y % s == 0 && y / s < limit) v = y / s * scale;
      }
      tab[size_t(h * k + i)] = v;
    }
  return tab;
}

/// The positions h < grid grouped by which of the k kernel rows are valid there (tab from
/// conv_tap_table): cls[c] lists the positions of class c, classes in order of first appearance.
inline std::vector<std::vector<int64_t>> conv_tap_classes(const std::vector<int64_t>& tab, int64_t grid, int64_t k) {
  std::vector<std::vector<int64_t>> cls;
  std::vector<int64_t> first;  // a representative of each class
  for (int64_t h = 0; h < grid; ++h) {
    size_t c = 0;
    for (; c < cls.size(); ++c) {
      bool same = true;
      for (int64_t i = 0; i < k && same; ++i) same = (tab[size_t(h * k + i)] >= 0) == (tab[size_t(first[c] * k + i)] >= 0);
      if (same) break;
    }
    if (c == cls.size()) cls.emplace_back(), first.push_back(h);
    cls[c].push_back(h);
  }
  return cls;
}

/// Runs conv_direct_tile over the nb x gh x gw pixels of a grid (the forward's output, or dx's
/// input) for every NR-channel block: pixel (n, h, w) writes row (n gh + h) gw + w of out_h, and
/// its tap (i, j) reads src + n src_image + rt[h kH + i] + ct[w kW + j] (conv_tap_table), or
/// `zero` where either is -1. Pixels are visited grouped by which taps are valid for them (border
/// rows and columns, stride phases; each group through all nb images), so that the MR pixels of a
/// tile share their taps and a padding tap is skipped, not multiplied by zeros. bias (nblocks NR
/// values, or null) and relu: the tiles' epilogue. X: the element of src, zero and w: T, or bf16 for
/// the pairs tile (STRATA_CONV_BF16_PAIRS; C even, w from conv_pack_pairs). A tile whose pixels all
/// use every tap (the interior) gets MR pointers and one offset per tap instead of the MR x taps
/// table (which was ~11% of the cnn's 32 -> 32 sweep next to its tiles).
template <class T, int MR = ConvBlocking<T>::MR, int NV = ConvBlocking<T>::NV, class X = T>
void conv_direct_sweep(int64_t nb, int64_t gh, int64_t gw, int64_t kH, int64_t kW, const std::vector<int64_t>& rt,
                       const std::vector<int64_t>& ct, const X* src, int64_t src_image, const X* zero, const X* w,
                       int64_t C, int64_t nblocks, T* out_h, int64_t ld, const T* bias = nullptr,
                       bool relu = false) {
  using Cfg = ConvBlocking<T>;
  constexpr int NR = Cfg::NR;
  // tiles per group: the group's pixels go through every NR-channel block of the weights before the
  // next group starts, so the weights stream in once per group. 8 tiles keep the group's inputs in
  // L1; weights beyond L2 (MiBs for 256-512 channels, from L3 each group) take up to 32 tiles (192
  // pixels), as long as their input rows (MR C values a tile) stay within about kConvGroupBytes:
  // 20% faster on 512 -> 512 at 3x3, 8% on 256 -> 512 at 7x7 (2 threads, batch 256, CPU time)
  const int64_t wbytes = nblocks * kH * kW * C * NR * int64_t(sizeof(X));
  const int64_t kTiles = wbytes <= kConvL2Bytes ? 8
                         : std::clamp<int64_t>(kConvGroupBytes / (MR * C * int64_t(sizeof(X))), 8, kConvMaxTiles);
  const int64_t taps = kH * kW, block = taps * C * NR, count = nb * gh * gw;
  // the pixel order: for each (row class, column class) cell, every image, the cell's positions
  const auto rcls = conv_tap_classes(rt, gh, kH), ccls = conv_tap_classes(ct, gw, kW);
  std::vector<std::array<int64_t, 2>> cells;  // (h, w) of every position, cell after cell
  std::vector<size_t> ends;                  // where each cell's positions end in `cells`
  std::vector<char> full;                    // whether the cell's positions use every tap
  auto all_taps = [](const std::vector<int64_t>& tab, int64_t h, int64_t k) {
    for (int64_t i = 0; i < k; ++i)
      if (tab[size_t(h * k + i)] < 0) return false;
    return true;
  };
  for (const auto& rc : rcls)
    for (const auto& cc : ccls) {
      for (int64_t h : rc)
        for (int64_t x : cc) cells.push_back({h, x});
      ends.push_back(cells.size());
      full.push_back(all_taps(rt, rc[0], kH) && all_taps(ct, cc[0], kW));
    }
  size_t k = 0, cell = 0, begin = 0;
  int64_t n = 0;
  bool all_full = true;  // every pixel of the tile so far uses every tap
  auto next = [&](int64_t& row, int64_t& base, const int64_t*& ro, const int64_t*& co) {
    const int64_t h = cells[k][0], x = cells[k][1];
    all_full = all_full && full[cell];
    row = (n * gh + h) * gw + x, base = n * src_image, ro = rt.data() + h * kH, co = ct.data() + x * kW;
    if (++k < ends[cell]) return;
    if (++n < nb) k = begin;  // the same cell in the next image
    else n = 0, begin = ends[cell++];
  };
  std::vector<const X*> a(size_t(kTiles * taps * MR));
  std::vector<int64_t> toff(static_cast<size_t>(kTiles * taps)), none(static_cast<size_t>(std::max(kH, kW)), -1);
  std::vector<int64_t> xoff(static_cast<size_t>(kTiles * taps));  // per tile: its pixels' tap offsets, or -1
  std::vector<char> uses_all(static_cast<size_t>(kTiles));
  std::vector<int64_t> vi(static_cast<size_t>(kH)), vj(static_cast<size_t>(kW));
  int64_t ntaps[kConvMaxTiles], base[MR];
  const int64_t* ro[MR];
  const int64_t* co[MR];
  T* rows[kConvMaxTiles][MR];
  for (int64_t q0 = 0; q0 < count; q0 += kTiles * MR) {
    const int64_t tiles = std::min(kTiles, (count - q0 + MR - 1) / MR);
    for (int64_t u = 0; u < tiles; ++u) {
      const int mr = int(std::min<int64_t>(MR, count - q0 - u * MR));
      all_full = mr == MR;
      for (int r = 0; r < MR; ++r) {
        int64_t row = 0;
        if (r < mr) next(row, base[r], ro[r], co[r]);
        else base[r] = 0, ro[r] = co[r] = none.data();  // no pixel: all padding
        rows[u][r] = out_h + row * ld;
      }
      uses_all[size_t(u)] = all_full;
      if (all_full) {  // interior pixels: every tap, at the same offsets from tap (0, 0) (the tables are affine there)
        const X** at = a.data() + u * taps * MR;
        for (int r = 0; r < MR; ++r) at[r] = src + base[r] + ro[r][0] + co[r][0];
        for (int64_t i = 0; i < kH; ++i)
          for (int64_t j = 0; j < kW; ++j) {
            const int64_t t = i * kW + j;
            xoff[size_t(u * taps + t)] = ro[0][i] - ro[0][0] + co[0][j] - co[0][0];
            toff[size_t(u * taps + t)] = t * C * NR;
          }
        ntaps[u] = taps;
        continue;
      }
      // the kernel rows and columns some pixel of the tile can use (all 3 x 3 inside an image; one
      // or two of them for dx of a stride-2 conv)
      int64_t ni = 0, nj = 0;
      for (int64_t i = 0; i < kH; ++i) {
        bool any = false;
        for (int r = 0; r < MR; ++r) any = any || ro[r][i] >= 0;
        if (any) vi[size_t(ni++)] = i;
      }
      for (int64_t j = 0; j < kW; ++j) {
        bool any = false;
        for (int r = 0; r < MR; ++r) any = any || co[r][j] >= 0;
        if (any) vj[size_t(nj++)] = j;
      }
      int64_t cnt = 0;
      for (int64_t ii = 0; ii < ni; ++ii)
        for (int64_t jj = 0; jj < nj; ++jj) {
          const int64_t i = vi[size_t(ii)], j = vj[size_t(jj)];
          const X** at = a.data() + (u * taps + cnt) * MR;
          bool any = false;
          for (int r = 0; r < MR; ++r) {
            const bool in = ro[r][i] >= 0 && co[r][j] >= 0;
            any = any || in;
            at[r] = in ? src + base[r] + ro[r][i] + co[r][j] : zero;
          }
          if (any) toff[size_t(u * taps + cnt++)] = (i * kW + j) * C * NR;
        }
      ntaps[u] = cnt;
    }
    for (int64_t ob = 0; ob < nblocks; ++ob)
      for (int64_t u = 0; u < tiles; ++u) {
        T* out[MR];
        for (int r = 0; r < MR; ++r) out[r] = rows[u][r] + ob * NR;
        const int mr = int(std::min<int64_t>(MR, count - q0 - u * MR));
        const int64_t* xo = uses_all[size_t(u)] ? xoff.data() + u * taps : nullptr;
#if STRATA_CONV_BF16_PAIRS
        if constexpr (std::is_same_v<X, bf16>)
          conv_direct_tile_pairs<MR, NV>(ntaps[u], a.data() + u * taps * MR, w + ob * block, toff.data() + u * taps, C,
                                         out, mr, bias ? bias + ob * NR : nullptr, relu, xo);
        else
#endif
          conv_direct_tile<T, MR, NV>(ntaps[u], a.data() + u * taps * MR, w + ob * block, toff.data() + u * taps, C, out,
                                      mr, bias ? bias + ob * NR : nullptr, relu, xo);
      }
  }
}

/// conv_direct_sweep for a grid whose outputs have `channels` channels: on AVX-512, at most one
/// vector of them (16 f32: dx of a 16-channel input) takes NARROW_MR x 1 vector tiles, which compute
/// no padding channels (the 14 x 32 tile rounds 16 up to 32, half of its FMAs wasted). 12 pixels:
/// their row pointers stay in the 16 general registers (28, which would fill the vector registers,
/// reloads a spilled pointer for most broadcasts, two loads per FMA, and measured no faster than
/// 14 x 32): dx 12-17% faster on 16 -> 32 3x3 stride 2 at 28x28, 7-10% on the 1x1 at 14x14
/// (in-process A/B, CPU time; 8 and 16 pixels: no better).
template <class T, class X = T, class... A>
void conv_direct_sweep_for(int64_t channels, A&&... args) {
  using Cfg = ConvBlocking<T>;
  if constexpr (Cfg::wide)
    if (channels <= Cfg::VS) return conv_direct_sweep<T, Cfg::NARROW_MR, 1, X>(std::forward<A>(args)...);
  conv_direct_sweep<T, Cfg::MR, Cfg::NV, X>(std::forward<A>(args)...);
}

/// Whether x (strides xs of n, c, h, w) is channels-last inside each image: [H][W][C] dense, so
/// that a pixel's C channels are one run and the tiles can read x in place.
inline bool conv_is_nhwc(const std::array<int64_t, 4>& xs, int64_t C, int64_t W) {
  return xs[1] == 1 && xs[3] == C && xs[2] == W * C;
}

#if STRATA_CONV_BF16_PAIRS
/// xb[n][h][w][0, Cp) = bf16(x[n][c][h][w]) (nearest), Cp = round_up(C, 2), 0 at channel C when C is
/// odd, for nb images (x: any strides xs): the pairs tile's NHWC operand. Through a float NHWC
/// scratch (conv_to_nhwc) unless x is channels-last already.
inline void conv_to_nhwc_pairs(const float* x, const std::array<int64_t, 4>& xs, int64_t nb, int64_t C, int64_t H,
                               int64_t W, bf16* xb) {
  const int64_t cp = conv_round_up(C, 2), hw = H * W;
  if (conv_is_nhwc(xs, C, W) && cp == C) {
    for (int64_t n = 0; n < nb; ++n) cvt_f32_to_bf16(x + n * xs[0], xb + n * hw * C, hw * C);
    return;
  }
  float* xf = conv_scratch<float>(0, nb * hw * cp);
  if (conv_is_nhwc(xs, C, W))
    for (int64_t n = 0; n < nb; ++n)
      for (int64_t q = 0; q < hw; ++q) std::memcpy(xf + (n * hw + q) * cp, x + n * xs[0] + q * C, size_t(C) * sizeof(float));
  else
    conv_to_nhwc(x, xs, nb, C, H, W, xf, cp);
  if (cp != C)
    for (int64_t q = 0; q < nb * hw; ++q) xf[q * cp + C] = 0.f;
  cvt_f32_to_bf16(xf, xb, nb * hw * cp);
}
#endif

/// Forward of images [n0, n0 + nb): out = conv(x) + bias (then max(., 0) when relu), wf from
/// conv_pack_wf, bias_pad: round_up(Cout, NR) values (0 past Cout) or null. x in channels-last is
/// read in place, any other x is transposed to NHWC first. out is contiguous NCHW, or NHWC
/// ([B][OH][OW][Cout]) when channels_last: written in place by the tiles when Cout is a multiple of
/// NR, else through a scratch (the tiles store NR channels at a time). round_x: x's values rounded to
/// bf16 on the way (in the transpose; a channels-last x is then copied, not read in place). wpairs
/// (STRATA_CONV_BF16_PAIRS, f32, from conv_pack_wf_pairs; wf is then unused): x goes to bf16 and the
/// pairs tile runs (the same products as round_x, summed in another order).
template <class T, class P>
void conv_direct_fwd(const P& p, const T* x, const std::array<int64_t, 4>& xs, int64_t n0, int64_t nb, const T* wf,
                     const T* bias_pad, T* out, bool channels_last = false, bool relu = false, bool round_x = false,
                     [[maybe_unused]] const bf16* wpairs = nullptr) {
  constexpr int NR = ConvBlocking<T>::NR;
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, cpad = conv_round_up(p.Cout, NR);
  // the sweep over x staged as NHWC rows of C values of type X (T, or bf16 pairs), then out
  auto run = [&]<class X>(const X* src, int64_t src_image, const X* w, int64_t C) {
    X* zero = conv_scratch<X>(3, C);
    std::fill(zero, zero + C, X(0));
    const std::vector<int64_t> rt = conv_tap_table(OH, p.kH, p.H, p.stride[0], p.padding[0], p.dilation[0], p.W * C, false);
    const std::vector<int64_t> ct = conv_tap_table(OW, p.kW, p.W, p.stride[1], p.padding[1], p.dilation[1], C, false);
    if (channels_last && cpad == p.Cout) {  // the tiles store straight into out
      conv_direct_sweep_for<T, X>(p.Cout, nb, OH, OW, p.kH, p.kW, rt, ct, src, src_image, zero, w, C, cpad / NR,
                                  out + n0 * ohw * p.Cout, p.Cout, bias_pad, relu);
      return;
    }
    T* oh = conv_scratch<T>(1, nb * ohw * cpad);
    conv_direct_sweep_for<T, X>(p.Cout, nb, OH, OW, p.kH, p.kW, rt, ct, src, src_image, zero, w, C, cpad / NR, oh,
                                cpad, bias_pad, relu);
    if (channels_last)
      for (int64_t s = 0; s < nb * ohw; ++s)
        std::memcpy(out + (n0 * ohw + s) * p.Cout, oh + s * cpad, size_t(p.Cout) * sizeof(T));
    else
      conv_from_nhwc(oh, cpad, nb, p.Cout, ohw, static_cast<const T*>(nullptr), out + n0 * p.Cout * ohw);
  };
  const int64_t C = p.Cin;
  const T* src = x + n0 * xs[0];
#if STRATA_CONV_BF16_PAIRS
  if constexpr (std::is_same_v<T, float>)
    if (wpairs) {
      const int64_t cp = conv_round_up(C, 2), hwc = p.H * p.W * cp;
      bf16* xb = conv_scratch<bf16>(0, nb * hwc);
      conv_to_nhwc_pairs(src, xs, nb, C, p.H, p.W, xb);
      return run(static_cast<const bf16*>(xb), hwc, wpairs, cp);
    }
#endif
  int64_t src_image = xs[0];
  if (!conv_is_nhwc(xs, C, p.W) || round_x) {
    const int64_t hwc = p.H * p.W * C;
    T* xh = conv_scratch<T>(0, nb * hwc);
    if (conv_is_nhwc(xs, C, p.W))
      for (int64_t n = 0; n < nb; ++n) round_to_bf16(src + n * xs[0], xh + n * hwc, hwc);
    else
      conv_to_nhwc(src, xs, nb, C, p.H, p.W, xh, C, round_x);
    src = xh, src_image = hwc;
  }
  run(src, src_image, wf, C);
}

/// conv_direct_dw with the dw tile of MR channels x NV vectors.
template <class T, int MR, int NV, class P>
void conv_direct_dw_mr(const P& p, const T* x, const std::array<int64_t, 4>& xs, const T* gh, int64_t n0, int64_t nb,
                       T* dwh, int64_t cpad, bool round_x, [[maybe_unused]] bool pairs = false) {
  constexpr int NR = NV * ConvBlocking<T>::VS;
  const int64_t OH = p.OH(), OW = p.OW(), HW = p.H * p.W, Cin = p.Cin, cinpm = conv_round_up(Cin, MR);
  // x_h: x itself when channels-last and the tiles' reads past the last pixel's channels (up to
  // MR - 1 values: tiles read MR channels) stay inside x (the next image follows); else a copy
  // with MR values of slack after it (and a copy when round_x: x's values rounded to bf16)
  const T* xh = x + n0 * xs[0];
  int64_t ximg = xs[0];
  if (!conv_is_nhwc(xs, Cin, p.W) || (cinpm != Cin && (n0 + nb == p.B || xs[0] != HW * Cin)) || round_x) {
    T* xc = conv_scratch<T>(0, nb * HW * Cin + MR);
    if (conv_is_nhwc(xs, Cin, p.W) && round_x)
      for (int64_t n = 0; n < nb; ++n) round_to_bf16(xh + n * xs[0], xc + n * HW * Cin, HW * Cin);
    else if (conv_is_nhwc(xs, Cin, p.W))
      for (int64_t n = 0; n < nb; ++n) std::memcpy(xc + n * HW * Cin, xh + n * xs[0], size_t(HW * Cin) * sizeof(T));
    else
      conv_to_nhwc(xh, xs, nb, Cin, p.H, p.W, xc, Cin, round_x);
    std::fill(xc + nb * HW * Cin, xc + nb * HW * Cin + MR, T(0));
    xh = xc, ximg = HW * Cin;
  }
  // output rows in blocks of about kPixels pixels, so that the x rows and dout rows one tap's
  // tiles read (an MR-channel slice of x, NR-channel blocks of dout: 4 KiB each) stay in L1 across
  // the tiles (256 pixels, L2-resident, measured ~15% slower); per tap, each output row's pixels
  // whose tap is inside the image are one run. On AVX-512 (Ice Lake server, 1.25 MiB L2), a dwh
  // beyond kConvL2Bytes (MiBs at 256-512 channels), which goes through the caches once per block,
  // takes 256 pixels: dw 10-14% faster at 256 -> 512 and 512 -> 512 (1 thread, in-process A/B;
  // 512 pixels: 29% slower at 256 -> 512); AVX2 (Zen 3) keeps 64, as tuned there
  const bool big = ConvBlocking<T>::wide && p.kH * p.kW * cinpm * cpad * int64_t(sizeof(T)) > kConvL2Bytes;
  const int64_t kPixels = big ? 256 : 64;
  const int64_t rows_per = std::max<int64_t>(1, kPixels / OW), xstep = p.stride[1] * Cin;
  std::vector<ConvRun<T>> runs(static_cast<size_t>(rows_per));
#if STRATA_CONV_BF16_PAIRS
  // pairs (round_x, f32): x pixel-paired (x2[i] = the pair (x_h[i], x_h[i + xstep]), MR pairs of
  // slack) and dout pixel-paired (g2[q][o] = (g[2q][o], g[2q + 1][o])), both from the rounded copies
  std::vector<ConvPairRun> pruns(pairs ? static_cast<size_t>(rows_per) : 0);
  const uint32_t* x2 = nullptr;
  const uint32_t* g2 = nullptr;
  if constexpr (std::is_same_v<T, float>)
    if (pairs) {
      const int64_t nx = nb * HW * Cin, S = nb * OH * OW;
      uint32_t* xp = conv_scratch<uint32_t>(0, nx + MR);
      conv_pair_rows(xh, xh + xstep, xp, std::max<int64_t>(0, nx - xstep));
      for (int64_t i = std::max<int64_t>(0, nx - xstep); i < nx + MR; ++i)
        xp[i] = i < nx ? std::bit_cast<uint32_t>(xh[i]) >> 16 : 0u;
      uint32_t* gp = conv_scratch<uint32_t>(1, (S + 1) / 2 * cpad);
      for (int64_t q = 0; q < S / 2; ++q) conv_pair_rows(gh + 2 * q * cpad, gh + (2 * q + 1) * cpad, gp + q * cpad, cpad);
      if (S % 2) conv_pair_rows(gh + (S - 1) * cpad, nullptr, gp + S / 2 * cpad, cpad);
      x2 = xp, g2 = gp;
    }
#endif
  for (int64_t r0 = 0; r0 < nb * OH; r0 += rows_per) {
    const int64_t r1 = std::min(nb * OH, r0 + rows_per);
    for (int64_t i = 0; i < p.kH; ++i)
      for (int64_t j = 0; j < p.kW; ++j) {
        int64_t zlo, zhi;  // output columns whose tap column is inside the image
        conv_valid_range(OW, p.W, p.stride[1], p.padding[1], j * p.dilation[1], zlo, zhi);
        int64_t nruns = 0;
        for (int64_t r = r0; r < r1 && zhi > zlo; ++r) {  // output rows r = (n, y)
          const int64_t n = r / OH, ih = r % OH * p.stride[0] - p.padding[0] + i * p.dilation[0];
          if (ih < 0 || ih >= p.H) continue;
          const int64_t iw = zlo * p.stride[1] - p.padding[1] + j * p.dilation[1];
#if STRATA_CONV_BF16_PAIRS
          if (pairs) {
            pruns[size_t(nruns++)] = {x2 + n * ximg + (ih * p.W + iw) * Cin, r * OW + zlo, zhi - zlo};
            continue;
          }
#endif
          runs[size_t(nruns++)] = {xh + n * ximg + (ih * p.W + iw) * Cin, gh + (r * OW + zlo) * cpad, zhi - zlo};
        }
        T* dt = dwh + (i * p.kW + j) * cinpm * cpad;
#if STRATA_CONV_BF16_PAIRS
        if constexpr (std::is_same_v<T, float>)
          if (pairs) {
            for (int64_t c0 = 0; c0 < cinpm; c0 += MR)
              for (int64_t ob = 0; ob < cpad / NR; ++ob)
                conv_dw_tile_pairs<MR, NV>(pruns.data(), nruns, xstep, c0, g2, ob * NR, cpad, dt + c0 * cpad + ob * NR,
                                           cpad);
            continue;
          }
#endif
        for (int64_t c0 = 0; c0 < cinpm; c0 += MR)
          for (int64_t ob = 0; ob < cpad / NR; ++ob)
            conv_dw_tile<T, MR, NV>(runs.data(), nruns, xstep, c0, ob * NR, cpad, dt + c0 * cpad + ob * NR, cpad);
      }
  }
}

/// conv_direct_bwd's dw: dwh[t][c][o] += for images [n0, n0 + nb), from gh = dout_h[s][o] (cpad
/// channels a pixel), with the dw tile that mr names (conv_dw_mr); round_x: x rounded to bf16.
template <class T, class P>
void conv_direct_dw(const P& p, const T* x, const std::array<int64_t, 4>& xs, const T* gh, int64_t n0, int64_t nb,
                    T* dwh, int64_t cpad, int mr, bool round_x = false, bool pairs = false) {
  using Cfg = ConvBlocking<T>;
  if constexpr (Cfg::dw64)
    if (mr == Cfg::DW64_MR)
      return conv_direct_dw_mr<T, Cfg::DW64_MR, Cfg::DW64_NV>(p, x, xs, gh, n0, nb, dwh, cpad, round_x, pairs);
  if (mr != Cfg::MR) return conv_direct_dw_mr<T, Cfg::DW_MR, Cfg::NV>(p, x, xs, gh, n0, nb, dwh, cpad, round_x, pairs);
  conv_direct_dw_mr<T, Cfg::MR, Cfg::NV>(p, x, xs, gh, n0, nb, dwh, cpad, round_x, pairs);
}

/// Backward of images [n0, n0 + nb): dx (null: skip) from wd (conv_pack_wd), and dwh[t][c][o] +=
/// (c < round_up(Cin, conv_dw_mr), o < round_up(Cout, NR); null: skip). dout and dx are contiguous
/// NR). round: dout and x rounded to bf16 as they are transposed or copied (autocast's operands;
/// dout is then always copied). wdpairs (STRATA_CONV_BF16_PAIRS, f32, with round; from
/// conv_pack_wd_pairs, wd unused): dx on the pairs tile from a bf16 copy of the rounded dout.
template <class T, class P>
void conv_direct_bwd(const P& p, const T* x, const std::array<int64_t, 4>& xs, const T* dout, int64_t n0, int64_t nb,
                     const T* wd, T* dx, T* dwh, bool channels_last = false, bool round = false,
                     [[maybe_unused]] const bf16* wdpairs = nullptr) {
  using Cfg = ConvBlocking<T>;
  constexpr int NR = Cfg::NR;
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, S = nb * ohw, HW = p.H * p.W;
  const int64_t Cin = p.Cin, Cout = p.Cout, cpad = conv_round_up(Cout, NR);
  // dout_h[s][o], zero-padded to cpad channels; gzero: a zero row for the padding taps
  T* gzero = conv_scratch<T>(3, cpad);
  std::fill(gzero, gzero + cpad, T(0));
  const T* gh = dout + n0 * Cout * ohw;
  if (!channels_last || cpad != Cout || round) {
    T* g = conv_scratch<T>(1, S * cpad);
    if (cpad != Cout) std::fill(g, g + S * cpad, T(0));
    if (channels_last && round)
      for (int64_t s = 0; s < S; ++s) round_to_bf16(gh + s * Cout, g + s * cpad, Cout);
    else if (channels_last)
      for (int64_t s = 0; s < S; ++s) std::memcpy(g + s * cpad, gh + s * Cout, size_t(Cout) * sizeof(T));
    else
      conv_to_nhwc(gh, {Cout * ohw, ohw, OW, 1}, nb, Cout, OH, OW, g, cpad, round);
    gh = g;
  }
  if (dx) {
    const int64_t cinpad = conv_round_up(Cin, NR), sh = p.stride[0], sw = p.stride[1];
    const bool in_place = channels_last && cinpad == Cin;
    T* dxh = in_place ? dx + n0 * HW * Cin : conv_scratch<T>(2, nb * HW * cinpad);
    const std::vector<int64_t> rt = conv_tap_table(p.H, p.kH, OH, sh, p.padding[0], p.dilation[0], OW * cpad, true);
    const std::vector<int64_t> ct = conv_tap_table(p.W, p.kW, OW, sw, p.padding[1], p.dilation[1], cpad, true);
#if STRATA_CONV_BF16_PAIRS
    if constexpr (std::is_same_v<T, float>)
      if (wdpairs) {  // dout_h (rounded, cpad channels: even) in bf16, Cout rounded up to pairs
        bf16* gb = conv_scratch<bf16>(1, S * cpad);
        cvt_f32_to_bf16(gh, gb, S * cpad);
        bf16* bzero = conv_scratch<bf16>(3, cpad);
        std::fill(bzero, bzero + cpad, bf16::from_bits(0));
        conv_direct_sweep_for<T, bf16>(Cin, nb, p.H, p.W, p.kH, p.kW, rt, ct, static_cast<const bf16*>(gb), ohw * cpad,
                                       static_cast<const bf16*>(bzero), wdpairs, conv_round_up(Cout, 2), cinpad / NR,
                                       dxh, cinpad);
      }
    if (!wdpairs)
#endif
      conv_direct_sweep_for<T>(Cin, nb, p.H, p.W, p.kH, p.kW, rt, ct, gh, ohw * cpad, gzero, wd, Cout, cinpad / NR, dxh,
                               cinpad);
    if (channels_last && !in_place)
      for (int64_t q = 0; q < nb * HW; ++q) std::memcpy(dx + (n0 * HW + q) * Cin, dxh + q * cinpad, size_t(Cin) * sizeof(T));
    else if (!channels_last)
      conv_from_nhwc<T>(dxh, cinpad, nb, Cin, HW, nullptr, dx + n0 * Cin * HW);
  }
  // dw on pixel pairs with the pairs tile wherever autocast runs it (STRATA_CONV_BF16_PAIRS, f32)
  const bool pairs = STRATA_CONV_BF16_PAIRS && std::is_same_v<T, float> && round;
  if (dwh) conv_direct_dw<T>(p, x, xs, gh, n0, nb, dwh, cpad, conv_dw_mr<T>(Cin, Cout), round, pairs);
}

}  // namespace strata::cpu::detail
