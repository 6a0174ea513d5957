//! The per-station fan-out: each chunk is encoded once and shared with every listener.
//!
//! A `tokio::sync::broadcast` channel carries [`Frame`]s (refcounted `Bytes` per codec, never copied).
//! A listener that falls more than the channel's capacity behind is told it lagged and skips to the
//! live edge; it never slows the pacer or the other listeners. The newest frames are also kept: the
//! newest so a new listener can start at once, the last few seconds so a listener that lost its
//! connection can resume without a gap.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::protocol::{CodecFrames, StreamFormat};
use crate::codec::{Codec, CodecSetup};
use crate::control::TokenBucket;
use crate::mount::{MountPages, MountStream};
use crate::state::Epoch;
use crate::synth::Backend;
use crate::telemetry::live::LiveStats;
use crate::telemetry::metrics::StationMetrics;

/// Chunk periods without a release after which a station no longer counts as ready...
pub const STALE_RELEASE_CHUNKS: u32 = 10;
/// ...and never less than this, so short chunks do not make readiness flap on a brief stall.
pub const STALE_RELEASE_MIN: Duration = Duration::from_secs(1);

/// One encoded chunk, as released by the pacer.
#[derive(Clone, Debug)]
pub struct Frame {
    pub sequence: u64,
    pub position: u64,
    pub flags: u16,
    /// Header and payload for each codec the station offers, ready to send.
    pub frames: CodecFrames,
    /// The chunk as each HTTP mount streams it (an Ogg page, FLAC frames).
    pub mounts: MountPages,
    /// When the pacer popped the chunk off the ring (start of delivery latency).
    pub popped_at: Instant,
}

/// Counters for `/api/status`, kept here so status never parses the metrics text.
#[derive(Debug, Default)]
pub struct StationStats {
    pub listeners: AtomicU64,
    pub chunks_published: AtomicU64,
    pub underruns: AtomicU64,
    pub overruns: AtomicU64,
    pub ring_depth_chunks: AtomicU64,
    pub last_sequence: AtomicU64,
    pub last_position: AtomicU64,
    /// Set once the pacer released its first chunk.
    pub live: AtomicBool,
    /// When the pacer last released a chunk, as ns since the hub was created (monotonic).
    pub last_release_nanos: AtomicU64,
    /// Totals for the live dashboard (the Prometheus counters cannot be read back).
    pub chunks_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub send_errors: AtomicU64,
    pub dropped: AtomicU64,
    /// Listeners and bytes sent per codec (indexed by [`Codec::index`]).
    pub listeners_by_codec: [AtomicU64; Codec::COUNT],
    pub bytes_by_codec: [AtomicU64; Codec::COUNT],
}

/// A station as listeners see it.
pub struct StationHub {
    pub name: String,
    pub seed: u64,
    pub backend: Backend,
    /// The stream before encoding (the codec field names the station's default codec).
    pub format: StreamFormat,
    /// What the station offers, its default first, with what each decoder needs.
    pub codecs: Vec<CodecSetup>,
    pub chunk_ms: u32,
    /// What every Ogg page of the station's mounts shares (serial number, title).
    pub mount: MountStream,
    pub ring_capacity_chunks: usize,
    pub metrics: StationMetrics,
    pub stats: StationStats,
    /// Windowed latency histograms for the live dashboard.
    pub live: LiveStats,
    /// Fault injection for tests: delay the next release by this many ms (once). Zero unless a
    /// test sets it; production code never does.
    delay_next_release_ms: AtomicU64,
    /// The origin of `stats.last_release_nanos`.
    created: Instant,
    sender: broadcast::Sender<Frame>,
    /// The newest frames in sequence order (the newest last): the retained window.
    retained: Mutex<VecDeque<Frame>>,
    resume: ResumeSettings,
    /// True once the chunks from before this process started are in `retained` (or when none
    /// will be rendered): a resume that reaches back that far waits for it.
    backfilled: watch::Sender<bool>,
    /// Resumes the station accepts per second (a flood gets the live edge).
    resume_bucket: Mutex<TokenBucket>,
}

/// How a station's listeners resume.
#[derive(Clone, Debug)]
pub struct ResumeSettings {
    /// The station's epoch (from its control log).
    pub epoch: Epoch,
    /// Chunks kept for resumes (at least 1: the newest, for new listeners).
    pub window_chunks: usize,
    /// Chunks from before this process started will be handed in with [`StationHub::backfill`].
    pub backfill_pending: bool,
    /// Resumes accepted at once, and per second after that.
    pub burst: u32,
    pub per_second: f64,
}

impl Default for ResumeSettings {
    fn default() -> Self {
        Self {
            epoch: Epoch::fresh(),
            window_chunks: 1,
            backfill_pending: false,
            burst: 1,
            per_second: 1.0,
        }
    }
}

/// What a resume can be served from.
pub enum Retained {
    /// The frames from the asked-for sequence to the newest, in order.
    Frames(Vec<Frame>),
    /// The sequence is older than anything retained.
    TooOld,
    /// The sequence has not been released yet (`newest` is the newest that has).
    Future { newest: Option<u64> },
}

impl StationHub {
    /// A hub whose listeners may fall `queue_chunks` chunks behind before skipping ahead. The
    /// chunk period follows from `format` (frames per chunk at its sample rate).
    pub fn new(
        name: String,
        seed: u64,
        backend: Backend,
        format: StreamFormat,
        codecs: Vec<CodecSetup>,
        ring_capacity_chunks: usize,
        queue_chunks: usize,
    ) -> Self {
        let chunk_ms = (u64::from(format.frames_per_chunk) * 1000
            / u64::from(format.sample_rate.max(1))) as u32;
        let metrics = StationMetrics::new(&name, backend.as_str());
        let (sender, _) = broadcast::channel(queue_chunks.max(1));
        let resume = ResumeSettings::default();
        let mount = MountStream::new(
            &name,
            resume.epoch.as_str(),
            format.sample_rate,
            format.frames_per_chunk,
        );
        Self {
            name,
            seed,
            backend,
            format,
            codecs,
            chunk_ms,
            mount,
            ring_capacity_chunks,
            metrics,
            stats: StationStats::default(),
            live: LiveStats::default(),
            delay_next_release_ms: AtomicU64::new(0),
            created: Instant::now(),
            sender,
            retained: Mutex::new(VecDeque::with_capacity(1)),
            resume,
            backfilled: watch::Sender::new(true),
            resume_bucket: Mutex::new(TokenBucket::new(1, 1.0)),
        }
    }

    /// The hub with these resume settings (before it is shared).
    pub fn with_resume(mut self, resume: ResumeSettings) -> Self {
        self.retained = Mutex::new(VecDeque::with_capacity(resume.window_chunks.max(1)));
        self.backfilled = watch::Sender::new(!resume.backfill_pending);
        self.resume_bucket = Mutex::new(TokenBucket::new(resume.burst, resume.per_second));
        self.mount = MountStream::new(
            &self.name,
            resume.epoch.as_str(),
            self.format.sample_rate,
            self.format.frames_per_chunk,
        );
        self.resume = resume;
        self
    }

    pub fn epoch(&self) -> &Epoch {
        &self.resume.epoch
    }

    /// How many chunks back a resume can reach.
    pub fn resume_window_chunks(&self) -> usize {
        self.resume.window_chunks
    }

    /// Takes one resume from the station's budget; false when resumes are coming too fast.
    pub fn try_resume(&self) -> bool {
        self.resume_bucket
            .lock()
            .map(|mut bucket| bucket.try_take(Instant::now()).is_ok())
            .unwrap_or(false)
    }

    /// Hands in the chunks from before this process started, oldest first, rendered again:
    /// they go in front of what the pacer released since (within the window).
    pub fn backfill(&self, frames: Vec<Frame>) {
        if let Ok(mut retained) = self.retained.lock() {
            let first_live = retained.front().map(|f| f.sequence);
            let older = frames
                .into_iter()
                .rev()
                .filter(|f| first_live.is_none_or(|first| f.sequence < first));
            for frame in older {
                if retained.len() >= self.resume.window_chunks.max(1) {
                    break;
                }
                retained.push_front(frame);
            }
        }
        self.backfilled.send_replace(true);
    }

    /// Waits (at most `limit`) until the chunks from before this process started are retained.
    pub async fn wait_backfilled(&self, limit: Duration) {
        let mut done = self.backfilled.subscribe();
        let _ = tokio::time::timeout(limit, done.wait_for(|done| *done)).await;
    }

    /// The retained frames from sequence `from` on.
    pub fn retained_from(&self, from: u64) -> Retained {
        let Ok(retained) = self.retained.lock() else {
            return Retained::TooOld;
        };
        let newest = retained.back().map(|f| f.sequence);
        match (retained.front(), newest) {
            (_, Some(newest)) if from > newest + 1 => Retained::Future {
                newest: Some(newest),
            },
            (None, None) => Retained::Future { newest: None },
            (Some(oldest), _) if from < oldest.sequence => Retained::TooOld,
            _ => Retained::Frames(
                retained
                    .iter()
                    .filter(|f| f.sequence >= from)
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// Releases a frame to every listener.
    pub fn publish(&self, frame: Frame) {
        self.stats
            .last_sequence
            .store(frame.sequence, Ordering::Relaxed);
        self.stats
            .last_position
            .store(frame.position, Ordering::Relaxed);
        self.stats.chunks_published.fetch_add(1, Ordering::Relaxed);
        let released = frame.popped_at.saturating_duration_since(self.created);
        self.stats
            .last_release_nanos
            .store(released.as_nanos() as u64, Ordering::Relaxed);
        self.stats.live.store(true, Ordering::Release);
        if let Ok(mut retained) = self.retained.lock() {
            while retained.len() >= self.resume.window_chunks.max(1) {
                retained.pop_front();
            }
            retained.push_back(frame.clone());
        }
        // No receivers is fine: nobody is listening right now.
        let _ = self.sender.send(frame);
    }

    /// Subscribes to the live stream; also returns the newest frame so playback can start at once.
    /// Frames in the receiver with a sequence at or below the returned frame's are duplicates.
    pub fn subscribe(&self) -> (Option<Frame>, broadcast::Receiver<Frame>) {
        let receiver = self.sender.subscribe();
        let latest = self.retained.lock().ok().and_then(|r| r.back().cloned());
        (latest, receiver)
    }

    /// Audio waiting in the ring at the last release, in seconds.
    pub fn ring_depth_seconds(&self) -> f64 {
        self.stats.ring_depth_chunks.load(Ordering::Relaxed) as f64 * self.chunk_seconds()
    }

    pub fn ring_capacity_seconds(&self) -> f64 {
        self.ring_capacity_chunks as f64 * self.chunk_seconds()
    }

    fn chunk_seconds(&self) -> f64 {
        self.chunk_ms as f64 / 1000.0
    }

    /// Copies the listeners' chunk and byte totals, kept in [`StationStats`] (each session's tally
    /// adds to them), into their Prometheus counters: called before `/metrics` renders, so each
    /// total is counted in one place.
    pub fn mirror_totals(&self) {
        self.metrics
            .chunks_sent
            .absolute(self.stats.chunks_sent.load(Ordering::Relaxed));
        self.metrics
            .bytes_sent
            .absolute(self.stats.bytes_sent.load(Ordering::Relaxed));
        for codec in Codec::ALL {
            let i = codec.index();
            self.metrics.codec_bytes_sent[i]
                .absolute(self.stats.bytes_by_codec[i].load(Ordering::Relaxed));
            self.metrics.codec_listeners[i]
                .set(self.stats.listeners_by_codec[i].load(Ordering::Relaxed) as f64);
        }
    }

    /// What `codec` needs announced, if the station offers it.
    pub fn codec_setup(&self, codec: Codec) -> Option<&CodecSetup> {
        self.codecs.iter().find(|s| s.codec == codec)
    }

    /// What a client that names no codec gets.
    pub fn default_codec(&self) -> Codec {
        self.codecs.first().map_or(Codec::PcmS16Le, |s| s.codec)
    }

    /// Counts a failed write to a listener, on `/metrics` and for the live dashboard.
    pub fn count_send_error(&self) {
        self.metrics.send_errors.increment(1);
        self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Test hook: hold the next chunk back by `delay` (a known send delay for jitter tests).
    pub fn delay_next_release(&self, delay: std::time::Duration) {
        self.delay_next_release_ms
            .store(delay.as_millis() as u64, Ordering::Release);
    }

    /// The injected delay, if any, consumed (the pacer calls this once per tick).
    pub fn take_release_delay(&self) -> Option<std::time::Duration> {
        match self.delay_next_release_ms.swap(0, Ordering::AcqRel) {
            0 => None,
            ms => Some(std::time::Duration::from_millis(ms)),
        }
    }

    pub fn is_live(&self) -> bool {
        self.stats.live.load(Ordering::Acquire)
    }

    /// True when the pacer has released a chunk within the last [`STALE_RELEASE_CHUNKS`] periods
    /// (at least [`STALE_RELEASE_MIN`]):
    /// what readiness follows, so a pacer that died or hangs takes the station out of rotation.
    pub fn is_releasing(&self, now: Instant) -> bool {
        if !self.is_live() {
            return false;
        }
        let last = Duration::from_nanos(self.stats.last_release_nanos.load(Ordering::Relaxed));
        let age = now
            .saturating_duration_since(self.created)
            .saturating_sub(last);
        let stale = Duration::from_millis(u64::from(self.chunk_ms)) * STALE_RELEASE_CHUNKS;
        age <= stale.max(STALE_RELEASE_MIN)
    }
}
