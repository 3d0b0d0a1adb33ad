// Transformer<T>: the training forward and backward of the LLaMA family (model.h). Shape legend as
// in ops.h: B = S * L tokens, C = n_embd, H / G = query / KV heads, D = head_dim, F = n_ff,
// V = n_vocab.
#include "train/model.h"

#include <algorithm>
#include <cmath>

#include "lowbit/error.h"
#include "lowbit/rng.h"
#include "train/ops.h"

namespace lowbit::train {

ParamLayout ParamLayout::of(const ModelConfig& c) {
  ParamLayout l;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, bool decay) {
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    l.params.push_back({name, std::move(shape), l.total, n, decay});
    l.total += n;
  };
  const int64_t C = c.n_embd, Q = c.n_head * c.head_dim, KV = c.n_head_kv * c.head_dim;
  add("token_embd.weight", {c.n_vocab, C}, false);
  for (int64_t i = 0; i < c.n_layer; ++i) {
    const std::string b = "blk." + std::to_string(i) + ".";
    add(b + "attn_norm.weight", {C}, false);
    add(b + "attn_q.weight", {Q, C}, true);
    add(b + "attn_k.weight", {KV, C}, true);
    add(b + "attn_v.weight", {KV, C}, true);
    if (c.qkv_bias) {
      add(b + "attn_q.bias", {Q}, false);
      add(b + "attn_k.bias", {KV}, false);
      add(b + "attn_v.bias", {KV}, false);
    }
    add(b + "attn_output.weight", {C, Q}, true);
    add(b + "ffn_norm.weight", {C}, false);
    add(b + "ffn_gate.weight", {c.n_ff, C}, true);
    add(b + "ffn_up.weight", {c.n_ff, C}, true);
    add(b + "ffn_down.weight", {C, c.n_ff}, true);
  }
  add("output_norm.weight", {C}, false);
  if (!c.tied_output) add("output.weight", {c.n_vocab, C}, true);
  return l;
}

const ParamInfo* ParamLayout::find(const std::string& name) const {
  for (const ParamInfo& p : params) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<double> rope_inv_freq(const ModelConfig& c, const std::vector<float>& factors) {
  const int64_t D = c.head_dim;
  std::vector<double> f;
  for (int64_t i = 0; i < D / 2; ++i) {
    const double factor = factors.empty() ? 1.0 : double(factors[size_t(i)]);
    f.push_back(std::pow(c.rope_theta, -2.0 * double(i) / double(D)) / factor);
  }
  return f;
}

namespace {

// m's tensor of p's name and shape (Error naming it otherwise).
const ModelTensor& tensor_for(const Model& m, const ParamInfo& pi) {
  const ModelTensor* t = m.find(pi.name);
  if (!t) throw Error("required tensor missing", {.field = pi.name});
  if (t->shape != pi.shape) {
    auto str = [](const std::vector<int64_t>& s) {
      std::string r;
      for (const int64_t d : s) r += (r.empty() ? "" : " x ") + std::to_string(d);
      return r;
    };
    throw Error("tensor shape does not match the configuration",
                {.field = pi.name, .expected = str(pi.shape), .found = str(t->shape)});
  }
  return *t;
}

constexpr const char* kTargetNames[kLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};
constexpr const char* kTargetTensors[kLoraTargets] = {
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};

// Inputs K and outputs N of target t.
std::pair<int64_t, int64_t> target_shape(const ModelConfig& c, int t) {
  const int64_t C = c.n_embd, Q = c.n_head * c.head_dim, KV = c.n_head_kv * c.head_dim;
  switch (t) {
    case 0:
      return {C, Q};
    case 1:
    case 2:
      return {C, KV};
    case 3:
      return {Q, C};
    case 4:
    case 5:
      return {C, c.n_ff};
    default:
      return {c.n_ff, C};
  }
}

}  // namespace

std::string lora_base_name(int64_t layer, int t) {
  return "blk." + std::to_string(layer) + "." + kTargetTensors[t] + ".weight";
}

uint32_t parse_lora_targets(const std::string& s) {
  if (s == "all-linear" || s == "all") return kAllLinear;
  uint32_t m = 0;
  size_t i = 0;
  while (i <= s.size()) {
    const size_t j = std::min(s.find(',', i), s.size());
    std::string item = s.substr(i, j - i);
    if (item.ends_with("_proj")) item.resize(item.size() - 5);  // PEFT's q_proj, ...
    int t = 0;
    while (t < kLoraTargets && item != kTargetNames[t]) ++t;
    if (t == kLoraTargets) {
      throw Error("unknown LoRA target",
                  {.field = "--lora-targets",
                   .expected = "all-linear, or a comma list of q,k,v,o,gate,up,down",
                   .found = item});
    }
    m |= 1u << t;
    i = j + 1;
  }
  return m;
}

std::string lora_targets_name(uint32_t targets) {
  std::string r;
  for (int t = 0; t < kLoraTargets; ++t) {
    if (!(targets >> t & 1u)) continue;
    if (!r.empty()) r += ',';
    r += kTargetNames[t];
  }
  return r;
}

ParamLayout ParamLayout::lora(const ModelConfig& c, const LoraConfig& lc) {
  ParamLayout l;
  for (int64_t i = 0; i < c.n_layer; ++i) {
    for (int t = 0; t < kLoraTargets; ++t) {
      if (!(lc.targets >> t & 1u)) continue;
      const auto [K, N] = target_shape(c, t);
      const std::string b = lora_base_name(i, t);
      l.params.push_back({b + ".lora_a", {lc.rank, K}, l.total, lc.rank * K, true});
      l.total += lc.rank * K;
      l.params.push_back({b + ".lora_b", {N, lc.rank}, l.total, N * lc.rank, true});
      l.total += N * lc.rank;
    }
  }
  return l;
}

std::vector<float> init_lora(const ParamLayout& l, uint64_t seed) {
  std::vector<float> w(size_t(l.total), 0.0f);
  for (size_t i = 0; i < l.params.size(); ++i) {
    const ParamInfo& p = l.params[i];
    if (p.name.ends_with(".lora_b")) continue;
    const double bound = 1.0 / std::sqrt(double(p.shape[1]));
    Rng rng(seed * 0x9E3779B97F4A7C15ull + i);
    for (int64_t j = 0; j < p.size; ++j)
      w[size_t(p.offset + j)] = float(bound * (2.0 * rng.uniform() - 1.0));
  }
  return w;
}

LoraAdapter lora_adapter_of(const ParamLayout& l, const std::vector<float>& w,
                            const std::string& arch, double alpha) {
  LoraAdapter ad;
  ad.arch = arch, ad.alpha = float(alpha);
  for (const ParamInfo& pa : l.params) {
    if (!pa.name.ends_with(".lora_a")) continue;
    const std::string base = pa.name.substr(0, pa.name.size() - 7);
    const ParamInfo* pb = l.find(base + ".lora_b");
    LoraPair p{pa.shape[0], pa.shape[1], pb->shape[0], {}, {}};
    p.a.assign(w.begin() + pa.offset, w.begin() + pa.offset + pa.size);
    p.b.assign(w.begin() + pb->offset, w.begin() + pb->offset + pb->size);
    ad.pairs.emplace(base, std::move(p));
  }
  return ad;
}

template <typename T>
FrozenBase<T>::FrozenBase(const Model& m, const ModelConfig& c) {
  for (const ParamInfo& pi : ParamLayout::of(c).params) {
    const ModelTensor& t = tensor_for(m, pi);
    const int64_t K = t.row_length();
    if (pi.shape.size() == 2) {
      if (std::is_same_v<T, float> && t.format == Format::parse("f32") &&
          reinterpret_cast<uintptr_t>(t.data) % alignof(float) == 0) {  // used in place
        m_[pi.name] = Matrix<T>(reinterpret_cast<const T*>(t.data));
      } else {
        m_[pi.name] = Matrix<T>(&t.format, t.data);
      }
      stored_bytes_ += t.bytes;
      continue;
    }
    std::vector<float> v(size_t(pi.size));
    t.format.dequantize_row(t.data, K, v.data());
    own_.emplace_back(v.begin(), v.end());
    m_[pi.name] = Matrix<T>(own_.back().data());
  }
}

template <typename T>
FrozenBase<T>::FrozenBase(const ParamLayout& l, const T* w) {
  for (const ParamInfo& pi : l.params) m_[pi.name] = Matrix<T>(w + pi.offset);
}

template <typename T>
Matrix<T> FrozenBase<T>::matrix(const std::string& name) const {
  const auto it = m_.find(name);
  return it == m_.end() ? Matrix<T>() : it->second;
}

template class FrozenBase<float>;
template class FrozenBase<double>;

std::vector<float> weights_of(const Model& m, const ParamLayout& l) {
  std::vector<float> w(size_t(l.total));
  for (const ParamInfo& pi : l.params) {
    const ModelTensor* t = &tensor_for(m, pi);
    const int64_t K = t->row_length(), rows = t->rows();
    const uint64_t rb = t->format.row_bytes(K);
    for (int64_t r = 0; r < rows; ++r)
      t->format.dequantize_row(t->data + uint64_t(r) * rb, K, w.data() + pi.offset + r * K);
  }
  return w;
}

std::vector<float> init_weights(const ParamLayout& l, const ModelConfig& c, uint64_t seed) {
  std::vector<float> w(size_t(l.total), 0.0f);
  const double residual = 1.0 / std::sqrt(2.0 * double(std::max<int64_t>(1, c.n_layer)));
  for (size_t i = 0; i < l.params.size(); ++i) {
    const ParamInfo& p = l.params[i];
    float* x = w.data() + p.offset;
    if (p.name.find("norm") != std::string::npos) {
      std::fill(x, x + p.size, 1.0f);
      continue;
    }
    if (p.shape.size() == 1) continue;  // biases
    const bool proj = p.name.find("attn_output") != std::string::npos ||
                      p.name.find("ffn_down") != std::string::npos;
    const double sd = 0.02 * (proj ? residual : 1.0);
    Rng rng(seed * 0x9E3779B97F4A7C15ull + i);
    for (int64_t j = 0; j < p.size; ++j) x[j] = float(sd * rng.normal());
  }
  return w;
}

std::vector<double> rope_inv_freq(const Model& m) {
  std::vector<float> factors;
  if (const ModelTensor* f = m.find("rope_freqs.weight")) {
    factors.resize(size_t(f->row_length()));
    f->format.dequantize_row(f->data, f->row_length(), factors.data());
  }
  return rope_inv_freq(m.config, factors);
}

template <typename T>
Transformer<T>::Transformer(const ModelConfig& c, std::vector<double> inv_freq, int64_t vocab_slice,
                            const LoraConfig& lora)
    : c_(c),
      inv_freq_(std::move(inv_freq)),
      slice_(vocab_slice),
      lora_(lora),
      layout_(lora.rank > 0 ? ParamLayout::lora(c, lora) : ParamLayout::of(c)) {
  if (lora.rank < 0 || (lora.rank > 0 && (lora.targets & kAllLinear) == 0)) {
    throw Error("LoRA needs a positive rank and at least one target",
                {.field = "--lora-r", .found = std::to_string(lora.rank)});
  }
  if (!(lora.dropout >= 0 && lora.dropout < 1)) {
    throw Error("LoRA dropout out of range", {.field = "--lora-dropout",
                                              .expected = "0 <= p < 1",
                                              .found = std::to_string(lora.dropout)});
  }
  if (c.n_head <= 0 || c.n_head_kv <= 0 || c.n_head % c.n_head_kv != 0 || c.head_dim % 2 != 0) {
    throw Error("cannot train this attention shape",
                {.field = "n_head / n_head_kv / head_dim",
                 .expected = "n_head a multiple of n_head_kv, even head_dim",
                 .found = std::to_string(c.n_head) + " / " + std::to_string(c.n_head_kv) + " / " +
                          std::to_string(c.head_dim)});
  }
  if (int64_t(inv_freq_.size()) != c.head_dim / 2) {
    throw Error("RoPE frequencies do not match the head dimension",
                {.field = "rope_freqs",
                 .expected = std::to_string(c.head_dim / 2),
                 .found = std::to_string(inv_freq_.size())});
  }
}

template <typename T>
const T* Transformer<T>::p(const T* w, const std::string& name) const {
  const ParamInfo* i = layout_.find(name);
  return i ? w + i->offset : nullptr;
}
template <typename T>
T* Transformer<T>::p(T* w, const std::string& name) const {
  const ParamInfo* i = layout_.find(name);
  return i ? w + i->offset : nullptr;
}
template <typename T>
Matrix<T> Transformer<T>::W(const T* w, const std::string& name) const {
  if (lora_.rank > 0) {
    LOWBIT_CHECK(base_ != nullptr, "a LoRA model needs its base (set_base)");
    return base_->matrix(name);
  }
  return Matrix<T>(p(w, name));
}

template <typename T>
Matrix<T> Transformer<T>::output_weight(const T* w) const {
  return W(w, c_.tied_output ? "token_embd.weight" : "output.weight");
}

template <typename T>
uint64_t Transformer<T>::drop_key(int64_t l, int t) const {
  return drop_key_ * 0x100000001B3ull + uint64_t(l * kLoraTargets + t) * 0xD1B54A32D192ED03ull;
}

template <typename T>
const T* Transformer<T>::act_input(const T* x, int64_t B, int64_t K) {
  if (act_bits_ <= 0) return x;
  act_q_.resize(size_t(B * K));
  act_fake_quant(x, B, K, act_bits_, act_q_.data());
  return act_q_.data();
}

template <typename T>
void Transformer<T>::lin_forward(const T* w, int64_t l, int t, const T* x, int64_t K, int64_t N,
                                 T* y, LayerActs& a) {
  const int64_t B = S_ * L_;
  x = act_input(x, B, K);
  const std::string name = lora_base_name(l, t);
  const std::string bias = name.substr(0, name.size() - 7) + ".bias";
  linear_forward(x, W(w, name), V(w, bias), B, K, N, y);
  if (!adapted(t)) return;
  const T* xin = x;
  if (lora_.dropout > 0 && training_) {
    drop_x_.resize(size_t(B * K));
    dropout(x, B * K, lora_.dropout, drop_key(l, t), drop_x_.data(), false);
    xin = drop_x_.data();
  }
  std::vector<T>& u = a.u[size_t(t)];
  u.resize(size_t(B * lora_.rank));
  lora_forward(xin, p(w, name + ".lora_a"), p(w, name + ".lora_b"), B, K, N, lora_.rank,
               T(lora_.scale()), u.data(), y);
}

template <typename T>
void Transformer<T>::lin_backward(const T* w, T* grad, int64_t l, int t, const T* dy, const T* x,
                                  int64_t K, int64_t N, T* dx, const LayerActs& a) {
  const int64_t B = S_ * L_;
  x = act_input(x, B, K);  // the forward's input again; dx passes straight through
  const std::string name = lora_base_name(l, t);
  const std::string bias = name.substr(0, name.size() - 7) + ".bias";
  linear_backward(dy, x, W(w, name), B, K, N, dx, p(grad, name), p(grad, bias));
  if (!adapted(t)) return;
  const T* xin = x;
  T* dxin = dx;
  if (lora_.dropout > 0 && training_) {  // the forward's masked input, redrawn; its gradient apart
    drop_x_.resize(size_t(B * K));
    dropout(x, B * K, lora_.dropout, drop_key(l, t), drop_x_.data(), false);
    xin = drop_x_.data();
    drop_dx_.assign(size_t(B * K), T(0));
    dxin = drop_dx_.data();
  }
  lora_backward(dy, xin, p(w, name + ".lora_a"), p(w, name + ".lora_b"), a.u[size_t(t)].data(), B,
                K, N, lora_.rank, T(lora_.scale()), dxin, p(grad, name + ".lora_a"),
                p(grad, name + ".lora_b"));
  if (dxin != dx) dropout(drop_dx_.data(), B * K, lora_.dropout, drop_key(l, t), dx, true);
}

// Layer l of the forward from x_in (B, C): every activation its backward needs into a (but
// a.x_in, which the caller keeps), the layer's output into x_out (B, C; may not alias x_in).
template <typename T>
void Transformer<T>::layer_forward(const T* w, int64_t l, const T* x_in, LayerActs& a, T* x_out) {
  const int64_t S = S_, L = L_, B = S * L, C = c_.n_embd, H = c_.n_head, G = c_.n_head_kv,
                D = c_.head_dim, F = c_.n_ff, Q = H * D, KV = G * D;
  const std::string n = "blk." + std::to_string(l) + ".";
  auto sz = [](std::vector<T>& v, int64_t k) { v.resize(size_t(k)); };
  sz(a.r1, B), sz(a.q, B * Q), sz(a.k, B * KV), sz(a.v, B * KV);
  if (keep_probs_) sz(a.probs, S * H * L * L);
  sz(a.att, B * Q), sz(a.x_mid, B * C);
  sz(a.r2, B), sz(a.gate, B * F), sz(a.up, B * F);
  // Lean: the norms' outputs and the SwiGLU product in scratch, computed again in the backward.
  std::vector<T>&xn1 = lean_ ? lean_xn_ : a.xn1, &xn2 = lean_ ? lean_xn_ : a.xn2,
  &act = lean_ ? lean_act_ : a.act;
  sz(xn1, B * C), sz(xn2, B * C), sz(act, B * F);
  // Attention block: x_mid = x + attention(norm(x)) · Woᵀ.
  rmsnorm_forward(x_in, V(w, n + "attn_norm.weight"), B, C, c_.rms_eps, xn1.data(), a.r1.data());
  lin_forward(w, l, 0, xn1.data(), C, Q, a.q.data(), a);
  lin_forward(w, l, 1, xn1.data(), C, KV, a.k.data(), a);
  lin_forward(w, l, 2, xn1.data(), C, KV, a.v.data(), a);
  rope_forward(a.q.data(), pos_.data(), B, H, D, inv_freq_, c_.rope_neox);
  rope_forward(a.k.data(), pos_.data(), B, G, D, inv_freq_, c_.rope_neox);
  attention_forward(a.q.data(), a.k.data(), a.v.data(), S, L, H, G, D, a.att.data(),
                    keep_probs_ ? a.probs.data() : static_cast<T*>(nullptr));
  lin_forward(w, l, 3, a.att.data(), Q, C, a.x_mid.data(), a);
  for (int64_t i = 0; i < B * C; ++i) a.x_mid[size_t(i)] += x_in[i];
  // Feed-forward block: x = x_mid + (silu(norm·Wgᵀ) * norm·Wuᵀ) · Wdᵀ.
  rmsnorm_forward(a.x_mid.data(), V(w, n + "ffn_norm.weight"), B, C, c_.rms_eps, xn2.data(),
                  a.r2.data());
  lin_forward(w, l, 4, xn2.data(), C, F, a.gate.data(), a);
  lin_forward(w, l, 5, xn2.data(), C, F, a.up.data(), a);
  swiglu_forward(a.gate.data(), a.up.data(), B * F, act.data());
  lin_forward(w, l, 6, act.data(), F, C, x_out, a);
  for (int64_t i = 0; i < B * C; ++i) x_out[i] += a.x_mid[size_t(i)];
}

template <typename T>
void Transformer<T>::forward(const T* w, const int32_t* tokens, int64_t S, int64_t L) {
  const int64_t B = S * L, C = c_.n_embd;
  S_ = S, L_ = L;
  tokens_.assign(tokens, tokens + B);
  for (int64_t b = 0; b < B; ++b) {
    if (tokens[b] < 0 || tokens[b] >= c_.n_vocab) {
      throw Error("token id out of range", {.field = "token",
                                            .expected = "< " + std::to_string(c_.n_vocab),
                                            .found = std::to_string(tokens[b])});
    }
  }
  choose_lean(L);
  pos_.resize(size_t(B));
  for (int64_t b = 0; b < B; ++b) pos_[size_t(b)] = int32_t(b % L);
  acts_.resize(size_t(c_.n_layer));
  std::vector<T>& x = x_;
  x.resize(size_t(B * C));
  embedding_forward(W(w, "token_embd.weight"), tokens, B, C, x.data());
  for (int64_t l = 0; l < c_.n_layer; ++l) {
    LayerActs& a = acts_[size_t(l)];
    if (recompute_ && !a.q.empty()) a = LayerActs{};  // only x_in is kept
    a.x_in = x;
    // With recomputation only each layer's input is kept; the rest goes to one scratch set.
    layer_forward(w, l, a.x_in.data(), recompute_ ? work_ : a, x.data());
  }
  x_out_ = x;
  xnf_.resize(size_t(B * C)), rf_.resize(size_t(B));
  rmsnorm_forward(x_out_.data(), V(w, "output_norm.weight"), B, C, c_.rms_eps, xnf_.data(),
                  rf_.data());
}

template <typename T>
void Transformer<T>::choose_lean(int64_t L) {
  const double C = double(c_.n_embd), Q = double(c_.n_head * c_.head_dim),
               KV = double(c_.n_head_kv * c_.head_dim), F = double(c_.n_ff);
  const double layer = 2 * C * Q + 2 * C * KV + 3 * C * F;  // a layer's weights
  // Per token: computing the probabilities again takes ~Q L / 2 multiply-adds (causal), a LoRA
  // step ~2 x layer (the forward, and the backward's dx).
  const bool cheap = Q * double(L) / 2 / (2 * layer) < 0.05;
  lean_ = lean_forced_.value_or(lora_.rank > 0 && cheap);
  keep_probs_ = !lean_;
}

template <typename T>
int64_t Transformer<T>::slice_for(int64_t B) const {
  if (slice_ > 0) return slice_;
  constexpr int64_t kBudget = int64_t(256) << 20;  // bytes of logits
  return std::clamp<int64_t>(kBudget / (B * int64_t(sizeof(T))), 1, c_.n_vocab);
}

template <typename T>
double Transformer<T>::loss(const T* w, const int32_t* tokens, const int32_t* targets, int64_t S,
                            int64_t L, const T* soft) {
  training_ = false;
  forward(w, tokens, S, L);
  return cross_entropy(xnf_.data(), output_weight(w), targets, S * L, c_.n_embd, c_.n_vocab,
                       slice_for(S * L), T(0), static_cast<T*>(nullptr), static_cast<T*>(nullptr),
                       &logits_, soft);
}

template <typename T>
std::vector<T> Transformer<T>::logits(const T* w, const int32_t* tokens, int64_t S, int64_t L) {
  training_ = false;
  forward(w, tokens, S, L);
  std::vector<T> z(size_t(S * L * c_.n_vocab));
  linear_forward(xnf_.data(), output_weight(w), static_cast<const T*>(nullptr), S * L, c_.n_embd,
                 c_.n_vocab, z.data());
  return z;
}

template <typename T>
double Transformer<T>::loss_and_grad(const T* w, const int32_t* tokens, const int32_t* targets,
                                     int64_t S, int64_t L, T* grad, T grad_scale, const T* soft) {
  for (int64_t b = 0; b < S * L; ++b) {
    if (targets[b] < 0 || targets[b] >= c_.n_vocab) {
      throw Error("target token id out of range", {.field = "token",
                                                   .expected = "< " + std::to_string(c_.n_vocab),
                                                   .found = std::to_string(targets[b])});
    }
  }
  training_ = true;
  forward(w, tokens, S, L);
  const int64_t B = S * L, C = c_.n_embd, H = c_.n_head, G = c_.n_head_kv, D = c_.head_dim,
                F = c_.n_ff, Q = H * D, KV = G * D;
  // Output head and loss: dxnf (B, C), the output matrix's gradient (the embedding's when tied).
  auto fresh = [](std::vector<T>& v, int64_t n) { v.assign(size_t(n), T(0)); };
  fresh(dxnf_, B * C), fresh(dx_, B * C), fresh(dact_, B * F), fresh(dgate_, B * F);
  fresh(dup_, B * F), fresh(dxn_, B * C), fresh(datt_, B * Q), fresh(dq_, B * Q);
  fresh(dk_, B * KV), fresh(dv_, B * KV);
  std::vector<T>&dxnf = dxnf_, &dx = dx_, &dact = dact_, &dgate = dgate_, &dup = dup_, &dxn = dxn_,
  &datt = datt_, &dq = dq_, &dk = dk_, &dv = dv_;
  const double loss = cross_entropy(
      xnf_.data(), output_weight(w), targets, B, C, c_.n_vocab, slice_for(S * L), grad_scale,
      dxnf.data(), p(grad, c_.tied_output ? "token_embd.weight" : "output.weight"), &logits_, soft);
  // dx: d/d(residual stream), layer by layer downwards.
  rmsnorm_backward(dxnf.data(), x_out_.data(), V(w, "output_norm.weight"), rf_.data(), B, C,
                   dx.data(), p(grad, "output_norm.weight"));
  auto zero = [](std::vector<T>& v) { std::fill(v.begin(), v.end(), T(0)); };
  for (int64_t l = c_.n_layer - 1; l >= 0; --l) {
    const std::string n = "blk." + std::to_string(l) + ".";
    const std::vector<T>& x_in = acts_[size_t(l)].x_in;
    if (recompute_) layer_forward(w, l, x_in.data(), work_, x_.data());  // x_ is free by now
    const LayerActs& a = recompute_ ? work_ : acts_[size_t(l)];
    // x = x_mid + act · Wdᵀ: dx reaches x_mid directly and through the feed-forward.
    zero(dact), zero(dgate), zero(dup), zero(dxn);
    // Lean: the SwiGLU product and the norms' outputs again, as the forward made them.
    const T *act = a.act.data(), *xn2 = a.xn2.data(), *xn1 = a.xn1.data();
    if (lean_) {
      lean_act_.resize(size_t(B * F)), lean_xn_.resize(size_t(B * C)), lean_r_.resize(size_t(B));
      swiglu_forward(a.gate.data(), a.up.data(), B * F, lean_act_.data());
      rmsnorm_forward(a.x_mid.data(), V(w, n + "ffn_norm.weight"), B, C, c_.rms_eps,
                      lean_xn_.data(), lean_r_.data());
      act = lean_act_.data(), xn2 = lean_xn_.data();
    }
    lin_backward(w, grad, l, 6, dx.data(), act, F, C, dact.data(), a);
    swiglu_backward(dact.data(), a.gate.data(), a.up.data(), B * F, dgate.data(), dup.data());
    lin_backward(w, grad, l, 4, dgate.data(), xn2, C, F, dxn.data(), a);
    lin_backward(w, grad, l, 5, dup.data(), xn2, C, F, dxn.data(), a);
    rmsnorm_backward(dxn.data(), a.x_mid.data(), V(w, n + "ffn_norm.weight"), a.r2.data(), B, C,
                     dx.data(), p(grad, n + "ffn_norm.weight"));
    // x_mid = x_in + att · Woᵀ.
    zero(datt), zero(dq), zero(dk), zero(dv), zero(dxn);
    lin_backward(w, grad, l, 3, dx.data(), a.att.data(), Q, C, datt.data(), a);
    attention_backward(datt.data(), a.q.data(), a.k.data(), a.v.data(),
                       keep_probs_ ? a.probs.data() : static_cast<const T*>(nullptr), S, L, H, G, D,
                       dq.data(), dk.data(), dv.data());
    rope_backward(dq.data(), pos_.data(), B, H, D, inv_freq_, c_.rope_neox);
    rope_backward(dk.data(), pos_.data(), B, G, D, inv_freq_, c_.rope_neox);
    if (lean_) {
      rmsnorm_forward(x_in.data(), V(w, n + "attn_norm.weight"), B, C, c_.rms_eps, lean_xn_.data(),
                      lean_r_.data());
      xn1 = lean_xn_.data();
    }
    lin_backward(w, grad, l, 0, dq.data(), xn1, C, Q, dxn.data(), a);
    lin_backward(w, grad, l, 1, dk.data(), xn1, C, KV, dxn.data(), a);
    lin_backward(w, grad, l, 2, dv.data(), xn1, C, KV, dxn.data(), a);
    rmsnorm_backward(dxn.data(), x_in.data(), V(w, n + "attn_norm.weight"), a.r1.data(), B, C,
                     dx.data(), p(grad, n + "attn_norm.weight"));
  }
  if (T* de = p(grad, "token_embd.weight")) embedding_backward(dx.data(), tokens_.data(), B, C, de);
  return loss;
}

template class Transformer<float>;
template class Transformer<double>;

}  // namespace lowbit::train
