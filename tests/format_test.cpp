// Every number format, through the list: registry consistency, tiling and fallbacks, round-trip
// error inside a two-sided band around an independent naive quantizer written here, special rows
// (zero, constant, huge, tiny), NaN/Inf rejection, importance weighting, idempotence, every code
// reachable, and the method interface (fit / round_value / encode / decode) agreeing with itself.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <ostream>
#include <set>
#include <vector>

#include "format/fit.h"
#include "lowbit/error.h"
#include "lowbit/format.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

using test::gaussian;

// ---- an independent naive quantizer: the classic round-to-nearest of each grid ----------------

enum class Grid { kInt, kAffine, kAffineIntZero, kCodebook, kSign };

struct Spec {
  const char* name;
  Grid grid;
  int lo, hi;         // kInt: integer levels lo..hi; kAffine: 0..hi
  int block;          // elements sharing one (float) scale in the naive quantizer; 0 = row
  const float* book;  // kCodebook: 16 ascending values
  int levels() const {
    return grid == Grid::kSign ? 2 : grid == Grid::kCodebook ? 16 : hi - lo + 1;
  }
};

// QLoRA's NF4 (Dettmers et al. 2023, appendix) and ggml's IQ4_NL grid, written out here again so
// the naive reference shares nothing with src/.
constexpr float kNf4[16] = {
    -1.0f,      -0.6961928f, -0.5250731f, -0.3949175f, -0.2844414f, -0.1847734f, -0.0910500f, 0.0f,
    0.0795803f, 0.1609302f,  0.2461123f,  0.3379152f,  0.4407098f,  0.5626170f,  0.7229568f,  1.0f};
constexpr float kIq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                            1,    13,   25,  38,  53,  69,  89,  113};

const Spec kSpecs[] = {
    {"q8_0", Grid::kInt, -127, 127, 32, nullptr},
    {"q5_0", Grid::kInt, -16, 15, 32, nullptr},
    {"q5_1", Grid::kAffine, 0, 31, 32, nullptr},
    {"q4_0", Grid::kInt, -8, 7, 32, nullptr},
    {"q4_1", Grid::kAffine, 0, 15, 32, nullptr},
    {"iq4_nl", Grid::kCodebook, 0, 15, 32, kIq4},
    {"q6_k", Grid::kInt, -32, 31, 16, nullptr},
    {"q5_k", Grid::kAffine, 0, 31, 32, nullptr},
    {"q4_k", Grid::kAffine, 0, 15, 32, nullptr},
    {"q3_k", Grid::kInt, -4, 3, 16, nullptr},
    {"q2_k", Grid::kAffine, 0, 3, 16, nullptr},
    {"iq4_xs", Grid::kCodebook, 0, 15, 32, kIq4},
    {"tq2_0", Grid::kInt, -1, 1, 256, nullptr},
    {"tq1_0", Grid::kInt, -1, 1, 256, nullptr},
    {"nf4", Grid::kCodebook, 0, 15, 64, kNf4},
    {"nf4_dq", Grid::kCodebook, 0, 15, 64, kNf4},
    {"bin1", Grid::kSign, 0, 1, 64, nullptr},
    {"int8", Grid::kInt, -128, 127, 0, nullptr},
    {"int6_g32", Grid::kInt, -32, 31, 32, nullptr},
    {"int5_g32", Grid::kInt, -16, 15, 32, nullptr},
    {"int4_g32", Grid::kInt, -8, 7, 32, nullptr},
    {"int4_g32_asym", Grid::kAffineIntZero, 0, 15, 32, nullptr},
    {"int4_g128", Grid::kInt, -8, 7, 128, nullptr},
    {"int4_g100_asym", Grid::kAffineIntZero, 0, 15, 100, nullptr},
    {"int3_g32", Grid::kInt, -4, 3, 32, nullptr},
    {"int3_g32_asym", Grid::kAffineIntZero, 0, 7, 32, nullptr},
    {"int2_g32", Grid::kInt, -2, 1, 32, nullptr},
    {"int2_g32_asym", Grid::kAffineIntZero, 0, 3, 32, nullptr},
    {"int6_g32_asym", Grid::kAffineIntZero, 0, 63, 32, nullptr},
    {"int5_g48_asym", Grid::kAffineIntZero, 0, 31, 48, nullptr},
    {"tern_g64", Grid::kInt, -1, 1, 64, nullptr},
    {"tern_g48", Grid::kInt, -1, 1, 48, nullptr},
};

void PrintTo(const Spec& s, std::ostream* os) {
  *os << s.name;
}

float nearest_in(const float* book, float v) {
  float best = book[0];
  for (int k = 1; k < 16; ++k)
    if (std::fabs(book[k] - v) < std::fabs(best - v)) best = book[k];
  return best;
}

// Naive RTN: the largest magnitude maps onto the grid's longer end (int, codebook), or [min, max]
// onto 0..hi (affine), or signs times mean |x| (sign).
std::vector<float> naive(const Spec& s, const std::vector<float>& x, int64_t K) {
  std::vector<float> y(x.size());
  const int64_t bl = s.block == 0 ? K : s.block;
  for (int64_t r = 0; r < int64_t(x.size()) / K; ++r) {
    for (int64_t b0 = 0; b0 < K; b0 += bl) {
      const int64_t n = std::min(bl, K - b0);
      const float* xb = &x[size_t(r * K + b0)];
      float* yb = &y[size_t(r * K + b0)];
      float xm = 0, mn = xb[0], mx = xb[0], sabs = 0;
      for (int64_t i = 0; i < n; ++i) {
        if (std::fabs(xb[i]) > std::fabs(xm)) xm = xb[i];
        mn = std::min(mn, xb[i]), mx = std::max(mx, xb[i]), sabs += std::fabs(xb[i]);
      }
      for (int64_t i = 0; i < n; ++i) {
        if (s.grid == Grid::kInt) {
          const float end = std::abs(s.lo) >= std::abs(s.hi) ? float(s.lo) : float(s.hi);
          const float d = xm / end;
          yb[i] = d == 0 ? 0 : d * std::clamp(std::round(xb[i] / d), float(s.lo), float(s.hi));
        } else if (s.grid == Grid::kAffineIntZero) {  // GPTQ's: range holds 0, integer zero
          const float lo = std::min(mn, 0.0f), hi = std::max(mx, 0.0f), d = (hi - lo) / float(s.hi);
          const float z = d == 0 ? 0 : std::round(-lo / d);
          yb[i] = d == 0 ? 0 : d * (std::clamp(std::round(xb[i] / d) + z, 0.0f, float(s.hi)) - z);
        } else if (s.grid == Grid::kAffine) {
          const float d = (mx - mn) / float(s.hi);
          yb[i] =
              d == 0 ? mn : mn + d * std::clamp(std::round((xb[i] - mn) / d), 0.0f, float(s.hi));
        } else if (s.grid == Grid::kCodebook) {
          const float end = std::fabs(s.book[0]) >= std::fabs(s.book[15]) ? s.book[0] : s.book[15];
          const float d = xm / end;
          yb[i] = d == 0 ? 0 : d * nearest_in(s.book, xb[i] / d);
        } else {
          yb[i] = (xb[i] >= 0 ? 1.0f : -1.0f) * sabs / float(n);
        }
      }
    }
  }
  return y;
}

double rel_rmse(const std::vector<float>& x, const std::vector<float>& y) {
  double e = 0, r = 0;
  for (size_t i = 0; i < x.size(); ++i)
    e += double(x[i] - y[i]) * (x[i] - y[i]), r += double(x[i]) * x[i];
  return r > 0 ? std::sqrt(e / r) : std::sqrt(e);
}

std::vector<float> roundtrip(const Format& f, const std::vector<float>& x, int64_t K,
                             const float* imp = nullptr) {
  const int64_t rows = int64_t(x.size()) / K;
  std::vector<uint8_t> q(f.row_bytes(K) * uint64_t(rows));
  std::vector<float> y(x.size());
  f.quantize(x.data(), rows, K, imp, q.data());
  f.dequantize(q.data(), rows, K, y.data());
  return y;
}

// ---- registry -------------------------------------------------------------------------------

TEST(FormatRegistry, NamesAndTypeIdsAreUniqueAndRoundTrip) {
  std::set<std::string> names;
  std::set<uint32_t> ids;
  for (const auto& info : all_formats()) {
    EXPECT_TRUE(names.insert(std::string(info.name)).second) << info.name;
    EXPECT_TRUE(ids.insert(info.type_id).second) << info.name;
    const bool grouped = info.block_elems == 0;
    for (uint32_t g :
         grouped ? std::vector<uint32_t>{0, 1, 32, 100, 65535} : std::vector<uint32_t>{0}) {
      const Format f(info, g);
      const auto parsed = Format::find(f.name());
      ASSERT_TRUE(parsed.has_value()) << f.name();
      EXPECT_EQ(*parsed, f) << f.name();
      const auto by_id = Format::from_gguf_type(f.gguf_type());
      ASSERT_TRUE(by_id.has_value()) << f.name();
      EXPECT_EQ(*by_id, f) << f.name();
    }
    EXPECT_EQ(info.type_id < kPrivateTypeBase,
              info.description.find("lowbit") == std::string_view::npos && !grouped)
        << info.name << ": ggml ids for ggml formats, private ids for lowbit's own";
  }
}

TEST(FormatRegistry, ParseRejectsWhatIsNotAFormat) {
  for (const char* bad : {"", "q4_2", "q4_0_g32", "q4_0_asym", "int4_g0", "int4_g65536", "int7",
                          "int4_gx", "nf4_g64", "Q4_0"}) {
    EXPECT_FALSE(Format::find(bad).has_value()) << bad;
  }
  EXPECT_THROW(Format::parse("q9_9"), Error);
  EXPECT_FALSE(Format::from_gguf_type(4).has_value());   // ggml's removed Q4_2
  EXPECT_FALSE(Format::from_gguf_type(16).has_value());  // IQ2_XXS: not (yet) supported
  EXPECT_FALSE(Format::from_gguf_type(kPrivateTypeBase | (63u << 16)).has_value());
  EXPECT_FALSE(Format::from_gguf_type(Format::parse("nf4").gguf_type() | 32).has_value());
}

TEST(FormatRegistry, TernaryFallsBackToTernaryOrToTheGgufChain) {
  const Format tq2 = Format::parse("tq2_0"), tern = Format::parse("tern_g64");
  EXPECT_EQ(fallback_for(tq2, 256, FallbackPolicy::kGgml), tq2);
  EXPECT_EQ(fallback_for(tq2, 64, FallbackPolicy::kLowbit), tern);
  EXPECT_EQ(fallback_for(Format::parse("tq1_0"), 172, FallbackPolicy::kLowbit), tern);
  // llama.cpp's files keep GGUF types: past tern_g64 to q4_0 as before, F16 where nothing tiles.
  EXPECT_EQ(fallback_for(tq2, 64, FallbackPolicy::kGgml), Format::parse("q4_0"));
  EXPECT_EQ(fallback_for(tq2, 64, FallbackPolicy::kAuto), Format::parse("q4_0"));
  EXPECT_EQ(fallback_for(tq2, 172, FallbackPolicy::kGgml), Format::parse("f16"));
  // tern_gN holds int2_gN's bytes with codes 1..3 only: the same decoder gives the same values.
  const auto x = test::student_t(172, 3);
  std::vector<uint8_t> q(tern.row_bytes(172));
  tern.quantize(x.data(), 1, 172, nullptr, q.data());
  std::vector<float> y(172), y2(172);
  tern.dequantize(q.data(), 1, 172, y.data());
  Format::parse("int2_g64").dequantize(q.data(), 1, 172, y2.data());
  EXPECT_EQ(y, y2);
  for (int64_t g = 0; g < 3; ++g) {
    float d;
    uint16_t h;
    std::memcpy(&h, q.data() + g * 18, 2);
    d = fp16_to_f32(h);
    for (int64_t i = g * 64; i < std::min<int64_t>(172, g * 64 + 64); ++i)
      EXPECT_TRUE(y[size_t(i)] == 0 || y[size_t(i)] == d || y[size_t(i)] == -d) << i;
  }
}

TEST(FormatRegistry, RowBytesTilingAndFallbacks) {
  const Format q40 = Format::parse("q4_0"), q4k = Format::parse("q4_k");
  EXPECT_TRUE(q40.can_tile(64));
  EXPECT_FALSE(q40.can_tile(172));
  EXPECT_THROW(q40.row_bytes(172), Error);
  EXPECT_EQ(q40.row_bytes(4096), 4096u / 32 * 18);
  EXPECT_EQ(q40.resolve_for_row(172), Format::parse("int4_g32"));
  EXPECT_EQ(q4k.resolve_for_row(64), Format::parse("q5_0"));
  EXPECT_EQ(q4k.resolve_for_row(172), Format::parse("int5_g32"));
  // Ternary stays ternary where 256-blocks do not tile: tern_g64 (int2's layout, codes -1..1).
  EXPECT_EQ(Format::parse("tq1_0").resolve_for_row(64), Format::parse("tern_g64"));
  EXPECT_EQ(Format::parse("tq2_0").resolve_for_row(172), Format::parse("tern_g64"));
  EXPECT_EQ(Format::parse("tern_g64").row_bytes(172), 2u * (2 + 16) + (2 + 11));
  // Ragged last group: 172 = 5 * 32 + 12 -> 5 * (2 + 16) + (2 + 6) bytes.
  EXPECT_EQ(Format::parse("int4_g32").row_bytes(172), 5u * 18 + 8);
  EXPECT_EQ(Format::parse("int3_g32_asym").row_bytes(172), 5u * 15 + (3 + 5));
  EXPECT_EQ(Format::parse("int8").row_bytes(172), 2u + 172);
  // Every format tiles its own block; every chain ends in a format that tiles any length.
  for (const auto& info : all_formats()) {
    const Format f(info, info.block_elems == 0 ? 32 : 0);
    for (int64_t K : {1, 31, 64, 172, 4096})
      EXPECT_TRUE(f.resolve_for_row(K).can_tile(K)) << f.name();
    EXPECT_NEAR(f.bits_per_weight(256), info.nominal_bits, info.block_elems == 0 ? 0 : 1e-12);
  }
}

// ---- per-format properties ------------------------------------------------------------------

class FormatProps : public ::testing::TestWithParam<Spec> {
 protected:
  Format f() const { return Format::parse(GetParam().name); }
};

std::string spec_name(const ::testing::TestParamInfo<Spec>& i) {
  return i.param.name;
}

constexpr int64_t kK = 4096;

// Two-sided band around the naive RTN: the fitted scale search must not lose to it (+2% slack
// for sub-scales and scales stored in 6/8 bits and fp16), and may beat it by a bounded factor only
// (coarse grids gain most from clipping).
void expect_band(const Spec& s, double got, double naive_err, const char* data,
                 double floor = 1.0) {
  const double lower = floor * (s.levels() <= 4 ? 0.4 : s.levels() <= 16 ? 0.7 : 0.8);
  EXPECT_LE(got, naive_err * 1.02) << s.name << " on " << data << ": worse than naive RTN";
  EXPECT_GE(got, naive_err * lower) << s.name << " on " << data << ": suspiciously good";
}

TEST_P(FormatProps, GaussianErrorInBand) {
  const auto x = gaussian(64 * kK, 7);
  const double got = rel_rmse(x, roundtrip(f(), x, kK));
  expect_band(GetParam(), got, rel_rmse(x, naive(GetParam(), x, kK)), "gaussian");
}

TEST_P(FormatProps, HeavyTailedErrorInBand) {
  const auto x = test::student_t(64 * kK, 8, 3);
  const double got = rel_rmse(x, roundtrip(f(), x, kK));
  expect_band(GetParam(), got, rel_rmse(x, naive(GetParam(), x, kK)), "student-t(3)");
}

TEST_P(FormatProps, OutlierColumnsErrorInBand) {
  auto x = gaussian(64 * kK, 9);
  for (int64_t r = 0; r < 64; ++r) {
    for (int64_t c : {5, 777, 2048, 4095}) x[size_t(r * kK + c)] *= 40.0f;
  }
  const double got = rel_rmse(x, roundtrip(f(), x, kK));
  // Clipping searches gain most over naive RTN on outliers: a lower floor.
  expect_band(GetParam(), got, rel_rmse(x, naive(GetParam(), x, kK)), "outlier columns", 0.75);
}

TEST_P(FormatProps, ZeroAndConstantRows) {
  const int64_t K = 512;
  std::vector<float> x(4 * K, 0.0f);
  for (int64_t i = 0; i < K; ++i) x[size_t(K + i)] = 0.7f, x[size_t(2 * K + i)] = -3.25f;
  for (int64_t i = 0; i < K; ++i) x[size_t(3 * K + i)] = (i % 64 == 0) ? 0.0f : 1e-3f;
  const auto y = roundtrip(f(), x, K);
  for (int64_t i = 0; i < K; ++i) ASSERT_EQ(y[size_t(i)], 0.0f) << "zero row, column " << i;
  for (int r = 1; r <= 2; ++r) {
    for (int64_t i = 0; i < K; ++i) {
      const float v = x[size_t(r * K + i)], got = y[size_t(r * K + i)];
      ASSERT_NEAR(got, v, std::fabs(v) * 4e-3) << "constant row " << r << ", column " << i;
    }
  }
  const std::vector<float> row3(x.begin() + 3 * K, x.end()), got3(y.begin() + 3 * K, y.end());
  EXPECT_LT(rel_rmse(row3, got3), GetParam().levels() <= 2 ? 0.2 : 0.02);
}

TEST_P(FormatProps, ErrorIsScaleInvariantAndHugeValuesNeverBecomeInf) {
  const auto x = gaussian(16 * kK, 10);
  const double base = rel_rmse(x, roundtrip(f(), x, kK));
  for (double scale : {1e4, 1e-3}) {
    std::vector<float> xs(x.size());
    for (size_t i = 0; i < x.size(); ++i) xs[i] = float(x[i] * scale);
    EXPECT_NEAR(rel_rmse(xs, roundtrip(f(), xs, kK)), base, base * 0.02 + 1e-6) << scale;
  }
  std::vector<float> huge(x.size());
  for (size_t i = 0; i < x.size(); ++i) huge[i] = x[i] * 1e7f;
  try {
    const auto y = roundtrip(f(), huge, kK);
    for (float v : y) ASSERT_TRUE(std::isfinite(v));
    EXPECT_NEAR(rel_rmse(huge, y), base, base * 0.02 + 1e-6);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("range"), std::string::npos) << e.what();
  }
}

TEST_P(FormatProps, NanAndInfAreRejectedWithTheirPosition) {
  for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
    auto x = gaussian(4 * 256, 11);
    x[2 * 256 + 17] = bad;
    std::vector<uint8_t> q(f().row_bytes(256) * 4);
    try {
      f().quantize(x.data(), 4, 256, nullptr, q.data());
      FAIL() << "accepted " << bad;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("row 2, column 17"), std::string::npos) << e.what();
    }
  }
}

TEST_P(FormatProps, ImportanceLowersTheWeightedError) {
  const auto x = gaussian(32 * kK, 12);
  std::vector<float> imp(kK);
  Rng rng(13);
  for (auto& v : imp) v = float(std::exp(2.0 * rng.normal()));  // log-normal, spread ~e^4
  auto werr = [&](const std::vector<float>& y) {
    double e = 0;
    for (size_t i = 0; i < x.size(); ++i) e += imp[i % kK] * double(x[i] - y[i]) * (x[i] - y[i]);
    return e;
  };
  const double plain = werr(roundtrip(f(), x, kK)),
               weighted = werr(roundtrip(f(), x, kK, imp.data()));
  EXPECT_LT(weighted, plain * 0.995) << GetParam().name;
}

TEST_P(FormatProps, RequantizingLosesLittle) {
  // Dequantized values are representable: quantizing them again loses a small fraction of the
  // first pass's error at most (the scale search need not find the very same parameters).
  const auto x = gaussian(16 * kK, 14);
  const auto y = roundtrip(f(), x, kK);
  // K-quants re-fit their 6-bit sub-scales and mins and find other ones: they lose more.
  const bool kquant = f().info().block_elems == 256 && GetParam().block < 256;
  EXPECT_LE(rel_rmse(y, roundtrip(f(), y, kK)), (kquant ? 0.5 : 0.2) * rel_rmse(x, y))
      << GetParam().name;
}

TEST_P(FormatProps, RepresentableBlocksUsingEveryCodeRoundTrip) {
  // Every block holds every level of the grid at scale 0.5 (affine: plus an offset of -3):
  // representable exactly, so each code must come back (K-quants: up to their 6-bit sub-scales).
  const Spec& s = GetParam();
  const int64_t sub = s.block == 0 ? kK : s.block;
  std::vector<float> x(kK);
  for (int64_t i = 0; i < kK; ++i) {
    // Sub-blocks shorter than the grid spread its codes out, keeping both ends.
    const int64_t j = i % sub, len = std::min(sub, kK - (i - j));  // ragged last group: len < sub
    const int k = len >= s.levels() ? int(j % s.levels())
                                    : int((j * (s.levels() - 1) + (len - 1) / 2) / (len - 1));
    switch (s.grid) {
      case Grid::kInt:
        x[size_t(i)] = 0.5f * float(s.lo + k);
        break;
      case Grid::kAffine:
        x[size_t(i)] = 0.5f * float(k) - 3.0f;
        break;
      case Grid::kAffineIntZero:
        x[size_t(i)] = 0.5f * float(k - s.hi / 3);
        break;
      case Grid::kCodebook:
        x[size_t(i)] = 0.5f * s.book[k];
        break;
      case Grid::kSign:
        x[size_t(i)] = k ? 0.5f : -0.5f;
        break;
    }
  }
  const auto y = roundtrip(f(), x, kK);
  const bool kquant = f().info().block_elems == 256 && s.block < 256;
  EXPECT_LE(rel_rmse(x, y), kquant ? 4e-3 : 1e-6) << s.name;
  if (sub >= s.levels()) {
    const std::set<float> distinct(y.begin(), y.begin() + sub);
    EXPECT_EQ(int(distinct.size()), s.levels()) << s.name;
  }
}

TEST_P(FormatProps, MethodInterfaceAgreesWithTheCodec) {
  // fit + encode is RTN; round_value(x_i) must be exactly what decode gives for element i.
  const auto& info = f().info();
  const auto x = test::student_t(kK, 15);
  const int64_t n = f().block_elems(kK);
  std::vector<uint8_t> blk(info.block_bytes(n));
  std::vector<float> y(static_cast<size_t>(n));
  for (int64_t b0 = 0; b0 + n <= kK && b0 < 4 * n; b0 += n) {
    info.fit(&x[size_t(b0)], nullptr, n, blk.data());
    info.encode(&x[size_t(b0)], n, blk.data());
    info.decode(blk.data(), n, y.data());
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(info.round_value(x[size_t(b0 + i)], blk.data(), n, i), y[size_t(i)]) << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, FormatProps, ::testing::ValuesIn(kSpecs), spec_name);

TEST(FormatCoverage, EveryQuantizedWeightFormatHasASpec) {
  for (const auto& info : all_formats()) {
    if (info.activation_only || info.block_elems == 1) continue;
    bool found = false;
    for (const auto& s : kSpecs) found |= Format::parse(s.name).info().name == info.name;
    EXPECT_TRUE(found) << info.name << " has no property tests";
  }
}

TEST(FloatFormats, RoundTripWithinTheirPrecision) {
  const auto x = gaussian(4 * kK, 16);
  EXPECT_EQ(rel_rmse(x, roundtrip(Format::parse("f32"), x, kK)), 0.0);
  const double f16 = rel_rmse(x, roundtrip(Format::parse("f16"), x, kK));
  const double bf16 = rel_rmse(x, roundtrip(Format::parse("bf16"), x, kK));
  // Uniform relative rounding error of a p-bit mantissa has RMS 2^-p / sqrt(12)... ~ 2^-p/3.
  EXPECT_GT(f16, std::ldexp(1.0, -11) / 6);
  EXPECT_LT(f16, std::ldexp(1.0, -11) / 2);
  EXPECT_GT(bf16, std::ldexp(1.0, -8) / 6);
  EXPECT_LT(bf16, std::ldexp(1.0, -8) / 2);
}

TEST(ActivationFormats, AbsmaxRoundTrip) {
  const auto x = gaussian(4 * kK, 17);
  for (const char* name : {"q8_1", "q8_k"}) {
    const double e = rel_rmse(x, roundtrip(Format::parse(name), x, kK));
    EXPECT_GT(e, 0.002) << name;
    EXPECT_LT(e, 0.012) << name;
  }
}

// The scale searches' inline rounding must equal std::nearbyint (round half to even) everywhere
// (as a value: a zero result may differ in sign, which no caller can see):
// every half-integer and its neighbours in [-2^12, 2^12], the magic-number trick's edge at 2^22,
// and large, tiny and signed-zero values.
TEST(FitRounding, RoundEvenEqualsNearbyint) {
  std::vector<float> v;
  for (int k = -8192; k <= 8192; ++k) {
    const float h = float(k) * 0.5f;
    v.insert(v.end(), {h, std::nextafter(h, -INFINITY), std::nextafter(h, INFINITY)});
  }
  for (float e : {4194304.0f, 8388608.0f, 16777216.0f, 1e30f, 3.4e38f}) {
    for (float x :
         {e, std::nextafter(e, 0.0f), std::nextafter(e, INFINITY), e - 0.5f, e + 0.5f, e - 1.5f}) {
      v.push_back(x), v.push_back(-x);
    }
  }
  v.insert(v.end(), {0.0f, -0.0f, 1e-30f, -1e-30f, 0.49999997f, -0.49999997f, 2.5f, -2.5f});
  lowbit::Rng rng(3);
  for (int i = 0; i < 100000; ++i) v.push_back(float(rng.normal() * 300.0));
  for (float x : v) {
    const float a = fit::round_even(x), b = std::nearbyint(x);
    ASSERT_EQ(a, b) << "x = " << x;  // as values: -0.3 gives +0 here and -0 from nearbyint
  }
}

}  // namespace
}  // namespace lowbit
