// AWQ's clipping search (Lin et al. 2023, after the scale search): for each block of each row, the
// block's range [min, max] is shrunk by ratios 1, 1 - 1/grid, ..., 1 - max_shrink; the clamped
// weights are quantized (the format's own fit + encode), and the candidate whose dequantized block
// has the least output error (w - ŵ)ᵀ H_b (w - ŵ) against the ORIGINAL weights is kept, where H_b
// is the block's diagonal block of H = Σ x xᵀ. Ratio 1 (plain fit) is always a candidate, so under
// that metric the result is never worse than the format's own importance-weighted fit. Drives every
// weight format through the format interface.
#pragma once

#include <cstdint>

#include "lowbit/format.h"

namespace lowbit {

struct ClipOptions {
  int grid = 20;            // ratio step 1/grid
  double max_shrink = 0.5;  // smallest ratio 1 - max_shrink
};

// W: (rows, K) floats; H: (K, K) row-major Σ x xᵀ (only the diagonal blocks are read); imp: the
// per-column importance the format's fit weighs by (K values, or nullptr); imp_stride K: a row of
// K weights per row instead (rows * K values). f must tile K. out: rows * f.row_bytes(K) bytes.
// Threaded over rows.
void clip_quantize(const Format& f, const float* W, int64_t rows, int64_t K, const double* H,
                   const float* imp, const ClipOptions& o, uint8_t* out, int64_t imp_stride = 0);

// imatrix-RTN's weighting search. Each row is fitted by the format under three weightings of its
// squared error: the importance imp (mean x² of the inputs, per column); imp_j · sqrt(σ² + w_j²)
// with σ² the row's mean w², which also favours the row's large weights; and none. The row keeps
// the candidate with the least output error δ H δᵀ (δ = ŵ - w) over the full H = Σ x xᵀ, so the
// result's summed output error is never above the plain importance-weighted fit's. W: (rows, K);
// H: (K, K) row-major; imp: K values or nullptr (then the plain fit, or with clip the clipping
// search alone); f must tile K. out: rows * f.row_bytes(K) bytes. clip (AWQ's final fit): then
// the clipping search runs under each row's winning weighting, and its result replaces the row
// where its output error is lower still.
void weighting_quantize(const Format& f, const float* W, int64_t rows, int64_t K, const double* H,
                        const float* imp, uint8_t* out, const ClipOptions* clip = nullptr);

}  // namespace lowbit
