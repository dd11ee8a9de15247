//! Address types as they appear in messages: MACs and IPv4 prefixes, written as strings
//! (`"02:00:00:00:00:01"`, `"10.244.1.0/24"`) so that the JSON reads like `ip` output; and
//! the limits every process checks the same way: the MTU range a port may have, Linux's
//! interface-name rule, a prefix's broadcast and host addresses. One place each, so the CNI
//! plugin, control and the dataplane never disagree on what is valid.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

pub use podswitch_packet::MacAddr;

/// The MTUs a port (pod interface, host port) may have: from IPv4's minimum (RFC 791: every
/// host must accept 68-byte datagrams) to jumbo frames.
pub const MTU_RANGE: std::ops::RangeInclusive<u16> = 68..=9000;

/// Longest Linux interface name, in bytes (`IFNAMSIZ` - 1 for the NUL).
pub const IFNAME_MAX_LEN: usize = 15;

/// What is wrong with `name` as a Linux interface name (the kernel's `dev_valid_name`: 1 to
/// 15 bytes, not `.` or `..`, no `/`, `:`, whitespace or NUL), or `None` if it is valid.
pub fn ifname_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        Some("an interface name cannot be empty".into())
    } else if name.len() > IFNAME_MAX_LEN {
        Some(format!(
            "interface name {name:?} is {} bytes; Linux allows at most {IFNAME_MAX_LEN}",
            name.len()
        ))
    } else if name == "." || name == ".." {
        Some(format!("{name:?} is not a valid interface name"))
    } else if name
        .bytes()
        .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace() || b == 0x0b)
    {
        Some(format!(
            "interface name {name:?} contains '/', ':', whitespace or NUL"
        ))
    } else {
        None
    }
}

/// A malformed address string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {input:?} is malformed: expected {expected}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    expected: &'static str,
}

/// An IPv4 prefix such as `10.244.1.0/24`. The address is kept as given; [`Ipv4Prefix::network`]
/// masks off the host bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Prefix {
    /// The address part.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub len: u8,
}

impl Ipv4Prefix {
    /// A prefix; `None` when `len` exceeds 32.
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Self> {
        (len <= 32).then_some(Self { addr, len })
    }

    /// The netmask as a host-order integer.
    pub fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0)
    }

    /// The prefix with host bits cleared.
    pub fn network(&self) -> Ipv4Prefix {
        Ipv4Prefix {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }

    /// Whether `ip` falls inside the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// The broadcast address: every host bit set.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether the two prefixes share an address: the shorter one holds the longer one's.
    pub fn overlaps(&self, other: &Ipv4Prefix) -> bool {
        let (shorter, longer) = if self.len <= other.len {
            (self, other)
        } else {
            (other, self)
        };
        shorter.contains(longer.addr)
    }

    /// Whether `ip` is a host address of the prefix: inside it, and neither its network nor
    /// its broadcast address. (So a /31 or /32 has none: podswitch needs neither.)
    pub fn is_host(&self, ip: Ipv4Addr) -> bool {
        self.contains(ip) && ip != self.network().addr && ip != self.broadcast()
    }
}

impl fmt::Display for Ipv4Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Prefix {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseError {
            what: "IPv4 prefix",
            input: s.to_string(),
            expected: "ADDRESS/LEN such as 10.244.1.0/24",
        };
        let (addr, len) = s.split_once('/').ok_or_else(err)?;
        let addr = addr.parse().map_err(|_| err())?;
        let len = len.parse().map_err(|_| err())?;
        Ipv4Prefix::new(addr, len).ok_or_else(err)
    }
}

impl Serialize for Ipv4Prefix {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Prefix {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Serde for [`MacAddr`] as `"aa:bb:cc:dd:ee:ff"`; use with `#[serde(with = "mac")]`.
pub mod mac {
    use super::*;

    /// Serializes a MAC as a string.
    pub fn serialize<S: Serializer>(m: &MacAddr, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(m)
    }

    /// Deserializes a MAC from a string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MacAddr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|_| {
            serde::de::Error::custom(format!(
                "MAC address {s:?} is malformed: expected aa:bb:cc:dd:ee:ff"
            ))
        })
    }

    /// The same for `Option<MacAddr>`.
    pub mod option {
        use super::*;

        /// Serializes an optional MAC.
        pub fn serialize<S: Serializer>(m: &Option<MacAddr>, s: S) -> Result<S::Ok, S::Error> {
            match m {
                Some(m) => s.collect_str(m),
                None => s.serialize_none(),
            }
        }

        /// Deserializes an optional MAC.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<MacAddr>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| {
                    s.parse().map_err(|_| {
                        serde::de::Error::custom(format!(
                            "MAC address {s:?} is malformed: expected aa:bb:cc:dd:ee:ff"
                        ))
                    })
                })
                .transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_overlap_when_the_shorter_holds_the_longer_either_way_round() {
        let p = |s: &str| s.parse::<Ipv4Prefix>().unwrap();
        assert!(p("10.244.0.0/16").overlaps(&p("10.244.3.0/24")));
        assert!(p("10.244.3.0/24").overlaps(&p("10.244.0.0/16")));
        assert!(p("0.0.0.0/0").overlaps(&p("192.168.1.7/32")));
        assert!(
            p("10.244.3.9/24").overlaps(&p("10.244.3.0/24")),
            "host bits aside"
        );
        assert!(!p("10.244.3.0/24").overlaps(&p("10.244.4.0/24")));
        assert!(!p("10.96.0.0/12").overlaps(&p("10.244.0.0/16")));
    }

    #[test]
    fn prefix_parses_masks_and_contains() {
        let p: Ipv4Prefix = "10.244.1.7/24".parse().unwrap();
        assert_eq!(p.network().to_string(), "10.244.1.0/24");
        assert!(p.contains(Ipv4Addr::new(10, 244, 1, 200)));
        assert!(!p.contains(Ipv4Addr::new(10, 244, 2, 1)));
        let all: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.mask(), 0);
        assert!(all.contains(Ipv4Addr::new(8, 8, 8, 8)));
    }

    #[test]
    fn broadcast_and_host_addresses() {
        let p: Ipv4Prefix = "10.244.1.7/24".parse().unwrap();
        assert_eq!(p.broadcast(), Ipv4Addr::new(10, 244, 1, 255));
        assert!(p.is_host(Ipv4Addr::new(10, 244, 1, 1)));
        assert!(p.is_host(Ipv4Addr::new(10, 244, 1, 254)));
        for not in [[10, 244, 1, 0], [10, 244, 1, 255], [10, 244, 2, 1]] {
            assert!(!p.is_host(Ipv4Addr::from(not)), "{not:?}");
        }
        let p30: Ipv4Prefix = "10.0.0.4/30".parse().unwrap();
        assert_eq!(p30.broadcast(), Ipv4Addr::new(10, 0, 0, 7));
        let all: Ipv4Prefix = "0.0.0.0/0".parse().unwrap();
        assert_eq!(all.broadcast(), Ipv4Addr::BROADCAST);
    }

    #[test]
    fn interface_names_follow_the_kernels_rule() {
        for ok in ["eth0", "psw0", "a", "abcdefghijklmno", "x-y_z.1"] {
            assert_eq!(ifname_problem(ok), None, "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("abcdefghijklmnop", "16 bytes; Linux allows at most 15"),
            (".", "not a valid"),
            ("..", "not a valid"),
            ("a/b", "contains"),
            ("a:b", "contains"),
            ("a b", "contains"),
            ("a\0", "contains"),
        ] {
            let problem = ifname_problem(bad).unwrap_or_default();
            assert!(problem.contains(needle), "{bad:?}: {problem}");
        }
    }

    #[test]
    fn bad_prefixes_are_refused_with_the_input_named() {
        for bad in ["10.0.0.0", "10.0.0.0/33", "10.0.0/8", "x/1", "10.0.0.0/-1"] {
            let err = bad.parse::<Ipv4Prefix>().unwrap_err().to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
