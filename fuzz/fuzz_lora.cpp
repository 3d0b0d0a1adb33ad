// libFuzzer target: the GGUF LoRA adapter reader (lowbit/lora.h). A file either is refused with
// lowbit::Error or yields pairs whose matrices hold exactly rank x in and out x rank values; the
// engine's shape check runs against a fixed small model description.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "lowbit/error.h"
#include "lowbit/lora.h"
#include "lowbit/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = (fuzz::scratch_dir("lora") / "input.gguf").string();
  fuzz::write_file(path, data, size);
  lowbit::LoraAdapter a;
  try {
    a = lowbit::read_lora(path);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
    return 0;
  }
  FUZZ_REQUIRE(!a.pairs.empty(), "an adapter without pairs accepted");
  for (const auto& [name, p] : a.pairs) {
    FUZZ_REQUIRE(p.rank > 0 && p.in > 0 && p.out > 0, name + ": dimensions");
    FUZZ_REQUIRE(int64_t(p.a.size()) == p.rank * p.in, name + ": lora_a size");
    FUZZ_REQUIRE(int64_t(p.b.size()) == p.out * p.rank, name + ": lora_b size");
    (void)a.scale(p, 1.0f);
  }
  // Against a model of one 64 x 64 tensor per name the adapter uses: accepted or refused cleanly.
  lowbit::Model m;
  m.config.arch = "llama";
  static const float zeros[64 * 64] = {};
  for (const auto& [name, p] : a.pairs) {
    m.tensors.push_back({name, lowbit::Format::parse("f32"), {64, 64},
                         reinterpret_cast<const uint8_t*>(zeros), sizeof(zeros), false});
  }
  try {
    lowbit::check_lora(a, m);
    for (const auto& [name, p] : a.pairs) FUZZ_REQUIRE(p.in == 64 && p.out == 64, name);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
