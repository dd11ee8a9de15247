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
    /// The underlay: other nodes and whatever is behind them (many MACs, any source address
    /// but a local pod's).
    Uplink,
}

/// How frames for other nodes leave the uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    /// Routed: the packet itself goes to the next hop's MAC.
    Direct,
    /// VXLAN to the next hop's address.
    Vxlan {
        /// The VNI sent and required.
        vni: u32,
        /// The UDP port sent to and listened on.
        port: u16,
    },
}

/// The uplink port and the switch's own addressing on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uplink {
    /// The port.
    pub port: PortId,
    /// The switch's MAC on the underlay.
    pub mac: MacAddr,
    /// The switch's address on the underlay (answered for by ARP, VXLAN source).
    pub ip: Ipv4Addr,
    /// Routed or encapsulated.
    pub encap: Encap,
    /// The segment the uplink's address is on and the underlay router's hop
    /// (`Tables::next_hops` index), when configured: where the replies to a client outside
    /// the cluster whose address is off the segment go.
    pub gateway: Option<(podswitch_proto::Ipv4Prefix, u16)>,
}

impl Uplink {
    /// The next hop of the replies to `client`, a client outside the cluster that reached the
    /// switch through the uplink, when the uplink has a gateway: the router when `client` is
    /// off the segment ([`NextHops::UPLINK_GATEWAY`]), else `client` itself
    /// ([`NextHops::ON_LINK`]). `None` without a gateway.
    #[inline]
    pub fn reply_hop(&self, client: Ipv4Addr) -> Option<u16> {
        let (segment, _) = self.gateway?;
        Some(if segment.contains(client) {
            NextHops::ON_LINK
        } else {
            NextHops::UPLINK_GATEWAY
        })
    }

    /// The gateway's hop ([`NextHops::UPLINK_GATEWAY`] resolved).
    #[inline]
    pub fn gateway_hop(&self) -> Option<u16> {
        self.gateway.map(|(_, hop)| hop)
    }

    /// The largest inner IPv4 packet that fits through a port of MTU `mtu`: the MTU itself
    /// when routed, 50 bytes less with VXLAN (outer IPv4 + UDP + VXLAN + inner Ethernet).
    #[inline]
    pub fn inner_mtu(&self, mtu: u16) -> u16 {
        match self.encap {
            Encap::Direct => mtu,
            Encap::Vxlan { .. } => mtu.saturating_sub(podswitch_packet::vxlan::MTU_OVERHEAD),
        }
    }
}

/// Where a route through the uplink leads: another node, or (egress) the underlay gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NextHop {
    /// The address the packets are for on the underlay: the other node's (the outer
    /// destination with VXLAN), or an egress route's gateway.
    pub ip: Ipv4Addr,
    /// The address whose MAC the frames go to (resolved by ARP): `ip` itself when it is on the
    /// uplink's segment, else the underlay gateway in front of it.
    pub via: Ipv4Addr,
    /// VXLAN: the inner destination MAC. `None` for an egress hop: never encapsulated.
    pub vtep_mac: Option<MacAddr>,
}

impl NextHop {
    /// Another node at `ip`, reached through `gateway` when it is not on the uplink's segment.
    pub fn node(ip: Ipv4Addr, vtep_mac: MacAddr, gateway: Option<Ipv4Addr>) -> NextHop {
        NextHop {
            ip,
            via: gateway.unwrap_or(ip),
            vtep_mac: Some(vtep_mac),
        }
    }

    /// The underlay gateway of an egress route (outside the cluster, unencapsulated).
    pub fn egress(gateway: Ipv4Addr) -> NextHop {
        NextHop {
            ip: gateway,
            via: gateway,
            vtep_mac: None,
        }
    }
}

/// The next hops the FIB's `RouteTarget::Node` and `RouteTarget::Egress` indices point into.
#[derive(Debug, Clone, Default)]
pub struct NextHops {
    hops: Vec<NextHop>,
    /// Each hop's index, for interning.
    by_hop: std::collections::HashMap<NextHop, u16>,
    /// The first node hop (not a gateway) at each address.
    by_ip: std::collections::HashMap<Ipv4Addr, u16>,
    /// Every hop's `via`: the addresses the neighbour table keeps.
    vias: std::collections::BTreeSet<Ipv4Addr>,
}

impl NextHops {
    /// Not an index: "the packet's own destination, on the underlay's segment", the output
    /// conntrack caches for the replies of a client outside the cluster that reached the switch
    /// through the uplink (resolved by ARP like a next hop, sent without encapsulation). It
    /// names no route, so it holds across route changes.
    pub const ON_LINK: u16 = u16::MAX;

    /// Not an index: the packet's own destination on the underlay's segment as an egress
    /// route (`uplink` with no gateway) chose it: sent like [`Self::ON_LINK`], but routed again
    /// when the routes change, like every output a route chose.
    pub const SEGMENT: u16 = u16::MAX - 1;

    /// Not an index: the uplink's own gateway (`Uplink::gateway`), the output conntrack
    /// caches for the replies of a client outside the cluster that is off the uplink's
    /// segment. It names no route (it resolves through the uplink), so like [`Self::ON_LINK`]
    /// it holds across route changes.
    pub const UPLINK_GATEWAY: u16 = u16::MAX - 2;

    /// Adds `hop` (or finds it: one index per address, via and inner MAC), returning its
    /// index; `None` past `u16::MAX - 3` hops ([`Self::UPLINK_GATEWAY`], [`Self::SEGMENT`]
    /// and [`Self::ON_LINK`] are no indices).
    pub fn intern(&mut self, hop: NextHop) -> Option<u16> {
        if let Some(&i) = self.by_hop.get(&hop) {
            return Some(i);
        }
        let i = u16::try_from(self.hops.len())
            .ok()
            .filter(|&i| i < Self::UPLINK_GATEWAY)?;
        self.hops.push(hop);
        self.by_hop.insert(hop, i);
        if hop.vtep_mac.is_some() {
            self.by_ip.entry(hop.ip).or_insert(i);
        }
        self.vias.insert(hop.via);
        Some(i)
    }

    /// Whether `other` resolves the same addresses (the neighbour table need not change).
    pub fn same_vias(&self, other: &NextHops) -> bool {
        self.vias == other.vias
    }

    /// The hop at `i`.
    #[inline]
    pub fn get(&self, i: u16) -> Option<&NextHop> {
        self.hops.get(usize::from(i))
    }

    /// Whether some route leads through `ip` (a hop's `via`): only such addresses get a
    /// neighbour entry.
    #[inline]
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.vias.contains(&ip)
    }

    /// The index of the (first) node hop at `ip`: another node's address, not a gateway.
    #[inline]
    pub fn index_of(&self, ip: Ipv4Addr) -> Option<u16> {
        self.by_ip.get(&ip).copied()
    }

    /// Every hop.
    pub fn iter(&self) -> impl Iterator<Item = &NextHop> {
        self.hops.iter()
    }
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
    /// The uplink, if any.
    pub uplink: Option<Uplink>,
    /// Other nodes, by the index `RouteTarget::Node` holds. Indices are valid under one
    /// `route_epoch` (conntrack caches them with it).
    pub next_hops: Arc<NextHops>,
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
