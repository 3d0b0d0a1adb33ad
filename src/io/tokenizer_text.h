// Text helpers shared by the tokenizer loaders: UTF-8 validation, SentencePiece byte-token
// escapes ("<0x0A>"), and a printable, bounded rendering of untrusted token text for errors.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace lowbit {

// True when s is well-formed UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF).
inline bool valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const uint8_t c = uint8_t(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF)
      len = 2, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      len = 3, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      len = 4, cp = c & 0x07;
    else
      return false;
    if (n - i < size_t(len)) return false;
    for (int k = 1; k < len; ++k) {
      const uint8_t d = uint8_t(s[i + size_t(k)]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return false;  // overlong
    if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += size_t(len);
  }
  return true;
}

enum class ByteEscape { kNone, kValid, kMalformed };

// SentencePiece's byte tokens are exactly "<0xHH>" with two upper-case hex digits (llama.cpp
// looks them up by that spelling). Text shaped like "<0x...>" that is not is kMalformed.
inline ByteEscape byte_escape(std::string_view s) {
  if (s.size() < 4 || s.substr(0, 3) != "<0x" || s.back() != '>') return ByteEscape::kNone;
  if (s.size() != 6) return ByteEscape::kMalformed;
  for (char c : s.substr(3, 2)) {
    if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'))) return ByteEscape::kMalformed;
  }
  return ByteEscape::kValid;
}

// Untrusted text for an error message: control and non-ASCII bytes as \xHH (so the message stays
// valid UTF-8 and one line), cut after `cap` bytes.
inline std::string printable(std::string_view s, size_t cap) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < s.size() && i < cap; ++i) {
    const uint8_t c = uint8_t(s[i]);
    if (c >= 0x20 && c < 0x7F && c != '\\') {
      out += char(c);
    } else {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > cap) out += "...";
  return out;
}

// Token text for an error message: quoted and printable, at most ~48 bytes.
inline std::string quote_token(std::string_view s) {
  return "\"" + printable(s, 48) + "\"";
}

}  // namespace lowbit
