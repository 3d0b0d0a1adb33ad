// Building blocks shared by the x86 tiers (avx2/, avx512/): reductions, fp16 scalars, the
// activation quantizers (256-bit code, bit-exact to the ref tier) and the tile dispatcher.
// Include only from translation units compiled with at least AVX2+FMA+F16C. Everything has
// internal linkage (anonymous namespace; templates instantiated on each tier's own Ops type), so
// no tier's instructions can leak into another tier's code through the linker.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernel/kernels.h"

#define LOWBIT_UNROLL _Pragma("GCC unroll 16")
// Hot helpers must inline: a call in a tile spills every vector register (and adds vzeroupper).
#define LOWBIT_INLINE inline __attribute__((always_inline))

namespace lowbit::kernel {
namespace {

inline float hsum_ps(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm_cvtsi128_si32(s);
}

inline float hmax_ps(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float half_to_float(uint16_t h) {
  return _cvtsh_ss(h);
}
// Round to fp16 and back, to nearest even (F16C is IEEE: subnormals kept, as lowbit's codecs).
inline float round_half(float f) {
  return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT));
}

// n (0..8) floats, zero-filled above n.
inline __m256 load_partial8(const float* p, int n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
}

// ---- activation quantizers ------------------------------------------------------------------

inline __m256 abs_ps(__m256 v) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

// 32 floats times id, clamped to +-127, rounded to nearest even (the default MXCSR mode, as
// nearbyint): four vectors of 8 int32.
inline void round_scaled(const float* x, float id, __m256i q[4]) {
  const __m256 idv = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  for (int i = 0; i < 4; ++i) {
    const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + 8 * i), idv);
    q[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
  }
}

inline void store_q8(const __m256i q[4], int8_t* out) {
  const __m256i p =
      _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permutevar8x32_epi32(p, perm));
}

// kQ8x32: d = fp16(absmax / 127), q = round(x / d), s = d * sum(q), bsums = sum(q).
void quantize_q8x32_x86(const float* x, int64_t K, int8_t* qs, float* d, float* s, int16_t* bsums) {
  for (int64_t b = 0; b < K / 32; ++b) {
    const float* xb = x + b * 32;
    __m256 m = abs_ps(_mm256_loadu_ps(xb));
    for (int i = 1; i < 4; ++i) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(xb + 8 * i)));
    const float db = round_half(hmax_ps(m) / 127.0f), id = db != 0 ? 1.0f / db : 0.0f;
    __m256i q[4];
    round_scaled(xb, id, q);
    const int sum =
        hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    store_q8(q, qs + b * 32);
    d[b] = db;
    s[b] = db * float(sum);
    bsums[b] = int16_t(sum);
  }
}

// kQ8x256: the first value of largest magnitude maps to -127; d in f32; bsums per 16.
void quantize_q8x256_x86(const float* x, int64_t K, int8_t* qs, float* d, float*, int16_t* bsums) {
  for (int64_t b = 0; b < K / 256; ++b) {
    const float* xb = x + b * 256;
    __m256 m = _mm256_setzero_ps();
    for (int i = 0; i < 32; ++i) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(xb + 8 * i)));
    const float amax = hmax_ps(m);
    float xm = 0;
    if (amax != 0) {
      const __m256 mv = _mm256_set1_ps(amax);
      for (int i = 0; i < 32; ++i) {
        const int hit =
            _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(xb + 8 * i)), mv, _CMP_EQ_OQ));
        if (hit) {
          xm = xb[8 * i + __builtin_ctz(unsigned(hit))];
          break;
        }
      }
    }
    const float db = xm / -127.0f, id = db != 0 ? 1.0f / db : 0.0f;
    for (int c = 0; c < 8; ++c) {
      __m256i q[4];
      round_scaled(xb + 32 * c, id, q);
      store_q8(q, qs + b * 256 + 32 * c);
      bsums[b * 16 + 2 * c] = int16_t(hsum_epi32(_mm256_add_epi32(q[0], q[1])));
      bsums[b * 16 + 2 * c + 1] = int16_t(hsum_epi32(_mm256_add_epi32(q[2], q[3])));
    }
    d[b] = db;
  }
}

// ---- packed activations -----------------------------------------------------------------------
// Multi-token tiles keep an integer accumulator per 32-value block in each dword lane, so the
// activations of a group of 8 blocks (256 values) are stored transposed: vector m (32 bytes at
// 32m) holds dword m of blocks 0..7, one per lane. Values past the last full group stay in order.

// v[j] = row j of an 8 x 8 matrix of dwords -> v[k] = column k.
LOWBIT_INLINE void transpose8x8_epi32(__m256i v[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h) {  // rows 4h .. 4h+3
    u[4 * h + 0] = _mm256_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
    u[4 * h + 1] = _mm256_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
    u[4 * h + 2] = _mm256_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
    u[4 * h + 3] = _mm256_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
  }
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
    v[k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
  }
}

void pack_q8_x86(int8_t* qs, int64_t K) {
  for (int64_t g = 0; g + 256 <= K; g += 256) {
    __m256i v[8];
    for (int j = 0; j < 8; ++j)
      v[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + g + 32 * j));
    transpose8x8_epi32(v);
    for (int m = 0; m < 8; ++m)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + g + 32 * m), v[m]);
  }
}

// ---- tiles ----------------------------------------------------------------------------------
// A tile family Tiles provides `template <int R, int T> static void tile(w, rb, a, y, ldy)`:
// R rows from w (row_bytes rb) times the first T tokens of a. With kPackable it also provides
// `rows_packed<R, T>(w, rb, a, y, ldy)`: R rows times all tokens of packed activations, the rows
// decoded once into a panel (kPanelElems values at a time) and reused by every token tile.
// Shape: kR x kT tiles for prompts (kRp x kTp when packed), kRv x 1 for one token
// (generation), smaller ones for the edges.

inline constexpr int64_t kPanelElems = 4096;  // values per decoded panel (multiple of 256)

template <typename Tiles, int kR, int kT>
void gemm_packed(const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y,
                 int64_t ldy) {
  int64_t r = 0;
  for (; r + kR <= rows; r += kR)
    Tiles::template rows_packed<kR, kT>(w + uint64_t(r) * rb, rb, a, y + r, ldy);
  for (; r < rows; ++r) Tiles::template rows_packed<1, kT>(w + uint64_t(r) * rb, rb, a, y + r, ldy);
}

// Token loop of rows_packed over a decoded panel: Tiles::panel_tile<R, T>(panel, a_from_t,
// y, ldy, accumulate) for T = kT, then single tokens.
template <typename Tiles, int R, int kT, typename Panel>
void panel_tokens(const Panel& p, const Acts& a, float* y, int64_t ldy, bool accumulate) {
  int64_t t = 0;
  for (; t + kT <= a.n; t += kT)
    Tiles::template panel_tile<R, kT>(p, a.from(t), y + t * ldy, ldy, accumulate);
  for (; t < a.n; ++t) Tiles::template panel_tile<R, 1>(p, a.from(t), y + t * ldy, ldy, accumulate);
}

template <typename Tiles, typename Shape>
void gemm_tiled(const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y, int64_t ldy) {
  constexpr int kR = Shape::kR, kT = Shape::kT, kRv = Shape::kRv;
  if constexpr (Tiles::kPackable) {
    if (a.packed) return gemm_packed<Tiles, Shape::kRp, Shape::kTp>(w, rb, rows, a, y, ldy);
  }
  int64_t r = 0;
  if (a.n == 1) {
    for (; r + kRv <= rows; r += kRv)
      Tiles::template tile<kRv, 1>(w + uint64_t(r) * rb, rb, a, y + r, ldy);
    for (; r < rows; ++r) Tiles::template tile<1, 1>(w + uint64_t(r) * rb, rb, a, y + r, ldy);
    return;
  }
  if constexpr (Tiles::kPackedOnly) {  // the tier packs every multi-token call: no kR x kT tiles
    for (int64_t t = 0; t < a.n; ++t) {
      Acts one = a.from(t);
      one.n = 1;
      gemm_tiled<Tiles, Shape>(w, rb, rows, one, y + t * ldy, ldy);
    }
  } else {
    for (; r + kR <= rows; r += kR) {
      int64_t t = 0;
      for (; t + kT <= a.n; t += kT)
        Tiles::template tile<kR, kT>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
      for (; t < a.n; ++t)
        Tiles::template tile<kR, 1>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
    }
    for (; r < rows; ++r) {
      int64_t t = 0;
      for (; t + kT <= a.n; t += kT)
        Tiles::template tile<1, kT>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
      for (; t < a.n; ++t)
        Tiles::template tile<1, 1>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
    }
  }
}

// One dot product through the 1 x 1 tile.
template <typename Tiles>
float dot_tiled(const uint8_t* w, const Acts& a, int64_t t) {
  Acts one = a.from(t);
  one.n = 1;
  float y;
  Tiles::template tile<1, 1>(w, 0, one, &y, 1);
  return y;
}

}  // namespace
}  // namespace lowbit::kernel
