// The scalar references of the quantizers' scale-search sums (format/fit.h describes them; the
// kernel tiers must give these bits): 16 float lanes, lane j adding the terms i ≡ j mod 16 in
// order, then fit::lane_tree16.
#pragma once

#include <algorithm>
#include <cstdint>

#include "format/fit.h"

namespace lowbit::kernel {

using fit::codebook_value16;
using fit::grid_q;
using fit::lane_tree16;
using fit::round_even;

inline float grid_error_ref(const float* x, const float* w, int64_t n, float lo, float hi, float d,
                            float id) {
  float acc[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    const float r = x[i] - d * grid_q(x[i], lo, hi, id);
    acc[i % 16] += w ? w[i] * (r * r) : r * r;
  }
  return lane_tree16(acc);
}

inline void grid_lloyd_ref(const float* x, const float* w, int64_t n, float lo, float hi, float id,
                           float* sums) {
  float xq[16] = {}, qq[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    const float q = grid_q(x[i], lo, hi, id);
    xq[i % 16] += (w ? w[i] * x[i] : x[i]) * q;
    qq[i % 16] += (w ? w[i] * q : q) * q;
  }
  sums[0] = lane_tree16(xq), sums[1] = lane_tree16(qq);
}

inline float affine_error_ref(const float* x, const float* w, int64_t n, float qmax, float d,
                              float m, float id) {
  float acc[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    const float q = round_even(std::min(std::max((x[i] - m) * id, 0.0f), qmax));
    const float r = x[i] - (d * q + m);
    acc[i % 16] += w ? w[i] * (r * r) : r * r;
  }
  return lane_tree16(acc);
}

inline float codebook_error_ref(const float* x, const float* w, int64_t n, const float* values,
                                float d, float id) {
  float acc[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    const float r = x[i] - d * codebook_value16(values, x[i] * id);
    acc[i % 16] += w ? w[i] * (r * r) : r * r;
  }
  return lane_tree16(acc);
}

inline void codebook_lloyd_ref(const float* x, const float* w, int64_t n, const float* values,
                               float id, float* sums) {
  float xq[16] = {}, qq[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    const float q = codebook_value16(values, x[i] * id);
    xq[i % 16] += (w ? w[i] * x[i] : x[i]) * q;
    qq[i % 16] += (w ? w[i] * q : q) * q;
  }
  sums[0] = lane_tree16(xq), sums[1] = lane_tree16(qq);
}

inline void affine_lloyd_ref(const float* x, const float* w, int64_t n, float qmax, float m,
                             float id, float* sums) {
  float a[5][16] = {};
  for (int64_t i = 0; i < n; ++i) {
    const float q = round_even(std::min(std::max((x[i] - m) * id, 0.0f), qmax));
    const float wi = w ? w[i] : 1.0f;
    const int64_t j = i % 16;
    a[0][j] += wi, a[1][j] += wi * q, a[2][j] += (wi * q) * q, a[3][j] += wi * x[i];
    a[4][j] += (wi * x[i]) * q;
  }
  for (int k = 0; k < 5; ++k) sums[k] = lane_tree16(a[k]);
}

// The batch forms (fit::GridErrorBatchFn ...): each scale's single sum.
inline void grid_error_batch_ref(const float* x, const float* w, int64_t n, float lo, float hi,
                                 const float* d, const float* id, int count, float* out) {
  for (int k = 0; k < count; ++k) out[k] = grid_error_ref(x, w, n, lo, hi, d[k], id[k]);
}

inline void affine_error_batch_ref(const float* x, const float* w, int64_t n, float qmax,
                                   const float* d, const float* m, const float* id, int count,
                                   float* out) {
  for (int k = 0; k < count; ++k) out[k] = affine_error_ref(x, w, n, qmax, d[k], m[k], id[k]);
}

inline void grid_var_batch_ref(const float* x, const float* w, int64_t n, const float* lo,
                               const float* hi, const float* d, const float* id, int count,
                               float* err, float* sxq, float* sqq) {
  for (int k = 0; k < count; ++k) {
    err[k] = grid_error_ref(x, w, n, lo[k], hi[k], d[k], id[k]);
    if (!sxq) continue;
    float s[2];
    grid_lloyd_ref(x, w, n, lo[k], hi[k], id[k], s);
    sxq[k] = s[0], sqq[k] = s[1];
  }
}

inline void grid_lloyd_batch_ref(const float* x, const float* w, int64_t n, float lo, float hi,
                                 const float* id, int count, float* sxq, float* sqq) {
  for (int k = 0; k < count; ++k) {
    float s[2];
    grid_lloyd_ref(x, w, n, lo, hi, id[k], s);
    sxq[k] = s[0], sqq[k] = s[1];
  }
}

inline void codebook_error_batch_ref(const float* x, const float* w, int64_t n, const float* values,
                                     const float* d, const float* id, int count, float* out) {
  for (int k = 0; k < count; ++k) out[k] = codebook_error_ref(x, w, n, values, d[k], id[k]);
}

inline void codebook_lloyd_batch_ref(const float* x, const float* w, int64_t n, const float* values,
                                     const float* id, int count, float* sxq, float* sqq) {
  for (int k = 0; k < count; ++k) {
    float s[2];
    codebook_lloyd_ref(x, w, n, values, id[k], s);
    sxq[k] = s[0], sqq[k] = s[1];
  }
}

}  // namespace lowbit::kernel
