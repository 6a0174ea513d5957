//! Stream-rate to device-rate conversion with a ratio that may change every block (drift
//! correction), and exact pass-through when the ratio is exactly 1.
//!
//! Cubic (Catmull-Rom) interpolation: smooth enough for a correction of a fraction of a percent
//! and for 48 to 44.1 kHz, cheap, and its ratio can move per block without re-planning filters.
//! A resampler crate's fixed-chunk API and filter delay would break the bit-exact 1:1 path.

/// Interleaved-frame resampler state (carries the last frames across blocks).
#[derive(Clone, Debug)]
pub struct Resampler {
    channels: usize,
    /// The four most recent input frames, oldest first (for the cubic kernel).
    history: Vec<f32>,
    /// Frames of input seen so far, at most 4 (history is valid once it is 4).
    primed: usize,
    /// Read position between history[1] and history[2], in input frames (0..1).
    phase: f64,
    /// Still copying samples unchanged: no ratio other than 1 has been asked for yet.
    exact: bool,
}

impl Resampler {
    pub fn new(channels: usize) -> Self {
        let channels = channels.max(1);
        Self {
            channels,
            history: vec![0.0; channels * 4],
            primed: 0,
            phase: 0.0,
            exact: true,
        }
    }

    /// Converts `input` (interleaved frames) with `ratio` = output rate / input rate, appending
    /// to `output`. Until a ratio other than exactly 1 is asked for, samples are copied unchanged;
    /// after that, a ratio of 1 interpolates at a fixed fractional offset (still continuous).
    pub fn process(&mut self, input: &[f32], ratio: f64, output: &mut Vec<f32>) {
        let c = self.channels;
        if self.exact {
            if ratio == 1.0 {
                output.extend_from_slice(input);
                for frame in input.chunks_exact(c) {
                    self.push(frame);
                }
                return;
            }
            // Everything pushed so far was copied out: the first interpolated frame must be the
            // one after the newest (emission reads between history[1] and history[2]). With
            // no input yet, output starts at input frame 1.
            self.exact = false;
            self.phase = if self.primed == 4 {
                2.0
            } else {
                (self.primed as f64 - 1.0).max(0.0)
            };
        }
        let step = 1.0 / ratio.max(1e-6);
        for frame in input.chunks_exact(c) {
            self.push(frame);
            if self.primed < 4 {
                continue;
            }
            // Emit every output frame whose position lies between history[1] and history[2].
            while self.phase < 1.0 {
                let t = self.phase as f32;
                for ch in 0..c {
                    let p0 = self.history[ch];
                    let p1 = self.history[c + ch];
                    let p2 = self.history[2 * c + ch];
                    let p3 = self.history[3 * c + ch];
                    output.push(catmull_rom(p0, p1, p2, p3, t));
                }
                self.phase += step;
            }
            self.phase -= 1.0;
        }
    }

    fn push(&mut self, frame: &[f32]) {
        self.history.copy_within(self.channels.., 0);
        let start = self.channels * 3;
        self.history[start..].copy_from_slice(frame);
        self.primed = (self.primed + 1).min(4);
    }
}

fn catmull_rom(p0: f32, p1: f32, p2: f32, p3: f32, t: f32) -> f32 {
    let a = -0.5 * p0 + 1.5 * p1 - 1.5 * p2 + 0.5 * p3;
    let b = p0 - 2.5 * p1 + 2.0 * p2 - 0.5 * p3;
    let c = -0.5 * p0 + 0.5 * p2;
    ((a * t + b) * t + c) * t + p1
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
    fn ratio_one_is_bit_exact() {
        let input = sine(48_000.0, 440.0, 4800);
        let mut r = Resampler::new(2);
        let mut out = Vec::new();
        for block in input.chunks(960) {
            r.process(block, 1.0, &mut out);
        }
        assert_eq!(out, input);
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
        // Output starts at input frame 1, so output frame k sits at 1/48 000 s + k/44 100 s.
        let delay = 44_100.0 / 48_000.0;
        let mut worst = 0.0f32;
        for k in 100..frames - 100 {
            let t = (k as f64 + delay) / 44_100.0;
            let expected = ((2.0 * std::f64::consts::PI * 440.0 * t).sin() * 0.5) as f32;
            worst = worst.max((out[2 * k] - expected).abs());
            assert_eq!(out[2 * k + 1], -out[2 * k], "channels stay separate");
        }
        assert!(worst < 1e-3, "max error {worst}");
    }

    #[test]
    fn switching_from_exact_to_corrected_neither_repeats_nor_skips() {
        // A ramp makes a repeated or skipped frame visible as a step of 0 or 2.
        let input: Vec<f32> = (0..2000).map(|i| i as f32).collect();
        let mut r = Resampler::new(1);
        let mut out = Vec::new();
        r.process(&input[..1000], 1.0, &mut out);
        r.process(&input[1000..], 1.0 + 1e-9, &mut out);
        for pair in out.windows(2) {
            assert!((pair[1] - pair[0] - 1.0).abs() < 1e-3, "step {pair:?}");
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
        assert!((frames / 96_000.0 - 1.005).abs() < 1e-4, "{frames}");
    }
}
