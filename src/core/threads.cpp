// OpenMP-backed implementation of threads.h.
#include "lowbit/threads.h"

#include <omp.h>

#include <algorithm>

namespace lowbit {

int max_threads() {
  return omp_get_max_threads();
}

// Inside a parallel region the setting is the calling thread's own, for the region's lifetime.
void set_threads(int n) {
  static const int default_threads = omp_get_max_threads();  // thread-safe, on the first call
  omp_set_num_threads(n > 0 ? n : default_threads);
}

int thread_index() {
  return omp_get_thread_num();
}

namespace {

// Runs bodies inside an OpenMP region, keeping the first exception for the caller's thread (one
// must never escape the region).
class FirstException {
 public:
  template <typename F>
  void run(F&& f) {
    try {
      f();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!first_) first_ = std::current_exception();
    }
  }
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::exception_ptr first_;
  std::mutex mu_;
};

}  // namespace

void parallel_for(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t max_chunks = (n + min_chunk - 1) / min_chunk;
  const int threads = int(std::min<int64_t>(max_threads(), max_chunks));
  if (threads <= 1) {
    body(0, n);
    return;
  }
  FirstException errors;
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    if (begin < end) errors.run([&] { body(begin, end); });
  }
  errors.rethrow();
}

void parallel_for_dynamic(int64_t n, int64_t chunk,
                          const std::function<void(int64_t begin, int64_t end)>& body) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(1, chunk);
  const int64_t chunks = (n + chunk - 1) / chunk;
  const int threads = int(std::min<int64_t>(max_threads(), chunks));
  if (threads <= 1) {
    body(0, n);
    return;
  }
  FirstException errors;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c)
    errors.run([&] { body(c * chunk, std::min(n, (c + 1) * chunk)); });
  errors.rethrow();
}

}  // namespace lowbit
