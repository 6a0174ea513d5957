//! One listener's delivery figures, summed locally and flushed about once a second.
//!
//! Per chunk and listener, the only work left is the send: counting a chunk and its bytes, and
//! keeping its delivery and jitter samples, touch nothing shared. Every [`FLUSH_CHUNKS`] chunks or
//! second, whichever comes first, and when the session ends (on drop, whatever ended it), the
//! tally adds its counts to the
//! station's totals and its samples to the histograms, grouped so that samples falling into the
//! same bucket cost one update. Figures on `/metrics` and the dashboard therefore trail a
//! listener by at most a second.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::hub::StationHub;
use crate::codec::Codec;
use crate::telemetry::live::LiveHistogram;
use crate::telemetry::metrics::{DELIVERY_BUCKETS, JITTER_BUCKETS};

/// Chunks between flushes: one second at the default 100 ms chunks.
pub const FLUSH_CHUNKS: usize = 10;
/// Longest time between flushes, whatever the chunk length.
const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Samples kept between flushes, in seconds.
#[derive(Debug)]
struct Samples {
    values: [f64; FLUSH_CHUNKS],
    len: usize,
}

impl Samples {
    const fn new() -> Self {
        Self {
            values: [0.0; FLUSH_CHUNKS],
            len: 0,
        }
    }

    fn push(&mut self, value: f64) {
        if self.len < FLUSH_CHUNKS {
            self.values[self.len] = value;
            self.len += 1;
        }
    }

    /// Records the samples in `histogram` (whose buckets are `bounds`) and `live`, one update per
    /// bucket: each bucket gets its count at the mean of its samples, so bucket counts and the
    /// sum stay exact.
    fn flush(&mut self, histogram: &metrics::Histogram, bounds: &[f64], live: &LiveHistogram) {
        let values = &mut self.values[..self.len];
        values.sort_by(f64::total_cmp);
        let bucket = |v: f64| bounds.partition_point(|&bound| bound < v);
        let mut start = 0;
        while start < values.len() {
            let index = bucket(values[start]);
            let end = start
                + values[start..]
                    .iter()
                    .take_while(|v| bucket(**v) == index)
                    .count();
            let run = &values[start..end];
            histogram.record_many(run.iter().sum::<f64>() / run.len() as f64, run.len());
            start = end;
        }
        live.record_sorted(values);
        self.len = 0;
    }
}

/// A listener's figures since the last flush.
pub struct DeliveryTally<'a> {
    hub: &'a StationHub,
    /// The codec this listener receives: its bytes and itself are counted under it.
    codec: Codec,
    last_flush: Instant,
    chunks: u64,
    bytes: u64,
    delivery: Samples,
    jitter: Samples,
}

impl<'a> DeliveryTally<'a> {
    /// A tally for a listener of `codec` (counted among that codec's listeners until dropped).
    pub fn new(hub: &'a StationHub, codec: Codec) -> Self {
        hub.stats.listeners_by_codec[codec.index()].fetch_add(1, Ordering::Relaxed);
        Self {
            hub,
            codec,
            last_flush: Instant::now(),
            chunks: 0,
            bytes: 0,
            delivery: Samples::new(),
            jitter: Samples::new(),
        }
    }

    /// Counts one chunk written to the listener at `now`, with its delivery and jitter samples
    /// if any.
    pub fn chunk_sent(
        &mut self,
        now: Instant,
        bytes: u64,
        delivery: Option<f64>,
        jitter: Option<f64>,
    ) {
        self.chunks += 1;
        self.bytes += bytes;
        if let Some(seconds) = delivery {
            self.delivery.push(seconds);
        }
        if let Some(seconds) = jitter {
            self.jitter.push(seconds);
        }
        let due = now.saturating_duration_since(self.last_flush) >= FLUSH_INTERVAL;
        if self.chunks as usize >= FLUSH_CHUNKS || due {
            self.last_flush = now;
            self.flush();
        }
    }

    /// Adds everything counted so far to the station's totals (`StationStats`, which `/metrics`
    /// mirrors into the Prometheus counters) and histograms.
    /// The listener switched codecs: what it got so far stays under the old one.
    pub fn set_codec(&mut self, codec: Codec) {
        self.flush();
        let listeners = &self.hub.stats.listeners_by_codec;
        listeners[self.codec.index()].fetch_sub(1, Ordering::Relaxed);
        listeners[codec.index()].fetch_add(1, Ordering::Relaxed);
        self.codec = codec;
    }

    pub fn flush(&mut self) {
        let hub = self.hub;
        if self.chunks > 0 {
            hub.stats.bytes_by_codec[self.codec.index()].fetch_add(self.bytes, Ordering::Relaxed);
            hub.stats
                .chunks_sent
                .fetch_add(self.chunks, Ordering::Relaxed);
            hub.stats
                .bytes_sent
                .fetch_add(self.bytes, Ordering::Relaxed);
            self.chunks = 0;
            self.bytes = 0;
        }
        self.delivery
            .flush(&hub.metrics.delivery, DELIVERY_BUCKETS, &hub.live.delivery);
        self.jitter
            .flush(&hub.metrics.jitter, JITTER_BUCKETS, &hub.live.jitter);
    }
}

impl Drop for DeliveryTally<'_> {
    fn drop(&mut self) {
        self.flush();
        self.hub.stats.listeners_by_codec[self.codec.index()].fetch_sub(1, Ordering::Relaxed);
    }
}
