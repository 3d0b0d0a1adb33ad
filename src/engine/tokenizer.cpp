// BPE encoding and decoding for SentencePiece-style and byte-level vocabularies. One merge loop
// serves all three: a min-heap of adjacent pairs keyed (priority, left position), priority being
// -score (SentencePiece scores) or the merge's rank (merges present), so each merge costs
// O(log n) and a whole text O(n log n). Symbols form a linked list over the text; a pair queued
// before either symbol changed is recognised as stale by its combined length, since symbols only
// grow.
#include "engine/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "engine/llama.h"
#include "lowbit/error.h"

namespace lowbit {

namespace {

constexpr std::string_view kSpmSpace = "\xe2\x96\x81";  // U+2581

// Pre-tokenizer patterns by tokenizer.ggml.pre (the patterns of GPT-2, Llama 3 and Qwen 2).
constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::pair<std::string_view, const char*> kPreTokenizers[] = {
    {"", kGpt2Pattern},         {"default", kGpt2Pattern},
    {"gpt2", kGpt2Pattern},     {"llama-bpe", kLlama3Pattern},
    {"llama3", kLlama3Pattern}, {"qwen2", kQwen2Pattern},
};

size_t utf8_len(uint8_t lead) {
  return lead < 0x80 ? 1 : (lead >> 5) == 6 ? 2 : (lead >> 4) == 14 ? 3 : (lead >> 3) == 30 ? 4 : 1;
}

void append_utf8(uint32_t cp, std::string& out) {  // cp < 0x800 is all byte-level BPE needs
  if (cp < 0x80) {
    out += char(cp);
  } else {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  }
}

// GPT-2's bytes_to_unicode: printable bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) stand
// for themselves; the other 68 take U+0100.. in byte order.
struct ByteLevelTables {
  std::string spelling[256];  // UTF-8 of the code point standing for each byte
  int16_t byte_of[256 + 68];  // inverse, by code point; -1 where none
};

const ByteLevelTables& byte_level_tables() {
  static const ByteLevelTables t = [] {
    ByteLevelTables b;
    std::fill(std::begin(b.byte_of), std::end(b.byte_of), int16_t(-1));
    uint32_t next = 256;
    for (uint32_t i = 0; i < 256; ++i) {
      const bool printable = (i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || i >= 0xAE;
      const uint32_t cp = printable ? i : next++;
      append_utf8(cp, b.spelling[i]);
      b.byte_of[cp] = int16_t(i);
    }
    return b;
  }();
  return t;
}

struct Symbol {
  size_t begin, len;  // bytes of the workspace text; len 0 = merged into its left neighbour
  int prev, next;     // linked list; -1 at the ends
  int32_t id;         // the token spelling it, -1 if none (only unmerged characters lack one)
};

struct Bigram {    // 16 bytes: the heap holds about one per character of the text
  float priority;  // lower merges first: -score, or the merge's rank (exact below 2^24)
  int left;
  uint32_t len;  // combined length when queued: stale if the symbols changed since
  int32_t result;
};

// Heap order: the top is the lowest priority, leftmost on ties.
struct Later {
  bool operator()(const Bigram& a, const Bigram& b) const {
    return a.priority > b.priority || (a.priority == b.priority && a.left > b.left);
  }
};

uint64_t pair_key(int32_t left, int32_t right) {
  return uint64_t(uint32_t(left)) << 32 | uint32_t(right);
}

bool is_special(const TokenizerData& d, size_t id) {
  if (d.token_types.empty()) return false;
  const int32_t t = d.token_types[id];  // llama.cpp also splits out the unknown token's text
  return t == int32_t(TokenType::kControl) || t == int32_t(TokenType::kUserDefined) ||
         t == int32_t(TokenType::kUnknown);
}

}  // namespace

struct Tokenizer::Regex {
  explicit Regex(const std::string& pre) {
    const auto* p = std::find_if(std::begin(kPreTokenizers), std::end(kPreTokenizers),
                                 [&](const auto& e) { return e.first == pre; });
    if (p == std::end(kPreTokenizers)) {
      throw Error("pre-tokenizer not supported", {.field = "tokenizer.ggml.pre",
                                                  .expected = "default, gpt2, llama-bpe, qwen2",
                                                  .found = pre});
    }
    int err = 0;
    PCRE2_SIZE err_at = 0;
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p->second), PCRE2_ZERO_TERMINATED,
                         PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_at, nullptr);
    LOWBIT_CHECK(code, "pre-tokenizer pattern does not compile");
    pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // optional: without it PCRE2 interprets
  }
  ~Regex() { pcre2_code_free(code); }
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  pcre2_code* code = nullptr;
};

struct Tokenizer::Workspace {  // reused across the pieces of one encode call
  std::string text;
  std::vector<Symbol> sym;
  std::vector<Bigram> heap;
};

Tokenizer::Tokenizer(const TokenizerData& data)
    : d_(data),
      byte_level_(data.model == "gpt2"),
      space_prefix_(data.add_space_prefix.value_or(!byte_level_)) {
  if (d_.model != "llama" && !byte_level_) {
    throw Error("tokenizer model not supported", {.field = "tokenizer.ggml.model",
                                                  .expected = "llama (SentencePiece) or gpt2",
                                                  .found = d_.model});
  }
  ids_.reserve(d_.tokens.size());
  for (size_t i = 0; i < d_.tokens.size(); ++i) ids_.emplace(d_.tokens[i], int32_t(i));
  static const char* kHex = "0123456789ABCDEF";
  for (int b = 0; b < 256; ++b) {
    const auto it = ids_.find(std::string("<0x") + kHex[b >> 4] + kHex[b & 15] + ">");
    byte_ids_[b] = it == ids_.end() ? -1 : it->second;
    barrier_[b] = b < 0x80;  // ASCII characters, until a longer token contains them
  }
  for (const std::string& tok : d_.tokens) {
    if (tok.size() > 1) {
      for (char c : tok) barrier_[uint8_t(c)] = false;
    }
  }
  for (size_t r = 0; r < d_.merges.size(); ++r) {  // the first of duplicate merges ranks
    const std::string_view m = d_.merges[r];
    const size_t sp = m.find(' ');
    if (sp == std::string_view::npos) continue;
    const auto l = ids_.find(m.substr(0, sp)), rt = ids_.find(m.substr(sp + 1));
    if (l == ids_.end() || rt == ids_.end()) continue;
    const auto res = ids_.find(std::string(m.substr(0, sp)) + std::string(m.substr(sp + 1)));
    if (res == ids_.end()) continue;
    merges_.emplace(pair_key(l->second, rt->second), Merge{int32_t(r), res->second});
  }
  for (size_t i = 0; i < d_.tokens.size(); ++i) {
    if (!is_special(d_, i) || d_.tokens[i].empty()) continue;
    if (specials_.empty()) specials_.resize(256);
    specials_[uint8_t(d_.tokens[i][0])].push_back(int32_t(i));
  }
  for (auto& v : specials_) {
    std::stable_sort(v.begin(), v.end(), [&](int32_t a, int32_t b) {
      return d_.tokens[size_t(a)].size() > d_.tokens[size_t(b)].size();
    });
  }
  if (byte_level_) regex_ = std::make_unique<Regex>(d_.pre);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;

// Byte-level: the regex's matches, and any bytes between them (invalid UTF-8, which
// PCRE2_MATCH_INVALID_UTF never matches) as pieces of their own.
std::vector<std::string_view> Tokenizer::split(std::string_view text) const {
  if (!byte_level_) return text.empty() ? std::vector<std::string_view>{} : std::vector{text};
  std::vector<std::string_view> pieces;
  const std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> match(
      pcre2_match_data_create_from_pattern(regex_->code, nullptr), pcre2_match_data_free);
  pcre2_match_data* md = match.get();
  const auto* s = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t done = 0, at = 0;
  while (at < text.size()) {
    const int rc = pcre2_match(regex_->code, s, text.size(), at, 0, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Error("pre-tokenizer failed on the text",
                  {.field = "tokenizer.ggml.pre", .found = reinterpret_cast<const char*>(msg)});
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] == ov[0]) {  // no pattern of the table matches empty; be safe anyway
      at = ov[0] + 1;
      continue;
    }
    if (ov[0] > done) pieces.push_back(text.substr(done, ov[0] - done));
    pieces.push_back(text.substr(ov[0], ov[1] - ov[0]));
    done = at = ov[1];
  }
  if (done < text.size()) pieces.push_back(text.substr(done));
  return pieces;
}

std::vector<std::string> Tokenizer::pretokenize(std::string_view text) const {
  std::vector<std::string> out;
  for (std::string_view p : split(text)) out.emplace_back(p);
  return out;
}

int32_t Tokenizer::special_at(std::string_view text, size_t i) const {
  for (int32_t id : specials_[uint8_t(text[i])]) {
    if (text.substr(i).starts_with(d_.tokens[size_t(id)])) return id;
  }
  return -1;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  std::vector<int32_t> out;
  if (add_bos && d_.bos_id) out.push_back(int32_t(*d_.bos_id));
  Workspace w;
  bool after_special = true;  // the dummy prefix goes at the start and after each special token
  auto piece = [&](std::string_view s) {
    if (s.empty()) return;
    encode_piece(s, space_prefix_ && after_special, w, out);
    after_special = false;
  };
  if (!parse_special || specials_.empty()) {
    piece(text);
    return out;
  }
  size_t begin = 0;
  for (size_t i = 0; i < text.size();) {
    const int32_t id = special_at(text, i);
    if (id < 0) {
      ++i;
      continue;
    }
    piece(text.substr(begin, i - begin));
    out.push_back(id);
    after_special = true;
    begin = i += d_.tokens[size_t(id)].size();
  }
  piece(text.substr(begin));
  return out;
}

// One piece of text (no special tokens in it): normalize, then merge and emit each stretch.
void Tokenizer::encode_piece(std::string_view text, bool prefix, Workspace& w,
                             std::vector<int32_t>& out) const {
  if (byte_level_) {
    std::string prefixed;
    if (prefix) prefixed.append(1, ' ').append(text);
    const auto& tab = byte_level_tables();
    for (std::string_view p : split(prefix ? std::string_view(prefixed) : text)) {
      w.text.clear();
      for (unsigned char b : p) w.text += tab.spelling[b];
      encode_span(0, w.text.size(), w, out);
    }
    return;
  }
  w.text.clear();
  w.text.reserve(text.size() + text.size() / 4 + 3);
  if (prefix) w.text += kSpmSpace;
  for (char ch : text) {
    if (ch == ' ')
      w.text += kSpmSpace;
    else
      w.text += ch;
  }
  // No merge crosses a barrier: the stretches between them encode apart to the same ids, each
  // with a small heap that stays in cache.
  for (size_t begin = 0, i = 0; i < w.text.size(); ++i) {
    if (barrier_[uint8_t(w.text[i])] || i + 1 == w.text.size()) {
      encode_span(begin, i + 1, w, out);
      begin = i + 1;
    }
  }
}

// Symbols for the characters of w.text[begin, end), merged, then emitted.
void Tokenizer::encode_span(size_t begin, size_t end, Workspace& w,
                            std::vector<int32_t>& out) const {
  w.sym.clear();
  for (size_t i = begin; i < end;) {
    const size_t n = std::min(utf8_len(uint8_t(w.text[i])), end - i);
    const auto it = ids_.find(std::string_view(w.text).substr(i, n));
    w.sym.push_back(
        {i, n, int(w.sym.size()) - 1, int(w.sym.size()) + 1, it == ids_.end() ? -1 : it->second});
    i += n;
  }
  merge(w);
  emit(w, out);
}

void Tokenizer::merge(Workspace& w) const {
  if (w.sym.empty()) return;
  w.sym.back().next = -1;
  std::vector<Symbol>& sym = w.sym;
  const bool ranked = byte_level_ || !d_.merges.empty();
  auto queue = [&](int l, bool heapify) {
    if (l < 0 || sym[size_t(l)].next < 0) return;
    const Symbol &a = sym[size_t(l)], &b = sym[size_t(a.next)];
    Bigram g{0.0f, l, uint32_t(a.len + b.len), -1};
    if (ranked) {
      if (a.id < 0 || b.id < 0) return;
      const auto it = merges_.find(pair_key(a.id, b.id));
      if (it == merges_.end()) return;
      g.priority = float(it->second.rank), g.result = it->second.result;
    } else {
      const auto it = ids_.find(std::string_view(w.text).substr(a.begin, g.len));
      if (it == ids_.end()) return;
      g.result = it->second;
      g.priority = d_.scores.empty() ? 0.0f : -d_.scores[size_t(g.result)];
    }
    w.heap.push_back(g);
    if (heapify) std::push_heap(w.heap.begin(), w.heap.end(), Later());
  };
  w.heap.clear();
  for (int i = 0; i + 1 < int(sym.size()); ++i) queue(i, false);
  std::make_heap(w.heap.begin(), w.heap.end(), Later());
  while (!w.heap.empty()) {
    std::pop_heap(w.heap.begin(), w.heap.end(), Later());
    const Bigram g = w.heap.back();
    w.heap.pop_back();
    Symbol& a = sym[size_t(g.left)];
    if (a.len == 0 || a.next < 0 || a.len + sym[size_t(a.next)].len != g.len) continue;  // stale
    Symbol& b = sym[size_t(a.next)];
    a.len += b.len;
    a.id = g.result;
    b.len = 0;
    a.next = b.next;
    if (a.next >= 0) sym[size_t(a.next)].prev = g.left;
    queue(a.prev, true);
    queue(g.left, true);
  }
}

// The merged symbols' ids; a character without a token becomes its <0xHH> byte tokens if all
// exist ("llama"), else the unknown token.
void Tokenizer::emit(const Workspace& w, std::vector<int32_t>& out) const {
  if (w.sym.empty()) return;
  for (int i = 0; i >= 0; i = w.sym[size_t(i)].next) {
    const Symbol& x = w.sym[size_t(i)];
    if (x.id >= 0) {
      out.push_back(x.id);
      continue;
    }
    const std::string_view ch = std::string_view(w.text).substr(x.begin, x.len);
    const bool bytes = !byte_level_ && std::all_of(ch.begin(), ch.end(), [&](char c) {
      return byte_ids_[uint8_t(c)] >= 0;
    });
    if (bytes) {
      for (char c : ch) out.push_back(byte_ids_[uint8_t(c)]);
    } else if (d_.unk_id) {
      out.push_back(int32_t(*d_.unk_id));
    } else {
      throw Error("text has a character the vocabulary cannot spell",
                  {.field = "tokenizer.ggml.unknown_token_id",
                   .expected = "a token for it, byte tokens or an unknown token",
                   .found = std::string(ch)});
    }
  }
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  const auto& tab = byte_level_tables();
  for (int32_t id : ids) {
    if (!byte_level_) {
      out += token_text(d_, id);
      continue;
    }
    if (id < 0 || size_t(id) >= d_.tokens.size()) continue;
    const std::string& s = d_.tokens[size_t(id)];
    const int32_t type = d_.token_types.empty() ? 1 : d_.token_types[size_t(id)];
    if (type == int32_t(TokenType::kControl)) continue;
    if (type == int32_t(TokenType::kUserDefined) || type == int32_t(TokenType::kUnknown)) {
      out += s;  // stored as plain text, not byte-level spelled
      continue;
    }
    for (size_t i = 0; i < s.size();) {  // each code point back to its byte
      const size_t n = std::min(utf8_len(uint8_t(s[i])), s.size() - i);
      uint32_t cp = n == 1 ? uint8_t(s[i]) : 0;
      if (n == 2) cp = (uint32_t(uint8_t(s[i]) & 0x1F) << 6) | (uint8_t(s[i + 1]) & 0x3F);
      if (n <= 2 && cp < std::size(tab.byte_of) && tab.byte_of[cp] >= 0)
        out += char(tab.byte_of[cp]);
      else
        out.append(s, i, n);  // not a byte-level spelling: keep the text
      i += n;
    }
  }
  if (space_prefix_ && !out.empty() && out[0] == ' ') out.erase(0, 1);
  return out;
}

}  // namespace lowbit
