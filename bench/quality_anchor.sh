#!/usr/bin/env bash
# lowbit against llama.cpp's rows of ../shared/anchors.md, same protocol: stories260K.gguf,
# calibration on lines 1-1999 of tinystories-valid-head.txt (355 chunks of 256), evaluation on
# lines 2001-end, context 256, second half of each chunk scored. Usage: bench/quality_anchor.sh OUT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
lowbit=${LOWBIT:-$root/build/lowbit}
out=${1:-/tmp/lowbit-anchor}
shift || true
base=$fx/models/stories260K/stories260K.gguf
mkdir -p "$out"
sed -n '1,1999p' "$fx/text/tinystories-valid-head.txt" > "$out/calib.txt"
sed -n '2001,$p' "$fx/text/tinystories-valid-head.txt" > "$out/eval.txt"
files=()
q() {  # name type method fallback
  "$lowbit" quantize -m "$base" -o "$out/$1.gguf" --type "$2" --method "$3" --fallback "$4" \
    --calib "$out/calib.txt" --ctx 256 --calib-tokens 90880 > "$out/$1.log" 2>&1
  files+=("$out/$1.gguf")
}
# GGUF-only files (llama.cpp loads them; ffn_down stays F16 like llama.cpp's)
for t in q5_0 q4_1 iq4_nl q4_0; do q "$t-gptq-ggml" "$t" gptq ggml; q "$t-awqgptq-ggml" "$t" awq+gptq ggml; done
# lowbit's ragged groups for ffn_down: the sizes llama.cpp cannot reach on this model
for t in q8_0 q5_0 q4_1 iq4_nl q4_0 nf4 int3_g32_asym int3_g32 int2_g32_asym; do
  q "$t-awqgptq" "$t" awq+gptq lowbit
done
"$lowbit" compare "$base" "${files[@]}" -f "$out/eval.txt" -c 256 "$@"
