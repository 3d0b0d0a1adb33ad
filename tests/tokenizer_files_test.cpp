// Tokenizer file loaders: the fixtures against values checked in llama.cpp's GGUFs of the same
// vocabularies, agreement between formats, and crafted bad files (bad-inputs.md items 10 and 35).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/tokenizer_data.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kByte = 6;

// ---- helpers ----------------------------------------------------------------------------------

// A fresh directory under the test temp dir.
std::string temp_dir(const std::string& name) {
  const fs::path d = fs::path(::testing::TempDir()) / ("lowbit_tok_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

std::string write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  return path;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs f; it must throw lowbit::Error whose message names path and contains part.
void expect_error(const std::function<void()>& f, const std::string& path,
                  const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no error for " << path << " (wanted \"" << part << "\")";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find(part), std::string::npos) << "wanted \"" << part << "\" in: " << msg;
  }
}

std::string le32(int32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}
std::string lef(float v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}
// One llama2.c token record.
std::string l2c_token(float score, const std::string& text) {
  return lef(score) + le32(int32_t(text.size())) + text;
}
std::string l2c_file(const std::vector<std::string>& texts, int32_t max_len = 8) {
  std::string s = le32(max_len);
  for (size_t i = 0; i < texts.size(); ++i) s += l2c_token(-float(i), texts[i]);
  return s;
}

// Protobuf encoding, for crafted SentencePiece models.
std::string pb_varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) s += char(uint8_t(v | 0x80)), v >>= 7;
  return s + char(uint8_t(v));
}
std::string pb_key(uint32_t field, uint32_t wire) {
  return pb_varint(uint64_t(field) << 3 | wire);
}
std::string pb_len(uint32_t field, const std::string& body) {
  return pb_key(field, 2) + pb_varint(body.size()) + body;
}
std::string pb_int(uint32_t field, int64_t v) {
  return pb_key(field, 0) + pb_varint(uint64_t(v));
}
std::string pb_piece(const std::string& text, float score, int type) {
  std::string body = pb_len(1, text) + pb_key(2, 5) + lef(score);
  if (type != kNormal) body += pb_int(3, type);
  return pb_len(1, body);
}
std::string small_spm_model() {
  return pb_piece("<unk>", 0, kUnknown) + pb_piece("<s>", 0, kControl) +
         pb_piece("</s>", 0, kControl) + pb_piece("<0x41>", 0, kByte) +
         pb_piece(
             "\xE2\x96\x81"
             "a",
             -1, kNormal) +
         pb_piece("b", -2, kNormal);
}

// A small, valid SentencePiece-style tokenizer.json with the given vocab/merges/added tokens.
std::string hf_json(const std::string& vocab, const std::string& merges,
                    const std::string& added = "[]") {
  return R"({"version": "1.0", "added_tokens": )" + added +
         R"(, "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend",
  "prepend": "\u2581"}, {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
  "pre_tokenizer": null, "decoder": null, "model": {"type": "BPE", "unk_token": "<unk>",
  "byte_fallback": true, "vocab": )" +
         vocab + R"(, "merges": )" + merges + "}}";
}
const char* kVocab = R"({"<unk>": 0, "<s>": 1, "a": 2, "b": 3, "ab": 4})";
const char* kAdded = R"([{"id": 0, "content": "<unk>", "special": true},
                          {"id": 1, "content": "<s>", "special": true}])";

std::string hf_file(const std::string& name, const std::string& json) {
  return write_file(temp_dir(name) + "/tokenizer.json", json);
}

// ---- fixtures: llama2.c tokenizer.bin ---------------------------------------------------------

// Expected values read from stories260K.gguf (llama.cpp's llama2.c converter on tok512.bin).
TEST(TokenizerFiles, Tok512BinMatchesReferenceGguf) {
  const std::string path = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(path);
  const TokenizerData t = load_llama2c_tokenizer(path, 512);
  EXPECT_EQ(t.model, "llama");
  ASSERT_EQ(t.tokens.size(), 512u);
  ASSERT_EQ(t.scores.size(), 512u);
  ASSERT_EQ(t.token_types.size(), 512u);
  EXPECT_EQ(t.tokens[0], "<unk>");
  EXPECT_EQ(t.tokens[1], "<s>");   // stored as "\n<s>\n"
  EXPECT_EQ(t.tokens[2], "</s>");  // stored as "\n</s>\n"
  EXPECT_EQ(t.tokens[3], "<0x00>");
  EXPECT_EQ(t.tokens[13], "<0x0A>");
  EXPECT_EQ(t.tokens[258], "<0xFF>");
  EXPECT_EQ(t.tokens[259], "\xE2\x96\x81t");  // stored as " t"
  EXPECT_EQ(t.tokens[260], "he");
  EXPECT_EQ(t.tokens[403], "\xE2\x96\x81Once");
  EXPECT_EQ(t.tokens[407], "\xE2\x96\x81upon");
  EXPECT_EQ(t.tokens[511], "\xE2\x80\x8A");  // U+200A stays as it is
  EXPECT_EQ(t.scores[0], 0.0f);
  EXPECT_EQ(t.scores[260], -1.0f);
  EXPECT_EQ(t.scores[300], -41.0f);
  EXPECT_EQ(t.scores[403], -144.0f);
  EXPECT_EQ(t.scores[511], -252.0f);
  EXPECT_EQ(t.token_types[0], kUnknown);
  EXPECT_EQ(t.token_types[1], kControl);
  EXPECT_EQ(t.token_types[2], kControl);
  for (int i = 3; i < 259; ++i) EXPECT_EQ(t.token_types[size_t(i)], kByte) << i;
  for (int i = 259; i < 512; ++i) EXPECT_EQ(t.token_types[size_t(i)], kNormal) << i;
  EXPECT_EQ(t.unk_id, 0u);
  EXPECT_EQ(t.bos_id, 1u);
  EXPECT_EQ(t.eos_id, 2u);
  EXPECT_FALSE(t.pad_id.has_value());  // the reference says 0xFFFFFFFF: none
  EXPECT_TRUE(t.byte_fallback);
  EXPECT_TRUE(t.merges.empty());
  // vocab_size 0 reads to the end of the file: the same 512 tokens.
  EXPECT_EQ(load_llama2c_tokenizer(path, 0).tokens, t.tokens);
}

TEST(TokenizerFiles, Tok512BinAndModelAgree) {
  const std::string bin = test::fixture("models/stories260K/tok512.bin");
  const std::string model = test::fixture("models/stories260K/tok512.model");
  LOWBIT_REQUIRE_FIXTURE(bin);
  LOWBIT_REQUIRE_FIXTURE(model);
  const TokenizerData a = load_llama2c_tokenizer(bin, 512);
  const TokenizerData b = load_sentencepiece_model(model);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.scores, b.scores);
  EXPECT_EQ(a.token_types, b.token_types);
  EXPECT_EQ(b.bos_id, 1u);
  EXPECT_EQ(b.eos_id, 2u);
  EXPECT_EQ(b.unk_id, 0u);
  EXPECT_FALSE(b.pad_id.has_value());
  EXPECT_EQ(b.add_space_prefix, true);  // absent in the file: the proto's default
  EXPECT_TRUE(b.byte_fallback);
}

// Expected values read from ggml-vocab-llama-spm.gguf.
TEST(TokenizerFiles, Llama2ModelMatchesReferenceGguf) {
  const std::string path = test::fixture("models/llama2-tokenizer/tokenizer.model");
  LOWBIT_REQUIRE_FIXTURE(path);
  const TokenizerData t = load_sentencepiece_model(path);
  EXPECT_EQ(t.model, "llama");
  EXPECT_EQ(t.pre, "default");
  ASSERT_EQ(t.tokens.size(), 32000u);
  const std::vector<std::string> first = {"<unk>", "<s>", "</s>", "<0x00>", "<0x01>", "<0x02>"};
  for (size_t i = 0; i < first.size(); ++i) EXPECT_EQ(t.tokens[i], first[i]);
  struct Known {
    size_t id;
    const char* text;
    float score;
    int32_t type;
  };
  const Known known[] = {
      {0, "<unk>", 0.0f, kUnknown},
      {1, "<s>", 0.0f, kControl},
      {13, "<0x0A>", 0.0f, kByte},
      {258, "<0xFF>", 0.0f, kByte},
      {259, "\xE2\x96\x81\xE2\x96\x81", -1e9f, kNormal},
      {260, "\xE2\x96\x81t", -1.0f, kNormal},
      {278, "\xE2\x96\x81the", -19.0f, kNormal},
      {1576, "The", -1317.0f, kNormal},
      {15043, "\xE2\x96\x81Hello", -14784.0f, kNormal},
      {29871, "\xE2\x96\x81", -1e9f, kNormal},
      {29889, ".", -29630.0f, kNormal},
      {31999, "\xE7\xBB\x99", -31740.0f, kNormal},  // 给
  };
  for (const Known& k : known) {
    EXPECT_EQ(t.tokens[k.id], k.text) << k.id;
    EXPECT_EQ(t.scores[k.id], k.score) << k.id;
    EXPECT_EQ(t.token_types[k.id], k.type) << k.id;
  }
  EXPECT_EQ(t.bos_id, 1u);
  EXPECT_EQ(t.eos_id, 2u);
  EXPECT_EQ(t.unk_id, 0u);
  EXPECT_FALSE(t.pad_id.has_value());  // pad_id -1, stored as a 10-byte varint
  EXPECT_EQ(t.add_space_prefix, true);
  EXPECT_TRUE(t.byte_fallback);
}

TEST(TokenizerFiles, Llama2ModelAndBinAgree) {
  const std::string model = test::fixture("models/llama2-tokenizer/tokenizer.model");
  const std::string bin = test::fixture("models/llama2-tokenizer/tokenizer.bin");
  LOWBIT_REQUIRE_FIXTURE(model);
  LOWBIT_REQUIRE_FIXTURE(bin);
  const TokenizerData a = load_sentencepiece_model(model);
  const TokenizerData b = load_llama2c_tokenizer(bin, 32000);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.scores, b.scores);
  EXPECT_EQ(a.token_types, b.token_types);
  EXPECT_EQ(b.bos_id, 1u);
  EXPECT_EQ(b.eos_id, 2u);
  EXPECT_EQ(b.unk_id, 0u);
}

TEST(TokenizerFiles, TinyStoriesTokenizerJson) {
  const std::string path = test::fixture("models/tinystories-656k/tokenizer.json");
  LOWBIT_REQUIRE_FIXTURE(path);
  const TokenizerData t = load_hf_tokenizer(path);
  EXPECT_EQ(t.model, "llama");
  ASSERT_EQ(t.tokens.size(), 2048u);
  ASSERT_EQ(t.scores.size(), 2048u);
  ASSERT_EQ(t.token_types.size(), 2048u);
  ASSERT_EQ(t.merges.size(), 1967u);
  EXPECT_EQ(t.tokens[0], "<unk>");
  EXPECT_EQ(t.tokens[1], "<|start_story|>");
  EXPECT_EQ(t.tokens[2], "<|end_story|>");
  EXPECT_EQ(t.tokens[3], "\n");
  EXPECT_EQ(t.tokens[2047], "dog\xE2\x96\x81named\xE2\x96\x81Max");
  EXPECT_EQ(t.merges[0], "e \xE2\x96\x81");
  EXPECT_EQ(t.merges[1966], "dog\xE2\x96\x81named\xE2\x96\x81 Max");  // spans words
  EXPECT_EQ(t.bos_id, 1u);
  EXPECT_EQ(t.eos_id, 2u);
  EXPECT_EQ(t.unk_id, 0u);
  EXPECT_EQ(t.pad_id, 0u);  // pad_token "<unk>" in tokenizer_config.json
  EXPECT_EQ(t.add_bos, true);
  EXPECT_EQ(t.add_eos, false);
  EXPECT_EQ(t.add_space_prefix, true);  // the Prepend("▁") normalizer
  EXPECT_TRUE(t.byte_fallback);
  EXPECT_EQ(t.token_types[0], kUnknown);
  EXPECT_EQ(t.token_types[1], kControl);
  EXPECT_EQ(t.token_types[2], kControl);
  EXPECT_EQ(t.token_types[3], kNormal);
  EXPECT_EQ(t.scores[0], 0.0f);  // -id
  EXPECT_EQ(t.scores[81], -81.0f);
  EXPECT_EQ(t.scores[2047], -2047.0f);
}

// ---- crafted files ----------------------------------------------------------------------------

TEST(TokenizerFiles, SmallCraftedFilesLoad) {
  const std::string dir = temp_dir("small");
  const std::string bin =
      write_file(dir + "/tok.bin", l2c_file({"<unk>", "\n<s>\n", "\n</s>\n", "<0x41>", " a"}));
  const TokenizerData a = load_llama2c_tokenizer(bin, 5);
  EXPECT_EQ(a.tokens[4],
            "\xE2\x96\x81"
            "a");
  EXPECT_EQ(a.token_types, (std::vector<int32_t>{kUnknown, kControl, kControl, kByte, kNormal}));

  // Unknown fields of every wire type are skipped; bos -1 (none) and pad 5 are honoured.
  const std::string trainer = pb_int(3, 2) + pb_key(10, 5) + lef(1.0f) + pb_key(9, 1) +
                              std::string(8, '\0') + pb_len(2, "prefix") + pb_int(41, -1) +
                              pb_int(43, 5) + pb_int(35, 1);
  const std::string normalizer = pb_len(1, "identity") + pb_int(3, 0);
  const std::string model =
      write_file(dir + "/m.model", small_spm_model() + pb_len(2, trainer) + pb_len(3, normalizer) +
                                       pb_len(99, "x") + pb_int(100, 7));
  const TokenizerData b = load_sentencepiece_model(model);
  ASSERT_EQ(b.tokens.size(), 6u);
  EXPECT_FALSE(b.bos_id.has_value());
  EXPECT_EQ(b.eos_id, 2u);
  EXPECT_EQ(b.pad_id, 5u);
  EXPECT_EQ(b.add_space_prefix, false);
  EXPECT_EQ(b.scores[5], -2.0f);

  const std::string json = hf_file("small_ok", hf_json(kVocab, R"(["a b"])", kAdded));
  const TokenizerData c = load_hf_tokenizer(json);
  EXPECT_EQ(c.tokens, (std::vector<std::string>{"<unk>", "<s>", "a", "b", "ab"}));
  EXPECT_EQ(c.merges, std::vector<std::string>{"a b"});
  EXPECT_FALSE(c.bos_id.has_value());  // no tokenizer_config.json
  // Merges as pairs give the same result.
  EXPECT_EQ(
      load_hf_tokenizer(hf_file("small_pairs", hf_json(kVocab, R"([["a", "b"]])", kAdded))).merges,
      c.merges);
}

TEST(TokenizerFiles, ByteLevelJsonIsGpt2) {
  const std::string json = R"({"added_tokens": [{"id": 3, "content": "<|end|>", "special": true},
      {"id": 4, "content": "<tool>", "special": false}],
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "ByteLevel",
      "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "\u0120": 1, "\u0120a": 2},
      "merges": [["\u0120", "a"]]}})";
  const TokenizerData t = load_hf_tokenizer(hf_file("gpt2", json));
  EXPECT_EQ(t.model, "gpt2");
  EXPECT_TRUE(t.scores.empty());
  EXPECT_EQ(t.token_types,
            (std::vector<int32_t>{kNormal, kNormal, kNormal, kControl, kUserDefined}));
  EXPECT_EQ(t.merges, std::vector<std::string>{"\xC4\xA0 a"});
  EXPECT_EQ(t.add_space_prefix, false);
}

TEST(TokenizerFiles, UnigramJson) {
  const std::string json = R"({"model": {"type": "Unigram", "unk_id": 0, "byte_fallback": false,
      "vocab": [["<unk>", 0.0], ["\u2581a", -1.5], ["b", -2.25]]},
    "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"}})";
  const TokenizerData t = load_hf_tokenizer(hf_file("unigram", json));
  EXPECT_EQ(t.model, "llama");
  EXPECT_EQ(t.scores, (std::vector<float>{0.0f, -1.5f, -2.25f}));
  EXPECT_EQ(t.unk_id, 0u);
  EXPECT_EQ(t.token_types[0], kUnknown);
  EXPECT_EQ(t.add_space_prefix, true);
}

TEST(TokenizerFiles, TokenizerConfigSpecialTokens) {
  const std::string path = hf_file("config", hf_json(kVocab, "[]", kAdded));
  const std::string dir = fs::path(path).parent_path().string();
  write_file(dir + "/tokenizer_config.json",
             R"({"add_bos_token": false, "add_eos_token": true, "bos_token": {"content": "<s>"},
                 "eos_token": "ab", "unk_token": "<unk>", "pad_token": null})");
  const TokenizerData t = load_hf_tokenizer(path);
  EXPECT_EQ(t.add_bos, false);
  EXPECT_EQ(t.add_eos, true);
  EXPECT_EQ(t.bos_id, 1u);
  EXPECT_EQ(t.eos_id, 4u);
  EXPECT_EQ(t.unk_id, 0u);
  EXPECT_FALSE(t.pad_id.has_value());

  const std::string cfg = write_file(dir + "/tokenizer_config.json", R"({"eos_token": "<eos>"})");
  expect_error([&] { load_hf_tokenizer(path); }, cfg, "not in the vocabulary");
  write_file(cfg, R"({"add_bos_token": true, "add_bos_token": false})");
  expect_error([&] { load_hf_tokenizer(path); }, cfg, "duplicate JSON key");
}

// ---- bad llama2.c files -----------------------------------------------------------------------

TEST(TokenizerFiles, BinTruncated) {
  const std::string ref = test::fixture("models/stories260K/tok512.bin");
  LOWBIT_REQUIRE_FIXTURE(ref);
  const std::string all = read_file(ref);
  const std::string dir = temp_dir("bin_truncated");
  for (size_t cut :
       {size_t(0), size_t(2), size_t(100), size_t(3000), size_t(6000), all.size() - 1}) {
    const std::string p =
        write_file(dir + "/tok" + std::to_string(cut) + ".bin", all.substr(0, cut));
    expect_error([&] { load_llama2c_tokenizer(p, 512); }, p, "");
  }
  const std::string p = write_file(dir + "/tok_mid.bin", all.substr(0, 6000));  // in a length
  expect_error([&] { load_llama2c_tokenizer(p, 512); }, p, "file truncated");
  // More tokens than the model's vocabulary: trailing bytes.
  const std::string whole = write_file(dir + "/tok_whole.bin", all);
  expect_error([&] { load_llama2c_tokenizer(whole, 511); }, whole, "trailing bytes");
  expect_error([&] { load_llama2c_tokenizer(whole, 513); }, whole, "");
  expect_error([&] { load_llama2c_tokenizer(whole, -1); }, whole, "vocabulary size");
}

TEST(TokenizerFiles, BinBadLengths) {
  const std::string dir = temp_dir("bin_lengths");
  const std::string head = l2c_file({"<unk>", "\n<s>\n", "\n</s>\n"});
  const std::string big = write_file(dir + "/big.bin", head + lef(0) + le32(1000) + "abc");
  expect_error([&] { load_llama2c_tokenizer(big, 4); }, big, "past the end");
  const std::string neg = write_file(dir + "/neg.bin", head + lef(0) + le32(-5) + "abcdef");
  expect_error([&] { load_llama2c_tokenizer(neg, 4); }, neg, "not positive");
  const std::string huge = write_file(dir + "/huge.bin", head + lef(0) + le32(INT32_MAX));
  expect_error([&] { load_llama2c_tokenizer(huge, 4); }, huge, "past the end");
  const std::string longer = write_file(dir + "/long.bin", l2c_file({"<unk>", "abcdefghij"}, 4));
  expect_error([&] { load_llama2c_tokenizer(longer, 2); }, longer, "max_token_length");
  const std::string maxlen = write_file(dir + "/maxlen.bin", le32(-1) + l2c_token(0, "a"));
  expect_error([&] { load_llama2c_tokenizer(maxlen, 1); }, maxlen, "max_token_length");
  // A vocabulary size the file cannot hold fails before anything is allocated.
  expect_error([&] { load_llama2c_tokenizer(big, int64_t(1) << 23); }, big, "too short");
  expect_error([&] { load_llama2c_tokenizer(big, int64_t(1) << 40); }, big, "vocabulary size");
}

TEST(TokenizerFiles, BinBadTokens) {
  const std::string dir = temp_dir("bin_tokens");
  const std::string dup =
      write_file(dir + "/dup.bin", l2c_file({"<unk>", "<s>", "</s>", "x", "x"}));
  expect_error([&] { load_llama2c_tokenizer(dup, 5); }, dup, "duplicate token");
  const std::string utf = write_file(dir + "/utf.bin", l2c_file({"<unk>", "<s>", "</s>", "\xC3("}));
  expect_error([&] { load_llama2c_tokenizer(utf, 4); }, utf, "UTF-8");
  const std::string esc =
      write_file(dir + "/esc.bin", l2c_file({"<unk>", "<s>", "</s>", "<0x-1>"}));
  expect_error([&] { load_llama2c_tokenizer(esc, 4); }, esc, "malformed byte token");
  const std::string nan = write_file(dir + "/nan.bin", le32(8) + l2c_token(std::nanf(""), "<unk>"));
  expect_error([&] { load_llama2c_tokenizer(nan, 1); }, nan, "NaN");
}

// ---- bad SentencePiece models -----------------------------------------------------------------

TEST(TokenizerFiles, ModelBadProtobuf) {
  const std::string dir = temp_dir("spm_bad");
  const std::string good = small_spm_model();
  // A top-level length past the end of the file.
  const std::string past =
      write_file(dir + "/past.model", good + pb_key(1, 2) + pb_varint(100) + "ab");
  expect_error([&] { load_sentencepiece_model(past); }, past, "past the end");
  // A string inside a piece longer than the piece.
  const std::string inner =
      write_file(dir + "/inner.model", good + pb_len(1, pb_key(1, 2) + pb_varint(9) + "ab"));
  expect_error([&] { load_sentencepiece_model(inner); }, inner, "pieces[6]");
  // A length near 2^64.
  const std::string huge =
      write_file(dir + "/huge.model", good + pb_key(1, 2) + pb_varint(UINT64_MAX - 3) + "ab");
  expect_error([&] { load_sentencepiece_model(huge); }, huge, "past the end");
  // Truncated varint, bad wire types (3: group start, 7: undefined), wrong wire type for a field.
  const std::string trunc = write_file(dir + "/trunc.model", good + pb_key(2, 2) + "\xFF\xFF");
  expect_error([&] { load_sentencepiece_model(trunc); }, trunc, "varint");
  const std::string group = write_file(dir + "/group.model", good + pb_key(5, 3));
  expect_error([&] { load_sentencepiece_model(group); }, group, "wire type");
  const std::string wire7 = write_file(dir + "/wire7.model", good + pb_key(5, 7));
  expect_error([&] { load_sentencepiece_model(wire7); }, wire7, "wire type");
  const std::string wrong = write_file(dir + "/wrong.model", good + pb_int(1, 5));
  expect_error([&] { load_sentencepiece_model(wrong); }, wrong, "wire type");
  // Every prefix of a valid model either loads or fails cleanly.
  for (size_t cut = 0; cut < good.size(); ++cut) {
    const std::string p = write_file(dir + "/cut.model", good.substr(0, cut));
    try {
      load_sentencepiece_model(p);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos);
    }
  }
}

TEST(TokenizerFiles, ModelBadContent) {
  const std::string dir = temp_dir("spm_content");
  const std::string good = small_spm_model();
  const std::string dup = write_file(dir + "/dup.model", good + pb_piece("b", -3, kNormal));
  expect_error([&] { load_sentencepiece_model(dup); }, dup, "duplicate token");
  const std::string utf = write_file(dir + "/utf.model", good + pb_piece("\xFF", -3, kNormal));
  expect_error([&] { load_sentencepiece_model(utf); }, utf, "UTF-8");
  const std::string byte = write_file(dir + "/byte.model", good + pb_piece("<0x-1>", 0, kByte));
  expect_error([&] { load_sentencepiece_model(byte); }, byte, "malformed byte piece");
  const std::string type = write_file(dir + "/type.model", good + pb_piece("c", 0, 9));
  expect_error([&] { load_sentencepiece_model(type); }, type, "piece type");
  const std::string empty = write_file(dir + "/empty.model", good + pb_piece("", 0, kNormal));
  expect_error([&] { load_sentencepiece_model(empty); }, empty, "empty");
  const std::string bos = write_file(dir + "/bos.model", good + pb_len(2, pb_int(41, 6)));
  expect_error([&] { load_sentencepiece_model(bos); }, bos, "bos_id");
  const std::string unk = write_file(dir + "/unk.model", good + pb_len(2, pb_int(40, -1)));
  expect_error([&] { load_sentencepiece_model(unk); }, unk, "unk_id");
  const std::string none = write_file(dir + "/none.model", pb_len(2, pb_int(40, 0)));
  expect_error([&] { load_sentencepiece_model(none); }, none, "no tokens");
}

// ---- bad tokenizer.json -----------------------------------------------------------------------

TEST(TokenizerFiles, JsonDuplicateKeys) {
  const std::string top = hf_file("dup_top", R"({"model": {}, "model": {"type": "BPE"}})");
  expect_error([&] { load_hf_tokenizer(top); }, top, "duplicate JSON key");
  // A token listed twice in the vocab object: nlohmann would silently keep the last.
  const std::string vocab =
      hf_file("dup_vocab", hf_json(R"({"<unk>": 0, "<s>": 1, "a": 2, "a": 3})", "[]"));
  expect_error([&] { load_hf_tokenizer(vocab); }, vocab, "model.vocab.\"a\"");
  const std::string added =
      hf_file("dup_added", hf_json(kVocab, "[]", R"([{"id": 0, "content": "<unk>", "id": 1}])"));
  expect_error([&] { load_hf_tokenizer(added); }, added, "duplicate JSON key");
}

TEST(TokenizerFiles, JsonIdsOutOfRange) {
  const std::string range = hf_file("id_range", hf_json(R"({"<unk>": 0, "a": 1, "b": 7})", "[]"));
  expect_error([&] { load_hf_tokenizer(range); }, range, "token id out of range");
  const std::string neg = hf_file("id_neg", hf_json(R"({"<unk>": 0, "a": -1})", "[]"));
  expect_error([&] { load_hf_tokenizer(neg); }, neg, "non-negative integer");
  const std::string frac = hf_file("id_frac", hf_json(R"({"<unk>": 0, "a": 1.5})", "[]"));
  expect_error([&] { load_hf_tokenizer(frac); }, frac, "non-negative integer");
  const std::string big =
      hf_file("id_big", hf_json(R"({"<unk>": 0, "a": 18446744073709551615})", "[]"));
  expect_error([&] { load_hf_tokenizer(big); }, big, "out of range");
  const std::string hole = hf_file(
      "id_hole", hf_json(R"({"<unk>": 0, "a": 2})", "[]", R"([{"id": 0, "content": "<unk>"}])"));
  expect_error([&] { load_hf_tokenizer(hole); }, hole, "no token has id 1");
  const std::string added = hf_file(
      "id_added", hf_json(kVocab, "[]", R"([{"id": 99, "content": "<x>", "special": true}])"));
  expect_error([&] { load_hf_tokenizer(added); }, added, "token id out of range");
  const std::string shared = hf_file(
      "id_shared", hf_json(kVocab, "[]", R"([{"id": 2, "content": "<x>", "special": true}])"));
  expect_error([&] { load_hf_tokenizer(shared); }, shared, "share an id");
}

TEST(TokenizerFiles, JsonDuplicateToken) {
  const std::string added = hf_file(
      "dup_token", hf_json(kVocab, "[]", R"([{"id": 5, "content": "ab", "special": false}])"));
  expect_error([&] { load_hf_tokenizer(added); }, added, "duplicate token");
  const std::string uni = hf_file("dup_unigram",
                                  R"({"model": {"type": "Unigram", "unk_id": 0,
          "vocab": [["<unk>", 0], ["a", -1], ["a", -2]]}})");
  expect_error([&] { load_hf_tokenizer(uni); }, uni, "duplicate token");
  const std::string score = hf_file(
      "big_score", R"({"model": {"type": "Unigram", "vocab": [["<unk>", 0], ["a", -1e300]]}})");
  expect_error([&] { load_hf_tokenizer(score); }, score, "float range");
}

TEST(TokenizerFiles, JsonBadMerges) {
  const std::string unknown = hf_file("merge_unknown", hf_json(kVocab, R"(["a c"])"));
  expect_error([&] { load_hf_tokenizer(unknown); }, unknown, "unknown token");
  const std::string pair = hf_file("merge_pair", hf_json(kVocab, R"([["a", "zz"]])"));
  expect_error([&] { load_hf_tokenizer(pair); }, pair, "unknown token");
  const std::string result = hf_file("merge_result", hf_json(kVocab, R"(["b a"])"));
  expect_error([&] { load_hf_tokenizer(result); }, result, "merge result");
  const std::string shape = hf_file("merge_shape", hf_json(kVocab, R"(["a b ab"])"));
  expect_error([&] { load_hf_tokenizer(shape); }, shape, "two tokens");
  const std::string type = hf_file("merge_type", hf_json(kVocab, R"([7])"));
  expect_error([&] { load_hf_tokenizer(type); }, type, "bad merge");
}

TEST(TokenizerFiles, JsonInvalidUtf8AndSyntax) {
  const std::string utf = hf_file("utf8", hf_json(R"({"<unk>": 0, "a)"
                                                  "\xFF\xFE"
                                                  R"(": 1})",
                                                  "[]"));
  expect_error([&] { load_hf_tokenizer(utf); }, utf, "invalid JSON");
  const std::string surrogate = hf_file("surrogate", hf_json(R"({"<unk>": 0, "\ud800": 1})", "[]"));
  expect_error([&] { load_hf_tokenizer(surrogate); }, surrogate, "invalid JSON");
  const std::string cut = hf_file("cut", hf_json(kVocab, "[]").substr(0, 100));
  expect_error([&] { load_hf_tokenizer(cut); }, cut, "invalid JSON");
  const std::string overflow = hf_file("overflow", hf_json(R"({"<unk>": 0, "a": 1e99999})", "[]"));
  expect_error([&] { load_hf_tokenizer(overflow); }, overflow, "invalid JSON");
  const std::string empty = hf_file("empty", "");
  expect_error([&] { load_hf_tokenizer(empty); }, empty, "empty");
  const std::string deep = hf_file("deep", std::string(100000, '[') + std::string(100000, ']'));
  expect_error([&] { load_hf_tokenizer(deep); }, deep, "nested too deeply");
  const std::string word = hf_file("wordpiece", R"({"model": {"type": "WordPiece", "vocab": {}}})");
  expect_error([&] { load_hf_tokenizer(word); }, word, "unsupported tokenizer model");
  const std::string byte = hf_file("byte", hf_json(R"({"<unk>": 0, "<0xzz>": 1})", "[]"));
  expect_error([&] { load_hf_tokenizer(byte); }, byte, "malformed byte token");
  const std::string unk = hf_file("unk", hf_json(R"({"<s>": 0})", "[]"));
  expect_error([&] { load_hf_tokenizer(unk); }, unk, "unk_token");
}

// ---- dispatch ---------------------------------------------------------------------------------

TEST(TokenizerFiles, FindBesideAndDispatch) {
  const std::string stories = test::fixture("models/stories260K/stories260K.bin");
  const std::string tiny = test::fixture("models/tinystories-656k");
  const std::string llama = test::fixture("models/llama2-tokenizer");
  LOWBIT_REQUIRE_FIXTURE(stories);
  LOWBIT_REQUIRE_FIXTURE(tiny);
  LOWBIT_REQUIRE_FIXTURE(llama);
  EXPECT_EQ(fs::path(find_tokenizer_beside(stories)).filename(), "tok512.bin");
  EXPECT_EQ(fs::path(find_tokenizer_beside(tiny)).filename(), "tokenizer.json");
  EXPECT_EQ(fs::path(find_tokenizer_beside(tiny + "/model.safetensors")).filename(),
            "tokenizer.json");
  EXPECT_EQ(fs::path(find_tokenizer_beside(llama)).filename(), "tokenizer.model");
  EXPECT_EQ(load_tokenizer(tiny, 0).tokens.size(), 2048u);
  EXPECT_EQ(load_tokenizer(llama + "/tokenizer.bin", 32000).tokens.size(), 32000u);

  const std::string dir = temp_dir("dispatch");
  EXPECT_EQ(find_tokenizer_beside(dir), "");
  EXPECT_EQ(find_tokenizer_beside(dir + "/missing/model.bin"), "");
  expect_error([&] { load_tokenizer(dir, 0); }, dir, "no tokenizer file");
  write_file(dir + "/tok_b.model", small_spm_model());
  write_file(dir + "/tok_a.model", small_spm_model());
  EXPECT_EQ(fs::path(find_tokenizer_beside(dir + "/model.bin")).filename(), "tok_a.model");
  // Unknown names are recognised by content.
  const std::string spm = write_file(dir + "/vocab.data", small_spm_model());
  EXPECT_EQ(load_tokenizer(spm, 0).tokens.size(), 6u);
  const std::string l2c = write_file(dir + "/vocab.raw", l2c_file({"<unk>", "<s>", "</s>"}, 10));
  EXPECT_EQ(load_tokenizer(l2c, 3).tokens.size(), 3u);
  const std::string js = write_file(dir + "/vocab.txt", "  " + hf_json(kVocab, "[]"));
  EXPECT_EQ(load_tokenizer(js, 0).tokens.size(), 5u);
  const std::string gguf = write_file(dir + "/vocab.gguf", std::string("GGUF") + le32(3));
  expect_error([&] { load_tokenizer(gguf, 0); }, gguf, "GGUF");
  expect_error([&] { load_tokenizer(dir + "/absent.bin", 3); }, dir + "/absent.bin", "");
}

}  // namespace
}  // namespace lowbit
