// Tiles of the 256-value formats against kQ8x256 activations. Per super-block a row decodes
// to 8 chunks of 32 byte codes (unsigned, value v = c - off, or signed v = c) and integer scales
// per 16 values; the integer sum  sum_j sc_j * sum_{i in j} c_i q_i  is accumulated exactly in
// int32 lanes (Ops::madd_scaled: maddubs to 16-bit pairs, then times the scales), and
//   dot += (d * da) * that  -  (dc * da) * sum_j coef_j * bsum_j
// with coef = mn, dc = dmin for the affine formats (Q2_K, Q4_K, Q5_K) and coef = off * sc,
// dc = d for the offset ones (Q3_K, Q6_K, TQ*). Byte codes fit maddubs: c <= 63.
#pragma once

#include "kernel/block_scales.h"
#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256i srl16(__m256i v, int n) { return _mm256_srl_epi16(v, _mm_cvtsi32_si128(n)); }
inline __m256i bits_at(__m256i v, int shift, int mask) {
  return _mm256_and_si256(srl16(v, shift), _mm256_set1_epi8(char(mask)));
}

// The parts of a super-block a tile needs once per row: scales as 16 int16 (one per 16 values),
// the correction coefficients, and the two float scales.
struct Prep256 {
  __m256i sc16, coef16;
  float d, dc;
  alignas(32) uint8_t codes[256];  // used by decoders that unpack the whole block at once
};

template <typename T> struct Dec256 { static constexpr bool kHas = false; };

// Common scale preparation: affine formats (mins) or offset formats (off * sc).
template <typename Block, bool kAffine, int kOff>
void prep_scales(const Block& b, Prep256& p) {
  SubScales16 s;
  sub_scales(b, s);
  p.sc16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.sc));
  p.d = half_to_float(super_d(b));
  if constexpr (kAffine) {
    p.coef16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.mn));
    p.dc = half_to_float(super_dmin(b));
  } else {
    p.coef16 = _mm256_mullo_epi16(p.sc16, _mm256_set1_epi16(kOff));
    p.dc = p.d;
  }
}

template <> struct Dec256<formats::Q2_K> {
  using Block = formats::Q2_K::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static void prep(const Block& b, Prep256& p) { prep_scales<Block, true, 0>(b, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) { return bits_at(load256(b.qs + 32 * (c / 4)), 2 * (c % 4), 3); }
};
template <> struct Dec256<formats::Q3_K> {
  using Block = formats::Q3_K::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static void prep(const Block& b, Prep256& p) { prep_scales<Block, false, 4>(b, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const __m256i lo = bits_at(load256(b.qs + 32 * (c / 4)), 2 * (c % 4), 3);
    const __m256i hi = bits_at(load256(b.hmask), c, 1);  // bit 4n + j = c
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 2));
  }
};
template <> struct Dec256<formats::Q4_K> {
  using Block = formats::Q4_K::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static void prep(const Block& b, Prep256& p) { prep_scales<Block, true, 0>(b, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) { return bits_at(load256(b.qs + 32 * (c / 2)), 4 * (c % 2), 0xF); }
};
template <> struct Dec256<formats::Q5_K> {
  using Block = formats::Q5_K::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static void prep(const Block& b, Prep256& p) { prep_scales<Block, true, 0>(b, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const __m256i lo = bits_at(load256(b.qs + 32 * (c / 2)), 4 * (c % 2), 0xF);
    return _mm256_or_si256(lo, _mm256_slli_epi16(bits_at(load256(b.qh), c, 1), 4));
  }
};
template <> struct Dec256<formats::Q6_K> {
  using Block = formats::Q6_K::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static void prep(const Block& b, Prep256& p) { prep_scales<Block, false, 32>(b, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const int n = c / 4, k = c % 4;
    const __m256i lo = bits_at(load256(b.ql + n * 64 + (k & 1) * 32), 4 * (k >> 1), 0xF);
    const __m256i hi = bits_at(load256(b.qh + n * 32), 2 * k, 3);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
  }
};
template <> struct Dec256<formats::IQ4_XS> {
  using Block = formats::IQ4_XS::Block;
  static constexpr bool kHas = true, kSigned = true, kCorr = false;
  static void prep(const Block& b, Prep256& p) {
    SubScales16 s;
    sub_scales(b, s);
    p.sc16 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.sc));
    p.coef16 = _mm256_setzero_si256();
    p.d = half_to_float(b.d), p.dc = 0;
  }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * c));
    const __m256i nib = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
    const __m128i t = _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), nib);
  }
};
template <> struct Dec256<formats::TQ2_0> {
  using Block = formats::TQ2_0::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static void prep(const Block& b, Prep256& p) { prep_scales<Block, false, 1>(b, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) { return bits_at(load256(b.qs + 32 * (c / 4)), 2 * (c % 4), 3); }
};

// TQ1_0 digit of each byte: ((x * m) mod 256) * 3 >> 8, m = 3^n given per byte (16-bit lanes
// do the 8-bit products: even bytes in the low halves, odd bytes shifted down).
inline __m256i tq1_digits(__m256i x, __m256i m) {
  const __m256i lo8 = _mm256_set1_epi16(0x00FF), three = _mm256_set1_epi16(3);
  const __m256i ye = _mm256_and_si256(_mm256_mullo_epi16(x, _mm256_and_si256(m, lo8)), lo8);
  const __m256i yo = _mm256_and_si256(_mm256_mullo_epi16(_mm256_srli_epi16(x, 8), _mm256_srli_epi16(m, 8)), lo8);
  const __m256i de = _mm256_srli_epi16(_mm256_mullo_epi16(ye, three), 8);
  const __m256i dd = _mm256_srli_epi16(_mm256_mullo_epi16(yo, three), 8);
  return _mm256_or_si256(de, _mm256_slli_epi16(dd, 8));
}

template <> struct Dec256<formats::TQ1_0> {
  using Block = formats::TQ1_0::Block;
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  // Placement (src/format/ternary.h): values 0..159 are digit e/32 of qs[e%32]; 160..239 digit
  // (e-160)/16 of qs[32 + e%16]; 240..255 digit (e-240)/4 of qh[e%4].
  static void prep(const Block& b, Prep256& p) {
    prep_scales<Block, false, 1>(b, p);
    const __m256i lo = load256(b.qs);
    const __m128i mid = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 32));
    const __m256i mid2 = _mm256_set_m128i(mid, mid);
    constexpr int kPow3[5] = {1, 3, 9, 27, 81};
    for (int n = 0; n < 5; ++n) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes + 32 * n), tq1_digits(lo, _mm256_set1_epi8(char(kPow3[n]))));
    }
    for (int n = 0; n < 2; ++n) {  // 160..223: two digits of qs[32..47] per 32 values
      const __m256i m = _mm256_set_m128i(_mm_set1_epi8(char(kPow3[2 * n + 1])), _mm_set1_epi8(char(kPow3[2 * n])));
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes + 160 + 32 * n), tq1_digits(mid2, m));
    }
    uint32_t h;
    __builtin_memcpy(&h, b.qh, 4);
    const __m256i last = _mm256_set_m128i(_mm_set1_epi32(int(h)), mid);
    const __m256i m = _mm256_setr_epi8(81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81,
                                       1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
    _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes + 224), tq1_digits(last, m));
  }
  static __m256i codes(const Block&, const Prep256& p, int c) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(p.codes + 32 * c));
  }
};

// Scales of chunk c (values 32c .. 32c+31) as 16 int16: sc[2c] x 8, then sc[2c+1] x 8.
inline __m256i chunk_scales(__m256i sc16, int c) {
  const __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(c));
  return _mm256_shuffle_epi8(pair, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                                    2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
}

template <typename Ops, typename Dec>
struct Q256Tiles {
  using Block = typename Dec::Block;

  template <int R, int T>
  static void tile(const uint8_t* w, uint64_t rb, const Acts& a, float* y, int64_t ldy) {
    const int64_t K = a.K, nsb = K / 256;
    const Block* blk[R];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) blk[r] = reinterpret_cast<const Block*>(w + uint64_t(r) * rb);
    __m256 acc[R][T];
    float corr[R][T];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps(), corr[r][t] = 0;
    }
    for (int64_t sb = 0; sb < nsb; ++sb) {
      Prep256 pr[R];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) Dec::prep(blk[r][sb], pr[r]);
      __m256i isum[R][T];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[r][t] = _mm256_setzero_si256();
      }
      LOWBIT_UNROLL for (int c = 0; c < 8; ++c) {
        __m256i wv[R], sv[R];
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          wv[r] = Dec::codes(blk[r][sb], pr[r], c);
          sv[r] = chunk_scales(pr[r].sc16, c);
        }
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + t * K + sb * 256 + 32 * c));
          LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
            isum[r][t] = Ops::template madd_scaled<Dec::kSigned>(isum[r][t], wv[r], av, sv[r]);
          }
        }
      }
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const float da = a.d[t * nsb + sb];
        const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums + (t * nsb + sb) * 16));
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][t]), _mm256_set1_ps(pr[r].d * da), acc[r][t]);
          if constexpr (Dec::kCorr) {
            corr[r][t] -= (pr[r].dc * da) * float(hsum_epi32(_mm256_madd_epi16(pr[r].coef16, bs)));
          }
        }
      }
    }
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum_ps(acc[r][t]) + corr[r][t];
    }
  }
};

}  // namespace
}  // namespace lowbit::kernel
