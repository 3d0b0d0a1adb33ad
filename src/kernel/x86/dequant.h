// Vectorized row decoders: for formats without an integer-dot kernel (lowbit's NF4 and grouped
// intN with B = 2, 4, 8) the generic path decodes rows with them instead of the scalar codecs,
// then runs the float gemm; Q4_0, Q8_0, Q4_K and Q6_K (the common GGUF bases: Q4_K_M files are
// Q4_K and Q6_K) for training through a frozen weight (dequantize_rows). Bit-exact to the codecs
// (same products: kNf4[q] * d, (q - z) * d).
#pragma once

#include "format/intn.h"
#include "format/kquants.h"
#include "format/legacy.h"
#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

// NF4: blocks of 64 {fp16 d; u8 qs[32]}, value i < 32 in the low nibble of qs[i], else the high
// nibble of qs[i - 32]. The 16-entry codebook times d is looked up by two 8-entry permutes.
void dequant_nf4(const uint8_t* row, int64_t K, int64_t, float* y) {
  const auto& book = formats::kNf4Values;
  const __m256 lo_tab = _mm256_loadu_ps(book.data()), hi_tab = _mm256_loadu_ps(book.data() + 8);
  for (int64_t b = 0; b < K / 64; ++b) {
    const auto& blk = reinterpret_cast<const formats::NF4::Block*>(row)[b];
    const __m256 d = _mm256_set1_ps(half_to_float(blk.d));
    const __m256 tl = _mm256_mul_ps(lo_tab, d), th = _mm256_mul_ps(hi_tab, d);
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs));
    const __m256i nib[2] = {_mm256_and_si256(q, _mm256_set1_epi8(0x0F)),
                            _mm256_and_si256(_mm256_srli_epi16(q, 4), _mm256_set1_epi8(0x0F))};
    for (int h = 0; h < 2; ++h) {
      alignas(32) uint8_t c[32];
      _mm256_store_si256(reinterpret_cast<__m256i*>(c), nib[h]);
      for (int i = 0; i < 32; i += 8) {
        const __m256i idx =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(c + i)));
        const __m256 vl = _mm256_permutevar8x32_ps(tl, idx), vh = _mm256_permutevar8x32_ps(th, idx);
        const __m256 hi = _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, _mm256_set1_epi32(7)));
        _mm256_storeu_ps(y + b * 64 + h * 32 + i, _mm256_blendv_ps(vl, vh, hi));
      }
    }
  }
}

// Q4_0: blocks of 32 {fp16 d; u8 qs[16]}, value i < 16 in the low nibble of qs[i], else the high
// nibble of qs[i - 16]; x = (q - 8) * d.
void dequant_q4_0(const uint8_t* row, int64_t K, int64_t, float* y) {
  for (int64_t b = 0; b < K / 32; ++b, y += 32) {
    const auto& blk = reinterpret_cast<const formats::Q4_0::Block*>(row)[b];
    const __m256 d = _mm256_set1_ps(half_to_float(blk.d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.qs));
    const __m128i half[2] = {_mm_and_si128(q, _mm_set1_epi8(0x0F)),
                             _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(0x0F))};
    const __m256i eight = _mm256_set1_epi32(8);
    for (int h = 0; h < 2; ++h) {  // values 16 h .. 16 h + 15, eight at a time
      const __m256i a = _mm256_sub_epi32(_mm256_cvtepu8_epi32(half[h]), eight);
      const __m256i b8 = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(half[h], 8)), eight);
      _mm256_storeu_ps(y + h * 16, _mm256_mul_ps(_mm256_cvtepi32_ps(a), d));
      _mm256_storeu_ps(y + h * 16 + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(b8), d));
    }
  }
}

// Q8_0: blocks of 32 {fp16 d; i8 qs[32]}; x = q * d.
void dequant_q8_0(const uint8_t* row, int64_t K, int64_t, float* y) {
  for (int64_t b = 0; b < K / 32; ++b, y += 32) {
    const auto& blk = reinterpret_cast<const formats::Q8_0::Block*>(row)[b];
    const __m256 d = _mm256_set1_ps(half_to_float(blk.d));
    for (int i = 0; i < 32; i += 8) {
      const __m256i q =
          _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.qs + i)));
      _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), d));
    }
  }
}

// 8 bytes of v from byte i (i % 8 == 0) as floats, each less `off`, times dd, less mm: the
// codecs' dd * float(q - off) - mm, in that order.
LOWBIT_INLINE void store8(const uint8_t* bytes, int off, float dd, float mm, float* y) {
  const __m256i q = _mm256_sub_epi32(
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(bytes))),
      _mm256_set1_epi32(off));
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(_mm256_set1_ps(dd), _mm256_cvtepi32_ps(q)),
                                    _mm256_set1_ps(mm)));
}

// Q4_K: super-blocks of 256 {fp16 d, dmin; u8 scales[12]; u8 qs[128]}; 64-value chunk c reads
// qs[32c ..], low nibbles for sub-block 2c, high for 2c + 1; x = (d sc) q - (dmin mn) with
// sc, mn the sub-block's 6-bit scale and min (format/kquants.cpp's packing).
void dequant_q4_k(const uint8_t* row, int64_t K, int64_t, float* y) {
  for (int64_t b = 0; b < K / 256; ++b, y += 256) {
    const auto& blk = reinterpret_cast<const formats::Q4_K::Block*>(row)[b];
    const float d = half_to_float(blk.d), dmin = half_to_float(blk.dmin);
    const uint8_t* s = blk.scales;
    for (int c = 0; c < 4; ++c) {
      alignas(32) uint8_t q[2][32];
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qs + 32 * c));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q[0]),
                         _mm256_and_si256(raw, _mm256_set1_epi8(0x0F)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q[1]),
                         _mm256_and_si256(_mm256_srli_epi16(raw, 4), _mm256_set1_epi8(0x0F)));
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * c + h;
        const int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        const int mn = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        const float dd = d * float(sc), mm = dmin * float(mn);
        for (int i = 0; i < 32; i += 8) store8(q[h] + i, 0, dd, mm, y + 64 * c + 32 * h + i);
      }
    }
  }
}

// Q6_K: super-blocks of 256 {u8 ql[128]; u8 qh[64]; i8 scales[16]; fp16 d}; half n, lane l < 32:
// values 128n + l + 32k (k = 0..3) take ql[64n + l + 32 (k & 1)]'s low (k < 2) or high nibble
// and bits 2k, 2k + 1 of qh[32n + l]; x = (d scales[e / 16]) (q - 32).
void dequant_q6_k(const uint8_t* row, int64_t K, int64_t, float* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x03);
  for (int64_t b = 0; b < K / 256; ++b, y += 256) {
    const auto& blk = reinterpret_cast<const formats::Q6_K::Block*>(row)[b];
    const float d = half_to_float(blk.d);
    for (int n = 0; n < 2; ++n) {
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * n));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * n + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * n));
      auto high = [&](int shift) {  // bits shift, shift + 1 of qh, moved to bits 4 and 5
        return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, shift), m2), 4);
      };
      alignas(32) uint8_t q[4][32];
      _mm256_store_si256(reinterpret_cast<__m256i*>(q[0]),
                         _mm256_or_si256(_mm256_and_si256(l0, m4), high(0)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q[1]),
                         _mm256_or_si256(_mm256_and_si256(l1, m4), high(2)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q[2]),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), high(4)));
      _mm256_store_si256(reinterpret_cast<__m256i*>(q[3]),
                         _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), high(6)));
      for (int k = 0; k < 4; ++k) {
        for (int i = 0; i < 32; i += 8) {
          const int e = 128 * n + 32 * k + i;
          store8(q[k] + i, 32, d * float(blk.scales[e / 16]), 0.0f, y + e);
        }
      }
    }
  }
}

// 8 codes of B bits (2, 4 or 8) from the LSB-first bit stream, starting at value i (i % 8 == 0).
template <int B>
LOWBIT_INLINE __m256i codes8(const uint8_t* codes, int64_t i) {
  const uint8_t* p = codes + i * B / 8;
  if constexpr (B == 8) {
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  } else if constexpr (B == 4) {
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    const __m256i w = _mm256_set1_epi32(int(v));
    return _mm256_and_si256(_mm256_srlv_epi32(w, _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                            _mm256_set1_epi32(15));
  } else {
    static_assert(B == 2);
    uint16_t v;
    __builtin_memcpy(&v, p, 2);
    const __m256i w = _mm256_set1_epi32(int(v));
    return _mm256_and_si256(_mm256_srlv_epi32(w, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                            _mm256_set1_epi32(3));
  }
}

// Grouped intN: groups of G values {fp16 d; u8 z (asym); codes}, the last group may be shorter;
// x = (q - z) * d with z = 2^(B-1) for the symmetric variants.
template <int B, bool kAsym>
void dequant_intn(const uint8_t* row, int64_t K, int64_t G, float* y) {
  const int64_t hdr = kAsym ? 3 : 2;
  for (int64_t k0 = 0; k0 < K; k0 += G) {
    const int64_t n = K - k0 < G ? K - k0 : G;
    uint16_t h;
    __builtin_memcpy(&h, row, 2);
    const float d = half_to_float(h);
    const int z = kAsym ? row[2] : (1 << (B - 1));
    const uint8_t* codes = row + hdr;
    const __m256 dv = _mm256_set1_ps(d);
    const __m256i zv = _mm256_set1_epi32(z);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256i q = _mm256_sub_epi32(codes8<B>(codes, i), zv);
      _mm256_storeu_ps(y + k0 + i, _mm256_mul_ps(_mm256_cvtepi32_ps(q), dv));
    }
    for (; i < n; ++i) {  // tail of a group whose length is not a multiple of 8
      const int q = (codes[i * B / 8] >> (i * B % 8)) & ((1 << B) - 1);
      y[k0 + i] = float(q - z) * d;
    }
    row += hdr + (n * B + 7) / 8;
  }
}

// The decoder of format T, or nullptr.
template <typename T>
inline constexpr DequantFn kDequantOf = nullptr;
template <>
inline constexpr DequantFn kDequantOf<formats::NF4> = dequant_nf4;
template <>
inline constexpr DequantFn kDequantOf<formats::Q4_0> = dequant_q4_0;
template <>
inline constexpr DequantFn kDequantOf<formats::Q8_0> = dequant_q8_0;
template <>
inline constexpr DequantFn kDequantOf<formats::Q4_K> = dequant_q4_k;
template <>
inline constexpr DequantFn kDequantOf<formats::Q6_K> = dequant_q6_k;
template <>
inline constexpr DequantFn kDequantOf<formats::Int8> = dequant_intn<8, false>;
template <>
inline constexpr DequantFn kDequantOf<formats::Int4> = dequant_intn<4, false>;
template <>
inline constexpr DequantFn kDequantOf<formats::Int4Asym> = dequant_intn<4, true>;
template <>
inline constexpr DequantFn kDequantOf<formats::Int2> = dequant_intn<2, false>;
template <>
inline constexpr DequantFn kDequantOf<formats::Int2Asym> = dequant_intn<2, true>;
template <>
inline constexpr DequantFn kDequantOf<formats::Tern> = dequant_intn<2, false>;

}  // namespace
}  // namespace lowbit::kernel
