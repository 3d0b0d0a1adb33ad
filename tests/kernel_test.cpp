// Kernel tiers against the reference, for every format of the list and every tier this CPU has:
// activation quantizers bit-exact (ref against the Q8_1 / Q8_K codecs, tiers against ref); dot
// products and matmul within a tolerance derived from the inputs (K * eps * max|a| * max|w|,
// times 4 for the offset codes' cancellation); edge shapes from the block and tile sizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "format/legacy.h"
#include "kernel/kernels.h"
#include "kernel/matmul.h"
#include "lowbit/half.h"
#include "lowbit/threads.h"
#include "test_util.h"

namespace lowbit {
namespace {

using kernel::ActKind;
using kernel::Acts;
using kernel::KernelSet;

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (const Isa isa : kAllIsas) {
    if (isa_supported(isa)) v.push_back(isa);
  }
  return v;
}

// Quantized activations owned by the test.
struct QActs {
  std::vector<int8_t> qs;
  std::vector<float> d, s;
  std::vector<int16_t> bsums;
  Acts acts;
};

QActs quantize_acts(const KernelSet& ks, ActKind kind, const std::vector<float>& x, int64_t N,
                    int64_t K) {
  QActs q;
  q.acts = Acts{.kind = kind, .n = N, .K = K};
  if (kind == ActKind::kF32 || kind == ActKind::kNone) {
    q.acts.kind = ActKind::kF32;
    q.acts.f32 = x.data();
    return q;
  }
  const int64_t nb = K / q.acts.block();
  q.qs.resize(size_t(N * K));
  q.d.resize(size_t(N * nb));
  q.s.resize(size_t(N * nb));
  q.bsums.resize(size_t(N * K / 16));
  for (int64_t t = 0; t < N; ++t) {
    if (kind == ActKind::kQ8x32) {
      ks.quantize_q8x32(x.data() + t * K, K, q.qs.data() + t * K, q.d.data() + t * nb,
                        q.s.data() + t * nb, q.bsums.data() + t * K / 32);
    } else {
      ks.quantize_q8x256(x.data() + t * K, K, q.qs.data() + t * K, q.d.data() + t * nb, nullptr,
                         q.bsums.data() + t * K / 16);
    }
  }
  q.acts.qs = q.qs.data(), q.acts.d = q.d.data(), q.acts.bsums = q.bsums.data();
  if (kind == ActKind::kQ8x32) q.acts.s = q.s.data();
  return q;
}

// The values the kernels see: q * d (or x itself for float activations).
std::vector<float> dequantized(const QActs& q, const std::vector<float>& x) {
  if (q.acts.kind == ActKind::kF32) return x;
  std::vector<float> v(q.qs.size());
  const int64_t blk = q.acts.block();
  for (size_t i = 0; i < v.size(); ++i) v[i] = float(q.qs[i]) * q.d[i / size_t(blk)];
  return v;
}

// Test activations: Gaussian with a few outliers and, per block, special cases (a zero block,
// +-max ties) so the quantizers' edge rules are exercised.
std::vector<float> activations(int64_t n, uint64_t seed) {
  std::vector<float> x = test::gaussian(n, seed);
  for (int64_t i = 0; i < n; i += 97) x[size_t(i)] *= 8.0f;
  if (n >= 64) std::fill(x.begin() + 32, x.begin() + 64, 0.0f);  // an all-zero 32-block
  if (n >= 256) x[5] = 9.0f, x[200] = -9.0f;                     // a tie in magnitude: first wins
  return x;
}

double tolerance(int64_t K, const float* a, const float* w) {
  float amax = 0, wmax = 0;
  for (int64_t k = 0; k < K; ++k)
    amax = std::max(amax, std::fabs(a[k])), wmax = std::max(wmax, std::fabs(w[k]));
  return 4.0 * double(K) * std::numeric_limits<float>::epsilon() * amax * wmax + 1e-30;
}

// NF4's kernels use its codebook rounded to 1/kNf4IntScale of each block's scale d
// (kernel::kNf4Int): the dot can move by up to sum |a_i| * d_block(i) / (2 * kNf4IntScale) from
// the decoded floats' (0 for every other format, whose kernels use the format's exact values).
double codebook_term(const Format& f, const uint8_t* row, int64_t K, const float* a) {
  const bool dq = f.name() == "nf4_dq";
  if (f.name() != "nf4" && !dq) return 0;
  double s = 0;
  for (int64_t b = 0; b < K / 64; ++b) {  // block of 64 (NF4_DQ: sub-block) b, its scale d
    uint16_t h;
    std::memcpy(&h, row + (dq ? 134 * (b / 4) : 34 * b), 2);
    const double d = fp16_to_f32(h) * (dq ? double(int8_t(row[134 * (b / 4) + 2 + b % 4])) : 1.0);
    double sa = 0;
    for (int64_t i = 0; i < 64; ++i) sa += std::fabs(a[64 * b + i]);
    s += sa * std::fabs(d) / (2.0 * kernel::kNf4IntScale);
  }
  return s;
}

double dot_double(const float* a, const float* b, int64_t K) {
  double s = 0;
  for (int64_t k = 0; k < K; ++k) s += double(a[k]) * b[k];
  return s;
}

// ---- activation quantization
// ---------------------------------------------------------------------

TEST(KernelActQuant, RefMatchesTheCodecs) {
  for (const int64_t K : {32, 7 * 32, 256, 3 * 256}) {
    const auto x = activations(K, uint64_t(K));
    const KernelSet& ref = kernel::ref_kernels();
    QActs q32 = quantize_acts(ref, ActKind::kQ8x32, x, 1, K);
    const Format q8_1 = Format::parse("q8_1");
    std::vector<uint8_t> blocks(q8_1.row_bytes(K));
    q8_1.quantize_row(x.data(), K, nullptr, blocks.data());
    for (int64_t b = 0; b < K / 32; ++b) {
      const uint8_t* blk = blocks.data() + b * 36;  // {fp16 d, fp16 s, i8 qs[32]}
      uint16_t d, s;
      std::memcpy(&d, blk, 2), std::memcpy(&s, blk + 2, 2);
      EXPECT_EQ(q32.d[size_t(b)], fp16_to_f32(d)) << "K=" << K << " block " << b;
      EXPECT_EQ(f32_to_fp16(q32.s[size_t(b)]), s) << "K=" << K << " block " << b;
      int sum = 0;
      for (int i = 0; i < 32; ++i) sum += int8_t(blk[4 + i]);
      EXPECT_EQ(q32.bsums[size_t(b)], sum) << "K=" << K << " block " << b;
      EXPECT_EQ(0, std::memcmp(blk + 4, q32.qs.data() + b * 32, 32)) << "K=" << K << " block " << b;
    }
    if (K % 256 != 0) continue;
    QActs qk = quantize_acts(ref, ActKind::kQ8x256, x, 1, K);
    const Format q8_k = Format::parse("q8_k");
    std::vector<uint8_t> kb(q8_k.row_bytes(K));
    q8_k.quantize_row(x.data(), K, nullptr, kb.data());
    for (int64_t b = 0; b < K / 256; ++b) {
      const uint8_t* blk = kb.data() + b * 292;  // {f32 d, i8 qs[256], i16 bsums[16]}
      float d;
      std::memcpy(&d, blk, 4);
      EXPECT_EQ(std::memcmp(&d, &qk.d[size_t(b)], 4), 0) << "K=" << K << " block " << b;
      EXPECT_EQ(0, std::memcmp(blk + 4, qk.qs.data() + b * 256, 256));
      EXPECT_EQ(0, std::memcmp(blk + 260, qk.bsums.data() + b * 16, 32));
    }
  }
}

TEST(KernelActQuant, TiersBitExact) {
  constexpr int64_t K = 3 * 256;
  std::vector<float> x = activations(K, 7);
  std::vector<float> tiny = test::gaussian(K, 8, 1e-6);  // fp16 scales go subnormal
  std::vector<float> zeros(K, -0.0f);
  for (const Isa isa : supported_isas()) {
    for (const auto* in : {&x, &tiny, &zeros}) {
      for (const ActKind kind : {ActKind::kQ8x32, ActKind::kQ8x256}) {
        const QActs want = quantize_acts(kernel::ref_kernels(), kind, *in, 1, K);
        const QActs got = quantize_acts(kernel::kernels_for(isa), kind, *in, 1, K);
        EXPECT_EQ(got.qs, want.qs) << isa_name(isa);
        EXPECT_EQ(0, std::memcmp(got.d.data(), want.d.data(), got.d.size() * 4)) << isa_name(isa);
        if (kind == ActKind::kQ8x32) {
          EXPECT_EQ(0, std::memcmp(got.s.data(), want.s.data(), got.s.size() * 4));
        }
        EXPECT_EQ(got.bsums, want.bsums) << isa_name(isa);
      }
    }
  }
}

// ---- dot products
// ------------------------------------------------------------------------------------

// Row lengths from the block size: one block, two, a prime number of blocks.
std::vector<int64_t> row_lengths(const Format& f) {
  const int64_t b = f.grouped() ? 32 : f.info().block_elems;
  if (b == 1) return {1, 7, 16, 33, 100};
  return {b, 2 * b, (b == 256 ? 3 : 7) * b};
}

std::vector<Format> kernel_formats() {
  std::vector<Format> v;
  for (const auto& info : all_formats()) {
    const Format f(info, info.block_elems == 0 ? 32 : 0);
    if (kernel::act_kind(f) != ActKind::kNone) v.push_back(f);
  }
  return v;
}

TEST(KernelVecDot, RefMatchesTheDecodedFloats) {
  for (const Format& f : kernel_formats()) {
    for (const int64_t K : row_lengths(f)) {
      const auto w = test::gaussian(K, 11);
      std::vector<uint8_t> q(f.row_bytes(K));
      f.quantize_row(w.data(), K, nullptr, q.data());
      std::vector<float> wd(static_cast<size_t>(K));
      f.dequantize_row(q.data(), K, wd.data());
      const auto x = activations(K, 12);
      QActs a = quantize_acts(kernel::ref_kernels(), kernel::act_kind(f), x, 1, K);
      a.acts.wgroup = f.grouped() ? f.block_elems(K) : 0;
      const auto ad = dequantized(a, x);
      const float got =
          kernel::ref_kernels().formats[kernel::format_index(f)].dot(q.data(), a.acts, 0);
      EXPECT_NEAR(got, dot_double(wd.data(), ad.data(), K),
                  tolerance(K, ad.data(), wd.data()) + codebook_term(f, q.data(), K, ad.data()))
          << f.name() << " K=" << K;
    }
  }
}

TEST(KernelVecDot, TiersMatchRef) {
  for (const Format& f : kernel_formats()) {
    for (const int64_t K : row_lengths(f)) {
      const auto w = test::student_t(K, 21);
      std::vector<uint8_t> q(f.row_bytes(K));
      f.quantize_row(w.data(), K, nullptr, q.data());
      std::vector<float> wd(static_cast<size_t>(K));
      f.dequantize_row(q.data(), K, wd.data());
      const auto x = activations(K, 22);
      for (const Isa isa : supported_isas()) {
        const KernelSet& ks = kernel::kernels_for(isa);
        const auto& fk = ks.formats[kernel::format_index(f)];
        if (fk.dot == nullptr) continue;  // this tier runs the ref kernel for it
        QActs a = quantize_acts(ks, kernel::act_kind(f), x, 1, K);
        a.acts.wgroup = f.grouped() ? f.block_elems(K) : 0;
        const auto ad = dequantized(a, x);
        const float want =
            kernel::ref_kernels().formats[kernel::format_index(f)].dot(q.data(), a.acts, 0);
        EXPECT_NEAR(fk.dot(q.data(), a.acts, 0), want, tolerance(K, ad.data(), wd.data()))
            << isa_name(isa) << " " << f.name() << " K=" << K;
      }
    }
  }
}

// ---- generic path: the tiers' row decoders
// -------------------------------------------------------

TEST(KernelDequant, TierDecodersBitExact) {
  for (const auto& info : all_formats()) {
    for (const uint32_t group : {0u, 32u, 100u}) {  // per row; ragged last group of a 200-row
      if (info.block_elems != 0 && group != 0) continue;
      const Format f(info, info.block_elems == 0 ? group : 0);
      const int64_t K = info.block_elems > 1 ? 4 * info.block_elems : 200;
      const auto w = test::gaussian(K, 5);
      std::vector<uint8_t> q(f.row_bytes(K));
      f.quantize_row(w.data(), K, nullptr, q.data());
      std::vector<float> want(static_cast<size_t>(K)), got(want.size());
      f.dequantize_row(q.data(), K, want.data());
      for (const Isa isa : supported_isas()) {
        const auto dequant = kernel::kernels_for(isa).formats[kernel::format_index(f)].dequant;
        if (dequant == nullptr) continue;
        dequant(q.data(), K, f.block_elems(K), got.data());
        EXPECT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * 4))
            << isa_name(isa) << " " << f.name();
      }
    }
  }
}

// ---- matmul
// -------------------------------------------------------------------------------------------

struct Problem {
  Format f;
  int64_t M, K, N;
  std::vector<uint8_t> w;
  std::vector<float> wd, x;
};

Problem make_problem(const Format& f, int64_t M, int64_t K, int64_t N, uint64_t seed) {
  Problem p{f, M, K, N, {}, {}, activations(N * K, seed + 1)};
  const auto w = test::gaussian(M * K, seed);
  p.w.resize(f.row_bytes(K) * uint64_t(M));
  f.quantize(w.data(), M, K, nullptr, p.w.data());
  p.wd.resize(size_t(M * K));
  f.dequantize(p.w.data(), M, K, p.wd.data());
  return p;
}

// matmul on a tier against the float reference: W dequantized, x quantized and dequantized as
// the format's activation type (per tier: the quantizers are bit-exact anyway), dot in double.
// Uses the first M rows and N tokens of the problem (quantizing weights is the slow part).
void expect_result_matches(Isa isa, const Problem& p, int64_t M, int64_t N,
                           const std::vector<float>& y) {
  // Rows the kernels do not serve (ragged groups) take the generic path: f32 activations.
  const ActKind kind = kernel::kernel_applies(p.f, p.K) ? kernel::act_kind(p.f) : ActKind::kNone;
  const QActs a = quantize_acts(kernel::kernels_for(isa), kind, p.x, N, p.K);
  const auto ad = dequantized(a, p.x);
  for (int64_t t = 0; t < N; ++t) {
    for (int64_t r = 0; r < M; ++r) {
      const float* wr = p.wd.data() + r * p.K;
      const float* at = ad.data() + t * p.K;
      const double book = kind == ActKind::kNone
                              ? 0
                              : codebook_term(p.f, p.w.data() + r * p.f.row_bytes(p.K), p.K, at);
      ASSERT_NEAR(y[size_t(t * M + r)], dot_double(wr, at, p.K), tolerance(p.K, at, wr) + book)
          << isa_name(isa) << " " << p.f.name() << " M=" << M << " K=" << p.K << " N=" << N
          << " row " << r << " token " << t;
    }
  }
}
void expect_matmul_matches(Isa isa, const Problem& p, int64_t M, int64_t N) {
  std::vector<float> y(size_t(N * M), std::nanf(""));
  matmul_isa(isa, p.f, p.w.data(), M, p.K, p.x.data(), N, y.data());
  expect_result_matches(isa, p, M, N, y);
}
void expect_matmul_matches(Isa isa, const Problem& p) {
  expect_matmul_matches(isa, p, p.M, p.N);
}

TEST(KernelMatmul, EveryFormatEveryTier) {
  // Shapes around the tiles (<= 6 x 4): fewer rows/tokens than a tile, odd counts, one token.
  struct Shape {
    int64_t M, N;
  };
  const Shape shapes[] = {{1, 1}, {3, 2}, {7, 5}, {9, 1}};
  uint64_t seed = 100;
  for (const auto& info : all_formats()) {
    const Format f(info, info.block_elems == 0 ? 32 : 0);
    // Ragged groups; float tails; 11 blocks of 32 = one group of 8 (packed tiles) plus 3.
    const int64_t K = info.block_elems == 0    ? 100
                      : info.block_elems == 1  ? 40
                      : info.block_elems == 32 ? 11 * 32
                                               : 2 * info.block_elems;
    const Problem p = make_problem(f, 9, K, 5, ++seed);
    for (const Shape& s : shapes) {
      for (const Isa isa : supported_isas()) expect_matmul_matches(isa, p, s.M, s.N);
    }
  }
}

TEST(KernelMatmul, LargerShapesOfThePriorityFormats) {
  // 13 rows = two 6-row tiles + 1; 11 tokens = two 4-token tiles + 3.
  for (const char* name : {"f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "tq1_0"}) {
    const Problem p = make_problem(Format::parse(name), 13, 512, 11, 7);
    for (const Isa isa : supported_isas()) expect_matmul_matches(isa, p);
  }
}

// Rows longer than one decoded panel (4096 values): partial sums carried across panels, and for
// 32-value formats blocks past the last full group of 8.
TEST(KernelMatmul, RowsLongerThanAPanel) {
  for (const auto& [name, K] :
       {std::pair{"q4_0", 4096 + 256 + 64}, std::pair{"q4_k", 4096 + 512}}) {
    const Problem p = make_problem(Format::parse(name), 7, K, 5, 3);
    for (const Isa isa : supported_isas()) expect_matmul_matches(isa, p);
  }
}

TEST(KernelMatmul, ThreadedEqualsSingleThreaded) {
  for (const char* name : {"f32", "q4_0", "q4_k", "int4_g64"}) {
    const Format f = Format::parse(name);
    const Problem p = make_problem(f, 40, 256, 16, 9);  // >= 2 x 16 rows: two threads
    for (const Isa isa : supported_isas()) {
      std::vector<float> y1(size_t(p.N * p.M)), y2(y1.size());
      matmul_isa(isa, f, p.w.data(), p.M, p.K, p.x.data(), p.N, y1.data());
      set_threads(2);
      matmul_isa(isa, f, p.w.data(), p.M, p.K, p.x.data(), p.N, y2.data());
      set_threads(0);
      EXPECT_EQ(y1, y2) << isa_name(isa) << " " << name;
    }
  }
}

// ---- load-time repacking (PreparedMatrix)
// ----------------------------------------------------------------------

// The x8 layouts (x86 tiers: Q4_0, Q8_0, Q4_K, Q5_K, Q6_K, IQ4_XS, Q2_K, Q3_K, TQ2_0, TQ1_0, and
// the grouped layout of NF4,
// Q5_0, Q4_1, Q5_1, IQ4_NL; AVX-512 also F32, F16, BF16) against the double reference: rows around
// the group of 8 (3: nothing repacked; 8; 13 = a group + 5 rows left in place; 16 and 48: pairs of
// groups only (Q4_0, Q8_0, Q4_K on AVX-512); 40: groups split over threads; 56 = the float prompt
// tile's 4 groups + 2 + 1, or 3 pairs + 1), tokens around the tiles (AVX2 4, AVX-512 8, float 6), K
// of 1, 2, 7 (prime) and 16 blocks; float rows of 2, 40 and 512 values, and an odd length (33),
// which has no pair layout and must say so.
TEST(KernelRepack, PreparedMatchesReference) {
  uint64_t seed = 300;
  for (const char* name :
       {"q4_0", "q8_0", "q4_k", "q5_k", "q6_k", "iq4_xs", "q2_k", "q3_k", "tq2_0", "tq1_0", "nf4",
        "nf4_dq", "bin1", "q5_0", "q5_1", "iq4_nl", "f16", "f32", "bf16"}) {
    const Format f = Format::parse(name);
    const bool is_float = f.block_elems(256) == 1;
    const int64_t blk = is_float ? 32 : f.block_elems(256);
    std::vector<int64_t> Ks = {blk, 2 * blk, 7 * blk, 16 * blk};
    if (is_float) Ks = {2, 33, 40, 512};
    for (const int64_t K : Ks) {
      if (K > 4096) continue;
      const Problem p = make_problem(f, 56, K, 11, ++seed);
      for (const Isa isa : supported_isas()) {
        const bool has_layout = is_float ? isa == Isa::kAvx512 && K % 2 == 0 : isa != Isa::kRef;
        for (const int64_t M : {3, 8, 13, 16, 40, 48, 56}) {
          const PreparedMatrix pm(isa, f, p.w.data(), M, K);
          EXPECT_EQ(pm.repacked(), has_layout && M >= 8)
              << isa_name(isa) << " " << name << " M=" << M << " K=" << K;
          for (const int64_t N : {1, 3, 4, 5, 6, 8, 9, 11}) {
            std::vector<float> y(size_t(N * M), std::nanf(""));
            pm.multiply(p.x.data(), N, y.data());
            expect_result_matches(isa, p, M, N, y);
            if (HasFatalFailure()) return;
          }
        }
      }
    }
  }
}

// The grouped ints' layout (x86: every int format, groups and rows of multiples of 32) against
// the double reference: per-row groups, groups of one and several blocks, a ragged last group
// (224 = 3 x 64 + 32 = 2 x 96 + 32); rows around the 8-row group and the AVX-512 pair (3, 8, 13,
// 16, 40, 56); tokens around the tiles. Both the prepared copy and the file layout (matmul).
// Rows or groups that are not multiples of 32 keep the generic path and must say so.
TEST(KernelRepack, GroupedIntsMatchReference) {
  uint64_t seed = 700;
  for (const auto& info : all_formats()) {
    if (info.block_elems != 0) continue;
    for (const uint32_t group : {32u, 64u, 96u, 0u}) {
      const Format f(info, group);
      for (const int64_t K : {int64_t(32), int64_t(224)}) {
        const Problem p = make_problem(f, 56, K, 11, ++seed);
        for (const Isa isa : supported_isas()) {
          for (const int64_t M : {3, 8, 13, 16, 40, 56}) {
            const PreparedMatrix pm(isa, f, p.w.data(), M, K);
            EXPECT_EQ(pm.repacked(), isa != Isa::kRef && M >= 8)
                << isa_name(isa) << " " << f.name() << " M=" << M << " K=" << K;
            for (const int64_t N : {1, 3, 4, 5, 8, 9, 11}) {
              std::vector<float> y(size_t(N * M), std::nanf(""));
              pm.multiply(p.x.data(), N, y.data());
              expect_result_matches(isa, p, M, N, y);
              if (M == 13 || M == 56) expect_matmul_matches(isa, p, M, N);
              if (HasFatalFailure()) return;
            }
          }
        }
      }
    }
    const Format f(info, 16);  // groups of 16: no kernel, nothing repacked
    EXPECT_FALSE(kernel::kernel_applies(f, 64)) << f.name();
    EXPECT_FALSE(kernel::kernel_applies(Format(info, 32), 100)) << info.name;
    const Problem p = make_problem(f, 8, 64, 2, ++seed);
    for (const Isa isa : supported_isas()) {
      const PreparedMatrix pm(isa, f, p.w.data(), 8, 64);
      EXPECT_FALSE(pm.repacked()) << f.name();
      expect_matmul_matches(isa, p);
    }
  }
}

// The repacked copy must not depend on the input staying in memory beyond the rows left in place,
// and two threads must give the same bits as one.
TEST(KernelRepack, OwnsItsCopyAndThreadsAgree) {
  for (const char* name : {"q4_0", "q8_0", "q4_k", "nf4", "int3_g64_asym", "f16", "f32"}) {
    const Format f = Format::parse(name);
    const Problem p = make_problem(f, 40, 512, 16, 11);
    for (const Isa isa : supported_isas()) {
      std::vector<uint8_t> w = p.w;
      const PreparedMatrix pm(isa, f, w.data(), p.M, p.K);
      if (!pm.repacked()) continue;
      std::fill(w.begin(), w.end(), uint8_t(0xFF));  // all 40 rows are in the copy
      std::vector<float> y1(size_t(p.N * p.M)), y2(y1.size());
      pm.multiply(p.x.data(), p.N, y1.data());
      expect_result_matches(isa, p, p.M, p.N, y1);
      set_threads(2);
      pm.multiply(p.x.data(), p.N, y2.data());
      set_threads(0);
      EXPECT_EQ(y1, y2) << isa_name(isa) << " " << name;
    }
  }
}

// Matrices sharing one input in one call: the same bits as one multiply each, for row counts
// that are not multiples of 8 (the group's row ranges meet inside a thread's share), mixed
// formats of one activation type, and a member without a layout (the fallback path).
TEST(KernelRepack, GroupEqualsSeparateMultiplies) {
  const Problem a = make_problem(Format::parse("q4_0"), 40, 256, 11, 21);
  const Problem b = make_problem(Format::parse("q8_0"), 13, 256, 11, 22);
  const Problem c = make_problem(Format::parse("q6_k"), 9, 256, 11, 23);  // no layout
  for (const Isa isa : supported_isas()) {
    for (const bool with_c : {false, true}) {
      const PreparedMatrix pa(isa, a.f, a.w.data(), 21, a.K), pb(isa, b.f, b.w.data(), 13, b.K),
          pc(isa, c.f, c.w.data(), 9, c.K);
      std::vector<const PreparedMatrix*> ms = {&pa, &pb};
      if (with_c) ms.push_back(&pc);
      for (const int64_t N : {1, 5, 11}) {
        std::vector<std::vector<float>> sep(ms.size()), grp(ms.size());
        std::vector<float*> ys;
        for (size_t i = 0; i < ms.size(); ++i) {
          sep[i].assign(size_t(N * ms[i]->rows()), 0.0f);
          grp[i].assign(sep[i].size(), std::nanf(""));
          ms[i]->multiply(a.x.data(), N, sep[i].data());
          ys.push_back(grp[i].data());
        }
        PreparedMatrix::multiply_group(ms, a.x.data(), N, ys);
        for (size_t i = 0; i < ms.size(); ++i)
          EXPECT_EQ(grp[i], sep[i]) << isa_name(isa) << " matrix " << i << " N=" << N;
      }
    }
  }
}

// The attention helpers: every tier against a double-precision evaluation and the ref tier,
// for head sizes around the vector widths (8, 16) and the register-resident heads (16..128 on
// AVX-512), keys stored at a stride wider than the head, T of 1 to 37 keys.
TEST(KernelFloatHelpers, AttentionMatchesRef) {
  const KernelSet& ref = kernel::ref_kernels();
  for (const int64_t D : {1, 7, 8, 16, 31, 48, 64, 65, 100, 128, 129, 144}) {
    const int64_t stride = D + 5;
    for (const int64_t T : {1, 2, 37}) {
      const auto q = test::gaussian(D, uint64_t(D)), kv = test::gaussian(T * stride, uint64_t(T));
      auto p = test::gaussian(T, uint64_t(D) + 7);
      for (float& x : p) x = std::fabs(x);
      std::vector<double> want_s(size_t(T), 0.0), want_v(size_t(D), 0.0);
      double q_max = 0, kv_max = 0, p_sum = 0;
      for (const float x : q) q_max = std::max(q_max, double(std::fabs(x)));
      for (const float x : kv) kv_max = std::max(kv_max, double(std::fabs(x)));
      for (int64_t t = 0; t < T; ++t) {
        p_sum += p[size_t(t)];
        for (int64_t i = 0; i < D; ++i) {
          want_s[size_t(t)] += 0.5 * double(q[size_t(i)]) * kv[size_t(t * stride + i)];
          want_v[size_t(i)] += double(p[size_t(t)]) * kv[size_t(t * stride + i)];
        }
      }
      // Float sums of D (scores) or T (values) terms: n * eps times the largest possible sum.
      const double eps = std::numeric_limits<float>::epsilon();
      const double tol_s = 2.0 * D * eps * 0.5 * D * q_max * kv_max;
      const double tol_v = 2.0 * (T + 1) * eps * p_sum * kv_max;
      for (const Isa isa : supported_isas()) {
        for (const KernelSet* ks : {&kernel::kernels_for(isa), &ref}) {
          std::vector<float> s(size_t(T), std::nanf("")), v(size_t(D), std::nanf(""));
          ks->attn_scores(q.data(), kv.data(), stride, T, D, 0.5f, s.data());
          ks->attn_values(p.data(), kv.data(), stride, T, D, v.data());
          for (int64_t t = 0; t < T; ++t) {
            ASSERT_NEAR(s[size_t(t)], want_s[size_t(t)], tol_s)
                << ks->name << " D=" << D << " T=" << T << " t=" << t;
          }
          for (int64_t i = 0; i < D; ++i) {
            ASSERT_NEAR(v[size_t(i)], want_v[size_t(i)], tol_v)
                << ks->name << " D=" << D << " T=" << T << " i=" << i;
          }
        }
      }
    }
  }
}

// SwiGLU on every tier against double precision: gates across the whole range where e^-g is
// finite and beyond it (the clamp), around 0, and lengths around the vector widths.
TEST(KernelFloatHelpers, SwigluMatchesDouble) {
  std::vector<float> g0 = {0.0f,   -0.0f, 1e-30f, -1e-30f, 0.5f,   -0.5f, 20.0f,  -20.0f, 86.9f,
                           -86.9f, 87.5f, -87.5f, 88.5f,   -88.5f, 95.0f, -95.0f, 1e30f,  -1e30f};
  const auto r = test::gaussian(1000, 77);
  for (const float x : r) g0.push_back(8.0f * x);
  for (int i = -1000; i <= 1000; ++i) g0.push_back(float(i) * 0.0871f);
  const auto u = test::gaussian(int64_t(g0.size()), 78);
  for (const Isa isa : supported_isas()) {
    for (const int64_t n : {int64_t(1), int64_t(7), int64_t(17), int64_t(g0.size())}) {
      std::vector<float> g(g0.begin(), g0.begin() + n);
      kernel::kernels_for(isa).swiglu(g.data(), u.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double x = g0[size_t(i)], want = x / (1.0 + std::exp(-x)) * u[size_t(i)];
        // A few float roundings, and e^x's 1.3e-7: 1e-6 relative; past the clamp (|x| > 87)
        // the result is below 1e-30 or x * u to float precision.
        ASSERT_NEAR(g[size_t(i)], want, 1e-6 * std::fabs(want) + 1e-30)
            << isa_name(isa) << " n=" << n << " x=" << x;
      }
    }
  }
}

// Softmax on every tier against double precision, for lengths around the vector widths, with
// scores far below the maximum (weights that underflow to 0).
TEST(KernelFloatHelpers, SoftmaxMatchesDouble) {
  for (const int64_t n : {1, 2, 7, 16, 17, 100}) {
    auto s0 = test::gaussian(n, uint64_t(n) + 5);
    for (float& x : s0) x *= 6.0f;
    if (n > 2) s0[1] = -200.0f;
    std::vector<double> want(size_t(n), 0.0);
    double mx = -INFINITY, sum = 0;
    for (const float x : s0) mx = std::max(mx, double(x));
    for (int64_t i = 0; i < n; ++i) sum += (want[size_t(i)] = std::exp(double(s0[size_t(i)]) - mx));
    for (const Isa isa : supported_isas()) {
      std::vector<float> s = s0;
      kernel::kernels_for(isa).softmax(s.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        // e^x's 1.3e-7 and a few roundings, plus the float rounding of x = s - max itself,
        // which e^x turns into a relative error of |x| * eps.
        const double x = std::fabs(double(s0[size_t(i)]) - mx), p = want[size_t(i)] / sum;
        const double eps = std::numeric_limits<float>::epsilon();
        ASSERT_NEAR(s[size_t(i)], p, (1e-6 + x * eps) * p + 1e-37)
            << isa_name(isa) << " n=" << n << " i=" << i;
      }
    }
  }
}

// Softmax's backward on every tier against double precision: d_i = p_i (d_i - p·d), each within
// a few roundings of its terms' size.
TEST(KernelFloatHelpers, SoftmaxBackwardMatchesDouble) {
  const double eps = std::numeric_limits<float>::epsilon();
  for (const int64_t n : {1, 2, 7, 16, 17, 100, 256}) {
    auto p = test::gaussian(n, uint64_t(n) + 50);
    kernel::ref_kernels().softmax(p.data(), n);
    const auto d0 = test::gaussian(n, uint64_t(n) + 51);
    double pd = 0, mag = 0;
    for (int64_t i = 0; i < n; ++i) {
      pd += double(p[size_t(i)]) * d0[size_t(i)];
      mag += std::fabs(double(p[size_t(i)]) * d0[size_t(i)]);
    }
    for (const Isa isa : supported_isas()) {
      std::vector<float> d = d0;
      kernel::kernels_for(isa).softmax_backward(p.data(), d.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        const double pi = p[size_t(i)], want = pi * (d0[size_t(i)] - pd);
        const double tol = 4 * eps * pi * (std::fabs(d0[size_t(i)]) + (n + 1) * mag);
        ASSERT_NEAR(d[size_t(i)], want, tol) << isa_name(isa) << " n=" << n << " i=" << i;
      }
    }
  }
}

// The quantizers' grid sums (symmetric and affine errors and Lloyd sums): every tier gives the
// reference's bits (same order, same operations), for lengths around the 16 lanes and the
// vectors' widths, with and without weights, on the grids the formats use; and the reference
// agrees with a direct double-precision evaluation of the same definition (float terms summed in
// another order: within 1e-5 relative).
TEST(KernelFit, GridSumsMatchRefBitwise) {
  const fit::GridKernels& ref = kernel::ref_kernels().grid;
  const std::pair<float, float> grids[] = {{-8, 7}, {-16, 15}, {-127, 127}, {-1, 1},
                                           {0, 15}, {-32, 31}, {-3, 12}};
  for (const int64_t n : {1, 5, 8, 15, 16, 17, 31, 32, 33, 48, 64, 100, 172, 256}) {
    auto x = test::gaussian(n, uint64_t(n) + 7);
    auto w = test::gaussian(n, uint64_t(n) + 77);
    for (auto& v : w) v = v * v + 0.01f;
    x[size_t(n / 2)] *= 6;  // an outlier, so some scales clip
    for (const auto& [lo, hi] : grids) {
      for (const float f : {0.3f, 0.9f, 1.0f, 1.7f}) {
        float amax = 0;
        for (const float v : x) amax = std::max(amax, std::fabs(v));
        const float d = amax / (hi * f), id = 1.0f / d;
        for (const float* wp :
             {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
          const float e = ref.error(x.data(), wp, n, lo, hi, d, id);
          float s[2];
          ref.lloyd(x.data(), wp, n, lo, hi, id, s);
          double de = 0, dxq = 0, dqq = 0, mag = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double q =
                std::nearbyint(std::clamp(double(x[size_t(i)] * id), double(lo), double(hi)));
            const double wi = wp ? wp[i] : 1.0, r = x[size_t(i)] - double(d * float(q));
            de += wi * r * r, dxq += wi * x[size_t(i)] * q, dqq += wi * q * q;
            mag += std::fabs(wi * x[size_t(i)] * q);
          }
          ASSERT_NEAR(e, de, 1e-5 * de + 1e-30) << n << " " << lo << " " << f;
          ASSERT_NEAR(s[0], dxq, 1e-5 * mag + 1e-30) << n << " " << lo << " " << f;
          ASSERT_NEAR(s[1], dqq, 1e-5 * dqq + 1e-30) << n << " " << lo << " " << f;
          // The affine grid 0..hi-lo with offset m = lo * d: the same levels shifted.
          const float qmax = hi - lo, m = lo * d;
          const float ea = ref.affine_error(x.data(), wp, n, qmax, d, m, id);
          double da = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double q =
                std::nearbyint(std::clamp(double((x[size_t(i)] - m) * id), 0.0, double(qmax)));
            const double wi = wp ? wp[i] : 1.0;
            const double r = x[size_t(i)] - double(d * float(q) + m);
            da += wi * r * r;
          }
          ASSERT_NEAR(ea, da, 1e-5 * da + 1e-30) << n << " " << lo << " " << f;
          float al[5];
          ref.affine_lloyd(x.data(), wp, n, qmax, m, id, al);
          {
            double ds[5] = {}, dmag[5] = {};
            for (int64_t i = 0; i < n; ++i) {
              const double q =
                  std::nearbyint(std::clamp(double((x[size_t(i)] - m) * id), 0.0, double(qmax)));
              const double wi = wp ? wp[i] : 1.0, xi = x[size_t(i)];
              const double t[5] = {wi, wi * q, wi * q * q, wi * xi, wi * xi * q};
              for (int k = 0; k < 5; ++k) ds[k] += t[k], dmag[k] += std::fabs(t[k]);
            }
            for (int k = 0; k < 5; ++k)
              ASSERT_NEAR(al[k], ds[k], 1e-5 * dmag[k] + 1e-30) << n << " sum " << k;
          }
          for (const Isa isa : supported_isas()) {
            const fit::GridKernels& g = kernel::kernels_for(isa).grid;
            float t[2];
            g.lloyd(x.data(), wp, n, lo, hi, id, t);
            ASSERT_EQ(g.error(x.data(), wp, n, lo, hi, d, id), e) << isa_name(isa) << " n=" << n;
            ASSERT_EQ(t[0], s[0]) << isa_name(isa) << " n=" << n;
            ASSERT_EQ(t[1], s[1]) << isa_name(isa) << " n=" << n;
            ASSERT_EQ(g.affine_error(x.data(), wp, n, qmax, d, m, id), ea)
                << isa_name(isa) << " n=" << n;
            float bl[5];
            g.affine_lloyd(x.data(), wp, n, qmax, m, id, bl);
            for (int k = 0; k < 5; ++k) ASSERT_EQ(bl[k], al[k]) << isa_name(isa) << " sum " << k;
          }
        }
      }
    }
  }
}

// The 16-value codebooks: codebook_value16 (a count, no search) picks what CodebookLevels::nearest
// (a binary search) picks, ties and the ends included; the codebook error and Lloyd sums match a
// double evaluation, and every tier the reference's bits.
TEST(KernelFit, CodebookSumsMatchRefBitwise) {
  const fit::GridKernels& ref = kernel::ref_kernels().grid;
  for (const auto* table : {&formats::kIq4nlValues, &formats::kNf4Values}) {
    const fit::CodebookLevels lv{*table};
    const float* values = table->data();
    std::vector<float> probes = {-1e9f, 1e9f, 0.0f};
    for (int k = 0; k < 16; ++k) {
      probes.push_back(values[k]);
      if (k > 0) probes.push_back(0.5f * (values[k - 1] + values[k]));  // a tie (or nearly)
      probes.push_back(values[k] * 1.001f + 0.001f);
    }
    for (const float v : probes) {
      ASSERT_EQ(fit::codebook_value16(values, v), lv.value(lv.nearest(v))) << v;
    }
    const float span = values[15] - values[0];
    for (const int64_t n : {1, 7, 16, 17, 32, 33, 64, 100}) {
      auto x = test::gaussian(n, uint64_t(n) + 5);
      auto w = test::gaussian(n, uint64_t(n) + 55);
      for (auto& v : w) v = v * v + 0.01f;
      for (const float d : {0.5f / span, 2.0f / span, 4.0f / span}) {
        const float id = 1.0f / d;
        for (const float* wp :
             {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
          const float e = ref.codebook_error(x.data(), wp, n, values, d, id);
          float s[2];
          ref.codebook_lloyd(x.data(), wp, n, values, id, s);
          double de = 0, dxq = 0, dqq = 0, mag = 0;
          for (int64_t i = 0; i < n; ++i) {
            const double q = lv.value(lv.nearest(x[size_t(i)] * id));
            const double wi = wp ? wp[i] : 1.0, r = x[size_t(i)] - double(d * float(q));
            de += wi * r * r, dxq += wi * x[size_t(i)] * q, dqq += wi * q * q;
            mag += std::fabs(wi * x[size_t(i)] * q);
          }
          ASSERT_NEAR(e, de, 1e-5 * de + 1e-30) << n;
          ASSERT_NEAR(s[0], dxq, 1e-5 * mag + 1e-30) << n;
          ASSERT_NEAR(s[1], dqq, 1e-5 * dqq + 1e-30) << n;
          for (const Isa isa : supported_isas()) {
            const fit::GridKernels& g = kernel::kernels_for(isa).grid;
            float t[2];
            g.codebook_lloyd(x.data(), wp, n, values, id, t);
            ASSERT_EQ(g.codebook_error(x.data(), wp, n, values, d, id), e) << isa_name(isa);
            ASSERT_EQ(t[0], s[0]) << isa_name(isa) << " n=" << n;
            ASSERT_EQ(t[1], s[1]) << isa_name(isa) << " n=" << n;
          }
        }
      }
    }
  }
}

// Every tier's codebook level is codebook_value16's, read back through the Lloyd batch with x =
// 1 (lane k's Σ x q is the level of id[k] itself): at and one to three ulps either side of each
// switch point (the midpoints, ties included), of each of the AVX-512 tier's 32 cells' ends, at
// ±1e30 and at random points. Three codebooks: NF4, IQ4_NL, and one whose switch points crowd
// into one cell (the search the cells fall back to).
TEST(KernelFit, CodebookLevelsMatchReferenceAtSwitches) {
  std::array<float, 16> crowded{};
  for (int k = 0; k < 16; ++k)
    crowded[size_t(k)] = k < 4 ? -1.0f + 0.01f * float(k) : float(k) / 15;
  for (const auto* table : {&formats::kNf4Values, &formats::kIq4nlValues,
                            static_cast<const std::array<float, 16>*>(&crowded)}) {
    const float* values = table->data();
    const float span = values[15] - values[0];
    std::vector<float> centres = {0.0f};
    for (int k = 1; k < 16; ++k) centres.push_back(0.5f * (values[k - 1] + values[k]));
    for (int c = 0; c <= 32; ++c) centres.push_back(values[0] + float(c) * (span / 32.0f));
    std::vector<float> probes = {-1e30f, 1e30f};
    for (float v : centres) {
      float lo = v, hi = v;
      probes.push_back(v);
      for (int u = 0; u < 3; ++u) {
        lo = std::nextafter(lo, -INFINITY), hi = std::nextafter(hi, INFINITY);
        probes.push_back(lo), probes.push_back(hi);
      }
    }
    const auto r = test::gaussian(2000, 77);
    for (const float g : r) probes.push_back(values[0] + span * (0.5f + 0.35f * g));
    const float one = 1.0f;
    for (const Isa isa : supported_isas()) {
      const fit::GridKernels& g = kernel::kernels_for(isa).grid;
      std::vector<float> sxq(probes.size()), sqq(probes.size());
      for (size_t k0 = 0; k0 < probes.size(); k0 += 48) {
        const int count = int(std::min<size_t>(48, probes.size() - k0));
        g.codebook_lloyd_batch(&one, nullptr, 1, values, probes.data() + k0, count, sxq.data() + k0,
                               sqq.data() + k0);
      }
      for (size_t k = 0; k < probes.size(); ++k) {
        ASSERT_EQ(sxq[k], fit::codebook_value16(values, probes[k]))
            << isa_name(isa) << " codebook from " << values[0] << ", v = " << probes[k];
      }
    }
  }
}

// The batch sums (a scale per lane) give each scale's single sum, bit for bit, on every tier:
// lengths around the 16 lanes, batch sizes around the vector widths, grids and codebooks,
// with and without weights.
TEST(KernelFit, BatchSumsMatchSingle) {
  for (const int64_t n : {1, 15, 16, 17, 32, 33, 100, 256}) {
    auto x = test::gaussian(n, uint64_t(n) + 3);
    auto w = test::gaussian(n, uint64_t(n) + 33);
    for (auto& v : w) v = v * v + 0.01f;
    x[size_t(n / 3)] *= 5;
    float amax = 0;
    for (const float v : x) amax = std::max(amax, std::fabs(v));
    for (const int count : {1, 2, 8, 9, 16, 17, 34}) {
      std::vector<float> d(static_cast<size_t>(count)), id(static_cast<size_t>(count));
      for (int k = 0; k < count; ++k) {
        d[size_t(k)] = amax / (7.0f * (0.7f + 0.05f * float(k)));
        id[size_t(k)] = 1.0f / d[size_t(k)];
      }
      for (const float* wp :
           {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
        for (const Isa isa : supported_isas()) {
          const fit::GridKernels& g = kernel::kernels_for(isa).grid;
          std::vector<float> e(static_cast<size_t>(count)), a(e), b(e);
          g.error_batch(x.data(), wp, n, -8, 7, d.data(), id.data(), count, e.data());
          g.lloyd_batch(x.data(), wp, n, -8, 7, id.data(), count, a.data(), b.data());
          for (int k = 0; k < count; ++k) {
            float s[2];
            g.lloyd(x.data(), wp, n, -8, 7, id[size_t(k)], s);
            ASSERT_EQ(e[size_t(k)], g.error(x.data(), wp, n, -8, 7, d[size_t(k)], id[size_t(k)]))
                << isa_name(isa) << " n=" << n << " k=" << k;
            ASSERT_EQ(a[size_t(k)], s[0]) << isa_name(isa) << " n=" << n << " k=" << k;
            ASSERT_EQ(b[size_t(k)], s[1]) << isa_name(isa) << " n=" << n << " k=" << k;
          }
          // Bounds per scale (the asymmetric ints' zero points): errors and Lloyd sums.
          std::vector<float> lo(static_cast<size_t>(count)), hi(lo), f(lo);
          for (int k = 0; k < count; ++k)
            lo[size_t(k)] = float(-(k % 16)), hi[size_t(k)] = 15.0f + lo[size_t(k)];
          g.grid_var_batch(x.data(), wp, n, lo.data(), hi.data(), d.data(), id.data(), count,
                           e.data(), a.data(), b.data());
          g.grid_var_batch(x.data(), wp, n, lo.data(), hi.data(), d.data(), id.data(), count,
                           f.data(), nullptr, nullptr);
          for (int k = 0; k < count; ++k) {
            float sums[2];
            const size_t u = size_t(k);
            g.lloyd(x.data(), wp, n, lo[u], hi[u], id[u], sums);
            const float want = g.error(x.data(), wp, n, lo[u], hi[u], d[u], id[u]);
            ASSERT_EQ(e[u], want) << isa_name(isa) << " n=" << n << " k=" << k;
            ASSERT_EQ(f[u], want) << isa_name(isa) << " n=" << n << " k=" << k;
            ASSERT_EQ(a[u], sums[0]) << isa_name(isa) << " n=" << n << " k=" << k;
            ASSERT_EQ(b[u], sums[1]) << isa_name(isa) << " n=" << n << " k=" << k;
          }
          // Affine: offsets around the block's low end (the K-quants' neighbour pairs).
          std::vector<float> m(static_cast<size_t>(count));
          for (int k = 0; k < count; ++k) m[size_t(k)] = -amax * (0.9f + 0.01f * float(k));
          g.affine_error_batch(x.data(), wp, n, 15, d.data(), m.data(), id.data(), count, e.data());
          for (int k = 0; k < count; ++k) {
            ASSERT_EQ(e[size_t(k)], g.affine_error(x.data(), wp, n, 15, d[size_t(k)], m[size_t(k)],
                                                   id[size_t(k)]))
                << isa_name(isa) << " n=" << n << " k=" << k;
          }
          for (const auto* table : {&formats::kIq4nlValues, &formats::kNf4Values}) {
            const float* values = table->data();
            g.codebook_error_batch(x.data(), wp, n, values, d.data(), id.data(), count, e.data());
            g.codebook_lloyd_batch(x.data(), wp, n, values, id.data(), count, a.data(), b.data());
            for (int k = 0; k < count; ++k) {
              float s[2];
              g.codebook_lloyd(x.data(), wp, n, values, id[size_t(k)], s);
              ASSERT_EQ(e[size_t(k)],
                        g.codebook_error(x.data(), wp, n, values, d[size_t(k)], id[size_t(k)]))
                  << isa_name(isa) << " n=" << n << " k=" << k;
              ASSERT_EQ(a[size_t(k)], s[0]) << isa_name(isa) << " n=" << n << " k=" << k;
              ASSERT_EQ(b[size_t(k)], s[1]) << isa_name(isa) << " n=" << n << " k=" << k;
            }
          }
        }
      }
    }
  }
}

// fit_symmetric on each tier's kernels (the 16-lane tier's whole vector search, the others'
// rounds over batch sums) chooses the reference tier's scale, bit for bit: uniform grids from
// ternary to 8 bits, both 16-value codebooks, fp16 and unrounded scales, weights or none, and
// the blocks where the rules matter — equal values (many scales tie), a lone value, values so
// small the fp16 scale is subnormal, so large no fp16 scale is finite, and zeros.
TEST(KernelFit, SymmetricSearchMatchesReference) {
  const fit::GridKernels& ref = kernel::ref_kernels().grid;
  std::vector<std::vector<float>> blocks;
  for (const int64_t n : {16, 17, 32, 64, 100, 256}) {
    for (uint64_t seed = 0; seed < 6; ++seed) {
      auto x = test::gaussian(n, seed * 977 + uint64_t(n));
      if (seed == 1) x[size_t(seed * 7 % uint64_t(n))] *= 8;  // an outlier
      if (seed == 2) {
        for (auto& v : x) v *= 1e-6f;  // fp16-subnormal scales
      }
      if (seed == 3) {
        for (auto& v : x) v = std::round(v * 2) * 0.25f;  // few distinct values: ties
      }
      blocks.push_back(std::move(x));
    }
    blocks.push_back(std::vector<float>(size_t(n), 0.5f));  // all equal
    std::vector<float> lone(size_t(n), 0.0f);
    lone[size_t(n / 2)] = -3.0f;
    blocks.push_back(lone);                                 // a lone value
    blocks.push_back(std::vector<float>(size_t(n), 0.0f));  // zeros
    blocks.push_back(std::vector<float>(size_t(n), 9e5f));  // no finite fp16 scale
  }
  const fit::IntLevels grids[] = {{-1, 1}, {-2, 1}, {-4, 3}, {-8, 7}, {-16, 15}, {-127, 127}};
  const fit::CodebookLevels books[] = {{formats::kIq4nlValues}, {formats::kNf4Values}};
  int checked = 0;
  for (const auto& x : blocks) {
    const int64_t n = int64_t(x.size());
    auto w = test::gaussian(n, uint64_t(n) + 5);
    for (auto& v : w) v = v * v + 0.01f;
    for (const float* wp :
         {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
      for (const Isa isa : supported_isas()) {
        const fit::GridKernels* g = &kernel::kernels_for(isa).grid;
        auto same = [&](float a, float b, const char* what) {
          ASSERT_EQ(std::bit_cast<uint32_t>(a), std::bit_cast<uint32_t>(b))
              << isa_name(isa) << " " << what << " n=" << n << " x0=" << x[0] << " " << a << " vs "
              << b;
          ++checked;
        };
        for (const auto& lv : grids) {
          same(fit::fit_symmetric(x.data(), wp, n, lv, fit::Fp16Round{}, 2, g),
               fit::fit_symmetric(x.data(), wp, n, lv, fit::Fp16Round{}, 2, &ref), "grid fp16");
          same(fit::fit_symmetric(x.data(), wp, n, lv, fit::NoRound{}, 2, g),
               fit::fit_symmetric(x.data(), wp, n, lv, fit::NoRound{}, 2, &ref), "grid");
        }
        for (const auto& lv : books) {
          same(fit::fit_symmetric(x.data(), wp, n, lv, fit::Fp16Round{}, 2, g),
               fit::fit_symmetric(x.data(), wp, n, lv, fit::Fp16Round{}, 2, &ref), "book fp16");
          same(fit::fit_symmetric(x.data(), wp, n, lv, fit::NoRound{}, 3, g),
               fit::fit_symmetric(x.data(), wp, n, lv, fit::NoRound{}, 3, &ref), "book");
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

// fit_affine on each tier's kernels (the 16-lane tier's vector search over the starts) chooses
// the reference tier's (scale, offset), bit for bit: 2- to 6-bit grids, a free or a non-positive
// offset, fp16 or unrounded, weights or none, and the edge blocks (equal values, a lone value,
// a constant block, fp16-subnormal values, values past fp16's range).
TEST(KernelFit, AffineSearchMatchesReference) {
  const fit::GridKernels& ref = kernel::ref_kernels().grid;
  std::vector<std::vector<float>> blocks;
  for (const int64_t n : {16, 17, 32, 64, 100}) {
    for (uint64_t seed = 0; seed < 6; ++seed) {
      auto x = test::gaussian(n, seed * 131 + uint64_t(n));
      if (seed == 1) x[size_t(seed * 5 % uint64_t(n))] *= 8;
      if (seed == 2) {
        for (auto& v : x) v *= 1e-6f;
      }
      if (seed == 3) {
        for (auto& v : x) v = std::round(v * 2) * 0.25f;
      }
      if (seed == 4) {
        for (auto& v : x) v = std::fabs(v) + 0.5f;  // all positive: the offset matters
      }
      blocks.push_back(std::move(x));
    }
    blocks.push_back(std::vector<float>(size_t(n), 0.5f));
    std::vector<float> lone(size_t(n), 0.0f);
    lone[size_t(n / 2)] = -3.0f;
    blocks.push_back(lone);
    auto big = test::gaussian(n, 99);
    for (auto& v : big) v *= 4e5f;
    blocks.push_back(big);
  }
  int checked = 0;
  for (const auto& x : blocks) {
    const int64_t n = int64_t(x.size());
    auto w = test::gaussian(n, uint64_t(n) + 8);
    for (auto& v : w) v = v * v + 0.01f;
    for (const float* wp :
         {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())}) {
      for (const Isa isa : supported_isas()) {
        const fit::GridKernels* g = &kernel::kernels_for(isa).grid;
        for (const int qmax : {3, 7, 15, 31, 63}) {
          for (const bool nonpos : {false, true}) {
            const auto a = fit::fit_affine(x.data(), wp, n, qmax, nonpos, fit::Fp16Round{},
                                           fit::Fp16Round{}, 14, 3, g);
            const auto b = fit::fit_affine(x.data(), wp, n, qmax, nonpos, fit::Fp16Round{},
                                           fit::Fp16Round{}, 14, 3, &ref);
            const auto c = fit::fit_affine(x.data(), wp, n, qmax, nonpos, fit::NoRound{},
                                           fit::NoRound{}, 14, 3, g);
            const auto d = fit::fit_affine(x.data(), wp, n, qmax, nonpos, fit::NoRound{},
                                           fit::NoRound{}, 14, 3, &ref);
            ASSERT_EQ(std::bit_cast<uint32_t>(a.d), std::bit_cast<uint32_t>(b.d))
                << isa_name(isa) << " n=" << n << " qmax=" << qmax << " x0=" << x[0];
            ASSERT_EQ(std::bit_cast<uint32_t>(a.m), std::bit_cast<uint32_t>(b.m))
                << isa_name(isa) << " n=" << n << " qmax=" << qmax << " x0=" << x[0];
            ASSERT_EQ(std::bit_cast<uint32_t>(c.d), std::bit_cast<uint32_t>(d.d))
                << isa_name(isa) << " n=" << n << " qmax=" << qmax << " x0=" << x[0];
            ASSERT_EQ(std::bit_cast<uint32_t>(c.m), std::bit_cast<uint32_t>(d.m))
                << isa_name(isa) << " n=" << n << " qmax=" << qmax << " x0=" << x[0];
            checked += 2;
          }
        }
      }
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(KernelDispatch, IsaNamesAndSelection) {
  EXPECT_TRUE(isa_supported(Isa::kRef));
  EXPECT_TRUE(isa_supported(active_isa()));
  EXPECT_STREQ(kernel_isa(), isa_name(active_isa()));
  for (const Isa isa : supported_isas()) EXPECT_EQ(kernel::kernels_for(isa).isa, isa);
  // Every format with an activation type has a reference kernel.
  for (const Format& f : kernel_formats()) {
    const auto& fk = kernel::ref_kernels().formats[kernel::format_index(f)];
    EXPECT_TRUE(fk.dot != nullptr && fk.gemm != nullptr) << f.name();
  }
}

}  // namespace
}  // namespace lowbit
