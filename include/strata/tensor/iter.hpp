// Glue from Tensors to the elementwise kernels: broadcast strides, the output layout and the
// coalesced loop.
//
// Layout rule (PyTorch's TensorIterator, simplified): a new output takes the strides of the first
// input that has the output's full shape when that input is non-overlapping and dense (a
// channels-last or otherwise permuted tensor), else it is contiguous. So relu(x), x + bias,
// dropout(x) of a channels-last x stay channels-last, and every op on contiguous inputs gives
// contiguous outputs exactly as before. The loop visits dims in the memory order of the operands
// (sorted by the output's strides, then the inputs'), so a dense permuted tensor is one flat row.
#pragma once

#include <array>
#include <initializer_list>

#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/detail/tensor_class.hpp"
#include "kernels/cpu/elementwise.hpp"

namespace strata {

// ---------------------------------------------------------------- the cuda path

/// The elementwise ops the cuda backend runs (kernels/cuda/elementwise.cuh's ew:: functors); each
/// CPU functor in tensor/binary.hpp and unary.hpp names its own as `cuda_op`.
enum class EwOp : uint8_t {
  add, sub, mul, div, max, min, pow, eq, ne, lt, le, gt, ge,                          // (a, b)
  neg, abs, relu, exp, log, log1p, sqrt, rsqrt, sin, cos, tanh, sigmoid, silu, gelu,  // (x)
  softplus, sign, clamp, leaky_relu,
  relu_bwd, sigmoid_bwd, tanh_bwd, silu_bwd, gelu_bwd, clamp_bwd,                     // (dout, saved)
  where,                                                                              // (cond, a, b)
};
/// The numbers an op carries (clamp's lo and hi, leaky_relu's slope).
struct EwParams {
  double p0 = 0, p1 = 0;
};

namespace detail {
/// out = op(ins...) on cuda: the inputs broadcast to out's shape, all of the op's compute dtype
/// (where's condition: bool); out of that dtype, or bool for comparisons.
inline CudaHook<void(EwOp op, EwParams p, const Tensor& out, std::initializer_list<const Tensor*> ins)>
    cuda_elementwise_hook{"elementwise"};
/// dst = src on cuda: src broadcast to dst's shape, converted to dst's dtype.
inline CudaHook<void(const Tensor& dst, const Tensor& src)> cuda_copy_hook{"copy_"};
/// Every element of t (on cuda) = value converted to t's dtype.
inline CudaHook<void(const Tensor& t, double value)> cuda_fill_hook{"fill_"};

/// An op functor's parameters (Clamp, ClampBwd: lo, hi; LeakyRelu: slope).
template <class Op>
EwParams ew_params(const Op& op) {
  if constexpr (requires { op.lo; op.hi; }) return {op.lo, op.hi};
  else if constexpr (requires { op.slope; }) return {op.slope, 0};
  else return {};
}
}  // namespace detail

/// Strides (in elements) that view `t` as `shape` by broadcasting (0 along repeated dims).
inline Strides broadcast_strides(const Tensor& t, const Shape& shape, std::string_view op) {
  const int n = int(shape.size()), m = t.dim();
  STRATA_CHECK(m <= n, op, "got shape ", t.shape(), ", expected it to broadcast to ", shape);
  Strides st(n, 0);
  for (int i = 0; i < m; ++i) {
    const int64_t size = t.shape()[i];
    const int j = n - m + i;
    STRATA_CHECK(size == shape[j] || size == 1, op, "got shape ", t.shape(),
                 ", expected it to broadcast to ", shape);
    st[j] = size == 1 ? 0 : t.strides()[i];
  }
  return st;
}

/// Whether t's elements fill a block of memory exactly once in some order of its dims (a
/// permutation of a contiguous layout, like channels-last); size-1 dims are ignored.
inline bool is_non_overlapping_and_dense(const Tensor& t) {
  if (t.numel() <= 1) return true;
  std::array<int, cpu::kMaxDims> order{};
  int n = 0;
  for (int d = 0; d < t.dim() && n < cpu::kMaxDims; ++d)
    if (t.shape()[d] != 1) order[n++] = d;
  if (n == 0) return true;
  std::sort(order.begin(), order.begin() + n, [&](int a, int b) { return t.strides()[a] < t.strides()[b]; });
  int64_t expect = 1;
  for (int i = 0; i < n; ++i) {
    if (t.strides()[order[i]] != expect) return false;
    expect *= t.shape()[order[i]];
  }
  return true;
}

namespace detail {
/// A new output of `shape` for an elementwise op over `inputs`, laid out by the rule in the file
/// comment (the first full-shape input decides).
inline Tensor empty_output(const Shape& shape, DType dtype, Device device,
                           std::initializer_list<const Tensor*> inputs) {
  for (const Tensor* t : inputs) {
    if (t->shape() != shape) continue;
    if (!t->is_contiguous() && is_non_overlapping_and_dense(*t))
      return Tensor::empty_strided(shape, t->strides(), dtype, device);
    break;
  }
  return Tensor::empty(shape, dtype, device);
}
}  // namespace detail

/// The kernel loop for `out` and its inputs (broadcast to out's shape), dims in memory order.
template <int N>
cpu::StridedLoop<N> make_loop(const std::array<const Tensor*, N>& ts, std::string_view op) {
  for (const Tensor* t : ts) t->check_cpu(op);  // the elementwise ops' kernels are CPU kernels
  const Shape& shape = ts[0]->shape();
  const int nd = int(shape.size());
  std::array<Strides, N> st;
  for (int k = 0; k < N; ++k) {
    st[k] = k == 0 ? ts[0]->strides() : broadcast_strides(*ts[k], shape, op);
    for (auto& s : st[k]) s *= ts[k]->element_size();
  }
  // dims outermost first in memory order: insertion sort (stable) where dim a goes inside dim b
  // when the first operand with both strides nonzero and different has stride(a) < stride(b)
  // (PyTorch's reorder_dimensions); size-1 dims are left out, they move no pointer
  std::vector<int> perm;
  perm.reserve(size_t(nd));
  for (int d = 0; d < nd; ++d)
    if (shape[d] != 1) perm.push_back(d);
  auto inner_of = [&](int a, int b) {  // true when dim a should be iterated inside dim b
    for (int k = 0; k < N; ++k) {
      const int64_t sa = st[k][a], sb = st[k][b];
      if (sa == 0 || sb == 0 || sa == sb) continue;
      return sa < sb;
    }
    return false;
  };
  for (size_t i = 1; i < perm.size(); ++i)
    for (size_t j = i; j > 0 && inner_of(perm[j - 1], perm[j]); --j) std::swap(perm[j - 1], perm[j]);
  Shape ps(perm.size());
  std::array<Strides, N> pst;
  std::array<const int64_t*, N> ptrs;
  for (size_t i = 0; i < perm.size(); ++i) ps[i] = shape[perm[i]];
  for (int k = 0; k < N; ++k) {
    pst[k].resize(perm.size());
    for (size_t i = 0; i < perm.size(); ++i) pst[k][i] = st[k][perm[i]];
    ptrs[k] = pst[k].data();
  }
  return cpu::make_loop<N>(int(ps.size()), ps.data(), ptrs);
}

}  // namespace strata
