// Quantization-aware training's glue between a quantization plan and the Trainer: which format
// fake-quantizes each trained tensor (the plan's, so fallbacks and mixes carry over), and the
// trained masters as a Model that quantize_model writes with that plan — the codec that wrote
// the forward's round trips writes the file, so what was trained is what ships.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "lowbit/format.h"
#include "lowbit/model.h"
#include "quant/quantize.h"
#include "train/model.h"
#include "train/trainer.h"

namespace lowbit::train {

// Per tensor of l (ParamLayout::of(m.config)): the format the plan of o writes it in, or nullopt
// where the plan keeps a float format (norms, biases, F16 fallbacks): Trainer::set_fake_quant's
// argument.
std::vector<std::optional<Format>> fake_quant_formats(const Model& m, const ParamLayout& l,
                                                      const QuantizeOptions& o);

// m with the tensors of l replaced by F32 views of w (which must outlive the result):
// quantize_model(trained, path, o) then writes exactly the round trips the training used.
Model with_weights(const Model& m, const ParamLayout& l, const std::vector<float>& w);

// m with the tensors of l replaced by the trainer's: the fake-quantized ones (fake[i] set) as
// the very bytes its last forward used (Trainer::quantized_bytes: learned scales included), the
// others as F32 views of w (its masters). Call t.forward_weights() first so the bytes are those
// of the final masters; t and w must outlive the result. quantize_model with the run's plan
// then copies those bytes into the file.
Model with_trained(const Model& m, const ParamLayout& l, const std::vector<float>& w,
                   const std::vector<std::optional<Format>>& fake, const Trainer& t);

// LLM-QAT's data-free training text (Liu et al., 2023): sequences the original model m writes
// itself, `length` tokens each, `tokens` in all (rounded up to whole sequences), concatenated
// (no BOS inside: TrainData's convention). Each sequence starts after BOS (when the model has
// one) with a token drawn uniformly from the normal tokens of the vocabulary, continues with
// `greedy` argmax tokens, then samples the model's full distribution (temperature 1). The same
// model, sizes and seed give the same tokens. on_sequence(done, total) after each.
std::vector<int32_t> generate_qat_data(
    const Model& m, int64_t tokens, int64_t length, uint64_t seed, int64_t greedy = 3,
    const std::function<void(int64_t, int64_t)>& on_sequence = nullptr);

}  // namespace lowbit::train
