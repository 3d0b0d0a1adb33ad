// IEEE binary16 (fp16) and bfloat16 conversions, scalar and exact: float -> 16-bit rounds to
// nearest, ties to even, keeps subnormals (no flush to zero), saturates to Inf only where IEEE
// does, and turns NaN into a quiet NaN of the same sign keeping the top payload bits.
// 16-bit -> float is exact for every pattern.
#pragma once

#include <bit>
#include <cstdint>

namespace lowbit {

inline float fp16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  const uint32_t exp = (h >> 10) & 0x1f;
  const uint32_t man = h & 0x3ff;
  uint32_t bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);  // Inf or NaN, payload kept
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // Subnormal: man * 2^-24, exactly representable as a normal float.
    int shift = std::countl_zero(man) - 21;  // leading zeros within the 10-bit field, +1
    uint32_t m = (man << shift) & 0x3ff;
    bits = sign | uint32_t(113 - shift) << 23 | (m << 13);
  }
  return std::bit_cast<float>(bits);
}

inline uint16_t f32_to_fp16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00 | ((abs >> 13) & 0x3ff));  // quiet NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00);  // >= 65520 rounds to Inf (and Inf)
  if (abs >= 0x38800000u) {                                 // normal half
    uint32_t r = abs - (112u << 23);
    r += 0xfff + ((r >> 13) & 1);
    return uint16_t(sign | (r >> 13));
  }
  // Subnormal half (or zero): q = value / 2^-24, rounded to nearest even.
  const uint32_t e = abs >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself has e = 102)
  const uint32_t m = (abs & 0x7fffff) | 0x800000;
  const uint32_t s = 126 - e;  // 14..24
  uint32_t q = m >> s;
  const uint32_t rem = m & ((1u << s) - 1), half = 1u << (s - 1);
  if (rem > half || (rem == half && (q & 1))) ++q;
  return uint16_t(sign | q);
}

inline float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(uint32_t(h) << 16); }

inline uint16_t f32_to_bf16(float f) {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40);  // quiet NaN
  return uint16_t((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

// Value after a round trip through fp16 / bf16: what a stored scale really is.
inline float round_fp16(float f) { return fp16_to_f32(f32_to_fp16(f)); }
inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

}  // namespace lowbit
