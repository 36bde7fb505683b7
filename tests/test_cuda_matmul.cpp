// matmul on cuda (backend/cuda/blas.hpp: cuBLASLt on a GPU, the CPU kernels under the emulator).
// cuda::gemm on raw device memory against a plain double loop over the same (rounded) inputs, for
// f32, f64, f16, bf16 and bf16 -> f32: row-major and transposed operands with padded leading dims,
// a strided batch with a broadcast (stride 0) B, beta = 0 over NaN (must not leak) and beta != 0,
// the bias and bias + relu epilogues. The tensor ops (matmul, mm, bmm, dot, linear) on cuda
// against the same ops on the CPU: contiguous, transposed, sliced, expanded, 1-D, folded
// ([B, T, K] @ [K, N]) and broadcast-batched ([2, 1, M, K] @ [3, K, N]) operands, K = 0, per
// dtype, and their gradients; matmul under Autocast(bf16 / f16) (16-bit operands, float32 result).
// Tolerances are error bounds, not guesses: K * eps(accumulation) * (|A| @ |B|) for the sums plus
// one rounding of the result (f16/bf16), so the same tests hold natively on a GPU, where cuBLASLt
// sums in another order. The errors: devices, shapes, integer dtypes, unreadable strides.
#include <catch2/catch.hpp>

#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "helpers.hpp"
#include "strata/backend/cuda.hpp"
#include "strata/backend/cuda/blas.hpp"
#include "strata/tensor/tensor.hpp"

namespace test_cuda_matmul {

using namespace strata;

/// Unit roundoff of a dtype's rounding (half its epsilon).
inline double unit_roundoff(DType t) {
  switch (t) {
    case DType::f64: return std::ldexp(1.0, -53);
    case DType::f32: return std::ldexp(1.0, -24);
    case DType::f16: return std::ldexp(1.0, -11);
    default: return std::ldexp(1.0, -8);  // bf16
  }
}

/// Row-major values of a cpu tensor as double, through its strides (a plain loop).
inline std::vector<double> host_values(const Tensor& t) {
  REQUIRE(t.device() == kCPU);
  return th::values(t);  // tests/helpers.hpp: a plain loop over the strides
}

/// Uniform values in [-1, 1) of `shape` and dtype on the CPU (made in f64, rounded once).
inline Tensor uniform(const Shape& shape, DType t) {
  return to(sub(mul(rand(shape, {.dtype = DType::f64}), 2.0), 1.0), t);
}

/// got (cuda) equals want (cpu, same op) within the bound: k * u_acc * bound + rounding of the result.
/// bound: |a| @ |b| as a cpu tensor of want's shape (sum of |terms| per element).
inline void check_against(const Tensor& got_cuda, const Tensor& want, const Tensor& bound, int64_t k,
                          const std::string& what) {
  INFO(what << ": got " << got_cuda.shape() << " " << got_cuda.dtype() << ", want " << want.shape() << " "
            << want.dtype());
  REQUIRE(got_cuda.device() == Device::cuda());
  REQUIRE(got_cuda.dtype() == want.dtype());
  REQUIRE(got_cuda.shape() == want.shape());
  const std::vector<double> g = host_values(to(got_cuda, kCPU)), w = host_values(want), s = host_values(bound);
  REQUIRE(s.size() == w.size());
  const DType t = want.dtype();
  const double u_acc = t == DType::f64 ? unit_roundoff(DType::f64) : unit_roundoff(DType::f32);
  const double u_out = t == DType::f16 || t == DType::bf16 ? unit_roundoff(t) : 0.0;
  for (size_t i = 0; i < g.size(); ++i) {
    // both sides: sums within k * u_acc * s of the exact value; 16-bit: the result rounded once
    // more, and an intermediate (the CPU's product before its bias add, a gradient before its
    // broadcast sum) rounded too, within u_out * s
    const double tol = 2 * double(k + 1) * u_acc * s[i] + 2 * u_out * s[i] + 4 * u_out * std::abs(w[i]) + 1e-300;
    if (!(std::abs(g[i] - w[i]) <= tol)) {
      FAIL_CHECK(what << ": element " << i << " got " << g[i] << ", want " << w[i] << " (tolerance " << tol << ")");
      return;
    }
  }
  SUCCEED();
}

// ---------------------------------------------------------------- cuda::gemm on raw device memory

/// One cuda::gemm case against a double loop. Inputs are values of T; ta/tb: A/B stored transposed;
/// a padded leading dim everywhere; batch 3 with B shared (stride 0).
template <class T, class TC>
void check_gemm(int64_t M, int64_t N, int64_t K, bool ta, bool tb, float beta, bool with_bias, bool relu,
                std::mt19937& g) {
  std::uniform_real_distribution<double> d(-1, 1);
  const int64_t pad = 3, nb = 3;
  const int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
  const int64_t sa = (ta ? K : M) * lda, sc = M * ldc;  // batch strides of A and C; B: 0
  std::vector<T> A(size_t(nb * sa)), B(size_t((tb ? N : K) * ldb));
  std::vector<TC> C(size_t(nb * sc)), bias(static_cast<size_t>(N));
  for (T& x : A) x = cast_value<T>(d(g));
  for (T& x : B) x = cast_value<T>(d(g));
  for (TC& x : C) x = beta == 0.f ? cast_value<TC>(std::numeric_limits<double>::quiet_NaN()) : cast_value<TC>(d(g));
  for (TC& x : bias) x = cast_value<TC>(d(g));
  const int64_t a_rs = ta ? 1 : lda, a_cs = ta ? lda : 1, b_rs = tb ? 1 : ldb, b_cs = tb ? ldb : 1;

  // the reference: a double loop over the same values
  std::vector<double> want(C.size()), bound(C.size(), 0.0);
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0, s = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double x = cast_value<double>(A[size_t(i * sa + m * a_rs + k * a_cs)]) *
                           cast_value<double>(B[size_t(k * b_rs + n * b_cs)]);
          acc += x;
          s += std::abs(x);
        }
        const size_t c = size_t(i * sc + m * ldc + n);
        double v = acc + (beta == 0.f ? 0.0 : double(beta) * cast_value<double>(C[c]));
        if (with_bias) v += cast_value<double>(bias[size_t(n)]);
        if (relu) v = std::max(v, 0.0);
        want[c] = v;
        bound[c] = s + (beta == 0.f ? 0.0 : std::abs(double(beta) * cast_value<double>(C[c]))) + 1;  // 1: the bias
      }

  const size_t a_bytes = A.size() * sizeof(T), b_bytes = B.size() * sizeof(T), c_bytes = C.size() * sizeof(TC);
  T* dA = static_cast<T*>(cuda::malloc(a_bytes));
  T* dB = static_cast<T*>(cuda::malloc(b_bytes));
  TC* dC = static_cast<TC*>(cuda::malloc(c_bytes));
  TC* dbias = static_cast<TC*>(cuda::malloc(size_t(N) * sizeof(TC)));
  cuda::memcpy(dA, A.data(), a_bytes);
  cuda::memcpy(dB, B.data(), b_bytes);
  cuda::memcpy(dC, C.data(), c_bytes);
  cuda::memcpy(dbias, bias.data(), size_t(N) * sizeof(TC));
  cuda::gemm<T, TC>(M, N, K, 1.f, dA, a_rs, a_cs, dB, b_rs, b_cs, beta, dC, ldc, {.count = nb, .a = sa, .b = 0, .c = sc},
                    with_bias ? dbias : nullptr, relu);
  std::vector<TC> got(C.size());
  cuda::memcpy(got.data(), dC, c_bytes);
  for (void* p : {static_cast<void*>(dA), static_cast<void*>(dB), static_cast<void*>(dC), static_cast<void*>(dbias)})
    cuda::free(p);

  const double u_acc = std::is_same_v<T, double> ? unit_roundoff(DType::f64) : unit_roundoff(DType::f32);
  const double u_out = sizeof(TC) == 2 ? (std::is_same_v<TC, f16> ? unit_roundoff(DType::f16) : unit_roundoff(DType::bf16))
                                       : 0.0;
  INFO("gemm M=" << M << " N=" << N << " K=" << K << " ta=" << ta << " tb=" << tb << " beta=" << beta
                 << " bias=" << with_bias << " relu=" << relu);
  for (int64_t i = 0; i < nb; ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < ldc; ++n) {
        const size_t c = size_t(i * sc + m * ldc + n);
        const double gv = cast_value<double>(got[c]);
        if (n >= N) {  // padding: untouched
          REQUIRE((std::isnan(gv) ? std::isnan(cast_value<double>(C[c])) : gv == cast_value<double>(C[c])));
          continue;
        }
        const double tol = double(K + 2) * u_acc * bound[c] + u_out * std::abs(want[c]);
        if (!(std::abs(gv - want[c]) <= tol)) {
          FAIL("batch " << i << " C[" << m << ", " << n << "] got " << gv << ", want " << want[c] << " (tolerance "
                        << tol << ")");
        }
      }
}

template <class T, class TC = T>
void gemm_sweep(std::mt19937& g) {
  const int64_t sizes[][3] = {{1, 1, 1}, {1, 9, 5}, {7, 1, 5}, {5, 8, 1}, {17, 13, 37}, {33, 40, 70}};
  for (const auto& s : sizes)
    for (int v = 0; v < 4; ++v) {
      const unsigned r = g();
      // float64 epilogues: the emulator only (cuBLASLt need not have them; cuda::gemm would throw)
      const bool epilogue = !std::is_same_v<T, double> || cuda::kEmulated;
      check_gemm<T, TC>(s[0], s[1], s[2], v & 1, v & 2, r % 3 == 0 ? 0.5f : 0.f, epilogue && (v == 3 || r % 2 == 0),
                        epilogue && v == 3, g);
    }
}

TEST_CASE("cuda::gemm against a double loop: strides, strided batch, beta, bias and relu", "[cuda][matmul]") {
  std::mt19937 g(7);
  SECTION("float") { gemm_sweep<float>(g); }
  SECTION("double") { gemm_sweep<double>(g); }
  SECTION("f16") { gemm_sweep<f16>(g); }
  SECTION("bf16") { gemm_sweep<bf16>(g); }
  SECTION("bf16 -> float") { gemm_sweep<bf16, float>(g); }
  SECTION("f16 -> float") { gemm_sweep<f16, float>(g); }
}

TEST_CASE("cuda::gemm: K = 0 gives zeros, empty sizes do nothing", "[cuda][matmul]") {
  float* c = static_cast<float*>(cuda::malloc(6 * sizeof(float)));
  const std::vector<float> nan(6, std::numeric_limits<float>::quiet_NaN());
  cuda::memcpy(c, nan.data(), sizeof(float) * 6);
  cuda::gemm<float>(2, 3, 0, 1.f, nullptr, 1, 1, nullptr, 1, 1, 0.f, c, 3);
  std::vector<float> got(6);
  cuda::memcpy(got.data(), c, sizeof(float) * 6);
  CHECK(got == std::vector<float>(6, 0.f));
  cuda::gemm<float>(0, 3, 4, 1.f, nullptr, 1, 1, nullptr, 1, 1, 0.f, c, 3);  // nothing read or written
  cuda::free(c);
}

// ---------------------------------------------------------------- the tensor ops on cuda

/// op(va(a), vb(b)) on cuda against the same on the CPU, with the error bound from |a| @ |b| (k: the
/// inner size). The views are taken on each device, so the cuda operands have the views' strides.
using View = std::function<Tensor(const Tensor&)>;
inline Tensor same(const Tensor& x) { return x; }
template <class Op>
void check_op(Op op, const Tensor& a, const Tensor& b, int64_t k, const std::string& what, const View& va = same,
              const View& vb = same) {
  const Tensor want = op(va(a), vb(b));
  const Tensor bound = op(abs(to(va(a), DType::f64)), abs(to(vb(b), DType::f64)));
  const Tensor ac = va(to(a, Device::cuda())), bc = vb(to(b, Device::cuda()));
  REQUIRE(ac.strides() == va(a).strides());  // the layout under test reaches the cuda op
  REQUIRE(bc.strides() == vb(b).strides());
  check_against(op(ac, bc), want, bound, k, what);
}

inline Tensor t01(const Tensor& x) { return transpose(x, 0, 1); }
inline Tensor t12(const Tensor& x) { return transpose(x, 1, 2); }

TEST_CASE("matmul, mm, bmm, dot on cuda equal the CPU ops", "[cuda][matmul]") {
  manual_seed(11);
  const auto mm_op = [](const Tensor& a, const Tensor& b) { return mm(a, b); };
  const auto bmm_op = [](const Tensor& a, const Tensor& b) { return bmm(a, b); };
  const auto matmul_op = [](const Tensor& a, const Tensor& b) { return matmul(a, b); };
  const auto dot_op = [](const Tensor& a, const Tensor& b) { return dot(a, b); };
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(t));
    check_op(mm_op, uniform({5, 7}, t), uniform({7, 3}, t), 7, "mm" + d);
    check_op(mm_op, uniform({33, 65}, t), uniform({65, 47}, t), 65, "mm big" + d);
    check_op(mm_op, uniform({7, 5}, t), uniform({3, 7}, t), 7, "mm a^T b^T" + d, t01, t01);
    check_op(mm_op, uniform({7, 5}, t), uniform({7, 3}, t), 7, "mm a^T" + d, t01);
    const View cols = [](const Tensor& x) { return slice(x, 1, 2, 10); };   // row stride 12, 8 columns
    const View rows = [](const Tensor& x) { return slice(x, 0, 1, 9); };    // offset 6
    check_op(mm_op, uniform({9, 12}, t), uniform({11, 6}, t), 8, "mm sliced" + d, cols, rows);
    check_op(bmm_op, uniform({4, 5, 6}, t), uniform({4, 6, 3}, t), 6, "bmm" + d);
    check_op(bmm_op, uniform({4, 5, 6}, t), uniform({4, 3, 6}, t), 6, "bmm b^T" + d, same, t12);
    const View every_other = [](const Tensor& x) { return slice(x, 0, 0, 8, 2); };  // batch stride 2 matrices
    check_op(bmm_op, uniform({8, 5, 6}, t), uniform({4, 6, 3}, t), 6, "bmm strided batch" + d, every_other);
    check_op(matmul_op, uniform({3, 4, 6}, t), uniform({6, 5}, t), 6, "matmul folded [B, T, K] @ [K, N]" + d);
    check_op(matmul_op, uniform({2, 1, 4, 6}, t), uniform({3, 6, 5}, t), 6, "matmul broadcast batch" + d);
    check_op(matmul_op, uniform({3, 1, 1, 6}, t), uniform({1, 4, 6, 2}, t), 6, "matmul broadcast, one row" + d);
    check_op(matmul_op, uniform({6}, t), uniform({6, 5}, t), 6, "matmul [K] @ [K, N]" + d);
    check_op(matmul_op, uniform({2, 4, 6}, t), uniform({6}, t), 6, "matmul [B, M, K] @ [K]" + d);
    check_op(dot_op, uniform({9}, t), uniform({9}, t), 9, "dot" + d);
    check_op(mm_op, uniform({3, 0}, t), uniform({0, 4}, t), 0, "mm K = 0 (zeros)" + d);
  }
}

TEST_CASE("matmul on cuda under Autocast(bf16 / f16): 16-bit operands, float32 result, like the CPU",
          "[cuda][matmul]") {
  manual_seed(16);
  for (DType low : {DType::bf16, DType::f16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(low));
    const Tensor a = uniform({2, 5, 9}, DType::f32), b = uniform({9, 4}, DType::f32);
    const Tensor g = uniform({2, 5, 4}, DType::f32);
    auto r16 = [&](const Tensor& t) { return abs(to(to(t, low), DType::f64)); };  // |low(t)|
    // the bound: |a| @ |b| of the rounded values (both sides round the operands the same way)
    const Tensor bound = matmul(r16(a), r16(b));
    Tensor ac = to(a, Device::cuda()).detach().requires_grad_(), bc = to(b, Device::cuda()).detach().requires_grad_();
    Tensor ah = a.detach().requires_grad_(), bh = b.detach().requires_grad_();
    Tensor got, want;
    {
      Autocast ac16(low);
      got = matmul(ac, bc);
      want = matmul(ah, bh);
    }
    REQUIRE(got.dtype() == DType::f32);
    check_against(got, want, bound, 9, "autocast matmul" + d);
    got.backward(to(g, Device::cuda()));
    want.backward(g);
    // dA = low(g) @ low(b)^T, dB = low(a)^T @ low(g): bounds from the rounded values
    const Tensor da_bound = matmul(r16(g), transpose(r16(b), 0, 1));
    const Tensor db_bound = matmul(transpose(reshape(r16(a), {10, 9}), 0, 1), reshape(r16(g), {10, 4}));
    check_against(ac.grad(), ah.grad(), da_bound, 4, "autocast matmul dA" + d);
    check_against(bc.grad(), bh.grad(), db_bound, 10, "autocast matmul dB" + d);
  }
}

TEST_CASE("matmul on cuda: layouts cuBLASLt cannot read are copied first", "[cuda][matmul]") {
  manual_seed(12);
  const auto mm_op = [](const Tensor& a, const Tensor& b) { return mm(a, b); };
  const View every_other = [](const Tensor& x) { return slice(slice(x, 0, 0, 10, 2), 1, 0, 14, 2); };  // (28, 2)
  const View rows_expanded = [](const Tensor& x) { return expand(x, {5, 7}); };  // row stride 0
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(t));
    check_op(mm_op, uniform({10, 14}, t), uniform({7, 4}, t), 7, "mm no unit stride" + d, every_other);
    check_op(mm_op, uniform({1, 7}, t), uniform({7, 4}, t), 7, "mm expanded rows" + d, rows_expanded);
  }
}

TEST_CASE("linear on cuda equals the CPU op (the bias in cuBLASLt's epilogue)", "[cuda][matmul]") {
  manual_seed(13);
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(t));
    for (const Shape& xs : {Shape{2, 5, 9}, Shape{9}, Shape{0, 9}}) {
      const Tensor x = uniform(xs, t), w = uniform({4, 9}, t), b = uniform({4}, t);
      const Tensor xc = to(x, Device::cuda()), wc = to(w, Device::cuda()), bc = to(b, Device::cuda());
      const Tensor bound = add(linear(abs(to(x, DType::f64)), abs(to(w, DType::f64))), 1.0);
      check_against(linear(xc, wc), linear(x, w), bound, 9, "linear" + d);
      check_against(linear(xc, wc, bc), linear(x, w, b), bound, 9, "linear bias" + d);
      // a transposed weight and a strided bias
      const Tensor w2 = uniform({9, 4}, t), b2 = uniform({8}, t);
      check_against(linear(xc, t01(to(w2, Device::cuda())), slice(to(b2, Device::cuda()), 0, 0, 8, 2)),
                    linear(x, t01(w2), slice(b2, 0, 0, 8, 2)), bound, 9, "linear w^T, strided bias" + d);
    }
  }
}

// ---------------------------------------------------------------- backward

/// The gradients of f(inputs) . g (g: a random cotangent) on cuda against the CPU's, per input.
/// The bound per element: the same gradients of f(|inputs|) . |g| in float64 (sums of |terms|).
template <class F>
void check_grads(F f, const std::vector<Tensor>& inputs, int64_t k, const std::string& what) {
  const DType t = inputs[0].dtype();
  auto grads = [&](const std::vector<Tensor>& xs, const Tensor& g) {
    std::vector<Tensor> leaves;
    for (const Tensor& x : xs) leaves.push_back(x.detach().requires_grad_());
    f(leaves).backward(g);
    std::vector<Tensor> out;
    for (const Tensor& l : leaves) out.push_back(l.grad());
    return out;
  };
  const Tensor out_cpu = f(inputs);
  const Tensor g = uniform(out_cpu.shape(), t);
  const std::vector<Tensor> want = grads(inputs, g);
  std::vector<Tensor> abs_inputs, cuda_inputs;
  for (const Tensor& x : inputs) {
    abs_inputs.push_back(abs(to(x, DType::f64)));
    cuda_inputs.push_back(to(x, Device::cuda()));
  }
  const std::vector<Tensor> bound = grads(abs_inputs, abs(to(g, DType::f64)));
  const std::vector<Tensor> got = grads(cuda_inputs, to(g, Device::cuda()));
  for (size_t i = 0; i < inputs.size(); ++i)
    check_against(got[i], want[i], bound[i], k, what + " grad of input " + std::to_string(i));
}

TEST_CASE("matmul backward on cuda equals the CPU's", "[cuda][matmul]") {
  manual_seed(14);
  using V = std::vector<Tensor>;
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(t));
    check_grads([](const V& x) { return mm(x[0], x[1]); }, {uniform({5, 7}, t), uniform({7, 3}, t)}, 7, "mm" + d);
    check_grads([](const V& x) { return mm(t01(x[0]), x[1]); }, {uniform({7, 5}, t), uniform({7, 3}, t)}, 7,
                "mm a^T" + d);
    check_grads([](const V& x) { return bmm(x[0], x[1]); }, {uniform({3, 5, 6}, t), uniform({3, 6, 4}, t)}, 6,
                "bmm" + d);
    check_grads([](const V& x) { return matmul(x[0], x[1]); }, {uniform({3, 4, 6}, t), uniform({6, 5}, t)}, 12,
                "matmul folded" + d);
    check_grads([](const V& x) { return matmul(x[0], x[1]); }, {uniform({6}, t), uniform({6, 5}, t)}, 6,
                "matmul [K] @ [K, N]" + d);
    check_grads([](const V& x) { return linear(x[0], x[1], x[2]); },
                {uniform({2, 5, 9}, t), uniform({4, 9}, t), uniform({4}, t)}, 10, "linear bias" + d);
  }
}

TEST_CASE("matmul backward on cuda: broadcast batch dims are summed", "[cuda][matmul]") {
  manual_seed(15);
  using V = std::vector<Tensor>;
  for (DType t : {DType::f32, DType::f64, DType::f16, DType::bf16}) {
    const std::string d = std::string(" ") + std::string(dtype_name(t));
    check_grads([](const V& x) { return matmul(x[0], x[1]); }, {uniform({2, 1, 4, 6}, t), uniform({3, 6, 5}, t)}, 15,
                "matmul broadcast batch" + d);
  }
}

TEST_CASE("matmul on cuda: errors name the op", "[cuda][matmul]") {
  const auto message = [](auto&& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  const Tensor a = uniform({3, 4}, DType::f32), b = uniform({4, 2}, DType::f32);
  const Tensor ac = to(a, Device::cuda()), bc = to(b, Device::cuda());
  std::string m = message([&] { matmul(a, bc); });
  CHECK(m.find("matmul") != std::string::npos);
  CHECK(m.find("devices") != std::string::npos);
  m = message([&] { mm(ac, ac); });
  CHECK(m.find("mm") != std::string::npos);
  CHECK(m.find("expected a.size(1) == b.size(0)") != std::string::npos);
  m = message([&] { matmul(to(to(a, DType::i64), Device::cuda()), to(to(b, DType::i64), Device::cuda())); });
  CHECK(m.find("matmul: got dtype int64") != std::string::npos);
  CHECK(m.find("expected float32, float64, float16 or bfloat16") != std::string::npos);
  // raw: a broadcast A (row stride 0) is not a layout cuBLASLt reads
  float* p = static_cast<float*>(cuda::malloc(64 * sizeof(float)));
  m = message([&] { cuda::gemm<float>(3, 2, 4, 1.f, p, 0, 1, p, 2, 1, 0.f, p + 32, 2); });
  CHECK(m.find("cuda::gemm: got A [3, 4] with strides (0, 1)") != std::string::npos);
  m = message([&] { cuda::gemm<float>(3, 2, 4, 1.f, p, 4, 1, p, 2, 1, 0.f, p + 32, 1); });
  CHECK(m.find("row stride 1") != std::string::npos);
  cuda::free(p);
}

}  // namespace test_cuda_matmul
