//! The composer: a deterministic, seekable generative score.
//!
//! Everything audible at stream frame `n` is derived from the seed, the musical parameters and `n`
//! alone: bars and beats are integer divisions of the sample position, and every "random" choice
//! is a hash of the seed and the index of the bar, phrase or step it belongs to. So any block can be
//! composed without composing the ones before it, and every listener, server instance and offline
//! render hears the same music.

use super::voice::{MixSettings, Voice, VoiceKind, VoiceTable};

/// Diatonic modes the composer can write in (scale degrees in semitones above the key root).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Major,
    Minor,
    Dorian,
    Mixolydian,
}

impl Mode {
    const ALL: [Mode; 4] = [Mode::Major, Mode::Minor, Mode::Dorian, Mode::Mixolydian];

    pub fn intervals(self) -> [i32; 7] {
        match self {
            Mode::Major => [0, 2, 4, 5, 7, 9, 11],
            Mode::Minor => [0, 2, 3, 5, 7, 8, 10],
            Mode::Dorian => [0, 2, 3, 5, 7, 9, 10],
            Mode::Mixolydian => [0, 2, 4, 5, 7, 9, 10],
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Major => "major",
            Mode::Minor => "minor",
            Mode::Dorian => "dorian",
            Mode::Mixolydian => "mixolydian",
        }
    }
}

/// Which layers of the arrangement sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layers {
    pub pads: bool,
    pub melody: bool,
    pub kicks: bool,
    pub swells: bool,
}

impl Default for Layers {
    fn default() -> Self {
        Self {
            pads: true,
            melody: true,
            kicks: true,
            swells: true,
        }
    }
}

/// The musical parameters of a station. Derived from the seed by default; kept separate from the
/// seed so live controls can change them without changing the rest of the score.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MusicParams {
    /// Key root as a pitch class (0 = C).
    pub key_root: u8,
    pub mode: Mode,
    /// Tempo in beats per minute; the eighth note is rounded to whole frames.
    pub bpm: f64,
    pub layers: Layers,
    /// Output gain after the soft clipper (0..1).
    pub master_gain: f32,
}

impl MusicParams {
    /// The parameters a seed implies when nobody has changed them.
    pub fn from_seed(seed: u64) -> Self {
        let h = hash(seed, SALT_PARAMS, 0);
        Self {
            key_root: (h % 12) as u8,
            mode: Mode::ALL[((h >> 8) % Mode::ALL.len() as u64) as usize],
            bpm: 70.0 + ((h >> 16) % 25) as f64,
            layers: Layers::default(),
            master_gain: 0.9,
        }
    }
}

// Salts keep the hash streams of different decisions independent.
const SALT_PARAMS: u64 = 0x5041_5241;
const SALT_PROGRESSION: u64 = 0x5052_4F47;
const SALT_MOTIF: u64 = 0x4D4F_5449;
const SALT_VARIATION: u64 = 0x5641_5249;
const SALT_KICK: u64 = 0x4B49_434B;
const SALT_STYLE: u64 = 0x5354_594C;
const SALT_NOISE: u64 = 0x4E4F_4953;

/// Four-chord progressions as scale degrees (0 = tonic); all diatonic, so they fit every mode.
const PROGRESSIONS: [[u8; 4]; 8] = [
    [0, 5, 3, 4],
    [0, 4, 5, 3],
    [5, 3, 0, 4],
    [0, 3, 0, 4],
    [1, 4, 0, 0],
    [0, 2, 3, 4],
    [0, 6, 5, 4],
    [3, 4, 2, 5],
];

/// Kick patterns over the eight eighths of a bar (bit i = eighth i).
const KICK_PATTERNS: [u8; 4] = [0b0001_0001, 0b1001_0001, 0b0100_1001, 0b0101_0101];

/// Melodic contour over a two-bar phrase, in scale steps: rise, peak, fall.
const CONTOUR: [i32; 16] = [0, 1, 2, 3, 4, 4, 3, 2, 1, 2, 3, 5, 4, 3, 1, 0];

/// Bars per section; the last bar of each section carries a swell and no kick until the downbeat.
pub const BARS_PER_SECTION: u64 = 8;
const EIGHTHS_PER_BAR: u64 = 8;
const STEPS_PER_PHRASE: u64 = 16;

/// A composed station: fixed structure derived from (seed, params) once, then queried per block.
#[derive(Clone, Debug)]
pub struct Score {
    seed: u64,
    sample_rate: u32,
    params: MusicParams,
    scale: [i32; 7],
    eighth_frames: u64,
    bars_per_chord: u64,
    kick_pattern: u8,
    seventh_chords: bool,
    rest_percent: u64,
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
    swell_release: u32,
}

impl Score {
    /// The score a seed implies, with its default parameters.
    pub fn new(seed: u64, sample_rate: u32) -> Self {
        Self::with_params(seed, sample_rate, MusicParams::from_seed(seed))
    }

    pub fn with_params(seed: u64, sample_rate: u32, params: MusicParams) -> Self {
        let sr = sample_rate as f64;
        let style = hash(seed, SALT_STYLE, 0);
        let frames = |seconds: f64| (seconds * sr).round().max(1.0) as u32;
        Self {
            seed,
            sample_rate,
            params,
            scale: params.mode.intervals(),
            eighth_frames: (sr * 30.0 / params.bpm.clamp(20.0, 400.0)).round() as u64,
            bars_per_chord: 1 + (style % 2),
            kick_pattern: KICK_PATTERNS[((style >> 4) % KICK_PATTERNS.len() as u64) as usize],
            seventh_chords: (style >> 8) % 3 == 0,
            rest_percent: 22 + (style >> 12) % 18,
            pad_attack: frames(0.8),
            pad_release: frames(1.6),
            pad_decay: (1.5 * sr) as f32,
            lead_release: frames(0.09),
            lead_decay: (0.32 * sr) as f32,
            kick_gate: frames(0.32),
            kick_release: frames(0.06),
            kick_decay: (0.16 * sr) as f32,
            kick_sweep_frames: (0.035 * sr) as f32,
            swell_release: frames(0.03),
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

    /// Frames in one bar (eight whole-frame eighth notes).
    pub fn bar_frames(&self) -> u64 {
        self.eighth_frames * EIGHTHS_PER_BAR
    }

    /// Scale degree (0 = tonic) of the chord sounding in `bar`.
    pub fn chord_degree(&self, bar: u64) -> u8 {
        let chord = bar / self.bars_per_chord;
        let section = bar / BARS_PER_SECTION;
        let progression = PROGRESSIONS
            [(hash(self.seed, SALT_PROGRESSION, section) % PROGRESSIONS.len() as u64) as usize];
        progression[(chord % 4) as usize]
    }

    /// Semitones above the key root of scale degree `degree` (may exceed one octave).
    fn degree_semitones(&self, degree: i32) -> i32 {
        let octave = degree.div_euclid(7);
        self.scale[degree.rem_euclid(7) as usize] + 12 * octave
    }

    fn turns_per_frame(&self, midi: i32) -> f64 {
        440.0 * 2f64.powf((midi as f64 - 69.0) / 12.0) / self.sample_rate as f64
    }

    /// Fills `table` with every voice audible in frames `start .. start + frames`.
    pub fn compose(&self, start: u64, frames: u32, table: &mut VoiceTable) {
        table.reset(start, frames);
        table.mix = MixSettings {
            tremolo_increment: 0.21 / self.sample_rate as f64,
            tremolo_depth: 0.18,
            drive: 1.1,
            master_gain: self.params.master_gain,
        };
        let end = start + frames as u64;
        let layers = self.params.layers;
        if layers.pads {
            self.pad_voices(start, end, table);
        }
        if layers.kicks {
            self.kick_voices(start, end, table);
        }
        if layers.melody {
            self.lead_voices(start, end, table);
        }
        if layers.swells {
            self.swell_voices(start, end, table);
        }
    }

    fn pad_voices(&self, start: u64, end: u64, table: &mut VoiceTable) {
        let chord_frames = self.bar_frames() * self.bars_per_chord;
        let reach = chord_frames + self.pad_release as u64;
        let first = start.saturating_sub(reach) / chord_frames;
        let last = (end - 1) / chord_frames;
        for chord in first..=last {
            let onset = chord * chord_frames;
            if onset + reach <= start {
                continue;
            }
            let degree = self.chord_degree(chord * self.bars_per_chord) as i32;
            let key = self.params.key_root as i32;
            let tones: &[i32] = if self.seventh_chords {
                &[0, 2, 4, 6]
            } else {
                &[0, 2, 4]
            };
            for (i, &step) in tones.iter().enumerate() {
                // Keep every chord tone within one octave above D3: smooth voice leading.
                let midi = 50 + (key + self.degree_semitones(degree + step) - 50).rem_euclid(12);
                for (detune_cents, pan) in [(-7.0, -0.55), (7.0, 0.55)] {
                    let pan = pan * (0.6 + 0.2 * i as f32);
                    let increment = self.turns_per_frame(midi) * 2f64.powf(detune_cents / 1200.0);
                    self.push_pad(table, start, onset, chord_frames, increment, 0.055, pan);
                }
            }
            let bass = 38 + (key + self.degree_semitones(degree) - 38).rem_euclid(12);
            self.push_pad(
                table,
                start,
                onset,
                chord_frames,
                self.turns_per_frame(bass),
                0.11,
                0.0,
            );
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

    fn kick_voices(&self, start: u64, end: u64, table: &mut VoiceTable) {
        let len = (self.kick_gate + self.kick_release) as u64;
        let first = start.saturating_sub(len) / self.eighth_frames;
        let last = (end - 1) / self.eighth_frames;
        for step in first..=last {
            let onset = step * self.eighth_frames;
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
                gain_left: 0.5,
                gain_right: 0.5,
                // Sweep from ~140 Hz down to 46 Hz: extra phase = depth * (1 - exp(-age / tau)).
                aux: (140.0 - 46.0) * self.kick_sweep_frames as f64 / self.sample_rate as f64,
                aux_frames: self.kick_sweep_frames,
            });
        }
    }

    /// Whether a kick starts on eighth `step`. The last bar of a section holds back for the swell.
    fn kick_at(&self, step: u64) -> bool {
        let bar = step / EIGHTHS_PER_BAR;
        let in_bar = step % EIGHTHS_PER_BAR;
        if bar % BARS_PER_SECTION == BARS_PER_SECTION - 1 {
            return false;
        }
        let section = bar / BARS_PER_SECTION;
        // Every fourth section varies the pattern, so the groove breathes.
        let pattern = if section % 4 == 3 {
            KICK_PATTERNS
                [(hash(self.seed, SALT_KICK, section) % KICK_PATTERNS.len() as u64) as usize]
        } else {
            self.kick_pattern
        };
        pattern & (1 << in_bar) != 0
    }

    /// The melody note (MIDI) starting on eighth `step`, or `None` for a rest.
    pub fn lead_note(&self, step: u64) -> Option<i32> {
        let phrase = step / STEPS_PER_PHRASE;
        let i = step % STEPS_PER_PHRASE;
        if i == STEPS_PER_PHRASE - 1 {
            return None; // a breath at the end of every phrase
        }
        // Phrases in a section follow A A' B A: repetition with variation.
        let section = phrase / 4;
        let (motif, varied) = match phrase % 4 {
            0 | 3 => (hash(self.seed, SALT_MOTIF, section * 2), false),
            1 => (hash(self.seed, SALT_MOTIF, section * 2), true),
            _ => (hash(self.seed, SALT_MOTIF, section * 2 + 1), false),
        };
        let h = if varied && i >= 10 {
            hash(motif, SALT_VARIATION, i)
        } else {
            hash(motif, 0, i)
        };
        if i != 0 && h % 100 < self.rest_percent {
            return None;
        }
        let chord = self.chord_degree(step / EIGHTHS_PER_BAR) as i32;
        let mut degree = CONTOUR[i as usize] + ((h >> 8) % 3) as i32 - 1;
        if i % 2 == 0 {
            // Strong eighths land on a chord tone: move to the nearest one.
            while ![0, 2, 4].contains(&(degree - chord).rem_euclid(7)) {
                degree -= 1;
            }
        }
        Some(67 + self.params.key_root as i32 - 7 + self.degree_semitones(degree))
    }

    fn lead_voices(&self, start: u64, end: u64, table: &mut VoiceTable) {
        let longest = 2 * self.eighth_frames + self.lead_release as u64;
        let first = start.saturating_sub(longest) / self.eighth_frames;
        let last = (end - 1) / self.eighth_frames;
        for step in first..=last {
            let Some(midi) = self.lead_note(step) else {
                continue;
            };
            let steps_held = if self.lead_note(step + 1).is_none() {
                2
            } else {
                1
            };
            let onset = step * self.eighth_frames;
            let gate = steps_held * self.eighth_frames;
            if onset + gate + self.lead_release as u64 <= start {
                continue;
            }
            let pan = ((hash(self.seed, SALT_MOTIF, step) % 100) as f32 / 100.0 - 0.5) * 0.5;
            let (gain_left, gain_right) = pan_gains(pan, 0.16);
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

    fn swell_voices(&self, start: u64, end: u64, table: &mut VoiceTable) {
        let section_frames = self.bar_frames() * BARS_PER_SECTION;
        let first = start.saturating_sub(section_frames) / section_frames;
        let last = (end - 1) / section_frames;
        for section in first..=last {
            let onset = section * section_frames + (BARS_PER_SECTION - 1) * self.bar_frames();
            let gate = self.bar_frames();
            if onset + gate + self.swell_release as u64 <= start || onset >= end {
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
                gain_left: 0.13,
                gain_right: 0.13,
                aux: (hash(self.seed, SALT_NOISE, section) >> 11) as f64,
                aux_frames: 0.0,
            });
        }
    }
}

/// Equal-power pan (`pan` in -1..1) scaled by `level`.
fn pan_gains(pan: f32, level: f32) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f32::consts::FRAC_PI_4;
    (angle.cos() * level, angle.sin() * level)
}

/// SplitMix64 finaliser: a fast, well-mixed 64-bit hash.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a seed and two indices: the source of every "random" musical decision.
pub fn hash(seed: u64, a: u64, b: u64) -> u64 {
    mix64(seed ^ mix64(a ^ mix64(b)))
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
        let key = score.params().key_root as i32;
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
