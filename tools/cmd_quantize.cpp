// `lowbit quantize -m IN -o OUT --type TYPE [--method rtn|imatrix|gptq|awq|awq+gptq]
// [--calib FILE] [--calib-tokens N] [--ctx C] [--imatrix FILE] [--act-order] [--damp D]
// [--token-embedding-type T] [--output-tensor-type T] [--fallback auto|ggml|lowbit] [-t N]`,
// and `lowbit calibrate -m IN -f TEXT -o IMATRIX`. Prints which tensors fell back and why.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/threads.h"
#include "quant/calibrate.h"
#include "quant/methods.h"
#include "quant/quantize.h"
#include "lowbit/progress.h"
#include <fstream>
#include <sstream>

namespace lowbit::cli {

namespace {

// Calibration chunks: the text's first `tokens` tokens cut into chunks of `ctx` positions (BOS
// first where the model uses it), as perplexity cuts them.
Chunks calibration_chunks(const Model& m, const std::string& file, int64_t ctx, int64_t tokens) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw Error("cannot open the calibration text", {.file = file, .field = "--calib"});
  std::stringstream ss;
  ss << f.rdbuf();
  const int64_t chunks = std::max<int64_t>(1, tokens / ctx);
  return chunk_text(m, ss.str(), {.ctx = ctx, .chunks = chunks});
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a model into GGUF (round-to-nearest with "
                                             "per-block error-minimising scales)");
  struct Opts {
    std::string in, out, type, emb_type, out_type, fallback = "auto", method = "rtn", tokenizer;
    std::string calib, imatrix;
    int64_t calib_tokens = 32768, ctx = 512;
    bool act_order = false;
    double damp = 0.01, sq_alpha = 0.5;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->in, "Input model: .gguf, .bin (llama2.c), .safetensors or a "
                                       "Hugging Face folder")->required();
  cmd->add_option("-o,--output", o->out, "Output .gguf")->required();
  cmd->add_option("--type", o->type, "Format of the weight matrices (see `lowbit formats`), "
                                     "e.g. q4_0, q4_k, iq4_nl, nf4, int4_g32, tq2_0")->required();
  cmd->add_option("--method", o->method, "rtn (round-to-nearest), imatrix (importance-weighted "
                  "RTN), gptq, awq, awq+gptq, smoothquant (W8A8 smoothing, then imatrix RTN)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq", "smoothquant"}));
  cmd->add_option("--sq-alpha", o->sq_alpha, "SmoothQuant migration strength")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--calib", o->calib, "Calibration text (imatrix, gptq, awq)");
  cmd->add_option("--calib-tokens", o->calib_tokens, "Calibration tokens used")
      ->capture_default_str()->check(CLI::Range(int64_t(16), int64_t(1) << 30));
  cmd->add_option("--ctx", o->ctx, "Calibration chunk length")->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("--imatrix", o->imatrix, "Importance matrix (lowbit calibrate or "
                                           "llama-imatrix, GGUF or legacy .dat) for imatrix");
  cmd->add_flag("--act-order", o->act_order, "GPTQ: columns in descending Hessian diagonal");
  cmd->add_option("--damp", o->damp, "GPTQ: dampening, fraction of the mean Hessian diagonal")
      ->capture_default_str()->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--token-embedding-type", o->emb_type, "Format of token_embd.weight");
  cmd->add_option("--output-tensor-type", o->out_type, "Format of output.weight (or of the tied "
                                                       "embedding)");
  cmd->add_option("--fallback", o->fallback,
                  "For rows the format cannot tile: ggml = nearest GGUF type (llama.cpp loads the "
                  "file), lowbit = nearest lowbit format (ragged groups), auto = ggml when the "
                  "requested types are GGUF types")
      ->check(CLI::IsMember({"auto", "ggml", "lowbit"}));
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer file (default: inside or beside the "
                                               "input)");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  return [o] {
    const auto t0 = std::chrono::steady_clock::now();
    if (o->threads > 0) set_threads(o->threads);
    QuantizeOptions q{.type = Format::parse(o->type)};
    if (!o->emb_type.empty()) q.token_embedding_type = Format::parse(o->emb_type);
    if (!o->out_type.empty()) q.output_type = Format::parse(o->out_type);
    q.fallback = o->fallback == "ggml"     ? FallbackPolicy::kGgml
                 : o->fallback == "lowbit" ? FallbackPolicy::kLowbit
                                           : FallbackPolicy::kAuto;
    const Model m = Model::load(o->in, {.tokenizer_path = o->tokenizer});
    MethodOptions mo{.method = parse_method(o->method)};
    mo.gptq.act_order = o->act_order, mo.gptq.damp = o->damp, mo.sq_alpha = o->sq_alpha;
    Importance imp;
    if (!o->imatrix.empty()) {
      if (mo.method != Method::kImatrix) {
        throw Error("--imatrix goes with --method imatrix", {.field = "--imatrix"});
      }
      imp = load_imatrix(o->imatrix);
      mo.imatrix = &imp;
    }
    std::optional<Chunks> calib;
    if (mo.method != Method::kRtn && !mo.imatrix) {
      if (o->calib.empty()) {
        throw Error("method " + o->method + " needs calibration text", {.field = "--calib",
                    .expected = "a text file (or --imatrix FILE with --method imatrix)"});
      }
      calib = calibration_chunks(m, o->calib, o->ctx, o->calib_tokens);
      fmt::print("calibration: {} chunks of {} tokens from {}\n", calib->tokens.size(), o->ctx,
                 o->calib);
    }
    Progress bar(o->method + " layers", m.config.n_layer);
    const auto plan = quantize_with_method(m, o->out, q, mo, calib ? &*calib : nullptr,
                                           [&](int64_t, int64_t) { bar.advance(); });
    bar.finish();
    uint64_t bytes = 0;
    int64_t params = 0;
    bool private_types = false;
    for (const auto& p : plan) {
      bytes += p.bytes, params += p.params;
      private_types |= !p.to.is_ggml_type();
      if (!(p.to == p.wanted)) {
        const ModelTensor* t = m.find(p.name);
        fmt::print("{}: rows of {} do not tile into {} blocks -> {}\n", p.name, t->row_length(),
                   p.wanted.name(), p.to.name());
      }
    }
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("{} -> {}: {} {} ({} tensors, {} parameters, {:.3f} bits per weight), {:.2f} MiB "
               "file, {:.2f} s\n", o->in, o->out, o->method, q.type.name(), plan.size(), params,
               8.0 * double(bytes) / double(params),
               double(std::filesystem::file_size(o->out)) / (1 << 20), secs);
    if (private_types) {
      fmt::print("note: {} uses lowbit's own formats; it loads in lowbit, not in llama.cpp\n",
                 o->out);
    }
    return 0;
  };
}

Runner add_calibrate(CLI::App& app) {
  auto* cmd = app.add_subcommand("calibrate", "Collect the importance matrix (per-channel mean "
                                              "x² of every linear input) over calibration text");
  struct Opts {
    std::string in, text, out;
    int64_t tokens = 32768, ctx = 512;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->in, "Model")->required();
  cmd->add_option("-f,--file", o->text, "Calibration text")->required();
  cmd->add_option("-o,--output", o->out, "Output imatrix (GGUF, llama.cpp's layout)")->required();
  cmd->add_option("--calib-tokens", o->tokens, "Tokens used")->capture_default_str()
      ->check(CLI::Range(int64_t(16), int64_t(1) << 30));
  cmd->add_option("--ctx", o->ctx, "Chunk length")->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  return [o] {
    if (o->threads > 0) set_threads(o->threads);
    const Model m = Model::load(o->in);
    const Chunks c = calibration_chunks(m, o->text, o->ctx, o->tokens);
    Progress bar("calibrating", int64_t(c.tokens.size()));
    const Calibration cal = calibrate(m, c, 512, false, [&] { bar.advance(); });
    bar.finish();
    save_imatrix(cal, m, o->out, o->text, int64_t(c.tokens.size()), o->ctx);
    fmt::print("{}: {} input groups, {} chunks of {} tokens -> {}\n", o->in, cal.size(),
               c.tokens.size(), o->ctx, o->out);
    return 0;
  };
}

}  // namespace lowbit::cli
