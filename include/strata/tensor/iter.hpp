// Glue from Tensors to the elementwise kernels: broadcast strides and the coalesced loop.
#pragma once

#include <array>

#include "strata/tensor/detail/tensor_class.hpp"
#include "kernels/cpu/elementwise.hpp"

namespace strata {

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

/// The kernel loop for `out` and its inputs (broadcast to out's shape).
template <int N>
cpu::StridedLoop<N> make_loop(const std::array<const Tensor*, N>& ts, std::string_view op) {
  const Shape& shape = ts[0]->shape();
  std::array<Strides, N> st;
  std::array<const int64_t*, N> ptrs;
  for (int k = 0; k < N; ++k) {
    st[k] = k == 0 ? ts[0]->strides() : broadcast_strides(*ts[k], shape, op);
    for (auto& s : st[k]) s *= ts[k]->element_size();
    ptrs[k] = st[k].data();
  }
  return cpu::make_loop<N>(int(shape.size()), shape.data(), ptrs);
}

}  // namespace strata
