// LlamaEngine: the reference forward pass. Shape legend: B = tokens in this step, C = n_embd,
// H = n_head, G = n_head_kv, D = head_dim, F = n_ff, V = n_vocab, T = positions attended.
#include "engine/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernel/matmul.h"
#include "lowbit/error.h"
#include "lowbit/mapped_file.h"
#include "lowbit/threads.h"
#include "quant/blas_threads.h"

namespace lowbit {

namespace {

std::vector<float> vector_of(const ModelTensor& t) {  // a 1-D tensor (norm weights, biases)
  std::vector<float> v(static_cast<size_t>(t.row_length()));
  t.format.dequantize_row(t.data, t.row_length(), v.data());
  return v;
}

void add_bias(const float* bias, float* y, int64_t B, int64_t n) {  // y (B, n) += bias (n)
  if (!bias) return;
  for (int64_t i = 0; i < B; ++i) {
    for (int64_t j = 0; j < n; ++j) y[i * n + j] += bias[j];
  }
}

// out (B, C) = x / rms(x) * g, per token.
void rmsnorm(const float* x, const float* g, float* out, int64_t B, int64_t C, double eps) {
  parallel_for(B, std::max<int64_t>(1, (int64_t(1) << 15) / C), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const float* xb = x + b * C;
      double ss = 0;
      for (int64_t i = 0; i < C; ++i) ss += double(xb[i]) * xb[i];
      const float scale = float(1.0 / std::sqrt(ss / double(C) + eps));
      for (int64_t i = 0; i < C; ++i) out[b * C + i] = xb[i] * scale * g[i];
    }
  });
}

}  // namespace

const PreparedMatrix& LlamaEngine::prepared(const ModelTensor& w) {
  Prepared& p = prepared_[&w];
  if (!p.matrix || !p.source.same(w)) {
    p = {Source::of(w),
         std::make_unique<PreparedMatrix>(w.format, w.data, w.rows(), w.row_length())};
    // The repacked rows are read from the copy from now on: drop the file's pages (they are
    // read back from the file should anything else touch them).
    if (p.matrix->repacked() && w.mapped) {
      const int64_t M = w.rows();
      release_mapped_pages(w.data, w.bytes / uint64_t(M) * uint64_t(M - M % 8));
    }
  }
  return *p.matrix;
}

const float* LlamaEngine::values_of(const ModelTensor* t) {
  if (t == nullptr) return nullptr;
  if (!repack_) {  // the caller may rewrite bytes in place: decode on every use
    vector_scratch_ = vector_of(*t);
    return vector_scratch_.data();
  }
  Vector& v = vectors_[t];
  if (v.values.empty() || !v.source.same(*t)) v = {Source::of(*t), vector_of(*t)};
  return v.values.data();
}

void LlamaEngine::add_lora(const LoraAdapter& a, float scale) {
  check_lora(a, m_);
  for (const auto& [name, p] : a.pairs) {
    const ModelTensor* t = m_.find(name);
    if (t == embd_) {
      throw Error("LoRA on the token embedding is not supported",
                  {.file = a.path, .field = name + ".lora_a"});
    }
    lora_[t].push_back({&p, a.scale(p, scale)});
  }
}

// u (B, r) = x · Aᵀ, then y += s · u · Bᵀ: two thin products (r is small), one BLAS thread.
void LlamaEngine::apply_lora(const ModelTensor& w, const float* x, int64_t B, float* y) {
  if (lora_.empty()) return;
  const auto it = lora_.find(&w);
  if (it == lora_.end()) return;
  const SingleBlasThread one_blas_thread;
  for (const LoraUse& u : it->second) {
    const LoraPair& p = *u.pair;
    lora_u_.resize(size_t(B * p.rank));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(B), int(p.rank), int(p.in), 1.0f, x,
                int(p.in), p.a.data(), int(p.in), 0.0f, lora_u_.data(), int(p.rank));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(B), int(p.out), int(p.rank), u.scale,
                lora_u_.data(), int(p.rank), p.b.data(), int(p.rank), 1.0f, y, int(p.out));
  }
}

void LlamaEngine::linear(const ModelTensor& w, const float* x, int64_t B, float* y) {
  if (!repack_)
    matmul(w.format, w.data, w.rows(), w.row_length(), x, B, y);
  else
    prepared(w).multiply(x, B, y);
  apply_lora(w, x, B, y);
}

void LlamaEngine::linear_group(std::initializer_list<const ModelTensor*> ws, const float* x,
                               int64_t B, std::initializer_list<float*> ys) {
  if (!repack_) {
    auto y = ys.begin();
    for (const ModelTensor* w : ws) linear(*w, x, B, *y++);
    return;
  }
  std::vector<const PreparedMatrix*> ms;
  for (const ModelTensor* w : ws) ms.push_back(&prepared(*w));
  PreparedMatrix::multiply_group(ms, x, B, {ys.begin(), ys.size()});
  auto y = ys.begin();
  for (const ModelTensor* w : ws) apply_lora(*w, x, B, *y++);
}

LlamaEngine::LlamaEngine(const Model& m, int64_t ctx, int64_t max_batch) : m_(m) {
  const ModelConfig& c = m.config;
  ctx_ = ctx > 0 ? ctx : (c.n_ctx_train > 0 ? c.n_ctx_train : 2048);
  max_batch_ = std::max<int64_t>(1, max_batch);
  auto need = [&](const std::string& n) {
    const ModelTensor* t = m.find(n);
    if (!t) throw Error("required tensor missing", {.field = n});
    return t;
  };
  embd_ = need("token_embd.weight");
  out_norm_ = need("output_norm.weight");
  output_ = c.tied_output ? embd_ : need("output.weight");
  for (const AppliedLora& l : m.loras) add_lora(*l.adapter, l.scale);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    layers_.push_back(
        {need(b + "attn_norm.weight"), need(b + "attn_q.weight"), need(b + "attn_k.weight"),
         need(b + "attn_v.weight"), need(b + "attn_output.weight"), m.find(b + "attn_q.bias"),
         m.find(b + "attn_k.bias"), m.find(b + "attn_v.bias"), need(b + "ffn_norm.weight"),
         need(b + "ffn_gate.weight"), need(b + "ffn_up.weight"), need(b + "ffn_down.weight")});
  }
  const int64_t B = max_batch_, C = c.n_embd, D = c.head_dim, Q = c.n_head * D,
                KV = c.n_head_kv * D;
  x_.resize(size_t(B * C)), xb_.resize(size_t(B * std::max(C, Q))), xb2_.resize(size_t(B * C));
  q_.resize(size_t(B * Q)), k_.resize(size_t(B * KV)), v_.resize(size_t(B * KV));
  hb_.resize(size_t(B * c.n_ff)), hb2_.resize(size_t(B * c.n_ff));
  att_.resize(size_t(max_threads() * ctx_));
  k_cache_.assign(size_t(c.n_layer * ctx_ * KV), 0.0f);
  v_cache_.assign(size_t(c.n_layer * ctx_ * KV), 0.0f);
  std::vector<float> factors(size_t(D / 2), 1.0f);
  if (const ModelTensor* f = m.find("rope_freqs.weight")) factors = vector_of(*f);
  for (int64_t i = 0; i < D / 2; ++i) {
    inv_freq_.push_back(
        float(std::pow(c.rope_theta, -2.0 * double(i) / double(D)) / factors[size_t(i)]));
  }
}

// The RoPE angles' cosines and sines (n, D/2) for positions pos0 .. pos0 + n - 1, shared by every
// layer and head of a step.
void LlamaEngine::rope_angles(int64_t n, int64_t pos0) {
  const int64_t half = m_.config.head_dim / 2;
  rope_cos_.resize(size_t(n * half)), rope_sin_.resize(size_t(n * half));
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t i = 0; i < half; ++i) {
      const float th = float(pos0 + b) * inv_freq_[size_t(i)];
      rope_cos_[size_t(b * half + i)] = std::cos(th);
      rope_sin_[size_t(b * half + i)] = std::sin(th);
    }
  }
}

// Rotates each head of v (heads, D) by the angles of token b of the step (rope_angles): pairs
// (2i, 2i+1) in GGUF's llama layout, or (i, i + D/2) in the NeoX / rotate-half layout.
void LlamaEngine::rope(float* v, int64_t heads, int64_t b) const {
  const int64_t D = m_.config.head_dim;
  const int64_t stride = m_.config.rope_neox ? 1 : 2, other = m_.config.rope_neox ? D / 2 : 1;
  const float* cs = &rope_cos_[size_t(b * (D / 2))];
  const float* sn = &rope_sin_[size_t(b * (D / 2))];
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < D / 2; ++i) {
      const float c = cs[i], s = sn[i];
      float* p = v + h * D + stride * i;
      const float a = p[0], b = p[other];
      p[0] = a * c - b * s;
      p[other] = a * s + b * c;
    }
  }
}

void LlamaEngine::attention(const Layer& L, int64_t layer, int64_t n, int64_t pos0) {
  const ModelConfig& c = m_.config;
  const int64_t C = c.n_embd, D = c.head_dim, H = c.n_head, G = c.n_head_kv, KV = G * D;
  observe(layer, LinearInput::kAttnQkv, xb_.data(), n, C);
  linear_group({L.wq, L.wk, L.wv}, xb_.data(), n, {q_.data(), k_.data(), v_.data()});
  add_bias(values_of(L.bq), q_.data(), n, H * D), add_bias(values_of(L.bk), k_.data(), n, KV);
  add_bias(values_of(L.bv), v_.data(), n, KV);
  float* kc = &k_cache_[size_t(layer * ctx_ * KV)];
  float* vc = &v_cache_[size_t(layer * ctx_ * KV)];
  parallel_for(n, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      rope(&q_[size_t(b * H * D)], H, b);
      rope(&k_[size_t(b * KV)], G, b);
    }
  });
  std::memcpy(kc + pos0 * KV, k_.data(), size_t(n * KV) * sizeof(float));
  std::memcpy(vc + pos0 * KV, v_.data(), size_t(n * KV) * sizeof(float));
  const float scale = 1.0f / std::sqrt(float(D));
  // One (token, head) pair per work item; token b attends to positions 0 .. pos0 + b. Threads
  // only when each gets >= ~64k multiply-adds (fork-join costs more on small work).
  const int64_t per_item = 2 * (pos0 + n) * D;
  parallel_for(n * H, std::max<int64_t>(1, (int64_t(1) << 16) / per_item),
               [&](int64_t i0, int64_t i1) {
                 float* att = &att_[size_t(thread_index() * ctx_)];
                 for (int64_t i = i0; i < i1; ++i) {
                   // Token order 0, n-1, 1, n-2, ...: a later token attends to more positions, and
                   // the threads' contiguous shares of items then hold about equal work.
                   const int64_t k = i / H, b = k % 2 == 0 ? k / 2 : n - 1 - k / 2;
                   const int64_t h = i % H, g = h / (H / G), T = pos0 + b + 1;
                   const float* qh = &q_[size_t((b * H + h) * D)];
                   attention_scores(qh, kc + g * D, KV, T, D, scale, att);
                   softmax(att, T);
                   attention_values(att, vc + g * D, KV, T, D, &xb_[size_t((b * H + h) * D)]);
                 }
               });
  observe(layer, LinearInput::kAttnOutput, xb_.data(), n, H * D);
  linear(*L.wo, xb_.data(), n, xb2_.data());
  for (int64_t i = 0; i < n * C; ++i) x_[size_t(i)] += xb2_[size_t(i)];
}

void LlamaEngine::feed_forward(const Layer& L, int64_t layer, int64_t n) {
  const ModelConfig& c = m_.config;
  observe(layer, LinearInput::kFfnGateUp, xb_.data(), n, c.n_embd);
  linear_group({L.gate, L.up}, xb_.data(), n, {hb_.data(), hb2_.data()});
  float* hb = hb_.data();
  const float* hb2 = hb2_.data();
  parallel_for(n * c.n_ff, int64_t(1) << 15,
               [&](int64_t i0, int64_t i1) { swiglu(hb + i0, hb2 + i0, i1 - i0); });
  observe(layer, LinearInput::kFfnDown, hb_.data(), n, c.n_ff);
  linear(*L.down, hb_.data(), n, xb2_.data());
  for (int64_t i = 0; i < n * c.n_embd; ++i) x_[size_t(i)] += xb2_[size_t(i)];
}

void LlamaEngine::embed(const int32_t* tokens, int64_t n, float* x) const {
  const int64_t C = m_.config.n_embd;
  const uint64_t rb = embd_->format.row_bytes(C);
  for (int64_t b = 0; b < n; ++b) {
    if (tokens[b] < 0 || tokens[b] >= m_.config.n_vocab) {
      throw Error("token id out of range", {.field = "token",
                                            .expected = "< " + std::to_string(m_.config.n_vocab),
                                            .found = std::to_string(tokens[b])});
    }
    embd_->format.dequantize_row(embd_->data + uint64_t(tokens[b]) * rb, C, x + b * C);
  }
}

void LlamaEngine::run_layers(float* x, int64_t n, int64_t pos0, int64_t begin, int64_t end) {
  const ModelConfig& c = m_.config;
  const int64_t C = c.n_embd;
  LOWBIT_CHECK(
      n >= 1 && n <= max_batch_ && pos0 >= 0 && pos0 + n <= ctx_ && begin >= 0 && end <= c.n_layer,
      "run_layers: arguments out of range");
  if (x != x_.data()) std::copy(x, x + n * C, x_.begin());
  rope_angles(n, pos0);
  for (int64_t l = begin; l < end; ++l) {
    const Layer& L = layers_[size_t(l)];
    rmsnorm(x_.data(), values_of(L.attn_norm), xb_.data(), n, C, c.rms_eps);
    attention(L, l, n, pos0);
    rmsnorm(x_.data(), values_of(L.ffn_norm), xb_.data(), n, C, c.rms_eps);
    feed_forward(L, l, n);
  }
  if (x != x_.data()) std::copy(x_.begin(), x_.begin() + n * C, x);
}

void LlamaEngine::head(const float* x, int64_t n, float* logits) {
  const ModelConfig& c = m_.config;
  for (int64_t s = 0; s < n; s += max_batch_) {  // xb_ holds max_batch rows
    const int64_t m = std::min(max_batch_, n - s);
    rmsnorm(x + s * c.n_embd, values_of(out_norm_), xb_.data(), m, c.n_embd, c.rms_eps);
    observe(c.n_layer, LinearInput::kOutput, xb_.data(), m, c.n_embd);
    linear(*output_, xb_.data(), m, logits + s * c.n_vocab);
  }
}

// n <= max_batch tokens; logits: (n, V) when all_logits, else (V) for the last token, or
// nullptr for none.
void LlamaEngine::step(const int32_t* tokens, int64_t n, int64_t pos0, float* logits,
                       bool all_logits) {
  const int64_t C = m_.config.n_embd;
  embed(tokens, n, x_.data());
  run_layers(x_.data(), n, pos0, 0, m_.config.n_layer);
  if (!logits) return;  // a prompt chunk before the last: only the KV cache was needed
  const int64_t first = all_logits ? 0 : n - 1;
  head(&x_[size_t(first * C)], n - first, logits);
}

const std::vector<float>& LlamaEngine::eval(const int32_t* tokens, int64_t n, int64_t pos0,
                                            bool all_logits) {
  const ModelConfig& c = m_.config;
  if (n <= 0) throw Error("nothing to evaluate", {.field = "tokens", .expected = ">= 1"});
  for (int64_t i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= c.n_vocab) {
      throw Error("token id out of range", {.field = "token",
                                            .expected = "< " + std::to_string(c.n_vocab),
                                            .found = std::to_string(tokens[i])});
    }
  }
  if (pos0 < 0 || pos0 + n > ctx_) {
    throw Error("context overflow: the context holds " + std::to_string(ctx_) + " tokens",
                {.field = "position",
                 .expected = "< " + std::to_string(ctx_),
                 .found = std::to_string(std::max<int64_t>(pos0, 0) + n - 1)});
  }
  logits_.resize(size_t((all_logits ? n : 1) * c.n_vocab));
  for (int64_t s = 0; s < n; s += max_batch_) {
    const int64_t m = std::min(max_batch_, n - s);
    const bool last = s + m == n;
    if (!all_logits && !last) {  // only the cache matters: skip the output layer
      step(tokens + s, m, pos0 + s, nullptr, false);
      continue;
    }
    step(tokens + s, m, pos0 + s, &logits_[size_t((all_logits ? s : 0) * c.n_vocab)], all_logits);
  }
  return logits_;
}

std::string token_text(const TokenizerData& t, int32_t id) {
  if (id < 0 || size_t(id) >= t.tokens.size()) return "";
  if (!t.token_types.empty() && t.token_types[size_t(id)] == int32_t(TokenType::kControl))
    return "";
  const std::string& s = t.tokens[size_t(id)];
  if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>') {
    return std::string(1, char(std::stoi(s.substr(3, 2), nullptr, 16)));
  }
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "\xe2\x96\x81") == 0)
      out += ' ', i += 2;  // U+2581
    else
      out += s[i];
  }
  return out;
}

}  // namespace lowbit
