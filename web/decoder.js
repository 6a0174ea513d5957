// Opus and FLAC payloads -> interleaved stereo float, with WebCodecs' AudioDecoder on the main
// thread (never on the audio thread). One EncodedAudioChunk per packet; the decoded audio of a
// frame comes back asynchronously, in decoder output callbacks, and is handed on per frame, in
// the order the frames were given. The browser objects are passed in, so Node tests can run this
// with a stand-in decoder.

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
