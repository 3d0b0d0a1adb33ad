#include "quant/output_error.h"

#include <cblas.h>

#include <vector>

namespace lowbit {

namespace {

void times_h(const float* D, int64_t R, int64_t K, const float* H, float* HD) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(R), int(K), int(K), 1.0f, D, int(K),
              H, int(K), 0.0f, HD, int(K));
}

}  // namespace

void row_output_errors(const float* D, int64_t R, int64_t K, const float* H, float* HD,
                       double* err) {
  times_h(D, R, K, H, HD);
  for (int64_t r = 0; r < R; ++r) {
    double e = 0;
    for (int64_t k = 0; k < K; ++k) e += double(HD[r * K + k]) * D[r * K + k];
    err[r] = e;
  }
}

double output_error(const float* D, int64_t R, int64_t K, const float* H) {
  std::vector<float> P(static_cast<size_t>(R * K));
  times_h(D, R, K, H, P.data());
  double e = 0;
  for (size_t i = 0; i < P.size(); ++i) e += double(P[i]) * D[i];
  return e;
}

}  // namespace lowbit
