// THE list of number formats. Everything else (the FormatId enum, name and GGUF-id lookup, bits
// per weight, `lowbit formats`, the per-format test instantiation) is derived from this list.
// Adding a format = its type in one file of src/format/ + one line here.
#pragma once

#include "format/float_formats.h"
#include "format/intn.h"
#include "format/kquants.h"
#include "format/legacy.h"
#include "format/ternary.h"

// X(Type): Type is a struct in lowbit::formats (see codec.h for what it declares).
#define LOWBIT_FORMAT_LIST(X) \
  X(F32)                      \
  X(F16)                      \
  X(BF16)                     \
  X(Q8_0)                     \
  X(Q8_1)                     \
  X(Q5_0)                     \
  X(Q5_1)                     \
  X(Q4_0)                     \
  X(Q4_1)                     \
  X(IQ4_NL)                   \
  X(Q6_K)                     \
  X(Q5_K)                     \
  X(Q4_K)                     \
  X(Q3_K)                     \
  X(Q2_K)                     \
  X(IQ4_XS)                   \
  X(TQ2_0)                    \
  X(TQ1_0)                    \
  X(Q8_K)                     \
  X(NF4)                      \
  X(NF4_DQ)                   \
  X(BIN1)                     \
  X(Int8)                     \
  X(Int6)                     \
  X(Int6Asym)                 \
  X(Int5)                     \
  X(Int5Asym)                 \
  X(Int4)                     \
  X(Int4Asym)                 \
  X(Int3)                     \
  X(Int3Asym)                 \
  X(Int2)                     \
  X(Int2Asym)                 \
  X(Tern)

namespace lowbit {

enum class FormatId : uint32_t {
#define LOWBIT_X(T) T,
  LOWBIT_FORMAT_LIST(LOWBIT_X)
#undef LOWBIT_X
      kCount
};

}  // namespace lowbit
