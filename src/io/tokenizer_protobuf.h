// A bounds-checked reader of protobuf wire format (varints, fixed32/64, length-delimited), for
// parsing SentencePiece .model files by hand. Every read is checked against the bytes left of the
// enclosing message and fails with lowbit::Error naming the file, the field and the byte offset.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>

#include "lowbit/error.h"

namespace lowbit {

enum class WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLen = 2, kFixed32 = 5 };

struct ProtoKey {
  uint32_t field = 0;
  WireType wire = WireType::kVarint;
  uint64_t offset = 0;  // file offset of the key
};

class ProtoReader {
 public:
  // bytes: one message; base: its offset in the file (for error messages); name: the message's
  // path in the model ("pieces[3]").
  ProtoReader(std::span<const uint8_t> bytes, uint64_t base, const std::string& path,
              std::string name)
      : bytes_(bytes), base_(base), path_(path), name_(std::move(name)) {}

  bool done() const { return pos_ == bytes_.size(); }
  uint64_t offset() const { return base_ + pos_; }
  const std::string& name() const { return name_; }

  ProtoKey key() {
    const uint64_t at = offset();
    const uint64_t k = varint("key");
    const uint64_t field = k >> 3, wire = k & 7;
    if (field == 0 || field > 0x1FFFFFFF)
      fail("invalid field number", "key", at, "1..2^29-1", std::to_string(field));
    if (wire != 0 && wire != 1 && wire != 2 && wire != 5) {
      fail("unsupported protobuf wire type", "tag " + std::to_string(field), at,
           "0 (varint), 1 (fixed64), 2 (length-delimited) or 5 (fixed32)", std::to_string(wire));
    }
    return {uint32_t(field), WireType(uint32_t(wire)), at};
  }

  uint64_t varint(const std::string& field) {
    const uint64_t at = offset();
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (done()) fail("truncated varint", field, at, "a complete varint", "end of message");
      const uint8_t b = bytes_[pos_++];
      if (i == 9 && b > 1) fail("varint overflows 64 bits", field, at, "at most 10 bytes", "more");
      v |= uint64_t(b & 0x7F) << (7 * i);
      if (b < 0x80) return v;
    }
    fail("varint overflows 64 bits", field, at, "at most 10 bytes", "more");
  }

  uint32_t fixed32(const std::string& field) {
    uint32_t v;
    std::memcpy(&v, take(4, field).data(), 4);
    return v;
  }

  std::span<const uint8_t> len_delimited(const std::string& field) {
    const uint64_t at = offset();
    const uint64_t n = varint(field + " length");
    if (n > bytes_.size() - pos_) {
      fail("length runs past the end of the enclosing message", field, at,
           "at most " + std::to_string(bytes_.size() - pos_) + " bytes", std::to_string(n));
    }
    return take(n, field);
  }

  // Skips the value of an unknown field.
  void skip(const ProtoKey& k) {
    const std::string field = "tag " + std::to_string(k.field);
    switch (k.wire) {
      case WireType::kVarint:
        varint(field);
        break;
      case WireType::kFixed64:
        take(8, field);
        break;
      case WireType::kLen:
        len_delimited(field);
        break;
      case WireType::kFixed32:
        take(4, field);
        break;
    }
  }

  // The key's wire type must be `want`, or Error.
  void expect(const ProtoKey& k, WireType want, const std::string& field) const {
    if (k.wire != want) {
      fail("wrong protobuf wire type", field, k.offset, std::to_string(uint32_t(want)),
           std::to_string(uint32_t(k.wire)));
    }
  }

  [[noreturn]] void fail(const std::string& what, const std::string& field, uint64_t at,
                         std::string expected, std::string found) const {
    throw Error(what, {.file = path_,
                       .field = name_ + (name_.empty() ? "" : ".") + field,
                       .offset = int64_t(at),
                       .expected = std::move(expected),
                       .found = std::move(found)});
  }

 private:
  std::span<const uint8_t> take(uint64_t n, const std::string& field) {
    if (n > bytes_.size() - pos_) {
      fail("truncated field", field, offset(), std::to_string(n) + " bytes",
           std::to_string(bytes_.size() - pos_) + " bytes left");
    }
    const auto s = bytes_.subspan(pos_, n);
    pos_ += n;
    return s;
  }

  std::span<const uint8_t> bytes_;
  uint64_t pos_ = 0;
  uint64_t base_;
  std::string path_;
  std::string name_;
};

}  // namespace lowbit
