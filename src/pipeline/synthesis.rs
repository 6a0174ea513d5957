//! The synthesis threads: render ahead of the pacer into each station's ring.
//!
//! On the CPU ([`spawn`]) each station has its own thread. Real-time contract: after `spawn`
//! returns, its loop never allocates, locks, logs or awaits, except on the fault path: a render
//! that panics is caught, counted and the engine rebuilt. It talks to the rest of the server only
//! through atomics in [`SynthesisShared`] and the ring; the pacer turns those counts into metrics.
//!
//! On the GPU, one thread renders every station (see [`super::gpu_engine`]); it drives the same
//! per-station work ([`StationWork`]) as the CPU threads.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ring::{ChunkProducer, RenderedChunk};
use crate::clock::unix_nanos;
use crate::synth::gpu::GpuError;
use crate::synth::Synth;

pub use crate::control::link::{
    control_link, ControlInbox, ControlOutbox, ControlReply, ControlRequest, NotScheduled,
};

/// State shared between the synthesis thread and the rest of the station.
#[derive(Debug)]
pub struct SynthesisShared {
    /// Set to stop the thread.
    stop: AtomicBool,
    /// The next position the pacer will send; synthesis never renders anything older.
    live_position: AtomicU64,
    /// Chunks skipped because the pacer had passed them before they were rendered.
    skipped_chunks: AtomicU64,
    /// Chunks rendered but refused by a full ring.
    overruns: AtomicU64,
    /// Fault injection for tests: while set, the thread renders nothing (as if it were starved).
    /// Off unless a test sets it; production code never does.
    stalled: AtomicBool,
    /// Fault injection for tests: while set, the thread takes no control requests (as if it were
    /// busy for that long). Off unless a test sets it; production code never does.
    controls_held: AtomicBool,
    /// Times a render panicked and the engine was rebuilt.
    restarts: AtomicU64,
    /// Fault injection for tests: this many coming renders panic. Zero unless a test sets it.
    inject_panics: AtomicU32,
    /// Blocks the GPU engine rendered on the CPU instead, by [`FALLBACK_REASONS`] index.
    fallbacks: [AtomicU64; FALLBACK_REASONS.len()],
    /// Fault injection for tests: this many coming GPU batches fail, with this reason index.
    inject_gpu_faults: AtomicU32,
    injected_gpu_reason: AtomicU32,
}

pub use crate::labels::FALLBACK_REASONS;

/// A GPU fault a test can inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuFault {
    DeviceLost,
    Validation,
    Timeout,
}

impl GpuFault {
    fn error(self) -> GpuError {
        match self {
            GpuFault::DeviceLost => GpuError::DeviceLost("injected fault".into()),
            GpuFault::Validation => GpuError::Validation("injected fault".into()),
            GpuFault::Timeout => GpuError::Timeout(Duration::ZERO),
        }
    }

    const ALL: [GpuFault; 3] = [
        GpuFault::DeviceLost,
        GpuFault::Validation,
        GpuFault::Timeout,
    ];
}

impl SynthesisShared {
    /// Shared state for a thread that starts rendering at `start_position`.
    pub fn new(start_position: u64) -> Self {
        Self {
            stop: AtomicBool::new(false),
            live_position: AtomicU64::new(start_position),
            skipped_chunks: AtomicU64::new(0),
            overruns: AtomicU64::new(0),
            stalled: AtomicBool::new(false),
            controls_held: AtomicBool::new(false),
            restarts: AtomicU64::new(0),
            inject_panics: AtomicU32::new(0),
            fallbacks: Default::default(),
            inject_gpu_faults: AtomicU32::new(0),
            injected_gpu_reason: AtomicU32::new(0),
        }
    }

    /// Blocks rendered on the CPU because the GPU failed, per [`FALLBACK_REASONS`] entry.
    pub fn fallbacks(&self) -> [u64; FALLBACK_REASONS.len()] {
        std::array::from_fn(|i| self.fallbacks[i].load(Ordering::Relaxed))
    }

    pub(crate) fn count_fallback(&self, error: &GpuError) {
        self.fallbacks[error.reason_index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Test hook: make the next `count` GPU batches this station is in fail with `fault`.
    pub fn inject_gpu_faults(&self, fault: GpuFault, count: u32) {
        let index = GpuFault::ALL.iter().position(|f| *f == fault).unwrap_or(0);
        self.injected_gpu_reason
            .store(index as u32, Ordering::Release);
        self.inject_gpu_faults.store(count, Ordering::Release);
    }

    pub(crate) fn take_injected_gpu_fault(&self) -> Option<GpuError> {
        self.inject_gpu_faults
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .ok()?;
        let index = self.injected_gpu_reason.load(Ordering::Acquire) as usize;
        Some(GpuFault::ALL[index.min(GpuFault::ALL.len() - 1)].error())
    }

    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Test hook: make the next `count` renders panic, as a bug in the engine would.
    pub fn inject_panics(&self, count: u32) {
        self.inject_panics.store(count, Ordering::Release);
    }

    /// Consumes one injected panic, if any are pending.
    pub(crate) fn take_injected_panic(&self) -> bool {
        self.inject_panics
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Tells synthesis where the live edge is (called by the pacer after each tick).
    pub fn set_live_position(&self, position: u64) {
        self.live_position.store(position, Ordering::Release);
    }

    pub fn live_position(&self) -> u64 {
        self.live_position.load(Ordering::Acquire)
    }

    pub fn skipped_chunks(&self) -> u64 {
        self.skipped_chunks.load(Ordering::Relaxed)
    }

    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// Test hook: stop (or resume) taking control requests, to make them wait past their deadline.
    pub fn hold_controls(&self, held: bool) {
        self.controls_held.store(held, Ordering::Release);
    }

    /// Test hook: stall (or resume) rendering to provoke underruns.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Release);
    }
}

/// A running synthesis thread: one station's on the CPU, every station's on the GPU.
pub struct SynthesisThread {
    pub(crate) stations: Vec<Arc<SynthesisShared>>,
    pub(crate) handle: Option<JoinHandle<()>>,
}

impl SynthesisThread {
    /// Every station's shared state, in the order they were given.
    pub fn stations(&self) -> &[Arc<SynthesisShared>] {
        &self.stations
    }

    /// A cheap handle the pacer keeps to wake the thread when it frees a slot.
    pub fn waker(&self) -> Option<thread::Thread> {
        self.handle.as_ref().map(|h| h.thread().clone())
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        for station in &self.stations {
            station.stop.store(true, Ordering::Release);
        }
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

impl Drop for SynthesisThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings for one synthesis thread.
#[derive(Clone, Copy, Debug)]
pub struct SynthesisSettings {
    /// Position of the first chunk to render.
    pub start_position: u64,
    pub chunk_frames: usize,
    /// Chunks to keep rendered ahead.
    pub target_depth: usize,
    pub chunk_period: Duration,
}

/// What one station brings to a synthesis thread.
pub struct StationInput {
    pub synth: Synth,
    pub producer: ChunkProducer,
    pub controls: ControlInbox,
    pub settings: SynthesisSettings,
}

/// One station's part of a synthesis loop: its engine, ring, control inbox and next position.
pub(crate) struct StationWork {
    pub(crate) synth: Synth,
    pub(crate) producer: ChunkProducer,
    controls: ControlInbox,
    pub(crate) shared: Arc<SynthesisShared>,
    pub(crate) settings: SynthesisSettings,
    /// The position of the next chunk to render.
    pub(crate) next: u64,
}

impl StationWork {
    pub(crate) fn new(input: StationInput) -> Self {
        let shared = Arc::new(SynthesisShared::new(input.settings.start_position));
        Self {
            synth: input.synth,
            producer: input.producer,
            controls: input.controls,
            shared,
            settings: input.settings,
            next: input.settings.start_position,
        }
    }

    pub(crate) fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire) || self.producer.is_abandoned()
    }

    /// Catches up with the live edge and applies waiting control changes; returns a buffer to
    /// render the next chunk into when one is wanted.
    pub(crate) fn prepare(&mut self) -> Option<Box<[f32]>> {
        let frames = self.settings.chunk_frames as u64;
        let live = self.shared.live_position.load(Ordering::Acquire);
        if self.next < live {
            let behind = (live - self.next).div_ceil(frames);
            self.shared
                .skipped_chunks
                .fetch_add(behind, Ordering::Relaxed);
            self.next += behind * frames;
        }
        // Changes land where the control side planned them, never in already rendered audio.
        if !self.shared.controls_held.load(Ordering::Acquire) {
            while let Some(request) = self.controls.pop_request() {
                let result = if Instant::now() > request.deadline {
                    Err(NotScheduled::Expired)
                } else {
                    self.synth
                        .place(request.entry, self.next)
                        .map(|()| request.entry)
                        .map_err(NotScheduled::from)
                };
                self.controls.reply(request.id, result);
            }
        }
        // Render ahead by the target depth counted from the live edge, not by what the ring
        // holds: the pacer takes the next chunk out early to encode it, and that must not make
        // synthesis run further ahead (it would add a chunk of latency).
        let lead_frames = self.settings.target_depth as u64 * self.settings.chunk_frames as u64;
        let wanted = !self.shared.stalled.load(Ordering::Acquire)
            && self.producer.depth() < self.settings.target_depth
            && self.next < self.shared.live_position().saturating_add(lead_frames);
        if wanted {
            self.producer.take_buffer()
        } else {
            None
        }
    }

    /// Counts a caught panic, rebuilds the engine and keeps the buffer for the retry.
    pub(crate) fn recover(&mut self, samples: Box<[f32]>) {
        self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        self.synth.recover();
        self.producer.give_back(samples);
    }

    /// Publishes the rendered chunk; false when the ring refused it (an overrun).
    pub(crate) fn publish(&mut self, samples: Box<[f32]>, render_nanos: u64, on_gpu: bool) -> bool {
        let chunk = RenderedChunk {
            position: self.next,
            rendered_unix_ns: unix_nanos(),
            render_nanos,
            on_gpu,
            samples,
        };
        match self.producer.push(chunk) {
            Ok(()) => {
                self.next += self.settings.chunk_frames as u64;
                true
            }
            Err(refused) => {
                self.shared.overruns.fetch_add(1, Ordering::Relaxed);
                self.producer.give_back(refused.samples);
                false
            }
        }
    }
}

/// Starts the CPU synthesis thread for one station.
///
/// # Errors
/// The OS refused to create the thread.
pub fn spawn(
    name: &str,
    synth: Synth,
    producer: ChunkProducer,
    controls: ControlInbox,
    settings: SynthesisSettings,
) -> std::io::Result<SynthesisThread> {
    let mut work = StationWork::new(StationInput {
        synth,
        producer,
        controls,
        settings,
    });
    let shared = Arc::clone(&work.shared);
    let handle = thread::Builder::new()
        .name(format!("synth-{name}"))
        .spawn(move || cpu_loop(&mut work))?;
    Ok(SynthesisThread {
        stations: vec![shared],
        handle: Some(handle),
    })
}

fn cpu_loop(work: &mut StationWork) {
    let idle_wait = work.settings.chunk_period / 4;
    while !work.stopped() {
        match work.step() {
            Step::Rendered => {}
            Step::Idle | Step::Overrun => thread::park_timeout(idle_wait),
            Step::Recovered => thread::park_timeout(work.settings.chunk_period),
        }
    }
}

/// What one turn of a CPU synthesis loop did, which decides how long the thread rests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// A chunk was rendered and published: look for the next one at once.
    Rendered,
    /// Nothing was due (the ring is at its target depth, or rendering is stalled).
    Idle,
    /// The ring refused the rendered chunk.
    Overrun,
    /// The render panicked; the engine was rebuilt and the chunk will be retried.
    Recovered,
}

/// One station's CPU synthesis, as its thread runs it; public so the real-time contract can be
/// checked on the very code the thread runs.
pub struct CpuStation(StationWork);

impl CpuStation {
    pub fn new(input: StationInput) -> Self {
        Self(StationWork::new(input))
    }

    pub fn shared(&self) -> &Arc<SynthesisShared> {
        &self.0.shared
    }

    /// One turn of the thread's loop. Real-time safe: no allocation, lock, log or await (the
    /// fault path of a panicking render excepted).
    pub fn step(&mut self) -> Step {
        self.0.step()
    }
}

impl StationWork {
    /// One turn of the CPU loop: catch up, take control changes, render one chunk if one is due.
    fn step(&mut self) -> Step {
        let Some(mut samples) = self.prepare() else {
            return Step::Idle;
        };
        let started = Instant::now();
        // A panic in the engine must not take the station down: catch it, rebuild the engine
        // from its timeline and retry after a pause. The pacer meanwhile sends flagged silence
        // (counted as underruns) and listeners stay connected.
        let (synth, shared, next) = (&mut self.synth, &self.shared, self.next);
        let rendered = panic::catch_unwind(AssertUnwindSafe(|| {
            if shared.take_injected_panic() {
                panic!("injected synthesis fault");
            }
            synth.render(next, &mut samples)
        }));
        match rendered {
            Ok(Ok(())) => {}
            // Unreachable with buffers sized at start-up; never send garbage.
            Ok(Err(_)) => samples.fill(0.0),
            Err(_) => {
                self.recover(samples);
                return Step::Recovered;
            }
        }
        let nanos = started.elapsed().as_nanos() as u64;
        if self.publish(samples, nanos, false) {
            Step::Rendered
        } else {
            Step::Overrun
        }
    }
}
