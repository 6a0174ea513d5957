//! Helpers shared by the integration tests: a server on port 0, WebSocket and HTTP clients.
#![allow(dead_code)]

pub mod tls_terminator;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use auralis::config::{Config, StationConfig};
use auralis::pipeline::synthesis::SynthesisShared;
use auralis::server::{self, Handles};
use auralis::stream::hub::StationHub;
use auralis::stream::protocol::FrameHeader;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The first of `names` found as a file on `PATH`.
pub fn find_on_path(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// What a test needs from outside the project (a browser, Prometheus): `found`, or `None` to skip
/// with a message. Under CI (any non-empty `CI`) a missing tool fails the test instead. Skips are
/// also appended to `skipped-tools.txt` in the target's test directory, which the test command
/// prints as a summary at the end of a local run.
pub fn required_tool<T>(found: Option<T>, what: &str, install: &str) -> Option<T> {
    if found.is_none() {
        let ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
        assert!(!ci, "{what} is required under CI ({install})");
        eprintln!("skipping: {what} not found ({install})");
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("skipped-tools.txt");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            use std::io::Write;
            let test = std::thread::current().name().unwrap_or("?").to_string();
            let _ = writeln!(file, "{test}: {what} not found ({install})");
        }
    }
    found
}

/// The address a child process announces on its stderr: `find` picks it out of a line. Waits up
/// to `PATIENCE`; the pipe keeps being drained afterwards so the child never blocks on it.
/// `None` when no line announced one in time.
pub fn announced_address<T: Send + 'static>(
    child: &mut std::process::Child,
    find: impl Fn(&str) -> Option<T> + Send + 'static,
) -> Option<T> {
    let stderr = child.stderr.take()?;
    let (found_tx, found_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut sent = false;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if !sent {
                if let Some(found) = find(&line) {
                    sent = found_tx.send(found).is_ok();
                }
            }
        }
    });
    found_rx.recv_timeout(PATIENCE).ok()
}

/// Polls `/metrics` until `series` has `value`; panics with the last value after `PATIENCE`.
pub async fn wait_for_metric(server: &TestServer, series: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let seen = metric_value(&server.metrics().await, series);
        if seen == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} stayed at {seen:?}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
pub type RawWs = WebSocketStream<TcpStream>;

/// Generous bound for anything that should happen within a few chunk periods, so a loaded CI
/// machine does not flake; tests assert on what happened, not on how fast.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct TestServer {
    pub addr: SocketAddr,
    pub handles: Handles,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<JoinHandle<Result<(), server::ServerError>>>,
}

impl TestServer {
    /// Starts a server with one station named `station` (names keep tests' metrics apart).
    pub async fn start(station: &str, seed: u64) -> Self {
        Self::start_with(station, seed, |_| {}).await
    }

    pub async fn start_with(station: &str, seed: u64, adjust: impl FnOnce(&mut Config)) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, station, seed, adjust).await
    }

    /// Starts a server on a listener the test bound itself (e.g. to restart on the same port).
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        station: &str,
        seed: u64,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::start_with_renderer(listener, station, seed, adjust, None).await
    }

    /// Starts a server whose GPU engine renders on `renderer` (a stand-in); `None`: as configured.
    pub async fn start_with_renderer(
        listener: tokio::net::TcpListener,
        station: &str,
        seed: u64,
        adjust: impl FnOnce(&mut Config),
        renderer: Option<Box<dyn auralis::synth::batch::BatchRenderer>>,
    ) -> Self {
        let mut config = Config {
            stations: vec![StationConfig {
                name: station.to_string(),
                seed,
                preset: None,
                ..StationConfig::default()
            }],
            ..Config::default()
        };
        adjust(&mut config);
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (handles_tx, handles_rx) = oneshot::channel();
        let stop = async move {
            let _ = stop_rx.await;
        };
        let started = move |handles| {
            let _ = handles_tx.send(handles);
        };
        let task = match renderer {
            Some(renderer) => tokio::spawn(server::run_with_renderer(
                listener,
                config,
                stop,
                started,
                Some(renderer),
            )),
            None => tokio::spawn(server::run_with_handles(listener, config, stop, started)),
        };
        let handles = handles_rx.await.expect("server started");
        let server = Self {
            addr,
            handles,
            stop: Some(stop_tx),
            task: Some(task),
        };
        server.wait_live().await;
        server
    }

    pub fn hub(&self) -> &Arc<StationHub> {
        &self.handles.stations[0].hub
    }

    pub fn synthesis(&self) -> &Arc<SynthesisShared> {
        &self.handles.stations[0].synthesis
    }

    async fn wait_live(&self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !self.handles.stations.iter().all(|s| s.hub.is_live()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "stations never went live"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The WebSocket URL of `path` (as given: the station's default codec unless it names one).
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A listener of `path`. Tests that compare samples read PCM, so a path that names no codec
    /// asks for `pcm_s16le`; codec tests name theirs (and `connect_default_codec` names none).
    pub async fn connect(&self, path: &str) -> Ws {
        self.connect_raw_path(&with_pcm(path)).await
    }

    /// A listener of `path` exactly as given (no codec added).
    pub async fn connect_raw_path(&self, path: &str) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(self.ws_url(path))
            .await
            .expect("websocket connects");
        ws
    }

    /// Connects through a socket with a tiny receive buffer, so not reading stalls the server.
    pub async fn connect_small_buffer(&self, path: &str) -> RawWs {
        let path = with_pcm(path);
        let path = path.as_str();
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(self.addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(self.ws_url(path), stream)
            .await
            .expect("websocket connects");
        ws
    }

    /// Asks the server to stop and waits for `run` to return.
    pub async fn shutdown(mut self) -> Result<(), server::ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().unwrap();
        tokio::time::timeout(PATIENCE, task)
            .await
            .expect("server stops in time")
            .expect("server task did not panic")
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path).await
    }

    pub async fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, 200);
        body
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A plain HTTP/1.1 GET with `Connection: close`; returns status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http_request(addr, "GET", path, &[], "").await;
    (status, body)
}

/// A plain HTTP/1.1 request with `Connection: close`; returns status, raw headers and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

/// Joins the chunks of a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size =
            usize::from_str_radix(size.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].strip_prefix("\r\n").unwrap_or(&rest[size..]);
    }
    out
}

/// One decoded audio frame.
#[derive(Clone, Debug)]
pub struct Audio {
    pub header: FrameHeader,
    pub bytes: Vec<u8>,
}

impl Audio {
    pub fn payload(&self) -> &[u8] {
        FrameHeader::decode(&self.bytes).unwrap().1
    }
}

/// What a client received next.
#[derive(Debug)]
pub enum Received {
    Audio(Audio),
    Text(serde_json::Value),
    Closed(Option<CloseFrame>),
}

/// The next audio frame or text message (pings are skipped); panics after `PATIENCE`.
pub async fn receive<S>(ws: &mut WebSocketStream<S>) -> Received
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("a message in time");
        match message {
            None => return Received::Closed(None),
            Some(Err(e)) => panic!("websocket error: {e}"),
            Some(Ok(Message::Binary(bytes))) => {
                let (header, _) = FrameHeader::decode(&bytes).expect("valid audio frame");
                return Received::Audio(Audio {
                    header,
                    bytes: bytes.to_vec(),
                });
            }
            Some(Ok(Message::Text(text))) => {
                return Received::Text(serde_json::from_str(&text).expect("server sends JSON"))
            }
            Some(Ok(Message::Close(frame))) => return Received::Closed(frame),
            Some(Ok(_)) => continue,
        }
    }
}

/// Reads until the server closes; returns its close frame.
pub async fn close_frame<S>(ws: &mut WebSocketStream<S>) -> CloseFrame
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        if let Received::Closed(frame) = receive(ws).await {
            return frame.expect("a close frame with a code");
        }
    }
}

/// The next `n` audio frames, ignoring text messages.
pub async fn audio_frames<S>(ws: &mut WebSocketStream<S>, n: usize) -> Vec<Audio>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut frames = Vec::with_capacity(n);
    while frames.len() < n {
        match receive(ws).await {
            Received::Audio(audio) => frames.push(audio),
            Received::Text(_) => {}
            Received::Closed(frame) => panic!("closed early: {frame:?}"),
        }
    }
    frames
}

/// The next text message, collecting audio frames that arrive meanwhile into `audio`.
pub async fn next_text<S>(ws: &mut WebSocketStream<S>, audio: &mut Vec<Audio>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match receive(ws).await {
            Received::Audio(a) => audio.push(a),
            Received::Text(t) => return t,
            Received::Closed(frame) => panic!("closed while waiting for text: {frame:?}"),
        }
    }
}

/// Asserts frames are one contiguous run: consecutive sequence numbers, positions one chunk apart,
/// no discontinuity flag.
pub fn assert_contiguous(frames: &[Audio]) {
    for pair in frames.windows(2) {
        let (a, b) = (&pair[0].header, &pair[1].header);
        assert_eq!(
            b.sequence,
            a.sequence + 1,
            "sequence gap: {} -> {}",
            a.sequence,
            b.sequence
        );
        assert_eq!(
            b.position,
            a.position + a.frames as u64,
            "position must advance one chunk"
        );
        assert_eq!(b.flags & auralis::stream::protocol::FLAG_DISCONTINUITY, 0);
    }
}

/// The value of a metric series in Prometheus text (exact label set), if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A WebSocket client written by hand, for what well-behaved libraries refuse to do: send
/// invalid frames, never answer pings, or stop half-way through a handshake.
pub struct RawClient {
    pub stream: TcpStream,
    buffer: Vec<u8>,
}

/// A frame as the server sent it.
#[derive(Debug)]
pub struct RawFrame {
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    /// The close code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawClient {
    /// Upgrades `path` with the given extra headers; returns the client, or the HTTP status and
    /// body when the server refused.
    pub async fn upgrade(
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Self, (u16, String)> {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buffer = Vec::new();
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
                .await
                .expect("a response in time")
                .unwrap();
            assert!(n > 0, "closed during the handshake");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if status != 101 {
            // Refusals are small JSON bodies with a Content-Length.
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            let mut body = buffer[head_end..].to_vec();
            while body.len() < length {
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
            return Err((status, String::from_utf8_lossy(&body).to_string()));
        }
        buffer.drain(..head_end);
        Ok(Self { stream, buffer })
    }

    /// Sends one masked frame with any opcode and payload, valid or not.
    pub async fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= u16::MAX as usize => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next frame from the server (pings included, never answered), or `None` at EOF.
    pub async fn next_frame(&mut self) -> Option<RawFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = tokio::time::timeout(PATIENCE, self.stream.read(&mut chunk))
                .await
                .expect("a frame in time")
                .ok()?;
            if n == 0 {
                return None;
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }

    /// Reads until the server's close frame (skipping audio, text and pings); its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        while let Some(frame) = self.next_frame().await {
            if frame.opcode == 0x8 {
                return frame.close_code();
            }
        }
        None
    }
}

/// One unmasked server frame from the front of `bytes`, and how many bytes it used.
fn parse_server_frame(bytes: &[u8]) -> Option<(RawFrame, usize)> {
    let (first, second) = (*bytes.first()?, *bytes.get(1)?);
    let (length, mut offset) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*bytes.get(2)?, *bytes.get(3)?]) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    if second & 0x80 != 0 {
        offset += 4; // servers never mask, but skip a mask if one came
    }
    let payload = bytes.get(offset..offset + length)?.to_vec();
    Some((
        RawFrame {
            opcode: first & 0x0f,
            payload,
        },
        offset + length,
    ))
}

/// Binds `addr` again once the server that had it has let go (to restart on the same port).
pub async fn rebind(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "cannot bind {addr} again: {e}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

/// `path` with `codec=pcm_s16le` added unless it names a codec.
pub fn with_pcm(path: &str) -> String {
    if path.contains("codec=") {
        return path.to_string();
    }
    let separator = if path.contains('?') { '&' } else { '?' };
    format!("{path}{separator}codec=pcm_s16le")
}
