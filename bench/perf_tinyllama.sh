#!/usr/bin/env bash
# Speed table of docs/performance.md: synthesizes TinyLlama-1.1B-shaped models (once; kept in DIR)
# and runs `lowbit bench` on each with the same-run bandwidth probes.
# Usage: bench/perf_tinyllama.sh DIR "TYPES" [bench args]     (LOWBIT=path/to/lowbit to override)
# e.g.   bench/perf_tinyllama.sh /work/m "f32 f16 q8_0 q4_0 q4_k" -p 128 -n 32 -t 2 -r 5
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
dir=$1 types=$2
shift 2
mkdir -p "$dir"
for t in $types; do
  f="$dir/tl-$t.gguf"
  [ -f "$f" ] || "$lowbit" synth --shape tinyllama-1.1b -o "$f" --type "$t"
done
for t in $types; do
  echo "== $t"
  "$lowbit" bench -m "$dir/tl-$t.gguf" --bandwidth "$@"
done
