// The gemm lab: C[M,N] = A[M,K] @ B[K,N], f32, square sizes, row-major operands; and gemm_bf16.
//
// Ladder (GFLOP/s on the dev machine: AMD EPYC Zen 3, 2 cores, AVX2+FMA; a pure-FMA loop reaches
// ~101 GFLOP/s per core, ~200 on both, at the clock it runs; the VM is shared, so 2-thread numbers
// drop to the 1-thread ones whenever another process holds the second core: read ratios).
// "x OpenBLAS" = our GFLOP/s / cblas_sgemm's, same process, alternating, medians, 1 thread timed by
// process CPU time (bench/e2e/gemm_vs_openblas.cpp --clock cpu), n = 1024 and 2048:
//   v0 ref       plain i-j-k triple loop, sums in double (cpu::gemm_ref)           ~1.4
//   v1 ikj       i-k-j loop order: the inner loop is a contiguous axpy the compiler
//                vectorizes; no blocking, so B streams from cache/memory every row    ~22-25
//   v2 packed    BLIS-style blocking, packed panels, 6x16 register tile of FMAs,
//                KC 256 / MC 144, B packed panel by panel, threads on dynamic column
//                chunks each packing all of A again                                 0.68-0.76x OpenBLAS
//   v3a unroll4  v2 with the k loop unrolled by 4: GCC 12 spills an accumulator       ~0.70-0.77x (dropped)
//   v3 pack/pf   v2 + row-major B packed row by row (pack_b 7.4% of the time -> <1%:
//                the panel-by-panel walk strided 4 KiB per row, no prefetch) + the C
//                tile prefetched before the k loop                                    0.87-0.89x
//   v3b pf A     v3 + prefetch of the A panel 512 B ahead in the k loop               0.70x (dropped)
//   v4 blocks    v3 with KC 384 / MC 192 (B micro-panel 24 KiB of the 32 KiB L1, A block
//                288 KiB of the 512 KiB L2); of KC/MC in {256,320,384}x{96..480}, in one
//                binary alternating: 256/144 0.88, 256/240 0.86-0.97, 384/96 0.89-0.93,
//                384/144 0.93-0.96, 384/192 0.98-0.985 (shipped)   1 thread: 0.92-1.00x (n 256-2048)
//   v5 threads   shared packed B block (packed in pieces by both threads, spin barrier),
//                product in row chunks from a counter (about 4 per thread); column
//                pieces when M has few tiles (conv shape 64 x 50176 x 288: 0.41-0.45x ->
//                0.69-0.74x at 2 threads, 0.36-0.42x -> 0.75-0.81x at 1); two B buffers
//                alternating (one barrier per B block); small M, N with a long K: each
//                thread its own rows/columns, no barriers           2 threads (wall): 0.88-1.01x
//                (v2 at 2 threads: 0.65-0.75x; measured at load 11-13 on 2 cores: the
//                2-thread wall-clock ratios move by +-0.1 from run to run)
//   v6 no wait   v5 with the barriers replaced by "done" counters: a thread waits only for
//                work already claimed (B packed; the previous K block's product), never
//                for a thread to arrive, so a late worker holds nobody up. In one binary vs
//                v5 at 2 threads: n=256 0.99-1.03x vs 0.85x; n=1024 0.91-0.97x vs
//                0.94-0.98x; n=2048 0.89-0.93x vs 0.91-0.92x (noise at load 12)
//   bf16         gemm_bf16 on AVX2: operands widened to float while packing, then the
//                same driver: the f32 speed (0.86-1.02x OpenBLAS sgemm on the same values)
// AVX-512 (Intel Xeon, Ice Lake SP, 2 cores, 48 KiB L1d, 1.25 MiB L2; OpenBLAS 0.3.21 SkylakeX
// kernels; machine shared, load 5-7 on 2 cores: in-process alternation, medians of per-round
// ratios, 1 thread timed by process CPU time, 2 threads by the wall clock), 2026-11-22:
//   v6 14x32     the untuned AVX-512 branch of v6: 14 x 32 tile, KC 192, MC 336, NC 4064
//                (BM_v6_14x32 below)                            1 thread: 0.81-0.90x, 2: 0.83-0.89x
//   v7a tiles    the tile shape, KC/MC at each (n 1024/2048, 1 thread, x OpenBLAS): 14x32 KC 384
//                0.93-0.96; 12x32 KC 384 MC 480 (BLIS skx) 0.95; 8x48 0.95-1.03; 5x80 0.91-0.99;
//                4x96 0.89-1.02; 6x64 KC 384 MC 240 1.01-1.10 (shipped). 6x64: 24 accumulators,
//                4 B vectors, 1 broadcast (29 zmm); per k 4 loads + 6 broadcasts feed 24 FMAs
//                (14x32: 16 for 28). KC 320-448, MC 120-360 within noise (+-3%).
//   v7b NC       NC 1024 (f32; was 4064): the packed B block (KC x NC, 1.5 MiB) stays near L2.
//                Conv shape 64 x 50176 x 288, 1 thread: 0.78x -> 1.15x OpenBLAS (NC 512-1024
//                best, 256 and 2048 a little slower); square 1024/2048 unchanged (+-2%)
//   v7c K split  K cut into equal blocks (K 400: 200 + 200, not 384 + 16): K 400 +5%
//   v7d columns  2+ threads and M <= MC: pieces of whole B panels, each thread packing its
//                own B and all of A, no shared block and no waiting. 2 threads, conv shapes
//                64 x 50176 x 288 +12%, 128 x 16384 x 576 +59% (0.90 -> 1.34x OpenBLAS)
//   v7e bf16     gemm_bf16 packing B widened 16 at a time (GCC vectorized the loop 8 wide):
//                n 1024, 1 thread: 1.03x -> 1.15x our f32 (half the bytes to read)
// Every version is checked against gemm_ref before anything is timed.
// With -DSTRATA_BENCH_OPENBLAS=1 (bench/CMakeLists.txt links OpenBLAS) cblas_sgemm runs alongside.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_bf16.hpp"
#include "strata/core/parallel.hpp"

#if defined(STRATA_BENCH_OPENBLAS) && STRATA_BENCH_OPENBLAS
#include <cblas.h>
extern "C" void openblas_set_num_threads(int);
#endif

namespace {

using strata::cpu::gemm;
using strata::cpu::gemm_ref;

// v1: loop order i-k-j (row of C += a[i,k] * row of B), auto-vectorized, no blocking
void gemm_ikj(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  for (int64_t i = 0; i < M * N; ++i) C[i] = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t k = 0; k < K; ++k) {
      const float a = A[i * K + k];
      for (int64_t j = 0; j < N; ++j) C[i * N + j] += a * B[k * N + j];
    }
}

void gemm_v0(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  gemm_ref<float>(M, N, K, 1.f, A, K, 1, B, N, 1, 0.f, C, N, 1);
}
void gemm_shipped(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  gemm<float>(M, N, K, 1.f, A, K, 1, B, N, 1, 0.f, C, N, 1);
}
#if defined(__AVX512F__)
// v6's AVX-512 blocking (14 x 32 tile, KC 192, MC 336, NC 4064) run by today's driver
struct Blocking14x32 {
  using V = strata::cpu::Vec<float>;
  static constexpr int VS = 16, NV = 2, MR = 14, NR = 32;
  static constexpr int64_t KC = 192, MC = 14 * 24, NC = 4080 / NR * NR;
  static constexpr bool even_k = false, few_rows_by_columns = false;
};
void gemm_v6_14x32(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  const int threads = strata::num_threads();
  const bool big = double(M) * double(N) * double(K) >= double(1 << 20);
  strata::cpu::detail::gemm_driver<float, float, float, Blocking14x32>(M, N, K, 1.f, A, K, 1, B, N, 1, 0.f, C, N, 1,
                                                                      big ? threads : 1);
}
#endif
// gemm_bf16 on bf16 copies of A and B made once per thread and size (the conversion is not timed)
void gemm_bf16_shipped(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  thread_local std::vector<strata::bf16> a16, b16;
  thread_local const float* seen = nullptr;
  if (seen != A || a16.size() != size_t(M * K)) {
    a16.assign(A, A + M * K);
    b16.assign(B, B + K * N);
    seen = A;
  }
  strata::cpu::gemm_bf16(M, N, K, 1.f, a16.data(), K, 1, b16.data(), N, 1, 0.f, C, N, 1);
}
#if defined(STRATA_BENCH_OPENBLAS) && STRATA_BENCH_OPENBLAS
void gemm_openblas(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(N), int(K), 1.f, A, int(K), B, int(N), 0.f, C,
              int(N));
}
#endif

struct Problem {
  int64_t M, N, K;
  std::vector<float> A, B, C;
  Problem(int64_t m, int64_t n, int64_t k) : M(m), N(n), K(k), A(size_t(m * k)), B(size_t(k * n)), C(size_t(m * n)) {
    std::mt19937 g(1);
    std::uniform_real_distribution<float> d(-1, 1);
    for (float& x : A) x = d(g);
    for (float& x : B) x = d(g);
  }
};

using Fn = void (*)(int64_t, int64_t, int64_t, const float*, const float*, float*);

/// Max |version - gemm_ref| on an odd-sized problem; aborts the run when a version is wrong.
void check(const char* name, Fn fn) {
  Problem p(131, 67, 259);
  std::vector<float> want(p.C.size());
  gemm_ref<float>(p.M, p.N, p.K, 1.f, p.A.data(), p.K, 1, p.B.data(), p.N, 1, 0.f, want.data(), p.N, 1);
  fn(p.M, p.N, p.K, p.A.data(), p.B.data(), p.C.data());
  double err = 0;
  for (size_t i = 0; i < want.size(); ++i) err = std::max(err, double(std::abs(p.C[i] - want[i])));
  std::printf("check %-8s max |err| = %.2e\n", name, err);
  if (!(err < 1e-3)) std::abort();
}

/// gemm_bf16 against gemm_bf16_ref (the float-input reference would differ by the bf16 rounding).
void check_bf16() {
  Problem p(131, 67, 259);
  const std::vector<strata::bf16> a(p.A.begin(), p.A.end()), b(p.B.begin(), p.B.end());
  std::vector<float> want(p.C.size());
  strata::cpu::gemm_bf16_ref(p.M, p.N, p.K, 1.f, a.data(), p.K, 1, b.data(), p.N, 1, 0.f, want.data(), p.N, 1);
  strata::cpu::gemm_bf16(p.M, p.N, p.K, 1.f, a.data(), p.K, 1, b.data(), p.N, 1, 0.f, p.C.data(), p.N, 1);
  double err = 0;
  for (size_t i = 0; i < want.size(); ++i) err = std::max(err, double(std::abs(p.C[i] - want[i])));
  std::printf("check %-8s max |err| = %.2e\n", "bf16", err);
  if (!(err < 1e-3)) std::abort();
}

/// Times fn on n x n x n (Arg n), or with mnk on M x N x K (Args({M, N, K})).
void run(benchmark::State& state, Fn fn, int threads, bool mnk = false) {
  strata::set_num_threads(threads);
#if defined(STRATA_BENCH_OPENBLAS) && STRATA_BENCH_OPENBLAS
  openblas_set_num_threads(threads);
#endif
  const int64_t n = state.range(0);
  Problem p(n, mnk ? state.range(1) : n, mnk ? state.range(2) : n);
  for (auto _ : state) {
    fn(p.M, p.N, p.K, p.A.data(), p.B.data(), p.C.data());
    benchmark::DoNotOptimize(p.C.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(p.M) * double(p.N) * double(p.K) * double(state.iterations()),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  strata::set_num_threads(strata::detail::default_num_threads());
}

void BM_v0_ref(benchmark::State& s) { run(s, gemm_v0, 1); }
void BM_v1_ikj(benchmark::State& s) { run(s, gemm_ikj, 1); }
void BM_shipped(benchmark::State& s) { run(s, gemm_shipped, 1); }
void BM_shipped_2threads(benchmark::State& s) { run(s, gemm_shipped, 2); }
void BM_conv_shipped(benchmark::State& s) { run(s, gemm_shipped, 1, true); }
void BM_conv_shipped_2threads(benchmark::State& s) { run(s, gemm_shipped, 2, true); }
#if defined(__AVX512F__)
void BM_v6_14x32(benchmark::State& s) { run(s, gemm_v6_14x32, 1); }
void BM_v6_14x32_2threads(benchmark::State& s) { run(s, gemm_v6_14x32, 2); }
void BM_conv_v6_14x32(benchmark::State& s) { run(s, gemm_v6_14x32, 1, true); }
void BM_conv_v6_14x32_2threads(benchmark::State& s) { run(s, gemm_v6_14x32, 2, true); }
#endif
void BM_bf16(benchmark::State& s) { run(s, gemm_bf16_shipped, 1); }
void BM_bf16_2threads(benchmark::State& s) { run(s, gemm_bf16_shipped, 2); }
#if defined(STRATA_BENCH_OPENBLAS) && STRATA_BENCH_OPENBLAS
void BM_openblas(benchmark::State& s) { run(s, gemm_openblas, 1); }
void BM_openblas_2threads(benchmark::State& s) { run(s, gemm_openblas, 2); }
void BM_conv_openblas(benchmark::State& s) { run(s, gemm_openblas, 1, true); }
void BM_conv_openblas_2threads(benchmark::State& s) { run(s, gemm_openblas, 2, true); }
#endif

}  // namespace

BENCHMARK(BM_v0_ref)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_v1_ikj)->Arg(128)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shipped)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shipped_2threads)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
// conv shapes (im2col forward: Cout x N*OH*OW x Cin*9): few rows, many columns
BENCHMARK(BM_conv_shipped)->Args({64, 50176, 288})->Args({128, 16384, 576})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_conv_shipped_2threads)->Args({64, 50176, 288})->Args({128, 16384, 576})->Unit(benchmark::kMillisecond)->UseRealTime();
#if defined(__AVX512F__)
BENCHMARK(BM_v6_14x32)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_v6_14x32_2threads)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_conv_v6_14x32)->Args({64, 50176, 288})->Args({128, 16384, 576})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_conv_v6_14x32_2threads)->Args({64, 50176, 288})->Args({128, 16384, 576})->Unit(benchmark::kMillisecond)->UseRealTime();
#endif
BENCHMARK(BM_bf16)->Arg(256)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_bf16_2threads)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();
#if defined(STRATA_BENCH_OPENBLAS) && STRATA_BENCH_OPENBLAS
BENCHMARK(BM_openblas)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_openblas_2threads)->Arg(256)->Arg(512)->Arg(1024)->Arg(2048)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_conv_openblas)->Args({64, 50176, 288})->Args({128, 16384, 576})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_conv_openblas_2threads)->Args({64, 50176, 288})->Args({128, 16384, 576})->Unit(benchmark::kMillisecond)->UseRealTime();
#endif

int main(int argc, char** argv) {
  check("v0 ref", gemm_v0);
  check("v1 ikj", gemm_ikj);
  check("shipped", gemm_shipped);
#if defined(__AVX512F__)
  check("v6 14x32", gemm_v6_14x32);
#endif
  check_bf16();
#if defined(STRATA_BENCH_OPENBLAS) && STRATA_BENCH_OPENBLAS
  check("openblas", gemm_openblas);
#endif
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
