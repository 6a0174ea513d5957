//! One HTTP mount listener: the prelude, the newest chunks, then every chunk as it is released,
//! written into the response body.
//!
//! The body is fed through a channel of one chunk, so a player that stops reading fills it and
//! the next write waits: past the send timeout the listener is dropped (`send_timeout`), as a
//! WebSocket listener is. One that reads too slowly falls behind the station's queue, skips whole
//! pages to the live edge (counted) and, skipping too often, is disconnected (`persistent_lag`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::{timeout, Instant};

use super::Mount;
use crate::labels::{DisconnectReason, Transport};
use crate::shutdown::stopped;
use crate::stream::hub::{Frame, Retained, StationHub};
use crate::stream::lag::{skip_to_newest, LagWindow};
use crate::stream::tally::DeliveryTally;
use crate::stream::ws::ListenerSettings;

/// Who is listening to which mount.
pub struct MountSession {
    pub station: Arc<StationHub>,
    pub mount: Mount,
    /// When the request arrived (start of the startup latency).
    pub requested_at: Instant,
}

/// Streams the mount into `body` until the listener leaves or is dropped; returns why. Records
/// the listener in the station's figures under `transport="http"`.
pub async fn serve(
    body: mpsc::Sender<Bytes>,
    session: MountSession,
    settings: ListenerSettings,
    shutdown: watch::Receiver<bool>,
) -> DisconnectReason {
    let hub = Arc::clone(&session.station);
    let metrics = &hub.metrics;
    metrics.connections(Transport::Http).increment(1.0);
    metrics.connections_total(Transport::Http).increment(1);
    hub.stats.listeners.fetch_add(1, Ordering::Relaxed);
    let connected = Instant::now();
    let reason = stream(&body, &session, settings, shutdown).await;
    metrics.connections(Transport::Http).decrement(1.0);
    metrics.disconnected(Transport::Http, reason).increment(1);
    metrics
        .connection_duration
        .record(connected.elapsed().as_secs_f64());
    hub.stats.listeners.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(station = %hub.name, mount = session.mount.extension(), reason = reason.as_str(), "mount listener left");
    reason
}

/// The newest `burst` retained frames (the newest alone when the window holds fewer).
fn burst(hub: &StationHub, latest: Option<Frame>, burst: usize) -> Vec<Frame> {
    let Some(latest) = latest else {
        return Vec::new();
    };
    let from = latest.sequence.saturating_sub(burst.max(1) as u64 - 1);
    match hub.retained_from(from) {
        Retained::Frames(frames) if !frames.is_empty() => frames,
        _ => vec![latest],
    }
}

/// Per-listener delivery state.
struct Writer<'a> {
    body: &'a mpsc::Sender<Bytes>,
    session: &'a MountSession,
    settings: ListenerSettings,
    /// The sequence of the newest chunk written.
    last_sequence: Option<u64>,
    last_write: Option<Instant>,
    /// Jitter needs two regular intervals: not after the burst or a skip.
    regular_intervals: bool,
    tally: DeliveryTally<'a>,
}

impl Writer<'_> {
    /// Writes `frame`'s page, after the prelude if it is the first. `burst`: part of the join's
    /// burst, not a delivery sample.
    async fn write(&mut self, frame: &Frame, burst: bool) -> Result<(), DisconnectReason> {
        let hub = &self.session.station;
        let mount = self.session.mount;
        // A chunk this mount's codec failed to encode is missing: the player sees a gap.
        let Some(page) = frame.mounts.get(mount) else {
            return Ok(());
        };
        if self.last_sequence.is_none() {
            let Some(setup) = hub.codec_setup(mount.codec()) else {
                return Err(DisconnectReason::ServerShutdown);
            };
            let prelude = mount.prelude(&hub.mount, setup);
            self.send(Bytes::from(prelude)).await?;
        }
        let len = page.len() as u64;
        self.send(page.clone()).await?;
        let now = Instant::now();
        let delivered = self
            .last_write
            .filter(|_| !burst)
            .map(|_| now.saturating_duration_since(frame.popped_at).as_secs_f64());
        let jitter = match self.last_write {
            None => {
                let startup = now.saturating_duration_since(self.session.requested_at);
                hub.metrics.startup.record(startup.as_secs_f64());
                None
            }
            Some(last) if self.regular_intervals && !burst => {
                let interval = now.saturating_duration_since(last).as_secs_f64();
                Some((interval - self.settings.chunk_period.as_secs_f64()).abs())
            }
            Some(_) => None,
        };
        self.tally.chunk_sent(now, len, delivered, jitter);
        self.regular_intervals = self.last_write.is_some() && !burst;
        self.last_write = Some(now);
        self.last_sequence = Some(frame.sequence);
        Ok(())
    }

    /// Hands `bytes` to the response body: at once when it has room, else within the send
    /// timeout.
    async fn send(&self, bytes: Bytes) -> Result<(), DisconnectReason> {
        let hub = &self.session.station;
        match self.body.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(DisconnectReason::ClientClosed),
            Err(mpsc::error::TrySendError::Full(bytes)) => {
                match timeout(self.settings.send_timeout, self.body.send(bytes)).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(DisconnectReason::ClientClosed),
                    Err(_) => {
                        hub.count_send_error();
                        Err(DisconnectReason::SendTimeout)
                    }
                }
            }
        }
    }

    fn sent(&self, frame: &Frame) -> bool {
        self.last_sequence
            .is_some_and(|last| frame.sequence <= last)
    }
}

async fn stream(
    body: &mpsc::Sender<Bytes>,
    session: &MountSession,
    settings: ListenerSettings,
    mut shutdown: watch::Receiver<bool>,
) -> DisconnectReason {
    let hub = &session.station;
    let (latest, mut frames) = hub.subscribe();
    let mut writer = Writer {
        body,
        session,
        settings,
        last_sequence: None,
        last_write: None,
        regular_intervals: false,
        tally: DeliveryTally::new(hub, session.mount.codec()),
    };
    let opening = burst(hub, latest, settings.mount_burst_chunks);
    let bursting = opening.len() > 1;
    for frame in &opening {
        if let Err(reason) = writer.write(frame, bursting).await {
            return reason;
        }
    }
    let mut lag = LagWindow::new(Instant::now());
    loop {
        let received = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => return DisconnectReason::ServerShutdown,
            _ = body.closed() => return DisconnectReason::ClientClosed,
            received = frames.recv() => received,
        };
        let (frame, skipped) = match received {
            Ok(frame) if writer.sent(&frame) => continue,
            Ok(frame) => (frame, false),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Fell behind: whole pages are skipped to the newest; the player sees a gap.
                let Ok(newest) = skip_to_newest(
                    &mut frames,
                    missed,
                    hub,
                    Transport::Http,
                    &mut lag,
                    settings.max_lag_skips_per_minute,
                ) else {
                    return DisconnectReason::PersistentLag;
                };
                match newest.filter(|frame| !writer.sent(frame)) {
                    Some(frame) => (frame, true),
                    None => continue,
                }
            }
            Err(broadcast::error::RecvError::Closed) => return DisconnectReason::ServerShutdown,
        };
        if let Err(reason) = writer.write(&frame, skipped).await {
            return reason;
        }
    }
}
