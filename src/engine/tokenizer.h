// Text <-> token ids for SentencePiece-style vocabularies (tokenizer.ggml.model "llama": dummy
// prefix, spaces -> U+2581, symbols merged by score, or by merge rank when the vocabulary carries
// merges; <0xHH> byte fallback else unk) and byte-level BPE ("gpt2": a PCRE2 pre-tokenizer chosen
// by tokenizer.ggml.pre, bytes spelled as GPT-2's printable code points, merges by rank).
// decode(encode(x)) == x for any text the vocabulary can spell (any bytes, for "gpt2").
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lowbit/tokenizer_data.h"

namespace lowbit {

class Tokenizer {
 public:
  // Keeps a reference to data. Throws Error for unsupported models or pre-tokenizers.
  explicit Tokenizer(const TokenizerData& data);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) = delete;

  // parse_special: control, user-defined and unknown tokens written literally in the text become
  // their ids (llama.cpp's "parse special"; longest match first); the text between them is
  // encoded piece by piece, each piece after a special token getting the dummy prefix again (as
  // llama.cpp and HF's Prepend do). add_space_prefix (default: "llama" yes, "gpt2" no) prepends a
  // space that decode strips again.
  std::vector<int32_t> encode(std::string_view text, bool add_bos,
                              bool parse_special = false) const;
  // Control tokens decode to nothing; byte-exact inverse of encode without special tokens.
  std::string decode(const std::vector<int32_t>& ids) const;
  // The pre-tokenizer's pieces (raw bytes, concatenating to text); "llama" has none: {text}, or
  // {} for an empty text.
  std::vector<std::string> pretokenize(std::string_view text) const;
  const TokenizerData& data() const { return d_; }

 private:
  struct Regex;  // a compiled PCRE2 pattern
  struct Hash {  // lets ids_ be searched by string_view
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  struct Merge {
    int32_t rank, result;
  };
  struct Workspace;
  std::vector<std::string_view> split(std::string_view text) const;
  void encode_piece(std::string_view text, bool prefix, Workspace& w,
                    std::vector<int32_t>& out) const;
  void encode_span(size_t begin, size_t end, Workspace& w, std::vector<int32_t>& out) const;
  void merge(Workspace& w) const;
  void emit(const Workspace& w, std::vector<int32_t>& out) const;
  int32_t special_at(std::string_view text, size_t i) const;

  const TokenizerData& d_;
  bool byte_level_;
  bool space_prefix_;
  std::unordered_map<std::string, int32_t, Hash, std::equal_to<>> ids_;
  std::unordered_map<uint64_t, Merge> merges_;  // (left id << 32 | right id) -> rank, result
  int32_t byte_ids_[256];                       // <0xHH> tokens ("llama" byte fallback); -1 if none
  bool barrier_[256];  // ASCII bytes no token longer than one byte contains: merges stop there
  std::vector<std::vector<int32_t>> specials_;  // by first byte: special ids, longest text first
  std::unique_ptr<Regex> regex_;                // "gpt2" only
};

}  // namespace lowbit
