// Element types on the device: 16-bit float storage, loads and stores in the compute type, and
// dispatch from a runtime DType to a device element type.
//
//   cuda::dispatch_device(DType::bf16, "add", [&]<class S>(type_tag<S>) {   // S = cuda::bf16_t
//     using C = cuda::compute_type<S>;                                       // float
//     ... kernel<S><<<...>>>: C v = cuda::load(p + i); cuda::store(q + i, C(v * 2));
//   });
//
// f16 and bf16 are plain 16-bit containers on the device (f16_t, bf16_t; same bits and size as
// strata::f16 / strata::bf16 on the host, so a tensor's memory is read as either). They are
// storage only: a kernel loads them as float, computes in float and stores back rounding to
// nearest even. On a GPU the conversions are the hardware's (__half2float, __float2half_rn,
// __bfloat162float, __float2bfloat16_rn); on the host and under the emulator they are
// core/half.hpp's bit formulas, which round the same way. Other types load and store as they are
// (compute_type<T> = T; bool and the integers too).
#pragma once

#include <cstdint>
#include <string_view>
#include <type_traits>

#include "strata/backend/cuda_compat.hpp"
#include "strata/core/dtype.hpp"
#include "strata/core/half.hpp"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace strata::cuda {

/// IEEE binary16 bits on the device.
struct f16_t {
  uint16_t bits;
};
/// bfloat16 bits on the device.
struct bf16_t {
  uint16_t bits;
};
static_assert(sizeof(f16_t) == sizeof(strata::f16) && sizeof(bf16_t) == sizeof(strata::bf16));

/// The device element type for host element type H (strata::f16 -> f16_t, strata::bf16 -> bf16_t).
template <class H>
using device_type = std::conditional_t<std::is_same_v<H, strata::f16>, f16_t,
                                       std::conditional_t<std::is_same_v<H, strata::bf16>, bf16_t, H>>;

/// The type a kernel computes in for storage type T: float for the 16-bit floats, T otherwise.
template <class T>
using compute_type = std::conditional_t<std::is_same_v<T, f16_t> || std::is_same_v<T, bf16_t>, float, T>;

/// Whether T is a floating storage type (f32, f64, f16, bf16).
template <class T>
inline constexpr bool is_floating_storage = std::is_floating_point_v<compute_type<T>>;

__host__ __device__ inline float to_float(f16_t h) {
#if defined(__CUDA_ARCH__)
  return __half2float(__ushort_as_half(h.bits));
#else
  return strata::detail::f16_bits_to_float(h.bits);
#endif
}
__host__ __device__ inline float to_float(bf16_t b) {
#if defined(__CUDA_ARCH__)
  return __bfloat162float(__ushort_as_bfloat16(b.bits));
#else
  return strata::detail::bf16_bits_to_float(b.bits);
#endif
}

/// Converts a compute value to storage type T (round to nearest even for f16/bf16).
template <class T, class C>
__host__ __device__ inline T from_compute(C v) {
  if constexpr (std::is_same_v<T, f16_t>) {
#if defined(__CUDA_ARCH__)
    return f16_t{__half_as_ushort(__float2half_rn(float(v)))};
#else
    return f16_t{strata::detail::float_to_f16_bits(float(v))};
#endif
  } else if constexpr (std::is_same_v<T, bf16_t>) {
#if defined(__CUDA_ARCH__)
    return bf16_t{__bfloat16_as_ushort(__float2bfloat16_rn(float(v)))};
#else
    return bf16_t{strata::detail::float_to_bf16_bits(float(v))};
#endif
  } else {
    return T(v);
  }
}

/// *p as its compute type.
template <class T>
__host__ __device__ inline compute_type<T> load(const T* p) {
  if constexpr (std::is_same_v<T, f16_t> || std::is_same_v<T, bf16_t>) return to_float(*p);
  else return *p;
}
/// *p = v, rounded to T.
template <class T, class C>
__host__ __device__ inline void store(T* p, C v) {
  *p = from_compute<T>(v);
}

/// Calls f(type_tag<S>{}) with S the device element type of dtype t (f32 float, f64 double,
/// f16 f16_t, bf16 bf16_t, i32 int32_t, i64 int64_t, u8 uint8_t, b8 bool); host code.
template <class F>
decltype(auto) dispatch_device(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::f16: return f(type_tag<f16_t>{});
    case DType::bf16: return f(type_tag<bf16_t>{});
    case DType::i32: return f(type_tag<int32_t>{});
    case DType::i64: return f(type_tag<int64_t>{});
    case DType::u8: return f(type_tag<uint8_t>{});
    case DType::b8: return f(type_tag<bool>{});
  }
  strata::detail::bad_dtype(op, t, "a dtype the cuda kernels know");
}

/// As dispatch_device, for the floating dtypes only (f32, f64, f16, bf16).
template <class F>
decltype(auto) dispatch_device_floating(DType t, std::string_view op, F&& f) {
  switch (t) {
    case DType::f32: return f(type_tag<float>{});
    case DType::f64: return f(type_tag<double>{});
    case DType::f16: return f(type_tag<f16_t>{});
    case DType::bf16: return f(type_tag<bf16_t>{});
    default: strata::detail::bad_dtype(op, t, "a floating dtype (f32, f64, f16, bf16)");
  }
}

}  // namespace strata::cuda
