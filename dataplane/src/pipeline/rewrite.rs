//! Rewrite: the last stage, applying to each packet what the stages before decided. It
//! checks what belongs to the packet rather than its flow (TTL, the output MTU) and answers
//! with ICMP time exceeded or fragmentation needed from the gateway, then decrements the TTL
//! (incremental checksum, RFC 1812 §5.3.1, RFC 1624) and rewrites the Ethernet header for the
//! output port. An established flow comes here straight from conntrack.
//!
//! Out of the uplink, the packet goes to its next hop (`meta.next_hop`, which route chose or
//! conntrack cached): the MAC of its `via` (the node itself, or the underlay gateway in front
//! of it) comes from the neighbour table (ARP when unknown); routed, and always outside the
//! cluster (egress, replies to outside clients), the frame is addressed to that MAC from the
//! uplink's; to a node with VXLAN the inner frame goes from the gateway MAC to the other
//! node's tunnel MAC and the outer headers are pushed in front (`tunnel::encap`), after the
//! MTU check against the uplink's MTU less 50 bytes.

use super::icmp_error::IcmpError;
use super::route::undeliverable;
use super::Ctx;
use crate::batch::{Batch, Next, Packet, PortId, Track, L3};
use crate::counters::{DropReason, Event};
use crate::neighbors::Resolution;
use crate::tables::{Encap, NextHop, NextHops, Node, Uplink};
use crate::trace::Stage;
use podswitch_packet::{EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, ETHERNET_HEADER_LEN};

/// Runs the stage over the packets that have an output.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let Some(node) = cx.tables.node.as_ref() else {
        return;
    };
    let in_port = batch.in_port;
    for (i, pkt) in batch.iter_mut().enumerate() {
        if !pkt.pending() || pkt.meta.l3 != L3::Ipv4 {
            continue;
        }
        let Some(out) = pkt.meta.hop else {
            continue;
        };
        let note = rewrite(pkt, in_port, out, node, cx);
        cx.trace.note(i, Stage::Rewrite, pkt.meta.next, note);
    }
}

fn rewrite(
    pkt: &mut Packet,
    in_port: PortId,
    out: PortId,
    node: &Node,
    cx: &mut Ctx,
) -> &'static str {
    let Some(out_entry) = cx.tables.port(out) else {
        pkt.drop(DropReason::OutputPortGone, cx.ctr);
        return "output port is gone";
    };
    let uplink = cx.tables.uplink.filter(|u| u.port == out);
    // Tunnelled through a VXLAN uplink the inner packet has 50 bytes less: frag-needed says
    // so. Outside the cluster (egress, replies to outside clients) nothing is added.
    let to_node = pkt.meta.next_hop.and_then(|i| cx.tables.next_hops.get(i));
    let out_mtu = match (uplink, to_node) {
        (Some(u), Some(hop)) if hop.vtep_mac.is_some() => u.inner_mtu(out_entry.mtu),
        _ => out_entry.mtu,
    };
    let out_mac = out_entry.peer_mac;
    let frame = pkt.buf.frame_mut();
    let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
    if ip.ttl() <= 1 {
        let (error, reason) = (IcmpError::TimeExceeded, DropReason::TtlExpired);
        undeliverable(pkt, in_port, node, error, reason, cx);
        return "TTL expired: ICMP time exceeded";
    }
    // A GSO frame leaves as segments (here or in the receiving stack): each must fit, so
    // compare the segment's IP length — IP + TCP/UDP headers + gso_size — not the frame's
    // (Linux `skb_gso_validate_network_len`).
    let ip_len = if pkt.meta.offload.is_gso() {
        gso_segment_ip_len(&ip, &pkt.meta)
    } else {
        usize::from(ip.total_len())
    };
    if ip_len > usize::from(out_mtu) {
        if ip.dont_frag() {
            let error = IcmpError::FragNeeded(out_mtu);
            undeliverable(pkt, in_port, node, error, DropReason::MtuExceeded, cx);
        } else {
            pkt.drop(DropReason::MtuExceeded, cx.ctr); // the switch does not fragment
        }
        return "larger than the output MTU";
    }
    // To another node: the next hop's MAC first (the frame is not touched if it is unknown).
    let via = match uplink {
        None => None,
        Some(u) => match next_hop(pkt, out, &u, cx) {
            Ok(via) => Some((u, via)),
            Err(note) => return note,
        },
    };
    let frame = pkt.buf.frame_mut();
    if pkt.meta.track == Track::Related {
        super::nat::translate_icmp_error(frame, &pkt.meta);
    } else {
        super::nat::translate(frame, &pkt.meta);
    }
    Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]).decrement_ttl();
    let mut eth = EthernetFrame::new_unchecked(frame);
    let Some((uplink, (hop, mac))) = via else {
        eth.set_src(node.gateway_mac);
        eth.set_dst(out_mac);
        pkt.meta.next = Next::Output(out);
        return "TTL decremented, MACs rewritten";
    };
    // A node hop has its tunnel MAC; the destination on the segment and the egress gateway
    // are outside the cluster and never encapsulated.
    let (Encap::Vxlan { vni, port }, Some(vtep_mac)) = (uplink.encap, hop.vtep_mac) else {
        eth.set_src(uplink.mac);
        eth.set_dst(mac);
        pkt.meta.next = Next::Output(out);
        return match (pkt.meta.next_hop, hop.vtep_mac) {
            (Some(NextHops::ON_LINK | NextHops::SEGMENT), _) => {
                "TTL decremented, to the destination's MAC on the underlay's segment"
            }
            (_, None) => "TTL decremented, to the underlay gateway's MAC",
            (_, Some(_)) => "TTL decremented, routed to the next hop's MAC",
        };
    };
    eth.set_src(node.gateway_mac);
    eth.set_dst(vtep_mac);
    if !super::tunnel::encap(pkt, &uplink, (vni, port), hop.ip, mac) {
        pkt.drop(DropReason::EncapNoHeadroom, cx.ctr);
        return "no headroom for the VXLAN headers";
    }
    cx.ctr.event(Event::VxlanEncapsulated);
    pkt.meta.next = Next::Output(out);
    "TTL decremented, VXLAN-encapsulated to the next hop"
}

/// The next hop of a packet leaving through the uplink and its MAC, from the neighbour
/// table. Unresolved, the packet is dropped (`neighbor_unresolved`); when a request is due it
/// becomes that ARP request (broadcast out of the uplink). A stale entry is used, and its
/// re-probe is left to the worker (`WorkerState::arp_probes`). [`NextHops::ON_LINK`] and
/// [`NextHops::SEGMENT`]: the packet's own destination is resolved (a reply to a client
/// outside the cluster; egress to an address on the segment).
fn next_hop(
    pkt: &mut Packet,
    out: PortId,
    uplink: &Uplink,
    cx: &mut Ctx,
) -> Result<(NextHop, MacAddr), &'static str> {
    let hop = match pkt.meta.next_hop {
        Some(NextHops::ON_LINK | NextHops::SEGMENT) => {
            let ip = super::nat::translated_dst(&pkt.meta);
            Some(NextHop {
                ip,
                via: ip,
                vtep_mac: None,
            })
        }
        Some(NextHops::UPLINK_GATEWAY) => uplink
            .gateway_hop()
            .and_then(|i| cx.tables.next_hops.get(i))
            .copied(),
        Some(i) => cx.tables.next_hops.get(i).copied(),
        None => None,
    };
    let Some(hop) = hop else {
        pkt.drop(DropReason::NoRoute, cx.ctr);
        return Err("to the uplink without a next hop");
    };
    match cx.flows.neighbors.resolve(hop.via, cx.now, cx.forwarding()) {
        Resolution::Use { mac, probe } => {
            if probe && cx.forwarding() && cx.state.arp_probes.push(hop.via, mac) {
                cx.ctr.event(Event::ArpRequestSent);
            }
            Ok((hop, mac))
        }
        Resolution::Unresolved { request } => {
            let reason = DropReason::NeighborUnresolved;
            cx.ctr.drop(reason);
            if request && cx.forwarding() {
                super::tunnel::arp_request(pkt, uplink, hop.via, None);
                cx.ctr.event(Event::ArpRequestSent);
                pkt.meta.next = Next::Output(out);
                return Err("next hop unresolved: dropped, its buffer sent as the ARP request");
            }
            pkt.meta.next = Next::Drop(reason);
            Err("next hop unresolved: dropped (ARP request already under way)")
        }
    }
}

/// The IP length of the largest segment of a GSO frame (parse checked it is TCP or UDP over
/// IPv4 with the header inside the frame).
fn gso_segment_ip_len(ip: &Ipv4Packet<&[u8]>, meta: &crate::batch::Meta) -> usize {
    let l4 = ip.payload();
    let l4_header = if meta.flow.proto == IpProtocol::TCP {
        l4.get(12).map_or(20, |b| usize::from(b >> 4) * 4)
    } else {
        8
    };
    let payload = l4.len().saturating_sub(l4_header);
    ip.header_len() + l4_header + payload.min(usize::from(meta.offload.gso_size))
}
