// `lowbit quantize -m IN -o OUT --type TYPE [--method rtn|imatrix|gptq|awq|awq+gptq]
// [--calib FILE] [--calib-tokens N] [--ctx C] [--imatrix FILE] [--act-order] [--damp D]
// [--token-embedding-type T] [--output-tensor-type T] [--fallback auto|ggml|lowbit] [-t N]`
// with mixed precision: [--tensor-type REGEX=TYPE ...] [--recipe FILE] (manual), or
// [--target-bpw B | --target-size SIZE] [--sensitivity SENS.json | --calib FILE] (planned), or
// [--plan PLAN.json] (repeated); and `lowbit calibrate -m IN -f TEXT -o IMATRIX`. Prints which
// tensors fell back and why, and a mix's plan (written to OUT's stem + .plan.json).
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "engine/tokenizer.h"
#include "eval/bench.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/output_file.h"
#include "lowbit/progress.h"
#include "lowbit/threads.h"
#include "quant/calibrate.h"
#include "quant/methods.h"
#include "quant/plan.h"
#include "quant/quantize.h"
#include "quant/sensitivity.h"
#include "train/qat.h"
#include "train/trainer.h"

namespace lowbit::cli {

namespace {

struct QuantizeArgs {
  std::string in, out, type, emb_type, out_type, fallback = "auto", method = "rtn", tokenizer;
  std::string calib, imatrix;
  int64_t calib_tokens = 32768, ctx = 512;
  bool act_order = false;
  double damp = 0.01, sq_alpha = 0.5, clip_shrink = 0.5;
  int threads = 0, clip_grid = 20;
  bool clip_qk = false;
  // mixed precision
  std::vector<std::string> tensor_types;
  std::string recipe, target_size, sensitivity, plan, formats;
  double target_bpw = 0;
  int64_t sensitivity_chunks = 8;
  int check_uniform = 2;
  LoraArgs lora;  // adapters merged into the input's weights (F32) before quantizing
  // --method qat
  std::string qat_init = "gptq", qat_loss = "kl";
  int64_t qat_steps = 200, qat_batch = 8, qat_ctx = 128;
  std::string qat_log;  // JSON lines, one per step (lowbit report draws them)
  double qat_lr = 1e-4;
  std::string qat_data = "calib";  // or "generate": text the original model writes (LLM-QAT)
  int64_t qat_gen_tokens = 0;      // generate: tokens written (0: steps x batch x ctx, <= 2^17)
  int qat_act_bits = 0;            // 8: BitNet's per-token activation fake quantization
  std::string qat_text;            // the text QAT trains on (--calib, or the generated file)
  std::string qat_checkpoint, qat_resume;  // checkpoint directories (written / continued)
  int64_t qat_save_every = 0, qat_stop_after = 0;
  std::string qat_scales = "refit";  // or "learned" (LSQ)
};

FallbackPolicy parse_fallback(const std::string& s) {
  return s == "ggml"     ? FallbackPolicy::kGgml
         : s == "lowbit" ? FallbackPolicy::kLowbit
                         : FallbackPolicy::kAuto;
}

// OUT's stem + ".plan.json" (x.gguf -> x.plan.json), beside OUT.
std::string beside(const std::string& out, const std::string& suffix) {
  std::filesystem::path p(out);
  return (p.parent_path() / (p.stem().string() + suffix)).string();
}

// What a manual mix asks: --tensor-type rules first, then --token-embedding-type /
// --output-tensor-type for those tensors, then the recipe's rules.
std::map<std::string, Format> manual_mix(const Model& m, const TypeRules& cli,
                                         const TypeRules& recipe, const QuantizeArgs& a) {
  const std::string out_name = m.config.tied_output ? "token_embd.weight" : "output.weight";
  std::map<std::string, Format> mix;
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() < 2) continue;
    std::optional<Format> f = cli.match(rule_names(t.name, m));
    const bool flagged = (t.name == out_name && !a.out_type.empty()) ||
                         (t.name == "token_embd.weight" && !a.emb_type.empty());
    if (!f && !flagged) f = recipe.match(rule_names(t.name, m));
    if (f) mix.emplace(t.name, *f);
  }
  return mix;
}

// What the planner measures on the calibration text with: variants made as `method` makes them,
// on --sensitivity-chunks chunks of --ctx.
struct PlannerCalib {
  SensitivityOptions options;
  Chunks chunks;
};
PlannerCalib planner_calib(const Model& m, const QuantizeArgs& a, Method method,
                           FallbackPolicy fb) {
  PlannerCalib pc{{.fallback = fb, .method = method},
                  calibration_chunks(m, a.calib, a.ctx,
                                     std::min(a.calib_tokens, a.ctx * a.sensitivity_chunks))};
  pc.options.gptq.damp = a.damp;
  return pc;
}

// The planner's candidate formats: --formats, else the GGUF ladder (files llama.cpp loads).
std::vector<Format> candidate_formats(const QuantizeArgs& a) {
  return a.formats.empty() ? default_ladder() : parse_format_list(a.formats);
}

// The sensitivity measurement: from --sensitivity, or measured now on the calibration text; the
// candidates' entries of it.
std::vector<TensorCandidates> measure_or_load(const Model& m, const QuantizeArgs& a, Method method,
                                              FallbackPolicy fb) {
  const std::vector<Format> formats = candidate_formats(a);
  if (!a.sensitivity.empty()) {
    const Sensitivity s = Sensitivity::load(a.sensitivity);
    if (!s.method.empty() && s.method != method_name(method)) {
      fmt::print("note: {} was measured with {} variants; quantizing with {}\n", a.sensitivity,
                 s.method, method_name(method));
    }
    return candidates_of(s, m, a.sensitivity, formats, fb);
  }
  if (a.calib.empty()) {
    throw Error("a size target needs a sensitivity measurement",
                {.field = "--target-bpw",
                 .expected = "--sensitivity SENS.json (lowbit sensitivity) or --calib TEXT"});
  }
  auto [so, c] = planner_calib(m, a, method, fb);
  so.formats = formats;
  std::optional<Progress> bar;
  Sensitivity s = measure_sensitivity(m, c, so, [&](int64_t, int64_t total) {
    if (!bar) bar.emplace("sensitivity", total);
    bar->advance();
  });
  if (bar) bar->finish();
  s.model = a.in, s.calib = a.calib, s.command = command_line();
  const std::string path = beside(a.out, ".sens.json");
  s.save(path);
  fmt::print("sensitivity: {} tensors, {} chunks of {} ({:.1f} s) -> {}\n", s.tensors.size(),
             s.chunks, s.ctx, s.seconds, path);
  return candidates_of(s, m, path, formats, fb);
}

// Uniform alternatives to a plan: for each candidate format F, every unpinned matrix in F (after
// its fallback) when each has that option, within the capacity; the `n` with the lowest
// estimated cost (ties: more bytes), none equal to the plan. Choice indices per tensor.
struct Alternative {
  std::string name;
  std::vector<size_t> choice;
  double cost = 0;
  uint64_t bytes = 0;
};

std::vector<Alternative> uniform_alternatives(const Model& m,
                                              const std::vector<TensorCandidates>& cand,
                                              const std::vector<size_t>& plan, uint64_t capacity,
                                              FallbackPolicy fb, int n) {
  std::vector<Format> formats;
  for (const auto& tc : cand) {
    for (const auto& o : tc.options) {
      if (std::find(formats.begin(), formats.end(), o.format) == formats.end())
        formats.push_back(o.format);
    }
  }
  std::vector<Alternative> alts;
  for (const Format& F : formats) {
    Alternative u{F.name(), std::vector<size_t>(cand.size()), 0, 0};
    bool ok = true;
    for (size_t i = 0; i < cand.size() && ok; ++i) {
      const auto& opts = cand[i].options;
      size_t k = 0;
      if (opts.size() > 1) {  // pinned tensors have one option and keep it
        const Format f = fallback_for(F, m.find(cand[i].name)->row_length(), fb);
        k = size_t(std::find_if(opts.begin(), opts.end(),
                                [&](const Candidate& c) { return c.format == f; }) -
                   opts.begin());
        ok = k < opts.size();
      }
      if (ok) u.choice[i] = k, u.cost += opts[k].cost, u.bytes += opts[k].bytes;
    }
    if (!ok || u.bytes > capacity || u.choice == plan) continue;
    if (std::any_of(alts.begin(), alts.end(), [&](const auto& x) { return x.choice == u.choice; }))
      continue;
    alts.push_back(std::move(u));
  }
  std::sort(alts.begin(), alts.end(), [](const auto& x, const auto& y) {
    return x.cost != y.cost ? x.cost < y.cost : x.bytes > y.bytes;
  });
  if (alts.size() > size_t(n)) alts.resize(size_t(n));
  return alts;
}

// The planner's check: the plan's KLD on the calibration text against the best-estimated uniform
// files that fit the budget, each quantized as the sensitivity measurement quantizes (the summed
// single-tensor estimates can be far off at 2-3 bits, where damages compound). Returns the choice
// to keep (the lowest measured) and records the measurements in the plan.
std::vector<size_t> check_plan(const Model& m, const QuantizeArgs& a, Method method,
                               FallbackPolicy fb, const std::vector<TensorCandidates>& cand,
                               const std::vector<size_t>& plan, uint64_t capacity, PlanFile& p) {
  if (a.check_uniform <= 0) return plan;
  const std::vector<Alternative> alts =
      uniform_alternatives(m, cand, plan, capacity, fb, a.check_uniform);
  if (alts.empty()) return plan;
  if (a.calib.empty()) {
    fmt::print("note: without --calib the plan is not checked against uniform files ({} fits)\n",
               alts.front().name);
    return plan;
  }
  auto assignment = [&](const std::vector<size_t>& choice) {
    std::map<std::string, Format> as;
    for (size_t i = 0; i < cand.size(); ++i)
      as.emplace(cand[i].name, cand[i].options[choice[i]].format);
    return as;
  };
  std::vector<std::map<std::string, Format>> as{assignment(plan)};
  for (const auto& u : alts) as.push_back(assignment(u.choice));
  const auto [so, c] = planner_calib(m, a, method, fb);
  const std::vector<double> kld = assignment_klds(m, c, as, so);
  size_t best = 0;
  for (size_t i = 1; i < kld.size(); ++i) {
    if (kld[i] < kld[best]) best = i;
  }
  p.check.push_back({"plan", kld[0]});
  std::string line = fmt::format("check on {} calibration chunks of {}: plan KLD {:.5f}",
                                 c.tokens.size(), c.tokens[0].size(), kld[0]);
  for (size_t i = 0; i < alts.size(); ++i) {
    p.check.push_back({"uniform " + alts[i].name, kld[i + 1]});
    line += fmt::format(", uniform {} {:.5f}", alts[i].name, kld[i + 1]);
  }
  fmt::print("{}\n", line);
  if (best == 0) {
    p.check_kept = "plan";
    return plan;
  }
  p.check_kept = "uniform " + alts[best - 1].name;
  fmt::print("the uniform {} file measures lower than the plan: using it\n", alts[best - 1].name);
  return alts[best - 1].choice;
}

// A target below the smallest file the candidates make: the error says how small they go and,
// when lowbit's own formats (ragged groups: every row tiles) go smaller, how small those go.
void check_reachable(const Model& m, const QuantizeArgs& a, FallbackPolicy fb,
                     const TypeRules& pins, const std::vector<TensorCandidates>& cand,
                     uint64_t fixed, uint64_t total) {
  uint64_t least = 0, least_all = 0;
  const std::vector<Format> all = all_ladders();
  for (const auto& tc : cand) {
    uint64_t lo = UINT64_MAX;
    for (const auto& o : tc.options) lo = std::min(lo, o.bytes);
    least += lo;
    if (pins.match(rule_names(tc.name, m))) {
      least_all += lo;
      continue;
    }
    const ModelTensor& t = *m.find(tc.name);
    for (const Format& f : all)
      lo = std::min(
          lo, fallback_for(f, t.row_length(), fb).row_bytes(t.row_length()) * uint64_t(t.rows()));
    least_all += lo;
  }
  if (fixed + least <= total) return;
  const double params = double(m.parameter_count());
  auto bpw = [&](uint64_t b) { return fmt::format("{:.3f}", 8.0 * double(fixed + b) / params); };
  std::string expected = fmt::format(">= {} bytes ({} bits per weight) with these candidates",
                                     fixed + least, bpw(least));
  if (least_all < least) {
    expected += fmt::format(
        "; --formats all reaches {} bits per weight with lowbit's own formats (lowbit loads the "
        "file, llama.cpp does not)",
        bpw(least_all));
  }
  throw Error("the size target is below the smallest file the candidate formats make",
              {.field = a.target_bpw > 0 ? "--target-bpw" : "--target-size",
               .expected = expected,
               .found = fmt::format("{} bytes", total)});
}

// The planner: per-tensor formats minimising the summed sensitivity within the size target.
// Tensors a --tensor-type / recipe rule names are pinned to that format.
PlanFile plan_for_target(const Model& m, const QuantizeArgs& a, Method method, FallbackPolicy fb,
                         const TypeRules& pins) {
  uint64_t fixed = 0;  // 1-D tensors stay F32
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() < 2) fixed += uint64_t(t.rows() * t.row_length()) * 4;
  }
  const int64_t params = int64_t(m.parameter_count());
  const uint64_t total = a.target_bpw > 0 ? uint64_t(std::floor(a.target_bpw * double(params) / 8))
                                          : parse_size(a.target_size);
  // --target-size is the file's size as a user reads it: the header, tokenizer and padding
  // come out of the budget too (--target-bpw counts the weights' bits only).
  if (a.target_bpw <= 0) fixed += gguf_overhead_bound(m);
  if (total <= fixed) {
    throw Error("the size target leaves nothing for the weight matrices",
                {.field = "--target",
                 .expected = "> " + std::to_string(fixed) + " bytes",
                 .found = std::to_string(total)});
  }
  std::vector<TensorCandidates> cand = measure_or_load(m, a, method, fb);
  for (auto& tc : cand) {
    const std::optional<Format> want = pins.match(rule_names(tc.name, m));
    if (!want) continue;
    const ModelTensor& t = *m.find(tc.name);
    const Format f = fallback_for(*want, t.row_length(), fb);
    const auto it = std::find_if(tc.options.begin(), tc.options.end(),
                                 [&](const Candidate& c) { return c.format == f; });
    const Candidate pinned =
        it != tc.options.end()
            ? *it
            : Candidate{f, f.row_bytes(t.row_length()) * uint64_t(t.rows()), 0.0};
    tc.options = {pinned};
  }
  check_reachable(m, a, fb, pins, cand, fixed, total);
  const BudgetSolution sol = solve_budget(cand, total - fixed);
  PlanFile p;
  p.model = a.in, p.method = method_name(method), p.sensitivity = a.sensitivity;
  if (a.target_bpw > 0) p.target_bpw = a.target_bpw;
  p.budget_bytes = total, p.lower_bound = sol.lower_bound;
  const std::vector<size_t> choice =
      check_plan(m, a, method, fb, cand, sol.choice, total - fixed, p);
  for (size_t i = 0; i < cand.size(); ++i) {
    const Candidate& c = cand[i].options[choice[i]];
    p.tensors.push_back({cand[i].name, c.format, cand[i].params, c.bytes, c.cost});
    p.estimated_cost += c.cost;
  }
  if (choice == sol.choice) p.estimated_cost = sol.cost;  // the solver's own sum
  return p;
}

// The plan as it will be written (every tensor), with the planner's estimates where known.
PlanFile describe(const std::vector<TensorPlan>& plan, const PlanFile& planned) {
  std::map<std::string, double> cost;
  for (const auto& e : planned.tensors) {
    if (e.cost) cost[e.name] = *e.cost;
  }
  PlanFile p = planned;
  p.tensors.clear();
  for (const auto& t : plan) {
    PlanEntry e{t.name, t.to, t.params, t.bytes, {}};
    if (cost.count(t.name)) e.cost = cost.at(t.name);
    p.tensors.push_back(e);
  }
  return p;
}

void print_plan(const PlanFile& p, const Model& m) {
  fmt::print("{:<28} {:<14} {:>10} {:>12}\n", "tensor", "format", "bytes", "est. cost");
  for (const auto& e : p.tensors) {
    if (m.find(e.name)->shape.size() < 2) continue;
    fmt::print("{:<28} {:<14} {:>10} {:>12}\n", e.name, e.format.name(), e.bytes,
               e.cost ? fmt::format("{:.4e}", *e.cost) : "-");
  }
  fmt::print("plan: {} bytes, {:.4f} bits per weight", p.total_bytes(), p.bits_per_weight());
  if (p.budget_bytes) {
    fmt::print(" (target {}{} bytes)",
               p.target_bpw ? fmt::format("{:.4f} bpw = ", *p.target_bpw) : "", p.budget_bytes);
    if (p.lower_bound >= p.estimated_cost) {
      fmt::print(", estimated cost {:.5f} (the optimum for these estimates)", p.estimated_cost);
    } else {
      fmt::print(", estimated cost {:.5f} (optimum >= {:.5f})", p.estimated_cost, p.lower_bound);
    }
  }
  fmt::print("; {}\n", p.llama_cpp_loadable()
                           ? "all formats are GGUF types: loads in lowbit, llama.cpp and the "
                             "runtimes built on it (ollama, LM Studio)"
                           : "uses lowbit's own formats: loads in lowbit only, llama.cpp will not "
                             "load it (--formats gguf keeps to GGUF types)");
}

// The per-tensor choices of a mix (manual, planned or repeated), and the plan to print/write.
std::optional<PlanFile> choose_mix(const Model& m, const QuantizeArgs& a, Method method,
                                   QuantizeOptions& q) {
  TypeRules cli, recipe;
  for (const auto& r : a.tensor_types) cli.add_argument(r);
  if (!a.recipe.empty()) recipe.add_recipe_file(a.recipe);
  const bool target = a.target_bpw > 0 || !a.target_size.empty();
  if ((target || !a.plan.empty()) &&
      (!a.type.empty() || !a.emb_type.empty() || !a.out_type.empty())) {
    throw Error("a size target or a plan chooses every matrix's format",
                {.field = "--type",
                 .expected = "no --type / --token-embedding-type / --output-tensor-type (pin "
                             "tensors with --tensor-type instead)"});
  }
  if (!a.plan.empty() && (!cli.empty() || !recipe.empty())) {
    throw Error("--plan repeats a plan exactly",
                {.field = "--plan", .expected = "no --tensor-type / --recipe with it"});
  }
  if (!a.plan.empty()) {
    const PlanFile p = PlanFile::load(a.plan);
    q.per_tensor = plan_choices(p, m, a.plan);
    return p;
  }
  if (target) {
    TypeRules pins;  // both kinds of rules pin tensors; --tensor-type first
    for (size_t i = 0; i < cli.size(); ++i)
      pins.add(cli.rule(i).pattern, cli.rule(i).format, cli.rule(i).origin);
    for (size_t i = 0; i < recipe.size(); ++i)
      pins.add(recipe.rule(i).pattern, recipe.rule(i).format, recipe.rule(i).origin);
    const PlanFile p = plan_for_target(m, a, method, q.fallback, pins);
    for (const auto& e : p.tensors) q.per_tensor.emplace(e.name, e.format);
    return p;
  }
  if (cli.empty() && recipe.empty()) return std::nullopt;
  q.per_tensor = manual_mix(m, cli, recipe, a);
  PlanFile p;
  p.model = a.in, p.method = method_name(method);
  return p;
}

// Checks the method's inputs; returns the calibration chunks it needs (if any).
std::optional<Chunks> method_inputs(const Model& m, const QuantizeArgs& a, MethodOptions& mo,
                                    Importance& imp) {
  if (!a.imatrix.empty()) {
    if (mo.method != Method::kImatrix) {
      throw Error("--imatrix goes with --method imatrix", {.field = "--imatrix"});
    }
    imp = load_imatrix(a.imatrix);
    mo.imatrix = &imp;
  }
  if (mo.method == Method::kRtn || mo.imatrix) return std::nullopt;
  if (a.calib.empty()) {
    throw Error(
        "method " + a.method + " needs calibration text",
        {.field = "--calib", .expected = "a text file (or --imatrix FILE with --method imatrix)"});
  }
  Chunks c = calibration_chunks(m, a.calib, a.ctx, a.calib_tokens);
  fmt::print("calibration: {} chunks of {} tokens from {}\n", c.tokens.size(), a.ctx, a.calib);
  return c;
}

// --type, or (for a mix that names every matrix) the format covering most parameters.
Format base_type(const Model& m, const QuantizeArgs& a, QuantizeOptions& q) {
  if (!a.type.empty()) return Format::parse(a.type);
  const std::string out_name = m.config.tied_output ? "token_embd.weight" : "output.weight";
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() < 2 || q.per_tensor.count(t.name) ||
        (t.name == "token_embd.weight" && q.token_embedding_type) ||
        (t.name == out_name && q.output_type)) {
      continue;
    }
    throw Error("no format for a weight matrix",
                {.field = t.name,
                 .expected = "--type, or "
                             "a --tensor-type / recipe rule that matches it"});
  }
  q.type = Format::parse("f16");  // provisional: every matrix has its own format
  return dominant_format(plan_quantization(m, q));
}

// The speed a mix costs, measured on the file just written: its matrices prepared as the engine
// prepares them, one token through them (bench.h's format_shares, 3 passes after a warm-up).
void print_speed(const std::string& path) {
  const Model out = Model::load(path);
  const std::vector<FormatShare> shares = format_shares(out, 3);
  double total = 0;
  for (const auto& s : shares) total += s.seconds;
  if (!(total > 0)) return;
  std::string parts;
  for (const auto& s : shares) {
    parts +=
        fmt::format("{}{} {:.0f}%", parts.empty() ? "" : ", ", s.format, 100 * s.seconds / total);
  }
  fmt::print(
      "generation here ({} threads): the matrices take {:.2f} ms per token, at most {:.1f} "
      "tokens/s ({}; `lowbit bench -m {}` measures the whole model)\n",
      max_threads(), total * 1e3, 1 / total, parts, path);
}

// What was written: fallbacks, size, bits per weight against the target, where the plan went.
void report(const Model& m, const QuantizeArgs& a, const QuantizeOptions& q,
            const std::vector<TensorPlan>& plan, const std::optional<PlanFile>& mix, double secs) {
  uint64_t bytes = 0;
  int64_t params = 0;
  bool private_types = false;
  for (const auto& p : plan) {
    bytes += p.bytes, params += p.params;
    private_types |= !p.to.is_ggml_type();
    if (!(p.to == p.wanted)) {
      fmt::print("{}: rows of {} do not tile into {} blocks -> {}\n", p.name,
                 m.find(p.name)->row_length(), p.wanted.name(), p.to.name());
    }
  }
  const double bits = 8.0 * double(bytes) / double(params);
  fmt::print(
      "{} -> {}: {} {} ({} tensors, {} parameters, {:.3f} bits per weight), {:.2f} MiB "
      "file, {:.2f} s\n",
      a.in, a.out, a.method, mix ? "mix" : q.type.name(), plan.size(), params, bits,
      double(std::filesystem::file_size(a.out)) / (1 << 20), secs);
  if (mix) {
    const std::string path = beside(a.out, ".plan.json");
    PlanFile saved = *mix;
    saved.command = command_line();
    saved.save(path);
    fmt::print("plan -> {} (repeat it with --plan {})\n", path, path);
    print_speed(a.out);
    if (mix->target_bpw && (bits > *mix->target_bpw || bits < 0.99 * *mix->target_bpw)) {
      fmt::print(
          "note: {:.4f} bits per weight is not within 1% below the target {:.4f} (the "
          "candidates cannot meet it more closely)\n",
          bits, *mix->target_bpw);
    }
  }
  if (private_types) {
    fmt::print("note: {} uses lowbit's own formats; it loads in lowbit, not in llama.cpp\n", a.out);
  }
}

// --calib-tokens and --ctx (quantize, merge).
void add_calib_size_options(CLI::App* cmd, QuantizeArgs& o) {
  cmd->add_option("--calib-tokens", o.calib_tokens, "Calibration tokens used")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(16), int64_t(1) << 30));
  cmd->add_option("--ctx", o.ctx, "Calibration chunk length")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
}

// --method qat: the post-training result (--qat-init) as the starting masters, then training with
// every planned tensor fake-quantized by its own format's codec, against the original model's
// probabilities (--qat-loss kl) or the text (ce), on the calibration text; the trained masters
// written with the same plan and codec (src/train/qat.h: the file holds the last forward's
// weights).
std::vector<TensorPlan> run_qat(const Model& m, const QuantizeArgs& a, const QuantizeOptions& q,
                                const MethodOptions& mo, const std::optional<Chunks>& calib) {
  const train::ParamLayout l = train::ParamLayout::of(m.config);
  const std::vector<std::optional<Format>> fake = train::fake_quant_formats(m, l, q);
  // What a checkpoint must share with this run to continue it (besides the model's tensors,
  // which load_checkpoint checks).
  nlohmann::json run = {{"model", a.in},        {"loss", a.qat_loss},
                        {"data", a.qat_data},   {"act_bits", a.qat_act_bits},
                        {"steps", a.qat_steps}, {"batch", a.qat_batch},
                        {"ctx", a.qat_ctx},     {"lr", a.qat_lr},
                        {"init", a.qat_init},   {"scales", a.qat_scales}};
  for (const auto& f : fake) run["formats"].push_back(f ? f->name() : "");
  const std::string ckpt_dir = a.qat_checkpoint.empty() ? a.qat_resume : a.qat_checkpoint;
  const std::string ckpt = ckpt_dir.empty() ? "" : ckpt_dir + "/checkpoint.lbt";  // written
  const std::string resume = a.qat_resume + "/checkpoint.lbt";                    // read
  if (!a.qat_resume.empty()) {
    const nlohmann::json had = nlohmann::json::parse(train::read_checkpoint_info(ckpt).extra_json)
                                   .value("qat", nlohmann::json::object());
    for (const auto& [key, value] : run.items()) {
      const nlohmann::json was = had.value(key, nlohmann::json());
      if (was != value) {
        throw Error("the checkpoint is of another QAT run: give the command that started it",
                    {.file = resume,
                     .field = "qat." + key,
                     .expected = value.dump().substr(0, 200),
                     .found = was.dump().substr(0, 200)});
      }
    }
  }
  std::vector<float> original = train::weights_of(m, l);
  std::vector<float> init = original;
  if (a.qat_resume.empty() && mo.method != Method::kRtn) {  // start from the method's file
    const std::string tmp = a.out + ".qat-init.gguf";
    quantize_with_method(m, tmp, q, mo, calib ? &*calib : nullptr);
    init = train::weights_of(Model::load(tmp), l);
    std::filesystem::remove(tmp);
  }
  train::TrainConfig tc;
  tc.steps = a.qat_steps, tc.batch = a.qat_batch, tc.ctx = a.qat_ctx, tc.lr = a.qat_lr;
  tc.seed = 1;
  train::TrainData data = train::make_train_data(Tokenizer(m.tokenizer),
                                                 {{a.qat_text, read_text(a.qat_text, "--calib")}},
                                                 std::nullopt, 0, tc.ctx);
  train::Trainer t(m.config, train::rope_inv_freq(m), std::move(init), tc, std::move(data));
  if (a.qat_loss == "kl") t.set_teacher(std::move(original));  // no second copy
  t.set_fake_quant(fake);
  t.set_act_bits(a.qat_act_bits);
  t.set_learned_scales(a.qat_scales == "learned");
  if (!a.qat_resume.empty()) {
    t.load_checkpoint(resume);
    fmt::print("qat: resumed at step {} of {} from {}\n", t.steps_done(), tc.steps, resume);
  }
  const std::string extra = nlohmann::json{{"qat", run}}.dump();
  if (!ckpt_dir.empty()) std::filesystem::create_directories(ckpt_dir);
  const int64_t until = a.qat_stop_after > 0 ? std::min(a.qat_stop_after, tc.steps) : tc.steps;
  std::optional<OutputFile> log;
  std::string log_text;
  if (!a.qat_log.empty()) log.emplace(a.qat_log, std::vector<std::string>{a.in, a.qat_text});
  Progress bar("qat steps", until - t.steps_done());
  std::optional<double> first;
  double last = 0;
  t.run(until, [&](const train::StepLog& s) {
    if (!first) first = s.loss;
    last = s.loss;
    bar.advance();
    if (!ckpt.empty() && a.qat_save_every > 0 && s.step % a.qat_save_every == 0 && s.step < until)
      t.save_checkpoint(ckpt, extra);
    if (!log) return;
    nlohmann::json j = {{"lowbit_train_log", 1},
                        {"step", s.step},
                        {"tokens", s.step * tc.batch * tc.ctx},
                        {"loss", s.loss},
                        {"loss_kind", a.qat_loss},
                        {"lr", s.lr},
                        {"tokens_per_second", s.tokens_per_second}};
    if (s.step == 1) j["command"] = command_line();
    const std::string line = j.dump() + "\n";
    log->write(line.data(), line.size());
  });
  if (log) log->commit();
  bar.finish();
  if (!ckpt.empty()) {
    t.save_checkpoint(ckpt, extra);
    fmt::print("qat: checkpoint at step {}: {}\n", t.steps_done(), ckpt);
  }
  if (t.steps_done() < tc.steps) {
    fmt::print(
        "qat: stopped at step {} of {}: continue with the same command and --qat-resume {}\n",
        t.steps_done(), tc.steps, ckpt_dir);
    return {};
  }
  fmt::print("qat: {} steps of {} x {} tokens from {} ({} init), {} {:.4f} -> {:.4f}\n", tc.steps,
             tc.batch, tc.ctx, a.qat_data == "generate" ? "the model's own text" : a.calib,
             a.qat_init, a.qat_loss == "kl" ? "KL" : "loss", first.value_or(0), last);
  t.forward_weights();  // the bytes of the final masters (and scales): what the file holds
  return quantize_model(train::with_trained(m, l, t.weights(), fake, t), a.out, q);
}

// --method qat's text: --calib, or with --qat-data generate text the original model writes
// (src/train/qat.h generate_qat_data), decoded one sequence per line into a file beside the
// output (removed at the end; it is also the calibration text of --qat-init when there is no
// --calib). Returns that file's path, or "".
std::string prepare_qat_text(const Model& m, QuantizeArgs& a) {
  if (a.qat_loss != "kl" && a.qat_loss != "ce")
    throw Error("unknown QAT loss",
                {.field = "--qat-loss", .expected = "kl or ce", .found = a.qat_loss});
  if (a.qat_data != "calib" && a.qat_data != "generate")
    throw Error("unknown QAT data",
                {.field = "--qat-data", .expected = "calib or generate", .found = a.qat_data});
  if ((a.qat_stop_after > 0 || a.qat_save_every > 0) && a.qat_checkpoint.empty() &&
      a.qat_resume.empty()) {
    throw Error("checkpoints need a directory", {.field = "--qat-checkpoint",
                                                 .expected = "a directory (with --qat-stop-after / "
                                                             "--qat-save-every)"});
  }
  if (a.qat_scales == "learned" && !(a.qat_checkpoint.empty() && a.qat_resume.empty())) {
    throw Error("checkpoints do not keep learned scales yet",
                {.field = "--qat-scales",
                 .expected = "refit (with --qat-checkpoint / --qat-resume)",
                 .found = "learned"});
  }
  if (a.qat_data == "calib") {
    if (a.calib.empty())
      throw Error("QAT trains on text",
                  {.field = "--calib", .expected = "a text file (or --qat-data generate)"});
    a.qat_text = a.calib;
    return "";
  }
  const int64_t n = a.qat_gen_tokens > 0 ? a.qat_gen_tokens
                                         : std::min<int64_t>(a.qat_steps * a.qat_batch * a.qat_ctx,
                                                             int64_t(1) << 17);
  Progress bar("qat text", (n + a.qat_ctx - 1) / a.qat_ctx);
  const std::vector<int32_t> ids = train::generate_qat_data(
      m, n, a.qat_ctx, /*seed=*/1, /*greedy=*/3, [&](int64_t, int64_t) { bar.advance(); });
  bar.finish();
  const Tokenizer tok(m.tokenizer);
  std::string text;
  for (size_t i = 0; i < ids.size(); i += size_t(a.qat_ctx)) {
    const std::vector<int32_t> seq(
        ids.begin() + int64_t(i),
        ids.begin() + int64_t(std::min(ids.size(), i + size_t(a.qat_ctx))));
    std::string line = tok.decode(seq);
    std::replace(line.begin(), line.end(), '\n', ' ');
    text += line + "\n";
  }
  const std::string path = a.out + ".qat-text.txt";
  OutputFile f(path, {a.in});
  f.write(text.data(), text.size());
  f.commit();
  fmt::print("qat text: {} sequences of {} tokens written by the original model\n",
             (int64_t(ids.size()) + a.qat_ctx - 1) / a.qat_ctx, a.qat_ctx);
  a.qat_text = path;
  if (a.calib.empty()) a.calib = path;
  return path;
}

int run_quantize(const QuantizeArgs& args) {
  const auto t0 = std::chrono::steady_clock::now();
  QuantizeArgs a = args;
  if (a.threads > 0) set_threads(a.threads);
  QuantizeOptions q;
  if (!a.emb_type.empty()) q.token_embedding_type = Format::parse(a.emb_type);
  if (!a.out_type.empty()) q.output_type = Format::parse(a.out_type);
  q.fallback = parse_fallback(a.fallback);
  Model loaded = Model::load(a.in, {.tokenizer_path = a.tokenizer});
  merge_loras(loaded, a.lora);
  const Model& m = loaded;
  const bool qat = a.method == "qat";
  MethodOptions mo{.method = parse_method(qat ? a.qat_init : a.method)};
  mo.gptq.act_order = a.act_order, mo.gptq.damp = a.damp, mo.sq_alpha = a.sq_alpha;
  mo.clip.grid = a.clip_grid, mo.clip.max_shrink = a.clip_shrink, mo.clip_qk = a.clip_qk;
  std::string qat_file;
  if (qat) qat_file = prepare_qat_text(m, a);
  struct Remove {
    std::string p;
    ~Remove() {
      std::error_code ec;
      if (!p.empty()) std::filesystem::remove(p, ec);
    }
  } remove_qat_file{qat_file};
  std::optional<PlanFile> mix = choose_mix(m, a, mo.method, q);
  q.type = base_type(m, a, q);
  if (mix) {
    *mix = describe(plan_quantization(m, q), *mix);
    print_plan(*mix, m);
  }
  Importance imp;
  const std::optional<Chunks> calib = method_inputs(m, a, mo, imp);
  if (qat) {
    const auto plan = run_qat(m, a, q, mo, calib);
    if (plan.empty()) return 0;  // stopped early (--qat-stop-after): the checkpoint, no file
    report(m, a, q, plan, mix,
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  }
  Progress bar(a.method + " layers", m.config.n_layer);
  const auto plan = quantize_with_method(m, a.out, q, mo, calib ? &*calib : nullptr,
                                         [&](int64_t, int64_t) { bar.advance(); });
  bar.finish();
  report(m, a, q, plan, mix,
         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

}  // namespace

Runner add_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize",
                                 "Quantize a model into GGUF: one format, a manual "
                                 "mix (--tensor-type, --recipe) or a planned mix for a size "
                                 "target (--target-bpw, --target-size)");
  auto o = std::make_shared<QuantizeArgs>();
  cmd->add_option("-m,--model", o->in,
                  "Input model: .gguf, .bin (llama2.c), .safetensors or a "
                  "Hugging Face folder")
      ->required();
  cmd->add_option("-o,--output", o->out, "Output .gguf")->required();
  cmd->add_option("--type", o->type,
                  "Format of the weight matrices (see `lowbit formats`), "
                  "e.g. q4_0, q4_k, iq4_nl, nf4, int4_g32, tq2_0; with a mix: "
                  "the matrices no rule names");
  cmd->add_option("--method", o->method,
                  "rtn (round-to-nearest), imatrix (importance-weighted "
                  "RTN), gptq, awq, awq+gptq, smoothquant (W8A8 smoothing, then imatrix RTN), "
                  "qat (quantization-aware training from --qat-init, on --calib)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq", "smoothquant", "qat"}));
  cmd->add_option("--qat-init", o->qat_init,
                  "qat: the starting point (rtn, imatrix, gptq, awq, awq+gptq)")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq"}));
  cmd->add_option("--qat-loss", o->qat_loss,
                  "qat: kl (against the original model's probabilities) or ce (the text)")
      ->capture_default_str();
  cmd->add_option("--qat-steps", o->qat_steps, "qat: optimizer steps")->capture_default_str();
  cmd->add_option("--qat-lr", o->qat_lr, "qat: peak learning rate (AdamW, cosine)")
      ->capture_default_str();
  cmd->add_option("--qat-batch", o->qat_batch, "qat: windows per step")->capture_default_str();
  cmd->add_option("--qat-ctx", o->qat_ctx, "qat: tokens per window")->capture_default_str();
  cmd->add_option("--qat-log", o->qat_log,
                  "qat: write each step's loss as JSON lines (lowbit report draws the curve)");
  cmd->add_option("--qat-checkpoint", o->qat_checkpoint,
                  "qat: checkpoint directory (masters, AdamW moments, step), written every "
                  "--qat-save-every steps and at the end");
  cmd->add_option("--qat-save-every", o->qat_save_every, "qat: steps between checkpoints")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_option(
         "--qat-stop-after", o->qat_stop_after,
         "qat: stop once this many steps are done, leaving the checkpoint (no output file)")
      ->check(CLI::Range(int64_t(1), int64_t(1) << 40));
  cmd->add_option("--qat-resume", o->qat_resume,
                  "qat: continue the run of this checkpoint directory (the same command "
                  "otherwise; the post-training start is skipped)");
  cmd->add_option("--qat-scales", o->qat_scales,
                  "qat: refit (each block's scale fitted by the format's own fit every step) or "
                  "learned (LSQ: trained with the weights, for formats of one scale per block and "
                  "integer codes; the others refit)")
      ->capture_default_str()
      ->check(CLI::IsMember({"refit", "learned"}));
  cmd->add_option("--qat-data", o->qat_data,
                  "qat: calib (train on --calib) or generate (on text the original model "
                  "writes itself, LLM-QAT's data-free recipe; also --qat-init's calibration "
                  "when there is no --calib)")
      ->capture_default_str()
      ->check(CLI::IsMember({"calib", "generate"}));
  cmd->add_option("--qat-gen-tokens", o->qat_gen_tokens,
                  "qat, generate: tokens to write (default: steps x batch x ctx, at most 131072)")
      ->check(CLI::Range(int64_t(2), int64_t(1) << 30));
  cmd->add_option("--qat-act-bits", o->qat_act_bits,
                  "qat: fake-quantize every linear layer's input per token to this many bits "
                  "(8: as BitNet b1.58 trains; 0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 16));
  cmd->add_option("--clip-grid", o->clip_grid,
                  "awq: clipping search steps of each block's range (ratio 1 - i/grid; 0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  cmd->add_option("--clip-shrink", o->clip_shrink, "awq: the largest range shrink tried")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 0.95));
  cmd->add_flag("--clip-qk", o->clip_qk, "awq: clip attn_q/attn_k too (AWQ leaves them out)");
  cmd->add_option("--sq-alpha", o->sq_alpha, "SmoothQuant migration strength")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--calib", o->calib,
                  "Calibration text (imatrix, gptq, awq; the planner's "
                  "sensitivity when no --sensitivity file is given)");
  add_calib_size_options(cmd, *o);
  cmd->add_option("--imatrix", o->imatrix,
                  "Importance matrix (lowbit calibrate or "
                  "llama-imatrix, GGUF or legacy .dat) for imatrix");
  cmd->add_flag("--act-order", o->act_order, "GPTQ: columns in descending Hessian diagonal");
  cmd->add_option("--damp", o->damp, "GPTQ: dampening, fraction of the mean Hessian diagonal")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  cmd->add_option("--token-embedding-type", o->emb_type, "Format of token_embd.weight");
  cmd->add_option("--output-tensor-type", o->out_type,
                  "Format of output.weight (or of the tied "
                  "embedding)");
  cmd->add_option("--fallback", o->fallback,
                  "For rows the format cannot tile: ggml = nearest GGUF type (llama.cpp loads the "
                  "file), lowbit = nearest lowbit format (ragged groups), auto = ggml when the "
                  "requested types are GGUF types")
      ->check(CLI::IsMember({"auto", "ggml", "lowbit"}));
  cmd->add_option("--tensor-type", o->tensor_types,
                  "REGEX=TYPE: matrices whose GGUF name the "
                  "regex (PCRE2, unanchored) matches get TYPE; repeatable, first match wins");
  cmd->add_option("--recipe", o->recipe,
                  "Mix file: lines `REGEX = TYPE`, # comments (after "
                  "--tensor-type rules; see recipes/)");
  auto* bpw = cmd->add_option("--target-bpw", o->target_bpw,
                              "Plan a mix of this many bits per "
                              "weight (8 x all tensors' bytes / all parameters)")
                  ->check(CLI::Range(0.5, 64.0));
  auto* size = cmd->add_option("--target-size", o->target_size,
                               "Plan a mix of this many bytes of "
                               "tensor data: 350KiB, 1.5GiB, 200MB, ...");
  bpw->excludes(size);
  cmd->add_option("--sensitivity", o->sensitivity,
                  "The planner's measurement (lowbit "
                  "sensitivity); default: measure on --calib");
  cmd->add_option("--formats", o->formats,
                  "The planner's candidate formats, comma-separated: gguf (the default: GGUF "
                  "types, llama.cpp loads the file), lowbit (lowbit's own formats), all, or "
                  "format names; with --sensitivity, a subset of what it measured");
  cmd->add_option("--sensitivity-chunks", o->sensitivity_chunks,
                  "Measuring here: calibration "
                  "chunks used")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--check-uniform", o->check_uniform,
                  "Planning with --calib: measure the plan's KLD against this many uniform files "
                  "that fit the budget (those estimated best) and keep the lowest (0 = off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 64));
  cmd->add_option("--plan", o->plan, "Repeat a plan (a .plan.json written by an earlier run)")
      ->excludes(bpw)
      ->excludes(size);
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer file (default: inside or beside the "
                  "input)");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_option("--lora", o->lora.files,
                  "LoRA adapter merged into the input's weights (in F32) before quantizing "
                  "(repeatable; see also `lowbit merge`)");
  cmd->add_option("--lora-scale", o->lora.scales, "Scale of the adapters (one, or one per --lora)");
  return [o] { return run_quantize(*o); };
}

Runner add_merge(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "merge",
      "Merge LoRA adapters into a model in F32, then write it as F16/F32 or quantize it with any "
      "method and format (lowbit quantize --lora with --type f16 by default)");
  auto o = std::make_shared<QuantizeArgs>();
  o->type = "f16";
  cmd->add_option("-m,--model", o->in, "Base model (any file and format lowbit reads)")->required();
  cmd->add_option("--lora", o->lora.files, "LoRA adapter (GGUF; repeatable)")->required();
  cmd->add_option("--lora-scale", o->lora.scales, "Scale of the adapters (one, or one per --lora)");
  cmd->add_option("-o,--output", o->out, "Merged model (.gguf)")->required();
  cmd->add_option("--type", o->type,
                  "Format of the merged weight matrices: f16, f32, bf16, or any quantized format")
      ->capture_default_str();
  cmd->add_option("--method", o->method, "Quantizing: rtn, imatrix, gptq, awq, awq+gptq")
      ->capture_default_str()
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq"}));
  cmd->add_option("--calib", o->calib, "Calibration text (imatrix, gptq, awq)");
  add_calib_size_options(cmd, *o);
  cmd->add_flag("--act-order", o->act_order, "GPTQ: columns in descending Hessian diagonal");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  return [o] { return run_quantize(*o); };
}

Runner add_calibrate(CLI::App& app) {
  auto* cmd = app.add_subcommand("calibrate",
                                 "Collect the importance matrix (per-channel mean "
                                 "x² of every linear input) over calibration text");
  struct Opts {
    std::string in, text, out;
    int64_t tokens = 32768, ctx = 512;
    int threads = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->in, "Model")->required();
  cmd->add_option("-f,--file", o->text, "Calibration text")->required();
  cmd->add_option("-o,--output", o->out, "Output imatrix (GGUF, llama.cpp's layout)")->required();
  cmd->add_option("--calib-tokens", o->tokens, "Tokens used")
      ->capture_default_str()
      ->check(CLI::Range(int64_t(16), int64_t(1) << 30));
  cmd->add_option("--ctx", o->ctx, "Chunk length")
      ->capture_default_str()
      ->check(CLI::Range(8, 1 << 20));
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  return [o] {
    if (o->threads > 0) set_threads(o->threads);
    const Model m = Model::load(o->in);
    const Chunks c = calibration_chunks(m, o->text, o->ctx, o->tokens);
    Progress bar("calibrating", int64_t(c.tokens.size()));
    const Calibration cal = calibrate(m, c, 512, false, [&] { bar.advance(); });
    bar.finish();
    save_imatrix(cal, m, o->out, o->text, int64_t(c.tokens.size()), o->ctx);
    fmt::print("{}: {} input groups, {} chunks of {} tokens -> {}\n", o->in, cal.size(),
               c.tokens.size(), o->ctx, o->out);
    return 0;
  };
}

}  // namespace lowbit::cli
