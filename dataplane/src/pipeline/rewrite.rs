//! Rewrite: the last stage, applying to each packet what the stages before decided. It
//! checks what belongs to the packet rather than its flow (TTL, the output MTU) and answers
//! with ICMP time exceeded or fragmentation needed from the gateway, then decrements the TTL
//! (incremental checksum, RFC 1812 §5.3.1, RFC 1624) and rewrites the Ethernet header for the
//! output port. An established flow comes here straight from conntrack.

use super::icmp_error::IcmpError;
use super::route::undeliverable;
use super::Ctx;
use crate::batch::{Batch, Next, Packet, PortId, Track, L3};
use crate::counters::DropReason;
use crate::tables::Node;
use crate::trace::Stage;
use podswitch_packet::{EthernetFrame, IpProtocol, Ipv4Packet, ETHERNET_HEADER_LEN};

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
    let out_mtu = out_entry.mtu;
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
    let frame = pkt.buf.frame_mut();
    if pkt.meta.track == Track::Related {
        super::nat::translate_icmp_error(frame, &pkt.meta);
    } else {
        super::nat::translate(frame, &pkt.meta);
    }
    Ipv4Packet::new_unchecked(&mut frame[ETHERNET_HEADER_LEN..]).decrement_ttl();
    let mut eth = EthernetFrame::new_unchecked(frame);
    eth.set_src(node.gateway_mac);
    eth.set_dst(out_mac);
    pkt.meta.next = Next::Output(out);
    "TTL decremented, MACs rewritten"
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
