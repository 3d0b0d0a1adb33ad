// LoRA adapter files (lowbit/lora.h): GGUF in llama.cpp's layout.
#include "lowbit/lora.h"

#include <cblas.h>

#include <cstring>
#include <memory>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "io/gguf.h"
#include "io/safetensors.h"
#include "lowbit/error.h"
#include "lowbit/half.h"

namespace lowbit {

namespace {

constexpr const char* kSuffixA = ".lora_a";
constexpr const char* kSuffixB = ".lora_b";

// The tensor decoded to F32 (any format lowbit reads).
std::vector<float> decode(const GgufTensorInfo& t) {
  const int64_t K = t.ne[0], rows = t.elements() / std::max<int64_t>(1, K);
  std::vector<float> v(size_t(t.elements()));
  const uint64_t rb = t.format.row_bytes(K);
  for (int64_t r = 0; r < rows; ++r)
    t.format.dequantize_row(t.data + uint64_t(r) * rb, K, v.data() + r * K);
  return v;
}

// Hugging Face module <-> GGUF tensor of a layer's linear layers.
struct Module {
  const char* hf;    // under model.layers.{i}.
  const char* gguf;  // blk.{i}.<gguf>.weight
};
constexpr Module kModules[] = {{"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"},
                               {"self_attn.v_proj", "attn_v"}, {"self_attn.o_proj", "attn_output"},
                               {"mlp.gate_proj", "ffn_gate"},  {"mlp.up_proj", "ffn_up"},
                               {"mlp.down_proj", "ffn_down"}};

// Heads whose Q/K rows GGUF interleaves (0: none, the NeoX layout keeps Hugging Face's order).
int64_t permuted_heads(const ModelConfig& c, const std::string& gguf) {
  if (c.rope_neox) return 0;
  if (gguf == "attn_q") return c.n_head;
  if (gguf == "attn_k") return c.n_head_kv;
  return 0;
}

// B's rows (out, r) of a Q/K pair between the layouts.
std::vector<float> permuted(const std::vector<float>& b, int64_t out, int64_t r, int64_t heads,
                            bool to_gguf) {
  if (heads == 0) return b;
  std::vector<float> y(b.size());
  permute_qk_rows(b.data(), y.data(), out, r, heads, to_gguf);
  return y;
}

std::vector<float> st_floats(const StTensor& t) {
  const int64_t n = t.dtype == StDtype::kF32 ? int64_t(t.bytes / 4) : int64_t(t.bytes / 2);
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (t.dtype == StDtype::kF32) {
      std::memcpy(&v[size_t(i)], t.data + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, t.data + 2 * i, 2);
      v[size_t(i)] = t.dtype == StDtype::kF16 ? fp16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return v;
}

LoraAdapter read_peft(const std::filesystem::path& dir, const ModelConfig* model) {
  const std::string cfg_path = (dir / "adapter_config.json").string();
  const std::string st_path = (dir / "adapter_model.safetensors").string();
  if (model == nullptr) {
    throw Error("a PEFT adapter needs its base model to map names and Q/K rows",
                {.file = dir.string(), .field = "--lora"});
  }
  std::ifstream f(cfg_path);
  if (!f) throw Error("cannot open the PEFT adapter's config", {.file = cfg_path});
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const nlohmann::json::exception& e) {
    throw Error("PEFT adapter config is not valid JSON", {.file = cfg_path, .found = e.what()});
  }
  auto field = [&](const char* k) -> const nlohmann::json& {
    if (!j.is_object() || !j.contains(k))
      throw Error("PEFT adapter config lacks a field", {.file = cfg_path, .field = k});
    return j.at(k);
  };
  const nlohmann::json& type = field("peft_type");
  if (!type.is_string() || type.get<std::string>() != "LORA") {
    throw Error("not a LoRA adapter",
                {.file = cfg_path, .field = "peft_type", .expected = "LORA", .found = type.dump()});
  }
  const nlohmann::json& r = field("r");
  const nlohmann::json& alpha = field("lora_alpha");
  if (!r.is_number_integer() || r.get<int64_t>() <= 0)
    throw Error("LoRA rank must be a positive integer",
                {.file = cfg_path, .field = "r", .found = r.dump()});
  if (!alpha.is_number())
    throw Error("lora_alpha is not a number", {.file = cfg_path, .field = "lora_alpha"});
  // Optional flags: absent or null = false; anything but a boolean is refused (a json::value
  // default would throw json's own type_error on, say, a string).
  auto flag = [&](const char* k) {
    if (!j.contains(k) || j.at(k).is_null()) return false;
    if (!j.at(k).is_boolean()) {
      throw Error("PEFT adapter config value is not a boolean",
                  {.file = cfg_path, .field = k, .found = j.at(k).dump().substr(0, 40)});
    }
    return j.at(k).get<bool>();
  };
  if (flag("fan_in_fan_out"))
    throw Error("transposed (fan_in_fan_out) adapters are not supported",
                {.file = cfg_path, .field = "fan_in_fan_out"});
  LoraAdapter a;
  a.path = dir.string();
  a.arch = model->arch;
  a.alpha = float(alpha.get<double>());
  // rsLoRA scales by alpha / sqrt(r): the same as alpha sqrt(r) / r.
  if (flag("use_rslora")) a.alpha *= std::sqrt(float(r.get<int64_t>()));
  const SafetensorsFile st(st_path);
  std::map<std::string, std::pair<const StTensor*, const StTensor*>> ab;
  for (const StTensor& t : st.tensors()) {
    const std::string& n = t.name;
    const bool is_a = n.ends_with(".lora_A.weight"), is_b = n.ends_with(".lora_B.weight");
    const std::string prefix = "base_model.model.model.layers.";
    if ((!is_a && !is_b) || !n.starts_with(prefix)) {
      throw Error("PEFT tensor is not a LoRA matrix of a decoder layer",
                  {.file = st_path,
                   .field = n,
                   .offset = int64_t(st.offset_of(t)),
                   .expected = prefix + "{i}.<module>.lora_A.weight / lora_B.weight"});
    }
    if (t.shape.size() != 2 ||
        (t.dtype != StDtype::kF32 && t.dtype != StDtype::kF16 && t.dtype != StDtype::kBF16)) {
      throw Error("PEFT tensor is not a float matrix",
                  {.file = st_path,
                   .field = n,
                   .offset = int64_t(st.offset_of(t)),
                   .expected = "2 dimensions, F32 / F16 / BF16"});
    }
    // base_model.model.model.layers.{i}.<module>.lora_X.weight
    const std::string rest = n.substr(prefix.size(), n.size() - prefix.size() - 14);
    const size_t dot = rest.find('.');
    const std::string layer = rest.substr(0, dot), module = rest.substr(dot + 1);
    const Module* m = nullptr;
    for (const Module& x : kModules) {
      if (module == x.hf) m = &x;
    }
    int64_t li = -1;
    if (!layer.empty() && layer.size() < 7 &&
        layer.find_first_not_of("0123456789") == std::string::npos)
      li = std::stoll(layer);
    if (m == nullptr || li < 0 || li >= model->n_layer) {
      throw Error("PEFT tensor names no linear layer of this model",
                  {.file = st_path,
                   .field = n,
                   .offset = int64_t(st.offset_of(t)),
                   .expected = "layers 0.." + std::to_string(model->n_layer - 1) +
                               ", modules q/k/v/o_proj, gate/up/down_proj"});
    }
    auto& slot = ab["blk." + std::to_string(li) + "." + m->gguf + ".weight"];
    (is_a ? slot.first : slot.second) = &t;
  }
  for (const auto& [base, p] : ab) {
    if (!p.first || !p.second) {
      throw Error("PEFT pair is missing one of its tensors",
                  {.file = st_path, .field = (p.first ? p.first : p.second)->name});
    }
    const StTensor &ta = *p.first, &tb = *p.second;
    if (ta.shape[0] != tb.shape[1]) {
      throw Error(
          "PEFT pair's ranks disagree",
          {.file = st_path,
           .field = tb.name,
           .offset = int64_t(st.offset_of(tb)),
           .expected = "(out, " + std::to_string(ta.shape[0]) + ")",
           .found = "(" + std::to_string(tb.shape[0]) + ", " + std::to_string(tb.shape[1]) + ")"});
    }
    LoraPair q;
    q.rank = ta.shape[0], q.in = ta.shape[1], q.out = tb.shape[0];
    const std::string g = base.substr(base.find('.', 4) + 1, base.size() - base.find('.', 4) - 8);
    // The module's (in, out) in this model: another model's adapter stops here.
    const ModelConfig& c = *model;
    const int64_t C = c.n_embd, Q = c.n_head * c.head_dim, KV = c.n_head_kv * c.head_dim;
    const auto [in, out] = g == "attn_q"                      ? std::pair{C, Q}
                           : g == "attn_k" || g == "attn_v"   ? std::pair{C, KV}
                           : g == "attn_output"               ? std::pair{Q, C}
                           : g == "ffn_gate" || g == "ffn_up" ? std::pair{C, c.n_ff}
                                                              : std::pair{c.n_ff, C};
    if (q.in != in || q.out != out) {
      throw Error("PEFT adapter's shape does not match the model (another model?)",
                  {.file = st_path,
                   .field = q.in != in ? ta.name : tb.name,
                   .offset = int64_t(st.offset_of(q.in != in ? ta : tb)),
                   .expected = "in " + std::to_string(in) + ", out " + std::to_string(out),
                   .found = "in " + std::to_string(q.in) + ", out " + std::to_string(q.out)});
    }
    q.a = st_floats(ta);
    q.b = permuted(st_floats(tb), q.out, q.rank, permuted_heads(*model, g), true);
    a.pairs.emplace(base, std::move(q));
  }
  if (a.pairs.empty()) throw Error("PEFT adapter has no tensors", {.file = st_path});
  return a;
}

}  // namespace

void write_lora_peft(const LoraAdapter& a, const ModelConfig& c, const std::string& dir,
                     const std::string& base) {
  std::set<std::string> modules;
  int64_t rank = 0;
  std::vector<StWriteTensor> tensors;
  std::vector<std::shared_ptr<std::vector<float>>> keep;
  for (const auto& [name, p] : a.pairs) {
    // blk.{i}.<gguf>.weight
    const size_t d1 = name.find('.'), d2 = name.find('.', d1 + 1);
    const std::string layer = name.substr(d1 + 1, d2 - d1 - 1);
    const std::string g = name.substr(d2 + 1, name.size() - d2 - 1 - 7);
    const Module* m = nullptr;
    for (const Module& x : kModules) {
      if (g == x.gguf) m = &x;
    }
    if (m == nullptr || !name.starts_with("blk.")) {
      throw Error("no Hugging Face name for this adapter tensor", {.file = a.path, .field = name});
    }
    if (rank != 0 && p.rank != rank) {
      throw Error("a PEFT adapter has one rank", {.file = a.path,
                                                  .field = name,
                                                  .expected = std::to_string(rank),
                                                  .found = std::to_string(p.rank)});
    }
    rank = p.rank;
    const std::string mod = std::string(m->hf);
    modules.insert(mod.substr(mod.find('.') + 1));
    const std::string hf = "base_model.model.model.layers." + layer + "." + mod;
    auto b = std::make_shared<std::vector<float>>(
        permuted(p.b, p.out, p.rank, permuted_heads(c, g), false));
    keep.push_back(b);
    const LoraPair* q = &p;
    tensors.push_back({hf + ".lora_A.weight", StDtype::kF32, {p.rank, p.in}, [q](OutputFile& o) {
                         o.write(q->a.data(), q->a.size() * 4);
                       }});
    tensors.push_back({hf + ".lora_B.weight", StDtype::kF32, {p.out, p.rank}, [b](OutputFile& o) {
                         o.write(b->data(), b->size() * 4);
                       }});
  }
  std::filesystem::create_directories(dir);
  write_safetensors((std::filesystem::path(dir) / "adapter_model.safetensors").string(),
                    {{"format", "pt"}}, tensors, {});
  nlohmann::json j = {{"peft_type", "LORA"},
                      {"task_type", "CAUSAL_LM"},
                      {"r", rank},
                      {"lora_alpha", a.alpha},
                      {"lora_dropout", 0.0},
                      {"bias", "none"},
                      {"fan_in_fan_out", false},
                      {"inference_mode", true},
                      {"use_rslora", false},
                      {"target_modules", std::vector<std::string>(modules.begin(), modules.end())},
                      {"base_model_name_or_path", base}};
  OutputFile out((std::filesystem::path(dir) / "adapter_config.json").string());
  const std::string text = j.dump(2) + "\n";
  out.write(text.data(), text.size());
  out.commit();
}

LoraAdapter read_lora(const std::string& path, const ModelConfig* model) {
  const std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) return read_peft(p, model);
  if (p.filename() == "adapter_config.json" || p.filename() == "adapter_model.safetensors")
    return read_peft(p.parent_path(), model);
  const GgufFile g(path);
  LoraAdapter a;
  a.path = path;
  const std::string type = g.get_string("general.type", "");
  if (type != "adapter") {
    throw Error("not a LoRA adapter",
                {.file = path,
                 .field = "general.type",
                 .offset = g.has("general.type") ? g.key_offset("general.type") : -1,
                 .expected = "adapter",
                 .found = type.empty() ? "none" : type});
  }
  const std::string atype = g.get_string("adapter.type", "");
  if (atype != "lora") {
    throw Error("not a LoRA adapter",
                {.file = path,
                 .field = "adapter.type",
                 .offset = g.has("adapter.type") ? g.key_offset("adapter.type") : -1,
                 .expected = "lora",
                 .found = atype.empty() ? "none" : atype});
  }
  a.arch = g.get_string("general.architecture");
  a.alpha = float(g.get_float("adapter.lora.alpha", 0.0));
  // Pair the tensors by base name.
  std::map<std::string, std::pair<const GgufTensorInfo*, const GgufTensorInfo*>> ab;
  for (const GgufTensorInfo& t : g.tensors()) {
    const std::string& n = t.name;
    const bool is_a = n.ends_with(kSuffixA), is_b = n.ends_with(kSuffixB);
    if (!is_a && !is_b) {
      throw Error("LoRA tensor name lacks .lora_a / .lora_b",
                  {.file = path, .field = n, .offset = t.info_offset});
    }
    if (t.ne.size() != 2) {
      throw Error("LoRA tensor is not a matrix", {.file = path,
                                                  .field = n,
                                                  .offset = t.info_offset,
                                                  .expected = "2 dimensions",
                                                  .found = std::to_string(t.ne.size())});
    }
    auto& slot = ab[n.substr(0, n.size() - std::strlen(kSuffixA))];
    (is_a ? slot.first : slot.second) = &t;
  }
  for (const auto& [base, p] : ab) {
    const GgufTensorInfo* ta = p.first;
    const GgufTensorInfo* tb = p.second;
    if (!ta || !tb) {
      const GgufTensorInfo* t = ta ? ta : tb;
      throw Error("LoRA pair is missing one of its tensors",
                  {.file = path,
                   .field = base + (ta ? kSuffixB : kSuffixA),
                   .offset = t->info_offset,
                   .expected = "both " + base + ".lora_a and .lora_b"});
    }
    // A: ne [in, rank]; B: ne [rank, out].
    if (ta->ne[1] != tb->ne[0] || ta->ne[1] <= 0) {
      throw Error("LoRA pair's ranks disagree",
                  {.file = path,
                   .field = tb->name,
                   .offset = tb->info_offset,
                   .expected = "ne[0] = " + std::to_string(ta->ne[1]) + " (lora_a's rank)",
                   .found = std::to_string(tb->ne[0])});
    }
    LoraPair q;
    q.rank = ta->ne[1], q.in = ta->ne[0], q.out = tb->ne[1];
    q.a = decode(*ta), q.b = decode(*tb);
    a.pairs.emplace(base, std::move(q));
  }
  if (a.pairs.empty())
    throw Error("LoRA adapter has no tensors", {.file = path, .field = "tensors"});
  return a;
}

void write_lora_gguf(const LoraAdapter& a, const std::string& path,
                     const std::vector<std::string>& inputs) {
  GgufWriter w;
  w.set("general.architecture", GgufValue::str(a.arch));
  w.set("general.type", GgufValue::str("adapter"));
  w.set("general.name", GgufValue::str("lowbit LoRA"));
  w.set("adapter.type", GgufValue::str("lora"));
  w.set("adapter.lora.alpha", GgufValue::f32(a.alpha));
  const Format f32 = Format::parse("f32");
  for (const auto& [base, p] : a.pairs) {
    const LoraPair* q = &p;
    w.add_tensor(base + kSuffixA, {q->in, q->rank}, f32,
                 [q](OutputFile& out) { out.write(q->a.data(), q->a.size() * sizeof(float)); });
    w.add_tensor(base + kSuffixB, {q->rank, q->out}, f32,
                 [q](OutputFile& out) { out.write(q->b.data(), q->b.size() * sizeof(float)); });
  }
  w.write(path, inputs);
}

void check_lora(const LoraAdapter& a, const Model& m) {
  if (a.arch != m.config.arch) {
    throw Error("LoRA adapter is for another architecture", {.file = a.path,
                                                             .field = "general.architecture",
                                                             .expected = m.config.arch,
                                                             .found = a.arch});
  }
  for (const auto& [base, p] : a.pairs) {
    const ModelTensor* t = m.find(base);
    if (!t) {
      throw Error("LoRA adapter names a tensor the model does not have (another model?)",
                  {.file = a.path, .field = base + kSuffixA});
    }
    if (t->shape.size() != 2 || t->shape[0] != p.out || t->shape[1] != p.in) {
      throw Error("LoRA adapter's shape does not match the model's tensor (another model?)",
                  {.file = a.path,
                   .field = base,
                   .expected = std::to_string(t->shape[0]) + " x " +
                               std::to_string(t->shape.back()) + " (out x in)",
                   .found = std::to_string(p.out) + " x " + std::to_string(p.in)});
    }
  }
}

void merge_lora(Model& m, const LoraAdapter& a, float scale) {
  check_lora(a, m);
  for (const auto& [name, p] : a.pairs) {
    ModelTensor* t = nullptr;
    for (ModelTensor& x : m.tensors) {
      if (x.name == name) t = &x;
    }
    const int64_t K = t->row_length(), N = t->rows();
    auto w = std::make_shared<std::vector<float>>(size_t(N * K));
    const uint64_t rb = t->format.row_bytes(K);
    for (int64_t r = 0; r < N; ++r)
      t->format.dequantize_row(t->data + uint64_t(r) * rb, K, w->data() + r * K);
    // W (N, K) += s · B (N, r) · A (r, K).
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(N), int(K), int(p.rank),
                a.scale(p, scale), p.b.data(), int(p.rank), p.a.data(), int(K), 1.0f, w->data(),
                int(K));
    t->format = Format::parse("f32");
    t->data = reinterpret_cast<const uint8_t*>(w->data());
    t->bytes = uint64_t(N * K) * sizeof(float);
    t->mapped = false;
    m.owners.push_back(std::move(w));
  }
}

}  // namespace lowbit
