// The load-time layout of lowbit's grouped integer formats (int2..int8, with or without zero
// point; groups and rows of multiples of 32 values) and its tiles. Eight rows are interleaved
// group by group, taking exactly the 8 rows' bytes (8 * row_bytes):
//   per weight group: d[8] fp16 (16 bytes), z[8] u8 (asym only, 8 bytes), then per 32-block the
//   codes as bit planes whose 32-byte vectors hold rows 0..7 in dword lanes (byte 4r + i):
//     P8 (B = 8)          8 vectors, vector m: value 4m + i
//     P4 (B = 4, 5, 6)    4 vectors, vector q: low nibble value 4q + i, high nibble 4q + i + 16
//     P2 (B = 2, 3, 6)    2 vectors, vector q: bits 2j..2j+1 value 4q + i + 8j (j = 0..3)
//     P1 (B = 3, 5)       1 vector: bit m value 4m + i (m = 0..7)
//   the planes in that order, low bits first: B = 6 is P4 | P2 << 4, B = 5 P4 | P1 << 4,
//   B = 3 P2 | P1 << 2. A load, a shift and a mask give the code vector of values 4m..4m+3 of
//   the 8 rows from each plane; one integer dot-accumulate against four broadcast activation
//   bytes advances all 8 rows.
// The sums are the ref tier's (kernels_ref.cpp): per block I_b = sum q * a - z * bsum_b in
// int32, the group's sum over its blocks of da_b * I_b, times dw at the group's end.
// AVX-512 stores groups in pairs (repack16): per weight group both groups' d[16] (32 bytes) and
// z[16] (16), then each 32-byte vector of the first group followed by the second's, so one
// 64-byte load is a 16-row code vector (tile on 16 lanes). An odd last group keeps the 8-row
// layout. B = 8 on AVX2 (no VNNI: maddubs saturates above 127 * 127 * 2) stores q - 128 as
// signed bytes and dots them by the sign trick; every other case stores the unsigned codes.
#pragma once

#include <array>
#include <cstring>
#include <vector>

#include "format/intn.h"
#include "kernel/x86/common.h"
#include "kernel/x86/gemm_x8.h"

namespace lowbit::kernel {
namespace {

// 8-lane vectors on any x86 tier (Ops: the tier's integer dot).
template <typename Ops>
struct Lanes8 {
  using I = __m256i;
  using F = __m256;
  static constexpr int kRows = 8;
  static constexpr bool kGfni = false;  // the AVX2 tier has no GFNI
  LOWBIT_INLINE static I load(const uint8_t* p) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  LOWBIT_INLINE static I and_(I a, I b) { return _mm256_and_si256(a, b); }
  LOWBIT_INLINE static I or_(I a, I b) { return _mm256_or_si256(a, b); }
  LOWBIT_INLINE static I or_and(I a, I b, I m) {
    return _mm256_or_si256(a, _mm256_and_si256(b, m));
  }
  template <int S>
  LOWBIT_INLINE static I srl16(I a) {
    return S == 0 ? a : _mm256_srli_epi16(a, S);
  }
  template <int S>
  LOWBIT_INLINE static I sll16(I a) {
    return S == 0 ? a : _mm256_slli_epi16(a, S);
  }
  LOWBIT_INLINE static I set8(int v) { return _mm256_set1_epi8(char(v)); }
  LOWBIT_INLINE static I set32(int32_t v) { return _mm256_set1_epi32(v); }
  LOWBIT_INLINE static I zero_i() { return _mm256_setzero_si256(); }
  LOWBIT_INLINE static F zero_f() { return _mm256_setzero_ps(); }
  template <bool kSigned>
  LOWBIT_INLINE static I dot(I acc, I c, I a) {
    return kSigned ? Ops::dot_signed_acc(acc, c, a) : Ops::dot_u8s8_acc(acc, c, a);
  }
  LOWBIT_INLINE static I add_i(I a, I b) { return _mm256_add_epi32(a, b); }
  LOWBIT_INLINE static I mullo(I a, I b) { return _mm256_mullo_epi32(a, b); }
  template <int S>
  LOWBIT_INLINE static I sll32(I a) {
    return _mm256_slli_epi32(a, S);
  }
  LOWBIT_INLINE static I shuffle(I table, I idx) { return _mm256_shuffle_epi8(table, idx); }
  LOWBIT_INLINE static I table16(const int8_t* t) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
  }
  LOWBIT_INLINE static F cvt(I a) { return _mm256_cvtepi32_ps(a); }
  LOWBIT_INLINE static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  LOWBIT_INLINE static F set1f(float v) { return _mm256_set1_ps(v); }
  LOWBIT_INLINE static F load_ph(const uint8_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  LOWBIT_INLINE static I load_u8(const uint8_t* p) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  LOWBIT_INLINE static I load_s8(const uint8_t* p) {
    return _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  }
  LOWBIT_INLINE static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  LOWBIT_INLINE static void store(float* y, F v) { _mm256_storeu_ps(y, v); }
};

// 16-lane vectors (AVX-512 only: a template, never instantiated by other tiers).
template <typename = void>
struct Lanes16 {
  using I = __m512i;
  using F = __m512;
  static constexpr int kRows = 16;
  static constexpr bool kGfni = true;
  LOWBIT_INLINE static I load(const uint8_t* p) { return _mm512_loadu_si512(p); }
  // Bits S..S+W-1 of each byte moved to bits T..T+W-1, the others cleared, in one GFNI affine
  // transform (output bit i: the parity of the byte and byte 7 - i of the matrix).
  template <int S, int T, int W>
  LOWBIT_INLINE static I bits_gf(I a) {
    constexpr auto matrix = [] {
      uint64_t m = 0;
      for (int b = 0; b < W; ++b) m |= (uint64_t(1) << (S + b)) << (8 * (7 - (T + b)));
      return int64_t(m);
    }();
    return _mm512_gf2p8affine_epi64_epi8(a, _mm512_set1_epi64(matrix), 0);
  }
  LOWBIT_INLINE static I and_(I a, I b) { return _mm512_and_si512(a, b); }
  LOWBIT_INLINE static I or_(I a, I b) { return _mm512_or_si512(a, b); }
  // a | (b & m) in one instruction (truth table: a 0xF0, b 0xCC, m 0xAA).
  LOWBIT_INLINE static I or_and(I a, I b, I m) { return _mm512_ternarylogic_epi32(a, b, m, 0xF8); }
  template <int S>
  LOWBIT_INLINE static I srl16(I a) {
    return S == 0 ? a : _mm512_srli_epi16(a, S);
  }
  template <int S>
  LOWBIT_INLINE static I sll16(I a) {
    return S == 0 ? a : _mm512_slli_epi16(a, S);
  }
  LOWBIT_INLINE static I set8(int v) { return _mm512_set1_epi8(char(v)); }
  LOWBIT_INLINE static I set32(int32_t v) { return _mm512_set1_epi32(v); }
  LOWBIT_INLINE static I zero_i() { return _mm512_setzero_si512(); }
  LOWBIT_INLINE static F zero_f() { return _mm512_setzero_ps(); }
  template <bool>
  LOWBIT_INLINE static I dot(I acc, I c, I a) {
    return _mm512_dpbusd_epi32(acc, c, a);
  }
  LOWBIT_INLINE static I add_i(I a, I b) { return _mm512_add_epi32(a, b); }
  LOWBIT_INLINE static I mullo(I a, I b) { return _mm512_mullo_epi32(a, b); }
  template <int S>
  LOWBIT_INLINE static I sll32(I a) {
    return _mm512_slli_epi32(a, S);
  }
  LOWBIT_INLINE static I shuffle(I table, I idx) { return _mm512_shuffle_epi8(table, idx); }
  LOWBIT_INLINE static I table16(const int8_t* t) {
    return _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
  }
  LOWBIT_INLINE static F cvt(I a) { return _mm512_cvtepi32_ps(a); }
  LOWBIT_INLINE static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  LOWBIT_INLINE static F set1f(float v) { return _mm512_set1_ps(v); }
  LOWBIT_INLINE static F load_ph(const uint8_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  LOWBIT_INLINE static I load_u8(const uint8_t* p) {
    return _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  LOWBIT_INLINE static I load_s8(const uint8_t* p) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  LOWBIT_INLINE static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  LOWBIT_INLINE static void store(float* y, F v) { _mm512_storeu_ps(y, v); }
};

// What the layout needs of a format: the grouped ints (IntTraits), and the 32-value GGUF blocks
// and NF4 as groups of one block: Q5_0 (B = 5, zero 16), Q4_1 and Q5_1 (B = 4, 5, x = d q + m:
// kAffine, the m of each group in the head after d), IQ4_NL (4-bit codes looked up in its int8
// codebook: one digit plane) and NF4 (blocks of 64, codes looked up in kNf4Int: two digit planes).
// A group's bytes in the file: at group(row, g, G), its fp16 d first (then z or m), its codes at
// codes_of(group, g) read by code(codes, i).
template <typename Fmt>
struct XTraits : IntTraits<Fmt> {
  static constexpr int kBookDigits = 0;  // codebook digit planes (0: the codes are the values)
  static constexpr bool kAffine = false, kScaleInt8 = false;
  static constexpr int64_t kGroup = 0;         // 0: the Format's group (Acts::wgroup)
  static constexpr int64_t kX8BlockBytes = 0;  // 0: the layout takes the rows' own bytes
  static const uint8_t* group(const uint8_t* row, int64_t g, int64_t G) {
    return row + g * (IntTraits<Fmt>::kHeadBytes + G * IntTraits<Fmt>::kBits / 8);
  }
  static const uint8_t* codes_of(const uint8_t* grp, int64_t) {
    return grp + IntTraits<Fmt>::kHeadBytes;
  }
  static int code(const uint8_t* codes, int64_t i) {
    return formats::read_int_code<IntTraits<Fmt>::kBits>(codes, i);
  }
};
// Fixed blocks of kGroup values {kHeadBytes of fp16 d (and m); codes}.
template <int B, int64_t kBlock, int64_t kHead, int64_t kBlockBytes>
struct XBlockTraits {
  static constexpr bool kIs = true, kAsym = false, kAffine = false, kScaleInt8 = false;
  static constexpr int kBits = B, kBookDigits = 0;
  static constexpr int64_t kHeadBytes = kHead, kGroup = kBlock, kX8BlockBytes = 0;
  static const uint8_t* group(const uint8_t* row, int64_t g, int64_t) {
    return row + g * kBlockBytes;
  }
  static const uint8_t* codes_of(const uint8_t* grp, int64_t) { return grp + kHead; }
  static uint64_t row_bytes(int64_t K, int64_t) { return uint64_t(K / kBlock * kBlockBytes); }
  static int nibble(const uint8_t* qs, int64_t i) {  // value i < N/2 low nibbles, then high
    return i < kBlock / 2 ? qs[i] & 15 : qs[i - kBlock / 2] >> 4;
  }
};
template <>
struct XTraits<formats::NF4> : XBlockTraits<4, 64, 2, 34> {
  static constexpr int kBookDigits = 2;
  static constexpr float kOutScale = 1.0f / float(kNf4IntScale);
  static constexpr int32_t book(int i) { return kNf4Int[size_t(i)]; }
  static int code(const uint8_t* qs, int64_t i) { return nibble(qs, i); }
};
template <>
struct XTraits<formats::IQ4_NL> : XBlockTraits<4, 32, 2, 18> {
  static constexpr int kBookDigits = 1;
  static constexpr float kOutScale = 1.0f;
  static constexpr int32_t book(int i) { return int32_t(formats::kIq4nlValues[size_t(i)]); }
  static int code(const uint8_t* qs, int64_t i) { return nibble(qs, i); }
};
// Q5_0 / Q5_1 codes: {u8 qh[4]; u8 qs[16]}, bit 5 of value i is bit i of qh (little-endian).
inline int q5_code(const uint8_t* c, int64_t i) {
  const int lo = i < 16 ? c[4 + i] & 15 : c[4 + i - 16] >> 4;
  return lo | ((c[i / 8] >> (i % 8)) & 1) << 4;
}
template <>
struct XTraits<formats::Q5_0> : XBlockTraits<5, 32, 2, 22> {
  static int code(const uint8_t* c, int64_t i) { return q5_code(c, i); }
};
template <>
struct XTraits<formats::Q4_1> : XBlockTraits<4, 32, 4, 20> {
  static constexpr bool kAffine = true;
  static int code(const uint8_t* qs, int64_t i) { return nibble(qs, i); }
};
template <>
struct XTraits<formats::Q5_1> : XBlockTraits<5, 32, 4, 24> {
  static constexpr bool kAffine = true;
  static int code(const uint8_t* c, int64_t i) { return q5_code(c, i); }
};

// BIN1: blocks of 64 sign bits {fp16 d; u8 bits[8]}, x = d * (2q - 1): one bit plane whose
// stored code is 2q, zero point 1.
template <>
struct XTraits<formats::BIN1> : XBlockTraits<1, 64, 2, 10> {
  static int code(const uint8_t* c, int64_t i) { return (c[i / 8] >> (i % 8)) & 1; }
};
// NF4_DQ: super-blocks of 256 {fp16 d; i8 sc[4]; u8 qs[128]}, sub-block j of 64 scaled by
// d * sc[j] (an exact float product), codes as NF4's per 64 at qs + 32j. Groups are the
// sub-blocks; each group's head holds d and sc (24 bytes per 8 rows): 140 bytes per row and
// super-block against the file's 134 (+4.5%).
template <>
struct XTraits<formats::NF4_DQ> : XBlockTraits<4, 64, 2, 0> {
  static constexpr int kBookDigits = 2;
  static constexpr bool kScaleInt8 = true;
  static constexpr float kOutScale = 1.0f / float(kNf4IntScale);
  static constexpr int64_t kX8BlockBytes = 4 * (24 + 2 * 128);  // per 256 values, 8 rows
  static uint64_t row_bytes(int64_t K, int64_t) { return uint64_t(K / 256 * 134); }
  static const uint8_t* group(const uint8_t* row, int64_t g, int64_t) { return row + g / 4 * 134; }
  static int8_t scale_of(const uint8_t* grp, int64_t g) { return int8_t(grp[2 + g % 4]); }
  static const uint8_t* codes_of(const uint8_t* grp, int64_t g) { return grp + 6 + 32 * (g % 4); }
  static constexpr int32_t book(int i) { return kNf4Int[size_t(i)]; }
  static int code(const uint8_t* qs, int64_t i) { return i < 32 ? qs[i] & 15 : qs[i - 32] >> 4; }
};

template <typename Ops, typename Fmt>
struct XInt {
  using Tr = XTraits<Fmt>;
  static constexpr int kDigits = Tr::kBookDigits;
  static constexpr bool kBook = kDigits > 0, kAffine = Tr::kAffine;
  // Codebook digits as stored: + kBookShift (u8 for vpdpbusd; AVX2 keeps them signed).
  static constexpr int kBookShift = Ops::kSignedOffset;
  static constexpr int kB = Tr::kBits;
  static constexpr bool kAsym = Tr::kAsym;
  static constexpr bool kP8 = kB == 8, kP4 = kB == 4 || kB == 5 || kB == 6,
                        kP2 = kB == 2 || kB == 3 || kB == 6, kP1 = kB == 1 || kB == 3 || kB == 5;
  // Plane offsets in 32-byte vectors within a block's codes; a block is kB vectors.
  static constexpr int kV2 = kP4 ? 4 : 0, kV1 = kV2 + (kP2 ? 2 : 0);
  static constexpr int kS2 = kP4 ? 4 : 0;  // P2 holds bits kS2, kS2 + 1
  // P1 holds bit kSrc1 of the code, placed at bit kS1 (B = 1: code 2q, see BIN1).
  static constexpr int kS1 = kP4 ? 4 : kP2 ? 2 : 1, kSrc1 = kB == 1 ? 0 : kS1;
  static constexpr bool kSignedCodes =
      (kB == 8 || kBook) && Ops::kSignedOffset == 0;     // AVX2: int8, codebook digits
  static constexpr int kShift = kSignedCodes ? 128 : 0;  // stored code = q - kShift
  // A group's head, 8 rows: d[8] fp16, then z[8] u8 (asym), sc[8] i8 (kScaleInt8) or m[8]
  // fp16 (affine).
  static constexpr int64_t kHead8 = kAsym || Tr::kScaleInt8 ? 24 : kAffine ? 32 : 16;
  // Bytes of 8 rows of K values in the layout.
  static uint64_t layout_bytes(int64_t K, int64_t G) {
    if constexpr (Tr::kX8BlockBytes != 0) return uint64_t(K / 256 * Tr::kX8BlockBytes);
    return 8 * Tr::row_bytes(K, G);
  }

  // ---- repacking ---------------------------------------------------------------------------

  // Block b (32 values) of a group of 8 rows: codes q[r][i] -> the planes, vector v at
  // out + v * vstride.
  static void pack_block(const int (&q)[8][32], uint8_t* out, int64_t vstride) {
    auto at = [&](int v, int r, int i) -> uint8_t& { return out[v * vstride + 4 * r + i]; };
    for (int r = 0; r < 8; ++r) {
      for (int i = 0; i < 4; ++i) {
        if constexpr (kP8) {
          for (int m = 0; m < 8; ++m) at(m, r, i) = uint8_t(q[r][4 * m + i] - kShift);
        }
        if constexpr (kP4) {
          for (int v = 0; v < 4; ++v)
            at(v, r, i) = uint8_t((q[r][4 * v + i] & 15) | (q[r][4 * v + i + 16] & 15) << 4);
        }
        if constexpr (kP2) {
          for (int v = 0; v < 2; ++v) {
            int byte = 0;
            for (int j = 0; j < 4; ++j) byte |= ((q[r][4 * v + i + 8 * j] >> kS2) & 3) << (2 * j);
            at(kV2 + v, r, i) = uint8_t(byte);
          }
        }
        if constexpr (kP1) {
          int byte = 0;
          for (int m = 0; m < 8; ++m) byte |= ((q[r][4 * m + i] >> kSrc1) & 1) << m;
          at(kV1, r, i) = uint8_t(byte);
        }
      }
    }
  }

  // Rows rows[0..8) (K values, groups of G) as one 8-row group of the layout, with the
  // vectors vstride apart and the first at + half, scales at + dhalf (pairs: 2 groups' worth).
  static void pack_rows(const uint8_t* const (&rows)[8], int64_t K, int64_t G, uint8_t* out,
                        int64_t vstride, int64_t half, int64_t pairs) {
    if constexpr (Tr::kGroup != 0) G = Tr::kGroup;
    for (int64_t k0 = 0, g = 0; k0 < K; k0 += G, ++g) {
      const int64_t n = std::min(G, K - k0);
      // Scales: d[8] (pairs: d[16], the second group's at + 16), then z[8] / sc[8] (pairs: 16)
      // or m[8] fp16 (pairs: 16).
      const int64_t dpos = (half / 32) * 16, zpos = 16 * pairs + (half / 32) * 8;
      const uint8_t* codes[8];
      for (int r = 0; r < 8; ++r) {
        const uint8_t* grp = Tr::group(rows[r], g, G);
        codes[r] = Tr::codes_of(grp, g);
        std::memcpy(out + dpos + 2 * r, grp, 2);
        if constexpr (kAsym) out[zpos + r] = grp[2];
        if constexpr (Tr::kScaleInt8) out[zpos + r] = uint8_t(Tr::scale_of(grp, g));
        if constexpr (kAffine) std::memcpy(out + 16 * pairs + dpos + 2 * r, grp + 2, 2);
      }
      uint8_t* dst = out + pairs * kHead8;
      for (int64_t b = 0; b < n / 32; ++b) {
        int q[8][32];
        for (int r = 0; r < 8; ++r) {
          for (int i = 0; i < 32; ++i) q[r][i] = Tr::code(codes[r], 32 * b + i);
        }
        pack_block(q, dst + b * kB * vstride + half, vstride);
      }
      out += pairs * kHead8 + (n / 32) * kB * vstride;
    }
  }

  // RepackFn: rows [0, 8) of w, and rows [0, 16) as a pair.
  static void repack(const uint8_t* w, uint64_t rb, int64_t K, int64_t G, uint8_t* out) {
    const uint8_t* rows[8];
    for (int r = 0; r < 8; ++r) rows[r] = w + uint64_t(r) * rb;
    pack_rows(rows, K, G, out, 32, 0, 1);
  }
  static void repack16(const uint8_t* w, uint64_t rb, int64_t K, int64_t G, uint8_t* out) {
    for (int h = 0; h < 2; ++h) {
      const uint8_t* rows[8];
      for (int r = 0; r < 8; ++r) rows[r] = w + uint64_t(8 * h + r) * rb;
      pack_rows(rows, K, G, out, 64, 32 * h, 2);
    }
  }

  // ---- tiles -------------------------------------------------------------------------------

  // ((v >> S) & mask) << T for a mask of bits T.. (the bits stay within their byte).
  template <typename V, int S, int T>
  LOWBIT_INLINE static typename V::I bits(typename V::I v, typename V::I mask) {
    if constexpr (S >= T)
      return V::and_(V::template srl16<S - T>(v), mask);
    else
      return V::and_(V::template sll16<T - S>(v), mask);
  }

  // c = ((v >> S) & mask) << T (mask: W bits from T), or c |= that when kOr (one ternary-logic
  // op on AVX-512; without kOr one GFNI transform there). 1-bit codes need a fresh code vector
  // for every dot, and GFNI shares Zen 4's two dot-accumulate pipes: every other vector takes
  // the shift and mask (two ops on the other pipes). BIN1, one core from L2, one token, against
  // all-GFNI in four builds: 14.6-15.0 -> 16.2-17.9 GB/s. For 2 and 3 bits the builds disagreed
  // by more than the change (code placement moves these loops by up to 20%), so they keep GFNI.
  template <typename V, int S, int T, bool kOr, int W>
  LOWBIT_INLINE static void merge(typename V::I& c, typename V::I v, typename V::I mask) {
    if constexpr (!kOr && V::kGfni && (kB > 1 || S % 2 == 0)) {
      c = V::template bits_gf<S, T, W>(v);
      return;
    }
    const typename V::I sh = S >= T ? V::template srl16<(S >= T ? S - T : 0)>(v)
                                    : V::template sll16<(S < T ? T - S : 0)>(v);
    c = kOr ? V::or_and(c, sh, mask) : V::and_(sh, mask);
  }

  // The block's 8 code vectors (values 4m..4m+3 of each row) from its planes at p.
  template <typename V>
  LOWBIT_INLINE static void codes(const uint8_t* p, typename V::I (&c)[8]) {
    constexpr int64_t vs = 4 * V::kRows;  // bytes per vector
    if constexpr (kP8) {
      LOWBIT_UNROLL for (int m = 0; m < 8; ++m) c[m] = V::load(p + vs * m);
      return;
    }
    if constexpr (kP4) {
      const auto lo = V::set8(0x0F);
      LOWBIT_UNROLL for (int v = 0; v < 4; ++v) {
        const auto x = V::load(p + vs * v);
        c[v] = V::and_(x, lo);
        if constexpr (V::kGfni)
          c[v + 4] = V::template bits_gf<4, 0, 4>(x);
        else
          c[v + 4] = V::and_(V::template srl16<4>(x), lo);
      }
    }
    if constexpr (kP2) {
      const auto mask = V::set8(3 << kS2);
      LOWBIT_UNROLL for (int v = 0; v < 2; ++v) {
        const auto x = V::load(p + vs * (kV2 + v));
        merge<V, 0, kS2, kP4, 2>(c[v], x, mask);
        merge<V, 2, kS2, kP4, 2>(c[v + 2], x, mask);
        merge<V, 4, kS2, kP4, 2>(c[v + 4], x, mask);
        merge<V, 6, kS2, kP4, 2>(c[v + 6], x, mask);
      }
    }
    if constexpr (kP1) {
      const auto mask = V::set8(1 << kS1);
      const auto x = V::load(p + vs * kV1);
      constexpr bool kOr = kP4 || kP2;
      merge<V, 0, kS1, kOr, 1>(c[0], x, mask);
      merge<V, 1, kS1, kOr, 1>(c[1], x, mask);
      merge<V, 2, kS1, kOr, 1>(c[2], x, mask);
      merge<V, 3, kS1, kOr, 1>(c[3], x, mask);
      merge<V, 4, kS1, kOr, 1>(c[4], x, mask);
      merge<V, 5, kS1, kOr, 1>(c[5], x, mask);
      merge<V, 6, kS1, kOr, 1>(c[6], x, mask);
      merge<V, 7, kS1, kOr, 1>(c[7], x, mask);
    }
  }

  // The codebook's digit tables (16 bytes, broadcast to every 128-bit lane), made at compile
  // time: value = 256 * hi + lo for two digits (lo in -128..127), value = lo for one; each
  // + kBookShift.
  static constexpr std::array<int8_t, 16> digits(bool hi) {
    std::array<int8_t, 16> tab{};
    for (int i = 0; i < 16; ++i) {
      const int32_t v = Tr::book(i), lo = kDigits == 1 ? v : ((v + 128) & 255) - 128;
      tab[size_t(i)] = int8_t(uint8_t((hi ? (v - lo) / 256 : lo) + kBookShift));
    }
    return tab;
  }
  static constexpr std::array<int8_t, 16> kHiDigits =
      kDigits == 2 ? digits(true) : std::array<int8_t, 16>{};
  static constexpr std::array<int8_t, 16> kLoDigits =
      kBook ? digits(false) : std::array<int8_t, 16>{};

  // A block's integer sum isum (as float) with activation scale da: into the token's group sum
  // accg (times dw at the group's end), or with kFold straight into acc as isum * (dw * da).
  template <typename V, bool kFold>
  LOWBIT_INLINE static void add_block(typename V::F& acc, typename V::F& accg, typename V::F isum,
                                      typename V::F dw, float da) {
    if constexpr (kFold)
      acc = V::fma(isum, V::mul(dw, V::set1f(da)), acc);
    else
      accg = V::fma(isum, V::set1f(da), accg);
  }

  // kG: the group length when known at compile time (0: Tr::kGroup or a.wgroup): with it the
  // block loop of a group unrolls (int4_g32 one core from L2, 512x1024: 49 -> 56 GB/s, int4_g128 52
  // -> 63).
  template <typename V, int T, int64_t kG = 0>
  static void tile(const uint8_t* g, const Acts& a, const int32_t* nbs, float* y, int64_t ldy) {
    const int64_t K = a.K, G = kG ? kG : Tr::kGroup ? Tr::kGroup : a.wgroup, nb = K / 32;
    constexpr int64_t pairs = V::kRows / 8, vs = 4 * V::kRows;
    typename V::F acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = V::zero_f();
    typename V::I thi = V::zero_i(), tlo = V::zero_i();
    if constexpr (kDigits == 2) thi = V::table16(kHiDigits.data());
    if constexpr (kBook) tlo = V::table16(kLoDigits.data());
    const uint8_t* p = g;
    for (int64_t k0 = 0; k0 < K; k0 += G) {
      const int64_t nbg = std::min(G, K - k0) / 32;
      typename V::F dw = V::load_ph(p);
      if constexpr (Tr::kScaleInt8) dw = V::mul(dw, V::cvt(V::load_s8(p + 16 * pairs)));
      typename V::I zv = V::zero_i();
      if constexpr (kAsym) zv = V::load_u8(p + 16 * pairs);
      typename V::F mv = V::zero_f();
      if constexpr (kAffine) mv = V::load_ph(p + 16 * pairs);
      // What the stored codes' sum is too high by, per unit of bsum: the symmetric zero point,
      // or the codebook's shift; nothing for affine codes (their m term is added at the end).
      constexpr int32_t kZOff = kBook ? kBookShift : kAffine ? 0 : (1 << (kB - 1)) - kShift;
      p += pairs * kHead8;
      // One token: the group's sum in accg, times dw at its end. Several: dw * da_b per block
      // straight into acc, as T more registers held over the group's blocks spill at T = 8
      // (int4_g128, 128 tokens, one core: 255-262 -> 294-306 GFLOP/s, as int4_g32's).
      constexpr bool kFold = T > 1;
      typename V::F accg[T];
      if constexpr (!kFold) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) accg[t] = V::zero_f();
      }
      for (int64_t bb = 0; bb < nbg; ++bb, p += kB * vs) {
        const int64_t b = k0 / 32 + bb;
        typename V::I c[8];
        codes<V>(p, c);
        if constexpr (kDigits == 2) {  // I = 256 * (Sh - shift * bsum) + (Sl - shift * bsum)
          typename V::I h[8];
          LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
            h[m] = V::shuffle(thi, c[m]);
            c[m] = V::shuffle(tlo, c[m]);
          }
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
            const int8_t* at = a.qs + t * K + b * 32;
            typename V::I sh = V::zero_i(), sl = V::set32(257 * kZOff * nbs[t * nb + b]);
            LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
              int32_t am;
              std::memcpy(&am, at + 4 * m, 4);
              const typename V::I av = V::set32(am);
              sh = V::template dot<kSignedCodes>(sh, h[m], av);
              sl = V::template dot<kSignedCodes>(sl, c[m], av);
            }
            const typename V::I isum = V::add_i(V::template sll32<8>(sh), sl);
            add_block<V, kFold>(acc[t], accg[t], V::cvt(isum), dw, a.d[t * nb + b]);
          }
        } else {
          if constexpr (kDigits == 1) {
            LOWBIT_UNROLL for (int m = 0; m < 8; ++m) c[m] = V::shuffle(tlo, c[m]);
          }
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
            const int8_t* at = a.qs + t * K + b * 32;
            const int32_t o = nbs[t * nb + b];
            typename V::I s[2] = {kAsym ? V::mullo(zv, V::set32(o)) : V::set32(kZOff * o),
                                  V::zero_i()};
            LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
              int32_t am;
              std::memcpy(&am, at + 4 * m, 4);
              s[m % 2] = V::template dot<kSignedCodes>(s[m % 2], c[m], V::set32(am));
            }
            add_block<V, kFold>(acc[t], accg[t], V::cvt(V::add_i(s[0], s[1])), dw, a.d[t * nb + b]);
          }
        }
      }
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        if constexpr (!kFold) acc[t] = V::fma(accg[t], dw, acc[t]);
        if constexpr (kAffine) {  // + m * sum of the group's activations (one block: s_b)
          static_assert(Tr::kGroup == 32);
          acc[t] = V::fma(mv, V::set1f(a.s[t * nb + k0 / 32]), acc[t]);
        }
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
      if constexpr (kDigits == 2) acc[t] = V::fma(acc[t], V::set1f(Tr::kOutScale), V::zero_f());
      V::store(y + t * ldy, acc[t]);
    }
  }

  // GemmX8Fn: the common group lengths as compile-time constants.
  template <int kT>
  static void gemm(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    if constexpr (Tr::kGroup == 0) {
      switch (a.wgroup) {
        case 32:
          return gemm_g<kT, 32>(packed, groups, a, y, ldy);
        case 64:
          return gemm_g<kT, 64>(packed, groups, a, y, ldy);
        case 128:
          return gemm_g<kT, 128>(packed, groups, a, y, ldy);
        default:
          break;
      }
    }
    gemm_g<kT, 0>(packed, groups, a, y, ldy);
  }
  template <int kT, int64_t kG>
  static void gemm_g(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32;
    const uint64_t group_bytes = layout_bytes(a.K, a.wgroup);
    // NF4 holds a block's two digit planes across the tokens: tiles of 4 fit the registers.
    thread_local std::vector<int32_t> nbs;
    nbs.resize(size_t(a.n * nb));
    for (int64_t i = 0; i < a.n * nb; ++i) nbs[size_t(i)] = -int32_t(a.bsums[i]);
    int64_t gi = 0;
    if constexpr (Ops::kX8Wide) {
      for (; gi + 2 <= groups; gi += 2) {
        const uint8_t* g = packed + uint64_t(gi) * group_bytes;
        float* yg = y + 8 * gi;
        const auto run = [&]<int T>(int64_t t) {
          tile<Lanes16<>, T, kG>(g, a.from(t), nbs.data() + t * nb, yg + t * ldy, ldy);
        };
        if constexpr (kDigits == 2) {
          int64_t t = 0;
          for (; t + 4 <= a.n; t += 4) run.template operator()<4>(t);
          for (; t < a.n; ++t) run.template operator()<1>(t);
        } else {
          wide_token_tiles(a.n, run);
        }
      }
    }
    for (; gi < groups; ++gi) {
      const uint8_t* g = packed + uint64_t(gi) * group_bytes;
      float* yg = y + 8 * gi;
      int64_t t = 0;
      for (; t + kT <= a.n; t += kT)
        tile<Lanes8<Ops>, kT, kG>(g, a.from(t), nbs.data() + t * nb, yg + t * ldy, ldy);
      for (; t < a.n; ++t)
        tile<Lanes8<Ops>, 1, kG>(g, a.from(t), nbs.data() + t * nb, yg + t * ldy, ldy);
    }
  }

  // GemmFn on the file layout (rows left in place, matmul without a prepared copy): 8 rows at
  // a time repacked into a per-thread buffer (a short last set padded with its last row) and
  // run through the 8-row tiles. Activations in order.
  template <int kT>
  static void gemm_rows(const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y,
                        int64_t ldy) {
    thread_local std::vector<uint8_t> buf;
    thread_local std::vector<float> ybuf;
    buf.resize(layout_bytes(a.K, a.wgroup));
    ybuf.resize(size_t(8 * a.n));
    for (int64_t r0 = 0; r0 < rows; r0 += 8) {
      const int64_t nr = std::min<int64_t>(8, rows - r0);
      const uint8_t* rp[8];
      for (int r = 0; r < 8; ++r) rp[r] = w + uint64_t(r0 + std::min<int64_t>(r, nr - 1)) * rb;
      pack_rows(rp, a.K, a.wgroup, buf.data(), 32, 0, 1);
      gemm<kT>(buf.data(), 1, a, ybuf.data(), 8);  // one group: the 8-lane tiles
      for (int64_t t = 0; t < a.n; ++t)
        std::memcpy(y + t * ldy + r0, ybuf.data() + 8 * t, size_t(nr) * 4);
    }
  }
};

}  // namespace
}  // namespace lowbit::kernel
