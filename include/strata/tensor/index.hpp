// Indexing ops: index_select, gather, scatter_add, index_add, one_hot, masked_fill.
//
// PyTorch semantics, with d = dim and p running over the index's positions:
//   index_select(x, d, index [n]):  out.size(d) = n,  out[..., j, ...] = x[..., index[j], ...]
//       dx = index_add(zeros_like(x), d, index, dout)          (repeated indices accumulate)
//   gather(x, d, index):            out[p] = x[p with p[d] := index[p]],  out.shape = index.shape
//       index.dim() == x.dim(), index.size(k) <= x.size(k) for k != d
//       dx = scatter_add(zeros_like(x), d, index, dout)
//   scatter_add(x, d, index, src):  out = x.clone(); out[p with p[d] := index[p]] += src[p]
//       index.size(k) <= src.size(k) for every k, <= x.size(k) for k != d; src.dtype == x.dtype
//       dx = dout, dsrc = gather(dout, d, index) (zero where src is larger than index)
//   index_add(x, d, index [n], src): out = x.clone(); out[..., index[j], ...] += src[..., j, ...]
//       dx = dout, dsrc = index_select(dout, d, index)
//   one_hot(labels, C):             int64 [*labels.shape, C], 1 at each label; no gradient
//   masked_fill(x, mask, v):        where(mask, v, x) in x's dtype, mask broadcast; dx = dout where !mask
// Index tensors are int64 or int32 (any strides); values must lie in [0, size) (no negative wrap,
// as in PyTorch), else Error naming the op, the value and the size. Kernels: kernels/cpu/index.hpp;
// on cuda tensors the hooks below run kernels/cuda/index.cuh (include <strata/backend/cuda.hpp>;
// glue in backend/cuda/index.hpp), which give the CPU's results bit for bit and the same Errors.
// one_hot on cuda reads the labels on the host (to check them and to count the classes, as the
// CPU does) and writes the one-hot rows with a device kernel.
#pragma once

#include <algorithm>
#include <limits>

#include "strata/tensor/tensor.hpp"  // first: it includes the ops, and with them autograd/node.hpp
#include "strata/tensor/binary.hpp"
#include "strata/tensor/detail/cuda_hook.hpp"
#include "strata/tensor/to_device.hpp"
#include "kernels/cpu/index.hpp"

namespace strata {

namespace detail {

/// The cuda paths (filled by backend/cuda/index.hpp): gather_into, scatter_add_into, one_hot's rows.
inline CudaHook<cpu::BadIndex(std::string_view op, const Tensor& out, const Tensor& x, int d, const Tensor& index)>
    cuda_gather_hook{"gather"};
inline CudaHook<cpu::BadIndex(std::string_view op, const Tensor& out, int d, const Tensor& index, const Tensor& src)>
    cuda_scatter_add_hook{"scatter_add"};
inline CudaHook<void(const Tensor& labels, const Tensor& out)> cuda_one_hot_hook{"one_hot"};

/// Calls f(type_tag<I>{}) for an index dtype (int64, int32); others throw naming `op`.
template <class F>
decltype(auto) dispatch_index(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::i64: return f(type_tag<int64_t>{});
    case DType::i32: return f(type_tag<int32_t>{});
    default: bad_dtype(op, t, "an index dtype (int64 or int32)");
  }
}
inline void check_index_dtype(const Tensor& index, std::string_view op) {
  STRATA_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op, "got an index of dtype ",
               index.dtype(), ", expected int64 or int32");
}

/// The kernel loop over positions `pos` along dim d for {dense, indexed, index} (strides of each
/// are read for the dims of `pos`; the tensors may be larger than `pos` in any dim but d).
inline cpu::IndexLoop index_loop(const Shape& pos, int d, const Tensor& dense, const Tensor& indexed,
                                 const Tensor& index) {
  const std::array<const Tensor*, 3> ts{&dense, &indexed, &index};
  Shape rows;
  std::array<Strides, 3> st;
  for (int k = 0; k < pos.dim(); ++k) {
    if (k == d) continue;
    rows.push_back(pos[k]);
    for (int q = 0; q < 3; ++q) st[q].push_back(ts[q]->strides()[k] * ts[q]->element_size());
  }
  cpu::IndexLoop L;
  L.rows = cpu::make_loop<3>(rows.dim(), rows.data(), {st[0].data(), st[1].data(), st[2].data()});
  L.n = pos[d];
  L.dense_step = dense.strides()[d] * dense.element_size();
  L.index_step = index.strides()[d] * index.element_size();
  L.indexed_step = indexed.strides()[d] * indexed.element_size();
  L.indexed_size = indexed.shape()[d];
  return L;
}

[[noreturn]] inline void bad_index(std::string_view op, int64_t value, int d, const Tensor& indexed) {
  fail(op, "got index ", value, " for dim ", d, " of size ", indexed.shape()[d], " (input shape ",
       indexed.shape(), "), expected indices in [0, ", indexed.shape()[d], ")");
}

inline void check_index_devices(std::string_view op, const Tensor& a, const Tensor& b, const Tensor& index) {
  STRATA_CHECK(a.device() == b.device() && index.device() == a.device(), op, "got tensors on ", a.device(), " and ",
               b.device(), " with an index on ", index.device(), ", expected one device");
}

/// out[p] = x[p with p[d] := index[p]] for p over out's shape (index viewed with out's shape).
inline void gather_into(std::string_view op, Tensor& out, const Tensor& x, int d, const Tensor& index) {
  check_index_devices(op, x, out, index);
  if (out.device().is_cuda()) {
    const cpu::BadIndex bad = cuda_gather_hook(op, out, x, d, index);
    if (bad.found) bad_index(op, bad.value, d, x);
    return;
  }
  const cpu::IndexLoop L = index_loop(out.shape(), d, out, x, index);
  const cpu::BadIndex bad = dispatch_all(x.dtype(), op, [&]<class T>(type_tag<T>) {
    return dispatch_index(index.dtype(), op, [&]<class I>(type_tag<I>) {
      return cpu::gather_kernel<T, I>(L, out.data_ptr<T>(), x.data_ptr<T>(), index.data_ptr<I>());
    });
  });
  if (bad.found) bad_index(op, bad.value, d, x);
}

/// out[p with p[d] := index[p]] += src[p] for p over index's shape, in place.
inline void scatter_add_into(std::string_view op, Tensor& out, int d, const Tensor& index, const Tensor& src) {
  check_index_devices(op, out, src, index);
  if (out.device().is_cuda()) {
    const cpu::BadIndex bad = cuda_scatter_add_hook(op, out, d, index, src);
    out.storage()->bump_version();
    if (bad.found) bad_index(op, bad.value, d, out);
    return;
  }
  const cpu::IndexLoop L = index_loop(index.shape(), d, src, out, index);
  const cpu::BadIndex bad = dispatch_numeric(out.dtype(), op, [&]<class T>(type_tag<T>) {
    return dispatch_index(index.dtype(), op, [&]<class I>(type_tag<I>) {
      return cpu::scatter_add_kernel<T, I>(L, out.data_ptr<T>(), src.data_ptr<T>(), index.data_ptr<I>());
    });
  });
  out.storage()->bump_version();
  if (bad.found) bad_index(op, bad.value, d, out);
}

/// A 1-D (or 0-dim) index viewed with `shape`: its values along d, repeated (stride 0) elsewhere.
inline Tensor index_along(const Tensor& index, const Shape& shape, int d) {
  Strides st(shape.size(), 0);
  st[d] = index.dim() ? index.strides()[0] : 0;
  return index.as_strided_(shape, st, index.offset());
}

inline void check_index_1d(const Tensor& index, std::string_view op) {
  check_index_dtype(index, op);
  STRATA_CHECK(index.dim() <= 1, op, "got an index of shape ", index.shape(), ", expected a 1-D index");
}

}  // namespace detail

// ---------------------------------------------------------------- index_select / index_add

/// out = x with x.size(d) replaced by index.numel(): out[..., j, ...] = x[..., index[j], ...].
inline Tensor index_select_fwd(const Tensor& x, int d, const Tensor& index) {
  Shape s = x.shape();
  s[d] = index.numel();
  Tensor out = Tensor::empty(s, x.dtype(), x.device());
  detail::gather_into("index_select", out, x, d, detail::index_along(index, s, d));
  return out;
}

/// out += src with src's slice j added at out's slice index[j] along d (in place, not recorded).
inline Tensor& index_add_fwd_(Tensor& out, int d, const Tensor& index, const Tensor& src) {
  detail::scatter_add_into("index_add", out, d, detail::index_along(index, src.shape(), d), src);
  return out;
}

/// dx of index_select: dout's slices summed into zeros at the indexed positions.
inline Tensor index_select_bwd(const Tensor& dout, const Shape& x_shape, int d, const Tensor& index) {
  Tensor dx = zeros(x_shape, options_of(dout));
  return index_add_fwd_(dx, d, index, dout);
}

/// Picks the slices `index` (1-D, int64/int32) of x along dim.
inline Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index) {
  detail::check_index_1d(index, "index_select");
  if (x.dim() == 0) {  // a scalar acts as [1] and stays a scalar, as in PyTorch
    STRATA_CHECK(index.numel() == 1, "index_select", "got an index of shape ", index.shape(),
                 " for a 0-dim input, expected one index");
    wrap_dim(dim, 0, "index_select");
    return reshape(index_select(reshape(x, {1}), 0, index), {});
  }
  const int d = wrap_dim(dim, x.dim(), "index_select");
  Tensor out = index_select_fwd(x, d, index);
  return record("index_select_backward", out, {x}, [x = info(x), d, idx = Saved(index)](const Tensor& dout) {
    return std::vector{to(index_select_bwd(dout, x.shape, d, idx), x.dtype)};
  });
}

/// out = x.clone() with src[..., j, ...] added to out[..., index[j], ...] (repeats accumulate).
inline Tensor index_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  detail::check_index_1d(index, "index_add");
  STRATA_CHECK(x.dim() > 0, "index_add", "got a 0-dim input, expected at least 1 dim");
  const int d = wrap_dim(dim, x.dim(), "index_add");
  Shape want = x.shape();
  want[d] = index.numel();
  STRATA_CHECK(src.shape() == want, "index_add", "got input shape ", x.shape(), ", index shape ", index.shape(),
               " and source shape ", src.shape(), ", expected source shape ", want);
  STRATA_CHECK(src.dtype() == x.dtype(), "index_add", "got input dtype ", x.dtype(), " and source dtype ",
               src.dtype(), ", expected the same dtype");
  Tensor out = detail::copy_as(x, x.dtype());
  index_add_fwd_(out, d, index, src);
  return record("index_add_backward", out, {x, src},
                [x = info(x), s = info(src), d, idx = Saved(index)](const Tensor& dout) {
    return std::vector{x.requires_grad ? to(dout, x.dtype) : Tensor(),
                       s.requires_grad ? to(index_select_fwd(dout, d, idx), s.dtype) : Tensor()};
  });
}

// ---------------------------------------------------------------- gather / scatter_add

/// out[p] = x[p with p[d] := index[p]], out.shape = index.shape.
inline Tensor gather_fwd(const Tensor& x, int d, const Tensor& index) {
  Tensor out = Tensor::empty(index.shape(), x.dtype(), x.device());
  detail::gather_into("gather", out, x, d, index);
  return out;
}

/// out[p with p[d] := index[p]] += src[p] (in place, not recorded).
inline Tensor& scatter_add_fwd_(Tensor& out, int d, const Tensor& index, const Tensor& src) {
  detail::scatter_add_into("scatter_add", out, d, index, src);
  return out;
}

/// dx of gather: dout scattered (summed) into zeros of x's shape.
inline Tensor gather_bwd(const Tensor& dout, const Shape& x_shape, int d, const Tensor& index) {
  Tensor dx = zeros(x_shape, options_of(dout));
  return scatter_add_fwd_(dx, d, index, dout);
}

namespace detail {
inline void check_gather_shapes(std::string_view op, const Tensor& x, int d, const Tensor& index,
                                const Tensor* src) {
  check_index_dtype(index, op);
  STRATA_CHECK(index.dim() == x.dim() && (!src || src->dim() == x.dim()), op, "got input shape ", x.shape(),
               " and index shape ", index.shape(), src ? " and source shape " : "", src ? src->shape() : Shape{},
               ", expected the same number of dims");
  for (int k = 0; k < x.dim(); ++k) {
    STRATA_CHECK(k == d || index.shape()[k] <= x.shape()[k], op, "got input shape ", x.shape(),
                 " and index shape ", index.shape(), ", expected index.size(", k, ") <= input.size(", k,
                 ") for every dim but dim ", d);
    STRATA_CHECK(!src || index.shape()[k] <= src->shape()[k], op, "got index shape ", index.shape(),
                 " and source shape ", src->shape(), ", expected index.size(", k, ") <= src.size(", k, ")");
  }
}
}  // namespace detail

/// Picks x's elements along dim at `index` (same number of dims as x): out[p] = x[p, p[d] := index[p]].
inline Tensor gather(const Tensor& x, int64_t dim, const Tensor& index) {
  if (x.dim() == 0 && index.dim() == 0) {  // scalars act as [1]
    wrap_dim(dim, 0, "gather");
    return reshape(gather(reshape(x, {1}), 0, reshape(index, {1})), {});
  }
  const int d = wrap_dim(dim, x.dim(), "gather");
  detail::check_gather_shapes("gather", x, d, index, nullptr);
  Tensor out = gather_fwd(x, d, index);
  return record("gather_backward", out, {x}, [x = info(x), d, idx = Saved(index)](const Tensor& dout) {
    return std::vector{to(gather_bwd(dout, x.shape, d, idx), x.dtype)};
  });
}

/// out = x.clone(); out[p with p[d] := index[p]] += src[p] for p over index's shape.
inline Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& src) {
  if (x.dim() == 0 && index.dim() == 0 && src.dim() == 0) {
    wrap_dim(dim, 0, "scatter_add");
    return reshape(scatter_add(reshape(x, {1}), 0, reshape(index, {1}), reshape(src, {1})), {});
  }
  const int d = wrap_dim(dim, x.dim(), "scatter_add");
  detail::check_gather_shapes("scatter_add", x, d, index, &src);
  STRATA_CHECK(src.dtype() == x.dtype(), "scatter_add", "got input dtype ", x.dtype(), " and source dtype ",
               src.dtype(), ", expected the same dtype");
  Tensor out = detail::copy_as(x, x.dtype());
  scatter_add_fwd_(out, d, index, src);
  return record("scatter_add_backward", out, {x, src},
                [x = info(x), s = info(src), d, idx = Saved(index)](const Tensor& dout) {
    Tensor dsrc;
    if (s.requires_grad) {
      Tensor g = gather_fwd(dout, d, idx);
      if (g.shape() == s.shape) {
        dsrc = g;
      } else {  // src is larger than index: the rest of src never reached the output
        dsrc = zeros(s.shape, options_of(g));
        Tensor region = dsrc;
        for (int k = 0; k < g.dim(); ++k) region = narrow(region, k, 0, g.shape()[k]);
        copy_(region, g);
      }
      dsrc = to(dsrc, s.dtype);
    }
    return std::vector{x.requires_grad ? to(dout, x.dtype) : Tensor(), dsrc};
  });
}

// ---------------------------------------------------------------- one_hot / masked_fill

/// int64 tensor of shape [*labels.shape, num_classes] with a 1 at each label (-1: max label + 1).
inline Tensor one_hot(const Tensor& labels, int64_t num_classes = -1) {
  STRATA_CHECK(labels.dtype() == DType::i64 || labels.dtype() == DType::i32, "one_hot", "got labels of dtype ",
               labels.dtype(), ", expected int64 (or int32)");
  STRATA_CHECK(num_classes >= -1, "one_hot", "got num_classes=", num_classes, ", expected -1 or >= 0");
  STRATA_CHECK(num_classes >= 0 || labels.numel() > 0, "one_hot", "got labels of shape ", labels.shape(),
               " and num_classes=-1, expected labels to infer the number of classes from");
  const Tensor l = contiguous(detach(labels));
  const Tensor host = l.device().is_cuda() ? to(l, kCPU) : l;  // read on the host: checks, class count
  Shape s = labels.shape();
  s.push_back(0);
  Tensor out;
  detail::dispatch_index(l.dtype(), "one_hot", [&]<class I>(type_tag<I>) {
    const I* p = host.data_ptr<I>();
    const int64_t n = l.numel();
    int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
    for (int64_t i = 0; i < n; ++i) {
      lo = std::min<int64_t>(lo, p[i]);
      hi = std::max<int64_t>(hi, p[i]);
    }
    const int64_t classes = num_classes >= 0 ? num_classes : hi + 1;
    STRATA_CHECK(n == 0 || (lo >= 0 && hi < classes), "one_hot", "got labels in [", lo, ", ", hi,
                 "] with num_classes=", classes, ", expected labels in [0, ", classes, ")");
    s.back() = classes;
    out = Tensor::empty(s, DType::i64, labels.device());
    if (out.device().is_cuda()) detail::cuda_one_hot_hook(l, out);
    else cpu::one_hot_kernel<I>(n, p, classes, out.data_ptr<int64_t>());
  });
  return out;
}

/// x with `value` where mask is true (mask bool, broadcast with x); keeps x's dtype.
inline Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  STRATA_CHECK(mask.dtype() == DType::b8, "masked_fill", "got a mask of dtype ", mask.dtype(), ", expected bool");
  broadcast_shapes(x.shape(), mask.shape(), "masked_fill");  // names this op in the error
  return where(mask, full({}, value, options_of(x)), x);
}

}  // namespace strata
