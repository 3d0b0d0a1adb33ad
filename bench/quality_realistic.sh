#!/usr/bin/env bash
# Every format on the realistic-shape model trained by lowbit (tests/data/realistic-256.gguf, F16;
# bench/train_realistic.sh makes it): rows of 256 and 768 values, so the K-quants, IQ4_XS and the
# ternary types quantize the real thing instead of falling back. Round-to-nearest (`--method
# rtn`), compared with `lowbit compare` under the protocol of ../shared/anchors.md (evaluation text
# = lines 2001-end of tinystories-valid-head.txt, never trained on; context 256, second half of
# each chunk scored). Usage: bench/quality_realistic.sh [OUT_DIR] [extra compare args]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
fx=${LOWBIT_FIXTURES:-$root/../shared/fixtures}
out=${1:-/tmp/lowbit-realistic}; shift || true
lowbit=${LOWBIT:-$root/build/lowbit}
base=$root/tests/data/realistic-256.gguf
mkdir -p "$out"
sed -n '2001,$p' "$fx/text/tinystories-valid-head.txt" > "$out/eval.txt"
files=()
for t in q8_0 q6_k q5_k q5_1 q5_0 q4_k q4_1 iq4_nl q4_0 iq4_xs q3_k q2_k tq2_0 tq1_0 \
         int8 nf4 nf4_dq int4_g128 int4_g32 int3_g32 int2_g32 bin1; do
  "$lowbit" quantize -m "$base" -o "$out/$t.gguf" --type "$t" --method rtn -t 2 \
    | grep -v "^blk" > /dev/null || true
  files+=("$out/$t.gguf")
done
"$lowbit" compare "$base" "${files[@]}" -f "$out/eval.txt" -c 256 "$@"
