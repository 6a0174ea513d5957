// Resuming after a drop (web/resume.js), the catch-up that follows (CatchUp in web/jitter.js), the
// splice it leaves (ring.js and the worklet), and the health panel's stale figures (web/health.js).
import test from "node:test";
import assert from "node:assert/strict";
import {
  ResumeTracker, EncoderWatch, streamQuery, resumeNote, renderedAgain, epochOf, resumeRetryCapMs, RESUME_OUTCOMES, REWIND_CHUNKS,
} from "../../web/resume.js";
import { CatchUp, JitterPolicy, backlogLimitMs } from "../../web/jitter.js";
import { Ring, createRingStorage, fadeIn } from "../../web/ring.js";
import { healthView, ageText, NETWORK_CELLS } from "../../web/health.js";
import { encodeFrame, decodeFrame, FLAG_RESUMED, FLAG_DISCONTINUITY, FLAG_UNDERRUN_FILL } from "../../web/protocol.js";
import { loadWorklet } from "./worklet-scope.mjs";

const EPOCH = "0123456789abcdef";

// ---- the flag and the URL

test("the resumed flag is bit 2, apart from the other flags", () => {
  assert.equal(FLAG_RESUMED, 4);
  const frame = (flags) => decodeFrame(encodeFrame({ frames: 4, flags, sequence: 9, position: 36 }, new Float32Array(8)));
  const r = frame(FLAG_RESUMED);
  assert.deepEqual([r.resumed, r.discontinuity, r.underrunFill], [true, false, false]);
  const all = frame(FLAG_RESUMED | FLAG_DISCONTINUITY | FLAG_UNDERRUN_FILL);
  assert.deepEqual([all.resumed, all.discontinuity, all.underrunFill], [true, true, true]);
  assert.equal(frame(FLAG_DISCONTINUITY).resumed, false);
});

test("the reconnect URL asks for the sequence after the last one received, keeping the codec and token", () => {
  const t = new ResumeTracker();
  t.onWelcome({ type: "welcome", epoch: EPOCH, resume_window_chunks: 600 });
  for (let s = 17_639_000_000; s <= 17_639_000_041; s++) t.onSequence(s);
  const resume = t.request();
  assert.deepEqual(resume, { from: 17_639_000_042, epoch: EPOCH });
  const q = new URLSearchParams(streamQuery({ token: "a b&c", codec: "opus", resume }));
  assert.deepEqual(Object.fromEntries(q), { token: "a b&c", codec: "opus", resume_from: "17639000042", epoch: EPOCH });
  // A fresh Play or a station switch asks for nothing but the codec.
  assert.equal(streamQuery({ codec: "pcm_s16le" }), "codec=pcm_s16le");
  assert.equal(streamQuery({}), "");
  // Other parameters of a base query are kept.
  assert.deepEqual(Object.fromEntries(new URLSearchParams(streamQuery({ base: "station=night", codec: "flac" }))), { station: "night", codec: "flac" });
});

test("no resume without a sequence or an epoch, and only a well-formed epoch counts", () => {
  const t = new ResumeTracker();
  assert.equal(t.request(), null, "nothing received yet");
  t.onSequence(5);
  assert.equal(t.request(), null, "a server that announces no epoch does not resume");
  for (const bad of ["0123456789ABCDEF", "0123", 12345, null, "0123456789abcdeg"]) {
    assert.equal(epochOf({ epoch: bad }), null, String(bad));
    t.onWelcome({ epoch: bad });
    assert.equal(t.epoch, null);
  }
  t.onWelcome({ epoch: EPOCH });
  t.onWelcome({ epoch: "nonsense" }); // keeps the last good one
  assert.deepEqual(t.request(), { from: 6, epoch: EPOCH });
  t.onWelcome({ epoch: "fedcba9876543210" }); // the latest welcome's epoch is the one asked with
  assert.equal(t.request().epoch, "fedcba9876543210");
});

test("while resuming, reconnect attempts stay well inside the resume window", () => {
  assert.equal(resumeRetryCapMs(8000), 2000, "the server's default window: every 2 s at most");
  assert.equal(resumeRetryCapMs(2000), 1000, "a short window still lets the backoff reach 1 s");
  assert.equal(resumeRetryCapMs(60000), 5000, "never less often than without a resume");
  assert.equal(resumeRetryCapMs(null), 5000, "no window announced: the usual backoff");
});

// ---- counting what was never received

const feed = (t, from, to, opts) => {
  for (let s = from; s <= to; s++) t.onSequence(s, opts);
};

test("a resume that succeeds leaves no missing sequence", () => {
  const t = new ResumeTracker();
  feed(t, 1000, 1049);
  // Dropped; the reconnect resumes at 1050, the missed chunks come flagged, then the live stream.
  feed(t, 1050, 1082, { resumed: true });
  feed(t, 1083, 1100);
  assert.equal(t.missing, 0);
  assert.equal(t.resumed, 33);
  assert.equal(t.received, 101);
});

test("sequences skipped by a resume the server could not serve count as missing", () => {
  const t = new ResumeTracker();
  feed(t, 1000, 1049);
  // outside_window: the stream goes on from the live edge, 40 chunks later.
  assert.equal(t.onSequence(1090), 40);
  feed(t, 1091, 1095);
  assert.equal(t.missing, 40);
  // A lost chunk and a flagged skip count too: neither was received.
  t.onSequence(1097);
  t.onSequence(1103);
  assert.equal(t.missing, 40 + 1 + 5);
});

test("repeats are neither new nor missing; a timeline far behind starts the count again", () => {
  const t = new ResumeTracker();
  feed(t, 500, 510);
  feed(t, 508, 512); // overlap after a plain reconnect
  assert.equal(t.missing, 0);
  assert.equal(t.last, 512);
  // A server whose clock is behind (the `future` outcome): its live edge is well before ours.
  t.onSequence(512 - REWIND_CHUNKS - 30);
  assert.equal(t.last, 512 - REWIND_CHUNKS - 30);
  t.onSequence(512 - REWIND_CHUNKS - 28);
  assert.equal(t.missing, 1);
});

test("a station switch forgets the position and the epoch, not the count", () => {
  const t = new ResumeTracker();
  t.onWelcome({ epoch: EPOCH });
  feed(t, 10, 20);
  t.onSequence(25);
  assert.equal(t.missing, 4);
  t.forget();
  assert.equal(t.request(), null, "a switch does not resume");
  t.onSequence(9_000_000);
  assert.equal(t.missing, 4, "the new station's first sequence is not a gap");
});

test("resume outcomes are counted from the connection's first welcome", () => {
  const t = new ResumeTracker();
  assert.equal(t.onWelcome({ epoch: EPOCH }), null);
  const a = t.onWelcome({ epoch: EPOCH, resume: { outcome: "resumed", from: 42, chunks: 33 } });
  assert.deepEqual(a, { outcome: "resumed", from: 42, chunks: 33 });
  // A welcome in reply to hello on the same connection may repeat it: not a second resume.
  assert.equal(t.onWelcome({ epoch: EPOCH, resume: { outcome: "resumed", from: 42, chunks: 33 } }, { resume: false }), null);
  for (const outcome of RESUME_OUTCOMES.slice(1)) t.onWelcome({ resume: { outcome, from: 50, chunks: 0 } });
  t.onWelcome({ resume: { outcome: "outside_window", from: 60 } });
  t.onWelcome({ resume: { outcome: "resumed", from: 70, chunks: -3 } });
  t.onWelcome({ resume: "resumed" }); // malformed: ignored
  assert.deepEqual(t.outcomes, { resumed: 2, outside_window: 2, future: 1, epoch_changed: 1, rate_limited: 1 });
  assert.deepEqual(t.lastResume, { outcome: "resumed", from: 70, chunks: 0 });
});

test("the status line explains every outcome", () => {
  assert.equal(resumeNote({ outcome: "resumed", from: 1, chunks: 33 }), "resumed: 33 missed chunks (3.3 s) sent again");
  assert.equal(resumeNote({ outcome: "resumed", from: 1, chunks: 0 }), "resumed: nothing was missed");
  for (const outcome of RESUME_OUTCOMES.slice(1)) {
    assert.match(resumeNote({ outcome, from: 1, chunks: 0 }), /^could not resume: .*; rejoined live$/, outcome);
  }
  assert.match(resumeNote({ outcome: "something_new" }), /could not resume \(something_new\)/);
  assert.equal(resumeNote(null), "");
});

test("an Opus stream changes encoder where a restart's chunks rendered again begin and end", () => {
  const w = new EncoderWatch();
  const live = (seq) => ({ sequence: seq, resumed: false, underrunFill: false, renderedUnixNs: 1000n + BigInt(seq), sentUnixNs: 1300n + BigInt(seq) });
  const original = (seq) => ({ ...live(seq), resumed: true }); // retained by the same process
  const again = (seq) => ({ sequence: seq, resumed: true, underrunFill: false, renderedUnixNs: 5000n, sentUnixNs: 5000n });
  const fill = (seq) => ({ ...again(seq), underrunFill: true });
  assert.equal(renderedAgain(again(1)), true);
  assert.equal(renderedAgain(live(1)), false);
  assert.equal(renderedAgain(fill(1)), false);
  assert.equal(renderedAgain({ ...again(1), resumed: false }), false, "only resumed chunks are rendered again");
  // A drop within one process: the resumed chunks are the ones the live listeners got.
  const seams = [];
  const feedIn = (frames) => frames.forEach((h) => w.onFrame(h) && seams.push(h.sequence));
  feedIn([live(1), live(2), original(3), original(4), live(5)]);
  assert.deepEqual(seams, []);
  // A restart: rendered again from 6, the new process's live encoder from 9 (still in the burst).
  feedIn([again(6), again(7), fill(8), original(9), original(10), live(11)]);
  assert.deepEqual(seams, [6, 9]);
  // A station switch starts afresh.
  w.forget();
  assert.equal(w.onFrame(again(100)), false);
});

// ---- catch-up

/**
 * A model of the player's buffer at 5 ms steps: 100 ms chunks every 100 ms, written through
 * CatchUp; a consumer that plays in real time, stops (an underrun) when it runs dry, and starts
 * again once `queued` reaches the target, skipping a backlog beyond backlogLimitMs as the worklet
 * does; and the worklet's report of the mean depth, every 100 ms. The connection drops at `dropAt` for `outageMs`; the reconnect resumes with every chunk
 * missed, arriving `burstMs` apart. Returns the depth trace.
 */
function simulate({ targetMs = 190, outageMs, dropAt = 5000, burstMs = 0, until = dropAt + outageMs + 8000 }) {
  const step = 5;
  const c = new CatchUp();
  const t = new ResumeTracker();
  // Playing, at the top of the sawtooth around the target: the first chunk comes in 100 ms.
  let queued = targetMs + 50;
  let playing = true;
  let underruns = 0;
  let seq = 0;
  let mediaDue = 0; // sequences the server has released
  const trace = [];
  let meanMs = queued; // as last reported
  let reported = playing; // likewise
  let sum = 0;
  let n = 0;
  let over = 0;
  let skips = 0;
  const write = (now, resumed) => {
    t.onSequence(seq++, { resumed });
    if (!c.drop(now, { queuedMs: queued, meanMs, chunkMs: 100, targetMs, playing: reported, resumed })) queued += 100;
  };
  let burst = [];
  let connected = true;
  for (let now = 0; now <= until; now += step) {
    const released = Math.floor(now / 100);
    if (now === dropAt) connected = false;
    if (!connected && now >= dropAt + outageMs) {
      connected = true;
      const missed = released - seq;
      c.start(now, missed);
      burst = Array.from({ length: missed }, (_, i) => now + i * burstMs);
      mediaDue = released;
    }
    if (connected) {
      while (burst.length && burst[0] <= now) {
        burst.shift();
        write(now, true);
      }
      if (burst.length === 0) {
        while (mediaDue < released) {
          mediaDue++;
          if (seq < mediaDue) write(now, false);
        }
      }
    }
    over = queued > backlogLimitMs(targetMs) ? over + step : 0;
    if (over >= 25) {
      queued = targetMs + 50;
      over = 0;
      skips++;
    }
    if (!playing && queued >= targetMs) playing = true;
    if (playing) {
      queued -= step;
      if (queued <= 0) {
        queued = 0;
        playing = false;
        underruns++;
      }
    }
    sum += queued;
    n++;
    if (now % 100 === 50) {
      meanMs = sum / n;
      reported = playing;
      sum = n = 0;
    }
    trace.push({ now, queued, playing });
  }
  return { trace, dropped: c.dropped, missing: t.missing, received: t.received, resumed: t.resumed, underruns, skips };
}

/** Mean buffer depth over [from, to) ms of a trace. */
const meanDepth = (trace, from, to) => {
  const xs = trace.filter((s) => s.now >= from && s.now < to).map((s) => s.queued);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};

test("after a long outage the backlog is dropped and the buffer is back at its target", () => {
  const target = 190;
  const r = simulate({ targetMs: target, outageMs: 3300 });
  assert.equal(r.missing, 0, "every sequence was received");
  assert.ok(r.resumed >= 33, `${r.resumed} resumed`);
  assert.equal(r.underruns, 1, "the outage ran the buffer dry once");
  // Of 33+ chunks, all but the ones that refill the target were dropped, at once.
  assert.ok(r.dropped >= 30 && r.dropped <= r.resumed, `${r.dropped} dropped of ${r.resumed}`);
  const back = 5000 + 3300;
  for (let t = back + 1000; t < back + 8000; t += 1000) {
    const d = meanDepth(r.trace, t, t + 1000);
    assert.ok(d <= target + 100 && d >= target - 100, `mean depth ${d.toFixed(0)} ms at ${t - back} ms after the resume`);
  }
  assert.ok(r.trace.filter((s) => s.now > back + 500).every((s) => s.playing), "no underrun after the resume");
});

test("an outage shorter than the buffer drops nothing: the resumed audio continues it", () => {
  const r = simulate({ targetMs: 190, outageMs: 120 });
  assert.equal(r.missing, 0);
  assert.ok(r.resumed >= 1);
  assert.equal(r.dropped, 0);
  assert.equal(r.underruns, 0);
});

test("a burst slower than real time still ends within a chunk of the target", () => {
  const target = 150;
  // 25 chunks missed, arriving 60 ms apart (1.5 s for 2.5 s of audio), with live chunks queued behind.
  const r = simulate({ targetMs: target, outageMs: 2500, burstMs: 60 });
  assert.equal(r.missing, 0);
  const back = 5000 + 2500;
  for (let t = back + 3000; t < back + 8000; t += 1000) {
    const d = meanDepth(r.trace, t, t + 1000);
    assert.ok(d <= target + 100, `mean depth ${d.toFixed(0)} ms at ${t - back} ms after the resume`);
  }
});

test("catch-up: the oldest resumed chunks go; live ones only on a mean depth a chunk too high", () => {
  const c = new CatchUp({ holdMs: 3000 });
  const big = { queuedMs: 2000, meanMs: 2000, chunkMs: 100, targetMs: 190 };
  assert.equal(c.active(0), false);
  assert.equal(c.drop(0, big), false, "no resume: the worklet's own skip handles a backlog");
  c.start(1000, 3);
  const dry = { queuedMs: 0, meanMs: 0, chunkMs: 100, targetMs: 190, playing: false, resumed: true };
  assert.equal(c.drop(1000, dry), true, "3 chunks into an empty buffer: one too many");
  assert.equal(c.drop(1001, dry), false, "the newest resumed chunks stay");
  assert.equal(c.drop(1002, { ...dry, queuedMs: 100 }), false);
  // The first live chunk: the buffer reads 200 ms now, but it has yet to start playing.
  assert.equal(c.drop(1100, { ...big, queuedMs: 200, meanMs: 0 }), false, "not on the depth of the moment");
  assert.equal(c.drop(1200, { ...big, queuedMs: 300, meanMs: 291 }), true, "a mean more than a chunk above the target");
  assert.equal(c.drop(1300, { ...big, queuedMs: 300, meanMs: 250 }), false);
  assert.equal(c.active(1100 + 2999), true);
  assert.equal(c.drop(1100 + 3001, big), false, "the hold is over");
  assert.equal(c.dropped, 2);
  // Still playing when the resumed chunks come: the outage was shorter than the buffer.
  c.start(5000, 2);
  const playing = { queuedMs: 180, meanMs: 200, chunkMs: 100, targetMs: 190, playing: true, resumed: true };
  assert.equal(c.drop(5000, playing), false, "a burst that only refills the buffer is kept whole");
  assert.equal(c.drop(5001, { ...playing, queuedMs: 280 }), false);
  assert.equal(c.drop(5100, { ...big, playing: true, resumed: false }), false, "nor the live chunks after it");
  assert.equal(c.active(5100), false);
  c.start(6000, 3);
  assert.equal(c.drop(6000, { ...playing, queuedMs: 400 }), true, "beyond what the worklet would skip anyway");
  c.start(9000, 0); // resumed with nothing missed: nothing to catch up
  assert.equal(c.active(9000), false);
  assert.equal(c.drop(9001, big), false);
});

test("the jitter target does not learn from a resumed burst", () => {
  // The player leaves resumed frames out of onArrival; this is what it would do otherwise.
  const p = new JitterPolicy();
  for (let i = 0; i < 50; i++) p.onArrival(i * 100 + 3, i * 100);
  const before = p.targetMs;
  const burst = new JitterPolicy();
  for (let i = 0; i < 50; i++) burst.onArrival(i * 100 + 3, i * 100);
  for (let i = 50; i < 83; i++) burst.onArrival(8300 + (i - 50) * 0.5, i * 100); // 3.3 s late, at once
  assert.ok(burst.targetMs > before + 500, "a burst read as arrivals would inflate the target");
});

// ---- the splice: no click

// The AudioWorklet scope, as in worklet.test.mjs.
const { Processor } = await loadWorklet();

test("a dropped chunk leaves a faded splice, not a click", () => {
  const storage = createRingStorage(131072, false);
  const ring = new Ring(storage);
  const node = new Processor({ processorOptions: { shared: storage, streamRate: 48000, startFrames: 4800, targetFrames: 4800, skipFrames: 96000 } });
  const tone = (chunk) => {
    const a = new Float32Array(4800 * 2);
    for (let i = 0; i < 4800; i++) {
      const v = 0.5 * Math.sin((2 * Math.PI * 345 * (chunk * 4800 + i)) / 48000 + Math.PI / 4); // 34.5 cycles a chunk
      a[2 * i] = v;
      a[2 * i + 1] = v;
    }
    return a;
  };
  const out = [];
  const play = (quanta) => {
    for (let q = 0; q < quanta; q++) {
      const o = [[new Float32Array(128), new Float32Array(128)]];
      node.process([], o);
      globalThis.currentFrame += 128;
      out.push(...o[0][0]);
    }
  };
  ring.write(tone(0));
  ring.write(tone(1));
  play(20);
  // Chunk 2 is dropped to catch up: the ring's tail fades out, chunk 3 fades in (as writeFrame does).
  const fadeFrames = Math.round(0.004 * 48000);
  assert.ok(ring.fadeTail(fadeFrames, 512) === fadeFrames);
  const next = tone(3);
  fadeIn(next, 0, fadeFrames);
  ring.write(next);
  play(60);
  const steps = out.map((x, i) => (i ? Math.abs(x - out[i - 1]) : 0));
  const natural = 0.5 * 2 * Math.PI * 345 / 48000; // the tone's own largest step
  assert.ok(Math.max(...steps) < natural + 0.5 / fadeFrames * 1.5, `largest step ${Math.max(...steps)}`);
  // Without the fades the splice would jump: the tone is half a cycle off across it.
  const jump = Math.abs(tone(3)[0] - tone(1)[2 * 4799]);
  assert.ok(jump > 0.5, `unfaded jump ${jump}`);
  assert.equal(node.underruns, 0);
});

// ---- the health panel while disconnected

const state = (over = {}) => ({
  latencyMs: 412.4, jitterMs: 1.23, bufferMs: 180, targetMs: 190, underruns: 1, gaps: 0, missingSequences: 0,
  discontinuities: 0, serverFills: 0, codec: "opus", bitrate: 128000, kbps: 131.2, driftPpm: 12, clockOffsetMs: -3.2,
  rttMs: 1.4, firstSoundMs: 171, reconnects: 1, lastSequence: 17639000042, sampleRate: 48000, streamSampleRate: 48000,
  playbackRate: 1.0001, sharedMemory: true, lastResume: null, catchUpDropped: 0, staleMs: null, ...over,
});

test("connected: the figures are plain", () => {
  const v = healthView(state(), { live: true });
  assert.equal(v.latency.text, "412");
  assert.equal(v.codec.text, "opus · 128 kbit/s");
  for (const k of Object.keys(v)) assert.notEqual(v[k].cls, "stale", k);
});

test("disconnected: the network figures are greyed with their age, the buffer stays live", () => {
  const v = healthView(state({ staleMs: 3300 }), { live: true });
  for (const k of NETWORK_CELLS) {
    assert.equal(v[k].cls, "stale", k);
    assert.match(v[k].text, /\(3\.3 s ago\)$/, k);
  }
  assert.equal(v.latency.text, "412 (3.3 s ago)");
  assert.equal(v.buffer.text, "180 / 190");
  assert.equal(v.buffer.cls, "");
  assert.equal(v.underruns.cls, "warn");
  // Nothing measured yet: nothing to mark.
  assert.equal(healthView(state({ staleMs: 500, latencyMs: null }), { live: true }).latency.text, "–");
  // Stopped: no figures at all.
  const idle = healthView(state({ staleMs: 500 }), { live: false });
  assert.equal(idle.latency.text, "–");
  assert.notEqual(idle.latency.cls, "stale");
});

test("the resume cell and the missing count", () => {
  let v = healthView(state({ lastResume: { outcome: "resumed", from: 1, chunks: 33 }, catchUpDropped: 31 }), { live: true });
  assert.equal(v.resume.text, "resumed 33 · 31 dropped");
  assert.equal(v.resume.cls, "");
  v = healthView(state({ lastResume: { outcome: "outside_window", from: 1, chunks: 0 }, missingSequences: 40 }), { live: true });
  assert.equal(v.resume.text, "outside_window");
  assert.equal(v.resume.cls, "warn");
  assert.equal(v.missing.text, "40");
  assert.equal(v.missing.cls, "warn");
});

test("ages read naturally", () => {
  assert.equal(ageText(420), "0.4 s ago");
  assert.equal(ageText(12400), "12 s ago");
  assert.equal(ageText(185000), "3 min ago");
  assert.equal(ageText(null), "");
});
