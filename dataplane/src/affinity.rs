//! Session affinity (`sessionAffinity: ClientIP`): which endpoint a client address was sent to
//! by a Service port, kept for the Service's timeout after its last new connection, as
//! kube-proxy's `recent` match does. Shared by every worker (a client's connections can land on
//! any of them), sharded by a keyed hash, each shard a `Mutex` held for one lookup; bounded
//! (capacity reserved up front, never grows on the hot path): when a shard is full the entry
//! least recently used goes first (found by a scan of that small shard — a rare path: only a
//! new client of a full table pays it).

use foldhash::fast::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// (Service port id, client address).
type Key = (u32, Ipv4Addr);

/// (backend index in the Service port, last new connection).
type Value = (u16, Instant);

/// The affinity table.
#[derive(Debug)]
pub struct Affinity {
    shards: Box<[Mutex<HashMap<Key, Value, RandomState>>]>,
    per_shard: usize,
    hasher: RandomState,
}

impl Affinity {
    /// A table of at most about `capacity` entries.
    pub fn new(capacity: usize) -> Affinity {
        let shards = (capacity / 256).clamp(1, 64).next_power_of_two();
        let per_shard = capacity.div_ceil(shards).max(1);
        let hasher = RandomState::default();
        Affinity {
            shards: (0..shards)
                .map(|_| Mutex::new(HashMap::with_capacity_and_hasher(per_shard, hasher.clone())))
                .collect(),
            per_shard,
            hasher,
        }
    }

    fn shard(&self, key: &Key) -> &Mutex<HashMap<Key, Value, RandomState>> {
        let h = self.hasher.hash_one(key) as usize;
        &self.shards[h & (self.shards.len() - 1)]
    }

    /// The backend `client` was last sent to by Service port `service`, if that was less than
    /// `timeout` ago.
    pub fn get(
        &self,
        service: u32,
        client: Ipv4Addr,
        now: Instant,
        timeout: Duration,
    ) -> Option<u16> {
        let key = (service, client);
        let map = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let &(backend, last) = map.get(&key)?;
        (now.saturating_duration_since(last) < timeout).then_some(backend)
    }

    /// Records that `client` was sent to `backend` by `service` at `now`.
    pub fn put(&self, service: u32, client: Ipv4Addr, backend: u16, now: Instant) {
        let key = (service, client);
        let mut map = self
            .shard(&key)
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.per_shard && !map.contains_key(&key) {
            let oldest = map.iter().min_by_key(|(_, &(_, t))| t).map(|(k, _)| *k);
            if let Some(k) = oldest {
                map.remove(&k);
            }
        }
        map.insert(key, (backend, now));
    }

    /// Forgets every entry of `service` (it was deleted or its endpoints changed order).
    pub fn forget_service(&self, service: u32) {
        for s in self.shards.iter() {
            s.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|k, _| k.0 != service);
        }
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 2);

    #[test]
    fn a_client_is_pinned_until_the_timeout_after_its_last_connection() {
        let a = Affinity::new(1024);
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        assert_eq!(a.get(1, CLIENT, t0, timeout), None);
        a.put(1, CLIENT, 3, t0);
        assert_eq!(
            a.get(1, CLIENT, t0 + Duration::from_secs(9), timeout),
            Some(3)
        );
        assert_eq!(a.get(2, CLIENT, t0, timeout), None, "per Service port");
        assert_eq!(a.get(1, CLIENT, t0 + timeout, timeout), None, "expired");
        a.put(1, CLIENT, 3, t0 + Duration::from_secs(9));
        assert_eq!(
            a.get(1, CLIENT, t0 + Duration::from_secs(18), timeout),
            Some(3),
            "renewed"
        );
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_used_and_stays_bounded() {
        let a = Affinity::new(16);
        let t0 = Instant::now();
        for i in 0..100u32 {
            a.put(
                1,
                Ipv4Addr::from(0x0af4_0000 + i),
                0,
                t0 + Duration::from_millis(u64::from(i)),
            );
        }
        assert!(a.len() <= 16, "{}", a.len());
        let newest = Ipv4Addr::from(0x0af4_0000 + 99);
        assert_eq!(
            a.get(
                1,
                newest,
                t0 + Duration::from_secs(1),
                Duration::from_secs(10)
            ),
            Some(0)
        );
        a.forget_service(1);
        assert!(a.is_empty());
    }
}
