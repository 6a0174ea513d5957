//! The native clients over TLS, through a real TLS terminator (HAProxy) whose certificate a
//! private CA signed: the load harness on `wss://` and on an `https://` Ogg Opus mount (metrics
//! scraped over `https://` too), and the `auralis load` command line trusting only `--ca`.

mod common;

use std::process::Command;
use std::time::Duration;

use auralis::client_tls::ClientTls;
use auralis::load::{self, LoadConfig, LoadReport, Transport};
use common::tls_terminator::TlsTerminator;
use common::*;

fn assert_streamed_and_decoded(report: &LoadReport, what: &str) {
    assert_eq!(report.connected, 2, "{what}: {:?}", report.first_errors);
    let h = &report.healthy;
    assert_eq!(h.gaps, 0, "{what}: gaps");
    assert_eq!(h.decoding_clients, 2, "{what}: every client decodes");
    assert_eq!(h.decode_errors, 0, "{what}: decode errors");
    // 4 s is 40 chunks per client; allow for the connection set-up.
    assert!(
        h.decoded_chunks >= 2 * 30,
        "{what}: {} chunks decoded",
        h.decoded_chunks
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_harness_streams_wss_and_an_https_mount_through_a_tls_terminator() {
    let station = "tls-load";
    let server = TestServer::start(station, 41).await;
    let Some(terminator) = TlsTerminator::start(server.addr) else {
        return;
    };
    let tls = ClientTls::new(Some(&terminator.ca)).expect("the private CA loads");
    let websocket = LoadConfig {
        decode_fraction: 1.0,
        metrics_url: Some(terminator.url("https", "/metrics")),
        station: Some(station.to_string()),
        tls: Some(tls.clone()),
        ..LoadConfig::new(
            terminator.url("wss", &format!("/ws?station={station}&codec=opus")),
            Transport::WebSocket,
            2,
            Duration::from_secs(4),
        )
    };
    let mount = LoadConfig {
        decode_fraction: 1.0,
        tls: Some(tls),
        ..LoadConfig::new(
            terminator.url("https", &format!("/stations/{station}.opus")),
            Transport::Http,
            2,
            Duration::from_secs(4),
        )
    };
    let (websocket, mount) = tokio::join!(load::run(&websocket), load::run(&mount));
    assert_streamed_and_decoded(&websocket, "wss://");
    assert_streamed_and_decoded(&mount, "https:// mount");
    // The server's view came over https:// as well.
    assert_eq!(websocket.server_error, None);
    let view = websocket.server.as_ref().expect("server metrics scraped");
    assert!(view.chunks_sent > 0.0, "{view:?}");
    // Both reached the server as what they are.
    let metrics = server.metrics().await;
    for transport in ["websocket", "http"] {
        let series = format!(
            "auralis_ws_connections_total{{station=\"{station}\",transport=\"{transport}\"}}"
        );
        assert_eq!(metric_value(&metrics, &series), Some(2.0), "{series}");
    }
}

/// `auralis load` as an operator runs it: `--ca` trusted, anything else refused with a message
/// that names the certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_trusts_only_the_ca_it_is_given() {
    let station = "tls-cli";
    let server = TestServer::start(station, 42).await;
    let Some(terminator) = TlsTerminator::start(server.addr) else {
        return;
    };
    let url = terminator.url("wss", "/ws");
    let dir = tempfile::tempdir().expect("temp dir");
    let json = dir.path().join("report.json");
    let run = |extra: Vec<String>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_auralis"));
        command
            .args([
                "load",
                "--url",
                &url,
                "--station",
                station,
                "--codec",
                "opus",
            ])
            .args([
                "--clients",
                "1",
                "--duration",
                "2s",
                "--decode-fraction",
                "1",
            ])
            .args(extra)
            .env_remove("AURALIS_CA");
        async move {
            tokio::task::spawn_blocking(move || command.output().expect("auralis load runs"))
                .await
                .expect("join")
        }
    };
    let trusted = run(vec![
        "--ca".into(),
        terminator.ca.display().to_string(),
        "--json".into(),
        json.display().to_string(),
    ])
    .await;
    assert!(
        trusted.status.success(),
        "{}{}",
        String::from_utf8_lossy(&trusted.stdout),
        String::from_utf8_lossy(&trusted.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report written")).expect("JSON");
    assert_eq!(report["connected"], 1, "{report}");
    assert_eq!(report["healthy"]["gaps"], 0, "{report}");
    assert_eq!(report["healthy"]["decode_errors"], 0, "{report}");
    assert!(
        report["server"]["chunks_sent"].as_f64() > Some(0.0),
        "{report}"
    );

    let output_of = |output: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    let wrong_ca = run(vec![
        "--ca".into(),
        terminator.other_ca.display().to_string(),
    ])
    .await;
    let text = output_of(&wrong_ca);
    assert!(!wrong_ca.status.success(), "{text}");
    assert!(text.contains("invalid peer certificate"), "{text}");
    // The system's roots do not know the private CA either (or there are none to trust).
    let system_roots = run(Vec::new()).await;
    let text = output_of(&system_roots);
    assert!(!system_roots.status.success(), "{text}");
    assert!(text.contains("certificate"), "{text}");
    // --ca on a plain URL is a mistake the command says before connecting.
    let plain = Command::new(env!("CARGO_BIN_EXE_auralis"))
        .args(["load", "--url", &server.ws_url("/ws"), "--ca"])
        .arg(&terminator.ca)
        .output()
        .expect("auralis load runs");
    let text = output_of(&plain);
    assert!(!plain.status.success(), "{text}");
    assert!(
        text.contains("--ca applies to wss:// and https://"),
        "{text}"
    );
}
