// libFuzzer target: the GGUF reader (io/gguf.h) and, when a file parses, the model description
// built on it (Model::load: architecture, shapes, tokenizer). Every metadata key goes through every
// typed getter; every tensor view is compared with the input bytes it claims to map.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "io/gguf.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace {

uint64_t touch_value(const lowbit::GgufValue& v) {
  uint64_t h = v.u ^ uint64_t(v.i) ^ v.s.size() ^ (v.b ? 1 : 0);
  for (const auto& e : v.arr) h += touch_value(e);
  return h;
}

// Every typed getter on every key: each either returns or throws lowbit::Error.
void exercise_getters(const lowbit::GgufFile& g, const std::string& key) {
  auto attempt = [](auto&& f) {
    try {
      f();
    } catch (const lowbit::Error&) {  // a type mismatch: expected for most getters
    }
  };
  attempt([&] { (void)g.get_uint(key); });
  attempt([&] { (void)g.get_uint(key, 7); });
  attempt([&] { (void)g.get_float(key); });
  attempt([&] { (void)g.get_float(key, 0.5); });
  attempt([&] { (void)g.get_bool(key, true); });
  attempt([&] { (void)g.get_string(key); });
  attempt([&] { (void)g.get_string(key, "x"); });
  attempt([&] { (void)g.get_string_array(key); });
  attempt([&] { (void)g.get_f32_array(key); });
  attempt([&] { (void)g.get_i32_array(key); });
}

void check_file(const lowbit::GgufFile& g, const uint8_t* data, size_t size) {
  FUZZ_REQUIRE(g.file_size() == size, "file_size");
  FUZZ_REQUIRE(g.data_offset() <= size || g.tensors().empty(), "data_offset past the end");
  volatile uint64_t sink = 0;
  for (const auto& [key, value] : g.metadata()) {
    sink = sink + touch_value(value);
    FUZZ_REQUIRE(g.find(key) == &value, "find() returns the entry for key " + key);
    (void)g.key_offset(key);
    exercise_getters(g, key);
  }
  for (const char* key :
       {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges", "general.architecture", "general.alignment", "no.such.key"}) {
    exercise_getters(g, key);
  }
  for (const auto& t : g.tensors()) {
    FUZZ_REQUIRE(g.find_tensor(t.name) == &t, "find_tensor() returns tensor " + t.name);
    FUZZ_REQUIRE(!t.ne.empty() && t.ne.size() <= lowbit::kGgufMaxDims, t.name + ": dims");
    uint64_t elements = 1;
    for (int64_t d : t.ne) {
      FUZZ_REQUIRE(d > 0, t.name + ": dimension");
      FUZZ_REQUIRE(!__builtin_mul_overflow(elements, uint64_t(d), &elements), t.name);
    }
    FUZZ_REQUIRE(t.elements() == int64_t(elements), t.name + ": elements()");
    FUZZ_REQUIRE(t.offset % g.alignment() == 0, t.name + ": alignment");
    FUZZ_REQUIRE(t.bytes == lowbit::gguf_tensor_bytes(t.format, t.ne, {}), t.name + ": bytes");
    // The view is exactly the file's bytes at data_offset + offset.
    uint64_t at = 0;
    FUZZ_REQUIRE(!__builtin_add_overflow(g.data_offset(), t.offset, &at), t.name);
    FUZZ_REQUIRE(fuzz::in_bounds(at, t.bytes, size), t.name + ": data outside the file");
    FUZZ_REQUIRE(t.data != nullptr && std::memcmp(t.data, data + at, t.bytes) == 0,
                 t.name + ": view does not map the file's bytes");
  }
}

void check_model(const std::string& path) {
  const lowbit::Model m = lowbit::Model::load(path);
  std::vector<float> row;
  for (const auto& t : m.tensors) {
    FUZZ_REQUIRE(!t.shape.empty(), t.name + ": shape");
    const int64_t K = t.row_length();
    FUZZ_REQUIRE(t.format.can_tile(K), t.name + ": untileable rows accepted");
    uint64_t expect = 0;
    FUZZ_REQUIRE(!__builtin_mul_overflow(uint64_t(t.rows()), t.format.row_bytes(K), &expect),
                 t.name);
    FUZZ_REQUIRE(t.bytes == expect, t.name + ": bytes != rows * row_bytes");
    // Decode the first row: what every consumer of the model does first.
    if (K <= (int64_t(1) << 16) && t.bytes > 0) {
      row.resize(size_t(K));
      t.format.dequantize_row(t.data, K, row.data());
    }
  }
  fuzz::check_tokenizer_shape(m.tokenizer);
  (void)m.parameter_count();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = (fuzz::scratch_dir("gguf") / "input.gguf").string();
  fuzz::write_file(path, data, size);
  try {
    const lowbit::GgufFile g(path);
    check_file(g, data, size);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
    return 0;  // rejected cleanly
  }
  try {
    check_model(path);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
