//! Live music control end to end: WebSocket and REST, access rules, rate limits, and the audio
//! listeners actually receive around a change.

mod common;

use auralis::control::ControlSnapshot;
use auralis::render::{render_pcm, RenderRequest};
use auralis::stream::protocol::FLAG_UNDERRUN_FILL;
use auralis::synth::Timeline;
use common::*;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SR: u32 = 48_000;
const CHUNK: usize = 4800;

async fn send(ws: &mut Ws, message: Value) {
    ws.send(Message::text(message.to_string()))
        .await
        .expect("send");
}

/// Sends a control message and returns the server's answer (ack or error).
async fn control(ws: &mut Ws, message: Value) -> Value {
    send(ws, message).await;
    let mut ignored = Vec::new();
    loop {
        let reply = next_text(ws, &mut ignored).await;
        if reply["type"] != "welcome" {
            return reply;
        }
    }
}

async fn snapshot(server: &TestServer, station: &str) -> ControlSnapshot {
    let (status, body) = server
        .get(&format!("/api/stations/{station}/control"))
        .await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("snapshot JSON")
}

/// `auralis_control_requests_total` of a station and result.
async fn control_requests(server: &TestServer, station: &str, result: &str) -> f64 {
    let series =
        format!(r#"auralis_control_requests_total{{station="{station}",result="{result}"}}"#);
    metric_value(&server.metrics().await, &series).expect("series present")
}

/// The PCM bytes the timeline renders for the chunk at `position`.
fn expected_chunk(timeline: &Timeline, position: u64) -> Vec<u8> {
    let request = RenderRequest {
        timeline: timeline.clone(),
        chunk_frames: CHUNK,
        start_frame: position,
        frames: CHUNK as u64,
    };
    let mut pcm = Vec::new();
    render_pcm(&request, |block| pcm.extend_from_slice(block));
    pcm.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_lands_on_a_bar_line_and_listeners_hear_exactly_the_replayed_log() {
    let seed = 77;
    let server = TestServer::start("ctl-replay", seed).await;
    let mut listener = server.connect("/ws/ctl-replay").await;
    let mut received = audio_frames(&mut listener, 2).await;
    let mut controller = server.connect("/ws/ctl-replay").await;
    let ack = control(
        &mut controller,
        json!({"type": "control", "id": 7, "bpm": 170, "key": "E", "mode": "dorian",
               "layers": {"hats": false}}),
    )
    .await;
    assert_eq!(ack["type"], "control_ack", "{ack}");
    assert_eq!(ack["id"], 7);
    assert_eq!(ack["params"]["bpm"], 170.0);
    assert_eq!(ack["params"]["key"], "E");
    let position = ack["position"].as_u64().expect("position");
    assert!(
        position > received[0].header.position,
        "a change never lands in audio already sent"
    );
    assert_eq!(ack["effective_unix_ms"], position * 1000 / SR as u64);

    // Listen until a second past the change.
    while received.last().expect("frames").header.position < position + SR as u64 {
        received.extend(audio_frames(&mut listener, 1).await);
    }
    assert_contiguous(&received);

    let snapshot = snapshot(&server, "ctl-replay").await;
    assert_eq!(snapshot.seed, seed);
    assert_eq!(snapshot.log.len(), 2);
    assert_eq!(snapshot.log[1].position, position);
    assert_eq!(snapshot.log[1].bar, ack["bar"].as_u64().unwrap());
    assert_eq!(snapshot.params.bpm, 170.0);

    // Every chunk the listener got is the offline render of (seed, control log, position).
    let replay = Timeline::from_log(seed, SR, &snapshot.log).expect("log replays");
    let unchanged = Timeline::from_log(seed, SR, &snapshot.log[..1]).expect("initial entry");
    let (mut before, mut after) = (0, 0);
    for frame in received
        .iter()
        .filter(|f| f.header.flags & FLAG_UNDERRUN_FILL == 0)
    {
        let at = frame.header.position;
        assert_eq!(
            frame.payload(),
            &expected_chunk(&replay, at)[..],
            "chunk at {at}"
        );
        if at + CHUNK as u64 <= position {
            before += 1;
        } else if at >= position {
            after += 1;
            assert_ne!(
                frame.payload(),
                &expected_chunk(&unchanged, at)[..],
                "the change is audible at {at}"
            );
        }
    }
    assert!(
        before >= 1 && after >= 5,
        "{before} chunks before, {after} after"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_changes_name_the_field_and_change_nothing() {
    let server = TestServer::start("ctl-invalid", 5).await;
    let mut ws = server.connect("/ws/ctl-invalid").await;
    let before = snapshot(&server, "ctl-invalid").await;
    for (message, field) in [
        (json!({"type": "control", "bpm": 500}), "bpm"),
        (
            json!({"type": "control", "bpm": 120, "cowbell": true}),
            "cowbell",
        ),
        (
            json!({"type": "control", "layers": {"kicks": "off"}}),
            "layers.kicks",
        ),
        (json!({"type": "control", "preset": "disco"}), "preset"),
        (json!({"type": "control", "id": 3}), "params"),
    ] {
        let reply = control(&mut ws, message.clone()).await;
        assert_eq!(reply["type"], "error", "{message}: {reply}");
        assert_eq!(reply["code"], "invalid_control", "{reply}");
        assert_eq!(reply["field"], field, "{reply}");
    }
    let after = snapshot(&server, "ctl-invalid").await;
    assert_eq!(after.params, before.params, "nothing half-applied");
    assert_eq!(after.log.len(), 1);
    // The connection is still a working listener.
    let frames = audio_frames(&mut ws, 3).await;
    assert_contiguous(&frames);
    assert_eq!(
        control_requests(&server, "ctl-invalid", "invalid").await,
        5.0
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_token_is_required_over_websocket_and_rest() {
    let server = TestServer::start_with("ctl-token", 6, |c| {
        c.control_token = Some("s3cret-token".into());
    })
    .await;
    let mut ws = server.connect("/ws/ctl-token").await;
    for message in [
        json!({"type": "control", "bpm": 100}),
        json!({"type": "control", "bpm": 100, "token": "wrong"}),
    ] {
        let reply = control(&mut ws, message).await;
        assert_eq!(reply["code"], "unauthorized", "{reply}");
    }
    let ok = control(
        &mut ws,
        json!({"type": "control", "bpm": 100, "token": "s3cret-token"}),
    )
    .await;
    assert_eq!(ok["type"], "control_ack", "{ok}");

    let path = "/api/stations/ctl-token/control";
    let (status, head, body) = http_request(server.addr, "POST", path, &[], r#"{"bpm": 90}"#).await;
    assert_eq!(status, 401, "{body}");
    assert!(head
        .to_ascii_lowercase()
        .contains("www-authenticate: bearer"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "unauthorized"
    );
    let (status, _, body) = http_request(
        server.addr,
        "POST",
        path,
        &[("Authorization", "Bearer s3cret-token")],
        r#"{"bpm": 90}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["params"]["bpm"], 90.0);
    assert_eq!(
        control_requests(&server, "ctl-token", "unauthorized").await,
        3.0
    );
    assert_eq!(control_requests(&server, "ctl-token", "applied").await, 2.0);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_is_rate_limited_per_connection_and_listening_goes_on() {
    let server = TestServer::start("ctl-rate", 8).await;
    let mut listener = server.connect("/ws/ctl-rate").await;
    let mut noisy = server.connect("/ws/ctl-rate").await;
    let (mut acks, mut limited) = (0, 0);
    let started = std::time::Instant::now();
    for i in 0..12 {
        let reply = control(
            &mut noisy,
            json!({"type": "control", "intensity": i as f64 / 12.0}),
        )
        .await;
        match reply["type"].as_str() {
            Some("control_ack") => acks += 1,
            Some("error") => {
                assert_eq!(reply["code"], "rate_limited", "{reply}");
                limited += 1;
            }
            _ => panic!("unexpected reply {reply}"),
        }
    }
    // A burst of five, plus whatever trickled in (two per second) while the burst was served.
    let refilled = (2.0 * started.elapsed().as_secs_f64()).floor() as usize;
    assert!(
        acks >= 5 && acks <= 5 + refilled,
        "{acks} accepted in {:?}",
        started.elapsed()
    );
    assert!(limited >= 1, "twelve at once must hit the limit");
    assert_eq!(acks + limited, 12);
    // Another connection has its own budget.
    let mut other = server.connect("/ws/ctl-rate").await;
    let reply = control(&mut other, json!({"type": "control", "intensity": 0.5})).await;
    assert_eq!(reply["type"], "control_ack", "{reply}");
    // The listener never noticed.
    let frames = audio_frames(&mut listener, 10).await;
    assert_contiguous(&frames);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stations_are_listed_and_controlled_over_rest() {
    let server = TestServer::start_with("ctl-rest", 9, |c| {
        c.stations.push("late=10:night".parse().unwrap());
    })
    .await;
    let (status, body) = server.get("/api/stations").await;
    assert_eq!(status, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(list["control_token_required"], false);
    assert_eq!(
        list["presets"],
        json!(["ambient", "focus", "pulse", "night"])
    );
    let late = &list["stations"][1];
    assert_eq!(late["name"], "late");
    assert_eq!(late["preset"], "night");
    assert_eq!(late["params"]["mode"], "minor");
    assert_eq!(late["stream"], "/ws/late");

    let path = "/api/stations/ctl-rest/control";
    let (status, _, body) = http_request(server.addr, "POST", path, &[], "{not json").await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "malformed_json"
    );
    let (status, _, body) =
        http_request(server.addr, "POST", path, &[], r#"{"master_gain": 2}"#).await;
    assert_eq!(status, 400);
    let error: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["error"]["field"], "master_gain", "{body}");

    let (status, _, body) =
        http_request(server.addr, "POST", path, &[], r#"{"preset": "pulse"}"#).await;
    assert_eq!(status, 200, "{body}");
    let ack: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ack["params"]["bpm"], 120.0);
    let snapshot = snapshot(&server, "ctl-rest").await;
    assert_eq!(snapshot.params.bpm, 120.0);
    assert_eq!(snapshot.log.len(), 2);
    assert_eq!(
        snapshot.effective_position,
        ack["position"].as_u64().unwrap()
    );

    let (status, _, _) =
        http_request(server.addr, "POST", "/api/stations/nope/control", &[], "{}").await;
    assert_eq!(status, 404);
    server.shutdown().await.expect("clean shutdown");
}

/// A change that timed out is answered `unavailable` and never applied later: the synthesis
/// thread refuses a request it sees after the request's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_that_timed_out_is_never_applied_later() {
    let server = TestServer::start("ctl-expired", 6).await;
    let mut ws = server.connect("/ws/ctl-expired").await;
    let before = snapshot(&server, "ctl-expired").await;
    server.synthesis().hold_controls(true);
    let reply = control(&mut ws, json!({"type": "control", "bpm": 151})).await;
    assert_eq!(reply["type"], "error", "{reply}");
    assert_eq!(reply["code"], "unavailable", "{reply}");
    // The thread takes requests again: the expired one first (the queue is in order), then this.
    server.synthesis().hold_controls(false);
    let reply = control(&mut ws, json!({"type": "control", "bpm": 93})).await;
    assert_eq!(reply["type"], "control_ack", "{reply}");
    let after = snapshot(&server, "ctl-expired").await;
    assert_eq!(after.params.bpm, 93.0);
    assert!(
        after.log.iter().all(|entry| entry.params.bpm != 151.0),
        "the timed-out change reached the log: {:?}",
        after.log
    );
    assert_eq!(after.log.len(), before.log.len() + 1);
    assert_eq!(
        control_requests(&server, "ctl-expired", "unavailable").await,
        1.0
    );
    assert_eq!(
        control_requests(&server, "ctl-expired", "applied").await,
        1.0
    );
    server.shutdown().await.expect("clean shutdown");
}
