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

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }
// Round to fp16 and back, to nearest even (F16C is IEEE: subnormals kept, as lowbit's codecs).
inline float round_half(float f) { return _cvtsh_ss(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }

// n (0..8) floats, zero-filled above n.
inline __m256 load_partial8(const float* p, int n) {
  if (n >= 8) return _mm256_loadu_ps(p);
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx));
}

// ---- activation quantizers ------------------------------------------------------------------

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

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
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permutevar8x32_epi32(p, perm));
}

// kQ8x32: d = fp16(absmax / 127), q = round(x / d), s = d * sum(q).
void quantize_q8x32_x86(const float* x, int64_t K, int8_t* qs, float* d, float* s, int16_t*) {
  for (int64_t b = 0; b < K / 32; ++b) {
    const float* xb = x + b * 32;
    __m256 m = abs_ps(_mm256_loadu_ps(xb));
    for (int i = 1; i < 4; ++i) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(xb + 8 * i)));
    const float db = round_half(hmax_ps(m) / 127.0f), id = db != 0 ? 1.0f / db : 0.0f;
    __m256i q[4];
    round_scaled(xb, id, q);
    const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    store_q8(q, qs + b * 32);
    d[b] = db;
    s[b] = db * float(sum);
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
        const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(xb + 8 * i)), mv, _CMP_EQ_OQ));
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

// ---- tiles ----------------------------------------------------------------------------------
// A tile family Tiles provides `template <int R, int T> static void tile(w, rb, a, y, ldy)`:
// R rows from w (row_bytes rb) times the first T tokens of a. Shape: kR x kT tiles for
// prompts, kRv x 1 for one token (generation), smaller ones for the edges.

template <typename Tiles, int kR, int kT, int kRv>
void gemm_tiled(const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y, int64_t ldy) {
  int64_t r = 0;
  if (a.n == 1) {
    for (; r + kRv <= rows; r += kRv) Tiles::template tile<kRv, 1>(w + uint64_t(r) * rb, rb, a, y + r, ldy);
    for (; r < rows; ++r) Tiles::template tile<1, 1>(w + uint64_t(r) * rb, rb, a, y + r, ldy);
    return;
  }
  for (; r + kR <= rows; r += kR) {
    int64_t t = 0;
    for (; t + kT <= a.n; t += kT) Tiles::template tile<kR, kT>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
    for (; t < a.n; ++t) Tiles::template tile<kR, 1>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
  }
  for (; r < rows; ++r) {
    int64_t t = 0;
    for (; t + kT <= a.n; t += kT) Tiles::template tile<1, kT>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
    for (; t < a.n; ++t) Tiles::template tile<1, 1>(w + uint64_t(r) * rb, rb, a.from(t), y + t * ldy + r, ldy);
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
