// Codecs of the 256-value super-block formats. Each format supplies three small pieces:
// where value e's code lives (pack/unpack), how a sub-block's scale (and min) is stored, and how
// those are fitted; the generic templates below turn them into fit/round_value/encode/decode.
#include "format/kquants.h"

#include <algorithm>
#include <cmath>

#include "format/legacy.h"

namespace lowbit::formats {

namespace {

using fit::IntLevels;

// ---- sub-block fitting shared by the K-quants -----------------------------------------------

struct SubScales {
  float d = 0, dmin = 0;  // fp16-rounded super-scales
  int sc[16] = {}, mn[16] = {};
};

// A sub-block decodes as x = dd*q - mm with q in [0, qmax] (dd >= 0: a non-negative super-scale
// times a 6-bit code). The decoder's q is the affine grid's with m = -mm (clamping to 0..qmax
// then rounding, or the reverse: the same integers), and q dd - mm equals dd q + m exactly, so a
// sub-block's error is the grid kernels' affine error at (dd, -mm).

// Sub-blocks fitted independently (affine, min <= 0), then their scales and mins quantized to
// [0, scmax] against fp16 super-scales; each sub-block then picks the best of the neighbouring
// integer (scale, min) pairs under its own weighted error.
SubScales fit_affine_k(const float* x, const float* w, int nsub, int len, int qmax, int scmax) {
  float d[16], m[16];
  float maxd = 0, maxm = 0;
  for (int j = 0; j < nsub; ++j) {
    const auto a = fit::fit_affine(x + j * len, w ? w + j * len : nullptr, len, qmax, true,
                                   fit::NoRound{}, fit::NoRound{});
    d[j] = a.d, m[j] = -a.m;
    maxd = std::max(maxd, d[j]), maxm = std::max(maxm, m[j]);
  }
  SubScales s;
  s.d = round_fp16(maxd / float(scmax));
  s.dmin = round_fp16(maxm / float(scmax));
  for (int j = 0; j < nsub; ++j) {
    const float* xj = x + j * len;
    const float* wj = w ? w + j * len : nullptr;
    const int sc0 = s.d > 0 ? nearest_int(d[j] / s.d, 0, scmax) : 0;
    const int mn0 = s.dmin > 0 ? nearest_int(m[j] / s.dmin, 0, scmax) : 0;
    // The (at most 3 x 3) neighbouring pairs in one batch, then chosen in the loops' order.
    float cd[9], cm[9], cid[9], ce[9];
    int nc = 0;
    for (int sc = std::max(0, sc0 - 1); sc <= std::min(scmax, sc0 + 1); ++sc) {
      for (int mn = std::max(0, mn0 - 1); mn <= std::min(scmax, mn0 + 1); ++mn) {
        const float dd = s.d * float(sc);
        cd[nc] = dd, cm[nc] = -(s.dmin * float(mn)), cid[nc++] = inv_or_zero(dd);
      }
    }
    fit::grid_kernels().affine_error_batch(xj, wj, len, float(qmax), cd, cm, cid, nc, ce);
    double best = -1;
    nc = 0;
    for (int sc = std::max(0, sc0 - 1); sc <= std::min(scmax, sc0 + 1); ++sc) {
      for (int mn = std::max(0, mn0 - 1); mn <= std::min(scmax, mn0 + 1); ++mn) {
        const double e = ce[nc++];
        if (best < 0 || e < best) best = e, s.sc[j] = sc, s.mn[j] = mn;
      }
    }
  }
  return s;
}

// Signed sub-scales in [sclo, schi] times one fp16 super-scale; the largest sub-scale maps to
// sclo (the longer end of a two's-complement range).
template <typename Levels>
SubScales fit_sym_k(const float* x, const float* w, int nsub, int len, const Levels& lv, int sclo,
                    int schi) {
  float d[16];
  float dext = 0;
  for (int j = 0; j < nsub; ++j) {
    d[j] = fit::fit_symmetric(x + j * len, w ? w + j * len : nullptr, len, lv, fit::NoRound{});
    if (std::fabs(d[j]) > std::fabs(dext)) dext = d[j];
  }
  // The super-scale rounded to fp16, and its fp16 neighbours: for blocks of small values it lies
  // among fp16's subnormals, where one step is several percent of it and the rounded value can
  // sit badly against every sub-scale.
  const float base = round_fp16(dext / float(sclo));
  const uint16_t hb = f32_to_fp16(base);
  float sds[3];
  bool valid[3];
  int t = 0;
  for (const int step : {0, -1, 1}) {
    const float sd = step == 0 ? base : fp16_to_f32(uint16_t(hb + step));
    sds[t] = sd;
    valid[t++] =
        !(step != 0 && (base == 0 || sd == 0 || !std::isfinite(sd) || (sd < 0) != (base < 0)));
  }
  // Each sub-block's candidates under every super-scale (at most 3 x 3), evaluated in one batch.
  int first[3][16], count[3][16];
  double err[3][16][3];
  for (int j = 0; j < nsub; ++j) {
    float cand[9];
    int nc = 0;
    for (int u = 0; u < 3; ++u) {
      if (!valid[u]) continue;
      const int s0 = sds[u] != 0 ? nearest_int(d[j] / sds[u], sclo, schi) : 0;
      first[u][j] = std::max(sclo, s0 - 1);
      count[u][j] = std::min(schi, s0 + 1) - first[u][j] + 1;
      for (int k = 0; k < count[u][j]; ++k) cand[nc++] = sds[u] * float(first[u][j] + k);
    }
    double e[9];
    fit::sym_errors(x + j * len, w ? w + j * len : nullptr, len, lv, cand, nc, e);
    nc = 0;
    for (int u = 0; u < 3; ++u) {
      if (!valid[u]) continue;
      for (int k = 0; k < count[u][j]; ++k) err[u][j][k] = e[nc++];
    }
  }
  SubScales best_s;
  double best_total = -1;
  for (int u = 0; u < 3; ++u) {
    if (!valid[u]) continue;
    SubScales s;
    s.d = sds[u];
    double total = 0;
    for (int j = 0; j < nsub; ++j) {
      double best = -1;
      for (int k = 0; k < count[u][j]; ++k) {
        const double e = err[u][j][k];
        if (best < 0 || e < best) best = e, s.sc[j] = first[u][j] + k;
      }
      total += best;
    }
    if (best_total < 0 || total < best_total) best_total = total, best_s = s;
  }
  return best_s;
}

inline int get_bits(const uint8_t* p, int byte, int shift, int mask) {
  return (p[byte] >> shift) & mask;
}
inline void put_bits(uint8_t* p, int byte, int shift, int v) {
  p[byte] |= uint8_t(v << shift);
}

// Q4_K / Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes. Sub-block j < 4: scale in the
// low 6 bits of bytes[j], min in the low 6 bits of bytes[j+4]. j >= 4: low 4 bits of scale and
// min in the low/high nibble of bytes[j+4], their top 2 bits in the top 2 bits of bytes[j-4]
// (scale) and bytes[j] (min).
void unpack_scale_min_k4(const uint8_t* q, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63, mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}
void pack_scale_min_k4(uint8_t* q, const int* sc, const int* mn) {
  for (int j = 0; j < 4; ++j) {
    q[j] = uint8_t(sc[j] | ((sc[j + 4] >> 4) << 6));
    q[j + 4] = uint8_t(mn[j] | ((mn[j + 4] >> 4) << 6));
    q[j + 8] = uint8_t((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

// ---- generic codec over a format's description ----------------------------------------------
// D provides: Block, kSub (values per sub-block), kQmax-style quantizer via
//   static void sub_scale(const Block&, int j, float& dd, float& mm)  value = dd * level - mm
//   static int code_of(float x, float dd, float mm)                     nearest code
//   static float value_of(int code, float dd, float mm)                 decoder's arithmetic
//   static void pack(Block&, const int* codes) / unpack(const Block&, int* codes)
//   static void fit_params(const float* x, const float* w, Block&)     parameter fields only

template <typename D>
struct KCodec {
  using Block = typename D::Block;
  static float round_value(float x, const void* blk, int64_t i) {
    const auto& b = *static_cast<const Block*>(blk);
    float dd, mm;
    D::sub_scale(b, int(i / D::kSub), dd, mm);
    return D::value_of(D::code_of(x, dd, mm), dd, mm);
  }
  static void encode(const float* x, void* blk) {
    auto& b = *static_cast<Block*>(blk);
    int codes[kQK];
    for (int j = 0; j < kQK / D::kSub; ++j) {
      float dd, mm;
      D::sub_scale(b, j, dd, mm);
      for (int i = j * D::kSub; i < (j + 1) * D::kSub; ++i) codes[i] = D::code_of(x[i], dd, mm);
    }
    D::pack(b, codes);
  }
  static void decode(const void* blk, float* y) {
    const auto& b = *static_cast<const Block*>(blk);
    int codes[kQK];
    D::unpack(b, codes);
    for (int j = 0; j < kQK / D::kSub; ++j) {
      float dd, mm;
      D::sub_scale(b, j, dd, mm);
      for (int i = j * D::kSub; i < (j + 1) * D::kSub; ++i) y[i] = D::value_of(codes[i], dd, mm);
    }
  }
  static void fit(const float* x, const float* w, void* blk) {
    auto& b = *static_cast<Block*>(blk);
    std::memset(&b, 0, sizeof(Block));
    D::fit_params(x, w, b);
  }
};

// Affine K-quant value: dd * q - mm, q in [0, kQmax].
template <int kQmax>
struct AffineValue {
  static int code_of(float x, float dd, float mm) {
    return dd > 0 ? nearest_int((x + mm) * (1.0f / dd), 0, kQmax) : 0;
  }
  static float value_of(int q, float dd, float mm) { return dd * float(q) - mm; }
};

// Symmetric uniform value: dd * (q - kOff), q in [0, 2*kOff-1].
template <int kOff>
struct SymValue {
  static int code_of(float x, float dd, float) {
    return nearest_int(x * inv_or_zero(dd), -kOff, kOff - 1) + kOff;
  }
  static float value_of(int q, float dd, float) { return dd * float(q - kOff); }
};

struct DQ2K : AffineValue<3> {
  using Block = Q2_K::Block;
  static constexpr int kSub = 16;
  static void sub_scale(const Block& b, int j, float& dd, float& mm) {
    dd = load_fp16(b.d) * float(b.scales[j] & 0xF);
    mm = load_fp16(b.dmin) * float(b.scales[j] >> 4);
  }
  // value e: half n = e/128, shift pair j = (e%128)/32, lane l = e%32 -> qs[n*32 + l] >> 2j.
  static void pack(Block& b, const int* q) {  // byte-major (the loop over l vectorizes)
    for (int n = 0; n < 2; ++n) {
      for (int l = 0; l < 32; ++l) {
        const int* v = q + n * 128 + l;
        b.qs[n * 32 + l] = uint8_t(v[0] | v[32] << 2 | v[64] << 4 | v[96] << 6);
      }
    }
  }
  static void unpack(const Block& b, int* q) {
    for (int e = 0; e < kQK; ++e)
      q[e] = get_bits(b.qs, (e >> 7) * 32 + (e & 31), 2 * ((e >> 5) & 3), 3);
  }
  static void fit_params(const float* x, const float* w, Block& b) {
    const SubScales s = fit_affine_k(x, w, 16, 16, 3, 15);
    store_fp16(b.d, s.d);
    store_fp16(b.dmin, s.dmin);
    for (int j = 0; j < 16; ++j) b.scales[j] = uint8_t(s.sc[j] | (s.mn[j] << 4));
  }
};

struct DQ3K : SymValue<4> {
  using Block = Q3_K::Block;
  static constexpr int kSub = 16;
  // 6-bit scale u_j = s_j + 32: low 4 bits in scales[j] (j < 8, low nibble) or scales[j-8]
  // (high nibble); top 2 bits in scales[8 + j%4] at bit 2*(j/4).
  static int scale_u(const Block& b, int j) {
    const int lo = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
    return lo | (((b.scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3) << 4);
  }
  static void sub_scale(const Block& b, int j, float& dd, float& mm) {
    dd = load_fp16(b.d) * float(scale_u(b, j) - 32);
    mm = 0;
  }
  // code c = q + 4 in 0..7: c & 3 at qs[n*32 + l] >> 2j (as Q2_K), c >> 2 at hmask[l] bit 4n + j.
  static void pack(Block& b, const int* q) {  // byte-major (the loops over l vectorize)
    int h[32] = {};
    for (int n = 0; n < 2; ++n) {
      for (int l = 0; l < 32; ++l) {
        const int* v = q + n * 128 + l;
        b.qs[n * 32 + l] =
            uint8_t((v[0] & 3) | (v[32] & 3) << 2 | (v[64] & 3) << 4 | (v[96] & 3) << 6);
        h[l] |= (v[0] >> 2) << (4 * n) | (v[32] >> 2) << (4 * n + 1) | (v[64] >> 2) << (4 * n + 2) |
                (v[96] >> 2) << (4 * n + 3);
      }
    }
    for (int l = 0; l < 32; ++l) b.hmask[l] = uint8_t(h[l]);
  }
  static void unpack(const Block& b, int* q) {
    for (int e = 0; e < kQK; ++e) {
      const int n = e >> 7, j = (e >> 5) & 3, l = e & 31;
      q[e] = get_bits(b.qs, n * 32 + l, 2 * j, 3) | (get_bits(b.hmask, l, 4 * n + j, 1) << 2);
    }
  }
  static void fit_params(const float* x, const float* w, Block& b) {
    const SubScales s = fit_sym_k(x, w, 16, 16, IntLevels{-4, 3}, -32, 31);
    store_fp16(b.d, s.d);
    for (int j = 0; j < 16; ++j) {
      const int u = s.sc[j] + 32;
      b.scales[j < 8 ? j : j - 8] |= uint8_t((u & 0xF) << (j < 8 ? 0 : 4));
      b.scales[8 + (j & 3)] |= uint8_t((u >> 4) << (2 * (j >> 2)));
    }
  }
};

// Q4_K and Q5_K: value e in sub-block e/32; 64-value chunk c = e/64 uses qs[c*32 + l] (l = e%32),
// low nibble for the first 32 values, high nibble for the next; Q5_K's fifth bit is qh[l] bit
// 2c (first 32) or 2c + 1 (next 32).
template <typename BlockT, int kBits>
struct DQ45K : AffineValue<(1 << kBits) - 1> {
  using Block = BlockT;
  static constexpr int kSub = 32;
  static void sub_scale(const Block& b, int j, float& dd, float& mm) {
    int sc, mn;
    unpack_scale_min_k4(b.scales, j, sc, mn);
    dd = load_fp16(b.d) * float(sc);
    mm = load_fp16(b.dmin) * float(mn);
  }
  static void pack(Block& b, const int* q) {
    std::memset(b.qs, 0, sizeof b.qs);
    if constexpr (kBits == 5) std::memset(b.qh, 0, sizeof b.qh);
    for (int e = 0; e < kQK; ++e) {
      const int c = e >> 6, hi = (e >> 5) & 1, l = e & 31;
      put_bits(b.qs, c * 32 + l, 4 * hi, q[e] & 0xF);
      if constexpr (kBits == 5) put_bits(b.qh, l, 2 * c + hi, q[e] >> 4);
    }
  }
  static void unpack(const Block& b, int* q) {
    for (int e = 0; e < kQK; ++e) {
      const int c = e >> 6, hi = (e >> 5) & 1, l = e & 31;
      q[e] = get_bits(b.qs, c * 32 + l, 4 * hi, 0xF);
      if constexpr (kBits == 5) q[e] |= get_bits(b.qh, l, 2 * c + hi, 1) << 4;
    }
  }
  static void fit_params(const float* x, const float* w, Block& b) {
    const SubScales s = fit_affine_k(x, w, 8, 32, (1 << kBits) - 1, 63);
    store_fp16(b.d, s.d);
    store_fp16(b.dmin, s.dmin);
    pack_scale_min_k4(b.scales, s.sc, s.mn);
  }
};
using DQ4K = DQ45K<Q4_K::Block, 4>;
using DQ5K = DQ45K<Q5_K::Block, 5>;

struct DQ6K : SymValue<32> {
  using Block = Q6_K::Block;
  static constexpr int kSub = 16;
  static void sub_scale(const Block& b, int j, float& dd, float& mm) {
    dd = load_fp16(b.d) * float(b.scales[j]);
    mm = 0;
  }
  // code c = q + 32 in 0..63. Value e: half n = e/128, quarter k = (e%128)/32, lane l = e%32:
  // low 4 bits in ql[n*64 + (k&1)*32 + l] (nibble k>>1), top 2 bits in qh[n*32 + l] at bit 2k.
  static void pack(Block& b, const int* q) {  // byte-major (the loop over l vectorizes)
    for (int n = 0; n < 2; ++n) {
      for (int l = 0; l < 32; ++l) {
        const int* v = q + n * 128 + l;
        b.ql[n * 64 + l] = uint8_t((v[0] & 0xF) | (v[64] & 0xF) << 4);
        b.ql[n * 64 + 32 + l] = uint8_t((v[32] & 0xF) | (v[96] & 0xF) << 4);
        b.qh[n * 32 + l] =
            uint8_t(v[0] >> 4 | (v[32] >> 4) << 2 | (v[64] >> 4) << 4 | (v[96] >> 4) << 6);
      }
    }
  }
  static void unpack(const Block& b, int* q) {
    for (int e = 0; e < kQK; ++e) {
      const int n = e >> 7, k = (e >> 5) & 3, l = e & 31;
      q[e] = get_bits(b.ql, n * 64 + (k & 1) * 32 + l, 4 * (k >> 1), 0xF) |
             (get_bits(b.qh, n * 32 + l, 2 * k, 3) << 4);
    }
  }
  static void fit_params(const float* x, const float* w, Block& b) {
    const SubScales s = fit_sym_k(x, w, 16, 16, IntLevels{-32, 31}, -128, 127);
    store_fp16(b.d, s.d);
    for (int j = 0; j < 16; ++j) b.scales[j] = int8_t(s.sc[j]);
  }
};

struct DIQ4XS {
  using Block = IQ4_XS::Block;
  static constexpr int kSub = 32;
  static fit::CodebookLevels levels() { return {kIq4nlValues}; }
  // 6-bit scale ls_j = s_j + 32: low 4 bits in scales_l[j/2] (nibble j%2), top 2 bits in
  // scales_h at bit 2j.
  static void sub_scale(const Block& b, int j, float& dd, float& mm) {
    const int ls =
        ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
    dd = load_fp16(b.d) * float(ls - 32);
    mm = 0;
  }
  static int code_of(float x, float dd, float) { return levels().nearest(x * inv_or_zero(dd)); }
  static float value_of(int q, float dd, float) { return dd * kIq4nlValues[q]; }
  // Value e: sub-block j = e/32, k = e%32 -> qs[j*16 + k%16], low nibble for k < 16.
  static void pack(Block& b, const int* q) {
    std::memset(b.qs, 0, sizeof b.qs);
    for (int e = 0; e < kQK; ++e)
      put_bits(b.qs, (e >> 5) * 16 + (e & 15), 4 * ((e >> 4) & 1), q[e]);
  }
  static void unpack(const Block& b, int* q) {
    for (int e = 0; e < kQK; ++e)
      q[e] = get_bits(b.qs, (e >> 5) * 16 + (e & 15), 4 * ((e >> 4) & 1), 0xF);
  }
  static void fit_params(const float* x, const float* w, Block& b) {
    const SubScales s = fit_sym_k(x, w, 8, 32, levels(), -32, 31);
    store_fp16(b.d, s.d);
    uint16_t h = 0;
    for (int j = 0; j < 8; ++j) {
      const int ls = s.sc[j] + 32;
      b.scales_l[j / 2] |= uint8_t((ls & 0xF) << (4 * (j % 2)));
      h |= uint16_t((ls >> 4) << (2 * j));
    }
    b.scales_h = h;
  }
};

struct DNF4DQ {
  using Block = NF4_DQ::Block;
  static constexpr int kSub = 64;
  static fit::CodebookLevels levels() { return {kNf4Values}; }
  static void sub_scale(const Block& b, int j, float& dd, float& mm) {
    dd = load_fp16(b.d) * float(b.sc[j]);
    mm = 0;
  }
  static int code_of(float x, float dd, float) { return levels().nearest(x * inv_or_zero(dd)); }
  static float value_of(int q, float dd, float) { return kNf4Values[q] * dd; }
  static void pack(Block& b, const int* q) {
    std::memset(b.qs, 0, sizeof b.qs);
    for (int e = 0; e < kQK; ++e)
      put_bits(b.qs, (e >> 6) * 32 + (e & 31), 4 * ((e >> 5) & 1), q[e]);
  }
  static void unpack(const Block& b, int* q) {
    for (int e = 0; e < kQK; ++e)
      q[e] = get_bits(b.qs, (e >> 6) * 32 + (e & 31), 4 * ((e >> 5) & 1), 0xF);
  }
  static void fit_params(const float* x, const float* w, Block& b) {
    const SubScales s = fit_sym_k(x, w, 4, 64, levels(), -127, 127);
    store_fp16(b.d, s.d);
    for (int j = 0; j < 4; ++j) b.sc[j] = int8_t(s.sc[j]);
  }
};

}  // namespace

#define LOWBIT_DEFINE_KCODEC(F, D)                                     \
  void F::fit(const float* x, const float* w, int64_t, void* blk) {    \
    KCodec<D>::fit(x, w, blk);                                         \
  }                                                                    \
  float F::round_value(float x, const void* blk, int64_t, int64_t i) { \
    return KCodec<D>::round_value(x, blk, i);                          \
  }                                                                    \
  void F::encode(const float* x, int64_t, void* blk) {                 \
    KCodec<D>::encode(x, blk);                                         \
  }                                                                    \
  void F::decode(const void* blk, int64_t, float* y) {                 \
    KCodec<D>::decode(blk, y);                                         \
  }

LOWBIT_DEFINE_KCODEC(Q2_K, DQ2K)
LOWBIT_DEFINE_KCODEC(Q3_K, DQ3K)
LOWBIT_DEFINE_KCODEC(Q4_K, DQ4K)
LOWBIT_DEFINE_KCODEC(Q5_K, DQ5K)
LOWBIT_DEFINE_KCODEC(Q6_K, DQ6K)
LOWBIT_DEFINE_KCODEC(IQ4_XS, DIQ4XS)
LOWBIT_DEFINE_KCODEC(NF4_DQ, DNF4DQ)

// ---- Q8_K: activations, the largest magnitude mapped to -127 (ggml's reference) ---------

void Q8_K::fit(const float* x, const float*, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  float xm = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > std::fabs(xm)) xm = x[i];
  }
  b->d = xm / -127.0f;
}

float Q8_K::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = static_cast<const Block*>(blk)->d;
  return float(nearest_int(x * inv_or_zero(d), -127, 127)) * d;
}

void Q8_K::encode(const float* x, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(b->d);
  for (int64_t i = 0; i < n; ++i) b->qs[i] = int8_t(nearest_int(x[i] * id, -127, 127));
  for (int j = 0; j < 16; ++j) {
    int s = 0;
    for (int i = 0; i < 16; ++i) s += b->qs[j * 16 + i];
    b->bsums[j] = int16_t(s);
  }
}

void Q8_K::decode(const void* blk, int64_t n, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  for (int64_t i = 0; i < n; ++i) y[i] = b->d * float(b->qs[i]);
}

}  // namespace lowbit::formats
