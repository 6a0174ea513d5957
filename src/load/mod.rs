//! `auralis load`: connects many listeners to a stream and measures what they experience.
//!
//! - [`client`]: one listener over WebSocket or plain HTTP (an Icecast mount), healthy or
//!   deliberately slow.
//! - [`playout`]: the simulated player buffer that turns arrival times into heard underruns.
//! - [`clock`]: the server clock offset from `ping`/`pong`, for latency across hosts.
//! - [`report`]: HDR-histogram aggregation, the summary table and threshold outcomes.
//! - [`slo`]: `--slo` thresholds.
//! - [`server_metrics`]: the server's `/metrics` before and after, shown beside the client view.

pub mod client;
pub mod playout;
pub mod report;
pub mod server_metrics;
pub mod slo;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

pub use client::{Behaviour, LiveCounters, PcmFormat};
pub use report::{summary, GroupReport, LoadReport, Percentiles};
pub use slo::{Slo, SloError};

use crate::client_tls::ClientTls;
use report::{Group, HarnessReport};
use server_metrics::{Scrape, ServerView};

/// How the listeners connect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Auralis' WebSocket protocol (`ws://`, or `wss://` through TLS).
    WebSocket,
    /// A plain HTTP stream (`http://`, or `https://`): raw PCM (an Icecast mount, say), or an
    /// Ogg Opus mount when the path ends in `.opus`.
    Http,
}

impl Transport {
    /// Chosen by the URL's scheme.
    pub fn of_url(url: &str) -> Option<Self> {
        let lower = url.to_ascii_lowercase();
        if lower.starts_with("ws://") || lower.starts_with("wss://") {
            Some(Transport::WebSocket)
        } else if lower.starts_with("http://") || lower.starts_with("https://") {
            Some(Transport::Http)
        } else {
            None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Http => "http",
        }
    }
}

/// Which kind of poor reader the slow fraction of clients is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlowMode {
    /// Reads at half the stream rate.
    Slow,
    /// Stops reading after the first audio, connection left open.
    Stall,
    /// Alternates the two.
    Mixed,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    pub url: String,
    pub transport: Transport,
    pub clients: usize,
    pub duration: Duration,
    /// Clients are started evenly over this time; the measured window is ramp + duration.
    pub ramp: Duration,
    /// Audio the simulated player queues before it starts.
    pub prebuffer: Duration,
    /// Share of clients (0..=1) that read slowly or stall.
    pub slow_fraction: f64,
    /// Share of clients (0..=1) that decode every payload and count decode errors; the others
    /// check the framing only (decoding costs the harness CPU that a big run needs elsewhere).
    pub decode_fraction: f64,
    pub slow_mode: SlowMode,
    /// Where to scrape the server's metrics before and after, if anywhere.
    pub metrics_url: Option<String>,
    /// The station listened to, to read only its series from the metrics (all when `None`).
    pub station: Option<String>,
    pub slos: Vec<Slo>,
    /// The raw PCM format of an HTTP stream.
    pub pcm: PcmFormat,
    /// Runtime worker threads the harness was started with (for the report).
    pub threads: usize,
    /// Draw a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
    /// WebSocket clients reconnect when their connection is lost, resuming after the last
    /// chunk they hold (a lost connection then counts as a reconnect, not a disconnect).
    pub reconnect: bool,
    /// TLS for `wss://` and `https://` URLs (the stream's and the metrics'); required there.
    pub tls: Option<ClientTls>,
}

impl LoadConfig {
    /// `clients` healthy listeners for `duration`, started at once, with a 200 ms simulated
    /// prebuffer, no thresholds, no server view, 48 kHz 16-bit stereo for `http://` streams, one
    /// thread, no progress bar and no TLS set-up.
    pub fn new(
        url: impl Into<String>,
        transport: Transport,
        clients: usize,
        duration: Duration,
    ) -> Self {
        Self {
            url: url.into(),
            transport,
            clients,
            duration,
            ramp: Duration::ZERO,
            prebuffer: Duration::from_millis(200),
            slow_fraction: 0.0,
            decode_fraction: 0.0,
            slow_mode: SlowMode::Mixed,
            metrics_url: None,
            station: None,
            slos: Vec::new(),
            pcm: PcmFormat {
                bytes_per_second: 192_000,
                chunk_bytes: 19_200,
            },
            threads: 1,
            progress: false,
            reconnect: false,
            tls: None,
        }
    }

    /// Whether client `index` decodes its payloads: spread evenly, like the slow ones.
    pub fn decodes(&self, index: usize) -> bool {
        let fraction = self.decode_fraction.clamp(0.0, 1.0);
        let before = |i: usize| (i as f64 * fraction).floor() as usize;
        before(index + 1) != before(index)
    }

    /// The behaviour of client `index`: the slow ones are spread evenly through the ramp.
    pub fn behaviour(&self, index: usize) -> Behaviour {
        let fraction = self.slow_fraction.clamp(0.0, 1.0);
        let slow_before = |i: usize| (i as f64 * fraction).floor() as usize;
        let slow_rank = slow_before(index);
        if slow_before(index + 1) == slow_rank {
            return Behaviour::Healthy;
        }
        match self.slow_mode {
            SlowMode::Slow => Behaviour::SlowReader,
            SlowMode::Stall => Behaviour::Stalled,
            SlowMode::Mixed if slow_rank % 2 == 0 => Behaviour::Stalled,
            SlowMode::Mixed => Behaviour::SlowReader,
        }
    }
}

/// The metrics URL of a `ws://HOST:PORT/...` stream: `http://HOST:PORT/metrics` (and `https`
/// for `wss`).
pub fn metrics_url_for(stream_url: &str) -> Option<String> {
    let stream = url::Url::parse(stream_url).ok()?;
    let scheme = match stream.scheme() {
        "ws" => "http",
        "wss" => "https",
        _ => return None,
    };
    let host = stream.host_str()?;
    let mut metrics = url::Url::parse(&format!("{scheme}://{host}/metrics")).ok()?;
    metrics.set_port(stream.port()).ok()?;
    Some(metrics.to_string())
}

/// Runs the load and returns the report with thresholds evaluated.
pub async fn run(config: &LoadConfig) -> LoadReport {
    let before = scrape(config).await;
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let end = started + config.ramp + config.duration;
    let live = Arc::new(LiveCounters::default());
    let healthy = Arc::new(Group::new());
    let slow = Arc::new(Group::new());
    let mut tasks = Vec::with_capacity(config.clients);
    let mut slow_clients = 0;
    for i in 0..config.clients {
        let offset = if config.clients > 1 {
            config.ramp.mul_f64(i as f64 / (config.clients - 1) as f64)
        } else {
            Duration::ZERO
        };
        let behaviour = config.behaviour(i);
        let group = if behaviour == Behaviour::Healthy {
            Arc::clone(&healthy)
        } else {
            slow_clients += 1;
            Arc::clone(&slow)
        };
        let (url, live, transport, pcm, tls) = (
            config.url.clone(),
            Arc::clone(&live),
            config.transport,
            config.pcm,
            config.tls.clone(),
        );
        let prebuffer = config.prebuffer.as_secs_f64();
        let decode = config.decodes(i);
        let websocket = client::WebSocketClient {
            decode,
            behaviour,
            end,
            prebuffer_seconds: prebuffer,
            reconnect: config.reconnect,
        };
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(started + offset).await;
            match transport {
                Transport::WebSocket => {
                    client::run_websocket(&url, tls.as_ref(), websocket, &group, &live).await
                }
                Transport::Http => {
                    let reader = client::HttpReader {
                        behaviour,
                        decode,
                        end,
                        prebuffer_seconds: prebuffer,
                        format: pcm,
                    };
                    client::run_http(&url, tls.as_ref(), reader, &group, &live).await
                }
            }
        }));
    }
    let progress = config
        .progress
        .then(|| spawn_progress(config, started, end, Arc::clone(&live)));
    for task in tasks {
        // A panicking client task is a harness bug; its tally is simply missing from the report.
        let _ = task.await;
    }
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let duration_seconds = started.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let after = scrape_after(config, before.as_ref()).await;

    let (healthy, mut first_errors) = healthy.finish();
    let (slow, slow_errors) = slow.finish();
    first_errors.extend(slow_errors.into_iter().map(|e| format!("slow client: {e}")));
    first_errors.truncate(5);
    let (server, server_error) = match (before, after) {
        (Some(Ok(before)), Some(Ok(after))) => (Some(ServerView::between(&before, &after)), None),
        (Some(Err(e)), _) | (_, Some(Err(e))) => (None, Some(e)),
        _ => (None, None),
    };
    let connected = healthy.connected + slow.connected;
    let bytes = healthy.bytes + slow.bytes;
    let chunks = healthy.chunks + slow.chunks;
    let mut report = LoadReport {
        url: crate::edge::tokens::redact_url(&config.url),
        transport: config.transport.name(),
        clients: config.clients,
        slow_clients,
        connected,
        failed: config.clients as u64 - connected.min(config.clients as u64),
        first_errors,
        duration_seconds,
        prebuffer_ms: config.prebuffer.as_secs_f64() * 1000.0,
        harness: HarnessReport {
            threads: config.threads,
            cpu_seconds,
            cpu_ratio: cpu_seconds / duration_seconds.max(1e-9),
            receive_mbit_per_second: bytes as f64 * 8.0 / 1e6 / duration_seconds.max(1e-9),
            chunks_per_second: chunks as f64 / duration_seconds.max(1e-9),
        },
        healthy,
        slow,
        server,
        server_error,
        slo: Vec::new(),
        passed: true,
    };
    report.evaluate(&config.slos);
    report
}

/// Scrapes `/metrics` (with a short timeout) if a URL is set.
/// The closing scrape, once the server has seen this run's listeners leave (its connection gauge
/// back at the opening value, for up to 3 s): a session's last figures reach `/metrics` as it
/// ends, a moment after the client hung up.
async fn scrape_after(
    config: &LoadConfig,
    before: Option<&Result<Scrape, String>>,
) -> Option<Result<Scrape, String>> {
    let opening = match before {
        Some(Ok(before)) => before.connections(),
        _ => return scrape(config).await,
    };
    let give_up = Instant::now() + Duration::from_secs(3);
    loop {
        let after = scrape(config).await;
        let settled = matches!(&after, Some(Ok(s)) if s.connections() <= opening);
        if settled || Instant::now() >= give_up {
            return after;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn scrape(config: &LoadConfig) -> Option<Result<Scrape, String>> {
    let url = config.metrics_url.as_deref()?;
    let fetched = tokio::time::timeout(
        Duration::from_secs(5),
        client::http_get_body(url, config.tls.as_ref()),
    )
    .await;
    Some(match fetched {
        Ok(Ok(body)) => Ok(Scrape::parse(&body, config.station.as_deref())),
        Ok(Err(e)) => Err(format!("{url}: {e}")),
        Err(_) => Err(format!("{url}: timed out")),
    })
}

/// CPU time this process has used, in seconds (0 where the platform does not say).
fn process_cpu_seconds() -> f64 {
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate, System};
    let Ok(pid) = sysinfo::get_current_pid() else {
        return 0.0;
    };
    let mut system = System::new();
    system.refresh_processes_specifics(
        ProcessesToUpdate::Some(&[pid]),
        false,
        ProcessRefreshKind::nothing().with_cpu(),
    );
    system
        .process(pid)
        .map_or(0.0, |p| p.accumulated_cpu_time() as f64 / 1000.0)
}

/// A progress bar over the run, fed from the live counters four times a second.
fn spawn_progress(
    config: &LoadConfig,
    started: Instant,
    end: Instant,
    live: Arc<LiveCounters>,
) -> (ProgressBar, tokio::task::JoinHandle<()>) {
    let total = end.duration_since(started).as_millis() as u64;
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let clients = config.clients;
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut last_chunks = 0;
        loop {
            tick.tick().await;
            let chunks = live.chunks.load(Ordering::Relaxed);
            let connected = live.connected.load(Ordering::Relaxed);
            let ended = live.ended.load(Ordering::Relaxed);
            ticker_bar.set_position(started.elapsed().as_millis() as u64);
            ticker_bar.set_message(format!(
                "{}/{clients} listening  {} chunks/s  {} gaps  {:.0} Mbit/s total",
                connected.saturating_sub(ended),
                (chunks - last_chunks) * 4,
                live.gaps.load(Ordering::Relaxed),
                live.bytes.load(Ordering::Relaxed) as f64 * 8.0
                    / 1e6
                    / started.elapsed().as_secs_f64().max(1e-9),
            ));
            last_chunks = chunks;
        }
    });
    (bar, ticker)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(slow_fraction: f64, slow_mode: SlowMode) -> LoadConfig {
        LoadConfig {
            slow_fraction,
            slow_mode,
            ..LoadConfig::new(
                "ws://127.0.0.1:1/ws",
                Transport::WebSocket,
                100,
                Duration::from_secs(1),
            )
        }
    }

    #[test]
    fn the_slow_fraction_is_exact_and_spread_out() {
        let c = config(0.1, SlowMode::Mixed);
        let slow: Vec<usize> = (0..100)
            .filter(|&i| c.behaviour(i) != Behaviour::Healthy)
            .collect();
        assert_eq!(slow.len(), 10);
        assert!(slow.windows(2).all(|w| w[1] - w[0] == 10), "{slow:?}");
        let stalled = slow
            .iter()
            .filter(|&&i| c.behaviour(i) == Behaviour::Stalled)
            .count();
        assert_eq!(stalled, 5, "mixed alternates stall and slow");
        assert!((0..100).all(|i| config(0.0, SlowMode::Stall).behaviour(i) == Behaviour::Healthy));
        assert!((0..100).all(|i| config(1.0, SlowMode::Slow).behaviour(i) == Behaviour::SlowReader));
    }

    #[test]
    fn transport_and_metrics_url_follow_the_stream_url() {
        assert_eq!(Transport::of_url("ws://h:1/ws"), Some(Transport::WebSocket));
        assert_eq!(
            Transport::of_url("http://h:1/live.pcm"),
            Some(Transport::Http)
        );
        assert_eq!(Transport::of_url("wss://h/ws"), Some(Transport::WebSocket));
        assert_eq!(
            Transport::of_url("https://h/stations/a.opus"),
            Some(Transport::Http)
        );
        assert_eq!(Transport::of_url("ftp://h/x"), None);
        assert_eq!(
            metrics_url_for("ws://127.0.0.1:8080/ws?station=a").as_deref(),
            Some("http://127.0.0.1:8080/metrics")
        );
        assert_eq!(
            metrics_url_for("ws://[::1]:9/ws").as_deref(),
            Some("http://[::1]:9/metrics")
        );
        assert_eq!(metrics_url_for("http://h/x"), None);
    }
}
