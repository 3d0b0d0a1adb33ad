// Sampler: picks the next token from a row of logits. The chain, in order:
//   repetition penalty -> greedy (temperature <= 0) -> top-k -> softmax(logits / temperature)
//   -> top-p -> min-p -> renormalise -> one draw from the Rng seeded in the constructor.
// The same params (seed included) and the same inputs give the same token sequence.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/rng.h"

namespace lowbit {

struct SamplerParams {
  float temperature = 0.8f;     // <= 0: greedy (argmax, lowest id on ties); finite
  int top_k = 40;               // <= 0: off
  float top_p = 0.95f;          // >= 1: off; keeps the smallest set of most probable tokens
                                // whose probability sums to >= top_p (at least one); >= 0
  float min_p = 0.05f;          // <= 0: off; keeps tokens with p >= min_p * p_max; <= 1
  float repeat_penalty = 1.0f;  // 1: off; > 0 and finite. llama.cpp/CTRL convention: for each
                                // distinct token of the last repeat_last_n history tokens,
                                // logit > 0 ? logit / penalty : logit * penalty
  int repeat_last_n = 64;       // 0: off; >= 0
  uint64_t seed = 0;
};

class Sampler {
 public:
  explicit Sampler(const SamplerParams& p);  // throws Error for invalid params

  // logits: (n_vocab), finite or -inf (masked: never sampled); NaN, +inf, all -inf or an
  // out-of-range history token inside the penalty window throw Error. history: prompt and
  // generated tokens so far, read only by the repetition penalty. Returns a token id.
  // Cost: O(n_vocab); top-k is a single pass with a k-entry heap and top-p without top-k sorts
  // only the tokens of one histogram bucket, so no step sorts the whole vocabulary.
  int32_t sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history);
  const SamplerParams& params() const { return p_; }

 private:
  struct Candidate {
    float logit;  // after the repetition penalty
    float w;      // unnormalised probability exp((logit - max) / temperature), in [0, 1]
    int32_t id;
  };
  const float* penalise(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history);
  void select_top_k(const float* logits, int64_t n_vocab);  // leaves cand_ sorted
  void gather(const float* logits, int64_t n_vocab);        // every unmasked token, id order
  float softmax(bool sorted);                               // returns the max logit
  void top_p_sorted();
  void top_p_buckets(float max_logit);
  void min_p();
  int32_t draw();

  SamplerParams p_;
  Rng rng_;
  // Scratch reused across calls, so sampling a token allocates nothing after the first.
  std::vector<float> penalised_;  // (n_vocab) logits with the penalty applied
  std::vector<int32_t> window_;   // distinct token ids of the penalty window
  std::vector<Candidate> cand_;   // the tokens still in the running
  std::vector<double> bucket_w_;  // top-p histogram: weight per bucket of -log w
};

}  // namespace lowbit
