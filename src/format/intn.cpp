// Codecs of the grouped integer formats (int2..int8, symmetric and with zero point).
#include "format/intn.h"

#include <algorithm>

namespace lowbit::formats {

namespace {

template <int B, bool Asym>
constexpr int64_t kCodeOffset = Asym ? 3 : 2;  // byte offset of the codes in a group

template <int B>
void write_code(uint8_t* codes, int64_t i, int q) {
  const uint64_t bit = uint64_t(i) * B;
  codes[bit / 8] |= uint8_t(q << (bit % 8));
  if (bit % 8 + B > 8) codes[bit / 8 + 1] |= uint8_t(q >> (8 - bit % 8));
}

constexpr int qmax_of(int b) {
  return (1 << b) - 1;
}

// Asymmetric: x = d * (q - z), q = clamp(round(x / d) + z).
inline int asym_code(float x, float id, int z, int qmax) {
  return std::clamp(int(fit::round_even(x * id)) + z, 0, qmax);
}

// The codes minus z are the uniform grid -z..qmax-z (rounding then clamping to integer bounds is
// clamping then rounding), so the error is the grid kernels' (format/fit.h).
double asym_error(const float* x, const float* w, int64_t n, float d, int z, int qmax) {
  return fit::grid_kernels().error(x, w, n, float(-z), float(qmax - z), d, inv_or_zero(d));
}

// Range [lo, hi] always contains 0 (so the integer zero point represents 0 exactly); candidate
// ranges shrink it (clipping outliers) and each is refined by weighted least squares on d.
void fit_asym(const float* x, const float* w, int64_t n, int qmax, float& d_out, int& z_out) {
  float lo = 0, hi = 0;
  for (int64_t i = 0; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  d_out = 0, z_out = 0;
  if (hi == lo) return;
  // The symmetric grid (zero point at mid-range) is a candidate too, so the zero point never
  // does worse than the symmetric format of the same bits.
  const int zmid = (qmax + 1) / 2;
  const float dsym =
      fit::fit_symmetric(x, w, n, fit::IntLevels{-zmid, qmax - zmid}, fit::Fp16Round{});
  double best = asym_error(x, w, n, dsym, zmid, qmax);
  d_out = dsym, z_out = zmid;
  const float pmin = 1.0f / fit::max_stretch(qmax + 1);
  for (int s = 0; s < 12; ++s) {
    const float p = std::pow(pmin, float(s) / 11.0f);  // 1 down to pmin
    float d = round_fp16((hi - lo) * p / float(qmax));
    if (!(d > 0)) continue;
    const int z = std::clamp(int(std::nearbyint(-lo * p / d)), 0, qmax);
    for (int pass = 0; pass < 2; ++pass) {
      const double e = asym_error(x, w, n, d, z, qmax);
      if (best < 0 || e < best) best = e, d_out = d, z_out = z;
      float sums[2];  // Σ w x q, Σ w q q over the codes minus z
      fit::grid_kernels().lloyd(x, w, n, float(-z), float(qmax - z), 1.0f / d, sums);
      const double sxq = sums[0], sqq = sums[1];
      if (!(sqq > 0)) break;
      d = round_fp16(float(sxq / sqq));
      if (!(d > 0) || !std::isfinite(d)) break;
    }
  }
}

}  // namespace

template <int B, bool Asym>
void IntN<B, Asym>::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* p = static_cast<uint8_t*>(blk);
  std::memset(p, 0, block_bytes(n));
  float d;
  if constexpr (Asym) {
    int z;
    fit_asym(x, w, n, qmax_of(B), d, z);
    p[2] = uint8_t(z);
  } else {
    d = fit::fit_symmetric(x, w, n, fit::IntLevels{-(1 << (B - 1)), (1 << (B - 1)) - 1},
                           fit::Fp16Round{});
  }
  const uint16_t h = f32_to_fp16(d);
  std::memcpy(p, &h, 2);
}

namespace {
template <int B, bool Asym>
void load_params(const void* blk, float& d, int& z) {
  const auto* p = static_cast<const uint8_t*>(blk);
  uint16_t h;
  std::memcpy(&h, p, 2);
  d = fp16_to_f32(h);
  z = Asym ? p[2] : (1 << (B - 1));
}
template <int B, bool Asym>
int code_for(float x, float d, int z) {
  if constexpr (Asym) return asym_code(x, inv_or_zero(d), z, qmax_of(B));
  return nearest_int(x * inv_or_zero(d), -(1 << (B - 1)), (1 << (B - 1)) - 1) + z;
}
}  // namespace

template <int B, bool Asym>
float IntN<B, Asym>::round_value(float x, const void* blk, int64_t, int64_t) {
  float d;
  int z;
  load_params<B, Asym>(blk, d, z);
  return float(code_for<B, Asym>(x, d, z) - z) * d;
}

template <int B, bool Asym>
void IntN<B, Asym>::encode(const float* x, int64_t n, void* blk) {
  float d;
  int z;
  load_params<B, Asym>(blk, d, z);
  uint8_t* codes = static_cast<uint8_t*>(blk) + kCodeOffset<B, Asym>;
  std::memset(codes, 0, (uint64_t(n) * B + 7) / 8);
  for (int64_t i = 0; i < n; ++i) write_code<B>(codes, i, code_for<B, Asym>(x[i], d, z));
}

template <int B, bool Asym>
void IntN<B, Asym>::decode(const void* blk, int64_t n, float* y) {
  float d;
  int z;
  load_params<B, Asym>(blk, d, z);
  const uint8_t* codes = static_cast<const uint8_t*>(blk) + kCodeOffset<B, Asym>;
  for (int64_t i = 0; i < n; ++i) y[i] = float(read_int_code<B>(codes, i) - z) * d;
}

template struct IntN<8, false>;
template struct IntN<6, false>;
template struct IntN<6, true>;
template struct IntN<5, false>;
template struct IntN<5, true>;
template struct IntN<4, false>;
template struct IntN<4, true>;
template struct IntN<3, false>;
template struct IntN<3, true>;
template struct IntN<2, false>;
template struct IntN<2, true>;

}  // namespace lowbit::formats
