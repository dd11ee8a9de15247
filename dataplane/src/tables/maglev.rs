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

use std::net::Ipv4Addr;

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
    // per probe; the same slots in the same order. Once a third of the table is taken, four
    // candidates are looked at per step (the skip's multiples precomputed): most searches end
    // within four, so the branch that ends a search goes the same way far more often than
    // with one candidate at a time, whose 1, 2 or 3 probes mispredicted it (most of the build
    // time). Before that the first candidate is nearly always free and one at a time is
    // cheaper. 10k tables of 1021 slots: ~1/3 less time than one at a time throughout.
    let step = |slot: usize, skip: usize| {
        let next = slot + skip;
        if next >= m {
            next - m
        } else {
            next
        }
    };
    // (next candidate, the skip times 0 to 3, four times the skip)
    let mut perms: Vec<(usize, [usize; 4], usize)> = names[..n]
        .iter()
        .map(|name| {
            let name = name.as_ref();
            let offset = (hash(name, 0x6d61_676c_6576_3031) % m as u64) as usize;
            let skip = (hash(name, 0x6d61_676c_6576_3032) % (m as u64 - 1)) as usize + 1;
            let twice = step(skip, skip);
            let thrice = step(twice, skip);
            (offset, [0, skip, twice, thrice], step(thrice, skip))
        })
        .collect();
    let one_by_one = m / 3;
    let mut table = vec![u16::MAX; m];
    let mut filled = 0;
    'fill: loop {
        for (i, (next, multiples, four)) in perms.iter_mut().enumerate() {
            let [_, skip, twice, thrice] = *multiples;
            let mut slot = *next;
            if filled < one_by_one {
                while table[slot] != u16::MAX {
                    slot = step(slot, skip);
                }
            } else {
                loop {
                    let (s1, s2, s3) = (step(slot, skip), step(slot, twice), step(slot, thrice));
                    let free = u32::from(table[slot] == u16::MAX)
                        | u32::from(table[s1] == u16::MAX) << 1
                        | u32::from(table[s2] == u16::MAX) << 2
                        | u32::from(table[s3] == u16::MAX) << 3;
                    if free != 0 {
                        slot = step(slot, multiples[free.trailing_zeros() as usize]);
                        break;
                    }
                    slot = step(slot, *four);
                }
            }
            table[slot] = i as u16;
            *next = step(slot, skip);
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table.into_boxed_slice()
}

/// A backend's name as [`build`] takes it, `ip:port` (`10.244.1.2:8080`), written into a
/// buffer of its own: the same bytes as `format!("{ip}:{port}")` without an allocation and
/// the formatter (100k endpoints are 100k names per compile).
#[derive(Debug, Clone, Copy)]
pub struct EndpointName {
    bytes: [u8; 21],
    len: u8,
}

impl EndpointName {
    /// `ip:port`.
    pub fn new(ip: Ipv4Addr, port: u16) -> EndpointName {
        let mut name = EndpointName {
            bytes: [0; 21],
            len: 0,
        };
        for (i, octet) in ip.octets().into_iter().enumerate() {
            if i > 0 {
                name.push(b'.');
            }
            name.push_decimal(octet.into());
        }
        name.push(b':');
        name.push_decimal(port.into());
        name
    }

    fn push(&mut self, byte: u8) {
        self.bytes[usize::from(self.len)] = byte;
        self.len += 1;
    }

    fn push_decimal(&mut self, value: u32) {
        let mut digits = [0u8; 5];
        let mut n = 0;
        let mut rest = value;
        loop {
            digits[n] = b'0' + (rest % 10) as u8;
            n += 1;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for &d in digits[..n].iter().rev() {
            self.push(d);
        }
    }
}

impl AsRef<[u8]> for EndpointName {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
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
        for n in [1, 2, 3, 4, 5, 10, 11, 100, 251, 700, 1000] {
            for m in [251, 509, 1021, table_size(n), 65521] {
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
    fn an_endpoint_name_is_ip_colon_port() {
        for (ip, port) in [
            (Ipv4Addr::new(0, 0, 0, 0), 0),
            (Ipv4Addr::new(10, 244, 1, 2), 8080),
            (Ipv4Addr::new(255, 255, 255, 255), 65535),
            (Ipv4Addr::new(1, 20, 100, 9), 9),
            (Ipv4Addr::new(192, 168, 10, 100), 10000),
        ] {
            let name = EndpointName::new(ip, port);
            assert_eq!(name.as_ref(), format!("{ip}:{port}").as_bytes());
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
