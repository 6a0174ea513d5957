#!/usr/bin/env bash
# Scripted listener run for docs/perf.md: starts a release server, measures its resident memory,
# connects N listeners for D seconds with `auralis load`, samples memory again mid-run, and prints
# the load report plus memory per listener.
#   usage: scripts/perf-listeners.sh [CLIENTS=200] [SECONDS=30]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
clients=${1:-200}
seconds=${2:-30}
port=${PERF_PORT:-18490}
out=${PERF_OUT:-target/perf}
mkdir -p "$out"

cargo build --release --quiet --bin auralis
bin=target/release/auralis
"$bin" serve --ephemeral --addr "127.0.0.1:${port}" >"$out/serve.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true' EXIT
wait_http "http://127.0.0.1:${port}/readyz"
sleep 2
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
idle=$(rss_kb)

"$bin" load --url "ws://127.0.0.1:${port}/ws" --clients "$clients" --duration "$seconds" \
  --ramp 2 --json "$out/load-${clients}.json" &
load_pid=$!
sleep $(( seconds / 2 + 2 ))
loaded=$(rss_kb)
listeners=$(curl -fsS "http://127.0.0.1:${port}/api/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["listeners"])')
wait "$load_pid"
curl -fsS "http://127.0.0.1:${port}/metrics" >"$out/metrics-${clients}.txt"

python3 - "$idle" "$loaded" "$listeners" <<'PY'
import sys
idle, loaded, listeners = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
print(f"server RSS: {idle} KiB idle, {loaded} KiB with {listeners} listeners "
      f"-> {(loaded - idle) / max(listeners, 1):.1f} KiB per listener")
PY
