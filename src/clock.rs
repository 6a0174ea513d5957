//! Time on the wall clock: [`unix_nanos`], and the clock-offset estimate from `ping`/`pong`, so
//! latency can be measured against another host.
//!
//! Each pong carries the server's wall clock. Assuming the reply was made halfway through the
//! round trip, `offset = server_time - (sent + received) / 2`, wrong by at most half the round
//! trip. The sample with the shortest round trip is the tightest bound, so it is the one kept
//! (the approach of NTP's clock filter, without its statistics).

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time as Unix nanoseconds (a vDSO read: no lock, no allocation).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Best estimate of `server_clock - local_clock` for one connection.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockOffset {
    best: Option<Sample>,
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    offset_ns: i64,
    round_trip_ns: u64,
}

impl ClockOffset {
    /// Adds one ping/pong exchange: local wall-clock times around it and the server's stamp.
    pub fn observe(&mut self, sent_local_ns: u64, server_ns: u64, received_local_ns: u64) {
        let Some(round_trip_ns) = received_local_ns.checked_sub(sent_local_ns) else {
            return; // the local clock stepped backwards: no usable sample
        };
        let midpoint = sent_local_ns as i128 + round_trip_ns as i128 / 2;
        let offset_ns =
            (server_ns as i128 - midpoint).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        if self.best.is_none_or(|b| round_trip_ns < b.round_trip_ns) {
            self.best = Some(Sample {
                offset_ns,
                round_trip_ns,
            });
        }
    }

    /// `server_clock - local_clock` in ns, once a pong has arrived.
    pub fn offset_ns(&self) -> Option<i64> {
        self.best.map(|b| b.offset_ns)
    }

    /// Round trip of the sample in use, in ns (twice the worst-case offset error).
    pub fn round_trip_ns(&self) -> Option<u64> {
        self.best.map(|b| b.round_trip_ns)
    }

    /// A server timestamp converted to the local clock.
    pub fn to_local_ns(&self, server_ns: u64) -> Option<u64> {
        let offset = self.offset_ns()?;
        u64::try_from(server_ns as i128 - offset as i128).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symmetric_round_trip_recovers_the_offset_exactly() {
        let mut c = ClockOffset::default();
        // Server runs 5 s ahead; 2 ms each way.
        let sent = 1_000_000_000_000;
        let server = sent + 2_000_000 + 5_000_000_000;
        c.observe(sent, server, sent + 4_000_000);
        assert_eq!(c.offset_ns(), Some(5_000_000_000));
        assert_eq!(c.round_trip_ns(), Some(4_000_000));
        assert_eq!(c.to_local_ns(server), Some(sent + 2_000_000));
    }

    #[test]
    fn the_shortest_round_trip_wins() {
        let mut c = ClockOffset::default();
        let t = 1_000_000_000_000u64;
        // Slow, asymmetric exchange first (reply delayed 30 ms on the way back): offset off by 15 ms.
        c.observe(t, t + 1_000_000 - 3_000_000_000, t + 32_000_000);
        assert_eq!(c.offset_ns(), Some(-3_000_000_000 - 15_000_000));
        // A tight exchange replaces it.
        c.observe(
            t + 100_000_000,
            t + 100_500_000 - 3_000_000_000,
            t + 101_000_000,
        );
        assert_eq!(c.offset_ns(), Some(-3_000_000_000));
        // A slower one later does not.
        c.observe(
            t + 200_000_000,
            t + 210_000_000 - 3_000_000_000,
            t + 212_000_000,
        );
        assert_eq!(c.offset_ns(), Some(-3_000_000_000));
    }

    #[test]
    fn no_estimate_before_a_pong_or_after_a_backwards_step() {
        let mut c = ClockOffset::default();
        assert_eq!(c.offset_ns(), None);
        assert_eq!(c.to_local_ns(5), None);
        c.observe(10, 5, 9);
        assert_eq!(c.offset_ns(), None);
    }
}
