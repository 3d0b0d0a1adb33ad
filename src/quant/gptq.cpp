// GPTQ: see gptq.h. Shape legend: R = rows in a worker's chunk, K = columns, B = batch columns.
#include "quant/gptq.h"

#include <cblas.h>
#include <lapacke.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/threads.h"
#include "quant/blas_threads.h"

namespace lowbit {

namespace {

// Byte offset of block b of a row of K values in format f.
struct RowLayout {
  int64_t be;                    // block length
  std::vector<int64_t> begin;    // first column of each block
  std::vector<uint64_t> offset;  // byte offset of each block in the row
  std::vector<int64_t> block_of; // column -> block
};

RowLayout layout(const Format& f, int64_t K) {
  RowLayout l{f.block_elems(K), {}, {}, std::vector<int64_t>(static_cast<size_t>(K))};
  uint64_t off = 0;
  for (int64_t k0 = 0, b = 0; k0 < K; k0 += l.be, ++b) {
    const int64_t n = std::min(l.be, K - k0);
    l.begin.push_back(k0), l.offset.push_back(off);
    for (int64_t k = k0; k < k0 + n; ++k) l.block_of[size_t(k)] = b;
    off += f.info().block_bytes(n);
  }
  return l;
}

}  // namespace

void gptq_inverse_factor(const double* H, int64_t K, double damp,
                         const std::vector<int64_t>& perm, std::vector<float>& U) {
  std::vector<double> A(static_cast<size_t>(K * K));
  auto p = [&](int64_t i) { return perm.empty() ? i : perm[size_t(i)]; };
  double mean_diag = 0;
  for (int64_t i = 0; i < K; ++i) mean_diag += H[i * K + i];
  mean_diag = mean_diag > 0 ? mean_diag / double(K) : 1.0;
  for (int64_t i = 0; i < K; ++i) {
    for (int64_t j = 0; j < K; ++j) A[size_t(i * K + j)] = H[p(i) * K + p(j)];
  }
  for (int64_t i = 0; i < K; ++i) {
    double& d = A[size_t(i * K + i)];
    if (d <= 0) d = mean_diag;  // a dead input: its (zeroed) weights cost nothing
  }
  // Damping, raised tenfold until H is positive definite (rank-deficient calibration data).
  for (double dmp = std::max(damp, 1e-8);; dmp *= 10) {
    std::vector<double> L = A;
    for (int64_t i = 0; i < K; ++i) L[size_t(i * K + i)] += dmp * mean_diag;
    // H = L Lᵀ, H⁻¹ from L, then H⁻¹ = Uᵀ U with U upper.
    if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', int(K), L.data(), int(K)) == 0 &&
        LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', int(K), L.data(), int(K)) == 0) {
      for (int64_t i = 0; i < K; ++i) {
        for (int64_t j = i + 1; j < K; ++j) L[size_t(i * K + j)] = L[size_t(j * K + i)];
      }
      if (LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', int(K), L.data(), int(K)) == 0) {
        U.assign(size_t(K * K), 0.0f);
        for (int64_t i = 0; i < K; ++i) {
          for (int64_t j = i; j < K; ++j) U[size_t(i * K + j)] = float(L[size_t(i * K + j)]);
        }
        return;
      }
    }
    if (dmp > 1e3) {
      throw Error("the Hessian cannot be made positive definite", {.field = "hessian",
                  .expected = "calibration data with finite activations"});
    }
  }
}

void gptq_quantize(const Format& f, float* W, int64_t rows, int64_t K, const double* H,
                   const GptqOptions& o, uint8_t* out) {
  LOWBIT_CHECK(f.can_tile(K), "gptq_quantize: the format must tile the rows");
  const FormatInfo& info = f.info();
  const RowLayout lay = layout(f, K);
  const uint64_t rb = f.row_bytes(K);
  std::vector<float> imp(static_cast<size_t>(K));
  std::vector<int64_t> perm(static_cast<size_t>(K));
  std::iota(perm.begin(), perm.end(), 0);
  for (int64_t k = 0; k < K; ++k) {
    imp[size_t(k)] = float(std::max(H[k * K + k], 0.0));
    if (H[k * K + k] <= 0) {
      for (int64_t r = 0; r < rows; ++r) W[r * K + k] = 0;  // never seen a non-zero input
    }
  }
  if (o.act_order) {
    std::stable_sort(perm.begin(), perm.end(),
                     [&](int64_t a, int64_t b) { return H[a * K + a] > H[b * K + b]; });
  }
  std::vector<float> U;
  gptq_inverse_factor(H, K, o.damp, o.act_order ? perm : std::vector<int64_t>{}, U);
  const int64_t B = std::max<int64_t>(1, (std::max<int64_t>(o.batch, lay.be) + lay.be - 1) /
                                             lay.be) * lay.be;
  // Rows are split over OpenMP threads already: one BLAS thread inside, and the caller's setting
  // back afterwards (calibration's Hessian products run threaded between calls).
  const SingleBlasThread one_blas_thread;

  parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
    const int64_t R = r1 - r0;
    std::vector<float> w(static_cast<size_t>(R * K)), q(size_t(R * K)), err(size_t(R * B));
    for (int64_t r = 0; r < R; ++r) {  // w in processing (permuted) order
      for (int64_t t = 0; t < K; ++t) w[size_t(r * K + t)] = W[(r0 + r) * K + perm[size_t(t)]];
    }
    auto block_ptr = [&](int64_t r, int64_t b) { return out + uint64_t(r0 + r) * rb + lay.offset[size_t(b)]; };
    auto fit_block = [&](int64_t r, int64_t b, const float* x) {
      const int64_t k0 = lay.begin[size_t(b)], n = std::min(lay.be, K - k0);
      info.fit(x, imp.data() + k0, n, block_ptr(r, b));
    };
    if (o.act_order) {  // every block fitted up front from the original weights
      for (int64_t r = 0; r < R; ++r) {
        for (size_t b = 0; b < lay.begin.size(); ++b) fit_block(r, int64_t(b), W + (r0 + r) * K + lay.begin[b]);
      }
    }
    std::vector<float> cur(static_cast<size_t>(lay.be));
    for (int64_t i1 = 0; i1 < K; i1 += B) {
      const int64_t i2 = std::min(K, i1 + B);
      for (int64_t t = i1; t < i2; ++t) {
        const int64_t col = perm[size_t(t)], b = lay.block_of[size_t(col)];
        const int64_t k0 = lay.begin[size_t(b)], n = std::min(lay.be, K - k0);
        const float d = U[size_t(t * K + t)];
        for (int64_t r = 0; r < R; ++r) {
          float* wr = &w[size_t(r * K)];
          if (!o.act_order && col == k0) fit_block(r, b, wr + t);  // columns t.. are the block
          const float x = wr[t];
          const float v = info.round_value(x, block_ptr(r, b), n, col - k0);
          q[size_t(r * K + col)] = v;
          const float e = (x - v) / d;
          const float* u = &U[size_t(t * K)];
          for (int64_t s = t + 1; s < i2; ++s) wr[s] -= e * u[s];
          err[size_t(r * B + (t - i1))] = e;
        }
      }
      if (i2 < K) {  // w[:, i2:] -= err (R, i2-i1) · U[i1:i2, i2:]
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(R), int(K - i2), int(i2 - i1),
                    -1.0f, err.data(), int(B), &U[size_t(i1 * K + i2)], int(K), 1.0f,
                    &w[size_t(i2)], int(K));
      }
    }
    for (int64_t r = 0; r < R; ++r) {  // codes of the final values under the fitted parameters
      for (size_t b = 0; b < lay.begin.size(); ++b) {
        const int64_t k0 = lay.begin[b], n = std::min(lay.be, K - k0);
        info.encode(&q[size_t(r * K + k0)], n, block_ptr(r, int64_t(b)));
      }
    }
  });
}

}  // namespace lowbit
