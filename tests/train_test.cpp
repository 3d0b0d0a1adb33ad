// The training engine's gradients against central finite differences in double precision: every
// op of src/train/ops.h, then whole 2-layer models (grouped KV heads; tied and untied output; with
// and without QKV biases; both RoPE layouts). The tolerance follows from the step h: the central
// difference's truncation error is O(h^2 f'''), its rounding error O(eps |f| / h); both are far
// below 1e-6 for h = 1e-5 on these O(1) functions, while a wrong derivative is off by O(|g|).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "engine/llama.h"
#include "grad_check.h"
#include "io/synth.h"
#include "lowbit/error.h"
#include "lowbit/half.h"
#include "lowbit/model.h"
#include "test_util.h"
#include "train/model.h"
#include "train/ops.h"
#include "train/optimizer.h"
#include "train/qat.h"
#include "train/trainer.h"

namespace lowbit::train {
namespace {

using test::check_grad;
using test::randn;
using test::weighted;

TEST(TrainOps, EmbeddingAndRmsnorm) {
  const int64_t B = 5, C = 7, V = 4;
  std::vector<double> table = randn(size_t(V * C), 1);
  const std::vector<int32_t> tok = {2, 0, 2, 3, 2};  // row 2 three times: the scatter sums
  const std::vector<double> r = randn(size_t(B * C), 2);
  std::vector<double> x(size_t(B * C)), dtable(table.size(), 0.0);
  embedding_backward(r.data(), tok.data(), B, C, dtable.data());
  check_grad("embedding", table, dtable, [&] {
    embedding_forward(table.data(), tok.data(), B, C, x.data());
    return weighted(r, x);
  });

  std::vector<double> xn = randn(size_t(B * C), 3), g = randn(size_t(C), 4);
  std::vector<double> y(size_t(B * C)), rstd(static_cast<size_t>(B)), dx(xn.size(), 0.0),
      dg(g.size(), 0.0);
  auto f = [&] {
    rmsnorm_forward(xn.data(), g.data(), B, C, 1e-5, y.data(), rstd.data());
    return weighted(r, y);
  };
  f();
  rmsnorm_backward(r.data(), xn.data(), g.data(), rstd.data(), B, C, dx.data(), dg.data());
  check_grad("rmsnorm dx", xn, dx, f);
  check_grad("rmsnorm dg", g, dg, f);
}

TEST(TrainOps, LinearWithAndWithoutBias) {
  const int64_t B = 4, K = 6, N = 5;
  for (const bool bias : {false, true}) {
    std::vector<double> x = randn(size_t(B * K), 10), W = randn(size_t(N * K), 11),
                        b = randn(size_t(N), 12);
    const std::vector<double> r = randn(size_t(B * N), 13);
    std::vector<double> y(size_t(B * N)), dx(x.size(), 0.0), dW(W.size(), 0.0), db(b.size(), 0.0);
    auto f = [&] {
      linear_forward(x.data(), W.data(), bias ? b.data() : nullptr, B, K, N, y.data());
      return weighted(r, y);
    };
    linear_backward(r.data(), x.data(), W.data(), B, K, N, dx.data(), dW.data(),
                    bias ? db.data() : nullptr);
    check_grad("linear dx", x, dx, f);
    check_grad("linear dW", W, dW, f);
    if (bias) check_grad("linear db", b, db, f);
  }
}

TEST(TrainOps, RopeBothLayouts) {
  const int64_t B = 3, heads = 2, D = 8;
  const std::vector<int32_t> pos = {0, 5, 17};
  std::vector<double> inv_freq = {1.0, 0.3, 0.05, 0.001};
  for (const bool neox : {false, true}) {
    std::vector<double> v = randn(size_t(B * heads * D), 20);
    const std::vector<double> r = randn(v.size(), 21);
    std::vector<double> dv = r;
    rope_backward(dv.data(), pos.data(), B, heads, D, inv_freq, neox);
    check_grad(neox ? "rope neox" : "rope", v, dv, [&] {
      std::vector<double> y = v;
      rope_forward(y.data(), pos.data(), B, heads, D, inv_freq, neox);
      return weighted(r, y);
    });
    // Position 0 is the identity.
    std::vector<double> y = v;
    rope_forward(y.data(), pos.data(), 1, heads, D, inv_freq, neox);
    for (int64_t i = 0; i < heads * D; ++i) EXPECT_DOUBLE_EQ(y[size_t(i)], v[size_t(i)]);
  }
}

// An attention op under test: random q, k, v and output weights r; f() runs the forward and
// returns sum(r * out); backward() the analytic gradients of that sum.
struct AttentionCase {
  int64_t S, L, H, G, D;
  std::vector<double> q, k, v, r, out, probs, dq, dk, dv;
  AttentionCase(int64_t s, int64_t l, int64_t h, int64_t g, int64_t d, uint64_t seed)
      : S(s), L(l), H(h), G(g), D(d) {
    const size_t nq = size_t(S * L * H * D), nkv = size_t(S * L * G * D);
    q = randn(nq, seed), k = randn(nkv, seed + 1), v = randn(nkv, seed + 2);
    r = randn(nq, seed + 3), out.resize(nq), probs.resize(size_t(S * H * L * L));
  }
  double f() {
    attention_forward(q.data(), k.data(), v.data(), S, L, H, G, D, out.data(), probs.data());
    return weighted(r, out);
  }
  void backward() {
    f();
    dq.assign(q.size(), 0.0), dk.assign(k.size(), 0.0), dv.assign(v.size(), 0.0);
    attention_backward(r.data(), q.data(), k.data(), v.data(), probs.data(), S, L, H, G, D,
                       dq.data(), dk.data(), dv.data());
  }
};

// Long sequences take the query rows in blocks (ops.cpp: kRows = 64, each block against the keys
// up to its last row): 150 rows make two full blocks and a ragged one. The output against the
// definition computed directly, the gradients against finite differences at indices in every
// block.
TEST(TrainOps, CausalAttentionAcrossRowBlocks) {
  AttentionCase c(1, 150, 2, 1, 3, 40);
  const int64_t H = c.H, D = c.D;
  const std::vector<double>&q = c.q, &k = c.k, &v = c.v, &out = c.out;
  c.backward();
  for (int64_t h = 0; h < H; ++h) {
    for (const int64_t i : {0, 1, 63, 64, 100, 127, 128, 149}) {
      std::vector<double> a(size_t(i + 1));
      double mx = -INFINITY, sum = 0;
      for (int64_t j = 0; j <= i; ++j) {
        double dot = 0;
        for (int64_t d = 0; d < D; ++d)
          dot += q[size_t((i * H + h) * D + d)] * k[size_t(j * D + d)];
        a[size_t(j)] = dot / std::sqrt(double(D)), mx = std::max(mx, a[size_t(j)]);
      }
      for (double& x : a) sum += x = std::exp(x - mx);
      for (int64_t d = 0; d < D; ++d) {
        double o = 0;
        for (int64_t j = 0; j <= i; ++j) o += a[size_t(j)] / sum * v[size_t(j * D + d)];
        EXPECT_NEAR(out[size_t((i * H + h) * D + d)], o, 1e-12) << "row " << i << " head " << h;
      }
    }
  }
  std::vector<size_t> at_q, at_kv;  // rows 0, 63, 64, 127, 128, 149: every element of each
  for (const int64_t i : {0, 63, 64, 127, 128, 149}) {
    for (int64_t e = 0; e < H * D; ++e) at_q.push_back(size_t(i * H * D + e));
    for (int64_t e = 0; e < c.G * D; ++e) at_kv.push_back(size_t(i * c.G * D + e));
  }
  auto f = [&] { return c.f(); };
  check_grad("attention dq (blocks)", c.q, c.dq, f, at_q);
  check_grad("attention dk (blocks)", c.k, c.dk, f, at_kv);
  check_grad("attention dv (blocks)", c.v, c.dv, f, at_kv);
}

TEST(TrainOps, CausalAttentionGroupedHeads) {
  AttentionCase c(2, 4, 4, 2, 3, 30);
  const int64_t S = c.S, L = c.L, H = c.H, G = c.G, D = c.D;
  c.backward();
  auto f = [&] { return c.f(); };
  check_grad("attention dq", c.q, c.dq, f);
  check_grad("attention dk", c.k, c.dk, f);
  check_grad("attention dv", c.v, c.dv, f);
  const std::vector<double>&out = c.out, &v = c.v;
  // Causality: the first token of each sequence attends to itself only.
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t h = 0; h < H; ++h) {
      const double* o = &out[size_t(((s * L) * H + h) * D)];
      const double* v0 = &v[size_t(((s * L) * G + h / (H / G)) * D)];
      for (int64_t d = 0; d < D; ++d) EXPECT_NEAR(o[d], v0[d], 1e-12);
    }
  }
}

TEST(TrainOps, SwiGlu) {
  const int64_t n = 9;
  std::vector<double> g = randn(size_t(n), 40, 2.0), u = randn(size_t(n), 41);
  const std::vector<double> r = randn(size_t(n), 42);
  std::vector<double> y(static_cast<size_t>(n)), dg(static_cast<size_t>(n), 0.0),
      du(static_cast<size_t>(n), 0.0);
  auto f = [&] {
    swiglu_forward(g.data(), u.data(), n, y.data());
    return weighted(r, y);
  };
  swiglu_backward(r.data(), g.data(), u.data(), n, dg.data(), du.data());
  check_grad("swiglu dg", g, dg, f);
  check_grad("swiglu du", u, du, f);
}

// The fused head: its loss against log-softmax computed plainly, its gradients against finite
// differences, and slices of every size giving the same loss and gradients.
TEST(TrainOps, CrossEntropyInVocabularySlices) {
  const int64_t B = 3, C = 4, V = 7;
  std::vector<double> h = randn(size_t(B * C), 50), W = randn(size_t(V * C), 51);
  const std::vector<int32_t> t = {6, 0, 3};
  double plain = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> z(static_cast<size_t>(V));
    double mx = -1e300;
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t c = 0; c < C; ++c) z[size_t(v)] += h[size_t(b * C + c)] * W[size_t(v * C + c)];
      mx = std::max(mx, z[size_t(v)]);
    }
    double s = 0;
    for (const double zv : z) s += std::exp(zv - mx);
    plain += mx + std::log(s) - z[size_t(t[size_t(b)])];
  }
  std::vector<double> dh0, dW0;
  for (const int64_t slice : {V, int64_t(1), int64_t(3), int64_t(100)}) {
    std::vector<double> dh(h.size(), 0.0), dW(W.size(), 0.0);
    const double loss =
        cross_entropy(h.data(), W.data(), t.data(), B, C, V, slice, 0.5, dh.data(), dW.data());
    EXPECT_NEAR(loss, plain, 1e-12) << "slice " << slice;
    auto f = [&] {
      return 0.5 * cross_entropy(h.data(), W.data(), t.data(), B, C, V, slice, 0.0,
                                 static_cast<double*>(nullptr), static_cast<double*>(nullptr));
    };
    if (slice == V) {
      check_grad("cross-entropy dh", h, dh, f);
      check_grad("cross-entropy dW", W, dW, f);
      dh0 = dh, dW0 = dW;
    } else {
      for (size_t i = 0; i < dh.size(); ++i) EXPECT_NEAR(dh[i], dh0[i], 1e-14);
      for (size_t i = 0; i < dW.size(); ++i) EXPECT_NEAR(dW[i], dW0[i], 1e-14);
    }
  }
}

// Soft targets (distillation): the loss is the cross-entropy against a distribution p, written
// out here; its gradients against finite differences, in slices and whole; float's whole-row path
// against double.
TEST(TrainOps, CrossEntropyAgainstSoftTargets) {
  const int64_t B = 3, C = 4, V = 7;
  std::vector<double> h = randn(size_t(B * C), 52), W = randn(size_t(V * C), 53);
  std::vector<double> p = randn(size_t(B * V), 54);
  for (int64_t b = 0; b < B; ++b) {  // rows of p: a softmax of random logits
    double s = 0;
    for (int64_t v = 0; v < V; ++v) s += (p[size_t(b * V + v)] = std::exp(p[size_t(b * V + v)]));
    for (int64_t v = 0; v < V; ++v) p[size_t(b * V + v)] /= s;
  }
  const std::vector<int32_t> t = {0, 0, 0};  // ignored
  double plain = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> z(static_cast<size_t>(V));
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t c = 0; c < C; ++c) z[size_t(v)] += h[size_t(b * C + c)] * W[size_t(v * C + c)];
    }
    double s = 0;
    for (const double zv : z) s += std::exp(zv);
    for (int64_t v = 0; v < V; ++v) plain -= p[size_t(b * V + v)] * (z[size_t(v)] - std::log(s));
  }
  for (const int64_t slice : {V, int64_t(3)}) {
    std::vector<double> dh(h.size(), 0.0), dW(W.size(), 0.0);
    const double loss =
        cross_entropy(h.data(), W.data(), t.data(), B, C, V, slice, 0.5, dh.data(), dW.data(),
                      static_cast<std::vector<double>*>(nullptr), p.data());
    EXPECT_NEAR(loss, plain, 1e-12) << "slice " << slice;
    auto f = [&] {
      return 0.5 * cross_entropy(h.data(), W.data(), t.data(), B, C, V, slice, 0.0,
                                 static_cast<double*>(nullptr), static_cast<double*>(nullptr),
                                 static_cast<std::vector<double>*>(nullptr), p.data());
    };
    check_grad("soft cross-entropy dh", h, dh, f);
    check_grad("soft cross-entropy dW", W, dW, f);
    const std::vector<float> hf(h.begin(), h.end()), Wf(W.begin(), W.end()), pf(p.begin(), p.end());
    std::vector<float> dhf(h.size(), 0.0f);
    cross_entropy(hf.data(), Wf.data(), t.data(), B, C, V, slice, 0.5f, dhf.data(),
                  static_cast<float*>(nullptr), static_cast<std::vector<float>*>(nullptr),
                  pf.data());
    for (size_t i = 0; i < dh.size(); ++i) EXPECT_NEAR(dhf[i], dh[i], 1e-5) << i;
  }
}

ModelConfig tiny_config(bool tied, bool bias, bool neox) {
  ModelConfig c;
  c.n_vocab = 13, c.n_embd = 8, c.n_ff = 12, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2;
  c.head_dim = 2, c.rms_eps = 1e-5, c.rope_theta = 10000.0;
  c.tied_output = tied, c.qkv_bias = bias, c.rope_neox = neox;
  return c;
}

// Recomputing each layer's activations in the backward gives the same gradients, bit for bit.
TEST(TrainModel, RecomputationGivesTheSameGradients) {
  const ModelConfig c = tiny_config(false, true, false);
  Transformer<float> kept(c, rope_inv_freq(c)), recomputed(c, rope_inv_freq(c));
  recomputed.set_recompute(true);
  const ParamLayout& l = kept.layout();
  const std::vector<double> init = randn(size_t(l.total), 95, 0.3);
  const std::vector<float> w(init.begin(), init.end());
  std::vector<int32_t> tok(12), tgt(12);
  for (size_t i = 0; i < tok.size(); ++i)
    tok[i] = int32_t((i * 3 + 1) % 13), tgt[i] = int32_t((i * 7) % 13);
  std::vector<float> g1(w.size(), 0.0f), g2(w.size(), 0.0f);
  for (int pass = 0; pass < 2; ++pass) {  // the second pass reuses every buffer
    std::fill(g1.begin(), g1.end(), 0.0f), std::fill(g2.begin(), g2.end(), 0.0f);
    const double a = kept.loss_and_grad(w.data(), tok.data(), tgt.data(), 2, 6, g1.data(), 0.1f);
    const double b =
        recomputed.loss_and_grad(w.data(), tok.data(), tgt.data(), 2, 6, g2.data(), 0.1f);
    EXPECT_EQ(a, b);
    EXPECT_EQ(g1, g2);
  }
}

// Lean activations (attention probabilities, norms' outputs and the SwiGLU product computed
// again in the backward instead of kept): the same gradients, bit for bit (70 tokens: two blocks
// of query rows), with and without LoRA's frozen base.
TEST(TrainModel, LeanActivationsGiveTheSameGradients) {
  ModelConfig c = tiny_config(false, false, false);
  c.n_embd = 16, c.n_ff = 24, c.head_dim = 4;
  for (const int64_t rank : {0, 2}) {
    LoraConfig lc;
    lc.rank = rank;
    Transformer<float> kept(c, rope_inv_freq(c), 0, lc), again(c, rope_inv_freq(c), 0, lc);
    kept.force_lean(false), again.force_lean(true);
    const ParamLayout full = ParamLayout::of(c);
    const std::vector<double> bd = randn(size_t(full.total), 96, 0.3);
    const std::vector<float> base_w(bd.begin(), bd.end());
    const FrozenBase<float> base(full, base_w.data());
    if (rank > 0) kept.set_base(&base), again.set_base(&base);
    const ParamLayout& l = kept.layout();
    const std::vector<double> init = randn(size_t(l.total), 95, 0.3);
    const std::vector<float> w(init.begin(), init.end());
    std::vector<int32_t> tok(140), tgt(140);
    for (size_t i = 0; i < tok.size(); ++i)
      tok[i] = int32_t((i * 3 + 1) % 13), tgt[i] = int32_t((i * 7) % 13);
    std::vector<float> g1(w.size(), 0.0f), g2(w.size(), 0.0f);
    const double a = kept.loss_and_grad(w.data(), tok.data(), tgt.data(), 2, 70, g1.data(), 0.1f);
    const double b = again.loss_and_grad(w.data(), tok.data(), tgt.data(), 2, 70, g2.data(), 0.1f);
    EXPECT_EQ(a, b) << rank;
    EXPECT_EQ(g1, g2) << rank;
    double norm = 0;
    for (const float x : g1) norm += double(x) * x;
    EXPECT_GT(norm, 0.0);
  }
}

// Training runs in float on the engine's vector kernels (softmax, SwiGLU) and BLAS in blocks; its
// gradients agree with the double-precision model's (checked against finite differences above)
// to float accuracy. 70 tokens per sequence: two blocks of attention rows.
TEST(TrainModel, FloatGradientsMatchDouble) {
  ModelConfig c = tiny_config(false, true, false);
  c.n_embd = 16, c.n_ff = 24, c.head_dim = 4;
  Transformer<float> f32(c, rope_inv_freq(c));
  Transformer<double> f64(c, rope_inv_freq(c));
  const ParamLayout& l = f64.layout();
  std::vector<double> wd = randn(size_t(l.total), 97, 0.3);
  for (const ParamInfo& p : l.params) {
    if (p.shape.size() == 1 && p.name.find("norm") != std::string::npos) {
      for (int64_t i = 0; i < p.size; ++i) wd[size_t(p.offset + i)] += 1.0;
    }
  }
  const std::vector<float> wf(wd.begin(), wd.end());
  const std::vector<double> wr(wf.begin(), wf.end());  // the same weights, exactly
  const int64_t S = 2, L = 70;
  std::vector<int32_t> tok(size_t(S * L)), tgt(size_t(S * L));
  for (size_t i = 0; i < tok.size(); ++i)
    tok[i] = int32_t((i * 7 + 3) % 13), tgt[i] = int32_t((i * 5 + 1) % 13);
  std::vector<float> gf(wf.size(), 0.0f);
  std::vector<double> gd(wr.size(), 0.0);
  const double lf = f32.loss_and_grad(wf.data(), tok.data(), tgt.data(), S, L, gf.data(), 1.0f);
  const double ld = f64.loss_and_grad(wr.data(), tok.data(), tgt.data(), S, L, gd.data(), 1.0);
  EXPECT_NEAR(lf, ld, 1e-5 * ld);
  for (const ParamInfo& p : l.params) {
    double mx = 0;
    for (int64_t i = 0; i < p.size; ++i) mx = std::max(mx, std::abs(gd[size_t(p.offset + i)]));
    for (int64_t i = 0; i < p.size; ++i) {
      const size_t k = size_t(p.offset + i);
      ASSERT_NEAR(gf[k], gd[k], 1e-4 * mx + 1e-6) << p.name << " [" << i << "]";
    }
  }
}

// The whole model: a few entries of every tensor (first, last and random ones), against finite
// differences of the mean loss over 2 sequences of 5 tokens.
TEST(TrainModel, GradientsMatchFiniteDifferences) {
  for (const bool tied : {false, true}) {
    for (const bool bias : {false, true}) {
      const ModelConfig c = tiny_config(tied, bias, bias);  // biases with NeoX RoPE, as Qwen2
      Transformer<double> model(c, rope_inv_freq(c), /*vocab_slice=*/5);
      const ParamLayout& l = model.layout();
      std::vector<double> w = randn(size_t(l.total), 60 + 2 * tied + bias, 0.5);
      for (const ParamInfo& p : l.params) {  // norm weights around 1, as trained models have
        if (p.shape.size() == 1 && p.name.find("norm") != std::string::npos) {
          for (int64_t i = 0; i < p.size; ++i) w[size_t(p.offset + i)] += 1.0;
        }
      }
      const int64_t S = 2, L = 5;
      std::vector<int32_t> tok(size_t(S * L)), tgt(size_t(S * L));
      for (size_t i = 0; i < tok.size(); ++i)
        tok[i] = int32_t((i * 7 + 3) % 13), tgt[i] = int32_t((i * 5 + 1) % 13);
      std::vector<double> grad(w.size(), 0.0);
      const double scale = 1.0 / double(S * L);
      const double loss =
          model.loss_and_grad(w.data(), tok.data(), tgt.data(), S, L, grad.data(), scale);
      EXPECT_NEAR(loss, model.loss(w.data(), tok.data(), tgt.data(), S, L), 1e-12);
      std::vector<size_t> at;
      std::mt19937_64 rng(70);
      for (const ParamInfo& p : l.params) {
        at.push_back(size_t(p.offset)), at.push_back(size_t(p.offset + p.size - 1));
        for (int i = 0; i < 3; ++i)
          at.push_back(size_t(p.offset + int64_t(rng() % uint64_t(p.size))));
      }
      check_grad(
          tied ? (bias ? "model tied+bias" : "model tied") : (bias ? "model bias" : "model"), w,
          grad, [&] { return scale * model.loss(w.data(), tok.data(), tgt.data(), S, L); }, at);
      if (HasFailure()) return;
    }
  }
}

// BitNet's activation fake quantization (--qat-act-bits), written out by hand: per row, d = absmax
// / (2^(b-1) - 1), round half to even.
TEST(TrainOps, ActFakeQuantRoundsEachRowOnItsOwnGrid) {
  const std::vector<double> x = {0.5, -1.0, 0.25, 0.1, 0, 0, 0, 0, 2.0, -0.75, 1.0, 0.5};
  std::vector<double> y(x.size());
  act_fake_quant(x.data(), 3, 4, 8, y.data());
  // Row 0: absmax 1, grid 1/127: 63.5 -> 64 (even), -127, 31.75 -> 32, 12.7 -> 13.
  const std::vector<double> want0 = {64.0 / 127, -1.0, 32.0 / 127, 13.0 / 127};
  for (size_t i = 0; i < 4; ++i) EXPECT_DOUBLE_EQ(y[i], want0[i]) << i;
  for (size_t i = 4; i < 8; ++i) EXPECT_EQ(y[i], 0.0) << i;  // a row of zeros stays zero
  // Row 2 at 2 bits: the grid is {-2, 0, 2}: 2 -> 2, -0.75 -> 0, 1.0 -> 2 * round(0.5) = 0.
  act_fake_quant(x.data() + 8, 1, 4, 2, y.data() + 8);
  const std::vector<double> want2 = {2.0, 0.0, 0.0, 0.0};
  for (size_t i = 0; i < 4; ++i) EXPECT_EQ(y[8 + i], want2[i]) << i;
}

// With activation fake quantization the model still computes a loss close to the plain one, and
// the weight gradients downstream of the last quantized input (the last layer's ffn_down, whose
// input is quantized, and the final norm and head) match finite differences: the loss is smooth
// in them, and their gradient must use the quantized input the forward used.
TEST(TrainModel, ActivationFakeQuantizationGradients) {
  const ModelConfig c = tiny_config(false, false, false);
  Transformer<double> plain(c, rope_inv_freq(c)), model(c, rope_inv_freq(c));
  model.set_act_bits(8);
  const ParamLayout& l = model.layout();
  std::vector<double> w = randn(size_t(l.total), 64, 0.5);
  for (const ParamInfo& p : l.params) {
    if (p.shape.size() == 1) std::fill_n(w.begin() + p.offset, p.size, 1.0);
  }
  const int64_t S = 2, L = 5;
  std::vector<int32_t> tok(size_t(S * L)), tgt(size_t(S * L));
  for (size_t i = 0; i < tok.size(); ++i)
    tok[i] = int32_t((i * 7 + 3) % 13), tgt[i] = int32_t((i * 5 + 1) % 13);
  const double l0 = plain.loss(w.data(), tok.data(), tgt.data(), S, L);
  const double l8 = model.loss(w.data(), tok.data(), tgt.data(), S, L);
  EXPECT_NE(l0, l8);
  EXPECT_NEAR(l8, l0, 0.02 * l0);
  std::vector<double> grad(w.size(), 0.0), grad0(w.size(), 0.0);
  model.loss_and_grad(w.data(), tok.data(), tgt.data(), S, L, grad.data(), 1.0);
  plain.loss_and_grad(w.data(), tok.data(), tgt.data(), S, L, grad0.data(), 1.0);
  std::vector<size_t> at;
  for (const char* name : {"blk.1.ffn_down.weight", "output_norm.weight", "output.weight"}) {
    const ParamInfo* p = l.find(name);
    ASSERT_NE(p, nullptr) << name;
    for (int64_t i = 0; i < p->size; i += 3) at.push_back(size_t(p->offset + i));
  }
  check_grad(
      "act8", w, grad, [&] { return model.loss(w.data(), tok.data(), tgt.data(), S, L); }, at);
  // Upstream, the input's gradient passes straight through: finite (and not the plain model's).
  const ParamInfo* q0 = l.find("blk.0.attn_q.weight");
  double diff = 0;
  for (int64_t i = 0; i < q0->size; ++i) {
    ASSERT_TRUE(std::isfinite(grad[size_t(q0->offset + i)]));
    diff += std::abs(grad[size_t(q0->offset + i)] - grad0[size_t(q0->offset + i)]);
  }
  EXPECT_GT(diff, 0);
}

// The QAT tests' model: 2 layers of width 32 (rows of whole 32-blocks), random weights with norms
// at 1, a periodic token stream, plain SGD at a constant rate; fake quantization to int2_g32 (the
// fit clips often at 2 bits) for every matrix but the embedding.
struct QatCase {
  ModelConfig c;
  ParamLayout l;
  std::vector<float> w;
  TrainData d;
  TrainConfig tc;
  std::vector<std::optional<Format>> fm;
  const Format f = Format::parse("int2_g32");
  QatCase(uint64_t seed, int64_t steps, int64_t replicas) {
    c = tiny_config(false, false, false);
    c.n_embd = 32, c.n_ff = 64, c.head_dim = 8;
    l = ParamLayout::of(c);
    const std::vector<double> init = randn(size_t(l.total), seed, 0.3);
    w.assign(init.begin(), init.end());
    for (const ParamInfo& p : l.params) {
      if (p.name.find("norm") != std::string::npos) std::fill_n(w.begin() + p.offset, p.size, 1.0f);
    }
    for (int i = 0; i < 600; ++i) d.train.push_back(int32_t((i * 5 + 2 + i / 7) % c.n_vocab));
    tc.steps = steps, tc.batch = 2, tc.ctx = 12, tc.lr = 0.05, tc.clip = 0, tc.replicas = replicas;
    tc.optimizer.kind = OptimizerKind::kSgd, tc.schedule = ScheduleKind::kConstant;
    fm.resize(l.params.size());
    for (size_t i = 0; i < l.params.size(); ++i) {
      if (l.params[i].shape.size() == 2 && l.params[i].name != "token_embd.weight") fm[i] = f;
    }
  }
  Trainer trainer() const { return Trainer(c, rope_inv_freq(c), w, tc, d); }
};

// Quantization-aware training (issue 21's first piece): every pass uses the codec's round trip
// of the master weights, bit for bit what a file of that format holds; the gradient passes
// straight through, except to weights the block's fit clipped (one SGD step leaves exactly those
// unchanged); and the fake-quantized model learns.
TEST(TrainQat, FakeQuantizationTrainsWhatShips) {
  const QatCase q(91, 60, 1);
  const ModelConfig& c = q.c;
  const ParamLayout& l = q.l;
  const Format& f = q.f;
  const std::vector<std::optional<Format>>& fm = q.fm;
  const TrainConfig& tc = q.tc;
  Trainer t = q.trainer();
  t.set_fake_quant(fm);
  // The forward's weights: each fake-quantized row exactly the codec's round trip of the master.
  auto expect_round_trips = [&] {
    const std::vector<float> wq = t.forward_weights(), wm = t.weights();
    std::vector<uint8_t> q(f.row_bytes(c.n_ff));
    std::vector<float> row(size_t(c.n_ff));
    for (size_t i = 0; i < l.params.size(); ++i) {
      const ParamInfo& p = l.params[i];
      if (!fm[i]) {
        EXPECT_TRUE(std::equal(wq.begin() + p.offset, wq.begin() + p.offset + p.size,
                               wm.begin() + p.offset))
            << p.name;
        continue;
      }
      const int64_t K = p.shape[1];
      for (int64_t r = 0; r < p.shape[0]; ++r) {
        f.quantize_row(wm.data() + p.offset + r * K, K, nullptr, q.data());
        f.dequantize_row(q.data(), K, row.data());
        ASSERT_EQ(0, std::memcmp(row.data(), wq.data() + p.offset + r * K, size_t(K) * 4))
            << p.name << " row " << r;
      }
    }
  };
  expect_round_trips();
  // One step: weights outside their block's decoded range keep their value; the others move.
  const std::vector<float> wq0 = t.forward_weights(), w0 = t.weights();
  std::vector<double> losses;
  t.run(1, [&](const StepLog& s) { losses.push_back(s.loss); });
  const std::vector<float>& w1 = t.weights();
  int64_t outside = 0, moved = 0;
  for (size_t i = 0; i < l.params.size(); ++i) {
    if (!fm[i]) continue;
    const ParamInfo& p = l.params[i];
    for (int64_t b = p.offset; b < p.offset + p.size; b += 32) {
      const auto [lo, hi] = std::minmax_element(wq0.begin() + b, wq0.begin() + b + 32);
      for (int64_t j = b; j < b + 32; ++j) {
        if (w0[size_t(j)] < *lo || w0[size_t(j)] > *hi) {
          ++outside;
          EXPECT_EQ(w1[size_t(j)], w0[size_t(j)]) << p.name << " [" << j - p.offset << "]";
        } else {
          moved += w1[size_t(j)] != w0[size_t(j)];
        }
      }
    }
  }
  EXPECT_GT(outside, 0);  // the check above means something
  EXPECT_GT(moved, outside);
  t.run(tc.steps, [&](const StepLog& s) { losses.push_back(s.loss); });
  EXPECT_LT(losses.back(), 0.7 * losses.front()) << "from " << losses.front();
  expect_round_trips();
}

// learned_scale_offset points at each format's scale: the fp16 there divides every decoded value
// of the block into an integer; formats with zero points, sub-scales or codebooks have none.
TEST(TrainQat, LearnedScaleOffsetsPointAtTheScale) {
  const std::vector<double> x = randn(256, 5, 1.0);
  const std::vector<float> xf(x.begin(), x.end());
  for (const char* name :
       {"q4_0", "q5_0", "q8_0", "tq1_0", "tq2_0", "int4_g32", "int3_g64", "int8", "tern_g64"}) {
    const Format f = Format::parse(name);
    const auto off = learned_scale_offset(f);
    ASSERT_TRUE(off.has_value()) << name;
    std::vector<uint8_t> q(f.row_bytes(256));
    f.quantize_row(xf.data(), 256, nullptr, q.data());
    std::vector<float> y(256);
    f.dequantize_row(q.data(), 256, y.data());
    uint16_t h;
    std::memcpy(&h, q.data() + *off, 2);
    const float d = fp16_to_f32(h);
    ASSERT_NE(d, 0.0f) << name;
    const int64_t be = f.block_elems(256);
    for (int64_t i = 0; i < be; ++i) {
      const float r = y[size_t(i)] / d;
      EXPECT_EQ(r, std::nearbyint(r)) << name << " [" << i << "]";
    }
  }
  for (const char* name : {"q4_1", "q4_k", "nf4", "iq4_nl", "bin1", "int4_g32_asym", "f16"})
    EXPECT_FALSE(learned_scale_offset(Format::parse(name)).has_value()) << name;
}

// Learned scales (LSQ): the model learns, each block's scale leaves the format's fit (so the
// file cannot be a re-fit of the masters), and the bytes the forward used are the round trips
// it trained on: decoding them gives the forward's weights.
TEST(TrainQat, LearnedScalesTrainAndShipTheirOwnBytes) {
  const QatCase q(91, 60, 1);
  Trainer t = q.trainer();
  t.set_fake_quant(q.fm);
  t.set_learned_scales(true);
  std::vector<double> losses;
  t.run(q.tc.steps, [&](const StepLog& s) { losses.push_back(s.loss); });
  EXPECT_LT(losses.back(), 0.7 * losses.front()) << "from " << losses.front();
  const std::vector<float> wq = t.forward_weights(), wm = t.weights();
  int64_t refit_differs = 0, blocks = 0;
  for (size_t i = 0; i < q.l.params.size(); ++i) {
    if (!q.fm[i]) continue;
    const ParamInfo& p = q.l.params[i];
    const int64_t K = p.shape[1];
    const uint64_t rb = q.f.row_bytes(K);
    const std::vector<uint8_t>& bytes = t.quantized_bytes(i);
    ASSERT_EQ(bytes.size(), rb * uint64_t(p.shape[0])) << p.name;
    std::vector<float> row(static_cast<size_t>(K));
    std::vector<uint8_t> refit(rb);
    for (int64_t r = 0; r < p.shape[0]; ++r) {
      q.f.dequantize_row(bytes.data() + uint64_t(r) * rb, K, row.data());
      ASSERT_EQ(0, std::memcmp(row.data(), wq.data() + p.offset + r * K, size_t(K) * 4))
          << p.name << " row " << r;
      q.f.quantize_row(wm.data() + p.offset + r * K, K, nullptr, refit.data());
      for (int64_t b = 0; b < K / 32; ++b, ++blocks)
        refit_differs += std::memcmp(refit.data() + b * 10, bytes.data() + r * rb + b * 10, 2) != 0;
    }
  }
  EXPECT_GT(refit_differs, blocks / 4) << blocks;
}

// Distillation: against itself as the teacher the model's KL is 0 and a step changes nothing;
// fake-quantized to 2 bits, training against the original's probabilities lowers the KL.
TEST(TrainQat, DistillsFromTheOriginal) {
  const QatCase q(92, 40, 2);
  const std::vector<float>& w = q.w;
  {
    Trainer self = q.trainer();
    self.set_teacher(w);
    std::vector<double> kl;
    self.run(1, [&](const StepLog& s) { kl.push_back(s.loss); });
    EXPECT_NEAR(kl.at(0), 0.0, 1e-5);
    // softmax - p is 0 up to float rounding (the teacher's products may block their rows
    // differently): nothing to learn.
    for (size_t i = 0; i < w.size(); ++i) ASSERT_NEAR(self.weights()[i], w[i], 1e-6) << i;
  }
  Trainer t = q.trainer();
  t.set_teacher(w);
  t.set_fake_quant(q.fm);
  std::vector<double> kl;
  t.run(q.tc.steps, [&](const StepLog& s) { kl.push_back(s.loss); });
  EXPECT_GT(kl.front(), 0.01);
  EXPECT_LT(kl.back(), 0.7 * kl.front()) << "from " << kl.front();
}

// What is trained is what ships: QAT with the plan's formats (Q4_0), distilled from the original,
// then quantize_model of the trained masters writes a file whose decoded weights are the last
// forward's, bit for bit.
TEST(TrainQat, TheWrittenFileHoldsTheTrainedRoundTrips) {
  ModelConfig c = tiny_config(false, false, false);
  c.arch = "llama", c.n_vocab = kSynthMinVocab + 5, c.n_embd = 64, c.n_ff = 96, c.head_dim = 16;
  c.n_ctx_train = 64;
  SynthOptions so;
  so.type = Format::parse("f32");
  so.seed = 4, so.stddev = 0.3;
  const std::string path = test::tmp_path("qat", "f32.gguf"), out = test::tmp_path("qat", "q.gguf");
  write_synth_model(c, path, so);
  const Model m = Model::load(path);
  const ParamLayout l = ParamLayout::of(m.config);
  const std::vector<float> w0 = weights_of(m, l);
  const QuantizeOptions q{.type = Format::parse("q4_0")};
  const std::vector<std::optional<Format>> fm = fake_quant_formats(m, l, q);
  int64_t quantized = 0;
  for (const auto& f : fm) quantized += f.has_value();
  EXPECT_EQ(quantized, 7 * c.n_layer + 2);  // every matrix, the embedding and the output head
  TrainData d;
  for (int i = 0; i < 400; ++i) d.train.push_back(int32_t((i * 37 + 5 + i / 9) % c.n_vocab));
  TrainConfig tc;
  tc.steps = 4, tc.batch = 2, tc.ctx = 16, tc.lr = 1e-3, tc.replicas = 1;
  Trainer t(m.config, rope_inv_freq(m), w0, tc, d);
  t.set_teacher(w0);
  t.set_fake_quant(fm);
  t.run(tc.steps, {});
  const std::vector<float> master = t.weights(), fwd = t.forward_weights();
  EXPECT_NE(master, w0);
  quantize_model(with_weights(m, l, master), out, q);
  const Model back = Model::load(out);
  EXPECT_EQ(back.find("blk.1.attn_q.weight")->format, Format::parse("q4_0"));
  EXPECT_EQ(weights_of(back, l), fwd);
  std::remove(path.c_str());
  std::remove(out.c_str());
}

// LLM-QAT's data-free text: sequences the model writes itself. Deterministic per seed, every
// sequence opening on a normal token, and text the model finds likely: its mean cross-entropy
// under the model (each sequence's uniformly drawn first token counted too) far below a uniform
// draw's log V and below the same tokens shuffled.
TEST(TrainQat, GeneratesItsOwnTrainingText) {
  const std::string mp = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(mp);
  const Model m = Model::load(mp);
  const int64_t L = 48, n = 8 * L;
  const std::vector<int32_t> a = generate_qat_data(m, n - 5, L, 5),
                             b = generate_qat_data(m, n, L, 5);
  EXPECT_EQ(a, b);  // rounded up to whole sequences, the same seed: the same tokens
  ASSERT_EQ(int64_t(a.size()), n);
  EXPECT_NE(generate_qat_data(m, L, L, 6), std::vector<int32_t>(a.begin(), a.begin() + L));
  for (int64_t s = 0; s < n / L; ++s) {
    EXPECT_EQ(m.tokenizer.token_types[size_t(a[size_t(s * L)])], int32_t(TokenType::kNormal));
  }
  for (const int32_t t : a) ASSERT_TRUE(t >= 0 && t < m.config.n_vocab) << t;
  const ParamLayout l = ParamLayout::of(m.config);
  const std::vector<float> w = weights_of(m, l);
  Transformer<float> model(m.config, rope_inv_freq(m));
  auto mean_ce = [&](const std::vector<int32_t>& ids) {
    std::vector<int32_t> in, tgt;  // BOS then the sequence, predicting the sequence
    for (int64_t s = 0; s < n / L; ++s) {
      in.push_back(int32_t(*m.tokenizer.bos_id));
      for (int64_t i = 0; i < L - 1; ++i) in.push_back(ids[size_t(s * L + i)]);
      for (int64_t i = 0; i < L; ++i) tgt.push_back(ids[size_t(s * L + i)]);
    }
    const int64_t S = n / L;
    return model.loss(w.data(), in.data(), tgt.data(), S, L) / double(S * L);
  };
  std::vector<int32_t> shuffled = a;
  std::mt19937_64 rng(3);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  const double own = mean_ce(a), mixed = mean_ce(shuffled);
  EXPECT_LT(own, 0.5 * std::log(double(m.config.n_vocab))) << own;
  EXPECT_LT(own, 0.6 * mixed) << own << " vs " << mixed;
}

// --qat-data generate with no --calib (data-free: the generated text also calibrates the GPTQ
// start) and --qat-act-bits 8: a loadable file of the planned format, the text file gone.
TEST(TrainCli, QatOnItsOwnTextWithEightBitActivations) {
  const std::string m = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(m);
  const std::string dir = test::tmp_path("train", "qatgen");
  std::filesystem::create_directories(dir);
  const std::string common = "quantize -m " + m +
                             " --type int4_g32 --method qat --qat-data generate"
                             " --qat-gen-tokens 512 --qat-steps 3 --qat-batch 2 --qat-ctx 32 -t 2";
  test::CliRun r = test::run_cli(common + " --qat-act-bits 8 -o " + dir + "/q.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("16 sequences of 32 tokens written by the original model"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("from the model's own text (gptq init)"), std::string::npos) << r.out;
  EXPECT_EQ(Model::load(dir + "/q.gguf").find("blk.0.attn_q.weight")->format,
            Format::parse("int4_g32"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/q.gguf.qat-text.txt"));
  r = test::run_cli(common + " --qat-act-bits 1 -o " + dir + "/x.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("--qat-act-bits"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf.qat-text.txt"));
  std::filesystem::remove_all(dir);
}

// QAT checkpoints: a run stopped after 3 steps and resumed gives the very file of a straight run;
// resuming with another run's flags is refused naming the flag, and writes nothing.
TEST(TrainCli, QatCheckpointsResumeBitIdentical) {
  const std::string m = test::fixture("models/stories260K/stories260K.gguf");
  const std::string stories = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(m);
  LOWBIT_REQUIRE_FIXTURE(stories);
  const std::string dir = test::tmp_path("train", "qatckpt");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/calib.txt") << test::slurp(stories).substr(0, 20000);
  const std::string common = "quantize -m " + m +
                             " --type int3_g32 --method qat --qat-init rtn --calib " + dir +
                             "/calib.txt --qat-steps 6 --qat-batch 2 --qat-ctx 32 -t 2";
  test::CliRun r = test::run_cli(common + " -o " + dir + "/straight.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  r = test::run_cli(common + " --qat-checkpoint " + dir + "/ck --qat-stop-after 3 -o " + dir +
                    "/resumed.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("stopped at step 3 of 6"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/resumed.gguf"));
  r = test::run_cli(common + " --qat-lr 1e-2 --qat-resume " + dir + "/ck -o " + dir + "/x.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("qat.lr"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
  r = test::run_cli(common + " --qat-resume " + dir + "/ck -o " + dir + "/resumed.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("resumed at step 3 of 6"), std::string::npos) << r.out;
  EXPECT_EQ(test::slurp(dir + "/resumed.gguf"), test::slurp(dir + "/straight.gguf"));
  r = test::run_cli(common + " --qat-stop-after 2 -o " + dir + "/x.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("--qat-checkpoint"), std::string::npos) << r.out;
  r = test::run_cli(common + " --qat-scales learned --qat-checkpoint " + dir + "/ck2 -o " + dir +
                    "/x.gguf");
  EXPECT_EQ(r.rc, 1);  // learned scales are not in checkpoints yet: refused, not lost
  EXPECT_NE(r.out.find("--qat-scales"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
  std::filesystem::remove_all(dir);
}

// AdamW against the update written out per element in double, with the decay mask: two steps
// (the second uses the first's moments and bias correction t = 2).
TEST(TrainOptimizer, AdamWMatchesItsDefinition) {
  ModelConfig c = tiny_config(false, false, false);
  const ParamLayout l = ParamLayout::of(c);
  OptimizerConfig oc;
  oc.weight_decay = 0.1;
  Optimizer opt(oc, l);
  std::vector<double> w0 = randn(size_t(l.total), 80), g1 = randn(size_t(l.total), 81),
                      g2 = randn(size_t(l.total), 82);
  std::vector<float> w(w0.begin(), w0.end());
  const std::vector<float> gf1(g1.begin(), g1.end()), gf2(g2.begin(), g2.end());
  opt.step(w.data(), gf1.data(), 0.01);
  opt.step(w.data(), gf2.data(), 0.005);
  EXPECT_EQ(opt.steps_taken(), 2);
  for (const ParamInfo& p : l.params) {
    for (int64_t i = p.offset; i < p.offset + p.size; i += 7) {
      double x = float(w0[size_t(i)]), m = 0, v = 0;
      const double lr[2] = {0.01, 0.005};
      const double g[2] = {double(gf1[size_t(i)]), double(gf2[size_t(i)])};
      for (int t = 1; t <= 2; ++t) {
        if (p.decay) x -= lr[t - 1] * 0.1 * x;
        m = 0.9 * m + 0.1 * g[t - 1], v = 0.999 * v + 0.001 * g[t - 1] * g[t - 1];
        x -= lr[t - 1] * (m / (1 - std::pow(0.9, t))) /
             (std::sqrt(v / (1 - std::pow(0.999, t))) + 1e-8);
      }
      EXPECT_NEAR(w[size_t(i)], x, 1e-6 * std::max(1.0, std::abs(x))) << p.name << " [" << i << "]";
    }
  }
  // Decay reaches matrices only: with a zero gradient a norm weight stays, a matrix shrinks.
  Optimizer sgd({.kind = OptimizerKind::kSgd, .weight_decay = 0.5}, l);
  std::vector<float> ws(size_t(l.total), 2.0f), zero(size_t(l.total), 0.0f);
  sgd.step(ws.data(), zero.data(), 0.1);
  EXPECT_EQ(ws[size_t(l.find("blk.0.attn_norm.weight")->offset)], 2.0f);
  EXPECT_EQ(ws[size_t(l.find("token_embd.weight")->offset)], 2.0f);
  EXPECT_FLOAT_EQ(ws[size_t(l.find("blk.1.ffn_down.weight")->offset)], 2.0f * (1 - 0.1 * 0.5));
}

TEST(TrainOptimizer, SchedulesAndClipping) {
  Schedule s{.kind = ScheduleKind::kCosine, .lr = 1.0, .warmup = 10, .steps = 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.5, 1e-12);   // halfway through the decay
  EXPECT_NEAR(s.at(110), 0.0, 1e-12);  // and at its end
  s.kind = ScheduleKind::kLinear;
  EXPECT_NEAR(s.at(35), 0.75, 1e-12);
  s.kind = ScheduleKind::kConstant;
  EXPECT_DOUBLE_EQ(s.at(100), 1.0);
  EXPECT_THROW(parse_schedule("step"), Error);
  EXPECT_THROW(parse_optimizer("adam"), Error);

  std::vector<float> g = {3.0f, 4.0f, 0.0f};
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), 3, 10.0), 5.0);  // below the limit: unchanged
  EXPECT_EQ(g[0], 3.0f);
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), 3, 1.0), 5.0);
  EXPECT_FLOAT_EQ(g[0], 0.6f);
  EXPECT_FLOAT_EQ(g[1], 0.8f);
  EXPECT_NEAR(grad_norm(g.data(), 3), 1.0, 1e-7);
}

// Training works end to end: a tiny model learns a fixed sequence (its loss falls from about
// log V to near zero), and the same run twice gives the same weights bit for bit.
TEST(TrainOptimizer, ATinyModelLearnsASequence) {
  ModelConfig c = tiny_config(false, false, false);
  c.n_embd = 16, c.head_dim = 4, c.n_ff = 32;
  std::vector<float> last;
  for (int run = 0; run < 2; ++run) {
    Transformer<float> model(c, rope_inv_freq(c));
    const ParamLayout& l = model.layout();
    const std::vector<double> init = randn(size_t(l.total), 90, 0.1);
    std::vector<float> w(init.begin(), init.end());
    for (const ParamInfo& p : l.params) {
      if (p.name.find("norm") != std::string::npos) std::fill_n(w.begin() + p.offset, p.size, 1.0f);
    }
    Optimizer opt({}, l);
    const Schedule sched{.kind = ScheduleKind::kConstant, .lr = 0.01};
    const int64_t L = 12;
    std::vector<int32_t> tok(static_cast<size_t>(L + 1));
    for (int64_t i = 0; i <= L; ++i) tok[size_t(i)] = int32_t((i * 5 + 2) % c.n_vocab);
    double first = 0, loss = 0;
    for (int step = 0; step < 150; ++step) {
      std::vector<float> g(w.size(), 0.0f);
      loss = model.loss_and_grad(w.data(), tok.data(), tok.data() + 1, 1, L, g.data(),
                                 1.0f / float(L)) /
             double(L);
      if (step == 0) first = loss;
      clip_grad_norm(g.data(), l.total, 1.0);
      opt.step(w.data(), g.data(), sched.at(step));
    }
    EXPECT_NEAR(first, std::log(double(c.n_vocab)), 0.5);
    EXPECT_LT(loss, 0.05) << "from " << first;
    if (run == 1) {
      EXPECT_EQ(w, last);
    }
    last = w;
  }
}

// A run that diverges stops with the step named, its weights those of the step before.
TEST(TrainOptimizer, ANonFiniteLossStopsTheRunAtItsStep) {
  ModelConfig c = tiny_config(false, false, false);
  const ParamLayout l = ParamLayout::of(c);
  std::vector<float> w(size_t(l.total), 0.01f);
  TrainData d;
  for (int i = 0; i < 200; ++i) d.train.push_back(int32_t(i % c.n_vocab));
  TrainConfig tc;
  tc.steps = 5, tc.batch = 2, tc.ctx = 8, tc.lr = 1e30,
  tc.clip = 0;  // weights of 1e30 after step 1
  Trainer t(c, rope_inv_freq(c), w, tc, d);
  int64_t last_good = 0;
  try {
    t.run(5, [&](const StepLog& s) { last_good = s.step; });
    FAIL() << "no divergence";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step " + std::to_string(last_good + 1)),
              std::string::npos)
        << e.what();
    EXPECT_EQ(t.steps_done(), last_good);
  }
  // A poisoned weight fails at step 1.
  w[3] = std::nanf("");
  tc.lr = 1e-3;
  Trainer bad(c, rope_inv_freq(c), w, tc, d);
  EXPECT_THROW(
      {
        try {
          bad.run(5, {});
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("step 1"), std::string::npos) << e.what();
          throw;
        }
      },
      Error);
}

// The training forward is the engine's forward: an F32 model's logits of every position through
// both (llama and qwen2 layouts: interleaved and NeoX RoPE, QKV biases).
TEST(TrainModel, ForwardMatchesTheEngine) {
  for (const char* arch : {"llama", "qwen2"}) {
    ModelConfig c = tiny_config(false, std::string(arch) == "qwen2", std::string(arch) == "qwen2");
    c.arch = arch;
    c.n_vocab = kSynthMinVocab + 5, c.n_embd = 64, c.n_ff = 96, c.head_dim = 16, c.n_ctx_train = 64;
    SynthOptions o;
    o.type = Format::parse("f32");
    o.seed = 3, o.stddev = 0.3;
    const std::string path = test::tmp_path("train", std::string(arch) + ".gguf");
    write_synth_model(c, path, o);
    const Model m = Model::load(path);
    Transformer<float> model(m.config, rope_inv_freq(m));
    const std::vector<float> w = weights_of(m, model.layout());
    const int64_t L = 9;
    std::vector<int32_t> tok(static_cast<size_t>(L));
    for (int64_t i = 0; i < L; ++i) tok[size_t(i)] = int32_t((i * 37 + 5) % m.config.n_vocab);
    const std::vector<float> ours = model.logits(w.data(), tok.data(), 1, L);
    LlamaEngine engine(m, 64);
    const std::vector<float>& ref = engine.eval(tok.data(), L, 0, /*all_logits=*/true);
    ASSERT_EQ(ours.size(), ref.size());
    double max_diff = 0, max_ref = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_diff = std::max(max_diff, double(std::abs(ours[i] - ref[i])));
      max_ref = std::max(max_ref, double(std::abs(ref[i])));
    }
    EXPECT_GT(max_ref, 0.5) << arch;  // logits far from uniform: the comparison means something
    EXPECT_LT(max_diff, 1e-3 * max_ref) << arch;
    std::remove(path.c_str());
  }
}

}  // namespace
}  // namespace lowbit::train

// `lowbit train` end to end on stories260K (tiny windows, a few steps): the loss falls, a run
// stopped and resumed writes the very bytes of the uninterrupted one, the output loads and its
// perplexity on the training text is lower, and bad input is refused before any output exists.
#ifdef LOWBIT_CLI
namespace lowbit::train {
namespace {

TEST(TrainCli, FineTunesAndResumesBitIdentical) {
  const std::string m = test::fixture("models/stories260K/stories260K.gguf");
  const std::string wiki = test::fixture("text/wikitext2-test.raw");
  LOWBIT_REQUIRE_FIXTURE(m);
  LOWBIT_REQUIRE_FIXTURE(wiki);
  const std::string dir = test::tmp_path("train", "cli");
  std::filesystem::create_directories(dir);
  // 20 kB of Wikipedia: text a model of children's stories has much to learn about.
  const std::string text = dir + "/wiki.txt";
  std::ofstream(text) << test::slurp(wiki).substr(0, 20000);
  const std::string common = "train -m " + m + " -f " + text +
                             " --steps 6 --batch 2 --ctx 32 --lr 3e-3 --seed 7 -t 2 --replicas 2";
  test::CliRun r = test::run_cli(common + " -o " + dir + "/a.gguf --json " + dir + "/a.jsonl");
  ASSERT_EQ(r.rc, 0) << r.out;
  std::ifstream log(dir + "/a.jsonl");
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(log, line);) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 6u);
  EXPECT_EQ(lines.back()["step"].get<int>(), 6);
  EXPECT_LT(lines.back()["loss"].get<double>(), lines.front()["loss"].get<double>());

  r = test::run_cli(common + " -o " + dir + "/b.gguf --stop-after 3 --checkpoint " + dir + "/ck");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("stopped at step 3 of 6"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/b.gguf"));
  r = test::run_cli("train --resume " + dir + "/ck -t 2");  // its --replicas 2 kept
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(test::slurp(dir + "/a.gguf"), test::slurp(dir + "/b.gguf"));

  // The output is a plain GGUF model: it loads and has learned the text.
  const std::string before =
      test::run_cli("perplexity -m " + m + " -f " + text + " -c 32 --json", false).out;
  const std::string after =
      test::run_cli("perplexity -m " + dir + "/a.gguf -f " + text + " -c 32 --json", false).out;
  EXPECT_LT(nlohmann::json::parse(after)["ppl"].get<double>(),
            nlohmann::json::parse(before)["ppl"].get<double>());
  std::filesystem::remove_all(dir);
}

// `quantize --method qat` (issue 21, first slice): from GPTQ's int3_g32 file, a few steps of
// distillation from the original lower the KL divergence GPTQ leaves, on text the training never
// saw; QAT without text, or with an unknown loss, is refused.
TEST(TrainCli, QuantizeMethodQatImprovesOnItsGptqStart) {
  const std::string m = test::fixture("models/stories260K/stories260K.gguf");
  const std::string stories = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(m);
  LOWBIT_REQUIRE_FIXTURE(stories);
  const std::string dir = test::tmp_path("train", "qat");
  std::filesystem::create_directories(dir);
  const std::string all = test::slurp(stories);
  std::ofstream(dir + "/calib.txt") << all.substr(0, 60000);
  std::ofstream(dir + "/eval.txt") << all.substr(all.size() - 60000);
  const std::string common = "quantize -m " + m + " --type int3_g32 --calib " + dir +
                             "/calib.txt --calib-tokens 4096 --ctx 128 -t 2";
  test::CliRun r = test::run_cli(common + " --method gptq -o " + dir + "/gptq.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  r = test::run_cli(common +
                    " --method qat --qat-steps 20 --qat-lr 1e-3 --qat-batch 4 --qat-ctx 64 -o " +
                    dir + "/qat.gguf --qat-log " + dir + "/qat.jsonl");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("qat: 20 steps"), std::string::npos) << r.out;
  {  // the log: one line per step, as lowbit report reads training logs
    std::ifstream log(dir + "/qat.jsonl");
    std::string line;
    int64_t step = 0;
    while (std::getline(log, line)) {
      const auto j = nlohmann::json::parse(line);
      EXPECT_EQ(j["lowbit_train_log"], 1);
      EXPECT_EQ(j["step"], ++step);
      EXPECT_TRUE(std::isfinite(j["loss"].get<double>()));
      EXPECT_EQ(j["loss_kind"], "kl");
      EXPECT_EQ(j.contains("command"), step == 1);
    }
    EXPECT_EQ(step, 20);
  }
  auto kld = [&](const std::string& f) {
    const test::CliRun p = test::run_cli(
        "perplexity -m " + f + " --base " + m + " -f " + dir + "/eval.txt -c 128 --json -t 2",
        false);
    EXPECT_EQ(p.rc, 0) << f;
    return nlohmann::json::parse(p.out)["kld"]["mean"].get<double>();
  };
  EXPECT_LT(kld(dir + "/qat.gguf"), 0.95 * kld(dir + "/gptq.gguf"));
  r = test::run_cli("quantize -m " + m + " --type int3_g32 --method qat -o " + dir + "/x.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("--calib"), std::string::npos) << r.out;
  r = test::run_cli(common + " --method qat --qat-loss mse -o " + dir + "/x.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("--qat-loss"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/x.gguf"));
  std::filesystem::remove_all(dir);
}

// A fresh model from sizes and a tokenizer: seeded (the same seed, the same file), loadable, and
// it learns (validation loss below log V after a few steps). Bad shapes are named.
TEST(TrainCli, TrainsAFreshModel) {
  const std::string tok = test::fixture("models/stories260K/tok512.model");
  const std::string text = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(tok);
  LOWBIT_REQUIRE_FIXTURE(text);
  const std::string dir = test::tmp_path("train", "fresh");
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/t.txt") << test::slurp(text).substr(0, 30000);
  const std::string args =
      "train --dim 32 --ff 64 --layers 2 --heads 4 --kv-heads 2 --tokenizer " + tok + " -f " + dir +
      "/t.txt --val-split 0.2 --steps 12 --batch 2 --ctx 32 " + "--lr 1e-2 --seed 5 -t 1 -o ";
  test::CliRun r = test::run_cli(args + dir + "/a.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto at = r.out.find("validation loss ");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_LT(std::stod(r.out.substr(at + 16)), std::log(512.0) - 0.5) << r.out;  // untrained: log V
  r = test::run_cli(args + dir + "/b.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(test::slurp(dir + "/a.gguf"), test::slurp(dir + "/b.gguf"));
  const Model m = Model::load(dir + "/a.gguf");
  EXPECT_EQ(m.config.n_embd, 32);
  EXPECT_EQ(m.config.n_head_kv, 2);
  EXPECT_EQ(m.config.n_vocab, 512);
  for (const auto& [extra, message] :
       std::vector<std::pair<std::string, std::string>>{{" --heads 5", "--heads"},
                                                        {" --kv-heads 3", "--kv-heads"},
                                                        {" --vocab 300", "--vocab"}}) {
    r = test::run_cli(args + dir + "/c.gguf" + extra);
    EXPECT_NE(r.rc, 0) << extra;
    EXPECT_NE(r.out.find(message), std::string::npos) << extra << ": " << r.out;
  }
  r = test::run_cli("train --dim 32 --ff 64 --layers 2 --heads 4 -f " + dir + "/t.txt -o " + dir +
                    "/c.gguf");
  EXPECT_NE(r.out.find("a fresh model needs a tokenizer"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/c.gguf"));
  std::filesystem::remove_all(dir);
}

TEST(TrainCli, RefusesBadInputWithoutOutput) {
  const std::string m = test::fixture("models/stories260K/stories260K.gguf");
  const std::string other = test::fixture("models/tinystories-656k");
  const std::string text = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(m);
  LOWBIT_REQUIRE_FIXTURE(text);
  const std::string dir = test::tmp_path("train", "bad");
  std::filesystem::create_directories(dir);
  const std::string out = dir + "/out.gguf";
  std::ofstream(dir + "/short.txt") << "Once upon a time.";
  struct Case {
    std::string args, message;
  };
  const Case cases[] = {
      {"-f " + dir + "/short.txt", "training text shorter than one window"},
      {"-f " + text + " --lr 0", "--lr"},
      {"-f " + text + " --steps 0", "--steps"},
      {"-f " + text + " --stop-after 1", "--checkpoint"},
      {"-f " + text + " --optimizer adam", "unknown optimizer"},
      {"-f " + text + " --type q4_0", "training writes float weights"},
      {"-f " + dir + "/missing.txt", "cannot open the text file"},
  };
  for (const Case& c : cases) {
    const test::CliRun r =
        test::run_cli("train -m " + m + " -o " + out + " --ctx 32 --batch 2 " + c.args);
    EXPECT_NE(r.rc, 0) << c.args;
    EXPECT_NE(r.out.find(c.message), std::string::npos) << c.args << ": " << r.out;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.args;
  }
  const test::CliRun w =
      test::run_cli("train -m " + m + " -f " + text + " -o " + dir + "/no/such/dir/x.gguf");
  EXPECT_NE(w.out.find("cannot write there"), std::string::npos) << w.out;
  // A checkpoint of stories260K does not resume another model: the first differing tensor is named.
  if (std::filesystem::exists(other)) {
    test::CliRun r = test::run_cli(
        "train -m " + m + " -f " + text + " -o " + out +
        " --steps 2 --stop-after 1 --ctx 32 --batch 2 -t 1 --checkpoint " + dir + "/ck");
    ASSERT_EQ(r.rc, 0) << r.out;
    r = test::run_cli("train --resume " + dir + "/ck -m " + other + " -t 1");
    EXPECT_NE(r.rc, 0);
    EXPECT_NE(r.out.find("checkpoint is for another model"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("token_embd.weight"), std::string::npos) << r.out;
    EXPECT_FALSE(std::filesystem::exists(out));
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace lowbit::train
#endif
