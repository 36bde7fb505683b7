// Shape and strides, and the broadcasting rules.
//
// Strides count elements, not bytes. Broadcasting follows NumPy/PyTorch: shapes are aligned at the
// right; two sizes match when equal or when one is 1; a missing leading dim acts as size 1.
//   broadcast_shapes([8, 1, 6], [7, 1]) == [8, 7, 6]
#pragma once

#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "strata/core/error.hpp"

namespace strata {

/// Sizes of a tensor's dims, outermost first. Also used for strides (in elements).
struct Shape : std::vector<int64_t> {
  using std::vector<int64_t>::vector;
  Shape(std::initializer_list<int64_t> il) : std::vector<int64_t>(il) {}
  Shape(const std::vector<int64_t>& v) : std::vector<int64_t>(v) {}  // NOLINT
  int dim() const { return int(size()); }
};
using Strides = Shape;

inline std::ostream& operator<<(std::ostream& os, const Shape& s) {
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  return os << ']';
}

inline std::string to_string(const Shape& s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

/// Number of elements (1 for a 0-dim shape).
inline int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

/// Row-major (C-contiguous) strides for a shape.
inline Strides contiguous_strides(const Shape& s) {
  Strides st(s.size());
  int64_t acc = 1;
  for (int i = int(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= s[i] > 1 ? s[i] : 1;
  }
  return st;
}

/// Turns a possibly negative dim into 0..ndim-1, or throws naming `op`.
inline int wrap_dim(int64_t d, int ndim, std::string_view op) {
  const int n = ndim > 0 ? ndim : 1;  // a 0-dim tensor accepts dim 0 and -1, like PyTorch
  STRATA_CHECK(d >= -n && d < n, op, "got dim ", d, " for a tensor with ", ndim,
               " dims, expected a dim in [", -n, ", ", n - 1, "]");
  return int(d < 0 ? d + n : d);
}

/// wrap_dim for ops that index shape[dim] (size, narrow, slice, transpose): a 0-dim tensor has none.
inline int wrap_indexed_dim(int64_t d, int ndim, std::string_view op) {
  STRATA_CHECK(ndim > 0, op, "got dim ", d, " of a 0-dim tensor, expected a tensor with at least 1 dim");
  return wrap_dim(d, ndim, op);
}

/// The broadcast shape of two shapes, or an Error naming `op` and both shapes.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, std::string_view op = "broadcast") {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    STRATA_CHECK(da == db || da == 1 || db == 1, op, "got shapes ", a, " and ", b,
                 ", expected shapes that broadcast (sizes equal or 1 at dim ", i, ")");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

}  // namespace strata
