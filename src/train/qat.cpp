// Quantization-aware training's glue (qat.h).
#include "train/qat.h"

#include <algorithm>
#include <map>

#include "engine/llama.h"
#include "engine/sampler.h"
#include "lowbit/error.h"
#include "lowbit/rng.h"

namespace lowbit::train {

namespace {

bool is_float(const Format& f) {
  const std::string n(f.name());
  return n == "f32" || n == "f16" || n == "bf16";
}

}  // namespace

std::vector<std::optional<Format>> fake_quant_formats(const Model& m, const ParamLayout& l,
                                                      const QuantizeOptions& o) {
  std::map<std::string, Format> to;
  for (const TensorPlan& p : plan_quantization(m, o)) to.emplace(p.name, p.to);
  std::vector<std::optional<Format>> f(l.params.size());
  for (size_t i = 0; i < l.params.size(); ++i) {
    const auto it = to.find(l.params[i].name);
    if (it != to.end() && !is_float(it->second) && l.params[i].shape.size() == 2) f[i] = it->second;
  }
  return f;
}

Model with_weights(const Model& m, const ParamLayout& l, const std::vector<float>& w) {
  Model out = m;
  out.loras.clear();
  for (ModelTensor& t : out.tensors) {
    const ParamInfo* p = l.find(t.name);
    if (p == nullptr) continue;
    t.format = Format::parse("f32");
    t.data = reinterpret_cast<const uint8_t*>(w.data() + p->offset);
    t.bytes = uint64_t(p->size) * sizeof(float);
    t.mapped = false;
  }
  return out;
}

Model with_trained(const Model& m, const ParamLayout& l, const std::vector<float>& w,
                   const std::vector<std::optional<Format>>& fake, const Trainer& t) {
  Model out = with_weights(m, l, w);
  for (ModelTensor& mt : out.tensors) {
    const ParamInfo* p = l.find(mt.name);
    if (p == nullptr) continue;
    const size_t i = size_t(p - l.params.data());
    if (!fake[i]) continue;
    const std::vector<uint8_t>& b = t.quantized_bytes(i);
    if (b.size() != fake[i]->row_bytes(p->shape[1]) * uint64_t(p->shape[0]))
      throw Error("no forward of the fake-quantized weights yet", {.field = mt.name});
    mt.format = *fake[i];
    mt.data = b.data();
    mt.bytes = b.size();
  }
  return out;
}

std::vector<int32_t> generate_qat_data(const Model& m, int64_t tokens, int64_t length,
                                       uint64_t seed, int64_t greedy,
                                       const std::function<void(int64_t, int64_t)>& on_sequence) {
  const int64_t V = m.config.n_vocab;
  const std::optional<uint32_t> bos = m.tokenizer.bos_id;
  const int64_t prefix = bos ? 1 : 0;
  if (length < 2 || tokens < 1) {
    throw Error(
        "nothing to generate",
        {.field = "--qat-ctx", .expected = "at least 2 tokens", .found = std::to_string(length)});
  }
  // The first token: uniform over the normal tokens (all of them when the types are unknown).
  std::vector<int32_t> starts;
  const auto& types = m.tokenizer.token_types;
  for (int64_t t = 0; t < V; ++t) {
    if (types.size() == size_t(V) && types[size_t(t)] != int32_t(TokenType::kNormal)) continue;
    if (bos && t == int64_t(*bos)) continue;
    starts.push_back(int32_t(t));
  }
  if (starts.empty()) throw Error("no normal token to start a sequence", {.field = "tokenizer"});
  const int64_t n_seq = (tokens + length - 1) / length;
  LlamaEngine engine(m, length + prefix, 1);
  Rng rng(seed);
  Sampler sampler(SamplerParams{.temperature = 1.0f,
                                .top_k = 0,
                                .top_p = 1.0f,
                                .min_p = 0.0f,
                                .repeat_penalty = 1.0f,
                                .repeat_last_n = 0,
                                .seed = seed});
  std::vector<int32_t> out;
  out.reserve(size_t(n_seq * length));
  std::vector<int32_t> history;
  for (int64_t s = 0; s < n_seq; ++s) {
    history.clear();
    int64_t pos = 0;
    if (bos) engine.forward(int32_t(*bos), pos++);
    int32_t tok = starts[size_t(rng.next_u64() % starts.size())];
    for (int64_t i = 0; i < length; ++i) {
      out.push_back(tok);
      history.push_back(tok);
      if (i + 1 == length) break;
      const std::vector<float>& logits = engine.forward(tok, pos++);
      if (i < greedy) {
        tok = int32_t(std::max_element(logits.begin(), logits.begin() + V) - logits.begin());
      } else {
        tok = sampler.sample(logits.data(), V, history);
      }
    }
    if (on_sequence) on_sequence(s + 1, n_seq);
  }
  return out;
}

}  // namespace lowbit::train
