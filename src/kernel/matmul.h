// The kernel layer the engine multiplies through: y = x · Wᵀ for a weight matrix W of any format.
// Shape legend: M = rows of W (output features), K = row length (reduction), N = tokens.
// matmul() runs the kernels of the instruction set chosen once at start-up (CPUID, overridable
// with LOWBIT_ISA=ref|avx2|avx512; an unknown or unsupported request falls back to the best
// supported tier with a message on stderr). Integer formats dot against activations quantized on
// the fly (8-bit blocks, see kernel/kernels.h); float formats against f32 activations; formats
// without a kernel take the generic path (rows dequantized, float dot).
// matmul_ref() is the float reference: each row of W dequantized, dotted with the f32 x.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "lowbit/format.h"
#include "lowbit/huge_pages.h"

namespace lowbit {

// w: M rows of f.row_bytes(K) bytes; x: (N, K) floats; y: (N, M) floats. Threaded over rows.
void matmul(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
            float* y);
void matmul_ref(const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x, int64_t N,
                float* y);

// Rows [r0, r1) of W (rows of f.row_bytes(K) bytes from w) decoded to f32 into out ((r1 - r0) * K
// values), bit-exact to the codec: the active tier's row decoder where it has one, else the
// codec's. Training multiplies a frozen weight of any format through tiles of decoded rows
// (src/train/ops.h: both x·Wᵀ and the backward's dy·W); one thread.
void dequantize_rows(const Format& f, const uint8_t* w, int64_t K, int64_t r0, int64_t r1,
                     float* out);

// Instruction-set tiers of the kernels. kRef is the scalar reference tier (the spec).
enum class Isa { kRef, kAvx2, kAvx512 };
inline constexpr Isa kAllIsas[] = {Isa::kRef, Isa::kAvx2, Isa::kAvx512};

const char* isa_name(Isa isa);  // "ref", "avx2", "avx512"
// avx2: AVX2+FMA+F16C; avx512: F, BW, VL, DQ, VNNI, BF16 (and the OS saves their state).
bool isa_supported(Isa isa);
Isa active_isa();          // the tier matmul() uses
const char* kernel_isa();  // isa_name(active_isa())

// matmul() on a given tier (tests, benchmarks). The tier must be supported (checked).
void matmul_isa(Isa isa, const Format& f, const uint8_t* w, int64_t M, int64_t K, const float* x,
                int64_t N, float* y);
// dequantize_rows() on a given tier (supported, checked).
void dequantize_rows_isa(Isa isa, const Format& f, const uint8_t* w, int64_t K, int64_t r0,
                         int64_t r1, float* out);

// The engine's attention on the active tier, for one query and one head of D values, against T
// keys / values stored `stride` floats apart (the summation order depends on the tier):
//   scores: out[t] = scale * sum_i q[i] * k[t * stride + i]
//   values: out[i] = sum_t p[t] * v[t * stride + i]   (out overwritten)
void attention_scores(const float* q, const float* k, int64_t stride, int64_t T, int64_t D,
                      float scale, float* out);
void attention_values(const float* p, const float* v, int64_t stride, int64_t T, int64_t D,
                      float* out);
// The feed-forward gate on the active tier, in place: g[i] = g[i] / (1 + e^-g[i]) * u[i] (the
// vector tiers' e^x is within 1.3e-7 relative of the true value; ref uses std::exp).
void swiglu(float* g, const float* u, int64_t n);
// Softmax in place on the active tier: s[i] = e^(s[i] - max) / sum (same e^x as swiglu).
void softmax(float* s, int64_t n);
// Softmax's backward on the active tier, in place: d[i] = p[i] (d[i] - sum_j p[j] d[j]), for p a
// softmax and d the gradient of its output.
void softmax_backward(const float* p, float* d, int64_t n);

// A weight matrix made ready for one tier's kernels, once, at load time. Where the tier has an
// interleaved layout for the format (x86: Q4_0, Q8_0 and Q4_K; AVX-512 also F32, F16 and BF16
// rows of even length; 8 rows per group), the first M - M % 8 rows are copied into it (the object
// owns the copy: as many bytes as those rows, 2.8% more for Q4_K);
// the other rows, and every other format, are used in place: w must outlive the object.
// The copy is in huge pages (lowbit/huge_pages.h). LOWBIT_REPACK=0 in the environment turns
// repacking off (comparisons).
class PreparedMatrix {
 public:
  PreparedMatrix(const Format& f, const uint8_t* w, int64_t M, int64_t K);  // active tier
  PreparedMatrix(Isa isa, const Format& f, const uint8_t* w, int64_t M, int64_t K);
  PreparedMatrix(PreparedMatrix&&) noexcept;
  PreparedMatrix& operator=(PreparedMatrix&&) noexcept;
  ~PreparedMatrix();

  bool repacked() const { return packed_rows_ > 0; }
  const Format& format() const { return f_; }
  int64_t rows() const { return M_; }
  int64_t row_length() const { return K_; }
  // y (N, M) = x (N, K) · Wᵀ, as matmul() (same sums; float summation order may differ).
  void multiply(const float* x, int64_t N, float* y) const;
  // ys[i] (N, rows of ms[i]) = x · ms[i]ᵀ for matrices of one input (q/k/v, gate/up): the
  // activations quantized once and every matrix in one parallel region when all are repacked for
  // one tier and activation type (else one multiply each). Same bits as separate multiplies.
  static void multiply_group(std::span<const PreparedMatrix* const> ms, const float* x, int64_t N,
                             std::span<float* const> ys);

 private:
  // Rows [r0, r1) (r0 a multiple of 16) times quantized activations (kernel::Acts, in order).
  void run_rows(const void* acts, int64_t r0, int64_t r1, float* y) const;

  Isa isa_;
  Format f_;
  const uint8_t* w_;
  int64_t M_, K_, packed_rows_ = 0;
  uint64_t group_bytes_ = 0;  // bytes of 8 repacked rows
  HugeBuffer<uint8_t> packed_;
};

}  // namespace lowbit
