//! Aggregation of per-client measurements into a report, threshold evaluation and the summary.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::server_metrics::ServerView;
use super::slo::{CountMetric, Slo, SloMetric, Stat, TimingMetric};

/// Percentiles of one timing, in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    fn stat(&self, stat: Stat) -> f64 {
        match stat {
            Stat::P50 => self.p50_ms,
            Stat::P90 => self.p90_ms,
            Stat::P95 => self.p95_ms,
            Stat::P99 => self.p99_ms,
            Stat::Max => self.max_ms,
        }
    }
}

/// Microsecond histogram up to 10 minutes at 3 significant figures.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

/// Timing samples of one group of clients, shared by its clients: per-client histograms would
/// cost ~160 KiB each, too much for thousands of listeners.
pub(crate) struct Timings {
    pub jitter: Histogram<u64>,
    pub interarrival: Histogram<u64>,
    pub latency: Histogram<u64>,
    pub delivery: Histogram<u64>,
    pub startup: Histogram<u64>,
    pub clock_round_trip: Histogram<u64>,
    /// From a lost connection to the first audio on the next one.
    pub reconnect_gap: Histogram<u64>,
}

impl Timings {
    fn new() -> Self {
        Self {
            jitter: histogram(),
            interarrival: histogram(),
            latency: histogram(),
            delivery: histogram(),
            startup: histogram(),
            clock_round_trip: histogram(),
            reconnect_gap: histogram(),
        }
    }
}

/// Records a value in microseconds, clamped into the histogram's range.
pub(crate) fn record_us(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, 600_000_000));
}

/// One client's counts, added to its group when it ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct Tally {
    pub connected: bool,
    pub disconnected: bool,
    pub error: Option<String>,
    pub chunks: u64,
    pub bytes: u64,
    pub gaps: u64,
    pub missing_chunks: u64,
    pub discontinuities: u64,
    pub underrun_fills: u64,
    pub playout_underruns: u64,
    pub starved_seconds: f64,
    /// Chunks a decoding client decoded, and those that did not decode.
    pub decoded_chunks: u64,
    pub decode_errors: u64,
    /// Lost connections that were reconnected (`--reconnect`), the resumes' outcomes, and the
    /// chunks that came flagged as resumed.
    pub reconnects: u64,
    pub resumes: BTreeMap<String, u64>,
    pub resumed_chunks: u64,
}

/// Everything one group (healthy or slow clients) recorded.
pub(crate) struct Group {
    pub timings: Mutex<Timings>,
    counts: Mutex<(GroupReport, Vec<String>)>,
}

impl Group {
    pub fn new() -> Self {
        Self {
            timings: Mutex::new(Timings::new()),
            counts: Mutex::new((GroupReport::default(), Vec::new())),
        }
    }

    /// Runs `f` on the shared timings (a poisoned lock still holds valid histograms).
    pub fn with_timings(&self, f: impl FnOnce(&mut Timings)) {
        let mut timings = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut timings);
    }

    pub fn add(&self, tally: Tally) {
        let mut guard = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let (report, errors) = &mut *guard;
        report.clients += 1;
        report.connected += u64::from(tally.connected);
        report.disconnected += u64::from(tally.disconnected);
        report.chunks += tally.chunks;
        report.bytes += tally.bytes;
        report.gaps += tally.gaps;
        report.missing_chunks += tally.missing_chunks;
        report.discontinuities += tally.discontinuities;
        report.underrun_fills += tally.underrun_fills;
        report.playout_underruns += tally.playout_underruns;
        report.starved_seconds += tally.starved_seconds;
        report.decoded_chunks += tally.decoded_chunks;
        report.decode_errors += tally.decode_errors;
        report.decoding_clients += u64::from(tally.decoded_chunks + tally.decode_errors > 0);
        report.reconnects += tally.reconnects;
        report.resumed_chunks += tally.resumed_chunks;
        for (outcome, n) in tally.resumes {
            *report.resumes.entry(outcome).or_default() += n;
        }
        if let Some(error) = tally.error {
            if errors.len() < 5 {
                errors.push(error);
            }
        }
    }

    /// The group's report and its first few client errors.
    pub fn finish(&self) -> (GroupReport, Vec<String>) {
        let (mut report, errors) = self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let timings = self.timings.lock().unwrap_or_else(|e| e.into_inner());
        report.jitter = Percentiles::of(&timings.jitter);
        report.interarrival = Percentiles::of(&timings.interarrival);
        report.latency = Percentiles::of(&timings.latency);
        report.delivery = Percentiles::of(&timings.delivery);
        report.startup = Percentiles::of(&timings.startup);
        report.clock_round_trip = Percentiles::of(&timings.clock_round_trip);
        report.reconnect_gap = Percentiles::of(&timings.reconnect_gap);
        (report, errors)
    }
}

/// What one group of clients experienced.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct GroupReport {
    pub clients: u64,
    pub connected: u64,
    /// Connections that ended before the run did (closed by the server or broken).
    pub disconnected: u64,
    pub chunks: u64,
    pub bytes: u64,
    /// Sequence jumps without a discontinuity flag (WebSocket only).
    pub gaps: u64,
    pub missing_chunks: u64,
    /// Chunks flagged as a discontinuity (the server skipped a lagging listener ahead).
    pub discontinuities: u64,
    /// Silence chunks the server sent because synthesis fell behind.
    pub underrun_fills: u64,
    /// Times the simulated player's buffer ran dry after it started.
    pub playout_underruns: u64,
    pub starved_seconds: f64,
    /// Clients that decoded every payload (the others check the framing only), what they
    /// decoded, and the payloads that did not decode.
    pub decoding_clients: u64,
    pub decoded_chunks: u64,
    pub decode_errors: u64,
    /// |arrival interval − chunk period|.
    pub jitter: Percentiles,
    /// Time between consecutive chunk arrivals.
    pub interarrival: Percentiles,
    /// From the chunk's render time (server clock) to receipt, offset-corrected.
    pub latency: Percentiles,
    /// From the chunk's send time (server clock) to receipt, offset-corrected.
    pub delivery: Percentiles,
    /// Connect to first audio.
    pub startup: Percentiles,
    /// Round trip of the ping/pong each client's clock offset is based on.
    pub clock_round_trip: Percentiles,
    /// Lost connections reconnected, resumes by outcome, chunks received as resumed.
    pub reconnects: u64,
    pub resumes: BTreeMap<String, u64>,
    pub resumed_chunks: u64,
    /// From a lost connection to the first audio on the next one.
    pub reconnect_gap: Percentiles,
}

/// The load generator's own cost, to show it was not the bottleneck.
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct HarnessReport {
    pub threads: usize,
    pub cpu_seconds: f64,
    /// CPU seconds per wall second (1.0 is one core saturated).
    pub cpu_ratio: f64,
    pub receive_mbit_per_second: f64,
    pub chunks_per_second: f64,
}

/// One threshold's outcome.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct SloOutcome {
    pub slo: String,
    /// The measured value (ms for timings); `null` when nothing was measured.
    pub actual: Option<f64>,
    pub passed: bool,
}

/// The whole run.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct LoadReport {
    pub url: String,
    pub transport: &'static str,
    pub clients: usize,
    pub slow_clients: usize,
    pub connected: u64,
    pub failed: u64,
    pub first_errors: Vec<String>,
    pub duration_seconds: f64,
    pub prebuffer_ms: f64,
    pub healthy: GroupReport,
    pub slow: GroupReport,
    pub harness: HarnessReport,
    pub server: Option<ServerView>,
    pub server_error: Option<String>,
    pub slo: Vec<SloOutcome>,
    /// Every threshold held.
    pub passed: bool,
}

impl LoadReport {
    /// The value a threshold compares, or `None` when nothing was measured (no samples).
    pub fn value(&self, metric: SloMetric) -> Option<f64> {
        let h = &self.healthy;
        let count = |n: u64| Some(n as f64);
        match metric {
            SloMetric::Count(c) => match c {
                CountMetric::Gaps => count(h.gaps),
                CountMetric::MissingChunks => count(h.missing_chunks),
                CountMetric::Discontinuities => count(h.discontinuities),
                CountMetric::UnderrunFills => count(h.underrun_fills),
                CountMetric::PlayoutUnderruns => count(h.playout_underruns),
                CountMetric::Disconnected => count(h.disconnected),
                CountMetric::Failed => count(self.failed),
                CountMetric::Connected => count(self.connected),
                CountMetric::DecodeErrors => count(h.decode_errors + self.slow.decode_errors),
            },
            SloMetric::Timing(t, stat) => {
                let p = match t {
                    TimingMetric::Jitter => &h.jitter,
                    TimingMetric::Interarrival => &h.interarrival,
                    TimingMetric::Latency => &h.latency,
                    TimingMetric::Delivery => &h.delivery,
                    TimingMetric::Startup => &h.startup,
                };
                (p.count > 0).then(|| p.stat(stat))
            }
        }
    }

    /// Evaluates every threshold; a timing with no samples fails (it cannot be shown to hold).
    pub fn evaluate(&mut self, slos: &[Slo]) {
        self.slo = slos
            .iter()
            .map(|slo| {
                let actual = self.value(slo.metric);
                SloOutcome {
                    slo: slo.text.clone(),
                    actual,
                    passed: actual.is_some_and(|a| slo.holds(a)),
                }
            })
            .collect();
        self.passed = self.slo.iter().all(|o| o.passed);
    }
}

/// The k6-style end-of-run summary.
pub fn summary(report: &LoadReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n  auralis load  {}  ({})",
        report.url, report.transport
    );
    let _ = writeln!(
        out,
        "  {} clients ({} slow), {} connected, {} failed, {:.1} s, simulated prebuffer {:.0} ms\n",
        report.clients,
        report.slow_clients,
        report.connected,
        report.failed,
        report.duration_seconds,
        report.prebuffer_ms
    );
    let seconds = report.duration_seconds.max(1e-9);
    group_summary(&mut out, "healthy listeners", &report.healthy, seconds);
    if report.slow.clients > 0 {
        group_summary(&mut out, "slow/stalled listeners", &report.slow, seconds);
    }
    let h = &report.harness;
    let _ = writeln!(
        out,
        "  harness: {} thread(s), {:.1} CPU s ({:.0} % of one core), receiving {:.1} Mbit/s, {:.0} chunks/s\n",
        h.threads,
        h.cpu_seconds,
        h.cpu_ratio * 100.0,
        h.receive_mbit_per_second,
        h.chunks_per_second
    );
    server_summary(&mut out, report);
    if !report.slo.is_empty() {
        let _ = writeln!(out, "  thresholds");
        for outcome in &report.slo {
            let mark = if outcome.passed { "✓" } else { "✗" };
            let actual = outcome
                .actual
                .map_or_else(|| "no samples".to_string(), |a| format!("{a:.3}"));
            let _ = writeln!(out, "    {mark} {:<28} actual {actual}", outcome.slo);
        }
        out.push('\n');
    }
    for error in &report.first_errors {
        let _ = writeln!(out, "  error: {error}");
    }
    out
}

fn dotted(name: &str) -> String {
    format!("{name:.<26}:")
}

fn group_summary(out: &mut String, title: &str, g: &GroupReport, seconds: f64) {
    let _ = writeln!(
        out,
        "  {title} ({} of {} connected)",
        g.connected, g.clients
    );
    let per_listener_kbps = if g.connected > 0 {
        g.bytes as f64 * 8.0 / 1e3 / seconds / g.connected as f64
    } else {
        0.0
    };
    let counts: [(&str, String); 10] = [
        (
            "gaps",
            format!("{}  ({} chunks missing)", g.gaps, g.missing_chunks),
        ),
        ("discontinuities", g.discontinuities.to_string()),
        ("underrun_fills", g.underrun_fills.to_string()),
        (
            "playout_underruns",
            format!(
                "{}  ({:.2} s of silence)",
                g.playout_underruns, g.starved_seconds
            ),
        ),
        ("disconnected", g.disconnected.to_string()),
        (
            "chunks",
            format!("{}  {:.1}/s", g.chunks, g.chunks as f64 / seconds),
        ),
        (
            "data_received",
            format!(
                "{:.1} MB  {:.2} Mbit/s",
                g.bytes as f64 / 1e6,
                g.bytes as f64 * 8.0 / 1e6 / seconds
            ),
        ),
        ("per_listener", format!("{per_listener_kbps:.1} kbit/s")),
        (
            "decoded",
            format!(
                "{} clients, {} chunks, {} decode errors",
                g.decoding_clients, g.decoded_chunks, g.decode_errors
            ),
        ),
        ("clock_round_trip", timing(&g.clock_round_trip)),
    ];
    for (name, value) in counts {
        let _ = writeln!(out, "    {} {value}", dotted(name));
    }
    for (name, p) in [
        ("jitter", &g.jitter),
        ("interarrival", &g.interarrival),
        ("latency", &g.latency),
        ("delivery", &g.delivery),
        ("startup", &g.startup),
    ] {
        let _ = writeln!(out, "    {} {}", dotted(name), timing(p));
    }
    out.push('\n');
}

fn timing(p: &Percentiles) -> String {
    if p.count == 0 {
        return "no samples".to_string();
    }
    format!(
        "p50={:.2}ms p90={:.2}ms p95={:.2}ms p99={:.2}ms max={:.2}ms n={}",
        p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms, p.max_ms, p.count
    )
}

fn server_summary(out: &mut String, report: &LoadReport) {
    let Some(server) = &report.server else {
        if let Some(error) = &report.server_error {
            let _ = writeln!(out, "  server view: unavailable ({error})\n");
        }
        return;
    };
    let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"));
    let h = &report.healthy;
    let _ = writeln!(
        out,
        "  {:<22} {:>16} {:>18}",
        "server vs client", "server /metrics", "client (healthy)"
    );
    let rows: [(&str, String, String); 7] = [
        (
            "jitter p50",
            ms(server.jitter_p50_ms),
            ms(Some(h.jitter.p50_ms)),
        ),
        (
            "jitter p95",
            ms(server.jitter_p95_ms),
            ms(Some(h.jitter.p95_ms)),
        ),
        (
            "jitter p99",
            ms(server.jitter_p99_ms),
            ms(Some(h.jitter.p99_ms)),
        ),
        (
            "delivery p50",
            ms(server.delivery_p50_ms),
            ms(Some(h.delivery.p50_ms)),
        ),
        (
            "delivery p99",
            ms(server.delivery_p99_ms),
            ms(Some(h.delivery.p99_ms)),
        ),
        (
            "underruns",
            format!("{} ring", server.ring_underruns),
            format!("{} fills", h.underrun_fills),
        ),
        (
            "drops",
            format!("{} chunks", server.chunks_dropped),
            format!("{} missing", h.missing_chunks + report.slow.missing_chunks),
        ),
    ];
    for (name, server_value, client_value) in rows {
        let _ = writeln!(out, "    {name:<20} {server_value:>16} {client_value:>18}");
    }
    let mut reasons = String::new();
    let disconnections: &BTreeMap<String, f64> = &server.disconnections;
    for (reason, n) in disconnections {
        let _ = write!(reasons, " {reason}={n}");
    }
    let _ = writeln!(
        out,
        "    {:<20} {:>16}{}\n",
        "chunks sent",
        server.chunks_sent,
        if reasons.is_empty() {
            String::new()
        } else {
            format!("   disconnections:{reasons}")
        }
    );
}
