// The quantizers' scale-search sums on uniform integer grids (format/fit.h: grid_error_ref,
// grid_lloyd_ref) on the tier's vectors, in the reference's order: 16 lanes, lane j summing the
// terms i ≡ j mod 16 (one 16-lane vector, or two 8-lane ones), then fit::lane_tree16. Every
// operation is the reference's, unfused (mul, then sub; the build does not contract), so the bits
// match. Ops provides: F, kLanes (8 or 16), zero, load, load_partial, mul, sub, add, min, max,
// round_even, keep_first, set1, store, select_gt (1.0 where a > b, else 0) and lookup16 (the
// value of a 16-entry table at each lane's index, an integral float 0..15).
#pragma once

#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

template <typename Ops, typename Term>
float grid_lanes(const float* x, const float* w, int64_t n, Term term, float* sums2) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes, kV = 16 / kL;
  static_assert(kV * kL == 16, "16 lanes in one or two vectors");
  F a[kV], b[kV];
  for (int v = 0; v < kV; ++v) a[v] = Ops::zero(), b[v] = Ops::zero();
  for (int64_t i = 0; i < n; i += 16) {
    LOWBIT_UNROLL for (int v = 0; v < kV; ++v) {
      const int64_t k = i + v * kL;
      if (k >= n) break;
      const int m = int(std::min<int64_t>(kL, n - k));
      const F xv = m == kL ? Ops::load(x + k) : Ops::load_partial(x + k, m);
      const F wv = !w ? Ops::zero() : m == kL ? Ops::load(w + k) : Ops::load_partial(w + k, m);
      F ta, tb;
      term(xv, wv, ta, tb);
      if (m < kL) ta = Ops::keep_first(ta, m), tb = Ops::keep_first(tb, m);
      a[v] = Ops::add(a[v], ta), b[v] = Ops::add(b[v], tb);
    }
  }
  alignas(64) float la[16], lb[16];
  for (int v = 0; v < kV; ++v) Ops::store(la + v * kL, a[v]), Ops::store(lb + v * kL, b[v]);
  if (sums2) sums2[1] = fit::lane_tree16(lb);
  return fit::lane_tree16(la);
}

template <typename Ops>
float grid_error_x86(const float* x, const float* w, int64_t n, float lo, float hi, float d,
                     float id) {
  using F = typename Ops::F;
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi), vd = Ops::set1(d), vid = Ops::set1(id);
  return grid_lanes<Ops>(
      x, w, n,
      [&](F xv, F wv, F& ta, F& tb) {
        const F q = Ops::round_even(Ops::min(Ops::max(Ops::mul(xv, vid), vlo), vhi));
        const F r = Ops::sub(xv, Ops::mul(vd, q));
        const F rr = Ops::mul(r, r);
        ta = w ? Ops::mul(wv, rr) : rr;
        tb = Ops::zero();
      },
      nullptr);
}

template <typename Ops>
float affine_error_x86(const float* x, const float* w, int64_t n, float qmax, float d, float m,
                       float id) {
  using F = typename Ops::F;
  const F vq = Ops::set1(qmax), vd = Ops::set1(d), vm = Ops::set1(m), vid = Ops::set1(id);
  return grid_lanes<Ops>(
      x, w, n,
      [&](F xv, F wv, F& ta, F& tb) {
        const F q =
            Ops::round_even(Ops::min(Ops::max(Ops::mul(Ops::sub(xv, vm), vid), Ops::zero()), vq));
        const F r = Ops::sub(xv, Ops::add(Ops::mul(vd, q), vm));
        const F rr = Ops::mul(r, r);
        ta = w ? Ops::mul(wv, rr) : rr;
        tb = Ops::zero();
      },
      nullptr);
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

template <typename Ops>
float codebook_error_x86(const float* x, const float* w, int64_t n, const float* values, float d,
                         float id) {
  using F = typename Ops::F;
  const F vd = Ops::set1(d), vid = Ops::set1(id);
  return grid_lanes<Ops>(
      x, w, n,
      [&](F xv, F wv, F& ta, F& tb) {
        const F q = codebook_q<Ops>(Ops::mul(xv, vid), values);
        const F r = Ops::sub(xv, Ops::mul(vd, q));
        const F rr = Ops::mul(r, r);
        ta = w ? Ops::mul(wv, rr) : rr;
        tb = Ops::zero();
      },
      nullptr);
}

template <typename Ops>
void codebook_lloyd_x86(const float* x, const float* w, int64_t n, const float* values, float id,
                        float* sums) {
  using F = typename Ops::F;
  const F vid = Ops::set1(id);
  sums[0] = grid_lanes<Ops>(
      x, w, n,
      [&](F xv, F wv, F& ta, F& tb) {
        const F q = codebook_q<Ops>(Ops::mul(xv, vid), values);
        ta = Ops::mul(w ? Ops::mul(wv, xv) : xv, q);
        tb = Ops::mul(w ? Ops::mul(wv, q) : q, q);
      },
      sums);
}

template <typename Ops>
void grid_lloyd_x86(const float* x, const float* w, int64_t n, float lo, float hi, float id,
                    float* sums) {
  using F = typename Ops::F;
  const F vlo = Ops::set1(lo), vhi = Ops::set1(hi), vid = Ops::set1(id);
  sums[0] = grid_lanes<Ops>(
      x, w, n,
      [&](F xv, F wv, F& ta, F& tb) {
        const F q = Ops::round_even(Ops::min(Ops::max(Ops::mul(xv, vid), vlo), vhi));
        ta = Ops::mul(w ? Ops::mul(wv, xv) : xv, q);
        tb = Ops::mul(w ? Ops::mul(wv, q) : q, q);
      },
      sums);
}

}  // namespace
}  // namespace lowbit::kernel
