//! The network side of the player: receives frames, converts them to the device's layout and
//! rate, and keeps the ring at its target level. Runs on tokio; never on the audio thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rtrb::Producer;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};

use super::drift::DriftControl;
use super::resample::Resampler;
use super::{ListenError, ListenStats, PlaybackShared};
use crate::client_tls::ClientTls;
use crate::clock::unix_nanos;
use crate::clock::ClockOffset;
use crate::codec::decode::{decoded_to_s16, DecodeError, StreamDecoder};
use crate::codec::Codec;
use crate::edge::tokens::redact_url;
use crate::stream::protocol::{
    FrameHeader, ResumeOutcome, ServerMessage, FLAG_DISCONTINUITY, FLAG_RESUMED,
};

/// First and longest wait between reconnection attempts.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(5);
/// Length of the crossfade where chunks were dropped to return to the target latency.
const CROSSFADE: Duration = Duration::from_millis(5);

/// Turns received frames into device frames in the ring.
pub struct Feeder {
    producer: Producer<f32>,
    capacity: usize,
    device_rate: u32,
    device_channels: usize,
    buffer_seconds: f64,
    resampler: Resampler,
    drift: DriftControl,
    shared: Arc<PlaybackShared>,
    stats: Arc<ListenStats>,
    /// Whether this side primed playback and has not seen an underrun since.
    primed: bool,
    last_sequence: Option<u64>,
    clock: ClockOffset,
    mapped: Vec<f32>,
    resampled: Vec<f32>,
    /// The station's epoch from the last `welcome`, for resuming.
    epoch: Option<String>,
    /// The first [`CROSSFADE`] of the first chunk dropped to catch up: it continues what was
    /// queued last, and fades out over the next chunk kept (device samples, interleaved).
    held: Vec<f32>,
    /// The chunk before was dropped: crossfade `held` into the next one.
    crossfade_next: bool,
    chunk_seconds: f64,
}

impl Feeder {
    /// `producer` feeds a device with `device_rate` Hz and `device_channels` channels; playback
    /// starts once `buffer` of audio is queued.
    pub fn new(
        producer: Producer<f32>,
        device_rate: u32,
        device_channels: usize,
        buffer: Duration,
        chunk: Duration,
        shared: Arc<PlaybackShared>,
        stats: Arc<ListenStats>,
    ) -> Self {
        let buffer_seconds = buffer.as_secs_f64();
        let chunk_seconds = chunk.as_secs_f64();
        Self {
            capacity: producer.buffer().capacity(),
            producer,
            device_rate: device_rate.max(1),
            device_channels: device_channels.max(1),
            buffer_seconds,
            resampler: Resampler::new(device_channels),
            // Measured just before each arrival, the level sits between buffer - chunk and
            // buffer: aim at the middle and leave one chunk of slack uncorrected.
            drift: DriftControl::new(
                (buffer_seconds - chunk_seconds / 2.0).max(0.0),
                chunk_seconds,
            ),
            shared,
            stats,
            primed: false,
            last_sequence: None,
            clock: ClockOffset::default(),
            mapped: Vec::new(),
            resampled: Vec::new(),
            epoch: None,
            held: Vec::new(),
            crossfade_next: false,
            chunk_seconds,
        }
    }

    /// Where to connect next: `url`, asking to resume after the last chunk held when there is
    /// one (and the stream's epoch is known).
    pub fn resume_url(&self, url: &str) -> String {
        match (self.last_sequence, &self.epoch) {
            (Some(last), Some(epoch)) => {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}resume_from={}&epoch={epoch}", last + 1)
            }
            _ => url.to_string(),
        }
    }

    /// A `welcome`: the epoch to resume with next time, and how this resume went.
    fn on_welcome(&mut self, epoch: String, resume: Option<crate::stream::protocol::ResumeReport>) {
        self.epoch = (!epoch.is_empty()).then_some(epoch);
        match resume {
            Some(report) if report.outcome == ResumeOutcome::Resumed => {
                self.stats.resumes.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    from = report.from,
                    chunks = report.chunks,
                    "resumed: nothing missed"
                );
            }
            Some(report) => {
                self.stats.resumes_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    outcome = report.outcome.as_str(),
                    from = report.from,
                    "could not resume; playing from the live edge"
                );
            }
            None => {}
        }
    }

    /// Seconds of audio queued in the ring.
    pub fn level_seconds(&self) -> f64 {
        let queued = self.capacity - self.producer.slots();
        queued as f64 / self.device_channels as f64 / f64::from(self.device_rate)
    }

    /// One audio frame from the server.
    pub fn on_frame(&mut self, header: &FrameHeader, payload: &[u8]) {
        self.stats.chunks.fetch_add(1, Ordering::Relaxed);
        let discontinuity = header.flags & FLAG_DISCONTINUITY != 0;
        if let Some(last) = self.last_sequence {
            if header.sequence != last + 1 || discontinuity {
                self.stats.gaps.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.last_sequence = Some(header.sequence);

        // A resume delivers everything missed at once: play what fits the target and drop the
        // rest, whole chunks, crossfading over each cut.
        let backlog = self.level_seconds() > self.buffer_seconds + self.chunk_seconds;
        if header.flags & FLAG_RESUMED != 0 && self.primed && backlog {
            self.drop_for_catch_up(header, payload);
            return;
        }

        if self.primed && !self.shared.primed.load(Ordering::Acquire) {
            // The callback ran dry: the buffer starts over, and so does the drift estimate.
            self.primed = false;
            self.drift.reset();
        }
        let level = self.level_seconds();
        let correction = if self.primed {
            self.drift.update(level)
        } else {
            0.0
        };
        self.stats
            .correction_ppm
            .store((correction * 1e6) as i64, Ordering::Relaxed);
        self.stats
            .buffer_us
            .store((level * 1e6) as u64, Ordering::Relaxed);
        if let Some(rendered) = self.clock.to_local_ns(header.rendered_unix_ns) {
            let transit = unix_nanos().saturating_sub(rendered);
            self.stats
                .latency_us
                .store(transit / 1000 + (level * 1e6) as u64, Ordering::Relaxed);
        }

        self.map_channels(usize::from(header.channels), payload);
        let ratio =
            f64::from(self.device_rate) / f64::from(header.sample_rate.max(1)) * (1.0 + correction);
        self.resampled.clear();
        self.resampler
            .process(&self.mapped, ratio, &mut self.resampled);
        self.push_resampled();

        if !self.primed && self.level_seconds() >= self.buffer_seconds {
            self.primed = true;
            self.shared.primed.store(true, Ordering::Release);
        }
    }

    /// Skips a chunk of the backlog a resume delivered. It still goes through the resampler (its
    /// state stays continuous), and the first of a run keeps its head for the crossfade.
    fn drop_for_catch_up(&mut self, header: &FrameHeader, payload: &[u8]) {
        self.stats.catch_up_dropped.fetch_add(1, Ordering::Relaxed);
        self.map_channels(usize::from(header.channels), payload);
        let ratio = f64::from(self.device_rate) / f64::from(header.sample_rate.max(1));
        self.resampled.clear();
        self.resampler
            .process(&self.mapped, ratio, &mut self.resampled);
        if !self.crossfade_next {
            let fade = (CROSSFADE.as_secs_f64() * f64::from(self.device_rate)) as usize
                * self.device_channels;
            let fade = fade.min(self.resampled.len());
            self.held.clear();
            self.held.extend_from_slice(&self.resampled[..fade]);
            self.crossfade_next = true;
        }
    }

    /// s16le interleaved with `channels` → f32 interleaved with the device's channel count.
    fn map_channels(&mut self, channels: usize, payload: &[u8]) {
        let channels = channels.max(1);
        let out = self.device_channels;
        self.mapped.clear();
        for frame in payload.chunks_exact(2 * channels) {
            let sample = |c: usize| {
                f32::from(i16::from_le_bytes([frame[2 * c], frame[2 * c + 1]])) / 32768.0
            };
            if out == 1 {
                self.mapped
                    .push((0..channels).map(sample).sum::<f32>() / channels as f32);
            } else {
                for c in 0..out {
                    self.mapped.push(if c < channels { sample(c) } else { 0.0 });
                }
            }
        }
    }

    /// Queues the chunk; after dropped chunks, its head is crossfaded with the head of the first
    /// one dropped (the true continuation of what was queued last), so the cut does not click.
    fn push_resampled(&mut self) {
        if self.crossfade_next && !self.held.is_empty() {
            let channels = self.device_channels;
            let n = self.held.len().min(self.resampled.len()) / channels;
            for frame in 0..n {
                let t = (frame as f32 + 0.5) / n as f32;
                for c in 0..channels {
                    let i = frame * channels + c;
                    self.resampled[i] = self.held[i] * (1.0 - t) + self.resampled[i] * t;
                }
            }
        }
        self.crossfade_next = false;
        self.held.clear();
        let resampled = std::mem::take(&mut self.resampled);
        self.write(&resampled);
        self.resampled = resampled;
    }

    /// Whole frames only; what does not fit is counted and dropped (the buffer is over-full).
    fn write(&mut self, samples: &[f32]) {
        let room = self.producer.slots() / self.device_channels * self.device_channels;
        let take = room.min(samples.len() / self.device_channels * self.device_channels);
        if let Ok(chunk) = self.producer.write_chunk_uninit(take) {
            chunk.fill_from_iter(samples[..take].iter().copied());
        }
        let dropped = samples.len() - take;
        if dropped > 0 {
            self.stats
                .overflow_samples
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
    }

    fn on_pong(&mut self, sent_local_ns: u64, server_ns: u64) {
        self.clock.observe(sent_local_ns, server_ns, unix_nanos());
    }
}

/// How a connection ended.
enum Ended {
    /// The deadline passed or the user interrupted.
    Stop,
    /// The connection dropped: reconnect.
    Dropped(String),
}

/// Streams into `feeder` until `stop` resolves. The first connection must succeed (a wrong URL
/// or an unreachable server is an error); later drops reconnect with backoff and resume after
/// the last chunk received (`resume_from`), or at the live edge when the server cannot.
pub async fn run(
    url: &str,
    tls: Option<&ClientTls>,
    feeder: &mut Feeder,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), ListenError> {
    tokio::pin!(stop);
    let mut backoff = BACKOFF_START;
    let mut ever_connected = false;
    loop {
        let connected = tokio::select! {
            () = &mut stop => return Ok(()),
            c = tokio_tungstenite::connect_async_tls_with_config(
                feeder.resume_url(url),
                None,
                false,
                tls.map(ClientTls::connector),
            ) => c,
        };
        let socket = match connected {
            Ok((socket, _)) => socket,
            Err(e) if !ever_connected => {
                return Err(match e {
                    tungstenite::Error::Url(_) => ListenError::BadUrl(redact_url(url)),
                    other => ListenError::Connect {
                        url: redact_url(url),
                        reason: describe(&other),
                    },
                })
            }
            Err(e) => {
                tracing::warn!(error = %describe(&e), retry_in_ms = backoff.as_millis() as u64, "reconnect failed");
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if ever_connected {
            feeder.stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        ever_connected = true;
        feeder.stats.connected.store(true, Ordering::Relaxed);
        let ended = stream(socket, feeder, &mut stop, &mut backoff).await;
        feeder.stats.connected.store(false, Ordering::Relaxed);
        match ended {
            Ended::Stop => return Ok(()),
            Ended::Dropped(reason) => {
                tracing::warn!(%reason, retry_in_ms = backoff.as_millis() as u64, "stream dropped; reconnecting");
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

async fn stream<S>(
    mut socket: tokio_tungstenite::WebSocketStream<S>,
    feeder: &mut Feeder,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    backoff: &mut Duration,
) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut ping_sent: Option<u64> = None;
    let mut next_ping = Instant::now();
    // Decoder state lives as long as the connection: a new one starts a new stream.
    let mut decoding = Decoding::default();
    loop {
        if Instant::now() >= next_ping {
            ping_sent = Some(unix_nanos());
            next_ping = Instant::now() + PING_EVERY;
            if let Err(e) = socket
                .send(Message::Text(r#"{"type":"ping"}"#.into()))
                .await
            {
                return Ended::Dropped(format!("send: {e}"));
            }
        }
        let message = tokio::select! {
            () = stop.as_mut() => {
                let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
                return Ended::Stop;
            }
            () = tokio::time::sleep_until(next_ping) => continue,
            m = socket.next() => m,
        };
        match message {
            None => return Ended::Dropped("server closed the connection".to_string()),
            Some(Err(e)) => return Ended::Dropped(describe(&e)),
            Some(Ok(Message::Binary(data))) => match FrameHeader::decode(&data) {
                Ok((header, payload)) => {
                    feeder
                        .stats
                        .codec
                        .store(header.codec as u8, Ordering::Relaxed);
                    match decoding.pcm_of(&header, payload) {
                        Ok((pcm_header, pcm)) => {
                            feeder.on_frame(&pcm_header, pcm.unwrap_or(payload))
                        }
                        Err(e) => {
                            feeder.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, sequence = header.sequence, "chunk did not decode; skipped");
                        }
                    }
                    // Audio is flowing again: the next drop starts the backoff over.
                    *backoff = BACKOFF_START;
                }
                Err(e) => return Ended::Dropped(format!("undecodable frame: {e}")),
            },
            Some(Ok(Message::Text(text))) => {
                if let Ok(ServerMessage::Welcome { epoch, resume, .. }) =
                    serde_json::from_str(&text)
                {
                    feeder.on_welcome(epoch, resume);
                    // A new connection is a new decoder stream (Opus state included).
                    decoding = Decoding::default();
                    continue;
                }
                if let (
                    Ok(ServerMessage::Pong {
                        server_time_unix_ns,
                        ..
                    }),
                    Some(sent),
                ) = (serde_json::from_str(&text), ping_sent)
                {
                    feeder.on_pong(sent, server_time_unix_ns);
                    ping_sent = None;
                }
            }
            Some(Ok(Message::Close(frame))) => {
                let reason = frame.map_or_else(
                    || "no reason".to_string(),
                    |f| format!("{} {}", f.code, f.reason),
                );
                return Ended::Dropped(format!("server closed the connection: {reason}"));
            }
            Some(Ok(_)) => {}
        }
    }
}

/// One connection's decoder and buffers: compressed payloads become the s16le PCM the feeder
/// plays (FLAC exactly; Opus as its decoder outputs it).
#[derive(Default)]
struct Decoding {
    decoder: StreamDecoder,
    samples: Vec<f32>,
    pcm: Vec<u8>,
}

impl Decoding {
    /// The PCM header and payload for a frame; `None` as payload: the frame's own (PCM already).
    fn pcm_of<'a>(
        &'a mut self,
        header: &FrameHeader,
        payload: &'a [u8],
    ) -> Result<(FrameHeader, Option<&'a [u8]>), DecodeError> {
        if header.codec == Codec::PcmS16Le {
            return Ok((*header, None));
        }
        self.samples.clear();
        header.decode_payload(&mut self.decoder, payload, &mut self.samples)?;
        self.pcm.clear();
        for &s in &self.samples {
            self.pcm.extend_from_slice(&decoded_to_s16(s).to_le_bytes());
        }
        let pcm_header = FrameHeader {
            codec: Codec::PcmS16Le,
            ..*header
        };
        Ok((pcm_header, Some(&self.pcm)))
    }
}

/// A connection error as a person would want to read it.
fn describe(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Http(response) => {
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            format!(
                "the server answered HTTP {} {}",
                response.status(),
                body.trim()
            )
        }
        tungstenite::Error::Io(e) => e.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::protocol::Codec;

    fn header(sequence: u64, flags: u16) -> FrameHeader {
        FrameHeader {
            codec: Codec::PcmS16Le,
            channels: 2,
            sample_rate: 48_000,
            frames: 4800,
            flags,
            sequence,
            position: sequence * 4800,
            rendered_unix_ns: 0,
            sent_unix_ns: 0,
        }
    }

    fn payload(sequence: u64) -> Vec<u8> {
        (0..4800 * 2)
            .flat_map(|i| (((sequence as i64 * 9600 + i) % 20_000) as i16 - 10_000).to_le_bytes())
            .collect()
    }

    fn feeder(
        device_rate: u32,
        channels: usize,
    ) -> (Feeder, rtrb::Consumer<f32>, Arc<PlaybackShared>) {
        let (producer, consumer) = rtrb::RingBuffer::new(device_rate as usize * channels * 2);
        let shared = Arc::new(PlaybackShared::default());
        let feeder = Feeder::new(
            producer,
            device_rate,
            channels,
            Duration::from_millis(150),
            Duration::from_millis(100),
            Arc::clone(&shared),
            Arc::new(ListenStats::default()),
        );
        (feeder, consumer, shared)
    }

    #[test]
    fn same_rate_stereo_is_passed_through_bit_exact_and_primes_after_the_buffer() {
        let (mut f, mut consumer, shared) = feeder(48_000, 2);
        f.on_frame(&header(0, 0), &payload(0));
        assert!(
            !shared.primed.load(Ordering::Acquire),
            "100 ms < 150 ms prebuffer"
        );
        f.on_frame(&header(1, 0), &payload(1));
        assert!(shared.primed.load(Ordering::Acquire));
        let mut got = Vec::new();
        while let Ok(s) = consumer.pop() {
            got.push((s * 32768.0) as i16);
        }
        let sent: Vec<i16> = [payload(0), payload(1)]
            .concat()
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        // The resampler hands samples through unchanged one frame later.
        assert_eq!(&got[..2], &[0, 0]);
        assert_eq!(got[2..], sent[..got.len() - 2]);
        assert_eq!(f.stats.gaps.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn mono_devices_get_the_average_and_other_rates_are_resampled() {
        let (mut f, consumer, _) = feeder(44_100, 1);
        f.on_frame(&header(0, 0), &payload(0));
        let frames = consumer.slots();
        assert!(
            (frames as i64 - 4410).abs() <= 3,
            "{frames} frames at 44.1 kHz"
        );
    }

    #[test]
    fn a_resumed_backlog_is_dropped_to_the_target_with_a_crossfade_and_no_gap() {
        let (mut f, _c, _) = feeder(48_000, 2);
        for seq in 0..3 {
            f.on_frame(&header(seq, 0), &payload(seq));
        }
        // A resume delivers ten chunks at once: playback keeps the buffer near its target.
        for seq in 3..13 {
            f.on_frame(&header(seq, FLAG_RESUMED), &payload(seq));
        }
        let dropped = f.stats.catch_up_dropped.load(Ordering::Relaxed);
        assert!(dropped >= 7, "{dropped} dropped");
        assert!(
            f.level_seconds() <= 0.15 + 0.1 + 0.1,
            "{}",
            f.level_seconds()
        );
        assert_eq!(
            f.stats.gaps.load(Ordering::Relaxed),
            0,
            "received, not missing"
        );
        assert_eq!(f.stats.overflow_samples.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn sequence_jumps_and_skips_are_counted() {
        let (mut f, _c, _) = feeder(48_000, 2);
        f.on_frame(&header(0, 0), &payload(0));
        f.on_frame(&header(5, 0), &payload(5));
        f.on_frame(&header(9, FLAG_DISCONTINUITY), &payload(9));
        assert_eq!(f.stats.gaps.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn a_full_ring_drops_whole_frames_and_counts_them() {
        let (mut f, _c, _) = feeder(48_000, 2);
        for i in 0..25 {
            f.on_frame(&header(i, 0), &payload(i));
        }
        // 2 s of ring, 2.5 s sent (a little less once the drift control starts draining the
        // over-full buffer): the ring is full and the rest is dropped in whole frames.
        let dropped = f.stats.overflow_samples.load(Ordering::Relaxed);
        assert!(dropped > 0 && dropped % 2 == 0, "{dropped}");
        assert_eq!(f.producer.slots(), 0);
        assert!(f.drift.correction() < 0.0, "an over-full buffer is drained");
    }
}
