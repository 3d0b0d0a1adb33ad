// Known-answer blocks of lowbit's own formats (nf4, nf4_dq, bin1, grouped ints), built by hand
// from the layouts documented in docs/formats.md: field order, bit order, sign and zero-point
// conventions, and the ragged last group.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/half.h"

namespace lowbit {
namespace {

std::vector<float> decode(const char* name, const std::vector<uint8_t>& bytes, int64_t K) {
  const Format f = Format::parse(name);
  EXPECT_EQ(f.row_bytes(K), bytes.size()) << name;
  std::vector<float> y(static_cast<size_t>(K));
  f.dequantize_row(bytes.data(), K, y.data());
  return y;
}

void put_fp16(std::vector<uint8_t>& b, size_t at, float v) {
  const uint16_t h = f32_to_fp16(v);
  b[at] = uint8_t(h & 0xff), b[at + 1] = uint8_t(h >> 8);
}

TEST(LowbitKat, Int3AsymmetricGroupsWithRaggedTail) {
  // K = 10, group 8: group 0 = {fp16 0.5, zero 3, 3 bytes of 3-bit codes}, group 1 (2 values) =
  // {fp16 -2, zero 1, 1 byte}. Codes LSB first: group 0 codes 0..7 -> bits 000 001 010 011 100
  // 101 110 111 -> bytes 0b10001000, 0b11000110, 0b11111010.
  std::vector<uint8_t> b(2 + 1 + 3 + 2 + 1 + 1);
  put_fp16(b, 0, 0.5f);
  b[2] = 3;
  b[3] = 0b10001000, b[4] = 0b11000110, b[5] = 0b11111010;
  put_fp16(b, 6, -2.0f);
  b[8] = 1;
  b[9] = 0b00111010;  // codes 2, 7
  const auto y = decode("int3_g8_asym", b, 10);
  for (int q = 0; q < 8; ++q) EXPECT_EQ(y[q], 0.5f * float(q - 3)) << q;
  EXPECT_EQ(y[8], -2.0f * (2 - 1));
  EXPECT_EQ(y[9], -2.0f * (7 - 1));
}

TEST(LowbitKat, Int4SymmetricAndInt8PerRow) {
  // int4_g4: {fp16 0.25, codes 0x10, 0xFE}: codes 0, 1, 14, 15 -> (q - 8) * 0.25.
  std::vector<uint8_t> b(2 + 2);
  put_fp16(b, 0, 0.25f);
  b[2] = 0x10, b[3] = 0xFE;
  EXPECT_EQ(decode("int4_g4", b, 4), (std::vector<float>{-2.0f, -1.75f, 1.5f, 1.75f}));
  // int8 (one group per row): {fp16 0.5, codes as q + 128}.
  std::vector<uint8_t> c = {0, 0, 0, 128, 255, 1};
  put_fp16(c, 0, 0.5f);
  c.resize(2 + 3);
  EXPECT_EQ(decode("int8", c, 3), (std::vector<float>{-64.0f, 0.0f, 63.5f}));
}

TEST(LowbitKat, Nf4AndDoubleQuantizedNf4) {
  // nf4: {fp16 2, 32 bytes}: value i < 32 in the low nibble of byte i, value i >= 32 high.
  std::vector<uint8_t> b(2 + 32, 0);
  put_fp16(b, 0, 2.0f);
  b[2 + 0] = 0xF0;  // value 0 -> code 0 (-1), value 32 -> code 15 (+1)
  b[2 + 1] = 0x87;  // value 1 -> code 7 (0),  value 33 -> code 8 (0.0795803)
  const auto y = decode("nf4", b, 64);
  EXPECT_EQ(y[0], -2.0f);
  EXPECT_EQ(y[32], 2.0f);
  EXPECT_EQ(y[1], 0.0f);
  EXPECT_FLOAT_EQ(y[33], 2.0f * 0.07958029955625534f);
  // nf4_dq: {fp16 d = 0.5, int8 sc[4] = {2, -4, 0, 127}, 128 bytes}: value = d * sc_j * NF4[q].
  std::vector<uint8_t> c(2 + 4 + 128, 0xFF);  // every code 15 (+1)
  put_fp16(c, 0, 0.5f);
  c[2] = 2, c[3] = uint8_t(-4), c[4] = 0, c[5] = 127;
  const auto z = decode("nf4_dq", c, 256);
  EXPECT_EQ(z[0], 1.0f);
  EXPECT_EQ(z[64], -2.0f);
  EXPECT_EQ(z[128], 0.0f);
  EXPECT_EQ(z[255], 63.5f);
}

TEST(LowbitKat, Bin1SignBitsLsbFirst) {
  std::vector<uint8_t> b(2 + 8, 0);
  put_fp16(b, 0, 0.75f);
  b[2] = 0b00000101;  // values 0 and 2 positive
  b[9] = 0x80;        // value 63 positive
  const auto y = decode("bin1", b, 64);
  EXPECT_EQ(y[0], 0.75f);
  EXPECT_EQ(y[1], -0.75f);
  EXPECT_EQ(y[2], 0.75f);
  EXPECT_EQ(y[62], -0.75f);
  EXPECT_EQ(y[63], 0.75f);
}

TEST(LowbitKat, QuantizeFindsTheExactGroup) {
  // A group holding 0.5 * (q - 3) for q = 0..7 is exactly representable: scale +-0.5 with zero
  // point 3 (or, mirrored, -0.5 with zero point 4); the quantizer must find one of the two.
  std::vector<float> x(8), y(8);
  for (int q = 0; q < 8; ++q) x[q] = 0.5f * float(q - 3);
  std::vector<uint8_t> out(6);
  const Format f = Format::parse("int3_g8_asym");
  f.quantize(x.data(), 1, 8, nullptr, out.data());
  const uint16_t scale = uint16_t(out[0] | out[1] << 8);
  EXPECT_EQ(std::fabs(fp16_to_f32(scale)), 0.5f);
  EXPECT_EQ(int(out[2]), fp16_to_f32(scale) > 0 ? 3 : 4);
  f.dequantize_row(out.data(), 8, y.data());
  EXPECT_EQ(y, x);
}

}  // namespace
}  // namespace lowbit
