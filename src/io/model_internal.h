// Loaders behind Model::load that live in their own files.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

// config.json + safetensors (single, sharded, or a directory), names mapped to GGUF's, wq/wk
// permuted to GGUF's RoPE layout, tokenizer from __metadata__ or the files beside it.
Model load_hf_checkpoint(const std::string& path, const LoadOptions& opts);

// Throws Error naming `file` when hyper-parameters are out of range or inconsistent
// (bad-inputs 10, 33): checked before any tensor is touched.
void validate_config(const ModelConfig& c, const std::string& file);

// Reorders the rows of a wq/wk weight (or a bias: row_bytes = one element) between Hugging
// Face's rotate-half layout and GGUF's interleaved pairs, head by head.
void permute_rows(const uint8_t* in, uint8_t* out, int64_t rows, uint64_t row_bytes,
                  int64_t n_heads, bool to_gguf);

// Hugging Face name of a GGUF tensor name ("blk.3.attn_q.weight" -> "model.layers.3.self_attn.
// q_proj.weight"); "" when it has none.
std::string hf_name_of(const std::string& gguf_name);
// config.json of m as Hugging Face writes it (architectures, sizes, rope, token ids).
nlohmann::json hf_config_json(const Model& m, std::string_view torch_dtype);
// lowbit's copy of the tokenizer for safetensors __metadata__ ("lowbit.tokenizer").
std::string tokenizer_metadata(const TokenizerData& t);

class SafetensorsModel;
// The quantized linear layers of a checkpoint whose config.json has a quantization_config (GPTQ,
// AWQ, compressed-tensors), as lowbit tensors under their Hugging Face weight names
// ("model.layers.0.self_attn.q_proj.weight"): the codes and scales kept exactly (grouped int
// formats, or q4_0 / q8_0 / q4_1 where those match), else decoded exactly into f32 (with a note).
// `consumed` holds the checkpoint tensors they came from. Throws Error naming file and tensor.
struct HfQuantized {
  std::vector<ModelTensor> tensors;
  std::set<std::string> consumed;
  std::vector<std::string> notes;
};
HfQuantized read_hf_quantized(const nlohmann::json& quantization_config, const SafetensorsModel& st,
                              const std::string& config_path,
                              std::vector<std::shared_ptr<const void>>& owners);

}  // namespace lowbit
