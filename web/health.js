// The health panel's cells, from the player's state (`window.auralis`). Pure module: no DOM,
// importable from Node; player.js writes the result into the page.
//
// While the connection is down, the figures that come from the network (latency, jitter, bit
// rates, drift, clock offset) stop being measured: they are shown greyed with their age rather than
// as if they were current. The buffer depth and the counters stay live: the worklet keeps
// reporting them.

export const fmt = (x, digits = 0) => (x == null || !Number.isFinite(x) ? "–" : x.toFixed(digits));
export const signed = (x, digits = 0) => (x == null || !Number.isFinite(x) ? "–" : (x > 0 ? "+" : "") + x.toFixed(digits));

/** How old a figure is, for people: "0.4 s ago", "12 s ago", "3 min ago". */
export function ageText(ms) {
  if (typeof ms !== "number" || !(ms >= 0)) return "";
  if (ms < 10000) return `${(ms / 1000).toFixed(1)} s ago`;
  if (ms < 120000) return `${Math.round(ms / 1000)} s ago`;
  return `${Math.round(ms / 60000)} min ago`;
}

/** The cells measured from the stream, which go stale while it is down. */
export const NETWORK_CELLS = ["latency", "jitter", "codec", "kbps", "drift", "offset"];

/**
 * `{ cell: { text, cls } }` for the health panel. `a` is window.auralis; `live`: playback is on
 * (otherwise the playback figures read "–"); `defaultRate`: the stream rate assumed before the
 * welcome says. `a.staleMs` (not null while the connection is down) marks the network figures.
 */
export function healthView(a, { live, defaultRate = 48000 }) {
  const cell = (text, cls = "") => ({ text, cls });
  const kbit = a.bitrate ? a.bitrate / 1000 : a.kbps;
  const last = a.lastResume;
  const v = {
    latency: cell(live ? fmt(a.latencyMs) : "–"),
    jitter: cell(live ? fmt(a.jitterMs, 1) : "–"),
    buffer: cell(live ? `${fmt(a.bufferMs)} / ${fmt(a.targetMs)}` : "–"),
    underruns: cell(String(a.underruns), a.underruns > 0 ? "warn" : ""),
    gaps: cell(String(a.gaps), a.gaps > 0 ? "warn" : ""),
    missing: cell(String(a.missingSequences), a.missingSequences > 0 ? "warn" : ""),
    disc: cell(String(a.discontinuities)),
    fills: cell(String(a.serverFills)),
    // Nominal bit rate where the codec has one (Opus), else what arrives.
    codec: cell(!live || !a.codec ? "–" : kbit > 0 ? `${a.codec} · ${fmt(kbit)} kbit/s` : a.codec),
    kbps: cell(live ? fmt(a.kbps) : "–"),
    drift: cell(live ? signed(a.driftPpm) : "–"),
    offset: cell(a.clockOffsetMs == null ? "–" : `${signed(a.clockOffsetMs, 1)} ±${fmt(a.rttMs / 2, 1)}`),
    first: cell(fmt(a.firstSoundMs)),
    reconnects: cell(String(a.reconnects)),
    resume: cell(!last ? "–" : last.outcome === "resumed" ? `resumed ${last.chunks}${a.catchUpDropped > 0 ? ` · ${a.catchUpDropped} dropped` : ""}` : last.outcome,
      last && last.outcome !== "resumed" ? "warn" : ""),
    seq: cell(String(a.lastSequence ?? "–")),
    output: cell("–"),
  };
  if (live && a.sampleRate) {
    const sr = a.streamSampleRate || defaultRate;
    const rates = sr === a.sampleRate ? `${sr / 1000} kHz` : `${sr / 1000}→${a.sampleRate / 1000} kHz`;
    v.output = cell(`${rates} ×${a.playbackRate.toFixed(4)} ${a.sharedMemory ? "shared" : "posted"}`);
  }
  if (live && a.staleMs != null) {
    const age = ageText(a.staleMs);
    for (const k of NETWORK_CELLS) {
      if (v[k].text !== "–") v[k] = cell(`${v[k].text} (${age})`, "stale");
    }
  }
  return v;
}
