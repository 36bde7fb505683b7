// softmax and log_softmax over one dim.
//
//   softmax(x)_k     = exp(x_k - m) / sum_j exp(x_j - m),  m = max_j x_j (stable for any x)
//   log_softmax(x)_k = x_k - m - log sum_j exp(x_j - m)
//   backward (y the output, dout the incoming gradient, sums over the softmax dim):
//   softmax:     dx = y * (dout - sum(dout * y))
//   log_softmax: dx = dout - exp(y) * sum(dout)
// Any dim (negative counts from the end), any strides (a strided input is made contiguous), the
// floating dtypes (f16/bf16 computed in float). The backward is one fused kernel, not a chain of ops.
// Kernels and reference loops: kernels/cpu/softmax.hpp; on cuda tensors kernels/cuda/softmax.cuh
// through cuda_softmax_fwd_hook / cuda_softmax_bwd_hook (filled by backend/cuda/softmax.hpp).
#pragma once

#include "kernels/cpu/softmax.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/reduce.hpp"

namespace strata {

namespace detail {
/// The cuda kernels' calls, on contiguous [outer, n, inner] tensors of one floating dtype and device:
/// y = softmax/log_softmax(x); dx from dout and the forward's y.
inline CudaHook<void(const Tensor& x, const Tensor& y, int64_t outer, int64_t n, int64_t inner, bool log)>
    cuda_softmax_fwd_hook{"softmax"};
inline CudaHook<void(const Tensor& dout, const Tensor& y, const Tensor& dx, int64_t outer, int64_t n, int64_t inner,
                     bool log)>
    cuda_softmax_bwd_hook{"softmax_backward"};

/// [outer, n, inner] sizes of x around dim d (a 0-dim tensor is one row of one element).
inline void softmax_sizes(const Shape& s, int d, int64_t& outer, int64_t& n, int64_t& inner) {
  outer = 1, n = 1, inner = 1;
  for (int i = 0; i < s.dim(); ++i) (i < d ? outer : i == d ? n : inner) *= s[i];
}
}  // namespace detail

/// softmax (log = false) or log_softmax (log = true) of x over dim d (already wrapped); no autograd.
inline Tensor softmax_fwd(const Tensor& x, int d, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  detail::check_floating(x, name);
  const Tensor xc = contiguous(detach(x));
  Tensor y = Tensor::empty(x.shape(), x.dtype(), x.device());
  int64_t outer, n, inner;
  detail::softmax_sizes(x.shape(), d, outer, n, inner);
  if (x.device().is_cuda()) {
    detail::cuda_softmax_fwd_hook(xc, y, outer, n, inner, log);
    return y;
  }
  dispatch_float(x.dtype(), name, [&]<class T>(type_tag<T>) {
    cpu::softmax_fwd_kernel<T>(xc.data_ptr<T>(), y.data_ptr<T>(), outer, n, inner, log);
  });
  return y;
}

/// dx from dout and the forward output y over dim d.
inline Tensor softmax_bwd(const Tensor& dout, const Tensor& y, int d, bool log) {
  const char* name = log ? "log_softmax_backward" : "softmax_backward";
  STRATA_CHECK(dout.shape() == y.shape(), name, "got dout of shape ", dout.shape(), " for an output of shape ",
               y.shape(), ", expected equal shapes");
  const Tensor dc = contiguous(to(detach(dout), y.dtype())), yc = contiguous(y);
  Tensor dx = Tensor::empty(y.shape(), y.dtype(), y.device());
  int64_t outer, n, inner;
  detail::softmax_sizes(y.shape(), d, outer, n, inner);
  if (y.device().is_cuda()) {
    detail::cuda_softmax_bwd_hook(dc, yc, dx, outer, n, inner, log);
    return dx;
  }
  dispatch_float(y.dtype(), name, [&]<class T>(type_tag<T>) {
    cpu::softmax_bwd_kernel<T>(dc.data_ptr<T>(), yc.data_ptr<T>(), dx.data_ptr<T>(), outer, n, inner, log);
  });
  return dx;
}

namespace detail {
inline Tensor softmax_op(const Tensor& x, int64_t dim, bool log) {
  const int d = reduce_dim(x, dim, log ? "log_softmax" : "softmax");
  Tensor y = softmax_fwd(x, d, log);
  const Saved yd = y;
  return record(log ? "log_softmax_backward" : "softmax_backward", y, {x},
                [yd, d, log](const Tensor& dout) { return std::vector{softmax_bwd(dout, yd, d, log)}; });
}
}  // namespace detail

/// exp(x) / sum(exp(x)) over `dim`, computed stably.
inline Tensor softmax(const Tensor& x, int64_t dim) { return detail::softmax_op(x, dim, false); }
/// log(softmax(x)) over `dim`, computed stably (never log of 0 for finite x).
inline Tensor log_softmax(const Tensor& x, int64_t dim) { return detail::softmax_op(x, dim, true); }

inline Tensor Tensor::softmax(int64_t dim) const { return strata::softmax(*this, dim); }
inline Tensor Tensor::log_softmax(int64_t dim) const { return strata::log_softmax(*this, dim); }

}  // namespace strata
