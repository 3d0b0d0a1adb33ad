// The AVX2 tier (AVX2 + FMA + F16C; compiled with those flags only, see CMakeLists.txt).
// Integer dots: maddubs (u8 x s8 -> 16-bit pairs) then madd; signed codes by the sign trick
// (|w| x sign(a, w)), so no offset. Float tiles on 8-lane vectors. 16 vector registers: 2 x 4
// tiles for prompts, 4 rows at a time for one token.
#include "kernel/x86/table.h"

namespace lowbit::kernel {
namespace {

struct Avx2Ops {
  using F = __m256;
  static constexpr int kLanes = 8;
  static F zero() { return _mm256_setzero_ps(); }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  static F load_partial(const float* p, int n) { return load_partial8(p, n); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F set1(float v) { return _mm256_set1_ps(v); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static float hsum(F v) { return hsum_ps(v); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F exp2i(F n) {  // 2^n for integral n in [-126, 127]
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
  }
  static F min(F a, F b) { return _mm256_min_ps(a, b); }
  static F max(F a, F b) { return _mm256_max_ps(a, b); }
  static F round_even(F v) {
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  }
  static F select_gt(F a, F b, F v) { return _mm256_and_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ), v); }
  static F lookup16(F idx, const float* table) {
    const __m256i i = _mm256_cvttps_epi32(idx);
    const F lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table), i);
    const F hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(table + 8), i);  // uses i mod 8
    return _mm256_blendv_ps(lo, hi,
                            _mm256_castsi256_ps(_mm256_cmpgt_epi32(i, _mm256_set1_epi32(7))));
  }
  static F keep_first(F v, int n) {  // lanes >= n zeroed
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane)));
  }
  static F load_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static F load_bf16(const uint16_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static F load_f16_partial(const uint16_t* p, int n) {
    alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    __builtin_memcpy(t, p, size_t(n) * 2);
    return load_f16(t);
  }
  static F load_bf16_partial(const uint16_t* p, int n) {
    alignas(16) uint16_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    __builtin_memcpy(t, p, size_t(n) * 2);
    return load_bf16(t);
  }

  static constexpr int kSignedOffset = 0;
  static __m256i dot_u8s8(__m256i u, __m256i s) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
  }
  static __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, dot_u8s8(u, s));
  }
  static __m256i prep_signed(__m256i w) { return w; }
  static __m256i dot_signed(__m256i w, __m256i s) {
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(s, w));
  }
  static __m256i dot_signed_acc(__m256i acc, __m256i w, __m256i s) {
    return _mm256_add_epi32(acc, dot_signed(w, s));
  }
  template <bool kSigned>
  static __m256i madd_scaled(__m256i acc, __m256i w, __m256i a, __m256i sc) {
    const __m256i p = kSigned ? _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w))
                              : _mm256_maddubs_epi16(w, a);
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, sc));
  }

  static constexpr bool kPacked = true;
  struct Shape32 {
    static constexpr int kR = 2, kT = 4, kRv = 1, kRp = 2, kTp = 4;
  };
  struct Shape256 {
    static constexpr int kR = 2, kT = 4, kRv = 1, kRp = 2, kTp = 4;
  };
  static constexpr int kX8Tokens = 4;      // x8 tiles: 8 code vectors + 4 accumulators
  static constexpr bool kX8Wide = false;   // 16-lane x8 integer tiles (Q4_K pairs)
  static constexpr bool kX8Float = false;  // float x8 layout (16-lane vectors)
  struct ShapeF {
    static constexpr int kR = 2, kT = 4, kRv = 1;
  };
};

constexpr KernelSet kAvx2Kernels = X86Tier<Avx2Ops>::kernel_set(Isa::kAvx2, "avx2");

}  // namespace

const KernelSet& avx2_kernels() {
  return kAvx2Kernels;
}

}  // namespace lowbit::kernel
