// Item-level image resampling: bilinear (images) and nearest (masks) resampling of a source box to
// an output size, and dihedral copies (flips, transposes). One call = one item's planes.
//
// Geometry. A source plane stack is C planes of H x W with any strides (in elements, may be
// negative). The box (y0, x0, h, w) is in continuous source pixels: pixel (i, j) covers
// [i, i+1) x [j, j+1), so the whole image is (0, 0, H, W). Output pixel (oy, ox) samples the
// source at PyTorch's half-pixel position (align_corners=False):
//   cy = y0 + (oy + 0.5) * h / OH - 0.5,   cx = x0 + (ox + 0.5) * w / OW - 0.5   (pixel-centre units)
// so resampling the whole image equals torch.nn.functional.interpolate(mode='bilinear',
// align_corners=False, antialias=False) (which clamps cx into [0, W-1]). The box may reach outside
// the image; per axis, a coordinate inside the image's extent [-0.5, n-0.5] is clamped to [0, n-1]
// (PyTorch's edge rule), one outside is padding:
//   zeros       the sample is 0 (a hard edge at the image border)
//   border      clamped to [0, n-1] (the edge pixel repeats)
//   reflection  reflected about the extent's edges, repeatedly, then clamped (grid_sample's
//               align_corners=False reflection)
// Bilinear: out = wy0 * (wx0 * s[y0i, x0i] + wx1 * s[y0i, x1i]) + wy1 * (... row y1i), in float
// (double for f64 data); u8 output is rounded half up and saturated to [0, 255].
// Nearest (masks): index = floor(y0 + (oy + 0.5) * h / OH) (torch's 'nearest-exact'); outside
// the image, zeros gives 0, border clamps, reflection reflects about [0, n] (symmetric).
// The output is a contiguous [C, OH, OW].
//
// The fast bilinear kernel is separable (as OpenCV's and Pillow's resize): a tap table per axis
// (two source indices and two weights per output column / row) is built once per call. When the
// box is taller than the output (rows first), each output row blends its two source rows over the
// columns the box uses (contiguous, vectorized, u8 widened to float 8 at a time), then applies the
// column taps to that float row; when fewer source rows are read than rows written (columns
// first), each source row gets its column taps once into a two-row cache and output rows blend two
// cached rows. u8 rows are rounded and packed 32 at a time with AVX2.
// Ladder (3 x 160 x 160 u8 -> 128 x 128, best of 30, one thread, AMD EPYC, loaded machine):
//   columns first, scalar taps with u8->float per tap, 2-row cache   50 / 66 / 29 us (box 100x90 /
//                                                                    150x140 / 50x60)
//   rows first, AVX2 gathers for the column taps                     ~2x slower than scalar (one noisy run)
//   rows first, scalar taps on a float row                           54 / 55 / 53 us
//   either, chosen per call by the rows read (shipped)               48 / 54 / 29 us
// The `_ref` functions are plain per-pixel loops with no tables, the truth the fast kernels are
// checked against.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/cpu/simd.hpp"

namespace strata::cpu {

/// What a sample outside the source image reads (fastai's PadMode, torch's padding_mode).
enum class PadMode { zeros, border, reflection };

/// A resample of C source planes H x W (strides sc, sh, sw in elements) from the box
/// (y0, x0, h, w) in source pixels to a contiguous [C, OH, OW] output.
struct ResizeGeom {
  int64_t C = 1, H = 0, W = 0;
  int64_t sc = 0, sh = 0, sw = 1;
  double y0 = 0, x0 = 0, h = 0, w = 0;
  int64_t OH = 0, OW = 0;
  PadMode pad = PadMode::border;
};

/// Float type bilinear math runs in for storage type T.
template <class T>
using resize_acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

/// Source coordinate (pixel-centre units) of output index o along one axis.
inline double resize_src_coord(double start, double len, int64_t out, int64_t o) {
  return start + (double(o) + 0.5) * len / double(out) - 0.5;
}

/// Reflects c about lo and lo + span repeatedly (grid_sample's reflect_coordinates).
inline double reflect_coord(double c, double lo, double span) {
  if (span <= 0) return lo;
  const double in = std::abs(c - lo);
  const double extra = std::fmod(in, span);
  const int64_t flips = int64_t(std::floor(in / span));
  return flips % 2 == 0 ? lo + extra : lo + span - extra;
}

/// A bilinear sample coordinate after padding: c in pixel-centre units, clamped into [0, n-1];
/// `inside` is false when the zeros mode makes the sample 0.
inline double pad_bilinear_coord(double c, int64_t n, PadMode pad, bool& inside) {
  inside = true;
  const bool out = c < -0.5 || c > double(n) - 0.5;
  if (out && pad == PadMode::zeros) inside = false;
  if (out && pad == PadMode::reflection) c = reflect_coord(c, -0.5, double(n));
  return std::clamp(c, 0.0, double(n - 1));
}

/// Nearest source index along one axis for output o, or -1 for a zero (padding) sample.
inline int64_t nearest_src_index(int64_t n, double start, double len, int64_t out, int64_t o, PadMode pad) {
  double c = start + (double(o) + 0.5) * len / double(out);  // continuous units
  if (c < 0 || c >= double(n)) {
    if (pad == PadMode::zeros) return -1;
    if (pad == PadMode::reflection) c = reflect_coord(c, 0.0, double(n));
  }
  return std::clamp<int64_t>(int64_t(std::floor(c)), 0, n - 1);
}

/// Converts a float result to the storage type: u8 rounds half up and saturates.
template <class T, class A>
inline T resize_store(A v) {
  if constexpr (std::is_same_v<T, uint8_t>) return uint8_t(std::clamp(v + A(0.5), A(0), A(255.0)));
  else return T(v);
}

// ---------------------------------------------------------------- reference

/// dst [C, OH, OW] = bilinear samples of src (C planes, strides sc, sh, sw) over the box g.
template <class T>
void resize_bilinear_ref(const T* src, T* dst, const ResizeGeom& g) {
  using A = resize_acc_t<T>;
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t oy = 0; oy < g.OH; ++oy)
      for (int64_t ox = 0; ox < g.OW; ++ox) {
        // 1. the sample position in pixel-centre units, padded per axis
        bool in_y, in_x;
        const double cy = pad_bilinear_coord(resize_src_coord(g.y0, g.h, g.OH, oy), g.H, g.pad, in_y);
        const double cx = pad_bilinear_coord(resize_src_coord(g.x0, g.w, g.OW, ox), g.W, g.pad, in_x);
        T& out = dst[(c * g.OH + oy) * g.OW + ox];
        if (!in_y || !in_x) {
          out = T(0);  // zeros padding
          continue;
        }
        // 2. the four neighbours and their weights
        const int64_t iy0 = int64_t(std::floor(cy)), ix0 = int64_t(std::floor(cx));
        const int64_t iy1 = std::min(iy0 + 1, g.H - 1), ix1 = std::min(ix0 + 1, g.W - 1);
        const A ly = A(cy - double(iy0)), lx = A(cx - double(ix0));
        auto px = [&](int64_t y, int64_t x) { return A(src[c * g.sc + y * g.sh + x * g.sw]); };
        // 3. blend along x, then along y
        const A top = (A(1) - lx) * px(iy0, ix0) + lx * px(iy0, ix1);
        const A bot = (A(1) - lx) * px(iy1, ix0) + lx * px(iy1, ix1);
        out = resize_store<T>((A(1) - ly) * top + ly * bot);
      }
}

/// dst [C, OH, OW] = the nearest source pixel of each output pixel (0 for zeros padding).
template <class T>
void resize_nearest_ref(const T* src, T* dst, const ResizeGeom& g) {
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t oy = 0; oy < g.OH; ++oy)
      for (int64_t ox = 0; ox < g.OW; ++ox) {
        const int64_t iy = nearest_src_index(g.H, g.y0, g.h, g.OH, oy, g.pad);
        const int64_t ix = nearest_src_index(g.W, g.x0, g.w, g.OW, ox, g.pad);
        dst[(c * g.OH + oy) * g.OW + ox] = iy < 0 || ix < 0 ? T(0) : src[c * g.sc + iy * g.sh + ix * g.sw];
      }
}

/// dst [C, OH, OW] = a dihedral image of src [C, H, W]: transpose (OH = W, OW = H) first, then
/// flip_h reverses the output columns and flip_v the output rows.
template <class T>
void dihedral_copy_ref(const T* src, T* dst, int64_t C, int64_t H, int64_t W, int64_t sc, int64_t sh, int64_t sw,
                       bool transpose, bool flip_h, bool flip_v) {
  const int64_t OH = transpose ? W : H, OW = transpose ? H : W;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t oy = 0; oy < OH; ++oy)
      for (int64_t ox = 0; ox < OW; ++ox) {
        const int64_t ty = flip_v ? OH - 1 - oy : oy, tx = flip_h ? OW - 1 - ox : ox;  // before the flips
        const int64_t y = transpose ? tx : ty, x = transpose ? ty : tx;                  // before the transpose
        dst[(c * OH + oy) * OW + ox] = src[c * sc + y * sh + x * sw];
      }
}

// ---------------------------------------------------------------- kernels

/// Output index o of one axis reads source taps i0, i1 with weights w0, w1 (both 0: padding zero).
template <class A>
struct ResampleTap {
  int32_t i0 = 0, i1 = 0;
  A w0 = 0, w1 = 0;
};

/// The tap table of one axis: n source pixels, box [start, start + len), out output pixels.
template <class A>
std::vector<ResampleTap<A>> bilinear_taps(int64_t n, double start, double len, int64_t out, PadMode pad) {
  std::vector<ResampleTap<A>> taps(size_t(std::max<int64_t>(out, 0)));
  for (int64_t o = 0; o < out; ++o) {
    bool inside;
    const double c = pad_bilinear_coord(resize_src_coord(start, len, out, o), n, pad, inside);
    if (!inside) continue;  // {0, 0, 0, 0}
    const int64_t i0 = int64_t(std::floor(c));
    const A l = A(c - double(i0));
    taps[size_t(o)] = {int32_t(i0), int32_t(std::min(i0 + 1, n - 1)), A(1) - l, l};
  }
  return taps;
}

/// n output values from float buffer b: u8 rounds half up and saturates (AVX2: 32 per step).
template <class T, class A>
inline void resize_store_row(const A* b, T* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  if constexpr (std::is_same_v<T, uint8_t>) {
    const __m256 half = _mm256_set1_ps(0.5f), top = _mm256_set1_ps(255.f), zero = _mm256_setzero_ps();
    auto cvt = [&](const float* p) {
      return _mm256_cvttps_epi32(_mm256_max_ps(_mm256_min_ps(_mm256_add_ps(_mm256_loadu_ps(p), half), top), zero));
    };
    for (; i + 32 <= n; i += 32) {
      const __m256i a = _mm256_packus_epi32(cvt(b + i), cvt(b + i + 8));        // 16-bit, lanes interleaved
      const __m256i c = _mm256_packus_epi32(cvt(b + i + 16), cvt(b + i + 24));
      const __m256i p = _mm256_packus_epi16(a, c);                              // 8-bit, 4 lane groups
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                          _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    }
  }
#endif
  for (; i < n; ++i) out[i] = resize_store<T>(b[i]);
}

/// b[j] = w0 * r0[j * sw] + w1 * r1[j * sw] for j < n (the vertical blend of two source rows;
/// w1 = 0 reads one row). Vectorized for contiguous float/double and u8 rows.
template <class T, class A>
inline void resize_blend_rows(const T* r0, const T* r1, int64_t sw, A w0, A w1, int64_t n, A* b) {
  int64_t j = 0;
  if (sw == 1) {
    if constexpr (std::is_same_v<T, A>) {
      constexpr int V = Vec<A>::size;
      const Vec<A> v0(w0), v1(w1);
      if (w1 == A(0)) {
        for (; j + V <= n; j += V) (v0 * Vec<A>::load(r0 + j)).store(b + j);
      } else {
        for (; j + V <= n; j += V) vfmadd(v1, Vec<A>::load(r1 + j), v0 * Vec<A>::load(r0 + j)).store(b + j);
      }
    }
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, uint8_t>) {
      auto load8 = [](const uint8_t* p) {  // 8 bytes -> 8 floats
        return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
      };
      const __m256 v0 = _mm256_set1_ps(w0), v1 = _mm256_set1_ps(w1);
      if (w1 == A(0)) {
        for (; j + 8 <= n; j += 8) _mm256_storeu_ps(b + j, _mm256_mul_ps(v0, load8(r0 + j)));
      } else {
        for (; j + 8 <= n; j += 8)
          _mm256_storeu_ps(b + j, _mm256_fmadd_ps(v1, load8(r1 + j), _mm256_mul_ps(v0, load8(r0 + j))));
      }
    }
#endif
  }
  if (w1 == A(0)) {
    for (; j < n; ++j) b[j] = w0 * A(r0[j * sw]);
  } else {
    for (; j < n; ++j) b[j] = vfmadd(w1, A(r1[j * sw]), w0 * A(r0[j * sw]));
  }
}

/// out[ox] = wx0 * b[i0] + wx1 * b[i1] for every output column (the column taps on a float row).
/// Scalar: AVX2 gathers measured 2x slower on this machine's AMD EPYC.
template <class A>
inline void resize_taps_row(const A* b, const ResampleTap<A>* xt, int64_t OW, A* out) {
  int64_t ox = 0;
  for (; ox < OW; ++ox) out[ox] = vfmadd(xt[ox].w1, b[xt[ox].i1], xt[ox].w0 * b[xt[ox].i0]);
}

/// dst [C, OH, OW] = bilinear samples of src over the box g (same result as resize_bilinear_ref up
/// to float rounding: this one blends rows first, then columns).
template <class T>
void resize_bilinear(const T* src, T* dst, const ResizeGeom& g) {
  using A = resize_acc_t<T>;
  if (g.C <= 0 || g.OH <= 0 || g.OW <= 0) return;
  if (g.H <= 0 || g.W <= 0) {  // an empty source: all padding
    std::fill(dst, dst + g.C * g.OH * g.OW, T(0));
    return;
  }
  std::vector<ResampleTap<A>> xt = bilinear_taps<A>(g.W, g.x0, g.w, g.OW, g.pad);
  const std::vector<ResampleTap<A>> yt = bilinear_taps<A>(g.H, g.y0, g.h, g.OH, g.pad);
  // the source columns [lo, hi] any tap reads; taps are made relative to lo
  int64_t lo = g.W, hi = -1;
  for (const auto& t : xt)
    if (t.w0 != A(0) || t.w1 != A(0)) lo = std::min<int64_t>(lo, t.i0), hi = std::max<int64_t>(hi, t.i1);
  if (hi < lo) {  // every column is padding
    std::fill(dst, dst + g.C * g.OH * g.OW, T(0));
    return;
  }
  for (auto& t : xt) {
    if (t.w0 == A(0) && t.w1 == A(0)) t.i0 = t.i1 = int32_t(lo);  // a zero tap reads any valid column
    t.i0 -= int32_t(lo), t.i1 -= int32_t(lo);
  }
  const int64_t span = hi - lo + 1, OW = g.OW;
  // columns first when fewer source rows are read than rows written (vertical upscaling): each
  // source row gets its column taps once, kept in a two-row cache; otherwise rows first
  std::vector<char> used(size_t(g.H), 0);
  int64_t n_used = 0;
  for (const auto& t : yt)
    if (t.w0 != A(0) || t.w1 != A(0)) {
      for (int64_t r : {int64_t(t.i0), int64_t(t.i1)}) n_used += !used[size_t(r)], used[size_t(r)] = 1;
    }
  const bool columns_first = n_used < g.OH;
  std::vector<A> buf(size_t(span + 3 * OW));
  A* rowb = buf.data();          // [span] a blended or widened source row
  A* outb = buf.data() + span;   // [OW] the output row before the store
  A* cache[2] = {outb + OW, outb + 2 * OW};  // [OW] x 2: column-tapped source rows
  for (int64_t c = 0; c < g.C; ++c) {
    const T* plane = src + c * g.sc + lo * g.sw;
    T* out = dst + c * g.OH * OW;
    int64_t tag[2] = {-1, -1};  // the source row each cache slot holds
    // source row r with its column taps applied, computed into the slot not holding `keep`
    auto tapped = [&](int64_t r, int64_t keep) -> const A* {
      if (tag[0] == r) return cache[0];
      if (tag[1] == r) return cache[1];
      const int slot = tag[0] == keep ? 1 : 0;
      const T* row = plane + r * g.sh;
      if constexpr (std::is_same_v<T, A>) {
        if (g.sw == 1) {
          resize_taps_row(row, xt.data(), OW, cache[slot]);
          tag[slot] = r;
          return cache[slot];
        }
      }
      resize_blend_rows(row, row, g.sw, A(1), A(0), span, rowb);  // widen to float
      resize_taps_row(rowb, xt.data(), OW, cache[slot]);
      tag[slot] = r;
      return cache[slot];
    };
    for (int64_t oy = 0; oy < g.OH; ++oy) {
      const ResampleTap<A> t = yt[size_t(oy)];
      T* o = out + oy * OW;
      if (t.w0 == A(0) && t.w1 == A(0)) {  // zeros padding row
        std::fill(o, o + OW, T(0));
        continue;
      }
      const bool one = t.w1 == A(0) || t.i1 == t.i0;  // one source row
      if (columns_first) {
        const A* r0 = tapped(t.i0, t.i0);
        if (one) resize_blend_rows(r0, r0, 1, A(t.w0 + t.w1), A(0), OW, outb);
        else resize_blend_rows(r0, tapped(t.i1, t.i0), 1, t.w0, t.w1, OW, outb);
      } else {
        if (one) resize_blend_rows(plane + t.i0 * g.sh, plane, g.sw, A(t.w0 + t.w1), A(0), span, rowb);
        else resize_blend_rows(plane + t.i0 * g.sh, plane + t.i1 * g.sh, g.sw, t.w0, t.w1, span, rowb);
        resize_taps_row(rowb, xt.data(), OW, outb);
      }
      resize_store_row(outb, o, OW);
    }
  }
}

/// dst [C, OH, OW] = the nearest source pixel of each output pixel (same result as the _ref).
template <class T>
void resize_nearest(const T* src, T* dst, const ResizeGeom& g) {
  if (g.C <= 0 || g.OH <= 0 || g.OW <= 0) return;
  if (g.H <= 0 || g.W <= 0) {
    std::fill(dst, dst + g.C * g.OH * g.OW, T(0));
    return;
  }
  std::vector<int64_t> xi(size_t(g.OW)), yi(size_t(g.OH));
  for (int64_t ox = 0; ox < g.OW; ++ox) xi[size_t(ox)] = nearest_src_index(g.W, g.x0, g.w, g.OW, ox, g.pad);
  for (int64_t oy = 0; oy < g.OH; ++oy) yi[size_t(oy)] = nearest_src_index(g.H, g.y0, g.h, g.OH, oy, g.pad);
  for (int64_t c = 0; c < g.C; ++c)
    for (int64_t oy = 0; oy < g.OH; ++oy) {
      T* o = dst + (c * g.OH + oy) * g.OW;
      if (yi[size_t(oy)] < 0) {
        std::fill(o, o + g.OW, T(0));
        continue;
      }
      const T* row = src + c * g.sc + yi[size_t(oy)] * g.sh;
      for (int64_t ox = 0; ox < g.OW; ++ox) o[ox] = xi[size_t(ox)] < 0 ? T(0) : row[xi[size_t(ox)] * g.sw];
    }
}

/// o[i] = e[n - 1 - i] (a horizontal flip of one contiguous row; AVX2: 32 bytes per step for u8).
template <class T>
inline void reverse_copy_row(const T* e, T* o, int64_t n) {
  int64_t i = 0;
#if defined(__AVX2__)
  if constexpr (sizeof(T) == 1) {
    const __m256i rev = _mm256_setr_epi8(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  //
                                         15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    for (; i + 32 <= n; i += 32) {  // o[i..i+32) = reversed e[n-i-32 .. n-i)
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(e + n - i - 32));
      const __m256i r = _mm256_shuffle_epi8(v, rev);  // reversed within each 16-byte lane
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + i), _mm256_permute2x128_si256(r, r, 1));
    }
  }
#endif
  for (; i < n; ++i) o[i] = e[n - 1 - i];
}

/// dst [C, OH, OW] = a dihedral image of src (see dihedral_copy_ref): each output row is a strided
/// walk through src, a plain copy or a reversed copy when the walk is contiguous.
template <class T>
void dihedral_copy(const T* src, T* dst, int64_t C, int64_t H, int64_t W, int64_t sc, int64_t sh, int64_t sw,
                   bool transpose, bool flip_h, bool flip_v) {
  const int64_t OH = transpose ? W : H, OW = transpose ? H : W;
  if (C <= 0 || OH <= 0 || OW <= 0) return;
  // output (oy, ox) reads src at base + oy * row_step + ox * col_step
  int64_t row_step = transpose ? sw : sh, col_step = transpose ? sh : sw;
  int64_t base = 0;
  if (flip_v) base += (OH - 1) * row_step, row_step = -row_step;
  if (flip_h) base += (OW - 1) * col_step, col_step = -col_step;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t oy = 0; oy < OH; ++oy) {
      const T* s = src + c * sc + base + oy * row_step;
      T* o = dst + (c * OH + oy) * OW;
      if (col_step == 1) {
        std::memcpy(o, s, size_t(OW) * sizeof(T));
      } else if (col_step == -1) {
        reverse_copy_row(s - (OW - 1), o, OW);
      } else {
        for (int64_t ox = 0; ox < OW; ++ox) o[ox] = s[ox * col_step];
      }
    }
}

}  // namespace strata::cpu
