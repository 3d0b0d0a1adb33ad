// Number formats: the public view of the list in src/format/formats.h. A Format is one entry of
// that list plus, for grouped families (int2/3/4/8), a group size. A row of K values is stored as
// consecutive blocks of block_elems(K) values; grouped formats allow a shorter (ragged) last
// block, fixed-block formats require K % block == 0 (can_tile) and otherwise name a fallback.
//
// The method interface (what GPTQ/AWQ drive): per block, fit() chooses and stores the block's
// parameters (scales, minimums) from weights and importance; round_value() gives the value a
// weight would take under those stored parameters; encode() writes the codes given the stored
// parameters; decode() is the dequantizer. RTN = fit + encode.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace lowbit {

inline constexpr uint32_t kPrivateTypeBase = 0x4C400000u;  // "L@": lowbit's own GGUF type ids
inline constexpr uint32_t kMaxGroupElems = 0xFFFFu;         // group sizes fit the private id

struct FormatInfo {
  std::string_view name;         // "q4_k"; grouped families: "int4", "int4_asym"
  std::string_view description;  // one line
  uint32_t type_id;              // GGUF type: ggml's id, or lowbit's private id (group in low 16)
  int64_t block_elems;           // fixed block length; 0 = grouped (group chosen per Format)
  bool activation_only;          // Q8_K / Q8_1: activation blocks for integer dot products
  std::string_view fallback;     // used when a row cannot be tiled ("" = tiles everything)
  double nominal_bits;           // bits per weight for a full block (grouped: at group 32)

  uint64_t (*block_bytes)(int64_t n);  // bytes of a block holding n values
  void (*fit)(const float* x, const float* w, int64_t n, void* block);
  float (*round_value)(float x, const void* block, int64_t n, int64_t i);
  void (*encode)(const float* x, int64_t n, void* block);
  void (*decode)(const void* block, int64_t n, float* y);
};

std::span<const FormatInfo> all_formats();

class Format {
 public:
  // "q4_0", "f16", "nf4", "int4_g128", "int3_g32_asym", "int8" (per-row scale). Throws Error.
  static Format parse(std::string_view name);
  static std::optional<Format> find(std::string_view name);
  // GGUF tensor type id -> format (ggml ids and lowbit's private ids); nullopt if unknown.
  static std::optional<Format> from_gguf_type(uint32_t type_id);

  Format();  // f32
  Format(const FormatInfo& info, uint32_t group_elems = 0);

  const FormatInfo& info() const { return *info_; }
  std::string name() const;
  uint32_t gguf_type() const;
  bool is_ggml_type() const { return info_->type_id < kPrivateTypeBase; }  // llama.cpp loads it
  bool grouped() const { return info_->block_elems == 0; }
  uint32_t group_elems() const { return group_; }  // 0 = whole row (grouped families)

  int64_t block_elems(int64_t K) const;  // the block (group) length used for rows of K
  bool can_tile(int64_t K) const;
  uint64_t row_bytes(int64_t K) const;  // checked; K must be tileable
  double bits_per_weight(int64_t K) const;
  // This format if it tiles rows of K, else the first of its fallback chain that does.
  Format resolve_for_row(int64_t K) const;

  // rows x K floats -> rows * row_bytes(K) bytes. imp: per-column importance (K) or nullptr.
  // Throws Error on NaN/Inf input (naming row and column) or untileable K. Threaded over rows.
  void quantize(const float* x, int64_t rows, int64_t K, const float* imp, void* dst) const;
  void dequantize(const void* src, int64_t rows, int64_t K, float* dst) const;
  // One row, no checks beyond tiling (for methods that manage their own loops).
  void quantize_row(const float* x, int64_t K, const float* imp, void* dst) const;
  void dequantize_row(const void* src, int64_t K, float* dst) const;

  bool operator==(const Format& o) const { return info_ == o.info_ && group_ == o.group_; }

 private:
  const FormatInfo* info_;
  uint32_t group_;
};

}  // namespace lowbit
