// `lowbit demo`: the main job on the default model. For now: every weight format's bits per
// weight and round-trip error on a fixed Gaussian matrix and on the stories260K weights.
#include <fmt/format.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <vector>

#include "commands.h"
#include "eval/roundtrip.h"
#include "io/llama2c.h"
#include "lowbit/format.h"
#include "lowbit/rng.h"

namespace lowbit::cli {

namespace {

std::vector<Format> demo_formats() {
  std::vector<Format> out;
  for (const auto& f : all_formats()) {
    if (f.block_elems != 0 && !f.activation_only) out.emplace_back(f);
  }
  for (const char* n : {"int8", "int6_g32", "int5_g32", "int4_g32", "int4_g32_asym", "int4_g128",
                        "int3_g32", "int3_g32_asym", "int2_g32", "int2_g32_asym"}) {
    out.push_back(Format::parse(n));
  }
  return out;
}

std::filesystem::path fixtures_dir(const std::string& opt) {
  if (!opt.empty()) return opt;
  if (const char* env = std::getenv("LOWBIT_FIXTURES")) return env;
  return std::filesystem::path(LOWBIT_SOURCE_DIR) / ".." / "shared" / "fixtures";
}

void gaussian_table() {
  constexpr int64_t kRows = 256, kK = 4096;
  std::vector<float> x(kRows * kK);
  Rng rng(42);
  for (auto& v : x) v = float(rng.normal());
  fmt::print("## (a) Gaussian matrix {}x{}, N(0,1), seed 42\n\n", kRows, kK);
  fmt::print("| format | bpw | rel. RMSE |\n|---|---|---|\n");
  for (const auto& f : demo_formats()) {
    const RoundTrip r = roundtrip(f, x.data(), kRows, kK);
    fmt::print("| {} | {:.4f} | {:.5f} |\n", f.name(), r.bits_per_weight(), r.rel_rmse());
  }
  fmt::print("\n");
}

void stories_table(const Llama2cModel& m) {
  fmt::print("## (b) stories260K weights (2-D tensors; rows of 64 except ffn_down, rows of 172)\n\n");
  fmt::print("| format | used for rows of 64 | bpw | rel. RMSE | used for rows of 172 | bpw | "
             "rel. RMSE | all: bpw | all: rel. RMSE |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& f : demo_formats()) {
    RoundTrip r64{.used = f.resolve_for_row(64)}, r172{.used = f.resolve_for_row(172)};
    for (const auto& t : m.tensors()) {
      if (t.rows == 1) continue;  // norms stay f32
      (t.cols == 64 ? r64 : r172) += roundtrip(f, t.data, t.rows, t.cols);
    }
    RoundTrip all = r64;
    all += r172;
    fmt::print("| {} | {} | {:.3f} | {:.5f} | {} | {:.3f} | {:.5f} | {:.3f} | {:.5f} |\n", f.name(),
               r64.used.name(), r64.bits_per_weight(), r64.rel_rmse(), r172.used.name(),
               r172.bits_per_weight(), r172.rel_rmse(), all.bits_per_weight(), all.rel_rmse());
  }
  fmt::print("\n");
}

}  // namespace

Runner add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Run the main job on the default model (stories260K)");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("--fixtures", *dir, "Fixtures folder (default: $LOWBIT_FIXTURES or "
                                      "../shared/fixtures beside the source tree)");
  return [dir] {
    const auto t0 = std::chrono::steady_clock::now();
    gaussian_table();
    const auto model = fixtures_dir(*dir) / "models" / "stories260K" / "stories260K.bin";
    if (!std::filesystem::exists(model)) {
      fmt::print("stories260K not found at {}: fetch stories260K.bin from the Hugging Face repo "
                 "karpathy/tinyllamas (folder stories260K) into DIR/models/stories260K/ and run "
                 "with LOWBIT_FIXTURES=DIR.\n", model.string());
      return 0;
    }
    stories_table(Llama2cModel(model.string()));
    fmt::print("demo took {:.1f} s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  };
}

}  // namespace lowbit::cli
