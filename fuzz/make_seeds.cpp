// Writes the seed corpus fuzz/corpus/<target>/ (committed; rerun after changing fuzz_tiny.h):
//   build-fuzz/make_seeds fuzz/corpus
// Valid minimal files of every input format plus a few near misses. Each file stays small.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz_tiny.h"
#include "lowbit/format.h"

namespace fs = std::filesystem;
using namespace fuzz::tiny;

namespace {

fs::path g_root;

void seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::FILE* f = std::fopen((dir / name).c_str(), "wb");
  if (!f || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f)) {
    std::fprintf(stderr, "cannot write %s\n", (dir / name).c_str());
    std::exit(1);
  }
}

std::string u32(uint32_t v) {
  std::string s;
  put(s, v);
  return s;
}
std::string u64(uint64_t v) {
  std::string s;
  put(s, v);
  return s;
}

void gguf_seeds() {
  const std::string model = gguf_model();
  seed("gguf", "tiny_model.gguf", model);
  seed("gguf", "truncated.gguf", model.substr(0, model.size() - 100));
  std::string v1 = model;
  v1[4] = 1;
  seed("gguf", "version1.gguf", v1);

  Gguf vocab;  // tokenizer only, no tensors, ends right after the metadata
  vocab.kv_str("general.architecture", "llama");
  vocab.kv_str("tokenizer.ggml.model", "gpt2");
  vocab.kv_str_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<0x0A>"});
  vocab.kv_str_array("tokenizer.ggml.merges", {"a b"});
  vocab.kv_array<int32_t>("tokenizer.ggml.token_type", 5, {1, 1, 1, 6});
  vocab.kv_u32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
  seed("gguf", "vocab_only.gguf", vocab.bytes());

  // Every metadata type, nested arrays, a non-default alignment, one tensor per format family.
  for (const size_t align : {64, 32}) {  // 32: misaligned for the declared 64, a near miss
    Gguf g(align);
    g.kv_raw("general.alignment", u32(4) + u32(64));
    g.kv_raw("t.u8", u32(0) + "\x07");
    g.kv_raw("t.i8", u32(1) + "\xF9");
    g.kv_raw("t.u16", u32(2) + "\x01\x02");
    g.kv_raw("t.i16", u32(3) + "\xFF\xFF");
    g.kv_raw("t.i32", u32(5) + u32(0xFFFFFFFEu));
    g.kv_raw("t.u64", u32(10) + u64(1ull << 40));
    g.kv_raw("t.i64", u32(11) + u64(~0ull));
    g.kv_raw("t.f64", u32(12) + u64(0x3FF0000000000000ull));
    g.kv_bool("t.bool", false);
    g.kv_raw("t.nested", u32(9) + u32(9) + u64(2) + u32(0) + u64(2) + "\x01\x02" + u32(8) + u64(1) +
                             u64(1) + "x");
    g.kv_array<float>("t.f32s", 6, {1.5f, -2.0f});
    const char* formats[] = {"f16", "bf16", "q4_0", "q8_0", "q4_k", "q6_k", "int4_g32", "nf4"};
    for (const char* name : formats) {
      const lowbit::Format f = lowbit::Format::parse(name);
      const int64_t K = f.grouped() ? 64 : std::max<int64_t>(f.info().block_elems, 32);
      g.tensor(std::string("w.") + name, {uint64_t(K), 2}, f.gguf_type(), f.row_bytes(K) * 2);
    }
    seed("gguf", "formats_align" + std::to_string(align) + ".gguf", g.bytes());
  }
  Gguf empty;
  seed("gguf", "empty_header.gguf", empty.bytes());
  seed("gguf", "huge_counts.gguf", std::string("GGUF") + u32(3) + u64(~0ull) + u64(~0ull));
}

void safetensors_seeds() {
  seed("safetensors", "tiny_model.safetensors", safetensors(hf_tensors()));
  seed("safetensors", "tied.safetensors",
       safetensors(hf_tensors(false), "{\"format\":\"pt\",\"note\":\"tied\"}"));
  // lowbit's own copy of the tokenizer in __metadata__ (what lowbit's safetensors writer adds).
  seed("safetensors", "lowbit_tokenizer.safetensors",
       safetensors(hf_tensors(),
                   R"({"format":"pt","lowbit.tokenizer":"{\"model\":\"llama\",\"pre\":)"
                   R"(\"default\",\"tokens\":[\"<unk>\",\"<s>\",\"</s>\",\"a\"],)"
                   R"(\"scores\":[0,-1,-2,-3],\"token_types\":[2,3,3,1],\"merges\":[],)"
                   R"(\"byte_fallback\":false,\"bos_id\":1,\"eos_id\":2,\"unk_id\":0}"})"));
  // Other dtypes, a scalar, an empty tensor.
  std::string header = R"({"a":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[8,14]},)"
                       R"("c":{"dtype":"I8","shape":[],"data_offsets":[14,15]},)"
                       R"("d":{"dtype":"BOOL","shape":[1],"data_offsets":[15,16]},)"
                       R"("e":{"dtype":"F8_E4M3","shape":[0,4],"data_offsets":[16,16]},)"
                       R"("f":{"dtype":"U64","shape":[1],"data_offsets":[16,24]}})";
  while (header.size() % 8) header += ' ';
  seed("safetensors", "dtypes.safetensors", u64(header.size()) + header + std::string(24, '\x11'));
  const std::string near = safetensors(hf_tensors()) + "tail";
  seed("safetensors", "trailing_bytes.safetensors", near);
  // An index for the two shards fuzz_safetensors.cpp writes (first half / second half).
  const auto all = hf_tensors();
  std::string index = "{\"metadata\": {\"total_size\": 0}, \"weight_map\": {";
  for (size_t i = 0; i < all.size(); ++i) {
    index += (i ? ", \"" : "\"") + all[i].name + "\": \"model-0000" +
             std::to_string(i < all.size() / 2 ? 1 : 2) + "-of-00002.safetensors\"";
  }
  seed("safetensors", "index.json", index + "}}\n");
  seed("safetensors", "index_missing_shard.json",
       R"({"weight_map": {"model.norm.weight": "model-00003-of-00003.safetensors"}})");
}

void llama2c_seeds() {
  const std::string m = llama2c();
  seed("llama2c", "tiny.bin", m);
  seed("llama2c", "tiny_unshared.bin", llama2c(4, false));
  seed("llama2c", "truncated.bin", m.substr(0, m.size() - 4));
  std::string kv3 = m;
  kv3[16] = 3;  // n_kv_heads 3 does not divide 2 heads
  seed("llama2c", "bad_kv_heads.bin", kv3);
}

void tokenizer_seeds() {
  const std::string bin = tokenizer_bin(), spm = sentencepiece_model(), json = tokenizer_json();
  seed("tokenizer", "0_tok.bin", std::string(1, '\0') + bin);
  seed("tokenizer", "1_sentencepiece.model", "\x01" + spm);
  seed("tokenizer", "2_tokenizer.json", "\x02" + json);
  seed("tokenizer", "3_tok_vocab4.bin", std::string("\x03\x04\x00", 3) + bin);
  seed("tokenizer", "4_tokenizer_and_config.json",
       "\x04" + json + std::string(1, '\0') + tokenizer_config_json());
  seed("tokenizer", "5_sniff_spm", "\x05" + spm);
  seed("tokenizer", "5_sniff_bin", "\x05" + bin);
  seed("tokenizer", "2_unigram.json",
       "\x02"
       R"({"model": {"type": "Unigram", "unk_id": 0, "byte_fallback": true,
 "vocab": [["<unk>", 0.0], ["<0x41>", -1.0], ["\u2581a", -2.5], ["b", -3.0]]},
 "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always"}})");
  seed("tokenizer", "2_bytelevel.json",
       "\x02"
       R"({"added_tokens": [{"id": 4, "content": "<|end|>", "special": true}],
 "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
 "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "\u0120": 3},
           "merges": [["a", "b"]]}})");
  seed("tokenizer", "2_duplicate_key.json",
       "\x02"
       R"({"model": {"type": "BPE", "vocab": {"a": 0, "a": 1}, "merges": []}})");
  seed("tokenizer", "2_merge_unknown.json",
       "\x02"
       R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}})");
}

void hf_config_seeds() {
  const std::string cfg = config_json();
  seed("hf_config", "config.json", cfg);
  seed("hf_config", "head_dim.json",
       R"({"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 2, "head_dim": 4,
 "vocab_size": 4, "tie_word_embeddings": true,
 "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                  "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})");
  // Shaped like a recent transformers config: nulls, a list of EOS ids, unused keys.
  seed("hf_config", "transformers_style.json",
       R"({"architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
 "bos_token_id": 1, "eos_token_id": [2, 3], "head_dim": null, "hidden_act": "silu",
 "hidden_size": 8, "initializer_range": 0.02, "intermediate_size": 16,
 "max_position_embeddings": 32, "mlp_bias": false, "model_type": "llama",
 "num_attention_heads": 2, "num_hidden_layers": 1, "num_key_value_heads": 2,
 "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 500000.0,
 "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
 "transformers_version": "4.44.0", "use_cache": true, "vocab_size": 4})");
  seed("hf_config", "qwen2.json",
       R"({"model_type": "qwen2", "hidden_size": 8, "intermediate_size": 16,
 "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 4})");
  seed("hf_config", "zero_heads.json",
       R"({"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 1,
 "num_attention_heads": 0, "vocab_size": 4, "rope_scaling": {"type": "linear"}})");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds <corpus dir>\n");
    return 2;
  }
  g_root = argv[1];
  gguf_seeds();
  safetensors_seeds();
  llama2c_seeds();
  tokenizer_seeds();
  hf_config_seeds();
  return 0;
}
