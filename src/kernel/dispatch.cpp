// Instruction-set detection and selection: CPUID (and XCR0, so that the OS saves the registers)
// decides once which tiers can run; LOWBIT_ISA=ref|avx2|avx512 picks one of them for tests and
// benchmarks. An unknown or unsupported request falls back to the best supported tier with a
// message on stderr (a typo must not stop a run, but must not go unnoticed either).
#include <cpuid.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernel/kernels.h"
#include "lowbit/error.h"

namespace lowbit {

namespace {

struct CpuFeatures {
  bool avx2 = false, avx512 = false;
};

uint64_t xcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
#ifdef LOWBIT_REF_KERNELS_ONLY
  // Built without the SIMD tiers (the fuzz build, which exercises parsers, not kernels).
  return f;
#endif
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28),
             f16c = c & (1u << 29);
  if (!osxsave || !avx) return f;
  const uint64_t xcr = xcr0();
  const bool ymm_state = (xcr & 0x6) == 0x6, zmm_state = (xcr & 0xE6) == 0xE6;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx2 = b & (1u << 5), bmi2 = b & (1u << 8), avx512f = b & (1u << 16),
             avx512dq = b & (1u << 17), avx512bw = b & (1u << 30), avx512vl = b & (1u << 31),
             vnni = c & (1u << 11), gfni = c & (1u << 8);
  const unsigned max_sub = a;
  bool bf16 = false;
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    bf16 = a & (1u << 5);
  }
  f.avx2 = ymm_state && avx2 && fma && f16c && bmi2;
  f.avx512 = f.avx2 && zmm_state && avx512f && avx512dq && avx512bw && avx512vl && vnni && bf16 &&
             gfni;  // the 2-bit GGUF tiles' code extraction (x86/gemm_x8q2.h)
  return f;
}

const CpuFeatures& features() {
  static const CpuFeatures f = detect();
  return f;
}

Isa best_isa() {
  if (features().avx512) return Isa::kAvx512;
  if (features().avx2) return Isa::kAvx2;
  return Isa::kRef;
}

Isa choose_isa() {
  const char* env = std::getenv("LOWBIT_ISA");
  if (env == nullptr || *env == '\0') return best_isa();
  for (const Isa isa : kAllIsas) {
    if (std::strcmp(env, isa_name(isa)) != 0) continue;
    if (isa_supported(isa)) return isa;
    std::fprintf(stderr, "lowbit: LOWBIT_ISA=%s is not supported by this CPU; using %s\n", env,
                 isa_name(best_isa()));
    return best_isa();
  }
  std::fprintf(stderr, "lowbit: unknown LOWBIT_ISA=%s (expected ref, avx2 or avx512); using %s\n",
               env, isa_name(best_isa()));
  return best_isa();
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kRef:
      return "ref";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
      return "avx512";
  }
  return "?";
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kRef:
      return true;
    case Isa::kAvx2:
      return features().avx2;
    case Isa::kAvx512:
      return features().avx512;
  }
  return false;
}

Isa active_isa() {
  static const Isa isa = choose_isa();
  return isa;
}

const char* kernel_isa() {
  return isa_name(active_isa());
}

namespace kernel {

const KernelSet& kernels_for(Isa isa) {
  LOWBIT_CHECK(isa_supported(isa), "kernel tier not supported by this CPU");
  switch (isa) {
    case Isa::kRef:
      return ref_kernels();
#ifndef LOWBIT_REF_KERNELS_ONLY
    case Isa::kAvx2:
      return avx2_kernels();
    case Isa::kAvx512:
      return avx512_kernels();
#else
    default:
      break;
#endif
  }
  return ref_kernels();
}

}  // namespace kernel

}  // namespace lowbit
