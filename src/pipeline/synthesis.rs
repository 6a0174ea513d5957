//! The synthesis thread: renders ahead of the pacer into the ring.
//!
//! Real-time contract: after [`spawn`] returns, the loop never allocates, locks, logs or awaits,
//! except on the fault path: a render that panics is caught, counted and the engine rebuilt.
//! It talks to the rest of the server only through atomics in [`SynthesisShared`] and the ring;
//! the pacer turns those counts into metrics.

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::ring::{ChunkProducer, RenderedChunk};
use super::unix_nanos;
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
        }
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

/// A running synthesis thread.
pub struct SynthesisThread {
    shared: Arc<SynthesisShared>,
    handle: Option<JoinHandle<()>>,
}

impl SynthesisThread {
    pub fn shared(&self) -> &Arc<SynthesisShared> {
        &self.shared
    }

    /// A cheap handle the pacer keeps to wake the thread when it frees a slot.
    pub fn waker(&self) -> Option<thread::Thread> {
        self.handle.as_ref().map(|h| h.thread().clone())
    }

    /// Stops the thread and waits for it.
    pub fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
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

/// Starts the synthesis thread for one station.
///
/// # Errors
/// The OS refused to create the thread.
pub fn spawn(
    name: &str,
    mut synth: Synth,
    mut producer: ChunkProducer,
    mut controls: ControlInbox,
    settings: SynthesisSettings,
) -> std::io::Result<SynthesisThread> {
    let shared = Arc::new(SynthesisShared::new(settings.start_position));
    let thread_shared = Arc::clone(&shared);
    let handle = thread::Builder::new()
        .name(format!("synth-{name}"))
        .spawn(move || {
            render_loop(
                &mut synth,
                &mut producer,
                &mut controls,
                &thread_shared,
                settings,
            );
        })?;
    Ok(SynthesisThread {
        shared,
        handle: Some(handle),
    })
}

fn render_loop(
    synth: &mut Synth,
    producer: &mut ChunkProducer,
    controls: &mut ControlInbox,
    shared: &SynthesisShared,
    settings: SynthesisSettings,
) {
    let frames = settings.chunk_frames as u64;
    let idle_wait = settings.chunk_period / 4;
    let mut next = settings.start_position;
    loop {
        if shared.stop.load(Ordering::Acquire) || producer.is_abandoned() {
            return;
        }
        let live = shared.live_position.load(Ordering::Acquire);
        if next < live {
            let behind = (live - next).div_ceil(frames);
            shared.skipped_chunks.fetch_add(behind, Ordering::Relaxed);
            next += behind * frames;
        }
        // Changes land at the next bar line from the next block to render (never in the past).
        while let Some(request) = controls.pop_request() {
            let result = synth.schedule(request.params, next);
            controls.reply(request.id, result);
        }
        let wanted =
            !shared.stalled.load(Ordering::Acquire) && producer.depth() < settings.target_depth;
        if wanted {
            if let Some(mut samples) = producer.take_buffer() {
                let started = Instant::now();
                // A panic in the engine must not take the station down: catch it, rebuild the
                // engine from its timeline and retry after a pause. The pacer meanwhile sends
                // flagged silence (counted as underruns) and listeners stay connected.
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
                        shared.restarts.fetch_add(1, Ordering::Relaxed);
                        synth.recover();
                        producer.give_back(samples);
                        thread::park_timeout(settings.chunk_period);
                        continue;
                    }
                }
                let chunk = RenderedChunk {
                    position: next,
                    rendered_unix_ns: unix_nanos(),
                    render_nanos: started.elapsed().as_nanos() as u64,
                    samples,
                };
                match producer.push(chunk) {
                    Ok(()) => next += frames,
                    Err(refused) => {
                        shared.overruns.fetch_add(1, Ordering::Relaxed);
                        producer.give_back(refused.samples);
                        thread::park_timeout(idle_wait);
                    }
                }
                continue;
            }
        }
        thread::park_timeout(idle_wait);
    }
}
