// Quantization methods beyond round-to-nearest, layer by layer (sequential): calibration text is
// embedded once; then for each layer L, the inputs of L's linear layers are collected by running
// L on the activations that the already-quantized layers < L produced, L's weights are quantized
// (imatrix RTN, GPTQ, AWQ, AWQ then GPTQ, or SmoothQuant's smoothing then imatrix RTN), and the
// activations are pushed through the quantized L for the next layer. imatrix and AWQ end in the
// weighting search (clip.h: three weightings of each row's fit, the least output error kept). The
// output head gets importance-weighted RTN from the final norm's statistics (with the weighting
// search under imatrix and AWQ); an untied token embedding (a lookup, no inputs) plain RTN.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "eval/perplexity.h"
#include "lowbit/model.h"
#include "quant/calibrate.h"
#include "quant/clip.h"
#include "quant/gptq.h"
#include "quant/quantize.h"

namespace lowbit {

enum class Method { kRtn, kImatrix, kGptq, kAwq, kAwqGptq, kSmoothQuant };
// rtn imatrix gptq awq awq+gptq smoothquant
Method parse_method(const std::string& name);
const char* method_name(Method m);

struct MethodOptions {
  Method method = Method::kRtn;
  GptqOptions gptq;
  int awq_grid = 20;     // α ∈ {0, 1/grid, ..., (grid-1)/grid}
  ClipOptions clip;      // awq: the clipping search after the scales (grid 0 = off)
  bool clip_qk = false;  // awq: clip attn_q / attn_k too (AWQ leaves them out)
  // SmoothQuant (Xiao et al. 2022) migration strength: s_j = max|x_j|^α / max|w_j|^(1-α).
  double sq_alpha = 0.5;
  const Importance* imatrix = nullptr;  // imatrix: use these instead of calibrating
};

// Progress: (layer done, layers total).
using LayerProgress = std::function<void(int64_t done, int64_t total)>;

// Quantizes m with the method into `path` (GGUF). calib: the calibration chunks (needed by every
// method but rtn, and by imatrix without an importance file). Returns the plan.
std::vector<TensorPlan> quantize_with_method(const Model& m, const std::string& path,
                                             const QuantizeOptions& q, const MethodOptions& mo,
                                             const Chunks* calib,
                                             const LayerProgress& progress = {});

}  // namespace lowbit
