// Speed of a model on this machine, measured as llama-bench measures it, next to the physical
// limit. pp: a prompt of p tokens (BOS + random ids) evaluated as one batch from position 0 (an
// empty context every repetition). tg: n tokens (BOS + random ids) evaluated one at a time from
// position 0. One untimed warm-up of each first; tokens/s per repetition, summarised as median,
// min and max. Generation reads every weight once per token, so it cannot beat
// memory bandwidth / weight_bytes_per_token: the read-bandwidth probe measures that bandwidth in
// the same run, before and after generation (the machine is shared and its bandwidth swings).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/huge_pages.h"
#include "lowbit/model.h"

namespace lowbit {

// Bytes of weights one forward pass of one token reads: every tensor once (matrices, norms,
// biases) except the token embedding, of which one row; a tied embedding is also read in full as
// the output matrix.
uint64_t weight_bytes_per_token(const Model& m);

struct Speed {
  int64_t tokens = 0;           // per repetition
  std::vector<double> seconds;  // one per timed repetition
  double cpu_seconds = 0;       // process CPU time (user + system) over the timed repetitions
  double median_tps() const;    // tokens per second
  double min_tps() const;
  double max_tps() const;
  // CPU time / (wall time x threads): near 1 when the threads had the cores to themselves; far
  // below on a shared, oversubscribed machine (the figures then measure the neighbours too).
  double cpu_share(int threads) const;
};

// Multi-threaded streaming read of a buffer much larger than the caches: each pass sums it
// (64-bit integer adds, vectorised) over max_threads() threads; GB/s = 1e9 bytes per second.
// The buffer is in huge pages like the engine's repacked weights (lowbit/huge_pages.h).
class ReadBandwidth {
 public:
  explicit ReadBandwidth(uint64_t buffer_bytes = uint64_t(1) << 30);
  struct Probe {
    std::vector<double> gbps;  // one per pass
    double median() const;
    double min() const;
    double max() const;
  };
  Probe measure(int passes);
  uint64_t buffer_bytes() const { return words_ * sizeof(uint64_t); }
  // The sum every pass computed (the buffer holds 0, 1, 2, ...): proves the reads happened.
  uint64_t checksum() const { return checksum_; }

 private:
  HugeBuffer<uint64_t> buf_;
  uint64_t words_ = 0, checksum_ = 0;
};

struct BenchOptions {
  int64_t n_prompt = 512, n_gen = 128;  // 0 skips that test
  int reps = 5;
  bool warmup = true;
  uint64_t seed = 1234;    // of the random token ids
  bool bandwidth = false;  // probe before and after generation
  uint64_t bandwidth_bytes = uint64_t(1) << 30;
  int bandwidth_passes = 9;
  bool format_shares = false;  // time generation's matrices per weight format (format_shares)
};

// Where a generated token's matrix time goes, per weight format.
struct FormatShare {
  std::string format;
  int64_t matrices = 0;
  uint64_t bytes = 0;  // the matrices' bytes (read once per token)
  double seconds = 0;  // per token: the median over the passes of the format's summed time
};
// Every weight matrix a token reads (the output layer, and the token embedding only when it is
// tied to it), prepared as the engine prepares them, multiplied by one token in the model's
// order with the threads generation uses: one warm-up pass, then `reps` timed passes. Formats
// in order of first appearance. (A mix's speed is the sum of these parts, plus attention and
// the small steps between them.)
std::vector<FormatShare> format_shares(const Model& m, int reps);

struct BenchResult {
  Speed pp, tg;
  uint64_t bytes_per_token = 0;
  std::optional<ReadBandwidth::Probe> bw_before, bw_after;
  int threads = 0;
  std::vector<FormatShare> shares;  // BenchOptions::format_shares
  double tg_gbps() const;           // bytes_per_token x median generation tokens/s / 1e9
};

BenchResult run_bench(const Model& m, const BenchOptions& o);

}  // namespace lowbit
