// Every reproducer the fuzzers (or their authors) found, kept in fuzz/crashes/<target>/, must be
// rejected with a lowbit::Error (or load) -- never crash, never leak a foreign exception.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "lowbit/error.h"
#include "lowbit/lora.h"
#include "lowbit/model.h"

// GCC 12's -Wrestrict misfires on std::string concatenation at -O3 (GCC bug 105329); the tiny
// model builder is plain string code.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wrestrict"
#include "../fuzz/fuzz_tiny.h"
#pragma GCC diagnostic pop

namespace lowbit {
namespace {

namespace fs = std::filesystem;

const fs::path kCrashes = fs::path(LOWBIT_SOURCE_DIR) / "fuzz" / "crashes";

void write(const fs::path& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary) << bytes;
}

// A two-file reproducer (fuzz_hf_quant, fuzz_peft): the first file's bytes, a NUL, the second's;
// written into dir under the two names.
void write_pair(const fs::path& input, const fs::path& dir, const char* first, const char* second) {
  std::ifstream in(input, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t nul = bytes.find('\0');
  ASSERT_NE(nul, std::string::npos) << input;
  fs::create_directories(dir);
  write(dir / first, bytes.substr(0, nul));
  write(dir / second, bytes.substr(nul + 1));
}

// Loads a model folder; only lowbit::Error may come out.
void expect_clean(const fs::path& dir, const std::string& what, bool must_reject) {
  try {
    Model::load(dir.string());
    EXPECT_FALSE(must_reject) << what << ": accepted";
  } catch (const Error& e) {
    EXPECT_FALSE(std::string(e.what()).empty()) << what;
  }
}

TEST(FuzzRegression, HfConfigReproducers) {
  int n = 0;
  for (const auto& f : fs::directory_iterator(kCrashes / "hf_config")) {
    const fs::path dir = fs::path(::testing::TempDir()) / ("fz_cfg_" + std::to_string(n++));
    fs::create_directories(dir);
    fs::copy_file(f.path(), dir / "config.json", fs::copy_options::overwrite_existing);
    write(dir / "model.safetensors", fuzz::tiny::safetensors(fuzz::tiny::hf_tensors()));
    expect_clean(dir, f.path().filename().string(), false);
  }
  EXPECT_GT(n, 0);
}

TEST(FuzzRegression, SafetensorsReproducers) {
  int n = 0;
  for (const auto& f : fs::directory_iterator(kCrashes / "safetensors")) {
    const fs::path dir = fs::path(::testing::TempDir()) / ("fz_st_" + std::to_string(n++));
    fs::create_directories(dir);
    fs::copy_file(f.path(), dir / "model.safetensors", fs::copy_options::overwrite_existing);
    write(dir / "config.json", fuzz::tiny::config_json());
    expect_clean(dir, f.path().filename().string(), true);
  }
  EXPECT_GT(n, 0);
}

// fuzz_hf_quant's inputs: config.json, a NUL byte, model.safetensors.
TEST(FuzzRegression, HfQuantReproducers) {
  int n = 0;
  for (const auto& f : fs::directory_iterator(kCrashes / "hf_quant")) {
    const fs::path dir = fs::path(::testing::TempDir()) / ("fz_hfq_" + std::to_string(n++));
    write_pair(f.path(), dir, "config.json", "model.safetensors");
    expect_clean(dir, f.path().filename().string(), true);
  }
  EXPECT_GT(n, 0);
}

// fuzz_peft's inputs: adapter_config.json, a NUL byte, adapter_model.safetensors, read for the
// target's stories260K-shaped model.
TEST(FuzzRegression, PeftReproducers) {
  ModelConfig c;
  c.arch = "llama", c.n_layer = 5, c.n_embd = 64, c.n_ff = 172, c.n_head = 8, c.n_head_kv = 4;
  c.head_dim = 8, c.n_vocab = 512;
  int n = 0;
  for (const auto& f : fs::directory_iterator(kCrashes / "peft")) {
    const fs::path dir = fs::path(::testing::TempDir()) / ("fz_peft_" + std::to_string(n++));
    write_pair(f.path(), dir, "adapter_config.json", "adapter_model.safetensors");
    try {
      read_lora(dir.string(), &c);
    } catch (const Error& e) {
      EXPECT_FALSE(std::string(e.what()).empty()) << f.path();
    }
  }
  EXPECT_GT(n, 0);
}

}  // namespace
}  // namespace lowbit
