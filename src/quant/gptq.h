// GPTQ (Frantar et al. 2022) against the format interface, so it drives every weight format.
// For W (rows, K) and the Hessian H = Σ x xᵀ of the layer's inputs (K, K): columns are quantized
// one at a time and each one's rounding error, scaled by the inverse Hessian, is pushed onto the
// columns not yet quantized (the Optimal Brain Surgeon update), in batches of >= 128 columns with
// a lazy GEMM update of the rest. A block's parameters (scales, minimums) are fitted from the
// error-updated weights when its first column is reached, weighted by diag(H) (the importance);
// with act_order, columns go in descending diag(H) and every block's parameters are fitted
// beforehand from the original weights, so the result is an ordinary file of that format.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/format.h"

namespace lowbit {

struct GptqOptions {
  double damp = 0.01;      // added to diag(H): damp * mean(diag(H))
  int64_t batch = 128;     // columns per lazy update (rounded up to a multiple of the block)
  bool act_order = false;
};

// W: (rows, K) float weights, overwritten (destroyed). H: (K, K) row-major, symmetric, any
// positive scale (Σ x xᵀ over tokens). f must tile K. out: rows * f.row_bytes(K) bytes.
// Threaded over rows (GPTQ treats rows independently). Throws Error if H cannot be made
// positive definite.
void gptq_quantize(const Format& f, float* W, int64_t rows, int64_t K, const double* H,
                   const GptqOptions& o, uint8_t* out);

// The upper Cholesky factor U of H⁻¹ (after dead-column handling and damping), in the column
// order `perm` (identity if empty): what GPTQ's updates use. Exposed for tests. (K, K) floats.
void gptq_inverse_factor(const double* H, int64_t K, double damp,
                         const std::vector<int64_t>& perm, std::vector<float>& U);

}  // namespace lowbit
