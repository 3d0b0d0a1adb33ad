// Synthetic models: named shapes, argument checks, the synthetic vocabulary, and the streamed GGUF
// write. Each matrix is produced kChunkElems values at a time: rows generated and quantized in
// parallel into one chunk buffer, which goes straight to the file.
#include "io/synth.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>

#include "io/gguf.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/progress.h"
#include "lowbit/rng.h"
#include "lowbit/threads.h"
#include "quant/quantize.h"

namespace lowbit {

namespace {

struct NamedShape {
  const char* name;
  const char* title;  // general.name
  const char* arch;
  int64_t dim, ff, layers, heads, kv_heads, vocab, ctx;
  double rope_theta, rms_eps;
  bool tied, qkv_bias;
};

// The published configurations (config.json of each checkpoint).
constexpr NamedShape kShapes[] = {
    {"tinyllama-1.1b", "TinyLlama-1.1B", "llama", 2048, 5632, 22, 32, 4, 32000, 2048, 1e4, 1e-5,
     false, false},
    {"llama2-7b", "Llama-2-7B", "llama", 4096, 11008, 32, 32, 32, 32000, 4096, 1e4, 1e-5, false,
     false},
    {"llama3-8b", "Llama-3-8B", "llama", 4096, 14336, 32, 32, 8, 128256, 8192, 5e5, 1e-5, false,
     false},
    {"qwen2-0.5b", "Qwen2-0.5B", "qwen2", 896, 4864, 24, 14, 2, 151936, 32768, 1e6, 1e-6, true,
     true},
};

// Rows of a matrix are generated and quantized this many values at a time (small enough that
// the chunks of one matrix pipeline with the file writes, large enough to amortise threads).
constexpr int64_t kChunkElems = int64_t(1) << 20;

uint64_t mix64(uint64_t z) {  // splitmix64's finaliser: a bijection that scrambles every bit
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (char c : s) h = (h ^ uint8_t(c)) * 0x100000001B3ull;
  return h;
}

// x[0..n) ~ N(0, stddev²), Box-Muller on both outputs of each pair. One 64-bit draw gives two
// 24-bit uniforms; u1 in (0, 1] caps |z| at sqrt(48 ln 2) = 5.8 sigma (mass beyond: 7e-9).
void fill_normal(uint64_t seed, float stddev, float* x, int64_t n) {
  Rng rng(seed);
  constexpr float kTwoPi = 6.28318530717958647f;
  for (int64_t i = 0; i < n; i += 2) {
    const uint64_t u = rng.next_u64();
    const float u1 = float((u >> 40) + 1) * 0x1p-24f;          // (0, 1]
    const float u2 = float((u >> 16) & 0xFFFFFFu) * 0x1p-24f;  // [0, 1)
    const float r = stddev * std::sqrt(-2.0f * std::log(u1));
    x[i] = r * std::cos(kTwoPi * u2);
    if (i + 1 < n) x[i + 1] = r * std::sin(kTwoPi * u2);
  }
}

[[noreturn]] void bad_arg(const std::string& option, int64_t v, const std::string& expected) {
  throw Error("invalid synthetic model shape",
              {.field = option, .expected = expected, .found = std::to_string(v)});
}

// c with head_dim filled in (0 = n_embd / n_head) and rope style set by the architecture.
ModelConfig resolved(const ModelConfig& c) {
  validate_synth_config(c);
  ModelConfig r = c;
  if (r.head_dim == 0) r.head_dim = r.n_embd / r.n_head;
  r.rope_neox = r.arch == "qwen2";
  return r;
}

bool is_norm(const std::string& name) {
  return name.find("_norm.") != std::string::npos;
}

void set_metadata(GgufWriter& w, const ModelConfig& c, const SynthOptions& o) {
  const std::string a = c.arch + ".";
  auto u32 = [&](const std::string& k, int64_t v) {
    w.set(k, GgufValue::u32(checked_cast<uint32_t>(v, {.field = k})));
  };
  w.set("general.architecture", GgufValue::str(c.arch));
  w.set("general.name", GgufValue::str(c.name.empty() ? "synthetic" : c.name));
  u32(a + "vocab_size", c.n_vocab);
  u32(a + "context_length", c.n_ctx_train);
  u32(a + "embedding_length", c.n_embd);
  u32(a + "feed_forward_length", c.n_ff);
  u32(a + "block_count", c.n_layer);
  u32(a + "attention.head_count", c.n_head);
  u32(a + "attention.head_count_kv", c.n_head_kv);
  if (c.head_dim * c.n_head != c.n_embd) {
    u32(a + "attention.key_length", c.head_dim);
    u32(a + "attention.value_length", c.head_dim);
  }
  u32(a + "rope.dimension_count", c.head_dim);
  w.set(a + "rope.freq_base", GgufValue::f32(float(c.rope_theta)));
  w.set(a + "attention.layer_norm_rms_epsilon", GgufValue::f32(float(c.rms_eps)));
  w.set("general.quantization_version", GgufValue::u32(2));
  w.set("lowbit.synth.seed", GgufValue::str(std::to_string(o.seed)));
  w.set("lowbit.synth.stddev", GgufValue::f32(float(o.stddev)));
  w.set("lowbit.synth.type", GgufValue::str(o.type.name()));

  const TokenizerData t = synth_tokenizer(c.n_vocab);
  w.set("tokenizer.ggml.model", GgufValue::str(t.model));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(t.tokens));
  w.set("tokenizer.ggml.scores", GgufValue::f32_array(t.scores));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(t.token_types));
  w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(*t.bos_id));
  w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(*t.eos_id));
  w.set("tokenizer.ggml.unknown_token_id", GgufValue::u32(*t.unk_id));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(*t.add_bos));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(*t.add_eos));
}

// Streams tensor t: norms are ones, everything else N(0, stddev²) row by row (seeded per row).
// Two chunk buffers: the file write of one chunk (a copy into the page cache that blocks when
// writeback falls behind) overlaps the generation of the next.
void write_tensor(OutputFile& out, const SynthTensor& t, uint64_t seed, float stddev,
                  Progress* progress) {
  const int64_t K = t.shape.back(), rows = t.elements() / K;
  const uint64_t rb = t.to.row_bytes(K);
  const uint64_t key = mix64(seed ^ fnv1a(t.name));
  const bool ones = is_norm(t.name);
  const int64_t chunk_rows = std::clamp<int64_t>(kChunkElems / K, 1, rows);
  std::vector<uint8_t> bufs[2];
  for (auto& b : bufs) b.resize(size_t(checked_mul(uint64_t(chunk_rows), rb)));
  std::future<void> writing;
  for (int64_t r0 = 0, k = 0; r0 < rows; r0 += chunk_rows, ++k) {
    const int64_t n = std::min(chunk_rows, rows - r0);
    uint8_t* buf = bufs[k % 2].data();
    parallel_for(n, std::max<int64_t>(1, (int64_t(1) << 15) / K), [&](int64_t b, int64_t e) {
      std::vector<float> row(size_t(K), 1.0f);
      for (int64_t r = b; r < e; ++r) {
        if (!ones) fill_normal(mix64(key + uint64_t(r0 + r)), stddev, row.data(), K);
        t.to.quantize_row(row.data(), K, nullptr, buf + uint64_t(r) * rb);
      }
    });
    if (writing.valid()) writing.get();  // the other buffer is free again (rethrows errors)
    writing = std::async(std::launch::async,
                         [&out, buf, bytes = uint64_t(n) * rb] { out.write(buf, bytes); });
    if (progress) progress->advance(n * K);
  }
  if (writing.valid()) writing.get();
}

}  // namespace

const std::vector<std::string>& synth_shape_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const auto& s : kShapes) v.emplace_back(s.name);
    return v;
  }();
  return names;
}

ModelConfig synth_shape(std::string_view name) {
  for (const auto& s : kShapes) {
    if (name != s.name) continue;
    ModelConfig c;
    c.arch = s.arch, c.name = std::string(s.title) + " (synthetic weights)";
    c.n_embd = s.dim, c.n_ff = s.ff, c.n_layer = s.layers, c.n_head = s.heads;
    c.n_head_kv = s.kv_heads, c.n_vocab = s.vocab, c.n_ctx_train = s.ctx;
    c.head_dim = s.dim / s.heads;
    c.rope_theta = s.rope_theta, c.rms_eps = s.rms_eps;
    c.tied_output = s.tied, c.qkv_bias = s.qkv_bias, c.rope_neox = c.arch == "qwen2";
    return c;
  }
  std::string known;
  for (const auto& n : synth_shape_names()) known += (known.empty() ? "" : ", ") + n;
  throw Error("unknown model shape",
              {.field = "--shape", .expected = known, .found = std::string(name)});
}

void validate_synth_config(const ModelConfig& c) {
  constexpr int64_t kMaxDim = int64_t(1) << 20, kMaxLayers = 1024, kMaxVocab = int64_t(1) << 24;
  if (c.arch != "llama" && c.arch != "qwen2") {
    throw Error("unsupported architecture",
                {.field = "--arch", .expected = "llama or qwen2", .found = c.arch});
  }
  auto range = [](const char* opt, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi) bad_arg(opt, v, std::to_string(lo) + ".." + std::to_string(hi));
  };
  range("--dim", c.n_embd, 1, kMaxDim);
  range("--ff", c.n_ff, 1, kMaxDim);
  range("--layers", c.n_layer, 1, kMaxLayers);
  range("--heads", c.n_head, 1, kMaxDim);
  range("--kv-heads", c.n_head_kv, 1, c.n_head);
  range("--vocab", c.n_vocab, kSynthMinVocab, kMaxVocab);
  range("--ctx", c.n_ctx_train, 1, kMaxVocab);
  range("--head-dim", c.head_dim, 0, kMaxDim);
  if (c.n_head % c.n_head_kv != 0) {
    bad_arg("--kv-heads", c.n_head_kv, "a divisor of --heads " + std::to_string(c.n_head));
  }
  if (c.head_dim == 0 && c.n_embd % c.n_head != 0) {
    bad_arg("--heads", c.n_head,
            "a divisor of --dim " + std::to_string(c.n_embd) + " (or an explicit --head-dim)");
  }
  const int64_t hd = c.head_dim ? c.head_dim : c.n_embd / c.n_head;
  if (hd % 2 != 0) bad_arg("--head-dim", hd, "an even number (RoPE rotates pairs)");
  if (c.n_head * hd > kMaxDim) bad_arg("--heads", c.n_head, "heads x head_dim <= 2^20");
  if (!(c.rope_theta > 0) || !std::isfinite(c.rope_theta)) {
    throw Error(
        "invalid RoPE base",
        {.field = "--rope-theta", .expected = "> 0", .found = std::to_string(c.rope_theta)});
  }
}

TokenizerData synth_tokenizer(int64_t n_vocab) {
  LOWBIT_CHECK(n_vocab >= kSynthMinVocab, "synthetic vocabulary too small");
  TokenizerData t;
  t.model = "llama";
  t.tokens = {"<unk>", "<s>", "</s>"};
  t.token_types = {int32_t(TokenType::kUnknown), int32_t(TokenType::kControl),
                   int32_t(TokenType::kControl)};
  for (int b = 0; b < 256; ++b) {
    t.tokens.push_back(fmt::format("<0x{:02X}>", b));
    t.token_types.push_back(int32_t(TokenType::kByte));
  }
  for (int64_t i = kSynthMinVocab; i < n_vocab; ++i) {
    t.tokens.push_back("\xE2\x96\x81t" + std::to_string(i));  // "▁t<i>"
    t.token_types.push_back(int32_t(TokenType::kNormal));
  }
  t.scores.resize(size_t(n_vocab), 0.0f);
  for (int64_t i = kSynthMinVocab; i < n_vocab; ++i) t.scores[size_t(i)] = -float(i);
  t.bos_id = 1, t.eos_id = 2, t.unk_id = 0;
  t.add_bos = true, t.add_eos = false;
  t.byte_fallback = true;
  return t;
}

int64_t SynthTensor::elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n = checked_mul(n, uint64_t(d), {.field = name});
  return checked_cast<int64_t>(n, {.field = name});
}

std::vector<SynthTensor> synth_plan(const ModelConfig& config, const SynthOptions& o) {
  const ModelConfig c = resolved(config);
  if (o.type.info().activation_only || (o.output_type && o.output_type->info().activation_only)) {
    throw Error("format is for activations only, not weights",
                {.field = "--type",
                 .expected = "a weight format (lowbit formats)",
                 .found = o.type.name()});
  }
  const int64_t C = c.n_embd, Q = c.n_head * c.head_dim, KV = c.n_head_kv * c.head_dim;
  const std::string out_name = c.tied_output ? "token_embd.weight" : "output.weight";
  std::vector<SynthTensor> plan;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    Format want = shape.size() < 2 ? Format::parse("f32") : o.type;
    if (name == out_name && o.output_type) want = *o.output_type;
    const int64_t K = shape.back();
    const Format to = fallback_for(want, K, FallbackPolicy::kAuto);
    std::vector<int64_t> ne(shape.rbegin(), shape.rend());
    const uint64_t bytes = gguf_tensor_bytes(to, ne, {.field = name});
    plan.push_back({std::move(name), std::move(shape), want, to, bytes});
  };
  add("token_embd.weight", {c.n_vocab, C});
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {C});
    add(b + "attn_q.weight", {Q, C});
    if (c.qkv_bias) add(b + "attn_q.bias", {Q});
    add(b + "attn_k.weight", {KV, C});
    if (c.qkv_bias) add(b + "attn_k.bias", {KV});
    add(b + "attn_v.weight", {KV, C});
    if (c.qkv_bias) add(b + "attn_v.bias", {KV});
    add(b + "attn_output.weight", {C, Q});
    add(b + "ffn_norm.weight", {C});
    add(b + "ffn_gate.weight", {c.n_ff, C});
    add(b + "ffn_up.weight", {c.n_ff, C});
    add(b + "ffn_down.weight", {C, c.n_ff});
  }
  add("output_norm.weight", {C});
  if (!c.tied_output) add("output.weight", {c.n_vocab, C});
  return plan;
}

SynthResult write_synth_model(const ModelConfig& config, const std::string& path,
                              const SynthOptions& o) {
  const ModelConfig c = resolved(config);
  SynthResult res;
  res.tensors = synth_plan(c, o);
  GgufWriter w;
  set_metadata(w, c, o);
  bool private_types = false;
  for (const auto& t : res.tensors) {
    res.tensor_bytes = checked_add(res.tensor_bytes, t.bytes);
    res.parameters = int64_t(checked_add(uint64_t(res.parameters), uint64_t(t.elements())));
    private_types |= !t.to.is_ggml_type();
  }
  // Files holding lowbit's own formats say so (they load only in lowbit), as write_gguf does.
  if (private_types) w.set("lowbit.private_types", GgufValue::boolean(true));
  Progress progress("synth " + path, res.parameters);
  Progress* p = o.show_progress ? &progress : nullptr;
  const float stddev = float(o.stddev);
  for (const auto& t : res.tensors) {
    std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
    w.add_tensor(t.name, ne, t.to,
                 [&t, &o, stddev, p](OutputFile& out) { write_tensor(out, t, o.seed, stddev, p); });
  }
  w.write(path);
  return res;
}

}  // namespace lowbit
