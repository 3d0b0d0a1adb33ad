#!/usr/bin/env bash
# The format table of docs/performance.md (issue 18): TinyLlama-1.1B-shaped synth models of LAYERS
# blocks in each weight format (made once, kept in DIR), `lowbit bench --bandwidth` on each. With
# BASELINE=path/to/another/lowbit, that binary runs right before this one on every file, so each
# row's two figures come from the same minutes of the shared machine.
# Usage: [BASELINE=old/lowbit] bench/perf_formats.sh DIR "TYPES" LAYERS [bench args]
# e.g.   bench/perf_formats.sh /tmp/m "q4_0 nf4 int3_g32" 6 -p 128 -n 32 -t 2 -r 3
# Prints one markdown row per binary and type: pp and tg tokens/s (medians), the generation
# limit of the probe before tg, and the fraction of it reached.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
dir=$1 types=$2 layers=$3
shift 3
mkdir -p "$dir"
for t in $types; do
  f="$dir/tl$layers-$t.gguf"
  [ -f "$f" ] || "$lowbit" synth --shape tinyllama-1.1b --layers "$layers" -o "$f" --type "$t" \
    > /dev/null
done
bins=("$lowbit")
[ -n "${BASELINE:-}" ] && bins=("$BASELINE" "$lowbit")
echo "| type | binary | pp t/s | tg t/s | tg limit t/s | tg / limit |"
echo "|---|---|---:|---:|---:|---:|"
for t in $types; do
  for b in "${bins[@]}"; do
    "$b" bench -m "$dir/tl$layers-$t.gguf" --bandwidth "$@" 2>/dev/null |
      awk -v t="$t" -v b="$([ "$b" = "$lowbit" ] && echo new || echo baseline)" '
        /^\| pp/ { pp = $4 }
        /^\| tg/ { tg = $4 }
        /before tg/ { for (i = 1; i <= NF; ++i) if ($i == "limit") lim = $(i + 1);
                      pct = $(NF - 2) }
        END { printf "| %s | %s | %s | %s | %s | %s |\n", t, b, pp, tg, lim, pct }'
  done
done
