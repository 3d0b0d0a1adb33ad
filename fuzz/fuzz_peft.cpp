// libFuzzer target: the PEFT adapter reader (lowbit/lora.h: adapter_config.json +
// adapter_model.safetensors). The input is the config, a NUL byte, then the safetensors file;
// it is read for a fixed stories260K-shaped model (5 layers, 8 query and 4 KV heads of 8).
// Either refused with lowbit::Error or every pair holds rank x in and out x rank values.
#include <cstdint>
#include <cstring>
#include <string>

#include "fuzz_common.h"
#include "lowbit/error.h"
#include "lowbit/lora.h"
#include "lowbit/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = fuzz::scratch_dir("peft");
  const auto* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t cfg = nul ? size_t(nul - data) : size;
  fuzz::write_file((dir / "adapter_config.json").string(), data, cfg);
  fuzz::write_file((dir / "adapter_model.safetensors").string(), nul ? nul + 1 : data,
                   nul ? size - cfg - 1 : 0);
  lowbit::ModelConfig c;
  c.arch = "llama", c.n_layer = 5, c.n_embd = 64, c.n_ff = 172, c.n_head = 8, c.n_head_kv = 4;
  c.head_dim = 8, c.n_vocab = 512;
  try {
    const lowbit::LoraAdapter a = lowbit::read_lora(dir.string(), &c);
    FUZZ_REQUIRE(!a.pairs.empty(), "an adapter without pairs accepted");
    for (const auto& [name, p] : a.pairs) {
      FUZZ_REQUIRE(p.rank > 0 && p.in > 0 && p.out > 0, name + ": dimensions");
      FUZZ_REQUIRE(int64_t(p.a.size()) == p.rank * p.in, name + ": lora_a size");
      FUZZ_REQUIRE(int64_t(p.b.size()) == p.out * p.rank, name + ": lora_b size");
    }
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
