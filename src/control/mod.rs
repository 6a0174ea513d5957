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
use std::sync::{Arc, Mutex};
use std::thread::Thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::clock::unix_nanos;
use crate::labels::ErrorCode;
use crate::state::{ControlLog, Epoch, Recovery};
use crate::synth::params::{MusicParams, ParamChange, ParamError, Preset};
use crate::synth::{ControlEntry, Timeline};
use crate::telemetry::metrics::{ControlMetrics, ControlResult};
pub use access::{AccessError, ControlAccess};
use link::{ControlOutbox, ControlReply, ControlRequest, NotScheduled};
pub use rate::TokenBucket;

/// Durable records after which the log is compacted to the history still needed.
pub const COMPACT_AFTER_RECORDS: usize = 1024;

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
    #[error("the change could not be made durable (the control log cannot be written); nothing was applied")]
    LogUnavailable,
}

impl ControlError {
    /// The `error` code clients see.
    pub fn code(&self) -> ErrorCode {
        match self {
            ControlError::Access(_) => ErrorCode::Unauthorized,
            ControlError::RateLimited { .. } => ErrorCode::RateLimited,
            ControlError::Invalid(_) => ErrorCode::InvalidControl,
            ControlError::Busy | ControlError::Unavailable | ControlError::LogUnavailable => {
                ErrorCode::Unavailable
            }
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
            ControlError::Busy | ControlError::Unavailable | ControlError::LogUnavailable => {
                ControlResult::Unavailable
            }
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
    /// The station's epoch: the log below stays valid for resuming while it is unchanged.
    pub epoch: Epoch,
    /// The control log: replaying it with the seed reproduces the stream exactly.
    pub log: Vec<ControlEntry>,
}

struct ControlState {
    params: MusicParams,
    /// The history still needed (back to the oldest position a listener can ask for), trimmed at
    /// each compaction.
    log: VecDeque<ControlEntry>,
    /// The synthesis thread's timeline as it will be once every acknowledged change landed: where
    /// the next change goes is planned on it.
    planner: Timeline,
}

/// How a station's control starts: its identity, its replayed history and its durable log.
pub struct ControlSetup {
    pub station: String,
    pub seed: u64,
    pub preset: Option<Preset>,
    pub sample_rate: u32,
    /// The history replayed at start (never empty).
    pub history: Vec<ControlEntry>,
    pub log: ControlLog,
    /// What the start-up replay repaired (counted once the metrics exist).
    pub recovered: Option<Recovery>,
    /// A change lands at a bar line at least this many frames after the live edge (wall clock):
    /// past everything synthesis can have rendered, plus time to make it durable.
    pub lead_frames: u64,
    /// History kept behind the live edge at compaction (the resume window and more), in frames.
    pub retain_frames: u64,
    /// The next position the station's pacer releases.
    pub live_position: Box<dyn Fn() -> u64 + Send + Sync>,
}

/// A record for the durable log.
#[derive(Clone, Copy)]
enum Durable {
    Entry(ControlEntry),
    Revoke(u64),
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
    epoch: Epoch,
    lead_frames: u64,
    retain_frames: u64,
    live_position: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Serialises changes: one request in flight per station keeps the log in order.
    link: tokio::sync::Mutex<Link>,
    /// Read by `GET` without waiting for a change in flight.
    state: Mutex<ControlState>,
    /// Written only with `link` held (one change at a time), off the async threads.
    durable: Arc<Mutex<ControlLog>>,
    /// A refused change could not be revoked: the log holds a change that never sounded, so no
    /// further change is accepted until the server restarts (and the operator sees the alert).
    log_poisoned: std::sync::atomic::AtomicBool,
    /// Wakes the synthesis thread so a change is scheduled at once, not at its next tick.
    waker: Option<Thread>,
    /// The REST endpoint's budget (WebSocket connections each have their own).
    rest_bucket: Mutex<TokenBucket>,
    metrics: ControlMetrics,
}

impl StationControl {
    /// # Errors
    /// The replayed history does not form a timeline (the log validates it, so this means a bug).
    pub fn new(
        setup: ControlSetup,
        outbox: ControlOutbox,
        waker: Option<Thread>,
    ) -> Result<Self, crate::synth::timeline::LogError> {
        let metrics = ControlMetrics::new(&setup.station);
        let planner = Timeline::from_log(setup.seed, setup.sample_rate, &setup.history)?;
        let params = planner.latest_entry().params;
        metrics.log_bytes.set(setup.log.bytes() as f64);
        if let Some(recovery) = setup.recovered {
            metrics.recovered(recovery);
        }
        Ok(Self {
            station: setup.station,
            seed: setup.seed,
            preset: setup.preset,
            sample_rate: setup.sample_rate,
            epoch: setup.log.epoch().clone(),
            lead_frames: setup.lead_frames,
            retain_frames: setup.retain_frames,
            live_position: setup.live_position,
            link: tokio::sync::Mutex::new(Link { outbox, next_id: 1 }),
            state: Mutex::new(ControlState {
                params,
                log: setup.history.into(),
                planner,
            }),
            durable: Arc::new(Mutex::new(setup.log)),
            log_poisoned: std::sync::atomic::AtomicBool::new(false),
            waker,
            rest_bucket: Mutex::new(TokenBucket::for_control()),
            metrics,
        })
    }

    pub fn epoch(&self) -> &Epoch {
        &self.epoch
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
            epoch: self.epoch.clone(),
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
        self: &Arc<Self>,
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
            self.apply(change).await
        }
        .await;
        let result = match &outcome {
            Ok(_) => ControlResult::Applied,
            Err(e) => e.result(),
        };
        self.metrics.count(result);
        outcome
    }

    /// Applies a validated change at the first bar line past what synthesis can have rendered:
    /// plans where it lands, makes it durable, then hands it to the synthesis thread, which puts
    /// it at exactly that position. Acknowledged only once both are done.
    ///
    /// # Errors
    /// [`ControlError::Busy`], [`ControlError::Unavailable`] when the synthesis thread cannot
    /// take it; [`ControlError::LogUnavailable`] when it cannot be made durable. Nothing was
    /// applied in every case.
    pub async fn apply(self: &Arc<Self>, change: ParamChange) -> Result<ControlAck, ControlError> {
        // Runs to its end even when the caller goes away (a client that disconnects mid-change):
        // a change made durable must be placed or revoked, and its reply recorded.
        let this = Arc::clone(self);
        tokio::spawn(async move { this.apply_to_completion(&change).await })
            .await
            .unwrap_or(Err(ControlError::Unavailable))
    }

    async fn apply_to_completion(&self, change: &ParamChange) -> Result<ControlAck, ControlError> {
        let mut link = self.link.lock().await;
        if self.log_poisoned.load(std::sync::atomic::Ordering::Acquire) {
            return Err(ControlError::LogUnavailable);
        }
        self.drain_replies(&mut link);
        let not_before = self.live_edge_frames() + self.lead_frames;
        let (entry, planned) = {
            let state = self.lock_state();
            let params = change.apply(&state.params);
            let mut planned = state.planner.clone();
            let entry = planned
                .schedule(params, not_before)
                .map_err(|_| ControlError::Busy)?;
            (entry, planned)
        };
        self.make_durable(Durable::Entry(entry)).await?;
        let id = link.next_id;
        link.next_id += 1;
        let deadline = Instant::now() + REQUEST_DEADLINE;
        let pushed = link.outbox.requests.push(ControlRequest {
            id,
            entry,
            deadline: deadline.into_std(),
        });
        if pushed.is_err() {
            self.revoke(entry).await;
            return Err(ControlError::Busy);
        }
        if let Some(waker) = &self.waker {
            waker.unpark();
        }
        let give_up = deadline + REPLY_GRACE;
        loop {
            if let Some(reply) = self.drain_replies(&mut link).filter(|r| r.id == id) {
                return match reply.result {
                    Ok(entry) => {
                        self.record(entry, planned);
                        self.compact_if_due().await;
                        Ok(ControlAck {
                            station: self.station.clone(),
                            position: entry.position,
                            bar: entry.bar,
                            effective_unix_ms: entry.position * 1000 / self.sample_rate as u64,
                            params: entry.params,
                        })
                    }
                    Err(refused) => {
                        self.revoke(entry).await;
                        Err(match refused {
                            NotScheduled::Full => ControlError::Busy,
                            NotScheduled::Expired | NotScheduled::Late => ControlError::Unavailable,
                        })
                    }
                };
            }
            if Instant::now() >= give_up {
                tracing::warn!(station = %self.station, "synthesis thread did not answer a control change; it will refuse it when it does");
                self.revoke(entry).await;
                return Err(ControlError::Unavailable);
            }
            link.outbox.wait_for_reply(give_up).await;
        }
    }

    /// The next position the pacer releases, in frames: by the wall clock (stream position 0 is
    /// the Unix epoch) or the pacer's own, whichever is further (before the first release, and
    /// after a step of the wall clock back, the pacer's is).
    fn live_edge_frames(&self) -> u64 {
        self.wall_clock_frames().max((self.live_position)())
    }

    /// The oldest position a listener can still be streaming: the nearer of the two clocks (after
    /// a step of the wall clock forward, the pacer's).
    fn oldest_live_frames(&self) -> u64 {
        self.wall_clock_frames().min((self.live_position)())
    }

    fn wall_clock_frames(&self) -> u64 {
        (unix_nanos() as u128 * self.sample_rate as u128 / 1_000_000_000) as u64
    }

    /// Appends a record and waits until it is on disk (off the async threads: an fsync blocks).
    async fn make_durable(&self, record: Durable) -> Result<(), ControlError> {
        let log = Arc::clone(&self.durable);
        let write = move || {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            let appended = match record {
                Durable::Entry(entry) => log.append_entry(entry),
                Durable::Revoke(position) => log.append_revoke(position),
            };
            appended.map(|a| (a, log.bytes()))
        };
        let written = if self.lock_log().is_durable() {
            tokio::task::spawn_blocking(write)
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
        } else {
            write()
        };
        match written {
            Ok((appended, bytes)) => {
                self.metrics.log_appends.increment(1);
                self.metrics
                    .log_append_duration
                    .record(appended.took.as_secs_f64());
                self.metrics.log_bytes.set(bytes as f64);
                Ok(())
            }
            Err(error) => {
                self.metrics.log_write_errors.increment(1);
                tracing::error!(station = %self.station, %error, "the control log cannot be written: control changes are refused");
                Err(ControlError::LogUnavailable)
            }
        }
    }

    /// Marks a durable change that will never sound, so a replay leaves it out. When even that
    /// cannot be written, the log no longer says what sounded: further changes are refused.
    async fn revoke(&self, entry: ControlEntry) {
        // The failure itself is counted and logged by `make_durable`; the caller's error stands.
        if self
            .make_durable(Durable::Revoke(entry.position))
            .await
            .is_err()
        {
            self.log_poisoned
                .store(true, std::sync::atomic::Ordering::Release);
            tracing::error!(station = %self.station, position = entry.position, "a refused change could not be revoked in the control log; no further changes until the log can be written and the server restarts");
        }
    }

    /// Rewrites the log as the history still needed once it has grown past
    /// [`COMPACT_AFTER_RECORDS`].
    async fn compact_if_due(&self) {
        if self.lock_log().records() <= COMPACT_AFTER_RECORDS {
            return;
        }
        let oldest_needed = self.oldest_live_frames().saturating_sub(self.retain_frames);
        let kept: Vec<ControlEntry> = {
            let mut state = self.lock_state();
            let mut history = match Timeline::from_log(
                self.seed,
                self.sample_rate,
                state.log.make_contiguous(),
            ) {
                Ok(history) => history,
                Err(error) => {
                    tracing::error!(station = %self.station, %error, "control history is not a timeline; not compacted");
                    return;
                }
            };
            history.prune(oldest_needed);
            let kept: Vec<ControlEntry> = history.log().collect();
            state.log = kept.iter().copied().collect();
            kept
        };
        let log = Arc::clone(&self.durable);
        let compacted = tokio::task::spawn_blocking(move || {
            let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
            log.compact(&kept).map(|()| log.bytes())
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        match compacted {
            Ok(bytes) => {
                self.metrics.log_compactions.increment(1);
                self.metrics.log_bytes.set(bytes as f64);
                tracing::info!(station = %self.station, bytes, "control log compacted");
            }
            Err(error) => {
                self.metrics.log_write_errors.increment(1);
                tracing::error!(station = %self.station, %error, "control log compaction failed; the log keeps growing");
            }
        }
    }

    /// Records every reply waiting in the link (late ones included) and returns the last.
    fn drain_replies(&self, link: &mut Link) -> Option<ControlReply> {
        let mut last = None;
        while let Ok(reply) = link.outbox.replies.pop() {
            last = Some(reply);
        }
        last
    }

    fn record(&self, entry: ControlEntry, planned: Timeline) {
        let mut state = self.lock_state();
        state.params = entry.params;
        state.planner = planned;
        match state.log.back_mut() {
            // Several changes before the same bar line merge into one entry.
            Some(last) if last.position == entry.position => *last = entry,
            _ => state.log.push_back(entry),
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

    fn lock_log(&self) -> std::sync::MutexGuard<'_, ControlLog> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_state(&self) -> std::sync::MutexGuard<'_, ControlState> {
        // The state is always consistent between statements: a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LogIdentity;

    #[tokio::test]
    async fn a_change_that_cannot_be_made_durable_is_refused_and_not_applied() {
        let sample_rate = 48_000;
        let start = Timeline::new(3, sample_rate, MusicParams::from_seed(3)).latest_entry();
        let identity = LogIdentity {
            station: "full-disk".into(),
            seed: 3,
            sample_rate,
            chunk_frames: 4800,
            preset: None,
        };
        let (outbox, mut inbox) = link::control_link(4).unwrap();
        let control = StationControl::new(
            ControlSetup {
                station: "full-disk".into(),
                seed: 3,
                preset: None,
                sample_rate,
                history: vec![start],
                log: ControlLog::failing_for_tests(identity),
                recovered: None,
                lead_frames: 24_000,
                retain_frames: 48_000,
                live_position: Box::new(|| 0),
            },
            outbox,
            None,
        )
        .map(Arc::new)
        .unwrap();
        let mut body = Map::new();
        body.insert("bpm".into(), Value::from(150));
        let change = ParamChange::from_json(&body).unwrap();
        let refused = control.apply(change).await.unwrap_err();
        assert_eq!(refused, ControlError::LogUnavailable);
        assert_eq!(refused.code(), ErrorCode::Unavailable);
        // Nothing reached the synthesis thread, and the station's state is unchanged.
        assert!(inbox.pop_request().is_none());
        let snapshot = control.snapshot();
        assert_eq!(snapshot.log, vec![start]);
        assert_eq!(snapshot.params, start.params);
    }
}
