// Overflow reporting for checked arithmetic.
#include "lowbit/checked.h"

namespace lowbit {

void throw_overflow(const char* op, uint64_t a, uint64_t b, const ErrorContext& ctx) {
  ErrorContext c = ctx;
  c.found = std::to_string(a) + " " + op + " " + std::to_string(b) + " overflows 64 bits";
  if (c.expected.empty()) c.expected = "sizes that fit in 64 bits";
  throw Error("size arithmetic overflow", c);
}

}  // namespace lowbit
