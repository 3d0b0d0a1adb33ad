// OpenBLAS (the pthread build Debian ships) runs its own thread pool beside OpenMP's. Code that
// already splits its work over OpenMP threads calls BLAS with one thread inside: otherwise the two
// pools oversubscribe the cores and OpenBLAS's idle threads spin in sched_yield between calls.
#pragma once

#include <cblas.h>

namespace lowbit {

// One BLAS thread for the guard's lifetime; the caller's setting back afterwards. Where the
// setting is 1 already (an outer guard) it is only read, so threads inside such a guard can each
// hold one.
class SingleBlasThread {
 public:
  SingleBlasThread() : saved_(openblas_get_num_threads()) {
    if (saved_ != 1) openblas_set_num_threads(1);
  }
  ~SingleBlasThread() {
    if (saved_ != 1) openblas_set_num_threads(saved_);
  }
  SingleBlasThread(const SingleBlasThread&) = delete;
  SingleBlasThread& operator=(const SingleBlasThread&) = delete;

 private:
  int saved_;
};

}  // namespace lowbit
