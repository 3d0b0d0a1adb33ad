// Prompt / generation speed and the memory read-bandwidth probe (see bench.h for the protocol).
#include "eval/bench.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>

#include <sys/resource.h>

#include "engine/llama.h"
#include "kernel/matmul.h"
#include "lowbit/error.h"
#include "lowbit/rng.h"
#include "lowbit/threads.h"

namespace lowbit {

namespace {

using Clock = std::chrono::steady_clock;

double cpu_now() {  // this process's user + system time, seconds
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) * 1e-6; };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

std::vector<double> rates(const Speed& s) {
  std::vector<double> r;
  for (double t : s.seconds) r.push_back(t > 0 ? double(s.tokens) / t : 0.0);
  return r;
}

double min_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}
double max_of(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

// Sum of p[0..n) in four independent chains, so the read is limited by memory, not by one
// dependent add per word (integer addition needs no reassociation licence to vectorise).
uint64_t sum_words(const uint64_t* p, uint64_t n) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  uint64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += p[i];
    s1 += p[i + 1];
    s2 += p[i + 2];
    s3 += p[i + 3];
  }
  for (; i < n; ++i) s0 += p[i];
  return s0 + s1 + s2 + s3;
}

// k token ids: BOS first (when the model has one), then uniformly random ids, as llama-bench.
std::vector<int32_t> random_tokens(const Model& m, int64_t k, Rng& rng) {
  std::vector<int32_t> t(static_cast<size_t>(k));
  for (auto& id : t) id = int32_t(rng.next_u64() % uint64_t(m.config.n_vocab));
  if (k > 0 && m.tokenizer.bos_id) t[0] = int32_t(*m.tokenizer.bos_id);
  return t;
}

void generate(LlamaEngine& e, const std::vector<int32_t>& tokens, int64_t n) {
  for (int64_t i = 0; i < n; ++i) e.forward(tokens[size_t(i)], i);
}

}  // namespace

uint64_t weight_bytes_per_token(const Model& m) {
  uint64_t bytes = 0;
  for (const ModelTensor& t : m.tensors) {
    if (t.name != "token_embd.weight") {
      bytes += t.bytes;
      continue;
    }
    bytes += t.bytes / uint64_t(t.rows());       // the one row embedded
    if (m.config.tied_output) bytes += t.bytes;  // and the whole matrix as the output layer
  }
  return bytes;
}

double Speed::median_tps() const {
  return median_of(rates(*this));
}
double Speed::min_tps() const {
  return min_of(rates(*this));
}
double Speed::max_tps() const {
  return max_of(rates(*this));
}
double Speed::cpu_share(int threads) const {
  const double wall = std::accumulate(seconds.begin(), seconds.end(), 0.0);
  return wall > 0 && threads > 0 ? cpu_seconds / (wall * threads) : 0.0;
}

double ReadBandwidth::Probe::median() const {
  return median_of(gbps);
}
double ReadBandwidth::Probe::min() const {
  return min_of(gbps);
}
double ReadBandwidth::Probe::max() const {
  return max_of(gbps);
}

ReadBandwidth::ReadBandwidth(uint64_t buffer_bytes)
    : words_(std::max<uint64_t>(buffer_bytes / sizeof(uint64_t), 1)) {
  buf_ = huge_alloc<uint64_t>(words_);
  // First touch on the threads that will read (pages land near them), value = index.
  uint64_t* b = buf_.get();
  parallel_for(int64_t(words_), int64_t(1) << 16, [b](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) b[i] = uint64_t(i);
  });
  // 0 + 1 + ... + (n-1), modulo 2^64: halve the even factor first so nothing overflows early.
  const uint64_t n = words_;
  checksum_ = n % 2 == 0 ? (n / 2) * (n - 1) : n * ((n - 1) / 2);
}

ReadBandwidth::Probe ReadBandwidth::measure(int passes) {
  Probe p;
  const uint64_t* b = buf_.get();
  for (int i = 0; i < std::max(passes, 1); ++i) {
    std::atomic<uint64_t> total{0};
    const auto t0 = Clock::now();
    parallel_for(int64_t(words_), int64_t(1) << 16, [b, &total](int64_t i0, int64_t i1) {
      total.fetch_add(sum_words(b + i0, uint64_t(i1 - i0)), std::memory_order_relaxed);
    });
    const double s = seconds_since(t0);
    // Using the sum keeps the reads from being elided; a wrong sum is a bug in lowbit.
    LOWBIT_CHECK(total.load() == checksum_, "bandwidth probe: wrong sum");
    p.gbps.push_back(s > 0 ? double(buffer_bytes()) / s * 1e-9 : 0.0);
  }
  return p;
}

double BenchResult::tg_gbps() const {
  return double(bytes_per_token) * tg.median_tps() * 1e-9;
}

std::vector<FormatShare> format_shares(const Model& m, int reps) {
  struct Item {
    size_t share;
    PreparedMatrix pm;
  };
  std::vector<FormatShare> shares;
  std::vector<Item> items;
  int64_t max_k = 0, max_m = 0;
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() != 2) continue;
    if (t.name == "token_embd.weight" && !m.config.tied_output) continue;  // one row per token
    const std::string name = t.format.name();
    auto it = std::find_if(shares.begin(), shares.end(),
                           [&](const FormatShare& s) { return s.format == name; });
    if (it == shares.end()) it = shares.insert(shares.end(), FormatShare{name});
    it->matrices += 1, it->bytes += t.bytes;
    items.push_back(
        {size_t(it - shares.begin()), PreparedMatrix(t.format, t.data, t.rows(), t.row_length())});
    max_k = std::max(max_k, t.row_length()), max_m = std::max(max_m, t.rows());
  }
  std::vector<float> x(static_cast<size_t>(max_k)), y(static_cast<size_t>(max_m));
  Rng rng(7);
  for (float& v : x) v = float(rng.uniform()) - 0.5f;
  std::vector<std::vector<double>> passes(shares.size());
  for (int rep = -1; rep < reps; ++rep) {  // -1: the warm-up
    std::vector<double> sum(shares.size(), 0.0);
    for (const Item& it : items) {
      const auto t0 = Clock::now();
      it.pm.multiply(x.data(), 1, y.data());
      sum[it.share] += seconds_since(t0);
    }
    for (size_t i = 0; rep >= 0 && i < shares.size(); ++i) passes[i].push_back(sum[i]);
  }
  for (size_t i = 0; i < shares.size(); ++i) shares[i].seconds = median_of(passes[i]);
  return shares;
}

BenchResult run_bench(const Model& m, const BenchOptions& o) {
  if (o.n_prompt < 0 || o.n_gen < 0 || o.n_prompt + o.n_gen == 0) {
    throw Error("nothing to measure", {.field = "-p / -n", .expected = ">= 0, not both 0"});
  }
  if (o.reps < 1) {
    throw Error("repetitions must be positive",
                {.field = "-r", .expected = ">= 1", .found = std::to_string(o.reps)});
  }
  BenchResult r;
  r.threads = max_threads();
  r.bytes_per_token = weight_bytes_per_token(m);
  LlamaEngine e(m, o.n_prompt + o.n_gen, std::max<int64_t>(o.n_prompt, 1));
  Rng rng(o.seed);
  if (o.n_prompt > 0) {
    const std::vector<int32_t> tokens = random_tokens(m, o.n_prompt, rng);
    r.pp.tokens = o.n_prompt;
    if (o.warmup) e.eval(tokens.data(), o.n_prompt, 0);
    const double cpu0 = cpu_now();
    for (int i = 0; i < o.reps; ++i) {
      const auto t0 = Clock::now();
      e.eval(tokens.data(), o.n_prompt, 0);  // from position 0: an empty context
      r.pp.seconds.push_back(seconds_since(t0));
    }
    r.pp.cpu_seconds = cpu_now() - cpu0;
  }
  std::optional<ReadBandwidth> bw;
  if (o.bandwidth) bw.emplace(o.bandwidth_bytes);
  if (o.n_gen > 0) {
    const std::vector<int32_t> tokens = random_tokens(m, o.n_gen, rng);
    r.tg.tokens = o.n_gen;
    if (o.warmup) generate(e, tokens, std::min<int64_t>(o.n_gen, 2));
    if (bw) r.bw_before = bw->measure(o.bandwidth_passes);
    const double cpu0 = cpu_now();
    for (int i = 0; i < o.reps; ++i) {
      const auto t0 = Clock::now();
      generate(e, tokens, o.n_gen);
      r.tg.seconds.push_back(seconds_since(t0));
    }
    r.tg.cpu_seconds = cpu_now() - cpu0;
    if (bw) r.bw_after = bw->measure(o.bandwidth_passes);
  } else if (bw) {
    r.bw_before = bw->measure(o.bandwidth_passes);
  }
  if (o.format_shares) r.shares = format_shares(m, std::max(o.reps, 3));
  return r;
}

}  // namespace lowbit
