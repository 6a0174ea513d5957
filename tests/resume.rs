//! What survives a restart or a dropped connection: the durable control log (changes made before
//! a restart are in effect after it, and the stream equals the offline render of the whole log),
//! its recovery from damage, the state directory's lock, and resuming a listener without a gap
//! (from memory, and across a restart from chunks rendered again), with every refusal outcome.

mod common;

use std::path::Path;
use std::time::Duration;

use auralis::render::{render_pcm, RenderRequest};
use auralis::server::ServerError;
use auralis::state::StateError;
use auralis::stream::protocol::{FLAG_DISCONTINUITY, FLAG_RESUMED};
use auralis::synth::{ControlEntry, Timeline};
use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SAMPLE_RATE: u32 = 48_000;
const CHUNK_FRAMES: usize = 4800;

fn with_state(dir: &Path) -> impl FnOnce(&mut auralis::config::Config) + '_ {
    move |config| config.state_dir = Some(dir.to_path_buf())
}

/// The welcome and the audio frames that follow it, until `n` frames have arrived.
async fn welcome_and_frames(ws: &mut Ws, n: usize) -> (Value, Vec<Value>, Vec<Audio>) {
    let mut audio = Vec::new();
    let welcome = next_text(ws, &mut audio).await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    let mut texts = Vec::new();
    while audio.len() < n {
        match receive(ws).await {
            Received::Audio(a) => audio.push(a),
            Received::Text(t) => texts.push(t),
            Received::Closed(frame) => panic!("closed early: {frame:?}"),
        }
    }
    (welcome, texts, audio)
}

async fn control_log(server: &TestServer, station: &str) -> (u64, String, Vec<ControlEntry>) {
    let (status, body) = server
        .get(&format!("/api/stations/{station}/control"))
        .await;
    assert_eq!(status, 200, "{body}");
    let snapshot: Value = serde_json::from_str(&body).unwrap();
    let log: Vec<ControlEntry> = serde_json::from_value(snapshot["log"].clone()).unwrap();
    (
        snapshot["seed"].as_u64().unwrap(),
        snapshot["epoch"].as_str().unwrap().to_string(),
        log,
    )
}

/// The PCM of `frames` equals the offline render of (seed, log) at their positions.
fn assert_matches_offline_render(seed: u64, log: &[ControlEntry], frames: &[Audio]) {
    let timeline = Timeline::from_log(seed, SAMPLE_RATE, log).expect("the log replays");
    for frame in frames {
        let request = RenderRequest {
            timeline: timeline.clone(),
            chunk_frames: CHUNK_FRAMES,
            start_frame: frame.header.position,
            frames: CHUNK_FRAMES as u64,
        };
        let mut expected = Vec::new();
        render_pcm(&request, |pcm| {
            expected.extend(pcm.iter().flat_map(|s| s.to_le_bytes()));
        });
        assert!(
            expected == frame.payload(),
            "chunk {} differs from the offline render of the log",
            frame.header.sequence
        );
    }
}

async fn rest_control(server: &TestServer, station: &str, body: &str) -> Value {
    let path = format!("/api/stations/{station}/control");
    let (status, _, body) = http_request(server.addr, "POST", &path, &[], body).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn ws_control(ws: &mut Ws, message: Value) -> Value {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
    let mut audio = Vec::new();
    loop {
        let reply = next_text(ws, &mut audio).await;
        if reply["type"] == "control_ack" || reply["type"] == "error" {
            return reply;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_survive_a_restart_and_the_stream_equals_the_offline_render_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let station = "durable";
    let server = TestServer::start_with(station, 31, with_state(dir.path())).await;
    let rest = rest_control(&server, station, r#"{"bpm": 96, "key": "D"}"#).await;
    let mut ws = server.connect(&format!("/ws/{station}")).await;
    let (welcome, _, _) = welcome_and_frames(&mut ws, 1).await;
    let ack = ws_control(
        &mut ws,
        json!({"type": "control", "bpm": 132, "mode": "dorian"}),
    )
    .await;
    assert_eq!(ack["type"], "control_ack", "{ack}");
    let (_, _, before) = control_log(&server, station).await;
    // Both changes are in the log: on their own bar lines, or merged on one (both before it).
    let rest_at = rest["position"].as_u64().unwrap();
    let ws_at = ack["position"].as_u64().unwrap();
    assert!(before.iter().any(|e| e.position == rest_at), "{before:?}");
    let last = before.last().unwrap();
    assert_eq!(last.position, ws_at);
    assert_eq!((last.params.bpm, last.params.key.name()), (132.0, "D"));
    drop(ws);
    let addr = server.addr;
    server.shutdown().await.expect("clean shutdown");

    let restarted =
        TestServer::start_on(rebind(addr).await, station, 31, with_state(dir.path())).await;
    let (seed, epoch, after) = control_log(&restarted, station).await;
    assert_eq!(after, before, "the whole log is back");
    assert_eq!(
        epoch,
        welcome["epoch"].as_str().unwrap(),
        "the epoch is kept"
    );
    let (status, body) = restarted.get("/api/stations").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["stations"][0]["epoch"], epoch);
    assert_eq!(list["stations"][0]["params"]["bpm"], 132.0);

    // Listen until the WebSocket change is audible, and compare everything with the offline
    // render of (seed, the whole log).
    let mut ws = restarted.connect(&format!("/ws/{station}")).await;
    let (welcome, _, mut frames) = welcome_and_frames(&mut ws, 5).await;
    assert_eq!(welcome["epoch"], epoch);
    let last_change = after.last().unwrap().position;
    while frames.last().unwrap().header.position < last_change + CHUNK_FRAMES as u64 {
        frames.extend(audio_frames(&mut ws, 1).await);
    }
    assert_contiguous(&frames);
    let tail = frames.len().saturating_sub(40);
    assert_matches_offline_render(seed, &after, &frames[tail..]);
    let metrics = restarted.metrics().await;
    let appends = metric_value(
        &metrics,
        &format!("auralis_control_log_appends_total{{station=\"{station}\"}}"),
    );
    assert!(appends.is_some(), "append counter exported");
    restarted.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_state_directory_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let first = TestServer::start_with("locked", 2, with_state(dir.path())).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = auralis::config::Config {
        stations: vec![auralis::config::StationConfig {
            name: "locked".into(),
            seed: 2,
            ..Default::default()
        }],
        state_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    };
    let refused = tokio::time::timeout(
        PATIENCE,
        auralis::server::run(listener, config, std::future::pending()),
    )
    .await
    .expect("refuses at once");
    match refused {
        Err(ServerError::State(StateError::Locked { path })) => assert_eq!(path, dir.path()),
        other => panic!("expected a lock refusal, got {other:?}"),
    }
    // The first server is unharmed.
    let mut ws = first.connect("/ws/locked").await;
    let frames = audio_frames(&mut ws, 3).await;
    assert_contiguous(&frames);
    first.shutdown().await.unwrap();
}

/// Writes a log of `station`'s start and two changes (records: header, start, the first change,
/// the second, which lands on the same bar line or the next), by running a server.
async fn logged_station(dir: &Path, station: &str, seed: u64) -> (String, Vec<ControlEntry>) {
    let server = TestServer::start_with(station, seed, with_state(dir)).await;
    rest_control(&server, station, r#"{"bpm": 101}"#).await;
    rest_control(&server, station, r#"{"key": "F"}"#).await;
    let (_, epoch, log) = control_log(&server, station).await;
    server.shutdown().await.unwrap();
    (epoch, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_log_is_repaired_counted_and_the_station_streams() {
    // (damage, recovery outcome)
    let cases = [
        ("torn", "torn_tail"),
        ("corrupt", "corrupt"),
        ("empty", "empty"),
        ("missing_dir", ""),
    ];
    for (damage, outcome) in cases {
        let dir = tempfile::tempdir().unwrap();
        let station = format!("damaged_{damage}");
        let state = dir.path().join("state");
        let (epoch, log) = logged_station(&state, &station, 5).await;
        let file = state.join("stations").join(format!("{station}.log"));
        match damage {
            "torn" => {
                let len = std::fs::metadata(&file).unwrap().len();
                let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
                f.set_len(len - 7).unwrap();
            }
            "corrupt" => {
                // The byte in the middle of the file is inside a record before the last.
                let mut bytes = std::fs::read(&file).unwrap();
                let middle = bytes.len() / 2;
                bytes[middle] ^= 0x55;
                std::fs::write(&file, &bytes).unwrap();
            }
            "empty" => std::fs::write(&file, b"").unwrap(),
            _ => std::fs::remove_dir_all(&state).unwrap(),
        }
        let server = TestServer::start_with(&station, 5, with_state(&state)).await;
        let (_, new_epoch, replayed) = control_log(&server, &station).await;
        assert_eq!(replayed[0], log[0], "{damage}: the station's start");
        match damage {
            "torn" => {
                // The second change's record was cut: the first change is what sounded before it.
                let first = replayed.last().unwrap();
                assert_eq!(replayed.len(), 2, "{replayed:?}");
                assert_eq!(first.params.bpm, 101.0);
                assert_ne!(first.params.key.name(), "F");
                assert_eq!(new_epoch, epoch, "a torn tail keeps the epoch");
            }
            "corrupt" => {
                assert!(
                    replayed.len() < 3 && replayed.len() <= log.len(),
                    "{replayed:?}"
                );
                assert_ne!(
                    new_epoch, epoch,
                    "lost changes may have sounded: a new epoch"
                );
            }
            _ => {
                assert_eq!(replayed.len(), 1, "{damage}: a fresh history");
                assert_ne!(new_epoch, epoch, "{damage}: a new epoch");
            }
        }
        let metrics = server.metrics().await;
        for candidate in [
            "torn_tail",
            "corrupt",
            "empty",
            "unreadable",
            "config_changed",
        ] {
            let series = format!(
                "auralis_control_log_recoveries_total{{station=\"{station}\",outcome=\"{candidate}\"}}"
            );
            let value = metric_value(&metrics, &series).unwrap_or(0.0);
            let expected = if candidate == outcome { 1.0 } else { 0.0 };
            assert_eq!(value, expected, "{damage}: {series}");
        }
        let mut ws = server.connect(&format!("/ws/{station}")).await;
        let frames = audio_frames(&mut ws, 3).await;
        assert_contiguous(&frames);
        assert!(
            frames.iter().any(|f| f.payload().iter().any(|b| *b != 0)),
            "{damage}: audible audio"
        );
        server.shutdown().await.unwrap();
    }
}

fn resume_path(station: &str, from: u64, epoch: &str) -> String {
    format!("/ws/{station}?codec=pcm_s16le&resume_from={from}&epoch={epoch}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_cut_for_half_a_second_resumes_with_nothing_missing_and_the_same_bytes() {
    let station = "cut";
    let server = TestServer::start(station, 9).await;
    let mut steady = server.connect(&format!("/ws/{station}")).await;
    let mut cut = server.connect(&format!("/ws/{station}")).await;
    let (welcome, _, held) = welcome_and_frames(&mut cut, 4).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_string();
    assert_eq!(epoch.len(), 16, "{welcome}");
    let last = held.last().unwrap().header.sequence;
    // The connection drops: the client closes its socket, and is away for half a second.
    drop(cut);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut back = server
        .connect_raw_path(&resume_path(station, last + 1, &epoch))
        .await;
    let (welcome, texts, frames) = welcome_and_frames(&mut back, 12).await;
    assert!(texts.iter().all(|t| t["type"] != "warning"), "{texts:?}");
    let resume = &welcome["resume"];
    assert_eq!(resume["outcome"], "resumed", "{welcome}");
    assert_eq!(resume["from"], last + 1);
    let resumed = resume["chunks"].as_u64().unwrap() as usize;
    assert!(resumed >= 5, "half a second and more was missed: {resumed}");
    assert_eq!(frames[0].header.sequence, last + 1, "nothing missing");
    assert_contiguous(&frames);
    for (i, frame) in frames.iter().enumerate() {
        let flagged = frame.header.flags & FLAG_RESUMED != 0;
        assert_eq!(
            flagged,
            i < resumed,
            "chunk {i}: only the resumed ones are flagged"
        );
    }
    // Byte for byte what the listener that stayed got.
    let mut reference = Vec::new();
    while reference
        .last()
        .is_none_or(|f: &Audio| f.header.sequence < frames.last().unwrap().header.sequence)
    {
        reference.extend(audio_frames(&mut steady, 1).await);
    }
    for frame in &frames {
        let same = reference
            .iter()
            .find(|r| r.header.sequence == frame.header.sequence)
            .expect("the steady listener got it too");
        assert!(
            same.payload() == frame.payload(),
            "chunk {}",
            frame.header.sequence
        );
    }
    let metrics = server.metrics().await;
    let series = |name: &str| metric_value(&metrics, &format!("{name}{{station=\"{station}\"}}"));
    assert_eq!(
        series("auralis_resume_chunks_sent_total"),
        Some(resumed as f64)
    );
    assert_eq!(
        metric_value(
            &metrics,
            &format!("auralis_resumes_total{{station=\"{station}\",outcome=\"resumed\"}}")
        ),
        Some(1.0)
    );
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_resumes_across_a_restart_with_the_bytes_the_old_process_sent() {
    let dir = tempfile::tempdir().unwrap();
    let station = "across";
    let server = TestServer::start_with(station, 12, with_state(dir.path())).await;
    // A gain change too: its glide must render the same in the live, pruned timeline and in the
    // full history the restarted process renders from.
    let ack = rest_control(&server, station, r#"{"bpm": 88, "master_gain": 0.48}"#).await;
    let changed_at = ack["position"].as_u64().unwrap();
    // One listener stays until the server stops: what the old process really sent.
    let mut steady = server.connect(&format!("/ws/{station}")).await;
    let (_, _, mut sent) = welcome_and_frames(&mut steady, 1).await;
    while sent.last().unwrap().header.position < changed_at + 3 * CHUNK_FRAMES as u64 {
        sent.extend(audio_frames(&mut steady, 1).await);
    }
    // The other listens a little, then its connection drops.
    let mut ws = server.connect(&format!("/ws/{station}")).await;
    let (welcome, _, held) = welcome_and_frames(&mut ws, 2).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_string();
    let last = held.last().unwrap().header.sequence;
    drop(ws);
    while sent.last().unwrap().header.sequence < last + 5 {
        sent.extend(audio_frames(&mut steady, 1).await);
    }
    let addr = server.addr;
    server.shutdown().await.unwrap();
    loop {
        match receive(&mut steady).await {
            Received::Audio(a) => sent.push(a),
            Received::Text(_) => {}
            Received::Closed(_) => break,
        }
    }
    let restarted =
        TestServer::start_on(rebind(addr).await, station, 12, with_state(dir.path())).await;
    let mut back = restarted
        .connect_raw_path(&resume_path(station, last + 1, &epoch))
        .await;
    let (welcome, _, frames) = welcome_and_frames(&mut back, 12).await;
    assert_eq!(welcome["resume"]["outcome"], "resumed", "{welcome}");
    assert_eq!(
        frames[0].header.sequence,
        last + 1,
        "nothing missing across the restart"
    );
    assert_contiguous(&frames);
    // Chunks the old process sent and the new one rendered again are the same bytes.
    let mut compared = 0;
    for frame in &frames {
        if let Some(old) = sent
            .iter()
            .find(|s| s.header.sequence == frame.header.sequence)
        {
            assert!(
                old.payload() == frame.payload(),
                "chunk {} differs from what the old process sent",
                frame.header.sequence
            );
            compared += 1;
        }
    }
    assert!(compared >= 5, "{compared} chunks compared");
    let (seed, _, log) = control_log(&restarted, station).await;
    assert_eq!(log.last().unwrap().params.master_gain, 0.48);
    assert_matches_offline_render(seed, &log, &frames);
    restarted.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resumes_outside_the_window_from_the_future_with_another_epoch_or_in_a_flood_get_the_live_edge(
) {
    let station = "refusals";
    let server = TestServer::start_with(station, 4, |config| {
        config.resume_window_ms = 1000;
        config.max_resumes_per_second = 1;
    })
    .await;
    let mut steady = server.connect(&format!("/ws/{station}")).await;
    let (welcome, _, first) = welcome_and_frames(&mut steady, 1).await;
    let epoch = welcome["epoch"].as_str().unwrap().to_string();
    let live = first[0].header.sequence;
    let window = welcome["resume_window_chunks"].as_u64().unwrap();
    assert_eq!(window, 10);

    let attempt = |path: String| {
        let server = &server;
        async move {
            let mut ws = server.connect_raw_path(&path).await;
            let (welcome, texts, frames) = welcome_and_frames(&mut ws, 1).await;
            (welcome, texts, frames)
        }
    };
    let cases = [
        (
            resume_path(station, live.saturating_sub(window + 20), &epoch),
            "outside_window",
        ),
        (resume_path(station, live + 1000, &epoch), "future"),
        (
            resume_path(station, live, "0123456789abcdef"),
            "epoch_changed",
        ),
        (
            format!("/ws/{station}?codec=pcm_s16le&resume_from={live}"),
            "epoch_changed",
        ),
    ];
    for (path, outcome) in cases {
        let (welcome, texts, frames) = attempt(path).await;
        assert_eq!(welcome["resume"]["outcome"], outcome, "{welcome}");
        assert_eq!(welcome["resume"]["chunks"], 0);
        let warning = texts
            .iter()
            .find(|t| t["type"] == "warning")
            .unwrap_or_else(|| panic!("{outcome}: a warning, got {texts:?}"));
        assert_eq!(warning["code"], format!("resume_{outcome}"));
        assert!(
            frames[0].header.flags & FLAG_DISCONTINUITY != 0,
            "{outcome}: marked as a skip"
        );
        assert_eq!(frames[0].header.flags & FLAG_RESUMED, 0);
    }
    // A flood: the station takes five at once at one per second; the rest get the live edge.
    let mut outcomes = Vec::new();
    for _ in 0..12 {
        let latest = server
            .hub()
            .stats
            .last_sequence
            .load(std::sync::atomic::Ordering::Relaxed);
        let (welcome, _, _) = attempt(resume_path(station, latest, &epoch)).await;
        outcomes.push(welcome["resume"]["outcome"].as_str().unwrap().to_string());
    }
    let limited = outcomes.iter().filter(|o| *o == "rate_limited").count();
    assert!(limited >= 1, "{outcomes:?}");
    assert!(
        outcomes.iter().filter(|o| *o == "resumed").count() >= 5,
        "{outcomes:?}"
    );
    // A malformed resume is a clear 400 before the upgrade.
    let refused =
        tokio_tungstenite::connect_async(server.ws_url(&format!("/ws/{station}?resume_from=soon")))
            .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
            let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default());
            assert!(body.contains("invalid_resume"), "{body}");
        }
        other => panic!("expected a 400 refusal, got {other:?}"),
    }
    // The steady listener saw no gap through all of it.
    let frames = audio_frames(&mut steady, 5).await;
    let mut all = first;
    all.extend(frames);
    assert_contiguous(&all);
    let metrics = server.metrics().await;
    let outcome = |o: &str| {
        metric_value(
            &metrics,
            &format!("auralis_resumes_total{{station=\"{station}\",outcome=\"{o}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert_eq!(outcome("outside_window"), 1.0);
    assert_eq!(outcome("future"), 1.0);
    assert_eq!(outcome("epoch_changed"), 2.0);
    assert_eq!(outcome("rate_limited"), limited as f64);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_harness_reconnects_and_resumes_every_listener_across_a_restart() {
    use auralis::load::{self, LoadConfig, Transport};
    let dir = tempfile::tempdir().unwrap();
    let station = "harness_restart";
    let server = TestServer::start_with(station, 21, with_state(dir.path())).await;
    let addr = server.addr;
    let config = LoadConfig {
        reconnect: true,
        ..LoadConfig::new(
            server.ws_url(&format!("/ws/{station}?codec=pcm_s16le")),
            Transport::WebSocket,
            8,
            Duration::from_secs(6),
        )
    };
    let run = tokio::spawn(async move { load::run(&config).await });
    // Every listener is streaming; then the server restarts under them.
    wait_for_metric(
        &server,
        &format!("auralis_ws_connections{{station=\"{station}\",transport=\"websocket\"}}"),
        8.0,
    )
    .await;
    server.shutdown().await.unwrap();
    let restarted =
        TestServer::start_on(rebind(addr).await, station, 21, with_state(dir.path())).await;
    let report = run.await.unwrap();
    let h = &report.healthy;
    assert_eq!(report.connected, 8, "{:?}", report.first_errors);
    assert_eq!(h.disconnected, 0, "{:?}", report.first_errors);
    assert_eq!(h.reconnects, 8, "every listener lost its connection once");
    assert_eq!(h.resumes.get("resumed"), Some(&8), "{:?}", h.resumes);
    assert_eq!((h.gaps, h.missing_chunks), (0, 0), "nothing missing");
    assert!(h.resumed_chunks >= 8, "{}", h.resumed_chunks);
    assert_eq!(h.reconnect_gap.count, 8);
    restarted.shutdown().await.unwrap();
}
