#!/usr/bin/env bash
# Methods x formats quality table of docs/quality.md: quantize MODEL with every method into every
# format, then one `lowbit compare` over all files (KLD against the original).
# Usage: bench/quality_methods.sh MODEL CALIB_TEXT EVAL_TEXT OUT_DIR "FORMATS" "METHODS" [compare args]
# e.g.   bench/quality_methods.sh stories260K.gguf calib.txt eval.txt /tmp/qm \
#          "q4_0 q4_1 iq4_nl nf4 int4_g32 int3_g32 int2_g32" "rtn imatrix gptq awq awq+gptq" -c 256
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
model=$1 calib=$2 eval=$3 out=$4 formats=$5 methods=$6
shift 6
mkdir -p "$out"
files=()
for t in $formats; do
  for m in $methods; do
    f="$out/$t-$m.gguf"
    "$lowbit" quantize -m "$model" -o "$f" --type "$t" --method "$m" --calib "$calib" \
      --ctx 256 --calib-tokens 32768 --fallback lowbit > "$out/$t-$m.log" 2>&1
    files+=("$f")
  done
done
"$lowbit" compare "$model" "${files[@]}" -f "$eval" "$@"
