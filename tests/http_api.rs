//! The HTTP surface: health, readiness, status, the web client and `/metrics`.

mod common;

use auralis::telemetry::metrics as names;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_status() {
    let server = TestServer::start("status", 31).await;
    assert_eq!(server.get("/healthz").await, (200, "ok\n".to_string()));
    let (code, body) = server.get("/readyz").await;
    assert_eq!(code, 200, "{body}");
    let mut ws = server.connect("/ws").await;
    audio_frames(&mut ws, 3).await;
    let (code, body) = server.get("/api/status").await;
    assert_eq!(code, 200);
    let status: auralis::http::StatusReport = serde_json::from_str(&body).unwrap();
    assert_eq!(status.listeners, 1);
    assert_eq!(status.sample_rate, 48_000);
    let station = &status.stations[0];
    assert_eq!(station.name, "status");
    assert_eq!(station.seed, 31);
    assert_eq!(station.backend, "cpu");
    assert!(station.live);
    assert!(station.chunks_published >= 3);
    assert_eq!(station.position % 4800, 0);
    assert!((0.0..=station.ring_capacity_seconds).contains(&station.ring_depth_seconds));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_web_client_and_json_404s() {
    let server = TestServer::start("web", 32).await;
    let (code, body) = server.get("/").await;
    assert_eq!(code, 200);
    assert!(body.contains("<html") || body.contains("<!doctype") || body.contains("<!DOCTYPE"));
    assert!(body.contains("player.js"));
    let (code, body) = server.get("/player.js").await;
    assert_eq!(code, 200);
    assert!(body.contains("WebSocket"));
    let (code, body) = server.get("/no/such/thing").await;
    assert_eq!(code, 404);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_every_stage_with_help_text() {
    let server = TestServer::start("metrics", 33).await;
    let mut ws = server.connect("/ws").await;
    // A session adds its figures every `FLUSH_CHUNKS` chunks: two more than that have arrived
    // once the first flush is certainly done.
    audio_frames(&mut ws, auralis::stream::tally::FLUSH_CHUNKS + 2).await;
    let text = server.metrics().await;
    for name in names::ALL {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} has no HELP line"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with(name) && !l.starts_with('#')),
            "{name} has no samples"
        );
    }
    // Histograms are real histograms with explicit buckets, and they saw this listener's chunks.
    for histogram in [
        names::SYNTHESIS_DURATION,
        names::CHUNK_DELIVERY,
        names::CHUNK_JITTER,
        names::STARTUP,
    ] {
        assert!(
            text.contains(&format!("# TYPE {histogram} histogram")),
            "{histogram}"
        );
        assert!(
            text.contains(&format!("{histogram}_bucket{{")),
            "{histogram}"
        );
    }
    let sent = metric_value(&text, "auralis_ws_chunks_sent_total{station=\"metrics\"}").unwrap();
    assert!(
        sent >= auralis::stream::tally::FLUSH_CHUNKS as f64,
        "chunks sent {sent}"
    );
    let bytes = metric_value(&text, "auralis_ws_bytes_sent_total{station=\"metrics\"}").unwrap();
    assert!(bytes >= sent * 19_256.0, "bytes {bytes}");
    assert_eq!(
        metric_value(
            &text,
            "auralis_ws_connections{station=\"metrics\",transport=\"websocket\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric_value(&text, "auralis_startup_seconds_count{station=\"metrics\"}"),
        Some(1.0)
    );
    // No per-client labels anywhere: only station, backend, reason, result, field, codec,
    // outcome, transport and version.
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('{'))
    {
        let labels = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        for pair in labels.split("\",").filter(|p| !p.is_empty()) {
            let key = pair.split('=').next().unwrap();
            assert!(
                [
                    "station",
                    "backend",
                    "reason",
                    "result",
                    "field",
                    "codec",
                    "outcome",
                    "transport",
                    "version",
                    "le"
                ]
                .contains(&key),
                "unexpected label {key} in {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_switched_off_and_streaming_goes_on() {
    let server = TestServer::start_with("no-metrics", 5, |c| c.metrics_enabled = false).await;
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 404);
    assert!(body.contains("metrics_disabled"), "{body}");
    let mut ws = server.connect("/ws").await;
    let frames = audio_frames(&mut ws, 3).await;
    assert_contiguous(&frames);
}

/// Polls `/readyz` until it answers `want`; returns the body.
async fn wait_for_readiness(server: &TestServer, want: u16) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (code, body) = server.get("/readyz").await;
        if code == want {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {code}: {body}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Readiness follows the time of the last release: a pacer that stops releasing (here held back
/// for 3 s inside its loop, as a hung or dead one would be) takes the station out of rotation,
/// and it comes back once releases resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_while_the_pacer_releases_nothing() {
    let server = TestServer::start("stalled-pacer", 33).await;
    wait_for_readiness(&server, 200).await;
    server
        .hub()
        .delay_next_release(std::time::Duration::from_secs(3));
    let body = wait_for_readiness(&server, 503).await;
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["waiting_for"], serde_json::json!(["stalled-pacer"]));
    wait_for_readiness(&server, 200).await;
}
