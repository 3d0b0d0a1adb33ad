// lowbit::Error formatting and the invariant-failure path.
#include "lowbit/error.h"

#include <cstdio>
#include <cstdlib>

namespace lowbit {

Error::Error(std::string what, ErrorContext ctx)
    : std::runtime_error(format(what, ctx)), summary_(std::move(what)), ctx_(std::move(ctx)) {}

std::string Error::format(const std::string& what, const ErrorContext& ctx) {
  std::string s;
  if (!ctx.file.empty()) s += ctx.file + ": ";
  s += what;
  if (!ctx.field.empty()) s += " [field " + ctx.field;
  if (ctx.offset >= 0) s += (ctx.field.empty() ? " [" : ", ") + std::string("offset ") +
                             std::to_string(ctx.offset);
  if (!ctx.field.empty() || ctx.offset >= 0) s += "]";
  if (!ctx.expected.empty()) s += ": expected " + ctx.expected;
  if (!ctx.found.empty()) s += (ctx.expected.empty() ? ": found " : ", found ") + ctx.found;
  return s;
}

void check_failed(const char* expr, const char* file, int line, const char* msg) {
  std::fprintf(stderr, "lowbit internal error at %s:%d: %s (%s)\n", file, line, msg, expr);
  std::abort();
}

}  // namespace lowbit
