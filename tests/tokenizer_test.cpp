// SentencePiece-style encoding against the golden ids of the fixtures and llama.cpp's own
// tokenizer test cases; merge-ranked BPE (tokenizer.json) against a naive reference BPE written
// here; byte-level BPE on a synthetic vocabulary (pre-tokenizer splits, merge order, special
// tokens); decode(encode(text)) == text throughout.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "engine/tokenizer.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

TEST(Tokenizer, Tok512GoldenIds) {
  const std::string p = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const TokenizerData d = load_tokenizer(p, 512);
  const Tokenizer t(d);
  EXPECT_EQ(t.encode("Once upon a time, there was a little girl named Lily.", false),
            (std::vector<int32_t>{403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395,
                                  317, 426}));
  const std::string text = test::slurp(test::fixture("text/tinystories-valid-head.txt"));
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
  const std::string inp = test::slurp(g + ".inp"), out = test::slurp(g + ".out");
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
    const std::string text = test::slurp(test::fixture(f)).substr(0, 20000);
    EXPECT_EQ(t.decode(t.encode(text, false)), text) << f;
  }
}

// ---------------------------------------------------------------------------------------------
// Merge-ranked BPE: TinyStories-656K's tokenizer.json (no pre-tokenizer, Prepend + Replace).

const std::string kSpace = "\xe2\x96\x81";  // U+2581

int32_t id_of(const TokenizerData& d, const std::string& token) {
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    if (d.tokens[i] == token) return int32_t(i);
  }
  return -1;
}

// Obviously correct BPE as HF defines it: characters, then repeatedly the lowest-rank merge among
// all adjacent pairs, applied everywhere left to right, until no pair has a merge. Characters
// without a token become <0xHH> tokens if all exist, else unk.
class NaiveBpe {
 public:
  explicit NaiveBpe(const TokenizerData& d) : d_(d) {
    for (size_t i = 0; i < d.tokens.size(); ++i) ids_[d.tokens[i]] = int32_t(i);
    for (size_t r = 0; r < d.merges.size(); ++r) rank_.emplace(d.merges[r], r);
  }
  // SentencePiece normalization, then BPE.
  std::vector<int32_t> encode_spm(const std::string& text) const {
    if (text.empty()) return {};  // HF's Prepend leaves an empty text empty
    std::string t = kSpace;
    for (char c : text) t += c == ' ' ? kSpace : std::string(1, c);
    std::vector<std::string> sym;
    for (size_t i = 0; i < t.size();) {
      size_t n = 1;
      while (i + n < t.size() && (uint8_t(t[i + n]) & 0xC0) == 0x80) ++n;
      sym.push_back(t.substr(i, n));
      i += n;
    }
    return ids(bpe(sym));
  }
  std::vector<std::string> bpe(std::vector<std::string> sym) const {
    for (;;) {
      size_t best = SIZE_MAX;
      std::string left, right;
      for (size_t i = 0; i + 1 < sym.size(); ++i) {
        const auto it = rank_.find(sym[i] + " " + sym[i + 1]);
        if (it != rank_.end() && it->second < best) {
          best = it->second, left = sym[i], right = sym[i + 1];
        }
      }
      if (best == SIZE_MAX) return sym;
      std::vector<std::string> next;
      for (size_t i = 0; i < sym.size();) {
        if (i + 1 < sym.size() && sym[i] == left && sym[i + 1] == right) {
          next.push_back(left + right);
          i += 2;
        } else {
          next.push_back(sym[i++]);
        }
      }
      sym = std::move(next);
    }
  }
  std::vector<int32_t> ids(const std::vector<std::string>& sym) const {
    std::vector<int32_t> out;
    for (const std::string& s : sym) {
      if (const auto it = ids_.find(s); it != ids_.end()) {
        out.push_back(it->second);
        continue;
      }
      std::vector<int32_t> bytes;
      for (unsigned char b : s) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        if (const auto it = ids_.find(name); it != ids_.end()) bytes.push_back(it->second);
      }
      if (bytes.size() == s.size())
        out.insert(out.end(), bytes.begin(), bytes.end());
      else
        out.push_back(int32_t(*d_.unk_id));
    }
    return out;
  }

 private:
  const TokenizerData& d_;
  std::map<std::string, int32_t> ids_;
  std::map<std::string, size_t> rank_;
};

class TokenizerHfBpe : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string p = test::fixture("models/tinystories-656k/tokenizer.json");
    LOWBIT_REQUIRE_FIXTURE(p);
    d_ = load_hf_tokenizer(p);
  }
  TokenizerData d_;
};

TEST_F(TokenizerHfBpe, LoadsAsMergeRankedSentencePiece) {
  EXPECT_EQ(d_.model, "llama");
  EXPECT_EQ(d_.merges.size(), 1967u);
  EXPECT_TRUE(d_.add_space_prefix.value_or(false));  // the normalizer's Prepend("▁")
  EXPECT_EQ(d_.unk_id, 0u);
  EXPECT_EQ(d_.bos_id, 1u);
}

TEST_F(TokenizerHfBpe, MatchesNaiveBpeOnSentences) {
  const Tokenizer t(d_);
  const NaiveBpe naive(d_);
  for (const std::string s :
       {"Once upon a time, there was a little girl named Lily.", "Hello world", "a", " ",
        "  two  spaces ", "The dog named Max ran to the park!", "Tom and Sue were best friends.",
        "x/y \"quoted\" 12345 {weird} \xe2\x80\x9csmart\xe2\x80\x9d \xc3\xa9t\xc3\xa9"}) {
    EXPECT_EQ(t.encode(s, false), naive.encode_spm(s)) << "[" << s << "]";
  }
}

TEST_F(TokenizerHfBpe, MatchesNaiveBpeOnTheFixtureText) {
  const std::string text =
      test::slurp(test::fixture("text/tinystories-valid-head.txt")).substr(0, 20000);
  ASSERT_EQ(text.size(), 20000u);
  const Tokenizer t(d_);
  const NaiveBpe naive(d_);
  size_t n = 0;
  for (size_t b = 0; b < text.size(); ++n) {  // paragraphs
    const size_t e = std::min(text.find('\n', b), text.size());
    const std::string para = text.substr(b, e - b);
    EXPECT_EQ(t.encode(para, false), naive.encode_spm(para)) << "paragraph " << n;
    b = e + 1;
  }
  EXPECT_GE(n, 10u);
  for (size_t b = 0; b < 8000; b += 2000) {  // chunks spanning newlines
    const std::string chunk = text.substr(b + 333, 2000);
    EXPECT_EQ(t.encode(chunk, false), naive.encode_spm(chunk)) << "chunk at " << b + 333;
  }
}

TEST_F(TokenizerHfBpe, UsesTheMultiWordToken) {
  const int32_t max = id_of(d_, "dog" + kSpace + "named" + kSpace + "Max");
  ASSERT_GE(max, 0);
  const Tokenizer t(d_);
  const auto ids = t.encode("He had a dog named Max.", false);
  EXPECT_NE(std::find(ids.begin(), ids.end(), max), ids.end());
  EXPECT_EQ(t.decode({max}), "dog named Max");
  EXPECT_EQ(t.decode(ids), "He had a dog named Max.");
}

TEST_F(TokenizerHfBpe, BosUnknownAndSpecialTokens) {
  const Tokenizer t(d_);
  const auto plain = t.encode("Once", false);
  auto with_bos = plain;
  with_bos.insert(with_bos.begin(), 1);
  EXPECT_EQ(t.encode("Once", true), with_bos);
  // '/' and U+201C are not in the vocabulary and there are no byte tokens: one unk per character.
  EXPECT_EQ(t.encode("/", false), (std::vector<int32_t>{id_of(d_, kSpace), 0}));
  EXPECT_EQ(t.encode("\xe2\x80\x9c", false), (std::vector<int32_t>{id_of(d_, kSpace), 0}));
  // parse_special: the story marker is its id; the text after it gets the dummy prefix again.
  std::vector<int32_t> want = {1};
  want.insert(want.end(), plain.begin(), plain.end());
  EXPECT_EQ(t.encode("<|start_story|>Once", false, true), want);
  const auto literal = t.encode("<|start_story|>Once", false);
  EXPECT_EQ(std::find(literal.begin(), literal.end(), 1), literal.end());
  EXPECT_EQ(t.decode(literal), "<|start_story|>Once");
}

TEST_F(TokenizerHfBpe, DecodeOfEncodeIsIdentityOnTheWholeFixtureText) {
  const Tokenizer t(d_);
  const std::string raw = test::slurp(test::fixture("text/tinystories-valid-head.txt"));
  // The text has a few characters the vocabulary lacks (mojibake, '/'): they can only be unk.
  std::map<std::string, int32_t> vocab;
  for (size_t i = 0; i < d_.tokens.size(); ++i) vocab[d_.tokens[i]] = int32_t(i);
  std::string text;
  for (size_t i = 0; i < raw.size();) {
    size_t n = 1;
    while (i + n < raw.size() && (uint8_t(raw[i + n]) & 0xC0) == 0x80) ++n;
    const std::string ch = raw.substr(i, n);
    if (ch == " " || vocab.count(ch)) text += ch;
    i += n;
  }
  ASSERT_GT(text.size(), 780000u);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = t.encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("encode_seconds", std::to_string(s));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 0);
  EXPECT_EQ(t.decode(ids), text);
  EXPECT_LT(ids.size(), text.size() / 3);  // merges across words make it compress well
}

TEST(Tokenizer, EncodesTheWholeFixtureTextQuickly) {
  const std::string p = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const TokenizerData d = load_tokenizer(p, 512);
  const Tokenizer t(d);
  const std::string text = test::slurp(test::fixture("text/tinystories-valid-head.txt"));
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = t.encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("encode_seconds", std::to_string(s));
  EXPECT_EQ(t.decode(ids), text);
#ifdef NDEBUG
  EXPECT_LT(s, 2.0) << "encoding " << text.size() << " bytes";  // ~0.2 s expected; O(n log n)
#endif
}

// ---------------------------------------------------------------------------------------------
// Byte-level BPE on a synthetic vocabulary.

// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the other 68 take U+0100.. in
// byte order.
bool printable(int b) {
  return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
}

std::string byte_char(uint8_t b) {
  uint32_t cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int i = 0; i < b; ++i) cp += !printable(i);
  }
  if (cp < 0x80) return std::string(1, char(cp));
  return {char(0xC0 | (cp >> 6)), char(0x80 | (cp & 0x3F))};
}

// 256 byte tokens in GPT-2's order (printable bytes first), merge results, then special tokens.
TokenizerData byte_level_vocab(const std::string& pre) {
  TokenizerData d;
  d.model = "gpt2";
  d.pre = pre;
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = 0; b < 256; ++b) {
      if (printable(b) == (pass == 0)) d.tokens.push_back(byte_char(uint8_t(b)));
    }
  }
  d.merges = {"h e", "e l", "l l", "Ġ t", "Ġt he", "l o", "Ġ he", "Ċ Ċ"};
  for (const std::string& m : d.merges) {
    const std::string tok = m.substr(0, m.find(' ')) + m.substr(m.find(' ') + 1);
    if (id_of(d, tok) < 0) d.tokens.push_back(tok);
  }
  d.token_types.assign(d.tokens.size(), int32_t(TokenType::kNormal));
  d.tokens.push_back("<|endoftext|>");
  d.token_types.push_back(int32_t(TokenType::kControl));
  d.tokens.push_back("<|user|>");
  d.token_types.push_back(int32_t(TokenType::kUserDefined));
  d.eos_id = uint32_t(d.tokens.size() - 2);
  return d;
}

std::vector<std::string> strings(std::initializer_list<const char*> l) {
  return {l.begin(), l.end()};
}

TEST(TokenizerByteLevel, TestVocabularyIsGpt2Shaped) {
  EXPECT_EQ(byte_char(' '), "\xc4\xa0");   // Ġ
  EXPECT_EQ(byte_char('\n'), "\xc4\x8a");  // Ċ
  EXPECT_EQ(byte_char(0xAD), "\xc5\x83");  // U+0143
  const TokenizerData d = byte_level_vocab("gpt2");
  EXPECT_EQ(d.tokens[0], "!");
  EXPECT_EQ(d.tokens[188], byte_char(0));  // GPT-2: 'Ā' follows the 188 printable bytes
  EXPECT_EQ(d.tokens[188], "\xc4\x80");
  EXPECT_NO_THROW(validate_tokenizer_data(d, "synthetic"));
}

TEST(TokenizerByteLevel, Gpt2PreTokenizer) {
  for (const char* pre : {"gpt2", "default", ""}) {
    const TokenizerData d = byte_level_vocab(pre);
    const Tokenizer t(d);
    EXPECT_EQ(t.pretokenize("Hello world's 123  x"),
              strings({"Hello", " world", "'s", " 123", " ", " x"}));
    EXPECT_EQ(t.pretokenize("HELLO'S"), strings({"HELLO", "'", "S"}));
    EXPECT_EQ(t.pretokenize("12345"), strings({"12345"}));
    EXPECT_EQ(t.pretokenize("a\n\nb"), strings({"a", "\n", "\n", "b"}));
    EXPECT_EQ(t.pretokenize("x  \n  y"), strings({"x", "  \n ", " y"}));
  }
}

TEST(TokenizerByteLevel, Llama3AndQwen2PreTokenizers) {
  for (const char* pre : {"llama-bpe", "llama3", "qwen2"}) {
    const TokenizerData d = byte_level_vocab(pre);
    const Tokenizer t(d);
    const bool qwen = std::string(pre) == "qwen2";
    EXPECT_EQ(t.pretokenize("12345"),
              qwen ? strings({"1", "2", "3", "4", "5"}) : strings({"123", "45"}));
    EXPECT_EQ(t.pretokenize("HELLO'S"), strings({"HELLO", "'S"}));
    EXPECT_EQ(t.pretokenize("don't I'LL?!\n"), strings({"don", "'t", " I", "'LL", "?!\n"}));
    EXPECT_EQ(t.pretokenize("a\n\nb"), strings({"a", "\n\n", "b"}));
    EXPECT_EQ(t.pretokenize("x  \n  y"), strings({"x", "  \n", " ", " y"}));
    EXPECT_EQ(t.pretokenize("Hello world's 123  x"),
              qwen ? strings({"Hello", " world", "'s", " ", "1", "2", "3", " ", " x"})
                   : strings({"Hello", " world", "'s", " ", "123", " ", " x"}));
  }
}

TEST(TokenizerByteLevel, UnicodeLettersStayTogetherAndInvalidBytesStandAlone) {
  for (const char* pre : {"gpt2", "llama3", "qwen2"}) {
    const TokenizerData d = byte_level_vocab(pre);
    const Tokenizer t(d);
    EXPECT_EQ(t.pretokenize("h\xc3\xa9llo w\xc3\xb6rld"),
              strings({"h\xc3\xa9llo", " w\xc3\xb6rld"}));
    EXPECT_EQ(t.pretokenize("\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"),  // 你好世界
              strings({"\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c"}));
    EXPECT_EQ(t.pretokenize("ab\xff\xfe"
                            "cd"),
              strings({"ab", "\xff\xfe", "cd"}));
    EXPECT_EQ(t.pretokenize(""), strings({}));
  }
}

TEST(TokenizerByteLevel, MergesApplyByRankLeftmostFirst) {
  const TokenizerData d = byte_level_vocab("gpt2");
  const Tokenizer t(d);
  auto ids = [&](std::initializer_list<const char*> toks) {
    std::vector<int32_t> v;
    for (const char* s : toks) v.push_back(id_of(d, s));
    return v;
  };
  // h e (0) first; then l l (2) before l o (5); he l does not merge.
  EXPECT_EQ(t.encode("hello", false), ids({"he", "ll", "o"}));
  EXPECT_EQ(t.encode("lll", false), ids({"ll", "l"}));  // leftmost of equal ranks
  EXPECT_EQ(t.encode("the", false), ids({"t", "he"}));
  // Ġ t h e: h e (0), then Ġ t (3), then Ġt he (4); "Ġ he" (6) never gets its turn.
  EXPECT_EQ(t.encode(" the", false), ids({"Ġthe"}));
  EXPECT_EQ(t.encode("hello the hello", false), ids({"he", "ll", "o", "Ġthe", "Ġhe", "ll", "o"}));
  EXPECT_EQ(t.encode("a\n\n\nb", false), ids({"a", "ĊĊ", "Ċ", "b"}));
  EXPECT_EQ(t.encode("\xff", false), ids({"ÿ"}));
  EXPECT_EQ(t.encode("", true), std::vector<int32_t>{});  // no BOS id in this vocabulary
}

TEST(TokenizerByteLevel, DecodeOfEncodeIsIdentityForAnyBytes) {
  const TokenizerData d = byte_level_vocab("llama3");
  const Tokenizer t(d);
  for (const std::string& s : {std::string("he\xff\xfe\n\n  x\t\r\n"), std::string("\0a\0", 3),
                               std::string("h\xc3\xa9llo \xe4\xbd\xa0\xe5\xa5\xbd \xc3"),
                               std::string(100000, ' ') + "x", std::string(200000, 'l')}) {
    EXPECT_EQ(t.decode(t.encode(s, false)), s);
  }
  std::mt19937 rng(7);
  const std::string alphabet = "hel o\n\t'sS1\xc3\xa9\xff";
  for (int i = 0; i < 300; ++i) {
    std::string s(rng() % 40, '\0');
    for (char& c : s) c = i % 2 ? char(rng() % 256) : alphabet[rng() % alphabet.size()];
    const auto ids = t.encode(s, false);
    EXPECT_EQ(t.decode(ids), s) << "case " << i;
  }
}

TEST(TokenizerByteLevel, FixtureTextRoundTrips) {
  const std::string p = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(p);
  const std::string text = test::slurp(p);
  const TokenizerData d = byte_level_vocab("llama3");
  const Tokenizer t(d);
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = t.encode(text, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  RecordProperty("encode_seconds", std::to_string(s));
  EXPECT_LT(ids.size(), text.size());  // "he", "ll", "Ġthe" ...
  EXPECT_EQ(t.decode(ids), text);
}

TEST(TokenizerByteLevel, SpecialTokensWithParseSpecial) {
  const TokenizerData d = byte_level_vocab("gpt2");
  const Tokenizer t(d);
  const int32_t eot = id_of(d, "<|endoftext|>"), user = id_of(d, "<|user|>");
  const std::string text = "hello<|endoftext|> the<|user|><|user|>";
  std::vector<int32_t> want = t.encode("hello", false);
  want.push_back(eot);
  for (int32_t id : t.encode(" the", false)) want.push_back(id);
  want.push_back(user);
  want.push_back(user);
  const auto got = t.encode(text, false, true);
  EXPECT_EQ(got, want);
  EXPECT_EQ(t.decode(got), "hello the<|user|><|user|>");  // control tokens decode to nothing
  const auto literal = t.encode(text, false);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), eot), 0);
  EXPECT_EQ(std::count(literal.begin(), literal.end(), user), 0);
  EXPECT_EQ(t.decode(literal), text);
}

TEST(TokenizerByteLevel, MissingByteTokenIsUnknown) {
  TokenizerData d = byte_level_vocab("gpt2");
  const int32_t z = id_of(d, "z");
  d.tokens[size_t(z)] = "<unk>";
  d.token_types[size_t(z)] = int32_t(TokenType::kUnknown);
  d.unk_id = uint32_t(z);
  const Tokenizer t(d);
  EXPECT_EQ(t.encode("zz", false), (std::vector<int32_t>{z, z}));
  d.unk_id.reset();
  const Tokenizer strict(d);
  EXPECT_THROW(strict.encode("z", false), Error);
}

TEST(Tokenizer, UnsupportedModelOrPreTokenizerIsAnError) {
  TokenizerData d = byte_level_vocab("gpt2");
  d.model = "bert";
  EXPECT_THROW(Tokenizer{d}, Error);
  d.model = "gpt2";
  d.pre = "no-such-pre";
  try {
    const Tokenizer t(d);
    ADD_FAILURE() << "no error for an unknown pre-tokenizer";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, "tokenizer.ggml.pre");
    EXPECT_EQ(e.context().found, "no-such-pre");
  }
}

TEST(Tokenizer, SentencePieceHasNoPreTokenizer) {
  const std::string p = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const TokenizerData d = load_tokenizer(p, 512);
  const Tokenizer t(d);
  EXPECT_EQ(t.pretokenize("Hello world's 123"), strings({"Hello world's 123"}));
}

}  // namespace
}  // namespace lowbit
