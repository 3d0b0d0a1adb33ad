// libFuzzer target: the llama2.c checkpoint reader (io/llama2c.h), then Model::load on the same
// file with a fixed tokenizer.bin beside it (the tiny model's 4-token vocabulary), which checks
// the header against the tokenizer and every shape against the configuration.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "fuzz_tiny.h"
#include "io/llama2c.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace {

constexpr uint64_t kHeaderBytes = 28;  // 7 x int32; token_embd.weight follows

const std::string& input_path() {
  static const std::string path = [] {
    const auto& dir = fuzz::scratch_dir("llama2c");
    const std::string tok = fuzz::tiny::tokenizer_bin();
    fuzz::write_file(dir / "tokenizer.bin", reinterpret_cast<const uint8_t*>(tok.data()),
                     tok.size());
    return (dir / "model.bin").string();
  }();
  return path;
}

void check(const lowbit::Llama2cModel& m, const uint8_t* data, size_t size) {
  const auto& c = m.config();
  FUZZ_REQUIRE(c.dim > 0 && c.hidden_dim > 0 && c.n_layers > 0 && c.n_heads > 0 &&
                   c.n_kv_heads > 0 && c.vocab_size > 0 && c.seq_len > 0,
               "header fields positive");
  FUZZ_REQUIRE(c.dim % c.n_heads == 0 && c.n_heads % c.n_kv_heads == 0, "head divisibility");
  FUZZ_REQUIRE(!m.tensors().empty(), "a parsed checkpoint has tensors");
  // The first tensor (token_embd.weight) starts right after the header: locate the mapping.
  const auto* base = reinterpret_cast<const uint8_t*>(m.tensors().front().data) - kHeaderBytes;
  FUZZ_REQUIRE(m.tensors().front().name == "token_embd.weight", "first tensor");
  for (const auto& t : m.tensors()) {
    FUZZ_REQUIRE(t.rows > 0 && t.cols > 0, t.name + ": shape");
    uint64_t bytes = 0;
    FUZZ_REQUIRE(!__builtin_mul_overflow(uint64_t(t.rows) * 4, uint64_t(t.cols), &bytes), t.name);
    const auto* p = reinterpret_cast<const uint8_t*>(t.data);
    FUZZ_REQUIRE(p >= base, t.name + ": data before the file");
    const uint64_t at = uint64_t(p - base);
    FUZZ_REQUIRE(fuzz::in_bounds(at, bytes, size), t.name + ": data outside the file");
    FUZZ_REQUIRE(std::memcmp(p, data + at, bytes) == 0, t.name + ": view does not map the file");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string& path = input_path();
  fuzz::write_file(path, data, size);
  try {
    const lowbit::Llama2cModel m(path);
    check(m, data, size);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
    return 0;
  }
  try {
    const lowbit::Model m = lowbit::Model::load(path);
    FUZZ_REQUIRE(m.tokenizer.tokens.size() == uint64_t(m.config.n_vocab), "tokenizer size");
    fuzz::check_tokenizer_shape(m.tokenizer);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
