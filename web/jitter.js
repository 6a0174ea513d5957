// Adaptive jitter buffer policy: how much audio to keep buffered, and how fast to play to keep it
// there. Pure logic with explicit time arguments (ms), so it runs the same in the player and in
// Node tests.
//
// JitterPolicy picks the target buffer depth from the measured arrival jitter and the underruns:
// it grows at once when the network gets rougher and shrinks slowly once things have been calm.
// RateController steers the measured depth toward the target with a tiny playback-rate change
// (a PI controller whose integral settles on the clock drift between server and sound card),
// bounded and slewed so the pitch never jumps. CatchUp brings the buffer back to its target after
// a resume, when the server sends every chunk this client missed at once.

export const POLICY_DEFAULTS = {
  chunkMs: 100, // the stream's chunk period: audio arrives in steps of this size
  initialTargetMs: 150, // first prebuffer: two 100 ms chunks, first sound well under 300 ms
  minTargetMs: 80,
  maxTargetMs: 1000,
  safetyMs: 60, // headroom kept above the arrival sawtooth even on a perfect network
  decodeMs: 0, // extra headroom for a compressed stream: decoded audio reaches the ring later
  jitterFactor: 3, // headroom per ms of RFC 3550 inter-arrival jitter
  lateQuantile: 0.95, // headroom for all but the latest 5 % of frames ...
  lateWindowMs: 20000, // ... over this window (a single stall is an underrun, not a new normal)
  lateFactor: 1.2,
  underrunStepMs: 40, // each underrun adds this much at once
  calmMs: 10000, // no growth for this long before shrinking starts
  shrinkMsPerS: 2, // shrink speed: 2 ms/s ...
  shrinkPerS: 0.01, // ... plus 1 % of the excess per second (a big target comes down in minutes)
  transitWindowMs: 30000, // window for the transit-time floor
};

/**
 * Arrival statistics and the buffer target. Call onArrival for every audio frame, onUnderrun for
 * each playback underrun while the stream is live, and update periodically to move the target.
 */
export class JitterPolicy {
  constructor(options = {}) {
    this.o = { ...POLICY_DEFAULTS, ...options };
    this.targetMs = this.clamp(this.o.initialTargetMs);
    this.jitterMs = 0; // RFC 3550 interarrival jitter estimate
    this.lateMs = 0; // lateness quantile: how far behind its best arrival a frame tends to be
    this.underruns = 0;
    this.lastGrowthMs = null;
    this.lastUpdateMs = null;
    this.prevTransit = null;
    this.floor = []; // [{t, transit}] ascending transit: monotonic deque for the windowed minimum
    this.late = []; // [{t, late}] in arrival order, for the lateness quantile
    this.sorted = []; // scratch for the quantile
  }

  clamp(ms) {
    return Math.min(this.o.maxTargetMs, Math.max(this.o.minTargetMs, ms));
  }

  setChunkMs(chunkMs) {
    if (chunkMs > 0 && Number.isFinite(chunkMs)) this.o.chunkMs = chunkMs;
  }

  /**
   * Headroom for the decoder: audio that must be decoded reaches the ring after its frame
   * arrived, by an amount the arrival statistics cannot see. The target moves up by the change.
   */
  setDecodeMs(decodeMs) {
    if (!(decodeMs >= 0 && Number.isFinite(decodeMs))) return;
    const change = decodeMs - this.o.decodeMs;
    this.o.decodeMs = decodeMs;
    if (change > 0) this.targetMs = this.clamp(this.targetMs + change);
  }

  /** Forgets the previous arrivals (a new connection, or a jump in the stream's timeline). */
  resetStream() {
    this.prevTransit = null;
    this.floor = [];
  }

  /**
   * A frame arrived at client time `arrivalMs` (monotonic ms). `mediaMs` is where it lies on the
   * stream's timeline (position / sample rate, in ms). Their difference is how late the frame is
   * plus an unknown constant, which cancels in every quantity used here. Lateness from the network
   * and from a stalled server look the same: the buffer has to ride out both.
   */
  onArrival(arrivalMs, mediaMs) {
    const transit = arrivalMs - mediaMs;
    if (!Number.isFinite(transit)) return;
    if (this.prevTransit !== null) {
      const d = Math.abs(transit - this.prevTransit);
      this.jitterMs += (d - this.jitterMs) / 16;
    }
    this.prevTransit = transit;
    if (this.lastGrowthMs === null) this.lastGrowthMs = arrivalMs;

    // Windowed minimum of the transit time: the delay of a frame that met no queueing at all.
    const f = this.floor;
    while (f.length && f[f.length - 1].transit >= transit) f.pop();
    f.push({ t: arrivalMs, transit });
    while (f.length > 1 && f[0].t < arrivalMs - this.o.transitWindowMs) f.shift();

    const l = this.late;
    l.push({ t: arrivalMs, late: transit - f[0].transit });
    while (l.length > 1 && l[0].t < arrivalMs - this.o.lateWindowMs) l.shift();
    this.lateMs = this.lateQuantile();
    this.grow(arrivalMs, this.desiredMs());
  }

  lateQuantile() {
    const n = this.late.length;
    const s = this.sorted;
    s.length = n;
    for (let i = 0; i < n; i++) s[i] = this.late[i].late;
    s.sort((a, b) => a - b);
    return n ? s[Math.min(n - 1, Math.floor(this.o.lateQuantile * n))] : 0;
  }

  /** A playback underrun: the buffer was too small for what the network did. */
  onUnderrun(nowMs) {
    this.underruns++;
    this.grow(nowMs, this.targetMs + this.o.underrunStepMs, true);
  }

  /** The target the current statistics call for (before the slow shrink). */
  desiredMs() {
    const o = this.o;
    const headroom = Math.max(o.safetyMs, o.jitterFactor * this.jitterMs, o.lateFactor * this.lateMs);
    return this.clamp(o.chunkMs / 2 + headroom + o.decodeMs);
  }

  grow(nowMs, wantMs, force = false) {
    const want = this.clamp(wantMs);
    if (want > this.targetMs || force) {
      if (want > this.targetMs) this.targetMs = want;
      this.lastGrowthMs = nowMs;
    }
  }

  /** Moves the target: shrinks it slowly toward the desired depth once calm. Returns the target. */
  update(nowMs) {
    if (this.lastGrowthMs === null) this.lastGrowthMs = nowMs; // the start counts as growth: settle first
    const dt = this.lastUpdateMs === null ? 0 : Math.max(0, nowMs - this.lastUpdateMs);
    this.lastUpdateMs = nowMs;
    const l = this.late;
    if (l.length > 1 && l[0].t < nowMs - this.o.lateWindowMs) {
      while (l.length > 1 && l[0].t < nowMs - this.o.lateWindowMs) l.shift();
      this.lateMs = this.lateQuantile();
    }
    const desired = this.desiredMs();
    if (desired > this.targetMs) {
      this.grow(nowMs, desired);
    } else if (nowMs - this.lastGrowthMs >= this.o.calmMs) {
      const excess = this.targetMs - desired;
      const step = ((this.o.shrinkMsPerS + this.o.shrinkPerS * excess) * dt) / 1000;
      this.targetMs = Math.max(desired, this.targetMs - step);
    }
    return this.targetMs;
  }

  /** Buffer depth above which playback skips ahead to the live edge (a stall left a backlog). */
  backlogLimitMs() {
    return backlogLimitMs(this.targetMs);
  }
}

/**
 * A backlog beyond this depth is skipped (down to the target) rather than played late: the rate
 * correction would need a minute or more to drain it at 0.5 %.
 */
export function backlogLimitMs(targetMs) {
  return targetMs + Math.max(300, targetMs / 2);
}

export const RATE_DEFAULTS = {
  maxPpm: 5000, // ±0.5 %: under 9 cents, and the slew below keeps it gliding
  slewPpmPerS: 1000, // at most 0.1 % change per second
  kpPpmPerMs: 40, // proportional: 25 s time constant on the depth error
  kiPpmPerMsS: 0.25, // integral: a little overdamped; settles on the clock drift within minutes
  maxIntegralPpm: 1000, // real clock drifts are far below this
  integrateWithinMs: 5, // the integral sees at most this error: start-up and target changes are left to P
  smoothingMs: 1000, // depth measurement smoothing (the depth has a sawtooth per chunk)
};

/**
 * Playback-rate correction. `update(depthMs, targetMs, dtMs)` returns the rate (1 = nominal,
 * >1 plays faster and drains the buffer). The integral term is the estimated clock drift.
 */
export class RateController {
  constructor(options = {}) {
    this.o = { ...RATE_DEFAULTS, ...options };
    this.reset();
  }

  reset() {
    this.depthMs = null;
    this.integralPpm = 0;
    this.ppm = 0;
  }

  /** Keeps the drift estimate but forgets the depth history (after a skip or a rebuffer). */
  resync() {
    this.depthMs = null;
  }

  get rate() {
    return 1 + this.ppm / 1e6;
  }

  /** Estimated server-vs-sound-card clock drift in ppm (positive: the server runs fast). */
  get driftPpm() {
    return this.integralPpm;
  }

  update(depthMs, targetMs, dtMs) {
    const o = this.o;
    if (!Number.isFinite(depthMs) || !Number.isFinite(targetMs)) return this.rate;
    const dt = Math.max(0, Math.min(dtMs, 2000)) / 1000;
    if (this.depthMs === null) this.depthMs = depthMs;
    else this.depthMs += (depthMs - this.depthMs) * (1 - Math.exp(-dtMs / o.smoothingMs));
    const err = this.depthMs - targetMs;
    const ierr = Math.min(o.integrateWithinMs, Math.max(-o.integrateWithinMs, err));
    const lim = o.maxIntegralPpm;
    this.integralPpm = Math.min(lim, Math.max(-lim, this.integralPpm + o.kiPpmPerMsS * ierr * dt));
    const want = Math.min(o.maxPpm, Math.max(-o.maxPpm, o.kpPpmPerMs * err + this.integralPpm));
    const slew = o.slewPpmPerS * dt;
    this.ppm += Math.min(slew, Math.max(-slew, want - this.ppm));
    return this.rate;
  }
}

export const CATCH_UP_DEFAULTS = {
  holdMs: 3000, // after the resumed chunks, live chunks may still be dropped this long
};

/**
 * Catch-up after a resume. The server sends every chunk this client missed back to back, so the
 * buffer would hold the whole outage: seconds of extra latency, more than the ring holds after a
 * long one. The rate correction (±0.5 %) would need minutes for that, and a pitch-neutral faster
 * playback needs time-stretching; so whole chunks are dropped instead, before they are written.
 *
 * An outage shorter than the buffer leaves no backlog: playback never stopped, the resumed chunks
 * replace what it played meanwhile and continue the buffered audio sample for sample, and nothing
 * is dropped (only what the worklet would skip anyway, beyond backlogLimitMs). A longer one has
 * run the buffer dry: then a resumed chunk is dropped when writing it and the resumed chunks still
 * to come would leave more than a chunk above the target. So the oldest go and the newest stay,
 * playback restarts a little above the target, and the one splice falls in the outage's silence
 * (faded by the player, like every jump).
 *
 * After a burst that found the buffer dry, live chunks are dropped for `holdMs` while the buffer's
 * mean depth is more than a chunk above the target: those that queued up behind a burst that was
 * slow to arrive. The mean (the worklet's, over its last report), not the depth of the moment: that
 * one has a chunk-sized sawtooth, and reads high while playback has yet to start. After a burst
 * that found playback running, the buffer holds what it held before the drop, and what it does
 * with that is the rate correction's business.
 */
export class CatchUp {
  constructor(options = {}) {
    this.o = { ...CATCH_UP_DEFAULTS, ...options };
    this.dropped = 0;
    this.reset();
  }

  /** Nothing to catch up (a new connection, a station switch). The count stays. */
  reset() {
    this.remaining = 0; // resumed chunks still to come
    this.burst = false; // resumed chunks are being written
    this.dry = null; // the burst found playback stopped (null: no resumed chunk written yet)
    this.untilMs = -Infinity;
  }

  /** A resume answered with `chunks` resumed chunks, which follow at once (none: nothing to do). */
  start(nowMs, chunks) {
    this.reset();
    this.remaining = Number.isInteger(chunks) && chunks > 0 ? chunks : 0;
    this.burst = this.remaining > 0;
    this.untilMs = this.burst ? Infinity : -Infinity;
  }

  active(nowMs) {
    return this.burst || nowMs < this.untilMs;
  }

  /**
   * A chunk of `chunkMs` is about to be written. `queuedMs`: audio written and not yet played, now;
   * `meanMs`: the buffer's mean depth lately; `playing`: playback is running (not run dry);
   * `resumed`: the chunk carries the resumed flag. True when it is to be dropped instead.
   */
  drop(nowMs, { queuedMs, meanMs = queuedMs, chunkMs, targetMs, playing = false, resumed = false }) {
    const burst = resumed && this.burst;
    let after = 0;
    if (burst) {
      this.remaining = Math.max(0, this.remaining - 1);
      after = this.remaining;
      if (this.dry === null) this.dry = !playing;
    } else if (this.burst) {
      // The first live chunk: the burst is over (however many resumed chunks really came).
      const dry = this.dry;
      this.reset();
      if (dry) this.untilMs = nowMs + this.o.holdMs;
    }
    if (!this.active(nowMs) || !(chunkMs > 0) || !Number.isFinite(targetMs)) return false;
    let drop;
    if (burst) {
      // Whether playback had run dry is decided once, at the burst's first chunk.
      const limit = this.dry ? targetMs + chunkMs : backlogLimitMs(targetMs);
      drop = queuedMs >= 0 && queuedMs + chunkMs * (1 + after) > limit;
    } else {
      drop = meanMs > targetMs + chunkMs;
    }
    if (drop) this.dropped++;
    return drop;
  }
}
