//! Telemetry that tells the truth: inject a known fault, then check the numbers the server
//! publishes (on `/metrics` and on the live dashboard feed) show exactly that.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Samples above `le` seconds in a histogram: `_count` minus the `le` bucket.
fn above(metrics: &str, histogram: &str, station: &str, le: &str) -> f64 {
    let count = metric_value(
        metrics,
        &format!("{histogram}_count{{station=\"{station}\"}}"),
    )
    .expect("count");
    let bucket = metric_value(
        metrics,
        &format!("{histogram}_bucket{{station=\"{station}\",le=\"{le}\"}}"),
    )
    .expect("bucket");
    count - bucket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_known_send_delay_shows_in_the_jitter_histogram() {
    let server = TestServer::start("jitter-truth", 41).await;
    let mut ws = server.connect("/ws").await;
    let mut frames = audio_frames(&mut ws, 5).await;
    let before = above(
        &server.metrics().await,
        "auralis_chunk_jitter_seconds",
        "jitter-truth",
        "0.05",
    );
    // Hold one chunk back by 80 ms: its interval is 180 ms and the next one 20 ms, so exactly two
    // jitter samples of about 80 ms appear for this listener.
    server.hub().delay_next_release(Duration::from_millis(80));
    frames.extend(audio_frames(&mut ws, 6).await);
    assert_contiguous(&frames);
    let after = above(
        &server.metrics().await,
        "auralis_chunk_jitter_seconds",
        "jitter-truth",
        "0.05",
    );
    assert!(
        after - before >= 2.0,
        "jitter samples above 50 ms: {before} -> {after}"
    );
    let pacer_late = metric_value(
        &server.metrics().await,
        "auralis_pacer_tick_lateness_seconds_sum{station=\"jitter-truth\"}",
    )
    .expect("lateness");
    assert!(pacer_late >= 0.08, "the pacer saw the delay: {pacer_late}");
}

/// Reads Server-Sent Events from `path` until `done` accepts one; returns it.
async fn sse_event(addr: std::net::SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut lines = BufReader::new(stream).lines();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("an event in time")
            .expect("readable")
            .expect("stream open");
        // Chunked transfer: data lines arrive intact, chunk-size lines are skipped.
        if let Some(json) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(json).expect("event JSON");
            if done(&event) {
                return event;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_feed_reports_what_the_server_measured() {
    let server = TestServer::start("live-feed", 42).await;
    let mut ws = server.connect("/ws").await;
    let listener = tokio::spawn(async move {
        loop {
            audio_frames(&mut ws, 10).await;
        }
    });
    let event = sse_event(server.addr, "/api/live", |e| {
        e["stations"][0]["delivery_s"]["count"].as_u64() >= Some(5)
    })
    .await;
    let station = &event["stations"][0];
    assert_eq!(station["name"], "live-feed");
    assert_eq!(station["listeners"], 1);
    assert_eq!(event["listeners"], 1);
    // Ten chunks a second: the synthesis window holds about one interval's worth.
    let synthesis = station["synthesis_s"]["count"].as_u64().unwrap();
    assert!(
        (5..=25).contains(&synthesis),
        "{synthesis} renders in one interval"
    );
    for quantile in ["p50", "p99", "max"] {
        let v = station["synthesis_s"][quantile].as_f64().unwrap();
        assert!(v > 0.0 && v < 0.1, "synthesis {quantile} {v}");
    }
    assert!(station["bytes_sent_total"].as_u64().unwrap() > 19_256 * 5);
    assert!(event["process"]["rss_bytes"].as_u64().unwrap() > 1_000_000);
    assert!(station["ring_capacity_s"].as_f64().unwrap() > 0.0);
    listener.abort();
    // The feed ends with the server: shutdown is not held up by a dashboard viewer.
    let viewer = tokio::spawn(sse_event(server.addr, "/api/live", |_| false));
    tokio::time::sleep(Duration::from_millis(300)).await;
    server
        .shutdown()
        .await
        .expect("clean shutdown despite an open dashboard");
    viewer.abort();
}
