// The gemm lab: C[M,N] = A[M,K] @ B[K,N], f32, square sizes, row-major operands.
//
// Ladder (GFLOP/s on the dev machine: AMD EPYC Zen 3, 2 cores, AVX2+FMA; a pure-FMA loop reaches
// ~101 GFLOP/s per core, ~200 on both, at the clock it runs; the VM is shared, so 2-thread numbers
// drop to the 1-thread ones whenever another process holds the second core: read ratios):
//   v0 ref       plain i-j-k triple loop, sums in double (cpu::gemm_ref)           ~1.4
//   v1 ikj       i-k-j loop order: the inner loop is a contiguous axpy the compiler
//                vectorizes; no blocking, so B streams from cache/memory every row    ~22-25
//   v2 packed    shipped cpu::gemm, 1 thread: BLIS-style blocking, packed panels,
//                6x16 register tile of FMAs (kernels/cpu/gemm.hpp)                    ~80-88 (256-1024)
//   v3 packed/2  shipped cpu::gemm on 2 threads (column chunks, dynamic)             ~120-165 (512, 1024)
// Every version is checked against gemm_ref before anything is timed.
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "strata/core/parallel.hpp"

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
void gemm_v2(int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  gemm<float>(M, N, K, 1.f, A, K, 1, B, N, 1, 0.f, C, N, 1);
}

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

void run(benchmark::State& state, Fn fn, int threads) {
  strata::set_num_threads(threads);
  const int64_t n = state.range(0);
  Problem p(n, n, n);
  for (auto _ : state) {
    fn(p.M, p.N, p.K, p.A.data(), p.B.data(), p.C.data());
    benchmark::DoNotOptimize(p.C.data());
    benchmark::ClobberMemory();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n) * double(n) * double(n) * double(state.iterations()),
                                                 benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  strata::set_num_threads(strata::detail::default_num_threads());
}

void BM_v0_ref(benchmark::State& s) { run(s, gemm_v0, 1); }
void BM_v1_ikj(benchmark::State& s) { run(s, gemm_ikj, 1); }
void BM_v2_packed(benchmark::State& s) { run(s, gemm_v2, 1); }
void BM_v3_packed_2threads(benchmark::State& s) { run(s, gemm_v2, 2); }

}  // namespace

BENCHMARK(BM_v0_ref)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_v1_ikj)->Arg(128)->Arg(256)->Arg(512)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_v2_packed)->Arg(128)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_v3_packed_2threads)->Arg(256)->Arg(512)->Arg(1024)->Unit(benchmark::kMillisecond)->UseRealTime();

int main(int argc, char** argv) {
  check("v0 ref", gemm_v0);
  check("v1 ikj", gemm_ikj);
  check("v2 packed", gemm_v2);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
