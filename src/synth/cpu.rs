//! CPU reference renderer: turns a voice table into interleaved stereo `f32` samples.
//!
//! Every per-sample quantity is derived from the voice's integer age (frames since its onset), with
//! oscillator phase reduced in `f64` before the `f32` sine, so audio an hour or a day into the
//! stream is as clean as at the start. The renderer owns its scratch buffers; `render` never
//! allocates, locks or blocks.

use super::hash::mix64;
use super::voice::{Voice, VoiceKind, VoiceTable};

/// Output channels (interleaved stereo).
pub const CHANNELS: usize = 2;

/// Renders voice tables on the CPU.
#[derive(Debug)]
pub struct CpuRenderer {
    /// Planar scratch buses (left, right) for the dry mix and the pads, which get the tremolo.
    left: Vec<f32>,
    right: Vec<f32>,
    pad_left: Vec<f32>,
    pad_right: Vec<f32>,
}

/// The block does not fit the renderer or the output slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("output holds {got} samples, the block needs {needed}")]
    OutputSize { got: usize, needed: usize },
    #[error("block of {frames} frames exceeds the renderer's {max} frames")]
    BlockTooLong { frames: usize, max: usize },
}

/// Envelopes and oscillator phases are evaluated exactly every `SEGMENT` frames of a voice's age
/// and interpolated in between. Segments are aligned to the voice's onset, so the output is a
/// pure function of the stream position, whatever the block boundaries.
pub const SEGMENT: u64 = 64;

impl CpuRenderer {
    /// A renderer for blocks of up to `max_frames` frames.
    pub fn new(max_frames: usize) -> Self {
        Self {
            left: vec![0.0; max_frames],
            right: vec![0.0; max_frames],
            pad_left: vec![0.0; max_frames],
            pad_right: vec![0.0; max_frames],
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
        if frames > self.left.len() {
            return Err(RenderError::BlockTooLong {
                frames,
                max: self.left.len(),
            });
        }
        let (left, right) = (&mut self.left[..frames], &mut self.right[..frames]);
        let (pad_left, pad_right) = (&mut self.pad_left[..frames], &mut self.pad_right[..frames]);
        for bus in [&mut *left, &mut *right, &mut *pad_left, &mut *pad_right] {
            bus.fill(0.0);
        }
        for voice in table.voices() {
            match voice.kind {
                VoiceKind::Pad => add_tonal(voice, &PAD_HARMONICS, pad_left, pad_right),
                VoiceKind::Lead => add_tonal(voice, &LEAD_HARMONICS, left, right),
                VoiceKind::Kick => add_tonal(voice, &SINE, left, right),
                VoiceKind::Swell => add_swell(voice, table.start, left, right),
                VoiceKind::Hat => add_hat(voice, left, right),
            }
        }
        let mix = table.mix;
        for (k, frame) in out.chunks_exact_mut(CHANNELS).enumerate() {
            let tremolo_turns = fract((table.start + k as u64) as f64 * mix.tremolo_increment);
            let tremolo = 1.0 + mix.tremolo_depth * sin_turns(tremolo_turns as f32);
            let gain = mix.gain_at(k);
            frame[0] = soft_clip(mix.drive * (left[k] + pad_left[k] * tremolo)) * gain;
            frame[1] = soft_clip(mix.drive * (right[k] + pad_right[k] * tremolo)) * gain;
        }
        Ok(())
    }
}

/// Relative levels of the fundamental, second and third harmonic.
type Harmonics = [f32; 3];
const PAD_HARMONICS: Harmonics = [1.0, 0.28, 0.1];
const LEAD_HARMONICS: Harmonics = [1.0, 0.45, 0.18];
const SINE: Harmonics = [1.0, 0.0, 0.0];

/// The frame range `k0..k1` of the block in which `voice` sounds.
fn active_range(voice: &Voice, frames: usize) -> (usize, usize) {
    let start = voice.onset.max(0);
    let end = (voice.onset + voice.length() as i64).clamp(0, frames as i64);
    (start.min(end) as usize, end as usize)
}

/// The voice's amplitude envelope at `age` frames, exactly (attack ramp, exponential decay to the
/// sustain level, linear release after the gate).
pub fn envelope(voice: &Voice, age: u64) -> f64 {
    let age_f = age as f64;
    let attack = (age_f / voice.attack.max(1) as f64).min(1.0);
    let level = if voice.decay_frames > 0.0 {
        let sustain = voice.sustain as f64;
        sustain + (1.0 - sustain) * (-age_f / voice.decay_frames as f64).exp()
    } else {
        1.0
    };
    let gate = voice.gate as u64;
    let release = if age < gate {
        1.0
    } else {
        (1.0 - (age - gate) as f64 / voice.release.max(1) as f64).max(0.0)
    };
    attack * level * release
}

/// The voice's oscillator phase at `age` frames, in turns (not reduced). Kicks add an
/// exponential pitch sweep: `aux * (1 - exp(-age / aux_frames))`.
pub fn phase(voice: &Voice, age: u64) -> f64 {
    let linear = age as f64 * voice.increment;
    match voice.kind {
        VoiceKind::Kick if voice.aux_frames > 0.0 => {
            linear + voice.aux * (1.0 - (-(age as f64) / voice.aux_frames as f64).exp())
        }
        _ => linear,
    }
}

/// Adds an oscillator voice to a stereo bus, one onset-aligned segment at a time.
fn add_tonal(voice: &Voice, harmonics: &Harmonics, left: &mut [f32], right: &mut [f32]) {
    let (k0, k1) = active_range(voice, left.len());
    let mut k = k0;
    // A segment's end values are the next segment's start values: computed once, carried over.
    let mut carried: Option<(u64, f64, f64)> = None;
    while k < k1 {
        let age = (k as i64 - voice.onset) as u64;
        let offset = age % SEGMENT;
        let segment_age = age - offset;
        let end = k1.min(k + (SEGMENT - offset) as usize);
        // Exact values at the segment's ends (f64), linear in between (f32, vectorisable).
        let (phase_start, env_start) = match carried {
            Some((at, phase, env)) if at == segment_age => (phase, env),
            _ => (phase(voice, segment_age), envelope(voice, segment_age)),
        };
        let phase_end = phase(voice, segment_age + SEGMENT);
        let env_end = envelope(voice, segment_age + SEGMENT);
        carried = Some((segment_age + SEGMENT, phase_end, env_end));
        let step = ((phase_end - phase_start) / SEGMENT as f64) as f32;
        let base = fract(phase_start) as f32;
        let env_start = env_start as f32;
        let env_step = (env_end as f32 - env_start) / SEGMENT as f32;
        let (gain_left, gain_right) = (voice.gain_left, voice.gain_right);
        let lanes = left[k..end].iter_mut().zip(right[k..end].iter_mut());
        for (j, (l, r)) in (offset..).zip(lanes) {
            let j = j as f32;
            let turns = base + j * step;
            let turns = turns - (turns as i32) as f32;
            let s = sin_turns(turns);
            let c = cos_turns(turns);
            // Second and third harmonics from the first by double/triple-angle identities.
            let s2 = 2.0 * s * c;
            let s3 = s * (3.0 - 4.0 * s * s);
            let wave = harmonics[0] * s + harmonics[1] * s2 + harmonics[2] * s3;
            let v = wave * (env_start + j * env_step);
            *l += v * gain_left;
            *r += v * gain_right;
        }
        k = end;
    }
}

fn add_swell(voice: &Voice, block_start: u64, left: &mut [f32], right: &mut [f32]) {
    let (k0, k1) = active_range(voice, left.len());
    let seed = voice.aux as u64;
    let rise_frames = voice.aux_frames.max(1.0);
    for k in k0..k1 {
        let age = (k as i64 - voice.onset) as u64;
        let rise = (age as f32 / rise_frames).min(1.0);
        let env = envelope(voice, age) as f32 * rise * rise;
        let position = block_start + k as u64;
        // Sweep the noise across the stereo field as it rises.
        let pan = 0.5 + 0.4 * sin_turns(fract(age as f64 / 96_000.0) as f32);
        left[k] += value_noise(seed, position) * env * (1.0 - pan) * 2.0 * voice.gain_left;
        right[k] += value_noise(seed ^ 0xA5A5, position) * env * pan * 2.0 * voice.gain_right;
    }
}

/// A closed hi-hat: white noise, high-passed by a first difference (the metallic "tss"), under
/// the voice's exponential envelope. Noise is indexed by the voice's age, so it is the same
/// whatever the block boundaries.
fn add_hat(voice: &Voice, left: &mut [f32], right: &mut [f32]) {
    let (k0, k1) = active_range(voice, left.len());
    let seed = voice.aux as u64;
    for k in k0..k1 {
        let age = (k as i64 - voice.onset) as u64;
        let env = envelope(voice, age) as f32;
        let noise = 0.5 * (unit_noise(seed, age + 1) - unit_noise(seed, age));
        left[k] += noise * env * voice.gain_left;
        right[k] += noise * env * voice.gain_right;
    }
}

/// `tanh`, by Lambert's continued fraction (7th order; error below 1e-6 for |x| < 4.5, clamped
/// beyond). Cheaper than libm and vectorisable; the GPU shaders use the same formula.
#[inline(always)]
pub fn soft_clip(x: f32) -> f32 {
    let x = x.clamp(-4.97, 4.97);
    let x2 = x * x;
    let numerator = x * (135_135.0 + x2 * (17_325.0 + x2 * (378.0 + x2)));
    let denominator = 135_135.0 + x2 * (62_370.0 + x2 * (3_150.0 + x2 * 28.0));
    (numerator / denominator).clamp(-1.0, 1.0)
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
    let x = t - 0.5;
    let x = if x >= 0.5 { x - 1.0 } else { x };
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
    fn soft_clip_matches_tanh() {
        for i in -600..=600 {
            let x = i as f32 / 100.0;
            assert!((soft_clip(x) - x.tanh()).abs() < 2e-4, "x={x}");
        }
        // Saturates at (just under) full scale, never beyond.
        assert!((0.99999..=1.0).contains(&soft_clip(100.0)));
        assert!((-1.0..=-0.99999).contains(&soft_clip(-100.0)));
    }

    #[test]
    fn output_does_not_depend_on_block_boundaries() {
        let score = Score::new(21, 48_000);
        let mut renderer = CpuRenderer::new(4800);
        let mut table = VoiceTable::new();
        let start = 1_795_000_000u64 * 48_000;
        let mut whole = vec![0.0; 9600];
        score.compose(start, 4800, &mut table);
        renderer.render(&table, &mut whole).unwrap();
        let mut pieces = Vec::new();
        for (offset, frames) in [(0u64, 1000u32), (1000, 37), (1037, 3763)] {
            let mut out = vec![0.0; frames as usize * 2];
            score.compose(start + offset, frames, &mut table);
            renderer.render(&table, &mut out).unwrap();
            pieces.extend(out);
        }
        assert_eq!(pieces, whole);
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
