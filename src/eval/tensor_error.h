// Per-tensor error of a quantized model against its original: both are dequantized a chunk of
// rows at a time (never a whole model in memory), tensors matched by name, sums kept in double.
// Both models must describe the same architecture and hold the same tensors with the same shapes;
// their row orders must agree (Model::load puts every source in GGUF order, see model.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/model.h"

namespace lowbit {

// sqrt(err2 / ref2); 0 when both are 0 (an all-zero tensor reproduced exactly).
inline double relative_error(double err2, double ref2) {
  if (err2 == 0) return 0.0;
  return ref2 > 0 ? std::sqrt(err2 / ref2) : std::numeric_limits<double>::infinity();
}
// 10 log10(ref2 / err2) in dB; +inf when err2 == 0 (identical weights).
inline double snr_db(double err2, double ref2) {
  if (err2 == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(ref2 / err2);
}

struct TensorError {
  std::string name;            // "blk.0.attn_q.weight"
  Format format;               // the quantized model's storage format
  std::vector<int64_t> shape;  // outermost first (same in both models)
  int64_t params = 0;
  uint64_t bytes = 0;                                // stored bytes in the quantized model
  double bits_per_weight = 0;                        // 8 bytes / params
  double err2 = 0;                                   // sum (w_quant - w_orig)^2
  double ref2 = 0;                                   // sum w_orig^2
  bool matrix() const { return shape.size() >= 2; }  // a weight matrix (not a norm or bias)
  double rel_error() const { return relative_error(err2, ref2); }
  double snr_db() const { return lowbit::snr_db(err2, ref2); }
};

// The sum over a set of tensors: the error of their weights taken as one concatenated vector.
struct ErrorTotal {
  int64_t tensors = 0;
  int64_t params = 0;
  uint64_t bytes = 0;
  double err2 = 0, ref2 = 0;
  double bits_per_weight() const { return params ? 8.0 * double(bytes) / double(params) : 0.0; }
  double rel_error() const { return relative_error(err2, ref2); }
  double snr_db() const { return lowbit::snr_db(err2, ref2); }
};

// One entry per tensor of `quant`, in its order. Throws Error (naming both files and the tensor)
// when the configurations differ, a tensor is in one model only, or shapes differ. One exception:
// quant's output.weight is compared with a tied original's token_embd.weight (converters store
// the tied matrix twice).
// Threaded over rows; the result does not depend on the thread count.
std::vector<TensorError> compare_tensors(const Model& quant, const Model& original,
                                         const std::string& quant_file,
                                         const std::string& original_file);

// Totals over the weight matrices (TensorError::matrix()) of a comparison.
ErrorTotal total_of_matrices(const std::vector<TensorError>& errors);

}  // namespace lowbit
