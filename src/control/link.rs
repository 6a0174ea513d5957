//! The control link between a station's control endpoint (async) and its synthesis thread
//! (real time): two lock-free rings, requests one way and replies the other, and a doorbell that
//! wakes the waiting requester without a lock, an allocation or a polling timer.

use std::time::{Duration, Instant};

use crate::synth::{ControlEntry, PlaceError};

/// A durable parameter change on its way to the synthesis thread, for an exact position.
#[derive(Clone, Copy, Debug)]
pub struct ControlRequest {
    pub id: u64,
    pub entry: ControlEntry,
    /// The synthesis thread refuses the change if it sees it after this: the requester has
    /// stopped waiting by then (it waits a little longer), so it is never applied behind its back.
    pub deadline: Instant,
}

/// Why the synthesis thread did not schedule a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotScheduled {
    /// Too many changes are still waiting for their bar line.
    Full,
    /// The request reached the thread after its deadline.
    Expired,
    /// The thread had already rendered the position.
    Late,
}

impl From<PlaceError> for NotScheduled {
    fn from(error: PlaceError) -> Self {
        match error {
            PlaceError::Full => NotScheduled::Full,
            PlaceError::Past | PlaceError::OffGrid => NotScheduled::Late,
        }
    }
}

/// What the synthesis thread did with a [`ControlRequest`]: where the change takes effect.
#[derive(Clone, Copy, Debug)]
pub struct ControlReply {
    pub id: u64,
    pub result: Result<ControlEntry, NotScheduled>,
}

/// The synthesis thread's end of the control link (two lock-free rings and a doorbell).
pub struct ControlInbox {
    requests: rtrb::Consumer<ControlRequest>,
    replies: rtrb::Producer<ControlReply>,
    doorbell: Doorbell,
}

impl ControlInbox {
    /// The next waiting change, if any. Lock-free and allocation-free.
    pub fn pop_request(&mut self) -> Option<ControlRequest> {
        self.requests.pop().ok()
    }

    /// Tells the control side where change `id` landed, and wakes it. The reply ring is as large
    /// as the request ring and drained by the requester, so this cannot fail in practice; if it
    /// ever did, the requester times out rather than the synthesis thread blocking.
    pub fn reply(&mut self, id: u64, result: Result<ControlEntry, NotScheduled>) {
        let _ = self.replies.push(ControlReply { id, result });
        self.doorbell.ring();
    }
}

/// Wakes the async control side from the synthesis thread without a lock or an allocation: one
/// byte written to a non-blocking socket pair (a syscall that never blocks). The tokio side waits
/// for the socket to become readable, so no task polls on a timer.
struct Doorbell(std::os::unix::net::UnixStream);

impl Doorbell {
    fn ring(&self) {
        use std::io::Write;
        // A full socket buffer means a wake-up is already pending: nothing is lost.
        let _ = (&self.0).write(&[1]);
    }
}

/// The control side's end of the control link.
pub struct ControlOutbox {
    pub requests: rtrb::Producer<ControlRequest>,
    pub replies: rtrb::Consumer<ControlReply>,
    bell: BellReceiver,
}

/// The async end of the doorbell; registered with tokio on first use (inside the runtime).
enum BellReceiver {
    Unregistered(std::os::unix::net::UnixStream),
    Registered(tokio::net::UnixStream),
    /// Registration failed: the waiter falls back to short sleeps.
    Broken,
}

impl ControlOutbox {
    /// Waits until the synthesis thread rang since the last call, or `until` passes. Spurious
    /// wake-ups are possible; the caller checks the reply ring again either way.
    pub async fn wait_for_reply(&mut self, until: tokio::time::Instant) {
        if let BellReceiver::Unregistered(stream) = &self.bell {
            self.bell = match stream
                .try_clone()
                .and_then(tokio::net::UnixStream::from_std)
            {
                Ok(stream) => BellReceiver::Registered(stream),
                Err(error) => {
                    tracing::warn!("control doorbell unavailable, polling instead: {error}");
                    BellReceiver::Broken
                }
            };
        }
        match &self.bell {
            BellReceiver::Registered(stream) => {
                match tokio::time::timeout_at(until, stream.readable()).await {
                    Ok(Ok(())) => {
                        let mut drained = [0u8; 64];
                        while matches!(stream.try_read(&mut drained), Ok(n) if n > 0) {}
                    }
                    // The reactor is gone: wait by the clock from now on instead of spinning.
                    Ok(Err(_)) => self.bell = BellReceiver::Broken,
                    Err(_) => {}
                }
            }
            _ => {
                let nap = tokio::time::Instant::now() + Duration::from_millis(5);
                tokio::time::sleep_until(nap.min(until)).await;
            }
        }
    }
}

/// A control link with room for `capacity` changes in flight each way.
///
/// The control side decides where a change lands (a bar line past anything synthesis can have
/// rendered) and makes it durable first; the synthesis thread puts it at exactly that position,
/// or refuses it if it has rendered that far already, so a change never sounds partly.
///
/// # Errors
/// The OS refused the doorbell's socket pair.
pub fn control_link(capacity: usize) -> std::io::Result<(ControlOutbox, ControlInbox)> {
    let (request_tx, request_rx) = rtrb::RingBuffer::new(capacity);
    let (reply_tx, reply_rx) = rtrb::RingBuffer::new(capacity);
    let (ringer, receiver) = std::os::unix::net::UnixStream::pair()?;
    ringer.set_nonblocking(true)?;
    receiver.set_nonblocking(true)?;
    Ok((
        ControlOutbox {
            requests: request_tx,
            replies: reply_rx,
            bell: BellReceiver::Unregistered(receiver),
        },
        ControlInbox {
            requests: request_rx,
            replies: reply_tx,
            doorbell: Doorbell(ringer),
        },
    ))
}
