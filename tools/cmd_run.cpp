// `lowbit run -m MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--min-p P]
// [--repeat-penalty R] [--seed S] [-c CTX] [-t THREADS]`: generates text, streaming it to stdout
// as it comes; prompt and generation speed go to stderr at the end.
#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <random>

#include "commands.h"
#include "engine/llama.h"
#include "engine/sampler.h"
#include "engine/tokenizer.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/threads.h"

namespace lowbit::cli {

namespace {

// Bytes of s up to the last complete UTF-8 character (a token may end inside one).
size_t complete_utf8(const std::string& s) {
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (uint8_t(s[i - 1]) & 0xC0) == 0x80) --i, ++back;
  if (i == 0) return s.size();
  const uint8_t lead = uint8_t(s[i - 1]);
  const size_t need = lead < 0x80         ? 1
                      : (lead >> 5) == 6  ? 2
                      : (lead >> 4) == 14 ? 3
                      : (lead >> 3) == 30 ? 4
                                          : 1;
  return back + 1 >= need ? s.size() : i - 1;
}

bool ends_generation(const TokenizerData& d, int32_t id) {
  if (d.eos_id && uint32_t(id) == *d.eos_id) return true;
  const bool control =
      !d.token_types.empty() && d.token_types[size_t(id)] == int32_t(TokenType::kControl);
  return control && !(d.bos_id && uint32_t(id) == *d.bos_id);
}

}  // namespace

Runner add_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "Generate text from a prompt");
  struct Opts {
    std::string model, prompt, tokenizer;
    int64_t n_predict = 128, ctx = 0;
    int threads = 0;
    SamplerParams sp;
    std::optional<uint64_t> seed;
    LoraArgs lora;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("-m,--model", o->model,
                  "Model file (.gguf, llama2.c .bin, .safetensors or a "
                  "Hugging Face folder)")
      ->required();
  cmd->add_option("-p,--prompt", o->prompt, "Prompt (default: empty, generation starts at BOS)");
  cmd->add_option("-n,--n-predict", o->n_predict,
                  "Tokens to generate (stops early at "
                  "end-of-text)")
      ->check(CLI::Range(0, 1 << 30));
  cmd->add_option("-c,--ctx-size", o->ctx,
                  "Context length (default: the model's, at most "
                  "4096)")
      ->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--temp", o->sp.temperature, "Temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", o->sp.top_k, "Top-k; 0 = off")->capture_default_str();
  cmd->add_option("--top-p", o->sp.top_p, "Top-p (nucleus); 1 = off")->capture_default_str();
  cmd->add_option("--min-p", o->sp.min_p, "Min-p; 0 = off")->capture_default_str();
  cmd->add_option("--repeat-penalty", o->sp.repeat_penalty, "Repetition penalty; 1 = off")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", o->sp.repeat_last_n, "Tokens the penalty looks back")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Sampling seed (default: random, printed)");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer file (default: inside or beside the "
                  "model)");
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  add_lora_options(cmd, o->lora);
  return [o] {
    if (o->threads > 0) set_threads(o->threads);
    Model m = Model::load(o->model, {.tokenizer_path = o->tokenizer});
    attach_loras(m, o->lora);
    if (m.tokenizer.tokens.empty()) {
      throw Error("the model carries no tokenizer; pass one with --tokenizer",
                  {.file = o->model, .field = "tokenizer.ggml.tokens"});
    }
    const Tokenizer tok(m.tokenizer);
    const TokenizerData& d = m.tokenizer;
    const bool add_bos = d.add_bos.value_or(d.model == "llama") || o->prompt.empty();
    std::vector<int32_t> ids = tok.encode(o->prompt, add_bos && d.bos_id.has_value(), true);
    if (ids.empty()) {
      throw Error("nothing to start from: the prompt is empty and the model has no BOS token",
                  {.file = o->model, .field = "tokenizer.ggml.bos_token_id"});
    }
    const int64_t train = m.config.n_ctx_train > 0 ? m.config.n_ctx_train : 4096;
    const int64_t ctx = o->ctx > 0 ? o->ctx : std::min<int64_t>(train, 4096);
    if (int64_t(ids.size()) > ctx) {
      throw Error("context overflow: the prompt is " + std::to_string(ids.size()) +
                      " tokens, the context holds " + std::to_string(ctx) + " (raise -c)",
                  {.field = "--prompt",
                   .expected = "<= " + std::to_string(ctx) + " tokens",
                   .found = std::to_string(ids.size())});
    }
    o->sp.seed = o->seed ? *o->seed : std::random_device{}();
    Sampler sampler(o->sp);
    LlamaEngine engine(m, ctx);

    using clock = std::chrono::steady_clock;
    const size_t n_prompt = ids.size();
    fmt::print("{}", o->prompt);
    std::fflush(stdout);
    size_t printed = tok.decode(ids).size();
    const auto t0 = clock::now();
    const std::vector<float>* logits = &engine.eval(ids.data(), int64_t(ids.size()), 0);
    const auto t1 = clock::now();
    int64_t generated = 0, forwards = 0;  // generation speed = forward passes / their time
    bool stopped = false;
    for (; generated < o->n_predict; ++generated) {
      if (int64_t(ids.size()) >= ctx) {
        fmt::print(stderr, "\n[context full: {} tokens]", ctx);
        break;
      }
      const int32_t next = sampler.sample(logits->data(), m.config.n_vocab, ids);
      if (ends_generation(d, next)) {
        stopped = true;
        break;
      }
      ids.push_back(next);
      const std::string text = tok.decode(ids);
      const size_t upto = complete_utf8(text);
      if (upto > printed) {
        std::fwrite(text.data() + printed, 1, upto - printed, stdout);
        std::fflush(stdout);
        printed = upto;
      }
      if (generated + 1 < o->n_predict) {
        logits = &engine.forward(next, int64_t(ids.size()) - 1);
        ++forwards;
      }
    }
    const auto t2 = clock::now();
    const std::string text = tok.decode(ids);
    if (text.size() > printed) std::fwrite(text.data() + printed, 1, text.size() - printed, stdout);
    fmt::print("\n");
    std::fflush(stdout);
    const double pp = std::chrono::duration<double>(t1 - t0).count();
    const double tg = std::chrono::duration<double>(t2 - t1).count();
    fmt::print(stderr,
               "{}prompt: {} tokens, {:.1f} tokens/s | generation: {} tokens, {:.1f} "
               "tokens/s | seed {} | {} threads\n",
               stopped ? "[end of text]\n" : "", n_prompt, double(n_prompt) / pp, generated,
               forwards > 0 ? double(forwards) / tg : 0.0, o->sp.seed, max_threads());
    return 0;
  };
}

}  // namespace lowbit::cli
