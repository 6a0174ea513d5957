//! One simulated listener: connects, reads the stream as a player would (or slowly, or not at
//! all), and records what it saw.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::MaybeTlsStream;

use super::playout::Playout;
use super::report::{record_us, Group, Tally};
use crate::client_tls::ClientTls;
use crate::clock::unix_nanos;
use crate::clock::ClockOffset;
use crate::codec::decode::{DecodeError, StreamDecoder};
use crate::stream::protocol::{
    FrameHeader, ServerMessage, FLAG_DISCONTINUITY, FLAG_RESUMED, FLAG_UNDERRUN_FILL,
};

/// How a client reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Reads everything as it arrives.
    Healthy,
    /// Reads one message (or chunk of bytes) per two chunk periods: falls behind steadily.
    SlowReader,
    /// Reads the first audio, then never reads again while keeping the connection open.
    Stalled,
}

/// Counters the progress display reads while the run goes on.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub connected: AtomicU64,
    pub ended: AtomicU64,
    pub chunks: AtomicU64,
    pub bytes: AtomicU64,
    pub gaps: AtomicU64,
}

/// What a plain HTTP stream carries (it has no frame headers to say so).
#[derive(Clone, Copy, Debug)]
pub struct PcmFormat {
    pub bytes_per_second: u32,
    /// Bytes counted as one "chunk" for inter-arrival timing.
    pub chunk_bytes: u32,
}

/// Intervals in the first second after first audio are not timed: they hold the catch-up
/// frame (WebSocket) or a burst-on-connect (Icecast), not steady delivery.
const WARM_UP: Duration = Duration::from_secs(1);
/// Pings for the clock offset: one at connect, then at this period.
const PING_EVERY: Duration = Duration::from_secs(5);
/// First wait before reconnecting after a lost connection; doubled per failed try up to
/// [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(1);
/// Longest wait for an HTTP response head.
const HTTP_HEAD_LIMIT: usize = 16 * 1024;

/// Timing and continuity shared by both transports.
struct Tracker<'a> {
    group: &'a Group,
    live: &'a LiveCounters,
    tally: Tally,
    connect_started: Instant,
    first_audio: Option<Instant>,
    last_arrival: Option<Instant>,
    last_sequence: Option<u64>,
    /// Whether the interval ending at the next arrival is steady delivery.
    regular: bool,
    playout: Playout,
    clock: ClockOffset,
    /// The epoch of the last `welcome`, for resuming.
    epoch: Option<String>,
    /// When the connection was lost, until audio flows again on the next one.
    lost_at: Option<Instant>,
}

impl<'a> Tracker<'a> {
    fn new(group: &'a Group, live: &'a LiveCounters, prebuffer_seconds: f64) -> Self {
        Self {
            group,
            live,
            tally: Tally::default(),
            connect_started: Instant::now(),
            first_audio: None,
            last_arrival: None,
            last_sequence: None,
            regular: false,
            playout: Playout::new(prebuffer_seconds),
            clock: ClockOffset::default(),
            epoch: None,
            lost_at: None,
        }
    }

    /// The connection was lost; the next one resumes after the last chunk held.
    fn lost(&mut self, now: Instant) {
        self.tally.reconnects += 1;
        self.lost_at = Some(now);
        self.regular = false;
    }

    /// The URL of the next connection: `url`, resuming after the last chunk held when there is one.
    fn resume_url(&self, url: &str) -> String {
        match (self.last_sequence, &self.epoch) {
            (Some(last), Some(epoch)) => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}resume_from={}&epoch={epoch}", last + 1)
            }
            _ => url.to_string(),
        }
    }

    fn connected(&mut self) {
        self.tally.connected = true;
        self.live.connected.fetch_add(1, Ordering::Relaxed);
    }

    /// One chunk of audio arrived. `period` is its duration; `stamps` are the server's
    /// (rendered, sent) wall-clock times when the transport carries them.
    fn on_chunk(
        &mut self,
        now: Instant,
        period: Duration,
        bytes: u64,
        stamps: Option<(u64, u64)>,
        discontinuity: bool,
    ) {
        if let Some(lost) = self.lost_at.take() {
            let gap = now.duration_since(lost);
            self.group
                .with_timings(|t| record_us(&mut t.reconnect_gap, gap.as_micros() as u64));
        }
        self.tally.chunks += 1;
        self.tally.bytes += bytes;
        self.live.chunks.fetch_add(1, Ordering::Relaxed);
        self.live.bytes.fetch_add(bytes, Ordering::Relaxed);
        let first = *self.first_audio.get_or_insert(now);
        let receive_unix = unix_nanos();
        let local_stamps = stamps.and_then(|(rendered, sent)| {
            Some((
                self.clock.to_local_ns(rendered)?,
                self.clock.to_local_ns(sent)?,
            ))
        });
        let startup =
            (self.last_arrival.is_none()).then(|| now.duration_since(self.connect_started));
        let interval = self
            .last_arrival
            .filter(|_| self.regular && !discontinuity && now.duration_since(first) >= WARM_UP)
            .map(|last| now.duration_since(last));
        self.group.with_timings(|t| {
            if let Some(startup) = startup {
                record_us(&mut t.startup, startup.as_micros() as u64);
            }
            if let Some(interval) = interval {
                record_us(&mut t.interarrival, interval.as_micros() as u64);
                let jitter = interval.as_secs_f64() - period.as_secs_f64();
                record_us(&mut t.jitter, (jitter.abs() * 1e6) as u64);
            }
            if let Some((rendered, sent)) = local_stamps {
                record_us(&mut t.latency, receive_unix.saturating_sub(rendered) / 1000);
                record_us(&mut t.delivery, receive_unix.saturating_sub(sent) / 1000);
            }
        });
        self.playout.on_audio(
            now.duration_since(self.connect_started).as_secs_f64(),
            period.as_secs_f64(),
        );
        self.regular = !discontinuity;
        self.last_arrival = Some(now);
    }

    fn on_sequence(&mut self, sequence: u64, discontinuity: bool) {
        if let Some(last) = self.last_sequence {
            if sequence != last + 1 && !discontinuity {
                self.tally.gaps += 1;
                self.tally.missing_chunks += sequence.saturating_sub(last + 1);
                self.live.gaps.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last_sequence = Some(sequence);
    }

    fn fail(&mut self, error: String) {
        if self.tally.connected {
            self.tally.disconnected = true;
        }
        self.tally.error = Some(error);
    }

    fn finish(mut self) {
        self.tally.playout_underruns = self.playout.underruns();
        self.tally.starved_seconds = self.playout.starved_seconds();
        if let Some(rtt) = self.clock.round_trip_ns() {
            self.group
                .with_timings(|t| record_us(&mut t.clock_round_trip, rtt / 1000));
        }
        self.live.ended.fetch_add(1, Ordering::Relaxed);
        self.group.add(self.tally);
    }
}

/// A WebSocket listener until `end`.
/// How a WebSocket client runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WebSocketClient {
    pub decode: bool,
    pub behaviour: Behaviour,
    pub end: Instant,
    pub prebuffer_seconds: f64,
    /// Reconnect when the connection is lost, resuming after the last chunk held (as players do).
    pub reconnect: bool,
}

/// A WebSocket listener until `end`; with `reconnect`, across lost connections.
pub(crate) async fn run_websocket(
    url: &str,
    tls: Option<&ClientTls>,
    client: WebSocketClient,
    group: &Group,
    live: &LiveCounters,
) {
    let mut tracker = Tracker::new(group, live, client.prebuffer_seconds);
    let mut backoff = RECONNECT_FIRST;
    loop {
        let target = tracker.resume_url(url);
        let connect = tokio_tungstenite::connect_async_tls_with_config(
            target,
            None,
            false,
            tls.map(ClientTls::connector),
        );
        let connected = tokio::time::timeout_at(client.end, connect).await;
        let socket = match connected {
            Ok(Ok((socket, _))) => socket,
            Ok(Err(_)) if tracker.lost_at.is_some() && Instant::now() < client.end => {
                tokio::time::sleep_until((Instant::now() + backoff).min(client.end)).await;
                backoff = (backoff * 2).min(RECONNECT_MAX);
                continue;
            }
            Ok(Err(e)) => return finish_failed(tracker, format!("connect: {e}")),
            Err(_) if tracker.lost_at.is_some() => {
                return finish_failed(tracker, "reconnect: the server did not come back".into())
            }
            Err(_) => return finish_failed(tracker, "connect: timed out".to_string()),
        };
        backoff = RECONNECT_FIRST;
        if !tracker.tally.connected {
            tracker.connected();
        }
        match session(socket, client, &mut tracker).await {
            Ok(()) => break,
            Err(error) if client.reconnect && Instant::now() < client.end => {
                tracing::debug!(%error, "connection lost; reconnecting");
                tracker.lost(Instant::now());
            }
            Err(error) => {
                tracker.fail(error);
                break;
            }
        }
    }
    tracker.finish();
}

/// One connection until `end` (`Ok`) or until it is lost (the error).
async fn session(
    mut socket: tokio_tungstenite::WebSocketStream<MaybeTlsStream<TcpStream>>,
    client: WebSocketClient,
    tracker: &mut Tracker<'_>,
) -> Result<(), String> {
    let WebSocketClient {
        decode,
        behaviour,
        end,
        ..
    } = client;
    // Outstanding ping: its number and local send time.
    let mut ping: Option<(u64, u64)> = None;
    let mut pings_sent = 0u64;
    // Only healthy clients ping: the others measure how the server treats a poor reader.
    let mut next_ping = if behaviour == Behaviour::Healthy {
        Instant::now()
    } else {
        end
    };
    let mut stalled = false;
    let mut decoding = decode.then(Decoding::default);
    let mut lost = None;
    loop {
        // Checked before reading: a slow reader always has a backlog, and a timeout whose
        // deadline has passed still returns a message that is ready.
        if Instant::now() >= end {
            break;
        }
        if Instant::now() >= next_ping {
            // An unanswered ping is replaced: its pong was lost or is too late to be useful.
            pings_sent += 1;
            let text = format!(r#"{{"type":"ping","client_time":{pings_sent}}}"#);
            ping = Some((pings_sent, unix_nanos()));
            next_ping = Instant::now() + PING_EVERY;
            if let Err(e) = socket.send(Message::Text(text.into())).await {
                lost = Some(format!("send ping: {e}"));
                break;
            }
        }
        if stalled {
            // Keep the connection open without reading: the server's queue for us fills.
            tokio::time::sleep_until(end).await;
            break;
        }
        let message = match tokio::time::timeout_at(end.min(next_ping), socket.next()).await {
            Err(_) if Instant::now() >= end => break,
            Err(_) => continue, // time to ping
            Ok(None) => {
                lost = Some("server closed the connection".to_string());
                break;
            }
            Ok(Some(Err(e))) => {
                lost = Some(format!("receive: {e}"));
                break;
            }
            Ok(Some(Ok(message))) => message,
        };
        let now = Instant::now();
        let outcome = match message {
            Message::Binary(data) => on_audio(tracker, now, &data, decoding.as_mut()),
            Message::Text(text) => {
                on_text(tracker, &text, &mut ping);
                Ok(None)
            }
            Message::Close(frame) => {
                let reason = frame.map_or_else(
                    || "no close frame".to_string(),
                    |f| format!("{} {}", f.code, f.reason),
                );
                Err(format!("server closed the connection: {reason}"))
            }
            _ => Ok(None),
        };
        match outcome {
            Ok(Some(period)) => match behaviour {
                Behaviour::Healthy => {}
                Behaviour::SlowReader => tokio::time::sleep(period * 2).await,
                Behaviour::Stalled => stalled = true,
            },
            Ok(None) => {}
            Err(error) => {
                lost = Some(error);
                break;
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
    lost.map_or(Ok(()), Err)
}

/// Tallies one audio frame; returns its duration, or why the run for this client is over.
fn on_audio(
    tracker: &mut Tracker<'_>,
    now: Instant,
    data: &[u8],
    decoding: Option<&mut Decoding>,
) -> Result<Option<Duration>, String> {
    let Ok((header, payload)) = FrameHeader::decode(data) else {
        return Err("undecodable audio frame".to_string());
    };
    if let Some(decoding) = decoding {
        match decoding.decode(&header, payload) {
            Ok(()) => tracker.tally.decoded_chunks += 1,
            Err(_) => tracker.tally.decode_errors += 1,
        }
    }
    let discontinuity = header.flags & FLAG_DISCONTINUITY != 0;
    let resumed = header.flags & FLAG_RESUMED != 0;
    if resumed {
        tracker.tally.resumed_chunks += 1;
    }
    if header.flags & FLAG_UNDERRUN_FILL != 0 {
        tracker.tally.underrun_fills += 1;
    }
    if discontinuity {
        tracker.tally.discontinuities += 1;
    }
    tracker.on_sequence(header.sequence, discontinuity);
    let period =
        Duration::from_secs_f64(f64::from(header.frames) / f64::from(header.sample_rate.max(1)));
    // Resumed chunks were released before they arrive: neither latency nor jitter samples.
    let stamps = (!resumed).then_some((header.rendered_unix_ns, header.sent_unix_ns));
    tracker.on_chunk(
        now,
        period,
        data.len() as u64,
        stamps,
        discontinuity || resumed,
    );
    Ok(Some(period))
}

/// A decoding client's decoder and output buffer.
#[derive(Default)]
struct Decoding {
    decoder: StreamDecoder,
    samples: Vec<f32>,
}

impl Decoding {
    fn decode(&mut self, header: &FrameHeader, payload: &[u8]) -> Result<(), DecodeError> {
        self.samples.clear();
        header.decode_payload(&mut self.decoder, payload, &mut self.samples)
    }
}

/// A `pong` answering the outstanding ping refines the clock offset; a `welcome` gives the epoch
/// and the outcome of a resume; other text is ignored.
fn on_text(tracker: &mut Tracker<'_>, text: &str, ping: &mut Option<(u64, u64)>) {
    let received = unix_nanos();
    if let Ok(ServerMessage::Welcome { epoch, resume, .. }) = serde_json::from_str(text) {
        tracker.epoch = (!epoch.is_empty()).then_some(epoch);
        if let Some(resume) = resume {
            let outcome = resume.outcome.as_str().to_string();
            *tracker.tally.resumes.entry(outcome).or_default() += 1;
        }
        return;
    }
    if let (
        Ok(ServerMessage::Pong {
            client_time,
            server_time_unix_ns,
        }),
        Some((number, sent)),
    ) = (serde_json::from_str(text), *ping)
    {
        if client_time == Some(number as f64) {
            tracker.clock.observe(sent, server_time_unix_ns, received);
            *ping = None;
        }
    }
}

fn finish_failed(mut tracker: Tracker<'_>, error: String) {
    tracker.fail(error);
    tracker.finish();
}

/// How an HTTP stream client runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HttpReader {
    pub behaviour: Behaviour,
    /// Decode every payload (Ogg Opus mounts; raw PCM needs no decoding).
    pub decode: bool,
    pub end: Instant,
    pub prebuffer_seconds: f64,
    /// The layout of a raw PCM stream.
    pub format: PcmFormat,
}

/// A plain HTTP stream reader (an Icecast mount of raw PCM, say) until `end`. Arrivals are
/// timed per `format.chunk_bytes` of body.
pub(crate) async fn run_http(
    url: &str,
    tls: Option<&ClientTls>,
    reader: HttpReader,
    group: &Group,
    live: &LiveCounters,
) {
    let HttpReader {
        behaviour,
        decode,
        end,
        prebuffer_seconds,
        format,
    } = reader;
    let mut tracker = Tracker::new(group, live, prebuffer_seconds);
    let (mut stream, body_start) = match tokio::time::timeout_at(end, http_get(url, tls)).await {
        Ok(Ok(opened)) => opened,
        Ok(Err(e)) => return finish_failed(tracker, e.to_string()),
        Err(_) => return finish_failed(tracker, "connect: timed out".to_string()),
    };
    tracker.connected();
    if url
        .split(['?', '#'])
        .next()
        .is_some_and(|path| path.ends_with(".opus"))
    {
        let decoder = decode
            .then(|| opus::Decoder::new(48_000, opus::Channels::Stereo).map_err(|e| e.to_string()));
        return run_ogg_opus(stream, body_start, behaviour, end, decoder, tracker).await;
    }
    let chunk_bytes = u64::from(format.chunk_bytes.max(1));
    let period =
        Duration::from_secs_f64(chunk_bytes as f64 / f64::from(format.bytes_per_second.max(1)));
    let mut pending = 0u64; // body bytes not yet counted as a whole chunk
    let mut buffer = vec![0u8; 64 * 1024];
    let mut received = body_start.len();
    loop {
        pending += received as u64;
        let now = Instant::now();
        while pending >= chunk_bytes {
            pending -= chunk_bytes;
            tracker.on_chunk(now, period, chunk_bytes, None, false);
            match behaviour {
                Behaviour::Healthy => {}
                Behaviour::SlowReader => tokio::time::sleep(period * 2).await,
                Behaviour::Stalled => {
                    tokio::time::sleep_until(end).await;
                    tracker.finish();
                    return;
                }
            }
        }
        if Instant::now() >= end {
            break; // a slow reader's backlog would otherwise keep it reading past the end
        }
        received = match tokio::time::timeout_at(end, stream.read(&mut buffer)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                tracker.fail("server closed the connection".to_string());
                break;
            }
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                tracker.fail(format!("receive: {e}"));
                break;
            }
        };
    }
    tracker.finish();
}

/// An Ogg Opus mount (`/stations/NAME.opus`): each audio page is a chunk, its page sequence
/// number the chunk's sequence (a skipped page is a gap); a decoding client decodes every packet
/// and counts a page that fails its checksum or a packet that does not decode as a decode error.
async fn run_ogg_opus(
    mut stream: MaybeTlsStream<TcpStream>,
    mut pending: Vec<u8>,
    behaviour: Behaviour,
    end: Instant,
    decoder: Option<Result<opus::Decoder, String>>,
    mut tracker: Tracker<'_>,
) {
    let mut decoder = match decoder.transpose() {
        Ok(decoder) => decoder,
        Err(e) => return finish_failed(tracker, format!("opus decoder: {e}")),
    };
    let mut samples = vec![0f32; 5760 * 2];
    let mut buffer = vec![0u8; 16 * 1024];
    let mut headers_seen = 0;
    loop {
        let now = Instant::now();
        let mut consumed = 0;
        loop {
            let page = match crate::mount::ogg::read_page(&pending[consumed..]) {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(e) => {
                    tracker.tally.decode_errors += 1;
                    tracker.fail(format!("Ogg stream: {e}"));
                    return tracker.finish();
                }
            };
            consumed += page.len;
            // The identification and comment headers come first.
            if headers_seen < 2 {
                headers_seen += 1;
                continue;
            }
            let mut frames = 0usize;
            let mut failed = false;
            for packet in &page.packets {
                frames += opus::packet::get_nb_samples(packet, 48_000).unwrap_or(960);
                if let Some(decoder) = decoder.as_mut() {
                    failed |= decoder.decode_float(packet, &mut samples, false).is_err();
                }
            }
            match (&decoder, failed) {
                (None, _) => {}
                (Some(_), false) => tracker.tally.decoded_chunks += 1,
                (Some(_), true) => tracker.tally.decode_errors += 1,
            }
            let period = Duration::from_secs_f64(frames as f64 / 48_000.0);
            tracker.on_sequence(u64::from(page.info.sequence), false);
            tracker.on_chunk(now, period, page.len as u64, None, false);
            match behaviour {
                Behaviour::Healthy => {}
                Behaviour::SlowReader => tokio::time::sleep(period * 2).await,
                Behaviour::Stalled => {
                    tokio::time::sleep_until(end).await;
                    return tracker.finish();
                }
            }
        }
        pending.drain(..consumed);
        if Instant::now() >= end {
            break;
        }
        match tokio::time::timeout_at(end, stream.read(&mut buffer)).await {
            Err(_) => break,
            Ok(Ok(0)) => {
                tracker.fail("server closed the connection".to_string());
                break;
            }
            Ok(Ok(n)) => pending.extend_from_slice(&buffer[..n]),
            Ok(Err(e)) => {
                tracker.fail(format!("receive: {e}"));
                break;
            }
        }
    }
    tracker.finish();
}

/// Why an HTTP request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {0:?}: expected http[s]://HOST[:PORT]/PATH")]
    BadUrl(String),
    #[error("{0:?} is an https:// URL, but no TLS set-up was given")]
    NoTls(String),
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("HTTP I/O: {0}")]
    Io(std::io::Error),
    #[error("HTTP response head missing or longer than {HTTP_HEAD_LIMIT} bytes")]
    BadHead,
    #[error("HTTP status {0}")]
    Status(String),
}

/// Sends `GET` over HTTP/1.0 (through TLS for `https://`, with `tls`) and reads the response
/// head. Returns the stream and the body bytes read past the head. A streaming reader needs
/// nothing more than this, so no HTTP client crate is pulled in.
pub async fn http_get(
    url: &str,
    tls: Option<&ClientTls>,
) -> Result<(MaybeTlsStream<TcpStream>, Vec<u8>), HttpError> {
    let bad_url = || HttpError::BadUrl(crate::edge::tokens::redact_url(url));
    let uri: Uri = url.parse().map_err(|_| bad_url())?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(bad_url()),
    };
    let host = uri.host().ok_or_else(bad_url)?;
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    // `Uri::host` keeps an IPv6 address's brackets; connecting needs the bare address.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let tcp = TcpStream::connect((bare_host, port))
        .await
        .map_err(HttpError::Connect)?;
    let mut stream = match (secure, tls) {
        (false, _) => MaybeTlsStream::Plain(tcp),
        (true, Some(tls)) => tls.connect(host, tcp).await.map_err(HttpError::Tls)?,
        (true, None) => {
            return Err(HttpError::NoTls(crate::edge::tokens::redact_url(url)));
        }
    };
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nUser-Agent: auralis-load\r\nAccept: */*\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(HttpError::Io)?;
    let mut head = Vec::with_capacity(1024);
    let mut byte_buffer = [0u8; 4096];
    loop {
        let n = stream.read(&mut byte_buffer).await.map_err(HttpError::Io)?;
        if n == 0 {
            return Err(HttpError::BadHead);
        }
        head.extend_from_slice(&byte_buffer[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = head.split_off(end + 4);
            let status_line = String::from_utf8_lossy(
                &head[..head.iter().position(|&b| b == b'\r').unwrap_or(0)],
            )
            .into_owned();
            let status = status_line.split_whitespace().nth(1).unwrap_or("");
            if status != "200" {
                return Err(HttpError::Status(status_line));
            }
            return Ok((stream, body));
        }
        if head.len() > HTTP_HEAD_LIMIT {
            return Err(HttpError::BadHead);
        }
    }
}

/// `GET` a whole (non-streaming) HTTP/1.0 body, e.g. `/metrics`.
pub async fn http_get_body(url: &str, tls: Option<&ClientTls>) -> Result<String, HttpError> {
    let (mut stream, mut body) = http_get(url, tls).await?;
    stream.read_to_end(&mut body).await.map_err(HttpError::Io)?;
    Ok(String::from_utf8_lossy(&body).into_owned())
}
