#!/usr/bin/env bash
# The loom model of the ring (core/src/ring.rs, `loom_model`) with both kinds of atomics, at a
# deeper preemption bound than CI's. Every interleaving with up to PREEMPTIONS preemptions
# (default 3) is explored, for the compare-and-swap atomics (Cortex-M3/M4, desktop) and the
# critical-section ones (Cortex-M0). About 3 minutes of model per configuration at 3 on two
# cores, plus the builds; 4 takes far longer.
#
#   bash scripts/loom.sh
#   PREEMPTIONS=4 bash scripts/loom.sh
#
# CI (scripts/test-all.sh) explores both at 2 (seconds instead of minutes), to keep within its
# time budget (the mutations it was checked against are listed there): run this before a change
# to the ring or to core/src/atomic.rs lands.
set -euo pipefail
cd "$(dirname "$0")/.."
preemptions=${PREEMPTIONS:-3}
# MICROSPAN_LOOM_CS: the critical-section model (core/build.rs sets cfg(loom_cs) on the core
# alone, so both models share one build of the dependencies).
for model in compare-and-swap critical-section; do
    cs=()
    [[ $model == critical-section ]] && cs=(MICROSPAN_LOOM_CS=1)
    echo "loom, $model atomics, up to $preemptions preemptions"
    time env "${cs[@]}" MICROSPAN_LOOM_PREEMPTIONS="$preemptions" RUSTFLAGS="--cfg loom" \
        cargo test -q -p microspan --lib --release --target-dir target/loom loom
done
