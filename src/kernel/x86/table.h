// The kernel table of an x86 tier, derived from the format list: a format gets the tiles its
// decoder family provides (float, 32-value or 256-value), or none (generic path, with a vector
// row decoder where x86/dequant.h has one).
#pragma once

#include <type_traits>

#include "kernel/x86/dequant.h"
#include "kernel/x86/fit_grid.h"
#include "kernel/x86/gemm_float.h"
#include "kernel/x86/gemm_q256.h"
#include "kernel/x86/gemm_q32.h"
#include "kernel/x86/gemm_x8.h"
#include "kernel/x86/gemm_x8f.h"
#include "kernel/x86/gemm_x8q2.h"
#include "kernel/x86/gemm_xint.h"

namespace lowbit::kernel {
namespace {

template <typename T>
inline constexpr int kFloatKindOf = -1;
template <>
inline constexpr int kFloatKindOf<formats::F32> = int(FloatKind::kF32);
template <>
inline constexpr int kFloatKindOf<formats::F16> = int(FloatKind::kF16);
template <>
inline constexpr int kFloatKindOf<formats::BF16> = int(FloatKind::kBF16);

// Ops::Shape32 / Shape256 / ShapeF: kR x kT tiles for prompts (kRp x kTp on packed
// activations), kRv rows for one token. Ops::kX8Tokens: tokens per tile of the x8 layout.
template <typename Tiles, typename Shape>
constexpr FormatKernels tiles_kernels() {
  return {dot_tiled<Tiles>, gemm_tiled<Tiles, Shape>};
}

// The whole symmetric and affine scale searches run on the 16-lane tier (mask registers, compress);
// the 8-lane tier keeps fit_symmetric's and fit_affine's own loops over its sums.
template <typename Ops>
constexpr fit::SymSearchFn sym_search_of() {
  if constexpr (Ops::kLanes == 16)
    return sym_search_x86<Ops>;
  else
    return nullptr;
}
template <typename Ops>
constexpr fit::AffineSearchFn affine_search_of() {
  if constexpr (Ops::kLanes == 16)
    return affine_search_x86<Ops>;
  else
    return nullptr;
}

template <typename Ops>
struct X86Tier {
  // The grouped layout of x86/gemm_xint.h for format T (the repacked copy and its tiles).
  template <typename T>
  static constexpr void set_xint_layout(FormatKernels& k) {
    using X = XInt<Ops, T>;
    k.repack8 = X::repack;
    if constexpr (Ops::kX8Wide) k.repack16 = X::repack16;
    k.gemm_x8 = X::template gemm<Ops::kX8Tokens>;
    k.x8_block_bytes = uint32_t(XTraits<T>::kX8BlockBytes);
  }
  template <typename T>
  static constexpr FormatKernels make() {
    if constexpr (Dec32<T>::kHas) {
      static_assert(kActOf<T> == ActKind::kQ8x32);
      FormatKernels k = tiles_kernels<Q32Tiles<Ops, Dec32<T>>, typename Ops::Shape32>();
      if constexpr (X8Layout<T, Ops>::kHas) {
        using X8 = X8Tiles<Ops, X8Layout<T, Ops>>;
        k.repack8 = X8::repack;
        if constexpr (Ops::kX8Wide) k.repack16 = X8::repack16;
        k.gemm_x8 = X8::template gemm<Ops::kX8Tokens>;
        k.x8_block_bytes = uint32_t(X8::kGroupBytes);
      } else if constexpr (XTraits<T>::kIs) {  // Q5_0, Q4_1, Q5_1, IQ4_NL: grouped layout
        set_xint_layout<T>(k);
      }
      k.dequant = kDequantOf<T>;  // training's decoded tiles (dequantize_rows)
      return k;
    } else if constexpr (Dec256<T>::kHas) {
      static_assert(kActOf<T> == ActKind::kQ8x256);
      FormatKernels k = tiles_kernels<Q256Tiles<Ops, Dec256<T>>, typename Ops::Shape256>();
      if constexpr (std::is_same_v<T, formats::Q4_K> || std::is_same_v<T, formats::Q5_K> ||
                    std::is_same_v<T, formats::IQ4_XS> || std::is_same_v<T, formats::Q6_K>) {
        using X8 = X8Q4K<Ops, T>;
        k.repack8 = X8::repack;
        if constexpr (Ops::kX8Wide) k.repack16 = X8::repack16;
        k.gemm_x8 = X8::template gemm<Ops::kX8Tokens>;
        k.x8_block_bytes = uint32_t(X8::kGroupBytes);
      } else if constexpr (std::is_same_v<T, formats::Q2_K> || std::is_same_v<T, formats::Q3_K> ||
                           std::is_same_v<T, formats::TQ2_0> || std::is_same_v<T, formats::TQ1_0>) {
        using X8 = X8Q2<Ops, T>;
        k.repack8 = X8::repack;
        if constexpr (Ops::kX8Wide) k.repack16 = X8::repack16;
        k.gemm_x8 = X8::template gemm<Ops::kX8Tokens>;
        k.x8_block_bytes = uint32_t(X8::kGroupBytes);
      }
      k.dequant = kDequantOf<T>;  // training's decoded tiles (dequantize_rows)
      return k;
    } else if constexpr (XTraits<T>::kIs) {
      FormatKernels k{};
      k.gemm = XInt<Ops, T>::template gemm_rows<Ops::kX8Tokens>;
      k.dequant = kDequantOf<T>;
      k.gemm_in_order = true;
      set_xint_layout<T>(k);
      return k;
    } else if constexpr (kFloatKindOf<T> >= 0) {
      static_assert(kActOf<T> == ActKind::kF32);
      constexpr FloatKind kind = FloatKind(kFloatKindOf<T>);
      FormatKernels k = tiles_kernels<FloatTiles<Ops, kind>, typename Ops::ShapeF>();
      if constexpr (Ops::kX8Float) {
        using X8 = X8Float<kind>;
        k.repack8 = X8::repack;
        k.gemm_x8 = X8::gemm;
        k.x8_block_bytes = uint32_t(X8::kGroupBytes);
        k.x8_k_multiple = uint32_t(X8::kKMultiple);
      }
      return k;
    } else {
      return {nullptr, nullptr, kDequantOf<T>};
    }
  }
  template <typename T>
  struct Impl {
    static constexpr FormatKernels kKernels = make<T>();
  };

  static constexpr KernelSet kernel_set(Isa isa, const char* name) {
    using F32Tiles = FloatTiles<Ops, FloatKind::kF32>;
    using S = typename Ops::ShapeF;
    const PackFn pack = Ops::kPacked ? pack_q8_x86 : nullptr;
    return KernelSet{
        isa,
        name,
        quantize_q8x32_x86,
        quantize_q8x256_x86,
        pack,
        pack,
        gemm_tiled<F32Tiles, S>,
        make_format_table<Impl>(),
        attn_scores_x86<Ops>,
        attn_values_x86<Ops>,
        swiglu_x86<Ops>,
        softmax_x86<Ops>,
        softmax_backward_x86<Ops>,
        {grid_error_x86<Ops>, grid_lloyd_x86<Ops>, affine_error_x86<Ops>, affine_lloyd_x86<Ops>,
         codebook_error_x86<Ops>, codebook_lloyd_x86<Ops>, grid_error_batch_x86<Ops>,
         grid_lloyd_batch_x86<Ops>, codebook_error_batch_x86<Ops>, codebook_lloyd_batch_x86<Ops>,
         sym_search_of<Ops>(), affine_search_of<Ops>(), affine_error_batch_x86<Ops>,
         grid_var_batch_x86<Ops>}};
  }
};

}  // namespace
}  // namespace lowbit::kernel
