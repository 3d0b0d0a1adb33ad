// Codecs of the 32-value ggml blocks and of the single-scale 4-bit grids (Q4_0, IQ4_NL, NF4).
#include "format/legacy.h"

#include <algorithm>

namespace lowbit::formats {

namespace {

// Value index i of an N-value nibble block: byte and shift.
inline int nibble(const uint8_t* qs, int64_t half, int64_t i) {
  return i < half ? (qs[i] & 0xF) : (qs[i - half] >> 4);
}
inline void set_nibble(uint8_t* qs, int64_t half, int64_t i, int q) {
  if (i < half)
    qs[i] = uint8_t((qs[i] & 0xF0) | q);
  else
    qs[i - half] = uint8_t((qs[i - half] & 0x0F) | (q << 4));
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);  // little-endian host, as GGUF is
  return v;
}
inline void store_u32(uint8_t* p, uint32_t v) {
  std::memcpy(p, &v, 4);
}

}  // namespace

// ---- Sym4: Q4_0, IQ4_NL, NF4 ---------------------------------------------------------------

template <int64_t N, typename Grid>
void Sym4<N, Grid>::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  store_fp16(b->d, fit::fit_symmetric(x, w, n, Grid::levels(), fit::Fp16Round{}));
}

template <int64_t N, typename Grid>
float Sym4<N, Grid>::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = load_fp16(static_cast<const Block*>(blk)->d);
  const auto lv = Grid::levels();
  return d * lv.value(lv.nearest(x * inv_or_zero(d)));
}

template <int64_t N, typename Grid>
void Sym4<N, Grid>::encode(const float* x, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(load_fp16(b->d));
  const auto lv = Grid::levels();
  if (n != N) {  // a short block (rows not a multiple of N): value by value
    for (int64_t i = 0; i < n; ++i) set_nibble(b->qs, N / 2, i, Grid::code(lv.nearest(x[i] * id)));
    return;
  }
  // A whole block: the codes first (a branch-free loop; codebooks by counting, as
  // fit::codebook_value16 does, which picks nearest()'s level), then the nibbles in pairs.
  uint8_t q[N];
  for (int64_t i = 0; i < N; ++i) {
    if constexpr (fit::kUniformGrid<std::remove_cv_t<decltype(lv)>>) {
      q[i] = uint8_t(Grid::code(lv.nearest(x[i] * id)));
    } else {
      q[i] = uint8_t(Grid::code(fit::codebook_index16(lv.values.data(), x[i] * id)));
    }
  }
  for (int64_t i = 0; i < N / 2; ++i) b->qs[i] = uint8_t(q[i] | (q[i + N / 2] << 4));
}

template <int64_t N, typename Grid>
void Sym4<N, Grid>::decode(const void* blk, int64_t n, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  for (int64_t i = 0; i < n; ++i) y[i] = Grid::value_of_code(nibble(b->qs, N / 2, i)) * d;
}

template struct Sym4<32, UniformGrid4>;
template struct Sym4<32, Iq4nlGrid>;
template struct Sym4<64, Nf4Grid>;

// ---- Affine32: Q4_1, Q5_1 -------------------------------------------------------------------

template <int B>
void Affine32<B>::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  const auto a = fit::fit_affine(x, w, n, (1 << B) - 1, false, fit::Fp16Round{}, fit::Fp16Round{});
  store_fp16(b->d, a.d);
  store_fp16(b->m, a.m);
}

template <int B>
float Affine32<B>::round_value(float x, const void* blk, int64_t, int64_t) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d), m = load_fp16(b->m);
  return float(nearest_int((x - m) * inv_or_zero(d), 0, (1 << B) - 1)) * d + m;
}

template <int B>
void Affine32<B>::encode(const float* x, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(load_fp16(b->d)), m = load_fp16(b->m);
  uint32_t qh = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int q = nearest_int((x[i] - m) * id, 0, (1 << B) - 1);
    set_nibble(b->qs, 16, i, q & 0xF);
    qh |= uint32_t(q >> 4) << i;
  }
  if constexpr (B == 5) store_u32(b->qh, qh);
}

template <int B>
void Affine32<B>::decode(const void* blk, int64_t n, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d), m = load_fp16(b->m);
  uint32_t qh = 0;
  if constexpr (B == 5) qh = load_u32(b->qh);
  for (int64_t i = 0; i < n; ++i) {
    const int q = nibble(b->qs, 16, i) | int((qh >> i) & 1) << 4;
    y[i] = float(q) * d + m;
  }
}

template struct Affine32<4>;
template struct Affine32<5>;

// ---- Q5_0 -----------------------------------------------------------------------------------

void Q5_0::fit(const float* x, const float* w, int64_t n, void* blk) {
  std::memset(blk, 0, sizeof(Block));
  store_fp16(static_cast<Block*>(blk)->d,
             fit::fit_symmetric(x, w, n, fit::IntLevels{-16, 15}, fit::Fp16Round{}));
}

float Q5_0::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = load_fp16(static_cast<const Block*>(blk)->d);
  return float(nearest_int(x * inv_or_zero(d), -16, 15)) * d;
}

void Q5_0::encode(const float* x, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float id = inv_or_zero(load_fp16(b->d));
  uint32_t qh = 0;
  for (int64_t i = 0; i < n; ++i) {
    const int q = nearest_int(x[i] * id, -16, 15) + 16;
    set_nibble(b->qs, 16, i, q & 0xF);
    qh |= uint32_t(q >> 4) << i;
  }
  store_u32(b->qh, qh);
}

void Q5_0::decode(const void* blk, int64_t n, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  const uint32_t qh = load_u32(b->qh);
  for (int64_t i = 0; i < n; ++i) {
    const int q = nibble(b->qs, 16, i) | int((qh >> i) & 1) << 4;
    y[i] = float(q - 16) * d;
  }
}

// ---- Int8Block32: Q8_0 (weights: fitted scale), Q8_1 (activations: absmax scale) ------------

template <bool WithSum>
void Int8Block32<WithSum>::fit(const float* x, const float* w, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  std::memset(b, 0, sizeof(Block));
  if constexpr (WithSum) {
    // Activations are quantized on the fly: absmax, no search (as integer-dot formats expect).
    float amax = 0;
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
    store_fp16(b->d, amax / 127.0f);
    (void)w;
  } else {
    store_fp16(b->d, fit::fit_symmetric(x, w, n, fit::IntLevels{-127, 127}, fit::Fp16Round{}));
  }
}

template <bool WithSum>
float Int8Block32<WithSum>::round_value(float x, const void* blk, int64_t, int64_t) {
  const float d = load_fp16(static_cast<const Block*>(blk)->d);
  return float(nearest_int(x * inv_or_zero(d), -127, 127)) * d;
}

template <bool WithSum>
void Int8Block32<WithSum>::encode(const float* x, int64_t n, void* blk) {
  auto* b = static_cast<Block*>(blk);
  const float d = load_fp16(b->d), id = inv_or_zero(d);
  int sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    b->qs[i] = int8_t(nearest_int(x[i] * id, -127, 127));
    sum += b->qs[i];
  }
  if constexpr (WithSum) store_fp16(b->s[0], d * float(sum));
}

template <bool WithSum>
void Int8Block32<WithSum>::decode(const void* blk, int64_t n, float* y) {
  const auto* b = static_cast<const Block*>(blk);
  const float d = load_fp16(b->d);
  for (int64_t i = 0; i < n; ++i) y[i] = float(b->qs[i]) * d;
}

template struct Int8Block32<false>;
template struct Int8Block32<true>;

}  // namespace lowbit::formats
