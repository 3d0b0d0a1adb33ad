// Scalar float reference matmul: decode a row of W, dot it with each of the N f32 activation rows
// (dot_f32_ref: 8 partial sums, lane j adds the products k = j mod 8, then the lanes in order —
// a fixed, documented summation order that compilers can map onto vector registers).
#include <algorithm>
#include <vector>

#include "kernel/kernels.h"
#include "lowbit/threads.h"

namespace lowbit {

void matmul_ref(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
                float* y) {
  const uint64_t rb = f.row_bytes(K);
  // Threads only when each gets >= ~64k multiply-adds: small layers (and generation on tiny
  // models) are faster on one thread than with OpenMP's start-up and hand-off.
  const int64_t min_rows = std::max<int64_t>(16, (int64_t(1) << 16) / std::max<int64_t>(1, K * N));
  parallel_for(M, min_rows, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      f.dequantize_row(w + uint64_t(r) * rb, K, row.data());
      for (int64_t n = 0; n < N; ++n) y[n * M + r] = kernel::dot_f32_ref(row.data(), x + n * K, K);
    }
  });
}

}  // namespace lowbit
