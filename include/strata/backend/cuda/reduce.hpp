// The cuda path of the reductions in tensor/reduce.hpp: sum (and mean through its scale), amax,
// amin, and argmax/argmin (with values) along one dim, on tensors of any layout.
//
//   #include <strata/backend/cuda.hpp>   // includes this file, which fills the hooks
//   Tensor x = to(randn({64, 128}), Device::cuda());
//   Tensor s = sum(x, {0});              // tensor/reduce.hpp's sum_fwd -> cuda_sum_impl
//
// Each impl builds the CPU's reduction geometry (cpu::make_reduce_geom: kept dims -> contiguous
// outputs, reduced dims sorted and merged by input stride), copies it into the plain
// cuda::ReduceGeom, picks the device element type with dispatch_device and launches
// kernels/cuda/reduce.cuh. Accumulators as the CPU: float for f16/bf16/f32, double for f64, int64
// for integer and bool sums (which return int64). Long reductions get a workspace tensor on the
// same device for their split partials. The tensor-level checks (dims, dtypes, empty extrema) are
// done by tensor/reduce.hpp before the hook is called; these check devices and dtypes again,
// since a hook can be called directly. Kernels launch on x's device (made current for the call).
#pragma once

#include <bit>
#include <limits>
#include <type_traits>

#include "kernels/cpu/reduce.hpp"
#include "kernels/cuda/reduce.cuh"
#include "strata/backend/device_allocator.hpp"
#include "strata/tensor/tensor.hpp"  // tensor/reduce.hpp (the hooks) with everything it needs

namespace strata::detail {

static_assert(cpu::kMaxDims <= cuda::kReduceMaxDims, "cuda::ReduceGeom must hold every cpu::ReduceGeom");

/// x's reduction geometry over the masked dims, as the cuda kernels take it.
inline cuda::ReduceGeom cuda_reduce_geom(const Tensor& x, uint32_t mask) {
  const cpu::ReduceGeom c = reduce_geom(x, mask);
  cuda::ReduceGeom g;
  g.nk = c.nk;
  g.nr = c.nr;
  g.n_out = c.n_out;
  g.n_red = c.n_red;
  for (int d = 0; d < cpu::kMaxDims; ++d) {
    g.k_size[d] = c.k_size[d];
    g.k_in[d] = c.k_in[d];
    g.k_out[d] = c.k_out[d];
    g.r_size[d] = c.r_size[d];
    g.r_in[d] = c.r_in[d];
  }
  return g;
}

/// A cuda tensor's first element as S (device memory; data_ptr() refuses cuda tensors).
template <class S>
S* cuda_reduce_ptr(const Tensor& t) {
  using Raw = std::remove_const_t<S>;
  return static_cast<S*>(static_cast<Raw*>(t.storage()->data()) + t.offset());
}

/// Throws unless out (of dtype `dtype`, contiguous, n elements) and x are on the same cuda device.
inline void cuda_reduce_check(const char* op, const Tensor& out, const Tensor& x, DType dtype, int64_t n) {
  STRATA_CHECK(x.device().is_cuda() && out.device() == x.device(), op, "got x on ", x.device(), " and out on ",
               out.device(), ", expected both on the same cuda device");
  STRATA_CHECK(out.dtype() == dtype && out.is_contiguous() && out.numel() == n, op, "got out of dtype ",
               out.dtype(), " and shape ", out.shape(), ", expected a contiguous ", dtype, " tensor of ", n,
               " elements");
}

/// Runs cuda::reduce with a workspace of A on x's device when the geometry needs one.
template <class S, class A, class Out, class Op, class Post>
void cuda_run_reduce(const cuda::ReduceGeom& g, const Tensor& x, Out* out, Op op, Post post, DType acc_dtype) {
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  const int64_t ws = cuda::reduce_workspace(g);
  const Tensor workspace = ws > 0 ? Tensor::empty({ws}, acc_dtype, x.device()) : Tensor();
  cuda::reduce<S, A>(g, cuda_reduce_ptr<const S>(x), out, op, post, ws > 0 ? cuda_reduce_ptr<A>(workspace) : nullptr);
}

/// out = scale * sum of x over the masked dims; floating x keeps its dtype (f16/bf16/f32 add in
/// float, f64 in double), integers and bool add in int64 and give int64 (scale ignored).
inline void cuda_sum_impl(const Tensor& out, const Tensor& x, uint32_t mask, double scale) {
  const cuda::ReduceGeom g = cuda_reduce_geom(x, mask);
  const bool floating = is_floating(x.dtype());
  cuda_reduce_check("sum", out, x, floating ? x.dtype() : DType::i64, g.n_out);
  if (g.n_out == 0) return;
  cuda::dispatch_device(x.dtype(), "sum", [&]<class S>(type_tag<S>) {
    if constexpr (cuda::is_floating_storage<S>) {
      using A = std::conditional_t<std::is_same_v<S, double>, double, float>;
      cuda_run_reduce<S, A>(g, x, cuda_reduce_ptr<S>(out), cuda::SumOp<A>{A(0)}, cuda::ScalePost<A>{A(scale)},
                       std::is_same_v<A, double> ? DType::f64 : DType::f32);
    } else {
      cuda_run_reduce<S, int64_t>(g, x, cuda_reduce_ptr<int64_t>(out), cuda::SumOp<int64_t>{0}, cuda::IdentityPost{},
                             DType::i64);
    }
  });
}

/// out = max (kMax) or min of x over the masked dims (non-empty), same dtype; NaN propagates.
template <bool kMax>
void cuda_extremum_impl(const Tensor& out, const Tensor& x, uint32_t mask) {
  const char* op = kMax ? "amax" : "amin";
  const cuda::ReduceGeom g = cuda_reduce_geom(x, mask);
  cuda_reduce_check(op, out, x, x.dtype(), g.n_out);
  STRATA_CHECK(g.n_red > 0 || g.n_out == 0, op, "got shape ", x.shape(), " with an empty reduction, expected "
               "non-empty reduced dims");
  if (g.n_out == 0) return;
  cuda::dispatch_device(x.dtype(), op, [&]<class S>(type_tag<S>) {
    using A = cuda::compute_type<S>;
    A init;
    if constexpr (std::numeric_limits<A>::has_infinity)
      init = kMax ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::infinity();
    else
      init = kMax ? std::numeric_limits<A>::lowest() : std::numeric_limits<A>::max();
    const DType acc_dtype = x.dtype() == DType::f16 || x.dtype() == DType::bf16 ? DType::f32 : x.dtype();
    cuda_run_reduce<S, A>(g, x, cuda_reduce_ptr<S>(out), cuda::ExtremumOp<A, kMax>{init}, cuda::IdentityPost{},
                          acc_dtype);
  });
}

/// indices (int64) and, when defined, values (x's dtype) of the max (kMax) or min along the one
/// masked dim (mask 0 for a 0-dim x); first index on ties, NaN counts as the max and the min.
template <bool kMax>
void cuda_arg_extremum_impl(const Tensor& values, const Tensor& indices, const Tensor& x, uint32_t mask) {
  const char* op = kMax ? "argmax" : "argmin";
  STRATA_CHECK(std::popcount(mask) <= 1, op, "got ", std::popcount(mask), " dims to reduce, expected one");
  const cuda::ReduceGeom g = cuda_reduce_geom(x, mask);
  cuda_reduce_check(op, indices, x, DType::i64, g.n_out);
  if (values.defined()) cuda_reduce_check(op, values, x, x.dtype(), g.n_out);
  STRATA_CHECK(g.n_red > 0 || g.n_out == 0, op, "got shape ", x.shape(), " with an empty dim to reduce, "
               "expected a non-empty one");
  if (g.n_out == 0) return;
  const cuda::DeviceGuard guard(x.device().index);  // launch on x's device
  cuda::dispatch_device(x.dtype(), op, [&]<class S>(type_tag<S>) {
    cuda::arg_reduce<S, kMax>(g, cuda_reduce_ptr<const S>(x), values.defined() ? cuda_reduce_ptr<S>(values) : nullptr,
                              cuda_reduce_ptr<int64_t>(indices));
  });
}

inline const bool cuda_reduce_registered = (detail::cuda_sum_hook.fn = &cuda_sum_impl,
                                       detail::cuda_amax_hook.fn = &cuda_extremum_impl<true>,
                                       detail::cuda_amin_hook.fn = &cuda_extremum_impl<false>,
                                       detail::cuda_argmax_hook.fn = &cuda_arg_extremum_impl<true>,
                                       detail::cuda_argmin_hook.fn = &cuda_arg_extremum_impl<false>, true);

}  // namespace strata::detail
