// The AVX-512 tier (F, BW, VL, DQ, VNNI, BF16; compiled with those flags only, see
// CMakeLists.txt). Integer dots: VNNI's vpdpbusd (u8 x s8 summed straight into int32, no 16-bit
// saturation), signed codes shifted to u8 by +128 (the tiles subtract 128 * sum(q)); K-quant
// scales applied by vpdpwssd. Float tiles on 16-lane vectors. 32 vector registers: 4 x 4 tiles
// (6 x 4 for the float formats: f32 4096x4096 x 128 on one core 71-74 -> 79-85 GFLOP/s).
// GCC 12's AVX-512 intrinsic headers self-initialize "undefined" vectors (_mm512_undefined_*),
// which -Wuninitialized reports wherever they are inlined; the headers are correct.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernel/x86/table.h"

namespace lowbit::kernel {
namespace {

struct Avx512Ops {
  using F = __m512;
  static constexpr int kLanes = 16;
  static __mmask16 mask(int n) { return __mmask16((1u << n) - 1); }
  static F zero() { return _mm512_setzero_ps(); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_partial(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F set1(float v) { return _mm512_set1_ps(v); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static float hsum(F v) { return _mm512_reduce_add_ps(v); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F exp2i(F n) {  // 2^n for integral n in [-126, 127]
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
  }
  static F min(F a, F b) { return _mm512_min_ps(a, b); }
  static F max(F a, F b) { return _mm512_max_ps(a, b); }
  static F round_even(F v) {
    return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static F select_gt(F a, F b, F v) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), v);
  }
  static F lookup16(F idx, const float* table) {
    return _mm512_permutexvar_ps(_mm512_cvttps_epi32(idx), _mm512_loadu_ps(table));
  }
  static F keep_first(F v, int n) { return _mm512_maskz_mov_ps(mask(n), v); }  // lanes >= n zeroed
  static F f16(__m256i h) { return _mm512_cvtph_ps(h); }
  static F bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static F load_f16(const uint16_t* p) {
    return f16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_bf16(const uint16_t* p) {
    return bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static F load_f16_partial(const uint16_t* p, int n) {
    return f16(_mm256_maskz_loadu_epi16(mask(n), p));
  }
  static F load_bf16_partial(const uint16_t* p, int n) {
    return bf16(_mm256_maskz_loadu_epi16(mask(n), p));
  }

  static constexpr int kSignedOffset = 128;
  static __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
  }
  static __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_epi32(acc, u, s);
  }
  static __m256i dot_signed_acc(__m256i acc, __m256i w, __m256i s) {
    return _mm256_dpbusd_epi32(acc, w, s);
  }
  static __m256i prep_signed(__m256i w) {
    return _mm256_xor_si256(w, _mm256_set1_epi8(char(0x80)));
  }
  static __m256i dot_signed(__m256i w, __m256i s) { return dot_u8s8(w, s); }
  template <bool kSigned>
  static __m256i madd_scaled(__m256i acc, __m256i w, __m256i a, __m256i sc) {
    const __m256i p = kSigned ? _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(a, w))
                              : _mm256_maddubs_epi16(w, a);
    return _mm256_dpwssd_epi32(acc, p, sc);
  }

  static constexpr bool kPacked = true;
  struct Shape32 {
    static constexpr int kR = 4, kT = 4, kRv = 1, kRp = 6, kTp = 4;
  };
  struct Shape256 {
    static constexpr int kR = 4, kT = 4, kRv = 1, kRp = 6, kTp = 4;
  };
  static constexpr int kX8Tokens = 8;     // x8 tiles: 8 code vectors + 8 accumulators
  static constexpr bool kX8Wide = true;   // 16-lane x8 integer tiles (Q4_K pairs)
  static constexpr bool kX8Float = true;  // float x8 layout (16-lane vectors)
  struct ShapeF {
    static constexpr int kR = 6, kT = 4, kRv = 1;
  };
};

constexpr KernelSet kAvx512Kernels = X86Tier<Avx512Ops>::kernel_set(Isa::kAvx512, "avx512");

}  // namespace

const KernelSet& avx512_kernels() {
  return kAvx512Kernels;
}

}  // namespace lowbit::kernel
