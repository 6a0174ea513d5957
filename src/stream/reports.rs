//! What a listener's `stats` reports may add to the client-reported series.
//!
//! A client's figures are claims, not measurements: any unauthenticated connection can send them.
//! Each one is checked against what the connection could really have observed in the time it has
//! been open, and a figure that could not be true is refused (and counted) instead of recorded:
//!
//! - **underruns** are cumulative per connection. A report adds only what exceeds the highest
//!   value seen on this connection (a decrease is ignored; a client that restarts its count does
//!   so on a new connection), and a connection can never add more underruns than chunks the
//!   server could have sent it since it connected.
//! - **decode errors** (chunks the client could not decode) are cumulative and bounded the same way.
//! - **buffer** cannot hold more audio than was released to the connection since it opened.
//! - **latency** (render to playout) cannot exceed the connection's age plus the oldest audio it
//!   could have been sent at connect: the render-ahead and one catch-up chunk.
//!
//! The number of samples a connection adds to the histograms is bounded by the stats rate limit.

use std::time::Duration;

use tokio::time::Instant;

pub use crate::labels::ReportField;

/// Chunks of slack on every bound: the catch-up chunk sent at connect and one in flight.
const SLACK_CHUNKS: u32 = 2;

/// One `stats` message as the client sent it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClaimedReport {
    pub buffer_ms: f64,
    /// Cumulative playback underruns on this connection.
    pub underruns: u64,
    pub latency_ms: Option<f64>,
    /// Cumulative chunks this connection could not decode.
    pub decode_errors: Option<u64>,
}

/// What of a report may be recorded, and which fields were refused.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Accepted {
    /// Underruns to add to the counter (new since the last accepted report).
    pub new_underruns: u64,
    /// Decode errors to add to the counter (new since the last accepted report).
    pub new_decode_errors: u64,
    pub buffer_seconds: Option<f64>,
    pub latency_seconds: Option<f64>,
    /// Fields refused as impossible (a decrease of underruns is ignored, not refused).
    pub refused: [bool; ReportField::ALL.len()],
}

impl Accepted {
    pub fn refused_fields(&self) -> impl Iterator<Item = ReportField> + '_ {
        ReportField::ALL
            .into_iter()
            .filter(|field| self.refused[*field as usize])
    }
}

/// The per-connection bookkeeping that bounds a listener's reports.
#[derive(Debug)]
pub struct ReportBounds {
    connected: Instant,
    chunk_period: Duration,
    /// The oldest audio a connection can be sent at connect: the ring's whole capacity.
    render_ahead: Duration,
    /// Highest cumulative underrun and decode-error counts accepted on this connection.
    underruns_seen: u64,
    decode_errors_seen: u64,
}

/// A cumulative per-connection count: what it adds beyond the highest value seen, or `Err` when
/// it claims more events than chunks could have arrived.
fn cumulative(claimed: u64, seen: &mut u64, possible: u64) -> Result<u64, ()> {
    if claimed <= *seen {
        return Ok(0);
    }
    if claimed > possible {
        return Err(());
    }
    let new = claimed - *seen;
    *seen = claimed;
    Ok(new)
}

impl ReportBounds {
    pub fn new(connected: Instant, chunk_period: Duration, render_ahead: Duration) -> Self {
        Self {
            connected,
            chunk_period,
            render_ahead,
            underruns_seen: 0,
            decode_errors_seen: 0,
        }
    }

    /// Checks a report received at `now` against what the connection could have observed.
    pub fn check(&mut self, now: Instant, report: ClaimedReport) -> Accepted {
        let age = now.saturating_duration_since(self.connected);
        let slack = self.chunk_period * SLACK_CHUNKS;
        let mut accepted = Accepted::default();

        let chunks_possible =
            (age.as_nanos() / self.chunk_period.as_nanos().max(1)) as u64 + u64::from(SLACK_CHUNKS);
        match cumulative(report.underruns, &mut self.underruns_seen, chunks_possible) {
            Ok(new) => accepted.new_underruns = new,
            Err(()) => accepted.refused[ReportField::Underruns as usize] = true,
        }
        if let Some(claimed) = report.decode_errors {
            match cumulative(claimed, &mut self.decode_errors_seen, chunks_possible) {
                Ok(new) => accepted.new_decode_errors = new,
                Err(()) => accepted.refused[ReportField::DecodeErrors as usize] = true,
            }
        }

        let buffer = report.buffer_ms / 1000.0;
        if buffer <= (age + slack).as_secs_f64() {
            accepted.buffer_seconds = Some(buffer);
        } else {
            accepted.refused[ReportField::Buffer as usize] = true;
        }

        if let Some(latency_ms) = report.latency_ms {
            let latency = latency_ms / 1000.0;
            if latency <= (age + self.render_ahead + slack).as_secs_f64() {
                accepted.latency_seconds = Some(latency);
            } else {
                accepted.refused[ReportField::Latency as usize] = true;
            }
        }
        accepted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(100);

    fn bounds(start: Instant) -> ReportBounds {
        ReportBounds::new(start, PERIOD, Duration::from_millis(500))
    }

    fn report(underruns: u64) -> ClaimedReport {
        ClaimedReport {
            buffer_ms: 150.0,
            underruns,
            latency_ms: Some(450.0),
            decode_errors: None,
        }
    }

    #[test]
    fn a_healthy_report_is_accepted_whole() {
        let start = Instant::now();
        let mut b = bounds(start);
        let a = b.check(start + Duration::from_secs(1), report(2));
        assert_eq!(a.new_underruns, 2);
        assert_eq!(a.buffer_seconds, Some(0.15));
        assert_eq!(a.latency_seconds, Some(0.45));
        assert_eq!(a.refused_fields().count(), 0);
        // Cumulative: only the increase counts.
        let a = b.check(start + Duration::from_secs(2), report(5));
        assert_eq!(a.new_underruns, 3);
    }

    #[test]
    fn alternating_huge_and_zero_underruns_add_nothing() {
        let start = Instant::now();
        let mut b = bounds(start);
        let mut added = 0;
        let mut refused = 0;
        for i in 0..6 {
            let claimed = if i % 2 == 0 { u64::MAX } else { 0 };
            let a = b.check(start + Duration::from_secs(1 + i), report(claimed));
            added += a.new_underruns;
            refused += a.refused_fields().count();
        }
        assert_eq!(added, 0);
        assert_eq!(refused, 3);
    }

    #[test]
    fn underruns_are_bounded_by_the_chunks_the_connection_could_get() {
        let start = Instant::now();
        let mut b = bounds(start);
        // One second: at most 10 chunks released plus the slack.
        let at = start + Duration::from_secs(1);
        assert!(b.check(at, report(13)).refused[ReportField::Underruns as usize]);
        assert_eq!(b.check(at, report(12)).new_underruns, 12);
        // A decrease is ignored, and climbing back counts only beyond the high-water mark.
        assert_eq!(b.check(at, report(3)).new_underruns, 0);
        assert_eq!(b.check(at, report(12)).new_underruns, 0);
    }

    #[test]
    fn decode_errors_are_bounded_by_the_chunks_a_connection_could_get() {
        let start = Instant::now();
        let mut b = bounds(start);
        let at = start + Duration::from_secs(1);
        let claim = |n| ClaimedReport {
            decode_errors: Some(n),
            ..report(0)
        };
        assert!(b.check(at, claim(u64::MAX)).refused[ReportField::DecodeErrors as usize]);
        assert_eq!(b.check(at, claim(4)).new_decode_errors, 4);
        assert_eq!(b.check(at, claim(2)).new_decode_errors, 0);
        assert_eq!(b.check(at, claim(6)).new_decode_errors, 2);
    }

    #[test]
    fn buffer_and_latency_beyond_the_connections_age_are_refused() {
        let start = Instant::now();
        let mut b = bounds(start);
        let at = start + Duration::from_millis(300);
        let a = b.check(
            at,
            ClaimedReport {
                buffer_ms: 600.0,
                underruns: 0,
                latency_ms: Some(1100.0),
                decode_errors: None,
            },
        );
        assert_eq!(a.buffer_seconds, None);
        assert_eq!(a.latency_seconds, None);
        assert_eq!(
            a.refused_fields().collect::<Vec<_>>(),
            [ReportField::Buffer, ReportField::Latency]
        );
        // Within age + slack (+ render-ahead for latency) they pass.
        let a = b.check(
            at,
            ClaimedReport {
                buffer_ms: 500.0,
                underruns: 0,
                latency_ms: Some(1000.0),
                decode_errors: None,
            },
        );
        assert_eq!(a.buffer_seconds, Some(0.5));
        assert_eq!(a.latency_seconds, Some(1.0));
    }
}
