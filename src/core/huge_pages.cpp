#include "lowbit/huge_pages.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <new>

namespace lowbit {

void HugeFree::operator()(void* p) const {
  std::free(p);
}

void* huge_alloc_bytes(uint64_t bytes) {
  constexpr uint64_t kHuge = uint64_t(2) << 20;
  static const bool enabled = [] {
    const char* env = std::getenv("LOWBIT_HUGEPAGES");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  void* p = nullptr;
  if (enabled && bytes >= kHuge) {
    if (::posix_memalign(&p, kHuge, bytes) != 0) p = nullptr;
    // Advice only: where it is refused, the pages stay small.
    if (p != nullptr) ::madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);
  } else {
    p = std::malloc(bytes > 0 ? bytes : 1);
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace lowbit
