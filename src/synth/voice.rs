//! The voice table: a compact, fixed-size description of every sound that is audible in one block.
//!
//! The composer fills it (cheap, per block); a renderer (CPU here, GPU later) does the per-sample
//! work. Keeping the table flat and fixed-size means the synthesis thread never allocates, and a
//! new voice kind only needs a new `VoiceKind` and its per-sample formula.

/// Most voices that can sound in one block. Pads with release tails, a few lead notes, kicks and a
/// swell stay far below this; the composer drops the quietest voices if it were ever exceeded.
pub const MAX_VOICES: usize = 96;

/// What a voice is, which selects its per-sample formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum VoiceKind {
    /// Sustained chord oscillator (fundamental plus two soft harmonics), on the pad bus with tremolo.
    #[default]
    Pad = 0,
    /// Plucked melody note: fast attack, exponential decay.
    Lead = 1,
    /// Kick drum: sine with an exponential pitch sweep.
    Kick = 2,
    /// Noise swell that rises towards a phrase boundary.
    Swell = 3,
    /// Closed hi-hat: high-passed noise with a fast exponential decay.
    Hat = 4,
}

/// One sounding voice, positioned relative to the block being rendered.
///
/// All times are in frames. `onset` is relative to the block's first frame, so it is negative for a
/// note that began in an earlier block; the renderer derives every per-sample quantity from the
/// integer age `k - onset`, which keeps long streams exact (see "Precision" in shaders/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Voice {
    pub kind: VoiceKind,
    /// Onset frame relative to the block start.
    pub onset: i64,
    /// Frames the note is held before its release starts.
    pub gate: u32,
    /// Length of the linear release after the gate, in frames.
    pub release: u32,
    /// Attack ramp length in frames (at least 1).
    pub attack: u32,
    /// Oscillator frequency in turns per frame (frequency / sample rate); 0 for noise.
    pub increment: f64,
    /// Time constant of the exponential decay in frames; 0 means no decay (hold at full level).
    pub decay_frames: f32,
    /// Level the decay settles at (0..1).
    pub sustain: f32,
    /// Left and right gains (equal-power pan times the voice level).
    pub gain_left: f32,
    pub gain_right: f32,
    /// Kind-specific: kick pitch-sweep depth in turns; swell and hat noise seed.
    pub aux: f64,
    /// Kind-specific: kick pitch-sweep time constant in frames; swell rise length in frames.
    pub aux_frames: f32,
}

impl Voice {
    /// Frames from onset to silence.
    pub fn length(&self) -> u64 {
        self.gate as u64 + self.release as u64
    }
}

/// Settings that apply to the whole mix of a block.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MixSettings {
    /// Pad tremolo rate in turns per frame; its phase comes from the absolute stream position.
    pub tremolo_increment: f64,
    /// Pad tremolo depth (0..1).
    pub tremolo_depth: f32,
    /// Gain into the `tanh` soft clipper.
    pub drive: f32,
    /// Output gain after the clipper (reached at the end of the ramp).
    pub master_gain: f32,
    /// Gain before the ramp: a gain change glides from here to `master_gain`, never jumps.
    pub previous_gain: f32,
    /// Frame (relative to the block start, may be negative) where the gain ramp starts.
    pub ramp_onset: i64,
    /// Length of the gain ramp in frames; 0 means constant `master_gain`.
    pub ramp_frames: u32,
}

impl MixSettings {
    /// Output gain at frame `k` of the block.
    #[inline(always)]
    pub fn gain_at(&self, k: usize) -> f32 {
        if self.ramp_frames == 0 {
            return self.master_gain;
        }
        let t = (k as i64 - self.ramp_onset) as f32 / self.ramp_frames as f32;
        let t = t.clamp(0.0, 1.0);
        self.previous_gain + (self.master_gain - self.previous_gain) * t
    }
}

impl Default for MixSettings {
    fn default() -> Self {
        Self {
            tremolo_increment: 0.0,
            tremolo_depth: 0.0,
            drive: 1.0,
            master_gain: 1.0,
            previous_gain: 1.0,
            ramp_onset: 0,
            ramp_frames: 0,
        }
    }
}

/// The voices of one block, in a fixed-capacity array (no allocation when refilled).
#[derive(Clone, Debug)]
pub struct VoiceTable {
    /// Stream position (frame index) of the block's first frame.
    pub start: u64,
    /// Frames in the block.
    pub frames: u32,
    /// Block-wide mix settings (tremolo on the pad bus, drive into the soft clipper, master gain).
    pub mix: MixSettings,
    voices: [Voice; MAX_VOICES],
    len: usize,
    /// Voices refused because the table was full (should stay 0; surfaced for tests).
    pub dropped: u32,
}

impl Default for VoiceTable {
    fn default() -> Self {
        Self::new()
    }
}

impl VoiceTable {
    pub fn new() -> Self {
        Self {
            start: 0,
            frames: 0,
            mix: MixSettings::default(),
            voices: [Voice::default(); MAX_VOICES],
            len: 0,
            dropped: 0,
        }
    }

    /// Empties the table for a new block.
    pub fn reset(&mut self, start: u64, frames: u32) {
        self.start = start;
        self.frames = frames;
        self.len = 0;
        self.dropped = 0;
    }

    /// Adds a voice; returns false (and counts it) when the table is full.
    pub fn push(&mut self, voice: Voice) -> bool {
        if self.len == MAX_VOICES {
            self.dropped += 1;
            return false;
        }
        self.voices[self.len] = voice;
        self.len += 1;
        true
    }

    pub fn voices(&self) -> &[Voice] {
        &self.voices[..self.len]
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
