// GPTQ against the format interface: with uncorrelated inputs (H = c·I) no error propagates and
// it must equal importance-weighted round-to-nearest byte for byte; with correlated inputs it must
// lower the layer's output error Σ‖(W − Q) x‖² below RTN's for every kind of format (32-blocks,
// codebooks, 256-super-blocks, ragged groups), with and without act-order. Also the searches
// that pick among plain fits by output error: AWQ's clipping, imatrix's weighting.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/rng.h"
#include "quant/clip.h"
#include "quant/gptq.h"
#include "test_util.h"

namespace lowbit {
namespace {

// trace((W - Q) H (W - Q)ᵀ): the summed squared output error over the calibration inputs.
double output_error(const std::vector<float>& W, const std::vector<float>& Q, int64_t rows,
                    int64_t K, const std::vector<double>& H) {
  double e = 0;
  std::vector<double> d(static_cast<size_t>(K));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < K; ++k)
      d[size_t(k)] = double(W[size_t(r * K + k)]) - Q[size_t(r * K + k)];
    for (int64_t i = 0; i < K; ++i) {
      double s = 0;
      for (int64_t j = 0; j < K; ++j) s += H[size_t(i * K + j)] * d[size_t(j)];
      e += d[size_t(i)] * s;
    }
  }
  return e;
}

// Correlated inputs with unequal channel scales (a few outlier channels): X = Z A, n x K.
std::vector<double> correlated_hessian(int64_t K, int64_t n, uint64_t seed) {
  Rng rng(seed);
  std::vector<double> A(static_cast<size_t>(K * K)), H(static_cast<size_t>(K * K), 0.0);
  for (auto& a : A) a = rng.normal() / std::sqrt(double(K));
  for (int64_t k = 0; k < K; ++k) A[size_t(k * K + k)] += 1.0;
  std::vector<double> scale(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) scale[size_t(k)] = (k % 37 == 5) ? 8.0 : 0.5 + rng.uniform();
  std::vector<double> z(static_cast<size_t>(K)), x(static_cast<size_t>(K));
  for (int64_t t = 0; t < n; ++t) {
    for (auto& v : z) v = rng.normal();
    for (int64_t j = 0; j < K; ++j) {
      double s = 0;
      for (int64_t i = 0; i < K; ++i) s += z[size_t(i)] * A[size_t(i * K + j)];
      x[size_t(j)] = s * scale[size_t(j)];
    }
    for (int64_t i = 0; i < K; ++i) {
      for (int64_t j = 0; j < K; ++j) H[size_t(i * K + j)] += x[size_t(i)] * x[size_t(j)];
    }
  }
  return H;
}

std::vector<float> dequantized(const Format& f, const std::vector<uint8_t>& q, int64_t rows,
                               int64_t K) {
  std::vector<float> out(static_cast<size_t>(rows * K));
  f.dequantize(q.data(), rows, K, out.data());
  return out;
}

TEST(Gptq, UncorrelatedInputsGiveImportanceWeightedRtnExactly) {
  const int64_t rows = 24, K = 256;
  const std::vector<float> W = test::gaussian(rows * K, 11);
  std::vector<double> H(static_cast<size_t>(K * K), 0.0);
  for (int64_t k = 0; k < K; ++k) H[size_t(k * K + k)] = 3.0;
  const std::vector<float> imp(static_cast<size_t>(K), 3.0f);
  for (const char* name : {"q4_0", "q8_0", "iq4_nl", "nf4", "int4_g32_asym", "int3_g48", "q4_k",
                           "q6_k", "q2_k", "tq2_0"}) {
    SCOPED_TRACE(name);
    const Format f = Format::parse(name);
    std::vector<uint8_t> g(f.row_bytes(K) * rows), r(g.size());
    std::vector<float> w = W;
    gptq_quantize(f, w.data(), rows, K, H.data(), {}, g.data());
    f.quantize(W.data(), rows, K, imp.data(), r.data());
    EXPECT_EQ(g, r);
  }
}

TEST(Gptq, CorrelatedInputsLowerTheOutputErrorBelowRtn) {
  const int64_t rows = 32, K = 256;
  const std::vector<float> W = test::gaussian(rows * K, 5);
  const std::vector<double> H = correlated_hessian(K, 600, 9);
  std::vector<float> imp(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) imp[size_t(k)] = float(H[size_t(k * K + k)]);
  for (const char* name : {"q4_0", "q4_1", "iq4_nl", "nf4", "int4_g32", "int3_g32", "int2_g32",
                           "int3_g100_asym", "q4_k", "q3_k", "tq2_0"}) {
    for (bool act_order : {false, true}) {
      SCOPED_TRACE(std::string(name) + (act_order ? " act-order" : ""));
      const Format f = Format::parse(name);
      std::vector<uint8_t> g(f.row_bytes(K) * rows), r(g.size());
      std::vector<float> w = W;
      gptq_quantize(f, w.data(), rows, K, H.data(), {.act_order = act_order}, g.data());
      f.quantize(W.data(), rows, K, imp.data(), r.data());
      const double eg = output_error(W, dequantized(f, g, rows, K), rows, K, H);
      const double er = output_error(W, dequantized(f, r, rows, K), rows, K, H);
      EXPECT_LT(eg, 0.9 * er) << "gptq " << eg << " rtn " << er;
      EXPECT_GT(eg, 0.0);
    }
  }
}

TEST(Gptq, DeadInputsAndRankDeficientHessians) {
  const int64_t rows = 8, K = 64;
  const std::vector<float> W = test::gaussian(rows * K, 3);
  // Only 10 tokens: rank-deficient, and column 7 never active.
  std::vector<double> H(static_cast<size_t>(K * K), 0.0);
  Rng rng(4);
  for (int t = 0; t < 10; ++t) {
    std::vector<double> x(static_cast<size_t>(K));
    for (auto& v : x) v = rng.normal();
    x[7] = 0;
    for (int64_t i = 0; i < K; ++i) {
      for (int64_t j = 0; j < K; ++j) H[size_t(i * K + j)] += x[size_t(i)] * x[size_t(j)];
    }
  }
  const Format f = Format::parse("q4_0");
  std::vector<uint8_t> g(f.row_bytes(K) * rows);
  std::vector<float> w = W;
  gptq_quantize(f, w.data(), rows, K, H.data(), {}, g.data());
  const std::vector<float> q = dequantized(f, g, rows, K);
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(q[size_t(r * K + 7)], 0.0f);  // dead: zeroed
  for (float v : q) EXPECT_TRUE(std::isfinite(v));
}

// AWQ's clipping search: with no shrink allowed it is the format's own importance-weighted fit,
// byte for byte; with shrinking it never raises the block-diagonal output error it minimises (ratio
// 1 stays a candidate) and, on heavy-tailed weights with correlated inputs, lowers the full one.
TEST(Clip, NoShrinkIsTheFormatsOwnFit) {
  const int64_t rows = 16, K = 256;
  const std::vector<float> W = test::gaussian(rows * K, 21);
  const std::vector<double> H = correlated_hessian(K, 300, 4);
  std::vector<float> imp(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) imp[size_t(k)] = float(H[size_t(k * K + k)]);
  for (const char* name :
       {"q4_0", "q4_1", "iq4_nl", "nf4", "int3_g32_asym", "q4_k", "q3_k", "int2_g32"}) {
    SCOPED_TRACE(name);
    const Format f = Format::parse(name);
    std::vector<uint8_t> c(f.row_bytes(K) * rows), r(c.size());
    clip_quantize(f, W.data(), rows, K, H.data(), imp.data(), {.grid = 20, .max_shrink = 0},
                  c.data());
    f.quantize(W.data(), rows, K, imp.data(), r.data());
    EXPECT_EQ(c, r);
  }
}

TEST(Clip, ShrinkingNeverRaisesTheBlockErrorAndLowersTheOutputErrorOnHeavyTails) {
  const int64_t rows = 32, K = 256;
  std::vector<float> W = test::gaussian(rows * K, 8);
  Rng rng(3);
  for (auto& w : W) {
    if (rng.uniform() < 0.02) w *= 6.0f;  // heavy tails: a few large weights per block
  }
  const std::vector<double> H = correlated_hessian(K, 600, 12);
  std::vector<float> imp(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) imp[size_t(k)] = float(H[size_t(k * K + k)]);
  double sum_c = 0, sum_r = 0;
  for (const char* name : {"q4_0", "q4_1", "iq4_nl", "nf4", "int4_g32", "int3_g32", "int2_g32",
                           "int3_g100_asym", "q4_k", "q3_k"}) {
    SCOPED_TRACE(name);
    const Format f = Format::parse(name);
    std::vector<uint8_t> c(f.row_bytes(K) * rows), r(c.size());
    clip_quantize(f, W.data(), rows, K, H.data(), imp.data(), {}, c.data());
    f.quantize(W.data(), rows, K, imp.data(), r.data());
    // What the search minimises, block by block: the error with H restricted to its diagonal
    // blocks (cross-block terms ignored, as AWQ's per-group search does).
    std::vector<double> Hb(H.size(), 0.0);
    const int64_t be = f.block_elems(K);
    for (int64_t i = 0; i < K; ++i) {
      for (int64_t j = 0; j < K; ++j) {
        if (i / be == j / be) Hb[size_t(i * K + j)] = H[size_t(i * K + j)];
      }
    }
    const std::vector<float> Qc = dequantized(f, c, rows, K), Qr = dequantized(f, r, rows, K);
    const double bc = output_error(W, Qc, rows, K, Hb), br = output_error(W, Qr, rows, K, Hb);
    EXPECT_LE(bc, br * (1 + 1e-9)) << "clip " << bc << " fit " << br;
    EXPECT_GT(bc, 0.0);
    const double ec = output_error(W, Qc, rows, K, H), er = output_error(W, Qr, rows, K, H);
    sum_c += ec / er, sum_r += 1;
  }
  EXPECT_LT(sum_c / sum_r, 0.99) << "mean full output error ratio clip / fit";
}

// The weighting search (imatrix; AWQ's final fit with the clipping search): the three plain fits
// of a row (importance, importance · sqrt(σ² + w²), none) are done here independently with
// quantize_row, and with `clipped` also the clipping search under the weighting whose plain fit
// has the least δ H δᵀ (double, against the row). Every row must be one of these candidates and
// the least of them; rows must differ in which wins; the output error must be below the plain
// importance-weighted fit's (and, clipped, below the clipping search's under the importance).
TEST(WeightingSearch, EachRowIsItsLeastOutputErrorCandidate) {
  const int64_t rows = 300, K = 128;  // 300 rows: several panels of the search
  std::vector<float> W = test::gaussian(rows * K, 31);
  Rng rng(5);
  for (auto& w : W) {
    if (rng.uniform() < 0.03) w *= 5.0f;
  }
  const std::vector<double> H = correlated_hessian(K, 400, 17);
  std::vector<float> imp(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k) imp[size_t(k)] = float(H[size_t(k * K + k)] / 400);
  for (const bool clipped : {false, true}) {
    for (const char* name : {"q4_0", "nf4", "int2_g32", "q4_1", "int3_g64_asym"}) {
      SCOPED_TRACE(std::string(name) + (clipped ? " with the clipping search" : ""));
      const Format f = Format::parse(name);
      const uint64_t rb = f.row_bytes(K);
      const ClipOptions clip;
      std::vector<uint8_t> got(rb * rows), plain(got.size()), clip_imp(got.size());
      weighting_quantize(f, W.data(), rows, K, H.data(), imp.data(), got.data(),
                         clipped ? &clip : nullptr);
      f.quantize(W.data(), rows, K, imp.data(), plain.data());
      clip_quantize(f, W.data(), rows, K, H.data(), imp.data(), clip, clip_imp.data());
      int wins[4] = {0, 0, 0, 0};
      for (int64_t r = 0; r < rows; ++r) {
        const std::vector<float> w(W.begin() + r * K, W.begin() + (r + 1) * K);
        double s2 = 0;
        for (float v : w) s2 += double(v) * v;
        std::vector<float> sig(static_cast<size_t>(K));
        for (int64_t k = 0; k < K; ++k)
          sig[size_t(k)] =
              float(imp[size_t(k)] * std::sqrt(s2 / K + double(w[size_t(k)]) * w[size_t(k)]));
        const float* weights[3] = {imp.data(), sig.data(), nullptr};
        std::vector<std::vector<uint8_t>> cand(4, std::vector<uint8_t>(rb));
        std::vector<double> e(4, INFINITY);
        auto error_of = [&](const std::vector<uint8_t>& q) {
          std::vector<float> v(static_cast<size_t>(K));
          f.dequantize_row(q.data(), K, v.data());
          return output_error(w, v, 1, K, H);
        };
        int win = 0;
        for (int c = 0; c < 3; ++c) {
          f.quantize_row(w.data(), K, weights[c], cand[size_t(c)].data());
          e[size_t(c)] = error_of(cand[size_t(c)]);
          if (e[size_t(c)] < e[size_t(win)]) win = c;
        }
        // The search sums in float: a plain fit within 1e-4 of the least may have won there.
        const bool ambiguous = [&] {
          for (int c = 0; c < 3; ++c) {
            if (c != win && e[size_t(c)] <= e[size_t(win)] * (1 + 1e-4)) return true;
          }
          return false;
        }();
        if (clipped) {
          clip_quantize(f, w.data(), 1, K, H.data(), weights[win], clip, cand[3].data());
          e[3] = error_of(cand[3]);
        }
        const double best = *std::min_element(e.begin(), e.end());
        const std::vector<uint8_t> row(got.begin() + int64_t(rb) * r,
                                       got.begin() + int64_t(rb) * (r + 1));
        int which = -1;
        for (int c = 0; c < 4 && which < 0; ++c) {
          if (row == cand[size_t(c)] && (c < 3 || clipped)) which = c;
        }
        if (which < 0 && ambiguous) continue;  // clipped under the near-tied other weighting
        ASSERT_GE(which, 0) << "row " << r << " is none of the candidates";
        if (!ambiguous) {
          EXPECT_LE(e[size_t(which)], best * (1 + 1e-4) + 1e-12) << "row " << r;
        }
        ++wins[which];
      }
      EXPECT_GT(wins[1] + wins[2], 0) << "the search never left the importance weighting";
      EXPECT_GT(wins[0], 0) << "the importance weighting never won";
      if (clipped) {
        EXPECT_GT(wins[3], 0) << "the clipping search never won";
      }
      const double eg = output_error(W, dequantized(f, got, rows, K), rows, K, H);
      const double ep = output_error(W, dequantized(f, plain, rows, K), rows, K, H);
      EXPECT_LT(eg, ep) << "search " << eg << " plain " << ep;
      if (clipped) {
        const double ec = output_error(W, dequantized(f, clip_imp, rows, K), rows, K, H);
        EXPECT_LT(eg, ec) << "search " << eg << " clipping under the importance " << ec;
      }
    }
  }
}

TEST(WeightingSearch, WithoutImportanceItIsThePlainFit) {
  const int64_t rows = 8, K = 64;
  const std::vector<float> W = test::gaussian(rows * K, 2);
  const std::vector<double> H = correlated_hessian(K, 100, 1);
  const Format f = Format::parse("q4_0");
  std::vector<uint8_t> a(f.row_bytes(K) * rows), b(a.size());
  weighting_quantize(f, W.data(), rows, K, H.data(), nullptr, a.data());
  f.quantize(W.data(), rows, K, nullptr, b.data());
  EXPECT_EQ(a, b);
}

}  // namespace
}  // namespace lowbit
