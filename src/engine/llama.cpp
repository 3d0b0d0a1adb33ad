// LlamaEngine: the reference forward pass. Shape legend: C = n_embd, H = n_head, G = n_head_kv,
// D = head_dim, F = n_ff, T = positions so far.
#include "engine/llama.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "lowbit/error.h"

namespace lowbit {

namespace {

// y (rows) = W (rows, K) x (K), one dequantized row at a time.
void matvec(const ModelTensor& w, const float* x, float* y, std::vector<float>& row) {
  const int64_t K = w.row_length(), rows = w.rows();
  const uint64_t rb = w.format.row_bytes(K);
  row.resize(size_t(K));
  for (int64_t r = 0; r < rows; ++r) {
    w.format.dequantize_row(w.data + uint64_t(r) * rb, K, row.data());
    float s = 0;
    for (int64_t k = 0; k < K; ++k) s += row[size_t(k)] * x[k];
    y[r] = s;
  }
}

void add_bias(const ModelTensor* b, float* y, std::vector<float>& row) {
  if (!b) return;
  row.resize(size_t(b->row_length()));
  b->format.dequantize_row(b->data, b->row_length(), row.data());
  for (int64_t i = 0; i < b->row_length(); ++i) y[i] += row[size_t(i)];
}

// out (C) = x / rms(x) * w
void rmsnorm(const float* x, const ModelTensor& w, float* out, int64_t n, double eps,
             std::vector<float>& row) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
  const float scale = float(1.0 / std::sqrt(ss / double(n) + eps));
  row.resize(size_t(n));
  w.format.dequantize_row(w.data, n, row.data());
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * row[size_t(i)];
}

// GGUF llama layout: dimensions (2i, 2i+1) of each head rotate by pos * inv_freq[i].
void rope(float* v, int64_t heads, int64_t hd, int64_t pos, const std::vector<float>& inv_freq) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < hd / 2; ++i) {
      const float th = float(pos) * inv_freq[size_t(i)];
      const float c = std::cos(th), s = std::sin(th);
      float* p = v + h * hd + 2 * i;
      const float a = p[0], b = p[1];
      p[0] = a * c - b * s;
      p[1] = a * s + b * c;
    }
  }
}

}  // namespace

LlamaEngine::LlamaEngine(const Model& m, int64_t ctx) : m_(m) {
  const ModelConfig& c = m.config;
  ctx_ = ctx > 0 ? ctx : (c.n_ctx_train > 0 ? c.n_ctx_train : 2048);
  auto need = [&](const std::string& n) {
    const ModelTensor* t = m.find(n);
    if (!t) throw Error("required tensor missing", {.field = n});
    return t;
  };
  embd_ = need("token_embd.weight");
  out_norm_ = need("output_norm.weight");
  output_ = c.tied_output ? embd_ : need("output.weight");
  rope_freqs_ = m.find("rope_freqs.weight");
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    layers_.push_back({need(b + "attn_norm.weight"), need(b + "attn_q.weight"),
                       need(b + "attn_k.weight"), need(b + "attn_v.weight"),
                       need(b + "attn_output.weight"), m.find(b + "attn_q.bias"),
                       m.find(b + "attn_k.bias"), m.find(b + "attn_v.bias"),
                       need(b + "ffn_norm.weight"), need(b + "ffn_gate.weight"),
                       need(b + "ffn_up.weight"), need(b + "ffn_down.weight")});
  }
  const int64_t C = c.n_embd, D = c.head_dim, Q = c.n_head * D, KV = c.n_head_kv * D;
  x_.resize(size_t(C)), xb_.resize(size_t(std::max(C, Q))), xb2_.resize(size_t(C));
  q_.resize(size_t(Q)), k_.resize(size_t(KV)), v_.resize(size_t(KV));
  att_.resize(size_t(ctx_)), hb_.resize(size_t(c.n_ff)), hb2_.resize(size_t(c.n_ff));
  logits_.resize(size_t(c.n_vocab));
  k_cache_.assign(size_t(c.n_layer * ctx_ * KV), 0.0f);
  v_cache_.assign(size_t(c.n_layer * ctx_ * KV), 0.0f);
  std::vector<float> factors(size_t(D / 2), 1.0f);
  if (rope_freqs_) rope_freqs_->format.dequantize_row(rope_freqs_->data, D / 2, factors.data());
  for (int64_t i = 0; i < D / 2; ++i) {
    inv_freq_.push_back(float(std::pow(c.rope_theta, -2.0 * double(i) / double(D)) /
                              factors[size_t(i)]));
  }
}

void LlamaEngine::attention(const Layer& L, int64_t layer, int64_t pos) {
  const ModelConfig& c = m_.config;
  const int64_t D = c.head_dim, H = c.n_head, G = c.n_head_kv, KV = G * D;
  matvec(*L.wq, xb_.data(), q_.data(), row_), add_bias(L.bq, q_.data(), row_);
  matvec(*L.wk, xb_.data(), k_.data(), row_), add_bias(L.bk, k_.data(), row_);
  matvec(*L.wv, xb_.data(), v_.data(), row_), add_bias(L.bv, v_.data(), row_);
  rope(q_.data(), H, D, pos, inv_freq_);
  rope(k_.data(), G, D, pos, inv_freq_);
  float* kc = &k_cache_[size_t((layer * ctx_) * KV)];
  float* vc = &v_cache_[size_t((layer * ctx_) * KV)];
  std::memcpy(kc + pos * KV, k_.data(), size_t(KV) * sizeof(float));
  std::memcpy(vc + pos * KV, v_.data(), size_t(KV) * sizeof(float));
  const float scale = 1.0f / std::sqrt(float(D));
  for (int64_t h = 0; h < H; ++h) {
    const int64_t g = h / (H / G);  // grouped-query: H/G query heads share a KV head
    const float* qh = &q_[size_t(h * D)];
    float mx = -INFINITY;
    for (int64_t t = 0; t <= pos; ++t) {
      const float* kt = kc + t * KV + g * D;
      float s = 0;
      for (int64_t d = 0; d < D; ++d) s += qh[d] * kt[d];
      att_[size_t(t)] = s * scale;
      mx = std::max(mx, att_[size_t(t)]);
    }
    float sum = 0;
    for (int64_t t = 0; t <= pos; ++t) sum += (att_[size_t(t)] = std::exp(att_[size_t(t)] - mx));
    float* out = &xb_[size_t(h * D)];
    std::fill(out, out + D, 0.0f);
    for (int64_t t = 0; t <= pos; ++t) {
      const float a = att_[size_t(t)] / sum;
      const float* vt = vc + t * KV + g * D;
      for (int64_t d = 0; d < D; ++d) out[d] += a * vt[d];
    }
  }
  matvec(*L.wo, xb_.data(), xb2_.data(), row_);
  for (int64_t i = 0; i < c.n_embd; ++i) x_[size_t(i)] += xb2_[size_t(i)];
}

void LlamaEngine::feed_forward(const Layer& L) {
  const ModelConfig& c = m_.config;
  matvec(*L.gate, xb_.data(), hb_.data(), row_);
  matvec(*L.up, xb_.data(), hb2_.data(), row_);
  for (int64_t i = 0; i < c.n_ff; ++i) {
    const float g = hb_[size_t(i)];
    hb_[size_t(i)] = g / (1.0f + std::exp(-g)) * hb2_[size_t(i)];  // SwiGLU: silu(gate) * up
  }
  matvec(*L.down, hb_.data(), xb2_.data(), row_);
  for (int64_t i = 0; i < c.n_embd; ++i) x_[size_t(i)] += xb2_[size_t(i)];
}

const std::vector<float>& LlamaEngine::forward(int32_t token, int64_t pos) {
  const ModelConfig& c = m_.config;
  if (token < 0 || token >= c.n_vocab) {
    throw Error("token id out of range", {.field = "token", .expected = "< " +
                std::to_string(c.n_vocab), .found = std::to_string(token)});
  }
  if (pos < 0 || pos >= ctx_) {
    throw Error("context overflow", {.field = "position", .expected = "< " +
                std::to_string(ctx_), .found = std::to_string(pos)});
  }
  const int64_t C = c.n_embd;
  const uint64_t rb = embd_->format.row_bytes(C);
  embd_->format.dequantize_row(embd_->data + uint64_t(token) * rb, C, x_.data());
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const Layer& L = layers_[size_t(l)];
    rmsnorm(x_.data(), *L.attn_norm, xb_.data(), C, c.rms_eps, row_);
    attention(L, l, pos);
    rmsnorm(x_.data(), *L.ffn_norm, xb_.data(), C, c.rms_eps, row_);
    feed_forward(L);
  }
  rmsnorm(x_.data(), *out_norm_, xb_.data(), C, c.rms_eps, row_);
  matvec(*output_, xb_.data(), logits_.data(), row_);
  return logits_;
}

std::string token_text(const TokenizerData& t, int32_t id) {
  if (id < 0 || size_t(id) >= t.tokens.size()) return "";
  if (!t.token_types.empty() && t.token_types[size_t(id)] == int32_t(TokenType::kControl)) return "";
  const std::string& s = t.tokens[size_t(id)];
  if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s[5] == '>') {
    return std::string(1, char(std::stoi(s.substr(3, 2), nullptr, 16)));
  }
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 3, "\xe2\x96\x81") == 0) out += ' ', i += 2;  // U+2581
    else out += s[i];
  }
  return out;
}

}  // namespace lowbit
