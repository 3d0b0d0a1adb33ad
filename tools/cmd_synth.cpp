// `lowbit synth --shape NAME -o FILE [--type T] [--output-type T] [--seed S] [--json]`, or a custom
// shape (--dim --ff --layers --heads --kv-heads --vocab --ctx [--head-dim] [--tied] [--arch]
// [--qkv-bias] [--rope-theta]; with --shape these override the named shape): writes a GGUF of that
// architecture with synthetic weights, streamed, and prints its size, parameters and time.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <tuple>

#include "commands.h"
#include "io/synth.h"
#include "lowbit/error.h"
#include "lowbit/threads.h"

namespace lowbit::cli {

namespace {

struct SynthArgs {
  std::string shape, out, type = "f16", output_type, arch;
  uint64_t seed = 0;
  std::optional<int64_t> dim, ff, layers, heads, kv_heads, vocab, ctx, head_dim;
  std::optional<double> rope_theta;
  bool tied = false, qkv_bias = false, json = false;
  int threads = 0;
};

// The named shape (if any) with every given option applied over it.
ModelConfig config_of(const SynthArgs& a) {
  ModelConfig c;
  if (!a.shape.empty()) {
    c = synth_shape(a.shape);
  } else {
    const std::pair<const char*, bool> need[] = {{"--dim", a.dim.has_value()},
                                                 {"--ff", a.ff.has_value()},
                                                 {"--layers", a.layers.has_value()},
                                                 {"--heads", a.heads.has_value()},
                                                 {"--vocab", a.vocab.has_value()}};
    for (const auto& [opt, given] : need) {
      if (!given) {
        throw Error(
            "a custom shape needs --dim, --ff, --layers, --heads and --vocab (or use "
            "--shape)",
            {.field = opt, .expected = "a value"});
      }
    }
    c.name = "custom (synthetic weights)";
    c.n_ctx_train = 2048;
  }
  if (!a.arch.empty()) c.arch = a.arch;
  const bool shape_changed = a.dim || a.heads || a.head_dim;
  c.n_embd = a.dim.value_or(c.n_embd), c.n_ff = a.ff.value_or(c.n_ff);
  c.n_layer = a.layers.value_or(c.n_layer), c.n_head = a.heads.value_or(c.n_head);
  c.n_head_kv = a.kv_heads.value_or(a.shape.empty() ? c.n_head : c.n_head_kv);
  c.n_vocab = a.vocab.value_or(c.n_vocab), c.n_ctx_train = a.ctx.value_or(c.n_ctx_train);
  if (shape_changed) c.head_dim = a.head_dim.value_or(0);  // 0: dim / heads
  c.rope_theta = a.rope_theta.value_or(c.rope_theta);
  c.tied_output = c.tied_output || a.tied;
  c.qkv_bias = c.qkv_bias || a.qkv_bias || (!a.arch.empty() && a.arch == "qwen2");
  if (c.arch == "qwen2" && a.shape.empty()) c.rms_eps = 1e-6;
  return c;
}

int run_synth(const SynthArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  if (a.threads > 0) set_threads(a.threads);
  const ModelConfig c = config_of(a);
  SynthOptions o{.type = Format::parse(a.type), .seed = a.seed, .show_progress = !a.json};
  if (!a.output_type.empty()) o.output_type = Format::parse(a.output_type);
  const SynthResult r = write_synth_model(c, a.out, o);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const uint64_t file_bytes = std::filesystem::file_size(a.out);
  const double bpw = 8.0 * double(r.tensor_bytes) / double(r.parameters);
  // Fallbacks, one line per (wanted, chosen, row length) rather than per tensor.
  std::map<std::tuple<std::string, std::string, int64_t>, int> fallbacks;
  bool private_types = false;
  for (const auto& t : r.tensors) {
    private_types |= !t.to.is_ggml_type();
    if (!(t.to == t.wanted)) ++fallbacks[{t.wanted.name(), t.to.name(), t.shape.back()}];
  }
  if (a.json) {
    nlohmann::json j = {{"output", a.out},
                        {"arch", c.arch},
                        {"name", c.name},
                        {"type", o.type.name()},
                        {"seed", a.seed},
                        {"tensors", r.tensors.size()},
                        {"parameters", r.parameters},
                        {"tensor_bytes", r.tensor_bytes},
                        {"file_bytes", file_bytes},
                        {"bits_per_weight", bpw},
                        {"seconds", secs},
                        {"threads", max_threads()},
                        {"fallbacks", nlohmann::json::array()}};
    for (const auto& [k, n] : fallbacks) {
      j["fallbacks"].push_back({{"wanted", std::get<0>(k)},
                                {"to", std::get<1>(k)},
                                {"row_length", std::get<2>(k)},
                                {"tensors", n}});
    }
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  for (const auto& [k, n] : fallbacks) {
    fmt::print("{} tensor(s) with rows of {} do not tile into {} blocks -> {}\n", n, std::get<2>(k),
               std::get<0>(k), std::get<1>(k));
  }
  const double params = double(r.parameters);
  fmt::print(
      "{}: {} ({}, dim {}, ff {}, {} layers, {}/{} heads, vocab {}), {}: {} tensors, {} "
      "parameters ({}), {:.3f} bits per weight, {:.2f} MiB file, {:.2f} s "
      "({:.2f} M weights/s, {} threads)\n",
      a.out, c.name, c.arch, c.n_embd, c.n_ff, c.n_layer, c.n_head, c.n_head_kv, c.n_vocab,
      o.type.name(), r.tensors.size(), r.parameters,
      params >= 1e9 ? fmt::format("{:.3f} B", params * 1e-9)
                    : fmt::format("{:.3f} M", params * 1e-6),
      bpw, double(file_bytes) / (1 << 20), secs, params / secs * 1e-6, max_threads());
  if (private_types) {
    fmt::print("note: {} uses lowbit's own formats; it loads in lowbit, not in llama.cpp\n", a.out);
  }
  return 0;
}

}  // namespace

Runner add_synth(CLI::App& app) {
  auto* cmd = app.add_subcommand("synth",
                                 "Write a model of a real shape with synthetic weights "
                                 "(N(0, 0.02²), norms 1) for speed benchmarks");
  auto a = std::make_shared<SynthArgs>();
  std::string names;
  for (const auto& n : synth_shape_names()) names += (names.empty() ? "" : ", ") + n;
  cmd->add_option("--shape", a->shape, "Named shape: " + names)
      ->check(CLI::IsMember(synth_shape_names()));
  cmd->add_option("-o,--output", a->out, "Output .gguf")->required();
  cmd->add_option("--type", a->type,
                  "Format of the weight matrices (see `lowbit formats`); rows "
                  "it cannot tile fall back")
      ->capture_default_str();
  cmd->add_option("--output-type", a->output_type,
                  "Format of output.weight (or of the tied "
                  "embedding), default --type");
  cmd->add_option("--seed", a->seed, "Seed of the weights")->capture_default_str();
  auto pos = CLI::Range(int64_t(1), int64_t(1) << 40);
  cmd->add_option("--dim", a->dim, "Embedding length")->check(pos);
  cmd->add_option("--ff", a->ff, "Feed-forward length")->check(pos);
  cmd->add_option("--layers", a->layers, "Blocks")->check(pos);
  cmd->add_option("--heads", a->heads, "Attention heads")->check(pos);
  cmd->add_option("--kv-heads", a->kv_heads, "Key/value heads (default: --heads)")->check(pos);
  cmd->add_option("--vocab", a->vocab, "Vocabulary size (>= 259)")->check(pos);
  cmd->add_option("--ctx", a->ctx, "Training context length (default 2048)")->check(pos);
  cmd->add_option("--head-dim", a->head_dim, "Head dimension (default: dim / heads)")->check(pos);
  cmd->add_option("--rope-theta", a->rope_theta, "RoPE base frequency");
  cmd->add_option("--arch", a->arch, "Architecture (qwen2 has QKV biases)")
      ->check(CLI::IsMember({"llama", "qwen2"}));
  cmd->add_flag("--tied", a->tied, "No output.weight: the token embedding is reused");
  cmd->add_flag("--qkv-bias", a->qkv_bias, "Q/K/V biases");
  cmd->add_flag("--json", a->json, "Machine-readable output");
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)");
  return [a] { return run_synth(*a); };
}

}  // namespace lowbit::cli
