// gemm_bf16's AVX512-BF16 path (vdpbf16ps), run on a CPU without AVX512-BF16: compiled with
// -mavx512bf16, but every _mm512_dpbf16_ps goes to the AVX-512F emulation below, so the path's packing,
// pairing, tiling, tails and threading (everything but the instruction itself) are checked against
// gemm_bf16_ref on machines that cannot run it (the development machines so far: AVX2 Zen 3, Ice Lake
// SP). Needs AVX-512F at run time; exits 77 (CTest: skipped) without it. A plain main, not Catch, so
// that it builds in seconds; tests/CMakeLists.txt builds it where the compiler takes -mavx512bf16.
#include "emulated_dpbf16.hpp"  // first: the emulated vdpbf16ps

#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "kernels/cpu/gemm_bf16.hpp"

using namespace strata;

int check_conv_pairs();  // conv_bf16_emulated.cpp

namespace {

int failures = 0;

/// One case (as tests/test_matmul.cpp's check_gemm_bf16): bf16 A and B row-major or transposed with
/// padded leading dims, float C random or NaN (beta == 0 must not read it); C against gemm_bf16_ref.
void check(int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool tc, float alpha, float beta, std::mt19937& g) {
  std::uniform_real_distribution<float> d(-1, 1);
  const int64_t pad = 3;
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = (tc ? M : N) + pad;
  std::vector<bf16> A(size_t((ta ? K : M) * lda + 1)), B(size_t((tb ? N : K) * ldb + 1));
  std::vector<float> C(size_t((tc ? N : M) * ldc + 1));
  for (bf16& x : A) x = bf16(d(g));
  for (bf16& x : B) x = bf16(d(g));
  for (float& x : C) x = beta == 0.f ? std::numeric_limits<float>::quiet_NaN() : d(g);
  std::vector<float> R = C;
  const int64_t a_rs = ta ? 1 : lda, a_cs = ta ? lda : 1, b_rs = tb ? 1 : ldb, b_cs = tb ? ldb : 1;
  const int64_t c_rs = tc ? 1 : ldc, c_cs = tc ? ldc : 1;
  cpu::gemm_bf16(M, N, K, alpha, A.data(), a_rs, a_cs, B.data(), b_rs, b_cs, beta, C.data(), c_rs, c_cs);
  cpu::gemm_bf16_ref(M, N, K, alpha, A.data(), a_rs, a_cs, B.data(), b_rs, b_cs, beta, R.data(), c_rs, c_cs);
  // the products are exact in float; only the float sums round (<= K ulps each); the padding between
  // C's rows must stay as it was (NaN or the random start)
  for (size_t i = 0; i < C.size(); ++i) {
    const double tol = 2e-6 * double(K + 1) + 1e-5 * std::fabs(double(R[i]));
    const bool same = (std::isnan(C[i]) && std::isnan(R[i])) || std::fabs(double(C[i]) - double(R[i])) <= tol;
    if (!same && ++failures <= 10)
      std::printf("FAIL gemm_bf16 M=%ld N=%ld K=%ld ta=%d tb=%d tc=%d alpha=%g beta=%g: C[%zu] = %.9g, want %.9g\n",
                  long(M), long(N), long(K), ta, tb, tc, alpha, beta, i, C[i], R[i]);
  }
}

}  // namespace

int main() {
  if (!__builtin_cpu_supports("avx512f")) {
    std::printf("skipped: the emulation needs AVX-512F\n");
    return 77;
  }
  std::mt19937 g(11);
  int cases = 0;
  for (int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const int64_t sizes[] = {1, 2, 4, 5, 15, 16, 17, 33, 65, 129};
    for (int64_t M : sizes)
      for (int64_t N : sizes) {
        const unsigned r = g();
        const int64_t K = (r >> 8) % 4 == 0 ? 1 : ((r >> 8) % 4 == 1 ? 2 : ((r >> 8) % 4 == 2 ? 17 : 300));
        const float beta = (r >> 4) % 3 == 0 ? 0.f : ((r >> 4) % 3 == 1 ? 1.f : -0.5f);
        check(M, N, K, r & 1, r & 2, r & 4, r & 8 ? 1.f : 1.5f, beta, g), ++cases;
      }
    for (int l = 0; l < 8; ++l) check(31, 45, 29, l & 1, l & 2, l & 4, 0.75f, 0.f, g), ++cases;
    check(203, 150, 130, false, false, false, 1.f, 0.f, g), ++cases;  // big enough for the threads
    check(20, 700, 90, true, false, false, 1.f, 0.5f, g), ++cases;
  }
  std::printf("gemm_bf16 (AVX512-BF16 path, emulated vdpbf16ps): %d cases, %d wrong values\n", cases, failures);
  const int conv_failures = check_conv_pairs();
  return failures == 0 && conv_failures == 0 ? 0 : 1;
}
