// Loaders behind Model::load that live in their own files.
#pragma once

#include <string>

#include <cstdint>

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

}  // namespace lowbit
