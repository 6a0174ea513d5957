// Auralis wire protocol v2, client side: audio frame decoding (PCM, Opus and FLAC payloads), PCM
// conversion, the messages the player sends, and the ping/pong clock estimate. Pure module: no DOM,
// importable from Node. The byte layout is documented in docs/protocol.md.

export const PROTOCOL_VERSION = 2;
export const MAGIC = "AURA";
export const HEADER_LEN = 56;
export const CODEC_PCM_S16LE = 1;
export const CODEC_OPUS = 2;
export const CODEC_FLAC = 3;
export const CODEC_NAMES = { [CODEC_PCM_S16LE]: "pcm_s16le", [CODEC_OPUS]: "opus", [CODEC_FLAC]: "flac" };
/** Codec ids by name, as a client names them (`?codec=`, `hello`); `pcm` is PCM, as on the server. */
export const CODEC_IDS = { pcm_s16le: CODEC_PCM_S16LE, pcm: CODEC_PCM_S16LE, opus: CODEC_OPUS, flac: CODEC_FLAC };

/** The canonical name of a codec a client names, or null for an unknown one. */
export function codecName(name) {
  const id = typeof name === "string" && Object.hasOwn(CODEC_IDS, name) ? CODEC_IDS[name] : undefined;
  return id === undefined ? null : CODEC_NAMES[id];
}

export const FLAG_UNDERRUN_FILL = 0x0001;
export const FLAG_DISCONTINUITY = 0x0002;
/** Sent again for a resume (`resume_from` on the stream URL): audio this client missed. */
export const FLAG_RESUMED = 0x0004;

/** `stats` values outside 0..STATS_LIMIT_MS are refused by the server. */
export const STATS_LIMIT_MS = 600000;

/** A binary message that is not a valid v2 audio frame (or payload). `code` says what is wrong. */
export class FrameError extends Error {
  constructor(code, message) {
    super(message);
    this.name = "FrameError";
    this.code = code;
  }
}

function bytesOf(buf) {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return new Uint8Array(buf);
}

/** Unix nanoseconds (u64, beyond 2^53) to milliseconds as a double, keeping µs precision. */
export function nsToMs(ns) {
  return Number(ns / 1000n) / 1000;
}

/**
 * Parses and checks an audio frame, with the same rules as the server's `FrameHeader::decode`:
 * a PCM payload is frames x channels x 2 bytes; an Opus or FLAC payload is as long as the header
 * announces; none is empty. Returns the header fields plus where the payload is; throws FrameError
 * otherwise. `sequence` and `position` are Numbers (exact below 2^53, see docs/protocol.md).
 */
export function decodeFrame(buf) {
  const b = bytesOf(buf);
  const len = b.byteLength;
  if (len < HEADER_LEN) throw new FrameError("truncated", `frame shorter than its header (${len} bytes)`);
  const v = new DataView(b.buffer, b.byteOffset, len);
  if (b[0] !== 0x41 || b[1] !== 0x55 || b[2] !== 0x52 || b[3] !== 0x41) throw new FrameError("bad_magic", "bad magic");
  if (b[4] !== PROTOCOL_VERSION) throw new FrameError("version", `unsupported protocol version ${b[4]}`);
  const headerLen = Math.max(b[5], HEADER_LEN); // fields may be added after 56; never fewer
  if (len < headerLen) throw new FrameError("truncated", `frame shorter than its header (${len} bytes)`);
  const codec = b[6];
  if (!Object.hasOwn(CODEC_NAMES, codec)) throw new FrameError("codec", `unknown codec ${codec}`);
  const channels = b[7];
  const frames = v.getUint32(12, true);
  const announced = v.getUint32(20, true);
  const expected = codec === CODEC_PCM_S16LE ? frames * channels * 2 : announced;
  const payloadLength = len - headerLen;
  if (payloadLength !== expected || announced !== payloadLength || payloadLength === 0) {
    throw new FrameError("payload_length", `payload length ${payloadLength} does not match header (${expected})`);
  }
  const flags = v.getUint16(16, true);
  const renderedUnixNs = v.getBigUint64(40, true);
  const sentUnixNs = v.getBigUint64(48, true);
  return {
    codec,
    codecName: CODEC_NAMES[codec],
    channels,
    sampleRate: v.getUint32(8, true),
    frames,
    flags,
    underrunFill: (flags & FLAG_UNDERRUN_FILL) !== 0,
    discontinuity: (flags & FLAG_DISCONTINUITY) !== 0,
    resumed: (flags & FLAG_RESUMED) !== 0,
    sequence: Number(v.getBigUint64(24, true)),
    position: Number(v.getBigUint64(32, true)),
    renderedUnixNs,
    sentUnixNs,
    renderedUnixMs: nsToMs(renderedUnixNs),
    sentUnixMs: nsToMs(sentUnixNs),
    headerLen,
    payloadOffset: b.byteOffset + headerLen,
    payloadLength,
  };
}

/**
 * Splits an Opus or FLAC payload into its packets: each is a u16 little-endian length, then that
 * many bytes (one Opus packet, or one whole FLAC frame). `buffer` holds the frame, `offset` and
 * `length` say where the payload is (decodeFrame's payloadOffset and payloadLength). Returns views
 * into `buffer`, no copies. Throws FrameError("packet_length") when a packet runs past the end of
 * the payload or is empty, and for an empty payload.
 */
export function splitPackets(buffer, offset = 0, length = undefined) {
  const whole = bytesOf(buffer);
  const end = length === undefined ? whole.byteLength : offset - whole.byteOffset + length;
  const b = new Uint8Array(whole.buffer, whole.byteOffset, Math.min(whole.byteLength, Math.max(0, end)));
  let at = offset - whole.byteOffset;
  if (end > whole.byteLength || at < 0 || at >= b.byteLength) {
    throw new FrameError("packet_length", "no packet in the payload");
  }
  const packets = [];
  while (at < b.byteLength) {
    if (b.byteLength - at < 2) throw new FrameError("packet_length", `packet ${packets.length + 1}: truncated length prefix`);
    const n = b[at] | (b[at + 1] << 8);
    at += 2;
    if (n === 0) throw new FrameError("packet_length", `packet ${packets.length + 1} is empty`);
    if (at + n > b.byteLength) {
      throw new FrameError("packet_length", `packet ${packets.length + 1} runs past the payload (${n} bytes, ${b.byteLength - at} left)`);
    }
    packets.push(b.subarray(at, at + n));
    at += n;
  }
  return packets;
}

/** The inverse of splitPackets: packets (Uint8Arrays of 1..65535 bytes) into one payload. */
export function joinPackets(packets) {
  const out = new Uint8Array(packets.reduce((a, p) => a + 2 + p.byteLength, 0));
  let at = 0;
  for (const p of packets) {
    if (p.byteLength === 0 || p.byteLength > 0xffff) throw new RangeError(`packet of ${p.byteLength} bytes`);
    out[at] = p.byteLength & 0xff;
    out[at + 1] = p.byteLength >> 8;
    out.set(p, at + 2);
    at += 2 + p.byteLength;
  }
  return out;
}

/** Base64 (a `welcome`'s `format.setup`) to bytes. */
export function decodeBase64(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * How far a stream's decoded audio lags its frame positions, in ms: Opus's pre_skip (counted at
 * 48 kHz whatever the stream rate), nothing for PCM and FLAC. `format` is a `welcome`'s format.
 */
export function codecDelayMs(format) {
  if (!format || format.codec !== "opus" || !(format.pre_skip > 0)) return 0;
  return (format.pre_skip / 48000) * 1000;
}

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Converts an s16le interleaved payload to interleaved stereo float (-1..1) in `out`, starting at
 * frame `outFrame`. Mono is copied to both sides; channels beyond two are dropped.
 * `buffer` is the ArrayBuffer holding the frame, `offset` the payload's byte offset.
 */
export function pcmS16ToStereo(buffer, offset, frames, channels, out, outFrame = 0) {
  const scale = 1 / 32768;
  let o = outFrame * 2;
  if (LITTLE_ENDIAN && offset % 2 === 0) {
    const s = new Int16Array(buffer, offset, frames * channels);
    if (channels === 2) {
      for (let i = 0, n = frames * 2; i < n; i++) out[o + i] = s[i] * scale;
    } else if (channels === 1) {
      for (let i = 0; i < frames; i++, o += 2) out[o] = out[o + 1] = s[i] * scale;
    } else {
      for (let i = 0, k = 0; i < frames; i++, k += channels, o += 2) {
        out[o] = s[k] * scale;
        out[o + 1] = s[k + 1] * scale;
      }
    }
    return;
  }
  const v = new DataView(buffer, offset, frames * channels * 2);
  const step = channels * 2;
  const right = channels > 1 ? 2 : 0;
  for (let i = 0, k = 0; i < frames; i++, k += step, o += 2) {
    out[o] = v.getInt16(k, true) * scale;
    out[o + 1] = v.getInt16(k + right, true) * scale;
  }
}

/** The server's f32 -> s16 conversion: round(clamp(x, -1, 1) * 32767). */
export function floatToS16(x) {
  return Math.round(Math.min(1, Math.max(-1, x)) * 32767);
}

function writeHeader(v, h, codec, channels, frames, payload) {
  for (let i = 0; i < 4; i++) v.setUint8(i, MAGIC.charCodeAt(i));
  v.setUint8(4, h.version ?? PROTOCOL_VERSION);
  v.setUint8(5, HEADER_LEN);
  v.setUint8(6, codec);
  v.setUint8(7, channels);
  v.setUint32(8, h.sampleRate ?? 48000, true);
  v.setUint32(12, frames, true);
  v.setUint16(16, h.flags ?? 0, true);
  v.setUint16(18, 0, true);
  v.setUint32(20, payload, true);
  v.setBigUint64(24, BigInt(h.sequence ?? 0), true);
  v.setBigUint64(32, BigInt(h.position ?? 0), true);
  v.setBigUint64(40, BigInt(h.renderedUnixNs ?? 0), true);
  v.setBigUint64(48, BigInt(h.sentUnixNs ?? 0), true);
}

/**
 * Encodes a PCM frame (the inverse of decodeFrame). `samples` is interleaved float, -1..1.
 * The player never sends audio; this serves tests and local tooling.
 */
export function encodeFrame(h, samples) {
  const channels = h.channels ?? 2;
  const frames = h.frames ?? samples.length / channels;
  const payload = frames * channels * 2;
  const buf = new ArrayBuffer(HEADER_LEN + payload);
  const v = new DataView(buf);
  writeHeader(v, h, h.codec ?? CODEC_PCM_S16LE, channels, frames, payload);
  for (let i = 0; i < frames * channels; i++) v.setInt16(HEADER_LEN + i * 2, floatToS16(samples[i] ?? 0), true);
  return buf;
}

/**
 * Encodes a frame around an already encoded payload (Opus or FLAC packets, see joinPackets).
 * `h.frames` is the number of frames the payload decodes to. For tests and local tooling.
 */
export function encodePayloadFrame(h, payload) {
  const bytes = bytesOf(payload);
  const buf = new ArrayBuffer(HEADER_LEN + bytes.byteLength);
  writeHeader(new DataView(buf), h, h.codec ?? CODEC_OPUS, h.channels ?? 2, h.frames ?? 4800, h.announced ?? bytes.byteLength);
  new Uint8Array(buf, HEADER_LEN).set(bytes);
  return buf;
}

const saneMs = (x) => typeof x === "number" && Number.isFinite(x) && x >= 0;

const count = (n) => (Number.isFinite(n) && n > 0 ? Math.floor(n) : 0);

/**
 * The `stats` report, or null when there is nothing valid to send. buffer_ms is clamped into the
 * accepted range; latency_ms is left out when unknown, negative (a clock estimate still settling)
 * or not finite, and capped at the limit. underruns and decode_errors (chunks that could not be
 * decoded) must be the counts for this connection; decode_errors is sent when given.
 */
export function statsMessage({ bufferMs, underruns, latencyMs, decodeErrors }) {
  if (typeof bufferMs !== "number" || !Number.isFinite(bufferMs)) return null;
  const msg = {
    type: "stats",
    buffer_ms: Math.round(Math.min(STATS_LIMIT_MS, Math.max(0, bufferMs)) * 10) / 10,
    underruns: count(underruns),
  };
  if (saneMs(latencyMs)) msg.latency_ms = Math.round(Math.min(STATS_LIMIT_MS, latencyMs) * 10) / 10;
  if (decodeErrors !== undefined && decodeErrors !== null) msg.decode_errors = count(decodeErrors);
  return msg;
}

/** Server-side check of a `stats` message (mirrors src/stream/protocol.rs), for tests. */
export function isValidStats(msg) {
  const keys = Object.keys(msg);
  const allowed = new Set(["type", "buffer_ms", "underruns", "latency_ms", "decode_errors"]);
  if (msg.type !== "stats" || keys.some((k) => !allowed.has(k))) return false;
  const inRange = (x) => typeof x === "number" && Number.isFinite(x) && x >= 0 && x <= STATS_LIMIT_MS;
  const isCount = (x) => Number.isInteger(x) && x >= 0;
  if (!inRange(msg.buffer_ms)) return false;
  if (!isCount(msg.underruns)) return false;
  if (msg.decode_errors !== undefined && !isCount(msg.decode_errors)) return false;
  return msg.latency_ms === undefined || inRange(msg.latency_ms);
}

/**
 * Server clock estimate from ping/pong round trips. Each sample says: the server's clock read
 * `serverMs` somewhere between our `sentMs` and `receivedMs` (client wall-clock ms). Assuming the
 * midpoint, offset = server - client. The sample with the smallest round trip has the least room
 * for queueing asymmetry, so the estimate is the offset of the lowest-RTT sample in a sliding window.
 */
export class ClockSync {
  constructor({ window = 16 } = {}) {
    this.window = window;
    this.samples = [];
    this.offsetMs = null;
    this.rttMs = null;
  }

  add(sentMs, receivedMs, serverMs) {
    const rtt = receivedMs - sentMs;
    if (!Number.isFinite(rtt) || rtt < 0 || !Number.isFinite(serverMs)) return false;
    this.samples.push({ rtt, offset: serverMs - (sentMs + rtt / 2) });
    if (this.samples.length > this.window) this.samples.shift();
    const best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
    this.offsetMs = best.offset;
    this.rttMs = best.rtt;
    return true;
  }

  get known() {
    return this.offsetMs !== null;
  }

  /** Server wall clock (ms) at client wall clock `clientMs`. */
  toServer(clientMs) {
    return clientMs + (this.offsetMs ?? 0);
  }

  /** Client wall clock (ms) at server wall clock `serverMs`. */
  toClient(serverMs) {
    return serverMs - (this.offsetMs ?? 0);
  }
}
