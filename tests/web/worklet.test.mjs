// The playback processor (web/worklet.js), run in Node with a stand-in for the AudioWorklet scope.
import test from "node:test";
import assert from "node:assert/strict";
import { Ring, createRingStorage } from "../../web/ring.js";
import { loadWorklet } from "./worklet-scope.mjs";

// ---- AudioWorkletGlobalScope stand-in
const { name, Processor } = await loadWorklet();
assert.equal(name, "auralis-player");

const QUANTUM = 128;

function make({ rate = 48000, processorOptions = {} } = {}) {
  globalThis.sampleRate = rate;
  globalThis.currentFrame = 0;
  const p = new Processor({ processorOptions: { streamRate: 48000, startFrames: 7200, targetFrames: 7200, skipFrames: 48000, ...processorOptions } });
  p.out = { L: [], R: [] };
  return p;
}

const send = (p, msg) => p.port.onmessage({ data: msg });

function chunk(frames, f) {
  const a = new Float32Array(frames * 2);
  for (let i = 0; i < frames; i++) {
    const [l, r] = f(i);
    a[2 * i] = l;
    a[2 * i + 1] = r;
  }
  return a;
}

/** Runs `quanta` render quanta; returns the output of this call and keeps all of it in p.out. */
function run(p, quanta) {
  const L = [];
  const R = [];
  for (let q = 0; q < quanta; q++) {
    const out = [[new Float32Array(QUANTUM), new Float32Array(QUANTUM)]];
    assert.equal(p.process([], out), true);
    globalThis.currentFrame += QUANTUM;
    for (let i = 0; i < QUANTUM; i++) {
      L.push(out[0][0][i]);
      R.push(out[0][1][i]);
    }
  }
  for (let i = 0; i < L.length; i++) {
    p.out.L.push(L[i]);
    p.out.R.push(R[i]);
  }
  return { L, R };
}

function poll(p) {
  send(p, { type: "poll", id: 1 });
  return p.port.sent.at(-1);
}

const maxStep = (xs) => xs.reduce((m, x, i) => (i ? Math.max(m, Math.abs(x - xs[i - 1])) : 0), 0);
const sine = (hz, amp = 0.5, phase0 = 0) => (i) => {
  const v = amp * Math.sin(phase0 + (2 * Math.PI * hz * i) / 48000);
  return [v, -v];
};

test("stays silent until the prebuffer is full, then fades in without a click", () => {
  const p = make();
  send(p, { type: "chunk", samples: chunk(4800, () => [0.5, 0.5]) });
  let { L } = run(p, 20);
  assert.ok(L.every((x) => x === 0));
  assert.equal(poll(p).renderedFrames, 0);
  assert.equal(poll(p).playing, false);
  send(p, { type: "chunk", samples: chunk(4800, () => [0.5, 0.5]) });
  ({ L } = run(p, 10));
  const r = poll(p);
  assert.equal(r.playing, true);
  assert.equal(r.renderedFrames, 10 * QUANTUM);
  assert.ok(Math.abs(L[0]) < 0.01, `first sample ${L[0]}`);
  assert.ok(maxStep(L) <= 0.5 / 192 + 1e-6, `largest step ${maxStep(L)}`); // 4 ms fade at 48 kHz
  assert.ok(Math.abs(L[400] - 0.5) < 1e-6, "full level after the fade");
  assert.equal(r.firstSoundFrame, 20 * QUANTUM); // the first faded-in frame is already audible
  assert.ok(r.nonSilentFrames > 10 * QUANTUM - 5);
});

test("passes audio through bit for bit when the rates match", () => {
  const p = make();
  const f = sine(440);
  const input = chunk(9600, f);
  send(p, { type: "chunk", samples: input });
  const { L, R } = run(p, 60);
  // After the fade, output n is input frame n - 2 (the cubic window).
  for (let n = 300; n < 60 * QUANTUM; n++) {
    assert.equal(L[n], input[2 * (n - 2)], `frame ${n}`);
    assert.equal(R[n], input[2 * (n - 2) + 1]);
  }
});

test("resamples 48 kHz to 44.1 kHz with cubic interpolation", () => {
  const p = make({ rate: 44100 });
  const f = sine(1000);
  for (let k = 0; k < 10; k++) send(p, { type: "chunk", samples: chunk(4800, (i) => f(k * 4800 + i)) });
  const { L } = run(p, 300); // 0.87 s of output
  const seg = L.slice(1000, 1000 + 22050); // 0.5 s after the fade
  let crossings = 0;
  for (let i = 1; i < seg.length; i++) if (seg[i - 1] < 0 && seg[i] >= 0) crossings++;
  assert.ok(Math.abs(crossings - 500) <= 1, `${crossings} cycles in 0.5 s`);
  const peak = Math.max(...seg);
  assert.ok(Math.abs(peak - 0.5) < 0.002, `peak ${peak}`);
  // Smooth: the largest step is that of a 1 kHz sine at 44.1 kHz.
  assert.ok(maxStep(seg) < 0.5 * 2 * Math.PI * 1000 / 44100 * 1.01);
  const r = poll(p);
  const ratio = r.readTotal / (300 * QUANTUM);
  assert.ok(Math.abs(ratio - 48000 / 44100) < 0.001, `consumed ${ratio} input frames per output frame`);
});

test("an underrun fades out, is counted once, and playback resumes after rebuffering", () => {
  const p = make({ processorOptions: { startFrames: 4800 } });
  const f = sine(300);
  send(p, { type: "chunk", samples: chunk(4800, f) });
  run(p, 60); // 7680 frames: runs dry after 4800
  const r = poll(p);
  assert.equal(r.underruns, 1);
  assert.equal(r.playing, false);
  assert.ok(maxStep(p.out.L) < 0.5 * 2 * Math.PI * 300 / 48000 * 1.01 + 0.5 / 192, `step ${maxStep(p.out.L)}`);
  const rendered = r.renderedFrames;
  assert.ok(rendered < 4800 && rendered > 4600, `rendered ${rendered}`);
  run(p, 10);
  assert.equal(poll(p).renderedFrames, rendered, "no frames count while starved");
  assert.ok(p.out.L.slice(4800).every((x) => x === 0));
  send(p, { type: "chunk", samples: chunk(4800, (i) => f(4800 + i)) });
  const { L } = run(p, 10);
  assert.ok(poll(p).playing);
  assert.equal(poll(p).underruns, 1);
  assert.ok(Math.abs(L[0]) < 0.01, "fades back in");
});

test("running dry while the connection is down is an underrun, counted as the outage's", () => {
  const p = make({ processorOptions: { startFrames: 4800 } });
  send(p, { type: "chunk", samples: chunk(4800, sine(300)) });
  run(p, 10);
  send(p, { type: "config", live: false });
  run(p, 50);
  let r = poll(p);
  assert.equal(r.underruns, 1, "the listener hears the outage's silence");
  assert.equal(r.outageUnderruns, 1);
  assert.equal(r.playing, false);
  // Back on line: an underrun then is the stream's, not the outage's.
  send(p, { type: "config", live: true });
  send(p, { type: "chunk", samples: chunk(4800, sine(300)) });
  run(p, 60);
  r = poll(p);
  assert.equal(r.underruns, 2);
  assert.equal(r.outageUnderruns, 1);
});

test("a backlog is skipped to the live edge with a fade", () => {
  const p = make({ processorOptions: { startFrames: 4800, targetFrames: 4800, skipFrames: 24000 } });
  const f = sine(200);
  send(p, { type: "chunk", samples: chunk(4800, f) });
  run(p, 10); // playing
  assert.equal(poll(p).playing, true);
  for (let k = 1; k < 9; k++) send(p, { type: "chunk", samples: chunk(4800, (i) => f(k * 4800 + i)) }); // +800 ms at once
  run(p, 8);
  assert.equal(poll(p).skips, 0, "waits a moment for the rest of a burst");
  run(p, 12);
  const r = poll(p);
  assert.equal(r.skips, 1);
  assert.ok(r.avail <= 4800 && r.avail > 4800 - 12 * QUANTUM, `depth after the skip ${r.avail}`);
  assert.ok(maxStep(p.out.L) < 0.5 * 2 * Math.PI * 200 / 48000 + 0.5 / 192 * 1.5, `step ${maxStep(p.out.L)}`);
  assert.equal(r.underruns, 0);
});

test("a burst that arrives while starved starts at the live edge", () => {
  const p = make({ processorOptions: { startFrames: 4800, targetFrames: 4800, skipFrames: 24000 } });
  for (let k = 0; k < 6; k++) send(p, { type: "chunk", samples: chunk(4800, () => [0.2, 0.2]) });
  run(p, 3);
  // The rest of the burst comes in a moment later: the skip waits for it.
  for (let k = 6; k < 8; k++) send(p, { type: "chunk", samples: chunk(4800, () => [0.2, 0.2]) });
  const { L } = run(p, 12);
  const r = poll(p);
  assert.equal(r.skips, 1);
  assert.equal(r.readTotal + r.avail, 8 * 4800, "only the oldest audio was dropped");
  assert.ok(r.avail <= 4800, `depth ${r.avail}`);
  assert.ok(p.out.L.slice(0, 3 * QUANTUM).every((x) => x === 0), "silent while the burst arrives");
  assert.ok(maxStep(L) <= 0.2 / 192 + 1e-6, "fades in");
});

test("flush drops the old station's audio and fades into the new one", () => {
  const p = make({ processorOptions: { startFrames: 4800 } });
  send(p, { type: "chunk", samples: chunk(9600, () => [0.5, 0.5]) });
  run(p, 10);
  send(p, { type: "flush", until: 9600 });
  send(p, { type: "chunk", samples: chunk(9600, () => [-0.25, -0.25]) });
  const { L } = run(p, 20);
  assert.ok(maxStep(L) <= 0.5 / 192 + 1e-6, `step ${maxStep(L)}`);
  const after = L.slice(500);
  assert.ok(after.every((x) => Math.abs(x + 0.25) < 1e-6), "only the new station after the fades");
  assert.ok(poll(p).readTotal >= 9600);
  assert.equal(poll(p).underruns, 0);
});

test("the playback rate follows the controller in small steps", () => {
  const p = make();
  send(p, { type: "chunk", samples: chunk(48000, sine(100)) });
  send(p, { type: "config", rate: 1.004 });
  run(p, 1);
  assert.ok(Math.abs(poll(p).rate - 1) <= 2.1e-6, "slewed, not stepped");
  run(p, 3000);
  assert.ok(Math.abs(poll(p).rate - 1.004) < 1e-9);
});

test("reports mean depth and counters on request", () => {
  const p = make({ processorOptions: { startFrames: 4800 } });
  send(p, { type: "chunk", samples: chunk(9600, () => [0.1, 0.1]) });
  run(p, 10);
  const r = poll(p);
  for (const k of ["readTotal", "depth", "avail", "playing", "rate", "underruns", "skips", "renderedFrames", "nonSilentFrames", "firstSoundFrame", "frame"]) {
    assert.ok(k in r, k);
  }
  assert.equal(r.type, "report");
  assert.equal(r.id, 1);
  assert.ok(r.depth > r.avail && r.depth < 9600, `mean depth ${r.depth}`);
  assert.equal(r.readTotal + r.avail, 9600);
});

test("the private ring makes room for new audio by dropping the oldest", () => {
  const p = make({ processorOptions: { capacity: 8192, startFrames: 100000 } });
  send(p, { type: "chunk", samples: chunk(6000, () => [0.1, 0.1]) });
  send(p, { type: "chunk", samples: chunk(6000, () => [0.2, 0.2]) });
  const r = poll(p);
  assert.equal(r.overflowFrames, 6000 + 6000 - 8192);
  assert.equal(r.readTotal, 6000 + 6000 - 8192);
});

test("plays from a shared ring written by another thread", () => {
  const storage = createRingStorage(16384, true);
  const producer = new Ring(storage);
  const p = make({ processorOptions: { shared: { samples: storage.samples, state: storage.state }, startFrames: 4800 } });
  producer.write(chunk(4800, () => [0.3, 0.3]));
  run(p, 5);
  assert.equal(poll(p).playing, true);
  producer.fadeTail(192, 512);
  producer.write(chunk(4800, (i) => (i < 192 ? [(-0.3 * i) / 192, (-0.3 * i) / 192] : [-0.3, -0.3])));
  run(p, 60);
  assert.ok(maxStep(p.out.L) <= 0.3 / 192 * 1.01 + 1e-6, `step ${maxStep(p.out.L)}`);
  assert.equal(producer.readIndex(), poll(p).readTotal);
});

test("process() allocates nothing", () => {
  const src = Processor.prototype.process.toString().replace(/\/\/.*$/gm, "");
  for (const bad of ["new ", "subarray(", "slice(", "postMessage", "=> ", "[...", "concat(", "Array("]) {
    assert.ok(!src.includes(bad), `process() contains ${bad}`);
  }
});
