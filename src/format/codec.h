// What every format type in src/format/ declares, and small helpers their codecs share.
// A format type T provides:
//   static constexpr Traits kTraits;                       name, description, GGUF id, block, ...
//   static uint64_t block_bytes(int64_t n);                bytes of a block of n values
//   static void fit(const float* x, const float* w, int64_t n, void* blk);   parameters only
//   static float round_value(float x, const void* blk, int64_t n, int64_t i); value under them
//   static void encode(const float* x, int64_t n, void* blk);               codes, given them
//   static void decode(const void* blk, int64_t n, float* y);               dequantize
// fit() writes the parameter fields at storage precision (fp16 scales, packed sub-scales) so that
// encode() and round_value() see exactly what a reader will.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "format/fit.h"
#include "lowbit/format.h"
#include "lowbit/half.h"

namespace lowbit::formats {

struct Traits {
  std::string_view name;
  std::string_view description;
  uint32_t type_id;              // GGUF tensor type: ggml's id, or lowbit_type(code)
  int64_t block_elems;           // 0: grouped, any group size, ragged last group
  bool activation_only = false;
  std::string_view fallback = "";
};

// lowbit's own formats get fixed private GGUF type ids far above ggml's; the low 16 bits carry
// the group size of grouped formats. Codes are permanent: never renumber one.
constexpr uint32_t lowbit_type(uint32_t code) { return kPrivateTypeBase | (code << 16); }

// Nearest integer code for v in [lo, hi] (round half to even, as nearbyint does).
inline int nearest_int(float v, int lo, int hi) {
  return fit::IntLevels{lo, hi}.nearest(v);
}

inline float inv_or_zero(float d) { return d != 0 ? 1.0f / d : 0.0f; }

// fp16 field access on possibly unaligned block bytes.
inline float load_fp16(const uint16_t& h) { return fp16_to_f32(h); }
inline void store_fp16(uint16_t& h, float v) { h = f32_to_fp16(v); }

}  // namespace lowbit::formats
