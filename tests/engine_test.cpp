// The reference forward pass: greedy decoding from BOS reproduces the published continuations of
// stories260K (llama2.c file and GGUF) and TinyStories-656K.
#include <gtest/gtest.h>

#include <algorithm>

#include "engine/llama.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
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

}  // namespace
}  // namespace lowbit
