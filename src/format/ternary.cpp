// Codecs of TQ1_0, TQ2_0 and BIN1.
#include "format/ternary.h"

#include <algorithm>

namespace lowbit::formats {

namespace {

constexpr int kPow3[6] = {1, 3, 9, 27, 81, 243};

// TQ1_0 placement of value e: byte index within qs (0..47) or qh (48..51), and digit.
void tq1_place(int e, int& byte, int& digit) {
  if (e < 160)
    byte = e % 32, digit = e / 32;
  else if (e < 240)
    byte = 32 + (e - 160) % 16, digit = (e - 160) / 16;
  else
    byte = 48 + (e - 240) % 4, digit = (e - 240) / 4;
}

float fit_ternary(const float* x, const float* w, int64_t n) {
  return fit::fit_symmetric(x, w, n, fit::IntLevels{-1, 1}, fit::Fp16Round{});
}

inline int trit(float x, float id) {
  return nearest_int(x * id, -1, 1) + 1;
}

}  // namespace

uint8_t tq1_pack_digits(const int* t, int count) {
  int v = 0;
  for (int n = 0; n < 5; ++n) v += (n < count ? t[n] : 0) * kPow3[4 - n];
  return uint8_t((v * 256 + 242) / 243);  // ceil(v * 256 / 243)
}

int tq1_digit(uint8_t q, int n) {
  const uint8_t r = uint8_t(q * kPow3[n]);  // mod 256
  return (int(r) * 3) >> 8;
}

int tq1_code(const TQ1_0::Block& b, int e) {
  int byte, digit;
  tq1_place(e, byte, digit);
  return tq1_digit(byte < 48 ? b.qs[byte] : b.qh[byte - 48], digit);
}

// ---- TQ1_0 ----------------------------------------------------------------------------------

void TQ1_0::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  store_fp16(b->d, fit_ternary(x, w, n));
}

float TQ1_0::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = load_fp16(static_cast<const Block*>(blk)->d);
  return float(trit(x, inv_or_zero(d)) - 1) * d;
}

void TQ1_0::encode(const float* x, int64_t, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(load_fp16(b->d));
  int digits[52][5] = {};
  for (int e = 0; e < 256; ++e) {
    int byte, digit;
    tq1_place(e, byte, digit);
    digits[byte][digit] = trit(x[e], id);
  }
  for (int k = 0; k < 48; ++k) b->qs[k] = tq1_pack_digits(digits[k], 5);
  for (int k = 0; k < 4; ++k) b->qh[k] = tq1_pack_digits(digits[48 + k], 4);
}

void TQ1_0::decode(const void* blk, int64_t, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  for (int e = 0; e < 256; ++e) y[e] = float(tq1_code(*b, e) - 1) * d;
}

// ---- TQ2_0 ----------------------------------------------------------------------------------

namespace {
inline int tq2_byte(int e) {
  return (e >> 7) * 32 + (e & 31);
}
inline int tq2_shift(int e) {
  return 2 * ((e >> 5) & 3);
}
}  // namespace

void TQ2_0::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  store_fp16(b->d, fit_ternary(x, w, n));
}

float TQ2_0::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = load_fp16(static_cast<const Block*>(blk)->d);
  return float(trit(x, inv_or_zero(d)) - 1) * d;
}

void TQ2_0::encode(const float* x, int64_t, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(load_fp16(b->d));
  std::memset(b->qs, 0, sizeof b->qs);
  for (int e = 0; e < 256; ++e) b->qs[tq2_byte(e)] |= uint8_t(trit(x[e], id) << tq2_shift(e));
}

void TQ2_0::decode(const void* blk, int64_t, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  for (int e = 0; e < 256; ++e) {
    const int q = (b->qs[tq2_byte(e)] >> tq2_shift(e)) & 3;
    y[e] = float(q - 1) * d;
  }
}

// ---- BIN1 -----------------------------------------------------------------------------------

void BIN1::fit(const float* x, const float* w, int64_t n, void* blk) {
  // For fixed signs s_i = sign(x_i), the weighted-least-squares scale is sum w|x| / sum w.
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  double swx = 0, sw = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double wi = fit::weight(w, i);
    swx += wi * std::fabs(x[i]);
    sw += wi;
  }
  store_fp16(b->d, sw > 0 ? float(swx / sw) : 0.0f);
}

float BIN1::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = load_fp16(static_cast<const Block*>(blk)->d);
  return x >= 0 ? d : -d;
}

void BIN1::encode(const float* x, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b->bits, 0, sizeof b->bits);
  for (int64_t i = 0; i < n; ++i) b->bits[i / 8] |= uint8_t((x[i] >= 0 ? 1 : 0) << (i % 8));
}

void BIN1::decode(const void* blk, int64_t n, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  for (int64_t i = 0; i < n; ++i) y[i] = ((b->bits[i / 8] >> (i % 8)) & 1) ? d : -d;
}

}  // namespace lowbit::formats
