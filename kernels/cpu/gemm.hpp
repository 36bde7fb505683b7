// GEMM on the CPU: C[M,N] = alpha * A[M,K] @ B[K,N] + beta * C[M,N], for float and double.
//
// Every matrix is a pointer plus a row stride and a column stride (in elements, any sign), so
// transposed, sliced and broadcast (stride 0) operands need no copy: A^T is (A, a_cs, a_rs).
// Contract: beta == 0 never reads C (NaN or garbage in C does not leak into the result);
// alpha == 0 or K == 0 never reads A or B; M == 0 or N == 0 does nothing. C must not alias A or B.
//
// gemm_ref: the plain triple loop with the dot product accumulated in double (int64 for integer
// types): the source of truth the fast kernel is tested against, and the integer matmul path.
//
// gemm: the GotoBLAS / BLIS algorithm (Goto & van de Geijn, "Anatomy of High-Performance Matrix
// Multiplication", TOMS 2008; Van Zee & van de Geijn, "BLIS", TOMS 2015). Five loops around a
// register-blocked micro-kernel:
//
//   for jc in N step NC:                  B block  [KC x NC] packed, lives in L3
//     for pc in K step KC:                  pack B[pc:pc+KC, jc:jc+NC] into NR-column panels
//       for ic in M step MC:                A block  [MC x KC] packed, lives in L2
//         pack A[ic:ic+MC, pc:pc+KC] into MR-row panels
//         for jr in NC step NR:             B micro-panel [KC x NR] stays in L1
//           for ir in MC step MR:           A micro-panel [MR x KC] streams from L2
//             C[MR x NR] (+)= A panel @ B panel      (micro-kernel: MR*NR/Vec accumulators)
//
// Packing copies each block once into the exact order the micro-kernel reads it (unit stride,
// one vector load of B and MR broadcasts of A per k), whatever the operands' strides were, and
// converts the element type on the way (gemm_bf16.hpp packs bf16 operands into float panels and
// reuses everything below). A row-major B is packed row by row (each row read once, left to right:
// a panel-by-panel walk strides down the rows and defeats the hardware prefetcher). Edge panels are
// zero-padded to MR / NR, so the micro-kernel always runs a full tile; the partial tile (and a C
// without unit column stride) is written through a small buffer, element by element. The
// micro-kernel prefetches its C tile before the k loop (rows a power-of-two stride apart all miss).
// A C with unit row stride and non-unit column stride (column-major) is handled by computing
// C^T = B^T A^T instead, so the fast store path applies. Packing buffers are per-thread scratch that
// only grows: the same shapes every training step reuse them.
//
// Threads: when M*N*K >= 2^20 all threads run the loop nest together (one pool region). They share
// one packed B block (L3 holds it once, not once per thread): the threads pack its panels in pieces
// handed out by a counter, wait until all of it is packed, then take pieces of the product (chunks
// of whole MR-row tiles of C, each thread packing the A rows of its chunk; about 4 chunks per thread)
// from a second counter. Two B buffers alternate, so packing the next block overlaps the end of the
// product of this one. Nobody waits for a thread to arrive, only for work already claimed: a thread
// slowed by another process (shared machines) just takes fewer pieces, and one that starts late
// finds the work done. With few rows and many columns (convolution shapes) the pieces are groups of
// B panels instead; on AVX-512, when all of A fits one MC block, such pieces share nothing at all:
// each thread packs the B panels of its piece and all of A itself, and nobody waits. Each element
// of C is computed by one piece, in the same order whichever thread runs it: results do not depend
// on the thread count or on scheduling. When a B block carries little work (long K, small M and N:
// weight gradients), the threads instead split C's rows (or columns) into one independent part each.
// Called from inside a parallel region (e.g. one gemm per batch matrix), it runs single-threaded.
//
// Register tiles (MR x NR), from the vector width in kernels/cpu/simd.hpp:
//   AVX2+FMA (16 ymm):   f32 6 x 16, f64 6 x 8   : 12 accumulators + 2 B vectors + 1 broadcast = 15
//   AVX-512  (32 zmm):   f32 6 x 64, f64 6 x 32  : 24 accumulators + 4 B vectors + 1 broadcast = 29
//     (per k, 4 loads and 6 broadcasts feed 24 FMAs; on Ice Lake SP 6 x 64 beat 14 x 32, 12 x 32,
//     8 x 48, 5 x 80 and 4 x 96 by 5-15%: bench/kernels/gemm.cpp, v7a)
//   scalar:              4 x 4 (compilers keep 16 scalars in registers)
// (The k loop is left rolled: unrolling it by 4 made GCC 12 spill an accumulator, -20%.)
// Block sizes, measured on the development machine's Zen 3 cores (32 KiB L1d, 512 KiB L2, shared
// L3) against OpenBLAS in bench/kernels/gemm.cpp and bench/e2e/gemm_vs_openblas.cpp:
//   KC: the B micro-panel KC x NR must stay in L1 while the A panels stream past it:
//       384 * 16 * 4 = 24 KiB (f32 AVX2), 384 * 8 * 8 = 24 KiB (f64 AVX2), 192 * 32 * 4 = 24 KiB
//       (f32 AVX-512): three quarters of L1; a larger KC also reads and writes C fewer times.
//   MC: the packed A block MC x KC stays in L2: 192 * 384 * 4 = 288 KiB (f32), 96 * 384 * 8 =
//       288 KiB (f64): over half of a 512 KiB L2 (KC 256 / MC 144, a third of it, was ~8% slower).
//   NC: the packed B block KC x NC sits in L3: 384 * 4080 * 4 = 6 MiB; NC is a multiple of NR.
// AVX-512, measured on Ice Lake SP (48 KiB L1d, 1.25 MiB L2) the same way: KC 384 and MC 240 (f32;
// f64 MC 120, the same bytes): the 6 x KC A micro-panel (9 KiB) stays in L1 and the 96 KiB B
// micro-panel streams from L2; KC 320-448 and MC 120-360 were within noise, KC 192 5-10% slower.
// NC 1024 (f32; 512 f64): the 1.5 MiB B block stays near L2, which a conv shape with few rows
// (64 x 50176 x 288) needs: 1.5x faster than with NC 4064; squares do not notice. K is cut into
// equal blocks (K 400: 200 + 200, not 384 + 16, +5%); the AVX2 branch keeps KC, KC, ..., rest.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <thread>
#include <type_traits>

#include "kernels/cpu/simd.hpp"
#include "strata/core/half.hpp"
#include "strata/core/parallel.hpp"

namespace strata::cpu {

// ================================================================================ reference

/// C = alpha * A @ B + beta * C by the definition; sums in double (int64 for integer T).
template <class T>
void gemm_ref(int64_t M, int64_t N, int64_t K, T alpha,
              const T* A, int64_t a_rs, int64_t a_cs,   // A: [M, K]
              const T* B, int64_t b_rs, int64_t b_cs,   // B: [K, N]
              T beta, T* C, int64_t c_rs, int64_t c_cs) {  // C: [M, N]
  using Acc = std::conditional_t<std::is_integral_v<T>, int64_t, double>;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      // dot product of row i of A with column j of B
      Acc acc = 0;
      for (int64_t p = 0; p < K; ++p) acc += Acc(A[i * a_rs + p * a_cs]) * Acc(B[p * b_rs + j * b_cs]);
      // scale; beta == 0 means "overwrite", so C is not read
      T& c = C[i * c_rs + j * c_cs];
      c = beta == T(0) ? T(Acc(alpha) * acc) : T(Acc(alpha) * acc + Acc(beta) * Acc(c));
    }
}

// ================================================================================ configuration

/// Register tile and cache blocks for element type T (see the file comment for the reasoning).
template <class T>
struct GemmBlocking {
  using V = Vec<T>;
  static constexpr int VS = V::size;
  static constexpr bool wide = VS * sizeof(T) >= 64;      // 512-bit registers (32 of them)
  static constexpr int NV = VS == 1 ? 4 : (wide ? 4 : 2);  // vectors per micro-tile row
  static constexpr int MR = VS == 1 ? 4 : 6;
  static constexpr int NR = NV * VS;
  // AVX2 / scalar: KC 384, MC 192 (f32) / 96 (f64), measured on Zen 3 (bench/kernels/gemm.cpp);
  // AVX-512: KC 384, MC 240 (f32) / 120 (f64), measured on Ice Lake SP
  static constexpr int64_t KC = 384;
  static constexpr int64_t MC = MR * (sizeof(T) == 4 ? (wide ? 40 : 32) : (wide ? 20 : 16));
  static constexpr int64_t NC = (wide ? 4096 / int(sizeof(T)) : 4080) / NR * NR;
  static constexpr bool even_k = wide;  // split K into equal blocks of at most KC (else KC, KC, ..., rest)
  static constexpr bool few_rows_by_columns = wide;  // threads and M <= MC: pieces of columns (gemm_driver)
  static_assert(VS == 1 || MR * NV + NV + 1 <= (wide ? 32 : 16), "micro-tile must fit the vector registers");
};

namespace detail {

/// c + a * b: one FMA on vector targets; on the scalar fallback a plain multiply-add (std::fma
/// without hardware FMA is a slow library call), which the compiler may still contract.
template <class V>
inline V gemm_madd(std::type_identity_t<V> a, std::type_identity_t<V> b, std::type_identity_t<V> c) {
  if constexpr (V::size == 1) return V(c + a * b);
  else return vfmadd(a, b, c);
}

/// A per-thread, 64-byte aligned scratch buffer that only grows, so repeated calls (the same
/// shapes every training step) reuse it. Slot 0: packed A, 1: packed B (or gemv's x).
template <class T>
T* gemm_scratch(int slot, int64_t n) {
  struct Buf {
    T* p = nullptr;
    int64_t n = 0;
    ~Buf() { std::free(p); }
  };
  thread_local Buf bufs[2];
  Buf& b = bufs[slot];
  if (b.n < n) {
    std::free(b.p);
    b.p = nullptr;
    b.n = 0;
    const size_t bytes = (size_t(n) * sizeof(T) + 63) / 64 * 64;
    b.p = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!b.p) throw std::bad_alloc();
    b.n = n;
  }
  return b.p;
}

// ================================================================================ packing

/// Packs A[mc, kc] into ceil(mc/MR) panels, each kc columns of MR values (zero rows pad the last).
/// S is the stored element type (T, or a 16-bit float widened here: see gemm_bf16.hpp).
/// out: [ceil(mc/MR)][kc][MR]
template <class T, int MR, class S>
void gemm_pack_a(int64_t mc, int64_t kc, const S* A, int64_t a_rs, int64_t a_cs, T* __restrict out) {
  for (int64_t i0 = 0; i0 < mc; i0 += MR) {
    const int mr = int(std::min<int64_t>(MR, mc - i0));
    const S* a = A + i0 * a_rs;
    if (mr == MR && a_rs == 1) {  // column-major A: MR contiguous values per k
      for (int64_t p = 0; p < kc; ++p, out += MR)
        for (int i = 0; i < MR; ++i) out[i] = T(a[p * a_cs + i]);
    } else if (mr == MR && a_cs == 1) {  // row-major A: MR rows read side by side
      for (int64_t p = 0; p < kc; ++p, out += MR)
        for (int i = 0; i < MR; ++i) out[i] = T(a[i * a_rs + p]);
    } else if (mr == MR) {
      for (int64_t p = 0; p < kc; ++p, out += MR)
        for (int i = 0; i < MR; ++i) out[i] = T(a[i * a_rs + p * a_cs]);
    } else {
      for (int64_t p = 0; p < kc; ++p, out += MR)
        for (int i = 0; i < MR; ++i) out[i] = i < mr ? T(a[i * a_rs + p * a_cs]) : T(0);
    }
  }
}

/// dst[0, n) = src[0, n) converted to T. bf16 -> float on AVX-512 16 at a time (a bf16 is the top
/// half of a float: zero-extend to 32 bits, shift left by 16); the compiler's own vectorization of
/// the plain loop stops at 8 (GCC prefers 256-bit vectors for Ice Lake). cvt_bf16_to_f32 (simd.hpp)
/// does the same for rows of any length; its scalar tail, inlined here with n fixed, made GCC 12 warn
/// (-Waggressive-loop-optimizations), so whole panels keep this tail-free loop.
template <class T, int n, class S>
inline void gemm_convert(const S* __restrict src, T* __restrict dst) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float> && std::is_same_v<S, bf16> && n % 16 == 0) {
    for (int j = 0; j < n; j += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + j));
      _mm512_storeu_ps(dst + j, _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
    }
    return;
  }
#endif
  for (int j = 0; j < n; ++j) dst[j] = T(src[j]);
}

/// Packs B[kc, nc] into ceil(nc/NR) panels, each kc rows of NR values (zero columns pad the last).
/// out: [ceil(nc/NR)][kc][NR]
template <class T, int NR, class S>
void gemm_pack_b(int64_t kc, int64_t nc, const S* B, int64_t b_rs, int64_t b_cs, T* __restrict out) {
  const int64_t full = nc / NR;  // whole panels
  if (b_cs == 1) {
    // row-major B: walk each row once, left to right, dealing NR-wide pieces to the panels (a
    // panel-by-panel walk would stride down the rows and defeat the hardware prefetcher)
    for (int64_t p = 0; p < kc; ++p) {
      const S* row = B + p * b_rs;
      for (int64_t q = 0; q < full; ++q) gemm_convert<T, NR>(row + q * NR, out + (q * kc + p) * NR);
    }
  } else {
    for (int64_t q = 0; q < full; ++q) {
      const S* b = B + q * NR * b_cs;
      T* o = out + q * kc * NR;
      for (int64_t p = 0; p < kc; ++p, o += NR)
        for (int j = 0; j < NR; ++j) o[j] = T(b[p * b_rs + j * b_cs]);
    }
  }
  if (const int nr = int(nc - full * NR); nr > 0) {  // the last, partial panel
    const S* b = B + full * NR * b_cs;
    T* o = out + full * kc * NR;
    for (int64_t p = 0; p < kc; ++p, o += NR)
      for (int j = 0; j < NR; ++j) o[j] = j < nr ? T(b[p * b_rs + j * b_cs]) : T(0);
  }
}

// ================================================================================ micro-kernel

/// C[mr, nr] = alpha * (a @ b) + beta * C over one packed tile; beta == 0 does not read C.
/// a: [kc][MR] packed, b: [kc][NR] packed, C: the tile's top-left element. Cfg: the tile and
/// blocks (GemmBlocking<T>; bench/kernels/gemm.cpp passes others to compare them in one process).
template <class T, class Cfg = GemmBlocking<T>>
void gemm_micro_kernel(int64_t kc, const T* __restrict a, const T* __restrict b, T alpha, T beta,
                       T* C, int64_t c_rs, int64_t c_cs, int mr, int nr) {
  using V = Vec<T>;
  constexpr int MR = Cfg::MR, NV = Cfg::NV, NR = Cfg::NR, VS = Cfg::VS;
  // the C tile is read or written only after the loop: start fetching its lines now (rows of a
  // large power-of-two stride all miss, and the loop hides the wait)
  if (c_cs == 1)
    for (int i = 0; i < mr; ++i) {
      for (int j = 0; j < NR; j += 64 / int(sizeof(T))) __builtin_prefetch(C + i * c_rs + j, 1);
      __builtin_prefetch(C + i * c_rs + NR - 1, 1);
    }
  V acc[MR][NV];
  STRATA_UNROLL(32)
  for (int i = 0; i < MR; ++i)
    STRATA_UNROLL(8)
    for (int j = 0; j < NV; ++j) acc[i][j] = V(T(0));

  for (int64_t p = 0; p < kc; ++p) {
    V bv[NV];
    STRATA_UNROLL(8)
    for (int j = 0; j < NV; ++j) bv[j] = V::load(b + p * NR + j * VS);
    STRATA_UNROLL(32)
    for (int i = 0; i < MR; ++i) {
      const V ai(a[p * MR + i]);
      STRATA_UNROLL(8)
      for (int j = 0; j < NV; ++j) acc[i][j] = gemm_madd<V>(ai, bv[j], acc[i][j]);
    }
  }

  const V valpha(alpha);
  if (mr == MR && nr == NR && c_cs == 1) {  // full tile, contiguous rows: vector stores
    if (beta == T(0)) {
      STRATA_UNROLL(32)
      for (int i = 0; i < MR; ++i)
        STRATA_UNROLL(8)
        for (int j = 0; j < NV; ++j) (valpha * acc[i][j]).store(C + i * c_rs + j * VS);
    } else {
      const V vbeta(beta);
      STRATA_UNROLL(32)
      for (int i = 0; i < MR; ++i)
        STRATA_UNROLL(8)
        for (int j = 0; j < NV; ++j) {
          T* c = C + i * c_rs + j * VS;
          gemm_madd<V>(vbeta, V::load(c), valpha * acc[i][j]).store(c);
        }
    }
    return;
  }
  // partial tile or strided C: through a buffer, element by element
  alignas(64) T buf[MR * NR];
  STRATA_UNROLL(32)
  for (int i = 0; i < MR; ++i)
    STRATA_UNROLL(8)
    for (int j = 0; j < NV; ++j) acc[i][j].store(buf + i * NR + j * VS);
  for (int i = 0; i < mr; ++i)
    for (int j = 0; j < nr; ++j) {
      T& c = C[i * c_rs + j * c_cs];
      c = beta == T(0) ? alpha * buf[i * NR + j] : alpha * buf[i * NR + j] + beta * c;
    }
}

// ================================================================================ blocked driver

/// Waits until counter c reaches `target` (work other threads claimed and are finishing): spins
/// briefly, then yields (the machine may be shared). Never waits for a thread to arrive, only for
/// claimed work, so a thread that starts late (or not at all) holds nobody up.
inline void gemm_wait_for(const std::atomic<int64_t>& c, int64_t target) {
  for (int spins = 0; c.load(std::memory_order_acquire) < target; ++spins) {
    if (spins < 1000) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

/// The K block size: Cfg::KC, or with Cfg::even_k the K blocks made equal (K = 1024, KC 384: three
/// blocks of 342 rather than 384, 384, 256: a short last block reads and writes C as often for less work).
template <class Cfg>
int64_t gemm_k_step(int64_t K) {
  if (!Cfg::even_k || K <= Cfg::KC) return std::min<int64_t>(Cfg::KC, K);
  const int64_t blocks = (K + Cfg::KC - 1) / Cfg::KC;
  return (K + blocks - 1) / blocks;
}

/// How the threads of one gemm share the work: per (jc, pc) block, counters handing out pieces of
/// the B packing and of the product (whole row chunks of C, or whole B panel groups when split_m
/// is false), and counting what is done, so a thread slowed by another process just takes fewer.
struct GemmShare {
  int threads = 1;
  bool split_m = true;
  int64_t rows = 0;                      // rows of C per piece (split_m), a multiple of MR
  int64_t panels = 0;                    // B panels per piece (packing, and the product when !split_m)
  // 4 per (jc, pc) block, zeroed: B panels claimed, B panels packed, product claimed, product done
  // (rows of C when split_m, else B panels)
  std::atomic<int64_t>* counters = nullptr;
};

/// The five loops of the file comment, run by every thread of `sh` at once (or by one: threads == 1).
/// The threads share one packed B block [NC * KC] (pb), packed piece by piece by whoever claims the
/// piece; once all of it is packed, each claims pieces of the product, packing the A rows it needs
/// into its own pa [MC * KC], once the previous block's product is done (it accumulates onto C).
/// Blocks alternate between pb and pb2 (a second buffer; null: pb only), so block i is packed once
/// block i - 2 (i - 1 with one buffer) is done. A and B are converted to T
/// while packing. Assumes M, N, K > 0.
template <class T, class SA, class SB, class Cfg = GemmBlocking<T>>
void gemm_blocked(int64_t M, int64_t N, int64_t K, T alpha, const SA* A, int64_t a_rs, int64_t a_cs,
                  const SB* B, int64_t b_rs, int64_t b_cs, T beta, T* C, int64_t c_rs, int64_t c_cs,
                  T* pa, T* pb, const GemmShare& sh, T* pb2 = nullptr) {
  constexpr int MR = Cfg::MR, NR = Cfg::NR;
  const bool serial = sh.threads <= 1;
  T* cur = pb;  // the packed B block in use
  // rows [m_lo, m_hi) x B panels [q_lo, q_hi) of the current (jc, pc) block: C (+)= A @ B
  auto product = [&](int64_t m_lo, int64_t m_hi, int64_t q_lo, int64_t q_hi, int64_t jc, int64_t nc, int64_t pc,
                     int64_t kc) {
    const T beta_p = pc == 0 ? beta : T(1);  // later K blocks accumulate onto the first
    for (int64_t ic = m_lo; ic < m_hi; ic += Cfg::MC) {
      const int64_t mc = std::min<int64_t>(Cfg::MC, m_hi - ic);
      gemm_pack_a<T, MR>(mc, kc, A + ic * a_rs + pc * a_cs, a_rs, a_cs, pa);
      for (int64_t jr = q_lo * NR; jr < std::min(nc, q_hi * NR); jr += NR) {
        const int nr = int(std::min<int64_t>(NR, nc - jr));
        const T* b = cur + jr * kc;
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int mr = int(std::min<int64_t>(MR, mc - ir));
          gemm_micro_kernel<T, Cfg>(kc, pa + ir * kc, b, alpha, beta_p, C + (ic + ir) * c_rs + (jc + jr) * c_cs,
                                    c_rs, c_cs, mr, nr);
        }
      }
    }
  };
  // the product's extent in block b (rows of C, or panels of its B block)
  const int64_t KS = gemm_k_step<Cfg>(K), kblocks = (K + KS - 1) / KS;
  auto whole_of = [&](int64_t b) { return sh.split_m ? M : (std::min(Cfg::NC, N - b / kblocks * Cfg::NC) + NR - 1) / NR; };
  int64_t block = 0;
  for (int64_t jc = 0; jc < N; jc += Cfg::NC) {
    const int64_t nc = std::min<int64_t>(Cfg::NC, N - jc);
    const int64_t panels = (nc + NR - 1) / NR;
    for (int64_t pc = 0; pc < K; pc += KS, ++block) {
      const int64_t kc = std::min<int64_t>(KS, K - pc);
      cur = pb2 && block % 2 == 1 ? pb2 : pb;
      auto pack = [&](int64_t q_lo, int64_t q_hi) {  // B panels [q_lo, q_hi) of this block
        gemm_pack_b<T, NR>(kc, std::min(nc, q_hi * NR) - q_lo * NR, B + pc * b_rs + (jc + q_lo * NR) * b_cs, b_rs,
                           b_cs, cur + q_lo * NR * kc);
      };
      if (serial) {
        pack(0, panels);
        product(0, M, 0, panels, jc, nc, pc, kc);
        continue;
      }
      std::atomic<int64_t>* cnt = sh.counters + 4 * block;  // claimed, packed, claimed, done
      const int64_t whole = whole_of(block);
      const int64_t lag = pb2 ? 2 : 1;                     // the block that last used this buffer
      if (block >= lag && cnt[0].load(std::memory_order_relaxed) < panels)  // its product must be done
        gemm_wait_for(cnt[3 - 4 * lag], whole_of(block - lag));
      for (int64_t q = cnt[0].fetch_add(sh.panels); q < panels; q = cnt[0].fetch_add(sh.panels)) {
        const int64_t q_hi = std::min(panels, q + sh.panels);
        pack(q, q_hi);
        cnt[1].fetch_add(q_hi - q, std::memory_order_release);
      }
      gemm_wait_for(cnt[1], panels);  // the whole B block is packed
      if (block >= 1) gemm_wait_for(cnt[-1], whole_of(block - 1));  // C holds the previous K block's sums
      const int64_t step = sh.split_m ? sh.rows : sh.panels;
      for (int64_t w = cnt[2].fetch_add(step); w < whole; w = cnt[2].fetch_add(step)) {
        const int64_t w_hi = std::min(whole, w + step);
        if (sh.split_m) product(w, w_hi, 0, panels, jc, nc, pc, kc);
        else product(0, M, w, w_hi, jc, nc, pc, kc);
        cnt[3].fetch_add(w_hi - w, std::memory_order_release);
      }
    }
  }
}

/// gemm on `threads` threads (1: on the caller), A and B of element types SA, SB converted to T when
/// packed. Buffers: the caller's scratch, grown as needed and kept for the next call.
template <class T, class SA, class SB, class Cfg = GemmBlocking<T>>
void gemm_driver(int64_t M, int64_t N, int64_t K, T alpha, const SA* A, int64_t a_rs, int64_t a_cs,
                 const SB* B, int64_t b_rs, int64_t b_cs, T beta, T* C, int64_t c_rs, int64_t c_cs, int threads) {
  constexpr int MR = Cfg::MR, NR = Cfg::NR;
  const int64_t kc_max = gemm_k_step<Cfg>(K);
  const int64_t mc_max = std::min<int64_t>(Cfg::MC, (M + MR - 1) / MR * MR);
  const int64_t nc_max = std::min<int64_t>(Cfg::NC, (N + NR - 1) / NR * NR);
  const int64_t a_block = (mc_max * kc_max + 15) / 16 * 16;  // 64-byte aligned per thread
  const int64_t m_tiles = (M + MR - 1) / MR, n_panels = nc_max / NR;
  GemmShare sh{.threads = 1};
  if (threads > 1 && double(M) * double(nc_max) * double(kc_max) < double(1 << 23)) {
    // little work per B block (under ~8M multiply-adds, ~0.1 ms on a core: small M and N, e.g. a
    // weight gradient over a long K): waiting for each B block would cost more than sharing B saves
    // (and stall whenever the machine is busy), so each thread multiplies its own rows (or columns)
    const bool rows = m_tiles >= (N + NR - 1) / NR;
    const int64_t tiles = rows ? m_tiles : (N + NR - 1) / NR, R = rows ? MR : NR, ext = rows ? M : N;
    parallel_for(0, threads, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t lo = std::min(ext, tiles * t / threads * R), hi = std::min(ext, tiles * (t + 1) / threads * R);
        if (lo >= hi) continue;
        T* pa_t = gemm_scratch<T>(0, a_block);
        T* pb_t = gemm_scratch<T>(1, nc_max * kc_max);
        if (rows)
          gemm_blocked<T, SA, SB, Cfg>(hi - lo, N, K, alpha, A + lo * a_rs, a_rs, a_cs, B, b_rs, b_cs, beta,
                                       C + lo * c_rs, c_rs, c_cs, pa_t, pb_t, sh);
        else
          gemm_blocked<T, SA, SB, Cfg>(M, hi - lo, K, alpha, A, a_rs, a_cs, B + lo * b_cs, b_rs, b_cs, beta,
                                       C + lo * c_cs, c_rs, c_cs, pa_t, pb_t, sh);
      }
    });
    return;
  }
  if (threads > 1 && Cfg::few_rows_by_columns && M <= Cfg::MC) {
    // few rows (one A block; convolution shapes): each piece is a group of whole B panels that one
    // thread packs and multiplies by all of A, nothing shared, no waiting: a thread slowed by another
    // process takes fewer pieces. Pieces of at most one N block, about 4 per thread or more.
    const int64_t panels_all = (N + NR - 1) / NR;
    const int64_t step = std::clamp<int64_t>((panels_all + 4 * threads - 1) / (4 * threads), 1, Cfg::NC / NR);
    std::atomic<int64_t> next{0};
    thread_pool().run(threads, [&](int) {
      T* pa_t = gemm_scratch<T>(0, a_block);
      T* pb_t = gemm_scratch<T>(1, nc_max * kc_max);
      for (int64_t q = next.fetch_add(step); q < panels_all; q = next.fetch_add(step)) {
        const int64_t lo = q * NR, hi = std::min(N, (q + step) * NR);
        gemm_blocked<T, SA, SB, Cfg>(M, hi - lo, K, alpha, A, a_rs, a_cs, B + lo * b_cs, b_rs, b_cs, beta,
                                     C + lo * c_cs, c_rs, c_cs, pa_t, pb_t, sh);
      }
    });
    return;
  }
  // threads sharing several B blocks: two B buffers, so packing one overlaps the product of the other
  const int64_t blocks = ((N + Cfg::NC - 1) / Cfg::NC) * ((K + kc_max - 1) / kc_max);
  const bool two = threads > 1 && blocks > 1;
  T* pa = gemm_scratch<T>(0, a_block * threads);
  T* pb = gemm_scratch<T>(1, (two ? 2 : 1) * nc_max * kc_max);
  if (threads <= 1)
    return gemm_blocked<T, SA, SB, Cfg>(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, c_cs, pa, pb, sh);
  // pieces: about 4 per thread, so the last ones even out a thread that fell behind. Split the rows
  // of C unless there are too few of them (a few rows, many columns: convolution shapes).
  sh.threads = threads;
  sh.split_m = m_tiles >= 4 * int64_t(threads) || m_tiles >= n_panels;
  sh.rows = std::max<int64_t>(2, (m_tiles + 4 * threads - 1) / (4 * threads)) * MR;
  sh.panels = std::max<int64_t>(4, (n_panels + 4 * threads - 1) / (4 * threads));
  std::unique_ptr<std::atomic<int64_t>[]> counters(new std::atomic<int64_t>[size_t(4 * blocks)]);
  for (int64_t i = 0; i < 4 * blocks; ++i) counters[size_t(i)].store(0, std::memory_order_relaxed);
  sh.counters = counters.get();
  thread_pool().run(threads, [&](int t) {
    gemm_blocked<T, SA, SB, Cfg>(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, c_cs, pa + t * a_block, pb,
                                 sh, two ? pb + nc_max * kc_max : nullptr);
  });
}

}  // namespace detail

namespace detail {

// ================================================================================ gemv

/// y[M] = alpha * A[M,K] @ x[K] + beta * y, the M == 1 / N == 1 shapes of gemm, where packing a
/// whole matrix for one row or column would cost more than the product. Rows of A with unit
/// stride are dot products; columns with unit stride are axpys into a temporary; else scalar.
template <class T>
void gemv(int64_t M, int64_t K, T alpha, const T* A, int64_t a_rs, int64_t a_cs,  // A: [M, K]
          const T* x, int64_t x_inc, T beta, T* y, int64_t y_inc) {                 // x: [K], y: [M]
  using V = Vec<T>;
  constexpr int VS = V::size;
  T* xs = gemm_scratch<T>(1, K);  // x, contiguous
  for (int64_t p = 0; p < K; ++p) xs[p] = x[p * x_inc];
  auto store = [&](int64_t i, T acc) {
    T& c = y[i * y_inc];
    c = beta == T(0) ? alpha * acc : alpha * acc + beta * c;
  };
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 16) / K);  // ~64k multiply-adds a chunk
  if (a_cs == 1 || K == 1) {  // each output is a dot product of a contiguous row with xs
    parallel_for(0, M, grain, [&](int64_t lo, int64_t hi) {
      for (int64_t i = lo; i < hi; ++i) {
        const T* a = A + i * a_rs;
        V s0(T(0)), s1(T(0)), s2(T(0)), s3(T(0));
        int64_t p = 0;
        for (; p + 4 * VS <= K; p += 4 * VS) {
          s0 = gemm_madd<V>(V::load(a + p), V::load(xs + p), s0);
          s1 = gemm_madd<V>(V::load(a + p + VS), V::load(xs + p + VS), s1);
          s2 = gemm_madd<V>(V::load(a + p + 2 * VS), V::load(xs + p + 2 * VS), s2);
          s3 = gemm_madd<V>(V::load(a + p + 3 * VS), V::load(xs + p + 3 * VS), s3);
        }
        for (; p + VS <= K; p += VS) s0 = gemm_madd<V>(V::load(a + p), V::load(xs + p), s0);
        T acc = reduce_add((s0 + s1) + (s2 + s3));
        for (; p < K; ++p) acc += a[p] * xs[p];
        store(i, acc);
      }
    });
  } else if (a_rs == 1) {  // columns contiguous: acc[lo:hi] += A[lo:hi, p] * x[p] for each p
    parallel_for(0, M, std::max<int64_t>(grain, 64), [&](int64_t lo, int64_t hi) {
      constexpr int64_t TILE = 2048 / sizeof(T) * 4;  // accumulator block: 8 KiB, stays in L1
      alignas(64) T acc[TILE];
      for (int64_t i0 = lo; i0 < hi; i0 += TILE) {
        const int64_t n = std::min(TILE, hi - i0);
        std::fill(acc, acc + n, T(0));
        int64_t p = 0;
        for (; p + 4 <= K; p += 4) {  // four columns per pass over acc
          const T* a = A + i0 + p * a_cs;
          const V x0(xs[p]), x1(xs[p + 1]), x2(xs[p + 2]), x3(xs[p + 3]);
          int64_t i = 0;
          for (; i + VS <= n; i += VS) {
            V t = gemm_madd<V>(V::load(a + i), x0, V::load(acc + i));
            t = gemm_madd<V>(V::load(a + a_cs + i), x1, t);
            t = gemm_madd<V>(V::load(a + 2 * a_cs + i), x2, t);
            gemm_madd<V>(V::load(a + 3 * a_cs + i), x3, t).store(acc + i);
          }
          for (; i < n; ++i)
            acc[i] += a[i] * xs[p] + a[a_cs + i] * xs[p + 1] + a[2 * a_cs + i] * xs[p + 2] + a[3 * a_cs + i] * xs[p + 3];
        }
        for (; p < K; ++p) {
          const T* a = A + i0 + p * a_cs;
          const V xp(xs[p]);
          int64_t i = 0;
          for (; i + VS <= n; i += VS) gemm_madd<V>(V::load(a + i), xp, V::load(acc + i)).store(acc + i);
          for (; i < n; ++i) acc[i] += a[i] * xs[p];
        }
        for (int64_t i = 0; i < n; ++i) store(i0 + i, acc[i]);
      }
    });
  } else {
    for (int64_t i = 0; i < M; ++i) {
      T acc = 0;
      for (int64_t p = 0; p < K; ++p) acc += A[i * a_rs + p * a_cs] * xs[p];
      store(i, acc);
    }
  }
}

/// C = beta * C (beta == 0: zeros, C not read).
template <class T>
void gemm_scale_c(int64_t M, int64_t N, T beta, T* C, int64_t c_rs, int64_t c_cs) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      T& c = C[i * c_rs + j * c_cs];
      c = beta == T(0) ? T(0) : beta * c;
    }
}

}  // namespace detail

// ================================================================================ launcher

/// C[M,N] = alpha * A[M,K] @ B[K,N] + beta * C for T = float or double; any strides (see top).
template <class T>
void gemm(int64_t M, int64_t N, int64_t K, T alpha,
          const T* A, int64_t a_rs, int64_t a_cs,   // A: [M, K]
          const T* B, int64_t b_rs, int64_t b_cs,   // B: [K, N]
          T beta, T* C, int64_t c_rs, int64_t c_cs) {  // C: [M, N]
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "gemm: T must be float or double");
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || alpha == T(0)) return detail::gemm_scale_c(M, N, beta, C, c_rs, c_cs);
  // one row or one column: matrix-vector product
  if (N == 1) return detail::gemv(M, K, alpha, A, a_rs, a_cs, B, b_rs, beta, C, c_rs);
  if (M == 1) return detail::gemv(N, K, alpha, B, b_cs, b_rs, A, a_cs, beta, C, c_cs);
  // column-major C: compute C^T[N,M] = B^T[N,K] @ A^T[K,M], whose rows are contiguous
  if (c_cs != 1 && c_rs == 1 && M > 1)
    return gemm(N, M, K, alpha, B, b_cs, b_rs, A, a_cs, a_rs, beta, C, c_cs, c_rs);

  const int threads = strata::detail::in_parallel_region ? 1 : num_threads();
  const bool big = double(M) * double(N) * double(K) >= double(1 << 20);
  detail::gemm_driver<T>(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, c_cs, big ? threads : 1);
}

}  // namespace strata::cpu
