#!/usr/bin/env bash
# Telemetry cost and /metrics render time, for docs/perf.md.
#  1. Server CPU seconds while N listeners stream for D seconds, with metrics on and with
#     --no-metrics, alternating ROUNDS times; prints the on/off ratio of the totals.
#  2. With M listeners connected, the time to answer GET /metrics (200 requests): p50/p99/max.
#   usage: scripts/perf-telemetry.sh [CLIENTS=500] [SECONDS=30] [ROUNDS=2] [RENDER_CLIENTS=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
clients=${1:-500}
seconds=${2:-30}
rounds=${3:-2}
render_clients=${4:-1000}
port=${PERF_PORT:-18491}
out=${PERF_OUT:-target/perf}
mkdir -p "$out"

cargo build --release --quiet --bin auralis
bin=target/release/auralis
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null || true' EXIT

start_server() { # extra flags...
  "$bin" serve --ephemeral --addr "127.0.0.1:${port}" "$@" >"$out/serve.log" 2>&1 &
  pid=$!
  wait_http "http://127.0.0.1:${port}/readyz"
}
stop_server() { kill -TERM "$pid"; wait "$pid" || true; pid=; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }

run_mode() { # label flags...
  local label=$1; shift
  start_server "$@"
  sleep 1
  local before; before=$(cpu_ticks)
  "$bin" load --url "ws://127.0.0.1:${port}/ws" --clients "$clients" --duration "$seconds" \
    --ramp 2 --json "$out/telemetry-${label}.json" >/dev/null
  local after; after=$(cpu_ticks)
  stop_server
  echo $(( after - before ))
}

on=0; off=0
for round in $(seq 1 "$rounds"); do
  t_on=$(run_mode on)
  t_off=$(run_mode off --no-metrics)
  echo "round ${round}: server CPU ticks with metrics ${t_on}, without ${t_off}"
  on=$(( on + t_on )); off=$(( off + t_off ))
done
python3 - "$on" "$off" "$(getconf CLK_TCK)" "$clients" "$seconds" "$rounds" <<'PY'
import sys
on, off, hz, clients, seconds, rounds = map(int, sys.argv[1:])
print(f"telemetry cost, {clients} listeners x {seconds} s x {rounds} rounds: "
      f"{on / hz:.1f} s CPU with metrics, {off / hz:.1f} s without -> ratio {on / max(off, 1):.3f}")
PY

start_server
"$bin" load --url "ws://127.0.0.1:${port}/ws" --clients "$render_clients" --duration 40 \
  --ramp 5 --json "$out/render-load.json" >/dev/null &
load_pid=$!
sleep 10
listeners=$(curl -fsS "http://127.0.0.1:${port}/api/status" | python3 -c 'import json,sys; print(json.load(sys.stdin)["listeners"])')
for _ in $(seq 1 200); do
  curl -fsS -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:${port}/metrics"
  sleep 0.05
done >"$out/metrics-render.txt"
wait "$load_pid"
stop_server
python3 - "$out/metrics-render.txt" "$listeners" <<'PY'
import sys
times = sorted(float(t) * 1000 for t in open(sys.argv[1]))
q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
print(f"GET /metrics with {sys.argv[2]} listeners connected ({len(times)} requests): "
      f"p50 {q(0.5):.2f} ms, p99 {q(0.99):.2f} ms, max {times[-1]:.2f} ms")
PY
