//! The GPU engine: one thread composes every due station's block on the CPU and renders them all
//! in one batch on the GPU.
//!
//! wgpu locks and allocates inside its calls, so this thread is not real-time safe; it owns the
//! ring producers all the same, and the rings' render-ahead absorbs its variance. What it
//! promises instead is that a GPU fault costs no audio:
//!
//! - **A deadline the CPU can still make up for.** A batch may wait for the GPU only until the
//!   emptiest due ring would run dry, less the time the CPU needs to render every due block
//!   (measured), less a scheduling margin. A batch that fails or misses that deadline is rendered
//!   on the CPU at once; when no time for the GPU is left, the batch goes to the CPU directly.
//! - **A lost device is replaced off this thread.** Opening a device and compiling the shaders
//!   takes long enough to empty the rings, so a helper thread builds the replacement while this
//!   one renders on the CPU; the new renderer is handed over when it is ready.
//! - Failures back off (1 s, doubling to 60 s) before the GPU is tried again; blocks rendered
//!   meanwhile count as fallbacks for the same reason.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::synthesis::{StationInput, StationWork, SynthesisThread};
use crate::synth::batch::{BatchRenderer, Rebuild};
use crate::synth::gpu::GpuError;
use crate::synth::VoiceTable;
use crate::telemetry::metrics::GpuMetrics;

/// Longest the engine waits before trying the GPU again after a failure (it starts at one
/// second and doubles).
const GPU_RETRY_MAX: Duration = Duration::from_secs(60);
const GPU_RETRY_FIRST: Duration = Duration::from_secs(1);
/// Kept free of the GPU deadline for waking up, publishing, preemption on a busy machine and the
/// pacer's own lateness.
const SCHEDULING_MARGIN: Duration = Duration::from_millis(30);
/// Below this, a GPU batch could not finish anyway: render on the CPU directly.
const MIN_GPU_DEADLINE: Duration = Duration::from_millis(2);
/// The CPU estimate covers this many times the slowest block measured.
const CPU_SAFETY_FACTOR: u32 = 2;

/// Starts one synthesis thread for every station, rendering all blocks that are due in one
/// batch on `renderer`. `first_release` is when the pacers release the stations' start position
/// (on the monotonic clock, as the pacers keep time): the engine's deadlines count from it.
///
/// # Errors
/// The OS refused to create the thread.
pub fn spawn_gpu(
    stations: Vec<StationInput>,
    renderer: Box<dyn BatchRenderer>,
    metrics: GpuMetrics,
    first_release: Instant,
) -> std::io::Result<SynthesisThread> {
    let mut works: Vec<StationWork> = stations.into_iter().map(StationWork::new).collect();
    let shared = works.iter().map(|w| Arc::clone(&w.shared)).collect();
    let cpu_block = calibrate_cpu_block(&mut works);
    let handle = thread::Builder::new()
        .name("synth-gpu".to_string())
        .spawn(move || Engine::new(works, renderer, metrics, cpu_block, first_release).run())?;
    Ok(SynthesisThread {
        stations: shared,
        handle: Some(handle),
    })
}

/// Times one CPU render of the first station's first block, so the first GPU deadline already
/// leaves room for a CPU fallback. (Rendering is a pure function of the position: this changes
/// nothing the station will stream.)
fn calibrate_cpu_block(works: &mut [StationWork]) -> Duration {
    let Some(work) = works.first_mut() else {
        return Duration::ZERO;
    };
    let mut scratch = vec![0.0f32; work.settings.chunk_frames * crate::synth::CHANNELS];
    // Twice, keeping the slower: the first also pays for cold caches.
    (0..2)
        .map(|_| {
            let started = Instant::now();
            let _ = work.synth.render(work.next, &mut scratch);
            started.elapsed()
        })
        .max()
        .unwrap_or_default()
}

/// The slowest CPU render of a block seen lately, decaying slowly so one outlier does not shrink
/// the GPU's deadline forever.
struct CpuBlockEstimate {
    slowest: Duration,
}

impl CpuBlockEstimate {
    fn observe(&mut self, took: Duration) {
        self.slowest = took.max(self.slowest - self.slowest / 64);
    }

    /// What rendering `blocks` blocks on the CPU is expected to take at worst.
    fn for_blocks(&self, blocks: usize) -> Duration {
        self.slowest * CPU_SAFETY_FACTOR * blocks as u32
    }
}

/// The renderer in use, or the replacement being built for a lost one.
enum Renderer {
    Ready(Box<dyn BatchRenderer>),
    Rebuilding(mpsc::Receiver<Result<Box<dyn BatchRenderer>, GpuError>>),
    /// The last rebuild failed; the next starts at the engine's retry time.
    Failed,
}

struct Engine {
    works: Vec<StationWork>,
    renderer: Renderer,
    rebuild: Rebuild,
    metrics: GpuMetrics,
    cpu_block: CpuBlockEstimate,
    /// The stations due this turn, then those whose block was composed; both reused.
    due: Vec<(usize, Box<[f32]>)>,
    composed: Vec<(usize, Box<[f32]>)>,
    /// Each composed block's CPU render time when the batch fell back, in `composed` order.
    cpu_nanos: Vec<u64>,
    retry_at: Option<Instant>,
    retry_wait: Duration,
    /// Why the GPU last failed: the reason blocks rendered while backing off are counted under.
    last_error: GpuError,
    busy_since: Instant,
    busy: Duration,
    /// When the pacers release the start position: the origin of every block's release time.
    first_release: Instant,
}

/// How one batch went.
enum BatchOutcome {
    /// The GPU rendered every composed block.
    Gpu,
    /// The CPU must render them: the GPU failed now (`Some`) or is still backing off (`None`).
    Fallback(Option<GpuError>),
    /// Too little time was left to try the GPU: the CPU renders them, the GPU is not at fault
    /// (no back-off; the blocks count as `timeout` fallbacks).
    NoTime,
}

impl Engine {
    fn new(
        works: Vec<StationWork>,
        renderer: Box<dyn BatchRenderer>,
        mut metrics: GpuMetrics,
        cpu_block: Duration,
        first_release: Instant,
    ) -> Self {
        describe(&mut metrics, renderer.as_ref());
        let stations = works.len();
        Self {
            rebuild: renderer.rebuilder(),
            renderer: Renderer::Ready(renderer),
            works,
            metrics,
            cpu_block: CpuBlockEstimate { slowest: cpu_block },
            due: Vec::with_capacity(stations),
            composed: Vec::with_capacity(stations),
            cpu_nanos: Vec::with_capacity(stations),
            retry_at: None,
            retry_wait: GPU_RETRY_FIRST,
            last_error: GpuError::DeviceLost(String::new()),
            busy_since: Instant::now(),
            busy: Duration::ZERO,
            first_release,
        }
    }

    fn run(mut self) {
        let Some(first) = self.works.first() else {
            return;
        };
        let idle_wait = first.settings.chunk_period / 4;
        while !self.works.iter().all(StationWork::stopped) {
            self.take_replacement();
            self.collect_due();
            if self.due.is_empty() {
                thread::park_timeout(idle_wait);
                continue;
            }
            let started = Instant::now();
            self.compose_due();
            let outcome = self.render_batch();
            let on_gpu = matches!(outcome, BatchOutcome::Gpu);
            match outcome {
                BatchOutcome::Gpu => {}
                BatchOutcome::Fallback(error) => {
                    self.note_failure(error);
                    self.render_on_cpu();
                }
                BatchOutcome::NoTime => {
                    let no_time = GpuError::Timeout(Duration::ZERO);
                    for (i, _) in &self.composed {
                        self.works[*i].shared.count_fallback(&no_time);
                    }
                    self.render_on_cpu();
                }
            }
            let batch = started.elapsed();
            self.busy += batch;
            let refused = self.publish(batch, on_gpu);
            self.report_busy();
            if refused {
                thread::park_timeout(idle_wait);
            }
        }
    }

    /// Takes each station's block when it is due, with a buffer to render it into.
    fn collect_due(&mut self) {
        self.due.clear();
        for (i, work) in self.works.iter_mut().enumerate() {
            if work.stopped() {
                continue;
            }
            if let Some(samples) = work.prepare() {
                self.due.push((i, samples));
            }
        }
    }

    /// Composes the due blocks on the CPU (cheap); a panic here is a station's engine bug,
    /// handled as on the CPU path.
    fn compose_due(&mut self) {
        for (i, samples) in self.due.drain(..) {
            let work = &mut self.works[i];
            let frames = work.settings.chunk_frames as u32;
            let (synth, shared, next) = (&mut work.synth, &work.shared, work.next);
            let ok = panic::catch_unwind(AssertUnwindSafe(|| {
                if shared.take_injected_panic() {
                    panic!("injected synthesis fault");
                }
                synth.compose(next, frames);
            }))
            .is_ok();
            if ok {
                self.composed.push((i, samples));
            } else {
                work.recover(samples);
            }
        }
    }

    /// Renders the composed blocks on the GPU when it is usable and there is time for it.
    fn render_batch(&mut self) -> BatchOutcome {
        if self.composed.is_empty() {
            return BatchOutcome::Gpu;
        }
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            return BatchOutcome::Fallback(None);
        }
        if let Some(fault) = self
            .composed
            .iter()
            .find_map(|(i, _)| self.works[*i].shared.take_injected_gpu_fault())
        {
            return BatchOutcome::Fallback(Some(fault));
        }
        let deadline = self.gpu_deadline();
        let renderer = match &mut self.renderer {
            Renderer::Ready(renderer) if renderer.is_lost() => None,
            Renderer::Ready(renderer) => Some(renderer),
            // Counted under the loss that started the rebuild.
            Renderer::Rebuilding(_) => return BatchOutcome::Fallback(None),
            Renderer::Failed => None,
        };
        let Some(renderer) = renderer else {
            self.start_replacement();
            return BatchOutcome::Fallback(Some(GpuError::DeviceLost(
                "device lost; building a replacement".into(),
            )));
        };
        if deadline < MIN_GPU_DEADLINE {
            return BatchOutcome::NoTime;
        }
        let tables: Vec<&VoiceTable> = self
            .composed
            .iter()
            .map(|(i, _)| self.works[*i].synth.table())
            .collect();
        let mut outs: Vec<&mut [f32]> = self.composed.iter_mut().map(|(_, s)| &mut s[..]).collect();
        let batch = Instant::now();
        let rendered = renderer.render(&tables, &mut outs, deadline);
        self.metrics.dispatch.record(batch.elapsed().as_secs_f64());
        match rendered {
            Ok(()) => {
                self.retry_at = None;
                self.retry_wait = GPU_RETRY_FIRST;
                BatchOutcome::Gpu
            }
            Err(error) => BatchOutcome::Fallback(Some(error)),
        }
    }

    /// How long this batch may wait for the GPU: until the emptiest due ring runs dry, less the
    /// CPU time to render every due block should the GPU not answer, less a margin.
    fn gpu_deadline(&self) -> Duration {
        let now = Instant::now();
        let budget = self
            .composed
            .iter()
            .map(|(i, _)| {
                let work = &self.works[*i];
                // The pacer releases the block being rendered now at the first release plus its
                // distance from the start position, on the monotonic clock (a step of the wall
                // clock moves neither).
                let frames = work.next.saturating_sub(work.settings.start_position);
                let after_first = u128::from(frames) * work.settings.chunk_period.as_nanos()
                    / work.settings.chunk_frames.max(1) as u128;
                let release = self.first_release
                    + Duration::from_nanos(after_first.min(u128::from(u64::MAX)) as u64);
                release.saturating_duration_since(now)
            })
            .min()
            .unwrap_or_default();
        budget
            .saturating_sub(self.cpu_block.for_blocks(self.composed.len()))
            .saturating_sub(SCHEDULING_MARGIN)
    }

    /// Counts the failure and schedules the next GPU attempt (a fresh error) or keeps backing
    /// off (`None`); either way the composed blocks count as fallbacks.
    fn note_failure(&mut self, error: Option<GpuError>) {
        if let Some(error) = error {
            self.retry_at = Some(Instant::now() + self.retry_wait);
            self.retry_wait = (self.retry_wait * 2).min(GPU_RETRY_MAX);
            self.last_error = error;
        }
        for (i, _) in &self.composed {
            self.works[*i].shared.count_fallback(&self.last_error);
        }
    }

    /// Renders every composed block on the CPU, measuring each for the next deadline.
    fn render_on_cpu(&mut self) {
        self.cpu_nanos.clear();
        for (i, samples) in &mut self.composed {
            let started = Instant::now();
            if self.works[*i].synth.render_composed(samples).is_err() {
                samples.fill(0.0);
            }
            let took = started.elapsed();
            self.cpu_block.observe(took);
            self.cpu_nanos.push(took.as_nanos() as u64);
        }
    }

    /// Publishes the composed blocks; true when a ring refused one (an overrun). A GPU block's
    /// render time is its batch's (compose to readback); a fallback block's is its own CPU render.
    fn publish(&mut self, batch: Duration, on_gpu: bool) -> bool {
        let batch_nanos = batch.as_nanos() as u64;
        let mut refused = false;
        for (k, (i, samples)) in self.composed.drain(..).enumerate() {
            let nanos = if on_gpu {
                batch_nanos
            } else {
                self.cpu_nanos.get(k).copied().unwrap_or(batch_nanos)
            };
            refused |= !self.works[i].publish(samples, nanos, on_gpu);
        }
        refused
    }

    fn report_busy(&mut self) {
        let window = self.busy_since.elapsed();
        if window >= Duration::from_secs(1) {
            self.metrics
                .busy
                .set(self.busy.as_secs_f64() / window.as_secs_f64());
            self.busy = Duration::ZERO;
            self.busy_since = Instant::now();
        }
    }

    /// Builds a replacement for the lost renderer on a helper thread; this thread renders on the
    /// CPU until it is ready. The old renderer is dropped there too (tearing a device down can
    /// take a while).
    fn start_replacement(&mut self) {
        let old = std::mem::replace(&mut self.renderer, Renderer::Failed);
        let (ready_tx, ready_rx) = mpsc::channel();
        let rebuild = Arc::clone(&self.rebuild);
        let spawned = thread::Builder::new()
            .name("synth-gpu-rebuild".to_string())
            .spawn(move || {
                let _ = ready_tx.send(rebuild());
                // Last: tearing a hung device down may block, and must not delay the new one.
                drop(old);
            });
        if spawned.is_ok() {
            self.renderer = Renderer::Rebuilding(ready_rx);
        }
    }

    /// Installs a replacement renderer once its helper thread has built it.
    fn take_replacement(&mut self) {
        let Renderer::Rebuilding(ready) = &self.renderer else {
            return;
        };
        match ready.try_recv() {
            Ok(Ok(renderer)) => {
                describe(&mut self.metrics, renderer.as_ref());
                self.rebuild = renderer.rebuilder();
                self.renderer = Renderer::Ready(renderer);
                self.retry_at = None;
                self.retry_wait = GPU_RETRY_FIRST;
            }
            Ok(Err(error)) => {
                // The loss that started the rebuild already doubled the back-off.
                self.renderer = Renderer::Failed;
                self.retry_at = Some(Instant::now() + self.retry_wait);
                self.last_error = error;
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => self.renderer = Renderer::Failed,
        }
    }
}

/// Publishes what the renderer in use is: its adapter and the memory it holds.
fn describe(metrics: &mut GpuMetrics, renderer: &dyn BatchRenderer) {
    let adapter = renderer.adapter();
    metrics.set_adapter(&adapter.name, &adapter.backend, &adapter.device_type);
    metrics.allocated.set(renderer.allocated_bytes() as f64);
}
