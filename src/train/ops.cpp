// Forward and backward of each training step (ops.h). The derivations are in the comments beside
// each backward; the gradient checks in tests/train_test.cpp hold them to finite differences.
#include "train/ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "kernel/matmul.h"
#include "lowbit/error.h"
#include "lowbit/threads.h"
#include "quant/blas_threads.h"

namespace lowbit::train {

namespace {

void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
          int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}
void blas(bool ta, bool tb, int64_t M, int64_t N, int64_t K, double alpha, const double* A,
          int64_t lda, const double* B, int64_t ldb, double beta, double* C, int64_t ldc) {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M),
              int(N), int(K), alpha, A, int(lda), B, int(ldb), beta, C, int(ldc));
}

// C (M, N) = alpha * op(A) · op(B) + beta * C, row-major. The output's rows (or, when there are
// few, its columns) are split over the OpenMP threads, each running single-threaded BLAS on its
// panel: one thread pool for the whole step (OpenBLAS's own pool, idle between calls, spun in
// sched_yield against OpenMP's threads: 4% of a step's time). Each element is computed by the
// same kernel over the same K whatever the split.
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T* A, int64_t lda,
          const T* B, int64_t ldb, T beta, T* C, int64_t ldc) {
  const SingleBlasThread one_blas_thread;
  const int64_t threads = max_threads();
  if (M >= 16 * threads || M >= N) {
    parallel_for(M, std::max<int64_t>(16, (M + threads - 1) / threads),
                 [&](int64_t m0, int64_t m1) {
                   const T* a = ta ? A + m0 : A + m0 * lda;  // row m of op(A)
                   blas(ta, tb, m1 - m0, N, K, alpha, a, lda, B, ldb, beta, C + m0 * ldc, ldc);
                 });
  } else {
    parallel_for(N, std::max<int64_t>(16, (N + threads - 1) / threads),
                 [&](int64_t n0, int64_t n1) {
                   const T* b = tb ? B + n0 * ldb : B + n0;  // column n of op(B)
                   blas(ta, tb, M, n1 - n0, K, alpha, A, lda, b, ldb, beta, C + n0, ldc);
                 });
  }
}

template <typename T>
T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// The RoPE angle of pair i at position p, in double (as the engine's angles are exact to float).
inline void angle(int32_t p, double inv_freq, double& c, double& s) {
  const double th = double(p) * inv_freq;
  c = std::cos(th), s = std::sin(th);
}

// Rotates the pairs of v (B, heads, D) by +angle (dir 1) or -angle (dir -1).
template <typename T>
void rotate(T* v, const int32_t* pos, int64_t B, int64_t heads, int64_t D,
            const std::vector<double>& inv_freq, bool neox, int dir) {
  const int64_t half = D / 2, stride = neox ? 1 : 2, other = neox ? half : 1;
  // The angles of every position once (B tokens hold few distinct positions: 0 .. ctx - 1).
  int32_t top = 0;
  for (int64_t b = 0; b < B; ++b) top = std::max(top, pos[b]);
  std::vector<T> cs(static_cast<size_t>((top + 1) * half)), sn(cs.size());
  for (int32_t p = 0; p <= top; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      double c, s;
      angle(p, inv_freq[size_t(i)], c, s);
      cs[size_t(p * half + i)] = T(c), sn[size_t(p * half + i)] = T(dir * s);
    }
  }
  parallel_for(B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T *cb = cs.data() + pos[b] * half, *sb = sn.data() + pos[b] * half;
      for (int64_t h = 0; h < heads; ++h) {
        T* vh = v + (b * heads + h) * D;
        for (int64_t i = 0; i < half; ++i) {
          T* p = vh + stride * i;
          const T a = p[0], z = p[other], c = cb[i], s = sb[i];
          p[0] = a * c - z * s;
          p[other] = a * s + z * c;
        }
      }
    }
  });
}

}  // namespace

template <typename T>
void matrix_rows(const Matrix<T>& W, int64_t K, int64_t r0, int64_t r1, T* out) {
  if (!W.stored()) {
    std::copy(W.dense + r0 * K, W.dense + r1 * K, out);
    return;
  }
  parallel_for(r1 - r0, 4, [&](int64_t a, int64_t b) {
    if constexpr (std::is_same_v<T, float>) {
      dequantize_rows(*W.format, W.rows, K, r0 + a, r0 + b, out + a * K);
    } else {  // the decoded floats, exactly, as T
      std::vector<float> row(static_cast<size_t>(K));
      for (int64_t r = a; r < b; ++r) {
        dequantize_rows(*W.format, W.rows, K, r0 + r, r0 + r + 1, row.data());
        std::copy(row.begin(), row.end(), out + r * K);
      }
    }
  });
}

namespace {

// Rows of a stored matrix decoded at a time: a tile of at most 4 MiB (at least 16 rows).
template <typename T>
int64_t tile_rows(int64_t K, int64_t N) {
  return std::clamp<int64_t>((int64_t(4) << 20) / (K * int64_t(sizeof(T))), 16,
                             std::max<int64_t>(N, 1));
}

// body(r0, n, tile) for each tile of n rows r0.. of a stored W, decoded once into this thread's
// buffer.
template <typename T, typename Body>
void for_tiles(const Matrix<T>& W, int64_t K, int64_t N, const Body& body) {
  const int64_t R = tile_rows<T>(K, N);
  thread_local std::vector<T> tile;
  tile.resize(size_t(R * K));
  for (int64_t r0 = 0; r0 < N; r0 += R) {
    const int64_t n = std::min(R, N - r0);
    matrix_rows(W, K, r0, r0 + n, tile.data());
    body(r0, n, tile.data());
  }
}

// y (B, N) = x (B, K) · Wᵀ for a stored W: each tile's product into its columns of y.
template <typename T>
void stored_forward(const T* x, const Matrix<T>& W, int64_t B, int64_t K, int64_t N, T* y) {
  for_tiles(W, K, N, [&](int64_t r0, int64_t n, const T* tile) {
    gemm(false, true, B, n, K, T(1), x, K, tile, K, T(0), y + r0, N);
  });
}

// dx (B, K) += dy (B, N) · W for a stored W (the transposed product a frozen weight's backward
// needs): dx += dy[:, tile] · tile, tile by tile.
template <typename T>
void stored_backward(const T* dy, const Matrix<T>& W, int64_t B, int64_t K, int64_t N, T* dx) {
  for_tiles(W, K, N, [&](int64_t r0, int64_t n, const T* tile) {
    gemm(false, false, B, K, n, T(1), dy + r0, N, tile, K, T(1), dx, K);
  });
}

}  // namespace

template <typename T>
void embedding_forward(MatrixOf<T> table, const int32_t* tokens, int64_t B, int64_t C, T* x) {
  for (int64_t b = 0; b < B; ++b) matrix_rows(table, C, tokens[b], tokens[b] + 1, x + b * C);
}

// The same row may appear many times: the tokens are taken in order (one thread), so the sum's
// order, and the result, never depend on the thread count.
template <typename T>
void embedding_backward(const T* dx, const int32_t* tokens, int64_t B, int64_t C, T* dtable) {
  for (int64_t b = 0; b < B; ++b) {
    T* row = dtable + tokens[b] * C;
    const T* d = dx + b * C;
    for (int64_t i = 0; i < C; ++i) row[i] += d[i];
  }
}

template <typename T>
void rmsnorm_forward(const T* x, const T* g, int64_t B, int64_t C, double eps, T* y, T* rstd) {
  parallel_for(B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* xb = x + b * C;
      double ss = 0;
      for (int64_t i = 0; i < C; ++i) ss += double(xb[i]) * double(xb[i]);
      const T r = T(1.0 / std::sqrt(ss / double(C) + eps));
      rstd[b] = r;
      for (int64_t i = 0; i < C; ++i) y[b * C + i] = xb[i] * r * g[i];
    }
  });
}

// y_i = x_i r g_i with r = (mean(x^2) + eps)^(-1/2), so dr/dx_j = -r^3 x_j / C and
//   dx_j = r g_j dy_j - (r^3 / C) x_j sum_i dy_i g_i x_i,   dg_i = sum_b dy_i x_i r.
// dg is summed over the tokens in order on one thread (deterministic); dx in parallel.
template <typename T>
void rmsnorm_backward(const T* dy, const T* x, const T* g, const T* rstd, int64_t B, int64_t C,
                      T* dx, T* dg) {
  parallel_for(B, 16, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* xb = x + b * C;
      const T* d = dy + b * C;
      const T r = rstd[b];
      double dot = 0;
      for (int64_t i = 0; i < C; ++i) dot += double(d[i]) * double(g[i]) * double(xb[i]);
      const T k = T(double(r) * double(r) * double(r) * dot / double(C));
      for (int64_t i = 0; i < C; ++i) dx[b * C + i] += r * g[i] * d[i] - k * xb[i];
    }
  });
  if (!dg) return;
  for (int64_t b = 0; b < B; ++b) {
    const T r = rstd[b];
    for (int64_t i = 0; i < C; ++i) dg[i] += dy[b * C + i] * x[b * C + i] * r;
  }
}

template <typename T>
void linear_forward(const T* x, MatrixOf<T> W, const T* bias, int64_t B, int64_t K, int64_t N,
                    T* y) {
  if (W.stored())
    stored_forward(x, W, B, K, N, y);
  else
    gemm(false, true, B, N, K, T(1), x, K, W.dense, K, T(0), y, N);
  if (bias) {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t n = 0; n < N; ++n) y[b * N + n] += bias[n];
    }
  }
}

// y = x Wᵀ + bias: dx = dy W, dW = dyᵀ x, dbias = column sums of dy.
template <typename T>
void linear_backward(const T* dy, const T* x, MatrixOf<T> W, int64_t B, int64_t K, int64_t N, T* dx,
                     T* dW, T* dbias) {
  if (dx && W.stored())
    stored_backward(dy, W, B, K, N, dx);
  else if (dx)
    gemm(false, false, B, K, N, T(1), dy, N, W.dense, K, T(1), dx, K);
  if (dW) {
    LOWBIT_CHECK(!W.stored(), "a stored matrix is frozen: no gradient");
    gemm(true, false, N, K, B, T(1), dy, N, x, K, T(1), dW, K);
  }
  if (dbias) {
    for (int64_t b = 0; b < B; ++b) {
      for (int64_t n = 0; n < N; ++n) dbias[n] += dy[b * N + n];
    }
  }
}

template <typename T>
void lora_forward(const T* x, const T* A, const T* Bm, int64_t B, int64_t K, int64_t N, int64_t r,
                  T scale, T* u, T* y) {
  gemm(false, true, B, r, K, T(1), x, K, A, K, T(0), u, r);
  gemm(false, true, B, N, r, scale, u, r, Bm, r, T(1), y, N);
}

// y += s u Bmᵀ, u = x Aᵀ: dBm = s dyᵀ u; du = s dy Bm (= g); dA = gᵀ x; dx = g A.
template <typename T>
void lora_backward(const T* dy, const T* x, const T* A, const T* Bm, const T* u, int64_t B,
                   int64_t K, int64_t N, int64_t r, T scale, T* dx, T* dA, T* dBm) {
  if (dBm) gemm(true, false, N, r, B, scale, dy, N, u, r, T(1), dBm, r);
  if (!dx && !dA) return;
  std::vector<T> g(size_t(B * r));
  gemm(false, false, B, r, N, scale, dy, N, Bm, r, T(0), g.data(), r);
  if (dA) gemm(true, false, r, K, B, T(1), g.data(), r, x, K, T(1), dA, K);
  if (dx) gemm(false, false, B, K, r, T(1), g.data(), r, A, K, T(1), dx, K);
}

template <typename T>
void dropout(const T* x, int64_t n, double p, uint64_t key, T* out, bool accumulate) {
  const T keep_scale = T(1.0 / (1.0 - p));
  // Element i is dropped when the top 53 bits of splitmix64(key, i), as a fraction, fall below p.
  const auto threshold = uint64_t(p * double(uint64_t(1) << 53));
  parallel_for(n, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      uint64_t z = key + uint64_t(i + 1) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      const T v = (z >> 11) < threshold ? T(0) : x[i] * keep_scale;
      out[i] = accumulate ? out[i] + v : v;
    }
  });
}

template <typename T>
void act_fake_quant(const T* x, int64_t rows, int64_t K, int bits, T* out) {
  const T qmax = T((1 << (bits - 1)) - 1);
  parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * K;
      T* o = out + r * K;
      T amax = 0;
      for (int64_t i = 0; i < K; ++i) amax = std::max(amax, std::abs(xr[i]));
      if (!(amax > 0)) {
        std::fill(o, o + K, T(0));
        continue;
      }
      const T d = amax / qmax, id = qmax / amax;
      for (int64_t i = 0; i < K; ++i) o[i] = std::nearbyint(xr[i] * id) * d;
    }
  });
}

template <typename T>
void rope_forward(T* v, const int32_t* pos, int64_t B, int64_t heads, int64_t D,
                  const std::vector<double>& inv_freq, bool neox) {
  rotate(v, pos, B, heads, D, inv_freq, neox, 1);
}

// A rotation R(θ) has Jacobian R(θ); its transpose is R(-θ).
template <typename T>
void rope_backward(T* dv, const int32_t* pos, int64_t B, int64_t heads, int64_t D,
                   const std::vector<double>& inv_freq, bool neox) {
  rotate(dv, pos, B, heads, D, inv_freq, neox, -1);
}

// One work item per (sequence, KV head): it owns the KV head's dk / dv rows and its query heads'
// dq rows, so no two threads write the same gradient and the sums' order is fixed. Each head's
// products are GEMMs on the item's thread (single-threaded BLAS), by blocks of kRows query rows:
// block r meets only the keys up to its last row, so of the (L, L) square only the blocks on and
// below the diagonal are computed (5/8 of it at L = 256). Row by row over the keys (the first
// version) ran at a fraction of BLAS's rate: with 8-dimensional heads (stories260K) each row is a
// handful of short loops, and a step of stories260K spent 57% of its time in attention.
namespace {
constexpr int64_t kRows = 64;  // query rows per block
template <typename T>
void softmax_row(T* p, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    softmax(p, n);  // the engine's, on the active tier
  } else {
    T mx = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < n; ++j) mx = std::max(mx, p[j]);
    T sum = 0;
    for (int64_t j = 0; j < n; ++j) sum += p[j] = std::exp(p[j] - mx);
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < n; ++j) p[j] *= inv;
  }
}
// sum_j a[j] b[j] (n values) in 8 interleaved partial sums, added in order at the end: the
// compiler vectorizes the 8 lanes without reordering any sum (no -ffast-math needed).
template <typename T>
T dot_keys(const T* a, const T* b, int64_t n) {
  T s[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    for (int u = 0; u < 8; ++u) s[u] += a[j + u] * b[j + u];
  }
  T r = 0;
  for (int u = 0; u < 8; ++u) r += s[u];
  for (; j < n; ++j) r += a[j] * b[j];
  return r;
}
}  // namespace

// Head h of sequence s: its rows of q are (L, D) at q + (s L H + h) D with stride H D; KV head
// g's rows of k and v at k + (s L G + g) D with stride G D; P_h is (L, L). For query rows
// [i0, i1) and the keys [0, i1):
//   P_h = softmax(scale Q_h K_gᵀ, causal);  O_h = P_h V_g.
namespace {

// Rows [i0, i1) of one head's causal attention probabilities into P ((i1 - i0) x L, row i's
// columns 0..i, zeros after): what the forward computes and, without kept probabilities, the
// backward computes again (the same calls: the same bits).
template <typename T>
void probability_rows(const T* qh, const T* kg, int64_t i0, int64_t i1, int64_t H, int64_t G,
                      int64_t D, int64_t L, T scale, T* P) {
  blas(false, true, i1 - i0, i1, D, scale, qh + i0 * H * D, H * D, kg, G * D, T(0), P, L);
  for (int64_t i = i0; i < i1; ++i) {
    T* p = P + (i - i0) * L;
    softmax_row(p, i + 1);
    std::fill(p + i + 1, p + L, T(0));
  }
}

}  // namespace

template <typename T>
void attention_forward(const T* q, const T* k, const T* v, int64_t S, int64_t L, int64_t H,
                       int64_t G, int64_t D, T* out, T* probs) {
  const T scale = T(1.0 / std::sqrt(double(D)));
  const int64_t per = H / G;
  const SingleBlasThread one_blas_thread;
  parallel_for(S * G, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> block(probs ? 0 : static_cast<size_t>(std::min(L, kRows) * L));
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t s = w / G, g = w % G;
      const T *kg = k + (s * L * G + g) * D, *vg = v + (s * L * G + g) * D;
      for (int64_t h = g * per; h < (g + 1) * per; ++h) {
        const T* qh = q + (s * L * H + h) * D;
        for (int64_t i0 = 0; i0 < L; i0 += kRows) {
          const int64_t i1 = std::min(L, i0 + kRows), m = i1 - i0;
          T* Pb = probs ? probs + (s * H + h) * L * L + i0 * L : block.data();
          probability_rows(qh, kg, i0, i1, H, G, D, L, scale, Pb);
          blas(false, false, m, D, i1, T(1), Pb, L, vg, G * D, T(0),
               out + (s * L * H + h) * D + i0 * H * D, H * D);
        }
      }
    }
  });
}

// o_i = sum_j p_ij v_j, p_i = softmax(a_i), a_ij = scale q_i·k_j:
//   dp_ij = do_i·v_j;  da_ij = p_ij (dp_ij - sum_l p_il dp_il);
//   dq_i += scale sum_j da_ij k_j;  dk_j += scale sum_i da_ij q_i;  dv_j += sum_i p_ij do_i.
// As products of head h, block by block of query rows: dP = dO_h V_gᵀ, dQ_h += scale dA K_g,
// dK_g += scale dAᵀ Q_h, dV_g += P_hᵀ dO_h (dA zero above the diagonal, as P).
template <typename T>
void attention_backward(const T* dout, const T* q, const T* k, const T* v, const T* probs,
                        int64_t S, int64_t L, int64_t H, int64_t G, int64_t D, T* dq, T* dk,
                        T* dv) {
  const T scale = T(1.0 / std::sqrt(double(D)));
  const int64_t per = H / G;
  const SingleBlasThread one_blas_thread;
  parallel_for(S * G, 1, [&](int64_t w0, int64_t w1) {
    std::vector<T> dA(static_cast<size_t>(std::min(L, kRows) * L));
    std::vector<T> block(probs ? 0 : dA.size());
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t s = w / G, g = w % G;
      const T *kg = k + (s * L * G + g) * D, *vg = v + (s * L * G + g) * D;
      T *dkg = dk + (s * L * G + g) * D, *dvg = dv + (s * L * G + g) * D;
      for (int64_t h = g * per; h < (g + 1) * per; ++h) {
        const T* qh = q + (s * L * H + h) * D;
        for (int64_t i0 = 0; i0 < L; i0 += kRows) {
          const int64_t i1 = std::min(L, i0 + kRows), m = i1 - i0;
          const T *qb = qh + i0 * H * D, *dob = dout + (s * L * H + h) * D + i0 * H * D;
          const T* Pb = probs ? probs + (s * H + h) * L * L + i0 * L : block.data();
          if (!probs) probability_rows(qh, kg, i0, i1, H, G, D, L, scale, block.data());
          blas(false, true, m, i1, D, T(1), dob, H * D, vg, G * D, T(0), dA.data(), L);
          for (int64_t i = i0; i < i1; ++i) {
            const T* p = Pb + (i - i0) * L;
            T* da = dA.data() + (i - i0) * L;
            if constexpr (std::is_same_v<T, float>) {
              softmax_backward(p, da, i + 1);  // on the active tier
            } else {
              const T pdp = dot_keys(p, da, i + 1);
              for (int64_t j = 0; j <= i; ++j) da[j] = p[j] * (da[j] - pdp);
            }
            std::fill(da + i + 1, da + i1, T(0));
          }
          blas(false, false, m, D, i1, scale, dA.data(), L, kg, G * D, T(1),
               dq + (s * L * H + h) * D + i0 * H * D, H * D);
          blas(true, false, i1, D, m, scale, dA.data(), L, qb, H * D, T(1), dkg, G * D);
          blas(true, false, i1, D, m, T(1), Pb, L, dob, H * D, T(1), dvg, G * D);
        }
      }
    }
  });
}

template <typename T>
void swiglu_forward(const T* g, const T* u, int64_t n, T* out) {
  parallel_for(n, int64_t(1) << 14, [&](int64_t i0, int64_t i1) {
    if constexpr (std::is_same_v<T, float>) {  // the engine's, on the active tier
      std::copy(g + i0, g + i1, out + i0);
      swiglu(out + i0, u + i0, i1 - i0);
    } else {
      for (int64_t i = i0; i < i1; ++i) out[i] = g[i] * sigmoid(g[i]) * u[i];
    }
  });
}

// silu(g) = g σ(g), silu'(g) = σ(g) (1 + g (1 - σ(g))).
template <typename T>
void swiglu_backward(const T* dout, const T* g, const T* u, int64_t n, T* dg, T* du) {
  parallel_for(n, int64_t(1) << 14, [&](int64_t i0, int64_t i1) {
    if constexpr (std::is_same_v<T, float>) {
      // σ(g) = silu(g) / g (1/2 at g = 0), silu from the engine's vector SwiGLU with u = 1.
      std::vector<float> sg(g + i0, g + i1), one(sg.size(), 1.0f);
      swiglu(sg.data(), one.data(), i1 - i0);
      for (int64_t i = i0; i < i1; ++i) {
        const float gi = g[i], s = gi != 0.0f ? sg[size_t(i - i0)] / gi : 0.5f;
        dg[i] += dout[i] * u[i] * s * (1.0f + gi * (1.0f - s));
        du[i] += dout[i] * gi * s;
      }
      return;
    }
    for (int64_t i = i0; i < i1; ++i) {
      const T sg = sigmoid(g[i]);
      dg[i] += dout[i] * u[i] * sg * (T(1) + g[i] * (T(1) - sg));
      du[i] += dout[i] * g[i] * sg;
    }
  });
}

// loss_b = lse_b - z_b[t_b]; dz_b = grad_scale (softmax(z_b) - onehot(t_b)). Each e^x in T (float
// training: glibc's expf, or the engine's vector softmax for a whole row), the sums in double.
template <typename T>
double cross_entropy(const T* h, MatrixOf<T> W, const int32_t* targets, int64_t B, int64_t C,
                     int64_t V, int64_t slice, T grad_scale, T* dh, T* dW, std::vector<T>* scratch,
                     const T* soft) {
  slice = std::clamp<int64_t>(slice, 1, V);
  std::vector<T> own;
  std::vector<T>& z = scratch ? *scratch : own;
  z.resize(size_t(B * slice));
  std::vector<double> mx(size_t(B), -std::numeric_limits<double>::infinity()), sum(size_t(B), 0),
      target(size_t(B), 0);
  auto logits = [&](int64_t v0, int64_t n) {
    if (W.stored())
      stored_forward(h, W.from_row(v0, C), B, C, n, z.data());
    else
      gemm(false, true, B, n, C, T(1), h, C, W.dense + v0 * C, C, T(0), z.data(), n);
  };
  for (int64_t v0 = 0; v0 < V; v0 += slice) {  // pass 1: running max and sum per token
    const int64_t n = std::min(slice, V - v0);
    logits(v0, n);
    parallel_for(B, 8, [&](int64_t b0, int64_t b1) {  // tokens are independent
      for (int64_t b = b0; b < b1; ++b) {
        const T* zb = z.data() + b * n;
        double m = mx[size_t(b)];
        for (int64_t j = 0; j < n; ++j) m = std::max(m, double(zb[j]));
        double s = sum[size_t(b)] * std::exp(mx[size_t(b)] - m);
        for (int64_t j = 0; j < n; ++j) s += double(std::exp(T(double(zb[j]) - m)));
        mx[size_t(b)] = m, sum[size_t(b)] = s;
        if (soft) {  // sum_v p_v z_v, the soft targets' logit
          const T* pb = soft + b * V + v0;
          double t = 0;
          for (int64_t j = 0; j < n; ++j) t += double(pb[j]) * double(zb[j]);
          target[size_t(b)] += t;
        } else if (targets[b] >= v0 && targets[b] < v0 + n) {
          target[size_t(b)] = double(zb[targets[b] - v0]);
        }
      }
    });
  }
  double loss = 0;
  std::vector<double> lse(static_cast<size_t>(B));
  for (int64_t b = 0; b < B; ++b) {
    lse[size_t(b)] = mx[size_t(b)] + std::log(sum[size_t(b)]);
    loss += lse[size_t(b)] - target[size_t(b)];
  }
  if (!dh && !dW) return loss;
  for (int64_t v0 = 0; v0 < V; v0 += slice) {  // pass 2: dlogits, then the two products
    const int64_t n = std::min(slice, V - v0);
    if (n != V) logits(v0, n);  // one slice: z still holds the logits
    parallel_for(B, 8, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        T* zb = z.data() + b * n;
        if constexpr (std::is_same_v<T, float>) {
          if (n == V) {  // the whole row: the engine's softmax, on the active tier
            softmax(zb, n);
            if (soft) {
              for (int64_t j = 0; j < n; ++j) zb[j] = (zb[j] - soft[b * V + j]) * grad_scale;
              continue;
            }
            zb[targets[b]] -= 1.0f;
            for (int64_t j = 0; j < n; ++j) zb[j] *= grad_scale;
            continue;
          }
        }
        for (int64_t j = 0; j < n; ++j) {
          const double p = double(std::exp(T(double(zb[j]) - lse[size_t(b)])));
          const double t = soft ? double(soft[b * V + v0 + j]) : targets[b] == v0 + j ? 1.0 : 0.0;
          zb[j] = T(double(grad_scale) * (p - t));
        }
      }
    });
    if (dh)
      linear_backward(z.data(), h, W.from_row(v0, C), B, C, n, dh, static_cast<T*>(nullptr),
                      static_cast<T*>(nullptr));
    if (dW) gemm(true, false, n, C, B, T(1), z.data(), n, h, C, T(1), dW + v0 * C, C);
  }
  return loss;
}

#define LOWBIT_TRAIN_OPS(T)                                                                        \
  template void matrix_rows<T>(const Matrix<T>&, int64_t, int64_t, int64_t, T*);                   \
  template void embedding_forward<T>(Matrix<T>, const int32_t*, int64_t, int64_t, T*);             \
  template void embedding_backward<T>(const T*, const int32_t*, int64_t, int64_t, T*);             \
  template void rmsnorm_forward<T>(const T*, const T*, int64_t, int64_t, double, T*, T*);          \
  template void rmsnorm_backward<T>(const T*, const T*, const T*, const T*, int64_t, int64_t, T*,  \
                                    T*);                                                           \
  template void linear_forward<T>(const T*, Matrix<T>, const T*, int64_t, int64_t, int64_t, T*);   \
  template void linear_backward<T>(const T*, const T*, Matrix<T>, int64_t, int64_t, int64_t, T*,   \
                                   T*, T*);                                                        \
  template void lora_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t, int64_t,  \
                                T, T*, T*);                                                        \
  template void lora_backward<T>(const T*, const T*, const T*, const T*, const T*, int64_t,        \
                                 int64_t, int64_t, int64_t, T, T*, T*, T*);                        \
  template void dropout<T>(const T*, int64_t, double, uint64_t, T*, bool);                         \
  template void act_fake_quant<T>(const T*, int64_t, int64_t, int, T*);                            \
  template void rope_forward<T>(T*, const int32_t*, int64_t, int64_t, int64_t,                     \
                                const std::vector<double>&, bool);                                 \
  template void rope_backward<T>(T*, const int32_t*, int64_t, int64_t, int64_t,                    \
                                 const std::vector<double>&, bool);                                \
  template void attention_forward<T>(const T*, const T*, const T*, int64_t, int64_t, int64_t,      \
                                     int64_t, int64_t, T*, T*);                                    \
  template void attention_backward<T>(const T*, const T*, const T*, const T*, const T*, int64_t,   \
                                      int64_t, int64_t, int64_t, int64_t, T*, T*, T*);             \
  template void swiglu_forward<T>(const T*, const T*, int64_t, T*);                                \
  template void swiglu_backward<T>(const T*, const T*, const T*, int64_t, T*, T*);                 \
  template double cross_entropy<T>(const T*, Matrix<T>, const int32_t*, int64_t, int64_t, int64_t, \
                                   int64_t, T, T*, T*, std::vector<T>*, const T*);
LOWBIT_TRAIN_OPS(float)
LOWBIT_TRAIN_OPS(double)
#undef LOWBIT_TRAIN_OPS

}  // namespace lowbit::train
