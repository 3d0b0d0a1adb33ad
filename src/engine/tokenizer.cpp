// SentencePiece-style BPE encoding with byte fallback, and decoding.
#include "engine/tokenizer.h"

#include <queue>

#include "engine/llama.h"
#include "lowbit/error.h"

namespace lowbit {

namespace {

size_t utf8_len(uint8_t lead) {
  return lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 1;
}

struct Symbol {
  size_t begin, len;
  int prev, next;  // linked list over the text; len 0 = merged away
};

struct Bigram {
  float score;
  int left;
  size_t len;  // combined length when queued: stale if the symbols changed since
  bool operator<(const Bigram& o) const {  // priority_queue: highest score, then leftmost
    return score < o.score || (score == o.score && left > o.left);
  }
};

}  // namespace

Tokenizer::Tokenizer(const TokenizerData& data) : d_(data) {
  if (d_.model != "llama") {
    throw Error("tokenizer model not supported yet", {.field = "tokenizer.ggml.model",
                                                      .expected = "llama (SentencePiece)",
                                                      .found = d_.model});
  }
  for (size_t i = 0; i < d_.tokens.size(); ++i) ids_.emplace(d_.tokens[i], int32_t(i));
  static const char* kHex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const std::string s = std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">";
    const auto it = ids_.find(s);
    byte_ids_[b] = it == ids_.end() ? -1 : it->second;
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> out;
  if (add_bos && d_.bos_id) out.push_back(int32_t(*d_.bos_id));
  if (text.empty()) return out;
  std::string s = d_.add_space_prefix.value_or(true) ? " " : "";
  s += text;
  std::string t;  // spaces -> U+2581
  for (char ch : s) t += ch == ' ' ? std::string("\xe2\x96\x81") : std::string(1, ch);
  std::vector<Symbol> sym;
  for (size_t i = 0; i < t.size();) {
    const size_t n = std::min(utf8_len(uint8_t(t[i])), t.size() - i);
    sym.push_back({i, n, int(sym.size()) - 1, int(sym.size()) + 1});
    i += n;
  }
  sym.back().next = -1;
  std::priority_queue<Bigram> q;
  auto try_pair = [&](int l) {
    if (l < 0 || sym[size_t(l)].next < 0) return;
    const Symbol &a = sym[size_t(l)], &b = sym[size_t(a.next)];
    const auto it = ids_.find(t.substr(a.begin, a.len + b.len));
    if (it == ids_.end()) return;
    const float score = d_.scores.empty() ? 0.0f : d_.scores[size_t(it->second)];
    q.push({score, l, a.len + b.len});
  };
  for (int i = 0; i + 1 < int(sym.size()); ++i) try_pair(i);
  while (!q.empty()) {
    const Bigram bg = q.top();
    q.pop();
    Symbol& a = sym[size_t(bg.left)];
    if (a.len == 0 || a.next < 0 || a.len + sym[size_t(a.next)].len != bg.len) continue;  // stale
    Symbol& b = sym[size_t(a.next)];
    a.len += b.len;
    b.len = 0;
    a.next = b.next;
    if (a.next >= 0) sym[size_t(a.next)].prev = bg.left;
    try_pair(a.prev);
    try_pair(bg.left);
  }
  for (int i = 0; i >= 0; i = sym[size_t(i)].next) {
    const Symbol& x = sym[size_t(i)];
    const std::string piece = t.substr(x.begin, x.len);
    if (const auto it = ids_.find(piece); it != ids_.end()) {
      out.push_back(it->second);
      continue;
    }
    for (unsigned char byte : piece) {  // byte fallback, else unknown
      if (byte_ids_[byte] >= 0) out.push_back(byte_ids_[byte]);
      else if (d_.unk_id) out.push_back(int32_t(*d_.unk_id));
    }
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) out += token_text(d_, id);
  if (d_.add_space_prefix.value_or(true) && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace lowbit
