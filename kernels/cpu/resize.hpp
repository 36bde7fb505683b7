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
// (two source indices and two weights per output column / row) is built once per call; each needed
// source row is resampled horizontally into a float row buffer (the last two are cached, so an
// upscale reads each source row once), then output rows blend two buffers with Vec<float>, and u8
// rows are rounded and packed 32 at a time with AVX2 when it is there. The `_ref` functions are
// plain per-pixel loops with no tables, the truth the fast kernels are checked against.
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
  int64_t i0 = 0, i1 = 0;
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
    taps[size_t(o)] = {i0, std::min(i0 + 1, n - 1), A(1) - l, l};
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

/// b[ox] = wx0 * row[i0] + wx1 * row[i1] for every output column (one source row, stride sw).
template <class T, class A>
inline void resize_row_h(const T* row, int64_t sw, const ResampleTap<A>* xt, int64_t OW, A* b) {
  if (sw == 1) {
    for (int64_t ox = 0; ox < OW; ++ox) b[ox] = xt[ox].w0 * A(row[xt[ox].i0]) + xt[ox].w1 * A(row[xt[ox].i1]);
  } else {
    for (int64_t ox = 0; ox < OW; ++ox)
      b[ox] = xt[ox].w0 * A(row[xt[ox].i0 * sw]) + xt[ox].w1 * A(row[xt[ox].i1 * sw]);
  }
}

/// dst [C, OH, OW] = bilinear samples of src over the box g (same result as resize_bilinear_ref).
template <class T>
void resize_bilinear(const T* src, T* dst, const ResizeGeom& g) {
  using A = resize_acc_t<T>;
  if (g.C <= 0 || g.OH <= 0 || g.OW <= 0) return;
  const std::vector<ResampleTap<A>> xt = bilinear_taps<A>(g.W, g.x0, g.w, g.OW, g.pad);
  const std::vector<ResampleTap<A>> yt = bilinear_taps<A>(g.H, g.y0, g.h, g.OH, g.pad);
  const int64_t OW = g.OW;
  std::vector<A> buf(size_t(3 * OW));  // two cached horizontal rows + one blended output row
  A* rows[2] = {buf.data(), buf.data() + OW};
  A* blend = buf.data() + 2 * OW;
  constexpr int V = Vec<A>::size;
  for (int64_t c = 0; c < g.C; ++c) {
    const T* plane = src + c * g.sc;
    T* out = dst + c * g.OH * OW;
    int64_t tag[2] = {-1, -1};  // which source row each buffer holds (per plane)
    // the buffer holding source row r, resampling it into the slot not holding `keep` if needed
    auto row_of = [&](int64_t r, int64_t keep) -> const A* {
      if (tag[0] == r) return rows[0];
      if (tag[1] == r) return rows[1];
      const int s = tag[0] == keep ? 1 : 0;
      resize_row_h(plane + r * g.sh, g.sw, xt.data(), OW, rows[s]);
      tag[s] = r;
      return rows[s];
    };
    for (int64_t oy = 0; oy < g.OH; ++oy) {
      const ResampleTap<A> t = yt[size_t(oy)];
      T* o = out + oy * OW;
      if (t.w0 == A(0) && t.w1 == A(0)) {  // zeros padding row
        std::fill(o, o + OW, T(0));
        continue;
      }
      const A* r0 = row_of(t.i0, t.i0);
      if (t.w1 == A(0) || t.i1 == t.i0) {  // one source row
        const Vec<A> w0(t.w0 + t.w1);
        int64_t ox = 0;
        for (; ox + V <= OW; ox += V) (w0 * Vec<A>::load(r0 + ox)).store(blend + ox);
        for (; ox < OW; ++ox) blend[ox] = (t.w0 + t.w1) * r0[ox];
      } else {
        const A* r1 = row_of(t.i1, t.i0);
        const Vec<A> w0(t.w0), w1(t.w1);
        int64_t ox = 0;
        for (; ox + V <= OW; ox += V)
          vfmadd(w1, Vec<A>::load(r1 + ox), w0 * Vec<A>::load(r0 + ox)).store(blend + ox);
        for (; ox < OW; ++ox) blend[ox] = vfmadd(t.w1, r1[ox], t.w0 * r0[ox]);
      }
      resize_store_row(blend, o, OW);
    }
  }
}

/// dst [C, OH, OW] = the nearest source pixel of each output pixel (same result as the _ref).
template <class T>
void resize_nearest(const T* src, T* dst, const ResizeGeom& g) {
  if (g.C <= 0 || g.OH <= 0 || g.OW <= 0) return;
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
        const T* e = s - (OW - 1);  // reversed contiguous run
        for (int64_t ox = 0; ox < OW; ++ox) o[ox] = e[OW - 1 - ox];
      } else {
        for (int64_t ox = 0; ox < OW; ++ox) o[ox] = s[ox * col_step];
      }
    }
}

}  // namespace strata::cpu
