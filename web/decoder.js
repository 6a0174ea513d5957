// Opus and FLAC payloads -> interleaved stereo float, off the audio thread.
//
// FrameDecoder uses WebCodecs' AudioDecoder on the main thread: one EncodedAudioChunk per packet;
// the decoded audio of a frame comes back asynchronously, in decoder output callbacks, and is
// handed on per frame, in the order the frames were given. WasmOpusDecoder does the same for Opus
// with the vendored WebAssembly libopus (opus-decoder.min.js, fetched only when loadWasmOpus is
// called), in a Worker where the browser allows one: the fallback for browsers without WebCodecs
// (or without its Opus decoder). The browser objects are passed in, so Node tests can run this
// with stand-ins.

import { decodeBase64, splitPackets } from "./protocol.js";

/** Codecs this module decodes (through WebCodecs). */
export const WEBCODECS_CODECS = ["opus", "flac"];

/**
 * How long the oldest frame may wait for its audio before the decoder is flushed. Audio comes
 * back within a few ms; a damaged chunk can instead give nothing, and no error either until the
 * next chunk is decoded a chunk later (Chromium's FLAC): the frames behind it would wait, and the
 * buffer drain. A flush makes the decoder hand back (or fail) everything it was given.
 */
export const FLUSH_AFTER_MS = 40;

/** The AudioDecoder configuration for a `welcome`'s format: `setup` becomes `description`. */
export function decoderConfig(format) {
  const config = { codec: format.codec, sampleRate: format.sample_rate, numberOfChannels: format.channels };
  if (typeof format.setup === "string" && format.setup.length > 0) config.description = decodeBase64(format.setup);
  return config;
}

/** Same codec, rate, channels and setup: a decoder configured for one can decode the other. */
export function sameConfig(a, b) {
  if (!a || !b || a.codec !== b.codec || a.sampleRate !== b.sampleRate || a.numberOfChannels !== b.numberOfChannels) return false;
  const x = a.description;
  const y = b.description;
  if (!x || !y) return !x && !y;
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Whether this browser's WebCodecs decodes `codec` (false without WebCodecs, never throws). */
export async function webCodecsSupports(codec, { sampleRate = 48000, channels = 2, AudioDecoder = globalThis.AudioDecoder } = {}) {
  if (typeof AudioDecoder !== "function" || typeof AudioDecoder.isConfigSupported !== "function") return false;
  try {
    const r = await AudioDecoder.isConfigSupported({ codec, sampleRate, numberOfChannels: channels });
    return Boolean(r && r.supported);
  } catch {
    return false;
  }
}

/**
 * Decodes the frames of one codec in order.
 *
 *   const d = new FrameDecoder(config, { onFrame, onError });
 *   d.decode(job, frameBuffer, header);   // job: anything; it comes back with the audio
 *
 * onFrame(job, samples, frames, whole): `samples` is a new Float32Array of `frames` interleaved
 * stereo frames (mono is copied to both sides, channels beyond two are dropped). It may hold fewer
 * frames than the header says: a decoder drops its start-up delay (Opus's pre-skip) from the
 * first output after it is configured. `whole` is false when a packet gave no audio (a damaged
 * chunk the decoder skipped without an error).
 * onError(jobs, error, reopenError): the decoder failed; `jobs` will never be decoded. The
 * decoder is then configured afresh, so the frames after them decode again (reopenError says why
 * not, when that failed too). `delayMs` is the codec's delay (codecDelayMs): the decoder may shift
 * output timestamps by it.
 */
export class FrameDecoder {
  constructor(config, {
    onFrame, onError, delayMs = 0, flushAfterMs = FLUSH_AFTER_MS,
    AudioDecoder = globalThis.AudioDecoder, EncodedAudioChunk = globalThis.EncodedAudioChunk, now = () => performance.now(),
  }) {
    this.config = config;
    this.delayUs = delayMs * 1000;
    this.flushAfterMs = flushAfterMs;
    this.now = now;
    this.watchTimer = null;
    this.flushing = false;
    this.onFrame = onFrame;
    this.onError = onError;
    this.AudioDecoder = AudioDecoder;
    this.EncodedAudioChunk = EncodedAudioChunk;
    this.jobs = []; // frames given to the decoder and not yet handed on, oldest first
    this.planes = [new Float32Array(0), new Float32Array(0)];
    this.decoder = null;
    this.generation = 0;
    this.open();
  }

  /** Creates and configures the AudioDecoder. Throws when the browser refuses the configuration. */
  open() {
    const generation = ++this.generation;
    this.decoder = new this.AudioDecoder({
      output: (data) => {
        if (generation === this.generation) this.output(data);
        else data.close();
      },
      error: (e) => {
        if (generation === this.generation) this.failed(e);
      },
    });
    this.decoder.configure(this.config);
  }

  /** Frames waiting for their audio. */
  get pending() {
    return this.jobs.length;
  }

  /**
   * Queues one frame: `buffer` holds it, `h` is decodeFrame's header. Throws FrameError for a
   * payload that does not split into packets (nothing is queued then).
   */
  decode(job, buffer, h) {
    const packets = splitPackets(buffer, h.payloadOffset, h.payloadLength);
    const rate = h.sampleRate > 0 ? h.sampleRate : this.config.sampleRate;
    const us = (frame) => Math.round((frame / rate) * 1e6);
    const packetFrames = h.frames / packets.length;
    const entry = {
      job, packets: packets.length, outputs: 0, frames: 0, expected: h.frames, at: this.now(),
      startUs: us(h.position), endUs: us(h.position + h.frames), packetUs: us(packetFrames),
      samples: new Float32Array(Math.max(1, h.frames) * 2),
    };
    this.jobs.push(entry);
    try {
      for (let i = 0; i < packets.length; i++) {
        const chunk = new this.EncodedAudioChunk({ type: "key", timestamp: us(h.position + i * packetFrames), data: packets[i] });
        this.decoder.decode(chunk);
      }
    } catch (e) {
      this.failed(e); // a closed decoder, or a chunk it cannot take
      return;
    }
    this.watch();
  }

  /** Flushes the decoder when the oldest frame waits too long (see FLUSH_AFTER_MS). */
  watch() {
    if (this.watchTimer !== null || this.flushing || this.jobs.length === 0) return;
    const wait = Math.max(0, this.jobs[0].at + this.flushAfterMs - this.now());
    this.watchTimer = setTimeout(() => {
      this.watchTimer = null;
      const head = this.jobs[0];
      if (!head || this.flushing) return;
      if (this.now() - head.at < this.flushAfterMs) {
        this.watch(); // the frame it was set for came back; watch the next one
        return;
      }
      this.flush();
    }, wait);
  }

  /** Every frame given so far comes back now: with its audio, with what the decoder gave, or failed. */
  flush() {
    if (!this.decoder) return; // could not be configured again: the owner has been told
    const generation = this.generation;
    const given = this.jobs.slice();
    this.flushing = true;
    this.flushes = (this.flushes || 0) + 1;
    this.decoder.flush().then(
      () => {
        if (generation !== this.generation) return;
        this.flushing = false;
        // All outputs of what was given before the flush have come: hand on those still short.
        while (this.jobs.length > 0 && given.includes(this.jobs[0])) this.complete();
        this.watch();
      },
      () => {
        // The decoder failed (its error callback runs failed()) or was reset or closed.
        if (generation === this.generation) this.flushing = false;
      },
    );
  }

  output(data) {
    try {
      const jobs = this.jobs;
      if (jobs.length === 0) return; // outputs of frames already given up on
      // Outputs arrive in order, one per packet, so counting them groups them by frame. Should a
      // packet give no output, the next frame's first output closes the frame before it: its
      // timestamp falls in the next frame. Timestamps are only a hint, though: Chromium counts
      // them on from the first output after configure (shifted by the codec delay, deaf to gaps in
      // the input), so one that is not in the next frame's range says nothing.
      const shift = this.delayUs + jobs[0].packetUs / 2;
      while (jobs.length > 1 && data.timestamp >= jobs[1].startUs - shift && data.timestamp < jobs[1].endUs - shift) this.complete();
      const e = jobs[0];
      this.append(e, data);
      e.outputs++;
      if (e.outputs >= e.packets) this.complete();
    } finally {
      data.close();
    }
  }

  append(e, data) {
    const n = data.numberOfFrames;
    const channels = data.numberOfChannels;
    if (this.planes[0].length < n) this.planes = [new Float32Array(n), new Float32Array(n)];
    const [left, right] = this.planes;
    data.copyTo(left, { planeIndex: 0, format: "f32-planar" });
    if (channels > 1) data.copyTo(right, { planeIndex: 1, format: "f32-planar" });
    const r = channels > 1 ? right : left;
    if ((e.frames + n) * 2 > e.samples.length) {
      const grown = new Float32Array((e.frames + n) * 2);
      grown.set(e.samples.subarray(0, e.frames * 2));
      e.samples = grown;
    }
    const out = e.samples;
    for (let i = 0, o = e.frames * 2; i < n; i++, o += 2) {
      out[o] = left[i];
      out[o + 1] = r[i];
    }
    e.frames += n;
  }

  /** Hands on the oldest frame with the audio it has. */
  complete() {
    clearTimeout(this.watchTimer);
    this.watchTimer = null;
    const e = this.jobs.shift();
    const samples = e.samples.length === e.frames * 2 ? e.samples : e.samples.slice(0, e.frames * 2);
    this.onFrame(e.job, samples, e.frames, e.outputs >= e.packets);
    this.watch();
  }

  stop() {
    clearTimeout(this.watchTimer);
    this.watchTimer = null;
    this.flushing = false;
    this.jobs = [];
  }

  failed(error) {
    const lost = this.jobs.map((e) => e.job);
    this.stop();
    try {
      if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    } catch {
      // already closed
    }
    let reopenError = null;
    try {
      this.open();
    } catch (e) {
      reopenError = e;
      this.decoder = null;
    }
    this.onError(lost, error, reopenError);
  }

  /** Drops every frame in flight (a station switch): no onFrame or onError for them. */
  reset() {
    this.stop();
    try {
      if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    } catch {
      // already closed
    }
    this.open();
  }

  close() {
    this.generation++;
    this.stop();
    try {
      if (this.decoder && this.decoder.state !== "closed") this.decoder.close();
    } catch {
      // already closed
    }
    this.decoder = null;
  }
}

// ---------------------------------------------------------------- WebAssembly Opus

/** The vendored WebAssembly Opus decoder: npm opus-decoder 0.7.12 (see opus-decoder.LICENSE). */
export const WASM_OPUS_URL = new URL("./opus-decoder.min.js", import.meta.url).href;

/** The rates libopus decodes to. */
export const OPUS_RATES = [8000, 12000, 16000, 24000, 48000];

/** The longest Opus packet the WASM decoder takes, per channel (its input buffer). */
export const WASM_PACKET_LIMIT = 3840;

/**
 * How long frames may wait for a WASM decoder that answers nothing (a Worker that died) before it
 * is replaced by one on the main thread.
 */
export const WASM_STALL_MS = 2000;

/** One 20 ms CELT packet of stereo silence: what loadWasmOpus decodes to see that it works. */
const SILENT_PACKET = [0xfc, 0xff, 0xfe];

/**
 * The package's OpusDecoder options for an AudioDecoder-style configuration (decoderConfig):
 * channels and rate, and for channel mapping family 1 or more the stream counts and mapping of the
 * OpusHead in `description`. Pre-skip 0: a live stream is joined anywhere, and the constant delay
 * is in the latency estimate already (codecDelayMs). Throws RangeError for what it cannot decode.
 */
export function wasmOpusOptions(config) {
  const channels = config.numberOfChannels;
  if (!(Number.isInteger(channels) && channels >= 1 && channels <= 255)) throw new RangeError(`cannot decode ${channels} Opus channels`);
  const sampleRate = config.sampleRate;
  if (!OPUS_RATES.includes(sampleRate)) throw new RangeError(`libopus does not decode to ${sampleRate} Hz`);
  const options = { channels, sampleRate, preSkip: 0 };
  const head = config.description ? new Uint8Array(config.description) : null;
  const isHead = head && head.length >= 19 && String.fromCharCode(...head.subarray(0, 8)) === "OpusHead";
  if (isHead && head[18] !== 0) {
    if (head.length < 21 + channels) throw new RangeError("the OpusHead is too short for its channel mapping");
    options.streamCount = head[19];
    options.coupledStreamCount = head[20];
    options.channelMappingTable = Array.from(head.subarray(21, 21 + channels));
  } else if (channels > 2) {
    throw new RangeError(`${channels} Opus channels need a channel mapping (OpusHead family 1)`);
  }
  return options;
}

/**
 * Planar decoded audio (`channelData`, `frames` long) -> a new Float32Array of interleaved stereo:
 * mono is copied to both sides, channels beyond two are dropped.
 */
export function planarToStereo(channelData, frames) {
  const out = new Float32Array(frames * 2);
  const left = channelData[0];
  const right = channelData.length > 1 ? channelData[1] : left;
  for (let i = 0, o = 0; i < frames; i++, o += 2) {
    out[o] = left[i];
    out[o + 1] = right[i];
  }
  return out;
}

/** `d.ready`, read once (the Worker variant posts a message each time it is read). */
function readyOf(d) {
  try {
    return Promise.resolve(d.ready);
  } catch (e) {
    return Promise.reject(e);
  }
}

/**
 * Lets go of a decoder from the package: a Worker is ended (`now`) or freed after what it was
 * given, one on the main thread freed after what it was given. Never throws.
 */
function release(d, after, now = false) {
  if (typeof d.terminate === "function" && now) {
    d.terminate();
    return;
  }
  after.then(() => d.free()).catch(() => {
    if (typeof d.terminate === "function") d.terminate();
  });
}

/** Rejects when `promise` has not settled within `ms`. */
function within(promise, ms, what) {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

/** Decodes a packet of silence with `d` (either variant): rejects unless that works. */
async function probe(d, ms, what) {
  const ready = readyOf(d);
  try {
    const r = await within(ready.then(() => d.decodeFrame(new Uint8Array(SILENT_PACKET))), ms, what);
    if (!r || r.samplesDecoded !== 960 || (r.errors && r.errors.length > 0)) throw new Error(`${what}: decoded ${r && r.samplesDecoded} frames of a 960-frame packet`);
  } finally {
    release(d, ready, true);
  }
}

/**
 * Loads the vendored WebAssembly Opus decoder (a script of about 86 KiB, fetched only when this is
 * called) and checks that it decodes: on the main thread, then in a Worker (`worker`), where it then
 * decodes. Resolves to `{ OpusDecoder, OpusDecoderWebWorker, worker }` (`worker`: whether decoders
 * run in one), what WasmOpusDecoder takes as `wasm`; rejects where this browser cannot run it.
 */
export async function loadWasmOpus({ url = WASM_OPUS_URL, worker = true, timeoutMs = 3000, load = (u) => import(u) } = {}) {
  if (typeof WebAssembly !== "object") throw new Error("this browser has no WebAssembly");
  await load(url);
  // A UMD script: as a module it defines its exports on the global object.
  const lib = globalThis["opus-decoder"];
  if (!lib || typeof lib.OpusDecoder !== "function") throw new Error(`${url} did not define OpusDecoder`);
  await probe(new lib.OpusDecoder({ channels: 2, preSkip: 0 }), timeoutMs, "the WASM Opus decoder");
  let inWorker = false;
  if (worker && typeof Worker === "function" && typeof lib.OpusDecoderWebWorker === "function") {
    try {
      await probe(new lib.OpusDecoderWebWorker({ channels: 2, preSkip: 0 }), timeoutMs, "the WASM Opus decoder's Worker");
      inWorker = true;
    } catch {
      // no Worker here (or a policy against blob: workers): decode on the main thread
    }
  }
  return { OpusDecoder: lib.OpusDecoder, OpusDecoderWebWorker: lib.OpusDecoderWebWorker, worker: inWorker };
}

/**
 * Decodes Opus frames in order with the WebAssembly libopus; the same interface as FrameDecoder.
 *
 *   const wasm = await loadWasmOpus();
 *   const d = new WasmOpusDecoder(config, { wasm, onFrame, onError });
 *   d.decode(job, frameBuffer, header);
 *
 * Each frame's packets go to the decoder in one call (in a Worker: one message each way), and
 * frames are handed on in the order given. onFrame(job, samples, frames, whole) as FrameDecoder's:
 * with pre-skip 0 every packet decodes whole, so `frames` is the header's. A frame with a packet
 * libopus refuses goes to onError([job], error, reopenError), and the decoder is then started
 * afresh (frames given before the error still decode in the old one). A decoder that fails or stops
 * answering (WASM_STALL_MS) loses every frame in flight, like FrameDecoder's, and is replaced by
 * one on the main thread.
 */
export class WasmOpusDecoder {
  constructor(config, { onFrame, onError, wasm, stallMs = WASM_STALL_MS, now = () => performance.now() }) {
    this.config = config;
    this.options = wasmOpusOptions(config);
    this.packetLimit = WASM_PACKET_LIMIT * this.options.channels;
    this.wasm = wasm;
    this.inWorker = Boolean(wasm.worker);
    this.onFrame = onFrame;
    this.onError = onError;
    this.stallMs = stallMs;
    this.now = now;
    this.jobs = []; // frames given and not yet handed on, oldest first
    this.backend = null; // { decoder, ready, last }
    this.answeredAt = now(); // last answer (or start of waiting): the stall watch counts from it
    this.watchTimer = null;
    this.open();
  }

  /** Creates a decoder of the package. Throws when it refuses the options. */
  open() {
    const Decoder = this.inWorker ? this.wasm.OpusDecoderWebWorker : this.wasm.OpusDecoder;
    const decoder = new Decoder(this.options);
    const ready = readyOf(decoder);
    ready.catch(() => {}); // a failure comes back through the frames given to it
    this.backend = { decoder, ready, last: ready };
  }

  /** Frames waiting for their audio. */
  get pending() {
    return this.jobs.length;
  }

  /**
   * Queues one frame: `buffer` holds it, `h` is decodeFrame's header. Throws FrameError for a
   * payload that does not split into packets (nothing is queued then).
   */
  decode(job, buffer, h) {
    const packets = splitPackets(buffer, h.payloadOffset, h.payloadLength);
    const b = this.backend;
    if (!b) throw new Error("the Opus decoder is closed");
    const entry = { job, done: false, result: null };
    if (this.jobs.length === 0) this.answeredAt = this.now();
    this.jobs.push(entry);
    const big = packets.findIndex((p) => p.byteLength > this.packetLimit);
    if (big >= 0) {
      // More than the decoder's input buffer holds: refused here, handed on in its turn.
      const message = `packet ${big + 1} has ${packets[big].byteLength} bytes, more than the decoder takes (${this.packetLimit})`;
      Promise.resolve().then(() => this.answered(entry, { errors: [{ message }], channelData: [], samplesDecoded: 0 }));
    } else {
      const run = b.ready.then(() => b.decoder.decodeFrames(packets));
      b.last = run.then(() => {}, () => {});
      run.then((r) => this.answered(entry, r), (e) => this.broke(entry, e));
    }
    this.watch();
  }

  answered(entry, result) {
    if (!this.jobs.includes(entry)) return; // reset, closed or given up on meanwhile
    this.answeredAt = this.now();
    entry.done = true;
    entry.result = result;
    while (this.jobs.length > 0 && this.jobs[0].done) {
      const e = this.jobs.shift();
      const r = e.result;
      if (r.errors && r.errors.length > 0) {
        const error = new Error(r.errors[0].message || String(r.errors[0]));
        error.name = "EncodingError";
        this.onError([e.job], error, this.restart());
      } else {
        const frames = r.samplesDecoded;
        this.onFrame(e.job, planarToStereo(r.channelData, frames), frames, frames > 0);
      }
    }
    this.watch();
  }

  /** A decode that threw (or a decoder that could not start): every frame in flight is lost. */
  broke(entry, error) {
    if (this.jobs.includes(entry)) this.failed(error instanceof Error ? error : new Error(String(error)));
  }

  /** Starts afresh after a refused packet; what the old decoder was given still decodes there. */
  restart() {
    const old = this.backend;
    try {
      this.open();
    } catch (e) {
      this.backend = null;
      return e;
    } finally {
      if (old) release(old.decoder, old.last);
    }
    return null;
  }

  /** Replaces the decoder when the oldest frame has waited WASM_STALL_MS with no answer. */
  watch() {
    if (this.watchTimer !== null || this.jobs.length === 0) return;
    const step = this.stallMs / 2;
    const armed = this.now();
    this.watchTimer = setTimeout(() => {
      this.watchTimer = null;
      if (this.jobs.length === 0) return;
      const now = this.now();
      // Much later than asked: this thread was busy, and answers may be queued behind it.
      if (now - armed > step * 1.5 + 100) this.answeredAt = Math.max(this.answeredAt, now - step);
      else if (now - this.answeredAt >= this.stallMs) {
        this.failed(new Error(`the Opus decoder${this.inWorker ? "'s Worker" : ""} answered nothing for ${Math.round(now - this.answeredAt)} ms`));
        return;
      }
      this.watch();
    }, step);
  }

  stop() {
    clearTimeout(this.watchTimer);
    this.watchTimer = null;
    this.jobs = [];
  }

  failed(error) {
    const lost = this.jobs.map((e) => e.job);
    this.stop();
    if (this.backend) release(this.backend.decoder, this.backend.last, true);
    this.backend = null;
    this.inWorker = false; // a Worker that failed once is not trusted again: decode here
    let reopenError = null;
    try {
      this.open();
    } catch (e) {
      reopenError = e;
      this.backend = null;
    }
    this.onError(lost, error, reopenError);
  }

  /** Drops every frame in flight (a station switch): no onFrame or onError for them. */
  reset() {
    this.stop();
    if (this.backend) release(this.backend.decoder, this.backend.last, true);
    this.backend = null;
    this.open();
  }

  close() {
    this.stop();
    if (this.backend) release(this.backend.decoder, this.backend.last, true);
    this.backend = null;
  }
}
