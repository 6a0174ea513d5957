//! `auralis load`: connects many WebSocket listeners and measures what they experience.
//!
//! Per client: sequence gaps and discontinuities, underrun-fill chunks, inter-arrival jitter (the
//! difference between the arrival interval and the chunk period), startup (connect to first audio)
//! and delivery latency (server send time to receipt; meaningful on one host or with synced
//! clocks). Results are merged into HDR histograms and printed as a summary, optionally as JSON.

use std::time::Duration;

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::pipeline::unix_nanos;
use crate::stream::protocol::{FrameHeader, FLAG_DISCONTINUITY, FLAG_UNDERRUN_FILL};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// `ws://host:port/ws?station=...`
    pub url: String,
    pub clients: usize,
    pub duration: Duration,
    /// Clients are started evenly over this time.
    pub ramp: Duration,
}

/// One client's measurements.
struct ClientResult {
    connected: bool,
    error: Option<String>,
    chunks: u64,
    bytes: u64,
    gaps: u64,
    missing_chunks: u64,
    discontinuities: u64,
    underrun_fills: u64,
    startup_us: Option<u64>,
    jitter_us: Histogram<u64>,
    latency_us: Histogram<u64>,
}

/// Percentiles of one measurement, in milliseconds.
#[derive(Serialize, Debug, Clone, Copy, Default)]
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
}

/// The whole run.
#[derive(Serialize, Debug, Clone)]
pub struct LoadReport {
    pub url: String,
    pub clients: usize,
    pub connected: usize,
    pub failed: usize,
    pub first_errors: Vec<String>,
    pub duration_seconds: f64,
    pub chunks: u64,
    pub bytes: u64,
    pub receive_mbit_per_second: f64,
    /// Places where a client saw a sequence jump without a discontinuity flag.
    pub gaps: u64,
    pub missing_chunks: u64,
    pub discontinuities: u64,
    pub underrun_fills: u64,
    pub jitter: Percentiles,
    pub startup: Percentiles,
    pub latency: Percentiles,
}

fn histogram() -> Histogram<u64> {
    // Microseconds up to 10 minutes, 3 significant figures.
    Histogram::new_with_bounds(1, 600_000_000, 3).unwrap_or_else(|_| Histogram::new(3).unwrap())
}

/// Runs the load and returns the report.
pub async fn run(config: &LoadConfig) -> LoadReport {
    let started = Instant::now();
    let end = started + config.ramp + config.duration;
    let mut tasks = Vec::with_capacity(config.clients);
    for i in 0..config.clients {
        let offset = if config.clients > 1 {
            config.ramp.mul_f64(i as f64 / (config.clients - 1) as f64)
        } else {
            Duration::ZERO
        };
        let url = config.url.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(started + offset).await;
            run_client(&url, end).await
        }));
    }
    let mut report = LoadReport {
        url: config.url.clone(),
        clients: config.clients,
        connected: 0,
        failed: 0,
        first_errors: Vec::new(),
        duration_seconds: 0.0,
        chunks: 0,
        bytes: 0,
        receive_mbit_per_second: 0.0,
        gaps: 0,
        missing_chunks: 0,
        discontinuities: 0,
        underrun_fills: 0,
        jitter: Percentiles::default(),
        startup: Percentiles::default(),
        latency: Percentiles::default(),
    };
    let (mut jitter, mut startup, mut latency) = (histogram(), histogram(), histogram());
    for task in tasks {
        let Ok(result) = task.await else {
            report.failed += 1;
            continue;
        };
        if result.connected {
            report.connected += 1;
        } else {
            report.failed += 1;
        }
        if let Some(error) = result.error {
            if report.first_errors.len() < 5 {
                report.first_errors.push(error);
            }
        }
        report.chunks += result.chunks;
        report.bytes += result.bytes;
        report.gaps += result.gaps;
        report.missing_chunks += result.missing_chunks;
        report.discontinuities += result.discontinuities;
        report.underrun_fills += result.underrun_fills;
        let _ = jitter.add(&result.jitter_us);
        let _ = latency.add(&result.latency_us);
        if let Some(us) = result.startup_us {
            let _ = startup.record(us.max(1));
        }
    }
    report.duration_seconds = started.elapsed().as_secs_f64();
    report.receive_mbit_per_second =
        report.bytes as f64 * 8.0 / 1e6 / report.duration_seconds.max(1e-9);
    report.jitter = Percentiles::of(&jitter);
    report.startup = Percentiles::of(&startup);
    report.latency = Percentiles::of(&latency);
    report
}

async fn run_client(url: &str, end: Instant) -> ClientResult {
    let mut result = ClientResult {
        connected: false,
        error: None,
        chunks: 0,
        bytes: 0,
        gaps: 0,
        missing_chunks: 0,
        discontinuities: 0,
        underrun_fills: 0,
        startup_us: None,
        jitter_us: histogram(),
        latency_us: histogram(),
    };
    let connect_start = Instant::now();
    let connected = tokio::time::timeout_at(end, tokio_tungstenite::connect_async(url)).await;
    let mut socket = match connected {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(e)) => {
            result.error = Some(format!("connect: {e}"));
            return result;
        }
        Err(_) => {
            result.error = Some("connect: timed out".to_string());
            return result;
        }
    };
    result.connected = true;
    let mut last: Option<(u64, Instant)> = None;
    let mut period: Option<Duration> = None;
    let mut intervals_regular = false;
    loop {
        let message = match tokio::time::timeout_at(end, socket.next()).await {
            Err(_) => break, // the run is over
            Ok(None) => {
                result.error = Some("server closed the connection".to_string());
                break;
            }
            Ok(Some(Err(e))) => {
                result.error = Some(format!("receive: {e}"));
                break;
            }
            Ok(Some(Ok(message))) => message,
        };
        let Message::Binary(data) = message else {
            continue;
        };
        let now = Instant::now();
        let Ok((header, _)) = FrameHeader::decode(&data) else {
            result.error = Some("undecodable audio frame".to_string());
            break;
        };
        result.chunks += 1;
        result.bytes += data.len() as u64;
        let chunk_period = *period.get_or_insert_with(|| {
            Duration::from_secs_f64(header.frames as f64 / header.sample_rate.max(1) as f64)
        });
        if header.flags & FLAG_UNDERRUN_FILL != 0 {
            result.underrun_fills += 1;
        }
        let discontinuity = header.flags & FLAG_DISCONTINUITY != 0;
        if discontinuity {
            result.discontinuities += 1;
        }
        let receive_unix = unix_nanos();
        let _ = result
            .latency_us
            .record((receive_unix.saturating_sub(header.sent_unix_ns) / 1000).max(1));
        match last {
            None => result.startup_us = Some(now.duration_since(connect_start).as_micros() as u64),
            Some((sequence, at)) => {
                if header.sequence != sequence + 1 && !discontinuity {
                    result.gaps += 1;
                    result.missing_chunks += header.sequence.saturating_sub(sequence + 1);
                }
                // The first frame is the catch-up frame sent at connect: its interval is not
                // a delivery interval.
                if intervals_regular && !discontinuity {
                    let interval = now.duration_since(at).as_secs_f64();
                    let jitter = (interval - chunk_period.as_secs_f64()).abs();
                    let _ = result.jitter_us.record(((jitter * 1e6) as u64).max(1));
                }
                intervals_regular = !discontinuity;
            }
        }
        last = Some((header.sequence, now));
    }
    let _ = socket.close(None).await;
    result
}

/// Human-readable summary.
pub fn summary(report: &LoadReport) -> String {
    let row = |name: &str, p: &Percentiles| {
        format!(
            "  {name:<10} p50 {:>8.2} ms  p90 {:>8.2} ms  p95 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  (n={})\n",
            p.p50_ms, p.p90_ms, p.p95_ms, p.p99_ms, p.max_ms, p.count
        )
    };
    let mut out = format!(
        "auralis load: {} clients ({} connected, {} failed) for {:.1} s against {}\n",
        report.clients, report.connected, report.failed, report.duration_seconds, report.url
    );
    out += &format!(
        "  chunks {}  gaps {} ({} chunks missing)  discontinuities {}  underrun fills {}  receive {:.1} Mbit/s\n",
        report.chunks,
        report.gaps,
        report.missing_chunks,
        report.discontinuities,
        report.underrun_fills,
        report.receive_mbit_per_second
    );
    out += &row("jitter", &report.jitter);
    out += &row("startup", &report.startup);
    out += &row("latency", &report.latency);
    for error in &report.first_errors {
        out += &format!("  error: {error}\n");
    }
    out
}
