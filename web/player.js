// Auralis browser player: WebSocket audio frames (Opus or FLAC through WebCodecs, Opus through the
// vendored WebAssembly libopus where WebCodecs is missing, or PCM) -> ring
// buffer -> AudioWorklet, with an adaptive jitter buffer, clock-drift correction, reconnects, health
// statistics and music control.
//
// After a dropped connection or a server restart it reconnects asking to resume at the sequence
// after the last one it holds (resume.js), and drops the backlog that brings (CatchUp).
//
// `window.auralis` is a plain object updated in place: the state of the player for people
// (through the page) and for automated tests (by polling it).

import {
  decodeFrame, pcmS16ToStereo, statsMessage, ClockSync, codecName, codecDelayMs, CODEC_PCM_S16LE, CODEC_OPUS, PROTOCOL_VERSION,
} from "./protocol.js";
import {
  FrameDecoder, WasmOpusDecoder, decoderConfig, sameConfig, webCodecsSupports, loadWasmOpus, WEBCODECS_CODECS,
} from "./decoder.js";
import { JitterPolicy, RateController, CatchUp, backlogLimitMs } from "./jitter.js";
import { ResumeTracker, EncoderWatch, streamQuery, resumeNote, resumeRetryCapMs } from "./resume.js";
import { healthView } from "./health.js";
import { Ring, createRingStorage, fadeIn as fadeInFrames, CHANNELS } from "./ring.js";
import { ControlPanel } from "./control.js";
import { Scope } from "./visual.js";

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5000;
const STABLE_MS = 3000; // a connection that streamed this long resets the backoff
const POLL_MS = 100; // worklet counters: 10 reports a second
const STALL_MS = 250; // the poll timer this late means the main thread was blocked
const DECODE_HEADROOM_MS = 40; // jitter-buffer headroom for decoding Opus or FLAC off the audio thread
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
const DECODE_FAIL_LIMIT = 50; // chunks in a row that could not be decoded: give up with the reason
const PENDING_LIMIT = 50; // frames waiting for the decoder (5 s): the oldest is given up ...
const PENDING_MS = 5000; // ... once it has waited this long (a resume brings many frames at once)
const REFUSED_RESUMES = 3; // upgrades with a resume refused (the server up) until the codec is suspected
const PLAYABLE = ["opus", "flac", "pcm_s16le"]; // what `?codec=` may name
const DECODERS = ["webcodecs", "wasm"]; // what `?decoder=` may name

const $ = (id) => document.getElementById(id);
const ui = {
  station: $("station"), play: $("play"), volume: $("volume"), volumeOut: $("volume-out"), status: $("status"),
  latency: $("s-latency"), jitter: $("s-jitter"), buffer: $("s-buffer"), underruns: $("s-underruns"),
  gaps: $("s-gaps"), missing: $("s-missing"), disc: $("s-disc"), fills: $("s-fills"), codec: $("s-codec"), kbps: $("s-kbps"),
  drift: $("s-drift"), offset: $("s-offset"), first: $("s-first"), reconnects: $("s-reconnects"), resume: $("s-resume"),
  seq: $("s-seq"), output: $("s-output"),
};

const auralis = {
  state: "idle", // idle | connecting | buffering | playing | reconnecting | error
  note: "",
  station: null,
  chunks: 0, // audio frames received
  gaps: 0, // sequence jumps without the discontinuity flag
  discontinuities: 0,
  serverFills: 0, // frames flagged underrun_fill
  underruns: 0, // playback underruns counted by the worklet, the outage's included
  tabUnderruns: 0, // of those, the ones that followed this page's main thread being blocked
  outageUnderruns: 0, // of those, the ones while the connection was down
  renderedFrames: 0, // frames the worklet output while playing
  nonSilentFrames: 0, // frames the worklet output with |sample| > 1e-4
  statsSent: 0,
  reconnects: 0, // successful reconnections after a drop
  connected: false, // a connection is open and welcomed
  missingSequences: 0, // sequences never received since Play, across reconnects
  resumes: {}, // resume answers by outcome: resumed | outside_window | future | epoch_changed | rate_limited
  lastResume: null, // the latest welcome.resume: {outcome, from, chunks}
  resumeFrom: null, // resume_from of the latest connection, or null when it asked for no resume
  resumedChunks: 0, // frames received flagged as resumed
  catchUpDropped: 0, // of those (or the live frames right after them), dropped from playout to catch up
  encoderSwitches: 0, // seams where the Opus stream changed encoder (after a restart), each a fresh decoder
  epoch: null, // the station's epoch, from the last welcome
  resumeWindowChunks: null, // how far back the server can resume, from the last welcome
  staleMs: null, // while disconnected: age of the network figures (latency, jitter, bit rate, ...)
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
  codec: null, // the codec streamed, from welcome: opus | flac | pcm_s16le
  codecs: [], // what the station offers, from welcome
  bitrate: null, // nominal bit/s from welcome (Opus), else null
  codecDelayMs: 0, // how far decoded audio lags the frame positions (Opus pre-skip)
  decoder: null, // what decodes the codec streamed: webcodecs | wasm | null (PCM)
  decoderWorker: null, // for wasm: it decodes in a Worker (true) or on the main thread (false); else null
  decodeErrors: 0, // chunks that could not be decoded
  kbps: null, // received, measured over a few seconds
  skips: 0, // backlogs skipped to the live edge
  duplicates: 0, // frames already played (overlap after a reconnect)
  malformed: 0,
  overflowFrames: 0,
  clockOffsetMs: null,
  rttMs: null,
  retryInMs: null,
  lastServerError: null,
  lastWarning: null, // {code, message} of the server's latest warning
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
let support = null; // what this browser decodes, and with what (see decoderSupport)

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

function render() {
  const a = auralis;
  ui.status.dataset.state = a.state;
  ui.status.textContent = a.note ? `${a.state} — ${a.note}` : a.state;
  ui.play.textContent = play ? "Stop" : "Play";
  ui.play.classList.toggle("stop", Boolean(play));
  // Down since the last frame: what was measured from the stream is that old.
  a.staleMs = play && !a.connected && play.lastFrameAt !== null ? Math.round(performance.now() - play.lastFrameAt) : null;
  const view = healthView(a, { live: Boolean(play), defaultRate: DEFAULT_STREAM_RATE });
  for (const [k, v] of Object.entries(view)) {
    const el = ui[k];
    if (!el) continue;
    el.textContent = v.text;
    el.className = v.cls;
  }
}

// ---------------------------------------------------------------- stations

function stationInfo(name) {
  return stations.find((s) => s.name === name) || null;
}

// A listen token in the page's own URL (`/?token=...`) is passed on to the stream: browsers
// cannot set headers on a WebSocket, so servers that require tokens read it from the query.
// `codec` (when not null) asks for that codec; without it the server sends the station's default.
// `resume` ({from, epoch}, or null) asks the server to send again what this player missed.
function streamUrl(name, codec, resume = null) {
  const info = stationInfo(name);
  const path = info && typeof info.stream === "string" ? info.stream : `/ws/${encodeURIComponent(name)}`;
  const q = streamQuery({ token: new URLSearchParams(location.search).get("token"), codec, resume });
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path + (q ? `?${q}` : "");
}

// ---------------------------------------------------------------- codecs

/**
 * What this browser decodes, and with what: `{ can, via, wasm, wasmError }`. PCM always; Opus and
 * FLAC where WebCodecs' AudioDecoder does; else Opus with the WebAssembly decoder, whose script is
 * loaded only then. `?decoder=wasm` in the page's address skips WebCodecs (FLAC then cannot play),
 * `?decoder=webcodecs` the WebAssembly decoder.
 */
function decoderSupport() {
  if (!support) {
    support = (async () => {
      const asked = params.get("decoder");
      const useWebCodecs = asked !== "wasm";
      const ok = await Promise.all(WEBCODECS_CODECS.map((c) => (useWebCodecs ? webCodecsSupports(c) : false)));
      const can = { pcm_s16le: true };
      const via = { pcm_s16le: null };
      WEBCODECS_CODECS.forEach((c, i) => {
        can[c] = ok[i];
        via[c] = ok[i] ? "webcodecs" : null;
      });
      let wasm = null;
      let wasmError = null;
      if (!can.opus && asked !== "webcodecs") {
        try {
          wasm = await loadWasmOpus();
          can.opus = true;
          via.opus = "wasm";
        } catch (e) {
          wasmError = e;
          console.warn(`the WebAssembly Opus decoder is not available here: ${e && e.message ? e.message : e}`);
        }
      }
      return { can, via, wasm, wasmError };
    })();
  }
  return support;
}

/**
 * The codec to ask for: the page's `?codec=` (opus, flac or pcm_s16le) if there is one, else Opus
 * where WebCodecs or the WebAssembly decoder decodes it, else PCM. `{ error }` when the page asks
 * for what cannot play here.
 */
function chooseCodec({ can, wasmError }) {
  const decoder = params.get("decoder");
  if (decoder !== null && !DECODERS.includes(decoder)) return { error: `unknown decoder "${decoder}" in the page address (use webcodecs or wasm)` };
  const asked = params.get("codec");
  if (asked !== null) {
    const name = codecName(asked);
    if (!name || !PLAYABLE.includes(name)) return { error: `unknown codec "${asked}" in the page address (use opus, flac or pcm_s16le)` };
    if (!can[name]) {
      const why = decoder === "wasm" && name !== "opus" ? "?decoder=wasm leaves out WebCodecs, and the WebAssembly decoder is for Opus only"
        : name === "opus" && wasmError ? `no WebCodecs AudioDecoder takes it, and the WebAssembly decoder failed: ${wasmError.message}`
          : "its WebCodecs AudioDecoder does not take it";
      return { error: `this browser cannot decode ${name} (${why}); try ?codec=pcm_s16le` };
    }
    return { codec: name, forced: true };
  }
  return { codec: can.opus ? "opus" : "pcm_s16le", forced: false };
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
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx || typeof AudioWorkletNode !== "function") {
    setState("error", "this browser cannot play the stream: it has no AudioWorklet support");
    return;
  }
  if (!("audioWorklet" in Ctx.prototype)) {
    // Browsers offer AudioWorklet (like WebCodecs and SharedArrayBuffer) to secure contexts only.
    setState("error", window.isSecureContext === false
      ? "this page is not a secure context, and browsers play through an AudioWorklet only there: open it over HTTPS, or on localhost"
      : "this browser cannot play the stream: it has no AudioWorklet support");
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
    segments: [], // [{from, to, zero, renderedMs, sentMs, delayMs}] ring ranges -> chunk timestamps
    expectedPos: null, // stream position that continues the audio of the last frame placed
    lastWasFill: false,
    pending: [], // frames in arrival order, waiting for their audio (decoding) or to be written
    writeBroken: false, // a frame was dropped after the last one written: the next one fades in
    codec: null, // the codec to ask for (see chooseCodec)
    codecForced: false, // named by the page's ?codec=
    omitCodec: false, // ask for no codec: the last upgrade that named one was refused
    can: null, // what this browser decodes
    via: null, // codec name -> what decodes it (webcodecs | wasm), see decoderSupport
    wasm: null, // the WebAssembly Opus decoder, where it is used (see loadWasmOpus)
    decoders: new Map(), // codec name -> FrameDecoder or WasmOpusDecoder
    delayMs: 0, // codec delay of the stream now arriving
    decodeFailStreak: 0, // chunks in a row that could not be decoded
    policy: new JitterPolicy(),
    rateCtl: new RateController(),
    catchUp: new CatchUp(), // drops the backlog a resume brings
    tracker: new ResumeTracker(), // sequences received, and what to resume from
    encoders: new EncoderWatch(), // where an Opus stream changes encoder (a restart's resume)
    retired: new Set(), // decoders replaced mid-stream, finishing what they were given
    resumeWanted: false, // the next connection asks to resume (the last one was lost, not left)
    resumeNote: "", // what the server answered to this connection's resume, for the status line
    lastFrameAt: null, // when the last audio frame arrived (the age of the network figures)
    conn: null,
    dropped: false, // the last connection was lost; the next welcome counts as a reconnect
    refusedWhileUp: 0, // upgrades refused in a row while the station list loads
    backoffMs: BACKOFF_MIN_MS,
    retryTimer: null,
    timers: [],
    bytes: 0,
    bytesSince: performance.now(),
    rateWindow: [],
    workletUnderruns: 0,
    workletOutageUnderruns: 0,
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
    malformed: 0, overflowFrames: 0, lastServerError: null, codec: null, codecs: [], bitrate: null,
    codecDelayMs: 0, decoder: null, decoderWorker: null, decodeErrors: 0, outageUnderruns: 0, connected: false,
    missingSequences: 0, resumes: {}, lastResume: null, resumeFrom: null, resumedChunks: 0, catchUpDropped: 0, encoderSwitches: 0, epoch: null,
    resumeWindowChunks: null, staleMs: null, lastWarning: null,
  });
  setState("connecting", `connecting to ${name}…`);
  decoderSupport().then((got) => {
    if (play !== p) return;
    p.can = got.can;
    p.via = got.via;
    p.wasm = got.wasm;
    const chosen = chooseCodec(got);
    if (chosen.error) {
      fail(chosen.error);
      return;
    }
    p.codec = chosen.codec;
    p.codecForced = chosen.forced;
    connect(p);
  });
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
  for (const d of [...p.decoders.values(), ...p.retired]) d.close();
  p.decoders.clear();
  p.retired.clear();
  p.pending = [];
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
  auralis.connected = false;
  setState(state, note);
}

function fail(reason) {
  stopPlayback("error", reason);
}

// ---------------------------------------------------------------- connection

function connect(p) {
  p.retryTimer = null;
  // After a drop (not a Stop, a station switch or a fresh Play): resume at the sequence after the
  // last one received, on the epoch the server last announced.
  const resume = p.resumeWanted ? p.tracker.request() : null;
  auralis.resumeFrom = resume ? resume.from : null;
  const c = {
    ws: null, opened: false, welcomed: false, frames: 0, liveFrames: 0, lastSeq: null, resume, answered: false,
    underrunBase: auralis.underruns, decodeErrorBase: auralis.decodeErrors, stableTimer: null, reconnect: p.dropped,
    askedCodec: p.omitCodec ? null : p.codec, // in the URL
    codec: null, // of the frames now arriving, from the last welcome this player accepted
    switching: null, // asked the server (hello) for this codec; its welcome is still to come
  };
  p.conn = c;
  let ws;
  try {
    ws = new WebSocket(streamUrl(p.station, c.askedCodec, resume));
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
  auralis.connected = false;
  p.catchUp.reset(); // a burst cut short: the next connection's answer says what follows
  sendConfig(p); // not live: running dry now is the outage's underrun
  if (ev.code === 1002 || ev.code === 1009) {
    fail(`the server ended the stream: ${closeReason(ev)}`);
    return;
  }
  if (ev.code === 1003) {
    fail(`the server refused the codec: ${auralis.lastServerError || closeReason(ev)}`);
    return;
  }
  if (c.welcomed) p.dropped = true;
  p.resumeWanted = true;
  if (!c.opened) {
    // The upgrade was refused: tell an unknown station apart from a server that is down.
    const ok = await loadStations();
    if (play !== p || p.conn) return;
    if (ok && !stationInfo(p.station)) {
      fail(`unknown station "${p.station}"`);
      return;
    }
    if (ok) p.refusedWhileUp++;
    // A resume asks for the codec this station was streaming: a refusal then is far more likely a
    // server that is full or shutting down (503) than a codec it stopped offering, and asking for
    // none would lose the resume to a codec switch. Only after a few refusals is it the codec.
    const codecSuspect = !c.resume || p.refusedWhileUp >= REFUSED_RESUMES;
    if (ok && c.askedCodec && !p.omitCodec && codecSuspect) {
      // The server is up and has the station: it may not offer the codec asked for (it refuses
      // that upgrade with a 400 a page cannot read). Ask once for none: the welcome lists the
      // station's codecs, and onWelcome asks for one this browser decodes.
      p.omitCodec = true;
      connect(p);
      return;
    }
  }
  // The resume window is finite: a long backoff would spend it waiting for the server to be back.
  const resumable = p.tracker.request() !== null;
  const windowMs = (p.tracker.windowChunks || 0) * p.policy.o.chunkMs;
  const cap = resumable ? resumeRetryCapMs(windowMs, { maxMs: BACKOFF_MAX_MS }) : BACKOFF_MAX_MS;
  const delay = Math.min(p.backoffMs, cap);
  p.backoffMs = Math.min(p.backoffMs * 2, BACKOFF_MAX_MS);
  const why = c.opened ? closeReason(ev) : "cannot reach the server";
  const resuming = resumable ? "resuming… " : "";
  setState("reconnecting", `${why}; ${resuming}retrying in ${delay < 1000 ? `${delay} ms` : `${(delay / 1000).toFixed(1)} s`}`);
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
      else if (msg.code === "unsupported_codec") fail(`the server does not stream ${c.switching || p.codec}: ${msg.message}`);
      else {
        auralis.note = `server said ${msg.code}: ${msg.message}`;
        render();
      }
      break;
    case "warning":
      auralis.lastWarning = { code: msg.code, message: msg.message };
      // A resume the server could not serve is explained already, from the welcome's answer.
      if (typeof msg.code === "string" && msg.code.startsWith("resume_") && c.answered) break;
      auralis.note = `server warning ${msg.code}: ${msg.message}`;
      render();
      break;
  }
}

/** Asks the server (hello) to stream `codec` on this connection from now on. */
function switchCodec(p, c, codec) {
  c.switching = codec;
  send(p, { type: "hello", protocol: PROTOCOL_VERSION, codec });
}

function onWelcome(p, c, msg) {
  const f = msg.format || {};
  const station = msg.station || p.station;
  const answer = p.tracker.onWelcome(msg, { resume: !c.answered });
  if (!c.answered) {
    c.answered = true;
    onResumeAnswer(p, c, answer, msg.chunk_ms > 0 ? msg.chunk_ms : p.policy.o.chunkMs);
  }
  auralis.epoch = p.tracker.epoch;
  auralis.resumeWindowChunks = p.tracker.windowChunks;
  const name = codecName(f.codec);
  const offered = Array.isArray(msg.codecs) ? msg.codecs.map(codecName).filter(Boolean) : [];
  if (!(f.channels >= 1)) {
    fail(`the server streams ${f.channels} channels`);
    return;
  }
  if (name !== p.codec && !c.switching) {
    // Not what was asked for: this connection asked for no codec (see onDrop).
    if (p.codecForced && !offered.includes(p.codec)) {
      fail(`station "${station}" does not offer ${p.codec} (it offers ${offered.join(", ") || f.codec})`);
      return;
    }
    const better = p.codecForced ? p.codec : name && p.can[name] ? null : offered.find((x) => p.can[x]);
    if (better) {
      switchCodec(p, c, better);
      return;
    }
  }
  if (!name || !p.can[name]) {
    fail(`the server streams ${f.codec}, which this player does not decode`);
    return;
  }
  if (name !== "pcm_s16le") {
    try {
      ensureDecoder(p, name, f);
    } catch (e) {
      fail(`cannot decode ${name} here: ${e && e.message ? e.message : e}`);
      return;
    }
  }
  c.codec = name;
  c.switching = null;
  p.codec = name;
  p.omitCodec = false;
  p.delayMs = codecDelayMs(f);
  const via = p.via[name] || null;
  Object.assign(auralis, {
    codec: name, codecs: offered, bitrate: f.bitrate > 0 ? f.bitrate : null, codecDelayMs: p.delayMs,
    decoder: via, decoderWorker: via === "wasm" ? p.wasm.worker : null,
  });
  const first = !c.welcomed;
  c.welcomed = true;
  auralis.connected = true;
  p.refusedWhileUp = 0;
  if (f.sample_rate > 0 && f.sample_rate !== p.streamRate) p.streamRate = f.sample_rate;
  auralis.streamSampleRate = p.streamRate;
  if (msg.chunk_ms > 0) p.policy.setChunkMs(msg.chunk_ms);
  // A decoded stream gets headroom for the decoder's own delay (PCM needs none).
  p.policy.setDecodeMs(name === "pcm_s16le" ? 0 : DECODE_HEADROOM_MS);
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
  const resumed = p.resumeNote ? ` · ${p.resumeNote}` : "";
  p.playingNote = `${station} · ${name}${via === "wasm" ? " (WebAssembly)" : ""} · ${p.streamRate / 1000} kHz${p.streamRate !== ctx.sampleRate ? ` → ${ctx.sampleRate / 1000} kHz` : ""}${resumed}`;
  if (p.worklet && p.worklet.playing) setState("playing", p.playingNote);
  else setState("buffering", `${station}: prebuffering ${Math.round(p.policy.targetMs)} ms${resumed}`);
}

/**
 * The server's answer to this connection's resume (null: it asked for none, or the server does not
 * resume). Resumed chunks follow at once: the catch-up drops what would keep the buffer above its
 * target. Any other outcome streams from the live edge, and the sequences in between count as
 * missing when the first live one arrives.
 */
function onResumeAnswer(p, c, answer, chunkMs) {
  if (!c.resume) p.resumeNote = "";
  else p.resumeNote = answer ? resumeNote(answer, { chunkMs }) : "the server does not resume; rejoined live";
  auralis.lastResume = answer ? { ...answer } : auralis.lastResume;
  auralis.resumes = { ...p.tracker.outcomes };
  p.catchUp.reset();
  if (!answer || answer.outcome !== "resumed" || answer.chunks === 0) return;
  p.catchUp.start(performance.now(), answer.chunks);
}

/** The decoder for `codec`, configured for `format` (kept across reconnects while it matches). */
function ensureDecoder(p, codec, format) {
  const config = decoderConfig(format);
  const old = p.decoders.get(codec);
  if (old && sameConfig(old.config, config)) return old;
  if (old) {
    // Frames still inside the old decoder will not come back: write what follows them.
    const lost = new Set(old.jobs.map((j) => j.job));
    old.close();
    for (const e of p.pending) if (lost.has(e)) e.failed = e.ready = true;
    drain(p);
  }
  const d = createDecoder(p, codec, config, codecDelayMs(format));
  p.decoders.set(codec, d);
  return d;
}

/**
 * A fresh decoder for the frames of `codec` from now on. The one it replaces decodes on what it
 * was given (those frames come back in their turn) and is closed once it has.
 */
function renewDecoder(p, codec) {
  const old = p.decoders.get(codec);
  if (!old) return;
  p.decoders.set(codec, createDecoder(p, codec, old.config, old.delayMs));
  p.retired.add(old);
  settle(p, old);
}

/** Closes a replaced decoder that has nothing left to decode. */
function settle(p, d) {
  if (!p.retired.has(d) || d.pending > 0) return;
  p.retired.delete(d);
  setTimeout(() => d.close(), 0); // not from inside its own callback
}

function createDecoder(p, codec, config, delayMs) {
  const Decoder = codec === "opus" && p.via.opus === "wasm" ? WasmOpusDecoder : FrameDecoder;
  const d = new Decoder(config, {
    delayMs,
    wasm: p.wasm,
    onFrame: (e, samples, frames, whole) => {
      if (play !== p) return;
      settle(p, d);
      if (!whole) {
        // Part of it is missing: as silence of its full length it keeps the timeline.
        decodeFailed(p, [e], new Error("the decoder gave no audio for part of it"));
        return;
      }
      e.samples = samples;
      e.frames = frames;
      e.ready = true;
      p.decodeFailStreak = 0;
      drain(p);
    },
    onError: (entries, error, reopenError) => {
      settle(p, d);
      decodeFailed(p, entries, error, reopenError);
    },
  });
  d.delayMs = delayMs;
  return d;
}

/** Chunks that could not be decoded: counted (and reported in stats), played as silence. */
function decodeFailed(p, entries, error, fatal = null) {
  if (play !== p) return;
  auralis.decodeErrors += entries.length;
  for (const e of entries) e.failed = e.ready = true;
  // An error with no chunk lost (a configuration the decoder gave up on) still counts towards
  // giving up: otherwise a decoder that fails at once would be reconfigured forever.
  p.decodeFailStreak += Math.max(1, entries.length);
  const why = (x) => (x && x.message ? `${x.name ? x.name + ": " : ""}${x.message}` : String(x));
  if (fatal || p.decodeFailStreak >= DECODE_FAIL_LIMIT) {
    fail(`cannot decode the ${auralis.codec || "audio"} stream: ${why(fatal || error)}`);
    return;
  }
  auralis.note = `could not decode ${entries.length === 1 ? "a chunk" : `${entries.length} chunks`} (${why(error)})`;
  drain(p);
  render();
}

// ---------------------------------------------------------------- audio frames

function onFrame(p, c, data) {
  let h;
  try {
    h = decodeFrame(data);
  } catch (e) {
    p.bytes += data.byteLength;
    auralis.malformed++;
    auralis.note = `ignored a malformed audio frame (${e.message})`;
    return;
  }
  if (h.codecName !== c.codec) {
    // Frames of the codec this connection is switching away from are expected until the welcome
    // of the new one; anything else is the server's mistake.
    if (!c.switching) {
      auralis.malformed++;
      auralis.note = `ignored a ${h.codecName} frame on a ${c.codec || "not yet announced"} stream`;
    }
    return;
  }
  const now = performance.now();
  // Resumed frames are a catch-up burst, not the stream's rate.
  if (!h.resumed) p.bytes += data.byteLength;
  p.lastFrameAt = now;
  auralis.chunks++;
  p.tracker.onSequence(h.sequence, { resumed: h.resumed });
  auralis.missingSequences = p.tracker.missing;
  auralis.resumedChunks = p.tracker.resumed;
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
  // before we connected, resumed frames are sent late on purpose, a discontinuity moves the
  // timeline, and frames that queued up while this page's main thread was blocked arrived on
  // time: none of them says anything about the network.
  const stalled = now < p.stallUntil || now - p.lastBeat > POLL_MS + STALL_MS;
  if (stalled) p.stallUntil = Math.max(p.stallUntil, now + 50);
  if (h.discontinuity || gap || stalled) p.policy.resetStream();
  c.frames++;
  if (!h.resumed && c.liveFrames++ > 0 && !stalled) {
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
  p.expectedPos = h.position + h.frames;

  // PCM is ready now; Opus and FLAC once the decoder hands the audio back. Either way frames are
  // written in the order they arrived, each with its own timestamps and flags.
  const entry = { h, trim, jump, delayMs: p.delayMs, at: now, pcm: null, samples: null, frames: 0, ready: false, failed: false };
  p.pending.push(entry);
  if (h.codec === CODEC_PCM_S16LE) {
    entry.pcm = data;
    entry.ready = true;
  } else {
    if (h.codec === CODEC_OPUS && p.encoders.onFrame(h)) {
      // Another encoder from here (a restart's chunks rendered again, or its live stream): a
      // fresh decoder for it, and a faded splice over the seam.
      renewDecoder(p, h.codecName);
      entry.jump = true;
      auralis.encoderSwitches++;
    }
    const d = p.decoders.get(h.codecName);
    try {
      if (!d) throw new Error(`no ${h.codecName} decoder`);
      d.decode(entry, data, h);
    } catch (e) {
      decodeFailed(p, [entry], e); // a payload that does not split into packets
      return;
    }
    if (p.pending.length > PENDING_LIMIT && !p.pending[0].ready && now - p.pending[0].at > PENDING_MS) {
      decodeFailed(p, [p.pending[0]], new Error("the decoder returned nothing for 5 s"));
      return;
    }
  }
  drain(p);
}

/** Writes the frames at the head of the queue whose audio is ready, in order. */
function drain(p) {
  while (play === p && p.pending.length > 0 && p.pending[0].ready) writeFrame(p, p.pending.shift());
}

function writeFrame(p, e) {
  const h = e.h;
  if (catchUpDrops(p, e)) return;
  // A chunk that could not be decoded becomes silence of its length, faded like the server's
  // fills: the timeline and the buffer depth stay as they were, so there is no underrun.
  const fill = h.underrunFill || e.failed;
  const jump = e.jump || p.writeBroken;
  p.writeBroken = false;
  const fadeOut = p.writtenTotal > 0 && (jump || (fill && !p.lastWasFill));
  const fadeIn = !fill && (jump || p.lastWasFill);
  const fadeFrames = Math.round((FADE_MS / 1000) * p.streamRate);

  // `lead`: frames missing at the start of the decoded audio (a decoder drops its start-up delay
  // from its first output); they count towards the trim.
  let samples;
  let from = 0;
  let frames;
  let lead = 0;
  if (e.pcm) {
    frames = h.frames - e.trim;
    if (p.ring) {
      if (!p.scratch || p.scratch.length < frames * CHANNELS) p.scratch = new Float32Array(frames * CHANNELS);
      samples = p.scratch;
    } else {
      samples = new Float32Array(frames * CHANNELS);
    }
    if (fill) samples.fill(0, 0, frames * CHANNELS);
    else pcmS16ToStereo(e.pcm, h.payloadOffset + e.trim * h.channels * 2, frames, h.channels, samples);
  } else {
    if (e.failed) {
      e.samples = new Float32Array(h.frames * CHANNELS);
      e.frames = h.frames;
    }
    lead = Math.max(0, h.frames - e.frames);
    from = Math.min(e.frames, Math.max(0, e.trim - lead));
    frames = e.frames - from;
    samples = e.samples;
    if (fill) samples.fill(0); // the server's silence, decoded: make it exact
  }
  if (frames <= 0) return;
  if (fadeIn) fadeInFrames(samples, from, Math.min(fadeFrames, frames));

  let written = frames;
  if (p.ring) {
    if (fadeOut) p.ring.fadeTail(fadeFrames, SAB_GUARD_FRAMES);
    if (p.ring.space() < frames) {
      // The worklet is not consuming (output suspended): drop this frame rather than block.
      auralis.overflowFrames += frames;
      p.writeBroken = true;
      return;
    }
    written = p.ring.write(samples, frames, from);
  } else {
    const part = from === 0 && samples.length === frames * CHANNELS ? samples : samples.slice(from * CHANNELS, (from + frames) * CHANNELS);
    const m = { type: "chunk", samples: part, fadeTail: fadeOut };
    if (p.node) p.node.port.postMessage(m, [part.buffer]);
    else p.queued.push(m);
  }
  p.segments.push({
    from: p.writtenTotal, to: p.writtenTotal + written, zero: p.writtenTotal - Math.max(e.trim, lead),
    renderedMs: h.renderedUnixMs, sentMs: h.sentUnixMs, delayMs: e.delayMs,
  });
  if (p.segments.length > 64) p.segments.shift();
  p.writtenTotal += written;
  p.lastWasFill = fill;
}

/**
 * After a resume: drops this frame instead of writing it when it (and the resumed frames still to
 * come) would keep the buffer more than a chunk above its target (see CatchUp). Every resumed frame
 * was counted as received on arrival; a dropped one is counted in `catchUpDropped` as well. The
 * frame written next fades in over the splice, and the ring's tail fades out.
 */
function catchUpDrops(p, e) {
  const now = performance.now();
  if (!p.catchUp.active(now)) return false;
  const drop = p.catchUp.drop(now, {
    queuedMs: (queuedFrames(p, now) / p.streamRate) * 1000,
    meanMs: auralis.bufferMs,
    chunkMs: (e.h.frames / p.streamRate) * 1000,
    targetMs: p.policy.targetMs,
    playing: Boolean(p.worklet && p.worklet.playing),
    resumed: e.h.resumed,
  });
  if (!drop) return false;
  auralis.catchUpDropped = p.catchUp.dropped;
  p.writeBroken = true;
  p.rateCtl.resync();
  return true;
}

/** Stream frames written and not yet played: exact with the shared ring, estimated when posting. */
function queuedFrames(p, now) {
  if (p.ring) return p.ring.available();
  const m = p.worklet;
  if (!m) return p.writtenTotal;
  let read = m.readTotal;
  if (m.playing && p.lastReportAt !== null) read += ((now - p.lastReportAt) / 1000) * p.streamRate * (m.rate || 1);
  return Math.max(0, p.writtenTotal - read);
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

  const outage = Math.max(0, (m.outageUnderruns || 0) - p.workletOutageUnderruns);
  if (m.underruns > p.workletUnderruns) {
    // The ring is fed from this thread: blocked for half the buffer target or more, it could not
    // keep the worklet supplied whatever the network did. Such underruns are the tab's. Those
    // while the connection was down are the outage's: neither the tab's nor a reason for a
    // bigger buffer.
    const tab = now - p.blockedAt < BLOCKED_WINDOW_MS && p.blockedMs >= p.policy.targetMs / 2;
    for (let i = p.workletUnderruns + outage; i < m.underruns; i++) {
      if (tab) auralis.tabUnderruns++;
      p.policy.onUnderrun(now);
    }
    p.rateCtl.resync();
  }
  p.workletUnderruns = m.underruns;
  p.workletOutageUnderruns = m.outageUnderruns || 0;
  auralis.underruns = m.underruns;
  auralis.outageUnderruns = p.workletOutageUnderruns;
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
  // server offset) minus when its chunk was rendered, referred to the chunk's first frame. Decoded
  // Opus lags its frame positions by the pre-skip: the audio playing is that much older.
  if (m.playing && clock.known) {
    const seg = findSegment(p, m.readTotal);
    if (seg) {
      const outMs = ((ctx.outputLatency || 0) + (ctx.baseLatency || 0)) * 1000;
      const intoChunkMs = ((m.readTotal - seg.zero) / p.streamRate) * 1000;
      const playoutServerMs = clock.toServer(wallNow() + outMs) - intoChunkMs + seg.delayMs;
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
  if (!auralis.connected) {
    // Nothing is measured while down: the last figure stays, shown as stale, and the next
    // connection starts a fresh window rather than averaging the outage in.
    p.rateWindow = [];
    p.bytes = 0;
    p.bytesSince = now;
    return;
  }
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
    decodeErrors: auralis.decodeErrors - c.decodeErrorBase,
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
  // Fade out and drop whatever the old station left in the buffer (and in the decoders); the new
  // one fades in.
  for (const d of p.decoders.values()) d.reset();
  for (const d of p.retired) d.close();
  p.retired.clear();
  p.pending = [];
  p.writeBroken = false;
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
  // Another station: nothing to resume, and its sequences start a new count.
  p.resumeWanted = false;
  p.resumeNote = "";
  p.tracker.forget();
  p.encoders.forget();
  p.catchUp.reset();
  auralis.connected = false;
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
