// Known-answer tests against the GGUF spec: each ggml block format decodes hand-built blocks
// bit-identically to ggml's dequantize_row_* (re-derived here from ggml's block structs), ids and
// block sizes match ggml, forced quantization answers hold, and exact blocks round-trip exactly.
#include <gtest/gtest.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/half.h"

namespace {

using lowbit::f32_to_fp16;
using lowbit::Format;
using lowbit::fp16_to_f32;
using Bytes = std::vector<uint8_t>;
using Floats = std::vector<float>;

// ggml's kvalues_iq4nl.
constexpr std::array<int, 16> kIq4nl = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

// Deterministic pseudo-random bytes (xorshift32): every bit of every code field gets both values.
Bytes pattern(size_t n, uint32_t seed) {
  Bytes b(n);
  for (auto& v : b) {
    seed ^= seed << 13;
    seed ^= seed >> 17;
    seed ^= seed << 5;
    v = uint8_t(seed >> 24);
  }
  return b;
}

void put16(Bytes& b, size_t at, uint16_t v) {
  b[at] = uint8_t(v & 0xff);
  b[at + 1] = uint8_t(v >> 8);
}
uint16_t get16(const Bytes& b, size_t at) {
  return uint16_t(b[at] | (b[at + 1] << 8));
}
float half_at(const Bytes& b, size_t at) {
  return fp16_to_f32(get16(b, at));
}

// Checks that `name` decodes `blk` (alone, and as both blocks of a two-block row) to `want`,
// bit for bit.
void check_decode(std::string_view name, const Bytes& blk, const Floats& want) {
  SCOPED_TRACE(std::string(name));
  const Format f = Format::parse(name);
  const auto n = int64_t(want.size());
  ASSERT_EQ(f.info().block_elems, n);
  ASSERT_EQ(f.row_bytes(n), blk.size());
  Bytes row = blk;
  row.insert(row.end(), blk.begin(), blk.end());
  ASSERT_EQ(f.row_bytes(2 * n), row.size());
  Floats got(size_t(2 * n), -12345.0f);
  f.dequantize_row(row.data(), 2 * n, got.data());
  int bad = 0;
  for (int64_t i = 0; i < 2 * n; ++i) {
    const float w = want[size_t(i % n)];
    if (std::bit_cast<uint32_t>(got[size_t(i)]) != std::bit_cast<uint32_t>(w) && ++bad <= 8) {
      ADD_FAILURE() << name << " value " << i << ": got " << std::setprecision(9) << got[size_t(i)]
                    << ", ggml gives " << w;
    }
  }
  EXPECT_EQ(bad, 0) << name << ": values differing from ggml's dequantize_row";
}

// ---- 32-value blocks ------------------------------------------------------------------------

// block_q4_0 {half d; u8 qs[16]}: y[j] = (lo - 8)*d, y[j+16] = (hi - 8)*d. A negative d is what
// ggml's own quantizer writes whenever the largest-magnitude value is positive.
Bytes block_q4_0() {
  Bytes b(18);
  put16(b, 0, 0xB1E3);
  for (int j = 0; j < 16; ++j) b[2 + j] = uint8_t(((j * 7) & 15) | (((j * 5 + 3) & 15) << 4));
  return b;
}
Floats want_q4_0(const Bytes& b) {
  const float d = half_at(b, 0);
  Floats y(32);
  for (int j = 0; j < 16; ++j) {
    y[j] = float((b[2 + j] & 15) - 8) * d;
    y[j + 16] = float((b[2 + j] >> 4) - 8) * d;
  }
  return y;
}

// block_q4_1 {half d; half m; u8 qs[16]}: y = q*d + m.
Bytes block_q4_1() {
  Bytes b(20);
  put16(b, 0, 0x2C5A);
  put16(b, 2, 0xBC19);  // m < 0
  for (int j = 0; j < 16; ++j) b[4 + j] = uint8_t(((j * 9 + 4) & 15) | (((j * 11) & 15) << 4));
  return b;
}
Floats want_q4_1(const Bytes& b) {
  const float d = half_at(b, 0), m = half_at(b, 2);
  Floats y(32);
  for (int j = 0; j < 16; ++j) {
    y[j] = float(b[4 + j] & 15) * d + m;
    y[j + 16] = float(b[4 + j] >> 4) * d + m;
  }
  return y;
}

// block_q5_0 {half d; u8 qh[4]; u8 qs[16]}, block_q5_1 {half d, m; u8 qh[4]; u8 qs[16]}: the 5th
// bit of value j is bit j of qh (a little-endian uint32), of value j+16 bit j+16;
// y = (q - 16)*d, resp. q*d + m.
Bytes block_q5(bool affine) {
  const size_t qh_at = affine ? 4 : 2;
  Bytes b(qh_at + 20);
  put16(b, 0, affine ? 0x2B33 : 0x2A8F);
  if (affine) put16(b, 2, 0xB8CD);
  const std::array<uint8_t, 4> qh = {0xE2, 0x96, 0x3C, 0x5A};  // 0x5A3C96E2
  for (int i = 0; i < 4; ++i) b[qh_at + i] = qh[i];
  const int shift = affine ? 9 : 3;
  for (int j = 0; j < 16; ++j) {
    b[qh_at + 4 + j] = uint8_t(((j * 7) & 15) | (((j * 5 + shift) & 15) << 4));
  }
  return b;
}
// The 32 codes of a Q5 block whose qh starts at byte qh_at (qs at qh_at + 4).
std::array<int, 32> q5_codes(const Bytes& b, size_t qh_at) {
  const uint32_t qh = uint32_t(b[qh_at]) | uint32_t(b[qh_at + 1]) << 8 |
                      uint32_t(b[qh_at + 2]) << 16 | uint32_t(b[qh_at + 3]) << 24;
  std::array<int, 32> q{};
  for (int j = 0; j < 16; ++j) {
    q[j] = (b[qh_at + 4 + j] & 15) | int((qh >> j) & 1) << 4;
    q[j + 16] = (b[qh_at + 4 + j] >> 4) | int((qh >> (j + 16)) & 1) << 4;
  }
  return q;
}
Floats want_q5(const Bytes& b, bool affine) {
  const float d = half_at(b, 0), m = affine ? half_at(b, 2) : 0.0f;
  const auto q = q5_codes(b, affine ? 4 : 2);
  Floats y(32);
  for (int j = 0; j < 32; ++j) y[j] = affine ? float(q[j]) * d + m : float(q[j] - 16) * d;
  return y;
}

// block_q8_0 {half d; i8 qs[32]}: y = q*d. block_q8_1 {half d; half s; i8 qs[32]} (s = d*sum(q)
// is only read by dot products; ggml has no dequantize_row_q8_1, its value is d*q as for Q8_0).
int q8_code(int j, int mul) {
  return j == 0 ? -127 : j == 1 ? 127 : (j * mul) % 255 - 127;
}
Bytes block_q8(bool with_s) {
  const size_t qs_at = with_s ? 4 : 2;
  const int mul = with_s ? 101 : 83;
  Bytes b(qs_at + 32);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    b[qs_at + j] = uint8_t(q8_code(j, mul));
    sum += q8_code(j, mul);
  }
  put16(b, 0, with_s ? 0x3012 : 0x2E66);
  if (with_s) put16(b, 2, f32_to_fp16(float(sum) * fp16_to_f32(0x3012)));
  return b;
}
Floats want_q8(const Bytes& b, size_t qs_at) {
  const float d = half_at(b, 0);
  Floats y(32);
  for (int j = 0; j < 32; ++j) y[j] = float(int8_t(b[qs_at + j])) * d;
  return y;
}

// block_iq4_nl {half d; u8 qs[16]}: y[j] = d*kvalues[lo], y[j+16] = d*kvalues[hi].
Bytes block_iq4_nl() {
  Bytes b(18);
  put16(b, 0, 0x2F12);
  for (int j = 0; j < 16; ++j) b[2 + j] = uint8_t(((j * 7 + 2) & 15) | (((j * 11) & 15) << 4));
  return b;
}
Floats want_iq4_nl(const Bytes& b) {
  const float d = half_at(b, 0);
  Floats y(32);
  for (int j = 0; j < 16; ++j) {
    y[j] = d * float(kIq4nl[b[2 + j] & 15]);
    y[j + 16] = d * float(kIq4nl[b[2 + j] >> 4]);
  }
  return y;
}

// ---- 256-value super-blocks -----------------------------------------------------------------

// block_q8_K {float d; i8 qs[256]; i16 bsums[16]}: y = d*q (bsums: sums of 16, not decoded).
Bytes block_q8_k() {
  Bytes b = pattern(292, 0x51ED27u);
  const float d = 0.01171875f;
  std::memcpy(b.data(), &d, 4);
  b[4] = uint8_t(-127);
  b[5] = 127;
  for (int j = 2; j < 256; ++j) {
    if (b[4 + j] == 0x80) b[4 + j] = 5;  // keep -128 out: not a code ggml's quantizer writes
  }
  for (int g = 0; g < 16; ++g) {
    int sum = 0;
    for (int l = 0; l < 16; ++l) sum += int8_t(b[4 + 16 * g + l]);
    put16(b, 260 + 2 * g, uint16_t(int16_t(sum)));
  }
  return b;
}
Floats want_q8_k(const Bytes& b) {
  float d;
  std::memcpy(&d, b.data(), 4);
  Floats y(256);
  for (int j = 0; j < 256; ++j) y[j] = d * float(int8_t(b[4 + j]));
  return y;
}

// block_q2_K {u8 scales[16]; u8 qs[64]; half d; half dmin}: scales[i] = sc | mn << 4 for
// sub-block i of 16; value 128n + 32j + 16h + l is bits 2j of qs[32n + 16h + l] in sub-block
// 8n + 2j + h; y = (d*sc)*q - dmin*mn.
Bytes block_q2_k() {
  Bytes b = pattern(84, 0xC0FFEEu);
  for (int i = 0; i < 16; ++i) b[i] = uint8_t(((i * 7 + 3) % 15 + 1) | (((i * 11) % 16) << 4));
  for (int n = 0; n < 2; ++n) {
    for (int h = 0; h < 2; ++h) {  // codes 0 and 3 in every sub-block
      b[16 + 32 * n + 16 * h] = 0x00;
      b[16 + 32 * n + 16 * h + 1] = 0xFF;
    }
  }
  put16(b, 80, 0x2D0E);
  put16(b, 82, 0x2A1B);
  return b;
}
Floats want_q2_k(const Bytes& b) {
  const float d = half_at(b, 80), dmin = half_at(b, 82);
  Floats y(256);
  for (int n = 0; n < 2; ++n) {
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        const int sc = b[8 * n + 2 * j + h];
        const float dl = d * float(sc & 15), ml = dmin * float(sc >> 4);
        for (int l = 0; l < 16; ++l) {
          const int q = (b[16 + 32 * n + 16 * h + l] >> (2 * j)) & 3;
          y[128 * n + 32 * j + 16 * h + l] = dl * float(q) - ml;
        }
      }
    }
  }
  return y;
}

// block_q3_K {u8 hmask[32]; u8 qs[64]; u8 scales[12]; half d}: 6-bit scale s of sub-block i has
// its low 4 bits in scales[i % 8] (low nibble for i < 8, high for i >= 8) and its top 2 bits at
// bit 2*(i/4) of scales[8 + i % 4]; value 128n + 32j + 16h + l: low bits 2j of qs[32n + 16h + l],
// high bit (1 << (4n + j)) of hmask[16h + l], clear = minus 4; y = (d*(s - 32))*q.
constexpr std::array<int, 16> kQ3Scales = {37, 5,  60, 22, 0,  48, 31, 63,
                                           14, 41, 9,  55, 26, 33, 1,  50};
Bytes block_q3_k() {
  Bytes b = pattern(110, 0x3A5E1u);
  for (int h = 0; h < 2; ++h) {  // codes -4 and 3 at l = 0, 1 of every sub-block
    b[16 * h] = 0x00;
    b[16 * h + 1] = 0xFF;
    for (int n = 0; n < 2; ++n) {
      b[32 + 32 * n + 16 * h] = 0x00;
      b[32 + 32 * n + 16 * h + 1] = 0xFF;
    }
  }
  for (int i = 0; i < 8; ++i) b[96 + i] = uint8_t((kQ3Scales[i] & 15) | (kQ3Scales[i + 8] << 4));
  for (int i = 0; i < 4; ++i) {
    int hi = 0;
    for (int k = 0; k < 4; ++k) hi |= ((kQ3Scales[i + 4 * k] >> 4) & 3) << (2 * k);
    b[104 + i] = uint8_t(hi);
  }
  put16(b, 108, 0x2B9A);
  return b;
}
Floats want_q3_k(const Bytes& b) {
  const float d = half_at(b, 108);
  const uint8_t* sb = &b[96];
  std::array<int, 16> s{};
  for (int i = 0; i < 16; ++i) {
    const int lo = i < 8 ? (sb[i] & 15) : (sb[i - 8] >> 4);
    const int hi = (sb[8 + i % 4] >> (2 * (i / 4))) & 3;
    s[i] = (lo | (hi << 4)) - 32;
  }
  Floats y(256);
  for (int n = 0; n < 2; ++n) {
    for (int j = 0; j < 4; ++j) {
      for (int h = 0; h < 2; ++h) {
        const float dl = d * float(s[8 * n + 2 * j + h]);
        for (int l = 0; l < 16; ++l) {
          const int lo = (b[32 + 32 * n + 16 * h + l] >> (2 * j)) & 3;
          const bool high = b[16 * h + l] & (1 << (4 * n + j));
          y[128 * n + 32 * j + 16 * h + l] = dl * float(lo - (high ? 0 : 4));
        }
      }
    }
  }
  return y;
}

// Q4_K / Q5_K 12-byte scales: 6-bit sc and mn for sub-blocks j < 4 in the low 6 bits of bytes j
// and j + 4; for j >= 4 the low nibbles in byte j + 4 (sc low, mn high) and the top 2 bits in
// the top bits of bytes j - 4 (sc) and j (mn). These are the spec's get_scale_min_k4.
constexpr std::array<int, 8> kKSc = {63, 17, 42, 5, 38, 59, 23, 11};
constexpr std::array<int, 8> kKMn = {9, 63, 0, 27, 50, 14, 33, 46};
void pack_k4_scales(uint8_t* q) {
  for (int j = 0; j < 4; ++j) {
    q[j] = uint8_t(kKSc[j] | ((kKSc[j + 4] >> 4) << 6));
    q[j + 4] = uint8_t(kKMn[j] | ((kKMn[j + 4] >> 4) << 6));
    q[j + 8] = uint8_t((kKSc[j + 4] & 15) | ((kKMn[j + 4] & 15) << 4));
  }
}
void scale_min_k4(const uint8_t* q, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = q[j] & 63;
    mn = q[j + 4] & 63;
  } else {
    sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
    mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// block_q4_K {half d; half dmin; u8 scales[12]; u8 qs[128]}: sub-block 2k is the low nibbles of
// qs[32k..32k+31], 2k + 1 the high nibbles; y = (d*sc)*q - dmin*mn.
Bytes block_q4_k() {
  Bytes b = pattern(144, 0x4B4B1u);
  put16(b, 0, 0x2E1D);
  put16(b, 2, 0x2C4B);
  pack_k4_scales(&b[4]);
  for (int k = 0; k < 4; ++k) {  // codes 0 and 15 in every sub-block
    b[16 + 32 * k] = 0x00;
    b[16 + 32 * k + 1] = 0xFF;
  }
  return b;
}
// block_q5_K {half d; half dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}: as Q4_K, plus 16 when
// bit 2k (sub-block 2k) or 2k + 1 (sub-block 2k + 1) of qh[l] is set.
Bytes block_q5_k() {
  Bytes b = pattern(176, 0x5B5B2u);
  put16(b, 0, 0x2D71);
  put16(b, 2, 0x2B05);
  pack_k4_scales(&b[4]);
  b[16] = 0x00;  // codes 0 and 31 at l = 0, 1 of every sub-block
  b[17] = 0xFF;
  for (int k = 0; k < 4; ++k) {
    b[48 + 32 * k] = 0x00;
    b[48 + 32 * k + 1] = 0xFF;
  }
  return b;
}
// Q4_K (qh_at = 0: no qh) and Q5_K (qh at byte 16, qs at 48).
Floats want_qk(const Bytes& b, size_t qh_at) {
  const float d = half_at(b, 0), dmin = half_at(b, 2);
  const size_t qs_at = qh_at ? 48 : 16;
  Floats y(256);
  for (int k = 0; k < 4; ++k) {
    int sc, mn;
    scale_min_k4(&b[4], 2 * k, sc, mn);
    const float d1 = d * float(sc), m1 = dmin * float(mn);
    scale_min_k4(&b[4], 2 * k + 1, sc, mn);
    const float d2 = d * float(sc), m2 = dmin * float(mn);
    for (int l = 0; l < 32; ++l) {
      const int ql = b[qs_at + 32 * k + l], qh = qh_at ? b[qh_at + l] : 0;
      y[64 * k + l] = d1 * float((ql & 15) + ((qh >> (2 * k)) & 1 ? 16 : 0)) - m1;
      y[64 * k + 32 + l] = d2 * float((ql >> 4) + ((qh >> (2 * k + 1)) & 1 ? 16 : 0)) - m2;
    }
  }
  return y;
}

// block_q6_K {u8 ql[128]; u8 qh[64]; i8 scales[16]; half d}: per half n, l < 32: value 128n + l
// (+32, +64, +96) takes the low nibble of ql[64n + l] (ql[64n + 32 + l], high nibble of
// ql[64n + l], high nibble of ql[64n + 32 + l]) and bits 0-1 (2-3, 4-5, 6-7) of qh[32n + l],
// scale scales[8n + l/16] (+2, +4, +6); y = (d*sc)*(q - 32).
constexpr std::array<int, 16> kQ6Scales = {-128, 97,   -45, 12, 127, -3, 66,  -77,
                                           29,   -111, 5,   88, -60, 41, -19, 100};
Bytes block_q6_k() {
  Bytes b = pattern(210, 0x6C6C3u);
  for (int n = 0; n < 2; ++n) {
    for (int l0 = 0; l0 < 32; l0 += 16) {  // code -32 at the first value of every sub-block
      b[64 * n + l0] = 0;
      b[64 * n + 32 + l0] = 0;
      b[128 + 32 * n + l0] = 0;
    }
  }
  for (int i = 0; i < 16; ++i) b[192 + i] = uint8_t(kQ6Scales[i]);
  put16(b, 208, 0x21C7);
  return b;
}
Floats want_q6_k(const Bytes& b) {
  const float d = half_at(b, 208);
  Floats y(256);
  for (int n = 0; n < 2; ++n) {
    const uint8_t* ql = &b[64 * n];
    for (int l = 0; l < 32; ++l) {
      const int qh = b[128 + 32 * n + l];
      const int q1 = ((ql[l] & 15) | ((qh & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 15) | (((qh >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh >> 6) & 3) << 4)) - 32;
      auto sc = [&](int k) { return float(int8_t(b[192 + 8 * n + l / 16 + k])); };
      y[128 * n + l] = d * sc(0) * float(q1);
      y[128 * n + l + 32] = d * sc(2) * float(q2);
      y[128 * n + l + 64] = d * sc(4) * float(q3);
      y[128 * n + l + 96] = d * sc(6) * float(q4);
    }
  }
  return y;
}

// block_iq4_xs {half d; u16 scales_h; u8 scales_l[4]; u8 qs[128]}: 6-bit scale of sub-block ib
// (32 values) = nibble ib%2 of scales_l[ib/2] | bits 2ib..2ib+1 of scales_h << 4; values as
// IQ4_NL over qs[16ib..16ib+15]; y = (d*(ls - 32))*kvalues[q].
constexpr std::array<int, 8> kXsScales = {45, 0, 19, 63, 33, 7, 58, 26};
Bytes block_iq4_xs() {
  Bytes b = pattern(136, 0x1A4A5u);
  put16(b, 0, 0x2C9E);
  int sh = 0;
  for (int i = 0; i < 4; ++i) b[4 + i] = 0;
  for (int ib = 0; ib < 8; ++ib) {
    b[4 + ib / 2] = uint8_t(b[4 + ib / 2] | ((kXsScales[ib] & 15) << (4 * (ib % 2))));
    sh |= (kXsScales[ib] >> 4) << (2 * ib);
  }
  put16(b, 2, uint16_t(sh));
  for (int ib = 0; ib < 8; ++ib) b[8 + 16 * ib] = 0x00;  // kvalue -127 in every sub-block
  return b;
}
Floats want_iq4_xs(const Bytes& b) {
  const float d = half_at(b, 0);
  const int sh = get16(b, 2);
  Floats y(256);
  for (int ib = 0; ib < 8; ++ib) {
    const int ls = ((b[4 + ib / 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
    const float dl = d * float(ls - 32);
    for (int j = 0; j < 16; ++j) {
      y[32 * ib + j] = dl * float(kIq4nl[b[8 + 16 * ib + j] & 15]);
      y[32 * ib + 16 + j] = dl * float(kIq4nl[b[8 + 16 * ib + j] >> 4]);
    }
  }
  return y;
}

// block_tq2_0 {u8 qs[64]; half d}: value 128c + 32l + m is bits 2l of qs[32c + m]; y = (q-1)*d.
// Code 3 is never written by ggml's quantizer but decodes to 2*d.
Bytes block_tq2_0() {
  Bytes b = pattern(66, 0x7E27u);
  put16(b, 64, 0x3266);
  return b;
}
Floats want_tq2_0(const Bytes& b) {
  const float d = half_at(b, 64);
  Floats y(256);
  for (int c = 0; c < 2; ++c) {
    for (int l = 0; l < 4; ++l) {
      for (int m = 0; m < 32; ++m) {
        y[128 * c + 32 * l + m] = float(((b[32 * c + m] >> (2 * l)) & 3) - 1) * d;
      }
    }
  }
  return y;
}

// block_tq1_0 {u8 qs[48]; u8 qh[4]; half d}: trit n of byte q is ((q*3^n mod 256)*3) >> 8.
// Values 0..159: qs[m] trit n -> 32n + m; 160..239: qs[32 + m] -> 160 + 16n + m;
// 240..255: qh[j], trits 0..3 -> 240 + 4n + j; y = (t - 1)*d.
int tq1_trit(uint8_t q, int n) {
  constexpr std::array<int, 5> kPow3 = {1, 3, 9, 27, 81};
  return (uint8_t(q * kPow3[n]) * 3) >> 8;
}
Bytes block_tq1_0() {
  Bytes b = pattern(54, 0x7E17u);
  put16(b, 52, 0x2F5C);
  return b;
}
Floats want_tq1_0(const Bytes& b) {
  const float d = half_at(b, 52);
  Floats y(256);
  for (int n = 0; n < 5; ++n) {
    for (int m = 0; m < 32; ++m) y[32 * n + m] = float(tq1_trit(b[m], n) - 1) * d;
    for (int m = 0; m < 16; ++m) y[160 + 16 * n + m] = float(tq1_trit(b[32 + m], n) - 1) * d;
  }
  for (int n = 0; n < 4; ++n) {
    for (int j = 0; j < 4; ++j) y[240 + 4 * n + j] = float(tq1_trit(b[48 + j], n) - 1) * d;
  }
  return y;
}
// ggml's TQ1_0 byte for 5 trits t0..t4 (t0 most significant): ceil(v * 256 / 243).
uint8_t tq1_byte(int v) {
  return uint8_t((v * 256 + 242) / 243);
}

struct KatCase {
  const char* name;
  Bytes (*block)();
  Floats (*want)(const Bytes&);
};
constexpr KatCase kCases[] = {
    {"q4_0", block_q4_0, want_q4_0},
    {"q4_1", block_q4_1, want_q4_1},
    {"q5_0", [] { return block_q5(false); }, [](const Bytes& b) { return want_q5(b, false); }},
    {"q5_1", [] { return block_q5(true); }, [](const Bytes& b) { return want_q5(b, true); }},
    {"q8_0", [] { return block_q8(false); }, [](const Bytes& b) { return want_q8(b, 2); }},
    {"q8_1", [] { return block_q8(true); }, [](const Bytes& b) { return want_q8(b, 4); }},
    {"iq4_nl", block_iq4_nl, want_iq4_nl},
    {"q8_k", block_q8_k, want_q8_k},
    {"q2_k", block_q2_k, want_q2_k},
    {"q3_k", block_q3_k, want_q3_k},
    {"q4_k", block_q4_k, [](const Bytes& b) { return want_qk(b, 0); }},
    {"q5_k", block_q5_k, [](const Bytes& b) { return want_qk(b, 16); }},
    {"q6_k", block_q6_k, want_q6_k},
    {"iq4_xs", block_iq4_xs, want_iq4_xs},
    {"tq2_0", block_tq2_0, want_tq2_0},
    {"tq1_0", block_tq1_0, want_tq1_0},
};

Bytes quantize(std::string_view name, const Floats& x) {
  const Format f = Format::parse(name);
  Bytes b(f.row_bytes(int64_t(x.size())), 0xCD);
  f.quantize_row(x.data(), int64_t(x.size()), nullptr, b.data());
  return b;
}
Floats dequantize(std::string_view name, const Bytes& b, int64_t n) {
  Floats y(size_t(n), -12345.0f);
  Format::parse(name).dequantize_row(b.data(), n, y.data());
  return y;
}

// Every format decodes its hand-built block (alone and twice in a row) as ggml does, bit for bit.
TEST(FormatKat, DecodeMatchesGgmlBitForBit) {
  for (const auto& c : kCases) {
    const Bytes b = c.block();
    check_decode(c.name, b, c.want(b));
  }
}

// A few spot values computed by hand, independent of the want_* helpers above.
TEST(FormatKat, HandComputedSpotValues) {
  // Q4_0: d = 0xB1E3 = -(1 + 483/1024) / 2^3; qs[0] = 0x30 -> y[0] = -8*d, y[16] = -5*d.
  const Floats q40 = dequantize("q4_0", block_q4_0(), 32);
  const float d40 = -(1.0f + 483.0f / 1024.0f) / 8.0f;
  EXPECT_EQ(q40[0], -8.0f * d40);
  EXPECT_EQ(q40[16], -5.0f * d40);
  // Q3_K sub-block 4 (values 64..79) has s = 0 -> scale -32; value 64 has code -4, value 65 code
  // 3; d = 0x2B9A = (1 + 922/1024) / 2^5.
  const Floats q3k = dequantize("q3_k", block_q3_k(), 256);
  const float d3 = (1.0f + 922.0f / 1024.0f) / 32.0f;
  EXPECT_EQ(q3k[64], (d3 * -32.0f) * -4.0f);
  EXPECT_EQ(q3k[65], (d3 * -32.0f) * 3.0f);
  // Q6_K sub-block 0 has scale -128 and code -32 at value 0: y[0] = d * 4096.
  const Floats q6k = dequantize("q6_k", block_q6_k(), 256);
  EXPECT_EQ(q6k[0], fp16_to_f32(0x21C7) * 4096.0f);
  // Q4_K sub-block 7: sc = 11, mn = 46 (both from the j >= 4 packing); its value 225 has code 15.
  const Floats q4k = dequantize("q4_k", block_q4_k(), 256);
  EXPECT_EQ(q4k[225], fp16_to_f32(0x2E1D) * 11.0f * 15.0f - fp16_to_f32(0x2C4B) * 46.0f);
}

// ggml's type ids and block sizes (ggml.c type_traits / ggml-common.h).
TEST(FormatKat, GgmlTypeIdsAndBlockSizes) {
  struct Row {
    const char* name;
    uint32_t id;
    int64_t block;
    uint64_t bytes;
  };
  constexpr Row kRows[] = {
      {"q4_0", 2, 32, 18},    {"q4_1", 3, 32, 20},      {"q5_0", 6, 32, 22},
      {"q5_1", 7, 32, 24},    {"q8_0", 8, 32, 34},      {"q8_1", 9, 32, 36},
      {"q2_k", 10, 256, 84},  {"q3_k", 11, 256, 110},   {"q4_k", 12, 256, 144},
      {"q5_k", 13, 256, 176}, {"q6_k", 14, 256, 210},   {"q8_k", 15, 256, 292},
      {"iq4_nl", 20, 32, 18}, {"iq4_xs", 23, 256, 136}, {"tq1_0", 34, 256, 54},
      {"tq2_0", 35, 256, 66},
  };
  for (const auto& r : kRows) {
    SCOPED_TRACE(r.name);
    const Format f = Format::parse(r.name);
    EXPECT_EQ(f.gguf_type(), r.id);
    EXPECT_TRUE(f.is_ggml_type());
    EXPECT_EQ(f.info().block_elems, r.block);
    EXPECT_EQ(f.row_bytes(r.block), r.bytes);
    EXPECT_EQ(f.row_bytes(3 * r.block), 3 * r.bytes);
    const auto back = Format::from_gguf_type(r.id);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(back->name(), r.name);
  }
}

// Forced quantization answers: ggml's reference quantizers (quantize_row_*_ref) have exactly one
// output for these inputs.
TEST(FormatKat, Q8ForcedScaleHalf) {
  Floats x(32);
  int sum = 0;
  for (int j = 0; j < 32; ++j) {
    x[j] = 0.5f * float(q8_code(j, 83));
    sum += q8_code(j, 83);
  }
  const Bytes b0 = quantize("q8_0", x);  // d = amax/127 = 0.5, q = round(x/d)
  EXPECT_EQ(get16(b0, 0), 0x3800);
  const Bytes b1 = quantize("q8_1", x);  // plus s = fp16(d*sum)
  EXPECT_EQ(get16(b1, 0), 0x3800);
  EXPECT_EQ(get16(b1, 2), f32_to_fp16(0.5f * float(sum)));
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(int8_t(b0[2 + j]), q8_code(j, 83)) << j;
    EXPECT_EQ(int8_t(b1[4 + j]), q8_code(j, 83)) << j;
  }
}

TEST(FormatKat, LegacyForcedScales) {
  Floats x(32);
  // Q4_0: multiples of 0.25 in -2..1.75 with -2 present: d = max/-8 = 0.25, code q + 8.
  for (int j = 0; j < 32; ++j) x[j] = 0.25f * float(((j * 7) & 15) - 8);
  Bytes b = quantize("q4_0", x);
  EXPECT_EQ(get16(b, 0), 0x3400);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[2 + j], ((j * 7) & 15) | ((((j + 16) * 7) & 15) << 4));
  // Q5_0: multiples of 0.125 in -2..1.875 with -2 present: d = 0.125, code q + 16.
  std::array<int, 32> q{};
  for (int j = 0; j < 32; ++j) q[j] = (j * 13 + 5) & 31;
  for (int j = 0; j < 32; ++j) x[j] = 0.125f * float(q[j] - 16);
  b = quantize("q5_0", x);
  EXPECT_EQ(get16(b, 0), 0x3000);
  EXPECT_EQ(q5_codes(b, 2), q);
  // Q4_1 / Q5_1: -1.5 + 0.25 q (resp. 0.125 q) with every code present: d = (max - min)/15
  // (resp. /31), m = min.
  for (int j = 0; j < 32; ++j) x[j] = float((j * 7) & 15) * 0.25f - 1.5f;
  b = quantize("q4_1", x);
  EXPECT_EQ(get16(b, 0), 0x3400);
  EXPECT_EQ(get16(b, 2), 0xBE00);
  for (int j = 0; j < 16; ++j) EXPECT_EQ(b[4 + j], ((j * 7) & 15) | ((((j + 16) * 7) & 15) << 4));
  for (int j = 0; j < 32; ++j) x[j] = float(q[j]) * 0.125f - 1.5f;
  b = quantize("q5_1", x);
  EXPECT_EQ(get16(b, 0), 0x3000);
  EXPECT_EQ(get16(b, 2), 0xBE00);
  EXPECT_EQ(q5_codes(b, 4), q);
}

TEST(FormatKat, TernaryForcedQuarter) {
  // Values in {-1, 0, 1} * 0.25: ggml's d = amax = 0.25 and the trits are forced.
  std::array<int, 256> t{};
  const Bytes p = pattern(256, 0x7777u);
  for (int e = 0; e < 256; ++e) t[e] = p[e] % 3;
  t[3] = 2;
  Floats x(256);
  for (int e = 0; e < 256; ++e) x[e] = 0.25f * float(t[e] - 1);

  const Bytes b2 = quantize("tq2_0", x);
  EXPECT_EQ(get16(b2, 64), 0x3400);
  for (int c = 0; c < 2; ++c) {
    for (int m = 0; m < 32; ++m) {
      int byte = 0;
      for (int l = 0; l < 4; ++l) byte |= t[128 * c + 32 * l + m] << (2 * l);
      EXPECT_EQ(b2[32 * c + m], byte) << "tq2_0 qs " << 32 * c + m;
    }
  }
  EXPECT_EQ(dequantize("tq2_0", b2, 256), x);

  const Bytes b1 = quantize("tq1_0", x);
  EXPECT_EQ(get16(b1, 52), 0x3400);
  auto v5 = [&](int base, int stride) {
    int v = 0;
    for (int n = 0; n < 5; ++n) v = 3 * v + t[base + stride * n];
    return v;
  };
  for (int m = 0; m < 32; ++m) EXPECT_EQ(b1[m], tq1_byte(v5(m, 32))) << "tq1_0 qs " << m;
  for (int m = 0; m < 16; ++m) EXPECT_EQ(b1[32 + m], tq1_byte(v5(160 + m, 16))) << "qs " << 32 + m;
  for (int j = 0; j < 4; ++j) {  // four trits, then a fifth zero digit
    int v = 0;
    for (int n = 0; n < 4; ++n) v = 3 * v + t[240 + 4 * n + j];
    EXPECT_EQ(b1[48 + j], tq1_byte(3 * v)) << "tq1_0 qh " << j;
  }
  EXPECT_EQ(dequantize("tq1_0", b1, 256), x);
}

// Every 5-trit combination, encoded as ggml's quantizer does, decodes to its trits.
TEST(FormatKat, Tq1AllTritCombinationsDecode) {
  for (int v = 0; v < 243; ++v) {
    const std::array<int, 5> t = {v / 81, v / 27 % 3, v / 9 % 3, v / 3 % 3, v % 3};
    Bytes b(54, 0);
    b[0] = tq1_byte(v);
    put16(b, 52, 0x3C00);  // d = 1
    const Floats y = dequantize("tq1_0", b, 256);
    for (int n = 0; n < 5; ++n) {
      EXPECT_EQ(y[32 * n], float(t[n] - 1)) << "v " << v << " trit " << n;
      EXPECT_EQ(y[32 * n + 1], -1.0f) << "v " << v << " trit " << n;  // byte 0 decodes to -1s
    }
  }
}

// A block that is exactly representable (the KAT blocks are built so: every sub-block holds its
// extreme codes and the super-block scales sit where ggml's scale search puts them) quantizes to
// a block that decodes to the same values. Values are compared, not bytes: an equally exact
// encoding is fine.
TEST(FormatKat, RepresentableBlocksRoundTripExactly) {
  for (const auto& c : kCases) {
    SCOPED_TRACE(c.name);
    Bytes blk = c.block();
    if (std::string_view(c.name) == "tq2_0") {
      for (int i = 0; i < 64; ++i) {  // code 3 (2*d) is outside the ternary range: make it 2
        for (int s = 0; s < 8; s += 2) {
          if (((blk[i] >> s) & 3) == 3) blk[i] = uint8_t(blk[i] & ~(1 << s));
        }
      }
    }
    const int64_t n = Format::parse(c.name).info().block_elems;
    const Floats x = dequantize(c.name, blk, n);
    const Floats y = dequantize(c.name, quantize(c.name, x), n);
    double max_err = 0;
    int bad = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = std::fabs(double(y[size_t(i)]) - double(x[size_t(i)]));
      if (e > max_err) max_err = e;
      if (y[size_t(i)] != x[size_t(i)] && ++bad <= 4) {
        ADD_FAILURE() << c.name << " value " << i << ": " << std::setprecision(9) << x[size_t(i)]
                      << " came back as " << y[size_t(i)];
      }
    }
    EXPECT_EQ(bad, 0) << c.name << " max round-trip error " << max_err;
  }
}

}  // namespace
