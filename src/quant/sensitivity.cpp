// Per-tensor sensitivity measurement (see sensitivity.h). Shape legend: n = positions of a chunk,
// C = n_embd, V = n_vocab, S = scored positions per chunk, R = rows, K = row length.
#include "quant/sensitivity.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>

#include "engine/llama.h"
#include "lowbit/error.h"
#include "lowbit/output_file.h"
#include "quant/calibrate.h"
#include "quant/clip.h"
#include "quant/gptq.h"
#include "quant/output_error.h"

namespace lowbit {

using Json = nlohmann::json;

std::vector<Format> gguf_ladder() {
  return parse_format_list("q2_k,q3_k,iq4_xs,q4_0,iq4_nl,q4_1,q4_k,q5_0,q5_k,q6_k,q8_0,f16");
}

std::vector<Format> lowbit_ladder() {
  return parse_format_list(
      "int2_g32,int3_g64,int3_g32,nf4,iq4_nl,int4_g32,int5_g64,int5_g32,int6_g32,int8_g32,f16");
}

std::vector<Format> all_ladders() {
  std::vector<Format> out = gguf_ladder();
  for (const Format& f : lowbit_ladder()) {
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  return out;
}

std::vector<Format> parse_format_list(const std::string& list) {
  std::vector<Format> out;
  auto add = [&](const Format& f) {
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  };
  std::stringstream ss(list);
  std::string name;
  while (std::getline(ss, name, ',')) {
    if (name.empty()) continue;
    if (name == "gguf" || name == "lowbit" || name == "all") {
      for (const Format& f : name == "gguf"     ? gguf_ladder()
                             : name == "lowbit" ? lowbit_ladder()
                                                : all_ladders())
        add(f);
      continue;
    }
    const std::optional<Format> f = Format::find(name);
    if (!f || f->info().activation_only) {
      throw Error("unknown or activation-only format",
                  {.field = "--formats",
                   .expected = "weight formats (lowbit formats) or gguf, lowbit, all; "
                               "comma-separated",
                   .found = name});
    }
    add(*f);
  }
  if (out.empty()) throw Error("no candidate formats", {.field = "--formats", .found = list});
  return out;
}

Chunks calibration_chunks(const Model& m, const std::string& file, int64_t ctx, int64_t tokens) {
  std::ifstream f(file, std::ios::binary);
  if (!f) throw Error("cannot open the calibration text", {.file = file, .field = "--calib"});
  std::stringstream ss;
  ss << f.rdbuf();
  const int64_t chunks = std::max<int64_t>(1, tokens / ctx);
  return chunk_text(m, ss.str(), {.ctx = ctx, .chunks = chunks});
}

double spearman(const std::vector<double>& a, const std::vector<double>& b) {
  LOWBIT_CHECK(a.size() == b.size(), "spearman: sizes differ");
  if (a.size() < 2) return NAN;
  auto ranks = [](const std::vector<double>& v) {
    std::vector<size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), size_t(0));
    std::sort(idx.begin(), idx.end(), [&](size_t x, size_t y) { return v[x] < v[y]; });
    std::vector<double> r(v.size());
    for (size_t i = 0; i < idx.size();) {
      size_t j = i;
      while (j + 1 < idx.size() && v[idx[j + 1]] == v[idx[i]]) ++j;
      for (size_t k = i; k <= j; ++k) r[idx[k]] = 0.5 * double(i + j);  // average rank of ties
      i = j + 1;
    }
    return r;
  };
  const std::vector<double> ra = ranks(a), rb = ranks(b);
  const double ma = std::accumulate(ra.begin(), ra.end(), 0.0) / double(ra.size());
  const double mb = std::accumulate(rb.begin(), rb.end(), 0.0) / double(rb.size());
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < ra.size(); ++i) {
    sab += (ra[i] - ma) * (rb[i] - mb), saa += (ra[i] - ma) * (ra[i] - ma);
    sbb += (rb[i] - mb) * (rb[i] - mb);
  }
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

namespace {

// Methods whose RTN-style fits end in the weighting search (the measurement's variants of AWQ
// leave out the scales and the clipping, as before).
bool searches(Method m) {
  return m == Method::kImatrix || m == Method::kAwq;
}

Method measured_as(Method m) {
  if (m == Method::kRtn) return Method::kRtn;
  if (m == Method::kGptq || m == Method::kAwqGptq) return Method::kGptq;
  return Method::kImatrix;
}

// The candidates for one tensor: each through fallback_for, duplicates merged, by bytes.
std::vector<SensitivityEntry> variants_of(const ModelTensor& t, const SensitivityOptions& o) {
  std::vector<SensitivityEntry> v;
  const int64_t K = t.row_length();
  for (const Format& want : o.formats) {
    const Format f = fallback_for(want, K, o.fallback);
    auto it = std::find_if(v.begin(), v.end(), [&](const auto& e) { return e.format == f; });
    if (it == v.end()) {
      v.push_back({f, {}, f.row_bytes(K) * uint64_t(t.rows())});
      it = v.end() - 1;
    }
    it->requested.push_back(want.name());
  }
  std::stable_sort(v.begin(), v.end(),
                   [](const auto& a, const auto& b) { return a.bytes < b.bytes; });
  return v;
}

// Σ_rows Δw H Δwᵀ / tokens for ΔW (R, K), H (K, K) = Σ x xᵀ; at most 512 rows, evenly spaced,
// estimate it (scaled back to R rows).
double output_error(const std::vector<float>& dW, int64_t R, int64_t K, const std::vector<float>& H,
                    double tokens) {
  const int64_t step = std::max<int64_t>(1, R / 512), Rs = (R + step - 1) / step;
  std::vector<float> D(static_cast<size_t>(Rs * K));
  for (int64_t r = 0; r < Rs; ++r) {
    std::copy_n(&dW[size_t(r * step * K)], K, &D[size_t(r * K)]);
  }
  const double e = lowbit::output_error(D.data(), Rs, K, H.data());
  return std::max(0.0, e) * double(R) / double(Rs) / std::max(tokens, 1.0);
}

// The measurement state: the model under test is a copy of the original whose one tensor is
// swapped for a quantized variant at a time; one engine runs it (it reads tensors by pointer).
class Measurer {
 public:
  Measurer(const Model& base, const Chunks& c, const SensitivityOptions& o)
      : base_(base),
        w_(base),
        c_(c),
        o_(o),
        n_(int64_t(c.tokens.at(0).size())),
        C_(base.config.n_embd),
        V_(base.config.n_vocab),
        S_(c.scored_per_chunk()),
        e_(w_, n_, n_) {
    // put() swaps candidate bytes in and out of the model under test, and a candidate's buffer
    // may reuse an address: no prepared copies that could go stale.
    e_.set_repack(false);
    logits_.resize(size_t(n_ * V_));
  }

  // The embeddings of every chunk, (n, C) each.
  std::vector<std::vector<float>> embed_all() {
    std::vector<std::vector<float>> X;
    for (const auto& ch : c_.tokens) {
      X.emplace_back(size_t(n_ * C_));
      e_.embed(ch.data(), n_, X.back().data());
    }
    return X;
  }

  // The original's log-probabilities at the scored positions: (chunks, S, V).
  void base_pass() {
    base_logp_.clear();
    for (auto& x : embed_all()) {
      e_.run_layers(x.data(), n_, 0, 0, w_.config.n_layer);
      e_.head(&x[size_t(c_.first * C_)], S_, logits_.data());
      for (int64_t j = 0; j < S_; ++j) {
        const float* y = &logits_[size_t(j * V_)];
        const double lse = log_sum_exp(y);
        for (int64_t v = 0; v < V_; ++v) base_logp_.push_back(float(double(y[v]) - lse));
      }
    }
  }

  // Mean KL(original || model under test) per scored position, running layers [begin, n_layer)
  // and the head from X (the inputs of layer `begin`), or from a fresh embedding when X is null.
  double kld(const std::vector<std::vector<float>>* X, int64_t begin) {
    double sum = 0;
    std::vector<float> x(size_t(n_ * C_));
    for (size_t i = 0; i < c_.tokens.size(); ++i) {
      if (X) {
        x = (*X)[i];
      } else {
        e_.embed(c_.tokens[i].data(), n_, x.data());
      }
      if (begin < w_.config.n_layer) e_.run_layers(x.data(), n_, 0, begin, w_.config.n_layer);
      e_.head(&x[size_t(c_.first * C_)], S_, logits_.data());
      for (int64_t j = 0; j < S_; ++j) {
        const float* y = &logits_[size_t(j * V_)];
        const float* p = &base_logp_[(i * size_t(S_) + size_t(j)) * size_t(V_)];
        const double lse = log_sum_exp(y);
        double kl = 0;
        for (int64_t v = 0; v < V_; ++v) kl += std::exp(double(p[v])) * (p[v] - (y[v] - lse));
        sum += std::max(0.0, kl);
      }
    }
    return sum / double(c_.tokens.size() * size_t(S_));
  }

  // Quantizes tensor `name` (W (R, K)) into f as the method does; returns the bytes.
  std::vector<uint8_t> quantize(const std::string& name, const std::vector<float>& W,
                                const Format& f, const InputStats* st) const {
    const ModelTensor& t = *base_.find(name);
    const int64_t R = t.rows(), K = t.row_length();
    std::vector<uint8_t> out(f.row_bytes(K) * uint64_t(R));
    Method how = st ? measured_as(o_.method) : Method::kRtn;
    if (how == Method::kGptq && input_group_of(name, base_) == std::string("output.weight")) {
      how = Method::kImatrix;  // the head takes imatrix RTN in every method
    }
    if (how == Method::kGptq && !st->xtx.empty()) {
      std::vector<float> Wc = W;
      gptq_quantize(f, Wc.data(), R, K, st->xtx.data(), o_.gptq, out.data());
    } else if (how == Method::kImatrix && searches(o_.method) && !st->xtx.empty()) {
      const std::vector<float> imp = st->importance();  // as imatrix and AWQ: the search
      weighting_quantize(f, W.data(), R, K, st->xtx.data(), imp.data(), out.data());
    } else {
      const std::vector<float> imp =
          how == Method::kImatrix ? st->importance() : std::vector<float>{};
      f.quantize(W.data(), R, K, imp.empty() ? nullptr : imp.data(), out.data());
    }
    return out;
  }

  // Puts `bytes` (format f) in place of tensor `name` in the model under test (the bytes must
  // outlive the swap); restore() undoes every swap since the last restore.
  void swap_in(const std::string& name, const Format& f, const std::vector<uint8_t>& bytes) {
    ModelTensor& t = mutable_tensor(name);
    saved_.push_back(t);
    t.format = f, t.data = bytes.data(), t.bytes = bytes.size(), t.mapped = false;
  }
  void restore() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) mutable_tensor(it->name) = *it;
    saved_.clear();
  }

  void set_observer(InputObserver ob) { e_.set_observer(std::move(ob)); }
  void run_layer(std::vector<float>& x, int64_t L) { e_.run_layers(x.data(), n_, 0, L, L + 1); }
  void head_all(const std::vector<float>& x) { e_.head(x.data(), n_, logits_.data()); }

 private:
  double log_sum_exp(const float* y) const {
    const float mx = *std::max_element(y, y + V_);
    double s = 0;
    for (int64_t v = 0; v < V_; ++v) s += std::exp(double(y[v] - mx));
    return double(mx) + std::log(s);
  }
  ModelTensor& mutable_tensor(const std::string& name) {
    for (auto& t : w_.tensors) {
      if (t.name == name) return t;
    }
    LOWBIT_CHECK(false, "Measurer: tensor not found");
    return w_.tensors.front();
  }

  const Model& base_;
  Model w_;
  const Chunks& c_;
  const SensitivityOptions& o_;
  int64_t n_, C_, V_, S_;
  LlamaEngine e_;
  std::vector<float> base_logp_, logits_;
  std::vector<ModelTensor> saved_;
};

std::vector<float> floats_of(const ModelTensor& t) {
  std::vector<float> v(size_t(t.rows() * t.row_length()));
  t.format.dequantize(t.data, t.rows(), t.row_length(), v.data());
  return v;
}

std::vector<float> to_float(const std::vector<double>& v) {
  return {v.begin(), v.end()};
}

// The entry whose bits per weight are nearest 4: metric kProxy's one KLD measurement.
size_t reference_entry(const std::vector<SensitivityEntry>& es, int64_t params) {
  size_t best = 0;
  for (size_t i = 0; i < es.size(); ++i) {
    const auto d = [&](size_t k) {
      return std::fabs(8.0 * double(es[k].bytes) / double(params) - 4.0);
    };
    if (d(i) < d(best)) best = i;
  }
  return best;
}

struct TensorJob {
  std::string name;
  const InputStats* stats = nullptr;                   // the inputs (nullptr: a lookup table)
  const std::vector<float>* hessian = nullptr;         // (K, K) floats of stats->xtx
  const std::vector<double>* token_counts = nullptr;   // lookup table: rows' use counts
  const std::vector<std::vector<float>>* X = nullptr;  // inputs of layer `begin`, or re-embed
  int64_t begin = 0;
};

// Every variant of one tensor: quantize, proxy, KLD (all, or the reference's for kProxy).
TensorSensitivity measure_tensor(Measurer& me, const Model& m, const TensorJob& j,
                                 const SensitivityOptions& o, const std::function<void()>& tick) {
  const ModelTensor& t = *m.find(j.name);
  const int64_t R = t.rows(), K = t.row_length();
  TensorSensitivity ts{j.name, R, K, variants_of(t, o)};
  const std::vector<float> W = floats_of(t);
  const size_t ref = reference_entry(ts.entries, R * K);
  for (size_t k = 0; k < ts.entries.size(); ++k) {
    SensitivityEntry& e = ts.entries[k];
    const std::vector<uint8_t> q = me.quantize(j.name, W, e.format, j.stats);
    std::vector<float> dW(W.size());
    e.format.dequantize(q.data(), R, K, dW.data());
    for (size_t i = 0; i < dW.size(); ++i) dW[i] -= W[i];
    if (j.hessian) {
      e.proxy = output_error(dW, R, K, *j.hessian, double(j.stats->count));
    } else if (j.token_counts) {
      double s = 0, total = 0;
      for (int64_t r = 0; r < R; ++r) {
        double row = 0;
        for (int64_t c = 0; c < K; ++c)
          row += double(dW[size_t(r * K + c)]) * dW[size_t(r * K + c)];
        s += (*j.token_counts)[size_t(r)] * row, total += (*j.token_counts)[size_t(r)];
      }
      e.proxy = s / std::max(total, 1.0);
    }
    if (o.metric == SensitivityMetric::kKld || k == ref) {
      me.swap_in(j.name, e.format, q);
      e.kld = me.kld(j.X, j.begin);
      me.restore();
    }
    if (tick) tick();
  }
  const SensitivityEntry& r = ts.entries[ref];
  const double scale = r.proxy > 0 ? r.kld / r.proxy : 0.0;
  for (auto& e : ts.entries) {
    e.cost = o.metric == SensitivityMetric::kKld ? std::max(0.0, e.kld) : e.proxy * scale;
  }
  return ts;
}

bool in_layer(const std::string& name, int64_t L) {
  return name.rfind("blk." + std::to_string(L) + ".", 0) == 0;
}

using Activations = std::vector<std::vector<float>>;  // per chunk (n, C)

// The statistics of layer L's inputs (Hessians mirrored, when asked), running the model under
// test's layer L over X in place.
Calibration layer_stats(Measurer& me, Activations& X, int64_t L, bool hessian) {
  Calibration cal;
  me.set_observer([&](int64_t layer, LinearInput which, const float* x, int64_t rows, int64_t K) {
    if (layer == L) cal[input_group(layer, which)].add(x, rows, K, hessian);
  });
  for (auto& x : X) me.run_layer(x, L);
  me.set_observer({});
  for (auto& [g, st] : cal) st.mirror_hessian();
  return cal;
}

// The statistics of the head's inputs (the final norm of the last layer's outputs X).
InputStats head_stats(Measurer& me, const Activations& X, bool hessian) {
  InputStats head;
  me.set_observer([&](int64_t, LinearInput which, const float* x, int64_t rows, int64_t K) {
    if (which == LinearInput::kOutput) head.add(x, rows, K, hessian);
  });
  for (const auto& x : X) me.head_all(x);
  me.set_observer({});
  head.mirror_hessian();
  return head;
}

// Layer by layer: the statistics of layer L's inputs (through the original model), every variant
// of its matrices, then the activations moved on to layer L + 1. Leaves X at the last layer's
// outputs.
void measure_layers(Measurer& me, const Model& m, const SensitivityOptions& o, Activations& X,
                    Sensitivity& s, const std::function<void()>& tick) {
  for (int64_t L = 0; L < m.config.n_layer; ++L) {
    Activations next = X;
    Calibration cal = layer_stats(me, next, L, true);
    std::map<std::string, std::vector<float>> H;
    for (auto& [g, st] : cal) H[g] = to_float(st.xtx);
    for (const auto& t : m.tensors) {
      if (t.shape.size() < 2 || !in_layer(t.name, L)) continue;
      TensorJob j{t.name, nullptr, nullptr, nullptr, &X, L};
      if (const auto g = input_group_of(t.name, m); g && cal.count(*g)) {
        j.stats = &cal.at(*g), j.hessian = &H.at(*g);
      }
      s.tensors.push_back(measure_tensor(me, m, j, o, tick));
    }
    X = std::move(next);
  }
}

// The head's inputs (the final norm of the last layer's outputs X); then the head, and the
// embedding (a variant of it changes every layer's input: full runs).
void measure_outside_layers(Measurer& me, const Model& m, const Chunks& c,
                            const SensitivityOptions& o, const Activations& X, Sensitivity& s,
                            const std::function<void()>& tick) {
  const InputStats head = head_stats(me, X, true);
  const std::vector<float> head_h = to_float(head.xtx);
  std::vector<double> counts(size_t(m.config.n_vocab), 0.0);
  for (const auto& ch : c.tokens) {
    for (const int32_t tok : ch) counts[size_t(tok)] += 1;
  }
  for (const auto& t : m.tensors) {
    if (t.shape.size() < 2 || t.name.rfind("blk.", 0) == 0) continue;
    const bool is_head = input_group_of(t.name, m) == std::string("output.weight");
    const bool is_embd = t.name == "token_embd.weight";
    TensorJob j{t.name,
                is_head ? &head : nullptr,
                is_head ? &head_h : nullptr,
                is_head || !is_embd ? nullptr : &counts,  // unknown role: no proxy
                is_embd ? nullptr : &X,
                is_embd ? 0 : m.config.n_layer};
    s.tensors.push_back(measure_tensor(me, m, j, o, tick));
  }
}

// Rank correlations of the proxy (raw, and scaled per tensor as metric kProxy scales it) with
// the measured KLD, over every entry whose KLD was measured.
void validate_proxy(Sensitivity& s) {
  std::vector<double> kld, proxy, scaled;
  for (const auto& ts : s.tensors) {
    const SensitivityEntry& r = ts.entries[reference_entry(ts.entries, ts.rows * ts.K)];
    for (const auto& e : ts.entries) {
      if (std::isnan(e.kld)) continue;
      kld.push_back(e.kld), proxy.push_back(e.proxy);
      scaled.push_back(r.proxy > 0 ? e.proxy * r.kld / r.proxy : 0.0);
    }
  }
  s.spearman_proxy = spearman(proxy, kld), s.spearman_scaled = spearman(scaled, kld);
}

}  // namespace

Sensitivity measure_sensitivity(const Model& m, const Chunks& c, const SensitivityOptions& opts,
                                const SensitivityProgress& progress) {
  if (c.tokens.empty()) throw Error("sensitivity needs calibration text", {.field = "--calib"});
  const auto t0 = std::chrono::steady_clock::now();
  SensitivityOptions o = opts;
  if (o.formats.empty()) o.formats = default_ladder();
  int64_t total = 0, done = 0;
  for (const auto& t : m.tensors) {
    if (t.shape.size() >= 2) total += int64_t(variants_of(t, o).size());
  }
  auto tick = [&] {
    if (progress) progress(++done, total);
  };
  Measurer me(m, c, o);
  me.base_pass();
  Sensitivity s;
  Activations X = me.embed_all();
  measure_layers(me, m, o, X, s, tick);
  measure_outside_layers(me, m, c, o, X, s, tick);
  if (o.metric == SensitivityMetric::kKld) validate_proxy(s);
  s.method = method_name(measured_as(o.method));
  s.metric = o.metric == SensitivityMetric::kKld ? "kld" : "proxy";
  s.chunks = int64_t(c.tokens.size()), s.ctx = int64_t(c.tokens[0].size());
  s.params = int64_t(m.parameter_count());
  for (const auto& f : o.formats) s.formats.push_back(f.name());
  s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

std::vector<double> assignment_klds(const Model& m, const Chunks& c,
                                    const std::vector<std::map<std::string, Format>>& assignments,
                                    const SensitivityOptions& o) {
  if (c.tokens.empty()) throw Error("the check needs calibration text", {.field = "--calib"});
  for (const auto& as : assignments) {
    for (const auto& [name, f] : as) {
      const ModelTensor* t = m.find(name);
      LOWBIT_CHECK(t && t->shape.size() >= 2 && f.can_tile(t->row_length()),
                   "assignment_klds: a tensor the model lacks or a format that does not tile");
    }
  }
  const bool hessian = measured_as(o.method) == Method::kGptq || searches(o.method);
  Measurer me(m, c, o);
  me.base_pass();
  // Quantized variants, shared by the assignments that name the same (tensor, format).
  std::map<std::pair<std::string, std::string>, std::vector<uint8_t>> made;
  auto swap_in = [&](const std::string& name, const Format& f, const InputStats* st) {
    auto key = std::make_pair(name, f.name());
    auto it = made.find(key);
    if (it == made.end())
      it = made.emplace(key, me.quantize(name, floats_of(*m.find(name)), f, st)).first;
    me.swap_in(name, f, it->second);
  };
  // The head's input statistics (from the original's last layer), which the head and a tied
  // embedding are quantized with; a tied embedding is needed before the first layer.
  InputStats head;
  const int64_t n_layer = m.config.n_layer;
  const bool tied = m.config.tied_output;
  if (tied) {
    Activations P = me.embed_all();
    for (int64_t L = 0; L < n_layer; ++L) {
      for (auto& x : P) me.run_layer(x, L);
    }
    head = head_stats(me, P, hessian);
  }
  auto stats_outside = [&](const std::string& name) -> const InputStats* {
    return input_group_of(name, m) == std::string("output.weight") ? &head : nullptr;
  };
  const size_t A = assignments.size();
  std::vector<Activations> Xq(A);
  for (size_t a = 0; a < A; ++a) {
    const auto it = assignments[a].find("token_embd.weight");
    if (it != assignments[a].end()) swap_in(it->first, it->second, stats_outside(it->first));
    Xq[a] = me.embed_all();
    me.restore();
  }
  Activations X = me.embed_all();  // the original's, for each layer's input statistics
  for (int64_t L = 0; L < n_layer; ++L) {
    const Calibration cal = layer_stats(me, X, L, hessian);
    for (size_t a = 0; a < A; ++a) {
      for (const auto& [name, f] : assignments[a]) {
        if (!in_layer(name, L)) continue;
        const auto g = input_group_of(name, m);
        swap_in(name, f, g && cal.count(*g) ? &cal.at(*g) : nullptr);
      }
      for (auto& x : Xq[a]) me.run_layer(x, L);
      me.restore();
    }
    std::erase_if(made, [&](const auto& e) { return in_layer(e.first.first, L); });
  }
  if (!tied) head = head_stats(me, X, hessian);
  std::vector<double> kld(A);
  for (size_t a = 0; a < A; ++a) {
    for (const auto& [name, f] : assignments[a]) {
      if (name.rfind("blk.", 0) == 0) continue;
      if (name == "token_embd.weight" && !tied) continue;  // used only at the embedding
      swap_in(name, f, stats_outside(name));
    }
    kld[a] = me.kld(&Xq[a], n_layer);
    me.restore();
  }
  return kld;
}

// ---- Files ----

namespace {
Json number_or_null(double v) {
  return std::isfinite(v) ? Json(v) : Json(nullptr);
}
double number_or_nan(const Json& j, const char* key) {
  return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
}
}  // namespace

void Sensitivity::save(const std::string& path) const {
  Json j = {{"lowbit_sensitivity", 1},
            {"command", command},
            {"model", model},
            {"calib", calib},
            {"method", method},
            {"metric", metric},
            {"chunks", chunks},
            {"ctx", ctx},
            {"parameters", params},
            {"formats", formats},
            {"spearman_proxy_kld", number_or_null(spearman_proxy)},
            {"spearman_scaled_proxy_kld", number_or_null(spearman_scaled)},
            {"seconds", seconds},
            {"tensors", Json::array()}};
  for (const auto& t : tensors) {
    Json jt = {{"name", t.name}, {"rows", t.rows}, {"K", t.K}, {"entries", Json::array()}};
    for (const auto& e : t.entries) {
      jt["entries"].push_back({{"format", e.format.name()},
                               {"requested", e.requested},
                               {"bytes", e.bytes},
                               {"kld", number_or_null(e.kld)},
                               {"proxy", e.proxy},
                               {"cost", e.cost}});
    }
    j["tensors"].push_back(jt);
  }
  const std::string text = j.dump(1) + "\n";
  OutputFile out(path);
  out.write(text.data(), text.size());
  out.commit();
}

Sensitivity Sensitivity::load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open the sensitivity file", {.file = path, .field = "--sensitivity"});
  Sensitivity s;
  try {
    const Json j = Json::parse(f);
    if (!j.is_object() || !j.contains("lowbit_sensitivity")) {
      throw Error("not a lowbit sensitivity file",
                  {.file = path, .expected = "the output of lowbit sensitivity"});
    }
    s.model = j.value("model", ""), s.calib = j.value("calib", "");
    s.method = j.value("method", ""), s.metric = j.value("metric", "");
    s.chunks = j.value("chunks", int64_t(0)), s.ctx = j.value("ctx", int64_t(0));
    s.params = j.value("parameters", int64_t(0));
    s.formats = j.value("formats", std::vector<std::string>{});
    s.spearman_proxy = number_or_nan(j, "spearman_proxy_kld");
    s.spearman_scaled = number_or_nan(j, "spearman_scaled_proxy_kld");
    s.seconds = j.value("seconds", 0.0);
    for (const auto& jt : j.at("tensors")) {
      TensorSensitivity t{jt.at("name").get<std::string>(),
                          jt.at("rows").get<int64_t>(),
                          jt.at("K").get<int64_t>(),
                          {}};
      for (const auto& je : jt.at("entries")) {
        const std::string fmt = je.at("format").get<std::string>();
        const std::optional<Format> fo = Format::find(fmt);
        if (!fo) {
          throw Error("unknown format in the sensitivity file",
                      {.file = path, .field = t.name, .found = fmt});
        }
        SensitivityEntry e{*fo,
                           je.value("requested", std::vector<std::string>{}),
                           je.at("bytes").get<uint64_t>(),
                           number_or_nan(je, "kld"),
                           je.value("proxy", 0.0),
                           je.at("cost").get<double>()};
        if (!std::isfinite(e.cost) || e.cost < 0) {
          throw Error("bad cost in the sensitivity file", {.file = path,
                                                           .field = t.name,
                                                           .expected = "a finite number >= 0",
                                                           .found = std::to_string(e.cost)});
        }
        t.entries.push_back(e);
      }
      s.tensors.push_back(std::move(t));
    }
  } catch (const Json::exception& e) {
    throw Error("malformed sensitivity file", {.file = path, .found = e.what()});
  }
  return s;
}

std::vector<TensorCandidates> candidates_of(const Sensitivity& s, const Model& m,
                                            const std::string& path,
                                            const std::vector<Format>& formats, FallbackPolicy fb) {
  std::map<std::string, const TensorSensitivity*> by;
  for (const auto& t : s.tensors) by[t.name] = &t;
  std::vector<TensorCandidates> out;
  for (const ModelTensor& t : m.tensors) {
    if (t.shape.size() < 2) continue;
    const auto it = by.find(t.name);
    if (it == by.end() || it->second->rows != t.rows() || it->second->K != t.row_length()) {
      throw Error("the sensitivity file does not match the model",
                  {.file = path,
                   .field = t.name,
                   .expected = std::to_string(t.rows()) + " x " + std::to_string(t.row_length()),
                   .found = it == by.end() ? "no entry"
                                           : std::to_string(it->second->rows) + " x " +
                                                 std::to_string(it->second->K)});
    }
    const auto& entries = it->second->entries;
    for (const auto& e : entries) {
      if (!e.format.can_tile(t.row_length())) {
        throw Error("a measured format cannot store this tensor",
                    {.file = path, .field = t.name, .found = e.format.name()});
      }
    }
    TensorCandidates tc{t.name, t.rows() * t.row_length(), {}};
    for (const Format& want : formats) {
      const Format f = fallback_for(want, t.row_length(), fb);
      if (std::any_of(tc.options.begin(), tc.options.end(),
                      [&](const Candidate& c) { return c.format == f; }))
        continue;
      const auto e = std::find_if(entries.begin(), entries.end(),
                                  [&](const SensitivityEntry& x) { return x.format == f; });
      if (e == entries.end()) {
        std::string measured;
        for (const auto& x : s.formats) measured += (measured.empty() ? "" : ",") + x;
        throw Error("the sensitivity file did not measure a candidate format",
                    {.file = path,
                     .field = t.name,
                     .expected = f.name() + (f == want ? "" : " (for " + want.name() + ")") +
                                 ": measure with --formats all, or plan over what it measured "
                                 "with --formats " +
                                 measured,
                     .found = "not measured"});
      }
      tc.options.push_back({f, f.row_bytes(t.row_length()) * uint64_t(t.rows()), e->cost});
    }
    std::stable_sort(tc.options.begin(), tc.options.end(),
                     [](const Candidate& a, const Candidate& b) { return a.bytes < b.bytes; });
    out.push_back(std::move(tc));
  }
  if (by.size() != out.size()) {
    throw Error("the sensitivity file names tensors the model does not have",
                {.file = path,
                 .expected = std::to_string(out.size()) + " weight matrices",
                 .found = std::to_string(by.size())});
  }
  return out;
}

}  // namespace lowbit
