//! The fragment table: what NAT the first fragment of a datagram got, for its later fragments.
//!
//! Later fragments carry no ports, so they cannot be matched to a connection; the first
//! fragment records its connection's `Nat` here under (src, dst, proto, IP id) and the others
//! look it up. Bounded (the oldest record is overwritten) and timed out like Linux's
//! `ipfrag_time`, so a flood of first fragments costs a fixed amount of memory.

use super::Nat;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Records kept by default.
pub const DEFAULT_FRAG_CAPACITY: usize = 4096;
/// How long a record lives after its first fragment (Linux's `ipfrag_time`).
pub const FRAG_TIMEOUT: Duration = Duration::from_secs(30);

/// The datagram a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    pub id: u16,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    key: FragKey,
    nat: Nat,
    recorded: Instant,
}

#[derive(Debug)]
struct Inner {
    index: HashMap<FragKey, usize, foldhash::fast::RandomState>,
    /// Records in insertion order, written round-robin: the slot at `next` is the oldest.
    ring: Vec<Option<Record>>,
    next: usize,
}

/// Shared by all workers; one lock, held for one record or lookup (fragments are rare).
#[derive(Debug)]
pub struct FragTable {
    inner: Mutex<Inner>,
    timeout: Duration,
}

impl FragTable {
    /// A table of `capacity` records (at least 1) timed out after `timeout`.
    pub fn new(capacity: usize, timeout: Duration) -> FragTable {
        let capacity = capacity.max(1);
        let mut index = HashMap::with_hasher(foldhash::fast::RandomState::default());
        index.reserve(capacity);
        FragTable {
            inner: Mutex::new(Inner {
                index,
                ring: vec![None; capacity],
                next: 0,
            }),
            timeout,
        }
    }

    /// Remembers `nat` for the later fragments of the datagram `key` (its first fragment).
    pub fn record(&self, key: FragKey, nat: Nat, now: Instant) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let inner = &mut *inner;
        if let Some(&slot) = inner.index.get(&key) {
            inner.ring[slot] = Some(Record {
                key,
                nat,
                recorded: now,
            });
            return;
        }
        let slot = inner.next;
        inner.next = (slot + 1) % inner.ring.len();
        if let Some(oldest) = inner.ring[slot].take() {
            inner.index.remove(&oldest.key);
        }
        inner.ring[slot] = Some(Record {
            key,
            nat,
            recorded: now,
        });
        inner.index.insert(key, slot);
    }

    /// The NAT of the datagram `key`, if its first fragment was recorded and has not timed out.
    /// None: the caller drops the fragment (`fragment_before_first`).
    pub fn lookup(&self, key: &FragKey, now: Instant) -> Option<Nat> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = *inner.index.get(key)?;
        let record = inner.ring[slot]?;
        if now.saturating_duration_since(record.recorded) < self.timeout {
            return Some(record.nat);
        }
        inner.index.remove(key);
        inner.ring[slot] = None;
        None
    }

    /// Records held (expired ones included until overwritten or looked up).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .index
            .len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for FragTable {
    fn default() -> FragTable {
        FragTable::new(DEFAULT_FRAG_CAPACITY, FRAG_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::Endpoint;

    fn key(id: u16) -> FragKey {
        FragKey {
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 96, 0, 1),
            proto: 17,
            id,
        }
    }

    fn dnat(last: u8) -> Nat {
        Nat {
            src: None,
            dst: Some(Endpoint {
                ip: Ipv4Addr::new(10, 0, 1, last),
                port: 53,
            }),
        }
    }

    #[test]
    fn later_fragments_get_the_first_fragments_nat() {
        let t = FragTable::default();
        let now = Instant::now();
        t.record(key(7), dnat(2), now);
        assert_eq!(
            t.lookup(&key(7), now + Duration::from_secs(1)),
            Some(dnat(2))
        );
        assert_eq!(
            t.lookup(&key(8), now),
            None,
            "a fragment before its first is unknown"
        );
    }

    #[test]
    fn records_time_out_after_thirty_seconds() {
        let t = FragTable::default();
        let now = Instant::now();
        t.record(key(1), dnat(2), now);
        assert!(t.lookup(&key(1), now + Duration::from_secs(29)).is_some());
        assert_eq!(t.lookup(&key(1), now + FRAG_TIMEOUT), None);
        assert!(t.is_empty(), "an expired record found is dropped");
    }

    #[test]
    fn table_is_bounded_and_overwrites_the_oldest() {
        let t = FragTable::new(4, FRAG_TIMEOUT);
        let now = Instant::now();
        for id in 0..10 {
            t.record(key(id), dnat(id as u8), now);
        }
        assert_eq!(t.len(), 4);
        assert_eq!(t.lookup(&key(5), now), None, "oldest ones evicted");
        for id in 6..10 {
            assert_eq!(t.lookup(&key(id), now), Some(dnat(id as u8)));
        }
    }

    #[test]
    fn recording_a_key_again_updates_it_in_place() {
        let t = FragTable::new(2, FRAG_TIMEOUT);
        let now = Instant::now();
        t.record(key(1), dnat(1), now);
        t.record(key(1), dnat(9), now);
        t.record(key(2), dnat(2), now);
        assert_eq!(t.lookup(&key(1), now), Some(dnat(9)));
        assert_eq!(t.lookup(&key(2), now), Some(dnat(2)));
    }
}
