// Hugging Face quantized checkpoints: GPTQ (AutoGPTQ / GPTQModel v1), AWQ (AutoAWQ GEMM) and
// compressed-tensors (llm-compressor's pack-quantized and int-quantized), written from a model
// whose weight matrices are in grouped integer formats, without a second rounding. Reading them is
// part of Model::load (a folder whose config.json has a quantization_config): the integer codes
// and scales are kept as they are.
//
// The packings, as the published readers unpack them (rows = output features n, K = inputs k):
//   GPTQ  qweight  int32 [K*b/32, N]: column n is the LSB-first bit stream of q[n][0..K) in 32-bit
//                  words (3 bits: values cross word boundaries); qzeros int32 [G, N*b/32]: the
//                  same stream along n of (zero - 1) mod 2^b; scales fp16 [G, N]; g_idx int32 [K].
//                  W[n][k] = scales[g][n] * (q - (stored zero + 1)), g = g_idx[k].
//   AWQ    qweight  int32 [K, N/8]: word c of input k holds q[8c + order[i]][k] in bits 4i..4i+3,
//                  order = 0 2 4 6 1 3 5 7; qzeros int32 [G, N/8] the same order, zeros as is;
//                  scales fp16 [G, N]. 4 bits only.
//   compressed-tensors pack-quantized: weight_packed int32 [N, ceil(K/(32/b))], 32/b codes per
//                  word from the low bits, codes as unsigned (signed + 2^(b-1)); weight_scale
//                  [N, G]; weight_shape [2] = {N, K}; weight_zero_point int32 [ceil(N/(32/b)), G]
//                  packed along n (asymmetric only). int-quantized: weight int8 [N, K] signed,
//                  weight_scale [N, G], optional weight_zero_point int8 [N, G].
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/model.h"

namespace lowbit {

enum class HfScheme { kGptq, kAwq, kCompressedTensors };

std::optional<HfScheme> parse_hf_scheme(std::string_view name);  // gptq, awq, compressed-tensors
std::string_view hf_scheme_name(HfScheme s);

struct HfExportOptions {
  HfScheme scheme = HfScheme::kGptq;
  // Tensors that are not quantized linear layers (embeddings, norms, the head) keep f16 / bf16 /
  // f32 storage as they are; tensors in other formats are decoded into this type.
  Format float_type = Format::parse("f16");
  uint64_t max_shard_bytes = 5'000'000'000;  // Hugging Face's default: 5 GB per shard
  // compressed-tensors: declare dynamic per-token int8 activations (W8A8, int-quantized). nullopt:
  // when every quantized linear layer is int8 with one scale per row (SmoothQuant's output).
  std::optional<bool> int8_activations;
  bool show_progress = false;
};

struct HfExportResult {
  std::vector<std::string> files;  // written, config.json last
  std::vector<std::string> notes;  // what was decoded into float_type, what was declared
  uint64_t tensor_bytes = 0;
};

// Writes `dir`/config.json (with quantization_config), model.safetensors (or shards of at most
// max_shard_bytes plus model.safetensors.index.json), and the tokenizer files found beside the
// model's sources. Throws Error before writing anything when a linear layer has no such layout
// (naming each tensor, its format, and the formats that map), or when the files would overwrite
// an input.
HfExportResult write_hf_quantized(const Model& m, const std::string& dir, const HfExportOptions& o);

// t's rows in format `to` when both formats hold the same integer grid: the same bits and groups,
// and zero points `to` can store (int4_g32 <-> q4_0, int8_g32 <-> q8_0, int4_g32_asym -> q4_1 when
// every minimum is exact). nullopt otherwise (then only re-quantizing reaches `to`).
std::optional<std::vector<uint8_t>> transcode_exact(const ModelTensor& t, const Format& to);

}  // namespace lowbit
