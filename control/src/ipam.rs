//! IP address management for the node's pod CIDR: pure logic over the allocations the store
//! holds. The caller reads the allocations and the last-allocated address inside the same
//! database transaction that records the result, so two attachments can never get one
//! address, not even across restarts.
//!
//! Assignable addresses are the pod CIDR minus its network address, its broadcast address and
//! the gateway. The search is **next after last**: it starts just after the address allocated
//! last (persisted) and wraps around, like host-local's `lastReservedIP`. A released address is
//! therefore reused as late as possible, so a peer that still holds state about the old pod
//! (a conntrack entry, an open connection, a cached endpoint) does not reach a new pod by
//! mistake; the cost is a linear scan over the pool in the worst case, which for a node's
//! /24 (or even a /16) is microseconds.

use podswitch_proto::Ipv4Prefix;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Why no address could be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    /// Every assignable address is allocated.
    #[error(
        "address pool {cidr} is exhausted: all {capacity} pod addresses are allocated; \
         delete pods (CNI DEL/GC) or give the node a larger pod_cidr"
    )]
    Exhausted {
        /// The pool.
        cidr: Ipv4Prefix,
        /// How many addresses it has.
        capacity: u32,
    },
    /// The requested address is not in the pod CIDR.
    #[error("requested IP {ip} is outside the node's pod CIDR {cidr}")]
    Outside {
        /// Requested.
        ip: Ipv4Addr,
        /// The pool.
        cidr: Ipv4Prefix,
    },
    /// The requested address is the network, broadcast or gateway address.
    #[error("requested IP {ip} is the pod CIDR's {what} and cannot be given to a pod")]
    Reserved {
        /// Requested.
        ip: Ipv4Addr,
        /// `network address`, `broadcast address` or `gateway`.
        what: &'static str,
    },
    /// Another attachment holds the requested address.
    #[error("requested IP {ip} is already allocated to {owner}")]
    Taken {
        /// Requested.
        ip: Ipv4Addr,
        /// The owner's key, `container_id/ifname`.
        owner: String,
    },
}

/// The node's address pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    cidr: Ipv4Prefix,
    gateway: Ipv4Addr,
}

impl Pool {
    /// The pool of `cidr` (host bits are ignored) with `gateway` reserved. A /31 or /32 has no
    /// assignable address.
    pub fn new(cidr: Ipv4Prefix, gateway: Ipv4Addr) -> Pool {
        Pool {
            cidr: cidr.network(),
            gateway,
        }
    }

    /// Network and broadcast addresses as integers.
    fn bounds(&self) -> (u32, u32) {
        (u32::from(self.cidr.addr), u32::from(self.cidr.broadcast()))
    }

    /// How many addresses can be given to pods.
    pub fn capacity(&self) -> u32 {
        let (net, bcast) = self.bounds();
        let hosts = bcast.saturating_sub(net).saturating_sub(1);
        let g = u32::from(self.gateway);
        hosts - u32::from(g > net && g < bcast)
    }

    /// What `ip` is if it may not be given to a pod.
    fn reserved(&self, ip: Ipv4Addr) -> Option<&'static str> {
        let (net, bcast) = self.bounds();
        match u32::from(ip) {
            v if v == net => Some("network address"),
            v if v == bcast => Some("broadcast address"),
            _ if ip == self.gateway => Some("gateway"),
            _ => None,
        }
    }

    /// Chooses an address: `requested` if it is assignable and free, else the first free one
    /// after `last` (wrapping around). `allocated` maps every allocated address to its owner.
    pub fn allocate(
        &self,
        allocated: &BTreeMap<Ipv4Addr, String>,
        last: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        if let Some(ip) = requested {
            if !self.cidr.contains(ip) {
                return Err(IpamError::Outside {
                    ip,
                    cidr: self.cidr,
                });
            }
            if let Some(what) = self.reserved(ip) {
                return Err(IpamError::Reserved { ip, what });
            }
            if let Some(owner) = allocated.get(&ip) {
                return Err(IpamError::Taken {
                    ip,
                    owner: owner.clone(),
                });
            }
            return Ok(ip);
        }
        let (net, bcast) = self.bounds();
        let exhausted = IpamError::Exhausted {
            cidr: self.cidr,
            capacity: self.capacity(),
        };
        if bcast - net < 2 {
            return Err(exhausted);
        }
        let (first, end) = (net + 1, bcast - 1);
        let start = match last.map(u32::from) {
            Some(l) if (first..end).contains(&l) => l + 1,
            _ => first,
        };
        // Every host address once: start..=end, then first..start.
        (start..=end)
            .chain(first..start)
            .map(Ipv4Addr::from)
            .find(|ip| ip != &self.gateway && !allocated.contains_key(ip))
            .ok_or(exhausted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool29() -> Pool {
        // 10.0.0.0/29: .0 network, .1 gateway, .7 broadcast: .2 to .6 for pods.
        Pool::new("10.0.0.0/29".parse().unwrap(), Ipv4Addr::new(10, 0, 0, 1))
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 0, 0, last)
    }

    /// Allocates like the store does: record the owner, remember the last.
    fn take(
        p: &Pool,
        alloc: &mut BTreeMap<Ipv4Addr, String>,
        last: &mut Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, IpamError> {
        let got = p.allocate(alloc, *last, None)?;
        alloc.insert(got, format!("c{}/eth0", alloc.len()));
        *last = Some(got);
        Ok(got)
    }

    #[test]
    fn a_slash_29_gives_five_addresses_then_is_exhausted() {
        let p = pool29();
        assert_eq!(p.capacity(), 5);
        let (mut alloc, mut last) = (BTreeMap::new(), None);
        let got: Vec<_> = (0..5)
            .map(|_| take(&p, &mut alloc, &mut last).unwrap())
            .collect();
        assert_eq!(got, vec![ip(2), ip(3), ip(4), ip(5), ip(6)]);
        let err = take(&p, &mut alloc, &mut last).unwrap_err();
        assert_eq!(
            err,
            IpamError::Exhausted {
                cidr: "10.0.0.0/29".parse().unwrap(),
                capacity: 5
            }
        );
        assert!(err.to_string().contains("exhausted"), "{err}");
    }

    #[test]
    fn released_address_is_reused_only_after_the_others() {
        let p = pool29();
        let (mut alloc, mut last) = (BTreeMap::new(), None);
        for _ in 0..3 {
            take(&p, &mut alloc, &mut last).unwrap(); // .2 .3 .4
        }
        alloc.remove(&ip(3));
        // Next after last (.4) comes first, then wrap to the freed .3.
        assert_eq!(take(&p, &mut alloc, &mut last).unwrap(), ip(5));
        assert_eq!(take(&p, &mut alloc, &mut last).unwrap(), ip(6));
        assert_eq!(take(&p, &mut alloc, &mut last).unwrap(), ip(3));
        assert!(take(&p, &mut alloc, &mut last).is_err());
        // A full pool with one released gives exactly that one.
        alloc.remove(&ip(5));
        assert_eq!(take(&p, &mut alloc, &mut last).unwrap(), ip(5));
    }

    #[test]
    fn gateway_in_the_middle_is_skipped() {
        let p = Pool::new("10.0.0.0/29".parse().unwrap(), ip(3));
        assert_eq!(p.capacity(), 5);
        let (mut alloc, mut last) = (BTreeMap::new(), None);
        let got: Vec<_> = (0..5)
            .map(|_| take(&p, &mut alloc, &mut last).unwrap())
            .collect();
        assert_eq!(got, vec![ip(1), ip(2), ip(4), ip(5), ip(6)]);
    }

    #[test]
    fn requested_address_is_honoured_or_refused_with_the_reason() {
        let p = pool29();
        let alloc = BTreeMap::from([(ip(4), "abc/eth0".to_string())]);
        assert_eq!(p.allocate(&alloc, None, Some(ip(5))), Ok(ip(5)));
        let taken = p.allocate(&alloc, None, Some(ip(4))).unwrap_err();
        assert!(
            taken.to_string().contains("already allocated to abc/eth0"),
            "{taken}"
        );
        let outside = p
            .allocate(&alloc, None, Some(Ipv4Addr::new(10, 0, 1, 2)))
            .unwrap_err();
        assert!(matches!(outside, IpamError::Outside { .. }), "{outside}");
        for (r, what) in [(0, "network"), (1, "gateway"), (7, "broadcast")] {
            let e = p
                .allocate(&alloc, None, Some(ip(r)))
                .unwrap_err()
                .to_string();
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn a_stale_last_outside_the_pool_starts_from_the_beginning() {
        let p = pool29();
        let got = p
            .allocate(&BTreeMap::new(), Some(Ipv4Addr::new(192, 168, 0, 9)), None)
            .unwrap();
        assert_eq!(got, ip(2));
        // After the highest address the search wraps around.
        assert_eq!(
            p.allocate(&BTreeMap::new(), Some(ip(6)), None).unwrap(),
            ip(2)
        );
    }

    #[test]
    fn tiny_pools_have_no_room() {
        let p = Pool::new("10.0.0.0/31".parse().unwrap(), ip(0));
        assert_eq!(p.capacity(), 0);
        assert!(p.allocate(&BTreeMap::new(), None, None).is_err());
        let p30 = Pool::new("10.0.0.0/30".parse().unwrap(), ip(1));
        assert_eq!(p30.capacity(), 1);
        assert_eq!(p30.allocate(&BTreeMap::new(), None, None).unwrap(), ip(2));
    }
}
