//! Maglev consistent hashing (Eisenbud et al., "Maglev: A Fast and Reliable Software Network
//! Load Balancer", NSDI 2016, §3.4): a lookup table of `M` entries (M prime) in which every
//! backend owns ⌊M/N⌋ or ⌈M/N⌉ entries, filled by each backend in turn along its own
//! permutation of the slots. A connection's hash picks a slot; a change of backends moves only
//! the slots it must (the paper measures a few percent beyond the minimum), so established
//! flows elsewhere keep their backend even if their conntrack entry were lost.
//!
//! Table size: the smallest prime of [`TABLE_SIZES`] at least 100 × N, so each backend's share
//! is within 1% of the ideal (one entry in at least 100). 10 endpoints get 1021 entries (2 KiB
//! of `u16`); the largest table, 65521 entries (128 KiB), serves up to 655 endpoints at 1% and
//! more with a coarser balance.

/// Table sizes: primes, about doubling (the paper's M must be prime for every skip to
/// generate a full permutation).
pub const TABLE_SIZES: [usize; 9] = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521];

/// The table size for `n` backends.
pub fn table_size(n: usize) -> usize {
    let want = n.saturating_mul(100);
    TABLE_SIZES
        .iter()
        .copied()
        .find(|&m| m >= want)
        .unwrap_or(TABLE_SIZES[TABLE_SIZES.len() - 1])
}

/// Builds the lookup table for backends named `names` (their identity: `ip:port`, so a
/// backend keeps its permutation whatever the others do): entry `i` is an index into `names`.
/// Empty for no backends. At most `u16::MAX` backends (callers keep far fewer).
pub fn build<N: AsRef<[u8]>>(names: &[N], m: usize) -> Box<[u16]> {
    let n = names.len().min(usize::from(u16::MAX));
    if n == 0 || m == 0 {
        return Box::default();
    }
    // Each backend's next candidate slot and its skip: the paper's `(offset + j × skip) mod M`
    // for its j-th candidate, stepped by one addition (both are below M) instead of a division
    // per probe; the same slots in the same order.
    let mut perms: Vec<(usize, usize)> = names[..n]
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let offset = (hash(name, 0x6d61_676c_6576_3031) % m as u64) as usize;
            let skip = (hash(name, 0x6d61_676c_6576_3032) % (m as u64 - 1)) as usize + 1;
            (offset, skip)
        })
        .collect();
    let step = |slot: usize, skip: usize| {
        let next = slot + skip;
        if next >= m {
            next - m
        } else {
            next
        }
    };
    let mut table = vec![u16::MAX; m];
    let mut filled = 0;
    'fill: loop {
        for (i, (next, skip)) in perms.iter_mut().enumerate() {
            let mut slot = *next;
            while table[slot] != u16::MAX {
                slot = step(slot, *skip);
            }
            table[slot] = i as u16;
            *next = step(slot, *skip);
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table.into_boxed_slice()
}

/// FNV-1a over `bytes` from `seed`, finished with MurmurHash3's 64-bit mixer: deterministic
/// (the same backend gets the same permutation in every process).
fn hash(bytes: &[u8], seed: u64) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.244.{}.{}:8080", i / 250, i % 250 + 2))
            .collect()
    }

    #[test]
    fn every_table_is_full_and_each_backend_owns_its_share_within_one_percent() {
        for n in [1, 2, 3, 7, 10, 50, 100, 300] {
            let m = table_size(n);
            let t = build(&names(n), m);
            assert_eq!(t.len(), m);
            let mut owned = vec![0usize; n];
            for &b in t.iter() {
                owned[usize::from(b)] += 1;
            }
            let ideal = m as f64 / n as f64;
            for (i, &c) in owned.iter().enumerate() {
                assert!(
                    (c as f64 - ideal).abs() <= (ideal * 0.01).max(1.0),
                    "n={n} backend {i} owns {c} of {m} (ideal {ideal:.1})"
                );
            }
        }
    }

    #[test]
    fn the_same_backends_give_the_same_table() {
        let n = names(10);
        assert_eq!(build(&n, 1021), build(&n, 1021));
    }

    #[test]
    fn removing_one_backend_moves_little_more_than_its_own_slots() {
        let all = names(10);
        let m = table_size(10);
        let before = build(&all, m);
        let removed = 3;
        let rest: Vec<String> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != removed)
            .map(|(_, s)| s.clone())
            .collect();
        let after = build(&rest, m);
        // Same backend (by name) in a slot the removed one did not own?
        let moved = (0..m)
            .filter(|&s| usize::from(before[s]) != removed)
            .filter(|&s| all[usize::from(before[s])] != rest[usize::from(after[s])])
            .count();
        let others = (0..m)
            .filter(|&s| usize::from(before[s]) != removed)
            .count();
        assert!(
            moved * 100 <= others * 5,
            "{moved} of {others} slots of remaining backends moved (more than 5%)"
        );
    }

    #[test]
    fn adding_a_backend_moves_about_its_share() {
        let m = table_size(11);
        let ten = names(10);
        let eleven = names(11);
        let (a, b) = (build(&ten, m), build(&eleven, m));
        let moved = (0..m)
            .filter(|&s| ten[usize::from(a[s])] != eleven[usize::from(b[s])])
            .count();
        // The ideal is m/11 (9.1%); Maglev stays close to it.
        assert!(moved * 100 <= m * 14, "{moved} of {m} slots moved");
        assert!(
            moved * 100 >= m * 8,
            "{moved} of {m} slots moved: too few for a fair share"
        );
    }

    /// The paper's population, as written before the division was taken out of it: tables
    /// must not change between versions (a restarted `podswitchd` keeps each flow's backend).
    fn build_by_division(names: &[String], m: usize) -> Vec<u16> {
        let perms: Vec<(usize, usize)> = names
            .iter()
            .map(|name| {
                let offset = (hash(name.as_bytes(), 0x6d61_676c_6576_3031) % m as u64) as usize;
                let skip =
                    (hash(name.as_bytes(), 0x6d61_676c_6576_3032) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; names.len()];
        let mut table = vec![u16::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (i, &(offset, skip)) in perms.iter().enumerate() {
                let mut slot = (offset + next[i] * skip) % m;
                while table[slot] != u16::MAX {
                    next[i] += 1;
                    slot = (offset + next[i] * skip) % m;
                }
                table[slot] = i as u16;
                next[i] += 1;
                filled += 1;
                if filled == m {
                    break 'fill;
                }
            }
        }
        table
    }

    #[test]
    fn tables_are_the_papers_population_slot_for_slot() {
        for n in [1, 2, 3, 10, 11, 100, 700] {
            for m in [251, 1021, table_size(n)] {
                let names = names(n);
                assert_eq!(
                    *build(&names, m),
                    *build_by_division(&names, m),
                    "n={n} m={m}"
                );
            }
        }
    }

    #[test]
    fn sizes_keep_a_hundred_slots_per_backend_until_the_largest() {
        assert_eq!(table_size(0), 251);
        assert_eq!(table_size(2), 251);
        assert_eq!(table_size(10), 1021);
        assert_eq!(table_size(100), 16381);
        assert_eq!(table_size(10_000), 65521);
        assert!(build::<&str>(&[], 251).is_empty());
    }
}
