//! One listener's WebSocket session: audio frames out, JSON control in.
//!
//! Two tasks per listener (as in axum's chat example): the writer forwards the station's frames
//! and control replies; the reader parses client messages and hands replies to the writer. When
//! either ends, the other is stopped. Both are generic over `Sink`/`Stream`, so tests drive them
//! with channels instead of sockets.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{timeout, Instant};

use super::hub::{Frame, Retained, StationHub};
use super::lag::{skip_to_newest, LagWindow};
use super::protocol::{
    parse_client_message, with_flags, ClientMessage, ErrorCode, ResumeOutcome, ResumeReport,
    ServerMessage, FLAG_DISCONTINUITY, FLAG_RESUMED, PROTOCOL_VERSION,
};
use super::reports::{ClaimedReport, ReportBounds};
use super::tally::DeliveryTally;
use crate::clock::unix_nanos;
use crate::codec::Codec;
use crate::control::{ControlAccess, StationControl, TokenBucket};
use crate::labels::Transport;
use crate::shutdown::stopped;
use crate::telemetry::metrics::DisconnectReason;

/// WebSocket close codes the server uses (RFC 6455, section 7.4.1).
pub mod close_code {
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke the protocol.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client asked for data the server cannot give it (here: a codec not offered).
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text message was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The client broke a server policy (here: it cannot keep up with the live stream).
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A message exceeded the size limit.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
}

/// The `warning` code for a `stats` report with figures this connection could not have observed.
pub const STATS_REFUSED_WARNING: &str = "stats_refused";

/// Limits that apply to every listener.
#[derive(Clone, Copy, Debug)]
pub struct ListenerSettings {
    /// A frame write slower than this ends the session (the client stopped reading).
    pub send_timeout: Duration,
    pub chunk_period: Duration,
    /// How often the server pings (clients answer with a pong, which counts as activity).
    pub ping_interval: Duration,
    /// Nothing received for this long ends the session: the client is gone or broken.
    pub idle_timeout: Duration,
    /// Skips to the live edge allowed per minute before the listener is disconnected; 0: any.
    pub max_lag_skips_per_minute: u32,
    /// Chunks an HTTP mount listener gets at once when it joins (the newest ones; at least 1).
    pub mount_burst_chunks: usize,
}

/// Who is listening to what.
#[derive(Clone)]
pub struct Session {
    /// Server-assigned id, echoed in `welcome` (never used as a metric label).
    pub id: u64,
    pub station: Arc<StationHub>,
    /// Names of all stations, for `welcome`.
    pub stations: Arc<[String]>,
    /// When the upgrade request arrived (start of the startup latency).
    pub requested_at: Instant,
    /// The station's music control, and who may use it.
    pub control: Arc<StationControl>,
    pub access: Arc<ControlAccess>,
    /// The listener's address: control from loopback needs no token (never logged as a label).
    pub peer: IpAddr,
    /// The codec the session starts with (`?codec=`, else the station's default); `hello` may
    /// change it.
    pub codec: Codec,
    /// `resume_from` and `epoch` of the request, if it asked to resume.
    pub resume: Option<ResumeRequest>,
}

/// A reconnecting listener's request to get what it missed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResumeRequest {
    /// The sequence after the last one the client holds.
    pub from: u64,
    /// The epoch of the stream the client held (from its last `welcome`).
    pub epoch: Option<String>,
}

/// Longest a resume waits for the chunks from before a restart to be rendered again: less than
/// the default listener queue (16 chunks), so its live frames meanwhile are not skipped.
const BACKFILL_WAIT: Duration = Duration::from_millis(1500);

/// Something the reader wants the writer to send.
#[derive(Debug)]
enum Outgoing {
    Text(String),
    /// Send `welcome` for `codec`, switching to it first if the session has another.
    Welcome(Codec),
    Close {
        code: u16,
        reason: &'static str,
        why: DisconnectReason,
    },
}

/// Runs a listener session to its end and returns why it ended. Records connection metrics.
pub async fn serve<S, R>(
    sink: S,
    stream: R,
    session: Session,
    settings: ListenerSettings,
    shutdown: watch::Receiver<bool>,
) -> DisconnectReason
where
    S: Sink<Message, Error = axum::Error> + Unpin + Send,
    R: Stream<Item = Result<Message, axum::Error>> + Unpin + Send + 'static,
{
    let hub = Arc::clone(&session.station);
    let metrics = &hub.metrics;
    metrics.connections(Transport::WebSocket).increment(1.0);
    metrics.connections_total(Transport::WebSocket).increment(1);
    hub.stats.listeners.fetch_add(1, Ordering::Relaxed);
    let connected = Instant::now();

    let (out_tx, out_rx) = mpsc::channel(16);
    let activity = Arc::new(Activity::new(connected));
    let reader = tokio::spawn(read_loop(
        stream,
        out_tx,
        session.clone(),
        Arc::clone(&activity),
    ));
    let reason = write_loop(sink, out_rx, &session, settings, shutdown, &activity).await;
    reader.abort();

    metrics.connections(Transport::WebSocket).decrement(1.0);
    metrics
        .disconnected(Transport::WebSocket, reason)
        .increment(1);
    metrics
        .connection_duration
        .record(connected.elapsed().as_secs_f64());
    hub.stats.listeners.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(session = session.id, station = %hub.name, reason = reason.as_str(), "listener left");
    reason
}

fn welcome(session: &Session, codec: Codec, resume: Option<ResumeReport>) -> ServerMessage {
    let hub = &session.station;
    let format = match hub.codec_setup(codec) {
        Some(setup) => hub.format.with_codec(setup),
        None => hub.format.clone(),
    };
    ServerMessage::Welcome {
        protocol: PROTOCOL_VERSION,
        session: session.id,
        station: hub.name.clone(),
        stations: session.stations.to_vec(),
        format,
        codecs: hub
            .codecs
            .iter()
            .map(|s| s.codec.name().to_string())
            .collect(),
        chunk_ms: hub.chunk_ms,
        server_time_unix_ns: unix_nanos(),
        epoch: hub.epoch().to_string(),
        resume_window_chunks: u32::try_from(hub.resume_window_chunks()).unwrap_or(u32::MAX),
        resume,
    }
}

/// What a new session sends before the live stream: the frames, the flags they get and, for a
/// resume, its outcome. Counts the outcome.
struct Opening {
    frames: Vec<Frame>,
    flags: u16,
    report: Option<ResumeReport>,
}

async fn opening(session: &Session, latest: Option<Frame>) -> Opening {
    let hub = &session.station;
    let Some(request) = &session.resume else {
        return Opening {
            frames: latest.into_iter().collect(),
            flags: 0,
            report: None,
        };
    };
    let (outcome, frames) = if request.epoch.as_deref() != Some(hub.epoch().as_str()) {
        (ResumeOutcome::EpochChanged, Vec::new())
    } else {
        hub.wait_backfilled(BACKFILL_WAIT).await;
        match hub.retained_from(request.from) {
            Retained::Future { .. } => (ResumeOutcome::Future, Vec::new()),
            Retained::TooOld => (ResumeOutcome::OutsideWindow, Vec::new()),
            Retained::Frames(frames) if !frames.is_empty() && !hub.try_resume() => {
                (ResumeOutcome::RateLimited, Vec::new())
            }
            Retained::Frames(frames) => (ResumeOutcome::Resumed, frames),
        }
    };
    hub.metrics.resumed(outcome).increment(1);
    let report = Some(ResumeReport {
        outcome,
        from: request.from,
        chunks: frames.len() as u64,
    });
    if outcome == ResumeOutcome::Resumed {
        Opening {
            frames,
            flags: FLAG_RESUMED,
            report,
        }
    } else {
        // The listener misses what lies between: the first frame says the stream skipped.
        Opening {
            frames: latest.into_iter().collect(),
            flags: FLAG_DISCONTINUITY,
            report,
        }
    }
}

/// The `warning` that follows a `welcome` whose resume did not succeed.
fn resume_warning(report: &ResumeReport, hub: &StationHub) -> Option<ServerMessage> {
    let why = match report.outcome {
        ResumeOutcome::Resumed => return None,
        ResumeOutcome::OutsideWindow => format!(
            "chunk {} is no longer retained (the last {} chunks are); streaming from the live edge",
            report.from,
            hub.resume_window_chunks()
        ),
        ResumeOutcome::Future => format!(
            "chunk {} has not been released yet; streaming from the live edge",
            report.from
        ),
        ResumeOutcome::EpochChanged => format!(
            "the station's history changed (epoch {}); sequence numbers from before do not match: streaming from the live edge",
            hub.epoch()
        ),
        ResumeOutcome::RateLimited => {
            "too many listeners are resuming at once; streaming from the live edge".to_string()
        }
    };
    Some(ServerMessage::Warning {
        code: format!("resume_{}", report.outcome.as_str()),
        message: why,
    })
}

/// When the client last sent anything (a pong counts), as ms since the session began; written
/// by the reader, read by the writer's idle check.
struct Activity {
    since: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new(since: Instant) -> Self {
        Self {
            since,
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = self.since.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
}

/// Per-listener delivery state for metrics.
struct Delivery<'a> {
    /// The codec whose frames this listener gets.
    codec: Codec,
    last_sequence: Option<u64>,
    last_write: Option<Instant>,
    /// Jitter needs two regular intervals: not after the catch-up frame at connect or a skip.
    regular_intervals: bool,
    /// Counts and samples not yet added to the station's figures (flushed on drop too).
    tally: DeliveryTally<'a>,
}

async fn write_loop<S>(
    mut sink: S,
    mut out_rx: mpsc::Receiver<Outgoing>,
    session: &Session,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
    activity: &Activity,
) -> DisconnectReason
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let hub = &session.station;
    let (latest, mut frames) = hub.subscribe();
    let mut pings = tokio::time::interval_at(
        Instant::now() + settings.ping_interval,
        settings.ping_interval,
    );
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut lag = LagWindow::new(Instant::now());
    let mut delivery = Delivery {
        codec: session.codec,
        last_sequence: None,
        last_write: None,
        regular_intervals: false,
        tally: DeliveryTally::new(hub, session.codec),
    };
    let opening = opening(session, latest).await;
    let warning = opening
        .report
        .as_ref()
        .and_then(|report| resume_warning(report, hub));
    let greeting = welcome(session, session.codec, opening.report).to_json();
    if let Err(reason) = send_text(&mut sink, greeting, session, settings).await {
        return reason;
    }
    if let Some(warning) = warning {
        if let Err(reason) = send_text(&mut sink, warning.to_json(), session, settings).await {
            return reason;
        }
    }
    for frame in &opening.frames {
        if let Err(reason) = send_frame(
            &mut sink,
            frame,
            opening.flags,
            session,
            settings,
            &mut delivery,
        )
        .await
        {
            return reason;
        }
    }
    if opening.flags & FLAG_RESUMED != 0 {
        hub.metrics
            .resume_chunks_sent
            .increment(opening.frames.len() as u64);
    }
    loop {
        let step = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => Err(Closing::SHUTDOWN),
            outgoing = out_rx.recv() => {
                forward(&mut sink, outgoing, session, settings, &mut delivery).await
            }
            _ = pings.tick() => ping(&mut sink, activity, session, settings).await,
            received = frames.recv() => {
                match next_frame(received, &mut frames, &delivery, &mut lag, session, settings) {
                    Ok(Some((frame, flags))) => {
                        send_frame(&mut sink, &frame, flags, session, settings, &mut delivery)
                            .await
                            .map_err(Closing::Dropped)
                    }
                    Ok(None) => Ok(()),
                    Err(closing) => Err(closing),
                }
            }
        };
        if let Err(closing) = step {
            return closing.finish(&mut sink).await;
        }
    }
}

/// How a session ends: with a close frame the server sends, or the connection already unusable.
enum Closing {
    Send {
        code: u16,
        reason: &'static str,
        why: DisconnectReason,
    },
    /// The client closed: the WebSocket layer's echo of its close frame is written out.
    Answer,
    /// A write failed or timed out: nothing more can be sent.
    Dropped(DisconnectReason),
}

impl Closing {
    const SHUTDOWN: Closing = Closing::Send {
        code: close_code::GOING_AWAY,
        reason: "server shutting down",
        why: DisconnectReason::ServerShutdown,
    };

    async fn finish<S>(self, sink: &mut S) -> DisconnectReason
    where
        S: Sink<Message, Error = axum::Error> + Unpin,
    {
        match self {
            Closing::Send { code, reason, why } => {
                close(sink, code, reason).await;
                why
            }
            Closing::Answer => {
                answer_close(sink).await;
                DisconnectReason::ClientClosed
            }
            Closing::Dropped(why) => why,
        }
    }
}

/// Sends what the reader asked for; the reader ending means the client closed or vanished.
async fn forward<S>(
    sink: &mut S,
    outgoing: Option<Outgoing>,
    session: &Session,
    settings: ListenerSettings,
    delivery: &mut Delivery<'_>,
) -> Result<(), Closing>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    match outgoing {
        Some(Outgoing::Text(text)) => send_text(sink, text, session, settings)
            .await
            .map_err(Closing::Dropped),
        Some(Outgoing::Welcome(codec)) => {
            // Frames of the new codec follow the welcome that describes them.
            if codec != delivery.codec {
                delivery.codec = codec;
                delivery.tally.set_codec(codec);
            }
            let text = welcome(session, codec, None).to_json();
            send_text(sink, text, session, settings)
                .await
                .map_err(Closing::Dropped)
        }
        Some(Outgoing::Close { code, reason, why }) => Err(Closing::Send { code, reason, why }),
        None => Err(Closing::Answer),
    }
}

/// The server's keep-alive ping, or the idle close when the client has sent nothing for too long.
async fn ping<S>(
    sink: &mut S,
    activity: &Activity,
    session: &Session,
    settings: ListenerSettings,
) -> Result<(), Closing>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    if activity.idle_for() >= settings.idle_timeout {
        return Err(Closing::Send {
            code: close_code::GOING_AWAY,
            reason: "idle timeout",
            why: DisconnectReason::IdleTimeout,
        });
    }
    send_within(
        sink,
        Message::Ping(Default::default()),
        settings.send_timeout,
        session,
    )
    .await
    .map_err(Closing::Dropped)
}

/// The frame to send next and its extra flags, `None` when there is nothing to send (a duplicate
/// of the start-up frame); a listener that lagged skips to the newest frame, and one that lags
/// too often is closed.
fn next_frame(
    received: Result<Frame, broadcast::error::RecvError>,
    frames: &mut broadcast::Receiver<Frame>,
    delivery: &Delivery<'_>,
    lag: &mut LagWindow,
    session: &Session,
    settings: ListenerSettings,
) -> Result<Option<(Frame, u16)>, Closing> {
    let hub = &session.station;
    match received {
        // Already sent as the start-up frame.
        Ok(frame)
            if delivery
                .last_sequence
                .is_some_and(|last| frame.sequence <= last) =>
        {
            Ok(None)
        }
        Ok(frame) => Ok(Some((frame, 0))),
        Err(broadcast::error::RecvError::Lagged(missed)) => {
            // Fell behind: jump to the newest frame and say so.
            let newest = skip_to_newest(
                frames,
                missed,
                hub,
                Transport::WebSocket,
                lag,
                settings.max_lag_skips_per_minute,
            )
            .map_err(|_| Closing::Send {
                code: close_code::POLICY_VIOLATION,
                reason: "too slow: cannot keep up with the live stream",
                why: DisconnectReason::PersistentLag,
            })?;
            // The newest can be one already sent (a resume sends up to the newest retained).
            let unsent = newest.filter(|frame| {
                delivery
                    .last_sequence
                    .is_none_or(|last| frame.sequence > last)
            });
            Ok(unsent.map(|frame| (frame, FLAG_DISCONTINUITY)))
        }
        Err(broadcast::error::RecvError::Closed) => Err(Closing::Send {
            code: close_code::GOING_AWAY,
            reason: "station stopped",
            why: DisconnectReason::ServerShutdown,
        }),
    }
}

async fn send_frame<S>(
    sink: &mut S,
    frame: &Frame,
    extra_flags: u16,
    session: &Session,
    settings: ListenerSettings,
    delivery: &mut Delivery<'_>,
) -> Result<(), DisconnectReason>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    // A chunk this codec failed to encode is missing: the listener sees a sequence gap.
    let Some(encoded) = frame.frames.get(delivery.codec) else {
        return Ok(());
    };
    let bytes = if extra_flags == 0 {
        encoded.clone()
    } else {
        with_flags(encoded, extra_flags)
    };
    let len = bytes.len() as u64;
    send_within(sink, Message::Binary(bytes), settings.send_timeout, session).await?;
    let now = Instant::now();
    // The catch-up frame sent at connect was popped up to a period ago, and resumed frames were
    // released before the listener came back: neither is a delivery sample.
    let delivered = delivery
        .last_write
        .filter(|_| extra_flags & FLAG_RESUMED == 0)
        .map(|_| now.saturating_duration_since(frame.popped_at).as_secs_f64());
    let jitter = match delivery.last_write {
        None => {
            let startup = now.saturating_duration_since(session.requested_at);
            session
                .station
                .metrics
                .startup
                .record(startup.as_secs_f64());
            None
        }
        Some(last) if delivery.regular_intervals && extra_flags == 0 => {
            let interval = now.saturating_duration_since(last).as_secs_f64();
            Some((interval - settings.chunk_period.as_secs_f64()).abs())
        }
        Some(_) => None,
    };
    delivery.tally.chunk_sent(now, len, delivered, jitter);
    delivery.regular_intervals = delivery.last_write.is_some() && extra_flags == 0;
    delivery.last_write = Some(now);
    delivery.last_sequence = Some(frame.sequence);
    Ok(())
}

/// Sends `message`, failing after `limit`. The send is polled once first: a socket with room
/// takes the frame at once, so the common case arms no timer.
async fn send_within<S>(
    sink: &mut S,
    message: Message,
    limit: Duration,
    session: &Session,
) -> Result<(), DisconnectReason>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let mut send = std::pin::pin!(sink.send(message));
    let first = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::future::Future::poll(send.as_mut(), cx))
    })
    .await;
    let outcome = match first {
        std::task::Poll::Ready(result) => Ok(result),
        std::task::Poll::Pending => timeout(limit, send).await,
    };
    match outcome {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => {
            session.station.count_send_error();
            Err(DisconnectReason::SendError)
        }
        Err(_) => {
            session.station.count_send_error();
            Err(DisconnectReason::SendTimeout)
        }
    }
}

async fn send_text<S>(
    sink: &mut S,
    text: String,
    session: &Session,
    settings: ListenerSettings,
) -> Result<(), DisconnectReason>
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    send_within(
        sink,
        Message::Text(text.into()),
        settings.send_timeout,
        session,
    )
    .await
}

async fn close<S>(sink: &mut S, code: u16, reason: &'static str)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    // Best effort: the peer may already be gone.
    let _ = timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(frame))),
    )
    .await;
}

/// Completes a close the client started: the WebSocket layer queued the echo of its close frame
/// when the reader saw it (RFC 6455, section 5.5.1); closing the sink writes it out. Best effort:
/// a client that vanished without a close frame gets nothing.
async fn answer_close<S>(sink: &mut S)
where
    S: Sink<Message, Error = axum::Error> + Unpin,
{
    let _ = timeout(Duration::from_secs(1), sink.close()).await;
}

/// Reads client messages until the client closes, answering through the writer.
async fn read_loop<R>(
    mut stream: R,
    out: mpsc::Sender<Outgoing>,
    session: Session,
    activity: Arc<Activity>,
) where
    R: Stream<Item = Result<Message, axum::Error>> + Unpin,
{
    let hub = &session.station;
    let chunk_period = Duration::from_millis(u64::from(hub.chunk_ms));
    let render_ahead = chunk_period * hub.ring_capacity_chunks as u32;
    let mut reports = ReportBounds::new(session.requested_at, chunk_period, render_ahead);
    let mut control_bucket = TokenBucket::for_control();
    // Clients report about once a second; a burst allows for a reconnect or a busy tab catching up.
    let mut stats_bucket = TokenBucket::new(5, 2.0);
    // The codec the writer sends (it switches when told to, in order with the welcome).
    let mut codec = session.codec;
    while let Some(message) = stream.next().await {
        activity.touch();
        let reply = match message {
            Ok(Message::Text(text)) => {
                match handle_text(&text, &session, &mut codec, &mut reports, &mut stats_bucket) {
                    Reply::None => continue,
                    Reply::Send(message) => vec![Outgoing::Text(message.to_json())],
                    Reply::Welcome(codec) => vec![Outgoing::Welcome(codec)],
                    Reply::Control(body) => {
                        let reply = control(&body, &session, &mut control_bucket).await;
                        vec![Outgoing::Text(reply.to_json())]
                    }
                    Reply::SendAndClose(message, close) => {
                        vec![Outgoing::Text(message.to_json()), close]
                    }
                }
            }
            Ok(Message::Binary(_)) => vec![Outgoing::Text(
                reject(
                    &session,
                    ErrorCode::BinaryNotAccepted,
                    "binary messages are not accepted from clients; send JSON text",
                )
                .to_json(),
            )],
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return,
            Err(error) => {
                let close = match classify(error) {
                    ReadFailure::TooBig => Outgoing::Close {
                        code: close_code::MESSAGE_TOO_BIG,
                        reason: "message too big",
                        why: DisconnectReason::MessageTooBig,
                    },
                    ReadFailure::InvalidUtf8 => Outgoing::Close {
                        code: close_code::INVALID_PAYLOAD,
                        reason: "text message is not valid UTF-8",
                        why: DisconnectReason::InvalidUtf8,
                    },
                    ReadFailure::Protocol => Outgoing::Close {
                        code: close_code::PROTOCOL_ERROR,
                        reason: "protocol error",
                        why: DisconnectReason::ProtocolError,
                    },
                };
                let _ = out.send(close).await;
                return;
            }
        };
        for outgoing in reply {
            let closing = matches!(outgoing, Outgoing::Close { .. });
            if out.send(outgoing).await.is_err() || closing {
                return;
            }
        }
    }
}

enum Reply {
    None,
    Send(ServerMessage),
    /// `welcome` for this codec (a switch when it differs from the session's).
    Welcome(Codec),
    /// A control message, answered after the synthesis thread scheduled it.
    Control(serde_json::Map<String, serde_json::Value>),
    SendAndClose(ServerMessage, Outgoing),
}

fn reject(session: &Session, code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    session.station.metrics.client_error(code).increment(1);
    ServerMessage::error(code, message)
}

fn handle_text(
    text: &str,
    session: &Session,
    codec: &mut Codec,
    reports: &mut ReportBounds,
    stats_bucket: &mut TokenBucket,
) -> Reply {
    let message = match parse_client_message(text) {
        Ok(message) => message,
        Err(rejection) => return Reply::Send(reject(session, rejection.code, rejection.message)),
    };
    let metrics = &session.station.metrics;
    match message {
        ClientMessage::Hello {
            protocol,
            codec: requested,
            ..
        } => match protocol {
            Some(version) if version != PROTOCOL_VERSION => Reply::SendAndClose(
                reject(
                    session,
                    ErrorCode::UnsupportedProtocol,
                    format!("protocol {version} is not supported; this server speaks {PROTOCOL_VERSION}"),
                ),
                Outgoing::Close {
                    code: close_code::PROTOCOL_ERROR,
                    reason: "unsupported protocol version",
                    why: DisconnectReason::UnsupportedProtocol,
                },
            ),
            _ => match requested {
                None => Reply::Welcome(*codec),
                Some(name) => match offered_codec(&session.station, &name) {
                    Ok(wanted) => {
                        *codec = wanted;
                        Reply::Welcome(wanted)
                    }
                    Err(message) => Reply::SendAndClose(
                        reject(session, ErrorCode::UnsupportedCodec, message),
                        Outgoing::Close {
                            code: close_code::UNSUPPORTED_DATA,
                            reason: "unsupported codec",
                            why: DisconnectReason::UnsupportedCodec,
                        },
                    ),
                },
            },
        },
        ClientMessage::Ping { client_time } => Reply::Send(ServerMessage::Pong {
            client_time,
            server_time_unix_ns: unix_nanos(),
        }),
        ClientMessage::Stats {
            buffer_ms,
            underruns,
            latency_ms,
            decode_errors,
        } => {
            if stats_bucket.try_take(Instant::now()).is_err() {
                return Reply::Send(reject(
                    session,
                    ErrorCode::RateLimited,
                    "too many stats reports; send one about every second",
                ));
            }
            let claimed = ClaimedReport {
                buffer_ms,
                underruns,
                latency_ms,
                decode_errors,
            };
            let accepted = reports.check(Instant::now(), claimed);
            metrics.client_reports.increment(1);
            metrics.client_underruns.increment(accepted.new_underruns);
            metrics.client_decode_errors[codec.index()].increment(accepted.new_decode_errors);
            if let Some(buffer) = accepted.buffer_seconds {
                metrics.client_buffer.record(buffer);
            }
            if let Some(latency) = accepted.latency_seconds {
                metrics.client_latency.record(latency);
                session.station.live.client_latency.record(latency);
            }
            let mut refused = accepted.refused_fields().peekable();
            if refused.peek().is_none() {
                return Reply::None;
            }
            let names: Vec<&str> = refused
                .inspect(|field| metrics.client_report_refused(*field).increment(1))
                .map(|field| field.as_str())
                .collect();
            Reply::Send(ServerMessage::Warning {
                code: STATS_REFUSED_WARNING.to_string(),
                message: format!(
                    "stats fields not recorded: {} (more than this connection could have observed)",
                    names.join(", ")
                ),
            })
        }
        ClientMessage::Control(body) => Reply::Control(body),
    }
}

/// The codec `name` if the station offers it, else the message for the client's `error`.
///
/// # Errors
/// A message naming what the station offers.
pub fn offered_codec(hub: &StationHub, name: &str) -> Result<Codec, String> {
    let offered = || {
        hub.codecs
            .iter()
            .map(|s| s.codec.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let shown: String = name.chars().take(32).collect();
    match Codec::parse(name) {
        Some(codec) if hub.codec_setup(codec).is_some() => Ok(codec),
        Some(_) => Err(format!(
            "station {} does not offer {shown}; it offers {}",
            hub.name,
            offered()
        )),
        None => Err(format!(
            "unknown codec {shown:?}; this station offers {}",
            offered()
        )),
    }
}

/// Applies a control message; answers with `control_ack` or an `error` naming what is wrong.
async fn control(
    body: &serde_json::Map<String, serde_json::Value>,
    session: &Session,
    bucket: &mut TokenBucket,
) -> ServerMessage {
    let token = body.get("token").and_then(|t| t.as_str());
    let id = body.get("id").cloned();
    match session
        .control
        .handle(&session.access, session.peer, token, body, Some(bucket))
        .await
    {
        Ok(ack) => ServerMessage::ControlAck { id, ack },
        Err(error) => {
            let code = error.code();
            session.station.metrics.client_error(code).increment(1);
            ServerMessage::Error {
                code,
                message: error.to_string(),
                field: error.field().map(str::to_owned),
            }
        }
    }
}

/// Why reading from a client failed, which decides the close code.
enum ReadFailure {
    TooBig,
    InvalidUtf8,
    Protocol,
}

fn classify(error: axum::Error) -> ReadFailure {
    use tokio_tungstenite::tungstenite::Error;
    let inner = error.into_inner();
    match inner.downcast_ref::<Error>() {
        Some(Error::Capacity(_)) => ReadFailure::TooBig,
        Some(Error::Utf8(_)) => ReadFailure::InvalidUtf8,
        Some(_) => ReadFailure::Protocol,
        None if inner.to_string().to_ascii_lowercase().contains("too long") => ReadFailure::TooBig,
        None => ReadFailure::Protocol,
    }
}
