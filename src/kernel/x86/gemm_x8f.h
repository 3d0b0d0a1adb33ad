// The load-time x8 layout of float rows (F32, F16, BF16) on tiers with 16-lane vectors, and its
// tiles. Eight rows are interleaved two values at a time: value pair p (values 2p, 2p + 1) of
// rows 0..7 is 16 consecutive values, row r's pair at lanes 2r and 2r + 1. The copy has exactly
// the rows' bytes (K must be even; odd K keeps the file layout).
//
// Why: the file-layout tiles dot a row against a token along K, so every (row, token) pair has
// its own accumulator, every step loads each row's and each token's vector, and each pair ends in
// a horizontal sum. Here one vector load (and one convert) gives 8 rows' next two values, one
// 64-bit broadcast gives a token's next two values, and each multiply-add advances 8 rows of one
// token; a row's two lanes are added once at the end. Per step a G-group x T-token tile loads
// G + T operands for G * T multiply-adds (6 x 4 file-layout tiles: 10 full vectors for 24). One
// pass over a group reads a single sequential stream, for generation too.
#pragma once

#include <cstring>

#include "kernel/x86/common.h"
#include "kernel/x86/gemm_float.h"
#include "kernel/x86/gemm_x8.h"

namespace lowbit::kernel {
namespace {

template <FloatKind kKind>
struct X8Float {
  static constexpr int64_t kElemBytes = kKind == FloatKind::kF32 ? 4 : 2;
  static constexpr int64_t kGroupBytes = 8 * kElemBytes;  // per value index: 8 rows
  static constexpr int64_t kKMultiple = 2;
  // Prompt tiles: kG groups (8 kG rows) x kT tokens, kG * kT accumulators of 32 registers.
  static constexpr int kG = 4, kT = 6;

  // Rows [0, 8) of w (row_bytes rb, K values, K even) -> out (8 * rb bytes).
  static void repack(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    constexpr int64_t pair = 2 * kElemBytes;
    for (int64_t p = 0; p < K / 2; ++p) {
      uint8_t* o = out + p * 8 * pair;
      for (int r = 0; r < 8; ++r) std::memcpy(o + r * pair, w + uint64_t(r) * rb + p * pair, pair);
    }
  }

  // The 16 values (8 rows x 2) at value pair p of a group.
  LOWBIT_INLINE static __m512 load(const uint8_t* g, int64_t p) {
    const uint8_t* at = g + p * 2 * kGroupBytes;
    if constexpr (kKind == FloatKind::kF32) {
      return _mm512_loadu_ps(at);
    } else {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
      if constexpr (kKind == FloatKind::kF16) return _mm512_cvtph_ps(h);
      return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
    }
  }
  // Values 2p and 2p + 1 of a token in every lane pair.
  LOWBIT_INLINE static __m512 pair(const float* x, int64_t p) {
    double v;
    std::memcpy(&v, x + 2 * p, 8);
    return _mm512_castpd_ps(_mm512_set1_pd(v));
  }

  // Rows 8j..8j+7 of a pair-lane accumulator (lanes 2r, 2r + 1 summed), two groups at a time.
  LOWBIT_INLINE static void store2(__m512 a0, __m512 a1, float* y) {
    const __m512i even =
        _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd =
        _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    _mm512_storeu_ps(y, _mm512_add_ps(_mm512_permutex2var_ps(a0, even, a1),
                                      _mm512_permutex2var_ps(a0, odd, a1)));
  }
  LOWBIT_INLINE static void store1(__m512 a, float* y) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512 s = _mm512_add_ps(_mm512_permutexvar_ps(even, a), _mm512_permutexvar_ps(odd, a));
    _mm256_storeu_ps(y, _mm512_castps512_ps256(s));
  }

  // G groups (group_bytes apart) x T tokens: y[t * ldy + 8 j + r].
  template <int G, int T>
  static void tile(const uint8_t* g, int64_t group_bytes, const Acts& a, float* y, int64_t ldy) {
    const int64_t K = a.K, np = K / 2;
    __m512 acc[G][T];
    LOWBIT_UNROLL for (int j = 0; j < G; ++j) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[j][t] = _mm512_setzero_ps();
    }
    for (int64_t p = 0; p < np; ++p) {
      __m512 w[G];
      LOWBIT_UNROLL for (int j = 0; j < G; ++j) w[j] = load(g + j * group_bytes, p);
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const __m512 x = pair(a.f32 + t * K, p);
        LOWBIT_UNROLL for (int j = 0; j < G; ++j) acc[j][t] = _mm512_fmadd_ps(w[j], x, acc[j][t]);
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
      int j = 0;
      LOWBIT_UNROLL for (; j + 2 <= G; j += 2)
          store2(acc[j][t], acc[j + 1][t], y + t * ldy + 8 * j);
      if constexpr (G % 2) store1(acc[G - 1][t], y + t * ldy + 8 * (G - 1));
    }
  }

  // One group, one token (generation): four chains of multiply-adds over the value pairs.
  static void tile_1x1(const uint8_t* g, const Acts& a, float* y) {
    const int64_t np = a.K / 2;
    __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                     _mm512_setzero_ps()};
    int64_t p = 0;
    for (; p + 4 <= np; p += 4) {
      LOWBIT_UNROLL for (int c = 0; c < 4; ++c) acc[c] =
          _mm512_fmadd_ps(load(g, p + c), pair(a.f32, p + c), acc[c]);
    }
    for (; p < np; ++p) acc[0] = _mm512_fmadd_ps(load(g, p), pair(a.f32, p), acc[0]);
    store1(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])), y);
  }

  // The last n < kT tokens in one tile of n (a token at a time would load each weight vector
  // for one multiply-add).
  template <int G, int T = kT - 1>
  static void rest(int64_t n, const uint8_t* g, int64_t group_bytes, const Acts& a, float* y,
                   int64_t ldy) {
    if constexpr (T >= 1) {
      if (n == T) return tile<G, T>(g, group_bytes, a, y, ldy);
      rest<G, T - 1>(n, g, group_bytes, a, y, ldy);
    }
  }

  // G groups x all tokens: tiles of kT tokens, then one tile of the rest.
  template <int G>
  static void tokens(const uint8_t* g, int64_t group_bytes, const Acts& a, float* y, int64_t ldy) {
    int64_t t = 0;
    for (; t + kT <= a.n; t += kT) tile<G, kT>(g, group_bytes, a.from(t), y + t * ldy, ldy);
    if (t < a.n) rest<G>(a.n - t, g, group_bytes, a.from(t), y + t * ldy, ldy);
  }

  // `groups` consecutive groups (K / 2 * 2 * kGroupBytes bytes each) x all tokens of a (f32).
  static void gemm(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    const int64_t group_bytes = a.K * kGroupBytes;
    if (a.n == 1) {
      for (int64_t gi = 0; gi < groups; ++gi)
        tile_1x1(packed + gi * group_bytes, a, y + kX8Rows * gi);
      return;
    }
    int64_t gi = 0;
    for (; gi + kG <= groups; gi += kG)
      tokens<kG>(packed + gi * group_bytes, group_bytes, a, y + kX8Rows * gi, ldy);
    for (; gi + 2 <= groups; gi += 2)
      tokens<2>(packed + gi * group_bytes, group_bytes, a, y + kX8Rows * gi, ldy);
    for (; gi < groups; ++gi)
      tokens<1>(packed + gi * group_bytes, group_bytes, a, y + kX8Rows * gi, ldy);
  }
};

}  // namespace
}  // namespace lowbit::kernel
