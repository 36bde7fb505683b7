// bf16 GEMM on the CPU: C[M,N] (float) = alpha * A[M,K] (bf16) @ B[K,N] (bf16) + beta * C, with
// float accumulation. The matmul of bf16 mixed precision (include/strata/tensor/autocast.hpp).
//
// Same contract as cpu::gemm (kernels/cpu/gemm.hpp): a pointer plus row and column strides (in
// elements, any sign) per matrix; beta == 0 never reads C; alpha == 0 or K == 0 never reads A or B;
// M == 0 or N == 0 does nothing; C must not alias A or B.
//
// gemm_bf16_ref: the plain triple loop, products summed in double: the source of truth.
//
// gemm_bf16, two paths chosen at compile time:
//   AVX512-BF16 (Zen 4, Sapphire Rapids): vdpbf16ps multiplies pairs of bf16 and adds both products
//     to a float lane: B is packed once into [N/16][K/2][16][2] (the two k of a pair side by side
//     per column), a row's pair (a[i,k], a[i,k+1]) is broadcast as one 32-bit value, and a 4 x 16
//     tile accumulates over all of K in registers. Kept small: no development machine so far had
//     AVX512-BF16 (AVX2 Zen 3, then AVX-512 Ice Lake SP), so it is written to be checked by eye, and
//     tests/bf16_emulation/ runs it against gemm_bf16_ref with vdpbf16ps emulated in AVX-512F (its
//     speed is unmeasured).
//   otherwise (AVX2; AVX-512 without BF16, e.g. Ice Lake; scalar): bf16 -> float while packing (a
//     bf16 is the top half of a float, so the conversion is a 16-bit shift; B's rows 16 at a time on
//     AVX-512: gemm_convert in gemm.hpp), then gemm's own blocked driver and float micro-kernel: f32
//     speed with half the memory traffic for the operands (Ice Lake, n 1024: 1.1x our f32).
// Reference: Intel Intrinsics Guide, _mm512_dpbf16_ps; "bfloat16" in Kalamkar et al., "A Study of
// BFLOAT16 for Deep Learning Training" (2019).
#pragma once

#include <algorithm>
#include <cstdint>

#include "kernels/cpu/gemm.hpp"
#include "strata/core/half.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

// ================================================================================ reference

/// C = alpha * A @ B + beta * C by the definition, A and B bf16, C float; sums in double.
inline void gemm_bf16_ref(int64_t M, int64_t N, int64_t K, float alpha,
                          const bf16* A, int64_t a_rs, int64_t a_cs,   // A: [M, K]
                          const bf16* B, int64_t b_rs, int64_t b_cs,   // B: [K, N]
                          float beta, float* C, int64_t c_rs, int64_t c_cs) {  // C: [M, N]
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      // dot product of row i of A with column j of B, each bf16 widened exactly
      double acc = 0;
      for (int64_t p = 0; p < K; ++p) acc += double(float(A[i * a_rs + p * a_cs])) * double(float(B[p * b_rs + j * b_cs]));
      // scale; beta == 0 means "overwrite", so C is not read
      float& c = C[i * c_rs + j * c_cs];
      c = beta == 0.f ? float(double(alpha) * acc) : float(double(alpha) * acc + double(beta) * double(c));
    }
}

// ================================================================================ kernels

#if defined(__AVX512BF16__) && defined(__AVX512F__)
namespace detail {

/// B[K, N] -> out[ceil(N/16)][ceil(K/2)][16][2] as bf16 bits: per 16-column panel, per k pair, the
/// pair (B[2p, j], B[2p+1, j]) of each column side by side; zeros pad K and N.
inline void gemm_bf16_pack_b_pairs(int64_t K, int64_t N, const bf16* B, int64_t b_rs, int64_t b_cs, uint16_t* out) {
  const int64_t KP = (K + 1) / 2;
  for (int64_t q = 0; q < (N + 15) / 16; ++q)
    for (int64_t p = 0; p < KP; ++p)
      for (int64_t j = q * 16; j < q * 16 + 16; ++j)
        for (int64_t k = 2 * p; k < 2 * p + 2; ++k) *out++ = k < K && j < N ? B[k * b_rs + j * b_cs].bits : uint16_t(0);
}

/// The vdpbf16ps gemm: 4-row x 16-column tiles over all of K, rows split across the threads.
inline void gemm_bf16_avx512(int64_t M, int64_t N, int64_t K, float alpha, const bf16* A, int64_t a_rs, int64_t a_cs,
                             const bf16* B, int64_t b_rs, int64_t b_cs, float beta, float* C, int64_t c_rs,
                             int64_t c_cs) {
  const int64_t KP = (K + 1) / 2, panels = (N + 15) / 16;
  uint16_t* pb = reinterpret_cast<uint16_t*>(gemm_scratch<float>(1, panels * KP * 16));  // 32 bf16 per pair row
  gemm_bf16_pack_b_pairs(K, N, B, b_rs, b_cs, pb);
  const bool big = double(M) * double(N) * double(K) >= double(1 << 20);
  parallel_for(0, (M + 3) / 4, big ? 1 : (M + 3) / 4, [&](int64_t lo, int64_t hi) {
    for (int64_t i0 = lo * 4; i0 < std::min(M, hi * 4); i0 += 4) {
      const int rows = int(std::min<int64_t>(4, M - i0));
      for (int64_t q = 0; q < panels; ++q) {
        __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        const uint16_t* b = pb + q * KP * 32;
        for (int64_t p = 0; p < KP; ++p) {
          const __m512bh bv = (__m512bh)_mm512_loadu_si512(b + p * 32);
          for (int r = 0; r < rows; ++r) {
            const bf16* a = A + (i0 + r) * a_rs + 2 * p * a_cs;
            const uint32_t pair = uint32_t(a[0].bits) | (2 * p + 1 < K ? uint32_t(a[a_cs].bits) << 16 : 0u);
            acc[r] = _mm512_dpbf16_ps(acc[r], (__m512bh)_mm512_set1_epi32(int(pair)), bv);
          }
        }
        alignas(64) float tile[16];
        for (int r = 0; r < rows; ++r) {
          _mm512_store_ps(tile, acc[r]);
          for (int64_t j = q * 16; j < std::min(N, q * 16 + 16); ++j) {
            float& c = C[(i0 + r) * c_rs + j * c_cs];
            c = beta == 0.f ? alpha * tile[j - q * 16] : alpha * tile[j - q * 16] + beta * c;
          }
        }
      }
    }
  });
}

}  // namespace detail
#endif

// ================================================================================ launcher

/// C[M,N] (float) = alpha * A[M,K] (bf16) @ B[K,N] (bf16) + beta * C; float accumulation, any
/// strides (see the top).
inline void gemm_bf16(int64_t M, int64_t N, int64_t K, float alpha,
                      const bf16* A, int64_t a_rs, int64_t a_cs,   // A: [M, K]
                      const bf16* B, int64_t b_rs, int64_t b_cs,   // B: [K, N]
                      float beta, float* C, int64_t c_rs, int64_t c_cs) {  // C: [M, N]
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == 0.f) return detail::gemm_scale_c(M, N, beta, C, c_rs, c_cs);
  // column-major C: compute C^T[N,M] = B^T[N,K] @ A^T[K,M], whose rows are contiguous
  if (c_cs != 1 && c_rs == 1 && M > 1)
    return gemm_bf16(N, M, K, alpha, B, b_cs, b_rs, A, a_cs, a_rs, beta, C, c_cs, c_rs);
#if defined(__AVX512BF16__) && defined(__AVX512F__)
  detail::gemm_bf16_avx512(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, c_cs);
#else
  const int threads = strata::detail::in_parallel_region ? 1 : num_threads();
  const bool big = double(M) * double(N) * double(K) >= double(1 << 20);
  detail::gemm_driver<float>(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, c_cs, big ? threads : 1);
#endif
}

}  // namespace strata::cpu
