#!/usr/bin/env bash
# Peer comparison on loopback: auralis against Debian's icecast2 2.4, both serving the same music,
# measured with the same harness. CODEC=pcm (the default): raw 48 kHz s16le stereo PCM (1536
# kbit/s per listener). CODEC=opus: Opus at OPUS_BITRATE (default 128000) bit/s, stereo 48 kHz.
#  - icecast2 plays the music from `auralis render` (120 s, looped), fed in real time by ffmpeg:
#    as raw PCM (`-f s16le`, Content-Type audio/L16;rate=48000;channels=2; icecast2 relays it with
#    its generic handler, and sends no ICY metadata to a client that does not ask for it), or as
#    an Ogg/Opus mount (ffmpeg's libopus at the same bit rate, 20 ms frames, 100 ms Ogg pages so
#    that pages arrive as often as auralis' chunks). The harness reads a raw PCM body as bytes and
#    times arrivals per 100 ms of the nominal byte rate; an Ogg/Opus body page by page (a page is
#    a chunk, its sequence number the chunk's), so startup is the time to the first audio page
#    after the headers: the first decodable audio.
#  - With CODEC=opus auralis is measured twice: its WebSocket listeners (`?codec=opus`) and its
#    own Ogg Opus HTTP mount (`/stations/default.opus`, one page per chunk), the latter the same
#    kind of stream, read the same way, as icecast2's mount.
#  - The servers are measured one after the other, each pinned alone to core 0. `auralis load`
#    runs on core 1, and so does ffmpeg while icecast2 is measured, so that the core under test
#    only runs the server. Auralis' CPU includes synthesizing the music; icecast2's does not
#    (ffmpeg's CPU is reported apart, as source_cpu_seconds).
#  - icecast2 keeps its stock limits apart from clients (10000): queue-size 512 KiB (2.7 s of
#    this stream: a listener further behind is dropped) and burst-size 64 KiB (341 ms of audio
#    sent at once on connect; auralis sends its latest 100 ms chunk). ICECAST_QUEUE and
#    ICECAST_BURST override them.
#  - Per server and listener count N: server CPU seconds per listener-hour (CPU time over the run
#    divided by N x (duration + ramp/2): listeners join evenly through the ramp and all stay until
#    ramp + duration), resident memory per listener ((VmRSS at ramp + duration/2 - VmRSS just
#    before the run) / N), gaps, disconnects, p99 inter-arrival, startup, and the harness' own
#    CPU and receive rate. A level passes with all N connected, no gap, no disconnect and p99
#    inter-arrival <= 150 ms.
# Writes compare.md and compare.json (plus each run's report and the logs) to COMPARE_OUT.
# Installs icecast2 and ffmpeg with apt-get when missing; run it as root.
#   usage: [CODEC=pcm|opus] [OPUS_BITRATE=128000] [LEVELS="100 500 1000 2000"]
#          [SECONDS_PER_LEVEL=30] [RAMP=5] [ICECAST_PORT=18600] [AURALIS_PORT=18610]
#          [COMPARE_OUT=target/compare-CODEC] scripts/compare-icecast.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

levels=${LEVELS:-100 500 1000 2000}
run_seconds=${SECONDS_PER_LEVEL:-30}
ramp=${RAMP:-5}
ice_port=${ICECAST_PORT:-18600}
aur_port=${AURALIS_PORT:-18610}
ice_queue=${ICECAST_QUEUE:-524288}
ice_burst=${ICECAST_BURST:-65536}
ice_pass=auralis-compare
codec=${CODEC:-pcm}
opus_bitrate=${OPUS_BITRATE:-128000}
case "$codec" in
  pcm) mount=/auralis.pcm bytes_per_second=192000 aur_codec=pcm_s16le ;;
  opus) mount=/auralis.opus bytes_per_second=$((opus_bitrate / 8)) aur_codec=opus ;;
  *) echo "compare: CODEC must be pcm or opus" >&2; exit 2 ;;
esac
out=${COMPARE_OUT:-target/compare-${codec}}
bin=target/release/auralis
mkdir -p "$out/icecast"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" || true

ice_pid= ff_pid= aur_pid= load_pid=
ice_tmp=$(mktemp -d)
cleanup() {
  local p
  for p in "$load_pid" "$ff_pid" "$ice_pid" "$aur_pid"; do
    [ -n "$p" ] && kill "$p" 2>/dev/null || true
  done
  for p in "$load_pid" "$ff_pid" "$ice_pid" "$aur_pid"; do
    [ -n "$p" ] && wait "$p" 2>/dev/null || true
  done
  cp "$ice_tmp"/log/*.log "$out/icecast/" 2>/dev/null || true
  rm -rf "$ice_tmp"
}
trap cleanup EXIT

ensure_tools() {
  local missing=()
  command -v icecast2 >/dev/null || missing+=(icecast2)
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  [ ${#missing[@]} -eq 0 ] && return 0
  local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends)
  "${apt[@]}" "${missing[@]}" || { apt-get update && "${apt[@]}" "${missing[@]}"; }
  command -v python3 >/dev/null && command -v taskset >/dev/null ||
    { echo "compare: needs python3 and taskset (util-linux)" >&2; exit 1; }
}

# icecast_config FILE: one listen socket on loopback, one mount fed by ffmpeg. As root, icecast2
# refuses to run unless it changes owner, so it drops to the icecast2 user the package creates;
# its log directory (opened after the switch) lives in a temp dir that user can reach.
icecast_config() {
  local file=$1 changeowner=
  mkdir -p "$ice_tmp/log"
  chmod 755 "$ice_tmp"
  if [ "$(id -u)" -eq 0 ]; then
    chown icecast2:icecast "$ice_tmp/log"
    changeowner="<changeowner><user>icecast2</user><group>icecast</group></changeowner>"
  fi
  cat >"$file" <<EOF
<icecast>
  <location>loopback</location>
  <admin>root@localhost</admin>
  <hostname>127.0.0.1</hostname>
  <limits>
    <clients>10000</clients>
    <sources>2</sources>
    <queue-size>${ice_queue}</queue-size>
    <client-timeout>30</client-timeout>
    <header-timeout>15</header-timeout>
    <source-timeout>10</source-timeout>
    <burst-on-connect>1</burst-on-connect>
    <burst-size>${ice_burst}</burst-size>
  </limits>
  <authentication>
    <source-password>${ice_pass}</source-password>
    <relay-password>${ice_pass}</relay-password>
    <admin-user>admin</admin-user>
    <admin-password>${ice_pass}</admin-password>
  </authentication>
  <listen-socket>
    <port>${ice_port}</port>
    <bind-address>127.0.0.1</bind-address>
  </listen-socket>
  <mount type="normal">
    <mount-name>${mount}</mount-name>
    <public>0</public>
  </mount>
  <fileserve>1</fileserve>
  <paths>
    <basedir>/usr/share/icecast2</basedir>
    <logdir>${ice_tmp}/log</logdir>
    <webroot>/usr/share/icecast2/web</webroot>
    <adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging>
    <accesslog>access.log</accesslog>
    <errorlog>error.log</errorlog>
    <loglevel>2</loglevel>
    <logsize>100000</logsize>
  </logging>
  <security>
    <chroot>0</chroot>
    ${changeowner}
  </security>
</icecast>
EOF
}

start_icecast() {
  icecast_config "$out/icecast/icecast.xml"
  taskset -c 0 icecast2 -c "$out/icecast/icecast.xml" >"$out/icecast/icecast.out" 2>&1 &
  ice_pid=$!
  wait_http "http://127.0.0.1:${ice_port}/status-json.xsl"
  kill -0 "$ice_pid" 2>/dev/null || { cat "$out/icecast/icecast.out" >&2; exit 1; }
}

# mount_up: whether icecast2 lists the mount, i.e. ffmpeg's source is connected.
mount_up() {
  curl -fsS "http://127.0.0.1:${ice_port}/status-json.xsl" -o "$ice_tmp/status.json" 2>/dev/null &&
    grep -q "\"listenurl\":\"[^\"]*${mount}\"" "$ice_tmp/status.json"
}

# start_source WAV: ffmpeg reads the WAV in real time, forever, and sends it as raw PCM or Opus.
start_source() {
  local format
  if [ "$codec" = opus ]; then
    format=(-c:a libopus -b:a "$opus_bitrate" -frame_duration 20 -application audio -ar 48000
      -ac 2 -f ogg -page_duration 100000 -content_type audio/ogg)
  else
    format=(-c:a pcm_s16le -ar 48000 -ac 2 -f s16le
      -content_type 'audio/L16;rate=48000;channels=2')
  fi
  taskset -c 1 ffmpeg -nostdin -hide_banner -loglevel warning -re -stream_loop -1 -i "$1" \
    "${format[@]}" -ice_name auralis \
    "icecast://source:${ice_pass}@127.0.0.1:${ice_port}${mount}" \
    >"$out/icecast/ffmpeg.log" 2>&1 &
  ff_pid=$!
  for _ in $(seq 1 100); do
    mount_up && return 0
    sleep 0.1
  done
  echo "compare: ffmpeg's source never showed up on ${mount}" >&2
  cat "$out/icecast/ffmpeg.log" >&2
  exit 1
}

stop() { # PIDVAR
  local p=${!1}
  [ -n "$p" ] || return 0
  kill -TERM "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
  printf -v "$1" ''
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo -1; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo -1; }

# measure SERVER PID URL N: one harness run against the server, with the server's CPU time and
# memory around it; appends a line to runs.tsv.
measure() {
  local server=$1 pid=$2 url=$3 n=$4 rc=0
  sleep 3 # let the previous level's sockets close before the idle baseline
  local idle cpu0 src0=-1 t0
  idle=$(rss_kb "$pid")
  cpu0=$(cpu_ticks "$pid")
  [ -n "$ff_pid" ] && src0=$(cpu_ticks "$ff_pid")
  t0=$(date +%s.%N)
  taskset -c 1 "$bin" load --url "$url" --clients "$n" --duration "$run_seconds" \
    --ramp "$ramp" --threads 1 --decode-fraction 0 --pcm-bytes-per-second "$bytes_per_second" \
    --json "$out/${server}-${n}.json" >"$out/${server}-${n}.txt" 2>&1 &
  load_pid=$!
  sleep "$(awk -v r="$ramp" -v d="$run_seconds" 'BEGIN {print r + d / 2}')"
  local mid; mid=$(rss_kb "$pid")
  wait "$load_pid" || rc=$?
  load_pid=
  local cpu1 src1=-1 t1
  cpu1=$(cpu_ticks "$pid")
  [ -n "$ff_pid" ] && src1=$(cpu_ticks "$ff_pid")
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$server" "$n" "$rc" "$cpu0" "$cpu1" \
    "$idle" "$mid" "$src0" "$src1" "$t0" "$t1" >>"$out/runs.tsv"
  echo "compare: ${server}, ${n} listeners: harness exit ${rc}" >&2
}

main() {
  ensure_tools
  cargo build --release --quiet --bin auralis
  "$bin" render --seconds 120 --out "$out/source.wav" >/dev/null
  : >"$out/runs.tsv"

  start_icecast
  start_source "$out/source.wav"
  for n in $levels; do
    if ! mount_up; then
      echo "compare: icecast2 lost its source" >&2
      cat "$out/icecast/ffmpeg.log" >&2
      exit 1
    fi
    measure icecast "$ice_pid" "http://127.0.0.1:${ice_port}${mount}" "$n"
  done
  stop ff_pid
  stop ice_pid

  taskset -c 0 "$bin" serve --ephemeral --addr "127.0.0.1:${aur_port}" >"$out/serve.log" 2>&1 &
  aur_pid=$!
  wait_http "http://127.0.0.1:${aur_port}/readyz"
  sleep 2
  for n in $levels; do
    measure auralis "$aur_pid" "ws://127.0.0.1:${aur_port}/ws?codec=${aur_codec}" "$n"
  done
  if [ "$codec" = opus ]; then
    for n in $levels; do
      measure auralis-http "$aur_pid" "http://127.0.0.1:${aur_port}/stations/default.opus" "$n"
    done
  fi
  stop aur_pid

  python3 - "$out" "$(getconf CLK_TCK)" "$run_seconds" "$ramp" "$ice_queue" "$ice_burst" \
    "$codec" "$opus_bitrate" <<'PY'
import json, os, sys

out, hz, run_seconds, ramp = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
ice_queue, ice_burst = int(sys.argv[5]), int(sys.argv[6])
codec, opus_bitrate = sys.argv[7], int(sys.argv[8])
stream = "raw PCM, 1536 kbit/s" if codec == "pcm" else f"Opus at {opus_bitrate // 1000} kbit/s"
servers = ("auralis", "auralis-http", "icecast") if codec == "opus" else ("auralis", "icecast")
results = {s: {} for s in servers}
names = {"auralis": "auralis WebSocket", "auralis-http": "auralis Ogg mount", "icecast": "icecast2"}

def get(d, path):
    for key in path.split("."):
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d

for line in open(os.path.join(out, "runs.tsv")):
    server, n, rc, cpu0, cpu1, idle, mid, src0, src1, t0, t1 = line.rstrip("\n").split("\t")
    n, rc = int(n), int(rc)
    cpu0, cpu1, idle, mid, src0, src1 = map(int, (cpu0, cpu1, idle, mid, src0, src1))
    path = os.path.join(out, f"{server}-{n}.json")
    try:
        report = json.load(open(path))
    except (OSError, ValueError):
        report = None
    r = {"listeners": n, "harness_exit": rc, "wall_seconds": round(float(t1) - float(t0), 2)}
    alive = min(cpu0, cpu1, idle, mid) >= 0
    if alive:
        cpu = (cpu1 - cpu0) / hz
        r["server_cpu_seconds"] = cpu
        # Client i of n joins at ramp * i / (n - 1) and all leave at ramp + duration.
        r["listener_hours"] = n * (run_seconds + ramp / 2) / 3600
        r["cpu_seconds_per_listener_hour"] = cpu / r["listener_hours"]
        r["rss_idle_kib"], r["rss_mid_kib"] = idle, mid
        r["rss_per_listener_kib"] = (mid - idle) / n
    else:
        r["error"] = "server process gone"
    if min(src0, src1) >= 0:
        r["source_cpu_seconds"] = (src1 - src0) / hz
    if report is not None:
        for key in ("connected", "failed", "duration_seconds", "healthy.gaps",
                    "healthy.disconnected", "healthy.playout_underruns",
                    "healthy.interarrival.p99_ms", "healthy.jitter.p95_ms",
                    "healthy.startup.p50_ms", "healthy.startup.p99_ms", "healthy.bytes",
                    "harness.cpu_seconds", "harness.cpu_ratio",
                    "harness.receive_mbit_per_second"):
            r[key.replace("healthy.", "").replace(".", "_")] = get(report, key)
    else:
        r.setdefault("error", f"no report ({path})")
    p99 = r.get("interarrival_p99_ms")
    r["passed"] = bool(
        alive and report is not None and rc in (0, 99)
        and r.get("connected") == n and r.get("gaps") == 0 and r.get("disconnected") == 0
        and p99 is not None and p99 <= 150)
    results[server][n] = r

levels = sorted(set().union(*(results[s] for s in servers)))

def cell(key, fmt):
    def show(server, n):
        v = results[server].get(n, {}).get(key)
        if v is None:
            return "-"
        if isinstance(v, bool):
            return "yes" if v else "**no**"
        return fmt.format(v)
    return lambda n: " / ".join(show(server, n) for server in servers)

def startup(n):
    def one(server):
        r = results[server].get(n, {})
        a, b = r.get("startup_p50_ms"), r.get("startup_p99_ms")
        return "-" if a is None or b is None else f"{a:.0f}, {b:.0f}"
    return " / ".join(one(server) for server in servers)

columns = [
    ("passed", cell("passed", "{}")),
    ("connected", cell("connected", "{}")),
    ("gaps", cell("gaps", "{}")),
    ("disconnected", cell("disconnected", "{}")),
    ("p99 inter-arrival ms", cell("interarrival_p99_ms", "{:.1f}")),
    ("p95 jitter ms", cell("jitter_p95_ms", "{:.1f}")),
    ("startup p50, p99 ms", startup),
    ("server CPU s per listener-hour", cell("cpu_seconds_per_listener_hour", "{:.2f}")),
    ("RSS KiB per listener", cell("rss_per_listener_kib", "{:.1f}")),
    ("harness CPU ratio", cell("harness_cpu_ratio", "{:.2f}")),
    ("harness receive Mbit/s", cell("harness_receive_mbit_per_second", "{:.0f}")),
    ("harness exit", cell("harness_exit", "{}")),
]
lines = [
    f"{' vs '.join(names[s] for s in servers)} ({stream}), each server pinned alone to core 0, "
    "harness on core 1; "
    f"{run_seconds:g} s per "
    f"level after a {ramp:g} s ramp; icecast2 queue-size {ice_queue} B, burst-size {ice_burst} B.",
    "Each cell: " + " / ".join(names[s] for s in servers) + ".",
    "",
    "| listeners | " + " | ".join(name for name, _ in columns) + " |",
    "|---:|" + "---|" * len(columns),
]
for n in levels:
    lines.append(f"| {n} | " + " | ".join(f(n) for _, f in columns) + " |")
lines.append("")
best = {}
for server in servers:
    passed = [n for n, r in results[server].items() if r["passed"]]
    best[server] = max(passed) if passed else 0
    lines.append(f"{server}: max listeners with zero gaps and p99 inter-arrival <= 150 ms: "
                 f"{best[server]}")
text = "\n".join(lines) + "\n"
print(text, end="")
open(os.path.join(out, "compare.md"), "w").write(text)
summary = {
    "codec": codec, "run_seconds": run_seconds, "ramp_seconds": ramp,
    "icecast": {"queue_size_bytes": ice_queue, "burst_size_bytes": ice_burst},
    "max_listeners_passed": best,
    "results": {s: [results[s][n] for n in sorted(results[s])] for s in servers},
}
json.dump(summary, open(os.path.join(out, "compare.json"), "w"), indent=2)
PY
}

main "$@"
