// Auralis playback processor (AudioWorklet). Plays the stream from a ring buffer, resampling from
// the stream rate to the context rate with 4-point cubic (Catmull-Rom) interpolation and a
// playback-rate trim from the main thread's drift controller. Every jump (start, rebuffer,
// backlog skip, flush) goes through a few-ms fade so nothing clicks.
//
// Two feeds: with a SharedArrayBuffer (crossOriginIsolated pages) the main thread writes into the
// shared ring directly; otherwise it posts each decoded chunk here and this processor copies it
// into a private ring. process() reads only preallocated memory: it never allocates after start-up.

import { Ring, createRingStorage, CHANNELS } from "./ring.js";

const IDLE = 0; // prebuffering or starved: output silence
const PLAYING = 1;

const NONE = 0;
const STARVE = 1; // buffer about to run dry: fade out, then rebuffer
const SKIP = 2; // backlog too deep: fade out, drop to the target, fade in
const FLUSH = 3; // drop everything written before a given point (station switch)

const SILENCE = 1e-4;

class AuralisPlayer extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const o = options.processorOptions || {};
    this.shared = Boolean(o.shared);
    this.ring = new Ring(o.shared || createRingStorage(o.capacity || 131072, false));
    this.streamRate = o.streamRate || 48000;
    this.ratio = this.streamRate / sampleRate;
    this.rate = 1;
    this.rateTarget = 1;
    this.rateSlew = 2e-6; // per render quantum: ~700 ppm/s at 44.1 kHz, a glide, never a jump
    this.startFrames = o.startFrames || 7200;
    this.targetFrames = o.targetFrames || this.startFrames; // depth kept by a backlog skip
    this.skipFrames = o.skipFrames || 48000;
    // A backlog must last this long before it is skipped: a burst reaches this thread in pieces,
    // and the skip should see all of it.
    this.skipHoldFrames = Math.round(0.025 * sampleRate);
    this.overFrames = 0;
    // False while the connection is down: running dry then is still an underrun (the listener hears
    // the outage's silence), and it is also counted apart, as the outage's.
    this.live = true;
    this.fadeFrames = Math.max(16, Math.round(((o.fadeMs || 4) / 1000) * sampleRate));
    this.fadeStep = 1 / this.fadeFrames;
    this.state = IDLE;
    this.action = NONE;
    this.gain = 0;
    this.gainTarget = 0;
    this.phase = 1;
    // Interpolation window: the last four input frames, per channel.
    this.l0 = 0; this.l1 = 0; this.l2 = 0; this.l3 = 0;
    this.r0 = 0; this.r1 = 0; this.r2 = 0; this.r3 = 0;
    this.flushUntil = -1;
    // Counters (reported on request).
    this.readTotal = 0; // frames consumed since start, skips and flushes included
    this.underruns = 0;
    this.outageUnderruns = 0; // of those, the ones while the connection was down
    this.skips = 0;
    this.overflowFrames = 0;
    this.renderedFrames = 0;
    this.nonSilentFrames = 0;
    this.firstSoundFrame = -1;
    this.depthSum = 0;
    this.depthCount = 0;
    this.lastAvail = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    switch (msg.type) {
      case "chunk": {
        // Private-ring feed. This thread is also the consumer, so it may drop the oldest audio
        // to make room: the newest audio always gets in.
        const frames = msg.samples.length / CHANNELS;
        if (msg.fadeTail) this.ring.fadeTail(this.fadeFrames);
        const over = frames - this.ring.space();
        if (over > 0) {
          this.readTotal += this.ring.advance(over);
          this.overflowFrames += over;
        }
        this.ring.write(msg.samples, frames);
        break;
      }
      case "config":
        if (msg.rate > 0) this.rateTarget = msg.rate;
        if (msg.startFrames > 0) this.startFrames = msg.startFrames;
        if (msg.targetFrames > 0) this.targetFrames = msg.targetFrames;
        if (msg.skipFrames > 0) this.skipFrames = msg.skipFrames;
        if (typeof msg.live === "boolean") this.live = msg.live;
        if (msg.streamRate > 0) {
          this.streamRate = msg.streamRate;
          this.ratio = msg.streamRate / sampleRate;
        }
        break;
      case "flush":
        this.flushUntil = msg.until;
        break;
      case "poll":
        this.port.postMessage({
          type: "report",
          id: msg.id,
          frame: currentFrame,
          readTotal: this.readTotal,
          depth: this.depthCount > 0 ? this.depthSum / this.depthCount : this.lastAvail,
          avail: this.ring.available(),
          playing: this.state === PLAYING,
          rate: this.rate,
          underruns: this.underruns,
          outageUnderruns: this.outageUnderruns,
          skips: this.skips,
          overflowFrames: this.overflowFrames,
          renderedFrames: this.renderedFrames,
          nonSilentFrames: this.nonSilentFrames,
          firstSoundFrame: this.firstSoundFrame,
        });
        this.depthSum = 0;
        this.depthCount = 0;
        break;
    }
  }

  /** Drops frames up to the flush point; returns the new fill level. */
  applyFlush(avail) {
    const drop = Math.min(avail, this.flushUntil - this.readTotal);
    if (drop > 0) {
      this.readTotal += this.ring.advance(drop);
      avail -= drop;
    }
    this.flushUntil = -1;
    return avail;
  }

  /** Fills the interpolation window with the next frame, so playback starts from it, not from stale values. */
  prime() {
    const k = this.ring.slot(0);
    const l = this.ring.samples[k];
    const r = this.ring.samples[k + 1];
    this.l0 = this.l1 = this.l2 = this.l3 = l;
    this.r0 = this.r1 = this.r2 = this.r3 = r;
    this.phase = 1;
  }

  process(_inputs, outputs) {
    const out = outputs[0];
    const L = out[0];
    const R = out.length > 1 ? out[1] : null;
    const n = L.length;
    const ring = this.ring;
    let avail = ring.available();
    this.depthSum += avail;
    this.depthCount++;
    this.lastAvail = avail;

    if (this.rate !== this.rateTarget) {
      const d = this.rateTarget - this.rate;
      this.rate += d > this.rateSlew ? this.rateSlew : d < -this.rateSlew ? -this.rateSlew : d;
    }
    const step = this.ratio * this.rate; // input frames per output frame
    // Input needed to finish a fade-out from here, plus the interpolation window.
    const low = Math.ceil((this.fadeFrames + 2) * step) + 4;
    const over = avail > this.skipFrames;
    this.overFrames = over ? this.overFrames + n : 0;
    const skipDue = this.overFrames >= this.skipHoldFrames;

    if (this.state === IDLE) {
      if (this.flushUntil > this.readTotal) avail = this.applyFlush(avail);
      if (over && !skipDue) {
        L.fill(0); // a burst is arriving: wait for the rest of it, then start at its end
        if (R) R.fill(0);
        return true;
      }
      if (skipDue) {
        // A burst after a stall: start at the live edge (silent now, so no fade needed).
        const drop = avail - this.targetFrames;
        this.readTotal += ring.advance(drop);
        avail -= drop;
        this.skips++;
        this.overFrames = 0;
      }
      if (avail < this.startFrames || avail <= low) {
        L.fill(0);
        if (R) R.fill(0);
        return true;
      }
      this.state = PLAYING;
      this.action = NONE;
      this.gain = 0;
      this.gainTarget = 1;
      this.prime();
    } else if (this.action === NONE) {
      if (this.flushUntil > this.readTotal) {
        this.action = FLUSH;
        this.gainTarget = 0;
      } else if (skipDue) {
        this.action = SKIP;
        this.gainTarget = 0;
        this.overFrames = 0;
      }
    } else if (this.action === STARVE && avail >= 2 * low + n * step) {
      this.action = NONE; // audio came back in time: fade straight back in, no underrun
      this.gainTarget = 1;
    }

    const buf = ring.samples;
    const mask = ring.mask;
    let r = ring.readIndex();
    let consumed = 0;
    let phase = this.phase;
    let gain = this.gain;
    let l0 = this.l0, l1 = this.l1, l2 = this.l2, l3 = this.l3;
    let r0 = this.r0, r1 = this.r1, r2 = this.r2, r3 = this.r3;
    let nonSilent = 0;
    let rendered = n;

    for (let i = 0; i < n; i++) {
      while (phase >= 1) {
        phase -= 1;
        l0 = l1; l1 = l2; l2 = l3;
        r0 = r1; r1 = r2; r2 = r3;
        if (avail > 0) {
          const k = (r & mask) * 2;
          l3 = buf[k];
          r3 = buf[k + 1];
          r = (r + 1) | 0;
          avail--;
          consumed++;
        } // else hold the last frame: only reached inside a fade-out
      }
      const t = phase;
      let yl = l1 + 0.5 * t * (l2 - l0 + t * (2 * l0 - 5 * l1 + 4 * l2 - l3 + t * (3 * (l1 - l2) + l3 - l0)));
      let yr = r1 + 0.5 * t * (r2 - r0 + t * (2 * r0 - 5 * r1 + 4 * r2 - r3 + t * (3 * (r1 - r2) + r3 - r0)));
      if (gain !== this.gainTarget) {
        gain = gain < this.gainTarget ? Math.min(this.gainTarget, gain + this.fadeStep) : Math.max(this.gainTarget, gain - this.fadeStep);
      }
      yl *= gain;
      yr *= gain;
      L[i] = yl;
      if (R) R[i] = yr;
      if (yl > SILENCE || yl < -SILENCE || yr > SILENCE || yr < -SILENCE) {
        nonSilent++;
        if (this.firstSoundFrame < 0) this.firstSoundFrame = currentFrame + i;
      }
      phase += step;

      if (this.action === NONE && avail < low) {
        this.action = STARVE;
        this.gainTarget = 0;
      }
      if (gain === 0 && this.gainTarget === 0 && this.action !== NONE) {
        const action = this.action;
        this.action = NONE;
        if (action === STARVE) {
          this.state = IDLE;
          this.underruns++;
          if (!this.live) this.outageUnderruns++;
          for (let j = i + 1; j < n; j++) {
            L[j] = 0;
            if (R) R[j] = 0;
          }
          rendered = i + 1;
          break;
        }
        if (action === SKIP) {
          const drop = avail - this.targetFrames;
          if (drop > 0) {
            r = (r + drop) | 0;
            avail -= drop;
            consumed += drop;
            this.skips++;
          }
          const k = (r & mask) * 2;
          l0 = l1 = l2 = l3 = buf[k];
          r0 = r1 = r2 = r3 = buf[k + 1];
          phase = 1;
          this.gainTarget = 1;
        } else if (action === FLUSH) {
          const drop = Math.min(avail, this.flushUntil - (this.readTotal + consumed));
          if (drop > 0) {
            r = (r + drop) | 0;
            avail -= drop;
            consumed += drop;
          }
          this.flushUntil = -1;
          if (avail >= this.startFrames && avail > low) {
            const k = (r & mask) * 2;
            l0 = l1 = l2 = l3 = buf[k];
            r0 = r1 = r2 = r3 = buf[k + 1];
            phase = 1;
            this.gainTarget = 1;
          } else {
            this.state = IDLE; // wait until the next stream fills the prebuffer
            for (let j = i + 1; j < n; j++) {
              L[j] = 0;
              if (R) R[j] = 0;
            }
            rendered = i + 1;
            break;
          }
        }
      }
    }

    Atomics.store(ring.state, 0, r);
    this.readTotal += consumed;
    this.phase = phase;
    this.gain = gain;
    this.l0 = l0; this.l1 = l1; this.l2 = l2; this.l3 = l3;
    this.r0 = r0; this.r1 = r1; this.r2 = r2; this.r3 = r3;
    this.renderedFrames += rendered;
    this.nonSilentFrames += nonSilent;
    return true;
  }
}

registerProcessor("auralis-player", AuralisPlayer);
