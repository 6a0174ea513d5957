// The live dashboard's bookkeeping, free of the DOM so Node can test it (tests/web/dashboard.test.mjs):
// a rolling window of samples, rates from cumulative counters, threshold colours, formatting and
// the per-codec table.
// dashboard.js feeds it the events of GET /api/live and draws what it keeps.

/** How much history the charts keep, in seconds. */
export const WINDOW_S = 300;

/** The key of the combined view in the station selector. */
export const ALL = "";

// ---- thresholds

/**
 * Threshold steps in the Grafana dashboard's form (prometheus/grafana/dashboards/auralis.json):
 * a base level, then [value, level] pairs in ascending order; a value at or above a step takes
 * that step's level. Values are in the event's units (seconds, per second).
 */
export const THRESHOLDS = {
  synthesis: { base: "ok", steps: [[0.05, "warn"], [0.1, "bad"]] },
  delivery: { base: "ok", steps: [[0.05, "warn"], [0.1, "bad"]] },
  jitter: { base: "ok", steps: [[0.02, "warn"], [0.05, "bad"]] },
  client: { base: "ok", steps: [[0.2, "warn"], [0.3, "bad"]] },
  ring: { base: "bad", steps: [[0.1, "warn"], [0.2, "ok"]] },
  underruns: { base: "ok", steps: [[Number.MIN_VALUE, "bad"]] }, // any underrun at all
  encode: { base: "ok", steps: [[0.01, "warn"], [0.025, "bad"]] },
};

/** "ok", "warn" or "bad" for a value under `th` (a THRESHOLDS entry); "none" without a value or thresholds. */
export function thresholdLevel(value, th) {
  if (!th || typeof value !== "number" || !Number.isFinite(value)) return "none";
  let level = th.base;
  for (const [at, l] of th.steps) if (value >= at) level = l;
  return level;
}

// ---- formatting

const DASH = "–";
const finite = (v) => typeof v === "number" && Number.isFinite(v);

/** Seconds as milliseconds with about three significant digits: 0.0004 -> "0.40 ms", 0.44 -> "440 ms". */
export function formatMs(seconds, { unit = true } = {}) {
  if (!finite(seconds)) return DASH;
  const ms = seconds * 1000;
  const a = Math.abs(ms);
  const text = a === 0 ? "0" : a < 10 ? ms.toFixed(2) : a < 100 ? ms.toFixed(1) : ms.toFixed(0);
  return unit ? `${text} ms` : text;
}

/** A number of bits per second with a decimal prefix: 1536000 -> "1.54 Mbit/s". */
export function formatBits(bps) {
  if (!finite(bps)) return DASH;
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let v = bps;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toPrecision(3)} ${units[i]}`;
}

/** A number of bytes with a binary prefix: 12345678 -> "11.8 MiB". */
export function formatBytes(bytes) {
  if (!finite(bytes)) return DASH;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = bytes;
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? Math.round(v) : v.toPrecision(3)} ${units[i]}`;
}

/** A ratio as a percentage: 0.343 -> "34%", 0.004 -> "0.4%". */
export function formatPercent(ratio) {
  if (!finite(ratio)) return DASH;
  const p = ratio * 100;
  return `${Math.abs(p) < 10 && p !== 0 ? p.toFixed(1) : p.toFixed(0)}%`;
}

/** A duration for the uptime: "42 s", "7 m 05 s", "3 h 02 m", "2 d 04 h". */
export function formatDuration(seconds) {
  if (!finite(seconds) || seconds < 0) return DASH;
  const s = Math.floor(seconds);
  const two = (n) => String(n).padStart(2, "0");
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} m ${two(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${two(Math.floor(s / 60) % 60)} m`;
  return `${Math.floor(s / 86400)} d ${two(Math.floor(s / 3600) % 24)} h`;
}

/** A rate per second, to two decimals below 10: 0 -> "0/s", 0.25 -> "0.25/s". */
export function formatRate(perS) {
  if (!finite(perS)) return DASH;
  return `${perS === 0 ? "0" : Math.abs(perS) < 10 ? perS.toFixed(2) : perS.toFixed(0)}/s`;
}

/** A count as an integer, or a dash. */
export function formatCount(n) {
  return finite(n) ? String(Math.round(n)) : DASH;
}

// ---- counters

/**
 * The per-second rate of a cumulative counter between two readings `dtS` seconds apart. A counter
 * that went down, or a `reset` (the server restarted), counts from zero as Prometheus does.
 * Null without two usable readings.
 */
export function counterRate(prev, cur, dtS, { reset = false } = {}) {
  if (!finite(prev) || !finite(cur) || !finite(dtS) || dtS <= 0) return null;
  const increase = reset || cur < prev ? cur : cur - prev;
  return Math.max(0, increase) / dtS;
}

/** Rates of named counters from successive readings, each at its own time (Unix ms). */
export class CounterRates {
  constructor() {
    this.last = new Map();
  }

  /** Records a reading; returns the rate since the previous reading of `key`, or null for the first. */
  update(key, value, tMs, { reset = false } = {}) {
    const prev = this.last.get(key);
    if (!finite(value) || !finite(tMs)) {
      this.last.delete(key);
      return null;
    }
    this.last.set(key, { value, tMs });
    if (!prev) return null;
    return counterRate(prev.value, value, (tMs - prev.tMs) / 1000, { reset });
  }

  /** Forgets every counter whose key is not in `keep`. */
  retain(keep) {
    for (const k of this.last.keys()) if (!keep.has(k)) this.last.delete(k);
  }
}

// ---- the rolling window

/** Timestamped rows of named fields, the last `spanS` seconds of them, as columns uPlot can draw. */
export class RollingWindow {
  constructor(fields, spanS = WINDOW_S) {
    this.fields = fields;
    this.spanS = spanS;
    this.t = [];
    this.cols = fields.map(() => []);
  }

  get length() {
    return this.t.length;
  }

  /** Appends a row at `tS` (seconds) and drops what fell out of the window. Time running backwards starts over. */
  push(tS, row) {
    const last = this.t.length ? this.t[this.t.length - 1] : -Infinity;
    if (tS < last) this.clear();
    if (tS === last) {
      this.fields.forEach((f, i) => (this.cols[i][this.t.length - 1] = row[f] ?? null));
    } else {
      this.t.push(tS);
      this.fields.forEach((f, i) => this.cols[i].push(row[f] ?? null));
    }
    this.trim(tS);
  }

  /** Drops rows older than `spanS` before `nowS`. */
  trim(nowS) {
    const cut = nowS - this.spanS;
    let n = 0;
    while (n < this.t.length && this.t[n] < cut) n++;
    if (n > 0) {
      this.t.splice(0, n);
      for (const c of this.cols) c.splice(0, n);
    }
  }

  clear() {
    this.t.length = 0;
    for (const c of this.cols) c.length = 0;
  }

  /** The column of `field` (the live array, not a copy). */
  column(field) {
    return this.cols[this.fields.indexOf(field)];
  }

  /** The newest value of `field`, or null. */
  latest(field) {
    const c = this.column(field);
    return c && c.length ? c[c.length - 1] : null;
  }

  /** [times, ...columns of `fields`] (live arrays): uPlot's data layout. */
  data(fields = this.fields) {
    return [this.t, ...fields.map((f) => this.column(f))];
  }
}

// ---- events to rows

/** The fields of one row: what the charts draw, in seconds, per second and bits per second. */
export const FIELDS = [
  "synth_p50", "synth_p99", "deliv_p50", "deliv_p99", "jitter_p50", "jitter_p95", "client_p50", "client_p99",
  "ring_depth", "ring_capacity", "underruns_ps", "listeners", "bandwidth_bps",
];

const quantile = (h, q) => (h && h.count > 0 && finite(h[q]) ? h[q] : null);

/** The row of one station, given its counter rates. */
export function stationRow(st, rates = {}) {
  return {
    synth_p50: quantile(st.synthesis_s, "p50"),
    synth_p99: quantile(st.synthesis_s, "p99"),
    deliv_p50: quantile(st.delivery_s, "p50"),
    deliv_p99: quantile(st.delivery_s, "p99"),
    jitter_p50: quantile(st.jitter_s, "p50"),
    jitter_p95: quantile(st.jitter_s, "p95"),
    client_p50: quantile(st.client_latency_s, "p50"),
    client_p99: quantile(st.client_latency_s, "p99"),
    ring_depth: finite(st.ring_depth_s) ? st.ring_depth_s : null,
    ring_capacity: finite(st.ring_capacity_s) ? st.ring_capacity_s : null,
    underruns_ps: rates.underruns ?? null,
    listeners: finite(st.listeners) ? st.listeners : null,
    bandwidth_bps: rates.bytes == null ? null : rates.bytes * 8,
  };
}

const pick = (rows, field, fold) => {
  const vs = rows.map((r) => r[field]).filter(finite);
  return vs.length ? fold(vs) : null;
};
const max = (vs) => Math.max(...vs);
const min = (vs) => Math.min(...vs);
const sum = (vs) => vs.reduce((a, b) => a + b, 0);

/**
 * All stations as one row, at their worst: the highest of each latency quantile (the worst
 * station's), the shallowest ring and its capacity, and the sums of listeners, underruns and bandwidth.
 */
export function combineRows(rows, totalListeners = null) {
  const out = {};
  for (const f of ["synth_p50", "synth_p99", "deliv_p50", "deliv_p99", "jitter_p50", "jitter_p95", "client_p50", "client_p99"]) {
    out[f] = pick(rows, f, max);
  }
  const shallowest = rows.filter((r) => finite(r.ring_depth)).sort((a, b) => a.ring_depth - b.ring_depth)[0];
  out.ring_depth = shallowest ? shallowest.ring_depth : null;
  out.ring_capacity = shallowest ? shallowest.ring_capacity : null;
  out.underruns_ps = pick(rows, "underruns_ps", sum);
  out.bandwidth_bps = pick(rows, "bandwidth_bps", sum);
  out.listeners = finite(totalListeners) ? totalListeners : pick(rows, "listeners", sum);
  return out;
}

/**
 * What the dashboard knows: a rolling window per station and one for all of them together
 * (key ALL), filled from /api/live events.
 */
export class LiveModel {
  constructor({ spanS = WINDOW_S } = {}) {
    this.spanS = spanS;
    this.rates = new CounterRates();
    this.windows = new Map([[ALL, new RollingWindow(FIELDS, spanS)]]);
    this.stations = []; // names in the latest event
    this.known = []; // every name with history in its window, in order of first appearance
    this.lastUptime = null;
    this.events = 0;
    this.last = null;
    this.previous = null; // the report before `last`, for the codec table's rates
  }

  window(key = ALL) {
    return this.windows.get(key) || null;
  }

  /** Takes one event; returns false (and changes nothing) for one that is not an /api/live event. */
  ingest(ev) {
    if (!ev || typeof ev !== "object" || !finite(ev.t_ms) || !Array.isArray(ev.stations)) return false;
    const tMs = ev.t_ms;
    const tS = tMs / 1000;
    // The server restarted: its counters started again from zero.
    const reset = finite(ev.uptime_s) && finite(this.lastUptime) && ev.uptime_s < this.lastUptime;
    this.lastUptime = finite(ev.uptime_s) ? ev.uptime_s : this.lastUptime;

    const rows = [];
    const names = [];
    const keep = new Set();
    for (const st of ev.stations) {
      if (!st || typeof st.name !== "string") continue;
      const name = st.name;
      names.push(name);
      keep.add(`${name}\u0000underruns`).add(`${name}\u0000bytes`);
      const rates = {
        underruns: this.rates.update(`${name}\u0000underruns`, st.underruns_total, tMs, { reset }),
        bytes: this.rates.update(`${name}\u0000bytes`, st.bytes_sent_total, tMs, { reset }),
      };
      const row = stationRow(st, rates);
      rows.push(row);
      if (!this.windows.has(name)) {
        this.windows.set(name, new RollingWindow(FIELDS, this.spanS));
        this.known.push(name);
      }
      this.windows.get(name).push(tS, row);
    }
    this.rates.retain(keep);
    this.windows.get(ALL).push(tS, combineRows(rows, ev.listeners));
    // Stations that left: a gap in their charts, and their history goes once it is out of the window.
    for (const name of this.known) {
      if (names.includes(name)) continue;
      const w = this.windows.get(name);
      w.push(tS, {});
      if (w.cols.every((c) => c.every((v) => v === null))) this.windows.delete(name);
    }
    this.known = this.known.filter((n) => this.windows.has(n));
    this.stations = names;
    this.events++;
    this.previous = this.last;
    this.last = ev;
    return true;
  }

  /** The codec table of station `key` (ALL: every station) from the latest two reports. */
  codecTable(key = ALL) {
    return codecTable(this.previous, this.last, key);
  }
}

// ---- the per-codec table

/**
 * The per-second increase of a cumulative counter between two reports `dtS` seconds apart, for
 * the codec table: null without both readings, and null (not negative, not counted from zero)
 * when the counter went backwards or the server restarted in between.
 */
export function increaseRate(prev, cur, dtS, { reset = false } = {}) {
  if (reset || !finite(prev) || !finite(cur) || !finite(dtS) || dtS <= 0 || cur < prev) return null;
  return (cur - prev) / dtS;
}

const codecList = (st) => (st && Array.isArray(st.codecs) ? st.codecs.filter((c) => c && typeof c.codec === "string") : []);

/**
 * One row per codec of station `st` in report `cur`, in the report's order (the default first):
 * `{ codec, listeners, bitrate_bps, encode_p99 }`. The bit rate comes from the codec's
 * `bytes_sent_total` in `prevSt` (the same station in the previous report, `dtS` seconds before);
 * it is null for a codec missing there, on a `reset` and for a counter that went backwards.
 */
export function codecRows(st, prevSt, dtS, { reset = false } = {}) {
  const before = new Map(codecList(prevSt).map((c) => [c.codec, c]));
  return codecList(st).map((c) => {
    const rate = increaseRate(before.get(c.codec)?.bytes_sent_total, c.bytes_sent_total, dtS, { reset });
    return {
      codec: c.codec,
      listeners: finite(c.listeners) ? c.listeners : null,
      bitrate_bps: rate == null ? null : rate * 8,
      encode_p99: quantile(c.encode_s, "p99"),
    };
  });
}

/**
 * All stations' codec rows as one row per codec, in order of first appearance: listeners and bit
 * rates summed (over the stations that have a value), the encode p99 of the slowest station.
 */
export function combineCodecRows(rowsByStation) {
  const byCodec = new Map();
  for (const rows of rowsByStation) {
    for (const r of rows) {
      if (!byCodec.has(r.codec)) byCodec.set(r.codec, []);
      byCodec.get(r.codec).push(r);
    }
  }
  return [...byCodec].map(([codec, rs]) => ({
    codec,
    listeners: pick(rs, "listeners", sum),
    bitrate_bps: pick(rs, "bitrate_bps", sum),
    encode_p99: pick(rs, "encode_p99", max),
  }));
}

/**
 * The codec table between two reports, `prev` (or null) and `cur`: the rows of station `key`, or
 * of every station together for ALL ([] for a station not in `cur`). A server restart between
 * the two (uptime went backwards) leaves the bit rates null.
 */
export function codecTable(prev, cur, key = ALL) {
  if (!cur || !Array.isArray(cur.stations)) return [];
  const named = (ev) => (ev && Array.isArray(ev.stations) ? ev.stations.filter((s) => s && typeof s.name === "string") : []);
  const before = new Map(named(prev).map((s) => [s.name, s]));
  const dtS = prev && finite(prev.t_ms) && finite(cur.t_ms) ? (cur.t_ms - prev.t_ms) / 1000 : null;
  const reset = !!prev && finite(prev.uptime_s) && finite(cur.uptime_s) && cur.uptime_s < prev.uptime_s;
  const rowsOf = (st) => codecRows(st, before.get(st.name), dtS, { reset });
  const stations = named(cur);
  if (key !== ALL) {
    const st = stations.find((s) => s.name === key);
    return st ? rowsOf(st) : [];
  }
  return combineCodecRows(stations.map(rowsOf));
}

/** A codec row as the table's cells: text, and the encode time's threshold level. */
export function codecCells(row) {
  return {
    codec: row.codec,
    listeners: formatCount(row.listeners),
    bitrate: formatBits(row.bitrate_bps),
    encode: formatMs(row.encode_p99),
    level: thresholdLevel(row.encode_p99, THRESHOLDS.encode),
  };
}

// ---- what is charted

/**
 * The charts: title, unit, series (field, label) and the one whose latest value is shown big and
 * judged against `thresholds` (a THRESHOLDS key). `ms` charts are drawn in milliseconds.
 */
export const CHARTS = [
  { id: "synthesis", title: "Synthesis time per chunk", unit: "ms", series: [["synth_p50", "p50"], ["synth_p99", "p99"]], current: "synth_p99", thresholds: "synthesis" },
  { id: "delivery", title: "Chunk delivery time", unit: "ms", series: [["deliv_p50", "p50"], ["deliv_p99", "p99"]], current: "deliv_p99", thresholds: "delivery" },
  { id: "jitter", title: "Chunk jitter", unit: "ms", series: [["jitter_p50", "p50"], ["jitter_p95", "p95"]], current: "jitter_p95", thresholds: "jitter" },
  { id: "client", title: "Client end-to-end latency", unit: "ms", series: [["client_p50", "p50"], ["client_p99", "p99"]], current: "client_p99", thresholds: "client" },
  { id: "ring", title: "Ring buffer depth", unit: "ms", series: [["ring_depth", "depth"], ["ring_capacity", "capacity"]], current: "ring_depth", thresholds: "ring" },
  { id: "underruns", title: "Ring underruns", unit: "/s", series: [["underruns_ps", "per second"]], current: "underruns_ps", thresholds: "underruns" },
  { id: "listeners", title: "Listeners", unit: "", series: [["listeners", "listeners"]], current: "listeners", thresholds: null },
  { id: "bandwidth", title: "Bandwidth sent", unit: "bit/s", series: [["bandwidth_bps", "bits/s"]], current: "bandwidth_bps", thresholds: null },
];

const LEVEL_WORDS = { ok: "green", warn: "yellow", bad: "red" };

/**
 * A chart's thresholds as [level, text] parts in its unit, for example
 * [["ok", "green < 50 ms"], ["warn", "yellow < 100 ms"], ["bad", "red ≥ 100 ms"]]; [] without thresholds.
 */
export function describeThresholds(chart) {
  const th = THRESHOLDS[chart.thresholds];
  if (!th) return [];
  const fmt = (v) => (chart.unit === "ms" ? `${+(v * 1000).toPrecision(3)} ms` : `${v}${chart.unit ? ` ${chart.unit}` : ""}`);
  if (th.steps.length === 1 && th.steps[0][0] === Number.MIN_VALUE) {
    return [[th.base, `${LEVEL_WORDS[th.base]} 0`], [th.steps[0][1], `${LEVEL_WORDS[th.steps[0][1]]} > 0`]];
  }
  const parts = [];
  let level = th.base;
  for (const [at, next] of th.steps) {
    parts.push([level, `${LEVEL_WORDS[level]} < ${fmt(at)}`]);
    level = next;
  }
  parts.push([level, `${LEVEL_WORDS[level]} ≥ ${fmt(th.steps[th.steps.length - 1][0])}`]);
  return parts;
}

/** A chart's value as text in its unit. */
export function formatValue(chart, value) {
  switch (chart.unit) {
    case "ms":
      return formatMs(value);
    case "/s":
      return formatRate(value);
    case "bit/s":
      return formatBits(value);
    default:
      return formatCount(value);
  }
}

/** The latest value of a chart's `current` series in a window, its text and its threshold level. */
export function currentValue(chart, win) {
  const value = win ? win.latest(chart.current) : null;
  return { value, text: formatValue(chart, value), level: thresholdLevel(value, THRESHOLDS[chart.thresholds]) };
}
