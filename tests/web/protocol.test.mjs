// Frame header decoding (PCM, Opus and FLAC payloads), packet splitting, PCM conversion, stats
// messages and the clock estimate (web/protocol.js).
import test from "node:test";
import assert from "node:assert/strict";
import {
  decodeFrame, encodeFrame, encodePayloadFrame, splitPackets, joinPackets, pcmS16ToStereo, statsMessage, isValidStats,
  nsToMs, ClockSync, FrameError, codecName, decodeBase64, codecDelayMs, PROTOCOL_VERSION,
  HEADER_LEN, FLAG_UNDERRUN_FILL, FLAG_DISCONTINUITY, STATS_LIMIT_MS, CODEC_PCM_S16LE, CODEC_OPUS, CODEC_FLAC, CODEC_NAMES,
} from "../../web/protocol.js";

// The header of src/stream/protocol.rs's own round-trip test.
const HEADER = {
  channels: 2, sampleRate: 48000, frames: 4, flags: FLAG_UNDERRUN_FILL, sequence: 7, position: 28,
  renderedUnixNs: 1_700_000_000_000_000_000n, sentUnixNs: 1_700_000_000_100_000_000n,
};
const SAMPLES = [0.0, 1.0, -1.0, 0.5, -0.25, 2.0, -2.0, 0.00001];

function errorCode(buf, parse = decodeFrame) {
  try {
    parse(buf);
  } catch (e) {
    assert.ok(e instanceof FrameError, String(e));
    return e.code;
  }
  return null;
}

const packetsOf = (buf) => {
  const h = decodeFrame(buf);
  return splitPackets(buf, h.payloadOffset, h.payloadLength);
};
const bytes = (n, fill) => new Uint8Array(n).fill(fill);

test("decodes a frame written byte by byte from the protocol table", () => {
  const buf = new ArrayBuffer(HEADER_LEN + 8);
  const v = new DataView(buf);
  [0x41, 0x55, 0x52, 0x41, 2, 56, 1, 2].forEach((b, i) => v.setUint8(i, b));
  v.setUint32(8, 44100, true);
  v.setUint32(12, 2, true);
  v.setUint16(16, FLAG_DISCONTINUITY | 0x8000, true); // unknown bits are ignored
  v.setUint32(20, 8, true);
  v.setBigUint64(24, 123456789n, true);
  v.setBigUint64(32, 84667200091264n, true);
  v.setBigUint64(40, 1763900000123456789n, true);
  v.setBigUint64(48, 1763900000223456789n, true);
  [100, -100, 32767, -32768].forEach((s, i) => v.setInt16(56 + 2 * i, s, true));
  const h = decodeFrame(buf);
  assert.equal(PROTOCOL_VERSION, 2);
  assert.equal(h.codec, CODEC_PCM_S16LE);
  assert.equal(h.codecName, "pcm_s16le");
  assert.equal(h.channels, 2);
  assert.equal(h.sampleRate, 44100);
  assert.equal(h.frames, 2);
  assert.equal(h.discontinuity, true);
  assert.equal(h.underrunFill, false);
  assert.equal(h.sequence, 123456789);
  assert.equal(h.position, 84667200091264);
  assert.equal(h.renderedUnixNs, 1763900000123456789n);
  assert.equal(h.renderedUnixMs, 1763900000123.456);
  assert.equal(h.sentUnixMs, 1763900000223.456);
  assert.equal(h.payloadOffset, 56);
  assert.equal(h.payloadLength, 8);
  const out = new Float32Array(4);
  pcmS16ToStereo(buf, h.payloadOffset, h.frames, h.channels, out);
  assert.deepEqual([...out], [100 / 32768, -100 / 32768, 32767 / 32768, -1]);
});

test("round-trips the server's test frame and its s16 conversion", () => {
  const buf = encodeFrame(HEADER, SAMPLES);
  assert.equal(buf.byteLength, HEADER_LEN + 16);
  const h = decodeFrame(buf);
  assert.equal(h.flags, FLAG_UNDERRUN_FILL);
  assert.equal(h.underrunFill, true);
  assert.equal(h.sequence, 7);
  assert.equal(h.position, 28);
  assert.equal(h.sentUnixNs, HEADER.sentUnixNs);
  const pcm = [...new Int16Array(buf, HEADER_LEN)];
  assert.deepEqual(pcm, [0, 32767, -32767, 16384, -8192, 32767, -32767, 0]);
});

test("accepts Uint8Array views at any offset", () => {
  const frame = new Uint8Array(encodeFrame(HEADER, SAMPLES));
  const big = new Uint8Array(frame.length + 3);
  big.set(frame, 3);
  const view = big.subarray(3);
  const h = decodeFrame(view);
  assert.equal(h.payloadOffset, 3 + HEADER_LEN);
  const out = new Float32Array(8);
  pcmS16ToStereo(big.buffer, h.payloadOffset, h.frames, h.channels, out); // odd offset: DataView path
  assert.ok(Math.abs(out[1] - 32767 / 32768) < 1e-9);
  assert.ok(Math.abs(out[3] - 16384 / 32768) < 1e-9);
});

test("finds the payload at header_len, not at a fixed 56", () => {
  const base = new Uint8Array(encodeFrame({ ...HEADER, frames: 1 }, [0.5, -0.5]));
  const ext = new Uint8Array(base.length + 8);
  ext.set(base.subarray(0, HEADER_LEN));
  ext[5] = HEADER_LEN + 8; // a future header with 8 more bytes
  ext.set(base.subarray(HEADER_LEN), HEADER_LEN + 8);
  const h = decodeFrame(ext);
  assert.equal(h.payloadOffset, 64);
  const out = new Float32Array(2);
  pcmS16ToStereo(ext.buffer, h.payloadOffset, 1, 2, out);
  assert.ok(Math.abs(out[0] - 16384 / 32768) < 1e-4);
});

test("rejects damaged frames like FrameHeader::decode", () => {
  const good = new Uint8Array(encodeFrame(HEADER, SAMPLES));
  assert.equal(errorCode(good.slice(0, 10)), "truncated");
  assert.equal(errorCode(good.slice(0, good.length - 1)), "payload_length");
  const extra = new Uint8Array(good.length + 2);
  extra.set(good);
  assert.equal(errorCode(extra), "payload_length");
  const mutate = (i, b) => {
    const c = good.slice();
    c[i] = b;
    return c;
  };
  assert.equal(errorCode(mutate(0, 0x58)), "bad_magic");
  assert.equal(errorCode(mutate(4, 9)), "version");
  assert.equal(errorCode(mutate(4, 1)), "version"); // a v1 frame
  assert.equal(errorCode(mutate(6, 77)), "codec");
  assert.equal(errorCode(mutate(6, 0)), "codec");
  assert.equal(errorCode(mutate(6, 4)), "codec");
  assert.equal(errorCode(mutate(20, 99)), "payload_length"); // announced length disagrees
  assert.equal(errorCode(mutate(5, 200)), "truncated"); // header_len beyond the message
  assert.equal(errorCode(good), null);
});

test("decodes an Opus frame written byte by byte: five length-prefixed packets", () => {
  const sizes = [323, 317, 321, 437, 294];
  const payload = sizes.reduce((a, n) => a + 2 + n, 0);
  const buf = new ArrayBuffer(HEADER_LEN + payload);
  const v = new DataView(buf);
  [0x41, 0x55, 0x52, 0x41, 2, 56, 2, 2].forEach((b, i) => v.setUint8(i, b));
  v.setUint32(8, 48000, true);
  v.setUint32(12, 4800, true); // samples per channel it decodes to, not a payload size
  v.setUint32(20, payload, true);
  v.setBigUint64(24, 17961722018n, true);
  v.setBigUint64(32, 86216265686400n, true);
  let at = HEADER_LEN;
  sizes.forEach((n, i) => {
    v.setUint16(at, n, true);
    new Uint8Array(buf, at + 2, n).fill(0xa0 + i);
    at += 2 + n;
  });
  const h = decodeFrame(buf);
  assert.equal(h.codec, CODEC_OPUS);
  assert.equal(h.codecName, "opus");
  assert.equal(h.frames, 4800);
  assert.equal(h.payloadLength, payload);
  assert.equal(h.position, 86216265686400);
  const packets = splitPackets(buf, h.payloadOffset, h.payloadLength);
  assert.deepEqual(packets.map((p) => p.byteLength), sizes);
  packets.forEach((p, i) => assert.ok(p.every((b) => b === 0xa0 + i)));
  assert.equal(packets[0].buffer, buf); // views, not copies
  assert.equal(packets[0].byteOffset, HEADER_LEN + 2);
});

test("decodes a FLAC frame of two whole FLAC frames", () => {
  const flacFrames = [bytes(3092, 0xf8), bytes(6177, 0x7a)];
  const buf = encodePayloadFrame(
    { codec: CODEC_FLAC, channels: 2, frames: 4800, sequence: 3, position: 14400, flags: FLAG_UNDERRUN_FILL },
    joinPackets(flacFrames),
  );
  assert.equal(buf.byteLength, HEADER_LEN + 4 + 3092 + 6177);
  const h = decodeFrame(buf);
  assert.equal(h.codec, CODEC_FLAC);
  assert.equal(h.codecName, "flac");
  assert.equal(h.underrunFill, true);
  assert.equal(h.sequence, 3);
  const packets = packetsOf(buf);
  assert.deepEqual(packets.map((p) => p.byteLength), [3092, 6177]);
  assert.deepEqual([packets[0][0], packets[1][6176]], [0xf8, 0x7a]);
  // The same from a Uint8Array view at an odd offset.
  const big = new Uint8Array(buf.byteLength + 5);
  big.set(new Uint8Array(buf), 5);
  const view = big.subarray(5);
  const hv = decodeFrame(view);
  assert.deepEqual(splitPackets(view, hv.payloadOffset, hv.payloadLength).map((p) => p.byteLength), [3092, 6177]);
  assert.deepEqual(splitPackets(big.buffer, hv.payloadOffset, hv.payloadLength).map((p) => p.byteLength), [3092, 6177]);
});

test("rejects truncated and empty packets", () => {
  const frame = (payload) => encodePayloadFrame({ codec: CODEC_OPUS, frames: 4800 }, payload);
  const good = joinPackets([bytes(10, 1), bytes(20, 2)]);
  assert.equal(errorCode(frame(good), packetsOf), null);
  assert.equal(errorCode(frame(good.slice(0, good.length - 1)), packetsOf), "packet_length"); // last packet short
  assert.equal(errorCode(frame(good.slice(0, 13)), packetsOf), "packet_length"); // half a length prefix
  const long = good.slice();
  long[0] = 200; // claims more than the payload holds
  assert.equal(errorCode(frame(long), packetsOf), "packet_length");
  assert.equal(errorCode(frame(new Uint8Array([0, 0, 5, 0, 1, 2, 3, 4, 5])), packetsOf), "packet_length"); // empty packet
  assert.equal(errorCode(new Uint8Array(0), (b) => splitPackets(b, 0, 0)), "packet_length");
  // The length bounds the split: bytes after the payload are not read as packets.
  const buf = new Uint8Array([...good, 9, 9, 9]);
  assert.equal(splitPackets(buf, 0, good.length).length, 2);
  assert.equal(errorCode(buf, (b) => splitPackets(b, 0, good.length + 1)), "packet_length");
  assert.throws(() => joinPackets([new Uint8Array(0)]), RangeError);
});

test("coded frames: the announced length must be the payload's, and not zero", () => {
  for (const codec of [CODEC_OPUS, CODEC_FLAC]) {
    const payload = joinPackets([bytes(100, 7)]);
    const frame = (h, p = payload) => encodePayloadFrame({ codec, frames: 4800, ...h }, p);
    assert.equal(errorCode(frame({})), null);
    assert.equal(errorCode(frame({ announced: payload.length + 1 })), "payload_length");
    assert.equal(errorCode(frame({ announced: payload.length - 1 })), "payload_length");
    assert.equal(errorCode(frame({ announced: 0 })), "payload_length");
    assert.equal(errorCode(frame({}, new Uint8Array(0))), "payload_length"); // empty payload
    const cut = new Uint8Array(frame({})).slice(0, HEADER_LEN + payload.length - 3);
    assert.equal(errorCode(cut), "payload_length");
    // The PCM size rule does not apply to coded frames: any frame count goes.
    assert.equal(decodeFrame(frame({ frames: 960, channels: 1 })).frames, 960);
  }
  // ... and PCM keeps it: an announced length that matches a wrong payload is still refused.
  const pcm = new Uint8Array(encodeFrame(HEADER, SAMPLES));
  const shortPcm = pcm.slice(0, pcm.length - 2);
  new DataView(shortPcm.buffer).setUint32(20, 14, true);
  assert.equal(errorCode(shortPcm), "payload_length");
  assert.equal(errorCode(encodeFrame({ frames: 0 }, [])), "payload_length"); // empty, as the server has it
});

test("codec names, setup bytes and the codec delay", () => {
  assert.deepEqual(CODEC_NAMES, { 1: "pcm_s16le", 2: "opus", 3: "flac" });
  assert.equal(codecName("opus"), "opus");
  assert.equal(codecName("flac"), "flac");
  assert.equal(codecName("pcm"), "pcm_s16le");
  assert.equal(codecName("pcm_s16le"), "pcm_s16le");
  for (const bad of ["mp3", "OPUS", "", "toString", null, undefined, 2]) assert.equal(codecName(bad), null);
  // The server's OpusHead: 19 bytes, version 1, 2 channels, pre-skip 312, input rate 48000.
  const head = decodeBase64("T3B1c0hlYWQBAjgBgLsAAAAAAA==");
  assert.equal(head.length, 19);
  assert.equal(new TextDecoder().decode(head.subarray(0, 8)), "OpusHead");
  assert.deepEqual([head[8], head[9], head[10] | (head[11] << 8)], [1, 2, 312]);
  assert.equal(codecDelayMs({ codec: "opus", pre_skip: 312 }), 6.5);
  assert.equal(codecDelayMs({ codec: "flac" }), 0);
  assert.equal(codecDelayMs({ codec: "pcm_s16le", pre_skip: 312 }), 0);
  assert.equal(codecDelayMs(null), 0);
});

test("converts mono and multichannel payloads to stereo", () => {
  const mono = encodeFrame({ channels: 1, frames: 2 }, [0.5, -0.25]);
  const h = decodeFrame(mono);
  const out = new Float32Array(4);
  pcmS16ToStereo(mono, h.payloadOffset, 2, 1, out);
  assert.deepEqual([...out].map((x) => Math.round(x * 32768)), [16384, 16384, -8192, -8192]);
  const quad = encodeFrame({ channels: 4, frames: 1 }, [0.1, 0.2, 0.3, 0.4]);
  const q = decodeFrame(quad);
  pcmS16ToStereo(quad, q.payloadOffset, 1, 4, out);
  assert.deepEqual([out[0], out[1]].map((x) => Math.round(x * 32768)), [3277, 6553]);
});

test("keeps microsecond precision of Unix nanoseconds", () => {
  assert.equal(nsToMs(1763900000123456789n), 1763900000123.456);
  assert.equal(nsToMs(0n), 0);
});

test("stats messages are always valid for the server", () => {
  const cases = [
    [{ bufferMs: 240.55, underruns: 2, latencyMs: 310.24 }, { buffer_ms: 240.6, underruns: 2, latency_ms: 310.2 }],
    [{ bufferMs: 120, underruns: 0, latencyMs: null }, { buffer_ms: 120, underruns: 0 }],
    [{ bufferMs: -5, underruns: -1, latencyMs: -3 }, { buffer_ms: 0, underruns: 0 }],
    [{ bufferMs: 1e9, underruns: 1.7, latencyMs: 1e12 }, { buffer_ms: STATS_LIMIT_MS, underruns: 1, latency_ms: STATS_LIMIT_MS }],
    [{ bufferMs: 10, underruns: NaN, latencyMs: Infinity }, { buffer_ms: 10, underruns: 0 }],
    [{ bufferMs: 10, underruns: 3, latencyMs: NaN }, { buffer_ms: 10, underruns: 3 }],
    [{ bufferMs: 10, underruns: 0, decodeErrors: 0 }, { buffer_ms: 10, underruns: 0, decode_errors: 0 }],
    [{ bufferMs: 10, underruns: 0, latencyMs: 90, decodeErrors: 4 }, { buffer_ms: 10, underruns: 0, latency_ms: 90, decode_errors: 4 }],
    [{ bufferMs: 10, underruns: 0, decodeErrors: -2 }, { buffer_ms: 10, underruns: 0, decode_errors: 0 }],
    [{ bufferMs: 10, underruns: 0, decodeErrors: 2.9 }, { buffer_ms: 10, underruns: 0, decode_errors: 2 }],
    [{ bufferMs: 10, underruns: 0, decodeErrors: NaN }, { buffer_ms: 10, underruns: 0, decode_errors: 0 }],
    [{ bufferMs: 10, underruns: 0, decodeErrors: null }, { buffer_ms: 10, underruns: 0 }],
  ];
  for (const [input, want] of cases) {
    const msg = statsMessage(input);
    assert.deepEqual(msg, { type: "stats", ...want });
    assert.ok(isValidStats(msg), JSON.stringify(msg));
    assert.ok(isValidStats(JSON.parse(JSON.stringify(msg))));
  }
  assert.equal(statsMessage({ bufferMs: NaN, underruns: 0 }), null);
  assert.equal(statsMessage({ bufferMs: Infinity, underruns: 0 }), null);
  assert.equal(isValidStats({ type: "stats", buffer_ms: 1, underruns: 0, extra: 1 }), false);
  assert.equal(isValidStats({ type: "stats", buffer_ms: 600001, underruns: 0 }), false);
  assert.equal(isValidStats({ type: "stats", buffer_ms: 1, underruns: 0, decode_errors: -1 }), false);
  assert.equal(isValidStats({ type: "stats", buffer_ms: 1, underruns: 0, decode_errors: 1.5 }), false);
});

test("clock offset comes from the lowest-RTT ping", () => {
  const c = new ClockSync({ window: 4 });
  assert.equal(c.known, false);
  // Server is 1000 ms ahead. A slow sample with asymmetric delay would suggest another offset.
  c.add(0, 80, 1000 + 70); // rtt 80, reply delayed: offset estimate 1030
  assert.equal(c.offsetMs, 1030);
  c.add(100, 104, 1000 + 102); // rtt 4: offset 1000
  assert.equal(c.offsetMs, 1000);
  assert.equal(c.rttMs, 4);
  c.add(200, 260, 1000 + 250); // worse sample does not win
  assert.equal(c.offsetMs, 1000);
  assert.equal(c.toServer(5000), 6000);
  assert.equal(c.toClient(6000), 5000);
  // The good sample leaves the window after `window` newer ones.
  for (let i = 0; i < 4; i++) c.add(300 + i * 100, 320 + i * 100, 1000 + 310 + i * 100 + 2);
  assert.equal(c.offsetMs, 1002);
  assert.equal(c.add(10, 5, 0), false); // negative RTT is ignored
});
