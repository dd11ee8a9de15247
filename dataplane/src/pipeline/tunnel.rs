//! Tunnel: the uplink's side of multi-node networking. [`decap`] is the first stage for a
//! burst from a VXLAN uplink: it strips the outer Ethernet/IPv4/UDP/VXLAN headers of packets
//! sent to the switch's uplink address, port and VNI, so the inner frame goes through every
//! later stage (parse, conntrack, Services, policy) as a frame from the uplink. The helpers
//! [`encap`] (outer headers pushed into the headroom, for `rewrite`) and [`arp_request`] (a
//! next hop's resolution, built in a buffer) are the other direction.
//!
//! Decisions: an inner frame's destination MAC is not checked (it is the other node's
//! convention for our tunnel endpoint; the outer headers already said the packet is ours) and
//! is rewritten to the uplink's MAC, so `l2` holds frames from the uplink to one rule. On a
//! VXLAN uplink, IPv4 that is not tunnelled to the switch is dropped: the underlay is not
//! trusted to carry pod addresses there. Except IPv4 to the uplink's own address that is not
//! for the VXLAN port: clients outside the cluster reach NodePorts there.

use super::Ctx;
use crate::batch::{Batch, Offload, Packet};
use crate::counters::{DropReason, Event};
use crate::tables::{Encap, Uplink};
use crate::trace::Stage;
use podswitch_packet::vxlan::{self, Outer, VxlanPacket};
use podswitch_packet::{
    ArpOp, ArpRepr, EtherType, EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, UdpPacket,
    ETHERNET_HEADER_LEN,
};
use std::net::Ipv4Addr;

/// TTL of the outer IPv4 header (Linux's default for a VXLAN device without `ttl`: 64 here,
/// as the switch's other packets).
pub const OUTER_TTL: u8 = 64;

/// Runs the stage: on a VXLAN uplink, every IPv4 frame is decapsulated or dropped.
pub fn decap(batch: &mut Batch, cx: &mut Ctx) {
    let Some(uplink) = cx.tables.uplink.filter(|u| u.port == batch.in_port) else {
        return;
    };
    let Encap::Vxlan { vni, port } = uplink.encap else {
        return;
    };
    for (i, pkt) in batch.iter_mut().enumerate() {
        if !pkt.pending() {
            continue;
        }
        let note = match strip(pkt, &uplink, vni, port) {
            Ok(note) => {
                cx.ctr.event(Event::VxlanDecapsulated);
                note
            }
            Err(None) => "not tunnelled (ARP, or IPv4 to the uplink's address): as it is",
            Err(Some(reason)) => {
                pkt.drop(reason, cx.ctr);
                reason.description()
            }
        };
        cx.trace.note(i, Stage::Tunnel, pkt.meta.next, note);
    }
}

/// Strips the outer headers of one frame. `Err(None)`: not IPv4 (ARP), left for `l2`.
fn strip(
    pkt: &mut Packet,
    uplink: &Uplink,
    vni: u32,
    udp_port: u16,
) -> Result<&'static str, Option<DropReason>> {
    let frame = pkt.buf.frame();
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Some(DropReason::Runt))?;
    if eth.ethertype() != EtherType::IPV4 {
        return Err(None);
    }
    let not_ours = Some(DropReason::VxlanNotTunneled);
    let malformed = Some(DropReason::VxlanMalformed);
    let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).map_err(|_| malformed)?;
    if eth.dst() != uplink.mac || ip.dst() != uplink.ip {
        return Err(not_ours);
    }
    let vxlan_port = ip.protocol() == IpProtocol::UDP
        && UdpPacket::new_checked(ip.payload()).is_ok_and(|u| u.dst_port() == udp_port);
    if !vxlan_port {
        // To the node's own address and not the tunnel: a client outside the cluster (a
        // NodePort, or the reply to the node address a NodePort connection was SNATed to).
        // Only the service stage or conntrack can take it further than the host port.
        return Err(None);
    }
    if !ip.verify_checksum() || ip.is_fragment() {
        return Err(malformed);
    }
    let udp = UdpPacket::new_checked(ip.payload()).map_err(|_| malformed)?;
    if udp.dst_port() != udp_port {
        return Err(not_ours);
    }
    // The UDP checksum is not verified (Linux's VXLAN does not either when it is 0, and
    // the inner packet carries its own); the length must hold the header and a frame.
    let vx = VxlanPacket::new_checked(&ip.payload()[8..usize::from(udp.len())])
        .map_err(|_| malformed)?;
    if vx.vni() != vni {
        return Err(Some(DropReason::VxlanWrongVni));
    }
    if vx.payload().len() < ETHERNET_HEADER_LEN {
        return Err(malformed);
    }
    // Where the inner frame starts, and where it ends (the outer UDP length, not Ethernet
    // padding behind the outer IP packet).
    let outer = ETHERNET_HEADER_LEN + ip.header_len() + 8 + vxlan::HEADER_LEN;
    let inner_len = vx.payload().len();
    if pkt.meta.offload.is_gso() {
        return Err(malformed); // no UDP tunnel GSO is offered to any port
    }
    let outer_ce = ip.dscp_ecn() & ECN_MASK == ECN_CE;
    // A partial checksum was the outer UDP's, which goes with the outer headers.
    pkt.meta.offload = Offload::NONE;
    pkt.buf.pull_front(outer).ok_or(malformed)?;
    pkt.buf.resize(inner_len).ok_or(malformed)?;
    let frame = pkt.buf.frame_mut();
    EthernetFrame::new_unchecked(&mut *frame).set_dst(uplink.mac);
    if outer_ce {
        propagate_ce(frame);
    }
    Ok("VXLAN decapsulated")
}

/// The ECN field of the IPv4 DSCP/ECN byte, and its Congestion Experienced value.
const ECN_MASK: u8 = 0b11;
const ECN_CE: u8 = 0b11;

/// Congestion the underlay marked on the outer header is not lost (RFC 6040 §4.2, normal
/// mode): an ECN-capable inner IPv4 packet gets CE too (its checksum refilled only if it was
/// right, so parse still catches a bad one). A Not-ECT inner packet is forwarded as it is
/// (RFC 6040 would drop it; its sender cannot react to the mark either way).
fn propagate_ce(frame: &mut [u8]) {
    let eth = EthernetFrame::new_unchecked(&*frame);
    if eth.ethertype() != EtherType::IPV4 {
        return;
    }
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut frame[ETHERNET_HEADER_LEN..]) else {
        return;
    };
    let tos = ip.dscp_ecn();
    if tos & ECN_MASK != 0 && tos & ECN_MASK != ECN_CE && ip.verify_checksum() {
        ip.set_dscp_ecn(tos | ECN_CE);
        ip.fill_checksum();
    }
}

/// Pushes VXLAN outer headers in front of `pkt`'s (already rewritten) inner frame, to
/// `remote` at `remote_mac` (the underlay next hop), with the UDP source port from the inner
/// flow. A partial checksum's start moves with the frame. False if the headroom is short.
pub fn encap(
    pkt: &mut Packet,
    uplink: &Uplink,
    (vni, dst_port): (u32, u16),
    remote: Ipv4Addr,
    remote_mac: MacAddr,
) -> bool {
    let inner_len = pkt.buf.len();
    let dscp_ecn = Ipv4Packet::new_unchecked(&pkt.buf.frame()[ETHERNET_HEADER_LEN..]).dscp_ecn();
    let outer = Outer {
        src_mac: uplink.mac,
        dst_mac: remote_mac,
        src_ip: uplink.ip,
        dst_ip: remote,
        ttl: OUTER_TTL,
        dscp_ecn,
        src_port: vxlan::source_port(flow_hash(&pkt.meta.flow)),
        dst_port,
        vni,
    };
    let Some(head) = pkt.buf.push_front(vxlan::ENCAP_LEN) else {
        return false;
    };
    if outer.emit(head, inner_len).is_none() {
        let _ = pkt.buf.pull_front(vxlan::ENCAP_LEN);
        return false;
    }
    if pkt.meta.offload.needs_csum() {
        pkt.meta.offload.csum_start += vxlan::ENCAP_LEN as u16;
    }
    pkt.meta.tunneled = true;
    true
}

/// A hash of the inner flow (addresses, protocol, ports), the same for every packet of a
/// flow and its segments: the outer UDP source port's entropy.
fn flow_hash(flow: &crate::batch::FlowKey) -> u32 {
    use crate::batch::L4Key;
    let (sp, dp) = match flow.l4 {
        L4Key::Tcp {
            src_port, dst_port, ..
        }
        | L4Key::Udp { src_port, dst_port } => (src_port, dst_port),
        L4Key::Icmp { ident, .. } => (ident, 0),
        L4Key::None => (0, 0),
    };
    let mut h = u32::from(flow.src_ip).wrapping_mul(0x9e37_79b1);
    h ^= u32::from(flow.dst_ip)
        .rotate_left(13)
        .wrapping_mul(0x85eb_ca77);
    h ^= (u32::from(sp) << 16 | u32::from(dp)).wrapping_mul(0xc2b2_ae3d);
    h ^= u32::from(flow.proto.0);
    h ^ (h >> 15)
}

/// Turns `pkt`'s buffer into an ARP request from the uplink for `target`: broadcast when
/// `to` is `None` (resolution), unicast to the MAC known (re-probe of a stale entry).
pub fn arp_request(pkt: &mut Packet, uplink: &Uplink, target: Ipv4Addr, to: Option<MacAddr>) {
    let len = ETHERNET_HEADER_LEN + podswitch_packet::ARP_LEN;
    pkt.buf
        .fill(&[0u8; ETHERNET_HEADER_LEN + podswitch_packet::ARP_LEN]);
    let frame = pkt.buf.frame_mut();
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..len]);
    eth.set_dst(to.unwrap_or(MacAddr::BROADCAST));
    eth.set_src(uplink.mac);
    eth.set_ethertype(EtherType::ARP);
    ArpRepr {
        operation: ArpOp::Request,
        sender_hw: uplink.mac,
        sender_ip: uplink.ip,
        target_hw: MacAddr::ZERO,
        target_ip: target,
    }
    .emit(&mut frame[ETHERNET_HEADER_LEN..len])
    .ok(); // the buffer holds exactly an ARP packet: emit cannot fail
    pkt.meta.offload = Offload::NONE;
    pkt.meta.tunneled = false;
}
