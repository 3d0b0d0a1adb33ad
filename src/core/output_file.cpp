// OutputFile: temp file + checked writes + fsync + rename.
#include "lowbit/output_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "lowbit/error.h"

namespace lowbit {

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

OutputFile::OutputFile(std::string path, const std::vector<std::string>& inputs)
    : path_(std::move(path)) {
  for (const auto& in : inputs) {
    if (in == path_ || same_file(in, path_)) {
      throw Error("the output would overwrite an input",
                  {.file = path_, .field = "output path", .expected = "a path other than the input",
                   .found = in});
    }
  }
  tmp_path_ = path_ + ".tmp-" + std::to_string(::getpid());
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (f_ == nullptr) {
    throw Error(std::string("cannot create output: ") + std::strerror(errno),
                {.file = path_, .field = "temporary file", .found = tmp_path_});
  }
}

OutputFile::~OutputFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void OutputFile::write(const void* data, uint64_t bytes) {
  if (bytes == 0) return;
  if (std::fwrite(data, 1, bytes, f_) != bytes) {
    throw Error(std::string("write failed: ") + std::strerror(errno),
                {.file = path_, .offset = int64_t(offset_)});
  }
  offset_ += bytes;
}

void OutputFile::write_zeros(uint64_t bytes) {
  static const char kZeros[4096] = {};
  while (bytes > 0) {
    const uint64_t n = bytes < sizeof kZeros ? bytes : sizeof kZeros;
    write(kZeros, n);
    bytes -= n;
  }
}

void OutputFile::commit() {
  if (std::fflush(f_) != 0 || ::fsync(::fileno(f_)) != 0) {
    throw Error(std::string("flush failed: ") + std::strerror(errno), {.file = path_});
  }
  const int rc = std::fclose(f_);
  f_ = nullptr;
  if (rc != 0) throw Error(std::string("close failed: ") + std::strerror(errno), {.file = path_});
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    throw Error(std::string("cannot rename into place: ") + std::strerror(errno), {.file = path_});
  }
  committed_ = true;
}

}  // namespace lowbit
