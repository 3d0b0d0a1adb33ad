#!/usr/bin/env bash
# Issue 21's table: RTN, GPTQ, AWQ+GPTQ and QAT (from GPTQ, KL against the original) for each
# format on stories260K, TinyStories-656K and realistic-256, compared with `lowbit compare` under
# the protocol of ../shared/anchors.md: calibration and QAT training text = lines 1-2000 of
# tinystories-valid-head.txt, evaluation = lines 2001-end (never trained on), context 256, the
# second half of each chunk scored. Rows a format cannot tile take lowbit's fallback (tq1_0/tq2_0
# -> tern_g64 on rows of 64-384; bin1 -> int2_g64 on rows of 172). Each QAT run's wall time and
# peak RSS (/usr/bin/time) go to OUT/qat-time.tsv.
# Usage: bench/qat_table.sh [OUT_DIR]   env: MODELS, FORMATS, THREADS, QAT_STEPS, QAT_LR, LOWBIT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
out=${1:-/tmp/lowbit-qat-table}
lowbit=${LOWBIT:-$root/build/lowbit}
threads=${THREADS:-2}
steps=${QAT_STEPS:-200}
lr=${QAT_LR:-1e-3}
models=${MODELS:-"stories260K tinystories-656k realistic-256"}
formats=${FORMATS:-"q4_0 int4_g32 int3_g32 int2_g32 tq2_0 tq1_0 bin1"}
mkdir -p "$out"
head -n 2000 "$fx/text/tinystories-valid-head.txt" > "$out/calib.txt"
sed -n '2001,$p' "$fx/text/tinystories-valid-head.txt" > "$out/eval.txt"
for model in $models; do
  case $model in
    stories260K) base=$fx/models/stories260K/stories260K.gguf ;;
    tinystories-656k) base=$fx/models/tinystories-656k ;;
    realistic-256) base=$root/tests/data/realistic-256.gguf ;;
    *) echo "unknown model $model" >&2; exit 2 ;;
  esac
  d=$out/$model
  mkdir -p "$d"
  files=()
  for t in $formats; do
    for method in rtn gptq awq+gptq qat; do
      f=$d/$t-${method/+/-}.gguf
      extra=()
      [ "$method" = qat ] && extra=(--qat-steps "$steps" --qat-lr "$lr" --qat-log "$f.log.jsonl")
      if [ ! -s "$f" ]; then
        /usr/bin/time -f "%e %M" -o "$f.time" "$lowbit" quantize -m "$base" -o "$f" --type "$t" \
          --method "$method" --calib "$out/calib.txt" --fallback lowbit -t "$threads" \
          "${extra[@]}" > "$f.out" 2>&1 || { echo "FAILED: $f" >&2; tail -3 "$f.out" >&2; continue; }
        [ "$method" = qat ] && printf '%s\t%s\t%s\n' "$model" "$t" "$(cat "$f.time")" >> "$out/qat-time.tsv"
      fi
      files+=("$f")
    done
  done
  [ "${#files[@]}" -gt 0 ] || continue
  "$lowbit" compare "$base" "${files[@]}" -f "$out/eval.txt" -c 256 -t "$threads" --json \
    > "$d/compare.json"
done
