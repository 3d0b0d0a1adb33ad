#!/usr/bin/env bash
# Quantizing time against llama-quantize (issue 18, docs/performance.md): an F16 model to each
# type with `lowbit quantize --method rtn -t 2`, then llama-quantize with 2 threads right after,
# both under /usr/bin/time (wall s, CPU s, peak RSS), then each file's weight error against the
# F16 model (`lowbit inspect --against --json`, kept in OUT) before the file is removed.
# Usage: LLAMA_QUANTIZE=path/to/llama-quantize bench/quantize_time.sh F16.gguf OUT "TYPES"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
llq=${LLAMA_QUANTIZE:?set LLAMA_QUANTIZE to llama.cpp\'s llama-quantize}
src=$1 out=$2 types=$3
mkdir -p "$out"
for t in $types; do
  T=$(echo "$t" | tr a-z A-Z)
  /usr/bin/time -f "$t lowbit %e s wall %U s CPU %M KB" "$lowbit" quantize -m "$src" \
    -o "$out/lb-$t.gguf" --type "$t" --method rtn -t 2 > /dev/null 2> "$out/time.err"
  tail -1 "$out/time.err"
  /usr/bin/time -f "$t llama-quantize %e s wall %U s CPU %M KB" "$llq" "$src" "$out/ll-$t.gguf" \
    "$T" 2 > /dev/null 2> "$out/time.err"
  tail -1 "$out/time.err"
  for w in lb ll; do
    "$lowbit" inspect "$out/$w-$t.gguf" --against "$src" --json > "$out/$w-$t.json"
    rm -f "$out/$w-$t.gguf"
  done
done
