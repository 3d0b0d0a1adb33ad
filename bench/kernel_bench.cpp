// matmul throughput per format at real layer shapes (M x K: 4096x4096 attention, 11008x4096 and
// 4096x11008 Llama-2-7B feed-forward, 5632x2048 TinyLlama feed-forward), for one token
// (generation, memory-bound: GB/s of weights read) and 128 tokens (prompt: GFLOP/s).
// The tier is the one matmul() picks (LOWBIT_ISA=ref|avx2|avx512 to compare; label shows it);
// threads: OMP_NUM_THREADS or all cores. Default run: every kernel format at 4096x4096; set
// LOWBIT_BENCH_SHAPES=all for the other shapes (priority formats). A 512x1024 one-token case
// for the priority formats stays in L2 (compute cost per block, not bandwidth). Example:
//   LOWBIT_ISA=avx2 build/bench/lowbit_bench --benchmark_filter='matmul/q4_0/4096x4096/n1/'
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "kernel/matmul.h"
#include "lowbit/format.h"
#include "lowbit/rng.h"

namespace {

using lowbit::Format;

// Weights: 16 rows quantized for real (speed does not depend on the values, but scales must be
// sane numbers), repeated over all M rows so that every byte is read from memory.
std::vector<uint8_t> make_weights(const Format& f, int64_t M, int64_t K) {
  constexpr int64_t kSrcRows = 16;
  std::vector<float> src(size_t(kSrcRows * K));
  lowbit::Rng rng(1);
  for (auto& v : src) v = float(rng.normal());
  const uint64_t rb = f.row_bytes(K);
  std::vector<uint8_t> q(rb * kSrcRows);
  f.quantize(src.data(), kSrcRows, K, nullptr, q.data());
  std::vector<uint8_t> w(rb * uint64_t(M));
  for (int64_t r = 0; r < M; ++r)
    std::memcpy(w.data() + rb * uint64_t(r), q.data() + rb * uint64_t(r % kSrcRows), rb);
  return w;
}

void bench_matmul(benchmark::State& st, const Format& f, int64_t M, int64_t K, int64_t N) {
  const std::vector<uint8_t> w = make_weights(f, M, K);
  std::vector<float> x(size_t(N * K)), y(size_t(N * M));
  lowbit::Rng rng(2);
  for (auto& v : x) v = float(rng.normal());
  // As the engine multiplies: through a PreparedMatrix (repacked where the tier has a layout
  // for the format; LOWBIT_REPACK=0 for the file layout).
  const lowbit::PreparedMatrix pm(f, w.data(), M, K);
  for (auto _ : st) {
    pm.multiply(x.data(), N, y.data());
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  const double bytes = double(w.size()), flops = 2.0 * double(M) * double(K) * double(N);
  st.counters["GB/s"] =
      benchmark::Counter(bytes / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["GFLOP/s"] =
      benchmark::Counter(flops / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(std::string(lowbit::kernel_isa()) + (pm.repacked() ? " x8" : ""));
}

void register_all() {
  struct Shape {
    int64_t M, K;
  };
  const Shape shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}, {5632, 2048}};
  const char* priority[] = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k"};
  const char* others[] = {"q4_1",     "q5_0",      "q5_1",     "iq4_nl",   "q6_k",
                          "q5_k",     "q3_k",      "q2_k",     "iq4_xs",   "tq2_0",
                          "tq1_0",    "nf4",       "nf4_dq",   "bin1",     "int8",
                          "int5_g64", "int4_g128", "int4_g32", "int3_g32", "int2_g32"};
  // lowbit's grouped layout next to Q4_0 (int4_g32 holds the same values as Q4_0), Q5_K next to
  // Q4_K, and every other format, in L2: each format's arithmetic ceiling for one token.
  const char* grouped_l2[] = {"int4_g32", "int4_g128", "int3_g32", "nf4",   "iq4_nl",   "q5_k",
                              "iq4_xs",   "q3_k",      "q2_k",     "tq2_0", "int2_g32", "bin1",
                              "q6_k",     "tq1_0",     "int5_g64", "int8",  "nf4_dq",   "q5_0",
                              "q4_1",     "q5_1"};
  const char* env = std::getenv("LOWBIT_BENCH_SHAPES");
  const bool all_shapes = env != nullptr && std::string(env) == "all";
  auto add = [](const char* name, Shape s, int64_t N) {
    const Format f = Format::parse(name);
    const std::string id = "matmul/" + std::string(name) + "/" + std::to_string(s.M) + "x" +
                           std::to_string(s.K) + "/n" + std::to_string(N);
    benchmark::RegisterBenchmark(
        id.c_str(), [f, s, N](benchmark::State& st) { bench_matmul(st, f, s.M, s.K, N); })
        ->UseRealTime()
        ->Unit(benchmark::kMillisecond);
  };
  // 512x1024: every priority format's weights fit in a Zen 4 core's 1 MiB L2, so one token
  // measures the kernel's arithmetic cost per block rather than memory bandwidth.
  for (const char* name : priority) add(name, Shape{512, 1024}, 1);
  for (const char* name : grouped_l2) add(name, Shape{512, 1024}, 1);
  for (const int64_t N : {1, 128}) {
    for (const char* name : priority) add(name, shapes[0], N);
    for (const char* name : others) add(name, shapes[0], N);
    if (!all_shapes) continue;
    for (size_t i = 1; i < std::size(shapes); ++i) {
      for (const char* name : priority) add(name, shapes[i], N);
    }
  }
}

const int kRegistered = (register_all(), 0);

}  // namespace
