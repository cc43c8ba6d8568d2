#!/usr/bin/env bash
# Measures microspan and its peers and writes BENCHMARKS.md (see tests/src/bin/bench.rs):
# instructions per operation on the emulated Cortex-M3 and Cortex-M0 (QEMU + a TCG plugin) beside
# defmt and SEGGER SystemView, bytes on the wire beside Jaeger Thrift / OTLP, flash, RAM and stack,
# the desktop record path beside fastrace and tracing (criterion, one process), and the decoder's
# throughput.
#
#   scripts/bench.sh            full run (about 10 minutes on 2 cores, most of it building)
#   scripts/bench.sh --quick    short desktop timings (a smoke run)
#   scripts/bench.sh --no-desktop   the deterministic figures only
#
# Besides what scripts/setup.sh installs (targets, QEMU, gcc), SystemView's C library needs
# Debian's gcc-arm-none-eabi and libclang 14 (bindgen); they are installed here, not in the test
# setup, since only the benchmark builds SystemView.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

need=()
command -v arm-none-eabi-gcc >/dev/null || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
[ -e /usr/lib/llvm-14/lib/libclang.so.1 ] || need+=(libclang1-14)
ls -d /usr/lib/llvm-14/lib/clang/*/include >/dev/null 2>&1 || need+=(libclang-common-14-dev)
if ((${#need[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "bench.sh: apt-get install -y ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "bench.sh: SystemView needs: sudo apt-get install -y ${need[*]} (continuing without it)" >&2
    fi
fi

cargo run -q -p microspan-tests --release --bin bench -- "$@"
