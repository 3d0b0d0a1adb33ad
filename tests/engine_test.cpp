// The reference forward pass: greedy decoding from BOS reproduces the published continuations of
// stories260K (llama2.c file and GGUF) and TinyStories-656K.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "engine/llama.h"
#include "engine/tokenizer.h"
#include "io/gguf.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/threads.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string greedy_from_bos(const Model& m, size_t chars) {
  LlamaEngine e(m);
  int32_t tok = int32_t(*m.tokenizer.bos_id);
  std::string text;
  for (int64_t pos = 0; pos < e.context() && text.size() < chars; ++pos) {
    const auto& logits = e.forward(tok, pos);
    tok = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    std::string piece = token_text(m.tokenizer, tok);
    if (text.empty() && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);  // SPM dummy prefix
    text += piece;
  }
  return text;
}

const std::string kStories =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the "
    "park. One day, she saw a big, red ball. She wanted to p";

TEST(Engine, Stories260KBinGreedyFromBosMatchesThePublishedText) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  EXPECT_EQ(greedy_from_bos(m, kStories.size()).substr(0, kStories.size()), kStories);
}

TEST(Engine, Stories260KGgufGreedyFromBosMatchesThePublishedText) {
  const std::string p = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  EXPECT_EQ(greedy_from_bos(m, kStories.size()).substr(0, kStories.size()), kStories);
}

TEST(Engine, TinyStories656KGreedyFromBosMatchesThePublishedText) {
  const std::string p = test::fixture("models/tinystories-656k");
  LOWBIT_REQUIRE_FIXTURE(p + "/model.safetensors");
  const Model m = Model::load(p);
  const std::string want =
      "Once upon a time, there was a little girl named Lily. She had a toy car that she loved "
      "very much";
  EXPECT_EQ(greedy_from_bos(m, want.size()).substr(0, want.size()), want);
}

TEST(Engine, ContextOverflowAndBadTokensAreErrors) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  LlamaEngine e(m, 4);
  EXPECT_THROW(e.forward(1, 4), Error);
  EXPECT_THROW(e.forward(512, 0), Error);
  EXPECT_THROW(e.forward(-1, 0), Error);
}

// Batched evaluation (matrix-matrix) gives the logits of token-by-token evaluation; prompts
// longer than the internal batch are split; evaluation can continue after a batch.
TEST(Engine, BatchedEvaluationMatchesTokenByToken) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  const int64_t V = m.config.n_vocab, n = 40;
  std::vector<int32_t> toks;
  for (int64_t i = 0; i < n; ++i) toks.push_back(int32_t((i * 37 + 1) % V));
  LlamaEngine one(m, 64);
  std::vector<float> want;
  for (int64_t i = 0; i < n; ++i) {
    const auto& l = one.forward(toks[size_t(i)], i);
    want.insert(want.end(), l.begin(), l.end());
  }
  set_threads(2);  // and on two threads (matmul rows, attention heads split between them)
  LlamaEngine batched(m, 64, 16);  // 40 tokens = 16 + 16 + 8
  const std::vector<float> got = batched.eval(toks.data(), n, 0, true);
  set_threads(0);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_NEAR(got[i], want[i], 1e-5 * (1 + std::fabs(want[i]))) << "index " << i;
  }
  // Last-token logits only, then one more token on top of the batch.
  LlamaEngine b2(m, 64, 16);
  const std::vector<float> last = b2.eval(toks.data(), n - 1, 0);
  for (int64_t v = 0; v < V; ++v) {
    ASSERT_NEAR(last[size_t(v)], want[size_t((n - 2) * V + v)],
                1e-5 * (1 + std::fabs(last[size_t(v)])));
  }
  const std::vector<float> next = b2.forward(toks[size_t(n - 1)], n - 1);
  for (int64_t v = 0; v < V; ++v) {
    ASSERT_NEAR(next[size_t(v)], want[size_t((n - 1) * V + v)],
                1e-5 * (1 + std::fabs(next[size_t(v)])));
  }
  EXPECT_THROW(b2.eval(toks.data(), 30, 40), Error);  // 40 + 30 > 64
}

// NeoX (rotate-half) RoPE on Hugging Face row order computes what llama-style RoPE computes on
// the permuted rows: TinyStories-656K with its Q/K rows permuted back and rope_neox set.
TEST(Engine, NeoxRopeOnUnpermutedRowsEqualsLlamaRopeOnPermutedRows) {
  const std::string p = test::fixture("models/tinystories-656k");
  LOWBIT_REQUIRE_FIXTURE(p + "/model.safetensors");
  const Model m = Model::load(p);
  Model neox = Model::load(p);
  neox.config.rope_neox = true;
  for (auto& t : neox.tensors) {
    const bool q = t.name.find(".attn_q.") != std::string::npos;
    const bool k = t.name.find(".attn_k.") != std::string::npos;
    if (!q && !k) continue;
    ASSERT_EQ(t.format.name(), "f32");
    auto buf = std::make_shared<std::vector<float>>(size_t(t.rows() * t.row_length()));
    permute_qk_rows(reinterpret_cast<const float*>(t.data), buf->data(), t.rows(), t.row_length(),
                    q ? m.config.n_head : m.config.n_head_kv, false);
    t.data = reinterpret_cast<const uint8_t*>(buf->data());
    neox.owners.push_back(buf);
  }
  const std::vector<int32_t> toks = {1, 200, 17, 900, 45, 3, 1000, 77, 512, 8};
  LlamaEngine a(m, 16), b(neox, 16);
  const std::vector<float> la = a.eval(toks.data(), int64_t(toks.size()), 0, true);
  const std::vector<float> lb = b.eval(toks.data(), int64_t(toks.size()), 0, true);
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    max_diff = std::max(max_diff, double(std::fabs(la[i] - lb[i])));
    max_abs = std::max(max_abs, double(std::fabs(la[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * max_abs);
  // And the two conventions are not interchangeable: NeoX on the permuted rows differs.
  Model wrong = Model::load(p);
  wrong.config.rope_neox = true;
  LlamaEngine c(wrong, 16);
  const std::vector<float> lc = c.eval(toks.data(), int64_t(toks.size()), 0, true);
  double diff_wrong = 0;
  for (size_t i = 0; i < la.size(); ++i)
    diff_wrong = std::max(diff_wrong, double(std::fabs(la[i] - lc[i])));
  EXPECT_GT(diff_wrong, 1e-2 * max_abs);
}

// Teacher-forced top-1 agreement of a model with the F32 original over the first tokens of the
// fixture text (the tokens are the text's own, from tok512).
double top1_agreement(const Model& base, const Model& q, const std::vector<int32_t>& toks) {
  LlamaEngine a(base, int64_t(toks.size())), b(q, int64_t(toks.size()));
  const int64_t n = int64_t(toks.size()), V = base.config.n_vocab;
  const std::vector<float> la = a.eval(toks.data(), n, 0, true);
  const std::vector<float> lb = b.eval(toks.data(), n, 0, true);
  int64_t same = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* x = &la[size_t(i * V)];
    const float* y = &lb[size_t(i * V)];
    same += std::max_element(x, x + V) - x == std::max_element(y, y + V) - y;
  }
  return double(same) / double(n);
}

// Quantized models run: stories260K in Q8_0 and Q4_0 (ffn_down's rows of 172 fall back, to F16
// within GGUF's types, or to lowbit's ragged int4_g32), written, reloaded and evaluated.
TEST(Engine, QuantizedModelsRunAndStayCloseToTheOriginal) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  std::ifstream f(test::fixture("text/tinystories-valid-head.txt"), std::ios::binary);
  std::stringstream text;
  text << f.rdbuf();
  std::vector<int32_t> toks = Tokenizer(m.tokenizer).encode(text.str().substr(0, 4000), true);
  toks.resize(256);
  struct Case {
    const char* type;
    FallbackPolicy fb;
    const char* down;
    double min_top1;
  };
  // Bands: Q8_0 is nearly lossless; 4-bit on a 64-wide model loses more but stays coherent.
  for (const Case c : {Case{"q8_0", FallbackPolicy::kAuto, "f16", 0.95},
                       Case{"q4_0", FallbackPolicy::kAuto, "f16", 0.6},
                       Case{"q4_0", FallbackPolicy::kLowbit, "int4_g32", 0.6}}) {
    SCOPED_TRACE(c.type);
    const std::string out = ::testing::TempDir() + "/engine_" + c.type + c.down + ".gguf";
    const auto plan = quantize_model(m, out, {.type = Format::parse(c.type), .fallback = c.fb});
    for (const auto& t : plan) {
      if (t.name.find("ffn_down") != std::string::npos)
        EXPECT_EQ(t.to.name(), c.down);
      else if (t.name.find("norm") != std::string::npos)
        EXPECT_EQ(t.to.name(), "f32");
      else
        EXPECT_EQ(t.to.name(), c.type) << t.name;
    }
    const Model q = Model::load(out);
    EXPECT_EQ(q.find("blk.0.attn_q.weight")->format.name(), c.type);
    EXPECT_EQ(q.find("blk.0.ffn_down.weight")->format.name(), c.down);
    const double agree = top1_agreement(m, q, toks);
    EXPECT_GE(agree, c.min_top1);
    EXPECT_LT(agree, 1.0 + 1e-12);
    {  // weights repacked at load time (x86 tiers) compute what the file's layout computes
      LlamaEngine on(q, 64, 64), off(q, 64, 64);
      off.set_repack(false);
      const std::vector<float> a = on.eval(toks.data(), 64, 0, true);
      const std::vector<float>& b = off.eval(toks.data(), 64, 0, true);
      // The sums agree to float rounding (KernelRepack tests), but the activations are
      // requantized to int8 at every layer, so a one-ulp difference can move a block to a
      // neighbouring code and the logits drift apart (ref and AVX2 tiers differ by 0.6% on
      // average on this Q8_0 model): compare on average. A wrong layout gives noise.
      ASSERT_EQ(a.size(), b.size());
      const size_t V = size_t(q.config.n_vocab);
      double mag = 0, diff = 0;
      int same_top1 = 0;
      for (size_t i = 0; i < a.size(); ++i) mag += std::fabs(b[i]), diff += std::fabs(a[i] - b[i]);
      for (size_t t = 0; t < 64; ++t) {
        same_top1 += std::max_element(a.begin() + t * V, a.begin() + (t + 1) * V) - a.begin() ==
                     std::max_element(b.begin() + t * V, b.begin() + (t + 1) * V) - b.begin();
      }
      EXPECT_LE(diff, 0.02 * mag);
      EXPECT_GE(same_top1, 60);
    }
    if (std::string(c.type) == "q8_0") {
      const std::string first = "Once upon a time, there was a little girl named Lily.";
      EXPECT_EQ(greedy_from_bos(q, first.size()).substr(0, first.size()), first);
    }
  }
}

}  // namespace
}  // namespace lowbit
