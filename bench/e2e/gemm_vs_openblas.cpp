// strata's cpu::gemm<float> against OpenBLAS cblas_sgemm, measured side by side in one process.
//
// For each n (square, row-major, no transposes, alpha 1, beta 0) and each thread count, both run on
// the same random matrices: warm-up, then ours and OpenBLAS's alternately (the order flips every
// round), each sample long enough to time (a call repeated to >= ~30 ms), medians of the samples.
// One line per case:
//   gemm n=1024 threads=1 strata_gflops=123.4 openblas_gflops=130.2 ratio=0.948
//   gemm_bf16 n=1024 threads=1 strata_gflops=... openblas_gflops=... ratio=...
// gemm_bf16 is our cpu::gemm_bf16 (bf16 operands, float output); its peer is cblas_sbgemm when the
// OpenBLAS build has it (looked up at run time), else cblas_sgemm on the same values in float (the
// line then says peer=sgemm): Debian's 0.3.21 ships without sbgemm.
// Before timing, each case checks ours against OpenBLAS (max |diff| relative to max |C|).
//
// OpenBLAS's idle worker threads spin for a while after each call, which would steal the second core
// from our next 2-thread sample; the program re-executes itself once with OPENBLAS_THREAD_TIMEOUT=4
// (the shortest spin OpenBLAS allows) unless the variable is already set.
//
// Build (one line): g++ -std=c++20 -O2 -march=native -DNDEBUG -Iinclude -I.
//          -I/usr/include/x86_64-linux-gnu/openblas-pthread bench/e2e/gemm_vs_openblas.cpp -o gemm_vs_openblas
//          -lopenblas -pthread
// Run:   ./gemm_vs_openblas [--n 256,512,1024,2048] [--threads 1,2] [--reps 7] [--no-bf16] [--clock wall|cpu]
// --clock cpu times with the process's CPU time instead of the wall clock: on a shared, loaded
// machine it leaves out the time other processes held our core (fair for threads=1; with 2 threads
// it also counts time spent waiting at a barrier, so prefer the wall clock there).
#include <cblas.h>
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_bf16.hpp"
#include "strata/core/half.hpp"
#include "strata/core/parallel.hpp"

extern "C" void openblas_set_num_threads(int);
extern "C" char* openblas_get_config(void);

namespace {

bool g_cpu_clock = false;  // --clock cpu

double now() {
  timespec ts;
  clock_gettime(g_cpu_clock ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') ++p;
    if (*p == ',') ++p;
  }
  return v;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

/// Seconds per call of fn, over one sample of `inner` calls.
template <class F>
double time_once(F&& fn, int inner) {
  const double t0 = now();
  for (int i = 0; i < inner; ++i) fn();
  return (now() - t0) / inner;
}

/// Medians of seconds per call for a and b, alternating (order flipped each round) after a warm-up.
template <class FA, class FB>
std::pair<double, double> race(FA&& a, FB&& b, int reps) {
  a();
  b();
  const double est = std::max(time_once(a, 1), 1e-6);
  const int inner = std::max(1, int(0.03 / est));  // ~30 ms a sample
  std::vector<double> ta, tb;
  for (int r = 0; r < reps; ++r) {
    if (r % 2 == 0) {
      ta.push_back(time_once(a, inner));
      tb.push_back(time_once(b, inner));
    } else {
      tb.push_back(time_once(b, inner));
      ta.push_back(time_once(a, inner));
    }
  }
  return {median(ta), median(tb)};
}

/// max |x - y| / max |y|: the check that both computed the same product.
double rel_diff(const std::vector<float>& x, const std::vector<float>& y) {
  double d = 0, m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    d = std::max(d, double(std::abs(x[i] - y[i])));
    m = std::max(m, double(std::abs(y[i])));
  }
  return d / std::max(m, 1e-30);
}

using SbgemmFn = void (*)(CBLAS_ORDER, CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, blasint, blasint, blasint, float,
                          const uint16_t*, blasint, const uint16_t*, blasint, float, float*, blasint);

}  // namespace

int main(int argc, char** argv) {
  if (!std::getenv("OPENBLAS_THREAD_TIMEOUT")) {  // see the top: re-run with short OpenBLAS spins
    setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1);
    execv("/proc/self/exe", argv);
    std::perror("execv /proc/self/exe (continuing with OpenBLAS's default spin)");
  }
  std::vector<int> sizes = {256, 512, 1024, 2048}, thread_counts = {1, 2};
  int reps = 7;
  bool bf16_cases = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--n" && i + 1 < argc) sizes = parse_list(argv[++i]);
    else if (a == "--threads" && i + 1 < argc) thread_counts = parse_list(argv[++i]);
    else if (a == "--reps" && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (a == "--no-bf16") bf16_cases = false;
    else if (a == "--clock" && i + 1 < argc) g_cpu_clock = std::string(argv[++i]) == "cpu";
    else {
      std::fprintf(stderr, "usage: %s [--n 256,512,1024,2048] [--threads 1,2] [--reps 7] [--no-bf16] [--clock wall|cpu]\n", argv[0]);
      return 2;
    }
  }
  const auto sbgemm = reinterpret_cast<SbgemmFn>(dlsym(RTLD_DEFAULT, "cblas_sbgemm"));
  std::printf("# openblas: %s; cblas_sbgemm %s; strata simd: %s; clock: %s\n", openblas_get_config(),
              sbgemm ? "found" : "absent (gemm_bf16 is compared with sgemm)", STRATA_SIMD_NAME,
              g_cpu_clock ? "process cpu time" : "wall");

  for (int n : sizes)
    for (int t : thread_counts) {
      strata::set_num_threads(t);
      openblas_set_num_threads(t);
      std::mt19937 g{uint32_t(n)};
      std::uniform_real_distribution<float> d(-1, 1);
      const size_t nn = size_t(n) * size_t(n);
      std::vector<float> A(nn), B(nn), C1(nn), C2(nn);
      for (float& x : A) x = d(g);
      for (float& x : B) x = d(g);
      const double flops = 2.0 * double(n) * double(n) * double(n);

      auto ours = [&] { strata::cpu::gemm<float>(n, n, n, 1.f, A.data(), n, 1, B.data(), n, 1, 0.f, C1.data(), n, 1); };
      auto theirs = [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, A.data(), n, B.data(), n, 0.f, C2.data(), n);
      };
      ours();
      theirs();
      const double err = rel_diff(C1, C2);
      if (!(err < 1e-4)) {
        std::fprintf(stderr, "gemm n=%d threads=%d: strata and OpenBLAS differ (rel %.2e)\n", n, t, err);
        return 1;
      }
      const auto [s_ours, s_theirs] = race(ours, theirs, reps);
      std::printf("gemm n=%d threads=%d strata_gflops=%.1f openblas_gflops=%.1f ratio=%.3f\n", n, t,
                  flops / s_ours * 1e-9, flops / s_theirs * 1e-9, s_theirs / s_ours);
      std::fflush(stdout);

      if (!bf16_cases) continue;
      std::vector<strata::bf16> Ah(nn), Bh(nn);
      for (size_t i = 0; i < nn; ++i) {
        Ah[i] = strata::bf16(A[i]);
        Bh[i] = strata::bf16(B[i]);
        A[i] = float(Ah[i]);  // the same values in float, for the sgemm peer
        B[i] = float(Bh[i]);
      }
      auto ours_bf16 = [&] {
        strata::cpu::gemm_bf16(n, n, n, 1.f, Ah.data(), n, 1, Bh.data(), n, 1, 0.f, C1.data(), n, 1);
      };
      auto theirs_bf16 = [&] {
        if (sbgemm)
          sbgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.f, reinterpret_cast<const uint16_t*>(Ah.data()),
                 n, reinterpret_cast<const uint16_t*>(Bh.data()), n, 0.f, C2.data(), n);
        else
          theirs();
      };
      ours_bf16();
      theirs_bf16();
      const double err16 = rel_diff(C1, C2);
      if (!(err16 < 1e-4)) {
        std::fprintf(stderr, "gemm_bf16 n=%d threads=%d: strata and OpenBLAS differ (rel %.2e)\n", n, t, err16);
        return 1;
      }
      const auto [h_ours, h_theirs] = race(ours_bf16, theirs_bf16, reps);
      std::printf("gemm_bf16 n=%d threads=%d strata_gflops=%.1f openblas_gflops=%.1f ratio=%.3f%s\n", n, t,
                  flops / h_ours * 1e-9, flops / h_theirs * 1e-9, h_theirs / h_ours, sbgemm ? "" : " peer=sgemm");
      std::fflush(stdout);
    }
  return 0;
}
