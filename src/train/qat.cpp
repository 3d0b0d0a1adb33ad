// Quantization-aware training's glue (qat.h).
#include "train/qat.h"

#include <map>

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

}  // namespace lowbit::train
