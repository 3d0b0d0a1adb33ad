// `lowbit bench -m MODEL [-p 512] [-n 128] [-t T] [-r 5] [--bandwidth] [--json]`: prompt
// processing and generation speed as llama-bench measures them (median, min, max over -r
// repetitions after a warm-up), the bytes of weights each generated token reads, and with
// --bandwidth the machine's read bandwidth measured before and after generation in the same run,
// with the generation speed it allows. `lowbit bench --bandwidth` alone measures only bandwidth.
// A model whose weight matrices use more than one format (a mix) also gets each format's share
// of a generated token's matrix time (--format-shares forces it, --no-format-shares skips it).
#include <fmt/format.h>

#include <map>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "eval/bench.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/threads.h"

namespace lowbit::cli {

namespace {

struct BenchArgs {
  std::string model;
  BenchOptions o;
  int64_t bandwidth_mib = 1024;
  int threads = 0;
  bool json = false;
  std::optional<bool> shares;  // --format-shares / --no-format-shares; default: mixes only
  LoraArgs lora;
};

// Matrix formats of the model (2-D tensors), each once.
size_t matrix_formats(const Model& m) {
  std::map<std::string, int> seen;
  for (const auto& t : m.tensors) {
    if (t.shape.size() == 2) seen[t.format.name()] = 1;
  }
  return seen.size();
}

void print_shares(const BenchResult& r) {
  if (r.shares.empty()) return;
  double total = 0;
  for (const auto& s : r.shares) total += s.seconds;
  fmt::print("matrix time of a generated token by weight format ({} threads, one token):\n",
             r.threads);
  fmt::print("| format        | matrices |      MiB | ms/token |  share | GB/s |\n");
  fmt::print("|---------------|---------:|---------:|---------:|-------:|-----:|\n");
  for (const auto& s : r.shares) {
    fmt::print("| {:<13} | {:>8} | {:>8.1f} | {:>8.3f} | {:>5.1f}% | {:>4.1f} |\n", s.format,
               s.matrices, double(s.bytes) / (1 << 20), s.seconds * 1e3,
               total > 0 ? 100 * s.seconds / total : 0.0,
               s.seconds > 0 ? double(s.bytes) / s.seconds * 1e-9 : 0.0);
  }
}

nlohmann::json speed_json(const Speed& s, int threads) {
  return {{"tokens", s.tokens},
          {"tokens_per_second",
           {{"median", s.median_tps()}, {"min", s.min_tps()}, {"max", s.max_tps()}}},
          {"seconds", s.seconds},
          {"cpu_share", s.cpu_share(threads)}};
}

nlohmann::json probe_json(const ReadBandwidth::Probe& p) {
  return {{"median", p.median()}, {"min", p.min()}, {"max", p.max()}, {"passes", p.gbps}};
}

int bandwidth_only(const BenchArgs& a) {
  ReadBandwidth bw(a.o.bandwidth_bytes);
  const ReadBandwidth::Probe p = bw.measure(a.o.bandwidth_passes);
  if (a.json) {
    nlohmann::json j = {{"buffer_bytes", bw.buffer_bytes()},
                        {"threads", max_threads()},
                        {"gb_per_s", probe_json(p)}};
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  fmt::print(
      "read bandwidth: {:.1f} GB/s median (min {:.1f}, max {:.1f}) over {} passes of a "
      "{} MiB buffer, {} threads\n",
      p.median(), p.min(), p.max(), p.gbps.size(), bw.buffer_bytes() >> 20, max_threads());
  return 0;
}

// Bytes per format across the model's tensors ("q4_0 99.9%, f32 0.1%").
std::map<std::string, uint64_t> bytes_by_format(const Model& m) {
  std::map<std::string, uint64_t> by;
  for (const auto& t : m.tensors) by[t.format.name()] += t.bytes;
  return by;
}

void print_text(const BenchArgs& a, const Model& m, const BenchResult& r) {
  uint64_t total = 0;
  for (const auto& t : m.tensors) total += t.bytes;
  std::string formats;
  for (const auto& [name, b] : bytes_by_format(m)) {
    formats += fmt::format("{}{} {:.2f}%", formats.empty() ? "" : ", ", name,
                           100.0 * double(b) / double(total));
  }
  fmt::print("model: {} ({}, {} parameters, {:.1f} MiB: {}), {} threads\n", a.model, m.config.arch,
             m.parameter_count(), double(total) / (1 << 20), formats, r.threads);
  fmt::print("weights read per generated token: {:.1f} MB\n", double(r.bytes_per_token) * 1e-6);
  fmt::print("| test   | t/s median |      min |      max | weights GB/s | CPU share |\n");
  fmt::print("|--------|-----------:|---------:|---------:|-------------:|----------:|\n");
  if (r.pp.tokens > 0) {
    fmt::print("| {:<6} | {:>10.2f} | {:>8.2f} | {:>8.2f} | {:>12} | {:>8.0f}% |\n",
               fmt::format("pp{}", r.pp.tokens), r.pp.median_tps(), r.pp.min_tps(), r.pp.max_tps(),
               "", 100 * r.pp.cpu_share(r.threads));
  }
  if (r.tg.tokens > 0) {
    fmt::print("| {:<6} | {:>10.2f} | {:>8.2f} | {:>8.2f} | {:>12.2f} | {:>8.0f}% |\n",
               fmt::format("tg{}", r.tg.tokens), r.tg.median_tps(), r.tg.min_tps(), r.tg.max_tps(),
               r.tg_gbps(), 100 * r.tg.cpu_share(r.threads));
  }
  auto line = [&](const char* when, const ReadBandwidth::Probe& p) {
    const double limit = p.median() * 1e9 / double(r.bytes_per_token);
    fmt::print(
        "read bandwidth {}: {:.1f} GB/s median (min {:.1f}, max {:.1f}) -> generation "
        "limit {:.1f} tokens/s",
        when, p.median(), p.min(), p.max(), limit);
    if (r.tg.tokens > 0)
      fmt::print("; lowbit reached {:.0f}% of it", 100 * r.tg.median_tps() / limit);
    fmt::print("\n");
  };
  if (r.bw_before) line(r.tg.tokens > 0 ? "before tg" : "", *r.bw_before);
  if (r.bw_after) line("after tg ", *r.bw_after);
  print_shares(r);
}

void print_json(const BenchArgs& a, const Model& m, const BenchResult& r) {
  uint64_t total = 0;
  for (const auto& t : m.tensors) total += t.bytes;
  nlohmann::json j = {{"lowbit_bench", 1},
                      {"command", command_line()},
                      {"model", a.model},
                      {"arch", m.config.arch},
                      {"parameters", m.parameter_count()},
                      {"model_bytes", total},
                      {"formats", bytes_by_format(m)},
                      {"threads", r.threads},
                      {"n_prompt", a.o.n_prompt},
                      {"n_gen", a.o.n_gen},
                      {"reps", a.o.reps},
                      {"weight_bytes_per_token", r.bytes_per_token}};
  if (r.pp.tokens > 0) j["pp"] = speed_json(r.pp, r.threads);
  if (r.tg.tokens > 0) {
    j["tg"] = speed_json(r.tg, r.threads);
    j["tg"]["weights_gb_per_s"] = r.tg_gbps();
  }
  if (r.bw_before) {
    auto& b = j["bandwidth"];
    b = {{"buffer_bytes", a.o.bandwidth_bytes}};
    auto add = [&](const char* key, const ReadBandwidth::Probe& p) {
      b[key] = probe_json(p);
      const double limit = p.median() * 1e9 / double(r.bytes_per_token);
      b[key]["tg_limit_tokens_per_second"] = limit;
      if (r.tg.tokens > 0) b[key]["fraction_of_limit"] = r.tg.median_tps() / limit;
    };
    add("before", *r.bw_before);
    if (r.bw_after) add("after", *r.bw_after);
  }
  if (!r.shares.empty()) {
    auto& arr = j["format_shares"] = nlohmann::json::array();
    for (const auto& s : r.shares) {
      arr.push_back({{"format", s.format},
                     {"matrices", s.matrices},
                     {"bytes", s.bytes},
                     {"seconds_per_token", s.seconds}});
    }
  }
  fmt::print("{}\n", j.dump(2));
}

int run_bench_cmd(BenchArgs a) {
  if (a.threads > 0) set_threads(a.threads);
  a.o.bandwidth_bytes = uint64_t(a.bandwidth_mib) << 20;
  if (a.model.empty()) {
    if (!a.o.bandwidth) {
      throw Error("nothing to measure: give a model (-m) and/or --bandwidth",
                  {.field = "-m", .expected = "a model file"});
    }
    return bandwidth_only(a);
  }
  Model m = Model::load(a.model);
  attach_loras(m, a.lora);
  a.o.format_shares = a.shares.value_or(matrix_formats(m) > 1);
  const BenchResult r = run_bench(m, a.o);
  if (a.json)
    print_json(a, m, r);
  else
    print_text(a, m, r);
  return 0;
}

}  // namespace

Runner add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench",
                                 "Prompt and generation speed (llama-bench style) "
                                 "against the memory-bandwidth limit");
  auto a = std::make_shared<BenchArgs>();
  cmd->add_option("-m,--model", a->model,
                  "Model file (.gguf, llama2.c .bin, .safetensors or a "
                  "Hugging Face folder)");
  cmd->add_option("-p,--n-prompt", a->o.n_prompt, "Prompt tokens (0: no pp test)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("-n,--n-gen", a->o.n_gen, "Generated tokens (0: no tg test)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(0), int64_t(1) << 20));
  cmd->add_option("-r,--repetitions", a->o.reps, "Timed repetitions of each test")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)");
  cmd->add_flag("--bandwidth", a->o.bandwidth,
                "Measure memory read bandwidth (with -m: before "
                "and after generation, and the limit it sets)");
  cmd->add_option("--bandwidth-mib", a->bandwidth_mib, "Bandwidth probe buffer (MiB)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(1), int64_t(1) << 20));
  cmd->add_option("--bandwidth-passes", a->o.bandwidth_passes, "Passes per bandwidth probe")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", a->json, "Machine-readable output");
  add_lora_options(cmd, a->lora);
  cmd->add_flag_function(
      "--format-shares,!--no-format-shares", [a](int64_t n) { a->shares = n > 0; },
      "Time each weight format's matrices per generated token (default: when the matrices mix "
      "formats)");
  return [a] { return run_bench_cmd(*a); };
}

}  // namespace lowbit::cli
