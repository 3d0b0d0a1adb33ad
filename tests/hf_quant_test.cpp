// Hugging Face quantized checkpoints (issue 22). The exported tensors are unpacked here by code
// written from the published layouts, independently of lowbit's writer: GPTQ's 3-bit words the
// way AutoGPTQ lays them out (values 10 and 21 split across words), AWQ through its reverse order
// table, compressed-tensors with 32/b codes per word. What they decode to must equal lowbit's own
// decoding of the GGUF tensor, bit for bit; reading the checkpoint back must give the same codes.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "lowbit/error.h"
#include "lowbit/half.h"
#include "lowbit/hf_quant.h"
#include "lowbit/model.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A one-layer llama of small but real shapes: Q 64 x 64 (4 heads of 16), K/V 32 x 64 (2 heads),
// FFN 128; the linear layers in `f`, embedding, norms and head in f32.
Model tiny_model(const Format& f, uint64_t seed) {
  Model m;
  ModelConfig& c = m.config;
  c.arch = "llama", c.name = "tiny", c.n_vocab = 64, c.n_embd = 64, c.n_ff = 128, c.n_layer = 1;
  c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16, c.n_ctx_train = 64;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, const Format& fmt) {
    const int64_t K = shape.back(), rows = shape.size() == 2 ? shape[0] : 1;
    auto x = test::gaussian(rows * K, seed++, 0.05);
    if (shape.size() == 1)
      for (auto& v : x) v += 1.0f;
    auto buf = std::make_shared<std::vector<uint8_t>>(fmt.row_bytes(K) * uint64_t(rows));
    fmt.quantize(x.data(), rows, K, nullptr, buf->data());
    m.tensors.push_back({name, fmt, shape, buf->data(), buf->size(), false});
    m.owners.push_back(buf);
  };
  const Format f32 = Format::parse("f32");
  add("token_embd.weight", {64, 64}, f32);
  add("blk.0.attn_norm.weight", {64}, f32);
  add("blk.0.attn_q.weight", {64, 64}, f);
  add("blk.0.attn_k.weight", {32, 64}, f);
  add("blk.0.attn_v.weight", {32, 64}, f);
  add("blk.0.attn_output.weight", {64, 64}, f);
  add("blk.0.ffn_norm.weight", {64}, f32);
  add("blk.0.ffn_gate.weight", {128, 64}, f);
  add("blk.0.ffn_up.weight", {128, 64}, f);
  add("blk.0.ffn_down.weight", {64, 128}, f);
  add("output_norm.weight", {64}, f32);
  add("output.weight", {64, 64}, f32);
  return m;
}

const char* kLinear[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                         "ffn_gate", "ffn_up", "ffn_down"};
const char* kHfLinear[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                           "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                           "mlp.down_proj"};

// lowbit's decoding of a weight matrix, rows in Hugging Face order (Q/K back to rotate-half).
std::vector<float> lowbit_hf_rows(const Model& m, const ModelTensor& t) {
  const int64_t N = t.rows(), K = t.row_length();
  std::vector<float> x(size_t(N * K)), y(size_t(N * K));
  t.format.dequantize(t.data, N, K, x.data());
  const bool q = t.name.find(".attn_q.") != std::string::npos;
  const bool k = t.name.find(".attn_k.") != std::string::npos;
  if (!q && !k) return x;
  permute_qk_rows(x.data(), y.data(), N, K, q ? m.config.n_head : m.config.n_head_kv, false);
  return y;
}

uint32_t u32_at(const StTensor* t, int64_t i) {
  uint32_t v;
  std::memcpy(&v, t->data + 4 * i, 4);
  return v;
}

float f16_at(const StTensor* t, int64_t i) {
  uint16_t h;
  std::memcpy(&h, t->data + 2 * i, 2);
  return fp16_to_f32(h);
}

// GPTQ's packing as AutoGPTQ documents it: 32/b values per word for 2, 4 and 8 bits; for 3 bits
// 32 values in 3 words, value 10 split over words 0/1 and value 21 over words 1/2.
int gptq_value(const StTensor* t, int64_t cols, int bits, int64_t i, int64_t col) {
  const uint32_t mask = (1u << bits) - 1;
  if (bits != 3) {
    const int per = 32 / bits;
    return int((u32_at(t, (i / per) * cols + col) >> (bits * (i % per))) & mask);
  }
  const int64_t base = (i / 32) * 3, j = i % 32;
  const uint32_t w0 = u32_at(t, base * cols + col), w1 = u32_at(t, (base + 1) * cols + col),
                 w2 = u32_at(t, (base + 2) * cols + col);
  if (j < 10) return int((w0 >> (3 * j)) & 7);
  if (j == 10) return int((w0 >> 30) | ((w1 & 1) << 2));
  if (j < 21) return int((w1 >> (3 * (j - 11) + 1)) & 7);
  if (j == 21) return int((w1 >> 31) | ((w2 & 3) << 1));
  return int((w2 >> (3 * (j - 22) + 2)) & 7);
}

// The same for the zeros, whose words run along the output dimension of one group's row.
int gptq_zero(const StTensor* t, int64_t zcols, int bits, int64_t g, int64_t n) {
  const uint32_t mask = (1u << bits) - 1;
  auto word = [&](int64_t w) { return u32_at(t, g * zcols + w); };
  if (bits != 3) {
    const int per = 32 / bits;
    return int((word(n / per) >> (bits * (n % per))) & mask);
  }
  const int64_t base = (n / 32) * 3, j = n % 32;
  const uint32_t w0 = word(base), w1 = word(base + 1), w2 = word(base + 2);
  if (j < 10) return int((w0 >> (3 * j)) & 7);
  if (j == 10) return int((w0 >> 30) | ((w1 & 1) << 2));
  if (j < 21) return int((w1 >> (3 * (j - 11) + 1)) & 7);
  if (j == 21) return int((w1 >> 31) | ((w2 & 3) << 1));
  return int((w2 >> (3 * (j - 22) + 2)) & 7);
}

// W[n][k] from a checkpoint module, by the published rules of `scheme`.
std::vector<float> unpack(const SafetensorsModel& st, const json& qc, const std::string& module,
                          int64_t N, int64_t K) {
  std::vector<float> w(size_t(N * K));
  const std::string method = qc["quant_method"];
  if (method == "gptq") {
    const int bits = qc["bits"];
    const auto* qw = st.find(module + ".qweight");
    const auto* qz = st.find(module + ".qzeros");
    const auto* sc = st.find(module + ".scales");
    const auto* gi = st.find(module + ".g_idx");
    EXPECT_TRUE(qw && qz && sc && gi) << module;
    EXPECT_EQ(qw->shape, (std::vector<int64_t>{K * bits / 32, N}));
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = int32_t(u32_at(gi, k));
        const int zero = gptq_zero(qz, qz->shape[1], bits, g, n) + 1;  // v1: zero - 1 stored
        w[size_t(n * K + k)] = float(gptq_value(qw, N, bits, k, n) - zero) * f16_at(sc, g * N + n);
      }
    }
  } else if (method == "awq") {
    static const int kReverse[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // AutoAWQ's unpacking order
    const auto* qw = st.find(module + ".qweight");
    const auto* qz = st.find(module + ".qzeros");
    const auto* sc = st.find(module + ".scales");
    const int64_t group = qc["group_size"];
    EXPECT_EQ(qw->shape, (std::vector<int64_t>{K, N / 8}));
    auto nibble = [](const StTensor* t, int64_t row, int64_t cols, int64_t n) {
      const int64_t c = n / 8;
      const uint32_t v = u32_at(t, row * cols + c);
      // unpacked position p holds bits 4p..; column 8c + j is position kReverse[j]
      return int((v >> (4 * kReverse[n % 8])) & 15);
    };
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const int64_t g = k / group;
        w[size_t(n * K + k)] =
            float(nibble(qw, k, N / 8, n) - nibble(qz, g, N / 8, n)) * f16_at(sc, g * N + n);
      }
    }
  } else {
    const json& wq = qc["config_groups"].begin().value()["weights"];
    const int bits = wq["num_bits"];
    const bool sym = wq["symmetric"];
    const bool channel = wq["strategy"] == "channel";
    const int64_t group = channel ? K : wq["group_size"].get<int64_t>();
    const int64_t G = (K + group - 1) / group;
    const int pf = 32 / bits, offset = 1 << (bits - 1);
    const auto* sc = st.find(module + ".weight_scale");
    EXPECT_EQ(sc->shape, (std::vector<int64_t>{N, G}));
    if (qc["format"] == "int-quantized") {
      const auto* q8 = st.find(module + ".weight");
      EXPECT_EQ(q8->dtype, StDtype::kI8);
      for (int64_t i = 0; i < N * K; ++i) {
        w[size_t(i)] = float(int(int8_t(q8->data[i]))) * f16_at(sc, (i / K) * G + (i % K) / group);
      }
      return w;
    }
    const auto* pk = st.find(module + ".weight_packed");
    const auto* zp = st.find(module + ".weight_zero_point");
    EXPECT_EQ(pk->shape, (std::vector<int64_t>{N, (K + pf - 1) / pf}));
    EXPECT_EQ(sym, zp == nullptr);
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const int q =
            int((u32_at(pk, n * pk->shape[1] + k / pf) >> (bits * (k % pf))) & ((1u << bits) - 1)) -
            offset;
        const int64_t g = k / group;
        int z = 0;
        if (zp)
          z = int((u32_at(zp, (n / pf) * G + g) >> (bits * (n % pf))) & ((1u << bits) - 1)) -
              offset;
        w[size_t(n * K + k)] = float(q - z) * f16_at(sc, n * G + g);
      }
    }
  }
  return w;
}

json read_config(const std::string& dir) {
  std::ifstream f(dir + "/config.json");
  return json::parse(f);
}

// Every linear layer of m, unpacked from dir independently, equals lowbit's decoding.
void expect_unpacks_to(const Model& m, const std::string& dir) {
  const json qc = read_config(dir)["quantization_config"];
  const SafetensorsModel st(dir);
  for (int l = 0; l < m.config.n_layer; ++l) {
    for (int i = 0; i < 7; ++i) {
      const ModelTensor* t = m.find("blk." + std::to_string(l) + "." + kLinear[i] + ".weight");
      ASSERT_NE(t, nullptr);
      const auto want = lowbit_hf_rows(m, *t);
      const auto got = unpack(st, qc, "model.layers." + std::to_string(l) + "." + kHfLinear[i],
                              t->rows(), t->row_length());
      ASSERT_EQ(want.size(), got.size());
      int64_t bad = 0;
      for (size_t j = 0; j < want.size(); ++j) bad += std::memcmp(&want[j], &got[j], 4) != 0;
      EXPECT_EQ(bad, 0) << dir << " " << t->name << " (" << t->format.name() << ")";
    }
  }
}

// Reading dir back gives every linear layer of m bit-identical values, in `want_format` (or m's
// own format when empty), with the same bytes when the format is m's.
void expect_reads_back(const Model& m, const std::string& dir, const std::string& want_format) {
  const Model r = Model::load(dir);
  EXPECT_TRUE(r.notes.empty()) << r.notes.front();
  for (const auto& t : m.tensors) {
    const ModelTensor* b = r.find(t.name);
    ASSERT_NE(b, nullptr) << t.name;
    ASSERT_EQ(b->shape, t.shape) << t.name;
    std::vector<float> x(size_t(t.rows() * t.row_length())), y(x.size());
    t.format.dequantize(t.data, t.rows(), t.row_length(), x.data());
    b->format.dequantize(b->data, b->rows(), b->row_length(), y.data());
    EXPECT_EQ(std::memcmp(x.data(), y.data(), x.size() * 4), 0) << dir << " " << t.name;
    if (t.shape.size() == 2 && t.format.info().name != "f32") {
      // int4_g32 / int8_g32 come back as the GGUF types of the same grid, q4_0 / q8_0.
      const std::string own = t.format.name() == "int4_g32"   ? "q4_0"
                              : t.format.name() == "int8_g32" ? "q8_0"
                                                              : t.format.name();
      EXPECT_EQ(b->format.name(), want_format.empty() ? own : want_format) << t.name;
      if (b->format == t.format) {
        EXPECT_EQ(std::memcmp(b->data, t.data, t.bytes), 0) << t.name;
      }
    }
  }
}

std::string out_dir(const std::string& name) {
  const std::string d = test::tmp_path("hfq", name);
  fs::remove_all(d);
  return d;
}

TEST(HfQuant, GptqEveryBitsGroupAndSymmetryUnpacksAndReadsBack) {
  for (const char* f : {"int4_g32", "int4_g32_asym", "int4_g64", "int4_g128_asym", "int4",
                        "int3_g32", "int3_g64_asym", "int3", "int2_g32", "int2_g64_asym",
                        "int8_g32", "int8_g128", "int8", "q4_0", "q8_0"}) {
    SCOPED_TRACE(f);
    const Model m = tiny_model(Format::parse(f), 11);
    const std::string dir = out_dir(std::string("gptq_") + f);
    write_hf_quantized(m, dir, {.scheme = HfScheme::kGptq});
    const json qc = read_config(dir)["quantization_config"];
    EXPECT_EQ(qc["quant_method"], "gptq");
    EXPECT_EQ(qc["checkpoint_format"], "gptq");
    expect_unpacks_to(m, dir);
    // Read back: q4_0 / q8_0 keep their names; an int4_g32 / int8_g32 reads as q4_0 / q8_0.
    expect_reads_back(m, dir, "");
    fs::remove_all(dir);
  }
}

TEST(HfQuant, AwqAndCompressedTensorsUnpackAndReadBack) {
  for (const char* f : {"int4_g32", "int4_g32_asym", "int4_g64", "int4_g128_asym", "q4_0"}) {
    SCOPED_TRACE(f);
    const Model m = tiny_model(Format::parse(f), 21);
    const std::string dir = out_dir(std::string("awq_") + f);
    write_hf_quantized(m, dir, {.scheme = HfScheme::kAwq});
    expect_unpacks_to(m, dir);
    // AWQ always stores zeros: symmetric layers come back symmetric all the same.
    expect_reads_back(m, dir, "");
    fs::remove_all(dir);
  }
  for (const char* f : {"int4_g32", "int4_g64_asym", "int4", "int3_g32", "int3_g64_asym",
                        "int2_g32_asym", "int5_g32", "int6_g64_asym", "int8_g32", "int8"}) {
    SCOPED_TRACE(f);
    const Model m = tiny_model(Format::parse(f), 31);
    const std::string dir = out_dir(std::string("ct_") + f);
    write_hf_quantized(m, dir, {.scheme = HfScheme::kCompressedTensors});
    const json qc = read_config(dir)["quantization_config"];
    // int8 with one scale per row is SmoothQuant's W8A8 (int-quantized); the rest weight-only.
    EXPECT_EQ(qc["format"], std::string(f) == "int8" ? "int-quantized" : "pack-quantized");
    expect_unpacks_to(m, dir);
    expect_reads_back(m, dir, "");
    fs::remove_all(dir);
  }
}

void set_config(const std::string& dir, const std::function<void(json&)>& edit);
std::string load_error(const std::string& dir);

// A planned mix: compressed-tensors writes one config group per layout, targets by module name.
TEST(HfQuant, CompressedTensorsHoldsAMixGptqAndAwqRefuseIt) {
  Model m = tiny_model(Format::parse("int4_g32"), 41);
  const Model other = tiny_model(Format::parse("int4_g128_asym"), 42);
  for (auto& t : m.tensors) {
    if (t.name == "blk.0.ffn_down.weight") t = *other.find(t.name);
  }
  m.owners.insert(m.owners.end(), other.owners.begin(), other.owners.end());
  const std::string dir = out_dir("ct_mix");
  write_hf_quantized(m, dir, {.scheme = HfScheme::kCompressedTensors});
  const json qc = read_config(dir)["quantization_config"];
  ASSERT_EQ(qc["config_groups"].size(), 2u);
  EXPECT_EQ(qc["config_groups"]["group_1"]["targets"],
            json::array({"model.layers.0.mlp.down_proj"}));
  expect_reads_back(m, dir, "");
  // Targets as llm-compressor writes them by hand: regexes, matched from the start of the name.
  set_config(dir, [](json& c) {
    auto& g = c["quantization_config"]["config_groups"];
    g["group_0"]["targets"] = {"re:.*self_attn\\.",
                               "re:model\\.layers\\.\\d+\\.mlp\\.(gate|up)_proj"};
    g["group_1"]["targets"] = {"re:.*down_proj$"};
  });
  expect_reads_back(m, dir, "");
  set_config(dir, [](json& c) {  // "mlp" does not match from the start: down_proj matches nothing
    c["quantization_config"]["config_groups"]["group_1"]["targets"] = {"re:mlp"};
  });
  const std::string e = load_error(dir);
  EXPECT_NE(e.find("matches no config group"), std::string::npos) << e;
  fs::remove_all(dir);
  for (HfScheme s : {HfScheme::kGptq, HfScheme::kAwq}) {
    const std::string d = out_dir("mix_refused");
    try {
      write_hf_quantized(m, d, {.scheme = s});
      ADD_FAILURE() << "a mix was written as " << hf_scheme_name(s);
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("compressed-tensors holds mixes"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(fs::exists(d + "/config.json"));
  }
}

TEST(HfQuant, FormatsWithoutALayoutAreRefusedWithTheTensorsAndWhatMaps) {
  const Model m = tiny_model(Format::parse("nf4"), 51);
  const std::string dir = out_dir("nf4");
  try {
    write_hf_quantized(m, dir, {.scheme = HfScheme::kGptq});
    FAIL() << "nf4 written as GPTQ";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("blk.0.attn_q.weight (nf4)"), std::string::npos) << w;
    EXPECT_NE(w.find("blk.0.ffn_down.weight (nf4)"), std::string::npos) << w;
    EXPECT_NE(w.find("formats that map"), std::string::npos) << w;
  }
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  // AWQ is 4-bit only; GPTQ cannot pack a 3-bit row that does not fill its words.
  EXPECT_THROW(write_hf_quantized(tiny_model(Format::parse("int3_g32"), 52), dir,
                                  {.scheme = HfScheme::kAwq}),
               Error);
}

// Sharded output: an index names every tensor's shard, and the model reads back the same.
TEST(HfQuant, ShardsWithAnIndexAboveTheShardSize) {
  const Model m = tiny_model(Format::parse("int4_g32_asym"), 61);
  const std::string dir = out_dir("sharded");
  const auto r = write_hf_quantized(m, dir, {.scheme = HfScheme::kGptq, .max_shard_bytes = 8192});
  ASSERT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));
  std::ifstream f(dir + "/model.safetensors.index.json");
  const json idx = json::parse(f);
  std::set<std::string> shards;
  for (const auto& [name, file] : idx["weight_map"].items()) shards.insert(file.get<std::string>());
  EXPECT_GT(shards.size(), 2u);
  EXPECT_EQ(idx["metadata"]["total_size"].get<uint64_t>(), r.tensor_bytes);
  expect_unpacks_to(m, dir);
  expect_reads_back(m, dir, "");
  fs::remove_all(dir);
}

// Patches int32 element `i` of tensor `name` in dir/model.safetensors.
void patch_i32(const std::string& dir, const std::string& name, int64_t i, int32_t v) {
  uint64_t off;
  {
    const SafetensorsFile f(dir + "/model.safetensors");
    const StTensor* t = f.find(name);
    ASSERT_NE(t, nullptr);
    off = f.offset_of(*t) + uint64_t(i) * 4;
  }
  std::fstream f(dir + "/model.safetensors", std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(std::streamoff(off));
  f.write(reinterpret_cast<const char*>(&v), 4);
}

void set_config(const std::string& dir, const std::function<void(json&)>& edit) {
  json c = read_config(dir);
  edit(c);
  std::ofstream(dir + "/config.json") << c.dump(2);
}

std::string load_error(const std::string& dir) {
  try {
    Model::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(HfQuant, BadCheckpointsAreRefusedNamingFileAndTensor) {
  const Model m = tiny_model(Format::parse("int4_g32_asym"), 71);
  const std::string dir = out_dir("bad");
  write_hf_quantized(m, dir, {.scheme = HfScheme::kGptq});
  // bits disagrees with qweight's shape: 8 bits make qweight's 8 rows 32 inputs, not g_idx's 64.
  set_config(dir, [](json& c) { c["quantization_config"]["bits"] = 8; });
  std::string e = load_error(dir);
  EXPECT_NE(e.find("wrong shape"), std::string::npos) << e;
  EXPECT_NE(e.find("model.safetensors"), std::string::npos) << e;
  EXPECT_NE(e.find("model.layers.0."), std::string::npos) << e;
  set_config(dir, [](json& c) { c["quantization_config"]["bits"] = 4; });
  EXPECT_EQ(load_error(dir), "");
  // A g_idx naming a group that does not exist.
  patch_i32(dir, "model.layers.0.mlp.up_proj.g_idx", 5, 9);
  e = load_error(dir);
  EXPECT_NE(e.find("model.layers.0.mlp.up_proj.g_idx[5]"), std::string::npos) << e;
  EXPECT_NE(e.find("0..1"), std::string::npos) << e;
  patch_i32(dir, "model.layers.0.mlp.up_proj.g_idx", 5, 0);
  // A method lowbit does not read.
  set_config(dir, [](json& c) { c["quantization_config"]["quant_method"] = "bitsandbytes"; });
  e = load_error(dir);
  EXPECT_NE(e.find("config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("bitsandbytes"), std::string::npos) << e;
  set_config(dir, [](json& c) { c["quantization_config"]["quant_method"] = "gptq"; });
  set_config(dir, [](json& c) { c["quantization_config"]["bits"] = 5; });
  e = load_error(dir);
  EXPECT_NE(e.find("quantization_config.bits"), std::string::npos) << e;
  fs::remove_all(dir);
}

// Act-order checkpoints (desc_act with a g_idx that scatters groups over the columns) have no
// contiguous groups: the layer is decoded exactly into f32, with a note saying so.
TEST(HfQuant, ScatteredActOrderGroupsDecodeExactlyIntoF32) {
  const Model m = tiny_model(Format::parse("int4_g32"), 81);
  const std::string dir = out_dir("actorder");
  write_hf_quantized(m, dir, {.scheme = HfScheme::kGptq});
  // Columns 3 and 40 of up_proj swap groups (0 <-> 1).
  patch_i32(dir, "model.layers.0.mlp.up_proj.g_idx", 3, 1);
  patch_i32(dir, "model.layers.0.mlp.up_proj.g_idx", 40, 0);
  const Model r = Model::load(dir);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("act-order"), std::string::npos) << r.notes[0];
  const ModelTensor* t = r.find("blk.0.ffn_up.weight");
  ASSERT_EQ(t->format.name(), "f32");
  const SafetensorsModel st(dir);
  const auto want =
      unpack(st, read_config(dir)["quantization_config"], "model.layers.0.mlp.up_proj", 128, 64);
  EXPECT_EQ(std::memcmp(t->data, want.data(), want.size() * 4), 0);
  fs::remove_all(dir);
}

// The command line, on real models: lowbit's GPTQ (act-order on and off) on TinyStories-656K,
// exported to each layout, unpacked independently, read back with --type into the very bytes.
TEST(HfQuant, CliGptqOnTinyStoriesExportsAndConvertsBackToTheSameTensors) {
  const std::string hf = test::fixture("models/tinystories-656k");
  const std::string text = test::fixture("text/tinystories-valid-head.txt");
  LOWBIT_REQUIRE_FIXTURE(hf);
  LOWBIT_REQUIRE_FIXTURE(text);
  const std::string calib = test::tmp_path("hfq", "calib.txt");
  { std::ofstream(calib) << test::slurp(text).substr(0, 30000); }
  for (const char* order : {"", "--act-order"}) {
    for (const char* type : {"int4_g32", "int3_g64_asym"}) {
      SCOPED_TRACE(std::string(type) + " " + order);
      const std::string q = test::tmp_path("hfq", "q.gguf");
      auto r = test::run_cli("quantize -m " + hf + " -o " + q + " --method gptq --type " + type +
                             " --calib " + calib + " --ctx 128 " + order);
      ASSERT_EQ(r.rc, 0) << r.out;
      const Model m = Model::load(q);
      for (const char* scheme : {"gptq", "awq", "compressed-tensors"}) {
        if (std::string(scheme) == "awq" && std::string(type) != "int4_g32") continue;
        const std::string dir = out_dir(std::string("cli_") + scheme);
        r = test::run_cli("convert " + q + " -o " + dir + " --to " + scheme +
                          " --float-type f32 --tokenizer " + hf + "/tokenizer.json");
        ASSERT_EQ(r.rc, 0) << r.out;
        expect_unpacks_to(m, dir);
        // The tokenizer named, with the files beside it, as Hugging Face tooling reads them.
        for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                              "generation_config.json"}) {
          EXPECT_EQ(test::slurp(dir + "/" + f), test::slurp(hf + "/" + f)) << f;
        }
        const std::string back = test::tmp_path("hfq", "back.gguf");
        r = test::run_cli("convert " + dir + " -o " + back + " --type " + type);
        ASSERT_EQ(r.rc, 0) << r.out;
        EXPECT_NE(r.out.find("14 weight matrices kept their codes"), std::string::npos) << r.out;
        const Model b = Model::load(back);
        for (const auto& t : m.tensors) {  // the linear layers (the embedding went to f32)
          if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) continue;
          const ModelTensor* u = b.find(t.name);
          ASSERT_NE(u, nullptr);
          EXPECT_EQ(u->format, t.format) << t.name;
          ASSERT_EQ(u->bytes, t.bytes) << t.name;
          EXPECT_EQ(std::memcmp(u->data, t.data, t.bytes), 0) << scheme << " " << t.name;
        }
        fs::remove_all(dir);
        fs::remove(back);
      }
      fs::remove(q);
    }
  }
  fs::remove(calib);
}

// A bare .safetensors file (a shard, no config.json) is inspectable like any GGUF: its tensors
// by name, dtype and shape, and why it is not a model.
TEST(HfQuant, InspectShowsABareSafetensorsFile) {
  const Model m = tiny_model(Format::parse("int4_g32"), 91);
  const std::string dir = out_dir("bare");
  write_hf_quantized(m, dir, {.scheme = HfScheme::kGptq});
  const std::string bare = test::tmp_path("hfq", "bare.safetensors");
  fs::copy_file(dir + "/model.safetensors", bare, fs::copy_options::overwrite_existing);
  auto r = test::run_cli("inspect " + bare);
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("model.layers.0.mlp.down_proj.qweight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("I32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("not loadable as a model"), std::string::npos) << r.out;
  r = test::run_cli("inspect --json " + bare, false);
  ASSERT_EQ(r.rc, 0);
  const json j = json::parse(r.out);
  EXPECT_EQ(j["tensors"].size(), SafetensorsModel(bare).tensors().size());
  fs::remove(bare);
  fs::remove_all(dir);
}

// Refusals on the command line: nothing written, the reason named.
TEST(HfQuant, CliRefusesWhatHasNoLayout) {
  const std::string gguf = test::tmp_path("hfq", "nf4.gguf");
  write_gguf(tiny_model(Format::parse("nf4"), 95), gguf, Format::parse("f32"));
  const std::string dir = out_dir("cli_refused");
  auto r = test::run_cli("convert " + gguf + " -o " + dir + " --to awq");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("blk.0.attn_q.weight (nf4)"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir + "/config.json"));
  r = test::run_cli("convert " + gguf + " -o " + dir + " --to gptq --max-shard-size 5XB");
  EXPECT_NE(r.rc, 0);
  EXPECT_NE(r.out.find("--max-shard-size"), std::string::npos) << r.out;
  fs::remove(gguf);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lowbit
