// Batch augmentation on the device: projective grid sampling, per-image lighting, random erasing,
// the CUDA twins of kernels/cpu/augment.hpp (read its top comment for the math; the formulas here
// are the same, line for line). The argument structs are the CPU's own (cpu::GridSampleGeom,
// cpu::EraseRect, cpu::SampleMode, cpu::PadMode); the coordinate helpers below are __host__ __device__
// copies of cpu::detail's (the CPU's are host functions, which device code cannot call).
//
//   cuda::GridSampleDims g{.B = B, .C = C, .H = H, .W = W, .OH = OH, .OW = OW,     // = cpu::GridSampleGeom
//                          .mode = cpu::SampleMode::bilinear, .pad = cpu::PadMode::reflection};
//   cuda::grid_sample<float>(x, y, mats, g);             // x [B, C, H, W], y [B, C, OH, OW], mats [B, 9] f64
//   cuda::lighting<float>(x, y, B, N, add, mul);         // x, y [B, N]; add, mul [B] f64
//   cuda::random_erase<float>(x, B, C, H, W, rects, n_rects, {key0, key1});   // in place
// All pointers are device memory; tensors contiguous.
//
// Grid sample: one thread per output pixel (b, oh, ow), adjacent threads on adjacent ow (coalesced
// stores), grid-stride. The thread maps its pixel through M_b in double (grid_base, project,
// source_coordinate with the CPU's padding rules and 1e-9 snapping, so pixel-aligned maps are exact
// copies), finds its taps once and walks all C channels with them, as the CPU kernel walks a row's
// taps per channel. Bilinear: the four neighbours, weights computed in double and rounded to the
// accumulation type (float for f32/f16/bf16, double for f64), out-of-bounds taps weight 0 at
// offset 0, summed in the CPU's order (a GPU may contract to FMAs: last-bit differences). Nearest:
// nearbyint (half to even), any element type (integer masks keep their codes), 0 outside.
// Lighting: one thread per element, y = 1 / (1 + k r^mul) in the accumulation type with k =
// e^(-mul add) rounded from double, r = (1 - p) / p, p = clamp(x, 1e-7, 1 - 1e-7); copied where
// add = 0 and mul = 1 (the CPU kernel's formula; its vectorized exp differs in the last bits).
// Random erasing: element e of rectangle k gets the CPU's Box-Muller normal of the Philox words
// philox4x32({e / 4, k, 0xe5a5, e / 4 >> 32}, key), computed in double: the same noise, the same
// rectangles. blockIdx.y walks the rectangles, blockIdx.x and the threads the rectangle's C h w
// elements. Rectangles of one image may overlap and the CPU applies them in order, so an element
// that a later rectangle of the same image also covers is left to that one (the later ones are
// searched from k + 1 on: while the image stays the same when the rectangles are grouped by image,
// as RandomErasing makes them, else all of them).
// Reference: PyTorch aten/src/ATen/native/cuda/GridSampler.cuh (one thread per output pixel, all
// channels in a loop).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <math.h>

#include "strata/backend/cuda_compat.hpp"
#include "strata/backend/launch.hpp"
#include "strata/core/error.hpp"
#include "kernels/cpu/augment.hpp"  // GridSampleGeom, EraseRect: the structs are shared
#include "kernels/cuda/dtype.cuh"
#include "kernels/cuda/math.cuh"
#include "kernels/cuda/philox.cuh"

namespace strata::cuda {

/// A grid sample's sizes, mode and padding: the CPU kernel's struct (passed to the kernel by value).
using GridSampleDims = cpu::GridSampleGeom;
/// One rectangle of random erasing: the CPU's struct, copied to device memory as it is.
using EraseRect = cpu::EraseRect;

namespace detail {

/// Normalized coordinate of output pixel i of n (cpu::detail::grid_base).
__host__ __device__ inline double aug_grid_base(int64_t i, int64_t n, bool align) {
  if (n <= 1) return 0.0;
  const double c = -1.0 + 2.0 * double(i) / double(n - 1);
  return align ? c : c * double(n - 1) / double(n);
}

/// Reflects `in` into [twice_low / 2, twice_high / 2] (cpu::detail::reflect_coordinate).
__host__ __device__ inline double aug_reflect(double in, int64_t twice_low, int64_t twice_high) {
  if (twice_low == twice_high) return 0.0;
  const double lo = double(twice_low) / 2, span = double(twice_high - twice_low) / 2;
  in = ::fabs(in - lo);
  const double extra = ::fmod(in, span);
  const auto flips = int64_t(::floor(in / span));
  return flips % 2 == 0 ? extra + lo : span - extra + lo;
}

/// Normalized coordinate -> pixel coordinate after padding (cpu::detail::source_coordinate).
__host__ __device__ inline double aug_source(double c, int64_t size, cpu::PadMode pad, bool align) {
  double p = align ? (c + 1) / 2 * double(size - 1) : ((c + 1) * double(size) - 1) / 2;
  if (!(::fabs(p) < 1e9)) p = p > 0 ? 1e9 : -1e9;  // projective blow-ups and NaN: far outside, finite
  const double r = ::nearbyint(p);
  if (::fabs(p - r) < 1e-9) p = r;  // pixel-aligned maps exact
  if (p >= 0 && p <= double(size - 1)) return p;
  if (pad == cpu::PadMode::reflection)
    p = align ? aug_reflect(p, 0, 2 * (size - 1)) : aug_reflect(p, -1, 2 * size - 1);
  if (pad != cpu::PadMode::zeros) p = ::fmin(double(size - 1), ::fmax(p, 0.0));
  return p;
}

/// Input normalized (x, y) of output normalized (u, v): M (u, v, 1) over its third row.
__host__ __device__ inline void aug_project(const double* m, double u, double v, double& x, double& y) {
  x = m[0] * u + m[1] * v + m[2];
  y = m[3] * u + m[4] * v + m[5];
  if (m[6] != 0 || m[7] != 0 || m[8] != 1) {
    const double w = m[6] * u + m[7] * v + m[8];
    x /= w, y /= w;
  }
}

/// Standard normal number e of erasing rectangle k (cpu::detail::erase_noise, in double).
__host__ __device__ inline double aug_erase_noise(uint32_t key0, uint32_t key1, int64_t k, uint64_t e) {
  const PhiloxWords words = philox4x32_10(uint32_t(e / 4), uint32_t(k), 0xe5a5u, uint32_t(e / 4 >> 32), key0, key1);
  const int j = int(e % 4), p = j / 2;
  const double u1 = double(float(words.w[2 * p] >> 8) * 0x1p-24f);
  const double u2 = double(float(words.w[2 * p + 1] >> 8) * 0x1p-24f);
  const double r = ::sqrt(-2.0 * ::log(1.0 - u1)), t = 6.283185307179586 * u2;
  return r * (j % 2 == 0 ? ::cos(t) : ::sin(t));
}

}  // namespace detail

// ---------------------------------------------------------------- kernels

/// y [B, C, OH, OW] = x [B, C, H, W] sampled at M_b (u, v, 1); a thread per output pixel, all channels.
template <class T>
__global__ void grid_sample_kernel(const T* x, T* y, const double* mats, GridSampleDims g) {
  const int64_t n = g.B * g.OH * g.OW, step = int64_t(blockDim.x) * gridDim.x, plane = g.H * g.W,
                oplane = g.OH * g.OW;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t b = i / oplane, oh = i / g.OW % g.OH, ow = i % g.OW;
    // where this output pixel comes from, in input pixels
    double nx, ny;
    detail::aug_project(mats + 9 * b, detail::aug_grid_base(ow, g.OW, g.align_corners),
                        detail::aug_grid_base(oh, g.OH, g.align_corners), nx, ny);
    const double ix = detail::aug_source(nx, g.W, g.pad, g.align_corners);
    const double iy = detail::aug_source(ny, g.H, g.pad, g.align_corners);
    const T* xp = x + b * g.C * plane;
    T* yp = y + b * g.C * oplane + oh * g.OW + ow;
    if (g.mode == cpu::SampleMode::nearest) {
      const auto q = int64_t(::nearbyint(ix)), r = int64_t(::nearbyint(iy));
      const bool in = r >= 0 && r < g.H && q >= 0 && q < g.W;
      const int64_t o = r * g.W + q;
      for (int64_t c = 0; c < g.C; ++c) yp[c * oplane] = in ? xp[c * plane + o] : T{};
      continue;
    }
    if constexpr (is_floating_storage<T>) {
      using A = compute_type<T>;
      // the four neighbours, each weighted by the area of the opposite sub-rectangle (0 outside)
      const auto q0 = int64_t(::floor(ix)), r0 = int64_t(::floor(iy));
      const double fx = ix - double(q0), fy = iy - double(r0);
      const double ws[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
      int64_t o[4];
      A w[4];
      for (int t = 0; t < 4; ++t) {
        const int64_t r = r0 + t / 2, q = q0 + t % 2;
        const bool in = r >= 0 && r < g.H && q >= 0 && q < g.W;
        o[t] = in ? r * g.W + q : 0;
        w[t] = in ? A(ws[t]) : A(0);
      }
      for (int64_t c = 0; c < g.C; ++c) {
        const T* p = xp + c * plane;
        store(yp + c * oplane, A(load(p + o[0]) * w[0] + load(p + o[1]) * w[1] + load(p + o[2]) * w[2] +
                                 load(p + o[3]) * w[3]));
      }
    }
  }
}

/// y [B, N] = 1 / (1 + k_b r^mul_b), r = (1 - p) / p, p = clamp(x, eps, 1 - eps); copied where add = 0, mul = 1.
template <class T>
__global__ void lighting_kernel(const T* x, T* y, int64_t B, int64_t N, const double* add, const double* mul) {
  using A = compute_type<T>;
  const int64_t n = B * N, step = int64_t(blockDim.x) * gridDim.x;
  const A eps = A(1e-7), one = A(1);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step) {
    const int64_t b = i / N;
    if (add[b] == 0 && mul[b] == 1) {
      y[i] = x[i];
      continue;
    }
    const A m = A(mul[b]), k = A(::exp(-mul[b] * add[b]));
    const A p = ::fmin(one - eps, ::fmax(eps, A(load(x + i))));
    const A r = (one - p) / p;
    store(y + i, A(one / (one + k * (m == one ? r : m_pow(r, m)))));
  }
}

/// Every rectangle of x [B, C, H, W] overwritten with N(0, 1) noise from (key, rectangle, element).
template <class T>
__global__ void random_erase_kernel(T* x, int64_t C, int64_t H, int64_t W, const EraseRect* rects, int64_t n_rects,
                                    bool grouped, uint32_t key0, uint32_t key1) {
  for (int64_t k = blockIdx.y; k < n_rects; k += gridDim.y) {
    const EraseRect r = rects[k];
    const int64_t h = r.r1 - r.r0, w = r.c1 - r.c0, n = C * h * w, step = int64_t(blockDim.x) * gridDim.x;
    for (int64_t e = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; e < n; e += step) {
      const int64_t c = e / (h * w), i = e / w % h, j = e % w, row = r.r0 + i, col = r.c0 + j;
      bool later = false;  // a later rectangle of this image writes this element (the CPU's order)
      for (int64_t k2 = k + 1; k2 < n_rects && !later; ++k2) {
        const EraseRect& s = rects[k2];
        if (s.image != r.image) {
          if (grouped) break;
          continue;
        }
        later = row >= s.r0 && row < s.r1 && col >= s.c0 && col < s.c1;
      }
      if (later) continue;
      store(x + ((r.image * C + c) * H + row) * W + col,
            compute_type<T>(detail::aug_erase_noise(key0, key1, k, uint64_t(e))));
    }
  }
}

// ---------------------------------------------------------------- launchers

inline constexpr unsigned kAugThreads = 256;
inline constexpr int64_t kAugMaxBlocks = 132 * 32;

namespace detail {
inline unsigned aug_blocks(int64_t n) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + kAugThreads - 1) / kAugThreads, kAugMaxBlocks)));
}
}  // namespace detail

/// y [B, C, OH, OW] = x [B, C, H, W] resampled at mats [B, 9] (device memory, f64).
template <class T>
void grid_sample(const T* x, T* y, const double* mats, const GridSampleDims& g, Stream stream = {}) {
  STRATA_CHECK(g.B >= 0 && g.C >= 0 && g.H > 0 && g.W > 0 && g.OH >= 0 && g.OW >= 0, "grid_sample", "got B ", g.B,
               ", C ", g.C, ", input ", g.H, "x", g.W, ", output ", g.OH, "x", g.OW,
               ", expected sizes >= 0 and an input of at least 1x1");
  STRATA_CHECK(g.mode == cpu::SampleMode::nearest || is_floating_storage<T>, "grid_sample",
               "got bilinear sampling of an integer dtype, expected a floating dtype (or nearest)");
  const int64_t n = g.B * g.OH * g.OW;
  if (n == 0 || g.C == 0) return;
  STRATA_CHECK(x && y && mats, "grid_sample", "got a null pointer, expected device memory for x, y and mats");
  launch(grid_sample_kernel<T>, dim3(detail::aug_blocks(n)), dim3(kAugThreads), 0, stream, x, y, mats, g);
}

/// y [B, N] = lighting of x [B, N] with add, mul [B] (device memory, f64); y may be x.
template <class T>
void lighting(const T* x, T* y, int64_t B, int64_t N, const double* add, const double* mul, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "lighting: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(B >= 0 && N >= 0, "lighting", "got B ", B, ", N ", N, ", expected sizes >= 0");
  if (B * N == 0) return;
  STRATA_CHECK(x && y && add && mul, "lighting", "got a null pointer, expected device memory for x, y, add, mul");
  launch(lighting_kernel<T>, dim3(detail::aug_blocks(B * N)), dim3(kAugThreads), 0, stream, x, y, B, N, add, mul);
}

/// Overwrites every rectangle rects [n_rects] (device memory; host-checked to lie inside x) of
/// x [B, C, H, W] with N(0, 1) noise; grouped: the rectangles of each image are adjacent.
template <class T>
void random_erase(T* x, int64_t B, int64_t C, int64_t H, int64_t W, const EraseRect* rects, int64_t n_rects,
                  bool grouped, std::array<uint32_t, 2> key, Stream stream = {}) {
  static_assert(is_floating_storage<T>, "random_erase: T is float, double, f16_t or bf16_t");
  STRATA_CHECK(B >= 0 && C >= 0 && H >= 0 && W >= 0 && n_rects >= 0, "random_erase", "got B ", B, ", C ", C, ", H ",
               H, ", W ", W, ", ", n_rects, " rectangles, expected sizes >= 0");
  if (n_rects == 0 || B * C * H * W == 0) return;
  STRATA_CHECK(x && rects, "random_erase", "got a null pointer, expected device memory for x and the rectangles");
  const int64_t most = std::max<int64_t>(1, C * H * W);  // a rectangle's elements, at most
  const unsigned bx = unsigned(std::min<int64_t>((most + kAugThreads - 1) / kAugThreads, 64));
  const unsigned by = unsigned(std::min<int64_t>(n_rects, 65535));
  launch(random_erase_kernel<T>, dim3(bx, by), dim3(kAugThreads), 0, stream, x, C, H, W, rects, n_rects, grouped,
         key[0], key[1]);
}

}  // namespace strata::cuda
