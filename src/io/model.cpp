// Model: loading from GGUF and llama2.c, validation against the configuration, writing GGUF.
// Hugging Face checkpoints are read in model_hf.cpp.
#include "lowbit/model.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "io/gguf.h"
#include "io/llama2c.h"
#include "io/model_internal.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/progress.h"

namespace lowbit {

namespace fs = std::filesystem;

int64_t ModelTensor::rows() const {
  int64_t r = 1;
  for (size_t i = 0; i + 1 < shape.size(); ++i) r *= shape[i];
  return r;
}

const ModelTensor* Model::find(std::string_view name) const {
  for (const auto& t : tensors) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

uint64_t Model::parameter_count() const {
  uint64_t n = 0;
  for (const auto& t : tensors) n += uint64_t(t.rows()) * uint64_t(t.row_length());
  return n;
}

namespace {

// ---- GGUF -----------------------------------------------------------------------------------

TokenizerData tokenizer_from_gguf(const GgufFile& g) {
  TokenizerData t;
  if (!g.has("tokenizer.ggml.model")) return t;
  t.model = g.get_string("tokenizer.ggml.model");
  t.pre = g.get_string("tokenizer.ggml.pre", "");
  t.tokens = g.get_string_array("tokenizer.ggml.tokens");
  if (g.has("tokenizer.ggml.scores")) t.scores = g.get_f32_array("tokenizer.ggml.scores");
  if (g.has("tokenizer.ggml.token_type"))
    t.token_types = g.get_i32_array("tokenizer.ggml.token_type");
  if (g.has("tokenizer.ggml.merges")) t.merges = g.get_string_array("tokenizer.ggml.merges");
  const auto n = t.tokens.size();
  auto id = [&](const char* key) -> std::optional<uint32_t> {
    if (!g.has(key)) return std::nullopt;
    const uint64_t v = g.get_uint(key);
    if (v == 0xFFFFFFFFu) return std::nullopt;  // llama.cpp's "none"
    if (v >= n) {
      throw Error("token id out of range", {.file = g.path(),
                                            .field = key,
                                            .offset = g.key_offset(key),
                                            .expected = "< " + std::to_string(n),
                                            .found = std::to_string(v)});
    }
    return uint32_t(v);
  };
  t.bos_id = id("tokenizer.ggml.bos_token_id");
  t.eos_id = id("tokenizer.ggml.eos_token_id");
  t.unk_id = id("tokenizer.ggml.unknown_token_id");
  t.pad_id = id("tokenizer.ggml.padding_token_id");
  if (g.has("tokenizer.ggml.add_bos_token"))
    t.add_bos = g.get_bool("tokenizer.ggml.add_bos_token", true);
  if (g.has("tokenizer.ggml.add_eos_token"))
    t.add_eos = g.get_bool("tokenizer.ggml.add_eos_token", false);
  if (g.has("tokenizer.ggml.add_space_prefix")) {
    t.add_space_prefix = g.get_bool("tokenizer.ggml.add_space_prefix", true);
  }
  auto field_size = [&](const char* key, size_t have) {
    if (have != 0 && have != n) {
      throw Error("tokenizer array of the wrong length",
                  {.file = g.path(),
                   .field = key,
                   .offset = g.key_offset(key),
                   .expected = std::to_string(n) + " (one per token)",
                   .found = std::to_string(have)});
    }
  };
  field_size("tokenizer.ggml.scores", t.scores.size());
  field_size("tokenizer.ggml.token_type", t.token_types.size());
  validate_tokenizer_data(t, g.path());
  for (int32_t tt : t.token_types) t.byte_fallback |= tt == int32_t(TokenType::kByte);
  return t;
}

Model load_gguf(const std::string& path) {
  auto g = std::make_shared<GgufFile>(path);
  Model m;
  m.owners.push_back(g);
  m.sources.push_back(path);
  ModelConfig& c = m.config;
  if (g->get_string("general.type", "model") == "adapter") {
    throw Error("this is an adapter, not a model: apply it to its base with --lora",
                {.file = path,
                 .field = "general.type",
                 .offset = g->key_offset("general.type"),
                 .expected = "model",
                 .found = "adapter"});
  }
  c.arch = g->get_string("general.architecture");
  if (c.arch != "llama" && c.arch != "qwen2") {
    throw Error("unsupported architecture", {.file = path,
                                             .field = "general.architecture",
                                             .offset = g->key_offset("general.architecture"),
                                             .expected = "llama or qwen2",
                                             .found = c.arch});
  }
  c.rope_neox = c.arch == "qwen2";
  const std::string a = c.arch + ".";
  c.name = g->get_string("general.name", "");
  c.n_embd = int64_t(g->get_uint(a + "embedding_length"));
  c.n_ff = int64_t(g->get_uint(a + "feed_forward_length"));
  c.n_layer = int64_t(g->get_uint(a + "block_count"));
  c.n_head = int64_t(g->get_uint(a + "attention.head_count"));
  c.n_head_kv = int64_t(g->get_uint(a + "attention.head_count_kv", uint64_t(c.n_head)));
  c.n_ctx_train = int64_t(g->get_uint(a + "context_length", 0));
  c.rms_eps = g->get_float(a + "attention.layer_norm_rms_epsilon", 1e-5);
  c.rope_theta = g->get_float(a + "rope.freq_base", 10000.0);
  c.head_dim = c.n_head > 0
                   ? int64_t(g->get_uint(a + "attention.key_length", uint64_t(c.n_embd / c.n_head)))
                   : 0;
  m.tokenizer = tokenizer_from_gguf(*g);
  for (const auto& t : g->tensors()) {
    m.tensors.push_back({t.name, t.format, std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()), t.data,
                         t.bytes, true});
  }
  const ModelTensor* emb = m.find("token_embd.weight");
  c.n_vocab =
      int64_t(g->get_uint(a + "vocab_size", !m.tokenizer.tokens.empty() ? m.tokenizer.tokens.size()
                                            : emb                       ? uint64_t(emb->shape[0])
                                                                        : 0));
  c.tied_output = m.find("output.weight") == nullptr;
  c.qkv_bias = m.find("blk.0.attn_q.bias") != nullptr;
  return m;
}

// ---- llama2.c -------------------------------------------------------------------------------

Model load_llama2c(const std::string& path, const LoadOptions& opts) {
  auto l = std::make_shared<Llama2cModel>(path);
  Model m;
  m.owners.push_back(l);
  m.sources.push_back(path);
  const Llama2cConfig& lc = l->config();
  ModelConfig& c = m.config;
  c.name = fs::path(path).stem().string();
  c.n_vocab = lc.vocab_size, c.n_embd = lc.dim, c.n_ff = lc.hidden_dim, c.n_layer = lc.n_layers;
  c.n_head = lc.n_heads, c.n_head_kv = lc.n_kv_heads, c.head_dim = lc.dim / lc.n_heads;
  c.n_ctx_train = lc.seq_len;
  c.rms_eps = 1e-5, c.rope_theta = 10000.0;  // llama2.c's fixed values
  c.tied_output = lc.shared_classifier;
  for (const auto& t : l->tensors()) {
    std::vector<int64_t> shape =
        t.rows == 1 ? std::vector<int64_t>{t.cols} : std::vector<int64_t>{t.rows, t.cols};
    m.tensors.push_back({t.name, Format::parse("f32"), shape,
                         reinterpret_cast<const uint8_t*>(t.data), uint64_t(t.rows * t.cols) * 4,
                         true});
  }
  const std::string tok =
      !opts.tokenizer_path.empty() ? opts.tokenizer_path : find_tokenizer_beside(path);
  if (tok.empty()) {
    throw Error(
        "no tokenizer found beside the llama2.c checkpoint",
        {.file = path,
         .field = "tokenizer",
         .expected = "tokenizer.bin / tok*.bin / tokenizer.model beside it, or --tokenizer"});
  }
  m.tokenizer = load_tokenizer(tok, c.n_vocab);
  m.sources.push_back(tok);
  return m;
}

bool has_gguf_magic(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  char magic[4] = {};
  return f.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

void fail_config(const std::string& file, const std::string& field, int64_t v,
                 const std::string& expected) {
  throw Error("invalid model configuration",
              {.file = file, .field = field, .expected = expected, .found = std::to_string(v)});
}

void validate_tokenizer(const TokenizerData& t, int64_t n_vocab, const std::string& file) {
  if (t.tokens.empty()) return;
  if (int64_t(t.tokens.size()) != n_vocab) {
    throw Error("tokenizer size differs from the model's vocabulary",
                {.file = file,
                 .field = "tokenizer.ggml.tokens",
                 .expected = std::to_string(n_vocab),
                 .found = std::to_string(t.tokens.size())});
  }
  validate_tokenizer_data(t, file);
}

// Canonical tensor order: token_embd, then each layer's tensors in layer order, then
// output_norm and output (stable within a layer), as llama.cpp's converters write them.
void sort_canonical(std::vector<ModelTensor>& tensors) {
  auto rank = [](const std::string& n) -> int64_t {
    if (n.rfind("token_embd", 0) == 0) return -1;
    if (n.rfind("blk.", 0) == 0) return std::atoll(n.c_str() + 4);
    return int64_t(1) << 40;
  };
  std::stable_sort(tensors.begin(), tensors.end(), [&](const ModelTensor& a, const ModelTensor& b) {
    return rank(a.name) < rank(b.name);
  });
}

}  // namespace

void validate_config(const ModelConfig& c, const std::string& file) {
  constexpr int64_t kMaxLayers = 1024, kMaxVocab = int64_t(1) << 24, kMaxDim = int64_t(1) << 20;
  auto range = [&](const char* f, int64_t v, int64_t hi) {
    if (v < 1 || v > hi) fail_config(file, f, v, "1.." + std::to_string(hi));
  };
  range("block_count", c.n_layer, kMaxLayers);
  range("vocab_size", c.n_vocab, kMaxVocab);
  range("embedding_length", c.n_embd, kMaxDim);
  range("feed_forward_length", c.n_ff, kMaxDim);
  range("head_count", c.n_head, c.n_embd);
  range("head_count_kv", c.n_head_kv, c.n_head);
  range("head_dim", c.head_dim, kMaxDim);
  if (c.n_head % c.n_head_kv != 0) {
    fail_config(file, "head_count_kv", c.n_head_kv,
                "a divisor of head_count " + std::to_string(c.n_head));
  }
  if (c.head_dim % 2 != 0) fail_config(file, "head_dim", c.head_dim, "an even number (RoPE pairs)");
}

void validate_model(const Model& m, const std::string& file) {
  const ModelConfig& c = m.config;
  validate_config(c, file);
  validate_tokenizer(m.tokenizer, c.n_vocab, file);
  const int64_t q = c.n_head * c.head_dim, kv = c.n_head_kv * c.head_dim;
  auto expect = [&](const std::string& name, std::vector<int64_t> shape, bool required) {
    const ModelTensor* t = m.find(name);
    if (!t) {
      if (required) throw Error("required tensor missing", {.file = file, .field = name});
      return;
    }
    if (t->shape != shape) {
      auto str = [](const std::vector<int64_t>& s) {
        std::string r = "(";
        for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
        return r + ")";
      };
      throw Error("tensor shape disagrees with the model configuration",
                  {.file = file, .field = name, .expected = str(shape), .found = str(t->shape)});
    }
  };
  expect("token_embd.weight", {c.n_vocab, c.n_embd}, true);
  expect("output_norm.weight", {c.n_embd}, true);
  expect("output.weight", {c.n_vocab, c.n_embd}, !c.tied_output);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    expect(b + "attn_norm.weight", {c.n_embd}, true);
    expect(b + "attn_q.weight", {q, c.n_embd}, true);
    expect(b + "attn_k.weight", {kv, c.n_embd}, true);
    expect(b + "attn_v.weight", {kv, c.n_embd}, true);
    expect(b + "attn_output.weight", {c.n_embd, q}, true);
    expect(b + "ffn_norm.weight", {c.n_embd}, true);
    expect(b + "ffn_gate.weight", {c.n_ff, c.n_embd}, true);
    expect(b + "ffn_up.weight", {c.n_ff, c.n_embd}, true);
    expect(b + "ffn_down.weight", {c.n_embd, c.n_ff}, true);
    expect(b + "attn_q.bias", {q}, c.qkv_bias);
    expect(b + "attn_k.bias", {kv}, c.qkv_bias);
    expect(b + "attn_v.bias", {kv}, c.qkv_bias);
  }
}

TokenizerData load_gguf_tokenizer(const std::string& path) {
  GgufFile g(path);
  TokenizerData t = tokenizer_from_gguf(g);
  if (t.tokens.empty())
    throw Error("GGUF holds no tokenizer", {.file = path, .field = "tokenizer.ggml.tokens"});
  return t;
}

Model Model::load(const std::string& path, const LoadOptions& opts) {
  if (!fs::exists(path)) throw Error("no such file or directory", {.file = path});
  Model m;
  const std::string ext = fs::path(path).extension().string();
  if (fs::is_directory(path) || ext == ".safetensors" || ext == ".json") {
    m = load_hf_checkpoint(path, opts);
  } else if (has_gguf_magic(path)) {
    m = load_gguf(path);
    if (!opts.tokenizer_path.empty()) {
      m.tokenizer = load_tokenizer(opts.tokenizer_path, m.config.n_vocab);
      m.sources.push_back(opts.tokenizer_path);
    }
  } else {
    m = load_llama2c(path, opts);
  }
  validate_model(m, path);
  sort_canonical(m.tensors);
  return m;
}

}  // namespace lowbit
