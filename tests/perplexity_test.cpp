// Perplexity and KL divergence: the fixtures' golden perplexities, llama.cpp's chunking, KLD of a
// model against itself (0) and against its F16 copy (tiny, not 0), the saved-logits store (exact
// when it keeps the whole vocabulary, a lower bound when it keeps fewer), and bad stores.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "eval/perplexity.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(Chunking, FollowsLlamaCppAndTheScoreAllConvention) {
  std::vector<int32_t> text;
  for (int i = 0; i < 23; ++i) text.push_back(10 + i);
  // llama.cpp: [BOS] + text = 24 tokens -> 3 chunks of 8, BOS over each first token, positions
  // 4..6 scored (predicting tokens 5..7).
  const Chunks c = make_chunks(text, 1, {.ctx = 8});
  ASSERT_EQ(c.tokens.size(), 3u);
  EXPECT_EQ(c.tokens[0], (std::vector<int32_t>{1, 10, 11, 12, 13, 14, 15, 16}));
  EXPECT_EQ(c.tokens[1], (std::vector<int32_t>{1, 18, 19, 20, 21, 22, 23, 24}));
  EXPECT_EQ(c.first, 4);
  EXPECT_EQ(c.scored_per_chunk(), 3);
  // --score-all: BOS + 8 text tokens per chunk, all 8 scored; 23 tokens -> 2 chunks.
  const Chunks a = make_chunks(text, 1, {.ctx = 8, .score_all = true});
  ASSERT_EQ(a.tokens.size(), 2u);
  EXPECT_EQ(a.tokens[1], (std::vector<int32_t>{1, 18, 19, 20, 21, 22, 23, 24, 25}));
  EXPECT_EQ(a.first, 0);
  EXPECT_EQ(a.scored_per_chunk(), 8);
  // No BOS: plain cuts. --chunks limits; too short a text is an error.
  const Chunks n = make_chunks(text, std::nullopt, {.ctx = 8, .chunks = 2});
  ASSERT_EQ(n.tokens.size(), 2u);
  EXPECT_EQ(n.tokens[1][0], 18);
  EXPECT_THROW(make_chunks(text, 1, {.ctx = 64}), Error);
}

class Stories : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = test::fixture("models/stories260K/stories260K.bin");
    text_ = test::fixture("text/tinystories-valid-head.txt");
    if (!std::ifstream(path_) || !std::ifstream(text_)) {
      if (test::under_ci()) FAIL() << "fixture missing under CI";
      GTEST_SKIP() << "fixture missing";
    }
    m_ = Model::load(path_);
    text = test::slurp(text_);
  }
  std::string path_, text_, text;
  Model m_;
};

// The golden values of ../shared/fixtures/README.md (an independent fp64 implementation).
TEST_F(Stories, GoldenPerplexities) {
  const EvalOptions o4{.ctx = 256, .chunks = 4, .score_all = true};
  const PerplexityResult p4 = perplexity(m_, chunk_text(m_, text, o4), o4);
  EXPECT_EQ(p4.nll.n, 4 * 256);
  EXPECT_NEAR(p4.nll.mean, 1.487395, 2e-6);
  EXPECT_NEAR(p4.ppl(), 4.4256, 1e-4);
  const EvalOptions o16{.ctx = 256, .chunks = 16, .score_all = true};
  const PerplexityResult p16 = perplexity(m_, chunk_text(m_, text, o16), o16);
  EXPECT_EQ(p16.nll.n, 16 * 256);
  EXPECT_NEAR(p16.nll.mean, 1.460929, 2e-6);
  EXPECT_NEAR(p16.ppl(), 4.3100, 1e-4);
  // The standard error is that of the mean NLL, propagated: positive and shrinking with n.
  EXPECT_GT(p4.ppl_err(), p16.ppl_err());
  EXPECT_GT(p16.ppl_err(), 0.0);
}

TEST_F(Stories, KldOfAModelAgainstItselfIsZeroAndAgainstF16TinyButNot) {
  const EvalOptions o{.ctx = 128, .chunks = 6};
  const Chunks c = chunk_text(m_, text, o);
  const std::string f16 = ::testing::TempDir() + "/stories_f16.gguf";
  write_gguf(m_, f16, Format::parse("f16"));
  const Model h = Model::load(f16);
  const auto r = compare_models(m_, {&m_, &h}, c, o);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].kld.mean, 0.0);
  EXPECT_EQ(r[0].kld.max, 0.0);
  EXPECT_EQ(r[0].top1, 1.0);
  EXPECT_EQ(r[0].dp_rms, 0.0);
  EXPECT_EQ(r[0].quant.nll.mean, r[0].base.nll.mean);
  EXPECT_EQ(r[0].kld.n, 6 * 63);
  // F16 weights: KLD far below any 8-bit format's (~1e-3) but not zero.
  EXPECT_GT(r[1].kld.mean, 1e-9);
  EXPECT_LT(r[1].kld.mean, 1e-4);
  EXPECT_GT(r[1].top1, 0.98);
  EXPECT_NEAR(r[1].quant.ppl(), r[1].base.ppl(), 1e-2 * r[1].base.ppl());
  // The base's perplexity agrees with a plain perplexity run.
  EXPECT_NEAR(r[1].base.nll.mean, perplexity(m_, c, o).nll.mean, 1e-12);
}

TEST_F(Stories, SavedLogitsAreExactWithTheWholeVocabularyAndALowerBoundWithFewer) {
  const EvalOptions o{.ctx = 128, .chunks = 4};
  const Chunks c = chunk_text(m_, text, o);
  const std::string f16 = ::testing::TempDir() + "/stories_f16b.gguf";
  write_gguf(m_, f16, Format::parse("bf16"));
  const Model q = Model::load(f16);
  const KldResult direct = compare_models(m_, {&q}, c, o).at(0);

  const std::string full = ::testing::TempDir() + "/full.logits";
  collect_base_logits(m_, c, o, m_.config.n_vocab).save(full);
  const KldResult stored = compare_with_store(BaseLogits::load(full), q, c, o);
  EXPECT_TRUE(stored.exact);
  EXPECT_NEAR(stored.kld.mean, direct.kld.mean, 1e-4 * direct.kld.mean);  // f32 storage
  EXPECT_EQ(stored.top1, direct.top1);
  EXPECT_NEAR(stored.base.nll.mean, direct.base.nll.mean, 1e-6);
  EXPECT_NEAR(stored.dp_rms, direct.dp_rms, 1e-6);

  const std::string top = ::testing::TempDir() + "/top16.logits";
  collect_base_logits(m_, c, o, 16).save(top);
  const BaseLogits t = BaseLogits::load(top);
  EXPECT_EQ(t.k, 16);
  const KldResult approx = compare_with_store(t, q, c, o);
  EXPECT_FALSE(approx.exact);
  EXPECT_LE(approx.kld.mean, direct.kld.mean * (1 + 1e-6));
  EXPECT_GT(approx.kld.mean, 0.5 * direct.kld.mean);
  EXPECT_EQ(approx.top1, direct.top1);
  // A different chunking is refused.
  const EvalOptions o2{.ctx = 64, .chunks = 4};
  EXPECT_THROW(compare_with_store(t, q, chunk_text(m_, text, o2), o2), Error);
}

TEST_F(Stories, BadLogitsFilesAreRejectedWithTheFileNamed) {
  const EvalOptions o{.ctx = 64, .chunks = 2};
  const std::string good = ::testing::TempDir() + "/good.logits";
  collect_base_logits(m_, chunk_text(m_, text, o), o, 8).save(good);
  const std::string bytes = test::slurp(good);
  auto expect_bad = [&](std::string b, const std::string& what) {
    const std::string p = ::testing::TempDir() + "/bad.logits";
    std::ofstream(p, std::ios::binary) << b;
    try {
      BaseLogits::load(p);
      ADD_FAILURE() << "accepted: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
    }
  };
  expect_bad(bytes.substr(0, bytes.size() - 1), "truncated");
  expect_bad(bytes + "x", "trailing byte");
  expect_bad("XXLOGITS" + bytes.substr(8), "magic");
  std::string v = bytes;
  v[8] = 9;
  expect_bad(v, "version");
  std::string k = bytes;
  k[16] = char(0xFF), k[17] = char(0xFF);  // k > n_vocab
  expect_bad(k, "k");
  std::string id = bytes;
  const size_t first_pos = 36 + 2 * 64 * 4;
  id[first_pos + 8 + 3] = char(0x7F);  // first top-k id huge
  expect_bad(id, "id");
  std::string nan = bytes;
  const float qnan = std::nanf("");
  std::memcpy(&nan[first_pos], &qnan, 4);
  expect_bad(nan, "NaN");
}

}  // namespace
}  // namespace lowbit
