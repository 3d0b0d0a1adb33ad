// lowbit's grouped integer formats, the convention of GPTQ/AWQ checkpoints: B-bit codes with one
// fp16 scale per group of G values along the row (any G >= 1; G = 0 means one group per row), and
// for asymmetric variants an integer zero point. The last group of a row may be shorter (ragged),
// so any row length tiles. A group of n values is stored as
//   {fp16 scale; u8 zero (asym only); codes: ceil(n*B/8) bytes, LSB-first bit stream}
//   symmetric:  x = scale * (q - 2^(B-1)),  q in 0..2^B-1
//   asymmetric: x = scale * (q - zero),     q, zero in 0..2^B-1
// Bits per weight at G = 32: int4 4.5, int4_asym 4.75, int3 3.5, int2 2.5, int8 8.5.
#pragma once

#include "format/codec.h"

namespace lowbit::formats {

// Code i of a group's LSB-first bit stream of B-bit codes (the codecs and the kernels' readers).
template <int B>
inline int read_int_code(const uint8_t* codes, int64_t i) {
  const uint64_t bit = uint64_t(i) * B;
  uint32_t v = codes[bit / 8] >> (bit % 8);
  if (bit % 8 + B > 8) v |= uint32_t(codes[bit / 8 + 1]) << (8 - bit % 8);
  return int(v & ((1u << B) - 1));
}

template <int B, bool Asym>
struct IntN {
  static constexpr int kBits = B;
  static constexpr bool kAsym = Asym;
  static uint64_t block_bytes(int64_t n) { return 2 + (Asym ? 1 : 0) + (uint64_t(n) * B + 7) / 8; }
  static void fit(const float* x, const float* w, int64_t n, void* blk);
  static float round_value(float x, const void* blk, int64_t n, int64_t i);
  static void encode(const float* x, int64_t n, void* blk);
  static void decode(const void* blk, int64_t n, float* y);
};

#define LOWBIT_INT_FORMAT(T, CODE, B, ASYM, NAME, DESC)                           \
  struct T : IntN<B, ASYM> {                                                      \
    static constexpr Traits kTraits{NAME, DESC, lowbit_type(CODE), 0, false, ""}; \
  }

LOWBIT_INT_FORMAT(Int8, 16, 8, false, "int8", "8-bit symmetric, fp16 scale per group or row");
LOWBIT_INT_FORMAT(Int6, 17, 6, false, "int6", "6-bit symmetric, fp16 scale per group");
LOWBIT_INT_FORMAT(Int6Asym, 18, 6, true, "int6_asym", "6-bit, fp16 scale + zero point per group");
LOWBIT_INT_FORMAT(Int5, 19, 5, false, "int5", "5-bit symmetric, fp16 scale per group");
LOWBIT_INT_FORMAT(Int5Asym, 20, 5, true, "int5_asym", "5-bit, fp16 scale + zero point per group");
LOWBIT_INT_FORMAT(Int4, 21, 4, false, "int4", "4-bit symmetric, fp16 scale per group (GPTQ sym)");
LOWBIT_INT_FORMAT(Int4Asym, 22, 4, true, "int4_asym",
                  "4-bit, fp16 scale + zero per group (GPTQ/AWQ)");
LOWBIT_INT_FORMAT(Int3, 23, 3, false, "int3", "3-bit symmetric, fp16 scale per group");
LOWBIT_INT_FORMAT(Int3Asym, 24, 3, true, "int3_asym", "3-bit, fp16 scale + zero point per group");
LOWBIT_INT_FORMAT(Int2, 25, 2, false, "int2", "2-bit symmetric, fp16 scale per group");
LOWBIT_INT_FORMAT(Int2Asym, 26, 2, true, "int2_asym", "2-bit, fp16 scale + zero point per group");

#undef LOWBIT_INT_FORMAT

// tern_gN: ternary {-1, 0, +1} x an fp16 scale per group of any length, in int2_gN's layout (codes
// 1..3 of its symmetric grid, x = scale * (q - 2)): the ternary values of TQ1_0 / TQ2_0 for rows
// 256-blocks cannot tile (the last group may be ragged), decoded and dotted by int2's kernels.
// Its fallback is never needed for tiling; it is the GGUF type the ggml policy continues with.
struct Tern : IntN<2, false> {
  static constexpr Traits kTraits{
      "tern", "ternary {-1,0,1}, fp16 scale per group (any row)", lowbit_type(27), 0, false,
      "q4_0"};
  static void fit(const float* x, const float* w, int64_t n, void* blk);
  static float round_value(float x, const void* blk, int64_t n, int64_t i);
  static void encode(const float* x, int64_t n, void* blk);
};

}  // namespace lowbit::formats
