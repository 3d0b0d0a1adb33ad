// Training runs: token streams cut into windows, steps of (accumulated) gradients and optimizer
// updates on a Transformer<float>, validation, and checkpoints that resume a run bit for bit.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/tokenizer.h"
#include "lowbit/format.h"
#include "train/model.h"
#include "train/optimizer.h"

namespace lowbit::train {

// The token streams of a run (no BOS inside; each window starts with one when the model has it).
struct TrainData {
  std::vector<int32_t> train, val;
  std::optional<int32_t> bos;
};

// A text to train on or validate with: its file name (for errors) and contents.
struct NamedText {
  std::string file, text;
};

// Tokenizes every training text (concatenated in order) and the validation text. Without one,
// the last val_split of the training tokens validate (0: no validation). Throws Error naming the
// file (or the option) when a stream is shorter than one window of ctx tokens.
TrainData make_train_data(const Tokenizer& tok, const std::vector<NamedText>& texts,
                          const std::optional<NamedText>& val, double val_split, int64_t ctx);

// Everything that defines a run's arithmetic (a checkpoint keeps it; a resumed run reuses it).
struct TrainConfig {
  int64_t steps = 100;     // the schedule's length
  int64_t batch = 8;       // windows per micro-batch
  int64_t ctx = 128;       // tokens per window
  int64_t grad_accum = 1;  // micro-batches per step
  int64_t warmup = 0;
  double lr = 1e-3, clip = 1.0;
  OptimizerConfig optimizer;
  ScheduleKind schedule = ScheduleKind::kCosine;
  uint64_t seed = 1;
  int64_t eval_every = 0;    // validation every N steps (and after the last; 0: only the last)
  int64_t val_windows = 64;  // at most this many windows of the validation stream
  int64_t vocab_slice = 0;   // 0: Transformer's choice
  bool recompute = false;    // Transformer::set_recompute (the same results, less memory)
  // How the threads share a micro-batch: 0 chooses (trainer.cpp, Trainer::replicas_for), 1 splits
  // every product and attention over the threads, N > 1 gives each of N threads its own windows,
  // its own activations and gradient buffer, and adds the N gradients in a fixed order. The
  // results depend on this choice in float rounding only; a checkpoint keeps it.
  int64_t replicas = 0;
  // rank > 0: LoRA (the weights trained are the adapters; the model is the Trainer's base).
  LoraConfig lora;
};

struct StepLog {
  int64_t step = 0;  // 1-based: the number of updates done
  double loss = 0;   // mean cross-entropy of the step's tokens (nats)
  double lr = 0, grad_norm = 0, tokens_per_second = 0;
  std::optional<double> val_loss;
};

class Trainer {
 public:
  // w: the initial weights (layout of ParamLayout::of(c), or ParamLayout::lora(c, tc.lora) for
  // LoRA, whose frozen model is base: it must outlive the trainer).
  Trainer(const ModelConfig& c, std::vector<double> inv_freq, std::vector<float> w,
          const TrainConfig& tc, TrainData data, const FrozenBase<float>* base = nullptr);

  // Runs updates until `until` have been done (at most tc.steps), calling on_step after each.
  // A loss or gradient that is not finite stops the run: Error naming the step (the weights stay
  // those of the step before).
  void run(int64_t until, const std::function<void(const StepLog&)>& on_step);
  // Mean cross-entropy over the validation windows (nullopt without validation data).
  std::optional<double> validation_loss();

  // Quantization-aware training (fake quantization): each tensor given a format is used, in every
  // forward and backward, as its own codec's round trip (quantized and decoded by the code that
  // writes the file, so what is trained is what ships), and its gradient passes straight through
  // to the F32 master weights, zero for a weight outside the range its block's decoded values
  // span (clipped by the block's fit). Indexed like layout().params; nullopt: used as is.
  void set_fake_quant(std::vector<std::optional<Format>> formats);
  // Learned block scales (LSQ, Esser et al. 2020) instead of re-fitting them every step, for the
  // tensors whose format holds one fp16 scale per block and integer codes (learned_scale_offset):
  // each block's scale starts at the format's own fit of the masters and is then trained by AdamW
  // on the logarithm of its magnitude (the run's betas and schedule, no decay) with LSQ's
  // straight-through gradient: d x̂/d s = q - x/s where x rounds inside the grid, q (the clipped
  // code) where it lies beyond; such x get no gradient. Other tensors keep re-fitting. Call after
  // set_fake_quant; not kept by checkpoints.
  void set_learned_scales(bool on);
  // The bytes of fake-quantized tensor i (layout().params index) as the last forward used them:
  // rows of its format (empty for tensors used as they are). A file of these bytes holds exactly
  // the trained round trips.
  const std::vector<uint8_t>& quantized_bytes(size_t i) const {
    static const std::vector<uint8_t> none;
    return i < qbytes_.size() ? qbytes_[i] : none;
  }
  // Activation fake quantization of every linear layer's input (Transformer::set_act_bits; 0 off,
  // else 2..16 bits): BitNet's 8-bit per-token activations, --qat-act-bits.
  void set_act_bits(int bits);
  // Distillation: the loss becomes KL(teacher || model) per token (nats; LLM-QAT's and lowbit
  // QAT's objective), the teacher the same architecture with weights `teacher` (layout()'s; full
  // training only), its probabilities computed per micro-batch and dropped after it.
  void set_teacher(std::vector<float> teacher);
  // The weights the forward uses: the round trips of the current masters (the masters themselves
  // without fake quantization).
  const std::vector<float>& forward_weights();

  int64_t steps_done() const { return opt_.steps_taken(); }
  const std::vector<float>& weights() const { return w_; }
  const TrainConfig& config() const { return tc_; }
  const ParamLayout& layout() const { return model_.layout(); }

  // Writes the whole state (weights, optimizer moments, step, config, `extra` JSON text kept
  // verbatim) to path atomically; `load_checkpoint` reads it back for a trainer of the same model
  // shape (Error naming the mismatch otherwise).
  void save_checkpoint(const std::string& path, const std::string& extra = "{}") const;
  void load_checkpoint(const std::string& path);

 private:
  // Window q of the run (q counts windows over all steps): a start drawn from (seed, q).
  void window(int64_t q, int32_t* in, int32_t* tgt) const;
  // One window from the stream at x: its ctx inputs and ctx targets.
  void cut(const int32_t* x, int32_t* in, int32_t* tgt) const;

  // The replicas a run of this many parameters and windows per micro-batch gets by default.
  static int64_t replicas_for(int64_t params, int64_t batch);
  // Summed loss of S windows (in, tgt: S * ctx each); with grad, grad += scale * its gradient.
  // Spread over the replicas when there are several.
  // key: LoRA dropout's masks (the first window's index in the run).
  double loss_of(const int32_t* in, const int32_t* tgt, int64_t S, float* grad, float scale,
                 uint64_t key = 0);

  // Fake quantization: wq_ = the round trips of w_ (refresh_fake), used by every pass.
  const float* refresh_fake();
  void mask_clipped(float* g) const;  // zero the gradient of weights outside their block's range
  // Distillation: the teacher, its weights, this micro-batch's probabilities (S ctx, V).
  std::optional<Transformer<float>> teacher_;
  std::vector<float> teacher_w_, soft_;
  // soft_ for S windows; returns their summed entropy (the KL's constant).
  double teacher_probs(const int32_t* in, int64_t S);
  std::vector<std::optional<Format>> fake_;
  std::vector<float> wq_;
  std::vector<std::vector<uint8_t>> qbytes_;  // per tensor: the round trips' bytes
  // Learned scales: per tensor the first index into ls_ (-1: re-fitted) and the scale's byte
  // offset in a block; the scales, their AdamW moments and this step's gradient.
  std::vector<int64_t> ls_at_, ls_off_;
  std::vector<float> ls_, ls_m_, ls_v_, ls_g_;
  bool ls_ready_ = false;  // the scales hold their initial fit
  void learned_scale_step(float* g, double lr, int64_t step);
  const float* cur_w_ = nullptr;  // the weights this step's passes use (w_ or wq_)

  ModelConfig c_;
  TrainConfig tc_;
  TrainData data_;
  Transformer<float> model_;
  std::vector<float> w_, g_;
  // Data-parallel replicas beyond model_ (tc_.replicas - 1 of them) and their gradient buffers.
  std::vector<Transformer<float>> extra_;
  std::vector<std::vector<float>> extra_g_;
  Optimizer opt_;
};

// What a checkpoint file says about itself: the step and the config it was written with, the
// tensor names and shapes, and the extra JSON text.
// The byte offset of the fp16 scale in a block of f when f's blocks are {one fp16 scale d, integer
// codes q}, decoded as d * q (the symmetric int formats, tern, Q4_0, Q5_0, Q8_0, TQ1_0, TQ2_0):
// the formats whose scales can be learned. nullopt for the others (zero points, sub-scales,
// codebooks, bin1).
std::optional<int64_t> learned_scale_offset(const Format& f);

struct CheckpointInfo {
  int64_t step = 0;
  std::string config_json, extra_json;
};
CheckpointInfo read_checkpoint_info(const std::string& path);

}  // namespace lowbit::train
