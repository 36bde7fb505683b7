// Creation ops: empty zeros ones full arange linspace rand randn randint from_vector scalar_tensor,
// and the *_like variants. Random fills use the default Philox generator (core/random.hpp):
// element k gets counter offset + k/4, so results do not depend on the thread count.
#pragma once

#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "strata/core/random.hpp"
#include "strata/tensor/copy.hpp"
#include "strata/tensor/to_device.hpp"

namespace strata {

inline Tensor empty(const Shape& shape, TensorOptions o = {}) {
  Tensor t = Tensor::empty(shape, o.dtype, o.device);
  if (o.requires_grad) t.requires_grad_();
  return t;
}

inline Tensor full(const Shape& shape, double value, TensorOptions o = {}) {
  Tensor t = Tensor::empty(shape, o.dtype, o.device);
  fill_(t, value);
  if (o.requires_grad) t.requires_grad_();
  return t;
}
inline Tensor zeros(const Shape& shape, TensorOptions o = {}) { return full(shape, 0.0, o); }
inline Tensor ones(const Shape& shape, TensorOptions o = {}) { return full(shape, 1.0, o); }

inline TensorOptions options_of(const Tensor& t) { return {.dtype = t.dtype(), .device = t.device()}; }

namespace detail {
/// o on the cpu, without requires_grad: values made on the host, then moved by on_device (so a
/// cuda tensor holds exactly the values, and the random numbers, the cpu would).
inline TensorOptions host_options(TensorOptions o) {
  o.device = kCPU;
  o.requires_grad = false;
  return o;
}
inline Tensor on_device(const Tensor& t, const TensorOptions& o) {
  Tensor out = copy_to_device(t, o.device);
  if (o.requires_grad) out.requires_grad_();
  return out;
}
}  // namespace detail
inline Tensor empty_like(const Tensor& t) { return empty(t.shape(), options_of(t)); }
inline Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), options_of(t)); }
inline Tensor ones_like(const Tensor& t) { return ones(t.shape(), options_of(t)); }
inline Tensor full_like(const Tensor& t, double v) { return full(t.shape(), v, options_of(t)); }

/// A 0-dim tensor holding `value`.
inline Tensor scalar_tensor(double value, TensorOptions o = {}) { return full({}, value, o); }

/// A tensor of the given shape holding a copy of `values`. One size may be -1 (inferred, as in
/// view); the default {-1} gives a 1-d tensor like torch.tensor([...]), even for one value; an
/// explicit {} gives a 0-dim tensor (one value).
template <class T>
Tensor from_vector(const std::vector<T>& values, Shape shape = {-1}, TensorOptions o = {.dtype = dtype_v<T>}) {
  int64_t known = 1, infer = -1;
  for (int i = 0; i < shape.dim(); ++i) {
    if (shape[i] == -1 && infer < 0) infer = i;
    else known *= shape[i];
  }
  if (infer >= 0 && known > 0 && int64_t(values.size()) % known == 0) shape[infer] = int64_t(values.size()) / known;
  STRATA_CHECK(numel(shape) == int64_t(values.size()), "from_vector", "got ", values.size(),
               " values for shape ", shape, ", expected ", numel(shape));
  Tensor src = Tensor::empty(shape, dtype_v<T>);
  std::copy(values.begin(), values.end(), src.data_ptr<T>());
  Tensor out = o.dtype == dtype_v<T> ? src : detail::copy_as(src, o.dtype);
  if (o.device.is_cuda()) out = detail::copy_to_device(out, o.device);
  if (o.requires_grad) out.requires_grad_();
  return out;
}
inline Tensor from_vector(std::initializer_list<double> values, Shape shape = {-1}, TensorOptions o = {}) {
  return from_vector(std::vector<double>(values), std::move(shape), o);
}

/// [start, start + step, ...) up to end (exclusive), like torch.arange, in the dtype asked for.
inline Tensor arange(double start, double end, double step, TensorOptions o) {
  if (o.device.is_cuda()) return detail::on_device(arange(start, end, step, detail::host_options(o)), o);
  STRATA_CHECK(step != 0 && (end - start) / step >= 0, "arange", "got start=", start, " end=", end,
               " step=", step, ", expected a step that moves from start toward end");
  const double count = std::ceil((end - start) / step);
  STRATA_CHECK(count < 0x1p62, "arange", "got start=", start, " end=", end, " step=", step, ", expected fewer than 2^62 values");
  const int64_t n = int64_t(count);
  Tensor t = Tensor::empty({n}, o.dtype, o.device);
  dispatch_numeric(o.dtype, "arange", [&]<class T>(type_tag<T>) {
    T* p = t.data_ptr<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = cast_value<T>(start + double(i) * step);
  });
  return t;
}
/// arange with PyTorch's dtype: int64 when start, end and step are whole numbers, else float32.
inline Tensor arange(double start, double end, double step = 1.0) {
  const bool whole = start == std::floor(start) && end == std::floor(end) && step == std::floor(step);
  return arange(start, end, step, {.dtype = whole ? DType::i64 : DType::f32});
}
inline Tensor arange(double start, double end, TensorOptions o) { return arange(start, end, 1, o); }
inline Tensor arange(double end, TensorOptions o) { return arange(0, end, 1, o); }
inline Tensor arange(double end) { return arange(0.0, end, 1.0); }

/// `steps` evenly spaced values from start to end inclusive.
inline Tensor linspace(double start, double end, int64_t steps, TensorOptions o = {}) {
  if (o.device.is_cuda()) return detail::on_device(linspace(start, end, steps, detail::host_options(o)), o);
  STRATA_CHECK(steps >= 0, "linspace", "got steps=", steps, ", expected >= 0");
  Tensor t = Tensor::empty({steps}, o.dtype, o.device);
  const double step = steps > 1 ? (end - start) / double(steps - 1) : 0.0;
  dispatch_numeric(o.dtype, "linspace", [&]<class T>(type_tag<T>) {
    T* p = t.data_ptr<T>();
    // fill from both ends, as PyTorch does, so the last value is exactly `end`
    for (int64_t i = 0; i < steps; ++i)
      p[i] = cast_value<T>(steps == 1 || i < steps / 2 ? start + step * double(i) : end - step * double(steps - 1 - i));
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

namespace detail {
/// Fills a fresh contiguous tensor: fn(k, words) -> value, words = the 4 Philox words of counter k/4.
template <class T, class F>
void random_fill(Tensor& t, Generator& gen, int64_t words_per_value, F fn) {
  const int64_t n = t.numel();
  const int64_t per_counter = 4 / words_per_value;  // values per 128-bit counter
  const uint64_t first = gen.reserve(uint64_t((n + per_counter - 1) / per_counter));
  T* p = t.data_ptr<T>();
  parallel_for(0, (n + per_counter - 1) / per_counter, 4096, [&](int64_t lo, int64_t hi) {
    for (int64_t c = lo; c < hi; ++c) {
      const auto w = gen.block(first + uint64_t(c));
      for (int64_t j = 0; j < per_counter && c * per_counter + j < n; ++j)
        p[c * per_counter + j] = fn(&w[size_t(j * words_per_value)]);
    }
  });
}
}  // namespace detail

/// Uniform in [0, 1).
inline Tensor rand(const Shape& shape, TensorOptions o = {}, Generator& gen = default_generator()) {
  if (o.device.is_cuda()) return detail::on_device(rand(shape, detail::host_options(o), gen), o);
  Tensor t = Tensor::empty(shape, o.dtype, o.device);
  dispatch_float(o.dtype, "rand", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_same_v<T, double>)
      detail::random_fill<T>(t, gen, 2, [](const uint32_t* w) { return uints_to_unit_double(w[0], w[1]); });
    else if constexpr (std::is_same_v<T, float>)
      detail::random_fill<T>(t, gen, 1, [](const uint32_t* w) { return uint_to_unit_float(w[0]); });
    else  // f16/bf16: only as many bits as the significand holds, so no value rounds up to 1.0
      detail::random_fill<T>(t, gen, 1, [](const uint32_t* w) {
        constexpr int bits = std::is_same_v<T, f16> ? 11 : 8;
        return T(float(w[0] >> (32 - bits)) * (1.0f / float(1 << bits)));
      });
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

/// Standard normal (Box-Muller on two uniforms per value).
inline Tensor randn(const Shape& shape, TensorOptions o = {}, Generator& gen = default_generator()) {
  if (o.device.is_cuda()) return detail::on_device(randn(shape, detail::host_options(o), gen), o);
  Tensor t = Tensor::empty(shape, o.dtype, o.device);
  dispatch_float(o.dtype, "randn", [&]<class T>(type_tag<T>) {
    detail::random_fill<T>(t, gen, 2, [](const uint32_t* w) {
      // u1 in (0, 1] so log(u1) is finite
      const double u1 = 1.0 - double(w[0]) * 0x1p-32, u2 = double(w[1]) * 0x1p-32;
      return cast_value<T>(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
    });
  });
  if (o.requires_grad) t.requires_grad_();
  return t;
}

/// Uniform integers in [low, high); int64 unless asked.
inline Tensor randint(int64_t low, int64_t high, const Shape& shape, TensorOptions o = {.dtype = DType::i64},
                      Generator& gen = default_generator()) {
  if (o.device.is_cuda()) return detail::on_device(randint(low, high, shape, detail::host_options(o), gen), o);
  STRATA_CHECK(high > low, "randint", "got low=", low, " high=", high, ", expected low < high");
  Tensor t = Tensor::empty(shape, o.dtype, o.device);
  const uint64_t range = uint64_t(high) - uint64_t(low);  // modular: no signed overflow for wide ranges
  dispatch_numeric(o.dtype, "randint", [&]<class T>(type_tag<T>) {
    if constexpr (std::is_integral_v<T>)  // wrapping out-of-range values would be silently wrong
      STRATA_CHECK(low >= int64_t(std::numeric_limits<T>::min()) && high - 1 <= int64_t(std::numeric_limits<T>::max()),
                   "randint", "got low=", low, " high=", high, " for dtype ", o.dtype,
                   ", expected a range that ", o.dtype, " can hold");
    detail::random_fill<T>(t, gen, 2, [&](const uint32_t* w) {
      const uint64_t r = (uint64_t(w[0]) << 32 | w[1]) % range;  // bias < range / 2^64
      const int64_t v = int64_t(uint64_t(low) + r);  // exact: no detour through double
      if constexpr (std::is_integral_v<T>) return T(v);
      else return cast_value<T>(v);
    });
  });
  return t;
}

inline Tensor rand_like(const Tensor& t) { return rand(t.shape(), options_of(t)); }
inline Tensor randn_like(const Tensor& t) { return randn(t.shape(), options_of(t)); }

}  // namespace strata
