// ggml's 32-value block formats, bit-identical to GGUF:
//   Q4_0  {fp16 d; u8 qs[16]}           x = d * (q - 8),  q in 0..15            4.5 bpw
//   Q4_1  {fp16 d, m; u8 qs[16]}        x = d * q + m,    q in 0..15            5.0 bpw
//   Q5_0  {fp16 d; u8 qh[4]; u8 qs[16]} x = d * (q - 16), q in 0..31            5.5 bpw
//   Q5_1  {fp16 d, m; u8 qh[4]; qs[16]} x = d * q + m,    q in 0..31            6.0 bpw
//   Q8_0  {fp16 d; i8 qs[32]}           x = d * q,        q in -127..127        8.5 bpw
//   Q8_1  {fp16 d, s; i8 qs[32]}        x = d * q, s = d * sum(q) (activations) 9.0 bpw
// and IQ4_NL {fp16 d; u8 qs[16]}: x = d * kIq4nl[q] (a non-uniform 16-level grid), 4.5 bpw.
// Nibble layout (Q4_*, Q5_*, IQ4_NL, NF4): value i < N/2 in the low nibble of qs[i], value
// i >= N/2 in the high nibble of qs[i - N/2]. Q5_*: the fifth bit of value i is bit i of qh
// read as a little-endian uint32.
#pragma once

#include <array>

#include "format/codec.h"

namespace lowbit::formats {

inline constexpr std::array<float, 16> kIq4nlValues = {-127, -104, -83, -65, -49, -35, -22, -10,
                                                       1,    13,   25,  38,  53,  69,  89,  113};
// QLoRA's NormalFloat-4: quantiles of N(0,1) normalised to [-1, 1], exact zero included.
inline constexpr std::array<float, 16> kNf4Values = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f};

// Symmetric 4-bit block: one fp16 scale times a 16-level grid (uniform -8..7 or a codebook).
template <int64_t N, typename Grid>
struct Sym4 {
  struct Block {
    uint16_t d;
    uint8_t qs[N / 2];
  };
  static_assert(sizeof(Block) == 2 + N / 2);
  static uint64_t block_bytes(int64_t) { return sizeof(Block); }
  static void fit(const float* x, const float* w, int64_t n, void* blk);
  static float round_value(float x, const void* blk, int64_t n, int64_t i);
  static void encode(const float* x, int64_t n, void* blk);
  static void decode(const void* blk, int64_t n, float* y);
};

struct UniformGrid4 {  // -8..7 stored as q = value + 8
  static fit::IntLevels levels() { return {-8, 7}; }
  static int code(int k) { return k + 8; }
  static float value_of_code(int q) { return float(q - 8); }
};
struct Iq4nlGrid {
  static fit::CodebookLevels levels() { return {kIq4nlValues}; }
  static int code(int k) { return k; }
  static float value_of_code(int q) { return kIq4nlValues[q]; }
};
struct Nf4Grid {
  static fit::CodebookLevels levels() { return {kNf4Values}; }
  static int code(int k) { return k; }
  static float value_of_code(int q) { return kNf4Values[q]; }
};

struct Q4_0 : Sym4<32, UniformGrid4> {
  static constexpr Traits kTraits{"q4_0", "4-bit, fp16 scale per 32 (ggml)", 2, 32, false,
                                  "int4_g32"};
};
struct IQ4_NL : Sym4<32, Iq4nlGrid> {
  static constexpr Traits kTraits{"iq4_nl", "4-bit non-linear grid, fp16 scale per 32 (ggml)",
                                  20, 32, false, "int4_g32"};
};
struct NF4 : Sym4<64, Nf4Grid> {
  static constexpr Traits kTraits{"nf4", "QLoRA NormalFloat-4, fp16 scale per 64 (lowbit)",
                                  lowbit_type(1),
                                  64, false, "int4_g64"};
};

// Affine blocks of 32: x = d * q + m with q of B bits (Q4_1: B = 4, Q5_1: B = 5).
template <int B>
struct Affine32 {
  struct Block {
    uint16_t d, m;
    uint8_t qh[B == 5 ? 4 : 0];
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 4 + (B == 5 ? 4 : 0) + 16);
  static uint64_t block_bytes(int64_t) { return sizeof(Block); }
  static void fit(const float* x, const float* w, int64_t n, void* blk);
  static float round_value(float x, const void* blk, int64_t n, int64_t i);
  static void encode(const float* x, int64_t n, void* blk);
  static void decode(const void* blk, int64_t n, float* y);
};

struct Q4_1 : Affine32<4> {
  static constexpr Traits kTraits{"q4_1", "4-bit, fp16 scale and min per 32 (ggml)", 3, 32,
                                  false, "int4_g32_asym"};
};
struct Q5_1 : Affine32<5> {
  static constexpr Traits kTraits{"q5_1", "5-bit, fp16 scale and min per 32 (ggml)", 7, 32,
                                  false, "int5_g32_asym"};
};

struct Q5_0 {
  static constexpr Traits kTraits{"q5_0", "5-bit, fp16 scale per 32 (ggml)", 6, 32, false,
                                  "int5_g32"};
  struct Block {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[16];
  };
  static_assert(sizeof(Block) == 22);
  static uint64_t block_bytes(int64_t) { return sizeof(Block); }
  static void fit(const float* x, const float* w, int64_t n, void* blk);
  static float round_value(float x, const void* blk, int64_t n, int64_t i);
  static void encode(const float* x, int64_t n, void* blk);
  static void decode(const void* blk, int64_t n, float* y);
};

// 8-bit blocks of 32; Q8_1 adds s = d * sum(q) for dot products with offset formats.
template <bool WithSum>
struct Int8Block32 {
  struct Block {
    uint16_t d;
    uint16_t s[WithSum ? 1 : 0];
    int8_t qs[32];
  };
  static_assert(sizeof(Block) == (WithSum ? 36 : 34));
  static uint64_t block_bytes(int64_t) { return sizeof(Block); }
  static void fit(const float* x, const float* w, int64_t n, void* blk);
  static float round_value(float x, const void* blk, int64_t n, int64_t i);
  static void encode(const float* x, int64_t n, void* blk);
  static void decode(const void* blk, int64_t n, float* y);
};

struct Q8_0 : Int8Block32<false> {
  static constexpr Traits kTraits{"q8_0", "8-bit, fp16 scale per 32 (ggml)", 8, 32, false,
                                  "int8_g32"};
};
struct Q8_1 : Int8Block32<true> {
  static constexpr Traits kTraits{"q8_1", "8-bit activations, fp16 scale and sum per 32 (ggml)",
                                  9, 32, true, "q8_0"};
};

}  // namespace lowbit::formats
