// vdpbf16ps emulated with AVX-512F, for the AVX512-BF16 paths (gemm_bf16, the direct conv's bf16
// pairs tile) on CPUs without the instruction. Include first: every later _mm512_dpbf16_ps is this one.
// dpbf16_calls counts the calls, so that a test can see the path it meant to check ran.
#pragma once

#include <atomic>

#include "kernels/cpu/simd.hpp"  // immintrin.h (GCC 12's AVX-512 false positives silenced); no vdpbf16ps in it

// vdpbf16ps (Intel Intrinsics Guide): per float lane j, acc += a.bf16[2j+1] b.bf16[2j+1], then
// += a.bf16[2j] b.bf16[2j]; a product of two bf16 is exact in float, so each step is one fma.
inline std::atomic<long> dpbf16_calls{0};

inline __m512 emulated_dpbf16_ps(__m512 acc, __m512bh a, __m512bh b) {
  dpbf16_calls.fetch_add(1, std::memory_order_relaxed);
  const __m512i ai = (__m512i)a, bi = (__m512i)b, hi = _mm512_set1_epi32(int(0xffff0000u));
  const __m512 ah = _mm512_castsi512_ps(_mm512_and_si512(ai, hi)), bh = _mm512_castsi512_ps(_mm512_and_si512(bi, hi));
  const __m512 al = _mm512_castsi512_ps(_mm512_slli_epi32(ai, 16)), bl = _mm512_castsi512_ps(_mm512_slli_epi32(bi, 16));
  return _mm512_fmadd_ps(al, bl, _mm512_fmadd_ps(ah, bh, acc));
}
#define _mm512_dpbf16_ps(acc, a, b) emulated_dpbf16_ps(acc, a, b)

#if !defined(__AVX512BF16__) || !defined(__AVX512F__)
#error "build with -mavx512f -mavx512bf16: this file checks the AVX512-BF16 paths"
#endif
