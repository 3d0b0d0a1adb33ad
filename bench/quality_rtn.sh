#!/usr/bin/env bash
# The round-to-nearest quality table of docs/quality.md: stories260K (llama.cpp's GGUF, F32) in
# every common format, compared with `lowbit compare` under the protocol of ../shared/anchors.md
# (evaluation text = lines 2001-end of tinystories-valid-head.txt, context 256, second half of
# each chunk scored). Usage: bench/quality_rtn.sh [OUT_DIR] [extra compare args, e.g. --chunks 200]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
out=${1:-/tmp/lowbit-quality}; shift || true
lowbit=${LOWBIT:-$root/build/lowbit}
base=$fx/models/stories260K/stories260K.gguf
mkdir -p "$out"
sed -n '2001,$p' "$fx/text/tinystories-valid-head.txt" > "$out/eval.txt"
"$lowbit" convert "$base" -o "$out/f16.gguf" --type f16 > /dev/null
"$lowbit" convert "$base" -o "$out/bf16.gguf" --type bf16 > /dev/null
files=("$out/f16.gguf" "$out/bf16.gguf")
for t in q8_0 q5_0 q4_1 iq4_nl q4_0 nf4 int4_g32 tq2_0; do
  "$lowbit" quantize -m "$base" -o "$out/$t.gguf" --type "$t" | grep -v '^blk' || true
  files+=("$out/$t.gguf")
done
"$lowbit" compare "$base" "${files[@]}" -f "$out/eval.txt" -c 256 "$@"
