// The load-time super-block layout of the 2- and 3-bit GGUF types (Q2_K, Q3_K, TQ2_0, TQ1_0), the
// sibling of Q4_K's (gemm_x8.h, X8Q4K): eight rows interleaved per 256-value super-block, the
// codes as planes whose 32-byte vectors hold values 4q..4q+3 of the 8 rows in dword lanes, so one
// integer dot-accumulate against four broadcast activation bytes advances all 8 rows.
//
// Per super-block and group of 8 rows (row r, value e of the super-block):
//   d[8]        the rows' fp16 scales (16 bytes);
//   Q2_K        dmin[8] (16 bytes), then the 16 sub-block bytes sc | mn << 4 of the file, as
//               [pair s][row][half h] (byte 32 + 16s + 2r + h: the 16-value sub-block 2s + h),
//               so that one 16-byte load widens to the (mn_2s, mn_2s+1) int16 pairs of the 8 rows;
//   Q3_K        the 16 signed scales (sc - 32) as bytes [sub-block k][row] (at 16 + 8k + r);
//   TQ2_0       nothing more (scale 1, value c - 1).
// Then per 32-value sub-block s: two 2-bit plane vectors (vector v, byte 4r + i, bits 2j..2j+1:
// code of value 32s + 4(4v + j) + i, as Q6_K's high bits), and for Q3_K a 1-bit plane (byte
// 4r + i, bit q: the third bit of value 32s + 4q + i, as Q5_K's fifth bits). Code vector q of a
// sub-block is (v[q / 4] >> 2(q % 4)) & 3, Q3_K or-ing in bit q of the 1-bit plane at bit 2.
// Q2_K and TQ2_0 take exactly the file's bytes (672 and 528 per 8 rows); Q3_K 912 against 880
// (+3.6%: its 6-bit scales as bytes). TQ1_0 takes TQ2_0's layout: its base-3 digits (5 per byte,
// 1.6875 bits per value) become 2-bit codes at load, 528 bytes against the file's 432 (+22%):
// extracting a base-3 digit takes a multiply per byte, a 2-bit plane one GFNI transform, and
// the digits' kernel ran at 4 GB/s on one core where TQ2_0's runs at 28.
//
// The arithmetic is the ref tier's (Q8_K activations, the same integer products): per row and
// super-block, y = d * da * sum_k sc_k * (dot_k - off * S_k) - dmin * da * sum_k mn_k * S_k over
// the 16 sub-blocks k of 16 values (S_k: bsums, the activations' sum over k; off = 4 for Q3_K, 1
// for TQ2_0). |dot_k - off S_k| <= 16 * 4 * 128, times |sc| <= 32, 16 sub-blocks: exact in int32.
// AVX-512 stores groups in pairs (repack16: both groups' heads, then each vector of the two groups
// side by side, 64 bytes), and every token count runs the 16-lane tile: each 64-byte load is a
// 16-row plane vector, and one GFNI affine byte transform (gf2p8affineqb: any bits of each byte
// to any others) takes a code vector out of it where shifts and masks took two or three
// instructions. These tiles are bound by their arithmetic (a 2-bit plane holds twice Q4_K's codes
// per byte): on one core from L2, the 8-lane pair tile with shifts ran Q2_K / Q3_K / TQ2_0 at
// 27 / 26 / 29 GB/s, the 16-lane tile at 31 / 28 / 33 and with GFNI at 35 / 37 / 50.
#pragma once

#include <array>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "format/kquants.h"
#include "format/ternary.h"
#include "kernel/block_scales.h"
#include "kernel/x86/common.h"
#include "kernel/x86/gemm_x8.h"

namespace lowbit::kernel {
namespace {

template <typename Ops, typename Fmt>
struct X8Q2 {
  using Block = typename Fmt::Block;
  static constexpr bool kQ2 = std::is_same_v<Fmt, formats::Q2_K>;  // affine: sc and mn, dmin
  static constexpr bool kQ3 = std::is_same_v<Fmt, formats::Q3_K>;  // 3 bits, signed scales
  // Ternary, no sub-scales: TQ2_0, and TQ1_0 whose base-3 digits become 2-bit codes at load.
  static constexpr bool kT2 =
      std::is_same_v<Fmt, formats::TQ2_0> || std::is_same_v<Fmt, formats::TQ1_0>;
  static_assert(kQ2 || kQ3 || kT2);
  static constexpr int kOff = kQ3 ? 4 : kT2 ? 1 : 0;  // value = code - kOff
  static constexpr int64_t kBlock = 256;
  static constexpr int64_t kHead = kQ2 ? 160 : kQ3 ? 144 : 16;
  static constexpr int kVecs = kQ3 ? 3 : 2;  // 32-byte vectors per group and sub-block
  static constexpr int64_t kGroupBytes = kHead + 8 * 32 * kVecs;

  // Code of value e (0..255) of a super-block.
  static int code_of(const Block& b, int e) {
    if constexpr (std::is_same_v<Fmt, formats::TQ1_0>) {
      return formats::tq1_code(b, e);
    } else {
      const int lo = (b.qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
      if constexpr (kQ3)
        return lo | ((b.hmask[e % 32] >> (e / 32)) & 1) << 2;
      else
        return lo;
    }
  }

  static void repack(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    repack_strided(w, rb, K, out, kGroupBytes, 0, kHead, 32);
  }
  // Rows [0, 16) as a pair: both groups' heads, then every code vector of the two groups side
  // by side (the first group's in the low 32 bytes).
  // The pair's head is its own (pair_head), laid out for the 16-lane tile.
  static void repack16(const uint8_t* w, uint64_t rb, int64_t K, int64_t, uint8_t* out) {
    repack_strided(w, rb, K, out, 2 * kGroupBytes, 0, 2 * kHead, 64);
    repack_strided(w + 8 * rb, rb, K, out, 2 * kGroupBytes, kHead, 2 * kHead + 32, 64);
    for (int64_t b = 0; b < K / kBlock; ++b) pair_head(w, rb, b, out + b * 2 * kGroupBytes);
  }
  // The head of super-block b of a pair (rows 0..15, r below), 2 * kHead bytes at h:
  //   d[16] (32 bytes);
  //   Q2_K  dmin[16]; at 64 + 16s + r: sc_2s | sc_2s+1 << 4 (one load widens to both halves'
  //         scales); at 192 + 64m + 4r + i: mn_{4(2m) + i} | mn_{4(2m + 1) + i} << 4, two mins
  //         vectors of 4 sub-blocks per row (dotted with the activations' sums by vpdpbusd);
  //   Q3_K  at 32 + 16k + r: the signed scale of sub-block k.
  static void pair_head(const uint8_t* w, uint64_t rb, int64_t b, uint8_t* h) {
    std::memset(h, 0, size_t(2 * kHead));
    for (int r = 0; r < 16; ++r) {
      const Block& blk = reinterpret_cast<const Block*>(w + uint64_t(r) * rb)[b];
      std::memcpy(h + 2 * r, &blk.d, 2);
      SubScales16 ss;
      sub_scales(blk, ss);
      if constexpr (kQ2) {
        std::memcpy(h + 32 + 2 * r, &blk.dmin, 2);
        for (int s = 0; s < 8; ++s)
          h[64 + 16 * s + r] = uint8_t(ss.sc[2 * s] | ss.sc[2 * s + 1] << 4);
        for (int k = 0; k < 16; ++k) {
          const int j = k / 4, m = j / 2;  // mins vector j: nibble j % 2 of byte vector m
          h[192 + 64 * m + 4 * r + k % 4] |= uint8_t(ss.mn[k] << (4 * (j % 2)));
        }
      }
      if constexpr (kQ3) {
        for (int k = 0; k < 16; ++k) h[32 + 16 * k + r] = uint8_t(int8_t(ss.sc[k]));
      }
    }
  }
  // Super-block b of rows [0, 8) at out + b * stride: the head at + head, vector v of sub-block s
  // at + codes + (kVecs * s + v) * v_stride.
  static void repack_strided(const uint8_t* w, uint64_t rb, int64_t K, uint8_t* out, int64_t stride,
                             int64_t head, int64_t codes, int64_t v_stride) {
    for (int64_t b = 0; b < K / kBlock; ++b) {
      uint8_t* g = out + b * stride + head;
      uint8_t* cg = out + b * stride + codes;
      for (int r = 0; r < 8; ++r) {
        const Block& blk = reinterpret_cast<const Block*>(w + uint64_t(r) * rb)[b];
        std::memcpy(g + 2 * r, &blk.d, 2);
        SubScales16 ss;
        sub_scales(blk, ss);
        if constexpr (kQ2) {
          std::memcpy(g + 16 + 2 * r, &blk.dmin, 2);
          for (int k = 0; k < 16; ++k)
            g[32 + 16 * (k / 2) + 2 * r + k % 2] = uint8_t(ss.sc[k] | ss.mn[k] << 4);
        }
        if constexpr (kQ3) {
          for (int k = 0; k < 16; ++k) g[16 + 8 * k + r] = uint8_t(int8_t(ss.sc[k]));
        }
        int code[256];
        for (int e = 0; e < 256; ++e) code[e] = code_of(blk, e);
        for (int s = 0; s < 8; ++s) {
          for (int i = 0; i < 4; ++i) {
            for (int v = 0; v < 2; ++v) {
              int byte = 0;
              for (int j = 0; j < 4; ++j)
                byte |= (code[32 * s + 4 * (4 * v + j) + i] & 3) << (2 * j);
              cg[(kVecs * s + v) * v_stride + 4 * r + i] = uint8_t(byte);
            }
            if constexpr (kQ3) {
              int byte = 0;
              for (int q = 0; q < 8; ++q) byte |= (code[32 * s + 4 * q + i] >> 2) << q;
              cg[(kVecs * s + 2) * v_stride + 4 * r + i] = uint8_t(byte);
            }
          }
        }
      }
    }
  }

  // Code vector Q of a sub-block from its plane vectors x0, x1 (and Q3_K's bit plane h).
  template <int Q>
  LOWBIT_INLINE static __m256i code8(__m256i x0, __m256i x1, __m256i h) {
    constexpr int kS = 2 * (Q % 4);
    const __m256i c = _mm256_and_si256(_mm256_srli_epi16(Q < 4 ? x0 : x1, kS), _mm256_set1_epi8(3));
    if constexpr (kQ3) {  // bit Q of h to bit 2 (shifts of 16-bit lanes stay within the bytes)
      const __m256i sh = Q <= 2 ? _mm256_slli_epi16(h, Q <= 2 ? 2 - Q : 0)
                                : _mm256_srli_epi16(h, Q > 2 ? Q - 2 : 0);
      return _mm256_or_si256(c, _mm256_and_si256(sh, _mm256_set1_epi8(4)));
    } else {
      return c;
    }
  }
  // The same on 16 lanes by GFNI: output bit i of gf2p8affine(x, A) is the parity of x & byte
  // 7 - i of A, so A = 1 << b in byte 7 - i moves bit b to bit i.
  template <int Q>
  LOWBIT_INLINE static __m512i code16(__m512i x0, __m512i x1, __m512i h) {
    constexpr int kS = 2 * (Q % 4);
    constexpr int64_t kA = int64_t((uint64_t(1) << kS) << 56 | (uint64_t(2) << kS) << 48);
    const __m512i c = _mm512_gf2p8affine_epi64_epi8(Q < 4 ? x0 : x1, _mm512_set1_epi64(kA), 0);
    if constexpr (kQ3) {
      constexpr int64_t kB = int64_t((uint64_t(1) << Q) << 40);
      return _mm512_or_si512(c, _mm512_gf2p8affine_epi64_epi8(h, _mm512_set1_epi64(kB), 0));
    } else {
      return c;
    }
  }

  // Q2_K: the 16 head bytes of pair s (at p + 32 + 16s) reordered to [half][row].
  LOWBIT_INLINE static __m128i q2_by_half(const uint8_t* p, int s) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32 + 16 * s));
    return _mm_shuffle_epi8(v, _mm_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15));
  }
  // The 8 rows' scales of sub-block 2s + u (group head p) as int32 lanes.
  LOWBIT_INLINE static __m256i scales8(const uint8_t* p, int s, int u) {
    if constexpr (kQ2) {
      __m128i v = q2_by_half(p, s);
      if (u) v = _mm_srli_si128(v, 8);
      return _mm256_and_si256(_mm256_cvtepu8_epi32(v), _mm256_set1_epi32(15));
    } else {
      int64_t x;
      std::memcpy(&x, p + 16 + 8 * (2 * s + u), 8);
      return _mm256_cvtepi8_epi32(_mm_cvtsi64_si128(x));
    }
  }
  // Q2_K: sum_k mn_k S_k of the 8 rows (group head p) for one token's bsums bs of the super-block.
  LOWBIT_INLINE static __m256i mins8(const uint8_t* p, const int16_t* bs) {
    __m256i m = _mm256_setzero_si256();
    LOWBIT_UNROLL for (int s = 0; s < 8; ++s) {
      const __m256i mn = _mm256_srli_epi16(
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32 + 16 * s))),
          4);
      int32_t sp;  // (S_2s, S_2s+1) as an int16 pair
      std::memcpy(&sp, bs + 2 * s, 4);
      m = _mm256_add_epi32(m, _mm256_madd_epi16(mn, _mm256_set1_epi32(sp)));
    }
    return m;
  }

  // One group (8 rows) times T tokens (AVX2; on AVX-512 an odd last group).
  template <int T>
  static void tile8(const uint8_t* g, const Acts& a, float* y, int64_t ldy) {
    const int64_t nsb = a.K / kBlock;
    __m256 acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* p = g + sb * kGroupBytes;
      __m256i isum[T];
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[t] = _mm256_setzero_si256();
      for (int s = 0; s < 8; ++s) {
        const uint8_t* v = p + kHead + 32 * kVecs * s;
        auto ld = [&](int i) {
          return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(v + 32 * i));
        };
        const __m256i x0 = ld(0), x1 = ld(1), h = kQ3 ? ld(2) : x0;
        __m256i code[8];
        [&]<size_t... Q>(std::index_sequence<Q...>) {
          ((code[Q] = code8<int(Q)>(x0, x1, h)), ...);
        }
        (std::make_index_sequence<8>());
        __m256i sc[2];
        if constexpr (!kT2) sc[0] = scales8(p, s, 0), sc[1] = scales8(p, s, 1);
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const int8_t* at = a.qs + t * a.K + sb * kBlock + 32 * s;
          const int16_t* bs = a.bsums + (t * nsb + sb) * 16 + 2 * s;
          __m256i d[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
          LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
            int32_t aq;
            std::memcpy(&aq, at + 4 * q, 4);
            d[q / 4] = Ops::dot_u8s8_acc(d[q / 4], code[q], _mm256_set1_epi32(aq));
          }
          if constexpr (kT2) {
            isum[t] = _mm256_add_epi32(isum[t], _mm256_sub_epi32(_mm256_add_epi32(d[0], d[1]),
                                                                 _mm256_set1_epi32(bs[0] + bs[1])));
          } else {
            LOWBIT_UNROLL for (int u = 0; u < 2; ++u) {
              if constexpr (kOff != 0)
                d[u] = _mm256_sub_epi32(d[u], _mm256_set1_epi32(kOff * bs[u]));
              isum[t] = _mm256_add_epi32(isum[t], _mm256_mullo_epi32(d[u], sc[u]));
            }
          }
        }
      }
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const __m256 da = _mm256_set1_ps(a.d[t * nsb + sb]);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t]), _mm256_mul_ps(dw, da), acc[t]);
        if constexpr (kQ2) {  // less dmin * da * sum_k mn_k S_k
          const __m256 dm =
              _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)));
          const __m256i m = mins8(p, a.bsums + (t * nsb + sb) * 16);
          acc[t] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(m), _mm256_mul_ps(dm, da), acc[t]);
        }
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm256_storeu_ps(y + t * ldy, acc[t]);
  }

  // A pair of groups in repack16's layout (16 rows) times T tokens on 16-lane vectors (AVX-512):
  // each 64-byte load is a 16-row plane vector, each broadcast activation word feeds one 16-row
  // dot-accumulate. Q2_K's mins term per token is 8 vpdpbusd: the sums S_k split into bytes
  // (split: S_k = 16 hi_k + lo_k, lo in 0..15, hi in -128..127, from gemm) against the mins.
  template <int T>
  static void tile16(const uint8_t* g, const Acts& a, const int8_t* split, float* y, int64_t ldy) {
    const int64_t nsb = a.K / kBlock;
    __m512 acc[T];
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
    for (int64_t sb = 0; sb < nsb; ++sb) {
      const uint8_t* p = g + sb * 2 * kGroupBytes;  // the pair's head (pair_head)
      __m512i isum[T];
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) isum[t] = _mm512_setzero_si512();
      for (int s = 0; s < 8; ++s) {
        const uint8_t* v = p + 2 * kHead + 64 * kVecs * s;
        const __m512i x0 = _mm512_loadu_si512(v), x1 = _mm512_loadu_si512(v + 64),
                      h = kQ3 ? _mm512_loadu_si512(v + 128) : x0;
        __m512i code[8];
        [&]<size_t... Q>(std::index_sequence<Q...>) {
          ((code[Q] = code16<int(Q)>(x0, x1, h)), ...);
        }
        (std::make_index_sequence<8>());
        __m512i sc[2];
        if constexpr (kQ2) {
          const __m512i x = _mm512_cvtepu8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 64 + 16 * s)));
          sc[0] = _mm512_and_si512(x, _mm512_set1_epi32(15)), sc[1] = _mm512_srli_epi32(x, 4);
        }
        if constexpr (kQ3) {
          LOWBIT_UNROLL for (int u = 0; u < 2; ++u) sc[u] = _mm512_cvtepi8_epi32(
              _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 32 + 16 * (2 * s + u))));
        }
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const int8_t* at = a.qs + t * a.K + sb * kBlock + 32 * s;
          const int16_t* bs = a.bsums + (t * nsb + sb) * 16 + 2 * s;
          __m512i d[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
          LOWBIT_UNROLL for (int q = 0; q < 8; ++q) {
            int32_t aq;
            std::memcpy(&aq, at + 4 * q, 4);
            d[q / 4] = _mm512_dpbusd_epi32(d[q / 4], code[q], _mm512_set1_epi32(aq));
          }
          if constexpr (kT2) {
            isum[t] = _mm512_add_epi32(isum[t], _mm512_sub_epi32(_mm512_add_epi32(d[0], d[1]),
                                                                 _mm512_set1_epi32(bs[0] + bs[1])));
          } else {
            LOWBIT_UNROLL for (int u = 0; u < 2; ++u) {
              if constexpr (kOff != 0)
                d[u] = _mm512_sub_epi32(d[u], _mm512_set1_epi32(kOff * bs[u]));
              isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(d[u], sc[u]));
            }
          }
        }
      }
      const __m512 dd = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const __m512 da = _mm512_set1_ps(a.d[t * nsb + sb]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dd, da), acc[t]);
      }
      if constexpr (kQ2) {  // less dmin * da * sum_k mn_k S_k
        const __m512 dm =
            _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32)));
        const __m512i lo4 = _mm512_set1_epi8(15);
        const __m512i m01 = _mm512_loadu_si512(p + 192), m23 = _mm512_loadu_si512(p + 256);
        const __m512i mv[4] = {
            _mm512_and_si512(m01, lo4), _mm512_and_si512(_mm512_srli_epi16(m01, 4), lo4),
            _mm512_and_si512(m23, lo4), _mm512_and_si512(_mm512_srli_epi16(m23, 4), lo4)};
        LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
          const int8_t* sp = split + (t * nsb + sb) * 32;
          __m512i mlo = _mm512_setzero_si512(), mhi = _mm512_setzero_si512();
          LOWBIT_UNROLL for (int j = 0; j < 4; ++j) {
            int32_t lo, hi;
            std::memcpy(&lo, sp + 4 * j, 4);
            std::memcpy(&hi, sp + 16 + 4 * j, 4);
            mlo = _mm512_dpbusd_epi32(mlo, mv[j], _mm512_set1_epi32(lo));
            mhi = _mm512_dpbusd_epi32(mhi, mv[j], _mm512_set1_epi32(hi));
          }
          const __m512i m = _mm512_add_epi32(mlo, _mm512_slli_epi32(mhi, 4));
          const __m512 da = _mm512_set1_ps(a.d[t * nsb + sb]);
          acc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(dm, da), acc[t]);
        }
      }
    }
    LOWBIT_UNROLL for (int t = 0; t < T; ++t) _mm512_storeu_ps(y + t * ldy, acc[t]);
  }

  template <int kT>
  static void gemm(const uint8_t* packed, int64_t groups, const Acts& a, float* y, int64_t ldy) {
    const int64_t nsb = a.K / kBlock, group_bytes = nsb * kGroupBytes;
    int64_t gi = 0;
    if constexpr (Ops::kX8Wide) {  // pairs stored by repack16, every token count
      // Q2_K: per (token, super-block) the sums S_k as bytes lo_k (16), then hi_k (16).
      thread_local std::vector<int8_t> split;
      if constexpr (kQ2) {
        split.resize(size_t(a.n * nsb * 32));
        for (int64_t i = 0; i < a.n * nsb; ++i) {
          for (int k = 0; k < 16; ++k) {
            const int S = a.bsums[i * 16 + k];
            split[size_t(i * 32 + k)] = int8_t(S & 15);
            split[size_t(i * 32 + 16 + k)] = int8_t(S >> 4);
          }
        }
      }
      for (; gi + 2 <= groups; gi += 2) {
        const uint8_t* g = packed + gi * group_bytes;
        float* yg = y + kX8Rows * gi;
        wide_token_tiles(a.n, [&]<int T>(int64_t t) {
          tile16<T>(g, a.from(t), split.data() + t * nsb * 32, yg + t * ldy, ldy);
        });
      }
    }
    for (; gi < groups; ++gi) {
      const uint8_t* g = packed + gi * group_bytes;
      float* yg = y + kX8Rows * gi;
      int64_t t = 0;
      for (; t + kT <= a.n; t += kT) tile8<kT>(g, a.from(t), yg + t * ldy, ldy);
      for (; t < a.n; ++t) tile8<1>(g, a.from(t), yg + t * ldy, ldy);
    }
  }
};

}  // namespace
}  // namespace lowbit::kernel
