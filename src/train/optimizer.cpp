// AdamW (Loshchilov & Hutter: decoupled weight decay; Adam's bias-corrected moments), SGD, the
// warmup + cosine / linear / constant schedule and global-norm clipping (optimizer.h).
#include "train/optimizer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "lowbit/error.h"
#include "lowbit/threads.h"

namespace lowbit::train {

namespace {
constexpr int64_t kChunk = int64_t(1) << 16;  // elements per parallel piece and per partial sum
}

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "adamw") return OptimizerKind::kAdamW;
  if (name == "sgd") return OptimizerKind::kSgd;
  throw Error("unknown optimizer",
              {.field = "--optimizer", .expected = "adamw or sgd", .found = name});
}

ScheduleKind parse_schedule(const std::string& name) {
  if (name == "cosine") return ScheduleKind::kCosine;
  if (name == "linear") return ScheduleKind::kLinear;
  if (name == "constant") return ScheduleKind::kConstant;
  throw Error("unknown schedule",
              {.field = "--schedule", .expected = "cosine, linear or constant", .found = name});
}

// Warmup: lr (s + 1) / warmup for s < warmup. Then, over the remaining steps, with
// f = (s - warmup) / (steps - warmup): cosine lr (1 + cos(pi f)) / 2, linear lr (1 - f),
// constant lr.
double Schedule::at(int64_t s) const {
  if (s < warmup) return lr * double(s + 1) / double(warmup);
  const int64_t span = std::max<int64_t>(1, steps - warmup);
  const double f = std::clamp(double(s - warmup) / double(span), 0.0, 1.0);
  switch (kind) {
    case ScheduleKind::kCosine:
      return lr * 0.5 * (1.0 + std::cos(std::numbers::pi * f));
    case ScheduleKind::kLinear:
      return lr * (1.0 - f);
    case ScheduleKind::kConstant:
      break;
  }
  return lr;
}

Optimizer::Optimizer(const OptimizerConfig& c, const ParamLayout& layout) : c_(c) {
  decay_.assign(size_t(layout.total), 0);
  for (const ParamInfo& p : layout.params) {
    if (p.decay) std::fill_n(decay_.begin() + p.offset, p.size, uint8_t(1));
  }
  if (c.kind == OptimizerKind::kAdamW)
    m_.assign(size_t(layout.total), 0.0f), v_.assign(size_t(layout.total), 0.0f);
}

// AdamW, step t = t_ + 1:  w -= lr wd w (decayed tensors);  m = b1 m + (1 - b1) g;
// v = b2 v + (1 - b2) g^2;  w -= lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
// SGD:  w -= lr (g + wd w) on decayed tensors, lr g elsewhere.
void Optimizer::step(float* w, const float* g, double lr) {
  ++t_;
  const int64_t n = int64_t(decay_.size());
  const double wd = c_.weight_decay;
  if (c_.kind == OptimizerKind::kSgd) {
    parallel_for(n, kChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        w[i] = float(double(w[i]) -
                     lr * (double(g[i]) + (decay_[size_t(i)] ? wd * double(w[i]) : 0.0)));
    });
    return;
  }
  const double b1 = c_.beta1, b2 = c_.beta2, eps = c_.eps;
  const double c1 = 1.0 - std::pow(b1, double(t_)), c2 = 1.0 - std::pow(b2, double(t_));
  parallel_for(n, kChunk, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      double wi = w[i];
      if (decay_[size_t(i)]) wi -= lr * wd * wi;
      const double gi = g[i];
      const double m = b1 * double(m_[size_t(i)]) + (1.0 - b1) * gi;
      const double v = b2 * double(v_[size_t(i)]) + (1.0 - b2) * gi * gi;
      m_[size_t(i)] = float(m), v_[size_t(i)] = float(v);
      w[i] = float(wi - lr * (m / c1) / (std::sqrt(v / c2) + eps));
    }
  });
}

// Partial sums per fixed chunk of kChunk elements, added in chunk order.
double grad_norm(const float* g, int64_t n) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(size_t(chunks), 0.0);
  parallel_for(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      double s = 0;
      for (int64_t i = c * kChunk; i < std::min(n, (c + 1) * kChunk); ++i)
        s += double(g[i]) * double(g[i]);
      part[size_t(c)] = s;
    }
  });
  double s = 0;
  for (const double p : part) s += p;
  return std::sqrt(s);
}

double clip_grad_norm(float* g, int64_t n, double max_norm) {
  const double norm = grad_norm(g, n);
  if (max_norm > 0 && norm > max_norm) {
    const float k = float(max_norm / norm);
    parallel_for(n, kChunk, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) g[i] *= k;
    });
  }
  return norm;
}

}  // namespace lowbit::train
