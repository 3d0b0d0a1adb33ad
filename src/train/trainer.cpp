// Trainer (trainer.h): windows drawn by a counter-based RNG (window q of the run depends only on
// the seed and q, so a resumed run draws what the uninterrupted one would), gradient accumulation,
// clipping, the schedule, validation and checkpoints.
#include "train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "format/formats.h"
#include "kernel/matmul.h"
#include "lowbit/error.h"
#include "lowbit/half.h"
#include "lowbit/output_file.h"
#include "lowbit/rng.h"
#include "lowbit/threads.h"
#include "quant/blas_threads.h"

namespace lowbit::train {

using nlohmann::json;

namespace {

constexpr char kMagic[8] = {'L', 'B', 'T', 'R', 'A', 'I', 'N', '\x01'};

const char* schedule_name(ScheduleKind k) {
  return k == ScheduleKind::kCosine ? "cosine" : k == ScheduleKind::kLinear ? "linear" : "constant";
}

json config_json(const TrainConfig& c) {
  return {{"steps", c.steps},
          {"batch", c.batch},
          {"ctx", c.ctx},
          {"grad_accum", c.grad_accum},
          {"warmup", c.warmup},
          {"lr", c.lr},
          {"clip", c.clip},
          {"optimizer", c.optimizer.kind == OptimizerKind::kAdamW ? "adamw" : "sgd"},
          {"beta1", c.optimizer.beta1},
          {"beta2", c.optimizer.beta2},
          {"eps", c.optimizer.eps},
          {"weight_decay", c.optimizer.weight_decay},
          {"schedule", schedule_name(c.schedule)},
          {"seed", c.seed},
          {"eval_every", c.eval_every},
          {"val_windows", c.val_windows},
          {"vocab_slice", c.vocab_slice},
          {"recompute", c.recompute},
          {"replicas", c.replicas},
          {"lora_rank", c.lora.rank},
          {"lora_alpha", c.lora.alpha},
          {"lora_dropout", c.lora.dropout},
          {"lora_targets", lora_targets_name(c.lora.targets)}};
}

json tensors_json(const ParamLayout& l) {
  json t = json::array();
  for (const ParamInfo& p : l.params) t.push_back({p.name, p.shape});
  return t;
}

}  // namespace

TrainData make_train_data(const Tokenizer& tok, const std::vector<NamedText>& texts,
                          const std::optional<NamedText>& val, double val_split, int64_t ctx) {
  if (texts.empty())
    throw Error("no training text", {.field = "-f", .expected = "at least one file"});
  if (val_split < 0 || val_split >= 1) {
    throw Error(
        "validation split out of range",
        {.field = "--val-split", .expected = "0 <= x < 1", .found = std::to_string(val_split)});
  }
  TrainData d;
  const TokenizerData& td = tok.data();  // BOS as perplexity uses it (src/eval/perplexity.cpp)
  if (td.bos_id && td.add_bos.value_or(td.model == "llama")) d.bos = int32_t(*td.bos_id);
  // Text tokens per window: ctx inputs and their ctx targets, less the BOS that opens the window.
  const int64_t need = ctx + (d.bos ? 0 : 1);
  for (const NamedText& t : texts) {
    const std::vector<int32_t> ids = tok.encode(t.text, false);
    d.train.insert(d.train.end(), ids.begin(), ids.end());
  }
  if (val) {
    d.val = tok.encode(val->text, false);
    if (int64_t(d.val.size()) < need) {
      throw Error("validation text shorter than one window",
                  {.file = val->file,
                   .field = "--val",
                   .expected = ">= " + std::to_string(need) + " tokens (--ctx)",
                   .found = std::to_string(d.val.size()) + " tokens"});
    }
  } else if (val_split > 0) {
    const auto n = int64_t(double(d.train.size()) * val_split);
    if (n < need) {
      throw Error("validation split shorter than one window",
                  {.field = "--val-split",
                   .expected = ">= " + std::to_string(need) + " tokens (--ctx)",
                   .found = std::to_string(n) + " tokens"});
    }
    d.val.assign(d.train.end() - n, d.train.end());
    d.train.resize(d.train.size() - size_t(n));
  }
  if (int64_t(d.train.size()) < need) {
    throw Error("training text shorter than one window",
                {.file = texts.size() == 1 ? texts[0].file : "",
                 .field = "-f",
                 .expected = ">= " + std::to_string(need) + " tokens (--ctx" +
                             std::string(val_split > 0 && !val ? ", after --val-split)" : ")"),
                 .found = std::to_string(d.train.size()) + " tokens"});
  }
  return d;
}

Trainer::Trainer(const ModelConfig& c, std::vector<double> inv_freq, std::vector<float> w,
                 const TrainConfig& tc, TrainData data, const FrozenBase<float>* base)
    : c_(c),
      tc_(tc),
      data_(std::move(data)),
      model_(c, std::move(inv_freq), tc.vocab_slice, tc.lora),
      w_(std::move(w)),
      opt_(tc.optimizer, model_.layout()) {
  auto positive = [](const char* field, double v) {
    if (!(v > 0)) throw Error("must be positive", {.field = field, .found = std::to_string(v)});
  };
  positive("--steps", double(tc.steps)), positive("--lr", tc.lr),
      positive("--batch", double(tc.batch));
  positive("--ctx", double(tc.ctx)), positive("--grad-accum", double(tc.grad_accum));
  if (tc.warmup < 0)
    throw Error("must not be negative", {.field = "--warmup", .found = std::to_string(tc.warmup)});
  if (int64_t(w_.size()) != model_.layout().total) {
    throw Error("weights do not match the model",
                {.field = "weights",
                 .expected = std::to_string(model_.layout().total),
                 .found = std::to_string(w_.size())});
  }
  if (tc_.replicas < 0)
    throw Error("must not be negative",
                {.field = "--replicas", .found = std::to_string(tc_.replicas)});
  if (tc_.replicas == 0) tc_.replicas = replicas_for(model_.layout().total, tc_.batch);
  if (tc.lora.rank > 0 && base == nullptr)
    throw Error("LoRA training needs the base model", {.field = "-m"});
  g_.assign(w_.size(), 0.0f);
  cur_w_ = w_.data();
  model_.set_recompute(tc.recompute);
  model_.set_base(base);
  for (int64_t r = 1; r < tc_.replicas; ++r) {
    extra_.push_back(model_);  // no activations yet: a copy is its configuration
    extra_g_.emplace_back(w_.size(), 0.0f);
  }
}

// Small models run data-parallel: their products and attention are too small to split, and a
// step of stories260K spent 16% of its time in OpenMP's fork and join (docs/training.md). Each
// further replica costs a gradient buffer of the model's size, so large models split every
// operation instead.
int64_t Trainer::replicas_for(int64_t params, int64_t batch) {
  const int64_t threads = std::min<int64_t>(max_threads(), batch);
  constexpr int64_t kBudget = int64_t(256) << 20;  // bytes of extra gradient buffers
  if (threads <= 1 || (threads - 1) * params * int64_t(sizeof(float)) > kBudget) return 1;
  return threads;
}

void Trainer::set_teacher(std::vector<float> teacher) {
  if (tc_.lora.rank > 0 || int64_t(teacher.size()) != layout().total) {
    throw Error("a teacher needs full training and the model's own layout",
                {.field = "teacher",
                 .expected = std::to_string(layout().total),
                 .found = std::to_string(teacher.size())});
  }
  teacher_.emplace(c_, model_.inv_freq(), tc_.vocab_slice);
  teacher_w_ = std::move(teacher);
}

double Trainer::teacher_probs(const int32_t* in, int64_t S) {
  const int64_t V = c_.n_vocab;
  soft_ = teacher_->logits(teacher_w_.data(), in, S, tc_.ctx);
  std::vector<double> h(size_t(S * tc_.ctx), 0.0);
  parallel_for(S * tc_.ctx, 8, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      float* p = soft_.data() + b * V;
      softmax(p, V);
      double e = 0;
      for (int64_t v = 0; v < V; ++v)
        if (p[v] > 0) e -= double(p[v]) * std::log(double(p[v]));
      h[size_t(b)] = e;
    }
  });
  double entropy = 0;
  for (const double e : h) entropy += e;
  return entropy;
}

double Trainer::loss_of(const int32_t* in, const int32_t* tgt, int64_t S, float* grad, float scale,
                        uint64_t key) {
  const int64_t T = tc_.ctx, R = std::min<int64_t>(tc_.replicas, S), V = c_.n_vocab;
  const uint64_t seeded = tc_.seed * 0x9E3779B97F4A7C15ull;
  // Distillation: cross-entropy against the teacher's probabilities less their entropy = KL.
  const double entropy = teacher_ ? teacher_probs(in, S) : 0.0;
  const float* soft = teacher_ ? soft_.data() : nullptr;
  if (R <= 1) {
    model_.set_dropout_key(seeded + key);
    return (grad ? model_.loss_and_grad(cur_w_, in, tgt, S, T, grad, scale, soft)
                 : model_.loss(cur_w_, in, tgt, S, T, soft)) -
           entropy;
  }
  // Replica r takes windows [S r / R, S (r + 1) / R) on a thread of its own, every operation
  // inside it on that thread alone (no nested regions, one BLAS thread throughout).
  std::vector<double> part(size_t(R), 0.0);
  const SingleBlasThread one_blas_thread;
  parallel_for(R, 1, [&](int64_t r0, int64_t r1) {
    set_threads(1);  // this thread's own setting, for the region's lifetime
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t s0 = S * r / R, s1 = S * (r + 1) / R;
      Transformer<float>& m = r == 0 ? model_ : extra_[size_t(r - 1)];
      m.set_dropout_key(seeded + key + uint64_t(s0));
      float* g = r == 0 ? grad : extra_g_[size_t(r - 1)].data();
      const float* sr = soft ? soft + s0 * T * V : nullptr;
      part[size_t(r)] =
          grad ? m.loss_and_grad(cur_w_, in + s0 * T, tgt + s0 * T, s1 - s0, T, g, scale, sr)
               : m.loss(cur_w_, in + s0 * T, tgt + s0 * T, s1 - s0, T, sr);
    }
  });
  double loss = -entropy;
  for (double x : part) loss += x;
  return loss;
}

void Trainer::window(int64_t q, int32_t* in, int32_t* tgt) const {
  const std::vector<int32_t>& s = data_.train;
  const int64_t T = tc_.ctx, need = T + (data_.bos ? 0 : 1);
  Rng rng(tc_.seed * 0x100000001B3ull + uint64_t(q));
  const int64_t start = int64_t(rng.next_u64() % uint64_t(int64_t(s.size()) - need + 1));
  cut(s.data() + start, in, tgt);
}

// With BOS: BOS t0 .. t(T-2) predicts t0 .. t(T-1). Without: t0 .. t(T-1) predicts t1 .. tT.
void Trainer::cut(const int32_t* x, int32_t* in, int32_t* tgt) const {
  const int64_t T = tc_.ctx;
  if (data_.bos) {
    in[0] = *data_.bos;
    std::memcpy(in + 1, x, size_t(T - 1) * sizeof(int32_t));
    std::memcpy(tgt, x, size_t(T) * sizeof(int32_t));
  } else {
    std::memcpy(in, x, size_t(T) * sizeof(int32_t));
    std::memcpy(tgt, x + 1, size_t(T) * sizeof(int32_t));
  }
}

void Trainer::run(int64_t until, const std::function<void(const StepLog&)>& on_step) {
  until = std::min(until, tc_.steps);
  const int64_t S = tc_.batch, T = tc_.ctx, per_step = S * tc_.grad_accum;
  const Schedule sched{tc_.schedule, tc_.lr, tc_.warmup, tc_.steps};
  std::vector<int32_t> in(size_t(S * T)), tgt(size_t(S * T));
  const float scale = 1.0f / float(per_step * T);
  while (opt_.steps_taken() < until) {
    const int64_t step = opt_.steps_taken();
    const auto t0 = std::chrono::steady_clock::now();
    std::fill(g_.begin(), g_.end(), 0.0f);
    cur_w_ = fake_.empty() ? w_.data() : refresh_fake();
    double loss = 0;
    for (int64_t a = 0; a < tc_.grad_accum; ++a) {
      for (int64_t b = 0; b < S; ++b)
        window(step * per_step + a * S + b, in.data() + b * T, tgt.data() + b * T);
      loss +=
          loss_of(in.data(), tgt.data(), S, g_.data(), scale, uint64_t(step * per_step + a * S));
    }
    // The replicas' gradients join the first's, in replica order.
    if (!extra_g_.empty()) {
      parallel_for(int64_t(g_.size()), int64_t(1) << 14, [&](int64_t i0, int64_t i1) {
        for (std::vector<float>& e : extra_g_) {
          for (int64_t i = i0; i < i1; ++i) g_[size_t(i)] += e[size_t(i)];
          std::fill(e.begin() + i0, e.begin() + i1, 0.0f);
        }
      });
    }
    loss /= double(per_step * T);
    if (!ls_.empty()) learned_scale_step(g_.data(), sched.at(step), step);
    if (!fake_.empty()) mask_clipped(g_.data());  // straight through, but not past the range
    const double norm = clip_grad_norm(g_.data(), int64_t(g_.size()), tc_.clip);
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      throw Error(
          "training diverged: the loss or the gradient is not finite",
          {.field = "step " + std::to_string(step + 1),
           .found = "loss " + std::to_string(loss) + ", gradient norm " + std::to_string(norm)});
    }
    const double lr = sched.at(step);
    opt_.step(w_.data(), g_.data(), lr);
    StepLog log{step + 1, loss, lr, norm, 0, std::nullopt};
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log.tokens_per_second = sec > 0 ? double(per_step * T) / sec : 0;
    if ((tc_.eval_every > 0 && log.step % tc_.eval_every == 0) || log.step == tc_.steps)
      log.val_loss = validation_loss();
    if (on_step) on_step(log);
  }
}

void Trainer::set_fake_quant(std::vector<std::optional<Format>> formats) {
  const std::vector<ParamInfo>& ps = layout().params;
  if (formats.size() != ps.size()) {
    throw Error("one format (or none) per tensor", {.field = "fake quantization",
                                                    .expected = std::to_string(ps.size()),
                                                    .found = std::to_string(formats.size())});
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    if (formats[i] && (ps[i].shape.size() != 2 || !formats[i]->can_tile(ps[i].shape[1]))) {
      throw Error("format cannot hold this tensor's rows",
                  {.field = ps[i].name, .found = std::string(formats[i]->name())});
    }
  }
  fake_ = std::move(formats);
  bool any = false;
  for (const auto& f : fake_) any = any || f.has_value();
  if (!any) fake_.clear();
}

void Trainer::set_act_bits(int bits) {
  if (bits != 0 && (bits < 2 || bits > 16)) {
    throw Error(
        "activation bits out of range",
        {.field = "--qat-act-bits", .expected = "0 (off) or 2..16", .found = std::to_string(bits)});
  }
  model_.set_act_bits(bits);
  for (auto& e : extra_) e.set_act_bits(bits);
}

std::optional<int64_t> learned_scale_offset(const Format& f) {
  using namespace formats;
  const std::string_view n = f.info().name;
  // The grouped families (int2..int8, tern): {fp16 scale, [u8 zero], codes}; without a zero.
  if (f.grouped()) return n.ends_with("_asym") ? std::nullopt : std::optional<int64_t>(0);
  if (n == Q4_0::kTraits.name || n == Q8_0::kTraits.name) return 0;  // {fp16 d; qs}
  if (n == Q5_0::kTraits.name) return int64_t(offsetof(Q5_0::Block, d));
  if (n == TQ2_0::kTraits.name) return int64_t(offsetof(TQ2_0::Block, d));
  if (n == TQ1_0::kTraits.name) return int64_t(offsetof(TQ1_0::Block, d));
  return std::nullopt;
}

void Trainer::set_learned_scales(bool on) {
  const std::vector<ParamInfo>& ps = layout().params;
  ls_at_.assign(ps.size(), -1), ls_off_.assign(ps.size(), 0);
  ls_.clear(), ls_ready_ = false;
  if (!on) return;
  int64_t n = 0;
  for (size_t i = 0; i < fake_.size(); ++i) {
    if (!fake_[i]) continue;
    const auto off = learned_scale_offset(*fake_[i]);
    if (!off) continue;
    const int64_t K = ps[i].shape[1], be = fake_[i]->block_elems(K);
    ls_at_[i] = n, ls_off_[i] = *off;
    n += ps[i].shape[0] * ((K + be - 1) / be);
  }
  ls_.assign(size_t(n), 0.0f), ls_m_.assign(size_t(n), 0.0f), ls_v_.assign(size_t(n), 0.0f);
  ls_g_.assign(size_t(n), 0.0f);
}

const float* Trainer::refresh_fake() {
  wq_ = w_;
  const std::vector<ParamInfo>& ps = layout().params;
  qbytes_.resize(ps.size());
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!fake_[i]) continue;
    const Format& f = *fake_[i];
    const FormatInfo& info = f.info();
    const int64_t rows = ps[i].shape[0], K = ps[i].shape[1], be = f.block_elems(K);
    const int64_t nb = (K + be - 1) / be;
    const uint64_t rb = f.row_bytes(K);
    const bool learned = !ls_at_.empty() && ls_at_[i] >= 0;
    qbytes_[i].resize(rb * uint64_t(rows));
    parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t at = ps[i].offset + r * K;
        uint8_t* q = qbytes_[i].data() + uint64_t(r) * rb;
        if (!learned) {
          f.quantize_row(w_.data() + at, K, nullptr, q);
        } else {  // the format's own fit lays the block out; the learned scale replaces its d
          uint8_t* blk = q;
          for (int64_t b = 0; b < nb; ++b) {
            const float* x = w_.data() + at + b * be;
            const int64_t n = std::min(be, K - b * be);
            info.fit(x, nullptr, n, blk);
            float& sc = ls_[size_t(ls_at_[i] + r * nb + b)];
            uint16_t h;
            if (!ls_ready_) {
              std::memcpy(&h, blk + ls_off_[i], 2);
              sc = fp16_to_f32(h);
            }
            h = f32_to_fp16(sc);
            std::memcpy(blk + ls_off_[i], &h, 2);
            info.encode(x, n, blk);
            blk += info.block_bytes(n);
          }
        }
        f.dequantize_row(q, K, wq_.data() + at);
      }
    });
  }
  if (!ls_.empty()) ls_ready_ = true;
  return wq_.data();
}

// LSQ: per learned block, with s the scale the forward used (fp16) and q = x̂ / s the code,
// dL/ds = sum g (q - x / s) over the weights that rounded inside the grid, + sum g q over the
// clipped ones (|x / s - q| > 1/2), whose own gradient is zeroed. Then AdamW on log |s| (scales
// of 0.01 moved by steps of lr = 1e-3 would jump by a tenth; on log |s| each step is relative).
void Trainer::learned_scale_step(float* g, double lr, int64_t step) {
  const std::vector<ParamInfo>& ps = layout().params;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (ls_at_[i] < 0) continue;
    const int64_t rows = ps[i].shape[0], K = ps[i].shape[1], be = fake_[i]->block_elems(K);
    const int64_t nb = (K + be - 1) / be;
    parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t b = 0; b < nb; ++b) {
          const size_t si = size_t(ls_at_[i] + r * nb + b);
          const float sc = fp16_to_f32(f32_to_fp16(ls_[si]));
          const int64_t at = ps[i].offset + r * K + b * be, n = std::min(be, K - b * be);
          double gs = 0;
          for (int64_t j = 0; j < n; ++j) {
            const float q = sc != 0 ? wq_[size_t(at + j)] / sc : 0.0f;
            const float v = sc != 0 ? w_[size_t(at + j)] / sc : 0.0f;
            if (std::abs(v - q) > 0.5f + 1e-4f) {
              gs += double(g[at + j]) * q;
              g[at + j] = 0.0f;
            } else {
              gs += double(g[at + j]) * (q - v);
            }
          }
          ls_g_[si] = float(gs * double(sc));  // the gradient of log |s|: AdamW moves log |s|
        }
      }
    });
  }
  const OptimizerConfig& oc = tc_.optimizer;
  const double t = double(step + 1);
  const double c1 = 1.0 - std::pow(oc.beta1, t), c2 = 1.0 - std::pow(oc.beta2, t);
  parallel_for(int64_t(ls_.size()), 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t k = i0; k < i1; ++k) {
      const size_t u = size_t(k);
      const double gk = ls_g_[u];
      ls_m_[u] = float(oc.beta1 * ls_m_[u] + (1 - oc.beta1) * gk);
      ls_v_[u] = float(oc.beta2 * ls_v_[u] + (1 - oc.beta2) * gk * gk);
      const double upd = lr * (ls_m_[u] / c1) / (std::sqrt(ls_v_[u] / c2) + oc.eps);
      // The fits may choose a negative scale (the grid's longer end on the larger magnitude):
      // the sign stays, |s| moves, and never below fp16's smallest normal.
      const float mag = std::max(float(std::abs(ls_[u]) * std::exp(-upd)), 6.1035156e-05f);
      ls_[u] = ls_[u] < 0 ? -mag : mag;
    }
  });
}

const std::vector<float>& Trainer::forward_weights() {
  if (fake_.empty()) return w_;
  refresh_fake();
  return wq_;
}

// A weight is outside its block's range when it lies beyond the smallest or largest value the
// block decodes to: the fit clipped it, and moving it further changes nothing.
void Trainer::mask_clipped(float* g) const {
  const std::vector<ParamInfo>& ps = layout().params;
  for (size_t i = 0; i < ps.size(); ++i) {
    if (!fake_[i] || (!ls_at_.empty() && ls_at_[i] >= 0)) continue;  // learned: LSQ masked them
    const int64_t rows = ps[i].shape[0], K = ps[i].shape[1];
    const int64_t blk = std::max<int64_t>(1, fake_[i]->block_elems(K));
    parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        for (int64_t k0 = 0; k0 < K; k0 += blk) {
          const int64_t at = ps[i].offset + r * K + k0, n = std::min(blk, K - k0);
          const auto [lo, hi] = std::minmax_element(wq_.begin() + at, wq_.begin() + at + n);
          for (int64_t j = 0; j < n; ++j) {
            const float w = w_[size_t(at + j)];
            if (w < *lo || w > *hi) g[at + j] = 0.0f;
          }
        }
      }
    });
  }
}

std::optional<double> Trainer::validation_loss() {
  const std::vector<int32_t>& s = data_.val;
  const int64_t T = tc_.ctx, need = T + (data_.bos ? 0 : 1);
  if (int64_t(s.size()) < need) return std::nullopt;
  const int64_t windows = std::min<int64_t>(tc_.val_windows, (int64_t(s.size()) - need) / T + 1);
  cur_w_ = fake_.empty() ? w_.data() : refresh_fake();  // the weights as they are now
  double sum = 0;
  for (int64_t w0 = 0; w0 < windows; w0 += tc_.batch) {
    const int64_t n = std::min(tc_.batch, windows - w0);
    std::vector<int32_t> in(size_t(n * T)), tgt(size_t(n * T));
    for (int64_t b = 0; b < n; ++b)
      cut(s.data() + (w0 + b) * T, in.data() + b * T, tgt.data() + b * T);
    sum += loss_of(in.data(), tgt.data(), n, nullptr, 0.0f);
  }
  return sum / double(windows * T);
}

// File: the 8-byte magic, a little-endian u64 n, n bytes of JSON (step, config, tensors, extra),
// then the weights, and AdamW's m and v, as f32 arrays of `total` values each.
void Trainer::save_checkpoint(const std::string& path, const std::string& extra) const {
  const bool adam = tc_.optimizer.kind == OptimizerKind::kAdamW;
  const json h = {{"version", 1},
                  {"step", opt_.steps_taken()},
                  {"total", layout().total},
                  {"moments", adam},
                  {"config", config_json(tc_)},
                  {"tensors", tensors_json(layout())},
                  {"extra", json::parse(extra)}};
  const std::string text = h.dump();
  const uint64_t n = text.size();
  std::filesystem::path p(path);
  if (p.has_parent_path()) std::filesystem::create_directories(p.parent_path());
  OutputFile out(path);
  out.write(kMagic, 8), out.write(&n, 8), out.write(text.data(), n);
  const uint64_t bytes = uint64_t(layout().total) * sizeof(float);
  out.write(w_.data(), bytes);
  if (adam) {
    Optimizer& o = const_cast<Optimizer&>(opt_);
    out.write(o.m().data(), bytes), out.write(o.v().data(), bytes);
  }
  out.commit();
}

namespace {

struct RawCheckpoint {
  json header;
  uint64_t data_offset = 0, file_size = 0;
};

RawCheckpoint read_header(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error("cannot open the checkpoint", {.file = path});
  RawCheckpoint r;
  r.file_size = std::filesystem::file_size(path);
  char magic[8] = {};
  uint64_t n = 0;
  f.read(magic, 8);
  if (!f || std::memcmp(magic, kMagic, 8) != 0)
    throw Error("not a lowbit training checkpoint", {.file = path, .field = "magic", .offset = 0});
  f.read(reinterpret_cast<char*>(&n), 8);
  if (!f || n > r.file_size - 16)
    throw Error("checkpoint header length out of range",
                {.file = path,
                 .field = "header length",
                 .offset = 8,
                 .expected = "<= " + std::to_string(r.file_size - 16),
                 .found = std::to_string(n)});
  std::string text(n, '\0');
  f.read(text.data(), std::streamsize(n));
  try {
    r.header = json::parse(text);
  } catch (const json::exception& e) {
    throw Error("checkpoint header is not valid JSON",
                {.file = path, .field = "header", .offset = 16, .found = e.what()});
  }
  r.data_offset = 16 + n;
  return r;
}

}  // namespace

CheckpointInfo read_checkpoint_info(const std::string& path) {
  const RawCheckpoint r = read_header(path);
  try {
    return {r.header.at("step").get<int64_t>(), r.header.at("config").dump(),
            r.header.at("extra").dump()};
  } catch (const json::exception& e) {
    throw Error("checkpoint header lacks a field",
                {.file = path, .field = "header", .offset = 16, .found = e.what()});
  }
}

void Trainer::load_checkpoint(const std::string& path) {
  const RawCheckpoint r = read_header(path);
  const json& h = r.header;
  const bool adam = tc_.optimizer.kind == OptimizerKind::kAdamW;
  try {
    const json mine = tensors_json(layout()), theirs = h.at("tensors");
    if (mine != theirs) {
      // Name the first tensor that differs.
      std::string what = "tensor count " + std::to_string(theirs.size());
      for (size_t i = 0; i < std::min(mine.size(), theirs.size()); ++i) {
        if (mine[i] != theirs[i]) {
          what = theirs[i].dump() + " where this model has " + mine[i].dump();
          break;
        }
      }
      throw Error("checkpoint is for another model",
                  {.file = path,
                   .field = "tensors",
                   .expected = "the model's " + std::to_string(mine.size()) + " tensors",
                   .found = what});
    }
    if (h.at("moments").get<bool>() != adam) {
      throw Error("checkpoint was written by another optimizer",
                  {.file = path,
                   .field = "optimizer",
                   .expected = adam ? "adamw" : "sgd",
                   .found = adam ? "sgd" : "adamw"});
    }
  } catch (const json::exception& e) {
    throw Error("checkpoint header lacks a field",
                {.file = path, .field = "header", .offset = 16, .found = e.what()});
  }
  const uint64_t bytes = uint64_t(layout().total) * sizeof(float);
  const uint64_t want = r.data_offset + bytes * (adam ? 3 : 1);
  if (r.file_size != want) {
    throw Error("checkpoint size does not match its header",
                {.file = path,
                 .field = "file size",
                 .expected = std::to_string(want),
                 .found = std::to_string(r.file_size)});
  }
  std::ifstream f(path, std::ios::binary);
  f.seekg(std::streamoff(r.data_offset));
  f.read(reinterpret_cast<char*>(w_.data()), std::streamsize(bytes));
  if (adam) {
    f.read(reinterpret_cast<char*>(opt_.m().data()), std::streamsize(bytes));
    f.read(reinterpret_cast<char*>(opt_.v().data()), std::streamsize(bytes));
  }
  if (!f)
    throw Error("cannot read the checkpoint's tensors",
                {.file = path, .offset = int64_t(r.data_offset)});
  opt_.set_steps_taken(h.at("step").get<int64_t>());
}

}  // namespace lowbit::train
