//! A shard's index: tuple → slot, in buckets of one cache line at addresses fixed for the
//! table's life, so a worker can prefetch the bucket a tuple will be looked up in (or inserted
//! into) before it takes the shard's lock — VPP's bihash and OVS's cmap do the same for the
//! same reason: in a table of a million connections every bucket a new connection touches is
//! a cache miss, and misses overlap only when their addresses are known early.
//!
//! Open addressing over buckets of [`KEYS_PER_BUCKET`] keys, probing linearly from the
//! bucket the hash's low bits pick. Each bucket counts the keys that probed past it
//! (`overflow`, as in folly's F14): a lookup stops at the first bucket holding the key or
//! counting no overflow, so removals leave no tombstones and the table never needs a rebuild.
//! The caller keeps the index at most half full ([`Index::with_room_for`] reserves twice the
//! keys it may hold, rounded up to a power of two buckets). Full, that is about one key per
//! bucket: one insert in eleven finds its first bucket full and goes on to the next (a
//! simulation of a shard: 9% of buckets full, 2% overflowed), which is why the table
//! prefetches both.

use super::memory::{self, Part};
use super::Tuple;

/// Keys in one bucket: 3 × 20 bytes and the overflow count fill 64.
const KEYS_PER_BUCKET: usize = 3;

/// Where a key leads: the slot of its entry, in the shard `shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SlotAt {
    pub shard: u16,
    pub slot: u32,
}

/// A key as the index stores it: the tuple packed into words, so that a comparison is three
/// word compares and one masked tag compare.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Key {
    /// Source and destination address, ports (source in the high half).
    words: [u32; 3],
    /// The protocol (bits 0–7), [`USED`], the shard the key leads to (bits 16–31); 0 for a
    /// free key.
    tag: u32,
    slot: u32,
}

/// The bit of [`Key::tag`] that marks a key in use.
const USED: u32 = 1 << 8;
/// The bits of [`Key::tag`] a lookup compares: the protocol and [`USED`].
const MATCHED: u32 = USED | 0xff;

/// `t` as [`Key::words`] and the tag bits it must match.
#[inline]
fn probe(t: &Tuple) -> ([u32; 3], u32) {
    (
        [
            u32::from(t.src),
            u32::from(t.dst),
            u32::from(t.src_port) << 16 | u32::from(t.dst_port),
        ],
        u32::from(t.proto) | USED,
    )
}

impl Key {
    const FREE: Key = Key {
        words: [0; 3],
        tag: 0,
        slot: 0,
    };

    fn new(t: &Tuple, at: SlotAt) -> Key {
        let (words, tag) = probe(t);
        Key {
            words,
            tag: tag | u32::from(at.shard) << 16,
            slot: at.slot,
        }
    }

    fn used(&self) -> bool {
        self.tag & USED != 0
    }

    #[inline]
    fn is(&self, words: &[u32; 3], tag: u32) -> bool {
        self.words == *words && self.tag & MATCHED == tag
    }

    fn leads_to(&self) -> SlotAt {
        SlotAt {
            shard: (self.tag >> 16) as u16,
            slot: self.slot,
        }
    }

    #[cfg(test)]
    fn tuple(&self) -> Tuple {
        Tuple {
            src: self.words[0].into(),
            dst: self.words[1].into(),
            src_port: (self.words[2] >> 16) as u16,
            dst_port: self.words[2] as u16,
            proto: self.tag as u8,
        }
    }
}

#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
pub(super) struct Bucket {
    keys: [Key; KEYS_PER_BUCKET],
    /// Keys whose probe started at or before this bucket and went on past it.
    overflow: u32,
}

const _: () = assert!(std::mem::size_of::<Bucket>() == 64);

/// The buckets of one shard.
#[derive(Debug)]
pub(super) struct Index {
    buckets: Part<Bucket>,
    mask: usize,
    len: usize,
}

impl Index {
    /// `count` indexes for at most `keys` keys each: twice their number of places, in a
    /// power of two buckets, all in one allocation made here.
    pub fn with_room_for(count: usize, keys: usize) -> Vec<Index> {
        let buckets = (2 * keys).div_ceil(KEYS_PER_BUCKET).next_power_of_two();
        let empty = Bucket {
            keys: [Key::FREE; KEYS_PER_BUCKET],
            overflow: 0,
        };
        memory::parts(count, buckets, |_, _| empty)
            .into_iter()
            .map(|buckets| Index {
                mask: buckets.len() - 1,
                buckets,
                len: 0,
            })
            .collect()
    }

    /// The address of the first bucket, for [`prefetch`]: the buckets never move, and
    /// bucket `hash & mask` is the first a key with `hash` is looked for in.
    pub fn base_addr(&self) -> usize {
        self.buckets.as_ptr() as usize
    }

    /// The mask of bucket numbers.
    pub fn mask(&self) -> usize {
        self.mask
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Where `t` leads, if it is a key.
    #[inline]
    pub fn get(&self, t: &Tuple, hash: u64) -> Option<SlotAt> {
        let (words, tag) = probe(t);
        let mut b = self.home(hash);
        for _ in 0..self.buckets.len() {
            let bucket = &self.buckets[b];
            for k in &bucket.keys {
                if k.is(&words, tag) {
                    return Some(k.leads_to());
                }
            }
            if bucket.overflow == 0 {
                return None;
            }
            b = (b + 1) & self.mask;
        }
        None
    }

    pub fn contains(&self, t: &Tuple, hash: u64) -> bool {
        self.get(t, hash).is_some()
    }

    /// Adds a key known to be absent. The caller keeps `len` below the room it asked for,
    /// so a free place is always found (half the places at least are free).
    pub fn insert(&mut self, t: &Tuple, hash: u64, at: SlotAt) {
        let mut b = self.home(hash);
        for _ in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            if let Some(k) = bucket.keys.iter_mut().find(|k| !k.used()) {
                *k = Key::new(t, at);
                self.len += 1;
                return;
            }
            bucket.overflow += 1;
            b = (b + 1) & self.mask;
        }
        unreachable!("a conntrack shard index is never full: its caller bounds its keys");
    }

    /// Removes the key `t` if it leads to `at` (never another entry's key).
    pub fn remove_if_leads_to(&mut self, t: &Tuple, hash: u64, at: SlotAt) {
        let (words, tag) = probe(t);
        let home = self.home(hash);
        let mut b = home;
        for steps in 0..self.buckets.len() {
            let bucket = &mut self.buckets[b];
            let found = bucket
                .keys
                .iter_mut()
                .find(|k| k.is(&words, tag) && k.leads_to() == at);
            if let Some(k) = found {
                *k = Key::FREE;
                self.len -= 1;
                // The buckets it probed past no longer have it beyond them.
                for s in 0..steps {
                    self.buckets[(home + s) & self.mask].overflow -= 1;
                }
                return;
            }
            if bucket.overflow == 0 {
                return;
            }
            b = (b + 1) & self.mask;
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// The overflow counts agree with where the keys are (tests).
    #[cfg(test)]
    pub fn check_overflow(&self, hash_of: impl Fn(&Tuple) -> u64) {
        let mut expected = vec![0u32; self.buckets.len()];
        let mut keys = 0;
        for (b, bucket) in self.buckets.iter().enumerate() {
            for k in bucket.keys.iter().filter(|k| k.used()) {
                keys += 1;
                let mut at = self.home(hash_of(&k.tuple()));
                while at != b {
                    expected[at] += 1;
                    at = (at + 1) & self.mask;
                }
            }
        }
        let actual: Vec<u32> = self.buckets.iter().map(|b| b.overflow).collect();
        assert_eq!(actual, expected, "overflow counts");
        assert_eq!(keys, self.len, "key count");
    }
}

pub(super) use crate::prefetch::prefetch;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn tuple(i: u32) -> Tuple {
        Tuple {
            src: Ipv4Addr::from(0x0a00_0000 + i),
            dst: Ipv4Addr::new(10, 1, 0, 1),
            src_port: i as u16,
            dst_port: 80,
            proto: 6,
        }
    }

    /// Hashes that collide on purpose (few homes), so probes run long and cross the end.
    fn crowded(t: &Tuple) -> u64 {
        (u64::from(u32::from(t.src) % 7)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 3
    }

    /// Free keys are all zeros but for their tag: a packet whose tuple is all zeros (an ICMP
    /// error can quote anything) finds nothing in an empty index.
    #[test]
    fn a_free_key_never_matches_even_the_all_zero_tuple() {
        let index = Index::with_room_for(1, 8).pop().unwrap();
        let zero = Tuple {
            src: Ipv4Addr::UNSPECIFIED,
            dst: Ipv4Addr::UNSPECIFIED,
            src_port: 0,
            dst_port: 0,
            proto: 0,
        };
        assert!((0..64).all(|hash| index.get(&zero, hash).is_none()));
    }

    /// Random inserts and removes against a model: every key found where it leads, absent
    /// ones not found, overflow counts exact after each step.
    #[test]
    fn the_index_agrees_with_a_map_under_random_churn() {
        let mut rng = crate::testkit::xorshift(7);
        let mut index = Index::with_room_for(1, 48).pop().unwrap();
        let mut model = std::collections::HashMap::new();
        for step in 0..20_000u32 {
            let i = (rng() % 200) as u32;
            let t = tuple(i);
            let h = crowded(&t);
            match model.get(&i).copied() {
                Some(at) if rng() % 2 == 0 => {
                    index.remove_if_leads_to(&t, h, at);
                    model.remove(&i);
                }
                Some(at) => {
                    // A removal naming another slot leaves the key alone.
                    let other = SlotAt {
                        shard: 0,
                        slot: step + 1_000_000,
                    };
                    index.remove_if_leads_to(&t, h, other);
                    assert_eq!(index.get(&t, h), Some(at));
                }
                None if model.len() < 48 => {
                    let at = SlotAt {
                        shard: (i % 5) as u16,
                        slot: step,
                    };
                    index.insert(&t, h, at);
                    model.insert(i, at);
                }
                None => assert_eq!(index.get(&t, h), None),
            }
            for j in 0..200 {
                let t = tuple(j);
                assert_eq!(
                    index.get(&t, crowded(&t)),
                    model.get(&j).copied(),
                    "key {j}"
                );
            }
            index.check_overflow(crowded);
        }
    }
}
