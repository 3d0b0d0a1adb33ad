// libFuzzer target: the tokenizer file loaders (lowbit/tokenizer_data.h). The first input byte
// (mod 6) picks the loader; the rest is the file:
//   0  llama2.c tokenizer.bin, vocab_size 0 (read to the end of the file)
//   1  SentencePiece .model (protobuf)
//   2  Hugging Face tokenizer.json, no tokenizer_config.json beside it
//   3  tokenizer.bin with vocab_size = the next two bytes (u16 LE); the file starts after them
//   4  tokenizer.json, a NUL byte, then tokenizer_config.json beside it
//   5  the dispatcher load_tokenizer() on a file whose name says nothing (content sniffing)
// A loaded TokenizerData must keep the promises of tokenizer_data.h: parallel arrays of equal
// length, ids in range, valid UTF-8, each token once, byte tokens spelled <0xHH>.
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>

#include "fuzz_common.h"
#include "lowbit/error.h"
#include "lowbit/tokenizer_data.h"

namespace {

// RFC 3629 UTF-8 (written independently of the loaders' validator).
bool strict_utf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    const auto b = [&](size_t k) { return uint8_t(s[i + k]); };
    const uint8_t c = b(0);
    size_t n = 0;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte
    if (c <= 0x7F)
      n = 1;
    else if (c >= 0xC2 && c <= 0xDF)
      n = 2;
    else if (c == 0xE0)
      n = 3, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
      n = 3;
    else if (c == 0xED)
      n = 3, hi = 0x9F;
    else if (c == 0xF0)
      n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
      n = 4;
    else if (c == 0xF4)
      n = 4, hi = 0x8F;
    else
      return false;
    if (s.size() - i < n) return false;
    for (size_t k = 1; k < n; ++k) {
      const uint8_t x = b(k);
      if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) return false;
    }
    i += n;
  }
  return true;
}

bool byte_token(const std::string& s) {
  auto hex = [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); };
  return s.size() == 6 && s.compare(0, 3, "<0x") == 0 && hex(s[3]) && hex(s[4]) && s[5] == '>';
}

void check(const lowbit::TokenizerData& t) {
  const size_t n = t.tokens.size();
  FUZZ_REQUIRE(n > 0, "a loaded tokenizer has tokens");
  fuzz::check_tokenizer_shape(t);
  std::unordered_set<std::string_view> seen;
  for (size_t i = 0; i < n; ++i) {
    const std::string& s = t.tokens[i];
    FUZZ_REQUIRE(strict_utf8(s), "token " + std::to_string(i) + " is not valid UTF-8");
    FUZZ_REQUIRE(seen.insert(s).second, "duplicate token " + std::to_string(i));
    if (!t.token_types.empty()) {
      const int32_t type = t.token_types[i];
      FUZZ_REQUIRE(type >= 1 && type <= 6, "token type " + std::to_string(type));
      FUZZ_REQUIRE(type != int32_t(lowbit::TokenType::kByte) || byte_token(s),
                   "byte token not spelled <0xHH>: token " + std::to_string(i));
    }
  }
  for (const std::string& m : t.merges) {
    const size_t sp = m.find(' ');
    FUZZ_REQUIRE(sp != std::string::npos && m.find(' ', sp + 1) == std::string::npos,
                 "merge is not \"left right\"");
    const std::string_view l(m.data(), sp), r(m.data() + sp + 1, m.size() - sp - 1);
    FUZZ_REQUIRE(seen.count(l) && seen.count(r), "merge names an unknown token");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const fuzz::fs::path dir = fuzz::scratch_dir("tokenizer");
  const int mode = data[0] % 6;
  const uint8_t* body = data + 1;
  size_t len = size - 1;
  const fuzz::fs::path bin = dir / "tok.bin", spm = dir / "tok.model",
                       json = dir / "tokenizer.json", cfg = dir / "tokenizer_config.json",
                       other = dir / "input.data";
  if (mode != 4) fuzz::remove_file(cfg);  // each input alone decides what lies beside it
  try {
    lowbit::TokenizerData t;
    switch (mode) {
      case 0:
        fuzz::write_file(bin, body, len);
        t = lowbit::load_llama2c_tokenizer(bin.string(), 0);
        break;
      case 1:
        fuzz::write_file(spm, body, len);
        t = lowbit::load_sentencepiece_model(spm.string());
        break;
      case 2:
        fuzz::write_file(json, body, len);
        t = lowbit::load_hf_tokenizer(json.string());
        break;
      case 3: {
        if (len < 2) return 0;
        const int64_t vocab = int64_t(body[0]) | (int64_t(body[1]) << 8);
        fuzz::write_file(bin, body + 2, len - 2);
        t = lowbit::load_llama2c_tokenizer(bin.string(), vocab);
        if (vocab > 0) FUZZ_REQUIRE(t.tokens.size() == uint64_t(vocab), "vocab_size honoured");
        break;
      }
      case 4: {
        const auto* nul = static_cast<const uint8_t*>(std::memchr(body, 0, len));
        const size_t json_len = nul ? size_t(nul - body) : len;
        fuzz::write_file(json, body, json_len);
        if (nul) {
          fuzz::write_file(cfg, nul + 1, len - json_len - 1);
        } else {
          fuzz::remove_file(cfg);
        }
        t = lowbit::load_hf_tokenizer(json.string());
        break;
      }
      default:
        fuzz::write_file(other, body, len);
        t = lowbit::load_tokenizer(other.string(), 0);
        break;
    }
    check(t);
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
