// GGUF reader and writer. Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 kv
// count, kv pairs (string key, u32 type, value), tensor infos (string name, u32 n_dims, u64
// ne[n_dims], u32 type, u64 offset), padding to the alignment, tensor data (each aligned).
// Strings are u64 length + bytes; arrays are u32 element type + u64 count + elements.
#include "io/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "lowbit/checked.h"
#include "lowbit/error.h"

namespace lowbit {

std::string fmt_hex(uint64_t v);

std::string_view gguf_type_name(GgufType t) {
  static constexpr std::string_view kNames[] = {"u8",   "i8",     "u16",   "i16", "u32",
                                                "i32",  "f32",    "bool",  "string",
                                                "array", "u64",   "i64",   "f64"};
  const auto i = uint32_t(t);
  return i < std::size(kNames) ? kNames[i] : "invalid";
}

GgufValue GgufValue::u32(uint32_t v) { GgufValue x; x.type = GgufType::kU32; x.u = v; return x; }
GgufValue GgufValue::i32(int32_t v) { GgufValue x; x.type = GgufType::kI32; x.i = v; return x; }
GgufValue GgufValue::f32(float v) { GgufValue x; x.type = GgufType::kF32; x.f = v; return x; }
GgufValue GgufValue::boolean(bool v) { GgufValue x; x.type = GgufType::kBool; x.b = v; return x; }
GgufValue GgufValue::str(std::string v) {
  GgufValue x;
  x.type = GgufType::kString;
  x.s = std::move(v);
  return x;
}
GgufValue GgufValue::str_array(const std::vector<std::string>& v) {
  GgufValue x;
  x.type = GgufType::kArray, x.elem_type = GgufType::kString;
  for (const auto& s : v) x.arr.push_back(str(s));
  return x;
}
GgufValue GgufValue::f32_array(const std::vector<float>& v) {
  GgufValue x;
  x.type = GgufType::kArray, x.elem_type = GgufType::kF32;
  for (float s : v) x.arr.push_back(f32(s));
  return x;
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  GgufValue x;
  x.type = GgufType::kArray, x.elem_type = GgufType::kI32;
  for (int32_t s : v) x.arr.push_back(i32(s));
  return x;
}

int64_t GgufTensorInfo::elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;  // validated not to overflow when read
  return n;
}

uint64_t gguf_tensor_bytes(const Format& f, const std::vector<int64_t>& ne,
                           const ErrorContext& ctx) {
  if (ne.empty() || !f.can_tile(ne[0])) {
    ErrorContext c = ctx;
    c.expected = "rows whose length (ne[0]) is a multiple of " +
                 std::to_string(f.info().block_elems) + " for " + f.name();
    c.found = ne.empty() ? "no dimensions" : std::to_string(ne[0]);
    throw Error("tensor rows cannot be tiled by the format's blocks", c);
  }
  uint64_t rows = 1;
  for (size_t i = 1; i < ne.size(); ++i) rows = checked_mul(rows, uint64_t(ne[i]), ctx);
  return checked_mul(rows, f.row_bytes(ne[0]), ctx);
}

namespace {

// Bounds-checked reading of the mapped file.
class Cursor {
 public:
  Cursor(const MappedFile& f) : p_(f.data()), size_(f.size()), path_(f.path()) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }
  void need(uint64_t n, const std::string& field) const {
    if (n > remaining()) {
      throw Error("unexpected end of file", {.file = path_, .field = field,
                                              .offset = int64_t(pos_),
                                              .expected = std::to_string(n) + " more bytes",
                                              .found = std::to_string(remaining())});
    }
  }
  template <typename T>
  T read(const std::string& field) {
    need(sizeof(T), field);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& field) {
    const uint64_t at = pos_;
    const uint64_t n = read<uint64_t>(field + " length");
    if (n > remaining()) {
      throw Error("string longer than the rest of the file",
                  {.file = path_, .field = field, .offset = int64_t(at),
                   .expected = "at most " + std::to_string(remaining()) + " bytes",
                   .found = std::to_string(n)});
    }
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }
  [[noreturn]] void fail(const std::string& what, const std::string& field, uint64_t at,
                         std::string expected, std::string found) const {
    throw Error(what, {.file = path_, .field = field, .offset = int64_t(at),
                       .expected = std::move(expected), .found = std::move(found)});
  }
  const std::string& path() const { return path_; }

 private:
  const uint8_t* p_;
  uint64_t size_, pos_ = 0;
  const std::string& path_;
};

uint64_t min_value_bytes(GgufType t) {
  switch (t) {
    case GgufType::kU8: case GgufType::kI8: case GgufType::kBool: return 1;
    case GgufType::kU16: case GgufType::kI16: return 2;
    case GgufType::kU32: case GgufType::kI32: case GgufType::kF32: return 4;
    case GgufType::kU64: case GgufType::kI64: case GgufType::kF64: case GgufType::kString: return 8;
    case GgufType::kArray: return 12;
  }
  return 1;
}

GgufType read_type(Cursor& c, const std::string& field) {
  const uint64_t at = c.pos();
  const uint32_t t = c.read<uint32_t>(field);
  if (t > uint32_t(GgufType::kF64)) {
    c.fail("metadata value type out of range", field, at, "a type id 0..12", std::to_string(t));
  }
  return GgufType(t);
}

GgufValue read_value(Cursor& c, GgufType t, const std::string& field, int depth) {
  GgufValue v;
  v.type = t;
  switch (t) {
    case GgufType::kU8: v.u = c.read<uint8_t>(field); break;
    case GgufType::kI8: v.i = c.read<int8_t>(field); break;
    case GgufType::kU16: v.u = c.read<uint16_t>(field); break;
    case GgufType::kI16: v.i = c.read<int16_t>(field); break;
    case GgufType::kU32: v.u = c.read<uint32_t>(field); break;
    case GgufType::kI32: v.i = c.read<int32_t>(field); break;
    case GgufType::kU64: v.u = c.read<uint64_t>(field); break;
    case GgufType::kI64: v.i = c.read<int64_t>(field); break;
    case GgufType::kF32: v.f = c.read<float>(field); break;
    case GgufType::kF64: v.f = c.read<double>(field); break;
    case GgufType::kBool: {
      const uint64_t at = c.pos();
      const uint8_t b = c.read<uint8_t>(field);
      if (b > 1) c.fail("invalid bool", field, at, "0 or 1", std::to_string(b));
      v.b = b != 0;
      break;
    }
    case GgufType::kString: v.s = c.read_string(field); break;
    case GgufType::kArray: {
      const uint64_t at = c.pos();
      if (depth >= kGgufMaxArrayDepth) {
        c.fail("arrays nested too deeply", field, at,
               "at most " + std::to_string(kGgufMaxArrayDepth) + " levels", "deeper");
      }
      v.elem_type = read_type(c, field + " element type");
      const uint64_t n = c.read<uint64_t>(field + " count");
      const uint64_t min_bytes = checked_mul(n, min_value_bytes(v.elem_type),
                                             {.file = c.path(), .field = field + " count",
                                              .offset = int64_t(at + 4)});
      if (min_bytes > c.remaining()) {
        c.fail("array longer than the rest of the file", field + " count", at + 4,
               "at most " + std::to_string(c.remaining() / min_value_bytes(v.elem_type)) +
                   " elements",
               std::to_string(n));
      }
      v.arr.reserve(n);
      for (uint64_t k = 0; k < n; ++k) v.arr.push_back(read_value(c, v.elem_type, field, depth + 1));
      break;
    }
  }
  return v;
}

}  // namespace

namespace {

void read_header(Cursor& c, uint32_t& version, uint64_t& n_tensors, uint64_t& n_kv) {
  c.need(4, "magic");
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic != 0x46554747u) {  // "GGUF"
    c.fail("not a GGUF file", "magic", 0, "\"GGUF\"", "0x" + fmt_hex(magic));
  }
  version = c.read<uint32_t>("version");
  if (version != 2 && version != 3) {
    const uint32_t swapped = __builtin_bswap32(version);
    c.fail(swapped == 2 || swapped == 3 ? "big-endian GGUF is not supported"
                                        : "unsupported GGUF version",
           "version", 4, "2 or 3", std::to_string(version));
  }
  n_tensors = c.read<uint64_t>("tensor_count");
  n_kv = c.read<uint64_t>("metadata_kv_count");
  // Cheapest possible entries: a kv is >= 8+1+4+1 bytes, a tensor info >= 8+1+4+8+4+8.
  if (n_kv > c.remaining() / 14) {
    c.fail("metadata count larger than the file can hold", "metadata_kv_count", 16,
           "at most " + std::to_string(c.remaining() / 14), std::to_string(n_kv));
  }
  if (n_tensors > c.remaining() / 33) {
    c.fail("tensor count larger than the file can hold", "tensor_count", 8,
           "at most " + std::to_string(c.remaining() / 33), std::to_string(n_tensors));
  }
}

}  // namespace

GgufFile::GgufFile(const std::string& path) : file_(path) {
  Cursor c(file_);
  uint64_t n_tensors = 0, n_kv = 0;
  read_header(c, version_, n_tensors, n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = c.pos();
    const std::string field = "metadata[" + std::to_string(k) + "]";
    std::string key = c.read_string(field + " key");
    if (key.empty()) c.fail("empty metadata key", field, at, "a non-empty key", "\"\"");
    if (kv_index_.count(key)) c.fail("duplicate metadata key", key, at, "unique keys", key);
    const GgufType t = read_type(c, key + " type");
    GgufValue v = read_value(c, t, key, 0);
    kv_index_.emplace(key, kv_.size());
    kv_offsets_.push_back(int64_t(at));
    kv_.emplace_back(std::move(key), std::move(v));
  }
  if (const GgufValue* a = find("general.alignment")) {
    if (a->type != GgufType::kU32) type_error("general.alignment", "u32");
    if (a->u == 0 || (a->u & (a->u - 1)) != 0 || a->u > kGgufMaxAlignment) {
      c.fail("invalid alignment", "general.alignment", uint64_t(key_offset("general.alignment")),
             "a power of two in 1.." + std::to_string(kGgufMaxAlignment), std::to_string(a->u));
    }
    alignment_ = a->u;
  }
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    t.info_offset = int64_t(c.pos());
    const std::string field = "tensor_info[" + std::to_string(k) + "]";
    t.name = c.read_string(field + " name");
    const std::string tf = "tensor '" + t.name.substr(0, 80) + "'";
    if (t.name.empty() || t.name.size() > kGgufMaxNameBytes) {
      c.fail("invalid tensor name length", tf + " name", uint64_t(t.info_offset),
             "1.." + std::to_string(kGgufMaxNameBytes) + " bytes", std::to_string(t.name.size()));
    }
    if (tensor_index_.count(t.name)) {
      c.fail("duplicate tensor name", tf, uint64_t(t.info_offset), "unique names", t.name);
    }
    const uint64_t dims_at = c.pos();
    const uint32_t n_dims = c.read<uint32_t>(tf + " n_dims");
    if (n_dims == 0 || n_dims > kGgufMaxDims) {
      c.fail("unsupported number of dimensions", tf + " n_dims", dims_at,
             "1.." + std::to_string(kGgufMaxDims), std::to_string(n_dims));
    }
    uint64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t at = c.pos();
      const uint64_t v = c.read<uint64_t>(tf + " ne[" + std::to_string(d) + "]");
      if (v == 0 || v > uint64_t(INT64_MAX)) {
        c.fail(v == 0 ? "zero-sized dimension" : "negative dimension",
               tf + " ne[" + std::to_string(d) + "]", at, "1..2^63-1",
               std::to_string(int64_t(v)));
      }
      elements = checked_mul(elements, v, {.file = path, .field = tf + " element count",
                                           .offset = int64_t(at)});
      t.ne.push_back(int64_t(v));
    }
    if (elements > uint64_t(INT64_MAX)) {
      c.fail("element count overflows", tf + " element count", dims_at, "< 2^63",
             std::to_string(elements));
    }
    const uint64_t type_at = c.pos();
    t.type_id = c.read<uint32_t>(tf + " type");
    const auto f = Format::from_gguf_type(t.type_id);
    if (!f) {
      c.fail("unknown tensor type", tf + " type", type_at, "a type lowbit knows (lowbit formats)",
             std::to_string(t.type_id));
    }
    t.format = *f;
    const uint64_t off_at = c.pos();
    t.offset = c.read<uint64_t>(tf + " offset");
    if (t.offset % alignment_ != 0) {
      c.fail("misaligned tensor data offset", tf + " offset", off_at,
             "a multiple of " + std::to_string(alignment_), std::to_string(t.offset));
    }
    t.bytes = gguf_tensor_bytes(t.format, t.ne, {.file = path, .field = tf + " size",
                                                 .offset = int64_t(type_at)});
    tensor_index_.emplace(t.name, tensors_.size());
    tensors_.push_back(std::move(t));
  }
  const ErrorContext dctx{.file = path, .field = "data section", .offset = int64_t(c.pos())};
  data_offset_ = checked_align_up(c.pos(), alignment_, dctx);
  if (tensors_.empty()) return;  // a vocabulary-only file may end right after its metadata
  // Data: sorted by offset, each tensor starts where the previous one ends (rounded up to the
  // alignment): no overlaps, no gaps, nothing past the end of the file.
  std::vector<GgufTensorInfo*> order;
  for (auto& t : tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->offset < b->offset; });
  uint64_t expect = 0;
  for (GgufTensorInfo* t : order) {
    const std::string tf = "tensor '" + t->name + "' offset";
    if (t->offset != expect) {
      c.fail(t->offset < expect ? "tensor data overlaps the previous tensor"
                                : "gap in the tensor data",
             tf, uint64_t(t->info_offset), std::to_string(expect), std::to_string(t->offset));
    }
    const uint64_t end = checked_add(t->offset, t->bytes, dctx);
    const uint64_t abs_end = checked_add(data_offset_, end, dctx);
    if (abs_end > file_.size()) {
      c.fail("tensor data past the end of the file (truncated?)", tf, uint64_t(t->info_offset),
             "a file of at least " + std::to_string(abs_end) + " bytes",
             std::to_string(file_.size()));
    }
    t->data = file_.data() + data_offset_ + t->offset;
    expect = checked_align_up(end, alignment_, dctx);
  }
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  const auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufValue* GgufFile::find(std::string_view key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

int64_t GgufFile::key_offset(std::string_view key) const {
  const auto it = kv_index_.find(key);
  return it == kv_index_.end() ? -1 : kv_offsets_[it->second];
}

void GgufFile::type_error(std::string_view key, const char* expected) const {
  const GgufValue* v = find(key);
  std::string found = v ? std::string(gguf_type_name(v->type)) : "missing";
  if (v && v->type == GgufType::kArray) found += " of " + std::string(gguf_type_name(v->elem_type));
  throw Error(v ? "metadata value of the wrong type" : "required metadata key missing",
              {.file = path(), .field = std::string(key), .offset = key_offset(key),
               .expected = expected, .found = found});
}

namespace {
bool is_int(GgufType t) {
  return t == GgufType::kU8 || t == GgufType::kI8 || t == GgufType::kU16 || t == GgufType::kI16 ||
         t == GgufType::kU32 || t == GgufType::kI32 || t == GgufType::kU64 || t == GgufType::kI64;
}
bool is_signed(GgufType t) {
  return t == GgufType::kI8 || t == GgufType::kI16 || t == GgufType::kI32 || t == GgufType::kI64;
}
}  // namespace

uint64_t GgufFile::get_uint(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || !is_int(v->type) || (is_signed(v->type) && v->i < 0)) {
    type_error(key, "a non-negative integer");
  }
  return is_signed(v->type) ? uint64_t(v->i) : v->u;
}
uint64_t GgufFile::get_uint(std::string_view key, uint64_t fallback) const {
  return has(key) ? get_uint(key) : fallback;
}
double GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || (v->type != GgufType::kF32 && v->type != GgufType::kF64)) type_error(key, "f32");
  return v->f;
}
double GgufFile::get_float(std::string_view key, double fallback) const {
  return has(key) ? get_float(key) : fallback;
}
bool GgufFile::get_bool(std::string_view key, bool fallback) const {
  const GgufValue* v = find(key);
  if (!v) return fallback;
  if (v->type != GgufType::kBool) type_error(key, "bool");
  return v->b;
}
std::string GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::kString) type_error(key, "string");
  return v->s;
}
std::string GgufFile::get_string(std::string_view key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}
std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::kArray || v->elem_type != GgufType::kString) {
    type_error(key, "array of string");
  }
  std::vector<std::string> out;
  out.reserve(v->arr.size());
  for (const auto& e : v->arr) out.push_back(e.s);
  return out;
}
std::vector<float> GgufFile::get_f32_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::kArray || v->elem_type != GgufType::kF32) {
    type_error(key, "array of f32");
  }
  std::vector<float> out;
  out.reserve(v->arr.size());
  for (const auto& e : v->arr) out.push_back(float(e.f));
  return out;
}
std::vector<int32_t> GgufFile::get_i32_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v || v->type != GgufType::kArray ||
      (v->elem_type != GgufType::kI32 && v->elem_type != GgufType::kU32)) {
    type_error(key, "array of i32");
  }
  std::vector<int32_t> out;
  out.reserve(v->arr.size());
  for (const auto& e : v->arr) {
    if (e.type == GgufType::kU32 && e.u > uint64_t(INT32_MAX)) type_error(key, "array of i32");
    out.push_back(e.type == GgufType::kI32 ? int32_t(e.i) : int32_t(e.u));
  }
  return out;
}

std::string fmt_hex(uint64_t v) {
  static const char* kDigits = "0123456789abcdef";
  std::string s;
  do s.insert(s.begin(), kDigits[v & 15]), v >>= 4; while (v);
  return s;
}

// ---- writer ---------------------------------------------------------------------------------

namespace {

class ByteSink {  // little-endian serialisation of the header into memory
 public:
  template <typename T>
  void put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    bytes.insert(bytes.end(), p, p + sizeof(T));
  }
  void put_string(const std::string& s) {
    put<uint64_t>(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void put_value(const GgufValue& v) {
    switch (v.type) {
      case GgufType::kU8: put<uint8_t>(uint8_t(v.u)); break;
      case GgufType::kI8: put<int8_t>(int8_t(v.i)); break;
      case GgufType::kU16: put<uint16_t>(uint16_t(v.u)); break;
      case GgufType::kI16: put<int16_t>(int16_t(v.i)); break;
      case GgufType::kU32: put<uint32_t>(uint32_t(v.u)); break;
      case GgufType::kI32: put<int32_t>(int32_t(v.i)); break;
      case GgufType::kU64: put<uint64_t>(v.u); break;
      case GgufType::kI64: put<int64_t>(v.i); break;
      case GgufType::kF32: put<float>(float(v.f)); break;
      case GgufType::kF64: put<double>(v.f); break;
      case GgufType::kBool: put<uint8_t>(v.b ? 1 : 0); break;
      case GgufType::kString: put_string(v.s); break;
      case GgufType::kArray:
        put<uint32_t>(uint32_t(v.elem_type));
        put<uint64_t>(v.arr.size());
        for (const auto& e : v.arr) {
          LOWBIT_CHECK(e.type == v.elem_type, "GGUF array with mixed element types");
          put_value(e);
        }
        break;
    }
  }
  std::vector<uint8_t> bytes;
};

}  // namespace

void GgufWriter::set(const std::string& key, GgufValue v) {
  for (auto& kv : kv_) {
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> ne, Format format,
                            std::function<void(OutputFile&)> write_data) {
  LOWBIT_CHECK(!name.empty() && name.size() <= kGgufMaxNameBytes, "GGUF tensor name length");
  LOWBIT_CHECK(!ne.empty() && ne.size() <= kGgufMaxDims, "GGUF tensor rank");
  for (const auto& t : tensors_) LOWBIT_CHECK(t.name != name, "duplicate GGUF tensor name");
  const uint64_t bytes = gguf_tensor_bytes(format, ne, {.field = "tensor '" + name + "'"});
  tensors_.push_back({std::move(name), std::move(ne), format, bytes, std::move(write_data)});
}

namespace {
// The header write() emits: magic, version, counts, metadata, tensor infos.
template <typename Kv, typename Tensors>
ByteSink gguf_header(const Kv& kv, const Tensors& tensors, uint64_t alignment) {
  ByteSink h;
  h.put<uint32_t>(0x46554747u);
  h.put<uint32_t>(3);
  h.put<uint64_t>(tensors.size());
  const bool custom_alignment = alignment != 32;
  h.put<uint64_t>(kv.size() + (custom_alignment ? 1 : 0));
  if (custom_alignment) {
    h.put_string("general.alignment");
    h.put<uint32_t>(uint32_t(GgufType::kU32));
    h.put<uint32_t>(uint32_t(alignment));
  }
  for (const auto& [k, v] : kv) {
    LOWBIT_CHECK(!k.empty() && k != "general.alignment", "GGUF key");
    h.put_string(k);
    h.put<uint32_t>(uint32_t(v.type));
    h.put_value(v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    h.put_string(t.name);
    h.put<uint32_t>(uint32_t(t.ne.size()));
    for (int64_t d : t.ne) h.put<uint64_t>(uint64_t(d));
    h.put<uint32_t>(t.format.gguf_type());
    h.put<uint64_t>(offset);
    offset = checked_align_up(checked_add(offset, t.bytes), alignment);
  }
  return h;
}
}  // namespace

uint64_t GgufWriter::header_bytes() const {
  return gguf_header(kv_, tensors_, alignment_).bytes.size();
}

void GgufWriter::write(const std::string& path, const std::vector<std::string>& inputs,
                       const std::function<void(size_t, size_t)>& progress) const {
  const ByteSink h = gguf_header(kv_, tensors_, alignment_);
  OutputFile out(path, inputs);
  out.write(h.bytes.data(), h.bytes.size());
  if (!tensors_.empty()) out.write_zeros(checked_align_up(out.offset(), alignment_) - out.offset());
  const uint64_t data_start = out.offset();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const auto& t = tensors_[i];
    const uint64_t begin = out.offset();
    t.write_data(out);
    // Self-check before the rename (bad-inputs 38): every tensor wrote exactly its size.
    if (out.offset() - begin != t.bytes) {
      throw Error("internal: tensor writer produced the wrong number of bytes",
                  {.file = path, .field = "tensor '" + t.name + "'",
                   .offset = int64_t(begin), .expected = std::to_string(t.bytes),
                   .found = std::to_string(out.offset() - begin)});
    }
    if (i + 1 < tensors_.size()) {
      out.write_zeros(checked_align_up(out.offset() - data_start, alignment_) -
                      (out.offset() - data_start));
    }
    if (progress) progress(i + 1, tensors_.size());
  }
  out.commit();
}

}  // namespace lowbit
