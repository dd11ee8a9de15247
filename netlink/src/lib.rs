//! Synchronous rtnetlink client shared by the dataplane daemon and the CNI plugin: links,
//! IPv4 addresses and routes, network namespaces, and (by ioctl) an interface's transmit
//! offloads. podswitch configures interfaces only through this crate, never by running or
//! parsing `ip` or `ethtool`.
//!
//! One [`Netlink`] handle owns one blocking NETLINK_ROUTE socket (no async runtime). Every
//! change is sent with `NLM_F_ACK` and the call returns once the kernel has acknowledged it,
//! so when a call returns `Ok` the change is in effect. Failures are [`Error`]s that say what
//! was attempted on which interface and what the kernel answered:
//! `add address 10.0.0.1/24 on psw0: File exists (os error 17)`.
//!
//! [`Nftables`] is the one non-rtnetlink piece: a NETLINK_NETFILTER client that replaces or
//! deletes the node's NodePort table (`ip podswitch`) in one atomic nf_tables batch.
//!
//! A handle acts in the network namespace it was created in (see [`Netlink`]); use
//! [`in_netns`] or [`Netlink::new_in_netns`] to act in another one.
//!
//! ```no_run
//! # fn main() -> Result<(), podswitch_netlink::Error> {
//! use std::net::Ipv4Addr;
//! let mut nl = podswitch_netlink::Netlink::new()?;
//! let (host, _pod) = nl.link_add_veth("psw0", "psw0p")?;
//! nl.addr_add_v4(host, Ipv4Addr::new(10, 0, 0, 1), 24)?;
//! nl.link_set_up(host)?;
//! # Ok(()) }
//! ```
//!
//! Where this crate sits: it depends on nothing of podswitch's, and no packet path depends on
//! it; the daemon and the CNI plugin call it from their management side only. Its only
//! `unsafe` is the `setns` in [`in_netns`] and the `SIOCETHTOOL` ioctl of [`Ethtool`] (the
//! transmit offloads a veth toward an AF_XDP port must not have).

// Tests may panic on what they did not expect; the library itself may not (workspace lints).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod address;
mod error;
mod ethtool;
mod link;
mod netns;
mod nftables;
mod route;
mod socket;
mod xdp;

pub use error::{Detail, Error, Result, Subject};
pub use ethtool::{Ethtool, TxOffloads};
pub use link::{Link, LinkStats, VethPeer, IFNAME_MAX_LEN};
pub use netns::in_netns;
pub use nftables::{Nftables, NodePortNat, NODEPORT_TABLE};
pub use route::RouteV4;
pub use socket::Netlink;
pub use xdp::{XdpAttachment, XdpMode};
