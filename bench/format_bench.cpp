// Microbenchmarks of the reference codecs: quantize and dequantize throughput per format on a
// 4096-wide Gaussian matrix (the kernels issue adds dot products and GEMV/GEMM).
#include <benchmark/benchmark.h>

#include <vector>

#include "lowbit/format.h"
#include "lowbit/rng.h"

namespace {

constexpr int64_t kRows = 64, kK = 4096;

std::vector<float> gaussian() {
  std::vector<float> x(kRows * kK);
  lowbit::Rng rng(1);
  for (auto& v : x) v = float(rng.normal());
  return x;
}

void register_all() {
  for (const auto& info : lowbit::all_formats()) {
    const lowbit::Format f(info, info.block_elems == 0 ? 32 : 0);
    benchmark::RegisterBenchmark(("quantize/" + f.name()).c_str(), [f](benchmark::State& st) {
      const auto x = gaussian();
      std::vector<uint8_t> q(f.row_bytes(kK) * kRows);
      for (auto _ : st) f.quantize(x.data(), kRows, kK, nullptr, q.data());
      st.SetItemsProcessed(st.iterations() * kRows * kK);
    });
    benchmark::RegisterBenchmark(("dequantize/" + f.name()).c_str(), [f](benchmark::State& st) {
      const auto x = gaussian();
      std::vector<uint8_t> q(f.row_bytes(kK) * kRows);
      std::vector<float> y(x.size());
      f.quantize(x.data(), kRows, kK, nullptr, q.data());
      for (auto _ : st) f.dequantize(q.data(), kRows, kK, y.data());
      st.SetItemsProcessed(st.iterations() * kRows * kK);
    });
  }
}

const int kRegistered = (register_all(), 0);

}  // namespace
