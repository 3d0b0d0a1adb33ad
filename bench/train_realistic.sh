#!/usr/bin/env bash
# The realistic-shape model of issue 19, trained from scratch by lowbit: rows that are multiples of
# 256 (dim 256, feed-forward 768), 4 layers, 8 heads with 4 KV heads, the tok512 tokenizer, so that
# K-quants, IQ4_XS and the ternary types can be judged on trained weights (every real fixture
# model has rows of 64-352). Trained on lines 1-2000 of tinystories-valid-head.txt plus
# wikitext2-test.raw; validated on lines 2001-end (the anchor protocol's evaluation text, never
# trained on). Deterministic: the same flags, seed and thread count give the same file.
# Usage: bench/train_realistic.sh [OUT_DIR]   (default tests/data; about 10 minutes on 2 cores)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lowbit=${LOWBIT:-$root/build/lowbit}
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
out=${1:-$root/tests/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
head -n 2000 "$fx/text/tinystories-valid-head.txt" > "$tmp/train-stories.txt"
tail -n +2001 "$fx/text/tinystories-valid-head.txt" > "$tmp/val.txt"
"$lowbit" train --dim 256 --ff 768 --layers 4 --heads 8 --kv-heads 4 \
  --tokenizer "$fx/models/stories260K/tok512.model" \
  -f "$tmp/train-stories.txt" -f "$fx/text/wikitext2-test.raw" --val "$tmp/val.txt" \
  --steps 1500 --batch 8 --ctx 256 --lr 2e-3 --warmup 100 --schedule cosine --clip 1.0 \
  --weight-decay 0.1 --seed 1 -t 2 --eval-every 100 --val-windows 64 \
  --json "$out/realistic-256.train.jsonl" --type f16 -o "$out/realistic-256.gguf"
