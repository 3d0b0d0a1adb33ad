// Codecs of TQ1_0, TQ2_0 and BIN1.
#include "format/ternary.h"

#include <algorithm>
#include <bit>

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

// The code (0, 1, 2) of the trit nearest x * id: nearest_int(v, -1, 1) + 1. That is -1 below
// -0.5, 1 above 0.5, and 0 from -0.5 to 0.5 (the halves round to even), so two comparisons give
// it without a branch: the clamp's branches mispredicted on most weights and took 16% of
// `quantize --type tq2_0`.
inline int trit(float x, float id) {
  const float v = x * id;
  return 1 + int(v > 0.5f) - int(v < -0.5f);
}

}  // namespace

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

namespace {
// TQ1_0's three runs of bytes (tq1_place): len bytes holding digit n of value len * n + l of the
// run's values at x (5 digits per byte in qs, 4 in qh).
template <int kDigits>
void tq1_encode_run(const float* x, float id, int len, uint8_t* out) {
  for (int l = 0; l < len; ++l) {
    int v = 0;
    for (int n = 0; n < kDigits; ++n) v += trit(x[len * n + l], id) * kPow3[4 - n];
    out[l] = uint8_t((v * 256 + 242) / 243);  // ceil(v * 256 / 243): the digits at the top
  }
}
template <int kDigits>
void tq1_decode_run(const uint8_t* q, float d, int len, float* y) {
  for (int n = 0; n < kDigits; ++n) {
    for (int l = 0; l < len; ++l) y[len * n + l] = float(tq1_digit(q[l], n) - 1) * d;
  }
}
}  // namespace

void TQ1_0::encode(const float* x, int64_t, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(load_fp16(b->d));
  tq1_encode_run<5>(x, id, 32, b->qs);
  tq1_encode_run<5>(x + 160, id, 16, b->qs + 32);
  tq1_encode_run<4>(x + 240, id, 4, b->qh);
}

void TQ1_0::decode(const void* blk, int64_t, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  tq1_decode_run<5>(b->qs, d, 32, y);
  tq1_decode_run<5>(b->qs + 32, d, 16, y + 160);
  tq1_decode_run<4>(b->qh, d, 4, y + 240);
}

// ---- TQ2_0 ----------------------------------------------------------------------------------

// Value e lives in byte (e >> 7) * 32 + (e & 31) at bits 2 * ((e >> 5) & 3): byte h * 32 + l holds
// values h * 128 + 32 k + l, k = 0..3, at bits 2k.

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
  // Byte-major, so the loop over l vectorizes.
  for (int h = 0; h < 2; ++h) {
    int v[32] = {};
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) v[l] |= trit(x[h * 128 + 32 * k + l], id) << (2 * k);
    }
    for (int l = 0; l < 32; ++l) b->qs[h * 32 + l] = uint8_t(v[l]);
  }
}

void TQ2_0::decode(const void* blk, int64_t, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const int q = (b->qs[h * 32 + l] >> (2 * k)) & 3;
        y[h * 128 + 32 * k + l] = float(q - 1) * d;
      }
    }
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
  // d where the bit is set, else -d: d with its sign bit flipped, as the negation is. Without a
  // branch: the bits are the weights' signs, which no predictor guesses (the branchy loop was
  // half of `quantize --type bin1`'s time, most of it mispredictions).
  const uint32_t db = std::bit_cast<uint32_t>(load_fp16(b->d));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t bit = (uint32_t(b->bits[i / 8]) >> (i % 8)) & 1;
    y[i] = std::bit_cast<float>(db ^ ((bit ^ 1) << 31));
  }
}

}  // namespace lowbit::formats
