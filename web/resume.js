// Resuming a stream after a dropped connection or a server restart, client side: which sequences
// were never received, what to ask for on the reconnect URL, and what the server's answer means.
// Pure module: no DOM, importable from Node. The protocol is in docs/protocol.md (Resume).
//
// Sequences sit on a grid anchored at the Unix epoch (position / frames per chunk), so they go on
// across a server restart, and "the sequence after the last one received" names the same audio on
// the restarted server. The `epoch` of `welcome` changes only when the station's history cannot be
// replayed; a resume asked with another epoch is refused (`epoch_changed`).

/** What `welcome.resume.outcome` can say. Every one but `resumed` means the stream goes on live. */
export const RESUME_OUTCOMES = ["resumed", "outside_window", "future", "epoch_changed", "rate_limited"];

const EPOCH = /^[0-9a-f]{16}$/;

/** The epoch of a `welcome` (16 lowercase hex chars), or null where it has none or a malformed one. */
export function epochOf(welcome) {
  const e = welcome && welcome.epoch;
  return typeof e === "string" && EPOCH.test(e) ? e : null;
}

/**
 * Sequences this far behind the last one received mean another timeline (a server whose clock is
 * behind ours), not a repeat: counting starts again from there. Mirrors the player's 2 s rule for
 * positions (at 100 ms chunks).
 */
export const REWIND_CHUNKS = 20;

/**
 * The stream URL's query: `token` (a listen token from the page's address), `codec` (when not
 * null), and for a resume `resume_from` and `epoch`. Other parameters of `base` are kept.
 */
export function streamQuery({ token = null, codec = null, resume = null, base = "" } = {}) {
  const query = new URLSearchParams(base);
  if (token) query.set("token", token);
  if (codec) query.set("codec", codec);
  if (resume) {
    query.set("resume_from", String(resume.from));
    query.set("epoch", resume.epoch);
  }
  return query.toString();
}

/**
 * Sequences received since Play, across connections, and the resumes asked for and answered.
 *
 *   t.onSequence(seq)   // every audio frame accepted, in arrival order
 *   t.onWelcome(msg)    // every welcome
 *   t.request()         // {from, epoch} for the reconnect URL, or null
 *   t.forget()          // a station switch: the next frame starts counting afresh
 *
 * `missing` counts sequences that were never received: a jump forward by n adds n - 1 whatever
 * caused it (a lost chunk, a skip the server flagged, a reconnect at the live edge, a resume the
 * server could not serve). A resume that succeeds continues at the next sequence and adds nothing.
 */
export class ResumeTracker {
  constructor() {
    this.last = null; // highest sequence received on the current timeline
    this.missing = 0;
    this.received = 0;
    this.resumed = 0; // frames that came flagged as resumed
    this.epoch = null; // from the last welcome
    this.windowChunks = null; // how far back the server can resume, from the last welcome
    this.outcomes = {}; // outcome -> count
    this.lastResume = null; // the latest welcome.resume
  }

  /** A frame arrived. Returns how many sequences before it were never received. */
  onSequence(seq, { resumed = false } = {}) {
    if (!Number.isFinite(seq)) return 0;
    this.received++;
    if (resumed) this.resumed++;
    if (this.last === null) {
      this.last = seq;
      return 0;
    }
    const d = seq - this.last;
    if (d > 1) {
      this.missing += d - 1;
      this.last = seq;
      return d - 1;
    }
    if (d === 1 || d < -REWIND_CHUNKS) this.last = seq;
    return 0; // a repeat (overlap after a reconnect) is neither new nor missing
  }

  /** What to ask a reconnect for: the sequence after the last one received, with its epoch. */
  request() {
    if (this.last === null || this.epoch === null) return null;
    return { from: this.last + 1, epoch: this.epoch };
  }

  /**
   * A welcome arrived. Keeps its epoch and resume window, and counts the resume answer it carries
   * (`welcome.resume`; looked at only when `resume` is true: the first welcome of a connection
   * answers its URL, a welcome in reply to `hello` answers nothing new). Returns the answer
   * (`{outcome, from, chunks}`), or null.
   */
  onWelcome(msg, { resume = true } = {}) {
    const epoch = epochOf(msg);
    if (epoch !== null) this.epoch = epoch;
    if (Number.isInteger(msg.resume_window_chunks) && msg.resume_window_chunks >= 0) this.windowChunks = msg.resume_window_chunks;
    const r = msg.resume;
    if (!resume || !r || typeof r !== "object" || typeof r.outcome !== "string") return null;
    const answer = { outcome: r.outcome, from: Number.isFinite(r.from) ? r.from : null, chunks: Number.isInteger(r.chunks) && r.chunks > 0 ? r.chunks : 0 };
    this.outcomes[answer.outcome] = (this.outcomes[answer.outcome] || 0) + 1;
    this.lastResume = answer;
    return answer;
  }

  /** A station switch: its sequences are another station's, and so is its epoch. The counts stay. */
  forget() {
    this.last = null;
    this.epoch = null;
    this.windowChunks = null;
  }
}

/**
 * The longest wait between reconnect attempts while resuming: a quarter of the resume window
 * (`windowMs`), at least `floorMs`, at most the usual `maxMs`. A backoff that grew to the usual
 * maximum would spend most of the window waiting for a server that is back already.
 */
export function resumeRetryCapMs(windowMs, { share = 0.25, floorMs = 1000, maxMs = 5000 } = {}) {
  if (!(windowMs > 0)) return maxMs;
  return Math.min(maxMs, Math.max(floorMs, windowMs * share));
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

/** The status line's words for a resume answer (`chunkMs`: the chunk length). */
export function resumeNote(answer, { chunkMs = 100 } = {}) {
  if (!answer) return "";
  switch (answer.outcome) {
    case "resumed":
      return answer.chunks > 0 ? `resumed: ${answer.chunks} missed chunks (${seconds(answer.chunks * chunkMs)}) sent again` : "resumed: nothing was missed";
    case "outside_window":
      return "could not resume: the server no longer holds the missed audio; rejoined live";
    case "future":
      return "could not resume: the server is behind this player; rejoined live";
    case "epoch_changed":
      return "could not resume: the station's history was reset; rejoined live";
    case "rate_limited":
      return "could not resume: too many resumes; rejoined live";
    default:
      return `could not resume (${String(answer.outcome).slice(0, 32)}); rejoined live`;
  }
}

/**
 * A chunk the server rendered again after a restart, for a resume: such chunks carry the time they
 * were rendered again as both timestamps (docs/protocol.md, Across a restart), where a chunk of the
 * live stream was rendered ahead of its release. An underrun fill has equal times too, but comes
 * from the encoder of the chunks around it.
 */
export function renderedAgain(h) {
  return h.resumed && !h.underrunFill && h.renderedUnixNs === h.sentUnixNs;
}

/**
 * Tells where an Opus stream changes encoder, across connections. After a restart the server
 * renders the missed chunks again with an encoder of their own, and its live stream comes from
 * another: a decoder that carried on over either seam would decode the new packets against the old
 * encoder's state. Within one process a resumed chunk is the very chunk the live listeners got, and
 * the decoder simply goes on.
 */
export class EncoderWatch {
  constructor() {
    this.again = null; // whether the last frame was rendered again; null before the first
  }

  /** True when the frame `h` (decodeFrame's header) comes from another encoder than the one before. */
  onFrame(h) {
    if (h.underrunFill) return false;
    const again = renderedAgain(h);
    const switched = this.again !== null && again !== this.again;
    this.again = again;
    return switched;
  }

  /** A station switch: the next frame starts a stream of its own anyway. */
  forget() {
    this.again = null;
  }
}
