// Tests for kernels/cpu/gemm.hpp (gemm vs gemm_ref), kernels/cpu/gemm_bf16.hpp (gemm_bf16 vs
// gemm_bf16_ref) and tensor/matmul.hpp (matmul, mm, bmm, dot, linear; under Autocast too).
#include <catch2/catch.hpp>

#include <limits>
#include <random>

#include "helpers.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_bf16.hpp"

namespace test_matmul {  // keeps file-local names apart in the unity build (tests/CMakeLists.txt)

using namespace strata;

namespace {

// ---------------------------------------------------------------- gemm vs gemm_ref

/// One gemm case: A, B, C in row-major or transposed layout with padded leading dims; C starts as
/// random values, or NaN when beta == 0 (which must not leak).
template <class T>
void check_gemm(int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool tc, T alpha, T beta, std::mt19937& g) {
  std::uniform_real_distribution<double> d(-1, 1);
  const int64_t pad = 3;  // leading dims larger than the matrix: strided operands
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = (tc ? M : N) + pad;
  std::vector<T> A(size_t((ta ? K : M) * lda + 1)), B(size_t((tb ? N : K) * ldb + 1)),
      C(size_t((tc ? N : M) * ldc + 1));
  for (T& x : A) x = T(d(g));
  for (T& x : B) x = T(d(g));
  for (T& x : C) x = beta == T(0) ? std::numeric_limits<T>::quiet_NaN() : T(d(g));
  std::vector<T> R = C;
  const int64_t a_rs = ta ? 1 : lda, a_cs = ta ? lda : 1, b_rs = tb ? 1 : ldb, b_cs = tb ? ldb : 1;
  const int64_t c_rs = tc ? 1 : ldc, c_cs = tc ? ldc : 1;
  cpu::gemm<T>(M, N, K, alpha, A.data(), a_rs, a_cs, B.data(), b_rs, b_cs, beta, C.data(), c_rs, c_cs);
  cpu::gemm_ref<T>(M, N, K, alpha, A.data(), a_rs, a_cs, B.data(), b_rs, b_cs, beta, R.data(), c_rs, c_cs);
  std::vector<double> got, want;
  for (size_t i = 0; i < C.size(); ++i) {  // padding included: it must be untouched (NaN == NaN here)
    got.push_back(double(C[i]));
    want.push_back(double(R[i]));
  }
  const double eps = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  std::ostringstream what;
  what << "gemm M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " tc=" << tc
       << " alpha=" << alpha << " beta=" << beta;
  th::check_close(got, want, 2 * eps * double(K + 1), 10 * eps, what.str());
}

template <class T>
void gemm_sweep(std::mt19937& g) {
  const int64_t sizes[] = {1, 2, 7, 17, 63, 65, 129};
  for (int64_t M : sizes)
    for (int64_t N : sizes) {
      const unsigned r = g();
      const int64_t K = (r >> 8) % 3 == 0 ? 1 : ((r >> 8) % 3 == 1 ? 17 : 401);  // 401 > KC: two K blocks
      const T beta = (r >> 4) % 3 == 0 ? T(0) : ((r >> 4) % 3 == 1 ? T(1) : T(-0.5));
      check_gemm<T>(M, N, K, r & 1, r & 2, r & 4, T(r & 8 ? 1 : 1.5), beta, g);
    }
}

}  // namespace

TEST_CASE("gemm matches gemm_ref on edge sizes, layouts, alpha and beta", "[matmul][gemm]") {
  std::mt19937 g(42);
  gemm_sweep<float>(g);
  gemm_sweep<double>(g);
  // every layout of one size that is no multiple of the tile
  for (int l = 0; l < 8; ++l) check_gemm<float>(31, 45, 29, l & 1, l & 2, l & 4, 0.75f, 0.f, g);
  // larger than MC (rows) and NC (columns), and big enough to use the threads
  check_gemm<float>(300, 70, 40, false, false, false, 1.f, 0.f, g);
  check_gemm<float>(5, 4100, 9, false, true, false, 1.f, 2.f, g);
  check_gemm<float>(130, 150, 120, true, false, false, 1.f, 0.5f, g);
  check_gemm<double>(150, 130, 120, false, true, true, -1.0, 0.0, g);
  check_gemm<float>(203, 61, 100, true, true, false, 1.f, 0.f, g);  // threads split M (several chunks)
  // matrix-vector shapes (M == 1 or N == 1), every layout
  for (int l = 0; l < 8; ++l) {
    check_gemm<float>(1, 300, 77, l & 1, l & 2, l & 4, 1.f, l & 1 ? 0.f : 1.f, g);
    check_gemm<float>(300, 1, 77, l & 1, l & 2, l & 4, 1.f, l & 2 ? 0.f : 1.f, g);
    check_gemm<double>(1, 1, 77, l & 1, l & 2, l & 4, 2.0, 0.0, g);
  }
}

TEST_CASE("gemm on 2 and 3 threads gives the 1-thread result exactly, whichever way the work is shared", "[matmul][gemm]") {
  std::mt19937 g(5);
  std::uniform_real_distribution<float> d(-1, 1);
  struct Case { int64_t M, N, K; const char* how; };
  const Case cases[] = {{300, 300, 400, "rows of C from a shared B, two K blocks"},
                        {20, 4100, 300, "B panel groups (few rows), two NC blocks"},
                        {64, 1500, 400, "B panel groups each thread packs alone (AVX-512: M <= MC)"},
                        {203, 61, 100, "independent rows (little work per B block)"},
                        {8, 600, 300, "independent columns"},
                        {200, 200, 900, "three K blocks"}};
  for (const Case& c : cases) {
    std::vector<float> A(size_t(c.M * c.K)), B(size_t(c.K * c.N));
    for (float& x : A) x = d(g);
    for (float& x : B) x = d(g);
    std::vector<float> C[3], R(size_t(c.M * c.N));
    for (int t = 1; t <= 3; ++t) {
      set_num_threads(t);
      C[t - 1].assign(size_t(c.M * c.N), std::numeric_limits<float>::quiet_NaN());
      cpu::gemm<float>(c.M, c.N, c.K, 1.f, A.data(), c.K, 1, B.data(), c.N, 1, 0.f, C[t - 1].data(), c.N, 1);
    }
    set_num_threads(strata::detail::default_num_threads());
    INFO(c.M << " x " << c.N << " x " << c.K << ": " << c.how);
    CHECK(C[1] == C[0]);
    CHECK(C[2] == C[0]);
    cpu::gemm_ref<float>(c.M, c.N, c.K, 1.f, A.data(), c.K, 1, B.data(), c.N, 1, 0.f, R.data(), c.N, 1);
    th::check_close(std::vector<double>(C[0].begin(), C[0].end()), std::vector<double>(R.begin(), R.end()),
                    2e-6 * double(c.K), 1e-5, c.how);
  }
}

TEST_CASE("gemm with zero sizes and alpha == 0", "[matmul][gemm]") {
  std::mt19937 g(7);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // K == 0: C = beta * C; with beta == 0 the NaNs are overwritten by zeros
  std::vector<float> C(6, nan);
  cpu::gemm<float>(2, 3, 0, 1.f, nullptr, 0, 1, nullptr, 3, 1, 0.f, C.data(), 3, 1);
  th::check_close(std::vector<double>(C.begin(), C.end()), std::vector<double>(6, 0.0), 0, 0, "K=0 beta=0");
  std::vector<float> C2 = {1, 2, 3, 4, 5, 6};
  cpu::gemm<float>(2, 3, 0, 1.f, nullptr, 0, 1, nullptr, 3, 1, 2.f, C2.data(), 3, 1);
  th::check_close(std::vector<double>(C2.begin(), C2.end()), {2, 4, 6, 8, 10, 12}, 0, 0, "K=0 beta=2");
  // M == 0 / N == 0: nothing is touched
  std::vector<float> C3(4, nan);
  cpu::gemm<float>(0, 4, 5, 1.f, nullptr, 5, 1, nullptr, 4, 1, 0.f, C3.data(), 4, 1);
  cpu::gemm<float>(4, 0, 5, 1.f, nullptr, 5, 1, nullptr, 4, 1, 0.f, C3.data(), 1, 1);
  for (float c : C3) CHECK(std::isnan(c));
  // alpha == 0 with NaN in A: PyTorch/BLAS semantics, C = beta * C without reading A, B
  std::vector<float> A(6, nan), B(6, nan), C4 = {1, 2, 3, 4};
  cpu::gemm<float>(2, 2, 3, 0.f, A.data(), 3, 1, B.data(), 2, 1, 1.f, C4.data(), 2, 1);
  th::check_close(std::vector<double>(C4.begin(), C4.end()), {1, 2, 3, 4}, 0, 0, "alpha=0");
  check_gemm<double>(4, 5, 1, false, false, false, 1.0, 0.0, g);
}

// ---------------------------------------------------------------- gemm_bf16 vs gemm_bf16_ref

namespace {

/// One gemm_bf16 case, laid out like check_gemm: bf16 A and B (row-major or transposed, padded
/// leading dims), float C starting as random values or NaN (beta == 0 must not read it).
void check_gemm_bf16(int64_t M, int64_t N, int64_t K, bool ta, bool tb, bool tc, float alpha, float beta,
                     std::mt19937& g) {
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
  std::ostringstream what;
  what << "gemm_bf16 M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " tc=" << tc
       << " alpha=" << alpha << " beta=" << beta;
  // the products of bf16 values are exact in float; only the float sums round (<= K ulps each)
  th::check_close(std::vector<double>(C.begin(), C.end()), std::vector<double>(R.begin(), R.end()),
                  2e-6 * double(K + 1), 1e-5, what.str());
}

}  // namespace

TEST_CASE("gemm_bf16 matches gemm_bf16_ref on edge sizes, layouts, alpha and beta", "[matmul][gemm]") {
  std::mt19937 g(11);
  const int64_t sizes[] = {1, 2, 7, 17, 65, 129};
  for (int64_t M : sizes)
    for (int64_t N : sizes) {
      const unsigned r = g();
      const int64_t K = (r >> 8) % 3 == 0 ? 1 : ((r >> 8) % 3 == 1 ? 17 : 300);  // odd K, and K > KC
      const float beta = (r >> 4) % 3 == 0 ? 0.f : ((r >> 4) % 3 == 1 ? 1.f : -0.5f);
      check_gemm_bf16(M, N, K, r & 1, r & 2, r & 4, r & 8 ? 1.f : 1.5f, beta, g);
    }
  for (int l = 0; l < 8; ++l) check_gemm_bf16(31, 45, 29, l & 1, l & 2, l & 4, 0.75f, 0.f, g);
  check_gemm_bf16(203, 150, 130, false, false, false, 1.f, 0.f, g);  // big enough for the threads
  check_gemm_bf16(20, 700, 90, true, false, false, 1.f, 0.5f, g);    // few rows: threads split columns
  // K == 0 and alpha == 0: C = beta * C, A and B not read
  std::vector<float> C = {1, 2, 3, 4};
  cpu::gemm_bf16(2, 2, 0, 1.f, nullptr, 0, 1, nullptr, 2, 1, 2.f, C.data(), 2, 1);
  th::check_close(std::vector<double>(C.begin(), C.end()), {2, 4, 6, 8}, 0, 0, "gemm_bf16 K=0");
  std::vector<bf16> nan_ab(6, bf16(std::numeric_limits<float>::quiet_NaN()));
  cpu::gemm_bf16(2, 2, 3, 0.f, nan_ab.data(), 3, 1, nan_ab.data(), 2, 1, 1.f, C.data(), 2, 1);
  th::check_close(std::vector<double>(C.begin(), C.end()), {2, 4, 6, 8}, 0, 0, "gemm_bf16 alpha=0");
}

// ---------------------------------------------------------------- matmul vs a reference loop

namespace {

/// PyTorch's matmul by definition, in double, with th::at; also returns the result shape.
std::vector<double> ref_matmul(const Tensor& a, const Tensor& b, Shape& out_shape) {
  Shape sa = a.shape(), sb = b.shape();
  if (a.dim() == 1) sa.insert(sa.begin(), 1);
  if (b.dim() == 1) sb.push_back(1);
  const Shape batch = broadcast_shapes(Shape(sa.begin(), sa.end() - 2), Shape(sb.begin(), sb.end() - 2));
  const int64_t M = sa[sa.size() - 2], K = sa.back(), N = sb.back();
  Shape full = batch;
  full.insert(full.end(), {M, N});
  std::vector<double> out;
  for (int64_t n = 0; n < numel(full); ++n) {
    const auto idx = th::unravel(n, full);
    // index into an operand of (promoted) shape s: batch dims aligned right, size-1 dims pinned to 0
    auto operand_index = [&](const Shape& s, int64_t r, int64_t c, bool drop_first, bool drop_last) {
      std::vector<int64_t> i;
      const size_t lead = batch.size() - (s.size() - 2);
      for (size_t d = 0; d + 2 < s.size(); ++d) i.push_back(s[d] == 1 ? 0 : idx[lead + d]);
      i.push_back(r);
      i.push_back(c);
      if (drop_first) i.erase(i.end() - 2);
      if (drop_last) i.pop_back();
      return i;
    };
    double acc = 0;
    for (int64_t k = 0; k < K; ++k)
      acc += th::at(a, operand_index(sa, idx[batch.size()], k, a.dim() == 1, false)) *
             th::at(b, operand_index(sb, k, idx[batch.size() + 1], false, b.dim() == 1));
    out.push_back(acc);
  }
  out_shape = batch;
  if (a.dim() != 1) out_shape.push_back(M);
  if (b.dim() != 1) out_shape.push_back(N);
  return out;
}

void check_matmul(const Tensor& a, const Tensor& b, double tol) {
  Shape want_shape;
  const auto want = ref_matmul(a, b, want_shape);
  const Tensor out = matmul(a, b);
  INFO("matmul " << a.shape() << " (" << a.dtype() << ") @ " << b.shape() << " (" << b.dtype() << ")");
  CHECK(out.dtype() == promote_types(a.dtype(), b.dtype()));
  REQUIRE(out.shape() == want_shape);
  th::check_close(th::values(out), want, tol, tol, "matmul values");
}

const std::vector<std::pair<Shape, Shape>> kShapes = {
    {{5}, {5}},                // dot
    {{3, 4}, {4, 5}},          // matrices
    {{1, 1}, {1, 1}},
    {{4}, {4, 3}},             // 1-D promoted on the left
    {{3, 4}, {4}},             // 1-D promoted on the right
    {{4}, {2, 4, 3}},
    {{2, 3, 4}, {4}},
    {{2, 3, 4}, {2, 4, 5}},    // batched
    {{2, 1, 3, 4}, {3, 4, 5}}, // broadcast batch dims
    {{3, 4}, {2, 4, 5}},       // matrix @ batch
    {{2, 3, 4}, {4, 5}},       // batch @ matrix (folded into one gemm)
    {{1, 3, 4}, {2, 4, 5}},
    {{2, 7, 17}, {17, 9}},     // not multiples of the tile
    {{0, 3}, {3, 4}},          // empty
    {{3, 0}, {0, 4}},          // K == 0: zeros
    {{2, 0, 3, 4}, {4, 5}},
    {{2, 3, 0}, {2, 0, 5}},
    {{0}, {0}},
};

}  // namespace

TEST_CASE("matmul values vs reference: 1-D, 2-D, batched, broadcast, empty", "[matmul]") {
  for (DType dt : {DType::f32, DType::f64, DType::bf16})
    for (const auto& [sa, sb] : kShapes) {
      check_matmul(th::random(sa, dt), th::random(sb, dt), th::tol(dt) * 10);
      check_matmul(th::random(sa, dt, true), th::random(sb, dt, true), th::tol(dt) * 10);  // non-contiguous
    }
  // f16 and integers on a few shapes; integers are exact
  for (const auto& [sa, sb] : {std::pair<Shape, Shape>{{3, 4}, {4, 5}}, {{2, 1, 3, 4}, {3, 4, 5}}, {{4}, {4}}}) {
    check_matmul(th::random(sa, DType::f16), th::random(sb, DType::f16), 2e-2);
    check_matmul(randint(-5, 5, sa, {.dtype = DType::i32}), randint(-5, 5, sb, {.dtype = DType::i32}), 0);
    check_matmul(randint(-5, 5, sa), randint(-5, 5, sb), 0);
  }
  // mixed dtypes promote
  check_matmul(th::random({3, 4}, DType::f32), th::random({4, 2}, DType::f64), 1e-6);
  check_matmul(randint(-3, 3, {3, 4}), th::random({4, 2}, DType::f32), 1e-5);
}

TEST_CASE("matmul on transposed, sliced and expanded views", "[matmul]") {
  const Tensor a = th::random({6, 5}), b = th::random({7, 6});
  check_matmul(a.t(), b.t(), 1e-5);                                         // both transposed
  check_matmul(slice(th::random({9, 5}), 0, 1, 9, 2), th::random({5, 3}), 1e-5);  // row stride 2
  check_matmul(th::random({3, 1, 4}).expand({3, 2, 4}), th::random({4, 2}), 1e-5);  // stride-0 rows
  check_matmul(th::random({4, 1}).expand({4, 3}), th::random({3, 2}), 1e-5);  // stride-0 columns
  check_matmul(th::random({2, 3, 4}), th::random({5, 4}).t().unsqueeze(0).expand({2, 4, 5}), 1e-5);
  check_matmul(th::random({2, 5, 3}).transpose(1, 2), th::random({2, 5, 4}), 1e-5);  // batched A^T
  // sizes that use the threads (and the batch-parallel path)
  check_matmul(th::random({70, 80}), th::random({80, 200}), 1e-4);
  check_matmul(th::random({16, 9, 11}), th::random({16, 11, 10}), 1e-4);
  // method and aliases
  const Tensor x = th::random({3, 4}), y = th::random({4, 2});
  th::check_close(x.matmul(y), matmul(x, y), 0, 0, "Tensor::matmul");
  th::check_close(mm(x, y), matmul(x, y), 0, 0, "mm");
  const Tensor p = th::random({2, 3, 4}), q = th::random({2, 4, 5});
  th::check_close(bmm(p, q), matmul(p, q), 0, 0, "bmm");
  const Tensor u = th::random({6}), v = th::random({6});
  th::check_close(dot(u, v), matmul(u, v), 0, 0, "dot");
  CHECK(dot(u, v).dim() == 0);
}

TEST_CASE("linear = x @ w^T + b", "[matmul]") {
  const Tensor x = th::random({2, 3, 4}), w = th::random({5, 4}), b = th::random({5});
  Shape s;
  auto want = ref_matmul(x, w.t(), s);
  const auto bv = th::values(b);
  for (size_t i = 0; i < want.size(); ++i) want[i] += bv[i % 5];
  const Tensor out = linear(x, w, b);
  REQUIRE(out.shape() == Shape{2, 3, 5});
  th::check_close(th::values(out), want, 1e-5, 1e-5, "linear with bias");
  th::check_close(linear(x, w), matmul(x, w.t()), 0, 0, "linear without bias");
}

TEST_CASE("matmul gradients", "[matmul][grad]") {
  using V = std::vector<Tensor>;
  auto mmf = [](const V& t) { return matmul(t[0], t[1]); };
  th::gradcheck_ok(mmf, {th::random({3, 4}), th::random({4, 5})});
  th::gradcheck_ok(mmf, {th::random({2, 1, 3, 4}), th::random({3, 4, 2})});  // broadcast batch
  th::gradcheck_ok(mmf, {th::random({2, 3, 4}), th::random({4, 2})});        // folded batch
  th::gradcheck_ok(mmf, {th::random({3, 4}), th::random({2, 4, 2})});        // matrix @ batch
  th::gradcheck_ok(mmf, {th::random({4}), th::random({4, 3})});              // 1-D left
  th::gradcheck_ok(mmf, {th::random({2, 3, 4}), th::random({4})});           // 1-D right
  th::gradcheck_ok(mmf, {th::random({5}), th::random({5})});                 // dot
  th::gradcheck_ok(mmf, {th::random({4, 3}).t(), th::random({5, 4}).t()});   // transposed views
  th::gradcheck_ok([](const V& t) { return linear(t[0], t[1], t[2]); },
                   {th::random({2, 3, 4}), th::random({5, 4}), th::random({5})});
  th::gradcheck_ok([](const V& t) { return bmm(t[0], t[1]); }, {th::random({2, 2, 3}), th::random({2, 3, 2})});

  // one input without grad gets none; float32 gradients keep float32
  Tensor a = th::random({3, 4}).requires_grad_(), b = th::random({4, 2});
  sum(matmul(a, b)).backward();
  REQUIRE(a.grad().defined());
  CHECK(a.grad().dtype() == DType::f32);
  CHECK(!b.grad().defined());
  // d/da sum(a @ b) = ones @ b^T: row sums of b
  const auto bv = th::values(b), ga = th::values(a.grad());
  for (int64_t k = 0; k < 4; ++k) CHECK(ga[size_t(k)] == Approx(bv[size_t(2 * k)] + bv[size_t(2 * k + 1)]).epsilon(1e-5));
  // K == 0: gradients are zeros of the input shapes
  Tensor e = zeros({3, 0}).requires_grad_(), f = zeros({0, 2}).requires_grad_();
  sum(matmul(e, f)).backward();
  CHECK(e.grad().shape() == Shape{3, 0});
  CHECK(f.grad().shape() == Shape{0, 2});
  Tensor g3 = zeros({2, 3, 0}).requires_grad_(), w = zeros({0, 4}).requires_grad_();
  sum(matmul(g3, w)).backward();  // batch @ matrix with K == 0 (the folded dB path)
  CHECK(g3.grad().shape() == Shape{2, 3, 0});
  CHECK(w.grad().shape() == Shape{0, 4});
}

// ---------------------------------------------------------------- autocast (bf16 operands, f32 result)

namespace {
/// x rounded to bf16 and widened back: the operand an autocast matmul multiplies.
Tensor bf16_round(const Tensor& x) { return to(to(detach(x), DType::bf16), DType::f32); }
}  // namespace

TEST_CASE("matmul and linear under Autocast(bf16) multiply bf16-rounded operands into float32", "[matmul][autocast]") {
  const std::vector<std::pair<Shape, Shape>> shapes = {
      {{7, 33}, {33, 20}}, {{2, 5, 9}, {9, 6}}, {{2, 1, 3, 4}, {3, 4, 5}}, {{9}, {9, 4}}, {{40, 70}, {70, 90}}};
  for (const auto& [sa, sb] : shapes) {
    const Tensor a = th::random(sa, DType::f32, true), b = th::random(sb, DType::f32, true);
    const Tensor plain = matmul(a, b);
    Tensor out;
    {
      Autocast ac(DType::bf16);
      out = matmul(a, b);
    }
    INFO("autocast matmul " << sa << " @ " << sb);
    CHECK(out.dtype() == DType::f32);
    // the product of the rounded operands (exact in float), summed in float: tight
    th::check_close(out, matmul(bf16_round(a), bf16_round(b)), 1e-5, 1e-5, "autocast == rounded operands");
    // and only bf16 rounding away from the float32 product (inputs in [-2, 2]: 2 * 2^-8 * 4 * K)
    const double K = double(sa.back());
    th::check_close(out, plain, 8 * K / 256, 0, "autocast ~ float32");
    CHECK(th::values(out) != th::values(plain));  // it did round
  }
  // linear: x @ w^T + b on rounded x and w (the bias is added in float32)
  const Tensor x = th::random({4, 6}), w = th::random({3, 6}), bias = th::random({3});
  Tensor lo;
  {
    Autocast ac(DType::bf16);
    lo = linear(x, w, bias);
  }
  th::check_close(lo, add(matmul(bf16_round(x), bf16_round(w).t()), bias), 1e-5, 1e-5, "autocast linear");
  // outside the guard, and with a disabled guard inside it, nothing changes
  const Tensor a = th::random({5, 7}), b = th::random({7, 3});
  const Tensor before = matmul(a, b);
  {
    Autocast ac(DType::bf16);
    Autocast off(DType::bf16, false);
    th::check_close(matmul(a, b), before, 0, 0, "disabled autocast");
  }
  th::check_close(matmul(a, b), before, 0, 0, "after autocast");
  // float64 operands are not autocast
  const Tensor a64 = th::random({3, 4}, DType::f64), b64 = th::random({4, 2}, DType::f64);
  Autocast ac(DType::bf16);
  const Tensor o64 = matmul(a64, b64);
  CHECK(o64.dtype() == DType::f64);
}

TEST_CASE("autocast matmul gradients: bf16(dout) times the bf16 operands, float32 to the float32 inputs", "[matmul][autocast][grad]") {
  for (const auto& [sa, sb] : std::vector<std::pair<Shape, Shape>>{{{6, 10}, {10, 7}}, {{2, 3, 10}, {10, 4}},
                                                                   {{2, 3, 5}, {2, 5, 4}}}) {
    Tensor a = th::random(sa).requires_grad_(), b = th::random(sb).requires_grad_();
    Shape out_shape(sa.begin(), sa.end() - 1);
    out_shape.push_back(sb.back());
    const Tensor wout = th::random(out_shape);  // d loss / d out: not bf16-representable
    {
      Autocast ac(DType::bf16);
      sum(mul(matmul(a, b), wout)).backward();
    }
    INFO("autocast grads " << sa << " @ " << sb);
    REQUIRE(a.grad().defined());
    REQUIRE(b.grad().defined());
    CHECK(a.grad().dtype() == DType::f32);
    CHECK(b.grad().dtype() == DType::f32);
    // dA = bf16(dout) @ bf16(B)^T, dB = bf16(A)^T @ bf16(dout), summed over broadcast batch dims
    const Tensor d16 = bf16_round(wout);
    th::check_close(a.grad(), sum_to(matmul(d16, bf16_round(b).transpose(-1, -2)), sa), 1e-5, 1e-5, "dA");
    th::check_close(b.grad(), sum_to(matmul(bf16_round(a).transpose(-1, -2), d16), sb), 1e-5, 1e-5, "dB");
  }
  // linear: weight and bias get float32 gradients; only the input that needs one gets one
  Tensor x = th::random({4, 6}), w = th::random({3, 6}).requires_grad_(), bias = th::random({3}).requires_grad_();
  {
    Autocast ac(DType::bf16);
    sum(linear(x, w, bias)).backward();
  }
  CHECK(!x.grad().defined());
  REQUIRE(w.grad().defined());
  CHECK(w.grad().dtype() == DType::f32);
  // d/dw sum(x w^T) = ones^T @ bf16(x): column sums of the rounded x (exact in bf16 * 1)
  th::check_close(w.grad(), matmul(ones({3, 4}), bf16_round(x)), 1e-5, 1e-5, "linear dW");
  th::check_close(bias.grad(), full({3}, 4.0), 0, 0, "linear db");
}

TEST_CASE("matmul errors name the op and the shapes", "[matmul]") {
  const Tensor a = zeros({2, 3}), b = zeros({4, 5});
  th::check_throws([&] { matmul(a, b); }, {"matmul: got shapes [2, 3] and [4, 5]", "3 != 4"});
  th::check_throws([&] { matmul(zeros({3}), zeros({4})); }, {"matmul", "[3]", "[4]"});
  th::check_throws([&] { matmul(zeros({}), zeros({3})); }, {"matmul", "at least 1 dim"});
  th::check_throws([&] { matmul(zeros({2, 3, 4}), zeros({3, 4, 5})); }, {"matmul", "[2, 3, 4]", "[3, 4, 5]", "batch"});
  th::check_throws([&] { matmul(zeros({2, 2}, {.dtype = DType::b8}), zeros({2, 2}, {.dtype = DType::b8})); },
                   {"matmul", "bool"});
  th::check_throws([&] { mm(zeros({2, 3, 4}), zeros({4, 5})); }, {"mm", "[2, 3, 4]", "2-D"});
  th::check_throws([&] { mm(zeros({2, 3}), zeros({4, 5})); }, {"mm", "[2, 3]", "[4, 5]"});
  th::check_throws([&] { bmm(zeros({2, 3, 4}), zeros({3, 4, 5})); }, {"bmm", "[2, 3, 4]", "[3, 4, 5]"});
  th::check_throws([&] { bmm(zeros({3, 4}), zeros({4, 5})); }, {"bmm", "3-D"});
  th::check_throws([&] { dot(zeros({3}), zeros({4})); }, {"dot", "[3]", "[4]"});
  th::check_throws([&] { linear(zeros({2, 3}), zeros({5, 4})); }, {"linear", "[2, 3]", "[5, 4]"});
  th::check_throws([&] { linear(zeros({2, 4}), zeros({5, 4}), zeros({3})); }, {"linear", "[3]", "[5, 4]"});
}

}  // namespace test_matmul
