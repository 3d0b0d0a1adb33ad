// Memory for large buffers that are streamed end to end (repacked weights, the bandwidth probe):
// 2 MiB-aligned, with its whole 2 MiB pages advised for transparent huge pages (MADV_HUGEPAGE),
// so a sequential pass takes a TLB miss per 2 MiB instead of per 4 KiB. The tail past the last
// whole 2 MiB page keeps small pages, so no memory is added. On a system without transparent huge
// pages (or with them set to "never") the advice changes nothing. LOWBIT_HUGEPAGES=0 in the
// environment turns the advice off (comparisons).
#pragma once

#include <cstdint>
#include <memory>

namespace lowbit {

struct HugeFree {
  void operator()(void* p) const;
};
template <typename T>
using HugeBuffer = std::unique_ptr<T[], HugeFree>;

// Uninitialized memory for n values of T (trivial types); throws std::bad_alloc.
void* huge_alloc_bytes(uint64_t bytes);
template <typename T>
HugeBuffer<T> huge_alloc(uint64_t n) {
  return HugeBuffer<T>(static_cast<T*>(huge_alloc_bytes(n * sizeof(T))));
}

}  // namespace lowbit
