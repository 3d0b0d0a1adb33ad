// The steps of the LLaMA-family forward pass with their backward passes beside them, for training
// (src/train/model.h strings them together). Templates on the scalar type: float trains, double
// checks every gradient against central finite differences (tests/train_test.cpp) through the very
// same code. Shape legend: B tokens (rows), C model width, K / N a linear layer's inputs /
// outputs, H query heads, G key/value heads, D head dimension, F feed-forward width, V vocabulary,
// L tokens per sequence.
//
// Conventions: a forward writes its outputs (and what its backward needs); a backward ADDS into
// every gradient it produces (dx, dW, ...), so gradients of tensors used twice (the residual
// stream, a tied embedding) accumulate without copies. Dense products go through BLAS (cblas_sgemm
// / dgemm, OpenBLAS): the training GEMMs are large, full-precision and shaped every way (x·Wᵀ,
// dy·W, dyᵀ·x), which is what a tuned BLAS is for; lowbit's own kernels multiply quantized weights
// by quantized activations and stay the inference path.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include "lowbit/format.h"

namespace lowbit::train {

// A weight matrix of N rows of K values as the steps read it: T values in memory (what training
// updates), or rows stored in any lowbit format (a frozen base, LoRA's: never updated, never
// decoded whole). A stored matrix is multiplied through tiles of rows decoded on the fly by the
// format's row decoder (kernel/matmul.h: dequantize_rows, bit-exact to the codec, tested on every
// instruction set) and BLAS: training multiplies each weight by B = batch x ctx tokens at once,
// so decoding a tile once costs 1/B of its product, and both directions (x·Wᵀ forward, dy·W
// backward) run at SGEMM's speed for every format alike.
template <typename T>
struct Matrix {
  const T* dense = nullptr;
  const Format* format = nullptr;  // stored: the format of `rows`
  const uint8_t* rows = nullptr;   // stored: N rows of format->row_bytes(K) bytes
  Matrix() = default;
  Matrix(const T* d) : dense(d) {}  // NOLINT(google-explicit-constructor): a dense matrix
  Matrix(const Format* f, const uint8_t* r) : format(f), rows(r) {}
  bool stored() const { return rows != nullptr; }
  explicit operator bool() const { return dense != nullptr || rows != nullptr; }
  // The same matrix from row r0 on (rows of K values).
  Matrix from_row(int64_t r0, int64_t K) const {
    return stored() ? Matrix(format, rows + uint64_t(r0) * format->row_bytes(K))
                    : Matrix(dense + r0 * K);
  }
};
// A Matrix<T> parameter that a plain const T* converts to (T is deduced from the other arguments).
template <typename T>
using MatrixOf = std::type_identity_t<Matrix<T>>;

// Rows [r0, r1) of W (rows of K values) as T into out ((r1 - r0) * K), over the threads.
template <typename T>
void matrix_rows(const Matrix<T>& W, int64_t K, int64_t r0, int64_t r1, T* out);

// x (B, C) = rows tokens[b] of table (V, C).
template <typename T>
void embedding_forward(MatrixOf<T> table, const int32_t* tokens, int64_t B, int64_t C, T* x);
// dtable (V, C) += dx scattered back to the rows of tokens.
template <typename T>
void embedding_backward(const T* dx, const int32_t* tokens, int64_t B, int64_t C, T* dtable);

// y (B, C) = x * rstd * g per token, rstd (B) = 1 / sqrt(mean(x^2) + eps) (kept for the backward).
template <typename T>
void rmsnorm_forward(const T* x, const T* g, int64_t B, int64_t C, double eps, T* y, T* rstd);
// dx (B, C) += d/dx, dg (C) += d/dg of sum(dy * y) (dg may be nullptr: frozen).
template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* g, const T* rstd, int64_t B, int64_t C,
                      T* dx, T* dg);

// y (B, N) = x (B, K) · Wᵀ (W: (N, K), rows as GGUF stores them) + bias (N, or nullptr).
template <typename T>
void linear_forward(const T* x, MatrixOf<T> W, const T* bias, int64_t B, int64_t K, int64_t N,
                    T* y);
// dx (B, K) += dy · W; dW (N, K) += dyᵀ · x; dbias (N) += sum_b dy. Each output may be nullptr
// (not needed, or frozen); dW must be for a stored W.
template <typename T>
void linear_backward(const T* dy, const T* x, MatrixOf<T> W, int64_t B, int64_t K, int64_t N, T* dx,
                     T* dW, T* dbias);

// A low-rank adapter beside a linear layer (LoRA): y (B, N) += scale · u · Bmᵀ with u (B, r) =
// x (B, K) · Aᵀ kept for the backward (A: (r, K), Bm: (N, r)).
template <typename T>
void lora_forward(const T* x, const T* A, const T* Bm, int64_t B, int64_t K, int64_t N, int64_t r,
                  T scale, T* u, T* y);
// With g = scale · dy · Bm (B, r): dx (B, K) += g · A, dA (r, K) += gᵀ · x, dBm (N, r) += scale ·
// dyᵀ · u. dx, dA, dBm may be nullptr (not needed).
template <typename T>
void lora_backward(const T* dy, const T* x, const T* A, const T* Bm, const T* u, int64_t B,
                   int64_t K, int64_t N, int64_t r, T scale, T* dx, T* dA, T* dBm);
// Inverted dropout with drop probability p: out[i] (+)= x[i] / (1 - p) where element i is kept,
// 0 where dropped; element i's fate depends on (key, i) only, so the backward redraws the
// forward's mask (its gradient is the same map applied to dout). accumulate: out += instead of =.
template <typename T>
void dropout(const T* x, int64_t n, double p, uint64_t key, T* out, bool accumulate);
// Activation fake quantization (BitNet b1.58's, for --qat-act-bits): each row of K values is
// rounded to a symmetric grid of `bits` bits scaled by its absolute maximum, out = d · round(x /
// d) with d = absmax / (2^(bits-1) - 1) (round half to even; a row of zeros stays zero). The
// backward is the identity (straight-through: absmax scaling clips nothing).
template <typename T>
void act_fake_quant(const T* x, int64_t rows, int64_t K, int bits, T* out);

// RoPE in place on v (B, heads, D): token b at position pos[b] rotates its pairs by pos *
// inv_freq[i] (inv_freq: D/2). GGUF's llama layout rotates pairs (2i, 2i+1); neox pairs (i, i +
// D/2).
template <typename T>
void rope_forward(T* v, const int32_t* pos, int64_t B, int64_t heads, int64_t D,
                  const std::vector<double>& inv_freq, bool neox);
// The backward of a rotation is the rotation back: dv in place.
template <typename T>
void rope_backward(T* dv, const int32_t* pos, int64_t B, int64_t heads, int64_t D,
                   const std::vector<double>& inv_freq, bool neox);

// Causal attention over S sequences of L tokens each (B = S * L), grouped KV heads (query head h
// reads KV head h / (H / G)): out (B, H, D) = softmax(scale * q·kᵀ) · v per sequence and head,
// token i attending to tokens 0..i of its own sequence. probs (S, H, L, L) keeps the softmax for
// the backward (row i, columns 0..i); nullptr: not kept (the backward computes it again, block
// by block: the same bits, a quarter more attention arithmetic, no L x L memory per head).
template <typename T>
void attention_forward(const T* q, const T* k, const T* v, int64_t S, int64_t L, int64_t H,
                       int64_t G, int64_t D, T* out, T* probs);
// dq (B, H, D), dk, dv (B, G, D) += the gradients of sum(dout * out). probs: the forward's, or
// nullptr (computed again).
template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        int64_t S, int64_t L, int64_t H, int64_t G, int64_t D, T* dq, T* dk, T* dv);

// out (n) = silu(g) * u.
template <typename T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* out);
// dg, du (n) += the gradients of sum(dout * out).
template <typename T>
void swiglu_backward(const T* dout, const T* g, const T* u, int64_t n, T* dg, T* du);

// The output head and cross-entropy in one: logits = h (B, C) · Wᵀ (W: (V, C)), the loss
// -log softmax(logits)[target] summed over the B tokens (returned). The vocabulary is taken in
// slices of `slice` rows, so no (B, V) buffer exists: a first pass keeps each token's running
// maximum and sum of exponentials (and its target's logit), a second recomputes each slice's
// logits and turns them into dlogits = grad_scale * (softmax - onehot) (one pass when a slice holds
// the whole vocabulary). With dh / dW non-null: dh (B, C) += dlogits · W, dW (V, C) += dlogitsᵀ ·
// h.
// scratch (optional): the (B, slice) logits buffer, kept by the caller between calls.
// soft (optional, (B, V)): target distributions instead of targets (distillation: a teacher's
// probabilities p): the loss is sum_b sum_v -p_bv log softmax(logits_b)_v (KL(p || q) + H(p)),
// dlogits = grad_scale * (softmax - p).
template <typename T>
double cross_entropy(const T* h, MatrixOf<T> W, const int32_t* targets, int64_t B, int64_t C,
                     int64_t V, int64_t slice, T grad_scale, T* dh, T* dW,
                     std::vector<T>* scratch = nullptr, const T* soft = nullptr);

}  // namespace lowbit::train
