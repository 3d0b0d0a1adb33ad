// The one error type of lowbit: what went wrong, with the file, field and byte offset it concerns,
// and what was expected versus found. Untrusted input always surfaces as lowbit::Error; invariant
// violations inside lowbit abort through LOWBIT_CHECK with file:line instead.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace lowbit {

struct ErrorContext {
  std::string file;      // path of the input, or a logical source ("argument --type")
  std::string field;     // the field or value concerned ("tensor_count", "row 3")
  int64_t offset = -1;   // byte (or element) offset within the file, -1 when not meaningful
  std::string expected;  // what a valid input has there
  std::string found;     // what was found instead
};

class Error : public std::runtime_error {
 public:
  Error(std::string what, ErrorContext ctx = {});
  const ErrorContext& context() const { return ctx_; }
  const std::string& summary() const { return summary_; }

 private:
  static std::string format(const std::string& what, const ErrorContext& ctx);
  std::string summary_;
  ErrorContext ctx_;
};

[[noreturn]] void check_failed(const char* expr, const char* file, int line, const char* msg);

}  // namespace lowbit

// Invariants of lowbit itself (never of input): abort with file:line.
#define LOWBIT_CHECK(cond, msg)                                         \
  do {                                                                  \
    if (!(cond)) ::lowbit::check_failed(#cond, __FILE__, __LINE__, msg); \
  } while (0)
