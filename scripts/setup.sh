#!/usr/bin/env bash
# Installs what microspan's builds and tests need on a fresh machine; idempotent.
# - the embedded targets and components of the default stable toolchain (never a new toolchain:
#   a newer stable here cannot download the embedded targets),
# - qemu-system-arm (through apt when run as root; otherwise it says what to run).
set -euo pipefail

targets=(thumbv7m-none-eabi thumbv6m-none-eabi thumbv7em-none-eabihf riscv32imac-unknown-none-elf)
installed=$(rustup target list --installed)
missing=()
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || missing+=("$t")
done
if ((${#missing[@]})); then
    echo "setup: rustup target add ${missing[*]}"
    rustup target add "${missing[@]}"
fi
components=$(rustup component list --installed)
for c in llvm-tools rust-src clippy rustfmt; do
    grep -q "^$c" <<<"$components" || rustup component add "$c"
done

if ! command -v qemu-system-arm >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: apt-get install -y qemu-system-arm"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm >/dev/null
    else
        echo "setup: qemu-system-arm is missing; install it with: sudo apt-get install -y qemu-system-arm" >&2
        exit 1
    fi
fi
if ! command -v gcc >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null
    else
        echo "setup: gcc is missing (it builds the QEMU instruction-counting plugin): sudo apt-get install -y gcc" >&2
        exit 1
    fi
fi
