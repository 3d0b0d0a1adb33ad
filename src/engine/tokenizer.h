// Text <-> token ids for SentencePiece-style vocabularies (tokenizer.ggml.model "llama"): the
// text gets a dummy-prefix space, spaces become U+2581, then adjacent symbols are merged best
// score first (leftmost on ties) while their concatenation is a token; symbols left that are not
// tokens fall back to <0xHH> byte tokens (or unk). Byte-level BPE ("gpt2") comes later.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "lowbit/tokenizer_data.h"

namespace lowbit {

class Tokenizer {
 public:
  explicit Tokenizer(const TokenizerData& data);  // throws Error for unsupported models
  std::vector<int32_t> encode(std::string_view text, bool add_bos) const;
  std::string decode(const std::vector<int32_t>& ids) const;  // byte-exact inverse of encode
  const TokenizerData& data() const { return d_; }

 private:
  const TokenizerData& d_;
  std::unordered_map<std::string, int32_t> ids_;
  int32_t byte_ids_[256];
};

}  // namespace lowbit
