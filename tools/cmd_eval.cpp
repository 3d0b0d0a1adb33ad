// `lowbit perplexity` and `lowbit compare`: quality of a model, and of quantized models against
// their original (KL divergence, top-1 agreement), by llama.cpp's chunking protocol.
#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "eval/perplexity.h"
#include "io/gguf.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/progress.h"
#include "lowbit/threads.h"

namespace lowbit::cli {

namespace {

struct EvalArgs {
  std::string text_file;
  LoraArgs lora;
  EvalOptions eo;
  int threads = 0;
  bool json = false;
};

// " + ADAPTER ..." for the adapters applied at run time (labels of rows and results).
std::string with_loras(const LoraArgs& a) {
  std::string s;
  for (const std::string& f : a.files) s += " + " + std::filesystem::path(f).filename().string();
  return s;
}

void add_eval_options(CLI::App* cmd, EvalArgs& a) {
  cmd->add_option("-f,--file", a.text_file, "Text to evaluate on")->required();
  cmd->add_option("-c,--ctx-size", a.eo.ctx,
                  "Positions per chunk (with --score-all: text tokens "
                  "per chunk, after BOS)")
      ->capture_default_str()
      ->check(CLI::Range(4, 1 << 20));
  cmd->add_option("--chunks", a.eo.chunks, "Chunks to evaluate (default: all)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("-b,--batch-size", a.eo.batch, "Tokens per evaluation step")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 16));
  cmd->add_flag("--score-all", a.eo.score_all,
                "Score every token of each chunk (BOS + CTX "
                "tokens) instead of the second half");
  cmd->add_option("-t,--threads", a.threads, "Threads (default: all cores)");
  cmd->add_flag("--json", a.json, "Machine-readable output");
  add_lora_options(cmd, a.lora);
}

// Bits per weight of a model's weight tensors, and its files' size.
std::pair<double, uint64_t> size_of(const Model& m) {
  uint64_t file = 0;
  for (const auto& s : m.sources) {
    std::error_code ec;
    const auto n = std::filesystem::file_size(s, ec);
    if (!ec) file += n;
  }
  return {tensor_size(m).bpw, file};
}

// How a compared file was quantized: the method and type its quantizer recorded (GGUF metadata
// lowbit.quantize.*), and whether its layers' weight matrices are that one type (a row it cannot
// tile in its fallback) or a mix.
void describe_quantization(const std::string& path, const Model& m, nlohmann::json& j) {
  std::map<std::string, uint64_t> params;
  for (const auto& t : m.tensors) {
    if (t.shape.size() == 2 && t.name.rfind("blk.", 0) == 0) {
      params[t.format.name()] += uint64_t(t.rows()) * uint64_t(t.row_length());
    }
  }
  if (params.empty()) return;
  j["type"] = std::max_element(params.begin(), params.end(), [](const auto& a, const auto& b) {
                return a.second < b.second;
              })->first;
  bool uniform = params.size() == 1;
  std::ifstream probe(path, std::ios::binary);
  char magic[4] = {};
  if (probe.read(magic, 4) && std::string(magic, 4) == "GGUF") {
    const GgufFile g(path);
    const std::string method = g.get_string("lowbit.quantize.method", "");
    if (!method.empty()) j["method"] = method;
    if (const auto type = Format::find(g.get_string("lowbit.quantize.type", ""))) {
      uniform = true;
      for (const auto& t : m.tensors) {
        if (t.shape.size() == 2 && t.name.rfind("blk.", 0) == 0) {
          uniform &= t.format == type->resolve_for_row(t.row_length());
        }
      }
      if (uniform) j["type"] = type->name();
    }
  }
  j["kind"] = uniform ? "uniform" : "mix";
}

nlohmann::json ppl_json(const PerplexityResult& p) {
  return {{"ppl", p.ppl()},
          {"ppl_err", p.ppl_err()},
          {"nll_mean", p.nll.mean},
          {"scored_tokens", p.nll.n},
          {"tokens_per_second", p.tokens_per_second()}};
}

nlohmann::json kld_json(const KldResult& r) {
  return {{"base", ppl_json(r.base)},
          {"model", ppl_json(r.quant)},
          {"kld",
           {{"mean", r.kld.mean},
            {"err", r.kld.stderr_},
            {"median", r.kld.median},
            {"p90", r.kld.p90},
            {"p99", r.kld.p99},
            {"max", r.kld.max}}},
          {"top1", r.top1},
          {"dp_mean", r.dp_mean},
          {"dp_rms", r.dp_rms},
          {"exact", r.exact}};
}

void print_ppl(const std::string& name, const PerplexityResult& p) {
  fmt::print(
      "{}: PPL = {:.4f} +/- {:.4f} (mean NLL {:.6f} nats over {} tokens), {:.1f} "
      "tokens/s\n",
      name, p.ppl(), p.ppl_err(), p.nll.mean, p.nll.n, p.tokens_per_second());
}

void print_kld(const KldResult& r) {
  print_ppl("base ", r.base);
  print_ppl("model", r.quant);
  fmt::print("ΔPPL   {:+.4f} ({:+.3f}%)\n", r.quant.ppl() - r.base.ppl(),
             100.0 * (r.quant.ppl() / r.base.ppl() - 1));
  fmt::print(
      "KLD    mean {:.6f} +/- {:.6f} | median {:.6f} | p90 {:.6f} | p99 {:.6f} | max "
      "{:.6f}{}\n",
      r.kld.mean, r.kld.stderr_, r.kld.median, r.kld.p90, r.kld.p99, r.kld.max,
      r.exact ? "" : "  (from a top-k store: a lower bound)");
  fmt::print("top-1  {:.3f}% of positions pick the base's most likely token\n", 100.0 * r.top1);
  fmt::print("Δp     mean {:+.5f}, RMS {:.5f} (probability of the correct token)\n", r.dp_mean,
             r.dp_rms);
}

}  // namespace

Runner add_perplexity(CLI::App& app) {
  auto* cmd = app.add_subcommand("perplexity",
                                 "Perplexity of a model on a text; with --base or "
                                 "--logits, KL divergence against the original");
  struct Opts : EvalArgs {
    std::string model, base, save_logits, logits;
    int64_t top_k = 0;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model, "Model to evaluate")->required();
  add_eval_options(cmd, *o);
  cmd->add_option("--base", o->base,
                  "The original model: report KL divergence, top-1 "
                  "agreement and Δp against it");
  cmd->add_option("--save-logits", o->save_logits,
                  "Save what KLD needs from this model (its "
                  "top-k log-probabilities per scored position) for a later --logits run");
  cmd->add_option("--logits", o->logits, "Compare against logits saved with --save-logits");
  cmd->add_option("--logits-top-k", o->top_k,
                  "Tokens kept per position by --save-logits "
                  "(default: the whole vocabulary up to 4096, else 256)")
      ->check(CLI::Range(1, 1 << 24));
  return [o] {
    if (o->threads > 0) set_threads(o->threads);
    if (int(!o->base.empty()) + int(!o->logits.empty()) + int(!o->save_logits.empty()) > 1) {
      throw Error("use one of --base, --logits and --save-logits", {.field = "arguments"});
    }
    const std::string text = read_text(o->text_file);
    Model m = Model::load(o->model);
    attach_loras(m, o->lora);  // the evaluated model's, not --base's
    const Chunks c = chunk_text(m, text, o->eo);
    fmt::print(stderr, "{}: {} chunks of {} tokens, {} scored per chunk\n", o->text_file,
               c.tokens.size(), c.tokens[0].size(), c.scored_per_chunk());
    const int64_t models = o->base.empty() ? 1 : 2;
    Progress bar("evaluating", int64_t(c.tokens.size()) * models);
    auto tick = [&] { bar.advance(); };
    nlohmann::json out = {{"model", o->model},
                          {"text", o->text_file},
                          {"ctx", o->eo.ctx},
                          {"chunks", c.tokens.size()},
                          {"score_all", o->eo.score_all}};
    if (!o->lora.files.empty()) out["lora"] = o->lora.files;
    if (!o->base.empty() || !o->logits.empty()) {
      KldResult r;
      if (!o->base.empty()) {
        const Model base = Model::load(o->base);
        const Chunks cb = chunk_text(base, text, o->eo);
        if (cb.tokens != c.tokens) {
          throw Error("the base model tokenizes the text differently",
                      {.file = o->base, .field = "tokenizer"});
        }
        r = compare_models(base, {&m}, c, o->eo, tick).at(0);
      } else {
        r = compare_with_store(BaseLogits::load(o->logits), m, c, o->eo, tick);
      }
      bar.finish();
      out["base"] = o->base.empty() ? o->logits : o->base;
      out.update(kld_json(r));
      if (o->json)
        fmt::print("{}\n", out.dump(2));
      else
        print_kld(r);
      return 0;
    }
    PerplexityResult p;
    if (!o->save_logits.empty()) {
      const int64_t V = m.config.n_vocab;
      const int64_t k = o->top_k > 0 ? o->top_k : (V <= 4096 ? V : 256);
      const BaseLogits b = collect_base_logits(m, c, o->eo, k, tick);
      b.save(o->save_logits);
      p = b.ppl;
      fmt::print(stderr, "saved the top {} of {} log-probabilities at {} positions to {}\n", b.k, V,
                 b.target_logp.size(), o->save_logits);
    } else {
      p = perplexity(m, c, o->eo, tick);
    }
    bar.finish();
    out.update(ppl_json(p));
    if (o->json)
      fmt::print("{}\n", out.dump(2));
    else
      print_ppl(o->model + with_loras(o->lora), p);
    return 0;
  };
}

Runner add_compare(CLI::App& app) {
  auto* cmd = app.add_subcommand("compare",
                                 "One table over quantized files of one model: size, "
                                 "bits per weight, PPL, ΔPPL, KLD, top-1 agreement");
  struct Opts : EvalArgs {
    std::vector<std::string> files;
    bool csv = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("files", o->files, "BASE Q1 Q2 ...: the original first")
      ->required()
      ->expected(2, 1 << 20);
  add_eval_options(cmd, *o);
  cmd->add_flag("--csv", o->csv, "CSV output");
  return [o] {
    if (o->threads > 0) set_threads(o->threads);
    const std::string text = read_text(o->text_file);
    const Model base = Model::load(o->files[0]);
    std::vector<Model> models;
    for (size_t i = 1; i < o->files.size(); ++i) {  // --lora: on each compared file, not the base
      models.push_back(Model::load(o->files[i]));
      attach_loras(models.back(), o->lora);
    }
    const Chunks c = chunk_text(base, text, o->eo);
    std::vector<const Model*> ptrs;
    for (size_t i = 0; i < models.size(); ++i) {
      if (chunk_text(models[i], text, o->eo).tokens != c.tokens) {
        throw Error("this model tokenizes the text differently from the base",
                    {.file = o->files[i + 1], .field = "tokenizer"});
      }
      ptrs.push_back(&models[i]);
    }
    fmt::print(stderr, "{}: {} chunks of {} tokens, {} scored per chunk\n", o->text_file,
               c.tokens.size(), c.tokens[0].size(), c.scored_per_chunk());
    Progress bar("comparing", int64_t(c.tokens.size() * (models.size() + 1)));
    const auto res = compare_models(base, ptrs, c, o->eo, [&] { bar.advance(); });
    bar.finish();
    struct Row {
      std::string file;
      double bpw;
      uint64_t size;
      double ppl, ppl_err, dppl, kld, kld_err, top1;
    };
    std::vector<Row> rows;
    const auto [bbpw, bsize] = size_of(base);
    const PerplexityResult& bp = res.at(0).base;
    rows.push_back({o->files[0], bbpw, bsize, bp.ppl(), bp.ppl_err(), 0, 0, 0, 1});
    for (size_t i = 0; i < res.size(); ++i) {
      const auto [bpw, size] = size_of(models[i]);
      const KldResult& r = res[i];
      rows.push_back({o->files[i + 1] + with_loras(o->lora), bpw, size, r.quant.ppl(),
                      r.quant.ppl_err(), r.quant.ppl() - bp.ppl(), r.kld.mean, r.kld.stderr_,
                      r.top1});
    }
    if (o->json) {
      nlohmann::json out = {{"lowbit_compare", 1},
                            {"command", command_line()},
                            {"model", o->files[0]},
                            {"text", o->text_file},
                            {"ctx", o->eo.ctx},
                            {"chunks", c.tokens.size()},
                            {"score_all", o->eo.score_all},
                            {"scored_tokens", bp.nll.n}};
      out["rows"].push_back({{"file", o->files[0]},
                             {"bits_per_weight", bbpw},
                             {"file_bytes", bsize},
                             {"ppl", ppl_json(bp)}});
      for (size_t i = 0; i < res.size(); ++i) {
        nlohmann::json j = kld_json(res[i]);
        j["file"] = o->files[i + 1];
        if (!o->lora.files.empty()) j["lora"] = o->lora.files;
        j["bits_per_weight"] = rows[i + 1].bpw;
        j["file_bytes"] = rows[i + 1].size;
        describe_quantization(o->files[i + 1], models[i], j);
        out["rows"].push_back(j);
      }
      fmt::print("{}\n", out.dump(2));
    } else if (o->csv) {
      fmt::print("file,file_bytes,bits_per_weight,ppl,ppl_err,delta_ppl,kld,kld_err,top1\n");
      for (const Row& r : rows) {
        fmt::print("{},{},{:.4f},{:.6f},{:.6f},{:.6f},{:.8f},{:.8f},{:.6f}\n", r.file, r.size,
                   r.bpw, r.ppl, r.ppl_err, r.dppl, r.kld, r.kld_err, r.top1);
      }
    } else {
      fmt::print("| file | size (MiB) | bits/weight | PPL | ΔPPL | KLD | top-1 % |\n");
      fmt::print("|---|---:|---:|---:|---:|---:|---:|\n");
      for (const Row& r : rows) {
        fmt::print(
            "| {} | {:.3f} | {:.3f} | {:.4f} ± {:.4f} | {:+.4f} | {:.6f} ± {:.6f} | {:.2f} "
            "|\n",
            std::filesystem::path(r.file).filename().string(), double(r.size) / (1 << 20), r.bpw,
            r.ppl, r.ppl_err, r.dppl, r.kld, r.kld_err, 100.0 * r.top1);
      }
      fmt::print("\n{} chunks of {} tokens, {} tokens scored{}\n", c.tokens.size(),
                 c.tokens[0].size(), bp.nll.n, o->eo.score_all ? " (--score-all)" : "");
    }
    return 0;
  };
}

}  // namespace lowbit::cli
