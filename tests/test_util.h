// Shared helpers for the tests: fixed data sets and fixture lookup.
#pragma once

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "lowbit/rng.h"

namespace lowbit::test {

// Fixtures folder: $LOWBIT_FIXTURES or ../shared/fixtures beside the source tree.
inline std::filesystem::path fixtures() {
  if (const char* env = std::getenv("LOWBIT_FIXTURES")) return env;
  return std::filesystem::path(LOWBIT_SOURCE_DIR) / ".." / "shared" / "fixtures";
}

// The whole file as bytes (empty if it cannot be read).
inline std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// A scratch file path: gtest's temp dir, the test file's tag and this process's id in the name
// (ctest runs tests as parallel processes). The file is removed when the process exits (the
// path's owner, by its pid), so runs leave nothing behind.
inline std::string tmp_path(const std::string& tag, const std::string& name) {
  static struct Written {
    std::vector<std::string> paths;
    ~Written() {
      if (getpid() != owner) return;
      for (const std::string& p : paths) std::remove(p.c_str());
    }
    pid_t owner = getpid();
  } written;
  std::string p = ::testing::TempDir() + "/" + tag + "_" + std::to_string(getpid()) + "_" + name;
  written.paths.push_back(p);
  return p;
}

#ifdef LOWBIT_CLI
struct CliRun {
  int rc;
  std::string out;
};

// Runs the lowbit binary with `args` (a shell command line): stdout and stderr together, or
// stdout alone (for --json output).
inline CliRun run_cli(const std::string& args, bool with_stderr = true) {
  const std::string cmd =
      std::string(LOWBIT_CLI) + " " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}
#endif

// Path of a fixture file (may not exist; see LOWBIT_REQUIRE_FIXTURE).
inline std::string fixture(const std::string& rel) {
  return (fixtures() / rel).string();
}

inline bool under_ci() {
  const char* ci = std::getenv("CI");
  return ci && std::string(ci) == "true";
}

// Skips the test when the fixture is absent; under CI=true a missing fixture fails instead.
#define LOWBIT_REQUIRE_FIXTURE(path)                                                    \
  do {                                                                                  \
    if (!std::filesystem::exists(path)) {                                               \
      if (::lowbit::test::under_ci()) FAIL() << "fixture missing under CI: " << (path); \
      GTEST_SKIP() << "fixture missing (set LOWBIT_FIXTURES): " << (path);              \
    }                                                                                   \
  } while (0)

inline std::vector<float> gaussian(int64_t n, uint64_t seed, double scale = 1.0) {
  std::vector<float> x(static_cast<size_t>(n));
  Rng rng(seed);
  for (auto& v : x) v = float(scale * rng.normal());
  return x;
}

inline std::vector<float> student_t(int64_t n, uint64_t seed, int nu = 3) {
  std::vector<float> x(static_cast<size_t>(n));
  Rng rng(seed);
  for (auto& v : x) v = float(rng.student_t(nu));
  return x;
}

}  // namespace lowbit::test
