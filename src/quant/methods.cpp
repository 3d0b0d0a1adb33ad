// Sequential, layer-wise quantization methods (see methods.h). Shape legend: C = n_embd,
// F = n_ff, H = heads, G = kv heads, D = head dim, n = tokens of a calibration chunk.
#include "quant/methods.h"

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>

#include "engine/llama.h"
#include "lowbit/error.h"
#include "lowbit/mapped_file.h"
#include "lowbit/threads.h"
#include "quant/clip.h"
#include "quant/output_error.h"

namespace lowbit {

Method parse_method(const std::string& n) {
  if (n == "rtn") return Method::kRtn;
  if (n == "imatrix") return Method::kImatrix;
  if (n == "gptq") return Method::kGptq;
  if (n == "awq") return Method::kAwq;
  if (n == "awq+gptq") return Method::kAwqGptq;
  if (n == "smoothquant") return Method::kSmoothQuant;
  throw Error("unknown method", {.field = "--method",
                                 .expected = "rtn, imatrix, gptq, awq, "
                                             "awq+gptq or smoothquant",
                                 .found = n});
}

const char* method_name(Method m) {
  switch (m) {
    case Method::kRtn:
      return "rtn";
    case Method::kImatrix:
      return "imatrix";
    case Method::kGptq:
      return "gptq";
    case Method::kAwq:
      return "awq";
    case Method::kSmoothQuant:
      return "smoothquant";
    default:
      return "awq+gptq";
  }
}

namespace {

// The model being quantized: tensors replaced as the layers are processed (owned buffers).
struct Work {
  Model m;
  std::map<std::string, Format> plan;
  std::map<std::string, std::shared_ptr<const void>> bufs;  // replaced tensors' storage
  std::map<std::string, ModelTensor> original;              // to point back to once written

  ModelTensor& t(const std::string& name) {
    for (auto& x : m.tensors) {
      if (x.name == name) return x;
    }
    throw Error("required tensor missing", {.field = name});
  }
  std::vector<float> floats(const std::string& name) {
    const ModelTensor& x = t(name);
    std::vector<float> v(static_cast<size_t>(x.rows() * x.row_length()));
    x.format.dequantize(x.data, x.rows(), x.row_length(), v.data());
    return v;
  }
  void set_floats(const std::string& name, const std::vector<float>& v) {
    auto buf = std::make_shared<std::vector<float>>(v);
    ModelTensor& x = t(name);
    x.format = Format::parse("f32");
    x.data = reinterpret_cast<const uint8_t*>(buf->data());
    x.bytes = buf->size() * 4, x.mapped = false;
    bufs[name] = buf;
  }
  void set_bytes(const std::string& name, const Format& f, std::vector<uint8_t> b) {
    auto buf = std::make_shared<std::vector<uint8_t>>(std::move(b));
    ModelTensor& x = t(name);
    x.format = f;
    x.data = buf->data();
    x.bytes = buf->size(), x.mapped = false;
    bufs[name] = buf;
  }
  // Once written, a replaced tensor goes back to its original view and its buffer is freed, and
  // the original's pages of the input file leave memory (the writer only releases the views it
  // wrote, which for a replaced tensor is the buffer): without this, peak RSS grows by the whole
  // input model over a run.
  void release(const std::string& name) {
    const auto it = original.find(name);
    if (it == original.end() || !bufs.count(name)) return;
    t(name) = it->second;
    bufs.erase(name);
    if (it->second.mapped) release_mapped_pages(it->second.data, it->second.bytes);
  }
};

struct WeightRef {
  const std::vector<float>* W;
  int64_t rows;
  Format f;
};

// AWQ's search: per-input-channel scales s = mean|x|^α (normalised), α on a grid, minimising
// the weights' output error after quantizing W·diag(s) and dividing back. tie: channel groups
// that must share a scale (GQA's v→o), as a map channel -> representative; empty = none.
std::vector<float> awq_search(const std::vector<WeightRef>& ws, const InputStats& st, int grid,
                              const std::vector<std::vector<int64_t>>& tie) {
  const int64_t K = st.K;
  std::vector<float> H(st.xtx.begin(), st.xtx.end());
  const std::vector<float> imp = st.importance();
  std::vector<double> mean_abs(static_cast<size_t>(K));
  for (int64_t c = 0; c < K; ++c)
    mean_abs[size_t(c)] =
        std::max(st.sum_abs[size_t(c)] / double(std::max<int64_t>(st.count, 1)), 1e-6);
  std::vector<float> best(static_cast<size_t>(K), 1.0f);
  double best_loss = INFINITY;
  for (int a = 0; a < grid; ++a) {
    const double alpha = double(a) / grid;
    std::vector<double> s(static_cast<size_t>(K));
    for (int64_t c = 0; c < K; ++c) s[size_t(c)] = std::pow(mean_abs[size_t(c)], alpha);
    for (const auto& group : tie) {  // shared scales: the group's mean
      double m = 0;
      for (int64_t c : group) m += s[size_t(c)];
      for (int64_t c : group) s[size_t(c)] = m / double(group.size());
    }
    const auto [lo, hi] = std::minmax_element(s.begin(), s.end());
    const double norm = std::sqrt(*lo * *hi);
    for (double& v : s) v /= norm;
    double loss = 0;
    for (const WeightRef& w : ws) {
      // At most 256 rows (evenly spaced) estimate each weight's loss.
      const int64_t step = std::max<int64_t>(1, w.rows / 256), R = (w.rows + step - 1) / step;
      std::vector<float> Ws(static_cast<size_t>(R * K)), impS(static_cast<size_t>(K));
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t c = 0; c < K; ++c) {
          Ws[size_t(r * K + c)] = float((*w.W)[size_t(r * step * K + c)] * s[size_t(c)]);
        }
      }
      for (int64_t c = 0; c < K; ++c)
        impS[size_t(c)] = float(imp[size_t(c)] / (s[size_t(c)] * s[size_t(c)]));
      std::vector<uint8_t> q(w.f.row_bytes(K) * uint64_t(R));
      w.f.quantize(Ws.data(), R, K, impS.data(), q.data());
      std::vector<float> back(Ws.size());
      w.f.dequantize(q.data(), R, K, back.data());
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t c = 0; c < K; ++c) {
          const size_t i = size_t(r * K + c);
          back[i] = float(back[i] / s[size_t(c)]) - (*w.W)[size_t(r * step * K + c)];
        }
      }
      loss += output_error(back.data(), R, K, H.data()) * double(w.rows) / double(R);
    }
    if (loss < best_loss) {
      best_loss = loss;
      for (int64_t c = 0; c < K; ++c) best[size_t(c)] = float(s[size_t(c)]);
    }
  }
  return best;
}

void scale_columns(std::vector<float>& W, int64_t K, const std::vector<float>& s) {
  for (size_t i = 0; i < W.size(); ++i) W[i] *= s[i % size_t(K)];
}
void scale_rows(std::vector<float>& W, int64_t K, const std::vector<float>& s, bool divide) {
  for (size_t i = 0; i < W.size(); ++i) {
    const float v = s[i / size_t(K)];
    W[i] = divide ? W[i] / v : W[i] * v;
  }
}
// The statistics of inputs x / s (the inputs of W·diag(s)).
void scale_stats(InputStats& st, const std::vector<float>& s) {
  const int64_t K = st.K;
  for (int64_t i = 0; i < K; ++i) {
    st.sum_sq[size_t(i)] /= double(s[size_t(i)]) * s[size_t(i)];
    st.sum_abs[size_t(i)] /= s[size_t(i)];
    if (!st.max_abs.empty()) st.max_abs[size_t(i)] /= s[size_t(i)];
    for (int64_t j = 0; j < K && !st.xtx.empty(); ++j) {
      st.xtx[size_t(i * K + j)] /= double(s[size_t(i)]) * s[size_t(j)];
    }
  }
}

// AWQ on layer L: four scale searches, each folded into the op before it so the layer computes
// the same function: attn_norm -> q/k/v, v -> o, ffn_norm -> gate/up, up -> down.
void awq_layer(Work& w, int64_t L, Calibration& cal, int grid) {
  const ModelConfig& c = w.m.config;
  const std::string b = "blk." + std::to_string(L) + ".";
  const int64_t C = c.n_embd, D = c.head_dim, H = c.n_head, G = c.n_head_kv, F = c.n_ff;
  auto W = [&](const std::string& n) { return w.floats(b + n); };
  auto fmt = [&](const std::string& n) { return w.plan.at(b + n); };
  // norm -> weights sharing its output
  auto norm_group = [&](const std::string& norm, std::vector<std::string> names,
                        const std::string& group) {
    std::vector<std::vector<float>> ws;
    std::vector<WeightRef> refs;
    for (const auto& n : names) ws.push_back(W(n));
    for (size_t i = 0; i < names.size(); ++i) {
      refs.push_back({&ws[i], w.t(b + names[i]).rows(), fmt(names[i])});
    }
    InputStats& st = cal.at(b + group);
    const std::vector<float> s = awq_search(refs, st, grid, {});
    std::vector<float> g = W(norm);
    for (int64_t i = 0; i < C; ++i) g[size_t(i)] /= s[size_t(i)];
    w.set_floats(b + norm, g);
    for (size_t i = 0; i < names.size(); ++i) {
      scale_columns(ws[i], C, s);
      w.set_floats(b + names[i], ws[i]);
    }
    scale_stats(st, s);
  };
  norm_group("attn_norm.weight", {"attn_q.weight", "attn_k.weight", "attn_v.weight"},
             "attn_q.weight");
  {  // v -> o: o's input channel h*D + d comes from v's row g*D + d, g = h / (H/G)
    std::vector<float> wo = W("attn_output.weight"), wv = W("attn_v.weight");
    std::vector<std::vector<int64_t>> tie(static_cast<size_t>(G * D));
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t d = 0; d < D; ++d) tie[size_t((h / (H / G)) * D + d)].push_back(h * D + d);
    }
    InputStats& st = cal.at(b + "attn_output.weight");
    const std::vector<float> s = awq_search({{&wo, C, fmt("attn_output.weight")}}, st, grid, tie);
    std::vector<float> sv(static_cast<size_t>(G * D));
    for (int64_t g = 0; g < G; ++g) {
      for (int64_t d = 0; d < D; ++d) sv[size_t(g * D + d)] = s[size_t(g * (H / G) * D + d)];
    }
    scale_rows(wv, C, sv, true);
    w.set_floats(b + "attn_v.weight", wv);
    if (w.m.find(b + "attn_v.bias")) {
      std::vector<float> bv = W("attn_v.bias");
      for (size_t i = 0; i < bv.size(); ++i) bv[i] /= sv[i];
      w.set_floats(b + "attn_v.bias", bv);
    }
    scale_columns(wo, H * D, s);
    w.set_floats(b + "attn_output.weight", wo);
    scale_stats(st, s);
  }
  norm_group("ffn_norm.weight", {"ffn_gate.weight", "ffn_up.weight"}, "ffn_gate.weight");
  {  // up -> down: down's input i = silu(gate_i) * up_i
    std::vector<float> wd = W("ffn_down.weight"), wu = W("ffn_up.weight");
    InputStats& st = cal.at(b + "ffn_down.weight");
    const std::vector<float> s = awq_search({{&wd, C, fmt("ffn_down.weight")}}, st, grid, {});
    scale_rows(wu, C, s, true);
    w.set_floats(b + "ffn_up.weight", wu);
    scale_columns(wd, F, s);
    w.set_floats(b + "ffn_down.weight", wd);
    scale_stats(st, s);
  }
}

// SmoothQuant on layer L: the activation outliers of the norm outputs migrate into the weights
// (s_j = max|x_j|^α / max_i |w_ij|^(1-α)), folded into attn_norm / ffn_norm, so both the weights
// and the 8-bit activations of the INT8 runtime see tamer ranges.
void smoothquant_layer(Work& w, int64_t L, Calibration& cal, double alpha) {
  const std::string b = "blk." + std::to_string(L) + ".";
  const int64_t C = w.m.config.n_embd;
  auto group = [&](const std::string& norm, std::vector<std::string> names, const std::string& g) {
    InputStats& st = cal.at(b + g);
    std::vector<std::vector<float>> ws;
    std::vector<float> wmax(static_cast<size_t>(C), 0.0f);
    for (const auto& n : names) {
      ws.push_back(w.floats(b + n));
      for (size_t i = 0; i < ws.back().size(); ++i) {
        wmax[i % size_t(C)] = std::max(wmax[i % size_t(C)], std::fabs(ws.back()[i]));
      }
    }
    std::vector<float> s(static_cast<size_t>(C));
    for (int64_t j = 0; j < C; ++j) {
      const double xm = std::max(double(st.max_abs[size_t(j)]), 1e-5);
      const double wm = std::max(double(wmax[size_t(j)]), 1e-5);
      s[size_t(j)] = float(std::clamp(std::pow(xm, alpha) / std::pow(wm, 1 - alpha), 1e-4, 1e4));
    }
    std::vector<float> gamma = w.floats(b + norm);
    for (int64_t j = 0; j < C; ++j) gamma[size_t(j)] /= s[size_t(j)];
    w.set_floats(b + norm, gamma);
    for (size_t i = 0; i < names.size(); ++i) {
      scale_columns(ws[i], C, s);
      w.set_floats(b + names[i], ws[i]);
    }
    scale_stats(st, s);
  };
  group("attn_norm.weight", {"attn_q.weight", "attn_k.weight", "attn_v.weight"}, "attn_q.weight");
  group("ffn_norm.weight", {"ffn_gate.weight", "ffn_up.weight"}, "ffn_gate.weight");
}

// Quantizes one weight matrix of layer L with its input statistics.
// With Hessians, imatrix and AWQ end in the weighting search (AWQ: followed by the clipping
// search under each row's chosen weighting, on every weight but q and k — as AWQ: their error
// reaches the output through the attention scores, which the per-layer output error does not
// see — unless clip_qk). Without
// (the head under the GPTQ methods, SmoothQuant, an importance file), the importance-weighted fit.
void quantize_weight(Work& w, const std::string& name, const InputStats& st, Method method,
                     const GptqOptions& go, const ClipOptions& clip, bool clip_qk) {
  const Format f = w.plan.at(name);
  const ModelTensor& t = w.t(name);
  const int64_t rows = t.rows(), K = t.row_length();
  std::vector<float> W = w.floats(name);
  std::vector<uint8_t> out(f.row_bytes(K) * uint64_t(rows));
  const bool qk = name.ends_with("attn_q.weight") || name.ends_with("attn_k.weight");
  if (method == Method::kGptq || method == Method::kAwqGptq) {
    gptq_quantize(f, W.data(), rows, K, st.xtx.data(), go, out.data());
  } else if ((method == Method::kImatrix || method == Method::kAwq) && !st.xtx.empty()) {
    const std::vector<float> imp = st.importance();
    const bool clipped = method == Method::kAwq && clip.grid > 0 && (!qk || clip_qk);
    weighting_quantize(f, W.data(), rows, K, st.xtx.data(), imp.data(), out.data(),
                       clipped ? &clip : nullptr);
  } else {
    const std::vector<float> imp = st.importance();
    f.quantize(W.data(), rows, K, imp.data(), out.data());
  }
  w.set_bytes(name, f, std::move(out));
}

}  // namespace

std::vector<TensorPlan> quantize_with_method(const Model& m, const std::string& path,
                                             const QuantizeOptions& q, const MethodOptions& mo,
                                             const Chunks* calib, const LayerProgress& progress) {
  if (mo.method == Method::kRtn) return quantize_model(m, path, q);
  const std::vector<TensorPlan> plan = plan_quantization(m, q);
  Work w{m, {}, {}, {}};
  for (const auto& p : plan) w.plan.emplace(p.name, p.to);
  for (const auto& t : m.tensors) w.original.emplace(t.name, t);
  const ModelConfig& c = m.config;
  const std::vector<std::pair<std::string, std::string>> meta = {
      {"lowbit.quantize.method", method_name(mo.method)}, {"lowbit.quantize.type", q.type.name()}};
  auto is_matrix = [&](const std::string& n) { return w.t(n).shape.size() >= 2; };
  auto rtn = [&](const std::string& name, const float* imp) {
    const ModelTensor& t = w.t(name);
    const Format f = w.plan.at(name);
    std::vector<float> W = w.floats(name);
    std::vector<uint8_t> out(f.row_bytes(t.row_length()) * uint64_t(t.rows()));
    f.quantize(W.data(), t.rows(), t.row_length(), imp, out.data());
    w.set_bytes(name, f, std::move(out));
  };
  auto target = [&](const ModelTensor& t) {
    return t.shape.size() >= 2 ? w.plan.at(t.name) : Format::parse("f32");
  };
  auto release = [&](const ModelTensor& t) { w.release(t.name); };

  if (mo.method == Method::kImatrix && mo.imatrix) {  // importance from a file: per tensor
    auto produce = [&](const ModelTensor& t) {
      if (!is_matrix(t.name)) return;
      const auto it = mo.imatrix->find(
          t.name == "token_embd.weight" && c.tied_output ? std::string("output.weight") : t.name);
      const bool have = it != mo.imatrix->end() && int64_t(it->second.size()) == t.row_length();
      rtn(t.name, have ? it->second.data() : nullptr);  // no statistics: plain RTN
    };
    write_gguf(w.m, path, target, meta, true, produce, release);
    return plan;
  }
  if (!calib || calib->tokens.empty()) {
    throw Error(std::string("method ") + method_name(mo.method) + " needs calibration text",
                {.field = "--calib", .expected = "a text file"});
  }
  const bool hessian = mo.method != Method::kSmoothQuant;  // imatrix: its weighting search
  const int64_t n = int64_t(calib->tokens[0].size()), C = c.n_embd;
  // The file's data in processing order: the blocks layer by layer, then embedding, norm and
  // head; the writer pulls each layer when it reaches it, so only one quantized layer (plus the
  // calibration activations) is ever held.
  std::stable_partition(w.m.tensors.begin(), w.m.tensors.end(),
                        [](const ModelTensor& t) { return t.name.rfind("blk.", 0) == 0; });
  // Calibration activations entering the next layer, one (n, C) block per chunk.
  std::vector<std::vector<float>> X;
  {
    LlamaEngine e(w.m, n, n);
    for (const auto& ch : calib->tokens) {
      X.emplace_back(static_cast<size_t>(n * C));
      e.embed(ch.data(), n, X.back().data());
    }
  }
  int64_t layers_done = 0;
  auto process_layer = [&](int64_t L) {
    Calibration cal;
    {
      LlamaEngine e(w.m, n, n);
      e.set_observer(
          [&](int64_t layer, LinearInput which, const float* x, int64_t rows, int64_t K) {
            if (layer == L) cal[input_group(layer, which)].add(x, rows, K, hessian);
          });
      std::vector<float> x(static_cast<size_t>(n * C));
      for (const auto& xc : X) {
        x = xc;
        e.run_layers(x.data(), n, 0, L, L + 1);
      }
    }
    for (auto& [name, s] : cal) s.mirror_hessian();
    if (mo.method == Method::kAwq || mo.method == Method::kAwqGptq)
      awq_layer(w, L, cal, mo.awq_grid);
    if (mo.method == Method::kSmoothQuant) smoothquant_layer(w, L, cal, mo.sq_alpha);
    const std::string b = "blk." + std::to_string(L) + ".";
    for (const char* name :
         {"attn_q.weight", "attn_k.weight", "attn_v.weight", "attn_output.weight",
          "ffn_gate.weight", "ffn_up.weight", "ffn_down.weight"}) {
      const auto g = input_group_of(b + name, w.m);
      const Method how = mo.method == Method::kSmoothQuant ? Method::kImatrix : mo.method;
      quantize_weight(w, b + name, cal.at(*g), how, mo.gptq, mo.clip, mo.clip_qk);
    }
    {  // the activations through the quantized layer
      LlamaEngine e(w.m, n, n);
      for (auto& xc : X) e.run_layers(xc.data(), n, 0, L, L + 1);
    }
    // A layer's Hessians and GPTQ work arrays are hundreds of MiB in pieces below glibc's mmap
    // threshold: hand the freed heap back so RSS stays at one layer's worth.
    malloc_trim(0);
    if (progress) progress(L + 1, c.n_layer);
  };
  bool head_done = false;
  auto process_head = [&] {
    while (layers_done < c.n_layer) process_layer(layers_done++);
    InputStats head;  // the output head's inputs: the final norm of the activations
    // Its Hessian for the weighting search of imatrix and AWQ (the GPTQ methods give the head
    // the plain importance-weighted fit).
    const bool head_hessian = mo.method == Method::kImatrix || mo.method == Method::kAwq;
    const ModelTensor& g = w.t("output_norm.weight");
    std::vector<float> gamma(static_cast<size_t>(C)), y(static_cast<size_t>(n * C));
    g.format.dequantize_row(g.data, C, gamma.data());
    for (const auto& xc : X) {
      for (int64_t t = 0; t < n; ++t) {
        const float* x = &xc[size_t(t * C)];
        double ss = 0;
        for (int64_t i = 0; i < C; ++i) ss += double(x[i]) * x[i];
        const float r = float(1.0 / std::sqrt(ss / double(C) + c.rms_eps));
        for (int64_t i = 0; i < C; ++i) y[size_t(t * C + i)] = x[i] * r * gamma[size_t(i)];
      }
      head.add(y.data(), n, C, head_hessian);
    }
    head.mirror_hessian();
    for (const auto& p : plan) {
      if (!is_matrix(p.name) || p.name.rfind("blk.", 0) == 0) continue;
      if (p.name == "output.weight" || c.tied_output) {
        quantize_weight(w, p.name, head, Method::kImatrix, mo.gptq, mo.clip, mo.clip_qk);
      } else {
        rtn(p.name, nullptr);  // an untied embedding: a lookup table, no inputs to weight by
      }
    }
    head_done = true;
  };
  auto produce = [&](const ModelTensor& t) {
    if (t.name.rfind("blk.", 0) == 0) {
      const int64_t L = std::stoll(t.name.substr(4));
      while (layers_done <= L) process_layer(layers_done++);
    } else if (!head_done && is_matrix(t.name)) {
      process_head();
    }
  };
  write_gguf(w.m, path, target, meta, true, produce, release);
  return plan;
}

}  // namespace lowbit
