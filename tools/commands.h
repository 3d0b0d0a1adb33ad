// The lowbit CLI's verbs. Each registers its subcommand, parses its options and calls the library.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

#include "lowbit/error.h"
#include "lowbit/model.h"

namespace lowbit::cli {

// The command line as typed ("lowbit compare ..."), recorded by --json outputs so that
// `lowbit report` can print what produced each chart's data.
const std::string& command_line();

// Registers a verb; the returned callback runs it (after parsing) and returns the exit code.
using Runner = std::function<int()>;

// A model's tensor bytes and bits per weight (all tensors, norms included: 8 x bytes / parameters,
// as `lowbit inspect` and `lowbit compare` count them).
struct TensorSize {
  uint64_t bytes = 0;
  double bpw = 0;
};
inline TensorSize tensor_size(const Model& m) {
  uint64_t bytes = 0, params = 0;
  for (const auto& t : m.tensors) bytes += t.bytes, params += uint64_t(t.rows() * t.row_length());
  return {bytes, params ? 8.0 * double(bytes) / double(params) : 0.0};
}
// A whole text file (the -f / --calib inputs); Error naming the file and the option when it cannot
// be opened.
inline std::string read_text(const std::string& path, const char* option = "-f") {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open the text file", {.file = path, .field = option});
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// --lora FILE (repeatable) and --lora-scale S (one for all, or one per --lora) on a verb that runs
// a model; attach_loras reads them and hangs them on the model (its engines apply them).
struct LoraArgs {
  std::vector<std::string> files;
  std::vector<float> scales;
};
void add_lora_options(CLI::App* cmd, LoraArgs& a);
void attach_loras(Model& m, const LoraArgs& a);
// The same adapters merged into m's weights instead (merge_lora).
void merge_loras(Model& m, const LoraArgs& a);

Runner add_formats(CLI::App& app);
Runner add_demo(CLI::App& app);
Runner add_convert(CLI::App& app);
Runner add_inspect(CLI::App& app);
Runner add_quantize(CLI::App& app);
Runner add_calibrate(CLI::App& app);
Runner add_sensitivity(CLI::App& app);
Runner add_run(CLI::App& app);
Runner add_perplexity(CLI::App& app);
Runner add_compare(CLI::App& app);
Runner add_synth(CLI::App& app);
Runner add_bench(CLI::App& app);
Runner add_train(CLI::App& app);
Runner add_finetune(CLI::App& app);
Runner add_merge(CLI::App& app);
Runner add_report(CLI::App& app);
// lowbit report's page for `inputs` at `out` (cmd_report.cpp); the bytes written.
uint64_t write_report(const std::vector<std::string>& inputs, const std::string& out,
                      const std::string& title);

}  // namespace lowbit::cli
