// Writing a Model: GGUF with the metadata llama.cpp needs, tensors converted and streamed one at
// a time (in chunks of rows, so converting never holds a whole tensor twice).
#include <algorithm>
#include <cstring>

#include "io/gguf.h"
#include "io/model_internal.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/mapped_file.h"
#include "lowbit/model.h"
#include "lowbit/progress.h"

namespace lowbit {

void permute_rows(const uint8_t* in, uint8_t* out, int64_t rows, uint64_t row_bytes,
                  int64_t n_heads, bool to_gguf) {
  // Within each head of hd rows: HF (rotate-half) row j*hd/2 + i <-> GGUF (pairs) row 2i + j.
  const int64_t hd = rows / n_heads, half = hd / 2;
  LOWBIT_CHECK(hd * n_heads == rows && hd % 2 == 0, "Q/K rows must split into even heads");
  for (int64_t h = 0; h < n_heads; ++h) {
    for (int64_t i = 0; i < half; ++i) {
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t hf = h * hd + j * half + i, gg = h * hd + 2 * i + j;
        const int64_t src = to_gguf ? hf : gg, dst = to_gguf ? gg : hf;
        std::memcpy(out + uint64_t(dst) * row_bytes, in + uint64_t(src) * row_bytes, row_bytes);
      }
    }
  }
}

void permute_qk_rows(const float* in, float* out, int64_t rows, int64_t K, int64_t n_heads,
                     bool to_gguf) {
  permute_rows(reinterpret_cast<const uint8_t*>(in), reinterpret_cast<uint8_t*>(out), rows,
               uint64_t(K) * sizeof(float), n_heads, to_gguf);
}

namespace {

bool is_float(const Format& f) {
  const auto n = f.info().name;
  return n == "f32" || n == "f16" || n == "bf16";
}

// The format a tensor is written in: float matrices become float_type, vectors stay f32,
// quantized tensors keep their format.
Format target_format(const ModelTensor& t, const Format& float_type) {
  if (!is_float(t.format)) return t.format;
  return t.shape.size() >= 2 ? float_type : Format::parse("f32");
}

// Streams t converted to `to`, kChunkRows rows at a time.
void write_converted(OutputFile& out, const ModelTensor& t, const Format& to) {
  if (to == t.format) {
    out.write(t.data, t.bytes);
    return;
  }
  constexpr int64_t kChunkRows = 256;
  const int64_t K = t.row_length(), rows = t.rows();
  const uint64_t in_rb = t.format.row_bytes(K), out_rb = to.row_bytes(K);
  std::vector<float> buf(size_t(std::min(rows, kChunkRows) * K));
  std::vector<uint8_t> q(size_t(std::min(rows, kChunkRows)) * out_rb);
  for (int64_t r0 = 0; r0 < rows; r0 += kChunkRows) {
    const int64_t n = std::min(kChunkRows, rows - r0);
    t.format.dequantize(t.data + uint64_t(r0) * in_rb, n, K, buf.data());
    to.quantize(buf.data(), n, K, nullptr, q.data());
    out.write(q.data(), uint64_t(n) * out_rb);
  }
}

void set_tokenizer(GgufWriter& w, const TokenizerData& t) {
  if (t.tokens.empty()) return;
  w.set("tokenizer.ggml.model", GgufValue::str(t.model));
  if (!t.pre.empty()) w.set("tokenizer.ggml.pre", GgufValue::str(t.pre));
  w.set("tokenizer.ggml.tokens", GgufValue::str_array(t.tokens));
  if (!t.scores.empty()) w.set("tokenizer.ggml.scores", GgufValue::f32_array(t.scores));
  if (!t.token_types.empty()) {
    w.set("tokenizer.ggml.token_type", GgufValue::i32_array(t.token_types));
  }
  if (!t.merges.empty()) w.set("tokenizer.ggml.merges", GgufValue::str_array(t.merges));
  auto id = [&](const char* key, const std::optional<uint32_t>& v) {
    if (v) w.set(key, GgufValue::u32(*v));
  };
  id("tokenizer.ggml.bos_token_id", t.bos_id);
  id("tokenizer.ggml.eos_token_id", t.eos_id);
  id("tokenizer.ggml.unknown_token_id", t.unk_id);
  id("tokenizer.ggml.padding_token_id", t.pad_id);
  if (t.add_bos) w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(*t.add_bos));
  if (t.add_eos) w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(*t.add_eos));
  if (t.add_space_prefix) {
    w.set("tokenizer.ggml.add_space_prefix", GgufValue::boolean(*t.add_space_prefix));
  }
}

void set_config(GgufWriter& w, const ModelConfig& c) {
  const std::string a = c.arch + ".";
  auto u32 = [&](const std::string& k, int64_t v) {
    w.set(k, GgufValue::u32(checked_cast<uint32_t>(v, {.field = k})));
  };
  w.set("general.architecture", GgufValue::str(c.arch));
  if (!c.name.empty()) w.set("general.name", GgufValue::str(c.name));
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
}

}  // namespace

void write_gguf(const Model& m, const std::string& path, const Format& float_type,
                bool show_progress) {
  LOWBIT_CHECK(is_float(float_type), "write_gguf: float_type must be f32, f16 or bf16");
  write_gguf(m, path, [&](const ModelTensor& t) { return target_format(t, float_type); }, {},
             show_progress);
}

uint64_t gguf_overhead_bound(const Model& m) {
  GgufWriter w;
  set_config(w, m.config);
  set_tokenizer(w, m.tokenizer);
  for (const auto& t : m.tensors) {
    std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
    w.add_tensor(t.name, ne, Format::parse("f32"), [](OutputFile&) {});
  }
  w.set("general.quantization_version", GgufValue::u32(2));
  w.set("lowbit.private_types", GgufValue::boolean(true));
  const std::string value(64, 'x');  // the quantizers' keys: method and type names
  w.set("lowbit.quantize.method", GgufValue::str(value));
  w.set("lowbit.quantize.type", GgufValue::str(value));
  constexpr uint64_t kAlign = 32;  // GgufWriter's default: at most 31 bytes after each part
  return w.header_bytes() + (kAlign - 1) * (uint64_t(m.tensors.size()) + 1);
}

void write_gguf(const Model& m, const std::string& path,
                const std::function<Format(const ModelTensor&)>& target,
                const std::vector<std::pair<std::string, std::string>>& extra_metadata,
                bool show_progress, const TensorHook& before, const TensorHook& after) {
  GgufWriter w;
  set_config(w, m.config);
  set_tokenizer(w, m.tokenizer);
  bool private_types = false;
  for (const auto& t : m.tensors) {
    const Format to = target(t);
    private_types |= !to.is_ggml_type();
    std::vector<int64_t> ne(t.shape.rbegin(), t.shape.rend());
    w.add_tensor(t.name, ne, to, [&t, to, &before, &after](OutputFile& out) {
      if (before) before(t);
      write_converted(out, t, to);
      // Streaming: a tensor read once is not kept resident (RSS stays about one tensor).
      if (t.mapped) release_mapped_pages(t.data, t.bytes);
      if (after) after(t);
    });
  }
  w.set("general.quantization_version", GgufValue::u32(2));
  // Files holding lowbit's own formats say so (they load only in lowbit).
  if (private_types) w.set("lowbit.private_types", GgufValue::boolean(true));
  for (const auto& [k, v] : extra_metadata) w.set(k, GgufValue::str(v));
  Progress progress("writing " + path, int64_t(m.tensors.size()));
  w.write(path, m.sources, [&](size_t, size_t) { if (show_progress) progress.advance(); });
}

}  // namespace lowbit
