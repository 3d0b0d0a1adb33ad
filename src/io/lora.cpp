// LoRA adapter files (lowbit/lora.h): GGUF in llama.cpp's layout.
#include "lowbit/lora.h"

#include <cblas.h>

#include <cstring>
#include <memory>

#include "io/gguf.h"
#include "lowbit/error.h"

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

}  // namespace

LoraAdapter read_lora(const std::string& path) {
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
