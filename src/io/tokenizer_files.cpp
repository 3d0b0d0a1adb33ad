// Tokenizer file loaders: llama2.c tokenizer.bin, SentencePiece .model (protobuf parsed by hand),
// Hugging Face tokenizer.json (+ tokenizer_config.json), and the dispatcher that picks one. All
// produce GGUF-shaped TokenizerData; every size is checked against the bytes left before use and
// every defect of the input is a lowbit::Error naming the file, the field and (where known) the
// offset.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "io/tokenizer_protobuf.h"
#include "io/tokenizer_text.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/mapped_file.h"
#include "lowbit/tokenizer_data.h"

namespace lowbit {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr uint64_t kMaxVocab = uint64_t(1) << 24;       // far above any real vocabulary (~256k)
constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
constexpr int kMaxJsonDepth = 256;

int32_t tt(TokenType t) {
  return static_cast<int32_t>(t);
}

// ---------------------------------------------------------------------------------------------
// Checks shared by every format.

// Valid UTF-8, then no token twice. offsets[i] (when given) locates token i in the file.
void check_tokens(const TokenizerData& t, const std::string& path, const std::string& what,
                  const std::vector<uint64_t>& offsets) {
  auto off = [&](size_t i) { return i < offsets.size() ? int64_t(offsets[i]) : int64_t(-1); };
  if (t.tokens.empty()) {
    throw Error("tokenizer has no tokens", {.file = path, .field = what, .expected = "1 or more"});
  }
  std::unordered_map<std::string_view, size_t> seen;
  seen.reserve(t.tokens.size());
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    const std::string& s = t.tokens[i];
    const std::string field = what + "[" + std::to_string(i) + "]";
    if (!valid_utf8(s)) {
      throw Error("token is not valid UTF-8", {.file = path,
                                               .field = field,
                                               .offset = off(i),
                                               .expected = "UTF-8 text",
                                               .found = quote_token(s)});
    }
    const auto [it, fresh] = seen.emplace(s, i);
    if (!fresh) {
      throw Error("duplicate token",
                  {.file = path,
                   .field = field,
                   .offset = off(i),
                   .expected = "each token once",
                   .found = quote_token(s) + " also at id " + std::to_string(it->second)});
    }
  }
}

// SentencePiece-style type from the text alone (llama.cpp's llama2.c converter does the same).
int32_t type_from_text(const std::string& s, const std::string& path, const std::string& field,
                       int64_t offset) {
  if (s == "<unk>") return tt(TokenType::kUnknown);
  if (s == "<s>" || s == "</s>") return tt(TokenType::kControl);
  switch (byte_escape(s)) {
    case ByteEscape::kValid:
      return tt(TokenType::kByte);
    case ByteEscape::kMalformed:
      throw Error("malformed byte token", {.file = path,
                                           .field = field,
                                           .offset = offset,
                                           .expected = "<0xHH> with two upper-case hex digits",
                                           .found = quote_token(s)});
    case ByteEscape::kNone:
      break;
  }
  return tt(TokenType::kNormal);
}

// ---------------------------------------------------------------------------------------------
// llama2.c tokenizer.bin

class LeReader {
 public:
  LeReader(std::span<const uint8_t> b, const std::string& path) : b_(b), path_(path) {}
  uint64_t pos() const { return pos_; }
  uint64_t left() const { return b_.size() - pos_; }
  bool done() const { return pos_ == b_.size(); }
  int32_t i32(const std::string& field) {
    int32_t v;
    std::memcpy(&v, take(4, field), 4);
    return v;
  }
  float f32(const std::string& field) {
    float v;
    std::memcpy(&v, take(4, field), 4);
    return v;
  }
  std::string str(uint64_t n, const std::string& field) {
    const uint8_t* p = take(n, field);
    return std::string(reinterpret_cast<const char*>(p), n);
  }

 private:
  const uint8_t* take(uint64_t n, const std::string& field) {
    if (n > left()) {
      throw Error("file truncated", {.file = path_,
                                     .field = field,
                                     .offset = int64_t(pos_),
                                     .expected = std::to_string(n) + " bytes",
                                     .found = std::to_string(left()) + " bytes left"});
    }
    const uint8_t* p = b_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::span<const uint8_t> b_;
  uint64_t pos_ = 0;
  const std::string& path_;
};

// llama2.c's export turned SentencePiece's "▁" into ' ' and wrapped BOS/EOS in newlines; undo
// both, as llama.cpp's converter does.
std::string from_llama2c_piece(std::string raw) {
  if (raw == "\n<s>\n") return "<s>";
  if (raw == "\n</s>\n") return "</s>";
  std::string out;
  out.reserve(raw.size());
  for (char c : raw) {
    if (c == ' ')
      out += kSpmSpace;
    else
      out += c;
  }
  return out;
}

// One (score, length, bytes) record; appends to t.
void read_llama2c_token(LeReader& r, int32_t max_len, TokenizerData& t,
                        std::vector<uint64_t>& offsets, const std::string& path) {
  const uint64_t at = r.pos();
  const std::string field = "token " + std::to_string(t.tokens.size());
  const float score = r.f32(field + " score");
  const uint64_t len_at = r.pos();
  const int32_t len = r.i32(field + " length");
  auto bad_len = [&](const char* what, std::string expected) {
    throw Error(what, {.file = path,
                       .field = field + " length",
                       .offset = int64_t(len_at),
                       .expected = std::move(expected),
                       .found = std::to_string(len)});
  };
  if (len <= 0) bad_len("token length not positive", "1.." + std::to_string(max_len));
  if (uint64_t(len) > r.left()) {
    bad_len("token length runs past the end of the file",
            "at most " + std::to_string(r.left()) + " (bytes left)");
  }
  if (len > max_len) bad_len("token longer than max_token_length", "<= " + std::to_string(max_len));
  if (std::isnan(score)) {
    throw Error(
        "token score is NaN",
        {.file = path, .field = field + " score", .offset = int64_t(at), .expected = "a number"});
  }
  t.tokens.push_back(from_llama2c_piece(r.str(uint64_t(len), field)));
  t.scores.push_back(score);
  offsets.push_back(at);
}

// Validates the tokens read from a tokenizer.bin, then types them and sets llama2.c's special ids.
void finish_llama2c(TokenizerData& t, const std::vector<uint64_t>& offsets,
                    const std::string& path) {
  check_tokens(t, path, "tokens", offsets);
  for (size_t i = 0; i < t.tokens.size(); ++i) {
    t.token_types.push_back(type_from_text(t.tokens[i], path, "tokens[" + std::to_string(i) + "]",
                                           int64_t(offsets[i])));
    if (t.token_types.back() == tt(TokenType::kByte)) t.byte_fallback = true;
  }
  if (t.tokens.size() < 3) {
    throw Error("vocabulary too small", {.file = path,
                                         .field = "tokens",
                                         .expected = "at least <unk>, <s>, </s> (3 tokens)",
                                         .found = std::to_string(t.tokens.size())});
  }
  t.unk_id = 0, t.bos_id = 1, t.eos_id = 2;  // llama2.c hard-codes BOS 1 and EOS 2
}

// ---------------------------------------------------------------------------------------------
// SentencePiece .model (sentencepiece_model.proto: ModelProto)

struct SpmTrainer {
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // the proto's defaults
  bool byte_fallback = false;
};

int32_t varint_int32(ProtoReader& r, const ProtoKey& k, const std::string& field) {
  r.expect(k, WireType::kVarint, field);
  const int64_t v = static_cast<int64_t>(r.varint(field));  // negative int32 is sign-extended
  if (v < INT32_MIN || v > INT32_MAX)
    r.fail("value out of int32 range", field, k.offset, "an int32", std::to_string(v));
  return int32_t(v);
}

// SentencePiece { piece = 1 (string), score = 2 (float), type = 3 (enum) }
void parse_spm_piece(ProtoReader& r, TokenizerData& t) {
  std::optional<std::string> piece;
  float score = 0.0f;
  uint64_t type = tt(TokenType::kNormal);
  while (!r.done()) {
    const ProtoKey k = r.key();
    if (k.field == 1) {
      r.expect(k, WireType::kLen, "piece");
      const auto s = r.len_delimited("piece");
      piece.emplace(reinterpret_cast<const char*>(s.data()), s.size());
    } else if (k.field == 2) {
      r.expect(k, WireType::kFixed32, "score");
      const uint32_t bits = r.fixed32("score");
      std::memcpy(&score, &bits, 4);
      if (std::isnan(score)) r.fail("piece score is NaN", "score", k.offset, "a number", "NaN");
    } else if (k.field == 3) {
      r.expect(k, WireType::kVarint, "type");
      type = r.varint("type");
      if (type < 1 || type > 6)
        r.fail("unknown piece type", "type", k.offset, "1..6 (NORMAL..BYTE)", std::to_string(type));
    } else {
      r.skip(k);
    }
  }
  if (!piece || piece->empty()) {
    r.fail("piece text missing or empty", "piece", r.offset(), "a non-empty string", "none");
  }
  if (type == uint64_t(tt(TokenType::kByte)) && byte_escape(*piece) != ByteEscape::kValid) {
    r.fail("malformed byte piece", "piece", r.offset(), "<0xHH> with two upper-case hex digits",
           quote_token(*piece));
  }
  t.tokens.push_back(std::move(*piece));
  t.scores.push_back(score);
  t.token_types.push_back(int32_t(type));
}

// TrainerSpec { byte_fallback = 35, unk_id = 40, bos_id = 41, eos_id = 42, pad_id = 43 }
void parse_spm_trainer(ProtoReader& r, SpmTrainer& s) {
  while (!r.done()) {
    const ProtoKey k = r.key();
    switch (k.field) {
      case 35:
        r.expect(k, WireType::kVarint, "byte_fallback");
        s.byte_fallback = r.varint("byte_fallback") != 0;
        break;
      case 40:
        s.unk_id = varint_int32(r, k, "unk_id");
        break;
      case 41:
        s.bos_id = varint_int32(r, k, "bos_id");
        break;
      case 42:
        s.eos_id = varint_int32(r, k, "eos_id");
        break;
      case 43:
        s.pad_id = varint_int32(r, k, "pad_id");
        break;
      default:
        r.skip(k);
    }
  }
}

// NormalizerSpec { add_dummy_prefix = 3 (default true) }
void parse_spm_normalizer(ProtoReader& r, bool& add_dummy_prefix) {
  while (!r.done()) {
    const ProtoKey k = r.key();
    if (k.field == 3) {
      r.expect(k, WireType::kVarint, "add_dummy_prefix");
      add_dummy_prefix = r.varint("add_dummy_prefix") != 0;
    } else {
      r.skip(k);
    }
  }
}

// A TrainerSpec id: -1 means none (unk must exist); otherwise it must name a piece.
std::optional<uint32_t> spm_id(int32_t id, size_t n, bool required, const std::string& path,
                               const char* field) {
  if (id == -1 && !required) return std::nullopt;
  if (id < 0 || uint64_t(id) >= n) {
    throw Error(
        "special token id out of range",
        {.file = path,
         .field = std::string("trainer_spec.") + field,
         .expected = std::string(required ? "" : "-1 (none) or ") + "0.." + std::to_string(n - 1),
         .found = std::to_string(id)});
  }
  return uint32_t(id);
}

// ---------------------------------------------------------------------------------------------
// JSON (tokenizer.json, tokenizer_config.json)

[[noreturn]] void json_fail(const std::string& what, const std::string& path,
                            const std::string& field, std::string expected,
                            std::string found = "") {
  throw Error(
      what,
      {.file = path, .field = field, .expected = std::move(expected), .found = std::move(found)});
}

// Parses a JSON file, rejecting duplicate keys in any object (nlohmann keeps the last silently)
// and nesting deeper than kMaxJsonDepth.
Json parse_json_file(const std::string& path) {
  const MappedFile f(path);
  if (f.size() == 0) json_fail("empty JSON file", path, "", "a JSON object");
  struct Frame {
    std::unordered_set<std::string> keys;
    std::string name;  // path of this object or array, for error messages
    bool array = false;
  };
  std::vector<Frame> stack;
  std::string last_key;
  auto cb = [&](int depth, Json::parse_event_t ev, Json& parsed) {
    using E = Json::parse_event_t;
    if (ev == E::object_start || ev == E::array_start) {
      if (depth >= kMaxJsonDepth) {
        json_fail("JSON nested too deeply", path, "", "depth <= " + std::to_string(kMaxJsonDepth));
      }
      std::string name;
      if (!stack.empty()) {
        name = stack.back().array
                   ? stack.back().name + "[]"
                   : (stack.back().name.empty() ? "" : stack.back().name + ".") + last_key;
      }
      stack.push_back({{}, std::move(name), ev == E::array_start});
    } else if (ev == E::object_end || ev == E::array_end) {
      if (!stack.empty()) stack.pop_back();
    } else if (ev == E::key && !stack.empty()) {
      last_key = parsed.get<std::string>();
      if (!stack.back().keys.insert(last_key).second) {
        const std::string& in = stack.back().name;
        json_fail("duplicate JSON key", path, (in.empty() ? "" : in + ".") + quote_token(last_key),
                  "each key once per object", "a second " + quote_token(last_key));
      }
    }
    return true;
  };
  const char* begin = reinterpret_cast<const char*>(f.data());
  try {
    return Json::parse(begin, begin + f.size(), cb, /*allow_exceptions=*/true);
  } catch (const Json::parse_error& e) {
    throw Error("invalid JSON", {.file = path,
                                 .offset = int64_t(e.byte > 0 ? e.byte - 1 : 0),
                                 .expected = "well-formed UTF-8 JSON",
                                 .found = printable(e.what(), 300)});
  } catch (const Json::exception& e) {  // e.g. 406: a number too large for a double
    throw Error(
        "invalid JSON",
        {.file = path, .expected = "well-formed UTF-8 JSON", .found = printable(e.what(), 300)});
  }
}

// A JSON value for an error message, at most ~80 characters.
std::string excerpt(const Json& v) {
  std::string s = v.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

const Json* member(const Json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  const auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

// A non-negative integer id (JSON numbers that are negative, fractional or huge are rejected).
uint64_t json_id(const Json& v, const std::string& path, const std::string& field) {
  if (!v.is_number_unsigned()) {
    json_fail("token id is not a non-negative integer", path, field, "an integer >= 0", excerpt(v));
  }
  return v.get<uint64_t>();
}

const std::string& json_string(const Json& v, const std::string& path, const std::string& field) {
  if (!v.is_string()) json_fail("expected a string", path, field, "a string", v.type_name());
  return v.get_ref<const std::string&>();
}

std::optional<bool> json_opt_bool(const Json& obj, const char* key, const std::string& path,
                                  const std::string& prefix) {
  const Json* v = member(obj, key);
  if (!v || v->is_null()) return std::nullopt;
  if (!v->is_boolean())
    json_fail("expected a boolean", path, prefix + key, "true or false", excerpt(*v));
  return v->get<bool>();
}

// Calls f on every object inside node (node included).
void visit_objects(const Json& node, const std::function<void(const Json&)>& f) {
  if (node.is_object()) {
    f(node);
    for (const auto& [k, v] : node.items()) visit_objects(v, f);
  } else if (node.is_array()) {
    for (const auto& v : node) visit_objects(v, f);
  }
}

bool has_component(const Json& root, const char* section, std::string_view type,
                   const std::function<bool(const Json&)>& also = nullptr) {
  const Json* s = member(root, section);
  if (!s) return false;
  bool found = false;
  visit_objects(*s, [&](const Json& o) {
    const Json* t = member(o, "type");
    if (t && t->is_string() && t->get_ref<const std::string&>() == type && (!also || also(o))) {
      found = true;
    }
  });
  return found;
}

// ---------------------------------------------------------------------------------------------
// tokenizer.json: vocabulary entries, then the id space they define.

enum class EntryKind { kVocab, kAddedSpecial, kAddedNormal };

struct HfEntry {
  std::string text;
  uint64_t id = 0;
  float score = 0.0f;
  EntryKind kind = EntryKind::kVocab;
  std::string field;  // where it came from, for errors
};

void bpe_entries(const Json& model, const std::string& path, std::vector<HfEntry>& out) {
  const Json* vocab = member(model, "vocab");
  if (!vocab || !vocab->is_object()) {
    json_fail("BPE vocab missing", path, "model.vocab", "an object token -> id",
              vocab ? vocab->type_name() : "nothing");
  }
  for (const auto& [text, id] : vocab->items()) {
    const std::string field = "model.vocab[" + quote_token(text) + "]";
    out.push_back({text, json_id(id, path, field), 0.0f, EntryKind::kVocab, field});
  }
}

void unigram_entries(const Json& model, const std::string& path, std::vector<HfEntry>& out) {
  const Json* vocab = member(model, "vocab");
  if (!vocab || !vocab->is_array()) {
    json_fail("Unigram vocab missing", path, "model.vocab", "an array of [piece, score]",
              vocab ? vocab->type_name() : "nothing");
  }
  for (size_t i = 0; i < vocab->size(); ++i) {
    const Json& e = (*vocab)[i];
    const std::string field = "model.vocab[" + std::to_string(i) + "]";
    if (!e.is_array() || e.size() != 2 || !e[0].is_string() || !e[1].is_number()) {
      json_fail("bad Unigram vocab entry", path, field, "[piece, score]", excerpt(e));
    }
    const double score = e[1].get<double>();
    if (!(std::fabs(score) <= double(std::numeric_limits<float>::max()))) {
      json_fail("piece score out of float range", path, field, "a finite float", excerpt(e[1]));
    }
    out.push_back({e[0].get<std::string>(), i, float(score), EntryKind::kVocab, field});
  }
}

void added_entries(const Json& root, const std::string& path, std::vector<HfEntry>& out) {
  const Json* added = member(root, "added_tokens");
  if (!added || added->is_null()) return;
  if (!added->is_array())
    json_fail("added_tokens is not an array", path, "added_tokens", "an array", added->type_name());
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& e = (*added)[i];
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    const Json* id = member(e, "id");
    const Json* content = member(e, "content");
    if (!id || !content)
      json_fail("added token lacks id or content", path, field, "{\"id\": ..., \"content\": ...}",
                excerpt(e));
    const bool special = json_opt_bool(e, "special", path, field + ".").value_or(false);
    out.push_back({json_string(*content, path, field + ".content"),
                   json_id(*id, path, field + ".id"), 0.0f,
                   special ? EntryKind::kAddedSpecial : EntryKind::kAddedNormal, field});
  }
}

// Places entries by id: ids must cover 0..n-1 exactly; an added token may restate a vocab entry
// (same id, same text). Returns the entry index of each id.
std::vector<size_t> place_entries(const std::vector<HfEntry>& entries, const std::string& path) {
  uint64_t max_id = 0;
  for (const HfEntry& e : entries) {
    // Distinct ids can be at most entries.size(); anything larger leaves a hole.
    if (e.id >= entries.size() || e.id >= kMaxVocab) {
      json_fail(
          "token id out of range", path, e.field,
          "ids 0..n-1 without holes (at most " + std::to_string(entries.size()) + " tokens here)",
          std::to_string(e.id) + " for " + quote_token(e.text));
    }
    max_id = std::max(max_id, e.id);
  }
  constexpr size_t kFree = SIZE_MAX;
  std::vector<size_t> slot(max_id + 1, kFree);
  for (size_t i = 0; i < entries.size(); ++i) {
    const HfEntry& e = entries[i];
    size_t& s = slot[e.id];
    if (s == kFree || entries[s].text == e.text) {
      if (s == kFree || e.kind != EntryKind::kVocab) s = i;  // added tokens refine vocab entries
      continue;
    }
    json_fail("two tokens share an id", path, e.field, "one token per id",
              quote_token(e.text) + " and " + quote_token(entries[s].text) + " both have id " +
                  std::to_string(e.id));
  }
  for (uint64_t id = 0; id <= max_id; ++id) {
    if (slot[id] == kFree)
      json_fail("hole in the token id space", path, "token ids",
                "ids 0.." + std::to_string(max_id) + " all present",
                "no token has id " + std::to_string(id));
  }
  return slot;
}

// "left right" strings or ["left", "right"] pairs; both halves and their concatenation must be
// tokens (as Hugging Face's BPE requires).
std::vector<std::string> read_merges(const Json& model,
                                     const std::unordered_map<std::string_view, uint32_t>& ids,
                                     const std::string& path) {
  std::vector<std::string> out;
  const Json* merges = member(model, "merges");
  if (!merges || merges->is_null()) return out;
  if (!merges->is_array())
    json_fail("merges is not an array", path, "model.merges", "an array", merges->type_name());
  out.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& m = (*merges)[i];
    const std::string field = "model.merges[" + std::to_string(i) + "]";
    std::string left, right;
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        json_fail("merge is not two tokens", path, field, "\"left right\"", quote_token(s));
      }
      left = s.substr(0, sp), right = s.substr(sp + 1);
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      left = m[0].get<std::string>(), right = m[1].get<std::string>();
      if (left.find(' ') != std::string::npos) {
        json_fail("merge cannot be written as \"left right\"", path, field,
                  "a left token without spaces", quote_token(left));
      }
    } else {
      json_fail("bad merge", path, field, "\"left right\" or [left, right]", excerpt(m));
    }
    for (const std::string* part : {&left, &right}) {
      if (!ids.count(*part))
        json_fail("merge names an unknown token", path, field, "tokens of the vocabulary",
                  quote_token(*part));
    }
    if (!ids.count(left + right))
      json_fail("merge result is not a token", path, field, "a token", quote_token(left + right));
    out.push_back(left + " " + right);
  }
  return out;
}

// A special token named in tokenizer_config.json: "text", {"content": "text"} or null.
std::optional<uint32_t> config_token(const Json& cfg, const char* key,
                                     const std::unordered_map<std::string_view, uint32_t>& ids,
                                     const std::string& path) {
  const Json* v = member(cfg, key);
  if (!v || v->is_null()) return std::nullopt;
  const Json* text = v->is_object() ? member(*v, "content") : v;
  if (!text || !text->is_string())
    json_fail("bad special token", path, key, "a string or {\"content\": string}", excerpt(*v));
  const auto it = ids.find(text->get_ref<const std::string&>());
  if (it == ids.end())
    json_fail("special token is not in the vocabulary", path, key, "a token of tokenizer.json",
              quote_token(text->get<std::string>()));
  return it->second;
}

void apply_tokenizer_config(const std::string& cfg_path,
                            const std::unordered_map<std::string_view, uint32_t>& ids,
                            TokenizerData& t) {
  const Json cfg = parse_json_file(cfg_path);
  if (!cfg.is_object()) json_fail("not a JSON object", cfg_path, "", "an object", cfg.type_name());
  if (auto v = json_opt_bool(cfg, "add_bos_token", cfg_path, "")) t.add_bos = v;
  if (auto v = json_opt_bool(cfg, "add_eos_token", cfg_path, "")) t.add_eos = v;
  if (auto id = config_token(cfg, "bos_token", ids, cfg_path)) t.bos_id = id;
  if (auto id = config_token(cfg, "eos_token", ids, cfg_path)) t.eos_id = id;
  if (auto id = config_token(cfg, "unk_token", ids, cfg_path)) t.unk_id = id;
  if (auto id = config_token(cfg, "pad_token", ids, cfg_path)) t.pad_id = id;
}

std::string hf_model_type(const Json& model, const std::string& path) {
  const Json* type = member(model, "type");
  std::string s;
  if (type)
    s = json_string(*type, path, "model.type");
  else if (member(model, "merges"))
    s = "BPE";  // old files omit the type
  else if (const Json* v = member(model, "vocab"); v && v->is_array())
    s = "Unigram";
  if (s != "BPE" && s != "Unigram") {
    json_fail("unsupported tokenizer model", path, "model.type", "BPE or Unigram",
              s.empty() ? "none" : s);
  }
  if (s == "BPE") {
    for (const char* opt : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const Json* v = member(model, opt);
      if (v && !v->is_null() && !(v->is_string() && v->get_ref<const std::string&>().empty())) {
        json_fail("unsupported BPE option", path, std::string("model.") + opt, "null", excerpt(*v));
      }
    }
  }
  return s;
}

// Whether the text gets a leading space (SentencePiece's dummy prefix / ByteLevel's prefix).
bool hf_space_prefix(const Json& root, bool byte_level) {
  if (byte_level) {
    return has_component(root, "pre_tokenizer", "ByteLevel", [](const Json& o) {
      const Json* v = member(o, "add_prefix_space");
      return v && v->is_boolean() && v->get<bool>();
    });
  }
  const bool prepend = has_component(root, "normalizer", "Prepend", [](const Json& o) {
    const Json* v = member(o, "prepend");
    return v && v->is_string() && v->get_ref<const std::string&>() == kSpmSpace;
  });
  const bool metaspace = has_component(root, "pre_tokenizer", "Metaspace", [](const Json& o) {
    const Json* a = member(o, "add_prefix_space");
    const Json* s = member(o, "prepend_scheme");
    if (s && s->is_string()) return s->get_ref<const std::string&>() != "never";
    return a && a->is_boolean() && a->get<bool>();
  });
  return prepend || metaspace;
}

// Token types for tokenizer.json entries: added special -> control, added other -> user defined,
// <0xHH> with byte fallback -> byte, the unk token -> unknown, the rest normal.
void hf_types(const std::vector<HfEntry>& entries, const std::vector<size_t>& slot,
              const std::string& path, TokenizerData& t) {
  t.token_types.resize(slot.size());
  for (size_t id = 0; id < slot.size(); ++id) {
    const HfEntry& e = entries[slot[id]];
    int32_t type = tt(TokenType::kNormal);
    if (e.kind == EntryKind::kAddedSpecial)
      type = tt(TokenType::kControl);
    else if (e.kind == EntryKind::kAddedNormal)
      type = tt(TokenType::kUserDefined);
    else if (t.byte_fallback) {
      const ByteEscape b = byte_escape(e.text);
      if (b == ByteEscape::kMalformed) {
        json_fail("malformed byte token", path, e.field, "<0xHH> with two upper-case hex digits",
                  quote_token(e.text));
      }
      if (b == ByteEscape::kValid) type = tt(TokenType::kByte);
    }
    t.token_types[id] = type;
  }
  if (t.unk_id) t.token_types[*t.unk_id] = tt(TokenType::kUnknown);
}

// The model's own unk: BPE names it (unk_token), Unigram numbers it (unk_id).
void hf_unk(const Json& model, bool bpe, const std::unordered_map<std::string_view, uint32_t>& ids,
            const std::string& path, TokenizerData& t) {
  const Json* v = member(model, bpe ? "unk_token" : "unk_id");
  if (!v || v->is_null()) return;
  if (bpe) {
    const auto it = ids.find(json_string(*v, path, "model.unk_token"));
    if (it == ids.end())
      json_fail("unk_token is not in the vocabulary", path, "model.unk_token", "a token",
                quote_token(v->get<std::string>()));
    t.unk_id = it->second;
  } else {
    const uint64_t id = json_id(*v, path, "model.unk_id");
    if (id >= t.tokens.size())
      json_fail("unk_id out of range", path, "model.unk_id", "< " + std::to_string(t.tokens.size()),
                std::to_string(id));
    t.unk_id = uint32_t(id);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

void validate_tokenizer_data(const TokenizerData& t, const std::string& file) {
  if (t.tokens.empty()) return;
  if (t.tokens.size() > kMaxVocab) {
    throw Error("vocabulary too large", {.file = file, .field = "tokens",
                                         .expected = "at most " + std::to_string(kMaxVocab),
                                         .found = std::to_string(t.tokens.size())});
  }
  check_tokens(t, file, "tokens", {});
  const size_t n = t.tokens.size();
  auto per_token = [&](const char* field, size_t have) {
    if (have != 0 && have != n) {
      throw Error("tokenizer array of the wrong length", {.file = file, .field = field,
                  .expected = std::to_string(n) + " (one per token) or none",
                  .found = std::to_string(have)});
    }
  };
  per_token("scores", t.scores.size());
  per_token("token_types", t.token_types.size());
  for (size_t i = 0; i < t.scores.size(); ++i) {
    if (!std::isfinite(t.scores[i])) {
      throw Error("token score is not finite", {.file = file, .field = "scores[" + std::to_string(i) + "]",
                                                .found = std::to_string(t.scores[i])});
    }
  }
  for (size_t i = 0; i < t.token_types.size(); ++i) {
    const int32_t ty = t.token_types[i];
    const std::string field = "token_types[" + std::to_string(i) + "]";
    if (ty < tt(TokenType::kNormal) || ty > tt(TokenType::kByte)) {
      throw Error("token type out of range", {.file = file, .field = field, .expected = "1..6",
                                              .found = std::to_string(ty)});
    }
    if (ty == tt(TokenType::kByte) && byte_escape(t.tokens[i]) != ByteEscape::kValid) {
      throw Error("byte token is not <0xHH>", {.file = file, .field = field,
                                               .expected = "<0x00>..<0xFF>",
                                               .found = quote_token(t.tokens[i])});
    }
  }
  for (const auto& [name, id] : {std::pair{"bos_id", t.bos_id}, {"eos_id", t.eos_id},
                                 {"unk_id", t.unk_id}, {"pad_id", t.pad_id}}) {
    if (id && *id >= n) {
      throw Error("token id out of range", {.file = file, .field = name,
                                            .expected = "< " + std::to_string(n),
                                            .found = std::to_string(*id)});
    }
  }
  std::unordered_set<std::string_view> known(t.tokens.begin(), t.tokens.end());
  for (size_t i = 0; i < t.merges.size(); ++i) {
    const std::string& m = t.merges[i];
    const size_t sp = m.find(' ');
    const bool ok = sp != std::string::npos && sp > 0 && sp + 1 < m.size() &&
                    known.count(std::string_view(m).substr(0, sp)) &&
                    known.count(std::string_view(m).substr(sp + 1));
    if (!ok) {
      throw Error("merge does not name two known tokens", {.file = file,
                  .field = "merges[" + std::to_string(i) + "]", .expected = "\"left right\"",
                  .found = quote_token(m)});
    }
  }
}

TokenizerData load_llama2c_tokenizer(const std::string& path, int64_t vocab_size) {
  if (vocab_size < 0 || uint64_t(vocab_size) > kMaxVocab) {
    throw Error("invalid vocabulary size",
                {.file = path,
                 .field = "vocab_size",
                 .expected = "0 (read to end of file) or 1.." + std::to_string(kMaxVocab),
                 .found = std::to_string(vocab_size)});
  }
  const MappedFile f(path);
  LeReader r(f.bytes(), path);
  const int32_t max_len = r.i32("max_token_length");
  if (max_len <= 0) {
    throw Error("invalid max_token_length", {.file = path,
                                             .field = "max_token_length",
                                             .offset = 0,
                                             .expected = "> 0",
                                             .found = std::to_string(max_len)});
  }
  const uint64_t n = uint64_t(vocab_size);
  const uint64_t min_bytes = checked_mul(n, 9, {.file = path, .field = "vocab_size"});
  if (min_bytes > r.left()) {  // each token is at least score + length + 1 byte
    throw Error(
        "file too short for the vocabulary size",
        {.file = path,
         .field = "vocab_size",
         .offset = 4,
         .expected = std::to_string(n) + " tokens (>= " + std::to_string(min_bytes) + " bytes)",
         .found = std::to_string(r.left()) + " bytes"});
  }
  TokenizerData t;
  t.model = "llama";
  t.tokens.reserve(n);
  t.scores.reserve(n);
  std::vector<uint64_t> offsets;
  while (n > 0 ? t.tokens.size() < n : !r.done()) {
    if (t.tokens.size() >= kMaxVocab) {
      throw Error("too many tokens", {.file = path,
                                      .field = "tokens",
                                      .offset = int64_t(r.pos()),
                                      .expected = "at most " + std::to_string(kMaxVocab)});
    }
    read_llama2c_token(r, max_len, t, offsets, path);
  }
  if (!r.done()) {
    throw Error("trailing bytes after the last token",
                {.file = path,
                 .field = "tokens",
                 .offset = int64_t(r.pos()),
                 .expected = "end of file after " + std::to_string(n) + " tokens",
                 .found = std::to_string(r.left()) + " more bytes"});
  }
  finish_llama2c(t, offsets, path);
  return t;
}

TokenizerData load_sentencepiece_model(const std::string& path) {
  const MappedFile f(path);
  ProtoReader r(f.bytes(), 0, path, "");
  TokenizerData t;
  t.model = "llama";
  t.pre = "default";
  SpmTrainer trainer;
  bool add_dummy_prefix = true;
  std::vector<uint64_t> offsets;
  while (!r.done()) {
    const ProtoKey k = r.key();
    if (k.field < 1 || k.field > 3) {
      r.skip(k);
      continue;
    }
    static const char* kNames[] = {"", "pieces", "trainer_spec", "normalizer_spec"};
    r.expect(k, WireType::kLen, kNames[k.field]);
    const auto body = r.len_delimited(kNames[k.field]);
    const uint64_t base = r.offset() - body.size();
    if (k.field == 1) {
      if (t.tokens.size() >= kMaxVocab)
        r.fail("too many pieces", "pieces", k.offset, "at most " + std::to_string(kMaxVocab),
               "more");
      ProtoReader pr(body, base, path, "pieces[" + std::to_string(t.tokens.size()) + "]");
      offsets.push_back(k.offset);
      parse_spm_piece(pr, t);
    } else if (k.field == 2) {
      ProtoReader tr(body, base, path, "trainer_spec");
      parse_spm_trainer(tr, trainer);
    } else {
      ProtoReader nr(body, base, path, "normalizer_spec");
      parse_spm_normalizer(nr, add_dummy_prefix);
    }
  }
  check_tokens(t, path, "pieces", offsets);
  const size_t n = t.tokens.size();
  t.unk_id = spm_id(trainer.unk_id, n, true, path, "unk_id");
  t.bos_id = spm_id(trainer.bos_id, n, false, path, "bos_id");
  t.eos_id = spm_id(trainer.eos_id, n, false, path, "eos_id");
  t.pad_id = spm_id(trainer.pad_id, n, false, path, "pad_id");
  t.add_space_prefix = add_dummy_prefix;
  t.byte_fallback = trainer.byte_fallback ||
                    std::count(t.token_types.begin(), t.token_types.end(), tt(TokenType::kByte));
  return t;
}

TokenizerData load_hf_tokenizer(const std::string& tokenizer_json_path) {
  const std::string& path = tokenizer_json_path;
  const Json root = parse_json_file(path);
  const Json* model = member(root, "model");
  if (!model || !model->is_object()) {
    json_fail("tokenizer.json has no model", path, "model", "an object",
              model ? model->type_name() : "nothing");
  }
  const bool bpe = hf_model_type(*model, path) == "BPE";
  std::vector<HfEntry> entries;
  if (bpe)
    bpe_entries(*model, path, entries);
  else
    unigram_entries(*model, path, entries);
  added_entries(root, path, entries);
  if (entries.empty()) json_fail("tokenizer has no tokens", path, "model.vocab", "1 or more");
  const std::vector<size_t> slot = place_entries(entries, path);

  TokenizerData t;
  const bool byte_level = has_component(root, "pre_tokenizer", "ByteLevel") ||
                          has_component(root, "decoder", "ByteLevel");
  t.model = byte_level ? "gpt2" : "llama";
  t.pre = byte_level ? "" : "default";  // llama.cpp identifies BPE pre-tokenizers by hash
  t.tokens.reserve(slot.size());
  for (size_t s : slot) t.tokens.push_back(entries[s].text);
  check_tokens(t, path, "tokens", {});
  std::unordered_map<std::string_view, uint32_t> ids;
  ids.reserve(t.tokens.size());
  for (size_t i = 0; i < t.tokens.size(); ++i) ids.emplace(t.tokens[i], uint32_t(i));

  // Scores: Unigram keeps its log-probabilities. SentencePiece-style BPE has none; we use -id
  // (llama.cpp's convention: its vocabularies list merge results in merge order, so an earlier
  // token is a higher-priority merge). Byte-level BPE ranks by merges alone: no scores.
  if (!bpe) {
    for (size_t s : slot) t.scores.push_back(entries[s].score);
  } else if (!byte_level) {
    for (size_t i = 0; i < slot.size(); ++i) t.scores.push_back(0.0f - float(i));
  }
  if (bpe) t.merges = read_merges(*model, ids, path);
  t.byte_fallback = json_opt_bool(*model, "byte_fallback", path, "model.").value_or(false);
  t.add_space_prefix = hf_space_prefix(root, byte_level);
  hf_unk(*model, bpe, ids, path, t);

  const fs::path cfg = fs::path(path).parent_path() / "tokenizer_config.json";
  std::error_code ec;
  if (fs::is_regular_file(cfg, ec)) apply_tokenizer_config(cfg.string(), ids, t);
  hf_types(entries, slot, path, t);
  return t;
}

namespace {

// Tokenizer files in dir in order of preference (see find_tokenizer_beside).
std::string tokenizer_in_dir(const fs::path& dir, const fs::path& exclude) {
  std::error_code ec;
  const fs::path list_dir = dir.empty() ? fs::path(".") : dir;
  auto usable = [&](const fs::path& p) {
    std::error_code e;
    return fs::is_regular_file(p, e) && !(fs::exists(exclude, e) && fs::equivalent(p, exclude, e));
  };
  for (const char* name : {"tokenizer.json", "tokenizer.model"}) {
    if (usable(list_dir / name)) return (dir / name).string();
  }
  std::vector<std::string> names;
  for (fs::directory_iterator it(list_dir, ec), end; !ec && it != end; it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  std::sort(names.begin(), names.end());
  for (const char* ext : {".bin", ".model"}) {
    for (const std::string& name : names) {
      if (name.starts_with("tok") && name.ends_with(ext) && usable(list_dir / name)) {
        return (dir / name).string();
      }
    }
  }
  return "";
}

}  // namespace

std::string find_tokenizer_beside(const std::string& model_path) {
  if (model_path.empty()) return "";
  std::error_code ec;
  const fs::path p(model_path);
  if (fs::is_directory(p, ec)) return tokenizer_in_dir(p, fs::path());
  return tokenizer_in_dir(p.parent_path(), p);
}

TokenizerData load_tokenizer(const std::string& path, int64_t vocab_size) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const std::string found = find_tokenizer_beside(path);
    if (found.empty()) {
      throw Error(
          "no tokenizer file in directory",
          {.file = path, .expected = "tokenizer.json, tokenizer.model, tok*.bin or tok*.model"});
    }
    return load_tokenizer(found, vocab_size);
  }
  const fs::path p(path);
  const std::string name = p.filename().string();
  if (name == "tokenizer_config.json")
    return load_hf_tokenizer((p.parent_path() / "tokenizer.json").string());
  if (name.ends_with(".json")) return load_hf_tokenizer(path);
  if (name.ends_with(".model")) return load_sentencepiece_model(path);
  if (name.ends_with(".bin")) return load_llama2c_tokenizer(path, vocab_size);
  // Unknown name: look at the content.
  const MappedFile f(path);
  const auto b = f.bytes();
  size_t i = 0;
  while (i < b.size() && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r')) ++i;
  if (i < b.size() && b[i] == '{') return load_hf_tokenizer(path);
  if (b.size() >= 4 && std::memcmp(b.data(), "GGUF", 4) == 0) {
    throw Error(
        "GGUF files carry their tokenizer inside: read it with the GGUF reader",
        {.file = path, .expected = "tokenizer.json, a SentencePiece model or tokenizer.bin"});
  }
  // ModelProto begins with field 1 (pieces, length-delimited): 0x0A, then a non-zero length. A
  // llama2.c file begins with an int32 max_token_length, whose second byte is 0 when it is 10.
  if (b.size() >= 2 && b[0] == 0x0A && b[1] != 0) return load_sentencepiece_model(path);
  return load_llama2c_tokenizer(path, vocab_size);
}

}  // namespace lowbit
