//! Service: the load balancer, in place of kube-proxy. For the first packet of a connection to
//! a Service frontend (ClusterIP, externalIP, LoadBalancer IP, or NodePort at the node-port
//! address), it picks an endpoint — the client's affinity entry if it has one, else Maglev on
//! the 5-tuple (or a random draw) over the endpoints the frontend's traffic policy selects —
//! and sets the packet's destination translation; conntrack commits it and every later packet
//! of the connection, both ways, follows the entry. A frontend with no endpoint to take the
//! connection refuses it at once (TCP RST, ICMP port unreachable) from the VIP.

use super::{refuse, Ctx};
use crate::batch::{Batch, Endpoint, L4Key, Next, Packet, Track};
use crate::conntrack::ServiceRef;
use crate::counters::DropReason;
use crate::prefetch::prefetch_ptr;
use crate::tables::{Selection, ServiceEntry};
use crate::trace::Stage;
use podswitch_proto::{Algorithm, FrontendKind};

/// Packets a pass of the stage looks ahead over. In a table of 10k Service ports every
/// new connection's Service is cold: its entry, its endpoint selection, the Maglev slot and
/// the backend are four dependent misses. The stage takes them level by level for a group
/// of packets (group prefetching, as VPP's load balancer does with its dual and quad loops):
/// each pass starts the misses of the next level for the whole group before any is waited
/// for, so they overlap instead of stalling one packet after another.
const GROUP: usize = 16;

/// A new connection to a Service frontend, as the first pass finds it.
#[derive(Clone, Copy)]
struct Found<'t> {
    /// Its place in the batch.
    at: usize,
    svc: &'t ServiceEntry,
    kind: FrontendKind,
    /// The Maglev hash or random draw its endpoint is picked by.
    draw: u64,
}

impl<'t> Found<'t> {
    /// The endpoints the frontend's traffic policy selects.
    fn selection(&self) -> &'t Selection {
        if self.kind.is_external() {
            &self.svc.external
        } else {
            &self.svc.internal
        }
    }
}

/// Runs the stage over new connections.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let tables = cx.tables;
    let Some(node) = tables.node else {
        return;
    };
    if tables.services.is_empty() {
        return;
    }
    let in_port = batch.in_port;
    let pkts = batch.packets_mut();
    for (g, group) in pkts.chunks_mut(GROUP).enumerate() {
        let start = g * GROUP;
        let mut found: [Option<Found>; GROUP] = [None; GROUP];
        let mut n = 0;
        for (k, pkt) in group.iter().enumerate() {
            if let Some(f) = find(tables, pkt, start + k) {
                prefetch_ptr(f.svc);
                found[n] = Some(f);
                n += 1;
            }
        }
        for f in found[..n].iter().flatten() {
            prefetch_ptr(f.selection());
            prefetch_ptr(f.svc.backends.as_ptr());
        }
        for f in found[..n].iter_mut().flatten() {
            if f.svc.algorithm == Algorithm::Random {
                f.draw = cx.state.random();
            }
            f.selection().prefetch_pick(f.draw);
        }
        for f in found[..n].iter().flatten() {
            select(f, &mut group[f.at - start], in_port, &node, cx);
        }
    }
}

/// The Service frontend a packet opens a connection to, if it does.
#[inline]
fn find<'t>(tables: &'t crate::tables::Tables, pkt: &Packet, at: usize) -> Option<Found<'t>> {
    if !pkt.pending() || pkt.meta.track != Track::New {
        return None;
    }
    let (proto, src_port, dst_port) = match pkt.meta.flow.l4 {
        L4Key::Tcp {
            src_port, dst_port, ..
        } => (6, src_port, dst_port),
        L4Key::Udp { src_port, dst_port } => (17, src_port, dst_port),
        _ => return None,
    };
    let flow = pkt.meta.flow;
    let services = &tables.services;
    let (svc, kind) = services.lookup(flow.dst_ip, dst_port, proto).or_else(|| {
        // NodePorts are also at the uplink's address (the node's InternalIP): with an
        // AF_XDP uplink the node's kernel never sees those connections to redirect them.
        tables.uplink.filter(|u| u.ip == flow.dst_ip)?;
        let found = services.lookup(services.node_port_ip()?, dst_port, proto)?;
        (found.1 == FrontendKind::NodePort).then_some(found)
    })?;
    Some(Found {
        at,
        svc,
        kind,
        // Replaced by a random draw for `random` Services, in the batch's order.
        draw: flow_hash(flow.src_ip, src_port, flow.dst_ip, dst_port, proto),
    })
}

/// Picks the endpoint of a new connection (or refuses it) and sets its translation.
#[inline]
fn select(
    f: &Found,
    pkt: &mut Packet,
    in_port: crate::batch::PortId,
    node: &crate::tables::Node,
    cx: &mut Ctx,
) {
    let (svc, kind, i) = (f.svc, f.kind, f.at);
    let selection = f.selection();
    let client = pkt.meta.flow.src_ip;
    let pinned = svc.affinity.and_then(|timeout| {
        cx.flows
            .affinity
            .get(svc.id, client, cx.now, timeout)
            .filter(|&b| selection.contains(b))
    });
    let Some(backend) = pinned.or_else(|| selection.pick(f.draw)) else {
        cx.ctr.drop(DropReason::NoEndpoints);
        if !refuse::refuse(pkt, in_port, node, cx) {
            pkt.meta.next = Next::Drop(DropReason::NoEndpoints);
        }
        cx.trace.note_with(i, Stage::Service, pkt.meta.next, || {
            format!(
                "service {} ({kind:?}): no endpoint takes new connections: refused",
                svc.name
            )
        });
        return;
    };
    let Some(b) = svc.backends.get(usize::from(backend)) else {
        return; // a selection only holds indices of its backends
    };
    let to = Endpoint {
        ip: b.ip,
        port: b.port,
    };
    pkt.meta.nat.dst = Some(to);
    pkt.meta.service = Some(ServiceRef {
        service: svc.id,
        backend: to,
    });
    if let (Some(_), true) = (svc.affinity, cx.forwarding()) {
        cx.flows.affinity.put(svc.id, client, backend, cx.now);
    }
    cx.trace.note_with(i, Stage::Service, pkt.meta.next, || {
        describe(svc, kind, b.ip, b.port, pinned.is_some())
    });
}

fn describe(
    svc: &ServiceEntry,
    kind: podswitch_proto::FrontendKind,
    ip: std::net::Ipv4Addr,
    port: u16,
    pinned: bool,
) -> String {
    let how = if pinned {
        "session affinity"
    } else {
        match svc.spec.algorithm {
            Algorithm::Maglev => "maglev",
            Algorithm::Random => "random",
        }
    };
    let target = svc
        .spec
        .backends
        .iter()
        .find(|b| b.ip == ip && b.port == port)
        .and_then(|b| b.target.as_deref())
        .map(|t| format!(" (pod {t})"))
        .unwrap_or_default();
    format!(
        "service {} ({kind:?}): DNAT to endpoint {ip}:{port}{target} by {how}",
        svc.name
    )
}

/// The flow hash Maglev looks up: deterministic (the same connection maps to the same endpoint
/// on every worker and after a restart, as long as the endpoints are the same), mixing every
/// field of the 5-tuple (the 64-bit finaliser of MurmurHash3).
#[inline]
pub fn flow_hash(
    src: std::net::Ipv4Addr,
    src_port: u16,
    dst: std::net::Ipv4Addr,
    dst_port: u16,
    proto: u8,
) -> u64 {
    let a = u64::from(u32::from(src)) << 32 | u64::from(u32::from(dst));
    let b = u64::from(src_port) << 24 | u64::from(dst_port) << 8 | u64::from(proto);
    fmix64(a ^ fmix64(b ^ 0x9e37_79b9_7f4a_7c15))
}

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}
