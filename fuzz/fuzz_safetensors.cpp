// libFuzzer target: the safetensors reader (io/safetensors.h). Each input is read
//  1. as a .safetensors file: views must tile the data section exactly and map the file's bytes;
//  2. when it parses, as model.safetensors of a Hugging Face checkpoint whose config.json (the
//     tiny model of fuzz_tiny.h) is fixed: Model::load maps names, permutes Q/K, checks shapes;
//  3. when it starts with '{', as model.safetensors.index.json beside two fixed valid shards.
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "fuzz_tiny.h"
#include "io/safetensors.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace {

struct Dirs {
  fuzz::fs::path single;  // model.safetensors (the input) + config.json
  fuzz::fs::path index;   // model.safetensors.index.json (the input) + 2 shards + config.json
};

const Dirs& dirs() {
  static const Dirs d = [] {
    const auto& root = fuzz::scratch_dir("safetensors");
    Dirs r{root / "single", root / "index"};
    const std::string cfg = fuzz::tiny::config_json();
    for (const auto& dir : {r.single, r.index}) {
      fuzz::fs::create_directories(dir);
      fuzz::write_file(dir / "config.json", reinterpret_cast<const uint8_t*>(cfg.data()),
                       cfg.size());
    }
    // The shards the seed index names: the tensors split in two.
    const auto all = fuzz::tiny::hf_tensors();
    const size_t half = all.size() / 2;
    const std::string shards[2] = {fuzz::tiny::safetensors({all.begin(), all.begin() + long(half)}),
                                   fuzz::tiny::safetensors({all.begin() + long(half), all.end()})};
    for (int i = 0; i < 2; ++i) {
      fuzz::write_file(r.index / ("model-0000" + std::to_string(i + 1) + "-of-00002.safetensors"),
                       reinterpret_cast<const uint8_t*>(shards[i].data()), shards[i].size());
    }
    return r;
  }();
  return d;
}

void check_file(const lowbit::SafetensorsFile& f, const uint8_t* data, size_t size) {
  FUZZ_REQUIRE(size >= 8, "a parsed file has a header length");
  uint64_t header = 0;
  std::memcpy(&header, data, 8);
  uint64_t expect = 8 + header;  // the reader checked this does not overflow
  for (const auto& t : f.tensors()) {
    FUZZ_REQUIRE(f.find(t.name) == &t, "find() returns tensor " + t.name);
    uint64_t elements = 1;
    for (int64_t d : t.shape) {
      FUZZ_REQUIRE(d >= 0, t.name + ": negative dimension");
      FUZZ_REQUIRE(!__builtin_mul_overflow(elements, uint64_t(d), &elements), t.name);
    }
    uint64_t bytes = 0;
    FUZZ_REQUIRE(!__builtin_mul_overflow(elements, lowbit::st_dtype_bytes(t.dtype), &bytes),
                 t.name);
    FUZZ_REQUIRE(t.bytes == bytes, t.name + ": bytes != elements * dtype size");
    const uint64_t at = f.offset_of(t);
    FUZZ_REQUIRE(at == expect, t.name + ": tensors do not tile the data section in order");
    FUZZ_REQUIRE(fuzz::in_bounds(at, t.bytes, size), t.name + ": data outside the file");
    FUZZ_REQUIRE(t.bytes == 0 || std::memcmp(t.data, data + at, t.bytes) == 0,
                 t.name + ": view does not map the file's bytes");
    expect = at + t.bytes;
    (void)lowbit::st_dtype_name(t.dtype);
  }
  FUZZ_REQUIRE(expect == size, "bytes after the last tensor accepted");
  volatile size_t sink = 0;
  for (const auto& [k, v] : f.metadata()) sink = sink + k.size() + v.size();
}

void check_model(const lowbit::Model& m) {
  fuzz::check_tokenizer_shape(m.tokenizer);
  for (const auto& t : m.tensors) {
    FUZZ_REQUIRE(!t.shape.empty(), t.name + ": shape");
    uint64_t expect = 0;
    FUZZ_REQUIRE(
        !__builtin_mul_overflow(uint64_t(t.rows()), t.format.row_bytes(t.row_length()), &expect),
        t.name);
    FUZZ_REQUIRE(t.bytes == expect, t.name + ": bytes != rows * row_bytes");
    volatile uint8_t sink = fuzz::touch(t.data, t.bytes);
    (void)sink;
  }
}

template <typename F>
void expect_error_or_success(F&& f) {
  try {
    f();
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Dirs& d = dirs();
  const std::string single = (d.single / "model.safetensors").string();
  fuzz::write_file(single, data, size);
  bool parsed = false;
  expect_error_or_success([&] {
    const lowbit::SafetensorsFile f(single);
    check_file(f, data, size);
    parsed = true;
  });
  if (parsed) {
    expect_error_or_success([&] { check_model(lowbit::Model::load(d.single.string())); });
  }
  if (size > 0 && data[0] == '{') {
    const std::string index = (d.index / "model.safetensors.index.json").string();
    fuzz::write_file(index, data, size);
    expect_error_or_success([&] {
      const lowbit::SafetensorsModel sm(index);
      for (const auto& t : sm.tensors()) {
        FUZZ_REQUIRE(sm.find(t.name) == &t, "index: find() returns tensor " + t.name);
      }
      check_model(lowbit::Model::load(d.index.string()));
    });
    fuzz::remove_file(index);
  }
  return 0;
}
