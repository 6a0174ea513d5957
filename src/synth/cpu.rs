//! CPU reference renderer: turns a voice table into interleaved stereo `f32` samples.
//!
//! Every per-sample quantity is derived from the voice's integer age (frames since its onset), with
//! oscillator phase reduced in `f64` before the `f32` sine, so audio an hour or a day into the
//! stream is as clean as at the start. The renderer owns its scratch buffers; `render` never
//! allocates, locks or blocks.

use super::score::mix64;
use super::voice::{Voice, VoiceKind, VoiceTable};

/// Output channels (interleaved stereo).
pub const CHANNELS: usize = 2;

/// Renders voice tables on the CPU.
#[derive(Debug)]
pub struct CpuRenderer {
    /// The pad bus, kept apart so the tremolo applies to pads only.
    pad_bus: Vec<f32>,
}

/// The block does not fit the renderer or the output slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("output holds {got} samples, the block needs {needed}")]
    OutputSize { got: usize, needed: usize },
    #[error("block of {frames} frames exceeds the renderer's {max} frames")]
    BlockTooLong { frames: usize, max: usize },
}

impl CpuRenderer {
    /// A renderer for blocks of up to `max_frames` frames.
    pub fn new(max_frames: usize) -> Self {
        Self {
            pad_bus: vec![0.0; max_frames * CHANNELS],
        }
    }

    /// Renders `table` into `out` (interleaved stereo, `table.frames * 2` samples).
    ///
    /// # Errors
    /// [`RenderError`] when `out` or the renderer's scratch space does not match the block.
    pub fn render(&mut self, table: &VoiceTable, out: &mut [f32]) -> Result<(), RenderError> {
        let frames = table.frames as usize;
        let needed = frames * CHANNELS;
        if out.len() != needed {
            return Err(RenderError::OutputSize {
                got: out.len(),
                needed,
            });
        }
        if needed > self.pad_bus.len() {
            return Err(RenderError::BlockTooLong {
                frames,
                max: self.pad_bus.len() / CHANNELS,
            });
        }
        let pads = &mut self.pad_bus[..needed];
        pads.fill(0.0);
        out.fill(0.0);
        for voice in table.voices() {
            match voice.kind {
                VoiceKind::Pad => add_tonal(voice, frames, pads, &PAD_HARMONICS),
                VoiceKind::Lead => add_tonal(voice, frames, out, &LEAD_HARMONICS),
                VoiceKind::Kick => add_kick(voice, frames, out),
                VoiceKind::Swell => add_swell(voice, table.start, frames, out),
            }
        }
        let mix = table.mix;
        for (k, (frame, pad)) in out
            .chunks_exact_mut(CHANNELS)
            .zip(pads.chunks_exact(CHANNELS))
            .enumerate()
        {
            let tremolo_turns = fract((table.start + k as u64) as f64 * mix.tremolo_increment);
            let tremolo = 1.0 + mix.tremolo_depth * sin_turns(tremolo_turns as f32);
            for (sample, pad) in frame.iter_mut().zip(pad) {
                *sample = (mix.drive * (*sample + pad * tremolo)).tanh() * mix.master_gain;
            }
        }
        Ok(())
    }
}

/// Relative levels of the fundamental, second and third harmonic.
type Harmonics = [f32; 3];
const PAD_HARMONICS: Harmonics = [1.0, 0.28, 0.1];
const LEAD_HARMONICS: Harmonics = [1.0, 0.45, 0.18];

/// The frame range `k0..k1` of the block in which `voice` sounds.
fn active_range(voice: &Voice, frames: usize) -> (usize, usize) {
    let start = voice.onset.max(0);
    let end = (voice.onset + voice.length() as i64).clamp(0, frames as i64);
    (start.min(end) as usize, end as usize)
}

/// Attack ramp times linear release: the gate part of every envelope.
#[inline(always)]
fn gate_envelope(voice: &Voice, age: f32) -> f32 {
    let attack = (age / voice.attack as f32).min(1.0);
    let gate = voice.gate as f32;
    let release = if age < gate {
        1.0
    } else {
        (1.0 - (age - gate) / voice.release as f32).max(0.0)
    };
    attack * release
}

/// `exp(-age / tau)` at the first active frame and the per-frame factor that continues it.
fn decay_start(tau: f32, age: u64) -> (f64, f64) {
    if tau <= 0.0 {
        return (1.0, 1.0);
    }
    let tau = tau as f64;
    ((-(age as f64) / tau).exp(), (-1.0 / tau).exp())
}

fn add_tonal(voice: &Voice, frames: usize, out: &mut [f32], harmonics: &Harmonics) {
    let (k0, k1) = active_range(voice, frames);
    if k0 >= k1 {
        return;
    }
    let first_age = (k0 as i64 - voice.onset) as u64;
    let (mut decay, decay_step) = decay_start(voice.decay_frames, first_age);
    let sustain = voice.sustain as f64;
    for k in k0..k1 {
        let age = (k as i64 - voice.onset) as u64;
        let turns = fract(age as f64 * voice.increment) as f32;
        let level = (sustain + (1.0 - sustain) * decay) as f32;
        decay *= decay_step;
        let env = gate_envelope(voice, age as f32) * level;
        let s = sin_turns(turns);
        let c = cos_turns(turns);
        // Second and third harmonics from the first by double/triple-angle identities.
        let s2 = 2.0 * s * c;
        let s3 = s * (3.0 - 4.0 * s * s);
        let wave = harmonics[0] * s + harmonics[1] * s2 + harmonics[2] * s3;
        let v = wave * env;
        out[2 * k] += v * voice.gain_left;
        out[2 * k + 1] += v * voice.gain_right;
    }
}

fn add_kick(voice: &Voice, frames: usize, out: &mut [f32]) {
    let (k0, k1) = active_range(voice, frames);
    if k0 >= k1 {
        return;
    }
    let first_age = (k0 as i64 - voice.onset) as u64;
    let (mut decay, decay_step) = decay_start(voice.decay_frames, first_age);
    let (mut sweep, sweep_step) = decay_start(voice.aux_frames, first_age);
    for k in k0..k1 {
        let age = (k as i64 - voice.onset) as u64;
        // Phase of a sine whose frequency falls exponentially to `increment`.
        let turns = fract(age as f64 * voice.increment + voice.aux * (1.0 - sweep)) as f32;
        let env = gate_envelope(voice, age as f32) * decay as f32;
        decay *= decay_step;
        sweep *= sweep_step;
        let v = sin_turns(turns) * env;
        out[2 * k] += v * voice.gain_left;
        out[2 * k + 1] += v * voice.gain_right;
    }
}

fn add_swell(voice: &Voice, block_start: u64, frames: usize, out: &mut [f32]) {
    let (k0, k1) = active_range(voice, frames);
    let seed = voice.aux as u64;
    let gate = voice.gate as f32;
    for k in k0..k1 {
        let age = (k as i64 - voice.onset) as u64;
        let rise = (age as f32 / gate).min(1.0);
        let env = gate_envelope(voice, age as f32) * rise * rise;
        let position = block_start + k as u64;
        // Sweep the noise across the stereo field as it rises.
        let pan = 0.5 + 0.4 * sin_turns(fract(age as f64 / 96_000.0) as f32);
        let left = value_noise(seed, position) * env * (1.0 - pan) * 2.0;
        let right = value_noise(seed ^ 0xA5A5, position) * env * pan * 2.0;
        out[2 * k] += left * voice.gain_left;
        out[2 * k + 1] += right * voice.gain_right;
    }
}

/// Smoothly interpolated noise at absolute frame `position` (8-frame segments: a soft "whoosh").
#[inline(always)]
fn value_noise(seed: u64, position: u64) -> f32 {
    let segment = position >> 3;
    let t = (position & 7) as f32 / 8.0;
    let a = unit_noise(seed, segment);
    let b = unit_noise(seed, segment + 1);
    let t = t * t * (3.0 - 2.0 * t);
    a + (b - a) * t
}

/// Deterministic noise value in -1..1.
#[inline(always)]
fn unit_noise(seed: u64, index: u64) -> f32 {
    (mix64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)) >> 40) as f32 / (1u64 << 23) as f32
        - 1.0
}

/// Fractional part of a non-negative `f64` (truncation, so no libm call).
#[inline(always)]
pub fn fract(x: f64) -> f64 {
    x - (x as i64) as f64
}

/// `sin(2π t)` for `t` in 0..1.25, by folding to a quarter wave and a degree-9 polynomial
/// (max error about 4e-6). The GPU shaders use the same formula, so both renderers agree.
#[inline(always)]
pub fn sin_turns(t: f32) -> f32 {
    let mut x = t - 0.5;
    if x >= 0.5 {
        x -= 1.0;
    }
    // sin(2π t) = -sin(2π x), x in -0.5..0.5; fold to -0.25..0.25 with sin(π - a) = sin(a).
    let x = if x > 0.25 {
        0.5 - x
    } else if x < -0.25 {
        -0.5 - x
    } else {
        x
    };
    let z = x * std::f32::consts::TAU;
    let z2 = z * z;
    let p = 1.0 + z2 * (-1.0 / 6.0 + z2 * (1.0 / 120.0 + z2 * (-1.0 / 5040.0 + z2 / 362_880.0)));
    -(z * p)
}

/// `cos(2π t)` for `t` in 0..1.
#[inline(always)]
pub fn cos_turns(t: f32) -> f32 {
    sin_turns(t + 0.25)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::score::Score;

    #[test]
    fn sine_approximation_is_accurate() {
        for i in 0..=10_000 {
            let t = i as f32 / 10_000.0 * 0.9999;
            let exact = (t as f64 * std::f64::consts::TAU).sin() as f32;
            assert!((sin_turns(t) - exact).abs() < 1e-5, "t={t}");
            let exact_cos = (t as f64 * std::f64::consts::TAU).cos() as f32;
            assert!((cos_turns(t) - exact_cos).abs() < 1e-5, "t={t}");
        }
    }

    #[test]
    fn noise_is_bounded_and_varied() {
        let values: Vec<f32> = (0..10_000).map(|n| value_noise(3, n)).collect();
        assert!(values.iter().all(|v| (-1.0..=1.0).contains(v)));
        let mean = values.iter().sum::<f32>() / values.len() as f32;
        assert!(mean.abs() < 0.1, "mean {mean}");
        assert!(values.iter().any(|v| *v > 0.5) && values.iter().any(|v| *v < -0.5));
    }

    #[test]
    fn rejects_wrong_output_size() {
        let mut renderer = CpuRenderer::new(4800);
        let mut table = VoiceTable::new();
        Score::new(1, 48_000).compose(0, 4800, &mut table);
        let mut out = vec![0.0; 100];
        assert_eq!(
            renderer.render(&table, &mut out),
            Err(RenderError::OutputSize {
                got: 100,
                needed: 9600
            })
        );
        let mut big = VoiceTable::new();
        Score::new(1, 48_000).compose(0, 9600, &mut big);
        let mut out = vec![0.0; 19_200];
        assert!(matches!(
            renderer.render(&big, &mut out),
            Err(RenderError::BlockTooLong { .. })
        ));
    }
}
