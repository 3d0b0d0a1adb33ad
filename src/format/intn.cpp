// Codecs of the grouped integer formats (int2..int8, symmetric and with zero point).
#include "format/intn.h"

#include <algorithm>
#include <cmath>

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
  // Twelve starts (ranges shrunk by p = 1 .. 1 / fmax), each refined by one least-squares step on
  // d; evaluated in two batches (the starts, then the steps), chosen in the starts' order.
  constexpr int kStarts = 12;
  const float* pw = fit::stretch_factors<kStarts>(fit::max_stretch(qmax + 1), [](float fm, int s) {
    return std::pow(1.0f / fm, float(s) / 11.0f);  // 1 down to 1 / fmax
  });
  float d0[kStarts], id0[kStarts], lo0[kStarts], hi0[kStarts], e0[kStarts], sxq[kStarts],
      sqq[kStarts];
  int z0[kStarts], nv = 0;
  for (int s = 0; s < kStarts; ++s) {
    const float p = pw[s];
    const float d = round_fp16((hi - lo) * p / float(qmax));
    if (!(d > 0)) continue;
    const int z = std::clamp(int(std::nearbyint(-lo * p / d)), 0, qmax);
    d0[nv] = d, id0[nv] = 1.0f / d, lo0[nv] = float(-z), hi0[nv] = float(qmax - z), z0[nv++] = z;
  }
  const fit::GridKernels& gk = fit::grid_kernels();
  gk.grid_var_batch(x, w, n, lo0, hi0, d0, id0, nv, e0, sxq, sqq);
  float d1[kStarts], id1[kStarts], lo1[kStarts], hi1[kStarts], e1[kStarts];
  int from[kStarts], n1 = 0;
  for (int j = 0; j < nv; ++j) {
    if (!(double(sqq[j]) > 0)) continue;
    const float d = round_fp16(float(double(sxq[j]) / double(sqq[j])));
    if (!(d > 0) || !std::isfinite(d)) continue;
    d1[n1] = d, id1[n1] = 1.0f / d, lo1[n1] = lo0[j], hi1[n1] = hi0[j], from[n1++] = j;
  }
  gk.grid_var_batch(x, w, n, lo1, hi1, d1, id1, n1, e1, nullptr, nullptr);
  auto consider = [&](double e, float d, int z) {
    if (best < 0 || e < best) best = e, d_out = d, z_out = z;
  };
  for (int j = 0, k = 0; j < nv; ++j) {
    consider(e0[j], d0[j], z0[j]);
    if (k < n1 && from[k] == j) consider(e1[k], d1[k], z0[j]), ++k;
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

// ---- tern_gN: int2's layout, codes limited to -1..1 (the fit searches the ternary grid) -----

void Tern::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* p = static_cast<uint8_t*>(blk);
  std::memset(p, 0, block_bytes(n));
  const float d = fit::fit_symmetric(x, w, n, fit::IntLevels{-1, 1}, fit::Fp16Round{});
  const uint16_t h = f32_to_fp16(d);
  std::memcpy(p, &h, 2);
}

namespace {
int tern_code(float x, const void* blk) {
  float d;
  int z;
  load_params<2, false>(blk, d, z);
  return nearest_int(x * inv_or_zero(d), -1, 1) + z;
}
}  // namespace

float Tern::round_value(float x, const void* blk, int64_t, int64_t) {
  float d;
  int z;
  load_params<2, false>(blk, d, z);
  return float(tern_code(x, blk) - z) * d;
}

void Tern::encode(const float* x, int64_t n, void* blk) {
  uint8_t* codes = static_cast<uint8_t*>(blk) + kCodeOffset<2, false>;
  std::memset(codes, 0, (uint64_t(n) * 2 + 7) / 8);
  for (int64_t i = 0; i < n; ++i) write_code<2>(codes, i, tern_code(x[i], blk));
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
