// Adaptive jitter buffer policy and drift correction (web/jitter.js).
import test from "node:test";
import assert from "node:assert/strict";
import { JitterPolicy, RateController, backlogLimitMs, POLICY_DEFAULTS, RATE_DEFAULTS } from "../../web/jitter.js";

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Feeds `seconds` of 100 ms chunks that arrive `delay(i)` ms after their media time; updates 5x a second. */
function feed(policy, { from = 0, seconds, delay = () => 5 }) {
  const chunks = seconds * 10;
  const events = [];
  for (let i = 0; i < chunks; i++) {
    const media = 1_763_900_000_000 + (from / 100 + i) * 100; // position / sample rate
    events.push([from + i * 100 + delay(i), "arrive", media]);
  }
  for (let t = from; t < from + seconds * 1000; t += 200) events.push([t, "update"]);
  events.sort((a, b) => a[0] - b[0]);
  for (const [t, kind, media] of events) {
    if (kind === "arrive") policy.onArrival(t, media);
    else policy.update(t);
  }
  return from + seconds * 1000;
}

test("starts with a small prebuffer", () => {
  const p = new JitterPolicy();
  assert.ok(p.targetMs >= 100 && p.targetMs <= 150, `initial target ${p.targetMs}`);
  assert.equal(p.targetMs, POLICY_DEFAULTS.initialTargetMs);
});

test("the start counts as growth: no shrinking while playback settles", () => {
  const p = new JitterPolicy();
  feed(p, { seconds: 9 });
  assert.equal(p.targetMs, POLICY_DEFAULTS.initialTargetMs);
});

test("a steady network keeps jitter near zero and the target small", () => {
  const p = new JitterPolicy();
  const end = feed(p, { seconds: 60 });
  assert.ok(p.jitterMs < 0.01, `jitter ${p.jitterMs}`);
  assert.ok(p.targetMs < POLICY_DEFAULTS.initialTargetMs, "shrank after a calm minute");
  assert.ok(p.targetMs >= p.desiredMs());
  feed(p, { from: end, seconds: 60 });
  assert.equal(p.targetMs, 110); // half a chunk plus the safety margin
});

test("grows at once when inter-arrival jitter rises", () => {
  const p = new JitterPolicy();
  let t = feed(p, { seconds: 20 });
  const calm = p.targetMs;
  const r = rng(7);
  t = feed(p, { from: t, seconds: 3, delay: () => 5 + r() * 120 });
  assert.ok(p.jitterMs > 20, `jitter ${p.jitterMs}`);
  assert.ok(p.targetMs > calm + 30, `target ${calm} -> ${p.targetMs} within 3 s`);
  feed(p, { from: t, seconds: 20, delay: () => 5 + r() * 120 });
  assert.ok(p.targetMs > 50 + 110, `target ${p.targetMs} covers nearly all of the spread`);
  assert.ok(p.targetMs <= POLICY_DEFAULTS.maxTargetMs);
});

test("frequent late arrivals raise the target above their lateness", () => {
  const p = new JitterPolicy();
  const t = feed(p, { seconds: 30 });
  const before = p.targetMs;
  // Every fifth chunk is held up 150 ms (and the next one behind it by 50 ms).
  feed(p, { from: t, seconds: 20, delay: (i) => (i % 5 === 0 ? 155 : i % 5 === 1 ? 55 : 5) });
  assert.ok(p.lateMs >= 140, `lateness quantile ${p.lateMs}`);
  assert.ok(p.targetMs >= 50 + 150, `target ${before} -> ${p.targetMs}`);
});

test("a single stall does not become the new normal", () => {
  const p = new JitterPolicy();
  const t = feed(p, { seconds: 30 });
  const before = p.targetMs;
  // One 700 ms stall, then the queued chunks in a burst. The underrun it causes is reported
  // separately (onUnderrun); the arrival statistics alone should not inflate the target.
  let end = feed(p, { from: t, seconds: 3, delay: (i) => (i >= 2 && i < 9 ? 705 - (i - 2) * 100 : 5) });
  assert.ok(p.targetMs < 300, `target ${before} -> ${p.targetMs}`); // not the 750 ms the stall lasted
  assert.ok(p.lateMs < 20, `lateness quantile ${p.lateMs}`);
  end = feed(p, { from: end, seconds: 150 });
  assert.ok(p.targetMs < before + 20, `two calm minutes later ${p.targetMs}`);
});

test("underruns grow the target immediately; it shrinks only slowly once calm", () => {
  const p = new JitterPolicy();
  let t = feed(p, { seconds: 120 });
  const base = p.targetMs;
  p.onUnderrun(t);
  assert.equal(p.targetMs, base + POLICY_DEFAULTS.underrunStepMs);
  p.onUnderrun(t + 10);
  assert.equal(p.targetMs, base + 2 * POLICY_DEFAULTS.underrunStepMs);
  const peak = p.targetMs;
  t = feed(p, { from: t + 10, seconds: 8 });
  assert.equal(p.targetMs, peak, "no shrinking during the calm period");
  const before = p.targetMs;
  t = feed(p, { from: t, seconds: 10 });
  const shrunk = before - p.targetMs;
  const bound = (POLICY_DEFAULTS.shrinkMsPerS + POLICY_DEFAULTS.shrinkPerS * (before - base)) * 10;
  assert.ok(shrunk > 0 && shrunk <= bound + 1e-9, `shrank ${shrunk} ms in 10 s`);
  feed(p, { from: t, seconds: 120 });
  assert.equal(p.targetMs, base, "back to the calm target in the end");
});

test("a target grown by a rough network comes back down within minutes once calm", () => {
  const p = new JitterPolicy();
  let t = feed(p, { seconds: 30 });
  t = feed(p, { from: t, seconds: 20, delay: (i) => (i % 4 === 0 ? 505 : 5) });
  const grown = p.targetMs;
  assert.ok(grown > 600, `grown to ${grown}`);
  t = feed(p, { from: t, seconds: 60 });
  assert.ok(p.targetMs < grown - 200, `after a calm minute ${p.targetMs}`);
  feed(p, { from: t, seconds: 300 });
  assert.ok(p.targetMs < 130, `after six minutes ${p.targetMs}`);
});

test("the target stays within its bounds", () => {
  const p = new JitterPolicy({ maxTargetMs: 600 });
  for (let i = 0; i < 100; i++) p.onUnderrun(i);
  assert.equal(p.targetMs, 600);
  const q = new JitterPolicy({ minTargetMs: 90, initialTargetMs: 20, chunkMs: 20, safetyMs: 10 });
  assert.equal(q.targetMs, 90);
  feed(q, { seconds: 200 });
  assert.equal(q.targetMs, 90);
});

test("the backlog limit lies well above the target", () => {
  assert.ok(backlogLimitMs(150) >= 150 + 300);
  assert.ok(backlogLimitMs(1000) >= 1500);
  assert.ok(backlogLimitMs(150) <= 150 + 600, "a stall's backlog is skipped, not drained for minutes");
});

test("a new stream does not count the reconnect as jitter", () => {
  const p = new JitterPolicy();
  feed(p, { seconds: 10 });
  const j = p.jitterMs;
  p.resetStream();
  p.onArrival(1e6, 1_763_900_000_000); // a transit a thousand seconds different
  assert.equal(p.jitterMs, j);
});

/**
 * Simulated buffer: the server sends 1000 ms of audio per second; the sound card, whose clock is
 * off by `driftPpm`, plays rate x 1000 ms per second of its own. Returns the trace.
 */
function simulate({ driftPpm, startDepthMs, targetMs = 150, seconds = 600, dt = 200, ctl = new RateController() }) {
  let depth = startDepthMs;
  const trace = [];
  for (let t = 0; t < seconds * 1000; t += dt) {
    const rate = ctl.update(depth, targetMs, dt);
    depth += dt - dt * rate * (1 - driftPpm / 1e6);
    trace.push({ t, depth, ppm: ctl.ppm, drift: ctl.driftPpm });
  }
  return { trace, ctl };
}

test("rate correction steers the depth to the target and finds the clock drift", () => {
  for (const driftPpm of [-150, -40, 0, 60, 250]) {
    const { trace, ctl } = simulate({ driftPpm, startDepthMs: 150 });
    const last = trace.slice(-100);
    for (const s of last) assert.ok(Math.abs(s.depth - 150) < 3, `drift ${driftPpm}: depth ${s.depth}`);
    assert.ok(Math.abs(ctl.driftPpm - driftPpm) < 10 + Math.abs(driftPpm) * 0.05, `drift ${driftPpm}: estimated ${ctl.driftPpm}`);
  }
});

test("rate correction pulls a buffer that is too deep back to the target", () => {
  const { trace } = simulate({ driftPpm: 0, startDepthMs: 400, seconds: 300 });
  const at = (s) => trace[Math.floor((s * 1000) / 200)].depth;
  assert.ok(at(60) < 250, `after 60 s: ${at(60)}`);
  assert.ok(Math.abs(at(299) - 150) < 5, `after 300 s: ${at(299)}`);
});

test("rate correction is bounded and slewed: no pitch jumps", () => {
  const ctl = new RateController();
  let prev = 0;
  const dt = 200;
  const maxStep = (RATE_DEFAULTS.slewPpmPerS * dt) / 1000;
  // Wild inputs: depth jumping between extremes every update.
  const r = rng(3);
  for (let i = 0; i < 2000; i++) {
    const rate = ctl.update(r() < 0.5 ? 0 : 5000, 150, dt);
    const ppm = (rate - 1) * 1e6;
    assert.ok(Math.abs(ppm) <= RATE_DEFAULTS.maxPpm + 1e-6, `ppm ${ppm}`);
    assert.ok(Math.abs(ppm - prev) <= maxStep + 1e-6, `step ${ppm - prev}`);
    prev = ppm;
  }
  assert.ok(Math.abs(ctl.driftPpm) <= RATE_DEFAULTS.maxIntegralPpm);
  // A huge error saturates at ±0.5 %, reached gradually.
  const s = new RateController();
  const rates = [];
  for (let i = 0; i < 50; i++) rates.push(s.update(2000, 150, dt));
  assert.ok(rates[0] - 1 <= maxStep / 1e6 + 1e-12);
  assert.ok(Math.abs(rates[49] - 1.005) < 1e-9, `rate ${rates[49]}`);
});

test("start-up transients do not pollute the drift estimate", () => {
  // No drift at all, but playback starts 15 ms above the target.
  const { trace, ctl } = simulate({ driftPpm: 0, startDepthMs: 165, seconds: 600 });
  const worst = Math.max(...trace.map((s) => Math.abs(s.drift)));
  assert.ok(worst < 80, `drift estimate strayed to ${worst} ppm`);
  assert.ok(Math.abs(ctl.driftPpm) < 5, `settled at ${ctl.driftPpm} ppm`);
  // A new target far from the depth moves the rate (P) but hardly the drift estimate (I).
  const moved = simulate({ driftPpm: 0, startDepthMs: 150, targetMs: 400, seconds: 20 });
  assert.ok(Math.abs(moved.ctl.driftPpm) <= 0.25 * 5 * 20 + 1e-9);
});

test("resync forgets the depth history but keeps the drift estimate", () => {
  const { ctl } = simulate({ driftPpm: 80, startDepthMs: 150 });
  const drift = ctl.driftPpm;
  ctl.resync();
  assert.equal(ctl.depthMs, null);
  assert.equal(ctl.driftPpm, drift);
  ctl.reset();
  assert.equal(ctl.driftPpm, 0);
  assert.equal(ctl.rate, 1);
});

test("a decoded stream keeps headroom for its decoder, and the target settles above PCM's", () => {
  const pcm = new JitterPolicy();
  const opus = new JitterPolicy();
  opus.setDecodeMs(40);
  assert.equal(opus.targetMs, POLICY_DEFAULTS.initialTargetMs + 40, "the prebuffer grows at once");
  opus.setDecodeMs(40); // a second welcome of the same codec changes nothing
  assert.equal(opus.targetMs, POLICY_DEFAULTS.initialTargetMs + 40);
  // Minutes of a perfect network: both shrink toward what they need, Opus stays 40 ms above.
  const end = feed(pcm, { seconds: 300 });
  feed(opus, { seconds: 300 });
  assert.ok(Math.abs(opus.targetMs - pcm.targetMs - 40) < 1, `${opus.targetMs} vs ${pcm.targetMs}`);
  assert.equal(opus.desiredMs(), pcm.desiredMs() + 40);
  // Switching back to PCM drops the allowance from what the target aims at.
  opus.setDecodeMs(0);
  assert.equal(opus.desiredMs(), pcm.desiredMs());
  opus.setDecodeMs(Number.NaN); // ignored
  assert.equal(opus.desiredMs(), pcm.desiredMs());
  assert.ok(end > 0);
});
