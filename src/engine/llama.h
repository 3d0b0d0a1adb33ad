// The LLaMA-family forward pass, written out plainly (llama2.c style): embedding -> n_layer x
// (RMSNorm, attention with grouped-query heads and RoPE, RMSNorm, SwiGLU feed-forward) -> RMSNorm
// -> output. Evaluates a batch of consecutive tokens per call against a KV cache: prompt
// processing and perplexity multiply (tokens x K) activations by each weight (matrix-matrix),
// generation one token (matrix-vector). Weights of any format go through the kernel layer.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernel/matmul.h"
#include "lowbit/lora.h"
#include "lowbit/model.h"

namespace lowbit {

// The inputs of the linear layers, as calibration sees them: q/k/v share the attention norm's
// output, gate/up the feed-forward norm's; o and down have their own; the output head reads the
// final norm's output (layer = n_layer).
enum class LinearInput { kAttnQkv, kAttnOutput, kFfnGateUp, kFfnDown, kOutput };
// Called with x (n, K): the inputs of one linear group for n tokens.
using InputObserver =
    std::function<void(int64_t layer, LinearInput which, const float* x, int64_t n, int64_t K)>;

class LlamaEngine {
 public:
  // ctx: KV cache length (tokens); 0 = the model's training context. max_batch: tokens per
  // internal step (activation buffers scale with it; longer inputs are split).
  explicit LlamaEngine(const Model& m, int64_t ctx = 0, int64_t max_batch = 64);

  // Evaluates tokens[0..n) at positions pos0 .. pos0+n-1; positions 0 .. pos0-1 must be in the
  // cache already (evaluating from an earlier pos0 overwrites the cache from there on).
  // Returns (n, n_vocab) logits when all_logits, else the last token's (n_vocab).
  const std::vector<float>& eval(const int32_t* tokens, int64_t n, int64_t pos0,
                                 bool all_logits = false);
  // Logits (n_vocab) for `token` at position `pos`.
  const std::vector<float>& forward(int32_t token, int64_t pos) { return eval(&token, 1, pos); }
  int64_t context() const { return ctx_; }
  void set_observer(InputObserver o) { observer_ = std::move(o); }
  // Weights are prepared for the kernels (repacked, see PreparedMatrix) when a forward pass first
  // uses them, and kept while the tensor's data pointer, format and size stay the same. Callers
  // that rewrite a tensor's bytes in place between passes turn this off (on by default).
  void set_repack(bool on) { repack_ = on, prepared_.clear(), vectors_.clear(); }

  // Layer-wise evaluation (what sequential quantization needs): the embeddings of n tokens into
  // x (n, C); layers [begin, end) applied in place to x (n <= max_batch tokens at positions
  // pos0..); and the final norm + output head of x (n, C) into logits (n, V).
  void embed(const int32_t* tokens, int64_t n, float* x) const;
  void run_layers(float* x, int64_t n, int64_t pos0, int64_t begin, int64_t end);
  void head(const float* x, int64_t n, float* logits);
  const Model& model() const { return m_; }
  // Applies adapter a at run time to every matrix it names: y = x·Wᵀ + s · (x·Aᵀ)·Bᵀ with s =
  // a.scale(pair, scale) (repeatable: adapters add up). Checked against the model first
  // (check_lora); a must outlive the engine.
  void add_lora(const LoraAdapter& a, float scale = 1.0f);

 private:
  struct Layer {
    const ModelTensor *attn_norm, *wq, *wk, *wv, *wo, *bq, *bk, *bv, *ffn_norm, *gate, *up, *down;
  };
  void step(const int32_t* tokens, int64_t n, int64_t pos0, float* logits, bool all_logits);
  void attention(const Layer& L, int64_t layer, int64_t n, int64_t pos0);
  void feed_forward(const Layer& L, int64_t layer, int64_t n);
  void rope_angles(int64_t n, int64_t pos0);
  void rope(float* v, int64_t heads, int64_t b) const;
  // A 1-D tensor (norm weights, biases) as floats (nullptr for none): decoded once and kept
  // like the prepared matrices, or on every use when repacking is off.
  const float* values_of(const ModelTensor* t);
  // y (B, rows) = x (B, K) · Wᵀ, through the prepared copy of w when there is one.
  void linear(const ModelTensor& w, const float* x, int64_t B, float* y);
  // The same for matrices sharing the input x (q/k/v, gate/up): PreparedMatrix::multiply_group.
  void linear_group(std::initializer_list<const ModelTensor*> ws, const float* x, int64_t B,
                    std::initializer_list<float*> ys);
  const PreparedMatrix& prepared(const ModelTensor& w);
  // y (B, rows) += the adapters of w applied to x (B, K).
  void apply_lora(const ModelTensor& w, const float* x, int64_t B, float* y);
  struct LoraUse {
    const LoraPair* pair;
    float scale;
  };
  std::unordered_map<const ModelTensor*, std::vector<LoraUse>> lora_;
  std::vector<float> lora_u_;

  void observe(int64_t layer, LinearInput which, const float* x, int64_t n, int64_t K) const {
    if (observer_) observer_(layer, which, x, n, K);
  }

  const Model& m_;
  InputObserver observer_;
  int64_t ctx_, max_batch_;
  const ModelTensor *embd_, *out_norm_, *output_;
  std::vector<Layer> layers_;
  // Activations for B = max_batch tokens: x, xb2 (B, C); xb (B, max(C, H*D)); q (B, H*D);
  // k, v (B, G*D); hb, hb2 (B, F); att (threads, ctx) scores scratch.
  std::vector<float> x_, xb_, xb2_, q_, k_, v_, hb_, hb2_, att_, logits_;
  std::vector<float> k_cache_, v_cache_;    // (n_layer, ctx, G*D)
  std::vector<float> inv_freq_;             // (D/2) RoPE frequencies, with rope_freqs applied
  std::vector<float> rope_cos_, rope_sin_;  // (B, D/2) this step's angles (rope_angles)
  // What a kept copy of a tensor was made from: the copy is remade when any of it changes.
  struct Source {
    const uint8_t* data;
    Format format;
    uint64_t bytes;
    static Source of(const ModelTensor& t) { return {t.data, t.format, t.bytes}; }
    bool same(const ModelTensor& t) const {
      return data == t.data && format == t.format && bytes == t.bytes;
    }
  };
  struct Prepared {
    Source source;
    std::unique_ptr<PreparedMatrix> matrix;
  };
  bool repack_ = true;
  std::unordered_map<const ModelTensor*, Prepared> prepared_;
  struct Vector {
    Source source;
    std::vector<float> values;
  };
  std::unordered_map<const ModelTensor*, Vector> vectors_;
  std::vector<float> vector_scratch_;
};

// Text of a token as SentencePiece-style vocabularies spell it: U+2581 -> space, <0xHH> -> the
// byte; control tokens decode to nothing.
std::string token_text(const TokenizerData& t, int32_t id);

}  // namespace lowbit
