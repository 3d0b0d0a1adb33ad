// Float-weight tiles (F32, F16, BF16 rows; f32 activations), generic over the tier's vector
// width. Ops provides: F, kLanes, zero, load, load_partial (n < kLanes, zero-filled), fma, hsum,
// and the 16-bit loaders load_f16 / load_bf16 (+ _partial). Each (row, token) pair has its own
// accumulator vector; lanes are summed once at the end.
#pragma once

#include <algorithm>
#include <cmath>

#include "kernel/x86/common.h"

namespace lowbit::kernel {
namespace {

enum class FloatKind { kF32, kF16, kBF16 };

template <typename Ops, FloatKind kKind>
struct FloatTiles {
  using F = typename Ops::F;
  static constexpr int kL = Ops::kLanes;
  static constexpr bool kPackable = false, kPackedOnly = false;

  static F load(const uint8_t* row, int64_t k) {
    if constexpr (kKind == FloatKind::kF32)
      return Ops::load(reinterpret_cast<const float*>(row) + k);
    else if constexpr (kKind == FloatKind::kF16)
      return Ops::load_f16(reinterpret_cast<const uint16_t*>(row) + k);
    else
      return Ops::load_bf16(reinterpret_cast<const uint16_t*>(row) + k);
  }
  static F load_partial(const uint8_t* row, int64_t k, int n) {
    if constexpr (kKind == FloatKind::kF32)
      return Ops::load_partial(reinterpret_cast<const float*>(row) + k, n);
    else if constexpr (kKind == FloatKind::kF16)
      return Ops::load_f16_partial(reinterpret_cast<const uint16_t*>(row) + k, n);
    else
      return Ops::load_bf16_partial(reinterpret_cast<const uint16_t*>(row) + k, n);
  }

  template <int R, int T>
  static void tile(const uint8_t* w, uint64_t rb, const Acts& a, float* y, int64_t ldy) {
    const int64_t K = a.K;
    F acc[R][T];
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = Ops::zero();
    }
    int64_t k = 0;
    if constexpr (R * T < 4) {  // one row and token: four independent chains of multiply-adds
      F acc2[3][R][T];
      LOWBIT_UNROLL for (int c = 0; c < 3; ++c) {
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc2[c][r][t] = Ops::zero();
        }
      }
      for (; k + 4 * kL <= K; k += 4 * kL) {
        LOWBIT_UNROLL for (int c = 0; c < 4; ++c) {
          F(&ac)[R][T] = c == 0 ? acc : acc2[c - 1];
          F wv[R];
          LOWBIT_UNROLL for (int r = 0; r < R; ++r) wv[r] = load(w + uint64_t(r) * rb, k + c * kL);
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
            const F av = Ops::load(a.f32 + t * K + k + c * kL);
            LOWBIT_UNROLL for (int r = 0; r < R; ++r) ac[r][t] = Ops::fma(wv[r], av, ac[r][t]);
          }
        }
      }
      LOWBIT_UNROLL for (int c = 0; c < 3; ++c) {
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
          LOWBIT_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = Ops::add(acc[r][t], acc2[c][r][t]);
        }
      }
    }
    for (; k + kL <= K; k += kL) {
      F wv[R];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) wv[r] = load(w + uint64_t(r) * rb, k);
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const F av = Ops::load(a.f32 + t * K + k);
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) acc[r][t] = Ops::fma(wv[r], av, acc[r][t]);
      }
    }
    if (k < K) {
      const int n = int(K - k);
      F wv[R];
      LOWBIT_UNROLL for (int r = 0; r < R; ++r) wv[r] = load_partial(w + uint64_t(r) * rb, k, n);
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) {
        const F av = Ops::load_partial(a.f32 + t * K + k, n);
        LOWBIT_UNROLL for (int r = 0; r < R; ++r) acc[r][t] = Ops::fma(wv[r], av, acc[r][t]);
      }
    }
    LOWBIT_UNROLL for (int r = 0; r < R; ++r) {
      LOWBIT_UNROLL for (int t = 0; t < T; ++t) y[t * ldy + r] = Ops::hsum(acc[r][t]);
    }
  }
};

// e^x for x <= 0: x = n ln2 + r with |r| <= ln2 / 2 (ln2 in two parts, n ln2_hi exact), e^r by
// its Taylor polynomial to degree 6 (relative error < 1.3e-7 on that range), times 2^n; 0 where
// x <= -87 (e^x < 1.7e-38 there, and 2^n must stay a normal float).
template <typename Ops>
typename Ops::F exp_neg_x86(typename Ops::F x) {
  using F = typename Ops::F;
  const F lo = Ops::set1(-87.0f);
  const F xc = Ops::max(x, lo);
  const F n = Ops::round_even(Ops::mul(xc, Ops::set1(1.44269504088896341f)));
  F r = Ops::fma(n, Ops::set1(-0.693359375f), xc);
  r = Ops::fma(n, Ops::set1(2.12194440e-4f), r);
  F p = Ops::set1(1.0f / 720);
  for (const float c : {1.0f / 120, 1.0f / 24, 1.0f / 6, 0.5f, 1.0f, 1.0f}) {
    p = Ops::fma(p, r, Ops::set1(c));
  }
  return Ops::select_gt(x, lo, Ops::mul(p, Ops::exp2i(n)));
}

// SwiGLU in place: g[i] = silu(g[i]) * u[i], silu(g) = g * sigmoid(g), with t = e^-|g| and
// sigmoid(g) = 1 / (1 + t) for g > 0, t / (1 + t) for g < 0 (nothing overflows; silu(0) = 0).
template <typename Ops>
void swiglu_x86(float* g, const float* u, int64_t n) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes;
  const F one = Ops::set1(1.0f), zero = Ops::zero();
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    const F x = Ops::load(g + i), neg = Ops::sub(zero, x);
    const F t = exp_neg_x86<Ops>(Ops::min(x, neg));
    const F num = Ops::add(Ops::select_gt(x, zero, one), Ops::select_gt(neg, zero, t));
    Ops::store(g + i, Ops::mul(Ops::mul(x, Ops::div(num, Ops::add(one, t))), Ops::load(u + i)));
  }
  for (; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

// Softmax in place over n scores: e^(s - max) / sum.
template <typename Ops>
void softmax_x86(float* s, int64_t n) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes;
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, s[i]);
  const F m = Ops::set1(mx);
  F acc = Ops::zero();
  int64_t i = 0;
  for (; i + kL <= n; i += kL) {
    const F e = exp_neg_x86<Ops>(Ops::sub(Ops::load(s + i), m));
    Ops::store(s + i, e);
    acc = Ops::add(acc, e);
  }
  float sum = Ops::hsum(acc);
  for (; i < n; ++i) sum += (s[i] = std::exp(s[i] - mx));
  const float inv = 1.0f / sum;
  for (i = 0; i + kL <= n; i += kL) Ops::store(s + i, Ops::mul(Ops::load(s + i), Ops::set1(inv)));
  for (; i < n; ++i) s[i] *= inv;
}

// The engine's attention on the tier's vectors. A head of D = NV vectors (NV <= 8) keeps the
// query (scores) or the output (values) in registers while the keys stream past; other head
// sizes take the plain loops.
template <typename Ops>
float dot_f32_x86(const float* a, const float* b, int64_t n) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes;
  F acc[4] = {Ops::zero(), Ops::zero(), Ops::zero(), Ops::zero()};
  int64_t i = 0;
  for (; i + 4 * kL <= n; i += 4 * kL) {
    LOWBIT_UNROLL for (int c = 0; c < 4; ++c) acc[c] =
        Ops::fma(Ops::load(a + i + c * kL), Ops::load(b + i + c * kL), acc[c]);
  }
  for (; i + kL <= n; i += kL) acc[0] = Ops::fma(Ops::load(a + i), Ops::load(b + i), acc[0]);
  if (i < n) {
    const int r = int(n - i);
    acc[1] = Ops::fma(Ops::load_partial(a + i, r), Ops::load_partial(b + i, r), acc[1]);
  }
  return Ops::hsum(Ops::add(Ops::add(acc[0], acc[1]), Ops::add(acc[2], acc[3])));
}

template <typename Ops, int NV>
void attn_scores_nv(const float* q, const float* k, int64_t stride, int64_t T, float scale,
                    float* out) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes;
  F qv[NV];
  LOWBIT_UNROLL for (int i = 0; i < NV; ++i) qv[i] = Ops::load(q + i * kL);
  for (int64_t t = 0; t < T; ++t) {
    const float* kt = k + t * stride;
    F s[2] = {Ops::mul(qv[0], Ops::load(kt)), Ops::zero()};  // two chains
    LOWBIT_UNROLL for (int i = 1; i < NV; ++i) s[i % 2] =
        Ops::fma(qv[i], Ops::load(kt + i * kL), s[i % 2]);
    out[t] = Ops::hsum(Ops::add(s[0], s[1])) * scale;
  }
}

template <typename Ops, int NV>
void attn_values_nv(const float* p, const float* v, int64_t stride, int64_t T, float* out) {
  using F = typename Ops::F;
  constexpr int kL = Ops::kLanes;
  F acc[NV];
  LOWBIT_UNROLL for (int i = 0; i < NV; ++i) acc[i] = Ops::zero();
  for (int64_t t = 0; t < T; ++t) {
    const F pt = Ops::set1(p[t]);
    LOWBIT_UNROLL for (int i = 0; i < NV; ++i) acc[i] =
        Ops::fma(pt, Ops::load(v + t * stride + i * kL), acc[i]);
  }
  LOWBIT_UNROLL for (int i = 0; i < NV; ++i) Ops::store(out + i * kL, acc[i]);
}

// fn<NV>() for NV = D / kLanes in 1..8; false when D is not such a multiple.
template <typename Ops, int NV = 1, typename Fn>
bool with_head_vectors(int64_t D, Fn&& fn) {
  if constexpr (NV <= 8) {
    if (D == int64_t(NV) * Ops::kLanes) return fn.template operator()<NV>(), true;
    return with_head_vectors<Ops, NV + 1>(D, fn);
  }
  return false;
}

template <typename Ops>
void attn_scores_x86(const float* q, const float* k, int64_t stride, int64_t T, int64_t D,
                     float scale, float* out) {
  if (with_head_vectors<Ops>(
          D, [&]<int NV>() { attn_scores_nv<Ops, NV>(q, k, stride, T, scale, out); }))
    return;
  for (int64_t t = 0; t < T; ++t) out[t] = dot_f32_x86<Ops>(q, k + t * stride, D) * scale;
}

template <typename Ops>
void attn_values_x86(const float* p, const float* v, int64_t stride, int64_t T, int64_t D,
                     float* out) {
  if (with_head_vectors<Ops>(D, [&]<int NV>() { attn_values_nv<Ops, NV>(p, v, stride, T, out); }))
    return;
  constexpr int kL = Ops::kLanes;
  std::fill(out, out + D, 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    const typename Ops::F pt = Ops::set1(p[t]);
    const float* vt = v + t * stride;
    int64_t i = 0;
    for (; i + kL <= D; i += kL)
      Ops::store(out + i, Ops::fma(pt, Ops::load(vt + i), Ops::load(out + i)));
    for (; i < D; ++i) out[i] += p[t] * vt[i];
  }
}

// Softmax's backward in place: d[i] = p[i] (d[i] - p·d).
template <typename Ops>
void softmax_backward_x86(const float* p, float* d, int64_t n) {
  constexpr int kL = Ops::kLanes;
  const float pd = dot_f32_x86<Ops>(p, d, n);
  const typename Ops::F pdv = Ops::set1(pd);
  int64_t i = 0;
  for (; i + kL <= n; i += kL)
    Ops::store(d + i, Ops::mul(Ops::load(p + i), Ops::sub(Ops::load(d + i), pdv)));
  for (; i < n; ++i) d[i] = p[i] * (d[i] - pd);
}

}  // namespace
}  // namespace lowbit::kernel
