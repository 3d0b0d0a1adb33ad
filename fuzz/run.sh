#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) in build-fuzz/ and runs each for SECONDS
# (default 20) from a scratch copy of its seed corpus (fuzz/corpus/<target>/, plus the fixture
# files of ../shared/fixtures or $LOWBIT_FIXTURES when present) with its dictionary
# (fuzz/dict/<target>.dict). Exits non-zero if any fuzzer reports a crash, sanitizer error, leak,
# timeout (hang) or out-of-memory; reproducers are left in $FUZZ_ARTIFACTS/<target>/ (default
# build-fuzz/artifacts). Reproduce one: build-fuzz/fuzz_<target> <file>.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     targets: gguf safetensors llama2c tokenizer hf_config lora peft hf_quant
#   FUZZ_JOBS=2 fuzz/run.sh 180           two fuzzers at a time (one core each)
#   FUZZ_KEEP_WORK=1                      keep the logs and grown corpora (path printed)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SECONDS_EACH=${1:-20}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(gguf safetensors llama2c tokenizer hf_config lora peft hf_quant)
BUILD=${FUZZ_BUILD:-$ROOT/build-fuzz}
ARTIFACTS=${FUZZ_ARTIFACTS:-$BUILD/artifacts}
JOBS=${FUZZ_JOBS:-1}
FIXTURES=${LOWBIT_FIXTURES:-$ROOT/../shared/fixtures}
CXX_FUZZ=${CXX_FUZZ:-clang++}

if ! [[ "$SECONDS_EACH" =~ ^[0-9]+$ ]] || [ "$SECONDS_EACH" -lt 1 ]; then
  echo "usage: fuzz/run.sh [SECONDS] [TARGET...]" >&2
  exit 2
fi

# -max_len per target: large enough for the fixture files, small enough to mutate quickly.
max_len() {
  case $1 in
    gguf | llama2c) echo 1310720 ;;  # stories260K.gguf / .bin are ~1.1 MB
    safetensors) echo 1048576 ;;
    tokenizer) echo 524288 ;;         # the 32k-piece tokenizer.model is 500 KB
    hf_config) echo 65536 ;;
    lora | peft) echo 65536 ;;        # the seed adapters are a few kB
    hf_quant) echo 65536 ;;           # the seed checkpoints are 10-20 kB
    *) echo "unknown target: $1" >&2; exit 2 ;;
  esac
}

# Fixture files as extra seeds (tokenizer seeds get their loader-selector byte in front).
fixture_seeds() {
  local t=$1 dir=$2 m=$FIXTURES/models
  [ -d "$m" ] || return 0
  local s=$m/stories260K h=$m/tinystories-656k l=$m/llama2-tokenizer
  case $t in
    gguf)
      cp "$s/stories260K.gguf" "$l/ggml-vocab-llama-spm.gguf" "$dir/" 2>/dev/null || true ;;
    llama2c)
      cp "$s/stories260K.bin" "$dir/" 2>/dev/null || true ;;
    hf_config)
      cp "$h/config.json" "$dir/fixture-config.json" 2>/dev/null || true ;;
    tokenizer)
      { printf '\0'; cat "$s/tok512.bin"; } >"$dir/fixture-tok512.bin" 2>/dev/null || true
      { printf '\1'; cat "$s/tok512.model"; } >"$dir/fixture-tok512.model" 2>/dev/null || true
      { printf '\2'; cat "$h/tokenizer.json"; } >"$dir/fixture-656k.json" 2>/dev/null || true
      { printf '\4'; cat "$h/tokenizer.json"; printf '\0'; cat "$h/tokenizer_config.json"; } \
        >"$dir/fixture-656k-config.json" 2>/dev/null || true
      { printf '\0'; cat "$l/tokenizer.bin"; } >"$dir/fixture-llama2.bin" 2>/dev/null || true
      { printf '\1'; cat "$l/tokenizer.model"; } >"$dir/fixture-llama2.model" 2>/dev/null || true
      ;;
  esac
}

for t in "${TARGETS[@]}"; do max_len "$t" >/dev/null; done

# Build (configure once; ninja/make make later builds incremental).
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  gen=()
  command -v ninja >/dev/null && gen=(-G Ninja)
  cmake "${gen[@]}" -S "$ROOT/fuzz" -B "$BUILD" -DCMAKE_CXX_COMPILER="$CXX_FUZZ" >/dev/null
fi
if ! cmake --build "$BUILD" -j "$(nproc)" >"$BUILD/build.log" 2>&1; then
  tail -60 "$BUILD/build.log" >&2
  echo "fuzz/run.sh: the fuzz build failed (log: $BUILD/build.log)" >&2
  exit 2
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lowbit-fuzz-run.XXXXXX")
if [ -n "${FUZZ_KEEP_WORK:-}" ]; then
  echo "logs and grown corpora kept in $WORK" >&2
else
  trap 'rm -rf "$WORK"' EXIT
fi

run_one() {
  local t=$1 corpus=$WORK/corpus-$t log=$WORK/$t.log
  mkdir -p "$corpus" "$ARTIFACTS/$t" "$WORK/tmp-$t"
  cp "$ROOT/fuzz/corpus/$t/"* "$corpus/"
  fixture_seeds "$t" "$corpus"
  local dict=() rc=0 start
  start=$(date +%s)
  [ -f "$ROOT/fuzz/dict/$t.dict" ] && dict=(-dict="$ROOT/fuzz/dict/$t.dict")
  TMPDIR=$WORK/tmp-$t OMP_NUM_THREADS=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$BUILD/fuzz_$t" -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -timeout=10 \
    -max_len="$(max_len "$t")" -print_final_stats=1 -artifact_prefix="$ARTIFACTS/$t/" \
    "${dict[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  echo "$rc" >"$WORK/$t.rc"
  echo $(($(date +%s) - start)) >"$WORK/$t.secs"
}

running=0
for t in "${TARGETS[@]}"; do
  echo "fuzz_$t: ${SECONDS_EACH}s..." >&2
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

status=0
printf '%-12s %8s %12s %9s %8s  %s\n' target seconds executions exec/s corpus findings
for t in "${TARGETS[@]}"; do
  log=$WORK/$t.log
  rc=$(cat "$WORK/$t.rc")
  stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
  execs=$(stat number_of_executed_units)
  secs=$(cat "$WORK/$t.secs")  # wall clock, start-up included
  rate=$(stat average_exec_per_sec)
  corpus=$(find "$WORK/corpus-$t" -type f | wc -l)
  findings=none
  if [ "$rc" != 0 ]; then
    status=1
    what=$(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|runtime error|FUZZ_REQUIRE failed|ALARM|out-of-memory|deadly signal' "$log" || true)
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    findings="exit $rc: ${what:-see log} ${artifact:+-> $artifact}"
    cp "$log" "$ARTIFACTS/$t/last.log"
    echo "--- fuzz_$t log tail ($ARTIFACTS/$t/last.log):" >&2
    tail -40 "$log" >&2
  fi
  printf '%-12s %8s %12s %9s %8s  %s\n' "$t" "$secs" "${execs:-?}" "${rate:-?}" "$corpus" \
    "$findings"
done
exit $status
