// OpenMP threading helpers. parallel_for splits [0, n) into contiguous chunks over the threads;
// exceptions thrown by the body are captured and the first one is rethrown on the caller's thread
// (an exception must never escape an OpenMP region).
#pragma once

#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>

namespace lowbit {

int max_threads();                // threads lowbit will use (OMP_NUM_THREADS or cores)
void set_threads(int n);          // n <= 0 restores the default
int thread_index();               // 0..max_threads()-1 inside a parallel region, else 0

// Calls body(begin, end) on disjoint chunks covering [0, n), chunk length >= min_chunk.
void parallel_for(int64_t n, int64_t min_chunk,
                  const std::function<void(int64_t begin, int64_t end)>& body);
// The same, with chunks of `chunk` handed to whichever thread is free (for long compute-bound
// loops on a shared machine, where one core can run slower than the other). Threads only when
// there are at least two chunks.
void parallel_for_dynamic(int64_t n, int64_t chunk,
                          const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace lowbit
