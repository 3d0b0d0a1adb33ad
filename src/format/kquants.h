// ggml's 256-value super-block formats, bit-identical to GGUF. Each super-block has sub-blocks
// whose integer scales multiply one fp16 super-scale (and min scale):
//   Q2_K  {u8 scales[16]; u8 qs[64]; fp16 d, dmin}       16x16: x = d*sc*q - dmin*mn, q 0..3,
//         sc/mn 4 bits each (scales[j] = sc | mn << 4)                                 2.625 bpw
//   Q3_K  {u8 hmask[32]; u8 qs[64]; u8 scales[12]; fp16 d} 16x16: x = d*(s-32)*q, q -4..3, s
//         6 bits; low 2 bits of q+4 in qs, bit 2 in hmask                             3.4375 bpw
//   Q4_K  {fp16 d, dmin; u8 scales[12]; u8 qs[128]}        8x32: x = d*sc*q - dmin*mn, q 0..15,
//         sc/mn 6 bits packed in 12 bytes                                                4.5 bpw
//   Q5_K  {fp16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]} as Q4_K with q 0..31    5.5 bpw
//   Q6_K  {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}   16x16: x = d*sc*q, q -32..31 6.5625 bpw
//   IQ4_XS{fp16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]} 8x32: x = d*(s-32)*kIq4nl[q]  4.25 bpw
//   Q8_K  {f32 d; i8 qs[256]; i16 bsums[16]}  activations for K-quant dots (bsums: sums of 16)
// The exact bit positions are in kquants.cpp next to the pack/unpack code, which is the spec.
#pragma once

#include "format/codec.h"

namespace lowbit::formats {

inline constexpr int64_t kQK = 256;

#define LOWBIT_DECLARE_CODEC                                                  \
  static uint64_t block_bytes(int64_t) { return sizeof(Block); }               \
  static void fit(const float* x, const float* w, int64_t n, void* blk);        \
  static float round_value(float x, const void* blk, int64_t n, int64_t i);     \
  static void encode(const float* x, int64_t n, void* blk);                     \
  static void decode(const void* blk, int64_t n, float* y)

struct Q2_K {
  static constexpr Traits kTraits{"q2_k", "2-bit, 4-bit scales/mins per 16, super-block 256",
                                  10, kQK, false, "q4_0"};
  struct Block {
    uint8_t scales[16];
    uint8_t qs[64];
    uint16_t d, dmin;
  };
  static_assert(sizeof(Block) == 84);
  LOWBIT_DECLARE_CODEC;
};

struct Q3_K {
  static constexpr Traits kTraits{"q3_k", "3-bit, 6-bit scales per 16, super-block 256", 11,
                                  kQK, false, "iq4_nl"};
  struct Block {
    uint8_t hmask[32];
    uint8_t qs[64];
    uint8_t scales[12];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 110);
  LOWBIT_DECLARE_CODEC;
};

struct Q4_K {
  static constexpr Traits kTraits{"q4_k", "4-bit, 6-bit scales/mins per 32, super-block 256",
                                  12, kQK, false, "q5_0"};
  struct Block {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 144);
  LOWBIT_DECLARE_CODEC;
};

struct Q5_K {
  static constexpr Traits kTraits{"q5_k", "5-bit, 6-bit scales/mins per 32, super-block 256",
                                  13, kQK, false, "q5_1"};
  struct Block {
    uint16_t d, dmin;
    uint8_t scales[12];
    uint8_t qh[32];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 176);
  LOWBIT_DECLARE_CODEC;
};

struct Q6_K {
  static constexpr Traits kTraits{"q6_k", "6-bit, 8-bit scales per 16, super-block 256", 14,
                                  kQK, false, "q8_0"};
  struct Block {
    uint8_t ql[128];
    uint8_t qh[64];
    int8_t scales[16];
    uint16_t d;
  };
  static_assert(sizeof(Block) == 210);
  LOWBIT_DECLARE_CODEC;
};

struct IQ4_XS {
  static constexpr Traits kTraits{"iq4_xs", "4-bit non-linear grid, 6-bit scales per 32, 256",
                                  23, kQK, false, "iq4_nl"};
  struct Block {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[4];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 136);
  LOWBIT_DECLARE_CODEC;
};

// lowbit's NF4 with double quantization: QLoRA's idea of quantizing the per-64 absmax scales
// themselves, laid out as a K-quant: {fp16 d; i8 sc[4]; u8 qs[128]}, 4 sub-blocks of 64,
// x = d*sc*kNf4[q]; nibbles of sub-block j in qs[32j .. 32j+31] as in NF4. 4.1875 bpw.
struct NF4_DQ {
  static constexpr Traits kTraits{"nf4_dq", "NF4 with 8-bit scales per 64, fp16 per 256 (lowbit)",
                                  lowbit_type(2), kQK, false, "nf4"};
  struct Block {
    uint16_t d;
    int8_t sc[4];
    uint8_t qs[128];
  };
  static_assert(sizeof(Block) == 134);
  LOWBIT_DECLARE_CODEC;
};

struct Q8_K {
  static constexpr Traits kTraits{"q8_k", "8-bit activations, f32 scale per 256, block sums",
                                  15, kQK, true, "q8_0"};
  struct Block {
    float d;
    int8_t qs[256];
    int16_t bsums[16];
  };
  static_assert(sizeof(Block) == 292);
  LOWBIT_DECLARE_CODEC;
};

}  // namespace lowbit::formats
