//! The GPU renderer against the CPU reference: the same voice tables must give the same audio
//! within 1e-4 (max abs), for several seeds and presets, at the start of the stream and more than
//! ten hours in (the f32-time trap), many stations per dispatch.
//!
//! Needs a Vulkan adapter: a real GPU, or Mesa's lavapipe (Debian `mesa-vulkan-drivers`) on a
//! machine without one. With CI=true a missing adapter fails the test.

mod common;

use std::time::Duration;

use auralis::synth::cpu::CpuRenderer;
use auralis::synth::gpu::{AdapterPolicy, GpuContext, GpuRenderer};
use auralis::synth::voice::VoiceTable;
use auralis::synth::{MusicParams, Preset, Timeline};

const RATE: u32 = 48_000;
const FRAMES: usize = 4800;
const TOLERANCE: f32 = 1e-4;

fn gpu() -> Option<GpuContext> {
    let context = GpuContext::acquire(AdapterPolicy::Any);
    if let Err(e) = &context {
        eprintln!("no GPU adapter: {e}");
    }
    common::required_tool(
        context.ok(),
        "a Vulkan adapter (GPU or lavapipe)",
        "apt-get install mesa-vulkan-drivers",
    )
}

/// One stream to compare: a timeline and where to start.
struct Stream {
    timeline: Timeline,
    start: u64,
    table: VoiceTable,
    cpu: CpuRenderer,
    expected: Vec<f32>,
    got: Vec<f32>,
}

impl Stream {
    fn new(seed: u64, preset: Preset, start_seconds: u64) -> Self {
        Self {
            timeline: Timeline::new(seed, RATE, MusicParams::from_preset(seed, preset)),
            start: start_seconds * RATE as u64,
            table: VoiceTable::new(),
            cpu: CpuRenderer::new(FRAMES),
            expected: vec![0.0; FRAMES * 2],
            got: vec![0.0; FRAMES * 2],
        }
    }
}

#[test]
fn gpu_matches_the_cpu_reference_for_a_minute_of_many_streams() {
    let Some(context) = gpu() else { return };
    eprintln!("adapter: {:?}", context.adapter);
    let ten_hours = 10 * 3600 + 17;
    let a_year = 365 * 24 * 3600 + 3;
    // Unix time now-ish, as a live station sees it.
    let live = 1_795_000_000;
    let mut streams: Vec<Stream> = [
        (1, Preset::Focus, 0),
        (7, Preset::Pulse, 0),
        (42, Preset::Ambient, ten_hours),
        (1234, Preset::Night, ten_hours),
        (7, Preset::Pulse, ten_hours),
        (99, Preset::Pulse, a_year),
        (5, Preset::Focus, live),
        (3, Preset::Night, live + ten_hours),
    ]
    .into_iter()
    .map(|(seed, preset, start)| Stream::new(seed, preset, start))
    .collect();
    let mut gpu = GpuRenderer::new(context, streams.len(), FRAMES, Duration::from_secs(30))
        .expect("the renderer builds");
    let mut worst = 0.0f32;
    let mut voices_seen = [0usize; 5];
    // 60 s of audio per stream: 600 blocks, every stream's block in one dispatch.
    for block in 0..600u64 {
        for s in &mut streams {
            let position = s.start + block * FRAMES as u64;
            s.timeline.compose(position, FRAMES as u32, &mut s.table);
            s.cpu.render(&s.table, &mut s.expected).unwrap();
            for v in s.table.voices() {
                voices_seen[v.kind as usize] += 1;
            }
        }
        let tables: Vec<&VoiceTable> = streams.iter().map(|s| &s.table).collect();
        let mut outs: Vec<Vec<f32>> = streams.iter().map(|s| s.got.clone()).collect();
        let mut out_refs: Vec<&mut [f32]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        gpu.render(&tables, &mut out_refs).expect("the GPU renders");
        for (s, got) in streams.iter().zip(&outs) {
            let error = s
                .expected
                .iter()
                .zip(got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                error <= TOLERANCE,
                "seed {} at {} s: max abs error {error}",
                s.timeline.seed(),
                (s.start + block * FRAMES as u64) / RATE as u64
            );
            worst = worst.max(error);
        }
    }
    eprintln!("worst max abs error over 8 x 60 s: {worst:e}; voices by kind {voices_seen:?}");
    // Every kind of voice was compared, not just silence.
    assert!(voices_seen.iter().all(|&n| n > 0), "{voices_seen:?}");
}
