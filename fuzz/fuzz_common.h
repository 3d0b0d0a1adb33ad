// Shared helpers of the libFuzzer targets. lowbit's parsers take paths, so each input is written
// to a file in a per-process scratch folder ($TMPDIR/lowbit-fuzz-<target>-<pid>, removed at exit).
// The contract under test (DESIGN.md "Errors and files"): bad input throws lowbit::Error; every
// other exception, crash, sanitizer report, hang or huge allocation is a bug. FUZZ_REQUIRE states
// what a successful parse promises (e.g. views inside the file) and aborts, so libFuzzer keeps it.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "lowbit/error.h"
#include "lowbit/tokenizer_data.h"

#define FUZZ_REQUIRE(cond, what)                                                                 \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      std::fprintf(stderr, "FUZZ_REQUIRE failed at %s:%d: %s (%s)\n", __FILE__, __LINE__, #cond, \
                   std::string(what).c_str());                                                   \
      std::abort();                                                                              \
    }                                                                                            \
  } while (0)

namespace fuzz {

namespace fs = std::filesystem;

inline fs::path& scratch_root() {
  static fs::path root;
  return root;
}

// The scratch folder of this process, created on first use.
inline const fs::path& scratch_dir(const char* target) {
  fs::path& root = scratch_root();
  if (root.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    root = fs::path(tmp && *tmp ? tmp : "/tmp") /
           ("lowbit-fuzz-" + std::string(target) + "-" + std::to_string(getpid()));
    std::error_code ec;
    fs::create_directories(root, ec);
    FUZZ_REQUIRE(!ec, "cannot create " + root.string() + ": " + ec.message());
    std::atexit([] {
      std::error_code e;
      fs::remove_all(scratch_root(), e);
    });
  }
  return root;
}

inline void write_file(const fs::path& path, const uint8_t* data, size_t size) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  FUZZ_REQUIRE(f != nullptr, "cannot write " + path.string());
  const bool ok = size == 0 || std::fwrite(data, 1, size, f) == size;
  FUZZ_REQUIRE(std::fclose(f) == 0 && ok, "short write to " + path.string());
}

inline void remove_file(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
}

// A rejected input: silent while fuzzing; LOWBIT_FUZZ_VERBOSE=1 prints why (to check seeds).
inline void rejected(const lowbit::Error& e) {
  static const bool verbose = std::getenv("LOWBIT_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
}

// True when [off, off + bytes) lies inside a buffer of `size` bytes (no wrap-around).
inline bool in_bounds(uint64_t off, uint64_t bytes, uint64_t size) {
  return off <= size && bytes <= size - off;
}

// What every TokenizerData promises (tokenizer_data.h), whichever file it came from: scores and
// token types one per token (or none), special token ids naming tokens.
inline void check_tokenizer_shape(const lowbit::TokenizerData& t) {
  const size_t n = t.tokens.size();
  FUZZ_REQUIRE(t.scores.empty() || t.scores.size() == n, "scores: one per token");
  FUZZ_REQUIRE(t.token_types.empty() || t.token_types.size() == n, "token_types: one per token");
  for (const auto* id : {&t.bos_id, &t.eos_id, &t.unk_id, &t.pad_id}) {
    FUZZ_REQUIRE(!*id || **id < n, "special token id " + std::to_string(**id) +
                                       " >= " + std::to_string(n) + " tokens");
  }
}

// Reads every byte of a view so a view past the mapping faults here, under the fuzzer.
inline uint8_t touch(const void* p, uint64_t bytes) {
  const auto* b = static_cast<const volatile uint8_t*>(p);
  uint8_t x = 0;
  for (uint64_t i = 0; i < bytes; ++i) x ^= b[i];
  return x;
}

}  // namespace fuzz
