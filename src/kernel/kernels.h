// The kernel table: for every format of formats.h, which activation type its dot product consumes
// and, per instruction set, the kernels that compute it. Internal to src/kernel (and its tests).
// Invariant: kernels of one format compute the same sums as the ref tier (src/kernel/ref/), up to
// float summation order; activation quantizers are bit-exact across tiers.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

#include "format/fit.h"
#include "format/formats.h"
#include "kernel/matmul.h"

namespace lowbit::kernel {

// What a weight format is dotted with. The integer types hold the same values as the codecs'
// activation blocks, stored as structure-of-arrays so that SIMD loads of 32 values are contiguous:
//   kQ8x32  = Q8_1 (and Q8_0) blocks of 32: d = fp16(absmax / 127), q = round(x / d) in
//             -127..127 (round half to even), plus s = d * sum(q) in f32 (Q8_1 stores it in fp16)
//             and the integer sum(q) per block
//   kQ8x256 = Q8_K blocks of 256: d = x_absmax_first / -127 (f32), q as above, bsums per 16
enum class ActKind : uint8_t {
  kNone,    // no kernel: the generic path dequantizes rows and dots them with f32 activations
  kF32,     // f32 activations (float weight formats)
  kQ8x32,   // 32-blocks of int8 (ggml's 32-value formats)
  kQ8x256,  // 256-blocks of int8 (K-quants, IQ4_XS, TQ1_0, TQ2_0)
};

// Which activation each format uses: the one table row per format (default: generic path).
template <typename T>
inline constexpr ActKind kActOf = ActKind::kNone;
// clang-format off
template <> inline constexpr ActKind kActOf<formats::F32> = ActKind::kF32;
template <> inline constexpr ActKind kActOf<formats::F16> = ActKind::kF32;
template <> inline constexpr ActKind kActOf<formats::BF16> = ActKind::kF32;
template <> inline constexpr ActKind kActOf<formats::Q8_0> = ActKind::kQ8x32;
template <> inline constexpr ActKind kActOf<formats::Q4_0> = ActKind::kQ8x32;
template <> inline constexpr ActKind kActOf<formats::Q4_1> = ActKind::kQ8x32;
template <> inline constexpr ActKind kActOf<formats::Q5_0> = ActKind::kQ8x32;
template <> inline constexpr ActKind kActOf<formats::Q5_1> = ActKind::kQ8x32;
template <> inline constexpr ActKind kActOf<formats::IQ4_NL> = ActKind::kQ8x32;
template <> inline constexpr ActKind kActOf<formats::Q2_K> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::Q3_K> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::Q4_K> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::Q5_K> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::Q6_K> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::IQ4_XS> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::TQ2_0> = ActKind::kQ8x256;
template <> inline constexpr ActKind kActOf<formats::TQ1_0> = ActKind::kQ8x256;
// clang-format on
// Grouped intN (int2..int8, with or without zero point): 32-blocks of int8, where every group
// of the row is a whole number of 32-blocks (kernel_applies); other rows take the generic path.
#define LOWBIT_INT_ACT(T) \
  template <>             \
  inline constexpr ActKind kActOf<formats::T> = ActKind::kQ8x32;
LOWBIT_INT_ACT(Int8)
LOWBIT_INT_ACT(Int6)
LOWBIT_INT_ACT(Int6Asym)
LOWBIT_INT_ACT(Int5)
LOWBIT_INT_ACT(Int5Asym)
LOWBIT_INT_ACT(Int4)
LOWBIT_INT_ACT(Int4Asym)
LOWBIT_INT_ACT(Int3)
LOWBIT_INT_ACT(Int3Asym)
LOWBIT_INT_ACT(Int2)
LOWBIT_INT_ACT(Int2Asym)
LOWBIT_INT_ACT(Tern)
#undef LOWBIT_INT_ACT
template <>
inline constexpr ActKind kActOf<formats::NF4> = ActKind::kQ8x32;
template <>
inline constexpr ActKind kActOf<formats::NF4_DQ> = ActKind::kQ8x32;
template <>
inline constexpr ActKind kActOf<formats::BIN1> = ActKind::kQ8x32;

// NF4 on the integer kernels: its codebook in units of 1/kNf4IntScale of the block scale,
// rounded to nearest (|error| <= 1/65024 of the scale, far below the activations' 8-bit
// rounding). 127 * 256: each value splits into two int8 digits, value = 256 * hi + lo with
// lo in -128..127, hi in -127..127, so the x86 tiers dot it as two byte planes.
inline constexpr int32_t kNf4IntScale = 127 * 256;
constexpr std::array<int32_t, 16> nf4_int_codebook() {
  std::array<int32_t, 16> c{};
  for (size_t i = 0; i < 16; ++i) {
    const double v = double(formats::kNf4Values[i]) * kNf4IntScale;
    c[i] = int32_t(v >= 0 ? v + 0.5 : v - 0.5);
  }
  return c;
}
inline constexpr std::array<int32_t, 16> kNf4Int = nf4_int_codebook();

// The grouped int format T as IntN<B, Asym> (kIs false for every other format).
template <typename T>
struct IntTraits {
  static constexpr bool kIs = false;
};
template <typename T>
requires std::is_base_of_v<formats::IntN<T::kBits, T::kAsym>, T>
struct IntTraits<T> {
  static constexpr bool kIs = true;
  static constexpr int kBits = T::kBits;
  static constexpr bool kAsym = T::kAsym;
  static constexpr int64_t kHeadBytes = kAsym ? 3 : 2;  // fp16 scale (+ u8 zero) per group
  // Bytes of a row of K values in groups of G (both multiples of 32).
  static uint64_t row_bytes(int64_t K, int64_t G) {
    return uint64_t((K + G - 1) / G * kHeadBytes + K * kBits / 8);
  }
};

inline constexpr int64_t kQ8x32Block = 32, kQ8x256Block = 256;

// Quantized (or plain) activations of n tokens, each a row of K values.
struct Acts {
  ActKind kind = ActKind::kNone;
  int64_t n = 0, K = 0;
  const float* f32 = nullptr;      // (n, K)              kF32
  const int8_t* qs = nullptr;      // (n, K)              kQ8x32, kQ8x256
  const float* d = nullptr;        // (n, K / block)      kQ8x32, kQ8x256
  const float* s = nullptr;        // (n, K / 32)         kQ8x32: d * sum(q), f32
  const int16_t* bsums = nullptr;  // (n, K / 32) sums of each block's q (kQ8x32), or
                                   // (n, K / 16) sums of each 16 q (kQ8x256)
  // qs in the tier's packed layout (KernelSet::pack_q8), else in order. Scales never move.
  bool packed = false;
  // The weights' group length for grouped formats (Format::block_elems(K), a multiple of 32);
  // set by the caller, ignored by the kernels of fixed-block formats.
  int64_t wgroup = 0;

  int64_t block() const { return kind == ActKind::kQ8x256 ? kQ8x256Block : kQ8x32Block; }
  int64_t bsum_elems() const { return kind == ActKind::kQ8x256 ? 16 : 32; }  // values per bsum
  // The same view starting at token t0 (n - t0 tokens).
  Acts from(int64_t t0) const;
};

// One quantized row: x (K) -> qs (K), d (K/block), bsums (K/32 or K/16), s (K/32, kQ8x32 only).
// K % block == 0.
using QuantizeFn = void (*)(const float* x, int64_t K, int8_t* qs, float* d, float* s_or_null,
                            int16_t* bsums_or_null);
// Rearranges one token's qs (K) in place into a tier's layout for multi-token tiles.
using PackFn = void (*)(int8_t* qs, int64_t K);

// y[t * ldy + r] = dot(row r of w, token t of a) for r < rows, t < a.n. w: rows of row_bytes.
using GemmFn = void (*)(const uint8_t* w, uint64_t row_bytes, int64_t rows, const Acts& a, float* y,
                        int64_t ldy);
// One dot product: weight row (K values) with token t of a.
using VecDotFn = float (*)(const uint8_t* w, const Acts& a, int64_t t);
// A row of K values (blocks or groups of `group` values) to floats, bit-exact to the codec.
using DequantFn = void (*)(const uint8_t* row, int64_t K, int64_t group, float* y);

// Load-time layout of 8 interleaved rows (a tier's own, e.g. x86/gemm_x8.h): rows [0, 8) of w
// (row_bytes each, K values) rearranged into 8 * row_bytes bytes at out.
// group: the weights' group length (grouped formats; 0 for the others).
using RepackFn = void (*)(const uint8_t* w, uint64_t row_bytes, int64_t K, int64_t group,
                          uint8_t* out);
// `groups` consecutive repacked groups times the tokens of a (activations in order, never
// packed): y[t * ldy + 8 * g + r] for row r of group g. Where the format has repack16, packed
// starts on a pair, and every pair but an odd last group is in repack16's layout.
using GemmX8Fn = void (*)(const uint8_t* packed, int64_t groups, const Acts& a, float* y,
                          int64_t ldy);

// out[t] = scale * sum_i q[i] * k[t * stride + i] for t < T, i < D.
using AttnScoresFn = void (*)(const float* q, const float* k, int64_t stride, int64_t T, int64_t D,
                              float scale, float* out);
// out[i] = sum_t p[t] * v[t * stride + i] for i < D (out overwritten).
using AttnValuesFn = void (*)(const float* p, const float* v, int64_t stride, int64_t T, int64_t D,
                              float* out);

struct FormatKernels {
  VecDotFn dot = nullptr;  // nullptr: this tier has no kernel of the format (use ref / generic)
  GemmFn gemm = nullptr;
  DequantFn dequant = nullptr;  // a fast row decoder (nullptr: the codec's): the generic path, and
                                // training's decoded tiles (dequantize_rows)
  RepackFn repack8 = nullptr;   // nullptr: no repacked layout (all three set or none)
  // Optional: rows [0, 16) as a pair of groups in one layout (16 * row_bytes bytes). Set, the
  // first 16 * (M / 16) rows are repacked in pairs with it (the gemm_x8 reads them so).
  RepackFn repack16 = nullptr;
  GemmX8Fn gemm_x8 = nullptr;
  uint32_t x8_block_bytes = 0;  // repacked bytes per block index (8 rows' blocks); 0: the
                                // layout takes exactly 8 * row_bytes (grouped ints, NF4)
  uint32_t x8_k_multiple = 1;   // rows of other lengths keep the file layout
  bool gemm_in_order = false;   // gemm reads the activations in order (never packed)
};

inline constexpr size_t kFormatCount = size_t(FormatId::kCount);

struct KernelSet {
  Isa isa;
  const char* name;
  QuantizeFn quantize_q8x32;
  QuantizeFn quantize_q8x256;
  // Applied to the quantized activations of calls with N > 1 (nullptr: in order).
  PackFn pack_q8x32;
  PackFn pack_q8x256;
  // The generic path's float gemm: rows of K f32 values with f32 activations.
  GemmFn gemm_f32;
  std::array<FormatKernels, kFormatCount> formats;
  // The engine's attention for one query and head (matmul.h: attention_scores / _values).
  AttnScoresFn attn_scores = nullptr;
  AttnValuesFn attn_values = nullptr;
  // The feed-forward gate in place: g[i] = silu(g[i]) * u[i] (matmul.h: swiglu).
  void (*swiglu)(float* g, const float* u, int64_t n) = nullptr;
  // Attention weights in place: s[i] = e^(s[i] - max) / sum (matmul.h: softmax).
  void (*softmax)(float* s, int64_t n) = nullptr;
  // Its backward in place: d[i] = p[i] (d[i] - sum_j p[j] d[j]) (matmul.h: softmax_backward).
  void (*softmax_backward)(const float* p, float* d, int64_t n) = nullptr;
  // The quantizers' scale search on uniform integer grids (format/fit.h): the same bits on
  // every tier.
  fit::GridKernels grid = {};
};

const KernelSet& ref_kernels();
const KernelSet& avx2_kernels();    // only call when isa_supported(Isa::kAvx2)
const KernelSet& avx512_kernels();  // only call when isa_supported(Isa::kAvx512)
const KernelSet& kernels_for(Isa isa);

// The reference float dot (8 interleaved lanes, then the lanes in order): matmul_ref's dot.
float dot_f32_ref(const float* a, const float* b, int64_t K);

// Index of a format in the list (== FormatId).
size_t format_index(const Format& f);
ActKind act_kind(const Format& f);
// Whether the format's kernels (act_kind's activations) serve rows of K: always for fixed-block
// formats with an activation type; grouped ints only when K and the group are multiples of 32.
bool kernel_applies(const Format& f, int64_t K);

// Table construction: one entry per format of the list, Impl<T>::kKernels (a tier's primary
// template gives {} = no kernel, its specializations give the kernels it implements).
template <template <typename> class Impl>
constexpr std::array<FormatKernels, kFormatCount> make_format_table() {
  return {{
#define LOWBIT_X(T) Impl<formats::T>::kKernels,
      LOWBIT_FORMAT_LIST(LOWBIT_X)
#undef LOWBIT_X
  }};
}

}  // namespace lowbit::kernel
