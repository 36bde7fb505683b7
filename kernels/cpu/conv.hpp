// 2-D convolution on the CPU (cross-correlation, as torch.nn.functional.conv2d), forward and backward.
//
//   x: [B, Cin, H, W], w: [Cout, Cin/G, kH, kW], b: [Cout], out: [B, Cout, OH, OW], G = groups
//   OH = (H + 2 ph - dh (kH - 1) - 1) / sh + 1   (OW likewise; integer division rounds down)
//   out[n, o, y, z] = b[o] + sum_{c < Cin/G, i < kH, j < kW} w[o, c, i, j] x[n, g Cin/G + c, ih, iw]
//     ih = y sh - ph + i dh, iw = z sw - pw + j dw, g = o / (Cout/G); x reads as 0 outside the image
//   backward: dx[n, g Cin/G + c, ih, iw] += w[o, c, i, j] dout[n, o, y, z]   (summed over o, i, j, y, z)
//             dw[o, c, i, j] = sum_{n, y, z} dout[n, o, y, z] x[n, g Cin/G + c, ih, iw]
//             db[o] = sum_{n, y, z} dout[n, o, y, z]
// x may have any strides (xs: element strides of n, c, h, w); w, b, dw, db are contiguous; out,
// dout, dx are contiguous NCHW, or channels-last NHWC ([B][H][W][C] memory) when asked
// (ConvEpilogue::channels_last for out, channels_last for dout and dx). The forward's epilogue adds
// b and, with ConvEpilogue::relu, applies max(., 0) in its store. Element types: float and double
// (the op layer computes f16/bf16 in float).
//
// References (conv2d_fwd_ref, conv2d_bwd_data_ref, conv2d_bwd_weight_ref): the plain loops of the
// formulas above, summing in double: the source of truth every path is tested against.
//
// Paths (ConvAlgo; conv2d_choose picks one by shape, tests and benchmarks can force one):
// - direct (one group, >= kConvDirectMinChannels channels each side, the usual CNN layer): NHWC
//   register tiles fed by pointers, no im2col; see kernels/cpu/conv_direct.hpp.
// - im2col + GEMM (Chellapilla, Puri & Simard, "High Performance Convolutional Neural Networks for
//   Document Processing", 2006; Caffe's and PyTorch's slow_conv2d), for groups, few channels and a
//   few large images. Per group g and chunk of nb images, im2col writes col[K][S], K = Cin/G kH kW
//   rows (c, i, j), S = nb OH OW columns (n, y, z), col[(c, i, j)][(n, y, z)] = x[n, g Cin/G + c,
//   ih, iw] (0 in the padding); then, with cpu::gemm,
//     forward: out_g[Cout/G][S] = w_g[Cout/G][K] @ col[K][S], scattered to [n][o][y z], + b
//     dw:      dw_g[Cout/G][K] += dout_g[Cout/G][S] @ col^T[S][K]
//     dx:      dcol[K][S] = w_g^T[K][Cout/G] @ dout_g[Cout/G][S], then col2im adds dcol into dx
//   Several images share one GEMM when maps are small (a 2x2 map alone is a 4-column GEMM, far too
//   thin to run at speed): S is about kConvTargetCols, the col buffer at most kConvMaxColElems.
//   A 1x1, stride-1, unpadded conv on large maps needs no im2col: x's [Cin][H W] plane is col.
// - depthwise (G == Cin: one input channel per group, any number of outputs each; so also a
//   1-channel input like an image stem): loops over zero-padded planes, vectorized along rows.
//   Stems (Cin == 1, G == 1) with a channels-last out or a stride along W (where the row loops
//   would be scalar) take register tiles of 3 pixels x 32 output channels (conv_stem_fwd), and
//   their dw (3x3 and smaller, channels-last or transposed dout) 16 channels x 9 taps (conv_stem_dw).
// Channels-last: the direct path reads x, dout and writes out, dx in place (no NCHW <-> NHWC
// transposes; conv_direct.hpp); the im2col and depthwise paths run on NCHW copies.
// bf16 operands (Conv2dParams::round_bf16, set by autocast): x, w and dout are taken as their
// nearest bf16 values (round_to_bf16, kernels/cpu/simd.hpp) and multiplied with float accumulation,
// exactly as on bf16-rounded copies. The direct path rounds x and dout in the transposes and copies
// it makes anyway; the other paths run on rounded copies; w is rounded into a copy (it is small).
// db sums dout as given (a sum, not a product: no bf16 operand). On AVX512-BF16 builds the direct
// path's forward and dx multiply bf16 channel pairs and its dw bf16 pixel pairs with vdpbf16ps instead
// (STRATA_CONV_BF16_PAIRS, conv_direct.hpp): the same products, summed in another order.
// Threads (direct and im2col): with at least as many images as threads, the batch is cut into
// chunks and the chunks into groups of consecutive chunks, about kConvGroupsPerThread per thread,
// which the threads take from a counter (a thread slowed by another process takes fewer), each
// running single-threaded tiles or GEMMs on its own scratch. dw: a partial per group, summed in
// group order, so results depend only on the thread count, never on the scheduling. Otherwise
// the chunks run in turn, with im2col/col2im split over channels and each GEMM splitting itself.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/cpu/conv_direct.hpp"
#include "kernels/cpu/gemm.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

/// Sizes and hyper-parameters of one conv2d problem (designated initializers read well).
struct Conv2dParams {
  int64_t B = 1, Cin = 1, H = 1, W = 1;  // x: [B, Cin, H, W]
  int64_t Cout = 1, kH = 1, kW = 1;      // w: [Cout, Cin / groups, kH, kW]
  std::array<int64_t, 2> stride{1, 1}, padding{0, 0}, dilation{1, 1};
  int64_t groups = 1;
  bool round_bf16 = false;  // x, w, dout rounded to bf16 as they are read (autocast; see the top)
  int64_t OH() const { return (H + 2 * padding[0] - dilation[0] * (kH - 1) - 1) / stride[0] + 1; }
  int64_t OW() const { return (W + 2 * padding[1] - dilation[1] * (kW - 1) - 1) / stride[1] + 1; }
};

/// Element strides of x's four dims (n, c, h, w).
using ConvStrides = std::array<int64_t, 4>;

/// How the forward stores out: its layout and an activation fused into the store.
struct ConvEpilogue {
  bool channels_last = false;  // out stored [B][OH][OW][Cout] (else contiguous [B][Cout][OH][OW])
  bool relu = false;           // out = max(conv + b, 0)
};

/// Columns (batch x output pixels) one im2col + GEMM aims at, and the col buffer's cap in elements.
inline constexpr int64_t kConvTargetCols = 1024;
inline constexpr int64_t kConvMaxColElems = int64_t(1) << 19;
/// Fewest input and output channels for the NHWC direct path (fewer: im2col + GEMM does better).
inline constexpr int64_t kConvDirectMinChannels = 8;
/// Groups of chunks per thread (dynamic load balance), and the cap on all dw partials' elements.
inline constexpr int64_t kConvGroupsPerThread = 4;
inline constexpr int64_t kConvMaxPartialElems = int64_t(1) << 22;

// ================================================================================ reference

/// out = conv2d(x, w) + b by the formula (b may be null); sums in double.
template <class T>
void conv2d_fwd_ref(const Conv2dParams& p, const T* x, const ConvStrides& xs,  // x: [B, Cin, H, W]
                    const T* w, const T* b,                                    // w: [Cout, Cin/G, kH, kW], b: [Cout]
                    T* out) {                                                  // out: [B, Cout, OH, OW]
  const int64_t OH = p.OH(), OW = p.OW(), cin_g = p.Cin / p.groups, cout_g = p.Cout / p.groups;
  for (int64_t n = 0; n < p.B; ++n)
    for (int64_t o = 0; o < p.Cout; ++o)
      for (int64_t y = 0; y < OH; ++y)
        for (int64_t z = 0; z < OW; ++z) {
          double acc = b ? double(b[o]) : 0.0;
          for (int64_t c = 0; c < cin_g; ++c)
            for (int64_t i = 0; i < p.kH; ++i)
              for (int64_t j = 0; j < p.kW; ++j) {
                // the input pixel under tap (i, j); outside the image it is the zero padding
                const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
                const int64_t iw = z * p.stride[1] - p.padding[1] + j * p.dilation[1];
                if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                const int64_t ci = o / cout_g * cin_g + c;  // the group's input channel
                acc += double(x[n * xs[0] + ci * xs[1] + ih * xs[2] + iw * xs[3]]) *
                       double(w[((o * cin_g + c) * p.kH + i) * p.kW + j]);
              }
          out[((n * p.Cout + o) * OH + y) * OW + z] = T(acc);
        }
}

/// dx = the gradient of conv2d with respect to x: every output pixel's dout spread back through
/// the taps that read it; sums in double.
template <class T>
void conv2d_bwd_data_ref(const Conv2dParams& p, const T* dout, const T* w,  // dout: [B, Cout, OH, OW]
                         T* dx) {                                            // dx: [B, Cin, H, W]
  const int64_t OH = p.OH(), OW = p.OW(), cin_g = p.Cin / p.groups, cout_g = p.Cout / p.groups;
  std::vector<double> acc(size_t(p.B * p.Cin * p.H * p.W), 0.0);
  for (int64_t n = 0; n < p.B; ++n)
    for (int64_t o = 0; o < p.Cout; ++o)
      for (int64_t y = 0; y < OH; ++y)
        for (int64_t z = 0; z < OW; ++z)
          for (int64_t c = 0; c < cin_g; ++c)
            for (int64_t i = 0; i < p.kH; ++i)
              for (int64_t j = 0; j < p.kW; ++j) {
                const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
                const int64_t iw = z * p.stride[1] - p.padding[1] + j * p.dilation[1];
                if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;  // a padding tap: no input
                const int64_t ci = o / cout_g * cin_g + c;
                acc[size_t(((n * p.Cin + ci) * p.H + ih) * p.W + iw)] +=
                    double(dout[((n * p.Cout + o) * OH + y) * OW + z]) * double(w[((o * cin_g + c) * p.kH + i) * p.kW + j]);
              }
  for (size_t k = 0; k < acc.size(); ++k) dx[k] = T(acc[k]);
}

/// dw (and db unless null) = the gradients of conv2d with respect to w and b; sums in double.
template <class T>
void conv2d_bwd_weight_ref(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* dout,
                           T* dw, T* db) {  // dw: [Cout, Cin/G, kH, kW], db: [Cout]
  const int64_t OH = p.OH(), OW = p.OW(), cin_g = p.Cin / p.groups, cout_g = p.Cout / p.groups;
  for (int64_t o = 0; o < p.Cout; ++o) {
    for (int64_t c = 0; c < cin_g; ++c)
      for (int64_t i = 0; i < p.kH; ++i)
        for (int64_t j = 0; j < p.kW; ++j) {
          double acc = 0;  // sum over images and output pixels of dout times the input the tap saw
          for (int64_t n = 0; n < p.B; ++n)
            for (int64_t y = 0; y < OH; ++y)
              for (int64_t z = 0; z < OW; ++z) {
                const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
                const int64_t iw = z * p.stride[1] - p.padding[1] + j * p.dilation[1];
                if (ih < 0 || ih >= p.H || iw < 0 || iw >= p.W) continue;
                const int64_t ci = o / cout_g * cin_g + c;
                acc += double(dout[((n * p.Cout + o) * OH + y) * OW + z]) *
                       double(x[n * xs[0] + ci * xs[1] + ih * xs[2] + iw * xs[3]]);
              }
          dw[((o * cin_g + c) * p.kH + i) * p.kW + j] = T(acc);
        }
    if (db) {  // the bias feeds every output pixel of channel o
      double acc = 0;
      for (int64_t n = 0; n < p.B; ++n)
        for (int64_t k = 0; k < OH * OW; ++k) acc += double(dout[(n * p.Cout + o) * OH * OW + k]);
      db[o] = T(acc);
    }
  }
}

namespace detail {

// ================================================================================ helpers

/// dst[0, n) += a * src[0, n) (a == 1: plain add), vectorized.
template <class T>
void conv_axpy(int64_t n, T a, const T* src, T* dst) {
  using V = Vec<T>;
  int64_t k = 0;
  const V va(a);
  for (; k + V::size <= n; k += V::size) vfmadd(va, V::load(src + k), V::load(dst + k)).store(dst + k);
  for (; k < n; ++k) dst[k] += a * src[k];
}

/// How the batch is cut: chunks of nb images, consecutive chunks gathered into `groups` (the unit of
/// work a thread takes, and of the dw partial sums).
struct ConvPlan {
  int64_t nb = 1, chunks = 1, groups = 1;
};

/// nb from the output map size and the col rows per image (0: no col buffer), see the file comment;
/// partial: the elements of one group's dw partial (0: none), which bounds the group count.
inline ConvPlan conv_plan(const Conv2dParams& p, int64_t col_rows, double flops, int64_t partial = 0) {
  const int64_t ohw = std::max<int64_t>(p.OH() * p.OW(), 1);
  const int threads = strata::detail::in_parallel_region ? 1 : num_threads();
  ConvPlan plan;
  plan.nb = (kConvTargetCols + ohw - 1) / ohw;
  if (col_rows > 0) plan.nb = std::min(plan.nb, std::max<int64_t>(1, kConvMaxColElems / (col_rows * ohw)));
  plan.nb = std::clamp<int64_t>(plan.nb, 1, std::max<int64_t>(p.B, 1));
  plan.chunks = (p.B + plan.nb - 1) / plan.nb;
  // enough images for every thread and enough work to pay for waking them: about
  // kConvGroupsPerThread groups per thread, handed out dynamically (a thread slowed down by another
  // process on a shared machine just takes fewer), as many as the dw partials' memory allows
  if (threads > 1 && p.B >= threads && flops >= double(1 << 20)) {
    int64_t groups = std::min<int64_t>(p.B, kConvGroupsPerThread * threads);
    if (partial > 0) groups = std::min(groups, std::max<int64_t>(threads, kConvMaxPartialElems / partial));
    plan.chunks = std::max(plan.chunks, groups);
    plan.nb = (p.B + plan.chunks - 1) / plan.chunks;
    plan.chunks = (p.B + plan.nb - 1) / plan.nb;
    plan.groups = std::min(groups, plan.chunks);
  }
  return plan;
}

/// Calls f(group, n0, nb) for every chunk of images. Groups (runs of consecutive chunks, each run
/// in order) are taken by the threads from a counter; one group means a plain loop on the caller.
template <class F>
void conv_for_chunks(const ConvPlan& plan, int64_t B, F&& f) {
  const int64_t per = (plan.chunks + plan.groups - 1) / plan.groups;
  auto run = [&](int64_t g) {
    for (int64_t c = g * per; c < std::min(plan.chunks, (g + 1) * per); ++c) {
      const int64_t n0 = c * plan.nb;
      f(g, n0, std::min(plan.nb, B - n0));
    }
  };
  if (plan.groups == 1) return run(0);
  std::atomic<int64_t> next{0};
  parallel_for(0, std::min<int64_t>(num_threads(), plan.groups), 1, [&](int64_t, int64_t) {
    for (int64_t g = next++; g < plan.groups; g = next++) run(g);
  });
}

// ================================================================================ im2col / col2im

/// col[K][S] for images [n0, n0 + nb) and input channels [c0, c0 + Cin/G): K = Cin/G kH kW rows
/// (c, i, j), S = nb OH OW columns (n, y, z); the padding reads as 0. Split over channels when
/// called outside a parallel region.
template <class T>
void conv_im2col(const Conv2dParams& p, const T* x, const ConvStrides& xs, int64_t n0, int64_t nb, int64_t c0, T* col) {
  const int64_t OH = p.OH(), OW = p.OW(), cin_g = p.Cin / p.groups, S = nb * OH * OW;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(p.kH * p.kW * S, 1));
  parallel_for(0, cin_g, grain, [&](int64_t clo, int64_t chi) {
    for (int64_t c = clo; c < chi; ++c)
      for (int64_t i = 0; i < p.kH; ++i)
        for (int64_t j = 0; j < p.kW; ++j) {
          T* row = col + ((c * p.kH + i) * p.kW + j) * S;
          int64_t zlo, zhi;  // output columns whose tap is inside the image (same for every row)
          conv_valid_range(OW, p.W, p.stride[1], p.padding[1], j * p.dilation[1], zlo, zhi);
          const int64_t iw0 = zlo * p.stride[1] - p.padding[1] + j * p.dilation[1];
          const bool unit = p.stride[1] == 1 && xs[3] == 1;
          for (int64_t n = 0; n < nb; ++n) {
            const T* xc = x + (n0 + n) * xs[0] + (c0 + c) * xs[1];
            for (int64_t y = 0; y < OH; ++y, row += OW) {
              const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
              if (ih < 0 || ih >= p.H) {  // the whole row is padding
                std::fill(row, row + OW, T(0));
                continue;
              }
              std::fill(row, row + zlo, T(0));
              const T* src = xc + ih * xs[2] + iw0 * xs[3];
              if (unit) std::memcpy(row + zlo, src, size_t(zhi - zlo) * sizeof(T));
              else
                for (int64_t z = zlo; z < zhi; ++z) row[z] = src[(z - zlo) * p.stride[1] * xs[3]];
              std::fill(row + zhi, row + OW, T(0));
            }
          }
        }
  });
}

/// dx[n0 + n, c0 + c, ...] += dcol[(c, i, j)][(n, y, z)]: the adjoint of conv_im2col; dx contiguous.
template <class T>
void conv_col2im(const Conv2dParams& p, const T* dcol, int64_t n0, int64_t nb, int64_t c0, T* dx) {
  const int64_t OH = p.OH(), OW = p.OW(), cin_g = p.Cin / p.groups, S = nb * OH * OW;
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(p.kH * p.kW * S, 1));
  parallel_for(0, cin_g, grain, [&](int64_t clo, int64_t chi) {
    for (int64_t c = clo; c < chi; ++c)
      for (int64_t i = 0; i < p.kH; ++i)
        for (int64_t j = 0; j < p.kW; ++j) {
          const T* row = dcol + ((c * p.kH + i) * p.kW + j) * S;
          int64_t zlo, zhi;
          conv_valid_range(OW, p.W, p.stride[1], p.padding[1], j * p.dilation[1], zlo, zhi);
          const int64_t iw0 = zlo * p.stride[1] - p.padding[1] + j * p.dilation[1];
          for (int64_t n = 0; n < nb; ++n) {
            T* xc = dx + ((n0 + n) * p.Cin + c0 + c) * p.H * p.W;
            for (int64_t y = 0; y < OH; ++y, row += OW) {
              const int64_t ih = y * p.stride[0] - p.padding[0] + i * p.dilation[0];
              if (ih < 0 || ih >= p.H) continue;
              T* dst = xc + ih * p.W + iw0;
              if (p.stride[1] == 1) conv_axpy<T>(zhi - zlo, T(1), row + zlo, dst);
              else
                for (int64_t z = zlo; z < zhi; ++z) dst[(z - zlo) * p.stride[1]] += row[z];
            }
          }
        }
  });
}

// ================================================================================ depthwise

/// Width of a zero-padded plane for the depthwise loops: the padded input, and room for rows of
/// 4 vectors read past the last output column.
inline int64_t conv_depthwise_wp(const Conv2dParams& p, int64_t vs) {
  return std::max(p.W + 2 * p.padding[1], conv_round_up(p.OW(), 4 * vs) + (p.kW - 1) * p.dilation[1]);
}

/// xp[H + 2 ph][wp] = the plane x (strides xs[2], xs[3]) with a zero border of ph rows and pw columns.
template <class T>
void conv_pad_plane(const Conv2dParams& p, const T* x, const ConvStrides& xs, int64_t wp, T* xp) {
  const int64_t ph = p.padding[0], pw = p.padding[1];
  std::fill(xp, xp + ph * wp, T(0));
  for (int64_t h = 0; h < p.H; ++h) {
    T* row = xp + (h + ph) * wp;
    std::fill(row, row + pw, T(0));
    if (xs[3] == 1) std::memcpy(row + pw, x + h * xs[2], size_t(p.W) * sizeof(T));
    else
      for (int64_t w = 0; w < p.W; ++w) row[pw + w] = x[h * xs[2] + w * xs[3]];
    std::fill(row + pw + p.W, row + wp, T(0));
  }
  std::fill(xp + (p.H + ph) * wp, xp + (p.H + 2 * ph) * wp, T(0));
}

/// orow[r oh + (0, NVEC VS)) (at most OW values a row) = bo + sum_{i, j} wo[i kW + j] r0[r sh wp + i dh +
/// j dw + (0, NVEC VS)] for r < ROWS, then max(., 0) when relu: ROWS x NVEC vectors of accumulators
/// in registers, one broadcast weight per tap. Reads of r0 past OW stay inside the padded rows
/// (conv_depthwise_wp).
template <class T, int ROWS, int NVEC>
void conv_depthwise_rows(const Conv2dParams& p, const T* r0, int64_t rstep, const T* wo, T bo, int64_t dh, int64_t dw,
                         T* orow, int64_t OW, int64_t z0, bool relu) {
  using V = Vec<T>;
  constexpr int VS = V::size;
  V acc[ROWS][NVEC];
  STRATA_UNROLL(4)
  for (int r = 0; r < ROWS; ++r)
    STRATA_UNROLL(4)
    for (int k = 0; k < NVEC; ++k) acc[r][k] = V(bo);
  for (int64_t i = 0; i < p.kH; ++i)
    for (int64_t j = 0; j < p.kW; ++j) {
      const V wv(wo[i * p.kW + j]);
      const T* src = r0 + i * dh + z0 + j * dw;
      STRATA_UNROLL(4)
      for (int r = 0; r < ROWS; ++r)
        STRATA_UNROLL(4)
        for (int k = 0; k < NVEC; ++k) acc[r][k] = vfmadd(wv, V::load(src + r * rstep + k * VS), acc[r][k]);
    }
  STRATA_UNROLL(4)
  for (int r = 0; r < ROWS; ++r)
    STRATA_UNROLL(4)
    for (int k = 0; k < NVEC; ++k) {
      if (relu) acc[r][k] = vmax(V(T(0)), acc[r][k]);
      const int64_t z = z0 + k * VS;
      if (z + VS <= OW) {
        acc[r][k].store(orow + r * OW + z);
      } else if (z < OW) {  // the row's last, partial vector: a masked store (GCC makes a copy loop a
                            // memmove call, which took a third of the stem's time)
#if defined(__AVX512F__)
        const auto m = static_cast<uint16_t>((1u << (OW - z)) - 1);
        if constexpr (std::is_same_v<T, float>) _mm512_mask_storeu_ps(orow + r * OW + z, __mmask16(m), acc[r][k].v);
        else _mm512_mask_storeu_pd(orow + r * OW + z, __mmask8(m), acc[r][k].v);
#else
        alignas(64) T buf[VS];
        acc[r][k].store(buf);
        for (int64_t e = 0; e < OW - z; ++e) orow[r * OW + z + e] = buf[e];
#endif
      }
    }
}

/// Depthwise forward (one input channel per group, m = Cout / Cin outputs each; a 1-channel input
/// is the case G = 1): per (image, input channel), its plane zero-padded once, then for each of its
/// m outputs and each output row, 4 vectors of the row accumulated in registers over the taps
/// (stride 1; a scalar loop for other strides). On AVX-512, rows of at most 2 vectors (a 28-wide
/// map: 4 vectors computed 64 columns for 28) go 4 rows x 2 (or 1) vectors at a time, stored with
/// masks: fashion_resnet's 1 -> 16 stem at 28x28 2.0-2.2x faster (batch 256, 1 and 2 threads,
/// in-process A/B, CPU time; 2 rows: 2.0x).
template <class T>
void conv_depthwise_fwd(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* w, const T* b, T* out,
                        bool relu = false) {
  using V = Vec<T>;
  constexpr int VS = V::size;
  const int64_t OH = p.OH(), OW = p.OW(), C = p.Cin, m = p.Cout / C, kk = p.kH * p.kW, wp = conv_depthwise_wp(p, VS);
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0] * wp, dw = p.dilation[1];
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(m * OH * OW * kk, 1));
  parallel_for(0, p.B * C, grain, [&](int64_t lo, int64_t hi) {
    T* xp = conv_scratch<T>(0, (p.H + 2 * p.padding[0]) * wp);
    for (int64_t nc = lo; nc < hi; ++nc) {
      const int64_t n = nc / C, c = nc % C;
      conv_pad_plane(p, x + n * xs[0] + c * xs[1], xs, wp, xp);
      for (int64_t o = c * m; o < (c + 1) * m; ++o) {
        const T* wo = w + o * kk;
        const T bo = b ? b[o] : T(0);
        T* op = out + (n * p.Cout + o) * OH * OW;
        int64_t y = 0;
        if (ConvBlocking<T>::wide && sw == 1 && OW <= 2 * VS) {  // short rows: several at a time
          const int64_t rs = sh * wp;
          if (OW <= VS) {
            for (; y + 4 <= OH; y += 4) conv_depthwise_rows<T, 4, 1>(p, xp + y * rs, rs, wo, bo, dh, dw, op + y * OW, OW, 0, relu);
            for (; y < OH; ++y) conv_depthwise_rows<T, 1, 1>(p, xp + y * rs, rs, wo, bo, dh, dw, op + y * OW, OW, 0, relu);
          } else {
            for (; y + 4 <= OH; y += 4) conv_depthwise_rows<T, 4, 2>(p, xp + y * rs, rs, wo, bo, dh, dw, op + y * OW, OW, 0, relu);
            for (; y < OH; ++y) conv_depthwise_rows<T, 1, 2>(p, xp + y * rs, rs, wo, bo, dh, dw, op + y * OW, OW, 0, relu);
          }
        }
        for (; y < OH; ++y) {
          const T* r0 = xp + y * sh * wp;
          T* orow = op + y * OW;
          if (sw != 1) {
            for (int64_t z = 0; z < OW; ++z) {
              T acc = bo;
              for (int64_t i = 0; i < p.kH; ++i)
                for (int64_t j = 0; j < p.kW; ++j) acc += wo[i * p.kW + j] * r0[i * dh + z * sw + j * dw];
              orow[z] = relu ? vmax(T(0), acc) : acc;
            }
            continue;
          }
          for (int64_t z0 = 0; z0 < OW; z0 += 4 * VS) {
            V acc[4] = {V(bo), V(bo), V(bo), V(bo)};
            for (int64_t i = 0; i < p.kH; ++i)
              for (int64_t j = 0; j < p.kW; ++j) {
                const V wv(wo[i * p.kW + j]);
                const T* src = r0 + i * dh + z0 + j * dw;
                STRATA_UNROLL(4)
                for (int k = 0; k < 4; ++k) acc[k] = vfmadd(wv, V::load(src + k * VS), acc[k]);
              }
            STRATA_UNROLL(4)
            for (int k = 0; k < 4; ++k) {
              if (relu) acc[k] = vmax(V(T(0)), acc[k]);
              const int64_t z = z0 + k * VS;
              if (z + VS <= OW) {
                acc[k].store(orow + z);
              } else if (z < OW) {  // the row's last, partial vector
                alignas(64) T buf[VS];
                acc[k].store(buf);
                for (int64_t e = 0; e < OW - z; ++e) orow[z + e] = buf[e];  // a few values: no memmove call
              }
            }
          }
        }
      }
    }
  });
}

/// acc[i kW + j] += g[z] * r0[i dh + z + j dw] over z < OW (lanes summed later), for `rows` output
/// rows (g steps OW a row, r0 rstep): their share of the depthwise dw, stride 1. KH, KW > 0 fix the
/// kernel size at compile time, so the accumulators stay in registers across the rows (one row a
/// call moved them through memory every row: with the masked tail load, the 1 -> 16 stem's dw at
/// 28x28 1.3x -> 1.7x); 0 takes kh, kw at run time. Reads of r0 past OW must stay inside the
/// padded row (conv_depthwise_wp).
template <class T, int KH, int KW>
void conv_depthwise_dw_row(const T* g, const T* r0, int64_t OW, int64_t dh, int64_t dw, Vec<T>* acc, int64_t kh = KH,
                           int64_t kw = KW, int64_t rows = 1, int64_t rstep = 0) {
  using V = Vec<T>;
  constexpr int VS = V::size;
  constexpr int kRegs = KH > 0 ? KH * KW : 1;
  V a[kRegs];
  if constexpr (KH > 0) {
    STRATA_UNROLL(16)
    for (int t = 0; t < kRegs; ++t) a[t] = acc[t];
  }
  auto step = [&](int64_t z0, const V gv) {
    if constexpr (KH > 0) {
      STRATA_UNROLL(16)
      for (int i = 0; i < KH; ++i)
        STRATA_UNROLL(16)
        for (int j = 0; j < KW; ++j) a[i * KW + j] = vfmadd(gv, V::load(r0 + i * dh + z0 + j * dw), a[i * KW + j]);
    } else {
      for (int64_t i = 0; i < kh; ++i)
        for (int64_t j = 0; j < kw; ++j) acc[i * kw + j] = vfmadd(gv, V::load(r0 + i * dh + z0 + j * dw), acc[i * kw + j]);
    }
  };
  const int64_t full = OW / VS * VS;
  for (int64_t y = 0; y < rows; ++y, g += OW, r0 += rstep) {
    for (int64_t z0 = 0; z0 < full; z0 += VS) step(z0, V::load(g + z0));
    if (full < OW) {  // the row's last partial vector, zero past OW
#if defined(__AVX512F__)
      // a masked load: the copy through a buffer stalled on store forwarding (a third of the stem's dw)
      const auto m = static_cast<uint16_t>((1u << (OW - full)) - 1);
      if constexpr (std::is_same_v<T, float>) step(full, V(_mm512_maskz_loadu_ps(__mmask16(m), g + full)));
      else step(full, V(_mm512_maskz_loadu_pd(__mmask8(m), g + full)));
#else
      alignas(64) T tail[VS] = {};
      for (int64_t z = full; z < OW; ++z) tail[z - full] = g[z];
      step(full, V::load(tail));
#endif
    }
  }
  if constexpr (KH > 0) {
    STRATA_UNROLL(16)
    for (int t = 0; t < kRegs; ++t) acc[t] = a[t];
  }
}

/// Depthwise backward. dx: per (image, input channel), the m outputs' dout rows spread back through
/// the taps into a zero-padded plane, whose inside is dx. dw: per output channel, for each image
/// the taps' dot products of dout rows with the padded input plane, in vector accumulators (one
/// per tap), images summed in double in order.
template <class T>
void conv_depthwise_bwd(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* w, const T* dout,
                        T* dx, T* dw) {
  using V = Vec<T>;
  constexpr int VS = V::size;
  const int64_t OH = p.OH(), OW = p.OW(), C = p.Cin, m = p.Cout / C, kk = p.kH * p.kW, wp = conv_depthwise_wp(p, VS);
  const int64_t sh = p.stride[0], sw = p.stride[1], dh = p.dilation[0] * wp, dwc = p.dilation[1];
  const int64_t hp = p.H + 2 * p.padding[0];
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(m * OH * OW * kk, 1));
  if (dx)
    parallel_for(0, p.B * C, grain, [&](int64_t lo, int64_t hi) {
      T* xp = conv_scratch<T>(0, hp * wp);
      for (int64_t nc = lo; nc < hi; ++nc) {
        const int64_t n = nc / C, c = nc % C;
        std::fill(xp, xp + hp * wp, T(0));
        for (int64_t o = c * m; o < (c + 1) * m; ++o) {
          const T* wo = w + o * kk;
          for (int64_t y = 0; y < OH; ++y) {
            const T* g = dout + ((n * p.Cout + o) * OH + y) * OW;
            for (int64_t i = 0; i < p.kH; ++i)
              for (int64_t j = 0; j < p.kW; ++j) {
                T* dst = xp + y * sh * wp + i * dh + j * dwc;
                if (sw == 1) conv_axpy<T>(OW, wo[i * p.kW + j], g, dst);
                else
                  for (int64_t z = 0; z < OW; ++z) dst[z * sw] += wo[i * p.kW + j] * g[z];
              }
          }
        }
        T* dxc = dx + nc * p.H * p.W;
        for (int64_t h = 0; h < p.H; ++h)
          std::copy(xp + (h + p.padding[0]) * wp + p.padding[1], xp + (h + p.padding[0]) * wp + p.padding[1] + p.W,
                    dxc + h * p.W);
      }
    });
  if (dw)  // a thread's outputs [lo, hi): each image's plane of an input channel is padded once
    parallel_for(0, p.Cout, std::max<int64_t>(1, grain / std::max<int64_t>(p.B, 1)), [&](int64_t lo, int64_t hi) {
      T* xp = conv_scratch<T>(0, hp * wp);
      std::vector<V> acc(static_cast<size_t>(kk));
      std::vector<double> sum(static_cast<size_t>((hi - lo) * kk), 0.0);
      for (int64_t n = 0; n < p.B; ++n)
        for (int64_t o = lo; o < hi; ++o) {
          if (o == lo || o % m == 0) conv_pad_plane(p, x + n * xs[0] + (o / m) * xs[1], xs, wp, xp);
          std::fill(acc.begin(), acc.end(), V(T(0)));
          double* so = sum.data() + (o - lo) * kk;
          if (sw == 1) {  // all the rows in one call: a 3 x 3 kernel's accumulators stay in registers
            const T* g = dout + (n * p.Cout + o) * OH * OW;
            if (p.kH == 3 && p.kW == 3) conv_depthwise_dw_row<T, 3, 3>(g, xp, OW, dh, dwc, acc.data(), 3, 3, OH, sh * wp);
            else conv_depthwise_dw_row<T, 0, 0>(g, xp, OW, dh, dwc, acc.data(), p.kH, p.kW, OH, sh * wp);
          }
          for (int64_t y = 0; y < OH && sw != 1; ++y) {
            const T* g = dout + ((n * p.Cout + o) * OH + y) * OW;
            const T* r0 = xp + y * sh * wp;
            for (int64_t t = 0; t < kk; ++t) {
              T r = 0;
              for (int64_t z = 0; z < OW; ++z) r += g[z] * r0[t / p.kW * dh + z * sw + t % p.kW * dwc];
              so[t] += double(r);
            }
          }
          for (int64_t t = 0; t < kk; ++t) so[t] += double(reduce_add(acc[size_t(t)]));
        }
      for (int64_t o = lo; o < hi; ++o)
        for (int64_t t = 0; t < kk; ++t) dw[o * kk + t] = T(sum[size_t((o - lo) * kk + t)]);
    });
}

// ================================================================================ stems (1 input channel)

/// A 1-input-channel conv (an image stem, groups == 1) with channels-last out, any stride: per image,
/// its plane zero-padded once; per output row, ZB pixels x 32 output channels (4 vectors) in
/// registers, each tap one broadcast of the pixel's input and 4 FMAs with the tap's weight row
/// (weights packed wt[t][o], o padded to a whole vector). out rows ld apart ([B][OH][OW][ld]);
/// bias (may be null) and relu: the epilogue.
template <class T>
void conv_stem_fwd(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* w, const T* b, T* out,
                   int64_t ld, bool relu) {
  using V = Vec<T>;
  constexpr int VS = V::size, NV = 4, ZB = 3;
  const int64_t OH = p.OH(), OW = p.OW(), kk = p.kH * p.kW, cpad = conv_round_up(p.Cout, VS);
  const int64_t wp = p.W + 2 * p.padding[1] + p.stride[1] * ZB, hp = p.H + 2 * p.padding[0];
  std::vector<T> wt(size_t(kk * cpad), T(0)), bias(size_t(cpad), T(0));
  for (int64_t o = 0; o < p.Cout; ++o) {
    for (int64_t t = 0; t < kk; ++t) wt[size_t(t * cpad + o)] = w[o * kk + t];
    bias[size_t(o)] = b ? b[o] : T(0);
  }
  std::vector<int64_t> toff(static_cast<size_t>(kk));  // tap t's offset in the padded plane
  for (int64_t t = 0; t < kk; ++t) toff[size_t(t)] = t / p.kW * p.dilation[0] * wp + t % p.kW * p.dilation[1];
  const int64_t sw = p.stride[1];
  parallel_for(0, p.B, 1, [&](int64_t lo, int64_t hi) {
    T* xp = conv_scratch<T>(0, hp * wp);
    alignas(64) T tail[NV * VS];
    for (int64_t n = lo; n < hi; ++n) {
      conv_pad_plane(p, x + n * xs[0], xs, wp, xp);
      for (int64_t y = 0; y < OH; ++y) {
        const T* r0 = xp + y * p.stride[0] * wp;
        T* orow = out + (n * OH + y) * OW * ld;
        for (int64_t z0 = 0; z0 < OW; z0 += ZB) {
          const int zn = int(std::min<int64_t>(ZB, OW - z0));
          for (int64_t o0 = 0; o0 < cpad; o0 += NV * VS) {
            const int nv = int(std::min<int64_t>(NV, (cpad - o0) / VS));
            V acc[ZB][NV];
            STRATA_UNROLL(4)
            for (int v = 0; v < NV; ++v) {
              const V bv = v < nv ? V::load(bias.data() + o0 + v * VS) : V(T(0));
              STRATA_UNROLL(3)
              for (int q = 0; q < ZB; ++q) acc[q][v] = bv;
            }
            for (int64_t t = 0; t < kk; ++t) {
              const T* wr = wt.data() + t * cpad + o0;
              const T* xr = r0 + toff[size_t(t)] + z0 * sw;
              V wv[NV];
              STRATA_UNROLL(4)
              for (int v = 0; v < NV; ++v) wv[v] = v < nv ? V::load(wr + v * VS) : V(T(0));
              STRATA_UNROLL(3)
              for (int q = 0; q < ZB; ++q) {
                const V xv(xr[q * sw]);  // past OW: inside the plane's slack, ignored
                STRATA_UNROLL(4)
                for (int v = 0; v < NV; ++v) acc[q][v] = vfmadd(xv, wv[v], acc[q][v]);
              }
            }
            for (int q = 0; q < zn; ++q) {
              T* dst = orow + (z0 + q) * ld + o0;
              for (int v = 0; v < nv; ++v) {
                const V r = relu ? vmax(V(T(0)), acc[q][v]) : acc[q][v];
                if (o0 + (v + 1) * VS <= p.Cout) {
                  r.store(dst + v * VS);
                } else {  // the last channels: a part of a vector
                  r.store(tail);
                  for (int64_t e = 0; e < p.Cout - o0 - v * VS; ++e) dst[v * VS + e] = tail[e];
                }
              }
            }
          }
        }
      }
    }
  });
}

/// dw[o][t] = sum_{n, y, z} dout[n][y][z][o] x(tap t of (y, z)) for a 1-input-channel conv with
/// channels-last dout (rows of Cout): per pixel, 16 output channels (2 vectors) of dout times
/// the broadcast input of each tap, kk x 2 accumulators in registers (kk <= 9: 3x3 and smaller;
/// larger kernels take the depthwise loops). Images in a fixed number of chunks, each summed in
/// double and the chunks added in order: the result depends only on the thread count.
template <class T>
void conv_stem_dw(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* dout, T* dw) {
  using V = Vec<T>;
  constexpr int VS = V::size, NV = 2, KK = 9;
  const int64_t OH = p.OH(), OW = p.OW(), kk = p.kH * p.kW, C = p.Cout;
  const int64_t wp = p.W + 2 * p.padding[1], hp = p.H + 2 * p.padding[0];
  const int threads = strata::detail::in_parallel_region ? 1 : num_threads();
  const int64_t chunks = std::min<int64_t>(p.B, 4 * threads), per = (p.B + chunks - 1) / chunks;
  std::vector<int64_t> toff(static_cast<size_t>(kk));
  for (int64_t t = 0; t < kk; ++t) toff[size_t(t)] = t / p.kW * p.dilation[0] * wp + t % p.kW * p.dilation[1];
  std::vector<double> part(size_t(chunks * C * kk), 0.0);
  parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    T* xp = conv_scratch<T>(0, hp * wp);
    alignas(64) T gbuf[NV * VS], buf[VS];
    for (int64_t ch = lo; ch < hi; ++ch)
      for (int64_t n = ch * per; n < std::min(p.B, (ch + 1) * per); ++n) {
        conv_pad_plane(p, x + n * xs[0], xs, wp, xp);
        for (int64_t o0 = 0; o0 < C; o0 += NV * VS) {
          const int64_t on = std::min<int64_t>(NV * VS, C - o0);
          V acc[KK][NV];
          STRATA_UNROLL(9)
          for (int t = 0; t < KK; ++t)
            STRATA_UNROLL(2)
            for (int v = 0; v < NV; ++v) acc[t][v] = V(T(0));
          for (int64_t y = 0; y < OH; ++y) {
            const T* r0 = xp + y * p.stride[0] * wp;
            const T* g = dout + ((n * OH + y) * OW) * C + o0;
            for (int64_t z = 0; z < OW; ++z, g += C) {
              const T* gp = g;
              if (on < NV * VS) {  // the last channels: zero past C
                std::fill(gbuf, gbuf + NV * VS, T(0));
                std::copy(g, g + on, gbuf);
                gp = gbuf;
              }
              const V g0 = V::load(gp), g1 = V::load(gp + VS);
              const T* xr = r0 + z * p.stride[1];
              STRATA_UNROLL(9)
              for (int t = 0; t < KK; ++t) {
                if (t >= kk) break;
                const V xv(xr[toff[size_t(t)]]);
                acc[t][0] = vfmadd(xv, g0, acc[t][0]);
                acc[t][1] = vfmadd(xv, g1, acc[t][1]);
              }
            }
          }
          double* pc = part.data() + ch * C * kk;
          for (int64_t t = 0; t < kk; ++t)
            for (int v = 0; v < NV; ++v) {
              acc[t][v].store(buf);
              for (int e = 0; e < VS && o0 + v * VS + e < C; ++e) pc[(o0 + v * VS + e) * kk + t] += double(buf[e]);
            }
        }
      }
  });
  for (int64_t k = 0; k < C * kk; ++k) {
    double s = 0;
    for (int64_t ch = 0; ch < chunks; ++ch) s += part[size_t(ch * C * kk + k)];
    dw[k] = T(s);
  }
}

/// Whether conv2d_fwd_kernel takes conv_stem_fwd: one input channel, one group, and a channels-last
/// out or a stride the depthwise row loops do not vectorize.
inline bool conv2d_is_stem(const Conv2dParams& p) { return p.Cin == 1 && p.groups == 1; }

/// A copy of the n values of a contiguous array, each rounded to bf16 (round_to_bf16), in parallel.
template <class T>
std::unique_ptr<T[]> conv_rounded(const T* a, int64_t n) {
  std::unique_ptr<T[]> r(new T[size_t(n)]);
  parallel_for(0, n, int64_t(1) << 15, [&](int64_t lo, int64_t hi) { round_to_bf16(a + lo, r.get() + lo, hi - lo); });
  return r;
}

/// x [B, C, H, W] (strides xs) rounded to bf16 into a dense copy: x's own layout when x is dense
/// (contiguous NCHW or channels-last), else contiguous NCHW; xs is set to the copy's strides.
template <class T>
std::unique_ptr<T[]> conv_rounded_x(const T* x, ConvStrides& xs, int64_t B, int64_t C, int64_t H, int64_t W) {
  const int64_t HW = H * W, n = B * C * HW;
  const bool nchw = xs == ConvStrides{C * HW, HW, W, 1}, nhwc = xs == ConvStrides{HW * C, 1, W * C, C};
  if (nchw || nhwc || n == 0) return conv_rounded(x, n);
  std::unique_ptr<T[]> r(new T[size_t(n)]);
  parallel_for(0, B * C, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t q = lo; q < hi; ++q)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          r[size_t((q * H + h) * W + w)] = round_to_bf16(x[q / C * xs[0] + q % C * xs[1] + h * xs[2] + w * xs[3]]);
  });
  xs = {C * HW, HW, W, 1};
  return r;
}

/// conv2d_bwd_kernel's direct path: chunks of images per thread, dw partials per thread in the
/// NHWC weight layout [taps][round_up(Cin, conv_dw_mr)][round_up(Cout, NR)], summed and transposed
/// at the end.
template <class T>
void conv2d_bwd_direct(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* w, const T* dout, T* dx,
                       T* dw, double flops, bool channels_last, bool round = false) {
  using Cfg = ConvBlocking<T>;
  const int64_t taps = p.kH * p.kW, cinpm = conv_round_up(p.Cin, conv_dw_mr<T>(p.Cin, p.Cout));
  const int64_t cpad = conv_round_up(p.Cout, Cfg::NR);
  const int64_t ohw = p.OH() * p.OW(), dwn = taps * cinpm * cpad;
  std::vector<bf16> wdp;  // the pairs tile's weights (autocast on AVX512-BF16; conv_direct.hpp)
#if STRATA_CONV_BF16_PAIRS
  if constexpr (std::is_same_v<T, float>)
    if (dx && round) wdp = conv_pack_wd_pairs(w, p.Cout, p.Cin, taps);
#endif
  const std::vector<T> wd = dx && wdp.empty() ? conv_pack_wd(w, p.Cout, p.Cin, taps) : std::vector<T>();
  const int64_t per_image = p.H * p.W * (p.Cin + conv_round_up(p.Cin, Cfg::NR)) + ohw * cpad;
  const ConvPlan plan = conv_plan(p, per_image / ohw + 1, flops, dw ? dwn : 0);
  // the groups' partials, zeroed in parallel (a few MiB for wide layers)
  std::unique_ptr<T[]> dwh(dw ? new T[size_t(plan.groups * dwn)] : nullptr);
  if (dw)
    parallel_for(0, plan.groups, 1, [&](int64_t lo, int64_t hi) {
      std::fill(dwh.get() + lo * dwn, dwh.get() + hi * dwn, T(0));
    });
  conv_for_chunks(plan, p.B, [&](int64_t group, int64_t n0, int64_t nb) {
    conv_direct_bwd<T>(p, x, xs, dout, n0, nb, wd.data(), dx, dw ? dwh.get() + group * dwn : nullptr, channels_last,
                       round, wdp.empty() ? nullptr : wdp.data());
  });
  if (!dw) return;
  // sum the groups into the first, in group order, split over contiguous ranges of the partial
  parallel_for(0, dwn, int64_t(1) << 14, [&](int64_t lo, int64_t hi) {
    for (int64_t k = 1; k < plan.groups; ++k) conv_axpy<T>(hi - lo, T(1), dwh.get() + k * dwn + lo, dwh.get() + lo);
  });
  // dw[o][c][t] = dwh[t][c][o]: per input channel c, its taps x outputs block (small) is read
  // along o and written along t
  parallel_for(0, p.Cin, std::max<int64_t>(1, (int64_t(1) << 14) / (taps * p.Cout)), [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c)
      for (int64_t o = 0; o < p.Cout; ++o)
        for (int64_t t = 0; t < taps; ++t) dw[(o * p.Cin + c) * taps + t] = dwh[size_t((t * cinpm + c) * cpad + o)];
  });
}

}  // namespace detail

// ================================================================================ launchers

/// The ways conv2d can run (see the top); `automatic` picks by shape (conv2d_choose).
enum class ConvAlgo { automatic, im2col, direct, depthwise };

/// Which pass a path is chosen for: the forward with an NCHW out, or any other (the backward, and
/// channels-last tensors, which the direct path reads and writes in place).
enum class ConvPass { any, fwd };

/// Whether, on AVX-512, a 1x1 stride-1 unpadded conv from at most 32 input channels runs its NCHW
/// forward faster as im2col (a plain copy for 1x1) + GEMM than on the direct path, whose tiles
/// reduce over those few channels only (one tap), so that their setup and the NCHW <-> NHWC
/// transposes outweigh the FMAs: 16 -> 32 at 14x14 1.7x, 32 -> 64 at 7x7 1.2x, 64 -> 128 at 4x4
/// stays direct (batch 256, 2 threads, in-process A/B). The backward stays direct: dx alone would
/// run 1.4x faster on im2col at 16 -> 32, but dx and dw together share their dout transpose on the
/// direct path, and the split measured no faster. AVX2 keeps the direct path.
inline bool conv2d_pointwise_prefers_gemm(const Conv2dParams& p, ConvPass pass) {
  return detail::ConvBlocking<float>::wide && pass == ConvPass::fwd && p.kH == 1 && p.kW == 1 && p.stride[0] == 1 &&
         p.stride[1] == 1 && p.padding[0] == 0 && p.padding[1] == 0 && p.groups == 1 && p.Cin <= 32;
}

/// The path for problem p: `want` when it applies (direct: one group; depthwise: one input channel
/// per group), im2col when it does not; automatic takes depthwise when it applies, else the direct
/// path for one group with enough channels for its tiles and a batch that splits over the threads
/// (a few large images run faster as im2col + one GEMM that splits itself), except the narrow 1x1
/// forwards of conv2d_pointwise_prefers_gemm.
inline ConvAlgo conv2d_choose(const Conv2dParams& p, double flops, ConvAlgo want = ConvAlgo::automatic,
                              ConvPass pass = ConvPass::any) {
  const bool depthwise = p.groups == p.Cin, direct = p.groups == 1;
  if ((want == ConvAlgo::depthwise && depthwise) || (want == ConvAlgo::direct && direct)) return want;
  if (want != ConvAlgo::automatic) return ConvAlgo::im2col;
  if (depthwise) return ConvAlgo::depthwise;
  const int threads = strata::detail::in_parallel_region ? 1 : num_threads();
  if (direct && p.Cin >= kConvDirectMinChannels && p.Cout >= kConvDirectMinChannels &&
      (threads == 1 || p.B >= threads || flops < double(1 << 20)) && !conv2d_pointwise_prefers_gemm(p, pass))
    return ConvAlgo::direct;
  return ConvAlgo::im2col;
}

/// Whether an im2col-path 1x1 conv can use x's planes as the GEMM operand directly (no im2col).
inline bool conv2d_is_pointwise(const Conv2dParams& p, const ConvStrides& xs) {
  return p.kH == 1 && p.kW == 1 && p.stride[0] == 1 && p.stride[1] == 1 && p.padding[0] == 0 && p.padding[1] == 0 &&
         xs[3] == 1 && xs[2] == p.W && p.H * p.W >= kConvTargetCols;
}

/// out[B, Cout, OH, OW] = conv2d(x, w) + b (b may be null), T = float or double. See the top.
template <class T>
void conv2d_fwd_kernel(const Conv2dParams& p, const T* x, const ConvStrides& xs,  // x: [B, Cin, H, W]
                       const T* w, const T* b, T* out,                            // w: [Cout, Cin/G, kH, kW]
                       ConvAlgo algo = ConvAlgo::automatic, ConvEpilogue ep = {}) {
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, G = p.groups;
  if (p.B == 0 || p.Cout == 0 || ohw <= 0) return;
  const int64_t cin_g = p.Cin / G, cout_g = p.Cout / G, K = cin_g * p.kH * p.kW;
  const double flops = 2.0 * double(p.B) * double(p.Cout) * double(K) * double(ohw);
  algo = conv2d_choose(p, flops, algo, ep.channels_last ? ConvPass::any : ConvPass::fwd);
  std::unique_ptr<T[]> wr;  // bf16 operands: w rounded; x in the direct path's transposes, else a rounded copy
  if (p.round_bf16) {
    wr = detail::conv_rounded(w, p.Cout * K);
    if (algo != ConvAlgo::direct) {
      Conv2dParams q = p;
      q.round_bf16 = false;
      ConvStrides xrs = xs;
      const std::unique_ptr<T[]> xr = detail::conv_rounded_x(x, xrs, p.B, p.Cin, p.H, p.W);
      return conv2d_fwd_kernel<T>(q, xr.get(), xrs, wr.get(), b, out, algo, ep);
    }
    w = wr.get();
  }
  if (algo == ConvAlgo::direct) {
    constexpr int NR = detail::ConvBlocking<T>::NR;
    std::vector<bf16> wp;  // the pairs tile's weights (autocast on AVX512-BF16; conv_direct.hpp)
#if STRATA_CONV_BF16_PAIRS
    if constexpr (std::is_same_v<T, float>)
      if (p.round_bf16) wp = detail::conv_pack_wf_pairs(w, p.Cout, p.Cin, p.kH * p.kW);
#endif
    const std::vector<T> wf = wp.empty() ? detail::conv_pack_wf(w, p.Cout, p.Cin, p.kH * p.kW) : std::vector<T>();
    std::vector<T> bias(b ? size_t(detail::conv_round_up(p.Cout, NR)) : 0, T(0));
    if (b) std::copy(b, b + p.Cout, bias.begin());
    const int64_t per_image = p.H * p.W * p.Cin + ohw * detail::conv_round_up(p.Cout, NR);
    const detail::ConvPlan plan = detail::conv_plan(p, per_image / ohw + 1, flops);
    detail::conv_for_chunks(plan, p.B, [&](int64_t, int64_t n0, int64_t nb) {
      detail::conv_direct_fwd<T>(p, x, xs, n0, nb, wf.data(), b ? bias.data() : nullptr, out, ep.channels_last,
                                 ep.relu, p.round_bf16, wp.empty() ? nullptr : wp.data());
    });
    return;
  }
  if (algo == ConvAlgo::depthwise && detail::conv2d_is_stem(p) && (ep.channels_last || p.stride[1] != 1)) {
    if (ep.channels_last) return detail::conv_stem_fwd<T>(p, x, xs, w, b, out, p.Cout, ep.relu);
    parallel_for(0, p.B, 1, [&](int64_t lo, int64_t hi) {  // NCHW: image by image through an NHWC scratch
      T* oh = detail::conv_scratch<T>(1, ohw * p.Cout);
      for (int64_t n = lo; n < hi; ++n) {
        const Conv2dParams q = [&] { Conv2dParams r = p; r.B = 1; return r; }();
        detail::conv_stem_fwd<T>(q, x + n * xs[0], xs, w, b, oh, p.Cout, ep.relu);
        detail::conv_from_nhwc<T>(oh, p.Cout, 1, p.Cout, ohw, nullptr, out + n * p.Cout * ohw);
      }
    });
    return;
  }
  if (ep.channels_last) {  // the other paths write NCHW: into a buffer, then transposed per image
    std::unique_ptr<T[]> tmp(new T[size_t(p.B * p.Cout * ohw)]);
    conv2d_fwd_kernel<T>(p, x, xs, w, b, tmp.get(), algo, {.channels_last = false, .relu = ep.relu});
    parallel_for(0, p.B, 1, [&](int64_t lo, int64_t hi) {
      detail::conv_to_nhwc<T>(tmp.get() + lo * p.Cout * ohw, {p.Cout * ohw, ohw, OW, 1}, hi - lo, p.Cout, OH, OW,
                              out + lo * ohw * p.Cout, p.Cout);
    });
    return;
  }
  if (algo == ConvAlgo::depthwise) return detail::conv_depthwise_fwd<T>(p, x, xs, w, b, out, ep.relu);
  const bool pointwise = conv2d_is_pointwise(p, xs);
  const detail::ConvPlan plan = detail::conv_plan(p, pointwise ? 0 : K, flops);
  detail::conv_for_chunks(plan, p.B, [&](int64_t, int64_t n0, int64_t nb) {
    const int64_t S = nb * ohw;
    T* col = pointwise ? nullptr : detail::conv_scratch<T>(0, K * S);
    T* tmp = nb > 1 ? detail::conv_scratch<T>(1, cout_g * S) : nullptr;
    for (int64_t g = 0; g < G; ++g) {
      const T* wg = w + g * cout_g * K;
      if (pointwise) {  // out[n, g] = w_g @ x[n, g] with x's plane as B, one image at a time
        for (int64_t n = n0; n < n0 + nb; ++n)
          gemm<T>(cout_g, ohw, cin_g, T(1), wg, K, 1, x + n * xs[0] + g * cin_g * xs[1], xs[1], 1, T(0),
                  out + (n * p.Cout + g * cout_g) * ohw, ohw, 1);
        continue;
      }
      detail::conv_im2col<T>(p, x, xs, n0, nb, g * cin_g, col);
      if (nb == 1) {  // the image's [Cout/G][OH OW] block is the GEMM's C
        gemm<T>(cout_g, ohw, K, T(1), wg, K, 1, col, S, 1, T(0), out + (n0 * p.Cout + g * cout_g) * ohw, ohw, 1);
        continue;
      }
      gemm<T>(cout_g, S, K, T(1), wg, K, 1, col, S, 1, T(0), tmp, S, 1);
      for (int64_t n = 0; n < nb; ++n)  // tmp[o][(n, y, z)] -> out[n0 + n, g Cout/G + o, y, z]
        for (int64_t o = 0; o < cout_g; ++o)
          std::memcpy(out + ((n0 + n) * p.Cout + g * cout_g + o) * ohw, tmp + o * S + n * ohw, size_t(ohw) * sizeof(T));
    }
    if (b || ep.relu)  // the epilogue, on the chunk while it is in cache
      for (int64_t n = n0; n < n0 + nb; ++n)
        for (int64_t o = 0; o < p.Cout; ++o) {
          T* r = out + (n * p.Cout + o) * ohw;
          const T bo = b ? b[o] : T(0);
          if (ep.relu)
            for (int64_t k = 0; k < ohw; ++k) r[k] = vmax(T(0), r[k] + bo);
          else
            for (int64_t k = 0; k < ohw; ++k) r[k] += bo;
        }
  });
}

/// The gradients of conv2d: dx [B, Cin, H, W], dw [Cout, Cin/G, kH, kW], db [Cout], each
/// computed (overwritten) only when its pointer is not null. dout: [B, Cout, OH, OW] contiguous.
template <class T>
void conv2d_bwd_kernel(const Conv2dParams& p, const T* x, const ConvStrides& xs, const T* w, const T* dout,
                       T* dx, T* dw, T* db, ConvAlgo algo = ConvAlgo::automatic, bool channels_last = false) {
  const int64_t OH = p.OH(), OW = p.OW(), ohw = OH * OW, G = p.groups;
  const int64_t cin_g = p.Cin / G, cout_g = p.Cout / G, K = cin_g * p.kH * p.kW;
  const double flops = 2.0 * double(p.B) * double(p.Cout) * double(K) * double(ohw);
  // bf16 operands: w rounded; dout and x in the direct path's transposes and copies, else rounded
  // copies (after db, which sums dout as given)
  std::unique_ptr<T[]> wr;
  if (p.round_bf16 && (dx || dw) && p.B > 0 && ohw > 0) {
    if (dx) {
      wr = detail::conv_rounded(w, p.Cout * K);
      w = wr.get();
    }
    if (conv2d_choose(p, flops, algo) != ConvAlgo::direct) {
      Conv2dParams q = p;
      q.round_bf16 = false;
      if (db) conv2d_bwd_kernel<T>(q, x, xs, w, dout, nullptr, nullptr, db, algo, channels_last);
      const std::unique_ptr<T[]> gr = detail::conv_rounded(dout, p.B * p.Cout * ohw);
      ConvStrides xrs = xs;
      const std::unique_ptr<T[]> xr = dw ? detail::conv_rounded_x(x, xrs, p.B, p.Cin, p.H, p.W) : nullptr;
      return conv2d_bwd_kernel<T>(q, dw ? xr.get() : x, xrs, w, gr.get(), dx, dw, nullptr, algo, channels_last);
    }
  }
  if (channels_last && p.B > 0 && ohw > 0 && (dx || dw)) {
    algo = conv2d_choose(p, flops, algo);
    if (algo == ConvAlgo::depthwise && detail::conv2d_is_stem(p) && p.kH * p.kW <= 9 && dw) {
      detail::conv_stem_dw<T>(p, x, xs, dout, dw);  // from the channels-last dout in place
      dw = nullptr;
      if (!dx && !db) return;
    }
    if (algo != ConvAlgo::direct) {  // the other paths take NCHW: dout and dx transposed per image
      std::unique_ptr<T[]> g(new T[size_t(p.B * p.Cout * ohw)]), d(dx ? new T[size_t(p.B * p.Cin * p.H * p.W)] : nullptr);
      parallel_for(0, p.B, 1, [&](int64_t lo, int64_t hi) {
        detail::conv_from_nhwc<T>(dout + lo * ohw * p.Cout, p.Cout, hi - lo, p.Cout, ohw, nullptr, g.get() + lo * p.Cout * ohw);
      });
      conv2d_bwd_kernel<T>(p, x, xs, w, g.get(), d.get(), dw, db, algo, false);
      if (dx)
        parallel_for(0, p.B, 1, [&](int64_t lo, int64_t hi) {
          const int64_t HW = p.H * p.W;
          detail::conv_to_nhwc<T>(d.get() + lo * p.Cin * HW, {p.Cin * HW, HW, p.W, 1}, hi - lo, p.Cin, p.H, p.W,
                                  dx + lo * HW * p.Cin, p.Cin);
        });
      return;
    }
  }
  if (db && channels_last)  // per image in T, images summed in double, as below
    parallel_for(0, p.Cout, std::max<int64_t>(64, (int64_t(1) << 15) / std::max<int64_t>(p.B * ohw, 1)),
                 [&](int64_t lo, int64_t hi) {
                   std::vector<double> acc(size_t(hi - lo), 0.0);
                   std::vector<T> r(size_t(hi - lo));
                   for (int64_t n = 0; n < p.B; ++n) {
                     std::fill(r.begin(), r.end(), T(0));
                     for (int64_t k = 0; k < ohw; ++k) detail::conv_axpy<T>(hi - lo, T(1), dout + (n * ohw + k) * p.Cout + lo, r.data());
                     for (int64_t o = lo; o < hi; ++o) acc[size_t(o - lo)] += double(r[size_t(o - lo)]);
                   }
                   for (int64_t o = lo; o < hi; ++o) db[o] = T(acc[size_t(o - lo)]);
                 });
  else if (db)
    parallel_for(0, p.Cout, std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(p.B * ohw, 1)),
                 [&](int64_t lo, int64_t hi) {
                   for (int64_t o = lo; o < hi; ++o) {
                     double acc = 0;  // per image in T (vectorized), images summed in double
                     for (int64_t n = 0; n < p.B; ++n) {
                       const T* g = dout + (n * p.Cout + o) * ohw;
                       using V = Vec<T>;
                       V s(T(0));
                       int64_t k = 0;
                       for (; k + V::size <= ohw; k += V::size) s = s + V::load(g + k);
                       T r = reduce_add(s);
                       for (; k < ohw; ++k) r += g[k];
                       acc += double(r);
                     }
                     db[o] = T(acc);
                   }
                 });
  if (dw && (p.B == 0 || ohw <= 0)) std::fill(dw, dw + p.Cout * K, T(0));
  if (dx && (p.B == 0 || ohw <= 0)) std::fill(dx, dx + p.B * p.Cin * p.H * p.W, T(0));
  if ((!dx && !dw) || p.B == 0 || ohw <= 0) return;
  algo = conv2d_choose(p, flops, algo);
  if (algo == ConvAlgo::depthwise && detail::conv2d_is_stem(p) && p.kH * p.kW <= 9 && dw && p.stride[1] != 1) {
    // a strided stem's dw (the depthwise loop would be scalar): dout transposed to NHWC, then the stem tiles
    std::unique_ptr<T[]> gh(new T[size_t(p.B * p.Cout * ohw)]);
    parallel_for(0, p.B, 1, [&](int64_t lo, int64_t hi) {
      detail::conv_to_nhwc<T>(dout + lo * p.Cout * ohw, {p.Cout * ohw, ohw, OW, 1}, hi - lo, p.Cout, OH, OW,
                              gh.get() + lo * ohw * p.Cout, p.Cout);
    });
    detail::conv_stem_dw<T>(p, x, xs, gh.get(), dw);
    dw = nullptr;
    if (!dx) return;
  }
  if (algo == ConvAlgo::depthwise) return detail::conv_depthwise_bwd<T>(p, x, xs, w, dout, dx, dw);
  if (algo == ConvAlgo::direct)
    return detail::conv2d_bwd_direct<T>(p, x, xs, w, dout, dx, dw, flops, channels_last, p.round_bf16);
  const bool pointwise = conv2d_is_pointwise(p, xs);
  const detail::ConvPlan plan = detail::conv_plan(p, pointwise ? 0 : K, flops, dw ? p.Cout * K : 0);
  // dw partials: group 0 accumulates into dw itself, the others into their own buffers
  std::vector<T> partials(dw && plan.groups > 1 ? size_t((plan.groups - 1) * p.Cout * K) : 0);
  if (dw) std::fill(dw, dw + p.Cout * K, T(0));
  detail::conv_for_chunks(plan, p.B, [&](int64_t group, int64_t n0, int64_t nb) {
    const int64_t S = nb * ohw;
    T* col = pointwise ? nullptr : detail::conv_scratch<T>(0, K * S);
    T* gbuf = nb > 1 ? detail::conv_scratch<T>(1, cout_g * S) : nullptr;
    T* dwp = !dw ? nullptr : group == 0 ? dw : partials.data() + (group - 1) * p.Cout * K;
    if (dx) std::fill(dx + n0 * p.Cin * p.H * p.W, dx + (n0 + nb) * p.Cin * p.H * p.W, T(0));
    for (int64_t g = 0; g < G; ++g) {
      const T* wg = w + g * cout_g * K;
      if (pointwise) {  // per image: dw_g += dout_n @ x_n^T, dx_n = w_g^T @ dout_n
        for (int64_t n = n0; n < n0 + nb; ++n) {
          const T* gn = dout + (n * p.Cout + g * cout_g) * ohw;
          const T* xn = x + n * xs[0] + g * cin_g * xs[1];
          if (dw) gemm<T>(cout_g, cin_g, ohw, T(1), gn, ohw, 1, xn, 1, xs[1], T(1), dwp + g * cout_g * K, K, 1);
          if (dx) gemm<T>(cin_g, ohw, cout_g, T(1), wg, 1, K, gn, ohw, 1, T(0), dx + (n * p.Cin + g * cin_g) * ohw, ohw, 1);
        }
        continue;
      }
      // dout_g for the chunk as one [Cout/G][S] matrix (a view of dout itself for one image)
      const T* gd = dout + (n0 * p.Cout + g * cout_g) * ohw;
      if (nb > 1) {
        for (int64_t n = 0; n < nb; ++n)
          for (int64_t o = 0; o < cout_g; ++o)
            std::memcpy(gbuf + o * S + n * ohw, dout + ((n0 + n) * p.Cout + g * cout_g + o) * ohw, size_t(ohw) * sizeof(T));
        gd = gbuf;
      }
      if (dw) {
        detail::conv_im2col<T>(p, x, xs, n0, nb, g * cin_g, col);
        gemm<T>(cout_g, K, S, T(1), gd, S, 1, col, 1, S, T(1), dwp + g * cout_g * K, K, 1);
      }
      if (dx) {
        gemm<T>(K, S, cout_g, T(1), wg, 1, K, gd, S, 1, T(0), col, S, 1);
        detail::conv_col2im<T>(p, col, n0, nb, g * cin_g, dx);
      }
    }
  });
  for (int64_t k = 0; k + 1 < plan.groups && dw; ++k)
    detail::conv_axpy<T>(p.Cout * K, T(1), partials.data() + k * p.Cout * K, dw);
}

}  // namespace strata::cpu
