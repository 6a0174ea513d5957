//! Wiring: starts every station (synthesis thread, ring, pacer, hub), serves HTTP and WebSocket on
//! the given listener, and shuts everything down in order when `shutdown` resolves.
//!
//! `main` calls [`run`] with the configured address; tests call it on port 0.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::clock::unix_nanos;
use crate::codec::{CodecError, PcmFormat, StationEncoders};
use crate::config::{BackendChoice, Config, ConfigError, StationConfig};
use crate::control::link::ControlOutbox;
use crate::control::{ControlAccess, ControlSetup, StationControl};
use crate::dashboard;
use crate::edge::origin::OriginPolicy;
use crate::edge::serve::EdgeSettings;
use crate::edge::slots::ListenerSlots;
use crate::edge::{self, EdgeGuards};
use crate::http::{self, AppState, Station};
use crate::pipeline::backfill::{self, Backfill};
use crate::pipeline::gpu_engine;
use crate::pipeline::pacer::{self, Pacer};
use crate::pipeline::ring::{chunk_ring, ChunkConsumer};
use crate::pipeline::synthesis::{
    self, StationInput, SynthesisSettings, SynthesisShared, SynthesisThread,
};
use crate::state::log::LogOpenError;
use crate::state::{ControlLog, LogIdentity, Recovery, StateDir, StateError};
use crate::stream::hub::{ResumeSettings, StationHub};
use crate::stream::protocol::{Codec, FrameHeader, StreamFormat};
use crate::stream::ws::ListenerSettings;
use crate::synth::batch::BatchRenderer;
use crate::synth::gpu::GpuRenderer;
use crate::synth::{
    self, Backend, BackendError, ControlEntry, MusicParams, Synth, Timeline, CHANNELS,
};
use crate::telemetry;
use crate::telemetry::metrics::{self, EdgeMetrics, InstallError};

/// How often the exporter's upkeep and process sampling run.
const UPKEEP_PERIOD: Duration = Duration::from_secs(5);
/// How often machine and process CPU are sampled (the dashboard shows them every second).
const SYSTEM_SAMPLE_PERIOD: Duration = Duration::from_secs(1);
/// Extra ring slots beyond the render-ahead target, so a brief pacer stall is not an overrun.
const RING_HEADROOM_CHUNKS: usize = 2;
/// Control changes in flight to one synthesis thread (requests are serialised, so 1 would do).
const CONTROL_QUEUE: usize = 4;

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Metrics(#[from] InstallError),
    #[error("cannot start the synthesis thread for station {station}: {source}")]
    Thread {
        station: String,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("station {station}: {source}")]
    Codec { station: String, source: CodecError },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Log(#[from] LogOpenError),
    #[error("station {station}: its control history does not replay: {source}")]
    History {
        station: String,
        source: crate::synth::timeline::LogError,
    },
}

/// A running station.
struct RunningStation {
    hub: Arc<StationHub>,
    control: Arc<StationControl>,
    synthesis: Arc<SynthesisShared>,
}

/// One station's handles, for tests that reach into a running server.
#[derive(Clone)]
pub struct StationHandles {
    pub hub: Arc<StationHub>,
    pub control: Arc<StationControl>,
    /// Fault injection (stalling synthesis) and synthesis counters.
    pub synthesis: Arc<SynthesisShared>,
}

/// Handles tests use to reach into a running server (fault injection, the live hubs).
#[derive(Clone)]
pub struct Handles {
    pub stations: Vec<StationHandles>,
}

/// Time synthesis gets to fill the ring before the first chunk is due.
const START_LEAD: Duration = Duration::from_millis(500);

/// Where and when the stream starts: the first chunk-grid position at least `lead` in the future
/// (stream position 0 is the Unix epoch), and the monotonic instant at which it comes due. Every
/// instance with the same seed and clock therefore releases the same chunk at the same moment.
pub fn live_start(sample_rate: u32, chunk_frames: usize, lead: Duration) -> (u64, Instant) {
    let now_unix = unix_nanos() as u128;
    let now = Instant::now();
    let chunk = chunk_frames as u128;
    let earliest = (now_unix + lead.as_nanos()) * sample_rate as u128 / 1_000_000_000;
    let position = earliest.div_ceil(chunk) * chunk;
    let due_unix = position * 1_000_000_000 / sample_rate as u128;
    let wait = Duration::from_nanos(due_unix.saturating_sub(now_unix) as u64);
    (position as u64, now + wait)
}

/// Runs the server on `listener` until `shutdown` resolves.
///
/// # Errors
/// [`ServerError`] when the configuration is invalid, the backend is unavailable, or a station or
/// the HTTP server cannot start.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    run_with_handles(listener, config, shutdown, |_| {}).await
}

/// [`run`], handing the station handles to `on_start` once everything is running.
///
/// # Errors
/// As [`run`].
pub async fn run_with_handles(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(Handles),
) -> Result<(), ServerError> {
    config.validate()?;
    let renderer = open_gpu_renderer(&config)?;
    run_with_renderer(listener, config, shutdown, on_start, renderer).await
}

/// Resolves `--backend` and builds the GPU renderer when it is the GPU.
///
/// # Errors
/// `--backend gpu` without a usable GPU.
fn open_gpu_renderer(config: &Config) -> Result<Option<Box<dyn BatchRenderer>>, ServerError> {
    let selected = synth::select_backend(config.backend)?;
    let Some(context) = selected.gpu else {
        if let Some(reason) = &selected.gpu_skipped {
            tracing::info!("synthesis on the CPU ({reason})");
        }
        return Ok(None);
    };
    let adapter = context.adapter.clone();
    tracing::info!(
        adapter = %adapter.name,
        backend = %adapter.backend,
        device_type = %adapter.device_type,
        driver = %adapter.driver,
        "synthesis on the GPU"
    );
    // The default readback wait; the engine sizes each batch's own deadline.
    let deadline = config.chunk_period() * config.buffer_chunks() as u32;
    match GpuRenderer::new(
        context,
        config.stations.len(),
        config.chunk_frames(),
        deadline,
    ) {
        Ok(renderer) => Ok(Some(Box::new(renderer))),
        // `auto` settles for the CPU; `gpu` was asked for and is refused loudly.
        Err(e) if config.backend == BackendChoice::Auto => {
            tracing::warn!("the GPU renderer cannot start ({e}); synthesis on the CPU");
            Ok(None)
        }
        Err(e) => Err(BackendError::GpuUnavailable(e).into()),
    }
}

/// [`run_with_handles`] with the GPU engine on `renderer` (the CPU renders every station when it
/// is `None`): for embedding a renderer of one's own, and for tests that put a faulty one in.
///
/// # Errors
/// As [`run`].
pub async fn run_with_renderer(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_start: impl FnOnce(Handles),
    gpu: Option<Box<dyn BatchRenderer>>,
) -> Result<(), ServerError> {
    config.validate()?;
    let backend = if gpu.is_some() {
        Backend::Gpu
    } else {
        Backend::Cpu
    };
    let adapter = gpu.as_ref().map(|g| g.adapter().clone());
    // Without the recorder every metric handle is a no-op: the baseline for measuring what
    // telemetry costs.
    let metrics_handle = if config.metrics_enabled {
        Some(metrics::install()?)
    } else {
        None
    };
    // Held until the server stops: a second server on the same directory refuses to start.
    let state_dir = match &config.state_dir {
        Some(path) => {
            let dir = StateDir::open(path)?;
            tracing::info!(path = %dir.path().display(), "state directory");
            Some(dir)
        }
        None => {
            tracing::info!("no state directory: control changes last until the server stops");
            None
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let (stations, engines) = start_stations(&config, backend, gpu, &stop_rx, state_dir.as_ref())?;
    on_start(Handles {
        stations: stations
            .iter()
            .map(|s| StationHandles {
                hub: Arc::clone(&s.hub),
                control: Arc::clone(&s.control),
                synthesis: Arc::clone(&s.synthesis),
            })
            .collect(),
    });
    let upkeep = metrics_handle
        .clone()
        .map(|handle| tokio::spawn(metrics::upkeep(handle, UPKEEP_PERIOD)));
    let (system, system_sampler) = telemetry::system::spawn(SYSTEM_SAMPLE_PERIOD);
    let live = dashboard::spawn(
        stations.iter().map(|s| Arc::clone(&s.hub)).collect(),
        system,
        stop_rx.clone(),
    );

    let edge_metrics = Arc::new(EdgeMetrics::new());
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let serving = Serving {
        metrics: metrics_handle,
        edge_metrics: Arc::clone(&edge_metrics),
        stop: stop_rx.clone(),
        done: done_tx,
        live,
        adapter,
    };
    let state = Arc::new(app_state(&config, &stations, serving)?);
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        backend = backend.as_str(),
        stations = ?config.stations.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
        "auralis listening: ws://{addr}/ws  http://{addr}/  metrics http://{addr}/metrics"
    );

    let app = http::router(Arc::clone(&state));
    let edge = EdgeSettings {
        max_connections: config.max_connections,
        header_read_timeout: config.header_read_timeout,
        request_timeout: config.request_timeout,
        send_buffer_bytes: config.tcp_send_buffer_bytes,
    };
    let signal_stop = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutting down: closing listeners");
        let _ = signal_stop.send(true);
    });
    let stopping_since = edge::serve::serve(
        listener,
        app,
        edge,
        edge_metrics,
        stop_rx.clone(),
        config.shutdown_grace,
    )
    .await;

    // Make sure everything sees the stop even if serving failed, then wait for listeners.
    let _ = stop_tx.send(true);
    drop(state);
    // One grace period for the whole shutdown: HTTP connections and sessions drain side by side.
    if tokio::time::timeout_at(stopping_since + config.shutdown_grace, done_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("some listeners did not close within the grace period");
    }
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    system_sampler.abort();
    for mut engine in engines {
        engine.stop();
    }
    tracing::debug!(stations = stations.len(), "synthesis stopped");
    drop(state_dir);
    tracing::info!("shutdown complete");
    Ok(())
}

/// What the HTTP side is handed besides the configuration and the stations.
struct Serving {
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    edge_metrics: Arc<EdgeMetrics>,
    stop: watch::Receiver<bool>,
    /// Dropped by the last session to end: the shutdown waits for it.
    done: mpsc::Sender<()>,
    live: watch::Receiver<Arc<str>>,
    adapter: Option<crate::synth::gpu::AdapterSummary>,
}

/// The HTTP handlers' state: the stations, the edge's guards and the listener settings.
fn app_state(
    config: &Config,
    stations: &[RunningStation],
    serving: Serving,
) -> Result<AppState, ServerError> {
    let tokens = Arc::new(config.token_policy().map_err(ConfigError::from)?);
    let state = AppState::new(
        stations
            .iter()
            .map(|s| Station {
                hub: Arc::clone(&s.hub),
                control: Arc::clone(&s.control),
            })
            .collect(),
        Arc::new(ControlAccess::new(Arc::clone(&tokens))),
        EdgeGuards {
            origins: OriginPolicy::new(&config.allowed_origins, config.require_origin),
            tokens,
            slots: ListenerSlots::new(config.max_listeners, config.max_listeners_per_ip),
            metrics: serving.edge_metrics,
        },
        serving.metrics,
        ListenerSettings {
            send_timeout: config.send_timeout,
            chunk_period: config.chunk_period(),
            ping_interval: config.ping_interval,
            idle_timeout: config.idle_timeout,
            max_lag_skips_per_minute: config.max_lag_skips_per_minute,
            mount_burst_chunks: config.mount_burst_chunks,
        },
        config.max_client_message_bytes,
        config.sample_rate,
        config.chunk_ms,
        serving.stop,
        serving.done,
        serving.live,
    );
    Ok(state.with_gpu(serving.adapter))
}

/// Where every station starts: the shared chunk grid, ring sizes and the frame layout.
struct StreamPlan {
    settings: SynthesisSettings,
    capacity: usize,
    first_deadline: Instant,
    format: StreamFormat,
    template: FrameHeader,
}

impl StreamPlan {
    fn new(config: &Config) -> Self {
        let chunk_frames = config.chunk_frames();
        let target_depth = config.buffer_chunks();
        let (start_position, first_deadline) =
            live_start(config.sample_rate, chunk_frames, START_LEAD);
        Self {
            settings: SynthesisSettings {
                start_position,
                chunk_frames,
                target_depth,
                chunk_period: config.chunk_period(),
            },
            capacity: target_depth + RING_HEADROOM_CHUNKS,
            first_deadline,
            format: StreamFormat::pcm(config.sample_rate, CHANNELS as u8, chunk_frames as u32),
            template: FrameHeader {
                codec: Codec::PcmS16Le,
                channels: CHANNELS as u8,
                sample_rate: config.sample_rate,
                frames: chunk_frames as u32,
                flags: 0,
                sequence: 0,
                position: 0,
                rendered_unix_ns: 0,
                sent_unix_ns: 0,
            },
        }
    }
}

/// A station's ends that stay on the async side: the ring's consumer (for the pacer), the
/// control outbox, and its replayed history with the durable log.
struct AsyncEnds {
    consumer: ChunkConsumer,
    outbox: ControlOutbox,
    history: Vec<ControlEntry>,
    log: ControlLog,
    recovered: Option<Recovery>,
    /// The history was kept from before: the chunks before the start are rendered again.
    continued: bool,
}

fn start_stations(
    config: &Config,
    backend: Backend,
    gpu: Option<Box<dyn BatchRenderer>>,
    stop: &watch::Receiver<bool>,
    state_dir: Option<&StateDir>,
) -> Result<(Vec<RunningStation>, Vec<SynthesisThread>), ServerError> {
    let plan = StreamPlan::new(config);
    let context = StationContext {
        config,
        plan: &plan,
        backend,
        stop,
    };
    // Codecs first: a station that cannot encode what it offers fails before anything starts.
    let encoders = config
        .stations
        .iter()
        .map(|station| {
            let settings = station.codec_settings(&config.codecs);
            let format = PcmFormat {
                sample_rate: plan.format.sample_rate,
                channels: plan.format.channels,
                frames_per_chunk: plan.format.frames_per_chunk,
            };
            StationEncoders::new(&settings, format).map_err(|source| ServerError::Codec {
                station: station.name.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (inputs, ends) = station_inputs(config, &plan, state_dir)?;
    let engines = spawn_engines(config, inputs, gpu, plan.first_deadline)?;
    let per_station = engines.iter().flat_map(|engine| {
        engine
            .stations()
            .iter()
            .map(move |shared| (Arc::clone(shared), engine.waker()))
    });
    let running = config
        .stations
        .iter()
        .zip(ends)
        .zip(encoders)
        .zip(per_station)
        .map(|(((station, ends), encoders), (shared, waker))| {
            start_station(&context, station, ends, encoders, shared, waker)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((running, engines))
}

/// Each station's engine input and async ends, before any thread starts.
fn station_inputs(
    config: &Config,
    plan: &StreamPlan,
    state_dir: Option<&StateDir>,
) -> Result<(Vec<StationInput>, Vec<AsyncEnds>), ServerError> {
    let chunk_frames = plan.settings.chunk_frames;
    let mut inputs = Vec::with_capacity(config.stations.len());
    let mut ends = Vec::with_capacity(config.stations.len());
    for station in &config.stations {
        let params = match station.preset {
            Some(preset) => MusicParams::from_preset(station.seed, preset),
            None => MusicParams::from_seed(station.seed),
        };
        let initial = Timeline::new(station.seed, config.sample_rate, params).latest_entry();
        let identity = LogIdentity {
            station: station.name.clone(),
            seed: station.seed,
            sample_rate: config.sample_rate,
            chunk_frames: chunk_frames as u32,
            preset: station.preset,
        };
        let (log, replayed) = match state_dir {
            Some(dir) => ControlLog::open(&dir.station_log(&station.name), identity, initial)?,
            None => ControlLog::ephemeral(identity, initial),
        };
        if let Some((recovery, why)) = &replayed.recovery {
            match recovery {
                Recovery::TornTail | Recovery::Empty => {
                    tracing::warn!(station = %station.name, outcome = recovery.as_str(), "control log repaired: {why}")
                }
                _ => {
                    tracing::error!(station = %station.name, outcome = recovery.as_str(), epoch = %log.epoch(), "control log could not be continued as it was: {why}")
                }
            }
        }
        if replayed.continued {
            tracing::info!(station = %station.name, entries = replayed.entries.len(), epoch = %log.epoch(), "control log replayed");
        }
        let history_error = |source| ServerError::History {
            station: station.name.clone(),
            source,
        };
        let mut timeline = Timeline::from_log(station.seed, config.sample_rate, &replayed.entries)
            .map_err(history_error)?;
        // The live timeline holds only what can still sound from the first chunk on.
        timeline.prune(plan.settings.start_position);
        let (producer, consumer) = chunk_ring(plan.capacity, chunk_frames * CHANNELS);
        let (outbox, controls) =
            synthesis::control_link(CONTROL_QUEUE).map_err(|source| ServerError::Thread {
                station: station.name.clone(),
                source,
            })?;
        inputs.push(StationInput {
            synth: Synth::new(timeline, chunk_frames),
            producer,
            controls,
            settings: plan.settings,
        });
        ends.push(AsyncEnds {
            consumer,
            outbox,
            history: replayed.entries,
            log,
            recovered: replayed.recovery.map(|(recovery, _)| recovery),
            continued: replayed.continued,
        });
    }
    Ok((inputs, ends))
}

/// The CPU renders each station on its own thread; the GPU engine renders every station's due
/// blocks in one batch from one thread.
fn spawn_engines(
    config: &Config,
    inputs: Vec<StationInput>,
    gpu: Option<Box<dyn BatchRenderer>>,
    first_release: Instant,
) -> Result<Vec<SynthesisThread>, ServerError> {
    let thread_error = |station: &str| {
        let station = station.to_string();
        move |source| ServerError::Thread { station, source }
    };
    match gpu {
        Some(renderer) => Ok(vec![gpu_engine::spawn_gpu(
            inputs,
            renderer,
            metrics::GpuMetrics::new(),
            first_release.into_std(),
        )
        .map_err(thread_error("all"))?]),
        None => config
            .stations
            .iter()
            .zip(inputs)
            .map(|(station, input)| {
                synthesis::spawn(
                    &station.name,
                    input.synth,
                    input.producer,
                    input.controls,
                    input.settings,
                )
                .map_err(thread_error(&station.name))
            })
            .collect(),
    }
}

/// What every station's async side is started with.
#[derive(Clone, Copy)]
struct StationContext<'a> {
    config: &'a Config,
    plan: &'a StreamPlan,
    backend: Backend,
    stop: &'a watch::Receiver<bool>,
}

/// A station's async side: its hub, its pacer (supervised) and its control endpoint.
fn start_station(
    context: &StationContext<'_>,
    station: &StationConfig,
    ends: AsyncEnds,
    encoders: StationEncoders,
    shared: Arc<SynthesisShared>,
    waker: Option<std::thread::Thread>,
) -> Result<RunningStation, ServerError> {
    let StationContext {
        config,
        plan,
        backend,
        stop,
    } = *context;
    let chunk_frames = plan.settings.chunk_frames as u64;
    let window_chunks = config.resume_window_chunks();
    let start = plan.settings.start_position;
    let backfill = ends.continued.then(|| Backfill {
        seed: station.seed,
        history: ends.history.clone(),
        format: PcmFormat {
            sample_rate: plan.format.sample_rate,
            channels: plan.format.channels,
            frames_per_chunk: plan.format.frames_per_chunk,
        },
        codecs: station.codec_settings(&config.codecs),
        template: plan.template,
        from: start.saturating_sub(window_chunks as u64 * chunk_frames),
        until: start,
    });
    let resume = ResumeSettings {
        epoch: ends.log.epoch().clone(),
        window_chunks,
        backfill_pending: backfill.is_some(),
        burst: config
            .max_resumes_per_second
            .saturating_mul(RESUME_BURST_SECONDS),
        per_second: f64::from(config.max_resumes_per_second),
    };
    let hub = Arc::new(
        StationHub::new(
            station.name.clone(),
            station.seed,
            backend,
            plan.format.clone(),
            encoders.setups().to_vec(),
            plan.capacity,
            config.listener_queue_chunks,
        )
        .with_resume(resume),
    );
    if let Some(backfill) = backfill {
        spawn_backfill(backfill, Arc::clone(&hub));
    }
    let pacer = Pacer::new(
        ends.consumer,
        Arc::clone(&shared),
        waker.clone(),
        plan.template,
        encoders,
        plan.settings.start_position,
    );
    let pacing = tokio::spawn(pacer::run(
        pacer,
        Arc::clone(&hub),
        config.chunk_period(),
        plan.first_deadline,
        stop.clone(),
    ));
    supervise_pacer(station.name.clone(), pacing);
    // Past everything synthesis may have rendered (the live edge plus the render-ahead, and the
    // chunk being released), with time to make the change durable.
    let lead_frames = (plan.settings.target_depth as u64 + 1) * chunk_frames
        + u64::from(config.sample_rate) * CONTROL_DURABLE_MARGIN_MS / 1000;
    let pacer_position = Arc::clone(&shared);
    let setup = ControlSetup {
        station: station.name.clone(),
        seed: station.seed,
        preset: station.preset,
        sample_rate: config.sample_rate,
        history: ends.history,
        log: ends.log,
        recovered: ends.recovered,
        lead_frames,
        retain_frames: (window_chunks as u64 + 1) * chunk_frames,
        live_position: Box::new(move || pacer_position.live_position()),
    };
    let control =
        StationControl::new(setup, ends.outbox, waker).map_err(|source| ServerError::History {
            station: station.name.clone(),
            source,
        })?;
    Ok(RunningStation {
        hub,
        control: Arc::new(control),
        synthesis: shared,
    })
}

/// Seconds of resumes at the configured rate a station accepts at once (a restart brings every
/// listener back together).
const RESUME_BURST_SECONDS: u32 = 5;
/// Time a control change has to become durable before its bar line could be rendered.
const CONTROL_DURABLE_MARGIN_MS: u64 = 100;

/// Renders the chunks before this process's first one again, off the async threads, and hands
/// them to the hub (an empty hand-over when that fails, so resumes do not wait for it).
fn spawn_backfill(backfill: Backfill, hub: Arc<StationHub>) {
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        match backfill::render(&backfill, &hub.metrics, &hub.mount) {
            Ok(frames) => {
                tracing::info!(
                    station = %hub.name,
                    chunks = frames.len(),
                    took_ms = started.elapsed().as_millis() as u64,
                    "chunks before the restart rendered again for resumes"
                );
                hub.backfill(frames);
            }
            Err(error) => {
                tracing::warn!(station = %hub.name, %error, "cannot render the chunks before the restart; listeners resume from the live edge");
                hub.backfill(Vec::new());
            }
        }
    });
}

/// Logs a pacer that ended by panicking. Its station then releases nothing, so `/readyz` fails for
/// it (readiness follows the time of the last release) and the balancer stops sending listeners.
fn supervise_pacer(station: String, pacing: tokio::task::JoinHandle<()>) {
    tokio::spawn(async move {
        if let Err(error) = pacing.await {
            if error.is_panic() {
                tracing::error!(%station, "the pacer crashed: the station releases no more audio and reports not ready");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_starts_on_the_chunk_grid_a_little_ahead() {
        let before = unix_nanos() as u128;
        let lead = Duration::from_millis(500);
        let (position, due) = live_start(48_000, 4800, lead);
        assert_eq!(position % 4800, 0);
        let position_unix = position as u128 * 1_000_000_000 / 48_000;
        assert!(position_unix >= before + lead.as_nanos());
        assert!(position_unix <= before + lead.as_nanos() + 100_000_000 + 50_000_000);
        let wait = due.saturating_duration_since(Instant::now());
        assert!(wait <= lead + Duration::from_millis(100));
    }
}
