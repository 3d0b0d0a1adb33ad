// Tiles of the 256-value formats against kQ8x256 activations. Per super-block a row decodes
// to 8 chunks of 32 byte codes (unsigned, value v = c - off, or signed v = c) and integer scales
// per 16 values; the integer sum  sum_j sc_j * sum_{i in j} c_i q_i  is accumulated exactly in
// int32 lanes (Ops::madd_scaled: maddubs to 16-bit pairs, then times the scales), and
//   dot += (d * da) * that  -  (dc * da) * sum_j coef_j * bsum_j
// with coef = mn, dc = dmin for the affine formats (Q2_K, Q4_K, Q5_K) and coef = off * sc,
// dc = d for the offset ones (Q3_K, Q6_K, TQ*). Byte codes fit maddubs: c <= 63.
#pragma once

#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

inline __m256i load256(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
inline __m256i srl16(__m256i v, int n) {
  return _mm256_srl_epi16(v, _mm_cvtsi32_si128(n));
}
inline __m256i bits_at(__m256i v, int shift, int mask) {
  return _mm256_and_si256(srl16(v, shift), _mm256_set1_epi8(char(mask)));
}

// The parts of a super-block a tile needs once per row: scales as 16 int16 (one per 16 values),
// the correction coefficients (int16 per 16 values), and the float scales d and dc.
struct Prep256 {
  __m256i sc16, coef16;
  float d, dc;
  alignas(32) uint8_t codes[256];  // used by decoders that unpack the whole block at once
};

template <typename T>
struct Dec256 {
  static constexpr bool kHas = false;
};

inline __m128i load64(const void* p) {
  return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p));
}
inline __m256i dup_bytes_i16(__m128i v, bool is_signed) {  // 8 bytes -> 16 int16: b0 b0 b1 b1 ...
  const __m128i d = _mm_unpacklo_epi8(v, v);
  return is_signed ? _mm256_cvtepi8_epi16(d) : _mm256_cvtepu8_epi16(d);
}

// Offset formats: value d * sc * (c - off); the correction is off * sc against the block sums.
template <int kOff>
void prep_offset(__m256i sc16, uint16_t d, Prep256& p) {
  static_assert((kOff & (kOff - 1)) == 0, "offsets are powers of two");
  p.sc16 = sc16;
  p.coef16 = _mm256_slli_epi16(sc16, __builtin_ctz(unsigned(kOff)));
  p.d = p.dc = half_to_float(d);
}
inline void prep_affine(__m256i sc16, __m256i mn16, uint16_t d, uint16_t dmin, Prep256& p) {
  p.sc16 = sc16, p.coef16 = mn16;
  p.d = half_to_float(d), p.dc = half_to_float(dmin);
}

template <>
struct Dec256<formats::Q2_K> {
  using Block = formats::Q2_K::Block;
  static constexpr bool kSub16 = true, kUnitScale = false;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = true;
  static void prep(const Block& b, Prep256& p) {  // scales[j] = sc | mn << 4
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)),
                  m = _mm_set1_epi8(0x0F);
    prep_affine(_mm256_cvtepu8_epi16(_mm_and_si128(v, m)),
                _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(v, 4), m)), b.d, b.dmin, p);
  }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    return bits_at(load256(b.qs + 32 * (c / 4)), 2 * (c % 4), 3);
  }
};
template <>
struct Dec256<formats::Q3_K> {
  using Block = formats::Q3_K::Block;
  static constexpr bool kSub16 = true, kUnitScale = false;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = false;
  // 6-bit u_j = s_j + 32: low 4 bits in scales[j] (j < 8) or scales[j-8] >> 4; top 2 bits of
  // scales[8 + j%4] at bit 2*(j/4).
  static void prep(const Block& b, Prep256& p) {
    const __m128i a = load64(b.scales), m = _mm_set1_epi8(0x0F);
    const __m128i lo =
        _mm_unpacklo_epi64(_mm_and_si128(a, m), _mm_and_si128(_mm_srli_epi16(a, 4), m));
    uint32_t h;
    __builtin_memcpy(&h, b.scales + 8, 4);
    const __m128i hi = _mm_and_si128(_mm_setr_epi32(int(h), int(h >> 2), int(h >> 4), int(h >> 6)),
                                     _mm_set1_epi8(3));
    const __m128i u = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
    prep_offset<4>(_mm256_cvtepi8_epi16(u), b.d, p);
  }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const __m256i lo = bits_at(load256(b.qs + 32 * (c / 4)), 2 * (c % 4), 3);
    const __m256i hi = bits_at(load256(b.hmask), c, 1);  // bit 4n + j = c
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 2));
  }
};
// Q4_K / Q5_K: 8 six-bit scales and mins in 12 bytes = words a, b, c: sc[0..3] = a & 63,
// mn[0..3] = b & 63, sc[4..7] = (c & 0xF) | (a >> 6) << 4, mn[4..7] = (c >> 4) | (b >> 6) << 4.
inline void prep_k4(const uint8_t* q, uint16_t d, uint16_t dmin, Prep256& p) {
  uint32_t w[3];
  __builtin_memcpy(w, q, 12);
  const uint32_t lo6 = 0x3F3F3F3F, lo4 = 0x0F0F0F0F, top2 = 0x30303030;
  const uint32_t sc_lo = w[0] & lo6, mn_lo = w[1] & lo6;
  const uint32_t sc_hi = (w[2] & lo4) | ((w[0] >> 2) & top2),
                 mn_hi = ((w[2] >> 4) & lo4) | ((w[1] >> 2) & top2);
  const __m128i sc = _mm_cvtsi64_si128(int64_t(uint64_t(sc_lo) | uint64_t(sc_hi) << 32));
  const __m128i mn = _mm_cvtsi64_si128(int64_t(uint64_t(mn_lo) | uint64_t(mn_hi) << 32));
  prep_affine(dup_bytes_i16(sc, false), dup_bytes_i16(mn, false), d, dmin, p);
}

template <>
struct Dec256<formats::Q4_K> {
  using Block = formats::Q4_K::Block;
  static constexpr bool kSub16 = false, kUnitScale = false;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = true;
  static void prep(const Block& b, Prep256& p) { prep_k4(b.scales, b.d, b.dmin, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    return bits_at(load256(b.qs + 32 * (c / 2)), 4 * (c % 2), 0xF);
  }
};
template <>
struct Dec256<formats::Q5_K> {
  using Block = formats::Q5_K::Block;
  static constexpr bool kSub16 = false, kUnitScale = false;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = true;
  static void prep(const Block& b, Prep256& p) { prep_k4(b.scales, b.d, b.dmin, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const __m256i lo = bits_at(load256(b.qs + 32 * (c / 2)), 4 * (c % 2), 0xF);
    return _mm256_or_si256(lo, _mm256_slli_epi16(bits_at(load256(b.qh), c, 1), 4));
  }
};
template <>
struct Dec256<formats::Q6_K> {
  using Block = formats::Q6_K::Block;
  static constexpr bool kSub16 = true, kUnitScale = false;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = false;
  static void prep(const Block& b, Prep256& p) {
    prep_offset<32>(
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales))), b.d, p);
  }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const int n = c / 4, k = c % 4;
    const __m256i lo = bits_at(load256(b.ql + n * 64 + (k & 1) * 32), 4 * (k >> 1), 0xF);
    const __m256i hi = bits_at(load256(b.qh + n * 32), 2 * k, 3);
    return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
  }
};
template <>
struct Dec256<formats::IQ4_XS> {
  using Block = formats::IQ4_XS::Block;
  static constexpr bool kSub16 = false, kUnitScale = false;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = true, kCorr = false;
  static constexpr bool kAffine = false;
  // ls_j = (scales_l[j/2] >> 4*(j%2)) & 0xF | ((scales_h >> 2j) & 3) << 4; scale ls_j - 32.
  static void prep(const Block& b, Prep256& p) {
    uint32_t l;
    __builtin_memcpy(&l, b.scales_l, 4);
    const __m128i lv = _mm_cvtsi32_si128(int(l)), m = _mm_set1_epi8(0x0F);
    const __m128i lo =
        _mm_unpacklo_epi8(_mm_and_si128(lv, m), _mm_and_si128(_mm_srli_epi16(lv, 4), m));
    const __m128i hi = _mm_cvtsi64_si128(int64_t(_pdep_u64(b.scales_h, 0x0303030303030303ull)));
    const __m128i ls = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
    p.sc16 = dup_bytes_i16(ls, true);
    p.coef16 = _mm256_setzero_si256();
    p.d = half_to_float(b.d), p.dc = 0;
  }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 16 * c));
    const __m256i nib =
        _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), _mm256_set1_epi8(0x0F));
    const __m128i t =
        _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
    return _mm256_shuffle_epi8(_mm256_set_m128i(t, t), nib);
  }
};
template <>
struct Dec256<formats::TQ2_0> {
  using Block = formats::TQ2_0::Block;
  static constexpr bool kSub16 = false, kUnitScale = true;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = false;
  static void prep(const Block& b, Prep256& p) { prep_offset<1>(_mm256_set1_epi16(1), b.d, p); }
  static __m256i codes(const Block& b, const Prep256&, int c) {
    return bits_at(load256(b.qs + 32 * (c / 4)), 2 * (c % 4), 3);
  }
};

// TQ1_0 digit of each byte: ((x * m) mod 256) * 3 >> 8, m = 3^n given per byte (16-bit lanes
// do the 8-bit products: even bytes in the low halves, odd bytes shifted down).
inline __m256i tq1_digits(__m256i x, __m256i m) {
  const __m256i lo8 = _mm256_set1_epi16(0x00FF), three = _mm256_set1_epi16(3);
  const __m256i ye = _mm256_and_si256(_mm256_mullo_epi16(x, _mm256_and_si256(m, lo8)), lo8);
  const __m256i yo =
      _mm256_and_si256(_mm256_mullo_epi16(_mm256_srli_epi16(x, 8), _mm256_srli_epi16(m, 8)), lo8);
  const __m256i de = _mm256_srli_epi16(_mm256_mullo_epi16(ye, three), 8);
  const __m256i dd = _mm256_srli_epi16(_mm256_mullo_epi16(yo, three), 8);
  return _mm256_or_si256(de, _mm256_slli_epi16(dd, 8));
}

template <>
struct Dec256<formats::TQ1_0> {
  using Block = formats::TQ1_0::Block;
  static constexpr bool kSub16 = false, kUnitScale = true;  // 16-value sub-blocks; all scales 1
  static constexpr bool kHas = true, kSigned = false, kCorr = true;
  static constexpr bool kAffine = false;
  // Placement (src/format/ternary.h): values 0..159 are digit e/32 of qs[e%32]; 160..239 digit
  // (e-160)/16 of qs[32 + e%16]; 240..255 digit (e-240)/4 of qh[e%4].
  static void prep(const Block& b, Prep256& p) {
    prep_offset<1>(_mm256_set1_epi16(1), b.d, p);
    const __m256i lo = load256(b.qs);
    const __m128i mid = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs + 32));
    const __m256i mid2 = _mm256_set_m128i(mid, mid);
    constexpr int kPow3[5] = {1, 3, 9, 27, 81};
    for (int n = 0; n < 5; ++n) {
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes + 32 * n),
                         tq1_digits(lo, _mm256_set1_epi8(char(kPow3[n]))));
    }
    for (int n = 0; n < 2; ++n) {  // 160..223: two digits of qs[32..47] per 32 values
      const __m256i m = _mm256_set_m128i(_mm_set1_epi8(char(kPow3[2 * n + 1])),
                                         _mm_set1_epi8(char(kPow3[2 * n])));
      _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes + 160 + 32 * n), tq1_digits(mid2, m));
    }
    uint32_t h;
    __builtin_memcpy(&h, b.qh, 4);
    const __m256i last = _mm256_set_m128i(_mm_set1_epi32(int(h)), mid);
    const __m256i m = _mm256_setr_epi8(81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81, 81,
                                       81, 1, 1, 1, 1, 3, 3, 3, 3, 9, 9, 9, 9, 27, 27, 27, 27);
    _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes + 224), tq1_digits(last, m));
  }
  static __m256i codes(const Block&, const Prep256& p, int c) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(p.codes + 32 * c));
  }
};

// Scales of chunk c (values 32c .. 32c+31) as 16 int16: sc[2c] x 8, then sc[2c+1] x 8.
inline __m256i chunk_scales(__m256i sc16, int c) {
  const __m256i pair = _mm256_permutevar8x32_epi32(sc16, _mm256_set1_epi32(c));
  return _mm256_shuffle_epi8(
      pair, _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3,
                             2, 3, 2, 3, 2, 3, 2, 3));
}

template <typename Ops, typename Dec>
struct Q256Tiles {
  using Block = typename Dec::Block;

  template <int R, int T>
  static void tile(const uint8_t* w, uint64_t rb, const Acts& a, float* y, int64_t ldy) {
    const int64_t K = a.K, nsb = K / 256;
    const Block* blk[R];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) blk[r] =
        reinterpret_cast<const Block*>(w + uint64_t(r) * rb);
    __m256 acc[R][T];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t sb = 0; sb < nsb; ++sb) {
      Prep256 pr[R];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) Dec::prep(blk[r][sb], pr[r]);
      // Two integer chains when few (row, token) pairs would leave the 8 chunks' multiply-adds
      // waiting on each other; summed below.
      constexpr int kChains = R * T >= 4 ? 1 : 2;
      __m256i isum[R][T], isum2[R][T];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[r][t] = isum2[r][t] = _mm256_setzero_si256();
      }
      LOWBIT_UNROLL for (int c = 0; c < 8; ++c) {
        __m256i(&is)[R][T] = kChains == 2 && (c & 1) ? isum2 : isum;
        __m256i wv[R], sv[R];
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          wv[r] = Dec::codes(blk[r][sb], pr[r], c);
          sv[r] = chunk_scales(pr[r].sc16, c);
        }
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const __m256i av = _mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(a.qs + t * K + sb * 256 + 32 * c));
          LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
            is[r][t] = Ops::template madd_scaled<Dec::kSigned>(is[r][t], wv[r], av, sv[r]);
          }
        }
      }
      if constexpr (kChains == 2) {
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[r][t] =
              _mm256_add_epi32(isum[r][t], isum2[r][t]);
        }
      }
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const float da = a.d[t * nsb + sb];
        const __m256i bs =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums + (t * nsb + sb) * 16));
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          // Offset formats (dc == d) subtract the correction in int32, affine ones in float.
          __m256i is = isum[r][t];
          if constexpr (Dec::kCorr && !Dec::kAffine)
            is = _mm256_sub_epi32(is, _mm256_madd_epi16(pr[r].coef16, bs));
          acc[r][t] =
              _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(pr[r].d * da), acc[r][t]);
          if constexpr (Dec::kCorr && Dec::kAffine) {
            const __m256 c = _mm256_cvtepi32_ps(_mm256_madd_epi16(pr[r].coef16, bs));
            acc[r][t] = _mm256_fnmadd_ps(c, _mm256_set1_ps(pr[r].dc * da), acc[r][t]);
          }
        }
      }
    }
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) y[t * ldy + r] = hsum_ps(acc[r][t]);
    }
  }

  // Packed activations (lane j of vector m = dword m of chunk j): the row's 8 chunks of codes are
  // transposed alike, so the dot-accumulates of vectors 0..3 (first 16 values of each chunk) and
  // 4..7 (last 16) leave per-lane sums for the 16 sub-blocks, multiplied by their scales in int32.
  // A panel holds R rows decoded that way for up to kPanelElems values.
  static constexpr bool kPackable = true, kPackedOnly = Ops::kPacked;
  // Signed codes shifted to u8 by the tier (VNNI: +128) are corrected like an offset.
  static constexpr int kSignedOff = Dec::kSigned ? Ops::kSignedOffset : 0;
  static constexpr bool kIntCorr = (Dec::kCorr && !Dec::kAffine) || kSignedOff != 0;
  static constexpr int64_t kPanelBlocks = kPanelElems / 256;

  struct PanelBlock {
    __m256i codes[8];      // transposed
    __m256i sc_lo, sc_hi;  // int32 scale of each chunk's first / last 16 values
    __m256i coef16;        // correction coefficients against the block sums
    float d, dc;
  };
  template <int R>
  struct Panel {
    alignas(32) PanelBlock b[R][kPanelBlocks];
    int64_t sb0 = 0, nsb = 0;
  };

  static void decode_block(const Block& blk, PanelBlock& o) {
    Prep256 pr;
    Dec::prep(blk, pr);
    LOWBIT_UNROLL for (int c = 0; c < 8; ++c) {
      o.codes[c] = Dec::codes(blk, pr, c);
      if constexpr (Dec::kSigned) o.codes[c] = Ops::prep_signed(o.codes[c]);
    }
    transpose8x8_epi32(o.codes);
    // Dword j of sc16 = (sc[2j], sc[2j+1]): the scales of chunk j's two halves.
    o.sc_lo = _mm256_srai_epi32(_mm256_slli_epi32(pr.sc16, 16), 16);
    o.sc_hi = _mm256_srai_epi32(pr.sc16, 16);
    o.coef16 = pr.coef16;
    if constexpr (kSignedOff != 0) {
      o.coef16 = _mm256_add_epi16(o.coef16,
                                  _mm256_slli_epi16(pr.sc16, __builtin_ctz(unsigned(kSignedOff))));
    }
    o.d = pr.d, o.dc = pr.dc;
  }

  template <int R, int T>
  static void panel_tile(const Panel<R>& p, const Acts& a, float* y, int64_t ldy, bool accumulate) {
    const int64_t K = a.K, nsb = K / 256;
    __m256 acc[R][T];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < p.nsb; ++i) {
      const int64_t sb = p.sb0 + i;
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const int8_t* at = a.qs + t * K + sb * 256;
        __m256i lo[R], hi[R];
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
        LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 32 * m));
          LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
            if (Dec::kSub16 && m >= 4)
              hi[r] = dot_acc(hi[r], p.b[r][i].codes[m], av);
            else
              lo[r] = dot_acc(lo[r], p.b[r][i].codes[m], av);
          }
        }
        const float da = a.d[t * nsb + sb];
        const __m256i bs =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bsums + (t * nsb + sb) * 16));
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          const PanelBlock& pb = p.b[r][i];
          __m256i is = lo[r];  // 32-value sub-blocks: one scale per lane; TQ*: none
          if constexpr (Dec::kSub16)
            is = _mm256_add_epi32(_mm256_mullo_epi32(lo[r], pb.sc_lo),
                                  _mm256_mullo_epi32(hi[r], pb.sc_hi));
          else if constexpr (!Dec::kUnitScale)
            is = _mm256_mullo_epi32(lo[r], pb.sc_lo);
          if constexpr (kIntCorr) is = _mm256_sub_epi32(is, _mm256_madd_epi16(pb.coef16, bs));
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(pb.d * da), acc[r][t]);
          if constexpr (Dec::kCorr && Dec::kAffine) {
            const __m256 c = _mm256_cvtepi32_ps(_mm256_madd_epi16(pb.coef16, bs));
            acc[r][t] = _mm256_fnmadd_ps(c, _mm256_set1_ps(pb.dc * da), acc[r][t]);
          }
        }
      }
    }
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const float v = hsum_ps(acc[r][t]);
        y[t * ldy + r] = accumulate ? y[t * ldy + r] + v : v;
      }
    }
  }

  template <int R, int T>
  static void rows_packed(const uint8_t* w, uint64_t rb, const Acts& a, float* y, int64_t ldy) {
    const int64_t nsb = a.K / 256;
    const Block* blk[R];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) blk[r] =
        reinterpret_cast<const Block*>(w + uint64_t(r) * rb);
    Panel<R> p;
    for (int64_t sb0 = 0; sb0 < nsb; sb0 += kPanelBlocks) {
      p.sb0 = sb0, p.nsb = nsb - sb0 < kPanelBlocks ? nsb - sb0 : kPanelBlocks;
      for (int64_t i = 0; i < p.nsb; ++i) {
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) decode_block(blk[r][sb0 + i], p.b[r][i]);
      }
      panel_tokens<Q256Tiles, R, T>(p, a, y, ldy, sb0 > 0);
    }
  }

  static __m256i dot_acc(__m256i acc, __m256i w, __m256i a) {
    if constexpr (Dec::kSigned)
      return Ops::dot_signed_acc(acc, w, a);
    else
      return Ops::dot_u8s8_acc(acc, w, a);
  }
};

}  // namespace
}  // namespace lowbit::kernel
