//! The built-in live dashboard: once a second one task turns every station's windowed figures
//! into a compact JSON report; `GET /api/live` streams it to browsers as Server-Sent Events and
//! `/dashboard` (web/dashboard.html) draws it. No Grafana needed, and no `/metrics` parsing.
//!
//! One report serves any number of viewers: the windowed histograms are read once per interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::unix_nanos;
use crate::codec::Codec;
use crate::stream::hub::StationHub;
use crate::telemetry::live::{Quantiles, Snapshot};
use crate::telemetry::system::{SystemFigures, SystemSample};

/// How often the report is rebuilt.
pub const LIVE_PERIOD: Duration = Duration::from_secs(1);

/// The `GET /api/live` event body.
#[derive(Clone, Debug, Serialize)]
pub struct LiveReport {
    pub t_ms: u64,
    pub uptime_s: f64,
    /// The window the per-interval figures cover.
    pub interval_s: f64,
    pub listeners: u64,
    pub process: SystemSample,
    pub stations: Vec<LiveStation>,
}

/// One station in a [`LiveReport`]. Quantiles cover the last interval; `_total` fields are
/// cumulative since start (viewers compute rates).
#[derive(Clone, Debug, Serialize)]
pub struct LiveStation {
    pub name: String,
    pub listeners: u64,
    pub ring_depth_s: f64,
    pub ring_capacity_s: f64,
    pub synthesis_s: Quantiles,
    pub delivery_s: Quantiles,
    pub jitter_s: Quantiles,
    pub client_latency_s: Quantiles,
    pub underruns_total: u64,
    pub overruns_total: u64,
    pub chunks_sent_total: u64,
    pub bytes_sent_total: u64,
    pub send_errors_total: u64,
    pub dropped_total: u64,
    /// The codecs the station offers, its default first.
    pub codecs: Vec<LiveCodec>,
}

/// One codec of a station: who receives it, what it sent, what encoding it costs.
#[derive(Clone, Debug, Serialize)]
pub struct LiveCodec {
    pub codec: &'static str,
    pub listeners: u64,
    pub bytes_sent_total: u64,
    /// Encode time per chunk over the last interval (once per chunk, not per listener).
    pub encode_s: Quantiles,
}

/// Previous snapshots of one station's histograms.
#[derive(Default)]
struct Previous {
    synthesis: Snapshot,
    delivery: Snapshot,
    jitter: Snapshot,
    client_latency: Snapshot,
    encode: [Snapshot; Codec::COUNT],
}

/// Starts the reporting task; the receiver always holds the newest report as JSON text (empty
/// until the first one). The task ends when `shutdown` turns true.
pub fn spawn(
    stations: Vec<Arc<StationHub>>,
    system: Arc<SystemFigures>,
    mut shutdown: watch::Receiver<bool>,
) -> watch::Receiver<Arc<str>> {
    let (tx, rx) = watch::channel(Arc::<str>::from(""));
    tokio::spawn(async move {
        let started = Instant::now();
        let mut previous: Vec<Previous> = stations.iter().map(|_| Previous::default()).collect();
        let mut last = Instant::now();
        let mut ticker = tokio::time::interval(LIVE_PERIOD);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            let now = Instant::now();
            let report = build(&stations, &mut previous, &system, started, now - last);
            last = now;
            match serde_json::to_string(&report) {
                Ok(json) => {
                    if tx.send(json.into()).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::debug!("cannot serialise the live report: {e}"),
            }
        }
    });
    rx
}

fn build(
    stations: &[Arc<StationHub>],
    previous: &mut [Previous],
    system: &SystemFigures,
    started: Instant,
    interval: Duration,
) -> LiveReport {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let stations: Vec<LiveStation> = stations
        .iter()
        .zip(previous.iter_mut())
        .map(|(hub, prev)| LiveStation {
            name: hub.name.clone(),
            listeners: load(&hub.stats.listeners),
            ring_depth_s: hub.ring_depth_seconds(),
            ring_capacity_s: hub.ring_capacity_seconds(),
            synthesis_s: hub.live.synthesis.interval(&mut prev.synthesis),
            delivery_s: hub.live.delivery.interval(&mut prev.delivery),
            jitter_s: hub.live.jitter.interval(&mut prev.jitter),
            client_latency_s: hub.live.client_latency.interval(&mut prev.client_latency),
            underruns_total: load(&hub.stats.underruns),
            overruns_total: load(&hub.stats.overruns),
            chunks_sent_total: load(&hub.stats.chunks_sent),
            bytes_sent_total: load(&hub.stats.bytes_sent),
            send_errors_total: load(&hub.stats.send_errors),
            dropped_total: load(&hub.stats.dropped),
            codecs: hub
                .codecs
                .iter()
                .map(|setup| {
                    let i = setup.codec.index();
                    LiveCodec {
                        codec: setup.codec.name(),
                        listeners: load(&hub.stats.listeners_by_codec[i]),
                        bytes_sent_total: load(&hub.stats.bytes_by_codec[i]),
                        encode_s: hub.live.encode[i].interval(&mut prev.encode[i]),
                    }
                })
                .collect(),
        })
        .collect();
    LiveReport {
        t_ms: unix_nanos() / 1_000_000,
        uptime_s: started.elapsed().as_secs_f64(),
        interval_s: interval.as_secs_f64(),
        listeners: stations.iter().map(|s| s.listeners).sum(),
        process: system.latest(),
        stations,
    }
}
