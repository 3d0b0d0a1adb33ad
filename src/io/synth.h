// Synthetic models of real shapes (TinyLlama-1.1B, Llama-2-7B, Llama-3-8B, Qwen2-0.5B or any custom
// one): GGUF files llama.cpp also loads, with weights drawn from N(0, 0.02²) (norm weights 1) and a
// synthetic SentencePiece-style vocabulary. Speed does not depend on the weights' values, so speed
// benchmarks run on these. Written streaming, a chunk of rows at a time: a 7B model is never in
// memory. Deterministic: row r of tensor "name" depends only on (seed, name, r), never on threads,
// chunking or the storage format (an f16 and a q4_0 file of one seed hold the same weights).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/model.h"
#include "lowbit/tokenizer_data.h"

namespace lowbit {

// The named shapes, in the order `lowbit synth --help` lists them.
const std::vector<std::string>& synth_shape_names();
// The hyper-parameters of a named shape; throws Error listing the known names otherwise.
ModelConfig synth_shape(std::string_view name);
// Throws Error naming the CLI option (--dim, --heads, ...) when c cannot make a model: sizes out of
// range, heads not dividing the embedding (without an explicit head_dim), kv heads not dividing
// heads, odd head_dim, a vocabulary too small for the synthetic tokenizer (kSynthMinVocab).
void validate_synth_config(const ModelConfig& c);

// <unk>, <s>, </s> and the 256 byte tokens come first.
inline constexpr int64_t kSynthMinVocab = 3 + 256;
// tokenizer.ggml.model "llama": <unk> (0), <s> (1, BOS), </s> (2, EOS), <0x00>..<0xFF> (byte
// tokens), then unique filler pieces "▁t<id>" up to n_vocab.
TokenizerData synth_tokenizer(int64_t n_vocab);

struct SynthOptions {
  Format type = Format::parse("f16");  // every weight matrix (falls back where rows don't tile)
  std::optional<Format> output_type;   // output.weight (or the tied embedding), default `type`
  uint64_t seed = 0;
  double stddev = 0.02;  // of every weight matrix and bias
  bool show_progress = false;
};

struct SynthTensor {
  std::string name;
  std::vector<int64_t> shape;  // outermost first, as ModelTensor
  Format wanted, to;           // to != wanted: the rows don't tile, fallback_for chose `to`
  uint64_t bytes = 0;
  int64_t elements() const;
};

// The tensors a model of config c holds, in file order, with the format each is written in.
std::vector<SynthTensor> synth_plan(const ModelConfig& c, const SynthOptions& o);

struct SynthResult {
  std::vector<SynthTensor> tensors;
  uint64_t tensor_bytes = 0;
  int64_t parameters = 0;
};

// Validates c and writes the model to `path` (temporary name, renamed when complete).
SynthResult write_synth_model(const ModelConfig& c, const std::string& path, const SynthOptions& o);

}  // namespace lowbit
