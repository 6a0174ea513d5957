#!/usr/bin/env bash
# Per-listener cost, side by side: each server binary given streams to N listeners (of CODEC:
# pcm_s16le by default, or opus, flac) on one core (taskset -c 0) while the load harness drives
# them from the other (taskset -c 1, one runtime thread). The harness decodes what the server's
# own harness decodes by default (DECODE_FRACTION=0 for framing checks only; the flag is passed
# only when set, so harnesses from before it exist still run). Prints, per binary, the server's CPU use, the listeners' jitter and the
# server-side jitter and delivery quantiles, and keeps each load report as JSON.
#   usage: [CODEC=pcm_s16le|opus|flac] scripts/perf-fanout.sh CLIENTS SECONDS BINARY [BINARY...]
# HARNESS=PATH runs every load from that binary (default: each server's own), so servers built
# from different commits are measured by the same harness.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
clients=$1 seconds=$2
shift 2
port=${PERF_PORT:-18520}
codec=${CODEC:-pcm_s16le}
out=${PERF_OUT:-target/perf}
mkdir -p "$out"
# Each listener is a socket on both sides.
ulimit -n "$(ulimit -Hn)"

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

printf '%-36s %8s %10s %10s %10s %10s %10s %6s\n' binary "cpu_%" "jit_p95" "jit_p99" \
  "srv_j_p95" "srv_j_p99" "deliv_p99" gaps
for bin in "$@"; do
  name=$bin
  taskset -c 0 "$bin" serve --ephemeral --addr "127.0.0.1:${port}" --backend cpu \
    >"$out/fanout-serve.log" 2>&1 &
  pid=$!
  wait_http "http://127.0.0.1:${port}/readyz"
  json="$out/fanout-${codec}-${clients}-$(echo "$name" | tr '/' '_').json"
  ticks_before=$(cpu_ticks "$pid")
  started=$(date +%s.%N)
  taskset -c 1 "${HARNESS:-$bin}" load --url "ws://127.0.0.1:${port}/ws?codec=${codec}" \
    --clients "$clients" --duration "${seconds}s" --ramp 10s --threads 1 --json "$json" \
    ${DECODE_FRACTION:+--decode-fraction "$DECODE_FRACTION"} >/dev/null
  ticks_after=$(cpu_ticks "$pid")
  ended=$(date +%s.%N)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  python3 - "$name" "$json" "$ticks_before" "$ticks_after" "$started" "$ended" \
    "$(getconf CLK_TCK)" <<'PY'
import json, sys
name, path, t0, t1, s0, s1, hz = sys.argv[1:]
r = json.load(open(path))
h, s = r["healthy"], r.get("server") or {}
cpu = (int(t1) - int(t0)) / int(hz) / (float(s1) - float(s0)) * 100
fmt = lambda v: "-" if v is None else f"{v:.1f}"
print(f"{name:<36} {cpu:8.1f} {fmt(h['jitter'].get('p95_ms')):>10} {fmt(h['jitter'].get('p99_ms')):>10} "
      f"{fmt(s.get('jitter_p95_ms')):>10} {fmt(s.get('jitter_p99_ms')):>10} "
      f"{fmt(s.get('delivery_p99_ms')):>10} {h['gaps']:>6}  (connected {r['connected']}/{r['clients']})")
PY
done
