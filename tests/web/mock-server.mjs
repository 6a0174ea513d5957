// A stand-in Auralis server for exercising the web client without building the real one.
// It serves web/ and speaks the same wire protocol (v2, docs/protocol.md): /api/stations, the
// control endpoints, and /ws/NAME streaming a test chord in 100 ms chunks. It offers only
// pcm_s16le: `?codec=` naming anything else is refused with 400 unsupported_codec, as the server
// refuses a codec its station does not offer, and so is a `hello` asking for one. Fault injection under
// /debug/* (drop, stall, fill, gap, disc, restart, resume-limit) and a record of the stats reports
// and stream URLs the client sent. For the live dashboard (/dashboard): /api/live, a Server-Sent
// Events stream of one made-up snapshot a second, with /debug/live-drop (close the streams) and
// /debug/live-underrun?n=N.
//
// Resume (docs/protocol.md): each station has an epoch and keeps the last --resume-window chunks
// (it renders any sequence again, so nothing is stored). A stream URL with `resume_from` and
// `epoch` gets `welcome.resume` and, when resumed, the missed chunks flagged FLAG_RESUMED at once;
// otherwise a `resume_<outcome>` warning and the live edge, flagged as a discontinuity. A
// `resume_from` that is not a sequence is refused before the upgrade (400 invalid_resume).
//   /debug/drop[?ms=N]        cut every stream (close code 1006); refuse streams for N ms
//   /debug/restart?ms=N[&forget=1][&window=W]
//                             a server restart: close every stream with 1001, refuse streams and
//                             the API for N ms; `forget` gives the stations new epochs (their
//                             state was deleted), `window` sets the resume window from then on
//   /debug/resume-limit?n=N   the next N resumes are answered rate_limited
//
//   node tests/web/mock-server.mjs [--port 18080] [--isolated] [--token SECRET] [--remote] [--resume-window 80]
//
// --isolated sends COOP/COEP so the page gets SharedArrayBuffer; --remote makes control act as
// if requests came from another machine (403 without a token). --port 0 picks a free port; the
// first line printed names it. Not part of `node --test` (mock-resume.test.mjs starts one).

import http from "node:http";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import {
  encodeFrame, isValidStats, codecName, PROTOCOL_VERSION, FLAG_UNDERRUN_FILL, FLAG_DISCONTINUITY, FLAG_RESUMED,
} from "../../web/protocol.js";
import { cliOption } from "./harness.mjs";
import { wsParser } from "./ws-frames.mjs";

const opt = cliOption();
const PORT = Number(opt("port", 18080));
const ISOLATED = Boolean(opt("isolated", false));
const TOKEN = opt("token", null);
const REMOTE = Boolean(opt("remote", false));
let resumeWindow = Number(opt("resume-window", 80)); // chunks a resume can reach back (the server: 8 s)
const WEB = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "web");

const RATE = 48000;
const CHUNK_MS = 100;
const CODECS = ["pcm_s16le"];
const FRAMES = (RATE * CHUNK_MS) / 1000;
const PRESETS = ["ambient", "focus", "pulse", "night"];
const baseParams = () => ({
  key: "D", mode: "dorian", bpm: 84, intensity: 0.4,
  layers: { pads: true, melody: true, kicks: true, hats: true, swells: true },
  melody_complexity: 0.45, chord_variety: 0.35, harmonic_density: 0.5, master_gain: 0.9,
});
const newEpoch = () => crypto.randomBytes(8).toString("hex");
// `offset`: chunks the station's timeline has skipped (injected gaps and discontinuities). It is
// the station's, not a listener's, so a resume after one names the same sequences.
const stations = new Map(
  ["default", "night"].map((name, i) => [name, {
    name, seed: i + 1, params: baseParams(), log: [], listeners: new Set(), root: [146.83, 110][i], epoch: newEpoch(), offset: 0,
  }]),
);

const debug = {
  stats: 0, invalidStats: 0, lastStats: null, pings: 0, connections: 0, controls: 0, codecRefusals: 0, hellos: 0,
  resumes: {}, // outcome -> count
  queries: [], // the query parameters of the last stream URLs (a token left out), newest last
  restarts: 0,
  refused: 0, // stream upgrades refused while "down"
};
const faults = { stallUntil: 0, fill: 0, gap: 0, disc: 0, downUntil: 0, resumeLimit: 0 };
const down = () => Date.now() < faults.downUntil;
/** The newest sequence a station has released (on its timeline). */
const newestOf = (st) => Math.floor(Date.now() / CHUNK_MS) - 1 + st.offset;

/**
 * The answer to `resume_from` and `epoch` on a stream URL: `{outcome, from, chunks}`. The checks
 * in the order the server makes them: the epoch, the window, then the station's budget (which only
 * a resume with chunks to send takes from).
 */
function resumeAnswer(st, from, epoch) {
  const newest = newestOf(st);
  const answer = (outcome, chunks = 0) => ({ outcome, from, chunks });
  if (epoch !== st.epoch) return answer("epoch_changed");
  if (from < newest + 1 - resumeWindow) return answer("outside_window");
  if (from > newest + 1) return answer("future");
  const chunks = newest + 1 - from;
  if (chunks > 0 && faults.resumeLimit > 0) {
    faults.resumeLimit--;
    return answer("rate_limited");
  }
  return answer("resumed", chunks);
}

// ---- audio

function renderChunk(st, seq) {
  const out = new Float32Array(FRAMES * 2);
  const start = seq * FRAMES;
  const ratios = [1, 1.25, 1.5, 2];
  for (let i = 0; i < FRAMES; i++) {
    const t = (start + i) / RATE;
    let v = 0;
    for (const r of ratios) v += Math.sin(2 * Math.PI * st.root * r * (t % 1000));
    v *= 0.12 * st.params.master_gain * (0.75 + 0.25 * Math.sin(2 * Math.PI * 0.5 * (t % 1000)));
    out[2 * i] = v;
    out[2 * i + 1] = v * 0.9;
  }
  return out;
}

const nowNs = () => BigInt(Date.now()) * 1000000n;

function frameFor(st, seq, flags = 0) {
  const fill = (flags & FLAG_UNDERRUN_FILL) !== 0;
  const samples = fill ? new Float32Array(FRAMES * 2) : renderChunk(st, seq);
  const sent = nowNs();
  return Buffer.from(
    encodeFrame(
      { channels: 2, sampleRate: RATE, frames: FRAMES, flags, sequence: seq, position: seq * FRAMES, renderedUnixNs: fill ? sent : sent - 300000000n, sentUnixNs: sent },
      samples,
    ),
  );
}

// ---- minimal WebSocket (RFC 6455), server side

function wsSend(sock, opcode, payload) {
  const len = payload.length;
  let head;
  if (len < 126) head = Buffer.from([0x80 | opcode, len]);
  else if (len < 65536) {
    head = Buffer.alloc(4);
    head[0] = 0x80 | opcode;
    head[1] = 126;
    head.writeUInt16BE(len, 2);
  } else {
    head = Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(len), 2);
  }
  if (!sock.destroyed) sock.write(Buffer.concat([head, payload]));
}

function upgrade(req, sock) {
  const url = new URL(req.url, "http://x");
  if (down()) {
    // Restarting, or the network is cut: nothing answers.
    debug.refused++;
    sock.destroy();
    return;
  }
  const name = url.pathname.startsWith("/ws/") ? decodeURIComponent(url.pathname.slice(4)) : url.searchParams.get("station") || "default";
  const st = stations.get(name);
  const refuse = (status, code, message) => {
    const body = JSON.stringify({ error: { code, message } });
    sock.end(`HTTP/1.1 ${status}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
  };
  const resumeFrom = url.searchParams.get("resume_from");
  if (resumeFrom !== null && !/^[0-9]{1,15}$/.test(resumeFrom)) {
    refuse("400 Bad Request", "invalid_resume", `resume_from must be a sequence number (got ${JSON.stringify(resumeFrom.slice(0, 32))})`);
    return;
  }
  if (!st) {
    refuse("404 Not Found", "unknown_station", `unknown station ${JSON.stringify(name)}`);
    return;
  }
  const asked = url.searchParams.get("codec");
  const offeredError = (codec) => {
    const known = codecName(codec);
    if (known && CODECS.includes(known)) return null;
    const shown = String(codec).slice(0, 32);
    return known ? `station ${name} does not offer ${shown}; it offers ${CODECS.join(", ")}` : `unknown codec ${JSON.stringify(shown)}; this station offers ${CODECS.join(", ")}`;
  };
  if (asked !== null && offeredError(asked)) {
    debug.codecRefusals++;
    refuse("400 Bad Request", "unsupported_codec", offeredError(asked));
    return;
  }
  const accept = crypto.createHash("sha1").update(req.headers["sec-websocket-key"] + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
  sock.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  sock.setNoDelay(true);
  debug.connections++;
  const query = Object.fromEntries([...url.searchParams].filter(([k]) => k !== "token"));
  debug.queries.push(query);
  if (debug.queries.length > 20) debug.queries.shift();
  const listener = { sock, next: null };
  st.listeners.add(listener);
  const text = (obj) => wsSend(sock, 1, Buffer.from(JSON.stringify(obj)));
  const session = debug.connections;
  let resume = resumeFrom === null ? null : resumeAnswer(st, Number(resumeFrom), url.searchParams.get("epoch"));
  if (resume) debug.resumes[resume.outcome] = (debug.resumes[resume.outcome] || 0) + 1;
  const welcome = () => {
    text({
      type: "welcome", protocol: PROTOCOL_VERSION, session, station: name, stations: [...stations.keys()],
      format: { codec: "pcm_s16le", sample_rate: RATE, channels: 2, frames_per_chunk: FRAMES }, codecs: CODECS,
      chunk_ms: CHUNK_MS, server_time_unix_ns: Number(nowNs()), epoch: st.epoch, resume_window_chunks: resumeWindow,
      ...(resume ? { resume } : {}),
    });
    resume = null; // the answer goes with the connection's first welcome only
  };
  const close = (code, reason) => {
    const payload = Buffer.alloc(2 + Buffer.byteLength(reason));
    payload.writeUInt16BE(code, 0);
    payload.write(reason, 2);
    wsSend(sock, 8, payload);
    sock.end();
  };
  const answer = resume;
  welcome();
  const newest = newestOf(st);
  if (answer && answer.outcome === "resumed") {
    // Everything missed, back to back, oldest first; the live stream goes on after it.
    for (let seq = answer.from; seq <= newest; seq++) wsSend(sock, 2, frameFor(st, seq, FLAG_RESUMED));
  } else {
    if (answer) text({ type: "warning", code: `resume_${answer.outcome}`, message: resumeWarning(answer, st) });
    wsSend(sock, 2, frameFor(st, newest, answer ? FLAG_DISCONTINUITY : 0)); // a resume refused: a skip
  }
  listener.next = newest + 1 - st.offset;
  sock.on("data", wsParser((opcode, payload) => {
    if (opcode === 8) {
      wsSend(sock, 8, payload.subarray(0, 2));
      sock.end();
    } else if (opcode === 9) {
      wsSend(sock, 10, payload);
    } else if (opcode === 1) {
      let msg;
      try {
        msg = JSON.parse(payload.toString());
      } catch {
        text({ type: "error", code: "malformed_json", message: "not valid JSON" });
        return;
      }
      if (msg.type === "hello") {
        debug.hellos++;
        if (msg.protocol != null && msg.protocol !== PROTOCOL_VERSION) {
          text({ type: "error", code: "unsupported_protocol", message: `this server speaks protocol ${PROTOCOL_VERSION}` });
          close(1002, "unsupported protocol");
        } else if (msg.codec != null && offeredError(msg.codec)) {
          text({ type: "error", code: "unsupported_codec", message: offeredError(msg.codec) });
          close(1003, "unsupported codec");
        } else {
          welcome();
        }
      } else if (msg.type === "ping") {
        debug.pings++;
        text({ type: "pong", client_time: msg.client_time ?? null, server_time_unix_ns: Number(nowNs()) });
      } else if (msg.type === "stats") {
        debug.stats++;
        debug.lastStats = msg;
        if (!isValidStats(msg)) {
          debug.invalidStats++;
          text({ type: "error", code: "invalid_message", message: "invalid stats message" });
        }
      } else {
        text({ type: "error", code: "unknown_type", message: `unknown message type ${JSON.stringify(msg.type)}` });
      }
    }
  }));
  const gone = () => st.listeners.delete(listener);
  sock.on("close", gone);
  sock.on("error", gone);
}

function resumeWarning(answer, st) {
  switch (answer.outcome) {
    case "outside_window": return `sequence ${answer.from} is no longer held (the last ${resumeWindow} chunks are); streaming from the live edge`;
    case "future": return `sequence ${answer.from} is ahead of the newest chunk (${newestOf(st)}); streaming from the live edge`;
    case "epoch_changed": return `station ${st.name} has a new epoch (${st.epoch}); streaming from the live edge`;
    default: return "too many resumes; streaming from the live edge";
  }
}

// The pacer: every listener gets each chunk once the wall clock reaches it.
setInterval(() => {
  const now = Date.now();
  if (now < faults.stallUntil) return;
  const due = Math.floor(now / CHUNK_MS) - 1;
  for (const st of stations.values()) {
    for (const l of st.listeners) {
      while (l.next <= due) {
        let flags = 0;
        if (faults.gap > 0) {
          faults.gap--;
          st.offset += 1; // a lost chunk
        } else if (faults.disc > 0) {
          faults.disc--;
          st.offset += 5; // skipped ahead, flagged
          flags |= FLAG_DISCONTINUITY;
        }
        if (faults.fill > 0) {
          faults.fill--;
          flags |= FLAG_UNDERRUN_FILL;
        }
        wsSend(l.sock, 2, frameFor(st, l.next + st.offset, flags));
        l.next++;
      }
    }
  }
}, 5);

// ---- live dashboard feed (GET /api/live): one snapshot a second, shaped like the server's

const live = { started: Date.now(), clients: new Set(), underruns: 0, last: null, tick: 0, cpu: process.cpuUsage(), sys: null, at: Date.now() };
const liveTotals = new Map([...stations.keys()].map((name) => [name, { underruns: 0, chunks: 0, bytes: 0 }]));

function systemTimes() {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    for (const v of Object.values(c.times)) total += v;
    idle += c.times.idle;
  }
  return { idle, total };
}
live.sys = systemTimes();

function liveSnapshot() {
  const now = Date.now();
  const dt = Math.max(0.001, (now - live.at) / 1000);
  live.at = now;
  live.tick++;
  const cpu = process.cpuUsage();
  const cpuCores = (cpu.user - live.cpu.user + cpu.system - live.cpu.system) / 1e6 / dt;
  live.cpu = cpu;
  const sys = systemTimes();
  const sysRatio = sys.total > live.sys.total ? 1 - (sys.idle - live.sys.idle) / (sys.total - live.sys.total) : 0;
  live.sys = sys;
  const wave = (period, phase = 0) => Math.sin((2 * Math.PI * live.tick) / period + phase);
  const q = (p50, p99, count, p = "p99") => (count > 0 ? { p50, [p]: p99, max: p99 * 1.3, count } : { p50: null, [p]: null, max: null, count: 0 });
  const underrunNow = live.underruns;
  live.underruns = 0;
  let i = 0;
  const list = [...stations.values()].map((st) => {
    const tot = liveTotals.get(st.name);
    const n = st.listeners.size;
    const chunks = Math.round(dt * (1000 / CHUNK_MS));
    tot.chunks += chunks * n;
    tot.bytes += chunks * n * (56 + FRAMES * 4);
    tot.underruns += underrunNow;
    const k = i++;
    return {
      name: st.name,
      listeners: n,
      ring_depth_s: underrunNow > 0 ? 0.04 : 0.3 + 0.08 * wave(40, k),
      ring_capacity_s: 0.5,
      synthesis_s: q(0.0004 + 0.0001 * wave(30, k), 0.0009 + 0.0003 * wave(17, k), 10),
      delivery_s: q(0.0002, 0.0008 + 0.0004 * wave(23, k), chunks * n),
      jitter_s: q(0.0003, 0.0012 + 0.0006 * wave(19, k), Math.max(0, chunks * n - 1), "p95"),
      client_latency_s: q(0.44 + 0.02 * wave(60, k), 0.5 + 0.03 * wave(45, k), n),
      underruns_total: tot.underruns, overruns_total: 0,
      chunks_sent_total: tot.chunks, bytes_sent_total: tot.bytes,
      send_errors_total: 0, dropped_total: 0,
    };
  });
  return {
    t_ms: now,
    uptime_s: (now - live.started) / 1000,
    interval_s: Math.round(dt * 1000) / 1000,
    listeners: list.reduce((a, s) => a + s.listeners, 0),
    process: { cpu_cores: cpuCores, rss_bytes: process.memoryUsage().rss, system_cpu_ratio: sysRatio },
    stations: list,
  };
}

setInterval(() => {
  live.last = liveSnapshot();
  const msg = `data: ${JSON.stringify(live.last)}\n\n`;
  for (const res of live.clients) res.write(msg);
}, 1000);

function liveStream(req, res) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.write("retry: 1000\n\n");
  if (live.last) res.write(`data: ${JSON.stringify(live.last)}\n\n`);
  live.clients.add(res);
  req.on("close", () => live.clients.delete(res));
}

// ---- HTTP

const TYPES = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8" };

function json(res, status, body, headers = {}) {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

function applyControl(st, body) {
  const p = structuredClone(st.params);
  const fields = Object.keys(body).filter((k) => k !== "type" && k !== "id" && k !== "token");
  if (fields.length === 0) return { error: { code: "invalid_control", message: "invalid control: params: no parameter to change", field: "params" } };
  for (const k of fields) {
    const v = body[k];
    const range = { bpm: [40, 200], intensity: [0, 1], melody_complexity: [0, 1], chord_variety: [0, 1], harmonic_density: [0, 1], master_gain: [0, 1] }[k];
    if (range) {
      if (typeof v !== "number" || v < range[0] || v > range[1]) return { error: { code: "invalid_control", message: `invalid control: ${k}: must be between ${range[0]} and ${range[1]} (got ${v})`, field: k } };
      p[k] = v;
    } else if (k === "key") p.key = String(v).toUpperCase();
    else if (k === "mode") p.mode = String(v).toLowerCase();
    else if (k === "preset") {
      if (!PRESETS.includes(v)) return { error: { code: "invalid_control", message: `invalid control: preset: unknown preset ${v}`, field: "preset" } };
      Object.assign(p, { bpm: { ambient: 64, focus: 84, pulse: 120, night: 70 }[v] });
    } else if (k === "layers") {
      for (const [name, on] of Object.entries(v)) {
        if (!(name in p.layers) || typeof on !== "boolean") return { error: { code: "invalid_control", message: `invalid control: layers.${name}: unknown layer`, field: `layers.${name}` } };
        p.layers[name] = on;
      }
    } else return { error: { code: "invalid_control", message: `invalid control: ${k}: unknown parameter`, field: k } };
  }
  st.params = p;
  const bar = Math.ceil((Date.now() + 300) / 2857);
  const position = Math.round(bar * 2.857 * RATE);
  return { ack: { station: st.name, position, bar, effective_unix_ms: Math.floor((position * 1000) / RATE), params: p } };
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://x");
  const p = url.pathname;
  if (p.startsWith("/api/") && down()) return json(res, 503, { error: { code: "shutting_down", message: "restarting" } });
  if (p === "/api/stations") {
    return json(res, 200, {
      stations: [...stations.values()].map((s) => ({
        name: s.name, seed: s.seed, preset: null, stream: `/ws/${s.name}`, control: `/api/stations/${s.name}/control`,
        live: true, listeners: s.listeners.size, params: s.params,
      })),
      control_token_required: Boolean(TOKEN),
      presets: PRESETS,
    });
  }
  const m = /^\/api\/stations\/([^/]+)\/control$/.exec(p);
  if (m) {
    const st = stations.get(decodeURIComponent(m[1]));
    if (!st) return json(res, 404, { error: { code: "unknown_station", message: "unknown station" } });
    if (req.method === "GET") {
      return json(res, 200, { station: st.name, seed: st.seed, preset: null, params: st.params, effective_position: 0, sample_rate: RATE, log: [] });
    }
    let raw = "";
    req.on("data", (d) => (raw += d));
    req.on("end", () => {
      debug.controls++;
      let body;
      try {
        body = JSON.parse(raw);
      } catch (e) {
        return json(res, 400, { error: { code: "malformed_json", message: `request body is not a JSON object: ${e.message}` } });
      }
      const auth = (req.headers.authorization || "").replace(/^Bearer /, "");
      if (TOKEN && auth !== TOKEN) {
        return json(res, 401, { error: { code: "unauthorized", message: auth ? "the control token is not valid" : "this server requires a control token" } }, { "www-authenticate": "Bearer" });
      }
      if (!TOKEN && REMOTE) {
        return json(res, 403, { error: { code: "unauthorized", message: "control is only accepted from this machine unless the server sets --control-token" } });
      }
      const r = applyControl(st, body);
      if (r.error) return json(res, 400, r);
      json(res, 200, r.ack);
    });
    return;
  }
  if (p === "/api/live") return liveStream(req, res);
  if (p === "/debug/live-drop") {
    for (const c of live.clients) c.destroy();
    live.clients.clear();
    return json(res, 200, { ok: true });
  }
  if (p === "/debug/live-underrun") {
    live.underruns += Number(url.searchParams.get("n") || 1);
    return json(res, 200, { ok: true });
  }
  if (p.startsWith("/debug/")) {
    const what = p.slice(7);
    if (what === "stats") return json(res, 200, debug);
    if (what === "drop") {
      for (const st of stations.values()) for (const l of st.listeners) l.sock.destroy();
      faults.downUntil = Date.now() + Number(url.searchParams.get("ms") || 0);
    } else if (what === "restart") {
      debug.restarts++;
      for (const st of stations.values()) {
        for (const l of st.listeners) {
          const payload = Buffer.from([0x03, 0xe9, ...Buffer.from("server restarting")]); // 1001
          wsSend(l.sock, 8, payload);
          l.sock.end();
        }
        st.listeners.clear();
        if (url.searchParams.get("forget") === "1") st.epoch = newEpoch();
      }
      if (url.searchParams.has("window")) resumeWindow = Number(url.searchParams.get("window"));
      faults.downUntil = Date.now() + Number(url.searchParams.get("ms") || 1000);
    } else if (what === "resume-limit") {
      faults.resumeLimit += Number(url.searchParams.get("n") || 1);
    } else if (what === "stall") faults.stallUntil = Date.now() + Number(url.searchParams.get("ms") || 800);
    else if (what in faults) faults[what] += Number(url.searchParams.get("n") || 1);
    return json(res, 200, { ok: true });
  }
  const file = p === "/" ? "index.html" : p === "/dashboard" ? "dashboard.html" : p.slice(1);
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*\.(html|js|css)$/.test(file) || !fs.existsSync(path.join(WEB, file))) {
    return json(res, 404, { error: { code: "not_found", message: "not found" } });
  }
  const headers = { "content-type": TYPES[path.extname(file)], "cache-control": "no-cache" };
  if (ISOLATED) {
    headers["cross-origin-opener-policy"] = "same-origin";
    headers["cross-origin-embedder-policy"] = "require-corp";
  }
  res.writeHead(200, headers);
  res.end(fs.readFileSync(path.join(WEB, file)));
});
server.on("upgrade", upgrade);
server.listen(PORT, "127.0.0.1", () => {
  const port = server.address().port;
  console.log(`mock server on http://127.0.0.1:${port}/ (isolated=${ISOLATED}, token=${TOKEN ? "set" : "none"})`);
});
