// libFuzzer target: Hugging Face config.json, through Model::load(dir) on a checkpoint folder
// whose other files are fixed and valid (fuzz_tiny.h: model.safetensors and tokenizer.json of a
// hidden-8, 1-layer, 2-head, vocabulary-4 model, written once at start-up). The input is the
// config.json; a config that matches the weights loads, anything else must throw lowbit::Error.
#include <cstdint>
#include <string>

#include "fuzz_common.h"
#include "fuzz_tiny.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace {

const fuzz::fs::path& checkpoint_dir() {
  static const fuzz::fs::path dir = [] {
    const fuzz::fs::path d = fuzz::scratch_dir("hf_config") / "model";
    fuzz::fs::create_directories(d);
    const std::string st = fuzz::tiny::safetensors(fuzz::tiny::hf_tensors());
    const std::string tok = fuzz::tiny::tokenizer_json();
    fuzz::write_file(d / "model.safetensors", reinterpret_cast<const uint8_t*>(st.data()),
                     st.size());
    fuzz::write_file(d / "tokenizer.json", reinterpret_cast<const uint8_t*>(tok.data()),
                     tok.size());
    return d;
  }();
  return dir;
}

void check(const lowbit::Model& m) {
  fuzz::check_tokenizer_shape(m.tokenizer);
  const auto& c = m.config;
  FUZZ_REQUIRE(c.n_embd == fuzz::tiny::kHidden && c.n_layer == fuzz::tiny::kLayers &&
                   c.n_vocab == fuzz::tiny::kVocab && c.n_ff == fuzz::tiny::kFf,
               "a loaded config agrees with the weights");
  FUZZ_REQUIRE(c.n_head > 0 && c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0, "heads");
  FUZZ_REQUIRE(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim");
  FUZZ_REQUIRE(m.tokenizer.tokens.size() == uint64_t(fuzz::tiny::kVocab), "tokenizer");
  for (const auto& t : m.tensors) {
    uint64_t expect = 0;
    FUZZ_REQUIRE(!t.shape.empty(), t.name);
    FUZZ_REQUIRE(
        !__builtin_mul_overflow(uint64_t(t.rows()), t.format.row_bytes(t.row_length()), &expect) &&
            expect == t.bytes,
        t.name + ": bytes != rows * row_bytes");
    volatile uint8_t sink = fuzz::touch(t.data, t.bytes);
    (void)sink;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::fs::path& dir = checkpoint_dir();
  fuzz::write_file(dir / "config.json", data, size);
  try {
    check(lowbit::Model::load(dir.string()));
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
