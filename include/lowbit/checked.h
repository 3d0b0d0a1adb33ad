// Checked 64-bit arithmetic for every size derived from untrusted input. Each helper either
// returns the exact result or throws lowbit::Error naming what was being computed, so a parser
// never allocates or reads with a wrapped size. Narrowing goes through checked_cast.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>

#include "lowbit/error.h"

namespace lowbit {

[[noreturn]] void throw_overflow(const char* op, uint64_t a, uint64_t b, const ErrorContext& ctx);

inline uint64_t checked_add(uint64_t a, uint64_t b, const ErrorContext& ctx = {}) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) throw_overflow("+", a, b, ctx);
  return r;
}

inline uint64_t checked_sub(uint64_t a, uint64_t b, const ErrorContext& ctx = {}) {
  uint64_t r;
  if (__builtin_sub_overflow(a, b, &r)) throw_overflow("-", a, b, ctx);
  return r;
}

inline uint64_t checked_mul(uint64_t a, uint64_t b, const ErrorContext& ctx = {}) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) throw_overflow("*", a, b, ctx);
  return r;
}

// ceil(a / b), b > 0; cannot overflow.
inline uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// Round a up to a multiple of align (align > 0), checked.
inline uint64_t checked_align_up(uint64_t a, uint64_t align, const ErrorContext& ctx = {}) {
  const uint64_t rem = a % align;
  return rem == 0 ? a : checked_add(a, align - rem, ctx);
}

// Value-preserving conversion between integer types, or Error.
template <typename To, typename From>
To checked_cast(From v, const ErrorContext& ctx = {}) {
  static_assert(std::is_integral_v<To> && std::is_integral_v<From>);
  if (!std::in_range<To>(v)) {
    ErrorContext c = ctx;
    c.found = std::to_string(v);
    c.expected = "a value in [" + std::to_string(std::numeric_limits<To>::min()) + ", " +
                 std::to_string(std::numeric_limits<To>::max()) + "]";
    throw Error("value out of range", c);
  }
  return static_cast<To>(v);
}

}  // namespace lowbit
