// GGUF reader and writer: every GGUF item of ../shared/bad-inputs.md as a crafted file that must
// be rejected with an Error naming the file and the field, plus write -> read round trips.
#include <gtest/gtest.h>

#include <unistd.h>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>

#include "io/gguf.h"
#include "lowbit/error.h"
#include "test_util.h"

namespace lowbit {
namespace {

// Little-endian byte builder for crafted files.
struct Bytes {
  std::vector<uint8_t> b;
  template <typename T>
  Bytes& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof(T));
    return *this;
  }
  Bytes& str(const std::string& s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Bytes& pad_to(uint64_t align) {
    while (b.size() % align) b.push_back(0);
    return *this;
  }
};

struct TensorSpec {
  std::string name;
  std::vector<uint64_t> ne;
  uint32_t type;
  uint64_t offset;
};

// A GGUF with the given kv writer and tensors; data_bytes of data (pattern) after alignment.
Bytes gguf(uint64_t n_kv, const std::function<void(Bytes&)>& kvs,
           const std::vector<TensorSpec>& tensors, uint64_t data_bytes, uint32_t version = 3,
           uint64_t align = 32) {
  Bytes x;
  x.put<uint32_t>(0x46554747u)
      .put<uint32_t>(version)
      .put<uint64_t>(tensors.size())
      .put<uint64_t>(n_kv);
  kvs(x);
  for (const auto& t : tensors) {
    x.str(t.name).put<uint32_t>(uint32_t(t.ne.size()));
    for (uint64_t d : t.ne) x.put<uint64_t>(d);
    x.put<uint32_t>(t.type).put<uint64_t>(t.offset);
  }
  if (!tensors.empty()) x.pad_to(align);
  for (uint64_t i = 0; i < data_bytes; ++i) x.b.push_back(uint8_t(i * 7));
  return x;
}

void kv_u32(Bytes& x, const std::string& k, uint32_t v) {
  x.str(k).put<uint32_t>(uint32_t(GgufType::kU32)).put<uint32_t>(v);
}
void kv_str(Bytes& x, const std::string& k, const std::string& v) {
  x.str(k).put<uint32_t>(uint32_t(GgufType::kString)).str(v);
}

// Two f32 tensors: a (4 x 2) and b (8), data 32 + 32 bytes.
Bytes valid(uint64_t extra_kv = 0, const std::function<void(Bytes&)>& more = {}) {
  return gguf(
      1 + extra_kv,
      [&](Bytes& x) {
        kv_str(x, "general.architecture", "llama");
        if (more) more(x);
      },
      {{"a", {4, 2}, 0, 0}, {"b", {8}, 0, 32}}, 64);
}

std::string write_file(const std::string& name, const std::vector<uint8_t>& b) {
  const std::string p = ::testing::TempDir() + "/" + name;
  std::ofstream(p, std::ios::binary)
      .write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
  return p;
}

// Expects GgufFile(path) to throw an Error whose message names the file and contains `needle`.
void expect_reject(const std::string& name, const std::vector<uint8_t>& b,
                   const std::string& needle) {
  const std::string p = write_file(name, b);
  try {
    GgufFile g(p);
    ADD_FAILURE() << name << ": accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(p), std::string::npos) << name << ": " << msg;
    EXPECT_NE(msg.find(needle), std::string::npos) << name << ": " << msg;
  }
}

TEST(Gguf, ValidFileParses) {
  const std::string p = write_file("valid.gguf", valid().b);
  GgufFile g(p);
  ASSERT_EQ(g.tensors().size(), 2u);
  EXPECT_EQ(g.tensors()[0].ne, (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(g.tensors()[1].bytes, 32u);
  EXPECT_EQ(g.get_string("general.architecture"), "llama");
  EXPECT_EQ(g.alignment(), 32u);
}

TEST(Gguf, Item1BadMagicShortAndEmpty) {
  auto b = valid().b;
  b[0] = 'X';
  expect_reject("magic.gguf", b, "magic");
  const auto full = valid().b;
  expect_reject("short.gguf", std::vector<uint8_t>(full.begin(), full.begin() + 10),
                "tensor_count");
  expect_reject("empty.gguf", {}, "magic");
}

TEST(Gguf, Item2Versions) {
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    auto x = gguf(
        0, [](Bytes&) {}, {}, 0, v);
    expect_reject("version" + std::to_string(v) + ".gguf", x.b, "version");
  }
  expect_reject("bigendian.gguf",
                gguf(
                    0, [](Bytes&) {}, {}, 0, 0x03000000u)
                    .b,
                "big-endian");
}

TEST(Gguf, Item3HugeCounts) {
  Bytes x;
  x.put<uint32_t>(0x46554747u).put<uint32_t>(3).put<uint64_t>(~0ull).put<uint64_t>(0);
  expect_reject("ntensors.gguf", x.b, "tensor_count");
  Bytes y;
  y.put<uint32_t>(0x46554747u).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(~0ull);
  expect_reject("nkv.gguf", y.b, "metadata_kv_count");
}

TEST(Gguf, Item4StringLongerThanFile) {
  auto x = gguf(
      1, [](Bytes& x) { x.put<uint64_t>(1ull << 40); }, {}, 64);
  expect_reject("strlen.gguf", x.b, "key");
  auto y = gguf(
      1,
      [](Bytes& x) { x.str("k").put<uint32_t>(uint32_t(GgufType::kString)).put<uint64_t>(~0ull); },
      {}, 64);
  expect_reject("strlen2.gguf", y.b, "longer than the rest");
}

TEST(Gguf, Item5ArraysTooLongOverflowingAndTooDeep) {
  auto arr = [](GgufType et, uint64_t n) {
    return [et, n](Bytes& x) {
      x.str("a")
          .put<uint32_t>(uint32_t(GgufType::kArray))
          .put<uint32_t>(uint32_t(et))
          .put<uint64_t>(n);
    };
  };
  expect_reject("arrlong.gguf", gguf(1, arr(GgufType::kU32, 1000), {}, 0).b, "array longer");
  expect_reject("arrovf.gguf", gguf(1, arr(GgufType::kU64, 1ull << 62), {}, 0).b, "overflow");
  auto nested = gguf(
      1,
      [](Bytes& x) {
        x.str("a").put<uint32_t>(uint32_t(GgufType::kArray));
        for (int d = 0; d < 3; ++d) x.put<uint32_t>(uint32_t(GgufType::kArray)).put<uint64_t>(1);
        x.put<uint32_t>(uint32_t(GgufType::kU8)).put<uint64_t>(1).put<uint8_t>(1);
      },
      {}, 0);
  expect_reject("nested.gguf", nested.b, "nested too deeply");
  // One level of nesting (array of arrays) is read.
  auto ok = gguf(
      1,
      [](Bytes& x) {
        x.str("a")
            .put<uint32_t>(uint32_t(GgufType::kArray))
            .put<uint32_t>(uint32_t(GgufType::kArray))
            .put<uint64_t>(1);
        x.put<uint32_t>(uint32_t(GgufType::kU8)).put<uint64_t>(2).put<uint8_t>(5).put<uint8_t>(6);
      },
      {}, 0);
  GgufFile g(write_file("nested_ok.gguf", ok.b));
  EXPECT_EQ(g.find("a")->arr.at(0).arr.at(1).u, 6u);
}

TEST(Gguf, Item6ValueTypeOutOfRange) {
  auto x = gguf(
      1, [](Bytes& x) { x.str("k").put<uint32_t>(13).put<uint32_t>(0); }, {}, 0);
  expect_reject("vtype.gguf", x.b, "type out of range");
}

TEST(Gguf, Item7EmptyAndDuplicateKeys) {
  expect_reject("emptykey.gguf",
                gguf(
                    1, [](Bytes& x) { kv_u32(x, "", 1); }, {}, 0)
                    .b,
                "empty");
  expect_reject("dupkey.gguf",
                gguf(
                    2,
                    [](Bytes& x) {
                      kv_u32(x, "k", 1);
                      kv_u32(x, "k", 2);
                    },
                    {}, 0)
                    .b,
                "duplicate metadata key");
}

TEST(Gguf, Item8Alignment) {
  auto with = [](const std::function<void(Bytes&)>& kv) { return gguf(1, kv, {}, 0).b; };
  expect_reject(
      "align_type.gguf", with([](Bytes& x) {
        x.str("general.alignment").put<uint32_t>(uint32_t(GgufType::kU64)).put<uint64_t>(32);
      }),
      "general.alignment");
  for (uint32_t a : {0u, 3u, 48u, 1u << 21}) {
    expect_reject("align" + std::to_string(a) + ".gguf",
                  with([a](Bytes& x) { kv_u32(x, "general.alignment", a); }), "alignment");
  }
  GgufFile g(
      write_file("align64.gguf", with([](Bytes& x) { kv_u32(x, "general.alignment", 64); })));
  EXPECT_EQ(g.alignment(), 64u);
}

TEST(Gguf, Item9TypedGettersCheckTypeAndCount) {
  auto x = gguf(
      2,
      [](Bytes& x) {
        x.str("scores")
            .put<uint32_t>(uint32_t(GgufType::kArray))
            .put<uint32_t>(uint32_t(GgufType::kI8))
            .put<uint64_t>(2)
            .put<int8_t>(1)
            .put<int8_t>(2);
        kv_str(x, "name", "x");
      },
      {}, 0);
  GgufFile g(write_file("typed.gguf", x.b));
  EXPECT_THROW(g.get_f32_array("scores"), Error);
  EXPECT_THROW(g.get_uint("name"), Error);
  EXPECT_THROW(g.get_string("missing"), Error);
  EXPECT_EQ(g.get_string("missing", "d"), "d");
  try {
    g.get_f32_array("scores");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("array of i8"), std::string::npos) << e.what();
  }
}

TEST(Gguf, Item11TensorNamesTooLongAndDuplicate) {
  expect_reject("longname.gguf",
                gguf(
                    0, [](Bytes&) {}, {{std::string(64, 'n'), {8}, 0, 0}}, 32)
                    .b,
                "name length");
  expect_reject("dupname.gguf",
                gguf(
                    0, [](Bytes&) {}, {{"a", {8}, 0, 0}, {"a", {8}, 0, 32}}, 64)
                    .b,
                "duplicate tensor name");
}

TEST(Gguf, Items12To14DimensionsAndElementCounts) {
  auto one = [](std::vector<uint64_t> ne) {
    return gguf(
               0, [](Bytes&) {}, {{"t", ne, 0, 0}}, 32)
        .b;
  };
  {
    Bytes x;
    x.put<uint32_t>(0x46554747u).put<uint32_t>(3).put<uint64_t>(1).put<uint64_t>(0);
    x.str("t").put<uint32_t>(0xFFFFFFFFu);
    x.b.resize(x.b.size() + 64);
    expect_reject("ndims.gguf", x.b, "n_dims");
  }
  expect_reject("5dims.gguf", one({1, 1, 1, 1, 1}), "n_dims");
  expect_reject("negdim.gguf", one({8, uint64_t(-2)}), "negative dimension");
  expect_reject("zerodim.gguf", one({8, 0}), "zero-sized");
  expect_reject("elemovf.gguf", one({uint64_t(INT64_MAX), 2, 1, 1}), "element count");
}

TEST(Gguf, Items15To17TypesAndBlockSizes) {
  auto one = [](std::vector<uint64_t> ne, uint32_t type) {
    return gguf(
               0, [](Bytes&) {}, {{"t", ne, type, 0}}, 32)
        .b;
  };
  expect_reject("bytesovf.gguf", one({1ull << 31, 1ull << 31}, 0), "overflow");  // 2^62 f32
  expect_reject("rowtile.gguf", one({33, 1}, 2), "cannot be tiled");             // q4_0
  for (uint32_t t : {4u, 40u, 0x7FFFFFFFu, 0xFFFFFFFFu}) {
    expect_reject("type" + std::to_string(t) + ".gguf", one({32}, t), "unknown tensor type");
  }
}

TEST(Gguf, Items18To21OffsetsAndDataRegion) {
  auto two = [](uint64_t off_b, uint64_t data) {
    return gguf(
               0, [](Bytes&) {}, {{"a", {8}, 0, 0}, {"b", {8}, 0, off_b}}, data)
        .b;
  };
  expect_reject("misaligned.gguf", two(33, 96), "misaligned");
  expect_reject("overlap.gguf",
                gguf(
                    0, [](Bytes&) {}, {{"a", {16}, 0, 0}, {"b", {8}, 0, 32}}, 96)
                    .b,
                "overlaps");
  expect_reject("gap.gguf", two(64, 96), "gap");
  expect_reject("truncated.gguf", two(32, 40), "past the end");
  expect_reject("padwrap.gguf", two(~0ull - 31, 64), "");  // offset + size wraps
  // A tensor whose region is smaller than its type needs: b (q8_0, 32 values = 34 bytes) given
  // only the 32 bytes before the end of the file.
  expect_reject("small.gguf",
                gguf(
                    0, [](Bytes&) {}, {{"a", {8}, 0, 0}, {"b", {32}, 8, 32}}, 64)
                    .b,
                "past the end");
}

TEST(Gguf, ZeroTensorVocabularyFileEndingAfterMetadata) {
  const std::string p = test::fixture("models/llama2-tokenizer/ggml-vocab-llama-spm.gguf");
  LOWBIT_REQUIRE_FIXTURE(p);
  GgufFile g(p);
  EXPECT_EQ(g.tensors().size(), 0u);
  EXPECT_EQ(g.get_string_array("tokenizer.ggml.tokens").size(), 32000u);
  EXPECT_EQ(g.get_f32_array("tokenizer.ggml.scores").size(), 32000u);
}

TEST(Gguf, ReferenceStories260KParses) {
  const std::string p = test::fixture("models/stories260K/stories260K.gguf");
  LOWBIT_REQUIRE_FIXTURE(p);
  GgufFile g(p);
  EXPECT_EQ(g.tensors().size(), 48u);
  EXPECT_EQ(g.get_uint("llama.block_count"), 5u);
  EXPECT_EQ(g.find_tensor("token_embd.weight")->ne, (std::vector<int64_t>{64, 512}));
}

TEST(Gguf, WriterRoundTripsMetadataAndTensors) {
  GgufWriter w(64);
  w.set("general.architecture", GgufValue::str("llama"));
  w.set("x.f", GgufValue::f32(1.5f));
  w.set("x.b", GgufValue::boolean(true));
  w.set("x.s", GgufValue::str_array({"a", "", "\xe2\x96\x81x"}));
  w.set("x.i", GgufValue::i32_array({-1, 7}));
  std::vector<float> a(96);
  for (size_t i = 0; i < a.size(); ++i) a[i] = float(i) * 0.25f - 3;
  std::vector<uint8_t> q(Format::parse("q8_0").row_bytes(32) * 3);
  Format::parse("q8_0").quantize(a.data(), 3, 32, nullptr, q.data());
  w.add_tensor("f", {96}, Format::parse("f32"), [&](OutputFile& o) { o.write(a.data(), 384); });
  w.add_tensor("q", {32, 3}, Format::parse("q8_0"),
               [&](OutputFile& o) { o.write(q.data(), q.size()); });
  w.add_tensor("g", {100, 2}, Format::parse("int3_g32_asym"), [&](OutputFile& o) {
    o.write_zeros(Format::parse("int3_g32_asym").row_bytes(100) * 2);
  });
  const std::string p = ::testing::TempDir() + "/written.gguf";
  w.write(p);
  GgufFile g(p);
  EXPECT_EQ(g.alignment(), 64u);
  EXPECT_EQ(g.get_float("x.f"), 1.5);
  EXPECT_TRUE(g.get_bool("x.b", false));
  EXPECT_EQ(g.get_string_array("x.s"), (std::vector<std::string>{"a", "", "\xe2\x96\x81x"}));
  EXPECT_EQ(g.get_i32_array("x.i"), (std::vector<int32_t>{-1, 7}));
  ASSERT_EQ(g.tensors().size(), 3u);
  EXPECT_EQ(std::memcmp(g.find_tensor("f")->data, a.data(), 384), 0);
  EXPECT_EQ(std::memcmp(g.find_tensor("q")->data, q.data(), q.size()), 0);
  EXPECT_EQ(g.find_tensor("g")->format, Format::parse("int3_g32_asym"));
  EXPECT_EQ(g.find_tensor("g")->data - g.find_tensor("f")->data, 512);  // 384 | 102 -> 512
}

TEST(Gguf, Items36To38OutputSafety) {
  const std::string in = write_file("input.gguf", valid().b);
  GgufWriter w;
  w.set("general.architecture", GgufValue::str("llama"));
  EXPECT_THROW(w.write(in, {in}), Error);  // output == input
  const std::string link = ::testing::TempDir() + "/link.gguf";
  std::remove(link.c_str());
  ASSERT_EQ(symlink(in.c_str(), link.c_str()), 0);
  EXPECT_THROW(w.write(link, {in}), Error);  // a link to the input
  // A tensor writer that fails (or writes the wrong size) leaves no file behind.
  const std::string out = ::testing::TempDir() + "/failed.gguf";
  std::remove(out.c_str());
  GgufWriter bad;
  bad.add_tensor("t", {8}, Format::parse("f32"), [](OutputFile& o) { o.write_zeros(16); });
  EXPECT_THROW(bad.write(out), Error);
  EXPECT_FALSE(std::ifstream(out).good());
  GgufWriter boom;
  boom.add_tensor("t", {8}, Format::parse("f32"), [](OutputFile&) { throw Error("disk full"); });
  EXPECT_THROW(boom.write(out), Error);
  EXPECT_FALSE(std::ifstream(out).good());
}

}  // namespace
}  // namespace lowbit
