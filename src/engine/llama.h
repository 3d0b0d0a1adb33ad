// The LLaMA-family forward pass, written out plainly (llama2.c style): embedding -> n_layer x
// (RMSNorm, attention with grouped-query heads and RoPE in GGUF's interleaved-pair layout, RMSNorm,
// SwiGLU feed-forward) -> RMSNorm -> output. One token per call with a KV cache; weights of any
// format are read through reference matrix-vector products (each row dequantized, then dotted).
// Speed comes later (the kernels issue) on this same structure.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

class LlamaEngine {
 public:
  // ctx: KV cache length (tokens); 0 = the model's training context.
  explicit LlamaEngine(const Model& m, int64_t ctx = 0);
  // Logits (n_vocab) for `token` at position `pos` (0-based; positions in order from 0).
  const std::vector<float>& forward(int32_t token, int64_t pos);
  int64_t context() const { return ctx_; }

 private:
  struct Layer {
    const ModelTensor *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *ffn_norm, *gate, *up, *down;
  };
  void attention(const Layer& L, int64_t layer, int64_t pos);
  void feed_forward(const Layer& L);

  const Model& m_;
  int64_t ctx_;
  const ModelTensor *embd_, *out_norm_, *output_, *rope_freqs_;
  std::vector<Layer> layers_;
  // Activations: x (dim), xb (dim), q (n_head*hd), k/v (n_kv*hd), att (ctx), hb/hb2 (n_ff)
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, att_, hb_, hb2_, logits_, row_;
  std::vector<float> k_cache_, v_cache_;  // (n_layer, ctx, n_kv*hd)
  std::vector<float> inv_freq_;           // (hd/2) RoPE frequencies, with rope_freqs applied
};

// Text of a token as SentencePiece-style vocabularies spell it: U+2581 -> space, <0xHH> -> the
// byte; control tokens decode to nothing.
std::string token_text(const TokenizerData& t, int32_t id);

}  // namespace lowbit
