// Matrix products: matmul (PyTorch semantics), mm, bmm, dot, linear.
//
// matmul(a, b), a: [..., M, K], b: [..., K, N] -> out: [broadcast(a..., b...), M, N]
//   out[..., m, n] = sum_k a[..., m, k] * b[..., k, n]
//   A 1-D a ([K]) is treated as [1, K] and a 1-D b as [K, 1], and that 1 is removed from the result,
//   so 1-D @ 1-D is the dot product (0-d), [K] @ [..., K, N] -> [..., N], [..., M, K] @ [K] -> [..., M].
//   Batch dims broadcast like elementwise ops: [B, 1, M, K] @ [N, K, P] -> [B, N, M, P].
// dtype: promoted like binary ops. float32/float64 run cpu::gemm (kernels/cpu/gemm.hpp) straight on
//   the operands' strides (transposed and sliced views are not copied; a matrix with no unit stride
//   is); float16/bfloat16 are converted to float32, multiplied, and rounded back once; integers use
//   the reference loop with int64 sums (wrapping to the dtype like PyTorch); bool is rejected.
//   On cuda (backend/cuda/blas.hpp, cuBLASLt; the CPU kernels under the emulator) float32/float64
//   multiply in their own precision (no TF32) and float16/bfloat16 with float32 accumulation and
//   one rounding of each result; integers are rejected there.
// Gradients (per batch matrix): dA = dout @ B^T, dB = A^T @ dout, each summed over the batch dims
//   its input was broadcast along (sum_to). The 1-D promotions are views, so they need no extra rule.
// Autocast (strata/tensor/autocast.hpp): inside `Autocast ac(DType::bf16)`, float32 operands are
//   rounded to bfloat16 (as x.to(bf16) would, gradient passing straight through) and multiplied by
//   cpu::gemm_bf16 with float32 accumulation into a float32 result; the backward rounds dout to bf16
//   too, so dA = bf16(dout) @ bf16(B)^T and dB = bf16(A)^T @ bf16(dout) also run on gemm_bf16, and the
//   float32 inputs get float32 gradients. Like torch.autocast("cpu", dtype=torch.bfloat16), except
//   that the product is returned (and its gradients kept) in float32 rather than rounded to bf16.
//   Autocast(f16) does the same with float16 (multiplied in float32 on the CPU, by cuBLASLt with
//   float32 accumulation on cuda: the fp16 mixed precision of a cuda Learner).
// Reference: torch.matmul / torch.nn.functional.linear documentation; PyTorch's at::matmul, which
//   also folds the batch into M when b is a plain matrix ([B, T, K] @ [K, N] is one gemm).
#pragma once

#include <vector>

#include "strata/tensor/autocast.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/reduce.hpp"
#include "kernels/cpu/gemm.hpp"
#include "kernels/cpu/gemm_bf16.hpp"

namespace strata {

namespace detail {

/// The last two dims swapped (a view).
inline Tensor matrix_transpose(const Tensor& x) { return transpose(x, -1, -2); }

/// Whether a BLAS library (cuBLASLt) can read an [r, c] matrix with strides (rs, cs) as it is:
/// row-major (cs == 1) or column-major (rs == 1) with a leading dimension that covers the other
/// size (no overlapping or broadcast rows); a dim of size 1 may have any stride.
inline bool blas_layout(int64_t r, int64_t c, int64_t rs, int64_t cs) {
  return ((cs == 1 || c == 1) && (r == 1 || rs >= c)) || ((rs == 1 || r == 1) && (c == 1 || cs >= r));
}

/// x itself when each matrix has a unit stride in one dim (gemm packs those fast), else a copy.
/// On cuda the matrices must also be in a layout cuBLASLt reads (blas_layout), else a copy.
inline Tensor unit_stride_matrices(const Tensor& x) {
  const int64_t r = x.size(-2), c = x.size(-1);
  if (x.device().is_cuda()) return blas_layout(r, c, x.stride(-2), x.stride(-1)) ? x : contiguous(x);
  if (x.stride(-1) == 1 || x.stride(-2) == 1 || r <= 1 || c <= 1) return x;
  return contiguous(x);
}

/// The products matmul_fwd asks of a cuda kernel: for i < a_off.size(), out (contiguous) at
/// i * m * n, [m, n] with row stride n, = a at a_off[i] ([m, k], strides a_rs, a_cs) @ b at
/// b_off[i] ([k, n], strides b_rs, b_cs); offsets in elements from a's and b's first element.
struct MatmulPlan {
  int64_t m, n, k;
  int64_t a_rs, a_cs, b_rs, b_cs;
  std::vector<int64_t> a_off, b_off;
};

/// Throws unless the batch dims (all but the last two) of a and b broadcast; names both shapes.
inline Shape matmul_batch_shape(const Shape& a, const Shape& b, const char* op) {
  const Shape ba(a.begin(), a.end() - 2), bb(b.begin(), b.end() - 2);
  try {
    return broadcast_shapes(ba, bb, op);
  } catch (const Error&) {  // say it with the whole shapes, which the user passed
    fail(op, "got shapes ", a, " and ", b, ", expected batch dims (all but the last two) that broadcast");
  }
}

}  // namespace detail

/// matmul's cuda path (backend/cuda/blas.hpp fills it): out = a @ b as `plan` says, in out's dtype
/// (a's, or float32 for bfloat16/float16 a and b); bias (undefined, or [n] in out's dtype) is added to
/// every row and relu applied after it when `relu`.
inline detail::CudaHook<void(const Tensor& out, const Tensor& a, const Tensor& b, const detail::MatmulPlan& plan,
                             const Tensor& bias, bool relu)>
    cuda_matmul_hook{"matmul"};

// ---------------------------------------------------------------- forward (no autograd)

/// out[batch..., M, N] = a[..., M, K] @ b[..., K, N] for a, b with >= 2 dims (sizes checked by the
/// caller); batch dims broadcast; result in the promoted dtype, contiguous.
/// low (the autocast product; float32 = off): a and b are taken as `low` (bfloat16 or float16,
/// rounded if they are not) and multiplied with float32 accumulation into a float32 result: by
/// cpu::gemm_bf16 for bfloat16 on the CPU, in float32 for float16 on the CPU, by cuBLASLt on cuda.
inline Tensor matmul_fwd(const Tensor& a_in, const Tensor& b_in, DType low = DType::f32) {
  STRATA_CHECK(a_in.device() == b_in.device(), "matmul", "got devices ", a_in.device(), " and ",
               b_in.device(), ", expected the same device");
  const bool mixed = low != DType::f32;
  STRATA_CHECK(!mixed || low == DType::bf16 || low == DType::f16, "matmul", "got autocast dtype ", low,
               ", expected bfloat16 or float16");
  const DType t = mixed ? low : promote_types(a_in.dtype(), b_in.dtype());
  STRATA_CHECK(t != DType::b8, "matmul", "got dtypes ", a_in.dtype(), " and ", b_in.dtype(),
               ", expected numeric dtypes (not bool)");
  // CPU: multiply in float32, round once (cuda multiplies 16-bit operands with float32 accumulation)
  if (!a_in.device().is_cuda() && (t == DType::f16 || (t == DType::bf16 && !mixed))) {
    auto f32 = [&](const Tensor& x) { return to(mixed ? to(detach(x), t) : detach(x), DType::f32); };
    const Tensor r = matmul_fwd(f32(a_in), f32(b_in));
    return mixed ? r : to(r, t);  // the autocast product stays float32
  }

  const Tensor a = detail::unit_stride_matrices(to(detach(a_in), t));
  const Tensor b = detail::unit_stride_matrices(to(detach(b_in), t));
  const int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1);
  const Shape batch = detail::matmul_batch_shape(a.shape(), b.shape(), "matmul");
  Shape out_shape = batch;
  out_shape.push_back(M);
  out_shape.push_back(N);
  Tensor out = Tensor::empty(out_shape, mixed ? DType::f32 : t, a.device());
  if (out.numel() == 0) return out;

  // strides of a and b viewed as [batch..., M, K] / [batch..., K, N] (0 along broadcast dims)
  const int nb = batch.dim();
  Shape a_full = batch, b_full = batch;
  a_full.insert(a_full.end(), {M, K});
  b_full.insert(b_full.end(), {K, N});
  const Strides as = broadcast_strides(a, a_full, "matmul"), bs = broadcast_strides(b, b_full, "matmul");
  const int64_t a_rs = as[nb], a_cs = as[nb + 1], b_rs = bs[nb], b_cs = bs[nb + 1];
  int64_t nbatch = numel(batch);

  // b the same matrix for every batch and a's [batch..., M] rows evenly spaced: one gemm with
  // M' = nbatch * M (out is contiguous, so its rows are evenly spaced too)
  int64_t m_all = M;
  if (nbatch > 1) {
    bool fold = true;
    int64_t expect = a_rs * M;
    for (int d = nb - 1; d >= 0; --d) {
      if (batch[d] == 1) continue;
      fold = fold && bs[d] == 0 && as[d] == expect;
      expect *= batch[d];
    }
    if (fold) {
      m_all = nbatch * M;
      nbatch = 1;
    }
  }

  // element offsets of each batch matrix in a and b
  std::vector<int64_t> a_off(size_t(nbatch), 0), b_off(size_t(nbatch), 0);
  if (nbatch > 1) {
    std::vector<int64_t> idx(size_t(nb), 0);
    int64_t oa = 0, ob = 0;
    for (int64_t i = 0; i < nbatch; ++i) {
      a_off[size_t(i)] = oa;
      b_off[size_t(i)] = ob;
      for (int d = nb - 1; d >= 0; --d) {
        if (++idx[size_t(d)] < batch[d]) {
          oa += as[d];
          ob += bs[d];
          break;
        }
        oa -= as[d] * (batch[d] - 1);
        ob -= bs[d] * (batch[d] - 1);
        idx[size_t(d)] = 0;
      }
    }
  }

  if (out.device().is_cuda()) {
    cuda_matmul_hook(out, a, b, detail::MatmulPlan{m_all, N, K, a_rs, a_cs, b_rs, b_cs, a_off, b_off},
                     Tensor(), false);
    return out;
  }
  dispatch_numeric(t, "matmul", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, f16>) {
      return;  // converted above
    } else {
      using O = std::conditional_t<std::is_same_v<T, bf16>, float, T>;  // bf16 only when mixed
      const T* pa = a.data_ptr<T>();
      const T* pb = b.data_ptr<T>();
      O* po = out.data_ptr<O>();
      auto one = [&](int64_t i) {
        const T* ai = pa + a_off[size_t(i)];
        const T* bi = pb + b_off[size_t(i)];
        O* ci = po + i * M * N;
        if constexpr (std::is_same_v<T, bf16>)
          cpu::gemm_bf16(m_all, N, K, 1.f, ai, a_rs, a_cs, bi, b_rs, b_cs, 0.f, ci, N, 1);
        else if constexpr (std::is_floating_point_v<T>)
          cpu::gemm<T>(m_all, N, K, T(1), ai, a_rs, a_cs, bi, b_rs, b_cs, T(0), ci, N, 1);
        else
          cpu::gemm_ref<T>(m_all, N, K, T(1), ai, a_rs, a_cs, bi, b_rs, b_cs, T(0), ci, N, 1);
      };
      // many small products: one batch matrix per task (each gemm then runs single-threaded);
      // large ones: one at a time, each gemm splitting its own work across the threads
      const double work = double(M) * double(N) * double(std::max<int64_t>(K, 1));
      if (nbatch > 1 && work < double(1 << 20)) {
        const int64_t grain = std::max<int64_t>(1, int64_t(double(1 << 16) / work));
        parallel_for(0, nbatch, grain, [&](int64_t lo, int64_t hi) {
          for (int64_t i = lo; i < hi; ++i) one(i);
        });
      } else {
        for (int64_t i = 0; i < nbatch; ++i) one(i);
      }
    }
  });
  return out;
}

/// Gradients of out = a @ b (a, b with >= 2 dims) for the inputs that need one.
/// ad / bd: the inputs' values (undefined where not needed); ai / bi: what the inputs were.
/// low: the autocast product (ad, bd already bf16 or f16; float32 = off): dout is rounded to `low`
/// and both products run as matmul_fwd(..., low); the gradients come back in the inputs' dtypes
/// (float32).
inline std::vector<Tensor> matmul_bwd(const Tensor& dout_in, const Tensor& ad, const Tensor& bd,
                                      const InputInfo& ai, const InputInfo& bi, DType low = DType::f32) {
  const Tensor dout = low != DType::f32 ? to(dout_in, low) : dout_in;
  Tensor da, db;
  if (ai.requires_grad)  // dA = dout @ B^T, summed over a's broadcast batch dims
    da = detail::grad_for(matmul_fwd(dout, detail::matrix_transpose(bd), low), ai);
  if (bi.requires_grad) {
    if (bi.shape.size() == 2 && ad.dim() > 2) {  // b shared by every batch: one gemm over all rows
      const int64_t rows = numel(Shape(ad.shape().begin(), ad.shape().end() - 1));  // batch * M
      const Tensor a_rows = reshape(ad, {rows, ad.size(-1)}), dout_rows = reshape(dout, {rows, dout.size(-1)});
      db = detail::grad_for(matmul_fwd(detail::matrix_transpose(a_rows), dout_rows, low), bi);
    } else {  // dB = A^T @ dout, summed over b's broadcast batch dims
      db = detail::grad_for(matmul_fwd(detail::matrix_transpose(ad), dout, low), bi);
    }
  }
  return {da, db};
}

// ---------------------------------------------------------------- differentiable ops

namespace detail {
/// a @ b for a, b with >= 2 dims (inner sizes already checked), recorded for autograd.
inline Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  // autocast: float32 operands rounded to bf16 (or f16) once here; the rounded copies are what the
  // backward reads (they are new tensors, never modified, so they are saved without a version check)
  const DType cast = autocast_dtype();
  if ((cast == DType::bf16 || cast == DType::f16) && a.dtype() == DType::f32 && b.dtype() == DType::f32) {
    const Tensor a16 = to(detach(a), cast), b16 = to(detach(b), cast);
    Tensor out = matmul_fwd(a16, b16, cast);
    if (!any_requires_grad({a, b})) return out;
    const Tensor ad = b.requires_grad() ? a16 : Tensor(), bd = a.requires_grad() ? b16 : Tensor();
    return record(cast == DType::bf16 ? "matmul_bf16_backward" : "matmul_f16_backward", out, {a, b},
                  [ad, bd, ai = info(a), bi = info(b), cast](const Tensor& dout) {
                    return matmul_bwd(dout, ad, bd, ai, bi, cast);
                  });
  }
  Tensor out = matmul_fwd(a, b);
  if (!any_requires_grad({a, b})) return out;
  // keep only what the backward reads: b for dA, a for dB
  const Saved ad = b.requires_grad() ? Saved(a) : Saved();
  const Saved bd = a.requires_grad() ? Saved(b) : Saved();
  return record("matmul_backward", out, {a, b}, [ad, bd, ai = info(a), bi = info(b)](const Tensor& dout) {
    return matmul_bwd(dout, ad, bd, ai, bi);
  });
}
}  // namespace detail

/// Matrix product with PyTorch's rules for 1-D operands and broadcast batch dims (see the top).
inline Tensor matmul(const Tensor& a, const Tensor& b) {
  STRATA_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul", "got shapes ", a.shape(), " and ", b.shape(),
               ", expected tensors with at least 1 dim");
  const int64_t ka = a.size(-1), kb = b.dim() == 1 ? b.size(0) : b.size(-2);
  STRATA_CHECK(ka == kb, "matmul", "got shapes ", a.shape(), " and ", b.shape(), ", expected a.size(-1) == b.size(",
               b.dim() == 1 ? "0" : "-2", ") (", ka, " != ", kb, ")");
  const Tensor a2 = a.dim() == 1 ? unsqueeze(a, 0) : a;  // [K] -> [1, K]
  const Tensor b2 = b.dim() == 1 ? unsqueeze(b, 1) : b;  // [K] -> [K, 1]
  detail::matmul_batch_shape(a2.shape(), b2.shape(), "matmul");
  Tensor out = detail::matmul_nd(a2, b2);
  if (a.dim() == 1) out = squeeze(out, -2);
  if (b.dim() == 1) out = squeeze(out, -1);
  return out;
}

/// a[M, K] @ b[K, N] -> [M, N]; 2-D only.
inline Tensor mm(const Tensor& a, const Tensor& b) {
  STRATA_CHECK(a.dim() == 2 && b.dim() == 2, "mm", "got shapes ", a.shape(), " and ", b.shape(),
               ", expected 2-D tensors");
  STRATA_CHECK(a.size(1) == b.size(0), "mm", "got shapes ", a.shape(), " and ", b.shape(),
               ", expected a.size(1) == b.size(0) (", a.size(1), " != ", b.size(0), ")");
  return detail::matmul_nd(a, b);
}

/// a[B, M, K] @ b[B, K, N] -> [B, M, N]; 3-D with equal batch sizes (no broadcasting, like PyTorch).
inline Tensor bmm(const Tensor& a, const Tensor& b) {
  STRATA_CHECK(a.dim() == 3 && b.dim() == 3, "bmm", "got shapes ", a.shape(), " and ", b.shape(),
               ", expected 3-D tensors");
  STRATA_CHECK(a.size(0) == b.size(0) && a.size(2) == b.size(1), "bmm", "got shapes ", a.shape(), " and ",
               b.shape(), ", expected [B, M, K] and [B, K, N]");
  return detail::matmul_nd(a, b);
}

/// sum_k a[k] * b[k] -> 0-d; 1-D tensors of equal size.
inline Tensor dot(const Tensor& a, const Tensor& b) {
  STRATA_CHECK(a.dim() == 1 && b.dim() == 1 && a.size(0) == b.size(0), "dot", "got shapes ", a.shape(), " and ",
               b.shape(), ", expected 1-D tensors of the same size");
  return matmul(a, b);
}

namespace detail {
/// linear on cuda with the bias added in the product's epilogue (cuBLASLt's CUBLASLT_EPILOGUE_BIAS):
/// x [..., in], w [out, in], b [out], one floating dtype, in > 0. Backward: dx = dout @ w,
/// dw = dout^T @ x and db = ones[1, rows] @ dout over the rows of x (one gemm each).
inline Tensor linear_cuda_bias(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t in = w.size(1), n_out = w.size(0), rows = x.numel() / in;
  Shape out_shape = x.shape();
  out_shape.back() = n_out;
  Tensor out = Tensor::empty({rows, n_out}, x.dtype(), x.device());
  if (rows > 0) {
    const Tensor x2 = unit_stride_matrices(reshape(detach(x), {rows, in}));
    const Tensor wt = unit_stride_matrices(matrix_transpose(detach(w)));  // [in, out]
    cuda_matmul_hook(out, x2, wt,
                     MatmulPlan{rows, n_out, in, x2.stride(0), x2.stride(1), wt.stride(0), wt.stride(1), {0}, {0}},
                     detach(b), false);
  }
  out = reshape(out, out_shape);
  if (!any_requires_grad({x, w, b})) return out;
  const Saved xd = w.requires_grad() ? Saved(x) : Saved();
  const Saved wd = x.requires_grad() ? Saved(w) : Saved();
  return record("linear_backward", out, {x, w, b},
                [xd, wd, xi = info(x), wi = info(w), bi = info(b), rows, in, n_out](const Tensor& dout) {
                  const Tensor d2 = reshape(dout, {rows, n_out});
                  Tensor dx, dw, db;
                  if (xi.requires_grad) dx = reshape(matmul_fwd(d2, wd), xi.shape);
                  if (wi.requires_grad) dw = matmul_fwd(matrix_transpose(d2), reshape(xd.get(), {rows, in}));
                  if (bi.requires_grad)
                    db = reshape(matmul_fwd(ones({1, rows}, {.dtype = d2.dtype(), .device = d2.device()}), d2), {n_out});
                  return std::vector{dx, dw, db};
                });
}
}  // namespace detail

/// x[..., in] @ w[out, in]^T + b[out] -> [..., out] (PyTorch's F.linear); b may be undefined.
/// On cuda a bias of the same dtype is added by the product itself (detail::linear_cuda_bias;
/// not float64, for which cuBLASLt need not have a bias epilogue).
inline Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor()) {
  STRATA_CHECK(w.dim() == 2, "linear", "got weight shape ", w.shape(), ", expected [out_features, in_features]");
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear", "got input shape ", x.shape(),
               " and weight shape ", w.shape(), ", expected input.size(-1) == weight.size(1)");
  STRATA_CHECK(!b.defined() || (b.dim() <= 1 && (b.numel() == w.size(0) || b.numel() == 1)), "linear",
               "got bias shape ", (b.defined() ? b.shape() : Shape{}), " for weight shape ", w.shape(),
               ", expected [", w.size(0), "]");
  if (x.device().is_cuda() && b.defined() && b.dim() == 1 && b.size(0) == w.size(0) && w.size(1) > 0 &&
      is_floating(x.dtype()) && x.dtype() != DType::f64 && w.dtype() == x.dtype() && b.dtype() == x.dtype() && w.device() == x.device() &&
      b.device() == x.device() && !autocast_enabled())
    return detail::linear_cuda_bias(x, w, b);
  Tensor out = matmul(x, transpose(w, 0, 1));
  return b.defined() ? add(out, b) : out;
}

inline Tensor Tensor::matmul(const Tensor& other) const { return strata::matmul(*this, other); }

}  // namespace strata
