//! The GPU engine's promise that a GPU fault costs no audio, shown with a renderer behind the
//! engine's interface that really blocks: a readback that stalls until its deadline passes (as
//! wgpu's bounded wait does on a hung GPU), and a lost device whose replacement takes longer to
//! build than the whole render-ahead. Listeners must see contiguous sequence numbers, no
//! underrun fill, and exactly the CPU reference's audio. Needs no Vulkan driver.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auralis::render::{render_pcm, RenderRequest};
use auralis::stream::protocol::FLAG_UNDERRUN_FILL;
use auralis::synth::batch::{BatchRenderer, Rebuild};
use auralis::synth::cpu::CpuRenderer;
use auralis::synth::gpu::{AdapterSummary, GpuError};
use auralis::synth::{MusicParams, Timeline, VoiceTable};
use common::*;

const FRAMES: usize = 4800;

/// What a test makes the stand-in do, shared with every renderer built from it.
struct Faults {
    /// Batches still to stall: each waits out its whole deadline, then fails as a timeout.
    stalls: AtomicU32,
    lost: AtomicBool,
    /// How long building a replacement device takes.
    rebuild_time: Duration,
    rebuilds: AtomicU32,
    /// Every deadline the engine gave a batch.
    deadlines: Mutex<Vec<Duration>>,
    name: &'static str,
}

/// A batch renderer that renders correctly (the CPU reference, block by block) unless told to
/// stall or to lose its device.
struct StandIn {
    faults: Arc<Faults>,
    cpu: CpuRenderer,
    adapter: AdapterSummary,
}

impl StandIn {
    fn new(faults: Arc<Faults>, generation: u32) -> Self {
        Self {
            adapter: AdapterSummary {
                name: format!("{} {generation}", faults.name),
                backend: "vulkan".into(),
                device_type: "other".into(),
                driver: "test".into(),
            },
            faults,
            cpu: CpuRenderer::new(FRAMES),
        }
    }
}

impl BatchRenderer for StandIn {
    fn render(
        &mut self,
        tables: &[&VoiceTable],
        outs: &mut [&mut [f32]],
        deadline: Duration,
    ) -> Result<(), GpuError> {
        self.faults.deadlines.lock().unwrap().push(deadline);
        if self.is_lost() {
            return Err(GpuError::DeviceLost("stand-in device lost".into()));
        }
        let stall = self
            .faults
            .stalls
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if stall {
            std::thread::sleep(deadline);
            return Err(GpuError::Timeout(deadline));
        }
        for (table, out) in tables.iter().zip(outs.iter_mut()) {
            self.cpu
                .render(table, out)
                .map_err(|_| GpuError::OutputSize)?;
        }
        Ok(())
    }

    fn is_lost(&self) -> bool {
        self.faults.lost.load(Ordering::Acquire)
    }

    fn adapter(&self) -> &AdapterSummary {
        &self.adapter
    }

    fn allocated_bytes(&self) -> u64 {
        1000
    }

    fn rebuilder(&self) -> Rebuild {
        let faults = Arc::clone(&self.faults);
        Arc::new(move || {
            std::thread::sleep(faults.rebuild_time);
            faults.lost.store(false, Ordering::Release);
            let generation = faults.rebuilds.fetch_add(1, Ordering::AcqRel) + 1;
            Ok(Box::new(StandIn::new(Arc::clone(&faults), generation)) as Box<dyn BatchRenderer>)
        })
    }
}

fn faults(name: &'static str, rebuild_time: Duration) -> Arc<Faults> {
    Arc::new(Faults {
        stalls: AtomicU32::new(0),
        lost: AtomicBool::new(false),
        rebuild_time,
        rebuilds: AtomicU32::new(0),
        deadlines: Mutex::new(Vec::new()),
        name,
    })
}

async fn start(station: &str, seed: u64, faults: &Arc<Faults>) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let renderer = Box::new(StandIn::new(Arc::clone(faults), 0));
    TestServer::start_with_renderer(listener, station, seed, |_| {}, Some(renderer)).await
}

/// Checks every frame: contiguous, none an underrun fill, each exactly the CPU reference.
fn assert_no_audio_lost(frames: &[Audio], seed: u64) {
    assert_contiguous(frames);
    let timeline = Timeline::new(seed, 48_000, MusicParams::from_seed(seed));
    for frame in frames {
        assert_eq!(
            frame.header.flags & FLAG_UNDERRUN_FILL,
            0,
            "an underrun fill at {}",
            frame.header.position
        );
        let request = RenderRequest {
            timeline: timeline.clone(),
            chunk_frames: FRAMES,
            start_frame: frame.header.position,
            frames: FRAMES as u64,
        };
        let mut pcm = Vec::new();
        render_pcm(&request, |block| pcm.extend_from_slice(block));
        let expected: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
        assert!(
            frame.payload() == &expected[..],
            "the audio at {} is not the reference",
            frame.header.position
        );
    }
}

fn fallbacks(metrics: &str, station: &str, reason: &str) -> f64 {
    metric_value(
        metrics,
        &format!("auralis_synthesis_fallbacks_total{{station=\"{station}\",reason=\"{reason}\"}}"),
    )
    .unwrap_or_else(|| panic!("fallback series of {station}/{reason} missing"))
}

/// The value of the `auralis_gpu_info` series naming `adapter`.
fn gpu_info(metrics: &str, adapter: &str) -> Option<f64> {
    let label = format!("adapter=\"{adapter}\"");
    metrics
        .lines()
        .find(|line| line.starts_with("auralis_gpu_info{") && line.contains(&label))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_readback_is_made_up_by_the_cpu_in_time() {
    let faults = faults("stall", Duration::ZERO);
    let server = start("gpu-stall", 81, &faults).await;
    let mut ws = server.connect("/ws").await;
    let mut frames = audio_frames(&mut ws, 3).await;
    // Two stalls: the first batch after this, and the first after the one-second back-off.
    let steady = faults.deadlines.lock().unwrap().len();
    faults.stalls.store(2, Ordering::Release);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while faults.stalls.load(Ordering::Acquire) > 0 {
        assert!(tokio::time::Instant::now() < deadline, "no batch stalled");
        frames.extend(audio_frames(&mut ws, 1).await);
    }
    frames.extend(audio_frames(&mut ws, 5).await);
    assert_no_audio_lost(&frames, 81);
    let metrics = server.metrics().await;
    assert!(fallbacks(&metrics, "gpu-stall", "timeout") >= 2.0);
    // Streaming steadily, a block is needed at most the render-ahead (300 ms) after its batch
    // starts: every deadline kept the CPU's time for the whole batch out of that.
    let deadlines = faults.deadlines.lock().unwrap()[steady..].to_vec();
    assert!(deadlines.len() >= 2, "{deadlines:?}");
    assert!(
        deadlines.iter().all(|d| *d < Duration::from_millis(290)),
        "{deadlines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_device_is_replaced_while_the_cpu_renders() {
    // Longer than the whole render-ahead: built on the engine thread, it would empty the ring.
    let faults = faults("lost", Duration::from_millis(1500));
    let server = start("gpu-lost", 82, &faults).await;
    let mut ws = server.connect("/ws").await;
    let mut frames = audio_frames(&mut ws, 3).await;
    let metrics = server.metrics().await;
    assert_eq!(gpu_info(&metrics, "lost 0"), Some(1.0));
    faults.lost.store(true, Ordering::Release);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while faults.rebuilds.load(Ordering::Acquire) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no replacement built"
        );
        frames.extend(audio_frames(&mut ws, 1).await);
    }
    frames.extend(audio_frames(&mut ws, 5).await);
    assert_no_audio_lost(&frames, 82);
    let metrics = server.metrics().await;
    // 1.5 s without a device: about 15 blocks rendered on the CPU instead.
    assert!(fallbacks(&metrics, "gpu-lost", "device_lost") >= 10.0);
    assert_eq!(faults.rebuilds.load(Ordering::Acquire), 1);
    // The replacement is the adapter now on record, and its memory.
    assert_eq!(gpu_info(&metrics, "lost 1"), Some(1.0));
    assert_eq!(gpu_info(&metrics, "lost 0"), Some(0.0));
}
