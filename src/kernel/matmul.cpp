// matmul(): quantize the N activation rows once (per the format's ActKind), then split W's rows
// over the threads; each thread runs the tier's gemm over its rows, token chunk by token chunk
// (a chunk's activations stay in the core's L2 while the thread's rows stream past). Formats
// without a kernel dequantize a few rows at a time and use the tier's float gemm.
#include <algorithm>
#include <vector>

#include "kernel/kernels.h"
#include "lowbit/error.h"
#include "lowbit/threads.h"

namespace lowbit::kernel {

Acts Acts::from(int64_t t0) const {
  Acts a = *this;
  a.n = n - t0;
  const int64_t nb = K / block();
  if (f32) a.f32 = f32 + t0 * K;
  if (qs) a.qs = qs + t0 * K;
  if (d) a.d = d + t0 * nb;
  if (s) a.s = s + t0 * (K / 32);
  if (bsums) a.bsums = bsums + t0 * (K / bsum_elems());
  return a;
}

size_t format_index(const Format& f) {
  const auto all = all_formats();
  const size_t i = size_t(&f.info() - all.data());
  LOWBIT_CHECK(i < kFormatCount, "format not in the list");
  return i;
}

ActKind act_kind(const Format& f) {
  static constexpr ActKind kKinds[] = {
#define LOWBIT_X(T) kActOf<formats::T>,
      LOWBIT_FORMAT_LIST(LOWBIT_X)
#undef LOWBIT_X
  };
  return kKinds[format_index(f)];
}

namespace {

// Per-thread scratch, reused across calls (no allocation per matmul in steady state).
struct ActBuffer {
  std::vector<int8_t> qs;
  std::vector<float> d, s;
  std::vector<int16_t> bsums;
};

Acts quantize_acts(const KernelSet& ks, ActKind kind, const float* x, int64_t N, int64_t K) {
  Acts a{.kind = kind, .n = N, .K = K};
  if (kind == ActKind::kF32) {
    a.f32 = x;
    return a;
  }
  thread_local ActBuffer buf;
  const int64_t nb = K / a.block();
  const bool q32 = kind == ActKind::kQ8x32;
  buf.qs.resize(size_t(N * K));
  buf.d.resize(size_t(N * nb));
  const int64_t nbs = K / a.bsum_elems();
  if (q32) buf.s.resize(size_t(N * nb));
  buf.bsums.resize(size_t(N * nbs));
  // Plain pointers: the body runs on other threads too, where `buf` names their own buffer.
  int8_t* qs = buf.qs.data();
  float* d = buf.d.data();
  float* s = q32 ? buf.s.data() : nullptr;
  int16_t* bsums = buf.bsums.data();
  const QuantizeFn quantize = q32 ? ks.quantize_q8x32 : ks.quantize_q8x256;
  const PackFn pack = N > 1 ? (q32 ? ks.pack_q8x32 : ks.pack_q8x256) : nullptr;
  parallel_for(N, std::max<int64_t>(1, (int64_t(1) << 18) / K), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      quantize(x + t * K, K, qs + t * K, d + t * nb, s ? s + t * nb : nullptr, bsums + t * nbs);
      if (pack) pack(qs + t * K, K);
    }
  });
  a.qs = qs, a.d = d, a.s = s, a.bsums = bsums;
  a.packed = pack != nullptr;
  return a;
}

// Tokens per chunk: about 512 KiB of activations (f32: 4 bytes a value, int8 ~1.1).
int64_t token_chunk(const Acts& a) {
  const int64_t bytes = a.K * (a.kind == ActKind::kF32 ? 4 : 1);
  return std::max<int64_t>(1, (int64_t(512) << 10) / std::max<int64_t>(1, bytes));
}

void gemm_chunked(GemmFn gemm, const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y,
                  int64_t ldy) {
  const int64_t chunk = token_chunk(a);
  for (int64_t t0 = 0; t0 < a.n; t0 += chunk) {
    Acts part = a.from(t0);
    part.n = std::min(chunk, a.n - t0);
    gemm(w, rb, rows, part, y + t0 * ldy, ldy);
  }
}

// Threads only when each gets >= ~64k multiply-adds: small layers (and generation on tiny
// models) are faster on one thread than with OpenMP's start-up and hand-off. Rows are handed out
// in groups of kRowGroup so that threads split on tile boundaries.
constexpr int64_t kRowGroup = 4;

void for_row_groups(int64_t M, int64_t K, int64_t N,
                    const std::function<void(int64_t, int64_t)>& body) {
  const int64_t min_rows = std::max<int64_t>(16, (int64_t(1) << 16) / std::max<int64_t>(1, K * N));
  const int64_t groups = (M + kRowGroup - 1) / kRowGroup;
  parallel_for(groups, (min_rows + kRowGroup - 1) / kRowGroup,
               [&](int64_t g0, int64_t g1) { body(g0 * kRowGroup, std::min(M, g1 * kRowGroup)); });
}

void matmul_generic(const KernelSet& ks, const Format& f, const uint8_t* w, int64_t M, int64_t K,
                    const float* x, int64_t N, float* y) {
  const uint64_t rb = f.row_bytes(K);
  const Acts a{.kind = ActKind::kF32, .n = N, .K = K, .f32 = x};
  const DequantFn dequant = ks.formats[format_index(f)].dequant;
  const int64_t group = f.block_elems(K);
  constexpr int64_t kRows = 8;  // rows dequantized at a time, then reused across all N tokens
  for_row_groups(M, K, N, [&](int64_t r0, int64_t r1) {
    thread_local std::vector<float> rows;  // this thread's decoded rows, reused across calls
    rows.resize(size_t(kRows * K));
    for (int64_t r = r0; r < r1; r += kRows) {
      const int64_t n = std::min(kRows, r1 - r);
      for (int64_t i = 0; i < n; ++i) {
        const uint8_t* row = w + uint64_t(r + i) * rb;
        if (dequant)
          dequant(row, K, group, rows.data() + i * K);
        else
          f.dequantize_row(row, K, rows.data() + i * K);
      }
      gemm_chunked(ks.gemm_f32, reinterpret_cast<const uint8_t*>(rows.data()), uint64_t(K) * 4, n,
                   a, y + r, M);
    }
  });
}

void run(const KernelSet& ks, const Format& f, const uint8_t* w, int64_t M, int64_t K,
         const float* x, int64_t N, float* y) {
  if (M <= 0 || N <= 0) return;
  const ActKind kind = act_kind(f);
  if (kind == ActKind::kNone) return matmul_generic(ks, f, w, M, K, x, N, y);
  const size_t fi = format_index(f);
  // A tier without this format's kernel runs the reference tier for it (activations included,
  // so they stay in the layout its kernel reads): same numbers, slower.
  const KernelSet& kt = ks.formats[fi].gemm ? ks : ref_kernels();
  const GemmFn gemm = kt.formats[fi].gemm;
  const uint64_t rb = f.row_bytes(K);
  const Acts a = quantize_acts(kt, kind, x, N, K);
  for_row_groups(M, K, N, [&](int64_t r0, int64_t r1) {
    gemm_chunked(gemm, w + uint64_t(r0) * rb, rb, r1 - r0, a, y + r0, M);
  });
}

}  // namespace

}  // namespace lowbit::kernel

namespace lowbit {

void matmul_isa(Isa isa, const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x,
                int64_t N, float* y) {
  kernel::run(kernel::kernels_for(isa), f, w, M, K, x, N, y);
}

void matmul(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
            float* y) {
  static const kernel::KernelSet& ks = kernel::kernels_for(active_isa());
  kernel::run(ks, f, w, M, K, x, N, y);
}

}  // namespace lowbit
