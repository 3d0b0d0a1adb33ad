// The scalar reference tier: the spec every optimized kernel is tested against.
//   Activations: see ActKind in kernel/kernels.h (bit-exact to the Q8_1 / Q8_K codecs).
//   32-value formats, value w = dw * v (+ m for Q4_1/Q5_1), v the block's signed integer value:
//     dot = sum over blocks b, in order, of (dw_b * da_b) * S_b [+ m_b * s_b],  S_b = sum v * q
//   256-value formats, w = d * sc_j * v - dmin * mn_j over 16-groups j (kernel/block_scales.h):
//     dot = sum over super-blocks of (d * da) * sum_j sc_j * S_j - (dmin * da) * sum_j mn_j *
//     bsum_j
//   Grouped intN (groups of G values, G and K multiples of 32), w = dw_g * (q - z_g):
//     dot = sum over groups g, in order, of dw_g * (sum over its 32-blocks b, in order, of
//     da_b * I_b),  I_b = sum (q - z_g) * q_a  (z_g = 2^(B-1) for the symmetric variants)
//   NF4 (blocks of 64, w = dw * kNf4Values[q]) through its integer codebook kNf4Int:
//     dot = (sum over blocks g of dw_g * (da_b0 * I_b0 + da_b1 * I_b1)) / kNf4IntScale,
//     I_b = sum kNf4Int[q] * q_a over the 32-block b
//   NF4_DQ: as NF4 with each sub-block of 64 scaled by dw = d * sc_j (exact in float).
//   BIN1 (blocks of 64, w = d * (2q - 1)): sum over blocks of d * (sum of da_b * I_b),
//     I_b = sum (2q - 1) * q_a
//   Float formats: the row decoded, dotted in 8 interleaved lanes (dot_f32_ref).
// Integer sums are exact (int32); only the float accumulation order differs between tiers.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernel/block_scales.h"
#include "kernel/kernels.h"
#include "kernel/ref/grid_ref.h"
#include "lowbit/half.h"

namespace lowbit::kernel {

float dot_f32_ref(const float* a, const float* b, int64_t K) {
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    for (int j = 0; j < 8; ++j) lane[j] += a[k + j] * b[k + j];
  }
  for (int j = 0; k < K; ++k, ++j) lane[j] += a[k] * b[k];
  float s = 0;
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

namespace {

// Attention: each score the reference dot; the values summed from zero, key by key in order.
void attn_scores_ref(const float* q, const float* k, int64_t stride, int64_t T, int64_t D,
                     float scale, float* out) {
  for (int64_t t = 0; t < T; ++t) out[t] = dot_f32_ref(q, k + t * stride, D) * scale;
}

void swiglu_ref(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void softmax_ref(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, s[i]);
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += (s[i] = std::exp(s[i] - mx));
  for (int64_t i = 0; i < n; ++i) s[i] /= sum;
}

// The sum p·d from zero in order, then each element.
void softmax_backward_ref(const float* p, float* d, int64_t n) {
  float pd = 0;
  for (int64_t i = 0; i < n; ++i) pd += p[i] * d[i];
  for (int64_t i = 0; i < n; ++i) d[i] = p[i] * (d[i] - pd);
}

void attn_values_ref(const float* p, const float* v, int64_t stride, int64_t T, int64_t D,
                     float* out) {
  std::fill(out, out + D, 0.0f);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t i = 0; i < D; ++i) out[i] += p[t] * v[t * stride + i];
  }
}

using namespace formats;

// ---- activation quantizers ------------------------------------------------------------------

inline int8_t round_q8(float v) {
  return int8_t(std::nearbyint(std::clamp(v, -127.0f, 127.0f)));
}

// Q8_1's absmax rule: d = fp16(amax / 127), q = round(x / d) with the stored d; sums of q.
void quantize_q8x32_ref(const float* x, int64_t K, int8_t* qs, float* d, float* s, int16_t* bsums) {
  for (int64_t b = 0; b < K / 32; ++b) {
    const float* xb = x + b * 32;
    float amax = 0;
    for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(xb[i]));
    const float db = round_fp16(amax / 127.0f), id = db != 0 ? 1.0f / db : 0.0f;
    int sum = 0;
    for (int i = 0; i < 32; ++i) sum += (qs[b * 32 + i] = round_q8(xb[i] * id));
    d[b] = db;
    s[b] = db * float(sum);
    bsums[b] = int16_t(sum);
  }
}

// Q8_K's rule: the first value of largest magnitude maps to -127, d in f32.
void quantize_q8x256_ref(const float* x, int64_t K, int8_t* qs, float* d, float*, int16_t* bsums) {
  for (int64_t b = 0; b < K / 256; ++b) {
    const float* xb = x + b * 256;
    float xm = 0;
    for (int i = 0; i < 256; ++i) {
      if (std::fabs(xb[i]) > std::fabs(xm)) xm = xb[i];
    }
    const float db = xm / -127.0f, id = db != 0 ? 1.0f / db : 0.0f;
    for (int i = 0; i < 256; ++i) qs[b * 256 + i] = round_q8(xb[i] * id);
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = 0; i < 16; ++i) sum += qs[b * 256 + j * 16 + i];
      bsums[b * 16 + j] = int16_t(sum);
    }
    d[b] = db;
  }
}

// ---- 32-value formats: signed values, scale, min ---------------------------------------------

inline int nib(const uint8_t* qs, int i) {
  return i < 16 ? (qs[i] & 0xF) : (qs[i - 16] >> 4);
}
inline int bit5(const uint8_t* qh, int i) {
  return (qh[i / 8] >> (i % 8)) & 1;
}

struct Block32 {
  int v[32];
  float dw, m;
};

template <typename T>
struct Values32;
template <>
struct Values32<Q4_0> {
  static constexpr bool kAffine = false;
  static void get(const Q4_0::Block& b, Block32& o) {
    for (int i = 0; i < 32; ++i) o.v[i] = nib(b.qs, i) - 8;
    o.dw = fp16_to_f32(b.d), o.m = 0;
  }
};
template <>
struct Values32<Q4_1> {
  static constexpr bool kAffine = true;
  static void get(const Q4_1::Block& b, Block32& o) {
    for (int i = 0; i < 32; ++i) o.v[i] = nib(b.qs, i);
    o.dw = fp16_to_f32(b.d), o.m = fp16_to_f32(b.m);
  }
};
template <>
struct Values32<Q5_0> {
  static constexpr bool kAffine = false;
  static void get(const Q5_0::Block& b, Block32& o) {
    for (int i = 0; i < 32; ++i) o.v[i] = (nib(b.qs, i) | bit5(b.qh, i) << 4) - 16;
    o.dw = fp16_to_f32(b.d), o.m = 0;
  }
};
template <>
struct Values32<Q5_1> {
  static constexpr bool kAffine = true;
  static void get(const Q5_1::Block& b, Block32& o) {
    for (int i = 0; i < 32; ++i) o.v[i] = nib(b.qs, i) | bit5(b.qh, i) << 4;
    o.dw = fp16_to_f32(b.d), o.m = fp16_to_f32(b.m);
  }
};
template <>
struct Values32<Q8_0> {
  static constexpr bool kAffine = false;
  static void get(const Q8_0::Block& b, Block32& o) {
    for (int i = 0; i < 32; ++i) o.v[i] = b.qs[i];
    o.dw = fp16_to_f32(b.d), o.m = 0;
  }
};
template <>
struct Values32<IQ4_NL> {
  static constexpr bool kAffine = false;
  static void get(const IQ4_NL::Block& b, Block32& o) {
    for (int i = 0; i < 32; ++i) o.v[i] = int(kIq4nlValues[size_t(nib(b.qs, i))]);
    o.dw = fp16_to_f32(b.d), o.m = 0;
  }
};

template <typename T>
float dot32(const uint8_t* w, const Acts& a, int64_t t) {
  using V = Values32<T>;
  const int64_t nb = a.K / 32;
  const auto* blk = reinterpret_cast<const typename T::Block*>(w);
  const int8_t* q = a.qs + t * a.K;
  const float* da = a.d + t * nb;
  const float* sa = a.s + t * nb;
  float acc = 0;
  for (int64_t b = 0; b < nb; ++b) {
    Block32 o;
    V::get(blk[b], o);
    int sum = 0;
    for (int i = 0; i < 32; ++i) sum += o.v[i] * q[b * 32 + i];
    acc += (o.dw * da[b]) * float(sum);
    if constexpr (V::kAffine) acc += o.m * sa[b];
  }
  return acc;
}

// ---- 256-value formats: signed values ---------------------------------------------------------

template <typename T>
struct Values256;
// Q2_K, TQ2_0: value e at qs[(e/128)*32 + e%32] >> 2*((e%128)/32).
inline int crumb(const uint8_t* qs, int e) {
  return (qs[(e >> 7) * 32 + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
}
template <>
struct Values256<Q2_K> {
  static void get(const Q2_K::Block& b, int* v) {
    for (int e = 0; e < 256; ++e) v[e] = crumb(b.qs, e);
  }
};
template <>
struct Values256<TQ2_0> {
  static void get(const TQ2_0::Block& b, int* v) {
    for (int e = 0; e < 256; ++e) v[e] = crumb(b.qs, e) - 1;
  }
};
template <>
struct Values256<Q3_K> {
  static void get(const Q3_K::Block& b, int* v) {
    for (int e = 0; e < 256; ++e) {
      const int n = e >> 7, j = (e >> 5) & 3, l = e & 31;
      v[e] = (crumb(b.qs, e) | (((b.hmask[l] >> (4 * n + j)) & 1) << 2)) - 4;
    }
  }
};
// Q4_K / Q5_K: 64-value chunk c uses qs[c*32 + l], low nibble first; Q5_K bit 5 in qh[l].
template <typename B, int kBits>
void values_q45k(const B& b, int* v) {
  for (int e = 0; e < 256; ++e) {
    const int c = e >> 6, hi = (e >> 5) & 1, l = e & 31;
    v[e] = (b.qs[c * 32 + l] >> (4 * hi)) & 0xF;
    if constexpr (kBits == 5) v[e] |= ((b.qh[l] >> (2 * c + hi)) & 1) << 4;
  }
}
template <>
struct Values256<Q4_K> {
  static void get(const Q4_K::Block& b, int* v) { values_q45k<Q4_K::Block, 4>(b, v); }
};
template <>
struct Values256<Q5_K> {
  static void get(const Q5_K::Block& b, int* v) { values_q45k<Q5_K::Block, 5>(b, v); }
};
template <>
struct Values256<Q6_K> {
  static void get(const Q6_K::Block& b, int* v) {
    for (int e = 0; e < 256; ++e) {
      const int n = e >> 7, k = (e >> 5) & 3, l = e & 31;
      const int lo = (b.ql[n * 64 + (k & 1) * 32 + l] >> (4 * (k >> 1))) & 0xF;
      v[e] = (lo | (((b.qh[n * 32 + l] >> (2 * k)) & 3) << 4)) - 32;
    }
  }
};
template <>
struct Values256<IQ4_XS> {
  static void get(const IQ4_XS::Block& b, int* v) {
    for (int e = 0; e < 256; ++e) {
      const int c = (b.qs[(e >> 5) * 16 + (e & 15)] >> (4 * ((e >> 4) & 1))) & 0xF;
      v[e] = int(kIq4nlValues[size_t(c)]);
    }
  }
};
template <>
struct Values256<TQ1_0> {
  static void get(const TQ1_0::Block& b, int* v) {
    for (int e = 0; e < 256; ++e) v[e] = tq1_code(b, e) - 1;
  }
};

template <typename T>
float dot256(const uint8_t* w, const Acts& a, int64_t t) {
  const int64_t nsb = a.K / 256;
  const auto* blk = reinterpret_cast<const typename T::Block*>(w);
  const int8_t* q = a.qs + t * a.K;
  const float* da = a.d + t * nsb;
  const int16_t* bs = a.bsums + t * nsb * 16;
  float acc = 0;
  for (int64_t b = 0; b < nsb; ++b) {
    int v[256];
    Values256<T>::get(blk[b], v);
    SubScales16 ss;
    sub_scales(blk[b], ss);
    int main = 0, mins = 0;
    for (int j = 0; j < 16; ++j) {
      int sum = 0;
      for (int i = j * 16; i < j * 16 + 16; ++i) sum += v[i] * q[b * 256 + i];
      main += ss.sc[j] * sum;
      mins += ss.mn[j] * bs[b * 16 + j];
    }
    acc += (fp16_to_f32(super_d(blk[b])) * da[b]) * float(main);
    acc -= (fp16_to_f32(super_dmin(blk[b])) * da[b]) * float(mins);
  }
  return acc;
}

// ---- grouped intN ----------------------------------------------------------------------------

template <typename T>
float dot_intn(const uint8_t* w, const Acts& a, int64_t t) {
  using I = IntTraits<T>;
  const int64_t K = a.K, G = a.wgroup, nb = K / 32;
  const int8_t* q = a.qs + t * K;
  const float* da = a.d + t * nb;
  float acc = 0;
  for (int64_t k0 = 0; k0 < K; k0 += G) {
    const int64_t n = std::min(G, K - k0);
    uint16_t h;
    std::memcpy(&h, w, 2);
    const float dw = fp16_to_f32(h);
    const int z = I::kAsym ? w[2] : 1 << (I::kBits - 1);
    const uint8_t* codes = w + I::kHeadBytes;
    float accg = 0;
    for (int64_t b = 0; b < n / 32; ++b) {
      int sum = 0;
      for (int64_t i = 32 * b; i < 32 * b + 32; ++i)
        sum += (read_int_code<I::kBits>(codes, i) - z) * q[k0 + i];
      accg += da[k0 / 32 + b] * float(sum);
    }
    acc += dw * accg;
    w += I::kHeadBytes + n * I::kBits / 8;
  }
  return acc;
}

// One NF4 block of 64 codes (qs: 32 bytes, value i < 32 in the low nibbles) against its
// activations: sum over its two 32-blocks b of da[b] * sum kNf4Int[code] * q.
float nf4_block_sum(const uint8_t* qs, const int8_t* q, const float* da) {
  float accg = 0;
  for (int b = 0; b < 2; ++b) {
    int sum = 0;
    for (int i = 0; i < 32; ++i) {
      const int code = b == 0 ? qs[i] & 0xF : qs[i] >> 4;
      sum += kNf4Int[size_t(code)] * q[32 * b + i];
    }
    accg += da[b] * float(sum);
  }
  return accg;
}

float dot_nf4(const uint8_t* w, const Acts& a, int64_t t) {
  const int64_t K = a.K;
  const auto* blk = reinterpret_cast<const NF4::Block*>(w);
  const int8_t* q = a.qs + t * K;
  const float* da = a.d + t * (K / 32);
  float acc = 0;
  for (int64_t g = 0; g < K / 64; ++g)
    acc += fp16_to_f32(blk[g].d) * nf4_block_sum(blk[g].qs, q + 64 * g, da + 2 * g);
  return acc * (1.0f / float(kNf4IntScale));
}

float dot_nf4_dq(const uint8_t* w, const Acts& a, int64_t t) {
  const int64_t K = a.K;
  const auto* blk = reinterpret_cast<const NF4_DQ::Block*>(w);
  const int8_t* q = a.qs + t * K;
  const float* da = a.d + t * (K / 32);
  float acc = 0;
  for (int64_t s = 0; s < K / 256; ++s) {
    for (int j = 0; j < 4; ++j) {
      const float dw = fp16_to_f32(blk[s].d) * float(blk[s].sc[j]);
      acc += dw * nf4_block_sum(blk[s].qs + 32 * j, q + 256 * s + 64 * j, da + 8 * s + 2 * j);
    }
  }
  return acc * (1.0f / float(kNf4IntScale));
}

float dot_bin1(const uint8_t* w, const Acts& a, int64_t t) {
  const int64_t K = a.K, nb = K / 32;
  const auto* blk = reinterpret_cast<const BIN1::Block*>(w);
  const int8_t* q = a.qs + t * K;
  const float* da = a.d + t * nb;
  float acc = 0;
  for (int64_t g = 0; g < K / 64; ++g) {
    float accg = 0;
    for (int b = 0; b < 2; ++b) {
      int sum = 0;
      for (int i = 32 * b; i < 32 * b + 32; ++i)
        sum += (((blk[g].bits[i / 8] >> (i % 8)) & 1) ? 1 : -1) * q[64 * g + i];
      accg += da[2 * g + b] * float(sum);
    }
    acc += fp16_to_f32(blk[g].d) * accg;
  }
  return acc;
}

// ---- float formats ------------------------------------------------------------------------------

template <typename T>
float dot_float(const uint8_t* w, const Acts& a, int64_t t) {
  float row[256];
  float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const float* x = a.f32 + t * a.K;
  // Decoded 256 values at a time; lane j sums the products k = j mod 8, as dot_f32_ref does.
  for (int64_t k0 = 0; k0 < a.K; k0 += 256) {
    const int64_t n = std::min<int64_t>(256, a.K - k0);
    T::decode(w + k0 * int64_t(T::block_bytes(1)), n, row);
    for (int64_t k = 0; k < n; ++k) lane[(k0 + k) % 8] += row[k] * x[k0 + k];
  }
  float s = 0;
  for (int j = 0; j < 8; ++j) s += lane[j];
  return s;
}

template <VecDotFn Dot>
void gemm_by_dots(const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y,
                  int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t t = 0; t < a.n; ++t) y[t * ldy + r] = Dot(w + uint64_t(r) * rb, a, t);
  }
}

template <typename T>
constexpr FormatKernels kernels_of() {
  constexpr ActKind k = kActOf<T>;
  if constexpr (IntTraits<T>::kIs)
    return {dot_intn<T>, gemm_by_dots<dot_intn<T>>};
  else if constexpr (std::is_same_v<T, NF4>)
    return {dot_nf4, gemm_by_dots<dot_nf4>};
  else if constexpr (std::is_same_v<T, NF4_DQ>)
    return {dot_nf4_dq, gemm_by_dots<dot_nf4_dq>};
  else if constexpr (std::is_same_v<T, BIN1>)
    return {dot_bin1, gemm_by_dots<dot_bin1>};
  else if constexpr (k == ActKind::kQ8x32)
    return {dot32<T>, gemm_by_dots<dot32<T>>};
  else if constexpr (k == ActKind::kQ8x256)
    return {dot256<T>, gemm_by_dots<dot256<T>>};
  else if constexpr (k == ActKind::kF32)
    return {dot_float<T>, gemm_by_dots<dot_float<T>>};
  else
    return {};
}

template <typename T>
struct RefImpl {
  static constexpr FormatKernels kKernels = kernels_of<T>();
};

void gemm_f32_ref(const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y,
                  int64_t ldy) {
  for (int64_t r = 0; r < rows; ++r) {
    const auto* row = reinterpret_cast<const float*>(w + uint64_t(r) * rb);
    for (int64_t t = 0; t < a.n; ++t) y[t * ldy + r] = dot_f32_ref(row, a.f32 + t * a.K, a.K);
  }
}

constexpr KernelSet kRefKernels{
    Isa::kRef,
    "ref",
    quantize_q8x32_ref,
    quantize_q8x256_ref,
    nullptr,
    nullptr,
    gemm_f32_ref,
    make_format_table<RefImpl>(),
    attn_scores_ref,
    attn_values_ref,
    swiglu_ref,
    softmax_ref,
    softmax_backward_ref,
    {grid_error_ref, grid_lloyd_ref, affine_error_ref, affine_lloyd_ref, codebook_error_ref,
     codebook_lloyd_ref, grid_error_batch_ref, grid_lloyd_batch_ref, codebook_error_batch_ref,
     codebook_lloyd_batch_ref, nullptr, nullptr, affine_error_batch_ref, grid_var_batch_ref}};

}  // namespace

const KernelSet& ref_kernels() {
  return kRefKernels;
}

}  // namespace lowbit::kernel
