// The output error of weight changes over calibration inputs: for a row δ of ΔW, δ H δᵀ with
// H = Σ x xᵀ is Σ_x (δ · x)², the squared change of that output summed over the inputs. One
// product ΔW · H (sgemm, on the calling thread's BLAS threads) gives every row's.
#pragma once

#include <cstdint>

namespace lowbit {

// err[r] = δ_r H δ_rᵀ for the R rows of D (R, K); H (K, K) row-major; HD: R * K floats of scratch.
void row_output_errors(const float* D, int64_t R, int64_t K, const float* H, float* HD,
                       double* err);

// Σ_r δ_r H δ_rᵀ, summed element by element in one pass (the sum the AWQ scale search and the
// sensitivity proxy use).
double output_error(const float* D, int64_t R, int64_t K, const float* H);

}  // namespace lowbit
