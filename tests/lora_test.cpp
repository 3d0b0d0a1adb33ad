// LoRA: the adapter's step and dropout against finite differences; a frozen base stored in any
// format multiplied through its decoded rows (both directions) against the decoded matrix; whole
// LoRA models (dense and Q4_0 bases, with and without dropout) against finite differences, and
// against the same model with the adapters merged into its weights; the engine's run-time adapter
// against the training forward; adapter files written, read back and refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "engine/llama.h"
#include "grad_check.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "io/synth.h"
#include "kernel/matmul.h"
#include "lowbit/lora.h"
#include "lowbit/model.h"
#include "test_util.h"
#include "train/model.h"
#include "train/ops.h"

namespace lowbit::train {
namespace {

using test::check_grad;
using test::randn;
using test::weighted;

TEST(LoraOps, AdapterStepMatchesFiniteDifferences) {
  const int64_t B = 5, K = 7, N = 6, r = 3;
  std::vector<double> x = randn(size_t(B * K), 1), A = randn(size_t(r * K), 2),
                      Bm = randn(size_t(N * r), 3);
  const std::vector<double> base = randn(size_t(B * N), 4), rw = randn(size_t(B * N), 5);
  const double scale = 0.75;
  std::vector<double> u(size_t(B * r)), y(base.size());
  auto f = [&] {
    y = base;
    lora_forward(x.data(), A.data(), Bm.data(), B, K, N, r, scale, u.data(), y.data());
    return weighted(rw, y);
  };
  f();
  std::vector<double> dx(x.size(), 0.0), dA(A.size(), 0.0), dB(Bm.size(), 0.0);
  lora_backward(rw.data(), x.data(), A.data(), Bm.data(), u.data(), B, K, N, r, scale, dx.data(),
                dA.data(), dB.data());
  check_grad("lora dx", x, dx, f);
  check_grad("lora dA", A, dA, f);
  check_grad("lora dB", Bm, dB, f);
}

// Dropout keeps about 1 - p of the elements, scaled by 1 / (1 - p); the same key draws the same
// mask, another key another; accumulate adds the same values.
TEST(LoraOps, DropoutIsASeededMask) {
  const int64_t n = 20000;
  const double p = 0.25;
  const auto un = static_cast<size_t>(n);
  std::vector<double> x(un, 2.0), a(un), b(un), c(un, 1.0);
  dropout(x.data(), n, p, 7, a.data(), false);
  dropout(x.data(), n, p, 7, b.data(), false);
  EXPECT_EQ(a, b);
  int64_t kept = 0, differ = 0;
  dropout(x.data(), n, p, 8, b.data(), false);
  dropout(x.data(), n, p, 7, c.data(), true);
  for (int64_t i = 0; i < n; ++i) {
    const double v = a[size_t(i)];
    ASSERT_TRUE(v == 0.0 || std::abs(v - 2.0 / (1 - p)) < 1e-15) << v;
    kept += v != 0.0;
    differ += (v != 0.0) != (b[size_t(i)] != 0.0);
    ASSERT_EQ(c[size_t(i)], 1.0 + v);
  }
  EXPECT_NEAR(double(kept) / double(n), 1 - p, 0.02);  // 7 standard deviations
  EXPECT_GT(differ, n / 5);
}

// A matrix stored in a format (the frozen base) multiplies like its decoded rows, forward (x·Wᵀ),
// backward (dy·W) and in the output head's slices, for every format whose blocks tile the rows.
TEST(LoraOps, StoredMatricesMultiplyAsTheirDecodedRows) {
  const int64_t B = 6, N = 40;
  for (const FormatInfo& info : all_formats()) {
    // Grouped formats also with a ragged last group (rows of 200 in groups of 64).
    for (const int64_t K : {int64_t(256), int64_t(200)}) {
      const Format f(info, info.block_elems == 0 ? 64 : 0);
      if (info.activation_only || (K == 200 && info.block_elems != 0)) continue;
      if (info.block_elems > 1 && K % info.block_elems != 0) continue;
      const std::vector<double> wd = randn(size_t(N * K), 20, 0.5);
      const std::vector<float> wf(wd.begin(), wd.end());
      std::vector<uint8_t> rows(f.row_bytes(K) * uint64_t(N));
      f.quantize(wf.data(), N, K, nullptr, rows.data());
      std::vector<float> dec(size_t(N * K));
      f.dequantize(rows.data(), N, K, dec.data());
      const std::vector<double> W(dec.begin(), dec.end());
      const Matrix<double> stored(&f, rows.data());
      const std::vector<double> x = randn(size_t(B * K), 21), dy = randn(size_t(B * N), 22);
      std::vector<double> y1(size_t(B * N)), y2(y1.size()), dx1(x.size(), 0.5), dx2(dx1);
      linear_forward(x.data(), stored, static_cast<const double*>(nullptr), B, K, N, y1.data());
      linear_forward(x.data(), W.data(), static_cast<const double*>(nullptr), B, K, N, y2.data());
      linear_backward(dy.data(), x.data(), stored, B, K, N, dx1.data(),
                      static_cast<double*>(nullptr), static_cast<double*>(nullptr));
      linear_backward(dy.data(), x.data(), W.data(), B, K, N, dx2.data(),
                      static_cast<double*>(nullptr), static_cast<double*>(nullptr));
      for (size_t i = 0; i < y1.size(); ++i) ASSERT_NEAR(y1[i], y2[i], 1e-9) << f.name();
      for (size_t i = 0; i < dx1.size(); ++i) ASSERT_NEAR(dx1[i], dx2[i], 1e-9) << f.name();
      // The output head in slices of 7 rows (a stored matrix from a row on).
      std::vector<int32_t> tgt(static_cast<size_t>(B));
      for (int64_t b = 0; b < B; ++b) tgt[size_t(b)] = int32_t((b * 11) % N);
      std::vector<double> dh1(x.size(), 0.0), dh2(x.size(), 0.0);
      const double l1 = cross_entropy(x.data(), stored, tgt.data(), B, K, N, 7, 1.0, dh1.data(),
                                      static_cast<double*>(nullptr));
      const double l2 = cross_entropy(x.data(), MatrixOf<double>(W.data()), tgt.data(), B, K, N, N,
                                      1.0, dh2.data(), static_cast<double*>(nullptr));
      EXPECT_NEAR(l1, l2, 1e-9 * std::abs(l2)) << f.name();
      for (size_t i = 0; i < dh1.size(); ++i) ASSERT_NEAR(dh1[i], dh2[i], 1e-9) << f.name();
      // Float: the same within float rounding; every tier's row decoder is bit-exact.
      const std::vector<float> xf(x.begin(), x.end());
      std::vector<float> yf(y1.size());
      linear_forward(xf.data(), Matrix<float>(&f, rows.data()), static_cast<const float*>(nullptr),
                     B, K, N, yf.data());
      for (size_t i = 0; i < yf.size(); ++i)
        ASSERT_NEAR(yf[i], y2[i], 1e-4 * (1 + std::abs(y2[i])));
      for (const Isa isa : kAllIsas) {
        if (!isa_supported(isa)) continue;
        std::vector<float> part(size_t(3 * K));
        dequantize_rows_isa(isa, f, rows.data(), K, 5, 8, part.data());
        ASSERT_EQ(0, std::memcmp(part.data(), dec.data() + 5 * K, part.size() * sizeof(float)))
            << isa_name(isa) << " " << f.name() << " K=" << K;
      }
    }
  }
}

ModelConfig small_config(int64_t width) {
  ModelConfig c;
  c.n_vocab = 13, c.n_embd = width, c.n_ff = 2 * width, c.n_layer = 2, c.n_head = 4;
  c.n_head_kv = 2, c.head_dim = width / 4, c.rms_eps = 1e-5, c.rope_theta = 10000.0;
  return c;
}

std::vector<double> base_weights(const ParamLayout& l, uint64_t seed) {
  std::vector<double> w = randn(size_t(l.total), seed, 0.3);
  for (const ParamInfo& p : l.params) {
    if (p.name.find("norm") != std::string::npos) {
      for (int64_t i = 0; i < p.size; ++i) w[size_t(p.offset + i)] += 1.0;
    }
  }
  return w;
}

struct Tokens {
  std::vector<int32_t> in, tgt;
};
Tokens tokens(int64_t n, int64_t vocab) {
  Tokens t{std::vector<int32_t>(size_t(n)), std::vector<int32_t>(size_t(n))};
  for (int64_t i = 0; i < n; ++i)
    t.in[size_t(i)] = int32_t((i * 7 + 3) % vocab), t.tgt[size_t(i)] = int32_t((i * 5 + 1) % vocab);
  return t;
}

// The synthetic model the file and engine tests load: width 32 (rows of whole 32-blocks), a
// vocabulary the synthetic tokenizer fits, untied output.
ModelConfig synth_config() {
  ModelConfig c = small_config(32);
  c.n_vocab = kSynthMinVocab + 5, c.n_ctx_train = 16, c.tied_output = false, c.arch = "llama";
  return c;
}
// That model with seeded weights (sd 0.2) in format `type`, written to a scratch file.
std::string write_synth(const char* type, uint64_t seed) {
  SynthOptions o;
  o.type = Format::parse(type);
  o.seed = seed, o.stddev = 0.2;
  const std::string path = test::tmp_path("lora", std::string(type) + ".gguf");
  write_synth_model(synth_config(), path, o);
  return path;
}

// Adapters on a dense base: every adapter's gradient against finite differences of the training
// loss (dropout on: the loss of the same masks, as the same key redraws them), on some targets.
TEST(LoraModel, GradientsMatchFiniteDifferences) {
  const ModelConfig c = small_config(8);
  for (const double drop : {0.0, 0.3}) {
    LoraConfig lc;
    lc.rank = 2, lc.alpha = 3, lc.dropout = drop;
    lc.targets = drop > 0 ? parse_lora_targets("q,v,down") : kAllLinear;
    Transformer<double> model(c, rope_inv_freq(c), 5, lc);
    const ParamLayout full = ParamLayout::of(c);
    const std::vector<double> wb = base_weights(full, 30);
    const FrozenBase<double> base(full, wb.data());
    model.set_base(&base);
    model.set_dropout_key(99);
    const ParamLayout& l = model.layout();
    std::vector<double> w = randn(size_t(l.total), 31, 0.4);  // B non-zero: A's gradient too
    const Tokens t = tokens(10, c.n_vocab);
    std::vector<double> grad(w.size(), 0.0), scratch(w.size());
    model.loss_and_grad(w.data(), t.in.data(), t.tgt.data(), 2, 5, grad.data(), 0.1);
    auto f = [&] {  // the training loss, masks included
      return 0.1 *
             model.loss_and_grad(w.data(), t.in.data(), t.tgt.data(), 2, 5, scratch.data(), 0.0);
    };
    std::vector<size_t> at;
    std::mt19937_64 rng(40);
    for (const ParamInfo& p : l.params) {
      at.push_back(size_t(p.offset)), at.push_back(size_t(p.offset + p.size - 1));
      for (int i = 0; i < 3; ++i)
        at.push_back(size_t(p.offset + int64_t(rng() % uint64_t(p.size))));
    }
    check_grad(drop > 0 ? "lora model, dropout" : "lora model", w, grad, f, at);
    if (drop > 0) {  // dropout changes the training loss, not the evaluation's
      const double eval = model.loss(w.data(), t.in.data(), t.tgt.data(), 2, 5);
      EXPECT_NE(eval, f() / 0.1);
      lc.dropout = 0;
      Transformer<double> plain(c, rope_inv_freq(c), 5, lc);
      plain.set_base(&base);
      EXPECT_NEAR(eval, plain.loss(w.data(), t.in.data(), t.tgt.data(), 2, 5), 1e-12);
    }
    if (HasFailure()) return;
  }
}

// The adapted model is the base with W + (alpha / r) B·A in every targeted matrix: its logits
// equal those of the full model with the adapters merged. A Q4_0 base (stored, decoded on the
// fly) against its decoded weights; the gradients through it against finite differences.
TEST(LoraModel, EqualsTheMergedModelOnAStoredBase) {
  const ModelConfig c = synth_config();
  const std::string path = write_synth("q4_0", 5);
  const Model m = Model::load(path);
  LoraConfig lc;
  lc.rank = 3, lc.alpha = 6, lc.targets = parse_lora_targets("q,k,o,up,down");
  Transformer<double> adapted(m.config, rope_inv_freq(m), 0, lc);
  const FrozenBase<double> base(m, m.config);
  adapted.set_base(&base);
  const ParamLayout& l = adapted.layout();
  std::vector<double> w = randn(size_t(l.total), 50, 0.2);
  // The merged model: decoded base weights plus scale * B·A.
  Transformer<double> full(m.config, rope_inv_freq(m));
  const std::vector<float> wf = weights_of(m, full.layout());
  std::vector<double> merged(wf.begin(), wf.end());
  for (const ParamInfo& pa : l.params) {
    if (!pa.name.ends_with(".lora_a")) continue;
    const std::string name = pa.name.substr(0, pa.name.size() - 7);
    const ParamInfo* pb = l.find(name + ".lora_b");
    const ParamInfo* pw = full.layout().find(name);
    const int64_t r = pa.shape[0], K = pa.shape[1], N = pb->shape[0];
    for (int64_t i = 0; i < N; ++i) {
      for (int64_t k = 0; k < K; ++k) {
        double s = 0;
        for (int64_t j = 0; j < r; ++j)
          s += w[size_t(pb->offset + i * r + j)] * w[size_t(pa.offset + j * K + k)];
        merged[size_t(pw->offset + i * K + k)] += lc.scale() * s;
      }
    }
  }
  const Tokens t = tokens(12, c.n_vocab);
  const std::vector<double> za = adapted.logits(w.data(), t.in.data(), 2, 6);
  const std::vector<double> zm = full.logits(merged.data(), t.in.data(), 2, 6);
  ASSERT_EQ(za.size(), zm.size());
  double mx = 0;
  for (size_t i = 0; i < za.size(); ++i) {
    ASSERT_NEAR(za[i], zm[i], 1e-10) << i;
    mx = std::max(mx, std::abs(za[i]));
  }
  EXPECT_GT(mx, 0.1);  // not all zero
  std::vector<double> grad(w.size(), 0.0);
  adapted.loss_and_grad(w.data(), t.in.data(), t.tgt.data(), 2, 6, grad.data(), 1.0 / 12);
  std::vector<size_t> at;
  for (const ParamInfo& p : l.params) at.push_back(size_t(p.offset + p.size / 2));
  check_grad(
      "lora on q4_0", w, grad,
      [&] { return adapted.loss(w.data(), t.in.data(), t.tgt.data(), 2, 6) / 12; }, at);
  std::remove(path.c_str());
}

// An adapter file holds what it was given; the engine applies it at run time exactly as the
// training forward does (F32 base: only float rounding apart); bad adapters are refused.
TEST(LoraFile, WrittenReadAndAppliedByTheEngine) {
  const ModelConfig c = synth_config();
  const std::string path = write_synth("f32", 6);
  const Model m = Model::load(path);
  LoraConfig lc;
  lc.rank = 4, lc.alpha = 8;
  Transformer<float> adapted(m.config, rope_inv_freq(m), 0, lc);
  const FrozenBase<float> base(m, m.config);
  adapted.set_base(&base);
  const ParamLayout& l = adapted.layout();
  const std::vector<double> wd = randn(size_t(l.total), 60, 0.2);
  const std::vector<float> w(wd.begin(), wd.end());
  const LoraAdapter a = lora_adapter_of(l, w, "llama", lc.alpha);
  const std::string apath = test::tmp_path("lora", "adapter.gguf");
  write_lora_gguf(a, apath);
  const LoraAdapter back = read_lora(apath);
  EXPECT_EQ(back.arch, "llama");
  EXPECT_EQ(back.alpha, 8.0f);
  ASSERT_EQ(back.pairs.size(), size_t(7 * c.n_layer));
  for (const auto& [name, p] : a.pairs) {
    const LoraPair& q = back.pairs.at(name);
    EXPECT_EQ(q.rank, p.rank);
    EXPECT_EQ(q.in, p.in);
    EXPECT_EQ(q.out, p.out);
    EXPECT_EQ(q.a, p.a) << name;
    EXPECT_EQ(q.b, p.b) << name;
  }
  const Tokens t = tokens(9, c.n_vocab);
  const std::vector<float> ours = adapted.logits(w.data(), t.in.data(), 1, 9);
  LlamaEngine engine(m, 16);
  const std::vector<float> plain = engine.eval(t.in.data(), 9, 0, true);
  engine.add_lora(back, 1.0f);
  const std::vector<float>& ref = engine.eval(t.in.data(), 9, 0, true);
  double diff = 0, change = 0, top = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    diff = std::max(diff, double(std::abs(ours[i] - ref[i])));
    change = std::max(change, double(std::abs(plain[i] - ref[i])));
    top = std::max(top, double(std::abs(ref[i])));
  }
  EXPECT_LT(diff, 1e-3 * top);
  EXPECT_GT(change, 100 * diff);  // the adapter matters, and is what makes them agree
  // Merged into the weights (F32), the model computes what the run-time adapter does.
  Model merged = Model::load(path);
  merge_lora(merged, back, 1.0f);
  EXPECT_EQ(merged.find("blk.1.ffn_down.weight")->format, Format::parse("f32"));
  LlamaEngine me(merged, 16);
  const std::vector<float>& zm = me.eval(t.in.data(), 9, 0, true);
  for (size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(zm[i], ref[i], 1e-4 * top) << i;

  // Refused: another model's adapter (a shape), a tensor the model lacks, a file that is not one.
  LoraAdapter wrong = a;
  wrong.pairs.begin()->second.in = 31;
  try {
    check_lora(wrong, m);
    ADD_FAILURE() << "shape accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, wrong.pairs.begin()->first);
  }
  LoraAdapter other_arch = a;
  other_arch.arch = "qwen2";
  try {
    check_lora(other_arch, m);
    ADD_FAILURE() << "architecture accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, "general.architecture");
  }
  LoraAdapter extra = a;
  extra.pairs.emplace("blk.9.attn_q.weight", a.pairs.begin()->second);
  EXPECT_THROW(check_lora(extra, m), Error);
  try {
    read_lora(path);  // a model, not an adapter
    ADD_FAILURE() << "model read as an adapter";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, "general.type");
  }
  std::remove(path.c_str());
  std::remove(apath.c_str());
}

// Malformed adapters: each refused with the file, and the field or tensor, named.
TEST(LoraFile, RefusesMalformedAdapters) {
  const Format f32 = Format::parse("f32");
  const std::vector<float> values(64 * 64, 0.5f);  // enough for the largest tensor below
  struct Case {
    const char* what;
    std::string type, atype;
    std::vector<std::pair<std::string, std::vector<int64_t>>> tensors;  // name, ne
    std::string field;                                                  // named in the error
  };
  const std::string q = "blk.0.attn_q.weight";
  const std::vector<Case> cases = {
      {"a model, not an adapter", "model", "lora", {{q + ".lora_a", {64, 4}}}, "general.type"},
      {"a control vector", "adapter", "control_vector", {{q + ".lora_a", {64, 4}}}, "adapter.type"},
      {"lora_b missing", "adapter", "lora", {{q + ".lora_a", {64, 4}}}, q + ".lora_b"},
      {"ranks disagree",
       "adapter",
       "lora",
       {{q + ".lora_a", {64, 4}}, {q + ".lora_b", {3, 64}}},
       q + ".lora_b"},
      {"a tensor that is not a pair's", "adapter", "lora", {{q, {64, 64}}}, q},
      {"a vector",
       "adapter",
       "lora",
       {{q + ".lora_a", {64}}, {q + ".lora_b", {4, 64}}},
       q + ".lora_a"},
      {"no tensors", "adapter", "lora", {}, "tensors"},
  };
  for (const Case& c : cases) {
    GgufWriter w;
    w.set("general.architecture", GgufValue::str("llama"));
    w.set("general.type", GgufValue::str(c.type));
    w.set("adapter.type", GgufValue::str(c.atype));
    for (const auto& [name, ne] : c.tensors) {
      int64_t n = 1;
      for (const int64_t d : ne) n *= d;
      w.add_tensor(name, ne, f32, [&values, n](OutputFile& out) {
        out.write(values.data(), uint64_t(n) * sizeof(float));
      });
    }
    const std::string path = test::tmp_path("lora", "bad.gguf");
    w.write(path);
    try {
      read_lora(path);
      ADD_FAILURE() << c.what << ": accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.context().file, path) << c.what;
      EXPECT_EQ(e.context().field, c.field) << c.what << ": " << e.what();
    }
    std::remove(path.c_str());
  }
}

// PEFT: a Hugging Face model (tinystories-656k, rotate-half Q/K) with an adapter. Written and
// read back it is the same adapter; and applied at run time it computes what the Hugging Face
// checkpoint with W + s·B·A merged in Hugging Face's own layout computes (loaded and converted by
// lowbit like any checkpoint): the Q/K row mapping is checked against the model's.
TEST(LoraFile, PeftAdaptersMatchTheHuggingFaceLayout) {
  const std::filesystem::path hf = test::fixture("models/tinystories-656k");
  LOWBIT_REQUIRE_FIXTURE(hf / "model.safetensors");
  const Model m = Model::load(hf.string());
  LoraAdapter a;
  a.arch = m.config.arch, a.alpha = 6;
  uint64_t seed = 70;
  for (int64_t l = 0; l < m.config.n_layer; ++l) {
    for (int t = 0; t < kLoraTargets; ++t) {
      const ModelTensor* w = m.find(lora_base_name(l, t));
      LoraPair p{3, w->shape[1], w->shape[0], {}, {}};
      const std::vector<double> av = randn(size_t(3 * p.in), seed++, 0.1),
                                bv = randn(size_t(3 * p.out), seed++, 0.1);
      p.a.assign(av.begin(), av.end()), p.b.assign(bv.begin(), bv.end());
      a.pairs.emplace(w->name, std::move(p));
    }
  }
  const std::string dir = test::tmp_path("lora", "peft");
  write_lora_peft(a, m.config, dir, hf.string());
  const LoraAdapter back = read_lora(dir, &m.config);
  EXPECT_EQ(back.alpha, 6.0f);
  for (const auto& [name, p] : a.pairs) {
    EXPECT_EQ(back.pairs.at(name).a, p.a) << name;
    EXPECT_EQ(back.pairs.at(name).b, p.b) << name;
  }
  const std::string cfg = test::slurp(dir + "/adapter_config.json");
  EXPECT_NE(cfg.find("\"q_proj\""), std::string::npos) << cfg;
  EXPECT_THROW(read_lora(dir), Error);  // no model: names cannot be mapped

  // The merged checkpoint, in Hugging Face's layout throughout.
  const SafetensorsFile orig((hf / "model.safetensors").string());
  const SafetensorsFile peft(dir + "/adapter_model.safetensors");
  auto floats = [](const StTensor& t) {
    std::vector<float> v(t.bytes / 4);
    std::memcpy(v.data(), t.data, t.bytes);
    return v;
  };
  std::vector<std::vector<float>> merged;
  merged.reserve(orig.tensors().size());
  std::vector<StWriteTensor> out;
  for (const StTensor& t : orig.tensors()) {
    std::vector<float> w = floats(t);
    const std::string stem = t.name.substr(0, t.name.size() - 7);  // less ".weight"
    if (const StTensor* ta = peft.find("base_model.model." + stem + ".lora_A.weight")) {
      const std::vector<float> A = floats(*ta), B = floats(*peft.find("base_model.model." + stem +
                                                                      ".lora_B.weight"));
      const int64_t N = t.shape[0], K = t.shape[1];
      for (int64_t i = 0; i < N; ++i) {
        for (int64_t k = 0; k < K; ++k) {
          double d = 0;
          for (int64_t j = 0; j < 3; ++j) d += double(B[size_t(i * 3 + j)]) * A[size_t(j * K + k)];
          w[size_t(i * K + k)] += float(2.0 * d);  // alpha / r = 6 / 3
        }
      }
    }
    merged.push_back(std::move(w));
    const std::vector<float>* v = &merged.back();
    out.push_back({t.name, StDtype::kF32, t.shape,
                   [v](OutputFile& o) { o.write(v->data(), v->size() * 4); }});
  }
  const std::filesystem::path mdir = test::tmp_path("lora", "merged-hf");
  std::filesystem::create_directories(mdir);
  for (const auto& e : std::filesystem::directory_iterator(hf)) {
    if (e.path().filename() != "model.safetensors")
      std::filesystem::copy_file(e.path(), mdir / e.path().filename());
  }
  write_safetensors((mdir / "model.safetensors").string(), orig.metadata(), out, {});
  const Model mm = Model::load(mdir.string());

  std::vector<int32_t> tok(12);
  for (size_t i = 0; i < tok.size(); ++i) tok[i] = int32_t((i * 37 + 11) % 2048);
  LlamaEngine ref(mm, 32), plain(m, 32), ours(m, 32);
  ours.add_lora(back, 1.0f);
  const std::vector<float>& zr = ref.eval(tok.data(), 12, 0, true);
  const std::vector<float>& zp = plain.eval(tok.data(), 12, 0, true);
  const std::vector<float>& zo = ours.eval(tok.data(), 12, 0, true);
  double diff = 0, change = 0;
  for (size_t i = 0; i < zr.size(); ++i) {
    diff = std::max(diff, double(std::abs(zo[i] - zr[i])));
    change = std::max(change, double(std::abs(zp[i] - zr[i])));
  }
  EXPECT_LT(diff, 1e-3);
  EXPECT_GT(change, 100 * diff);
  std::filesystem::remove_all(dir);
  std::filesystem::remove_all(mdir);
}

#ifdef LOWBIT_CLI
// `lowbit finetune` on a Q4_0 base: the adapter lowers the perplexity of the text it learned when
// applied with --lora (and --lora-scale 0 gives the base back); stopped and resumed it is the
// same file; bad input is refused with the option or tensor named and no adapter written.
TEST(LoraCli, FineTunesAQuantizedBaseAndResumes) {
  const std::string m = test::fixture("models/stories260K/stories260K.gguf");
  const std::string wiki = test::fixture("text/wikitext2-test.raw");
  LOWBIT_REQUIRE_FIXTURE(m);
  LOWBIT_REQUIRE_FIXTURE(wiki);
  const std::string dir = test::tmp_path("lora", "cli");
  std::filesystem::create_directories(dir);
  const std::string text = dir + "/wiki.txt", q = dir + "/q4_0.gguf";
  std::ofstream(text) << test::slurp(wiki).substr(0, 20000);
  test::CliRun r =
      test::run_cli("quantize -m " + m + " -o " + q + " --type q4_0 --method rtn -t 1");
  ASSERT_EQ(r.rc, 0) << r.out;
  const std::string common = "finetune -m " + q + " -f " + text +
                             " --steps 8 --batch 2 --ctx 32 --lr 5e-3 --lora-r 4 --lora-dropout "
                             "0.05 --seed 3 -t 2";
  r = test::run_cli(common + " -o " + dir + "/a.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("LoRA r 4"), std::string::npos) << r.out;
  const LoraAdapter a = read_lora(dir + "/a.gguf");
  EXPECT_EQ(a.alpha, 16.0f);
  EXPECT_EQ(a.pairs.size(), 7u * 5u);  // every linear layer of 5

  r = test::run_cli(common + " -o " + dir + "/b.gguf --stop-after 4 --checkpoint " + dir + "/ck");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/b.gguf"));
  r = test::run_cli("finetune --resume " + dir + "/ck -t 2");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_EQ(test::slurp(dir + "/a.gguf"), test::slurp(dir + "/b.gguf"));

  auto ppl = [&](const std::string& extra) {
    const test::CliRun p =
        test::run_cli("perplexity -m " + q + " -f " + text + " -c 32 --json " + extra, false);
    EXPECT_EQ(p.rc, 0) << extra;
    return nlohmann::json::parse(p.out)["ppl"].get<double>();
  };
  const double base = ppl(""), adapted = ppl("--lora " + dir + "/a.gguf");
  EXPECT_LT(adapted, 0.95 * base);
  EXPECT_NEAR(ppl("--lora " + dir + "/a.gguf --lora-scale 0"), base, 1e-9 * base);
  // Merged (F32) it scores what the run-time adapter does, up to the 8-bit activations the Q4_0
  // base's kernels use (0.1% here); re-quantized to Q4_0 it still keeps most of the gain.
  r = test::run_cli("merge -m " + q + " --lora " + dir + "/a.gguf --type f32 -o " + dir +
                    "/m32.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  r = test::run_cli("merge -m " + q + " --lora " + dir + "/a.gguf --type q4_0 -o " + dir +
                    "/m4.gguf");
  ASSERT_EQ(r.rc, 0) << r.out;
  auto ppl_of = [&](const std::string& model) {
    const test::CliRun p =
        test::run_cli("perplexity -m " + model + " -f " + text + " -c 32 --json", false);
    EXPECT_EQ(p.rc, 0) << model;
    return nlohmann::json::parse(p.out)["ppl"].get<double>();
  };
  EXPECT_NEAR(ppl_of(dir + "/m32.gguf"), adapted, 5e-3 * adapted);
  EXPECT_LT(ppl_of(dir + "/m4.gguf"), base);

  // Refused: a rank of 0; an unknown target; an adapter for another model; a model as adapter.
  r = test::run_cli(common + " --lora-r 0 -o " + dir + "/c.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("--lora-r"), std::string::npos) << r.out;
  r = test::run_cli(common + " --lora-targets q,x -o " + dir + "/c.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("--lora-targets"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/c.gguf"));
  const std::string other = dir + "/other.gguf";
  ModelConfig c = small_config(32);
  c.n_vocab = 512, c.n_layer = 5, c.n_ctx_train = 64;
  SynthOptions so;
  write_synth_model(c, other, so);
  r = test::run_cli("perplexity -m " + other + " -f " + text + " -c 32 --lora " + dir + "/a.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("blk.0.attn_k.weight"), std::string::npos) << r.out;
  r = test::run_cli("perplexity -m " + q + " -f " + text + " -c 32 --lora " + other);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("general.type"), std::string::npos) << r.out;
  // An adapter given as the base: named for what it is.
  r = test::run_cli("finetune -m " + dir + "/a.gguf -f " + text + " -o " + dir + "/c.gguf");
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.out.find("adapter, not a model"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir + "/c.gguf"));
  std::filesystem::remove_all(dir);
}
#endif

}  // namespace
}  // namespace lowbit::train
