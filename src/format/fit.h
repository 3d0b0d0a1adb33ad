// Weighted fitting of block parameters, shared by every codec: the part of a format that chooses
// scales (and minimums) to minimise sum_i w_i (x_i - xhat_i)^2. w == nullptr means w_i = 1.
// Levels describe the value grid of the codes: uniform integers [lo, hi] or a sorted codebook.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>

#include "lowbit/half.h"

namespace lowbit::fit {

// Round half to even, the same value as std::nearbyint in the default rounding mode (a zero result
// may be +0 where nearbyint gives -0; callers take codes or products, where that cannot show),
// inline: x86-64's baseline has no roundss, so nearbyint is a libm call through the PLT in every
// scale search's innermost loop. Adding and subtracting 1.5 * 2^23 rounds any |v| < 2^22 to an
// integer in the current (nearest-even) mode; larger values take the library call.
inline constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
inline float round_even(float v) {
  return std::fabs(v) < 4194304.0f ? (v + kRoundMagic) - kRoundMagic : std::nearbyint(v);
}

// Uniform integer levels lo..hi (e.g. -8..7 for Q4_0, 0..15 for Q4_1's codes).
struct IntLevels {
  int lo, hi;
  // v may be any float; NaN never reaches here (inputs checked). The levels lie within ±2^22
  // (every format's are 8 bits at most), so the clamped value is rounded by round_even's
  // magic-number path alone: no branch, and the codecs' per-value loops vectorize.
  int nearest(float v) const {
    const float c = std::clamp(v, float(lo), float(hi));
    return int((c + kRoundMagic) - kRoundMagic);
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
// The same sums for `count` scales at once (the scale search's independent starts): out[k] (or
// sxq[k], sqq[k]) is exactly what the single-scale function gives for d[k] / id[k] — each scale's
// sum in the same lanes and order — with the vector unit's lanes across the scales instead of
// across the block, so the per-sum lane reduction is shared and no call is made per scale.
using GridErrorBatchFn = void (*)(const float* x, const float* w, int64_t n, float lo, float hi,
                                  const float* d, const float* id, int count, float* out);
using AffineErrorBatchFn = void (*)(const float* x, const float* w, int64_t n, float qmax,
                                    const float* d, const float* m, const float* id, int count,
                                    float* out);
// Uniform grids whose bounds differ per scale (the asymmetric ints' zero points): each scale k's
// error on lo[k]..hi[k] and, where sxq != nullptr, its Lloyd sums — the single functions' values.
using GridVarBatchFn = void (*)(const float* x, const float* w, int64_t n, const float* lo,
                                const float* hi, const float* d, const float* id, int count,
                                float* err, float* sxq, float* sqq);
using GridLloydBatchFn = void (*)(const float* x, const float* w, int64_t n, float lo, float hi,
                                  const float* id, int count, float* sxq, float* sqq);
using CodebookErrorBatchFn = void (*)(const float* x, const float* w, int64_t n,
                                      const float* values, const float* d, const float* id,
                                      int count, float* out);
using CodebookLloydBatchFn = void (*)(const float* x, const float* w, int64_t n,
                                      const float* values, const float* id, int count, float* sxq,
                                      float* sqq);
// fit_symmetric's whole search on the vector unit, for a uniform grid lo..hi (values ==
// nullptr) or a 16-value codebook: the starts' scales are round(xm / den[k]), k < n_starts, in
// fit_symmetric's order; round is fp16 storage (fp16) or none. Writes the scale fit_symmetric
// chooses (the same bits) and returns true, or returns false when no start is a usable scale.
// nullptr on tiers without it (fit_symmetric runs its own rounds).
using SymSearchFn = bool (*)(const float* x, const float* w, int64_t n, float lo, float hi,
                             const float* values, bool fp16, float xm, const float* den,
                             int n_starts, int lloyd_iters, float* best_d);
// fit_affine's search after its first guess, on the vector unit (one lane per start): the
// starts' factors f[s], s < starts (at most 16); scales and offsets rounded to fp16 (fp16) or
// not. best (d, m, e) holds the first guess on entry and the choice on return — fit_affine's,
// bit for bit. nullptr on tiers without it.
using AffineSearchFn = void (*)(const float* x, const float* w, int64_t n, float qmax,
                                bool nonpos_min, bool fp16, float lo, float hi, const float* f,
                                int starts, int lloyd_iters, float* best_d, float* best_m,
                                float* best_e);
struct GridKernels {
  GridErrorFn error;
  GridLloydFn lloyd;
  AffineErrorFn affine_error;
  AffineLloydFn affine_lloyd;
  CodebookErrorFn codebook_error;
  CodebookLloydFn codebook_lloyd;
  GridErrorBatchFn error_batch;
  GridLloydBatchFn lloyd_batch;
  CodebookErrorBatchFn codebook_error_batch;
  CodebookLloydBatchFn codebook_lloyd_batch;
  SymSearchFn sym_search;
  AffineSearchFn affine_search;
  AffineErrorBatchFn affine_error_batch;
  GridVarBatchFn grid_var_batch;
};
// The tier the machine runs (LOWBIT_ISA respected); defined with the kernels.
const GridKernels& grid_kernels();

inline float lane_tree16(float* a) {
  for (int h = 8; h >= 1; h /= 2) {
    for (int j = 0; j < h; ++j) a[j] += a[j + h];
  }
  return a[0];
}

// Storage rounding of a scale, as types the searches inline and the vector search recognises:
// fp16 (what most blocks store) and none (K-quants' sub-block scales, rounded later).
struct Fp16Round {
  float operator()(float v) const { return round_fp16(v); }
};
struct NoRound {
  float operator()(float v) const { return v; }
};

// The level of x on a uniform grid (the references' q).
inline float grid_q(float x, float lo, float hi, float id) {
  return round_even(std::min(std::max(x * id, lo), hi));
}

// The nearest of 16 ascending values: the index is the number of k in 1..15 for which v is
// strictly nearer values[k] than values[k - 1] (that predicate holds for a prefix of k), so
// a tie goes to the lower value — CodebookLevels::nearest's answer, without a search.
inline int codebook_index16(const float* values, float v) {
  int k = 0;
  for (int j = 1; j < 16; ++j) k += (v - values[j - 1] > values[j] - v) ? 1 : 0;
  return k;
}
inline float codebook_value16(const float* values, float v) {
  return values[codebook_index16(values, v)];
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

// sym_error for count <= 16 scales at once, through the batch sums (the same values).
template <typename Levels>
void sym_errors(const float* x, const float* w, int64_t n, const Levels& lv, const float* d,
                int count, double* out) {
  float id[16], e[16];
  for (int k = 0; k < count; ++k) id[k] = d[k] != 0 ? 1.0f / d[k] : 0.0f;
  if constexpr (kUniformGrid<Levels>) {
    grid_kernels().error_batch(x, w, n, lv.min_value(), lv.max_value(), d, id, count, e);
  } else if (is_codebook16(lv)) {
    grid_kernels().codebook_error_batch(x, w, n, codebook_data(lv), d, id, count, e);
  } else {
    for (int k = 0; k < count; ++k) out[k] = sym_error(x, w, n, lv, d[k]);
    return;
  }
  for (int k = 0; k < count; ++k) out[k] = e[k];
}

// How far below the block's absmax the best scale can lie: a coarse grid (ternary, 2-bit) is
// best fitted with the largest values clipped hard (the Lloyd-Max ternary scale of a Gaussian is
// 1.22 sigma while a 256-block's absmax is ~2.8 sigma); a fine grid hardly clips at all.
inline float max_stretch(int n_levels) {
  return n_levels <= 4 ? 3.2f : n_levels <= 8 ? 2.0f : n_levels <= 16 ? 1.5f : 1.2f;
}

// Per-start factors that depend on nothing but the grid's stretch (one of max_stretch's four
// values), made once per value: make(fmax, s) for s < kN. nullptr for any other fmax.
template <int kN, typename Make>
const float* stretch_factors(float fmax, Make make) {
  static const float kStretch[4] = {max_stretch(4), max_stretch(8), max_stretch(16),
                                    max_stretch(17)};
  static const auto tables = [&make] {
    std::array<std::array<float, kN>, 4> t{};
    for (size_t i = 0; i < 4; ++i) {
      for (int s = 0; s < kN; ++s) t[i][size_t(s)] = make(kStretch[i], s);
    }
    return t;
  }();
  for (size_t i = 0; i < 4; ++i) {
    if (kStretch[i] == fmax) return tables[i].data();
  }
  return nullptr;
}

// Best scale d for x ~ d * level: starting points map the largest-magnitude value onto either
// end of the grid, stretched over a geometric range of factors; each start is improved by Lloyd
// iterations (assign levels, weighted least-squares d, round d to storage precision with
// round_d) while the weighted error falls. Returns the stored d of the best: the first scale, in
// the order start by start and iteration by iteration, with the least error.
//
// The starts are independent, so they run in rounds: every start's first error, then every live
// start's Lloyd step and the error of its new scale, and so on, each round one batch call (the
// kernels' lanes across the scales); the scales and errors each start considers are then
// replayed in the sequential order, so the choice is the one-start-at-a-time search's, bit for bit.
//
// kernels: the tier's sums and search to use (nullptr: the machine's; tests pass each tier's).
template <typename Levels, typename RoundD>
float fit_symmetric(const float* x, const float* w, int64_t n, const Levels& lv, RoundD round_d,
                    int lloyd_iters = 2, const GridKernels* kernels = nullptr) {
  float amax = 0, xm = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), xm = x[i];
  }
  if (amax == 0) return 0.0f;
  const int n_levels = int(std::lround(lv.max_value() - lv.min_value())) + 1;
  const float fmax = max_stretch(std::min(n_levels, lv.size()));
  constexpr int kFine = 11, kCoarse = 6, kMaxStarts = 2 * (kFine + kCoarse), kMaxIters = 4;
  lloyd_iters = std::clamp(lloyd_iters, 0, kMaxIters);

  // The errors and the Lloyd sums (Σ w x q, Σ w q q) of a batch of scales.
  const GridKernels& gk = kernels ? *kernels : grid_kernels();
  auto errors = [&](const float* d, const float* id, int count, double* out) {
    float e[kMaxStarts];
    if constexpr (kUniformGrid<Levels>) {
      gk.error_batch(x, w, n, lv.min_value(), lv.max_value(), d, id, count, e);
    } else if (is_codebook16(lv)) {
      gk.codebook_error_batch(x, w, n, codebook_data(lv), d, id, count, e);
    } else {
      for (int k = 0; k < count; ++k) out[k] = sym_error(x, w, n, lv, d[k]);
      return;
    }
    for (int k = 0; k < count; ++k) out[k] = e[k];
  };
  auto lloyd = [&](const float* id, int count, double* sxq, double* sqq) {
    float a[kMaxStarts], b[kMaxStarts];
    if constexpr (kUniformGrid<Levels>) {
      gk.lloyd_batch(x, w, n, lv.min_value(), lv.max_value(), id, count, a, b);
    } else if (is_codebook16(lv)) {
      gk.codebook_lloyd_batch(x, w, n, codebook_data(lv), id, count, a, b);
    } else {
      for (int k = 0; k < count; ++k) {
        double s1 = 0, s2 = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float l = lv.value(lv.nearest(x[i] * id[k]));
          const double wi = weight(w, i);
          s1 += wi * x[i] * l;
          s2 += wi * double(l) * l;
        }
        sxq[k] = s1, sqq[k] = s2;
      }
      return;
    }
    for (int k = 0; k < count; ++k) sxq[k] = a[k], sqq[k] = b[k];
  };

  // Each start's trail: the scales it considers and their errors (-1: not a usable scale).
  float trail_d[kMaxStarts][kMaxIters + 1];
  double trail_e[kMaxStarts][kMaxIters + 1];
  bool trail_ok[kMaxStarts][kMaxIters + 1];
  int trail_len[kMaxStarts];
  float cur_d[kMaxStarts];
  double cur_e[kMaxStarts];
  int live[kMaxStarts], n_live = 0, n_starts = 0;
  float bd[kMaxStarts], bid[kMaxStarts];
  double be[kMaxStarts];
  int bs[kMaxStarts];
  auto usable = [](float d) { return d != 0 && std::isfinite(d); };

  // The starts: xm / den[k], den = a grid end times a factor — a fine linear grid around the
  // absmax (0.8 .. 1.2), then a geometric one to fmax (max_stretch's values: always tabled).
  const float* fac = stretch_factors<kFine + kCoarse>(fmax, [](float fm, int s) {
    return s < kFine ? 0.8f + 0.04f * float(s)
                     : 1.2f * std::pow(fm / 1.2f, float(s - kFine + 1) / kCoarse);
  });
  float den[kMaxStarts];
  int ns = 0;
  for (const float end : {lv.min_value(), lv.max_value()}) {
    for (int s = 0; s < kFine + kCoarse; ++s) {
      if (s >= kFine && fmax <= 1.2f) break;
      den[ns++] = end * fac[s];
    }
  }
  // The vector unit's whole search, where the tier has one (the same choice, bit for bit).
  constexpr bool kKnownRound = std::is_same_v<RoundD, Fp16Round> || std::is_same_v<RoundD, NoRound>;
  if constexpr (kKnownRound && (kUniformGrid<Levels> || std::is_same_v<Levels, CodebookLevels>)) {
    if (gk.sym_search && (kUniformGrid<Levels> || is_codebook16(lv))) {
      float d = 0;
      if (gk.sym_search(x, w, n, lv.min_value(), lv.max_value(), codebook_data(lv),
                        std::is_same_v<RoundD, Fp16Round>, xm, den, ns, lloyd_iters, &d))
        return d;
      return round_d(xm / (std::fabs(lv.min_value()) >= std::fabs(lv.max_value())
                               ? lv.min_value()
                               : lv.max_value()));
    }
  }
  // Round 0: every start's error.
  int nb = 0;
  for (; n_starts < ns; ++n_starts) {
    const int k = n_starts;
    const float d = round_d(xm / den[k]);
    trail_d[k][0] = d, trail_e[k][0] = -1, trail_len[k] = 1, cur_d[k] = d, cur_e[k] = -1;
    trail_ok[k][0] = usable(d);
    if (trail_ok[k][0]) bd[nb] = d, bid[nb] = 1.0f / d, bs[nb++] = k;
  }
  errors(bd, bid, nb, be);
  for (int j = 0; j < nb; ++j) {
    const int k = bs[j];
    trail_e[k][0] = cur_e[k] = be[j];
    if (be[j] >= 0) live[n_live++] = k;
  }
  // Lloyd rounds: a live start's step to d2 = (Σ w x q) / (Σ w q q), stopping where the scale
  // stays, is not usable, or the error does not fall.
  for (int it = 0; it < lloyd_iters && n_live > 0; ++it) {
    float lid[kMaxStarts];
    double sxq[kMaxStarts], sqq[kMaxStarts];
    for (int j = 0; j < n_live; ++j) lid[j] = 1.0f / cur_d[live[j]];
    lloyd(lid, n_live, sxq, sqq);
    nb = 0;
    int next = 0, pending[kMaxStarts], n_pending = 0;
    for (int j = 0; j < n_live; ++j) {
      const int k = live[j];
      if (!(sqq[j] > 0)) continue;
      const float d2 = round_d(float(sxq[j] / sqq[j]));
      if (d2 == cur_d[k]) continue;
      const int t = trail_len[k]++;
      trail_d[k][t] = d2, trail_e[k][t] = -1, trail_ok[k][t] = usable(d2);
      pending[n_pending++] = k;
      if (trail_ok[k][t]) bd[nb] = d2, bid[nb] = 1.0f / d2, bs[nb++] = k;
    }
    errors(bd, bid, nb, be);
    for (int j = 0; j < nb; ++j) trail_e[bs[j]][trail_len[bs[j]] - 1] = be[j];
    for (int j = 0; j < n_pending; ++j) {
      const int k = pending[j];
      const double e2 = trail_ok[k][trail_len[k] - 1] ? trail_e[k][trail_len[k] - 1] : -1.0;
      if (e2 < 0 || e2 >= cur_e[k]) continue;
      cur_d[k] = trail_d[k][trail_len[k] - 1], cur_e[k] = e2;
      live[next++] = k;
    }
    n_live = next;
  }
  // Replay in the sequential order: the first least error wins.
  float best_d = 0;
  double best_err = -1;
  for (int k = 0; k < n_starts; ++k) {
    for (int t = 0; t < trail_len[k]; ++t) {
      const double e = trail_e[k][t];
      if (trail_ok[k][t] && (best_err < 0 || e < best_err)) best_err = e, best_d = trail_d[k][t];
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
                  RoundD round_d, RoundM round_m, int starts = 14, int lloyd_iters = 3,
                  const GridKernels* kernels = nullptr) {
  const GridKernels& gk = kernels ? *kernels : grid_kernels();
  auto err_at = [&](float d, float m) {  // as affine_error, on these kernels
    return double(gk.affine_error(x, w, n, float(qmax), d, m, d > 0 ? 1.0f / d : 0.0f));
  };
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; ++i) lo = std::min(lo, x[i]), hi = std::max(hi, x[i]);
  if (nonpos_min) lo = std::min(lo, 0.0f);
  Affine best{std::max(0.0f, round_d((hi - lo) / float(qmax))), round_m(lo)};
  double best_err = err_at(best.d, best.m);
  if (hi == lo) return best;
  const float fmax = max_stretch(qmax + 1);
  // The factors of the default 14 starts, made once per fmax (one of max_stretch's values).
  constexpr int kStarts = 14;
  const float* fac =
      starts != kStarts ? nullptr : stretch_factors<kStarts>(fmax, [](float fm, int s) {
        return 0.85f * std::pow(fm / 0.85f, float(s) / float(kStarts - 1));
      });
  // The vector unit's search, where the tier has one and both roundings are fp16 or none.
  constexpr bool kFp16 = std::is_same_v<RoundD, Fp16Round> && std::is_same_v<RoundM, Fp16Round>;
  constexpr bool kNone = std::is_same_v<RoundD, NoRound> && std::is_same_v<RoundM, NoRound>;
  if constexpr (kFp16 || kNone) {
    if (gk.affine_search && fac) {
      float bd = best.d, bm = best.m, be = float(best_err);
      gk.affine_search(x, w, n, float(qmax), nonpos_min, kFp16, lo, hi, fac, starts, lloyd_iters,
                       &bd, &bm, &be);
      return {bd, bm};
    }
  }
  for (int s = 0; s < starts; ++s) {
    const float f = fac ? fac[s] : 0.85f * std::pow(fmax / 0.85f, float(s) / float(starts - 1));
    const float span = (hi - lo) / f, mid = 0.5f * (hi + lo);
    float d = round_d(span / float(qmax)),
          m = round_m(std::min(mid - 0.5f * span, nonpos_min ? 0.0f : mid));
    if (!(d > 0)) continue;
    double e = err_at(d, m);
    if (e < best_err) best_err = e, best = {d, m};
    for (int it = 0; it < lloyd_iters; ++it) {
      const float id = 1.0f / d;
      float sums[5];  // Σ w, Σ w q, Σ w q², Σ w x, Σ w x q
      gk.affine_lloyd(x, w, n, float(qmax), m, id, sums);
      const double sw = sums[0], sq = sums[1], sqq = sums[2], sx = sums[3], sxq = sums[4];
      const double det = sw * sqq - sq * sq;
      if (!(sw > 0) || !(det > 1e-12 * sw * sqq)) break;
      double d2 = (sw * sxq - sq * sx) / det, m2 = (sqq * sx - sq * sxq) / det;
      if (nonpos_min && m2 > 0) m2 = 0, d2 = sxq / sqq;
      const float dc = round_d(float(d2)), mc = round_m(float(m2));
      if (!(dc > 0) || !std::isfinite(dc) || !std::isfinite(mc)) break;
      const double e2 = err_at(dc, mc);
      if (e2 >= e) break;
      d = dc, m = mc, e = e2;
      if (e < best_err) best_err = e, best = {d, m};
    }
  }
  return best;
}

}  // namespace lowbit::fit
