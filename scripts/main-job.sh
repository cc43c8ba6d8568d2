#!/usr/bin/env bash
# The main job: build the Cortex-M3 reference firmware, run it under QEMU, decode its UART stream,
# show the trace tree, and write out/reference.jaeger.json (open it in the Jaeger UI),
# out/reference.otlp.json and the UART capture out/reference.uart.bin. Extra arguments go to the runner, e.g.
#   bash scripts/main-job.sh --otlp http://localhost:4318
#   bash scripts/main-job.sh --jaeger-thrift http://localhost:14268/api/traces
#   bash scripts/main-job.sh --board microbit
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec cargo run -q --locked -p microspan-tests --bin reference -- "$@"
