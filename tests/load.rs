//! `auralis load` against real servers: the report must say what listeners experienced, keep
//! healthy listeners apart from hostile ones, and turn missed thresholds into exit code 99.

mod common;

use std::time::Duration;

use auralis::load::{self, LoadConfig, Slo, SlowMode, Transport};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn config(url: String, clients: usize, seconds: f64) -> LoadConfig {
    LoadConfig {
        ramp: Duration::from_millis(300),
        ..LoadConfig::new(
            url,
            Transport::WebSocket,
            clients,
            Duration::from_secs_f64(seconds),
        )
    }
}

/// PCM listeners of `station`: these tests are about delivery under load, and PCM's fixed
/// 19 KB chunks fill socket buffers the way a slow link does (the Opus test names its codec).
fn for_station(server: &TestServer, station: &str, clients: usize, seconds: f64) -> LoadConfig {
    LoadConfig {
        metrics_url: Some(format!("http://{}/metrics", server.addr)),
        station: Some(station.to_string()),
        ..config(
            server.ws_url(&with_pcm(&format!("/ws?station={station}"))),
            clients,
            seconds,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_listeners_decode_every_chunk_at_a_fraction_of_the_pcm_rate() {
    let server = TestServer::start("load-opus", 63).await;
    let config = LoadConfig {
        decode_fraction: 0.5,
        slos: vec![Slo::parse("decode_errors==0").unwrap()],
        ..for_station(&server, "load-opus", 4, 3.0)
    };
    let config = LoadConfig {
        url: server.ws_url("/ws?station=load-opus&codec=opus"),
        ..config
    };
    let report = load::run(&config).await;
    assert_eq!(report.connected, 4, "{:?}", report.first_errors);
    let h = &report.healthy;
    assert_eq!(h.gaps, 0);
    assert_eq!(h.decoding_clients, 2, "half the clients decode");
    assert_eq!(h.decode_errors, 0);
    assert!(
        h.decoded_chunks >= 2 * 25,
        "{} chunks decoded",
        h.decoded_chunks
    );
    // 128 kbit/s is 1.6 KB per 100 ms chunk, against 19.2 KB of PCM.
    let per_chunk = h.bytes as f64 / h.chunks as f64;
    assert!(
        (1_000.0..4_000.0).contains(&per_chunk),
        "{per_chunk} bytes per chunk"
    );
    assert!(report.passed, "{:?}", report.slo);
    let summary = load::summary(&report);
    assert!(summary.contains("2 clients,"), "{summary}");
    assert!(summary.contains(" 0 decode errors"), "{summary}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_listeners_get_contiguous_audio_and_both_views_are_reported() {
    let server = TestServer::start("load-healthy", 61).await;
    let report = load::run(&for_station(&server, "load-healthy", 6, 3.0)).await;

    assert_eq!(
        (report.connected, report.failed),
        (6, 0),
        "{:?}",
        report.first_errors
    );
    let h = &report.healthy;
    assert_eq!(h.gaps, 0);
    assert_eq!(h.missing_chunks, 0);
    assert_eq!(h.disconnected, 0);
    assert_eq!(h.discontinuities, 0);
    // 3 s after the ramp: at least 25 chunks of 100 ms each, each a whole frame.
    assert!(h.chunks >= 6 * 25, "{} chunks", h.chunks);
    assert_eq!(h.bytes % h.chunks, 0, "every chunk is the same size");
    assert_eq!(h.startup.count, 6, "one startup per client");
    assert_eq!(
        h.clock_round_trip.count, 6,
        "every client estimated its clock offset"
    );
    assert!(h.latency.count > 0 && h.delivery.count > 0);
    // A chunk is rendered before it is sent, so render-to-receipt is never shorter.
    assert!(
        h.latency.p50_ms >= h.delivery.p50_ms,
        "{:?} vs {:?}",
        h.latency,
        h.delivery
    );
    assert!(h.interarrival.count > 0 && h.jitter.count == h.interarrival.count);

    let server_view = report.server.as_ref().expect("server metrics scraped");
    assert!(report.server_error.is_none());
    assert!(
        server_view.chunks_sent >= h.chunks as f64,
        "the server sent {} chunks, clients got {}",
        server_view.chunks_sent,
        h.chunks
    );
    assert_eq!(server_view.forced_disconnections(), 0.0);
    assert!(server_view.jitter_p50_ms.is_some());
    // No thresholds were asked for, so none were evaluated (pass and fail are tested below).
    assert!(report.slo.is_empty(), "{:?}", report.slo);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_stalled_listeners_do_not_disturb_healthy_ones() {
    let server = TestServer::start_with("load-hostile", 62, |c| {
        c.listener_queue_chunks = 2;
        c.send_timeout = Duration::from_millis(500);
        c.tcp_send_buffer_bytes = Some(16 * 1024);
    })
    .await;
    let config = LoadConfig {
        slow_fraction: 0.5,
        slow_mode: SlowMode::Mixed,
        ..for_station(&server, "load-hostile", 12, 6.0)
    };
    let report = load::run(&config).await;

    assert_eq!(report.slow_clients, 6);
    assert_eq!(report.healthy.clients, 6);
    assert_eq!(report.connected, 12, "{:?}", report.first_errors);
    let h = &report.healthy;
    assert_eq!(h.gaps, 0);
    assert_eq!(h.discontinuities, 0, "healthy listeners are never skipped");
    assert_eq!(h.disconnected, 0);
    assert!(h.chunks >= 6 * 50, "{} chunks", h.chunks);

    // The stalled ones stop reading at once: the server gives up on each after its send timeout.
    let server_view = report.server.as_ref().expect("server metrics scraped");
    assert!(
        server_view
            .disconnections
            .get("send_timeout")
            .copied()
            .unwrap_or(0.0)
            >= 3.0,
        "{server_view:?}"
    );
    // The slow readers get fewer chunks than the healthy ones in the same time.
    assert!(
        report.slow.chunks < h.chunks,
        "{} vs {}",
        report.slow.chunks,
        h.chunks
    );
}

/// Serves raw PCM over plain HTTP like an Icecast mount: a burst on connect, then 100 ms of
/// audio every 100 ms. `close_after` ends the stream early.
async fn pcm_server(status: &'static str, close_after: Option<Duration>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = socket.read(&mut request).await;
                let head = format!(
                    "HTTP/1.0 {status}\r\nContent-Type: audio/L16;rate=48000;channels=2\r\n\r\n"
                );
                if socket.write_all(head.as_bytes()).await.is_err() || !status.starts_with("200") {
                    return;
                }
                let chunk = vec![0x11u8; 19_200];
                let started = tokio::time::Instant::now();
                let _ = socket.write_all(&[0x22u8; 65_536]).await;
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                loop {
                    tick.tick().await;
                    if close_after.is_some_and(|d| started.elapsed() >= d)
                        || socket.write_all(&chunk).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_streams_are_timed_per_hundred_milliseconds_of_pcm() {
    let addr = pcm_server("200 OK", None).await;
    let report = load::run(&LoadConfig {
        transport: Transport::Http,
        ..config(format!("http://{addr}/auralis.pcm"), 3, 2.5)
    })
    .await;

    assert_eq!(
        (report.connected, report.failed),
        (3, 0),
        "{:?}",
        report.first_errors
    );
    let h = &report.healthy;
    assert_eq!(h.disconnected, 0);
    // The 64 KiB burst is 3 whole chunks; then one chunk per 100 ms for 2.8 s.
    assert!(h.chunks >= 3 * 20, "{} chunks", h.chunks);
    assert_eq!(h.bytes, h.chunks * 19_200, "only whole chunks are counted");
    assert!(
        h.interarrival.count > 0,
        "steady intervals after the warm-up are timed"
    );
    assert_eq!(h.latency.count, 0, "raw PCM carries no timestamps");
    assert_eq!(h.startup.count, 3);
    assert!(report.server.is_none() && report.server_error.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_dropped_http_streams_are_counted_not_hidden() {
    let refused = pcm_server("404 Not Found", None).await;
    let report = load::run(&LoadConfig {
        transport: Transport::Http,
        ..config(format!("http://{refused}/missing"), 2, 0.5)
    })
    .await;
    assert_eq!((report.connected, report.failed), (0, 2));
    assert!(
        report.first_errors[0].contains("404"),
        "{:?}",
        report.first_errors
    );

    let dropping = pcm_server("200 OK", Some(Duration::from_millis(500))).await;
    let report = load::run(&LoadConfig {
        transport: Transport::Http,
        ..config(format!("http://{dropping}/live"), 2, 2.0)
    })
    .await;
    assert_eq!(report.connected, 2);
    assert_eq!(report.healthy.disconnected, 2, "{:?}", report.first_errors);
    assert!(
        report.first_errors[0].contains("closed"),
        "{:?}",
        report.first_errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thresholds_are_judged_on_the_measured_report() {
    let server = TestServer::start("load-slo", 63).await;
    let slos = [
        "gaps==0",
        "connected>=2",
        "failed==0",
        "connected>2",
        "startup_max<1us",
    ]
    .map(|s| Slo::parse(s).expect("valid"));
    let report = load::run(&LoadConfig {
        slos: slos.to_vec(),
        ..for_station(&server, "load-slo", 2, 1.5)
    })
    .await;
    let outcome = |slo: &str| report.slo.iter().find(|o| o.slo == slo).expect(slo).passed;
    assert!(outcome("gaps==0"));
    assert!(outcome("connected>=2"));
    assert!(outcome("failed==0"));
    assert!(!outcome("connected>2"));
    assert!(
        !outcome("startup_max<1us"),
        "a connection cannot start in under a microsecond"
    );
    assert!(!report.passed);
}

fn auralis() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_auralis"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_99_naming_the_missed_threshold() {
    let server = TestServer::start("load-exit", 64).await;
    let url = server.ws_url("/ws");
    let json = std::env::temp_dir().join(format!("auralis-load-{}.json", std::process::id()));
    let (json_arg, url_arg) = (json.clone(), url.clone());
    let output = tokio::task::spawn_blocking(move || {
        auralis()
            .args([
                "load",
                "--url",
                &url_arg,
                "--station",
                "load-exit",
                "--clients",
                "2",
            ])
            .args([
                "--duration",
                "1s",
                "--slo",
                "gaps==0",
                "--slo",
                "connected>5",
            ])
            .arg("--json")
            .arg(&json_arg)
            .output()
    })
    .await
    .unwrap()
    .expect("auralis runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(99), "{stderr}");
    assert!(
        stderr.contains("thresholds missed: connected>5"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("✓ gaps==0") && stdout.contains("✗ connected>5"),
        "{stdout}"
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    assert_eq!(report["passed"], false);
    assert_eq!(report["healthy"]["gaps"], 0);
    assert_eq!(report["connected"], 2);
}

#[test]
fn bad_thresholds_fail_before_any_connection() {
    // Nothing listens on port 9: a connection attempt would report a connect error instead.
    for (slo, expected) in [
        ("jiter_p95<20ms", "unknown key \"jiter_p95\""),
        ("gaps=0", "expected KEY<OP>VALUE"),
        ("jitter_p95<fast", "\"fast\" is not a number"),
    ] {
        let output = auralis()
            .args([
                "load",
                "--url",
                "ws://127.0.0.1:9/ws",
                "--clients",
                "1",
                "--slo",
                slo,
            ])
            .output()
            .expect("auralis runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{slo}: {stderr}");
        assert!(stderr.contains(expected), "{slo}: {stderr}");
        assert!(
            !stderr.contains("could connect") && !stderr.contains("connect:"),
            "{slo}: no connection was tried: {stderr}"
        );
    }
}
