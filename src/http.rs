//! The HTTP edge: routes, the WebSocket upgrade, status and metrics endpoints, the embedded web
//! client, and [`AppError`], which turns failures into clear JSON responses.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use futures_util::StreamExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::control::{
    AccessError, ControlAccess, ControlAck, ControlError, ControlSnapshot, StationControl,
};
use crate::edge::origin::OriginError;
use crate::edge::serve::ConnectionAbort;
use crate::edge::slots::{ListenerSlot, SlotError};
use crate::edge::tokens::{now_unix, Scope, TokenError};
use crate::edge::{EdgeGuards, Rejection};
use crate::labels::{DisconnectReason, ErrorCode};
use crate::mount::serve::MountSession;
use crate::mount::Mount;
use crate::stream::hub::StationHub;
use crate::stream::ws::{self, ListenerSettings, ResumeRequest, Session};
use crate::synth::gpu::AdapterSummary;
use crate::synth::{MusicParams, Preset};
use crate::telemetry;
use crate::web;

/// tungstenite read buffer per listener: clients send only small control messages.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// Write-buffer ceiling per listener; writes only queue here when the socket is not draining.
const MAX_WRITE_BUFFER_BYTES: usize = 512 * 1024;

/// A station as the HTTP layer sees it: its stream and its control.
#[derive(Clone)]
pub struct Station {
    pub hub: Arc<StationHub>,
    pub control: Arc<StationControl>,
}

/// Shared state of the HTTP layer.
pub struct AppState {
    pub stations: Vec<Station>,
    /// Who may change the music.
    pub access: Arc<ControlAccess>,
    /// Origin, token and listener-limit checks on every upgrade.
    pub guards: EdgeGuards,
    pub station_names: Arc<[String]>,
    /// The Prometheus exporter; `None` when metrics are switched off.
    pub metrics: Option<PrometheusHandle>,
    pub listener: ListenerSettings,
    pub max_client_message_bytes: usize,
    pub sample_rate: u32,
    pub chunk_ms: u32,
    pub started: Instant,
    /// Turns true when the server shuts down; every listener watches it.
    pub shutdown: watch::Receiver<bool>,
    /// Held by every listener task; the server waits until all are dropped (mini-redis style).
    pub listener_done: mpsc::Sender<()>,
    /// The newest live-dashboard report (JSON), for `GET /api/live`.
    pub live: watch::Receiver<Arc<str>>,
    /// Permits for open `/api/live` streams.
    live_streams: Arc<tokio::sync::Semaphore>,
    /// The GPU adapter synthesis runs on, if any.
    pub gpu: Option<AdapterSummary>,
    next_session: AtomicU64,
}

impl AppState {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stations: Vec<Station>,
        access: Arc<ControlAccess>,
        guards: EdgeGuards,
        metrics: Option<PrometheusHandle>,
        listener: ListenerSettings,
        max_client_message_bytes: usize,
        sample_rate: u32,
        chunk_ms: u32,
        shutdown: watch::Receiver<bool>,
        listener_done: mpsc::Sender<()>,
        live: watch::Receiver<Arc<str>>,
    ) -> Self {
        let station_names = stations.iter().map(|s| s.hub.name.clone()).collect();
        Self {
            stations,
            access,
            guards,
            station_names,
            metrics,
            listener,
            max_client_message_bytes,
            sample_rate,
            chunk_ms,
            started: Instant::now(),
            shutdown,
            listener_done,
            live,
            live_streams: Arc::new(tokio::sync::Semaphore::new(MAX_LIVE_STREAMS)),
            gpu: None,
            next_session: AtomicU64::new(1),
        }
    }

    /// Records the GPU adapter synthesis runs on, for `/api/status`.
    pub fn with_gpu(mut self, adapter: Option<AdapterSummary>) -> Self {
        self.gpu = adapter;
        self
    }

    fn station(&self, name: Option<&str>) -> Result<&Station, AppError> {
        match name {
            None => self.stations.first().ok_or(AppError::NoStations),
            Some(name) => self
                .stations
                .iter()
                .find(|s| s.hub.name == name)
                .ok_or_else(|| AppError::UnknownStation(name.chars().take(64).collect())),
        }
    }
}

/// Failures at the HTTP edge, shown to clients as JSON without internals.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("unknown station {0:?}; see /api/status for the list")]
    UnknownStation(String),
    #[error("this server has no stations configured")]
    NoStations,
    #[error("{0}")]
    Codec(String),
    #[error("not found")]
    NotFound,
    #[error("metrics are switched off on this server (--no-metrics)")]
    MetricsDisabled,
    #[error("request body is not a JSON object: {0}")]
    BadBody(String),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Origin(#[from] OriginError),
    #[error("listening on this server needs a token: {0}")]
    ListenToken(#[from] TokenError),
    #[error(transparent)]
    Full(#[from] SlotError),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("too many live dashboard streams are open; try again later")]
    TooManyLiveStreams,
    #[error("{0}")]
    BadResume(String),
    #[error("{0}")]
    UnknownMount(String),
}

/// Most `/api/live` streams open at once (each is a dashboard tab).
const MAX_LIVE_STREAMS: usize = 64;

/// Seconds a refused listener is asked to wait before trying again.
const RETRY_AFTER_FULL_SECONDS: u64 = 5;

#[derive(Serialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize)]
struct ErrorDetail {
    code: &'static str,
    message: String,
    /// The offending field of an invalid control request.
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            AppError::UnknownStation(_) => (StatusCode::NOT_FOUND, "unknown_station"),
            AppError::NoStations => (StatusCode::SERVICE_UNAVAILABLE, "no_stations"),
            AppError::Codec(_) => (
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedCodec.as_str(),
            ),
            AppError::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            AppError::MetricsDisabled => (StatusCode::NOT_FOUND, "metrics_disabled"),
            AppError::BadBody(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            AppError::Origin(e) => (StatusCode::FORBIDDEN, Rejection::from(*e).as_str()),
            AppError::ListenToken(e) => (StatusCode::UNAUTHORIZED, Rejection::from(*e).as_str()),
            AppError::Full(e) => (
                StatusCode::SERVICE_UNAVAILABLE,
                Rejection::from(*e).as_str(),
            ),
            AppError::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                Rejection::ShuttingDown.as_str(),
            ),
            AppError::TooManyLiveStreams => (StatusCode::SERVICE_UNAVAILABLE, "too_many_streams"),
            AppError::BadResume(_) => (StatusCode::BAD_REQUEST, "invalid_resume"),
            AppError::UnknownMount(_) => (StatusCode::NOT_FOUND, "unknown_mount"),
            AppError::Control(e) => {
                let status = match e {
                    ControlError::Access(AccessError::RemoteNeedsToken) => StatusCode::FORBIDDEN,
                    ControlError::Access(_) => StatusCode::UNAUTHORIZED,
                    ControlError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                    ControlError::Invalid(_) => StatusCode::BAD_REQUEST,
                    ControlError::Busy
                    | ControlError::Unavailable
                    | ControlError::LogUnavailable => StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, e.code().as_str())
            }
        };
        let mut headers = HeaderMap::new();
        match &self {
            AppError::Control(ControlError::RateLimited { retry_after }) => {
                let seconds = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            AppError::Control(ControlError::Access(
                AccessError::TokenRequired | AccessError::BadToken | AccessError::TokenExpired,
            ))
            | AppError::ListenToken(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::Full(_) | AppError::ShuttingDown | AppError::TooManyLiveStreams => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(RETRY_AFTER_FULL_SECONDS),
                );
            }
            _ => {}
        }
        let field = match &self {
            AppError::Control(e) => e.field().map(str::to_owned),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message: self.to_string(),
                field,
            },
        };
        (status, headers, Json(body)).into_response()
    }
}

/// Largest control request body accepted.
const CONTROL_BODY_LIMIT: usize = 16 * 1024;

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/ws", get(ws_default))
        .route("/ws/{station}", get(ws_station))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/status", get(status))
        .route("/api/stations", get(stations))
        .route("/api/live", get(live))
        .route("/dashboard", get(dashboard_page))
        .route("/stations/{file}", get(mount_stream).head(mount_head))
        .route(
            "/api/stations/{station}/control",
            get(control_state)
                .post(control_change)
                .layer(DefaultBodyLimit::max(CONTROL_BODY_LIMIT)),
        )
        .fallback(static_asset)
        .with_state(state)
}

#[derive(Deserialize)]
struct StationQuery {
    station: Option<String>,
    /// The codec to receive (`opus`, `flac`, `pcm_s16le`); the station's default otherwise.
    codec: Option<String>,
    /// A listen token, for clients that cannot set headers (browsers' WebSocket).
    token: Option<String>,
    /// Resume: the sequence after the last one the client holds...
    resume_from: Option<String>,
    /// ...and the epoch of the stream it came from.
    epoch: Option<String>,
}

impl StationQuery {
    /// The resume the query asks for.
    ///
    /// # Errors
    /// [`AppError::BadResume`] when `resume_from` is not an unsigned integer.
    fn resume(&self) -> Result<Option<ResumeRequest>, AppError> {
        let Some(from) = &self.resume_from else {
            return Ok(None);
        };
        let from = from.trim().parse().map_err(|_| {
            AppError::BadResume(format!(
                "resume_from must be a sequence number (an unsigned integer), got {:?}",
                from.chars().take(24).collect::<String>()
            ))
        })?;
        Ok(Some(ResumeRequest {
            from,
            epoch: self.epoch.clone(),
        }))
    }
}

async fn ws_default(
    State(state): State<Arc<AppState>>,
    Query(query): Query<StationQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let wanted = ListenerWants {
        station: query.station.as_deref(),
        codec: query.codec.as_deref(),
        token: query.token.as_deref(),
        resume: query.resume()?,
    };
    upgrade_listener(state, wanted, &headers, peer, upgrade)
}

async fn ws_station(
    State(state): State<Arc<AppState>>,
    Path(station): Path<String>,
    Query(query): Query<StationQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let wanted = ListenerWants {
        station: Some(&station),
        codec: query.codec.as_deref(),
        token: query.token.as_deref(),
        resume: query.resume()?,
    };
    upgrade_listener(state, wanted, &headers, peer, upgrade)
}

/// The bearer token of an `Authorization` header, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

/// Everything a listener must pass before the upgrade, cheapest refusal first. A refusal is
/// counted by reason and answered with a JSON error; no token is ever logged.
fn admit(
    state: &AppState,
    query_token: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Result<ListenerSlot, AppError> {
    let guards = &state.guards;
    // Counts the refusal under its reason on the way out.
    let refused = |reason: Rejection, error: AppError| {
        guards.metrics.rejected(reason).increment(1);
        error
    };
    if *state.shutdown.borrow() {
        return Err(refused(Rejection::ShuttingDown, AppError::ShuttingDown));
    }
    guards
        .origins
        .check(headers.get(header::ORIGIN), headers.get(header::HOST))
        .map_err(|e| refused(e.into(), e.into()))?;
    if guards.tokens.listen_required() {
        let token = bearer(headers).or(query_token);
        guards
            .tokens
            .verify(token, Scope::Listen, now_unix())
            .map_err(|e| refused(e.into(), e.into()))?;
    }
    guards
        .slots
        .take(peer.ip())
        .map_err(|e| refused(e.into(), e.into()))
}

/// What a listener's upgrade request asks for.
struct ListenerWants<'a> {
    station: Option<&'a str>,
    codec: Option<&'a str>,
    token: Option<&'a str>,
    resume: Option<ResumeRequest>,
}

fn upgrade_listener(
    state: Arc<AppState>,
    wanted: ListenerWants<'_>,
    headers: &HeaderMap,
    peer: SocketAddr,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let requested_at = Instant::now();
    let station = state.station(wanted.station)?;
    let codec = match wanted.codec {
        Some(name) => ws::offered_codec(&station.hub, name).map_err(|message| {
            station
                .hub
                .metrics
                .client_error(ErrorCode::UnsupportedCodec)
                .increment(1);
            AppError::Codec(message)
        })?,
        None => station.hub.default_codec(),
    };
    let slot = admit(&state, wanted.token, headers, peer)?;
    let session = Session {
        id: state.next_session.fetch_add(1, Ordering::Relaxed),
        station: Arc::clone(&station.hub),
        stations: Arc::clone(&state.station_names),
        requested_at,
        control: Arc::clone(&station.control),
        access: Arc::clone(&state.access),
        peer: peer.ip(),
        codec,
        resume: wanted.resume,
    };
    let limit = state.max_client_message_bytes;
    let settings = state.listener;
    let shutdown = state.shutdown.clone();
    let done = state.listener_done.clone();
    tracing::debug!(session = session.id, %peer, station = %session.station.name, "listener joined");
    Ok(upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| async move {
            let _done = done;
            let _slot = slot;
            let (sink, stream) = socket.split();
            ws::serve(sink, stream, session, settings, shutdown).await;
        }))
}

#[derive(Deserialize)]
struct MountQuery {
    /// A listen token, for players that cannot set headers.
    token: Option<String>,
}

/// The station and mount a file name (`NAME.opus`, `NAME.flac`) names.
///
/// # Errors
/// [`AppError::UnknownStation`], or [`AppError::UnknownMount`] for an extension that is not a
/// mount or a mount whose codec the station does not offer.
fn mount_target<'a>(state: &'a AppState, file: &str) -> Result<(&'a Station, Mount), AppError> {
    let (name, extension) = file.rsplit_once('.').ok_or_else(|| {
        AppError::UnknownMount(format!(
            "{:?} names no mount: ask for NAME.opus or NAME.flac",
            shown(file)
        ))
    })?;
    let station = state.station(Some(name))?;
    let mount = Mount::from_extension(extension).ok_or_else(|| {
        AppError::UnknownMount(format!(
            "no mount of type {:?}; this station has {}",
            shown(extension),
            mount_list(&station.hub)
        ))
    })?;
    if station.hub.codec_setup(mount.codec()).is_none() {
        return Err(AppError::UnknownMount(format!(
            "station {} does not offer {}; it has {}",
            station.hub.name,
            mount.codec(),
            mount_list(&station.hub)
        )));
    }
    Ok((station, mount))
}

/// At most 32 characters of a client's text, for an error message.
fn shown(text: &str) -> String {
    text.chars().take(32).collect()
}

/// The mounts a station has, for `/api/stations` and error messages.
fn mounts_of(hub: &StationHub) -> Vec<Mount> {
    Mount::ALL
        .into_iter()
        .filter(|m| hub.codec_setup(m.codec()).is_some())
        .collect()
}

fn mount_list(hub: &StationHub) -> String {
    let list: Vec<String> = mounts_of(hub)
        .into_iter()
        .map(|m| format!("/stations/{}.{}", hub.name, m.extension()))
        .collect();
    if list.is_empty() {
        "no HTTP mounts".to_string()
    } else {
        list.join(", ")
    }
}

/// The headers of a mount's response: the stream's type, Icecast's `icy-*` names, no caching, and
/// CORS for an origin the policy admitted.
fn mount_headers(hub: &StationHub, mount: Mount, request: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(mount.content_type()),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
    if let Ok(name) = HeaderValue::from_str(&hub.name) {
        headers.insert("icy-name", name);
    }
    let described = match hub.codec_setup(mount.codec()).and_then(|s| s.bitrate) {
        Some(bitrate) => {
            if let Ok(kbps) = HeaderValue::from_str(&(bitrate / 1000).to_string()) {
                headers.insert("icy-br", kbps);
            }
            format!(
                "Auralis generative music, Ogg Opus {} kbit/s",
                bitrate / 1000
            )
        }
        None => "Auralis generative music, FLAC lossless".to_string(),
    };
    if let Ok(description) = HeaderValue::from_str(&described) {
        headers.insert("icy-description", description);
    }
    headers.insert("icy-pub", HeaderValue::from_static("0"));
    // The origin policy already admitted this origin (admit refuses the others).
    if let Some(origin) = request.get(header::ORIGIN) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    headers
}

/// `GET /stations/{name}.{opus,flac}`: the live stream for standard players.
async fn mount_stream(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    Query(query): Query<MountQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    abort: Option<Extension<ConnectionAbort>>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let requested_at = Instant::now();
    let (station, mount) = mount_target(&state, &file)?;
    let slot = admit(&state, query.token.as_deref(), &headers, peer)?;
    let session = MountSession {
        station: Arc::clone(&station.hub),
        mount,
        requested_at,
    };
    // One chunk in flight: a player that stops reading holds up the next write at once.
    let (body_tx, mut body_rx) = mpsc::channel::<Bytes>(1);
    let settings = state.listener;
    let shutdown = state.shutdown.clone();
    let done = state.listener_done.clone();
    tracing::debug!(%peer, station = %station.hub.name, mount = mount.extension(), "mount listener joined");
    tokio::spawn(async move {
        let _done = done;
        let _slot = slot;
        let reason = crate::mount::serve::serve(body_tx, session, settings, shutdown).await;
        // A player dropped for not reading would never read the body's end either: close its
        // connection, so it holds no connection slot.
        if matches!(
            reason,
            DisconnectReason::SendTimeout | DisconnectReason::PersistentLag
        ) {
            if let Some(Extension(abort)) = abort {
                abort.abort();
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        body_rx
            .poll_recv(cx)
            .map(|bytes| bytes.map(Ok::<_, Infallible>))
    });
    let response_headers = mount_headers(&station.hub, mount, &headers);
    Ok((response_headers, axum::body::Body::from_stream(body)).into_response())
}

/// `HEAD /stations/{name}.{opus,flac}`: what a `GET` would answer, without the stream.
async fn mount_head(
    State(state): State<Arc<AppState>>,
    Path(file): Path<String>,
    Query(query): Query<MountQuery>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (station, mount) = mount_target(&state, &file)?;
    // The same checks as a listener; the slot is given back at once.
    drop(admit(&state, query.token.as_deref(), &headers, peer)?);
    Ok(mount_headers(&station.hub, mount, &headers).into_response())
}

async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, AppError> {
    let handle = state.metrics.as_ref().ok_or(AppError::MetricsDisabled)?;
    for station in &state.stations {
        station.hub.mirror_totals();
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::metrics::render(handle),
    )
        .into_response())
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let now = tokio::time::Instant::now();
    let waiting: Vec<&str> = state
        .stations
        .iter()
        .map(|s| &s.hub)
        .filter(|s| !s.is_releasing(now))
        .map(|s| s.name.as_str())
        .collect();
    let ready = waiting.is_empty() && !*state.shutdown.borrow();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({ "ready": ready, "waiting_for": waiting })),
    )
        .into_response()
}

/// `/api/status` body.
#[derive(Serialize, Deserialize, Debug)]
pub struct StatusReport {
    pub version: String,
    pub uptime_seconds: f64,
    pub sample_rate: u32,
    pub chunk_ms: u32,
    pub listeners: u64,
    /// The GPU adapter synthesis runs on (`null`: the CPU renderer).
    pub gpu: Option<AdapterSummary>,
    pub stations: Vec<StationStatus>,
}

/// One station in `/api/status`.
#[derive(Serialize, Deserialize, Debug)]
pub struct StationStatus {
    pub name: String,
    pub seed: u64,
    pub backend: String,
    pub live: bool,
    pub listeners: u64,
    pub sequence: u64,
    pub position: u64,
    pub chunks_published: u64,
    pub underruns: u64,
    pub overruns: u64,
    pub ring_depth_seconds: f64,
    pub ring_capacity_seconds: f64,
}

async fn status(State(state): State<Arc<AppState>>) -> Json<StatusReport> {
    let stations: Vec<StationStatus> = state
        .stations
        .iter()
        .map(|s| &s.hub)
        .map(|s| {
            let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
            StationStatus {
                name: s.name.clone(),
                seed: s.seed,
                backend: s.backend.as_str().to_string(),
                live: s.is_live(),
                listeners: load(&s.stats.listeners),
                sequence: load(&s.stats.last_sequence),
                position: load(&s.stats.last_position),
                chunks_published: load(&s.stats.chunks_published),
                underruns: load(&s.stats.underruns),
                overruns: load(&s.stats.overruns),
                ring_depth_seconds: s.ring_depth_seconds(),
                ring_capacity_seconds: s.ring_capacity_seconds(),
            }
        })
        .collect();
    Json(StatusReport {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        sample_rate: state.sample_rate,
        chunk_ms: state.chunk_ms,
        listeners: stations.iter().map(|s| s.listeners).sum(),
        gpu: state.gpu.clone(),
        stations,
    })
}

/// One station in `GET /api/stations`.
#[derive(Serialize, Deserialize, Debug)]
pub struct StationInfo {
    pub name: String,
    pub seed: u64,
    pub preset: Option<Preset>,
    /// Path of the station's WebSocket stream.
    pub stream: String,
    /// Its HTTP mounts for standard players.
    #[serde(default)]
    pub mounts: Vec<MountInfo>,
    /// Path of its control endpoint.
    pub control: String,
    pub live: bool,
    pub listeners: u64,
    /// The codecs the station offers (`?codec=` on the stream), its default first.
    #[serde(default)]
    pub codecs: Vec<String>,
    /// The station's epoch (changes only when its history could not be kept; see resume).
    #[serde(default)]
    pub epoch: String,
    /// How many chunks back a resume can reach.
    #[serde(default)]
    pub resume_window_chunks: usize,
    /// The newest music parameters.
    pub params: MusicParams,
}

/// One HTTP mount in `GET /api/stations`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// Path of the live stream (`/stations/NAME.opus`).
    pub url: String,
    pub content_type: String,
    /// The station codec it carries.
    pub codec: String,
}

/// `GET /api/stations` body.
#[derive(Serialize, Deserialize, Debug)]
pub struct StationList {
    pub stations: Vec<StationInfo>,
    /// Whether control needs a token (otherwise: loopback clients only).
    pub control_token_required: bool,
    pub presets: Vec<Preset>,
}

async fn stations(State(state): State<Arc<AppState>>) -> Json<StationList> {
    let stations = state
        .stations
        .iter()
        .map(|s| {
            let snapshot = s.control.snapshot();
            StationInfo {
                name: s.hub.name.clone(),
                seed: s.hub.seed,
                preset: snapshot.preset,
                stream: format!("/ws/{}", s.hub.name),
                mounts: mounts_of(&s.hub)
                    .into_iter()
                    .map(|m| MountInfo {
                        url: format!("/stations/{}.{}", s.hub.name, m.extension()),
                        content_type: m.content_type().to_string(),
                        codec: m.codec().name().to_string(),
                    })
                    .collect(),
                control: format!("/api/stations/{}/control", s.hub.name),
                live: s.hub.is_live(),
                listeners: s.hub.stats.listeners.load(Ordering::Relaxed),
                codecs: s
                    .hub
                    .codecs
                    .iter()
                    .map(|c| c.codec.name().to_string())
                    .collect(),
                epoch: s.hub.epoch().to_string(),
                resume_window_chunks: s.hub.resume_window_chunks(),
                params: snapshot.params,
            }
        })
        .collect();
    Json(StationList {
        stations,
        control_token_required: state.access.token_required(),
        presets: Preset::ALL.to_vec(),
    })
}

async fn control_state(
    State(state): State<Arc<AppState>>,
    Path(station): Path<String>,
) -> Result<Json<ControlSnapshot>, AppError> {
    Ok(Json(state.station(Some(&station))?.control.snapshot()))
}

async fn control_change(
    State(state): State<Arc<AppState>>,
    Path(station): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ControlAck>, AppError> {
    let station = state.station(Some(&station))?;
    let body: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&body).map_err(|e| AppError::BadBody(e.to_string()))?;
    let token = bearer(&headers).or_else(|| body.get("token").and_then(|t| t.as_str()));
    let ack = station
        .control
        .handle(&state.access, peer.ip(), token, &body, None)
        .await?;
    Ok(Json(ack))
}

/// `GET /api/live`: the live-dashboard report as Server-Sent Events, one a second, until the
/// client leaves or the server shuts down.
async fn live(
    State(state): State<Arc<AppState>>,
) -> Result<Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>>, AppError> {
    // Each stream holds its connection open for as long as the client likes: cap them.
    let permit = Arc::clone(&state.live_streams)
        .try_acquire_owned()
        .map_err(|_| AppError::TooManyLiveStreams)?;
    let mut shutdown = state.shutdown.clone();
    let reports =
        futures_util::stream::unfold((state.live.clone(), true), |(mut live, first)| async move {
            if !first {
                live.changed().await.ok()?;
            }
            let report = live.borrow_and_update().clone();
            Some((report, (live, false)))
        })
        .filter(|report| std::future::ready(!report.is_empty()))
        .map(move |report| {
            let _held = &permit;
            Ok(Event::default().data(&*report))
        })
        .take_until(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        });
    Ok(Sse::new(reports).keep_alive(KeepAlive::default()))
}

/// `/dashboard`: the live dashboard page.
async fn dashboard_page() -> Result<Response, AppError> {
    static_file("/dashboard.html")
}

async fn static_asset(uri: Uri) -> Result<Response, AppError> {
    static_file(uri.path())
}

fn static_file(path: &str) -> Result<Response, AppError> {
    let asset = web::asset(path).ok_or(AppError::NotFound)?;
    let mut response = (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response();
    for (name, value) in web::ISOLATION_HEADERS {
        response
            .headers_mut()
            .insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}
