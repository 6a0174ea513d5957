//! Pass/fail thresholds for a load run: `--slo jitter_p95<20ms --slo gaps==0`.
//!
//! Parsed before any connection is made, so a typo fails fast instead of after a long run.

use std::fmt;

/// What a threshold measures: a count, or a percentile of a timing in the healthy group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SloMetric {
    Count(CountMetric),
    Timing(TimingMetric, Stat),
}

/// Counts a threshold can name. Group counts are over healthy (not deliberately slow) clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountMetric {
    Gaps,
    MissingChunks,
    Discontinuities,
    UnderrunFills,
    PlayoutUnderruns,
    Disconnected,
    Failed,
    Connected,
    DecodeErrors,
}

impl CountMetric {
    const ALL: [(CountMetric, &'static str); 9] = [
        (CountMetric::Gaps, "gaps"),
        (CountMetric::MissingChunks, "missing_chunks"),
        (CountMetric::Discontinuities, "discontinuities"),
        (CountMetric::UnderrunFills, "underrun_fills"),
        (CountMetric::PlayoutUnderruns, "playout_underruns"),
        (CountMetric::Disconnected, "disconnected"),
        (CountMetric::Failed, "failed"),
        (CountMetric::Connected, "connected"),
        (CountMetric::DecodeErrors, "decode_errors"),
    ];
}

/// Timings a threshold can name, each with a percentile suffix (`jitter_p95`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimingMetric {
    Jitter,
    Interarrival,
    Latency,
    Delivery,
    Startup,
}

impl TimingMetric {
    const ALL: [(TimingMetric, &'static str); 5] = [
        (TimingMetric::Jitter, "jitter"),
        (TimingMetric::Interarrival, "interarrival"),
        (TimingMetric::Latency, "latency"),
        (TimingMetric::Delivery, "delivery"),
        (TimingMetric::Startup, "startup"),
    ];
}

/// Which point of a timing's distribution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stat {
    P50,
    P90,
    P95,
    P99,
    Max,
}

impl Stat {
    const ALL: [(Stat, &'static str); 5] = [
        (Stat::P50, "p50"),
        (Stat::P90, "p90"),
        (Stat::P95, "p95"),
        (Stat::P99, "p99"),
        (Stat::Max, "max"),
    ];
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl Op {
    /// Longest spellings first, so `<=` is not read as `<`.
    const SPELLINGS: [(Op, &'static str); 6] = [
        (Op::Le, "<="),
        (Op::Ge, ">="),
        (Op::Eq, "=="),
        (Op::Ne, "!="),
        (Op::Lt, "<"),
        (Op::Gt, ">"),
    ];

    fn holds(self, actual: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => actual < threshold,
            Op::Le => actual <= threshold,
            Op::Gt => actual > threshold,
            Op::Ge => actual >= threshold,
            Op::Eq => actual == threshold,
            Op::Ne => actual != threshold,
        }
    }
}

/// One parsed threshold. Timing thresholds are held in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Slo {
    /// As the user wrote it, for the report.
    pub text: String,
    pub metric: SloMetric,
    pub op: Op,
    pub threshold: f64,
}

/// Why a `--slo` could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SloError {
    #[error("--slo {0:?}: expected KEY<OP>VALUE with OP one of <, <=, >, >=, ==, != (e.g. jitter_p95<20ms)")]
    NoOperator(String),
    #[error("--slo {text:?}: unknown key {key:?}; expected one of {known}")]
    UnknownKey {
        text: String,
        key: String,
        known: String,
    },
    #[error("--slo {text:?}: {value:?} is not a number{unit_hint}")]
    BadValue {
        text: String,
        value: String,
        unit_hint: &'static str,
    },
}

impl Slo {
    /// Parses `KEY OP VALUE`; timings take `us`, `ms` (the default) or `s`.
    ///
    /// # Errors
    /// [`SloError`] naming what is wrong and what would be accepted.
    pub fn parse(text: &str) -> Result<Self, SloError> {
        let trimmed = text.trim();
        let op_at = trimmed
            .find(['<', '>', '=', '!'])
            .ok_or_else(|| SloError::NoOperator(text.to_string()))?;
        let (key, rest) = trimmed.split_at(op_at);
        let (op, spelling) = Op::SPELLINGS
            .into_iter()
            .find(|(_, s)| rest.starts_with(s))
            .ok_or_else(|| SloError::NoOperator(text.to_string()))?;
        let key = key.trim();
        let value = rest[spelling.len()..].trim();
        let metric = parse_key(key).ok_or_else(|| SloError::UnknownKey {
            text: text.to_string(),
            key: key.to_string(),
            known: known_keys(),
        })?;
        let threshold = match metric {
            SloMetric::Count(_) => parse_number(value),
            SloMetric::Timing(..) => parse_millis(value),
        }
        .ok_or_else(|| SloError::BadValue {
            text: text.to_string(),
            value: value.to_string(),
            unit_hint: match metric {
                SloMetric::Count(_) => "",
                SloMetric::Timing(..) => " with an optional unit us, ms or s",
            },
        })?;
        Ok(Self {
            text: trimmed.to_string(),
            metric,
            op,
            threshold,
        })
    }

    /// Whether `actual` (ms for timings) meets the threshold.
    pub fn holds(&self, actual: f64) -> bool {
        self.op.holds(actual, self.threshold)
    }
}

impl fmt::Display for Slo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_key(key: &str) -> Option<SloMetric> {
    if let Some((count, _)) = CountMetric::ALL.iter().find(|(_, name)| *name == key) {
        return Some(SloMetric::Count(*count));
    }
    let (timing, stat) = key.rsplit_once('_')?;
    let (timing, _) = TimingMetric::ALL.iter().find(|(_, name)| *name == timing)?;
    let (stat, _) = Stat::ALL.iter().find(|(_, name)| *name == stat)?;
    Some(SloMetric::Timing(*timing, *stat))
}

fn known_keys() -> String {
    let counts = CountMetric::ALL.iter().map(|(_, n)| *n);
    let timings = TimingMetric::ALL
        .iter()
        .map(|(_, n)| format!("{n}_{{p50,p90,p95,p99,max}}"));
    counts
        .map(str::to_string)
        .chain(timings)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_millis(value: &str) -> Option<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1e3)
    } else {
        (value, 1.0)
    };
    parse_number(number.trim()).map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timings_with_units() {
        let slo = Slo::parse("jitter_p95<20ms").expect("valid");
        assert_eq!(
            slo.metric,
            SloMetric::Timing(TimingMetric::Jitter, Stat::P95)
        );
        assert_eq!(slo.op, Op::Lt);
        assert_eq!(slo.threshold, 20.0);
        assert_eq!(
            Slo::parse("startup_p99 <= 1.5s").expect("valid").threshold,
            1500.0
        );
        assert_eq!(
            Slo::parse("latency_max<500us").expect("valid").threshold,
            0.5
        );
        assert_eq!(
            Slo::parse("interarrival_p99<=150")
                .expect("valid")
                .threshold,
            150.0
        );
    }

    #[test]
    fn parses_counts_and_every_operator() {
        for (text, op) in [
            ("gaps==0", Op::Eq),
            ("gaps!=0", Op::Ne),
            ("connected>=1000", Op::Ge),
            ("connected>999", Op::Gt),
            ("failed<=0", Op::Le),
            ("playout_underruns<1", Op::Lt),
        ] {
            assert_eq!(Slo::parse(text).expect(text).op, op, "{text}");
        }
    }

    #[test]
    fn holds_compares_in_the_right_direction() {
        let slo = Slo::parse("jitter_p95<20ms").expect("valid");
        assert!(slo.holds(19.9));
        assert!(!slo.holds(20.0));
        let gaps = Slo::parse("gaps==0").expect("valid");
        assert!(gaps.holds(0.0));
        assert!(!gaps.holds(1.0));
    }

    #[test]
    fn bad_syntax_is_a_clear_error() {
        assert!(matches!(Slo::parse("gaps"), Err(SloError::NoOperator(_))));
        assert!(matches!(Slo::parse("gaps=0"), Err(SloError::NoOperator(_))));
        let unknown = Slo::parse("jiter_p95<20ms").expect_err("typo");
        assert!(
            unknown.to_string().contains("jitter_{p50,p90,p95,p99,max}"),
            "{unknown}"
        );
        assert!(matches!(
            Slo::parse("jitter_p42<1"),
            Err(SloError::UnknownKey { .. })
        ));
        assert!(matches!(
            Slo::parse("gaps==zero"),
            Err(SloError::BadValue { .. })
        ));
        assert!(matches!(
            Slo::parse("gaps==0ms"),
            Err(SloError::BadValue { .. })
        ));
        assert!(matches!(
            Slo::parse("jitter_p95<20 parsecs"),
            Err(SloError::BadValue { .. })
        ));
        assert!(matches!(
            Slo::parse("jitter_p95<NaN"),
            Err(SloError::BadValue { .. })
        ));
    }
}
