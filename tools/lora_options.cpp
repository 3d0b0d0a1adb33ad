// --lora / --lora-scale: adapters applied at run time by every verb that runs a model.
#include <memory>

#include "commands.h"
#include "lowbit/lora.h"

namespace lowbit::cli {

void add_lora_options(CLI::App* cmd, LoraArgs& a) {
  cmd->add_option("--lora", a.files,
                  "LoRA adapter applied at run time, unmerged (a GGUF adapter; repeatable)");
  cmd->add_option("--lora-scale", a.scales,
                  "Scale of the adapters (one for all, or one per --lora; default 1)");
}

namespace {

std::vector<std::pair<std::shared_ptr<LoraAdapter>, float>> read_all(const Model& m,
                                                                     const LoraArgs& a) {
  if (a.files.empty() && !a.scales.empty())
    throw Error("--lora-scale without --lora", {.field = "--lora-scale"});
  if (a.scales.size() > 1 && a.scales.size() != a.files.size()) {
    throw Error("give one --lora-scale, or one per --lora",
                {.field = "--lora-scale",
                 .expected = a.files.size() == 1 ? "1" : "1 or " + std::to_string(a.files.size()),
                 .found = std::to_string(a.scales.size())});
  }
  std::vector<std::pair<std::shared_ptr<LoraAdapter>, float>> r;
  for (size_t i = 0; i < a.files.size(); ++i) {
    auto ad = std::make_shared<LoraAdapter>(read_lora(a.files[i], &m.config));
    check_lora(*ad, m);
    const float s = a.scales.empty() ? 1.0f : a.scales[a.scales.size() == 1 ? 0 : i];
    r.emplace_back(std::move(ad), s);
  }
  return r;
}

}  // namespace

void attach_loras(Model& m, const LoraArgs& a) {
  for (auto& [ad, s] : read_all(m, a)) m.loras.push_back({std::move(ad), s});
}

void merge_loras(Model& m, const LoraArgs& a) {
  for (auto& [ad, s] : read_all(m, a)) merge_lora(m, *ad, s);
}

}  // namespace lowbit::cli
