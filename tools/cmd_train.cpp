// `lowbit train -m INIT -f TEXT... -o OUT.gguf --steps N [options]`: full training of every tensor
// of a model in F32 (src/train/), from any model lowbit reads (quantized weights are dequantized).
// Checkpoints (`--checkpoint DIR`, every `--save-every` steps and at the end) hold weights,
// optimizer state and step; `--resume DIR` continues the run with its flags unless overridden, and
// ends bit-identical to the uninterrupted run.
#include <cblas.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "commands.h"
#include "io/synth.h"
#include "lowbit/error.h"
#include "lowbit/lora.h"
#include "lowbit/threads.h"
#include "lowbit/tokenizer_data.h"
#include "train/trainer.h"

namespace lowbit::cli {

namespace {

using nlohmann::json;

// A fresh model: a named shape and/or explicit sizes, and the tokenizer that fixes its vocabulary.
struct FreshArgs {
  std::string shape, tokenizer;
  std::optional<int64_t> dim, ff, layers, heads, kv_heads, vocab;
  bool any() const { return !shape.empty() || dim || ff || layers || heads || kv_heads || vocab; }
};

struct TrainArgs {
  bool finetune = false;  // `lowbit finetune`: LoRA adapters on a frozen base
  std::string lora_targets = "all-linear", peft;
  std::string model, out, type = "f32", val, checkpoint, resume, json_log;
  FreshArgs fresh;
  std::vector<std::string> files;
  train::TrainConfig tc;
  std::string optimizer = "adamw", schedule = "cosine";
  int64_t stop_after = 0, save_every = 0;
  double val_split = 0;
  int threads = 0;
};

std::string checkpoint_file(const std::string& dir) {
  return dir + "/checkpoint.lbt";
}

json fresh_json(const FreshArgs& f) {
  json j = {{"shape", f.shape}, {"tokenizer", f.tokenizer}};
  auto put = [&](const char* k, const std::optional<int64_t>& v) {
    if (v) j[k] = *v;
  };
  put("dim", f.dim), put("ff", f.ff), put("layers", f.layers), put("heads", f.heads);
  put("kv_heads", f.kv_heads), put("vocab", f.vocab);
  return j;
}
FreshArgs fresh_of(const json& j) {
  FreshArgs f;
  j.at("shape").get_to(f.shape), j.at("tokenizer").get_to(f.tokenizer);
  auto get = [&](const char* k, std::optional<int64_t>& v) {
    if (j.contains(k)) v = j.at(k).get<int64_t>();
  };
  get("dim", f.dim), get("ff", f.ff), get("layers", f.layers), get("heads", f.heads);
  get("kv_heads", f.kv_heads), get("vocab", f.vocab);
  return f;
}

// The model a fresh run starts from (no tensors: train::init_weights makes them): its
// configuration (a named shape with the given sizes over it, or the sizes alone) and the
// tokenizer, which fixes the vocabulary.
Model fresh_model(const FreshArgs& f, int64_t ctx) {
  if (f.tokenizer.empty()) {
    throw Error(
        "a fresh model needs a tokenizer",
        {.field = "--tokenizer",
         .expected =
             "a "
             "tokenizer file (tokenizer.model, tokenizer.json, a llama2.c tok*.bin, a GGUF)"});
  }
  ModelConfig c;
  if (!f.shape.empty()) {
    c = synth_shape(f.shape);
  } else {
    for (const auto& [opt, given] : {std::pair{"--dim", f.dim.has_value()},
                                     {"--ff", f.ff.has_value()},
                                     {"--layers", f.layers.has_value()},
                                     {"--heads", f.heads.has_value()}}) {
      if (!given) {
        throw Error("a fresh model needs --dim, --ff, --layers and --heads (or --shape), or -m",
                    {.field = opt, .expected = "a value"});
      }
    }
  }
  c.name = "lowbit-trained";
  c.n_embd = f.dim.value_or(c.n_embd), c.n_ff = f.ff.value_or(c.n_ff);
  c.n_layer = f.layers.value_or(c.n_layer), c.n_head = f.heads.value_or(c.n_head);
  c.n_head_kv = f.kv_heads.value_or(f.shape.empty() ? c.n_head : c.n_head_kv);
  if (f.dim || f.heads || f.shape.empty()) c.head_dim = c.n_head > 0 ? c.n_embd / c.n_head : 0;
  c.n_ctx_train = std::max(c.n_ctx_train, ctx);
  Model m;
  m.tokenizer = load_tokenizer(f.tokenizer, f.vocab.value_or(0));
  const auto nv = int64_t(m.tokenizer.tokens.size());
  if (f.vocab && *f.vocab != nv) {
    throw Error("--vocab disagrees with the tokenizer", {.file = f.tokenizer,
                                                         .field = "--vocab",
                                                         .expected = std::to_string(nv),
                                                         .found = std::to_string(*f.vocab)});
  }
  c.n_vocab = nv;
  auto bad = [&](const char* field, const std::string& expected, int64_t found) {
    throw Error("cannot make this model",
                {.field = field, .expected = expected, .found = std::to_string(found)});
  };
  if (c.n_embd <= 0) bad("--dim", "> 0", c.n_embd);
  if (c.n_ff <= 0) bad("--ff", "> 0", c.n_ff);
  if (c.n_layer <= 0) bad("--layers", "> 0", c.n_layer);
  if (c.n_head <= 0 || c.n_embd % c.n_head != 0) bad("--heads", "a divisor of --dim", c.n_head);
  if (c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0)
    bad("--kv-heads", "a divisor of --heads", c.n_head_kv);
  if (c.head_dim % 2 != 0) bad("--heads", "an even head dimension (--dim / --heads)", c.head_dim);
  m.config = c;
  m.sources = {f.tokenizer};
  return m;
}

// What a checkpoint keeps besides the trainer's own config: the run's inputs and outputs.
json run_json(const TrainArgs& a) {
  return {{"model", a.model}, {"fresh", fresh_json(a.fresh)}, {"files", a.files},
          {"val", a.val},     {"val_split", a.val_split},     {"out", a.out},
          {"type", a.type},   {"save_every", a.save_every},   {"json", a.json_log},
          {"peft", a.peft}};
}

std::string eta(double seconds) {
  if (!(seconds >= 0) || seconds > 1e7) return "?";
  const auto s = int64_t(seconds);
  return s >= 3600 ? fmt::format("{}h{:02}m", s / 3600, s / 60 % 60)
                   : fmt::format("{}m{:02}s", s / 60, s % 60);
}

int run_train(TrainArgs a, CLI::App* cmd) {
  // Resuming: the checkpoint's flags, except those given on this command line.
  std::optional<train::CheckpointInfo> resumed;
  if (!a.resume.empty()) {
    resumed = train::read_checkpoint_info(checkpoint_file(a.resume));
    const json c = json::parse(resumed->config_json), x = json::parse(resumed->extra_json);
    auto given = [&](const char* opt) {  // an option the verb lacks counts as given (kept)
      const CLI::Option* o = cmd->get_option_no_throw(opt);
      return o == nullptr || o->count() > 0;
    };
    auto take = [&](const char* opt, auto& field, const json& j, const char* key) {
      if (!given(opt)) j.at(key).get_to(field);
    };
    take("-m", a.model, x, "model"), take("-f", a.files, x, "files"),
        take("--val", a.val, x, "val");
    if (!a.fresh.any() && a.fresh.tokenizer.empty()) a.fresh = fresh_of(x.at("fresh"));
    take("--val-split", a.val_split, x, "val_split"), take("-o", a.out, x, "out");
    take("--type", a.type, x, "type"), take("--save-every", a.save_every, x, "save_every");
    take("--json", a.json_log, x, "json");
    if (a.finetune && x.contains("peft")) take("--peft", a.peft, x, "peft");
    take("--steps", a.tc.steps, c, "steps"), take("--batch", a.tc.batch, c, "batch");
    take("--ctx", a.tc.ctx, c, "ctx"), take("--grad-accum", a.tc.grad_accum, c, "grad_accum");
    take("--warmup", a.tc.warmup, c, "warmup"), take("--lr", a.tc.lr, c, "lr");
    take("--clip", a.tc.clip, c, "clip"), take("--optimizer", a.optimizer, c, "optimizer");
    take("--weight-decay", a.tc.optimizer.weight_decay, c, "weight_decay");
    take("--schedule", a.schedule, c, "schedule"), take("--seed", a.tc.seed, c, "seed");
    take("--eval-every", a.tc.eval_every, c, "eval_every");
    take("--val-windows", a.tc.val_windows, c, "val_windows");
    take("--recompute", a.tc.recompute, c, "recompute");
    if (a.finetune) {
      take("--lora-r", a.tc.lora.rank, c, "lora_rank");
      take("--lora-alpha", a.tc.lora.alpha, c, "lora_alpha");
      take("--lora-dropout", a.tc.lora.dropout, c, "lora_dropout");
      take("--lora-targets", a.lora_targets, c, "lora_targets");
    }
    // Checkpoints from before --replicas split every operation (1).
    if (!given("--replicas")) a.tc.replicas = c.value("replicas", int64_t(1));
    if (!given("--checkpoint")) a.checkpoint = a.resume;
  }
  if (a.model.empty() && !a.fresh.any()) {
    throw Error("no model to train",
                {.field = "-m",
                 .expected = "a model file, or a fresh "
                             "model's --shape / --dim --ff --layers --heads with --tokenizer"});
  }
  if (!a.model.empty() && a.fresh.any()) {
    throw Error("-m trains an existing model; the shape options make a fresh one: give one of them",
                {.field = a.fresh.shape.empty() ? "--dim" : "--shape"});
  }
  if (a.out.empty()) throw Error("no output file", {.field = "-o", .expected = "a .gguf path"});
  if (a.files.empty()) throw Error("no training text", {.field = "-f", .expected = "a text file"});
  if (a.stop_after > 0 && a.checkpoint.empty()) {
    throw Error("--stop-after leaves a checkpoint: give --checkpoint DIR",
                {.field = "--checkpoint", .expected = "a directory"});
  }
  // Fail before training, not after it, when the output cannot be written.
  for (const std::string& path : {a.out, a.checkpoint.empty() ? a.out : a.checkpoint + "/x"}) {
    const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
    if (path != a.out && !std::filesystem::exists(dir)) continue;  // a checkpoint dir is created
    if (!std::filesystem::is_directory(dir) || access(dir.c_str(), W_OK) != 0) {
      throw Error("cannot write there", {.file = path,
                                         .field = path == a.out ? "-o" : "--checkpoint",
                                         .expected = "a writable directory"});
    }
  }
  if (a.finetune) {
    if (a.model.empty()) throw Error("no base model", {.field = "-m", .expected = "a model file"});
    if (a.tc.lora.rank <= 0) {
      throw Error("LoRA rank must be positive",
                  {.field = "--lora-r", .found = std::to_string(a.tc.lora.rank)});
    }
    a.tc.lora.targets = train::parse_lora_targets(a.lora_targets);
  }
  const Format out_type = Format::parse(a.type);
  if (a.type != "f32" && a.type != "f16" && a.type != "bf16") {
    throw Error("training writes float weights",
                {.field = "--type", .expected = "f32, f16 or bf16", .found = a.type});
  }
  a.tc.optimizer.kind = train::parse_optimizer(a.optimizer);
  a.tc.schedule = train::parse_schedule(a.schedule);
  if (a.threads > 0) set_threads(a.threads);
  openblas_set_num_threads(max_threads());

  const bool fresh = a.model.empty();
  const Model m = fresh ? fresh_model(a.fresh, a.tc.ctx) : Model::load(a.model);
  const std::string name = fresh ? "a fresh model" : a.model;
  const Tokenizer tok(m.tokenizer);
  std::vector<train::NamedText> texts;
  for (const std::string& f : a.files) texts.push_back({f, read_text(f, "-f")});
  std::optional<train::NamedText> val;
  if (!a.val.empty()) val = train::NamedText{a.val, read_text(a.val, "--val")};
  train::TrainData data = train::make_train_data(tok, texts, val, a.val_split, a.tc.ctx);
  const size_t train_tokens = data.train.size(), val_tokens = data.val.size();
  const train::ParamLayout layout =
      a.finetune ? train::ParamLayout::lora(m.config, a.tc.lora) : train::ParamLayout::of(m.config);
  // LoRA: the base stays as stored (mapped), only norms and biases decoded.
  std::optional<train::FrozenBase<float>> base;
  if (a.finetune) base.emplace(m, m.config);
  train::Trainer trainer(m.config, train::rope_inv_freq(m),
                         a.finetune ? train::init_lora(layout, a.tc.seed)
                         : fresh    ? train::init_weights(layout, m.config, a.tc.seed)
                                    : train::weights_of(m, layout),
                         a.tc, std::move(data), base ? &*base : nullptr);
  if (resumed) trainer.load_checkpoint(checkpoint_file(a.resume));

  const int64_t until = a.stop_after > 0 ? std::min(a.stop_after, a.tc.steps) : a.tc.steps;
  std::ofstream log;
  if (!a.json_log.empty()) {
    log.open(a.json_log, resumed ? std::ios::app : std::ios::trunc);
    if (!log) throw Error("cannot write the training log", {.file = a.json_log, .field = "--json"});
  }
  std::string formats;  // the base's matrix formats, as stored
  for (const ModelTensor& t : m.tensors) {
    const std::string f(t.format.name());
    if (t.shape.size() == 2 && formats.find(f) == std::string::npos)
      formats += (formats.empty() ? "" : "+") + f;
  }
  const std::string what =
      a.finetune ? fmt::format(
                       "LoRA r {} (alpha {}, {}) on {} ({} kept as stored, {:.1f} MiB): {} "
                       "adapter parameters",
                       a.tc.lora.rank, a.tc.lora.alpha, train::lora_targets_name(a.tc.lora.targets),
                       name, formats, double(base->stored_bytes()) / (1 << 20), layout.total)
                 : fmt::format("{} ({} parameters, F32)", name, layout.total);
  fmt::print(
      "training {} on {} tokens ({} to validate): {} steps of {} x {} "
      "tokens{}{}\n",
      what, train_tokens, val_tokens, a.tc.steps, a.tc.batch * a.tc.grad_accum, a.tc.ctx,
      trainer.config().replicas > 1
          ? fmt::format(", {} data-parallel replicas", trainer.config().replicas)
          : "",
      resumed ? fmt::format(", resumed at step {}", trainer.steps_done()) : "");
  const bool tty = isatty(fileno(stderr));
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first = trainer.steps_done();
  std::optional<double> last_val;
  double last_loss = 0;
  trainer.run(until, [&](const train::StepLog& s) {
    last_loss = s.loss;
    if (s.val_loss) last_val = s.val_loss;
    if (log) {
      static bool first = true;  // the first line records the command
      json j = {{"lowbit_train_log", 1},
                {"step", s.step},
                {"tokens", s.step * a.tc.batch * a.tc.grad_accum * a.tc.ctx},
                {"loss", s.loss},
                {"lr", s.lr},
                {"grad_norm", s.grad_norm},
                {"tokens_per_second", s.tokens_per_second}};
      if (s.val_loss) j["val_loss"] = *s.val_loss;
      if (first) j["command"] = command_line(), first = false;
      log << j.dump() << "\n" << std::flush;
    }
    const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double per = el / double(s.step - first);
    if (tty) {
      std::fprintf(stderr, "\r\033[Kstep %lld/%lld  loss %.4f%s  %.0f tok/s  ETA %s",
                   (long long)s.step, (long long)a.tc.steps, s.loss,
                   last_val ? fmt::format("  val {:.4f}", *last_val).c_str() : "",
                   s.tokens_per_second, eta(per * double(until - s.step)).c_str());
    }
    if (s.val_loss) {
      if (tty) std::fprintf(stderr, "\r\033[K");
      fmt::print("step {}: loss {:.4f}, validation loss {:.4f}\n", s.step, s.loss, *s.val_loss);
    }
    if (!a.checkpoint.empty() && a.save_every > 0 && s.step % a.save_every == 0 && s.step < until)
      trainer.save_checkpoint(checkpoint_file(a.checkpoint), run_json(a).dump());
  });
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (!a.checkpoint.empty()) {
    trainer.save_checkpoint(checkpoint_file(a.checkpoint), run_json(a).dump());
    fmt::print("checkpoint at step {}: {}\n", trainer.steps_done(), checkpoint_file(a.checkpoint));
  }
  if (trainer.steps_done() < a.tc.steps) {
    fmt::print("stopped at step {} of {}: continue with `lowbit {} --resume {}`\n",
               trainer.steps_done(), a.tc.steps, a.finetune ? "finetune" : "train", a.checkpoint);
    return 0;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (a.finetune) {  // the adapter: llama.cpp's GGUF LoRA layout
    const LoraAdapter ad =
        train::lora_adapter_of(layout, trainer.weights(), m.config.arch, a.tc.lora.alpha);
    write_lora_gguf(ad, a.out, {a.model});
    if (!a.peft.empty()) {
      write_lora_peft(ad, m.config, a.peft, a.model);
      fmt::print("PEFT adapter: {}\n", a.peft);
    }
    fmt::print("{} + LoRA -> {}: loss {:.4f}{}, {:.1f} s\n", name, a.out, last_loss,
               last_val ? fmt::format(", validation loss {:.4f}", *last_val) : "", seconds);
    return 0;
  }
  // The trained model: the initial file's configuration and tokenizer, the new weights.
  Model out;
  out.config = m.config, out.tokenizer = m.tokenizer, out.sources = m.sources;
  const std::vector<float>& w = trainer.weights();
  for (const train::ParamInfo& p : layout.params) {
    out.tensors.push_back({p.name, Format::parse("f32"), p.shape,
                           reinterpret_cast<const uint8_t*>(w.data() + p.offset),
                           uint64_t(p.size) * sizeof(float), false});
  }
  if (const ModelTensor* f = m.find("rope_freqs.weight")) out.tensors.push_back(*f);
  write_gguf(out, a.out, out_type);
  fmt::print("{} -> {} ({}): loss {:.4f}{}, {:.1f} s\n", name, a.out, a.type, last_loss,
             last_val ? fmt::format(", validation loss {:.4f}", *last_val) : "", seconds);
  return 0;
}

}  // namespace

namespace {

// The options `train` and `finetune` share: data, schedule, optimizer, checkpoints, threads.
void add_run_options(CLI::App* cmd, TrainArgs* a, double lr) {
  cmd->add_option("-f,--file", a->files,
                  "Training text (repeatable; tokenized with the model's "
                  "tokenizer)");
  cmd->add_option("--steps", a->tc.steps, "Optimizer steps (the schedule's length)")
      ->default_val(100);
  cmd->add_option("--stop-after", a->stop_after,
                  "Stop after this many steps, leaving a "
                  "checkpoint (needs --checkpoint)");
  cmd->add_option("--lr", a->tc.lr, "Peak learning rate")->default_val(lr);
  cmd->add_option("--batch", a->tc.batch, "Windows per micro-batch")->default_val(8);
  cmd->add_option("--ctx", a->tc.ctx, "Tokens per window")->default_val(128);
  cmd->add_option("--grad-accum", a->tc.grad_accum, "Micro-batches per step")->default_val(1);
  cmd->add_option("--optimizer", a->optimizer, "adamw or sgd")->default_str("adamw");
  cmd->add_option("--weight-decay", a->tc.optimizer.weight_decay,
                  a->finetune ? "Decoupled weight decay of the adapters"
                              : "Decoupled weight decay of the weight matrices (not norms, "
                                "biases, embedding)")
      ->default_val(0.0);
  cmd->add_option("--warmup", a->tc.warmup, "Linear warmup steps")->default_val(0);
  cmd->add_option("--schedule", a->schedule,
                  "After warmup: cosine, linear (both to 0) or "
                  "constant")
      ->default_str("cosine");
  cmd->add_option("--clip", a->tc.clip, "Clip the gradient's global norm (0: off)")
      ->default_val(1.0);
  cmd->add_option("--seed", a->tc.seed,
                  a->finetune ? "Seed of the windows drawn, the adapters' initialization and "
                                "dropout"
                              : "Seed of the windows drawn")
      ->default_val(1);
  cmd->add_option("--val", a->val, "Validation text");
  cmd->add_option("--val-split", a->val_split,
                  "Validate on this last fraction of the training "
                  "tokens instead (e.g. 0.05)");
  cmd->add_option("--eval-every", a->tc.eval_every,
                  "Validation loss every N steps (and at the end)");
  cmd->add_option("--val-windows", a->tc.val_windows, "At most this many validation windows")
      ->default_val(64);
  cmd->add_flag("--recompute", a->tc.recompute,
                "Keep only each layer's input and recompute its activations in the backward "
                "(less memory, about a third more arithmetic; the same result)");
  cmd->add_option("--replicas", a->tc.replicas,
                  "Threads that each take whole windows, with their own activations and "
                  "gradients (1: split every operation over the threads instead; 0: by the "
                  "model's size)")
      ->default_val(0);
  cmd->add_option("--checkpoint", a->checkpoint, "Checkpoint directory");
  cmd->add_option("--save-every", a->save_every, "Checkpoint every N steps (and at the end)");
  cmd->add_option("--resume", a->resume,
                  "Continue the run of this checkpoint directory (its "
                  "flags unless given again)");
  cmd->add_option("--json", a->json_log, "Log file: one JSON line per step");
  cmd->add_option("-t,--threads", a->threads, "Threads (default: all cores)");
}

}  // namespace

Runner add_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand(
      "train", "Train every tensor of a model in F32 on text (full fine-tuning), with checkpoints");
  cmd->add_option("-m,--model", a->model,
                  "Initial model (any file lowbit reads; quantized "
                  "weights are dequantized)");
  cmd->add_option("--shape", a->fresh.shape,
                  "A fresh model of this named shape (lowbit synth's list), seeded by --seed");
  cmd->add_option("--dim", a->fresh.dim, "Fresh model: width");
  cmd->add_option("--ff", a->fresh.ff, "Fresh model: feed-forward width");
  cmd->add_option("--layers", a->fresh.layers, "Fresh model: layers");
  cmd->add_option("--heads", a->fresh.heads, "Fresh model: attention heads");
  cmd->add_option("--kv-heads", a->fresh.kv_heads,
                  "Fresh model: key/value heads (default --heads)");
  cmd->add_option("--vocab", a->fresh.vocab,
                  "Fresh model: vocabulary size (the tokenizer's; needed for a llama2.c tok*.bin)");
  cmd->add_option("--tokenizer", a->fresh.tokenizer, "Fresh model: its tokenizer file");
  cmd->add_option("-o,--output", a->out, "Trained model (.gguf)");
  cmd->add_option("--type", a->type, "Weight matrices of the output: f32, f16 or bf16")
      ->default_str("f32");
  add_run_options(cmd, a.get(), 1e-3);
  return [a, cmd] { return run_train(*a, cmd); };
}

Runner add_finetune(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  a->finetune = true;
  CLI::App* cmd = app.add_subcommand(
      "finetune",
      "Train LoRA adapters on a frozen base of any format, kept as stored (QLoRA on a quantized "
      "GGUF): writes a GGUF adapter llama.cpp loads");
  cmd->add_option("-m,--model", a->model, "Base model (any file and format lowbit reads)");
  cmd->add_option("-o,--output", a->out, "Adapter (.gguf, llama.cpp's LoRA layout)");
  cmd->add_option("--lora-r", a->tc.lora.rank, "Adapter rank")->default_val(8);
  cmd->add_option("--lora-alpha", a->tc.lora.alpha,
                  "Adapter scale numerator: the update is alpha / r · B·A")
      ->default_val(16.0);
  cmd->add_option("--lora-dropout", a->tc.lora.dropout,
                  "Dropout on the adapters' input while training")
      ->default_val(0.0);
  cmd->add_option("--peft", a->peft,
                  "Also write the adapter for Hugging Face PEFT into this directory "
                  "(adapter_config.json, adapter_model.safetensors)");
  cmd->add_option("--lora-targets", a->lora_targets,
                  "all-linear, or a comma list of q,k,v,o,gate,up,down")
      ->default_str("all-linear");
  add_run_options(cmd, a.get(), 2e-4);
  return [a, cmd] { return run_train(*a, cmd); };
}

}  // namespace lowbit::cli
