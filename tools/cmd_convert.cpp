// `lowbit convert IN -o OUT [--type f32|f16|bf16] [--tokenizer FILE]`: any checkpoint to GGUF, or
// to safetensors when OUT ends in .safetensors; streamed one tensor at a time.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace lowbit::cli {

Runner add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert",
                                 "Convert a checkpoint (GGUF, safetensors + config.json, "
                                 "llama2.c) to GGUF or safetensors");
  struct Opts {
    std::string in, out, type = "f32", tokenizer;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("input", o->in,
                  "Input: .gguf, .bin (llama2.c), .safetensors, index json or a "
                  "Hugging Face model folder")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output .gguf or .safetensors")->required();
  cmd->add_option("--type", o->type, "Type of the weight matrices: f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer file (default: the one inside the "
                  "input or beside it)");
  return [o] {
    const auto t0 = std::chrono::steady_clock::now();
    const Model m = Model::load(o->in, {.tokenizer_path = o->tokenizer});
    const Format type = Format::parse(o->type);
    if (std::filesystem::path(o->out).extension() == ".safetensors") {
      write_safetensors(m, o->out, type, true);
    } else {
      write_gguf(m, o->out, type, true);
    }
    fmt::print("{}: {} tensors, {} parameters, {} vocabulary -> {} ({:.1f} MiB) in {:.2f} s\n",
               o->in, m.tensors.size(), m.parameter_count(), m.tokenizer.tokens.size(), o->out,
               double(std::filesystem::file_size(o->out)) / (1 << 20),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  };
}

}  // namespace lowbit::cli
