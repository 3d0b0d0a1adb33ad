// Sampler: the filter chain of sampler.h over a reused candidate buffer. Candidates are in id
// order, or sorted most likely first (logit descending, id ascending on ties) after top-k;
// weights are exp((logit - max) / temperature), so the most likely token has weight exactly 1.
#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "lowbit/error.h"

namespace lowbit {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Top-p histogram over -log w = (max - logit) / temperature: kBucketsPerNat buckets per nat up
// to kBuckets / kBucketsPerNat = 32 nats, the last bucket also holding everything beyond (those
// tokens weigh < e^-32 each, so the cut-off can only land there when top_p rounds to 1).
constexpr size_t kBuckets = 1024;
constexpr float kBucketsPerNat = 32;

// The sort order of candidates: most likely first, lowest id first among equals.
constexpr auto kMoreLikely = [](const auto& a, const auto& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
};

void require(bool ok, const char* field, const char* expected, const std::string& found) {
  if (!ok) {
    throw Error("invalid sampler parameter",
                {.field = field, .expected = expected, .found = found});
  }
}

// One branch-free pass (it vectorises); the offending offset is looked up only on failure.
void validate_logits(const float* logits, int64_t n_vocab) {
  int bad = 0;
  for (int64_t i = 0; i < n_vocab; ++i) bad |= !(logits[i] < kInf);  // NaN and +inf
  if (!bad) return;
  int64_t i = 0;
  while (logits[i] < kInf) ++i;
  throw Error("logit is not finite", {.field = "logits",
                                      .offset = i,
                                      .expected = "a finite number or -inf",
                                      .found = fmt::format("{}", logits[i])});
}

[[noreturn]] void throw_all_masked() {
  throw Error("every logit is -inf",
              {.field = "logits", .expected = "at least one finite", .found = "all -inf"});
}

// The max in kLanes independent lanes (a dependency chain per lane lets it vectorise), then the
// first id holding it: the lowest id on ties. Logits are validated, so there is no NaN.
int32_t argmax(const float* logits, int64_t n_vocab) {
  constexpr int64_t kLanes = 8;
  float lane[kLanes];
  std::fill(lane, lane + kLanes, -kInf);
  int64_t i = 0;
  for (; i + kLanes <= n_vocab; i += kLanes) {
    for (int64_t j = 0; j < kLanes; ++j) lane[j] = std::max(lane[j], logits[i + j]);
  }
  float max = *std::max_element(lane, lane + kLanes);
  for (; i < n_vocab; ++i) max = std::max(max, logits[i]);
  if (max == -kInf) throw_all_masked();
  return int32_t(std::find(logits, logits + n_vocab, max) - logits);
}

}  // namespace

Sampler::Sampler(const SamplerParams& p) : p_(p), rng_(p.seed) {
  require(std::isfinite(p.temperature), "temperature", "a finite number (<= 0: greedy)",
          fmt::format("{}", p.temperature));
  require(p.top_p >= 0, "top_p", "a number >= 0 (>= 1: off)", fmt::format("{}", p.top_p));
  require(p.min_p <= 1, "min_p", "a number <= 1 (<= 0: off)", fmt::format("{}", p.min_p));
  require(std::isfinite(p.repeat_penalty) && p.repeat_penalty > 0, "repeat_penalty",
          "a finite number > 0 (1: off)", fmt::format("{}", p.repeat_penalty));
  require(p.repeat_last_n >= 0, "repeat_last_n", "a count >= 0 (0: off)",
          std::to_string(p.repeat_last_n));
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab, const std::vector<int32_t>& history) {
  if (n_vocab <= 0 || n_vocab > std::numeric_limits<int32_t>::max() || logits == nullptr) {
    throw Error(
        "no logits to sample from",
        {.field = "n_vocab", .expected = "1 to 2^31 - 1 logits", .found = std::to_string(n_vocab)});
  }
  validate_logits(logits, n_vocab);
  const float* l = penalise(logits, n_vocab, history);
  if (p_.temperature <= 0) return argmax(l, n_vocab);
  const bool sorted = p_.top_k > 0 && p_.top_k < n_vocab;
  if (sorted) {
    select_top_k(l, n_vocab);
  } else {
    gather(l, n_vocab);
  }
  if (cand_.empty()) throw_all_masked();
  const float max_logit = softmax(sorted);
  if (p_.top_p < 1 && cand_.size() > 1) {
    if (sorted) {
      top_p_sorted();
    } else {
      top_p_buckets(max_logit);
    }
  }
  min_p();
  return draw();
}

// Each distinct token of the window is penalised once, however often it occurs. Returns the
// logits to use from here on: the caller's when the penalty is off, else a penalised copy.
const float* Sampler::penalise(const float* logits, int64_t n_vocab,
                               const std::vector<int32_t>& history) {
  if (p_.repeat_penalty == 1.0f || p_.repeat_last_n == 0 || history.empty()) return logits;
  const size_t n = std::min(history.size(), size_t(p_.repeat_last_n));
  window_.assign(history.end() - std::ptrdiff_t(n), history.end());
  std::sort(window_.begin(), window_.end());
  window_.erase(std::unique(window_.begin(), window_.end()), window_.end());
  if (window_.front() < 0 || window_.back() >= n_vocab) {
    const int32_t bad = window_.front() < 0 ? window_.front() : window_.back();
    throw Error("history token id out of range", {.field = "history",
                                                  .expected = "0 to " + std::to_string(n_vocab - 1),
                                                  .found = std::to_string(bad)});
  }
  penalised_.assign(logits, logits + n_vocab);
  for (const int32_t t : window_) {
    float& x = penalised_[size_t(t)];
    x = x > 0 ? x / p_.repeat_penalty : x * p_.repeat_penalty;
  }
  return penalised_.data();
}

// One pass with a heap of the k best so far, least likely on top: most tokens cost a single
// comparison with that threshold. Tokens arrive in id order, so a later token with an equal
// logit is less likely and never displaces one already kept.
void Sampler::select_top_k(const float* logits, int64_t n_vocab) {
  const size_t k = size_t(p_.top_k);
  cand_.clear();
  cand_.reserve(k);
  for (int64_t i = 0; i < n_vocab; ++i) {
    const float x = logits[i];
    if (cand_.size() < k) {
      if (x == -kInf) continue;
      cand_.push_back({x, 0.0f, int32_t(i)});
      std::push_heap(cand_.begin(), cand_.end(), kMoreLikely);
    } else if (x > cand_.front().logit) {
      std::pop_heap(cand_.begin(), cand_.end(), kMoreLikely);
      cand_.back() = {x, 0.0f, int32_t(i)};
      std::push_heap(cand_.begin(), cand_.end(), kMoreLikely);
    }
  }
  std::sort_heap(cand_.begin(), cand_.end(), kMoreLikely);
}

void Sampler::gather(const float* logits, int64_t n_vocab) {
  cand_.clear();
  cand_.reserve(size_t(n_vocab));
  for (int64_t i = 0; i < n_vocab; ++i) {
    if (logits[i] != -kInf) cand_.push_back({logits[i], 0.0f, int32_t(i)});
  }
}

float Sampler::softmax(bool sorted) {
  float max = cand_[0].logit;
  if (!sorted) {
    for (const Candidate& c : cand_) max = std::max(max, c.logit);
  }
  const float t = p_.temperature;
  for (Candidate& c : cand_) c.w = std::exp((c.logit - max) / t);
  return max;
}

// Weights are unnormalised, so the threshold is top_p times their sum, accumulated in the same
// order as the prefix sums: the whole set always reaches it, and the loop keeps at least one.
void Sampler::top_p_sorted() {
  double total = 0;
  for (const Candidate& c : cand_) total += c.w;
  const double target = double(p_.top_p) * total;
  double cum = 0;
  size_t keep = 0;
  while (keep < cand_.size()) {
    cum += cand_[keep++].w;
    if (cum >= target) break;
  }
  cand_.resize(keep);
}

// The same cut-off as sorting everything and calling top_p_sorted (up to the rounding of the
// sums), in O(n): bucket index is monotone in the logit, so every bucket before the one where
// the cumulative weight crosses the target is kept whole, and only that bucket is sorted.
void Sampler::top_p_buckets(float max_logit) {
  const float scale = kBucketsPerNat / p_.temperature;
  auto bucket = [&](const Candidate& c) {
    return size_t(std::min(float(kBuckets - 1), (max_logit - c.logit) * scale));
  };
  bucket_w_.assign(kBuckets, 0.0);
  for (const Candidate& c : cand_) bucket_w_[bucket(c)] += c.w;
  double total = 0;
  for (const double w : bucket_w_) total += w;
  const double target = double(p_.top_p) * total;
  double cum = 0;
  size_t cut = 0;  // bucket 0 holds the max, so the crossing bucket is never empty
  while (cut < kBuckets - 1 && cum + bucket_w_[cut] < target) cum += bucket_w_[cut++];
  const auto mid = std::partition(cand_.begin(), cand_.end(),
                                  [&](const Candidate& c) { return bucket(c) < cut; });
  const auto end =
      std::partition(mid, cand_.end(), [&](const Candidate& c) { return bucket(c) == cut; });
  std::sort(mid, end, kMoreLikely);
  auto it = mid;
  while (it != end) {
    cum += (it++)->w;
    if (cum >= target) break;
  }
  cand_.erase(it, cand_.end());
}

// p >= min_p * p_max with p = w / sum and p_max = 1 / sum reduces to w >= min_p; the max
// (w = 1 >= min_p) always survives.
void Sampler::min_p() {
  if (p_.min_p <= 0) return;
  const float threshold = p_.min_p;
  cand_.erase(std::remove_if(cand_.begin(), cand_.end(),
                             [&](const Candidate& c) { return c.w < threshold; }),
              cand_.end());
}

// Inverse CDF over the kept weights: u in [0, total) lands in exactly one non-empty interval.
int32_t Sampler::draw() {
  double total = 0;
  for (const Candidate& c : cand_) total += c.w;
  const double u = rng_.uniform() * total;
  double cum = 0;
  for (const Candidate& c : cand_) {
    cum += c.w;
    if (u < cum) return c.id;
  }
  return cand_.back().id;  // only reachable through rounding of u * total
}

}  // namespace lowbit
