// Ring buffer index arithmetic (web/ring.js).
import test from "node:test";
import assert from "node:assert/strict";
import { Ring, createRingStorage, distance, isPowerOfTwo, nextPowerOfTwo, READ, WRITE } from "../../web/ring.js";

const frames = (n, start = 0) => {
  const a = new Float32Array(n * 2);
  for (let i = 0; i < n; i++) {
    a[2 * i] = start + i;
    a[2 * i + 1] = -(start + i);
  }
  return a;
};

/** Reads `n` frames as the worklet does: slot arithmetic on the read index, then advance. */
function readFrames(ring, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const k = ring.slot(i);
    out.push(ring.samples[k]);
    assert.equal(ring.samples[k + 1], -ring.samples[k]);
  }
  ring.advance(n);
  return out;
}

test("capacity is a power of two", () => {
  assert.equal(nextPowerOfTwo(1000), 1024);
  assert.equal(nextPowerOfTwo(1024), 1024);
  assert.ok(isPowerOfTwo(131072));
  assert.ok(!isPowerOfTwo(48000));
  const s = createRingStorage(1000);
  assert.equal(s.capacity, 1024);
  assert.equal(s.samples.length, 2048);
  assert.throws(() => new Ring({ samples: new Float32Array(2 * 1000), state: new Int32Array(4) }), RangeError);
});

test("shared storage uses SharedArrayBuffer", () => {
  const s = createRingStorage(256, true);
  assert.ok(s.samples.buffer instanceof SharedArrayBuffer);
  assert.ok(s.state.buffer instanceof SharedArrayBuffer);
});

test("distance is wrap-aware on int32 counters", () => {
  assert.equal(distance(10, 25), 15);
  assert.equal(distance(2147483640, -2147483646), 10); // write wrapped past 2^31
  assert.equal(distance(-10, 5), 15);
  assert.equal(distance(25, 10), -15);
});

test("writes, reads and reports fill level", () => {
  const r = new Ring(createRingStorage(256));
  assert.equal(r.available(), 0);
  assert.equal(r.space(), 256);
  assert.equal(r.write(frames(100)), 100);
  assert.equal(r.available(), 100);
  assert.equal(r.space(), 156);
  assert.deepEqual(readFrames(r, 3), [0, 1, 2]);
  assert.equal(r.available(), 97);
});

test("never overwrites unread frames", () => {
  const r = new Ring(createRingStorage(256));
  assert.equal(r.write(frames(200)), 200);
  assert.equal(r.write(frames(100, 200)), 56); // only what fits
  assert.equal(r.available(), 256);
  assert.equal(r.space(), 0);
  assert.equal(r.write(frames(1)), 0);
  assert.deepEqual(readFrames(r, 256).slice(250), [250, 251, 252, 253, 254, 255]);
});

test("wraps around the storage and around 2^32", () => {
  const r = new Ring(createRingStorage(256));
  // Start both indices just below the int32 limit, at an odd slot.
  Atomics.store(r.state, READ, 2147483600);
  Atomics.store(r.state, WRITE, 2147483600);
  let next = 0;
  let expect = 0;
  for (let round = 0; round < 50; round++) {
    const n = 37 + (round % 5) * 11;
    assert.equal(r.write(frames(n, next)), n);
    next += n;
    assert.equal(r.available(), next - expect);
    const got = readFrames(r, n - 3 + (round % 4));
    for (const x of got) assert.equal(x, expect++);
  }
  assert.ok(Atomics.load(r.state, WRITE) < 0, "the write counter wrapped past 2^31");
  assert.equal(r.available(), next - expect);
});

test("skipTo keeps the newest frames", () => {
  const r = new Ring(createRingStorage(256));
  r.write(frames(200));
  assert.equal(r.skipTo(50), 150);
  assert.equal(r.available(), 50);
  assert.deepEqual(readFrames(r, 1), [150]);
  assert.equal(r.skipTo(1000), 0);
});

test("fadeTail ramps the newest frames to zero and respects the guard", () => {
  const r = new Ring(createRingStorage(256));
  const ones = new Float32Array(2 * 100).fill(1);
  r.write(ones);
  assert.equal(r.fadeTail(10), 10);
  const vals = Array.from({ length: 100 }, (_, i) => r.samples[i * 2]);
  for (let i = 0; i < 100; i++) assert.equal(r.samples[i * 2 + 1], vals[i]);
  assert.deepEqual(vals.slice(0, 90), new Array(90).fill(1));
  const tail = vals.slice(90);
  assert.equal(tail[9], 0); // newest frame silent
  for (let i = 1; i < tail.length; i++) assert.ok(tail[i] < tail[i - 1]);

  const g = new Ring(createRingStorage(256));
  g.write(new Float32Array(2 * 20).fill(1));
  assert.equal(g.fadeTail(10, 15), 5); // only 5 frames lie beyond the guard
  assert.equal(g.samples[2 * 14], 1);
  assert.equal(g.fadeTail(10, 30), 0);
});

test("advance never passes the write index", () => {
  const r = new Ring(createRingStorage(256));
  r.write(frames(10));
  assert.equal(r.advance(50), 10);
  assert.equal(r.available(), 0);
  r.reset();
  assert.equal(r.readIndex(), 0);
  assert.equal(r.writeIndex(), 0);
});
