#!/usr/bin/env bash
# QLoRA's claim on this machine (issue 20): the same LoRA training (r 8, alpha 16, all linear
# layers, 300 steps of 8 x 128 tokens, lr 2e-3, seed 1) on F32, Q4_0, NF4 and NF4_DQ bases of each
# model, the base kept in its format; held-out perplexity (llama.cpp's protocol, ctx 128) of base +
# adapter, the training's median tokens/s and its peak RSS. Data: the first 400 kB of
# wikitext2-test.raw to train, its last 100 kB held out; for realistic-256, which saw all of
# wikitext2-test.raw in its own training (bench/train_realistic.sh), the TinyStories lines it
# never saw (2001 on): their first 400 kB to train, their last 100 kB held out.
# Usage: bench/finetune_qlora.sh [MODEL...]   (default: the fixture models and realistic-256)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
threads=${THREADS:-2}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
head -c 400000 "$fx/text/wikitext2-test.raw" > "$tmp/wiki-train.txt"
tail -c 100000 "$fx/text/wikitext2-test.raw" > "$tmp/wiki-held.txt"
tail -n +2001 "$fx/text/tinystories-valid-head.txt" > "$tmp/stories-unseen.txt"
head -c 400000 "$tmp/stories-unseen.txt" > "$tmp/stories-train.txt"
tail -c 100000 "$tmp/stories-unseen.txt" > "$tmp/stories-held.txt"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("$fx/models/stories260K/stories260K.gguf"
  "$fx/models/tinystories-656k" "$root/tests/data/realistic-256.gguf")
ppl() { "$lowbit" perplexity -m "$1" -f "$held" -c 128 -t "$threads" --json "${@:2}" 2>/dev/null |
  python3 -c 'import json,sys; print("%.4f" % json.load(sys.stdin)["ppl"])'; }
echo "| model | base | base PPL | + LoRA PPL | vs F32 base + LoRA | train tok/s | peak RSS (MiB) |"
echo "|---|---|---:|---:|---:|---:|---:|"
for m in "${models[@]}"; do
  name=$(basename "$m" .gguf)
  data=wiki
  [ "$name" != realistic-256 ] || data=stories
  train=$tmp/$data-train.txt held=$tmp/$data-held.txt
  ref=""
  for t in f32 q4_0 nf4 nf4_dq; do
    base="$tmp/$name-$t.gguf"
    "$lowbit" quantize -m "$m" -o "$base" --type "$t" --method rtn -t "$threads" >/dev/null 2>&1
    /usr/bin/time -f "%M" -o "$tmp/rss" "$lowbit" finetune -m "$base" -f "$train" \
      -o "$tmp/ad.gguf" --lora-r 8 --lora-alpha 16 --steps 300 --lr 2e-3 --batch 8 --ctx 128 \
      --seed 1 -t "$threads" --json "$tmp/log.jsonl" >/dev/null
    tps=$(python3 -c 'import json,sys,statistics as s; print("%.0f" % s.median(json.loads(l)["tokens_per_second"] for l in open(sys.argv[1])))' "$tmp/log.jsonl")
    rss=$(( $(cat "$tmp/rss") / 1024 ))
    p0=$(ppl "$base")
    p1=$(ppl "$base" --lora "$tmp/ad.gguf")
    [ -n "$ref" ] || ref=$p1
    rel=$(python3 -c "print('%+.2f%%' % (100 * ($p1 / $ref - 1)))")
    echo "| $name | $t | $p0 | $p1 | $rel | $tps | $rss |"
  done
done
