//! Hostile input, one test per class: each asserts the exact outcome the attacker gets (an error
//! message, a close code or an HTTP status) and that a healthy listener, connected throughout,
//! saw every chunk with no gap. docs/reliability.md tabulates the same classes.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use auralis::config::Config;
use auralis::edge::tokens::{issue, now_unix, Scope};
use common::*;
use futures_util::SinkExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

/// A listener that plays by the rules for the whole test.
struct Healthy {
    frames: Arc<Mutex<Vec<Audio>>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Healthy {
    async fn join(server: &TestServer) -> Self {
        let mut ws = server.connect("/ws").await;
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel();
        let collected = Arc::clone(&frames);
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    received = receive(&mut ws) => match received {
                        Received::Audio(audio) => collected.lock().unwrap().push(audio),
                        Received::Text(_) => {}
                        Received::Closed(frame) => panic!("the healthy listener was closed: {frame:?}"),
                    },
                }
            }
        });
        let healthy = Self { frames, stop, task };
        healthy.wait_for(2).await;
        healthy
    }

    fn received(&self) -> usize {
        self.frames.lock().unwrap().len()
    }

    async fn wait_for(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.received() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the healthy listener stopped receiving"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a few more chunks after the attack, then checks the whole run has no gap.
    async fn finish(self) {
        self.wait_for(self.received() + 4).await;
        let _ = self.stop.send(());
        self.task
            .await
            .expect("the healthy listener's task did not panic");
        let frames = self.frames.lock().unwrap();
        assert_contiguous(&frames);
    }
}

async fn start(station: &str, adjust: impl FnOnce(&mut Config)) -> (TestServer, Healthy) {
    let server = TestServer::start_with(station, 40, adjust).await;
    let healthy = Healthy::join(&server).await;
    (server, healthy)
}

/// Sends `message` and returns the error the server answers with.
async fn error_for(ws: &mut Ws, message: Message) -> Value {
    ws.send(message).await.unwrap();
    let mut audio = Vec::new();
    loop {
        let reply = next_text(ws, &mut audio).await;
        if reply["type"] == "error" {
            return reply;
        }
    }
}

/// Asserts the attacker is still streaming after its refusal.
async fn still_streaming(ws: &mut Ws) {
    assert_contiguous(&audio_frames(ws, 2).await);
}

fn counter(metrics: &str, series: &str) -> f64 {
    metric_value(metrics, series).unwrap_or_else(|| panic!("{series} missing"))
}

fn client_errors(metrics: &str, station: &str, reason: &str) -> f64 {
    counter(
        metrics,
        &format!("auralis_ws_client_errors_total{{station=\"{station}\",reason=\"{reason}\"}}"),
    )
}

fn disconnections(metrics: &str, station: &str, reason: &str) -> f64 {
    counter(
        metrics,
        &format!(
            "auralis_ws_disconnections_total{{station=\"{station}\",reason=\"{reason}\",transport=\"websocket\"}}"
        ),
    )
}

fn rejections(metrics: &str, reason: &str) -> f64 {
    counter(
        metrics,
        &format!("auralis_ws_rejections_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_closed_with_1009() {
    let (server, healthy) = start("h-oversized", |c| c.max_client_message_bytes = 1024).await;
    let mut attacker = RawClient::upgrade(server.addr, "/ws", &[]).await.unwrap();
    attacker.send_frame(0x1, &vec![b'x'; 64 * 1024]).await;
    assert_eq!(attacker.close_code().await, Some(1009));
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(
        disconnections(&metrics, "h-oversized", "message_too_big"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_text_is_closed_with_1007() {
    let (server, healthy) = start("h-utf8", |_| {}).await;
    let mut attacker = RawClient::upgrade(server.addr, "/ws", &[]).await.unwrap();
    attacker.send_frame(0x1, &[b'{', 0xff, 0xfe, b'}']).await;
    assert_eq!(attacker.close_code().await, Some(1007));
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(disconnections(&metrics, "h-utf8", "invalid_utf8"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_from_a_client_gets_an_error_and_the_stream_goes_on() {
    let (server, healthy) = start("h-binary", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    let reply = error_for(&mut attacker, Message::binary(vec![0u8; 32])).await;
    assert_eq!(reply["code"], "binary_not_accepted");
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(
        client_errors(&metrics, "h-binary", "binary_not_accepted"),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_malformed_json() {
    let (server, healthy) = start("h-json", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    for text in ["{not json", "", "[1,2,3]", "\"ping\"", "{\"type\":"] {
        let reply = error_for(&mut attacker, Message::text(text)).await;
        assert_eq!(reply["code"], "malformed_json", "{text:?} -> {reply}");
    }
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(client_errors(&metrics, "h-json", "malformed_json"), 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_type_gets_unknown_type() {
    let (server, healthy) = start("h-type", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    for text in [
        r#"{"type":"dance"}"#,
        r#"{"type":""}"#,
        r#"{"type":"PING"}"#,
    ] {
        let reply = error_for(&mut attacker, Message::text(text)).await;
        assert_eq!(reply["code"], "unknown_type", "{text} -> {reply}");
    }
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(client_errors(&metrics, "h-type", "unknown_type"), 3.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_field_types_get_invalid_message_or_invalid_control() {
    let (server, healthy) = start("h-fields", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    for (text, code) in [
        (r#"{"type":"ping","client_time":"soon"}"#, "invalid_message"),
        (
            r#"{"type":"stats","buffer_ms":"full","underruns":0}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"stats","buffer_ms":100,"underruns":-1}"#,
            "invalid_message",
        ),
        (r#"{"type":"hello","protocol":"one"}"#, "invalid_message"),
        (
            r#"{"type":"control","intensity":"loud"}"#,
            "invalid_control",
        ),
        (r#"{"type":"control","bpm":[90]}"#, "invalid_control"),
    ] {
        let reply = error_for(&mut attacker, Message::text(text)).await;
        assert_eq!(reply["code"], code, "{text} -> {reply}");
    }
    still_streaming(&mut attacker).await;
    healthy.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_and_huge_numbers_are_refused() {
    let (server, healthy) = start("h-numbers", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    for (text, code) in [
        // JSON has no NaN or infinity; 1e400 does not fit a double.
        (r#"{"type":"ping","client_time":NaN}"#, "malformed_json"),
        (
            r#"{"type":"stats","buffer_ms":1e400,"underruns":0}"#,
            "malformed_json",
        ),
        (
            r#"{"type":"stats","buffer_ms":1e300,"underruns":0}"#,
            "invalid_message",
        ),
        (
            r#"{"type":"stats","buffer_ms":100,"underruns":18446744073709551616}"#,
            "invalid_message",
        ),
        (r#"{"type":"control","intensity":1e300}"#, "invalid_control"),
        (r#"{"type":"control","bpm":-1e-300}"#, "invalid_control"),
    ] {
        let reply = error_for(&mut attacker, Message::text(text)).await;
        assert_eq!(reply["code"], code, "{text} -> {reply}");
    }
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    // None of it reached the stats.
    assert_eq!(
        counter(
            &metrics,
            "auralis_client_reports_total{station=\"h-numbers\"}"
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_control_flood_is_rate_limited() {
    let (server, healthy) = start("h-control", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    let started = std::time::Instant::now();
    for i in 0..40 {
        let body = serde_json::json!({"type": "control", "intensity": (i % 10) as f64 / 10.0});
        attacker
            .send(Message::text(body.to_string()))
            .await
            .unwrap();
    }
    attacker
        .send(Message::text(r#"{"type":"ping","client_time":1}"#))
        .await
        .unwrap();
    let (mut acked, mut limited) = (0, 0);
    let mut audio = Vec::new();
    loop {
        let reply = next_text(&mut attacker, &mut audio).await;
        match reply["type"].as_str() {
            Some("pong") if acked + limited == 40 => break,
            Some("control_ack") => acked += 1,
            Some("error") => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                limited += 1;
            }
            _ => {}
        }
    }
    // A burst of five, plus two a second for however long the flood took to serve.
    let refilled = (2.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        acked >= 5 && acked <= 5 + refilled,
        "{acked} of 40 applied in {:?}",
        started.elapsed()
    );
    assert_eq!(acked + limited, 40);
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            "auralis_control_requests_total{station=\"h-control\",result=\"rate_limited\"}"
        ),
        limited as f64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stats_flood_is_rate_limited() {
    let (server, healthy) = start("h-stats", |_| {}).await;
    let mut attacker = server.connect("/ws").await;
    for _ in 0..50 {
        attacker
            .send(Message::text(
                r#"{"type":"stats","buffer_ms":150,"underruns":0}"#,
            ))
            .await
            .unwrap();
    }
    attacker
        .send(Message::text(r#"{"type":"ping"}"#))
        .await
        .unwrap();
    let mut refused = 0;
    let mut audio = Vec::new();
    loop {
        let reply = next_text(&mut attacker, &mut audio).await;
        match reply["type"].as_str() {
            Some("pong") => break,
            Some("error") => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                refused += 1;
            }
            _ => {}
        }
    }
    assert!(refused >= 40, "{refused} of 50 refused");
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(
        counter(
            &metrics,
            "auralis_client_reports_total{station=\"h-stats\"}"
        ),
        (50 - refused) as f64
    );
}

/// Reads until the server closes the connection; true if it did within `PATIENCE`.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_handshake_is_closed_after_the_header_timeout() {
    let (server, healthy) = start("h-slowloris", |c| {
        c.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let mut half = TcpStream::connect(server.addr).await.unwrap();
    half.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert!(
        closed_by_server(&mut half).await,
        "half a request stays open"
    );
    assert!(
        closed_by_server(&mut silent).await,
        "a silent connection stays open"
    );
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert!(counter(&metrics, "auralis_http_header_timeouts_total") >= 1.0);
    // Whole requests are still served.
    assert_eq!(server.get("/healthz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_that_trickles_in_gets_408() {
    let (server, healthy) = start("h-slowbody", |c| {
        c.request_timeout = Duration::from_millis(500);
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(
            b"POST /api/stations/h-slowbody/control HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"bpm\":",
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 1024];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "closed without an answer");
        response.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&response);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    healthy.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_origin_is_refused_with_403() {
    let (server, healthy) = start("h-origin", |c| {
        c.allowed_origins = vec!["https://radio.example".to_string()];
    })
    .await;
    let host_origin = format!("http://{}", server.addr);
    let (status, body) =
        RawClient::upgrade(server.addr, "/ws", &[("Origin", "https://evil.example")])
            .await
            .err()
            .expect("a foreign origin is refused");
    assert_eq!(status, 403);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    for allowed in [host_origin.as_str(), "https://radio.example"] {
        let mut client = RawClient::upgrade(server.addr, "/ws", &[("Origin", allowed)])
            .await
            .unwrap_or_else(|e| panic!("{allowed} refused: {e:?}"));
        assert!(client.next_frame().await.is_some());
    }
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(rejections(&metrics, "origin_not_allowed"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_expired_and_wrong_listen_tokens_are_refused_with_401() {
    const SECRET: &str = "hostile-test-secret-0123456789";
    let valid = issue(SECRET, Scope::Listen, now_unix() + 3600).unwrap();
    // The healthy listener presents a static token.
    let server = TestServer::start_with("h-token", 41, |c| {
        c.token_secret = Some(SECRET.into());
        c.listen_token = Some("static-listen".into());
    })
    .await;
    let mut ws = server.connect("/ws?token=static-listen").await;
    let mut healthy = audio_frames(&mut ws, 2).await;

    let expired = issue(SECRET, Scope::Listen, now_unix() - 1).unwrap();
    let foreign = issue(
        "some-other-secret-0123456789",
        Scope::Listen,
        now_unix() + 3600,
    )
    .unwrap();
    for (path, headers, code) in [
        ("/ws".to_string(), vec![], "token_missing"),
        (format!("/ws?token={expired}"), vec![], "token_expired"),
        (format!("/ws?token={foreign}"), vec![], "token_invalid"),
        (
            "/ws?token=static-listen-".to_string(),
            vec![],
            "token_invalid",
        ),
        (
            "/ws".to_string(),
            vec![("Authorization", "Bearer nope")],
            "token_invalid",
        ),
    ] {
        let (status, body) = RawClient::upgrade(server.addr, &path, &headers)
            .await
            .err()
            .unwrap_or_else(|| panic!("{path} was let in"));
        assert_eq!(status, 401, "{path}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
        // The refusal never echoes the token.
        assert!(!body.to_string().contains(&expired));
    }
    let bearer = format!("Bearer {valid}");
    for (path, headers) in [
        (format!("/ws?token={valid}"), vec![]),
        ("/ws".to_string(), vec![("Authorization", bearer.as_str())]),
    ] {
        let mut client = RawClient::upgrade(server.addr, &path, &headers)
            .await
            .unwrap_or_else(|e| panic!("a valid token was refused: {e:?}"));
        assert!(client.next_frame().await.is_some());
    }
    healthy.extend(audio_frames(&mut ws, 4).await);
    assert_contiguous(&healthy);
    let metrics = server.metrics().await;
    assert_eq!(rejections(&metrics, "token_missing"), 1.0);
    assert_eq!(rejections(&metrics, "token_expired"), 1.0);
    assert_eq!(rejections(&metrics, "token_invalid"), 3.0);
    // A token in a URL is not a label or a log line: the exposition never shows it.
    assert!(!metrics.contains("static-listen") && !metrics.contains(&valid));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_after_the_limit_gets_503_and_a_freed_slot_is_reused() {
    let (server, healthy) = start("h-full", |c| c.max_listeners = 3).await;
    let _second = server.connect("/ws").await;
    let third = server.connect("/ws").await;
    let (status, body) = RawClient::upgrade(server.addr, "/ws", &[])
        .await
        .err()
        .expect("the fourth listener is refused");
    assert_eq!(status, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "server_full");
    drop(third);
    // The slot comes back once the server has seen the close.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut again = loop {
        match RawClient::upgrade(server.addr, "/ws", &[]).await {
            Ok(client) => break client,
            Err((503, _)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("{other:?}"),
        }
    };
    assert!(again.next_frame().await.is_some());
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert!(rejections(&metrics, "server_full") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_more_than_its_share() {
    let (server, healthy) = start("h-per-ip", |c| c.max_listeners_per_ip = 2).await;
    let _second = server.connect("/ws").await;
    let (status, body) = RawClient::upgrade(server.addr, "/ws", &[])
        .await
        .err()
        .expect("the third listener from one address is refused");
    assert_eq!(status, 503);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "address_full");
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(rejections(&metrics, "address_full"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_disconnected_for_send_timeout() {
    let (server, healthy) = start("h-stall", |c| {
        c.send_timeout = Duration::from_millis(500);
        c.tcp_send_buffer_bytes = Some(4096);
    })
    .await;
    let stalled = server.connect_small_buffer("/ws").await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let metrics = server.metrics().await;
        if disconnections(&metrics, "h-stall", "send_timeout") >= 1.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stalled client was never disconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
    healthy.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_answers_pings_is_closed_as_idle() {
    let (server, healthy) = start("h-idle", |c| {
        c.ping_interval = Duration::from_millis(200);
        c.idle_timeout = Duration::from_millis(1000);
    })
    .await;
    let mut silent = RawClient::upgrade(server.addr, "/ws", &[]).await.unwrap();
    let mut pings = 0;
    let code = loop {
        let frame = silent.next_frame().await.expect("closed without a frame");
        match frame.opcode {
            0x9 => pings += 1,
            0x8 => break frame.close_code(),
            _ => {}
        }
    };
    assert_eq!(code, Some(1001));
    assert!(pings >= 2, "{pings} pings before the close");
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(disconnections(&metrics, "h-idle", "idle_timeout"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_keeps_falling_behind_is_disconnected() {
    let (server, healthy) = start("h-lag", |c| {
        c.listener_queue_chunks = 6;
        c.max_lag_skips_per_minute = 2;
        // Tiny socket buffers, so a client that pauses really holds the writer up.
        c.tcp_send_buffer_bytes = Some(4096);
        c.send_timeout = Duration::from_secs(30);
    })
    .await;
    let mut slow = server.connect_small_buffer("/ws").await;
    // Pause for 15 chunk periods (the queue holds 6), then read briskly for a moment, again and
    // again: every pause ends in a skip, and the third skip within a minute is one too many. The
    // brisk reading lets the close frame through.
    let mut code = None;
    'cycles: for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let reading_until = tokio::time::Instant::now() + Duration::from_millis(400);
        while let Ok(received) = tokio::time::timeout_at(reading_until, receive(&mut slow)).await {
            if let Received::Closed(frame) = received {
                code = frame.map(|f| u16::from(f.code));
                break 'cycles;
            }
        }
    }
    assert_eq!(code, Some(1008));
    healthy.finish().await;
    let metrics = server.metrics().await;
    assert_eq!(disconnections(&metrics, "h-lag", "persistent_lag"), 1.0);
    assert!(
        counter(
            &metrics,
            "auralis_ws_chunks_dropped_total{station=\"h-lag\",reason=\"lagged\",transport=\"websocket\"}"
        ) >= 3.0
    );
}

/// Sends a `stats` report and waits until the server has handled it (a `ping` behind it is
/// answered); returns the `warning` codes it answered the report with.
async fn report(ws: &mut Ws, stats: &str) -> Vec<String> {
    ws.send(Message::text(stats)).await.unwrap();
    ws.send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    let mut warnings = Vec::new();
    let mut audio = Vec::new();
    loop {
        let reply = next_text(ws, &mut audio).await;
        match reply["type"].as_str() {
            Some("pong") => return warnings,
            Some("warning") => warnings.push(reply["code"].as_str().unwrap().to_string()),
            Some("error") => panic!("report refused with an error: {reply}"),
            _ => {}
        }
    }
}

/// The client-reported series of `station`: underruns, buffer and latency sample counts and sums.
fn client_figures(metrics: &str, station: &str) -> [f64; 5] {
    let series = |name: &str| counter(metrics, &format!("{name}{{station=\"{station}\"}}"));
    [
        series("auralis_client_underruns_total"),
        series("auralis_client_buffer_seconds_count"),
        series("auralis_client_buffer_seconds_sum"),
        series("auralis_client_latency_seconds_count"),
        series("auralis_client_latency_seconds_sum"),
    ]
}

fn refused_fields(metrics: &str, station: &str, field: &str) -> f64 {
    counter(
        metrics,
        &format!("auralis_client_reports_refused_total{{station=\"{station}\",field=\"{field}\"}}"),
    )
}

/// A hostile listener's `stats` reports leave the client-reported series exactly as an honest
/// listener's reports made them, and every refusal is counted and answered with a warning.
async fn hostile_reports_change_nothing(station: &str, field: &str, hostile: &[&str]) {
    let (server, healthy) = start(station, |_| {}).await;
    let mut honest = server.connect("/ws").await;
    let honest_report = r#"{"type":"stats","buffer_ms":100,"underruns":1,"latency_ms":120}"#;
    assert!(report(&mut honest, honest_report).await.is_empty());
    let before = client_figures(&server.metrics().await, station);
    assert_eq!(
        before,
        [1.0, 1.0, 0.1, 1.0, 0.12],
        "the honest report is recorded as sent"
    );

    let mut attacker = server.connect("/ws").await;
    let mut warned = 0;
    for stats in hostile {
        let warnings = report(&mut attacker, stats).await;
        assert!(
            warnings.iter().all(|w| w == "stats_refused"),
            "{warnings:?}"
        );
        warned += warnings.len();
    }
    still_streaming(&mut attacker).await;
    healthy.finish().await;
    let metrics = server.metrics().await;
    let after = client_figures(&metrics, station);
    let moved: Vec<usize> = (0..5).filter(|i| after[*i] != before[*i]).collect();
    // Only the attacker's plausible figures (the ones beside the hostile field) may be recorded.
    let allowed: &[usize] = match field {
        "underruns" => &[1, 2],
        "buffer" => &[3, 4],
        "latency" => &[1, 2],
        _ => unreachable!(),
    };
    assert!(
        moved.iter().all(|i| allowed.contains(i)),
        "hostile {field} reports moved the client series: {before:?} -> {after:?}"
    );
    assert_eq!(after[0], 1.0, "only the honest underrun is counted");
    assert_eq!(refused_fields(&metrics, station, field), warned as f64);
    assert!(warned > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_huge_and_zero_underrun_reports_move_nothing() {
    let max = r#"{"type":"stats","buffer_ms":100,"underruns":18446744073709551615}"#;
    let zero = r#"{"type":"stats","buffer_ms":100,"underruns":0}"#;
    hostile_reports_change_nothing("h-underruns", "underruns", &[max, zero, max, zero, max]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buffer_longer_than_the_connection_is_refused() {
    let huge = r#"{"type":"stats","buffer_ms":600000,"underruns":0,"latency_ms":100}"#;
    hostile_reports_change_nothing("h-buffer", "buffer", &[huge, huge, huge]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_latency_longer_than_the_connection_could_see_is_refused() {
    let huge = r#"{"type":"stats","buffer_ms":100,"underruns":0,"latency_ms":600000}"#;
    hostile_reports_change_nothing("h-latency", "latency", &[huge, huge, huge]).await;
}
