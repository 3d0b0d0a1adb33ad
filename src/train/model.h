// The LLaMA-family model as training sees it: every tensor in F32 (or double, for the gradient
// checks) in one flat vector, its gradients in another of the same layout, and a forward pass that
// keeps what its backward needs (src/train/ops.h's steps, in the order of the engine's forward,
// src/engine/llama.cpp, which it must match: tests/train_test.cpp compares their logits).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit::train {

// One tensor in the flat vector: its GGUF name and shape (outermost first, as ModelTensor), where
// it starts, and whether weight decay applies to it by default (matrices yes; norms, biases and the
// token embedding no).
struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0, size = 0;
  bool decay = false;
};

struct ParamLayout {
  std::vector<ParamInfo> params;
  int64_t total = 0;
  // The tensors of a model of this configuration, in GGUF's order: token_embd, per layer
  // attn_norm, attn_q/k/v (+ biases with qkv_bias), attn_output, ffn_norm, ffn_gate, ffn_up,
  // ffn_down; output_norm, output (none when tied_output).
  static ParamLayout of(const ModelConfig& c);
  const ParamInfo* find(const std::string& name) const;  // nullptr: no such tensor
};

// The model's tensors of layout l as F32, dequantized from whatever format they are stored in.
// Throws Error naming a tensor that is missing or of another shape.
std::vector<float> weights_of(const Model& m, const ParamLayout& l);
// A fresh model's weights, seeded: every matrix and the token embedding N(0, 0.02²) (GPT-2's
// initialization), the residual projections (attn_output, ffn_down) scaled by 1 / sqrt(2 n_layer),
// norm weights 1, biases 0. Tensor i draws from Rng(seed, i): the same seed, the same model.
std::vector<float> init_weights(const ParamLayout& l, const ModelConfig& c, uint64_t seed);
// The RoPE frequencies the engine uses for m (rope_freqs.weight's factors applied).
std::vector<double> rope_inv_freq(const Model& m);

// The configuration's RoPE frequencies (D/2), with a rope_freqs tensor's factors when given (as
// the engine computes them).
std::vector<double> rope_inv_freq(const ModelConfig& c, const std::vector<float>& factors = {});

// Forward and backward over S sequences of L tokens (B = S * L rows), each sequence attending to
// itself only, positions 0..L-1. T = float trains; T = double checks gradients.
template <typename T>
class Transformer {
 public:
  // vocab_slice: vocabulary rows per slice of the output head (0: the whole vocabulary when its
  // (tokens, V) logits take at most 256 MiB, else slices of that size).
  Transformer(const ModelConfig& c, std::vector<double> inv_freq, int64_t vocab_slice = 0);
  const ParamLayout& layout() const { return layout_; }

  // The summed cross-entropy of predicting targets (S, L) from tokens (S, L), weights w
  // (layout().total values).
  double loss(const T* w, const int32_t* tokens, const int32_t* targets, int64_t S, int64_t L);
  // The same, and grad += grad_scale * d(loss)/dw.
  double loss_and_grad(const T* w, const int32_t* tokens, const int32_t* targets, int64_t S,
                       int64_t L, T* grad, T grad_scale);
  // Recomputation: keep only each layer's input in the forward, and recompute the layer's
  // activations during the backward (one more forward's work; activation memory of one layer
  // instead of all). The gradients are the same, bit for bit.
  void set_recompute(bool on) { recompute_ = on; }
  // Logits (S * L, V) of every position (what the engine computes), for comparisons.
  std::vector<T> logits(const T* w, const int32_t* tokens, int64_t S, int64_t L);

 private:
  struct LayerActs {  // what the backward of a layer needs (B rows)
    std::vector<T> x_in, xn1, r1, q, k, v, probs, att, x_mid, xn2, r2, gate, up, act;
  };
  const T* p(const T* w, const std::string& name) const;
  T* p(T* w, const std::string& name) const;
  // Embedding -> layers -> final norm into xnf_ (B, C); activations kept in acts_.
  void forward(const T* w, const int32_t* tokens, int64_t S, int64_t L);
  const T* output_weight(const T* w) const;
  void layer_forward(const T* w, int64_t l, const T* x_in, LayerActs& a, T* x_out);
  bool recompute_ = false;
  LayerActs work_;  // the recomputed layer's activations

  ModelConfig c_;
  std::vector<double> inv_freq_;
  int64_t slice_;
  ParamLayout layout_;
  int64_t S_ = 0, L_ = 0;
  std::vector<int32_t> tokens_, pos_;
  std::vector<LayerActs> acts_;
  std::vector<T> x_out_, xnf_, rf_;
  int64_t slice_for(int64_t B) const;
  // The backward's buffers, kept between calls (each call would otherwise map and fault in fresh
  // pages: 7% of a step).
  std::vector<T> x_, logits_, dxnf_, dx_, dact_, dgate_, dup_, dxn_, datt_, dq_, dk_, dv_;
};

}  // namespace lowbit::train
