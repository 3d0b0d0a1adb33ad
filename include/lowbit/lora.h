// LoRA adapters: low-rank updates W + scale · B·A of a model's linear layers, in memory and as
// files. The GGUF layout is llama.cpp's (llama-adapter.cpp reads it): general.type = "adapter",
// adapter.type = "lora", adapter.lora.alpha, and per adapted tensor "<base name>.lora_a" with
// ne [in, rank] and "<base name>.lora_b" with ne [rank, out]; Q/K rows in GGUF's RoPE layout, like
// the base's.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

struct LoraPair {
  int64_t rank = 0, in = 0, out = 0;  // A (rank, in), B (out, rank)
  std::vector<float> a, b;            // row-major
};

struct LoraAdapter {
  std::string path;  // where it was read from (messages)
  std::string arch;  // general.architecture of its base
  float alpha = 0;   // adapter.lora.alpha; 0: none (the product gets the user's scale)
  std::map<std::string, LoraPair> pairs;  // by the base tensor's name ("blk.0.attn_q.weight")
  // The factor of a pair's product: user_scale · alpha / rank (llama.cpp's rule).
  float scale(const LoraPair& p, float user_scale) const {
    return alpha != 0 ? user_scale * alpha / float(p.rank) : user_scale;
  }
};

// Reads an adapter: a GGUF LoRA (tensors in any format lowbit reads, decoded to F32), or a PEFT
// adapter (a directory with adapter_config.json and adapter_model.safetensors, or either file),
// which needs the model it is for (Hugging Face names and Q/K rows map to GGUF's through its
// configuration). Error naming the file, the field or tensor and its offset for anything else.
LoraAdapter read_lora(const std::string& path, const ModelConfig* model = nullptr);
// Writes a GGUF LoRA adapter for a base of architecture a.arch (F32 tensors, atomically).
void write_lora_gguf(const LoraAdapter& a, const std::string& path,
                     const std::vector<std::string>& inputs = {});
// Writes a as a PEFT adapter into dir (created): adapter_config.json (peft_type LORA, r,
// lora_alpha, target_modules) and adapter_model.safetensors with Hugging Face names and shapes
// (lora_A (r, in), lora_B (out, r)), Q/K rows back in the rotate-half layout of c. All pairs must
// share one rank. base: base_model_name_or_path.
void write_lora_peft(const LoraAdapter& a, const ModelConfig& c, const std::string& dir,
                     const std::string& base = "");
// Checks that a fits m: the same architecture, every base tensor present with shape (out, in).
// Error naming the adapter's file and the tensor.
void check_lora(const LoraAdapter& a, const Model& m);
// Merges a into m's weights: each adapted tensor becomes F32 W + a.scale(pair, scale) · B·A (W
// decoded from its format; the new values owned by m). Checked first (check_lora).
void merge_lora(Model& m, const LoraAdapter& a, float scale = 1.0f);

}  // namespace lowbit
