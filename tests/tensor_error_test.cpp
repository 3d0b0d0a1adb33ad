// compare_tensors on stories260K and its q8_0 / q4_0 quantizations: exact zero against itself,
// agreement with a whole-tensor recomputation, two-sided error bands, and the mismatch errors.
#include "eval/tensor_error.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/model.h"
#include "quant/quantize.h"
#include "test_util.h"

namespace lowbit {
namespace {

const std::string kStories = "models/stories260K/stories260K.bin";

// Quantizes stories260K once per type into the temporary folder; returns the GGUF's path.
std::string quantized_path(const Model& m, const std::string& type) {
  static std::map<std::string, std::string> done;
  auto it = done.find(type);
  if (it != done.end()) return it->second;
  const std::string path = ::testing::TempDir() + "tensor_error_stories260K_" + type + ".gguf";
  quantize_model(m, path, {.type = Format::parse(type)});
  return done[type] = path;
}

const TensorError& by_name(const std::vector<TensorError>& v, const std::string& name) {
  for (const auto& e : v) {
    if (e.name == name) return e;
  }
  ADD_FAILURE() << "no entry for " << name;
  return v.front();
}

TEST(TensorError, ModelAgainstItselfIsExact) {
  const std::string path = test::fixture(kStories);
  LOWBIT_REQUIRE_FIXTURE(path);
  const Model m = Model::load(path);
  const auto errs = compare_tensors(m, m, path, path);
  ASSERT_EQ(errs.size(), m.tensors.size());
  for (const auto& e : errs) {
    EXPECT_EQ(e.err2, 0.0) << e.name;
    EXPECT_GT(e.ref2, 0.0) << e.name;
    EXPECT_EQ(e.rel_error(), 0.0) << e.name;
    EXPECT_TRUE(std::isinf(e.snr_db()) && e.snr_db() > 0) << e.name;
    EXPECT_EQ(e.bits_per_weight, 32.0) << e.name;
  }
  const ErrorTotal tot = total_of_matrices(errs);
  EXPECT_EQ(tot.params, int64_t(m.parameter_count()) - 64 * 11);  // less 11 norms of 64
  EXPECT_EQ(tot.rel_error(), 0.0);
  EXPECT_TRUE(std::isinf(tot.snr_db()));
}

// The published GGUF of stories260K holds the same f32 weights (Q/K rows in the same GGUF order)
// and stores the tied output matrix as output.weight, which is compared with token_embd.
TEST(TensorError, PublishedGgufMatchesLlama2cCheckpoint) {
  const std::string bin = test::fixture(kStories);
  const std::string gguf = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(bin);
  LOWBIT_REQUIRE_FIXTURE(gguf);
  const Model mb = Model::load(bin), mg = Model::load(gguf);
  ASSERT_TRUE(mb.config.tied_output);
  ASSERT_NE(mg.find("output.weight"), nullptr);
  const auto errs = compare_tensors(mg, mb, gguf, bin);
  ASSERT_EQ(errs.size(), mb.tensors.size() + 1);
  for (const auto& e : errs) EXPECT_EQ(e.err2, 0.0) << e.name;
  EXPECT_EQ(by_name(errs, "output.weight").ref2, by_name(errs, "token_embd.weight").ref2);
  // The other way round output.weight has no counterpart: a tied model is not its quantization.
  EXPECT_THROW(compare_tensors(mb, mg, bin, gguf), Error);
}

// Quantized against original, checked per tensor against a direct whole-tensor computation.
// Bands, two-sided (a format whose error suddenly drops is as suspicious as one whose grows):
//   q8_0: step d = absmax/127 per block of 32; rounding error uniform in +-d/2 has RMS
//         d/sqrt(12) = 0.00227 absmax; absmax/RMS of these 32-blocks is ~1.8-2.6, so 0.41-0.59%
//         of the weights' RMS (measured 0.41%-0.58%) -> band [0.3%, 0.8%].
//   q4_0: step absmax/8, so 127/8 = 15.9x q8_0's error: 6.5-9.4% (measured 6.6%-9.2%) -> band
//         [4.5%, 12%]; per tensor q4_0 / q8_0 measured 15.5-16.6 -> band [12, 20].
//   f16 (the fallback for ffn_down, rows of 172 that 32-blocks cannot tile): relative spacing
//         2^-11..2^-10, RMS rounding error 1.4e-4..2.8e-4 (measured 2.0e-4) -> < 1e-3.
TEST(TensorError, QuantizedMatchesDirectComputationAndBands) {
  const std::string path = test::fixture(kStories);
  LOWBIT_REQUIRE_FIXTURE(path);
  const Model orig = Model::load(path);
  std::map<std::string, std::vector<TensorError>> by_type;
  for (const std::string type : {"q8_0", "q4_0"}) {
    const std::string qpath = quantized_path(orig, type);
    const Model q = Model::load(qpath);
    const auto errs = compare_tensors(q, orig, qpath, path);
    ASSERT_EQ(errs.size(), orig.tensors.size());
    for (const auto& e : errs) {
      SCOPED_TRACE(type + " " + e.name);
      const ModelTensor& qt = *q.find(e.name);
      const ModelTensor& ot = *orig.find(e.name);
      // Independent: whole tensors dequantized at once, one sum.
      const int64_t rows = qt.rows(), K = qt.row_length();
      std::vector<float> a(size_t(rows * K)), b(size_t(rows * K));
      qt.format.dequantize(qt.data, rows, K, a.data());
      ot.format.dequantize(ot.data, rows, K, b.data());
      double err2 = 0, ref2 = 0;
      for (size_t i = 0; i < a.size(); ++i) {
        err2 += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        ref2 += double(b[i]) * b[i];
      }
      EXPECT_EQ(e.params, rows * K);
      EXPECT_NEAR(e.ref2, ref2, 1e-12 * ref2);
      if (err2 == 0) {
        EXPECT_EQ(e.err2, 0.0);
      } else {
        EXPECT_NEAR(e.rel_error(), std::sqrt(err2 / ref2), 1e-12 * std::sqrt(err2 / ref2));
        EXPECT_NEAR(e.snr_db(), 10 * std::log10(ref2 / err2), 1e-9);
      }
      const std::string f = e.format.name();
      if (f == "q8_0") {
        EXPECT_EQ(e.bits_per_weight, 8.5);
        EXPECT_GT(e.rel_error(), 0.003);
        EXPECT_LT(e.rel_error(), 0.008);
      } else if (f == "q4_0") {
        EXPECT_EQ(e.bits_per_weight, 4.5);
        EXPECT_GT(e.rel_error(), 0.045);
        EXPECT_LT(e.rel_error(), 0.12);
      } else if (f == "f16") {
        EXPECT_EQ(e.bits_per_weight, 16.0);
        EXPECT_NE(e.name.find("ffn_down"), std::string::npos);
        EXPECT_LT(e.rel_error(), 1e-3);
      } else {
        EXPECT_EQ(f, "f32");
        EXPECT_EQ(e.bits_per_weight, 32.0);
        EXPECT_FALSE(e.matrix());
        EXPECT_EQ(e.err2, 0.0);
      }
    }
    by_type[type] = errs;
  }
  int quantized = 0;
  for (const auto& e8 : by_type["q8_0"]) {
    if (e8.format.name() != "q8_0") continue;
    ++quantized;
    const TensorError& e4 = by_name(by_type["q4_0"], e8.name);
    EXPECT_EQ(e4.format.name(), "q4_0") << e8.name;
    EXPECT_GT(e4.rel_error(), 12 * e8.rel_error()) << e8.name;
    EXPECT_LT(e4.rel_error(), 20 * e8.rel_error()) << e8.name;
  }
  EXPECT_EQ(quantized, 1 + 5 * 6);  // token_embd and, per layer, q k v o gate up
  const ErrorTotal t8 = total_of_matrices(by_type["q8_0"]);
  const ErrorTotal t4 = total_of_matrices(by_type["q4_0"]);
  EXPECT_EQ(t8.tensors, 1 + 5 * 7);
  // 31 matrices of 8.5 bpw and the 5 ffn_down of 16 bpw, each 64 x 172 = 11008 values.
  const double f16_share = 5 * 11008.0 / double(t8.params);
  EXPECT_NEAR(t8.bits_per_weight(), 8.5 * (1 - f16_share) + 16 * f16_share, 1e-9);
  EXPECT_NEAR(t4.bits_per_weight(), 4.5 * (1 - f16_share) + 16 * f16_share, 1e-9);
  EXPECT_GT(t4.rel_error(), 12 * t8.rel_error());
  EXPECT_LT(t4.rel_error(), 20 * t8.rel_error());
}

TEST(TensorError, DifferentModelsAreRejected) {
  const std::string a = test::fixture(kStories);
  const std::string b = test::fixture("models/tinystories-656k");
  LOWBIT_REQUIRE_FIXTURE(a);
  LOWBIT_REQUIRE_FIXTURE(b);
  const Model ma = Model::load(a), mb = Model::load(b);
  EXPECT_THROW(compare_tensors(ma, mb, a, b), Error);
  EXPECT_THROW(compare_tensors(mb, ma, b, a), Error);
}

TEST(TensorError, MissingTensorOrShapeIsNamed) {
  const std::string path = test::fixture(kStories);
  LOWBIT_REQUIRE_FIXTURE(path);
  const Model m = Model::load(path);
  Model fewer = m;
  fewer.tensors.erase(fewer.tensors.begin() + 3);
  const std::string gone = m.tensors[3].name;
  for (int dir = 0; dir < 2; ++dir) {
    try {
      if (dir == 0)
        compare_tensors(fewer, m, "q.gguf", "orig.bin");
      else
        compare_tensors(m, fewer, "q.gguf", "orig.bin");
      ADD_FAILURE() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.context().field, gone);
      EXPECT_NE(std::string(e.what()).find("q.gguf"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("orig.bin"), std::string::npos) << e.what();
    }
  }
  Model reshaped = m;
  ModelTensor& t = reshaped.tensors[3];
  ASSERT_EQ(t.shape.size(), 2u);
  t.shape = {t.shape[0] / 2, t.shape[1] * 2};  // same values, other shape
  try {
    compare_tensors(reshaped, m, "q.gguf", "orig.bin");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.context().field, t.name);
    EXPECT_NE(std::string(e.what()).find("orig.bin"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace lowbit
