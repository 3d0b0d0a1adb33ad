// The load-time "x8" layout of Q4_0, Q8_0 and Q4_K rows, and its tiles (float rows: gemm_x8f.h).
// Eight rows are interleaved block by block: block-group b holds block b of each of the 8 rows,
//   d[8]     the 8 rows' fp16 scales (16 bytes), then the codes, arranged so that the 32 bytes
//            at 32m hold values 4m..4m+3 of rows 0..7 (row r in dword lane r):
//   Q4_0     128 bytes: byte 32q + 4r + i = byte 4q + i of row r's block, whose low nibble is
//            value 4q + i and high nibble value 4q + i + 16 (a load, a mask and a shift give the
//            code vectors of value groups q and q + 4);
//   Q8_0     256 bytes: byte 32m + 4r + i = value 4m + i of row r, through the tier's
//            prep_signed (VNNI: + 128 as u8, so the dot subtracts 128 * sum(q)).
//   Q4_K     per super-block of 256 values (X8Q4K below): d[8], dmin[8], the six-bit scales
//            and mins unpacked to bytes, then 4 x 256 bytes of nibbles, each 256 holding a
//            64-value chunk: byte 32q + 4r + i = byte 4q + i of row r's chunk (low nibbles:
//            the chunk's first sub-block, high nibbles its second). 1184 bytes per 8 rows
//            instead of 1152 (+2.8%).
// A Q4_0 / Q8_0 group takes exactly the 8 rows' bytes. One pass reads a single stream, and one
// integer dot-accumulate against four broadcast activation bytes advances all 8 rows; a block ends
// in one convert and one multiply-add of the 8 rows' dw * da, with no horizontal sums. The formats
// keep their file layout on disk; only the engine's in-memory copy is repacked (PreparedMatrix).
// AVX-512 stores groups in pairs (repack16: per block, the 16 rows' scales, then the two groups'
// 32-byte code vectors side by side), so one 64-byte load is a 16-row code vector and each
// broadcast activation word feeds one 16-row dot-accumulate (tile2z, every token count for Q4_0
// and Q8_0; Q4_K's single tokens run tile_one2, two 8-lane groups sharing each broadcast). A pair
// is read front to back as one stream; an odd last group keeps the 8-row layout.
#pragma once

#include <array>
#include <utility>

#include <cstring>
#include <vector>

#include "format/kquants.h"
#include "format/legacy.h"
#include "kernel/block_scales.h"
#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

inline constexpr int64_t kX8Rows = 8;

// The token loop of the 16-lane pair tiles: run<8>(t) over tiles of 8 tokens, then one of 4, then
// single tokens (run<T>(t) covers tokens t .. t + T - 1).
template <typename Run>
void wide_token_tiles(int64_t n, Run&& run) {
  int64_t t = 0;
  for (; t + 8 <= n; t += 8) run.template operator()<8>(t);
  if (t + 4 <= n) run.template operator()<4>(t), t += 4;
  for (; t < n; ++t) run.template operator()<1>(t);
}

// Two groups' 8 values in the halves of one 16-value vector (AVX-512): rows 0..7 of the group at
// p0 in lanes 0..7, those of the group at p1 in lanes 8..15.
template <int = 0>  // a template: tiers without AVX-512 never instantiate it
LOWBIT_INLINE __m256i join128(const uint8_t* p0, const uint8_t* p1) {
  return _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p0))),
      _mm_loadu_si128(reinterpret_cast<const __m128i*>(p1)), 1);
}

template <typename T, typename Ops>
struct X8Layout {
  static constexpr bool kHas = false;
};

template <typename Ops>
struct X8Layout<formats::Q4_0, Ops> {
  using Block = formats::Q4_0::Block;
  static constexpr bool kHas = true;
  static constexpr int kCodeBytes = 128, kOff = 8;
  static void pack(const Block* const (&blk)[8], uint8_t* out) {
    for (int q = 0; q < 4; ++q) {
      for (int r = 0; r < 8; ++r) std::memcpy(out + 32 * q + 4 * r, blk[r]->qs + 4 * q, 4);
    }
  }
  LOWBIT_INLINE static void codes(const uint8_t* p, __m256i (&c)[8]) {
    const __m256i lo = _mm256_set1_epi8(0x0F);
    LOWBIT_UNROLL for (int q = 0; q < 4; ++q) {
      const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * q));
      c[q] = _mm256_and_si256(v, lo);
      c[q + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo);
    }
  }
  LOWBIT_INLINE static __m256i dot_acc(__m256i acc, __m256i c, __m256i a) {
    return Ops::dot_u8s8_acc(acc, c, a);
  }
  // A pair's 16-row code vectors (AVX-512; repack16's codes at p: 64 bytes per value group).
  LOWBIT_INLINE static void codes16(const uint8_t* p, __m512i (&c)[8]) {
    const __m512i lo = _mm512_set1_epi8(0x0F);
    LOWBIT_UNROLL for (int q = 0; q < 4; ++q) {
      const __m512i v = _mm512_loadu_si512(p + 64 * q);
      c[q] = _mm512_and_si512(v, lo);
      c[q + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo);
    }
  }
};

template <typename Ops>
struct X8Layout<formats::Q8_0, Ops> {
  using Block = formats::Q8_0::Block;
  static constexpr bool kHas = true;
  static constexpr int kCodeBytes = 256, kOff = Ops::kSignedOffset;
  static void pack(const Block* const (&blk)[8], uint8_t* out) {
    for (int m = 0; m < 8; ++m) {
      alignas(32) uint8_t v[32];
      for (int r = 0; r < 8; ++r) std::memcpy(v + 4 * r, blk[r]->qs + 4 * m, 4);
      const __m256i pv = Ops::prep_signed(_mm256_load_si256(reinterpret_cast<const __m256i*>(v)));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * m), pv);
    }
  }
  LOWBIT_INLINE static void codes(const uint8_t* p, __m256i (&c)[8]) {
    LOWBIT_UNROLL for (int m = 0; m < 8; ++m) c[m] =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * m));
  }
  LOWBIT_INLINE static __m256i dot_acc(__m256i acc, __m256i c, __m256i a) {
    return Ops::dot_signed_acc(acc, c, a);
  }
  // A pair's 16-row code vectors (AVX-512, whose prep_signed is + 128: u8 codes for vpdpbusd).
  LOWBIT_INLINE static void codes16(const uint8_t* p, __m512i (&c)[8]) {
    LOWBIT_UNROLL for (int m = 0; m < 8; ++m) c[m] = _mm512_loadu_si512(p + 64 * m);
  }
};

template <typename Ops, typename L>
struct X8Tiles {
  using Block = typename L::Block;
  static constexpr int64_t kGroupBytes = 16 + L::kCodeBytes;  // per block index
  static constexpr int64_t kBlock = 32;
  static_assert(kGroupBytes == kX8Rows * int64_t(sizeof(Block)));

  // Rows [0, 8) of w (row_bytes rb, K values) -> out (8 * rb bytes).
  static void repack(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    repack_strided(w, rb, K, out, kGroupBytes, 0, 16, 32);
  }
  // Rows [0, 16) as a pair of groups, per block: the 16 rows' fp16 scales (32 bytes), then the
  // two groups' 32-byte code vectors side by side (vector m at 32 + 64m, the first group's in
  // the low half): one 64-byte load is a 16-row code vector, and a pair is read as one stream.
  static void repack16(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    repack_strided(w, rb, K, out, 2 * kGroupBytes, 0, 32, 64);
    repack_strided(w + 8 * rb, rb, K, out, 2 * kGroupBytes, 16, 64, 64);
  }
  // Block b of rows [0, 8) at out + b * stride: the scales at + head, code vector m (32 bytes)
  // at + codes + m * v_stride.
  static void repack_strided(const uint8_t* w, uint64_t rb, int64_t K, uint8_t* out, int64_t stride,
                             int64_t head, int64_t codes, int64_t v_stride) {
    const Block* blk[8];
    for (int r = 0; r < 8; ++r) blk[r] = reinterpret_cast<const Block*>(w + uint64_t(r) * rb);
    for (int64_t b = 0; b < K / 32; ++b) {
      uint8_t* g = out + b * stride;
      const Block* at[8];
      for (int r = 0; r < 8; ++r) {
        at[r] = blk[r] + b;
        std::memcpy(g + head + 2 * r, &at[r]->d, 2);
      }
      alignas(32) uint8_t packed[L::kCodeBytes];
      L::pack(at, packed);
      for (int m = 0; m < L::kCodeBytes / 32; ++m)
        std::memcpy(g + codes + m * v_stride, packed + 32 * m, 32);
    }
  }

  // One group (8 rows) times T tokens: y[t * ldy + r] for row r. off: -kOff * sum(q) of each
  // (token, block), as a.bsums. Even and odd value groups accumulate in two chains so the
  // dot-accumulates overlap.
  template <int T>
  static void tile(const uint8_t* g, const Acts& a, const int32_t* off, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32;
    __m256 acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = g + b * kGroupBytes;
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      __m256i c[8];
      L::codes(p + 16, c);
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const int8_t* at = a.qs + t * a.K + b * 32;
        __m256i s[2] = {L::kOff != 0 ? _mm256_set1_epi32(off[t * nb + b]) : _mm256_setzero_si256(),
                        _mm256_setzero_si256()};
        LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
          int32_t am;
          std::memcpy(&am, at + 4 * m, 4);
          s[m % 2] = L::dot_acc(s[m % 2], c[m], _mm256_set1_epi32(am));
        }
        const __m256 da = _mm256_set1_ps(a.d[t * nb + b]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s[0], s[1])),
                                 _mm256_mul_ps(dw, da), acc[t]);
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy, acc[t]);
  }

  // Two groups (16 rows, group_bytes apart) times T tokens on 16-lane vectors (AVX-512): the
  // groups' codes joined in one vector, so each broadcast activation word feeds one 16-row
  // dot-accumulate (two chains per token), and one convert and multiply-add end a block for both.
  template <int T>
  static void tile2z(const uint8_t* g, const Acts& a, const int32_t* off, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32;
    __m512 acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
      const uint8_t* p = g + b * 2 * kGroupBytes;  // repack16's pair
      const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      __m512i c[8];
      L::codes16(p + 32, c);
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const int8_t* at = a.qs + t * a.K + b * 32;
        __m512i s[2] = {L::kOff != 0 ? _mm512_set1_epi32(off[t * nb + b]) : _mm512_setzero_si512(),
                        _mm512_setzero_si512()};
        LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
          int32_t am;
          std::memcpy(&am, at + 4 * m, 4);
          s[m % 2] = _mm512_dpbusd_epi32(s[m % 2], c[m], _mm512_set1_epi32(am));
        }
        const __m512 da = _mm512_set1_ps(a.d[t * nb + b]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s[0], s[1])),
                                 _mm512_mul_ps(dw, da), acc[t]);
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
  }

  // One group times all tokens: tiles of kT tokens, then single tokens.
  template <int kT>
  static void tokens(const uint8_t* g, const Acts& a, const int32_t* off, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32;
    int64_t t = 0;
    for (; t + kT <= a.n; t += kT) tile<kT>(g, a.from(t), off + t * nb, y + t * ldy, ldy);
    for (; t < a.n; ++t) tile<1>(g, a.from(t), off + t * nb, y + t * ldy, ldy);
  }

  // `groups` groups of 8 rows (consecutive, nb * kGroupBytes bytes each) times all tokens of a
  // (in order, not packed): each group stays in cache while every token tile passes it.
  template <int kT>
  static void gemm(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32, group_bytes = nb * kGroupBytes;
    // The offset codes' correction as ready-made int32 (a broadcast load in the tile).
    thread_local std::vector<int32_t> off;
    off.resize(size_t(a.n * nb));  // sized even when unused: the tiles offset its pointer
    if constexpr (L::kOff != 0) {
      for (int64_t i = 0; i < a.n * nb; ++i) off[size_t(i)] = -L::kOff * int32_t(a.bsums[i]);
    }
    int64_t gi = 0;
    // AVX-512: pairs of groups in 16-lane tiles, prompts and single tokens. One core, 4096x4096
    // x 128 tokens: Q4_0 305, Q8_0 291 GFLOP/s (2 x 8-lane pair tiles: 258, 275); one token,
    // 512x1024 in L2: Q4_0 54, Q8_0 92 GB/s (8-lane single groups: 41, 72). The pair's blocks
    // are interleaved (repack16), so a pass still reads one stream: with the pair's groups
    // stored apart, two streams per thread cost a fifth of TinyLlama's generation speed.
    if constexpr (Ops::kX8Wide) {  // pairs stored by repack16, every token count
      for (; gi + 2 <= groups; gi += 2) {
        const uint8_t* g = packed + gi * group_bytes;
        float* yg = y + kX8Rows * gi;
        wide_token_tiles(a.n, [&]<int T>(int64_t t) {
          tile2z<T>(g, a.from(t), off.data() + t * nb, yg + t * ldy, ldy);
        });
      }
    }
    for (; gi < groups; ++gi)
      tokens<kT>(packed + gi * group_bytes, a, off.data(), y + kX8Rows * gi, ldy);
  }
};

// Q4_K and Q5_K: per row and super-block, y = d * da * sum_j sc_j * dot_j - dmin * da *
// sum_j mn_j * S_j over its 8 sub-blocks j (dot_j: codes times activations, S_j: sum of the
// activations' 32 q). Both sums stay in int32 per row lane: |dot_j| <= 32 * 31 * 127, times
// sc <= 63, 8 sub-blocks. Q5_K's fifth bits precede each chunk's nibbles as 2 bit planes
// (kHi): plane (c, h) holds sub-block 2c + h, byte 4r + i bit q = the fifth bit of value 4q + i
// of row r, so the plane ORs bit q into code vector q: 1440 bytes per 8 rows instead of 1408
// (+2.3%).
template <typename Ops, typename Fmt = formats::Q4_K>
struct X8Q4K {
  using Block = typename Fmt::Block;
  static constexpr bool kHi = std::is_same_v<Fmt, formats::Q5_K>;
  // IQ4_XS: signed scales (ls - 32), no mins, codes looked up in IQ4_NL's int8 codebook, stored
  // + kOff (VNNI: + 128 as u8 for vpdpbusd, each sub-block's sum corrected by kOff * S_j before
  // its scale; AVX2 keeps them signed and dots them by the sign trick, maddubs would saturate).
  // Its head has no mins: 96 bytes, 1120 per 8 rows against the file's 1088 (+2.9%).
  static constexpr bool kBook = std::is_same_v<Fmt, formats::IQ4_XS>;
  static constexpr int kOff = kBook ? Ops::kSignedOffset : 0;
  // Q6_K: 16-value sub-blocks with signed scales, codes c = q + 32 (0..63): the nibbles as Q4_K's,
  // bits 4-5 as 2-bit planes, 2 vectors per 32-value sub-block s (vector v, byte 4r + i, bits
  // 2j..2j+1: value 4(4v + j) + i). Each 16-value half dots into its own sum, corrected by
  // 32 S_k (S_k: the activations' sum over the half) before its scale: no min term.
  static constexpr bool kSub16 = std::is_same_v<Fmt, formats::Q6_K>;
  static constexpr bool kMins = !kSub16 && !kBook;  // finish() subtracts mins
  static constexpr std::array<int8_t, 16> book_table() {
    std::array<int8_t, 16> t{};
    for (size_t i = 0; i < 16; ++i) {  // the byte value + kOff, as an int8 bit pattern
      const int w = formats::kIq4nlValues[i] + kOff;
      t[i] = int8_t(w > 127 ? w - 256 : w);
    }
    return t;
  }
  static constexpr std::array<int8_t, 16> kTable = book_table();
  LOWBIT_INLINE static __m256i book(__m256i c) {
    if constexpr (kBook)
      return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128(
                                     reinterpret_cast<const __m128i*>(kTable.data()))),
                                 c);
    else
      return c;
  }
  LOWBIT_INLINE static __m256i dot8(__m256i acc, __m256i c, __m256i a) {
    if constexpr (kBook && kOff == 0)
      return Ops::dot_signed_acc(acc, c, a);
    else
      return Ops::dot_u8s8_acc(acc, c, a);
  }
  // 8 sub-block scales (bytes) as int32 lanes: signed for IQ4_XS and Q6_K, six-bit otherwise.
  static constexpr bool kSignedScales = kBook || kSub16;
  LOWBIT_INLINE static __m256i scales8(int64_t bytes) {
    const __m128i v = _mm_cvtsi64_si128(bytes);
    return kSignedScales ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
  }
  LOWBIT_INLINE static __m256i scales8_at(const uint8_t* p) {
    int64_t bytes;
    std::memcpy(&bytes, p, 8);
    return scales8(bytes);
  }
  // Q6_K's scale of half k (8 rows, at the group's head p) times (dot - 32 S_k).
  LOWBIT_INLINE static __m256i half_term(const uint8_t* p, int k, __m256i dot, int32_t s) {
    return _mm256_mullo_epi32(_mm256_sub_epi32(dot, _mm256_set1_epi32(32 * s)),
                              scales8_at(p + 32 + 8 * k));
  }
  // IQ4_XS: sub-block j's sum of dots less kOff S_j (S_j: the activations' sum over it, from the
  // two 16-value sums bs[2j], bs[2j + 1]).
  LOWBIT_INLINE static __m256i book_corr(__m256i dot, const int16_t* bs, int j) {
    if constexpr (kBook && kOff != 0)
      return _mm256_sub_epi32(dot, _mm256_set1_epi32(kOff * (bs[2 * j] + bs[2 * j + 1])));
    else
      return dot;
  }
  static constexpr int64_t kBlock = 256;

  static constexpr int64_t kHead = kBook ? 96 : 160;  // a group's scales, before its codes
  static constexpr int64_t kGroupBytes = kHead + 1024 + (kHi ? 256 : kSub16 ? 512 : 0);
  // The code vectors of a group (or pair) in stream order, per 64-value chunk c: its high bits —
  // Q5_K's two bit planes (sub-blocks 2c, 2c + 1), Q6_K's four 2-bit planes (sub-block 2c: v = 0,
  // 1, then 2c + 1) — then its 8 nibble vectors. Every tile loads a chunk's planes before its
  // nibbles, so a super-block is read front to back as one stream. With all the planes after all
  // the nibbles (read first, then the nibbles behind them), the AVX-512 one-token tile streamed
  // Q6_K at 6-7 GB/s on one core from memory (11008x4096) where the AVX2 tile read 23-27; with
  // each chunk's planes after its nibbles, no better; planes first: 25-26.
  static constexpr int kChunkPlanes = kHi ? 2 : kSub16 ? 4 : 0, kChunkVecs = 8 + kChunkPlanes;
  static constexpr int nib_vec(int c, int q) { return c * kChunkVecs + kChunkPlanes + q; }
  static constexpr int plane_vec(int c) { return c * kChunkVecs; }  // the chunk's first plane

  // Q5_K: code vector q |= bit q of plane x, moved to bit 4 (the shifts stay within bytes
  // where bit 4 is concerned).
  template <int Q>
  LOWBIT_INLINE static __m256i hi_bit(__m256i c, __m256i x) {
    const __m256i b4 = _mm256_set1_epi8(0x10);
    const __m256i sh =
        Q <= 4 ? _mm256_slli_epi16(x, Q <= 4 ? 4 - Q : 0) : _mm256_srli_epi16(x, Q > 4 ? Q - 4 : 0);
    return _mm256_or_si256(c, _mm256_and_si256(sh, b4));
  }
  template <int Q>
  LOWBIT_INLINE static __m512i hi_bit(__m512i c, __m512i x) {
    const __m512i sh =
        Q <= 4 ? _mm512_slli_epi16(x, Q <= 4 ? 4 - Q : 0) : _mm512_srli_epi16(x, Q > 4 ? Q - 4 : 0);
    return _mm512_ternarylogic_epi32(c, sh, _mm512_set1_epi8(0x10), 0xF8);  // c | (sh & b4)
  }
  template <typename I, size_t... Q>
  LOWBIT_INLINE static void hi_bits(I (&c)[8], I x, std::index_sequence<Q...>) {
    ((c[Q] = hi_bit<int(Q)>(c[Q], x)), ...);
  }
  // Q6_K: code vector q |= bits 2j..2j+1 (j = q % 4) of plane vector x, moved to bits 4-5.
  template <int Q>
  LOWBIT_INLINE static __m256i hi_2(__m256i c, __m256i x) {
    constexpr int kS = 2 * (Q % 4);
    const __m256i sh = kS <= 4 ? _mm256_slli_epi16(x, kS <= 4 ? 4 - kS : 0)
                               : _mm256_srli_epi16(x, kS > 4 ? kS - 4 : 0);
    return _mm256_or_si256(c, _mm256_and_si256(sh, _mm256_set1_epi8(0x30)));
  }
  template <int Q>
  LOWBIT_INLINE static __m512i hi_2(__m512i c, __m512i x) {
    constexpr int kS = 2 * (Q % 4);
    const __m512i sh = kS <= 4 ? _mm512_slli_epi16(x, kS <= 4 ? 4 - kS : 0)
                               : _mm512_srli_epi16(x, kS > 4 ? kS - 4 : 0);
    return _mm512_ternarylogic_epi32(c, sh, _mm512_set1_epi8(0x30), 0xF8);
  }
  template <typename I, size_t... Q>
  LOWBIT_INLINE static void hi_2s(I (&c)[8], I x0, I x1, std::index_sequence<Q...>) {
    ((c[Q] = hi_2<int(Q)>(c[Q], Q < 4 ? x0 : x1)), ...);
  }

  static void repack(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    repack_strided(w, rb, K, out, kGroupBytes, 0, kHead, 32);
  }
  // Rows [0, 16) as a pair of groups, per super-block: both groups' scales (160 bytes each), then
  // the codes with the groups' 32-byte vectors side by side (vector v at 64v in nib_vec /
  // plane_vec's order, the first group's in the low 32 bytes): one 64-byte load is a 16-row code
  // vector, and the pair tiles read each super-block front to back, one stream. (With the pair's
  // two super-blocks one after the other, one-token generation from memory ran at half the speed.)
  static void repack16(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    repack_strided(w, rb, K, out, 2 * kGroupBytes, 0, 2 * kHead, 64);
    repack_strided(w + 8 * rb, rb, K, out, 2 * kGroupBytes, kHead, 2 * kHead + 32, 64);
  }
  // Super-block b of rows [0, 8) at out + b * stride: scales at + head, code vector q of chunk c
  // at + codes + nib_vec(c, q) * q_stride, Q5_K's bit plane (c, h) at + codes + (plane_vec(c) +
  // h) * q_stride, Q6_K's 2-bit plane v of sub-block 2c + u at + (plane_vec(c) + 2u + v) *
  // q_stride.
  static void repack_strided(const uint8_t* w, uint64_t rb, int64_t K, uint8_t* out, int64_t stride,
                             int64_t head, int64_t codes, int64_t q_stride) {
    for (int64_t b = 0; b < K / kBlock; ++b) {
      uint8_t* g = out + b * stride + head;
      uint8_t* cg = out + b * stride + codes;
      for (int r = 0; r < 8; ++r) {
        const Block& blk = reinterpret_cast<const Block*>(w + uint64_t(r) * rb)[b];
        std::memcpy(g + 2 * r, &blk.d, 2);
        if constexpr (kSub16) {
          repack_q6k(blk, g, cg, q_stride, r);
        } else {
          if constexpr (kBook)
            std::memset(g + 16 + 2 * r, 0, 2);  // no dmin
          else
            std::memcpy(g + 16 + 2 * r, &blk.dmin, 2);
          SubScales16 ss;
          sub_scales(blk, ss);  // one value per 16: entry 2j is sub-block j's
          for (int j = 0; j < 8; ++j) {
            g[32 + 8 * j + r] = uint8_t(ss.sc[2 * j]);  // sc: [sub-block][row]
            if constexpr (!kBook)                       // mn: [pair][row][2]
              g[96 + 16 * (j / 2) + 2 * r + (j % 2)] = uint8_t(ss.mn[2 * j]);
          }
          for (int c = 0; c < 4; ++c) {
            for (int q = 0; q < 8; ++q) {
              uint8_t* dst = cg + q_stride * nib_vec(c, q) + 4 * r;
              if constexpr (kBook) {  // sub-block j's value v: nibble of qs[16j + v % 16]
                auto nib = [&](int j, int v) {
                  return (blk.qs[16 * j + v % 16] >> (v / 16 * 4)) & 15;
                };
                for (int i = 0; i < 4; ++i)
                  dst[i] = uint8_t(nib(2 * c, 4 * q + i) | nib(2 * c + 1, 4 * q + i) << 4);
              } else {
                std::memcpy(dst, blk.qs + 32 * c + 4 * q, 4);
              }
            }
            if constexpr (kHi) {
              for (int h = 0; h < 2; ++h) {
                for (int i = 0; i < 4; ++i) {
                  int byte = 0;
                  for (int q = 0; q < 8; ++q) byte |= ((blk.qh[4 * q + i] >> (2 * c + h)) & 1) << q;
                  cg[q_stride * (plane_vec(c) + h) + 4 * r + i] = uint8_t(byte);
                }
              }
            }
          }
        }
      }
    }
  }

  // Q6_K's row r of a super-block: dmin slot zero, the 16 scales at + 32 + 8k, the nibbles of
  // chunk c as Q4_K's (low: sub-block 2c, high: 2c + 1), each chunk's 2-bit planes before its
  // nibbles.
  static void repack_q6k(const Block& blk, uint8_t* g, uint8_t* cg, int64_t q_stride, int r) {
    if constexpr (kSub16) {
      std::memset(g + 16 + 2 * r, 0, 2);
      for (int k = 0; k < 16; ++k) g[32 + 8 * k + r] = uint8_t(blk.scales[k]);
      int code[256];  // value e: half n, quarter k, lane l (kquants.cpp's DQ6K)
      for (int e = 0; e < 256; ++e) {
        const int n = e >> 7, k = (e >> 5) & 3, l = e & 31;
        code[e] = ((blk.ql[n * 64 + (k & 1) * 32 + l] >> (4 * (k >> 1))) & 15) |
                  ((blk.qh[n * 32 + l] >> (2 * k)) & 3) << 4;
      }
      for (int c = 0; c < 4; ++c) {
        for (int q = 0; q < 8; ++q) {
          for (int i = 0; i < 4; ++i) {
            cg[q_stride * nib_vec(c, q) + 4 * r + i] = uint8_t(
                (code[64 * c + 4 * q + i] & 15) | (code[64 * c + 32 + 4 * q + i] & 15) << 4);
          }
        }
      }
      for (int sub = 0; sub < 8; ++sub) {
        for (int v = 0; v < 2; ++v) {
          for (int i = 0; i < 4; ++i) {
            int byte = 0;
            for (int j = 0; j < 4; ++j)
              byte |= (code[32 * sub + 4 * (4 * v + j) + i] >> 4) << (2 * j);
            cg[q_stride * (plane_vec(sub / 2) + 2 * (sub % 2) + v) + 4 * r + i] = uint8_t(byte);
          }
        }
      }
    }
  }

  // The end of super-block sb for one group (at p) and T tokens: acc += d·da·isum − dmin·da·Σ_j
  // mn_j S_j, with the mins as int16 pairs per row lane and S as int16 pairs (<= 32 * 127).
  template <int T>
  LOWBIT_INLINE static void finish(const uint8_t* p, const Acts& a, const int32_t* spairs,
                                   int64_t sb, const __m256i (&isum)[T], __m256 (&acc)[T]) {
    const int64_t nsb = a.K / kBlock;
    const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
      const __m256 da = _mm256_set1_ps(a.d[t * nsb + sb]);
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(d, da), acc[t]);
      if constexpr (kMins) {
        __m256i m = _mm256_setzero_si256();
        LOWBIT_UNROLL for (int j2 = 0; j2 < 4; ++j2) {
          const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 96 + 16 * j2));
          const __m256i mn = _mm256_cvtepu8_epi16(raw);
          m = _mm256_add_epi32(
              m, _mm256_madd_epi16(mn, _mm256_set1_epi32(spairs[(t * nsb + sb) * 4 + j2])));
        }
        acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dmin, da), acc[t]);
      }
    }
  }

  template <int T>
  static void tile(const uint8_t* g, const Acts& a, const int32_t* spairs, float* y, int64_t ldy) {
    const int64_t nsb = a.K / kBlock;
    __m256 acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* p = g + sb * kGroupBytes;
      __m256i isum[T];
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c) {  // 64-value chunks: sub-blocks 2c (low) and 2c + 1 (high)
        // The chunk's planes first: they precede its nibbles (one forward stream).
        const uint8_t* hp = p + kHead + 32 * plane_vec(c);
        __m256i pl[4];
        LOWBIT_UNROLL for (int u = 0; u < kChunkPlanes; ++u) pl[u] =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hp + 32 * u));
        __m256i lo[8], hi[8];
        LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
          const __m256i v =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + kHead + 32 * nib_vec(c, q)));
          lo[q] = _mm256_and_si256(v, lo4);
          hi[q] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
        }
        if constexpr (kHi) {
          hi_bits(lo, pl[0], std::make_index_sequence<8>());
          hi_bits(hi, pl[1], std::make_index_sequence<8>());
        }
        if constexpr (kBook) {
          LOWBIT_UNROLL for (int q = 0; q < 8; ++q) lo[q] = book(lo[q]), hi[q] = book(hi[q]);
        }
        if constexpr (kSub16) {
          hi_2s(lo, pl[0], pl[1], std::make_index_sequence<8>());
          hi_2s(hi, pl[2], pl[3], std::make_index_sequence<8>());
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
            const int8_t* at = a.qs + t * a.K + sb * kBlock + 64 * c;
            __m256i dh[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                             _mm256_setzero_si256()};
            LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
              int32_t a0, a1;
              std::memcpy(&a0, at + 4 * q, 4);
              std::memcpy(&a1, at + 32 + 4 * q, 4);
              dh[q / 4] = dot8(dh[q / 4], lo[q], _mm256_set1_epi32(a0));
              dh[2 + q / 4] = dot8(dh[2 + q / 4], hi[q], _mm256_set1_epi32(a1));
            }
            const int16_t* bs = a.bsums + (t * nsb + sb) * 16 + 4 * c;
            LOWBIT_UNROLL for (int u = 0; u < 4; ++u) isum[t] =
                _mm256_add_epi32(isum[t], half_term(p, 4 * c + u, dh[u], bs[u]));
          }
          continue;
        }
        int64_t sc_lo, sc_hi;
        std::memcpy(&sc_lo, p + 32 + 16 * c, 8);
        std::memcpy(&sc_hi, p + 40 + 16 * c, 8);
        const __m256i s_lo = scales8(sc_lo), s_hi = scales8(sc_hi);
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const int8_t* at = a.qs + t * a.K + sb * kBlock + 64 * c;
          __m256i d0 = _mm256_setzero_si256(), d1 = _mm256_setzero_si256();
          LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
            int32_t a0, a1;
            std::memcpy(&a0, at + 4 * q, 4);
            std::memcpy(&a1, at + 32 + 4 * q, 4);
            d0 = dot8(d0, lo[q], _mm256_set1_epi32(a0));
            d1 = dot8(d1, hi[q], _mm256_set1_epi32(a1));
          }
          const int16_t* bs = a.bsums + (t * nsb + sb) * 16;
          d0 = book_corr(d0, bs, 2 * c), d1 = book_corr(d1, bs, 2 * c + 1);
          isum[t] = _mm256_add_epi32(isum[t], _mm256_add_epi32(_mm256_mullo_epi32(d0, s_lo),
                                                               _mm256_mullo_epi32(d1, s_hi)));
        }
      }
      finish<T>(p, a, spairs, sb, isum, acc);
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy, acc[t]);
  }

  // One token times a pair of groups in repack16's layout (AVX-512), on 8-lane vectors: each
  // broadcast activation word feeds both groups' dot-accumulates. Broadcasts, not arithmetic,
  // bound the one-group tile<1> (two per 32 bytes of codes): one core from cache, 512x1024, ran
  // at 55-60 GB/s against 40-42 for tile<1>. Two chains per group (low and high nibbles).
  static void tile_one2(const uint8_t* g, const Acts& a, const int32_t* spairs, float* y) {
    const int64_t nsb = a.K / kBlock;
    __m256 acc[2][1] = {{_mm256_setzero_ps()}, {_mm256_setzero_ps()}};
    const __m256i lo4 = _mm256_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* pp[2] = {g + sb * 2 * kGroupBytes, g + sb * 2 * kGroupBytes + kHead};
      const uint8_t* codes = g + sb * 2 * kGroupBytes + 2 * kHead;
      // The pair's heads are read after the codes that follow them: touch their lines first, so
      // that the super-block is read front to back. One core, one token, 11008x4096 from memory,
      // 6 alternating pairs: Q4_K median 19.1 -> 27.2 GB/s, IQ4_XS 19.8 -> 24.8 (11 of 12 pairs
      // faster); whole 6-layer models on 2 threads: within noise (medians of 14 pairs +5%, +1%).
      LOWBIT_UNROLL for (int l = 0; l < 2 * kHead; l += 64)
          _mm_prefetch(reinterpret_cast<const char*>(pp[0] + l), _MM_HINT_T0);
      const int8_t* at = a.qs + sb * kBlock;
      __m256i isum[2][1] = {{_mm256_setzero_si256()}, {_mm256_setzero_si256()}};
      for (int c = 0; c < 4; ++c) {  // 64-value chunks: sub-blocks 2c (low) and 2c + 1 (high)
        __m256i d[2][4];
        LOWBIT_UNROLL for (int k = 0; k < 2; ++k) {
          LOWBIT_UNROLL for (int u = 0; u < 4; ++u) d[k][u] = _mm256_setzero_si256();
        }
        __m256i hp[2][2];  // Q5_K: the groups' bit planes of the chunk's two sub-blocks
        __m256i h2[2][4];  // Q6_K: the groups' 2-bit planes, 2 per sub-block
        if constexpr (kSub16) {
          LOWBIT_UNROLL for (int k = 0; k < 2; ++k) {
            LOWBIT_UNROLL for (int u = 0; u < 4; ++u) h2[k][u] = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(codes + 64 * (plane_vec(c) + u) + 32 * k));
          }
        }
        if constexpr (kHi) {
          LOWBIT_UNROLL for (int k = 0; k < 2; ++k) {
            const uint8_t* h = codes + 64 * plane_vec(c) + 32 * k;
            hp[k][0] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h));
            hp[k][1] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + 64));
          }
        }
        // Code vector Q of both groups: nibbles (+ fifth bits, through the codebook), dotted.
        const auto step = [&]<int Q>() {
          int32_t a0, a1;
          std::memcpy(&a0, at + 64 * c + 4 * Q, 4);
          std::memcpy(&a1, at + 64 * c + 32 + 4 * Q, 4);
          const __m256i b0 = _mm256_set1_epi32(a0), b1 = _mm256_set1_epi32(a1);
          LOWBIT_UNROLL for (int k = 0; k < 2; ++k) {
            const __m256i v = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(codes + 64 * nib_vec(c, Q) + 32 * k));
            __m256i lo = _mm256_and_si256(v, lo4),
                    hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
            if constexpr (kHi) lo = hi_bit<Q>(lo, hp[k][0]), hi = hi_bit<Q>(hi, hp[k][1]);
            if constexpr (kSub16) {
              lo = hi_2<Q>(lo, h2[k][Q / 4]), hi = hi_2<Q>(hi, h2[k][2 + Q / 4]);
              d[k][Q / 4] = dot8(d[k][Q / 4], lo, b0);
              d[k][2 + Q / 4] = dot8(d[k][2 + Q / 4], hi, b1);
            } else {
              d[k][0] = dot8(d[k][0], book(lo), b0);
              d[k][1] = dot8(d[k][1], book(hi), b1);
            }
          }
        };
        [&]<size_t... Q>(std::index_sequence<Q...>) {
          (step.template operator()<int(Q)>(), ...);
        }
        (std::make_index_sequence<8>());
        if constexpr (kSub16) {
          const int16_t* bs = a.bsums + sb * 16 + 4 * c;
          LOWBIT_UNROLL for (int k = 0; k < 2; ++k) {
            LOWBIT_UNROLL for (int u = 0; u < 4; ++u) isum[k][0] =
                _mm256_add_epi32(isum[k][0], half_term(pp[k], 4 * c + u, d[k][u], bs[u]));
          }
          continue;
        }
        LOWBIT_UNROLL for (int k = 0; k < 2; ++k) {
          int64_t sc_lo, sc_hi;
          std::memcpy(&sc_lo, pp[k] + 32 + 16 * c, 8);
          std::memcpy(&sc_hi, pp[k] + 40 + 16 * c, 8);
          const __m256i s_lo = scales8(sc_lo), s_hi = scales8(sc_hi);
          d[k][0] = book_corr(d[k][0], a.bsums + sb * 16, 2 * c);
          d[k][1] = book_corr(d[k][1], a.bsums + sb * 16, 2 * c + 1);
          isum[k][0] =
              _mm256_add_epi32(isum[k][0], _mm256_add_epi32(_mm256_mullo_epi32(d[k][0], s_lo),
                                                            _mm256_mullo_epi32(d[k][1], s_hi)));
        }
      }
      LOWBIT_UNROLL for (int k = 0; k < 2; ++k) finish<1>(pp[k], a, spairs, sb, isum[k], acc[k]);
    }
    _mm256_storeu_ps(y, acc[0][0]);
    _mm256_storeu_ps(y + 8, acc[1][0]);
  }

  // A pair of groups in repack16's layout (16 rows) times T tokens on 16-lane vectors (AVX-512),
  // one sub-block (32 values) at a time: the two groups share every code vector, so each
  // broadcast activation word feeds one 16-row dot-accumulate, and the register file holds a
  // sub-block's codes, T tokens' sums and two chains per token without spilling. (A 2 x 8-lane
  // version of this tile spilled: 1.2x slower on one core.)
  template <int T>
  static void tile2z(const uint8_t* g, const Acts& a, const int32_t* spairs, float* y,
                     int64_t ldy) {
    const int64_t nsb = a.K / kBlock;
    __m512 acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    const __m512i lo4 = _mm512_set1_epi8(0x0F);
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* p0 = g + sb * 2 * kGroupBytes;  // repack16's pair: the two groups' scales
      const uint8_t* p1 = p0 + kHead;
      __m512i isum[T];
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
      for (int sub = 0; sub < 8; ++sub) {  // chunk sub / 2: low nibbles, then high
        const int64_t off = 2 * kHead + 64 * nib_vec(sub / 2, 0);  // the pair's chunk sub / 2
        // The sub-block's planes first: they precede the chunk's nibbles (one forward stream).
        constexpr int kSubPlanes = kChunkPlanes / 2;
        const uint8_t* hp = p0 + 2 * kHead + 64 * (plane_vec(sub / 2) + kSubPlanes * (sub % 2));
        __m512i pl[2];
        LOWBIT_UNROLL for (int u = 0; u < kSubPlanes; ++u) pl[u] = _mm512_loadu_si512(hp + 64 * u);
        __m512i code[8];
        LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
          __m512i v = _mm512_loadu_si512(p0 + off + 64 * q);
          if (sub % 2) v = _mm512_srli_epi16(v, 4);
          code[q] = _mm512_and_si512(v, lo4);
        }
        if constexpr (kHi)  // the pair's plane (sub / 2, sub % 2)
          hi_bits(code, pl[0], std::make_index_sequence<8>());
        if constexpr (kBook) {
          static_assert(kOff == 128, "vpdpbusd takes the digits as u8");
          const __m512i tab = _mm512_broadcast_i32x4(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(kTable.data())));
          LOWBIT_UNROLL for (int q = 0; q < 8; ++q) code[q] = _mm512_shuffle_epi8(tab, code[q]);
        }
        if constexpr (kSub16) {  // the pair's 2-bit planes of sub-block sub
          hi_2s(code, pl[0], pl[1], std::make_index_sequence<8>());
        }
        // The 16 rows' scales of sub-block (or Q6_K half) k.
        const auto scales16 = [&](int k) {
          int64_t x0, x1;
          std::memcpy(&x0, p0 + 32 + 8 * k, 8);
          std::memcpy(&x1, p1 + 32 + 8 * k, 8);
          const __m128i v = _mm_set_epi64x(x1, x0);
          return kSignedScales ? _mm512_cvtepi8_epi32(v) : _mm512_cvtepu8_epi32(v);
        };
        const __m512i sc0 = scales16(kSub16 ? 2 * sub : sub),
                      sc1 = kSub16 ? scales16(2 * sub + 1) : sc0;
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const int8_t* at = a.qs + t * a.K + sb * kBlock + 32 * sub;
          const int16_t* bs = a.bsums + (t * nsb + sb) * 16 + 2 * sub;
          // Two chains: the halves for Q6_K (each its own scale), alternating otherwise.
          __m512i d[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
          LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
            int32_t aq;
            std::memcpy(&aq, at + 4 * q, 4);
            const int u = kSub16 ? q / 4 : q % 2;
            d[u] = _mm512_dpbusd_epi32(d[u], code[q], _mm512_set1_epi32(aq));
          }
          if constexpr (kSub16) {  // each half less 32 S_k, times its scale
            LOWBIT_UNROLL for (int u = 0; u < 2; ++u) d[u] =
                _mm512_sub_epi32(d[u], _mm512_set1_epi32(32 * bs[u]));
            isum[t] = _mm512_add_epi32(isum[t], _mm512_add_epi32(_mm512_mullo_epi32(d[0], sc0),
                                                                 _mm512_mullo_epi32(d[1], sc1)));
          } else {
            __m512i dsum = _mm512_add_epi32(d[0], d[1]);
            if constexpr (kBook)  // less kOff S_sub
              dsum = _mm512_sub_epi32(dsum, _mm512_set1_epi32(kOff * (bs[0] + bs[1])));
            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(dsum, sc0));
          }
        }
      }
      // The super-block's end, as finish() for both groups at once.
      const __m512 dd = _mm512_cvtph_ps(join128(p0, p1));
      if constexpr (!kMins) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const __m512 da = _mm512_set1_ps(a.d[t * nsb + sb]);
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dd, da), acc[t]);
        }
        continue;
      }
      const __m512 dm = _mm512_cvtph_ps(join128(p0 + 16, p1 + 16));
      __m512i mn[4];
      LOWBIT_UNROLL for (int j2 = 0; j2 < 4; ++j2) mn[j2] =
          _mm512_cvtepu8_epi16(join128(p0 + 96 + 16 * j2, p1 + 96 + 16 * j2));
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const int32_t* sp = spairs + (t * nsb + sb) * 4;
        __m512i m = _mm512_madd_epi16(mn[0], _mm512_set1_epi32(sp[0]));
        LOWBIT_UNROLL for (int j2 = 1; j2 < 4; ++j2) m =
            _mm512_add_epi32(m, _mm512_madd_epi16(mn[j2], _mm512_set1_epi32(sp[j2])));
        const __m512 da = _mm512_set1_ps(a.d[t * nsb + sb]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dd, da), acc[t]);
        acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dm, da), acc[t]);
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
  }

  template <int kT>
  static void gemm(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    const int64_t nsb = a.K / kBlock, group_bytes = nsb * kGroupBytes;
    // Per (token, super-block): the sub-block sums S_j as four int16 pairs (S_2j', S_2j'+1).
    thread_local std::vector<int32_t> spairs;
    spairs.resize(size_t(a.n * nsb * 4));
    for (int64_t i = 0; i < a.n * nsb; ++i) {
      const int16_t* bs = a.bsums + i * 16;
      for (int j2 = 0; j2 < 4; ++j2) {
        const int s0 = bs[4 * j2] + bs[4 * j2 + 1], s1 = bs[4 * j2 + 2] + bs[4 * j2 + 3];
        spairs[size_t(i * 4 + j2)] = int32_t(uint32_t(uint16_t(s0)) | uint32_t(uint16_t(s1)) << 16);
      }
    }
    int64_t gi = 0;
    if constexpr (Ops::kX8Wide) {  // pairs stored by repack16, every token count
      for (; gi + 2 <= groups; gi += 2) {
        const uint8_t* g = packed + gi * group_bytes;
        float* yg = y + kX8Rows * gi;
        wide_token_tiles(a.n, [&]<int T>(int64_t t) {
          const int32_t* sp = spairs.data() + t * nsb * 4;
          // 8-lane: tile2z<1> is no faster than tile<1> for Q4_K
          if constexpr (T == 1)
            tile_one2(g, a.from(t), sp, yg + t * ldy);
          else
            tile2z<T>(g, a.from(t), sp, yg + t * ldy, ldy);
        });
      }
    }
    for (; gi < groups; ++gi) {
      const uint8_t* g = packed + gi * group_bytes;
      float* yg = y + kX8Rows * gi;
      int64_t t = 0;
      for (; t + kT <= a.n; t += kT)
        tile<kT>(g, a.from(t), spairs.data() + t * nsb * 4, yg + t * ldy, ldy);
      for (; t < a.n; ++t) tile<1>(g, a.from(t), spairs.data() + t * nsb * 4, yg + t * ldy, ldy);
    }
  }
};

}  // namespace
}  // namespace lowbit::kernel
