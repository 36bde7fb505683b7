// Small pieces the layers share: Size2 (an int or an (h, w) pair in a layer's config, as PyTorch's
// kernel_size=3 or kernel_size=(1, 3)) and helpers that print config values the way Python's
// repr() does, so a layer's extra_repr() reads like PyTorch's ("eps=1e-05, momentum=0.1").
#pragma once

#include <array>
#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace strata::nn {

/// A pair of sizes (height, width) that converts from one int (both equal) or from {h, w}.
struct Size2 {
  int64_t h = 0, w = 0;
  bool square = true;  // given as one int: printed as one int, as PyTorch's pooling layers do

  Size2() = default;
  Size2(int64_t v) : h(v), w(v) {}  // NOLINT: implicit, so `.k = 3` reads well
  Size2(int64_t h_, int64_t w_) : h(h_), w(w_), square(false) {}
  operator std::array<int64_t, 2>() const { return {h, w}; }  // NOLINT: what the tensor ops take
  bool operator==(const Size2& o) const { return h == o.h && w == o.w; }
  bool equals(int64_t v) const { return h == v && w == v; }
};

namespace detail {

/// A double as Python's repr() prints it: 0.1, 1.0, 1e-05, 1e+20.
inline std::string py_float(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);  // shortest round trip
  std::string s(buf, r.ptr);
  if (s == "inf" || s == "-inf" || s == "nan" || s == "-nan") return s.back() == 'f' ? s : "nan";
  const size_t e = s.find('e');
  const int exp = std::atoi(s.c_str() + e + 1);
  std::string mant = s.substr(0, e), digits;
  const bool neg = mant[0] == '-';
  for (char c : mant)
    if (c >= '0' && c <= '9') digits += c;
  std::string out = neg ? "-" : "";
  if (exp < -4 || exp >= 16) {  // Python's switch to exponent notation
    out += digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    const int a = std::abs(exp);
    out += std::string("e") + (exp < 0 ? "-" : "+") + (a < 10 ? "0" : "") + std::to_string(a);
  } else if (exp < 0) {
    out += "0." + std::string(size_t(-exp - 1), '0') + digits;
  } else {
    const size_t point = size_t(exp) + 1;
    if (digits.size() <= point) out += digits + std::string(point - digits.size(), '0') + ".0";
    else out += digits.substr(0, point) + "." + digits.substr(point);
  }
  return out;
}

inline std::string py_bool(bool b) { return b ? "True" : "False"; }

/// "(3, 3)" always (Conv2d's kernel_size, stride, ...).
inline std::string py_pair(const Size2& s) { return "(" + std::to_string(s.h) + ", " + std::to_string(s.w) + ")"; }
/// "3" when given as one int, else "(1, 3)" (pooling layers print what they were given).
inline std::string py_size(const Size2& s) { return s.square ? std::to_string(s.h) : py_pair(s); }
/// "(8,)" or "(4, 8)": a Python tuple of ints.
inline std::string py_tuple(const std::vector<int64_t>& v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s + (v.size() == 1 ? ",)" : ")");
}

}  // namespace detail
}  // namespace strata::nn
