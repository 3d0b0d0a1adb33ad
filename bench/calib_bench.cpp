// Calibration statistics: InputStats::add over one chunk of n tokens at real input widths (2048:
// TinyLlama's attention and FFN inputs; 5632: its ffn_down input), with and without the Hessian
// Σ x xᵀ that GPTQ needs. GFLOP/s counts the Hessian's n·K² multiply-adds as 2 each (the full
// square, though only one triangle is computed). Threads: OMP_NUM_THREADS / OpenBLAS defaults.
//   build/bench/lowbit_bench --benchmark_filter='^calib/'
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "lowbit/rng.h"
#include "quant/calibrate.h"

namespace {

void bench_calib(benchmark::State& st, int64_t K, int64_t n, bool hessian) {
  lowbit::Rng rng(7);
  std::vector<float> x(static_cast<size_t>(n * K));
  for (auto& v : x) v = float(rng.normal());
  lowbit::InputStats s;
  for (auto _ : st) {
    s.add(x.data(), n, K, hessian);
    benchmark::DoNotOptimize(s.count);
  }
  if (hessian) {
    st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(n) * double(K) * double(K) / 1e9,
                                                benchmark::Counter::kIsIterationInvariantRate);
  }
  st.counters["tokens/s"] =
      benchmark::Counter(double(n), benchmark::Counter::kIsIterationInvariantRate);
}

const int kRegistered = [] {
  for (const int64_t K : {2048, 5632}) {
    for (const bool h : {false, true}) {
      const std::string id =
          "calib/" + std::string(h ? "hessian" : "stats") + "/K" + std::to_string(K) + "/n512";
      benchmark::RegisterBenchmark(id.c_str(), [K, h](benchmark::State& st) {
        bench_calib(st, K, 512, h);
      })->UseRealTime()->Unit(benchmark::kMillisecond);
    }
  }
  return 0;
}();

}  // namespace
