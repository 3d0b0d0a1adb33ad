// The lowbit binary: `inspect` agrees with the file, `convert` refuses to overwrite its input,
// bad input exits 1 with a message naming the file, and nothing crashes.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include "io/gguf.h"
#include "test_util.h"

namespace lowbit {
namespace {

struct CliRun {
  int rc;
  std::string out;
};

CliRun run_cli(const std::string& args) {
  const std::string cmd = std::string(LOWBIT_CLI) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  while (size_t n = fread(buf.data(), 1, buf.size(), p)) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128, out};
}

TEST(Cli, InspectJsonAgreesWithTheFile) {
  const std::string p = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(p);
  const CliRun r = run_cli("inspect --json --check " + p);
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto j = nlohmann::json::parse(r.out);
  GgufFile g(p);
  ASSERT_EQ(j["tensors"].size(), g.tensors().size());
  uint64_t bytes = 0, params = 0;
  for (const auto& t : g.tensors()) bytes += t.bytes, params += uint64_t(t.elements());
  EXPECT_EQ(j["bytes"].get<uint64_t>(), bytes);
  EXPECT_EQ(j["parameters"].get<uint64_t>(), params);
  EXPECT_DOUBLE_EQ(j["bits_per_weight"].get<double>(), 32.0);
  EXPECT_EQ(j["metadata"]["llama.block_count"].get<int>(), 5);
  for (const auto& t : j["tensors"]) EXPECT_TRUE(t["finite"].get<bool>()) << t["name"];
}

TEST(Cli, ConvertRefusesToOverwriteItsInputAndReportsBadFiles) {
  const std::string p = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(p);
  const CliRun same = run_cli("convert " + p + " -o " + p);
  EXPECT_EQ(same.rc, 1) << same.out;
  EXPECT_NE(same.out.find("overwrite an input"), std::string::npos) << same.out;
  const CliRun missing = run_cli("inspect /nonexistent/model.gguf");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("/nonexistent/model.gguf"), std::string::npos) << missing.out;
  const CliRun usage = run_cli("convert");
  EXPECT_EQ(usage.rc, 1) << usage.out;
}

TEST(Cli, InspectCheckReportsNonFiniteValues) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  w.add_tensor("bad", {4}, Format::parse("f32"), [](OutputFile& o) {
    const float v[4] = {1, 2, std::nanf(""), 4};
    o.write(v, sizeof v);
  });
  const std::string path = ::testing::TempDir() + "/nan.gguf";
  w.write(path);
  // Not a loadable model, but still inspectable: the NaN is found (row 0, column 2), exit 1.
  const CliRun r = run_cli("inspect --check " + path);
  EXPECT_EQ(r.rc, 1) << r.out;
  EXPECT_NE(r.out.find("tensor bad has a non-finite value at row 0, column 2"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("not loadable as a model"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace lowbit
