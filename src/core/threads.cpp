// OpenMP-backed implementation of threads.h.
#include "lowbit/threads.h"

#include <omp.h>

#include <algorithm>

namespace lowbit {

namespace {
int g_default_threads = 0;
}

int max_threads() { return omp_get_max_threads(); }

void set_threads(int n) {
  if (g_default_threads == 0) g_default_threads = omp_get_max_threads();
  omp_set_num_threads(n > 0 ? n : g_default_threads);
}

int thread_index() { return omp_get_thread_num(); }

void parallel_for(int64_t n, int64_t min_chunk,
                  const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  min_chunk = std::max<int64_t>(1, min_chunk);
  const int64_t max_chunks = (n + min_chunk - 1) / min_chunk;
  const int threads = int(std::min<int64_t>(max_threads(), max_chunks));
  if (threads <= 1) {
    body(0, n);
    return;
  }
  std::exception_ptr first;
  std::mutex mu;
#pragma omp parallel num_threads(threads)
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    const int64_t begin = n * t / nt, end = n * (t + 1) / nt;
    try {
      if (begin < end) body(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
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
  std::exception_ptr first;
  std::mutex mu;
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1)
  for (int64_t c = 0; c < chunks; ++c) {
    try {
      body(c * chunk, std::min(n, (c + 1) * chunk));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!first) first = std::current_exception();
    }
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace lowbit
