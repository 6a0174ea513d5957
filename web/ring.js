// Single-producer single-consumer ring of interleaved stereo float frames.
//
// The storage is a Float32Array of samples plus an Int32Array of two indices (read, write). Both
// indices are frame counters that only grow and wrap modulo 2^32; the capacity is a power of two,
// so `index & mask` finds the slot and `(write - read) | 0` is the fill level even across the wrap.
// The producer owns `write`, the consumer owns `read`; each publishes its index with Atomics.store
// after touching the samples, and reads the other's with Atomics.load. With a SharedArrayBuffer
// the main thread produces and the AudioWorklet consumes; without one the worklet keeps a private
// ring and fills it from posted chunks. Pure module: importable from Node and the AudioWorklet.

export const CHANNELS = 2;
export const READ = 0;
export const WRITE = 1;
const STATE_INTS = 4; // read, write, two spare slots (keeps the block 16 bytes)

export function isPowerOfTwo(n) {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export function nextPowerOfTwo(n) {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/** Frames from index `a` to index `b` (int32 counters, wrap-aware). */
export function distance(a, b) {
  return (b - a) | 0;
}

/**
 * Fades `frames` interleaved stereo frames of `samples`, from frame `from` on, in (gain 0 -> 1):
 * the start of audio written after a splice, whose end the ring's fadeTail faded out.
 */
export function fadeIn(samples, from, frames) {
  for (let i = 0, k = from * CHANNELS; i < frames; i++, k += CHANNELS) {
    const g = i / frames;
    samples[k] *= g;
    samples[k + 1] *= g;
  }
}

/** Allocates ring storage for `capacityFrames` (rounded up to a power of two). */
export function createRingStorage(capacityFrames, shared = false) {
  const cap = nextPowerOfTwo(Math.max(capacityFrames, 256));
  const Buf = shared ? SharedArrayBuffer : ArrayBuffer;
  return {
    capacity: cap,
    samples: new Float32Array(new Buf(cap * CHANNELS * 4)),
    state: new Int32Array(new Buf(STATE_INTS * 4)),
  };
}

export class Ring {
  /** `storage` as made by createRingStorage (or its two buffers after a postMessage). */
  constructor({ samples, state }) {
    const capacity = samples.length / CHANNELS;
    if (!isPowerOfTwo(capacity)) throw new RangeError(`ring capacity ${capacity} is not a power of two`);
    this.samples = samples;
    this.state = state;
    this.capacity = capacity;
    this.mask = capacity - 1;
  }

  readIndex() {
    return Atomics.load(this.state, READ);
  }

  writeIndex() {
    return Atomics.load(this.state, WRITE);
  }

  /** Frames written and not yet read. Never negative, never above the capacity. */
  available() {
    const n = distance(this.readIndex(), this.writeIndex());
    return n < 0 ? 0 : n > this.capacity ? this.capacity : n;
  }

  /** Frames the producer may write now. */
  space() {
    return this.capacity - this.available();
  }

  /**
   * Producer: appends up to `frames` frames from interleaved `src` (starting at frame `from`).
   * Returns how many fitted; the rest is not written (the ring never overwrites unread audio).
   */
  write(src, frames = src.length / CHANNELS, from = 0) {
    const n = Math.min(frames, this.space());
    if (n <= 0) return 0;
    const w = this.writeIndex();
    const slot = w & this.mask;
    const first = Math.min(n, this.capacity - slot);
    const s = from * CHANNELS;
    this.samples.set(src.subarray(s, s + first * CHANNELS), slot * CHANNELS);
    if (first < n) this.samples.set(src.subarray(s + first * CHANNELS, s + n * CHANNELS), 0);
    Atomics.store(this.state, WRITE, (w + n) | 0);
    return n;
  }

  /**
   * Producer: fades the newest `frames` unread frames out (gain 1 -> 0), so that audio written next
   * starts from silence without a step. Frames within `guard` of the read index are left alone,
   * since the consumer may be playing them right now. Returns how many frames were faded.
   */
  fadeTail(frames, guard = 0) {
    const n = Math.min(frames, this.available() - guard);
    if (n <= 0) return 0;
    const w = this.writeIndex();
    for (let i = 0; i < n; i++) {
      const g = i / n; // the newest frame ends at 0
      const k = ((w - 1 - i) & this.mask) * CHANNELS;
      this.samples[k] *= g;
      this.samples[k + 1] *= g;
    }
    return n;
  }

  /** Consumer: marks `frames` frames as read. */
  advance(frames) {
    const n = Math.max(0, Math.min(frames, this.available()));
    Atomics.store(this.state, READ, (this.readIndex() + n) | 0);
    return n;
  }

  /** Consumer: drops the oldest audio so that at most `keep` frames stay. Returns frames dropped. */
  skipTo(keep) {
    return this.advance(this.available() - Math.max(0, keep));
  }

  /** Sample offset (into `samples`) of the frame `ahead` frames past the read index. */
  slot(ahead = 0) {
    return ((this.readIndex() + ahead) & this.mask) * CHANNELS;
  }

  /** Both indices back to zero. Only while neither side is running. */
  reset() {
    Atomics.store(this.state, READ, 0);
    Atomics.store(this.state, WRITE, 0);
  }
}
