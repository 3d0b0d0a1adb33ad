// The runtime registry derived from formats.h, and Format: names, GGUF ids, row layout, tiling,
// fallbacks, and the whole-tensor quantize/dequantize loops.
#include "lowbit/format.h"

#include <array>
#include <charconv>
#include <cmath>
#include <vector>

#include "format/formats.h"
#include "lowbit/checked.h"
#include "lowbit/error.h"
#include "lowbit/threads.h"

namespace lowbit {

namespace {

template <typename T>
constexpr FormatInfo make_info() {
  constexpr auto& t = T::kTraits;
  const int64_t nominal_n = t.block_elems > 0 ? t.block_elems : 32;
  return FormatInfo{
      .name = t.name,
      .description = t.description,
      .type_id = t.type_id,
      .block_elems = t.block_elems,
      .activation_only = t.activation_only,
      .fallback = t.fallback,
      .nominal_bits = 8.0 * double(T::block_bytes(nominal_n)) / double(nominal_n),
      .block_bytes = &T::block_bytes,
      .fit = &T::fit,
      .round_value = &T::round_value,
      .encode = &T::encode,
      .decode = &T::decode,
  };
}

const std::array<FormatInfo, size_t(FormatId::kCount)>& registry() {
  using namespace formats;
  static const std::array<FormatInfo, size_t(FormatId::kCount)> infos = {
#define LOWBIT_X(T) make_info<T>(),
      LOWBIT_FORMAT_LIST(LOWBIT_X)
#undef LOWBIT_X
  };
  return infos;
}

const FormatInfo* find_family(std::string_view name) {
  for (const auto& f : registry()) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool is_finite_all(const float* x, int64_t n, int64_t& bad) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      bad = i;
      return false;
    }
  }
  return true;
}

}  // namespace

std::span<const FormatInfo> all_formats() { return registry(); }

Format::Format() : Format(registry()[0]) {}

Format::Format(const FormatInfo& info, uint32_t group_elems) : info_(&info), group_(group_elems) {
  LOWBIT_CHECK(info.block_elems == 0 || group_elems == 0, "group size on a fixed-block format");
}

std::optional<Format> Format::find(std::string_view name) {
  // Grouped families: <family>[_g<N>][_asym], e.g. int4_g128_asym; "int8" = one group per row.
  std::string_view rest = name;
  bool asym = false;
  if (rest.size() > 5 && rest.substr(rest.size() - 5) == "_asym") {
    asym = true;
    rest.remove_suffix(5);
  }
  uint32_t group = 0;
  if (const auto g = rest.rfind("_g"); g != std::string_view::npos && g + 2 < rest.size()) {
    const std::string_view digits = rest.substr(g + 2);
    uint64_t v = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec == std::errc() && ptr == digits.data() + digits.size()) {
      if (v == 0 || v > kMaxGroupElems) return std::nullopt;
      group = uint32_t(v);
      rest = rest.substr(0, g);
    }
  }
  std::string family(rest);
  if (asym) family += "_asym";
  const FormatInfo* info = find_family(family);
  if (info == nullptr) return std::nullopt;
  if (info->block_elems != 0 && (group != 0 || family != name)) {
    // Fixed-block formats take no suffix (and "q4_0_asym" is not a name).
    return find_family(name) ? std::optional<Format>(Format(*find_family(name))) : std::nullopt;
  }
  return Format(*info, group);
}

Format Format::parse(std::string_view name) {
  if (auto f = find(name)) return *f;
  throw Error("unknown number format", {.file = "format name",
                                        .field = std::string(name),
                                        .expected = "a name listed by `lowbit formats` (e.g. "
                                                    "q4_k, iq4_nl, nf4, int4_g128, int3_g32_asym)"});
}

std::optional<Format> Format::from_gguf_type(uint32_t type_id) {
  const bool priv = type_id >= kPrivateTypeBase;
  for (const auto& f : registry()) {
    if (!priv && f.type_id == type_id) return Format(f);
    if (priv && f.type_id == (type_id & ~kMaxGroupElems)) {
      const uint32_t group = type_id & kMaxGroupElems;
      if (f.block_elems != 0 && group != 0) return std::nullopt;
      return Format(f, group);
    }
  }
  return std::nullopt;
}

std::string Format::name() const {
  if (!grouped()) return std::string(info_->name);
  std::string base(info_->name);
  const bool asym = base.size() > 5 && base.substr(base.size() - 5) == "_asym";
  if (asym) base.resize(base.size() - 5);
  if (group_ != 0) base += "_g" + std::to_string(group_);
  return asym ? base + "_asym" : base;
}

uint32_t Format::gguf_type() const {
  return info_->type_id | group_;
}

int64_t Format::block_elems(int64_t K) const {
  if (!grouped()) return info_->block_elems;
  return group_ == 0 ? K : std::min<int64_t>(group_, K);
}

bool Format::can_tile(int64_t K) const {
  if (K <= 0) return false;
  return grouped() || K % info_->block_elems == 0;
}

uint64_t Format::row_bytes(int64_t K) const {
  const ErrorContext ctx{.field = "row of " + std::to_string(K) + " values of " + name()};
  if (!can_tile(K)) {
    throw Error("row length cannot be tiled by the format's blocks",
                {.field = ctx.field,
                 .expected = "a multiple of " + std::to_string(info_->block_elems),
                 .found = std::to_string(K)});
  }
  const int64_t be = block_elems(K);
  const uint64_t full = uint64_t(K / be), tail = uint64_t(K % be);
  uint64_t bytes = checked_mul(full, info_->block_bytes(be), ctx);
  if (tail != 0) bytes = checked_add(bytes, info_->block_bytes(int64_t(tail)), ctx);
  return bytes;
}

double Format::bits_per_weight(int64_t K) const {
  return 8.0 * double(row_bytes(K)) / double(K);
}

Format Format::resolve_for_row(int64_t K) const {
  Format f = *this;
  for (int hops = 0; !f.can_tile(K); ++hops) {
    LOWBIT_CHECK(hops < 8 && !f.info_->fallback.empty(), "fallback chain does not terminate");
    f = parse(f.info_->fallback);
  }
  return f;
}

void Format::quantize_row(const float* x, int64_t K, const float* imp, void* dst) const {
  const int64_t be = block_elems(K);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t k0 = 0; k0 < K; k0 += be) {
    const int64_t n = std::min(be, K - k0);
    info_->fit(x + k0, imp ? imp + k0 : nullptr, n, out);
    info_->encode(x + k0, n, out);
    out += info_->block_bytes(n);
  }
}

void Format::dequantize_row(const void* src, int64_t K, float* dst) const {
  const int64_t be = block_elems(K);
  const auto* in = static_cast<const uint8_t*>(src);
  if (info_->block_elems == 1) {  // float formats: one value per block, decoded as one run
    info_->decode(in, K, dst);
    return;
  }
  for (int64_t k0 = 0; k0 < K; k0 += be) {
    const int64_t n = std::min(be, K - k0);
    info_->decode(in, n, dst + k0);
    in += info_->block_bytes(n);
  }
}

void Format::quantize(const float* x, int64_t rows, int64_t K, const float* imp,
                      void* dst) const {
  const uint64_t rb = row_bytes(K);
  checked_mul(uint64_t(rows), uint64_t(K));
  checked_mul(uint64_t(rows), rb);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t bad;
    if (!is_finite_all(x + r * K, K, bad)) {
      throw Error("cannot quantize a non-finite value",
                  {.field = "row " + std::to_string(r) + ", column " + std::to_string(bad),
                   .offset = r * K + bad,
                   .expected = "a finite number",
                   .found = std::to_string(x[r * K + bad])});
    }
  }
  for (int64_t i = 0; imp != nullptr && i < K; ++i) {
    if (!(imp[i] >= 0) || !std::isfinite(imp[i])) {
      throw Error("invalid importance weight", {.field = "importance, column " + std::to_string(i),
                                                .offset = i,
                                                .expected = "a finite value >= 0",
                                                .found = std::to_string(imp[i])});
    }
  }
  // Every row is decoded again and checked: a value or scale beyond the format's range (an fp16
  // scale overflowing, say) is reported, never written as Inf.
  auto* out = static_cast<uint8_t*>(dst);
  parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> back(static_cast<size_t>(K));
    for (int64_t r = r0; r < r1; ++r) {
      quantize_row(x + r * K, K, imp, out + uint64_t(r) * rb);
      dequantize_row(out + uint64_t(r) * rb, K, back.data());
      int64_t bad;
      if (!is_finite_all(back.data(), K, bad)) {
        throw Error("value out of the range of format " + name(),
                    {.field = "row " + std::to_string(r) + ", column " + std::to_string(bad),
                     .offset = r * K + bad,
                     .expected = "magnitudes the format's scales can represent",
                     .found = std::to_string(x[r * K + bad])});
      }
    }
  });
}

void Format::dequantize(const void* src, int64_t rows, int64_t K, float* dst) const {
  const uint64_t rb = row_bytes(K);
  const auto* in = static_cast<const uint8_t*>(src);
  parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) dequantize_row(in + uint64_t(r) * rb, K, dst + r * K);
  });
}

}  // namespace lowbit
