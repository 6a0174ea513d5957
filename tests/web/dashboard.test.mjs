// The live dashboard's model (web/dashboard-model.js): rolling window, counter rates, thresholds,
// formatting, how /api/live events become chart rows and the per-codec table.
import test from "node:test";
import assert from "node:assert/strict";
import {
  RollingWindow, CounterRates, counterRate, thresholdLevel, THRESHOLDS, formatMs, formatBits, formatBytes,
  formatPercent, formatDuration, formatRate, formatCount, stationRow, combineRows, LiveModel, CHARTS, FIELDS, ALL,
  WINDOW_S, currentValue, describeThresholds, formatValue, increaseRate, codecRows, combineCodecRows, codecTable,
  codecCells,
} from "../../web/dashboard-model.js";

const T0 = 1763900000123;

/** An /api/live event `i` seconds after T0, shaped like the server's; `over` replaces station fields. */
function event(i, { uptime = 10 + i, stations = ["default"], over = {} } = {}) {
  return {
    t_ms: T0 + i * 1000,
    uptime_s: uptime,
    interval_s: 1.0,
    listeners: 3 * stations.length,
    process: { cpu_cores: 0.12, rss_bytes: 12345678, system_cpu_ratio: 0.34 },
    stations: stations.map((name) => ({
      name,
      listeners: 3,
      ring_depth_s: 0.2,
      ring_capacity_s: 0.5,
      synthesis_s: { p50: 0.0004, p99: 0.0008, max: 0.001, count: 10 },
      delivery_s: { p50: 0.0002, p99: 0.001, max: 0.002, count: 30 },
      jitter_s: { p50: 0.0003, p95: 0.0009, max: 0.003, count: 27 },
      client_latency_s: { p50: 0.44, p99: 0.5, max: 0.52, count: 3 },
      underruns_total: 0, overruns_total: 0,
      chunks_sent_total: 1234 + 30 * i, bytes_sent_total: 23800000 + 577680 * i,
      send_errors_total: 0, dropped_total: 0,
      codecs: [
        { codec: "opus", listeners: 2, bytes_sent_total: 4000000 + 40000 * i, encode_s: { p50: 0.0011, p95: 0.0015, p99: 0.0021, max: 0.0024, count: 10 } },
        { codec: "pcm_s16le", listeners: 1, bytes_sent_total: 19800000 + 537680 * i, encode_s: { p50: 0.00002, p95: 0.00003, p99: 0.00004, max: 0.00005, count: 10 } },
      ],
      ...(over[name] ? over[name](i) : {}),
    })),
  };
}

// ---- rolling window

test("the rolling window keeps the last five minutes", () => {
  assert.equal(WINDOW_S, 300);
  const w = new RollingWindow(["a", "b"]);
  for (let s = 0; s <= 400; s++) w.push(1000 + s, { a: s, b: s * 2 });
  assert.equal(w.length, 301); // 1100 ..= 1400
  assert.equal(w.t[0], 1100);
  assert.equal(w.t.at(-1), 1400);
  assert.deepEqual(w.column("a").slice(0, 2), [100, 101]);
  assert.equal(w.latest("b"), 800);
  const [t, a, b] = w.data();
  assert.equal(t.length, a.length);
  assert.equal(a.length, b.length);
});

test("the rolling window trims by time, not by count, and keeps gaps", () => {
  const w = new RollingWindow(["v"], 10);
  w.push(0, { v: 1 });
  w.push(1, {}); // missing field: a gap
  w.push(2, { v: null });
  w.push(30, { v: 4 }); // after a long pause the old rows are gone
  assert.deepEqual(w.t, [30]);
  assert.deepEqual(w.column("v"), [4]);
  const g = new RollingWindow(["v"], 10);
  g.push(0, { v: 1 });
  g.push(1, {});
  assert.deepEqual(g.column("v"), [1, null]);
});

test("the rolling window replaces a repeated time and starts over when time runs backwards", () => {
  const w = new RollingWindow(["v"]);
  w.push(100, { v: 1 });
  w.push(101, { v: 2 });
  w.push(101, { v: 3 });
  assert.deepEqual(w.t, [100, 101]);
  assert.deepEqual(w.column("v"), [1, 3]);
  w.push(50, { v: 9 });
  assert.deepEqual(w.t, [50]);
  assert.deepEqual(w.column("v"), [9]);
  assert.equal(new RollingWindow(["v"]).latest("v"), null);
});

// ---- counter rates

test("rates come from consecutive counter readings", () => {
  assert.equal(counterRate(100, 150, 2), 25);
  assert.equal(counterRate(100, 100, 1), 0);
  assert.equal(counterRate(null, 100, 1), null);
  assert.equal(counterRate(100, 200, 0), null);
  assert.equal(counterRate(100, 200, -1), null);
  assert.equal(counterRate(100, NaN, 1), null);
});

test("a counter that went down was reset and counts from zero", () => {
  assert.equal(counterRate(1000, 30, 1), 30);
  assert.equal(counterRate(1000, 0, 1), 0);
  // A restart the counter value alone cannot show.
  assert.equal(counterRate(10, 40, 2, { reset: true }), 20);
});

test("CounterRates tracks each counter with its own time", () => {
  const r = new CounterRates();
  assert.equal(r.update("a", 10, T0), null);
  assert.equal(r.update("b", 5, T0 + 500), null);
  assert.equal(r.update("a", 30, T0 + 2000), 10);
  assert.equal(r.update("b", 6, T0 + 1000), 2);
  assert.equal(r.update("a", 4, T0 + 3000), 4); // reset
  assert.equal(r.update("a", 8, T0 + 4000, { reset: true }), 8);
  r.retain(new Set(["a"]));
  assert.equal(r.update("b", 7, T0 + 2000), null, "forgotten");
  assert.equal(r.update("a", null, T0 + 5000), null);
  assert.equal(r.update("a", 9, T0 + 6000), null, "a missing reading starts over");
});

// ---- thresholds

test("threshold colours follow the Grafana dashboard", () => {
  const s = THRESHOLDS.synthesis;
  assert.equal(thresholdLevel(0.0008, s), "ok");
  assert.equal(thresholdLevel(0.0499, s), "ok");
  assert.equal(thresholdLevel(0.05, s), "warn");
  assert.equal(thresholdLevel(0.0999, s), "warn");
  assert.equal(thresholdLevel(0.1, s), "bad");
  assert.equal(thresholdLevel(2, s), "bad");
  assert.deepEqual(THRESHOLDS.delivery, THRESHOLDS.synthesis);

  const j = THRESHOLDS.jitter;
  assert.deepEqual([0.019, 0.02, 0.049, 0.05].map((v) => thresholdLevel(v, j)), ["ok", "warn", "warn", "bad"]);
  const c = THRESHOLDS.client;
  assert.deepEqual([0.19, 0.2, 0.29, 0.3, 0.5].map((v) => thresholdLevel(v, c)), ["ok", "warn", "warn", "bad", "bad"]);
});

test("a shallow ring is bad and any underrun is bad", () => {
  const r = THRESHOLDS.ring;
  assert.deepEqual([0, 0.099, 0.1, 0.199, 0.2, 0.5].map((v) => thresholdLevel(v, r)), ["bad", "bad", "warn", "warn", "ok", "ok"]);
  const u = THRESHOLDS.underruns;
  assert.equal(thresholdLevel(0, u), "ok");
  assert.equal(thresholdLevel(0.001, u), "bad");
  assert.equal(thresholdLevel(5, u), "bad");
});

test("no value or no thresholds has no colour", () => {
  assert.equal(thresholdLevel(null, THRESHOLDS.synthesis), "none");
  assert.equal(thresholdLevel(undefined, THRESHOLDS.synthesis), "none");
  assert.equal(thresholdLevel(NaN, THRESHOLDS.synthesis), "none");
  assert.equal(thresholdLevel(1, null), "none");
});

test("the thresholds are described in the chart's unit", () => {
  const chart = (id) => CHARTS.find((c) => c.id === id);
  assert.deepEqual(describeThresholds(chart("synthesis")), [["ok", "green < 50 ms"], ["warn", "yellow < 100 ms"], ["bad", "red ≥ 100 ms"]]);
  assert.deepEqual(describeThresholds(chart("ring")), [["bad", "red < 100 ms"], ["warn", "yellow < 200 ms"], ["ok", "green ≥ 200 ms"]]);
  assert.deepEqual(describeThresholds(chart("underruns")), [["ok", "green 0"], ["bad", "red > 0"]]);
  assert.deepEqual(describeThresholds(chart("listeners")), []);
});

// ---- formatting

test("seconds are shown as milliseconds", () => {
  assert.equal(formatMs(0.0004), "0.40 ms");
  assert.equal(formatMs(0.00123), "1.23 ms");
  assert.equal(formatMs(0.0123), "12.3 ms");
  assert.equal(formatMs(0.44), "440 ms");
  assert.equal(formatMs(1.5), "1500 ms");
  assert.equal(formatMs(0), "0 ms");
  assert.equal(formatMs(0.0004, { unit: false }), "0.40");
  assert.equal(formatMs(null), "–");
  assert.equal(formatMs(undefined), "–");
  assert.equal(formatMs(Infinity), "–");
});

test("bits, bytes, percentages, durations, rates and counts", () => {
  assert.equal(formatBits(0), "0 bit/s");
  assert.equal(formatBits(999), "999 bit/s");
  assert.equal(formatBits(4621440), "4.62 Mbit/s");
  assert.equal(formatBits(1536000), "1.54 Mbit/s");
  assert.equal(formatBits(2.5e9), "2.50 Gbit/s");
  assert.equal(formatBits(null), "–");
  assert.equal(formatBytes(12345678), "11.8 MiB");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(2048), "2.00 KiB");
  assert.equal(formatPercent(0.34), "34%");
  assert.equal(formatPercent(0.12), "12%");
  assert.equal(formatPercent(0.004), "0.4%");
  assert.equal(formatPercent(0), "0%");
  assert.equal(formatPercent(2.5), "250%");
  assert.equal(formatDuration(12.3), "12 s");
  assert.equal(formatDuration(425), "7 m 05 s");
  assert.equal(formatDuration(3 * 3600 + 125), "3 h 02 m");
  assert.equal(formatDuration(2 * 86400 + 4 * 3600 + 59), "2 d 04 h");
  assert.equal(formatDuration(-1), "–");
  assert.equal(formatRate(0), "0/s");
  assert.equal(formatRate(0.25), "0.25/s");
  assert.equal(formatRate(42), "42/s");
  assert.equal(formatCount(3), "3");
  assert.equal(formatCount(null), "–");
});

// ---- events to rows

test("a station's row is in seconds, with null quantiles when nothing was measured", () => {
  const st = event(0).stations[0];
  const row = stationRow(st, { underruns: 0, bytes: 577680 });
  assert.deepEqual(Object.keys(row).sort(), [...FIELDS].sort());
  assert.equal(row.synth_p99, 0.0008);
  assert.equal(row.jitter_p95, 0.0009);
  assert.equal(row.client_p50, 0.44);
  assert.equal(row.ring_depth, 0.2);
  assert.equal(row.bandwidth_bps, 577680 * 8);
  const idle = stationRow({ ...st, client_latency_s: { p50: null, p99: null, max: null, count: 0 } });
  assert.equal(idle.client_p50, null);
  assert.equal(idle.client_p99, null);
  assert.equal(idle.underruns_ps, null);
  assert.equal(idle.bandwidth_bps, null);
  // A count of 0 wins over stale numbers.
  assert.equal(stationRow({ ...st, synthesis_s: { p50: 1, p99: 1, max: 1, count: 0 } }).synth_p99, null);
});

test("all stations together show the worst station and the sums", () => {
  const rows = [
    { synth_p99: 0.001, client_p99: null, ring_depth: 0.3, ring_capacity: 0.5, underruns_ps: 0, bandwidth_bps: 1000, listeners: 2 },
    { synth_p99: 0.004, client_p99: 0.4, ring_depth: 0.15, ring_capacity: 0.6, underruns_ps: 2, bandwidth_bps: 500, listeners: 1 },
    { synth_p99: null, client_p99: null, ring_depth: null, ring_capacity: null, underruns_ps: null, bandwidth_bps: null, listeners: 0 },
  ];
  const all = combineRows(rows);
  assert.equal(all.synth_p99, 0.004);
  assert.equal(all.client_p99, 0.4);
  assert.equal(all.ring_depth, 0.15);
  assert.equal(all.ring_capacity, 0.6);
  assert.equal(all.underruns_ps, 2);
  assert.equal(all.bandwidth_bps, 1500);
  assert.equal(all.listeners, 3);
  assert.equal(combineRows(rows, 7).listeners, 7, "the event's total wins");
  const none = combineRows([]);
  assert.equal(none.synth_p99, null);
  assert.equal(none.ring_depth, null);
  assert.equal(none.underruns_ps, null);
});

test("the model charts rates from counters and keeps a window per station", () => {
  const m = new LiveModel();
  const over = { night: (i) => ({ underruns_total: i >= 3 ? 4 : 0, listeners: 1 }) };
  for (let i = 0; i < 5; i++) assert.ok(m.ingest(event(i, { stations: ["default", "night"], over })));
  assert.equal(m.events, 5);
  assert.deepEqual(m.stations, ["default", "night"]);
  assert.deepEqual(m.known, ["default", "night"]);
  const d = m.window("default");
  assert.equal(d.length, 5);
  assert.deepEqual(d.column("bandwidth_bps"), [null, 577680 * 8, 577680 * 8, 577680 * 8, 577680 * 8]);
  assert.deepEqual(m.window("night").column("underruns_ps"), [null, 0, 0, 4, 0]);
  const all = m.window(ALL);
  assert.deepEqual(all.column("underruns_ps"), [null, 0, 0, 4, 0]);
  assert.equal(all.latest("bandwidth_bps"), 2 * 577680 * 8);
  assert.equal(all.latest("listeners"), 6, "the event's total");
  assert.equal(m.window("night").latest("listeners"), 1);
  assert.deepEqual(d.t.slice(0, 2), [T0 / 1000, T0 / 1000 + 1]);
  assert.equal(m.last.t_ms, T0 + 4000);
});

test("a server restart resets the counters even when they end up higher", () => {
  const m = new LiveModel();
  m.ingest(event(0, { uptime: 100, over: { default: () => ({ bytes_sent_total: 1000 }) } }));
  m.ingest(event(1, { uptime: 101, over: { default: () => ({ bytes_sent_total: 2000 }) } }));
  // Restarted 0.5 s ago and already sent more than before: the increase is all of it.
  m.ingest(event(2, { uptime: 0.5, over: { default: () => ({ bytes_sent_total: 3000 }) } }));
  // A plain counter reset (lower value) without an uptime hint.
  m.ingest(event(3, { uptime: 1.5, over: { default: () => ({ bytes_sent_total: 500 }) } }));
  assert.deepEqual(m.window("default").column("bandwidth_bps"), [null, 8000, 24000, 4000]);
});

test("stations that come and go", () => {
  const m = new LiveModel({ spanS: 3 });
  m.ingest(event(0, { stations: ["a", "b"] }));
  m.ingest(event(1, { stations: ["a"] }));
  assert.deepEqual(m.stations, ["a"]);
  assert.deepEqual(m.known, ["a", "b"], "b keeps its history");
  assert.deepEqual(m.window("b").column("ring_depth"), [0.2, null]);
  for (let i = 2; i < 6; i++) m.ingest(event(i, { stations: ["a"] }));
  assert.deepEqual(m.known, ["a"], "b is gone once its history left the window");
  assert.equal(m.window("b"), null);
  // b comes back: a fresh start, no rate across the gap
  m.ingest(event(6, { stations: ["a", "b"] }));
  assert.deepEqual(m.window("b").column("bandwidth_bps"), [null]);
});

test("events that are not /api/live snapshots are ignored", () => {
  const m = new LiveModel();
  for (const bad of [null, 3, "x", {}, { t_ms: T0 }, { t_ms: "now", stations: [] }]) assert.equal(m.ingest(bad), false);
  assert.equal(m.events, 0);
  assert.ok(m.ingest({ t_ms: T0, stations: [null, { nameless: true }] }));
  assert.deepEqual(m.stations, []);
  assert.equal(m.window(ALL).length, 1);
});

test("every chart draws known fields and shows its value with its colour", () => {
  const ids = CHARTS.map((c) => c.id);
  assert.deepEqual(ids, ["synthesis", "delivery", "jitter", "client", "ring", "underruns", "listeners", "bandwidth"]);
  for (const c of CHARTS) {
    for (const [f] of c.series) assert.ok(FIELDS.includes(f), `${c.id}: ${f}`);
    assert.ok(c.series.some(([f]) => f === c.current), c.id);
    if (c.thresholds) assert.ok(THRESHOLDS[c.thresholds], c.id);
  }
  const m = new LiveModel();
  m.ingest(event(0, { over: { default: () => ({ synthesis_s: { p50: 0.03, p99: 0.07, max: 0.1, count: 10 }, ring_depth_s: 0.05 }) } }));
  const win = m.window(ALL);
  const value = (id) => currentValue(CHARTS.find((c) => c.id === id), win);
  assert.deepEqual(value("synthesis"), { value: 0.07, text: "70.0 ms", level: "warn" });
  assert.deepEqual(value("ring"), { value: 0.05, text: "50.0 ms", level: "bad" });
  assert.deepEqual(value("client"), { value: 0.5, text: "500 ms", level: "bad" });
  assert.deepEqual(value("delivery"), { value: 0.001, text: "1.00 ms", level: "ok" });
  assert.deepEqual(value("underruns"), { value: null, text: "–", level: "none" }, "no rate from one reading");
  assert.deepEqual(value("listeners"), { value: 3, text: "3", level: "none" });
  assert.equal(currentValue(CHARTS[0], null).text, "–");
  assert.equal(formatValue(CHARTS.find((c) => c.id === "bandwidth"), 4621440), "4.62 Mbit/s");
  assert.equal(formatValue(CHARTS.find((c) => c.id === "underruns"), 0.5), "0.50/s");
});

// ---- the per-codec table

const quantiles = (p99, count = 10) =>
  count > 0 ? { p50: p99 / 2, p95: p99 * 0.9, p99, max: p99 * 1.2, count } : { p50: null, p95: null, p99: null, max: null, count: 0 };
const codec = (name, listeners, bytes, p99 = 0.001, count = 10) => ({ codec: name, listeners, bytes_sent_total: bytes, encode_s: quantiles(p99, count) });

test("codec bit rates come from two reports; backwards or restarted counters give null", () => {
  assert.equal(increaseRate(1000, 3000, 2), 1000);
  assert.equal(increaseRate(1000, 1000, 1), 0);
  assert.equal(increaseRate(1000, 400, 1), null, "went backwards: not negative, not counted from zero");
  assert.equal(increaseRate(1000, 3000, 1, { reset: true }), null, "restarted in between");
  assert.equal(increaseRate(undefined, 3000, 1), null);
  assert.equal(increaseRate(1000, null, 1), null);
  assert.equal(increaseRate(1000, 3000, 0), null);
  assert.equal(increaseRate(1000, 3000, -1), null);
  assert.equal(increaseRate(1000, 3000, null), null);
});

test("a station's codec rows: its order, listeners, bit rate and encode p99", () => {
  const prev = { name: "a", codecs: [codec("opus", 2, 10000), codec("flac", 1, 50000)] };
  const cur = { name: "a", codecs: [codec("opus", 3, 26000, 0.0021), codec("flac", 1, 150000, 0.004)] };
  assert.deepEqual(codecRows(cur, prev, 1), [
    { codec: "opus", listeners: 3, bitrate_bps: 16000 * 8, encode_p99: 0.0021 },
    { codec: "flac", listeners: 1, bitrate_bps: 100000 * 8, encode_p99: 0.004 },
  ]);
  // Over two seconds (a report skipped), the rate is per second.
  assert.equal(codecRows(cur, prev, 2)[0].bitrate_bps, 8000 * 8);
  // Nothing before: no rates, the rest is there.
  assert.deepEqual(codecRows(cur, undefined, null).map((r) => [r.codec, r.listeners, r.bitrate_bps]), [["opus", 3, null], ["flac", 1, null]]);
  assert.deepEqual(codecRows({ name: "a" }, prev, 1), [], "a station without codecs");
  assert.deepEqual(codecRows({ name: "a", codecs: [null, { listeners: 1 }, codec("pcm_s16le", 0, 0)] }, null, 1).map((r) => r.codec), ["pcm_s16le"]);
});

test("a codec missing from the previous report has no bit rate yet", () => {
  const prev = { name: "a", codecs: [codec("opus", 2, 10000)] };
  const cur = { name: "a", codecs: [codec("opus", 2, 20000), codec("flac", 1, 90000)] };
  const rows = codecRows(cur, prev, 1);
  assert.equal(rows[0].bitrate_bps, 80000);
  assert.equal(rows[1].codec, "flac");
  assert.equal(rows[1].bitrate_bps, null);
  assert.equal(rows[1].listeners, 1);
});

test("a codec counter that went backwards shows no bit rate rather than a negative one", () => {
  const prev = { name: "a", codecs: [codec("opus", 2, 90000), codec("flac", 1, 50000)] };
  const cur = { name: "a", codecs: [codec("opus", 2, 1000), codec("flac", 1, 60000)] };
  assert.deepEqual(codecRows(cur, prev, 1).map((r) => r.bitrate_bps), [null, 80000]);
  assert.deepEqual(codecRows(cur, prev, 1, { reset: true }).map((r) => r.bitrate_bps), [null, null]);
});

test("encode quantiles are null when nothing was encoded", () => {
  const cur = { name: "a", codecs: [codec("opus", 0, 0, 0.002, 0), { ...codec("flac", 0, 0), encode_s: { p50: null, p99: null, max: null, count: 3 } }, { codec: "pcm_s16le", listeners: 0, bytes_sent_total: 0 }] };
  assert.deepEqual(codecRows(cur, cur, 1).map((r) => r.encode_p99), [null, null, null]);
  // A count of 0 wins over stale numbers.
  assert.equal(codecRows({ name: "a", codecs: [{ ...codec("opus", 0, 0), encode_s: { p50: 1, p99: 1, max: 1, count: 0 } }] }, null, 1)[0].encode_p99, null);
  assert.deepEqual(codecCells(codecRows(cur, cur, 1)[0]), { codec: "opus", listeners: "0", bitrate: "0 bit/s", encode: "–", level: "none" });
});

test("all stations' codecs together: summed listeners and bit rates, the slowest encode", () => {
  const rows = combineCodecRows([
    [{ codec: "opus", listeners: 2, bitrate_bps: 256000, encode_p99: 0.002 }, { codec: "pcm_s16le", listeners: 0, bitrate_bps: 0, encode_p99: null }],
    [{ codec: "flac", listeners: 1, bitrate_bps: null, encode_p99: 0.006 }, { codec: "opus", listeners: 5, bitrate_bps: 640000, encode_p99: 0.012 }],
    [],
  ]);
  assert.deepEqual(rows, [
    { codec: "opus", listeners: 7, bitrate_bps: 896000, encode_p99: 0.012 },
    { codec: "pcm_s16le", listeners: 0, bitrate_bps: 0, encode_p99: null },
    { codec: "flac", listeners: 1, bitrate_bps: null, encode_p99: 0.006 },
  ]);
  assert.deepEqual(combineCodecRows([]), []);
});

test("the codec table between two reports, for one station or all of them", () => {
  const e0 = event(0, { stations: ["default", "night"] });
  const e1 = event(1, { stations: ["default", "night"], over: { night: (i) => ({ codecs: [codec("flac", 4, 700000 + 100000 * i, 0.03)] }) } });
  assert.deepEqual(codecTable(e0, e1, "default"), [
    { codec: "opus", listeners: 2, bitrate_bps: 40000 * 8, encode_p99: 0.0021 },
    { codec: "pcm_s16le", listeners: 1, bitrate_bps: 537680 * 8, encode_p99: 0.00004 },
  ]);
  // night had opus and pcm_s16le before and only flac now: flac is new, so no rate yet.
  assert.deepEqual(codecTable(e0, e1, "night"), [{ codec: "flac", listeners: 4, bitrate_bps: null, encode_p99: 0.03 }]);
  assert.deepEqual(codecTable(e0, e1), [
    { codec: "opus", listeners: 2, bitrate_bps: 40000 * 8, encode_p99: 0.0021 },
    { codec: "pcm_s16le", listeners: 1, bitrate_bps: 537680 * 8, encode_p99: 0.00004 },
    { codec: "flac", listeners: 4, bitrate_bps: null, encode_p99: 0.03 },
  ]);
  assert.deepEqual(codecTable(e0, e1, "gone"), [], "a station not in the report");
  assert.deepEqual(codecTable(null, e1, "default").map((r) => r.bitrate_bps), [null, null], "the first report");
  assert.deepEqual(codecTable(e0, null), []);
  assert.deepEqual(codecTable(e0, { t_ms: T0 }), []);
  // A station that just appeared has no rates, the others keep theirs.
  const e2 = event(2, { stations: ["default", "late"] });
  assert.deepEqual(codecTable(e1, e2, "late").map((r) => r.bitrate_bps), [null, null]);
  assert.equal(codecTable(e1, e2, "default")[0].bitrate_bps, 40000 * 8);
});

test("a server restart between two reports leaves the codec bit rates null", () => {
  const before = event(5, { uptime: 500 });
  // Restarted half a second ago and already past the old counters: still no rate.
  const after = event(6, { uptime: 0.5, over: { default: () => ({ codecs: [codec("opus", 1, 5000000), codec("pcm_s16le", 0, 100)] }) } });
  assert.deepEqual(codecTable(before, after, "default").map((r) => [r.codec, r.listeners, r.bitrate_bps]), [["opus", 1, null], ["pcm_s16le", 0, null]]);
  assert.deepEqual(codecTable(before, after).map((r) => r.bitrate_bps), [null, null]);
  // The next report counts again.
  const next = event(7, { uptime: 1.5, over: { default: () => ({ codecs: [codec("opus", 1, 5016000), codec("pcm_s16le", 0, 100)] }) } });
  assert.deepEqual(codecTable(after, next, "default").map((r) => r.bitrate_bps), [128000, 0]);
});

test("the model's codec table follows its latest two reports", () => {
  const m = new LiveModel();
  assert.deepEqual(m.codecTable(), [], "nothing yet");
  m.ingest(event(0));
  assert.deepEqual(m.codecTable().map((r) => r.bitrate_bps), [null, null], "one report: no rates");
  assert.equal(m.ingest({ nonsense: true }), false);
  m.ingest(event(1));
  assert.deepEqual(m.codecTable().map((r) => r.bitrate_bps), [40000 * 8, 537680 * 8]);
  assert.equal(m.ingest("junk"), false, "ignored events do not shift the pair");
  assert.deepEqual(m.codecTable("default").map((r) => r.bitrate_bps), [40000 * 8, 537680 * 8]);
  // Three seconds to the next report (a skipped one): still per second.
  m.ingest(event(4));
  assert.deepEqual(m.codecTable("default").map((r) => r.bitrate_bps), [40000 * 8, 537680 * 8]);
  assert.deepEqual(m.codecTable("gone"), []);
  // A report without codec figures (an older server): no rows.
  const old = event(5);
  delete old.stations[0].codecs;
  m.ingest(old);
  assert.deepEqual(m.codecTable(), []);
});

test("codec cells are formatted and the encode time is judged like the Grafana panel", () => {
  const e = THRESHOLDS.encode;
  assert.deepEqual([0.0099, 0.01, 0.0249, 0.025, 0.2].map((v) => thresholdLevel(v, e)), ["ok", "warn", "warn", "bad", "bad"]);
  assert.deepEqual(describeThresholds({ unit: "ms", thresholds: "encode" }), [["ok", "green < 10 ms"], ["warn", "yellow < 25 ms"], ["bad", "red ≥ 25 ms"]]);
  assert.deepEqual(codecCells({ codec: "opus", listeners: 3, bitrate_bps: 384000, encode_p99: 0.0021 }), {
    codec: "opus", listeners: "3", bitrate: "384 kbit/s", encode: "2.10 ms", level: "ok",
  });
  assert.deepEqual(codecCells({ codec: "flac", listeners: 1, bitrate_bps: 4621440, encode_p99: 0.012 }).encode, "12.0 ms");
  assert.equal(codecCells({ codec: "flac", listeners: 1, bitrate_bps: 4621440, encode_p99: 0.012 }).level, "warn");
  assert.deepEqual(codecCells({ codec: "pcm_s16le", listeners: null, bitrate_bps: null, encode_p99: 0.03 }), {
    codec: "pcm_s16le", listeners: "–", bitrate: "–", encode: "30.0 ms", level: "bad",
  });
});
