// Hugging Face quantized checkpoints (lowbit/hf_quant.h): GPTQ, AWQ and compressed-tensors, in and
// out. Both directions go through one neutral form of a weight matrix, QuantMatrix: unsigned codes
// q[n][k], an fp16 scale and an integer zero point per (row, group), and the group of each input
// column (g_idx), so that W[n][k] = scale * (q - zero) -- the arithmetic lowbit's grouped integer
// formats, Q4_0, Q4_1 and Q8_0 share with the three layouts.
#include "lowbit/hf_quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "io/model_internal.h"
#include "io/safetensors.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/half.h"
#include "lowbit/output_file.h"

namespace lowbit {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// ---- The neutral form ------------------------------------------------------------------------

struct Layout {
  int bits = 4;
  bool asym = false;
  // Elements per group along a row (a group longer than the row covers it all). per_row: one
  // group per row, group = K of the matrix at hand.
  int64_t group = 32;
  bool per_row = false;
  int64_t groups(int64_t K) const { return (K + group - 1) / group; }
  int qmax() const { return (1 << bits) - 1; }
  int mid() const { return 1 << (bits - 1); }
};

struct QuantMatrix {
  int64_t N = 0, K = 0, G = 0;
  Layout L;
  std::vector<uint8_t> q;       // N x K codes in 0..qmax
  std::vector<uint16_t> scale;  // N x G, fp16 bits
  std::vector<int32_t> zero;    // N x G; GPTQ v1's overflowed zero reads as qmax + 1
  std::vector<int32_t> g_idx;   // K; empty: column k is in group k / group

  void resize(int64_t n, int64_t k, const Layout& l) {
    N = n, K = k, L = l, G = l.groups(k);
    q.assign(size_t(N * K), 0);
    scale.assign(size_t(N * G), 0);
    zero.assign(size_t(N * G), l.mid());
  }
  int64_t group_of(int64_t k) const { return g_idx.empty() ? k / L.group : g_idx[size_t(k)]; }
  bool trivial_groups() const {
    for (int64_t k = 0; k < int64_t(g_idx.size()); ++k) {
      if (g_idx[size_t(k)] != k / L.group) return false;
    }
    return true;
  }
};

// AWQ (GEMM) packs 8 output columns per 32-bit word: nibble i holds column 8c + kAwqOrder[i].
constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// Word c of a row of 4-bit values, value(n) for column n.
template <typename F>
uint32_t awq_word(int64_t c, F value) {
  uint32_t v = 0;
  for (int i = 0; i < 8; ++i) v |= (uint32_t(value(8 * c + kAwqOrder[i])) & 15u) << (4 * i);
  return v;
}

uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Bits and symmetry of a lowbit format whose arithmetic is scale * (q - zero) with an integer
// zero; nullopt for every other format.
std::optional<Layout> layout_of(const Format& f, int64_t K) {
  const std::string_view n = f.info().name;
  if (n == "q4_0") return Layout{4, false, 32};
  if (n == "q8_0") return Layout{8, false, 32};
  if (n == "q4_1") return Layout{4, true, 32};
  if (!f.grouped() || n.size() < 4 || n.substr(0, 3) != "int") return std::nullopt;
  Layout l;
  l.bits = n[3] - '0';
  l.asym = n.size() > 4 && n.substr(4) == "_asym";
  l.per_row = f.group_elems() == 0;
  l.group = l.per_row ? K : int64_t(f.group_elems());
  return l;
}

// One stored row of format f -> codes, scales and zeros of row n of Q. False when the row has no
// integer zero point (a Q4_1 block whose minimum is not -scale * z).
bool take_row(const Format& f, const uint8_t* row, QuantMatrix& Q, int64_t n) {
  const std::string_view name = f.info().name;
  uint8_t* q = &Q.q[size_t(n * Q.K)];
  uint16_t* s = &Q.scale[size_t(n * Q.G)];
  int32_t* z = &Q.zero[size_t(n * Q.G)];
  bool exact = true;
  for (int64_t g = 0; g < Q.G; ++g) {
    const int64_t k0 = g * Q.L.group, len = std::min(Q.L.group, Q.K - k0);
    if (name == "q4_0" || name == "q4_1") {
      const uint8_t* p = row + g * (name == "q4_0" ? 18 : 20);
      const uint8_t* qs = p + (name == "q4_0" ? 2 : 4);
      s[g] = rd16(p);
      for (int j = 0; j < 16; ++j) q[k0 + j] = qs[j] & 15, q[k0 + j + 16] = uint8_t(qs[j] >> 4);
      if (name == "q4_0") {
        z[g] = 8;
        continue;
      }
      const float d = fp16_to_f32(s[g]), m = fp16_to_f32(rd16(p + 2));
      if (d == 0) {
        z[g] = 0, exact &= m == 0;
        continue;
      }
      const float zf = std::nearbyint(-m / d);
      z[g] = zf >= 0 && zf <= 15 ? int32_t(zf) : 0;
      exact &= zf >= 0 && zf <= 15 && -(d * zf) == m;
    } else if (name == "q8_0") {
      const uint8_t* p = row + g * 34;
      s[g] = rd16(p), z[g] = 128;
      for (int j = 0; j < 32; ++j) q[k0 + j] = uint8_t(int(int8_t(p[2 + j])) + 128);
    } else {  // grouped ints: {fp16 scale; u8 zero (asym); LSB-first codes}
      const uint8_t* p = row;
      s[g] = rd16(p), z[g] = Q.L.asym ? p[2] : Q.L.mid();
      const uint8_t* codes = p + (Q.L.asym ? 3 : 2);
      for (int64_t i = 0; i < len; ++i) {
        const uint64_t bit = uint64_t(i) * uint64_t(Q.L.bits);
        uint32_t v = codes[bit / 8] >> (bit % 8);
        if (bit % 8 + uint64_t(Q.L.bits) > 8) v |= uint32_t(codes[bit / 8 + 1]) << (8 - bit % 8);
        q[k0 + i] = uint8_t(v & uint32_t(Q.L.qmax()));
      }
      row += f.info().block_bytes(len);
    }
  }
  return exact;
}

// Row n of Q in format f (chosen by target_format, so every check below holds).
void put_row(const Format& f, const QuantMatrix& Q, int64_t n, uint8_t* out) {
  const std::string_view name = f.info().name;
  const uint8_t* q = &Q.q[size_t(n * Q.K)];
  const uint16_t* s = &Q.scale[size_t(n * Q.G)];
  const int32_t* z = &Q.zero[size_t(n * Q.G)];
  const bool asym = name.ends_with("_asym");  // the target's layout, whatever Q.L says
  for (int64_t g = 0; g < Q.G; ++g) {
    const int64_t k0 = g * Q.L.group, len = std::min(Q.L.group, Q.K - k0);
    if (name == "q4_0" || name == "q4_1") {
      const int hdr = name == "q4_0" ? 2 : 4;
      std::memcpy(out, &s[g], 2);
      if (name == "q4_1") {
        const uint16_t m = f32_to_fp16(-(fp16_to_f32(s[g]) * float(z[g])));
        std::memcpy(out + 2, &m, 2);
      }
      for (int j = 0; j < 16; ++j) out[hdr + j] = uint8_t(q[k0 + j] | (q[k0 + j + 16] << 4));
      out += hdr + 16;
    } else if (name == "q8_0") {
      std::memcpy(out, &s[g], 2);
      for (int j = 0; j < 32; ++j) out[2 + j] = uint8_t(int8_t(int(q[k0 + j]) - 128));
      out += 34;
    } else {
      const uint64_t bytes = f.info().block_bytes(len);
      std::memset(out, 0, bytes);
      std::memcpy(out, &s[g], 2);
      if (asym) out[2] = uint8_t(z[g]);
      uint8_t* codes = out + (asym ? 3 : 2);
      for (int64_t i = 0; i < len; ++i) {
        const uint64_t bit = uint64_t(i) * uint64_t(Q.L.bits);
        codes[bit / 8] |= uint8_t(q[k0 + i] << (bit % 8));
        if (bit % 8 + uint64_t(Q.L.bits) > 8)
          codes[bit / 8 + 1] |= uint8_t(q[k0 + i] >> (8 - bit % 8));
      }
      out += bytes;
    }
  }
}

// The lowbit format holding Q exactly, or nullopt (then Q is decoded into f32) with the reason.
std::optional<Format> target_format(const QuantMatrix& Q, std::string& why) {
  if (!Q.trivial_groups()) {
    why = "act-order groups (g_idx) are not contiguous";
    return std::nullopt;
  }
  const Layout& L = Q.L;
  bool all_mid = true;
  for (int32_t z : Q.zero) {
    if (z < 0 || z > L.qmax()) {
      why = "a zero point of " + std::to_string(z) + " lies outside " + std::to_string(L.bits) +
            "-bit codes (GPTQ v1 stores zero - 1: a zero of 0 overflows)";
      return std::nullopt;
    }
    all_mid &= z == L.mid();
  }
  const bool asym = L.asym || !all_mid;  // as declared; symmetric-declared zeros must agree
  const bool whole_row = L.per_row || (L.group >= Q.K && L.group > int64_t(kMaxGroupElems));
  if (!whole_row && L.group > int64_t(kMaxGroupElems)) {
    why = "a group of " + std::to_string(L.group) + " is longer than lowbit's groups";
    return std::nullopt;
  }
  if (!L.per_row && L.group == 32 && Q.K % 32 == 0) {
    if (L.bits == 4 && !asym) return Format::parse("q4_0");
    if (L.bits == 8 && !asym) return Format::parse("q8_0");
    if (L.bits == 4 && asym) {
      bool exact = true;  // Q4_1 stores -scale * zero as fp16: exact when it fits
      for (size_t i = 0; i < Q.scale.size() && exact; ++i) {
        const float m = -(fp16_to_f32(Q.scale[i]) * float(Q.zero[i]));
        exact = round_fp16(m) == m;
      }
      if (exact) return Format::parse("q4_1");
    }
  }
  if (L.bits == 8 && asym) {
    why = "lowbit has no asymmetric 8-bit format";
    return std::nullopt;
  }
  if (L.bits < 2 || L.bits > 8 || L.bits == 7) {
    why = "lowbit has no " + std::to_string(L.bits) + "-bit integer format";
    return std::nullopt;
  }
  std::string name = "int" + std::to_string(L.bits);
  if (!whole_row) name += "_g" + std::to_string(L.group);
  if (asym) name += "_asym";
  return Format::parse(name);
}

// ---- Reading ---------------------------------------------------------------------------------

struct Reader {
  const SafetensorsModel& st;
  const std::string& cfg_path;
  HfQuantized& out;
  std::vector<std::shared_ptr<const void>>& owners;

  [[noreturn]] void fail(const std::string& what, const StTensor* t, const std::string& field,
                         const std::string& expected = "", const std::string& found = "") const {
    throw Error(
        what,
        {.file = t ? t->file : cfg_path, .field = field, .expected = expected, .found = found});
  }

  const StTensor* get(const std::string& name, bool required) {
    const StTensor* t = st.find(name);
    if (!t && required) fail("quantized layer is missing a tensor", nullptr, name);
    if (t) out.consumed.insert(name);
    return t;
  }

  static std::string shape_str(const std::vector<int64_t>& s) {
    std::string r = "[";
    for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
    return r + "]";
  }

  void expect(const StTensor* t, std::initializer_list<StDtype> dtypes,
              const std::vector<int64_t>& shape, const std::string& why) const {
    if (std::find(dtypes.begin(), dtypes.end(), t->dtype) == dtypes.end()) {
      std::string names;
      for (StDtype d : dtypes)
        names += (names.empty() ? "" : " or ") + std::string(st_dtype_name(d));
      fail("quantized tensor has the wrong dtype", t, t->name, names,
           std::string(st_dtype_name(t->dtype)));
    }
    if (t->shape != shape)
      fail("quantized tensor has the wrong shape", t, t->name, shape_str(shape) + " (" + why + ")",
           shape_str(t->shape));
  }

  static uint32_t word(const StTensor* t, int64_t i) {
    uint32_t v;
    std::memcpy(&v, t->data + uint64_t(i) * 4, 4);
    return v;
  }

  static float scale_at(const StTensor* t, int64_t i) {
    if (t->dtype == StDtype::kF16) return fp16_to_f32(rd16(t->data + uint64_t(i) * 2));
    if (t->dtype == StDtype::kBF16) return bf16_to_f32(rd16(t->data + uint64_t(i) * 2));
    float f;
    std::memcpy(&f, t->data + uint64_t(i) * 4, 4);
    return f;
  }

  // Scales [G, N] (GPTQ, AWQ), [N, G] (compressed-tensors) or one for all (broadcast) into Q as
  // fp16. When fp16 cannot hold one of them exactly (bf16 / f32 scales), `wide` gets them all and
  // the layer decodes into f32.
  void scales(const StTensor* t, QuantMatrix& Q, bool group_major, std::vector<float>& wide,
              bool broadcast = false) {
    std::vector<float> f(size_t(Q.N * Q.G));
    bool exact = true;
    for (int64_t n = 0; n < Q.N; ++n) {
      for (int64_t g = 0; g < Q.G; ++g) {
        const int64_t i = broadcast ? 0 : group_major ? g * Q.N + n : n * Q.G + g;
        const float v = scale_at(t, i);
        if (!std::isfinite(v)) {
          fail("a scale is not finite", t, t->name + "[" + std::to_string(i) + "]",
               "a finite number", std::to_string(v));
        }
        const uint16_t h = f32_to_fp16(v);
        Q.scale[size_t(n * Q.G + g)] = h;
        f[size_t(n * Q.G + g)] = v;
        exact &= fp16_to_f32(h) == v;
      }
    }
    if (!exact) wide = std::move(f);
  }

  void g_idx(const StTensor* t, QuantMatrix& Q) {
    if (!t) return;
    expect(t, {StDtype::kI32}, {Q.K}, "one group index per input column");
    Q.g_idx.resize(size_t(Q.K));
    for (int64_t k = 0; k < Q.K; ++k) {
      const int32_t g = int32_t(word(t, k));
      if (g < 0 || g >= Q.G) {
        fail("g_idx names a group that does not exist", t, t->name + "[" + std::to_string(k) + "]",
             "0.." + std::to_string(Q.G - 1), std::to_string(g));
      }
      Q.g_idx[size_t(k)] = g;
    }
  }

  // Q (and scales wider than fp16) -> one tensor under `name`, exact either way.
  void emit(const std::string& name, const QuantMatrix& Q, const std::vector<float>& wide) {
    std::string why = "its scales do not fit fp16";
    std::optional<Format> f;
    if (wide.empty()) f = target_format(Q, why);
    if (f) {
      const uint64_t rb = f->row_bytes(Q.K);
      auto buf = std::make_shared<std::vector<uint8_t>>(size_t(rb * uint64_t(Q.N)));
      for (int64_t n = 0; n < Q.N; ++n) put_row(*f, Q, n, buf->data() + uint64_t(n) * rb);
      out.tensors.push_back({name, *f, {Q.N, Q.K}, buf->data(), buf->size(), false});
      owners.push_back(buf);
      return;
    }
    auto buf = std::make_shared<std::vector<float>>(size_t(Q.N * Q.K));
    for (int64_t n = 0; n < Q.N; ++n) {
      for (int64_t k = 0; k < Q.K; ++k) {
        const int64_t gi = n * Q.G + Q.group_of(k);
        const float s = wide.empty() ? fp16_to_f32(Q.scale[size_t(gi)]) : wide[size_t(gi)];
        (*buf)[size_t(n * Q.K + k)] = float(int(Q.q[size_t(n * Q.K + k)]) - Q.zero[size_t(gi)]) * s;
      }
    }
    out.tensors.push_back({name,
                           Format::parse("f32"),
                           {Q.N, Q.K},
                           reinterpret_cast<const uint8_t*>(buf->data()),
                           buf->size() * 4,
                           false});
    owners.push_back(buf);
    out.notes.push_back(name + ": decoded into f32 (exact), because " + why);
  }

  // ---- GPTQ ----
  void gptq(const std::string& prefix, int bits, int64_t group, bool asym, bool v2) {
    const StTensor* qw = get(prefix + ".qweight", true);
    if (qw->dtype != StDtype::kI32 || qw->shape.size() != 2) {
      fail("qweight must be a 2-D int32 tensor", qw, qw->name, "I32 [in*bits/32, out]",
           std::string(st_dtype_name(qw->dtype)) + " " + shape_str(qw->shape));
    }
    const int64_t rows = qw->shape[0], N = qw->shape[1];
    if (rows <= 0 || N <= 0 || (rows * 32) % bits != 0 || (N * bits) % 32 != 0) {
      fail("qweight's shape disagrees with bits", qw, qw->name,
           "[in*" + std::to_string(bits) + "/32, out] with out*" + std::to_string(bits) +
               " a multiple of 32",
           shape_str(qw->shape));
    }
    const int64_t K = rows * 32 / bits;
    Layout L{bits, false, group > 0 ? group : K, group <= 0};
    QuantMatrix Q;
    Q.resize(N, K, L);
    const StTensor* qz = get(prefix + ".qzeros", true);
    expect(qz, {StDtype::kI32}, {Q.G, N * bits / 32},
           "groups = ceil(in / group_size), out*bits/32");
    const StTensor* sc = get(prefix + ".scales", true);
    expect(sc, {StDtype::kF16, StDtype::kBF16, StDtype::kF32}, {Q.G, N}, "groups, out");
    g_idx(get(prefix + ".g_idx", false), Q);
    for (int64_t n = 0; n < N; ++n) {  // column n: a bit stream along k
      for (int64_t k = 0; k < K; ++k) {
        const uint64_t bit = uint64_t(k) * uint64_t(bits), w = bit / 32, sh = bit % 32;
        uint64_t v = word(qw, int64_t(w) * N + n) >> sh;
        if (sh + uint64_t(bits) > 32) v |= uint64_t(word(qw, int64_t(w + 1) * N + n)) << (32 - sh);
        Q.q[size_t(n * K + k)] = uint8_t(v & uint64_t(L.qmax()));
      }
    }
    const int64_t zw = N * bits / 32;
    for (int64_t g = 0; g < Q.G; ++g) {
      for (int64_t n = 0; n < N; ++n) {
        const uint64_t bit = uint64_t(n) * uint64_t(bits), w = bit / 32, sh = bit % 32;
        uint64_t v = word(qz, g * zw + int64_t(w)) >> sh;
        if (sh + uint64_t(bits) > 32) v |= uint64_t(word(qz, g * zw + int64_t(w) + 1)) << (32 - sh);
        Q.zero[size_t(n * Q.G + g)] = int32_t(v & uint64_t(L.qmax())) + (v2 ? 0 : 1);
      }
    }
    std::vector<float> wide;
    scales(sc, Q, true, wide);
    Q.L.asym = asym;
    emit(prefix + ".weight", Q, wide);
  }

  // ---- AWQ (GEMM) ----
  void awq(const std::string& prefix, int64_t group) {
    const StTensor* qw = get(prefix + ".qweight", true);
    if (qw->dtype != StDtype::kI32 || qw->shape.size() != 2 || qw->shape[0] <= 0 ||
        qw->shape[1] <= 0) {
      fail("qweight must be a 2-D int32 tensor", qw, qw->name, "I32 [in, out/8]",
           std::string(st_dtype_name(qw->dtype)) + " " + shape_str(qw->shape));
    }
    const int64_t K = qw->shape[0], N = qw->shape[1] * 8;
    // AWQ has no symmetric flag: zeros all at 8 read as symmetric (q4_0 where groups are 32).
    Layout L{4, false, group > 0 ? group : K, group <= 0};
    QuantMatrix Q;
    Q.resize(N, K, L);
    const StTensor* qz = get(prefix + ".qzeros", true);
    expect(qz, {StDtype::kI32}, {Q.G, N / 8}, "groups = ceil(in / group_size), out/8");
    const StTensor* sc = get(prefix + ".scales", true);
    expect(sc, {StDtype::kF16, StDtype::kBF16, StDtype::kF32}, {Q.G, N}, "groups, out");
    for (int64_t k = 0; k < K; ++k) {
      for (int64_t c = 0; c < N / 8; ++c) {
        const uint32_t v = word(qw, k * (N / 8) + c);
        for (int i = 0; i < 8; ++i)
          Q.q[size_t((8 * c + kAwqOrder[i]) * K + k)] = (v >> (4 * i)) & 15;
      }
    }
    for (int64_t g = 0; g < Q.G; ++g) {
      for (int64_t c = 0; c < N / 8; ++c) {
        const uint32_t v = word(qz, g * (N / 8) + c);
        for (int i = 0; i < 8; ++i)
          Q.zero[size_t((8 * c + kAwqOrder[i]) * Q.G + g)] = (v >> (4 * i)) & 15;
      }
    }
    std::vector<float> wide;
    scales(sc, Q, true, wide);
    emit(prefix + ".weight", Q, wide);
  }

  // ---- compressed-tensors ----
  struct CtArgs {
    int bits = 4;
    bool symmetric = true;
    std::string strategy = "group";
    int64_t group = 128;
  };

  void ct_packed(const std::string& prefix, const CtArgs& a) {
    const StTensor* pk = get(prefix + ".weight_packed", true);
    const StTensor* shp = get(prefix + ".weight_shape", true);
    if ((shp->dtype != StDtype::kI64 && shp->dtype != StDtype::kI32) ||
        shp->shape != std::vector<int64_t>{2}) {
      fail("weight_shape must hold two integers", shp, shp->name, "I64 or I32 [2]",
           std::string(st_dtype_name(shp->dtype)) + " " + shape_str(shp->shape));
    }
    int64_t dims[2];
    for (int i = 0; i < 2; ++i) {
      if (shp->dtype == StDtype::kI64) {
        std::memcpy(&dims[i], shp->data + 8 * i, 8);
      } else {
        int32_t v;
        std::memcpy(&v, shp->data + 4 * i, 4);
        dims[i] = v;
      }
    }
    const int64_t N = dims[0], K = dims[1];
    if (N <= 0 || K <= 0 || N > (int64_t(1) << 24) || K > (int64_t(1) << 24)) {
      fail("weight_shape is out of range", shp, shp->name, "1..2^24 each",
           std::to_string(N) + ", " + std::to_string(K));
    }
    const int pf = 32 / a.bits;
    const int64_t group = a.strategy == "group" ? a.group : K;
    Layout L{a.bits, !a.symmetric, group, a.strategy != "group"};
    // The packed tensor's shape first: it holds the codes, so it bounds N x K by the file's size
    // before anything is allocated for them.
    expect(pk, {StDtype::kI32}, {N, (K + pf - 1) / pf},
           "out, ceil(in / " + std::to_string(pf) + ")");
    QuantMatrix Q;
    Q.resize(N, K, L);
    const StTensor* sc = get(prefix + ".weight_scale", true);
    if (a.strategy == "tensor") {
      expect(sc, {StDtype::kF16, StDtype::kBF16, StDtype::kF32}, {1}, "one scale");
    } else {
      expect(sc, {StDtype::kF16, StDtype::kBF16, StDtype::kF32}, {N, Q.G}, "out, groups");
    }
    for (int64_t n = 0; n < N; ++n) {
      for (int64_t k = 0; k < K; ++k) {
        const uint32_t v = word(pk, n * ((K + pf - 1) / pf) + k / pf);
        Q.q[size_t(n * K + k)] = uint8_t((v >> (a.bits * (k % pf))) & uint32_t(L.qmax()));
      }
    }
    if (!a.symmetric) {
      const StTensor* zp = get(prefix + ".weight_zero_point", true);
      expect(zp, {StDtype::kI32}, {(N + pf - 1) / pf, Q.G},
             "ceil(out / " + std::to_string(pf) + "), groups");
      for (int64_t n = 0; n < N; ++n) {
        for (int64_t g = 0; g < Q.G; ++g) {
          const uint32_t v = word(zp, (n / pf) * Q.G + g);
          Q.zero[size_t(n * Q.G + g)] = int32_t((v >> (a.bits * (n % pf))) & uint32_t(L.qmax()));
        }
      }
    }
    g_idx(get(prefix + ".weight_g_idx", false), Q);
    std::vector<float> wide;
    ct_scales(sc, Q, a, wide);
    emit(prefix + ".weight", Q, wide);
  }

  void ct_scales(const StTensor* sc, QuantMatrix& Q, const CtArgs& a, std::vector<float>& wide) {
    scales(sc, Q, false, wide, a.strategy == "tensor");
  }

  void ct_int(const std::string& prefix, const StTensor* w, const CtArgs& a) {
    if (w->shape.size() != 2 || w->shape[0] <= 0 || w->shape[1] <= 0) {
      fail("an int-quantized weight must be 2-D", w, w->name, "I8 [out, in]", shape_str(w->shape));
    }
    out.consumed.insert(w->name);
    const int64_t N = w->shape[0], K = w->shape[1];
    const int64_t group = a.strategy == "group" ? a.group : K;
    Layout L{a.bits, !a.symmetric, group, a.strategy != "group"};
    QuantMatrix Q;
    Q.resize(N, K, L);
    const StTensor* sc = get(prefix + ".weight_scale", true);
    if (a.strategy == "tensor") {
      expect(sc, {StDtype::kF16, StDtype::kBF16, StDtype::kF32}, {1}, "one scale");
    } else {
      expect(sc, {StDtype::kF16, StDtype::kBF16, StDtype::kF32}, {N, Q.G}, "out, groups");
    }
    const int lo = -L.mid(), hi = L.mid() - 1;
    for (int64_t i = 0; i < N * K; ++i) {
      const int v = int8_t(w->data[i]);
      if (v < lo || v > hi) {
        fail("an int-quantized value lies outside num_bits", w,
             w->name + "[" + std::to_string(i / K) + ", " + std::to_string(i % K) + "]",
             std::to_string(lo) + ".." + std::to_string(hi), std::to_string(v));
      }
      Q.q[size_t(i)] = uint8_t(v + L.mid());
    }
    if (const StTensor* zp = get(prefix + ".weight_zero_point", false)) {
      if (zp->dtype == StDtype::kI8 && zp->shape == std::vector<int64_t>{N, Q.G}) {
        for (int64_t i = 0; i < N * Q.G; ++i) Q.zero[size_t(i)] = int8_t(zp->data[i]) + L.mid();
      } else if (a.symmetric && zp->shape.size() == 1 && zp->shape[0] == 1) {
        // a symmetric scheme's placeholder
      } else {
        expect(zp, {StDtype::kI8}, {N, Q.G}, "out, groups");
      }
    }
    g_idx(get(prefix + ".weight_g_idx", false), Q);
    std::vector<float> wide;
    ct_scales(sc, Q, a, wide);
    emit(prefix + ".weight", Q, wide);
  }
};

int64_t json_int(const json& j, const char* key, const std::string& file, int64_t fallback,
                 bool required = false) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) throw Error("quantization_config is missing a key", {.file = file, .field = key});
    return fallback;
  }
  if (!it->is_number_integer()) {
    std::string v = it->dump();
    if (v.size() > 40) v = v.substr(0, 40) + "...";
    throw Error("quantization_config value is not an integer",
                {.file = file, .field = key, .found = v});
  }
  return it->get<int64_t>();
}

bool json_bool(const json& j, const char* key, const std::string& file, bool fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) {
    throw Error("quantization_config value is not a boolean", {.file = file, .field = key});
  }
  return it->get<bool>();
}

std::string json_str(const json& j, const char* key, const std::string& file,
                     const std::string& fallback) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_string()) {
    throw Error("quantization_config value is not a string", {.file = file, .field = key});
  }
  return it->get<std::string>();
}

std::string fmt_shard_name(size_t i, size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i, n);
  return buf;
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Module prefixes of every tensor whose name ends in `suffix`, in the checkpoint's order.
std::vector<std::string> modules_with(const SafetensorsModel& st, std::string_view suffix) {
  std::vector<std::string> out;
  for (const auto& t : st.tensors()) {
    if (t.name.size() > suffix.size() &&
        t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(t.name.substr(0, t.name.size() - suffix.size()));
    }
  }
  return out;
}

// A compressed-tensors target: "Linear" (every linear layer), a module name, or "re:" + a regex
// matched from the start of the module name (Python's re.match, as compressed-tensors does), by
// PCRE2 with a match limit, so a hostile pattern costs bounded time.
bool target_matches(const std::string& target, const std::string& module, const std::string& file) {
  if (target == "Linear") return true;
  if (target.rfind("re:", 0) != 0) return target == module;
  const std::string pattern = target.substr(3);
  const ErrorContext where{.file = file,
                           .field = "quantization_config.config_groups.targets",
                           .found = pattern.substr(0, 60)};
  if (pattern.size() > 256) throw Error("target pattern over 256 characters", where);
  int err = 0;
  PCRE2_SIZE at = 0;
  const std::unique_ptr<pcre2_code, void (*)(pcre2_code*)> code(
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF, &err,
                    &at, nullptr),
      pcre2_code_free);
  if (!code) throw Error("invalid target pattern", where);
  const std::unique_ptr<pcre2_match_context, void (*)(pcre2_match_context*)> ctx(
      pcre2_match_context_create(nullptr), pcre2_match_context_free);
  pcre2_set_match_limit(ctx.get(), 100000);
  pcre2_set_depth_limit(ctx.get(), 1000);
  const std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> md(
      pcre2_match_data_create_from_pattern(code.get(), nullptr), pcre2_match_data_free);
  const int rc = pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(module.data()), module.size(),
                             0, PCRE2_ANCHORED, md.get(), ctx.get());
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  throw Error("target pattern could not be matched (too costly or invalid)", where);
}

}  // namespace

HfQuantized read_hf_quantized(const json& qc, const SafetensorsModel& st,
                              const std::string& cfg_path,
                              std::vector<std::shared_ptr<const void>>& owners) {
  HfQuantized out;
  if (!qc.is_object()) {
    throw Error("quantization_config is not an object",
                {.file = cfg_path, .field = "quantization_config"});
  }
  Reader r{st, cfg_path, out, owners};
  const std::string method = lower(json_str(qc, "quant_method", cfg_path, ""));
  auto check_group = [&](int64_t g, const char* key) {
    if (g != -1 && g != 0 && (g < 1 || g > (int64_t(1) << 24))) {
      throw Error("group size out of range", {.file = cfg_path,
                                              .field = std::string("quantization_config.") + key,
                                              .expected = "-1 (one group per row) or 1..2^24",
                                              .found = std::to_string(g)});
    }
  };
  if (method == "gptq") {
    const int64_t bits = json_int(qc, "bits", cfg_path, 0, true);
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8) {
      throw Error("unsupported GPTQ bits", {.file = cfg_path,
                                            .field = "quantization_config.bits",
                                            .expected = "2, 3, 4 or 8",
                                            .found = std::to_string(bits)});
    }
    const int64_t group = json_int(qc, "group_size", cfg_path, -1);
    check_group(group, "group_size");
    const std::string fmt = json_str(qc, "checkpoint_format", cfg_path, "gptq");
    if (fmt != "gptq" && fmt != "gptq_v2") {
      throw Error("unsupported GPTQ checkpoint_format",
                  {.file = cfg_path,
                   .field = "quantization_config.checkpoint_format",
                   .expected = "gptq or gptq_v2",
                   .found = fmt});
    }
    const bool sym = json_bool(qc, "sym", cfg_path, true);
    for (const auto& p : modules_with(st, ".qweight")) {
      r.gptq(p, int(bits), group, !sym, fmt == "gptq_v2");
    }
  } else if (method == "awq") {
    const int64_t bits = json_int(qc, "bits", cfg_path, json_int(qc, "w_bit", cfg_path, 4));
    if (bits != 4) {
      throw Error("unsupported AWQ bits", {.file = cfg_path,
                                           .field = "quantization_config.bits",
                                           .expected = "4",
                                           .found = std::to_string(bits)});
    }
    const std::string version = lower(json_str(qc, "version", cfg_path, "gemm"));
    if (version != "gemm") {
      throw Error("unsupported AWQ version (only GEMM's packing is read)",
                  {.file = cfg_path,
                   .field = "quantization_config.version",
                   .expected = "gemm",
                   .found = version});
    }
    const int64_t group =
        json_int(qc, "group_size", cfg_path, json_int(qc, "q_group_size", cfg_path, 128));
    check_group(group, "group_size");
    for (const auto& p : modules_with(st, ".qweight")) r.awq(p, group);
  } else if (method == "compressed-tensors") {
    const std::string format = json_str(qc, "format", cfg_path, "");
    const auto groups = qc.find("config_groups");
    if (groups == qc.end() || !groups->is_object() || groups->empty()) {
      throw Error("compressed-tensors config has no config_groups",
                  {.file = cfg_path, .field = "quantization_config.config_groups"});
    }
    struct Group {
      std::string name, format;
      std::vector<std::string> targets;
      Reader::CtArgs args;
    };
    std::vector<Group> gs;
    for (const auto& [gname, g] : groups->items()) {
      const std::string field = "quantization_config.config_groups." + gname;
      if (!g.is_object())
        throw Error("config group is not an object", {.file = cfg_path, .field = field});
      Group G{gname, json_str(g, "format", cfg_path, format), {}, {}};
      if (const auto t = g.find("targets"); t != g.end() && t->is_array()) {
        for (const auto& v : *t) {
          if (!v.is_string())
            throw Error("a target is not a string",
                        {.file = cfg_path, .field = field + ".targets"});
          G.targets.push_back(v.get<std::string>());
        }
      }
      const auto w = g.find("weights");
      if (w == g.end() || !w->is_object()) {
        throw Error("config group quantizes no weights (activation-only schemes are not read)",
                    {.file = cfg_path, .field = field + ".weights"});
      }
      const std::string type = json_str(*w, "type", cfg_path, "int");
      if (type != "int") {
        throw Error(
            "unsupported weight type",
            {.file = cfg_path, .field = field + ".weights.type", .expected = "int", .found = type});
      }
      G.args.bits = int(std::clamp<int64_t>(json_int(*w, "num_bits", cfg_path, 0, true), -1, 64));
      if (G.args.bits < 1 || G.args.bits > 8) {
        throw Error("unsupported num_bits", {.file = cfg_path,
                                             .field = field + ".weights.num_bits",
                                             .expected = "1..8",
                                             .found = std::to_string(G.args.bits)});
      }
      G.args.symmetric = json_bool(*w, "symmetric", cfg_path, true);
      G.args.strategy = json_str(*w, "strategy", cfg_path, "tensor");
      if (G.args.strategy != "group" && G.args.strategy != "channel" &&
          G.args.strategy != "tensor") {
        throw Error("unsupported strategy", {.file = cfg_path,
                                             .field = field + ".weights.strategy",
                                             .expected = "group, channel or tensor",
                                             .found = G.args.strategy});
      }
      if (G.args.strategy == "group") {
        G.args.group = json_int(*w, "group_size", cfg_path, 0, true);
        if (G.args.group < 1 || G.args.group > (int64_t(1) << 24)) {
          throw Error("group size out of range", {.file = cfg_path,
                                                  .field = field + ".weights.group_size",
                                                  .expected = "1..2^24",
                                                  .found = std::to_string(G.args.group)});
        }
      }
      if (G.format != "pack-quantized" && G.format != "int-quantized" &&
          G.format != "naive-quantized") {
        throw Error("unsupported compressed-tensors format",
                    {.file = cfg_path,
                     .field = field + ".format",
                     .expected = "pack-quantized or int-quantized",
                     .found = G.format});
      }
      gs.push_back(std::move(G));
    }
    auto group_of = [&](const std::string& module, const StTensor* t) -> const Group& {
      if (gs.size() == 1) return gs[0];
      for (const auto& g : gs) {
        for (const auto& target : g.targets) {
          if (target_matches(target, module, cfg_path)) return g;
        }
      }
      throw Error("quantized layer matches no config group", {.file = t->file, .field = t->name});
    };
    for (const auto& p : modules_with(st, ".weight_packed")) {
      const Group& g = group_of(p, st.find(p + ".weight_packed"));
      r.ct_packed(p, g.args);
    }
    for (const auto& t : st.tensors()) {  // int-quantized: an int8 .weight
      if (t.dtype != StDtype::kI8 || t.name.size() < 8 ||
          t.name.compare(t.name.size() - 7, 7, ".weight") != 0) {
        continue;
      }
      const std::string p = t.name.substr(0, t.name.size() - 7);
      r.ct_int(p, &t, group_of(p, &t).args);
    }
  } else {
    throw Error("unsupported quantization method", {.file = cfg_path,
                                                    .field = "quantization_config.quant_method",
                                                    .expected = "gptq, awq or compressed-tensors",
                                                    .found = method.substr(0, 60)});
  }
  if (out.tensors.empty()) {
    throw Error("quantization_config names a method, but no tensor is in its layout",
                {.file = cfg_path, .field = "quantization_config.quant_method", .found = method});
  }
  return out;
}

// ---- Writing ---------------------------------------------------------------------------------

namespace {

constexpr std::string_view kLinear[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                        "ffn_gate", "ffn_up", "ffn_down"};

bool is_linear(const ModelTensor& t) {
  if (t.shape.size() != 2 || t.name.rfind("blk.", 0) != 0) return false;
  const size_t dot = t.name.find('.', 4);  // "blk.N.<kind>.weight"
  if (dot == std::string::npos) return false;
  const std::string_view rest = std::string_view(t.name).substr(dot + 1);
  for (auto l : kLinear) {
    if (rest.size() == l.size() + 7 && rest.substr(0, l.size()) == l &&
        rest.substr(l.size()) == ".weight") {
      return true;
    }
  }
  return false;
}

bool is_float(const Format& f) {
  const auto n = f.info().name;
  return n == "f32" || n == "f16" || n == "bf16";
}

// Heads whose rows go back to Hugging Face's rotate-half order (0: none).
int64_t qk_heads(const ModelTensor& t, const ModelConfig& c) {
  if (c.rope_neox) return 0;
  if (t.name.find(".attn_q.") != std::string::npos) return c.n_head;
  if (t.name.find(".attn_k.") != std::string::npos) return c.n_head_kv;
  return 0;
}

// GGUF row of Hugging Face row r (heads of hd rows; 0 heads: the same row).
int64_t gguf_row(int64_t r, int64_t rows, int64_t heads) {
  if (heads <= 0) return r;
  const int64_t hd = rows / heads, half = hd / 2, h = r / hd, j = (r % hd) / half, i = r % half;
  return h * hd + 2 * i + j;
}

// The codes of a quantized linear layer in Hugging Face row order.
QuantMatrix codes_of(const ModelTensor& t, const Layout& L, int64_t heads, bool& exact) {
  QuantMatrix Q;
  const int64_t N = t.rows(), K = t.row_length();
  Q.resize(N, K, L);
  const uint64_t rb = t.format.row_bytes(K);
  exact = true;
  for (int64_t n = 0; n < N; ++n) {
    exact &= take_row(t.format, t.data + uint64_t(gguf_row(n, N, heads)) * rb, Q, n);
  }
  return Q;
}

// GPTQ v1 stores zero - 1, so a zero of 0 cannot be written. Where no code of that group is the
// largest, codes and zero move up by one (the same values); false where one is.
bool lift_zero_zeros(QuantMatrix& Q) {
  bool ok = true;
  for (int64_t n = 0; n < Q.N; ++n) {
    for (int64_t g = 0; g < Q.G; ++g) {
      int32_t& z = Q.zero[size_t(n * Q.G + g)];
      if (z != 0) continue;
      uint8_t* q = &Q.q[size_t(n * Q.K + g * Q.L.group)];
      const int64_t len = std::min(Q.L.group, Q.K - g * Q.L.group);
      if (std::any_of(q, q + len, [&](uint8_t v) { return v == Q.L.qmax(); })) {
        ok = false;
        continue;
      }
      for (int64_t i = 0; i < len; ++i) ++q[i];
      z = 1;
    }
  }
  return ok;
}

// Codes `vals(i)` for i < count as an LSB-first bit stream of `bits`-bit values in 32-bit words.
template <typename F>
void or_stream(std::vector<uint32_t>& words, int64_t count, int bits, F vals) {
  for (int64_t i = 0; i < count; ++i) {
    const uint64_t bit = uint64_t(i) * uint64_t(bits), v = vals(i);
    words[bit / 32] |= uint32_t(v << (bit % 32));
    if (bit % 32 + uint64_t(bits) > 32) words[bit / 32 + 1] |= uint32_t(v >> (32 - bit % 32));
  }
}

struct Planned {
  const ModelTensor* t;
  std::string hf;                // Hugging Face weight name
  std::optional<Layout> layout;  // quantized linear layer
};

}  // namespace

std::optional<HfScheme> parse_hf_scheme(std::string_view name) {
  if (name == "gptq") return HfScheme::kGptq;
  if (name == "awq") return HfScheme::kAwq;
  if (name == "compressed-tensors") return HfScheme::kCompressedTensors;
  return std::nullopt;
}

std::string_view hf_scheme_name(HfScheme s) {
  switch (s) {
    case HfScheme::kGptq:
      return "gptq";
    case HfScheme::kAwq:
      return "awq";
    case HfScheme::kCompressedTensors:
      return "compressed-tensors";
  }
  return "";
}

HfExportResult write_hf_quantized(const Model& m, const std::string& dir,
                                  const HfExportOptions& o) {
  const ModelConfig& c = m.config;
  const std::string scheme(hf_scheme_name(o.scheme));
  LOWBIT_CHECK(is_float(o.float_type), "write_hf_quantized: float_type must be f32, f16 or bf16");
  HfExportResult res;

  // 1. Plan every tensor and collect every reason the model does not map, before writing.
  std::vector<Planned> plan;
  std::vector<std::string> problems;
  std::optional<Layout> uniform;
  bool mixed = false, all_int8_rows = true, any_quantized = false, float_linear = false;
  for (const auto& t : m.tensors) {
    if (t.name == "rope_freqs.weight" && c.rope_factor > 0) continue;  // config.json carries it
    const std::string hf = hf_name_of(t.name);
    if (hf.empty()) throw Error("tensor with no Hugging Face name", {.file = dir, .field = t.name});
    Planned p{&t, hf, std::nullopt};
    if (is_linear(t) && !is_float(t.format)) {
      const int64_t K = t.row_length(), N = t.rows();
      const auto L = layout_of(t.format, K);
      std::string why;
      if (!L) {
        why = "has no integer zero-point layout";
      } else if (o.scheme == HfScheme::kGptq && L->bits != 2 && L->bits != 3 && L->bits != 4 &&
                 L->bits != 8) {
        why = "GPTQ holds 2, 3, 4 or 8 bits";
      } else if (o.scheme == HfScheme::kAwq && L->bits != 4) {
        why = "AWQ holds 4 bits only";
      } else if (o.scheme == HfScheme::kAwq && L->per_row) {
        why = "AWQ needs a group size (this format has one scale per row)";
      } else if (L->group < K && K % L->group != 0) {
        why = "its last group is ragged (" + std::to_string(K) + " columns in groups of " +
              std::to_string(L->group) + ")";
      } else if (o.scheme == HfScheme::kGptq && ((K * L->bits) % 32 || (N * L->bits) % 32)) {
        why = "GPTQ packs rows and columns into 32-bit words: " + std::to_string(N) + " x " +
              std::to_string(K) + " at " + std::to_string(L->bits) + " bits does not fill them";
      } else if (o.scheme == HfScheme::kAwq && N % 8) {
        why = "AWQ packs 8 output rows per word: " + std::to_string(N) + " rows";
      } else {
        bool exact;
        QuantMatrix Q = codes_of(t, *L, qk_heads(t, c), exact);
        if (!exact) {
          why = "a q4_1 block's minimum is not -scale * an integer zero point";
        } else if (o.scheme == HfScheme::kGptq && L->asym && !lift_zero_zeros(Q)) {
          why = "a group has zero point 0 and uses the largest code (GPTQ v1 stores zero - 1)";
        }
      }
      if (!why.empty()) {
        problems.push_back(t.name + " (" + t.format.name() + "): " + why);
      } else {
        p.layout = L;
        any_quantized = true;
        all_int8_rows &= L->bits == 8 && !L->asym && L->per_row;
        if (uniform &&
            (uniform->bits != L->bits || uniform->asym != L->asym ||
             uniform->per_row != L->per_row || (!L->per_row && uniform->group != L->group))) {
          mixed = true;
        }
        if (!uniform) uniform = L;
      }
    } else if (is_linear(t)) {
      float_linear = true;
      if (o.scheme != HfScheme::kCompressedTensors) {
        problems.push_back(t.name + " (" + t.format.name() + "): not quantized; " + scheme +
                           " readers expect every linear layer quantized");
      }
    }
    plan.push_back(std::move(p));
  }
  if (!any_quantized && problems.empty()) {
    problems.push_back("no linear layer is quantized");
  }
  if (mixed && o.scheme != HfScheme::kCompressedTensors) {
    problems.push_back("the linear layers use different bits, groups or symmetry; " + scheme +
                       " holds one layout per model (compressed-tensors holds mixes)");
  }
  if (!problems.empty()) {
    std::string list;
    for (size_t i = 0; i < problems.size() && i < 12; ++i) list += "\n  " + problems[i];
    if (problems.size() > 12)
      list += "\n  ... and " + std::to_string(problems.size() - 12) + " more";
    const std::string maps =
        o.scheme == HfScheme::kGptq  ? "int2/int3/int4/int8 (_gN, _asym), q4_0, q8_0, q4_1"
        : o.scheme == HfScheme::kAwq ? "int4_gN, int4_gN_asym, q4_0, q4_1"
                                     : "int2..int8 (_gN, _asym), q4_0, q8_0, q4_1";
    throw Error("the model has no " + scheme + " layout:" + list + "\nformats that map: " + maps +
                    " with whole groups; quantize with one of them (lowbit quantize --type ...)",
                {.file = m.sources.empty() ? dir : m.sources.front()});
  }
  const bool w8a8 = o.int8_activations.value_or(o.scheme == HfScheme::kCompressedTensors &&
                                                all_int8_rows && !float_linear && !mixed);
  if (w8a8 && (!all_int8_rows || o.scheme != HfScheme::kCompressedTensors)) {
    throw Error(
        "int8 activations (W8A8) need compressed-tensors and int8 weights with one scale "
        "per row (lowbit quantize --type int8)",
        {.file = dir});
  }

  // 2. The tensors, in the model's order.
  std::vector<StWriteTensor> tensors;
  const std::string torch_dtype = o.float_type.info().name == "f32"   ? "float32"
                                  : o.float_type.info().name == "f16" ? "float16"
                                                                      : "bfloat16";
  auto dtype_of = [](const Format& f) {
    return f.info().name == "f32"   ? StDtype::kF32
           : f.info().name == "f16" ? StDtype::kF16
                                    : StDtype::kBF16;
  };
  auto bytes_of = [](const std::vector<uint32_t>& w) {
    return std::vector<uint8_t>(reinterpret_cast<const uint8_t*>(w.data()),
                                reinterpret_cast<const uint8_t*>(w.data() + w.size()));
  };
  // Each writer callback decodes its layer again: cheap next to the I/O, and nothing is held.
  auto codes = [&c](const Planned& p) {
    bool exact;
    QuantMatrix Q = codes_of(*p.t, *p.layout, qk_heads(*p.t, c), exact);
    return Q;
  };
  struct CtGroup {
    Layout L;
    bool channel;
    std::vector<std::string> modules;
  };
  std::vector<CtGroup> ct_groups;
  std::vector<std::string> ignore;
  for (const auto& p : plan) {
    const ModelTensor& t = *p.t;
    const int64_t N = t.rows(), K = t.row_length();
    const std::string module = p.hf.substr(0, p.hf.size() - 7);  // without ".weight"
    if (!p.layout) {  // float: kept as stored when it is float, else decoded into float_type
      const Format to = is_float(t.format) ? t.format : o.float_type;
      if (!is_float(t.format)) {
        res.notes.push_back(p.hf + ": " + t.format.name() + " decoded into " + to.name());
      }
      if (is_linear(t)) ignore.push_back(module);
      const int64_t heads = qk_heads(t, c);
      tensors.push_back(
          {p.hf, dtype_of(to), t.shape, [&t, to, heads](OutputFile& f) {
             const bool vec = t.shape.size() == 1;
             const int64_t rows = vec ? t.shape[0] : t.rows(), K = vec ? 1 : t.row_length();
             std::vector<float> x(size_t(rows * K)), y;
             t.format.dequantize(t.data, t.rows(), t.row_length(), x.data());
             if (heads > 0) {
               y.resize(x.size());
               permute_qk_rows(x.data(), y.data(), rows, K, heads, false);
               x.swap(y);
             }
             std::vector<uint8_t> b(to.row_bytes(t.row_length()) * uint64_t(t.rows()));
             to.quantize(x.data(), t.rows(), t.row_length(), nullptr, b.data());
             f.write(b.data(), b.size());
           }});
      continue;
    }
    const Layout L = *p.layout;
    const int64_t G = L.groups(K), b = L.bits;
    if (o.scheme == HfScheme::kGptq || o.scheme == HfScheme::kAwq) {
      const bool gptq = o.scheme == HfScheme::kGptq;
      const std::vector<int64_t> qshape =
          gptq ? std::vector<int64_t>{K * b / 32, N} : std::vector<int64_t>{K, N / 8};
      const std::vector<int64_t> zshape =
          gptq ? std::vector<int64_t>{G, N * b / 32} : std::vector<int64_t>{G, N / 8};
      tensors.push_back(
          {module + ".qweight", StDtype::kI32, qshape, [=, &p](OutputFile& f) {
             QuantMatrix Q = codes(p);
             if (gptq && L.asym) lift_zero_zeros(Q);
             std::vector<uint32_t> w(size_t(qshape[0] * qshape[1]), 0);
             if (gptq) {  // column n: the bit stream of q[n][0..K) down the words of that column
               std::vector<uint32_t> col(static_cast<size_t>(qshape[0]));
               for (int64_t n = 0; n < N; ++n) {
                 std::fill(col.begin(), col.end(), 0);
                 or_stream(col, K, int(b), [&](int64_t k) { return Q.q[size_t(n * K + k)]; });
                 for (int64_t r = 0; r < qshape[0]; ++r) w[size_t(r * N + n)] = col[size_t(r)];
               }
             } else {
               for (int64_t k = 0; k < K; ++k) {
                 for (int64_t cw = 0; cw < N / 8; ++cw) {
                   w[size_t(k * (N / 8) + cw)] =
                       awq_word(cw, [&](int64_t n) { return Q.q[size_t(n * K + k)]; });
                 }
               }
             }
             const auto bytes = bytes_of(w);
             f.write(bytes.data(), bytes.size());
           }});
      tensors.push_back({module + ".qzeros", StDtype::kI32, zshape, [=, &p](OutputFile& f) {
                           QuantMatrix Q = codes(p);
                           if (gptq && L.asym) lift_zero_zeros(Q);
                           std::vector<uint32_t> w(size_t(zshape[0] * zshape[1]), 0);
                           for (int64_t g = 0; g < G; ++g) {
                             if (gptq) {
                               std::vector<uint32_t> rowz(size_t(zshape[1]), 0);
                               or_stream(rowz, N, int(b), [&](int64_t n) {
                                 return uint32_t(Q.zero[size_t(n * G + g)] - 1) &
                                        uint32_t(L.qmax());
                               });
                               std::copy(rowz.begin(), rowz.end(), w.begin() + g * zshape[1]);
                             } else {
                               for (int64_t cw = 0; cw < N / 8; ++cw) {
                                 w[size_t(g * (N / 8) + cw)] = awq_word(
                                     cw, [&](int64_t n) { return Q.zero[size_t(n * G + g)]; });
                               }
                             }
                           }
                           const auto bytes = bytes_of(w);
                           f.write(bytes.data(), bytes.size());
                         }});
      tensors.push_back({module + ".scales", StDtype::kF16, {G, N}, [=, &p](OutputFile& f) {
                           const QuantMatrix Q = codes(p);
                           std::vector<uint16_t> s(size_t(G * N));
                           for (int64_t n = 0; n < N; ++n) {
                             for (int64_t g = 0; g < G; ++g)
                               s[size_t(g * N + n)] = Q.scale[size_t(n * G + g)];
                           }
                           f.write(s.data(), s.size() * 2);
                         }});
      if (gptq) {
        tensors.push_back({module + ".g_idx", StDtype::kI32, {K}, [=](OutputFile& f) {
                             std::vector<int32_t> gi(static_cast<size_t>(K));
                             for (int64_t k = 0; k < K; ++k) gi[size_t(k)] = int32_t(k / L.group);
                             f.write(gi.data(), gi.size() * 4);
                           }});
      }
    } else {  // compressed-tensors
      const bool channel = L.per_row;
      auto it = std::find_if(ct_groups.begin(), ct_groups.end(), [&](const CtGroup& g) {
        return g.L.bits == L.bits && g.L.asym == L.asym && g.channel == channel &&
               (channel || g.L.group == L.group);
      });
      if (it == ct_groups.end()) it = ct_groups.insert(ct_groups.end(), {L, channel, {}});
      it->modules.push_back(module);
      if (w8a8) {
        tensors.push_back({module + ".weight", StDtype::kI8, {N, K}, [=, &p](OutputFile& f) {
                             const QuantMatrix Q = codes(p);
                             std::vector<int8_t> w(size_t(N * K));
                             for (size_t i = 0; i < w.size(); ++i) w[i] = int8_t(int(Q.q[i]) - 128);
                             f.write(w.data(), w.size());
                           }});
      } else {
        const int pf = 32 / int(b);
        const int64_t cols = (K + pf - 1) / pf;
        tensors.push_back(
            {module + ".weight_packed", StDtype::kI32, {N, cols}, [=, &p](OutputFile& f) {
               const QuantMatrix Q = codes(p);
               std::vector<uint32_t> w(size_t(N * cols), 0);
               for (int64_t n = 0; n < N; ++n) {
                 for (int64_t k = 0; k < K; ++k) {
                   w[size_t(n * cols + k / pf)] |= uint32_t(Q.q[size_t(n * K + k)])
                                                   << (b * (k % pf));
                 }
               }
               const auto bytes = bytes_of(w);
               f.write(bytes.data(), bytes.size());
             }});
        tensors.push_back({module + ".weight_shape", StDtype::kI64, {2}, [=](OutputFile& f) {
                             const int64_t s[2] = {N, K};
                             f.write(s, sizeof s);
                           }});
        if (L.asym) {
          const int64_t zrows = (N + pf - 1) / pf;
          tensors.push_back(
              {module + ".weight_zero_point", StDtype::kI32, {zrows, G}, [=, &p](OutputFile& f) {
                 const QuantMatrix Q = codes(p);
                 std::vector<uint32_t> w(size_t(zrows * G), 0);
                 for (int64_t n = 0; n < N; ++n) {
                   for (int64_t g = 0; g < G; ++g) {
                     w[size_t((n / pf) * G + g)] |= uint32_t(Q.zero[size_t(n * G + g)])
                                                    << (b * (n % pf));
                   }
                 }
                 const auto bytes = bytes_of(w);
                 f.write(bytes.data(), bytes.size());
               }});
        }
      }
      tensors.push_back({module + ".weight_scale", StDtype::kF16, {N, G}, [=, &p](OutputFile& f) {
                           const QuantMatrix Q = codes(p);
                           f.write(Q.scale.data(), Q.scale.size() * 2);
                         }});
    }
  }

  // 3. The configuration.
  json cfg = hf_config_json(m, torch_dtype);
  json qc;
  const Layout U = uniform.value_or(Layout{});
  if (o.scheme == HfScheme::kGptq) {
    qc = {{"quant_method", "gptq"},
          {"bits", U.bits},
          {"group_size", U.per_row ? -1 : U.group},
          {"desc_act", false},
          {"sym", !U.asym},
          {"checkpoint_format", "gptq"},
          {"static_groups", false},
          {"true_sequential", true}};
  } else if (o.scheme == HfScheme::kAwq) {
    qc = {{"quant_method", "awq"}, {"bits", 4},         {"group_size", U.group},
          {"zero_point", true},    {"version", "gemm"}, {"modules_to_not_convert", nullptr}};
  } else {
    json groups = json::object();
    for (size_t i = 0; i < ct_groups.size(); ++i) {
      const CtGroup& g = ct_groups[i];
      json w = {{"num_bits", g.L.bits},
                {"type", "int"},
                {"symmetric", !g.L.asym},
                {"strategy", g.channel ? "channel" : "group"},
                {"group_size", g.channel ? json(nullptr) : json(g.L.group)},
                {"dynamic", false},
                {"actorder", nullptr},
                {"observer", "minmax"},
                {"observer_kwargs", json::object()},
                {"block_structure", nullptr}};
      json acts = nullptr;
      if (w8a8) {
        acts = {{"num_bits", 8},       {"type", "int"},
                {"symmetric", true},   {"strategy", "token"},
                {"dynamic", true},     {"group_size", nullptr},
                {"observer", nullptr}, {"observer_kwargs", json::object()},
                {"actorder", nullptr}, {"block_structure", nullptr}};
      }
      const bool all = ct_groups.size() == 1 && ignore.empty();
      groups["group_" + std::to_string(i)] = {
          {"targets", all ? json::array({"Linear"}) : json(g.modules)},
          {"weights", w},
          {"input_activations", acts},
          {"output_activations", nullptr}};
    }
    if (!c.tied_output) ignore.push_back("lm_head");
    qc = {{"quant_method", "compressed-tensors"},
          {"format", w8a8 ? "int-quantized" : "pack-quantized"},
          {"config_groups", groups},
          {"ignore", ignore},
          {"kv_cache_scheme", nullptr},
          {"quantization_status", "compressed"},
          {"global_compression_ratio", nullptr}};
    if (w8a8) res.notes.push_back("declared dynamic per-token int8 activations (W8A8)");
  }
  cfg["quantization_config"] = qc;

  // 4. The files: shards, index, quantize_config.json (AutoGPTQ), tokenizer files, config.json
  // last (a folder without it is not a checkpoint).
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("cannot create the output folder: " + ec.message(), {.file = dir});
  const fs::path out_dir(dir);
  const std::string cfg_path = (out_dir / "config.json").string();
  for (const auto& s : m.sources) {
    if (same_file(s, cfg_path)) {
      throw Error("the output would overwrite an input", {.file = cfg_path});
    }
  }
  std::vector<std::vector<StWriteTensor>> shards(1);
  uint64_t shard_bytes = 0;
  for (auto& t : tensors) {
    uint64_t n = st_dtype_bytes(t.dtype);
    for (int64_t d : t.shape) n *= uint64_t(d);
    res.tensor_bytes += n;
    if (!shards.back().empty() && shard_bytes + n > o.max_shard_bytes) {
      shards.emplace_back(), shard_bytes = 0;
    }
    shards.back().push_back(std::move(t)), shard_bytes += n;
  }
  std::map<std::string, std::string> meta = {{"format", "pt"}};
  json weight_map = json::object();
  std::vector<std::string> written;
  try {
    for (size_t i = 0; i < shards.size(); ++i) {
      const std::string name =
          shards.size() == 1 ? "model.safetensors" : fmt_shard_name(i + 1, shards.size());
      const std::string path = (out_dir / name).string();
      std::map<std::string, std::string> md = meta;
      if (i == 0 && !m.tokenizer.tokens.empty())
        md["lowbit.tokenizer"] = tokenizer_metadata(m.tokenizer);
      write_safetensors(path, md, shards[i], m.sources);
      written.push_back(path);
      for (const auto& t : shards[i]) weight_map[t.name] = name;
    }
    auto write_text = [&](const std::string& name, const std::string& text) {
      const std::string path = (out_dir / name).string();
      OutputFile f(path, m.sources);
      f.write(text.data(), text.size());
      f.commit();
      written.push_back(path);
    };
    if (shards.size() > 1) {
      write_text(
          "model.safetensors.index.json",
          json{{"metadata", {{"total_size", res.tensor_bytes}}}, {"weight_map", weight_map}}.dump(
              2) +
              "\n");
    }
    if (o.scheme == HfScheme::kGptq) write_text("quantize_config.json", qc.dump(2) + "\n");
    // Tokenizer files beside the sources, as Hugging Face tooling reads them.
    static constexpr const char* kTokFiles[] = {"tokenizer.json",        "tokenizer.model",
                                                "tokenizer_config.json", "special_tokens_map.json",
                                                "added_tokens.json",     "generation_config.json"};
    std::set<std::string> copied;
    for (const auto& s : m.sources) {
      const fs::path sp(s);
      const fs::path sdir = fs::is_directory(sp) ? sp : sp.parent_path();
      for (const char* name : kTokFiles) {
        const fs::path from = sdir / name;
        if (copied.count(name) || !fs::is_regular_file(from)) continue;
        std::ifstream in(from, std::ios::binary);
        const std::string text((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
        if (!in.good() && !in.eof()) throw Error("cannot read", {.file = from.string()});
        write_text(name, text);
        copied.insert(name);
      }
    }
    if (copied.count("tokenizer.json") == 0 && copied.count("tokenizer.model") == 0) {
      res.notes.push_back(
          "no tokenizer file beside the input: the tokenizer travels in the safetensors "
          "__metadata__ (lowbit reads it; Hugging Face tooling needs tokenizer.json or "
          "tokenizer.model copied in)");
    }
    write_text("config.json", cfg.dump(2) + "\n");
  } catch (...) {
    for (const auto& p : written) fs::remove(p, ec);
    throw;
  }
  res.files = written;
  return res;
}

std::optional<std::vector<uint8_t>> transcode_exact(const ModelTensor& t, const Format& to) {
  if (t.shape.empty()) return std::nullopt;
  const int64_t K = t.row_length();
  if (!to.can_tile(K)) return std::nullopt;
  const auto from_l = layout_of(t.format, K), to_l = layout_of(to, K);
  if (!from_l || !to_l || from_l->bits != to_l->bits ||
      std::min(from_l->group, K) != std::min(to_l->group, K)) {  // the same groups on this row
    return std::nullopt;
  }
  bool exact;
  QuantMatrix Q = codes_of(t, *from_l, 0, exact);
  if (!exact) return std::nullopt;
  for (size_t i = 0; i < Q.zero.size(); ++i) {
    if (!to_l->asym && Q.zero[i] != to_l->mid()) return std::nullopt;
    if (to.info().name == "q4_1") {
      const float m = -(fp16_to_f32(Q.scale[i]) * float(Q.zero[i]));
      if (round_fp16(m) != m) return std::nullopt;
    }
  }
  Q.L = *to_l;
  const uint64_t rb = to.row_bytes(K);
  std::vector<uint8_t> out(size_t(rb * uint64_t(Q.N)));
  for (int64_t n = 0; n < Q.N; ++n) put_row(to, Q, n, out.data() + uint64_t(n) * rb);
  return out;
}

}  // namespace lowbit
