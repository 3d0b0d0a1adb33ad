// Optimizers (AdamW, SGD), the learning-rate schedule and gradient clipping, over the flat F32
// parameter vector of a ParamLayout. Every update is elementwise and every reduction is summed in a
// fixed order, so results never depend on the thread count.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/model.h"

namespace lowbit::train {

enum class OptimizerKind { kAdamW, kSgd };
enum class ScheduleKind { kCosine, kLinear, kConstant };

OptimizerKind parse_optimizer(const std::string& name);  // "adamw" | "sgd"; throws Error
ScheduleKind parse_schedule(const std::string& name);    // "cosine" | "linear" | "constant"

struct OptimizerConfig {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  // Decoupled weight decay (AdamW: w -= lr * wd * w before the Adam step; SGD: the same), applied
  // to the tensors ParamInfo::decay marks (matrices; not norms, biases or the token embedding).
  double weight_decay = 0.0;
};

struct Schedule {
  ScheduleKind kind = ScheduleKind::kCosine;
  double lr = 1e-3;
  int64_t warmup = 0;  // steps of linear warmup from lr / warmup up to lr
  int64_t steps = 1;   // the schedule's length: cosine and linear reach 0 at step `steps`
  // The learning rate of step s (0-based).
  double at(int64_t s) const;
};

class Optimizer {
 public:
  Optimizer(const OptimizerConfig& c, const ParamLayout& layout);
  // One update of w with gradient g (both layout.total values) at learning rate lr.
  void step(float* w, const float* g, double lr);
  int64_t steps_taken() const { return t_; }
  const OptimizerConfig& config() const { return c_; }

  // The state a checkpoint keeps: the step count and the moment vectors (AdamW; empty for SGD).
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  void set_steps_taken(int64_t t) { t_ = t; }

 private:
  OptimizerConfig c_;
  std::vector<uint8_t> decay_;  // per element: 1 where weight decay applies
  std::vector<float> m_, v_;
  int64_t t_ = 0;
};

// The global L2 norm of g (n values), summed in double in a fixed order.
double grad_norm(const float* g, int64_t n);
// Scales g so that its global norm is at most max_norm (max_norm <= 0: no clipping). Returns the
// norm before clipping.
double clip_grad_norm(float* g, int64_t n, double max_norm);

}  // namespace lowbit::train
