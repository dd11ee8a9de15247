//! Conntrack, the two stages around the decisions: `run` (after l2) finds each packet's
//! connection in the shared table — an established flow gets its translation and, while the
//! cached output is still valid, its output port, and goes straight to rewrite — and marks the
//! first packet of a connection `New`; `commit` (after route) creates the entry for a new
//! connection with the translation and output the stages chose, and caches outputs found for
//! entries that had none. Every IPv4 TCP, UDP and ICMP echo flow is tracked, NATed or not, as
//! Linux's conntrack does; ICMP errors are matched to the connection they are about (their
//! quoted datagram) and translated with it; later fragments of a datagram get the translation
//! of its first fragment.

use super::Ctx;
use crate::batch::{Batch, Endpoint, Fragment, L4Key, Meta, Packet, PortId, Track};
use crate::conntrack::{
    CachedHop, CommitError, Conntrack, Decided, Dir, FragKey, Keyed, PolicyMark, Prepared, Tuple,
};
use crate::counters::DropReason;
use crate::tables::{NextHops, RouteTarget, Tables};
use crate::trace::Stage;
use podswitch_packet::{IpProtocol, ETHERNET_HEADER_LEN};

/// What conntrack knows a packet by.
enum Key {
    /// A TCP, UDP or ICMP echo packet: its tuple.
    Flow(Tuple, u8),
    /// An ICMP error quoting a datagram with this tuple.
    Related(Tuple),
    /// A later fragment: no ports, found by its datagram.
    LaterFragment(FragKey),
    /// Anything else (other protocols, ICMP queries other than echo): not tracked.
    None,
}

fn key(meta: &Meta, frame: &[u8]) -> Key {
    let f = &meta.flow;
    let tuple = |src_port, dst_port| Tuple {
        src: f.src_ip,
        dst: f.dst_ip,
        src_port,
        dst_port,
        proto: f.proto.0,
    };
    if f.frag == Fragment::Later {
        return Key::LaterFragment(frag_key(meta, frame));
    }
    match f.l4 {
        L4Key::Tcp {
            src_port,
            dst_port,
            flags,
        } => Key::Flow(tuple(src_port, dst_port), flags.bits()),
        L4Key::Udp { src_port, dst_port } => Key::Flow(tuple(src_port, dst_port), 0),
        L4Key::Icmp {
            icmp_type, ident, ..
        } if icmp_type == 8 || icmp_type == 0 => Key::Flow(tuple(ident, ident), 0),
        L4Key::Icmp {
            quoted: Some(q), ..
        } => Key::Related(Tuple {
            src: q.src_ip,
            dst: q.dst_ip,
            src_port: q.src_port,
            dst_port: if q.proto == IpProtocol::ICMP {
                q.src_port
            } else {
                q.dst_port
            },
            proto: q.proto.0,
        }),
        _ => Key::None,
    }
}

fn frag_key(meta: &Meta, frame: &[u8]) -> FragKey {
    let id = frame
        .get(ETHERNET_HEADER_LEN + 4..ETHERNET_HEADER_LEN + 6)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    FragKey {
        src: meta.flow.src_ip,
        dst: meta.flow.dst_ip,
        proto: meta.flow.proto.0,
        id,
    }
}

/// Whether a cached output still holds: the port is the same port (not a reused id) and the
/// routes have not changed since it was cached.
#[inline]
fn hop_valid(hop: &CachedHop, tables: &Tables) -> bool {
    // A reply's hop to an outside client names no route or next-hop index (the client on the
    // segment, or the uplink's gateway): only its port must remain.
    let reply_hop = matches!(
        hop.next_hop,
        Some(NextHops::ON_LINK | NextHops::UPLINK_GATEWAY)
    );
    (hop.route_epoch == tables.route_epoch || reply_hop)
        && tables.port(hop.port).is_some_and(|p| p.uid == hop.port_uid)
}

/// Whether a TCP segment with no connection could be the reply of a translated connection whose
/// entry is gone (podswitchd restarted, or the entry expired): not a SYN, from a Service
/// endpoint's address and port. Sent on untranslated, the client would see a stranger's segment
/// and reset the connection; dropped, it is retransmitted after the client's next segment has
/// re-created the entry (Maglev picks the same endpoint for the same 5-tuple).
fn lost_reply(t: &Tuple, flags: u8, tables: &Tables) -> bool {
    t.proto == IpProtocol::TCP.0
        && flags & podswitch_packet::TcpFlags::SYN.bits() == 0
        && tables.services.is_backend(t.src, t.src_port, t.proto)
}

/// Drops a packet of (or an ICMP error about) a connection a policy change stopped.
fn stopped(
    pkt: &mut crate::batch::Packet,
    ctr: &mut crate::counters::Counters,
    trace: &mut crate::trace::Trace,
    i: usize,
) {
    pkt.drop(DropReason::PolicyDenied, ctr);
    trace.note(
        i,
        Stage::Conntrack,
        pkt.meta.next,
        "packet of a connection a policy change stopped: still denied",
    );
}

/// How many packets ahead of the one it works on a stage prefetches the conntrack lines of:
/// enough for their misses to overlap the work of the packets in between, few enough for
/// the lines to still be there when their packet comes (and for the CPU's fill buffers).
const AHEAD: usize = 4;
/// Slots of the look-ahead ring (a power of two above `AHEAD`).
const RING: usize = 8;

/// Prefetches, for the packets of a batch, what `work` will need of conntrack for each, a few
/// packets ahead of it: `ahead` hashes a packet's keys and starts the loads (or returns `None`
/// for a packet it has nothing for), `work` gets each packet with what `ahead` returned.
fn looking_ahead<T: Copy>(
    pkts: &mut [Packet],
    mut ahead: impl FnMut(&Packet) -> Option<T>,
    mut work: impl FnMut(usize, &mut Packet, Option<T>),
) {
    let mut ring: [Option<T>; RING] = [None; RING];
    for (j, pkt) in pkts.iter().enumerate().take(AHEAD) {
        ring[j] = ahead(pkt);
    }
    for i in 0..pkts.len() {
        if let Some(pkt) = pkts.get(i + AHEAD) {
            ring[(i + AHEAD) % RING] = ahead(pkt);
        }
        let prepared = ring[i % RING].take();
        work(i, &mut pkts[i], prepared);
    }
}

/// A packet's flow key for the lookup stage, hashed, its index bucket prefetched.
fn flow_keyed(ct: &Conntrack, pkt: &Packet) -> Option<(Keyed, u8)> {
    if !pkt.pending() || pkt.meta.l3 != crate::batch::L3::Ipv4 {
        return None;
    }
    let Key::Flow(t, flags) = key(&pkt.meta, pkt.buf.frame()) else {
        return None;
    };
    let k = ct.keyed(&t);
    ct.prefetch(&k);
    Some((k, flags))
}

/// The lookup stage.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let ct: &Conntrack = &cx.flows.conntrack;
    looking_ahead(
        batch.packets_mut(),
        |pkt| flow_keyed(ct, pkt),
        |i, pkt, keyed| look_up(i, pkt, keyed, cx),
    );
}

/// One packet of the lookup stage; `flow` is its flow key, hashed, and TCP flags, if it has one.
fn look_up(i: usize, pkt: &mut Packet, flow: Option<(Keyed, u8)>, cx: &mut Ctx) {
    if !pkt.pending() || pkt.meta.l3 != crate::batch::L3::Ipv4 {
        return;
    }
    if let Some((k, flags)) = flow {
        return look_up_flow(i, pkt, &k, flags, cx);
    }
    let len = pkt.buf.len() as u32;
    let tables = cx.tables;
    match key(&pkt.meta, pkt.buf.frame()) {
        Key::Flow(t, flags) => {
            let k = cx.flows.conntrack.keyed(&t);
            look_up_flow(i, pkt, &k, flags, cx);
        }
        Key::Related(quoted) => {
            // The error travels opposite to the datagram it quotes.
            let lookup = cx
                .flows
                .conntrack
                .lookup(&quoted.inverse(), 0, len, cx.now, false);
            if let Some(hit) = lookup {
                if hit.policy.denied {
                    // About a connection a policy stopped: it stays stopped.
                    stopped(pkt, cx.ctr, cx.trace, i);
                    return;
                }
                pkt.meta.nat = hit.nat;
                pkt.meta.track = Track::Related;
                cx.trace.note(
                    i,
                    Stage::Conntrack,
                    pkt.meta.next,
                    "ICMP error related to a tracked connection",
                );
            }
        }
        Key::LaterFragment(k) => match cx.flows.fragments.lookup(&k, cx.now) {
            Some(nat) => {
                pkt.meta.nat = nat;
                pkt.meta.track = Track::Fragment;
                cx.trace.note(
                    i,
                    Stage::Conntrack,
                    pkt.meta.next,
                    "later fragment: translated as its first fragment",
                );
            }
            None if tables.services.is_vip(pkt.meta.flow.dst_ip) => {
                pkt.drop(DropReason::FragmentBeforeFirst, cx.ctr);
                cx.trace.note(
                    i,
                    Stage::Conntrack,
                    pkt.meta.next,
                    DropReason::FragmentBeforeFirst.description(),
                );
            }
            None => {}
        },
        Key::None => {}
    }
}

/// The lookup of a TCP, UDP or ICMP echo packet, `k` its flow hashed.
fn look_up_flow(i: usize, pkt: &mut Packet, k: &Keyed, flags: u8, cx: &mut Ctx) {
    let tables = cx.tables;
    let update = cx.forwarding();
    let len = pkt.buf.len() as u32;
    let t = *k.tuple();
    match cx
        .flows
        .conntrack
        .lookup_keyed(k, flags, len, cx.now, update)
    {
        Some(hit) => {
            if hit.policy.denied && hit.policy.epoch == tables.policy_epoch {
                // Stopped by a policy change, and still denied: no check again.
                stopped(pkt, cx.ctr, cx.trace, i);
                return;
            }
            pkt.meta.nat = hit.nat;
            let cached = hit.hop.filter(|h| hop_valid(h, tables));
            pkt.meta.hop = cached.map(|h| h.port);
            pkt.meta.next_hop = cached.and_then(|h| h.next_hop);
            pkt.meta.track = Track::Hit {
                handle: hit.handle,
                dir: hit.dir,
                cache_hop: cached.is_none(),
                recheck_policy: hit.policy.epoch != tables.policy_epoch,
            };
            cx.trace.note_with(i, Stage::Conntrack, pkt.meta.next, || {
                let svc = hit
                    .service
                    .and_then(|s| tables.services.by_id(s.service))
                    .map(|s| format!(", service {}", s.name))
                    .unwrap_or_default();
                format!(
                    "{:?} packet of a tracked connection ({}{svc}){}",
                    hit.dir,
                    hit.state.name(),
                    if cached.is_some() {
                        ": cached output"
                    } else {
                        ""
                    }
                )
            });
        }
        None if lost_reply(&t, flags, tables) => {
            let reason = DropReason::UntrackedEndpointReply;
            pkt.drop(reason, cx.ctr);
            cx.trace
                .note(i, Stage::Conntrack, pkt.meta.next, reason.description());
        }
        None => {
            pkt.meta.track = Track::New;
            cx.trace
                .note(i, Stage::Conntrack, pkt.meta.next, "new connection");
        }
    }
}

/// The output of the replies of a new connection that came in through the uplink from an
/// address no route leads there — a client outside the cluster (a NodePort), or another node's
/// own address (an outside client's connection that node SNATed to itself): back out of the
/// uplink, to the client on the underlay's segment ([`NextHops::ON_LINK`], resolved by ARP,
/// never encapsulated), to the underlay gateway when the client is off the uplink's segment
/// (`Uplink::reply_hop`), or to that node as its next hop (encapsulated with VXLAN). The FIB would
/// send them to the host port, and the node's kernel does not reach the underlay when the
/// uplink is an AF_XDP port on its NIC. `None` otherwise: another node's pod is routed back by
/// the FIB. The cached hop lives under the route epoch like any other: after a route change
/// the replies follow the FIB again (to the host port).
fn reply_through_uplink(pkt: &Packet, in_port: PortId, tables: &Tables) -> Option<CachedHop> {
    let uplink = tables.uplink.filter(|u| u.port == in_port)?;
    let src = pkt.meta.flow.src_ip;
    let route = tables.fib.lookup(src);
    if matches!(route, Some(RouteTarget::Node(_))) {
        return None;
    }
    let next_hop = match (tables.next_hops.index_of(src), uplink.reply_hop(src), route) {
        (Some(node), _, _) => node,
        (None, Some(hop), _) => hop,
        // No gateway on the uplink: an egress route's, if one leads to the client (a route
        // like any other: it expires with the route epoch).
        (None, None, Some(RouteTarget::Egress(hop))) if hop != NextHops::SEGMENT => hop,
        (None, None, _) => NextHops::ON_LINK,
    };
    Some(CachedHop {
        port: uplink.port,
        next_hop: Some(next_hop),
        port_uid: tables.port(uplink.port)?.uid,
        route_epoch: tables.route_epoch,
    })
}

/// How many source ports a hairpin SNAT tries when the reply tuple it would use is taken.
const SNAT_TRIES: u16 = 16;

/// The commit stage: new connections that have an output get their entry; entries found
/// without a valid cached output get the one route chose.
pub fn commit(batch: &mut Batch, cx: &mut Ctx) {
    let in_port = batch.in_port;
    let ct: &Conntrack = &cx.flows.conntrack;
    let forwarding = cx.forwarding();
    let pkts = batch.packets_mut();
    if pkts.iter().any(|p| p.meta.track == Track::New) {
        looking_ahead(
            pkts,
            |pkt| new_connection_keys(ct, pkt, forwarding),
            |i, pkt, prepared| commit_one(i, pkt, prepared, in_port, cx),
        );
    } else {
        // Nothing to create (a batch of established flows): nothing to look ahead for.
        for (i, pkt) in pkts.iter_mut().enumerate() {
            commit_one(i, pkt, None, in_port, cx);
        }
    }
}

/// The keys of a new connection the commit stage will create, their lines prefetched.
fn new_connection_keys(ct: &Conntrack, pkt: &Packet, forwarding: bool) -> Option<Prepared> {
    if !forwarding || !pkt.pending() || pkt.meta.hop.is_none() || pkt.meta.track != Track::New {
        return None;
    }
    let Key::Flow(t, _) = key(&pkt.meta, pkt.buf.frame()) else {
        return None;
    };
    Some(ct.prepare(&t, &pkt.meta.nat))
}

/// One packet of the commit stage; `prepared` its new connection's keys, if it has one.
fn commit_one(
    i: usize,
    pkt: &mut Packet,
    mut prepared: Option<Prepared>,
    in_port: PortId,
    cx: &mut Ctx,
) {
    let tables = cx.tables;
    if !pkt.pending() {
        return;
    }
    let Some(out) = pkt.meta.hop else { return };
    let Some(port_uid) = tables.port(out).map(|p| p.uid) else {
        return;
    };
    let hop = CachedHop {
        port: out,
        next_hop: pkt.meta.next_hop,
        port_uid,
        route_epoch: tables.route_epoch,
    };
    if pkt.meta.flow.frag == Fragment::First
        && cx.forwarding()
        && matches!(pkt.meta.track, Track::Hit { .. } | Track::Untracked)
    {
        // A first fragment that passed every stage: its later fragments follow it (a new
        // connection's is recorded with its entry below).
        let k = frag_key(&pkt.meta, pkt.buf.frame());
        cx.flows.fragments.record(k, pkt.meta.nat, cx.now);
    }
    match pkt.meta.track {
        Track::Hit {
            handle,
            dir,
            cache_hop: true,
            ..
        } if cx.forwarding() => cx.flows.conntrack.set_hop(handle, dir, hop),
        Track::New => {
            let Key::Flow(t, flags) = key(&pkt.meta, pkt.buf.frame()) else {
                return;
            };
            if !cx.forwarding() {
                cx.trace.note(
                    i,
                    Stage::Commit,
                    pkt.meta.next,
                    "would create the connection",
                );
                return;
            }
            let len = pkt.buf.len() as u32;
            let mut decided = Decided {
                nat: pkt.meta.nat,
                service: pkt.meta.service,
                hop: Some(hop),
                // The policy stage allowed it under these policies.
                policy: Some(PolicyMark {
                    epoch: tables.policy_epoch,
                    denied: false,
                }),
            };
            let mut result = Err(CommitError::Full);
            let ct = &cx.flows.conntrack;
            for attempt in 0..SNAT_TRIES {
                // The keys prepared ahead hold for the first attempt's translation.
                result = match prepared.take().filter(|p| *p.tuple() == t) {
                    Some(keys) => ct.commit_prepared(&keys, decided, flags, len, cx.now),
                    None => ct.commit_decided(&t, decided, flags, len, cx.now),
                };
                match (&result, decided.nat.src) {
                    (Err(CommitError::ReplyTaken), Some(src)) if attempt + 1 < SNAT_TRIES => {
                        // Another connection holds that reply tuple: try the next port
                        // (ephemeral range, as Linux's NAT does).
                        let port = 32768 + (src.port.wrapping_add(attempt * 997 + 1) % 28232);
                        decided.nat.src = Some(Endpoint { ip: src.ip, port });
                    }
                    _ => break,
                }
            }
            match result {
                Ok(hit) => {
                    if hit.dir == Dir::Original {
                        if let Some(back) = reply_through_uplink(pkt, in_port, tables) {
                            ct.set_hop(hit.handle, Dir::Reply, back);
                        }
                    }
                    // `decided.nat`, unless another worker tracked the connection
                    // meanwhile: then its entry's translation for this direction.
                    let nat = hit.nat;
                    pkt.meta.nat = nat;
                    if pkt.meta.flow.frag == Fragment::First {
                        let k = frag_key(&pkt.meta, pkt.buf.frame());
                        cx.flows.fragments.record(k, nat, cx.now);
                    }
                    cx.trace
                        .note(i, Stage::Commit, pkt.meta.next, "connection created");
                }
                Err(CommitError::Full) => {
                    pkt.drop(DropReason::ConntrackFull, cx.ctr);
                    let reason = DropReason::ConntrackFull;
                    cx.trace
                        .note(i, Stage::Commit, pkt.meta.next, reason.description());
                }
                Err(CommitError::ReplyTaken) => {
                    pkt.drop(DropReason::ConntrackReplyTaken, cx.ctr);
                    let reason = DropReason::ConntrackReplyTaken;
                    cx.trace
                        .note(i, Stage::Commit, pkt.meta.next, reason.description());
                }
            }
        }
        _ => {}
    }
}
