//! Listeners that fall behind the live stream, WebSocket and HTTP alike: a lagging listener skips
//! to the newest chunk; one that lags too often is disconnected.

use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;

use super::hub::{Frame, StationHub};
use crate::labels::Transport;

/// The window over which lag skips are counted.
const LAG_WINDOW: Duration = Duration::from_secs(60);

/// Lag skips within the current window, for the persistent-lag rule.
pub struct LagWindow {
    started: Instant,
    skips: u32,
}

impl LagWindow {
    pub fn new(now: Instant) -> Self {
        Self {
            started: now,
            skips: 0,
        }
    }

    /// Counts a skip; true when the listener has now skipped more than `allowed` times within
    /// the window (0: any number is allowed).
    pub fn skipped(&mut self, now: Instant, allowed: u32) -> bool {
        if now.saturating_duration_since(self.started) > LAG_WINDOW {
            self.started = now;
            self.skips = 0;
        }
        self.skips += 1;
        allowed > 0 && self.skips > allowed
    }
}

/// Drains the receiver to its newest frame; returns it and how many older ones were skipped.
fn newest_frame(frames: &mut broadcast::Receiver<Frame>) -> (Option<Frame>, u64) {
    let mut newest = None;
    let mut skipped = 0;
    loop {
        match frames.try_recv() {
            Ok(frame) => {
                if newest.replace(frame).is_some() {
                    skipped += 1;
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(missed)) => skipped += missed,
            Err(_) => return (newest, skipped),
        }
    }
}

/// The listener has lagged more often than allowed within the window: disconnect it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaggingTooOften;

/// After a `Lagged(missed)` receive: skips to the newest frame, counts every skipped chunk under
/// `transport`, and returns the newest frame (`None` when nothing is queued).
///
/// # Errors
/// [`LaggingTooOften`] when this skip is one more than `allowed` within the window.
pub fn skip_to_newest(
    frames: &mut broadcast::Receiver<Frame>,
    missed: u64,
    hub: &StationHub,
    transport: Transport,
    lag: &mut LagWindow,
    allowed: u32,
) -> Result<Option<Frame>, LaggingTooOften> {
    let (newest, skipped) = newest_frame(frames);
    hub.metrics
        .dropped_lagged(transport)
        .increment(missed + skipped);
    hub.stats
        .dropped
        .fetch_add(missed + skipped, std::sync::atomic::Ordering::Relaxed);
    if lag.skipped(Instant::now(), allowed) {
        return Err(LaggingTooOften);
    }
    Ok(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_beyond_the_allowance_within_a_minute_disconnect() {
        let start = Instant::now();
        let mut lag = LagWindow::new(start);
        assert!(!lag.skipped(start, 2));
        assert!(!lag.skipped(start + Duration::from_secs(1), 2));
        assert!(lag.skipped(start + Duration::from_secs(2), 2));
        // A new window starts the count again.
        assert!(!lag.skipped(start + Duration::from_secs(70), 2));
        let mut unlimited = LagWindow::new(start);
        assert!((0..100).all(|_| !unlimited.skipped(start, 0)));
    }
}
