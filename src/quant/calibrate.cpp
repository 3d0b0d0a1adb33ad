// Calibration statistics and llama.cpp-compatible importance-matrix files.
#include "quant/calibrate.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>

#include "io/gguf.h"
#include "lowbit/error.h"
#include "lowbit/mapped_file.h"

namespace lowbit {

void InputStats::add(const float* x, int64_t n, int64_t k, bool hessian) {
  if (K == 0) {
    K = k;
    sum_sq.assign(size_t(K), 0.0), sum_abs.assign(size_t(K), 0.0), max_abs.assign(size_t(K), 0.0f);
  }
  LOWBIT_CHECK(k == K, "InputStats: the input width changed");
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < K; ++i) {
      const double v = x[t * K + i];
      sum_sq[size_t(i)] += v * v, sum_abs[size_t(i)] += std::fabs(v);
      max_abs[size_t(i)] = std::max(max_abs[size_t(i)], float(std::fabs(v)));
    }
  }
  if (hessian) {
    if (xtx.empty()) xtx.assign(size_t(K * K), 0.0);
    // xtx (upper) += Xᵀ X, mirrored when read. One chunk's products are summed in float (single
    // precision GEMM, twice double's rate: n terms per entry, relative error ~1e-6) and the
    // chunks in double. By panels of kPanel rows, so the float scratch stays small: panel
    // [j0, j1) times the columns j0.. (the upper part, plus the panel's own lower corner).
    constexpr int64_t kPanel = 256;
    std::vector<float> part(size_t(std::min(kPanel, K) * K));
    for (int64_t j0 = 0; j0 < K; j0 += kPanel) {
      const int64_t P = std::min(kPanel, K - j0), N = K - j0;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(P), int(N), int(n), 1.0f, x + j0,
                  int(K), x + j0, int(K), 0.0f, part.data(), int(N));
      for (int64_t i = 0; i < P; ++i) {
        double* row = &xtx[size_t((j0 + i) * K + j0)];
        const float* src = &part[size_t(i * N)];
        for (int64_t c = i; c < N; ++c) row[c] += double(src[c]);
      }
    }
  }
  count += n;
}

void InputStats::mirror_hessian() {
  for (int64_t i = 0; i < K && !xtx.empty(); ++i) {
    for (int64_t j = 0; j < i; ++j) xtx[size_t(i * K + j)] = xtx[size_t(j * K + i)];
  }
}

std::vector<float> InputStats::importance() const {
  std::vector<float> v(static_cast<size_t>(K));
  for (int64_t i = 0; i < K; ++i) v[size_t(i)] = count ? float(sum_sq[size_t(i)] / double(count)) : 0.0f;
  return v;
}

std::string input_group(int64_t layer, LinearInput which) {
  if (which == LinearInput::kOutput) return "output.weight";
  const std::string b = "blk." + std::to_string(layer) + ".";
  switch (which) {
    case LinearInput::kAttnQkv: return b + "attn_q.weight";
    case LinearInput::kAttnOutput: return b + "attn_output.weight";
    case LinearInput::kFfnGateUp: return b + "ffn_gate.weight";
    default: return b + "ffn_down.weight";
  }
}

std::optional<std::string> input_group_of(const std::string& t, const Model& m) {
  if (t == "output.weight" || (t == "token_embd.weight" && m.config.tied_output)) {
    return std::string("output.weight");
  }
  if (t.rfind("blk.", 0) != 0) return std::nullopt;
  const size_t dot = t.find('.', 4);
  const std::string b = t.substr(0, dot + 1), rest = t.substr(dot + 1);
  if (rest == "attn_q.weight" || rest == "attn_k.weight" || rest == "attn_v.weight") {
    return b + "attn_q.weight";
  }
  if (rest == "ffn_gate.weight" || rest == "ffn_up.weight") return b + "ffn_gate.weight";
  if (rest == "attn_output.weight" || rest == "ffn_down.weight") return t;
  return std::nullopt;
}

Calibration calibrate(const Model& m, const Chunks& c, int64_t batch, bool hessian,
                      const ChunkProgress& progress) {
  Calibration cal;
  LlamaEngine e(m, int64_t(c.tokens.at(0).size()), std::max<int64_t>(1, batch));
  e.set_observer([&](int64_t layer, LinearInput which, const float* x, int64_t n, int64_t K) {
    cal[input_group(layer, which)].add(x, n, K, hessian);
  });
  for (const auto& ch : c.tokens) {
    e.eval(ch.data(), int64_t(ch.size()), 0, true);
    if (progress) progress();
  }
  for (auto& [name, s] : cal) s.mirror_hessian();
  return cal;
}

Importance importance_of(const Calibration& cal, const Model& m) {
  Importance out;
  for (const auto& t : m.tensors) {
    const auto g = input_group_of(t.name, m);
    if (!g) continue;
    const auto it = cal.find(*g);
    if (it != cal.end() && it->second.K == t.row_length()) out[t.name] = it->second.importance();
  }
  return out;
}

void save_imatrix(const Calibration& cal, const Model& m, const std::string& path,
                  const std::string& dataset, int64_t chunks, int64_t chunk_size) {
  GgufWriter w;
  w.set("general.type", GgufValue::str("imatrix"));
  w.set("imatrix.datasets", GgufValue::str_array({dataset}));
  w.set("imatrix.chunk_count", GgufValue::u32(uint32_t(chunks)));
  w.set("imatrix.chunk_size", GgufValue::u32(uint32_t(chunk_size)));
  const Format f32 = Format::parse("f32");
  for (const auto& t : m.tensors) {
    const auto g = input_group_of(t.name, m);
    if (!g || !cal.count(*g)) continue;
    const InputStats* s = &cal.at(*g);
    const std::string name = t.name == "token_embd.weight" ? "output.weight" : t.name;
    w.add_tensor(name + ".in_sum2", {s->K, 1}, f32, [s](OutputFile& o) {
      std::vector<float> v(s->sum_sq.begin(), s->sum_sq.end());
      o.write(v.data(), v.size() * 4);
    });
    w.add_tensor(name + ".counts", {1, 1}, f32, [s](OutputFile& o) {
      const float n = float(s->count);
      o.write(&n, 4);
    });
  }
  w.write(path, m.sources);
}

namespace {

// Legacy llama-imatrix .dat: i32 n_entries, then per entry i32 name length, name, i32 ncall,
// i32 nval, f32 values[nval] (already averaged: only their ratios matter here).
Importance load_legacy_imatrix(const std::string& path) {
  const MappedFile f(path);
  const uint8_t* d = f.data();
  uint64_t off = 0;
  auto need = [&](uint64_t n, const char* field) {
    if (n > f.size() - off) {
      throw Error("truncated importance matrix", {.file = path, .field = field,
                  .offset = int64_t(off), .expected = std::to_string(n) + " more bytes",
                  .found = std::to_string(f.size() - off)});
    }
  };
  auto i32 = [&](const char* field) {
    need(4, field);
    int32_t v;
    std::memcpy(&v, d + off, 4);
    off += 4;
    return v;
  };
  const int32_t n = i32("n_entries");
  if (n < 0 || n > 1 << 20) {
    throw Error("bad entry count", {.file = path, .field = "n_entries", .offset = 0,
                                    .expected = "0 .. 2^20", .found = std::to_string(n)});
  }
  Importance out;
  for (int32_t e = 0; e < n; ++e) {
    const int32_t len = i32("name length");
    if (len <= 0 || len > 4096) {
      throw Error("bad name length", {.file = path, .field = "entry " + std::to_string(e),
                  .offset = int64_t(off - 4), .expected = "1 .. 4096", .found = std::to_string(len)});
    }
    need(uint64_t(len), "name");
    std::string name(reinterpret_cast<const char*>(d + off), size_t(len));
    off += uint64_t(len);
    i32("ncall");
    const int32_t nval = i32("nval");
    if (nval <= 0 || nval > 1 << 24) {
      throw Error("bad value count", {.file = path, .field = name, .offset = int64_t(off - 4),
                                      .expected = "1 .. 2^24", .found = std::to_string(nval)});
    }
    need(uint64_t(nval) * 4, "values");
    std::vector<float> v(static_cast<size_t>(nval));
    std::memcpy(v.data(), d + off, v.size() * 4);
    off += v.size() * 4;
    out[name] = std::move(v);
  }
  return out;
}

}  // namespace

Importance load_imatrix(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  char magic[4] = {};
  if (!probe.read(magic, 4)) throw Error("cannot read the importance matrix", {.file = path});
  if (std::string(magic, 4) != "GGUF") return load_legacy_imatrix(path);
  const GgufFile g(path);
  Importance out;
  for (const auto& t : g.tensors()) {
    const std::string sfx = ".in_sum2";
    if (t.name.size() <= sfx.size() || t.name.compare(t.name.size() - sfx.size(), sfx.size(), sfx) != 0) continue;
    const std::string base = t.name.substr(0, t.name.size() - sfx.size());
    const GgufTensorInfo* c = g.find_tensor(base + ".counts");
    if (!c || c->format.name() != "f32" || t.format.name() != "f32" || c->elements() < 1) {
      throw Error("importance tensor without f32 counts", {.file = path, .field = base,
                  .offset = t.info_offset, .expected = base + ".counts (f32)"});
    }
    const int64_t K = t.ne[0];
    std::vector<float> v(static_cast<size_t>(K));
    std::memcpy(v.data(), t.data, v.size() * 4);  // the first matrix (dense models: the only one)
    float n;
    std::memcpy(&n, c->data, 4);
    for (float& x : v) {
      x = n > 0 ? x / n : 0.0f;
      if (!std::isfinite(x) || x < 0) {
        throw Error("importance value out of range", {.file = path, .field = t.name,
                    .offset = t.info_offset, .expected = "finite, >= 0", .found = std::to_string(x)});
      }
    }
    out[base] = std::move(v);
  }
  return out;
}

}  // namespace lowbit
