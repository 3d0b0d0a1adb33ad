#!/usr/bin/env bash
# Issue 19's throughput figures: `lowbit train` on stories260K and on a ~60M-parameter synthetic
# model (dim 512, ff 1536, 8 layers, vocabulary 32000), batch 8, ctx 256 (stories260K also ctx
# 128), 2 threads, next to OpenBLAS's F32 GEMM rate on the same models' training shapes
# (lowbit_bench train_gemm), in the same run.
# Prints the median tokens/s of the steps after the first 3, GFLOP/s as 6 * parameters * tokens/s,
# that against the GEMM rate, and peak RSS.  Usage: bench/train_throughput.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
lowbit=${LOWBIT:-$root/build/lowbit}
bench=${LOWBIT_BENCH:-$root/build/bench/lowbit_bench}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 400000 "$fx/text/wikitext2-test.raw" > "$tmp/text.txt"
"$lowbit" synth --dim 512 --ff 1536 --layers 8 --heads 8 --vocab 32000 --type f32 \
  -o "$tmp/synth.gguf" > /dev/null
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
for round in $(seq "${1:-2}"); do
  OMP_NUM_THREADS=2 "$bench" --benchmark_filter=train_gemm --benchmark_min_time=2 2>/dev/null |
    awk '/train_gemm/ { for (i = 1; i <= NF; ++i) if ($i ~ /^GFLOP/) { split($i, a, "="); print $1, a[2] } }' |
    sed 's|/real_time||; s|/s$||' > "$tmp/gemm.txt"
  for m in stories260K stories260K_ctx128 synth30M; do
    case $m in
      stories260K) model=$fx/models/stories260K/stories260K.gguf ctx=256 steps=40 ;;
      stories260K_ctx128) model=$fx/models/stories260K/stories260K.gguf ctx=128 steps=40 ;;
      *) model=$tmp/synth.gguf ctx=256 steps=8 ;;
    esac
    /usr/bin/time -f "%M" -o "$tmp/rss" "$lowbit" train -m "$model" -f "$tmp/text.txt" \
      -o "$tmp/out.gguf" --steps "$steps" --batch 8 --ctx "$ctx" -t 2 --json "$tmp/log.jsonl" \
      > "$tmp/stdout"
    params=$(sed -n 's/.*(\([0-9]*\) parameters.*/\1/p' "$tmp/stdout")
    tps=$(tail -n +4 "$tmp/log.jsonl" | sed 's/.*"tokens_per_second":\([0-9.e+]*\).*/\1/' | median)
    gemm=$(awk -v m="train_gemm/$m" '$1 == m { print $2 }' "$tmp/gemm.txt")
    awk -v r="$round" -v m="$m" -v p="$params" -v t="$tps" -v g="$gemm" -v rss="$(cat "$tmp/rss")" \
      'BEGIN { f = 6 * p * t / 1e9; printf "round %s %s: %d parameters, %.0f tokens/s, %.1f GFLOP/s, OpenBLAS %.1f GFLOP/s: %.0f%%, peak RSS %.0f MiB\n", r, m, p, t, f, g, 100 * f / g, rss / 1024 }'
  done
done
