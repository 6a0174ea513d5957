//! The composer: a deterministic, seekable generative score.
//!
//! Everything audible at stream frame `n` is derived from the seed, the musical parameters and `n`
//! alone: bars and beats are integer divisions of the sample position, and every "random" choice
//! is a hash of the seed and the index of the bar, phrase or step it belongs to. So any block can be
//! composed without composing the ones before it, and every listener, server instance and offline
//! render hears the same music.
//!
//! One [`Score`] covers one stretch of constant parameters (a segment of the
//! [`Timeline`](super::timeline::Timeline)): it starts at frame `origin`, which is bar `origin_bar`
//! of the station's musical clock, and only writes notes that start before the next segment does.

use std::ops::Range;

use super::hash::hash;
use super::params::MusicParams;
use super::voice::{MixSettings, Voice, VoiceKind, VoiceTable};

// Salts keep the hash streams of different decisions independent.
const SALT_PROGRESSION: u64 = 0x5052_4F47;
const SALT_MOTIF: u64 = 0x4D4F_5449;
const SALT_VARIATION: u64 = 0x5641_5249;
const SALT_KICK: u64 = 0x4B49_434B;
const SALT_HAT: u64 = 0x4841_5453;
const SALT_STYLE: u64 = 0x5354_594C;
const SALT_NOISE: u64 = 0x4E4F_4953;

/// Scale degrees (0 = tonic .. 6), the states of the chord Markov chain.
const DEGREES: usize = 7;

/// Functional-harmony transition weights between diatonic chords (row: from, column: to; each row
/// sums to 1). Chord variety blends this with a uniform choice among the other six chords.
const FUNCTIONAL: [[f64; DEGREES]; DEGREES] = [
    // to:  I     ii    iii   IV    V     vi    vii
    [0.00, 0.12, 0.06, 0.30, 0.28, 0.20, 0.04], // from I
    [0.08, 0.00, 0.06, 0.10, 0.56, 0.08, 0.12], // from ii
    [0.10, 0.10, 0.00, 0.30, 0.05, 0.45, 0.00], // from iii
    [0.30, 0.14, 0.04, 0.00, 0.40, 0.08, 0.04], // from IV
    [0.55, 0.04, 0.08, 0.10, 0.00, 0.23, 0.00], // from V
    [0.06, 0.30, 0.10, 0.34, 0.20, 0.00, 0.00], // from vi
    [0.60, 0.00, 0.20, 0.00, 0.00, 0.20, 0.00], // from vii
];

/// Kick patterns over the eight eighths of a bar (bit i = eighth i), one bank per intensity band.
const KICK_BANKS: [&[u8]; 4] = [
    &[0b0000_0001, 0b0001_0001],
    &[0b0001_0001, 0b1001_0001, 0b0100_1001],
    &[0b0101_0101, 0b1101_0001, 0b0101_1001],
    &[0b0101_0101],
];

/// Melodic contour over a two-bar phrase, in scale steps: rise, peak, fall.
const CONTOUR: [i32; 16] = [0, 1, 2, 3, 4, 4, 3, 2, 1, 2, 3, 5, 4, 3, 1, 0];

/// Bars per section; the last bar of each section carries a swell and no kick until the downbeat.
pub const BARS_PER_SECTION: u64 = 8;
/// The musical grid: every onset falls on an eighth note.
pub const EIGHTHS_PER_BAR: u64 = 8;
const STEPS_PER_PHRASE: u64 = 16;

/// Voice levels before the soft clipper (calibrated so every preset lands near -16 dBFS RMS).
const PAD_LEVEL: f32 = 0.085;
const BASS_LEVEL: f32 = 0.17;
const LEAD_LEVEL: f32 = 0.17;
const KICK_LEVEL: f32 = 0.42;
const HAT_LEVEL: f32 = 0.2;
const SWELL_LEVEL: f32 = 0.12;

/// Composes one stretch of constant parameters; queried per block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    seed: u64,
    sample_rate: u32,
    params: MusicParams,
    /// First frame this score writes notes for.
    origin: u64,
    /// The station's bar number at `origin`: sections and phrases continue across changes.
    origin_bar: u64,
    scale: [i32; 7],
    eighth_frames: u64,
    bars_per_chord: u64,
    chord_tones: usize,
    rest_percent: u64,
    /// Low melody complexity: notes only on quarter beats.
    quarter_grid: bool,
    contour_scale: f32,
    kick_bank: &'static [u8],
    kick_pattern: u8,
    hat_pattern: u8,
    // Envelope constants in frames, fixed per sample rate.
    pad_attack: u32,
    pad_release: u32,
    pad_decay: f32,
    lead_release: u32,
    lead_decay: f32,
    kick_gate: u32,
    kick_release: u32,
    kick_decay: f32,
    kick_sweep_frames: f32,
    hat_gate: u32,
    hat_decay: f32,
    hat_release: u32,
    swell_release: u32,
}

impl Score {
    /// The score a seed implies, with its default parameters, from frame 0.
    pub fn new(seed: u64, sample_rate: u32) -> Self {
        Self::with_params(seed, sample_rate, MusicParams::from_seed(seed))
    }

    /// A score with explicit parameters, from frame 0.
    pub fn with_params(seed: u64, sample_rate: u32, params: MusicParams) -> Self {
        Self::segment(seed, sample_rate, params, 0, 0)
    }

    /// A score that starts at frame `origin`, which is bar `origin_bar` of the musical clock.
    pub fn segment(
        seed: u64,
        sample_rate: u32,
        params: MusicParams,
        origin: u64,
        origin_bar: u64,
    ) -> Self {
        let sr = sample_rate as f64;
        let style = hash(seed, SALT_STYLE, 0);
        let frames = |seconds: f64| (seconds * sr).round().max(1.0) as u32;
        let intensity = params.intensity.clamp(0.0, 1.0);
        let complexity = params.melody_complexity.clamp(0.0, 1.0);
        let density = params.harmonic_density.clamp(0.0, 1.0);
        let kick_bank = KICK_BANKS[((intensity * 4.0) as usize).min(KICK_BANKS.len() - 1)];
        Self {
            seed,
            sample_rate,
            params,
            origin,
            origin_bar,
            scale: params.mode.intervals(),
            eighth_frames: (sr * 30.0 / params.bpm.clamp(20.0, 400.0)).round().max(1.0) as u64,
            bars_per_chord: if density < 0.5 { 2 } else { 1 },
            chord_tones: if density < 0.34 {
                3
            } else if density < 0.67 {
                4
            } else {
                5
            },
            rest_percent: (40.0 - 28.0 * complexity).round() as u64,
            quarter_grid: complexity < 0.3,
            contour_scale: 0.6 + 0.8 * complexity,
            kick_bank,
            kick_pattern: kick_bank[((style >> 4) % kick_bank.len() as u64) as usize],
            hat_pattern: if intensity < 0.34 {
                0b1010_1010
            } else {
                0b1111_1111
            },
            pad_attack: frames(0.8),
            pad_release: frames(1.6),
            pad_decay: (1.5 * sr) as f32,
            lead_release: frames(0.09),
            lead_decay: (0.32 * sr) as f32,
            kick_gate: frames(0.32),
            kick_release: frames(0.06),
            kick_decay: (0.16 * sr) as f32,
            kick_sweep_frames: (0.035 * sr) as f32,
            hat_gate: frames(0.09),
            hat_decay: (0.028 * sr) as f32,
            hat_release: frames(0.015),
            swell_release: frames(0.05),
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn params(&self) -> &MusicParams {
        &self.params
    }

    /// First frame of this score's stretch.
    pub fn origin(&self) -> u64 {
        self.origin
    }

    /// The station's bar number at [`origin`](Self::origin).
    pub fn origin_bar(&self) -> u64 {
        self.origin_bar
    }

    /// Frames in one eighth note (the grid every onset falls on).
    pub fn eighth_frames(&self) -> u64 {
        self.eighth_frames
    }

    /// Frames in one bar (eight whole-frame eighth notes).
    pub fn bar_frames(&self) -> u64 {
        self.eighth_frames * EIGHTHS_PER_BAR
    }

    /// The first bar line at or after `position` (not before the origin) and its bar number.
    pub fn next_bar_line(&self, position: u64) -> (u64, u64) {
        let bars = position
            .saturating_sub(self.origin)
            .div_ceil(self.bar_frames());
        (
            self.origin + bars * self.bar_frames(),
            self.origin_bar + bars,
        )
    }

    /// Longest a note of this score sounds past its onset, in frames: how far back a block has to
    /// look for notes that still ring.
    pub fn longest_note(&self) -> u64 {
        let pad = self.bar_frames() * self.bars_per_chord + self.pad_release as u64;
        let lead = 2 * self.eighth_frames + self.lead_release as u64;
        let swell = self.bar_frames() + self.swell_release as u64;
        pad.max(lead)
            .max(swell)
            .max((self.kick_gate + self.kick_release) as u64)
            .max((self.hat_gate + self.hat_release) as u64)
    }

    /// Longest a note sounds past the end of this score's stretch (notes are cut at the gate
    /// there, then released): how long an earlier segment stays audible.
    pub fn longest_tail(&self) -> u64 {
        let lead = 2 * self.eighth_frames + self.lead_release as u64;
        lead.max(self.pad_release as u64)
            .max(self.swell_release as u64)
            .max((self.kick_gate + self.kick_release) as u64)
    }

    /// The block-wide mix at constant gain (the timeline ramps gain across changes).
    pub fn mix(&self) -> MixSettings {
        MixSettings {
            tremolo_increment: 0.21 / self.sample_rate as f64,
            tremolo_depth: 0.18,
            drive: 1.1,
            master_gain: self.params.master_gain,
            ..MixSettings::default()
        }
    }

    /// Fills `table` with every voice audible in frames `start .. start + frames`, as if this score
    /// had always been in effect.
    pub fn compose(&self, start: u64, frames: u32, table: &mut VoiceTable) {
        table.reset(start, frames);
        table.mix = self.mix();
        self.compose_into(start, frames, u64::MAX, table);
    }

    /// Adds the voices of this score that sound in `start .. start + frames` and start before
    /// `until` (where the next segment takes over). Sustained notes are cut at `until` and
    /// released from there, which crossfades them into the next segment's notes.
    pub fn compose_into(&self, start: u64, frames: u32, until: u64, table: &mut VoiceTable) {
        let end = start + frames as u64;
        let layers = self.params.layers;
        if layers.pads {
            self.pad_voices(start, end, until, table);
        }
        if layers.kicks {
            self.kick_voices(start, end, until, table);
        }
        if layers.hats {
            self.hat_voices(start, end, until, table);
        }
        if layers.melody {
            self.lead_voices(start, end, until, table);
        }
        if layers.swells {
            self.swell_voices(start, end, until, table);
        }
    }

    /// Grid units (`unit` frames long, numbered from `first_unit` at the origin) whose onsets
    /// lie in `lo .. hi`.
    fn units_in(&self, lo: u64, hi: u64, unit: u64, first_unit: u64) -> Range<u64> {
        let lo = lo.max(self.origin);
        if hi <= lo {
            return 0..0;
        }
        let first = (lo - self.origin).div_ceil(unit);
        let last = (hi - self.origin).div_ceil(unit);
        first_unit + first..first_unit + last
    }

    /// Steps (eighth notes, numbered on the station's clock) with onsets in `lo .. hi`.
    fn steps_in(&self, lo: u64, hi: u64) -> Range<u64> {
        self.units_in(
            lo,
            hi,
            self.eighth_frames,
            self.origin_bar * EIGHTHS_PER_BAR,
        )
    }

    fn step_onset(&self, step: u64) -> u64 {
        self.origin + (step - self.origin_bar * EIGHTHS_PER_BAR) * self.eighth_frames
    }

    fn bar_onset(&self, bar: u64) -> u64 {
        self.origin + (bar - self.origin_bar) * self.bar_frames()
    }

    /// Scale degree (0 = tonic) of the chord sounding in `bar`.
    ///
    /// Each section walks a Markov chain over the diatonic chords from the tonic, one step per
    /// chord; with low variety its last chord is the dominant (a cadence back into the next
    /// section). Walking at most eight steps keeps any bar computable on its own.
    pub fn chord_degree(&self, bar: u64) -> u8 {
        let variety = self.params.chord_variety.clamp(0.0, 1.0) as f64;
        let section = bar / BARS_PER_SECTION;
        let slots = BARS_PER_SECTION / self.bars_per_chord;
        let slot = (bar % BARS_PER_SECTION) / self.bars_per_chord;
        // Low variety repeats a progression for two or four sections.
        let repeat = if variety < 0.2 {
            4
        } else if variety < 0.5 {
            2
        } else {
            1
        };
        let chain = section / repeat;
        let mut degree = 0usize;
        for step in 1..=slot {
            degree = if step == slots - 1 && variety < 0.7 {
                4
            } else {
                let draw = unit_draw(hash(self.seed, SALT_PROGRESSION, chain * 16 + step));
                next_chord(degree, variety, draw)
            };
        }
        degree as u8
    }

    /// Semitones above the key root of scale degree `degree` (may exceed one octave).
    fn degree_semitones(&self, degree: i32) -> i32 {
        let octave = degree.div_euclid(7);
        self.scale[degree.rem_euclid(7) as usize] + 12 * octave
    }

    fn turns_per_frame(&self, midi: i32) -> f64 {
        440.0 * 2f64.powf((midi as f64 - 69.0) / 12.0) / self.sample_rate as f64
    }

    fn pad_voices(&self, start: u64, end: u64, until: u64, table: &mut VoiceTable) {
        let reach = self.bar_frames() * self.bars_per_chord + self.pad_release as u64;
        let bars = self.units_in(
            start.saturating_sub(reach),
            end.min(until),
            self.bar_frames(),
            self.origin_bar,
        );
        let key = self.params.key.pitch_class() as i32;
        // More chord tones would be louder: keep the pad bus level roughly constant.
        let level = PAD_LEVEL * (3.0 / self.chord_tones as f32).sqrt();
        for bar in bars {
            // A chord starts on its first bar, and on the first bar of this score.
            if bar % self.bars_per_chord != 0 && bar != self.origin_bar {
                continue;
            }
            let onset = self.bar_onset(bar);
            let next_chord = (bar / self.bars_per_chord + 1) * self.bars_per_chord;
            let gate = ((next_chord - bar) * self.bar_frames()).min(until - onset);
            if onset + gate + self.pad_release as u64 <= start {
                continue;
            }
            let degree = self.chord_degree(bar) as i32;
            for i in 0..self.chord_tones {
                let step = 2 * i as i32;
                // Keep every chord tone within one octave above D3 (ninths an octave up):
                // smooth voice leading.
                let base = if i < 4 { 50 } else { 62 };
                let midi =
                    base + (key + self.degree_semitones(degree + step) - base).rem_euclid(12);
                for (detune_cents, pan) in [(-7.0, -0.55), (7.0, 0.55)] {
                    let pan = pan * (0.6 + 0.1 * i as f32);
                    let increment = self.turns_per_frame(midi) * 2f64.powf(detune_cents / 1200.0);
                    self.push_pad(table, start, onset, gate, increment, level, pan);
                }
            }
            let bass = 38 + (key + self.degree_semitones(degree) - 38).rem_euclid(12);
            let increment = self.turns_per_frame(bass);
            self.push_pad(table, start, onset, gate, increment, BASS_LEVEL, 0.0);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push_pad(
        &self,
        table: &mut VoiceTable,
        start: u64,
        onset: u64,
        gate: u64,
        increment: f64,
        level: f32,
        pan: f32,
    ) {
        let (gain_left, gain_right) = pan_gains(pan, level);
        table.push(Voice {
            kind: VoiceKind::Pad,
            onset: onset as i64 - start as i64,
            gate: gate as u32,
            release: self.pad_release,
            attack: self.pad_attack,
            increment,
            decay_frames: self.pad_decay,
            sustain: 0.7,
            gain_left,
            gain_right,
            aux: 0.0,
            aux_frames: 0.0,
        });
    }

    fn kick_voices(&self, start: u64, end: u64, until: u64, table: &mut VoiceTable) {
        let len = (self.kick_gate + self.kick_release) as u64;
        let level = KICK_LEVEL * (0.8 + 0.3 * self.params.intensity);
        for step in self.steps_in(start.saturating_sub(len), end.min(until)) {
            let onset = self.step_onset(step);
            if onset + len <= start || !self.kick_at(step) {
                continue;
            }
            table.push(Voice {
                kind: VoiceKind::Kick,
                onset: onset as i64 - start as i64,
                gate: self.kick_gate,
                release: self.kick_release,
                attack: (self.sample_rate / 1000).max(1),
                increment: 46.0 / self.sample_rate as f64,
                decay_frames: self.kick_decay,
                sustain: 0.0,
                gain_left: level,
                gain_right: level,
                // Sweep from ~140 Hz down to 46 Hz: extra phase = depth * (1 - exp(-age / tau)).
                aux: (140.0 - 46.0) * self.kick_sweep_frames as f64 / self.sample_rate as f64,
                aux_frames: self.kick_sweep_frames,
            });
        }
    }

    /// Whether a kick starts on eighth `step`. The last bar of a section holds back for the swell.
    pub fn kick_at(&self, step: u64) -> bool {
        let bar = step / EIGHTHS_PER_BAR;
        let in_bar = step % EIGHTHS_PER_BAR;
        if bar % BARS_PER_SECTION == BARS_PER_SECTION - 1 {
            return false;
        }
        let section = bar / BARS_PER_SECTION;
        // Every fourth section varies the pattern (within the intensity's bank): the groove breathes.
        let pattern = if section % 4 == 3 {
            let bank = self.kick_bank;
            bank[(hash(self.seed, SALT_KICK, section) % bank.len() as u64) as usize]
        } else {
            self.kick_pattern
        };
        pattern & (1 << in_bar) != 0
    }

    /// The hi-hat level on eighth `step`, or `None` when it is silent.
    pub fn hat_level(&self, step: u64) -> Option<f32> {
        let in_bar = step % EIGHTHS_PER_BAR;
        if self.hat_pattern & (1 << in_bar) == 0 {
            return None;
        }
        // Offbeats accented, with a little deterministic "human" variation.
        let accent = if in_bar % 2 == 1 { 1.0 } else { 0.6 };
        let human = 0.85 + 0.3 * unit_draw(hash(self.seed, SALT_HAT, step)) as f32;
        Some(HAT_LEVEL * (0.7 + 0.5 * self.params.intensity) * accent * human)
    }

    fn hat_voices(&self, start: u64, end: u64, until: u64, table: &mut VoiceTable) {
        let len = (self.hat_gate + self.hat_release) as u64;
        for step in self.steps_in(start.saturating_sub(len), end.min(until)) {
            let onset = self.step_onset(step);
            if onset + len <= start {
                continue;
            }
            let Some(level) = self.hat_level(step) else {
                continue;
            };
            let (gain_left, gain_right) = pan_gains(0.3, level);
            table.push(Voice {
                kind: VoiceKind::Hat,
                onset: onset as i64 - start as i64,
                gate: self.hat_gate,
                release: self.hat_release,
                attack: 1,
                increment: 0.0,
                decay_frames: self.hat_decay,
                sustain: 0.0,
                gain_left,
                gain_right,
                aux: (hash(self.seed, SALT_NOISE, step) >> 11) as f64,
                aux_frames: 0.0,
            });
        }
    }

    /// The melody note (MIDI) starting on eighth `step`, or `None` for a rest.
    ///
    /// Two-bar phrases follow a contour (rise, peak, fall) with a breath at the end. Phrases in a
    /// section repeat with variation: A A' B A, or A B A' C when the melody is complex. Strong
    /// eighths land on a tone of the chord under them; every note is in the scale.
    pub fn lead_note(&self, step: u64) -> Option<i32> {
        let phrase = step / STEPS_PER_PHRASE;
        let i = step % STEPS_PER_PHRASE;
        if i == STEPS_PER_PHRASE - 1 || (self.quarter_grid && i % 2 == 1) {
            return None; // a breath at the end of every phrase; simple melodies move in quarters
        }
        let section = phrase / 4;
        let complex = self.params.melody_complexity >= 0.6;
        let (motif, varied) = match (phrase % 4, complex) {
            (0, _) | (3, false) => (section * 3, false),
            (1, false) | (2, true) => (section * 3, true),
            (2, false) | (1, true) => (section * 3 + 1, false),
            _ => (section * 3 + 2, false),
        };
        let motif = hash(self.seed, SALT_MOTIF, motif);
        let vary_from = if complex { 6 } else { 10 };
        let h = if varied && i >= vary_from {
            hash(motif, SALT_VARIATION, i)
        } else {
            hash(motif, 0, i)
        };
        if i != 0 && h % 100 < self.rest_percent {
            return None;
        }
        let chord = self.chord_degree(step / EIGHTHS_PER_BAR) as i32;
        let spread = if complex { 5 } else { 3 };
        let contour = (CONTOUR[i as usize] as f32 * self.contour_scale).round() as i32;
        let mut degree = contour + ((h >> 8) % spread) as i32 - spread as i32 / 2;
        if i.is_multiple_of(2) {
            // Strong eighths land on a chord tone: move down to the nearest one.
            while ![0, 2, 4].contains(&(degree - chord).rem_euclid(7)) {
                degree -= 1;
            }
        }
        Some(67 + self.params.key.pitch_class() as i32 - 7 + self.degree_semitones(degree))
    }

    fn lead_voices(&self, start: u64, end: u64, until: u64, table: &mut VoiceTable) {
        let longest = 2 * self.eighth_frames + self.lead_release as u64;
        let level = LEAD_LEVEL * (0.85 + 0.3 * self.params.intensity);
        for step in self.steps_in(start.saturating_sub(longest), end.min(until)) {
            let Some(midi) = self.lead_note(step) else {
                continue;
            };
            let steps_held = if self.lead_note(step + 1).is_none() {
                2
            } else {
                1
            };
            let onset = self.step_onset(step);
            let gate = steps_held * self.eighth_frames;
            if onset + gate + self.lead_release as u64 <= start {
                continue;
            }
            let pan = ((hash(self.seed, SALT_MOTIF, step) % 100) as f32 / 100.0 - 0.5) * 0.5;
            let (gain_left, gain_right) = pan_gains(pan, level);
            table.push(Voice {
                kind: VoiceKind::Lead,
                onset: onset as i64 - start as i64,
                gate: gate as u32,
                release: self.lead_release,
                attack: (self.sample_rate / 250).max(1),
                increment: self.turns_per_frame(midi),
                decay_frames: self.lead_decay,
                sustain: 0.12,
                gain_left,
                gain_right,
                aux: 0.0,
                aux_frames: 0.0,
            });
        }
    }

    fn swell_voices(&self, start: u64, end: u64, until: u64, table: &mut VoiceTable) {
        let reach = self.bar_frames() + self.swell_release as u64;
        let bars = self.units_in(
            start.saturating_sub(reach),
            end.min(until),
            self.bar_frames(),
            self.origin_bar,
        );
        let level = SWELL_LEVEL * (0.8 + 0.4 * self.params.intensity);
        for bar in bars {
            if bar % BARS_PER_SECTION != BARS_PER_SECTION - 1 {
                continue;
            }
            let onset = self.bar_onset(bar);
            let gate = self.bar_frames().min(until - onset);
            if onset + gate + self.swell_release as u64 <= start {
                continue;
            }
            table.push(Voice {
                kind: VoiceKind::Swell,
                onset: onset as i64 - start as i64,
                gate: gate as u32,
                release: self.swell_release,
                attack: 1,
                increment: 0.0,
                decay_frames: 0.0,
                sustain: 1.0,
                gain_left: level,
                gain_right: level,
                aux: (hash(self.seed, SALT_NOISE, bar / BARS_PER_SECTION) >> 11) as f64,
                // The rise spans the whole bar even when a change cuts the swell short.
                aux_frames: self.bar_frames() as f32,
            });
        }
    }
}

/// One step of the chord Markov chain: from `degree`, with `variety` (0..1) blending functional
/// harmony with a uniform choice among the other chords; `draw` is uniform in 0..1.
fn next_chord(degree: usize, variety: f64, draw: f64) -> usize {
    let mut cumulative = 0.0;
    for (to, &weight) in FUNCTIONAL[degree].iter().enumerate() {
        if to == degree {
            continue;
        }
        cumulative += (1.0 - variety) * weight + variety / (DEGREES - 1) as f64;
        if draw < cumulative {
            return to;
        }
    }
    // Rounding left a sliver at the top: take the last other chord.
    if degree == DEGREES - 1 {
        DEGREES - 2
    } else {
        DEGREES - 1
    }
}

/// A hash as a uniform number in 0..1.
fn unit_draw(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Equal-power pan (`pan` in -1..1) scaled by `level`.
fn pan_gains(pan: f32, level: f32) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f32::consts::FRAC_PI_4;
    (angle.cos() * level, angle.sin() * level)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composing_is_a_pure_function_of_position() {
        let score = Score::new(42, 48_000);
        let mut a = VoiceTable::new();
        let mut b = VoiceTable::new();
        score.compose(1_000_000, 4800, &mut a);
        score.compose(7, 4800, &mut b); // unrelated block in between
        score.compose(1_000_000, 4800, &mut b);
        assert_eq!(a.voices(), b.voices());
        assert!(!a.is_empty());
    }

    #[test]
    fn voice_table_never_overflows_over_ten_minutes() {
        for seed in [1, 2, 3, 99, 12345] {
            let score = Score::new(seed, 48_000);
            let mut table = VoiceTable::new();
            for block in 0..6000u64 {
                score.compose(block * 4800, 4800, &mut table);
                assert_eq!(table.dropped, 0, "seed {seed} block {block}");
            }
        }
    }

    #[test]
    fn melody_notes_stay_in_scale() {
        let score = Score::new(7, 48_000);
        let key = score.params().key.pitch_class() as i32;
        let scale = score.params().mode.intervals();
        let mut notes = 0;
        for step in 0..512 {
            if let Some(midi) = score.lead_note(step) {
                notes += 1;
                assert!(
                    scale.contains(&(midi - key).rem_euclid(12)),
                    "step {step}: {midi}"
                );
            }
        }
        assert!(notes > 200, "a melody, not silence: {notes} notes");
    }

    #[test]
    fn voice_table_never_overflows_at_the_busiest_settings() {
        use crate::synth::params::{Layers, Preset};
        let busiest = MusicParams {
            bpm: 200.0,
            intensity: 1.0,
            harmonic_density: 1.0,
            melody_complexity: 1.0,
            layers: Layers::ALL_ON,
            ..Preset::Pulse.params(crate::synth::params::Key::new(0))
        };
        let score = Score::with_params(77, 48_000, busiest);
        let mut table = VoiceTable::new();
        let mut most = 0;
        for block in 0..3000u64 {
            score.compose(block * 4800, 4800, &mut table);
            assert_eq!(table.dropped, 0, "block {block}");
            most = most.max(table.len());
        }
        // Room to spare for the tails of a previous segment after a change.
        assert!(
            most * 2 <= crate::synth::voice::MAX_VOICES + 16,
            "{most} voices"
        );
    }

    #[test]
    fn chord_variety_moves_the_progression_away_from_functional_harmony() {
        use crate::synth::params::Preset;
        // Share of chord moves that functional harmony rates as likely (weight >= 0.2).
        let functional_share = |variety: f32| {
            let params = MusicParams {
                chord_variety: variety,
                harmonic_density: 0.9, // a chord per bar
                ..MusicParams::from_preset(5, Preset::Focus)
            };
            let score = Score::with_params(5, 48_000, params);
            let (mut likely, mut moves) = (0, 0);
            for bar in 0..4000u64 {
                // Skip section starts (always the tonic) and cadences (always the dominant).
                if bar % BARS_PER_SECTION == 0 || bar % BARS_PER_SECTION == BARS_PER_SECTION - 1 {
                    continue;
                }
                let (from, to) = (score.chord_degree(bar - 1), score.chord_degree(bar));
                moves += 1;
                if FUNCTIONAL[from as usize][to as usize] >= 0.2 {
                    likely += 1;
                }
            }
            likely as f64 / moves as f64
        };
        let (low, high) = (functional_share(0.0), functional_share(1.0));
        // Functional harmony rates about three moves in four as likely; a uniform choice about
        // two in five.
        assert!(low > 0.68, "variety 0: {low}");
        assert!(high < 0.5, "variety 1: {high}");
        // Sections start on the tonic; with low variety they end on the dominant.
        let score = Score::new(5, 48_000);
        for section in 0..50 {
            assert_eq!(score.chord_degree(section * BARS_PER_SECTION), 0);
        }
    }

    #[test]
    fn a_segment_writes_no_notes_before_its_origin_or_from_its_until() {
        let params = MusicParams::from_seed(6);
        let origin = 1_000_000;
        let score = Score::segment(6, 48_000, params, origin, 40);
        let mut table = VoiceTable::new();
        let until = origin + 3 * score.bar_frames();
        for block in 0..200u64 {
            let start = origin - 48_000 + block * 4800;
            table.reset(start, 4800);
            score.compose_into(start, 4800, until, &mut table);
            for voice in table.voices() {
                let onset = (start as i64 + voice.onset) as u64;
                assert!(onset >= origin && onset < until, "onset {onset}");
                if matches!(voice.kind, VoiceKind::Pad | VoiceKind::Swell) {
                    assert!(onset + voice.gate as u64 <= until, "sustained past until");
                }
            }
        }
        // The origin is a downbeat: bar 40 is the first bar of a section, so a chord starts there.
        table.reset(origin, 4800);
        score.compose_into(origin, 4800, until, &mut table);
        assert!(table
            .voices()
            .iter()
            .any(|v| v.kind == VoiceKind::Pad && v.onset == 0));
    }

    #[test]
    fn different_seeds_write_different_music() {
        let a: Vec<_> = (0..64)
            .map(|s| Score::new(1, 48_000).lead_note(s))
            .collect();
        let b: Vec<_> = (0..64)
            .map(|s| Score::new(2, 48_000).lead_note(s))
            .collect();
        assert_ne!(a, b);
    }
}
