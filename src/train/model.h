// The LLaMA-family model as training sees it: every tensor in F32 (or double, for the gradient
// checks) in one flat vector, its gradients in another of the same layout, and a forward pass that
// keeps what its backward needs (src/train/ops.h's steps, in the order of the engine's forward,
// src/engine/llama.cpp, which it must match: tests/train_test.cpp compares their logits).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "lowbit/lora.h"
#include "lowbit/model.h"
#include "train/ops.h"

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

// LoRA (Hu et al., 2021): a targeted linear layer y = x·Wᵀ becomes y = x·Wᵀ + (alpha / rank) ·
// (dropout(x)·Aᵀ)·Bᵀ with A (rank, K) and B (N, rank) trained and W frozen. Targets in PEFT's
// order and short names: q, k, v, o, gate, up, down (bit i of `targets`).
inline constexpr int kLoraTargets = 7;
inline constexpr uint32_t kAllLinear = (1u << kLoraTargets) - 1;
struct LoraConfig {
  int64_t rank = 0;  // 0: no adapters (full training)
  double alpha = 16, dropout = 0;
  uint32_t targets = kAllLinear;
  double scale() const { return rank > 0 ? alpha / double(rank) : 0.0; }
};
// "all-linear" or a comma list of q,k,v,o,gate,up,down -> targets (Error naming --lora-targets).
uint32_t parse_lora_targets(const std::string& s);
std::string lora_targets_name(uint32_t targets);  // "q,k,v,o,gate,up,down"
// The GGUF name of target t's weight in layer l, e.g. "blk.3.attn_q.weight".
std::string lora_base_name(int64_t layer, int t);

struct ParamLayout {
  std::vector<ParamInfo> params;
  int64_t total = 0;
  // The tensors of a model of this configuration, in GGUF's order: token_embd, per layer
  // attn_norm, attn_q/k/v (+ biases with qkv_bias), attn_output, ffn_norm, ffn_gate, ffn_up,
  // ffn_down; output_norm, output (none when tied_output).
  static ParamLayout of(const ModelConfig& c);
  // The adapters of a LoRA run (and nothing else): per layer and target, "<base>.lora_a" (rank,
  // K) and "<base>.lora_b" (N, rank), as llama.cpp's adapters name and shape them; decay on.
  static ParamLayout lora(const ModelConfig& c, const LoraConfig& lc);
  const ParamInfo* find(const std::string& name) const;  // nullptr: no such tensor
};

// The model's tensors of layout l as F32, dequantized from whatever format they are stored in.
// Throws Error naming a tensor that is missing or of another shape.
std::vector<float> weights_of(const Model& m, const ParamLayout& l);
// A fresh model's weights, seeded: every matrix and the token embedding N(0, 0.02²) (GPT-2's
// initialization), the residual projections (attn_output, ffn_down) scaled by 1 / sqrt(2 n_layer),
// norm weights 1, biases 0. Tensor i draws from Rng(seed, i): the same seed, the same model.
std::vector<float> init_weights(const ParamLayout& l, const ModelConfig& c, uint64_t seed);
// Initial adapters (layout ParamLayout::lora): A uniform in +-1/sqrt(K) (PEFT's Kaiming-uniform
// default), B zero, so training starts from the base model itself. Seeded like init_weights.
std::vector<float> init_lora(const ParamLayout& l, uint64_t seed);

// The adapters w (layout ParamLayout::lora) as an adapter file holds them.
LoraAdapter lora_adapter_of(const ParamLayout& l, const std::vector<float>& w,
                            const std::string& arch, double alpha);

// The frozen model a LoRA run trains on: every tensor of ParamLayout::of(c) as a Matrix<T>.
// From a loaded model the matrices stay in their format, stored (never decoded whole; F32 ones
// are used in place); norms and biases are decoded once. The model must outlive the base.
template <typename T>
class FrozenBase {
 public:
  FrozenBase(const Model& m, const ModelConfig& c);  // Error naming a missing or misshapen tensor
  FrozenBase(const ParamLayout& l, const T* w);  // dense weights of that layout (kept by pointer)
  Matrix<T> matrix(const std::string& name) const;  // empty when the model has no such tensor
  uint64_t stored_bytes() const { return stored_bytes_; }  // the matrices' bytes, as stored

 private:
  std::unordered_map<std::string, Matrix<T>> m_;
  std::deque<std::vector<T>> own_;
  uint64_t stored_bytes_ = 0;
};

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
  // With lora.rank > 0 the weights w of every call are the adapters (ParamLayout::lora) and the
  // model itself comes from set_base (which must be called before the first pass).
  Transformer(const ModelConfig& c, std::vector<double> inv_freq, int64_t vocab_slice = 0,
              const LoraConfig& lora = {});
  const ParamLayout& layout() const { return layout_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }
  void set_base(const FrozenBase<T>* base) { base_ = base; }
  // LoRA dropout's masks are drawn from this key (with layer, target and element): the same key,
  // the same masks (the backward redraws the forward's instead of keeping them).
  void set_dropout_key(uint64_t key) { drop_key_ = key; }
  // Activation fake quantization (0: off): the input of every linear layer (q, k, v, o, gate, up,
  // down; not the output head) is used as ops.h act_fake_quant(x, bits) per token, in the forward
  // and in its weight gradient; the input's gradient passes straight through.
  void set_act_bits(int bits) { act_bits_ = bits; }

  // The summed cross-entropy of predicting targets (S, L) from tokens (S, L), weights w
  // (layout().total values). soft (optional, (S L, V)): target distributions instead (a teacher's
  // probabilities: distillation, ops.h cross_entropy).
  double loss(const T* w, const int32_t* tokens, const int32_t* targets, int64_t S, int64_t L,
              const T* soft = nullptr);
  // The same, and grad += grad_scale * d(loss)/dw.
  double loss_and_grad(const T* w, const int32_t* tokens, const int32_t* targets, int64_t S,
                       int64_t L, T* grad, T grad_scale, const T* soft = nullptr);
  // Recomputation: keep only each layer's input in the forward, and recompute the layer's
  // activations during the backward (one more forward's work; activation memory of one layer
  // instead of all). The gradients are the same, bit for bit.
  void set_recompute(bool on) { recompute_ = on; }
  // Lean activations, for LoRA on wide layers (memory is what QLoRA is for): where computing them
  // again costs under 5% more arithmetic than the step's products, a pass keeps neither the
  // attention probabilities (S H L^2 per layer) nor the norms' outputs and the SwiGLU product: the
  // backward computes them again (the same bits). Full training keeps them (--recompute bounds
  // its memory). Tests force either way.
  void force_lean(std::optional<bool> lean) { lean_forced_ = lean; }
  // Logits (S * L, V) of every position (what the engine computes), for comparisons.
  std::vector<T> logits(const T* w, const int32_t* tokens, int64_t S, int64_t L);

 private:
  struct LayerActs {  // what the backward of a layer needs (B rows)
    std::vector<T> x_in, xn1, r1, q, k, v, probs, att, x_mid, xn2, r2, gate, up, act;
    std::array<std::vector<T>, kLoraTargets> u;  // LoRA: dropout(x)·Aᵀ (B, rank) per target
  };
  const T* p(const T* w, const std::string& name) const;
  T* p(T* w, const std::string& name) const;
  // A tensor of the model: the base's with LoRA, else w's.
  Matrix<T> W(const T* w, const std::string& name) const;
  const T* V(const T* w, const std::string& name) const { return W(w, name).dense; }
  // Target t of layer l (a linear layer of K inputs, N outputs) forward: y = x·Wᵀ + bias + its
  // adapter; and backward: dx += the gradient through both, the adapter's (and, training the
  // whole model, W's and the bias's) gradients into grad.
  void lin_forward(const T* w, int64_t l, int t, const T* x, int64_t K, int64_t N, T* y,
                   LayerActs& a);
  void lin_backward(const T* w, T* grad, int64_t l, int t, const T* dy, const T* x, int64_t K,
                    int64_t N, T* dx, const LayerActs& a);
  bool adapted(int t) const { return lora_.rank > 0 && (lora_.targets >> t & 1u); }
  uint64_t drop_key(int64_t l, int t) const;
  // Embedding -> layers -> final norm into xnf_ (B, C); activations kept in acts_.
  void forward(const T* w, const int32_t* tokens, int64_t S, int64_t L);
  Matrix<T> output_weight(const T* w) const;
  void layer_forward(const T* w, int64_t l, const T* x_in, LayerActs& a, T* x_out);
  bool recompute_ = false;
  LayerActs work_;  // the recomputed layer's activations

  ModelConfig c_;
  std::vector<double> inv_freq_;
  int64_t slice_;
  LoraConfig lora_;
  ParamLayout layout_;
  const FrozenBase<T>* base_ = nullptr;
  uint64_t drop_key_ = 0;
  bool training_ = false;  // inside loss_and_grad: LoRA dropout on (off for loss and logits)
  std::optional<bool> lean_forced_;
  bool keep_probs_ = true, lean_ = false;       // this pass's choice (force_lean)
  std::vector<T> lean_xn_, lean_act_, lean_r_;  // lean: a norm's output, the SwiGLU product
  void choose_lean(int64_t L);
  std::vector<T> drop_x_, drop_dx_;  // LoRA dropout's masked input and its gradient (B, K)
  int act_bits_ = 0;
  std::vector<T> act_q_;  // a linear layer's fake-quantized input (B, K)
  const T* act_input(const T* x, int64_t B, int64_t K);  // x, or its fake quantization
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
