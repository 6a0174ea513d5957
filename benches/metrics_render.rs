//! Time to render `/metrics` under the traffic of 1000 listeners.
//!
//! The exporter keeps histogram samples until the next render, so a scrape's cost grows with the
//! traffic since the previous one, not with the number of listeners (no per-listener series).
//! Each round records one 5 s scrape interval of 1000 listeners (delivery and jitter samples for
//! 10 chunks a second each, plus the counters) spread over 4 stations, then times one render.
//! Prints p50/p99/max. Run: `cargo bench --bench metrics_render`; under `cargo test` (no `--bench`
//! flag) it runs a few small rounds as a smoke test.

use std::time::Instant;

use auralis::telemetry::metrics::{self, StationMetrics};
use hdrhistogram::Histogram;

const LISTENERS: u64 = 1000;
const SCRAPE_SECONDS: u64 = 5;
const CHUNKS_PER_SECOND: u64 = 10;

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let (rounds, listeners) = if full { (200, LISTENERS) } else { (3, 10) };
    let handle = metrics::install().expect("recorder");
    let stations: Vec<StationMetrics> = (0..4)
        .map(|i| StationMetrics::new(&format!("station-{i}"), "cpu"))
        .collect();
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).unwrap();
    let mut bytes = 0;
    for round in 0..rounds {
        let samples = listeners * SCRAPE_SECONDS * CHUNKS_PER_SECOND;
        for i in 0..samples {
            let station = &stations[(i % stations.len() as u64) as usize];
            let jitter = 0.000_2 + (i % 97) as f64 * 0.000_01;
            station.delivery.record(0.000_5 + jitter);
            station.jitter.record(jitter);
            station.chunks_sent.increment(1);
            station.bytes_sent.increment(19_256);
        }
        let began = Instant::now();
        let text = metrics::render(&handle);
        let elapsed = began.elapsed();
        bytes = text.len();
        if round > 0 {
            histogram.record(elapsed.as_nanos() as u64).unwrap();
        }
        std::hint::black_box(text);
    }
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1e6;
    println!(
        "/metrics render, {listeners} listeners x {SCRAPE_SECONDS} s of traffic per scrape, {} renders of {} KiB: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        histogram.len(),
        bytes / 1024,
        ms(0.5),
        ms(0.99),
        histogram.max() as f64 / 1e6
    );
}
