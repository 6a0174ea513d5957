//! How many listeners the server takes, overall and per client address.
//!
//! A slot is taken before the WebSocket upgrade (so a full server answers 503 without spending a
//! socket on a session) and given back when the [`ListenerSlot`] drops at the session's end.
//! The per-address table holds only addresses with a listener connected right now, so it stays
//! as small as the listener count. IPv6 addresses count per /64, the block one subscriber
//! usually gets; IPv4-mapped IPv6 counts as IPv4.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// No slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("the server has reached its listener limit; try again later")]
    ServerFull,
    #[error("too many listeners from this address")]
    AddressFull,
}

#[derive(Debug, Default)]
struct Taken {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The listener limits of a server and who holds a slot now.
#[derive(Debug)]
pub struct ListenerSlots {
    max_total: usize,
    /// 0: no per-address limit.
    max_per_address: usize,
    taken: Mutex<Taken>,
}

/// One listener's slot; given back on drop.
#[derive(Debug)]
pub struct ListenerSlot {
    slots: Arc<ListenerSlots>,
    address: IpAddr,
}

impl ListenerSlots {
    /// Limits of `max_total` listeners and `max_per_address` per address (0: unlimited).
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total,
            max_per_address,
            taken: Mutex::new(Taken::default()),
        })
    }

    /// Takes a slot for a listener from `peer`.
    ///
    /// # Errors
    /// [`SlotError`] naming the limit that is reached.
    pub fn take(self: &Arc<Self>, peer: IpAddr) -> Result<ListenerSlot, SlotError> {
        let address = group(peer);
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if taken.total >= self.max_total {
            return Err(SlotError::ServerFull);
        }
        let from_address = taken.per_address.entry(address).or_insert(0);
        if self.max_per_address > 0 && *from_address >= self.max_per_address {
            return Err(SlotError::AddressFull);
        }
        *from_address += 1;
        taken.total += 1;
        Ok(ListenerSlot {
            slots: Arc::clone(self),
            address,
        })
    }

    /// Listeners holding a slot.
    pub fn taken(&self) -> usize {
        self.taken.lock().map_or(0, |t| t.total)
    }

    fn give_back(&self, address: IpAddr) {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.total = taken.total.saturating_sub(1);
        if let Some(count) = taken.per_address.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                taken.per_address.remove(&address);
            }
        }
    }
}

impl Drop for ListenerSlot {
    fn drop(&mut self) {
        self.slots.give_back(self.address);
    }
}

/// The address a limit counts against: IPv4 as is, IPv6 by its /64.
fn group(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn limits_hold_and_slots_come_back() {
        let slots = ListenerSlots::new(3, 2);
        let a1 = slots.take(ip("10.0.0.1")).unwrap();
        let _a2 = slots.take(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(
            slots.take(ip("10.0.0.1")).unwrap_err(),
            SlotError::AddressFull
        );
        let _b = slots.take(ip("10.0.0.2")).unwrap();
        assert_eq!(
            slots.take(ip("10.0.0.3")).unwrap_err(),
            SlotError::ServerFull
        );
        drop(a1);
        assert_eq!(slots.taken(), 2);
        let _a3 = slots.take(ip("10.0.0.1")).unwrap();
        assert_eq!(slots.taken(), 3);
    }

    #[test]
    fn ipv6_counts_per_64_and_zero_means_unlimited_per_address() {
        let slots = ListenerSlots::new(10, 1);
        let _first = slots.take(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            slots.take(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            SlotError::AddressFull
        );
        assert!(slots.take(ip("2001:db8:1:3::1")).is_ok());
        let open = ListenerSlots::new(5, 0);
        let held: Vec<_> = (0..5)
            .map(|_| open.take(ip("127.0.0.1")).unwrap())
            .collect();
        assert_eq!(held.len(), 5);
        assert_eq!(
            open.take(ip("127.0.0.1")).unwrap_err(),
            SlotError::ServerFull
        );
    }
}
