// Ternary and binary formats: values in {-d, 0, +d} (TQ*, ggml, bit-identical to GGUF) or {-d, +d}
// (BIN1, lowbit's own).
//   TQ1_0 {u8 qs[48]; u8 qh[4]; fp16 d}  256 values, 5 trits per byte (1.6875 bpw). A byte holds
//         digits t_0..t_4 (t in {0,1,2} = value+1) as q = ceil(243-valued number * 256 / 243),
//         digit n recovered as ((q * 3^n) mod 256) * 3 >> 8. Value e < 160: qs[e%32] digit e/32;
//         e < 240: qs[32 + (e-160)%16] digit (e-160)/16; else qh[(e-240)%4] digit (e-240)/4.
//   TQ2_0 {u8 qs[64]; fp16 d}            256 values, 2 bits each (2.0625 bpw): value e is
//         (qs[(e/128)*32 + e%32] >> 2*((e%128)/32)) & 3, minus 1.
//   BIN1  {fp16 d; u8 bits[8]}           64 values, bit i of the little-endian 64-bit word set
//         means +d, clear means -d (1.25 bpw).
#pragma once

#include "format/codec.h"

namespace lowbit::formats {

#define LOWBIT_DECLARE_CODEC_T                                              \
  static uint64_t block_bytes(int64_t) {                                    \
    return sizeof(Block);                                                   \
  }                                                                         \
  static void fit(const float* x, const float* w, int64_t n, void* blk);    \
  static float round_value(float x, const void* blk, int64_t n, int64_t i); \
  static void encode(const float* x, int64_t n, void* blk);                 \
  static void decode(const void* blk, int64_t n, float* y)

struct TQ1_0 {
  static constexpr Traits kTraits{
      "tq1_0", "ternary {-1,0,1}, 5 trits per byte, fp16 scale/256", 34, 256, false, "tern_g64"};
  struct Block {
    uint8_t qs[48];
    uint8_t qh[4];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 54);
  LOWBIT_DECLARE_CODEC_T;
};

struct TQ2_0 {
  static constexpr Traits kTraits{
      "tq2_0", "ternary {-1,0,1}, 2 bits each, fp16 scale per 256", 35, 256, false, "tern_g64"};
  struct Block {
    uint8_t qs[64];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 66);
  LOWBIT_DECLARE_CODEC_T;
};

struct BIN1 {
  static constexpr Traits kTraits{"bin1",         "binary sign bits, fp16 scale per 64 (lowbit)",
                                  lowbit_type(3), 64,
                                  false,          "int2_g64"};
  struct Block {
    uint16_t d;
    uint8_t bits[8];
  };
  static_assert(sizeof(Block) == 10);
  LOWBIT_DECLARE_CODEC_T;
};

// Digit n (0..2) of a TQ1_0 byte (TQ1_0::encode packs base-3 digits d0..d4, d0 most
// significant, as ceil(v * 256 / 243); qh's bytes hold four, the fifth 0).
int tq1_digit(uint8_t q, int n);
// The digit (0..2, value + 1) of value e (0..255) of a TQ1_0 block, wherever TQ1_0 places it.
int tq1_code(const TQ1_0::Block& b, int e);

}  // namespace lowbit::formats
