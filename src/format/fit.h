// Weighted fitting of block parameters, shared by every codec: the part of a format that chooses
// scales (and minimums) to minimise sum_i w_i (x_i - xhat_i)^2. w == nullptr means w_i = 1.
// Levels describe the value grid of the codes: uniform integers [lo, hi] or a sorted codebook.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>

namespace lowbit::fit {

// Round half to even, the same value as std::nearbyint in the default rounding mode (a zero result
// may be +0 where nearbyint gives -0; callers take codes or products, where that cannot show),
// inline: x86-64's baseline has no roundss, so nearbyint is a libm call through the PLT in every
// scale search's innermost loop. Adding and subtracting 1.5 * 2^23 rounds any |v| < 2^22 to an
// integer in the current (nearest-even) mode; larger values take the library call.
inline float round_even(float v) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return std::fabs(v) < 4194304.0f ? (v + kMagic) - kMagic : std::nearbyint(v);
}

// Uniform integer levels lo..hi (e.g. -8..7 for Q4_0, 0..15 for Q4_1's codes).
struct IntLevels {
  int lo, hi;
  int nearest(float v) const {  // v may be any float; NaN never reaches here (inputs checked)
    const float c = std::clamp(v, float(lo), float(hi));
    return int(round_even(c));
  }
  float value(int k) const { return float(k); }
  int size() const { return hi - lo + 1; }
  float min_value() const { return float(lo); }
  float max_value() const { return float(hi); }
};

// A sorted codebook of values (IQ4_NL, NF4). Codes are indices.
struct CodebookLevels {
  std::span<const float> values;  // ascending
  int nearest(float v) const {
    const auto it = std::lower_bound(values.begin(), values.end(), v);
    if (it == values.begin()) return 0;
    if (it == values.end()) return int(values.size()) - 1;
    const int k = int(it - values.begin());
    return (v - values[k - 1] <= values[k] - v) ? k - 1 : k;  // ties go to the lower value
  }
  float value(int k) const { return values[k]; }
  int size() const { return int(values.size()); }
  float min_value() const { return values.front(); }
  float max_value() const { return values.back(); }
};

// A codebook of exactly 16 values takes the codebook kernels; other levels, the scalar loops.
template <typename Levels>
bool is_codebook16(const Levels& lv) {
  if constexpr (std::is_same_v<Levels, CodebookLevels>) return lv.values.size() == 16;
  return false;
}
template <typename Levels>
const float* codebook_data(const Levels& lv) {
  if constexpr (std::is_same_v<Levels, CodebookLevels>) return lv.values.data();
  return nullptr;
}

inline float weight(const float* w, int64_t i) {
  return w ? w[i] : 1.0f;
}

// ---- Uniform integer grids: the scale search's sums, on the machine's vector unit ----
// For a scale d (id = 1 / d) and levels lo..hi, q_i = round_even(min(max(x_i id, lo), hi)) and
// r_i = x_i - d q_i. grid error: Σ w_i (r_i r_i); grid Lloyd sums: Σ (w_i x_i) q_i and
// Σ (w_i q_i) q_i (w == nullptr: w_i = 1, no product). In float, in a fixed order so that every
// tier gives the same bits: 16 lanes (lane j adds the terms i ≡ j mod 16 in order), then the
// lanes pairwise, j + 8, j + 4, j + 2, j + 1 (lane_tree16). A search evaluates thousands of
// these short sums per block; in double, one chain of dependent additions each, they were the
// quantizers' whole cost.
using GridErrorFn = float (*)(const float* x, const float* w, int64_t n, float lo, float hi,
                              float d, float id);
using GridLloydFn = void (*)(const float* x, const float* w, int64_t n, float lo, float hi,
                             float id, float* sums /* [2]: Σ w x q, Σ w q q */);
// Affine grids (x ~ d q + m, q in 0..qmax): q_i = round_even(min(max((x_i - m) id, 0), qmax)),
// r_i = x_i - (d q_i + m); the error Σ w_i (r_i r_i) in the same lanes.
using AffineErrorFn = float (*)(const float* x, const float* w, int64_t n, float qmax, float d,
                                float m, float id);
// 16-value codebooks (IQ4_NL, NF4), values ascending: q_i = the nearest value to x_i id (ties to
// the lower one, as CodebookLevels::nearest), counted as codebook_value16 counts; the error and
// Lloyd sums as for the uniform grids.
using CodebookErrorFn = float (*)(const float* x, const float* w, int64_t n, const float* values,
                                  float d, float id);
using CodebookLloydFn = void (*)(const float* x, const float* w, int64_t n, const float* values,
                                 float id, float* sums);
// The affine Lloyd sums, same q: Σ w, Σ w q, Σ (w q) q, Σ w x, Σ (w x) q (w == nullptr: 1).
using AffineLloydFn = void (*)(const float* x, const float* w, int64_t n, float qmax, float m,
                               float id, float* sums /* [5] */);
struct GridKernels {
  GridErrorFn error;
  GridLloydFn lloyd;
  AffineErrorFn affine_error;
  AffineLloydFn affine_lloyd;
  CodebookErrorFn codebook_error;
  CodebookLloydFn codebook_lloyd;
};
// The tier the machine runs (LOWBIT_ISA respected); defined with the kernels.
const GridKernels& grid_kernels();

inline float lane_tree16(float* a) {
  for (int h = 8; h >= 1; h /= 2) {
    for (int j = 0; j < h; ++j) a[j] += a[j + h];
  }
  return a[0];
}

// The level of x on a uniform grid (the references' q).
inline float grid_q(float x, float lo, float hi, float id) {
  return round_even(std::min(std::max(x * id, lo), hi));
}

// The nearest of 16 ascending values: the index is the number of k in 1..15 for which v is
// strictly nearer values[k] than values[k - 1] (that predicate holds for a prefix of k), so
// a tie goes to the lower value — CodebookLevels::nearest's answer, without a search.
inline float codebook_value16(const float* values, float v) {
  int k = 0;
  for (int j = 1; j < 16; ++j) k += (v - values[j - 1] > values[j] - v) ? 1 : 0;
  return values[k];
}

template <typename Levels>
inline constexpr bool kUniformGrid = std::is_same_v<Levels, IntLevels>;

// Weighted squared error of x against d * level(nearest(x / d)).
template <typename Levels>
double sym_error(const float* x, const float* w, int64_t n, const Levels& lv, float d) {
  const float id = d != 0 ? 1.0f / d : 0.0f;
  if constexpr (kUniformGrid<Levels>) {
    return grid_kernels().error(x, w, n, lv.min_value(), lv.max_value(), d, id);
  } else if (is_codebook16(lv)) {
    return grid_kernels().codebook_error(x, w, n, codebook_data(lv), d, id);
  } else {
    double err = 0;
    for (int64_t i = 0; i < n; ++i) {
      const float r = x[i] - d * lv.value(lv.nearest(x[i] * id));
      err += double(weight(w, i)) * double(r) * double(r);
    }
    return err;
  }
}

// How far below the block's absmax the best scale can lie: a coarse grid (ternary, 2-bit) is
// best fitted with the largest values clipped hard (the Lloyd-Max ternary scale of a Gaussian is
// 1.22 sigma while a 256-block's absmax is ~2.8 sigma); a fine grid hardly clips at all.
inline float max_stretch(int n_levels) {
  return n_levels <= 4 ? 3.2f : n_levels <= 8 ? 2.0f : n_levels <= 16 ? 1.5f : 1.2f;
}

// Best scale d for x ~ d * level: starting points map the largest-magnitude value onto either
// end of the grid, stretched over a geometric range of factors; each start is improved by Lloyd
// iterations (assign levels, weighted least-squares d, round d to storage precision with
// round_d) while the weighted error falls. Returns the stored d of the best.
template <typename Levels, typename RoundD>
float fit_symmetric(const float* x, const float* w, int64_t n, const Levels& lv, RoundD round_d,
                    int lloyd_iters = 2) {
  float amax = 0, xm = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), xm = x[i];
  }
  if (amax == 0) return 0.0f;
  const int n_levels = int(std::lround(lv.max_value() - lv.min_value())) + 1;
  const float fmax = max_stretch(std::min(n_levels, lv.size()));
  float best_d = 0;
  double best_err = -1;
  auto consider = [&](float d) {
    if (d == 0 || !std::isfinite(d)) return -1.0;
    const double e = sym_error(x, w, n, lv, d);
    if (best_err < 0 || e < best_err) best_err = e, best_d = d;
    return e;
  };
  // Starts: a fine linear grid around the absmax (0.8 .. 1.2), then a geometric one to fmax.
  constexpr int kFine = 11, kCoarse = 6;
  for (const float end : {lv.min_value(), lv.max_value()}) {
    for (int s = 0; s < kFine + kCoarse; ++s) {
      const float f = s < kFine ? 0.8f + 0.04f * float(s)
                                : 1.2f * std::pow(fmax / 1.2f, float(s - kFine + 1) / kCoarse);
      if (s >= kFine && fmax <= 1.2f) break;
      float d = round_d(xm / (end * f));
      double e = consider(d);
      for (int it = 0; it < lloyd_iters && e >= 0; ++it) {
        double sxl = 0, sll = 0;
        const float id = 1.0f / d;
        if constexpr (kUniformGrid<Levels>) {
          float sums[2];
          grid_kernels().lloyd(x, w, n, lv.min_value(), lv.max_value(), id, sums);
          sxl = sums[0], sll = sums[1];
        } else if (is_codebook16(lv)) {
          float sums[2];
          grid_kernels().codebook_lloyd(x, w, n, codebook_data(lv), id, sums);
          sxl = sums[0], sll = sums[1];
        } else {
          for (int64_t i = 0; i < n; ++i) {
            const float l = lv.value(lv.nearest(x[i] * id));
            const double wi = weight(w, i);
            sxl += wi * x[i] * l;
            sll += wi * double(l) * l;
          }
        }
        if (!(sll > 0)) break;
        const float d2 = round_d(float(sxl / sll));
        if (d2 == d) break;
        const double e2 = consider(d2);
        if (e2 < 0 || e2 >= e) break;
        d = d2, e = e2;
      }
    }
  }
  // No finite stored scale reaches this block (an fp16 scale would overflow): return the
  // overflowing one, so the block decodes to Inf and the caller reports the range error rather
  // than silently writing zeros.
  if (best_err < 0)
    return round_d(xm / (std::fabs(lv.min_value()) >= std::fabs(lv.max_value()) ? lv.min_value()
                                                                                : lv.max_value()));
  return best_d;
}

// Affine fit x ~ d * q + m with integer q in [0, qmax]. nonpos_min forces m <= 0 (K-quants store
// -m as an unsigned multiple of a positive scale). round_d/round_m give storage precision.
struct Affine {
  float d = 0, m = 0;
};

inline double affine_error(const float* x, const float* w, int64_t n, int qmax, float d, float m) {
  const float id = d > 0 ? 1.0f / d : 0.0f;
  return grid_kernels().affine_error(x, w, n, float(qmax), d, m, id);
}

// Affine fit: starting ranges shrink [lo, hi] around its centre by a geometric range of factors
// (coarse grids clip more, see max_stretch); each start is improved by Lloyd iterations (assign
// codes, solve the 2x2 weighted least squares for (d, m), round to storage precision).
template <typename RoundD, typename RoundM>
Affine fit_affine(const float* x, const float* w, int64_t n, int qmax, bool nonpos_min,
                  RoundD round_d, RoundM round_m, int starts = 14, int lloyd_iters = 3) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (nonpos_min) lo = std::min(lo, 0.0f);
  Affine best{std::max(0.0f, round_d((hi - lo) / float(qmax))), round_m(lo)};
  double best_err = affine_error(x, w, n, qmax, best.d, best.m);
  if (hi == lo) return best;
  const float fmax = max_stretch(qmax + 1);
  for (int s = 0; s < starts; ++s) {
    const float f = 0.85f * std::pow(fmax / 0.85f, float(s) / float(starts - 1));
    const float span = (hi - lo) / f, mid = 0.5f * (hi + lo);
    float d = round_d(span / float(qmax)),
          m = round_m(std::min(mid - 0.5f * span, nonpos_min ? 0.0f : mid));
    if (!(d > 0)) continue;
    double e = affine_error(x, w, n, qmax, d, m);
    if (e < best_err) best_err = e, best = {d, m};
    for (int it = 0; it < lloyd_iters; ++it) {
      const float id = 1.0f / d;
      float sums[5];  // Σ w, Σ w q, Σ w q², Σ w x, Σ w x q
      grid_kernels().affine_lloyd(x, w, n, float(qmax), m, id, sums);
      const double sw = sums[0], sq = sums[1], sqq = sums[2], sx = sums[3], sxq = sums[4];
      const double det = sw * sqq - sq * sq;
      if (!(sw > 0) || !(det > 1e-12 * sw * sqq)) break;
      double d2 = (sw * sxq - sq * sx) / det, m2 = (sqq * sx - sq * sxq) / det;
      if (nonpos_min && m2 > 0) m2 = 0, d2 = sxq / sqq;
      const float dc = round_d(float(d2)), mc = round_m(float(m2));
      if (!(dc > 0) || !std::isfinite(dc) || !std::isfinite(mc)) break;
      const double e2 = affine_error(x, w, n, qmax, dc, mc);
      if (e2 >= e) break;
      d = dc, m = mc, e = e2;
      if (e < best_err) best_err = e, best = {d, m};
    }
  }
  return best;
}

inline float identity(float v) {
  return v;
}

}  // namespace lowbit::fit
