// The F32 engine against an independent reference: a plain, straight-line LLaMA forward pass
// written here in double precision (no KV cache: full causal attention recomputed for the whole
// prompt), sharing nothing with src/engine/ beyond file loading. Logits at every position of a
// 64-token prompt must agree within 1e-4 relative, and the argmax must agree everywhere.
//
// stories260K (llama2.c .bin) is read through Model::load (its Q/K are in the interleaved-pair
// RoPE layout already). TinyStories-656K is read straight from its safetensors file under the
// Hugging Face names with config.json, and rotated in HF's rotate-half form, so the comparison
// also checks lowbit's HF -> GGUF Q/K row permutation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/llama.h"
#include "engine/tokenizer.h"
#include "io/safetensors.h"
#include "lowbit/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

constexpr int kPromptLen = 64;
constexpr double kTol = 1e-4;

enum class RopeLayout {
  kInterleaved,  // GGUF / llama2.c: dims (2i, 2i+1) of a head rotate by pos * theta^(-2i/D)
  kRotateHalf,   // Hugging Face: dims (i, i + D/2) of a head rotate by pos * theta^(-2i/D)
};

struct RefLayer {
  std::vector<float> attn_norm, wq, wk, wv, wo, ffn_norm, gate, up, down;
};

struct RefModel {
  int64_t n_vocab = 0, n_embd = 0, n_ff = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  double eps = 0, theta = 0;
  RopeLayout rope = RopeLayout::kInterleaved;
  std::vector<float> embd, out_norm, output;  // output: (n_vocab, n_embd); the embedding if tied
  std::vector<RefLayer> layers;
};

using Logits = std::vector<std::vector<double>>;  // [position][vocab]

// ---- the reference forward pass -------------------------------------------------------------

// y (rows) = W (rows, K) x (K), accumulated in double.
std::vector<double> ref_matvec(const std::vector<float>& w, const std::vector<double>& x,
                               int64_t rows) {
  const int64_t K = int64_t(x.size());
  EXPECT_EQ(int64_t(w.size()), rows * K);
  std::vector<double> y(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t k = 0; k < K; ++k) s += double(w[size_t(r * K + k)]) * x[size_t(k)];
    y[size_t(r)] = s;
  }
  return y;
}

// x / sqrt(mean(x^2) + eps) * w
std::vector<double> ref_rmsnorm(const std::vector<double>& x, const std::vector<float>& w,
                                double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double scale = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * scale * double(w[i]);
  return y;
}

// Rotates every head of v (heads * D) for position pos.
void ref_rope(std::vector<double>& v, int64_t heads, int64_t D, int64_t pos, double theta,
              RopeLayout layout) {
  for (int64_t h = 0; h < heads; ++h) {
    double* head = v.data() + h * D;
    for (int64_t i = 0; i < D / 2; ++i) {
      const double angle = double(pos) * std::pow(theta, -double(2 * i) / double(D));
      const double c = std::cos(angle), s = std::sin(angle);
      const int64_t a = layout == RopeLayout::kInterleaved ? 2 * i : i;
      const int64_t b = layout == RopeLayout::kInterleaved ? 2 * i + 1 : i + D / 2;
      const double x0 = head[a], x1 = head[b];
      head[a] = x0 * c - x1 * s;
      head[b] = x0 * s + x1 * c;
    }
  }
}

// Logits at every position of `tokens`, recomputed from scratch (no cache).
Logits reference_logits(const RefModel& m, const std::vector<int32_t>& tokens) {
  const int64_t T = int64_t(tokens.size()), C = m.n_embd, D = m.head_dim, H = m.n_head,
                G = m.n_head_kv, F = m.n_ff;
  const int64_t group = H / G;  // query heads per kv head
  const double scale = 1.0 / std::sqrt(double(D));

  // x[t] (C): the residual stream of position t.
  const size_t nT = size_t(T), nC = size_t(C);
  std::vector<std::vector<double>> x(nT, std::vector<double>(nC));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < C; ++i)
      x[size_t(t)][size_t(i)] = m.embd[size_t(tokens[size_t(t)] * C + i)];

  for (const RefLayer& L : m.layers) {
    // Attention: q (H*D), k and v (G*D) for every position, then causal softmax attention.
    std::vector<std::vector<double>> q(nT), k(nT), v(nT);
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> xn = ref_rmsnorm(x[size_t(t)], L.attn_norm, m.eps);
      q[size_t(t)] = ref_matvec(L.wq, xn, H * D);
      k[size_t(t)] = ref_matvec(L.wk, xn, G * D);
      v[size_t(t)] = ref_matvec(L.wv, xn, G * D);
      ref_rope(q[size_t(t)], H, D, t, m.theta, m.rope);
      ref_rope(k[size_t(t)], G, D, t, m.theta, m.rope);
    }
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> att_out(size_t(H * D), 0.0);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kvh = h / group;
        std::vector<double> score(size_t(t + 1));
        double mx = -INFINITY;
        for (int64_t s = 0; s <= t; ++s) {
          double d = 0;
          for (int64_t i = 0; i < D; ++i)
            d += q[size_t(t)][size_t(h * D + i)] * k[size_t(s)][size_t(kvh * D + i)];
          score[size_t(s)] = d * scale;
          mx = std::max(mx, score[size_t(s)]);
        }
        double sum = 0;
        for (double& e : score) sum += (e = std::exp(e - mx));
        for (int64_t s = 0; s <= t; ++s)
          for (int64_t i = 0; i < D; ++i)
            att_out[size_t(h * D + i)] +=
                score[size_t(s)] / sum * v[size_t(s)][size_t(kvh * D + i)];
      }
      const std::vector<double> o = ref_matvec(L.wo, att_out, C);
      for (int64_t i = 0; i < C; ++i) x[size_t(t)][size_t(i)] += o[size_t(i)];
    }
    // Feed-forward: down(silu(gate(xn)) * up(xn)).
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> xn = ref_rmsnorm(x[size_t(t)], L.ffn_norm, m.eps);
      const std::vector<double> g = ref_matvec(L.gate, xn, F);
      const std::vector<double> u = ref_matvec(L.up, xn, F);
      std::vector<double> hidden(static_cast<size_t>(F));
      for (int64_t i = 0; i < F; ++i) {
        const double a = g[size_t(i)];
        hidden[size_t(i)] = a / (1.0 + std::exp(-a)) * u[size_t(i)];
      }
      const std::vector<double> d = ref_matvec(L.down, hidden, C);
      for (int64_t i = 0; i < C; ++i) x[size_t(t)][size_t(i)] += d[size_t(i)];
    }
  }

  Logits out(nT);
  for (int64_t t = 0; t < T; ++t)
    out[size_t(t)] = ref_matvec(m.output, ref_rmsnorm(x[size_t(t)], m.out_norm, m.eps), m.n_vocab);
  return out;
}

// ---- loading the reference weights ----------------------------------------------------------

std::vector<float> floats_of(const uint8_t* data, uint64_t bytes, uint64_t want_elems,
                             const std::string& name) {
  EXPECT_EQ(bytes, want_elems * 4) << name;
  std::vector<float> v(size_t(bytes / 4));
  std::memcpy(v.data(), data, v.size() * 4);  // views are not aligned
  return v;
}

// From a lowbit Model (GGUF names, interleaved Q/K layout); F32 tensors only.
RefModel ref_from_model(const Model& m) {
  const ModelConfig& c = m.config;
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_EQ(c.rope_factor, 0.0);
  EXPECT_EQ(m.find("rope_freqs.weight"), nullptr);
  RefModel r{c.n_vocab,    c.n_embd,
             c.n_ff,       c.n_layer,
             c.n_head,     c.n_head_kv,
             c.head_dim,   c.rms_eps,
             c.rope_theta, RopeLayout::kInterleaved,
             {},           {},
             {},           {}};
  auto get = [&](const std::string& name, uint64_t elems) {
    const ModelTensor* t = m.find(name);
    if (!t) {
      ADD_FAILURE() << "missing " << name;
      return std::vector<float>();
    }
    EXPECT_EQ(t->format.name(), "f32") << name;
    return floats_of(t->data, t->bytes, elems, name);
  };
  const uint64_t C = uint64_t(c.n_embd), F = uint64_t(c.n_ff), V = uint64_t(c.n_vocab),
                 QD = uint64_t(c.n_head * c.head_dim), KD = uint64_t(c.n_head_kv * c.head_dim);
  r.embd = get("token_embd.weight", V * C);
  r.out_norm = get("output_norm.weight", C);
  r.output = m.find("output.weight") ? get("output.weight", V * C) : r.embd;
  EXPECT_EQ(c.tied_output, m.find("output.weight") == nullptr);
  for (int64_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    r.layers.push_back({get(b + "attn_norm.weight", C), get(b + "attn_q.weight", QD * C),
                        get(b + "attn_k.weight", KD * C), get(b + "attn_v.weight", KD * C),
                        get(b + "attn_output.weight", C * QD), get(b + "ffn_norm.weight", C),
                        get(b + "ffn_gate.weight", F * C), get(b + "ffn_up.weight", F * C),
                        get(b + "ffn_down.weight", C * F)});
  }
  return r;
}

// Straight from a Hugging Face checkpoint directory (config.json + model.safetensors, F32),
// Hugging Face names, rotate-half Q/K.
RefModel ref_from_hf_dir(const std::string& dir) {
  std::ifstream in(dir + "/config.json");
  const nlohmann::json cfg = nlohmann::json::parse(in);
  RefModel r;
  r.n_vocab = cfg.at("vocab_size").get<int64_t>();
  r.n_embd = cfg.at("hidden_size").get<int64_t>();
  r.n_ff = cfg.at("intermediate_size").get<int64_t>();
  r.n_layer = cfg.at("num_hidden_layers").get<int64_t>();
  r.n_head = cfg.at("num_attention_heads").get<int64_t>();
  r.n_head_kv = cfg.value("num_key_value_heads", r.n_head);
  r.head_dim = r.n_embd / r.n_head;
  r.eps = cfg.at("rms_norm_eps").get<double>();
  r.theta = cfg.value("rope_theta", 10000.0);
  r.rope = RopeLayout::kRotateHalf;
  EXPECT_TRUE(!cfg.contains("rope_scaling") || cfg["rope_scaling"].is_null());
  EXPECT_FALSE(cfg.value("attention_bias", false));

  const SafetensorsFile st(dir + "/model.safetensors");
  auto get = [&](const std::string& name, uint64_t elems) {
    const StTensor* t = st.find(name);
    if (!t) {
      ADD_FAILURE() << "missing " << name;
      return std::vector<float>();
    }
    EXPECT_EQ(t->dtype, StDtype::kF32) << name;
    return floats_of(t->data, t->bytes, elems, name);
  };
  const uint64_t C = uint64_t(r.n_embd), F = uint64_t(r.n_ff), V = uint64_t(r.n_vocab),
                 QD = uint64_t(r.n_head * r.head_dim), KD = uint64_t(r.n_head_kv * r.head_dim);
  // Tied: one copy stored, under either name.
  const bool has_embed = st.find("model.embed_tokens.weight") != nullptr;
  const bool has_head = st.find("lm_head.weight") != nullptr;
  r.embd = get(has_embed ? "model.embed_tokens.weight" : "lm_head.weight", V * C);
  r.output = has_head ? get("lm_head.weight", V * C) : r.embd;
  r.out_norm = get("model.norm.weight", C);
  for (int64_t l = 0; l < r.n_layer; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".";
    r.layers.push_back(
        {get(b + "input_layernorm.weight", C), get(b + "self_attn.q_proj.weight", QD * C),
         get(b + "self_attn.k_proj.weight", KD * C), get(b + "self_attn.v_proj.weight", KD * C),
         get(b + "self_attn.o_proj.weight", C * QD), get(b + "post_attention_layernorm.weight", C),
         get(b + "mlp.gate_proj.weight", F * C), get(b + "mlp.up_proj.weight", F * C),
         get(b + "mlp.down_proj.weight", C * F)});
  }
  return r;
}

// ---- comparison -----------------------------------------------------------------------------

// BOS + the start of a real TinyStories text, kPromptLen tokens.
std::vector<int32_t> prompt(const Model& m) {
  std::ifstream in(test::fixture("text/tinystories-valid-head.txt"));
  std::stringstream ss;
  ss << in.rdbuf();
  std::vector<int32_t> ids = Tokenizer(m.tokenizer).encode(ss.str().substr(0, 2000), true);
  EXPECT_GE(ids.size(), size_t(kPromptLen));
  ids.resize(std::min(ids.size(), size_t(kPromptLen)));
  return ids;
}

Logits engine_logits(const Model& m, const std::vector<int32_t>& tokens) {
  LlamaEngine e(m);
  Logits out;
  for (size_t p = 0; p < tokens.size(); ++p) {
    const std::vector<float>& l = e.forward(tokens[p], int64_t(p));
    out.emplace_back(l.begin(), l.end());
  }
  return out;
}

// Tolerance: at every position p and vocab entry v,
//   |engine[p][v] - ref[p][v]| <= kTol * max(1, max_v |ref[p][v]|),
// i.e. relative to the logit scale of that position (floored at 1 so near-zero logits are not
// held to an absolute 1e-10), and argmax_v engine[p] == argmax_v ref[p] at every position.
struct Comparison {
  double max_rel = 0;  // max over p, v of |engine - ref| / max(1, max_v |ref[p]|)
  int64_t worst_pos = -1, worst_vocab = -1;
  int64_t argmax_mismatches = 0;
  int64_t first_argmax_mismatch = -1;
  bool ok() const { return max_rel <= kTol && argmax_mismatches == 0; }
};

Comparison compare(const Logits& engine, const Logits& ref) {
  Comparison c;
  EXPECT_EQ(engine.size(), ref.size());
  for (size_t p = 0; p < std::min(engine.size(), ref.size()); ++p) {
    const std::vector<double>& e = engine[p];
    const std::vector<double>& r = ref[p];
    EXPECT_EQ(e.size(), r.size());
    if (e.size() != r.size()) continue;
    double scale = 1;
    for (double v : r) scale = std::max(scale, std::abs(v));
    for (size_t v = 0; v < r.size(); ++v) {
      const double rel = std::abs(e[v] - r[v]) / scale;
      if (!(rel <= c.max_rel)) {  // NaN counts as the worst
        c.max_rel = std::isnan(rel) ? INFINITY : rel;
        c.worst_pos = int64_t(p);
        c.worst_vocab = int64_t(v);
      }
    }
    const auto ae = std::max_element(e.begin(), e.end()) - e.begin();
    const auto ar = std::max_element(r.begin(), r.end()) - r.begin();
    if (ae != ar) {
      if (c.argmax_mismatches++ == 0) c.first_argmax_mismatch = int64_t(p);
    }
  }
  return c;
}

std::string describe(const Comparison& c) {
  std::ostringstream os;
  os << "max relative deviation " << c.max_rel << " (position " << c.worst_pos << ", vocab "
     << c.worst_vocab << "), argmax mismatches " << c.argmax_mismatches;
  if (c.argmax_mismatches) os << " (first at position " << c.first_argmax_mismatch << ")";
  return os.str();
}

void expect_matches(const Model& m, const RefModel& ref, const std::vector<int32_t>& tokens) {
  ASSERT_EQ(tokens.size(), size_t(kPromptLen));
  const Logits want = reference_logits(ref, tokens);
  const Logits got = engine_logits(m, tokens);
  const Comparison c = compare(got, want);
  std::cout << "[ reference ] " << describe(c) << "\n";
  EXPECT_TRUE(c.ok()) << describe(c);
}

// Negative control: a reference that differs slightly (or in RoPE convention) must be caught.
void expect_caught(const Model& m, const RefModel& perturbed, const std::vector<int32_t>& tokens,
                   const std::string& what) {
  const Comparison c = compare(engine_logits(m, tokens), reference_logits(perturbed, tokens));
  std::cout << "[ control   ] " << what << ": " << describe(c) << "\n";
  EXPECT_FALSE(c.ok()) << what << " went unnoticed: " << describe(c);
}

// ---- the tests ------------------------------------------------------------------------------

TEST(ReferenceLogits, Stories260KBinMatchesAnIndependentReferenceAtEveryPosition) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  const RefModel ref = ref_from_model(m);
  expect_matches(m, ref, prompt(m));
}

TEST(ReferenceLogits, TinyStories656KMatchesAReferenceReadStraightFromSafetensors) {
  const std::string dir = test::fixture("models/tinystories-656k");
  LOWBIT_REQUIRE_FIXTURE(dir + "/model.safetensors");
  const Model m = Model::load(dir);
  const RefModel ref = ref_from_hf_dir(dir);
  // The reference reads config.json itself; the loaded model must agree with it.
  EXPECT_EQ(m.config.n_vocab, ref.n_vocab);
  EXPECT_EQ(m.config.n_layer, ref.n_layer);
  EXPECT_EQ(m.config.n_head_kv, ref.n_head_kv);
  expect_matches(m, ref, prompt(m));
}

TEST(ReferenceLogits, NegativeControlsAreCaught) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  const std::string dir = test::fixture("models/tinystories-656k");
  LOWBIT_REQUIRE_FIXTURE(p);
  LOWBIT_REQUIRE_FIXTURE(dir + "/model.safetensors");
  {
    const Model m = Model::load(p);
    const std::vector<int32_t> tokens = prompt(m);
    const RefModel ref = ref_from_model(m);
    RefModel eps = ref;  // a slightly wrong RMSNorm epsilon
    eps.eps = 1e-3;
    expect_caught(m, eps, tokens,
                  "stories260K, rms eps 1e-3 instead of " + std::to_string(ref.eps));
    // One weight off by 5%: the last layer's first down-projection weight (1% moves the
    // logits by ~4e-5, under the bound; 5% by ~2e-4).
    RefModel w = ref;
    w.layers.back().down[0] *= 1.05f;
    expect_caught(m, w, tokens, "stories260K, one ffn_down weight scaled by 1.05");
  }
  {
    const Model m = Model::load(dir);
    RefModel ref = ref_from_hf_dir(dir);
    ref.rope = RopeLayout::kInterleaved;  // HF rows rotated as if they were GGUF's layout
    expect_caught(m, ref, prompt(m), "tinystories-656k, interleaved RoPE on HF rows");
  }
}

}  // namespace
}  // namespace lowbit
