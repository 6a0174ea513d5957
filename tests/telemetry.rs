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
    let mut frames = audio_frames(&mut ws, 3).await;
    let metrics = server.metrics().await;
    let late_ticks_before = above(
        &metrics,
        "auralis_pacer_tick_lateness_seconds",
        "jitter-truth",
        "0.05",
    );
    let jitter_before = above(
        &metrics,
        "auralis_chunk_jitter_seconds",
        "jitter-truth",
        "0.05",
    );
    let lateness_before = metric_value(
        &metrics,
        "auralis_pacer_tick_lateness_seconds_sum{station=\"jitter-truth\"}",
    )
    .expect("lateness sum");
    // Hold one chunk back by 80 ms: its interval is 180 ms and the next one 20 ms (the pacer's
    // deadlines are absolute), so two jitter samples of about 80 ms appear for this listener, and
    // one pacer tick is late by about 80 ms.
    server.hub().delay_next_release(Duration::from_millis(80));
    frames.extend(audio_frames(&mut ws, 6).await);
    assert_contiguous(&frames);
    // The session's samples reach the histogram at its next flush (at most a second later):
    // leave and the last ones are flushed too.
    drop(ws);
    wait_for_metric(
        &server,
        "auralis_ws_connections{station=\"jitter-truth\",transport=\"websocket\"}",
        0.0,
    )
    .await;
    let metrics = server.metrics().await;
    // The two samples of about 80 ms are there. Scheduling noise on a busy machine may move one
    // across the 100 ms bucket bound, so the check is "above 50 ms" and "not above 250 ms": a
    // sample beyond that would mean the delay was counted wrongly (or twice), not noise.
    let jitter_over_50 = above(
        &metrics,
        "auralis_chunk_jitter_seconds",
        "jitter-truth",
        "0.05",
    ) - jitter_before;
    let jitter_over_250 = above(
        &metrics,
        "auralis_chunk_jitter_seconds",
        "jitter-truth",
        "0.25",
    );
    assert!(
        jitter_over_50 >= 2.0,
        "jitter samples above 50 ms: {jitter_over_50}"
    );
    assert_eq!(jitter_over_250, 0.0, "jitter samples above 250 ms");
    // The pacer saw the late tick; its lateness sum grew by about the delay, not by the delay
    // once per later tick (absolute deadlines: no drift; the pacer's unit test checks the times).
    let late_ticks = above(
        &metrics,
        "auralis_pacer_tick_lateness_seconds",
        "jitter-truth",
        "0.05",
    ) - late_ticks_before;
    assert!(late_ticks >= 1.0, "no late tick recorded");
    let lateness = metric_value(
        &metrics,
        "auralis_pacer_tick_lateness_seconds_sum{station=\"jitter-truth\"}",
    )
    .expect("lateness sum")
        - lateness_before;
    assert!(
        (0.08..0.5).contains(&lateness),
        "lateness added: {lateness} s"
    );
}

/// A Server-Sent Events stream, read event by event.
struct Sse {
    lines: tokio::io::Lines<BufReader<tokio::net::TcpStream>>,
}

impl Sse {
    async fn open(addr: std::net::SocketAddr, path: &str) -> Self {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        Self {
            lines: BufReader::new(stream).lines(),
        }
    }

    /// The next event, or `None` once the server ended the stream.
    async fn next_event(&mut self) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let line = tokio::time::timeout_at(deadline, self.lines.next_line())
                .await
                .expect("an event (or the end of the stream) in time")
                .ok()??;
            // Chunked transfer: data lines arrive intact, chunk-size lines are skipped.
            if let Some(json) = line.strip_prefix("data: ") {
                return Some(serde_json::from_str(json).expect("event JSON"));
            }
        }
    }
}

/// Reads Server-Sent Events from `path` until `done` accepts one; returns it.
async fn sse_event(addr: std::net::SocketAddr, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut events = Sse::open(addr, path).await;
    loop {
        let event = events.next_event().await.expect("the stream stays open");
        if done(&event) {
            return event;
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
    // The feed ends with the server: shutdown is not held up by a dashboard viewer. The viewer
    // has its first event (so it is connected and streaming) before the shutdown starts.
    let mut viewer = Sse::open(server.addr, "/api/live").await;
    assert!(
        viewer.next_event().await.is_some(),
        "the viewer is streaming"
    );
    server
        .shutdown()
        .await
        .expect("clean shutdown despite an open dashboard");
    let mut after = 0;
    while viewer.next_event().await.is_some() {
        after += 1;
        assert!(after <= 2, "the live feed kept going after shutdown");
    }
}
