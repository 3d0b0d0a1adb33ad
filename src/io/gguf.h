// GGUF v2/v3: reader (mmap, zero-copy tensor views, every metadata value type including nested
// arrays) and streaming writer. The reader validates everything ../shared/bad-inputs.md lists for
// GGUF (items 1-21, 24) with checked arithmetic before it allocates or reads, and throws
// lowbit::Error naming the file, the field and the byte offset. Dimensions are in GGUF order:
// ne[0] is the innermost (row length, the quantization axis).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/format.h"
#include "lowbit/mapped_file.h"
#include "lowbit/output_file.h"

namespace lowbit {

enum class GgufType : uint32_t {
  kU8 = 0, kI8 = 1, kU16 = 2, kI16 = 3, kU32 = 4, kI32 = 5, kF32 = 6, kBool = 7,
  kString = 8, kArray = 9, kU64 = 10, kI64 = 11, kF64 = 12,
};
std::string_view gguf_type_name(GgufType t);

// One metadata value. Scalars keep their declared type; integers are held in i or u by
// signedness, floats in f. Arrays hold elements of one type (elem_type), possibly arrays.
struct GgufValue {
  GgufType type = GgufType::kU32;
  GgufType elem_type = GgufType::kU8;  // arrays only
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  bool b = false;
  std::string s;
  std::vector<GgufValue> arr;

  static GgufValue u32(uint32_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue str(std::string v);
  static GgufValue str_array(const std::vector<std::string>& v);
  static GgufValue f32_array(const std::vector<float>& v);
  static GgufValue i32_array(const std::vector<int32_t>& v);
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> ne;  // GGUF order, ne[0] innermost
  uint32_t type_id = 0;
  Format format;
  uint64_t offset = 0;      // relative to the data section
  uint64_t bytes = 0;
  const uint8_t* data = nullptr;
  int64_t info_offset = 0;  // where the tensor info starts in the file (for messages)
  int64_t elements() const;
};

class GgufFile {
 public:
  explicit GgufFile(const std::string& path);

  const std::string& path() const { return file_.path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  uint64_t file_size() const { return file_.size(); }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* find_tensor(std::string_view name) const;
  const GgufValue* find(std::string_view key) const;

  // Typed getters: check the stored type (integers: any integer type whose value fits) and
  // throw Error naming key and offset on a mismatch or a missing required key.
  bool has(std::string_view key) const { return find(key) != nullptr; }
  uint64_t get_uint(std::string_view key) const;
  uint64_t get_uint(std::string_view key, uint64_t fallback) const;
  double get_float(std::string_view key) const;
  double get_float(std::string_view key, double fallback) const;
  bool get_bool(std::string_view key, bool fallback) const;
  std::string get_string(std::string_view key) const;
  std::string get_string(std::string_view key, const std::string& fallback) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_f32_array(std::string_view key) const;
  std::vector<int32_t> get_i32_array(std::string_view key) const;
  int64_t key_offset(std::string_view key) const;

 private:
  [[noreturn]] void type_error(std::string_view key, const char* expected) const;
  MappedFile file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<int64_t> kv_offsets_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

// Streaming writer: metadata and tensor infos first, then each tensor's data produced by its
// callback one at a time (never the whole model in memory), aligned, into an OutputFile.
class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32) : alignment_(alignment) {}
  void set(const std::string& key, GgufValue v);  // replaces an existing key in place
  void add_tensor(std::string name, std::vector<int64_t> ne, Format format,
                  std::function<void(OutputFile&)> write_data);
  // Bytes of the header (magic, metadata, tensor infos) as write() would emit it, before the
  // alignment padding of the data section.
  uint64_t header_bytes() const;
  // Writes and commits; the callbacks must write exactly the tensor's byte size.
  void write(const std::string& path, const std::vector<std::string>& inputs = {},
             const std::function<void(size_t done, size_t total)>& progress = {}) const;

 private:
  struct PendingTensor {
    std::string name;
    std::vector<int64_t> ne;
    Format format;
    uint64_t bytes;
    std::function<void(OutputFile&)> write_data;
  };
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<PendingTensor> tensors_;
};

// Bytes of a tensor of shape ne (GGUF order) in format f; throws on overflow or untileable rows.
uint64_t gguf_tensor_bytes(const Format& f, const std::vector<int64_t>& ne,
                           const ErrorContext& ctx);

inline constexpr uint32_t kGgufMaxDims = 4;
inline constexpr uint64_t kGgufMaxNameBytes = 63;       // ggml's GGML_MAX_NAME - 1
inline constexpr uint64_t kGgufMaxAlignment = 1 << 20;  // 1 MiB
inline constexpr int kGgufMaxArrayDepth = 2;             // arrays of arrays, no deeper

}  // namespace lowbit
