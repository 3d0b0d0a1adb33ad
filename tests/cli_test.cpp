// The lowbit binary: `inspect` agrees with the file, `convert` refuses to overwrite its input,
// bad input exits 1 with a message naming the file, and nothing crashes.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/gguf.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::CliRun;
using test::run_cli;

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

// `lowbit run` greedily continues BOS with the published text and reports both speeds;
// `lowbit quantize` says which tensors fell back, and its file runs.
TEST(Cli, RunAndQuantize) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const CliRun r = run_cli("run -m " + p + " -n 40 --temp 0 -t 1");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(
      r.out.rfind("Once upon a time, there was a little girl named Lily. She loved to play", 0), 0u)
      << r.out;
  EXPECT_NE(r.out.find("prompt: 1 tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("generation: "), std::string::npos) << r.out;
  // A prompt is echoed and continued; the same seed gives the same sampled text.
  const std::string sampled = "run -m " + p + " -p \"Once upon a time\" -n 24 --temp 1 --seed 7";
  const CliRun s1 = run_cli(sampled), s2 = run_cli(sampled);
  ASSERT_EQ(s1.rc, 0) << s1.out;
  EXPECT_EQ(s1.out.rfind("Once upon a time", 0), 0u) << s1.out;
  EXPECT_EQ(s1.out.substr(0, s1.out.find("prompt:")), s2.out.substr(0, s2.out.find("prompt:")));

  const std::string q = ::testing::TempDir() + "/cli_q4_0.gguf";
  const CliRun qz = run_cli("quantize -m " + p + " -o " + q + " --type q4_0");
  ASSERT_EQ(qz.rc, 0) << qz.out;
  EXPECT_NE(qz.out.find("blk.0.ffn_down.weight: rows of 172 do not tile into q4_0 blocks -> f16"),
            std::string::npos)
      << qz.out;
  const CliRun rq = run_cli("run -m " + q + " -n 16 --temp 0");
  ASSERT_EQ(rq.rc, 0) << rq.out;
  EXPECT_EQ(rq.out.rfind("Once upon a time", 0), 0u) << rq.out;
  const CliRun bad_type = run_cli("quantize -m " + p + " -o " + q + ".x --type q9_9");
  EXPECT_EQ(bad_type.rc, 1) << bad_type.out;
}

TEST(Cli, RunRejectsBadInputClearly) {
  const std::string p = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(p);
  const CliRun missing = run_cli("run -m /nonexistent/model.gguf -p hi");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("/nonexistent/model.gguf"), std::string::npos) << missing.out;
  // Wrong architecture: the same file claiming to be "bloom".
  std::ifstream in(p, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string key = "general.architecture";
  const size_t at = bytes.find(key);
  ASSERT_NE(at, std::string::npos);
  const size_t value = at + key.size() + 4 + 8;  // type (u32), string length (u64), "llama"
  ASSERT_EQ(bytes.substr(value, 5), "llama");
  bytes.replace(value, 5, "bloom");
  const std::string wrong = ::testing::TempDir() + "/bloom.gguf";
  std::ofstream(wrong, std::ios::binary) << bytes;
  const CliRun arch = run_cli("run -m " + wrong + " -p hi");
  EXPECT_EQ(arch.rc, 1) << arch.out;
  EXPECT_NE(arch.out.find("unsupported architecture"), std::string::npos) << arch.out;
  EXPECT_NE(arch.out.find("bloom"), std::string::npos) << arch.out;
  // Context overflow: a prompt longer than -c.
  const CliRun over = run_cli("run -m " + p +
                              " -c 8 -p \"Once upon a time, there was a little "
                              "girl named Lily and she liked to play\"");
  EXPECT_EQ(over.rc, 1) << over.out;
  EXPECT_NE(over.out.find("context overflow"), std::string::npos) << over.out;
  // Generation that reaches the end of the context stops there and says so.
  const CliRun full = run_cli("run -m " + p + " -c 8 -n 100 --temp 0");
  EXPECT_EQ(full.rc, 0) << full.out;
  EXPECT_NE(full.out.find("context full"), std::string::npos) << full.out;
}

// `lowbit perplexity` reproduces the golden value; --save-logits / --logits agree with --base;
// `lowbit compare` orders F16 before Q4_0; a missing text file is named.
TEST(Cli, PerplexityAndCompare) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  const std::string t = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(p);
  const CliRun golden = run_cli("perplexity -m " + p + " -f " + t +
                                    " -c 256 --score-all "
                                    "--chunks 4 --json",
                                false);
  ASSERT_EQ(golden.rc, 0) << golden.out;
  const auto g = nlohmann::json::parse(golden.out);
  EXPECT_NEAR(g["nll_mean"].get<double>(), 1.487395, 2e-6);
  EXPECT_EQ(g["scored_tokens"].get<int>(), 1024);

  const std::string dir = ::testing::TempDir();
  ASSERT_EQ(run_cli("convert " + p + " -o " + dir + "/c_f16.gguf --type f16").rc, 0);
  ASSERT_EQ(run_cli("quantize -m " + p + " -o " + dir + "/c_q4.gguf --type q4_0").rc, 0);
  const std::string eval = " -f " + t + " -c 64 --chunks 3";
  const CliRun base =
      run_cli("perplexity -m " + dir + "/c_q4.gguf --base " + p + eval + " --json", false);
  ASSERT_EQ(base.rc, 0) << base.out;
  ASSERT_EQ(run_cli("perplexity -m " + p + eval + " --save-logits " + dir + "/c.logits").rc, 0);
  const CliRun stored = run_cli(
      "perplexity -m " + dir + "/c_q4.gguf --logits " + dir + "/c.logits" + eval + " --json",
      false);
  ASSERT_EQ(stored.rc, 0) << stored.out;
  const auto jb = nlohmann::json::parse(base.out), js = nlohmann::json::parse(stored.out);
  EXPECT_TRUE(js["exact"].get<bool>());
  EXPECT_NEAR(js["kld"]["mean"].get<double>(), jb["kld"]["mean"].get<double>(),
              1e-4 * jb["kld"]["mean"].get<double>());
  EXPECT_EQ(js["top1"].get<double>(), jb["top1"].get<double>());

  const CliRun cmp = run_cli(
      "compare " + p + " " + dir + "/c_f16.gguf " + dir + "/c_q4.gguf" + eval + " --csv", false);
  ASSERT_EQ(cmp.rc, 0) << cmp.out;
  std::vector<std::vector<std::string>> rows;
  std::stringstream lines(cmp.out);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> cells;
    std::stringstream cs(line);
    for (std::string c; std::getline(cs, c, ',');) cells.push_back(c);
    rows.push_back(cells);
  }
  ASSERT_EQ(rows.size(), 4u) << cmp.out;
  EXPECT_EQ(rows[0][6], "kld");
  EXPECT_EQ(std::stod(rows[1][6]), 0.0);
  EXPECT_GT(std::stod(rows[2][6]), 0.0);
  EXPECT_LT(std::stod(rows[2][6]), std::stod(rows[3][6]));
  EXPECT_NEAR(std::stod(rows[3][6]), jb["kld"]["mean"].get<double>(), 1e-7);
  EXPECT_NEAR(std::stod(rows[2][2]), 16.0, 0.1);  // bits per weight of the F16 file

  const CliRun missing = run_cli("perplexity -m " + p + " -f /nonexistent/text.txt");
  EXPECT_EQ(missing.rc, 1);
  EXPECT_NE(missing.out.find("/nonexistent/text.txt"), std::string::npos) << missing.out;
}

// `lowbit calibrate` writes an imatrix that `quantize --method imatrix --imatrix` uses; GPTQ
// needs calibration text and, given it, writes a file that runs.
TEST(Cli, CalibrateAndQuantizeWithMethods) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  const std::string t = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(p);
  const std::string dir = ::testing::TempDir();
  const CliRun cal = run_cli("calibrate -m " + p + " -f " + t + " -o " + dir +
                             "/s.imatrix --calib-tokens 1024 --ctx 128");
  ASSERT_EQ(cal.rc, 0) << cal.out;
  EXPECT_NE(cal.out.find("21 input groups, 8 chunks of 128"), std::string::npos) << cal.out;
  GgufFile g(dir + "/s.imatrix");
  EXPECT_EQ(g.get_string("general.type"), "imatrix");
  ASSERT_NE(g.find_tensor("blk.4.ffn_down.weight.in_sum2"), nullptr);
  EXPECT_EQ(g.find_tensor("blk.4.ffn_down.weight.in_sum2")->ne[0], 172);
  const CliRun im = run_cli("quantize -m " + p + " -o " + dir +
                            "/s_im.gguf --type q4_0 --method "
                            "imatrix --imatrix " +
                            dir + "/s.imatrix");
  ASSERT_EQ(im.rc, 0) << im.out;
  const CliRun no_text = run_cli("quantize -m " + p + " -o " + dir +
                                 "/s_g.gguf --type q4_0 "
                                 "--method gptq");
  EXPECT_EQ(no_text.rc, 1) << no_text.out;
  EXPECT_NE(no_text.out.find("needs calibration text"), std::string::npos) << no_text.out;
  const CliRun gq = run_cli("quantize -m " + p + " -o " + dir +
                            "/s_g.gguf --type int4_g32 "
                            "--method gptq --act-order --calib " +
                            t + " --calib-tokens 1024 --ctx 128");
  ASSERT_EQ(gq.rc, 0) << gq.out;
  EXPECT_NE(gq.out.find("gptq int4_g32"), std::string::npos) << gq.out;
  const CliRun run = run_cli("run -m " + dir + "/s_g.gguf -n 12 --temp 0");
  ASSERT_EQ(run.rc, 0) << run.out;
  EXPECT_EQ(run.out.rfind("Once upon a time", 0), 0u) << run.out;
}

}  // namespace
}  // namespace lowbit
