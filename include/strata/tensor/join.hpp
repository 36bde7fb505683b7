// Joining and splitting: cat, stack, split, chunk, unbind.
//
// cat(ts, d): out.size(d) = sum_k ts[k].size(d); every other dim must match. The inputs are
// promoted to one dtype (PyTorch's lattice) and 1-D empty tensors (shape [0]) are skipped, as in
// PyTorch. The output is filled by copy_ into narrow views of it, so cat has no kernel of its own.
//   gradient: dts[k] = dout.narrow(d, offset_k, ts[k].size(d))   (in ts[k]'s dtype)
// stack(ts, d) = cat(ts[k].unsqueeze(d)), all shapes equal; its gradient comes from cat and unsqueeze.
// split / chunk / unbind return views (narrow / select), whose own gradients already scatter back.
//   split(x [5, 2], 2) -> [2, 2], [2, 2], [1, 2]      split(x, {1, 4}) -> [1, 2], [4, 2]
//   chunk(x [5, 2], 3) -> split(x, ceil(5 / 3) = 2)   unbind(x [5, 2]) -> five [2]
// Reference: torch.cat / torch.stack / torch.split / torch.chunk / torch.unbind.
#pragma once

#include <algorithm>
#include <vector>

#include "strata/tensor/tensor.hpp"  // first: it includes the ops, and with them autograd/node.hpp
#include "strata/tensor/view.hpp"

namespace strata {

namespace detail {
/// PyTorch's legacy rule: a 1-D tensor with no elements joins any cat and adds nothing.
inline bool cat_skips(const Tensor& t) { return t.dim() == 1 && t.shape()[0] == 0; }
}  // namespace detail

/// Concatenates tensors along `dim`; sizes must match in every other dim.
inline Tensor cat(const std::vector<Tensor>& ts, int64_t dim = 0) {
  STRATA_CHECK(!ts.empty(), "cat", "got an empty list, expected at least one tensor");
  DType dtype = ts[0].dtype();
  int ref = -1;  // the first input that is not skipped: it fixes the rank and the other sizes
  for (size_t k = 0; k < ts.size(); ++k) {
    STRATA_CHECK(ts[k].defined(), "cat", "got an undefined tensor (input ", k, "), expected defined tensors");
    STRATA_CHECK(ts[k].device() == ts[0].device(), "cat", "got devices ", ts[0].device(), " and ",
                 ts[k].device(), " (inputs 0 and ", k, "), expected the same device");
    dtype = promote_types(dtype, ts[k].dtype());
    if (detail::cat_skips(ts[k])) continue;
    STRATA_CHECK(ts[k].dim() > 0, "cat", "got a 0-dim tensor (input ", k,
                 "), expected at least 1 dim (use stack to join scalars)");
    if (ref < 0) ref = int(k);
  }
  if (ref < 0) ref = 0;  // all inputs are [0]: the result is [0] too
  const Tensor& r = ts[size_t(ref)];
  const int d = wrap_dim(dim, r.dim(), "cat");
  Shape shape = r.shape();
  shape[d] = 0;
  for (size_t k = 0; k < ts.size(); ++k) {
    const Tensor& t = ts[k];
    if (detail::cat_skips(t)) continue;
    bool match = t.dim() == r.dim();
    for (int i = 0; match && i < t.dim(); ++i) match = i == d || t.shape()[i] == r.shape()[i];
    STRATA_CHECK(match, "cat", "got shapes ", r.shape(), " and ", t.shape(), " (inputs ", ref, " and ", k,
                 "), expected the same number of dims and equal sizes in every dim but dim ", d);
    shape[d] += t.shape()[d];
  }

  Tensor out = Tensor::empty(shape, dtype, r.device());
  std::vector<int64_t> offsets(ts.size(), 0);
  std::vector<InputInfo> infos;
  int64_t offset = 0;
  for (size_t k = 0; k < ts.size(); ++k) {
    infos.push_back(info(ts[k]));
    if (detail::cat_skips(ts[k])) continue;
    offsets[k] = offset;
    Tensor part = narrow(out, d, offset, ts[k].shape()[d]);  // out needs no grad: a plain view
    copy_(part, ts[k]);
    offset += ts[k].shape()[d];
  }
  return record("cat_backward", out, ts, [d, offsets, infos](const Tensor& dout) {
    std::vector<Tensor> g(infos.size());
    for (size_t k = 0; k < infos.size(); ++k) {
      const InputInfo& x = infos[k];
      if (!x.requires_grad) continue;
      if (x.shape.dim() == 1 && x.shape[0] == 0) g[k] = zeros(x.shape, {.dtype = x.dtype, .device = dout.device()});
      else g[k] = to(narrow(dout, d, offsets[k], x.shape[d]), x.dtype);
    }
    return g;
  });
}

/// Joins equal-shaped tensors along a new dim `dim` (in [-(ndim+1), ndim]).
inline Tensor stack(const std::vector<Tensor>& ts, int64_t dim = 0) {
  STRATA_CHECK(!ts.empty(), "stack", "got an empty list, expected at least one tensor");
  const int d = wrap_dim(dim, ts[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(ts.size());
  for (size_t k = 0; k < ts.size(); ++k) {
    STRATA_CHECK(ts[k].shape() == ts[0].shape(), "stack", "got shapes ", ts[0].shape(), " and ", ts[k].shape(),
                 " (inputs 0 and ", k, "), expected equal shapes");
    parts.push_back(unsqueeze(ts[k], d));
  }
  return cat(parts, d);
}

/// Views of `split_size` elements along dim (the last one may be smaller).
inline std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim = 0) {
  STRATA_CHECK(x.dim() > 0, "split", "got a 0-dim tensor, expected at least 1 dim");
  const int d = wrap_indexed_dim(dim, x.dim(), "split");
  const int64_t size = x.shape()[d];
  STRATA_CHECK(split_size > 0 || (split_size == 0 && size == 0), "split", "got split_size=", split_size,
               " for dim ", d, " of shape ", x.shape(), ", expected split_size > 0");
  const int64_t n = split_size == 0 ? 1 : std::max<int64_t>((size + split_size - 1) / split_size, 1);
  std::vector<Tensor> out;
  out.reserve(size_t(n));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = i * split_size;
    out.push_back(narrow(x, d, start, std::min(split_size, size - start)));
  }
  return out;
}

/// Views with the given sizes along dim (they must add up to x.size(dim)).
inline std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim = 0) {
  STRATA_CHECK(x.dim() > 0, "split", "got a 0-dim tensor, expected at least 1 dim");
  const int d = wrap_indexed_dim(dim, x.dim(), "split");
  int64_t total = 0;
  bool nonneg = true;
  for (int64_t s : sizes) {
    total += s;
    nonneg = nonneg && s >= 0;
  }
  STRATA_CHECK(nonneg && total == x.shape()[d], "split", "got sizes ", Shape(sizes), " for dim ", d,
               " of shape ", x.shape(), ", expected sizes >= 0 that add up to ", x.shape()[d]);
  std::vector<Tensor> out;
  out.reserve(sizes.size());
  int64_t start = 0;
  for (int64_t s : sizes) {
    out.push_back(narrow(x, d, start, s));
    start += s;
  }
  return out;
}

/// `chunks` views along dim of ceil(size / chunks) elements each (fewer when they run out).
inline std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim = 0) {
  STRATA_CHECK(x.dim() > 0, "chunk", "got a 0-dim tensor, expected at least 1 dim");
  STRATA_CHECK(chunks > 0, "chunk", "got chunks=", chunks, ", expected chunks > 0");
  const int d = wrap_indexed_dim(dim, x.dim(), "chunk");
  const int64_t size = x.shape()[d];
  if (size == 0) return split(x, std::vector<int64_t>(size_t(chunks), 0), d);  // keep the count, as PyTorch
  return split(x, (size + chunks - 1) / chunks, d);
}

/// The slices of x along dim, each with that dim removed (views).
inline std::vector<Tensor> unbind(const Tensor& x, int64_t dim = 0) {
  STRATA_CHECK(x.dim() > 0, "unbind", "got a 0-dim tensor, expected at least 1 dim");
  const int d = wrap_indexed_dim(dim, x.dim(), "unbind");
  std::vector<Tensor> out;
  out.reserve(size_t(x.shape()[d]));
  for (int64_t i = 0; i < x.shape()[d]; ++i) out.push_back(select(x, d, i));
  return out;
}

}  // namespace strata
