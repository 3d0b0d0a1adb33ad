// F32, F16, BF16: one value per block, no parameters. Quantizing rounds to nearest even.
#pragma once

#include <vector>

#include "format/codec.h"

namespace lowbit::formats {

template <typename Storage, float (*ToF32)(Storage), Storage (*FromF32)(float)>
struct FloatFormat {
  static uint64_t block_bytes(int64_t) { return sizeof(Storage); }
  static void fit(const float*, const float*, int64_t, void*) {}
  static float round_value(float x, const void*, int64_t, int64_t) { return ToF32(FromF32(x)); }
  // Element access through memcpy: float tensors in safetensors files need not be aligned.
  static void encode(const float* x, int64_t n, void* blk) {
    auto* p = static_cast<uint8_t*>(blk);
    for (int64_t i = 0; i < n; ++i) {
      const Storage s = FromF32(x[i]);
      std::memcpy(p + i * int64_t(sizeof(Storage)), &s, sizeof(Storage));
    }
  }
  static void decode(const void* blk, int64_t n, float* y) {
    const auto* p = static_cast<const uint8_t*>(blk);
    for (int64_t i = 0; i < n; ++i) {
      Storage s;
      std::memcpy(&s, p + i * int64_t(sizeof(Storage)), sizeof(Storage));
      y[i] = ToF32(s);
    }
  }
};

inline float f32_id(float v) {
  return v;
}

struct F32 : FloatFormat<float, f32_id, f32_id> {
  static constexpr Traits kTraits{"f32", "IEEE binary32, unquantized", 0, 1};
};
struct F16 : FloatFormat<uint16_t, fp16_to_f32, f32_to_fp16> {
  static constexpr Traits kTraits{"f16", "IEEE binary16 (5-bit exponent, 10-bit mantissa)", 1, 1};
  // Through a table of all 65536 values (made once by fp16_to_f32 itself): one load each.
  static void decode(const void* blk, int64_t n, float* y) {
    static const std::vector<float> table = [] {
      std::vector<float> t(65536);
      for (uint32_t h = 0; h < 65536; ++h) t[h] = fp16_to_f32(uint16_t(h));
      return t;
    }();
    const auto* p = static_cast<const uint8_t*>(blk);
    for (int64_t i = 0; i < n; ++i) {
      uint16_t s;
      std::memcpy(&s, p + i * 2, 2);
      y[i] = table[s];
    }
  }
};
struct BF16 : FloatFormat<uint16_t, bf16_to_f32, f32_to_bf16> {
  static constexpr Traits kTraits{"bf16", "bfloat16 (8-bit exponent, 7-bit mantissa)", 30, 1};
};

}  // namespace lowbit::formats
