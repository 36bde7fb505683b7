// Host versions of the CUDA device intrinsics kernels use, for the emulator (global namespace).
//
// The fast-math intrinsics (__expf, __logf, __fdividef, __sinf, ...) are the accurate <cmath>
// functions here: a kernel's result under the emulator can be slightly more accurate than on a GPU
// (tests compare within tolerances). The standard float functions (expf, fmaxf, sqrtf, erff, ...)
// come from <math.h> as in CUDA. 16-bit floats: __half and __nv_bfloat16 are core/half.hpp's f16
// and bf16 (round to nearest even, as __float2half and __float2bfloat16 do). Also the bit
// intrinsics (__popc, __clz, __ffs, __brev, __float_as_int, ...), __ldg and __trap.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <math.h>

#include "strata/core/error.hpp"
#include "strata/core/half.hpp"

// --- float math intrinsics --------------------------------------------------------------------
inline float __expf(float x) { return std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) {
  *s = std::sin(x);
  *c = std::cos(x);
}
inline float __fdividef(float x, float y) { return x / y; }
inline float fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __frsqrt_rn(float x) { return 1.0f / std::sqrt(x); }
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline float __saturatef(float x) { return x > 0.0f ? (x < 1.0f ? x : 1.0f) : 0.0f; }  // NaN -> 0
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fsub_rn(float x, float y) { return x - y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fdiv_rn(float x, float y) { return x / y; }

// --- conversions ------------------------------------------------------------------------------
inline float __int2float_rn(int x) { return float(x); }
inline float __uint2float_rn(unsigned int x) { return float(x); }
inline float __ll2float_rn(long long x) { return float(x); }
inline int __float2int_rn(float x) { return int(std::nearbyint(x)); }  // ties to even
inline int __float2int_rz(float x) { return int(std::trunc(x)); }
inline int __float2int_rd(float x) { return int(std::floor(x)); }
inline int __float2int_ru(float x) { return int(std::ceil(x)); }
inline unsigned int __float2uint_rn(float x) { return unsigned(std::nearbyint(x)); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline unsigned int __float_as_uint(float x) { return std::bit_cast<unsigned int>(x); }
inline float __uint_as_float(unsigned int x) { return std::bit_cast<float>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }

// --- 16-bit floats ----------------------------------------------------------------------------
using __half = strata::f16;
using __nv_bfloat16 = strata::bf16;
inline __half __float2half(float x) { return __half(x); }
inline __half __float2half_rn(float x) { return __half(x); }
inline float __half2float(__half x) { return float(x); }
inline __nv_bfloat16 __float2bfloat16(float x) { return __nv_bfloat16(x); }
inline __nv_bfloat16 __float2bfloat16_rn(float x) { return __nv_bfloat16(x); }
inline float __bfloat162float(__nv_bfloat16 x) { return float(x); }
inline unsigned short __half_as_ushort(__half x) { return x.bits; }
inline __half __ushort_as_half(unsigned short x) { return __half::from_bits(x); }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 x) { return x.bits; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short x) { return __nv_bfloat16::from_bits(x); }

// --- integer bit intrinsics -------------------------------------------------------------------
inline int __popc(unsigned int x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(unsigned(x)); }
inline int __clzll(long long x) { return std::countl_zero((unsigned long long)(x)); }
/// 1 + index of the least significant set bit, 0 for x == 0.
inline int __ffs(int x) { return x ? std::countr_zero(unsigned(x)) + 1 : 0; }
inline int __ffsll(long long x) { return x ? std::countr_zero((unsigned long long)(x)) + 1 : 0; }
inline unsigned int __brev(unsigned int x) {
  unsigned int r = 0;
  for (int i = 0; i < 32; ++i, x >>= 1) r = (r << 1) | (x & 1u);
  return r;
}
inline int __mul24(int x, int y) { return int(int64_t(x << 8 >> 8) * (y << 8 >> 8)); }
inline unsigned int __umul24(unsigned int x, unsigned int y) { return (x & 0xffffffu) * (y & 0xffffffu); }
inline int __mulhi(int x, int y) { return int((int64_t(x) * y) >> 32); }
inline unsigned int __umulhi(unsigned int x, unsigned int y) { return unsigned((uint64_t(x) * y) >> 32); }

// --- memory -----------------------------------------------------------------------------------
/// Read-only cached load: a plain load here.
template <class T>
T __ldg(const T* p) {
  return *p;
}

/// Aborts the kernel: here, throws (the launch reports the block and thread).
[[noreturn]] inline void __trap() { throw strata::Error("__trap: got a trap, expected the kernel not to trap"); }
