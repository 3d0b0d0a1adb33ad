// Whole-model quantization (round-to-nearest for now; the methods issue adds imatrix, GPTQ,
// AWQ on the same plan): which format each tensor gets, then a streamed GGUF write.
// Policy: every 2-D weight matrix gets --type, or its own override for the token embedding and
// the output; 1-D tensors (norms, biases, rope_freqs) stay F32. A matrix whose rows the format
// cannot tile falls back: within GGUF's own types (down to F16) when the requested types are
// all GGUF types, so llama.cpp loads the file; else along lowbit's chain (ragged groups).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/model.h"

namespace lowbit {

enum class FallbackPolicy { kAuto, kGgml, kLowbit };

struct QuantizeOptions {
  Format type;                             // weight matrices
  std::optional<Format> token_embedding_type;
  std::optional<Format> output_type;       // output.weight (or the tied embedding)
  FallbackPolicy fallback = FallbackPolicy::kAuto;
  // Per-tensor choices by exact name (mixed precision: --tensor-type, recipes, the planner);
  // they take precedence over everything above.
  std::map<std::string, Format> per_tensor;
};

struct TensorPlan {
  std::string name;
  Format from, to;
  Format wanted;        // what the options asked for (to != wanted: a fallback)
  int64_t params = 0;
  uint64_t bytes = 0;   // stored bytes in `to`
};

// The format each tensor will be written in, in the model's tensor order.
std::vector<TensorPlan> plan_quantization(const Model& m, const QuantizeOptions& o);

// Plans and writes `path` (GGUF). Returns the plan.
std::vector<TensorPlan> quantize_model(const Model& m, const std::string& path,
                                       const QuantizeOptions& o, bool show_progress = false);

// The format of rows of length K nearest to `want` that tiles them under `policy`.
Format fallback_for(const Format& want, int64_t K, FallbackPolicy policy);

}  // namespace lowbit
