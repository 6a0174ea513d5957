//! End-to-end streaming behaviour over real sockets: what listeners receive.

mod common;

use std::time::Duration;

use auralis::render::{render_pcm, RenderRequest};
use auralis::stream::protocol::{FLAG_DISCONTINUITY, FLAG_UNDERRUN_FILL};
use auralis::synth::Score;
use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_gets_every_chunk_identically() {
    let server = TestServer::start("fanout", 11).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(server.connect("/ws").await);
    }
    // Welcome first, describing the stream.
    for ws in &mut clients {
        match receive(ws).await {
            Received::Text(welcome) => {
                assert_eq!(welcome["type"], "welcome");
                assert_eq!(welcome["station"], "fanout");
                assert_eq!(welcome["protocol"], 2);
                assert_eq!(welcome["format"]["codec"], "pcm_s16le");
                assert_eq!(welcome["format"]["frames_per_chunk"], 4800);
                assert_eq!(welcome["chunk_ms"], 100);
            }
            other => panic!("expected welcome, got {other:?}"),
        }
    }
    // Every client reads at the same time, as real listeners do.
    let readers = clients
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { audio_frames(&mut ws, 25).await }));
    let mut received = Vec::new();
    for reader in readers.collect::<Vec<_>>() {
        received.push(reader.await.unwrap());
    }
    for frames in &received {
        assert_contiguous(frames);
        for f in frames {
            assert_eq!(f.header.frames, 4800);
            assert_eq!(f.header.channels, 2);
            assert_eq!(f.payload().len(), 4800 * 2 * 2);
        }
    }
    // Wherever two listeners received the same sequence number, they received the same bytes.
    let reference = &received[0];
    let mut compared = 0;
    for other in &received[1..] {
        for frame in other {
            if let Some(same) = reference
                .iter()
                .find(|f| f.header.sequence == frame.header.sequence)
            {
                assert_eq!(same.bytes, frame.bytes, "seq {}", frame.header.sequence);
                compared += 1;
            }
        }
    }
    assert!(
        compared >= 3 * 20,
        "listeners overlapped on {compared} chunks"
    );
    // And the audio is not silence.
    assert!(reference
        .iter()
        .any(|f| f.payload().iter().any(|b| *b != 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_starts_at_the_live_edge() {
    let server = TestServer::start("late", 12).await;
    let mut early = server.connect("/ws").await;
    audio_frames(&mut early, 10).await;
    let before = server
        .hub()
        .stats
        .last_sequence
        .load(std::sync::atomic::Ordering::SeqCst);
    let mut late = server.connect("/ws").await;
    let first = audio_frames(&mut late, 1).await.remove(0);
    let after = server
        .hub()
        .stats
        .last_sequence
        .load(std::sync::atomic::Ordering::SeqCst);
    // The first chunk is the newest one at the time of joining: not the start of the stream,
    // not something from the ring's past.
    assert!(
        (before..=after).contains(&first.header.sequence),
        "first chunk {} outside live window {before}..={after}",
        first.header.sequence
    );
    let rest = audio_frames(&mut late, 10).await;
    let mut all = vec![first];
    all.extend(rest);
    assert_contiguous(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_audio_equals_offline_render() {
    let seed = 1234;
    let server = TestServer::start("render-match", seed).await;
    let mut ws = server.connect("/ws").await;
    let frames = audio_frames(&mut ws, 12).await;
    let mut compared = 0;
    for frame in frames
        .iter()
        .filter(|f| f.header.flags & FLAG_UNDERRUN_FILL == 0)
    {
        let request = RenderRequest {
            timeline: Score::new(seed, 48_000).into(),
            chunk_frames: 4800,
            start_frame: frame.header.position,
            frames: 4800,
        };
        let mut pcm = Vec::new();
        render_pcm(&request, |block| pcm.extend_from_slice(block));
        let expected: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        assert_eq!(
            frame.payload(),
            &expected[..],
            "position {}",
            frame.header.position
        );
        compared += 1;
    }
    assert!(compared > 0, "every chunk was an underrun fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_control_gets_an_error_and_the_stream_goes_on() {
    let server = TestServer::start("bad-input", 13).await;
    let mut ws = server.connect("/ws").await;
    let mut audio = Vec::new();
    assert_eq!(next_text(&mut ws, &mut audio).await["type"], "welcome");

    let cases: [(Message, &str); 6] = [
        (Message::text("{not json"), "malformed_json"),
        (Message::text(r#"{"type":"dance"}"#), "unknown_type"),
        (
            Message::text(r#"{"type":"ping","client_time":"soon"}"#),
            "invalid_message",
        ),
        (
            Message::text(r#"{"type":"stats","buffer_ms":1e400,"underruns":0}"#),
            "malformed_json",
        ),
        (
            Message::text(r#"{"type":"stats","buffer_ms":-5,"underruns":0}"#),
            "invalid_message",
        ),
        (Message::binary(vec![1u8, 2, 3]), "binary_not_accepted"),
    ];
    for (message, code) in cases {
        ws.send(message).await.unwrap();
        let reply = next_text(&mut ws, &mut audio).await;
        assert_eq!(reply["type"], "error");
        assert_eq!(reply["code"], code, "{reply}");
        assert!(!reply["message"].as_str().unwrap_or("").is_empty());
    }
    // Valid messages still work afterwards.
    ws.send(Message::text(r#"{"type":"ping","client_time":42.5}"#))
        .await
        .unwrap();
    let pong = next_text(&mut ws, &mut audio).await;
    assert_eq!(pong["type"], "pong");
    assert_eq!(pong["client_time"], 42.5);
    assert!(pong["server_time_unix_ns"].as_u64().unwrap() > 0);
    ws.send(Message::text(
        r#"{"type":"stats","buffer_ms":180,"underruns":2,"latency_ms":240}"#,
    ))
    .await
    .unwrap();

    audio.extend(audio_frames(&mut ws, 5).await);
    assert_contiguous(&audio);

    let metrics = server.metrics().await;
    let errors = |reason: &str| {
        metric_value(
            &metrics,
            &format!("auralis_ws_client_errors_total{{station=\"bad-input\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(errors("malformed_json"), Some(2.0));
    assert_eq!(errors("unknown_type"), Some(1.0));
    assert_eq!(errors("invalid_message"), Some(2.0));
    assert_eq!(errors("binary_not_accepted"), Some(1.0));
    assert_eq!(
        metric_value(
            &metrics,
            "auralis_client_underruns_total{station=\"bad-input\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric_value(
            &metrics,
            "auralis_client_reports_total{station=\"bad-input\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_refused_with_1009_and_others_keep_streaming() {
    let server = TestServer::start("oversized", 14).await;
    let mut healthy = server.connect("/ws").await;
    let mut attacker = server.connect("/ws").await;
    let before = audio_frames(&mut healthy, 3).await;
    attacker
        .send(Message::text("x".repeat(100 * 1024)))
        .await
        .unwrap();
    let close = close_frame(&mut attacker).await;
    assert_eq!(u16::from(close.code), 1009);
    let mut frames = before;
    frames.extend(audio_frames(&mut healthy, 5).await);
    assert_contiguous(&frames);
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "auralis_ws_disconnections_total{station=\"oversized\",reason=\"message_too_big\",transport=\"websocket\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_protocol_version_is_refused_with_1002() {
    let server = TestServer::start("hello", 15).await;
    let mut ws = server.connect("/ws").await;
    let mut audio = Vec::new();
    assert_eq!(next_text(&mut ws, &mut audio).await["type"], "welcome");
    ws.send(Message::text(
        r#"{"type":"hello","protocol":2,"client":"test"}"#,
    ))
    .await
    .unwrap();
    assert_eq!(next_text(&mut ws, &mut audio).await["type"], "welcome");
    // A version 1 client is refused, never streamed to.
    ws.send(Message::text(r#"{"type":"hello","protocol":1}"#))
        .await
        .unwrap();
    let error = next_text(&mut ws, &mut audio).await;
    assert_eq!(error["code"], "unsupported_protocol");
    let close = close_frame(&mut ws).await;
    assert_eq!(u16::from(close.code), 1002);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_pauses_skips_to_the_live_edge_without_hurting_others() {
    let server = TestServer::start_with("lagging", 16, |c| {
        c.listener_queue_chunks = 3;
        c.tcp_send_buffer_bytes = Some(4096);
        c.send_timeout = Duration::from_secs(30);
    })
    .await;
    let mut healthy = server.connect("/ws").await;
    let mut lagging = server.connect_small_buffer("/ws").await;
    let first = audio_frames(&mut lagging, 2).await;
    // Stop reading for well over the queue's three chunks while the healthy listener reads on.
    let healthy_frames = audio_frames(&mut healthy, 15).await;
    assert_contiguous(&healthy_frames);
    let after = audio_frames(&mut lagging, 12).await;
    let skip = after
        .iter()
        .find(|f| f.header.flags & FLAG_DISCONTINUITY != 0)
        .expect("the paused listener is told it skipped");
    assert!(skip.header.sequence > first[1].header.sequence + 3);
    // It resumed at the live edge and is contiguous from there.
    let resumed: Vec<_> = after
        .iter()
        .skip_while(|f| f.header.flags & FLAG_DISCONTINUITY == 0)
        .skip(1)
        .cloned()
        .collect();
    assert_contiguous(&resumed);
    let more = audio_frames(&mut healthy, 3).await;
    assert_contiguous(&[healthy_frames, more].concat());
    let metrics = server.metrics().await;
    let dropped = metric_value(
        &metrics,
        "auralis_ws_chunks_dropped_total{station=\"lagging\",reason=\"lagged\",transport=\"websocket\"}",
    )
    .unwrap();
    assert!(dropped >= 3.0, "dropped {dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_stops_reading_is_disconnected_and_others_see_no_gap() {
    let server = TestServer::start_with("stalled", 17, |c| {
        c.tcp_send_buffer_bytes = Some(4096);
        c.send_timeout = Duration::from_millis(500);
    })
    .await;
    let mut healthy = server.connect("/ws").await;
    let _stalled = server.connect_small_buffer("/ws").await; // never read
    let frames = audio_frames(&mut healthy, 25).await;
    assert_contiguous(&frames);
    let series = "auralis_ws_disconnections_total{station=\"stalled\",reason=\"send_timeout\",transport=\"websocket\"}";
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if metric_value(&server.metrics().await, series) == Some(1.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled listener never dropped"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let more = audio_frames(&mut healthy, 3).await;
    assert_contiguous(&[frames, more].concat());
    assert_eq!(
        server
            .hub()
            .stats
            .listeners
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_synthesis_sends_flagged_silence_and_keeps_the_clock() {
    let server = TestServer::start("underrun", 18).await;
    let mut ws = server.connect("/ws").await;
    audio_frames(&mut ws, 2).await;
    let series = "auralis_ring_buffer_underruns_total{station=\"underrun\"}";
    let before = metric_value(&server.metrics().await, series).unwrap();
    server.synthesis().set_stalled(true);
    // The ring drains (three chunks), then the pacer fills with flagged silence.
    let mut frames = audio_frames(&mut ws, 8).await;
    // While stalled and filling, the ring is empty, and the gauge and /api/status say so.
    let depth = "auralis_ring_buffer_depth_seconds{station=\"underrun\"}";
    assert_eq!(metric_value(&server.metrics().await, depth), Some(0.0));
    let (_, status) = server.get("/api/status").await;
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["stations"][0]["ring_depth_seconds"], 0.0);
    server.synthesis().set_stalled(false);
    frames.extend(audio_frames(&mut ws, 8).await);
    assert_contiguous(&frames);
    let fills: Vec<_> = frames
        .iter()
        .filter(|f| f.header.flags & FLAG_UNDERRUN_FILL != 0)
        .collect();
    assert!(fills.len() >= 2, "{} fills", fills.len());
    assert!(fills.iter().all(|f| f.payload().iter().all(|b| *b == 0)));
    // Audio comes back after the stall.
    assert!(frames
        .last()
        .is_some_and(|f| f.header.flags & FLAG_UNDERRUN_FILL == 0));
    // The counter tells the truth: one underrun per silence chunk listeners received.
    let after = metric_value(&server.metrics().await, series).unwrap();
    assert_eq!(after - before, fills.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_are_chosen_by_path_or_query_and_unknown_ones_are_404() {
    let server = TestServer::start_with("one", 21, |c| {
        c.stations.push("two=22".parse().unwrap());
    })
    .await;
    for (path, station) in [
        ("/ws", "one"),
        ("/ws?station=two", "two"),
        ("/ws/two", "two"),
    ] {
        let mut ws = server.connect(path).await;
        let mut audio = Vec::new();
        let welcome = next_text(&mut ws, &mut audio).await;
        assert_eq!(welcome["station"], station, "{path}");
        assert_eq!(welcome["stations"], serde_json::json!(["one", "two"]));
    }
    let error = tokio_tungstenite::connect_async(server.ws_url("/ws/nope"))
        .await
        .unwrap_err();
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 404);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or(b"{}")).unwrap();
            assert_eq!(body["error"]["code"], "unknown_station");
        }
        other => panic!("expected HTTP 404, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_listener_with_1001() {
    let server = TestServer::start("shutdown", 19).await;
    let mut a = server.connect("/ws").await;
    let mut b = server.connect("/ws").await;
    audio_frames(&mut a, 2).await;
    audio_frames(&mut b, 2).await;
    let stopping = tokio::spawn(server.shutdown());
    for ws in [&mut a, &mut b] {
        let close = close_frame(ws).await;
        assert_eq!(u16::from(close.code), 1001);
    }
    stopping.await.unwrap().expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_with_one_seed_stream_the_same_audio() {
    let a = TestServer::start("twin-a", 77).await;
    let b = TestServer::start("twin-b", 77).await;
    let mut wa = a.connect("/ws").await;
    let mut wb = b.connect("/ws").await;
    let (fa, fb) = tokio::join!(audio_frames(&mut wa, 10), audio_frames(&mut wb, 10));
    let mut compared = 0;
    for x in fa.iter().filter(|f| f.header.flags == 0) {
        if let Some(y) = fb
            .iter()
            .find(|f| f.header.sequence == x.header.sequence && f.header.flags == 0)
        {
            assert_eq!(x.header.position, y.header.position);
            assert_eq!(x.payload(), y.payload(), "sequence {}", x.header.sequence);
            compared += 1;
        }
    }
    assert!(
        compared >= 5,
        "instances overlapped on only {compared} chunks"
    );
}

/// RFC 6455 section 5.5.1: an endpoint that receives a close frame answers with one. A client that
/// closes must see the server's close (echoing its code), not a dropped TCP connection (1006).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_close_is_answered_with_a_close_frame() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    let server = TestServer::start("closing", 12).await;
    let mut ws = server.connect("/ws").await;
    assert_contiguous(&audio_frames(&mut ws, 2).await);
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "done listening".into(),
    }))
    .await
    .unwrap();
    let answer = tokio::time::timeout(PATIENCE, async {
        loop {
            match ws.next().await {
                // Audio already in flight may arrive before the close.
                Some(Ok(Message::Binary(_) | Message::Text(_) | Message::Ping(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the server answers the close in time");
    match answer {
        Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal),
        other => panic!("expected the server's close frame, got {other:?}"),
    }
    wait_for_metric(
        &server,
        "auralis_ws_disconnections_total{station=\"closing\",reason=\"client_closed\",transport=\"websocket\"}",
        1.0,
    )
    .await;
}
