// Winograd convolution F(2x2, 3x3) for the forward pass of 3x3, stride-1, undilated, ungrouped convs
// (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015).
//
//   Each 2x2 block of outputs comes from a 4x4 input tile d and the 3x3 filter g as
//     Y = A^T [ (G g G^T) .* (B^T d B) ] A
//   with
//     B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
//           [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
//           [0 -1  1  0]         [1/2 -1/2  1/2]
//           [0  1  0 -1]         [ 0    0    1 ]
//   Summed over input channels, the 16 element-wise products become 16 GEMMs:
//     U[e][o][c] = (G g[o][c] G^T)[e]          (e = one of the 4x4 positions)
//     V[e][c][t] = (B^T d[c][t] B)[e]          (t = tile: image n, tile row, tile column)
//     M[e][o][t] = sum_c U[e][o][c] V[e][c][t]  (cpu::gemm, 16 times)
//     out[o][t's 2x2 block] = A^T M[.][o][t] A + b[o]
//   16 multiplies per 4 outputs instead of 36: 2.25x fewer, for a little more adding and memory.
//   Float rounding differs from the direct sum (the transforms add and subtract inputs first),
//   which is why it is used for float only and tested against conv2d_fwd_ref with a tolerance.
// x may have any strides; out is contiguous NCHW. Tiles are taken a few images at a time so that V
// and M stay in kWinogradMaxElems elements each.
//
// STATUS: an experiment, not used by conv2d (so it lives in bench/, next to its probe,
// bench/kernels/winograd_probe.cpp). Correct (max error 1e-6 on small odd shapes, 1e-4 on the
// ResNet-9 layers, relative to outputs of 30-100), but 0.31-0.79x the speed of the direct path on the
// flagship and ResNet-9 layers (2 threads, quiet machine, 2026-11-21). The 16 GEMMs alone take ~70% of
// the direct path's time (thin K, and V/M round trips through memory), and the separate transform
// passes write and read ~100 MB per call. Winning needs the fused form (transform a block of tiles,
// multiply it while it is in cache, transform back), or F(4x4, 3x3).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kernels/cpu/conv.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/simd.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

inline constexpr int64_t kWinogradMaxElems = int64_t(1) << 21;  // V and M chunks: 8 MB of float each

/// Whether F(2x2, 3x3) applies: 3x3, stride 1, no dilation, one group.
inline bool conv2d_winograd_applies(const Conv2dParams& p) {
  return p.kH == 3 && p.kW == 3 && p.stride[0] == 1 && p.stride[1] == 1 && p.dilation[0] == 1 &&
         p.dilation[1] == 1 && p.groups == 1;
}

/// U[e][o][c] = (G g G^T)[e] for every filter.
inline void winograd_filter_transform(const Conv2dParams& p, const float* w, float* U) {
  const int64_t Cout = p.Cout, Cin = p.Cin;
  parallel_for(0, Cout, 1, [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; ++o)
      for (int64_t c = 0; c < Cin; ++c) {
        const float* g = w + (o * Cin + c) * 9;
        float t[4][3];  // G g: rows of the transformed filter, 3 columns each
        for (int j = 0; j < 3; ++j) {
          t[0][j] = g[j];
          t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
          t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
          t[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; ++i) {  // (G g) G^T
          const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                              t[i][2]};
          for (int j = 0; j < 4; ++j) U[((i * 4 + j) * Cout + o) * Cin + c] = u[j];
        }
      }
  });
}

namespace detail {
/// One float standing in for a vector: the tails of the vector loops below.
struct WinoScalar {
  float v;
  static WinoScalar load(const float* p) { return {*p}; }
  void store(float* p) const { *p = v; }
  friend WinoScalar operator+(WinoScalar a, WinoScalar b) { return {a.v + b.v}; }
  friend WinoScalar operator-(WinoScalar a, WinoScalar b) { return {a.v - b.v}; }
};

/// V's 16 entries of tiles tx .. tx + width of one tile row. E[i], O[i]: the even and odd columns of
/// the tile row's 4 (zero-padded) input rows, so d[i][0..3] of tile tx = E[i][tx], O[i][tx], E[i][tx+1], O[i][tx+1].
template <class V>
inline void winograd_input_tiles(const float* const* E, const float* const* O, int64_t tx, float* const* out) {
  V d[4][4];
  for (int i = 0; i < 4; ++i) {
    d[i][0] = V::load(E[i] + tx), d[i][1] = V::load(O[i] + tx);
    d[i][2] = V::load(E[i] + tx + 1), d[i][3] = V::load(O[i] + tx + 1);
  }
  for (int j = 0; j < 4; ++j) {  // B^T d, in place by rows
    const V r0 = d[0][j] - d[2][j], r1 = d[1][j] + d[2][j], r2 = d[2][j] - d[1][j], r3 = d[1][j] - d[3][j];
    d[0][j] = r0, d[1][j] = r1, d[2][j] = r2, d[3][j] = r3;
  }
  for (int i = 0; i < 4; ++i) {  // (B^T d) B
    (d[i][0] - d[i][2]).store(out[i * 4 + 0] + tx);
    (d[i][1] + d[i][2]).store(out[i * 4 + 1] + tx);
    (d[i][2] - d[i][1]).store(out[i * 4 + 2] + tx);
    (d[i][1] - d[i][3]).store(out[i * 4 + 3] + tx);
  }
}

/// The 2x2 outputs of tiles tx .. tx + width from M's 16 entries m[e] + tx: Y[i][j] + tx, i = row, j = column.
template <class V>
inline void winograd_output_tiles(const float* const* m, int64_t tx, float* const* Y) {
  V r[2][4];
  for (int j = 0; j < 4; ++j) {  // A^T m
    const V m0 = V::load(m[j] + tx), m1 = V::load(m[4 + j] + tx), m2 = V::load(m[8 + j] + tx),
            m3 = V::load(m[12 + j] + tx);
    r[0][j] = m0 + m1 + m2;
    r[1][j] = m1 - m2 - m3;
  }
  for (int i = 0; i < 2; ++i) {  // (A^T m) A
    (r[i][0] + r[i][1] + r[i][2]).store(Y[i * 2 + 0] + tx);
    (r[i][1] - r[i][2] - r[i][3]).store(Y[i * 2 + 1] + tx);
  }
}
}  // namespace detail

/// V[e][c][t] = (B^T d B)[e] for the tiles of images n0 .. n0 + nb (T tiles in all), vectorized over
/// the tiles of a tile row.
inline void winograd_input_transform(const Conv2dParams& p, const float* x, const ConvStrides& xs, int64_t n0,
                                     int64_t nb, int64_t TH, int64_t TW, float* V) {
  using Vf = Vec<float>;
  const int64_t T = nb * TH * TW, ph = p.padding[0], pw = p.padding[1];
  parallel_for(0, p.Cin, 1, [&](int64_t c0, int64_t c1) {
    std::vector<float> rows(size_t(8 * (TW + 1)));  // E[0..3], O[0..3], TW + 1 each
    const float* E[4];
    const float* O[4];
    for (int i = 0; i < 4; ++i) E[i] = rows.data() + i * (TW + 1), O[i] = rows.data() + (4 + i) * (TW + 1);
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t n = 0; n < nb; ++n) {
        const float* xc = x + (n0 + n) * xs[0] + c * xs[1];
        for (int64_t ty = 0; ty < TH; ++ty) {
          for (int i = 0; i < 4; ++i) {  // input row 2 ty - ph + i, columns -pw .. 2 TW + 2 - pw, split even/odd
            const int64_t yy = 2 * ty - ph + i;
            float* e = rows.data() + i * (TW + 1);
            float* o = rows.data() + (4 + i) * (TW + 1);
            const bool in = yy >= 0 && yy < p.H;
            for (int64_t k = 0; k <= TW; ++k) {
              const int64_t xe = 2 * k - pw, xo = xe + 1;
              e[k] = in && xe >= 0 && xe < p.W ? xc[yy * xs[2] + xe * xs[3]] : 0.f;
              o[k] = in && xo >= 0 && xo < p.W ? xc[yy * xs[2] + xo * xs[3]] : 0.f;
            }
          }
          float* out[16];
          for (int e = 0; e < 16; ++e) out[e] = V + (int64_t(e) * p.Cin + c) * T + (n * TH + ty) * TW;
          int64_t tx = 0;
          for (; tx + Vf::size <= TW; tx += Vf::size) detail::winograd_input_tiles<Vf>(E, O, tx, out);
          for (; tx < TW; ++tx) detail::winograd_input_tiles<detail::WinoScalar>(E, O, tx, out);
        }
      }
  });
}

/// out[n0 + n][o][2x2 block of t] = A^T M[.][o][t] A + b[o] (blocks cut at the map's edge), vectorized
/// over the tiles of a tile row.
inline void winograd_output_transform(const Conv2dParams& p, const float* M, const float* b, int64_t n0,
                                      int64_t nb, int64_t TH, int64_t TW, float* out) {
  using Vf = Vec<float>;
  const int64_t T = nb * TH * TW, OH = p.OH(), OW = p.OW(), Cout = p.Cout;
  parallel_for(0, Cout, 1, [&](int64_t o0, int64_t o1) {
    std::vector<float> ys(size_t(4 * TW));  // Y[i][j]: output row 2 ty + i, columns 2 tx + j
    float* Y[4];
    for (int k = 0; k < 4; ++k) Y[k] = ys.data() + k * TW;
    for (int64_t o = o0; o < o1; ++o) {
      const float bias = b ? b[o] : 0.f;
      for (int64_t n = 0; n < nb; ++n) {
        float* oc = out + ((n0 + n) * Cout + o) * OH * OW;
        for (int64_t ty = 0; ty < TH; ++ty) {
          const float* m[16];
          for (int e = 0; e < 16; ++e) m[e] = M + (int64_t(e) * Cout + o) * T + (n * TH + ty) * TW;
          int64_t tx = 0;
          for (; tx + Vf::size <= TW; tx += Vf::size) detail::winograd_output_tiles<Vf>(m, tx, Y);
          for (; tx < TW; ++tx) detail::winograd_output_tiles<detail::WinoScalar>(m, tx, Y);
          for (int i = 0; i < 2 && 2 * ty + i < OH; ++i) {
            float* row = oc + (2 * ty + i) * OW;
            for (int64_t z = 0; z < OW; ++z) row[z] = Y[i * 2 + (z & 1)][z >> 1] + bias;
          }
        }
      }
    }
  });
}

/// The forward of a conv that conv2d_winograd_applies to: out (contiguous NCHW) = conv(x, w) + b.
inline void conv2d_fwd_winograd(const Conv2dParams& p, const float* x, const ConvStrides& xs, const float* w,
                                const float* b, float* out) {
  const int64_t OH = p.OH(), OW = p.OW(), TH = (OH + 1) / 2, TW = (OW + 1) / 2, per_image = TH * TW;
  if (p.B == 0 || OH <= 0 || OW <= 0) return;
  const int64_t widest = std::max(p.Cin, p.Cout);
  const int64_t nb = std::clamp<int64_t>(kWinogradMaxElems / (16 * widest * per_image), 1, p.B);
  std::vector<float> U(size_t(16 * p.Cout * p.Cin)), V(size_t(16 * p.Cin * nb * per_image)),
      M(size_t(16 * p.Cout * nb * per_image));
  winograd_filter_transform(p, w, U.data());
  for (int64_t n0 = 0; n0 < p.B; n0 += nb) {
    const int64_t k = std::min(nb, p.B - n0), T = k * per_image;
    winograd_input_transform(p, x, xs, n0, k, TH, TW, V.data());
    for (int64_t e = 0; e < 16; ++e)  // M[e] = U[e] @ V[e]: [Cout x Cin] @ [Cin x T]
      gemm<float>(p.Cout, T, p.Cin, 1.f, U.data() + e * p.Cout * p.Cin, p.Cin, 1, V.data() + e * p.Cin * T, T, 1,
                  0.f, M.data() + e * p.Cout * T, T, 1);
    winograd_output_transform(p, M.data(), b, n0, k, TH, TW, out);
  }
}

}  // namespace strata::cpu
