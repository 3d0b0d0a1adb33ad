#!/usr/bin/env bash
# Speed side by side with llama.cpp (issue 18, docs/performance.md): TinyLlama-1.1B-shaped synths
# of all 22 layers, one per type (made once, kept in DIR). For each GGUF type, llama-bench runs
# the file and `lowbit bench --bandwidth` runs it right after; lowbit's own formats run in lowbit
# only. Prints one markdown row per round, type and tool: pp128 and tg32 tokens/s, and lowbit's
# generation limit and the fraction of it reached.
# Usage: LLAMA_BENCH=path/to/llama-bench bench/vs_llamacpp.sh DIR ROUNDS "TYPES"
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
llb=${LLAMA_BENCH:?set LLAMA_BENCH to llama.cpp\'s llama-bench}
dir=$1 rounds=$2 types=$3
mkdir -p "$dir"
for t in $types; do
  [ -f "$dir/tl-$t.gguf" ] ||
    "$lowbit" synth --shape tinyllama-1.1b --type "$t" -o "$dir/tl-$t.gguf" > /dev/null
done
echo "| round | type | tool | pp128 t/s | tg32 t/s | tg limit t/s | tg / limit |"
echo "|---|---|---|---:|---:|---:|---:|"
for r in $(seq 1 "$rounds"); do
  for t in $types; do
    f=$dir/tl-$t.gguf
    case $t in q* | iq* | tq* | f16 | bf16 | f32)
      "$llb" -m "$f" -t 2 -p 128 -n 32 -r 3 -o csv 2> /dev/null | awk -F, -v t="$t" -v r="$r" '
        NR == 1 { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); col[h] = i } next }
        { np = $col["n_prompt"]; v = $col["avg_ts"]; gsub(/"/, "", np); gsub(/"/, "", v)
          if (np + 0 > 0) pp = v; else tg = v }
        END { printf "| %s | %s | llama.cpp | %.1f | %.1f | | |\n", r, t, pp, tg }' ;;
    esac
    "$lowbit" bench -m "$f" --bandwidth -t 2 -p 128 -n 32 -r 3 2> /dev/null | awk -v t="$t" -v r="$r" '
      /^\| pp/ { pp = $4 }
      /^\| tg/ { tg = $4 }
      /before tg/ { for (i = 1; i <= NF; ++i) if ($i == "limit") lim = $(i + 1); pct = $(NF - 2) }
      END { printf "| %s | %s | lowbit | %s | %s | %s | %s |\n", r, t, pp, tg, lim, pct }'
  done
done
