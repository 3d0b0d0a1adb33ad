// Mixed precision without a model run: --tensor-type / recipe rules and their errors, the shipped
// recipes, sizes, plan files, and the budget planner (Lagrangian relaxation + repair) against the
// brute-force optimum of small multiple-choice knapsacks.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "lowbit/error.h"
#include "lowbit/rng.h"
#include "quant/plan.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(TypeRules, FirstMatchWinsUnanchored) {
  TypeRules r;
  r.add_argument("attn_v=q6_k");
  r.add_argument("^blk\\.0\\.=q8_0");
  r.add_argument("blk\\.\\d+\\.ffn_(up|gate)\\.weight$ = int3_g64");  // spaces around the type
  r.add_argument(".*=q4_0");
  EXPECT_EQ(r.match("blk.0.attn_v.weight")->name(), "q6_k");  // before ^blk.0.
  EXPECT_EQ(r.match("blk.0.attn_q.weight")->name(), "q8_0");
  EXPECT_EQ(r.match("blk.12.ffn_up.weight")->name(), "int3_g64");
  EXPECT_EQ(r.match("blk.12.ffn_down.weight")->name(), "q4_0");
  EXPECT_EQ(r.match("output.weight")->name(), "q4_0");
  TypeRules only_v;
  only_v.add_argument("attn_v=q6_k");
  EXPECT_FALSE(only_v.match("blk.0.attn_q.weight"));
  // A regex may contain '=': the last '=' splits.
  TypeRules eq;
  eq.add_argument("attn(?=_k)=f16");
  EXPECT_EQ(eq.match("blk.3.attn_k.weight")->name(), "f16");
  EXPECT_FALSE(eq.match("blk.3.attn_q.weight"));
}

TEST(TypeRules, ArgumentErrorsSayWhat) {
  TypeRules r;
  const std::string bad_regex = error_of([&] { r.add_argument("attn_(v=q4_0"); });
  EXPECT_TRUE(has(bad_regex, "bad tensor-name regex") && has(bad_regex, "--tensor-type"))
      << bad_regex;
  const std::string bad_type = error_of([&] { r.add_argument("attn_v=q9_9"); });
  EXPECT_TRUE(has(bad_type, "unknown tensor type") && has(bad_type, "q9_9")) << bad_type;
  const std::string no_eq = error_of([&] { r.add_argument("attn_v"); });
  EXPECT_TRUE(has(no_eq, "REGEX=TYPE")) << no_eq;
  const std::string act = error_of([&] { r.add_argument("x=q8_k"); });
  EXPECT_TRUE(has(act, "activations only")) << act;
  EXPECT_TRUE(r.empty());
}

TEST(TypeRules, RecipeTextAndErrorsNameFileAndLine) {
  TypeRules r;
  r.add_recipe_text(
      "# a comment\n\n  output\\.weight = q6_k   # trailing comment\r\n"
      "attn_v = q5_0\n.* = q4_0\n",
      "mix.recipe");
  ASSERT_EQ(r.size(), 3u);
  EXPECT_EQ(r.rule(0).origin, "mix.recipe:3");
  EXPECT_EQ(r.match("output.weight")->name(), "q6_k");
  EXPECT_EQ(r.match("blk.1.attn_v.weight")->name(), "q5_0");
  const std::string no_type = error_of([] {
    TypeRules x;
    x.add_recipe_text("a = q4_0\nattn_v =\n", "r1.recipe");
  });
  EXPECT_TRUE(has(no_type, "r1.recipe") && has(no_type, "line 2") && has(no_type, "does not parse"))
      << no_type;
  const std::string no_eq = error_of([] {
    TypeRules x;
    x.add_recipe_text("attn_v q4_0\n", "r2.recipe");
  });
  EXPECT_TRUE(has(no_eq, "r2.recipe") && has(no_eq, "line 1")) << no_eq;
  const std::string bad_re = error_of([] {
    TypeRules x;
    x.add_recipe_text("\n\n[ = f16\n", "r3.recipe");
  });
  EXPECT_TRUE(has(bad_re, "r3.recipe") && has(bad_re, "line 3") && has(bad_re, "regex")) << bad_re;
  const std::string bad_type = error_of([] {
    TypeRules x;
    x.add_recipe_text("a = q4_0\nb = int4_gx\n", "r4.recipe");
  });
  EXPECT_TRUE(has(bad_type, "r4.recipe") && has(bad_type, "line 2") && has(bad_type, "int4_gx"))
      << bad_type;
  const std::string missing = error_of([] {
    TypeRules x;
    x.add_recipe_file("/nonexistent/x.recipe");
  });
  EXPECT_TRUE(has(missing, "/nonexistent/x.recipe")) << missing;
}

// A model description of stories260K's shapes (no weights: rules and plans need only names).
Model shapes_model(bool tied) {
  Model m;
  m.config.n_layer = 2, m.config.tied_output = tied;
  auto add = [&](const std::string& n, std::vector<int64_t> shape) {
    ModelTensor t;
    t.name = n, t.shape = std::move(shape);
    m.tensors.push_back(t);
  };
  add("token_embd.weight", {512, 64});
  for (int l = 0; l < 2; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {64});
    add(b + "attn_q.weight", {64, 64});
    add(b + "attn_v.weight", {32, 64});
    add(b + "ffn_down.weight", {64, 172});
  }
  add("output_norm.weight", {64});
  if (!tied) add("output.weight", {512, 64});
  return m;
}

TEST(TypeRules, ShippedRecipesParseAndCoverEveryMatrix) {
  const std::filesystem::path dir = std::filesystem::path(LOWBIT_SOURCE_DIR) / "recipes";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".recipe") continue;
    TypeRules r;
    r.add_recipe_file(e.path().string());
    const Model m = shapes_model(false);
    const auto mix = apply_rules(r, m);
    EXPECT_EQ(mix.size(), 8u) << e.path();  // every matrix, no norm
    EXPECT_FALSE(mix.count("blk.0.attn_norm.weight"));
    ++n;
  }
  EXPECT_GE(n, 5);
  TypeRules seed;
  seed.add_recipe_file((dir / "attn-f16-ffn-int8.recipe").string());
  EXPECT_EQ(seed.match("blk.3.attn_q.weight")->name(), "f16");
  EXPECT_EQ(seed.match("blk.3.ffn_down.weight")->name(), "q8_0");
  TypeRules q4km;
  q4km.add_recipe_file((dir / "q4_k_m.recipe").string());
  EXPECT_EQ(q4km.match("blk.4.attn_v.weight")->name(), "q6_k");
  EXPECT_EQ(q4km.match("blk.5.attn_v.weight")->name(), "q4_k");
  EXPECT_EQ(q4km.match("blk.10.ffn_down.weight")->name(), "q6_k");
  EXPECT_EQ(q4km.match("output.weight")->name(), "q6_k");
}

TEST(TypeRules, TiedEmbeddingAnswersToOutput) {
  TypeRules r;
  r.add_argument("output\\.weight=q6_k");
  r.add_argument(".*=q4_0");
  EXPECT_EQ(apply_rules(r, shapes_model(true)).at("token_embd.weight").name(), "q6_k");
  EXPECT_EQ(apply_rules(r, shapes_model(false)).at("token_embd.weight").name(), "q4_0");
}

TEST(Plan, ParseSize) {
  EXPECT_EQ(parse_size("350KiB"), 350u * 1024);
  EXPECT_EQ(parse_size("1.5GiB"), 3u * 512 * 1024 * 1024);
  EXPECT_EQ(parse_size("200MB"), 200000000u);
  EXPECT_EQ(parse_size("2mib"), 2u << 20);
  EXPECT_EQ(parse_size("123456"), 123456u);
  for (const char* bad : {"", "abc", "-3MiB", "12 parsecs", "0"}) {
    EXPECT_TRUE(has(error_of([&] { parse_size(bad); }), "bad size")) << bad;
  }
}

// ---- The planner against brute force ----

// bytes_scale > 1 with an odd offset makes the bytes' gcd 1 and the slack large: the exact
// dynamic program no longer fits and runs on a coarse grid.
std::vector<TensorCandidates> random_instance(Rng& rng, int tensors, int formats,
                                              uint64_t bytes_scale = 1) {
  std::vector<TensorCandidates> ts;
  for (int i = 0; i < tensors; ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "t%d",
                  i);  // (not "t" + to_string: a GCC 12 -Wrestrict false positive)
    TensorCandidates t{name, 1000, {}};
    const double size = 200 + 800 * rng.uniform(), sens = std::exp(3 * rng.normal());
    for (int j = 0; j < formats; ++j) {  // more bytes, (mostly) less damage: bits 2..8
      const double bits = 2 + 6.0 * j / (formats - 1) + 0.3 * rng.uniform();
      const double cost = sens * std::exp(-1.3 * bits) * (0.7 + 0.6 * rng.uniform());
      const uint64_t bytes =
          uint64_t(size * bits) * bytes_scale + (bytes_scale > 1 ? 2 * j + 1 : 0);
      t.options.push_back({Format::parse("f16"), bytes, cost});
    }
    ts.push_back(t);
  }
  return ts;
}

double brute_force(const std::vector<TensorCandidates>& ts, uint64_t budget) {
  double best = INFINITY;
  std::vector<size_t> c(ts.size(), 0);
  for (;;) {
    uint64_t b = 0;
    double cost = 0;
    for (size_t i = 0; i < ts.size(); ++i)
      b += ts[i].options[c[i]].bytes, cost += ts[i].options[c[i]].cost;
    if (b <= budget) best = std::min(best, cost);
    size_t i = 0;
    while (i < ts.size() && ++c[i] == ts[i].options.size()) c[i++] = 0;
    if (i == ts.size()) return best;
  }
}

TEST(Planner, NearTheBruteForceOptimumAndNeverOverBudget) {
  Rng rng(42);
  double worst = 0, sum_gap = 0;
  int n = 0, exact = 0;
  for (int inst = 0; inst < 60; ++inst) {
    const auto ts = random_instance(rng, 6, 4, inst % 2 ? 1 : 1000003);
    uint64_t lo = 0, hi = 0;
    for (const auto& t : ts) lo += t.options.front().bytes, hi += t.options.back().bytes;
    for (const double f : {0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95}) {
      const uint64_t budget = lo + uint64_t(f * double(hi - lo));
      const BudgetSolution s = solve_budget(ts, budget);
      const double opt = brute_force(ts, budget);
      ASSERT_LE(s.bytes, budget);
      uint64_t b = 0;
      double c = 0;
      for (size_t i = 0; i < ts.size(); ++i)
        b += ts[i].options[s.choice[i]].bytes, c += ts[i].options[s.choice[i]].cost;
      ASSERT_EQ(b, s.bytes);
      ASSERT_NEAR(c, s.cost, 1e-9 * c);
      ASSERT_GE(s.cost, opt * (1 - 1e-12));
      ASSERT_LE(s.lower_bound, opt * (1 + 1e-12));  // a true bound
      if (s.exact) {
        ASSERT_NEAR(s.cost, opt, 1e-12 * opt);
      }
      const double gap = s.cost / opt - 1;
      worst = std::max(worst, gap), sum_gap += gap, ++n, exact += gap < 1e-12;
    }
  }
  std::printf("[ planner ] %d instances: mean gap %.4f%%, worst %.3f%%, exact in %d\n", n,
              100 * sum_gap / n, 100 * worst, exact);
  EXPECT_LT(sum_gap / n, 0.005);
  EXPECT_LT(worst, 0.05);
  EXPECT_GT(exact, n * 8 / 10);
}

// A model-sized instance (coarse grid: the bytes' gcd is 1): within budget, within a hair of the
// Lagrangian lower bound, and the budget nearly spent.
TEST(Planner, LargeInstanceMeetsItsLowerBound) {
  Rng rng(3);
  const auto ts = random_instance(rng, 200, 8, 1000003);
  uint64_t lo = 0, hi = 0;
  for (const auto& t : ts) lo += t.options.front().bytes, hi += t.options.back().bytes;
  for (const double f : {0.1, 0.4, 0.7}) {
    const uint64_t budget = lo + uint64_t(f * double(hi - lo));
    const BudgetSolution s = solve_budget(ts, budget);
    EXPECT_LE(s.bytes, budget);
    EXPECT_GE(s.bytes, budget - budget / 200);  // a finely divisible budget is (nearly) spent
    EXPECT_LE(s.cost, s.lower_bound * 1.01) << f;
    EXPECT_LE(s.lower_bound, s.cost);
  }
}

TEST(Planner, EdgeCases) {
  Rng rng(7);
  const auto ts = random_instance(rng, 5, 3);
  uint64_t lo = 0, hi = 0;
  double min_cost = 0;
  for (const auto& t : ts) {
    lo += t.options.front().bytes, hi += t.options.back().bytes;
    double m = INFINITY;
    for (const auto& o : t.options) m = std::min(m, o.cost);
    min_cost += m;
  }
  EXPECT_TRUE(has(error_of([&] { solve_budget(ts, lo - 1); }), "budget"));
  const BudgetSolution tight = solve_budget(ts, lo);
  EXPECT_EQ(tight.bytes, lo);
  const BudgetSolution loose = solve_budget(ts, hi * 2);
  EXPECT_NEAR(loose.cost, min_cost, 1e-12);
  // One candidate per tensor (pinned): that is the plan.
  std::vector<TensorCandidates> pinned = ts;
  for (auto& t : pinned) t.options.resize(1);
  EXPECT_EQ(solve_budget(pinned, lo).bytes, lo);
}

TEST(Plan, FileRoundTripAndChecks) {
  const Model m = shapes_model(false);
  PlanFile p;
  p.model = "m.gguf", p.method = "gptq", p.target_bpw = 4.0, p.budget_bytes = 12345;
  p.estimated_cost = 0.25, p.lower_bound = 0.24;
  for (const auto& t : m.tensors) {
    const Format f = Format::parse(t.shape.size() < 2      ? "f32"
                                   : t.row_length() == 172 ? "int4_g32"
                                                           : "q4_0");
    p.tensors.push_back({t.name, f, t.rows() * t.row_length(),
                         f.row_bytes(t.row_length()) * uint64_t(t.rows()), 0.01});
  }
  const std::string path = ::testing::TempDir() + "/rt.plan.json";
  p.save(path);
  const PlanFile q = PlanFile::load(path);
  ASSERT_EQ(q.tensors.size(), p.tensors.size());
  EXPECT_EQ(q.method, "gptq");
  EXPECT_DOUBLE_EQ(*q.target_bpw, 4.0);
  EXPECT_EQ(q.total_bytes(), p.total_bytes());
  EXPECT_FALSE(q.llama_cpp_loadable());  // int4_g32 is lowbit's
  const auto choice = plan_choices(q, m, path);
  EXPECT_EQ(choice.size(), 8u);
  EXPECT_EQ(choice.at("blk.1.ffn_down.weight").name(), "int4_g32");
  PlanFile missing = q;
  missing.tensors.erase(missing.tensors.begin() + 2);  // blk.0.attn_q.weight
  EXPECT_TRUE(has(error_of([&] { plan_choices(missing, m, path); }), "blk.0.attn_q.weight"));
  PlanFile untileable = q;
  for (auto& e : untileable.tensors) {
    if (e.name == "blk.0.ffn_down.weight") e.format = Format::parse("q4_0");
  }
  EXPECT_TRUE(has(error_of([&] { plan_choices(untileable, m, path); }), "tiles rows of 172"));
  PlanFile foreign = q;
  foreign.tensors.push_back({"blk.9.attn_q.weight", Format::parse("q4_0"), 1, 1, {}});
  EXPECT_TRUE(has(error_of([&] { plan_choices(foreign, m, path); }), "blk.9.attn_q.weight"));
  std::ofstream(path + ".bad") << "{\"tensors\": [{\"name\": \"x\", \"format\": \"q9\"}]}";
  EXPECT_TRUE(has(error_of([&] { PlanFile::load(path + ".bad"); }), "q9"));
  std::ofstream(path + ".notjson") << "{";
  EXPECT_TRUE(has(error_of([&] { PlanFile::load(path + ".notjson"); }), "not valid JSON"));
}

}  // namespace
}  // namespace lowbit
