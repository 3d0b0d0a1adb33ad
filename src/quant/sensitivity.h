// Per-tensor sensitivity (the planner's input, like EXL2's measurement pass): for every weight
// matrix and every candidate format, the damage when only that tensor is quantized, with its
// bytes. Damage = KL divergence of the output distribution against the original on calibration
// chunks (scored positions as perplexity scores them), measured layer-wise: the inputs of layer
// L are computed once, so a variant of a layer-L tensor reruns only layers L.. and the head.
// Alongside, a cheap proxy: the layer-output error E = Σ_rows Δw H Δwᵀ / tokens, H = Σ x xᵀ of
// the tensor's inputs (the untied token embedding: Σ_v count_v ‖Δw_v‖² / tokens). Metric kProxy
// measures one KLD per tensor (at the candidate nearest 4 bits) and scales E by it.
// Candidates resolve through fallback_for per tensor (so each tiles); duplicates are measured once.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "lowbit/model.h"
#include "quant/methods.h"
#include "quant/plan.h"
#include "quant/quantize.h"

namespace lowbit {

enum class SensitivityMetric { kKld, kProxy };

struct SensitivityOptions {
  std::vector<Format> formats;  // empty = default_ladder()
  FallbackPolicy fallback = FallbackPolicy::kAuto;
  // How each variant is quantized: rtn (plain), imatrix (importance-weighted RTN) or gptq (with
  // the Hessian of the original model's inputs). awq / smoothquant measure as imatrix,
  // awq+gptq as gptq. The output head takes imatrix RTN, an untied embedding plain RTN, as the
  // methods do.
  Method method = Method::kRtn;
  SensitivityMetric metric = SensitivityMetric::kKld;
  GptqOptions gptq;
};

struct SensitivityEntry {
  Format format;                       // as stored (after fallback)
  std::vector<std::string> requested;  // the candidates that resolved to it
  uint64_t bytes = 0;
  double kld = NAN;  // mean KL(original || variant) per scored position; NaN if
                     // not measured
  double proxy = 0;  // mean squared layer-output error per token
  double cost = 0;   // what the planner minimises (nats of KLD, estimated)
};

struct TensorSensitivity {
  std::string name;
  int64_t rows = 0, K = 0;
  std::vector<SensitivityEntry> entries;  // by increasing bytes
};

struct Sensitivity {
  std::string model, calib, method, metric;
  std::string command;  // the command line that measured it (for lowbit report), "" = unknown
  int64_t chunks = 0, ctx = 0, params = 0;
  std::vector<std::string> formats;  // the candidates asked for
  std::vector<TensorSensitivity> tensors;
  double spearman_proxy = NAN;   // rank correlation of E and KLD over all measured entries
  double spearman_scaled = NAN;  // ... of the per-tensor scaled E (metric kProxy's cost)
  double seconds = 0;

  void save(const std::string& path) const;
  static Sensitivity load(const std::string& path);
};

// The planner's candidate sets (docs/mixed_precision.md):
// - gguf_ladder(), the default: GGUF types llama.cpp loads, from q2_k to f16 (k-quants fall back
//   to 32-block GGUF types on rows they cannot tile, then to f16);
// - lowbit_ladder(): lowbit's grouped formats on the size/damage frontier of uniform files
//   (int2_g32 .. int8_g32, nf4, iq4_nl, f16; ragged last groups tile every row);
// - all_ladders(): both (measure once, plan over either).
std::vector<Format> gguf_ladder();
std::vector<Format> lowbit_ladder();
std::vector<Format> all_ladders();
inline std::vector<Format> default_ladder() {
  return gguf_ladder();
}
// "int3_g32,q4_0,f16" -> formats; the set names gguf, lowbit and all stand for their ladders
// ("gguf,int3_g32" is the GGUF ladder and int3_g32). Throws Error naming the bad item.
std::vector<Format> parse_format_list(const std::string& list);

using SensitivityProgress = std::function<void(int64_t done, int64_t total)>;
Sensitivity measure_sensitivity(const Model& m, const Chunks& calib, const SensitivityOptions& o,
                                const SensitivityProgress& progress = {});

// The KL divergence on calibration chunks c (mean per scored position, as the measurement's) of m
// with its weight matrices quantized as each assignment says (tensor name -> format; unnamed
// tensors stay as they are), every variant made as measure_sensitivity makes it (o.method; GPTQ
// with the Hessians of the original model's inputs). Layer by layer, all assignments together:
// about one forward pass of the original per assignment, plus two. The planner's check of a plan
// against uniform files.
std::vector<double> assignment_klds(const Model& m, const Chunks& c,
                                    const std::vector<std::map<std::string, Format>>& assignments,
                                    const SensitivityOptions& o);

// The planner's input for m's weight matrices: the measured entries of the candidate formats
// `formats` (each through fallback_for(fb), as the measurement resolved them; a measurement of
// the union serves any subset). Throws Error (naming `path`) when the measurement does not fit m
// (a tensor missing or of another shape, a format that does not tile) or did not measure one of
// the candidates (the message names what it did measure).
std::vector<TensorCandidates> candidates_of(const Sensitivity& s, const Model& m,
                                            const std::string& path,
                                            const std::vector<Format>& formats,
                                            FallbackPolicy fb = FallbackPolicy::kAuto);

// Calibration chunks: the first `tokens` tokens of a text file cut into chunks of `ctx` positions
// (BOS first where the model uses it), as perplexity cuts them. Throws Error naming the file.
Chunks calibration_chunks(const Model& m, const std::string& file, int64_t ctx, int64_t tokens);

// Spearman's rank correlation (average ranks for ties).
double spearman(const std::vector<double>& a, const std::vector<double>& b);

}  // namespace lowbit
