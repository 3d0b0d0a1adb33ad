#!/usr/bin/env bash
# Hugging Face quantized checkpoints (issue 22): each fixture model quantized with lowbit's GPTQ
# (the linear layers; embedding and head f16, as GPTQ and AWQ checkpoints keep them),
# exported with `convert --to`, then read back two ways -- the folder itself (`perplexity -m DIR`)
# and converted back to GGUF in the original format (`convert DIR --type T`) -- with perplexity
# on text the calibration never saw (ctx 256), and whether the converted-back GGUF's tensors are
# byte-identical to the quantized file's.
# Calibration: tinystories-valid-head.txt lines 1-2000; evaluation: the first 200 kB after them.
# Usage: bench/hf_checkpoints.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
threads=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
T=$fx/text/tinystories-valid-head.txt
head -n 2000 "$T" > "$tmp/calib.txt"
tail -n +2001 "$T" > "$tmp/rest.txt"
head -c 200000 "$tmp/rest.txt" > "$tmp/eval.txt"
ppl() { "$lowbit" perplexity -m "$1" -f "$tmp/eval.txt" -c 256 -t "$threads" --json 2>/dev/null |
  python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
# "yes" when every tensor of two GGUF files has the same type and bytes.
cmp_tensors() { python3 - "$1" "$2" <<'PY'
import struct, sys
def tensors(path):
    b = open(path, "rb").read()
    def u32(o): return struct.unpack_from("<I", b, o)[0], o + 4
    def u64(o): return struct.unpack_from("<Q", b, o)[0], o + 8
    def s(o):
        n, o = u64(o); return b[o:o + n].decode(), o + n
    o = 8
    nt, o = u64(o); nk, o = u64(o)
    def skip(t, o):
        size = {0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
        if t == 8: _, o = s(o); return o
        if t == 9:
            et, o = u32(o); n, o = u64(o)
            for _ in range(n): o = skip(et, o)
            return o
        return o + size[t]
    align = 32
    for _ in range(nk):
        k, o = s(o); t, o = u32(o)
        if k == "general.alignment": align = struct.unpack_from("<I", b, o)[0]
        o = skip(t, o)
    info = []
    for _ in range(nt):
        name, o = s(o); nd, o = u32(o); o += 8 * nd; ty, o = u32(o); off, o = u64(o)
        info.append((name, ty, off))
    base = (o + align - 1) // align * align
    offs = sorted(x[2] for x in info) + [len(b) - base]
    out = {}
    for name, ty, off in info:
        end = min(x for x in offs if x > off)
        out[name] = (ty, b[base + off: base + end].rstrip(b"\0"))
    return out
a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
print("yes" if a.keys() == b.keys() and all(a[k] == b[k] for k in a) else "no")
PY
}
echo "| model | lowbit GGUF | PPL | export | PPL of the folder | PPL back in GGUF | tensors byte-identical |"
echo "|---|---|---:|---|---:|---:|---|"
run() {  # model, type, schemes...
  local m=$1 t=$2; shift 2
  local name; name=$(basename "$m" .gguf)
  local q=$tmp/$name-$t.gguf
  "$lowbit" quantize -m "$m" -o "$q" --method gptq --type "$t" --calib "$tmp/calib.txt" \
    --token-embedding-type f16 --output-tensor-type f16 -t "$threads" >/dev/null 2>&1
  local p; p=$(ppl "$q")
  for s in "$@"; do
    rm -rf "$tmp/dir"
    "$lowbit" convert "$q" -o "$tmp/dir" --to "$s" >/dev/null
    "$lowbit" convert "$tmp/dir" -o "$tmp/back.gguf" --type "$t" >/dev/null
    echo "| $name | gptq $t | $p | $s | $(ppl "$tmp/dir") | $(ppl "$tmp/back.gguf") | $(cmp_tensors "$q" "$tmp/back.gguf") |"
  done
}
run "$fx/models/stories260K/stories260K.gguf" int8 gptq compressed-tensors
run "$fx/models/stories260K/stories260K.gguf" int4 compressed-tensors
run "$fx/models/tinystories-656k" int4_g32 gptq awq compressed-tensors
run "$fx/models/tinystories-656k" int4_g64_asym gptq awq compressed-tensors
run "$fx/models/tinystories-656k" int3_g32 gptq compressed-tensors
run "$fx/models/tinystories-656k" int2_g32_asym gptq compressed-tensors
