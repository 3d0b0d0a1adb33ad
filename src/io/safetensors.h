// Hugging Face safetensors: u64 LE header length N, N bytes of JSON (name -> dtype, shape,
// data_offsets; optional __metadata__ of strings), then the data. The reader validates everything
// (UTF-8, duplicate keys, dtypes, checked sizes, tensors tiling the data exactly) and hands out
// zero-copy views into the mapped file (not aligned: copy with memcpy). The writer streams through
// OutputFile (temp + rename) and checks every byte count before it commits.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lowbit/mapped_file.h"
#include "lowbit/output_file.h"

namespace lowbit {

enum class StDtype {
  kF64,
  kF32,
  kF16,
  kBF16,
  kI64,
  kI32,
  kI16,
  kI8,
  kU8,
  kBool,
  kU16,
  kU32,
  kU64,
  kF8E4M3,
  kF8E5M2
};

std::string_view st_dtype_name(StDtype dtype);  // "F32", "BF16", "F8_E4M3", ...
uint64_t st_dtype_bytes(StDtype dtype);         // bytes per element
std::optional<StDtype> st_dtype_from_name(std::string_view name);

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;     // outermost first, as stored; empty for a scalar
  const uint8_t* data = nullptr;  // inside the mapped file; no alignment guaranteed
  uint64_t bytes = 0;             // elements * st_dtype_bytes(dtype)
  std::string file;               // the .safetensors file holding it
};

// One .safetensors file, mapped and validated.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  const std::string& path() const { return file_.path(); }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<StTensor>& tensors() const { return tensors_; }  // in data-offset order
  const StTensor* find(std::string_view name) const;                 // nullptr when absent
  uint64_t offset_of(const StTensor& t) const { return uint64_t(t.data - file_.data()); }

 private:
  MappedFile file_;
  std::map<std::string, std::string> metadata_;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

// A model: one .safetensors file, a model.safetensors.index.json (weight_map: tensor -> shard
// file beside it), or a directory holding either (the index wins). Every tensor the index lists
// is in the shard it names, and no tensor is stored twice or left out of the index.
class SafetensorsModel {
 public:
  explicit SafetensorsModel(const std::string& path);
  const std::vector<StTensor>& tensors() const { return tensors_; }  // shard by shard
  const StTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const;  // of the first shard
  std::vector<std::string> files() const;                      // shard paths, in order

 private:
  void load_index(const std::string& index_path);
  void add_shard(SafetensorsFile shard);
  std::vector<SafetensorsFile> shards_;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t, std::less<>> by_name_;
};

struct StWriteTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;                   // outermost first
  std::function<void(OutputFile&)> write_data;  // writes exactly elements * dtype bytes
};

// Writes `tensors` in the given order with contiguous offsets, the header padded with spaces to
// a multiple of 8. Throws Error (leaving no file at `path`) on a bad name, shape or dtype, a
// callback that throws or writes the wrong byte count, path == one of `inputs`, or an I/O error.
void write_safetensors(const std::string& path, const std::map<std::string, std::string>& metadata,
                       const std::vector<StWriteTensor>& tensors,
                       const std::vector<std::string>& inputs);

}  // namespace lowbit
