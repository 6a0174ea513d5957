//! Faults the server survives: a panicking synthesis engine, and SIGTERM while listeners stream.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use auralis::stream::protocol::FLAG_UNDERRUN_FILL;
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_engine_is_restarted_and_listeners_stay_connected() {
    let server = TestServer::start("crashy", 50).await;
    let mut listener = server.connect("/ws").await;
    let mut frames = audio_frames(&mut listener, 3).await;
    let injected_at = frames.len();
    // Eight renders in a row panic: with a chunk period's pause after each, the ring runs dry.
    server.synthesis().inject_panics(8);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        frames.extend(audio_frames(&mut listener, 1).await);
        let recovered = frames
            .iter()
            .rev()
            .take(3)
            .all(|f| f.header.flags & FLAG_UNDERRUN_FILL == 0);
        let filled = frames[injected_at..]
            .iter()
            .any(|f| f.header.flags & FLAG_UNDERRUN_FILL != 0);
        if filled && recovered {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the station did not come back"
        );
    }
    // Sequence numbers and positions ran on through the outage: silence, not a gap.
    assert_contiguous(&frames);
    let fills = frames
        .iter()
        .filter(|f| f.header.flags & FLAG_UNDERRUN_FILL != 0)
        .count();
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "auralis_synthesis_restarts_total{station=\"crashy\"}"
        ),
        Some(8.0)
    );
    let underruns = metric_value(
        &metrics,
        "auralis_ring_buffer_underruns_total{station=\"crashy\"}",
    )
    .unwrap();
    assert!(
        underruns >= fills as f64,
        "{underruns} underruns counted, {fills} fills heard"
    );
    // The audio after the restart is the music the score says, not something else.
    let last = frames.last().unwrap();
    let request = auralis::render::RenderRequest {
        timeline: auralis::synth::Timeline::new(
            50,
            48_000,
            auralis::synth::MusicParams::from_seed(50),
        ),
        chunk_frames: 4800,
        start_frame: last.header.position,
        frames: 4800,
    };
    let mut pcm = Vec::new();
    auralis::render::render_pcm(&request, |block| pcm.extend_from_slice(block));
    let expected: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    assert_eq!(last.payload(), &expected[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_listeners_with_1001_and_exits_cleanly() {
    // Port 0: the server binds a free port itself and says which in its start-up line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_auralis"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let announced = announced_address(&mut child, |line| {
        let rest = line.split("auralis listening: ws://").nth(1)?;
        Some(rest.split("/ws").next()?.to_string())
    });
    let Some(addr) = announced else {
        let _ = child.kill();
        panic!("the server did not report its address");
    };
    let url = format!("ws://{addr}/ws");
    let mut listeners = Vec::new();
    for _ in 0..3 {
        let (ws, _) = tokio_tungstenite::connect_async(&url)
            .await
            .expect("the server accepts listeners once it reported its address");
        listeners.push(ws);
    }
    for ws in &mut listeners {
        assert_contiguous(&audio_frames(ws, 2).await);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    for ws in &mut listeners {
        let close = close_frame(ws).await;
        assert_eq!(u16::from(close.code), 1001);
    }
    let deadline = std::time::Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}");
}
