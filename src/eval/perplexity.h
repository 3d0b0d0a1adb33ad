// Perplexity and KL divergence over a tokenized text, by llama.cpp's protocol so that figures
// are comparable: the text is cut into non-overlapping chunks of `ctx` positions, BOS replaces
// each chunk's first token where the model uses BOS, and only the second half of each chunk is
// scored (the logit at position j predicts token j+1, for j in [ctx/2, ctx-1)).
// score_all (the fixtures' golden convention): each chunk is BOS + ctx text tokens and every
// text token is scored.
// KL divergence runs the base model over the same chunks (no logits file needed); a BaseLogits
// store keeps what KLD and top-1 need when the base will not fit beside the quantized model.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

struct EvalOptions {
  int64_t ctx = 512;
  int64_t chunks = 0;    // 0 = every full chunk of the text
  int64_t batch = 512;   // tokens per engine step
  bool score_all = false;
};

struct Chunks {
  std::vector<std::vector<int32_t>> tokens;  // each chunk as evaluated
  int64_t first = 0;                         // first scored logit position in a chunk
  int64_t scored_per_chunk() const;
};

// text: the whole text's tokens, without BOS. bos: the BOS id when the model uses one.
Chunks make_chunks(const std::vector<int32_t>& text, std::optional<int32_t> bos,
                   const EvalOptions& o);
// Tokenizes `text` for model m (SentencePiece dummy prefix etc. as the tokenizer declares) and
// cuts it; BOS is used when the tokenizer adds one. Throws if the text is too short for 1 chunk.
Chunks chunk_text(const Model& m, const std::string& text, const EvalOptions& o);

// Mean and standard error of a sample, and its order statistics.
struct Summary {
  int64_t n = 0;
  double mean = 0, stderr_ = 0, median = 0, p90 = 0, p99 = 0, max = 0;
  static Summary of(std::vector<double> v);
};

struct PerplexityResult {
  Summary nll;            // per scored token, nats
  double ppl() const;
  double ppl_err() const; // first-order error propagation: ppl * stderr(nll)
  double seconds = 0;     // model evaluation time
  int64_t positions = 0;  // positions evaluated (scored or not)
  double tokens_per_second() const { return seconds > 0 ? double(positions) / seconds : 0; }
};

struct KldResult {
  PerplexityResult base, quant;
  Summary kld;            // per scored position: KL(base || quant), nats
  double top1 = 0;        // fraction of positions where both models' most likely token agree
  double dp_mean = 0, dp_rms = 0;  // Δp = p_quant(correct) - p_base(correct)
  bool exact = true;      // false when the base came from a top-k store with V > k
};

using ChunkProgress = std::function<void()>;  // called after each chunk of each model

PerplexityResult perplexity(const Model& m, const Chunks& c, const EvalOptions& o,
                            const ChunkProgress& progress = {});

// What KLD and top-1 need from the base model, per scored position: its k most likely tokens
// (ids and log-probabilities, most likely first), the log of the probability mass outside them,
// and the log-probability of the correct token. With k >= n_vocab the store is exact; with
// k < n_vocab the KL divergence is computed over k tokens + one bucket for the rest (a lower
// bound of the true KLD, by the data-processing inequality).
struct BaseLogits {
  int64_t n_vocab = 0, k = 0, ctx = 0;
  bool score_all = false;
  std::vector<std::vector<int32_t>> chunk_tokens;  // to check the same text and chunking
  std::vector<float> target_logp;                  // (positions)
  std::vector<float> log_tail;                     // (positions)
  std::vector<int32_t> ids;                        // (positions, k)
  std::vector<float> logp;                         // (positions, k)
  PerplexityResult ppl;
  void save(const std::string& path) const;
  static BaseLogits load(const std::string& path);
};

BaseLogits collect_base_logits(const Model& base, const Chunks& c, const EvalOptions& o,
                               int64_t k, const ChunkProgress& progress = {});

// Runs the base and every model over the same chunks (chunk by chunk: the base's logits for a
// chunk are computed once and compared with each model's), exactly.
std::vector<KldResult> compare_models(const Model& base, const std::vector<const Model*>& models,
                                      const Chunks& c, const EvalOptions& o,
                                      const ChunkProgress& progress = {});
// The same against a stored base; throws if the chunks differ from the stored ones.
KldResult compare_with_store(const BaseLogits& base, const Model& m, const Chunks& c,
                             const EvalOptions& o, const ChunkProgress& progress = {});

}  // namespace lowbit
