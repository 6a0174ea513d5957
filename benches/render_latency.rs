//! Tail latency of rendering one 100 ms stereo chunk at 48 kHz on the CPU.
//!
//! Criterion reports means and confidence intervals; the real-time budget is about the tail, so
//! this records every render of ten minutes of audio (6000 chunks) for four stations (a seed's
//! default parameters and each denser preset) in an HDR histogram and prints p50/p99/p99.9/max. Run: `cargo bench --bench render_latency`.
//! Under `cargo test` (no `--bench` flag) it renders a few chunks only, as a smoke test.

use std::time::Instant;

use auralis::synth::{MusicParams, Preset, Synth, Timeline, CHANNELS};
use hdrhistogram::Histogram;

const SAMPLE_RATE: u32 = 48_000;
const CHUNK_FRAMES: usize = 4800;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let chunks_per_seed: u64 = if full { 6000 } else { 20 };
    let stations = [
        (1u64, None),
        (7, Some(Preset::Ambient)),
        (42, Some(Preset::Pulse)),
        (1234, Some(Preset::Night)),
    ];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).unwrap();
    for (seed, preset) in stations {
        let params = match preset {
            Some(preset) => MusicParams::from_preset(seed, preset),
            None => MusicParams::from_seed(seed),
        };
        let timeline = Timeline::new(seed, SAMPLE_RATE, params);
        let mut synth = Synth::new(timeline, CHUNK_FRAMES);
        let mut out = vec![0.0f32; CHUNK_FRAMES * CHANNELS];
        // Start at a realistic live position (2026 on the wall-clock grid).
        let start = 1_795_000_000u64 * SAMPLE_RATE as u64;
        for i in 0..chunks_per_seed {
            let began = Instant::now();
            synth
                .render(start + i * CHUNK_FRAMES as u64, &mut out)
                .unwrap();
            histogram.record(began.elapsed().as_nanos() as u64).unwrap();
            std::hint::black_box(&out);
        }
    }
    let us = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "cpu render, 100 ms stereo @ 48 kHz, {} chunks: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us",
        histogram.len(),
        us(0.5),
        us(0.99),
        us(0.999),
        histogram.max() as f64 / 1000.0
    );
}
