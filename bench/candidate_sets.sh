#!/usr/bin/env bash
# The price of llama.cpp compatibility (docs/mixed_precision.md, "Candidate sets"): on the
# fixture models, plans for the same bits-per-weight targets from the GGUF candidate set (the
# planner's default: llama.cpp loads the files) and from lowbit's own formats, with RTN and GPTQ,
# all from one sensitivity measurement of both sets per model and method; then every file's KLD
# against the original on text the calibration never saw (anchors.md's protocol).
#
#   bench/candidate_sets.sh OUTDIR [LOWBIT] [CHUNKS]
#
# Writes OUTDIR/MODEL.METHOD.SET.BPW.gguf (+ .log; a target a set cannot reach leaves only the
# log, whose last line says how small the set goes), OUTDIR/MODEL.csv (lowbit compare --csv) and
# OUTDIR/MODEL.plans.txt (one line per file: its plan's formats and llama.cpp loadability).
set -euo pipefail
out=$1
lowbit=${2:-build/lowbit}
chunks=${3:-300}
fx=${LOWBIT_FIXTURES:-$(dirname "$0")/../../shared/fixtures}
targets=${TARGETS:-"3 3.5 4 4.5 5 5.5 6 6.8 7.2 8"}
mkdir -p "$out"
sed -n '1,1999p' "$fx/text/tinystories-valid-head.txt" > "$out/calib.txt"
sed -n '2001,$p' "$fx/text/tinystories-valid-head.txt" > "$out/eval.txt"

for spec in "s260k:$fx/models/stories260K/stories260K.gguf" "t656k:$fx/models/tinystories-656k"; do
  name=${spec%%:*}
  model=${spec#*:}
  files=()
  for method in rtn gptq; do
    sens=$out/$name.$method.sens.json
    if [ ! -f "$sens" ]; then
      "$lowbit" sensitivity -m "$model" --calib "$out/calib.txt" -o "$sens" --formats all \
        --method "$method" --ctx 256 --calib-tokens 4096 -t 1 > "$sens.log" 2>&1
    fi
    for set in gguf lowbit; do
      for bpw in $targets; do
        f=$out/$name.$method.$set.$bpw.gguf
        if [ ! -f "$f" ] && "$lowbit" quantize -m "$model" -o "$f" --target-bpw "$bpw" \
            --sensitivity "$sens" --formats "$set" --method "$method" --calib "$out/calib.txt" \
            --ctx 256 --calib-tokens 100000 -t 1 > "$f.log" 2>&1; then :; fi
        [ -f "$f" ] && files+=("$f")
      done
    done
  done
  "$lowbit" compare "$model" "${files[@]}" -f "$out/eval.txt" -c 256 --chunks "$chunks" -t 1 \
    --csv > "$out/$name.csv"
  for f in "${files[@]}"; do
    echo "$(basename "$f") $(grep -o 'plan: .*' "$f.log" | sed 's/.*; //')"
  done > "$out/$name.plans.txt"
done
