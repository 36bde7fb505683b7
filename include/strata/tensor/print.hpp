// Printing a Tensor the way PyTorch does: `std::cout << x` and `to_string(x)`.
//
//   tensor([[ 1.0000, -2.5000],
//           [ 3.0000,  4.0000]], dtype=float64, requires_grad=True)
//
// Contract: the same text as PyTorch 1.13's repr (torch/_tensor_str.py with the default print
// options: precision 4, threshold 1000, edgeitems 3, linewidth 80), except that dtypes are named
// without the `torch.` prefix and grad_fn shows the Node's name (`grad_fn=<mul_backward>`).
//   - floats: one formatter for the whole tensor. All shown values integral -> "1." style;
//     else 4 decimals fixed; scientific ("1.0000e+10") when max/min of the nonzero finite |x| > 1000,
//     max >= 1e8 (strictly: > 1e8), or (non-integral only) min < 1e-4. Right-aligned to one width.
//   - integers and bools print as "3" and "True"; f16/bf16 print as their float values.
//   - numel > 1000: each dim longer than 6 shows its first and last 3 entries around "...".
//   - suffixes: dtype unless float32/int64/bool; requires_grad=True on leaves, grad_fn=<name> on
//     non-leaves; empty tensors add size=(...) (unless 1-d) and their dtype unless float32.
#pragma once

#include <cmath>
#include <cstdio>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

#include "strata/tensor/tensor.hpp"  // first: it includes the ops, and with them autograd/node.hpp
#include "strata/autograd/node.hpp"
#include "strata/tensor/to_device.hpp"

namespace strata {

namespace detail {

inline constexpr int64_t kPrintThreshold = 1000, kPrintEdge = 3, kPrintLineWidth = 80;

/// One element, read through strides: floats as double, integers and bools as int64.
struct PrintValue {
  double f = 0;
  int64_t i = 0;
};

inline PrintValue print_read(const Tensor& t, int64_t off) {
  PrintValue v;
  dispatch_all(t.dtype(), "print", [&]<class T>(type_tag<T>) {
    const T x = static_cast<const T*>(t.storage()->data())[t.offset() + off];
    if constexpr (std::is_same_v<T, f16> || std::is_same_v<T, bf16> || std::is_floating_point_v<T>)
      v.f = double(compute_t<T>(x));
    else
      v.i = int64_t(x);
  });
  return v;
}

/// Indices shown along a dim of size n: all, or the 3 first and 3 last (-1 marks the "...").
inline std::vector<int64_t> print_indices(int64_t n, bool summarize) {
  std::vector<int64_t> idx;
  if (summarize && n > 2 * kPrintEdge) {
    for (int64_t i = 0; i < kPrintEdge; ++i) idx.push_back(i);
    idx.push_back(-1);
    for (int64_t i = n - kPrintEdge; i < n; ++i) idx.push_back(i);
  } else {
    for (int64_t i = 0; i < n; ++i) idx.push_back(i);
  }
  return idx;
}

/// Calls fn(storage offset) for every shown element, in row-major order.
template <class F>
void print_visit(const Tensor& t, bool summarize, int d, int64_t off, F& fn) {
  if (d == t.dim()) return fn(off);
  for (int64_t i : print_indices(t.shape()[d], summarize))
    if (i >= 0) print_visit(t, summarize, d + 1, off + i * t.strides()[d], fn);
}

inline std::string print_fmt(const char* fmt, double v) {
  char buf[512];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

/// PyTorch's _Formatter: picks int/fixed/scientific mode and one width from the shown values.
struct PrintFormatter {
  bool floating = false, is_bool = false, int_mode = true, sci_mode = false;
  size_t width = 1;

  PrintFormatter(const Tensor& t, bool summarize)
      : floating(t.is_floating_point()), is_bool(t.dtype() == DType::b8) {
    std::vector<double> vals;  // floats: the nonzero finite ones
    auto collect = [&](int64_t off) {
      const PrintValue v = print_read(t, off);
      if (!floating) width = std::max(width, raw(v).size());
      else if (std::isfinite(v.f) && v.f != 0) vals.push_back(v.f);
    };
    print_visit(t, summarize, 0, 0, collect);
    if (!floating || vals.empty()) return;
    double lo = INFINITY, hi = 0;
    for (double v : vals) {
      lo = std::min(lo, std::abs(v));
      hi = std::max(hi, std::abs(v));
      if (v != std::ceil(v)) int_mode = false;
    }
    sci_mode = hi / lo > 1000.0 || hi > 1.0e8 || (!int_mode && lo < 1.0e-4);
    for (double v : vals) {
      const size_t w = sci_mode ? print_fmt("%.4e", v).size() : int_mode ? print_fmt("%.0f", v).size() + 1
                                                                        : print_fmt("%.4f", v).size();
      width = std::max(width, w);
    }
  }

  /// The element's text before padding.
  std::string raw(const PrintValue& v) const {
    if (!floating) return is_bool ? (v.i ? "True" : "False") : std::to_string(v.i);
    if (std::isnan(v.f)) return "nan";  // Python never prints "-nan"
    if (std::isinf(v.f)) return v.f > 0 ? "inf" : "-inf";
    if (sci_mode) return print_fmt("%.4e", v.f);
    if (int_mode) return print_fmt("%.0f", v.f) + ".";
    return print_fmt("%.4f", v.f);
  }

  std::string format(const PrintValue& v) const {
    std::string s = raw(v);
    return s.size() < width ? std::string(width - s.size(), ' ') + s : s;
  }
};

/// _tensor_str_with_formatter: the bracketed body of dims d.. at storage offset `off`.
inline void print_body(std::string& out, const Tensor& t, const PrintFormatter& f, bool summarize, int d,
                       int64_t off, int64_t indent) {
  const int rest = t.dim() - d;
  if (rest == 0) {
    out += f.format(print_read(t, off));
    return;
  }
  const std::vector<int64_t> idx = print_indices(t.shape()[d], summarize);
  out += '[';
  if (rest == 1) {  // _vector_str: wrap at the line width
    const int64_t per_line = std::max<int64_t>(1, (kPrintLineWidth - indent) / int64_t(f.width + 2));
    for (size_t k = 0; k < idx.size(); ++k) {
      if (k) out += k % size_t(per_line) ? ", " : ",\n" + std::string(size_t(indent + 1), ' ');
      out += idx[k] < 0 ? std::string(" ...") : f.format(print_read(t, off + idx[k] * t.strides()[d]));
    }
  } else {
    const std::string sep = "," + std::string(size_t(rest - 1), '\n') + std::string(size_t(indent + 1), ' ');
    for (size_t k = 0; k < idx.size(); ++k) {
      if (k) out += sep;
      if (idx[k] < 0) out += "...";
      else print_body(out, t, f, summarize, d + 1, off + idx[k] * t.strides()[d], indent + 1);
    }
  }
  out += ']';
}

/// Python's str(tuple(shape)): "(0, 3)", "(0,)".
inline std::string print_tuple(const Shape& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + (s.size() == 1 ? ",)" : ")");
}

}  // namespace detail

/// PyTorch-style text of a tensor, e.g. "tensor([1., 2.], dtype=float64)".
inline std::string to_string(const Tensor& t) {
  if (!t.defined()) return "tensor(undefined)";
  const std::string prefix = "tensor(";
  const int64_t indent = int64_t(prefix.size());
  std::vector<std::string> suffixes;
  if (!t.device().is_cpu()) {
    std::ostringstream os;
    os << t.device();
    suffixes.push_back("device='" + os.str() + "'");
  }
  const std::string dtype_suffix = "dtype=" + std::string(dtype_name(t.dtype()));
  std::string body;
  if (t.numel() == 0) {
    if (t.dim() != 1) suffixes.push_back("size=" + detail::print_tuple(t.shape()));
    if (t.dtype() != DType::f32) suffixes.push_back(dtype_suffix);
    body = "[]";
  } else {
    if (t.dtype() != DType::f32 && t.dtype() != DType::i64 && t.dtype() != DType::b8)
      suffixes.push_back(dtype_suffix);
    const Tensor h = detail::copy_to_device(t, kCPU);  // t itself on the cpu; device memory is read on the host
    const bool summarize = h.numel() > detail::kPrintThreshold;
    const detail::PrintFormatter f(h, summarize);
    detail::print_body(body, h, f, summarize, 0, 0, indent);
  }
  if (t.grad_fn()) suffixes.push_back("grad_fn=<" + t.grad_fn()->name + ">");
  else if (t.requires_grad()) suffixes.push_back("requires_grad=True");

  // _add_suffixes: a suffix that would pass the line width goes on its own line
  std::string out = prefix + body;
  const size_t nl = out.rfind('\n');
  int64_t last_line = int64_t(out.size()) - (nl == std::string::npos ? -1 : int64_t(nl)) + 1;
  for (const std::string& s : suffixes) {
    if (last_line + int64_t(s.size()) + 2 > detail::kPrintLineWidth) {
      out += ",\n" + std::string(size_t(indent), ' ') + s;
      last_line = indent + int64_t(s.size());
    } else {
      out += ", " + s;
      last_line += int64_t(s.size()) + 2;
    }
  }
  return out + ")";
}

inline std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << to_string(t); }

}  // namespace strata
