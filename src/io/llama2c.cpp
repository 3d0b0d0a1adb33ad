// llama2.c checkpoint reader: header validation, size check, tensor views.
#include "io/llama2c.h"

#include <climits>
#include <cstring>

#include "lowbit/checked.h"
#include "lowbit/error.h"

namespace lowbit {

namespace {

constexpr int32_t kMaxDim = 1 << 20;  // sanity caps on header fields
constexpr int32_t kMaxLayers = 4096;

}  // namespace

Llama2cModel::Llama2cModel(const std::string& path) : file_(path) {
  constexpr uint64_t kHeaderBytes = 7 * sizeof(int32_t);
  if (file_.size() < kHeaderBytes) {
    throw Error("file too short for a llama2.c header",
                {.file = path, .field = "header", .offset = 0,
                 .expected = std::to_string(kHeaderBytes) + " bytes",
                 .found = std::to_string(file_.size()) + " bytes"});
  }
  int32_t h[7];
  std::memcpy(h, file_.data(), sizeof h);
  static const char* kNames[7] = {"dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads",
                                  "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i) {
    const int32_t v = i == 5 ? (h[i] == INT_MIN ? 0 : (h[i] < 0 ? -h[i] : h[i])) : h[i];
    const int32_t cap = i == 2 ? kMaxLayers : kMaxDim;
    if (v <= 0 || v > cap) {
      throw Error("invalid llama2.c header field",
                  {.file = path, .field = kNames[i], .offset = int64_t(4 * i),
                   .expected = "1.." + std::to_string(cap) + (i == 5 ? " (sign: classifier flag)" : ""),
                   .found = std::to_string(h[i])});
    }
  }
  cfg_ = {h[0], h[1], h[2], h[3], h[4], h[5] < 0 ? -h[5] : h[5], h[6], h[5] > 0};
  auto bad = [&](const char* field, int64_t off, std::string expected, int64_t found) {
    throw Error("inconsistent llama2.c header",
                {.file = path, .field = field, .offset = off, .expected = std::move(expected),
                 .found = std::to_string(found)});
  };
  if (cfg_.dim % cfg_.n_heads != 0) bad("n_heads", 12, "a divisor of dim", cfg_.n_heads);
  if (cfg_.n_heads % cfg_.n_kv_heads != 0) bad("n_kv_heads", 16, "a divisor of n_heads", cfg_.n_kv_heads);
  const uint64_t head = uint64_t(cfg_.dim / cfg_.n_heads);
  if (head % 2 != 0) bad("n_heads", 12, "an even head size", int64_t(head));

  const ErrorContext ctx{.file = path, .field = "tensor sizes"};
  const uint64_t dim = uint64_t(cfg_.dim), hid = uint64_t(cfg_.hidden_dim),
                 L = uint64_t(cfg_.n_layers), V = uint64_t(cfg_.vocab_size),
                 kv = checked_mul(head, uint64_t(cfg_.n_kv_heads), ctx);
  struct Spec {
    std::string name;
    uint64_t layers, rows, cols;
  };
  std::vector<Spec> specs = {
      {"token_embd.weight", 1, V, dim},      {"attn_norm.weight", L, 1, dim},
      {"attn_q.weight", L, dim, dim},        {"attn_k.weight", L, kv, dim},
      {"attn_v.weight", L, kv, dim},         {"attn_output.weight", L, dim, dim},
      {"ffn_norm.weight", L, 1, dim},        {"ffn_gate.weight", L, hid, dim},
      {"ffn_down.weight", L, dim, hid},      {"ffn_up.weight", L, hid, dim},
      {"output_norm.weight", 1, 1, dim},     {"", 2, uint64_t(cfg_.seq_len), head / 2},
  };
  if (!cfg_.shared_classifier) specs.push_back({"output.weight", 1, V, dim});
  uint64_t offset = kHeaderBytes;
  std::vector<std::pair<Spec, uint64_t>> placed;
  for (const auto& s : specs) {
    placed.push_back({s, offset});
    const uint64_t elems = checked_mul(checked_mul(s.layers, s.rows, ctx), s.cols, ctx);
    offset = checked_add(offset, checked_mul(elems, 4, ctx), ctx);
  }
  if (offset != file_.size()) {
    throw Error("file size does not match the llama2.c header",
                {.file = path, .field = "file size", .offset = int64_t(file_.size()),
                 .expected = std::to_string(offset) + " bytes",
                 .found = std::to_string(file_.size()) + " bytes"});
  }
  for (const auto& [s, off] : placed) {
    if (s.name.empty()) continue;  // RoPE tables: unused
    const uint64_t per_layer = s.rows * s.cols * 4;
    for (uint64_t l = 0; l < s.layers; ++l) {
      const bool global = s.name.rfind("token_embd", 0) == 0 || s.name.rfind("output", 0) == 0;
      tensors_.push_back({global ? s.name : "blk." + std::to_string(l) + "." + s.name,
                          int64_t(s.rows), int64_t(s.cols),
                          reinterpret_cast<const float*>(file_.data() + off + l * per_layer)});
    }
  }
}

}  // namespace lowbit
