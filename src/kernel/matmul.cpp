// matmul(): quantize the N activation rows once (per the format's ActKind), then split W's rows
// over the threads; each thread runs the tier's gemm over its rows, token chunk by token chunk
// (a chunk's activations stay in the core's L2 while the thread's rows stream past). Formats
// without a kernel dequantize a few rows at a time and use the tier's float gemm.
#include <algorithm>
#include <cstdlib>
#include <cstring>
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

// The Acts::wgroup of f's rows of K (0 for fixed-block formats).
static int64_t weight_group(const Format& f, int64_t K) {
  return f.grouped() ? f.block_elems(K) : 0;
}

bool kernel_applies(const Format& f, int64_t K) {
  if (act_kind(f) == ActKind::kNone) return false;
  if (!f.grouped()) return true;
  return K % 32 == 0 && f.block_elems(K) % 32 == 0;
}

namespace {

// Per-thread scratch, reused across calls (no allocation per matmul in steady state).
struct ActBuffer {
  std::vector<int8_t> qs;
  std::vector<float> d, s;
  std::vector<int16_t> bsums;
};

// allow_pack: multi-token activations go into the tier's packed layout (the x8 tiles read them
// in order).
Acts quantize_acts(const KernelSet& ks, ActKind kind, const float* x, int64_t N, int64_t K,
                   bool allow_pack = true) {
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
  const PackFn pack = N > 1 && allow_pack ? (q32 ? ks.pack_q8x32 : ks.pack_q8x256) : nullptr;
  parallel_for(N, std::max<int64_t>(1, (int64_t(1) << 15) / K), [&](int64_t t0, int64_t t1) {
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

// fn(part, t0) for the token chunks of a.
template <typename Fn>
void for_token_chunks(const Acts& a, Fn&& fn) {
  const int64_t chunk = token_chunk(a);
  for (int64_t t0 = 0; t0 < a.n; t0 += chunk) {
    Acts part = a.from(t0);
    part.n = std::min(chunk, a.n - t0);
    fn(part, t0);
  }
}

void gemm_chunked(GemmFn gemm, const uint8_t* w, uint64_t rb, int64_t rows, const Acts& a, float* y,
                  int64_t ldy) {
  for_token_chunks(
      a, [&](const Acts& part, int64_t t0) { gemm(w, rb, rows, part, y + t0 * ldy, ldy); });
}

// Threads only when each gets >= ~64k multiply-adds: small layers (and generation on tiny
// models) are faster on one thread than with OpenMP's start-up and hand-off. Rows are handed out
// in groups of `group` (default kRowGroup) so that threads split on tile boundaries.
constexpr int64_t kRowGroup = 4;

void for_row_groups(int64_t M, int64_t K, int64_t N,
                    const std::function<void(int64_t, int64_t)>& body, int64_t group = kRowGroup) {
  const int64_t min_rows = std::max<int64_t>(16, (int64_t(1) << 16) / std::max<int64_t>(1, K * N));
  const int64_t groups = (M + group - 1) / group;
  const auto rows = [&](int64_t g0, int64_t g1) { body(g0 * group, std::min(M, g1 * group)); };
  if (N < 16) return parallel_for(groups, (min_rows + group - 1) / group, rows);
  // Prompts: compute-bound, and on a shared machine one core can run slower than the other; hand
  // out pieces of ~16 per thread instead of halves (each piece still >= min_rows).
  const int64_t piece = std::max((min_rows + group - 1) / group, groups / (16 * max_threads()));
  parallel_for_dynamic(groups, std::max<int64_t>(1, piece), rows);
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
  if (!kernel_applies(f, K)) return matmul_generic(ks, f, w, M, K, x, N, y);
  const ActKind kind = act_kind(f);
  const size_t fi = format_index(f);
  // A tier without this format's kernel runs the reference tier for it (activations included,
  // so they stay in the layout its kernel reads): same numbers, slower.
  const KernelSet& kt = ks.formats[fi].gemm ? ks : ref_kernels();
  const GemmFn gemm = kt.formats[fi].gemm;
  const uint64_t rb = f.row_bytes(K);
  Acts a = quantize_acts(kt, kind, x, N, K, /*allow_pack=*/!kt.formats[fi].gemm_in_order);
  a.wgroup = weight_group(f, K);
  for_row_groups(M, K, N, [&](int64_t r0, int64_t r1) {
    gemm_chunked(gemm, w + uint64_t(r0) * rb, rb, r1 - r0, a, y + r0, M);
  });
}

bool repack_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("LOWBIT_REPACK");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return on;
}

}  // namespace

}  // namespace lowbit::kernel

namespace lowbit {

PreparedMatrix::PreparedMatrix(const Format& f, const uint8_t* w, int64_t M, int64_t K)
    : PreparedMatrix(active_isa(), f, w, M, K) {}

PreparedMatrix::PreparedMatrix(Isa isa, const Format& f, const uint8_t* w, int64_t M, int64_t K)
    : isa_(isa), f_(f), w_(w), M_(M), K_(K) {
  using namespace kernel;
  const KernelSet& ks = kernels_for(isa);
  if (!kernel_applies(f, K) || !repack_enabled()) return;
  const FormatKernels& fk = ks.formats[format_index(f)];
  const int64_t groups = M / 8;
  if (fk.repack8 == nullptr || fk.gemm_x8 == nullptr || groups == 0 || K % fk.x8_k_multiple != 0)
    return;
  const uint64_t rb = f.row_bytes(K);
  const int64_t wgroup = weight_group(f, K);
  // x8_block_bytes 0: the layout takes exactly the 8 rows' bytes (grouped ints, NF4).
  group_bytes_ =
      fk.x8_block_bytes == 0 ? 8 * rb : uint64_t(K / f.block_elems(K)) * fk.x8_block_bytes;
  packed_ = huge_alloc<uint8_t>(group_bytes_ * uint64_t(groups));
  uint8_t* out = packed_.get();
  // Pairs of groups through repack16 where the tier has it (threads then split on pairs).
  const int64_t unit = fk.repack16 != nullptr ? 2 : 1, units = (groups + unit - 1) / unit;
  parallel_for(units, 8, [&](int64_t u0, int64_t u1) {
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t g = u * unit;
      uint8_t* o = out + uint64_t(g) * group_bytes_;
      if (unit == 2 && g + 1 < groups)
        fk.repack16(w + uint64_t(8 * g) * rb, rb, K, wgroup, o);
      else
        fk.repack8(w + uint64_t(8 * g) * rb, rb, K, wgroup, o);
    }
  });
  packed_rows_ = 8 * groups;
}

PreparedMatrix::PreparedMatrix(PreparedMatrix&&) noexcept = default;
PreparedMatrix& PreparedMatrix::operator=(PreparedMatrix&&) noexcept = default;
PreparedMatrix::~PreparedMatrix() = default;

void PreparedMatrix::multiply(const float* x, int64_t N, float* y) const {
  const PreparedMatrix* self = this;
  multiply_group({&self, 1}, x, N, {&y, 1});
}

void PreparedMatrix::run_rows(const void* acts, int64_t r0, int64_t r1, float* y) const {
  using namespace kernel;
  Acts a = *static_cast<const Acts*>(acts);
  a.wgroup = weight_group(f_, K_);
  const FormatKernels& fk = kernels_for(isa_).formats[format_index(f_)];
  const uint64_t rb = f_.row_bytes(K_);
  const int64_t p1 = std::min(r1, packed_rows_), M = M_;
  for_token_chunks(a, [&](const Acts& part, int64_t t0) {
    if (p1 > r0) {
      fk.gemm_x8(packed_.get() + uint64_t(r0 / 8) * group_bytes_, (p1 - r0) / 8, part,
                 y + t0 * M + r0, M);
    }
    if (r1 > p1) fk.gemm(w_ + uint64_t(p1) * rb, rb, r1 - p1, part, y + t0 * M + p1, M);
  });
}

void PreparedMatrix::multiply_group(std::span<const PreparedMatrix* const> ms, const float* x,
                                    int64_t N, std::span<float* const> ys) {
  using namespace kernel;
  LOWBIT_CHECK(ms.size() == ys.size(), "one output per matrix");
  if (ms.empty() || N <= 0) return;
  const PreparedMatrix& m0 = *ms[0];
  bool shared = true;
  for (const PreparedMatrix* m : ms) {
    shared = shared && m->repacked() && m->isa_ == m0.isa_ && m->K_ == m0.K_ &&
             act_kind(m->f_) == act_kind(m0.f_);
  }
  if (!shared) {  // one at a time: each through its own layout
    if (ms.size() == 1) return run(kernels_for(m0.isa_), m0.f_, m0.w_, m0.M_, m0.K_, x, N, ys[0]);
    for (size_t i = 0; i < ms.size(); ++i) multiply_group(ms.subspan(i, 1), x, N, ys.subspan(i, 1));
    return;
  }
  const Acts a = quantize_acts(kernels_for(m0.isa_), act_kind(m0.f_), x, N, m0.K_,
                               /*allow_pack=*/false);
  // The matrices' rows back to back, each starting on a multiple of 16: threads split the whole
  // range on boundaries of pairs of groups (repack16), in one parallel region.
  std::vector<int64_t> start(ms.size() + 1, 0);
  for (size_t i = 0; i < ms.size(); ++i) start[i + 1] = start[i] + (ms[i]->M_ + 15) / 16 * 16;
  for_row_groups(
      start.back(), m0.K_, N,
      [&](int64_t v0, int64_t v1) {
        for (size_t i = 0; i < ms.size(); ++i) {
          const int64_t r0 = std::max(v0, start[i]) - start[i];
          const int64_t r1 = std::min(v1 - start[i], ms[i]->M_);
          if (r0 < r1) ms[i]->run_rows(&a, r0, r1, ys[i]);
        }
      },
      16);
}

void attention_scores(const float* q, const float* k, int64_t stride, int64_t T, int64_t D,
                      float scale, float* out) {
  static const auto fn = kernel::kernels_for(active_isa()).attn_scores;
  fn(q, k, stride, T, D, scale, out);
}

}  // namespace lowbit

const lowbit::fit::GridKernels& lowbit::fit::grid_kernels() {
  static const GridKernels g = kernel::kernels_for(active_isa()).grid;
  return g;
}

namespace lowbit {

void attention_values(const float* p, const float* v, int64_t stride, int64_t T, int64_t D,
                      float* out) {
  static const auto fn = kernel::kernels_for(active_isa()).attn_values;
  fn(p, v, stride, T, D, out);
}

void swiglu(float* g, const float* u, int64_t n) {
  static const auto fn = kernel::kernels_for(active_isa()).swiglu;
  fn(g, u, n);
}

void softmax(float* s, int64_t n) {
  static const auto fn = kernel::kernels_for(active_isa()).softmax;
  fn(s, n);
}

void softmax_backward(const float* p, float* d, int64_t n) {
  static const auto fn = kernel::kernels_for(active_isa()).softmax_backward;
  fn(p, d, n);
}

void matmul_isa(Isa isa, const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x,
                int64_t N, float* y) {
  kernel::run(kernel::kernels_for(isa), f, w, M, K, x, N, y);
}

namespace {

void decode_rows(const kernel::KernelSet& ks, const Format& f, const uint8_t* w, int64_t K,
                 int64_t r0, int64_t r1, float* out) {
  const kernel::DequantFn dequant = ks.formats[kernel::format_index(f)].dequant;
  const uint64_t rb = f.row_bytes(K);
  const int64_t group = f.block_elems(K);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = w + uint64_t(r) * rb;
    float* y = out + (r - r0) * K;
    if (dequant)
      dequant(row, K, group, y);
    else
      f.dequantize_row(row, K, y);
  }
}

}  // namespace

void dequantize_rows_isa(Isa isa, const Format& f, const uint8_t* w, int64_t K, int64_t r0,
                         int64_t r1, float* out) {
  LOWBIT_CHECK(isa_supported(isa), "dequantize_rows_isa: instruction set not supported");
  decode_rows(kernel::kernels_for(isa), f, w, K, r0, r1, out);
}

void dequantize_rows(const Format& f, const uint8_t* w, int64_t K, int64_t r0, int64_t r1,
                     float* out) {
  static const kernel::KernelSet& ks = kernel::kernels_for(active_isa());
  decode_rows(ks, f, w, K, r0, r1, out);
}

void matmul(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
            float* y) {
  static const kernel::KernelSet& ks = kernel::kernels_for(active_isa());
  kernel::run(ks, f, w, M, K, x, N, y);
}

}  // namespace lowbit
