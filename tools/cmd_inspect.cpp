// `lowbit inspect FILE [--check] [--json] [--against ORIGINAL]`: metadata, tensor table, parameter
// count, bits per weight overall and per type; --check decodes every tensor and reports NaN/Inf
// values (which also catches non-finite block scales); --against compares every tensor with the
// original model's (relative Frobenius error, SNR in dB). JSON has no infinity: an SNR of
// identical weights is written as null.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "eval/tensor_error.h"
#include "io/gguf.h"
#include "io/safetensors.h"
#include "lowbit/error.h"
#include "lowbit/model.h"

namespace lowbit::cli {

namespace {

nlohmann::json value_json(const GgufValue& v) {
  switch (v.type) {
    case GgufType::kString:
      return v.s;
    case GgufType::kBool:
      return v.b;
    case GgufType::kF32:
    case GgufType::kF64:
      return v.f;
    case GgufType::kI8:
    case GgufType::kI16:
    case GgufType::kI32:
    case GgufType::kI64:
      return v.i;
    case GgufType::kArray: {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& e : v.arr) a.push_back(value_json(e));
      return a;
    }
    default:
      return v.u;
  }
}

std::string value_text(const GgufValue& v) {
  if (v.type == GgufType::kArray) {
    std::string s = fmt::format("[{} x {}]", v.arr.size(), gguf_type_name(v.elem_type));
    for (size_t i = 0; i < std::min<size_t>(v.arr.size(), 4); ++i) s += " " + value_text(v.arr[i]);
    return v.arr.size() > 4 ? s + " ..." : s;
  }
  if (v.type == GgufType::kString) {
    return "\"" + (v.s.size() > 60 ? v.s.substr(0, 60) + "..." : v.s) + "\"";
  }
  return value_json(v).dump();
}

// First non-finite value of a tensor: (row, column), or row = -1.
std::pair<int64_t, int64_t> first_non_finite(const ModelTensor& t) {
  const int64_t K = t.row_length();
  const uint64_t rb = t.format.row_bytes(K);
  std::vector<float> row(static_cast<size_t>(K));
  for (int64_t r = 0; r < t.rows(); ++r) {
    t.format.dequantize_row(t.data + uint64_t(r) * rb, K, row.data());
    for (int64_t k = 0; k < K; ++k) {
      if (!std::isfinite(row[size_t(k)])) return {r, k};
    }
  }
  return {-1, -1};
}

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? " x " : "") + std::to_string(s[i]);
  return r;
}

// SNR for JSON: null when infinite (identical weights).
nlohmann::json snr_json(double snr) {
  return std::isfinite(snr) ? nlohmann::json(snr) : nullptr;
}

std::string snr_text(double snr) {
  return std::isfinite(snr) ? fmt::format("{:.2f}", snr) : std::string(snr > 0 ? "inf" : "-inf");
}

// The --against report: one entry per tensor, then the weight matrices as one vector.
nlohmann::json against_json(const std::string& file, const std::vector<TensorError>& errs,
                            const ErrorTotal& tot) {
  nlohmann::json j = {{"file", file}, {"tensors", nlohmann::json::array()}};
  for (const auto& e : errs) {
    j["tensors"].push_back({{"name", e.name},
                            {"type", e.format.name()},
                            {"bits_per_weight", e.bits_per_weight},
                            {"rel_error", e.rel_error()},
                            {"snr_db", snr_json(e.snr_db())}});
  }
  j["total"] = {{"tensors", tot.tensors},       {"parameters", tot.params},
                {"bytes", tot.bytes},           {"bits_per_weight", tot.bits_per_weight()},
                {"rel_error", tot.rel_error()}, {"snr_db", snr_json(tot.snr_db())}};
  return j;
}

void print_against(const std::string& file, const std::vector<TensorError>& errs,
                   const ErrorTotal& tot) {
  fmt::print("\nagainst {}\n{:<32} {:<14} {:>7} {:>11} {:>9}\n", file, "tensor", "type", "bpw",
             "rel. error", "SNR dB");
  for (const auto& e : errs) {
    fmt::print("{:<32} {:<14} {:>7.3f} {:>11.3e} {:>9}\n", e.name, e.format.name(),
               e.bits_per_weight, e.rel_error(), snr_text(e.snr_db()));
  }
  fmt::print("{:<32} {:<14} {:>7.3f} {:>11.3e} {:>9}\n",
             fmt::format("total ({} weight matrices)", tot.tensors), "", tot.bits_per_weight(),
             tot.rel_error(), snr_text(tot.snr_db()));
}

}  // namespace

Runner add_inspect(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("inspect", "Show a model file: metadata, tensors, bits per weight");
  struct Opts {
    std::string file, against;
    bool check = false, json = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("file", o->file, "A .gguf, llama2.c .bin, safetensors or model folder")
      ->required();
  cmd->add_flag("--check", o->check, "Decode every tensor and report NaN/Inf");
  cmd->add_flag("--json", o->json, "Machine-readable output");
  cmd->add_option("--against", o->against,
                  "Original model: per-tensor relative error and SNR (dB) of this one against it");
  return [o] {
    std::unique_ptr<GgufFile> g;
    std::ifstream probe(o->file, std::ios::binary);
    char magic[4] = {};
    if (probe.read(magic, 4) && std::string(magic, 4) == "GGUF")
      g = std::make_unique<GgufFile>(o->file);
    // A GGUF is shown whatever it holds (vocabulary-only files, other architectures); the model
    // description is added when lowbit can load it.
    // So is a bare .safetensors file (an adapter, one shard, no config.json beside it): float
    // tensors as the model's would be, other dtypes (GPTQ's int32 words) by their dtype name.
    struct Raw {
      std::string name, dtype;
      std::vector<int64_t> shape;
      uint64_t bytes = 0, elements = 0;
    };
    std::vector<Raw> raw;
    std::unique_ptr<SafetensorsModel> st;
    Model m;
    std::string model_error;
    try {
      m = Model::load(o->file);
    } catch (const Error& e) {
      const std::string ext = std::filesystem::path(o->file).extension().string();
      if (!g && !std::filesystem::is_directory(o->file) && (ext == ".safetensors" || ext == ".json")) {
        st = std::make_unique<SafetensorsModel>(o->file);  // throws its own error if malformed
      }
      if (!g && !st) throw;
      model_error = e.what();
      if (g) {
        for (const auto& t : g->tensors()) {
          m.tensors.push_back({t.name, t.format, std::vector<int64_t>(t.ne.rbegin(), t.ne.rend()),
                               t.data, t.bytes, true});
        }
      }
      for (const auto& t : st ? st->tensors() : std::vector<StTensor>{}) {
        const auto dt = st_dtype_name(t.dtype);
        if ((dt == "F32" || dt == "F16" || dt == "BF16") && !t.shape.empty()) {
          std::string f(dt);
          for (char& ch : f) ch = char(std::tolower(static_cast<unsigned char>(ch)));
          m.tensors.push_back({t.name, Format::parse(f), t.shape, t.data, t.bytes, true});
          continue;
        }
        uint64_t n = 1;
        for (int64_t d : t.shape) n *= uint64_t(d);
        raw.push_back({t.name, std::string(dt), t.shape, t.bytes, n});
      }
    }
    nlohmann::json out;
    out["file"] = o->file;
    if (g) {
      out["gguf_version"] = g->version();
      out["alignment"] = g->alignment();
      for (const auto& [k, v] : g->metadata()) out["metadata"][k] = value_json(v);
    }
    std::map<std::string, std::pair<uint64_t, uint64_t>> per_type;  // name -> (params, bytes)
    uint64_t params = 0, bytes = 0;
    int bad = 0;
    for (const auto& t : m.tensors) {
      const uint64_t n = uint64_t(t.rows()) * uint64_t(t.row_length());
      params += n, bytes += t.bytes;
      auto& pt = per_type[t.format.name()];
      pt.first += n, pt.second += t.bytes;
      nlohmann::json jt = {
          {"name", t.name}, {"type", t.format.name()}, {"shape", t.shape}, {"bytes", t.bytes}};
      if (o->check) {
        const auto [r, k] = first_non_finite(t);
        jt["finite"] = r < 0;
        if (r >= 0) {
          ++bad;
          fmt::print(stderr, "{}: tensor {} has a non-finite value at row {}, column {}\n", o->file,
                     t.name, r, k);
        }
      }
      out["tensors"].push_back(jt);
    }
    for (const auto& r : raw) {
      params += r.elements, bytes += r.bytes;
      auto& pt = per_type[r.dtype];
      pt.first += r.elements, pt.second += r.bytes;
      out["tensors"].push_back(
          {{"name", r.name}, {"type", r.dtype}, {"shape", r.shape}, {"bytes", r.bytes}});
    }
    if (st) {
      for (const auto& [k, v] : st->metadata()) out["metadata"][k] = v;
    }
    if (!model_error.empty()) out["model_error"] = model_error;
    std::vector<TensorError> errs;
    ErrorTotal tot;
    if (!o->against.empty()) {
      if (!model_error.empty()) throw Error("--against needs a loadable model: " + model_error);
      const Model orig = Model::load(o->against);
      errs = compare_tensors(m, orig, o->file, o->against);
      tot = total_of_matrices(errs);
      out["against"] = against_json(o->against, errs, tot);
    }
    out["parameters"] = params;
    out["bytes"] = bytes;
    out["bits_per_weight"] = params ? 8.0 * double(bytes) / double(params) : 0.0;
    for (const auto& [name, pb] : per_type) {
      out["per_type"][name] = {{"parameters", pb.first},
                               {"bytes", pb.second},
                               {"bits_per_weight", 8.0 * double(pb.second) / double(pb.first)}};
    }
    if (o->json) {
      fmt::print("{}\n", out.dump(2));
      return bad ? 1 : 0;
    }
    fmt::print("{}\n", o->file);
    if (g) {
      fmt::print("GGUF v{}, alignment {}, {} metadata keys, {} tensors\n", g->version(),
                 g->alignment(), g->metadata().size(), g->tensors().size());
      for (const auto& [k, v] : g->metadata()) fmt::print("  {:<44} {}\n", k, value_text(v));
    }
    if (st) {
      fmt::print("safetensors, {} files, {} metadata keys, {} tensors\n", st->files().size(),
                 st->metadata().size(), st->tensors().size());
      for (const auto& [k, v] : st->metadata()) {
        fmt::print("  {:<44} {}\n", k, v.size() > 60 ? v.substr(0, 60) + "..." : v);
      }
    }
    const ModelConfig& c = m.config;
    if (!model_error.empty())
      fmt::print("not loadable as a model: {}\n", model_error);
    else
      fmt::print("{}: {} layers, dim {}, ffn {}, heads {}/{} (head dim {}), vocab {}, ctx {}\n",
                 c.arch, c.n_layer, c.n_embd, c.n_ff, c.n_head, c.n_head_kv, c.head_dim, c.n_vocab,
                 c.n_ctx_train);
    fmt::print("\n{:<32} {:<14} {:>16} {:>12}\n", "tensor", "type", "shape", "bytes");
    for (const auto& t : m.tensors) {
      fmt::print("{:<32} {:<14} {:>16} {:>12}\n", t.name, t.format.name(), shape_text(t.shape),
                 t.bytes);
    }
    for (const auto& r : raw) {
      fmt::print("{:<32} {:<14} {:>16} {:>12}\n", r.name, r.dtype, shape_text(r.shape), r.bytes);
    }
    fmt::print("\n{} parameters, {} bytes, {:.3f} bits per weight\n", params, bytes,
               out["bits_per_weight"].get<double>());
    for (const auto& [name, pb] : per_type) {
      fmt::print("  {:<14} {:>12} parameters {:>8.3f} bpw\n", name, pb.first,
                 8.0 * double(pb.second) / double(pb.first));
    }
    if (o->check) fmt::print("check: {} tensors with NaN/Inf\n", bad);
    if (!o->against.empty()) print_against(o->against, errs, tot);
    return bad ? 1 : 0;
  };
}

}  // namespace lowbit::cli
