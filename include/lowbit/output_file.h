// Writing an output file safely: data goes to a temporary file beside the target, every write
// and the close are checked, and only commit() renames it into place. An interrupted or failed
// run (exception, disk full, kill) leaves no file that looks complete; the destructor removes the
// temporary. The target may not be any of the inputs (same path or a link to the same file).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace lowbit {

class OutputFile {
 public:
  // Throws Error if path names (or links to) one of inputs, or the temp file cannot be created.
  OutputFile(std::string path, const std::vector<std::string>& inputs = {});
  ~OutputFile();  // removes the temporary unless committed
  OutputFile(const OutputFile&) = delete;
  OutputFile& operator=(const OutputFile&) = delete;

  void write(const void* data, uint64_t bytes);
  void write_zeros(uint64_t bytes);
  uint64_t offset() const { return offset_; }
  const std::string& path() const { return path_; }
  // Flush, fsync, close, rename over the target. Throws Error on any failure.
  void commit();

 private:
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

// True when a and b name the same existing file (after resolving links).
bool same_file(const std::string& a, const std::string& b);

}  // namespace lowbit
