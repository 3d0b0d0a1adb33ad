// llama2.c checkpoints (legacy header): 7 int32 (dim, hidden, layers, heads, kv heads, vocab --
// negative means an unshared classifier follows --, seq len), then float32 weights in a fixed
// order, the unused RoPE tables, and the classifier when unshared. Every size is validated in
// checked 64-bit arithmetic; the file size must equal what the header implies. Tensors are views
// into the mapped file, named with GGUF's canonical names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/mapped_file.h"

namespace lowbit {

struct Llama2cConfig {
  int32_t dim = 0, hidden_dim = 0, n_layers = 0, n_heads = 0, n_kv_heads = 0, vocab_size = 0,
          seq_len = 0;
  bool shared_classifier = true;
};

struct F32TensorView {
  std::string name;   // "blk.0.attn_q.weight"
  int64_t rows = 0;   // output features (1 for vectors)
  int64_t cols = 0;   // K: input features, the quantization axis
  const float* data = nullptr;  // (rows, cols), row-major, inside the mapped file
};

class Llama2cModel {
 public:
  explicit Llama2cModel(const std::string& path);
  const Llama2cConfig& config() const { return cfg_; }
  const std::vector<F32TensorView>& tensors() const { return tensors_; }

 private:
  MappedFile file_;
  Llama2cConfig cfg_;
  std::vector<F32TensorView> tensors_;
};

}  // namespace lowbit
