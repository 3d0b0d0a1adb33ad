// Calibration: the statistics of every linear layer's inputs over real text. Per input group
// (q/k/v share one, gate/up share one, o and down have their own, and the output head): the
// per-channel sum of x² (importance, llama.cpp's imatrix), of |x| (AWQ) and optionally the full
// Hessian Σ x xᵀ (GPTQ). Saved in llama.cpp's GGUF imatrix layout so either tool reads the
// other's: tensors "<weight>.in_sum2" (ne [K, 1]) and "<weight>.counts" (ne [1, 1]).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/llama.h"
#include "eval/perplexity.h"
#include "lowbit/model.h"

namespace lowbit {

struct InputStats {
  int64_t K = 0, count = 0;              // channels, tokens seen
  std::vector<double> sum_sq, sum_abs;   // (K)
  std::vector<float> max_abs;            // (K) largest |x| seen (SmoothQuant)
  std::vector<double> xtx;               // (K, K) Σ x xᵀ when collected, else empty
  void add(const float* x, int64_t n, int64_t K, bool hessian);  // x (n, K)
  // add() fills xtx's upper triangle only; this copies it to the lower one (once collected).
  void mirror_hessian();
  std::vector<float> importance() const;                         // sum_sq / count
};

// The name of a linear input group: the first weight that reads it ("blk.3.attn_q.weight" for
// q/k/v, "blk.3.ffn_gate.weight" for gate/up, "output.weight" for the head).
std::string input_group(int64_t layer, LinearInput which);
// The input group a weight tensor reads; nullopt for tensors that are not linear layers
// (token_embd.weight of an untied model, norms, biases).
std::optional<std::string> input_group_of(const std::string& tensor, const Model& m);

using Calibration = std::map<std::string, InputStats>;  // by input group

// Runs m over the chunks and collects every group's statistics (Hessians too when asked).
Calibration calibrate(const Model& m, const Chunks& c, int64_t batch, bool hessian,
                      const ChunkProgress& progress = {});

// Per-weight importance (mean x² per input channel), as quantization consumes it.
using Importance = std::map<std::string, std::vector<float>>;  // by weight tensor name
Importance importance_of(const Calibration& cal, const Model& m);
// llama.cpp's GGUF imatrix (this writer's output, or llama-imatrix's), or its legacy .dat.
void save_imatrix(const Calibration& cal, const Model& m, const std::string& path,
                  const std::string& dataset, int64_t chunks, int64_t chunk_size);
Importance load_imatrix(const std::string& path);

}  // namespace lowbit
