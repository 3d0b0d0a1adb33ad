// Whole-model round-to-nearest quantization: plan per tensor, then write_gguf streams it.
#include "quant/quantize.h"

#include <map>

#include "lowbit/error.h"

namespace lowbit {

Format fallback_for(const Format& want, int64_t K, FallbackPolicy policy) {
  if (want.can_tile(K)) return want;
  if (policy == FallbackPolicy::kAuto) {
    policy = want.is_ggml_type() ? FallbackPolicy::kGgml : FallbackPolicy::kLowbit;
  }
  if (policy == FallbackPolicy::kLowbit) return want.resolve_for_row(K);
  // GGUF-only: follow the chain, skipping lowbit's own formats; F16 tiles everything.
  Format f = want;
  for (int hops = 0; hops < 8 && !f.info().fallback.empty(); ++hops) {
    f = Format::parse(f.info().fallback);
    if (f.is_ggml_type() && f.can_tile(K)) return f;
  }
  return Format::parse("f16");
}

std::vector<TensorPlan> plan_quantization(const Model& m, const QuantizeOptions& o) {
  if (o.type.info().activation_only) {
    throw Error("format is for activations only, not weights", {.field = "--type",
                .expected = "a weight format (lowbit formats)", .found = o.type.name()});
  }
  for (const auto& [name, f] : o.per_tensor) {
    if (f.info().activation_only) {
      throw Error("format is for activations only, not weights", {.field = name,
                  .expected = "a weight format (lowbit formats)", .found = f.name()});
    }
  }
  const std::string out_name = m.config.tied_output ? "token_embd.weight" : "output.weight";
  std::vector<TensorPlan> plan;
  for (const ModelTensor& t : m.tensors) {
    Format want = o.type;
    if (const auto it = o.per_tensor.find(t.name); it != o.per_tensor.end() && t.shape.size() >= 2) {
      want = it->second;
    } else if (t.shape.size() < 2) {
      want = Format::parse("f32");
    } else if (t.name == out_name && o.output_type) {
      want = *o.output_type;
    } else if (t.name == "token_embd.weight" && o.token_embedding_type) {
      want = *o.token_embedding_type;
    }
    const int64_t K = t.row_length();
    const Format to = fallback_for(want, K, o.fallback);
    plan.push_back({t.name, t.format, to, want, t.rows() * K, to.row_bytes(K) * uint64_t(t.rows())});
  }
  return plan;
}

std::vector<TensorPlan> quantize_model(const Model& m, const std::string& path,
                                       const QuantizeOptions& o, bool show_progress) {
  const std::vector<TensorPlan> plan = plan_quantization(m, o);
  std::map<std::string, Format> to;
  for (const auto& p : plan) to.emplace(p.name, p.to);
  write_gguf(m, path, [&](const ModelTensor& t) { return to.at(t.name); },
             {{"lowbit.quantize.method", "rtn"}, {"lowbit.quantize.type", o.type.name()}},
             show_progress);
  return plan;
}

}  // namespace lowbit
