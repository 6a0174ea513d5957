//! A simulated client jitter buffer: what a player with a given prebuffer would have heard.
//!
//! Arrival jitter alone does not say whether a listener hears a dropout; a player buffers first
//! and only starves when audio arrives later than its buffer lasts. This model waits until
//! `prebuffer` seconds of audio are queued, then plays in real time; an arrival after the queued
//! audio ran out is one underrun, after which it buffers again.

/// Where the simulated player is.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Collecting audio before playback starts (again).
    Buffering { queued_seconds: f64 },
    /// Playing since `started_at`; `supplied_seconds` of audio have arrived since then, counting
    /// what was queued when playback started.
    Playing {
        started_at: f64,
        supplied_seconds: f64,
    },
}

/// Playout simulation for one listener. Times are seconds on any monotonic clock.
#[derive(Clone, Debug)]
pub struct Playout {
    prebuffer_seconds: f64,
    state: State,
    underruns: u64,
    starved_seconds: f64,
    /// Smallest queue seen at an arrival while playing, in seconds.
    min_queue_seconds: Option<f64>,
}

impl Playout {
    /// A player that starts once `prebuffer_seconds` of audio are queued (0 starts at once).
    pub fn new(prebuffer_seconds: f64) -> Self {
        Self {
            prebuffer_seconds: prebuffer_seconds.max(0.0),
            state: State::Buffering {
                queued_seconds: 0.0,
            },
            underruns: 0,
            starved_seconds: 0.0,
            min_queue_seconds: None,
        }
    }

    /// `audio_seconds` of audio arrived at time `now`.
    pub fn on_audio(&mut self, now: f64, audio_seconds: f64) {
        self.state = match self.state {
            State::Buffering { queued_seconds } => self.buffer(now, queued_seconds + audio_seconds),
            State::Playing {
                started_at,
                supplied_seconds,
            } => {
                let played = now - started_at;
                let queue = supplied_seconds - played;
                if queue < 0.0 {
                    // The queue ran dry before this arrival: the listener heard silence.
                    self.underruns += 1;
                    self.starved_seconds += -queue;
                    self.buffer(now, audio_seconds)
                } else {
                    self.min_queue_seconds =
                        Some(self.min_queue_seconds.map_or(queue, |m| m.min(queue)));
                    State::Playing {
                        started_at,
                        supplied_seconds: supplied_seconds + audio_seconds,
                    }
                }
            }
        };
    }

    fn buffer(&self, now: f64, queued_seconds: f64) -> State {
        if queued_seconds >= self.prebuffer_seconds {
            State::Playing {
                started_at: now,
                supplied_seconds: queued_seconds,
            }
        } else {
            State::Buffering { queued_seconds }
        }
    }

    /// Times the queue ran dry after playback had started.
    pub fn underruns(&self) -> u64 {
        self.underruns
    }

    /// Silence heard because of underruns, in seconds (up to the arrival that ended each one).
    pub fn starved_seconds(&self) -> f64 {
        self.starved_seconds
    }

    /// The lowest the queue got while playing, in seconds, if playback started.
    pub fn min_queue_seconds(&self) -> Option<f64> {
        self.min_queue_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: f64 = 0.1;

    #[test]
    fn steady_arrivals_never_underrun() {
        let mut p = Playout::new(0.2);
        for i in 0..600 {
            p.on_audio(i as f64 * CHUNK, CHUNK);
        }
        assert_eq!(p.underruns(), 0);
        // Playback starts with the second chunk (0.2 s queued), so the queue settles at 0.1 s
        // just before each arrival.
        let min = p.min_queue_seconds().expect("playing");
        assert!((min - 0.1).abs() < 1e-9, "min queue {min}");
    }

    #[test]
    fn a_late_chunk_within_the_prebuffer_is_absorbed() {
        let mut p = Playout::new(0.2);
        let mut t = 0.0;
        for i in 0..20 {
            // Chunk 10 is 90 ms late; the 100 ms of slack covers it.
            let late = if i == 10 { 0.09 } else { 0.0 };
            p.on_audio(t + late, CHUNK);
            t += CHUNK;
        }
        assert_eq!(p.underruns(), 0);
    }

    #[test]
    fn a_stall_longer_than_the_buffer_is_one_underrun_then_rebuffers() {
        let mut p = Playout::new(0.2);
        let mut t = 0.0;
        for _ in 0..10 {
            p.on_audio(t, CHUNK);
            t += CHUNK;
        }
        // Playing since t=0.1 with 0.2 s supplied, then 0.1 s per chunk: the queue holds
        // 0.1 s before each arrival. A 500 ms stall outlasts it by 0.4 s.
        t += 0.5;
        p.on_audio(t, CHUNK);
        assert_eq!(p.underruns(), 1);
        assert!(
            (p.starved_seconds() - 0.4).abs() < 1e-9,
            "{}",
            p.starved_seconds()
        );
        // It buffers again (needs 0.2 s), then plays without further underruns.
        for _ in 0..10 {
            t += CHUNK;
            p.on_audio(t, CHUNK);
        }
        assert_eq!(p.underruns(), 1);
    }

    #[test]
    fn zero_prebuffer_underruns_on_any_late_arrival() {
        let mut p = Playout::new(0.0);
        p.on_audio(0.0, CHUNK);
        p.on_audio(0.1005, CHUNK);
        assert_eq!(p.underruns(), 1);
    }

    #[test]
    fn bursts_fill_the_queue() {
        // Burst-on-connect: a second of audio at once, then real time.
        let mut p = Playout::new(0.2);
        p.on_audio(0.0, 1.0);
        for i in 1..50 {
            p.on_audio(i as f64 * CHUNK, CHUNK);
        }
        assert_eq!(p.underruns(), 0);
        assert!(p.min_queue_seconds().expect("playing") > 0.89);
    }
}
