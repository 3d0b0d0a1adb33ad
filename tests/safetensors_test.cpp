// Safetensors: the real tinystories-656k checkpoint, write -> read round trips (single file and a
// sharded index), safe writing (output == input refused, failed writes leave nothing), and one
// crafted file per validation rule, each refused with an Error naming the file and the field.
#include "io/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lowbit/error.h"
#include "test_util.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

constexpr StDtype kAllDtypes[] = {StDtype::kF64, StDtype::kF32,    StDtype::kF16,   StDtype::kBF16,
                                  StDtype::kI64, StDtype::kI32,    StDtype::kI16,   StDtype::kI8,
                                  StDtype::kU8,  StDtype::kBool,   StDtype::kU16,   StDtype::kU32,
                                  StDtype::kU64, StDtype::kF8E4M3, StDtype::kF8E5M2};

// Every file the tests write lives in one per-process folder (several builds may run the suite at
// once), removed when the test program ends.
std::string scratch_dir() {
  static const std::string dir = [] {
    const std::string d = ::testing::TempDir() + "lowbit_st_" + std::to_string(::getpid());
    fs::create_directories(d);
    return d;
  }();
  return dir;
}

class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(::testing::TempDir() + "lowbit_st_" + std::to_string(::getpid()), ec);
  }
};
[[maybe_unused]] auto* const kScratchCleanup =
    ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

std::string safetensors_tmp(const std::string& name) {
  return scratch_dir() + "/" + name;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[size_t(i)] = char(uint8_t(v >> (8 * i)));
  return s;
}

// A crafted file: header length, header text, then `data_bytes` zero bytes.
std::string craft(const std::string& name, const std::string& header, uint64_t data_bytes = 0) {
  const std::string path = safetensors_tmp(name + ".safetensors");
  write_file(path, le64(header.size()) + header + std::string(data_bytes, '\0'));
  return path;
}

// Loading `path` with Loader must throw an Error naming `file` and `field`, at `offset` when
// given (-2: any offset >= 0).
template <typename Loader = SafetensorsFile>
void expect_refused(const std::string& path, const std::string& field, int64_t offset = -2,
                    const std::string& file = "") {
  try {
    Loader loaded(path);
    ADD_FAILURE() << "no error loading " << path;
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(file.empty() ? path : file), std::string::npos) << msg;
    EXPECT_NE(msg.find("field " + field), std::string::npos) << msg;
    if (offset == -2) {
      EXPECT_GE(e.context().offset, 0) << msg;
    } else {
      EXPECT_EQ(e.context().offset, offset) << msg;
    }
  }
}

// Writer input: a tensor whose bytes are a deterministic pattern.
StWriteTensor pattern_tensor(const std::string& name, StDtype dtype, std::vector<int64_t> shape,
                             uint8_t seed) {
  uint64_t bytes = st_dtype_bytes(dtype);
  for (const int64_t d : shape) bytes *= uint64_t(d);
  return {name, dtype, std::move(shape), [bytes, seed](OutputFile& out) {
            std::vector<uint8_t> data(bytes);
            for (size_t i = 0; i < data.size(); ++i) data[i] = uint8_t(seed + 37 * i);
            out.write(data.data(), data.size());
          }};
}

void expect_pattern(const StTensor& t, uint8_t seed) {
  for (uint64_t i = 0; i < t.bytes; ++i) {
    ASSERT_EQ(t.data[i], uint8_t(seed + 37 * i)) << t.name << " byte " << i;
  }
}

std::vector<std::string> leftovers(const std::string& path) {
  std::vector<std::string> out;
  const fs::path p(path);
  for (const auto& e : fs::directory_iterator(p.parent_path())) {
    if (e.path().filename().string().starts_with(p.filename().string())) {
      out.push_back(e.path().string());
    }
  }
  return out;
}

// ---- the real checkpoint ----------------------------------------------------------------------

TEST(Safetensors, LoadsTinyStoriesCheckpoint) {
  const auto path = test::fixture("models/tinystories-656k/model.safetensors");
  LOWBIT_REQUIRE_FIXTURE(path);
  const auto cfg =
      nlohmann::json::parse(read_file(test::fixture("models/tinystories-656k/config.json")));
  const int64_t hidden = cfg["hidden_size"], inter = cfg["intermediate_size"],
                vocab = cfg["vocab_size"], layers = cfg["num_hidden_layers"],
                heads = cfg["num_attention_heads"], kv_heads = cfg["num_key_value_heads"];
  const int64_t kv_dim = hidden / heads * kv_heads;

  const SafetensorsFile f(path);
  // Tied embedding: only lm_head.weight is stored, the metadata says so.
  ASSERT_EQ(f.tensors().size(), size_t(2 + 9 * layers));
  EXPECT_EQ(f.find("model.embed_tokens.weight"), nullptr);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{
                              {"format", "pt"}, {"model.embed_tokens.weight", "lm_head.weight"}}));
  std::map<std::string, std::vector<int64_t>> want = {{"lm_head.weight", {vocab, hidden}},
                                                      {"model.norm.weight", {hidden}}};
  for (int64_t l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    want[p + "input_layernorm.weight"] = {hidden};
    want[p + "post_attention_layernorm.weight"] = {hidden};
    want[p + "self_attn.q_proj.weight"] = {hidden, hidden};
    want[p + "self_attn.k_proj.weight"] = {kv_dim, hidden};
    want[p + "self_attn.v_proj.weight"] = {kv_dim, hidden};
    want[p + "self_attn.o_proj.weight"] = {hidden, hidden};
    want[p + "mlp.gate_proj.weight"] = {inter, hidden};
    want[p + "mlp.up_proj.weight"] = {inter, hidden};
    want[p + "mlp.down_proj.weight"] = {hidden, inter};
  }
  const uint8_t* prev_end = nullptr;
  for (const StTensor& t : f.tensors()) {
    ASSERT_TRUE(want.contains(t.name)) << t.name;
    EXPECT_EQ(t.shape, want[t.name]) << t.name;
    EXPECT_EQ(t.dtype, StDtype::kF32) << t.name;
    EXPECT_EQ(t.file, path);
    if (prev_end != nullptr) {
      EXPECT_EQ(t.data, prev_end) << "not in data order: " << t.name;
    }
    prev_end = t.data + t.bytes;
    // Every value is an exact upcast of bf16: the low 16 bits are zero.
    for (uint64_t i = 0; i < t.bytes; i += 4) {
      uint32_t u;
      std::memcpy(&u, t.data + i, 4);
      ASSERT_EQ(u & 0xFFFF, 0u) << t.name << " element " << i / 4;
    }
  }
  EXPECT_EQ(f.tensors().front().name, "lm_head.weight");
  EXPECT_EQ(f.offset_of(f.tensors().front()), 8u + 2160u);
  EXPECT_EQ(f.tensors().back().data + f.tensors().back().bytes - f.tensors().front().data, 2624000);

  // The directory resolves to the same single file.
  const SafetensorsModel m(fs::path(path).parent_path().string());
  EXPECT_EQ(m.files(), std::vector<std::string>{
                           (fs::path(path).parent_path() / "model.safetensors").string()});
  EXPECT_EQ(m.tensors().size(), f.tensors().size());
  EXPECT_EQ(m.metadata(), f.metadata());
}

TEST(Safetensors, CopiesTinyStoriesBitIdentically) {
  const auto path = test::fixture("models/tinystories-656k/model.safetensors");
  LOWBIT_REQUIRE_FIXTURE(path);
  const SafetensorsFile in(path);
  std::vector<StWriteTensor> out_tensors;
  for (const StTensor& t : in.tensors()) {
    out_tensors.push_back(
        {t.name, t.dtype, t.shape, [&t](OutputFile& o) { o.write(t.data, t.bytes); }});
  }
  const std::string out_path = safetensors_tmp("copy.safetensors");
  write_safetensors(out_path, in.metadata(), out_tensors, {path});
  const SafetensorsFile out(out_path);
  EXPECT_EQ(out.metadata(), in.metadata());
  ASSERT_EQ(out.tensors().size(), in.tensors().size());
  for (size_t i = 0; i < in.tensors().size(); ++i) {
    const StTensor &a = in.tensors()[i], &b = out.tensors()[i];
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.shape, b.shape);
    EXPECT_EQ(a.dtype, b.dtype);
    ASSERT_EQ(a.bytes, b.bytes);
    EXPECT_EQ(std::memcmp(a.data, b.data, a.bytes), 0) << a.name;
  }
  fs::remove(out_path);
}

// ---- round trips ------------------------------------------------------------------------------

TEST(Safetensors, DtypeNamesAndSizes) {
  for (const StDtype d : kAllDtypes) {
    EXPECT_EQ(st_dtype_from_name(st_dtype_name(d)), d);
    EXPECT_GE(st_dtype_bytes(d), 1u);
  }
  EXPECT_EQ(st_dtype_name(StDtype::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(st_dtype_bytes(StDtype::kBF16), 2u);
  EXPECT_EQ(st_dtype_bytes(StDtype::kU64), 8u);
  EXPECT_EQ(st_dtype_from_name("f32"), std::nullopt);
}

TEST(Safetensors, RoundTripEveryDtypeShapeAndMetadata) {
  std::vector<StWriteTensor> tensors;
  uint8_t seed = 1;
  for (const StDtype d : kAllDtypes) {
    tensors.push_back(pattern_tensor("t." + std::string(st_dtype_name(d)), d, {2, 3}, seed++));
  }
  tensors.push_back(pattern_tensor("scalar", StDtype::kF32, {}, seed++));
  tensors.push_back(pattern_tensor("empty", StDtype::kF16, {0, 4}, seed++));
  tensors.push_back(pattern_tensor("zz.first-in-file?", StDtype::kU8, {5}, seed++));
  const std::map<std::string, std::string> metadata = {
      {"format", "pt"}, {"quote\"and\\slash", "h\xc3\xa9llo \xe2\x9c\x93"}, {"empty", ""}};
  const std::string path = safetensors_tmp("roundtrip.safetensors");
  write_safetensors(path, metadata, tensors, {});

  const std::string bytes = read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
  EXPECT_EQ(n % 8, 0u) << "header padded to a multiple of 8";
  EXPECT_EQ(bytes[8], '{');

  const SafetensorsFile f(path);
  EXPECT_EQ(f.metadata(), metadata);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    // Written order is data order; "empty" (0 bytes) ties with the next tensor's start.
    const StTensor* t = f.find(tensors[i].name);
    ASSERT_NE(t, nullptr) << tensors[i].name;
    EXPECT_EQ(t->dtype, tensors[i].dtype);
    EXPECT_EQ(t->shape, tensors[i].shape);
    expect_pattern(*t, uint8_t(1 + i));
  }
  EXPECT_EQ(f.find("scalar")->bytes, 4u);
  EXPECT_EQ(f.find("empty")->bytes, 0u);
  EXPECT_EQ(f.tensors().front().name, "t.F64");
  EXPECT_EQ(f.tensors().back().name, "zz.first-in-file?");
  EXPECT_EQ(f.offset_of(f.tensors().front()), 8 + n);
  fs::remove(path);
}

TEST(Safetensors, NoMetadataAndNoTensors) {
  const std::string path = safetensors_tmp("nothing.safetensors");
  write_safetensors(path, {}, {}, {});
  const SafetensorsFile f(path);
  EXPECT_TRUE(f.metadata().empty());
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.find("x"), nullptr);
  fs::remove(path);
}

// Writes shard files and an index into a fresh directory; returns the directory.
std::string write_sharded(const std::string& name, const nlohmann::json& weight_map) {
  const std::string dir = safetensors_tmp(name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  write_safetensors(dir + "/model-00001-of-00002.safetensors", {{"format", "pt"}, {"shard", "1"}},
                    {pattern_tensor("a", StDtype::kF32, {2, 2}, 10),
                     pattern_tensor("b", StDtype::kBF16, {3}, 20)},
                    {});
  write_safetensors(dir + "/model-00002-of-00002.safetensors", {{"shard", "2"}},
                    {pattern_tensor("c", StDtype::kI8, {7}, 30)}, {});
  const nlohmann::json index = {{"metadata", {{"total_size", 30}}}, {"weight_map", weight_map}};
  write_file(dir + "/model.safetensors.index.json", index.dump(2));
  return dir;
}

const nlohmann::json kGoodWeightMap = {{"a", "model-00001-of-00002.safetensors"},
                                       {"b", "model-00001-of-00002.safetensors"},
                                       {"c", "model-00002-of-00002.safetensors"}};

TEST(Safetensors, ShardedRoundTripByIndexAndDirectory) {
  const std::string dir = write_sharded("sharded", kGoodWeightMap);
  for (const std::string& path : {dir + "/model.safetensors.index.json", dir}) {
    const SafetensorsModel m(path);
    EXPECT_EQ(m.files(), (std::vector<std::string>{dir + "/model-00001-of-00002.safetensors",
                                                   dir + "/model-00002-of-00002.safetensors"}));
    ASSERT_EQ(m.tensors().size(), 3u);
    EXPECT_EQ(m.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"shard", "1"}}));
    ASSERT_NE(m.find("c"), nullptr);
    EXPECT_EQ(m.find("c")->file, dir + "/model-00002-of-00002.safetensors");
    EXPECT_EQ(m.find("b")->shape, std::vector<int64_t>{3});
    expect_pattern(*m.find("a"), 10);
    expect_pattern(*m.find("b"), 20);
    expect_pattern(*m.find("c"), 30);
    EXPECT_EQ(m.find("d"), nullptr);
  }
  const SafetensorsModel single(dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(single.tensors().size(), 1u);
  fs::remove_all(dir);
}

// ---- safe writing -----------------------------------------------------------------------------

TEST(Safetensors, RefusesToOverwriteItsInput) {
  const std::string path = safetensors_tmp("input.safetensors"),
                    link = safetensors_tmp("input-link.safetensors");
  write_safetensors(path, {}, {pattern_tensor("w", StDtype::kF32, {4}, 3)}, {});
  const std::string before = read_file(path);
  fs::remove(link);
  fs::create_symlink(path, link);
  for (const std::string& out : {path, link}) {
    EXPECT_THROW(write_safetensors(out, {}, {pattern_tensor("w", StDtype::kF32, {4}, 9)}, {path}),
                 Error);
  }
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(leftovers(path).size(), 1u);
  fs::remove(link);
  fs::remove(path);
}

TEST(Safetensors, FailedWriteLeavesNoFile) {
  const std::string path = safetensors_tmp("failed.safetensors");
  fs::remove(path);
  auto throwing = pattern_tensor("boom", StDtype::kF32, {4}, 0);
  throwing.write_data = [](OutputFile& out) {
    out.write("abcd", 4);
    throw std::runtime_error("conversion failed");
  };
  EXPECT_THROW(
      write_safetensors(path, {}, {pattern_tensor("ok", StDtype::kU8, {3}, 1), throwing}, {}),
      std::runtime_error);
  EXPECT_FALSE(fs::exists(path));
  EXPECT_TRUE(leftovers(path).empty()) << "temporary left behind";

  // An existing target survives a failed rewrite untouched.
  write_safetensors(path, {}, {pattern_tensor("ok", StDtype::kU8, {3}, 1)}, {});
  const std::string before = read_file(path);
  EXPECT_THROW(write_safetensors(path, {}, {throwing}, {}), std::runtime_error);
  EXPECT_EQ(read_file(path), before);
  EXPECT_EQ(leftovers(path).size(), 1u);
  fs::remove(path);
}

TEST(Safetensors, CallbackWritingTheWrongByteCountIsRefused) {
  const std::string path = safetensors_tmp("short.safetensors");
  fs::remove(path);
  for (const uint64_t n : {uint64_t(12), uint64_t(20)}) {
    auto t = pattern_tensor("w", StDtype::kF32, {4}, 0);
    t.write_data = [n](OutputFile& out) { out.write_zeros(n); };
    try {
      write_safetensors(path, {}, {t}, {});
      ADD_FAILURE() << "wrong byte count accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("tensor 'w' data"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  }
  auto missing = pattern_tensor("w", StDtype::kF32, {4}, 0);
  missing.write_data = nullptr;
  EXPECT_THROW(write_safetensors(path, {}, {missing}, {}), Error);
  EXPECT_TRUE(leftovers(path).empty());
}

TEST(Safetensors, WriterRefusesBadTensors) {
  const std::string path = safetensors_tmp("badwrite.safetensors");
  const auto refuse = [&](std::vector<StWriteTensor> tensors, const std::string& field) {
    try {
      write_safetensors(path, {}, tensors, {});
      ADD_FAILURE() << "accepted: " << field;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(path));
  };
  refuse({pattern_tensor("w", StDtype::kF32, {2}, 0), pattern_tensor("w", StDtype::kF32, {2}, 0)},
         "tensor 'w' name");
  refuse({pattern_tensor("", StDtype::kF32, {2}, 0)}, "tensor '' name");
  refuse({pattern_tensor("__metadata__", StDtype::kF32, {2}, 0)}, "tensor '__metadata__' name");
  refuse({{"neg", StDtype::kF32, {2, -1}, nullptr}}, "tensor 'neg' shape");
  refuse({{"huge", StDtype::kF32, {int64_t(1) << 40, int64_t(1) << 40}, nullptr}},
         "tensor 'huge' shape");
  // Fits 64 bits but past 2^53: the writer's own header fails the reader's rules.
  refuse({{"big", StDtype::kU8, {int64_t(1) << 54}, nullptr}}, "tensor 'big' data_offsets");
}

// ---- crafted files: one per validation rule ---------------------------------------------------

const std::string kGood = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

TEST(Safetensors, CraftedBaselineLoads) {
  const SafetensorsFile f(craft("baseline", kGood, 8));
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensors()[0].bytes, 8u);
  const SafetensorsFile padded(craft("padded", kGood + "     ", 8));
  EXPECT_EQ(padded.tensors().size(), 1u);
  const SafetensorsFile null_meta(craft("nullmeta", R"({"__metadata__":null})", 0));
  EXPECT_TRUE(null_meta.metadata().empty());
}

TEST(Safetensors, RefusesFileUnder8Bytes) {
  const std::string path = safetensors_tmp("tiny.safetensors");
  write_file(path, "\x02\0\0\0");
  expect_refused(path, "header length", 0);
  write_file(path, "");
  expect_refused(path, "header length", 0);
}

TEST(Safetensors, RefusesHeaderLengthOver100MB) {
  const std::string path = safetensors_tmp("hugeheader.safetensors");
  write_file(path, le64(100'000'001) + kGood);
  expect_refused(path, "header length", 0);
}

TEST(Safetensors, RefusesHeaderLengthOverflowing) {
  const std::string path = safetensors_tmp("overflow.safetensors");
  write_file(path, le64(UINT64_MAX - 3) + kGood);
  expect_refused(path, "header length", 0);
}

TEST(Safetensors, RefusesHeaderPastTheEnd) {
  const std::string path = safetensors_tmp("pastend.safetensors");
  write_file(path, le64(kGood.size() + 1) + kGood);
  expect_refused(path, "header length", 0);
}

TEST(Safetensors, RefusesHeaderNotUtf8) {
  expect_refused(craft("notutf8", "{\"w\xff\":1}"), "header", 8 + 3);
  expect_refused(craft("overlong", "{\"\xc0\xaf\":1}"), "header", 8 + 2);
  expect_refused(craft("surrogate", "{\"\xed\xa0\x80\":1}"), "header", 8 + 2);
}

TEST(Safetensors, RefusesHeaderNotAnObject) {
  expect_refused(craft("array", "[1,2]"), "header", 8);
  expect_refused(craft("string", "\"w\""), "header", 8);
}

TEST(Safetensors, RefusesMalformedJson) {
  expect_refused(craft("malformed", R"({"w":{"dtype":"F32",)"), "header");
  expect_refused(craft("trailing", kGood + "x", 8), "header");
  expect_refused(craft("nul", std::string("{\"w\"\0:1}", 8)), "header", 8 + 4);
  expect_refused(craft("nulpad", kGood + std::string("\0garbage", 8), 8), "header",
                 8 + int64_t(kGood.size()));
  expect_refused(craft("bom", "\xef\xbb\xbf" + kGood, 8), "header", 8);
  expect_refused(craft("leadspace", " " + kGood, 8), "header", 8);
  expect_refused(craft("empty", ""), "header", 8);
  expect_refused(craft("deep", std::string(200, '[') + std::string(200, ']')), "header");
}

TEST(Safetensors, RefusesDuplicateKeys) {
  const std::string dup_tensor = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                                 R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  expect_refused(craft("duptensor", dup_tensor, 8), "header key 'w'",
                 8 + int64_t(dup_tensor.rfind("\"w\"")));
  const std::string dup_field =
      R"({"w":{"dtype":"F32","dtype":"F16","shape":[2],"data_offsets":[0,8]}})";
  expect_refused(craft("dupfield", dup_field, 8), "header key 'dtype'",
                 8 + int64_t(dup_field.rfind("\"dtype\"")));
  expect_refused(craft("dupmeta", R"({"__metadata__":{"a":"1","a":"2"}})"), "header key 'a'");
}

TEST(Safetensors, RefusesUnknownDtype) {
  expect_refused(craft("dtype", R"({"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", 8),
                 "tensor 'w' dtype", 9);
  expect_refused(craft("dtype2", R"({"w":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8),
                 "tensor 'w' dtype");
  expect_refused(craft("nodtype", R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8),
                 "tensor 'w' dtype");
}

TEST(Safetensors, RefusesBadShapes) {
  expect_refused(craft("negshape", R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})"),
                 "tensor 'w' shape", 9);
  expect_refused(craft("fltshape", R"({"w":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})"),
                 "tensor 'w' shape");
  expect_refused(craft("strshape", R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})"),
                 "tensor 'w' shape");
  expect_refused(
      craft("bigdim", R"({"w":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,8]}})"),
      "tensor 'w' shape");
  // Element count overflows; then a count that fits but overflows once multiplied by 4 bytes.
  expect_refused(
      craft("prodoverflow",
            R"({"w":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}})"),
      "tensor 'w' shape");
  expect_refused(
      craft("bytesoverflow",
            R"({"w":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,8]}})"),
      "tensor 'w' shape");
}

TEST(Safetensors, RefusesBadDataOffsets) {
  const auto entry = [](const std::string& offsets) {
    return R"({"w":{"dtype":"F32","shape":[2],"data_offsets":)" + offsets + "}}";
  };
  expect_refused(craft("off1", entry("[0]"), 8), "tensor 'w' data_offsets", 9);
  expect_refused(craft("off3", entry("[0,8,8]"), 8), "tensor 'w' data_offsets");
  expect_refused(craft("offneg", entry("[-8,0]"), 8), "tensor 'w' data_offsets");
  expect_refused(craft("offflt", entry("[0,8.0]"), 8), "tensor 'w' data_offsets");
  expect_refused(craft("offstr", entry(R"(["0","8"])"), 8), "tensor 'w' data_offsets");
  expect_refused(craft("off53", entry("[9007199254740993,9007199254741001]"), 8),
                 "tensor 'w' data_offsets");
  expect_refused(craft("offrev", entry("[8,0]"), 8), "tensor 'w' data_offsets");
}

TEST(Safetensors, RefusesSizeNotMatchingShape) {
  expect_refused(craft("mismatch", R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                 "tensor 'w' data_offsets", 9);
  expect_refused(
      craft("mismatch16", R"({"w":{"dtype":"BF16","shape":[2],"data_offsets":[0,8]}})", 8),
      "tensor 'w' data_offsets");
}

TEST(Safetensors, RefusesGapsOverlapsAndUncoveredBytes) {
  const std::string a = R"("a":{"dtype":"U8","shape":[4],"data_offsets":)";
  const std::string b = R"("b":{"dtype":"U8","shape":[4],"data_offsets":)";
  const std::string gap = "{" + a + "[0,4]}," + b + "[6,10]}}";
  expect_refused(craft("gap", gap, 10), "tensor 'b' data_offsets", 8 + int64_t(gap.size()) + 4);
  const std::string overlap = "{" + a + "[0,4]}," + b + "[2,6]}}";
  expect_refused(craft("overlap", overlap, 6), "tensor 'b' data_offsets",
                 8 + int64_t(overlap.size()) + 2);
  const std::string before = "{" + a + "[2,6]}}";
  expect_refused(craft("before", before, 6), "tensor 'a' data_offsets", 8 + int64_t(before.size()));
  const std::string tail = "{" + a + "[0,4]}}";
  expect_refused(craft("tail", tail, 5), "data section", 8 + int64_t(tail.size()) + 4);
  expect_refused(craft("notensors", "{}", 3), "data section", 10);
}

TEST(Safetensors, RefusesDataPastTheEnd) {
  const std::string h = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  expect_refused(craft("shortdata", h, 7), "tensor 'w' data_offsets", 8 + int64_t(h.size()));
}

TEST(Safetensors, RefusesBadMetadata) {
  expect_refused(craft("metanum", R"({"__metadata__":{"format":"pt","n":3}})"), "__metadata__ 'n'",
                 9);
  expect_refused(craft("metaobj", R"({"__metadata__":{"x":{"y":"z"}}})"), "__metadata__ 'x'");
  expect_refused(craft("metaarr", R"({"__metadata__":["pt"]})"), "__metadata__");
  expect_refused(craft("entrynotobj", R"({"w":[1,2]})"), "tensor 'w' entry", 9);
}

// ---- sharded checkpoints ----------------------------------------------------------------------

TEST(Safetensors, RefusesIndexNamingAMissingShard) {
  nlohmann::json wm = kGoodWeightMap;
  wm["c"] = "model-00003-of-00002.safetensors";
  const std::string dir = write_sharded("missing", wm);
  const std::string index = dir + "/model.safetensors.index.json";
  expect_refused<SafetensorsModel>(index, "weight_map 'c'");
  expect_refused<SafetensorsModel>(dir, "weight_map 'c'", -2, index);
  fs::remove_all(dir);
}

TEST(Safetensors, RefusesTensorAbsentFromItsShard) {
  nlohmann::json wm = kGoodWeightMap;
  wm["d"] = "model-00002-of-00002.safetensors";
  const std::string dir = write_sharded("absent", wm);
  expect_refused<SafetensorsModel>(dir + "/model.safetensors.index.json", "weight_map 'd'");
  // Listed under the wrong shard: absent from the one the index names.
  wm = kGoodWeightMap;
  wm["c"] = "model-00001-of-00002.safetensors";
  write_file(dir + "/model.safetensors.index.json", nlohmann::json{{"weight_map", wm}}.dump());
  expect_refused<SafetensorsModel>(dir + "/model.safetensors.index.json", "weight_map 'c'");
  fs::remove_all(dir);
}

TEST(Safetensors, RefusesTensorInTwoShards) {
  const std::string dir = write_sharded("twice", kGoodWeightMap);
  const std::string shard2 = dir + "/model-00002-of-00002.safetensors";
  write_safetensors(
      shard2, {},
      {pattern_tensor("c", StDtype::kI8, {7}, 30), pattern_tensor("a", StDtype::kF32, {2, 2}, 10)},
      {});
  expect_refused<SafetensorsModel>(dir + "/model.safetensors.index.json", "tensor 'a'", -2, shard2);
  fs::remove_all(dir);
}

TEST(Safetensors, RefusesTensorMissingFromTheIndex) {
  nlohmann::json wm = kGoodWeightMap;
  wm.erase("b");
  const std::string dir = write_sharded("unlisted", wm);
  expect_refused<SafetensorsModel>(dir + "/model.safetensors.index.json", "weight_map");
  fs::remove_all(dir);
}

TEST(Safetensors, RefusesShardPathsEscapingTheDirectory) {
  for (const char* bad :
       {"../model-00002-of-00002.safetensors", "sub/../../x.safetensors", "/etc/passwd", ""}) {
    nlohmann::json wm = kGoodWeightMap;
    wm["c"] = bad;
    const std::string dir = write_sharded("escape", wm);
    expect_refused<SafetensorsModel>(dir + "/model.safetensors.index.json", "weight_map 'c'");
    fs::remove_all(dir);
  }
}

TEST(Safetensors, RefusesBadIndexJson) {
  const std::string dir = write_sharded("badindex", kGoodWeightMap);
  const std::string index = dir + "/model.safetensors.index.json";
  write_file(index, R"({"weight_map":{"a":"model-00001-of-00002.safetensors","a":"x"}})");
  expect_refused<SafetensorsModel>(index, "index key 'a'");
  write_file(index, R"({"metadata":{}})");
  expect_refused<SafetensorsModel>(index, "weight_map");
  write_file(index, R"({"weight_map":{"a":1}})");
  expect_refused<SafetensorsModel>(index, "weight_map 'a'");
  write_file(index, R"({"weight_map":)");
  expect_refused<SafetensorsModel>(index, "index");
  fs::remove_all(dir);
  fs::create_directories(dir);
  expect_refused<SafetensorsModel>(dir, "directory", -1);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace lowbit
