// Views: new shapes and strides over the same storage, no copies.
//
// view reshape permute transpose t narrow slice select expand expand_as squeeze unsqueeze flatten
// movedim. Each is differentiable: the backward maps dout back to the input's shape (reshape back,
// inverse permutation, scatter into zeros for narrow/slice/select, sum over broadcast dims for
// expand). view() follows PyTorch's rule: it succeeds when the new shape can be expressed with
// strides over the old layout (always for contiguous tensors), and throws otherwise; reshape()
// copies in that case.
#pragma once

#include <algorithm>
#include <numeric>
#include <optional>

#include "strata/tensor/creation.hpp"

namespace strata {

inline Tensor sum_to(const Tensor& x, const Shape& shape);  // reduce.hpp: sums broadcast dims away
inline Tensor reshape(const Tensor& x, const Shape& shape);

namespace detail {

/// Resolves one -1 in a requested shape, checking the element count.
inline Shape infer_shape(const Shape& req, int64_t n, std::string_view op) {
  Shape out = req;
  int infer = -1;
  int64_t known = 1;
  for (int i = 0; i < out.dim(); ++i) {
    if (out[i] == -1) {
      STRATA_CHECK(infer < 0, op, "got shape ", req, ", expected at most one -1");
      infer = i;
    } else {
      STRATA_CHECK(out[i] >= 0, op, "got shape ", req, ", expected sizes >= 0 or -1");
      known *= out[i];
    }
  }
  if (infer >= 0) {
    STRATA_CHECK(known != 0 && n % known == 0, op, "got shape ", req, " for ", n,
                 " elements, expected a shape with that many elements");
    out[infer] = n / known;
  }
  STRATA_CHECK(numel(out) == n, op, "got shape ", req, " for a tensor of ", n,
               " elements, expected a shape with that many elements");
  return out;
}

/// Strides for viewing (shape, strides) as new_shape without a copy, if possible (PyTorch's
/// computeStride: walk both shapes from the right in chunks that are contiguous in memory).
inline std::optional<Strides> view_strides(const Shape& shape, const Strides& strides, const Shape& new_shape) {
  if (numel(shape) == 0 || shape.empty()) return contiguous_strides(new_shape);
  Strides ns(new_shape.size());
  int view_d = int(new_shape.size()) - 1;
  int64_t chunk_base = strides.back(), tensor_numel = 1, view_numel = 1;
  for (int d = int(shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= shape[d];
    if (d == 0 || (shape[d - 1] != 1 && strides[d - 1] != tensor_numel * chunk_base)) {
      while (view_d >= 0 && (view_numel < tensor_numel || new_shape[view_d] == 1)) {
        ns[view_d] = view_numel * chunk_base;
        view_numel *= new_shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (d > 0) {
        chunk_base = strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return std::nullopt;
  return ns;
}

/// Gradient of a view that picked `region(g)` out of a tensor of `shape`.
template <class Region>
Tensor scatter_into_zeros(const Tensor& dout, const Shape& shape, Region region) {
  Tensor g = zeros(shape, options_of(dout));
  Tensor r = region(g);
  copy_(r, dout);
  return g;
}

}  // namespace detail

/// Same data, new shape (one size may be -1); throws when the strides do not allow it.
inline Tensor view(const Tensor& x, const Shape& shape) {
  const Shape s = detail::infer_shape(shape, x.numel(), "view");
  auto st = detail::view_strides(x.shape(), x.strides(), s);
  STRATA_CHECK(st.has_value(), "view", "got a tensor of shape ", x.shape(), " and strides ", x.strides(),
               " to view as ", s, ", expected compatible strides (use reshape() to copy)");
  Tensor out = x.as_strided_(s, *st, x.offset());
  const Shape in = x.shape();
  return record("view_backward", out, {x}, [in](const Tensor& dout) { return std::vector{reshape(dout, in)}; });
}

/// view() when possible, else a contiguous copy with the new shape.
inline Tensor reshape(const Tensor& x, const Shape& shape) {
  const Shape s = detail::infer_shape(shape, x.numel(), "reshape");
  if (detail::view_strides(x.shape(), x.strides(), s)) return view(x, s);
  return view(contiguous(x), s);
}

/// Reorders dims: out.shape[i] = x.shape[dims[i]].
inline Tensor permute(const Tensor& x, const std::vector<int64_t>& dims) {
  STRATA_CHECK(int(dims.size()) == x.dim(), "permute", "got ", dims.size(), " dims for a tensor of shape ",
               x.shape(), ", expected ", x.dim());
  Shape s(dims.size());
  Strides st(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int d = wrap_dim(dims[i], x.dim(), "permute");
    STRATA_CHECK(inverse[d] < 0, "permute", "got dim ", dims[i], " twice, expected a permutation");
    inverse[d] = int64_t(i);
    s[i] = x.shape()[d];
    st[i] = x.strides()[d];
  }
  Tensor out = x.as_strided_(s, st, x.offset());
  return record("permute_backward", out, {x},
                [inverse](const Tensor& dout) { return std::vector{permute(dout, inverse)}; });
}

/// Swaps two dims.
inline Tensor transpose(const Tensor& x, int64_t d0, int64_t d1) {
  std::vector<int64_t> p(x.dim());
  std::iota(p.begin(), p.end(), 0);
  if (x.dim() == 0) {  // PyTorch allows transpose(0, 0) / (-1, -1) of a 0-dim tensor: itself
    wrap_dim(d0, 0, "transpose");
    wrap_dim(d1, 0, "transpose");
    return x;
  }
  std::swap(p[wrap_dim(d0, x.dim(), "transpose")], p[wrap_dim(d1, x.dim(), "transpose")]);
  return permute(x, p);
}

/// Elements [start, start + length) along dim.
inline Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length) {
  const int d = wrap_indexed_dim(dim, x.dim(), "narrow");
  const int64_t size = x.shape()[d];
  if (start < 0) start += size;
  STRATA_CHECK(start >= 0 && length >= 0 && start + length <= size, "narrow", "got start=", start,
               " length=", length, " on dim ", d, " of shape ", x.shape(), ", expected a range inside [0, ",
               size, ")");
  Shape s = x.shape();
  s[d] = length;
  Tensor out = x.as_strided_(s, x.strides(), x.offset() + start * x.strides()[d]);
  const Shape in = x.shape();
  return record("narrow_backward", out, {x}, [in, d, start, length](const Tensor& dout) {
    return std::vector{
        detail::scatter_into_zeros(dout, in, [&](const Tensor& g) { return narrow(g, d, start, length); })};
  });
}

/// Python-style x[start:end:step] along dim (indices clamp like Python's, negative from the end).
inline Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end, int64_t step = 1) {
  const int d = wrap_indexed_dim(dim, x.dim(), "slice");
  STRATA_CHECK(step > 0, "slice", "got step=", step, ", expected step > 0");
  const int64_t size = x.shape()[d];
  auto clampi = [size](int64_t i) { return std::clamp<int64_t>(i < 0 ? i + size : i, 0, size); };
  start = clampi(start);
  end = std::max(clampi(end), start);
  Shape s = x.shape();
  Strides st = x.strides();
  s[d] = (end - start + step - 1) / step;
  st[d] *= step;
  Tensor out = x.as_strided_(s, st, x.offset() + start * x.strides()[d]);
  const Shape in = x.shape();
  return record("slice_backward", out, {x}, [in, d, start, end, step](const Tensor& dout) {
    return std::vector{
        detail::scatter_into_zeros(dout, in, [&](const Tensor& g) { return slice(g, d, start, end, step); })};
  });
}

/// The sub-tensor at `index` along dim (that dim is removed).
inline Tensor select(const Tensor& x, int64_t dim, int64_t index) {
  const int d = wrap_indexed_dim(dim, x.dim(), "select");
  const int64_t size = x.shape()[d];
  STRATA_CHECK(index >= -size && index < size, "select", "got index ", index, " on dim ", d, " of shape ",
               x.shape(), ", expected an index in [", -size, ", ", size - 1, "]");
  if (index < 0) index += size;
  Shape s = x.shape();
  Strides st = x.strides();
  s.erase(s.begin() + d);
  st.erase(st.begin() + d);
  Tensor out = x.as_strided_(s, st, x.offset() + index * x.strides()[d]);
  const Shape in = x.shape();
  return record("select_backward", out, {x}, [in, d, index](const Tensor& dout) {
    return std::vector{
        detail::scatter_into_zeros(dout, in, [&](const Tensor& g) { return select(g, d, index); })};
  });
}

/// Repeats size-1 dims (and adds leading dims) without copying; -1 keeps a size.
inline Tensor expand(const Tensor& x, const Shape& shape) {
  STRATA_CHECK(shape.dim() >= x.dim(), "expand", "got shape ", x.shape(), " to expand to ", shape,
               ", expected at least as many dims");
  Shape s = shape;
  Strides st(shape.size(), 0);
  const int lead = shape.dim() - x.dim();
  for (int i = 0; i < shape.dim(); ++i) {
    if (i < lead) {
      STRATA_CHECK(shape[i] >= 0, "expand", "got shape ", shape, ", expected no -1 in new leading dims");
      continue;
    }
    const int64_t have = x.shape()[i - lead];
    if (s[i] == -1) s[i] = have;
    STRATA_CHECK(have == s[i] || have == 1, "expand", "got shape ", x.shape(), " to expand to ", shape,
                 ", expected sizes equal or 1 in the input at dim ", i);
    st[i] = have == s[i] ? x.strides()[i - lead] : 0;
    if (have == 1 && s[i] != 1) st[i] = 0;
  }
  Tensor out = x.as_strided_(s, st, x.offset());
  const Shape in = x.shape();
  return record("expand_backward", out, {x}, [in](const Tensor& dout) { return std::vector{sum_to(dout, in)}; });
}
inline Tensor expand_as(const Tensor& x, const Tensor& other) { return expand(x, other.shape()); }

/// Removes size-1 dims: all of them, or just `dim` if it has size 1.
inline Tensor squeeze(const Tensor& x, std::optional<int64_t> dim = std::nullopt) {
  Shape s;
  std::optional<int> d;
  if (dim) d = wrap_dim(*dim, x.dim(), "squeeze");
  for (int i = 0; i < x.dim(); ++i)
    if (x.shape()[i] != 1 || (d && *d != i)) s.push_back(x.shape()[i]);
  return view(x, s);
}

/// Inserts a size-1 dim at position dim (in [-(ndim+1), ndim]).
inline Tensor unsqueeze(const Tensor& x, int64_t dim) {
  const int d = wrap_dim(dim, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  s.insert(s.begin() + d, 1);
  return view(x, s);
}

/// Merges dims start_dim..end_dim into one.
inline Tensor flatten(const Tensor& x, int64_t start_dim = 0, int64_t end_dim = -1) {
  if (x.dim() == 0) return reshape(x, {1});
  const int a = wrap_dim(start_dim, x.dim(), "flatten"), b = wrap_dim(end_dim, x.dim(), "flatten");
  STRATA_CHECK(a <= b, "flatten", "got start_dim=", start_dim, " end_dim=", end_dim,
               ", expected start_dim <= end_dim");
  Shape s(x.shape().begin(), x.shape().begin() + a);
  int64_t m = 1;
  for (int i = a; i <= b; ++i) m *= x.shape()[i];
  s.push_back(m);
  s.insert(s.end(), x.shape().begin() + b + 1, x.shape().end());
  return reshape(x, s);
}

}  // namespace strata
