//! Keeps the playback buffer near its target when the server's clock and the sound card's clock
//! run at slightly different speeds, by nudging the resampling ratio.
//!
//! The buffer level is smoothed (arrivals come in 100 ms steps), errors within a dead band of
//! one chunk are left alone (so a well-matched pair plays bit-exact), and beyond it the correction
//! grows in proportion, bounded to ±0.5 % and slewed so pitch never jumps.

/// Largest rate correction: 0.5 % (about 9 cents of pitch, below what listeners notice).
pub const MAX_CORRECTION: f64 = 0.005;
/// Largest change of the correction per update (10 updates a second: full range in 1 s).
const MAX_SLEW: f64 = 0.0005;
/// Correction per second of level error beyond the dead band.
const GAIN: f64 = 0.05;
/// Weight of a new level reading in the moving average (time constant ≈ 20 readings).
const SMOOTHING: f64 = 0.05;

/// Drift controller for one playback stream.
#[derive(Clone, Debug)]
pub struct DriftControl {
    target_seconds: f64,
    dead_band_seconds: f64,
    smoothed: Option<f64>,
    correction: f64,
}

impl DriftControl {
    /// `target_seconds`: the level to hold; `dead_band_seconds`: error left uncorrected.
    pub fn new(target_seconds: f64, dead_band_seconds: f64) -> Self {
        Self {
            target_seconds,
            dead_band_seconds: dead_band_seconds.max(0.0),
            smoothed: None,
            correction: 0.0,
        }
    }

    /// Takes a buffer reading (seconds queued) and returns the relative rate correction for the
    /// next block: negative when the buffer is too full (produce fewer samples, drain it).
    pub fn update(&mut self, level_seconds: f64) -> f64 {
        let smoothed = match self.smoothed {
            None => level_seconds,
            Some(s) => s + SMOOTHING * (level_seconds - s),
        };
        self.smoothed = Some(smoothed);
        let error = smoothed - self.target_seconds;
        let excess = if error.abs() <= self.dead_band_seconds {
            0.0
        } else {
            error - self.dead_band_seconds.copysign(error)
        };
        let wanted = (-GAIN * excess).clamp(-MAX_CORRECTION, MAX_CORRECTION);
        self.correction += (wanted - self.correction).clamp(-MAX_SLEW, MAX_SLEW);
        self.correction
    }

    /// Forgets the history (after a reconnect, the buffer starts over).
    pub fn reset(&mut self) {
        self.smoothed = None;
        self.correction = 0.0;
    }

    /// The correction in use.
    pub fn correction(&self) -> f64 {
        self.correction
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_the_dead_band_nothing_changes() {
        let mut d = DriftControl::new(0.2, 0.1);
        for i in 0..1000 {
            // The 100 ms sawtooth of chunk arrivals around the target.
            let level = 0.15 + 0.1 * (i % 2) as f64;
            assert_eq!(d.update(level), 0.0);
        }
    }

    #[test]
    fn a_fast_sound_card_is_caught_up_and_the_correction_stays_bounded_and_smooth() {
        // Simulate: the card consumes 0.3 % faster than the server produces.
        let mut d = DriftControl::new(0.2, 0.05);
        let mut level = 0.2;
        let mut last = 0.0;
        for _ in 0..20_000 {
            let correction = d.update(level);
            assert!(correction.abs() <= MAX_CORRECTION + 1e-12);
            assert!((correction - last).abs() <= MAX_SLEW + 1e-12, "no jumps");
            last = correction;
            // 100 ms of stream becomes 100 ms × (1 + correction) of device audio; the card
            // plays 100.3 ms in the same time.
            level += 0.1 * (1.0 + correction) - 0.1 * 1.003;
        }
        assert!(
            (last - 0.003).abs() < 1e-4,
            "correction settles at the drift: {last}"
        );
        // Proportional control settles where the correction equals the drift: past the dead
        // band by drift / GAIN, well above empty.
        let settled = 0.2 - 0.05 - 0.003 / GAIN;
        assert!(
            (level - settled).abs() < 0.01,
            "level {level}, expected about {settled}"
        );
    }

    #[test]
    fn an_overfull_buffer_is_drained_with_a_negative_correction() {
        let mut d = DriftControl::new(0.2, 0.05);
        let mut c = 0.0;
        for _ in 0..100 {
            c = d.update(0.6);
        }
        assert_eq!(c, -MAX_CORRECTION);
        d.reset();
        assert_eq!(d.correction(), 0.0);
    }
}
