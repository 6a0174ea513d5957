#!/usr/bin/env bash
# Fuzzes the parsers a hostile client reaches: client text messages, audio frames and tokens
# (targets in fuzz/, properties in src/fuzz.rs). Each target runs for SECONDS (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain (libFuzzer's instrumentation); installs cargo-fuzz when missing.
# A crash leaves its input in fuzz/artifacts/TARGET/: once fixed, copy it to
# fuzz/regressions/TARGET/ so `cargo test --test fuzz_regressions` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(client_message frame token)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  # Start from the saved regressions: they are the known hard cases.
  cp -n fuzz/regressions/"$target"/* "$corpus"/ 2>/dev/null || true
  echo "== fuzz $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "$corpus" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -print_final_stats=1
done
echo "fuzz: no crashes in ${targets[*]} (${seconds}s each)"
