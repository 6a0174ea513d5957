//! HTTP mounts for standard players: ffmpeg, ffprobe and mpv read the live Ogg Opus and FLAC
//! streams; FLAC decodes bit-exact against the offline render, Opus faithfully; joiners get
//! identical pages after their headers and decode from their first page; bad requests get JSON
//! errors; a player that never reads is dropped and counted while others keep streaming.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use auralis::render::{render_pcm, RenderRequest};
use auralis::synth::Score;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;

const RATE: u32 = 48_000;
const CHUNK: u64 = 4800;

/// The offline render of `frames` frames from `start` (interleaved s16).
fn offline(seed: u64, start: u64, frames: u64) -> Vec<i16> {
    let request = RenderRequest {
        timeline: Score::new(seed, RATE).into(),
        chunk_frames: CHUNK as usize,
        start_frame: start,
        frames,
    };
    let mut pcm = Vec::new();
    render_pcm(&request, |block| pcm.extend_from_slice(block));
    pcm
}

/// Reads a mount for `duration` with an HTTP/1.0 request (a body delimited by the close, as
/// many players ask for): the response head and the raw body.
async fn read_mount(addr: SocketAddr, path: &str, duration: Duration) -> (String, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: test-player\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let end = Instant::now() + duration;
    let mut bytes = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    while let Ok(Ok(n)) = tokio::time::timeout_at(end, stream.read(&mut buffer)).await {
        if n == 0 {
            break;
        }
        bytes.extend_from_slice(&buffer[..n]);
    }
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&bytes[..split]).to_string();
    (head, bytes[split + 4..].to_vec())
}

/// One Ogg page as read back: header fields and the whole page's bytes.
#[derive(Clone, Debug, PartialEq)]
struct Page {
    header_type: u8,
    granule: u64,
    serial: u32,
    sequence: u32,
    packets: Vec<Vec<u8>>,
    bytes: Vec<u8>,
}

/// Splits a stream into whole pages (a cut last page is left out).
fn pages(mut bytes: &[u8]) -> Vec<Page> {
    let mut out = Vec::new();
    while bytes.len() >= 27 {
        assert_eq!(&bytes[..4], b"OggS", "pages follow each other without gaps");
        let segments = bytes[26] as usize;
        if bytes.len() < 27 + segments {
            break;
        }
        let lacing = &bytes[27..27 + segments];
        let body: usize = lacing.iter().map(|&l| l as usize).sum();
        let len = 27 + segments + body;
        if bytes.len() < len {
            break;
        }
        let mut packets = Vec::new();
        let mut current = Vec::new();
        let mut at = 27 + segments;
        for &l in lacing {
            current.extend_from_slice(&bytes[at..at + l as usize]);
            at += l as usize;
            if l < 255 {
                packets.push(std::mem::take(&mut current));
            }
        }
        out.push(Page {
            header_type: bytes[5],
            granule: u64::from_le_bytes(bytes[6..14].try_into().unwrap()),
            serial: u32::from_le_bytes(bytes[14..18].try_into().unwrap()),
            sequence: u32::from_le_bytes(bytes[18..22].try_into().unwrap()),
            packets,
            bytes: bytes[..len].to_vec(),
        });
        bytes = &bytes[len..];
    }
    out
}

/// The sample number of the first FLAC frame after the stream's metadata (fixed block size:
/// the frame number times the block size), and where that frame starts.
fn first_flac_sample(bytes: &[u8], block: u64) -> (u64, usize) {
    assert_eq!(&bytes[..4], b"fLaC");
    let mut at = 4;
    loop {
        let last = bytes[at] & 0x80 != 0;
        let len = u32::from_be_bytes([0, bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        at += 4 + len;
        if last {
            break;
        }
    }
    assert_eq!(
        [bytes[at], bytes[at + 1] & 0xfe],
        [0xff, 0xf8],
        "a frame follows the metadata"
    );
    // The frame number, coded like UTF-8 (RFC 9639, 9.1.5).
    let first = bytes[at + 4];
    let extra = first.leading_ones().saturating_sub(1) as usize;
    let mut number = u64::from(first & (0x7f >> extra));
    for byte in &bytes[at + 5..at + 5 + extra] {
        number = (number << 6) | u64::from(byte & 0x3f);
    }
    (number * block, at)
}

/// Decodes a file with ffmpeg to interleaved s16 stereo at 48 kHz; panics on any complaint.
async fn ffmpeg_decode(ffmpeg: &std::path::Path, input: &std::path::Path) -> Vec<i16> {
    let output = tokio::process::Command::new(ffmpeg)
        .args(["-v", "error", "-i"])
        .arg(input)
        .args(["-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

fn correlation(a: &[i16], b: &[i16]) -> f64 {
    let n = a.len().min(b.len());
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for i in 0..n {
        let (x, y) = (f64::from(a[i]), f64::from(b[i]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE)
}

fn ffmpeg() -> Option<std::path::PathBuf> {
    required_tool(
        find_on_path(&["ffmpeg"]),
        "ffmpeg",
        "apt-get install ffmpeg",
    )
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("auralis-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_and_ffprobe_read_ten_seconds_of_each_live_mount() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let Some(ffprobe) = required_tool(
        find_on_path(&["ffprobe"]),
        "ffprobe",
        "apt-get install ffmpeg",
    ) else {
        return;
    };
    let server = TestServer::start("mount-ffmpeg", 21).await;
    let decode = |ext: &'static str| {
        let url = format!("http://{}/stations/mount-ffmpeg.{ext}", server.addr);
        let ffmpeg = ffmpeg.clone();
        async move {
            tokio::process::Command::new(ffmpeg)
                .args(["-v", "error", "-t", "10", "-i", &url])
                .args(["-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
                .output()
                .await
                .expect("ffmpeg runs")
        }
    };
    let probe = |ext: &'static str| {
        let url = format!("http://{}/stations/mount-ffmpeg.{ext}", server.addr);
        let ffprobe = ffprobe.clone();
        async move {
            let output = tokio::process::Command::new(ffprobe)
                .args([
                    "-v",
                    "error",
                    "-show_entries",
                    "stream=codec_name,sample_rate,channels",
                ])
                .args(["-of", "json", &url])
                .output()
                .await
                .expect("ffprobe runs");
            assert!(
                output.status.success() && output.stderr.is_empty(),
                "ffprobe {ext}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
            json["streams"][0].clone()
        }
    };
    let (opus, flac, opus_probe, flac_probe) =
        tokio::join!(decode("opus"), decode("flac"), probe("opus"), probe("flac"));
    assert_eq!(opus_probe["codec_name"], "opus");
    assert_eq!(flac_probe["codec_name"], "flac");
    for stream in [&opus_probe, &flac_probe] {
        assert_eq!(stream["sample_rate"], "48000");
        assert_eq!(stream["channels"], 2);
    }
    for (name, output) in [("opus", opus), ("flac", flac)] {
        assert!(
            output.status.success() && output.stderr.is_empty(),
            "ffmpeg {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let seconds = output.stdout.len() as f64 / f64::from(RATE * 4);
        assert!(
            (9.9..=10.01).contains(&seconds),
            "ffmpeg decoded {seconds:.2} s of {name}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpv_plays_five_seconds_of_the_opus_mount() {
    let Some(mpv) = required_tool(find_on_path(&["mpv"]), "mpv", "apt-get install mpv") else {
        return;
    };
    let server = TestServer::start("mount-mpv", 22).await;
    let url = format!("http://{}/stations/mount-mpv.opus", server.addr);
    let output = tokio::process::Command::new(mpv)
        .args([
            "--no-config",
            "--ao=null",
            "--vo=null",
            "--length=5",
            "--msg-level=all=warn",
        ])
        .arg(&url)
        .output()
        .await
        .expect("mpv runs");
    let complaints = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "mpv failed: {complaints}");
    assert!(
        !complaints.to_ascii_lowercase().contains("error"),
        "mpv complained: {complaints}"
    );
    // It stayed connected for the five seconds it played.
    let series = "auralis_ws_disconnections_total{station=\"mount-mpv\",reason=\"client_closed\",transport=\"http\"}";
    wait_for_metric(&server, series, 1.0).await;
    let metrics = server.metrics().await;
    let duration_sum = metric_value(
        &metrics,
        "auralis_ws_connection_duration_seconds_sum{station=\"mount-mpv\"}",
    )
    .unwrap_or(0.0);
    assert!(duration_sum >= 5.0, "mpv listened for {duration_sum:.1} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_flac_mount_is_bit_exact_and_the_opus_mount_faithful_to_the_offline_render() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let seed = 23;
    let server = TestServer::start("mount-exact", seed).await;
    let (flac, opus) = tokio::join!(
        read_mount(
            server.addr,
            "/stations/mount-exact.flac",
            Duration::from_secs(3)
        ),
        read_mount(
            server.addr,
            "/stations/mount-exact.opus",
            Duration::from_secs(3)
        ),
    );
    let underruns = metric_value(
        &server.metrics().await,
        "auralis_ring_buffer_underruns_total{station=\"mount-exact\"}",
    );
    assert_eq!(underruns, Some(0.0), "no underrun fill in the sample");
    let dir = temp_dir("mount-exact");

    // FLAC: every decoded sample equals the render at the first frame's sample number. Frame
    // numbers are 31 bits and the stream position counts from the epoch of the wall clock, so
    // the number gives the position modulo 2^31 blocks: the newest position picks the lap.
    let block = CHUNK / 2;
    let (numbered, _) = first_flac_sample(&flac.1, block);
    let lap = (1u64 << 31) * block;
    let newest = server
        .hub()
        .stats
        .last_position
        .load(std::sync::atomic::Ordering::Relaxed);
    let first_sample = (newest / lap) * lap + numbered;
    let first_sample = if first_sample > newest {
        first_sample - lap
    } else {
        first_sample
    };
    assert_eq!(first_sample % CHUNK, 0, "the stream starts on a chunk");
    assert!(
        newest - first_sample < 60 * u64::from(RATE),
        "the first frame is recent"
    );
    let file = dir.join("live.flac");
    std::fs::write(&file, &flac.1).unwrap();
    let decoded = ffmpeg_decode(&ffmpeg, &file).await;
    assert!(
        decoded.len() >= 2 * CHUNK as usize * 10,
        "at least a second decoded"
    );
    let expected = offline(seed, first_sample, decoded.len() as u64 / 2);
    let first_difference = decoded.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(first_difference, None, "FLAC mount is lossless");

    // Opus: the first audio page's granule places the audio; decoded, it follows the render.
    let opus_pages = pages(&opus.1);
    assert!(opus_pages.len() >= 12, "{} pages in 3 s", opus_pages.len());
    let first_audio = &opus_pages[2];
    let start = first_audio.granule - CHUNK;
    let file = dir.join("live.opus");
    std::fs::write(&file, &opus.1).unwrap();
    let decoded = ffmpeg_decode(&ffmpeg, &file).await;
    let audio_pages = (opus_pages.len() - 2) as u64;
    let pre_skip = u64::from(u16::from_le_bytes([
        opus_pages[0].packets[0][10],
        opus_pages[0].packets[0][11],
    ]));
    assert_eq!(decoded.len() as u64, (audio_pages * CHUNK - pre_skip) * 2);
    // A decoder joining mid-stream converges within its first packet: compare from 20 ms on.
    let settle = 960usize;
    let expected = offline(seed, start, decoded.len() as u64 / 2);
    let correlation = correlation(&decoded[settle * 2..], &expected[settle * 2..]);
    assert!(
        correlation > 0.99,
        "opus mount vs offline render: {correlation:.4}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joiners_get_identical_pages_after_their_headers_and_a_late_joiner_decodes_at_once() {
    let Some(ffmpeg) = ffmpeg() else { return };
    let server = TestServer::start("mount-joiners", 24).await;
    let path = "/stations/mount-joiners.opus";
    let (a, b) = tokio::join!(
        read_mount(server.addr, path, Duration::from_secs(2)),
        async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            read_mount(server.addr, path, Duration::from_secs(2)).await
        }
    );
    assert!(a.0.contains("audio/ogg; codecs=opus"), "{}", a.0);
    let mut by_sequence: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    let mut shared = 0;
    for stream in [&a.1, &b.1] {
        let pages = pages(stream);
        assert!(pages.len() >= 8);
        assert_eq!(
            pages[0].header_type, 0x02,
            "the first page begins the stream"
        );
        assert_eq!(&pages[0].packets[0][..8], b"OpusHead");
        assert_eq!(&pages[1].packets[0][..8], b"OpusTags");
        // The headers are pages 0 and 1, as a stream's first pages are; the chunk pages follow
        // with their stream numbers, contiguous from the first.
        assert_eq!((pages[0].sequence, pages[1].sequence), (0, 1));
        assert_eq!(pages[1].serial, pages[0].serial);
        for pair in pages[2..].windows(2) {
            assert_eq!(
                pair[1].sequence,
                pair[0].sequence.wrapping_add(1),
                "no page missing"
            );
            assert_eq!(pair[1].serial, pages[0].serial);
        }
        for page in &pages[2..] {
            assert_eq!(
                page.packets.len(),
                5,
                "one page per chunk, five 20 ms packets"
            );
            if let Some(other) = by_sequence.insert(page.sequence, page.bytes.clone()) {
                assert_eq!(
                    other, page.bytes,
                    "page {} differs between joiners",
                    page.sequence
                );
                shared += 1;
            }
        }
    }
    assert!(shared >= 10, "the joiners overlapped by {shared} pages");

    // A joiner 30 s into the stream decodes from its first page.
    let hub = server.hub();
    let joined_at = hub
        .stats
        .chunks_published
        .load(std::sync::atomic::Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while hub
        .stats
        .chunks_published
        .load(std::sync::atomic::Ordering::Relaxed)
        < joined_at + 300
    {
        assert!(Instant::now() < deadline, "the station keeps releasing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, late) = read_mount(server.addr, path, Duration::from_millis(1500)).await;
    let late_pages = pages(&late);
    let dir = temp_dir("mount-late");
    let file = dir.join("late.opus");
    std::fs::write(&file, &late).unwrap();
    let decoded = ffmpeg_decode(&ffmpeg, &file).await;
    let pre_skip = 312u64.min(CHUNK);
    let audio_pages = (late_pages.len() - 2) as u64;
    assert!(audio_pages >= 5);
    let head = &late_pages[0].packets[0];
    let pre_skip_announced = u64::from(u16::from_le_bytes([head[10], head[11]]));
    assert!(pre_skip_announced <= pre_skip * 2);
    assert_eq!(
        decoded.len() as u64,
        (audio_pages * CHUNK - pre_skip_announced) * 2,
        "every page decoded"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_requests_are_checked_like_websocket_listeners() {
    let server = TestServer::start_with("mount-guard", 25, |c| {
        c.listen_token = Some("mount-secret".into());
        c.codecs.offered = vec![auralis::codec::Codec::Opus, auralis::codec::Codec::PcmS16Le];
    })
    .await;
    let error_code = |body: &str| {
        let json: serde_json::Value = serde_json::from_str(body).expect("a JSON error body");
        json["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let (status, body) = server
        .get("/stations/nowhere.opus?token=mount-secret")
        .await;
    assert_eq!(
        (status, error_code(&body).as_str()),
        (404, "unknown_station")
    );
    let (status, body) = server
        .get("/stations/mount-guard.mp3?token=mount-secret")
        .await;
    assert_eq!((status, error_code(&body).as_str()), (404, "unknown_mount"));
    // The station does not offer FLAC, so it has no FLAC mount.
    let (status, body) = server
        .get("/stations/mount-guard.flac?token=mount-secret")
        .await;
    assert_eq!((status, error_code(&body).as_str()), (404, "unknown_mount"));
    assert!(body.contains("/stations/mount-guard.opus"), "{body}");
    let (status, body) = server.get("/stations/mount-guard.opus").await;
    assert_eq!((status, error_code(&body).as_str()), (401, "token_missing"));
    let (status, body) = server.get("/stations/mount-guard.opus?token=wrong").await;
    assert_eq!((status, error_code(&body).as_str()), (401, "token_invalid"));

    let (status, head, body) = http_request(
        server.addr,
        "HEAD",
        "/stations/mount-guard.opus",
        &[
            ("Authorization", "Bearer mount-secret"),
            ("Origin", &format!("http://{}", server.addr)),
        ],
        "",
    )
    .await;
    let head = head.to_ascii_lowercase();
    assert_eq!(status, 200, "{head}");
    assert!(body.is_empty());
    for expected in [
        "content-type: audio/ogg; codecs=opus",
        "cache-control: no-store",
        "icy-name: mount-guard",
        "icy-br: 128",
        "access-control-allow-origin: http://",
    ] {
        assert!(head.contains(expected), "{expected} in {head}");
    }
    let (_, body) = server.get("/api/stations").await;
    let list: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        list["stations"][0]["mounts"],
        serde_json::json!([{
            "url": "/stations/mount-guard.opus",
            "content_type": "audio/ogg; codecs=opus",
            "codec": "opus"
        }])
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "auralis_ws_rejections_total{reason=\"token_missing\"}"
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_that_never_reads_is_dropped_and_counted_while_another_keeps_streaming() {
    let server = TestServer::start_with("mount-stall", 26, |c| {
        c.send_timeout = Duration::from_millis(800);
        c.tcp_send_buffer_bytes = Some(4096);
    })
    .await;
    // A player that asks and then never reads, with a small receive window.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled
        .write_all(b"GET /stations/mount-stall.flac HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, healthy) = read_mount(
        server.addr,
        "/stations/mount-stall.opus",
        Duration::from_secs(4),
    )
    .await;
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let series = "auralis_ws_disconnections_total{station=\"mount-stall\",reason=\"send_timeout\",transport=\"http\"}";
    wait_for_metric(&server, series, 1.0).await;
    let pages = pages(&healthy);
    assert!(pages.len() >= 30, "{} pages in 4 s", pages.len());
    for pair in pages[2..].windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence + 1,
            "the healthy player misses nothing"
        );
    }
    // Its connection is closed too, at once: what it had buffered, then the end (a kept-alive
    // connection would instead idle until the header timeout, 10 s).
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), stalled.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(_)) | Ok(Err(_))),
        "the dropped player's connection stays open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_load_harness_drives_ogg_opus_mount_listeners() {
    use auralis::load::{self, LoadConfig, Transport};
    let server = TestServer::start("mount-load", 27).await;
    let config = LoadConfig {
        ramp: Duration::from_millis(300),
        decode_fraction: 0.5,
        metrics_url: Some(format!("http://{}/metrics", server.addr)),
        station: Some("mount-load".to_string()),
        ..LoadConfig::new(
            format!("http://{}/stations/mount-load.opus", server.addr),
            Transport::Http,
            4,
            Duration::from_secs(3),
        )
    };
    let report = load::run(&config).await;
    assert_eq!(report.connected, 4, "{:?}", report.first_errors);
    let h = &report.healthy;
    assert_eq!(h.gaps, 0);
    assert_eq!(h.decoding_clients, 2, "half the clients decode");
    assert_eq!(h.decode_errors, 0);
    assert!(
        h.decoded_chunks >= 2 * 20,
        "{} chunks decoded",
        h.decoded_chunks
    );
    let per_chunk = h.bytes as f64 / h.chunks.max(1) as f64;
    assert!(
        (1_000.0..2_500.0).contains(&per_chunk),
        "an Ogg page of 128 kbit/s Opus per chunk: {per_chunk:.0} bytes"
    );
}
