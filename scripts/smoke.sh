#!/usr/bin/env bash
# Starts the real binary, checks its endpoints, drives a few listeners with `auralis load`, and
# checks that SIGTERM shuts it down cleanly. Fails on any gap, failed client or bad exit code.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

cargo build --quiet --bin auralis
bin=target/debug/auralis
port=${SMOKE_PORT:-18457}
workdir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$workdir"' EXIT

"$bin" serve --addr "127.0.0.1:${port}" --state-dir "$workdir/state" --station smoke=7:focus >"$workdir/serve.log" 2>&1 &
pid=$!
wait_http "http://127.0.0.1:${port}/readyz"
# Fetch to files first: `curl | grep -q` fails under pipefail when grep stops reading early.
check() { # PATH PATTERN
  curl -fsS "http://127.0.0.1:${port}$1" -o "$workdir/body"
  grep -q -- "$2" "$workdir/body" || { echo "smoke: $1 lacks $2" >&2; exit 1; }
}
check /healthz ok
check /api/status '"name":"smoke"'
check / player.js
check /metrics '^# HELP auralis_ws_chunks_sent_total'
check /api/stations '"preset":"focus"'

# Change the music live, then replay the station's control log offline.
curl -fsS -X POST "http://127.0.0.1:${port}/api/stations/smoke/control" \
  -d '{"preset":"pulse","key":"E"}' -o "$workdir/ack.json"
curl -fsS "http://127.0.0.1:${port}/api/stations/smoke/control" -o "$workdir/control.json"
python3 - "$workdir/ack.json" "$workdir/control.json" <<'PY'
import json, sys
ack, state = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
assert ack["params"]["bpm"] == 120 and ack["params"]["key"] == "E", ack
assert state["log"][-1]["position"] == ack["position"], state
print(f"smoke: change lands at bar {ack['bar']} (position {ack['position']})")
PY
start=$(python3 -c "import json; print(json.load(open('$workdir/ack.json'))['position'] / 48000 - 2)")
"$bin" render --control-log "$workdir/control.json" --start "$start" --seconds 4 --out "$workdir/replay.wav"

"$bin" load --url "ws://127.0.0.1:${port}/ws" --clients 20 --duration 3s \
  --slo gaps==0 --slo failed==0 --slo disconnected==0 --json "$workdir/load.json"
python3 - "$workdir/load.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
h = r["healthy"]
assert r["connected"] == 20 and r["failed"] == 0, r
assert r["passed"] and h["gaps"] == 0, f"sequence gaps: {h['gaps']}"
assert h["chunks"] >= 20 * 25, f"too few chunks: {h['chunks']}"
assert r["server"]["chunks_sent"] >= h["chunks"], r["server"]
print(f"smoke: {r['connected']} listeners, {h['chunks']} chunks, 0 gaps; server sent {r['server']['chunks_sent']:.0f}")
PY

# Every codec through the harness, half the clients decoding every chunk.
for codec in opus flac pcm_s16le; do
  "$bin" load --url "ws://127.0.0.1:${port}/ws?codec=${codec}" --clients 6 --duration 2s \
    --decode-fraction 0.5 --slo gaps==0 --slo decode_errors==0 --json "$workdir/load-${codec}.json" \
    >/dev/null
  echo "smoke: ${codec}: 6 listeners, 0 gaps, 0 decode errors"
done

# The browser player against this server: Opus through WebCodecs by default, then FLAC, then
# FLAC with damaged chunks (counted as decode errors, played as silence, no underrun).
node tests/web/browser-check.mjs --url "http://127.0.0.1:${port}/" --scenario codecs

kill -TERM "$pid"
wait "$pid"
grep -q "shutdown complete" "$workdir/serve.log"
echo "smoke: clean shutdown"
