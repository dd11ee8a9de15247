//! The Internet checksum (RFC 1071) shared by IPv4, ICMPv4, UDP and TCP, and its incremental
//! update (RFC 1624, eqn. 3) used when the pipeline rewrites a field (TTL, NAT addresses and
//! ports) without re-summing the whole packet.
//!
//! Vocabulary: a *sum* is the folded 16-bit ones'-complement sum of some bytes (what
//! [`sum`], [`combine`] and [`pseudo_header_ipv4`] return); a *checksum* is the complement of
//! the sum over the whole covered region, i.e. what goes on the wire ([`checksum`]).

use core::net::Ipv4Addr;

use crate::ipv4::IpProtocol;

/// Folds a 64-bit ones'-complement accumulator to 16 bits with end-around carry.
#[inline]
const fn fold(acc: u64) -> u16 {
    // Each step keeps the value congruent mod 0xFFFF and never turns a non-zero value into 0,
    // so the result equals the plain 16-bit ones'-complement sum. Four fixed steps always
    // suffice for 64 bits (≤ 2^33, ≤ 2^17 + 2^16, ≤ 2^16 + 1, ≤ 2^16 - 1), and a value that is
    // already ≤ 0xFFFF passes through unchanged, so this equals folding until it fits —
    // without the loop's branches on the hot path.
    let acc = (acc & 0xFFFF_FFFF) + (acc >> 32);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    let acc = (acc & 0xFFFF) + (acc >> 16);
    acc as u16
}

/// The ones'-complement sum of an option-less IPv4 header (20 bytes), as five 32-bit words:
/// the common case of [`sum`], without its chunking.
#[inline]
pub fn sum_ipv4_header(h: &[u8; 20]) -> u16 {
    let word = |i: usize| u64::from(u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
    fold(word(0) + word(4) + word(8) + word(12) + word(16))
}

/// Adds `word` to `acc` in 64-bit ones'-complement arithmetic (end-around carry).
#[inline]
const fn add64(acc: u64, word: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(word);
    // After an overflow `s <= u64::MAX - 1`, so adding the carry back cannot overflow.
    s + carry as u64
}

/// The ones'-complement sum of `data` taken as big-endian 16-bit words (an odd final byte is
/// padded with a zero), folded to 16 bits. Not complemented.
///
/// Eight bytes are summed at a time as one big-endian `u64` with end-around carry: since
/// 2^16 - 1 divides 2^64 - 1 this is congruent to the 16-bit sum, and folding gives exactly
/// the RFC 1071 result (see RFC 1071 section 2(C), "parallel summation").
#[inline]
pub fn sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        acc = add64(acc, w);
    }
    let rest = chunks.remainder();
    let mut pairs = rest.chunks_exact(2);
    for p in &mut pairs {
        acc = add64(acc, u64::from(u16::from_be_bytes([p[0], p[1]])));
    }
    if let [last] = pairs.remainder() {
        acc = add64(acc, u64::from(*last) << 8);
    }
    fold(acc)
}

/// The Internet checksum of `data`: the complement of [`sum`]. Writing this into a zeroed
/// checksum field makes [`sum`] over the region come out as `0xFFFF`.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !sum(data)
}

/// Combines partial sums (from [`sum`] or [`pseudo_header_ipv4`]) into one sum.
///
/// Each part must cover an even number of bytes except possibly the last, since an odd
/// part would shift the byte lanes of the parts after it.
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    let mut acc: u64 = 0;
    for &s in sums {
        acc += u64::from(s);
        // Fold as we go so an arbitrarily long slice cannot overflow the accumulator.
        acc = u64::from(fold(acc));
    }
    fold(acc)
}

/// The sum of the IPv4 pseudo-header that UDP and TCP checksums cover (RFC 768, RFC 793
/// section 3.1): source, destination, zero, protocol and the UDP/TCP length in octets.
#[inline]
pub fn pseudo_header_ipv4(src: Ipv4Addr, dst: Ipv4Addr, protocol: IpProtocol, len: u16) -> u16 {
    let s = u64::from(u32::from(src));
    let d = u64::from(u32::from(dst));
    let acc = (s >> 16) + (s & 0xFFFF) + (d >> 16) + (d & 0xFFFF);
    fold(acc + u64::from(protocol.0) + u64::from(len))
}

/// Updates checksum `csum` for one 16-bit word of the covered data changing from `old` to
/// `new` (RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`).
///
/// Given a correct `csum`, the result equals a full recomputation, including the cases where
/// the checksum is or becomes `0x0000` (eqn. 3 exists because the older eqn. 2 of RFC 1141
/// could produce `0xFFFF` there) — with one exception: when everything else the checksum
/// covers is zero, it yields `0x0000` where a full recomputation gives `0xFFFF`, and `0x0000`
/// does not verify then. That cannot happen for an IPv4 header (its first byte is never zero)
/// or for TCP/UDP (the pseudo-header holds the protocol), but it can for an ICMP message: see
/// [`crate::Icmpv4Packet::make_echo_reply`].
#[inline]
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    update_by(csum, Diff::u16(old, new))
}

/// Updates checksum `csum` for a 32-bit aligned value (an IPv4 address, say) changing from
/// `old` to `new`; equivalent to two [`update_u16`] calls, one per half.
#[inline]
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    update_by(csum, Diff::u32(old, new))
}

/// The change several rewritten 16-bit words make to a checksum, accumulated unfolded
/// (RFC 1624 eqn. 3's `~m + m'` per word), so a rewrite of addresses and ports updates each
/// checksum that covers them once ([`update_by`], [`update_sum_by`]) with the same result as
/// one [`update_u16`] per word.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Diff(u64);

impl Diff {
    /// One 16-bit word changing from `old` to `new`.
    #[inline]
    pub const fn u16(old: u16, new: u16) -> Diff {
        Diff(!old as u64 + new as u64)
    }

    /// A 32-bit aligned value changing from `old` to `new` (two words).
    #[inline]
    pub const fn u32(old: u32, new: u32) -> Diff {
        Diff(
            (!(old >> 16) & 0xFFFF) as u64
                + (!old & 0xFFFF) as u64
                + (new >> 16) as u64
                + (new & 0xFFFF) as u64,
        )
    }

    /// Both changes (the u64 holds the sum of 2^47 words before it could overflow).
    #[inline]
    #[must_use]
    pub const fn plus(self, other: Diff) -> Diff {
        Diff(self.0 + other.0)
    }

    /// True when the changes add nothing to a checksum (none accumulated, or only a word
    /// going from 0xFFFF to 0, the same value in ones' complement).
    #[inline]
    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }
}

/// Updates checksum `csum` (as on the wire) for every change `diff` holds (RFC 1624 eqn. 3).
#[inline]
pub fn update_by(csum: u16, diff: Diff) -> u16 {
    !fold(u64::from(!csum) + diff.0)
}

/// Updates an uncomplemented sum (a partial checksum's pseudo-header sum, say) for every change
/// `diff` holds.
#[inline]
pub fn update_sum_by(sum: u16, diff: Diff) -> u16 {
    fold(u64::from(sum) + diff.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// One update by summed differences equals one [`update_u16`] per word, for complete
    /// checksums (with UDP's 0 → 0xFFFF after each step) and uncomplemented sums, with words
    /// biased to 0, 0xFFFF, 1 and 0xFFFE (unchanged words are skipped, as callers do).
    #[test]
    fn summed_differences_update_as_one_update_per_word() {
        let mut s = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let pick = |n: &mut dyn FnMut() -> u64| -> u16 {
            match n() % 6 {
                0 => 0,
                1 => 0xFFFF,
                2 => 1,
                3 => 0xFFFE,
                _ => n() as u16,
            }
        };
        let nonzero = |v: u16| if v == 0 { 0xFFFF } else { v };
        for _ in 0..200_000 {
            let c0 = pick(&mut next);
            let (mut full, mut udp, mut sum) = (c0, c0, c0);
            let mut diff = Diff::default();
            for _ in 0..1 + next() % 6 {
                let old = pick(&mut next);
                let new = if next() % 5 == 0 {
                    old
                } else {
                    pick(&mut next)
                };
                if old == new {
                    continue;
                }
                full = update_u16(full, old, new);
                udp = nonzero(update_u16(udp, old, new));
                sum = !update_u16(!sum, old, new);
                diff = diff.plus(Diff::u16(old, new));
            }
            let fused = |f: fn(u16, Diff) -> u16| if diff.is_zero() { c0 } else { f(c0, diff) };
            assert_eq!(fused(update_by), full, "checksum {c0:#x}, {diff:?}");
            if c0 != 0 {
                // A UDP checksum of 0 means none: never updated.
                assert_eq!(nonzero(fused(update_by)), udp, "UDP {c0:#x}, {diff:?}");
            }
            assert_eq!(fused(update_sum_by), sum, "sum {c0:#x}, {diff:?}");
        }
    }

    /// Textbook 16-bit-at-a-time sum, the reference for the fast one.
    fn slow_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            acc += u32::from(w);
            acc = (acc >> 16) + (acc & 0xFFFF);
        }
        acc as u16
    }

    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn empty_and_zero_data_sum_to_zero() {
        assert_eq!(sum(&[]), 0);
        assert_eq!(sum(&[0; 37]), 0);
        assert_eq!(checksum(&[]), 0xFFFF);
    }

    #[test]
    fn all_ones_data_sums_to_ffff_not_zero() {
        assert_eq!(sum(&[0xFF; 64]), 0xFFFF);
        assert_eq!(sum(&[0xFF; 10]), 0xFFFF);
        assert_eq!(sum(&[0xFF; 9]), 0xFF00); // the odd byte is padded: 0xFF00 +' -0
    }

    #[test]
    fn odd_length_pads_last_byte_high() {
        assert_eq!(sum(&[0x12]), 0x1200);
        assert_eq!(sum(&[0x00, 0x01, 0x02]), 0x0201);
    }

    #[test]
    fn fast_sum_matches_textbook_sum_on_random_lengths() {
        let mut rng = 0x1234_5678_9abc_def0u64;
        let mut buf = [0u8; 300];
        for _ in 0..2000 {
            let len = (xorshift(&mut rng) % 300) as usize;
            let fill = xorshift(&mut rng) % 4;
            for b in buf.iter_mut().take(len) {
                *b = match fill {
                    0 => 0xFF, // exercise the 64-bit carry path
                    1 => 0x00,
                    _ => xorshift(&mut rng) as u8,
                };
            }
            assert_eq!(sum(&buf[..len]), slow_sum(&buf[..len]), "len {len}");
        }
    }

    #[test]
    fn combine_of_even_parts_equals_sum_of_whole() {
        let data: std::vec::Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        let (a, b) = data.split_at(400);
        assert_eq!(combine(&[sum(a), sum(b)]), sum(&data));
        assert_eq!(combine(&[]), 0);
        assert_eq!(combine(&[0xFFFF, 0xFFFF]), 0xFFFF);
        assert_eq!(combine(&[0xFFFF; 1000]), 0xFFFF);
    }

    #[test]
    fn pseudo_header_matches_summing_its_bytes() {
        let src = Ipv4Addr::new(192, 168, 1, 1);
        let dst = Ipv4Addr::new(255, 255, 255, 254);
        let mut bytes = [0u8; 12];
        bytes[0..4].copy_from_slice(&src.octets());
        bytes[4..8].copy_from_slice(&dst.octets());
        bytes[9] = 17;
        bytes[10..12].copy_from_slice(&1234u16.to_be_bytes());
        assert_eq!(
            pseudo_header_ipv4(src, dst, IpProtocol::UDP, 1234),
            sum(&bytes)
        );
    }

    /// Writes `word` at `at` into `data`, updating the checksum at `csum_at` incrementally,
    /// and checks the result against a full recomputation.
    fn check_incremental(data: &mut [u8], csum_at: usize, at: usize, new: u16) {
        let old = u16::from_be_bytes([data[at], data[at + 1]]);
        let csum = u16::from_be_bytes([data[csum_at], data[csum_at + 1]]);
        data[at..at + 2].copy_from_slice(&new.to_be_bytes());
        let incremental = update_u16(csum, old, new);
        data[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let full = checksum(data);
        assert_eq!(
            incremental, full,
            "csum {csum:#06x} old {old:#06x} new {new:#06x}"
        );
        data[csum_at..csum_at + 2].copy_from_slice(&full.to_be_bytes());
    }

    #[test]
    fn update_u16_equals_full_recompute_for_random_rewrites() {
        let mut rng = 42u64;
        for _ in 0..5000 {
            let mut data = [0u8; 20];
            for b in &mut data {
                *b = xorshift(&mut rng) as u8;
            }
            data[0] |= 0x01; // a non-zero word outside the rewritten one, as in any real header
            data[10..12].copy_from_slice(&[0, 0]);
            let c = checksum(&data);
            data[10..12].copy_from_slice(&c.to_be_bytes());
            let at = 2 * (1 + (xorshift(&mut rng) % 4) as usize);
            check_incremental(&mut data, 10, at, xorshift(&mut rng) as u16);
        }
    }

    #[test]
    fn update_u16_handles_checksum_zero_and_ffff_sums() {
        // Sum of the other words is 0xFFFF - x, so choosing the rewritten word hits every edge:
        // checksum 0x0000 before or after the update, and words 0x0000 / 0xFFFF.
        for other in [0x0001u16, 0x1234, 0xFFFE, 0xFFFF] {
            for start in [0x0000u16, 0x0001, 0xFFFE, 0xFFFF, !other, other] {
                for new in [0x0000u16, 0x0001, 0xFFFE, 0xFFFF, !other, other] {
                    let mut data = [0u8; 6];
                    data[0..2].copy_from_slice(&other.to_be_bytes());
                    data[2..4].copy_from_slice(&start.to_be_bytes());
                    let c = checksum(&data);
                    data[4..6].copy_from_slice(&c.to_be_bytes());
                    check_incremental(&mut data, 4, 2, new);
                }
            }
        }
    }

    #[test]
    fn update_u32_equals_two_u16_updates_and_full_recompute() {
        let mut rng = 7u64;
        for _ in 0..2000 {
            let mut data = [0u8; 12];
            for b in &mut data {
                *b = xorshift(&mut rng) as u8;
            }
            data[0] |= 0x80;
            data[8..10].copy_from_slice(&[0, 0]);
            let c = checksum(&data);
            data[8..10].copy_from_slice(&c.to_be_bytes());
            let old = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
            let new = xorshift(&mut rng) as u32;
            let inc = update_u32(c, old, new);
            let two = update_u16(
                update_u16(c, (old >> 16) as u16, (new >> 16) as u16),
                old as u16,
                new as u16,
            );
            data[4..8].copy_from_slice(&new.to_be_bytes());
            data[8..10].copy_from_slice(&[0, 0]);
            assert_eq!(inc, checksum(&data));
            assert_eq!(inc, two);
        }
    }

    #[test]
    fn ipv4_header_fast_path_equals_the_general_sum() {
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..10_000 {
            let mut h = [0u8; 20];
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            assert_eq!(sum_ipv4_header(&h), sum(&h));
        }
        assert_eq!(sum_ipv4_header(&[0xFF; 20]), sum(&[0xFF; 20]));
        assert_eq!(sum_ipv4_header(&[0; 20]), 0);
    }
}
