// Batch augmentation kernels: projective grid sampling (affine and perspective warps in one
// resampling), per-image lighting (brightness and contrast on logits), random erasing.
//
// Grid sample. x [B, C, H, W] -> y [B, C, OH, OW], both contiguous. Image b has a 3x3 matrix
// M_b [B, 3, 3] (row-major) in normalized coordinates ([-1, 1] spans the image, x right, y down):
// output pixel (ow, oh) at normalized (u, v) reads the input at
//     (x', y', w') = M_b (u, v, 1),   (x, y) = (x' / w', y' / w')
// An affine 2x3 theta (PyTorch's F.affine_grid) is M = [theta; 0 0 1], so w' = 1 and this is
// exactly F.affine_grid(theta, size, align_corners) + F.grid_sample(x, grid, mode, padding_mode,
// align_corners); a perspective warp (fastai's Warp) merged with it only fills the last row. We
// follow fastai's choice, align_corners = true (-1 and 1 are the centres of the corner pixels), and
// support false too. Normalized -> pixel: align: (c + 1) / 2 * (size - 1); else ((c + 1) * size - 1) / 2.
// Padding (PyTorch's GridSampler.h, same formulas):
//   zeros       corners outside the input read 0
//   border      the pixel coordinate is clipped to [0, size - 1]
//   reflection  reflected about the borders (align: [0, size - 1], else [-0.5, size - 0.5]), then clipped
// A pixel coordinate within 1e-9 of an integer is snapped to it, so pixel-aligned maps (identity,
// flips, dihedral turns) return exact copies. Modes: bilinear (the four neighbours, weights
// (1 - fx)(1 - fy) ...; floating dtypes, accumulated in float, double for f64) and nearest
// (std::nearbyint, round half to even like PyTorch; any dtype, so
// i64 masks keep their class codes). Coordinates are computed in double for every dtype.
// The fast kernel computes each output pixel's four source offsets and weights once per row and
// reuses them for every channel (pixels whose four neighbours are inside skip the bounds checks;
// out-of-bounds corners get weight 0 and offset 0, so the channel loop is branch-free and the input
// is assumed finite), rows split over threads with parallel_for. Measured on this shared 2-core box,
// 16 x 3 x 128 x 128 bilinear reflection, one thread: ~6.5 ms against PyTorch 1.13's
// affine_grid + grid_sample ~7.5-8 ms in the same run. grid_sample_ref is the plain
// per-element loop it is checked against (and that is checked against PyTorch).
//
// Lighting (fastai's LightingTfm with _BrightnessLogit then _ContrastLogit, merged as fastai's
// setup_aug_tfms does): x [B, N] in [0, 1], per image add[b] = logit(brightness), mul[b] = contrast:
//     y = sigmoid(mul[b] * (logit(clamp(x, eps, 1 - eps)) + add[b])),   eps = 1e-7
// An image with add = 0 and mul = 1 (not drawn) is copied unchanged instead of round-tripping
// through logit/sigmoid. Fast form: with r = (1 - x) / x and k = e^(-mul * add),
//     y = 1 / (1 + k * r^mul)        (one pow per pixel; mul = 1 needs none and is vectorized)
//
// Random erasing (fastai's RandomErasing / cutout_gaussian): every rectangle rects[k] (image, rows
// [r0, r1), cols [c0, c1)) of x [B, C, H, W] is overwritten in every channel with N(0, 1) noise.
// Element e of rectangle k (e = (c * h + r) * w + col inside it) is a Box-Muller normal of the
// Philox words philox4x32({e / 4, k, 0xe5a5, 0}, key) (lanes 2p, 2p + 1 for p = (e % 4) / 2; cos for
// even e, sin for odd), so the noise depends on (key, k, e) only, never on threads.
// References: PyTorch aten/src/ATen/native/GridSampler.h, AffineGridGenerator.cpp; fastai
// vision/augment.py (AffineCoordTfm, _WarpCoord, LightingTfm, RandomErasing).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "kernels/cpu/resize.hpp"  // PadMode (shared with the item-level resamplers)
#include "kernels/cpu/simd.hpp"
#include "strata/core/dtype.hpp"
#include "strata/core/parallel.hpp"
#include "strata/core/random.hpp"

namespace strata::cpu {

/// How a sample between pixels is read.
enum class SampleMode { bilinear, nearest };

/// A grid sample: x [B, C, H, W] -> y [B, C, OH, OW] (both contiguous), mats [B, 3, 3].
struct GridSampleGeom {
  int64_t B = 0, C = 0, H = 0, W = 0;
  int64_t OH = 0, OW = 0;
  SampleMode mode = SampleMode::bilinear;
  PadMode pad = PadMode::zeros;
  bool align_corners = true;
};

/// One rectangle of random erasing: image index, rows [r0, r1), cols [c0, c1).
struct EraseRect {
  int64_t image = 0, r0 = 0, r1 = 0, c0 = 0, c1 = 0;
};

namespace detail {

/// Normalized coordinate of output pixel i of n (PyTorch's linspace_from_neg_one).
inline double grid_base(int64_t i, int64_t n, bool align) {
  if (n <= 1) return 0.0;
  const double c = -1.0 + 2.0 * double(i) / double(n - 1);
  return align ? c : c * double(n - 1) / double(n);
}

/// Reflects `in` into [twice_low / 2, twice_high / 2] (GridSampler.h reflect_coordinates).
inline double reflect_coordinate(double in, int64_t twice_low, int64_t twice_high) {
  if (twice_low == twice_high) return 0.0;
  const double lo = double(twice_low) / 2, span = double(twice_high - twice_low) / 2;
  in = std::fabs(in - lo);
  const double extra = std::fmod(in, span);
  const auto flips = int64_t(std::floor(in / span));
  return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

/// Normalized coordinate -> pixel coordinate in [0, size - 1] after padding (zeros: unchanged).
inline double source_coordinate(double c, int64_t size, PadMode pad, bool align) {
  double p = align ? (c + 1) / 2 * double(size - 1) : ((c + 1) * double(size) - 1) / 2;
  if (!(std::fabs(p) < 1e9)) p = p > 0 ? 1e9 : -1e9;  // projective blow-ups and NaN: far outside, finite
  if (const double r = std::nearbyint(p); std::fabs(p - r) < 1e-9) p = r;  // pixel-aligned maps (identity, flips) exact
  if (p >= 0 && p <= double(size - 1)) return p;  // inside: no padding rule changes it (the common case)
  if (pad == PadMode::reflection)
    p = align ? reflect_coordinate(p, 0, 2 * (size - 1)) : reflect_coordinate(p, -1, 2 * size - 1);
  if (pad != PadMode::zeros) p = std::min(double(size - 1), std::max(p, 0.0));
  return p;
}

/// Input normalized (x, y) for output normalized (u, v): M (u, v, 1), divided by its third row.
inline void project(const double* m, double u, double v, double& x, double& y) {
  x = m[0] * u + m[1] * v + m[2];
  y = m[3] * u + m[4] * v + m[5];
  if (m[6] != 0 || m[7] != 0 || m[8] != 1) {  // perspective (an affine map skips the divisions)
    const double w = m[6] * u + m[7] * v + m[8];
    x /= w, y /= w;
  }
}

/// Standard normal number e of erasing rectangle k (see the top of this file).
inline double erase_noise(const std::array<uint32_t, 2>& key, int64_t k, uint64_t e) {
  const auto words = philox4x32({uint32_t(e / 4), uint32_t(k), 0xe5a5u, uint32_t(e / 4 >> 32)}, key);
  const int j = int(e % 4), p = j / 2;
  const double u1 = uint_to_unit_float(words[size_t(2 * p)]), u2 = uint_to_unit_float(words[size_t(2 * p + 1)]);
  const double r = std::sqrt(-2.0 * std::log(1.0 - u1)), t = 6.283185307179586 * u2;
  return r * (j % 2 == 0 ? std::cos(t) : std::sin(t));
}

}  // namespace detail

// ---------------------------------------------------------------- reference

/// y [B, C, OH, OW] = x [B, C, H, W] sampled at M_b (u, v, 1); one element at a time.
template <class T>
void grid_sample_ref(const T* x, T* y, const double* mats, const GridSampleGeom& g) {
  using A = std::conditional_t<std::is_floating_point_v<acc_t<T>>, acc_t<T>, double>;
  for (int64_t b = 0; b < g.B; ++b)
    for (int64_t c = 0; c < g.C; ++c)
      for (int64_t oh = 0; oh < g.OH; ++oh)
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const T* plane = x + (b * g.C + c) * g.H * g.W;
          // where this output pixel comes from, in input pixels
          double nx, ny;
          detail::project(mats + 9 * b, detail::grid_base(ow, g.OW, g.align_corners),
                          detail::grid_base(oh, g.OH, g.align_corners), nx, ny);
          const double ix = detail::source_coordinate(nx, g.W, g.pad, g.align_corners);
          const double iy = detail::source_coordinate(ny, g.H, g.pad, g.align_corners);
          auto inside = [&](int64_t r, int64_t q) { return r >= 0 && r < g.H && q >= 0 && q < g.W; };
          T& out = y[((b * g.C + c) * g.OH + oh) * g.OW + ow];
          if (g.mode == SampleMode::nearest) {
            // the nearest pixel, or 0 outside
            const auto q = int64_t(std::nearbyint(ix)), r = int64_t(std::nearbyint(iy));
            out = inside(r, q) ? plane[r * g.W + q] : T(0);
          } else {
            // the four neighbours, each weighted by the area of the opposite sub-rectangle
            const auto q0 = int64_t(std::floor(ix)), r0 = int64_t(std::floor(iy));
            const double fx = ix - double(q0), fy = iy - double(r0);
            A s = 0;
            if (inside(r0, q0)) s += A(plane[r0 * g.W + q0]) * A((1 - fx) * (1 - fy));
            if (inside(r0, q0 + 1)) s += A(plane[r0 * g.W + q0 + 1]) * A(fx * (1 - fy));
            if (inside(r0 + 1, q0)) s += A(plane[(r0 + 1) * g.W + q0]) * A((1 - fx) * fy);
            if (inside(r0 + 1, q0 + 1)) s += A(plane[(r0 + 1) * g.W + q0 + 1]) * A(fx * fy);
            out = cast_value<T>(s);
          }
        }
}

/// y [B, N] = sigmoid(mul[b] * (logit(clamp(x, eps, 1 - eps)) + add[b])); copied where add = 0, mul = 1.
template <class T>
void lighting_ref(const T* x, T* y, int64_t B, int64_t N, const double* add, const double* mul) {
  constexpr double eps = 1e-7;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < N; ++i) {
      const double v = double(x[b * N + i]);
      if (add[b] == 0 && mul[b] == 1) {
        y[b * N + i] = x[b * N + i];
        continue;
      }
      const double p = std::min(1 - eps, std::max(eps, v));
      const double logit = std::log(p / (1 - p));                      // to logits
      const double z = mul[b] * (logit + add[b]);                       // brightness, then contrast
      y[b * N + i] = cast_value<T>(1 / (1 + std::exp(-z)));            // back to [0, 1]
    }
}

/// Overwrites every rectangle of x [B, C, H, W] with N(0, 1) noise from (key, rectangle, element).
template <class T>
void random_erase_ref(T* x, int64_t B, int64_t C, int64_t H, int64_t W, const EraseRect* rects, int64_t n_rects,
                      std::array<uint32_t, 2> key) {
  (void)B;
  for (int64_t k = 0; k < n_rects; ++k) {
    const EraseRect& r = rects[k];
    const int64_t h = r.r1 - r.r0, w = r.c1 - r.c0;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < h; ++i)
        for (int64_t j = 0; j < w; ++j) {
          const auto e = uint64_t((c * h + i) * w + j);
          x[((r.image * C + c) * H + r.r0 + i) * W + r.c0 + j] = cast_value<T>(detail::erase_noise(key, k, e));
        }
  }
}

// ---------------------------------------------------------------- kernels

/// grid_sample_ref's result: per output row, the source offsets and weights of each pixel are found
/// once and used for all C channels; rows (b, oh) split over threads.
template <class T>
void grid_sample_kernel(const T* x, T* y, const double* mats, const GridSampleGeom& g) {
  using A = std::conditional_t<std::is_floating_point_v<acc_t<T>>, acc_t<T>, double>;
  const bool bilinear = g.mode == SampleMode::bilinear;
  const int64_t plane = g.H * g.W, taps = bilinear ? 4 : 1;
  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, g.OW * g.C));
  std::vector<double> us(size_t(g.OW));
  for (int64_t ow = 0; ow < g.OW; ++ow) us[size_t(ow)] = detail::grid_base(ow, g.OW, g.align_corners);
  parallel_for(0, g.B * g.OH, grain, [&](int64_t lo, int64_t hi) {
    std::vector<int64_t> off(size_t(g.OW * taps));
    std::vector<A> wt(size_t(g.OW * taps));
    for (int64_t row = lo; row < hi; ++row) {
      const int64_t b = row / g.OH, oh = row % g.OH;
      const double v = detail::grid_base(oh, g.OH, g.align_corners);
      // 1. the taps of every pixel of this output row
      for (int64_t ow = 0; ow < g.OW; ++ow) {
        double nx, ny;
        detail::project(mats + 9 * b, us[size_t(ow)], v, nx, ny);
        const double ix = detail::source_coordinate(nx, g.W, g.pad, g.align_corners);
        const double iy = detail::source_coordinate(ny, g.H, g.pad, g.align_corners);
        int64_t* o = off.data() + ow * taps;
        A* w = wt.data() + ow * taps;
        if (!bilinear) {
          const auto q = int64_t(std::nearbyint(ix)), r = int64_t(std::nearbyint(iy));
          const bool in = r >= 0 && r < g.H && q >= 0 && q < g.W;
          o[0] = in ? r * g.W + q : -1;
          continue;
        }
        const auto q0 = int64_t(std::floor(ix)), r0 = int64_t(std::floor(iy));
        const double fx = ix - double(q0), fy = iy - double(r0);
        const double ws[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
        if (q0 >= 0 && r0 >= 0 && q0 + 1 < g.W && r0 + 1 < g.H) {  // all four inside (most pixels)
          const int64_t base = r0 * g.W + q0;
          o[0] = base, o[1] = base + 1, o[2] = base + g.W, o[3] = base + g.W + 1;
          for (int t = 0; t < 4; ++t) w[t] = A(ws[t]);
          continue;
        }
        for (int t = 0; t < 4; ++t) {
          const int64_t r = r0 + t / 2, q = q0 + t % 2;
          const bool in = r >= 0 && r < g.H && q >= 0 && q < g.W;
          o[t] = in ? r * g.W + q : 0;
          w[t] = in ? A(ws[t]) : A(0);
        }
      }
      // 2. every channel of the row through the same taps
      for (int64_t c = 0; c < g.C; ++c) {
        const T* xp = x + (b * g.C + c) * plane;
        T* yp = y + ((b * g.C + c) * g.OH + oh) * g.OW;
        if (!bilinear) {
          for (int64_t ow = 0; ow < g.OW; ++ow) yp[ow] = off[size_t(ow)] >= 0 ? xp[off[size_t(ow)]] : T(0);
          continue;
        }
        for (int64_t ow = 0; ow < g.OW; ++ow) {
          const int64_t* o = off.data() + 4 * ow;
          const A* w = wt.data() + 4 * ow;
          yp[ow] = cast_value<T>(A(xp[o[0]]) * w[0] + A(xp[o[1]]) * w[1] + A(xp[o[2]]) * w[2] + A(xp[o[3]]) * w[3]);
        }
      }
    }
  });
}

/// lighting_ref's result as y = 1 / (1 + k r^mul), r = (1 - x) / x, k = e^(-mul add), in the
/// accumulation type; images split over threads; f32/f64 data in Vec<T> (mul = 1 needs no
/// transcendental; otherwise scalar logs of r in chunks of 256, then vexp).
template <class T>
void lighting_kernel(const T* x, T* y, int64_t B, int64_t N, const double* add, const double* mul) {
  using A = acc_t<T>;
  const A eps = A(1e-7), one = A(1);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(N, 1));
  parallel_for(0, B, grain, [&](int64_t lo, int64_t hi) {
    for (int64_t b = lo; b < hi; ++b) {
      const T* xp = x + b * N;
      T* yp = y + b * N;
      if (add[b] == 0 && mul[b] == 1) {
        if (xp != yp) std::copy(xp, xp + N, yp);
        continue;
      }
      const A m = A(mul[b]), k = A(std::exp(-mul[b] * add[b]));
      int64_t i = 0;
      if constexpr (std::is_same_v<T, A>) {
        using V = Vec<A>;
        const V vk(k), vm(m), ve(eps), vone(one), vhi(one - eps);
        if (mul[b] == 1) {  // y = x / (x + k (1 - x))
          for (; i + V::size <= N; i += V::size) {
            const V p = vmin(vhi, vmax(ve, V::load(xp + i)));
            (p / (p + vk * (vone - p))).store(yp + i);
          }
        } else {  // y = 1 / (1 + k e^(mul log r)): the logs scalar, the rest in vectors
          constexpr int64_t kChunk = 256;
          A lr[kChunk];
          for (; i + kChunk <= N; i += kChunk) {
            for (int64_t j = 0; j < kChunk; ++j) {
              const A p = std::min(one - eps, std::max(eps, xp[i + j]));
              lr[j] = std::log((one - p) / p);
            }
            for (int64_t j = 0; j < kChunk; j += V::size)
              (vone / (vone + vk * vexp(vm * V::load(lr + j)))).store(yp + i + j);
          }
        }
      }
      for (; i < N; ++i) {
        const A p = std::min(one - eps, std::max(eps, A(xp[i])));
        const A r = (one - p) / p;
        yp[i] = cast_value<T>(one / (one + k * (m == one ? r : std::pow(r, m))));
      }
    }
  });
}

/// random_erase_ref's result; channels split over threads (rectangles of one image may overlap, so
/// each thread applies them in order k, as the reference does), one Philox block per four values.
template <class T>
void random_erase_kernel(T* x, int64_t B, int64_t C, int64_t H, int64_t W, const EraseRect* rects, int64_t n_rects,
                         std::array<uint32_t, 2> key) {
  (void)B;
  parallel_for(0, C, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t kc = 0; kc < n_rects * (hi - lo); ++kc) {
      const int64_t k = kc / (hi - lo), c = lo + kc % (hi - lo);
      const EraseRect& r = rects[k];
      const int64_t h = r.r1 - r.r0, w = r.c1 - r.c0;
      for (int64_t i = 0; i < h; ++i) {
        T* row = x + ((r.image * C + c) * H + r.r0 + i) * W + r.c0;
        for (int64_t j = 0; j < w; ++j)
          row[j] = cast_value<T>(detail::erase_noise(key, k, uint64_t((c * h + i) * w + j)));
      }
    }
  });
}

}  // namespace strata::cpu
