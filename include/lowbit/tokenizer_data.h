// Tokenizer data as GGUF stores it (tokenizer.ggml.*), read from any of the files models ship
// with: llama2.c tokenizer.bin, SentencePiece .model, Hugging Face tokenizer.json (+
// tokenizer_config.json). The engine's tokenizer and the GGUF writer consume only this.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace lowbit {

// GGUF token types (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct TokenizerData {
  std::string model;                 // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2"
  std::string pre;                   // tokenizer.ggml.pre ("default", "llama-bpe", "qwen2", ...); may be empty
  std::vector<std::string> tokens;   // UTF-8 pieces (SentencePiece: with U+2581 for spaces)
  std::vector<float> scores;         // one per token, or empty
  std::vector<int32_t> token_types;  // TokenType values, one per token, or empty
  std::vector<std::string> merges;   // BPE merges "left right", or empty
  std::optional<uint32_t> bos_id, eos_id, unk_id, pad_id;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  bool byte_fallback = false;        // SentencePiece-style <0xXX> tokens present / used
};

// Each loader validates what it reads (ids in range, no duplicate tokens, valid UTF-8, merges
// naming known tokens, sizes checked before allocation) and throws lowbit::Error naming the file,
// the field and the offset.
TokenizerData load_llama2c_tokenizer(const std::string& path, int64_t vocab_size);
TokenizerData load_sentencepiece_model(const std::string& path);
// tokenizer.json; tokenizer_config.json beside it (if present) supplies add_bos/add_eos.
TokenizerData load_hf_tokenizer(const std::string& tokenizer_json_path);
// Checks data from any source (GGUF metadata, lowbit's safetensors metadata, the loaders):
// tokens valid UTF-8 and unique, scores / token types one per token (or none), scores finite,
// types 1..6, byte tokens spelled <0xHH>, special ids in range, merges "left right" of known
// tokens. An empty tokenizer (no tokens) is valid: the model simply carries none.
void validate_tokenizer_data(const TokenizerData& t, const std::string& file);

// The tokenizer.ggml.* metadata of any GGUF (also vocabulary-only files), validated.
TokenizerData load_gguf_tokenizer(const std::string& path);

// Loads whichever the path is (by name/content); the dispatcher for --tokenizer.
TokenizerData load_tokenizer(const std::string& path, int64_t vocab_size);
// The tokenizer file beside a checkpoint: tokenizer.json, tokenizer.model, tok*.bin, tok*.model
// in that order of preference; empty string if none.
std::string find_tokenizer_beside(const std::string& model_path);

}  // namespace lowbit
