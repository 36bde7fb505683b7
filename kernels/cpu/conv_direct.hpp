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
// Pixels are numbered across the images of a chunk, so a 2x2 map still fills a 6-pixel tile.
//   forward: out_h[s][o] = sum_{t, c} x_h[pix(s, t)][c] wf[t][c][o]
//   dx:      dx_h[q][c]  = sum_{t, o} dout_h[pix'(q, t)][o] wd[t][o][c]: the same tile kernel, with
//            pix'(q, t) the output pixel that read input pixel q through tap t, when there is one
//            ((ih + ph - i dh) a multiple of sh and in range, likewise w). For stride > 1 the input
//            pixels are visited phase by phase (ih mod sh, iw mod sw), so a tile shares its taps.
//   dw:      dw_h[t][c][o] = sum_s x_h[pix(s, t)][c] dout_h[s][o]: a tile of MR input channels x
//            NR output channels, reduced over the pixels s (MR broadcasts from one pointer per s).
// NCHW tensors are transposed to NHWC per chunk of images (x, dout) and the results back (out,
// dx): O(activations) copies against O(activations x channels x taps) multiply-adds.
// Register tiles (MR, NR, Vec width) come from GemmBlocking<T>: AVX2 6 x 16 (f32), 6 x 8 (f64).
// Assumes groups == 1; P is cpu::Conv2dParams (kernels/cpu/conv.hpp), a template parameter so
// that this header stands alone. The launchers in kernels/cpu/conv.hpp choose this path.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "kernels/cpu/gemm.hpp"

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

inline int64_t conv_round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// ================================================================================ layouts

/// xh[n][h][w][0, C) = x[n][c][h][w] for nb images (x: any strides xs); xh rows are ld apart.
template <class T>
void conv_to_nhwc(const T* x, const std::array<int64_t, 4>& xs, int64_t nb, int64_t C, int64_t H, int64_t W, T* xh,
                  int64_t ld) {
  constexpr int64_t kBlock = 16;  // pixels per block: their rows stay in L1 while every channel is written
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w0 = 0; w0 < W; w0 += kBlock) {
        const int64_t wn = std::min(kBlock, W - w0);
        T* dst = xh + ((n * H + h) * W + w0) * ld;
        for (int64_t c = 0; c < C; ++c) {
          const T* src = x + n * xs[0] + c * xs[1] + h * xs[2] + w0 * xs[3];
          for (int64_t k = 0; k < wn; ++k) dst[k * ld + c] = src[k * xs[3]];
        }
      }
}

/// out[n][c][k] = xh[n][k][c] + (bias ? bias[c] : 0) for c < C, k < HW; xh rows are ld apart.
template <class T>
void conv_from_nhwc(const T* xh, int64_t ld, int64_t nb, int64_t C, int64_t HW, const T* bias, T* out) {
  constexpr int64_t kBlock = 16;
  for (int64_t n = 0; n < nb; ++n)
    for (int64_t k0 = 0; k0 < HW; k0 += kBlock) {
      const int64_t kn = std::min(kBlock, HW - k0);
      const T* src = xh + (n * HW + k0) * ld;
      for (int64_t c = 0; c < C; ++c) {
        T* dst = out + (n * C + c) * HW + k0;
        const T b = bias ? bias[c] : T(0);
        for (int64_t k = 0; k < kn; ++k) dst[k] = src[k * ld + c] + b;
      }
    }
}

// ================================================================================ micro-kernels

/// out[r][0, NR) = sum_{t < ntaps} sum_{c < C} a[t][r][c] * w[toff[t] + c NR + (0, NR)] for r < mr.
/// a: ntaps x MR row pointers (C values each), w + toff[t]: a [C][NR] weight block, out: MR rows.
template <class T>
void conv_direct_tile(int64_t ntaps, const T* const* a, const T* w, const int64_t* toff, int64_t C,
                      T* const* out, int mr) {
  using Cfg = GemmBlocking<T>;
  using V = Vec<T>;
  constexpr int MR = Cfg::MR, NV = Cfg::NV, NR = Cfg::NR, VS = Cfg::VS;
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[r][j] = V(T(0));
  for (int64_t t = 0; t < ntaps; ++t, a += MR) {
    const T* ap[MR];
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) ap[r] = a[r];
    const T* bp = w + toff[t];
    for (int64_t c = 0; c < C; ++c, bp += NR) {
      V bv[NV];
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) bv[j] = V::load(bp + j * VS);
#pragma GCC unroll 32
      for (int r = 0; r < MR; ++r) {
        const V ar(ap[r][c]);
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = gemm_madd<V>(ar, bv[j], acc[r][j]);
      }
    }
  }
  for (int r = 0; r < mr; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[r][j].store(out[r] + j * VS);
}

/// dst[r][0, NR) += sum_{s < n} xp[s][c0 + r] * g[s ldg + (0, NR)] for r < MR (all MR rows of dst
/// exist; rows past the channels read the next pixel's values or the zero row and are ignored).
template <class T>
void conv_dw_tile(int64_t n, const T* const* xp, int64_t c0, const T* g, int64_t ldg, T* dst, int64_t ldd) {
  using Cfg = GemmBlocking<T>;
  using V = Vec<T>;
  constexpr int MR = Cfg::MR, NV = Cfg::NV, VS = Cfg::VS;
  V acc[MR][NV];
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[r][j] = V::load(dst + r * ldd + j * VS);
  for (int64_t s = 0; s < n; ++s, g += ldg) {
    const T* a = xp[s] + c0;
    V bv[NV];
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) bv[j] = V::load(g + j * VS);
#pragma GCC unroll 32
    for (int r = 0; r < MR; ++r) {
      const V ar(a[r]);
#pragma GCC unroll 4
      for (int j = 0; j < NV; ++j) acc[r][j] = gemm_madd<V>(ar, bv[j], acc[r][j]);
    }
  }
#pragma GCC unroll 32
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int j = 0; j < NV; ++j) acc[r][j].store(dst + r * ldd + j * VS);
}

// ================================================================================ weight packing

/// wf[ob][t][c][l] = w[ob NR + l][c][t] (0 past Cout): the forward's weight blocks.
template <class T>
std::vector<T> conv_pack_wf(const T* w, int64_t Cout, int64_t Cin, int64_t taps) {
  constexpr int NR = GemmBlocking<T>::NR;
  const int64_t cpad = conv_round_up(Cout, NR);
  std::vector<T> wf(size_t(cpad * taps * Cin), T(0));
  for (int64_t o = 0; o < Cout; ++o)
    for (int64_t c = 0; c < Cin; ++c)
      for (int64_t t = 0; t < taps; ++t) wf[size_t(((o / NR * taps + t) * Cin + c) * NR + o % NR)] = w[(o * Cin + c) * taps + t];
  return wf;
}

/// wd[cb][t][o][l] = w[o][cb NR + l][t] (0 past Cin): dx's weight blocks.
template <class T>
std::vector<T> conv_pack_wd(const T* w, int64_t Cout, int64_t Cin, int64_t taps) {
  constexpr int NR = GemmBlocking<T>::NR;
  const int64_t cpad = conv_round_up(Cin, NR);
  std::vector<T> wd(size_t(cpad * taps * Cout), T(0));
  for (int64_t o = 0; o < Cout; ++o)
    for (int64_t c = 0; c < Cin; ++c)
      for (int64_t t = 0; t < taps; ++t) wd[size_t(((c / NR * taps + t) * Cout + o) * NR + c % NR)] = w[(o * Cin + c) * taps + t];
  return wd;
}

// ================================================================================ drivers (one chunk of images)

/// Runs conv_direct_tile over `count` pixels q (pixel(q) gives (n, h, w) in the output grid and its
/// row in out_h, tap_src(n, h, w, i, j) the input row or null) for every NR-channel block.
template <class T, class Pixel, class Src>
void conv_direct_sweep(int64_t count, int64_t kH, int64_t kW, const T* zero, const T* w, int64_t C, int64_t nblocks,
                       T* out_h, int64_t ld, Pixel&& pixel, Src&& tap_src) {
  using Cfg = GemmBlocking<T>;
  constexpr int MR = Cfg::MR, NR = Cfg::NR;
  constexpr int64_t kTiles = 8;  // tiles per group: their inputs stay in cache across the channel blocks
  const int64_t taps = kH * kW, block = taps * C * NR;
  std::vector<const T*> a(size_t(kTiles * taps * MR));
  std::vector<int64_t> toff(size_t(kTiles * taps));
  int64_t ntaps[kTiles];
  T* rows[kTiles][MR];
  for (int64_t q0 = 0; q0 < count; q0 += kTiles * MR) {
    const int64_t tiles = std::min(kTiles, (count - q0 + MR - 1) / MR);
    for (int64_t u = 0; u < tiles; ++u) {
      const int64_t base = q0 + u * MR;
      const int mr = int(std::min<int64_t>(MR, count - base));
      int64_t pn[MR], ph[MR], pw[MR];
      for (int r = 0; r < MR; ++r) {
        int64_t row = 0;
        if (r < mr) pixel(base + r, pn[r], ph[r], pw[r], row);
        rows[u][r] = out_h + row * ld;
      }
      int64_t cnt = 0;
      for (int64_t i = 0; i < kH; ++i)
        for (int64_t j = 0; j < kW; ++j) {
          const T** at = a.data() + (u * taps + cnt) * MR;
          bool any = false;
          for (int r = 0; r < MR; ++r) {
            const T* src = r < mr ? tap_src(pn[r], ph[r], pw[r], i, j) : nullptr;
            any = any || src;
            at[r] = src ? src : zero;
          }
          if (any) toff[size_t(u * taps + cnt++)] = (i * kW + j) * C * NR;
        }
      ntaps[u] = cnt;
    }
    for (int64_t ob = 0; ob < nblocks; ++ob)
      for (int64_t u = 0; u < tiles; ++u) {
        T* out[MR];
        for (int r = 0; r < MR; ++r) out[r] = rows[u][r] + ob * NR;
        conv_direct_tile<T>(ntaps[u], a.data() + u * taps * MR, w + ob * block, toff.data() + u * taps, C, out,
                            int(std::min<int64_t>(MR, count - q0 - u * MR)));
      }
  }
}

/// Forward of images [n0, n0 + nb): out (NCHW, contiguous) = conv(x) + bias, wf from conv_pack_wf.
template <class T, class P>
void conv_direct_fwd(const P& p, const T* x, const std::array<int64_t, 4>& xs, int64_t n0, int64_t nb, const T* wf,
                     const T* bias, T* out) {
  constexpr int NR = GemmBlocking<T>::NR;
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, C = p.Cin, cpad = conv_round_up(p.Cout, NR);
  T* xh = conv_scratch<T>(0, nb * p.H * p.W * C + C);
  T* oh = conv_scratch<T>(1, nb * ohw * cpad);
  conv_to_nhwc(x + n0 * xs[0], xs, nb, C, p.H, p.W, xh, C);
  T* zero = xh + nb * p.H * p.W * C;
  std::fill(zero, zero + C, T(0));
  conv_direct_sweep<T>(
      nb * ohw, p.kH, p.kW, zero, wf, C, cpad / NR, oh, cpad,
      [&](int64_t s, int64_t& n, int64_t& y, int64_t& z, int64_t& row) {
        n = s / ohw, y = s % ohw / OW, z = s % OW, row = s;
      },
      [&](int64_t n, int64_t y, int64_t z, int64_t i, int64_t j) -> const T* {
        const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
        const int64_t iw = z * p.stride[1] - p.padding[1] + j * p.dilation[1];
        if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) return nullptr;
        return xh + ((n * p.H + ih) * p.W + iw) * C;
      });
  conv_from_nhwc(oh, cpad, nb, p.Cout, ohw, bias, out + n0 * p.Cout * ohw);
}

/// Backward of images [n0, n0 + nb): dx (NCHW, contiguous; null: skip) from wd (conv_pack_wd), and
/// dwh[t][c][o] += (c < round_up(Cin, MR), o < round_up(Cout, NR); null: skip).
template <class T, class P>
void conv_direct_bwd(const P& p, const T* x, const std::array<int64_t, 4>& xs, const T* dout, int64_t n0, int64_t nb,
                     const T* wd, T* dx, T* dwh) {
  using Cfg = GemmBlocking<T>;
  constexpr int MR = Cfg::MR, NR = Cfg::NR;
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, S = nb * ohw, HW = p.H * p.W;
  const int64_t Cin = p.Cin, Cout = p.Cout, cpad = conv_round_up(Cout, NR), taps = p.kH * p.kW;
  // dout_h[s][o], zero-padded to cpad channels, and a zero row after it
  T* gh = conv_scratch<T>(1, (S + 1) * cpad);
  std::fill(gh, gh + (S + 1) * cpad, T(0));
  conv_to_nhwc(dout + n0 * Cout * ohw, {Cout * ohw, ohw, OW, 1}, nb, Cout, OH, OW, gh, cpad);
  const T* gzero = gh + S * cpad;
  if (dx) {
    const int64_t cinpad = conv_round_up(Cin, NR), sh = p.stride[0], sw = p.stride[1];
    T* dxh = conv_scratch<T>(2, nb * HW * cinpad);
    // input pixels phase by phase: rows ih = a, a + sh, ..., columns iw = b, b + sw, ...
    std::vector<int64_t> order;
    order.reserve(size_t(nb * HW));
    for (int64_t n = 0; n < nb; ++n)
      for (int64_t a = 0; a < std::min(sh, p.H); ++a)
        for (int64_t b = 0; b < std::min(sw, p.W); ++b)
          for (int64_t ih = a; ih < p.H; ih += sh)
            for (int64_t iw = b; iw < p.W; iw += sw) order.push_back((n * p.H + ih) * p.W + iw);
    conv_direct_sweep<T>(
        nb * HW, p.kH, p.kW, gzero, wd, Cout, cinpad / NR, dxh, cinpad,
        [&](int64_t q, int64_t& n, int64_t& ih, int64_t& iw, int64_t& row) {
          row = order[size_t(q)];
          n = row / HW, ih = row % HW / p.W, iw = row % p.W;
        },
        [&](int64_t n, int64_t ih, int64_t iw, int64_t i, int64_t j) -> const T* {
          const int64_t y = ih + p.padding[0] - i * p.dilation[0], z = iw + p.padding[1] - j * p.dilation[1];
          if (y < 0 || z < 0 || y % sh || z % sw || y / sh >= OH || z / sw >= OW) return nullptr;
          return gh + ((n * OH + y / sh) * OW + z / sw) * cpad;
        });
    conv_from_nhwc<T>(dxh, cinpad, nb, Cin, HW, nullptr, dx + n0 * Cin * HW);
  }
  if (dwh) {
    const int64_t cinpm = conv_round_up(Cin, MR);
    // x_h with MR values of slack and a zero row (Cin + MR long) after it: tiles read MR channels
    T* xh = conv_scratch<T>(0, nb * HW * Cin + Cin + MR);
    conv_to_nhwc(x + n0 * xs[0], xs, nb, Cin, p.H, p.W, xh, Cin);
    const T* xzero = xh + nb * HW * Cin;
    std::fill(xh + nb * HW * Cin, xh + nb * HW * Cin + Cin + MR, T(0));
    std::vector<const T*> xtab(size_t(taps * S));  // xtab[t][s]: the input row tap t of pixel s reads
    for (int64_t s = 0; s < S; ++s) {
      const int64_t n = s / ohw, y = s % ohw / OW, z = s % OW;
      for (int64_t i = 0; i < p.kH; ++i)
        for (int64_t j = 0; j < p.kW; ++j) {
          const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
          const int64_t iw = z * p.stride[1] - p.padding[1] + j * p.dilation[1];
          const bool in = ih >= 0 && ih < p.H && iw >= 0 && iw < p.W;
          xtab[size_t((i * p.kW + j) * S + s)] = in ? xh + ((n * p.H + ih) * p.W + iw) * Cin : xzero;
        }
    }
    constexpr int64_t kPixels = 256;  // pixels per pass: the dout rows and x rows they read stay in L2
    for (int64_t s0 = 0; s0 < S; s0 += kPixels) {
      const int64_t sn = std::min(kPixels, S - s0);
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t c0 = 0; c0 < cinpm; c0 += MR)
          for (int64_t ob = 0; ob < cpad / NR; ++ob)
            conv_dw_tile<T>(sn, xtab.data() + t * S + s0, c0, gh + s0 * cpad + ob * NR, cpad,
                            dwh + (t * cinpm + c0) * cpad + ob * NR, cpad);
    }
  }
}

}  // namespace strata::cpu::detail
