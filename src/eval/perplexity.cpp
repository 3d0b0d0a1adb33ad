// Perplexity, KL divergence and top-1 agreement over chunks of a text (see perplexity.h).
#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "engine/llama.h"
#include "engine/tokenizer.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/mapped_file.h"
#include "lowbit/output_file.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// log(sum(exp(x))) over V logits, in double.
double log_sum_exp(const float* x, int64_t V) {
  const float mx = *std::max_element(x, x + V);
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(x[v]) - mx);
  return double(mx) + std::log(s);
}

int64_t argmax(const float* x, int64_t V) { return std::max_element(x, x + V) - x; }

// Evaluates one chunk; returns the logits of its scored positions, (scored, V), and adds the
// evaluation time to *secs.
const float* eval_chunk(LlamaEngine& e, const Chunks& c, size_t i, double* secs) {
  const auto t0 = Clock::now();
  const std::vector<int32_t>& t = c.tokens[i];
  const std::vector<float>& l = e.eval(t.data(), int64_t(t.size()), 0, true);
  *secs += seconds_since(t0);
  return l.data() + c.first * e.model().config.n_vocab;
}

int32_t target(const Chunks& c, size_t chunk, int64_t j) {
  return c.tokens[chunk][size_t(c.first + j + 1)];
}

LlamaEngine make_engine(const Model& m, const Chunks& c, const EvalOptions& o) {
  return LlamaEngine(m, int64_t(c.tokens.at(0).size()), std::max<int64_t>(1, o.batch));
}

void check_vocab(const Model& a, const Model& b) {
  if (a.config.n_vocab != b.config.n_vocab) {
    throw Error("the models have different vocabularies", {.field = "vocab_size",
                .expected = std::to_string(a.config.n_vocab),
                .found = std::to_string(b.config.n_vocab)});
  }
}

// Accumulates one model's scores against the base, position by position.
struct KldAccumulator {
  std::vector<double> kld, nll, dp;
  int64_t same = 0;
  void add(double kl, double nll_q, double d, bool agree) {
    kld.push_back(kl), nll.push_back(nll_q), dp.push_back(d), same += agree;
  }
  KldResult finish(const PerplexityResult& base, double secs, int64_t positions, bool exact) {
    KldResult r;
    r.base = base;
    r.quant.nll = Summary::of(nll);
    r.quant.seconds = secs, r.quant.positions = positions;
    r.kld = Summary::of(kld);
    r.top1 = dp.empty() ? 0 : double(same) / double(dp.size());
    double s = 0, s2 = 0;
    for (double d : dp) s += d, s2 += d * d;
    r.dp_mean = dp.empty() ? 0 : s / double(dp.size());
    r.dp_rms = dp.empty() ? 0 : std::sqrt(s2 / double(dp.size()));
    r.exact = exact;
    return r;
  }
};

}  // namespace

int64_t Chunks::scored_per_chunk() const {
  return tokens.empty() ? 0 : int64_t(tokens[0].size()) - 1 - first;
}

Chunks make_chunks(const std::vector<int32_t>& text, std::optional<int32_t> bos,
                   const EvalOptions& o) {
  if (o.ctx < 4) {
    throw Error("context too short to score", {.field = "--ctx-size", .expected = ">= 4",
                                               .found = std::to_string(o.ctx)});
  }
  Chunks c;
  const size_t ctx = size_t(o.ctx);
  if (o.score_all) {  // BOS + ctx text tokens, all ctx scored (without BOS: ctx - 1)
    c.first = 0;
    for (size_t s = 0; s + ctx <= text.size(); s += ctx) {
      std::vector<int32_t> ch;
      if (bos) ch.push_back(*bos);
      ch.insert(ch.end(), text.begin() + long(s), text.begin() + long(s + ctx));
      c.tokens.push_back(std::move(ch));
    }
  } else {  // llama.cpp: [BOS] + text cut into ctx positions, BOS over each chunk's first
    std::vector<int32_t> all;
    if (bos) all.push_back(*bos);
    all.insert(all.end(), text.begin(), text.end());
    c.first = o.ctx / 2;
    for (size_t s = 0; s + ctx <= all.size(); s += ctx) {
      std::vector<int32_t> ch(all.begin() + long(s), all.begin() + long(s + ctx));
      if (bos) ch[0] = *bos;
      c.tokens.push_back(std::move(ch));
    }
  }
  if (o.chunks > 0 && int64_t(c.tokens.size()) > o.chunks) c.tokens.resize(size_t(o.chunks));
  if (c.tokens.empty()) {
    throw Error("the text is too short for one chunk", {.field = "text", .expected = ">= " +
                std::to_string(o.ctx) + " tokens", .found = std::to_string(text.size()) + " tokens"});
  }
  return c;
}

Chunks chunk_text(const Model& m, const std::string& text, const EvalOptions& o) {
  const TokenizerData& d = m.tokenizer;
  if (d.tokens.empty()) {
    throw Error("the model carries no tokenizer", {.field = "tokenizer.ggml.tokens"});
  }
  const Tokenizer tok(d);
  std::optional<int32_t> bos;
  if (d.bos_id && d.add_bos.value_or(d.model == "llama")) bos = int32_t(*d.bos_id);
  return make_chunks(tok.encode(text, false), bos, o);
}

Summary Summary::of(std::vector<double> v) {
  Summary s;
  s.n = int64_t(v.size());
  if (v.empty()) return s;
  const double n = double(v.size());
  s.mean = std::accumulate(v.begin(), v.end(), 0.0) / n;
  double ss = 0;
  for (double x : v) ss += (x - s.mean) * (x - s.mean);
  s.stderr_ = v.size() > 1 ? std::sqrt(ss / (n - 1) / n) : 0.0;
  std::sort(v.begin(), v.end());
  auto q = [&](double p) { return v[std::min(v.size() - 1, size_t(p * (n - 1) + 0.5))]; };
  s.median = q(0.5), s.p90 = q(0.9), s.p99 = q(0.99), s.max = v.back();
  return s;
}

double PerplexityResult::ppl() const { return std::exp(nll.mean); }
double PerplexityResult::ppl_err() const { return ppl() * nll.stderr_; }

PerplexityResult perplexity(const Model& m, const Chunks& c, const EvalOptions& o,
                            const ChunkProgress& progress) {
  LlamaEngine e = make_engine(m, c, o);
  const int64_t V = m.config.n_vocab, S = c.scored_per_chunk();
  PerplexityResult r;
  std::vector<double> nll;
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const float* l = eval_chunk(e, c, i, &r.seconds);
    r.positions += int64_t(c.tokens[i].size());
    for (int64_t j = 0; j < S; ++j) {
      const float* x = l + j * V;
      nll.push_back(log_sum_exp(x, V) - double(x[target(c, i, j)]));
    }
    if (progress) progress();
  }
  r.nll = Summary::of(std::move(nll));
  return r;
}

std::vector<KldResult> compare_models(const Model& base, const std::vector<const Model*>& models,
                                      const Chunks& c, const EvalOptions& o,
                                      const ChunkProgress& progress) {
  for (const Model* m : models) check_vocab(base, *m);
  const int64_t V = base.config.n_vocab, S = c.scored_per_chunk();
  LlamaEngine be = make_engine(base, c, o);
  std::vector<LlamaEngine> engines;
  for (const Model* m : models) engines.push_back(make_engine(*m, c, o));
  std::vector<KldAccumulator> acc(models.size());
  std::vector<double> secs(models.size(), 0.0), base_nll;
  PerplexityResult bp;
  std::vector<double> lp(static_cast<size_t>(S * V));  // base log-probs of the chunk
  std::vector<int64_t> base_top(static_cast<size_t>(S));
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const float* bl = eval_chunk(be, c, i, &bp.seconds);
    bp.positions += int64_t(c.tokens[i].size());
    for (int64_t j = 0; j < S; ++j) {
      const float* x = bl + j * V;
      const double lse = log_sum_exp(x, V);
      for (int64_t v = 0; v < V; ++v) lp[size_t(j * V + v)] = double(x[v]) - lse;
      base_top[size_t(j)] = argmax(x, V);
      base_nll.push_back(-lp[size_t(j * V + target(c, i, j))]);
    }
    if (progress) progress();
    for (size_t mi = 0; mi < models.size(); ++mi) {
      const float* ql = eval_chunk(engines[mi], c, i, &secs[mi]);
      for (int64_t j = 0; j < S; ++j) {
        const float* y = ql + j * V;
        const double lse = log_sum_exp(y, V);
        const double* p = &lp[size_t(j * V)];
        double kl = 0;
        for (int64_t v = 0; v < V; ++v) kl += std::exp(p[v]) * (p[v] - (double(y[v]) - lse));
        const int32_t t = target(c, i, j);
        const double lq_t = double(y[t]) - lse;
        acc[mi].add(std::max(kl, 0.0), -lq_t, std::exp(lq_t) - std::exp(p[t]),
                    argmax(y, V) == base_top[size_t(j)]);
      }
      if (progress) progress();
    }
  }
  bp.nll = Summary::of(base_nll);
  std::vector<KldResult> out;
  const int64_t positions = bp.positions;
  for (size_t mi = 0; mi < models.size(); ++mi) {
    out.push_back(acc[mi].finish(bp, secs[mi], positions, true));
  }
  return out;
}

BaseLogits collect_base_logits(const Model& base, const Chunks& c, const EvalOptions& o,
                               int64_t k, const ChunkProgress& progress) {
  BaseLogits b;
  const int64_t V = base.config.n_vocab, S = c.scored_per_chunk();
  b.n_vocab = V, b.k = std::clamp<int64_t>(k, 1, V), b.ctx = o.ctx, b.score_all = o.score_all;
  b.chunk_tokens = c.tokens;
  LlamaEngine e = make_engine(base, c, o);
  std::vector<int32_t> order(static_cast<size_t>(V));
  std::vector<double> nll;
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const float* l = eval_chunk(e, c, i, &b.ppl.seconds);
    b.ppl.positions += int64_t(c.tokens[i].size());
    for (int64_t j = 0; j < S; ++j) {
      const float* x = l + j * V;
      const double lse = log_sum_exp(x, V);
      std::iota(order.begin(), order.end(), 0);
      auto more_likely = [&](int32_t a, int32_t c2) { return x[a] > x[c2] || (x[a] == x[c2] && a < c2); };
      std::partial_sort(order.begin(), order.begin() + b.k, order.end(), more_likely);
      double top_mass = 0;
      for (int64_t r = 0; r < b.k; ++r) {
        const double lpv = double(x[order[size_t(r)]]) - lse;
        b.ids.push_back(order[size_t(r)]);
        b.logp.push_back(float(lpv));
        top_mass += std::exp(lpv);
      }
      double tail = 0;  // summed directly: 1 - top_mass would cancel
      for (int64_t r = b.k; r < V; ++r) tail += std::exp(double(x[order[size_t(r)]]) - lse);
      (void)top_mass;
      b.log_tail.push_back(b.k < V && tail > 0 ? float(std::log(tail))
                                               : -std::numeric_limits<float>::infinity());
      const double lt = double(x[target(c, i, j)]) - lse;
      b.target_logp.push_back(float(lt));
      nll.push_back(-lt);
    }
    if (progress) progress();
  }
  b.ppl.nll = Summary::of(std::move(nll));
  return b;
}

KldResult compare_with_store(const BaseLogits& b, const Model& m, const Chunks& c,
                             const EvalOptions& o, const ChunkProgress& progress) {
  if (m.config.n_vocab != b.n_vocab) {
    throw Error("the model's vocabulary differs from the saved logits'", {.field = "vocab_size",
                .expected = std::to_string(b.n_vocab), .found = std::to_string(m.config.n_vocab)});
  }
  if (c.tokens != b.chunk_tokens || o.score_all != b.score_all) {
    throw Error("the text, context or chunking differs from the one the logits were saved with",
                {.field = "chunks", .expected = std::to_string(b.chunk_tokens.size()) +
                 " chunks of " + std::to_string(b.chunk_tokens.empty() ? 0 : b.chunk_tokens[0].size()) +
                 " tokens (ctx " + std::to_string(b.ctx) + (b.score_all ? ", --score-all)" : ")"),
                 .found = std::to_string(c.tokens.size()) + " chunks of " +
                 std::to_string(c.tokens.empty() ? 0 : c.tokens[0].size()) + " tokens"});
  }
  LlamaEngine e = make_engine(m, c, o);
  const int64_t V = b.n_vocab, S = c.scored_per_chunk(), k = b.k;
  KldAccumulator acc;
  double secs = 0;
  int64_t positions = 0;
  size_t pos = 0;
  for (size_t i = 0; i < c.tokens.size(); ++i) {
    const float* l = eval_chunk(e, c, i, &secs);
    positions += int64_t(c.tokens[i].size());
    for (int64_t j = 0; j < S; ++j, ++pos) {
      const float* y = l + j * V;
      const double lse = log_sum_exp(y, V);
      const int32_t* ids = &b.ids[pos * size_t(k)];
      const float* p = &b.logp[pos * size_t(k)];
      double kl = 0, q_top = 0;
      for (int64_t r = 0; r < k; ++r) {
        const double lq = double(y[ids[r]]) - lse;
        kl += std::exp(double(p[r])) * (double(p[r]) - lq);
        q_top += std::exp(lq);
      }
      if (std::isfinite(b.log_tail[pos])) {  // the rest as one bucket
        const double q_tail = std::max(1.0 - q_top, 1e-300);
        kl += std::exp(double(b.log_tail[pos])) * (double(b.log_tail[pos]) - std::log(q_tail));
      }
      const int32_t t = target(c, i, j);
      const double lq_t = double(y[t]) - lse;
      acc.add(std::max(kl, 0.0), -lq_t, std::exp(lq_t) - std::exp(double(b.target_logp[pos])),
              argmax(y, V) == ids[0]);
    }
    if (progress) progress();
  }
  return acc.finish(b.ppl, secs, positions, b.k >= b.n_vocab);
}

// ---- the saved-logits file ----------------------------------------------------------------
// Little-endian. Header: "LBLOGITS", u32 version (1), u32 n_vocab, u32 k, u32 ctx,
// u32 score_all, u32 n_chunks, u32 chunk_len, then i32 tokens (n_chunks x chunk_len), then per
// scored position (n_chunks x scored_per_chunk, in order): f32 target_logp, f32 log_tail,
// i32 ids[k], f32 logp[k]. 8 + 8k bytes per position (llama.cpp's file: 2 x n_vocab).

namespace {
constexpr char kMagic[8] = {'L', 'B', 'L', 'O', 'G', 'I', 'T', 'S'};
constexpr uint32_t kVersion = 1;
}  // namespace

void BaseLogits::save(const std::string& path) const {
  OutputFile f(path);
  f.write(kMagic, 8);
  const uint32_t n_chunks = uint32_t(chunk_tokens.size());
  const uint32_t len = n_chunks ? uint32_t(chunk_tokens[0].size()) : 0;
  const uint32_t head[7] = {kVersion, uint32_t(n_vocab), uint32_t(k), uint32_t(ctx),
                            uint32_t(score_all), n_chunks, len};
  f.write(head, sizeof head);
  for (const auto& ch : chunk_tokens) f.write(ch.data(), ch.size() * 4);
  for (size_t p = 0; p < target_logp.size(); ++p) {
    f.write(&target_logp[p], 4);
    f.write(&log_tail[p], 4);
    f.write(&ids[p * size_t(k)], size_t(k) * 4);
    f.write(&logp[p * size_t(k)], size_t(k) * 4);
  }
  f.commit();
}

BaseLogits BaseLogits::load(const std::string& path) {
  const MappedFile mf(path);
  const uint8_t* d = mf.data();
  const uint64_t size = mf.size();
  auto fail = [&](const std::string& what, const std::string& field, uint64_t off,
                  const std::string& expected, const std::string& found) {
    throw Error(what, {.file = path, .field = field, .offset = int64_t(off), .expected = expected,
                       .found = found});
  };
  if (size < 36 || std::memcmp(d, kMagic, 8) != 0) {
    fail("not a lowbit logits file", "magic", 0, "LBLOGITS and a 36-byte header",
         std::to_string(size) + " bytes");
  }
  uint32_t h[7];
  std::memcpy(h, d + 8, sizeof h);
  if (h[0] != kVersion) fail("unsupported version", "version", 8, "1", std::to_string(h[0]));
  BaseLogits b;
  b.n_vocab = h[1], b.k = h[2], b.ctx = h[3], b.score_all = h[4] != 0;
  const uint64_t n_chunks = h[5], len = h[6];
  if (b.n_vocab < 1 || b.k < 1 || b.k > b.n_vocab) {
    fail("bad vocabulary size or k", "k", 16, "1 <= k <= n_vocab",
         std::to_string(b.k) + " of " + std::to_string(b.n_vocab));
  }
  const int64_t first = b.score_all ? 0 : b.ctx / 2;
  if (n_chunks < 1 || len < 2 || int64_t(len) - 1 - first < 1 || h[4] > 1) {
    fail("bad chunking", "n_chunks / chunk_len", 28, ">= 1 chunk of >= 2 tokens",
         std::to_string(n_chunks) + " x " + std::to_string(len));
  }
  const uint64_t scored = uint64_t(int64_t(len) - 1 - first);
  const ErrorContext ctx{.file = path, .field = "size"};
  const uint64_t tok_bytes = checked_mul(checked_mul(n_chunks, len, ctx), 4, ctx);
  const uint64_t positions = checked_mul(n_chunks, scored, ctx);
  const uint64_t per = checked_add(8, checked_mul(uint64_t(b.k), 8, ctx), ctx);
  const uint64_t want = checked_add(checked_add(36, tok_bytes, ctx),
                                    checked_mul(positions, per, ctx), ctx);
  if (size != want) {
    fail("file size disagrees with its header", "size", 0, std::to_string(want) + " bytes",
         std::to_string(size) + " bytes");
  }
  uint64_t off = 36;
  for (uint64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> ch(len);
    std::memcpy(ch.data(), d + off, len * 4);
    for (uint64_t i = 0; i < len; ++i) {
      if (ch[i] < 0 || ch[i] >= b.n_vocab) {
        fail("token id out of range", "tokens", off + 4 * i, "< " + std::to_string(b.n_vocab),
             std::to_string(ch[i]));
      }
    }
    off += len * 4;
    b.chunk_tokens.push_back(std::move(ch));
  }
  b.target_logp.resize(positions), b.log_tail.resize(positions);
  b.ids.resize(positions * uint64_t(b.k)), b.logp.resize(positions * uint64_t(b.k));
  std::vector<double> nll;
  for (uint64_t p = 0; p < positions; ++p) {
    std::memcpy(&b.target_logp[p], d + off, 4);
    std::memcpy(&b.log_tail[p], d + off + 4, 4);
    int32_t* ids = &b.ids[p * uint64_t(b.k)];
    float* lp = &b.logp[p * uint64_t(b.k)];
    std::memcpy(ids, d + off + 8, uint64_t(b.k) * 4);
    std::memcpy(lp, d + off + 8 + uint64_t(b.k) * 4, uint64_t(b.k) * 4);
    auto bad_logp = [](float v) { return !(v <= 1e-4f) || std::isnan(v) || std::isinf(v); };
    if (bad_logp(b.target_logp[p]) || std::isnan(b.log_tail[p]) || b.log_tail[p] > 1e-4f) {
      fail("log-probability out of range", "position " + std::to_string(p), off,
           "a finite value <= 0", std::to_string(b.target_logp[p]));
    }
    for (int64_t r = 0; r < b.k; ++r) {
      if (ids[r] < 0 || ids[r] >= b.n_vocab || bad_logp(lp[r])) {
        fail("bad top-k entry", "position " + std::to_string(p) + ", rank " + std::to_string(r),
             off + 8 + uint64_t(r) * 4, "an id < n_vocab with a finite log-probability <= 0",
             std::to_string(ids[r]) + " / " + std::to_string(lp[r]));
      }
    }
    nll.push_back(-double(b.target_logp[p]));
    off += per;
  }
  b.ppl.nll = Summary::of(std::move(nll));
  return b;
}

}  // namespace lowbit
