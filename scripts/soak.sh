#!/usr/bin/env bash
# Soak: runs a server with LISTENERS listeners for DURATION and reports what grew or broke.
#
#   scripts/soak.sh [LISTENERS=500] [DURATION=30m] [WARMUP=60s]
#
# A tenth of the listeners misbehave (read at half rate or stop reading), so the slow-consumer
# paths run the whole time too. The server's RSS is sampled every 5 s; growth is the mean of the
# last tenth of the samples after warm-up over the mean of the first tenth. Fails when a healthy
# listener saw a gap or a failed connection, or RSS grew by MAX_RSS_GROWTH (default 0.05) or more.
# AURALIS_BIN picks the binary (default: a release build); SOAK_JSON keeps the report.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

listeners=${1:-500}
duration=${2:-30m}
warmup=${3:-60s}
max_growth=${MAX_RSS_GROWTH:-0.05}
port=${SOAK_PORT:-18465}
bin=${AURALIS_BIN:-target/release/auralis}
if [ -z "${AURALIS_BIN:-}" ]; then
  cargo build --release --quiet --bin auralis
fi

workdir=$(mktemp -d)
trap 'kill "$server" "$sampler" 2>/dev/null || true; rm -rf "$workdir"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$bin" serve --ephemeral --addr "127.0.0.1:${port}" --max-listeners $((listeners + 100)) \
  >"$workdir/serve.log" 2>&1 &
server=$!
wait_http "http://127.0.0.1:${port}/readyz"

# RSS in kB with a timestamp, every 5 s, until the server exits.
(
  start=$(date +%s)
  while kill -0 "$server" 2>/dev/null; do
    rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server/status" 2>/dev/null || true)
    [ -n "$rss" ] && echo "$(($(date +%s) - start)) $rss"
    sleep 5
  done
) >"$workdir/rss.txt" &
sampler=$!

echo "soak: $listeners listeners for $duration (warm-up $warmup) on 127.0.0.1:${port}"
"$bin" load --url "ws://127.0.0.1:${port}/ws" --clients "$listeners" --ramp 10s \
  --duration "$duration" --slow-fraction 0.1 --json "$workdir/load.json" >"$workdir/load.txt"

python3 - "$workdir/load.json" "$workdir/rss.txt" "$warmup" "$max_growth" "${SOAK_JSON:-}" <<'PY'
import json, re, sys

report_path, rss_path, warmup, max_growth, keep = sys.argv[1:6]
units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
warmup_s = sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", warmup)) or float(warmup)
r = json.load(open(report_path))
samples = [tuple(map(int, line.split())) for line in open(rss_path) if line.strip()]
steady = [kb for t, kb in samples if t >= warmup_s]
assert len(steady) >= 6, f"too few RSS samples after warm-up: {samples}"
tenth = max(3, len(steady) // 10)  # at least three samples a side, for short runs
baseline = sum(steady[:tenth]) / tenth
end = sum(steady[-tenth:]) / tenth
growth = end / baseline - 1
h, s, server = r["healthy"], r["slow"], r.get("server") or {}
summary = {
    "listeners": r["clients"],
    "slow_listeners": r["slow_clients"],
    "duration_seconds": r["duration_seconds"],
    "rss_baseline_mib": round(baseline / 1024, 1),
    "rss_end_mib": round(end / 1024, 1),
    "rss_peak_mib": round(max(steady) / 1024, 1),
    "rss_growth": round(growth, 4),
    "healthy_gaps": h["gaps"],
    "healthy_chunks": h["chunks"],
    "healthy_disconnected": h["disconnected"],
    "failed": r["failed"],
    "server_underruns": server.get("ring_underruns"),
    "server_chunks_dropped": server.get("chunks_dropped"),
    "server_disconnections": server.get("disconnections"),
    "slow_chunks": s["chunks"],
}
print(json.dumps(summary, indent=2))
if keep:
    json.dump({"summary": summary, "rss_kib": samples, "load": r}, open(keep, "w"), indent=2)
problems = []
if h["gaps"] or h["disconnected"] or r["failed"]:
    problems.append(f"healthy listeners: {h['gaps']} gaps, {h['disconnected']} disconnected, {r['failed']} failed")
if growth >= float(max_growth):
    problems.append(f"RSS grew {growth:.1%} after warm-up (limit {float(max_growth):.0%})")
if problems:
    sys.exit("soak: FAILED: " + "; ".join(problems))
print(f"soak: ok: RSS {baseline/1024:.1f} -> {end/1024:.1f} MiB ({growth:+.1%}), 0 gaps for {r['clients'] - r['slow_clients']} healthy listeners")
PY
