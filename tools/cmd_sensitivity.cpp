// `lowbit sensitivity -m IN --calib FILE -o SENS.json [--formats f1,f2,...] [--ctx 256]
// [--calib-tokens N] [--method rtn|imatrix|gptq] [--metric kld|proxy] [-t N]`: per weight
// matrix and candidate format, the damage when only that tensor is quantized (the planner's
// input for `lowbit quantize --target-bpw`). Prints the table and the proxy's rank correlation.
#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <iterator>
#include <optional>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/progress.h"
#include "lowbit/threads.h"
#include "quant/sensitivity.h"

namespace lowbit::cli {

Runner add_sensitivity(CLI::App& app) {
  auto* cmd = app.add_subcommand("sensitivity",
                                 "Measure each weight matrix's sensitivity to "
                                 "each candidate format (KL divergence when only it is "
                                 "quantized) for the mixed-precision planner");
  struct Opts {
    std::string in, calib, out, formats, method = "rtn", metric = "kld", tokenizer;
    std::string fallback = "auto";
    int64_t ctx = 256, calib_tokens = 2048;
    int threads = 0;
    bool json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->in, "Input model")->required();
  cmd->add_option("--calib", o->calib, "Calibration text")->required();
  cmd->add_option("-o,--output", o->out, "Output measurement (JSON)")->required();
  cmd->add_option("--formats", o->formats,
                  "Candidate formats, comma-separated: gguf (the default: "
                  "q2_k,q3_k,iq4_xs,q4_0,iq4_nl,q4_1,q4_k,q5_0,q5_k,q6_k,q8_0,f16), lowbit "
                  "(int2_g32,int3_g64,int3_g32,nf4,iq4_nl,int4_g32,int5_g64,int5_g32,int6_g32,"
                  "int8_g32,f16), all (both: the planner then takes either), or format names");
  cmd->add_option("--ctx", o->ctx, "Chunk length")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--calib-tokens", o->calib_tokens, "Calibration tokens (chunks = this / ctx)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(8), int64_t(1) << 30));
  cmd->add_option("--method", o->method,
                  "How variants are quantized: rtn, imatrix, gptq (awq "
                  "measures as imatrix, awq+gptq as gptq)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq", "smoothquant"}));
  cmd->add_option("--metric", o->metric,
                  "kld: KL divergence of every variant; proxy: the "
                  "layer-output error, scaled per tensor by one KLD (at ~4 bits)")
      ->capture_default_str()
      ->check(CLI::IsMember({"kld", "proxy"}));
  cmd->add_option("--fallback", o->fallback,
                  "For rows a candidate cannot tile: auto, ggml, "
                  "lowbit (as lowbit quantize)")
      ->check(CLI::IsMember({"auto", "ggml", "lowbit"}));
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer file");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_flag("--json", o->json, "Print the measurement as JSON instead of a table");
  return [o] {
    if (o->threads > 0) set_threads(o->threads);
    const Model m = Model::load(o->in, {.tokenizer_path = o->tokenizer});
    SensitivityOptions so;
    if (!o->formats.empty()) so.formats = parse_format_list(o->formats);
    so.method = parse_method(o->method);
    so.metric = o->metric == "proxy" ? SensitivityMetric::kProxy : SensitivityMetric::kKld;
    so.fallback = o->fallback == "ggml"     ? FallbackPolicy::kGgml
                  : o->fallback == "lowbit" ? FallbackPolicy::kLowbit
                                            : FallbackPolicy::kAuto;
    const Chunks c = calibration_chunks(m, o->calib, o->ctx, o->calib_tokens);
    std::optional<Progress> bar;  // the total is known at the first call
    Sensitivity s = measure_sensitivity(m, c, so, [&](int64_t, int64_t total) {
      if (!bar) bar.emplace("sensitivity", total);
      bar->advance();
    });
    if (bar) bar->finish();
    s.model = o->in, s.calib = o->calib, s.command = command_line();
    s.save(o->out);
    if (o->json) {
      std::ifstream f(o->out);
      fmt::print("{}", std::string(std::istreambuf_iterator<char>(f), {}));
      return 0;
    }
    fmt::print("{:<28} {:<14} {:>10} {:>12} {:>12}\n", "tensor", "format", "bytes", "KLD", "proxy");
    for (const auto& t : s.tensors) {
      for (const auto& e : t.entries) {
        fmt::print("{:<28} {:<14} {:>10} {:>12.4e} {:>12.4e}\n", t.name, e.format.name(), e.bytes,
                   e.kld, e.proxy);
      }
    }
    fmt::print("{}: {} tensors, {} chunks of {}, method {}, metric {}, {:.1f} s -> {}\n", o->in,
               s.tensors.size(), s.chunks, s.ctx, s.method, s.metric, s.seconds, o->out);
    if (std::isfinite(s.spearman_proxy)) {
      fmt::print("rank correlation with KLD: proxy {:.3f}, proxy scaled per tensor {:.3f}\n",
                 s.spearman_proxy, s.spearman_scaled);
    }
    return 0;
  };
}

}  // namespace lowbit::cli
