// Tiles of the 32-value formats against kQ8x32 activations. A block decodes to 32 byte codes c
// with value v = c - off (unsigned codes, off per format) or v = c (signed codes); then
//   dot = sum_b (dw_b * da_b) * sum_i c_i q_i  +  sum_b e_b * s_b,   e_b = m_b - off * dw_b
// (s_b = da_b * sum q, m_b the affine formats' min). Ops supplies the integer dot of 32 bytes:
// dot_u8s8 (codes <= 127 for maddubs) and, for signed codes, prep_signed/dot_signed, which may
// shift the codes by Ops::kSignedOffset (VNNI's u8 x s8 dot takes c + 128; the sign trick 0).
// One token (natural layout): 8 blocks' scales at a time, the 8 products dw * da of each
// (row, token) pair in one multiply, broadcast per block. Several tokens (packed layout, see
// common.h): rows decoded once into a transposed panel; per group of 8 blocks 8 dot-accumulates
// leave each block's sum in its own lane, started at -off * sum(q) so only the affine min term
// stays in float.
#pragma once

#include "format/legacy.h"
#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

// 16 bytes -> 32 codes: low nibbles, then high nibbles. The bytes are broadcast to both halves
// (a plain load) and the upper half shifted by 4 (per-dword shifts; stray bits are masked).
inline __m256i nibbles32(const uint8_t* qs) {
  const __m256i q =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs)));
  return _mm256_and_si256(_mm256_srlv_epi32(q, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                          _mm256_set1_epi8(0x0F));
}

inline __m256i fifth_bits(const uint8_t* qh) {  // bit i of the u32 -> 0x10 in byte i
  uint32_t h;
  __builtin_memcpy(&h, qh, 4);
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(int(h)), _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2,
                                                  2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3));
  const __m256i bit = _mm256_set1_epi64x(int64_t(0x8040201008040201));
  return _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit),
                          _mm256_set1_epi8(0x10));
}

inline __m256i iq4nl_lut() {
  const __m128i t =
      _mm_setr_epi8(-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113);
  return _mm256_set_m128i(t, t);
}

// Decoders: Block, kSigned, kOffset, kAffine, codes(block), and the fp16 fields d (and m).
template <typename T>
struct Dec32 {
  static constexpr bool kHas = false;
};

template <>
struct Dec32<formats::Q4_0> {
  using Block = formats::Q4_0::Block;
  static constexpr bool kHas = true, kSigned = false, kAffine = false;
  static constexpr int kOffset = 8;
  static __m256i codes(const Block& b) { return nibbles32(b.qs); }
  static uint16_t m(const Block&) { return 0; }
};
template <>
struct Dec32<formats::Q4_1> {
  using Block = formats::Q4_1::Block;
  static constexpr bool kHas = true, kSigned = false, kAffine = true;
  static constexpr int kOffset = 0;
  static __m256i codes(const Block& b) { return nibbles32(b.qs); }
  static uint16_t m(const Block& b) { return b.m; }
};
template <>
struct Dec32<formats::Q5_0> {
  using Block = formats::Q5_0::Block;
  static constexpr bool kHas = true, kSigned = false, kAffine = false;
  static constexpr int kOffset = 16;
  static __m256i codes(const Block& b) {
    return _mm256_or_si256(nibbles32(b.qs), fifth_bits(b.qh));
  }
  static uint16_t m(const Block&) { return 0; }
};
template <>
struct Dec32<formats::Q5_1> {
  using Block = formats::Q5_1::Block;
  static constexpr bool kHas = true, kSigned = false, kAffine = true;
  static constexpr int kOffset = 0;
  static __m256i codes(const Block& b) {
    return _mm256_or_si256(nibbles32(b.qs), fifth_bits(b.qh));
  }
  static uint16_t m(const Block& b) { return b.m; }
};
template <>
struct Dec32<formats::Q8_0> {
  using Block = formats::Q8_0::Block;
  static constexpr bool kHas = true, kSigned = true, kAffine = false;
  static constexpr int kOffset = 0;
  static __m256i codes(const Block& b) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs));
  }
  static uint16_t m(const Block&) { return 0; }
};
template <>
struct Dec32<formats::IQ4_NL> {
  using Block = formats::IQ4_NL::Block;
  static constexpr bool kHas = true, kSigned = true, kAffine = false;
  static constexpr int kOffset = 0;
  static __m256i codes(const Block& b) { return _mm256_shuffle_epi8(iq4nl_lut(), nibbles32(b.qs)); }
  static uint16_t m(const Block&) { return 0; }
};

template <typename Ops, typename Dec>
struct Q32Tiles {
  using Block = typename Dec::Block;
  static constexpr int kOff = Dec::kOffset + (Dec::kSigned ? Ops::kSignedOffset : 0);
  static_assert((kOff & (kOff - 1)) == 0, "offsets are powers of two (shifted, not multiplied)");
  static constexpr bool kCorr = Dec::kAffine || kOff != 0;

  // dw and e = m - off * dw of blocks [0, n) (n <= 8; lanes >= n are 0).
  static void scales8(const Block* blk, int n, __m256& dw, __m256& e) {
    __m128i h, hm = _mm_setzero_si128();
    if (n == 8) {  // the common case: eight 16-bit loads straight into a vector
      h = _mm_setr_epi16(short(blk[0].d), short(blk[1].d), short(blk[2].d), short(blk[3].d),
                         short(blk[4].d), short(blk[5].d), short(blk[6].d), short(blk[7].d));
      if constexpr (Dec::kAffine) {
        hm = _mm_setr_epi16(short(Dec::m(blk[0])), short(Dec::m(blk[1])), short(Dec::m(blk[2])),
                            short(Dec::m(blk[3])), short(Dec::m(blk[4])), short(Dec::m(blk[5])),
                            short(Dec::m(blk[6])), short(Dec::m(blk[7])));
      }
    } else {
      alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0}, tm[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int i = 0; i < n; ++i) t[i] = blk[i].d, tm[i] = Dec::m(blk[i]);
      h = _mm_load_si128(reinterpret_cast<const __m128i*>(t));
      hm = _mm_load_si128(reinterpret_cast<const __m128i*>(tm));
    }
    dw = _mm256_cvtph_ps(h);
    e = Dec::kAffine ? _mm256_cvtph_ps(hm) : _mm256_setzero_ps();
    if constexpr (kOff != 0) e = _mm256_fnmadd_ps(_mm256_set1_ps(float(kOff)), dw, e);
  }

  static __m256i prep(const Block& b) {
    if constexpr (Dec::kSigned)
      return Ops::prep_signed(Dec::codes(b));
    else
      return Dec::codes(b);
  }
  static __m256i dot(__m256i w, __m256i a) {
    if constexpr (Dec::kSigned)
      return Ops::dot_signed(w, a);
    else
      return Ops::dot_u8s8(w, a);
  }
  static __m256i dot_acc(__m256i acc, __m256i w, __m256i a) {
    if constexpr (Dec::kSigned)
      return Ops::dot_signed_acc(acc, w, a);
    else
      return Ops::dot_u8s8_acc(acc, w, a);
  }

  template <int R, int T>
  struct Acc {
    __m256 v[R][T], corr[R][T];
    Acc() {
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) v[r][t] = corr[r][t] = _mm256_setzero_ps();
      }
    }
    void store(float* y, int64_t ldy, bool accumulate = false) const {
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const float v_rt = hsum_ps(_mm256_add_ps(v[r][t], corr[r][t]));
          y[t * ldy + r] = accumulate ? y[t * ldy + r] + v_rt : v_rt;
        }
      }
    }
  };

  template <int R>
  static void rows(const uint8_t* w, uint64_t rb, const Block* (&blk)[R]) {
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) blk[r] =
        reinterpret_cast<const Block*>(w + uint64_t(r) * rb);
  }

  // Blocks [b_begin, b_end) with activations in order: one int32 dot per block, scaled into the
  // (row, token) accumulator by the block's dw * da.
  template <int R, int T>
  static void natural(const Block* const (&blk)[R], const Acts& a, int64_t b_begin, int64_t b_end,
                      Acc<R, T>& acc) {
    const int64_t nb = a.K / 32;
    // Independent accumulation chains: with few (row, token) pairs one chain would wait on the
    // previous block's multiply-add (4 cycles) every block; one token and one row get four.
    constexpr int kChains = R * T >= 4 ? 1 : 4 / (R * T);
    __m256 chains[kChains > 1 ? kChains - 1 : 1][R][T];
    LOWBIT_UNROLL for (int c = 0; c < kChains - 1; ++c) {
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) chains[c][r][t] = _mm256_setzero_ps();
      }
    }
    for (int64_t b0 = b_begin; b0 < b_end; b0 += 8) {
      const int n = int(b_end - b0 < 8 ? b_end - b0 : 8);
      alignas(32) float p[R][T][8];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        __m256 dw, e;
        scales8(blk[r] + b0, n, dw, e);
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          _mm256_store_ps(p[r][t], _mm256_mul_ps(dw, load_partial8(a.d + t * nb + b0, n)));
          if constexpr (kCorr)
            acc.corr[r][t] =
                _mm256_fmadd_ps(e, load_partial8(a.s + t * nb + b0, n), acc.corr[r][t]);
        }
      }
      if (n == 8) {  // fully unrolled: block j goes to chain j % kChains
        LOWBIT_UNROLL for (int j = 0; j < 8; ++j) {
          block_step<R, T>(blk, a, b0, j, p, j % kChains == 0 ? acc.v : chains[j % kChains - 1]);
        }
      } else {
        for (int j = 0; j < n; ++j) block_step<R, T>(blk, a, b0, j, p, acc.v);
      }
    }
    LOWBIT_UNROLL for (int c = 0; c < kChains - 1; ++c) {
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc.v[r][t] =
            _mm256_add_ps(acc.v[r][t], chains[c][r][t]);
      }
    }
  }

  // Block b0 + j of every row against every token, scaled by p and added into v.
  template <int R, int T>
  LOWBIT_INLINE static void block_step(const Block* const (&blk)[R], const Acts& a, int64_t b0,
                                       int j, const float (&p)[R][T][8], __m256 (&v)[R][T]) {
    __m256i wv[R];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) wv[r] = prep(blk[r][b0 + j]);
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
      const __m256i av =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.qs + t * a.K + (b0 + j) * 32));
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        v[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot(wv[r], av)), _mm256_set1_ps(p[r][t][j]),
                                  v[r][t]);
      }
    }
  }

  template <int R, int T>
  static void tile(const uint8_t* w, uint64_t rb, const Acts& a, float* y, int64_t ldy) {
    const Block* blk[R];
    rows<R>(w, rb, blk);
    Acc<R, T> acc;
    natural<R, T>(blk, a, 0, a.K / 32, acc);
    acc.store(y, ldy);
  }

  // Packed activations: per group of 8 blocks, the rows' codes are transposed the same way
  // (lane j = block j), so 8 dot-accumulates per (row, token) leave each block's integer sum in
  // its own lane; one convert and one multiply-add by the 8 scales dw * da finish the group.
  // A panel holds R rows decoded that way for up to kPanelElems values (whole groups only).
  static constexpr bool kPackable = true, kPackedOnly = Ops::kPacked;

  template <int R>
  struct Panel {
    alignas(32) uint8_t codes[R][kPanelElems];
    alignas(32) float dw[R][kPanelElems / 32], m[R][kPanelElems / 32];  // m: affine formats
    int64_t b0 = 0, ng = 0;  // first block, number of groups of 8
  };

  template <int R>
  static void decode_panel(const Block* const (&blk)[R], int64_t b0, int64_t ng, Panel<R>& p) {
    p.b0 = b0, p.ng = ng;
    for (int64_t g = 0; g < ng; ++g) {
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
        const Block* bg = blk[r] + b0 + 8 * g;
        __m256 dw, e;
        scales8(bg, 8, dw, e);
        _mm256_store_ps(p.dw[r] + 8 * g, dw);
        if constexpr (Dec::kAffine)
          _mm256_store_ps(p.m[r] + 8 * g, _mm256_fmadd_ps(_mm256_set1_ps(float(kOff)), dw, e));
        __m256i c[8];
        LOWBIT_UNROLL for (int j = 0; j < 8; ++j) c[j] = prep(bg[j]);
        transpose8x8_epi32(c);
        LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
          _mm256_store_si256(reinterpret_cast<__m256i*>(p.codes[r] + 256 * g + 32 * m), c[m]);
        }
      }
    }
  }

  template <int R, int T>
  static void panel_tile(const Panel<R>& p, const Acts& a, float* y, int64_t ldy, bool accumulate) {
    const int64_t K = a.K, nb = K / 32;
    Acc<R, T> acc;
    for (int64_t g = 0; g < p.ng; ++g) {
      const int64_t b0 = p.b0 + 8 * g;
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const int8_t* at = a.qs + t * K + b0 * 32;
        // The offset (value = code - off) starts each block's sum at -off * sum(q).
        __m256i init = _mm256_setzero_si256();
        if constexpr (kOff != 0) {
          const __m256i bs = _mm256_cvtepi16_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(a.bsums + t * nb + b0)));
          init = _mm256_sub_epi32(init, _mm256_slli_epi32(bs, __builtin_ctz(unsigned(kOff))));
        }
        __m256i is[R];
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) is[r] = init;
        LOWBIT_UNROLL for (int m = 0; m < 8; ++m) {
          const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at + 32 * m));
          LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
            is[r] = dot_acc(
                is[r],
                _mm256_load_si256(reinterpret_cast<const __m256i*>(p.codes[r] + 256 * g + 32 * m)),
                av);
          }
        }
        const __m256 da = _mm256_loadu_ps(a.d + t * nb + b0);
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          const __m256 scale = _mm256_mul_ps(_mm256_load_ps(p.dw[r] + 8 * g), da);
          acc.v[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is[r]), scale, acc.v[r][t]);
          if constexpr (Dec::kAffine) {
            acc.corr[r][t] = _mm256_fmadd_ps(_mm256_load_ps(p.m[r] + 8 * g),
                                             _mm256_loadu_ps(a.s + t * nb + b0), acc.corr[r][t]);
          }
        }
      }
    }
    acc.store(y, ldy, accumulate);
  }

  // R rows times all tokens: panel by panel, then the blocks after the last full group (whose
  // activations are in order) through the natural tile.
  template <int R, int T>
  static void rows_packed(const uint8_t* w, uint64_t rb, const Acts& a, float* y, int64_t ldy) {
    const int64_t nb = a.K / 32, ng = nb / 8;
    const Block* blk[R];
    rows<R>(w, rb, blk);
    Panel<R> p;
    constexpr int64_t kGroups = kPanelElems / 256;
    for (int64_t g0 = 0; g0 < ng; g0 += kGroups) {
      decode_panel<R>(blk, 8 * g0, ng - g0 < kGroups ? ng - g0 : kGroups, p);
      panel_tokens<Q32Tiles, R, T>(p, a, y, ldy, g0 > 0);
    }
    if (8 * ng == nb) return;
    for (int64_t t = 0; t < a.n; ++t) {
      Acc<R, 1> acc;
      natural<R, 1>(blk, a.from(t), 8 * ng, nb, acc);
      acc.store(y + t * ldy, ldy, ng > 0);
    }
  }
};

}  // namespace
}  // namespace lowbit::kernel
