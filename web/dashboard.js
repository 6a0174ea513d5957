// The live dashboard: follows GET /api/live (Server-Sent Events, one JSON snapshot a second) and
// charts the last five minutes with uPlot, with a table per codec. The bookkeeping lives in dashboard-model.js.
//
// window.auralisDashboard (updated in place, for automated checks):
//   connected   the event stream is open
//   events      events received and understood
//   lastEvent   the latest event, parsed
//   charts      charts drawn with data so far (CHARTS.length once data arrived)
//   state       "connecting", "live", "reconnecting" or "stalled" (what the status dot shows)
//   station     the station shown: "" for all of them
//   codecs      the codec table's rows as shown: { codec, listeners, bitrate, encode, level }

import uPlot from "./uplot.esm.js";
import {
  LiveModel, CHARTS, ALL, THRESHOLDS, currentValue, describeThresholds, formatValue,
  formatDuration, formatBytes, formatPercent, formatCount, formatBits, codecCells,
} from "./dashboard-model.js";

const LIVE_URL = "/api/live";
const PLOT_HEIGHT = 150;
const AXIS_FONT = "11px system-ui, sans-serif";
const clock = uPlot.fmtDate("{HH}:{mm}:{ss}");
const MIN_SPAN_S = 60; // the x axis covers at least this much, growing to the model's window (5 minutes)

const $ = (id) => document.getElementById(id);
const css = getComputedStyle(document.documentElement);
const color = (name) => css.getPropertyValue(name).trim();
const COLORS = {
  fg: color("--fg"), dim: color("--dim"), line: color("--line"),
  ok: color("--ok") || color("--accent"), warn: color("--warn"), bad: color("--bad"),
  series: [color("--s1"), color("--s2")],
  single: color("--accent"),
};

const model = new LiveModel();
const dash = {
  connected: false,
  events: 0,
  lastEvent: null,
  charts: 0,
  state: "connecting",
  station: stationFromHash(),
  codecs: [],
};
window.auralisDashboard = dash;

// ---- connection

let source = null;
let retryTimer = null;
let retryMs = 1000;
let lastEventAt = 0;
let everConnected = false;

function setConn(state, text = state) {
  dash.state = state;
  const el = $("conn");
  el.dataset.state = state;
  el.textContent = text;
}

function connect() {
  clearTimeout(retryTimer);
  if (source) source.close();
  setConn(everConnected ? "reconnecting" : "connecting", everConnected ? "reconnecting…" : "connecting…");
  const es = new EventSource(LIVE_URL);
  source = es;
  es.onopen = () => {
    if (source !== es) return;
    everConnected = true;
    dash.connected = true;
    retryMs = 1000;
    lastEventAt = performance.now();
    setConn("live");
  };
  es.onmessage = (m) => {
    if (source !== es) return;
    let ev;
    try {
      ev = JSON.parse(m.data);
    } catch {
      return;
    }
    if (!model.ingest(ev)) return;
    dash.connected = true;
    dash.events = model.events;
    dash.lastEvent = ev;
    lastEventAt = performance.now();
    if (dash.state !== "live") setConn("live");
    renderSummary(ev);
    scheduleRender();
  };
  es.onerror = () => {
    if (source !== es) return;
    dash.connected = false;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (an error status or a non-stream answer): try again ourselves, backing off.
      es.close();
      source = null;
      setConn("reconnecting", `reconnecting in ${Math.round(retryMs / 1000)} s…`);
      retryTimer = setTimeout(connect, retryMs);
      retryMs = Math.min(retryMs * 2, 15000);
    } else {
      setConn("reconnecting", "reconnecting…"); // EventSource retries by itself
    }
  };
}

// A stream that is open but silent is shown as stalled.
setInterval(() => {
  if (!dash.connected || !lastEventAt) return;
  const interval = dash.lastEvent && dash.lastEvent.interval_s > 0 ? dash.lastEvent.interval_s : 1;
  const silentS = (performance.now() - lastEventAt) / 1000;
  if (silentS > Math.max(5, 5 * interval)) setConn("stalled", `stalled: no data for ${Math.floor(silentS)} s`);
}, 1000);

// ---- summary and station selector

function renderSummary(ev) {
  const p = ev.process || {};
  $("d-uptime").textContent = formatDuration(ev.uptime_s);
  $("d-listeners").textContent = formatCount(ev.listeners);
  $("d-cpu").textContent = formatPercent(p.cpu_cores);
  $("d-rss").textContent = formatBytes(p.rss_bytes);
  $("d-syscpu").textContent = formatPercent(p.system_cpu_ratio);
  syncStations();
}

function stationFromHash() {
  const m = /(?:^#|&)station=([^&]*)/.exec(location.hash);
  if (!m) return ALL;
  try {
    return decodeURIComponent(m[1]);
  } catch {
    return ALL;
  }
}

let optionNames = "";

function syncStations() {
  const names = [...model.known];
  if (dash.station !== ALL && !names.includes(dash.station)) names.push(dash.station);
  const key = JSON.stringify([names, model.stations]);
  if (key === optionNames) return;
  optionNames = key;
  const select = $("station");
  const options = [new Option("all stations", ALL)];
  for (const name of names) {
    const label = model.stations.includes(name) ? name : `${name} (gone)`;
    options.push(new Option(label, name));
  }
  select.replaceChildren(...options);
  select.value = dash.station;
}

function selectStation(name) {
  dash.station = name;
  $("scope-note").hidden = name !== ALL;
  const hash = name === ALL ? "" : `#station=${encodeURIComponent(name)}`;
  history.replaceState(null, "", `${location.pathname}${location.search}${hash}`);
  render();
}

$("station").addEventListener("change", (e) => selectStation(e.target.value));
window.addEventListener("hashchange", () => {
  const name = stationFromHash();
  if (name !== dash.station) {
    selectStation(name);
    optionNames = "";
    syncStations();
  }
});

// ---- charts

/** A round number at or above `v`: 1, 2, 2.5, 5 times a power of ten. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** The chart's unit for axis ticks, kept short. */
function axisValue(chart, v) {
  if (v == null) return "";
  if (chart.unit === "bit/s") return formatBits(v).replace("bit/s", "b/s").replace(/\.0+ /, " ").replace(/(\.\d*?)0+ /, "$1 ").replace(". ", " ");
  if (chart.unit === "ms") return v >= 100 ? v.toFixed(0) : String(+v.toPrecision(3));
  return String(+v.toPrecision(3));
}

/** Dashed lines where the thresholds lie, in their colours, when they are inside the y range. */
function drawThresholds(u, chart) {
  const th = THRESHOLDS[chart.thresholds];
  if (!th) return;
  const scale = chart.unit === "ms" ? 1000 : 1;
  const { min, max } = u.scales.y;
  const { ctx, bbox } = u;
  ctx.save();
  ctx.lineWidth = Math.max(1, devicePixelRatio);
  ctx.setLineDash([4 * devicePixelRatio, 4 * devicePixelRatio]);
  ctx.globalAlpha = 0.7;
  for (const [at, level] of th.steps) {
    const v = at * scale;
    if (at === Number.MIN_VALUE || v < min || v > max) continue;
    // The line takes the colour of the worse side.
    const above = thresholdSideColor(th, at, level);
    const y = Math.round(u.valToPos(v, "y", true)) + 0.5;
    ctx.strokeStyle = above;
    ctx.beginPath();
    ctx.moveTo(bbox.left, y);
    ctx.lineTo(bbox.left + bbox.width, y);
    ctx.stroke();
  }
  ctx.restore();
}

function thresholdSideColor(th, at, level) {
  const i = th.steps.findIndex((s) => s[0] === at);
  const below = i === 0 ? th.base : th.steps[i - 1][1];
  const rank = { ok: 0, warn: 1, bad: 2 };
  return COLORS[rank[level] >= rank[below] ? level : below];
}

function makeChart(spec) {
  const card = document.createElement("article");
  card.className = "panel chart";
  card.id = `chart-${spec.id}`;
  card.dataset.level = "none";

  const head = document.createElement("header");
  const h2 = document.createElement("h2");
  h2.textContent = spec.title + (spec.unit ? ` (${spec.unit})` : "");
  const now = document.createElement("output");
  now.className = "now";
  now.textContent = "–";
  head.append(h2, now);

  const legend = document.createElement("div");
  legend.className = "legend";
  const single = spec.series.length === 1;
  const keys = spec.series.map(([, label], i) => {
    const span = document.createElement("span");
    const sw = document.createElement("i");
    sw.style.setProperty("--c", single ? COLORS.single : COLORS.series[i % 2]);
    if (label === "capacity") sw.className = "dashed";
    const b = document.createElement("b");
    b.textContent = "–";
    span.append(sw, `${label} `, b);
    legend.append(span);
    return b;
  });
  const at = document.createElement("span");
  at.className = "at";
  legend.append(at);

  const plotEl = document.createElement("div");
  plotEl.className = "plot";

  const rule = document.createElement("p");
  rule.className = "dim rule";
  const parts = describeThresholds(spec);
  if (parts.length) {
    const label = spec.series.find(([f]) => f === spec.current)?.[1];
    rule.append(`${spec.series.length > 1 ? label : "now"}: `);
    parts.forEach(([level, text], i) => {
      const s = document.createElement("span");
      s.className = level;
      s.textContent = text;
      rule.append(...(i ? [" · ", s] : [s]));
    });
  } else {
    rule.textContent = spec.id === "listeners" ? "connected players" : "audio sent to listeners";
  }

  card.append(head, legend, plotEl, rule);
  $("charts").append(card);

  const c = { spec, card, now, keys, at, plotEl, plot: null, counted: false, scale: spec.unit === "ms" ? 1000 : 1 };

  const yRange = (u, lo, hi) => {
    let top = hi;
    if (spec.id === "listeners" || spec.id === "underruns") top = Math.max(1, hi ?? 0);
    return [0, niceCeil((top ?? 0) * 1.1)];
  };
  const xRange = (u, lo, hi) => {
    if (lo == null || hi == null) {
      const t = Date.now() / 1000;
      return [t - MIN_SPAN_S, t];
    }
    return [Math.min(lo, hi - MIN_SPAN_S), hi];
  };
  const opts = {
    width: Math.max(200, plotEl.clientWidth),
    height: PLOT_HEIGHT,
    legend: { show: false },
    cursor: { drag: { x: false, y: false, setScale: false }, points: { size: 6 } },
    scales: { x: { time: true, range: xRange }, y: { range: yRange } },
    axes: [
      {
        stroke: COLORS.dim, font: AXIS_FONT, grid: { stroke: COLORS.line, width: 1 }, ticks: { stroke: COLORS.line, width: 1 },
        space: 64, size: 30, values: (u, splits) => splits.map((v) => clock(new Date(v * 1000))),
      },
      {
        stroke: COLORS.dim, font: AXIS_FONT, space: 28, grid: { stroke: COLORS.line, width: 1 }, ticks: { stroke: COLORS.line, width: 1 },
        size: (u, values) => (values ? Math.ceil(Math.max(3, ...values.map((v) => v.length)) * 7 + 18) : 40),
        grid: { stroke: COLORS.line, width: 1 }, ticks: { stroke: COLORS.line, width: 1 },
        values: (u, splits) => splits.map((v) => axisValue(spec, v)),
        ...(spec.id === "listeners" ? { incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000] } : {}),
      },
    ],
    series: [
      {},
      ...spec.series.map(([, label], i) => ({
        label,
        stroke: single ? COLORS.single : COLORS.series[i % 2],
        width: 1.5,
        points: { show: false },
        spanGaps: false,
        ...(label === "capacity" ? { dash: [5, 4], width: 1 } : {}),
        ...(single ? { fill: `${COLORS.single}22` } : {}),
      })),
    ],
    hooks: {
      draw: [
        (u) => {
          drawThresholds(u, spec);
          if (!c.counted && u.data[0].length > 0) {
            c.counted = true;
            dash.charts++;
          }
        },
      ],
      setCursor: [(u) => renderLegend(c, u.cursor.idx)],
    },
  };
  c.plot = new uPlot(opts, [[], ...spec.series.map(() => [])], plotEl);
  new ResizeObserver(() => {
    const w = plotEl.clientWidth;
    if (w > 0 && Math.abs(w - c.plot.width) >= 1) c.plot.setSize({ width: w, height: PLOT_HEIGHT });
  }).observe(plotEl);
  return c;
}

/** The legend's values: at the cursor while it hovers over the chart, else the latest. */
function renderLegend(c, idx) {
  const data = c.plot.data;
  const n = data[0].length;
  const hovering = idx != null && idx >= 0 && idx < n;
  const i = hovering ? idx : n - 1;
  c.spec.series.forEach(([field], k) => {
    const v = i >= 0 ? data[k + 1][i] : null;
    c.keys[k].textContent = formatValue(c.spec, v == null ? null : v / c.scale);
  });
  c.at.textContent = hovering ? new Date(data[0][i] * 1000).toLocaleTimeString() : "";
}

const charts = CHARTS.map(makeChart);
$("scope-note").hidden = dash.station !== ALL;
if (dash.station !== ALL) syncStations();

function renderCharts() {
  const win = model.window(dash.station);
  for (const c of charts) {
    const { spec } = c;
    const t = win ? win.t : [];
    const cols = spec.series.map(([field]) => {
      const col = win ? win.column(field) : [];
      return c.scale === 1 ? col.slice() : col.map((v) => (v == null ? null : v * c.scale));
    });
    c.plot.setData([t.slice(), ...cols]);
    const cur = currentValue(spec, win);
    c.now.textContent = cur.text;
    c.card.dataset.level = cur.level;
    renderLegend(c, c.plot.cursor.idx);
  }
}

// ---- codec table

function initCodecRule() {
  const rule = $("codec-rule");
  rule.append("encode p99: ");
  describeThresholds({ unit: "ms", thresholds: "encode" }).forEach(([level, text], i) => {
    const s = document.createElement("span");
    s.className = level;
    s.textContent = text;
    rule.append(...(i ? [" · ", s] : [s]));
  });
}

function renderCodecs() {
  const cells = model.codecTable(dash.station).map(codecCells);
  dash.codecs = cells;
  const rows = cells.map((c) => {
    const tr = document.createElement("tr");
    const name = document.createElement("th");
    name.scope = "row";
    name.textContent = c.codec;
    const td = (text) => {
      const el = document.createElement("td");
      el.textContent = text;
      return el;
    };
    const encode = td(c.encode);
    encode.dataset.level = c.level;
    tr.append(name, td(c.listeners), td(c.bitrate), encode);
    return tr;
  });
  $("codec-rows").replaceChildren(...rows);
  $("codecs").querySelector(".table-wrap").hidden = rows.length === 0;
  const empty = $("codec-empty");
  empty.hidden = rows.length > 0;
  if (!rows.length) {
    empty.textContent = !model.last
      ? "No codec figures yet."
      : dash.station !== ALL && !model.stations.includes(dash.station)
        ? "This station is not in the latest report."
        : "The latest report has no codec figures.";
  }
}

initCodecRule();

function render() {
  renderCharts();
  renderCodecs();
}

let renderPending = false;

function scheduleRender() {
  if (renderPending || document.hidden) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    render();
  });
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden) scheduleRender();
});

connect();
