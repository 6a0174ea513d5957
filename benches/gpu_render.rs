//! Render time per 100 ms block against the number of stations, on the GPU (one dispatch for all
//! stations) and on the CPU (one station after the other on one core), with the GPU readback's
//! latency; prints p50/p99 for 1, 8, 32 and 128 stations, the adapter, and the crossover.
//!
//! Run: `cargo bench --bench gpu_render` (Vulkan needed: a GPU, or Mesa's lavapipe). Under
//! `cargo test` it renders a few blocks only, as a smoke test.

use std::time::{Duration, Instant};

use auralis::synth::gpu::{AdapterPolicy, GpuContext, GpuRenderer};
use auralis::synth::{MusicParams, Preset, Synth, Timeline, VoiceTable, CHANNELS};
use hdrhistogram::Histogram;

const SAMPLE_RATE: u32 = 48_000;
const FRAMES: usize = 4800;
const PRESETS: [Preset; 4] = [Preset::Focus, Preset::Ambient, Preset::Pulse, Preset::Night];

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1e6
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let context = match GpuContext::acquire(AdapterPolicy::Any) {
        Ok(context) => context,
        Err(e) if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) => {
            panic!("a Vulkan adapter is required under CI: {e}")
        }
        Err(e) => {
            eprintln!("skipping: no Vulkan adapter ({e}); apt-get install mesa-vulkan-drivers");
            return;
        }
    };
    println!(
        "adapter: {} ({}, {}, driver {})",
        context.adapter.name,
        context.adapter.backend,
        context.adapter.device_type,
        context.adapter.driver
    );
    let counts: &[usize] = if full { &[1, 8, 32, 128] } else { &[1, 8] };
    let mut gpu = GpuRenderer::new(context, 128, FRAMES, Duration::from_secs(60)).unwrap();
    let start = 1_795_000_000u64 * SAMPLE_RATE as u64;
    println!("stations | cpu p50 | cpu p99 | gpu p50 | gpu p99 | readback p50 | readback p99 (ms per 100 ms block of every station)");
    let mut crossover = None;
    for &stations in counts {
        let blocks: u64 = if !full {
            3
        } else if stations >= 128 {
            30
        } else {
            100
        };
        let mut synths: Vec<Synth> = (0..stations)
            .map(|i| {
                let seed = 1000 + i as u64;
                let params = MusicParams::from_preset(seed, PRESETS[i % PRESETS.len()]);
                Synth::new(Timeline::new(seed, SAMPLE_RATE, params), FRAMES)
            })
            .collect();
        let mut outs = vec![vec![0.0f32; FRAMES * CHANNELS]; stations];
        let (mut cpu, mut on_gpu, mut readback) = (histogram(), histogram(), histogram());
        for block in 0..blocks {
            let position = start + block * FRAMES as u64;
            let began = Instant::now();
            for (synth, out) in synths.iter_mut().zip(&mut outs) {
                synth.render(position, out).unwrap();
            }
            cpu.record(began.elapsed().as_nanos() as u64).unwrap();
            std::hint::black_box(&outs);

            let began = Instant::now();
            for synth in &mut synths {
                synth.compose(position, FRAMES as u32);
            }
            let tables: Vec<&VoiceTable> = synths.iter().map(|s| s.table()).collect();
            let mut slices: Vec<&mut [f32]> = outs.iter_mut().map(|o| &mut o[..]).collect();
            gpu.render(&tables, &mut slices).unwrap();
            on_gpu.record(began.elapsed().as_nanos() as u64).unwrap();
            readback
                .record(gpu.last_timing().readback.as_nanos() as u64)
                .unwrap();
            std::hint::black_box(&outs);
        }
        println!(
            "{stations:8} | {:7.2} | {:7.2} | {:7.2} | {:7.2} | {:12.2} | {:12.2}",
            ms(&cpu, 0.5),
            ms(&cpu, 0.99),
            ms(&on_gpu, 0.5),
            ms(&on_gpu, 0.99),
            ms(&readback, 0.5),
            ms(&readback, 0.99)
        );
        if crossover.is_none() && ms(&on_gpu, 0.5) < ms(&cpu, 0.5) {
            crossover = Some(stations);
        }
    }
    match crossover {
        Some(n) => println!("crossover: the GPU is faster from {n} stations"),
        None => println!("crossover: the CPU was faster at every station count measured"),
    }
}
