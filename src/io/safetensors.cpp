// Safetensors reader and writer. Reading: sizes -> UTF-8 -> JSON (duplicate keys and deep nesting
// refused) -> per tensor dtype, shape and data_offsets in checked arithmetic -> the tensors must
// tile the data section exactly. Error offsets are file offsets: the data for data-range errors,
// the tensor's key in the header for field errors (best effort: an escaped key falls back to the
// header's start). The writer re-validates its own header with the reader's rules before writing.
#include "io/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "lowbit/checked.h"
#include "lowbit/error.h"

namespace lowbit {
namespace {

using Json = nlohmann::json;
namespace fs = std::filesystem;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;   // the reference implementation's cap
constexpr uint64_t kMaxOffset = uint64_t(1) << 53;  // exact in every JSON reader (doubles)
constexpr int kMaxJsonDepth = 64;                   // the format itself needs 3
constexpr const char* kMetadataKey = "__metadata__";
constexpr const char* kIndexName = "model.safetensors.index.json";
constexpr const char* kSingleName = "model.safetensors";
constexpr size_t kNpos = std::string_view::npos;

struct DtypeInfo {
  StDtype dtype;
  std::string_view name;
  uint64_t bytes;
};

// The one table of dtypes, in enum order (checked below).
constexpr DtypeInfo kDtypes[] = {
    {StDtype::kF64, "F64", 8},   {StDtype::kF32, "F32", 4},   {StDtype::kF16, "F16", 2},
    {StDtype::kBF16, "BF16", 2}, {StDtype::kI64, "I64", 8},   {StDtype::kI32, "I32", 4},
    {StDtype::kI16, "I16", 2},   {StDtype::kI8, "I8", 1},     {StDtype::kU8, "U8", 1},
    {StDtype::kBool, "BOOL", 1}, {StDtype::kU16, "U16", 2},   {StDtype::kU32, "U32", 4},
    {StDtype::kU64, "U64", 8},   {StDtype::kF8E4M3, "F8_E4M3", 1},
    {StDtype::kF8E5M2, "F8_E5M2", 1},
};

constexpr bool dtypes_in_enum_order() {
  for (size_t i = 0; i < std::size(kDtypes); ++i) {
    if (size_t(kDtypes[i].dtype) != i) return false;
  }
  return true;
}
static_assert(dtypes_in_enum_order());

const DtypeInfo& dtype_info(StDtype d) {
  const auto i = size_t(d);
  LOWBIT_CHECK(i < std::size(kDtypes), "StDtype out of range");
  return kDtypes[i];
}

std::string dtype_list() {
  std::string s = "one of";
  for (const auto& d : kDtypes) s += " " + std::string(d.name);
  return s;
}

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Index of the first byte not starting a well-formed UTF-8 sequence (RFC 3629: no overlong
// forms, no surrogates, nothing above U+10FFFF), or kNpos.
size_t first_invalid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = uint8_t(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return i;
    if (s.size() - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      const auto d = uint8_t(s[i + k]);
      if ((d & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (d & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return kNpos;
}

// A short rendering of an untrusted JSON value for error messages.
std::string brief(const Json& v) {
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

// A JSON text inside a file: text[0] is at file offset `base`.
struct JsonText {
  const std::string& path;
  std::string_view text;
  int64_t base = 0;
  int64_t at(size_t pos) const { return base + int64_t(pos == kNpos ? 0 : pos); }
};

bool is_json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

// Position of `"key"` followed by ':' at or after `from`, or kNpos (the key may be escaped
// differently in the text than nlohmann would write it).
size_t find_key(std::string_view text, const std::string& key, size_t from) {
  const std::string needle = Json(key).dump(-1, ' ', false, Json::error_handler_t::replace);
  for (size_t p = text.find(needle, from); p != kNpos; p = text.find(needle, p + 1)) {
    size_t q = p + needle.size();
    while (q < text.size() && is_json_space(text[q])) ++q;
    if (q < text.size() && text[q] == ':') return p;
  }
  return kNpos;
}

int64_t key_offset(const JsonText& j, const std::string& key) {
  return j.at(find_key(j.text, key, 0));
}

// Offset of the second occurrence of `key`, searched from the top-level key `parent` ("" for a
// top-level duplicate).
int64_t duplicate_offset(const JsonText& j, const std::string& parent, const std::string& key) {
  size_t from = parent.empty() ? 0 : find_key(j.text, parent, 0);
  if (from == kNpos) from = 0;
  const size_t first = find_key(j.text, key, from);
  const size_t second = first == kNpos ? kNpos : find_key(j.text, key, first + 1);
  return j.at(second != kNpos ? second : first);
}

[[noreturn]] void throw_malformed(const JsonText& j, const std::string& what, size_t byte,
                                  const char* detail) {
  const size_t pos = std::min<size_t>(byte > 0 ? byte - 1 : 0, j.text.size());
  throw Error("malformed JSON", {.file = j.path, .field = what, .offset = j.at(pos),
                                 .expected = "valid JSON", .found = detail});
}

// First pass over untrusted JSON, building nothing: refuses syntax errors, duplicate keys
// (nlohmann's DOM silently keeps the last) and nesting deeper than kMaxJsonDepth. Linear in the
// text; nlohmann's callback parser is not (it rescans the parent each time a child object closes).
class JsonChecker : public Json::json_sax_t {
 public:
  JsonChecker(const JsonText& j, const std::string& what) : j_(j), what_(what) {}
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    enter();
    keys_.emplace_back();
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    enter();
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool key(string_t& key) override {
    if (depth_ == 1) top_key_ = key;
    if (!keys_.back().insert(key).second) {
      throw Error("duplicate JSON key",
                  {.file = j_.path, .field = what_ + " key '" + key + "'",
                   .offset = duplicate_offset(j_, depth_ == 1 ? "" : top_key_, key),
                   .expected = "each key once per object", .found = "'" + key + "' again"});
    }
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const Json::exception& e) override {
    throw_malformed(j_, what_, position, e.what());
  }

 private:
  void enter() {
    if (++depth_ > kMaxJsonDepth) {
      throw Error("JSON nested too deeply",
                  {.file = j_.path, .field = what_, .offset = j_.base,
                   .expected = "at most " + std::to_string(kMaxJsonDepth) + " levels"});
    }
  }
  const JsonText& j_;
  const std::string& what_;
  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;  // per open object
  std::string top_key_;                      // the current top-level key
};

// Parses an untrusted JSON object: UTF-8 and NUL bytes checked first, then JsonChecker's pass,
// then nlohmann's plain (linear) DOM parser.
Json parse_json_object(const JsonText& j, const std::string& what) {
  if (const size_t bad = first_invalid_utf8(j.text); bad != kNpos) {
    throw Error(what + " is not valid UTF-8",
                {.file = j.path, .field = what, .offset = j.at(bad), .expected = "UTF-8 text",
                 .found = "byte " + std::to_string(uint8_t(j.text[bad]))});
  }
  // nlohmann's lexer takes a NUL byte for the end of input, which would hide what follows it.
  if (const size_t nul = j.text.find('\0'); nul != kNpos) {
    throw Error(what + " contains a NUL byte", {.file = j.path, .field = what, .offset = j.at(nul),
                                                .expected = "JSON text", .found = "byte 0"});
  }
  const char* first = j.text.data();
  const char* last = first + j.text.size();
  Json doc;
  try {
    JsonChecker checker(j, what);
    Json::sax_parse(first, last, &checker);
    doc = Json::parse(first, last);
  } catch (const Json::parse_error& e) {
    throw_malformed(j, what, e.byte, e.what());
  } catch (const Json::exception& e) {
    throw_malformed(j, what, 0, e.what());
  }
  if (!doc.is_object()) {
    throw Error(what + " is not a JSON object",
                {.file = j.path, .field = what, .offset = j.base, .expected = "a JSON object",
                 .found = std::string("a JSON ") + doc.type_name()});
  }
  return doc;
}

std::optional<uint64_t> as_index(const Json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer() && v.get<int64_t>() >= 0) return uint64_t(v.get<int64_t>());
  return std::nullopt;
}

// elements * dtype bytes, checked; a zero dimension makes it 0 whatever the others are.
uint64_t shape_bytes(const std::vector<int64_t>& shape, StDtype dtype, const ErrorContext& ctx) {
  if (std::find(shape.begin(), shape.end(), 0) != shape.end()) return 0;
  uint64_t bytes = dtype_info(dtype).bytes;
  for (const int64_t d : shape) bytes = checked_mul(bytes, uint64_t(d), ctx);
  return bytes;
}

struct RawTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // within the data section
};

struct Header {
  std::map<std::string, std::string> metadata;
  std::vector<RawTensor> tensors;  // by data offset
};

std::string tensor_field(const std::string& name, const char* field) {
  return "tensor '" + name + "' " + field;
}

// An error in tensor `name`'s header entry. The entry's offset is searched for only now: doing it
// for every tensor up front would cost tensors x header bytes on a crafted 100 MB header.
[[noreturn]] void entry_error(const JsonText& j, const std::string& name, const char* field,
                              const std::string& what, std::string expected, std::string found) {
  throw Error(what, {.file = j.path, .field = tensor_field(name, field),
                     .offset = key_offset(j, name), .expected = std::move(expected),
                     .found = std::move(found)});
}

StDtype parse_dtype(const JsonText& j, const RawTensor& t, const Json& entry) {
  const auto it = entry.find("dtype");
  std::optional<StDtype> dtype;
  if (it != entry.end() && it->is_string()) {
    dtype = st_dtype_from_name(it->get_ref<const std::string&>());
  }
  if (!dtype) {
    entry_error(j, t.name, "dtype", "unknown or missing dtype", dtype_list(),
                it == entry.end() ? "nothing" : brief(*it));
  }
  return *dtype;
}

// Fills t.shape; returns the byte size it implies.
uint64_t parse_shape(const JsonText& j, RawTensor& t, const Json& entry) {
  const auto it = entry.find("shape");
  if (it == entry.end() || !it->is_array()) {
    entry_error(j, t.name, "shape", "shape is not an array", "an array of dimensions",
                it == entry.end() ? "nothing" : brief(*it));
  }
  for (const Json& d : *it) {
    const auto v = as_index(d);
    if (!v || *v > uint64_t(INT64_MAX)) {
      entry_error(j, t.name, "shape", "bad shape entry", "non-negative integer dimensions",
                  brief(d));
    }
    t.shape.push_back(int64_t(*v));
  }
  try {
    return shape_bytes(t.shape, t.dtype, {.file = j.path, .field = tensor_field(t.name, "shape")});
  } catch (const Error& e) {
    entry_error(j, t.name, "shape", e.summary(), e.context().expected, e.context().found);
  }
}

void parse_offsets(const JsonText& j, RawTensor& t, const Json& entry) {
  const auto it = entry.find("data_offsets");
  std::optional<uint64_t> begin, end;
  if (it != entry.end() && it->is_array() && it->size() == 2) {
    begin = as_index((*it)[0]);
    end = as_index((*it)[1]);
  }
  if (!begin || !end || *begin > kMaxOffset || *end > kMaxOffset) {
    entry_error(j, t.name, "data_offsets", "bad data_offsets",
                "[begin, end], integers in [0, 2^53]", it == entry.end() ? "nothing" : brief(*it));
  }
  if (*end < *begin) {
    entry_error(j, t.name, "data_offsets", "data_offsets end before begin", "end >= begin",
                brief(*it));
  }
  t.begin = *begin;
  t.end = *end;
}

RawTensor parse_tensor(const JsonText& j, const std::string& name, const Json& entry,
                       uint64_t data_start, uint64_t data_bytes) {
  RawTensor t{.name = name};
  if (!entry.is_object()) {
    entry_error(j, name, "entry", "tensor entry is not an object",
                "{\"dtype\", \"shape\", \"data_offsets\"}", brief(entry));
  }
  t.dtype = parse_dtype(j, t, entry);
  const uint64_t bytes = parse_shape(j, t, entry);
  parse_offsets(j, t, entry);
  if (t.end - t.begin != bytes) {
    entry_error(j, name, "data_offsets", "data_offsets do not match shape and dtype",
                "end - begin = " + std::to_string(bytes) + " bytes",
                std::to_string(t.end - t.begin) + " bytes");
  }
  if (t.end > data_bytes) {
    throw Error("tensor data past the end of the file",
                {.file = j.path, .field = tensor_field(name, "data_offsets"),
                 .offset = int64_t(data_start + t.begin),
                 .expected = "end <= " + std::to_string(data_bytes) + " (the data section)",
                 .found = "end " + std::to_string(t.end)});
  }
  return t;
}

std::map<std::string, std::string> parse_metadata(const JsonText& j, const Json& value) {
  std::map<std::string, std::string> out;
  const int64_t offset = key_offset(j, kMetadataKey);
  if (value.is_null()) return out;
  if (!value.is_object()) {
    throw Error("__metadata__ is not an object",
                {.file = j.path, .field = kMetadataKey, .offset = offset,
                 .expected = "an object of strings", .found = brief(value)});
  }
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string()) {
      throw Error("__metadata__ value is not a string",
                  {.file = j.path, .field = std::string(kMetadataKey) + " '" + key + "'",
                   .offset = offset, .expected = "a string", .found = brief(v)});
    }
    out.emplace(key, v.get<std::string>());
  }
  return out;
}

// The tensors (sorted by begin) must cover [0, data_bytes) exactly: no gap, overlap or tail.
void check_tiling(const JsonText& j, const std::vector<RawTensor>& tensors, uint64_t data_start,
                  uint64_t data_bytes) {
  uint64_t pos = 0;
  const RawTensor* prev = nullptr;
  for (const RawTensor& t : tensors) {
    if (t.begin != pos) {
      const char* what = t.begin < pos ? "tensors overlap"
                         : prev     ? "gap between tensors"
                                    : "bytes before the first tensor";
      throw Error(what, {.file = j.path, .field = tensor_field(t.name, "data_offsets"),
                         .offset = int64_t(data_start + std::min(pos, t.begin)),
                         .expected = "begin " + std::to_string(pos) +
                                     (prev ? " (the end of '" + prev->name + "')" : ""),
                         .found = "begin " + std::to_string(t.begin)});
    }
    pos = t.end;
    prev = &t;
  }
  if (pos != data_bytes) {
    throw Error("bytes after the last tensor are not covered by any tensor",
                {.file = j.path, .field = "data section", .offset = int64_t(data_start + pos),
                 .expected = std::to_string(pos) + " data bytes",
                 .found = std::to_string(data_bytes) + " data bytes"});
  }
}

Header parse_header(const JsonText& j, uint64_t data_start, uint64_t data_bytes) {
  if (j.text.empty() || j.text.front() != '{') {  // the spec: the header begins with '{'
    throw Error("header does not begin with '{'",
                {.file = j.path, .field = "header", .offset = j.base, .expected = "a JSON object",
                 .found = j.text.empty() ? "nothing"
                                         : "byte " + std::to_string(uint8_t(j.text[0]))});
  }
  const Json doc = parse_json_object(j, "header");
  Header h;
  for (const auto& [key, value] : doc.items()) {
    if (key == kMetadataKey) {
      h.metadata = parse_metadata(j, value);
    } else {
      h.tensors.push_back(parse_tensor(j, key, value, data_start, data_bytes));
    }
  }
  std::sort(h.tensors.begin(), h.tensors.end(), [](const RawTensor& a, const RawTensor& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  check_tiling(j, h.tensors, data_start, data_bytes);
  return h;
}

// A shard path from an index must stay inside the index's directory (checked lexically, so the
// symlinked layout of the Hugging Face cache still works).
bool stays_inside(const std::string& s) {
  if (s.empty() || s.find('\0') != std::string::npos) return false;
  const fs::path p(s);
  if (p.has_root_name() || p.has_root_directory()) return false;
  return std::none_of(p.begin(), p.end(), [](const fs::path& part) { return part == ".."; });
}

// tensor name -> shard file name, validated.
std::map<std::string, std::string> parse_weight_map(const JsonText& j, const Json& doc) {
  const auto it = doc.find("weight_map");
  if (it == doc.end() || !it->is_object() || it->empty()) {
    throw Error("index has no weight_map",
                {.file = j.path, .field = "weight_map", .offset = j.base,
                 .expected = "a non-empty object: tensor name -> shard file",
                 .found = it == doc.end() ? "nothing" : brief(*it)});
  }
  std::map<std::string, std::string> out;
  for (const auto& [name, shard] : it->items()) {
    const bool is_string = shard.is_string();
    if (!is_string || !stays_inside(shard.get_ref<const std::string&>())) {
      throw Error(is_string ? "shard path escapes the model directory"
                            : "shard name is not a string",
                  {.file = j.path, .field = "weight_map '" + name + "'",
                   .offset = key_offset(j, name),
                   .expected = "a file name inside the index's directory",
                   .found = brief(shard)});
    }
    out.emplace(name, shard.get<std::string>());
  }
  return out;
}

void write_u64_le(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}

struct BuiltHeader {
  std::string text;                   // padded with spaces to a multiple of 8
  std::vector<uint64_t> tensor_bytes;  // per tensor, in order
  uint64_t data_bytes = 0;
};

void check_writable_name(const std::string& path, const std::string& name,
                         std::set<std::string_view>& seen) {
  const char* problem = name.empty()                          ? "empty tensor name"
                        : name == kMetadataKey                ? "reserved tensor name"
                        : first_invalid_utf8(name) != kNpos   ? "tensor name is not UTF-8"
                        : !seen.insert(name).second           ? "duplicate tensor name"
                                                              : nullptr;
  if (problem != nullptr) {
    throw Error(problem, {.file = path, .field = "tensor '" + name + "' name",
                          .expected = "a unique, non-empty UTF-8 name other than __metadata__"});
  }
}

uint64_t checked_write_bytes(const std::string& path, const StWriteTensor& t) {
  const ErrorContext ctx{.file = path, .field = tensor_field(t.name, "shape"),
                         .expected = "non-negative dimensions whose byte size fits"};
  for (const int64_t d : t.shape) {
    if (d < 0) {
      ErrorContext c = ctx;
      c.found = std::to_string(d);
      throw Error("negative dimension", c);
    }
  }
  return shape_bytes(t.shape, t.dtype, ctx);
}

std::string json_quote(const std::string& s) { return Json(s).dump(); }  // s is valid UTF-8

// The header JSON, written by hand (nlohmann's ordered_json looks keys up linearly).
BuiltHeader build_header(const std::string& path,
                         const std::map<std::string, std::string>& metadata,
                         const std::vector<StWriteTensor>& tensors) {
  BuiltHeader h;
  h.text = "{";
  if (!metadata.empty()) {
    h.text += json_quote(kMetadataKey) + ":{";
    for (const auto& [key, value] : metadata) {
      if (first_invalid_utf8(key) != kNpos || first_invalid_utf8(value) != kNpos) {
        throw Error("metadata is not UTF-8", {.file = path, .field = "__metadata__ '" + key + "'",
                                              .expected = "UTF-8 key and value"});
      }
      h.text += json_quote(key) + ":" + json_quote(value) + ",";
    }
    h.text.back() = '}';
    h.text += ",";
  }
  std::set<std::string_view> seen;
  for (const StWriteTensor& t : tensors) {
    check_writable_name(path, t.name, seen);
    const uint64_t bytes = checked_write_bytes(path, t);
    const uint64_t end = checked_add(h.data_bytes, bytes, {.file = path, .field = "data size"});
    h.text += json_quote(t.name) + ":{\"dtype\":\"" + std::string(st_dtype_name(t.dtype)) +
              "\",\"shape\":[";
    for (size_t i = 0; i < t.shape.size(); ++i) {
      if (i > 0) h.text += ',';
      h.text += std::to_string(t.shape[i]);
    }
    h.text += "],\"data_offsets\":[" + std::to_string(h.data_bytes) + "," + std::to_string(end) +
              "]},";
    h.tensor_bytes.push_back(bytes);
    h.data_bytes = end;
  }
  if (h.text.back() == ',') h.text.pop_back();
  h.text += "}";
  if (h.text.size() > kMaxHeaderBytes - 8) {
    throw Error("header would exceed the 100 MB limit",
                {.file = path, .field = "header length",
                 .expected = "at most " + std::to_string(kMaxHeaderBytes) + " bytes",
                 .found = std::to_string(h.text.size()) + " bytes"});
  }
  h.text.append(checked_align_up(h.text.size(), 8) - h.text.size(), ' ');
  return h;
}

}  // namespace

std::string_view st_dtype_name(StDtype dtype) { return dtype_info(dtype).name; }

uint64_t st_dtype_bytes(StDtype dtype) { return dtype_info(dtype).bytes; }

std::optional<StDtype> st_dtype_from_name(std::string_view name) {
  for (const auto& d : kDtypes) {
    if (d.name == name) return d.dtype;
  }
  return std::nullopt;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const uint64_t size = file_.size();
  if (size < 8) {
    throw Error("file too short for a safetensors header",
                {.file = path, .field = "header length", .offset = 0,
                 .expected = "at least 8 bytes", .found = std::to_string(size) + " bytes"});
  }
  const uint64_t n = read_u64_le(file_.data());
  if (n > kMaxHeaderBytes) {
    throw Error("header length over the 100 MB limit",
                {.file = path, .field = "header length", .offset = 0,
                 .expected = "at most " + std::to_string(kMaxHeaderBytes),
                 .found = std::to_string(n)});
  }
  const uint64_t data_start = checked_add(8, n, {.file = path, .field = "header length"});
  if (data_start > size) {
    throw Error("header runs past the end of the file",
                {.file = path, .field = "header length", .offset = 0,
                 .expected = "at most " + std::to_string(size - 8) + " (file size - 8)",
                 .found = std::to_string(n)});
  }
  const JsonText j{path, {reinterpret_cast<const char*>(file_.data()) + 8, n}, 8};
  Header h = parse_header(j, data_start, size - data_start);
  metadata_ = std::move(h.metadata);
  tensors_.reserve(h.tensors.size());
  for (RawTensor& t : h.tensors) {
    by_name_.emplace(t.name, tensors_.size());
    tensors_.push_back({.name = std::move(t.name), .dtype = t.dtype, .shape = std::move(t.shape),
                        .data = file_.data() + data_start + t.begin, .bytes = t.end - t.begin,
                        .file = path});
  }
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

SafetensorsModel::SafetensorsModel(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    const fs::path dir(path);
    if (fs::exists(dir / kIndexName, ec)) {
      load_index((dir / kIndexName).string());
    } else if (fs::exists(dir / kSingleName, ec)) {
      add_shard(SafetensorsFile((dir / kSingleName).string()));
    } else {
      throw Error("no safetensors model in the directory",
                  {.file = path, .field = "directory",
                   .expected = std::string(kSingleName) + " or " + kIndexName,
                   .found = "neither"});
    }
  } else if (path.ends_with(".json")) {
    load_index(path);
  } else {
    add_shard(SafetensorsFile(path));
  }
}

void SafetensorsModel::add_shard(SafetensorsFile shard) {
  for (const StTensor& t : shard.tensors()) {
    if (const auto it = by_name_.find(t.name); it != by_name_.end()) {
      throw Error("tensor present in two shards",
                  {.file = shard.path(), .field = "tensor '" + t.name + "'",
                   .offset = int64_t(shard.offset_of(t)), .expected = "each tensor in one shard",
                   .found = "also in " + tensors_[it->second].file});
    }
    by_name_.emplace(t.name, tensors_.size());
    tensors_.push_back(t);
  }
  shards_.push_back(std::move(shard));
}

void SafetensorsModel::load_index(const std::string& index_path) {
  const MappedFile file(index_path);
  if (file.size() > kMaxHeaderBytes) {
    throw Error("index over the 100 MB limit",
                {.file = index_path, .field = "file size", .offset = 0,
                 .expected = "at most " + std::to_string(kMaxHeaderBytes) + " bytes",
                 .found = std::to_string(file.size()) + " bytes"});
  }
  const JsonText j{index_path, {reinterpret_cast<const char*>(file.data()), file.size()}, 0};
  const auto weight_map = parse_weight_map(j, parse_json_object(j, "index"));
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, std::string> shards;  // shard file name -> a tensor naming it
  for (const auto& [name, shard] : weight_map) shards.emplace(shard, name);
  for (const auto& [shard, name] : shards) {
    std::error_code ec;
    if (!fs::is_regular_file(dir / shard, ec)) {
      throw Error("shard named in the index is missing",
                  {.file = index_path, .field = "weight_map '" + name + "'",
                   .offset = key_offset(j, name), .expected = "an existing file",
                   .found = (dir / shard).string()});
    }
  }
  for (const auto& [shard, name] : shards) add_shard(SafetensorsFile((dir / shard).string()));
  for (const auto& [name, shard] : weight_map) {
    const StTensor* t = find(name);
    if (t == nullptr || t->file != (dir / shard).string()) {
      throw Error("tensor listed in the index is absent from its shard",
                  {.file = index_path, .field = "weight_map '" + name + "'",
                   .offset = key_offset(j, name), .expected = "'" + name + "' in " + shard,
                   .found = t == nullptr ? "in no shard" : "in " + t->file});
    }
  }
  for (const StTensor& t : tensors_) {
    if (!weight_map.contains(t.name)) {
      throw Error("tensor stored in a shard but not listed in the index",
                  {.file = index_path, .field = "weight_map", .offset = j.base,
                   .expected = "an entry for '" + t.name + "'",
                   .found = "none (in " + t.file + ")"});
    }
  }
}

const StTensor* SafetensorsModel::find(std::string_view name) const {
  const auto it = by_name_.find(name);
  return it == by_name_.end() ? nullptr : &tensors_[it->second];
}

const std::map<std::string, std::string>& SafetensorsModel::metadata() const {
  LOWBIT_CHECK(!shards_.empty(), "a loaded model has at least one shard");
  return shards_.front().metadata();
}

std::vector<std::string> SafetensorsModel::files() const {
  std::vector<std::string> out;
  for (const auto& s : shards_) out.push_back(s.path());
  return out;
}

void write_safetensors(const std::string& path, const std::map<std::string, std::string>& metadata,
                       const std::vector<StWriteTensor>& tensors,
                       const std::vector<std::string>& inputs) {
  const BuiltHeader h = build_header(path, metadata, tensors);
  const uint64_t data_start = 8 + h.text.size();
  // Validate lowbit's own header with the reader's rules before anything reaches the disk.
  parse_header(JsonText{path, h.text, 8}, data_start, h.data_bytes);
  OutputFile out(path, inputs);
  uint8_t length[8];
  write_u64_le(length, h.text.size());
  out.write(length, sizeof length);
  out.write(h.text.data(), h.text.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const uint64_t begin = out.offset();
    if (tensors[i].write_data) tensors[i].write_data(out);
    const uint64_t written = out.offset() - begin;
    if (written != h.tensor_bytes[i]) {
      throw Error("tensor data callback wrote the wrong number of bytes",
                  {.file = path, .field = tensor_field(tensors[i].name, "data"),
                   .offset = int64_t(begin), .expected = std::to_string(h.tensor_bytes[i]),
                   .found = std::to_string(written)});
    }
  }
  LOWBIT_CHECK(out.offset() == data_start + h.data_bytes, "safetensors size accounting");
  out.commit();
}

}  // namespace lowbit
