//! IPv4 longest-prefix match.
//!
//! One exact-match hash table per prefix length in use, probed from the longest length down.
//! A node's table has few distinct lengths (pods /32, the pod CIDR, other nodes' CIDRs, the
//! default route), so a lookup is two or three hash probes whatever the number of pods, and a
//! rebuild for a new snapshot is linear in the number of routes.

use crate::batch::PortId;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

/// Where a matched packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteTarget {
    /// Out of a pod port, to the pod's MAC.
    Port(PortId),
    /// To the node's stack through the host port.
    Host,
    /// Nowhere: ICMP host unreachable.
    Unreachable,
    /// Another node's pods: out of the uplink to `Tables::next_hops[i]` (routed, or
    /// encapsulated to it: the uplink's `Encap` says which).
    Node(u16),
    /// Outside the cluster through the uplink (never encapsulated; a new connection is
    /// translated to the uplink's address): to the gateway at `Tables::next_hops[i]`, or to the
    /// destination itself on the underlay's segment (`NextHops::SEGMENT`).
    Egress(u16),
}

/// A route: `prefix/len → target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Network address (host bits zero).
    pub prefix: Ipv4Addr,
    /// Prefix length.
    pub len: u8,
    /// Target.
    pub target: RouteTarget,
}

/// Multiplicative hash with a folded 128-bit product: every input bit reaches the low bits that
/// pick the bucket and the high bits that hashbrown keeps as tags.
#[derive(Debug, Default, Clone, Copy)]
pub struct AddrHasher(u64);

impl Hasher for AddrHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b) ^ (self.0 as u32).rotate_left(8));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        let m = u128::from(u64::from(n) ^ self.0).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

type AddrMap<V> = HashMap<u32, V, BuildHasherDefault<AddrHasher>>;

/// The routing table of one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Fib {
    /// (length, mask, table), longest length first; only lengths that hold routes.
    levels: Vec<(u8, u32, AddrMap<RouteTarget>)>,
    len: usize,
}

fn mask(len: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0)
}

impl Fib {
    /// Builds a table; a later route for the same prefix replaces an earlier one.
    pub fn new(routes: impl IntoIterator<Item = Route>) -> Self {
        let mut by_len: [Option<AddrMap<RouteTarget>>; 33] = std::array::from_fn(|_| None);
        for r in routes {
            let len = r.len.min(32);
            by_len[len as usize]
                .get_or_insert_with(AddrMap::default)
                .insert(u32::from(r.prefix) & mask(len), r.target);
        }
        let levels: Vec<_> = by_len
            .into_iter()
            .enumerate()
            .rev()
            .filter_map(|(len, t)| t.map(|t| (len as u8, mask(len as u8), t)))
            .collect();
        let len = levels.iter().map(|l| l.2.len()).sum();
        Self { levels, len }
    }

    /// The target of the longest prefix containing `dst`.
    #[inline]
    pub fn lookup(&self, dst: Ipv4Addr) -> Option<RouteTarget> {
        let dst = u32::from(dst);
        self.levels
            .iter()
            .find_map(|(_, mask, t)| t.get(&(dst & mask)).copied())
    }

    /// Number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every route, longest prefix first.
    pub fn routes(&self) -> impl Iterator<Item = Route> + '_ {
        self.levels.iter().flat_map(|(len, _, t)| {
            let mut v: Vec<_> = t.iter().collect();
            v.sort_by_key(|(p, _)| **p);
            v.into_iter().map(move |(p, target)| Route {
                prefix: Ipv4Addr::from(*p),
                len: *len,
                target: *target,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str, len: u8, target: RouteTarget) -> Route {
        Route {
            prefix: p.parse().unwrap(),
            len,
            target,
        }
    }

    #[test]
    fn longest_prefix_wins() {
        let fib = Fib::new([
            r("0.0.0.0", 0, RouteTarget::Host),
            r("10.244.1.0", 24, RouteTarget::Unreachable),
            r("10.244.1.5", 32, RouteTarget::Port(3)),
        ]);
        let at = |s: &str| fib.lookup(s.parse().unwrap());
        assert_eq!(at("10.244.1.5"), Some(RouteTarget::Port(3)));
        assert_eq!(at("10.244.1.6"), Some(RouteTarget::Unreachable));
        assert_eq!(at("8.8.8.8"), Some(RouteTarget::Host));
        assert_eq!(fib.len(), 3);
    }

    #[test]
    fn no_default_means_no_route_and_host_bits_are_ignored() {
        let fib = Fib::new([r("10.1.2.3", 16, RouteTarget::Host)]);
        assert_eq!(
            fib.lookup("10.1.200.1".parse().unwrap()),
            Some(RouteTarget::Host)
        );
        assert_eq!(fib.lookup("10.2.0.1".parse().unwrap()), None);
        assert_eq!(fib.routes().next().unwrap().prefix.to_string(), "10.1.0.0");
    }

    #[test]
    fn later_route_for_same_prefix_replaces() {
        let fib = Fib::new([
            r("10.0.0.0", 8, RouteTarget::Host),
            r("10.0.0.0", 8, RouteTarget::Unreachable),
        ]);
        assert_eq!(fib.len(), 1);
        assert_eq!(
            fib.lookup("10.9.9.9".parse().unwrap()),
            Some(RouteTarget::Unreachable)
        );
    }

    /// Differential check against a linear scan over random tables.
    #[test]
    fn agrees_with_a_linear_scan() {
        let mut x: u32 = 0x1234_5678;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        for _ in 0..20 {
            let routes: Vec<Route> = (0..200)
                .map(|i| {
                    let len = (next() % 33) as u8;
                    Route {
                        prefix: Ipv4Addr::from(next() & mask(len) & 0xff0f_ffff),
                        len,
                        target: RouteTarget::Port(i),
                    }
                })
                .collect();
            let fib = Fib::new(routes.iter().copied());
            for _ in 0..500 {
                let dst = next() & 0xff0f_ffff;
                let expect = routes
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| dst & mask(r.len) == u32::from(r.prefix))
                    // Longest prefix; among equal prefixes, the last one added.
                    .max_by_key(|(i, r)| (r.len, *i))
                    .map(|(_, r)| r.target);
                assert_eq!(fib.lookup(Ipv4Addr::from(dst)), expect);
            }
        }
    }
}
