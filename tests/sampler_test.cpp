// Sampler: greedy is argmax, each filter of the chain keeps exactly the tokens it should, and the
// empirical distribution of many draws matches the expected one within a chi-square bound at
// p = 1e-4 (the threshold is derived from the chi-square distribution, not looked up).
#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>

#include "lowbit/error.h"

namespace lowbit {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// P(X > x) for X ~ chi-square with df degrees of freedom, in closed form (regularised upper
// incomplete gamma Q(df/2, x/2)): even df = 2m: e^(-x/2) sum_{j<m} (x/2)^j / j!;
// odd df = 2m+1: erfc(sqrt(x/2)) + e^(-x/2) sum_{j=1..m} (x/2)^(j-1/2) / Gamma(j+1/2).
double chi2_survival(double x, int df) {
  if (x <= 0) return 1;
  const double h = x / 2;
  const bool even = df % 2 == 0;
  double sum = even ? 0 : std::erfc(std::sqrt(h));
  const int terms = even ? df / 2 : (df - 1) / 2;
  for (int j = 0; j < terms; ++j) {
    const double a = even ? j : j + 0.5;  // the power of h; Gamma(a + 1) is its denominator
    sum += std::exp(a * std::log(h) - h - std::lgamma(a + 1));
  }
  return sum;
}

// The x with P(X > x) = alpha, by bisection: the survival function falls monotonically in x.
double chi2_threshold(int df, double alpha) {
  double lo = 0, hi = 1000;
  for (int i = 0; i < 200; ++i) {
    const double mid = (lo + hi) / 2;
    (chi2_survival(mid, df) > alpha ? lo : hi) = mid;
  }
  return lo;
}

TEST(SamplerChi2, ThresholdMatchesPublishedQuantiles) {
  // Quantiles from standard chi-square tables; they pin the helper the statistical tests use.
  EXPECT_NEAR(chi2_survival(3.841459, 1), 0.05, 1e-6);
  EXPECT_NEAR(chi2_survival(5.991465, 2), 0.05, 1e-6);
  EXPECT_NEAR(chi2_survival(11.070498, 5), 0.05, 1e-6);
  EXPECT_NEAR(chi2_survival(9.210340, 2), 0.01, 1e-6);
  EXPECT_NEAR(chi2_threshold(1, 1e-4), 15.1367, 1e-3);
  EXPECT_NEAR(chi2_threshold(5, 1e-4), 25.7448, 1e-3);
}

std::vector<int64_t> draw_counts(Sampler& s, const std::vector<float>& logits, int n_draws,
                                 const std::vector<int32_t>& history = {}) {
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < n_draws; ++i) {
    const int32_t t = s.sample(logits.data(), int64_t(logits.size()), history);
    EXPECT_GE(t, 0);
    EXPECT_LT(t, int32_t(logits.size()));
    if (t >= 0 && t < int32_t(logits.size())) ++counts[size_t(t)];
  }
  return counts;
}

// Pearson's statistic over the tokens with expected probability > 0 (those with 0 must never be
// drawn), compared with the p = 1e-4 threshold for (cells - 1) degrees of freedom.
void expect_distribution(const std::vector<int64_t>& counts, const std::vector<double>& probs) {
  ASSERT_EQ(counts.size(), probs.size());
  const double n = double(std::accumulate(counts.begin(), counts.end(), int64_t{0}));
  double stat = 0;
  int cells = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0) {
      EXPECT_EQ(counts[i], 0) << "token " << i << " has probability 0";
      continue;
    }
    const double e = n * probs[i];
    ASSERT_GE(e, 5) << "too few draws for a chi-square test";
    stat += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
    ++cells;
  }
  ASSERT_GE(cells, 2);
  const double threshold = chi2_threshold(cells - 1, 1e-4);
  EXPECT_LT(stat, threshold) << "chi-square over " << cells << " cells";
}

std::vector<double> softmax(const std::vector<float>& logits, double temperature) {
  std::vector<double> p(logits.size());
  double sum = 0;
  for (size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(double(logits[i]) / temperature);
  for (double& x : p) x /= sum;
  return p;
}

SamplerParams plain(uint64_t seed = 1) {  // every filter off, temperature 1
  return {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed};
}

// Logits whose softmax at temperature 1 is exactly (0.5, 0.3, 0.15, 0.05).
const std::vector<float> kKnown = {std::log(0.5f), std::log(0.3f), std::log(0.15f),
                                   std::log(0.05f)};

TEST(Sampler, GreedyPicksArgmaxWhateverTheSeed) {
  const std::vector<float> logits = {0.5f, -1.0f, 2.5f, 2.4f, -kInf, 1.0f};
  for (uint64_t seed : {0ull, 1ull, 42ull, 0xFFFFFFFFFFFFFFFFull}) {
    Sampler s({.temperature = 0.0f, .seed = seed});
    for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample(logits.data(), 6, {}), 2);
    Sampler neg({.temperature = -1.0f, .top_k = 1, .seed = seed});
    EXPECT_EQ(neg.sample(logits.data(), 6, {}), 2);
  }
}

TEST(Sampler, GreedyBreaksTiesTowardTheLowestId) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 3.0f, 3.0f};
  for (uint64_t seed : {0ull, 7ull}) {
    Sampler s({.temperature = 0.0f, .seed = seed});
    EXPECT_EQ(s.sample(logits.data(), 5, {}), 1);
  }
}

TEST(Sampler, MatchesSoftmaxAtTemperatureOne) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 3.0f, 0.0f};
  Sampler s(plain());
  expect_distribution(draw_counts(s, logits, 20000), softmax(logits, 1.0));
}

TEST(Sampler, MatchesSoftmaxOfScaledLogitsAtTemperatureHalf) {
  const std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f, 2.5f, 0.0f};
  SamplerParams p = plain(9);
  p.temperature = 0.5f;
  Sampler s(p);
  const std::vector<int64_t> counts = draw_counts(s, logits, 20000);
  expect_distribution(counts, softmax(logits, 0.5));
  // The check can tell the temperatures apart: temperature 1 is far outside the bound.
  const std::vector<double> wrong = softmax(logits, 1.0);
  double stat = 0;
  for (size_t i = 0; i < wrong.size(); ++i) {
    const double e = 20000 * wrong[i];
    stat += (double(counts[i]) - e) * (double(counts[i]) - e) / e;
  }
  EXPECT_GT(stat, chi2_threshold(5, 1e-4));
}

TEST(Sampler, TopKNeverLeavesTheKLargest) {
  const std::vector<float> logits = {0.1f, 1.9f, 0.3f, 2.0f, 1.8f, -0.5f, 0.0f};
  Sampler s({.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .min_p = 0.0f, .seed = 3});
  const std::vector<int64_t> counts = draw_counts(s, logits, 4000);
  for (size_t i = 0; i < counts.size(); ++i) {
    if (i != 1 && i != 3) {
      EXPECT_EQ(counts[i], 0) << "token " << i;
    }
  }
  EXPECT_GT(counts[1], 0);
  EXPECT_GT(counts[3], 0);
}

TEST(Sampler, TopKBreaksTiesTowardTheLowestId) {
  const std::vector<float> logits = {1.0f, 3.0f, 1.0f, 1.0f};
  Sampler s({.temperature = 1.0f, .top_k = 2, .top_p = 1.0f, .min_p = 0.0f, .seed = 6});
  const std::vector<int64_t> counts = draw_counts(s, logits, 2000);
  EXPECT_EQ(counts[2] + counts[3], 0);
  EXPECT_GT(counts[0], 0);
}

TEST(Sampler, TopKOnA128kVocabularyKeepsTheLargest) {
  const int64_t n = 131072, k = 40;
  Rng rng(5);
  std::vector<float> logits(static_cast<size_t>(n));
  for (float& l : logits) l = float(3 * rng.normal());
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), 0);
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  const std::set<int32_t> top(ids.begin(), ids.begin() + k);
  Sampler s({.temperature = 1.5f, .top_k = int(k), .top_p = 1.0f, .min_p = 0.0f, .seed = 4});
  std::set<int32_t> seen;
  for (int i = 0; i < 500; ++i) {
    const int32_t t = s.sample(logits.data(), n, {});
    ASSERT_TRUE(top.count(t)) << "token " << t << " is not among the " << k << " largest";
    seen.insert(t);
  }
  EXPECT_GT(seen.size(), 5u);  // temperature 1.5 spreads the draws over the k
}

TEST(Sampler, TopPKeepsTheSmallestSufficientPrefixInProportion) {
  // Cumulative 0.5, 0.8: top_p = 0.7 keeps tokens 0 and 1, renormalised to 5:3.
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.7f, .min_p = 0.0f, .seed = 11});
  expect_distribution(draw_counts(s, kKnown, 20000), {5.0 / 8, 3.0 / 8, 0, 0});
}

TEST(Sampler, TopPZeroKeepsOnlyTheMostProbable) {
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 0.0f, .min_p = 0.0f, .seed = 2});
  const std::vector<int64_t> counts = draw_counts(s, kKnown, 500);
  EXPECT_EQ(counts[0], 500);
}

TEST(Sampler, MinPDropsTokensBelowTheFractionOfTheMax) {
  // min_p 0.2 of p_max 0.5 is 0.1: token 3 (0.05) goes, the rest keep 0.5 : 0.3 : 0.15.
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.2f, .seed = 12});
  expect_distribution(draw_counts(s, kKnown, 20000), {0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0});
  // min_p 0.35: the threshold 0.175 also drops token 2 (0.15), leaving 5 : 3.
  Sampler t({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.35f, .seed = 12});
  expect_distribution(draw_counts(t, kKnown, 20000), {5.0 / 8, 3.0 / 8, 0, 0});
}

// The whole chain, against a direct double-precision transcription of the documented order.
std::vector<double> reference(std::vector<float> logits, const SamplerParams& p,
                              const std::vector<int32_t>& history) {
  const size_t n = logits.size();
  std::set<int32_t> window(
      history.end() - std::min<ptrdiff_t>(p.repeat_last_n, ptrdiff_t(history.size())),
      history.end());
  for (int32_t t : window) {
    logits[t] = logits[t] > 0 ? logits[t] / p.repeat_penalty : logits[t] * p.repeat_penalty;
  }
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  if (p.top_k > 0) order.resize(std::min(n, size_t(p.top_k)));
  std::vector<double> prob(n, 0);
  double sum = 0;
  for (size_t i : order) sum += prob[i] = std::exp(double(logits[i]) / p.temperature);
  for (size_t i : order) prob[i] /= sum;
  double cum = 0;
  size_t keep = 0;
  while (keep < order.size() && cum < p.top_p) cum += prob[order[keep++]];
  const double pmax = prob[order[0]];
  std::vector<double> out(n, 0);
  sum = 0;
  for (size_t r = 0; r < keep; ++r) {
    const size_t i = order[r];
    if (prob[i] >= p.min_p * pmax) sum += out[i] = prob[i];
  }
  for (double& x : out) x /= sum;
  return out;
}

TEST(Sampler, FullChainMatchesTheDocumentedOrder) {
  const std::vector<float> logits = {2.0f, 1.2f, -0.4f, 1.6f, 0.7f, -2.0f, 1.1f, 0.2f};
  const std::vector<int32_t> history = {0, 3, 3, 5, 7};  // the window is the last 4: 3, 5, 7
  // With top-k (candidates sorted) and without (top-p by histogram).
  for (const int top_k : {6, 0}) {
    const SamplerParams p = {.temperature = 0.7f,
                             .top_k = top_k,
                             .top_p = 0.95f,
                             .min_p = 0.08f,
                             .repeat_penalty = 1.3f,
                             .repeat_last_n = 4,
                             .seed = 21};
    const std::vector<double> expected = reference(logits, p, history);
    const int kept =
        int(std::count_if(expected.begin(), expected.end(), [](double x) { return x > 0; }));
    ASSERT_GE(kept, 3);  // the case exercises the filters rather than collapsing to one token
    ASSERT_LT(kept, 8);
    Sampler s(p);
    expect_distribution(draw_counts(s, logits, 20000, history), expected);
  }
}

TEST(Sampler, TopPWithoutTopKMatchesTheReference) {
  // Eight live tokens over a -30 background (4088 * e^-33 is negligible). Weights at
  // temperature 1: 1, .990, .980, .607, .368, .364, .135, .082 (sum 4.526); cumulative shares
  // .221 .440 .656 .790 .872 .952 ...: top_p 0.85 keeps the first five.
  std::vector<float> logits(4096, -30.0f);
  const std::pair<int32_t, float> live[] = {{4095, 3.0f}, {7, 2.99f}, {3000, 2.98f}, {1234, 2.5f},
                                            {3200, 2.0f}, {2, 1.99f}, {777, 1.0f},   {2200, 0.5f}};
  for (const auto& [id, l] : live) logits[size_t(id)] = l;
  const SamplerParams p = {
      .temperature = 1.0f, .top_k = 0, .top_p = 0.85f, .min_p = 0.0f, .seed = 8};
  const std::vector<double> expected = reference(logits, p, {});
  for (size_t i = 0; i < expected.size(); ++i) {
    const bool kept = i == 4095 || i == 7 || i == 3000 || i == 1234 || i == 3200;
    EXPECT_EQ(expected[i] > 0, kept) << "reference, token " << i;
  }
  Sampler s(p);
  expect_distribution(draw_counts(s, logits, 3000), expected);
}

TEST(Sampler, TopPCutsInsideARunOfNearlyEqualLogits) {
  // Token 0 has logit 3 (weight 1); ids base + j, j < 100, have 2 + j * 1e-4 (weight
  // ~0.3679 * (1 + j * 1e-4)), so the least likely come first in id order. Sum ~37.97, half
  // ~18.99: token 0 plus the 48 best sum to ~18.79, plus 49 to ~19.16, so top_p 0.5 keeps token 0
  // and j = 51..99. The cut falls among logits closer together than any coarse grouping; the
  // run sits at both ends of the vocabulary so no one layout of the candidates hides a mistake.
  for (const size_t base : {size_t(1), size_t(3996)}) {
    std::vector<float> logits(4096, -30.0f);
    logits[0] = 3.0f;
    for (size_t j = 0; j < 100; ++j) logits[base + j] = 2.0f + float(j) * 1e-4f;
    const SamplerParams p = {
        .temperature = 1.0f, .top_k = 0, .top_p = 0.5f, .min_p = 0.0f, .seed = 13};
    const std::vector<double> expected = reference(logits, p, {});
    for (size_t i = 0; i < expected.size(); ++i) {
      const bool kept = i == 0 || (i >= base + 51 && i < base + 100);
      EXPECT_EQ(expected[i] > 0, kept) << "reference, token " << i;
    }
    Sampler s(p);
    expect_distribution(draw_counts(s, logits, 3000), expected);
  }
}

TEST(Sampler, TopPThresholdIsInclusiveAndTiesGoToTheLowestId) {
  // Two equal weights (token 0 is masked): the first alone has cumulative probability exactly
  // 0.5 >= top_p, computed without rounding (1 >= 0.5 * 2).
  const std::vector<float> logits = {-kInf, 0.0f, 0.0f};
  for (const int top_k : {0, 2}) {
    Sampler s({.temperature = 1.0f, .top_k = top_k, .top_p = 0.5f, .min_p = 0.0f});
    EXPECT_EQ(draw_counts(s, logits, 200)[1], 200) << "top_k " << top_k;
  }
}

TEST(Sampler, RepeatPenaltyDividesPositiveLogits) {
  const std::vector<float> logits = {2.0f, 1.5f, 0.0f};
  Sampler plain_greedy({.temperature = 0.0f});
  EXPECT_EQ(plain_greedy.sample(logits.data(), 3, {0}), 0);  // penalty off by default
  Sampler s({.temperature = 0.0f, .repeat_penalty = 2.0f});
  EXPECT_EQ(s.sample(logits.data(), 3, {0}), 1);  // 2.0 / 2 = 1.0 < 1.5
}

TEST(Sampler, RepeatPenaltyMultipliesNegativeLogits) {
  const std::vector<float> logits = {-1.0f, -1.5f, -3.0f};
  Sampler s({.temperature = 0.0f, .repeat_penalty = 2.0f});
  EXPECT_EQ(s.sample(logits.data(), 3, {}), 0);
  EXPECT_EQ(s.sample(logits.data(), 3, {0}), 1);  // -1.0 * 2 = -2.0 < -1.5
}

TEST(Sampler, RepeatPenaltyAppliesOncePerDistinctToken) {
  // Once: 2.0 / 2 = 1.0 > 0.9. Three times it would be 0.25 < 0.9.
  const std::vector<float> logits = {2.0f, 0.9f};
  Sampler s({.temperature = 0.0f, .repeat_penalty = 2.0f});
  EXPECT_EQ(s.sample(logits.data(), 2, {0, 0, 0}), 0);
}

TEST(Sampler, RepeatPenaltyIgnoresTokensOutsideTheWindow) {
  const std::vector<float> logits = {2.0f, 1.5f, 0.0f, 0.0f};
  const std::vector<int32_t> history = {0, 3};
  Sampler last1({.temperature = 0.0f, .repeat_penalty = 2.0f, .repeat_last_n = 1});
  EXPECT_EQ(last1.sample(logits.data(), 4, history), 0);  // only token 3 is in the window
  Sampler last2({.temperature = 0.0f, .repeat_penalty = 2.0f, .repeat_last_n = 2});
  EXPECT_EQ(last2.sample(logits.data(), 4, history), 1);
  Sampler off({.temperature = 0.0f, .repeat_penalty = 2.0f, .repeat_last_n = 0});
  EXPECT_EQ(off.sample(logits.data(), 4, history), 0);
}

TEST(Sampler, SameSeedSameSequenceDifferentSeedDifferentSequence) {
  const std::vector<float> logits(50, 0.0f);
  auto run = [&](uint64_t seed) {
    Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f, .seed = seed});
    std::vector<int32_t> out;
    for (int i = 0; i < 100; ++i) out.push_back(s.sample(logits.data(), 50, out));
    return out;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
  EXPECT_NE(run(0), run(1));
}

TEST(Sampler, NegativeInfinityIsNeverSampled) {
  const std::vector<float> logits = {-kInf, 0.0f, -kInf, 0.0f, -kInf};
  for (const SamplerParams& p :
       {plain(3), SamplerParams{.seed = 3}, SamplerParams{.top_k = 0, .top_p = 0.99f}}) {
    Sampler s(p);
    const std::vector<int64_t> counts = draw_counts(s, logits, 2000);
    EXPECT_EQ(counts[0] + counts[2] + counts[4], 0);
    EXPECT_GT(counts[1], 0);
    EXPECT_GT(counts[3], 0);
  }
  // A repeated -inf token stays masked under the penalty.
  Sampler s({.temperature = 1.0f, .repeat_penalty = 0.5f});
  for (int i = 0; i < 200; ++i) EXPECT_NE(s.sample(logits.data(), 5, {0, 2, 4}) % 2, 0);
}

TEST(Sampler, NonFiniteOrMissingLogitsThrow) {
  Sampler s({});
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> with_nan = {0.0f, nan, 1.0f};
  EXPECT_THROW(s.sample(with_nan.data(), 3, {}), Error);
  const std::vector<float> with_inf = {0.0f, kInf, 1.0f};
  EXPECT_THROW(s.sample(with_inf.data(), 3, {}), Error);
  const std::vector<float> all_masked = {-kInf, -kInf};
  EXPECT_THROW(s.sample(all_masked.data(), 2, {}), Error);
  EXPECT_THROW(s.sample(with_nan.data(), 0, {}), Error);
  Sampler greedy({.temperature = 0.0f});  // greedy validates too
  EXPECT_THROW(greedy.sample(with_nan.data(), 3, {}), Error);
  try {
    s.sample(with_nan.data(), 3, {});
    ADD_FAILURE() << "NaN accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().offset, 1);
  }
}

TEST(Sampler, HistoryTokenOutOfRangeThrowsWhenPenalised) {
  const std::vector<float> logits = {0.0f, 1.0f};
  Sampler s({.repeat_penalty = 1.1f});
  EXPECT_THROW(s.sample(logits.data(), 2, {0, 2}), Error);
  EXPECT_THROW(s.sample(logits.data(), 2, {-1}), Error);
  EXPECT_NO_THROW(s.sample(logits.data(), 2, {0, 1}));
}

TEST(Sampler, InvalidParamsThrowNamingTheField) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    SamplerParams p;
    const char* field;
  };
  const Case cases[] = {
      {{.temperature = nan}, "temperature"},
      {{.temperature = kInf}, "temperature"},
      {{.top_p = nan}, "top_p"},
      {{.top_p = -0.1f}, "top_p"},
      {{.min_p = nan}, "min_p"},
      {{.min_p = 1.5f}, "min_p"},
      {{.repeat_penalty = 0.0f}, "repeat_penalty"},
      {{.repeat_penalty = -1.0f}, "repeat_penalty"},
      {{.repeat_penalty = nan}, "repeat_penalty"},
      {{.repeat_penalty = kInf}, "repeat_penalty"},
      {{.repeat_last_n = -1}, "repeat_last_n"},
  };
  for (const Case& c : cases) {
    try {
      Sampler s(c.p);
      ADD_FAILURE() << c.field << " accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.context().field, c.field);
    }
  }
}

TEST(Sampler, BoundaryParamsAreValid) {
  const SamplerParams ok[] = {
      {},
      {.temperature = -1.0f},
      {.top_k = -5},
      {.top_p = 0.0f},
      {.top_p = 3.0f},
      {.min_p = 1.0f},
      {.min_p = -1.0f},
      {.repeat_penalty = 0.5f, .repeat_last_n = 0},
  };
  const std::vector<float> logits = {0.0f, 2.0f, 1.0f};
  for (const SamplerParams& p : ok) {
    Sampler s(p);
    EXPECT_EQ(s.params().top_k, p.top_k);
    const int32_t t = s.sample(logits.data(), 3, {});
    EXPECT_GE(t, 0);
    EXPECT_LT(t, 3);
  }
  // min_p = 1 keeps only the most probable token.
  Sampler s({.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 1.0f});
  EXPECT_EQ(draw_counts(s, logits, 200)[1], 200);
}

}  // namespace
}  // namespace lowbit
