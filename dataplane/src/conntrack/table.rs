//! The sharded table behind [`Conntrack`]: shards, slots with generations, and the operations
//! (lookup, commit, GC, flush, dumps) with their locking order.
//!
//! An entry lives in the shard of its original tuple; its reply tuple is an alias in the reply
//! tuple's shard pointing at (shard, slot). A lookup locks one shard, then for an alias the
//! entry's shard after releasing the first (and checks the tuple there: the slot may have
//! been reused in between); anything that adds or removes both keys locks the two shards in
//! index order, so two workers can never wait on each other.
//!
//! Each tuple is hashed once per packet (keyed, [`Keyed`]): bits 32 and up pick the shard, the
//! low bits the index bucket (`index.rs`). The buckets and slots never move, so a stage can
//! prefetch what a packet a few places ahead will touch ([`Conntrack::prefetch`],
//! [`Conntrack::prepare`]) before taking any lock: in a table of a million connections those
//! lines are misses to memory, and only known addresses let them overlap.

use super::index::{self, Index, SlotAt};
use super::memory::{self, Part};
use super::state::{self, State, Timeouts};
use super::{
    reply_tuple, reverse_nat, CachedHop, CommitError, Config, Decided, Dir, EntryView, Handle, Hit,
    Nat, PolicyMark, ServiceRef, Tuple,
};
use foldhash::quality::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Shards hold about this many entries each.
const ENTRIES_PER_SHARD: usize = 64;
/// Most shards a table has (beyond this, lock contention is no longer the limit).
const MAX_SHARDS: usize = 1024;
/// Expired entries `gc_step` collects under one shard lock before removing them.
const GC_BATCH: usize = 32;

#[derive(Debug, Clone, Copy)]
struct Entry {
    original: Tuple,
    reply: Tuple,
    state: State,
    /// The side that sent the first FIN (TCP closing states).
    fin_from: Dir,
    nat: Nat,
    service: Option<ServiceRef>,
    hops: [Option<CachedHop>; 2],
    policy: PolicyMark,
    created: Instant,
    last_seen: Instant,
    packets: [u64; 2],
    bytes: [u64; 2],
}

impl Entry {
    fn expires_at(&self, timeouts: &Timeouts) -> Instant {
        self.last_seen + timeouts.of(self.state)
    }

    fn expired(&self, now: Instant, timeouts: &Timeouts) -> bool {
        now >= self.expires_at(timeouts)
    }

    fn dir_of(&self, t: &Tuple) -> Option<Dir> {
        if self.original == *t {
            Some(Dir::Original)
        } else if self.reply == *t {
            Some(Dir::Reply)
        } else {
            None
        }
    }

    fn hit(&self, handle: Handle, dir: Dir) -> Hit {
        let nat = match dir {
            Dir::Original => self.nat,
            Dir::Reply => reverse_nat(&self.original, &self.nat),
        };
        Hit {
            handle,
            dir,
            nat,
            hop: self.hops[dir.index()],
            service: self.service,
            state: self.state,
            policy: self.policy,
        }
    }

    fn update(&mut self, dir: Dir, tcp_flags: u8, len: u32, now: Instant) {
        let step = state::advance(self.state, dir, tcp_flags, &mut self.fin_from);
        if step.reopened {
            self.created = now;
            self.packets = [0; 2];
            self.bytes = [0; 2];
        }
        self.state = step.state;
        self.last_seen = now;
        self.packets[dir.index()] += 1;
        self.bytes[dir.index()] += u64::from(len);
    }

    fn view(&self, now: Instant, timeouts: &Timeouts) -> EntryView {
        EntryView {
            original: self.original,
            reply: self.reply,
            state: self.state,
            nat: self.nat,
            service: self.service,
            created: self.created,
            last_seen: self.last_seen,
            age: now.saturating_duration_since(self.created),
            expires_in: self.expires_at(timeouts).saturating_duration_since(now),
            packets: self.packets,
            bytes: self.bytes,
        }
    }
}

/// A tuple with its keyed hash, computed once per packet ([`Conntrack::keyed`]) and used for
/// the shard, the index and the prefetch alike.
#[derive(Debug, Clone, Copy)]
pub struct Keyed {
    tuple: Tuple,
    hash: u64,
}

impl Keyed {
    /// The tuple.
    pub fn tuple(&self) -> &Tuple {
        &self.tuple
    }
}

/// A new connection's two keys, hashed and their lines prefetched
/// ([`Conntrack::prepare`]), for [`Conntrack::commit_prepared`].
#[derive(Debug, Clone, Copy)]
pub struct Prepared {
    original: Keyed,
    reply: Keyed,
}

impl Prepared {
    /// The connection's first tuple.
    pub fn tuple(&self) -> &Tuple {
        &self.original.tuple
    }
}

/// One entry's place, three cache lines exactly (aligned, so a prefetch of its lines brings
/// it whole).
#[derive(Debug, Clone, Copy)]
#[repr(align(64))]
struct Slot {
    /// Bumped when the entry is removed: handles to the old entry stop matching.
    generation: u32,
    /// While the slot is free: the next free slot (`NO_SLOT` for none). The free list runs
    /// through the slots themselves, so taking one reads only the line its entry is written
    /// to, which `prepare` prefetched.
    next_free: u32,
    entry: Option<Entry>,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 3 * 64);

/// The end of a shard's free list.
const NO_SLOT: u32 = u32::MAX;

#[derive(Debug)]
struct Shard {
    index: Index,
    slots: Part<Slot>,
    /// The first free slot (`NO_SLOT` when full).
    free: u32,
}

impl Shard {
    /// Takes the first free slot; the new first is published in `next`, for prefetching.
    fn take_slot(&mut self, next: &AtomicU32) -> Option<u32> {
        let slot = self.free;
        let taken = self.slots.get_mut(slot as usize)?;
        self.free = taken.next_free;
        next.store(self.free, Relaxed);
        Some(slot)
    }

    /// Puts `slot` back at the head of the free list.
    fn give_slot(&mut self, slot: u32, next: &AtomicU32) {
        if let Some(s) = self.slots.get_mut(slot as usize) {
            s.next_free = self.free;
            self.free = slot;
            next.store(slot, Relaxed);
        }
    }

    fn handle(&self, at: SlotAt) -> Handle {
        Handle {
            shard: u32::from(at.shard),
            slot: at.slot,
            generation: self.slots.get(at.slot as usize).map_or(0, |s| s.generation),
        }
    }

    fn entry(&self, h: Handle) -> Option<&Entry> {
        let slot = self.slots.get(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, h: Handle) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(h.slot as usize)?;
        if slot.generation != h.generation {
            return None;
        }
        slot.entry.as_mut()
    }
}

#[derive(Debug)]
struct ShardCell {
    shard: Mutex<Shard>,
    /// Entries whose slot is in this shard, written under the lock, read without it by `len`.
    live: AtomicUsize,
    /// Where the shard's buckets and slots are (they never move), for prefetching without
    /// the lock.
    buckets: usize,
    bucket_mask: usize,
    slots: usize,
    /// The slot the next new entry will take (the free list's top), written under the lock
    /// after each change, read without it to prefetch; `NO_SLOT` when none is free.
    next_slot: AtomicU32,
}

impl ShardCell {
    /// Prefetches the bucket a key with `hash` is looked for first, and the one after it.
    ///
    /// In a full table (a million entries in a table sized for them) a shard's buckets hold
    /// one key on average in three places, so about one home bucket in eleven is full and a
    /// new connection's insert goes on to the next bucket (a lookup, one in fifty), a miss
    /// of its own that nothing had started. Prefetching it always costs one more prefetch per key and
    /// took new connections at 1M entries from 0.79–0.82 to 0.86–0.87 of an empty table's
    /// rate (`newconn_ct corner`, alternated builds).
    #[inline]
    fn prefetch_bucket(&self, hash: u64) {
        index::prefetch(self.buckets + (hash as usize & self.bucket_mask) * 64);
        index::prefetch(self.buckets + ((hash as usize + 1) & self.bucket_mask) * 64);
    }

    /// Prefetches the slot the next entry will take: all three lines.
    #[inline]
    fn prefetch_next_slot(&self) {
        let slot = self.next_slot.load(Relaxed);
        if slot != NO_SLOT {
            let at = self.slots + slot as usize * std::mem::size_of::<Slot>();
            for line in 0..std::mem::size_of::<Slot>() / 64 {
                index::prefetch(at + line * 64);
            }
        }
    }
}

/// Where the incremental GC goes on next; one per worker.
#[derive(Debug, Default, Clone, Copy)]
pub struct GcCursor {
    shard: usize,
    slot: usize,
}

/// The shared connection table. See the module documentation for its locking.
#[derive(Debug)]
pub struct Conntrack {
    cells: Box<[ShardCell]>,
    /// Picks the shard; keyed per process so pods cannot aim tuples at one shard.
    hasher: RandomState,
    per_shard: usize,
    /// Keys a shard's index may hold: its own entries' originals and other shards' aliases.
    index_cap: usize,
    timeouts: Timeouts,
    /// The hard capacity, enforced over the whole table: shards get a quarter more room than
    /// their share, so uneven hashing never refuses a connection while the table has room.
    capacity: usize,
    /// Entries held in all shards (one relaxed add per new connection, not per packet).
    total: AtomicUsize,
}

impl Conntrack {
    /// A table for `cfg.capacity` entries (at least one), all memory reserved here.
    pub fn new(cfg: Config) -> Conntrack {
        let capacity = cfg.capacity.max(1);
        let shards = (capacity / ENTRIES_PER_SHARD)
            .clamp(1, MAX_SHARDS)
            .next_power_of_two();
        // A quarter more than the share, plus a little: at 64 entries a shard the count of a
        // shard is within 4 standard deviations of its share (sd = 8).
        let per_shard = capacity.div_ceil(shards) * 5 / 4 + 8;
        let index_cap = 2 * per_shard;
        // Every slot free, in order: slot 0 is handed out first.
        let slots = memory::parts(shards, per_shard, |_, i| Slot {
            generation: 0,
            next_free: if i + 1 < per_shard {
                i as u32 + 1
            } else {
                NO_SLOT
            },
            entry: None,
        });
        let cells = (Index::with_room_for(shards, index_cap).into_iter())
            .zip(slots)
            .map(|(index, slots)| ShardCell {
                buckets: index.base_addr(),
                bucket_mask: index.mask(),
                slots: slots.as_ptr() as usize,
                next_slot: AtomicU32::new(0),
                shard: Mutex::new(Shard {
                    index,
                    slots,
                    free: 0,
                }),
                live: AtomicUsize::new(0),
            })
            .collect();
        Conntrack {
            cells,
            hasher: RandomState::default(),
            per_shard,
            index_cap,
            timeouts: cfg.timeouts,
            capacity,
            total: AtomicUsize::new(0),
        }
    }

    /// `t` with its hash: what the other operations take, computed once per packet.
    #[inline]
    pub fn keyed(&self, t: &Tuple) -> Keyed {
        Keyed {
            tuple: *t,
            hash: self.hasher.hash_one(t),
        }
    }

    /// The shard of a key: the hash's bits 32 and up, independent of the low bits a shard's
    /// index picks its buckets by while it has fewer than 2³² buckets and the table at most
    /// 2³² shards.
    #[inline]
    fn shard_of(&self, k: &Keyed) -> usize {
        ((k.hash >> 32) as usize) & (self.cells.len() - 1)
    }

    /// Starts bringing in the index bucket [`Conntrack::lookup_keyed`] will read for `k`:
    /// called for a packet a few packets ahead of the one being looked up, so the misses of a
    /// batch overlap instead of each stalling its packet.
    #[inline]
    pub fn prefetch(&self, k: &Keyed) {
        self.cells[self.shard_of(k)].prefetch_bucket(k.hash);
    }

    /// The keys of a new connection whose first packet has tuple `t` and is translated by
    /// `nat`, with the lines its commit will write prefetched: the reply key's bucket and the
    /// slot the entry will take (the original key's bucket was read by its lookup).
    #[inline]
    pub fn prepare(&self, t: &Tuple, nat: &Nat) -> Prepared {
        let original = self.keyed(t);
        let reply = self.keyed(&reply_tuple(t, nat));
        self.cells[self.shard_of(&reply)].prefetch_bucket(reply.hash);
        self.cells[self.shard_of(&original)].prefetch_next_slot();
        Prepared { original, reply }
    }

    fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        // A worker that panicked left at most one entry half-updated; forwarding goes on.
        self.cells[shard]
            .shard
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks `a` and `b` (once if equal) in index order; returns (a's guard, b's if distinct).
    fn lock_two(
        &self,
        a: usize,
        b: usize,
    ) -> (MutexGuard<'_, Shard>, Option<MutexGuard<'_, Shard>>) {
        if a == b {
            (self.lock(a), None)
        } else if a < b {
            let ga = self.lock(a);
            (ga, Some(self.lock(b)))
        } else {
            let gb = self.lock(b);
            (self.lock(a), Some(gb))
        }
    }

    /// [`Conntrack::lookup_keyed`] of a tuple not hashed yet.
    pub fn lookup(
        &self,
        t: &Tuple,
        tcp_flags: u8,
        len: u32,
        now: Instant,
        update: bool,
    ) -> Option<Hit> {
        self.lookup_keyed(&self.keyed(t), tcp_flags, len, now, update)
    }

    /// Finds the entry of `k` (either direction). With `update`, advances the state machine
    /// with `tcp_flags` (0 for non-TCP), refreshes last-seen and counts the packet (`len`
    /// bytes) in its direction; without (trace dry-run), changes nothing. An expired entry is
    /// treated as absent (and removed when `update`).
    pub fn lookup_keyed(
        &self,
        k: &Keyed,
        tcp_flags: u8,
        len: u32,
        now: Instant,
        update: bool,
    ) -> Option<Hit> {
        let t = &k.tuple;
        let first = self.shard_of(k);
        let mut guard = self.lock(first);
        let at = guard.index.get(t, k.hash)?;
        if usize::from(at.shard) != first {
            // A reply alias: the entry is elsewhere. Release before locking, never nest.
            drop(guard);
            guard = self.lock(usize::from(at.shard));
        }
        // Between the two locks the entry may have gone and its slot been reused: the tuple
        // check below tells.
        let handle = guard.handle(at);
        let entry = guard.entry_mut(handle)?;
        let dir = entry.dir_of(t)?;
        if entry.expired(now, &self.timeouts) {
            drop(guard);
            if update {
                self.remove_if(handle, |e| e.expired(now, &self.timeouts));
            }
            return None;
        }
        if update {
            entry.update(dir, tcp_flags, len, now);
        }
        Some(entry.hit(handle, dir))
    }

    /// Creates the entry of a new connection whose first packet has tuple `t`, translated by
    /// `nat`; the reply tuple is derived from both ([`reply_tuple`]). If another worker tracked
    /// `t` meanwhile, returns that entry's Hit (the packet counted there). A TCP entry starts
    /// in syn_sent on a bare SYN, established otherwise (picked up mid-stream).
    pub fn commit(
        &self,
        t: &Tuple,
        nat: Nat,
        service: Option<ServiceRef>,
        tcp_flags: u8,
        len: u32,
        now: Instant,
    ) -> Result<Hit, CommitError> {
        let decided = Decided {
            nat,
            service,
            hop: None,
            policy: None,
        };
        self.commit_decided(t, decided, tcp_flags, len, now)
    }

    /// [`Conntrack::commit_prepared`] of a tuple not prepared yet.
    pub fn commit_decided(
        &self,
        t: &Tuple,
        decided: Decided,
        tcp_flags: u8,
        len: u32,
        now: Instant,
    ) -> Result<Hit, CommitError> {
        let keys = Prepared {
            original: self.keyed(t),
            reply: self.keyed(&reply_tuple(t, &decided.nat)),
        };
        self.commit_prepared(&keys, decided, tcp_flags, len, now)
    }

    /// Creates a new connection's entry, [`Conntrack::commit`] with everything the stages
    /// decided stored under the same locks: the output of `t`'s direction and the policy
    /// verdict, each when given. `keys` must be [`Conntrack::prepare`]d with `decided.nat`.
    /// If another worker tracked `t` meanwhile — as the original of its entry, or as the
    /// reply of the other direction's — they go into that entry for the direction `t` has
    /// there, and the returned Hit's `nat` is the translation of that direction (the packet
    /// must follow it).
    pub fn commit_prepared(
        &self,
        keys: &Prepared,
        decided: Decided,
        tcp_flags: u8,
        len: u32,
        now: Instant,
    ) -> Result<Hit, CommitError> {
        let (kt, kr) = (&keys.original, &keys.reply);
        let (t, reply) = (&kt.tuple, kr.tuple);
        debug_assert_eq!(
            reply,
            reply_tuple(t, &decided.nat),
            "prepared with another NAT"
        );
        let a = self.shard_of(kt);
        let b = self.shard_of(kr);
        // A retry follows the removal of an expired entry in the way; the third is a race
        // lost twice in a row, reported as Full rather than looping.
        for _ in 0..3 {
            let (mut ga, mut gb) = self.lock_two(a, b);
            if ga.index.contains(t, kt.hash) {
                drop((ga, gb));
                match self.lookup_keyed(kt, tcp_flags, len, now, true) {
                    Some(hit) => {
                        if decided.hop.is_some() || decided.policy.is_some() {
                            self.settle(hit.handle, hit.dir, decided.hop, decided.policy);
                        }
                        return Ok(hit);
                    }
                    None => continue,
                }
            }
            let reply_shard: &Shard = gb.as_deref().unwrap_or(&ga);
            if reply != *t && reply_shard.index.contains(&reply, kr.hash) {
                drop((ga, gb));
                if self.remove_expired_key(kr, now) {
                    continue;
                }
                return Err(CommitError::ReplyTaken);
            }
            let reply_full = gb.as_ref().is_some_and(|g| g.index.len() >= self.index_cap);
            let own_keys = if gb.is_none() && reply != *t { 2 } else { 1 };
            if ga.index.len() + own_keys > self.index_cap || reply_full {
                return Err(CommitError::Full);
            }
            if self.total.load(Relaxed) >= self.capacity {
                return Err(CommitError::Full);
            }
            let Some(slot) = ga.take_slot(&self.cells[a].next_slot) else {
                return Err(CommitError::Full);
            };
            let at = SlotAt {
                shard: a as u16,
                slot,
            };
            let handle = ga.handle(at);
            let dir = Dir::Original;
            let entry = Entry {
                original: *t,
                reply,
                state: State::initial(t.proto, tcp_flags),
                fin_from: dir,
                nat: decided.nat,
                service: decided.service,
                hops: [decided.hop, None],
                policy: decided.policy.unwrap_or_default(),
                created: now,
                last_seen: now,
                packets: [1, 0],
                bytes: [u64::from(len), 0],
            };
            ga.slots[slot as usize].entry = Some(entry);
            ga.index.insert(t, kt.hash, at);
            if reply != *t {
                match gb.as_mut() {
                    Some(g) => g.index.insert(&reply, kr.hash, at),
                    None => ga.index.insert(&reply, kr.hash, at),
                };
            }
            self.cells[a].live.fetch_add(1, Relaxed);
            self.total.fetch_add(1, Relaxed);
            return Ok(entry.hit(handle, dir));
        }
        Err(CommitError::Full)
    }

    /// Stores the output found for direction `dir` of the entry (nothing if it is gone).
    pub fn set_hop(&self, h: Handle, dir: Dir, hop: CachedHop) {
        self.settle(h, dir, Some(hop), None);
    }

    /// Stores the policy verdict of the entry (nothing if it is gone).
    pub fn set_policy(&self, h: Handle, mark: PolicyMark) {
        self.settle(h, Dir::Original, None, Some(mark));
    }

    /// Stores what the stages found for an entry, under one lock: the output of direction
    /// `dir` and the policy verdict, each when given.
    pub fn settle(&self, h: Handle, dir: Dir, hop: Option<CachedHop>, mark: Option<PolicyMark>) {
        let Some(cell) = self.cells.get(h.shard as usize) else {
            return;
        };
        let mut guard = cell.shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = guard.entry_mut(h) {
            if let Some(hop) = hop {
                entry.hops[dir.index()] = Some(hop);
            }
            if let Some(mark) = mark {
                entry.policy = mark;
            }
        }
    }

    /// Removes the entry `k` leads to if it is expired; true if it did.
    fn remove_expired_key(&self, k: &Keyed, now: Instant) -> bool {
        let handle = {
            let guard = self.lock(self.shard_of(k));
            let Some(at) = guard.index.get(&k.tuple, k.hash) else {
                return false;
            };
            if usize::from(at.shard) == self.shard_of(k) {
                guard.handle(at)
            } else {
                drop(guard);
                self.lock(usize::from(at.shard)).handle(at)
            }
        };
        self.remove_if(handle, |e| {
            e.dir_of(&k.tuple).is_some() && e.expired(now, &self.timeouts)
        })
    }

    /// Removes the entry `h` (both keys) if it still exists; true if it did.
    pub fn remove(&self, h: Handle) -> bool {
        self.remove_if(h, |_| true)
    }

    /// Removes the entry `h` (both keys) if it still exists and `pred` holds for it.
    fn remove_if(&self, h: Handle, pred: impl Fn(&Entry) -> bool) -> bool {
        let home = h.shard as usize;
        if home >= self.cells.len() {
            return false;
        }
        // The reply tuple never changes while the generation matches, so its shard read here
        // is still right once both locks are held (checked again there).
        let Some(reply) = self.lock(home).entry(h).map(|e| e.reply) else {
            return false;
        };
        let reply = self.keyed(&reply);
        let (mut ga, mut gb) = self.lock_two(home, self.shard_of(&reply));
        let Some(entry) = ga.entry(h) else {
            return false;
        };
        if !pred(entry) {
            return false;
        }
        let original = self.keyed(&entry.original);
        let at = SlotAt {
            shard: home as u16,
            slot: h.slot,
        };
        ga.index
            .remove_if_leads_to(&original.tuple, original.hash, at);
        match gb.as_mut() {
            Some(g) => g.index.remove_if_leads_to(&reply.tuple, reply.hash, at),
            None => ga.index.remove_if_leads_to(&reply.tuple, reply.hash, at),
        }
        let slot = &mut ga.slots[h.slot as usize];
        slot.entry = None;
        slot.generation = slot.generation.wrapping_add(1);
        ga.give_slot(h.slot, &self.cells[home].next_slot);
        self.cells[home].live.fetch_sub(1, Relaxed);
        self.total.fetch_sub(1, Relaxed);
        true
    }

    /// Incremental GC: examines at most `budget` slots from `cursor` on, removing expired
    /// entries; returns how many it removed. Workers call it once per poll with a small
    /// budget; nothing else walks the whole table on the hot path.
    pub fn gc_step(&self, cursor: &mut GcCursor, now: Instant, budget: usize) -> usize {
        // Never more than one pass over the table, however large the budget.
        let mut left = budget.min(self.per_shard * self.cells.len());
        let mut removed = 0;
        while left > 0 {
            let mut expired = [None::<Handle>; GC_BATCH];
            let mut found = 0;
            {
                let shard_index = cursor.shard % self.cells.len();
                let guard = self.lock(shard_index);
                while left > 0 && found < GC_BATCH && cursor.slot < guard.slots.len() {
                    let slot = &guard.slots[cursor.slot];
                    if slot
                        .entry
                        .as_ref()
                        .is_some_and(|e| e.expired(now, &self.timeouts))
                    {
                        expired[found] = Some(Handle {
                            shard: shard_index as u32,
                            slot: cursor.slot as u32,
                            generation: slot.generation,
                        });
                        found += 1;
                    }
                    cursor.slot += 1;
                    left -= 1;
                }
                if cursor.slot >= guard.slots.len() {
                    cursor.slot = 0;
                    cursor.shard = (shard_index + 1) % self.cells.len();
                }
            }
            for h in expired.iter().flatten() {
                if self.remove_if(*h, |e| e.expired(now, &self.timeouts)) {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Handles of the entries of one shard that `pred` selects (daemon thread: allocates).
    fn select(&self, shard: usize, pred: impl Fn(&Entry) -> bool) -> Vec<Handle> {
        let guard = self.lock(shard);
        (guard.slots.iter().enumerate())
            .filter(|(_, s)| s.entry.as_ref().is_some_and(&pred))
            .map(|(i, s)| Handle {
                shard: shard as u32,
                slot: i as u32,
                generation: s.generation,
            })
            .collect()
    }

    /// Removes every entry `pred` selects (an endpoint was removed: its entries). Daemon
    /// thread. `pred` runs under a shard's lock, so it must not call back into the table.
    pub fn flush(&self, pred: impl Fn(&EntryView) -> bool) -> usize {
        let now = Instant::now();
        let selects = |e: &Entry| pred(&e.view(now, &self.timeouts));
        let mut removed = 0;
        for shard in 0..self.cells.len() {
            if self.cells[shard].live.load(Relaxed) == 0 {
                continue; // nothing to select: its slots need not be read
            }
            for h in self.select(shard, selects) {
                if self.remove_if(h, selects) {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Calls `f` with every entry (dumps, daemon thread). A shard's entries are copied out
    /// first, so `f` runs with no lock held.
    pub fn for_each(&self, now: Instant, mut f: impl FnMut(&EntryView)) {
        let mut views = Vec::with_capacity(self.per_shard);
        for shard in 0..self.cells.len() {
            views.clear();
            let guard = self.lock(shard);
            views.extend(
                guard
                    .slots
                    .iter()
                    .filter_map(|s| s.entry.as_ref())
                    .map(|e| e.view(now, &self.timeouts)),
            );
            drop(guard);
            views.iter().for_each(&mut f);
        }
    }

    /// Entries held (per-shard counts summed, no lock taken).
    pub fn len(&self) -> usize {
        self.cells.iter().map(|c| c.live.load(Relaxed)).sum()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries the table can hold (the configured capacity: a hard limit over all shards).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of shards (a power of two).
    pub fn shards(&self) -> usize {
        self.cells.len()
    }

    /// The timeouts the table expires entries by.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    /// Connections come and go in a full shard, oldest first, with DNAT so every entry has
    /// two keys: every live connection is found from both directions, every removed one from
    /// neither, the index's overflow counts stay exact, and a removed slot is the next taken.
    #[test]
    fn a_full_shard_under_churn_finds_exactly_its_live_connections() {
        let ct = Conntrack::new(Config {
            capacity: 64,
            timeouts: Timeouts::default(),
        });
        assert_eq!(ct.shards(), 1);
        let now = Instant::now();
        let tuple = |i: u32| Tuple {
            src: Ipv4Addr::from(0x0a00_0000 + i),
            dst: Ipv4Addr::new(10, 96, 0, 1),
            src_port: (i % 50_000) as u16 + 1024,
            dst_port: 80,
            proto: 17,
        };
        let nat = Nat {
            src: None,
            dst: Some(crate::batch::Endpoint {
                ip: Ipv4Addr::new(10, 244, 0, 9),
                port: 8080,
            }),
        };
        let found = |t: &Tuple| ct.lookup(t, 0, 60, now, false).map(|h| h.handle);
        let mut live = std::collections::VecDeque::new();
        for i in 0..20_000u32 {
            if live.len() == 64 {
                let (old, h): (u32, Handle) = live.pop_front().unwrap();
                assert!(ct.remove_if(h, |_| true));
                let t = tuple(old);
                assert_eq!(found(&t), None, "removed connection {old} still found");
                assert_eq!(found(&reply_tuple(&t, &nat)), None);
                assert_eq!(ct.cells[0].next_slot.load(Relaxed), h.slot);
            }
            let t = tuple(i);
            let hit = ct.commit(&t, nat, None, 0, 60, now).unwrap();
            live.push_back((i, hit.handle));
            if i % 97 == 0 {
                for &(j, h) in &live {
                    let t = tuple(j);
                    assert_eq!(found(&t), Some(h), "connection {j}");
                    assert_eq!(found(&reply_tuple(&t, &nat)), Some(h), "reply of {j}");
                }
                ct.lock(0).index.check_overflow(|t| ct.hasher.hash_one(t));
            }
        }
    }
}
