//! The tables the pipeline reads: one immutable snapshot per configuration generation.
//!
//! The daemon builds a new [`Tables`] for every applied transaction and publishes it with one
//! atomic pointer swap (RCU through `arc-swap`); a worker loads the current snapshot once per
//! burst and never sees a half-applied change. Nothing here is mutated after publication.

mod fib;
pub mod maglev;
pub mod policy;
mod services;

pub use fib::{Fib, Route, RouteTarget};
pub use services::{Backend, Selection, ServiceEntry, Services};

use crate::batch::PortId;
use podswitch_packet::MacAddr;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The node's addressing as the switch uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Gateway address: the switch answers ARP and echo requests for it.
    pub gateway_ip: Ipv4Addr,
    /// The switch's MAC: source of every routed frame, answer to ARP for the gateway.
    pub gateway_mac: MacAddr,
}

/// What a port is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// A pod with exactly this IP (and the entry's MAC).
    Pod {
        /// The pod's address.
        ip: Ipv4Addr,
    },
    /// The node's own stack.
    Host,
}

/// One port as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortEntry {
    /// Name, for traces and dumps.
    pub name: Arc<str>,
    /// MAC of the device on the other side: source MAC accepted from it, destination MAC of
    /// frames routed to it.
    pub peer_mac: MacAddr,
    /// What the port is.
    pub binding: Binding,
    /// Largest IPv4 packet.
    pub mtu: u16,
    /// The port takes GSO super-frames and partial checksums (a tap opened with vnet
    /// headers): checksum, TSO4, TSO6 and USO4. Without, the switch segments and completes
    /// checksums in software for frames it sends there (ARCHITECTURE.md, "Offloads").
    pub offloads: bool,
    /// Unique for this port's creation (never reused for another port in this daemon, nor
    /// equal to a previous daemon's): what conntrack checks a cached output against.
    pub uid: u32,
}

/// A snapshot of everything the pipeline reads.
#[derive(Debug, Clone, Default)]
pub struct Tables {
    /// Configuration generation this snapshot belongs to.
    pub generation: u64,
    /// Node addressing; `None` until configured (everything is dropped then).
    pub node: Option<Node>,
    /// Ports by id; `None` for free ids. Shared with the next snapshot when no port changed.
    pub ports: Arc<Vec<Option<PortEntry>>>,
    /// The host port, if any.
    pub host_port: Option<PortId>,
    /// The routing table. Shared with the next snapshot when no port or route changed.
    pub fib: Arc<Fib>,
    /// Changes whenever node addressing or static routes change: outputs conntrack cached
    /// under another epoch are routed again.
    pub route_epoch: u32,
    /// The Service ports, by frontend.
    pub services: Arc<Services>,
    /// The local pods' NetworkPolicies, by pod address.
    pub policies: Arc<policy::Policies>,
    /// Changes whenever a policy changes: connections whose verdict was taken under another
    /// epoch are checked again.
    pub policy_epoch: u32,
}

impl Tables {
    /// The entry for `id`.
    #[inline]
    pub fn port(&self, id: PortId) -> Option<&PortEntry> {
        self.ports.get(id as usize).and_then(Option::as_ref)
    }
}
