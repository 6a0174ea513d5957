//! The server's own view of a load run: `/metrics` scraped before and after, as deltas.
//!
//! Only the few series the report sets beside the client view are read, summed over stations.
//! The Prometheus text format is line-based; sample lines are read by [`parse_sample`] (why it is
//! not a crate: see there).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::telemetry::metrics::{
    CHUNK_DELIVERY, CHUNK_JITTER, RING_UNDERRUNS, WS_CHUNKS_DROPPED, WS_CHUNKS_SENT,
    WS_CONNECTIONS, WS_DISCONNECTIONS, WS_SEND_ERRORS,
};

/// One scrape: every sample summed over its label sets, keeping only `le` (histogram buckets) and
/// the disconnection `reason` apart.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    /// Reads Prometheus text exposition format; lines it does not understand are skipped. With
    /// `station`, series labelled with another station are left out.
    pub fn parse(text: &str, station: Option<&str>) -> Self {
        let mut samples = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, labels, value)) = parse_sample(line) else {
                continue;
            };
            let label = |wanted: &str| {
                labels
                    .iter()
                    .find(|(key, _)| *key == wanted)
                    .map(|(_, value)| value.as_str())
            };
            if let (Some(wanted), Some(found)) = (station, label("station")) {
                if wanted != found {
                    continue;
                }
            }
            let mut key = name.to_string();
            if let Some(le) = label("le") {
                key.push_str(&format!("|le={le}"));
            }
            if name == WS_DISCONNECTIONS {
                if let Some(reason) = label("reason") {
                    key.push_str(&format!("|reason={reason}"));
                }
            }
            *samples.entry(key).or_insert(0.0) += value;
        }
        Self { samples }
    }

    /// Listeners connected at the scrape (`auralis_ws_connections`).
    pub fn connections(&self) -> f64 {
        self.get(WS_CONNECTIONS)
    }

    fn get(&self, key: &str) -> f64 {
        self.samples.get(key).copied().unwrap_or(0.0)
    }

    /// Cumulative histogram buckets `(upper bound, count)` of `name`, in bound order.
    fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket|le=");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?;
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((bound, *v))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        buckets
    }
}

/// The value of `name="..."` in a label list (label values here never hold quotes).
/// A sample's labels, in order: names borrowed from the line, values unescaped.
type Labels<'a> = Vec<(&'a str, String)>;

/// One sample line of the text exposition format: the metric name, its labels (unescaped) and
/// the value. `None` for anything that is not a well-formed sample line.
///
/// Hand-written rather than taken from a crate: the format's sample grammar is small and fixed
/// (name, optional `{k="v",...}` with `\\`, `\"` and `\n` escapes, value, optional timestamp),
/// and the parsers on crates.io (`prometheus-parse` and its forks) find the label set with
/// regular expressions that stop at the first `}` or split on `,` inside quoted values, which
/// adapter names such as `llvmpipe (LLVM 15.0.6, 256 bits)` contain.
fn parse_sample(line: &str) -> Option<(&str, Labels<'_>, f64)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let (name, mut rest) = line.split_at(name_end);
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = after_brace;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after_key) = rest.split_once('=')?;
            let (value, after_value) = quoted(after_key.strip_prefix('"')?)?;
            labels.push((key.trim(), value));
            rest = after_value;
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// A quoted label value up to its closing quote (the opening one already taken), unescaped;
/// and what follows it.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            c => value.push(c),
        }
    }
    None
}

/// What the server recorded during the run (after minus before).
#[derive(Serialize, Debug, Clone, Default, PartialEq)]
pub struct ServerView {
    pub chunks_sent: f64,
    pub ring_underruns: f64,
    pub chunks_dropped: f64,
    pub send_errors: f64,
    /// Disconnections by reason, `client_closed` included.
    pub disconnections: BTreeMap<String, f64>,
    /// Quantiles estimated from bucket deltas as `histogram_quantile` does, in ms.
    pub jitter_p50_ms: Option<f64>,
    pub jitter_p95_ms: Option<f64>,
    pub jitter_p99_ms: Option<f64>,
    pub delivery_p50_ms: Option<f64>,
    pub delivery_p99_ms: Option<f64>,
}

impl ServerView {
    /// The change between two scrapes.
    pub fn between(before: &Scrape, after: &Scrape) -> Self {
        let delta = |key: &str| (after.get(key) - before.get(key)).max(0.0);
        let disconnections = after
            .samples
            .keys()
            .filter_map(|k| k.strip_prefix(&format!("{WS_DISCONNECTIONS}|reason=")))
            .map(|reason| {
                let key = format!("{WS_DISCONNECTIONS}|reason={reason}");
                (reason.to_string(), delta(&key))
            })
            .filter(|(_, n)| *n > 0.0)
            .collect();
        let quantile = |name: &str, q: f64| {
            let before = before.buckets(name);
            let after = after.buckets(name);
            let deltas: Vec<(f64, f64)> = after
                .iter()
                .map(|(bound, count)| {
                    let earlier = before
                        .iter()
                        .find(|(b, _)| b == bound)
                        .map_or(0.0, |(_, c)| *c);
                    (*bound, (count - earlier).max(0.0))
                })
                .collect();
            histogram_quantile(q, &deltas).map(|seconds| seconds * 1000.0)
        };
        Self {
            chunks_sent: delta(WS_CHUNKS_SENT),
            ring_underruns: delta(RING_UNDERRUNS),
            chunks_dropped: delta(WS_CHUNKS_DROPPED),
            send_errors: delta(WS_SEND_ERRORS),
            disconnections,
            jitter_p50_ms: quantile(CHUNK_JITTER, 0.50),
            jitter_p95_ms: quantile(CHUNK_JITTER, 0.95),
            jitter_p99_ms: quantile(CHUNK_JITTER, 0.99),
            delivery_p50_ms: quantile(CHUNK_DELIVERY, 0.50),
            delivery_p99_ms: quantile(CHUNK_DELIVERY, 0.99),
        }
    }

    /// Disconnections other than the client closing on its own.
    pub fn forced_disconnections(&self) -> f64 {
        self.disconnections
            .iter()
            .filter(|(reason, _)| reason.as_str() != "client_closed")
            .map(|(_, n)| n)
            .sum()
    }
}

/// Prometheus' `histogram_quantile`: linear interpolation inside the bucket holding rank `q`.
/// `buckets` are cumulative `(upper bound, count)` in bound order, ending with `+Inf`.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(bound, count) in buckets {
        if count >= rank {
            if bound.is_infinite() {
                // Prometheus answers with the highest finite bound.
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            if in_bucket <= 0.0 {
                return Some(bound);
            }
            return Some(lower.0 + (bound - lower.0) * (rank - lower.1) / in_bucket);
        }
        lower = (bound, count);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
# HELP auralis_chunk_jitter_seconds Jitter.
# TYPE auralis_chunk_jitter_seconds histogram
auralis_chunk_jitter_seconds_bucket{station="a",le="0.001"} 10
auralis_chunk_jitter_seconds_bucket{station="a",le="0.01"} 10
auralis_chunk_jitter_seconds_bucket{station="a",le="+Inf"} 10
auralis_chunk_jitter_seconds_sum{station="a"} 0.001
auralis_chunk_jitter_seconds_count{station="a"} 10
auralis_ring_buffer_underruns_total{station="a"} 2
auralis_ws_disconnections_total{station="a",reason="client_closed"} 1
"#;

    const AFTER: &str = r#"
auralis_chunk_jitter_seconds_bucket{station="a",le="0.001"} 60
auralis_chunk_jitter_seconds_bucket{station="a",le="0.01"} 100
auralis_chunk_jitter_seconds_bucket{station="a",le="+Inf"} 110
auralis_chunk_jitter_seconds_bucket{station="b",le="0.001"} 0
auralis_chunk_jitter_seconds_bucket{station="b",le="0.01"} 0
auralis_chunk_jitter_seconds_bucket{station="b",le="+Inf"} 0
auralis_ring_buffer_underruns_total{station="a"} 5
auralis_ring_buffer_underruns_total{station="b"} 1
auralis_ws_disconnections_total{station="a",reason="client_closed"} 4
auralis_ws_disconnections_total{station="b",reason="send_timeout"} 2
auralis_ws_chunks_dropped_total{station="a",reason="lagged"} 7
"#;

    #[test]
    fn quoted_label_values_may_hold_commas_braces_and_escapes() {
        let line = r#"auralis_gpu_info{adapter="llvmpipe (LLVM 15.0.6, 256 bits) {x}",backend="vulkan",note="a \"q\" \\ b\nc"} 1"#;
        let (name, labels, value) = parse_sample(line).expect("a sample");
        assert_eq!(name, "auralis_gpu_info");
        assert_eq!(value, 1.0);
        assert_eq!(
            labels,
            [
                (
                    "adapter",
                    "llvmpipe (LLVM 15.0.6, 256 bits) {x}".to_string()
                ),
                ("backend", "vulkan".to_string()),
                ("note", "a \"q\" \\ b\nc".to_string()),
            ]
        );
        assert_eq!(
            parse_sample("plain_total 3 1700000000000"),
            Some(("plain_total", vec![], 3.0))
        );
        assert_eq!(parse_sample(r#"broken{a="unterminated} 1"#), None);
        // A station filter is not fooled by a comma inside another label's value.
        let text =
            "auralis_ring_buffer_underruns_total{note=\"x,station=\\\"b\\\"\",station=\"a\"} 4\n";
        let scrape = Scrape::parse(text, Some("a"));
        assert_eq!(scrape.get(RING_UNDERRUNS), 4.0);
    }

    #[test]
    fn deltas_sum_over_stations() {
        let view = ServerView::between(&Scrape::parse(BEFORE, None), &Scrape::parse(AFTER, None));
        assert_eq!(view.ring_underruns, 4.0);
        assert_eq!(view.chunks_dropped, 7.0);
        assert_eq!(view.disconnections.get("client_closed"), Some(&3.0));
        assert_eq!(view.disconnections.get("send_timeout"), Some(&2.0));
        assert_eq!(view.forced_disconnections(), 2.0);
    }

    #[test]
    fn quantiles_come_from_bucket_deltas() {
        let view = ServerView::between(&Scrape::parse(BEFORE, None), &Scrape::parse(AFTER, None));
        // Deltas: 50 in (0, 1 ms], 40 in (1, 10 ms], 10 above. p50 is the 50th of 100 samples:
        // the top of the first bucket.
        let p50 = view.jitter_p50_ms.expect("samples");
        assert!((p50 - 1.0).abs() < 1e-9, "{p50}");
        // p95 falls in +Inf: reported as the highest finite bound.
        assert_eq!(view.jitter_p95_ms, Some(10.0));
        assert_eq!(view.delivery_p50_ms, None, "no delivery samples at all");
    }

    #[test]
    fn a_station_filter_keeps_only_that_station() {
        let view = ServerView::between(
            &Scrape::parse(BEFORE, Some("b")),
            &Scrape::parse(AFTER, Some("b")),
        );
        assert_eq!(view.ring_underruns, 1.0);
        assert_eq!(view.chunks_dropped, 0.0);
        assert_eq!(view.disconnections.get("client_closed"), None);
        assert_eq!(view.forced_disconnections(), 2.0);
        assert_eq!(view.jitter_p50_ms, None);
    }

    #[test]
    fn histogram_quantile_interpolates_like_prometheus() {
        let buckets = [(0.1, 10.0), (0.2, 30.0), (f64::INFINITY, 30.0)];
        // Rank 20 of 30: halfway through the second bucket.
        let q = histogram_quantile(2.0 / 3.0, &buckets).expect("samples");
        assert!((q - 0.15).abs() < 1e-9, "{q}");
        assert_eq!(histogram_quantile(0.5, &[(f64::INFINITY, 0.0)]), None);
    }
}
