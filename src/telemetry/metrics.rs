//! Every metric name, its help text, unit and buckets, in one place; plus the per-station handles
//! the hot paths use (looked up once, never inside a loop).
//!
//! Labels come only from small fixed sets: station (from config), backend, reason.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter,
    Gauge, Histogram, Unit,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::codec::Codec;
pub use crate::labels::{ControlResult, DisconnectReason};
use crate::labels::{
    ErrorCode, Rejection, ReportField, ResumeOutcome, Transport, FALLBACK_REASONS,
};
use crate::state::Recovery;

pub const SYNTHESIS_DURATION: &str = "auralis_synthesis_duration_seconds";
pub const SYNTHESIS_REALTIME_FACTOR: &str = "auralis_synthesis_realtime_factor";
pub const SYNTHESIS_FALLBACKS: &str = "auralis_synthesis_fallbacks_total";
pub const SYNTHESIS_SKIPPED: &str = "auralis_synthesis_skipped_chunks_total";
pub const RING_DEPTH: &str = "auralis_ring_buffer_depth_seconds";
pub const RING_UTILIZATION: &str = "auralis_ring_buffer_utilization_ratio";
pub const RING_UNDERRUNS: &str = "auralis_ring_buffer_underruns_total";
pub const RING_OVERRUNS: &str = "auralis_ring_buffer_overruns_total";
pub const CHUNK_DELIVERY: &str = "auralis_chunk_delivery_seconds";
pub const CHUNK_JITTER: &str = "auralis_chunk_jitter_seconds";
pub const CHUNK_INTERVAL_STDDEV: &str = "auralis_chunk_interval_stddev_seconds";
pub const PACER_LATE: &str = "auralis_pacer_tick_lateness_seconds";
pub const STARTUP: &str = "auralis_startup_seconds";
pub const WS_CONNECTIONS: &str = "auralis_ws_connections";
pub const WS_CONNECTIONS_TOTAL: &str = "auralis_ws_connections_total";
pub const WS_DISCONNECTIONS: &str = "auralis_ws_disconnections_total";
pub const WS_CONNECTION_DURATION: &str = "auralis_ws_connection_duration_seconds";
pub const WS_CHUNKS_SENT: &str = "auralis_ws_chunks_sent_total";
pub const WS_BYTES_SENT: &str = "auralis_ws_bytes_sent_total";
pub const WS_SEND_ERRORS: &str = "auralis_ws_send_errors_total";
pub const WS_CHUNKS_DROPPED: &str = "auralis_ws_chunks_dropped_total";
pub const WS_CLIENT_ERRORS: &str = "auralis_ws_client_errors_total";
pub const CLIENT_LATENCY: &str = "auralis_client_latency_seconds";
pub const CLIENT_BUFFER: &str = "auralis_client_buffer_seconds";
pub const CLIENT_UNDERRUNS: &str = "auralis_client_underruns_total";
pub const CLIENT_REPORTS: &str = "auralis_client_reports_total";
pub const CLIENT_REPORTS_REFUSED: &str = "auralis_client_reports_refused_total";
pub const BUILD_INFO: &str = "auralis_build_info";
pub const CONTROL_REQUESTS: &str = "auralis_control_requests_total";
pub const SYSTEM_CPU: &str = "auralis_system_cpu_usage_ratio";
pub const SYNTHESIS_RESTARTS: &str = "auralis_synthesis_restarts_total";
pub const WS_REJECTIONS: &str = "auralis_ws_rejections_total";
pub const HTTP_CONNECTIONS: &str = "auralis_http_connections";
pub const HTTP_HEADER_TIMEOUTS: &str = "auralis_http_header_timeouts_total";
pub const ENCODE_DURATION: &str = "auralis_encode_duration_seconds";
pub const CODEC_LISTENERS: &str = "auralis_codec_listeners";
pub const CODEC_BYTES_SENT: &str = "auralis_codec_bytes_sent_total";
pub const CLIENT_DECODE_ERRORS: &str = "auralis_client_decode_errors_total";
pub const CONTROL_LOG_APPENDS: &str = "auralis_control_log_appends_total";
pub const CONTROL_LOG_APPEND_DURATION: &str = "auralis_control_log_append_seconds";
pub const CONTROL_LOG_BYTES: &str = "auralis_control_log_bytes";
pub const CONTROL_LOG_WRITE_ERRORS: &str = "auralis_control_log_write_errors_total";
pub const CONTROL_LOG_RECOVERIES: &str = "auralis_control_log_recoveries_total";
pub const CONTROL_LOG_COMPACTIONS: &str = "auralis_control_log_compactions_total";
pub const RESUMES: &str = "auralis_resumes_total";
pub const RESUME_CHUNKS_SENT: &str = "auralis_resume_chunks_sent_total";
pub const RESUME_RENDER_DURATION: &str = "auralis_resume_render_seconds";
pub const GPU_DISPATCH: &str = "auralis_gpu_dispatch_seconds";
pub const GPU_BUSY: &str = "auralis_gpu_busy_ratio";
pub const GPU_ALLOCATED: &str = "auralis_gpu_allocated_bytes";
pub const GPU_INFO: &str = "auralis_gpu_info";

/// The metrics `/metrics` always shows (with HELP text), for docs and tests. The `auralis_gpu_*`
/// series appear only when the GPU renders.
pub const ALL: [&str; 48] = [
    SYNTHESIS_DURATION,
    SYNTHESIS_REALTIME_FACTOR,
    SYNTHESIS_SKIPPED,
    RING_DEPTH,
    RING_UTILIZATION,
    RING_UNDERRUNS,
    RING_OVERRUNS,
    CHUNK_DELIVERY,
    CHUNK_JITTER,
    CHUNK_INTERVAL_STDDEV,
    PACER_LATE,
    STARTUP,
    WS_CONNECTIONS,
    WS_CONNECTIONS_TOTAL,
    WS_DISCONNECTIONS,
    WS_CONNECTION_DURATION,
    WS_CHUNKS_SENT,
    WS_BYTES_SENT,
    WS_SEND_ERRORS,
    WS_CHUNKS_DROPPED,
    WS_CLIENT_ERRORS,
    CLIENT_LATENCY,
    CLIENT_BUFFER,
    CLIENT_UNDERRUNS,
    CLIENT_REPORTS,
    CLIENT_REPORTS_REFUSED,
    BUILD_INFO,
    CONTROL_REQUESTS,
    SYSTEM_CPU,
    SYNTHESIS_RESTARTS,
    SYNTHESIS_FALLBACKS,
    WS_REJECTIONS,
    HTTP_CONNECTIONS,
    HTTP_HEADER_TIMEOUTS,
    ENCODE_DURATION,
    CODEC_LISTENERS,
    CODEC_BYTES_SENT,
    CLIENT_DECODE_ERRORS,
    CONTROL_LOG_APPENDS,
    CONTROL_LOG_APPEND_DURATION,
    CONTROL_LOG_BYTES,
    CONTROL_LOG_WRITE_ERRORS,
    CONTROL_LOG_RECOVERIES,
    CONTROL_LOG_COMPACTIONS,
    RESUMES,
    RESUME_CHUNKS_SENT,
    RESUME_RENDER_DURATION,
    // process_* series come from metrics-process and are described there.
    "process_resident_memory_bytes",
];

const FAST_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
];
/// Buckets of `auralis_chunk_delivery_seconds` (and the GPU dispatch histogram).
pub const DELIVERY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// Buckets of `auralis_chunk_jitter_seconds`.
pub const JITTER_BUCKETS: &[f64] = &[
    0.000_5, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5,
];
const STARTUP_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0,
];
const CLIENT_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0];
const DURATION_BUCKETS: &[f64] = &[
    1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 86_400.0,
];

/// Installed once per process (tests start many servers in one process). Concurrent callers wait
/// for the first installation and share its outcome.
static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Error installing the recorder (another global recorder was already set).
#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct InstallError(String);

/// Installs the Prometheus recorder (idempotent) with explicit buckets and all descriptions.
///
/// # Errors
/// [`InstallError`] when a different global recorder is already installed.
pub fn install() -> Result<PrometheusHandle, InstallError> {
    HANDLE
        .get_or_init(install_once)
        .clone()
        .map_err(InstallError)
}

fn install_once() -> Result<PrometheusHandle, String> {
    let buckets: [(&str, &[f64]); 14] = [
        (SYNTHESIS_DURATION, FAST_BUCKETS),
        (CONTROL_LOG_APPEND_DURATION, DELIVERY_BUCKETS),
        (RESUME_RENDER_DURATION, FAST_BUCKETS),
        (ENCODE_DURATION, FAST_BUCKETS),
        (GPU_DISPATCH, DELIVERY_BUCKETS),
        (PACER_LATE, FAST_BUCKETS),
        (CHUNK_DELIVERY, DELIVERY_BUCKETS),
        (CHUNK_JITTER, JITTER_BUCKETS),
        (STARTUP, STARTUP_BUCKETS),
        (CLIENT_LATENCY, CLIENT_BUCKETS),
        (CLIENT_BUFFER, CLIENT_BUCKETS),
        (WS_CONNECTION_DURATION, DURATION_BUCKETS),
        // Guard: any histogram added without buckets still renders as a histogram.
        ("auralis_", DELIVERY_BUCKETS),
        ("process_", DELIVERY_BUCKETS),
    ];
    let mut builder = PrometheusBuilder::new();
    for (name, values) in buckets {
        let matcher = if name.ends_with('_') {
            Matcher::Prefix(name.to_string())
        } else {
            Matcher::Full(name.to_string())
        };
        builder = builder
            .set_buckets_for_metric(matcher, values)
            .map_err(|e| e.to_string())?;
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    describe_all();
    metrics_process::Collector::default().describe();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Ok(handle)
}

/// Runs the exporter's upkeep and samples process metrics every `period`, off the hot path.
pub async fn upkeep(handle: PrometheusHandle, period: Duration) {
    let collector = metrics_process::Collector::default();
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        collector.collect();
        handle.run_upkeep();
    }
}

/// Renders the current metrics in the Prometheus text format, with fresh process figures.
pub fn render(handle: &PrometheusHandle) -> String {
    metrics_process::Collector::default().collect();
    handle.render()
}

fn describe_all() {
    describe_histogram!(
        SYNTHESIS_DURATION,
        Unit::Seconds,
        "Time to render one chunk, by the backend that rendered it: backend=\"cpu\" one CPU render (a GPU station's fallback blocks included), backend=\"gpu\" the GPU batch that rendered it, from composing to readback."
    );
    describe_gauge!(
        SYNTHESIS_REALTIME_FACTOR,
        "Chunk duration divided by the time it took to render it (higher is better; below 1 cannot keep up)."
    );
    describe_counter!(
        SYNTHESIS_FALLBACKS,
        "Blocks rendered on the CPU because the GPU renderer failed, by reason."
    );
    describe_counter!(
        SYNTHESIS_SKIPPED,
        "Chunks the synthesis thread never rendered because the pacer had already passed them."
    );
    describe_gauge!(
        RING_DEPTH,
        Unit::Seconds,
        "Audio rendered ahead and waiting in the ring buffer, sampled once per chunk."
    );
    describe_gauge!(
        RING_UTILIZATION,
        "Ring buffer fill as a fraction of its capacity (0..1)."
    );
    describe_counter!(
        RING_UNDERRUNS,
        "Chunks the pacer found the ring empty for and sent as flagged silence."
    );
    describe_counter!(
        RING_OVERRUNS,
        "Rendered chunks that could not be delivered: the ring was full, or the pacer had already sent silence for that position."
    );
    describe_histogram!(
        CHUNK_DELIVERY,
        Unit::Seconds,
        "Time from the pacer popping a chunk off the ring to the listener's socket write completing (live chunks; not the catch-up chunk sent at connect)."
    );
    describe_histogram!(
        CHUNK_JITTER,
        Unit::Seconds,
        "Per listener: absolute difference between the interval since the previous chunk write and the chunk period."
    );
    describe_gauge!(
        CHUNK_INTERVAL_STDDEV,
        Unit::Seconds,
        "Standard deviation of the pacer's chunk release intervals over the last 50 chunks."
    );
    describe_histogram!(
        PACER_LATE,
        Unit::Seconds,
        "How late the pacer woke for each chunk deadline."
    );
    describe_histogram!(
        STARTUP,
        Unit::Seconds,
        "Time from a listener's request (WebSocket upgrade or HTTP mount) to the first audio chunk written to it."
    );
    describe_gauge!(WS_CONNECTIONS, "Listeners connected now.");
    describe_counter!(WS_CONNECTIONS_TOTAL, "Listeners that connected.");
    describe_counter!(WS_DISCONNECTIONS, "Listeners that disconnected, by reason.");
    describe_histogram!(
        WS_CONNECTION_DURATION,
        Unit::Seconds,
        "How long listeners stayed connected."
    );
    describe_counter!(WS_CHUNKS_SENT, "Audio chunks written to listeners.");
    describe_histogram!(
        ENCODE_DURATION,
        Unit::Seconds,
        "Time to encode one chunk with one codec (once per station, shared by its listeners)."
    );
    describe_gauge!(
        CODEC_LISTENERS,
        "Listeners connected, by the codec they receive."
    );
    describe_counter!(
        CODEC_BYTES_SENT,
        Unit::Bytes,
        "Bytes of audio frames written to listeners, by codec."
    );
    describe_counter!(
        CLIENT_DECODE_ERRORS,
        "Chunks clients reported they could not decode (bounded by the chunks sent to them)."
    );
    describe_counter!(
        WS_BYTES_SENT,
        Unit::Bytes,
        "Bytes of audio frames written to listeners (WebSocket payloads)."
    );
    describe_counter!(
        WS_SEND_ERRORS,
        "Writes to listeners (audio chunks or control replies) that failed or timed out."
    );
    describe_counter!(
        WS_CHUNKS_DROPPED,
        "Chunks a listener skipped, by reason (lagged: it fell behind and jumped to the live edge)."
    );
    describe_counter!(
        WS_CLIENT_ERRORS,
        "Client messages refused with an error, by reason."
    );
    describe_histogram!(
        CLIENT_LATENCY,
        Unit::Seconds,
        "Client-reported latency from a chunk's render time to its playout."
    );
    describe_histogram!(
        CLIENT_BUFFER,
        Unit::Seconds,
        "Client-reported playback buffer depth."
    );
    describe_counter!(CLIENT_UNDERRUNS, "Playback underruns reported by clients.");
    describe_counter!(CLIENT_REPORTS, "Client stats reports accepted.");
    describe_counter!(
        CLIENT_REPORTS_REFUSED,
        "Client-reported figures refused because the connection could not have observed them (more underruns than chunks it was sent, a buffer or latency beyond its age), by field."
    );
    describe_gauge!(BUILD_INFO, "Build information; the value is always 1.");
    describe_gauge!(
        SYSTEM_CPU,
        "CPU use of the whole machine over the last second, 0..1 (all cores)."
    );
    describe_histogram!(
        GPU_DISPATCH,
        Unit::Seconds,
        "One GPU batch: writing the voice tables, the dispatch for every due station, and the readback."
    );
    describe_gauge!(
        GPU_BUSY,
        "Share of wall time the GPU engine spent in batches over the last second (0..1)."
    );
    describe_gauge!(
        GPU_ALLOCATED,
        Unit::Bytes,
        "GPU memory the renderer allocated (storage and staging buffers)."
    );
    describe_gauge!(
        GPU_INFO,
        "The GPU adapter in use (adapter, backend, device_type labels); the value is always 1."
    );
    describe_counter!(
        SYNTHESIS_RESTARTS,
        "Times a station's synthesis engine crashed (panicked) and was restarted."
    );
    describe_counter!(
        WS_REJECTIONS,
        "WebSocket upgrades refused before a session started, by reason (origin, token, listener limits, shutdown)."
    );
    describe_gauge!(
        HTTP_CONNECTIONS,
        "HTTP connections open and not upgraded to WebSocket (requests in flight, idle keep-alive, half-sent requests)."
    );
    describe_counter!(
        HTTP_HEADER_TIMEOUTS,
        "Connections closed because the client did not send a complete request head within the header read timeout."
    );
    describe_counter!(
        CONTROL_REQUESTS,
        "Music control requests (WebSocket and REST), by result: applied, invalid, unauthorized, rate_limited, unavailable."
    );
    describe_counter!(
        CONTROL_LOG_APPENDS,
        "Control-log records made durable (written and fsynced) before a change was acknowledged."
    );
    describe_histogram!(
        CONTROL_LOG_APPEND_DURATION,
        Unit::Seconds,
        "Time to write and fsync one control-log record."
    );
    describe_gauge!(
        CONTROL_LOG_BYTES,
        Unit::Bytes,
        "Size of the station's control-log file (0 without a state directory)."
    );
    describe_counter!(
        CONTROL_LOG_WRITE_ERRORS,
        "Control-log appends that failed: the change was refused and nothing applied."
    );
    describe_counter!(
        CONTROL_LOG_RECOVERIES,
        "What the start-up replay repaired, by outcome: torn_tail, corrupt, empty, unreadable, config_changed."
    );
    describe_counter!(
        CONTROL_LOG_COMPACTIONS,
        "Control-log rewrites that dropped history no listener can still ask for."
    );
    describe_counter!(
        RESUMES,
        "Reconnects that asked to resume, by outcome: resumed, outside_window, future, epoch_changed, rate_limited."
    );
    describe_counter!(
        RESUME_CHUNKS_SENT,
        "Chunks sent to listeners to fill what they missed while disconnected."
    );
    describe_histogram!(
        RESUME_RENDER_DURATION,
        Unit::Seconds,
        "Time to render and encode again one chunk from before this process started."
    );
}

/// GPU engine metrics, recorded from the engine thread (which is not real-time safe anyway:
/// wgpu locks and allocates inside its calls).
pub struct GpuMetrics {
    /// Write, dispatch and readback of one batch.
    pub dispatch: Histogram,
    /// Share of wall time spent in GPU batches, over the last second.
    pub busy: Gauge,
    pub allocated: Gauge,
    info: Option<Gauge>,
}

impl GpuMetrics {
    /// The GPU engine's series; created only when the GPU renders.
    pub fn new() -> Self {
        Self {
            dispatch: histogram!(GPU_DISPATCH),
            busy: gauge!(GPU_BUSY),
            allocated: gauge!(GPU_ALLOCATED),
            info: None,
        }
    }

    /// Names the adapter in use in `auralis_gpu_info` (again after a lost device was replaced:
    /// the new one may differ). The previous adapter's series drops to 0.
    pub fn set_adapter(&mut self, name: &str, backend: &str, device_type: &str) {
        if let Some(previous) = self.info.take() {
            previous.set(0.0);
        }
        let info = gauge!(GPU_INFO, "adapter" => name.to_string(), "backend" => backend.to_string(), "device_type" => device_type.to_string());
        info.set(1.0);
        self.info = Some(info);
    }
}

impl Default for GpuMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Server-wide series of the HTTP edge, registered once so they show at zero.
#[derive(Debug)]
pub struct EdgeMetrics {
    pub connections: Gauge,
    pub header_timeouts: Counter,
    rejections: [Counter; Rejection::ALL.len()],
}

impl EdgeMetrics {
    pub fn new() -> Self {
        let rejections = Rejection::ALL.map(|reason| {
            let counter = counter!(WS_REJECTIONS, "reason" => reason.as_str());
            counter.increment(0);
            counter
        });
        let metrics = Self {
            connections: gauge!(HTTP_CONNECTIONS),
            header_timeouts: counter!(HTTP_HEADER_TIMEOUTS),
            rejections,
        };
        metrics.connections.increment(0.0);
        metrics.header_timeouts.increment(0);
        metrics
    }

    pub fn rejected(&self, reason: Rejection) -> &Counter {
        &self.rejections[reason as usize]
    }
}

impl Default for EdgeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Control counters of one station, one per result.
#[derive(Clone)]
pub struct ControlMetrics {
    requests: [Counter; ControlResult::ALL.len()],
    pub log_appends: Counter,
    pub log_append_duration: Histogram,
    pub log_bytes: Gauge,
    pub log_write_errors: Counter,
    pub log_compactions: Counter,
    log_recoveries: [Counter; Recovery::ALL.len()],
}

impl ControlMetrics {
    pub fn new(station: &str) -> Self {
        let requests = ControlResult::ALL.map(|result| {
            let counter = counter!(CONTROL_REQUESTS, "station" => station.to_string(), "result" => result.as_str());
            counter.increment(0);
            counter
        });
        let zeroed = |counter: Counter| {
            counter.increment(0);
            counter
        };
        let label = || station.to_string();
        Self {
            requests,
            log_appends: zeroed(counter!(CONTROL_LOG_APPENDS, "station" => label())),
            log_append_duration: histogram!(CONTROL_LOG_APPEND_DURATION, "station" => label()),
            log_bytes: gauge!(CONTROL_LOG_BYTES, "station" => label()),
            log_write_errors: zeroed(counter!(CONTROL_LOG_WRITE_ERRORS, "station" => label())),
            log_compactions: zeroed(counter!(CONTROL_LOG_COMPACTIONS, "station" => label())),
            log_recoveries: Recovery::ALL.map(|outcome| {
                zeroed(counter!(CONTROL_LOG_RECOVERIES, "station" => label(), "outcome" => outcome.as_str()))
            }),
        }
    }

    /// Counts what the start-up replay repaired.
    pub fn recovered(&self, outcome: Recovery) {
        self.log_recoveries[outcome as usize].increment(1);
    }

    pub fn count(&self, result: ControlResult) {
        self.requests[result as usize].increment(1);
    }
}

/// Handles for one station's series, created once so hot paths only touch atomics.
#[derive(Clone)]
pub struct StationMetrics {
    /// Blocks rendered by the station's own backend: one CPU render, or the GPU batch (compose to
    /// readback) that rendered the block.
    pub synthesis_duration: Histogram,
    /// A GPU station's fallback blocks, each one CPU render (`backend="cpu"`); `None` on the CPU.
    pub fallback_synthesis_duration: Option<Histogram>,
    pub realtime_factor: Gauge,
    pub synthesis_skipped: Counter,
    pub synthesis_restarts: Counter,
    /// Blocks rendered on the CPU because the GPU failed, by `FALLBACK_REASONS` index.
    pub fallbacks: [Counter; FALLBACK_REASONS.len()],
    pub ring_depth: Gauge,
    pub ring_utilization: Gauge,
    pub underruns: Counter,
    pub overruns: Counter,
    pub interval_stddev: Gauge,
    pub pacer_late: Histogram,
    pub delivery: Histogram,
    pub jitter: Histogram,
    pub startup: Histogram,
    /// Per transport, indexed by `Transport as usize`.
    connections: [Gauge; Transport::ALL.len()],
    connections_total: [Counter; Transport::ALL.len()],
    pub connection_duration: Histogram,
    pub chunks_sent: Counter,
    pub bytes_sent: Counter,
    pub send_errors: Counter,
    dropped_lagged: [Counter; Transport::ALL.len()],
    pub client_latency: Histogram,
    pub client_buffer: Histogram,
    pub client_underruns: Counter,
    pub client_reports: Counter,
    /// Per codec, indexed by `Codec::index`.
    pub encode_duration: [Histogram; Codec::COUNT],
    pub codec_listeners: [Gauge; Codec::COUNT],
    pub codec_bytes_sent: [Counter; Codec::COUNT],
    pub client_decode_errors: [Counter; Codec::COUNT],
    client_reports_refused: [Counter; ReportField::ALL.len()],
    disconnections: [[Counter; DisconnectReason::ALL.len()]; Transport::ALL.len()],
    client_errors: [Counter; ErrorCode::ALL.len()],
    resumes: [Counter; ResumeOutcome::ALL.len()],
    pub resume_chunks_sent: Counter,
    pub resume_render: Histogram,
}

impl StationMetrics {
    /// Registers every series of `station` (so they show up at zero before anything happens).
    pub fn new(station: &str, backend: &'static str) -> Self {
        let s = station.to_string();
        let disconnections = Transport::ALL.map(|transport| {
            DisconnectReason::ALL.map(|reason| {
                counter!(WS_DISCONNECTIONS, "station" => s.clone(), "reason" => reason.as_str(), "transport" => transport.as_str())
            })
        });
        let client_errors = ErrorCode::ALL.map(
            |code| counter!(WS_CLIENT_ERRORS, "station" => s.clone(), "reason" => code.as_str()),
        );
        let client_reports_refused = ReportField::ALL.map(
            |field| counter!(CLIENT_REPORTS_REFUSED, "station" => s.clone(), "field" => field.as_str()),
        );
        // `Codec::ALL` is in `Codec::index` order (a codec unit test checks it).
        let by_codec = |name: &'static str| Codec::ALL.map(|c| (name, s.clone(), c.name()));
        let metrics = Self {
            encode_duration: by_codec(ENCODE_DURATION)
                .map(|(n, s, c)| histogram!(n, "station" => s, "codec" => c)),
            codec_listeners: by_codec(CODEC_LISTENERS)
                .map(|(n, s, c)| gauge!(n, "station" => s, "codec" => c)),
            codec_bytes_sent: by_codec(CODEC_BYTES_SENT)
                .map(|(n, s, c)| counter!(n, "station" => s, "codec" => c)),
            client_decode_errors: by_codec(CLIENT_DECODE_ERRORS)
                .map(|(n, s, c)| counter!(n, "station" => s, "codec" => c)),
            synthesis_duration: histogram!(SYNTHESIS_DURATION, "station" => s.clone(), "backend" => backend),
            fallback_synthesis_duration: (backend != "cpu").then(
                || histogram!(SYNTHESIS_DURATION, "station" => s.clone(), "backend" => "cpu"),
            ),
            realtime_factor: gauge!(SYNTHESIS_REALTIME_FACTOR, "station" => s.clone(), "backend" => backend),
            synthesis_skipped: counter!(SYNTHESIS_SKIPPED, "station" => s.clone()),
            synthesis_restarts: counter!(SYNTHESIS_RESTARTS, "station" => s.clone()),
            fallbacks: FALLBACK_REASONS.map(
                |reason| counter!(SYNTHESIS_FALLBACKS, "station" => s.clone(), "reason" => reason),
            ),
            ring_depth: gauge!(RING_DEPTH, "station" => s.clone()),
            ring_utilization: gauge!(RING_UTILIZATION, "station" => s.clone()),
            underruns: counter!(RING_UNDERRUNS, "station" => s.clone()),
            overruns: counter!(RING_OVERRUNS, "station" => s.clone()),
            interval_stddev: gauge!(CHUNK_INTERVAL_STDDEV, "station" => s.clone()),
            pacer_late: histogram!(PACER_LATE, "station" => s.clone()),
            delivery: histogram!(CHUNK_DELIVERY, "station" => s.clone()),
            jitter: histogram!(CHUNK_JITTER, "station" => s.clone()),
            startup: histogram!(STARTUP, "station" => s.clone()),
            connections: Transport::ALL.map(
                |t| gauge!(WS_CONNECTIONS, "station" => s.clone(), "transport" => t.as_str()),
            ),
            connections_total: Transport::ALL.map(
                |t| counter!(WS_CONNECTIONS_TOTAL, "station" => s.clone(), "transport" => t.as_str()),
            ),
            connection_duration: histogram!(WS_CONNECTION_DURATION, "station" => s.clone()),
            chunks_sent: counter!(WS_CHUNKS_SENT, "station" => s.clone()),
            bytes_sent: counter!(WS_BYTES_SENT, "station" => s.clone()),
            send_errors: counter!(WS_SEND_ERRORS, "station" => s.clone()),
            dropped_lagged: Transport::ALL.map(
                |t| counter!(WS_CHUNKS_DROPPED, "station" => s.clone(), "reason" => "lagged", "transport" => t.as_str()),
            ),
            client_latency: histogram!(CLIENT_LATENCY, "station" => s.clone()),
            client_buffer: histogram!(CLIENT_BUFFER, "station" => s.clone()),
            client_underruns: counter!(CLIENT_UNDERRUNS, "station" => s.clone()),
            client_reports: counter!(CLIENT_REPORTS, "station" => s.clone()),
            client_reports_refused,
            disconnections,
            client_errors,
            resumes: ResumeOutcome::ALL.map(
                |outcome| counter!(RESUMES, "station" => s.clone(), "outcome" => outcome.as_str()),
            ),
            resume_chunks_sent: counter!(RESUME_CHUNKS_SENT, "station" => s.clone()),
            resume_render: histogram!(RESUME_RENDER_DURATION, "station" => s.clone()),
        };
        // Counters appear in the exposition only once touched.
        for c in metrics
            .disconnections
            .iter()
            .flatten()
            .chain(&metrics.connections_total)
            .chain(&metrics.dropped_lagged)
            .chain(&metrics.client_errors)
            .chain(&metrics.client_reports_refused)
            .chain(&metrics.fallbacks)
            .chain(&metrics.resumes)
            .chain([&metrics.resume_chunks_sent])
        {
            c.increment(0);
        }
        for c in [
            &metrics.synthesis_skipped,
            &metrics.synthesis_restarts,
            &metrics.underruns,
            &metrics.overruns,
            &metrics.chunks_sent,
            &metrics.bytes_sent,
            &metrics.send_errors,
            &metrics.client_underruns,
            &metrics.client_reports,
        ] {
            c.increment(0);
        }
        metrics
    }

    /// Listeners of `transport` connected now.
    pub fn connections(&self, transport: Transport) -> &Gauge {
        &self.connections[transport as usize]
    }

    pub fn connections_total(&self, transport: Transport) -> &Counter {
        &self.connections_total[transport as usize]
    }

    pub fn disconnected(&self, transport: Transport, reason: DisconnectReason) -> &Counter {
        &self.disconnections[transport as usize][reason as usize]
    }

    /// Chunks skipped by lagging listeners of `transport`.
    pub fn dropped_lagged(&self, transport: Transport) -> &Counter {
        &self.dropped_lagged[transport as usize]
    }

    pub fn client_report_refused(&self, field: ReportField) -> &Counter {
        &self.client_reports_refused[field as usize]
    }

    pub fn client_error(&self, code: ErrorCode) -> &Counter {
        &self.client_errors[code as usize]
    }

    pub fn resumed(&self, outcome: ResumeOutcome) -> &Counter {
        &self.resumes[outcome as usize]
    }
}
