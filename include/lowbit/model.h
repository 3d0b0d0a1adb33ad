// One model description for every file format: architecture hyper-parameters, tokenizer data,
// and the tensors by canonical (GGUF) name as views (format, shape, bytes) into mapped files --
// never copied unless converted (e.g. Hugging Face Q/K rows permuted to GGUF's RoPE layout).
// Shapes are outermost first: a weight matrix is (rows = output features, K = row length).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/tokenizer_data.h"

namespace lowbit {

struct ModelConfig {
  std::string arch = "llama";  // general.architecture: "llama" or "qwen2"
  std::string name;
  int64_t n_vocab = 0, n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0,
          n_ctx_train = 0;
  double rms_eps = 1e-5, rope_theta = 10000.0;
  bool tied_output = false;  // no output.weight: the token embedding is reused
  bool qkv_bias = false;     // Qwen2
  // RoPE style, fixed by the architecture as llama.cpp defines it: llama rotates interleaved
  // pairs (2i, 2i+1) of each head (Hugging Face Q/K rows are permuted on load); qwen2 rotates
  // halves (i, i + D/2), NeoX style, on the checkpoint's own row order.
  bool rope_neox = false;
  // Llama-3 RoPE frequency scaling (rope_type "llama3"); factor 0 = none.
  double rope_factor = 0, rope_low_freq_factor = 0, rope_high_freq_factor = 0;
  int64_t rope_original_ctx = 0;
};

struct ModelTensor {
  std::string name;  // "blk.3.attn_q.weight"
  Format format;
  std::vector<int64_t> shape;  // outermost first; shape.back() is the row length
  const uint8_t* data = nullptr;
  uint64_t bytes = 0;
  bool mapped = false;   // data lies in a read-only file mapping (pages can be dropped)
  int64_t rows() const;  // product of all but the last dimension
  int64_t row_length() const { return shape.back(); }
};

struct LoadOptions {
  std::string tokenizer_path;  // empty: the one inside the file, or found beside it
};

struct LoraAdapter;  // lowbit/lora.h
// An adapter applied to a model at run time, with the user's scale (--lora-scale).
struct AppliedLora {
  std::shared_ptr<const LoraAdapter> adapter;
  float scale = 1.0f;
};

class Model {
 public:
  // A .gguf, a llama2.c .bin, a .safetensors / model.safetensors.index.json, or a directory
  // holding a Hugging Face checkpoint (config.json + safetensors). Validates shapes against the
  // configuration (bad-inputs 10, 23, 33, 34).
  static Model load(const std::string& path, const LoadOptions& opts = {});

  ModelConfig config;
  TokenizerData tokenizer;
  std::vector<ModelTensor> tensors;
  std::vector<std::string> sources;  // every input file (an output may be none of these)
  // Adapters every engine over this model applies at run time (LlamaEngine), unmerged.
  std::vector<AppliedLora> loras;
  // What loading could not keep as stored (e.g. a quantized checkpoint's act-order layer decoded
  // into f32): one line each, for the commands to print.
  std::vector<std::string> notes;

  const ModelTensor* find(std::string_view name) const;
  uint64_t parameter_count() const;
  // Keeps mapped files and converted buffers alive as long as the views.
  std::vector<std::shared_ptr<const void>> owners;
};

// Throws Error naming `file` when a tensor's shape disagrees with the configuration or a
// required tensor is missing.
void validate_model(const Model& m, const std::string& file);

// Writes m as GGUF. Floating-point weight matrices (2-D) become `float_type` (f32, f16, bf16);
// 1-D tensors (norms, biases) stay f32; quantized tensors are copied as they are.
void write_gguf(const Model& m, const std::string& path, const Format& float_type,
                bool show_progress = false);
// The general form: each tensor written in target(t) (converted from its own format when they
// differ, a chunk of rows at a time), with extra metadata (key -> string value). `before` runs
// just before a tensor's data is written (it may produce it: replace data/format in m, which it
// can reach by name) and `after` right after (to free it): producers stream through the writer.
using TensorHook = std::function<void(const ModelTensor&)>;
void write_gguf(const Model& m, const std::string& path,
                const std::function<Format(const ModelTensor&)>& target,
                const std::vector<std::pair<std::string, std::string>>& extra_metadata,
                bool show_progress = false, const TensorHook& before = {},
                const TensorHook& after = {});
// An upper bound on the bytes of m's GGUF file outside its tensor data, whatever the tensors'
// formats: the header (metadata, tokenizer, tensor infos; a type id takes 4 bytes for every
// format), the keys the quantizers add, and the worst alignment padding. Size budgets subtract it.
uint64_t gguf_overhead_bound(const Model& m);
// Writes m as safetensors with Hugging Face names and Q/K back in the rotate-half layout, plus
// config.json beside it; the tokenizer data rides in __metadata__ so lowbit can read it back.
void write_safetensors(const Model& m, const std::string& path, const Format& float_type,
                       bool show_progress = false);

// The Hugging Face <-> GGUF row permutation of wq / wk (and their biases): rows of each head
// are reordered from rotate-half (HF) to interleaved pairs (GGUF llama), or back.
void permute_qk_rows(const float* in, float* out, int64_t rows, int64_t K, int64_t n_heads,
                     bool to_gguf);

}  // namespace lowbit
