//! IP addresses and CIDRs as manifests write them (`10.244.1.0/24`, `fd00::/64`).
//!
//! A CIDR with host bits set (`10.244.1.5/24`) is rejected with the canonical form as a hint,
//! so every CIDR the control process receives means exactly what it says (a node's gateway is
//! the first address of its podCIDR) — except in a NetworkPolicy's ipBlock, where the API
//! server accepts it as its network with a warning, and so does `apiserver.rs` ([`lenient`]).
//! Addresses are parsed by `std`, which rejects IPv4 with leading zeros (`010.0.0.1`), as
//! current Kubernetes does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network in canonical form: no bits set past `prefix_len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub(crate) addr: IpAddr,
    pub(crate) prefix_len: u8,
}

impl Cidr {
    /// True when `other` lies inside this network (same family, longer or equal prefix).
    pub(crate) fn contains(&self, other: &Cidr) -> bool {
        if other.prefix_len < self.prefix_len {
            return false;
        }
        match (self.addr, other.addr) {
            (IpAddr::V4(net), IpAddr::V4(addr)) => mask_v4(addr, self.prefix_len) == net,
            (IpAddr::V6(net), IpAddr::V6(addr)) => mask_v6(addr, self.prefix_len) == net,
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

fn mask_v4(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Addr {
    let bits = u32::from(addr);
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv4Addr::from(bits & mask)
}

fn mask_v6(addr: Ipv6Addr, prefix_len: u8) -> Ipv6Addr {
    let bits = u128::from(addr);
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0);
    Ipv6Addr::from(bits & mask)
}

/// Parses `ADDRESS/PREFIX-LENGTH` of either family; `Err` is the reason to show.
pub(crate) fn cidr(value: &str) -> Result<Cidr, String> {
    let (net, masked) = lenient(value)?;
    if masked {
        return Err(format!(
            "bits are set past the prefix length; did you mean {net}?"
        ));
    }
    Ok(net)
}

/// Parses like [`cidr`] but reads host bits as Go's `net.ParseCIDR` does (masked off): the
/// network, and whether any bit had to be cleared.
pub(crate) fn lenient(value: &str) -> Result<(Cidr, bool), String> {
    let Some((addr, len)) = value.split_once('/') else {
        return Err("expected ADDRESS/PREFIX-LENGTH, like 10.244.1.0/24".into());
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("{addr:?} is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len.parse::<u8>() {
        Ok(n) if len.bytes().all(|b| b.is_ascii_digit()) && n <= max => n,
        _ => {
            return Err(format!(
                "prefix length {len:?} is not a number in 0..={max}"
            ))
        }
    };
    let canonical = match addr {
        IpAddr::V4(a) => IpAddr::V4(mask_v4(a, prefix_len)),
        IpAddr::V6(a) => IpAddr::V6(mask_v6(a, prefix_len)),
    };
    Ok((
        Cidr {
            addr: canonical,
            prefix_len,
        },
        canonical != addr,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_must_be_canonical() {
        assert_eq!(
            cidr("10.244.1.0/24"),
            Ok(Cidr {
                addr: "10.244.1.0".parse().unwrap(),
                prefix_len: 24
            })
        );
        assert!(cidr("0.0.0.0/0").is_ok());
        assert!(cidr("10.0.0.1/32").is_ok());
        assert!(cidr("fd00:10::/64").is_ok());
        assert!(cidr("::/0").is_ok());
        assert_eq!(
            cidr("10.244.1.5/24"),
            Err("bits are set past the prefix length; did you mean 10.244.1.0/24?".into())
        );
        assert_eq!(
            cidr("10.0.0.0/33"),
            Err("prefix length \"33\" is not a number in 0..=32".into())
        );
        assert_eq!(
            cidr("10.0.0.0"),
            Err("expected ADDRESS/PREFIX-LENGTH, like 10.244.1.0/24".into())
        );
        assert!(cidr("10.0.0.0/+8").is_err());
        assert!(cidr("10.0.0/8").is_err());
        assert!(cidr("fd00::/129").is_err());
    }

    #[test]
    fn lenient_masks_host_bits_and_says_so() {
        let (net, masked) = lenient("10.0.0.1/8").unwrap();
        assert_eq!((net.to_string(), masked), ("10.0.0.0/8".to_string(), true));
        let (net, masked) = lenient("fd00::1/64").unwrap();
        assert_eq!((net.to_string(), masked), ("fd00::/64".to_string(), true));
        assert!(!lenient("10.0.0.0/8").unwrap().1);
        assert!(lenient("10.0.0.0/33").is_err());
    }

    #[test]
    fn contains_respects_family_and_prefix() {
        let net = cidr("10.0.0.0/8").unwrap();
        assert!(net.contains(&cidr("10.1.0.0/16").unwrap()));
        assert!(net.contains(&net));
        assert!(!net.contains(&cidr("11.0.0.0/16").unwrap()));
        assert!(!net.contains(&cidr("0.0.0.0/0").unwrap()));
        assert!(!net.contains(&cidr("fd00::/64").unwrap()));
        assert!(cidr("0.0.0.0/0")
            .unwrap()
            .contains(&cidr("192.168.1.0/24").unwrap()));
    }
}
