// A progress bar on stderr, drawn only when stderr is a terminal (never in logs or pipes).
// Thread-safe: advance() may be called from worker threads; redraws are rate-limited.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace lowbit {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  ~Progress();  // finishes the line if anything was drawn
  void advance(int64_t n = 1);
  void finish();
  bool enabled() const { return enabled_; }

 private:
  void draw(bool final);
  std::string label_;
  int64_t total_, done_ = 0;
  bool enabled_, drawn_ = false, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_;
  std::mutex mu_;
};

}  // namespace lowbit
