// Round-trip error of a format on a weight matrix: quantize, dequantize, compare. The format is
// resolved for the row length first (fallback when its blocks cannot tile the rows).
#pragma once

#include <cmath>
#include <cstdint>

#include "lowbit/format.h"

namespace lowbit {

struct RoundTrip {
  Format used;            // the format actually applied (after fallback)
  uint64_t bytes = 0;     // quantized size
  int64_t elems = 0;
  double err2 = 0;        // sum (x - xhat)^2
  double ref2 = 0;        // sum x^2
  double rel_rmse() const { return ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0; }
  double bits_per_weight() const { return elems ? 8.0 * double(bytes) / double(elems) : 0.0; }
  RoundTrip& operator+=(const RoundTrip& o) {
    bytes += o.bytes, elems += o.elems, err2 += o.err2, ref2 += o.ref2;
    return *this;
  }
};

// x: (rows, K); imp: per-column importance (K) or nullptr.
RoundTrip roundtrip(const Format& requested, const float* x, int64_t rows, int64_t K,
                    const float* imp = nullptr);

}  // namespace lowbit
