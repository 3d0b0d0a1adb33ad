// The kernel layer the engine multiplies through: y = x · Wᵀ for a weight matrix W of any format.
// Shape legend: M = rows of W (output features), K = row length (reduction), N = tokens.
// matmul() dispatches to the implementation chosen for this CPU; matmul_ref() is the scalar
// reference that defines the result (each row of W dequantized once, then dotted with every
// token's activations, so prompt processing reuses the decoded row across all N tokens).
#pragma once

#include <cstdint>

#include "lowbit/format.h"

namespace lowbit {

// w: M rows of f.row_bytes(K) bytes; x: (N, K) floats; y: (N, M) floats. Threaded over rows.
void matmul(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
            float* y);
void matmul_ref(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x,
                int64_t N, float* y);

}  // namespace lowbit
