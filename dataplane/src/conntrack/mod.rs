//! Connection tracking: the one mutable table all workers share (`Arc<Conntrack>`).
//!
//! An entry holds a connection's two tuples, its state, the NAT of its original direction, the
//! Service choice and the output cached per direction, so an established flow costs one lookup.
//! The table is sharded by tuple hash, each shard a `Mutex` around an index, a slab of entries
//! reserved up front and a free list: lookups and commits never allocate and lock one or two
//! shards for one packet, never across a batch.

pub mod fragments;
mod index;
mod memory;
pub mod state;
mod table;
#[cfg(test)]
mod tests;

pub use fragments::{FragKey, FragTable};
pub use state::{State, Timeouts};
pub use table::{Conntrack, GcCursor, Keyed, Prepared};

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// One direction of a connection, as a packet's headers say it. ICMP echo: src_port =
/// dst_port = the echo identifier, so a request's and its reply's tuples are inverses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tuple {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl Tuple {
    /// The tuple of a packet going the other way.
    pub fn inverse(&self) -> Tuple {
        Tuple {
            src: self.dst,
            dst: self.src,
            src_port: self.dst_port,
            dst_port: self.src_port,
            proto: self.proto,
        }
    }
}

/// Which way a packet goes relative to the connection's first packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Original,
    Reply,
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::Original => 0,
            Dir::Reply => 1,
        }
    }
}

pub use crate::batch::{Endpoint, Nat};

/// The output cached for one direction: valid while the port with this id still has this uid
/// and the tables' `route_epoch` is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedHop {
    pub port: u16,
    /// The uplink next hop (`Tables::next_hops` index, valid under `route_epoch`).
    pub next_hop: Option<u16>,
    pub port_uid: u32,
    pub route_epoch: u32,
}

/// The policy verdict an entry carries: taken under the tables' `policy_epoch` `epoch`; a
/// connection whose epoch differs is checked again at its next packet, and one found denied
/// (a changed policy no longer allows it) drops its packets until a later check allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyMark {
    pub epoch: u32,
    pub denied: bool,
}

/// Stable handle of an entry: its shard, slot, and the slot's generation when the handle was
/// made, so a slot reused by another connection is not mistaken for the old entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handle {
    shard: u32,
    slot: u32,
    generation: u32,
}

/// What the Service stage chose, stored in the entry (dumps, per-backend counts, flush).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceRef {
    /// `ServiceEntry.id`.
    pub service: u32,
    pub backend: Endpoint,
}

/// A lookup's result: a copy, nothing borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub handle: Handle,
    pub dir: Dir,
    /// The rewrite for a packet of this direction.
    pub nat: Nat,
    /// The output cached for this direction.
    pub hop: Option<CachedHop>,
    pub service: Option<ServiceRef>,
    pub state: State,
    /// The policy verdict of the connection.
    pub policy: PolicyMark,
}

/// What the stages decided for a new connection, stored with its entry when it is created
/// ([`Conntrack::commit_decided`]): one lock for the entry and its output, not two.
#[derive(Debug, Clone, Copy, Default)]
pub struct Decided {
    /// The translation of the original direction.
    pub nat: Nat,
    /// The Service and endpoint chosen, if any.
    pub service: Option<ServiceRef>,
    /// The original direction's output.
    pub hop: Option<CachedHop>,
    /// The policy verdict (`None`: the entry starts with the default mark).
    pub policy: Option<PolicyMark>,
}

/// Size and timeouts of a table.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub capacity: usize,
    pub timeouts: Timeouts,
}

/// Why a new connection could not be tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitError {
    /// The table (or the shard the tuple falls in) is full: the packet is dropped as
    /// `conntrack_full`, existing entries continue.
    #[error("conntrack table full")]
    Full,
    /// The reply tuple is taken by another entry.
    #[error("reply tuple already tracked by another connection")]
    ReplyTaken,
}

/// One entry as dumps and flush predicates see it.
#[derive(Debug, Clone, Copy)]
pub struct EntryView {
    pub original: Tuple,
    pub reply: Tuple,
    pub state: State,
    /// The NAT of the original direction.
    pub nat: Nat,
    pub service: Option<ServiceRef>,
    pub created: Instant,
    pub last_seen: Instant,
    /// Time since the entry was created (or reopened).
    pub age: Duration,
    /// Time left before it expires without traffic.
    pub expires_in: Duration,
    /// Packets and bytes, `[original, reply]`.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
}

/// The reply tuple of a connection whose first packet has tuple `t` and is rewritten by `nat`:
/// the reply comes from where the packet went and goes to where it came from, after NAT.
pub fn reply_tuple(t: &Tuple, nat: &Nat) -> Tuple {
    let to = nat.dst.unwrap_or(Endpoint {
        ip: t.dst,
        port: t.dst_port,
    });
    let from = nat.src.unwrap_or(Endpoint {
        ip: t.src,
        port: t.src_port,
    });
    Tuple {
        src: to.ip,
        dst: from.ip,
        src_port: to.port,
        dst_port: from.port,
        proto: t.proto,
    }
}

/// The rewrite a reply needs: undo the original direction's NAT (its source becomes the address
/// the client talked to, its destination the client's own).
pub fn reverse_nat(t: &Tuple, nat: &Nat) -> Nat {
    Nat {
        src: nat.dst.map(|_| Endpoint {
            ip: t.dst,
            port: t.dst_port,
        }),
        dst: nat.src.map(|_| Endpoint {
            ip: t.src,
            port: t.src_port,
        }),
    }
}
