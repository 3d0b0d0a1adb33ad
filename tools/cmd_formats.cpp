// `lowbit formats [--json]`: every number format with bits per weight, block, GGUF id.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "lowbit/format.h"

namespace lowbit::cli {

Runner add_formats(CLI::App& app) {
  auto* cmd = app.add_subcommand("formats", "List the number formats lowbit reads and writes");
  auto json = std::make_shared<bool>(false);
  cmd->add_flag("--json", *json, "Machine-readable output");
  return [json] {
    if (*json) {
      nlohmann::json out = nlohmann::json::array();
      for (const auto& f : all_formats()) {
        const Format fmt(f, f.block_elems == 0 ? 32 : 0);
        out.push_back({{"name", std::string(f.name)},
                       {"bits_per_weight", f.nominal_bits},
                       {"block_elems", f.block_elems},
                       {"grouped", f.block_elems == 0},
                       {"gguf_type", fmt.gguf_type()},
                       {"ggml_compatible", fmt.is_ggml_type()},
                       {"activation_only", f.activation_only},
                       {"fallback", std::string(f.fallback)},
                       {"description", std::string(f.description)}});
      }
      fmt::print("{}\n", out.dump(2));
      return 0;
    }
    fmt::print("{:<13} {:>6} {:>6} {:>11}  {}\n", "name", "bpw", "block", "gguf id", "description");
    for (const auto& f : all_formats()) {
      const bool grouped = f.block_elems == 0;
      const Format fmt(f, grouped ? 32 : 0);
      const std::string id =
          fmt.is_ggml_type() ? std::to_string(f.type_id) : fmt::format("{:#x}", f.type_id);
      fmt::print("{:<13} {:>6.3f} {:>6} {:>11}  {}{}{}\n",
                 grouped ? std::string(f.name) + "_gN" : std::string(f.name), f.nominal_bits,
                 grouped ? std::string("any") : std::to_string(f.block_elems), id, f.description,
                 grouped ? " [bpw at N=32; id | N]" : "",
                 f.activation_only ? " [activations]" : "");
    }
    fmt::print(
        "\nGrouped formats take a group size (int4_g128, int3_g32_asym; no _gN = one group "
        "per row) and allow a ragged last group.\nFormats without a ggml id load only in "
        "lowbit (private GGUF type ids from 0x4c400000 up).\n");
    return 0;
  };
}

}  // namespace lowbit::cli
