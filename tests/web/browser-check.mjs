// Opens the player in headless Chromium and checks it end to end through `window.auralis`.
//
//   node tests/web/browser-check.mjs [--url http://127.0.0.1:8080/] [--seconds 8] [--mock]
//        [--query "autoplay=1"] [--screenshot page.png --width 390] [--scenario NAME]
//        [--browser chromium|firefox]
//
// Chromium is driven over the DevTools pipe (cdp.mjs), Firefox over Marionette (marionette.mjs).
// Scenarios:
//   play (default)  autoplay, steady playback, stats, latency, Stop. With --mock (a server started
//                   from tests/web/mock-server.mjs, which offers only PCM: scripts/browser-check.sh
//                   passes --query "autoplay=1&codec=pcm_s16le") also the fault injection,
//                   reconnect, resume (a dropped connection, a restart, and the outcomes that
//                   rejoin live), control panel, station switch and codec negotiation.
//   codecs          against the real server: the default page (Opus through WebCodecs),
//                   ?decoder=wasm (Opus through the WebAssembly decoder) and ?codec=flac each play
//                   for --seconds with no decode errors, gaps or underruns (but the tab's) and a
//                   plausible bit rate. Then (Chromium) FLAC, and Opus through the WebAssembly
//                   decoder, with a few chunks damaged on the way in: counted, reported, played as
//                   silence.
//   token           control against a server started with --token SECRET (refusal, then success).
//   remote          control against a mock started with --remote (403 explained).
//   blocked         autoplay without the browser's autoplay permission: a clear note, no hang.
// Not part of `node --test`: it needs a browser and a running server.

import { launch as launchChromium } from "./cdp.mjs";
import { launch as launchFirefox } from "./marionette.mjs";
import { cliOption } from "./harness.mjs";

const opt = cliOption();
const BASE = String(opt("url", "http://127.0.0.1:8080/"));
const MOCK = Boolean(opt("mock", false));
const SECONDS = Number(opt("seconds", 8));
const QUERY = String(opt("query", "autoplay=1"));
const SCREENSHOT = opt("screenshot", null);
const WIDTH = Number(opt("width", 390));
const SCENARIO = String(opt("scenario", "play"));
const TOKEN = String(opt("token", "s3cret"));
const BROWSER = String(opt("browser", "chromium"));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const mock = (what) => fetch(new URL(`/debug/${what}`, BASE)).then((r) => r.json());
const failures = [];
const expectedErrors = new Set(); // page errors a check provoked on purpose (see damaged)
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
}

/** Changes a control through the panel and returns the panel's status line once it settles. */
function controlViaPanel(page, id, value) {
  return page.evaluate(`(async () => {
    const s = document.getElementById(${JSON.stringify(id)});
    s.value = ${JSON.stringify(value)};
    s.dispatchEvent(new Event("change"));
    for (let i = 0; i < 40; i++) {
      await new Promise(r => setTimeout(r, 50));
      const t = document.getElementById("c-status").textContent;
      if (t && !t.startsWith("sending")) return t;
    }
    return document.getElementById("c-status").textContent;
  })()`);
}

async function play(page) {
  let a = await page.waitFor((s) => s.state === "playing" && s.nonSilentFrames > 0, 5000, "playing");
  check(a.state === "playing", `reaches playing (state ${a.state}: ${a.note})`);
  // Time to first sound is a performance figure (docs/perf.md), not a pass/fail check: a loaded
  // machine must not fail the suite. Here it only has to be measured.
  check(a.firstSoundMs !== null && a.firstSoundMs > 0, `first sound measured (${a.firstSoundMs} ms)`);
  console.log(`  sharedMemory=${a.sharedMemory} sampleRate=${a.sampleRate} crossOriginIsolated=${await page.evaluate("crossOriginIsolated")}`);

  await sleep(SECONDS * 1000);
  a = await page.state();
  console.log("  " + JSON.stringify(a));
  check(a.state === "playing", "still playing");
  check(a.chunks >= SECONDS * 10 - 2, `receives chunks (${a.chunks})`);
  check(a.nonSilentFrames > a.sampleRate * (SECONDS - 1), `outputs sound (${a.nonSilentFrames} non-silent frames)`);
  check(a.renderedFrames >= a.nonSilentFrames, "rendered >= non-silent");
  // An underrun right after this page's main thread was blocked (a starved machine) is the tab's,
  // not the stream's: the player tells them apart, and the stream's own must be none.
  check(a.underruns - a.tabUnderruns === 0, `no underruns but the tab's (${a.underruns}, of which the tab's ${a.tabUnderruns})`);
  check(a.gaps === 0, `no sequence gaps (${a.gaps})`);
  check(a.statsSent >= SECONDS - 1, `sends stats every second (${a.statsSent})`);
  check(Number.isFinite(a.latencyMs) && a.latencyMs > 0 && a.latencyMs < 2000, `end-to-end latency known (${a.latencyMs} ms)`);
  check(a.bufferMs > 20 && a.bufferMs < 600, `buffer depth sane (${a.bufferMs} ms, target ${a.targetMs} ms)`);
  check(Math.abs(a.driftPpm) < 5000, `drift estimate bounded (${a.driftPpm} ppm)`);
  const r1 = await page.evaluate("(async () => { const a = window.auralis.renderedFrames; await new Promise(r => setTimeout(r, 600)); return window.auralis.renderedFrames - a; })()");
  check(r1 > 0, `worklet counters update several times a second (+${r1} frames in 600 ms)`);

  // A main-thread stall (a busy tab): the worklet runs dry, then a burst arrives. Playback must
  // come back at the live edge instead of keeping the backlog as extra latency.
  const before = a.latencyMs;
  const tabBefore = a.tabUnderruns;
  await page.evaluate("(() => { const t = performance.now(); while (performance.now() - t < 1500) {} })()");
  a = await page.waitFor((s) => s.state === "playing" && s.bufferMs < s.targetMs + 150, 5000, "recovered from the stall");
  await sleep(1000);
  a = await page.state();
  console.log(`  after a 1.5 s main-thread stall: underruns=${a.underruns} skips=${a.skips} buffer=${a.bufferMs.toFixed(0)} target=${a.targetMs.toFixed(0)} latency ${before.toFixed(0)} -> ${a.latencyMs.toFixed(0)}`);
  check(a.state === "playing" && a.latencyMs < before + 400, "back at the live edge after a tab stall");
  check(a.tabUnderruns > tabBefore, `the stall's underrun is the tab's (${a.tabUnderruns - tabBefore})`);

  if (SCREENSHOT) {
    await page.screenshot(String(SCREENSHOT), WIDTH);
    console.log(`  screenshot: ${SCREENSHOT}`);
  }

  if (MOCK) {
    const d = await mock("stats");
    check(d.stats >= SECONDS - 1 && d.invalidStats === 0, `server saw ${d.stats} stats reports, ${d.invalidStats} invalid`);
    check(d.lastStats && d.lastStats.decode_errors === 0, `stats carry decode_errors (${JSON.stringify(d.lastStats)})`);
    check(a.codec === "pcm_s16le" && a.decodeErrors === 0, `streams PCM as asked (${a.codec}, ${a.decodeErrors} decode errors)`);

    const underrunsBefore = (await page.state()).underruns;
    await mock("fill?n=2");
    await mock("disc");
    await mock("gap");
    await sleep(1500);
    a = await page.state();
    check(a.serverFills >= 2 && a.discontinuities >= 1 && a.gaps >= 1, `flags counted (fills ${a.serverFills}, disc ${a.discontinuities}, gaps ${a.gaps})`);
    check(a.underruns === underrunsBefore, `flags cause no underrun (${a.underruns - underrunsBefore})`);

    const before700 = await page.state();
    await mock("stall?ms=700");
    await sleep(2500);
    a = await page.state();
    check(a.underruns > before700.underruns && a.tabUnderruns === before700.tabUnderruns,
      `a network stall's underrun is not the tab's (${a.underruns - before700.underruns}, tab's ${a.tabUnderruns - before700.tabUnderruns})`);
    console.log(`  after a 700 ms stall: underruns=${a.underruns} target=${a.targetMs.toFixed(0)} jitter=${a.jitterMs.toFixed(1)} skips=${a.skips}`);
    check(a.targetMs > 150, `target grew after the stall (${a.targetMs.toFixed(0)} ms)`);
    check(a.state === "playing", `plays on after the stall (${a.state})`);

    const beforeDrop = await page.state();
    await mock("drop");
    a = await page.waitFor((s) => s.state === "reconnecting", 2000, "reconnecting");
    check(a.state === "reconnecting" && /retrying in/.test(a.note), `shows reconnecting (${a.note})`);
    a = await page.waitFor((s) => s.reconnects >= 1 && s.state === "playing", 5000, "reconnected");
    check(a.reconnects === 1 && a.state === "playing", `reconnects (${a.reconnects}, ${a.state})`);
    await resume(page, beforeDrop);

    const text = await controlViaPanel(page, "c-bpm", "96");
    check(/^bpm 96: lands at bar \d+ in \d+\.\d s/.test(text), `control ack shown (${text})`);

    const beforeSwitch = await page.state();
    await page.evaluate(`(() => { const s = document.getElementById("station"); s.value = "night"; s.dispatchEvent(new Event("change")); })()`);
    a = await page.waitFor((s) => s.station === "night" && s.state === "playing", 3000, "switched");
    check(a.station === "night" && a.state === "playing", `station switch (${a.station}, ${a.state})`);
    check(a.reconnects === beforeSwitch.reconnects, "a switch is not a reconnect");
    const switchQuery = (await mock("stats")).queries.at(-1);
    check(!("resume_from" in switchQuery) && a.resumeFrom === null, `a switch does not resume (${JSON.stringify(switchQuery)})`);
    check(a.missingSequences === beforeSwitch.missingSequences, `a switch misses no sequence (${a.missingSequences - beforeSwitch.missingSequences})`);
    const c = await page.evaluate(`document.getElementById("c-station").textContent`);
    check(c === "night", `control panel follows the station (${c})`);
  }

  await page.evaluate(`document.getElementById("play").click()`);
  a = await page.waitFor((s) => s.state === "idle", 2000, "idle");
  check(a.state === "idle", "Stop returns to idle");

  if (MOCK) await negotiation(page);
}

/**
 * Against the mock, after its `drop` (which `before` preceded): the reconnect resumed. Then a
 * restart, resumed across it; a restart the window cannot cover, one that lost the station's state,
 * and a refused resume, each rejoining live with the skipped sequences counted as missing.
 */
async function resume(page, before) {
  let a = await page.state();
  const q = (await mock("stats")).queries.at(-1);
  check(a.lastResume && a.lastResume.outcome === "resumed" && a.resumes.resumed === 1, `the drop is resumed (${JSON.stringify(a.lastResume)}, ${JSON.stringify(a.resumes)})`);
  check(q.codec === "pcm_s16le" && Number(q.resume_from) === a.resumeFrom && a.resumeFrom === a.lastResume.from && q.epoch === a.epoch && /^[0-9a-f]{16}$/.test(a.epoch),
    `the reconnect URL asks to resume after the last sequence (${JSON.stringify(q)}, epoch ${a.epoch})`);
  check(a.missingSequences === before.missingSequences, `no sequence missed across the drop (${a.missingSequences - before.missingSequences})`);
  check(a.connected === true, "connected again");

  // A server restart of about 1.5 s: far longer than the buffer, so it runs dry (an underrun, the
  // outage's), and the resume brings a backlog of seconds that the catch-up drops.
  const b = await page.state();
  await mock("restart?ms=1500");
  a = await page.waitFor((s) => s.state === "reconnecting" && /resuming…/.test(s.note), 2000, "resuming");
  check(a.state === "reconnecting" && /resuming…/.test(a.note) && a.connected === false, `shows resuming (${a.state}: ${a.note})`);
  await sleep(700);
  const stale = await page.evaluate(`[...document.querySelectorAll("#health dd.stale")].map((e) => e.id + " " + e.textContent)`);
  check(stale.some((t) => /^s-latency \d+ \(\d+\.\d s ago\)$/.test(t)) && stale.some((t) => t.startsWith("s-kbps ")), `stale figures greyed with their age (${stale.join(", ")})`);
  const buffer = await page.evaluate(`document.getElementById("s-buffer").className`);
  check(buffer !== "stale", "the buffer depth stays live");
  a = await page.waitFor((s) => s.connected && s.state === "playing" && s.resumes.resumed === 2, 8000, "resumed after the restart");
  const shown = await page.evaluate(`document.getElementById("status").textContent`);
  check(a.lastResume.outcome === "resumed" && a.lastResume.chunks >= 10, `resumed across the restart (${JSON.stringify(a.lastResume)})`);
  check(/resumed: \d+ missed chunks/.test(shown), `the status line says so (${shown})`);
  check(a.missingSequences === b.missingSequences, `no sequence missed across the restart (${a.missingSequences - b.missingSequences})`);
  check(a.resumedChunks - b.resumedChunks >= a.lastResume.chunks, `resumed chunks counted as received (${a.resumedChunks - b.resumedChunks})`);
  check(a.outageUnderruns > b.outageUnderruns && a.underruns > b.underruns, `the outage's silence is an underrun (${a.underruns - b.underruns}, the outage's ${a.outageUnderruns - b.outageUnderruns})`);
  check(a.catchUpDropped > b.catchUpDropped, `the backlog is dropped to catch up (${a.catchUpDropped - b.catchUpDropped} chunks)`);
  await sleep(3000);
  a = await page.state();
  const staleAfter = await page.evaluate(`document.querySelectorAll("#health dd.stale").length`);
  console.log(`  3 s after the resume: buffer=${a.bufferMs.toFixed(0)} target=${a.targetMs.toFixed(0)} latency=${a.latencyMs.toFixed(0)} dropped=${a.catchUpDropped} underruns=${a.underruns} (outage's ${a.outageUnderruns}, tab's ${a.tabUnderruns})`);
  check(a.state === "playing" && a.bufferMs <= a.targetMs + 100, `back within a chunk of the target (${a.bufferMs.toFixed(0)} / ${a.targetMs.toFixed(0)} ms)`);
  check(a.underruns === a.tabUnderruns + a.outageUnderruns + (before.underruns - before.tabUnderruns - before.outageUnderruns), "no underrun after the resume but the outage's (and the tab's)");
  check(staleAfter === 0, "nothing stale once connected");

  // Rejoining live: the sequences skipped count as missing.
  const outcomes = [
    ["outside_window", "restart?ms=1500&window=5"], // keeps 0.5 s: less than the outage
    ["epoch_changed", "restart?ms=300&forget=1&window=80"], // the station's state was deleted
    ["rate_limited", null],
  ];
  for (const [outcome, fault] of outcomes) {
    const c = await page.state();
    if (fault) await mock(fault);
    else {
      await mock("resume-limit?n=1");
      await mock("drop?ms=500");
    }
    a = await page.waitFor((s) => s.connected && s.state === "playing" && (s.resumes[outcome] || 0) === 1, 10000, outcome);
    const note = await page.evaluate(`document.getElementById("status").textContent`);
    check(a.lastResume && a.lastResume.outcome === outcome && a.lastWarning && a.lastWarning.code === `resume_${outcome}`, `${outcome}: answered and warned (${JSON.stringify(a.lastResume)}, ${a.lastWarning && a.lastWarning.code})`);
    check(/could not resume/.test(note), `${outcome}: the status line says so (${note})`);
    check(a.missingSequences - c.missingSequences >= 3, `${outcome}: the skipped sequences count as missing (${a.missingSequences - c.missingSequences})`);
    if (outcome === "epoch_changed") check(a.epoch !== c.epoch, `a new epoch (${c.epoch} -> ${a.epoch})`);
  }
}

/** Against the mock, which offers PCM only: what the page asks for, and what it gets. */
async function negotiation(page) {
  const open = (query) => {
    const url = new URL(BASE);
    url.search = query;
    return page.navigate(url.href);
  };
  const refusals = (await mock("stats")).codecRefusals;
  // No ?codec=: the player asks for Opus (WebCodecs has it), is refused, asks for none, and plays
  // the PCM the welcome announces.
  await open("autoplay=1");
  let a = await page.waitFor((s) => s.state === "playing" && s.nonSilentFrames > 0 && s.kbps > 0, 5000, "playing PCM by default");
  const d = await mock("stats");
  check(a.state === "playing" && a.codec === "pcm_s16le", `without ?codec= plays what the station offers (${a.state}, ${a.codec}, offered ${a.codecs})`);
  check(d.codecRefusals === refusals + 1, `after one refused codec (${d.codecRefusals - refusals})`);
  const shown = await page.evaluate(`document.getElementById("s-codec").textContent`);
  check(/^pcm_s16le · \d+ kbit\/s$/.test(shown), `health panel shows the codec (${shown})`);
  // A codec the station does not offer, named by the page: a clear error, no retry loop.
  await open("autoplay=1&codec=opus");
  a = await page.waitFor((s) => s.state === "error", 5000, "refused codec");
  check(a.state === "error" && /does not offer opus/.test(a.note), `a codec the station lacks is explained (${a.state}: ${a.note})`);
  await open("autoplay=1&codec=mp3");
  a = await page.waitFor((s) => s.state === "error", 3000, "unknown codec");
  check(a.state === "error" && /unknown codec "mp3"/.test(a.note), `an unknown codec is explained (${a.state}: ${a.note})`);
}

/** Against the real server: each codec plays cleanly through the decoder that takes it. */
async function codecs(page) {
  const webcodecs = await page.evaluate(`typeof AudioDecoder`);
  console.log(`  AudioDecoder: ${webcodecs}`);
  const cases = [
    // 128 kbit/s nominal. Where the browser has no WebCodecs, the WebAssembly decoder takes it.
    { query: "autoplay=1", codec: "opus", decoder: webcodecs === "function" ? "webcodecs" : "wasm", minKbps: 32, maxKbps: 300 },
    { query: "autoplay=1&decoder=wasm", codec: "opus", decoder: "wasm", minKbps: 32, maxKbps: 300 },
    { query: "autoplay=1&codec=flac", codec: "flac", decoder: "webcodecs", minKbps: 64, maxKbps: 1536 }, // under PCM's 1536
  ];
  for (const k of cases) {
    if (k.decoder === "webcodecs" && webcodecs !== "function") {
      console.log(`  (${k.query}: needs WebCodecs)`);
      continue;
    }
    const what = k.decoder === "wasm" ? `${k.codec} (wasm)` : k.codec;
    const url = new URL(BASE);
    url.search = k.query;
    await page.navigate(url.href);
    let a = await page.waitFor((s) => s.state === "playing" && s.nonSilentFrames > 0, 8000, `${what} playing`);
    check(a.state === "playing", `${what}: reaches playing (${a.state}: ${a.note})`);
    const start = a;
    await sleep(SECONDS * 1000);
    a = await page.state();
    console.log("  " + JSON.stringify(a));
    const shown = await page.evaluate(`document.getElementById("s-codec").textContent`);
    const wasmLoaded = await page.evaluate(`performance.getEntriesByType("resource").some((e) => /opus-decoder\\.min\\.js/.test(e.name))`);
    const sound = a.nonSilentFrames - start.nonSilentFrames;
    check(a.state === "playing", `${what}: still playing (${a.state}: ${a.note})`);
    check(a.codec === k.codec, `${what}: streams ${k.codec} (${a.codec}; the station offers ${a.codecs})`);
    check(a.decoder === k.decoder, `${what}: decoded by ${k.decoder} (${a.decoder}${a.decoder === "wasm" ? `, in a Worker: ${a.decoderWorker}` : ""})`);
    check(wasmLoaded === (k.decoder === "wasm"), `${what}: the WebAssembly decoder's script ${wasmLoaded ? "was" : "was not"} loaded`);
    check(sound > a.sampleRate * (SECONDS - 1), `${what}: outputs sound (${sound} non-silent frames in ${SECONDS} s)`);
    check(a.decodeErrors === 0, `${what}: no decode errors (${a.decodeErrors})`);
    check(a.gaps === 0, `${what}: no sequence gaps (${a.gaps})`);
    check(a.underruns - a.tabUnderruns === 0, `${what}: no underruns but the tab's (${a.underruns}, of which the tab's ${a.tabUnderruns})`);
    check(a.kbps > k.minKbps && a.kbps < k.maxKbps, `${what}: bit rate plausible (${a.kbps && a.kbps.toFixed(1)} kbit/s received, ${k.minKbps}–${k.maxKbps})`);
    check(Number.isFinite(a.latencyMs) && a.latencyMs > 0 && a.latencyMs < 2000, `${what}: end-to-end latency known (${a.latencyMs} ms, codec delay ${a.codecDelayMs} ms)`);
    check(a.statsSent >= SECONDS - 1, `${what}: sends stats (${a.statsSent})`);
    check(shown.startsWith(`${k.codec} · `) && /\d+ kbit\/s$/.test(shown), `${what}: health panel shows codec and bit rate (${shown})`);
    await page.evaluate(`document.getElementById("play").click()`);
    a = await page.waitFor((s) => s.state === "idle", 2000, "idle");
    check(a.state === "idle", `${what}: Stop returns to idle`);
  }
  if (page.cdp) {
    await damaged(page, { codec: "flac", query: "autoplay=1&codec=flac" });
    await damaged(page, { codec: "opus", query: "autoplay=1&decoder=wasm", what: "opus (wasm)" });
  } else console.log("  (damaged chunks: Chromium only)");
}

const decodeErrorsMetric = async (codec) => {
  const res = await fetch(new URL("/metrics", BASE));
  if (!res.ok) return null; // --no-metrics
  // Summed over the server's stations: the page plays whichever is the default.
  const series = new RegExp(`^auralis_client_decode_errors_total\\{station="[^"]*",codec="${codec}"\\} (\\d+)`, "gm");
  let total = 0;
  for (const m of (await res.text()).matchAll(series)) total += Number(m[1]);
  return total;
};

// How each damaged chunk is broken on arrival (b: its bytes; the payload starts at 56, the first
// packet after its u16 length at 58).
const DAMAGE = {
  // The first FLAC frame overwritten past its sync code: Chromium's decoder fails on it.
  flac: `const end = Math.min(b.length, 58 + (b[56] | (b[57] << 8)));
         for (let i = 60; i < end; i++) b[i] = (i * 37) & 0xff;`,
  // The first Opus packet made a code 3 packet of no frames: libopus refuses it (OPUS_INVALID_PACKET).
  opus: `b[58] = 0xff; b[59] = 0;`,
};

/** Every 20th chunk damaged on arrival: counted, reported to the server, played as silence. */
async function damaged(page, { codec, query, what = codec }) {
  await page.cdp("Page.enable");
  const { identifier } = await page.cdp("Page.addScriptToEvaluateOnNewDocument", {
    source: `(() => {
      const Native = WebSocket;
      let n = 0;
      window.__damaged = 0;
      window.WebSocket = class extends Native {
        set onmessage(f) {
          super.onmessage = (ev) => {
            if (ev.data instanceof ArrayBuffer && ++n % 20 === 10) {
              const b = new Uint8Array(ev.data);
              ${DAMAGE[codec]}
              window.__damaged++;
            }
            f(ev);
          };
        }
        get onmessage() { return super.onmessage; }
      };
    })();`,
  });
  const before = await decodeErrorsMetric(codec);
  const url = new URL(BASE);
  url.search = query;
  await page.navigate(url.href);
  let a = await page.waitFor((s) => s.state === "playing" && s.nonSilentFrames > 0, 8000, `damaged ${what} playing`);
  await sleep(SECONDS * 1000);
  a = await page.state();
  const hit = await page.evaluate("window.__damaged");
  console.log(`  damaged ${hit} ${what} chunks: decodeErrors=${a.decodeErrors} underruns=${a.underruns} (tab's ${a.tabUnderruns}) decoder=${a.decoder} note: ${a.note}`);
  check(a.state === "playing", `damaged ${what}: plays on (${a.state})`);
  check(hit > 0 && a.decodeErrors >= hit, `damaged ${what}: decode errors counted (${a.decodeErrors} for ${hit} damaged chunks)`);
  check(a.underruns - a.tabUnderruns === 0, `damaged ${what}: a lost chunk is silence, not an underrun (${a.underruns}, of which the tab's ${a.tabUnderruns})`);
  await sleep(1200); // the next stats report
  const after = await decodeErrorsMetric(codec);
  if (before === null || after === null) console.log("  (no /metrics: the server's count is not checked)");
  else check(after - before >= hit, `damaged ${what}: reported to the server (auralis_client_decode_errors_total +${after - before})`);
  await page.cdp("Page.removeScriptToEvaluateOnNewDocument", { identifier });
  await page.evaluate(`document.getElementById("play").click()`);
  // libopus logs each packet it refuses (from the decoder's Worker, as an error): those were asked for.
  if (codec === "opus") for (const e of page.errors()) if (/^libopus -\d+ /.test((e.params.entry && e.params.entry.text) || "")) expectedErrors.add(e);
}

async function token(page) {
  await page.waitFor((s) => s.state === "idle" || s.state === "playing", 3000, "loaded");
  await sleep(300);
  const hint = await page.evaluate(`document.getElementById("c-token-hint").textContent`);
  check(/required/.test(hint), `token hint (${hint})`);
  await page.evaluate(`sessionStorage.removeItem("auralis.controlToken"); document.getElementById("c-token").value = ""`);
  let text = await controlViaPanel(page, "c-intensity", "0.7");
  check(/needs a token/.test(text), `refusal without a token (${text})`);
  await page.evaluate(`(() => { const t = document.getElementById("c-token"); t.value = "wrong"; t.dispatchEvent(new Event("input")); })()`);
  text = await controlViaPanel(page, "c-intensity", "0.7");
  check(/token rejected/.test(text), `refusal with a wrong token (${text})`);
  await page.evaluate(`(() => { const t = document.getElementById("c-token"); t.value = ${JSON.stringify(TOKEN)}; t.dispatchEvent(new Event("input")); })()`);
  text = await controlViaPanel(page, "c-intensity", "0.7");
  check(/^intensity 0\.7: lands at bar/.test(text), `accepted with the token (${text})`);
  const stored = await page.evaluate(`sessionStorage.getItem("auralis.controlToken")`);
  check(stored === TOKEN, "token kept in sessionStorage");
  const shown = await page.evaluate(`document.getElementById("c-intensity").value`);
  check(shown === "0.7", `panel shows the acknowledged value (${shown})`);
}

async function remote(page) {
  await page.waitFor((s) => s.state === "idle" || s.state === "playing", 3000, "loaded");
  await sleep(300);
  const text = await controlViaPanel(page, "c-bpm", "100");
  check(/only from the server's machine unless a token is set/.test(text), `403 explained (${text})`);
  const bpm = await page.evaluate(`document.getElementById("c-bpm").value`);
  check(bpm !== "100", `panel reverts to the station's value (${bpm})`);
}

async function blocked(page) {
  const a = await page.waitFor((s) => s.state === "idle" && /autoplay/.test(s.note), 4000, "autoplay note");
  check(a.state === "idle" && /autoplay/.test(a.note), `blocked autoplay is explained (${a.state}: ${a.note})`);
}

const launch = BROWSER === "firefox" ? launchFirefox : launchChromium;
const page = await launch({ autoplay: SCENARIO !== "blocked" });
try {
  const url = new URL(BASE);
  url.search = SCENARIO === "play" || SCENARIO === "blocked" ? QUERY : "";
  await page.navigate(url.href);
  await { play, token, remote, blocked, codecs }[SCENARIO](page);
  const errors = page.errors().filter((e) => !expectedErrors.has(e));
  for (const e of errors) console.log("  page error: " + JSON.stringify(e.params).slice(0, 300));
  check(errors.length === 0, "no page errors");
} catch (e) {
  failures.push(String(e));
  console.log("FAIL " + (e.stack || e));
} finally {
  await page.close();
}
console.log(failures.length ? `${failures.length} failed` : "all checks passed");
process.exit(failures.length ? 1 : 0);
