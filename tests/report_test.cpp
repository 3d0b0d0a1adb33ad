// `lowbit report` (issue 23): inputs recognised or refused by name, and the page itself opened in
// headless Chromium (Debian's chromium), which must render every chart with a mark for every data
// point and no script error.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "eval/report.h"
#include "lowbit/error.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string write(const std::string& name, const std::string& text) {
  const std::string p = test::tmp_path("report", name);
  std::ofstream(p) << text;
  return p;
}

std::string error_of(const std::vector<std::string>& inputs) {
  try {
    build_report(inputs, {}, "/*vega*/", "/*vega-lite*/");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Report, RefusesWhatIsNotOneOfLowbitsOutputsNamingTheFile) {
  const std::string text = write("text.json", "hello");
  std::string e = error_of({text});
  EXPECT_NE(e.find(text), std::string::npos) << e;
  EXPECT_NE(e.find("not JSON"), std::string::npos) << e;
  const std::string other = write("other.json", R"({"rows": []})");
  e = error_of({other});
  EXPECT_NE(e.find(other), std::string::npos) << e;
  EXPECT_NE(e.find("not one of lowbit's JSON outputs"), std::string::npos) << e;
  const std::string future = write("future.json", R"({"lowbit_compare": 2, "rows": []})");
  e = error_of({future});
  EXPECT_NE(e.find(future), std::string::npos) << e;
  EXPECT_NE(e.find("another version"), std::string::npos) << e;
  const std::string mixed = write("mixed.jsonl",
                                  "{\"lowbit_train_log\": 1, \"step\": 1, "
                                  "\"loss\": 2}\n{\"lowbit_bench\": 1}\n");
  e = error_of({mixed});
  EXPECT_NE(e.find(mixed), std::string::npos) << e;
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  // A plan alone has nothing measured to draw.
  const std::string plan = write("plan.json", R"({"lowbit_plan": 1, "tensors": []})");
  e = error_of({plan});
  EXPECT_NE(e.find("nothing to draw"), std::string::npos) << e;
  for (const auto& p : {text, other, future, mixed, plan}) fs::remove(p);
}

// Every input kind becomes its chart; the data goes in as JSON that cannot close its script.
TEST(Report, EachKindOfInputBecomesItsChartWithItsTableAndCommand) {
  const std::string cmp = write("cmp.json", R"({"lowbit_compare": 1, "command": "lowbit compare x",
    "rows": [{"file": "base.gguf", "bits_per_weight": 32, "ppl": {"ppl": 5.0}},
             {"file": "a.gguf", "bits_per_weight": 4.5, "model": {"ppl": 5.5},
              "kld": {"mean": 0.05}, "top1": 0.9, "method": "gptq", "kind": "uniform"},
             {"file": "b.gguf", "bits_per_weight": 3.5, "model": {"ppl": 6.5},
              "kld": {"mean": 0.2}, "top1": 0.8, "method": "rtn", "kind": "mix"}]})");
  const std::string ref = write("ref.json", R"({"lowbit_reference": 1, "label": "llama.cpp",
    "rows": [{"name": "Q4_0</script>", "bits_per_weight": 4.5, "kld": 0.09, "ppl": 5.8}]})");
  const std::string log = write("log.jsonl",
                                "{\"lowbit_train_log\": 1, \"step\": 1, \"loss\": 3.0}\n"
                                "{\"lowbit_train_log\": 1, \"step\": 2, \"loss\": 2.5, "
                                "\"val_loss\": 2.7}\n");
  const std::string html = build_report({cmp, ref, log}, {.title = "t"}, "VEGA", "VEGALITE");
  EXPECT_NE(html.find("<script>VEGA</script>"), std::string::npos);
  EXPECT_NE(html.find("Bits per weight against KL divergence"), std::string::npos);
  EXPECT_NE(html.find("Bits per weight against perplexity"), std::string::npos);
  EXPECT_NE(html.find("Training: loss against step"), std::string::npos);
  EXPECT_NE(html.find("lowbit compare x"), std::string::npos);  // the command
  EXPECT_NE(html.find("<td>llama.cpp</td>"), std::string::npos);
  // A name holding "</script>" is escaped in the table and in the embedded JSON.
  EXPECT_EQ(html.find("Q4_0</script>"), std::string::npos);
  EXPECT_NE(html.find("Q4_0&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("Q4_0\\u003c/script>"), std::string::npos);
  for (const auto& p : {cmp, ref, log}) fs::remove(p);
}

#ifdef LOWBIT_CLI
// The status the page writes once every chart has rendered (Chromium's DOM after a virtual 15 s).
json browser_status(const std::string& html) {
  const std::string profile = test::tmp_path("report", "chromium-profile");
  fs::remove_all(profile);
  const std::string cmd =
      "timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
      "--disable-background-networking --disable-component-update --disable-sync "
      "--user-data-dir=" +
      profile + " --virtual-time-budget=15000 --dump-dom 'file://" + fs::absolute(html).string() +
      "' 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string dom;
  char buf[65536];
  while (size_t n = fread(buf, 1, sizeof buf, p)) dom.append(buf, n);
  pclose(p);
  fs::remove_all(profile);
  const size_t a = dom.find("id=\"lowbit-status\"");
  if (a == std::string::npos) return nullptr;
  const size_t b = dom.find('>', a), c = dom.find("</pre>", a);
  if (b == std::string::npos || c == std::string::npos || c <= b + 1) return nullptr;
  return json::parse(dom.substr(b + 1, c - b - 1), nullptr, false);
}

// Every chart type, from the commands that produce each input, opened in Chromium.
TEST(Report, EveryChartRendersAMarkForEveryDataPointInChromium) {
  if (std::system("command -v chromium >/dev/null 2>&1") != 0) {
    if (test::under_ci()) FAIL() << "chromium missing under CI (make deps installs it)";
    GTEST_SKIP() << "chromium not installed (make deps installs it)";
  }
  const std::string model = test::fixture("models/stories260K/stories260K.gguf");
  const std::string text_path = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(model);
  LOWBIT_REQUIRE_FIXTURE(text_path);
  const std::string d = test::tmp_path("report", "inputs");
  fs::remove_all(d);
  fs::create_directories(d);
  std::ofstream(d + "/text.txt") << test::slurp(text_path).substr(0, 12000);
  auto run = [&](const std::string& args, const std::string& out = "") {
    const auto r = test::run_cli(args + (out.empty() ? "" : " > " + d + "/" + out), out.empty());
    EXPECT_EQ(r.rc, 0) << args << "\n" << r.out;
  };
  run("quantize -m " + model + " -o " + d + "/q4.gguf --type q4_0");
  run("quantize -m " + model + " -o " + d + "/i3.gguf --type int3_g32");
  run("compare " + model + " " + d + "/q4.gguf " + d + "/i3.gguf -f " + d +
          "/text.txt -c 64 --chunks 8 --json",
      "compare.json");
  run("sensitivity -m " + model + " --calib " + d + "/text.txt -o " + d +
      "/s.sens.json --formats q4_0,q8_0,f16 --ctx 64 --calib-tokens 128");
  run("quantize -m " + model + " -o " + d + "/mix.gguf --target-bpw 9 --sensitivity " + d +
      "/s.sens.json --formats q4_0,q8_0,f16");
  run("bench -m " + d + "/q4.gguf -p 8 -n 8 -r 1 -t 1 --bandwidth --bandwidth-mib 16 --json",
      "bench-q4.json");
  run("bench -m " + d + "/i3.gguf -p 8 -n 8 -r 1 -t 1 --bandwidth --bandwidth-mib 16 --json",
      "bench-i3.json");
  run("train --dim 16 --ff 32 --layers 1 --heads 2 --tokenizer " +
      test::fixture("models/stories260K/tok512.model") + " -f " + d + "/text.txt -o " + d +
      "/t.gguf --steps 6 --batch 2 --ctx 16 --eval-every 3 --json " + d + "/train.jsonl");
  const std::string html = d + "/report.html";
  run("report " + d + "/compare.json " + d + "/s.sens.json " + d + "/mix.plan.json " + d +
      "/bench-q4.json " + d + "/bench-i3.json " + d + "/train.jsonl -o " + html);
  const json st = browser_status(html);
  ASSERT_TRUE(st.is_object()) << "no #lowbit-status in the rendered page";
  EXPECT_EQ(st["charts"], 5) << st.dump();  // KLD, PPL, sensitivity, bench, training
  EXPECT_EQ(st["rendered"], st["charts"]) << st.dump();
  EXPECT_TRUE(st["errors"].empty()) << st.dump();
  for (const auto& [id, want] : st["expected"].items()) {
    EXPECT_GT(want.get<int64_t>(), 0) << id;
    EXPECT_GE(st["marks"].value(id, 0), want.get<int64_t>()) << id << ": " << st.dump();
  }
  fs::remove_all(d);
}
#endif

}  // namespace
}  // namespace lowbit
