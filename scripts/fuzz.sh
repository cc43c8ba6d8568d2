#!/usr/bin/env bash
# Runs every cargo-fuzz target (the decoder's four and core's propagation extractor) for a fixed
# number of executions and prints one line per target: executions, seconds, executions per second,
# peak RSS and whether libFuzzer found anything. Long: not part of `.ci/run` (CI replays the
# corpora instead, in `host-decoder/tests/hostile.rs` and `core/tests/`).
#
#   bash scripts/fuzz.sh                 # 10 million executions per target, two at a time
#   RUNS=100000 JOBS=1 bash scripts/fuzz.sh frames
#   RUNS=0 bash scripts/fuzz.sh          # replay the committed corpora once, under ASan
#
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). Targets are built with
# AddressSanitizer (`SANITIZER=address`, the default): the decoder holds `unsafe` blocks (a
# finished span moved into its batch by a raw copy, inline strings read without a second UTF-8
# check), and a double free or an out-of-bounds read there shows only under a sanitizer. It slows the run about fivefold; `SANITIZER=none` runs without it (a panic or an
# out-of-bounds index in safe code still aborts the run). New inputs go to
# `target/fuzz-new/<target>`, not to the committed corpora (merge the useful ones by hand, see
# host-decoder/fuzz/README.md).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
sanitizer=${SANITIZER:-address}
runs=${RUNS:-10000000}
jobs=${JOBS:-2}
max_len=${MAX_LEN:-4096}
out="$root/target/fuzz-logs"
mkdir -p "$out"

declare -A dir=(
    [frames]=host-decoder/fuzz
    [assembler]=host-decoder/fuzz
    [assembler_structured]=host-decoder/fuzz
    [postmortem]=host-decoder/fuzz
    [extract]=core/fuzz
)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(assembler assembler_structured frames postmortem extract)
fi

run_one() {
    local t=$1 d=${dir[$1]}
    local new="$root/target/fuzz-new/$t"
    mkdir -p "$new"
    local start end status=0
    start=$(date +%s)
    (cd "$root/$d" && cargo +nightly fuzz run -O -s "$sanitizer" "$t" "$new" "corpus/$t" -- \
        -runs="$runs" -max_len="$max_len" -print_final_stats=1) >"$out/$t.log" 2>&1 || status=$?
    end=$(date +%s)
    local done rss
    done=$(grep -oE '^Done [0-9]+ runs' "$out/$t.log" | grep -oE '[0-9]+' || echo 0)
    rss=$(grep -oE 'peak_rss_mb: *[0-9]+' "$out/$t.log" | grep -oE '[0-9]+$' || echo '?')
    local secs=$((end - start))
    local verdict="no finding"
    [ "$status" -ne 0 ] && verdict="FINDING or error (exit $status, see $out/$t.log)"
    printf '%-22s %12s runs %7s s %8s exec/s  peak RSS %s MB  %s\n' "$t" "$done" "$secs" \
        "$((done / (secs > 0 ? secs : 1)))" "$rss" "$verdict"
}

echo "fuzz: $(date -u +%FT%TZ), commit $(git -C "$root" rev-parse --short HEAD), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "fuzz: $runs executions per target (0: the corpora once), sanitizer $sanitizer, max_len $max_len, $jobs at a time, logs in $out"
# Build first, one at a time (the builds share a target directory per crate).
for t in "${targets[@]}"; do
    (cd "$root/${dir[$t]}" && cargo +nightly fuzz build -O -s "$sanitizer" "$t") >/dev/null 2>&1
done
pids=()
for t in "${targets[@]}"; do
    run_one "$t" &
    pids+=($!)
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
        wait -n || true
    done
done
wait
