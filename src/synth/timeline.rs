//! The control log made playable: which parameters are in effect at every stream position.
//!
//! A station's music is a pure function of (seed, control log, position). Each log entry starts a
//! segment of constant parameters on a bar line; the timeline composes a block from the segment
//! in effect plus the release tails of the ones before it, and ramps the master gain across the
//! change. So a change never clicks, and any block can still be rendered on its own.
//!
//! Real-time contract: [`Timeline::schedule`] and [`Timeline::compose`] never allocate. The live
//! timeline keeps at most [`LIVE_SEGMENTS`] segments, dropping ones whose tails have ended.

use serde::{Deserialize, Serialize};

use super::params::MusicParams;
use super::score::Score;
use super::voice::VoiceTable;

/// Segments a live timeline holds: the one playing, the pending one, and old ones still ringing.
pub const LIVE_SEGMENTS: usize = 8;

/// How long a master-gain change glides, in seconds.
pub const GAIN_RAMP_SECONDS: f64 = 0.05;

/// One control-log entry: from `position` (a bar line, which is bar number `bar` of the
/// station's musical clock) these parameters are in effect.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlEntry {
    pub position: u64,
    pub bar: u64,
    pub params: MusicParams,
}

/// A control log that does not describe a timeline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("the control log is empty")]
    Empty,
    #[error("entry {index}: position {position} is not after the previous entry")]
    NotIncreasing { index: usize, position: u64 },
    #[error("entry {index}: position {position} is not bar {bar} of the previous entry's tempo")]
    NotOnBarLine {
        index: usize,
        position: u64,
        bar: u64,
    },
}

/// The live timeline has no room for another pending change (cannot happen when changes are
/// rate-limited; reported rather than allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many changes in flight")]
pub struct ScheduleFull;

/// Why a change for an exact position was not placed (see [`Timeline::place`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaceError {
    #[error("too many changes in flight")]
    Full,
    /// The position is already rendered, or older than the newest segment.
    #[error("the position is already rendered")]
    Past,
    /// The position is not a bar line of the newest segment (the plan was made on another
    /// timeline).
    #[error("the position is not on the bar grid")]
    OffGrid,
}

/// A station's segments, oldest first.
#[derive(Debug)]
pub struct Timeline {
    seed: u64,
    sample_rate: u32,
    segments: Vec<Score>,
    ramp_frames: u32,
}

/// A clone keeps room for [`LIVE_SEGMENTS`] (a derived clone would have none to spare, and a
/// cloned timeline could then take no change).
impl Clone for Timeline {
    fn clone(&self) -> Self {
        let mut segments = Vec::with_capacity(self.segments.capacity().max(LIVE_SEGMENTS));
        segments.extend_from_slice(&self.segments);
        Self {
            seed: self.seed,
            sample_rate: self.sample_rate,
            segments,
            ramp_frames: self.ramp_frames,
        }
    }
}

impl From<Score> for Timeline {
    fn from(score: Score) -> Self {
        let mut segments = Vec::with_capacity(LIVE_SEGMENTS);
        segments.push(score);
        Self {
            seed: score.seed(),
            sample_rate: score.sample_rate(),
            segments,
            ramp_frames: ramp_frames(score.sample_rate()),
        }
    }
}

fn ramp_frames(sample_rate: u32) -> u32 {
    (GAIN_RAMP_SECONDS * sample_rate as f64).round() as u32
}

impl Timeline {
    /// A timeline with `params` in effect from position 0.
    pub fn new(seed: u64, sample_rate: u32, params: MusicParams) -> Self {
        Score::with_params(seed, sample_rate, params).into()
    }

    /// Rebuilds a timeline from its log (for offline rendering and replay).
    ///
    /// # Errors
    /// [`LogError`] when the log is empty, out of order, or an entry is not on a bar line.
    pub fn from_log(seed: u64, sample_rate: u32, log: &[ControlEntry]) -> Result<Self, LogError> {
        let first = log.first().ok_or(LogError::Empty)?;
        let mut segments = Vec::with_capacity(log.len().max(LIVE_SEGMENTS));
        let mut previous =
            Score::segment(seed, sample_rate, first.params, first.position, first.bar);
        segments.push(previous);
        for (index, entry) in log.iter().enumerate().skip(1) {
            if entry.position <= previous.origin() {
                return Err(LogError::NotIncreasing {
                    index,
                    position: entry.position,
                });
            }
            let (line, bar) = previous.next_bar_line(entry.position);
            if line != entry.position || bar != entry.bar {
                return Err(LogError::NotOnBarLine {
                    index,
                    position: entry.position,
                    bar: entry.bar,
                });
            }
            previous = Score::segment(seed, sample_rate, entry.params, entry.position, entry.bar);
            segments.push(previous);
        }
        Ok(Self {
            seed,
            sample_rate,
            segments,
            ramp_frames: ramp_frames(sample_rate),
        })
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The segments still held, oldest first.
    pub fn segments(&self) -> &[Score] {
        &self.segments
    }

    /// The newest segment (possibly not audible yet).
    pub fn latest(&self) -> &Score {
        // Never empty: constructors push one segment and pruning keeps the newest.
        &self.segments[self.segments.len() - 1]
    }

    /// The log entry of the newest segment.
    pub fn latest_entry(&self) -> ControlEntry {
        let score = self.latest();
        ControlEntry {
            position: score.origin(),
            bar: score.origin_bar(),
            params: *score.params(),
        }
    }

    /// The log this timeline replays (entries still held).
    pub fn log(&self) -> impl Iterator<Item = ControlEntry> + '_ {
        self.segments.iter().map(|s| ControlEntry {
            position: s.origin(),
            bar: s.origin_bar(),
            params: *s.params(),
        })
    }

    /// Puts `params` into effect at the first bar line at or after `not_before` (the next frame
    /// still to be rendered) and returns that position. A change to a segment that has not started
    /// yet replaces its parameters, so several changes within one bar land together. Drops segments
    /// whose tails have ended before `not_before`. Never allocates.
    ///
    /// # Errors
    /// [`ScheduleFull`] when [`LIVE_SEGMENTS`] segments are still audible or pending.
    pub fn schedule(
        &mut self,
        params: MusicParams,
        not_before: u64,
    ) -> Result<ControlEntry, ScheduleFull> {
        self.prune(not_before);
        let last = *self.latest();
        let pending = last.origin() >= not_before;
        let (position, bar) = if pending {
            (last.origin(), last.origin_bar())
        } else {
            last.next_bar_line(not_before)
        };
        let segment = Score::segment(self.seed, self.sample_rate, params, position, bar);
        if pending {
            let newest = self.segments.len() - 1;
            self.segments[newest] = segment;
        } else if self.segments.len() == self.segments.capacity() {
            return Err(ScheduleFull);
        } else {
            self.segments.push(segment);
        }
        Ok(ControlEntry {
            position,
            bar,
            params,
        })
    }

    /// Drops segments whose release tails have ended before `not_before` (the newest always
    /// stays). Never allocates.
    pub fn prune(&mut self, not_before: u64) {
        while self.segments.len() >= 2
            && self.segments[1].origin() + self.segments[0].longest_tail() <= not_before
        {
            self.segments.remove(0);
        }
    }

    /// Puts a change decided elsewhere (by the control side, which made it durable first) into
    /// effect at exactly `entry.position`, a bar line of the newest segment or the newest
    /// segment's own position (then it replaces that pending segment, as [`Timeline::schedule`]
    /// merges changes within a bar). `not_before` is the next frame still to be rendered.
    /// Never allocates.
    ///
    /// # Errors
    /// [`PlaceError::Past`] when the position is already rendered (the change must not sound
    /// partly), [`PlaceError::Full`] when no segment is free.
    pub fn place(&mut self, entry: ControlEntry, not_before: u64) -> Result<(), PlaceError> {
        if entry.position < not_before {
            return Err(PlaceError::Past);
        }
        self.prune(not_before);
        let last = *self.latest();
        let segment = Score::segment(
            self.seed,
            self.sample_rate,
            entry.params,
            entry.position,
            entry.bar,
        );
        if entry.position == last.origin() {
            let newest = self.segments.len() - 1;
            self.segments[newest] = segment;
            Ok(())
        } else if entry.position < last.origin() {
            Err(PlaceError::Past)
        } else if last.next_bar_line(entry.position) != (entry.position, entry.bar) {
            // Planned on another bar grid than this timeline's: a log that would not replay.
            Err(PlaceError::OffGrid)
        } else if self.segments.len() == self.segments.capacity() {
            Err(PlaceError::Full)
        } else {
            self.segments.push(segment);
            Ok(())
        }
    }

    /// Fills `table` with every voice audible in `start .. start + frames`: the segments in effect
    /// and the tails of earlier ones, plus the mix with any gain ramp. Never allocates.
    ///
    /// Blocks are assumed shorter than a bar (at most one change inside a block).
    pub fn compose(&self, start: u64, frames: u32, table: &mut VoiceTable) {
        table.reset(start, frames);
        let end = start + frames as u64;
        let segments = &self.segments;
        let mut first = segments
            .partition_point(|s| s.origin() <= start)
            .saturating_sub(1);
        while first > 0 && segments[first].origin() + segments[first - 1].longest_tail() > start {
            first -= 1;
        }
        for (i, score) in segments.iter().enumerate().skip(first) {
            if score.origin() >= end {
                break;
            }
            let until = segments.get(i + 1).map_or(u64::MAX, |next| next.origin());
            score.compose_into(start, frames, until, table);
        }
        // Mix of the segment sounding at the block's end, gliding in from the one before it.
        let current = segments
            .partition_point(|s| s.origin() < end)
            .saturating_sub(1);
        let score = &segments[current];
        table.mix = score.mix();
        // Only while the glide still reaches into this block: after it, the mix is the segment's
        // own (so a timeline that dropped the segment before renders the same samples).
        if current > 0 && score.origin() + u64::from(self.ramp_frames) > start {
            table.mix.previous_gain = segments[current - 1].params().master_gain;
            table.mix.ramp_onset = score.origin() as i64 - start as i64;
            table.mix.ramp_frames = self.ramp_frames;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::params::{MusicParams, Preset};

    const SR: u32 = 48_000;

    #[test]
    fn a_change_lands_on_the_next_bar_line() {
        let params = MusicParams::from_preset(4, Preset::Focus);
        let mut timeline = Timeline::new(4, SR, params);
        let bar = timeline.latest().bar_frames();
        let entry = timeline
            .schedule(
                MusicParams {
                    bpm: 150.0,
                    ..params
                },
                10 * bar + 1,
            )
            .unwrap();
        assert_eq!((entry.position, entry.bar), (11 * bar, 11));
        // A second change before that bar line joins the first.
        let again = timeline
            .schedule(
                MusicParams {
                    bpm: 160.0,
                    ..params
                },
                10 * bar + 500,
            )
            .unwrap();
        assert_eq!(again.position, 11 * bar);
        assert_eq!(timeline.segments().len(), 2);
        assert_eq!(timeline.latest().params().bpm, 160.0);
        // Exactly on a bar line: that bar line.
        let new_bar = timeline.latest().bar_frames();
        let on_line = timeline.schedule(params, 11 * bar + 3 * new_bar).unwrap();
        assert_eq!(
            (on_line.position, on_line.bar),
            (11 * bar + 3 * new_bar, 14)
        );
    }

    #[test]
    fn a_change_placed_at_its_planned_position_equals_a_scheduled_one() {
        let params = MusicParams::from_seed(3);
        let mut planned = Timeline::new(3, SR, params);
        let mut placed = planned.clone();
        let faster = MusicParams {
            bpm: 150.0,
            ..params
        };
        let entry = planned.schedule(faster, 5_000_000).unwrap();
        placed.place(entry, 4_000_000).unwrap();
        assert_eq!(placed.segments(), planned.segments());
        // Rendered already: refused, nothing changes.
        let later = ControlEntry { params, ..entry };
        assert_eq!(
            placed.place(later, entry.position + 1),
            Err(PlaceError::Past)
        );
        assert_eq!(placed.latest().params().bpm, 150.0);
    }

    #[test]
    fn the_log_rebuilds_the_same_timeline() {
        let params = MusicParams::from_seed(8);
        let mut live = Timeline::new(8, SR, params);
        let mut not_before = 1_000_000;
        for bpm in [100.0, 60.0, 180.0] {
            let entry = live
                .schedule(MusicParams { bpm, ..params }, not_before)
                .unwrap();
            not_before = entry.position + 12_345;
        }
        let log: Vec<ControlEntry> = live.log().collect();
        let replayed = Timeline::from_log(8, SR, &log).unwrap();
        assert_eq!(replayed.segments(), live.segments());
    }

    #[test]
    fn logs_off_the_bar_grid_are_refused() {
        let params = MusicParams::from_seed(8);
        let bar = Score::with_params(8, SR, params).bar_frames();
        let entry = |position, bar| ControlEntry {
            position,
            bar,
            params,
        };
        assert_eq!(Timeline::from_log(8, SR, &[]).unwrap_err(), LogError::Empty);
        assert!(matches!(
            Timeline::from_log(8, SR, &[entry(0, 0), entry(bar + 1, 1)]),
            Err(LogError::NotOnBarLine { index: 1, .. })
        ));
        assert!(matches!(
            Timeline::from_log(8, SR, &[entry(0, 0), entry(2 * bar, 3)]),
            Err(LogError::NotOnBarLine { .. })
        ));
        assert!(Timeline::from_log(8, SR, &[entry(0, 0), entry(2 * bar, 2)]).is_ok());
    }

    #[test]
    fn old_segments_are_dropped_once_silent_and_the_live_timeline_stays_bounded() {
        let params = MusicParams::from_seed(2);
        let mut timeline = Timeline::new(2, SR, params);
        let capacity = timeline.segments.capacity();
        let mut position = 0;
        for i in 0..1000 {
            let bpm = 60.0 + (i % 7) as f64 * 20.0;
            let entry = timeline
                .schedule(MusicParams { bpm, ..params }, position)
                .unwrap();
            position = entry.position + 1;
        }
        assert!(
            timeline.segments().len() <= 4,
            "{}",
            timeline.segments().len()
        );
        assert_eq!(timeline.segments.capacity(), capacity, "never reallocated");
    }
}
