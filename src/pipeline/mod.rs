//! From samples to paced chunks: the synthesis thread renders into a lock-free ring ([`ring`],
//! [`synthesis`]); the [`pacer`] pops one chunk per absolute deadline.

pub mod pacer;
pub mod ring;
pub mod synthesis;

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time as Unix nanoseconds (a vDSO read: no lock, no allocation).
pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
