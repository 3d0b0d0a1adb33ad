// `lowbit demo`: the main job on the default model: every weight format's bits per weight and
// round-trip error (a fixed Gaussian matrix, the stories260K weights), then stories260K quantized
// into several formats, each file reloaded and measured side by side: size, perplexity, KL
// divergence and top-1 agreement against the original, generation speed; then at 4 and 3 bits
// with every quantization method (RTN, imatrix, GPTQ, AWQ, AWQ+GPTQ); then planned mixes for a
// size, from GGUF types (the default) and from lowbit's own formats; then QLoRA: LoRA adapters
// trained on the Q4_0 file, kept quantized, and the perplexity they buy on held-out text.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

#include "commands.h"
#include "engine/llama.h"
#include "eval/perplexity.h"
#include "eval/roundtrip.h"
#include "io/llama2c.h"
#include "lowbit/format.h"
#include "lowbit/model.h"
#include "lowbit/output_file.h"
#include "lowbit/rng.h"
#include "lowbit/threads.h"
#include "quant/methods.h"
#include "quant/plan.h"
#include "quant/quantize.h"
#include "quant/sensitivity.h"
#include "train/model.h"
#include "train/trainer.h"

namespace lowbit::cli {

namespace {

std::vector<Format> demo_formats() {
  std::vector<Format> out;
  for (const auto& f : all_formats()) {
    if (f.block_elems != 0 && !f.activation_only) out.emplace_back(f);
  }
  for (const char* n : {"int8", "int6_g32", "int5_g32", "int4_g32", "int4_g32_asym", "int4_g128",
                        "int3_g32", "int3_g32_asym", "int2_g32", "int2_g32_asym"}) {
    out.push_back(Format::parse(n));
  }
  return out;
}

std::filesystem::path fixtures_dir(const std::string& opt) {
  if (!opt.empty()) return opt;
  if (const char* env = std::getenv("LOWBIT_FIXTURES")) return env;
  return std::filesystem::path(LOWBIT_SOURCE_DIR) / ".." / "shared" / "fixtures";
}

void gaussian_table() {
  constexpr int64_t kRows = 256, kK = 4096;
  std::vector<float> x(kRows * kK);
  Rng rng(42);
  for (auto& v : x) v = float(rng.normal());
  fmt::print("## (a) Gaussian matrix {}x{}, N(0,1), seed 42\n\n", kRows, kK);
  fmt::print("| format | bpw | rel. RMSE |\n|---|---|---|\n");
  for (const auto& f : demo_formats()) {
    const RoundTrip r = roundtrip(f, x.data(), kRows, kK);
    fmt::print("| {} | {:.4f} | {:.5f} |\n", f.name(), r.bits_per_weight(), r.rel_rmse());
  }
  fmt::print("\n");
}

void stories_table(const Llama2cModel& m) {
  fmt::print(
      "## (b) stories260K weights (2-D tensors; rows of 64 except ffn_down, rows of 172)\n\n");
  fmt::print(
      "| format | used for rows of 64 | bpw | rel. RMSE | used for rows of 172 | bpw | "
      "rel. RMSE | all: bpw | all: rel. RMSE |\n|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& f : demo_formats()) {
    RoundTrip r64{.used = f.resolve_for_row(64)}, r172{.used = f.resolve_for_row(172)};
    for (const auto& t : m.tensors()) {
      if (t.rows == 1) continue;  // norms stay f32
      (t.cols == 64 ? r64 : r172) += roundtrip(f, t.data, t.rows, t.cols);
    }
    RoundTrip all = r64;
    all += r172;
    fmt::print("| {} | {} | {:.3f} | {:.5f} | {} | {:.3f} | {:.5f} | {:.3f} | {:.5f} |\n", f.name(),
               r64.used.name(), r64.bits_per_weight(), r64.rel_rmse(), r172.used.name(),
               r172.bits_per_weight(), r172.rel_rmse(), all.bits_per_weight(), all.rel_rmse());
  }
  fmt::print("\n");
}

// Greedy generation of n tokens from BOS: tokens per second, the median of 5 runs.
double generation_speed(const Model& m, int n) {
  LlamaEngine e(m, n + 1, 1);
  std::vector<double> speeds;
  for (int rep = 0; rep < 5; ++rep) {
    int32_t tok = int32_t(m.tokenizer.bos_id.value_or(1));
    const auto t0 = std::chrono::steady_clock::now();
    for (int pos = 0; pos < n; ++pos) {
      const auto& l = e.forward(tok, pos);
      tok = int32_t(std::max_element(l.begin(), l.end()) - l.begin());
    }
    speeds.push_back(n /
                     std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(speeds.begin(), speeds.end());
  return speeds[2];
}

// What the demo measured, for its report (lowbit report's inputs): the files of (c)-(e) as
// `compare --json` rows, the sensitivity of (e), the QLoRA training log of (f).
struct DemoData {
  nlohmann::json compare = {{"lowbit_compare", 1}, {"rows", nlohmann::json::array()}};
  std::vector<nlohmann::json> train_log;
  std::string sensitivity;  // path, once saved
};
DemoData& demo_data() {
  static DemoData d;
  return d;
}
void demo_row(const std::string& name, double bpw, const PerplexityResult* base, const KldResult* r,
              const std::string& method, const std::string& kind, const std::string& type) {
  nlohmann::json j = {{"file", name}, {"bits_per_weight", bpw}};
  if (base) j["ppl"] = {{"ppl", base->ppl()}};
  if (r) {
    j["model"] = {{"ppl", r->quant.ppl()}};
    j["kld"] = {{"mean", r->kld.mean}};
    j["top1"] = r->top1;
    j["method"] = method, j["kind"] = kind, j["type"] = type;
  }
  demo_data().compare["rows"].push_back(j);
}

// The demo's scratch folder (created) and a whole text file.
std::filesystem::path demo_dir() {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "lowbit-demo";
  std::filesystem::create_directories(dir);
  return dir;
}

void quantized_table(const std::filesystem::path& model_path, const std::filesystem::path& text) {
  const std::filesystem::path dir = demo_dir();
  const Model base = Model::load(model_path.string());
  const std::vector<const char*> types = {"q8_0", "q5_0",      "q4_0",     "iq4_nl",
                                          "nf4",  "int4_g128", "int3_g32", "int2_g32"};
  std::vector<Model> models;
  std::vector<std::vector<TensorPlan>> plans;
  for (const char* t : types) {
    const std::string out = (dir / (std::string(t) + ".gguf")).string();
    plans.push_back(
        quantize_model(base, out, {.type = Format::parse(t), .fallback = FallbackPolicy::kLowbit}));
    models.push_back(Model::load(out));
  }
  const EvalOptions o{.ctx = 256, .chunks = 40};
  const Chunks c = chunk_text(base, read_text(text), o);
  std::vector<const Model*> ptrs;
  for (const auto& m : models) ptrs.push_back(&m);
  const auto res = compare_models(base, ptrs, c, o);
  fmt::print("## (c) stories260K quantized (round-to-nearest), reloaded and measured\n\n");
  fmt::print(
      "{} chunks of 256 tokens of {}, second half of each scored ({} tokens); "
      "generation: 128 greedy tokens, 1 thread, median of 5. ffn_down's rows of 172 use the ragged "
      "lowbit format of the same bits where a 32-block format cannot tile them.\n\n",
      c.tokens.size(), text.filename().string(), res[0].kld.n);
  fmt::print(
      "| format | bits/weight | KiB | PPL | KLD | top-1 % | tokens/s |\n"
      "|---|---:|---:|---:|---:|---:|---:|\n");
  const auto [bb, bbpw] = tensor_size(base);
  fmt::print("| f32 (original) | {:.2f} | {:.0f} | {:.4f} | 0 | 100 | {:.0f} |\n", bbpw,
             double(bb) / 1024, res[0].base.ppl(), generation_speed(base, 128));
  demo_row("stories260K f32", bbpw, &res[0].base, nullptr, "", "", "f32");
  for (size_t i = 0; i < models.size(); ++i) {
    const auto [b, bpw] = tensor_size(models[i]);
    fmt::print("| {} | {:.2f} | {:.0f} | {:.4f} | {:.5f} | {:.2f} | {:.0f} |\n", types[i], bpw,
               double(b) / 1024, res[i].quant.ppl(), res[i].kld.mean, 100 * res[i].top1,
               generation_speed(models[i], 128));
    demo_row(types[i], bpw, nullptr, &res[i], "rtn", "uniform", types[i]);
  }
  fmt::print("\n");
}

// The same model at 4 and 3 bits with each method: calibrated on the text's tail, evaluated on
// its head (never overlapping).
void methods_table(const std::filesystem::path& model_path, const std::filesystem::path& text) {
  const std::filesystem::path dir = demo_dir();
  const Model base = Model::load(model_path.string());
  const std::string all = read_text(text);
  const Chunks calib =
      chunk_text(base, all.substr(all.size() - 200000), {.ctx = 256, .chunks = 32});
  const EvalOptions o{.ctx = 256, .chunks = 40};
  const Chunks eval = chunk_text(base, all, o);
  const std::vector<Method> methods = {Method::kRtn, Method::kImatrix, Method::kGptq, Method::kAwq,
                                       Method::kAwqGptq};
  fmt::print("## (d) stories260K at 4 and 3 bits: quantization methods\n\n");
  fmt::print(
      "Calibration: {} chunks of 256 tokens from the end of {}; evaluation as in (c). "
      "int4_g32 / int3_g32: 4- and 3-bit integers, an fp16 scale per 32 weights.\n\n",
      calib.tokens.size(), text.filename().string());
  fmt::print(
      "| format | method | bits/weight | PPL | KLD | top-1 % | seconds |\n"
      "|---|---|---:|---:|---:|---:|---:|\n");
  for (const char* type : {"int4_g32", "int3_g32"}) {
    std::vector<Model> models;
    std::vector<double> secs;
    for (const Method me : methods) {
      const std::string out =
          (dir / (std::string(type) + "-" + method_name(me) + ".gguf")).string();
      const auto t0 = std::chrono::steady_clock::now();
      quantize_with_method(base, out, {.type = Format::parse(type)}, {.method = me}, &calib);
      secs.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      models.push_back(Model::load(out));
    }
    std::vector<const Model*> ptrs;
    for (const auto& m : models) ptrs.push_back(&m);
    const auto res = compare_models(base, ptrs, eval, o);
    for (size_t i = 0; i < models.size(); ++i) {
      fmt::print("| {} | {} | {:.2f} | {:.4f} | {:.5f} | {:.2f} | {:.1f} |\n", type,
                 method_name(methods[i]), tensor_size(models[i]).bpw, res[i].quant.ppl(),
                 res[i].kld.mean, 100 * res[i].top1, secs[i]);
      demo_row(fmt::format("{} {}", type, method_name(methods[i])), tensor_size(models[i]).bpw,
               nullptr, &res[i], method_name(methods[i]), "uniform", type);
    }
  }
  fmt::print("\n");
}

// Planned mixes (the planner's knapsack over one sensitivity measurement of both candidate
// sets): at 7.2 bits per weight from GGUF types, the default (llama.cpp loads the file; on
// stories260K ffn_down's rows of 172 stay f16, which sets the smallest such file), and from
// lowbit's own formats at the same size and at 4.5.
void plans_table(const std::filesystem::path& model_path, const std::filesystem::path& text) {
  const std::filesystem::path dir = demo_dir();
  const Model base = Model::load(model_path.string());
  const std::string all = read_text(text);
  const Chunks calib = chunk_text(base, all.substr(all.size() - 200000), {.ctx = 256, .chunks = 8});
  const auto t0 = std::chrono::steady_clock::now();
  Sensitivity sens = measure_sensitivity(base, calib, {.formats = all_ladders()});
  const double measure_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sens.model = "stories260K", sens.command = command_line();
  demo_data().sensitivity = (dir / "demo.sens.json").string();
  sens.save(demo_data().sensitivity);
  uint64_t fixed = 0;  // norms stay f32
  for (const auto& t : base.tensors) {
    if (t.shape.size() < 2) fixed += uint64_t(t.rows() * t.row_length()) * 4;
  }
  struct Row {
    const char* set;
    double bpw;
  };
  const std::vector<Row> rows = {{"gguf", 7.2}, {"lowbit", 7.2}, {"lowbit", 4.5}};
  uint64_t least = fixed;  // the smallest file from GGUF types
  for (const auto& tc : candidates_of(sens, base, "demo", default_ladder())) {
    uint64_t lo = UINT64_MAX;
    for (const auto& o : tc.options) lo = std::min(lo, o.bytes);
    least += lo;
  }
  std::vector<Model> models;
  std::vector<std::string> mixes;
  for (const auto& r : rows) {
    const auto cand = candidates_of(sens, base, "demo", parse_format_list(r.set));
    const uint64_t total = uint64_t(r.bpw * double(base.parameter_count()) / 8);
    const BudgetSolution sol = solve_budget(cand, total - fixed);
    QuantizeOptions q{.type = Format::parse("f16")};
    std::map<std::string, int> count;
    for (size_t i = 0; i < cand.size(); ++i) {
      const Format& fm = cand[i].options[sol.choice[i]].format;
      q.per_tensor.emplace(cand[i].name, fm);
      ++count[fm.name()];
    }
    std::string mix;
    for (const auto& [name, n] : count)
      mix += fmt::format("{}{} {}", mix.empty() ? "" : ", ", n, name);
    mixes.push_back(mix);
    const std::string out = (dir / fmt::format("plan-{}-{}.gguf", r.set, r.bpw)).string();
    quantize_model(base, out, q);
    models.push_back(Model::load(out));
  }
  const EvalOptions o{.ctx = 256, .chunks = 40};
  const Chunks eval = chunk_text(base, all, o);
  std::vector<const Model*> ptrs;
  for (const auto& m : models) ptrs.push_back(&m);
  const auto res = compare_models(base, ptrs, eval, o);
  fmt::print("## (e) stories260K: planned mixes for a size (round-to-nearest)\n\n");
  fmt::print(
      "One sensitivity measurement of both candidate sets ({} chunks of 256 from the end of "
      "{}, {:.1f} s); each plan is the knapsack's optimum for its set and budget. gguf is "
      "the default (`lowbit quantize --target-bpw B`): GGUF types only, so llama.cpp loads "
      "the file; lowbit (`--formats lowbit`) adds lowbit's own formats, whose ragged groups "
      "tile ffn_down's rows of 172 (GGUF types leave them f16, so nothing llama.cpp loads "
      "is smaller than {:.2f} bits per weight here). Evaluation as in (c).\n\n",
      calib.tokens.size(), text.filename().string(), measure_s,
      8.0 * double(least) / double(base.parameter_count()));
  fmt::print(
      "| candidates | target bpw | bits/weight | llama.cpp loads it | PPL | KLD | top-1 % | "
      "tokens/s | formats (matrices) |\n|---|---:|---:|---|---:|---:|---:|---:|---|\n");
  for (size_t i = 0; i < models.size(); ++i) {
    bool gguf = true;
    for (const auto& t : models[i].tensors) gguf &= t.format.is_ggml_type();
    fmt::print("| {} | {:.1f} | {:.3f} | {} | {:.4f} | {:.5f} | {:.2f} | {:.0f} | {} |\n",
               rows[i].set, rows[i].bpw, tensor_size(models[i]).bpw, gguf ? "yes" : "no",
               res[i].quant.ppl(), res[i].kld.mean, 100 * res[i].top1,
               generation_speed(models[i], 128), mixes[i]);
    demo_row(fmt::format("plan {} {:.1f}", rows[i].set, rows[i].bpw), tensor_size(models[i]).bpw,
             nullptr, &res[i], "rtn", "mix", mixes[i]);
  }
  fmt::print("\n");
}

// QLoRA on the Q4_0 file: adapters (r 8, alpha 16, every linear layer) trained on the head of
// wikitext2-test.raw with the base kept in Q4_0, then applied at run time (what `lowbit finetune`
// and `--lora` do); perplexity on the text's tail, which the training never saw.
void qlora_table(const std::filesystem::path& model_path, const std::filesystem::path& wiki) {
  const std::filesystem::path dir = demo_dir();
  const std::string q4 = (dir / "qlora-q4_0.gguf").string();
  quantize_model(Model::load(model_path.string()), q4, {.type = Format::parse("q4_0")});
  Model m = Model::load(q4);
  const std::string all = read_text(wiki);
  train::TrainConfig tc;
  tc.steps = 150, tc.batch = 8, tc.ctx = 128, tc.lr = 2e-3, tc.seed = 1;
  tc.lora.rank = 8, tc.lora.alpha = 16;
  train::TrainData data = train::make_train_data(
      Tokenizer(m.tokenizer), {{wiki.string(), all.substr(0, 200000)}}, std::nullopt, 0, tc.ctx);
  const train::FrozenBase<float> base(m, m.config);
  const train::ParamLayout layout = train::ParamLayout::lora(m.config, tc.lora);
  train::Trainer trainer(m.config, train::rope_inv_freq(m), train::init_lora(layout, tc.seed), tc,
                         std::move(data), &base);
  const auto t0 = std::chrono::steady_clock::now();
  trainer.run(tc.steps, [&](const train::StepLog& s) {
    nlohmann::json j = {
        {"lowbit_train_log", 1}, {"step", s.step}, {"tokens", s.step * tc.batch * tc.ctx},
        {"loss", s.loss},        {"lr", s.lr},     {"tokens_per_second", s.tokens_per_second}};
    if (s.val_loss) j["val_loss"] = *s.val_loss;
    if (demo_data().train_log.empty()) j["command"] = command_line() + " (section f)";
    demo_data().train_log.push_back(j);
  });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string adapter = (dir / "qlora-adapter.gguf").string();
  write_lora_gguf(train::lora_adapter_of(layout, trainer.weights(), m.config.arch, tc.lora.alpha),
                  adapter);
  const EvalOptions o{.ctx = 128};
  const Chunks held = chunk_text(m, all.substr(all.size() - 50000), o);
  const PerplexityResult before = perplexity(m, held, o);
  m.loras.push_back({std::make_shared<LoraAdapter>(read_lora(adapter)), 1.0f});
  const PerplexityResult after = perplexity(m, held, o);
  fmt::print("## (f) QLoRA: adapters trained on the Q4_0 file, the base kept in Q4_0\n\n");
  fmt::print(
      "LoRA r {} (alpha {}, every linear layer, {} adapter parameters): {} steps of {} x {} "
      "tokens from the first 200 kB of {} in {:.1f} s ({:.0f} tokens/s); perplexity on its last "
      "50 kB (never trained on), ctx {}. `lowbit finetune` / `--lora` do the same.\n\n",
      tc.lora.rank, tc.lora.alpha, layout.total, tc.steps, tc.batch, tc.ctx,
      wiki.filename().string(), secs, double(tc.steps * tc.batch * tc.ctx) / secs, o.ctx);
  fmt::print("| model | PPL |\n|---|---:|\n");
  fmt::print("| stories260K q4_0 | {:.4f} |\n", before.ppl());
  fmt::print("| stories260K q4_0 + LoRA adapter | {:.4f} |\n\n", after.ppl());
}

// The demo's measurements as lowbit's JSON outputs, then as a report.
void write_demo_report() {
  const std::filesystem::path dir = demo_dir();
  DemoData& d = demo_data();
  d.compare["command"] = command_line() + " (sections c, d, e)";
  auto save = [](const std::filesystem::path& p, const std::string& text) {
    OutputFile f(p.string());
    f.write(text.data(), text.size());
    f.commit();
  };
  std::vector<std::string> inputs = {(dir / "demo-compare.json").string()};
  save(inputs[0], d.compare.dump(1) + "\n");
  if (!d.sensitivity.empty()) inputs.push_back(d.sensitivity);
  if (!d.train_log.empty()) {
    std::string text;
    for (const auto& l : d.train_log) text += l.dump() + "\n";
    inputs.push_back((dir / "demo-train.jsonl").string());
    save(inputs.back(), text);
  }
  const std::string out = (dir / "report.html").string();
  try {
    write_report(inputs, out, "lowbit demo: stories260K");
    fmt::print(
        "## (g) The report\n\nThe measurements above as charts: {} (`lowbit report` drew "
        "it from {}).\n\n",
        out, fmt::join(inputs, ", "));
  } catch (const Error& e) {
    fmt::print("## (g) The report\n\nnot written: {}\n\n", e.what());
  }
}

}  // namespace

Runner add_demo(CLI::App& app) {
  auto* cmd = app.add_subcommand("demo", "Run the main job on the default model (stories260K)");
  auto dir = std::make_shared<std::string>();
  cmd->add_option("--fixtures", *dir,
                  "Fixtures folder (default: $LOWBIT_FIXTURES or "
                  "../shared/fixtures beside the source tree)");
  return [dir] {
    const auto t0 = std::chrono::steady_clock::now();
    gaussian_table();
    const auto model = fixtures_dir(*dir) / "models" / "stories260K" / "stories260K.bin";
    if (!std::filesystem::exists(model)) {
      fmt::print(
          "stories260K not found at {}: fetch stories260K.bin from the Hugging Face repo "
          "karpathy/tinyllamas (folder stories260K) into DIR/models/stories260K/ and run "
          "with LOWBIT_FIXTURES=DIR.\n",
          model.string());
      return 0;
    }
    stories_table(Llama2cModel(model.string()));
    const int threads = max_threads();
    set_threads(1);  // tiny model: one thread is fastest and steadiest on a shared machine
    quantized_table(model, fixtures_dir(*dir) / "text" / "tinystories-valid-head.txt");
    methods_table(model, fixtures_dir(*dir) / "text" / "tinystories-valid-head.txt");
    plans_table(model, fixtures_dir(*dir) / "text" / "tinystories-valid-head.txt");
    qlora_table(model, fixtures_dir(*dir) / "text" / "wikitext2-test.raw");
    set_threads(threads);
    write_demo_report();
    fmt::print("demo took {:.1f} s\n",
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  };
}

}  // namespace lowbit::cli
