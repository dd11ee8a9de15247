//! Refusals: a connection to a Service port with no endpoint to take it is answered at once,
//! as a host with nothing listening answers — a TCP RST for TCP (RFC 9293 §3.10.7.1), ICMP
//! port unreachable for UDP — from the Service's address, so the client fails in microseconds
//! instead of timing out. Both are built in the packet's own buffer and leave through the
//! input port.

use super::icmp_error::{self, IcmpError};
use super::Ctx;
use crate::batch::{Next, Packet, PortId};
use crate::counters::Event;
use crate::tables::Node;
use podswitch_packet::{
    EthernetFrame, IpProtocol, Ipv4Packet, TcpFlags, TcpPacket, ETHERNET_HEADER_LEN,
    IPV4_MIN_HEADER_LEN, TCP_MIN_HEADER_LEN,
};

/// Answers `pkt` with a refusal from its destination; true if one was built (else the caller
/// drops it: an RST is never sent for an RST, nor an ICMP error where RFC 1812 forbids one).
pub fn refuse(pkt: &mut Packet, in_port: PortId, node: &Node, cx: &mut Ctx) -> bool {
    let from = pkt.meta.flow.dst_ip;
    if pkt.meta.flow.proto == IpProtocol::TCP {
        if tcp_reset(pkt, node) {
            pkt.meta.next = Next::Output(in_port);
            cx.ctr.event(Event::TcpResetSent);
            return true;
        }
        return false;
    }
    icmp_error::reply(pkt, in_port, node, IcmpError::PortUnreachable { from }, cx)
}

/// Turns a TCP segment into the RST answering it (RFC 9293 §3.10.7.1: if the segment has ACK,
/// `<SEQ=SEG.ACK><CTL=RST>`; else `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`).
fn tcp_reset(pkt: &mut Packet, node: &Node) -> bool {
    let frame = pkt.buf.frame();
    let ip = Ipv4Packet::new_unchecked(&frame[ETHERNET_HEADER_LEN..]);
    let (src, dst) = (ip.src(), ip.dst());
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else {
        return false;
    };
    let flags = tcp.flags();
    if flags.contains(TcpFlags::RST) {
        return false;
    }
    let seg_len = tcp.payload().len() as u32
        + u32::from(flags.contains(TcpFlags::SYN))
        + u32::from(flags.contains(TcpFlags::FIN));
    let (sport, dport, seq, ack) = (tcp.src_port(), tcp.dst_port(), tcp.seq_no(), tcp.ack_no());
    let sender_mac = EthernetFrame::new_unchecked(frame).src();
    let ip_hl = ip.header_len();

    let len = ETHERNET_HEADER_LEN + IPV4_MIN_HEADER_LEN + TCP_MIN_HEADER_LEN;
    // Drop IP options: the reset goes out with a plain 20-byte header.
    let l4_from = ETHERNET_HEADER_LEN + ip_hl;
    let frame = pkt.buf.frame_mut();
    frame.copy_within(
        l4_from..l4_from + TCP_MIN_HEADER_LEN,
        len - TCP_MIN_HEADER_LEN,
    );
    if pkt.buf.resize(len).is_none() {
        return false;
    }
    let frame = pkt.buf.frame_mut();
    let (eth, rest) = frame.split_at_mut(ETHERNET_HEADER_LEN);
    let mut eth = EthernetFrame::new_unchecked(eth);
    eth.set_dst(sender_mac);
    eth.set_src(node.gateway_mac);
    let (ip_hdr, l4) = rest.split_at_mut(IPV4_MIN_HEADER_LEN);
    let mut ip = Ipv4Packet::new_unchecked(ip_hdr);
    ip.set_version_and_header_len(IPV4_MIN_HEADER_LEN);
    ip.set_dscp_ecn(0);
    ip.set_total_len((IPV4_MIN_HEADER_LEN + TCP_MIN_HEADER_LEN) as u16);
    ip.set_ident(0);
    ip.set_dont_frag(true);
    ip.set_more_frags(false);
    ip.set_frag_offset(0);
    ip.set_ttl(super::route::ORIGIN_TTL);
    ip.set_src(dst);
    ip.set_dst(src);
    ip.fill_checksum();
    let mut tcp = TcpPacket::new_unchecked(l4);
    tcp.set_src_port(dport);
    tcp.set_dst_port(sport);
    tcp.set_header_len(TCP_MIN_HEADER_LEN);
    if flags.contains(TcpFlags::ACK) {
        tcp.set_seq_no(ack);
        tcp.set_ack_no(0);
        tcp.set_flags(TcpFlags::RST);
    } else {
        tcp.set_seq_no(0);
        tcp.set_ack_no(seq.wrapping_add(seg_len));
        tcp.set_flags(TcpFlags::RST | TcpFlags::ACK);
    }
    tcp.set_window(0);
    tcp.set_urgent(0);
    tcp.fill_checksum(dst, src);
    pkt.meta.offload = crate::batch::Offload::NONE;
    true
}
