//! The native listener's resampler (rubato's cubic asynchronous resampler behind
//! `listen::resample`) beside rubato used directly and rubato's sinc resampler, for the choice
//! recorded in docs/perf.md: the cost of one 100 ms block from 48 kHz to a 44.1 kHz device with a
//! drift correction that moves every block (as `listen::drift` does), and whether a ratio of
//! exactly 1 hands the samples through unchanged (what the bit-exact ALSA test relies on). The
//! music is ten seconds of the default station. Run with `cargo bench --bench resample`.

use std::hint::black_box;

use audioadapter_buffers::direct::InterleavedSlice;
use auralis::listen::resample::Resampler as Listener;
use auralis::synth::{Score, Synth, CHANNELS};
use criterion::{criterion_group, criterion_main, Criterion};
use rubato::{
    Adjustable, Async, FixedAsync, PolynomialDegree, Resampler, SincInterpolationParameters,
    SincInterpolationType, WindowFunction,
};

const RATE: u32 = 48_000;
const BLOCK: usize = 4800;
const DEVICE_RATIO: f64 = 44_100.0 / 48_000.0;

fn music(blocks: usize) -> Vec<Vec<f32>> {
    let mut synth = Synth::new(Score::new(1, RATE), BLOCK);
    (0..blocks as u64)
        .map(|k| {
            let mut out = vec![0.0f32; BLOCK * CHANNELS];
            synth.render(k * BLOCK as u64, &mut out).unwrap();
            out
        })
        .collect()
}

/// The drift correction for block `k`: a slow wobble of ±200 ppm.
fn correction(k: usize) -> f64 {
    1.0 + 200e-6 * (k as f64 * 0.3).sin()
}

fn rubato_cubic(ratio: f64) -> Async<f32> {
    Async::<f32>::new_poly(
        ratio,
        1.01,
        PolynomialDegree::Cubic,
        BLOCK,
        CHANNELS,
        FixedAsync::Input,
    )
    .unwrap()
}

fn rubato_sinc(ratio: f64) -> Async<f32> {
    let parameters = SincInterpolationParameters::new(128, WindowFunction::Blackman2)
        .oversampling_factor(256)
        .interpolation(SincInterpolationType::Quadratic);
    Async::<f32>::new_sinc(ratio, 1.01, &parameters, BLOCK, CHANNELS, FixedAsync::Input).unwrap()
}

/// One block through a rubato resampler at `relative` × its ratio; returns the frames written.
fn rubato_block(
    resampler: &mut Async<f32>,
    block: &[f32],
    relative: f64,
    out: &mut [f32],
) -> usize {
    resampler
        .set_resample_ratio_relative(relative, false)
        .unwrap();
    let input = InterleavedSlice::new(block, CHANNELS, BLOCK).unwrap();
    let frames = out.len() / CHANNELS;
    let mut output = InterleavedSlice::new_mut(out, CHANNELS, frames).unwrap();
    resampler
        .process_into_buffer(&input, &mut output, None)
        .unwrap()
        .1
}

/// At a ratio of exactly 1: the largest difference between what comes out (after the
/// resampler's own delay) and what went in.
fn ratio_one_error(blocks: &[Vec<f32>]) -> (f32, f32, usize) {
    let input: Vec<f32> = blocks.concat();
    let mut ours = Listener::new(CHANNELS);
    let mut out = Vec::new();
    for block in blocks {
        ours.process(block, 1.0, &mut out);
    }
    // One frame later (src/listen/resample.rs checks it).
    let ours_error = max_difference(&input, &out[CHANNELS..]);
    let mut theirs = rubato_cubic(1.0);
    let delay = theirs.output_delay();
    let mut produced = Vec::new();
    let mut scratch = vec![0.0f32; 2 * BLOCK * CHANNELS];
    for block in blocks {
        let n = rubato_block(&mut theirs, block, 1.0, &mut scratch);
        produced.extend_from_slice(&scratch[..n * CHANNELS]);
    }
    // The smallest error over alignments around the delay it reports, to be fair to it.
    let (theirs_error, delay) = (delay.saturating_sub(4)..=delay + 4)
        .map(|d| (max_difference(&input, &produced[d * CHANNELS..]), d))
        .fold(
            (f32::INFINITY, delay),
            |best, e| if e.0 < best.0 { e } else { best },
        );
    (ours_error, theirs_error, delay)
}

fn max_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn resample(c: &mut Criterion) {
    let blocks = music(100);
    let (ours, theirs, delay) = ratio_one_error(&blocks);
    println!(
        "ratio exactly 1: the listener's max |error| {ours:e} (after its delay); rubato cubic {theirs:e} (best alignment: {delay} frames)"
    );
    let mut group = c.benchmark_group("resample_100ms_48k_to_44k1_with_drift");
    let mut listener = Listener::new(CHANNELS);
    let mut out = Vec::with_capacity(2 * BLOCK * CHANNELS);
    let mut k = 0;
    group.bench_function("listener", |b| {
        b.iter(|| {
            k += 1;
            out.clear();
            let ratio = DEVICE_RATIO * correction(k);
            listener.process(black_box(&blocks[k % blocks.len()]), ratio, &mut out);
            black_box(out.len())
        })
    });
    for (name, mut resampler) in [
        ("rubato_poly_cubic", rubato_cubic(DEVICE_RATIO)),
        ("rubato_sinc_128", rubato_sinc(DEVICE_RATIO)),
    ] {
        let mut scratch = vec![0.0f32; 2 * BLOCK * CHANNELS];
        let mut k = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                k += 1;
                let block = &blocks[k % blocks.len()];
                black_box(rubato_block(
                    &mut resampler,
                    block,
                    correction(k),
                    &mut scratch,
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, resample);
criterion_main!(benches);
