// The small SIMD layer the CPU kernels are written in.
//
// Vec<float> and Vec<double> wrap one machine register: AVX-512 (16 floats) when compiled with
// -mavx512f, else AVX2+FMA (8 floats), else a plain scalar (width 1) so every kernel still builds
// on any compiler and target. Chosen at compile time from the target macros; kernels only use the
// operations below, so adding a width (NEON, AVX10) means adding one section here.
//
// Operations: load/store (unaligned), broadcast, + - * /, fmadd, min/max, abs, sqrt, exp,
// reduce_add/reduce_max/reduce_min. The same spelled functions exist for scalars (float, double),
// so one functor body serves the vector loop and its scalar tail.
// exp: Cephes-style range reduction x = n ln2 + r, degree-6 polynomial for e^r, scale by 2^n;
// relative error < 2 ulp in f32 over [-87, 88] (gradual underflow down to -104, then exactly 0;
// exactly +inf above 89; NaN stays NaN).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "strata/core/half.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*() (`__m512 __Y = __Y;`), which
// -Wmaybe-uninitialized reports wherever they inline, hundreds of times per TU (GCC bug 105593, fixed in
// GCC 13 by the same pragmas inside the header): silenced for the header's own lines only.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

// STRATA_UNROLL(n): `#pragma GCC unroll n` for the host compilers; nothing under nvcc, whose front end
// does not know the pragma (warning 1675 per use) and sees these headers when a .cu includes strata.
#define STRATA_PRAGMA(x) _Pragma(#x)
#if defined(__CUDACC__)
#define STRATA_UNROLL(n)
#else
#define STRATA_UNROLL(n) STRATA_PRAGMA(GCC unroll n)
#endif

namespace strata::cpu {

// ---- scalar spellings, so functors are generic over float/double and Vec ----
template <class T> requires std::is_arithmetic_v<T> inline T vmax(T a, T b) { return a > b ? a : b; }
template <class T> requires std::is_arithmetic_v<T> inline T vmin(T a, T b) { return a < b ? a : b; }
inline float vfmadd(float a, float b, float c) { return std::fma(a, b, c); }
inline double vfmadd(double a, double b, double c) { return std::fma(a, b, c); }
// integer spellings (through double), so functors instantiate for every numeric dtype
template <class T> requires std::is_arithmetic_v<T> inline T vabs(T a) {
  if constexpr (std::is_unsigned_v<T>) return a;  // (nvcc warns on the pointless a < 0)
  else return a < T(0) ? T(-a) : a;
}
template <class T> requires std::is_arithmetic_v<T> inline T vsqrt(T a) { return T(std::sqrt(double(a))); }
template <class T> requires std::is_arithmetic_v<T> inline T vexp(T a) { return T(std::exp(double(a))); }
inline float vabs(float a) { return std::fabs(a); }
inline double vabs(double a) { return std::fabs(a); }
inline float vsqrt(float a) { return std::sqrt(a); }
inline double vsqrt(double a) { return std::sqrt(a); }
inline float vexp(float a) { return std::exp(a); }
/// isnan(x) ? t : f (integers are never NaN).
template <class T> requires std::is_arithmetic_v<T> inline T select_nan(T x, T t, T f) {
  if constexpr (std::is_floating_point_v<T>) return x != x ? t : f;
  else return f;
}
inline float vtanh(float a) { return std::tanh(a); }
inline double vtanh(double a) { return std::tanh(a); }
inline double vexp(double a) { return std::exp(a); }

template <class T> struct Vec;  // specialised below for float and double

#if defined(__AVX512F__)
#define STRATA_SIMD_NAME "avx512"
template <> struct Vec<float> {
  static constexpr int size = 16;
  __m512 v;
  Vec() = default;
  Vec(__m512 x) : v(x) {}
  explicit Vec(float s) : v(_mm512_set1_ps(s)) {}
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
  friend Vec operator+(Vec a, Vec b) { return _mm512_add_ps(a.v, b.v); }
  friend Vec operator-(Vec a, Vec b) { return _mm512_sub_ps(a.v, b.v); }
  friend Vec operator*(Vec a, Vec b) { return _mm512_mul_ps(a.v, b.v); }
  friend Vec operator/(Vec a, Vec b) { return _mm512_div_ps(a.v, b.v); }
  friend Vec operator-(Vec a) {  // flips the sign bit: -(+0) is -0, as the scalar path and PyTorch
    return _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(int(0x80000000u))));
  }
  friend Vec vmax(Vec a, Vec b) { return _mm512_max_ps(a.v, b.v); }
  friend Vec vmin(Vec a, Vec b) { return _mm512_min_ps(a.v, b.v); }
  friend Vec vfmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a.v, b.v, c.v); }
  friend Vec vabs(Vec a) { return _mm512_abs_ps(a.v); }
  friend Vec vsqrt(Vec a) { return _mm512_sqrt_ps(a.v); }
  friend Vec select_lt(Vec a, Vec b, Vec t, Vec f) {  // a < b ? t : f, lane by lane
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ), f.v, t.v);
  }
  friend Vec select_nan(Vec x, Vec t, Vec f) {  // isnan(x) ? t : f
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x.v, x.v, _CMP_UNORD_Q), f.v, t.v);
  }
  friend float reduce_add(Vec a) { return _mm512_reduce_add_ps(a.v); }
  friend float reduce_max(Vec a) { return _mm512_reduce_max_ps(a.v); }
  friend float reduce_min(Vec a) { return _mm512_reduce_min_ps(a.v); }
  // 2^n for integral-valued n (as float), by building the exponent bits.
  static Vec pow2n(Vec n) {
    __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
  }
  static Vec round(Vec a) { return _mm512_roundscale_ps(a.v, _MM_FROUND_TO_NEAREST_INT); }
};
template <> struct Vec<double> {
  static constexpr int size = 8;
  __m512d v;
  Vec() = default;
  Vec(__m512d x) : v(x) {}
  explicit Vec(double s) : v(_mm512_set1_pd(s)) {}
  static Vec load(const double* p) { return _mm512_loadu_pd(p); }
  void store(double* p) const { _mm512_storeu_pd(p, v); }
  friend Vec operator+(Vec a, Vec b) { return _mm512_add_pd(a.v, b.v); }
  friend Vec operator-(Vec a, Vec b) { return _mm512_sub_pd(a.v, b.v); }
  friend Vec operator*(Vec a, Vec b) { return _mm512_mul_pd(a.v, b.v); }
  friend Vec operator/(Vec a, Vec b) { return _mm512_div_pd(a.v, b.v); }
  friend Vec operator-(Vec a) {  // flips the sign bit
    return _mm512_castsi512_pd(_mm512_xor_si512(_mm512_castpd_si512(a.v), _mm512_set1_epi64(int64_t(0x8000000000000000ull))));
  }
  friend Vec vmax(Vec a, Vec b) { return _mm512_max_pd(a.v, b.v); }
  friend Vec vmin(Vec a, Vec b) { return _mm512_min_pd(a.v, b.v); }
  friend Vec vfmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_pd(a.v, b.v, c.v); }
  friend Vec vabs(Vec a) { return _mm512_abs_pd(a.v); }
  friend Vec vsqrt(Vec a) { return _mm512_sqrt_pd(a.v); }
  friend Vec select_lt(Vec a, Vec b, Vec t, Vec f) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(a.v, b.v, _CMP_LT_OQ), f.v, t.v);
  }
  friend Vec select_nan(Vec x, Vec t, Vec f) {
    return _mm512_mask_blend_pd(_mm512_cmp_pd_mask(x.v, x.v, _CMP_UNORD_Q), f.v, t.v);
  }
  friend double reduce_add(Vec a) { return _mm512_reduce_add_pd(a.v); }
  friend double reduce_max(Vec a) { return _mm512_reduce_max_pd(a.v); }
  friend double reduce_min(Vec a) { return _mm512_reduce_min_pd(a.v); }
};
#elif defined(__AVX2__) && defined(__FMA__)
#define STRATA_SIMD_NAME "avx2"
template <> struct Vec<float> {
  static constexpr int size = 8;
  __m256 v;
  Vec() = default;
  Vec(__m256 x) : v(x) {}
  explicit Vec(float s) : v(_mm256_set1_ps(s)) {}
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
  friend Vec operator+(Vec a, Vec b) { return _mm256_add_ps(a.v, b.v); }
  friend Vec operator-(Vec a, Vec b) { return _mm256_sub_ps(a.v, b.v); }
  friend Vec operator*(Vec a, Vec b) { return _mm256_mul_ps(a.v, b.v); }
  friend Vec operator/(Vec a, Vec b) { return _mm256_div_ps(a.v, b.v); }
  friend Vec operator-(Vec a) { return _mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f)); }  // flips the sign bit: -(+0) is -0
  friend Vec vmax(Vec a, Vec b) { return _mm256_max_ps(a.v, b.v); }
  friend Vec vmin(Vec a, Vec b) { return _mm256_min_ps(a.v, b.v); }
  friend Vec vfmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a.v, b.v, c.v); }
  friend Vec vabs(Vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a.v); }
  friend Vec vsqrt(Vec a) { return _mm256_sqrt_ps(a.v); }
  friend Vec select_lt(Vec a, Vec b, Vec t, Vec f) {
    return _mm256_blendv_ps(f.v, t.v, _mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ));
  }
  friend Vec select_nan(Vec x, Vec t, Vec f) {
    return _mm256_blendv_ps(f.v, t.v, _mm256_cmp_ps(x.v, x.v, _CMP_UNORD_Q));
  }
  friend float reduce_add(Vec a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  friend float reduce_max(Vec a) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  friend float reduce_min(Vec a) {
    __m128 s = _mm_min_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    s = _mm_min_ps(s, _mm_movehl_ps(s, s));
    s = _mm_min_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Vec pow2n(Vec n) {
    __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }
  static Vec round(Vec a) { return _mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
};
template <> struct Vec<double> {
  static constexpr int size = 4;
  __m256d v;
  Vec() = default;
  Vec(__m256d x) : v(x) {}
  explicit Vec(double s) : v(_mm256_set1_pd(s)) {}
  static Vec load(const double* p) { return _mm256_loadu_pd(p); }
  void store(double* p) const { _mm256_storeu_pd(p, v); }
  friend Vec operator+(Vec a, Vec b) { return _mm256_add_pd(a.v, b.v); }
  friend Vec operator-(Vec a, Vec b) { return _mm256_sub_pd(a.v, b.v); }
  friend Vec operator*(Vec a, Vec b) { return _mm256_mul_pd(a.v, b.v); }
  friend Vec operator/(Vec a, Vec b) { return _mm256_div_pd(a.v, b.v); }
  friend Vec operator-(Vec a) { return _mm256_xor_pd(a.v, _mm256_set1_pd(-0.0)); }  // flips the sign bit
  friend Vec vmax(Vec a, Vec b) { return _mm256_max_pd(a.v, b.v); }
  friend Vec vmin(Vec a, Vec b) { return _mm256_min_pd(a.v, b.v); }
  friend Vec vfmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_pd(a.v, b.v, c.v); }
  friend Vec vabs(Vec a) { return _mm256_andnot_pd(_mm256_set1_pd(-0.0), a.v); }
  friend Vec vsqrt(Vec a) { return _mm256_sqrt_pd(a.v); }
  friend Vec select_lt(Vec a, Vec b, Vec t, Vec f) {
    return _mm256_blendv_pd(f.v, t.v, _mm256_cmp_pd(a.v, b.v, _CMP_LT_OQ));
  }
  friend Vec select_nan(Vec x, Vec t, Vec f) {
    return _mm256_blendv_pd(f.v, t.v, _mm256_cmp_pd(x.v, x.v, _CMP_UNORD_Q));
  }
  friend double reduce_add(Vec a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
  }
  friend double reduce_max(Vec a) {
    __m128d s = _mm_max_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_max_sd(s, _mm_unpackhi_pd(s, s)));
  }
  friend double reduce_min(Vec a) {
    __m128d s = _mm_min_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
    return _mm_cvtsd_f64(_mm_min_sd(s, _mm_unpackhi_pd(s, s)));
  }
};
#else
#define STRATA_SIMD_NAME "scalar"
// No vector unit known: the primary template is a one-lane "vector", so kernels compile unchanged.
template <class T> struct Vec {
  static constexpr int size = 1;
  T v;
  Vec() = default;
  explicit Vec(T s) : v(s) {}
  static Vec load(const T* p) { return Vec(*p); }
  void store(T* p) const { *p = v; }
  friend Vec operator+(Vec a, Vec b) { return Vec(a.v + b.v); }
  friend Vec operator-(Vec a, Vec b) { return Vec(a.v - b.v); }
  friend Vec operator*(Vec a, Vec b) { return Vec(a.v * b.v); }
  friend Vec operator/(Vec a, Vec b) { return Vec(a.v / b.v); }
  friend Vec operator-(Vec a) { return Vec(-a.v); }
  friend Vec vmax(Vec a, Vec b) { return Vec(a.v > b.v ? a.v : b.v); }
  friend Vec vmin(Vec a, Vec b) { return Vec(a.v < b.v ? a.v : b.v); }
  friend Vec vfmadd(Vec a, Vec b, Vec c) { return Vec(std::fma(a.v, b.v, c.v)); }
  friend Vec vabs(Vec a) { return Vec(std::fabs(a.v)); }
  friend Vec vsqrt(Vec a) { return Vec(std::sqrt(a.v)); }
  friend Vec select_lt(Vec a, Vec b, Vec t, Vec f) { return a.v < b.v ? t : f; }
  friend Vec select_nan(Vec x, Vec t, Vec f) { return x.v != x.v ? t : f; }
  friend T reduce_add(Vec a) { return a.v; }
  friend T reduce_max(Vec a) { return a.v; }
  friend T reduce_min(Vec a) { return a.v; }
  static Vec pow2n(Vec n) { return Vec(std::ldexp(T(1), int(n.v))); }
  static Vec round(Vec a) { return Vec(std::nearbyint(a.v)); }
};
#endif

/// Vectorized e^x for float lanes (see the file comment for the method and accuracy).
inline Vec<float> vexp(Vec<float> x) {
  using V = Vec<float>;
  // clamp with x second: max/min return their second operand on NaN, so NaN propagates; below
  // -104 the result underflows to exactly 0, above 89 it overflows to exactly inf
  x = vmin(V(89.0f), vmax(V(-104.0f), x));
  const V n = V::round(x * V(1.44269504088896341f));       // n = round(x / ln2)
  V r = vfmadd(n, V(-0.693359375f), x);                      // r = x - n ln2, ln2 split in two
  r = vfmadd(n, V(2.12194440e-4f), r);                       //   for an exact first product
  V p = V(1.9875691500e-4f);                                 // e^r = 1 + r + r^2 * P(r)
  p = vfmadd(p, r, V(1.3981999507e-3f));
  p = vfmadd(p, r, V(8.3334519073e-3f));
  p = vfmadd(p, r, V(4.1665795894e-2f));
  p = vfmadd(p, r, V(1.6666665459e-1f));
  p = vfmadd(p, r, V(5.0000001201e-1f));
  p = vfmadd(p * r, r, r + V(1.0f));
  // 2^n via two halves so n = 128 (x near 88.7) does not overflow the exponent field
  const V n1 = V::round(n * V(0.5f));
  return p * V::pow2n(n1) * V::pow2n(n - n1);
}

/// Vectorized tanh for float lanes (Cephes tanhf): an odd polynomial x + x^3 P(x^2) for |x| < 0.625,
/// else 1 - 2 / (e^{2|x|} + 1) with the sign put back; max error about 2 ulp. NaN stays NaN.
inline Vec<float> vtanh(Vec<float> x) {
  using V = Vec<float>;
  const V z = x * x;
  V p = V(-5.70498872745e-3f);
  p = vfmadd(p, z, V(2.06390887954e-2f));
  p = vfmadd(p, z, V(-5.37397155531e-2f));
  p = vfmadd(p, z, V(1.33314422036e-1f));
  p = vfmadd(p, z, V(-3.33332819422e-1f));
  const V small = vfmadd(p * z, x, x);
  const V ax = vabs(x);
  const V big = V(1.0f) - V(2.0f) / (vexp(ax + ax) + V(1.0f));
  const V signed_big = select_lt(x, V(0.0f), -big, big);
  return select_lt(ax, V(0.625f), small, signed_big);
}

/// tanh for double lanes: lane by lane through std::tanh.
inline Vec<double> vtanh(Vec<double> x) {
  alignas(64) double t[Vec<double>::size];
  x.store(t);
  for (double& v : t) v = std::tanh(v);
  return Vec<double>::load(t);
}

/// e^x for double lanes: lane by lane through std::exp (f64 is the checking dtype, not the fast one).
inline Vec<double> vexp(Vec<double> x) {
  alignas(64) double t[Vec<double>::size];
  x.store(t);
  for (double& v : t) v = std::exp(v);
  return Vec<double>::load(t);
}

// ---- float <-> bf16 over contiguous rows ----

/// out[i] = bf16(in[i]) for a contiguous row: float_to_bf16_bits (core/half.hpp: nearest, ties to
/// even; NaN stays a quiet NaN) 16 or 8 lanes at a time. Autocast rounds every matmul/conv operand
/// this way, so the scalar loop (which gcc does not vectorize: the NaN branch) showed in profiles;
/// the GEMM's packing has a fixed-length twin (gemm_convert in gemm.hpp).
inline void cvt_f32_to_bf16(const float* in, bf16* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  const __m512i one = _mm512_set1_epi32(1), half = _mm512_set1_epi32(0x7fff), quiet = _mm512_set1_epi32(0x40);
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(in + i);
    const __m512i x = _mm512_castps_si512(v);
    const __m512i hi = _mm512_srli_epi32(x, 16);
    const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(x, _mm512_add_epi32(half, _mm512_and_si512(hi, one))), 16);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    const __m512i y = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, quiet));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm512_cvtepi32_epi16(y));
  }
#elif defined(__AVX2__)
  const __m256i one = _mm256_set1_epi32(1), half = _mm256_set1_epi32(0x7fff), quiet = _mm256_set1_epi32(0x40);
  for (; i + 16 <= n; i += 16) {
    __m256i y[2];
    for (int k = 0; k < 2; ++k) {
      const __m256 v = _mm256_loadu_ps(in + i + 8 * k);
      const __m256i x = _mm256_castps_si256(v);
      const __m256i hi = _mm256_srli_epi32(x, 16);
      const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(x, _mm256_add_epi32(half, _mm256_and_si256(hi, one))), 16);
      const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      y[k] = _mm256_blendv_epi8(r, _mm256_or_si256(hi, quiet), nan);
    }
    // values fit 16 bits, so the unsigned saturating pack is exact; it packs per 128-bit lane
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(y[0], y[1]), 0xd8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
#endif
  for (; i < n; ++i) out[i] = bf16::from_bits(strata::detail::float_to_bf16_bits(in[i]));
}

/// out[i] = float(in[i]) for a contiguous row: a bf16 is the top half of a float.
inline void cvt_bf16_to_f32(const bf16* in, float* out, int64_t n) {
  int64_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(in + i));
    _mm512_storeu_si512(out + i, _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
#elif defined(__AVX2__)
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
#endif
  for (; i < n; ++i) out[i] = float(in[i]);
}

// ---- float rounded to bf16, kept in float ----
// Autocast's conv kernels multiply bf16-rounded operands in float32: they round each value as they
// transpose or copy it, instead of a bf16 copy and a float copy. round_to_bf16(v) == float(bf16(v))
// bit for bit: nearest, ties to even, Inf stays Inf, NaN stays a quiet NaN (low 16 bits cleared).

/// float(bf16(v)) for one value (double: through float).
inline float round_to_bf16(float v) {
  return strata::detail::bf16_bits_to_float(strata::detail::float_to_bf16_bits(v));
}
inline double round_to_bf16(double v) { return double(round_to_bf16(float(v))); }

#if defined(__AVX512F__)
/// round_to_bf16 on 16 lanes.
inline __m512 round_to_bf16_ps(__m512 v) {
  const __m512i x = _mm512_castps_si512(v), mask = _mm512_set1_epi32(int(0xffff0000u));
  const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(x, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i y = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(x, _mm512_set1_epi32(0x00400000)));
  return _mm512_castsi512_ps(_mm512_and_si512(y, mask));
}
#endif
#if defined(__AVX2__)
/// round_to_bf16 on 8 lanes.
inline __m256 round_to_bf16_ps(__m256 v) {
  const __m256i x = _mm256_castps_si256(v), mask = _mm256_set1_epi32(int(0xffff0000u));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_add_epi32(x, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  const __m256i y = _mm256_blendv_epi8(r, _mm256_or_si256(x, _mm256_set1_epi32(0x00400000)), nan);
  return _mm256_castsi256_ps(_mm256_and_si256(y, mask));
}
#endif

/// out[i] = round_to_bf16(in[i]) for a contiguous row (out == in allowed).
template <class T>
void round_to_bf16(const T* in, T* out, int64_t n) {
  int64_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, round_to_bf16_ps(_mm512_loadu_ps(in + i)));
#elif defined(__AVX2__)
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, round_to_bf16_ps(_mm256_loadu_ps(in + i)));
#endif
  }
  for (; i < n; ++i) out[i] = round_to_bf16(in[i]);
}

}  // namespace strata::cpu
