// The WebAssembly Opus frame decoder (WasmOpusDecoder in web/decoder.js): its options from the
// OpusHead, its ordering, errors, resets and stalls against a stand-in for the opus-decoder
// package (either variant: on the main thread, answering at once, or in a Worker, answering
// asynchronously and not always in the same time), and then the vendored package itself
// (web/opus-decoder.min.js, run here as the classic script it is) decoding real Opus packets.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import vm from "node:vm";
import { fileURLToPath } from "node:url";
import { WasmOpusDecoder, wasmOpusOptions, planarToStereo, loadWasmOpus, decoderConfig, WASM_OPUS_URL, WASM_PACKET_LIMIT } from "../../web/decoder.js";
import { decodeFrame, encodePayloadFrame, joinPackets, CODEC_OPUS, FrameError } from "../../web/protocol.js";

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** Waits until `done()` (polling; a loaded machine runs timers late), at most `ms`. */
async function until(done, ms = 3000) {
  const t = performance.now();
  while (!done() && performance.now() - t < ms) await sleep(2);
}
const OPUS_HEAD = "T3B1c0hlYWQBAjgBgLsAAAAAAA=="; // the server's: 2 channels, pre-skip 312, family 0
const CONFIG = { codec: "opus", sampleRate: 48000, numberOfChannels: 2 };
const REFUSED = 0xee; // a packet starting with this is one the stand-in libopus refuses

/**
 * A stand-in for the package: `OpusDecoder` answers decodeFrames at once, `OpusDecoderWebWorker`
 * with a promise after `delay(call)` ms (or never, `hang(call)`), or rejects (`crash(call)`).
 * Left is the packet's first byte / 256, right its negation; 960 frames a packet.
 */
function fakeLib({ worker = false, delay = () => 0, hang = () => false, crash = () => false, readyMs = 0 } = {}) {
  const made = [];
  let calls = 0;
  const decodeAll = (d, packets) => {
    d.decoded += packets.length;
    const errors = [];
    const left = new Float32Array(960 * packets.length);
    const right = new Float32Array(960 * packets.length);
    let frames = 0;
    packets.forEach((p, i) => {
      assert.ok(p instanceof Uint8Array);
      if (p[0] === REFUSED) {
        errors.push({ message: "libopus -4 OPUS_INVALID_PACKET: The compressed data passed is corrupted", frameNumber: i });
        return;
      }
      left.fill(p[0] / 256, frames, frames + 960);
      right.fill(-p[0] / 256, frames, frames + 960);
      frames += 960;
    });
    const channelData = d.options.channels === 1 ? [left.slice(0, frames)] : [left.slice(0, frames), right.slice(0, frames)];
    return { channelData, samplesDecoded: frames, sampleRate: 48000, errors };
  };
  class OpusDecoder {
    constructor(options) {
      this.options = options;
      this.kind = "main";
      this.decoded = 0;
      this.freed = false;
      this.ready = readyMs > 0 ? sleep(readyMs) : Promise.resolve();
      made.push(this);
    }

    decodeFrames(packets) {
      assert.ok(!this.freed, "decodes after free");
      const n = calls++;
      if (crash(n)) throw new RangeError("offset is out of bounds");
      return decodeAll(this, packets);
    }

    free() {
      this.freed = true;
    }
  }
  class OpusDecoderWebWorker {
    constructor(options) {
      this.options = options;
      this.kind = "worker";
      this.decoded = 0;
      this.freed = false;
      this.terminated = false;
      this.readyReads = 0;
      this.readyPromise = readyMs > 0 ? sleep(readyMs) : Promise.resolve();
      made.push(this);
    }

    get ready() {
      this.readyReads++;
      return this.readyPromise;
    }

    decodeFrames(packets) {
      assert.ok(!this.terminated, "decodes after terminate");
      const n = calls++;
      const copies = packets.map((p) => new Uint8Array(p)); // a message to the Worker is a copy
      return new Promise((resolve, reject) => {
        if (hang(n)) return;
        setTimeout(() => (crash(n) ? reject(new Error("worker gone")) : this.terminated ? null : resolve(decodeAll(this, copies))), delay(n));
      });
    }

    async free() {
      this.freed = true;
      this.terminate();
    }

    terminate() {
      this.terminated = true;
    }
  }
  return { OpusDecoder, OpusDecoderWebWorker, worker, made };
}

/** An Opus frame of `packets` packets whose first byte is `first + i` (or the bytes given). */
function frame({ seq, packets = 5, first = seq * 10, bytes = null }) {
  const list = bytes || Array.from({ length: packets }, (_, i) => new Uint8Array(40).fill(first + i));
  const buf = encodePayloadFrame({ codec: CODEC_OPUS, frames: 960 * list.length, sequence: seq, position: 48000 * 100 + seq * 4800 }, joinPackets(list));
  return { buf, h: decodeFrame(buf) };
}

function collect(wasm, opts = {}) {
  const got = [];
  const errors = [];
  const d = new WasmOpusDecoder(opts.config || CONFIG, {
    wasm,
    stallMs: opts.stallMs,
    onFrame: (job, samples, frames, whole) => got.push({ job, samples, frames, whole }),
    onError: (jobs, error, reopenError) => errors.push({ jobs, error, reopenError }),
  });
  return { d, got, errors };
}

const give = (d, seqs, f = {}) => seqs.forEach((seq) => {
  const { buf, h } = frame({ seq, ...f });
  d.decode(seq, buf, h);
});

test("options from the OpusHead: channels, rate, no pre-skip; mapping tables for family 1", () => {
  const stereo = wasmOpusOptions(decoderConfig({ codec: "opus", sample_rate: 48000, channels: 2, setup: OPUS_HEAD, pre_skip: 312 }));
  assert.deepEqual(stereo, { channels: 2, sampleRate: 48000, preSkip: 0 });
  assert.deepEqual(wasmOpusOptions({ ...CONFIG, numberOfChannels: 1 }), { channels: 1, sampleRate: 48000, preSkip: 0 });
  // 5.1: family 1, 4 streams, 2 of them coupled, the Vorbis order.
  const head = new Uint8Array([...new TextEncoder().encode("OpusHead"), 1, 6, 0x38, 0x01, 0x80, 0xbb, 0, 0, 0, 0, 1, 4, 2, 0, 4, 1, 2, 3, 5]);
  assert.deepEqual(wasmOpusOptions({ ...CONFIG, numberOfChannels: 6, description: head }), {
    channels: 6, sampleRate: 48000, preSkip: 0, streamCount: 4, coupledStreamCount: 2, channelMappingTable: [0, 4, 1, 2, 3, 5],
  });
  assert.throws(() => wasmOpusOptions({ ...CONFIG, numberOfChannels: 6 }), RangeError); // no mapping to go by
  assert.throws(() => wasmOpusOptions({ ...CONFIG, numberOfChannels: 6, description: head.subarray(0, 24) }), RangeError);
  assert.throws(() => wasmOpusOptions({ ...CONFIG, sampleRate: 44100 }), /44100 Hz/);
  assert.throws(() => wasmOpusOptions({ ...CONFIG, numberOfChannels: 0 }), RangeError);
  assert.throws(() => new WasmOpusDecoder({ ...CONFIG, sampleRate: 44100 }, { wasm: fakeLib(), onFrame() {}, onError() {} }), RangeError);
});

test("planar audio to interleaved stereo: mono on both sides, channels past two dropped", () => {
  const l = new Float32Array([1, 2, 3]);
  const r = new Float32Array([-1, -2, -3]);
  assert.deepEqual([...planarToStereo([l, r], 3)], [1, -1, 2, -2, 3, -3]);
  assert.deepEqual([...planarToStereo([l], 2)], [1, 1, 2, 2]);
  assert.deepEqual([...planarToStereo([l, r, new Float32Array([9, 9, 9])], 1)], [1, -1]);
  assert.equal(planarToStereo([], 0).length, 0);
});

for (const worker of [false, true]) {
  const where = worker ? "in a Worker" : "on the main thread";

  test(`${where}: frames given before it is ready decode after, each handed on once, in order`, async () => {
    // In the Worker, later frames may come back sooner than earlier ones: the order is still kept.
    const wasm = fakeLib({ worker, readyMs: 15, delay: (n) => (n % 2 === 0 ? 6 : 0) });
    const { d, got, errors } = collect(wasm);
    give(d, [0, 1, 2, 3]);
    assert.equal(d.pending, 4);
    assert.equal(got.length, 0);
    await until(() => got.length + errors.length >= 4);
    assert.equal(errors.length, 0);
    assert.deepEqual(got.map((g) => [g.job, g.frames, g.whole]), [[0, 4800, true], [1, 4800, true], [2, 4800, true], [3, 4800, true]]);
    assert.equal(d.pending, 0);
    assert.equal(wasm.made.length, 1);
    assert.equal(wasm.made[0].kind, worker ? "worker" : "main");
    assert.deepEqual(wasm.made[0].options, { channels: 2, sampleRate: 48000, preSkip: 0 });
    if (worker) assert.equal(wasm.made[0].readyReads, 1); // read once: each read is a message
    const s = got[1].samples;
    assert.equal(s.length, 4800 * 2);
    for (let p = 0; p < 5; p++) {
      assert.equal(s[2 * p * 960], (10 + p) / 256, `packet ${p}`);
      assert.equal(s[2 * p * 960 + 1], -(10 + p) / 256);
    }
  });

  test(`${where}: a packet libopus refuses fails its frame alone, and the decoder starts afresh`, async () => {
    const wasm = fakeLib({ worker, delay: () => 1 });
    const { d, got, errors } = collect(wasm);
    give(d, [0]);
    const bad = [new Uint8Array(40).fill(10), new Uint8Array([REFUSED, 0]), new Uint8Array(40).fill(12)];
    const f = frame({ seq: 1, bytes: bad });
    d.decode(1, f.buf, f.h);
    give(d, [2, 3]);
    await until(() => got.length === 3 && errors.length === 1 && wasm.made[0].freed);
    assert.equal(errors.length, 1);
    assert.deepEqual(errors[0].jobs, [1]);
    assert.equal(errors[0].error.name, "EncodingError");
    assert.match(errors[0].error.message, /OPUS_INVALID_PACKET/);
    assert.equal(errors[0].reopenError, null);
    // Frames 2 and 3 were with the old decoder already: they decode there, in order.
    assert.deepEqual(got.map((g) => g.job), [0, 2, 3]);
    assert.equal(wasm.made.length, 2);
    assert.equal(wasm.made[0].decoded, 5 + 3 + 10);
    assert.equal(wasm.made[0].freed, true); // once it had answered all it was given
    give(d, [4]);
    await until(() => got.length === 4);
    assert.deepEqual(got.map((g) => g.job), [0, 2, 3, 4]);
    assert.equal(wasm.made[1].decoded, 5);
    assert.equal(wasm.made[1].kind, worker ? "worker" : "main");
  });

  test(`${where}: a decoder that throws loses the frames in flight, and a main-thread one takes over`, async () => {
    const wasm = fakeLib({ worker, crash: (n) => n === 1, delay: () => 2 });
    const { d, got, errors } = collect(wasm);
    give(d, [0, 1, 2]);
    await until(() => errors.length === 1);
    await sleep(10);
    assert.deepEqual(got.map((g) => g.job), [0]);
    assert.equal(errors.length, 1);
    assert.deepEqual(errors[0].jobs, [1, 2]);
    assert.equal(errors[0].reopenError, null);
    assert.equal(wasm.made.length, 2);
    assert.equal(wasm.made[1].kind, "main");
    give(d, [3, 4]);
    await until(() => got.length === 3);
    assert.deepEqual(got.map((g) => g.job), [0, 3, 4]);
    assert.equal(errors.length, 1);
  });

  test(`${where}: an oversized packet is refused before decoding, in its turn`, async () => {
    const wasm = fakeLib({ worker });
    const { d, got, errors } = collect(wasm);
    give(d, [0]);
    const f = frame({ seq: 1, bytes: [new Uint8Array(WASM_PACKET_LIMIT * 2 + 1).fill(3)] });
    d.decode(1, f.buf, f.h);
    give(d, [2]);
    await until(() => got.length === 2);
    assert.deepEqual(got.map((g) => g.job), [0, 2]);
    assert.equal(errors.length, 1);
    assert.deepEqual(errors[0].jobs, [1]);
    assert.match(errors[0].error.message, /more than the decoder takes/);
    assert.equal(wasm.made[0].decoded, 10);
  });

  test(`${where}: reset drops frames in flight; close ignores stray answers`, async () => {
    const wasm = fakeLib({ worker, delay: () => 3 });
    const { d, got, errors } = collect(wasm);
    give(d, [0]);
    d.reset();
    assert.equal(d.pending, 0);
    give(d, [1]);
    await until(() => got.length >= 1);
    await sleep(10); // frame 0's answer would be in by now
    assert.deepEqual(got.map((g) => g.job), [1]);
    assert.equal(wasm.made.length, 2);
    if (worker) assert.equal(wasm.made[0].terminated, true); // ended at once
    give(d, [2]);
    d.close();
    await sleep(15);
    assert.deepEqual(got.map((g) => g.job), [1]);
    assert.equal(errors.length, 0);
    const f = frame({ seq: 3 });
    assert.throws(() => d.decode(3, f.buf, f.h), /closed/);
  });
}

test("a payload that does not split into packets is refused before decoding", () => {
  const wasm = fakeLib();
  const { d } = collect(wasm);
  const bad = new Uint8Array(encodePayloadFrame({ codec: CODEC_OPUS, frames: 4800 }, new Uint8Array([50, 0, 1, 2, 3])));
  assert.throws(() => d.decode("x", bad.buffer, decodeFrame(bad)), (e) => e instanceof FrameError && e.code === "packet_length");
  assert.equal(d.pending, 0);
  assert.equal(wasm.made[0].decoded, 0);
});

test("a Worker that stops answering is replaced by a main-thread decoder", async () => {
  const wasm = fakeLib({ worker: true, hang: (n) => n === 1 });
  const { d, got, errors } = collect(wasm, { stallMs: 60 });
  give(d, [0, 1, 2]);
  await until(() => got.length === 1);
  assert.deepEqual(got.map((g) => g.job), [0]); // 2 waits behind 1
  assert.equal(errors.length, 0);
  await until(() => errors.length === 1);
  assert.equal(errors.length, 1);
  assert.deepEqual(errors[0].jobs, [1, 2]);
  assert.match(errors[0].error.message, /Worker answered nothing/);
  assert.equal(wasm.made[0].terminated, true);
  assert.equal(wasm.made[1].kind, "main");
  give(d, [3]);
  await until(() => got.length === 2);
  assert.deepEqual(got.map((g) => g.job), [0, 3]);
  d.close();
});

test("a busy main thread does not count as a stalled decoder", async () => {
  // The answer never comes here; in a browser it may be queued behind the late watch timer.
  const wasm = fakeLib({ worker: true, hang: () => true });
  const { d, errors } = collect(wasm, { stallMs: 60 });
  give(d, [0]);
  const t = performance.now();
  while (performance.now() - t < 400) {} // this thread blocked well past the stall limit
  await sleep(0); // the watch timer, late, runs first: it gives the decoder its time again
  assert.equal(errors.length, 0);
  await until(() => errors.length === 1); // then counts the stall as usual
  assert.deepEqual(errors[0].jobs, [0]);
  d.close();
});

// ---------------------------------------------------------------- the vendored package

/** Runs web/opus-decoder.min.js as a classic script, as a browser would (Node would take it for CommonJS). */
const asScript = async (url) => {
  globalThis.Worker ??= class {}; // its Worker variant extends the global Worker when it loads
  vm.runInThisContext(fs.readFileSync(fileURLToPath(url), "utf8"), { filename: "opus-decoder.min.js" });
};

// Real Opus packets (RFC 6716): a TOC byte of config 31 (CELT, fullband, 20 ms), stereo, one
// frame; then the range-coded frame. 0xff 0xfe codes silence (CELT's silence flag).
const SILENCE = new Uint8Array([0xfc, 0xff, 0xfe]);
const INVALID = new Uint8Array([0xff, 0x00]); // code 3 with no frames: OPUS_INVALID_PACKET

test("the vendored libopus loads, decodes real packets in order, and survives a refused one", async () => {
  const wasm = await loadWasmOpus({ worker: false, load: asScript });
  assert.equal(wasm.worker, false);
  assert.equal(typeof wasm.OpusDecoder, "function");
  assert.ok(WASM_OPUS_URL.endsWith("/opus-decoder.min.js"));
  const quiet = console.error; // libopus logs every packet it refuses
  const logged = [];
  console.error = (...a) => logged.push(a.join(" "));
  try {
    const { d, got, errors } = collect(wasm, { config: decoderConfig({ codec: "opus", sample_rate: 48000, channels: 2, setup: OPUS_HEAD, pre_skip: 312 }) });
    give(d, [0, 1], { bytes: [SILENCE, SILENCE, SILENCE, SILENCE, SILENCE] });
    const f = frame({ seq: 2, bytes: [SILENCE, INVALID, SILENCE] });
    d.decode(2, f.buf, f.h);
    give(d, [3], { bytes: [SILENCE, SILENCE] });
    await until(() => got.length + errors.length >= 4);
    // Pre-skip 0: the first frame is whole, not 312 frames short.
    assert.deepEqual(got.map((g) => [g.job, g.frames, g.whole]), [[0, 4800, true], [1, 4800, true], [3, 1920, true]]);
    assert.ok(got.every((g) => g.samples.length === g.frames * 2 && g.samples.every((x) => Math.abs(x) < 1e-20))); // silence
    assert.equal(errors.length, 1);
    assert.deepEqual(errors[0].jobs, [2]);
    assert.match(errors[0].error.message, /^libopus -4 OPUS_INVALID_PACKET/);
    assert.equal(errors[0].reopenError, null);
    assert.ok(logged.some((l) => /OPUS_INVALID_PACKET/.test(l)));
    d.close();
    const mono = collect(wasm, { config: { codec: "opus", sampleRate: 48000, numberOfChannels: 1 } });
    give(mono.d, [0], { bytes: [new Uint8Array([0xf8, 0xff, 0xfe])] }); // the mono TOC
    await until(() => mono.got.length > 0);
    assert.deepEqual(mono.got.map((g) => [g.frames, g.samples.length]), [[960, 1920]]);
    mono.d.close();
  } finally {
    console.error = quiet;
  }
});

test("loading fails clearly where the script defines no decoder", async () => {
  const saved = globalThis["opus-decoder"];
  delete globalThis["opus-decoder"];
  try {
    await assert.rejects(loadWasmOpus({ worker: false, load: async () => {} }), /did not define OpusDecoder/);
  } finally {
    if (saved) globalThis["opus-decoder"] = saved;
  }
});
