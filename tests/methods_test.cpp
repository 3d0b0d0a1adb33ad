// The quantization methods end to end on stories260K: calibrated on the start of the TinyStories
// text, evaluated (KL divergence against F32) on a later, disjoint part. GPTQ and AWQ+GPTQ must
// beat importance-weighted RTN, which must beat plain RTN; AWQ must not lose to imatrix RTN (its
// search includes α = 0, which is imatrix RTN). Also: the importance matrix round-trips through
// llama.cpp's GGUF layout, and the sequential path needs calibration text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "eval/perplexity.h"
#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/rng.h"
#include "quant/calibrate.h"
#include "quant/methods.h"
#include "test_util.h"

namespace lowbit {
namespace {

// The calibration statistics against a plain double-precision reference: sums of squares and
// absolute values, maxima, and the Hessian's upper triangle (computed in float panels per chunk,
// summed in double) over several chunks of a width that is not a multiple of the panel (300) and
// of one wider than a panel (600).
TEST(Methods, InputStatsMatchADoubleReference) {
  for (const int64_t K : {300, 600}) {
    Rng rng{uint64_t(K)};
    InputStats s;
    std::vector<double> xtx(size_t(K * K), 0.0), sq(size_t(K), 0.0), ab(size_t(K), 0.0),
        mag(size_t(K * K), 0.0);
    std::vector<float> mx(size_t(K), 0.0f);
    for (const int64_t n : {37, 1, 64}) {
      std::vector<float> x(size_t(n * K));
      for (auto& v : x) v = float(rng.normal() * (1 + 3 * rng.uniform()));
      s.add(x.data(), n, K, true);
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < K; ++i) {
          const double a = x[size_t(t * K + i)];
          sq[size_t(i)] += a * a, ab[size_t(i)] += std::fabs(a);
          mx[size_t(i)] = std::max(mx[size_t(i)], float(std::fabs(a)));
          for (int64_t j = i; j < K; ++j) {
            xtx[size_t(i * K + j)] += a * x[size_t(t * K + j)];
            mag[size_t(i * K + j)] += std::fabs(a * x[size_t(t * K + j)]);
          }
        }
      }
    }
    EXPECT_EQ(s.count, 102);
    for (int64_t i = 0; i < K; ++i) {
      EXPECT_NEAR(s.sum_sq[size_t(i)], sq[size_t(i)], 1e-9 * sq[size_t(i)]);
      EXPECT_NEAR(s.sum_abs[size_t(i)], ab[size_t(i)], 1e-9 * ab[size_t(i)]);
      EXPECT_EQ(s.max_abs[size_t(i)], mx[size_t(i)]);
      for (int64_t j = i; j < K; ++j) {
        // float products summed over at most 64 terms per chunk: well inside 1e-5 of Σ|x_i x_j|
        ASSERT_NEAR(s.xtx[size_t(i * K + j)], xtx[size_t(i * K + j)], 1e-5 * mag[size_t(i * K + j)])
            << K << " " << i << " " << j;
      }
    }
  }
}

TEST(Methods, GptqAndAwqBeatImatrixWhichBeatsRtn) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  const std::string text = test::slurp(test::fixture("text/tinystories-valid-head.txt"));
  const std::string calib_text = text.substr(0, 60000), eval_text = text.substr(200000, 80000);
  const Chunks calib = chunk_text(m, calib_text, {.ctx = 128, .chunks = 8});
  const EvalOptions eo{.ctx = 128, .chunks = 24};
  const Chunks eval = chunk_text(m, eval_text, eo);
  std::vector<Model> models;
  const std::vector<Method> methods = {Method::kRtn, Method::kImatrix, Method::kGptq, Method::kAwq,
                                       Method::kAwqGptq};
  for (const Method me : methods) {
    const std::string out = ::testing::TempDir() + "/methods_" + method_name(me) + ".gguf";
    quantize_with_method(m, out,
                         {.type = Format::parse("q4_0"), .fallback = FallbackPolicy::kLowbit},
                         {.method = me, .awq_grid = 10}, &calib);
    models.push_back(Model::load(out));
    EXPECT_EQ(models.back().find("blk.2.ffn_down.weight")->format.name(), "int4_g32");
  }
  std::vector<const Model*> ptrs;
  for (const auto& q : models) ptrs.push_back(&q);
  const auto r = compare_models(m, ptrs, eval, eo);
  double kld[5];
  for (int i = 0; i < 5; ++i) {
    kld[i] = r[size_t(i)].kld.mean;
    std::printf("[ kld ] %-9s %.5f (top-1 %.2f%%)\n", method_name(methods[size_t(i)]), kld[i],
                100 * r[size_t(i)].top1);
  }
  EXPECT_LT(kld[1], 0.97 * kld[0]);         // imatrix < rtn
  EXPECT_LT(kld[2], 0.93 * kld[1]);         // gptq < imatrix
  EXPECT_LT(kld[3], 1.01 * kld[1]);         // awq <= imatrix (noise allowance)
  EXPECT_LT(kld[4], 0.93 * kld[1]);         // awq+gptq < imatrix
  for (double k : kld) EXPECT_GT(k, 0.01);  // 4-bit on a 64-wide model is not lossless
}

TEST(Methods, ImatrixFileRoundTripsAndDrivesQuantization) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  const std::string text = test::slurp(test::fixture("text/tinystories-valid-head.txt"));
  const Chunks calib = chunk_text(m, text.substr(0, 40000), {.ctx = 128, .chunks = 8});
  const Calibration cal = calibrate(m, calib, 128, false);
  EXPECT_EQ(cal.size(), 5u * 4 + 1);  // 4 input groups per layer + the head
  EXPECT_EQ(cal.at("blk.0.attn_q.weight").count, 8 * 128);
  const std::string path = ::testing::TempDir() + "/stories.imatrix.gguf";
  save_imatrix(cal, m, path, "tinystories", 8, 128);
  const Importance back = load_imatrix(path);
  const Importance want = importance_of(cal, m);
  ASSERT_EQ(back.size(), want.size() - 1 + 1);  // q/k/v, gate/up each listed; tied head once
  for (const auto& [name, v] : want) {
    const std::string key = name == "token_embd.weight" ? "output.weight" : name;
    ASSERT_TRUE(back.count(key)) << key;
    ASSERT_EQ(back.at(key).size(), v.size());
    for (size_t i = 0; i < v.size(); ++i) EXPECT_NEAR(back.at(key)[i], v[i], 1e-6 * v[i] + 1e-12);
  }
  // The file drives --method imatrix without calibration text; the same importance gives the
  // same bytes as quantizing in one pass from the statistics.
  const std::string out = ::testing::TempDir() + "/from_file.gguf";
  quantize_with_method(m, out, {.type = Format::parse("q4_0")},
                       {.method = Method::kImatrix, .imatrix = &back}, nullptr);
  const Model q = Model::load(out);
  const ModelTensor* t = q.find("blk.1.attn_k.weight");
  const ModelTensor* w = m.find("blk.1.attn_k.weight");
  std::vector<uint8_t> direct(t->bytes);
  Format::parse("q4_0").quantize(reinterpret_cast<const float*>(w->data), w->rows(),
                                 w->row_length(), back.at("blk.1.attn_k.weight").data(),
                                 direct.data());
  EXPECT_EQ(std::vector<uint8_t>(t->data, t->data + t->bytes), direct);
  EXPECT_THROW(quantize_with_method(m, out, {.type = Format::parse("q4_0")},
                                    {.method = Method::kGptq}, nullptr),
               Error);
}

// The folds keep the function: AWQ's four scalings (into attn_norm, v, ffn_norm, up) and
// SmoothQuant's two, with near-lossless F16 weights, must leave the model's predictions as they
// were (a wrong fold would move them by orders of magnitude more).
TEST(Methods, AwqAndSmoothQuantFoldsPreserveTheFunction) {
  const std::string p = test::fixture("models/stories260K/stories260K.bin");
  LOWBIT_REQUIRE_FIXTURE(p);
  const Model m = Model::load(p);
  const std::string text = test::slurp(test::fixture("text/tinystories-valid-head.txt"));
  const Chunks calib = chunk_text(m, text.substr(0, 40000), {.ctx = 128, .chunks = 6});
  const EvalOptions eo{.ctx = 128, .chunks = 8};
  const Chunks eval = chunk_text(m, text.substr(300000, 40000), eo);
  const std::string f16 = ::testing::TempDir() + "/fold_f16.gguf";
  write_gguf(m, f16, Format::parse("f16"));
  const Model plain = Model::load(f16);
  std::vector<Model> models;
  for (const Method me : {Method::kAwq, Method::kSmoothQuant}) {
    const std::string out = ::testing::TempDir() + "/fold_" + method_name(me) + ".gguf";
    quantize_with_method(m, out, {.type = Format::parse("f16")}, {.method = me, .awq_grid = 10},
                         &calib);
    models.push_back(Model::load(out));
  }
  // The folds really changed the norms (SmoothQuant always does, with α = 0.5).
  const ModelTensor* g0 = m.find("blk.0.attn_norm.weight");
  const ModelTensor* g1 = models[1].find("blk.0.attn_norm.weight");
  EXPECT_NE(std::vector<uint8_t>(g0->data, g0->data + g0->bytes),
            std::vector<uint8_t>(g1->data, g1->data + g1->bytes));
  const auto r = compare_models(m, {&plain, &models[0], &models[1]}, eval, eo);
  const double base = r[0].kld.mean;  // F16 rounding alone
  std::printf("[ kld ] f16 %.3g awq %.3g smoothquant %.3g\n", base, r[1].kld.mean, r[2].kld.mean);
  EXPECT_LT(base, 1e-4);
  EXPECT_LT(r[1].kld.mean, std::max(20 * base, 1e-4)) << "awq";
  EXPECT_LT(r[2].kld.mean, std::max(20 * base, 1e-4)) << "smoothquant";
  EXPECT_GT(r[1].top1, 0.97);
  EXPECT_GT(r[2].top1, 0.97);
}

}  // namespace
}  // namespace lowbit
