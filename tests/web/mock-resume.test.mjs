// The stand-in server's resume (tests/web/mock-server.mjs), which the browser check relies on:
// epoch and window in welcome, every outcome, the resumed flag, and a restart.
import test from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { decodeFrame } from "../../web/protocol.js";
import { connect } from "./ws-client.mjs";
import { sleep } from "./harness.mjs";

const MOCK = fileURLToPath(new URL("./mock-server.mjs", import.meta.url));
const WINDOW = 30;

const server = spawn(process.execPath, [MOCK, "--port", "0", "--resume-window", String(WINDOW)], { stdio: ["ignore", "pipe", "inherit"] });
const port = await new Promise((resolve, reject) => {
  let out = "";
  server.stdout.on("data", (d) => {
    out += d;
    const m = /127\.0\.0\.1:(\d+)\//.exec(out);
    if (m) resolve(Number(m[1]));
  });
  server.on("exit", (code) => reject(new Error(`the mock server exited (${code})`)));
});
test.after(() => server.kill());

const debug = (what) => fetch(`http://127.0.0.1:${port}/debug/${what}`).then((r) => r.json());

/** Opens a stream; returns its welcome, the messages after it up to the first live frame, and the socket. */
async function open(query) {
  const ws = await connect(port, `/ws/default?${query}`);
  const welcome = await ws.next();
  assert.equal(welcome.type, "welcome");
  const before = []; // resumed frames and warnings, in order
  let live = null;
  while (!live) {
    const m = await ws.next();
    if (Buffer.isBuffer(m)) {
      const h = decodeFrame(m);
      if (h.resumed) before.push(h);
      else live = h;
    } else before.push(m);
  }
  return { ws, welcome, before, live };
}

test("welcome announces the epoch and the resume window; a fresh stream has no resume", async () => {
  const { ws, welcome, before, live } = await open("codec=pcm_s16le");
  ws.close();
  assert.match(welcome.epoch, /^[0-9a-f]{16}$/);
  assert.equal(welcome.resume_window_chunks, WINDOW);
  assert.equal(welcome.resume, undefined);
  assert.deepEqual(before, []);
  assert.equal(live.resumed, false);
  // Sequences on the Unix-epoch grid: position / frames per chunk, in chunks of 100 ms.
  assert.ok(Math.abs(live.sequence - Date.now() / 100) < 20, `sequence ${live.sequence}`);
  assert.equal(live.position, live.sequence * live.frames);
});

test("a resume sends the missed chunks flagged, oldest first, then the live stream without a gap", async () => {
  const first = await open("codec=pcm_s16le");
  first.ws.close();
  const from = first.live.sequence + 1;
  await sleep(450);
  const { ws, welcome, before, live } = await open(`codec=pcm_s16le&resume_from=${from}&epoch=${first.welcome.epoch}`);
  const next = decodeFrame(await ws.next());
  ws.close();
  assert.equal(welcome.resume.outcome, "resumed");
  assert.equal(welcome.resume.from, from);
  assert.ok(welcome.resume.chunks >= 3, `${welcome.resume.chunks} chunks`);
  assert.equal(before.length, welcome.resume.chunks);
  before.forEach((h, i) => assert.equal(h.sequence, from + i));
  assert.equal(live.sequence, from + welcome.resume.chunks);
  assert.equal(next.sequence, live.sequence + 1);
  assert.equal(next.resumed, false);
  const d = await debug("stats");
  assert.ok(d.resumes.resumed >= 1);
  assert.deepEqual(Object.keys(d.queries.at(-1)).sort(), ["codec", "epoch", "resume_from"]);
});

test("outcomes the server cannot serve: a warning, then the live edge", async () => {
  const { ws, welcome, live } = await open("codec=pcm_s16le");
  ws.close();
  const epoch = welcome.epoch;
  await debug("resume-limit?n=1");
  const cases = [
    ["rate_limited", `resume_from=${live.sequence}&epoch=${epoch}`],
    ["outside_window", `resume_from=${live.sequence - WINDOW - 10}&epoch=${epoch}`],
    ["future", `resume_from=${live.sequence + 100}&epoch=${epoch}`],
    ["epoch_changed", `resume_from=${live.sequence}&epoch=0000000000000000`],
  ];
  for (const [outcome, query] of cases) {
    const r = await open(`codec=pcm_s16le&${query}`);
    r.ws.close();
    assert.equal(r.welcome.resume.outcome, outcome, query);
    assert.equal(r.welcome.resume.chunks, 0);
    assert.equal(r.before.length, 1, "only the warning before the live edge");
    assert.deepEqual([r.before[0].type, r.before[0].code], ["warning", `resume_${outcome}`]);
    assert.equal(r.live.resumed, false);
    assert.equal(r.live.discontinuity, true, "marked as a skip");
    assert.ok(r.live.sequence >= live.sequence);
  }
  // No epoch at all: the history it names is not this one.
  const bare = await open(`codec=pcm_s16le&resume_from=${live.sequence}`);
  bare.ws.close();
  assert.equal(bare.welcome.resume.outcome, "epoch_changed");
  // Not a sequence: refused before the upgrade.
  await assert.rejects(connect(port, "/ws/default?resume_from=soon"), /HTTP 400/);
});

test("a restart: streams close with 1001 and are refused meanwhile; the sequences and the epoch go on", async () => {
  const first = await open("codec=pcm_s16le");
  await debug("restart?ms=400");
  let last = first.live.sequence;
  let m;
  for (m = await first.ws.next(); Buffer.isBuffer(m); m = await first.ws.next()) last = decodeFrame(m).sequence;
  assert.deepEqual(m, { close: 1001 });
  await assert.rejects(connect(port, "/ws/default"), "refused while restarting");
  await sleep(500);
  const from = last + 1;
  const again = await open(`codec=pcm_s16le&resume_from=${from}&epoch=${first.welcome.epoch}`);
  again.ws.close();
  assert.equal(again.welcome.epoch, first.welcome.epoch);
  assert.equal(again.welcome.resume.outcome, "resumed");
  assert.equal(again.before[0].sequence, from);
  assert.ok(again.welcome.resume.chunks >= 4, `${again.welcome.resume.chunks} chunks across the restart`);
  // A restart that lost the station's state: a new epoch, and the resume is refused.
  await debug("restart?ms=50&forget=1");
  await sleep(100);
  const lost = await open(`codec=pcm_s16le&resume_from=${again.live.sequence + 1}&epoch=${first.welcome.epoch}`);
  lost.ws.close();
  assert.notEqual(lost.welcome.epoch, first.welcome.epoch);
  assert.equal(lost.welcome.resume.outcome, "epoch_changed");
});
