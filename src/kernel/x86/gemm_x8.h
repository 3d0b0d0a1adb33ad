// The load-time "x8" layout of Q4_0 and Q8_0 rows, and its tiles. Eight rows are interleaved
// block by block: block-group b holds block b of each of the 8 rows,
//   d[8]     the 8 rows' fp16 scales (16 bytes), then the codes, arranged so that the 32 bytes
//            at 32m hold values 4m..4m+3 of rows 0..7 (row r in dword lane r):
//   Q4_0     128 bytes: byte 32q + 4r + i = byte 4q + i of row r's block, whose low nibble is
//            value 4q + i and high nibble value 4q + i + 16 (a load, a mask and a shift give the
//            code vectors of value groups q and q + 4);
//   Q8_0     256 bytes: byte 32m + 4r + i = value 4m + i of row r, through the tier's
//            prep_signed (VNNI: + 128 as u8, so the dot subtracts 128 * sum(q)).
// A group takes exactly the 8 rows' bytes. One pass reads a single stream, and one integer
// dot-accumulate against four broadcast activation bytes advances all 8 rows; a block ends in one
// convert and one multiply-add of the 8 rows' dw * da, with no horizontal sums. The formats keep
// their file layout on disk; only the engine's in-memory copy is repacked (PreparedMatrix).
#pragma once

#include <cstring>
#include <vector>

#include "format/legacy.h"
#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

inline constexpr int64_t kX8Rows = 8;

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
      const __m256i pv =
          Ops::prep_signed(_mm256_load_si256(reinterpret_cast<const __m256i*>(v)));
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
};

template <typename Ops, typename L>
struct X8Tiles {
  using Block = typename L::Block;
  static constexpr int64_t kGroupBytes = 16 + L::kCodeBytes;  // per block index
  static_assert(kGroupBytes == kX8Rows * int64_t(sizeof(Block)));

  // Rows [0, 8) of w (row_bytes rb, K values) -> out (8 * rb bytes).
  static void repack(const uint8_t* w, uint64_t rb, int64_t K, uint8_t* out) {
    const Block* blk[8];
    for (int r = 0; r < 8; ++r) blk[r] = reinterpret_cast<const Block*>(w + uint64_t(r) * rb);
    for (int64_t b = 0; b < K / 32; ++b) {
      uint8_t* g = out + b * kGroupBytes;
      const Block* at[8];
      for (int r = 0; r < 8; ++r) {
        at[r] = blk[r] + b;
        std::memcpy(g + 2 * r, &at[r]->d, 2);
      }
      L::pack(at, g + 16);
    }
  }

  // One group of 8 rows (g) times T tokens: y[t * ldy + r]. off: -kOff * sum(q) of each
  // (token, block), as a.bsums.
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
        // Two chains (even and odd value groups) so the dot-accumulates overlap.
        __m256i s0 = L::kOff != 0 ? _mm256_set1_epi32(off[t * nb + b]) : _mm256_setzero_si256();
        __m256i s1 = _mm256_setzero_si256();
        LOWBIT_UNROLL for (int m = 0; m < 8; m += 2) {
          int32_t a0, a1;
          std::memcpy(&a0, at + 4 * m, 4);
          std::memcpy(&a1, at + 4 * m + 4, 4);
          s0 = L::dot_acc(s0, c[m], _mm256_set1_epi32(a0));
          s1 = L::dot_acc(s1, c[m + 1], _mm256_set1_epi32(a1));
        }
        const __m256 scale = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[t * nb + b]));
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), scale, acc[t]);
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy, acc[t]);
  }

  // `groups` groups of 8 rows (consecutive, nb * kGroupBytes bytes each) times all tokens of a
  // (in order, not packed): each group stays in cache while every token tile passes it.
  template <int kT>
  static void gemm(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32, group_bytes = nb * kGroupBytes;
    // The offset codes' correction as ready-made int32 (a broadcast load in the tile).
    thread_local std::vector<int32_t> off;
    if constexpr (L::kOff != 0) {
      off.resize(size_t(a.n * nb));
      for (int64_t i = 0; i < a.n * nb; ++i) off[size_t(i)] = -L::kOff * int32_t(a.bsums[i]);
    }
    for (int64_t gi = 0; gi < groups; ++gi) {
      const uint8_t* g = packed + gi * group_bytes;
      float* yg = y + kX8Rows * gi;
      int64_t t = 0;
      for (; t + kT <= a.n; t += kT) tile<kT>(g, a.from(t), off.data() + t * nb, yg + t * ldy, ldy);
      for (; t < a.n; ++t) tile<1>(g, a.from(t), off.data() + t * nb, yg + t * ldy, ldy);
    }
  }
};

}  // namespace
}  // namespace lowbit::kernel
