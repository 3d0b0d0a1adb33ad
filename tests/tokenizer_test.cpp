// SentencePiece-style encoding against the golden ids of the fixtures and llama.cpp's own
// tokenizer test cases; decode(encode(text)) == text on the fixture texts.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "engine/tokenizer.h"
#include "lowbit/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(Tokenizer, Tok512GoldenIds) {
  const std::string p = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const TokenizerData d = load_tokenizer(p, 512);
  const Tokenizer t(d);
  EXPECT_EQ(t.encode("Once upon a time, there was a little girl named Lily.", false),
            (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                  317, 426}));
  const std::string text = slurp(test::fixture("text/tinystories-valid-head.txt"));
  const auto ids = t.encode(text.substr(0, 2000), false);
  ASSERT_GE(ids.size(), 16u);
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 16),
            (std::vector<int32_t>{301, 427, 309, 426, 301, 427, 309, 394, 265, 262, 415, 271, 422,
                                  280, 295, 269}));
}

TEST(Tokenizer, LlamaSpmVocabularyPassesLlamaCppTestCases) {
  const std::string g = test::fixture("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf");
  LOWBIT_REQUIRE_FIXTURE(g);
  const TokenizerData d = load_gguf_tokenizer(g);
  const Tokenizer t(d);
  const std::string inp = slurp(g + ".inp"), out = slurp(g + ".out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> cases;
  for (size_t b = 0;;) {
    const size_t e = inp.find(sep, b);
    cases.push_back(inp.substr(b, e == std::string::npos ? std::string::npos : e - b));
    if (e == std::string::npos) break;
    b = e + sep.size();
  }
  std::istringstream lines(out);
  std::string line;
  size_t n = 0, ok = 0;
  for (const auto& c : cases) {
    if (!std::getline(lines, line)) break;
    std::istringstream ls(line);
    std::vector<int32_t> want;
    for (int32_t id; ls >> id;) want.push_back(id);
    ++n;
    const auto got = t.encode(c, false);
    EXPECT_EQ(got, want) << "case " << n << ": [" << c << "]";
    ok += got == want;
    EXPECT_EQ(t.decode(got), c) << "case " << n;
  }
  EXPECT_GE(n, 30u);
  EXPECT_EQ(ok, n);
}

TEST(Tokenizer, DecodeOfEncodeIsIdentityOnTheFixtureTexts) {
  const std::string p = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const TokenizerData d = load_tokenizer(p, 512);
  const Tokenizer t(d);
  for (const char* f : {"text/tinystories-valid-head.txt", "text/wikitext2-test.raw"}) {
    const std::string text = slurp(test::fixture(f)).substr(0, 20000);
    EXPECT_EQ(t.decode(t.encode(text, false)), text) << f;
  }
}

}  // namespace
}  // namespace lowbit
