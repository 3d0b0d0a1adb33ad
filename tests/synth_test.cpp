// lowbit synth: synthetic models load and validate, hold the planned tensors in the planned
// formats, have the promised statistics (weights N(0, 0.02²) within bands from the sample size,
// norms exactly 1), are deterministic per seed (and across threads and storage formats), run in
// the engine, and bad shapes are errors. The named shapes have the published parameter counts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "engine/llama.h"
#include "io/gguf.h"
#include "io/synth.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/threads.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string synth_tmp(const std::string& name) {
  return test::tmp_path("synth_test", name);
}

ModelConfig tiny() {  // dim 64, ff 128, 2 layers, 4 heads, 2 kv heads, vocab 300
  ModelConfig c;
  c.name = "tiny";
  c.n_embd = 64, c.n_ff = 128, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.n_vocab = 300;
  c.n_ctx_train = 64;
  return c;
}

ModelConfig tiny_qwen2() {
  ModelConfig c = tiny();
  c.arch = "qwen2", c.qkv_bias = true, c.tied_output = true, c.rope_theta = 1e6;
  return c;
}

SynthOptions typed(const char* type, uint64_t seed = 0) {
  SynthOptions o;
  o.type = Format::parse(type), o.seed = seed;
  return o;
}

std::vector<float> values(const ModelTensor& t) {
  std::vector<float> v(size_t(t.rows() * t.row_length()));
  t.format.dequantize(t.data, t.rows(), t.row_length(), v.data());
  return v;
}

bool is_norm(const std::string& name) {
  return name.find("_norm.") != std::string::npos;
}

TEST(Synth, TinyF32LoadsWithThePlannedTensorsAndTheStatistics) {
  const std::string p = synth_tmp("f32.gguf");
  const SynthResult r = write_synth_model(tiny(), p, typed("f32", 5));
  const Model m = Model::load(p);  // validates shapes against the configuration
  EXPECT_EQ(m.config.n_embd, 64);
  EXPECT_EQ(m.config.head_dim, 16);
  EXPECT_EQ(m.config.n_head_kv, 2);
  EXPECT_FALSE(m.config.tied_output);
  ASSERT_EQ(m.tensors.size(), r.tensors.size());
  ASSERT_EQ(m.tensors.size(), 1 + 2 * 9 + 2u);
  EXPECT_EQ(int64_t(m.parameter_count()), r.parameters);
  EXPECT_EQ(m.tokenizer.tokens.size(), 300u);
  EXPECT_EQ(m.tokenizer.tokens[0x0A + 3], "<0x0A>");
  EXPECT_EQ(*m.tokenizer.bos_id, 1u);
  double sum = 0, sum2 = 0;
  int64_t n = 0;
  for (const SynthTensor& s : r.tensors) {
    const ModelTensor* t = m.find(s.name);
    ASSERT_NE(t, nullptr) << s.name;
    EXPECT_EQ(t->shape, s.shape) << s.name;
    EXPECT_EQ(t->format.name(), "f32") << s.name;
    const std::vector<float> v = values(*t);
    if (is_norm(s.name)) {
      for (float x : v) ASSERT_EQ(x, 1.0f) << s.name;
      continue;
    }
    double ts = 0, ts2 = 0;
    for (float x : v) ts += x, ts2 += double(x) * x;
    const double tn = double(v.size()), tstd = std::sqrt(ts2 / tn - (ts / tn) * (ts / tn));
    // Sample std of n normals: relative standard error 1/sqrt(2n); 6 of them either side.
    EXPECT_NEAR(tstd, 0.02, 0.02 * 6 / std::sqrt(2 * tn)) << s.name;
    if (t->shape.size() == 2) {  // rows are seeded apart: no two equal
      EXPECT_NE(std::memcmp(v.data(), v.data() + t->row_length(), size_t(t->row_length()) * 4), 0);
    }
    sum += ts, sum2 += ts2, n += int64_t(v.size());
  }
  const double mean = sum / double(n), stddev = std::sqrt(sum2 / double(n) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 6 * 0.02 / std::sqrt(double(n)));
  EXPECT_NEAR(stddev, 0.02, 0.02 * 6 / std::sqrt(2.0 * double(n)));
}

TEST(Synth, Q8_0HasThePlannedTypesAndTheEngineRunsIt) {
  const std::string p = synth_tmp("q8_0.gguf");
  write_synth_model(tiny(), p, typed("q8_0"));
  const Model m = Model::load(p);
  for (const ModelTensor& t : m.tensors) {
    EXPECT_EQ(t.format.name(), t.shape.size() == 2 ? "q8_0" : "f32") << t.name;
  }
  GgufFile g(p);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.get_uint("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(g.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_FALSE(g.has("lowbit.private_types"));
  LlamaEngine e(m, 16);
  const std::vector<int32_t> prompt = {1, 100, 200, 299};
  const std::vector<float>& batch = e.eval(prompt.data(), 4, 0);
  ASSERT_EQ(batch.size(), 300u);
  for (float x : batch) ASSERT_TRUE(std::isfinite(x));
  const std::vector<float>& next = e.forward(5, 4);
  for (float x : next) ASSERT_TRUE(std::isfinite(x));
}

TEST(Synth, DeterministicPerSeedAcrossThreadsAndFormats) {
  set_threads(1);
  write_synth_model(tiny(), synth_tmp("a.gguf"), typed("f32", 7));
  set_threads(2);
  write_synth_model(tiny(), synth_tmp("b.gguf"), typed("f32", 7));
  write_synth_model(tiny(), synth_tmp("c.gguf"), typed("f32", 8));
  write_synth_model(tiny(), synth_tmp("d.gguf"), typed("f16", 7));
  set_threads(0);
  EXPECT_EQ(test::slurp(synth_tmp("a.gguf")), test::slurp(synth_tmp("b.gguf")));
  const Model a = Model::load(synth_tmp("a.gguf")), c = Model::load(synth_tmp("c.gguf")),
              h = Model::load(synth_tmp("d.gguf"));
  const ModelTensor *ta = a.find("blk.1.ffn_up.weight"), *tc = c.find("blk.1.ffn_up.weight"),
                    *th = h.find("blk.1.ffn_up.weight");
  ASSERT_EQ(ta->bytes, tc->bytes);
  EXPECT_NE(std::memcmp(ta->data, tc->data, ta->bytes), 0);
  // The f16 file holds the f32 file's weights rounded to f16.
  std::vector<uint8_t> want(th->bytes);
  const Format f16 = Format::parse("f16");
  f16.quantize(values(*ta).data(), ta->rows(), ta->row_length(), nullptr, want.data());
  EXPECT_EQ(std::memcmp(want.data(), th->data, th->bytes), 0);
}

TEST(Synth, UntileableRowsFallBackAsQuantizeDoes) {
  const std::string p = synth_tmp("q4_k.gguf");
  const SynthResult r = write_synth_model(tiny(), p, typed("q4_k"));
  const Model m = Model::load(p);
  const Format want = Format::parse("q4_k");
  for (const SynthTensor& s : r.tensors) {
    if (s.shape.size() < 2) continue;
    EXPECT_EQ(s.to, fallback_for(want, s.shape.back(), FallbackPolicy::kAuto)) << s.name;
    EXPECT_EQ(m.find(s.name)->format, s.to) << s.name;
    EXPECT_EQ(s.wanted, want);
  }
}

TEST(Synth, Qwen2LikeHasQkvBiasesAndATiedEmbedding) {
  const std::string p = synth_tmp("qwen2.gguf");
  write_synth_model(tiny_qwen2(), p, typed("q8_0", 3));
  const Model m = Model::load(p);
  EXPECT_EQ(m.config.arch, "qwen2");
  EXPECT_TRUE(m.config.qkv_bias);
  EXPECT_TRUE(m.config.tied_output);
  EXPECT_TRUE(m.config.rope_neox);
  EXPECT_DOUBLE_EQ(m.config.rope_theta, 1e6);
  EXPECT_EQ(m.find("output.weight"), nullptr);
  ASSERT_NE(m.find("blk.1.attn_k.bias"), nullptr);
  EXPECT_EQ(m.find("blk.1.attn_k.bias")->shape, std::vector<int64_t>{32});
  EXPECT_EQ(m.find("blk.1.attn_q.bias")->format.name(), "f32");
  LlamaEngine e(m, 8);
  for (float x : e.forward(1, 0)) ASSERT_TRUE(std::isfinite(x));
}

TEST(Synth, BadShapesAreErrorsAndWriteNothing) {
  auto fails = [](ModelConfig c, const std::string& what) {
    const std::string p = synth_tmp("bad.gguf");
    EXPECT_THROW(write_synth_model(c, p, typed("f16")), Error) << what;
    EXPECT_FALSE(std::filesystem::exists(p)) << what;
  };
  ModelConfig c = tiny();
  c.n_embd = 0, fails(c, "dim 0");
  c = tiny(), c.n_ff = -5, fails(c, "negative ff");
  c = tiny(), c.n_layer = 0, fails(c, "no layers");
  c = tiny(), c.n_head = 3, fails(c, "heads not dividing dim");
  c = tiny(), c.n_head_kv = 3, fails(c, "kv heads not dividing heads");
  c = tiny(), c.n_head_kv = 8, fails(c, "more kv heads than heads");
  c = tiny(), c.n_vocab = kSynthMinVocab - 1, fails(c, "vocab without room for the tokenizer");
  c = tiny(), c.head_dim = 15, fails(c, "odd head_dim");
  c = tiny(), c.n_ctx_train = 0, fails(c, "no context");
  c = tiny(), c.arch = "gpt2", fails(c, "architecture");
  EXPECT_THROW(synth_shape("llama-9000"), Error);
  EXPECT_THROW(write_synth_model(tiny(), synth_tmp("bad.gguf"), typed("q8_k")), Error);
  // An explicit head_dim frees heads from dividing dim (as llama.cpp's key_length does).
  c = tiny(), c.n_head = 3, c.n_head_kv = 1, c.head_dim = 16;
  write_synth_model(c, synth_tmp("hd.gguf"), typed("f32"));
  const Model m = Model::load(synth_tmp("hd.gguf"));
  EXPECT_EQ(m.config.head_dim, 16);
  EXPECT_EQ(m.find("blk.0.attn_q.weight")->shape, (std::vector<int64_t>{48, 64}));
}

TEST(Synth, NamedShapesHaveThePublishedParameterCounts) {
  const std::pair<const char*, int64_t> want[] = {{"tinyllama-1.1b", 1100048384},
                                                  {"llama2-7b", 6738415616},
                                                  {"llama3-8b", 8030261248},
                                                  {"qwen2-0.5b", 494032768}};
  ASSERT_EQ(synth_shape_names().size(), std::size(want));
  for (const auto& [name, params] : want) {
    int64_t n = 0;
    for (const SynthTensor& t : synth_plan(synth_shape(name), typed("q4_0"))) n += t.elements();
    EXPECT_EQ(n, params) << name;
  }
  const ModelConfig q = synth_shape("qwen2-0.5b");
  EXPECT_TRUE(q.qkv_bias && q.tied_output && q.arch == "qwen2");
  EXPECT_DOUBLE_EQ(synth_shape("llama3-8b").rope_theta, 500000.0);
}

}  // namespace
}  // namespace lowbit
