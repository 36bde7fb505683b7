// cuda::gemm: matrix products on a cuda device through cuBLASLt, and matmul's cuda path.
//
//   cuda::gemm<T, TC>(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs,
//                     {.count = B, .a = sa, .b = sb, .c = sc}, bias, relu);
//
// C[i][M,N] = relu?(alpha * A[i][M,K] @ B[i][K,N] + beta * C[i] + bias[N]) for i < batch.count, where
// X[i] starts batch.x elements after X[0]. Row-major like cpu::gemm (kernels/cpu/gemm.hpp): each
// matrix is a device pointer plus a row and a column stride in elements, but cuBLASLt needs one of
// them to be 1 with the other covering the matrix (detail::blas_layout in tensor/matmul.hpp says
// which; a transposed view qualifies, a broadcast or overlapping one does not). C has unit column
// stride and row stride c_rs >= N. A batch stride of A or B may be 0 (the same matrix each time).
//   T  = float, double, f16 or bf16 (A and B); TC = T, or float for f16/bf16 inputs (C and bias).
//   float multiplies in float (CUBLAS_COMPUTE_32F: no TF32), double in double (CUBLAS_COMPUTE_64F),
//   f16/bf16 with float accumulation (CUBLAS_COMPUTE_32F) and one rounding to TC; alpha and beta
//   are double for double, float otherwise. beta == 0 never reads C.
//   bias: nullptr or [N] of TC added to each row (CUBLASLT_EPILOGUE_BIAS), relu after it
//   (CUBLASLT_EPILOGUE_RELU_BIAS, or CUBLASLT_EPILOGUE_RELU without a bias).
// It runs on the current device and the default stream (every op does today), asynchronously.
//
// Native (STRATA_CUDA): row-major C[M,N] is column-major C^T[N,M] = B^T A^T, so B goes in cuBLASLt's
// A slot and A in its B slot, each as a column-major layout, transposed (CUBLASLT_MATMUL_DESC_TRANSA/B)
// when its unit stride is the row one; the bias, one value per row of the column-major D, is then
// one per column of C, as linear wants. One cuBLASLt handle and one 32 MiB workspace per device
// (from the caching allocator) are made on first use and kept for the process; the algorithm is
// cublasLtMatmulAlgoGetHeuristic's first choice. Every status is checked and a failure throws
// strata::Error naming the call (cublasLtGetStatusName/String). Reference: the cuBLAS docs'
// cublasLtMatmul section; llm.c's matmul_cublaslt (llmc/matmul.cuh).
// Emulator (STRATA_CUDA_EMULATE): device memory is host memory, so the CPU kernels run on it:
// cpu::gemm<T> for float/double; cpu::gemm_bf16 for bf16 -> float; f16 and bf16 -> bf16 are widened
// to float, multiplied by cpu::gemm<float> and rounded once (what the CPU matmul does, bit for bit),
// then the same epilogue in float.
//
// Below, cuda_matmul_impl fills tensor/matmul.hpp's cuda_matmul_hook: matmul, mm, bmm, linear and
// their backward (built from matmul) on cuda tensors come here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_bf16.hpp"
#include "strata/backend/device_allocator.hpp"
#include "strata/backend/runtime.hpp"
#include "strata/core/half.hpp"
#include "strata/tensor/tensor.hpp"  // matmul.hpp (cuda_matmul_hook), contiguous

#if !defined(STRATA_CUDA_EMULATE)
#include <cublasLt.h>
#endif

namespace strata::cuda {

/// A strided batch: `count` products, the i-th reading A + i * a, B + i * b, writing C + i * c.
struct GemmBatch {
  int64_t count = 1;
  int64_t a = 0, b = 0, c = 0;
};

/// alpha and beta's type for inputs T: double for double, float otherwise.
template <class T>
using gemm_scale_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

namespace detail {

template <class T, class TC>
constexpr void gemm_check_types() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, f16> ||
                    std::is_same_v<T, bf16>,
                "cuda::gemm: T must be float, double, f16 or bf16");
  static_assert(std::is_same_v<TC, T> || (std::is_same_v<TC, float> && sizeof(T) == 2),
                "cuda::gemm: TC must be T, or float for f16/bf16 inputs");
}

inline void gemm_check_args(int64_t M, int64_t N, int64_t K, int64_t a_rs, int64_t a_cs, int64_t b_rs,
                            int64_t b_cs, int64_t c_rs, const GemmBatch& batch) {
  STRATA_CHECK(strata::detail::blas_layout(M, K, a_rs, a_cs), "cuda::gemm", "got A [", M, ", ", K, "] with strides (",
               a_rs, ", ", a_cs, "), expected one unit stride and the other covering the matrix");
  STRATA_CHECK(strata::detail::blas_layout(K, N, b_rs, b_cs), "cuda::gemm", "got B [", K, ", ", N, "] with strides (",
               b_rs, ", ", b_cs, "), expected one unit stride and the other covering the matrix");
  STRATA_CHECK(M == 1 || c_rs >= N, "cuda::gemm", "got C [", M, ", ", N, "] with row stride ", c_rs,
               ", expected a row stride >= ", N);
  STRATA_CHECK(batch.count == 1 || std::abs(batch.c) >= (M - 1) * c_rs + N, "cuda::gemm", "got a C batch stride ",
               batch.c, " for ", batch.count, " products of [", M, ", ", N, "], expected batch matrices that do not overlap");
}

/// C = relu?(C + bias) on one host [M, N] matrix (the emulator's epilogue), in float or double.
template <class C, class B>
void gemm_epilogue_host(int64_t M, int64_t N, C* c, int64_t c_rs, const B* bias, bool relu) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      C v = c[i * c_rs + j];
      if (bias) v += cast_value<C>(bias[j]);
      if (relu) v = v > C(0) ? v : (v != v ? v : C(0));  // NaN stays NaN (like torch.relu)
      c[i * c_rs + j] = v;
    }
}

#if defined(STRATA_CUDA_EMULATE)
/// One product on host memory with the CPU kernels (see the top).
template <class T, class TC>
void gemm_emulated(int64_t M, int64_t N, int64_t K, gemm_scale_t<T> alpha, const T* A, int64_t a_rs, int64_t a_cs,
                   const T* B, int64_t b_rs, int64_t b_cs, gemm_scale_t<T> beta, TC* C, int64_t c_rs, const TC* bias,
                   bool relu) {
  if constexpr (std::is_same_v<T, TC> && (std::is_same_v<T, float> || std::is_same_v<T, double>)) {
    cpu::gemm<T>(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, 1);
    if (bias || relu) gemm_epilogue_host(M, N, C, c_rs, bias, relu);
  } else if constexpr (std::is_same_v<T, bf16> && std::is_same_v<TC, float>) {
    cpu::gemm_bf16(M, N, K, alpha, A, a_rs, a_cs, B, b_rs, b_cs, beta, C, c_rs, 1);
    if (bias || relu) gemm_epilogue_host(M, N, C, c_rs, bias, relu);
  } else {  // f16 -> f16 / float, bf16 -> bf16: widen, multiply in float, round once
    std::vector<float> a(size_t(M * K)), b(size_t(K * N)), c(size_t(M * N), 0.f);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t k = 0; k < K; ++k) a[size_t(i * K + k)] = cast_value<float>(A[i * a_rs + k * a_cs]);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t j = 0; j < N; ++j) b[size_t(k * N + j)] = cast_value<float>(B[k * b_rs + j * b_cs]);
    if (beta != 0.f)
      for (int64_t i = 0; i < M; ++i)
        for (int64_t j = 0; j < N; ++j) c[size_t(i * N + j)] = cast_value<float>(C[i * c_rs + j]);
    cpu::gemm<float>(M, N, K, alpha, a.data(), K, 1, b.data(), N, 1, beta, c.data(), N, 1);
    if (bias || relu) gemm_epilogue_host(M, N, c.data(), N, bias, relu);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) C[i * c_rs + j] = cast_value<TC>(c[size_t(i * N + j)]);
  }
}
#else
inline void check_cublas(cublasStatus_t s, const char* call) {
  if (s == CUBLAS_STATUS_SUCCESS) [[likely]]
    return;
  throw Error(std::string("cuda::gemm: got ") + cublasLtGetStatusName(s) + " (" + cublasLtGetStatusString(s) +
              ") from " + call + ", expected CUBLAS_STATUS_SUCCESS");
}

/// A device's cuBLASLt handle and workspace, made on first use and kept for the process.
struct BlasLtContext {
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};
inline constexpr size_t kBlasLtWorkspace = size_t(32) << 20;  // what cuBLAS asks for on Hopper

inline BlasLtContext& blaslt_context(int device) {
  static std::mutex mutex;
  static auto* contexts = new std::vector<BlasLtContext>();  // never destroyed (like the allocator)
  std::lock_guard lock(mutex);
  if (size_t(device) >= contexts->size()) contexts->resize(size_t(device) + 1);
  BlasLtContext& c = (*contexts)[size_t(device)];
  if (!c.handle) {
    check_cublas(cublasLtCreate(&c.handle), "cublasLtCreate");
    c.workspace = cuda_caching_allocator().allocate(kBlasLtWorkspace, device);
    c.workspace_bytes = kBlasLtWorkspace;
  }
  return c;
}

// descriptors that destroy themselves
struct LtMatmulDesc {
  cublasLtMatmulDesc_t p = nullptr;
  ~LtMatmulDesc() {
    if (p) cublasLtMatmulDescDestroy(p);
  }
  template <class V>
  void set(cublasLtMatmulDescAttributes_t attr, const V& v, const char* call) {
    check_cublas(cublasLtMatmulDescSetAttribute(p, attr, &v, sizeof(v)), call);
  }
};
struct LtLayout {
  cublasLtMatrixLayout_t p = nullptr;
  ~LtLayout() {
    if (p) cublasLtMatrixLayoutDestroy(p);
  }
};
struct LtPreference {
  cublasLtMatmulPreference_t p = nullptr;
  ~LtPreference() {
    if (p) cublasLtMatmulPreferenceDestroy(p);
  }
};

template <class T>
constexpr cudaDataType_t cuda_data_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  else if constexpr (std::is_same_v<T, double>) return CUDA_R_64F;
  else if constexpr (std::is_same_v<T, f16>) return CUDA_R_16F;
  else return CUDA_R_16BF;
}

/// The column-major layout of X^T (X: [r, c], strides rs, cs; blas_layout holds), or of X itself
/// with `trans` set: cuBLASLt then reads op(layout) = X^T.
inline void make_layout(LtLayout& l, bool& trans, cudaDataType_t type, int64_t r, int64_t c, int64_t rs, int64_t cs,
                        int64_t count, int64_t batch_stride) {
  if ((cs == 1 || c == 1) && (r == 1 || rs >= c)) {  // X^T[j, i] at j + i * rs: column-major [c, r]
    trans = false;
    check_cublas(cublasLtMatrixLayoutCreate(&l.p, type, uint64_t(c), uint64_t(r), r == 1 ? c : rs),
                 "cublasLtMatrixLayoutCreate");
  } else {  // X[i, j] at i + j * cs: column-major [r, c], used transposed
    trans = true;
    check_cublas(cublasLtMatrixLayoutCreate(&l.p, type, uint64_t(r), uint64_t(c), c == 1 ? r : cs),
                 "cublasLtMatrixLayoutCreate");
  }
  if (count > 1) {
    const int32_t n = int32_t(count);
    check_cublas(cublasLtMatrixLayoutSetAttribute(l.p, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &n, sizeof(n)),
                 "cublasLtMatrixLayoutSetAttribute(BATCH_COUNT)");
    check_cublas(cublasLtMatrixLayoutSetAttribute(l.p, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &batch_stride,
                                                  sizeof(batch_stride)),
                 "cublasLtMatrixLayoutSetAttribute(STRIDED_BATCH_OFFSET)");
  }
}

/// One cublasLtMatmul call for a batch of at most INT32_MAX products, K > 0 (see the top).
template <class T, class TC>
void gemm_native(int64_t M, int64_t N, int64_t K, gemm_scale_t<T> alpha, const T* A, int64_t a_rs, int64_t a_cs,
                 const T* B, int64_t b_rs, int64_t b_cs, gemm_scale_t<T> beta, TC* C, int64_t c_rs,
                 const GemmBatch& batch, const TC* bias, bool relu, Stream stream) {
  BlasLtContext& ctx = blaslt_context(get_device());
  constexpr cublasComputeType_t compute = std::is_same_v<T, double> ? CUBLAS_COMPUTE_64F : CUBLAS_COMPUTE_32F;
  constexpr cudaDataType_t scale = std::is_same_v<T, double> ? CUDA_R_64F : CUDA_R_32F;
  LtMatmulDesc desc;
  check_cublas(cublasLtMatmulDescCreate(&desc.p, compute, scale), "cublasLtMatmulDescCreate");

  // C^T [N, M] = B^T [N, K] @ A^T [K, M], all column-major
  LtLayout lb, la, lc;
  bool trans_b = false, trans_a = false;
  make_layout(lb, trans_b, cuda_data_type<T>(), K, N, b_rs, b_cs, batch.count, batch.b);  // cuBLASLt's A
  make_layout(la, trans_a, cuda_data_type<T>(), M, K, a_rs, a_cs, batch.count, batch.a);  // cuBLASLt's B
  bool trans_c = false;  // never: C has unit column stride
  make_layout(lc, trans_c, cuda_data_type<TC>(), M, N, c_rs, 1, batch.count, batch.c);
  const cublasOperation_t op_b = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, op_a = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  desc.set(CUBLASLT_MATMUL_DESC_TRANSA, op_b, "cublasLtMatmulDescSetAttribute(TRANSA)");
  desc.set(CUBLASLT_MATMUL_DESC_TRANSB, op_a, "cublasLtMatmulDescSetAttribute(TRANSB)");
  if (bias || relu) {
    const cublasLtEpilogue_t epi =
        bias ? (relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS) : CUBLASLT_EPILOGUE_RELU;
    desc.set(CUBLASLT_MATMUL_DESC_EPILOGUE, epi, "cublasLtMatmulDescSetAttribute(EPILOGUE)");
    if (bias) {
      const void* p = bias;
      desc.set(CUBLASLT_MATMUL_DESC_BIAS_POINTER, p, "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
      const int32_t bias_type = int32_t(cuda_data_type<TC>());
      desc.set(CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, bias_type, "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");
    }
  }

  LtPreference pref;
  check_cublas(cublasLtMatmulPreferenceCreate(&pref.p), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = ctx.workspace_bytes;
  check_cublas(cublasLtMatmulPreferenceSetAttribute(pref.p, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
               "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
  cublasLtMatmulHeuristicResult_t heuristic{};
  int found = 0;
  check_cublas(cublasLtMatmulAlgoGetHeuristic(ctx.handle, desc.p, lb.p, la.p, lc.p, lc.p, pref.p, 1, &heuristic, &found),
               "cublasLtMatmulAlgoGetHeuristic");
  STRATA_CHECK(found > 0, "cuda::gemm", "got no cuBLASLt algorithm for [", M, ", ", K, "] @ [", K, ", ", N, "] x ",
               batch.count, (bias ? " with a bias" : ""), (relu ? " with relu" : ""),
               ", expected cublasLtMatmulAlgoGetHeuristic to find one");
  check_cublas(cublasLtMatmul(ctx.handle, desc.p, &alpha, B, lb.p, A, la.p, &beta, C, lc.p, C, lc.p, &heuristic.algo,
                              ctx.workspace, ctx.workspace_bytes, stream),
               "cublasLtMatmul");
}
#endif

}  // namespace detail

// ================================================================================ launcher

/// C[i] = relu?(alpha * A[i] @ B[i] + beta * C[i] + bias) for i < batch.count, on device memory
/// (see the top for T, TC, strides and the epilogue).
template <class T, class TC = T>
void gemm(int64_t M, int64_t N, int64_t K, gemm_scale_t<T> alpha,
          const T* A, int64_t a_rs, int64_t a_cs,           // A: [M, K] (+ i * batch.a)
          const T* B, int64_t b_rs, int64_t b_cs,           // B: [K, N] (+ i * batch.b)
          gemm_scale_t<T> beta, TC* C, int64_t c_rs,        // C: [M, N], unit column stride (+ i * batch.c)
          GemmBatch batch = {}, const TC* bias = nullptr,   // bias: [N] or nullptr
          bool relu = false, [[maybe_unused]] Stream stream = {}) {
  detail::gemm_check_types<T, TC>();
  STRATA_CHECK(M >= 0 && N >= 0 && K >= 0 && batch.count >= 0, "cuda::gemm", "got M=", M, " N=", N, " K=", K,
               " batch=", batch.count, ", expected sizes >= 0");
  if (M == 0 || N == 0 || batch.count == 0) return;
  detail::gemm_check_args(M, N, std::max<int64_t>(K, 1), a_rs, a_cs, b_rs, b_cs, c_rs, batch);
#if defined(STRATA_CUDA_EMULATE)
  for (int64_t i = 0; i < batch.count; ++i)
    detail::gemm_emulated<T, TC>(M, N, K, alpha, A + i * batch.a, a_rs, a_cs, B + i * batch.b, b_rs, b_cs, beta,
                                 C + i * batch.c, c_rs, bias, relu);
#else
  if (K == 0) {  // no product: C = beta * C, which needs no kernel only for beta == 0
    STRATA_CHECK(beta == gemm_scale_t<T>(0) && !bias && !relu, "cuda::gemm", "got K=0 with beta=", beta,
                 (bias ? " and a bias" : ""), ", expected beta == 0 and no epilogue (C is set to zeros)");
    for (int64_t i = 0; i < batch.count; ++i)
      for (int64_t r = 0; r < M; ++r)
        memset_async(C + i * batch.c + r * c_rs, 0, size_t(N) * sizeof(TC), stream);
    return;
  }
  constexpr int64_t kMaxBatch = 0x7fffffff;  // BATCH_COUNT is an int32
  for (int64_t i = 0; i < batch.count; i += kMaxBatch) {
    const GemmBatch part{std::min(kMaxBatch, batch.count - i), batch.a, batch.b, batch.c};
    detail::gemm_native<T, TC>(M, N, K, alpha, A + i * batch.a, a_rs, a_cs, B + i * batch.b, b_rs, b_cs, beta,
                               C + i * batch.c, c_rs, part, bias, relu, stream);
  }
#endif
}

// ================================================================================ matmul's cuda path

namespace detail {

/// Fills strata::cuda_matmul_hook: plan's products as strided batches, one cuda::gemm for each run
/// of products whose offsets in a and b step evenly (all of them for bmm and most broadcasts).
inline void cuda_matmul_impl(const Tensor& out, const Tensor& a, const Tensor& b, const strata::detail::MatmulPlan& p,
                             const Tensor& bias, bool relu) {
  const DType t = a.dtype();
  STRATA_CHECK(t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16, "matmul", "got dtype ", t,
               " on ", out.device(), ", expected float32, float64, float16 or bfloat16 (cuBLASLt)");
  const bool to_f32 = (t == DType::bf16 || t == DType::f16) && out.dtype() == DType::f32;  // the autocast product
  STRATA_CHECK(b.dtype() == t && (out.dtype() == t || to_f32), "matmul", "got dtypes ", t, " @ ", b.dtype(), " -> ",
               out.dtype(), ", expected the same dtype (or float32 out for bfloat16/float16)");
  STRATA_CHECK(!bias.defined() || (bias.dtype() == out.dtype() && bias.dim() == 1 && bias.size(0) == p.n &&
                                   bias.device() == out.device()),
               "matmul", "got bias ", (bias.defined() ? bias.shape() : Shape{}), " ",
               (bias.defined() ? bias.dtype() : out.dtype()), ", expected [", p.n, "] ", out.dtype(), " on ",
               out.device());
  STRATA_CHECK(a.device() == out.device() && b.device() == out.device(), "matmul", "got devices ", a.device(), " and ",
               b.device(), ", expected both on ", out.device());
  const Tensor bias_c = bias.defined() ? contiguous(bias) : bias;
  const cuda::DeviceGuard guard(out.device().index);  // cuBLASLt runs on the current device
  const int64_t count = int64_t(p.a_off.size()), mn = p.m * p.n;
  auto run = [&]<class T, class TC>(type_tag<T>, type_tag<TC>) {
    const T* pa = static_cast<const T*>(a.storage()->data()) + a.offset();
    const T* pb = static_cast<const T*>(b.storage()->data()) + b.offset();
    TC* pc = static_cast<TC*>(out.storage()->data()) + out.offset();
    const TC* pbias = bias_c.defined() ? static_cast<const TC*>(bias_c.storage()->data()) + bias_c.offset() : nullptr;
    for (int64_t i = 0; i < count;) {  // [i, j): offsets step by (sa, sb)
      int64_t j = i + 1;
      const int64_t sa = j < count ? p.a_off[size_t(j)] - p.a_off[size_t(i)] : 0;
      const int64_t sb = j < count ? p.b_off[size_t(j)] - p.b_off[size_t(i)] : 0;
      while (j < count && p.a_off[size_t(j)] - p.a_off[size_t(j - 1)] == sa &&
             p.b_off[size_t(j)] - p.b_off[size_t(j - 1)] == sb)
        ++j;
      gemm<T, TC>(p.m, p.n, p.k, 1, pa + p.a_off[size_t(i)], p.a_rs, p.a_cs, pb + p.b_off[size_t(i)], p.b_rs, p.b_cs, 0,
                  pc + i * mn, p.n, GemmBatch{j - i, sa, sb, mn}, pbias, relu);
      i = j;
    }
  };
  switch (t) {
    case DType::f32: run(type_tag<float>{}, type_tag<float>{}); break;
    case DType::f64: run(type_tag<double>{}, type_tag<double>{}); break;
    case DType::f16:
      if (to_f32) run(type_tag<f16>{}, type_tag<float>{});
      else run(type_tag<f16>{}, type_tag<f16>{});
      break;
    default:
      if (to_f32) run(type_tag<bf16>{}, type_tag<float>{});
      else run(type_tag<bf16>{}, type_tag<bf16>{});
  }
}

inline const bool matmul_registered = (strata::cuda_matmul_hook.fn = &cuda_matmul_impl, true);

}  // namespace detail

}  // namespace strata::cuda
