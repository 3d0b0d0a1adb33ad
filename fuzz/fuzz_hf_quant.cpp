// libFuzzer target: quantized Hugging Face checkpoints (issue 22: GPTQ, AWQ, compressed-tensors).
// The input is config.json (with its quantization_config), a NUL byte, then model.safetensors;
// Model::load reads the folder. Either refused with lowbit::Error, or every tensor holds exactly
// its shape's bytes in its format and decodes (first and last row).
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::filesystem::path dir = fuzz::scratch_dir("hf_quant");
  const auto* nul = static_cast<const uint8_t*>(std::memchr(data, 0, size));
  const size_t cfg = nul ? size_t(nul - data) : size;
  fuzz::write_file((dir / "config.json").string(), data, cfg);
  fuzz::write_file((dir / "model.safetensors").string(), nul ? nul + 1 : data,
                   nul ? size - cfg - 1 : 0);
  try {
    const lowbit::Model m = lowbit::Model::load(dir.string());
    for (const auto& t : m.tensors) {
      FUZZ_REQUIRE(!t.shape.empty() && t.row_length() > 0, t.name + ": shape");
      const int64_t K = t.row_length(), rows = t.rows();
      FUZZ_REQUIRE(t.format.can_tile(K), t.name + ": rows do not tile");
      FUZZ_REQUIRE(t.bytes == t.format.row_bytes(K) * uint64_t(rows), t.name + ": bytes");
      std::vector<float> row(static_cast<size_t>(K));
      const uint64_t rb = t.format.row_bytes(K);
      t.format.dequantize_row(t.data, K, row.data());
      t.format.dequantize_row(t.data + uint64_t(rows - 1) * rb, K, row.data());
    }
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
