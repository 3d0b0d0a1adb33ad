// The quantizers' scale-search sums (format/fit.h: uniform, affine and 16-value codebook grids,
// errors and Lloyd sums) on the tier's vectors, in the references' order (kernel/ref/grid_ref.h):
// 16 lanes, lane j summing the terms i ≡ j mod 16 (one 16-lane vector, or two 8-lane ones), then
// fit::lane_tree16. Every operation is the reference's, unfused (mul, then sub; the build does
// not contract), so the bits match. Ops provides: F, kLanes (8 or 16), zero, load, load_partial,
// mul, sub, add, min, max, round_even, keep_first, set1, store, select_gt (1.0 where a > b, else
// 0) and lookup16 (the value of a 16-entry table at each lane's index, an integral float 0..15).
#pragma once

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

// codebook_value16 on vectors: the count of k whose predicate holds, then a table lookup.
template <typename Ops>
typename Ops::F codebook_q(typename Ops::F v, const float* values) {
  using F = typename Ops::F;
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
  return sq_error<Ops>(
      x, w, n, [&](F xv) { return Ops::mul(vd, codebook_q<Ops>(Ops::mul(xv, vid), values)); });
}

template <typename Ops>
void codebook_lloyd_x86(const float* x, const float* w, int64_t n, const float* values, float id,
                        float* sums) {
  using F = typename Ops::F;
  const F vid = Ops::set1(id);
  lloyd2<Ops>(
      x, w, n, [&](F xv) { return codebook_q<Ops>(Ops::mul(xv, vid), values); }, sums);
}

}  // namespace
}  // namespace lowbit::kernel
