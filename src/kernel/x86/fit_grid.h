// The quantizers' scale-search sums (format/fit.h: uniform, affine and 16-value codebook grids,
// errors and Lloyd sums) on the tier's vectors, in the references' order (kernel/ref/grid_ref.h):
// 16 lanes, lane j summing the terms i ≡ j mod 16 (one 16-lane vector, or two 8-lane ones), then
// fit::lane_tree16. Every operation is the reference's, unfused (mul, then sub; the build does
// not contract), so the bits match. Ops provides: F, kLanes (8 or 16), zero, load, load_partial,
// mul, sub, add, min, max, round_even, keep_first, set1, store, select_gt (1.0 where a > b, else
// 0) and lookup16 (the value of a 16-entry table at each lane's index, an integral float 0..15).
#pragma once

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "format/fit.h"
#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

// kS sums at once: term(xv, wv, t) fills the kS term vectors of 16 (or 8) values; lanes past n
// are zeroed. out[k] = lane_tree16 of sum k's lanes.
template <typename Ops, int kS, typename Term>
void grid_lanes(const float* x, const float* w, int64_t n, Term term, float* out) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes, kV = 16 / kL;
  static_assert(kV * kL == 16, "16 lanes in one or two vectors");
  F a[kS][kV];
  for (int s = 0; s < kS; ++s) {
    for (int v = 0; v < kV; ++v) a[s][v] = Ops::zero();
  }
  for (int64_t i = 0; i < n; i += 16) {
    LOWBIT_UNROLL for (int v = 0; v < kV; ++v) {
      const int64_t k = i + v * kL;
      if (k >= n) break;
      const int m = int(std::min<int64_t>(kL, n - k));
      const F xv = m == kL ? Ops::load(x + k) : Ops::load_partial(x + k, m);
      const F wv = !w ? Ops::zero() : m == kL ? Ops::load(w + k) : Ops::load_partial(w + k, m);
      F t[kS];
      term(xv, wv, t);
      LOWBIT_UNROLL for (int s = 0; s < kS; ++s) {
        a[s][v] = Ops::add(a[s][v], m < kL ? Ops::keep_first(t[s], m) : t[s]);
      }
    }
  }
  for (int s = 0; s < kS; ++s) {
    alignas(64) float lanes[16];
    for (int v = 0; v < kV; ++v) Ops::store(lanes + v * kL, a[s][v]);
    out[s] = fit::lane_tree16(lanes);
  }
}

// Level of each lane on a uniform grid lo..hi: round_even(min(max(v, lo), hi)).
template <typename Ops>
typename Ops::F clamp_round(typename Ops::F v, typename Ops::F lo, typename Ops::F hi) {
  return Ops::round_even(Ops::min(Ops::max(v, lo), hi));
}

// A 16-value codebook cut into 32 equal cells from values[0] to values[15] (the ends' cells
// reaching out to ±inf), for the 16-lane codebook_q. Where no cell holds more than one of the
// predicates' switch points (NF4's and IQ4_NL's are 1.3 to 1.6 cells apart), cell c lists the
// count kmin at its lower end and the two values either side of the one switch it may hold:
// the level of v is lo[c], or hi[c] where v - lo[c] > hi[c] - v — the reference's predicate at
// k = kmin + 1, on the same floats. The counts are taken a thousandth of a cell beyond each end,
// far more than the rounding of the cell index moves an end. ok is false for a codebook whose
// switches come closer (codebook_q then searches).
struct CodebookCells {
  alignas(64) float lo[32], hi[32];
  float scale = 0, offset = 0;
  bool ok = false;

  explicit CodebookCells(const float* values) {
    const float span = values[15] - values[0];
    if (!(span > 0) || !std::isfinite(span)) return;
    for (int j = 1; j < 16; ++j) {
      if (!(values[j] > values[j - 1])) return;
    }
    const float width = span / 32.0f, margin = width * 1e-3f;
    const float inf = std::numeric_limits<float>::infinity();
    scale = 32.0f / span, offset = -values[0] * scale;
    for (int c = 0; c < 32; ++c) {
      const float l = c == 0 ? -inf : values[0] + float(c) * width - margin;
      const float h = c == 31 ? inf : values[0] + float(c + 1) * width + margin;
      const int kmin = fit::codebook_index16(values, l), kmax = fit::codebook_index16(values, h);
      if (kmax > kmin + 1) return;
      lo[c] = values[kmin], hi[c] = values[std::min(kmin + 1, 15)];
    }
    ok = true;
  }
};

// What codebook_q needs of a codebook: its values, and on 16 lanes its cells, made once per
// thread and codebook (found by its values) and kept for the thread's life, so a Book's cells
// never move while another codebook is in use. Past kMaxBooks codebooks in one thread (only
// tests make more than two), codebook_q searches instead.
template <typename Ops>
struct Book {
  static constexpr size_t kMaxBooks = 16;
  const float* values;
  const CodebookCells* cells = nullptr;
  explicit Book(const float* v) : values(v) {
    if constexpr (Ops::kLanes == 16) {
      if (v == nullptr) return;
      struct Entry {
        float key[16];
        CodebookCells cells;
      };
      thread_local std::vector<std::unique_ptr<Entry>> books;
      for (const auto& e : books) {
        if (std::memcmp(e->key, v, sizeof e->key) == 0) {
          cells = &e->cells;
          return;
        }
      }
      if (books.size() == kMaxBooks) return;
      books.push_back(std::unique_ptr<Entry>(new Entry{{}, CodebookCells(v)}));
      std::memcpy(books.back()->key, v, sizeof books.back()->key);
      cells = &books.back()->cells;
    }
  }
};

// codebook_value16 on vectors. 16 lanes: from the cell of each lane (CodebookCells): an index
// (one multiply-add, clamped), two two-table lookups, and the reference's predicate once. A
// codebook without cells, by binary search: the predicate holds for a prefix of k (in float
// too: rounding is monotonic, so v - values[k - 1] > values[k] - v for some k implies it for
// every smaller k), so four steps of "does it hold at k + step" find it, each step two table
// lookups (vpermps). 8 lanes: the count of k whose predicate holds, then a table lookup.
// NF4, one core, 2-layer TinyLlama synth (`lowbit quantize --type nf4 --method rtn -t 1`): the
// cells against the binary search, same run: see docs/performance.md.
template <typename Ops>
typename Ops::F codebook_q(typename Ops::F v, const Book<Ops>& book) {
  using F = typename Ops::F;
  const float* values = book.values;
  if constexpr (Ops::kLanes == 16) {
    if (book.cells != nullptr && book.cells->ok) {
      const CodebookCells& cb = *book.cells;
      const F t = _mm512_min_ps(
          _mm512_max_ps(_mm512_fmadd_ps(v, _mm512_set1_ps(cb.scale), _mm512_set1_ps(cb.offset)),
                        _mm512_setzero_ps()),
          _mm512_set1_ps(31.0f));
      const __m512i c = _mm512_cvttps_epi32(t);
      const F lo = _mm512_permutex2var_ps(_mm512_load_ps(cb.lo), c, _mm512_load_ps(cb.lo + 16));
      const F hi = _mm512_permutex2var_ps(_mm512_load_ps(cb.hi), c, _mm512_load_ps(cb.hi + 16));
      return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(Ops::sub(v, lo), Ops::sub(hi, v), _CMP_GT_OQ),
                                  lo, hi);
    }
    const F table = _mm512_loadu_ps(values);
    __m512i k = _mm512_setzero_si512();
    LOWBIT_UNROLL for (int step = 8; step >= 1; step /= 2) {
      const __m512i j = _mm512_add_epi32(k, _mm512_set1_epi32(step));
      const F below = Ops::sub(
                  v, _mm512_permutexvar_ps(_mm512_sub_epi32(j, _mm512_set1_epi32(1)), table)),
              above = Ops::sub(_mm512_permutexvar_ps(j, table), v);
      k = _mm512_mask_mov_epi32(k, _mm512_cmp_ps_mask(below, above, _CMP_GT_OQ), j);
    }
    return _mm512_permutexvar_ps(k, table);
  }
  F k = Ops::zero();
  const F one = Ops::set1(1.0f);
  LOWBIT_UNROLL for (int j = 1; j < 16; ++j) {
    const F below = Ops::sub(v, Ops::set1(values[j - 1])),
            above = Ops::sub(Ops::set1(values[j]), v);
    k = Ops::add(k, Ops::select_gt(below, above, one));
  }
  return Ops::lookup16(k, values);
}

// Σ w (x - xhat(x))², xhat the reconstruction of each lane.
template <typename Ops, typename Recon>
float sq_error(const float* x, const float* w, int64_t n, Recon xhat) {
  using F = typename Ops::F;
  float e;
  grid_lanes<Ops, 1>(
      x, w, n,
      [&](F xv, F wv, F* t) {
        const F r = Ops::sub(xv, xhat(xv));
        const F rr = Ops::mul(r, r);
        t[0] = w ? Ops::mul(wv, rr) : rr;
      },
      &e);
  return e;
}

// The symmetric Lloyd sums Σ (w x) q and Σ (w q) q for the level q(x) of each lane.
template <typename Ops, typename Level>
void lloyd2(const float* x, const float* w, int64_t n, Level level, float* sums) {
  using F = typename Ops::F;
  grid_lanes<Ops, 2>(
      x, w, n,
      [&](F xv, F wv, F* t) {
        const F q = level(xv);
        t[0] = Ops::mul(w ? Ops::mul(wv, xv) : xv, q);
        t[1] = Ops::mul(w ? Ops::mul(wv, q) : q, q);
      },
      sums);
}

template <typename Ops>
float grid_error_x86(const float* x, const float* w, int64_t n, float lo, float hi, float d,
                     float id) {
  using F = typename Ops::F;
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi), vd = Ops::set1(d), vid = Ops::set1(id);
  return sq_error<Ops>(
      x, w, n, [&](F xv) { return Ops::mul(vd, clamp_round<Ops>(Ops::mul(xv, vid), vlo, vhi)); });
}

template <typename Ops>
void grid_lloyd_x86(const float* x, const float* w, int64_t n, float lo, float hi, float id,
                    float* sums) {
  using F = typename Ops::F;
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi), vid = Ops::set1(id);
  lloyd2<Ops>(
      x, w, n, [&](F xv) { return clamp_round<Ops>(Ops::mul(xv, vid), vlo, vhi); }, sums);
}

template <typename Ops>
float affine_error_x86(const float* x, const float* w, int64_t n, float qmax, float d, float m,
                       float id) {
  using F = typename Ops::F;
  const F vq = Ops::set1(qmax), vd = Ops::set1(d), vm = Ops::set1(m), vid = Ops::set1(id);
  return sq_error<Ops>(x, w, n, [&](F xv) {
    const F q = clamp_round<Ops>(Ops::mul(Ops::sub(xv, vm), vid), Ops::zero(), vq);
    return Ops::add(Ops::mul(vd, q), vm);
  });
}

template <typename Ops>
void affine_lloyd_x86(const float* x, const float* w, int64_t n, float qmax, float m, float id,
                      float* sums) {
  using F = typename Ops::F;
  const F vq = Ops::set1(qmax), vm = Ops::set1(m), vid = Ops::set1(id), one = Ops::set1(1.0f);
  grid_lanes<Ops, 5>(
      x, w, n,
      [&](F xv, F wv, F* t) {
        const F q = clamp_round<Ops>(Ops::mul(Ops::sub(xv, vm), vid), Ops::zero(), vq);
        const F wi = w ? wv : one;
        t[0] = wi;
        t[1] = Ops::mul(wi, q);
        t[2] = Ops::mul(Ops::mul(wi, q), q);
        t[3] = Ops::mul(wi, xv);
        t[4] = Ops::mul(Ops::mul(wi, xv), q);
      },
      sums);
}

template <typename Ops>
float codebook_error_x86(const float* x, const float* w, int64_t n, const float* values, float d,
                         float id) {
  using F = typename Ops::F;
  const F vd = Ops::set1(d), vid = Ops::set1(id);
  const Book<Ops> book(values);
  return sq_error<Ops>(
      x, w, n, [&](F xv) { return Ops::mul(vd, codebook_q<Ops>(Ops::mul(xv, vid), book)); });
}

template <typename Ops>
void codebook_lloyd_x86(const float* x, const float* w, int64_t n, const float* values, float id,
                        float* sums) {
  using F = typename Ops::F;
  const F vid = Ops::set1(id);
  const Book<Ops> book(values);
  lloyd2<Ops>(
      x, w, n, [&](F xv) { return codebook_q<Ops>(Ops::mul(xv, vid), book); }, sums);
}

// ---- Batches of scales (fit::GridErrorBatchFn ...): the lanes across the scales ----
// kS sums for m <= kLanes scales at once: for each scale (lane), lane sum j = 0..15 adds the terms
// i ≡ j mod 16 in order, then lane_tree16's pairing runs on whole vectors — every scale's sum is
// the single function's, operation for operation. term(xb, wb, t) fills the kS term vectors from
// x_i and w_i broadcast.
template <typename Ops, int kS, typename Term>
void scale_lanes(const float* x, const float* w, int64_t n, Term term, float* const* out, int m) {
  using F = typename Ops::F;
  // One lane sum at a time (kS accumulators live, whatever kS): lane j's terms in order.
  F lanes[kS][16];
  for (int j = 0; j < 16; ++j) {
    F a[kS];
    LOWBIT_UNROLL for (int s = 0; s < kS; ++s) a[s] = Ops::zero();
    for (int64_t i = j; i < n; i += 16) {
      F t[kS];
      term(Ops::set1(x[i]), w ? Ops::set1(w[i]) : Ops::zero(), t);
      LOWBIT_UNROLL for (int s = 0; s < kS; ++s) a[s] = Ops::add(a[s], t[s]);
    }
    LOWBIT_UNROLL for (int s = 0; s < kS; ++s) lanes[s][j] = a[s];
  }
  for (int h = 8; h >= 1; h /= 2) {
    for (int j = 0; j < h; ++j) {
      for (int s = 0; s < kS; ++s) lanes[s][j] = Ops::add(lanes[s][j], lanes[s][j + h]);
    }
  }
  for (int s = 0; s < kS; ++s) {
    alignas(64) float buf[Ops::kLanes];
    Ops::store(buf, lanes[s][0]);
    for (int k = 0; k < m; ++k) out[s][k] = buf[k];
  }
}

// The scales c .. c + m of a batch as vectors (lanes past m zero: harmless, never stored).
template <typename Ops>
typename Ops::F scale_vec(const float* v, int c, int count) {
  const int m = std::min(Ops::kLanes, count - c);
  return m == Ops::kLanes ? Ops::load(v + c) : Ops::load_partial(v + c, m);
}

// The symmetric grids' and codebooks' sums per scale (lane) d: out[0] = Σ w (x − d q)², and for
// kS = 3 also out[1] = Σ w x q, out[2] = Σ w q² (a Lloyd step's), q = level(x) (the codes, with
// the lane's 1/d folded into level).
template <typename Ops, int kS, typename Level>
void sym_lanes(const float* x, const float* w, int64_t n, typename Ops::F d, Level level,
               float* const* out, int m) {
  using F = typename Ops::F;
  static_assert(kS == 1 || kS == 3);
  scale_lanes<Ops, kS>(
      x, w, n,
      [&](F xb, F wb, F* t) {
        const F q = level(xb);
        const F r = Ops::sub(xb, Ops::mul(d, q));
        const F rr = Ops::mul(r, r);
        t[0] = w ? Ops::mul(wb, rr) : rr;
        if constexpr (kS == 3) {
          t[1] = Ops::mul(w ? Ops::mul(wb, xb) : xb, q);
          t[2] = Ops::mul(w ? Ops::mul(wb, q) : q, q);
        }
      },
      out, m);
}

template <typename Ops>
void grid_error_batch_x86(const float* x, const float* w, int64_t n, float lo, float hi,
                          const float* d, const float* id, int count, float* out) {
  using F = typename Ops::F;
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi);
  for (int c = 0; c < count; c += Ops::kLanes) {
    const F vd = scale_vec<Ops>(d, c, count), vid = scale_vec<Ops>(id, c, count);
    float* o[1] = {out + c};
    sym_lanes<Ops, 1>(
        x, w, n, vd, [&](F xb) { return clamp_round<Ops>(Ops::mul(xb, vid), vlo, vhi); }, o,
        std::min(Ops::kLanes, count - c));
  }
}

template <typename Ops>
void affine_error_batch_x86(const float* x, const float* w, int64_t n, float qmax, const float* d,
                            const float* m, const float* id, int count, float* out) {
  using F = typename Ops::F;
  const F vq = Ops::set1(qmax);
  for (int c = 0; c < count; c += Ops::kLanes) {
    const F vd = scale_vec<Ops>(d, c, count), vm = scale_vec<Ops>(m, c, count),
            vid = scale_vec<Ops>(id, c, count);
    float* o[1] = {out + c};
    scale_lanes<Ops, 1>(
        x, w, n,
        [&](F xb, F wb, F* t) {
          const F q = clamp_round<Ops>(Ops::mul(Ops::sub(xb, vm), vid), Ops::zero(), vq);
          const F r = Ops::sub(xb, Ops::add(Ops::mul(vd, q), vm));
          const F rr = Ops::mul(r, r);
          t[0] = w ? Ops::mul(wb, rr) : rr;
        },
        o, std::min(Ops::kLanes, count - c));
  }
}

template <typename Ops>
void grid_var_batch_x86(const float* x, const float* w, int64_t n, const float* lo, const float* hi,
                        const float* d, const float* id, int count, float* err, float* sxq,
                        float* sqq) {
  using F = typename Ops::F;
  for (int c = 0; c < count; c += Ops::kLanes) {
    const int m = std::min(Ops::kLanes, count - c);
    const F vd = scale_vec<Ops>(d, c, count), vid = scale_vec<Ops>(id, c, count),
            vlo = scale_vec<Ops>(lo, c, count), vhi = scale_vec<Ops>(hi, c, count);
    const auto level = [&](F xb) { return clamp_round<Ops>(Ops::mul(xb, vid), vlo, vhi); };
    if (sxq) {
      float* o[3] = {err + c, sxq + c, sqq + c};
      sym_lanes<Ops, 3>(x, w, n, vd, level, o, m);
    } else {
      float* o[1] = {err + c};
      sym_lanes<Ops, 1>(x, w, n, vd, level, o, m);
    }
  }
}

template <typename Ops, typename Level>
void lloyd2_batch(const float* x, const float* w, int64_t n, Level level, float* sxq, float* sqq,
                  int m) {
  using F = typename Ops::F;
  float* o[2] = {sxq, sqq};
  scale_lanes<Ops, 2>(
      x, w, n,
      [&](F xb, F wb, F* t) {
        const F q = level(xb);
        t[0] = Ops::mul(w ? Ops::mul(wb, xb) : xb, q);
        t[1] = Ops::mul(w ? Ops::mul(wb, q) : q, q);
      },
      o, m);
}

template <typename Ops>
void grid_lloyd_batch_x86(const float* x, const float* w, int64_t n, float lo, float hi,
                          const float* id, int count, float* sxq, float* sqq) {
  using F = typename Ops::F;
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi);
  for (int c = 0; c < count; c += Ops::kLanes) {
    const F vid = scale_vec<Ops>(id, c, count);
    lloyd2_batch<Ops>(
        x, w, n, [&](F xb) { return clamp_round<Ops>(Ops::mul(xb, vid), vlo, vhi); }, sxq + c,
        sqq + c, std::min(Ops::kLanes, count - c));
  }
}

template <typename Ops>
void codebook_error_batch_x86(const float* x, const float* w, int64_t n, const float* values,
                              const float* d, const float* id, int count, float* out) {
  using F = typename Ops::F;
  const Book<Ops> book(values);
  for (int c = 0; c < count; c += Ops::kLanes) {
    const F vd = scale_vec<Ops>(d, c, count), vid = scale_vec<Ops>(id, c, count);
    float* o[1] = {out + c};
    sym_lanes<Ops, 1>(
        x, w, n, vd, [&](F xb) { return codebook_q<Ops>(Ops::mul(xb, vid), book); }, o,
        std::min(Ops::kLanes, count - c));
  }
}

template <typename Ops>
void codebook_lloyd_batch_x86(const float* x, const float* w, int64_t n, const float* values,
                              const float* id, int count, float* sxq, float* sqq) {
  using F = typename Ops::F;
  const Book<Ops> book(values);
  for (int c = 0; c < count; c += Ops::kLanes) {
    const F vid = scale_vec<Ops>(id, c, count);
    lloyd2_batch<Ops>(
        x, w, n, [&](F xb) { return codebook_q<Ops>(Ops::mul(xb, vid), book); }, sxq + c, sqq + c,
        std::min(Ops::kLanes, count - c));
  }
}

// ---- The searches' shared pieces (16-lane tiers: mask registers) ----
// Storage rounding of 16 scales: fp16 (the conversion rounds to nearest even, as round_fp16) or
// none.
template <bool kFp16>
__m512 round_lanes(__m512 v) {
  if constexpr (kFp16)
    return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  else
    return v;
}

// A running lexicographic minimum of (error, key) per lane, with its scale (and offset), and
// the minimum over the lanes: the sequential searches' rule "a strictly smaller error replaces
// the best", when keys number the candidates in the sequential order.
template <typename Ops>
struct LaneBest {
  static constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
  __m512 e, d, m;
  __m512i key;
  void offer(__mmask16 ok, __m512 e2, __m512i k2, __m512 d2, __m512 m2) {
    const __mmask16 better = __mmask16(
        ok & (_mm512_cmp_ps_mask(e2, e, _CMP_LT_OQ) |
              (_mm512_cmp_ps_mask(e2, e, _CMP_EQ_OQ) & _mm512_cmplt_epi32_mask(k2, key))));
    e = _mm512_mask_mov_ps(e, better, e2);
    d = _mm512_mask_mov_ps(d, better, d2);
    m = _mm512_mask_mov_ps(m, better, m2);
    key = _mm512_mask_mov_epi32(key, better, k2);
  }
  // The best lane (none offered anything: false).
  bool reduce(float* best_e, float* best_d, float* best_m) const {
    alignas(64) float le[16], ld[16], lm[16];
    alignas(64) int32_t lk[16];
    _mm512_store_ps(le, e), _mm512_store_ps(ld, d), _mm512_store_ps(lm, m);
    _mm512_store_si512(lk, key);
    int best = -1;
    for (int j = 0; j < 16; ++j) {
      if (lk[j] == kNone) continue;
      if (best < 0 || le[j] < le[best] || (le[j] == le[best] && lk[j] < lk[best])) best = j;
    }
    if (best < 0) return false;
    *best_e = le[best], *best_d = ld[best], *best_m = lm[best];
    return true;
  }
};

// ---- fit_symmetric's whole search (fit::SymSearchFn), 16-lane tiers ----
// Round 0 evaluates every start's scale; each later round evaluates the live starts' new scales
// d2 = round(Σ w x q / Σ w q q), packed into vectors (compressed, in start order); a start stays
// live while its error falls. One pass over the block gives a point's error and its Lloyd sums.
// Every scale considered is offered to a running lexicographic minimum of (error, start, round)
// per lane — the sequential search's rule (the first least error in start-by-start order) —
// reduced over the lanes at the end. The division Σ w x q / Σ w q q is one float division:
// fit_symmetric divides the same two floats in double and rounds to float, which gives the same
// value (a double holds twice float's precision and then some, so the double rounding cannot
// differ for a quotient).
template <typename Ops, bool kCodebook, bool kWeighted, bool kFp16>
bool sym_search_impl(const float* x, const float* w, int64_t n, float lo, float hi,
                     const float* values, float xm, const float* den, int n_starts, int lloyd_iters,
                     float* best_d) {
  static_assert(Ops::kLanes == 16, "the search runs on 16-lane vectors with mask registers");
  using F = typename Ops::F;
  using M = __mmask16;
  constexpr int kL = 16, kCap = 64 + kL;  // starts (at most 64) plus a vector of slack
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi), one = Ops::set1(1.0f);
  const F inf = Ops::set1(std::numeric_limits<float>::infinity());
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  auto usable = [&](F d) {  // d != 0 and finite
    return M(_mm512_cmp_ps_mask(d, Ops::zero(), _CMP_NEQ_OQ) &
             _mm512_cmp_ps_mask(_mm512_abs_ps(d), inf, _CMP_LT_OQ));
  };
  const Book<Ops> book(kCodebook ? values : nullptr);
  auto level = [&](F v) {
    if constexpr (kCodebook)
      return codebook_q<Ops>(v, book);
    else
      return clamp_round<Ops>(v, vlo, vhi);
  };
  if constexpr (!kWeighted) w = nullptr;  // a constant the loops fold
  // The running minimum per lane, keyed start * 8 + round.
  LaneBest<Ops> best{inf, Ops::zero(), Ops::zero(), _mm512_set1_epi32(LaneBest<Ops>::kNone)};
  // Points to evaluate, packed: scale, start index, and the error of the start's current point
  // (the Lloyd step is taken only while the error falls). A point's error and its Lloyd sums
  // (Σ w x q, Σ w q q) come from one pass, since they share the levels q; the last round needs
  // the error alone.
  alignas(64) float pd[2][kCap], pe[2][kCap];
  alignas(64) int32_t pk[2][kCap];
  int np = 0, cur = 0;
  auto append = [&](int buf, int& count, M keep, F d, F e, __m512i k) {
    Ops::store(pd[buf] + count, _mm512_maskz_compress_ps(keep, d));
    Ops::store(pe[buf] + count, _mm512_maskz_compress_ps(keep, e));
    _mm512_storeu_si512(pk[buf] + count, _mm512_maskz_compress_epi32(keep, k));
    count += __builtin_popcount(unsigned(keep));
  };
  for (int c = 0; c < n_starts; c += kL) {  // round 0: the starts (usable scales only)
    const M in = M((1u << std::min(kL, n_starts - c)) - 1);
    const F d0 =
        round_lanes<kFp16>(Ops::div(Ops::set1(xm), _mm512_mask_loadu_ps(one, in, den + c)));
    append(cur, np, M(in & usable(d0)), d0, inf, _mm512_add_epi32(iota, _mm512_set1_epi32(c)));
  }
  for (int round = 0; round <= lloyd_iters && np > 0; ++round) {
    const bool step = round < lloyd_iters;
    const int nxt = cur ^ 1;
    int nn = 0;
    for (int c = 0; c < np; c += kL) {
      const M in = M((1u << std::min(kL, np - c)) - 1);
      const F d = _mm512_mask_loadu_ps(one, in, pd[cur] + c);
      const F eprev = _mm512_mask_loadu_ps(Ops::zero(), in, pe[cur] + c);
      const __m512i k = _mm512_maskz_loadu_epi32(in, pk[cur] + c);
      const F vid = Ops::div(one, d);
      alignas(64) float s0[kL], s1[kL], s2[kL];
      const auto codes = [&](F xb) { return level(Ops::mul(xb, vid)); };
      if (step) {
        float* o[3] = {s0, s1, s2};
        sym_lanes<Ops, 3>(x, w, n, d, codes, o, kL);
      } else {
        float* o[1] = {s0};
        sym_lanes<Ops, 1>(x, w, n, d, codes, o, kL);
      }
      const F e = Ops::load(s0);
      best.offer(in, e, _mm512_add_epi32(_mm512_slli_epi32(k, 3), _mm512_set1_epi32(round)), d, d);
      // Live: the error is >= 0 and (after round 0) below the start's previous one — compared
      // as fit_symmetric's loop compares (it stops at "e < 0 || e >= previous").
      const M live = round == 0 ? M(in & _mm512_cmp_ps_mask(e, Ops::zero(), _CMP_GE_OQ))
                                : M(in & _mm512_cmp_ps_mask(e, Ops::zero(), _CMP_NLT_UQ) &
                                    _mm512_cmp_ps_mask(e, eprev, _CMP_NGE_UQ));
      if (!step || !live) continue;
      const F sxq = Ops::load(s1), sqq = Ops::load(s2);
      const F d2 = round_lanes<kFp16>(Ops::div(sxq, _mm512_mask_mov_ps(one, live, sqq)));
      const M next = M(live & _mm512_cmp_ps_mask(sqq, Ops::zero(), _CMP_GT_OQ) &
                       _mm512_cmp_ps_mask(d2, d, _CMP_NEQ_UQ) & usable(d2));
      append(nxt, nn, next, d2, e, k);
    }
    cur = nxt, np = nn;
  }
  float e, m;
  return best.reduce(&e, best_d, &m);
}

template <typename Ops>
bool sym_search_x86(const float* x, const float* w, int64_t n, float lo, float hi,
                    const float* values, bool fp16, float xm, const float* den, int n_starts,
                    int lloyd_iters, float* best_d) {
  using Fn = bool (*)(const float*, const float*, int64_t, float, float, const float*, float,
                      const float*, int, int, float*);
  static constexpr Fn kFns[8] = {
      sym_search_impl<Ops, false, false, false>, sym_search_impl<Ops, false, false, true>,
      sym_search_impl<Ops, false, true, false>,  sym_search_impl<Ops, false, true, true>,
      sym_search_impl<Ops, true, false, false>,  sym_search_impl<Ops, true, false, true>,
      sym_search_impl<Ops, true, true, false>,   sym_search_impl<Ops, true, true, true>};
  return kFns[(values ? 4 : 0) + (w ? 2 : 0) + (fp16 ? 1 : 0)](x, w, n, lo, hi, values, xm, den,
                                                               n_starts, lloyd_iters, best_d);
}

// ---- fit_affine's search (fit::AffineSearchFn), 16-lane tiers: one lane per start ----
// Every start's first error, then Lloyd rounds on the lanes still live: the five sums, the 2x2
// least squares in double (both halves of the vector, the reference's operations in its order),
// the new (d, m) rounded and evaluated; a lane stops where the reference's loop breaks. The
// accepted points go to a lexicographic minimum of (error, start, round) per lane, the first
// guess (key -1) included — the sequential rule "a strictly smaller error replaces the best".
template <typename Ops, bool kWeighted, bool kFp16>
void affine_search_impl(const float* x, const float* w, int64_t n, float qmax, bool nonpos_min,
                        float lo, float hi, const float* f, int starts, int lloyd_iters,
                        float* best_d, float* best_m, float* best_e) {
  static_assert(Ops::kLanes == 16, "the search runs on 16-lane vectors with mask registers");
  using F = typename Ops::F;
  using M = __mmask16;
  using D = __m512d;
  if constexpr (!kWeighted) w = nullptr;
  const F vq = Ops::set1(qmax), one = Ops::set1(1.0f);
  const F inf = Ops::set1(std::numeric_limits<float>::infinity());
  auto codes = [&](F xb, F vm, F vid) {
    return clamp_round<Ops>(Ops::mul(Ops::sub(xb, vm), vid), Ops::zero(), vq);
  };
  auto error = [&](F vd, F vm) {
    const F vid = Ops::div(one, vd);
    alignas(64) float e[16];
    float* o[1] = {e};
    scale_lanes<Ops, 1>(
        x, w, n,
        [&](F xb, F wb, F* t) {
          const F r = Ops::sub(xb, Ops::add(Ops::mul(vd, codes(xb, vm, vid)), vm));
          const F rr = Ops::mul(r, r);
          t[0] = w ? Ops::mul(wb, rr) : rr;
        },
        o, 16);
    return Ops::load(e);
  };
  // The running minimum per lane, keyed start * 8 + round; the first guess is key -1.
  LaneBest<Ops> best{Ops::set1(*best_e), Ops::set1(*best_d), Ops::set1(*best_m),
                     _mm512_set1_epi32(-1)};
  const M in = M((1u << starts) - 1);
  const F vf = _mm512_mask_loadu_ps(one, in, f);
  const F span = Ops::div(Ops::set1(hi - lo), vf);
  const float mid = 0.5f * (hi + lo);
  F d = round_lanes<kFp16>(Ops::div(span, vq));
  F m = round_lanes<kFp16>(Ops::min(Ops::sub(Ops::set1(mid), Ops::mul(Ops::set1(0.5f), span)),
                                    Ops::set1(nonpos_min ? 0.0f : mid)));
  M live = M(in & _mm512_cmp_ps_mask(d, Ops::zero(), _CMP_GT_OQ));
  if (!live) return;
  d = _mm512_mask_mov_ps(one, live, d);
  F e = error(d, m);
  const __m512i key0 =
      _mm512_slli_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 3);
  best.offer(live, e, key0, d, m);
  // Doubles: a float vector's two halves.
  auto lo8 = [](F v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); };
  auto hi8 = [](F v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); };
  auto join = [](D a, D b) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(a)), _mm512_cvtpd_ps(b), 1);
  };
  const D dzero = _mm512_setzero_pd(), tiny = _mm512_set1_pd(1e-12);
  for (int it = 0; it < lloyd_iters && live; ++it) {
    const F vid = Ops::div(one, d);
    alignas(64) float s0[16], s1[16], s2[16], s3[16], s4[16];
    float* o[5] = {s0, s1, s2, s3, s4};
    scale_lanes<Ops, 5>(
        x, w, n,
        [&](F xb, F wb, F* t) {
          const F q = codes(xb, m, vid);
          const F wi = w ? wb : one;
          t[0] = wi;
          t[1] = Ops::mul(wi, q);
          t[2] = Ops::mul(Ops::mul(wi, q), q);
          t[3] = Ops::mul(wi, xb);
          t[4] = Ops::mul(Ops::mul(wi, xb), q);
        },
        o, 16);
    D nd[2], nm[2];
    M keep = 0;
    const F v[5] = {Ops::load(s0), Ops::load(s1), Ops::load(s2), Ops::load(s3), Ops::load(s4)};
    for (int h = 0; h < 2; ++h) {
      D sw, sq, sqq, sx, sxq;
      if (h == 0)
        sw = lo8(v[0]), sq = lo8(v[1]), sqq = lo8(v[2]), sx = lo8(v[3]), sxq = lo8(v[4]);
      else
        sw = hi8(v[0]), sq = hi8(v[1]), sqq = hi8(v[2]), sx = hi8(v[3]), sxq = hi8(v[4]);
      const D det = _mm512_sub_pd(_mm512_mul_pd(sw, sqq), _mm512_mul_pd(sq, sq));
      const __mmask8 solvable =
          _mm512_cmp_pd_mask(sw, dzero, _CMP_GT_OQ) &
          _mm512_cmp_pd_mask(det, _mm512_mul_pd(_mm512_mul_pd(tiny, sw), sqq), _CMP_GT_OQ);
      D d2 = _mm512_div_pd(_mm512_sub_pd(_mm512_mul_pd(sw, sxq), _mm512_mul_pd(sq, sx)), det);
      D m2 = _mm512_div_pd(_mm512_sub_pd(_mm512_mul_pd(sqq, sx), _mm512_mul_pd(sq, sxq)), det);
      if (nonpos_min) {
        const __mmask8 pos = _mm512_cmp_pd_mask(m2, dzero, _CMP_GT_OQ);
        m2 = _mm512_mask_mov_pd(m2, pos, dzero);
        d2 = _mm512_mask_mov_pd(d2, pos, _mm512_div_pd(sxq, sqq));
      }
      nd[h] = d2, nm[h] = m2;
      keep = M(keep | (M(solvable) << (8 * h)));
    }
    const F dc = round_lanes<kFp16>(join(nd[0], nd[1])),
            mc = round_lanes<kFp16>(join(nm[0], nm[1]));
    const M ok = M(live & keep & _mm512_cmp_ps_mask(dc, Ops::zero(), _CMP_GT_OQ) &
                   _mm512_cmp_ps_mask(_mm512_abs_ps(dc), inf, _CMP_LT_OQ) &
                   _mm512_cmp_ps_mask(_mm512_abs_ps(mc), inf, _CMP_LT_OQ));
    if (!ok) break;
    const F e2 = error(_mm512_mask_mov_ps(one, ok, dc), mc);
    const M accept = M(ok & _mm512_cmp_ps_mask(e2, e, _CMP_NGE_UQ));  // the loop's !(e2 >= e)
    d = _mm512_mask_mov_ps(d, accept, dc);
    m = _mm512_mask_mov_ps(m, accept, mc);
    e = _mm512_mask_mov_ps(e, accept, e2);
    best.offer(accept, e2, _mm512_add_epi32(key0, _mm512_set1_epi32(it + 1)), dc, mc);
    live = accept;
  }
  best.reduce(best_e, best_d, best_m);  // every lane holds at least the first guess
}

template <typename Ops>
void affine_search_x86(const float* x, const float* w, int64_t n, float qmax, bool nonpos_min,
                       bool fp16, float lo, float hi, const float* f, int starts, int lloyd_iters,
                       float* best_d, float* best_m, float* best_e) {
  using Fn = void (*)(const float*, const float*, int64_t, float, bool, float, float, const float*,
                      int, int, float*, float*, float*);
  static constexpr Fn kFns[4] = {
      affine_search_impl<Ops, false, false>, affine_search_impl<Ops, false, true>,
      affine_search_impl<Ops, true, false>, affine_search_impl<Ops, true, true>};
  kFns[(w ? 2 : 0) + (fp16 ? 1 : 0)](x, w, n, qmax, nonpos_min, lo, hi, f, starts, lloyd_iters,
                                     best_d, best_m, best_e);
}

}  // namespace
}  // namespace lowbit::kernel
