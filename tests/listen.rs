//! `auralis listen` through real ALSA: cpal plays into an ALSA `file` plugin (which writes every
//! sample it is given to a file) in front of a JACK dummy sink (which consumes in real time, as a
//! sound card would). The captured audio must be exactly what the server sent.
#![cfg(feature = "playback")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use auralis::stream::protocol::FrameHeader;
use common::tls_terminator::TlsTerminator;
use common::*;
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// JACK servers started side by side from one process do not all come up: one test at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A JACK server on the dummy driver plus an ALSA configuration that records cpal's output.
struct PacedAlsa {
    dir: PathBuf,
    jack: Child,
    server_name: String,
}

impl PacedAlsa {
    fn start(tag: &str) -> Option<Self> {
        let jackd = required_tool(find_on_path(&["jackd"]), "jackd", "apt-get install jackd2")?;
        let dir = std::env::temp_dir().join(format!("auralis-listen-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server_name = format!("auralis-{tag}-{}", std::process::id());
        // A JACK server can fail to come up when another one is just shutting down: retry.
        let mut jack = None;
        for attempt in 1..=3 {
            let log = std::fs::File::create(dir.join(format!("jackd-{attempt}.log"))).unwrap();
            let mut child = Command::new(&jackd)
                .args([
                    "--no-realtime",
                    "-n",
                    &server_name,
                    "-d",
                    "dummy",
                    "-r",
                    "48000",
                    "-p",
                    "960",
                ])
                .env("JACK_NO_AUDIO_RESERVATION", "1")
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("jackd starts");
            let waited = Command::new("jack_wait")
                .args(["-w", "-t", "10", "-s", &server_name])
                .output()
                .expect("jack_wait runs");
            if waited.status.success() {
                jack = Some(child);
                break;
            }
            stop(&mut child);
            std::thread::sleep(Duration::from_millis(500));
        }
        let Some(jack) = jack else {
            let logs: String = (1..=3)
                .filter_map(|a| std::fs::read_to_string(dir.join(format!("jackd-{a}.log"))).ok())
                .collect();
            panic!("JACK server did not come up:\n{logs}");
        };
        let config = format!(
            r#"pcm.!default {{ type plug slave.pcm "capture" }}
pcm.capture {{ type file slave.pcm "paced" file "{}" format "raw" }}
pcm.paced {{ type jack playback_ports {{ 0 system:playback_1 1 system:playback_2 }} }}
"#,
            dir.join("capture.raw").display()
        );
        std::fs::write(dir.join("asoundrc"), config).unwrap();
        Some(Self {
            dir,
            jack,
            server_name,
        })
    }

    fn listen(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_auralis"));
        command
            .arg("listen")
            .env(
                "ALSA_CONFIG_PATH",
                format!(
                    "/usr/share/alsa/alsa.conf:{}",
                    self.dir.join("asoundrc").display()
                ),
            )
            .env("JACK_DEFAULT_SERVER", &self.server_name)
            .env("JACK_NO_START_SERVER", "1");
        command
    }

    /// The captured samples. JACK carries floats; 16-bit audio passed through unchanged comes
    /// back as exact multiples of 1/32768.
    fn captured(&self) -> Vec<i16> {
        let bytes = std::fs::read(self.dir.join("capture.raw")).expect("ALSA wrote the capture");
        bytes
            .chunks_exact(4)
            .map(|b| {
                let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * 32768.0;
                assert_eq!(v, v.round(), "not a 16-bit sample: resampled or scaled");
                v as i16
            })
            .collect()
    }
}

/// SIGTERM, so JACK releases its shared memory, then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..50 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for PacedAlsa {
    fn drop(&mut self) {
        stop(&mut self.jack);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run(mut command: Command) -> std::process::Output {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("auralis runs")
}

/// Every frame a listener receives for `seconds`, as one contiguous run of samples.
async fn reference_stream(url: String, seconds: u64) -> Vec<i16> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connects");
    let mut samples = Vec::new();
    let mut next_position = None;
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while let Ok(Some(Ok(message))) = tokio::time::timeout_at(end, ws.next()).await {
        if let Message::Binary(data) = message {
            let (header, payload) = FrameHeader::decode(&data).expect("frame");
            if let Some(expected) = next_position {
                assert_eq!(
                    header.position, expected,
                    "the reference stream is contiguous"
                );
            }
            next_position = Some(header.position + u64::from(header.frames));
            samples.extend(
                payload
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
        }
    }
    samples
}

fn wav_samples(path: &Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .expect("recording")
        .into_samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_alsa_plays_is_exactly_what_the_server_sent() {
    exact_through_alsa("pcm_s16le", Route::Direct).await;
}

/// FLAC is lossless: decoded by the listener, it plays the very samples the PCM stream carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flac_plays_bit_exact_through_alsa() {
    exact_through_alsa("flac", Route::Direct).await;
}

/// `auralis listen wss://…` through a TLS terminator (HAProxy) whose certificate a private CA
/// signed, trusted with `--ca`: the same bit-exact audio.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flac_over_wss_through_a_tls_terminator_plays_bit_exact() {
    exact_through_alsa("flac", Route::TlsTerminator).await;
}

/// How the listener reaches the server.
#[derive(Clone, Copy, PartialEq)]
enum Route {
    Direct,
    TlsTerminator,
}

/// The listener receives `codec` and plays it through ALSA; the capture is compared with what a
/// PCM listener of the same station received at the same time.
async fn exact_through_alsa(codec: &str, route: Route) {
    let _one = ONE_AT_A_TIME.lock().await;
    let tag = match route {
        Route::Direct => format!("exact-{codec}"),
        Route::TlsTerminator => format!("tls-{codec}"),
    };
    let Some(alsa) = PacedAlsa::start(&tag) else {
        return;
    };
    let station = format!("listen-{tag}").replace('_', "-");
    let server = TestServer::start(&station, 91).await;
    let url = server.ws_url(&format!("/ws?station={station}"));
    let terminator = match route {
        Route::Direct => None,
        Route::TlsTerminator => match TlsTerminator::start(server.addr) {
            Some(terminator) => Some(terminator),
            None => return,
        },
    };
    let listen_url = terminator.as_ref().map_or_else(
        || url.clone(),
        |t| t.url("wss", &format!("/ws?station={station}")),
    );
    let reference = tokio::spawn(reference_stream(format!("{url}&codec=pcm_s16le"), 8));
    let recording = alsa.dir.join("played.wav");
    let mut command = alsa.listen();
    if let Some(terminator) = &terminator {
        command.arg("--ca").arg(&terminator.ca);
    }
    command
        .args([
            &listen_url,
            "--codec",
            codec,
            "--buffer-ms",
            "150",
            "--duration",
            "5s",
            "--out",
        ])
        .arg(&recording);
    let output = run(command).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("underruns 0 "),
        "no underrun after the prebuffer: {stdout}"
    );
    assert!(stdout.contains("(48000 Hz, 2 ch"), "{stdout}");
    assert!(
        stdout.contains(&format!("({codec}); decode errors 0;")),
        "{stdout}"
    );

    let captured = alsa.captured();
    let reference = reference.await.unwrap();
    // Playback starts after the prebuffer: skip the silence before it.
    let start = captured
        .iter()
        .position(|&s| s != 0)
        .expect("audio was played");
    let start = start - start % 2;
    let played = &captured[start..];
    assert!(
        played.len() >= 2 * 48_000 * 4,
        "at least 4 s played, got {}",
        played.len()
    );
    let probe = &played[..9600];
    let offset = (0..reference.len().saturating_sub(probe.len()))
        .step_by(2)
        .find(|&i| reference[i..i + probe.len()] == *probe)
        .expect("the first played audio is part of the stream");
    let overlap = played.len().min(reference.len() - offset);
    assert!(overlap >= 2 * 48_000 * 4, "compared {overlap} samples");
    let first_difference = (0..overlap).find(|&i| played[i] != reference[offset + i]);
    assert_eq!(
        first_difference, None,
        "bit-exact through ALSA for {overlap} samples"
    );

    // --out holds what was played, from the first played sample on (the resampler's one frame of
    // delay is silence, as it is on the device: both are compared from their first sound).
    let recorded = wav_samples(&recording);
    let first_sound = recorded
        .iter()
        .position(|&s| s != 0)
        .expect("the recording has sound");
    let recorded = &recorded[first_sound - first_sound % 2..];
    let n = recorded.len().min(played.len());
    assert!(n >= 2 * 48_000 * 4);
    assert_eq!(&recorded[..n], &played[..n]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_survived_by_resuming_with_nothing_missing() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(alsa) = PacedAlsa::start("reconnect") else {
        return;
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A state directory keeps the station's epoch across the restart, so the listener resumes.
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_path_buf();
    let with_state = |config: &mut auralis::config::Config| config.state_dir = Some(state_dir);
    let server = TestServer::start_on(listener, "listen-restart", 92, with_state.clone()).await;
    let mut command = alsa.listen();
    command.args([&server.ws_url("/ws"), "--duration", "6s"]);
    let child = tokio::task::spawn_blocking(move || command.output());
    // The listener is connected and has been sent a second of audio before the restart.
    wait_for_metric(
        &server,
        "auralis_ws_connections{station=\"listen-restart\",transport=\"websocket\"}",
        1.0,
    )
    .await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server
        .hub()
        .stats
        .chunks_sent
        .load(std::sync::atomic::Ordering::Relaxed)
        < 10
    {
        assert!(tokio::time::Instant::now() < deadline, "no audio sent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.shutdown().await.expect("clean shutdown");
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("port free again");
    let _restarted = TestServer::start_on(listener, "listen-restart", 92, with_state).await;
    let output = child.await.unwrap().expect("auralis runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let reconnects: u64 = stdout
        .split("reconnects ")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|n| n.trim().parse().ok())
        .expect("summary names reconnects");
    assert!(reconnects >= 1, "{stdout}");
    let field = |name: &str| -> u64 {
        stdout
            .split(&format!("{name} "))
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("summary names {name}: {stdout}"))
    };
    assert_eq!(field("gaps"), 0, "resumed with no missing chunk: {stdout}");
    assert!(field("resumes") >= 1, "{stdout}");
}

/// Opus, the listener's default: decoded and played through ALSA without underruns or decode
/// errors, at the loudness of the PCM stream it was encoded from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opus_plays_through_alsa_at_the_streams_loudness() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(alsa) = PacedAlsa::start("opus") else {
        return;
    };
    let server = TestServer::start("listen-opus", 94).await;
    let url = server.ws_url("/ws?station=listen-opus");
    let reference = tokio::spawn(reference_stream(format!("{url}&codec=pcm_s16le"), 8));
    let mut command = alsa.listen();
    command.args([&url, "--buffer-ms", "150", "--duration", "5s"]);
    let output = run(command).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("underruns 0 "), "{stdout}");
    assert!(stdout.contains("(opus); decode errors 0;"), "{stdout}");
    let captured = alsa.captured();
    let start = captured
        .iter()
        .position(|&s| s != 0)
        .expect("audio was played");
    let played = &captured[start..];
    assert!(played.len() >= 2 * 48_000 * 4, "at least 4 s played");
    let rms =
        |v: &[i16]| (v.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    let reference = reference.await.unwrap();
    let ratio_db = 20.0 * (rms(played) / rms(&reference)).log10();
    assert!(
        ratio_db.abs() < 1.5,
        "Opus playback {ratio_db:.2} dB from the PCM stream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_and_a_non_zero_exit() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(alsa) = PacedAlsa::start("errors") else {
        return;
    };
    let server = TestServer::start("listen-errors", 93).await;
    // Nothing listens on port 9.
    let cases: [(Vec<String>, &str); 5] = [
        (
            vec!["ws://127.0.0.1:9/ws".into()],
            "cannot connect to ws://127.0.0.1:9/ws",
        ),
        (vec!["http://127.0.0.1:9/ws".into()], "bad URL"),
        (
            vec![
                server.ws_url("/ws"),
                "--device".into(),
                "no-such-card".into(),
            ],
            "unknown output device \"no-such-card\"",
        ),
        (vec![server.ws_url("/ws?station=nope")], "HTTP 404"),
        (
            vec![server.ws_url("/ws"), "--codec".into(), "mp3".into()],
            "--codec must be opus, flac or pcm_s16le",
        ),
    ];
    for (args, expected) in cases {
        let mut command = alsa.listen();
        command.args(&args).args(["--duration", "3s"]);
        let output = run(command).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
