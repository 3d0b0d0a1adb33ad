// The machine's F32 GEMM rate on a model's own training shapes: the anchor of issue 19's
// throughput target (llama.cpp's trainer aborts on these models, ../shared/anchors.md). One
// iteration runs every product of a training step of one layer and of the output head, as
// OpenBLAS does them with its own threading (cblas_sgemm, all threads): per linear layer (K in, N
// out) over B tokens the forward x·Wᵀ, and the backward dy·W and dyᵀ·x; 2·B·K·N FLOPs each.
// GFLOP/s = their FLOPs / their time. Compare with `lowbit train --json` tokens/s times
// 6 · parameters (bench/train_throughput.sh runs both).
//   build/bench/lowbit_bench --benchmark_filter=train_gemm
#include <benchmark/benchmark.h>
#include <cblas.h>

#include <string>
#include <vector>

#include "lowbit/rng.h"

namespace {

struct TrainShape {
  const char* name;
  int64_t C, F, Q, KV, V, B;  // width, feed-forward, query and KV widths, vocabulary, tokens
};

void bench_train_gemm(benchmark::State& st, TrainShape s) {
  struct Lin {
    int64_t K, N;
  };
  const Lin lins[] = {{s.C, s.Q}, {s.C, s.KV}, {s.C, s.KV}, {s.Q, s.C},
                      {s.C, s.F}, {s.C, s.F},  {s.F, s.C},  {s.C, s.V}};
  int64_t maxk = 0, maxn = 0;
  for (const Lin& l : lins) maxk = std::max(maxk, l.K), maxn = std::max(maxn, l.N);
  std::vector<float> x(size_t(s.B * maxk)), w(size_t(maxk * maxn)), y(size_t(s.B * maxn)),
      dw(size_t(maxk * maxn));
  lowbit::Rng rng(1);
  for (auto* v : {&x, &w, &y}) {
    for (float& f : *v) f = float(rng.normal());
  }
  double flops = 0;
  for (auto _ : st) {
    for (const Lin& l : lins) {
      const int B = int(s.B), K = int(l.K), N = int(l.N);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, K, 1, x.data(), K, w.data(), K, 0,
                  y.data(), N);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, K, N, 1, y.data(), N, w.data(), K,
                  1, x.data(), K);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, B, 1, y.data(), N, x.data(), K, 1,
                  dw.data(), K);
      flops += 3.0 * 2.0 * double(s.B) * double(l.K) * double(l.N);
    }
  }
  st.counters["GFLOP/s"] = benchmark::Counter(flops / 1e9, benchmark::Counter::kIsRate);
}

// stories260K and the ~30M-parameter synthetic model of issue 19 (dim 512, feed-forward 1536,
// 8 heads, vocabulary 32000), both at batch 8 x ctx 256 (the measurement); stories260K
// also at ctx 128.
const int kRegistered = [] {
  for (const TrainShape s : {TrainShape{"stories260K", 64, 172, 64, 32, 512, 8 * 256},
                             TrainShape{"stories260K_ctx128", 64, 172, 64, 32, 512, 8 * 128},
                             TrainShape{"synth30M", 512, 1536, 512, 512, 32000, 8 * 256}}) {
    benchmark::RegisterBenchmark((std::string("train_gemm/") + s.name).c_str(),
                                 [s](benchmark::State& st) { bench_train_gemm(st, s); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  }
  return 0;
}();

}  // namespace
