// `lowbit quantize -m IN -o OUT --type TYPE [--token-embedding-type T] [--output-tensor-type T]
// [--fallback auto|ggml|lowbit] [-t N]`: round-to-nearest quantization of every weight matrix,
// streamed into a GGUF. Prints which tensors fell back to another format and why.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/threads.h"
#include "quant/quantize.h"

namespace lowbit::cli {

Runner add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Quantize a model into GGUF (round-to-nearest with "
                                             "per-block error-minimising scales)");
  struct Opts {
    std::string in, out, type, emb_type, out_type, fallback = "auto", method = "rtn", tokenizer;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->in, "Input model: .gguf, .bin (llama2.c), .safetensors or a "
                                       "Hugging Face folder")->required();
  cmd->add_option("-o,--output", o->out, "Output .gguf")->required();
  cmd->add_option("--type", o->type, "Format of the weight matrices (see `lowbit formats`), "
                                     "e.g. q4_0, q4_k, iq4_nl, nf4, int4_g32, tq2_0")->required();
  cmd->add_option("--method", o->method, "Quantization method")->check(CLI::IsMember({"rtn"}));
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
    const auto plan = quantize_model(m, o->out, q, true);
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
    fmt::print("{} -> {}: {} ({} tensors, {} parameters, {:.3f} bits per weight), {:.2f} MiB "
               "file, {:.2f} s\n", o->in, o->out, q.type.name(), plan.size(), params,
               8.0 * double(bytes) / double(params),
               double(std::filesystem::file_size(o->out)) / (1 << 20), secs);
    if (private_types) {
      fmt::print("note: {} uses lowbit's own formats; it loads in lowbit, not in llama.cpp\n",
                 o->out);
    }
    return 0;
  };
}

}  // namespace lowbit::cli
