// A tiny valid LLaMA model in every input format lowbit reads, built in code (no fixtures): the
// fuzzers' fixed companion files (config.json, model.safetensors, tokenizer.json, tokenizer.bin)
// and the seed generator's valid seeds. Shape: hidden 8, intermediate 16, 1 layer, 2 heads and
// 2 KV heads (head dim 4), vocabulary 4 (<unk>, <s>, </s>, "a"), context 32, float32 weights.
// These writers are deliberately independent of lowbit's own writers.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace fuzz::tiny {

inline constexpr int64_t kHidden = 8, kFf = 16, kLayers = 1, kHeads = 2, kKvHeads = 2, kVocab = 4,
                         kCtx = 32;
inline const char* const kTokens[kVocab] = {"<unk>", "<s>", "</s>", "a"};

// A weight of `n` floats with small, distinct, exactly representable values.
inline std::vector<float> weights(int64_t n, int64_t seed) {
  std::vector<float> w(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) w[size_t(i)] = float((i * 7 + seed * 3) % 17 - 8) / 16.0f;
  return w;
}

struct Named {
  std::string name;
  std::vector<int64_t> shape;  // outermost first
};

// Hugging Face names and shapes (outermost first), in storage order.
inline std::vector<Named> hf_tensors(bool with_lm_head = true) {
  const int64_t q = kHeads * (kHidden / kHeads), kv = kKvHeads * (kHidden / kHeads);
  std::vector<Named> t = {{"model.embed_tokens.weight", {kVocab, kHidden}}};
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back({p + "input_layernorm.weight", {kHidden}});
    t.push_back({p + "self_attn.q_proj.weight", {q, kHidden}});
    t.push_back({p + "self_attn.k_proj.weight", {kv, kHidden}});
    t.push_back({p + "self_attn.v_proj.weight", {kv, kHidden}});
    t.push_back({p + "self_attn.o_proj.weight", {kHidden, q}});
    t.push_back({p + "post_attention_layernorm.weight", {kHidden}});
    t.push_back({p + "mlp.gate_proj.weight", {kFf, kHidden}});
    t.push_back({p + "mlp.up_proj.weight", {kFf, kHidden}});
    t.push_back({p + "mlp.down_proj.weight", {kHidden, kFf}});
  }
  t.push_back({"model.norm.weight", {kHidden}});
  if (with_lm_head) t.push_back({"lm_head.weight", {kVocab, kHidden}});
  return t;
}

inline int64_t elements(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

inline void put_bytes(std::string& out, const void* p, size_t n) {
  out.append(static_cast<const char*>(p), n);
}
template <typename T>
void put(std::string& out, T v) {
  put_bytes(out, &v, sizeof v);  // little-endian host (x86-64)
}

// safetensors: u64 header length, JSON header padded with spaces to a multiple of 8, F32 data.
inline std::string safetensors(const std::vector<Named>& tensors,
                               const std::string& metadata = "{\"format\":\"pt\"}") {
  std::string header = "{\"__metadata__\":" + metadata;
  std::string data;
  int64_t seed = 0;
  for (const auto& t : tensors) {
    const auto w = weights(elements(t.shape), seed++);
    const size_t begin = data.size();
    put_bytes(data, w.data(), w.size() * 4);
    header += ",\"" + t.name + "\":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      header += (i ? "," : "") + std::to_string(t.shape[i]);
    }
    header +=
        "],\"data_offsets\":[" + std::to_string(begin) + "," + std::to_string(data.size()) + "]}";
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::string out;
  put<uint64_t>(out, header.size());
  return out + header + data;
}

inline std::string config_json() {
  return R"({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 8,
 "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
 "num_key_value_heads": 2, "vocab_size": 4, "max_position_embeddings": 32,
 "rms_norm_eps": 1e-06, "rope_theta": 10000.0, "tie_word_embeddings": false,
 "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32"}
)";
}

inline std::string tokenizer_json() {
  return R"({"version": "1.0",
 "added_tokens": [{"id": 0, "content": "<unk>", "special": true},
                  {"id": 1, "content": "<s>", "special": true},
                  {"id": 2, "content": "</s>", "special": true}],
 "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
 "pre_tokenizer": null,
 "model": {"type": "BPE", "unk_token": "<unk>", "byte_fallback": false,
           "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "a": 3}, "merges": []},
 "decoder": null}
)";
}

inline std::string tokenizer_config_json() {
  return R"({"add_bos_token": true, "add_eos_token": false, "bos_token": "<s>",
 "eos_token": {"content": "</s>"}, "unk_token": "<unk>", "pad_token": null}
)";
}

// llama2.c tokenizer.bin: i32 max token length, then per token (f32 score, i32 length, bytes).
inline std::string tokenizer_bin() {
  const char* raw[kVocab] = {"<unk>", "\n<s>\n", "\n</s>\n", "a"};
  std::string out;
  put<int32_t>(out, 6);
  for (int i = 0; i < kVocab; ++i) {
    put<float>(out, float(-i));
    put<int32_t>(out, int32_t(std::strlen(raw[i])));
    out += raw[i];
  }
  return out;
}

// llama2.c checkpoint: 7 x i32 header (vocab negative = unshared classifier), then f32 weights
// in llama2.c's order, the two RoPE tables (seq_len x head/2 each), then the classifier.
inline std::string llama2c(int32_t seq_len = 4, bool shared = true) {
  const int64_t head = kHidden / kHeads, kv = kKvHeads * head;
  std::string out;
  for (int32_t v : {int32_t(kHidden), int32_t(kFf), int32_t(kLayers), int32_t(kHeads),
                    int32_t(kKvHeads), int32_t(shared ? kVocab : -kVocab), seq_len}) {
    put(out, v);
  }
  const int64_t counts[] = {kVocab * kHidden,
                            kLayers * kHidden,
                            kLayers * kHidden * kHidden,
                            kLayers * kv * kHidden,
                            kLayers * kv * kHidden,
                            kLayers * kHidden * kHidden,
                            kLayers * kHidden,
                            kLayers * kFf * kHidden,
                            kLayers * kHidden * kFf,
                            kLayers * kFf * kHidden,
                            kHidden,
                            2 * seq_len * (head / 2),
                            shared ? 0 : kVocab * kHidden};
  int64_t seed = 0;
  for (int64_t n : counts) {
    const auto w = weights(n, seed++);
    put_bytes(out, w.data(), w.size() * 4);
  }
  return out;
}

// Protobuf encoding, enough for a SentencePiece ModelProto.
inline void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += char(uint8_t(v) | 0x80);
    v >>= 7;
  }
  out += char(v);
}
inline void pb_len(std::string& out, uint32_t field, const std::string& body) {
  varint(out, (uint64_t(field) << 3) | 2);
  varint(out, body.size());
  out += body;
}
inline void pb_varint(std::string& out, uint32_t field, uint64_t v) {
  varint(out, uint64_t(field) << 3);
  varint(out, v);
}
inline void pb_float(std::string& out, uint32_t field, float f) {
  varint(out, (uint64_t(field) << 3) | 5);
  put(out, f);
}

// ModelProto { pieces = 1 { piece = 1, score = 2, type = 3 }, trainer_spec = 2 { model_type = 3,
// vocab_size = 4, byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43 },
// normalizer_spec = 3 { name = 1, add_dummy_prefix = 3 } }. Pieces include one byte piece.
inline std::string sentencepiece_model() {
  const std::pair<const char*, int> pieces[] = {{"<unk>", 2},  {"<s>", 3},     {"</s>", 3},
                                                {"<0x0A>", 6}, {"\u2581a", 1}, {"a", 1}};
  std::string out;
  float score = 0;
  for (const auto& [text, type] : pieces) {
    std::string p;
    pb_len(p, 1, text);
    pb_float(p, 2, score);
    score -= 1;
    pb_varint(p, 3, uint64_t(type));
    pb_len(out, 1, p);
  }
  std::string trainer;
  pb_varint(trainer, 3, 2);  // BPE
  pb_varint(trainer, 4, 6);
  pb_varint(trainer, 35, 1);
  pb_varint(trainer, 40, 0);
  pb_varint(trainer, 41, 1);
  pb_varint(trainer, 42, 2);
  pb_varint(trainer, 43, uint64_t(int64_t(-1)));  // negative int32: 10-byte varint
  pb_len(out, 2, trainer);
  std::string norm;
  pb_len(norm, 1, "identity");
  pb_varint(norm, 3, 1);
  pb_len(out, 3, norm);
  return out;
}

// GGUF v3 writer, enough for seeds: typed metadata, tensor infos, aligned data.
class Gguf {
 public:
  explicit Gguf(size_t align = 32) : align_(align) {}
  void kv_str(const std::string& k, const std::string& v) { key(k, 8), str(meta_, v); }
  void kv_u32(const std::string& k, uint32_t v) { key(k, 4), put(meta_, v); }
  void kv_f32(const std::string& k, float v) { key(k, 6), put(meta_, v); }
  void kv_bool(const std::string& k, bool v) { key(k, 7), put<uint8_t>(meta_, v); }
  void kv_str_array(const std::string& k, const std::vector<std::string>& v) {
    key(k, 9), put<uint32_t>(meta_, 8), put<uint64_t>(meta_, v.size());
    for (const auto& s : v) str(meta_, s);
  }
  template <typename T>
  void kv_array(const std::string& k, uint32_t elem_type, const std::vector<T>& v) {
    key(k, 9), put<uint32_t>(meta_, elem_type), put<uint64_t>(meta_, v.size());
    for (T x : v) put(meta_, x);
  }
  // Raw metadata bytes after the key (type id and value), for odd cases.
  void kv_raw(const std::string& k, const std::string& type_and_value) {
    ++n_kv_, str(meta_, k), meta_ += type_and_value;
  }
  // ne in GGUF order (innermost first); `bytes` of data (zeros beyond `data`).
  void tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type, uint64_t bytes,
              const std::string& data = "") {
    ++n_tensors_;
    str(infos_, name);
    put<uint32_t>(infos_, uint32_t(ne.size()));
    for (uint64_t d : ne) put(infos_, d);
    put(infos_, type);
    while (data_.size() % align_ != 0) data_ += '\0';
    put<uint64_t>(infos_, data_.size());
    std::string d = data.substr(0, bytes);
    d.resize(bytes, '\0');
    data_ += d;
  }
  std::string bytes(bool pad_after_infos = true) const {
    std::string out = "GGUF";
    put<uint32_t>(out, 3);
    put<uint64_t>(out, n_tensors_);
    put<uint64_t>(out, n_kv_);
    out += meta_ + infos_;
    if (pad_after_infos && n_tensors_ > 0) {
      while (out.size() % align_ != 0) out += '\0';
    }
    return out + data_;
  }

 private:
  static void str(std::string& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out += s;
  }
  void key(const std::string& k, uint32_t type) {
    ++n_kv_;
    str(meta_, k);
    put(meta_, type);
  }
  size_t align_;
  uint64_t n_tensors_ = 0, n_kv_ = 0;
  std::string meta_, infos_, data_;
};

// The tiny model as GGUF (llama architecture, llama tokenizer inside, f32 tensors).
inline std::string gguf_model() {
  Gguf g;
  g.kv_str("general.architecture", "llama");
  g.kv_str("general.name", "tiny");
  g.kv_u32("llama.context_length", kCtx);
  g.kv_u32("llama.embedding_length", kHidden);
  g.kv_u32("llama.feed_forward_length", kFf);
  g.kv_u32("llama.block_count", kLayers);
  g.kv_u32("llama.attention.head_count", kHeads);
  g.kv_u32("llama.attention.head_count_kv", kKvHeads);
  g.kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  g.kv_f32("llama.rope.freq_base", 10000.0f);
  g.kv_str("tokenizer.ggml.model", "llama");
  g.kv_str_array("tokenizer.ggml.tokens", {kTokens, kTokens + kVocab});
  g.kv_array<float>("tokenizer.ggml.scores", 6, {0, -1, -2, -3});
  g.kv_array<int32_t>("tokenizer.ggml.token_type", 5, {2, 3, 3, 1});
  g.kv_u32("tokenizer.ggml.bos_token_id", 1);
  g.kv_u32("tokenizer.ggml.eos_token_id", 2);
  g.kv_u32("tokenizer.ggml.unknown_token_id", 0);
  g.kv_bool("tokenizer.ggml.add_bos_token", true);
  const uint64_t h = kHidden, f = kFf, v = kVocab;
  const std::pair<const char*, std::vector<uint64_t>> tensors[] = {
      {"token_embd.weight", {h, v}},   {"blk.0.attn_norm.weight", {h}},
      {"blk.0.attn_q.weight", {h, h}}, {"blk.0.attn_k.weight", {h, h}},
      {"blk.0.attn_v.weight", {h, h}}, {"blk.0.attn_output.weight", {h, h}},
      {"blk.0.ffn_norm.weight", {h}},  {"blk.0.ffn_gate.weight", {h, f}},
      {"blk.0.ffn_up.weight", {h, f}}, {"blk.0.ffn_down.weight", {f, h}},
      {"output_norm.weight", {h}},     {"output.weight", {h, v}},
  };
  int64_t seed = 0;
  for (const auto& [name, ne] : tensors) {
    uint64_t n = 1;
    for (uint64_t d : ne) n *= d;
    const auto w = weights(int64_t(n), seed++);
    g.tensor(name, ne, 0, n * 4, std::string(reinterpret_cast<const char*>(w.data()), n * 4));
  }
  return g.bytes();
}

}  // namespace fuzz::tiny
