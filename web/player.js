// Auralis browser player: WebSocket PCM frames -> ring buffer -> AudioWorklet, with an adaptive
// jitter buffer, clock-drift correction, reconnects, health statistics and music control.
//
// `window.auralis` is a plain object updated in place: the state of the player for people
// (through the page) and for automated tests (by polling it).

import { decodeFrame, pcmS16ToStereo, statsMessage, ClockSync, CODEC_NAMES, CODEC_PCM_S16LE } from "./protocol.js";
import { JitterPolicy, RateController, backlogLimitMs } from "./jitter.js";
import { Ring, createRingStorage, CHANNELS } from "./ring.js";
import { ControlPanel } from "./control.js";
import { Scope } from "./visual.js";

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
const STABLE_MS = 3000; // a connection that streamed this long resets the backoff
const POLL_MS = 100; // worklet counters: 10 reports a second
const STALL_MS = 250; // the poll timer this late means the main thread was blocked
const BLOCKED_MS = 40; // lateness of the poll timer worth remembering as a blocked main thread
const BLOCKED_WINDOW_MS = 1000; // how long a blocked main thread explains an underrun
const STATS_MS = 1000;
const PING_MS = 2000;
const STATIONS_MS = 10000;
const FADE_MS = 4; // every jump in the audio fades over this long
const RING_FRAMES = 131072; // 2.7 s at 48 kHz: well above the largest target plus backlog limit
const SAB_GUARD_FRAMES = 512; // frames near the read index the worklet may be reading right now
const DEFAULT_STREAM_RATE = 48000;
const SUSPEND_AFTER_MS = 30000; // audio device kept open this long after Stop

const $ = (id) => document.getElementById(id);
const ui = {
  station: $("station"), play: $("play"), volume: $("volume"), volumeOut: $("volume-out"), status: $("status"),
  latency: $("s-latency"), jitter: $("s-jitter"), buffer: $("s-buffer"), underruns: $("s-underruns"),
  gaps: $("s-gaps"), disc: $("s-disc"), fills: $("s-fills"), kbps: $("s-kbps"), drift: $("s-drift"),
  offset: $("s-offset"), first: $("s-first"), reconnects: $("s-reconnects"), seq: $("s-seq"), output: $("s-output"),
};

const auralis = {
  state: "idle", // idle | connecting | buffering | playing | reconnecting | error
  note: "",
  station: null,
  chunks: 0, // audio frames received
  gaps: 0, // sequence jumps without the discontinuity flag
  discontinuities: 0,
  serverFills: 0, // frames flagged underrun_fill
  underruns: 0, // playback underruns counted by the worklet
  tabUnderruns: 0, // of those, the ones that followed this page's main thread being blocked
  renderedFrames: 0, // frames the worklet output while playing
  nonSilentFrames: 0, // frames the worklet output with |sample| > 1e-4
  statsSent: 0,
  reconnects: 0, // successful reconnections after a drop
  latencyMs: null, // render on the server -> playout here
  bufferMs: 0,
  targetMs: null,
  jitterMs: null,
  driftPpm: null,
  sharedMemory: false, // SharedArrayBuffer ring in use
  sampleRate: null, // AudioContext rate
  firstSoundMs: null, // Play -> first non-silent output
  // more detail
  streamSampleRate: null,
  playbackRate: 1,
  lastSequence: null,
  kbps: null,
  skips: 0, // backlogs skipped to the live edge
  duplicates: 0, // frames already played (overlap after a reconnect)
  malformed: 0,
  overflowFrames: 0,
  clockOffsetMs: null,
  rttMs: null,
  retryInMs: null,
  lastServerError: null,
};
window.auralis = auralis;

const wallNow = () => performance.timeOrigin + performance.now();
const clock = new ClockSync({ window: 16 }); // one server: the estimate survives reconnects
const params = new URLSearchParams(location.search);
const sharedMemoryAvailable = () => Boolean(window.crossOriginIsolated) && typeof SharedArrayBuffer === "function";

let stations = []; // from /api/stations
let tokenRequired = false;
let ctx = null; // one AudioContext for the page, suspended while stopped
let master = null;
let analyser = null;
let moduleReady = null;
let play = null; // the current playback (see startPlayback), or null when stopped
let suspendTimer = null;

const scope = new Scope($("scope"));
const panel = new ControlPanel($("music"), {
  now: wallNow,
  offsetMs: () => clock.offsetMs,
  hearDelayMs: () => (play && play.hearDelayMs != null ? play.hearDelayMs : null),
});

// ---------------------------------------------------------------- state and rendering

function setState(state, note = "") {
  auralis.state = state;
  auralis.note = note;
  if (state !== "reconnecting") auralis.retryInMs = null;
  render();
}

const fmt = (x, digits = 0) => (x == null || !Number.isFinite(x) ? "–" : x.toFixed(digits));
const signed = (x, digits = 0) => (x == null || !Number.isFinite(x) ? "–" : (x > 0 ? "+" : "") + x.toFixed(digits));

function render() {
  const a = auralis;
  ui.status.dataset.state = a.state;
  ui.status.textContent = a.note ? `${a.state} — ${a.note}` : a.state;
  ui.play.textContent = play ? "Stop" : "Play";
  ui.play.classList.toggle("stop", Boolean(play));
  const live = Boolean(play);
  ui.latency.textContent = live ? fmt(a.latencyMs) : "–";
  ui.jitter.textContent = live ? fmt(a.jitterMs, 1) : "–";
  ui.buffer.textContent = live ? `${fmt(a.bufferMs)} / ${fmt(a.targetMs)}` : "–";
  ui.underruns.textContent = a.underruns;
  ui.underruns.className = a.underruns > 0 ? "warn" : "";
  ui.gaps.textContent = a.gaps;
  ui.gaps.className = a.gaps > 0 ? "warn" : "";
  ui.disc.textContent = a.discontinuities;
  ui.fills.textContent = a.serverFills;
  ui.kbps.textContent = live ? fmt(a.kbps) : "–";
  ui.drift.textContent = live ? signed(a.driftPpm) : "–";
  ui.offset.textContent = a.clockOffsetMs == null ? "–" : `${signed(a.clockOffsetMs, 1)} ±${fmt(a.rttMs / 2, 1)}`;
  ui.first.textContent = fmt(a.firstSoundMs);
  ui.reconnects.textContent = a.reconnects;
  ui.seq.textContent = a.lastSequence ?? "–";
  if (live && a.sampleRate) {
    const sr = a.streamSampleRate || DEFAULT_STREAM_RATE;
    const rates = sr === a.sampleRate ? `${sr / 1000} kHz` : `${sr / 1000}→${a.sampleRate / 1000} kHz`;
    ui.output.textContent = `${rates} ×${a.playbackRate.toFixed(4)} ${a.sharedMemory ? "shared" : "posted"}`;
  } else {
    ui.output.textContent = "–";
  }
}

// ---------------------------------------------------------------- stations

function stationInfo(name) {
  return stations.find((s) => s.name === name) || null;
}

// A listen token in the page's own URL (`/?token=...`) is passed on to the stream: browsers
// cannot set headers on a WebSocket, so servers that require tokens read it from the query.
function streamUrl(name) {
  const info = stationInfo(name);
  const path = info && typeof info.stream === "string" ? info.stream : `/ws/${encodeURIComponent(name)}`;
  const token = new URLSearchParams(location.search).get("token");
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path + query;
}

async function fetchStations() {
  const res = await fetch("/api/stations", { cache: "no-store" });
  if (res.ok) {
    const body = await res.json();
    return { list: body.stations || [], tokenRequired: Boolean(body.control_token_required), presets: body.presets };
  }
  // A server without /api/stations: fall back to the status report.
  const st = await fetch("/api/status", { cache: "no-store" });
  if (!st.ok) throw new Error(`HTTP ${res.status}`);
  const body = await st.json();
  const list = (body.stations || []).map((s) => ({
    name: s.name, listeners: s.listeners, live: s.live,
    stream: `/ws/${encodeURIComponent(s.name)}`, control: `/api/stations/${encodeURIComponent(s.name)}/control`,
  }));
  return { list, tokenRequired: false, presets: null };
}

async function loadStations() {
  try {
    const got = await fetchStations();
    stations = got.list;
    tokenRequired = got.tokenRequired;
    panel.setTokenRequired(tokenRequired);
    if (got.presets) panel.setPresets(got.presets);
    const keep = ui.station.value || params.get("station") || (stations[0] && stations[0].name) || "";
    const label = (s) => `${s.name}${s.live === false ? " (starting)" : ""} · ${s.listeners ?? 0} listening`;
    const opts = [...ui.station.options];
    if (opts.length === stations.length && opts.every((o, i) => o.value === stations[i].name)) {
      // Same stations: relabel in place, so an open picker stays open.
      opts.forEach((o, i) => (o.textContent = label(stations[i])));
    } else {
      ui.station.replaceChildren(
        ...stations.map((s) => {
          const o = new Option(label(s), s.name);
          o.selected = s.name === keep;
          return o;
        }),
      );
    }
    ui.play.disabled = stations.length === 0;
    if (stations.length === 0 && !play) setState("error", "this server has no stations");
    else if (auralis.state === "error" && !play && /station list/.test(auralis.note)) setState("idle");
    const current = stationInfo(ui.station.value);
    if (current && (!panel.station || panel.station.name !== current.name)) panel.select(current);
    else if (current) panel.refresh(current);
    return true;
  } catch (e) {
    if (!play) setState("error", `cannot load the station list: ${e.message}`);
    return false;
  }
}

// ---------------------------------------------------------------- audio graph

function ensureContext() {
  if (ctx) return ctx;
  const Ctx = window.AudioContext || window.webkitAudioContext;
  try {
    ctx = new Ctx({ latencyHint: "interactive" });
  } catch {
    ctx = new Ctx();
  }
  master = ctx.createGain();
  master.gain.value = Number(ui.volume.value);
  master.connect(ctx.destination);
  analyser = ctx.createAnalyser();
  analyser.fftSize = 2048;
  analyser.smoothingTimeConstant = 0.8;
  analyser.minDecibels = -90;
  analyser.maxDecibels = -20;
  moduleReady = ctx.audioWorklet.addModule(new URL("./worklet.js", import.meta.url));
  ctx.addEventListener("statechange", () => {
    if (play && ctx.state !== "running" && ctx.state !== "closed") {
      auralis.note = `audio output ${ctx.state}`;
      render();
    }
  });
  return ctx;
}

/** Sizes the worklet's thresholds from the jitter policy (in stream frames). */
function workletConfig(p) {
  const f = (ms) => Math.round((ms / 1000) * p.streamRate);
  const target = p.policy.targetMs;
  return {
    type: "config",
    rate: p.rateCtl.rate,
    startFrames: f(target),
    // A skip keeps half a chunk more than the target: it happens right after a burst, and the
    // depth then falls by a chunk before the next one, averaging out at the target.
    targetFrames: f(target + p.policy.o.chunkMs / 2),
    skipFrames: f(backlogLimitMs(target)),
    live: Boolean(p.conn && p.conn.welcomed),
    streamRate: p.streamRate,
  };
}

function sendConfig(p, force = false) {
  if (!p.node) return;
  const c = workletConfig(p);
  const last = p.lastConfig;
  if (!force && last && Math.abs(last.rate - c.rate) < 1e-7 && last.startFrames === c.startFrames &&
      last.skipFrames === c.skipFrames && last.live === c.live && last.streamRate === c.streamRate) return;
  p.lastConfig = c;
  p.node.port.postMessage(c);
}

function createNode(p) {
  const cfg = workletConfig(p);
  const node = new AudioWorkletNode(ctx, "auralis-player", {
    numberOfInputs: 0,
    numberOfOutputs: 1,
    outputChannelCount: [2],
    processorOptions: {
      shared: p.ring ? { samples: p.ring.samples, state: p.ring.state } : null,
      capacity: RING_FRAMES,
      streamRate: p.streamRate,
      startFrames: cfg.startFrames,
      targetFrames: cfg.targetFrames,
      skipFrames: cfg.skipFrames,
      fadeMs: FADE_MS,
    },
  });
  node.port.onmessage = (e) => {
    if (play === p && e.data && e.data.type === "report") onReport(p, e.data);
  };
  node.onprocessorerror = () => {
    if (play === p) fail("the audio processor stopped with an error");
  };
  node.connect(master);
  node.connect(analyser);
  p.node = node;
  for (const m of p.queued) node.port.postMessage(m, [m.samples.buffer]);
  p.queued = [];
  sendConfig(p, true);
  scope.attach(analyser);
}

// ---------------------------------------------------------------- playback

function startPlayback({ auto = false } = {}) {
  if (play) return;
  const name = ui.station.value;
  if (!name) return;
  if (!(window.AudioContext || window.webkitAudioContext) || typeof AudioWorkletNode !== "function") {
    setState("error", "this browser cannot play the stream: it has no AudioWorklet support");
    return;
  }
  const clickedAt = performance.now();
  clearTimeout(suspendTimer);
  try {
    ensureContext();
  } catch (e) {
    setState("error", `cannot open audio output: ${e.message}`);
    return;
  }
  ctx.resume().catch(() => {}); // inside the click, so the autoplay policy allows it
  master.gain.cancelScheduledValues(ctx.currentTime);
  master.gain.value = Number(ui.volume.value);

  const shared = sharedMemoryAvailable();
  const p = {
    clickedAt,
    station: name,
    streamRate: DEFAULT_STREAM_RATE,
    ring: shared ? new Ring(createRingStorage(RING_FRAMES, true)) : null,
    scratch: null,
    node: null,
    queued: [], // posted-mode chunks waiting for the node
    writtenTotal: 0, // stream frames handed to the worklet since start
    segments: [], // [{from, to, zero, renderedMs, sentMs}] ring ranges -> chunk timestamps
    expectedPos: null, // stream position that continues the audio written last
    lastWasFill: false,
    policy: new JitterPolicy(),
    rateCtl: new RateController(),
    conn: null,
    dropped: false, // the last connection was lost; the next welcome counts as a reconnect
    backoffMs: BACKOFF_MIN_MS,
    retryTimer: null,
    timers: [],
    bytes: 0,
    bytesSince: performance.now(),
    rateWindow: [],
    workletUnderruns: 0,
    lastReportAt: null,
    lastConfig: null,
    hearDelayMs: null,
    pollId: 0,
    worklet: null,
    lastBeat: performance.now(), // last run of the poll timer
    stallUntil: 0,
    blockedAt: -Infinity, // when the main thread last came back from being blocked
    blockedMs: 0, // and for how long it was
    tabUnderrunsShown: 0,
  };
  play = p;
  Object.assign(auralis, {
    station: name, chunks: 0, gaps: 0, discontinuities: 0, serverFills: 0, underruns: 0, tabUnderruns: 0, renderedFrames: 0,
    nonSilentFrames: 0, statsSent: 0, reconnects: 0, latencyMs: null, bufferMs: 0, targetMs: p.policy.targetMs,
    jitterMs: 0, driftPpm: 0, sharedMemory: shared, sampleRate: ctx.sampleRate, firstSoundMs: null,
    streamSampleRate: null, playbackRate: 1, lastSequence: null, kbps: null, skips: 0, duplicates: 0,
    malformed: 0, overflowFrames: 0, lastServerError: null,
  });
  setState("connecting", `connecting to ${name}…`);
  connect(p);
  moduleReady.then(
    () => {
      if (play === p) createNode(p);
    },
    (e) => {
      if (play === p) fail(`cannot load the audio processor: ${e && e.message ? e.message : e}`);
    },
  );
  p.timers.push(
    setInterval(() => poll(p), POLL_MS),
    setInterval(() => reportStats(p), STATS_MS),
    setInterval(() => ping(p), PING_MS),
  );
  if (auto) {
    // Without a user gesture the browser may keep the context suspended. Where the browser can
    // say so, ask; otherwise a context still not running after a while counts as blocked.
    const policy = navigator.getAutoplayPolicy ? navigator.getAutoplayPolicy(ctx) : null;
    const blocked = () => stopPlayback("idle", "the browser blocked autoplay: press Play");
    if (policy === "disallowed") blocked();
    else {
      setTimeout(() => {
        if (play === p && ctx.state !== "running") blocked();
      }, policy === "allowed" ? 5000 : 1500);
    }
  }
}

function stopPlayback(state = "idle", note = "") {
  const p = play;
  if (!p) return;
  play = null;
  p.timers.forEach(clearInterval);
  clearTimeout(p.retryTimer);
  if (p.conn) {
    clearTimeout(p.conn.stableTimer);
    const ws = p.conn.ws;
    p.conn = null;
    ws.close(1000, "stop");
  }
  scope.attach(null);
  if (ctx && master) {
    // Fade out instead of cutting the waveform, then release the output.
    const t = ctx.currentTime;
    master.gain.cancelScheduledValues(t);
    master.gain.setValueAtTime(master.gain.value, t);
    master.gain.linearRampToValueAtTime(0, t + 0.03);
    setTimeout(() => {
      if (p.node) {
        p.node.port.onmessage = null;
        p.node.disconnect();
      }
    }, 60);
    // Release the audio device only after a while: reopening it can take a second on some
    // systems, and Stop then Play again should be instant.
    clearTimeout(suspendTimer);
    suspendTimer = setTimeout(() => {
      if (!play && ctx.state === "running") ctx.suspend().catch(() => {});
    }, SUSPEND_AFTER_MS);
  }
  auralis.bufferMs = 0;
  auralis.latencyMs = null;
  setState(state, note);
}

function fail(reason) {
  stopPlayback("error", reason);
}

// ---------------------------------------------------------------- connection

function connect(p) {
  p.retryTimer = null;
  const c = {
    ws: null, opened: false, welcomed: false, frames: 0, lastSeq: null,
    underrunBase: auralis.underruns, stableTimer: null, reconnect: p.dropped,
  };
  p.conn = c;
  let ws;
  try {
    ws = new WebSocket(streamUrl(p.station));
  } catch (e) {
    fail(`cannot open the stream: ${e.message}`);
    return;
  }
  ws.binaryType = "arraybuffer";
  c.ws = ws;
  ws.onopen = () => {
    if (p.conn !== c) return;
    c.opened = true;
    // A few quick probes so the clock offset (and so the latency) is known within a second.
    ping(p);
    setTimeout(() => ping(p), 300);
    setTimeout(() => ping(p), 800);
  };
  ws.onmessage = (ev) => {
    if (p.conn !== c || play !== p) return;
    if (typeof ev.data === "string") onText(p, c, ev.data);
    else onFrame(p, c, ev.data);
  };
  ws.onerror = () => {}; // onclose follows with the code
  ws.onclose = (ev) => {
    if (p.conn === c && play === p) onDrop(p, c, ev);
  };
}

function closeReason(ev) {
  if (ev.code === 1006 || ev.code === 1005) return "connection lost";
  if (ev.code === 1001) return ev.reason || "server going away";
  return `closed (${ev.code}${ev.reason ? " " + ev.reason : ""})`;
}

async function onDrop(p, c, ev) {
  clearTimeout(c.stableTimer);
  p.conn = null;
  sendConfig(p); // not live: running dry now is a drain, not an underrun
  if (ev.code === 1002 || ev.code === 1009) {
    fail(`the server ended the stream: ${closeReason(ev)}`);
    return;
  }
  if (c.welcomed) p.dropped = true;
  if (!c.opened) {
    // The upgrade was refused: tell an unknown station apart from a server that is down.
    const ok = await loadStations();
    if (play !== p || p.conn) return;
    if (ok && !stationInfo(p.station)) {
      fail(`unknown station "${p.station}"`);
      return;
    }
  }
  const delay = p.backoffMs;
  p.backoffMs = Math.min(p.backoffMs * 2, BACKOFF_MAX_MS);
  const why = c.opened ? closeReason(ev) : "cannot reach the server";
  setState("reconnecting", `${why}; retrying in ${delay < 1000 ? `${delay} ms` : `${(delay / 1000).toFixed(1)} s`}`);
  auralis.retryInMs = delay;
  p.retryTimer = setTimeout(() => {
    if (play === p && !p.conn) connect(p);
  }, delay);
}

function send(p, msg) {
  const ws = p.conn && p.conn.ws;
  if (!ws || ws.readyState !== WebSocket.OPEN) return false;
  ws.send(JSON.stringify(msg));
  return true;
}

function ping(p) {
  if (play === p) send(p, { type: "ping", client_time: performance.now() });
}

function onText(p, c, text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    return;
  }
  switch (msg.type) {
    case "welcome":
      onWelcome(p, c, msg);
      break;
    case "pong":
      if (typeof msg.client_time === "number" && msg.server_time_unix_ns != null) {
        const sent = performance.timeOrigin + msg.client_time;
        clock.add(sent, wallNow(), Number(msg.server_time_unix_ns) / 1e6);
        auralis.clockOffsetMs = clock.offsetMs;
        auralis.rttMs = clock.rttMs;
      }
      break;
    case "error":
      auralis.lastServerError = `${msg.code}: ${msg.message}`;
      if (msg.code === "unsupported_protocol") fail(`server refused the protocol: ${msg.message}`);
      else {
        auralis.note = `server said ${msg.code}: ${msg.message}`;
        render();
      }
      break;
    case "warning":
      auralis.note = `server warning ${msg.code}: ${msg.message}`;
      render();
      break;
  }
}

function onWelcome(p, c, msg) {
  const f = msg.format || {};
  if (f.codec !== CODEC_NAMES[CODEC_PCM_S16LE]) {
    fail(`the server streams ${f.codec}, which this player does not decode`);
    return;
  }
  if (!(f.channels >= 1)) {
    fail(`the server streams ${f.channels} channels`);
    return;
  }
  const first = !c.welcomed;
  c.welcomed = true;
  if (f.sample_rate > 0 && f.sample_rate !== p.streamRate) p.streamRate = f.sample_rate;
  auralis.streamSampleRate = p.streamRate;
  if (msg.chunk_ms > 0) p.policy.setChunkMs(msg.chunk_ms);
  p.policy.resetStream();
  if (first && c.reconnect) {
    auralis.reconnects++;
    p.dropped = false;
  }
  sendConfig(p);
  clearTimeout(c.stableTimer);
  c.stableTimer = setTimeout(() => {
    if (p.conn === c && c.frames > 0) p.backoffMs = BACKOFF_MIN_MS;
  }, STABLE_MS);
  p.playingNote = `${msg.station || p.station} · ${p.streamRate / 1000} kHz${p.streamRate !== ctx.sampleRate ? ` → ${ctx.sampleRate / 1000} kHz` : ""}`;
  if (p.worklet && p.worklet.playing) setState("playing", p.playingNote);
  else setState("buffering", `${msg.station || p.station}: prebuffering ${Math.round(p.policy.targetMs)} ms`);
}

// ---------------------------------------------------------------- audio frames

function onFrame(p, c, data) {
  p.bytes += data.byteLength;
  let h;
  try {
    h = decodeFrame(data);
  } catch (e) {
    auralis.malformed++;
    auralis.note = `ignored a malformed audio frame (${e.message})`;
    return;
  }
  const now = performance.now();
  auralis.chunks++;
  if (h.discontinuity) auralis.discontinuities++;
  if (h.underrunFill) auralis.serverFills++;
  let gap = false;
  if (c.lastSeq !== null && h.sequence !== c.lastSeq + 1 && !h.discontinuity) {
    auralis.gaps++;
    gap = true;
  }
  c.lastSeq = h.sequence;
  auralis.lastSequence = h.sequence;
  // Lateness against the stream's own timeline. The first frame of a connection was released
  // before we connected, a discontinuity moves the timeline, and frames that queued up while this
  // page's main thread was blocked arrived on time: none of them says anything about the network.
  const stalled = now < p.stallUntil || now - p.lastBeat > POLL_MS + STALL_MS;
  if (stalled) p.stallUntil = Math.max(p.stallUntil, now + 50);
  if (h.discontinuity || gap || stalled) p.policy.resetStream();
  if (c.frames++ > 0 && !stalled) {
    p.policy.onArrival(now, (h.position / h.sampleRate) * 1000);
    // Late frames raised the target: tell the worklet before this audio lands, so that its
    // prebuffer and backlog limit move with it.
    if (p.lastConfig && p.policy.targetMs > (p.lastConfig.startFrames / p.streamRate) * 1000 + 10) sendConfig(p);
  }
  if (h.sampleRate !== p.streamRate && h.sampleRate > 0) {
    p.streamRate = h.sampleRate;
    auralis.streamSampleRate = h.sampleRate;
    sendConfig(p);
  }

  // Where does this frame go? Continue, skip what we already have, or jump (with fades).
  // Far behind what was played: a restarted server on another timeline, not a repeat.
  if (p.expectedPos !== null && p.expectedPos - h.position > h.sampleRate * 2) p.expectedPos = null;
  let trim = 0;
  let jump = p.expectedPos === null || h.discontinuity || gap;
  if (p.expectedPos !== null && !h.discontinuity) {
    if (h.position + h.frames <= p.expectedPos) {
      auralis.duplicates += h.frames; // overlap after a reconnect: already played
      return;
    }
    if (h.position < p.expectedPos) trim = p.expectedPos - h.position;
    else if (h.position > p.expectedPos) jump = true;
  }
  const fill = h.underrunFill;
  const fadeOut = p.writtenTotal > 0 && (jump || (fill && !p.lastWasFill));
  const fadeIn = !fill && (jump || p.lastWasFill);
  const frames = h.frames - trim;
  const fadeFrames = Math.round((FADE_MS / 1000) * p.streamRate);

  let samples;
  if (p.ring) {
    if (!p.scratch || p.scratch.length < frames * CHANNELS) p.scratch = new Float32Array(frames * CHANNELS);
    samples = p.scratch;
  } else {
    samples = new Float32Array(frames * CHANNELS);
  }
  if (fill) samples.fill(0, 0, frames * CHANNELS);
  else pcmS16ToStereo(data, h.payloadOffset + trim * h.channels * 2, frames, h.channels, samples);
  if (fadeIn) {
    const n = Math.min(fadeFrames, frames);
    for (let i = 0; i < n; i++) {
      const g = i / n;
      samples[2 * i] *= g;
      samples[2 * i + 1] *= g;
    }
  }

  let written = frames;
  if (p.ring) {
    if (fadeOut) p.ring.fadeTail(fadeFrames, SAB_GUARD_FRAMES);
    if (p.ring.space() < frames) {
      // The worklet is not consuming (output suspended): drop this frame rather than block.
      auralis.overflowFrames += frames;
      p.expectedPos = null;
      return;
    }
    written = p.ring.write(samples, frames);
  } else {
    const m = { type: "chunk", samples, fadeTail: fadeOut };
    if (p.node) p.node.port.postMessage(m, [samples.buffer]);
    else p.queued.push(m);
  }
  p.segments.push({
    from: p.writtenTotal, to: p.writtenTotal + written, zero: p.writtenTotal - trim,
    renderedMs: h.renderedUnixMs, sentMs: h.sentUnixMs,
  });
  if (p.segments.length > 64) p.segments.shift();
  p.writtenTotal += written;
  p.expectedPos = h.position + h.frames;
  p.lastWasFill = fill;
}

// ---------------------------------------------------------------- worklet reports

function poll(p) {
  if (play !== p) return;
  // A late timer means the main thread was blocked: frames delivered in the same burst are
  // marked so they do not count as network jitter.
  const now = performance.now();
  noteBlocked(p, now);
  if (now - p.lastBeat > POLL_MS + STALL_MS) p.stallUntil = now + 50;
  p.lastBeat = now;
  if (p.node) p.node.port.postMessage({ type: "poll", id: ++p.pollId });
}

/** Remembers how long the main thread was blocked, as far as the poll timer's lateness shows. */
function noteBlocked(p, now) {
  const lateMs = now - p.lastBeat - POLL_MS;
  if (lateMs <= BLOCKED_MS) return;
  const recent = now - p.blockedAt < BLOCKED_WINDOW_MS;
  p.blockedMs = recent ? Math.max(p.blockedMs, lateMs) : lateMs;
  p.blockedAt = now;
}

function onReport(p, m) {
  const now = performance.now();
  noteBlocked(p, now);
  const dt = p.lastReportAt === null ? POLL_MS : now - p.lastReportAt;
  p.lastReportAt = now;
  p.worklet = m;

  if (m.underruns > p.workletUnderruns) {
    // The ring is fed from this thread: blocked for half the buffer target or more, it could not
    // keep the worklet supplied whatever the network did. Such underruns are the tab's.
    const tab = now - p.blockedAt < BLOCKED_WINDOW_MS && p.blockedMs >= p.policy.targetMs / 2;
    for (let i = p.workletUnderruns; i < m.underruns; i++) {
      if (tab) auralis.tabUnderruns++;
      p.policy.onUnderrun(now);
    }
    p.rateCtl.resync();
  }
  p.workletUnderruns = m.underruns;
  auralis.underruns = m.underruns;
  if (m.skips > auralis.skips) p.rateCtl.resync();
  auralis.skips = m.skips;
  auralis.renderedFrames = m.renderedFrames;
  auralis.nonSilentFrames = m.nonSilentFrames;
  if (m.overflowFrames > 0) auralis.overflowFrames = m.overflowFrames;
  if (auralis.firstSoundMs === null && m.firstSoundFrame >= 0) {
    const agoMs = ((m.frame - m.firstSoundFrame) / ctx.sampleRate) * 1000;
    auralis.firstSoundMs = Math.max(0, Math.round(now - agoMs - p.clickedAt));
  }

  const depthMs = (m.depth / p.streamRate) * 1000;
  auralis.bufferMs = depthMs;
  const target = p.policy.update(now);
  auralis.targetMs = target;
  auralis.jitterMs = p.policy.jitterMs;
  if (m.playing) p.rateCtl.update(depthMs, target, dt);
  else p.rateCtl.resync();
  auralis.driftPpm = p.rateCtl.driftPpm;
  auralis.playbackRate = m.rate;
  sendConfig(p);

  // End-to-end latency: when the frame at the read index reaches the speaker (our clock plus the
  // server offset) minus when its chunk was rendered, referred to the chunk's first frame.
  if (m.playing && clock.known) {
    const seg = findSegment(p, m.readTotal);
    if (seg) {
      const outMs = ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000;
      const intoChunkMs = ((m.readTotal - seg.zero) / p.streamRate) * 1000;
      const playoutServerMs = clock.toServer(wallNow() + outMs) - intoChunkMs;
      auralis.latencyMs = playoutServerMs - seg.renderedMs;
      p.hearDelayMs = playoutServerMs - seg.sentMs;
    }
  }

  if (p.conn && p.conn.welcomed) {
    if (m.playing && auralis.state !== "playing") setState("playing", p.playingNote);
    else if (!m.playing && auralis.state === "playing") {
      const why = auralis.tabUnderruns > p.tabUnderrunsShown ? " (this tab was busy)" : "";
      p.tabUnderrunsShown = auralis.tabUnderruns;
      setState("buffering", `underrun${why}: rebuffering to ${Math.round(target)} ms`);
    }
  }
  render();
}

function findSegment(p, readTotal) {
  const s = p.segments;
  for (let i = s.length - 1; i >= 0; i--) {
    if (s[i].from <= readTotal && readTotal < s[i].to) return s[i];
    if (s[i].to <= readTotal) return null; // everything written has been played
  }
  return null;
}

function reportStats(p) {
  if (play !== p) return;
  const now = performance.now();
  // Bit rate over the last few seconds (a burst after a stall should not read as a spike).
  p.rateWindow.push({ bytes: p.bytes, ms: now - p.bytesSince });
  if (p.rateWindow.length > 4) p.rateWindow.shift();
  const sum = p.rateWindow.reduce((a, w) => ({ bytes: a.bytes + w.bytes, ms: a.ms + w.ms }), { bytes: 0, ms: 0 });
  auralis.kbps = sum.ms > 0 ? (sum.bytes * 8) / sum.ms : null; // bits per ms = kbit/s
  p.bytes = 0;
  p.bytesSince = now;
  const c = p.conn;
  if (!c || !c.welcomed) return;
  const msg = statsMessage({
    bufferMs: auralis.bufferMs,
    underruns: auralis.underruns - c.underrunBase,
    latencyMs: auralis.latencyMs,
  });
  if (msg && send(p, msg)) auralis.statsSent++;
}

// ---------------------------------------------------------------- station switching

function switchStation(name) {
  const p = play;
  auralis.station = name;
  if (!p) return;
  clearTimeout(p.retryTimer);
  if (p.conn) {
    clearTimeout(p.conn.stableTimer);
    const ws = p.conn.ws;
    p.conn = null;
    ws.close(1000, "switch station");
  }
  // Fade out and drop whatever the old station left in the buffer; the new one fades in.
  if (p.node) {
    p.node.port.postMessage({ type: "flush", until: p.writtenTotal });
  } else {
    // No consumer yet: simply start over.
    p.queued = [];
    if (p.ring) p.ring.reset();
    p.writtenTotal = 0;
    p.segments = [];
  }
  p.station = name;
  p.expectedPos = null;
  p.lastWasFill = false;
  p.dropped = false;
  p.backoffMs = BACKOFF_MIN_MS;
  p.policy.resetStream();
  setState("connecting", `connecting to ${name}…`);
  connect(p);
}

// ---------------------------------------------------------------- wiring

ui.play.addEventListener("click", () => {
  if (play && ctx && ctx.state === "suspended") {
    ctx.resume().catch(() => {}); // output was held back by the browser: this click releases it
    return;
  }
  if (play) stopPlayback();
  else startPlayback();
});

let savedVolume = null;
try {
  savedVolume = localStorage.getItem("auralis.volume");
} catch {
  // storage disabled
}
if (savedVolume !== null && Number.isFinite(Number(savedVolume))) ui.volume.value = savedVolume;
const showVolume = () => (ui.volumeOut.textContent = `${Math.round(Number(ui.volume.value) * 100)}%`);
showVolume();
ui.volume.addEventListener("input", () => {
  showVolume();
  if (master && play) master.gain.setTargetAtTime(Number(ui.volume.value), ctx.currentTime, 0.02);
  try {
    localStorage.setItem("auralis.volume", ui.volume.value);
  } catch {
    // storage disabled
  }
});

ui.station.addEventListener("change", () => {
  const info = stationInfo(ui.station.value);
  if (info) panel.select(info);
  if (play) switchStation(ui.station.value);
});

window.addEventListener("pagehide", () => {
  if (play && play.conn) play.conn.ws.close(1000, "page closed");
});

render();
loadStations().then((ok) => {
  setInterval(loadStations, STATIONS_MS);
  if (!ok) return;
  const wanted = params.get("station");
  if (wanted && !stationInfo(wanted)) {
    setState("error", `unknown station "${wanted}"`);
    return;
  }
  if (params.get("autoplay") === "1" && ui.station.value) startPlayback({ auto: true });
});
