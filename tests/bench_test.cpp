// lowbit bench: the library measures positive speeds on a tiny synthetic model, counts the bytes
// a token reads as an independent sum over the file's tensors says, the bandwidth probe returns
// a positive finite figure and really reads its buffer; the CLI runs synth + bench end to end.
// (Speeds are measured by benchmarks, never asserted: only their sanity is checked here.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "eval/bench.h"
#include "io/gguf.h"
#include "io/synth.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::CliRun;
using test::run_cli;

std::string bench_tmp(const std::string& name) {
  return test::tmp_path("bench_test", name);
}

std::string tiny_model(const std::string& name, bool tied) {
  ModelConfig c;
  c.n_embd = 64, c.n_ff = 128, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.n_vocab = 300;
  c.n_ctx_train = 64, c.tied_output = tied;
  SynthOptions o;
  o.type = Format::parse("q8_0");
  const std::string p = bench_tmp(name);
  write_synth_model(c, p, o);
  return p;
}

// What one token reads, from the file's tensor table: everything once, but of the embedding
// one row of its ne[1] rows -- and all of it again as the output when there is no output.weight.
uint64_t bytes_per_token_from_file(const std::string& path) {
  GgufFile g(path);
  uint64_t total = 0;
  for (const auto& t : g.tensors()) total += t.bytes;
  const GgufTensorInfo* e = g.find_tensor("token_embd.weight");
  const uint64_t row = e->bytes / uint64_t(e->ne[1]);
  return total - e->bytes + row + (g.find_tensor("output.weight") ? 0 : e->bytes);
}

void expect_sane(const Speed& s, int64_t tokens, int reps) {
  EXPECT_EQ(s.tokens, tokens);
  ASSERT_EQ(s.seconds.size(), size_t(reps));
  for (double t : s.seconds) EXPECT_GT(t, 0);
  EXPECT_GT(s.min_tps(), 0);
  EXPECT_LE(s.min_tps(), s.median_tps());
  EXPECT_LE(s.median_tps(), s.max_tps());
  EXPECT_TRUE(std::isfinite(s.max_tps()));
  EXPECT_GE(s.cpu_seconds, 0);
  EXPECT_TRUE(std::isfinite(s.cpu_share(2)));
}

TEST(Bench, TinyModelSpeedsArePositiveAndBytesPerTokenIsTheWeightsRead) {
  for (bool tied : {false, true}) {
    const std::string p = tiny_model(tied ? "tied.gguf" : "untied.gguf", tied);
    const Model m = Model::load(p);
    BenchOptions o;
    o.n_prompt = 8, o.n_gen = 4, o.reps = 3;
    const BenchResult r = run_bench(m, o);
    expect_sane(r.pp, 8, 3);
    expect_sane(r.tg, 4, 3);
    EXPECT_EQ(r.bytes_per_token, bytes_per_token_from_file(p)) << "tied " << tied;
    EXPECT_EQ(weight_bytes_per_token(m), r.bytes_per_token);
    EXPECT_DOUBLE_EQ(r.tg_gbps(), double(r.bytes_per_token) * r.tg.median_tps() * 1e-9);
    EXPECT_FALSE(r.bw_before.has_value());
  }
}

TEST(Bench, OnlyTheRequestedTestsRunAndBadOptionsAreErrors) {
  const Model m = Model::load(tiny_model("opts.gguf", false));
  BenchOptions o;
  o.n_prompt = 0, o.n_gen = 3, o.reps = 1, o.warmup = false;
  o.bandwidth = true, o.bandwidth_bytes = 1 << 20, o.bandwidth_passes = 2;
  const BenchResult r = run_bench(m, o);
  EXPECT_TRUE(r.pp.seconds.empty());
  expect_sane(r.tg, 3, 1);
  ASSERT_TRUE(r.bw_before && r.bw_after);
  EXPECT_EQ(r.bw_after->gbps.size(), 2u);
  o.n_gen = 0;
  EXPECT_THROW(run_bench(m, o), Error);
  o.n_gen = 2, o.reps = 0;
  EXPECT_THROW(run_bench(m, o), Error);
}

TEST(Bench, BandwidthProbeReadsItsBufferAndIsPositive) {
  ReadBandwidth bw(uint64_t(8) << 20);
  EXPECT_EQ(bw.buffer_bytes(), uint64_t(8) << 20);
  const uint64_t n = bw.buffer_bytes() / 8;
  EXPECT_EQ(bw.checksum(), n / 2 * (n - 1));  // 0 + 1 + ... + (n-1), n even
  const ReadBandwidth::Probe p = bw.measure(3);
  ASSERT_EQ(p.gbps.size(), 3u);
  for (double g : p.gbps) {
    EXPECT_TRUE(std::isfinite(g));
    EXPECT_GT(g, 0);
  }
  EXPECT_LE(p.min(), p.median());
  EXPECT_LE(p.median(), p.max());
}

TEST(Bench, CliSynthThenBenchJson) {
  const std::string p = bench_tmp("cli.gguf");
  const CliRun s = run_cli(
      "synth --dim 64 --ff 128 --layers 2 --heads 4 --kv-heads 2 "
      "--vocab 300 --ctx 64 --type q8_0 --seed 3 --json -o " +
      p);
  ASSERT_EQ(s.rc, 0) << s.out;
  const auto sj = nlohmann::json::parse(s.out);
  EXPECT_EQ(sj["parameters"].get<int64_t>(), Model::load(p).parameter_count());
  const CliRun b = run_cli("bench -m " + p +
                           " -p 8 -n 4 -r 2 --json --bandwidth "
                           "--bandwidth-mib 4 --bandwidth-passes 2");
  ASSERT_EQ(b.rc, 0) << b.out;
  const auto j = nlohmann::json::parse(b.out);
  EXPECT_GT(j["pp"]["tokens_per_second"]["median"].get<double>(), 0);
  EXPECT_GT(j["tg"]["tokens_per_second"]["median"].get<double>(), 0);
  EXPECT_EQ(j["weight_bytes_per_token"].get<uint64_t>(), bytes_per_token_from_file(p));
  EXPECT_GT(j["bandwidth"]["after"]["tg_limit_tokens_per_second"].get<double>(), 0);
  EXPECT_GT(j["bandwidth"]["before"]["fraction_of_limit"].get<double>(), 0);

  const CliRun bad = run_cli("synth --dim 64 --ff 128 --layers 2 --heads 3 --vocab 300 -o " +
                             bench_tmp("bad.gguf"));
  EXPECT_EQ(bad.rc, 1) << bad.out;
  EXPECT_NE(bad.out.find("--heads"), std::string::npos) << bad.out;
  EXPECT_EQ(run_cli("bench").rc, 1);
  EXPECT_EQ(run_cli("synth --shape nonesuch -o " + bench_tmp("bad.gguf")).rc, 1);
}

// A mixed file (layers int4_g64, output q8_0) gets each format's share of a token's matrix time
// by default, covering exactly the matrices a token reads (the file's 2-D tensors but the
// untied token embedding); a single-format file gets none unless asked.
TEST(Bench, CliFormatSharesOfAMix) {
  const std::string p = bench_tmp("mix.gguf");
  ASSERT_EQ(run_cli("synth --dim 64 --ff 128 --layers 2 --heads 4 --kv-heads 2 --vocab 300 "
                    "--ctx 64 --type int4_g64 --output-type q8_0 -o " +
                    p)
                .rc,
            0);
  std::map<std::string, std::pair<int64_t, uint64_t>> want;  // format -> matrices, bytes
  for (const auto& t : Model::load(p).tensors) {
    if (t.shape.size() != 2 || t.name == "token_embd.weight") continue;
    auto& w = want[t.format.name()];
    w.first += 1, w.second += t.bytes;
  }
  ASSERT_EQ(want.size(), 2u);
  const CliRun b = run_cli("bench -m " + p + " -p 0 -n 2 -r 1 --json");
  ASSERT_EQ(b.rc, 0) << b.out;
  const auto j = nlohmann::json::parse(b.out);
  ASSERT_TRUE(j.contains("format_shares")) << b.out;
  std::map<std::string, std::pair<int64_t, uint64_t>> got;
  for (const auto& s : j["format_shares"]) {
    got[s["format"].get<std::string>()] = {s["matrices"].get<int64_t>(),
                                           s["bytes"].get<uint64_t>()};
    EXPECT_GT(s["seconds_per_token"].get<double>(), 0);
  }
  EXPECT_EQ(got, want);
  const CliRun text = run_cli("bench -m " + p + " -p 0 -n 2 -r 1");
  ASSERT_EQ(text.rc, 0) << text.out;
  EXPECT_NE(text.out.find("| int4_g64"), std::string::npos) << text.out;
  const CliRun off = run_cli("bench -m " + p + " -p 0 -n 2 -r 1 --json --no-format-shares");
  EXPECT_FALSE(nlohmann::json::parse(off.out).contains("format_shares")) << off.out;
  const std::string u = tiny_model("uniform.gguf", false);
  const CliRun uni = run_cli("bench -m " + u + " -p 0 -n 2 -r 1 --json");
  EXPECT_FALSE(nlohmann::json::parse(uni.out).contains("format_shares")) << uni.out;
  const CliRun forced = run_cli("bench -m " + u + " -p 0 -n 2 -r 1 --json --format-shares");
  EXPECT_EQ(nlohmann::json::parse(forced.out)["format_shares"].size(), 1u) << forced.out;
}

}  // namespace
}  // namespace lowbit
