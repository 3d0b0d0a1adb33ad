// Scalar unpacking of the sub-block scales of the 256-value formats, one value per 16 weights
// (formats with 32-value sub-blocks repeat each scale twice): the ref tier's spec of the scale
// layouts (the x86 tiers unpack them with vector code in x86/gemm_q256.h, tested against it).
// Everything here has internal linkage (anonymous namespace): the header is included by
// translation units compiled for different instruction sets, and a shared inline copy could
// otherwise be emitted with one tier's instructions and linked into another.
#pragma once

#include <cstdint>

#include "format/kquants.h"
#include "format/ternary.h"

namespace lowbit::kernel {
namespace {

// Super-block value = d * sc[j] * v - dmin * mn[j] for value i in 16-group j = i / 16, where v
// is the signed value of the code (Q3_K: c - 4, Q6_K: c - 32, IQ4_XS: kIq4nl[c], TQ*: c - 1).
// sc and mn fit int16; mn is 0 for symmetric formats.
struct SubScales16 {
  int16_t sc[16];
  int16_t mn[16];
};

inline void sub_scales(const formats::Q2_K::Block& b, SubScales16& s) {
  for (int j = 0; j < 16; ++j)
    s.sc[j] = int16_t(b.scales[j] & 0xF), s.mn[j] = int16_t(b.scales[j] >> 4);
}

inline void sub_scales(const formats::Q3_K::Block& b, SubScales16& s) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (b.scales[j] & 0xF) : (b.scales[j - 8] >> 4);
    const int hi = (b.scales[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    s.sc[j] = int16_t((lo | (hi << 4)) - 32), s.mn[j] = 0;
  }
}

// Q4_K / Q5_K: 8 six-bit scales and mins in 12 bytes (layout in src/format/kquants.cpp).
inline void sub_scales_k4(const uint8_t* q, SubScales16& s) {
  for (int j = 0; j < 8; ++j) {
    int sc, mn;
    if (j < 4) {
      sc = q[j] & 63, mn = q[j + 4] & 63;
    } else {
      sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
      mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
    s.sc[2 * j] = s.sc[2 * j + 1] = int16_t(sc);
    s.mn[2 * j] = s.mn[2 * j + 1] = int16_t(mn);
  }
}
inline void sub_scales(const formats::Q4_K::Block& b, SubScales16& s) {
  sub_scales_k4(b.scales, s);
}
inline void sub_scales(const formats::Q5_K::Block& b, SubScales16& s) {
  sub_scales_k4(b.scales, s);
}

inline void sub_scales(const formats::Q6_K::Block& b, SubScales16& s) {
  for (int j = 0; j < 16; ++j) s.sc[j] = b.scales[j], s.mn[j] = 0;
}

inline void sub_scales(const formats::IQ4_XS::Block& b, SubScales16& s) {
  for (int j = 0; j < 8; ++j) {
    const int ls =
        ((b.scales_l[j / 2] >> (4 * (j % 2))) & 0xF) | (((b.scales_h >> (2 * j)) & 3) << 4);
    s.sc[2 * j] = s.sc[2 * j + 1] = int16_t(ls - 32);
    s.mn[2 * j] = s.mn[2 * j + 1] = 0;
  }
}

inline void sub_scales(const formats::TQ2_0::Block&, SubScales16& s) {
  for (int j = 0; j < 16; ++j) s.sc[j] = 1, s.mn[j] = 0;
}
inline void sub_scales(const formats::TQ1_0::Block&, SubScales16& s) {
  for (int j = 0; j < 16; ++j) s.sc[j] = 1, s.mn[j] = 0;
}

// fp16 fields of the super-block: d, and dmin for the affine formats (else 0).
template <typename B>
inline uint16_t super_d(const B& b) {
  return b.d;
}
template <typename B>
inline uint16_t super_dmin(const B& b) {
  if constexpr (requires { b.dmin; })
    return b.dmin;
  else
    return 0;
}

}  // namespace
}  // namespace lowbit::kernel
