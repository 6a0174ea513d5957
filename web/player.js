// Auralis browser player: WebSocket PCM chunks scheduled back to back on the Web Audio clock.

const HEADER_LEN = 56;
const FLAG_UNDERRUN_FILL = 1;
const FLAG_DISCONTINUITY = 2;
const PREBUFFER_S = 0.2; // lead we aim for on (re)start: absorbs network jitter
const MAX_LEAD_S = 2.0; // beyond this we drop chunks so latency cannot grow without bound (clock drift, bursts)
const FADE_S = 0.005; // fade-in after a jump so it does not click
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
const STATS_LIMIT_MS = 600000; // the server rejects stats values above this

const $ = (id) => document.getElementById(id);
const ui = {
  station: $("station"), play: $("play"), volume: $("volume"), status: $("status"),
  seq: $("s-seq"), latency: $("s-latency"), buffer: $("s-buffer"), underruns: $("s-underruns"),
  disc: $("s-disc"), gaps: $("s-gaps"), fills: $("s-fills"), kbps: $("s-kbps"),
};

// Public, mutated in place so automated tests can poll it.
const auralis = {
  state: "idle", note: "", chunks: 0, underruns: 0, gaps: 0, discontinuities: 0, serverFills: 0,
  lastSequence: null, latencyMs: null, bufferMs: 0, kbps: 0, station: null,
};
window.auralis = auralis;

let ctx = null; // AudioContext, made in the click handler (autoplay policy)
let master = null; // GainNode for volume
let ws = null;
let playing = false; // user intent: true between Play and Stop
let nextTime = 0; // AudioContext time where the next chunk starts
let startAt = 0; // when audio resumes after a (re)start; "buffering" until then
let fadeNext = true;
let backoffMs = BACKOFF_MIN_MS;
let reconnectTimer = null;
let timers = [];
let bytesInWindow = 0;
let pongs = []; // last 10 {rtt, offset} samples
let offsetMs = null; // server clock minus client clock (ms), from the lowest-RTT pong

function setState(state, note = "") {
  auralis.state = state;
  auralis.note = note;
  render();
}

function render() {
  const s = ui.status;
  s.dataset.state = auralis.state;
  s.textContent = auralis.note ? `${auralis.state} — ${auralis.note}` : auralis.state;
  s.classList.toggle("has-note", /^(error|warning)/.test(auralis.note));
  ui.play.textContent = playing ? "Stop" : "Play";
  ui.play.classList.toggle("stop", playing);
  ui.seq.textContent = auralis.lastSequence ?? "–";
  ui.latency.textContent = auralis.latencyMs == null ? "–" : Math.round(auralis.latencyMs);
  ui.buffer.textContent = playing ? Math.round(auralis.bufferMs) : "–";
  ui.underruns.textContent = auralis.underruns;
  ui.disc.textContent = auralis.discontinuities;
  ui.gaps.textContent = auralis.gaps;
  ui.fills.textContent = auralis.serverFills;
  ui.kbps.textContent = playing ? auralis.kbps.toFixed(0) : "–";
}

// ---- station list ----

async function loadStations() {
  try {
    const res = await fetch("/api/status", { cache: "no-store" });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    const status = await res.json();
    const keep = ui.station.value;
    ui.station.replaceChildren(...(status.stations || []).map((st) => {
      const o = new Option(`${st.name} (${st.listeners ?? 0} listening)`, st.name);
      o.selected = st.name === keep;
      return o;
    }));
    ui.play.disabled = ui.station.options.length === 0;
    if (auralis.state === "error" && !playing) setState("idle");
  } catch (e) {
    if (!playing) setState("error", `cannot load /api/status: ${e.message}`);
  }
}

// ---- connection ----

function connect() {
  reconnectTimer = null;
  const name = ui.station.value;
  auralis.station = name;
  auralis.lastSequence = null; // sequences are per connection view; don't count a gap across reconnects
  fadeNext = true;
  pongs = [];
  offsetMs = null;
  const url = (location.protocol === "https:" ? "wss" : "ws") + "://" + location.host + "/ws?station=" + encodeURIComponent(name);
  const sock = new WebSocket(url);
  sock.binaryType = "arraybuffer";
  ws = sock;
  // Each handler checks it still belongs to the current socket: a stale socket must not touch state.
  sock.onopen = () => { if (ws === sock) ping(); };
  sock.onmessage = (ev) => {
    if (ws !== sock) return;
    if (typeof ev.data === "string") onText(ev.data);
    else onChunk(ev.data);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    if (!playing) return;
    // onerror carries no detail; the close code is the best reason we get.
    const why = ev.code === 1006 ? "connection lost" : `closed ${ev.code}${ev.reason ? " " + ev.reason : ""}`;
    setState("reconnecting", `${why}; retry in ${backoffMs} ms`);
    reconnectTimer = setTimeout(connect, backoffMs);
    backoffMs = Math.min(backoffMs * 2, BACKOFF_MAX_MS);
  };
  sock.onerror = () => {}; // onclose always follows and handles the retry
}

function send(msg) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg));
}

function ping() {
  send({ type: "ping", client_time: performance.now() });
}

function onText(text) {
  let msg;
  try { msg = JSON.parse(text); } catch { return; }
  switch (msg.type) {
    case "welcome": {
      const f = msg.format || {};
      if (f.codec !== "pcm_s16le") {
        stop();
        setState("error", `unsupported codec ${f.codec}`);
        return;
      }
      backoffMs = BACKOFF_MIN_MS; // a welcome means the connection works; reset the backoff
      setState("buffering", `${msg.station}, ${f.sample_rate} Hz × ${f.channels}, ${msg.chunk_ms} ms chunks`);
      break;
    }
    case "pong": onPong(msg); break;
    case "error": auralis.note = `error ${msg.code}: ${msg.message}`; render(); break;
    case "warning": auralis.note = `warning ${msg.code}: ${msg.message}`; render(); break;
  }
}

function onPong(msg) {
  if (typeof msg.client_time !== "number") return;
  const rtt = performance.now() - msg.client_time;
  const serverMs = Number(msg.server_time_unix_ns) / 1e6;
  pongs.push({ rtt, offset: serverMs - (Date.now() - rtt / 2) });
  if (pongs.length > 10) pongs.shift();
  // The smallest RTT has the least queueing asymmetry, so its midpoint guess is the most trustworthy.
  offsetMs = pongs.reduce((a, b) => (b.rtt < a.rtt ? b : a)).offset;
}

// ---- audio ----

function onChunk(buf) {
  bytesInWindow += buf.byteLength;
  if (!ctx || buf.byteLength < HEADER_LEN) return;
  const v = new DataView(buf);
  const magic = String.fromCharCode(v.getUint8(0), v.getUint8(1), v.getUint8(2), v.getUint8(3));
  const headerLen = v.getUint8(5);
  const channels = v.getUint8(7);
  const rate = v.getUint32(8, true);
  const frames = v.getUint32(12, true);
  const flags = v.getUint16(16, true);
  const payloadLen = v.getUint32(20, true);
  if (magic !== "AURA" || v.getUint8(4) !== 1 || v.getUint8(6) !== 1 || headerLen < HEADER_LEN ||
      channels === 0 || frames === 0 || payloadLen !== frames * channels * 2 ||
      headerLen + payloadLen > buf.byteLength) {
    auralis.note = "ignored a malformed audio chunk";
    return;
  }
  const seq = Number(v.getBigUint64(24, true));
  const renderedMs = Number(v.getBigUint64(40, true) / 1000n) / 1000; // via µs: keeps sub-ms precision
  const discontinuity = (flags & FLAG_DISCONTINUITY) !== 0;

  auralis.chunks++;
  if (discontinuity) auralis.discontinuities++;
  if (flags & FLAG_UNDERRUN_FILL) auralis.serverFills++;
  if (auralis.lastSequence !== null && seq !== auralis.lastSequence + 1 && !discontinuity) auralis.gaps++;
  auralis.lastSequence = seq;

  // Deinterleave s16le into float planes; the browser resamples if rate != ctx.sampleRate.
  let ab;
  try {
    ab = ctx.createBuffer(channels, frames, rate);
  } catch {
    auralis.note = `error: this browser cannot play ${rate} Hz × ${channels}`;
    return;
  }
  for (let c = 0; c < channels; c++) {
    const plane = ab.getChannelData(c);
    for (let i = 0, off = headerLen + c * 2; i < frames; i++, off += channels * 2) {
      plane[i] = v.getInt16(off, true) / 32768;
    }
  }

  const now = ctx.currentTime;
  if (nextTime === 0) {
    nextTime = startAt = now + PREBUFFER_S; // first chunk: build the prebuffer
  } else if (nextTime < now) {
    auralis.underruns++; // ran dry: audio stopped before this chunk arrived
    nextTime = startAt = now + PREBUFFER_S;
    fadeNext = true;
    if (auralis.state === "playing") setState("buffering", "underrun");
  } else if (nextTime - now > MAX_LEAD_S) {
    fadeNext = true; // too far ahead: skip this chunk so latency stays bounded
    return;
  }

  const src = ctx.createBufferSource();
  src.buffer = ab;
  if (fadeNext || discontinuity) {
    const fade = ctx.createGain();
    fade.gain.setValueAtTime(0, nextTime);
    fade.gain.linearRampToValueAtTime(1, nextTime + FADE_S);
    src.connect(fade).connect(master);
  } else {
    src.connect(master);
  }
  fadeNext = false;
  src.start(nextTime);

  if (offsetMs !== null) {
    // Wall time this chunk reaches the speaker minus its render time mapped onto our clock.
    const playWallMs = Date.now() + (nextTime - now + (ctx.outputLatency || 0)) * 1000;
    auralis.latencyMs = Math.max(0, playWallMs - (renderedMs - offsetMs));
  }
  nextTime += frames / rate;
}

// Runs 4×/s: buffer level, buffering→playing, redraw.
function tick() {
  if (!ctx) return;
  auralis.bufferMs = Math.max(0, (nextTime - ctx.currentTime) * 1000);
  if (auralis.state === "buffering" && nextTime > 0 && ctx.currentTime >= startAt) setState("playing", auralis.note);
  // Audio ran out and nothing new arrived; the underrun itself is counted when the next chunk comes.
  else if (auralis.state === "playing" && ctx.currentTime > nextTime) setState("buffering", "waiting for audio");
  render();
}

function reportStats() {
  auralis.kbps = (bytesInWindow * 8) / 1000;
  bytesInWindow = 0;
  const clamp = (x) => Math.min(STATS_LIMIT_MS, Math.max(0, x));
  const msg = { type: "stats", buffer_ms: clamp(auralis.bufferMs), underruns: auralis.underruns };
  if (auralis.latencyMs !== null && Number.isFinite(auralis.latencyMs)) msg.latency_ms = clamp(auralis.latencyMs);
  send(msg);
}

// ---- controls ----

async function start() {
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) { setState("error", "Web Audio is not supported in this browser"); return; }
  try { ctx = new Ctx({ latencyHint: "playback" }); } catch { ctx = new Ctx(); } // old Safari takes no options
  master = ctx.createGain();
  master.gain.value = Number(ui.volume.value);
  master.connect(ctx.destination);
  ctx.resume().catch(() => {}); // created inside the click, so this is allowed
  playing = true;
  Object.assign(auralis, { underruns: 0, gaps: 0, chunks: 0, discontinuities: 0, serverFills: 0, latencyMs: null, lastSequence: null });
  nextTime = 0;
  backoffMs = BACKOFF_MIN_MS;
  timers = [setInterval(tick, 250), setInterval(reportStats, 1000), setInterval(ping, 2000)];
  setState("connecting");
  connect();
}

function stop() {
  playing = false;
  timers.forEach(clearInterval);
  timers = [];
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  if (ws) { const sock = ws; ws = null; sock.close(1000, "stop"); }
  if (ctx) { ctx.close().catch(() => {}); ctx = null; master = null; }
  nextTime = 0;
  auralis.bufferMs = 0;
  setState("idle");
}

ui.play.addEventListener("click", () => (playing ? stop() : start()));

ui.volume.addEventListener("input", () => {
  // A short time constant avoids zipper noise while dragging.
  if (master) master.gain.setTargetAtTime(Number(ui.volume.value), ctx.currentTime, 0.02);
});

ui.station.addEventListener("change", () => {
  if (!playing) return;
  // Switch without recreating the AudioContext: drop the socket and let the new stream fade in.
  clearTimeout(reconnectTimer);
  if (ws) { const sock = ws; ws = null; sock.close(1000, "switch station"); }
  backoffMs = BACKOFF_MIN_MS;
  setState("connecting");
  connect();
});

loadStations();
setInterval(loadStations, 10000); // keeps listener counts fresh
render();
