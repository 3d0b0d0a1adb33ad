// compare_tensors: configuration and tensor-set checks, then a row-parallel streamed comparison.
// Each row's sums go to their own slot and are added in row order afterwards, so the totals are
// bit-identical whatever the thread count.
#include "eval/tensor_error.h"

#include <algorithm>
#include <unordered_set>

#include "lowbit/error.h"
#include "lowbit/threads.h"

namespace lowbit {

namespace {

std::string shape_text(const std::vector<int64_t>& s) {
  std::string r;
  for (size_t i = 0; i < s.size(); ++i) r += (i ? " x " : "") + std::to_string(s[i]);
  return r;
}

// The quantized model must be a version of the original: same architecture and dimensions.
void check_configs(const ModelConfig& q, const ModelConfig& o, const std::string& quant_file,
                   const std::string& original_file) {
  const std::string msg = "model differs from " + original_file + " (compared against it)";
  if (q.arch != o.arch) {
    throw Error(
        msg,
        {.file = quant_file, .field = "general.architecture", .expected = o.arch, .found = q.arch});
  }
  const std::pair<const char*, int64_t ModelConfig::*> dims[] = {
      {"n_vocab", &ModelConfig::n_vocab},  {"n_embd", &ModelConfig::n_embd},
      {"n_ff", &ModelConfig::n_ff},        {"n_layer", &ModelConfig::n_layer},
      {"n_head", &ModelConfig::n_head},    {"n_head_kv", &ModelConfig::n_head_kv},
      {"head_dim", &ModelConfig::head_dim}};
  for (const auto& [name, field] : dims) {
    if (q.*field != o.*field) {
      throw Error(msg, {.file = quant_file,
                        .field = name,
                        .expected = std::to_string(o.*field),
                        .found = std::to_string(q.*field)});
    }
  }
}

// The original's tensor for quant's `name`. A tied original (no output.weight: the token
// embedding doubles as the output) answers output.weight with token_embd.weight, since
// converters such as llama.cpp's store the tied matrix twice.
const ModelTensor* counterpart(const Model& original, const std::string& name) {
  const ModelTensor* t = original.find(name);
  if (!t && name == "output.weight" && original.config.tied_output) {
    t = original.find("token_embd.weight");
  }
  return t;
}

// Every tensor of each model has a namesake of the same shape in the other.
void check_tensor_sets(const Model& quant, const Model& original, const std::string& quant_file,
                       const std::string& original_file) {
  std::unordered_set<std::string> in_quant;
  for (const auto& t : quant.tensors) {
    in_quant.insert(t.name);
    const ModelTensor* o = counterpart(original, t.name);
    if (!o) {
      throw Error("tensor is missing from " + original_file,
                  {.file = quant_file, .field = t.name, .expected = "a tensor of the same name"});
    }
    if (o->shape != t.shape) {
      throw Error("tensor shape differs from " + original_file, {.file = quant_file,
                                                                 .field = t.name,
                                                                 .expected = shape_text(o->shape),
                                                                 .found = shape_text(t.shape)});
    }
  }
  for (const auto& o : original.tensors) {
    if (!in_quant.count(o.name)) {
      throw Error(
          "tensor is missing from " + quant_file,
          {.file = original_file, .field = o.name, .expected = "a tensor of the same name"});
    }
  }
}

// Fills e.err2, e.ref2 for q (quantized) against o (original), both (rows, K).
void accumulate(const ModelTensor& q, const ModelTensor& o, TensorError& e) {
  const int64_t rows = q.rows(), K = q.row_length();
  const uint64_t q_rb = q.format.row_bytes(K), o_rb = o.format.row_bytes(K);
  std::vector<double> err_row(size_t(rows), 0.0), ref_row(size_t(rows), 0.0);  // (rows)
  // Chunks of at least ~16K values keep the thread start-up small against the work.
  const int64_t min_chunk = std::max<int64_t>(1, 16384 / std::max<int64_t>(K, 1));
  parallel_for(rows, min_chunk, [&](int64_t begin, int64_t end) {
    std::vector<float> qv(static_cast<size_t>(K)), ov(static_cast<size_t>(K));  // a row each, (K)
    for (int64_t r = begin; r < end; ++r) {
      q.format.dequantize_row(q.data + uint64_t(r) * q_rb, K, qv.data());
      o.format.dequantize_row(o.data + uint64_t(r) * o_rb, K, ov.data());
      double err = 0, ref = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double x = ov[size_t(k)], d = double(qv[size_t(k)]) - x;
        err += d * d;
        ref += x * x;
      }
      err_row[size_t(r)] = err, ref_row[size_t(r)] = ref;
    }
  });
  for (int64_t r = 0; r < rows; ++r) e.err2 += err_row[size_t(r)], e.ref2 += ref_row[size_t(r)];
}

}  // namespace

std::vector<TensorError> compare_tensors(const Model& quant, const Model& original,
                                         const std::string& quant_file,
                                         const std::string& original_file) {
  check_configs(quant.config, original.config, quant_file, original_file);
  check_tensor_sets(quant, original, quant_file, original_file);
  std::vector<TensorError> out;
  out.reserve(quant.tensors.size());
  for (const auto& t : quant.tensors) {
    TensorError e{.name = t.name, .format = t.format, .shape = t.shape};
    e.params = t.rows() * t.row_length();
    e.bytes = t.bytes;
    e.bits_per_weight = e.params ? 8.0 * double(e.bytes) / double(e.params) : 0.0;
    if (e.params > 0) accumulate(t, *counterpart(original, t.name), e);
    out.push_back(std::move(e));
  }
  return out;
}

ErrorTotal total_of_matrices(const std::vector<TensorError>& errors) {
  ErrorTotal s;
  for (const auto& e : errors) {
    if (!e.matrix()) continue;
    ++s.tensors;
    s.params += e.params, s.bytes += e.bytes, s.err2 += e.err2, s.ref2 += e.ref2;
  }
  return s;
}

}  // namespace lowbit
