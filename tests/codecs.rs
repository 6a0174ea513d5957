//! Compressed audio end to end: negotiation, encode once per station and codec, identical bytes
//! for every listener, FLAC bit-exact and Opus faithful against the offline render, late joiners,
//! and an independent decoder (ffmpeg) accepting what a listener received.

mod common;

use auralis::codec::decode::{packets, ChunkDecoder};
use auralis::codec::{Codec, CodecSettings, PcmFormat, StationEncoders};
use auralis::render::{render_pcm, RenderRequest};
use auralis::stream::protocol::FLAG_UNDERRUN_FILL;
use auralis::synth::Score;
use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

const RATE: u32 = 48_000;
const CHUNK: usize = 4800;

/// What the offline renderer makes for `frames` frames from `start` (interleaved s16).
fn offline(seed: u64, start: u64, frames: usize) -> Vec<i16> {
    let request = RenderRequest {
        timeline: Score::new(seed, RATE).into(),
        chunk_frames: CHUNK,
        start_frame: start,
        frames: frames as u64,
    };
    let mut pcm = Vec::new();
    render_pcm(&request, |block| pcm.extend_from_slice(block));
    pcm
}

/// Audio frames and the welcome of a fresh listener of `path`.
async fn listen(server: &TestServer, path: &str, chunks: usize) -> (serde_json::Value, Vec<Audio>) {
    let mut ws = server.connect_raw_path(path).await;
    let mut audio = Vec::new();
    let welcome = next_text(&mut ws, &mut audio).await;
    assert_eq!(welcome["type"], "welcome");
    audio.extend(audio_frames(&mut ws, chunks.saturating_sub(audio.len())).await);
    (welcome, audio)
}

/// Returns once the station has streamed half a second (an earlier listener heard it), so the
/// next listener joins a stream whose encoders have been running.
async fn stream_for_a_while(server: &TestServer) {
    let mut early = server.connect("/ws").await;
    audio_frames(&mut early, 5).await;
}

fn decode_all(codec: Codec, frames: &[Audio]) -> Vec<f32> {
    let mut decoder = ChunkDecoder::new(codec, RATE, 2).unwrap();
    let mut out = Vec::new();
    for frame in frames {
        assert_eq!(frame.header.codec, codec);
        decoder
            .decode(frame.payload(), frame.header.frames as usize, &mut out)
            .unwrap_or_else(|e| panic!("sequence {}: {e}", frame.header.sequence));
    }
    out
}

/// Normalised cross-correlation of two equally aligned signals (1: the same up to scale).
fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn real_audio(frames: &[Audio]) -> bool {
    frames
        .iter()
        .all(|f| f.header.flags & FLAG_UNDERRUN_FILL == 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_opus_and_welcome_describes_every_codec() {
    let server = TestServer::start("codec-default", 5).await;
    let (welcome, frames) = listen(&server, "/ws", 2).await;
    assert_eq!(welcome["protocol"], 2);
    assert_eq!(welcome["format"]["codec"], "opus");
    assert_eq!(welcome["format"]["bitrate"], 128_000);
    assert_eq!(
        welcome["codecs"],
        serde_json::json!(["opus", "flac", "pcm_s16le"])
    );
    let format: auralis::stream::protocol::StreamFormat =
        serde_json::from_value(welcome["format"].clone()).unwrap();
    let head = format.setup_bytes().expect("OpusHead");
    assert_eq!(&head[..8], b"OpusHead");
    assert_eq!(head[9], 2, "channels");
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    assert_eq!(Some(u32::from(pre_skip)), format.pre_skip);
    assert_eq!(u32::from_le_bytes(head[12..16].try_into().unwrap()), RATE);
    for frame in &frames {
        assert_eq!(frame.header.codec, Codec::Opus);
        assert_eq!(
            packets(frame.payload()).unwrap().len(),
            5,
            "five 20 ms packets"
        );
    }

    let (welcome, frames) = listen(&server, "/ws?codec=flac", 1).await;
    assert_eq!(welcome["format"]["codec"], "flac");
    let format: auralis::stream::protocol::StreamFormat =
        serde_json::from_value(welcome["format"].clone()).unwrap();
    let streaminfo = format.setup_bytes().expect("STREAMINFO");
    assert_eq!(&streaminfo[..4], b"fLaC");
    assert_eq!(streaminfo[4] & 0x7f, 0, "a STREAMINFO block");
    assert_eq!(streaminfo[4] & 0x80, 0x80, "the last metadata block");
    assert_eq!(
        packets(frames[0].payload()).unwrap().len(),
        2,
        "two FLAC frames"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_unoffered_codecs_are_refused_with_a_documented_error() {
    let server = TestServer::start_with("codec-refused", 6, |c| {
        c.codecs.offered = vec![Codec::Opus, Codec::PcmS16Le];
    })
    .await;
    for (query, wanted) in [("mp3", "unknown codec"), ("flac", "does not offer flac")] {
        let url = server.ws_url(&format!("/ws?codec={query}"));
        let error = tokio_tungstenite::connect_async(url).await.unwrap_err();
        let tokio_tungstenite::tungstenite::Error::Http(response) = error else {
            panic!("expected an HTTP refusal, got {error}");
        };
        assert_eq!(response.status(), 400);
        let body: serde_json::Value =
            serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
        assert_eq!(body["error"]["code"], "unsupported_codec");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(wanted), "{message}");
        assert!(message.contains("opus, pcm_s16le"), "{message}");
    }

    // In hello: an error, then close 1003; other listeners are untouched.
    let mut other = server.connect("/ws").await;
    let mut ws = server.connect_raw_path("/ws").await;
    let mut audio = Vec::new();
    next_text(&mut ws, &mut audio).await;
    ws.send(Message::text(
        r#"{"type":"hello","protocol":2,"codec":"flac"}"#,
    ))
    .await
    .unwrap();
    let error = next_text(&mut ws, &mut audio).await;
    assert_eq!(error["type"], "error");
    assert_eq!(error["code"], "unsupported_codec");
    assert_eq!(u16::from(close_frame(&mut ws).await.code), 1003);
    assert_contiguous(&audio_frames(&mut other, 3).await);
    let metrics = server.metrics().await;
    assert!(
        metric_value(
            &metrics,
            r#"auralis_ws_client_errors_total{station="codec-refused",reason="unsupported_codec"}"#
        ) >= Some(3.0),
        "refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_switches_codec_after_a_welcome_that_describes_it() {
    let server = TestServer::start("codec-switch", 7).await;
    let mut ws = server.connect("/ws").await;
    let mut audio = Vec::new();
    assert_eq!(
        next_text(&mut ws, &mut audio).await["format"]["codec"],
        "pcm_s16le"
    );
    ws.send(Message::text(
        r#"{"type":"hello","protocol":2,"codec":"flac"}"#,
    ))
    .await
    .unwrap();
    let mut before = Vec::new();
    let welcome = next_text(&mut ws, &mut before).await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["format"]["codec"], "flac");
    assert!(before.iter().all(|f| f.header.codec == Codec::PcmS16Le));
    let after = audio_frames(&mut ws, 3).await;
    assert!(after.iter().all(|f| f.header.codec == Codec::Flac));
    // The switch loses no chunk.
    let mut all: Vec<Audio> = audio.into_iter().chain(before).collect();
    all.extend(after);
    assert_contiguous(&all);
    let metrics = server.metrics().await;
    let listeners = |codec: &str| {
        metric_value(
            &metrics,
            &format!(r#"auralis_codec_listeners{{station="codec-switch",codec="{codec}"}}"#),
        )
    };
    assert_eq!(listeners("flac"), Some(1.0));
    assert_eq!(listeners("pcm_s16le"), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_of_a_codec_gets_identical_bytes_encoded_once() {
    let server = TestServer::start("codec-identical", 8).await;
    let mut listeners = Vec::new();
    for codec in ["opus", "opus", "opus", "flac", "flac", "pcm_s16le"] {
        let mut ws = server.connect_raw_path(&format!("/ws?codec={codec}")).await;
        let mut audio = Vec::new();
        next_text(&mut ws, &mut audio).await;
        listeners.push((codec, ws));
    }
    let encodes = |metrics: &str, codec: &str| {
        metric_value(
            metrics,
            &format!(
                r#"auralis_encode_duration_seconds_count{{station="codec-identical",codec="{codec}"}}"#
            ),
        )
        .unwrap_or(0.0)
    };
    let before = server.metrics().await;
    let mut received = Vec::new();
    for (codec, ws) in &mut listeners {
        received.push((*codec, audio_frames(ws, 8).await));
    }
    let after = server.metrics().await;
    // Frames of the same sequence are the same bytes for every listener of a codec.
    for (codec, frames) in &received {
        let (_, reference) = received.iter().find(|(c, _)| c == codec).unwrap();
        for frame in frames {
            if let Some(same) = reference
                .iter()
                .find(|r| r.header.sequence == frame.header.sequence)
            {
                assert_eq!(
                    same.bytes, frame.bytes,
                    "{codec} sequence {}",
                    frame.header.sequence
                );
            }
        }
    }
    let overlap = |codec: &str| {
        let all: Vec<&Vec<Audio>> = received
            .iter()
            .filter(|(c, _)| *c == codec)
            .map(|(_, f)| f)
            .collect();
        all[0]
            .iter()
            .filter(|f| {
                all.iter()
                    .all(|o| o.iter().any(|g| g.header.sequence == f.header.sequence))
            })
            .count()
    };
    assert!(overlap("opus") >= 5, "the listeners heard the same chunks");
    assert!(overlap("flac") >= 5);
    // One encode per chunk and codec, however many listeners: the counts rise in step.
    let opus = encodes(&after, "opus") - encodes(&before, "opus");
    let flac = encodes(&after, "flac") - encodes(&before, "flac");
    let pcm = encodes(&after, "pcm_s16le") - encodes(&before, "pcm_s16le");
    assert!(opus >= 7.0, "{opus} encodes while 8 chunks went out");
    assert_eq!(opus, flac, "every codec encodes every chunk once");
    assert_eq!(opus, pcm);
    assert!(
        opus <= 12.0,
        "{opus} encodes for about 8 chunks: once each, not per listener"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flac_decoded_is_bit_exact_with_the_offline_render_from_the_first_chunk() {
    let seed = 4321;
    let server = TestServer::start("codec-flac", seed).await;
    // Joining a stream that has been running: the first chunk already decodes exactly.
    stream_for_a_while(&server).await;
    let (_, frames) = listen(&server, "/ws?codec=flac", 10).await;
    assert_contiguous(&frames);
    assert!(real_audio(&frames), "no underrun fill in the sample");
    let decoded = decode_all(Codec::Flac, &frames);
    let start = frames[0].header.position;
    let expected = offline(seed, start, frames.len() * CHUNK);
    let decoded: Vec<i16> = decoded
        .iter()
        .map(|&s| auralis::codec::decode::decoded_to_s16(s))
        .collect();
    assert_eq!(decoded.len(), expected.len());
    let first_difference = decoded.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "FLAC is lossless across chunk boundaries"
    );
}

/// Root-mean-square energy of a band-passed signal (RBJ biquad, one octave wide).
fn band_energy_db(signal: &[f32], centre: f64) -> f64 {
    let w0 = std::f64::consts::TAU * centre / f64::from(RATE);
    let q = std::f64::consts::SQRT_2;
    let alpha = w0.sin() / (2.0 * q);
    let a0 = 1.0 + alpha;
    let (b0, b2) = (alpha / a0, -alpha / a0);
    let (a1, a2) = (-2.0 * w0.cos() / a0, (1.0 - alpha) / a0);
    let (mut x1, mut x2, mut y1, mut y2) = (0.0, 0.0, 0.0, 0.0);
    let mut energy = 0.0;
    for &x in signal {
        let x = f64::from(x);
        let y = b0 * x + b2 * x2 - a1 * y1 - a2 * y2;
        x2 = x1;
        x1 = x;
        y2 = y1;
        y1 = y;
        energy += y * y;
    }
    10.0 * (energy / signal.len() as f64 + 1e-20).log10()
}

#[test]
fn opus_is_faithful_to_the_offline_render_over_ten_seconds() {
    let seed = 77;
    let chunks = 100u64;
    let reference: Vec<f32> = offline(seed, 0, chunks as usize * CHUNK)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    let settings = CodecSettings {
        offered: vec![Codec::Opus],
        ..CodecSettings::default()
    };
    let format = PcmFormat {
        sample_rate: RATE,
        channels: 2,
        frames_per_chunk: CHUNK as u32,
    };
    let mut encoders = StationEncoders::new(&settings, format).unwrap();
    let pre_skip = encoders.setups()[0].pre_skip.unwrap() as usize;
    let mut decoder = ChunkDecoder::new(Codec::Opus, RATE, 2).unwrap();
    let mut decoded = Vec::new();
    let mut scratch = Vec::new();
    for (k, chunk) in reference.chunks(CHUNK * 2).enumerate() {
        encoders.encode(
            chunk,
            k as u64 * CHUNK as u64,
            &mut scratch,
            |_, payload, _| {
                decoder
                    .decode(payload.unwrap(), CHUNK, &mut decoded)
                    .unwrap();
            },
        );
    }
    // Decoded sample i is input sample i - pre_skip; skip the first chunk (the encoder's start).
    let left = |v: &[f32]| v.iter().step_by(2).copied().collect::<Vec<f32>>();
    let (dec_l, ref_l) = (left(&decoded), left(&reference));
    let from = CHUNK;
    let a = &ref_l[from - pre_skip..ref_l.len() - pre_skip];
    let b = &dec_l[from..];
    let correlation = correlation(a, b);
    assert!(correlation >= 0.98, "correlation {correlation:.4}");
    println!("opus vs offline render: correlation {correlation:.4}");
    let mut compared = 0;
    for centre in [125.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0] {
        let (ea, eb) = (band_energy_db(a, centre), band_energy_db(b, centre));
        println!("  {centre:>7} Hz octave: reference {ea:.2} dB, decoded {eb:.2} dB");
        compared += usize::from(ea > -70.0);
        // Bands with almost nothing in them are compared only when the reference has content.
        if ea > -70.0 {
            assert!(
                (ea - eb).abs() <= 1.0,
                "{centre} Hz band: {ea:.2} dB vs {eb:.2} dB"
            );
        }
    }
    assert!(
        compared >= 6,
        "the music has content in most octaves ({compared})"
    );
    // No click at chunk boundaries: the decoded step across each boundary stays within the
    // reference's own steepest step around that point.
    for boundary in (2 * CHUNK..b.len()).step_by(CHUNK) {
        let jump = (b[boundary] - b[boundary - 1]).abs();
        let around = boundary - 48..boundary + 48;
        let slope = around
            .map(|i| (a[i] - a[i - 1]).abs())
            .fold(0.0f32, f32::max);
        assert!(
            jump <= slope * 1.5 + 1e-3,
            "boundary at {boundary}: jump {jump} beyond the reference's slope {slope}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_opus_joiner_decodes_the_stream_from_its_first_chunk() {
    let seed = 99;
    let server = TestServer::start("codec-late", seed).await;
    stream_for_a_while(&server).await;
    let (welcome, frames) = listen(&server, "/ws?codec=opus", 10).await;
    assert_contiguous(&frames);
    assert!(real_audio(&frames));
    let pre_skip = welcome["format"]["pre_skip"].as_u64().unwrap() as usize;
    let decoded = decode_all(Codec::Opus, &frames);
    let start = frames[0].header.position;
    let reference: Vec<f32> = offline(seed, start - pre_skip as u64, frames.len() * CHUNK)
        .iter()
        .map(|&s| f32::from(s) / 32768.0)
        .collect();
    // After the documented warm-up (the first 20 ms packet) the joiner hears the stream.
    let warm_up = 960 * 2;
    let (a, b) = (&reference[warm_up..], &decoded[warm_up..]);
    let correlation = correlation(a, b);
    assert!(correlation >= 0.95, "correlation {correlation:.4}");
}

/// Received Opus packets in an Ogg file (RFC 7845): OpusHead, OpusTags, then the audio with
/// granule positions at 48 kHz.
fn ogg_opus(head: &[u8], frames: &[Audio]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut writer = ogg::PacketWriter::new(&mut out);
        let serial = 0x4155_5241;
        writer
            .write_packet(head.to_vec(), serial, ogg::PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&7u32.to_le_bytes());
        tags.extend_from_slice(b"auralis");
        tags.extend_from_slice(&0u32.to_le_bytes());
        writer
            .write_packet(tags, serial, ogg::PacketWriteEndInfo::EndPage, 0)
            .unwrap();
        let all: Vec<&[u8]> = frames
            .iter()
            .flat_map(|f| packets(f.payload()).unwrap())
            .collect();
        for (i, packet) in all.iter().enumerate() {
            let end = if i + 1 == all.len() {
                ogg::PacketWriteEndInfo::EndStream
            } else {
                ogg::PacketWriteEndInfo::NormalPacket
            };
            let granule = (i as u64 + 1) * 960;
            writer
                .write_packet(packet.to_vec(), serial, end, granule)
                .unwrap();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_decodes_the_opus_a_listener_received() {
    let Some(ffmpeg) = required_tool(
        find_on_path(&["ffmpeg"]),
        "ffmpeg",
        "apt-get install ffmpeg",
    ) else {
        return;
    };
    let server = TestServer::start("codec-ffmpeg", 12).await;
    let (welcome, frames) = listen(&server, "/ws?codec=opus", 20).await;
    assert_contiguous(&frames);
    let format: auralis::stream::protocol::StreamFormat =
        serde_json::from_value(welcome["format"].clone()).unwrap();
    let dir = std::env::temp_dir().join(format!("auralis-ogg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("received.opus");
    std::fs::write(&file, ogg_opus(&format.setup_bytes().unwrap(), &frames)).unwrap();
    let output = tokio::process::Command::new(ffmpeg)
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "s16le", "-ac", "2", "-ar", "48000", "-"])
        .output()
        .await
        .expect("ffmpeg runs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let theirs: Vec<f32> = output
        .stdout
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect();
    // ffmpeg honours pre-skip: it returns the stream less the encoder's lookahead.
    let pre_skip = format.pre_skip.unwrap() as usize;
    assert_eq!(theirs.len(), (frames.len() * CHUNK - pre_skip) * 2);
    let ours = decode_all(Codec::Opus, &frames);
    let ours = &ours[pre_skip * 2..];
    let correlation = correlation(ours, &theirs);
    assert!(
        correlation > 0.99,
        "ffmpeg and our decoder agree: {correlation:.4}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reported_decode_errors_are_bounded_and_counted_by_codec() {
    let server = TestServer::start("codec-reports", 13).await;
    let mut ws = server.connect_raw_path("/ws?codec=flac").await;
    let mut audio = Vec::new();
    next_text(&mut ws, &mut audio).await;
    audio_frames(&mut ws, 3).await;
    ws.send(Message::text(
        r#"{"type":"stats","buffer_ms":100,"underruns":0,"decode_errors":18446744073709551615}"#,
    ))
    .await
    .unwrap();
    let warning = next_text(&mut ws, &mut audio).await;
    assert_eq!(warning["code"], "stats_refused");
    ws.send(Message::text(
        r#"{"type":"stats","buffer_ms":100,"underruns":0,"decode_errors":2}"#,
    ))
    .await
    .unwrap();
    let series = r#"auralis_client_decode_errors_total{station="codec-reports",codec="flac"}"#;
    wait_for_metric(&server, series, 2.0).await;
    let metrics = server.metrics().await;
    assert_eq!(metric_value(&metrics, series), Some(2.0));
    assert_eq!(
        metric_value(
            &metrics,
            r#"auralis_client_reports_refused_total{station="codec-reports",field="decode_errors"}"#
        ),
        Some(1.0)
    );
}
