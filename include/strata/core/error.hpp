// strata::Error and the STRATA_CHECK macro.
//
// Contract: every bad shape, dtype, device, file or argument throws strata::Error whose message
// starts with the op's name and says what it got and what it expected:
//   "matmul: got shapes [2, 3] and [4, 5], expected a.size(-1) == b.size(-2)"
// STRATA_CHECK(cond, op, parts...) streams the parts with operator<<, so shapes, dtypes and numbers
// can be passed directly.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace strata {

/// The one exception type strata throws for bad input.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

namespace detail {
template <class... Parts>
[[noreturn]] inline void fail(std::string_view op, const Parts&... parts) {
  std::ostringstream os;
  os << op << ": ";
  (os << ... << parts);
  throw Error(os.str());
}
}  // namespace detail

}  // namespace strata

/// Throws strata::Error("op: parts...") when cond is false.
#define STRATA_CHECK(cond, op, ...)                                   \
  do {                                                                \
    if (!(cond)) [[unlikely]] ::strata::detail::fail(op, __VA_ARGS__); \
  } while (0)
