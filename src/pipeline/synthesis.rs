//! The synthesis threads: render ahead of the pacer into each station's ring.
//!
//! On the CPU ([`spawn`]) each station has its own thread. Real-time contract: after `spawn`
//! returns, its loop never allocates, locks, logs or awaits, except on the fault path: a render
//! that panics is caught, counted and the engine rebuilt. It talks to the rest of the server only
//! through atomics in [`SynthesisShared`] and the ring; the pacer turns those counts into metrics.
//!
//! On the GPU ([`spawn_gpu`]) one thread composes every due station's block and renders them all
//! in one submission. wgpu locks and allocates inside its calls, so that thread is not real-time
//! safe; it owns the ring producers all the same, and the rings' render-ahead (`--buffer-ms`)
//! absorbs its variance. A batch that fails or is late is rendered on the CPU at once.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ring::{ChunkProducer, RenderedChunk};
use super::unix_nanos;
use crate::synth::gpu::{GpuError, GpuRenderer};
use crate::synth::{ControlEntry, MusicParams, ScheduleFull, Synth};

/// A parameter change on its way to the synthesis thread.
#[derive(Clone, Copy, Debug)]
pub struct ControlRequest {
    pub id: u64,
    pub params: MusicParams,
}

/// What the synthesis thread did with a [`ControlRequest`]: where the change takes effect.
#[derive(Clone, Copy, Debug)]
pub struct ControlReply {
    pub id: u64,
    pub result: Result<ControlEntry, ScheduleFull>,
}

/// The synthesis thread's end of the control link (two lock-free rings).
pub struct ControlInbox {
    requests: rtrb::Consumer<ControlRequest>,
    replies: rtrb::Producer<ControlReply>,
}

impl ControlInbox {
    /// The next waiting change, if any. Lock-free and allocation-free.
    pub fn pop_request(&mut self) -> Option<ControlRequest> {
        self.requests.pop().ok()
    }

    /// Tells the control side where change `id` landed. The reply ring is as large as the request
    /// ring and drained by the requester, so this cannot fail in practice; if it ever did, the
    /// requester times out rather than the synthesis thread blocking.
    pub fn reply(&mut self, id: u64, result: Result<ControlEntry, ScheduleFull>) {
        let _ = self.replies.push(ControlReply { id, result });
    }
}

/// The control side's end of the control link.
pub struct ControlOutbox {
    pub requests: rtrb::Producer<ControlRequest>,
    pub replies: rtrb::Consumer<ControlReply>,
}

/// A control link with room for `capacity` changes in flight each way.
///
/// Only the synthesis thread knows exactly which position it renders next, so it alone decides
/// where a change lands (the next bar line from there) and says so in the reply: a change can
/// never be scheduled into audio that was already rendered.
pub fn control_link(capacity: usize) -> (ControlOutbox, ControlInbox) {
    let (request_tx, request_rx) = rtrb::RingBuffer::new(capacity);
    let (reply_tx, reply_rx) = rtrb::RingBuffer::new(capacity);
    (
        ControlOutbox {
            requests: request_tx,
            replies: reply_rx,
        },
        ControlInbox {
            requests: request_rx,
            replies: reply_tx,
        },
    )
}

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

/// The `reason` label values of `auralis_synthesis_fallbacks_total`.
pub const FALLBACK_REASONS: [&str; 5] = GpuError::REASONS;

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

    fn count_fallback(&self, error: &GpuError) {
        self.fallbacks[error.reason_index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Test hook: make the next `count` GPU batches this station is in fail with `fault`.
    pub fn inject_gpu_faults(&self, fault: GpuFault, count: u32) {
        let index = GpuFault::ALL.iter().position(|f| *f == fault).unwrap_or(0);
        self.injected_gpu_reason
            .store(index as u32, Ordering::Release);
        self.inject_gpu_faults.store(count, Ordering::Release);
    }

    fn take_injected_gpu_fault(&self) -> Option<GpuError> {
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
    fn take_injected_panic(&self) -> bool {
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

    /// Test hook: stall (or resume) rendering to provoke underruns.
    pub fn set_stalled(&self, stalled: bool) {
        self.stalled.store(stalled, Ordering::Release);
    }
}

/// A running synthesis thread: one station's on the CPU, every station's on the GPU.
pub struct SynthesisThread {
    stations: Vec<Arc<SynthesisShared>>,
    handle: Option<JoinHandle<()>>,
}

impl SynthesisThread {
    /// The (first) station's shared state.
    pub fn shared(&self) -> &Arc<SynthesisShared> {
        &self.stations[0]
    }

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
struct StationWork {
    synth: Synth,
    producer: ChunkProducer,
    controls: ControlInbox,
    shared: Arc<SynthesisShared>,
    settings: SynthesisSettings,
    next: u64,
}

impl StationWork {
    fn new(input: StationInput) -> Self {
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

    fn stopped(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire) || self.producer.is_abandoned()
    }

    /// Catches up with the live edge and applies waiting control changes; returns a buffer to
    /// render the next chunk into when one is wanted.
    fn prepare(&mut self) -> Option<Box<[f32]>> {
        let frames = self.settings.chunk_frames as u64;
        let live = self.shared.live_position.load(Ordering::Acquire);
        if self.next < live {
            let behind = (live - self.next).div_ceil(frames);
            self.shared
                .skipped_chunks
                .fetch_add(behind, Ordering::Relaxed);
            self.next += behind * frames;
        }
        // Changes land at the next bar line from the next block to render (never in the past).
        while let Some(request) = self.controls.pop_request() {
            let result = self.synth.schedule(request.params, self.next);
            self.controls.reply(request.id, result);
        }
        let wanted = !self.shared.stalled.load(Ordering::Acquire)
            && self.producer.depth() < self.settings.target_depth;
        if wanted {
            self.producer.take_buffer()
        } else {
            None
        }
    }

    /// Counts a caught panic, rebuilds the engine and keeps the buffer for the retry.
    fn recover(&mut self, samples: Box<[f32]>) {
        self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        self.synth.recover();
        self.producer.give_back(samples);
    }

    /// Publishes the rendered chunk; false when the ring refused it (an overrun).
    fn publish(&mut self, samples: Box<[f32]>, render_nanos: u64) -> bool {
        let chunk = RenderedChunk {
            position: self.next,
            rendered_unix_ns: unix_nanos(),
            render_nanos,
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
    loop {
        if work.stopped() {
            return;
        }
        if let Some(mut samples) = work.prepare() {
            let started = Instant::now();
            // A panic in the engine must not take the station down: catch it, rebuild the
            // engine from its timeline and retry after a pause. The pacer meanwhile sends
            // flagged silence (counted as underruns) and listeners stay connected.
            let (synth, shared, next) = (&mut work.synth, &work.shared, work.next);
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
                    work.recover(samples);
                    thread::park_timeout(work.settings.chunk_period);
                    continue;
                }
            }
            let nanos = started.elapsed().as_nanos() as u64;
            if !work.publish(samples, nanos) {
                thread::park_timeout(idle_wait);
            }
            continue;
        }
        thread::park_timeout(idle_wait);
    }
}

/// Longest the GPU engine waits before trying the GPU again after a failure (it starts at one
/// second and doubles).
const GPU_RETRY_MAX: Duration = Duration::from_secs(60);
const GPU_RETRY_FIRST: Duration = Duration::from_secs(1);

/// Starts one synthesis thread for every station, rendering all blocks that are due in one GPU
/// submission. A failed batch (device lost, validation error, readback past its deadline) is
/// rendered on the CPU at once, counted per station in the fallback counters, and the GPU is
/// tried again after a back-off; so a GPU fault costs no audio.
///
/// # Errors
/// The OS refused to create the thread.
pub fn spawn_gpu(
    stations: Vec<StationInput>,
    renderer: GpuRenderer,
    metrics: GpuMetrics,
) -> std::io::Result<SynthesisThread> {
    let mut works: Vec<StationWork> = stations.into_iter().map(StationWork::new).collect();
    let shared = works.iter().map(|w| Arc::clone(&w.shared)).collect();
    let handle = thread::Builder::new()
        .name("synth-gpu".to_string())
        .spawn(move || gpu_loop(&mut works, renderer, &metrics))?;
    Ok(SynthesisThread {
        stations: shared,
        handle: Some(handle),
    })
}

/// GPU engine metrics, recorded from the engine thread (which is not real-time safe anyway:
/// wgpu locks and allocates inside its calls).
pub struct GpuMetrics {
    /// Write, dispatch and readback of one batch.
    pub dispatch: metrics::Histogram,
    /// Share of wall time spent in GPU batches, over the last second.
    pub busy: metrics::Gauge,
    pub allocated: metrics::Gauge,
}

fn gpu_loop(works: &mut [StationWork], mut renderer: GpuRenderer, metrics: &GpuMetrics) {
    let Some(first) = works.first() else { return };
    let idle_wait = first.settings.chunk_period / 4;
    let frames = first.settings.chunk_frames;
    metrics.allocated.set(renderer.allocated_bytes() as f64);
    // Both reused every turn: the stations due, then those whose block was composed.
    let mut due: Vec<(usize, Box<[f32]>)> = Vec::with_capacity(works.len());
    let mut composed: Vec<(usize, Box<[f32]>)> = Vec::with_capacity(works.len());
    let mut retry_at: Option<Instant> = None;
    let mut last_error = GpuError::DeviceLost(String::new());
    let mut retry_wait = GPU_RETRY_FIRST;
    let mut busy_since = Instant::now();
    let mut busy = Duration::ZERO;
    loop {
        if works.iter().all(StationWork::stopped) {
            return;
        }
        due.clear();
        for (i, work) in works.iter_mut().enumerate() {
            if work.stopped() {
                continue;
            }
            if let Some(samples) = work.prepare() {
                due.push((i, samples));
            }
        }
        if due.is_empty() {
            thread::park_timeout(idle_wait);
            continue;
        }
        let started = Instant::now();
        // Compose on the CPU (cheap); a panic here is a station's engine bug, handled as on
        // the CPU path.
        for (i, samples) in due.drain(..) {
            let work = &mut works[i];
            let (synth, shared, next) = (&mut work.synth, &work.shared, work.next);
            let ok = panic::catch_unwind(AssertUnwindSafe(|| {
                if shared.take_injected_panic() {
                    panic!("injected synthesis fault");
                }
                synth.compose(next, frames as u32);
            }))
            .is_ok();
            if ok {
                composed.push((i, samples));
            } else {
                work.recover(samples);
            }
        }
        let gpu_ready = retry_at.is_none_or(|at| started >= at);
        let result = if !gpu_ready {
            Err(None)
        } else if let Some(fault) = composed
            .iter()
            .find_map(|(i, _)| works[*i].shared.take_injected_gpu_fault())
        {
            Err(Some(fault))
        } else if renderer.is_lost() {
            // A lost device stays lost: replace it (on this fault path only; it takes a while,
            // and the blocks due now are rendered on the CPU meanwhile).
            match renderer.rebuild() {
                Ok(()) => {
                    metrics.allocated.set(renderer.allocated_bytes() as f64);
                    Err(Some(GpuError::DeviceLost("device replaced".into())))
                }
                Err(error) => Err(Some(error)),
            }
        } else {
            let tables: Vec<&crate::synth::VoiceTable> = composed
                .iter()
                .map(|(i, _)| works[*i].synth.table())
                .collect();
            let mut outs: Vec<&mut [f32]> = composed.iter_mut().map(|(_, s)| &mut s[..]).collect();
            let batch = Instant::now();
            let rendered = renderer.render(&tables, &mut outs);
            metrics.dispatch.record(batch.elapsed().as_secs_f64());
            rendered.map_err(Some)
        };
        match result {
            Ok(()) => {
                retry_at = None;
                retry_wait = GPU_RETRY_FIRST;
            }
            Err(error) => {
                if let Some(error) = error {
                    retry_at = Some(Instant::now() + retry_wait);
                    retry_wait = (retry_wait * 2).min(GPU_RETRY_MAX);
                    last_error = error;
                }
                // Blocks rendered while backing off are fallbacks for the same reason.
                for (i, _) in &composed {
                    works[*i].shared.count_fallback(&last_error);
                }
                for (i, samples) in &mut composed {
                    if works[*i].synth.render_composed(samples).is_err() {
                        samples.fill(0.0);
                    }
                }
            }
        }
        let elapsed = started.elapsed();
        busy += elapsed;
        let nanos = elapsed.as_nanos() as u64;
        let mut refused = false;
        for (i, samples) in composed.drain(..) {
            refused |= !works[i].publish(samples, nanos);
        }
        let window = busy_since.elapsed();
        if window >= Duration::from_secs(1) {
            metrics.busy.set(busy.as_secs_f64() / window.as_secs_f64());
            busy = Duration::ZERO;
            busy_since = Instant::now();
        }
        if refused {
            thread::park_timeout(idle_wait);
        }
    }
}
