//! The pipeline: every packet of a burst goes through these stages, in this order, on the
//! worker that received it. Each stage is a function over the whole batch that reads the
//! tables snapshot, writes only packet metadata (and the frame, where it rewrites), and counts.
//! The pipeline performs no I/O: the worker delivers `Next::Output` packets afterwards.

pub mod conntrack;
pub mod gro;
pub mod icmp_error;
pub mod l2;
pub mod nat;
pub mod offload;
pub mod parse;
pub mod policy;
pub mod refuse;
pub mod rewrite;
pub mod route;
pub mod service;
pub mod tunnel;

#[cfg(test)]
mod drop_reason_tests;
#[cfg(test)]
mod gro_tests;
#[cfg(test)]
mod multinode_tests;
#[cfg(test)]
mod service_tests;

use crate::affinity::Affinity;
use crate::batch::Batch;
use crate::conntrack::{Conntrack, FragTable, GcCursor, Timeouts};
use crate::counters::Counters;
use crate::neighbors::Neighbors;
use crate::tables::Tables;
use crate::trace::Trace;
use icmp_error::IcmpRateLimit;
use std::time::Instant;

/// What a worker keeps for the stages from one burst to the next. Owned by the worker (never
/// shared), so stages mutate it without synchronisation.
#[derive(Debug, Clone)]
pub struct WorkerState {
    /// The budget of ICMP errors this worker may still send.
    pub icmp_errors: IcmpRateLimit,
    /// Where this worker's incremental conntrack GC goes on.
    pub gc: GcCursor,
    /// Unicast ARP re-probes of stale uplink next hops the stages asked for: the worker sends
    /// them after the burst (the packet that asked is forwarded, so it has no buffer to
    /// spare). Bounded; a probe that finds it full is asked for again a second later.
    pub arp_probes: ArpProbes,
    /// xorshift64* state for `random` endpoint selection (never 0).
    rng: u64,
}

/// Unicast ARP requests to send after a burst: (next hop address, its MAC).
#[derive(Debug, Clone)]
pub struct ArpProbes {
    probes: [(std::net::Ipv4Addr, podswitch_packet::MacAddr); 4],
    len: usize,
}

impl Default for ArpProbes {
    fn default() -> Self {
        Self {
            probes: [(
                std::net::Ipv4Addr::UNSPECIFIED,
                podswitch_packet::MacAddr::ZERO,
            ); 4],
            len: 0,
        }
    }
}

impl ArpProbes {
    /// Asks for a probe; false if the list is full.
    pub fn push(&mut self, ip: std::net::Ipv4Addr, mac: podswitch_packet::MacAddr) -> bool {
        let Some(slot) = self.probes.get_mut(self.len) else {
            return false;
        };
        *slot = (ip, mac);
        self.len += 1;
        true
    }

    /// Takes the probes asked for, leaving the list empty.
    pub fn take(
        &mut self,
    ) -> impl Iterator<Item = (std::net::Ipv4Addr, podswitch_packet::MacAddr)> + '_ {
        let n = std::mem::take(&mut self.len);
        self.probes[..n].iter().copied()
    }
}

impl WorkerState {
    /// The state of a worker starting at `now`, with the default ICMP error budget (full).
    pub fn new(now: Instant) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        Self {
            icmp_errors: IcmpRateLimit::linux_default(now),
            gc: GcCursor::default(),
            arp_probes: ArpProbes::default(),
            rng: seed | 1,
        }
    }

    /// A pseudo-random number (xorshift64*: fast, not for secrets).
    #[inline]
    pub fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The flow state every worker shares and changes: conntrack and the tables that live beside
/// it (session affinity, fragments). One per daemon, behind an `Arc`; each has its own small
/// locking API, never held across a batch.
#[derive(Debug)]
pub struct FlowState {
    /// The connection-tracking table.
    pub conntrack: Conntrack,
    /// Translations of datagrams whose first fragment was seen, for their later fragments.
    pub fragments: FragTable,
    /// ClientIP session affinity.
    pub affinity: Affinity,
    /// The uplink next hops' MACs, resolved by ARP.
    pub neighbors: Neighbors,
}

impl FlowState {
    /// Fragments remembered at most (first fragments seen, not yet timed out).
    pub const FRAGMENT_CAPACITY: usize = 4096;
    /// Uplink next hops remembered at most (other nodes: one per node routed to).
    pub const NEIGHBOR_CAPACITY: usize = 8192;
    /// How long a datagram's fragments are waited for (Linux's `ipfrag_time`).
    pub const FRAGMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

    /// The flow state of a daemon: conntrack of `conntrack_capacity` connections with Linux's
    /// timeouts, affinity of `affinity_capacity` clients.
    pub fn new(conntrack_capacity: usize, affinity_capacity: usize) -> FlowState {
        FlowState {
            conntrack: Conntrack::new(crate::conntrack::Config {
                capacity: conntrack_capacity,
                timeouts: Timeouts::default(),
            }),
            fragments: FragTable::new(Self::FRAGMENT_CAPACITY, Self::FRAGMENT_TIMEOUT),
            affinity: Affinity::new(affinity_capacity),
            neighbors: Neighbors::new(Self::NEIGHBOR_CAPACITY),
        }
    }
}

impl Default for FlowState {
    /// A small one, for tests and benches.
    fn default() -> Self {
        FlowState::new(4096, 1024)
    }
}

/// Whether the pipeline forwards or explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The forwarding path: packets are sent, conntrack and affinity are updated.
    Forward,
    /// `podswitchctl trace`: the same stages, but nothing shared is changed (no connection is
    /// created or advanced) and nothing is sent.
    DryRun,
}

/// Everything a stage is handed for one burst: the snapshot it reads, the shared mutable
/// tables, the worker's counters, trace and state, the clock and the mode. Built in one place
/// ([`Ctx::new`]) by the worker, the trace request, benches and tests.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The configuration snapshot, loaded once per burst.
    pub tables: &'a Tables,
    /// Conntrack and its companions.
    pub flows: &'a FlowState,
    /// The worker's counters.
    pub ctr: &'a mut Counters,
    /// The decision recorder (off on the forwarding path).
    pub trace: &'a mut Trace,
    /// The worker's state kept between bursts.
    pub state: &'a mut WorkerState,
    /// When the worker received the burst: read once per poll by the worker, never per
    /// packet; stages take time from here only.
    pub now: Instant,
    /// Forward or dry run.
    pub mode: Mode,
}

impl<'a> Ctx<'a> {
    /// The context of one burst.
    pub fn new(
        tables: &'a Tables,
        flows: &'a FlowState,
        ctr: &'a mut Counters,
        trace: &'a mut Trace,
        state: &'a mut WorkerState,
        now: Instant,
        mode: Mode,
    ) -> Self {
        Self {
            tables,
            flows,
            ctr,
            trace,
            state,
            now,
            mode,
        }
    }

    /// Whether stages may change shared state.
    #[inline]
    pub fn forwarding(&self) -> bool {
        self.mode == Mode::Forward
    }
}

/// Runs a batch through the stages. `cx.now` must be the time the batch was received.
///
/// `conntrack` finds each packet's connection, `service` translates a new one to a Service
/// endpoint, `route` decides where each packet goes, `policy` judges new connections (and
/// established ones after a policy change), `commit` tracks what was allowed, and `rewrite`
/// applies what the stages decided (TTL, NAT, MACs) and hands it to the output. See
/// ARCHITECTURE.md.
#[inline]
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    tunnel::decap(batch, cx); //  from a VXLAN uplink: strip the outer headers
    parse::run(batch, cx); //     validate every header, extract the flow key
    l2::run(batch, cx); //        anti-spoofing, ARP, destination MAC
    conntrack::run(batch, cx); // find the connection: established flows get NAT and output
    service::run(batch, cx); //   new connection to a Service: pick an endpoint (DNAT)
    route::run(batch, cx); //     output port for what has none; hairpin SNAT; ICMP errors
    policy::run(batch, cx); //    NetworkPolicy verdict of new (and re-checked) connections
    conntrack::commit(batch, cx); // new connections tracked, outputs cached
    rewrite::run(batch, cx); //   TTL, MTU, NAT, MACs
}
