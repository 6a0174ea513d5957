// The WebCodecs frame decoder (web/decoder.js), run in Node with a stand-in AudioDecoder that
// behaves like Chromium's: one output per packet, asynchronously, in order; after configure the
// first Opus output is short by the pre-skip and later timestamps count on from the first; a
// damaged FLAC frame may give nothing at all, and no error, until the decoder is flushed.
import test from "node:test";
import assert from "node:assert/strict";
import { FrameDecoder, decoderConfig, sameConfig, webCodecsSupports } from "../../web/decoder.js";
import { decodeFrame, encodePayloadFrame, joinPackets, CODEC_OPUS, CODEC_FLAC, FrameError } from "../../web/protocol.js";

const tick = () => new Promise((r) => setTimeout(r, 0));

class FakeAudioData {
  constructor({ frames, channels, timestamp, value }) {
    this.numberOfFrames = frames;
    this.numberOfChannels = channels;
    this.timestamp = timestamp;
    this.value = value;
    this.closed = false;
  }

  copyTo(dest, { planeIndex, format }) {
    assert.equal(format, "f32-planar");
    assert.ok(planeIndex < this.numberOfChannels);
    assert.ok(dest.length >= this.numberOfFrames);
    // Left: the packet's first byte / 256; right: its negation. Sample i adds i / 1e6.
    const sign = planeIndex === 0 ? 1 : -1;
    for (let i = 0; i < this.numberOfFrames; i++) dest[i] = sign * (this.value + i / 1e6);
  }

  close() {
    this.closed = true;
  }
}

/** Builds an AudioDecoder class; `behaviour` tweaks it per test. */
function fakeDecoder({ preSkip = 0, packetFrames = 960, channels = 2, fail = null, drop = null, swallow = null, inputTimestamps = false } = {}) {
  const made = [];
  let decoded = 0; // packets, over every instance
  class AudioDecoder {
    constructor({ output, error }) {
      this.output = output;
      this.error = error;
      this.state = "unconfigured";
      this.configs = [];
      this.decoded = 0;
      this.nextTs = null;
      made.push(this);
    }

    configure(config) {
      if (config.codec === "bogus") throw new TypeError("unsupported codec");
      this.configs.push(config);
      this.state = "configured";
      this.first = true;
      this.nextTs = null;
    }

    decode(chunk) {
      if (this.state !== "configured") throw new DOMException("decoder is closed", "InvalidStateError");
      const n = decoded++;
      this.decoded++;
      const data = chunk.data;
      if (swallow && swallow(n)) return; // held inside until a flush, then dropped
      setTimeout(() => {
        if (this.state !== "configured") return;
        if (fail && fail(n, data)) {
          this.state = "closed";
          this.error(new DOMException("Decoding error.", "EncodingError"));
          return;
        }
        if (drop && drop(n)) return;
        let frames = packetFrames;
        if (this.first) frames -= preSkip;
        const ts = inputTimestamps ? chunk.timestamp : this.nextTs ?? chunk.timestamp;
        this.first = false;
        this.nextTs = ts + Math.round((frames / 48000) * 1e6);
        this.output(new FakeAudioData({ frames, channels, timestamp: ts, value: data[0] / 256 }));
      }, 0);
    }

    flush() {
      this.flushes = (this.flushes || 0) + 1;
      return new Promise((resolve, reject) => setTimeout(() => (this.state === "configured" ? resolve() : reject(new DOMException("closed", "AbortError"))), 2));
    }

    close() {
      this.state = "closed";
    }
  }
  class EncodedAudioChunk {
    constructor({ type, timestamp, data }) {
      assert.equal(type, "key");
      assert.ok(Number.isInteger(timestamp));
      this.timestamp = timestamp;
      this.data = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    }
  }
  return { AudioDecoder, EncodedAudioChunk, made };
}

/** An Opus-like frame: `packets` packets whose first byte is `first + i`. */
function frame({ seq, packets = 5, frames = 4800, codec = CODEC_OPUS, first = seq * 10 }) {
  const list = Array.from({ length: packets }, (_, i) => new Uint8Array(40).fill(first + i));
  const buf = encodePayloadFrame({ codec, frames, sequence: seq, position: 48000 * 100 + seq * frames }, joinPackets(list));
  return { buf, h: decodeFrame(buf) };
}

function collect(fake, opts = {}) {
  const got = [];
  const errors = [];
  const d = new FrameDecoder(opts.config || { codec: "opus", sampleRate: 48000, numberOfChannels: 2 }, {
    delayMs: opts.delayMs ?? 6.5,
    onFrame: (job, samples, frames, whole) => got.push({ job, samples, frames, whole }),
    onError: (jobs, error, reopenError) => errors.push({ jobs, error, reopenError }),
    flushAfterMs: opts.flushAfterMs,
    AudioDecoder: fake.AudioDecoder,
    EncodedAudioChunk: fake.EncodedAudioChunk,
  });
  return { d, got, errors };
}

test("hands each frame's audio on once, in order, as interleaved stereo", async () => {
  const fake = fakeDecoder({ preSkip: 312 });
  const { d, got, errors } = collect(fake);
  for (let seq = 0; seq < 4; seq++) {
    const { buf, h } = frame({ seq });
    d.decode(`job${seq}`, buf, h);
  }
  assert.equal(d.pending, 4);
  await tick();
  await tick();
  assert.equal(errors.length, 0);
  assert.deepEqual(got.map((g) => g.job), ["job0", "job1", "job2", "job3"]);
  // The first frame after configure is short by the pre-skip (dropped from its first packet).
  assert.deepEqual(got.map((g) => g.frames), [4800 - 312, 4800, 4800, 4800]);
  assert.ok(got.every((g) => g.whole)); // short, but every packet came back
  assert.equal(d.pending, 0);
  for (const g of got) assert.equal(g.samples.length, g.frames * 2);
  // Frame 1's audio is its five packets, in order: left = first byte / 256, right its negation.
  const s = got[1].samples;
  for (let p = 0; p < 5; p++) {
    const i = p * 960;
    assert.ok(Math.abs(s[2 * i] - (10 + p) / 256) < 1e-6, `packet ${p}`);
    assert.ok(Math.abs(s[2 * i + 1] + (10 + p) / 256) < 1e-6);
  }
  assert.ok(Math.abs(s[2 * 959] - (10 / 256 + 959 / 1e6)) < 1e-6); // sample order within a packet
  const s0 = got[0].samples;
  assert.ok(Math.abs(s0[2 * 648] - 1 / 256) < 1e-6); // frame 0: packet 1 starts after 648 frames
});

test("gives chunks timestamps in µs from the frame position", async () => {
  const fake = fakeDecoder();
  const seen = [];
  const Chunk = class extends fake.EncodedAudioChunk {
    constructor(init) {
      super(init);
      seen.push(init.timestamp);
    }
  };
  const { d } = collect({ ...fake, EncodedAudioChunk: Chunk });
  const { buf, h } = frame({ seq: 2 });
  d.decode("a", buf, h);
  const start = ((48000 * 100 + 2 * 4800) / 48000) * 1e6;
  assert.deepEqual(seen, [0, 1, 2, 3, 4].map((i) => Math.round(start + i * 20000)));
  await tick();
});

test("FLAC-like frames of two packets, and mono copied to both sides", async () => {
  const fake = fakeDecoder({ packetFrames: 2400, channels: 1 });
  const { d, got } = collect(fake, { config: { codec: "flac", sampleRate: 48000, numberOfChannels: 1 }, delayMs: 0 });
  for (let seq = 0; seq < 3; seq++) {
    const { buf, h } = frame({ seq, packets: 2, codec: CODEC_FLAC });
    d.decode(seq, buf, h);
  }
  await tick();
  await tick();
  assert.deepEqual(got.map((g) => [g.job, g.frames]), [[0, 4800], [1, 4800], [2, 4800]]);
  const s = got[2].samples;
  assert.equal(s[0], s[1]);
  assert.ok(Math.abs(s[2 * 2400] - 21 / 256) < 1e-6);
});

test("a packet without output: the next frame's first output closes the frame", async () => {
  // A decoder that keeps the input timestamps; frame 0's last packet gives nothing.
  const fake = fakeDecoder({ drop: (n) => n === 4, inputTimestamps: true });
  const { d, got } = collect(fake);
  for (let seq = 0; seq < 3; seq++) {
    const { buf, h } = frame({ seq });
    d.decode(seq, buf, h);
  }
  await tick();
  await tick();
  assert.deepEqual(got.map((g) => [g.job, g.frames, g.whole]), [[0, 3840, false], [1, 4800, true], [2, 4800, true]]);
  assert.ok(Math.abs(got[1].samples[0] - 10 / 256) < 1e-6); // frame 1 starts with its own packet
});

test("timestamps far from the frames (a new timeline) do not split frames", async () => {
  const fake = fakeDecoder();
  const { d, got } = collect(fake);
  const positions = [48000 * 500, 48000 * 500 + 4800, 4800 * 3, 4800 * 4]; // a restarted server
  positions.forEach((position, seq) => {
    const packets = Array.from({ length: 5 }, (_, i) => new Uint8Array(40).fill(seq * 10 + i));
    const buf = encodePayloadFrame({ codec: CODEC_OPUS, frames: 4800, sequence: seq, position }, joinPackets(packets));
    d.decode(seq, buf, decodeFrame(buf));
  });
  await tick();
  await tick();
  assert.deepEqual(got.map((g) => [g.job, g.frames]), [[0, 4800], [1, 4800], [2, 4800], [3, 4800]]);
  assert.ok(Math.abs(got[3].samples[0] - 30 / 256) < 1e-6);
});

test("a chunk the decoder swallows is handed on after a flush, not a chunk later", async () => {
  const fake = fakeDecoder({ packetFrames: 2400, swallow: (n) => n === 2 }); // frame 1's first FLAC frame
  const { d, got, errors } = collect(fake, { config: { codec: "flac", sampleRate: 48000, numberOfChannels: 2 }, delayMs: 0, flushAfterMs: 20 });
  for (let seq = 0; seq < 2; seq++) {
    const { buf, h } = frame({ seq, packets: 2, codec: CODEC_FLAC });
    d.decode(seq, buf, h);
  }
  await tick();
  await tick();
  assert.deepEqual(got.map((g) => g.job), [0]); // frame 1 waits for its first packet
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(fake.made[0].flushes, 1);
  assert.deepEqual(got.map((g) => [g.job, g.frames, g.whole]), [[0, 4800, true], [1, 2400, false]]); // with what came back
  assert.ok(Math.abs(got[1].samples[0] - 11 / 256) < 1e-6);
  const { buf, h } = frame({ seq: 2, packets: 2, codec: CODEC_FLAC });
  d.decode(2, buf, h);
  await new Promise((r) => setTimeout(r, 40));
  assert.deepEqual(got.map((g) => [g.job, g.frames]), [[0, 4800], [1, 2400], [2, 4800]]);
  assert.equal(fake.made[0].flushes, 1); // a decoder that keeps up is never flushed
  assert.equal(errors.length, 0);
});

test("a decoder error loses the frames in flight, then decoding goes on", async () => {
  const fake = fakeDecoder({ fail: (n) => n === 6 }); // a packet of frame 1
  const { d, got, errors } = collect(fake);
  for (let seq = 0; seq < 3; seq++) {
    const { buf, h } = frame({ seq });
    d.decode(seq, buf, h);
  }
  await tick();
  await tick();
  assert.equal(errors.length, 1);
  assert.equal(errors[0].error.name, "EncodingError");
  assert.equal(errors[0].reopenError, null);
  assert.deepEqual(got.map((g) => g.job), [0]); // frame 0 came out before the error
  assert.deepEqual(errors[0].jobs, [1, 2]); // the rest was in the decoder that failed
  assert.equal(fake.made.length, 2); // configured afresh
  assert.equal(fake.made[1].configs.length, 1);
  for (let seq = 3; seq < 5; seq++) {
    const { buf, h } = frame({ seq });
    d.decode(seq, buf, h);
  }
  await tick();
  await tick();
  assert.deepEqual(got.map((g) => g.job), [0, 3, 4]);
  assert.equal(errors.length, 1);
});

test("a payload that does not split into packets is refused before decoding", () => {
  const fake = fakeDecoder();
  const { d } = collect(fake);
  const bad = new Uint8Array(encodePayloadFrame({ codec: CODEC_OPUS, frames: 4800 }, new Uint8Array([50, 0, 1, 2, 3])));
  const h = decodeFrame(bad);
  assert.throws(() => d.decode("x", bad.buffer, h), (e) => e instanceof FrameError && e.code === "packet_length");
  assert.equal(d.pending, 0);
  assert.equal(fake.made[0].decoded, 0);
});

test("reset drops frames in flight; close ignores stray outputs", async () => {
  const fake = fakeDecoder();
  const { d, got, errors } = collect(fake);
  let f = frame({ seq: 0 });
  d.decode(0, f.buf, f.h);
  d.reset();
  assert.equal(d.pending, 0);
  f = frame({ seq: 1 });
  d.decode(1, f.buf, f.h);
  await tick();
  assert.deepEqual(got.map((g) => g.job), [1]);
  f = frame({ seq: 2 });
  d.decode(2, f.buf, f.h);
  d.close();
  await tick();
  assert.deepEqual(got.map((g) => g.job), [1]);
  assert.equal(errors.length, 0);
});

test("a configuration the browser refuses throws at once", () => {
  const fake = fakeDecoder();
  assert.throws(() => collect(fake, { config: { codec: "bogus", sampleRate: 48000, numberOfChannels: 2 } }), TypeError);
});

test("configurations from welcome formats", () => {
  const opus = { codec: "opus", sample_rate: 48000, channels: 2, frames_per_chunk: 4800, setup: "T3B1c0hlYWQBAjgBgLsAAAAAAA==", pre_skip: 312, bitrate: 128000 };
  const c = decoderConfig(opus);
  assert.equal(c.codec, "opus");
  assert.equal(c.sampleRate, 48000);
  assert.equal(c.numberOfChannels, 2);
  assert.equal(c.description.length, 19);
  assert.deepEqual(Object.keys(c).sort(), ["codec", "description", "numberOfChannels", "sampleRate"]);
  assert.ok(sameConfig(c, decoderConfig({ ...opus })));
  assert.ok(!sameConfig(c, decoderConfig({ ...opus, setup: "T3B1c0hlYWQBAjgBgLsAAAAAAQ==" })));
  assert.ok(!sameConfig(c, decoderConfig({ ...opus, channels: 1 })));
  assert.ok(!sameConfig(c, null));
  const flac = decoderConfig({ codec: "flac", sample_rate: 48000, channels: 2, setup: "ZkxhQ4AAACIJYAlg////AAAAC7gC8AAAAAAAAAAAAAAAAAAAAAAAAAAA" });
  assert.equal(new TextDecoder().decode(flac.description.subarray(0, 4)), "fLaC");
  assert.equal(flac.description.length, 4 + 4 + 34);
  const noSetup = decoderConfig({ codec: "opus", sample_rate: 48000, channels: 2 });
  assert.equal("description" in noSetup, false);
  assert.ok(sameConfig(noSetup, decoderConfig({ codec: "opus", sample_rate: 48000, channels: 2 })));
});

test("support detection never throws", async () => {
  assert.equal(await webCodecsSupports("opus", { AudioDecoder: undefined }), false);
  const yes = { isConfigSupported: async (c) => ({ supported: c.codec === "opus", config: c }) };
  const Yes = Object.assign(function () {}, yes);
  assert.equal(await webCodecsSupports("opus", { AudioDecoder: Yes }), true);
  assert.equal(await webCodecsSupports("flac", { AudioDecoder: Yes }), false);
  const Throws = Object.assign(function () {}, { isConfigSupported: async () => { throw new TypeError("bad config"); } });
  assert.equal(await webCodecsSupports("opus", { AudioDecoder: Throws }), false);
});
