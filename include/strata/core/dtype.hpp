// DType: the runtime element type of a Tensor, and `dispatch`, which turns it into a template type.
//
//   dispatch(x.dtype(), "relu", [&]<class T>(type_tag<T>) { relu_kernel<T>(...); });
//
// Only the dtypes an op supports are instantiated: dispatch_float (f32 f64 f16 bf16) for math,
// dispatch_all for copies, casts and comparisons. Promotion follows PyTorch's lattice:
// bool < u8 < i32 < i64 < f16, bf16 < f32 < f64, and f16 with bf16 gives f32.
#pragma once

#include <cstdint>
#include <ostream>
#include <string_view>
#include <type_traits>

#include "strata/core/error.hpp"
#include "strata/core/half.hpp"

namespace strata {

enum class DType : uint8_t { f32, f64, f16, bf16, i32, i64, u8, b8 };

/// Bytes per element.
inline constexpr int64_t itemsize(DType t) {
  switch (t) {
    case DType::f64: case DType::i64: return 8;
    case DType::f32: case DType::i32: return 4;
    case DType::f16: case DType::bf16: return 2;
    case DType::u8: case DType::b8: return 1;
  }
  return 0;
}

inline constexpr std::string_view dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
    case DType::i32: return "int32";
    case DType::i64: return "int64";
    case DType::u8: return "uint8";
    case DType::b8: return "bool";
  }
  return "?";
}

inline std::ostream& operator<<(std::ostream& os, DType t) { return os << dtype_name(t); }

inline constexpr bool is_floating(DType t) {
  return t == DType::f32 || t == DType::f64 || t == DType::f16 || t == DType::bf16;
}
inline constexpr bool is_integral(DType t) { return !is_floating(t) && t != DType::b8; }

/// Maps a C++ element type to its DType.
template <class T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = DType::f32; };
template <> struct dtype_of<double> { static constexpr DType value = DType::f64; };
template <> struct dtype_of<f16> { static constexpr DType value = DType::f16; };
template <> struct dtype_of<bf16> { static constexpr DType value = DType::bf16; };
template <> struct dtype_of<int32_t> { static constexpr DType value = DType::i32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = DType::i64; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = DType::u8; };
template <> struct dtype_of<bool> { static constexpr DType value = DType::b8; };
template <class T> inline constexpr DType dtype_v = dtype_of<T>::value;

/// The type arithmetic is done in: float for the 16-bit floats, the type itself otherwise.
template <class T> struct compute_type { using type = T; };
template <> struct compute_type<f16> { using type = float; };
template <> struct compute_type<bf16> { using type = float; };
template <class T> using compute_t = typename compute_type<T>::type;

/// The type sums accumulate in: double for f64, float for the other floats, int64 for integers.
template <class T> struct acc_type { using type = float; };
template <> struct acc_type<double> { using type = double; };
template <> struct acc_type<int32_t> { using type = int64_t; };
template <> struct acc_type<int64_t> { using type = int64_t; };
template <> struct acc_type<uint8_t> { using type = int64_t; };
template <> struct acc_type<bool> { using type = int64_t; };
template <class T> using acc_t = typename acc_type<T>::type;

template <class T> struct type_tag { using type = T; };

namespace detail {
[[noreturn]] inline void bad_dtype(std::string_view op, DType t, std::string_view expected) {
  fail(op, "got dtype ", t, ", expected ", expected);
}
}  // namespace detail

/// Calls f(type_tag<T>{}) for a floating dtype; other dtypes throw naming `op`.
template <class F>
decltype(auto) dispatch_float(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::f16: return f(type_tag<f16>{});
    case DType::bf16: return f(type_tag<bf16>{});
    default: detail::bad_dtype(op, t, "a floating dtype (float32, float64, float16, bfloat16)");
  }
}

/// Calls f(type_tag<T>{}) for a numeric (non-bool) dtype.
template <class F>
decltype(auto) dispatch_numeric(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::f16: return f(type_tag<f16>{});
    case DType::bf16: return f(type_tag<bf16>{});
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::i64: return f(type_tag<int64_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
    default: detail::bad_dtype(op, t, "a numeric dtype (not bool)");
  }
}

/// Calls f(type_tag<T>{}) for any dtype.
template <class F>
decltype(auto) dispatch_all(DType t, std::string_view op, F&& f) {
  if (t == DType::b8) return f(type_tag<bool>{});
  return dispatch_numeric(t, op, std::forward<F>(f));
}

/// PyTorch's promotion of two tensor dtypes.
inline DType promote_types(DType a, DType b) {
  if (a == b) return a;
  auto rank = [](DType t) {
    switch (t) {
      case DType::b8: return 0;
      case DType::u8: return 1;
      case DType::i32: return 2;
      case DType::i64: return 3;
      case DType::f16: case DType::bf16: return 4;
      case DType::f32: return 5;
      case DType::f64: return 6;
    }
    return 0;
  };
  if (rank(a) == 4 && rank(b) == 4) return DType::f32;  // f16 with bf16
  return rank(a) >= rank(b) ? a : b;
}

/// Converts between element types through float/double/int64 as C++ would, with bool as != 0.
template <class To, class From>
inline To cast_value(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<To, bool>) {
    return static_cast<compute_t<From>>(v) != compute_t<From>(0);
  } else if constexpr (std::is_same_v<To, f16> || std::is_same_v<To, bf16>) {
    return To(static_cast<float>(static_cast<compute_t<From>>(v)));
  } else {
    return static_cast<To>(static_cast<compute_t<From>>(v));
  }
}

}  // namespace strata
