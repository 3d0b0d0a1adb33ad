// Quantize -> dequantize -> error, for reports and the demo.
#include "eval/roundtrip.h"

#include <cmath>
#include <vector>

namespace lowbit {

RoundTrip roundtrip(const Format& requested, const float* x, int64_t rows, int64_t K,
                    const float* imp) {
  const Format f = requested.resolve_for_row(K);
  RoundTrip r{.used = f};
  const uint64_t rb = f.row_bytes(K);
  std::vector<uint8_t> q(rb * uint64_t(rows));
  std::vector<float> y(size_t(rows * K));
  f.quantize(x, rows, K, imp, q.data());
  f.dequantize(q.data(), rows, K, y.data());
  r.bytes = q.size();
  r.elems = rows * K;
  for (int64_t i = 0; i < rows * K; ++i) {
    const double d = double(x[i]) - y[i];
    r.err2 += d * d;
    r.ref2 += double(x[i]) * x[i];
  }
  return r;
}

}  // namespace lowbit
