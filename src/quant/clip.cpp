#include "quant/clip.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/threads.h"
#include "quant/blas_threads.h"
#include "quant/output_error.h"

namespace lowbit {

void clip_quantize(const Format& f, const float* W, int64_t rows, int64_t K, const double* H,
                   const float* imp, const ClipOptions& o, uint8_t* out, int64_t imp_stride) {
  LOWBIT_CHECK(f.can_tile(K), "clip_quantize: the format cannot tile the row");
  LOWBIT_CHECK(o.grid >= 1 && o.max_shrink >= 0 && o.max_shrink < 1, "clip_quantize: bad options");
  const FormatInfo& info = f.info();
  const int64_t be = f.block_elems(K);
  const uint64_t row_bytes = f.row_bytes(K);
  const int steps = int(o.max_shrink * o.grid + 1e-9);
  std::vector<float> ones;
  if (!imp) ones.assign(static_cast<size_t>(K), 1.0f), imp = ones.data(), imp_stride = 0;
  parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
    std::vector<float> wc(static_cast<size_t>(be)), y(static_cast<size_t>(be));
    std::vector<double> d(static_cast<size_t>(be));
    std::vector<uint8_t> cand(info.block_bytes(be));
    for (int64_t r = r0; r < r1; ++r) {
      const float* w = W + r * K;
      uint8_t* dst = out + uint64_t(r) * row_bytes;
      for (int64_t k0 = 0; k0 < K; k0 += be) {
        const int64_t n = std::min(be, K - k0);
        const uint64_t bytes = info.block_bytes(n);
        const auto [lo, hi] = std::minmax_element(w + k0, w + k0 + n);
        double best = std::numeric_limits<double>::infinity();
        for (int i = 0; i <= steps; ++i) {
          const float ratio = float(1.0 - double(i) / o.grid);
          const float a = *lo * ratio, b = *hi * ratio;
          for (int64_t j = 0; j < n; ++j) wc[size_t(j)] = std::clamp(w[k0 + j], a, b);
          info.fit(wc.data(), imp + r * imp_stride + k0, n, cand.data());
          info.encode(wc.data(), n, cand.data());
          info.decode(cand.data(), n, y.data());
          for (int64_t j = 0; j < n; ++j) d[size_t(j)] = double(y[size_t(j)]) - w[k0 + j];
          double e = 0;  // dᵀ H_b d over the block's diagonal block of H
          for (int64_t p = 0; p < n; ++p) {
            const double* hp = H + (k0 + p) * K + k0;
            double s = 0;
            for (int64_t q = 0; q < n; ++q) s += hp[q] * d[size_t(q)];
            e += d[size_t(p)] * s;
          }
          if (i == 0 || e < best) best = e, std::memcpy(dst, cand.data(), bytes);
        }
        dst += bytes;
      }
    }
  });
}

void weighting_quantize(const Format& f, const float* W, int64_t rows, int64_t K, const double* H,
                        const float* imp, uint8_t* out, const ClipOptions* clip) {
  // Candidate 0, the plain fit: validated (finite inputs, representable) by Format::quantize.
  // Without importance there is nothing to weigh: the plain fit, or the clipping search alone.
  if (imp == nullptr && clip) return clip_quantize(f, W, rows, K, H, nullptr, *clip, out);
  f.quantize(W, rows, K, imp, out);
  if (imp == nullptr || rows == 0) return;
  const uint64_t rb = f.row_bytes(K);
  const std::vector<float> Hf(H, H + K * K);
  const SingleBlasThread one_blas_thread;  // each OpenMP thread runs its own panels' products
  constexpr int64_t kPanel = 64;
  parallel_for_dynamic(rows, kPanel, [&](int64_t r0, int64_t r1) {
    const int64_t P = std::min(kPanel, r1 - r0);
    std::vector<float> D(static_cast<size_t>(P * K)), HD(D.size()), sig(D.size()), chosen(D.size());
    std::vector<uint8_t> cand(rb * uint64_t(P));
    std::vector<double> best(static_cast<size_t>(P)), err(static_cast<size_t>(P));
    std::vector<char> ok(static_cast<size_t>(P));
    std::vector<int> which(static_cast<size_t>(P));
    // err[r] = δ_r H δ_rᵀ, δ_r = the dequantized row r of q (rows rb bytes apart) minus the
    // weights; ok[r]: the row decoded to finite values.
    auto errors = [&](const uint8_t* q, const float* Wp, int64_t R) {
      for (int64_t r = 0; r < R; ++r) {
        float* d = &D[size_t(r * K)];
        f.dequantize_row(q + rb * uint64_t(r), K, d);
        bool finite = true;
        for (int64_t k = 0; k < K; ++k) finite &= std::isfinite(d[k]), d[k] -= Wp[r * K + k];
        ok[size_t(r)] = finite;
        if (!finite) std::fill_n(d, K, 0.0f);
      }
      row_output_errors(D.data(), R, K, Hf.data(), HD.data(), err.data());
    };
    // Keeps the candidate rows in cand whose error is below the best so far (tag c).
    auto keep_better = [&](int64_t p0, int64_t R, int c) {
      for (int64_t r = 0; r < R; ++r) {
        if (ok[size_t(r)] && err[size_t(r)] < best[size_t(r)]) {
          best[size_t(r)] = err[size_t(r)], which[size_t(r)] = c;
          std::memcpy(out + uint64_t(p0 + r) * rb, &cand[rb * uint64_t(r)], rb);
        }
      }
    };
    for (int64_t p0 = r0; p0 < r1; p0 += P) {
      const int64_t R = std::min(P, r1 - p0);
      const float* Wp = W + p0 * K;
      errors(out + uint64_t(p0) * rb, Wp, R);
      std::copy_n(err.begin(), R, best.begin());
      std::fill_n(which.begin(), R, 0);
      for (int64_t r = 0; r < R; ++r) {  // weighting 1: imp_j · sqrt(σ² + w_j²), per row
        const float* w = Wp + r * K;
        double s2 = 0;
        for (int64_t k = 0; k < K; ++k) s2 += double(w[k]) * w[k];
        s2 /= double(K);
        for (int64_t k = 0; k < K; ++k)
          sig[size_t(r * K + k)] = float(imp[k] * std::sqrt(s2 + double(w[k]) * w[k]));
      }
      for (int c = 1; c <= 2; ++c) {  // c == 2: unweighted
        for (int64_t r = 0; r < R; ++r)
          f.quantize_row(Wp + r * K, K, c == 1 ? &sig[size_t(r * K)] : nullptr,
                         &cand[rb * uint64_t(r)]);
        errors(cand.data(), Wp, R);
        keep_better(p0, R, c);
      }
      if (!clip) continue;
      // AWQ: the clipping search under each row's winning weighting, kept where it lowers the
      // row's output error further (the search itself judges blocks by H's diagonal blocks).
      for (int64_t r = 0; r < R; ++r) {
        float* cw = &chosen[size_t(r * K)];
        if (which[size_t(r)] == 0)
          std::copy_n(imp, K, cw);
        else if (which[size_t(r)] == 1)
          std::copy_n(&sig[size_t(r * K)], K, cw);
        else
          std::fill_n(cw, K, 1.0f);
      }
      clip_quantize(f, Wp, R, K, H, chosen.data(), *clip, cand.data(), K);
      errors(cand.data(), Wp, R);
      keep_better(p0, R, 3);
    }
  });
}

}  // namespace lowbit
