// The cuda path of the index ops (tensor/index.hpp): index_select, gather, scatter_add, index_add,
// their backwards (and so nn::Embedding), and one_hot.
//
// Fills tensor/index.hpp's hooks (cuda_gather_hook, cuda_scatter_add_hook, cuda_one_hot_hook) with
// launchers of kernels/cuda/index.cuh. The tensor op has already checked shapes and dtypes and
// viewed a 1-D index of index_select/index_add with the positions' shape (stride 0 off dim), so
// here every operand is a strided view over the positions:
//   gather:      positions = out's shape; x viewed over them with stride 0 along d (the index value
//                picks x's element there), one cuda::Indexer for {out, x, index} in out's memory order.
//   scatter_add: rows = index's shape without d; one Indexer for {src, out, index} over the rows,
//                d walked inside each row by one thread, in order (deterministic, the CPU's sums).
// An out-of-range index is not read through: the kernel leaves the smallest bad position in a
// device u64, read back here (one 8-byte copy per call, which also waits for the kernel); the index
// value at that position is fetched and returned as cpu::BadIndex, and tensor/index.hpp throws the
// CPU's Error (detail::bad_index: the op, the value, the dim and its size).
// Included by <strata/backend/cuda.hpp>.
#pragma once

#include <array>
#include <string_view>
#include <type_traits>

#include "kernels/cuda/index.cuh"
#include "strata/backend/cuda/elementwise.hpp"  // cuda_ptr, cuda_indexer
#include "strata/tensor/index.hpp"

namespace strata::detail {

/// A device u64 set to cuda::kNoBadIndex (the kernels lower it to the first bad position).
inline Tensor cuda_bad_flag(Device device) {
  Tensor flag = Tensor::empty({1}, DType::i64, device);
  cuda::memset(cuda_ptr<unsigned long long>(flag), 0xff, sizeof(unsigned long long));
  return flag;
}

/// The flag's position read back (kNoBadIndex when every index was in range).
inline unsigned long long cuda_read_flag(const Tensor& flag) {
  unsigned long long pos = 0;
  cuda::memcpy(&pos, cuda_ptr<const unsigned long long>(flag), sizeof(pos));
  return pos;
}

/// The index value at element offset `off` of the index tensor, as int64.
inline int64_t cuda_index_value(const Tensor& index, int64_t off, std::string_view op) {
  return dispatch_index(index.dtype(), op, [&]<class I>(type_tag<I>) {
    I v{};
    cuda::memcpy(&v, cuda_ptr<const I>(index) + off, sizeof(I));
    return int64_t(v);
  });
}

/// cuda_gather_hook's implementation: out[p] = x[p with p[d] := index[p]] over out's shape.
inline cpu::BadIndex cuda_gather_impl(std::string_view op, const Tensor& out, const Tensor& x, int d,
                                      const Tensor& index) {
  const cuda::DeviceGuard guard(out.device().index);  // launch on the tensors' device
  Strides xs = x.strides();
  xs[size_t(d)] = 0;  // along d the index value picks x's element
  const Tensor xv = x.as_strided_(out.shape(), xs, x.offset());
  const Tensor flag = cuda_bad_flag(out.device());
  const cuda::GatherGeom g{.pos = cuda_indexer<3>(out, {&xv, &index}, op),
                           .indexed_step = x.strides()[size_t(d)],
                           .indexed_size = x.shape()[size_t(d)],
                           .bad = cuda_ptr<unsigned long long>(flag)};
  cuda::dispatch_device(x.dtype(), op, [&]<class S>(type_tag<S>) {
    dispatch_index(index.dtype(), op, [&]<class I>(type_tag<I>) {
      cuda::index_gather<S, I>(g, cuda_ptr<S>(out), cuda_ptr<const S>(x), cuda_ptr<const I>(index));
    });
  });
  const unsigned long long pos = cuda_read_flag(flag);
  if (pos == cuda::kNoBadIndex) return {};
  int64_t off[3];
  g.pos.offsets(int64_t(pos), off);
  return {true, cuda_index_value(index, off[2], op)};
}

/// cuda_scatter_add_hook's implementation: out[p with p[d] := index[p]] += src[p] over index's shape.
inline cpu::BadIndex cuda_scatter_add_impl(std::string_view op, const Tensor& out, int d, const Tensor& index,
                                           const Tensor& src) {
  const cuda::DeviceGuard guard(out.device().index);  // launch on the tensors' device
  // the rows: index's positions without d, each operand with its own strides there
  Shape rows;
  std::array<Strides, 3> st;
  const std::array<const Tensor*, 3> ts{&src, &out, &index};
  for (int k = 0; k < index.dim(); ++k) {
    if (k == d) continue;
    rows.push_back(index.shape()[size_t(k)]);
    for (size_t q = 0; q < 3; ++q) st[q].push_back(ts[q]->strides()[size_t(k)]);
  }
  const Tensor sv = src.as_strided_(rows, st[0], src.offset()), ov = out.as_strided_(rows, st[1], out.offset()),
               iv = index.as_strided_(rows, st[2], index.offset());
  const Tensor flag = cuda_bad_flag(out.device());
  const cuda::ScatterGeom g{.rows = cuda_indexer<3>(sv, {&ov, &iv}, op),
                            .n = index.shape()[size_t(d)],
                            .dense_step = src.strides()[size_t(d)],
                            .index_step = index.strides()[size_t(d)],
                            .indexed_step = out.strides()[size_t(d)],
                            .indexed_size = out.shape()[size_t(d)],
                            .bad = cuda_ptr<unsigned long long>(flag)};
  cuda::dispatch_device(out.dtype(), op, [&]<class S>(type_tag<S>) {
    if constexpr (std::is_same_v<S, bool>) {
      bad_dtype(op, out.dtype(), "a numeric dtype (not bool)");  // the CPU's dispatch_numeric message
    } else {
      dispatch_index(index.dtype(), op, [&]<class I>(type_tag<I>) {
        cuda::index_scatter_add<S, I>(g, cuda_ptr<S>(out), cuda_ptr<const S>(src), cuda_ptr<const I>(index));
      });
    }
  });
  const unsigned long long pos = cuda_read_flag(flag);
  if (pos == cuda::kNoBadIndex) return {};
  const int64_t row = int64_t(pos) / g.n, j = int64_t(pos) % g.n;
  int64_t off[3];
  g.rows.offsets(row, off);
  return {true, cuda_index_value(index, off[2] + j * g.index_step, op)};
}

/// cuda_one_hot_hook's implementation: out [*labels.shape, C] int64 from contiguous, checked labels.
inline void cuda_one_hot_impl(const Tensor& labels, const Tensor& out) {
  STRATA_CHECK(labels.device() == out.device() && labels.is_contiguous() && out.is_contiguous(), "one_hot",
               "got labels on ", labels.device(), " and the output on ", out.device(),
               ", expected one device and contiguous tensors");
  const cuda::DeviceGuard guard(out.device().index);  // launch on the tensors' device
  dispatch_index(labels.dtype(), "one_hot", [&]<class I>(type_tag<I>) {
    cuda::one_hot<I>(labels.numel(), cuda_ptr<const I>(labels), out.shape().back(), cuda_ptr<int64_t>(out));
  });
}

inline const bool cuda_index_registered = [] {
  cuda_gather_hook.fn = &cuda_gather_impl;
  cuda_scatter_add_hook.fn = &cuda_scatter_add_impl;
  cuda_one_hot_hook.fn = &cuda_one_hot_impl;
  return true;
}();

}  // namespace strata::detail
