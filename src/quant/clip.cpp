#include "quant/clip.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/threads.h"

namespace lowbit {

void clip_quantize(const Format& f, const float* W, int64_t rows, int64_t K, const double* H,
                   const float* imp, const ClipOptions& o, uint8_t* out) {
  LOWBIT_CHECK(f.can_tile(K), "clip_quantize: the format cannot tile the row");
  LOWBIT_CHECK(o.grid >= 1 && o.max_shrink >= 0 && o.max_shrink < 1, "clip_quantize: bad options");
  const FormatInfo& info = f.info();
  const int64_t be = f.block_elems(K);
  const uint64_t row_bytes = f.row_bytes(K);
  const int steps = int(o.max_shrink * o.grid + 1e-9);
  std::vector<float> ones;
  if (!imp) ones.assign(static_cast<size_t>(K), 1.0f), imp = ones.data();
  parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
    std::vector<float> wc(static_cast<size_t>(be)), y(static_cast<size_t>(be));
    std::vector<double> d(static_cast<size_t>(be));
    std::vector<uint8_t> cand(info.block_bytes(be));
    for (int64_t r = r0; r < r1; ++r) {
      const float* w = W + r * K;
      uint8_t* dst = out + uint64_t(r) * row_bytes;
      for (int64_t k0 = 0; k0 < K; k0 += be) {
        const int64_t n = std::min(be, K - k0);
        const uint64_t bytes = info.block_bytes(n);
        const auto [lo, hi] = std::minmax_element(w + k0, w + k0 + n);
        double best = std::numeric_limits<double>::infinity();
        for (int i = 0; i <= steps; ++i) {
          const float ratio = float(1.0 - double(i) / o.grid);
          const float a = *lo * ratio, b = *hi * ratio;
          for (int64_t j = 0; j < n; ++j) wc[size_t(j)] = std::clamp(w[k0 + j], a, b);
          info.fit(wc.data(), imp + k0, n, cand.data());
          info.encode(wc.data(), n, cand.data());
          info.decode(cand.data(), n, y.data());
          for (int64_t j = 0; j < n; ++j) d[size_t(j)] = double(y[size_t(j)]) - w[k0 + j];
          double e = 0;  // dᵀ H_b d over the block's diagonal block of H
          for (int64_t p = 0; p < n; ++p) {
            const double* hp = H + (k0 + p) * K + k0;
            double s = 0;
            for (int64_t q = 0; q < n; ++q) s += hp[q] * d[size_t(q)];
            e += d[size_t(p)] * s;
          }
          if (i == 0 || e < best) best = e, std::memcpy(dst, cand.data(), bytes);
        }
        dst += bytes;
      }
    }
  });
}

}  // namespace lowbit
