//! The pacer: releases exactly one chunk per period, on absolute deadlines.
//!
//! Deadline `k` is `start + k * period`, so timer lateness never accumulates into drift. An empty
//! ring is an underrun: the pacer sends flagged silence for that position and the clock keeps
//! going; synthesis, told where the live edge is, skips what it missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::Thread;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::ring::{ChunkConsumer, RenderedChunk};
use super::synthesis::SynthesisShared;
use crate::clock::unix_nanos;
use crate::codec::{Codec, StationEncoders};
use crate::mount::MountPages;
use crate::stream::hub::{Frame, StationHub};
use crate::stream::protocol::{
    frame_with_payload, CodecFrames, FrameHeader, FLAG_DISCONTINUITY, FLAG_UNDERRUN_FILL,
};

/// Release intervals kept for the standard-deviation gauge.
const INTERVAL_WINDOW: usize = 50;
/// Later than this behind its deadline, the pacer stops bursting to catch up and jumps instead.
const MAX_CATCH_UP: Duration = Duration::from_secs(1);
/// Underruns are logged as one warning per this interval at most, with the count since the last.
const UNDERRUN_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Events counted for a log line that goes out at most once per [`UNDERRUN_LOG_INTERVAL`].
#[derive(Debug, Default)]
struct LogBudget {
    unlogged: u64,
    last: Option<Instant>,
}

impl LogBudget {
    fn add(&mut self, events: u64) {
        self.unlogged += events;
    }

    /// The events to report now, if any are waiting and the last line is old enough.
    fn take_due(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|last| now.saturating_duration_since(last) >= UNDERRUN_LOG_INTERVAL);
        if self.unlogged == 0 || !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}
/// One encoded payload per codec (`None`: not offered, or its encoder failed on this chunk).
type Payloads = [Option<Vec<u8>>; Codec::COUNT];

/// A chunk encoded ahead of its deadline.
struct Prepared {
    position: u64,
    rendered_unix_ns: u64,
    render_nanos: u64,
    on_gpu: bool,
    payloads: Payloads,
}

/// One released chunk in this many is logged (at debug level): a pulse, not a line per chunk.
const CHUNK_LOG_SAMPLE: u64 = 600;

/// One station's pacer state (the timing loop is [`run`]).
pub struct Pacer {
    consumer: ChunkConsumer,
    synthesis: Arc<SynthesisShared>,
    waker: Option<Thread>,
    /// Header fields that never change; sequence, position, flags and times are filled per chunk.
    template: FrameHeader,
    /// One encoder per codec the station offers, fed every chunk (silence too) in order.
    encoders: StationEncoders,
    /// Reused payload buffer, and the samples of an underrun's silence.
    scratch: Vec<u8>,
    silence: Box<[f32]>,
    encode_log: LogBudget,
    chunk_frames: u64,
    chunk_seconds: f64,
    next_position: u64,
    next_sequence: u64,
    /// Flags for the next frame (a discontinuity after a jump).
    pending_flags: u16,
    /// A chunk popped too early (ahead of the live position); sent when its time comes.
    early: Option<RenderedChunk>,
    /// The next chunk, encoded right after the previous release so that encoding never sits
    /// between a deadline and the send.
    prepared: Option<Prepared>,
    intervals: [f64; INTERVAL_WINDOW],
    interval_count: usize,
    last_release: Option<Instant>,
    seen_overruns: u64,
    seen_skips: u64,
    seen_restarts: u64,
    seen_fallbacks: [u64; crate::pipeline::synthesis::FALLBACK_REASONS.len()],
    /// GPU fallbacks and engine restarts not yet reported in a log line.
    fallback_log: LogBudget,
    restart_log: LogBudget,
    /// Underruns not yet reported in a log line, and when the last line went out.
    unlogged_underruns: u64,
    last_underrun_log: Option<Instant>,
}

impl Pacer {
    /// A pacer starting at `start_position` (sequence number `start_position / chunk_frames`).
    pub fn new(
        consumer: ChunkConsumer,
        synthesis: Arc<SynthesisShared>,
        waker: Option<Thread>,
        template: FrameHeader,
        encoders: StationEncoders,
        start_position: u64,
    ) -> Self {
        let chunk_frames = template.frames as u64;
        let samples = template.frames as usize * template.channels as usize;
        Self {
            encoders,
            scratch: Vec::with_capacity(samples * 2),
            silence: vec![0.0; samples].into_boxed_slice(),
            encode_log: LogBudget::default(),
            consumer,
            synthesis,
            waker,
            chunk_seconds: chunk_frames as f64 / template.sample_rate as f64,
            template,
            chunk_frames,
            next_position: start_position,
            next_sequence: start_position / chunk_frames.max(1),
            pending_flags: 0,
            early: None,
            prepared: None,
            intervals: [0.0; INTERVAL_WINDOW],
            interval_count: 0,
            last_release: None,
            seen_overruns: 0,
            seen_skips: 0,
            seen_restarts: 0,
            seen_fallbacks: Default::default(),
            fallback_log: LogBudget::default(),
            restart_log: LogBudget::default(),
            unlogged_underruns: 0,
            last_underrun_log: None,
        }
    }

    /// Chunks rendered and not yet released (in the ring, or taken out early or encoded).
    pub fn depth(&self) -> usize {
        self.consumer.depth()
            + usize::from(self.early.is_some())
            + usize::from(self.prepared.is_some())
    }

    /// Jumps the stream `chunks` ahead (the pacer fell too far behind); the next frame is flagged.
    pub fn skip(&mut self, chunks: u64) {
        self.next_position += chunks * self.chunk_frames;
        self.next_sequence += chunks;
        self.pending_flags |= FLAG_DISCONTINUITY;
        self.synthesis.set_live_position(self.next_position);
    }

    /// The chunk for the current position, or `None` when synthesis has not rendered it.
    fn take_current(&mut self, hub: &StationHub) -> Option<RenderedChunk> {
        let position = self.next_position;
        loop {
            let chunk = match self.early.take() {
                Some(chunk) => chunk,
                None => self.consumer.pop()?,
            };
            if chunk.position == position {
                return Some(chunk);
            }
            if chunk.position > position {
                self.early = Some(chunk);
                return None;
            }
            // Rendered too late: silence already went out for this position.
            hub.metrics.overruns.increment(1);
            hub.stats.overruns.fetch_add(1, Ordering::Relaxed);
            self.consumer.recycle(chunk.samples);
        }
    }

    /// Produces and publishes the frame for the current position, advances, and encodes the next
    /// chunk if synthesis has rendered it already.
    pub fn release(&mut self, hub: &StationHub, now: Instant) -> Frame {
        let prepared = match self.prepared.take() {
            Some(prepared) if prepared.position == self.next_position => Some(prepared),
            Some(stale) => {
                // The stream skipped past it (see `skip`): rendered, never sent.
                hub.metrics.overruns.increment(1);
                hub.stats.overruns.fetch_add(1, Ordering::Relaxed);
                drop(stale);
                self.take_current(hub).map(|chunk| self.prepare(hub, chunk))
            }
            None => self.take_current(hub).map(|chunk| self.prepare(hub, chunk)),
        };
        let depth = self.depth();
        let mut header = FrameHeader {
            flags: std::mem::take(&mut self.pending_flags),
            sequence: self.next_sequence,
            position: self.next_position,
            sent_unix_ns: unix_nanos(),
            ..self.template
        };
        let payloads = match prepared {
            Some(prepared) => {
                header.rendered_unix_ns = prepared.rendered_unix_ns;
                self.record_synthesis(hub, &prepared);
                prepared.payloads
            }
            None => {
                header.flags |= FLAG_UNDERRUN_FILL;
                header.rendered_unix_ns = header.sent_unix_ns;
                hub.metrics.underruns.increment(1);
                hub.stats.underruns.fetch_add(1, Ordering::Relaxed);
                self.unlogged_underruns += 1;
                // Silence goes through the encoders too: their state stays continuous.
                let silence = std::mem::take(&mut self.silence);
                let payloads = self.encode(hub, header.position, &silence);
                self.silence = silence;
                payloads
            }
        };
        let mut frames = CodecFrames::default();
        for codec in Codec::ALL {
            if let Some(payload) = &payloads[codec.index()] {
                frames.set(codec, frame_with_payload(&header, codec, payload));
            }
        }
        self.next_position += self.chunk_frames;
        self.next_sequence += 1;
        self.synthesis.set_live_position(self.next_position);
        if let Some(waker) = &self.waker {
            waker.unpark();
        }
        self.record_ring(hub, depth);
        self.record_interval(hub, now);
        self.log(hub, &header, depth, now);
        let frame = Frame {
            sequence: header.sequence,
            position: header.position,
            flags: header.flags,
            mounts: MountPages::build(&hub.mount, header.sequence, header.position, &frames),
            frames,
            popped_at: now,
        };
        hub.publish(frame.clone());
        // Encode the next chunk now, between deadlines, if it is already rendered.
        if let Some(chunk) = self.take_current(hub) {
            self.prepared = Some(self.prepare(hub, chunk));
        }
        frame
    }

    /// Encodes a rendered chunk with every codec and hands its buffer back to synthesis.
    fn prepare(&mut self, hub: &StationHub, chunk: RenderedChunk) -> Prepared {
        let payloads = self.encode(hub, chunk.position, &chunk.samples);
        let prepared = Prepared {
            position: chunk.position,
            rendered_unix_ns: chunk.rendered_unix_ns,
            render_nanos: chunk.render_nanos,
            on_gpu: chunk.on_gpu,
            payloads,
        };
        self.consumer.recycle(chunk.samples);
        prepared
    }

    /// How long the released chunk took to render, under the backend that rendered it.
    fn record_synthesis(&self, hub: &StationHub, chunk: &Prepared) {
        let render_seconds = chunk.render_nanos as f64 / 1e9;
        // Each series means one backend: a GPU station's fallback blocks are CPU renders.
        let fallback = hub
            .metrics
            .fallback_synthesis_duration
            .as_ref()
            .filter(|_| !chunk.on_gpu);
        match fallback {
            Some(histogram) => histogram.record(render_seconds),
            None => hub.metrics.synthesis_duration.record(render_seconds),
        }
        hub.live.synthesis.record(render_seconds);
        if render_seconds > 0.0 && fallback.is_none() {
            hub.metrics
                .realtime_factor
                .set(self.chunk_seconds / render_seconds);
        }
    }

    /// Every codec's payload for the chunk at `position`; the time each encoder took is recorded
    /// per codec. A codec that fails leaves its payload out (its listeners see a sequence gap),
    /// and is logged.
    fn encode(&mut self, hub: &StationHub, position: u64, samples: &[f32]) -> Payloads {
        let mut payloads = Payloads::default();
        let mut failures = 0;
        self.encoders.encode(
            samples,
            position,
            &mut self.scratch,
            |codec, payload, took| {
                hub.metrics.encode_duration[codec.index()].record(took.as_secs_f64());
                hub.live.encode[codec.index()].record(took.as_secs_f64());
                match payload {
                    Ok(payload) => payloads[codec.index()] = Some(payload.to_vec()),
                    Err(error) => {
                        failures += 1;
                        tracing::debug!(station = %hub.name, %error, "chunk not encoded");
                    }
                }
            },
        );
        self.encode_log.add(failures);
        if let Some(chunks) = self.encode_log.take_due(Instant::now()) {
            tracing::warn!(
                station = %hub.name,
                chunks,
                "an encoder failed; its listeners missed these chunks"
            );
        }
        payloads
    }

    /// Rate-limited warnings for underruns, and a sampled debug line for the stream's pulse.
    fn log(&mut self, hub: &StationHub, header: &FrameHeader, depth: usize, now: Instant) {
        let due = self
            .last_underrun_log
            .is_none_or(|last| now.saturating_duration_since(last) >= UNDERRUN_LOG_INTERVAL);
        if self.unlogged_underruns > 0 && due {
            tracing::warn!(
                station = %hub.name,
                underruns = self.unlogged_underruns,
                since_last_report_s = self.last_underrun_log.map(|t| now.saturating_duration_since(t).as_secs()),
                "synthesis fell behind: listeners got flagged silence"
            );
            self.unlogged_underruns = 0;
            self.last_underrun_log = Some(now);
        }
        if header.sequence.is_multiple_of(CHUNK_LOG_SAMPLE) {
            tracing::debug!(
                station = %hub.name,
                sequence = header.sequence,
                position = header.position,
                ring_depth_chunks = depth,
                flags = header.flags,
                "chunk released (one in {CHUNK_LOG_SAMPLE})"
            );
        }
    }

    fn record_ring(&mut self, hub: &StationHub, depth: usize) {
        hub.metrics
            .ring_depth
            .set(depth as f64 * self.chunk_seconds);
        hub.metrics
            .ring_utilization
            .set(depth as f64 / self.consumer.capacity().max(1) as f64);
        hub.stats
            .ring_depth_chunks
            .store(depth as u64, Ordering::Relaxed);
        let overruns = self.synthesis.overruns();
        hub.metrics
            .overruns
            .increment(overruns - self.seen_overruns);
        hub.stats
            .overruns
            .fetch_add(overruns - self.seen_overruns, Ordering::Relaxed);
        self.seen_overruns = overruns;
        let fallbacks = self.synthesis.fallbacks();
        for (i, (now, seen)) in fallbacks.iter().zip(&mut self.seen_fallbacks).enumerate() {
            if now > seen {
                hub.metrics.fallbacks[i].increment(now - *seen);
                self.fallback_log.add(now - *seen);
                *seen = *now;
            }
        }
        let restarts = self.synthesis.restarts();
        if restarts > self.seen_restarts {
            hub.metrics
                .synthesis_restarts
                .increment(restarts - self.seen_restarts);
            self.restart_log.add(restarts - self.seen_restarts);
            self.seen_restarts = restarts;
        }
        // One line per 10 s at most: an engine that panics (or a GPU that fails) on every block
        // must not flood the log.
        let now = Instant::now();
        if let Some(blocks) = self.fallback_log.take_due(now) {
            tracing::warn!(
                station = %hub.name,
                blocks,
                "the GPU failed; blocks were rendered on the CPU (see auralis_synthesis_fallbacks_total)"
            );
        }
        if let Some(restarts) = self.restart_log.take_due(now) {
            tracing::error!(
                station = %hub.name,
                restarts,
                "synthesis engine panicked and was restarted; listeners got flagged silence meanwhile"
            );
        }
        let skips = self.synthesis.skipped_chunks();
        hub.metrics
            .synthesis_skipped
            .increment(skips - self.seen_skips);
        self.seen_skips = skips;
    }

    fn record_interval(&mut self, hub: &StationHub, now: Instant) {
        if let Some(last) = self.last_release.replace(now) {
            let interval = now.duration_since(last).as_secs_f64();
            self.intervals[self.interval_count % INTERVAL_WINDOW] = interval;
            self.interval_count += 1;
            let n = self.interval_count.min(INTERVAL_WINDOW);
            let window = &self.intervals[..n];
            let mean = window.iter().sum::<f64>() / n as f64;
            let variance = window.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
            hub.metrics.interval_stddev.set(variance.sqrt());
        }
    }
}

/// Drives a pacer until `shutdown` turns true: releases the first chunk at `first_deadline` (the
/// moment its position comes due on the wall clock), then one chunk per `period` on absolute
/// deadlines. Synthesis fills the ring in the meantime.
pub async fn run(
    mut pacer: Pacer,
    hub: Arc<StationHub>,
    period: Duration,
    first_deadline: Instant,
    mut shutdown: watch::Receiver<bool>,
) {
    let start = first_deadline;
    // u64: at 10 ms chunks a u32 tick would wrap after 497 days.
    let mut tick: u64 = 0;
    let period_nanos = period.as_nanos() as u64;
    loop {
        let deadline = start + Duration::from_nanos(period_nanos.saturating_mul(tick));
        tokio::select! {
            _ = sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        if let Some(delay) = hub.take_release_delay() {
            tokio::time::sleep(delay).await;
        }
        let now = Instant::now();
        let late = now.saturating_duration_since(deadline);
        hub.metrics.pacer_late.record(late.as_secs_f64());
        if late > MAX_CATCH_UP {
            // Stalled for a long time (e.g. the host was suspended): jump to the present rather
            // than burst a second of audio at listeners.
            let missed = (late.as_nanos() / period.as_nanos().max(1)) as u64;
            pacer.skip(missed);
            tick += missed;
            tracing::warn!(station = %hub.name, missed, "pacer fell behind; skipped to the live edge");
        }
        pacer.release(&hub, now);
        tick += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ring::{chunk_ring, ChunkProducer};
    use crate::stream::protocol::{Codec, StreamFormat};
    use crate::synth::Backend;

    const FRAMES: u32 = 480;

    fn template() -> FrameHeader {
        FrameHeader {
            codec: Codec::PcmS16Le,
            channels: 2,
            sample_rate: 4800,
            frames: FRAMES,
            flags: 0,
            sequence: 0,
            position: 0,
            rendered_unix_ns: 0,
            sent_unix_ns: 0,
        }
    }

    fn encoders() -> StationEncoders {
        let settings = crate::codec::CodecSettings {
            offered: vec![Codec::PcmS16Le],
            ..Default::default()
        };
        let format = crate::codec::PcmFormat {
            sample_rate: 4800,
            channels: 2,
            frames_per_chunk: FRAMES,
        };
        StationEncoders::new(&settings, format).unwrap()
    }

    fn hub(name: &str) -> Arc<StationHub> {
        Arc::new(StationHub::new(
            name.to_string(),
            1,
            Backend::Cpu,
            StreamFormat::pcm(4800, 2, FRAMES),
            encoders().setups().to_vec(),
            8,
            64,
        ))
    }

    fn push(producer: &mut ChunkProducer, position: u64, value: f32) {
        let mut samples = producer.take_buffer().unwrap();
        samples.fill(value);
        producer
            .push(RenderedChunk {
                position,
                rendered_unix_ns: 1,
                render_nanos: 1000,
                on_gpu: false,
                samples,
            })
            .unwrap();
    }

    fn setup(name: &str) -> (ChunkProducer, Pacer, Arc<StationHub>, Arc<SynthesisShared>) {
        let (producer, consumer) = chunk_ring(8, FRAMES as usize * 2);
        let shared = Arc::new(SynthesisShared::new(0));
        let pacer = Pacer::new(
            consumer,
            Arc::clone(&shared),
            None,
            template(),
            encoders(),
            0,
        );
        (producer, pacer, hub(name), shared)
    }

    #[tokio::test(start_paused = true)]
    async fn releases_on_absolute_deadlines_and_fills_underruns() {
        let (mut producer, pacer, hub, shared) = setup("pacer-test-a");
        push(&mut producer, 0, 0.5);
        push(&mut producer, FRAMES as u64, 0.5);
        let (_, mut rx) = hub.subscribe();
        let (stop_tx, stop_rx) = watch::channel(false);
        let period = Duration::from_millis(100);
        let task = tokio::spawn(run(
            pacer,
            Arc::clone(&hub),
            period,
            Instant::now(),
            stop_rx,
        ));

        let start = Instant::now();
        let mut frames = Vec::new();
        for i in 0..5 {
            frames.push((rx.recv().await.unwrap(), Instant::now()));
            if i == 1 {
                // The third release wakes 30 ms late (as a busy runtime would make it).
                hub.delay_next_release(Duration::from_millis(30));
            }
        }
        stop_tx.send(true).unwrap();
        task.await.unwrap();

        for (i, (frame, _)) in frames.iter().enumerate() {
            assert_eq!(frame.sequence, i as u64);
            assert_eq!(frame.position, i as u64 * FRAMES as u64);
            let (header, payload) =
                FrameHeader::decode(frame.frames.get(Codec::PcmS16Le).unwrap()).unwrap();
            assert_eq!(header.sequence, frame.sequence);
            if i < 2 {
                assert_eq!(header.flags, 0);
                assert!(payload.iter().any(|b| *b != 0));
            } else {
                assert_eq!(
                    header.flags, FLAG_UNDERRUN_FILL,
                    "frame {i} is flagged silence"
                );
                assert!(payload.iter().all(|b| *b == 0));
            }
        }
        // Absolute deadlines: the late release does not push the later ones back (relative
        // sleeps would release the last two at 330 and 430 ms).
        let released_ms: Vec<u128> = frames
            .iter()
            .map(|(_, at)| (*at - start).as_millis())
            .collect();
        assert_eq!(released_ms, [0, 100, 230, 300, 400]);
        assert_eq!(hub.stats.underruns.load(Ordering::Relaxed), 3);
        assert_eq!(shared.live_position(), 5 * FRAMES as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn late_chunks_are_discarded_and_counted() {
        let (mut producer, mut pacer, hub, _shared) = setup("pacer-test-b");
        let now = Instant::now();
        // Position 0 is missing: underrun. Then the chunk for 0 arrives late, followed by 1.
        let first = pacer.release(&hub, now);
        assert_eq!(first.flags, FLAG_UNDERRUN_FILL);
        push(&mut producer, 0, 0.1);
        push(&mut producer, FRAMES as u64, 0.2);
        let second = pacer.release(&hub, now);
        assert_eq!(second.position, FRAMES as u64);
        assert_eq!(second.flags, 0);
        assert_eq!(hub.stats.overruns.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_chunk_ahead_of_time_waits_for_its_slot() {
        let (mut producer, mut pacer, hub, _shared) = setup("pacer-test-c");
        push(&mut producer, FRAMES as u64, 0.3);
        let now = Instant::now();
        assert_eq!(pacer.release(&hub, now).flags, FLAG_UNDERRUN_FILL);
        let next = pacer.release(&hub, now);
        assert_eq!((next.position, next.flags), (FRAMES as u64, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_stall_jumps_ahead_with_a_discontinuity() {
        let (_producer, mut pacer, hub, shared) = setup("pacer-test-d");
        let now = Instant::now();
        pacer.release(&hub, now);
        pacer.skip(30);
        let frame = pacer.release(&hub, now);
        assert_eq!(frame.sequence, 31);
        assert_ne!(frame.flags & FLAG_DISCONTINUITY, 0);
        assert_eq!(shared.live_position(), 32 * FRAMES as u64);
    }

    #[tokio::test(start_paused = true)]
    async fn the_next_chunk_is_encoded_between_deadlines_and_a_skip_discards_it() {
        let (mut producer, mut pacer, hub, _shared) = setup("pacer-test-e");
        push(&mut producer, 0, 0.1);
        push(&mut producer, FRAMES as u64, 0.2);
        let now = Instant::now();
        pacer.release(&hub, now);
        // Chunk 1 left the ring right after chunk 0 went out, already encoded.
        assert_eq!(
            pacer.prepared.as_ref().map(|p| p.position),
            Some(FRAMES as u64)
        );
        assert_eq!(pacer.depth(), 1);
        let frame = pacer.release(&hub, now);
        let (header, payload) =
            FrameHeader::decode(frame.frames.get(Codec::PcmS16Le).unwrap()).unwrap();
        assert_eq!((header.position, header.flags), (FRAMES as u64, 0));
        let expected = crate::codec::f32_to_s16(0.2).to_le_bytes();
        assert!(payload.chunks_exact(2).all(|s| s == expected));

        push(&mut producer, 2 * FRAMES as u64, 0.3);
        pacer.release(&hub, now); // chunk 2, taken at its deadline
        push(&mut producer, 3 * FRAMES as u64, 0.4);
        pacer.release(&hub, now);
        assert!(pacer.prepared.is_none(), "nothing rendered for chunk 4 yet");
        push(&mut producer, 4 * FRAMES as u64, 0.5);
        push(&mut producer, 5 * FRAMES as u64, 0.6);
        pacer.release(&hub, now);
        assert_eq!(
            pacer.prepared.as_ref().map(|p| p.position),
            Some(5 * FRAMES as u64)
        );
        pacer.skip(3);
        let frame = pacer.release(&hub, now);
        assert_eq!(frame.position, 8 * FRAMES as u64);
        assert_ne!(
            frame.flags & FLAG_UNDERRUN_FILL,
            0,
            "the prepared chunk 5 was skipped"
        );
    }
}
