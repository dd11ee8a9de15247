//! The neighbour table: the MACs of the uplink's next hops (other nodes), resolved by ARP.
//! Shared by every worker and changed by the pipeline (a lookup may start a resolution; an ARP
//! from a next hop confirms it), so it lives beside conntrack in `FlowState`, sharded the same
//! way: a lookup locks one shard for one packet, never across a batch.
//!
//! States (Linux's `neighbour.c`, simplified; all derived from timestamps at lookup, so no
//! timer runs):
//! - **incomplete**: no MAC yet. Packets to it are dropped (`neighbor_unresolved`); one of
//!   them per [`PROBE_INTERVAL`] is turned into a broadcast ARP request instead. No queue:
//!   holding packets would need buffers the pipeline does not own, and the first packets of a
//!   flow to a node not yet resolved are what a sender retransmits anyway (Linux queues 3
//!   per neighbour, `unres_qlen`, to the same end).
//! - **reachable**: confirmed less than [`REACHABLE_TIME`] ago; used as it is.
//! - **stale**: older; still used (the MAC is very likely right), and a packet using it asks
//!   for a unicast re-probe, at most one per [`PROBE_INTERVAL`].
//! - after [`MAX_PROBES`] re-probes unanswered, **probe failed**: the entry becomes incomplete
//!   again (broadcast resolution), as Linux's NUD_PROBE → NUD_FAILED.
//!
//! Any ARP from the next hop confirms it (reply, request, gratuitous ARP): its sender address
//! and MAC. Entries are created only for addresses a route leads to (`NextHops`), so the
//! underlay cannot fill the table; the table is bounded all the same ([`Neighbors::new`]): a
//! full shard replaces its least recently confirmed entry.

use podswitch_packet::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a confirmation makes an entry reachable (Linux `base_reachable_time`, 30 s).
pub const REACHABLE_TIME: Duration = Duration::from_secs(30);
/// The least time between two ARP requests for one address (Linux `retrans_time`, 1 s).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Unicast re-probes of a stale entry before it is resolved again from scratch (Linux
/// `ucast_solicit`, 3).
pub const MAX_PROBES: u8 = 3;

/// What the pipeline does with a packet for a next hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Send it to this MAC; `probe`: also send a unicast ARP request to that MAC (stale entry).
    Use {
        /// The next hop's MAC.
        mac: MacAddr,
        /// Whether a re-probe is due now.
        probe: bool,
    },
    /// No MAC: drop the packet; `request`: turn it into a broadcast ARP request (one is due).
    Unresolved {
        /// Whether a request is due now.
        request: bool,
    },
}

/// An entry's state, as dumps show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Being resolved.
    Incomplete,
    /// Confirmed recently.
    Reachable,
    /// Not confirmed recently, not being re-probed.
    Stale,
    /// Stale and being re-probed.
    Probe,
}

impl State {
    /// The dump's name.
    pub fn name(self) -> &'static str {
        match self {
            State::Incomplete => "incomplete",
            State::Reachable => "reachable",
            State::Stale => "stale",
            State::Probe => "probe",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: Ipv4Addr,
    mac: Option<MacAddr>,
    /// Last confirmation (with a MAC), or when resolution started (without).
    confirmed: Instant,
    /// Last ARP request sent for it.
    last_probe: Option<Instant>,
    /// Unicast re-probes sent since the last confirmation.
    probes: u8,
}

impl Entry {
    fn state(&self, now: Instant) -> State {
        match self.mac {
            None => State::Incomplete,
            Some(_) if now.saturating_duration_since(self.confirmed) < REACHABLE_TIME => {
                State::Reachable
            }
            Some(_) if self.probes > 0 => State::Probe,
            Some(_) => State::Stale,
        }
    }

    fn probe_due(&self, now: Instant) -> bool {
        self.last_probe
            .is_none_or(|t| now.saturating_duration_since(t) >= PROBE_INTERVAL)
    }
}

/// One entry as a dump shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborEntry {
    /// The next hop.
    pub ip: Ipv4Addr,
    /// Its MAC, once resolved.
    pub mac: Option<MacAddr>,
    /// Its state now.
    pub state: State,
    /// Since the last confirmation (or the start of resolution).
    pub age: Duration,
}

#[derive(Debug, Default)]
struct Shard {
    /// A few entries per shard: a linear scan is cheaper than hashing again.
    entries: Vec<Entry>,
}

/// The table: `shards` mutexes, each over at most `per_shard` entries.
#[derive(Debug)]
pub struct Neighbors {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl Neighbors {
    /// A table of at most `capacity` entries (at least one per shard), allocated now: the hot
    /// path never grows it.
    pub fn new(capacity: usize) -> Neighbors {
        let shards = (capacity / 16).clamp(1, 64).next_power_of_two();
        let per_shard = capacity.div_ceil(shards).max(1);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    entries: Vec::with_capacity(per_shard),
                })
            })
            .collect();
        Neighbors { shards, per_shard }
    }

    /// Entries at most.
    pub fn capacity(&self) -> usize {
        self.shards.len() * self.per_shard
    }

    fn shard(&self, ip: Ipv4Addr) -> std::sync::MutexGuard<'_, Shard> {
        let h = u32::from(ip).wrapping_mul(0x9e37_79b9);
        let i = (h >> 16) as usize & (self.shards.len() - 1);
        // A poisoned shard only means another worker panicked mid-update of plain data.
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What to do with a packet for next hop `ip` at `now`. `forwarding`: record what is
    /// sent (a new incomplete entry, a probe's time); a dry run (`trace`) changes nothing.
    pub fn resolve(&self, ip: Ipv4Addr, now: Instant, forwarding: bool) -> Resolution {
        let mut shard = self.shard(ip);
        let per_shard = self.per_shard;
        let Some(e) = shard.entries.iter_mut().find(|e| e.ip == ip) else {
            if forwarding {
                shard.insert(
                    Entry {
                        ip,
                        mac: None,
                        confirmed: now,
                        last_probe: Some(now),
                        probes: 0,
                    },
                    per_shard,
                );
            }
            return Resolution::Unresolved { request: true };
        };
        let due = e.probe_due(now);
        match (e.mac, e.state(now)) {
            (Some(mac), State::Reachable) => Resolution::Use { mac, probe: false },
            (Some(mac), State::Stale | State::Probe) if !due => {
                Resolution::Use { mac, probe: false }
            }
            (Some(mac), State::Stale | State::Probe) if e.probes < MAX_PROBES => {
                if forwarding {
                    e.probes += 1;
                    e.last_probe = Some(now);
                }
                Resolution::Use { mac, probe: true }
            }
            // Re-probes unanswered: the MAC is presumed gone; resolve again from scratch.
            (Some(_), _) => {
                if forwarding {
                    *e = Entry {
                        ip,
                        mac: None,
                        confirmed: now,
                        last_probe: Some(now),
                        probes: 0,
                    };
                }
                Resolution::Unresolved { request: true }
            }
            (None, _) => {
                if forwarding && due {
                    e.last_probe = Some(now);
                }
                Resolution::Unresolved { request: due }
            }
        }
    }

    /// `ip` is at `mac` (an ARP from it). Updates its entry; creates one only if `create`
    /// (a route leads to `ip`). Returns whether an entry was updated or created.
    pub fn confirm(&self, ip: Ipv4Addr, mac: MacAddr, now: Instant, create: bool) -> bool {
        let mut shard = self.shard(ip);
        let per_shard = self.per_shard;
        let fresh = Entry {
            ip,
            mac: Some(mac),
            confirmed: now,
            last_probe: None,
            probes: 0,
        };
        if let Some(e) = shard.entries.iter_mut().find(|e| e.ip == ip) {
            *e = fresh;
            return true;
        }
        if create {
            shard.insert(fresh, per_shard);
        }
        create
    }

    /// Forgets every entry whose address no route leads to any more.
    pub fn retain(&self, mut keep: impl FnMut(Ipv4Addr) -> bool) {
        for shard in self.shards.iter() {
            let mut s = shard
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.entries.retain(|e| keep(e.ip));
        }
    }

    /// Every entry as of `now`, sorted by address.
    pub fn dump(&self, now: Instant) -> Vec<NeighborEntry> {
        let mut out: Vec<NeighborEntry> = self
            .shards
            .iter()
            .flat_map(|shard| {
                let s = shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.entries
                    .iter()
                    .map(|e| NeighborEntry {
                        ip: e.ip,
                        mac: e.mac,
                        state: e.state(now),
                        age: now.saturating_duration_since(e.confirmed),
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        out.sort_by_key(|e| e.ip);
        out
    }
}

impl Shard {
    /// Adds `e`; a full shard first drops an incomplete entry, else the least recently
    /// confirmed one. Never grows past the capacity reserved at start.
    fn insert(&mut self, e: Entry, per_shard: usize) {
        if self.entries.len() >= per_shard {
            let victim = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| (e.mac.is_some(), e.confirmed))
                .map(|(i, _)| i);
            if let Some(i) = victim {
                self.entries.swap_remove(i);
            }
        }
        self.entries.push(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IP: Ipv4Addr = Ipv4Addr::new(192, 168, 1, 2);
    const MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    #[test]
    fn unknown_next_hop_asks_once_per_interval_until_answered() {
        let t = Neighbors::new(64);
        let now = Instant::now();
        assert_eq!(
            t.resolve(IP, now, true),
            Resolution::Unresolved { request: true }
        );
        assert_eq!(
            t.resolve(IP, now + Duration::from_millis(500), true),
            Resolution::Unresolved { request: false },
            "one request per second"
        );
        assert_eq!(
            t.resolve(IP, now + PROBE_INTERVAL, true),
            Resolution::Unresolved { request: true }
        );
        assert_eq!(t.dump(now)[0].state, State::Incomplete);
        assert!(t.confirm(IP, MAC, now + PROBE_INTERVAL, false));
        assert_eq!(
            t.resolve(IP, now + PROBE_INTERVAL, true),
            Resolution::Use {
                mac: MAC,
                probe: false
            }
        );
    }

    #[test]
    fn stale_entries_are_used_and_reprobed_then_dropped_back_to_incomplete() {
        let t = Neighbors::new(64);
        let now = Instant::now();
        assert!(t.confirm(IP, MAC, now, true));
        let stale = now + REACHABLE_TIME;
        assert_eq!(t.dump(stale)[0].state, State::Stale);
        let use_probe = Resolution::Use {
            mac: MAC,
            probe: true,
        };
        let use_quiet = Resolution::Use {
            mac: MAC,
            probe: false,
        };
        for k in 0..u32::from(MAX_PROBES) {
            let at = stale + PROBE_INTERVAL * k;
            assert_eq!(t.resolve(IP, at, true), use_probe, "probe {k}");
            assert_eq!(t.resolve(IP, at, true), use_quiet, "once per interval");
            assert_eq!(t.dump(at)[0].state, State::Probe);
        }
        let failed = stale + PROBE_INTERVAL * u32::from(MAX_PROBES);
        assert_eq!(
            t.resolve(IP, failed, true),
            Resolution::Unresolved { request: true },
            "unanswered probes: resolve again"
        );
        assert_eq!(t.dump(failed)[0].state, State::Incomplete);
        // An answer during probing makes it reachable again.
        assert!(t.confirm(IP, MAC, failed, false));
        assert_eq!(t.dump(failed)[0].state, State::Reachable);
    }

    #[test]
    fn a_dry_run_changes_nothing() {
        let t = Neighbors::new(64);
        let now = Instant::now();
        assert_eq!(
            t.resolve(IP, now, false),
            Resolution::Unresolved { request: true }
        );
        assert!(t.dump(now).is_empty());
        t.confirm(IP, MAC, now, true);
        let stale = now + REACHABLE_TIME;
        for _ in 0..10 {
            assert_eq!(
                t.resolve(IP, stale, false),
                Resolution::Use {
                    mac: MAC,
                    probe: true
                }
            );
        }
        assert_eq!(t.dump(stale)[0].state, State::Stale);
    }

    #[test]
    fn unsolicited_arps_create_entries_only_for_next_hops() {
        let t = Neighbors::new(64);
        let now = Instant::now();
        assert!(!t.confirm(IP, MAC, now, false));
        assert!(t.dump(now).is_empty());
        assert!(t.confirm(IP, MAC, now, true));
        let other = MacAddr([2, 0, 0, 0, 0, 9]);
        assert!(t.confirm(IP, other, now, false), "a known entry is updated");
        assert_eq!(t.dump(now)[0].mac, Some(other));
    }

    #[test]
    fn the_table_is_bounded_and_evicts_incomplete_then_oldest_entries() {
        let t = Neighbors::new(16);
        assert_eq!(t.capacity(), 16);
        let now = Instant::now();
        for i in 0..1000u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            t.confirm(ip, MAC, now + Duration::from_millis(u64::from(i)), true);
            assert!(t.dump(now).len() <= 16);
        }
        // The newest entries survive.
        let newest = Ipv4Addr::from(0x0a00_0000 + 999);
        assert!(t.dump(now).iter().any(|e| e.ip == newest));
        // A new resolution evicts the oldest confirmed entry, not a recent one.
        let before = t.dump(now);
        let fresh = Ipv4Addr::new(172, 16, 0, 1);
        t.resolve(fresh, now + Duration::from_secs(5), true);
        let after = t.dump(now);
        assert_eq!(after.len(), before.len().max(after.len()));
        assert!(after.iter().any(|e| e.ip == fresh));
        assert!(after.iter().any(|e| e.ip == newest));
        t.retain(|ip| ip != fresh);
        assert!(!t.dump(now).iter().any(|e| e.ip == fresh));
    }
}
