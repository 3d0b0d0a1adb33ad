// Hugging Face checkpoints <-> Model: config.json, tensor names, the wq/wk RoPE permutation, and
// the tokenizer (files beside the checkpoint, or lowbit's own __metadata__ copy).
#include <cmath>
#include <limits>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/model_internal.h"
#include "io/safetensors.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"

namespace lowbit {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// GGUF name <-> Hugging Face name, per layer ("{}" = layer index).
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"attn_norm.weight", "input_layernorm.weight"},
    {"attn_q.weight", "self_attn.q_proj.weight"},
    {"attn_k.weight", "self_attn.k_proj.weight"},
    {"attn_v.weight", "self_attn.v_proj.weight"},
    {"attn_output.weight", "self_attn.o_proj.weight"},
    {"attn_q.bias", "self_attn.q_proj.bias"},
    {"attn_k.bias", "self_attn.k_proj.bias"},
    {"attn_v.bias", "self_attn.v_proj.bias"},
    {"ffn_norm.weight", "post_attention_layernorm.weight"},
    {"ffn_gate.weight", "mlp.gate_proj.weight"},
    {"ffn_up.weight", "mlp.up_proj.weight"},
    {"ffn_down.weight", "mlp.down_proj.weight"},
};
constexpr std::pair<const char*, const char*> kGlobalNames[] = {
    {"token_embd.weight", "model.embed_tokens.weight"},
    {"output_norm.weight", "model.norm.weight"},
    {"output.weight", "lm_head.weight"},
};

// Splits "<prefix><digits>.<rest>" into layer digits and rest; false if it does not match.
bool split_layer(const std::string& name, std::string_view prefix, std::string& layer,
                 std::string& rest) {
  if (name.rfind(prefix, 0) != 0) return false;
  const size_t dot = name.find('.', prefix.size());
  if (dot == std::string::npos || dot == prefix.size() || dot - prefix.size() > 6) return false;
  layer = name.substr(prefix.size(), dot - prefix.size());
  for (char ch : layer) {
    if (ch < '0' || ch > '9') return false;
  }
  rest = name.substr(dot + 1);
  return true;
}

// Maps a name between the two conventions; to_gguf picks the direction. "" when unknown.
std::string map_name(const std::string& name, bool to_gguf) {
  for (const auto& [g, h] : kGlobalNames) {
    if (name == (to_gguf ? h : g)) return to_gguf ? g : h;
  }
  std::string layer, rest;
  if (!split_layer(name, to_gguf ? "model.layers." : "blk.", layer, rest)) return "";
  for (const auto& [g, h] : kLayerNames) {
    if (rest == (to_gguf ? h : g)) {
      return to_gguf ? "blk." + layer + "." + g : "model.layers." + layer + "." + h;
    }
  }
  return "";
}

std::string hf_to_gguf(const std::string& hf) { return map_name(hf, true); }
std::string gguf_to_hf(const std::string& gg) { return map_name(gg, false); }

json read_json(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error("cannot open", {.file = path});
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    throw Error(std::string("malformed JSON: ") + e.what(), {.file = path});
  }
}

// A config value for an error message, cut short (a hostile file may hold megabytes there).
std::string brief(const json& v) {
  std::string s = v.dump();
  return s.size() > 80 ? s.substr(0, 80) + "..." : s;
}

int64_t cfg_int(const json& j, const char* key, const std::string& file, int64_t fallback = -1) {
  if (!j.contains(key) || j[key].is_null()) {
    if (fallback >= 0) return fallback;
    throw Error("required config key missing", {.file = file, .field = key});
  }
  if (!j[key].is_number_integer()) {
    throw Error("config value is not an integer", {.file = file, .field = key,
                                                   .found = brief(j[key])});
  }
  return j[key].get<int64_t>();
}

double cfg_float(const json& j, const char* key, double fallback, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_number()) {
    throw Error("config value is not a number", {.file = file, .field = key, .found = brief(j[key])});
  }
  return j[key].get<double>();
}

std::string cfg_string(const json& j, const char* key, const std::string& fallback,
                       const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_string()) {
    throw Error("config value is not a string", {.file = file, .field = key, .found = brief(j[key])});
  }
  return j[key].get<std::string>();
}

bool cfg_bool(const json& j, const char* key, bool fallback, const std::string& file) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) {
    throw Error("config value is not a boolean", {.file = file, .field = key, .found = brief(j[key])});
  }
  return j[key].get<bool>();
}

ModelConfig config_from_json(const json& j, const std::string& file) {
  if (!j.is_object()) throw Error("config.json is not a JSON object", {.file = file});
  ModelConfig c;
  const std::string type = cfg_string(j, "model_type", "llama", file);
  if (type == "llama" || type == "mistral") c.arch = "llama";
  else if (type == "qwen2") c.arch = "qwen2", c.qkv_bias = true, c.rope_neox = true;
  else throw Error("unsupported model_type", {.file = file, .field = "model_type",
                                              .expected = "llama, mistral or qwen2", .found = type});
  c.n_embd = cfg_int(j, "hidden_size", file);
  c.n_ff = cfg_int(j, "intermediate_size", file);
  c.n_layer = cfg_int(j, "num_hidden_layers", file);
  c.n_head = cfg_int(j, "num_attention_heads", file);
  c.n_head_kv = cfg_int(j, "num_key_value_heads", file, std::max<int64_t>(c.n_head, 0));
  c.n_vocab = cfg_int(j, "vocab_size", file);
  c.n_ctx_train = cfg_int(j, "max_position_embeddings", file, 0);
  if (c.n_head <= 0 || c.n_head_kv <= 0) {
    throw Error("attention head counts must be positive", {.file = file,
                .field = "num_attention_heads / num_key_value_heads",
                .found = std::to_string(c.n_head) + " / " + std::to_string(c.n_head_kv)});
  }
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = cfg_int(j, "head_dim", file);
  } else {
    if (c.n_embd % c.n_head != 0) {
      throw Error("hidden_size is not divisible by num_attention_heads (and no head_dim)",
                  {.file = file, .field = "hidden_size", .expected = "a multiple of " +
                   std::to_string(c.n_head), .found = std::to_string(c.n_embd)});
    }
    c.head_dim = c.n_embd / c.n_head;
  }
  c.rms_eps = cfg_float(j, "rms_norm_eps", 1e-6, file);
  c.rope_theta = cfg_float(j, "rope_theta", 10000.0, file);
  if (!(c.rms_eps > 0 && c.rms_eps < 1) || !(c.rope_theta > 0 && std::isfinite(c.rope_theta))) {
    throw Error("rms_norm_eps or rope_theta out of range", {.file = file,
                .field = "rms_norm_eps / rope_theta", .expected = "0 < eps < 1, theta > 0",
                .found = std::to_string(c.rms_eps) + " / " + std::to_string(c.rope_theta)});
  }
  c.tied_output = cfg_bool(j, "tie_word_embeddings", false, file);
  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& r = j["rope_scaling"];
    const std::string rt = cfg_string(r, "rope_type", cfg_string(r, "type", "", file), file);
    if (rt != "llama3") {
      throw Error("unsupported rope_scaling", {.file = file, .field = "rope_scaling.rope_type",
                                               .expected = "llama3 (or none)", .found = rt});
    }
    c.rope_factor = cfg_float(r, "factor", 8.0, file);
    c.rope_low_freq_factor = cfg_float(r, "low_freq_factor", 1.0, file);
    c.rope_high_freq_factor = cfg_float(r, "high_freq_factor", 4.0, file);
    c.rope_original_ctx = cfg_int(r, "original_max_position_embeddings", file, 8192);
  }
  c.name = cfg_string(j, "_name_or_path", "", file);
  return c;
}

json tokenizer_to_json(const TokenizerData& t) {
  json j = {{"model", t.model}, {"pre", t.pre}, {"tokens", t.tokens}, {"scores", t.scores},
            {"token_types", t.token_types}, {"merges", t.merges},
            {"byte_fallback", t.byte_fallback}};
  auto opt = [&](const char* k, const auto& v) { if (v) j[k] = *v; };
  opt("bos_id", t.bos_id), opt("eos_id", t.eos_id), opt("unk_id", t.unk_id);
  opt("pad_id", t.pad_id), opt("add_bos", t.add_bos), opt("add_eos", t.add_eos);
  opt("add_space_prefix", t.add_space_prefix);
  return j;
}

// lowbit's own copy of the tokenizer in safetensors __metadata__: untrusted like any input, so
// every number is range-checked before conversion and the result validated as a whole.
TokenizerData tokenizer_from_json(const std::string& text, const std::string& file) {
  const ErrorContext ctx{.file = file, .field = "__metadata__ lowbit.tokenizer"};
  auto bad = [&](const std::string& what) {
    ErrorContext c = ctx;
    c.field += " " + what;
    throw Error("invalid tokenizer metadata", c);
  };
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    bad(std::string("(") + e.what() + ")");
  }
  if (!j.is_object()) bad("(not an object)");
  auto str = [&](const char* k) -> std::string {
    if (!j.contains(k) || !j[k].is_string()) bad(k);
    return j[k].get<std::string>();
  };
  auto arr = [&](const char* k) -> const json& {
    if (!j.contains(k) || !j[k].is_array()) bad(k);
    return j[k];
  };
  TokenizerData t;
  t.model = str("model"), t.pre = str("pre");
  for (const auto& v : arr("tokens")) t.tokens.push_back(v.is_string() ? v.get<std::string>() : (bad("tokens"), ""));
  for (const auto& v : arr("merges")) t.merges.push_back(v.is_string() ? v.get<std::string>() : (bad("merges"), ""));
  for (const auto& v : arr("scores")) {
    const double d = v.is_number() ? v.get<double>() : (bad("scores"), 0.0);
    if (!(std::fabs(d) <= double(std::numeric_limits<float>::max()))) bad("scores");
    t.scores.push_back(float(d));
  }
  for (const auto& v : arr("token_types")) {
    if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 6) bad("token_types");
    t.token_types.push_back(int32_t(v.get<int64_t>()));
  }
  auto id = [&](const char* k, std::optional<uint32_t>& out) {
    if (!j.contains(k)) return;
    if (!j[k].is_number_unsigned() || j[k].get<uint64_t>() > UINT32_MAX) bad(k);
    out = uint32_t(j[k].get<uint64_t>());
  };
  auto flag = [&](const char* k, std::optional<bool>& out) {
    if (!j.contains(k)) return;
    if (!j[k].is_boolean()) bad(k);
    out = j[k].get<bool>();
  };
  id("bos_id", t.bos_id), id("eos_id", t.eos_id), id("unk_id", t.unk_id), id("pad_id", t.pad_id);
  flag("add_bos", t.add_bos), flag("add_eos", t.add_eos), flag("add_space_prefix", t.add_space_prefix);
  std::optional<bool> bf;
  flag("byte_fallback", bf);
  t.byte_fallback = bf.value_or(false);
  validate_tokenizer_data(t, file);
  return t;
}

Format format_of(const StTensor& t) {
  switch (t.dtype) {
    case StDtype::kF32: return Format::parse("f32");
    case StDtype::kF16: return Format::parse("f16");
    case StDtype::kBF16: return Format::parse("bf16");
    default:
      throw Error("unsupported tensor dtype for a model weight",
                  {.file = t.file, .field = t.name, .expected = "F32, F16 or BF16",
                   .found = std::string(st_dtype_name(t.dtype))});
  }
}

}  // namespace

Model load_hf_checkpoint(const std::string& path, const LoadOptions& opts) {
  const fs::path p(path);
  const fs::path dir = fs::is_directory(p) ? p : p.parent_path();
  const std::string cfg_path = (dir / "config.json").string();
  if (!fs::exists(cfg_path)) {
    throw Error("no config.json beside the safetensors checkpoint", {.file = path,
                .field = "config.json", .expected = (dir / "config.json").string()});
  }
  auto st = std::make_shared<SafetensorsModel>(path);
  Model m;
  m.owners.push_back(st);
  m.sources = st->files();
  m.sources.push_back(cfg_path);
  const json cfg_json = read_json(cfg_path);
  m.config = config_from_json(cfg_json, cfg_path);
  validate_config(m.config, cfg_path);
  if (m.config.name.empty()) m.config.name = fs::absolute(dir).lexically_normal().filename().string();
  ModelConfig& c = m.config;
  // Quantized checkpoints (GPTQ, AWQ, compressed-tensors): their linear layers come in as
  // lowbit tensors under the Hugging Face weight name, from the tensors they consume.
  HfQuantized quantized;
  if (const auto it = cfg_json.find("quantization_config");
      it != cfg_json.end() && !it->is_null()) {
    quantized = read_hf_quantized(*it, *st, cfg_path, m.owners);
    m.notes = quantized.notes;
  }
  for (const auto& t : quantized.tensors) {
    const std::string name = hf_to_gguf(t.name);
    if (name.empty()) {
      throw Error("quantized layer with no GGUF equivalent", {.file = cfg_path, .field = t.name,
                  .expected = "a LLaMA-family linear layer"});
    }
    ModelTensor g = t;
    g.name = name;
    m.tensors.push_back(std::move(g));
  }
  for (const auto& t : st->tensors()) {
    if (quantized.consumed.count(t.name)) continue;
    const std::string name = hf_to_gguf(t.name);
    if (name.empty()) {
      if (t.name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed
      throw Error("tensor with no GGUF equivalent", {.file = t.file, .field = t.name,
                  .expected = "a LLaMA-family tensor name"});
    }
    m.tensors.push_back({name, format_of(t), t.shape, t.data, t.bytes, true});
  }
  // Tied embeddings: one copy is stored, under either name (TinyStories-656K keeps lm_head).
  const bool has_emb = m.find("token_embd.weight") != nullptr;
  const bool has_out = m.find("output.weight") != nullptr;
  if (!has_emb && has_out) {
    for (auto& t : m.tensors) {
      if (t.name == "output.weight") t.name = "token_embd.weight";
    }
    c.tied_output = true;
  } else if (!has_out) {
    c.tied_output = true;
  } else if (c.tied_output) {
    std::erase_if(m.tensors, [](const ModelTensor& t) { return t.name == "output.weight"; });
  }
  c.qkv_bias = m.find("blk.0.attn_q.bias") != nullptr;
  // Q and K rows (and biases) from rotate-half to GGUF's interleaved pairs: converted copies.
  // Only the llama architecture: llama.cpp runs Qwen2 with NeoX (rotate-half) RoPE on the
  // checkpoint's own row order, so its GGUF keeps Hugging Face's layout.
  for (auto& t : m.tensors) {
    if (c.rope_neox) break;
    const bool q = t.name.find(".attn_q.") != std::string::npos;
    const bool k = t.name.find(".attn_k.") != std::string::npos;
    if (!q && !k) continue;
    const int64_t heads = q ? c.n_head : c.n_head_kv;
    const int64_t rows = t.shape[0];
    if (heads <= 0 || rows % heads != 0 || (rows / heads) % 2 != 0) {
      throw Error("Q/K rows do not split into heads of even size", {.file = path,
                  .field = t.name, .expected = "rows divisible by 2 x " + std::to_string(heads),
                  .found = std::to_string(rows)});
    }
    auto buf = std::make_shared<std::vector<uint8_t>>(t.bytes);
    permute_rows(t.data, buf->data(), rows, t.bytes / uint64_t(rows), heads, true);
    t.data = buf->data();
    t.mapped = false;
    m.owners.push_back(buf);
  }
  // Llama-3 frequency scaling travels in GGUF as a per-frequency factor tensor, as llama.cpp's
  // converter writes it: 1 for short wavelengths, `factor` for long ones, smooth in between.
  if (c.rope_factor > 0 && m.find("rope_freqs.weight") == nullptr) {
    auto f = std::make_shared<std::vector<float>>(size_t(c.head_dim / 2));
    const double low_wl = double(c.rope_original_ctx) / c.rope_low_freq_factor;
    const double high_wl = double(c.rope_original_ctx) / c.rope_high_freq_factor;
    for (int64_t i = 0; i < c.head_dim / 2; ++i) {
      const double freq = 1.0 / std::pow(c.rope_theta, double(2 * i) / double(c.head_dim));
      const double wl = 2 * M_PI / freq;
      double v = c.rope_factor;
      if (wl < high_wl) {
        v = 1.0;
      } else if (wl <= low_wl) {
        const double smooth = (double(c.rope_original_ctx) / wl - c.rope_low_freq_factor) /
                              (c.rope_high_freq_factor - c.rope_low_freq_factor);
        v = 1.0 / ((1 - smooth) / c.rope_factor + smooth);
      }
      (*f)[size_t(i)] = float(v);
    }
    m.tensors.push_back({"rope_freqs.weight", Format::parse("f32"), {c.head_dim / 2},
                         reinterpret_cast<const uint8_t*>(f->data()), uint64_t(f->size()) * 4});
    m.owners.push_back(f);
  }
  // Tokenizer: named, else lowbit's own copy in __metadata__, else the files beside it.
  const auto& meta = st->metadata();
  if (!opts.tokenizer_path.empty()) {
    m.tokenizer = load_tokenizer(opts.tokenizer_path, c.n_vocab);
    m.sources.push_back(opts.tokenizer_path);
  } else if (const auto it = meta.find("lowbit.tokenizer"); it != meta.end()) {
    m.tokenizer = tokenizer_from_json(it->second, st->files().front());
  } else if (const std::string tok = find_tokenizer_beside(path); !tok.empty()) {
    m.tokenizer = load_tokenizer(tok, c.n_vocab);
    m.sources.push_back(tok);
  }
  return m;
}

json hf_config_json(const Model& m, std::string_view torch_dtype) {
  const ModelConfig& c = m.config;
  json cfg = {{"architectures", {c.arch == "qwen2" ? "Qwen2ForCausalLM" : "LlamaForCausalLM"}},
              {"model_type", c.arch == "qwen2" ? "qwen2" : "llama"},
              {"hidden_size", c.n_embd}, {"intermediate_size", c.n_ff},
              {"num_hidden_layers", c.n_layer}, {"num_attention_heads", c.n_head},
              {"num_key_value_heads", c.n_head_kv}, {"head_dim", c.head_dim},
              {"vocab_size", c.n_vocab}, {"max_position_embeddings", c.n_ctx_train},
              {"rms_norm_eps", c.rms_eps}, {"rope_theta", c.rope_theta},
              {"tie_word_embeddings", c.tied_output}, {"hidden_act", "silu"},
              {"_name_or_path", c.name}, {"torch_dtype", std::string(torch_dtype)}};
  if (m.tokenizer.bos_id) cfg["bos_token_id"] = *m.tokenizer.bos_id;
  if (m.tokenizer.eos_id) cfg["eos_token_id"] = *m.tokenizer.eos_id;
  if (c.rope_factor > 0) {
    cfg["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", c.rope_factor},
                           {"low_freq_factor", c.rope_low_freq_factor},
                           {"high_freq_factor", c.rope_high_freq_factor},
                           {"original_max_position_embeddings", c.rope_original_ctx}};
  }
  return cfg;
}

std::string tokenizer_metadata(const TokenizerData& t) { return tokenizer_to_json(t).dump(); }

std::string hf_name_of(const std::string& gguf_name) { return gguf_to_hf(gguf_name); }

void write_safetensors(const Model& m, const std::string& path, const Format& float_type,
                       bool show_progress) {
  const ModelConfig& c = m.config;
  std::vector<StWriteTensor> out;
  for (const auto& t : m.tensors) {
    if (t.name == "rope_freqs.weight" && c.rope_factor > 0) continue;  // config.json carries it
    const auto fname = t.format.info().name;
    if (fname != "f32" && fname != "f16" && fname != "bf16") {
      throw Error("safetensors output holds float tensors only (quantized models go to GGUF)",
                  {.file = path, .field = t.name, .found = t.format.name()});
    }
    const std::string hf = gguf_to_hf(t.name);
    if (hf.empty()) throw Error("tensor with no Hugging Face name", {.file = path, .field = t.name});
    const Format to = t.shape.size() >= 2 ? float_type : Format::parse("f32");
    const StDtype dt = to.info().name == "f32" ? StDtype::kF32
                       : to.info().name == "f16" ? StDtype::kF16 : StDtype::kBF16;
    const bool q = t.name.find(".attn_q.") != std::string::npos;
    const bool k = t.name.find(".attn_k.") != std::string::npos;
    const int64_t heads = c.rope_neox ? 0 : q ? c.n_head : k ? c.n_head_kv : 0;
    out.push_back({hf, dt, t.shape, [&t, to, heads](OutputFile& f) {
      const int64_t K = t.row_length(), rows = t.rows();
      std::vector<float> x(size_t(rows * K)), y;
      t.format.dequantize(t.data, rows, K, x.data());
      if (heads > 0) {  // back to rotate-half
        y.resize(x.size());
        permute_qk_rows(x.data(), y.data(), rows, K, heads, false);
        x.swap(y);
      }
      std::vector<uint8_t> bytes(to.row_bytes(K) * uint64_t(rows));
      to.quantize(x.data(), rows, K, nullptr, bytes.data());
      f.write(bytes.data(), bytes.size());
    }});
  }
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (!m.tokenizer.tokens.empty()) meta["lowbit.tokenizer"] = tokenizer_metadata(m.tokenizer);
  // config.json beside the weights, for Hugging Face tooling and for reading it back.
  const json cfg = hf_config_json(m, float_type.info().name == "f32"   ? "float32"
                                     : float_type.info().name == "f16" ? "float16"
                                                                       : "bfloat16");
  const std::string cfg_path = (fs::path(path).parent_path() / "config.json").string();
  std::vector<std::string> inputs = m.sources;
  inputs.push_back(cfg_path);  // an input's config.json is never overwritten
  for (const auto& s : m.sources) {
    if (fs::path(s).filename() == "config.json" && same_file(s, cfg_path)) {
      throw Error("the output's config.json would overwrite the input's", {.file = cfg_path});
    }
  }
  (void)show_progress;  // the safetensors writer streams tensor by tensor without a bar
  write_safetensors(path, meta, out, m.sources);
  OutputFile cf(cfg_path, m.sources);
  const std::string text = cfg.dump(2) + "\n";
  cf.write(text.data(), text.size());
  cf.commit();
}

}  // namespace lowbit
