#!/usr/bin/env bash
# Durable control and resume, measured on this machine's disk and loopback:
#   1. control change -> durable (fsync) -> acknowledged, 100 changes one at a time;
#   2. LISTENERS listeners (default 300) across a server restart: the harness reconnects and
#      resumes; reports the gap each listener heard, how long the server was down, and missing
#      sequence numbers (must be 0).
#
#   scripts/perf-restart.sh [BIN=target/release/auralis] [LISTENERS=300]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
bin=${1:-target/release/auralis}
listeners=${2:-300}
port=${PORT:-18490}
work=$(mktemp -d)
trap 'kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$work"' EXIT

start() {
  "$bin" serve --addr "127.0.0.1:$port" --state-dir "$work/state" --codecs pcm_s16le,opus \
    >>"$work/serve.log" 2>&1 &
  echo $! >"$work/pid"
  wait_http "http://127.0.0.1:$port/readyz" 200
}

start
echo "control ack (fsync on $(df --output=source "$work" | tail -1)):"
node scripts/perf-control-ack.mjs "$port" 100
curl -fsS "http://127.0.0.1:$port/metrics" | grep '^auralis_control_log_append_seconds_\(sum\|count\)'

"$bin" load --url "ws://127.0.0.1:$port/ws?codec=opus" --clients "$listeners" --ramp 2s \
  --duration 12s --reconnect --decode-fraction 0 --json "$work/load.json" >/dev/null &
load=$!
sleep 6
down=$(date +%s%N)
kill -TERM "$(cat "$work/pid")"
while kill -0 "$(cat "$work/pid")" 2>/dev/null; do sleep 0.02; done
start
back=$(date +%s%N)
wait "$load" || true
python3 - "$work/load.json" "$(( (back - down) / 1000000 ))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
h = r["healthy"]
down_ms = int(sys.argv[2])
g = h["reconnect_gap"]
print(json.dumps({
    "listeners": r["clients"], "connected": r["connected"], "reconnects": h["reconnects"],
    "resumes": h["resumes"], "gaps": h["gaps"], "missing_chunks": h["missing_chunks"],
    "resumed_chunks": h["resumed_chunks"], "server_down_ms": down_ms,
    "gap_p50_ms": g["p50_ms"], "gap_p99_ms": g["p99_ms"], "gap_max_ms": g["max_ms"],
    "streaming_again_after_back_p99_ms": round(g["p99_ms"] - down_ms, 1),
}))
PY
