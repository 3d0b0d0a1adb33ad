// `lowbit convert IN -o OUT [--type T] [--tokenizer FILE]`: any checkpoint to GGUF, or to
// safetensors when OUT ends in .safetensors; streamed one tensor at a time.
// `lowbit convert Q.gguf -o DIR --to gptq|awq|compressed-tensors`: a quantized model as a Hugging
// Face quantized checkpoint, codes and scales as they are (lowbit/hf_quant.h). A GPTQ, AWQ or
// compressed-tensors folder as IN is read the same way: its codes are kept unless --type says
// otherwise.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>

#include "commands.h"
#include "lowbit/error.h"
#include "lowbit/hf_quant.h"
#include "lowbit/model.h"

namespace lowbit::cli {

namespace {

bool is_float(const Format& f) {
  const auto n = f.info().name;
  return n == "f32" || n == "f16" || n == "bf16";
}

uint64_t parse_size(const std::string& s) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    throw Error("not a size",
                {.field = "--max-shard-size", .expected = "e.g. 5GB, 500MB", .found = s});
  }
  std::string unit = s.substr(used);
  for (char& ch : unit) ch = char(std::toupper(static_cast<unsigned char>(ch)));
  double mul = unit == "" || unit == "B" ? 1
               : unit == "KB"            ? 1e3
               : unit == "MB"            ? 1e6
               : unit == "GB"            ? 1e9
               : unit == "KIB"           ? 1024.0
               : unit == "MIB"           ? 1048576.0
               : unit == "GIB"           ? 1073741824.0
                                         : -1;
  if (mul < 0 || !(v > 0) || v * mul > 1e18) {
    throw Error("not a size",
                {.field = "--max-shard-size", .expected = "e.g. 5GB, 500MB", .found = s});
  }
  return uint64_t(v * mul);
}

}  // namespace

Runner add_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand("convert",
                                 "Convert a checkpoint (GGUF, safetensors + config.json, "
                                 "llama2.c, GPTQ / AWQ / compressed-tensors) to GGUF, "
                                 "safetensors, or a Hugging Face quantized checkpoint");
  struct Opts {
    std::string in, out, type, tokenizer, to, float_type = "f16", max_shard = "5GB",
                                              activations = "auto";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("input", o->in,
                  "Input: .gguf, .bin (llama2.c), .safetensors, index json or a "
                  "Hugging Face model folder (also GPTQ, AWQ, compressed-tensors)")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output .gguf or .safetensors; with --to, a folder")
      ->required();
  cmd->add_option("--type", o->type,
                  "Type of the weight matrices: f32 (default), f16, bf16; reading a quantized "
                  "checkpoint, any format for its quantized layers (codes kept where the grid "
                  "is the same, else re-quantized; default: the codes as they are)");
  cmd->add_option("--to", o->to,
                  "Write a Hugging Face quantized checkpoint: gptq (AutoGPTQ / GPTQModel v1), "
                  "awq (AutoAWQ GEMM) or compressed-tensors (llm-compressor)")
      ->check(CLI::IsMember({"gptq", "awq", "compressed-tensors"}));
  cmd->add_option("--float-type", o->float_type,
                  "With --to: type of the tensors that are not quantized linear layers and "
                  "not already f16/bf16/f32 (embeddings, head)")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}))
      ->capture_default_str();
  cmd->add_option("--max-shard-size", o->max_shard,
                  "With --to: largest safetensors shard (5GB as Hugging Face)")
      ->capture_default_str();
  cmd->add_option("--activations", o->activations,
                  "With --to compressed-tensors: int8 declares dynamic per-token int8 "
                  "activations (W8A8, int-quantized); auto: when every layer is int8 per row")
      ->check(CLI::IsMember({"auto", "none", "int8"}))
      ->capture_default_str();
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer file (default: the one inside the "
                  "input or beside it)");
  return [o] {
    const auto t0 = std::chrono::steady_clock::now();
    const Model m = Model::load(o->in, {.tokenizer_path = o->tokenizer});
    for (const auto& n : m.notes) fmt::print("note: {}\n", n);
    auto seconds = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    };
    if (!o->to.empty()) {
      if (!o->type.empty()) {
        throw Error(
            "--type and --to do not combine: quantize first (lowbit quantize), then "
            "convert the quantized file",
            {.field = "--type"});
      }
      HfExportOptions e;
      e.scheme = *parse_hf_scheme(o->to);
      e.float_type = Format::parse(o->float_type);
      e.max_shard_bytes = parse_size(o->max_shard);
      if (o->activations != "auto") e.int8_activations = o->activations == "int8";
      const HfExportResult r = write_hf_quantized(m, o->out, e);
      for (const auto& n : r.notes) fmt::print("note: {}\n", n);
      fmt::print("{}: {} tensors -> {} ({}, {} files, {:.1f} MiB of tensors) in {:.2f} s\n", o->in,
                 m.tensors.size(), o->out, o->to, r.files.size(),
                 double(r.tensor_bytes) / (1 << 20), seconds());
      return 0;
    }
    bool quantized_input = false;
    for (const auto& t : m.tensors) quantized_input |= !is_float(t.format);
    const std::string type = o->type.empty() ? "f32" : o->type;
    const Format to = Format::parse(type);
    const bool safetensors = std::filesystem::path(o->out).extension() == ".safetensors";
    if (!is_float(to) && (!quantized_input || safetensors)) {
      throw Error("--type " + type +
                      " is a quantized format: use lowbit quantize (convert "
                      "re-quantizes only quantized checkpoints into GGUF)",
                  {.field = "--type"});
    }
    if (safetensors) {
      write_safetensors(m, o->out, to, true);
    } else if (quantized_input && o->type.empty()) {  // the codes as they are
      write_gguf(
          m, o->out, [](const ModelTensor& t) { return t.format; }, {}, true);
    } else if (quantized_input) {
      // The checkpoint's quantized layers in `to`: their codes as they are where `to` holds the
      // same grid (GPTQ int4 g32 <-> int4_g32 / q4_0), else re-quantized from their exact values.
      // Its float tensors (embedding, head, norms) stay float, as the checkpoint keeps them.
      Model out = m;
      int exact = 0, requantized = 0;
      for (auto& t : out.tensors) {
        if (t.shape.size() < 2 || is_float(t.format)) continue;
        const Format tf = to.resolve_for_row(t.row_length());
        if (auto codes = transcode_exact(t, tf)) {
          auto buf = std::make_shared<std::vector<uint8_t>>(std::move(*codes));
          t.format = tf, t.data = buf->data(), t.bytes = buf->size(), t.mapped = false;
          out.owners.push_back(buf);
          ++exact;
        } else if (t.format != tf) {
          ++requantized;
        }
      }
      fmt::print("{}: {} weight matrices kept their codes in {}, {} re-quantized\n", o->in, exact,
                 to.name(), requantized);
      write_gguf(
          out, o->out,
          [&](const ModelTensor& t) {
            if (is_float(t.format)) return t.shape.size() < 2 ? Format::parse("f32") : t.format;
            return to.resolve_for_row(t.row_length());
          },
          {{"lowbit.quantize.method", requantized ? "rtn" : "convert"},
           {"lowbit.quantize.type", to.name()}},
          true);
    } else {
      write_gguf(m, o->out, to, true);
    }
    fmt::print("{}: {} tensors, {} parameters, {} vocabulary -> {} ({:.1f} MiB) in {:.2f} s\n",
               o->in, m.tensors.size(), m.parameter_count(), m.tokenizer.tokens.size(), o->out,
               double(std::filesystem::file_size(o->out)) / (1 << 20), seconds());
    return 0;
  };
}

}  // namespace lowbit::cli
