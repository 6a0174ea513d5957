//! Stream-rate to device-rate conversion with a ratio that may change every block (the drift
//! correction): rubato's asynchronous resampler with cubic interpolation, built for the stream's
//! block size. Its ratio moves per block without re-planning filters, and at a ratio of exactly 1
//! it passes every sample through unchanged, one frame later (checked below and measured in
//! `benches/resample.rs`, which also shows it costs what the hand-written resampler it replaced
//! did).

use audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Adjustable, Async, FixedAsync, PolynomialDegree, Resampler as _};

/// How far the ratio may move from the one the resampler was built with before it is rebuilt
/// (drift corrections are a fraction of a percent).
const MAX_RELATIVE_RATIO: f64 = 1.05;

/// Interleaved-frame resampler; its state carries across blocks.
pub struct Resampler {
    channels: usize,
    inner: Option<Built>,
    scratch: Vec<f32>,
}

/// A resampler for one block size and base ratio.
struct Built {
    resampler: Async<f32>,
    block_frames: usize,
    base_ratio: f64,
}

impl Resampler {
    pub fn new(channels: usize) -> Self {
        Self {
            channels: channels.max(1),
            inner: None,
            scratch: Vec::new(),
        }
    }

    /// Converts `input` (interleaved frames, one block) with `ratio` = output rate / input rate,
    /// appending to `output`. A block of another size, or a ratio far from the last one, starts a
    /// new resampler (a new stream, in practice).
    pub fn process(&mut self, input: &[f32], ratio: f64, output: &mut Vec<f32>) {
        let c = self.channels;
        let frames = input.len() / c;
        if frames == 0 || !(ratio.is_finite() && ratio > 0.0) {
            return;
        }
        let fits = self.inner.as_ref().is_some_and(|built| {
            let relative = ratio / built.base_ratio;
            built.block_frames == frames
                && (1.0 / MAX_RELATIVE_RATIO..=MAX_RELATIVE_RATIO).contains(&relative)
        });
        if !fits {
            self.inner = Async::<f32>::new_poly(
                ratio,
                MAX_RELATIVE_RATIO,
                PolynomialDegree::Cubic,
                frames,
                c,
                FixedAsync::Input,
            )
            .ok()
            .map(|resampler| Built {
                resampler,
                block_frames: frames,
                base_ratio: ratio,
            });
        }
        let Some(built) = &mut self.inner else {
            // Parameters rubato refuses (none that a stream has): play the block unconverted.
            output.extend_from_slice(&input[..frames * c]);
            return;
        };
        // Within bounds by the check above.
        let _ = built.resampler.set_resample_ratio(ratio, false);
        let room = built.resampler.output_frames_max();
        self.scratch.resize(room * c, 0.0);
        let converted = InterleavedSlice::new(&input[..frames * c], c, frames).and_then(|from| {
            let mut to = InterleavedSlice::new_mut(&mut self.scratch, c, room)?;
            Ok(built.resampler.process_into_buffer(&from, &mut to, None))
        });
        match converted {
            Ok(Ok((_, written))) => output.extend_from_slice(&self.scratch[..written * c]),
            _ => output.extend_from_slice(&input[..frames * c]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: f64, freq: f64, frames: usize) -> Vec<f32> {
        (0..frames)
            .flat_map(|i| {
                let v = (2.0 * std::f64::consts::PI * freq * i as f64 / rate).sin() as f32 * 0.5;
                [v, -v]
            })
            .collect()
    }

    #[test]
    fn ratio_one_is_bit_exact_after_the_delay() {
        let input = sine(48_000.0, 440.0, 48_000);
        let mut r = Resampler::new(2);
        let mut out = Vec::new();
        for block in input.chunks(9600) {
            r.process(block, 1.0, &mut out);
        }
        // One frame of silence, then every input sample unchanged (what is still inside the
        // resampler comes out with the next block).
        assert!(
            input.len() - out.len() <= 8,
            "{} of {}",
            out.len(),
            input.len()
        );
        assert_eq!(&out[..2], &[0.0, 0.0]);
        assert!(out[2..] == input[..out.len() - 2], "unchanged samples");
    }

    #[test]
    fn downsampling_keeps_the_waveform_and_the_frame_count() {
        let input = sine(48_000.0, 440.0, 48_000);
        let mut r = Resampler::new(2);
        let mut out = Vec::new();
        for block in input.chunks(9600) {
            r.process(block, 44_100.0 / 48_000.0, &mut out);
        }
        let frames = out.len() / 2;
        assert!((frames as i64 - 44_100).abs() <= 4, "{frames} frames");
        // The delay is a fraction of a frame at the output rate: fit it, then compare.
        let error = |delay: f64| {
            (100..frames - 100)
                .map(|k| {
                    let t = (k as f64 - delay) / 44_100.0;
                    let expected = ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 0.5) as f32;
                    (out[2 * k] - expected).abs()
                })
                .fold(0.0f32, f32::max)
        };
        let worst = (0..800)
            .map(|i| error(i as f64 / 100.0))
            .fold(f32::INFINITY, f32::min);
        for k in 0..frames {
            assert_eq!(out[2 * k + 1], -out[2 * k], "channels stay separate");
        }
        assert!(worst < 1e-3, "max error {worst}");
    }

    #[test]
    fn a_ratio_that_moves_neither_repeats_nor_skips() {
        // A ramp makes a repeated or skipped frame visible as a step of 0 or 2.
        let input: Vec<f32> = (0..4000).map(|i| i as f32 / 4000.0).collect();
        let mut r = Resampler::new(1);
        let mut out = Vec::new();
        for (i, block) in input.chunks(500).enumerate() {
            let ratio = if i < 4 { 1.0 } else { 1.0 + 1e-4 };
            r.process(block, ratio, &mut out);
        }
        for pair in out[4..].windows(2) {
            let step = (pair[1] - pair[0]) * 4000.0;
            assert!((step - 1.0).abs() < 0.01, "step {step}");
        }
    }

    #[test]
    fn a_small_correction_changes_the_rate_by_that_much() {
        let input = sine(48_000.0, 440.0, 96_000);
        let mut r = Resampler::new(2);
        let mut out = Vec::new();
        for block in input.chunks(4800) {
            r.process(block, 1.005, &mut out);
        }
        let frames = (out.len() / 2) as f64;
        assert!((frames / 96_000.0 - 1.005).abs() < 2e-4, "{frames}");
    }
}
