// Scalar reference matmul: decode a row of W, dot it with each of the N activation rows.
#include <vector>

#include "kernel/matmul.h"
#include "lowbit/threads.h"

namespace lowbit {

void matmul_ref(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x,
                int64_t N, float* y) {
  const uint64_t rb = f.row_bytes(K);
  // Chunks of >= 16 rows keep threads busy on big layers without splitting tiny ones.
  parallel_for(M, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      f.dequantize_row(w + uint64_t(r) * rb, K, row.data());
      for (int64_t n = 0; n < N; ++n) {
        const float* xn = x + n * K;
        float s = 0;
        for (int64_t k = 0; k < K; ++k) s += row[size_t(k)] * xn[k];
        y[n * M + r] = s;
      }
    }
  });
}

// Only the reference exists so far; the ISA-specific kernels plug in here.
void matmul(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
            float* y) {
  matmul_ref(f, w, M, K, x, N, y);
}

}  // namespace lowbit
