// Progress bar: "label [#####.....]  42% 1.2s elapsed, ETA 3.4s".
#include "lowbit/progress.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace lowbit {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total > 0 ? total : 1),
      enabled_(::isatty(STDERR_FILENO) == 1 && std::getenv("LOWBIT_NO_PROGRESS") == nullptr),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

Progress::~Progress() { finish(); }

void Progress::advance(int64_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  done_ += n;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < std::chrono::milliseconds(100) && done_ < total_) return;
  last_ = now;
  draw(false);
}

void Progress::finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return;
  finished_ = true;
  if (enabled_ && drawn_) {
    draw(true);
    std::fputc('\n', stderr);
  }
}

void Progress::draw(bool final) {
  constexpr int kWidth = 30;
  const double frac = final ? 1.0 : double(done_ < total_ ? done_ : total_) / double(total_);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  char bar[kWidth + 1];
  for (int i = 0; i < kWidth; ++i) bar[i] = i < int(frac * kWidth) ? '#' : '.';
  bar[kWidth] = 0;
  const double eta = frac > 0 ? secs * (1 - frac) / frac : 0;
  std::fprintf(stderr, "\r%s [%s] %3d%% %.1fs elapsed, ETA %.1fs ", label_.c_str(), bar,
               int(frac * 100), secs, eta);
  std::fflush(stderr);
  drawn_ = true;
}

}  // namespace lowbit
