// Core: fp16/bf16 conversion (exhaustive), checked arithmetic, errors, mapped files, threads.
#include <gtest/gtest.h>

#include <atomic>
#include <bit>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/half.h"
#include "lowbit/huge_pages.h"
#include "lowbit/mapped_file.h"
#include "lowbit/progress.h"
#include "lowbit/threads.h"

namespace lowbit {
namespace {

uint32_t bits(float f) {
  return std::bit_cast<uint32_t>(f);
}

// Independent fp16 reference: the compiler's _Float16 conversions (IEEE, round to nearest even).
uint16_t ref_f32_to_fp16(float f) {
  const _Float16 h = static_cast<_Float16>(f);
  return std::bit_cast<uint16_t>(h);
}
float ref_fp16_to_f32(uint16_t u) {
  return static_cast<float>(std::bit_cast<_Float16>(u));
}

TEST(Half, Fp16ToF32ExhaustiveMatchesIeee) {
  for (uint32_t u = 0; u < 65536; ++u) {
    const float got = fp16_to_f32(uint16_t(u)), want = ref_fp16_to_f32(uint16_t(u));
    if (std::isnan(want)) {
      ASSERT_TRUE(std::isnan(got)) << std::hex << u;
      ASSERT_EQ(std::signbit(got), std::signbit(want)) << std::hex << u;
    } else {
      ASSERT_EQ(bits(got), bits(want)) << std::hex << u;
    }
  }
}

TEST(Half, Fp16RoundTripExhaustive) {
  for (uint32_t u = 0; u < 65536; ++u) {
    const uint16_t h = uint16_t(u);
    const uint16_t back = f32_to_fp16(fp16_to_f32(h));
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
      ASSERT_EQ(back & 0xfe00, (h & 0x8000) | 0x7e00) << std::hex << u;  // quiet NaN, same sign
    } else {
      ASSERT_EQ(back, h) << std::hex << u;
    }
  }
}

// Every pattern's neighbourhood: the value itself, the midpoints to its neighbours (ties) and
// one float ulp either side of them, compared with the IEEE conversion.
TEST(Half, F32ToFp16RoundsToNearestEvenEverywhere) {
  for (uint32_t u = 0; u < 0x7c00; ++u) {
    const float lo = fp16_to_f32(uint16_t(u)), hi = fp16_to_f32(uint16_t(u + 1));
    const float mid = lo + (hi - lo) / 2;  // exact in f32
    for (float s : {1.0f, -1.0f}) {
      for (float v : {lo, mid, std::nextafter(mid, 0.0f), std::nextafter(mid, 1e9f)}) {
        ASSERT_EQ(f32_to_fp16(s * v), ref_f32_to_fp16(s * v)) << std::hex << bits(s * v);
      }
    }
  }
  for (float v :
       {65504.0f, 65519.99f, 65520.0f, 1e10f, std::numeric_limits<float>::infinity(), 1e-10f,
        2.98e-8f, 2.9802322e-8f, 5.96e-8f, std::numeric_limits<float>::denorm_min()}) {
    EXPECT_EQ(f32_to_fp16(v), ref_f32_to_fp16(v)) << v;
    EXPECT_EQ(f32_to_fp16(-v), ref_f32_to_fp16(-v)) << v;
  }
  EXPECT_EQ(f32_to_fp16(std::nanf("")) & 0x7e00, 0x7e00);
}

// bf16 reference: pick the nearer of the two bracketing bf16 values in double, ties to even.
uint16_t ref_f32_to_bf16(float f) {
  const uint32_t x = bits(f);
  const uint16_t lo = uint16_t(x >> 16);
  if ((x & 0xffff) == 0) return lo;
  const double vlo = bf16_to_f32(lo), vhi = bf16_to_f32(uint16_t(lo + 1)), v = f;
  const double dlo = std::fabs(v - vlo), dhi = std::fabs(vhi - v);
  if (std::isinf(vhi)) return dlo < std::ldexp(1.0, 127 - 8) ? lo : uint16_t(lo + 1);
  if (dlo != dhi) return dlo < dhi ? lo : uint16_t(lo + 1);
  return (lo & 1) ? uint16_t(lo + 1) : lo;
}

TEST(Half, Bf16ExhaustivePatternsAndRounding) {
  for (uint32_t u = 0; u < 65536; ++u) {
    const uint16_t h = uint16_t(u);
    const float f = bf16_to_f32(h);
    ASSERT_EQ(bits(f), uint32_t(h) << 16);
    if (std::isnan(f)) {
      ASSERT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
      continue;
    }
    ASSERT_EQ(f32_to_bf16(f), h) << std::hex << u;
    if ((u & 0x7f80) == 0x7f80) continue;  // Inf: no finite neighbourhood above
    for (uint32_t low : {0x7fffu, 0x8000u, 0x8001u, 0x0001u, 0xffffu}) {
      const float v = std::bit_cast<float>((uint32_t(h) << 16) | low);
      ASSERT_EQ(f32_to_bf16(v), ref_f32_to_bf16(v)) << std::hex << bits(v);
    }
  }
}

TEST(Checked, ArithmeticDetectsOverflow) {
  EXPECT_EQ(checked_mul(1ull << 31, 1ull << 31), 1ull << 62);
  EXPECT_THROW(checked_mul(1ull << 32, 1ull << 32), Error);
  EXPECT_THROW(checked_add(~0ull, 1), Error);
  EXPECT_THROW(checked_sub(1, 2), Error);
  EXPECT_EQ(checked_align_up(33, 32), 64u);
  EXPECT_THROW(checked_align_up(~0ull - 3, 32), Error);
  EXPECT_EQ(ceil_div(65, 32), 3u);
  EXPECT_EQ(checked_cast<int32_t>(int64_t(-5)), -5);
  EXPECT_THROW(checked_cast<int32_t>(uint64_t(1) << 31), Error);
  EXPECT_THROW(checked_cast<uint32_t>(int64_t(-1)), Error);
}

TEST(Error, MessageNamesFileFieldOffsetExpectedFound) {
  try {
    checked_mul(1ull << 40, 1ull << 40, {.file = "m.gguf", .field = "tensor_count", .offset = 16});
    FAIL() << "no throw";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("m.gguf"), std::string::npos) << msg;
    EXPECT_NE(msg.find("tensor_count"), std::string::npos) << msg;
    EXPECT_NE(msg.find("offset 16"), std::string::npos) << msg;
    EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
    EXPECT_EQ(e.context().offset, 16);
  }
}

// The VmFlags line of the mapping of this process that holds address p ("" if none).
std::string vm_flags_at(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    char dash = 0;
    std::istringstream head(line);
    if (head >> std::hex >> lo >> dash >> hi && dash == '-') {
      inside = a >= lo && a < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

// Large buffers: 2 MiB-aligned, writable end to end, their whole 2 MiB pages advised for huge
// pages ("hg" in the kernel's VmFlags) and the tail not; small ones plain.
TEST(HugePages, LargeBuffersAreAlignedAndAdvised) {
  constexpr uint64_t kHuge = uint64_t(2) << 20;
  const uint64_t n = 2 * kHuge + 12345;
  HugeBuffer<uint8_t> b = huge_alloc<uint8_t>(n);
  ASSERT_NE(b.get(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b.get()) % kHuge, 0u);
  for (uint64_t i = 0; i < n; i += 4096) b[i] = uint8_t(i >> 12);
  b[n - 1] = 7;
  EXPECT_EQ(b[n - 1], 7);
  if (!std::ifstream("/sys/kernel/mm/transparent_hugepage/enabled")) {
    GTEST_SKIP() << "this kernel has no transparent huge pages";
  }
  const std::string flags = vm_flags_at(b.get());
  ASSERT_FALSE(flags.empty()) << "no mapping found in /proc/self/smaps";
  EXPECT_NE(flags.find(" hg"), std::string::npos) << flags;
  EXPECT_EQ(vm_flags_at(b.get() + n - 1).find(" hg"), std::string::npos);
  HugeBuffer<float> small = huge_alloc<float>(10);
  ASSERT_NE(small.get(), nullptr);
  small[9] = 1.5f;
  EXPECT_EQ(small[9], 1.5f);
}

TEST(MappedFile, MapsContentsEmptyFilesAndRejectsMissing) {
  const std::string path = ::testing::TempDir() + "/lowbit_mapped.bin";
  { std::ofstream(path, std::ios::binary) << "hello"; }
  MappedFile f(path);
  ASSERT_EQ(f.size(), 5u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(f.data()), 5), "hello");
  MappedFile moved(std::move(f));
  EXPECT_EQ(moved.size(), 5u);
  { std::ofstream(path, std::ios::binary | std::ios::trunc); }
  MappedFile empty(path);
  EXPECT_EQ(empty.size(), 0u);
  std::remove(path.c_str());
  EXPECT_THROW(MappedFile{path}, Error);
  EXPECT_THROW(MappedFile{::testing::TempDir()}, Error);  // a directory
}

TEST(Threads, ParallelForCoversRangeOnceAndRethrows) {
  set_threads(2);  // the suite runs with OMP_NUM_THREADS=1 (see tests/CMakeLists.txt)
  EXPECT_EQ(max_threads(), 2);
  for (int64_t n : {0, 1, 7, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    parallel_for(n, 3, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << n << " " << i;
  }
  EXPECT_THROW(parallel_for(1000, 1,
                            [](int64_t b, int64_t) {
                              if (b > 0) throw Error("worker failed");
                            }),
               Error);
  set_threads(0);
}

TEST(Threads, ParallelForDynamicCoversRangeOnceInChunksAndRethrows) {
  set_threads(2);
  for (int64_t n : {0, 1, 7, 1000, 100003}) {
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
    std::atomic<int> bad_chunks{0};
    parallel_for_dynamic(n, 64, [&](int64_t b, int64_t e) {
      if (b % 64 != 0 || (e - b != 64 && e != n)) bad_chunks++;
      for (int64_t i = b; i < e; ++i) hits[size_t(i)]++;
    });
    EXPECT_EQ(bad_chunks.load(), 0) << n;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[size_t(i)].load(), 1) << n << " " << i;
  }
  EXPECT_THROW(parallel_for_dynamic(1000, 10,
                                    [](int64_t b, int64_t) {
                                      if (b == 500) throw Error("worker failed");
                                    }),
               Error);
  set_threads(0);
}

TEST(Progress, SilentWhenStderrIsNotATerminal) {
  ::testing::internal::CaptureStderr();
  {
    Progress p("quantize", 10);
    for (int i = 0; i < 10; ++i) p.advance();
  }
  EXPECT_EQ(::testing::internal::GetCapturedStderr(), "");  // ctest pipes stderr
}

}  // namespace
}  // namespace lowbit
