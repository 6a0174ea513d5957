//! Live control of a station's music: who may change it ([`access`]), how often ([`rate`]), and
//! [`StationControl`], which validates a change, hands it to the synthesis thread and reports
//! where it took effect.
//!
//! The WebSocket `control` message and `POST /api/stations/{name}/control` both end up in
//! [`StationControl::handle`], so they behave identically.

pub mod access;
pub mod link;
pub mod rate;

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Mutex;
use std::thread::Thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::labels::ErrorCode;
use crate::synth::params::{MusicParams, ParamChange, ParamError, Preset};
use crate::synth::ControlEntry;
use crate::telemetry::metrics::{ControlMetrics, ControlResult};
pub use access::{AccessError, ControlAccess};
use link::{ControlOutbox, ControlReply, ControlRequest, NotScheduled};
pub use rate::TokenBucket;

/// Control-log entries kept for `GET .../control` and replay. Older ones are dropped; each entry is
/// self-contained, so the kept tail replays exactly from its first entry on once the release tails
/// of the dropped ones have ended (at most the longest note tail, 1.6 s).
pub const LOG_LIMIT: usize = 256;

/// How long a change may wait for the synthesis thread: one it sees later is refused, not applied.
const REQUEST_DEADLINE: Duration = Duration::from_secs(2);
/// The requester waits this much longer than the deadline before it answers `unavailable`, so a
/// change the thread took just before the deadline still gets its acknowledgement: the thread
/// checks the deadline, schedules and replies in one step without blocking.
const REPLY_GRACE: Duration = Duration::from_millis(250);

/// Fields of a control body that are not music parameters.
const ENVELOPE_FIELDS: [&str; 3] = ["type", "id", "token"];

/// Where and when a change takes effect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ControlAck {
    pub station: String,
    /// Stream position (frame index) of the first frame with the new parameters: a bar line.
    pub position: u64,
    /// The bar number of that position on the station's musical clock.
    pub bar: u64,
    /// Wall-clock time (Unix ms) at which that position is released to listeners.
    pub effective_unix_ms: u64,
    /// All parameters in effect from `position`.
    pub params: MusicParams,
}

/// A change was refused; nothing was applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("too many control messages; try again in {} ms", retry_after.as_millis())]
    RateLimited { retry_after: Duration },
    #[error("invalid control: {0}")]
    Invalid(#[from] ParamError),
    #[error("too many changes in flight for this station; try again after the next bar")]
    Busy,
    #[error("the station's synthesis is not answering")]
    Unavailable,
}

impl ControlError {
    /// The `error` code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControlError::Access(_) => ErrorCode::Unauthorized,
            ControlError::RateLimited { .. } => ErrorCode::RateLimited,
            ControlError::Invalid(_) => ErrorCode::InvalidControl,
            ControlError::Busy | ControlError::Unavailable => ErrorCode::Unavailable,
        }
    }

    /// The offending field, for invalid changes.
    pub fn field(&self) -> Option<&str> {
        match self {
            ControlError::Invalid(e) => Some(&e.field),
            _ => None,
        }
    }

    fn result(&self) -> ControlResult {
        match self {
            ControlError::Access(_) => ControlResult::Unauthorized,
            ControlError::RateLimited { .. } => ControlResult::RateLimited,
            ControlError::Invalid(_) => ControlResult::Invalid,
            ControlError::Busy | ControlError::Unavailable => ControlResult::Unavailable,
        }
    }
}

/// A station's control state, as `GET /api/stations/{name}/control` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ControlSnapshot {
    pub station: String,
    pub seed: u64,
    /// The preset the station was configured with, if any.
    pub preset: Option<Preset>,
    /// The newest parameters (possibly pending until `effective_position`).
    pub params: MusicParams,
    pub effective_position: u64,
    pub sample_rate: u32,
    /// The control log: replaying it with the seed reproduces the stream exactly.
    pub log: Vec<ControlEntry>,
}

struct ControlState {
    params: MusicParams,
    log: VecDeque<ControlEntry>,
}

struct Link {
    outbox: ControlOutbox,
    next_id: u64,
}

/// One station's control endpoint.
pub struct StationControl {
    pub station: String,
    seed: u64,
    preset: Option<Preset>,
    sample_rate: u32,
    /// Serialises changes: one request in flight per station keeps the log in order.
    link: tokio::sync::Mutex<Link>,
    /// Read by `GET` without waiting for a change in flight.
    state: Mutex<ControlState>,
    /// Wakes the synthesis thread so a change is scheduled at once, not at its next tick.
    waker: Option<Thread>,
    /// The REST endpoint's budget (WebSocket connections each have their own).
    rest_bucket: Mutex<TokenBucket>,
    metrics: ControlMetrics,
}

impl StationControl {
    /// `initial`: the log entry the synthesis thread's timeline starts with.
    pub fn new(
        station: String,
        seed: u64,
        preset: Option<Preset>,
        sample_rate: u32,
        initial: ControlEntry,
        outbox: ControlOutbox,
        waker: Option<Thread>,
    ) -> Self {
        let metrics = ControlMetrics::new(&station);
        Self {
            station,
            seed,
            preset,
            sample_rate,
            link: tokio::sync::Mutex::new(Link { outbox, next_id: 1 }),
            state: Mutex::new(ControlState {
                params: initial.params,
                log: VecDeque::from([initial]),
            }),
            waker,
            rest_bucket: Mutex::new(TokenBucket::for_control()),
            metrics,
        }
    }

    /// The current state and control log.
    pub fn snapshot(&self) -> ControlSnapshot {
        let state = self.lock_state();
        ControlSnapshot {
            station: self.station.clone(),
            seed: self.seed,
            preset: self.preset,
            params: state.params,
            effective_position: state.log.back().map_or(0, |e| e.position),
            sample_rate: self.sample_rate,
            log: state.log.iter().copied().collect(),
        }
    }

    pub fn params(&self) -> MusicParams {
        self.lock_state().params
    }

    /// A control request from `peer`: checks access, then `bucket` (or the station's REST budget
    /// when `None`), validates `body` (a JSON object; `type`, `id` and `token` are ignored here),
    /// and applies it. Records the outcome in the metrics.
    ///
    /// # Errors
    /// [`ControlError`]; nothing was applied.
    pub async fn handle(
        &self,
        access: &ControlAccess,
        peer: IpAddr,
        token: Option<&str>,
        body: &Map<String, Value>,
        bucket: Option<&mut TokenBucket>,
    ) -> Result<ControlAck, ControlError> {
        let outcome = async {
            access.check(peer, token)?;
            let now = Instant::now();
            let allowed = match bucket {
                Some(bucket) => bucket.try_take(now),
                None => self
                    .rest_bucket
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .try_take(now),
            };
            allowed.map_err(|retry_after| ControlError::RateLimited { retry_after })?;
            let mut params = body.clone();
            for field in ENVELOPE_FIELDS {
                params.remove(field);
            }
            let change = ParamChange::from_json(&params)?;
            self.apply(&change).await
        }
        .await;
        let result = match &outcome {
            Ok(_) => ControlResult::Applied,
            Err(e) => e.result(),
        };
        self.metrics.count(result);
        outcome
    }

    /// Applies a validated change at the next bar line the synthesis thread has not rendered yet.
    ///
    /// # Errors
    /// [`ControlError::Busy`] or [`ControlError::Unavailable`] when the synthesis thread cannot
    /// take it.
    pub async fn apply(&self, change: &ParamChange) -> Result<ControlAck, ControlError> {
        let mut link = self.link.lock().await;
        self.drain_replies(&mut link);
        let params = change.apply(&self.params());
        let id = link.next_id;
        link.next_id += 1;
        let deadline = Instant::now() + REQUEST_DEADLINE;
        link.outbox
            .requests
            .push(ControlRequest {
                id,
                params,
                deadline: deadline.into_std(),
            })
            .map_err(|_| ControlError::Busy)?;
        if let Some(waker) = &self.waker {
            waker.unpark();
        }
        let give_up = deadline + REPLY_GRACE;
        loop {
            if let Some(reply) = self.drain_replies(&mut link).filter(|r| r.id == id) {
                let entry = reply.result.map_err(|refused| match refused {
                    NotScheduled::Full => ControlError::Busy,
                    NotScheduled::Expired => ControlError::Unavailable,
                })?;
                return Ok(ControlAck {
                    station: self.station.clone(),
                    position: entry.position,
                    bar: entry.bar,
                    effective_unix_ms: entry.position * 1000 / self.sample_rate as u64,
                    params: entry.params,
                });
            }
            if Instant::now() >= give_up {
                tracing::warn!(station = %self.station, "synthesis thread did not answer a control change; it will refuse it when it does");
                return Err(ControlError::Unavailable);
            }
            link.outbox.wait_for_reply(give_up).await;
        }
    }

    /// Records every reply waiting in the link (late ones included) and returns the last.
    fn drain_replies(&self, link: &mut Link) -> Option<ControlReply> {
        let mut last = None;
        while let Ok(reply) = link.outbox.replies.pop() {
            if let Ok(entry) = reply.result {
                self.record(entry);
            }
            last = Some(reply);
        }
        last
    }

    fn record(&self, entry: ControlEntry) {
        let mut state = self.lock_state();
        state.params = entry.params;
        match state.log.back_mut() {
            // Several changes before the same bar line merge into one entry.
            Some(last) if last.position == entry.position => *last = entry,
            _ => state.log.push_back(entry),
        }
        while state.log.len() > LOG_LIMIT {
            state.log.pop_front();
        }
        tracing::info!(
            station = %self.station,
            position = entry.position,
            bar = entry.bar,
            bpm = entry.params.bpm,
            key = entry.params.key.name(),
            mode = entry.params.mode.name(),
            "music change scheduled"
        );
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        // The state is always consistent between statements: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}
