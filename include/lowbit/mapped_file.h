// A read-only memory-mapped file. Empty files are valid (size 0, data nullptr); every failure
// to open or map throws lowbit::Error naming the path and the OS's reason.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace lowbit {

class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& o) noexcept;
  MappedFile& operator=(MappedFile&& o) noexcept;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  void release();
  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// Drops the resident pages wholly inside [p, p + bytes) of a read-only file mapping, so that
// streaming through a large mapped file keeps resident memory bounded; the pages are read from
// the file again if touched later. Only for memory that comes from a MappedFile.
void release_mapped_pages(const void* p, uint64_t bytes);

}  // namespace lowbit
