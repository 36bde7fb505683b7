// Host 16-bit floats: f16 (IEEE 754 binary16) and bf16 (bfloat16, the top half of a float32).
//
// Conversion from float rounds to nearest, ties to even. NaN stays NaN (quiet, sign kept), +-Inf
// stays +-Inf, float values beyond the 16-bit range overflow to +-Inf and tiny ones become
// subnormals or signed zero, exactly as the hardware conversions do (F16C vcvtps2ph with RNE,
// AVX-512 BF16 vcvtneps2bf16). Arithmetic happens in float: f16/bf16 are storage types.
// Reference: IEEE 754-2008 section 3.6; the bit tricks follow Fabian Giesen's "half to float done quick".
#pragma once

#include <bit>
#include <cstdint>
#include <ostream>

namespace strata {

namespace detail {

inline uint16_t float_to_f16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // Inf or NaN
    if (abs == 0x7f800000u) return uint16_t(sign | 0x7c00u);
    return uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // quiet NaN, keep payload top bits
  }
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to >= 65520: overflow to Inf
  if (abs < 0x38800000u) {                                   // result is subnormal or zero
    // value = abs_float; subnormal f16 unit is 2^-24. Shift the full mantissa into place with RNE.
    if (abs < 0x33000000u) return uint16_t(sign);  // < 2^-25: rounds to zero (2^-25 ties to even 0)
    const uint32_t exp = abs >> 23;
    const uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - exp;  // 14 + (113 - exp) - ... : puts 2^-24 at bit 0
    uint32_t q = mant >> shift;
    const uint32_t rem = mant & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  // normal: rebias exponent (127 -> 15), round mantissa from 23 to 10 bits, ties to even
  uint32_t r = abs - 0x38000000u;             // exponent - 112
  r += 0xfffu + ((r >> 13) & 1u);             // round to nearest even at bit 13
  return uint16_t(sign | (r >> 13));          // a carry into the exponent is the right answer
}

inline float f16_bits_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0x1fu) {
    bits = sign | 0x7f800000u | (mant << 13);  // Inf / NaN
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  } else if (mant == 0) {
    bits = sign;
  } else {  // subnormal: value = mant * 2^-24, exact in float
    float v = float(mant) * 0x1p-24f;
    bits = sign | std::bit_cast<uint32_t>(v);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t float_to_bf16_bits(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // quiet NaN
  const uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);  // ties to even; Inf stays Inf
  return uint16_t((x + rounding) >> 16);
}

inline float bf16_bits_to_float(uint16_t b) { return std::bit_cast<float>(uint32_t(b) << 16); }

}  // namespace detail

/// IEEE binary16. Storage type: converts to and from float, arithmetic is done in float.
struct f16 {
  uint16_t bits = 0;
  f16() = default;
  f16(float f) : bits(detail::float_to_f16_bits(f)) {}  // NOLINT: implicit like a built-in float
  f16(double d) : f16(float(d)) {}
  f16(int i) : f16(float(i)) {}
  f16(int64_t i) : f16(float(i)) {}
  static f16 from_bits(uint16_t b) { f16 h; h.bits = b; return h; }
  operator float() const { return detail::f16_bits_to_float(bits); }
};

/// bfloat16. Storage type: converts to and from float, arithmetic is done in float.
struct bf16 {
  uint16_t bits = 0;
  bf16() = default;
  bf16(float f) : bits(detail::float_to_bf16_bits(f)) {}  // NOLINT
  bf16(double d) : bf16(float(d)) {}
  bf16(int i) : bf16(float(i)) {}
  bf16(int64_t i) : bf16(float(i)) {}
  static bf16 from_bits(uint16_t b) { bf16 h; h.bits = b; return h; }
  operator float() const { return detail::bf16_bits_to_float(bits); }
};

inline std::ostream& operator<<(std::ostream& os, f16 h) { return os << float(h); }
inline std::ostream& operator<<(std::ostream& os, bf16 h) { return os << float(h); }

}  // namespace strata
