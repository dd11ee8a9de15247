//! NAT on the frame: rewrites a packet's source and/or destination address and port as its
//! [`Nat`] says, and fixes every checksum that covers them incrementally (RFC 1624), the way
//! Linux's `inet_proto_csum_replace4` does:
//! - the IPv4 header checksum for an address;
//! - a complete TCP/UDP checksum for an address (pseudo-header) and a port; a UDP checksum of
//!   0 means "none" and stays 0, and one that would become 0 is sent as 0xFFFF (RFC 768);
//! - a *partial* checksum (`NEEDS_CSUM`, GSO frames from offloading taps) holds the
//!   uncomplemented pseudo-header sum: an address change adds new and subtracts old, a port
//!   change touches nothing (the port is summed when the checksum is completed);
//! - ICMP echo: the "port" is the identifier, covered by the ICMP checksum only.
//!
//! A later fragment carries no transport header: only its addresses change (the first
//! fragment's transport checksum already accounts for the pseudo-header).
//!
//! ICMP errors related to a translated connection ([`translate_icmp_error`]) get the outer
//! header translated like a packet of the direction they travel in, and the datagram they quote
//! translated the opposite way, so the sender sees the error about the packet it sent.

use crate::batch::{Endpoint, Fragment, Meta, Nat};
use podswitch_packet::checksum::{self, Diff};
use podswitch_packet::{IpProtocol, ETHERNET_HEADER_LEN, ICMPV4_HEADER_LEN};
use std::net::Ipv4Addr;

const IP: usize = ETHERNET_HEADER_LEN;
const IP_CSUM: usize = 10;
const IP_SRC: usize = 12;
const IP_DST: usize = 16;

/// How a transport checksum field is updated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum L4Csum {
    /// None in this packet (later fragment, ICMP, UDP checksum 0, no transport header).
    Absent,
    /// A complete checksum at this offset in the frame.
    Full(usize),
    /// A partial checksum (pseudo-header sum) at this offset.
    Partial(usize),
}

/// Applies `meta.nat` to the IPv4 packet in `frame`. Parse validated the headers `meta`
/// describes; a frame too short for a field is left alone rather than panicking.
pub fn translate(frame: &mut [u8], meta: &Meta) {
    let nat = meta.nat;
    if nat.is_none() {
        return;
    }
    let l4 = usize::from(meta.l4_offset);
    let has_l4 = l4 != 0 && meta.flow.frag != Fragment::Later;
    let proto = meta.flow.proto;
    let csum = if !has_l4 {
        L4Csum::Absent
    } else if proto == IpProtocol::TCP {
        l4_csum(frame, l4 + 16, meta.offload.needs_csum(), false)
    } else if proto == IpProtocol::UDP {
        l4_csum(frame, l4 + 6, meta.offload.needs_csum(), true)
    } else {
        L4Csum::Absent
    };
    // (offset of the address in the IP header, offset of the port in the transport header)
    let mut changes = Changes::default();
    if let Some(to) = nat.src {
        rewrite_endpoint(
            frame,
            IP_SRC,
            port_at(proto, l4, has_l4, 0),
            to,
            &mut changes,
        );
    }
    if let Some(to) = nat.dst {
        rewrite_endpoint(
            frame,
            IP_DST,
            port_at(proto, l4, has_l4, 2),
            to,
            &mut changes,
        );
    }
    changes.apply(frame, csum);
}

/// What rewriting a packet's endpoints changed, summed per checksum that covers it, so each
/// checksum is updated once however many fields changed.
#[derive(Debug, Default)]
struct Changes {
    /// Addresses: covered by the IP header checksum and by the transport pseudo-header.
    addrs: Diff,
    /// TCP/UDP ports: covered by a complete transport checksum only.
    ports: Diff,
    /// ICMP echo identifiers, and the offset of the ICMP checksum that covers them.
    ident: Option<(usize, Diff)>,
}

impl Changes {
    fn apply(&self, frame: &mut [u8], csum: L4Csum) {
        if !self.addrs.is_zero() {
            update_csum(frame, IP + IP_CSUM, |c| checksum::update_by(c, self.addrs));
        }
        match csum {
            L4Csum::Full(at) => {
                let all = self.addrs.plus(self.ports);
                if !all.is_zero() {
                    update_l4(frame, at, |c| checksum::update_by(c, all));
                }
            }
            // The field holds the uncomplemented pseudo-header sum: add the difference to it.
            L4Csum::Partial(at) if !self.addrs.is_zero() => {
                update_csum(frame, at, |c| checksum::update_sum_by(c, self.addrs));
            }
            L4Csum::Partial(_) | L4Csum::Absent => {}
        }
        if let Some((at, d)) = self.ident {
            update_csum(frame, at, |c| checksum::update_by(c, d));
        }
    }
}

/// Where the port of one side is: TCP/UDP source (0) or destination (2) port; for ICMP echo,
/// the identifier (both sides), which the ICMP checksum covers.
fn port_at(proto: IpProtocol, l4: usize, has_l4: bool, side: usize) -> Port {
    if !has_l4 {
        Port::Absent
    } else if proto == IpProtocol::TCP || proto == IpProtocol::UDP {
        Port::Transport(l4 + side)
    } else if proto == IpProtocol::ICMP {
        Port::IcmpIdent {
            ident: l4 + 4,
            csum: l4 + 2,
        }
    } else {
        Port::Absent
    }
}

#[derive(Debug, Clone, Copy)]
enum Port {
    Absent,
    Transport(usize),
    IcmpIdent { ident: usize, csum: usize },
}

fn l4_csum(frame: &[u8], at: usize, partial: bool, udp: bool) -> L4Csum {
    match read16(frame, at) {
        None => L4Csum::Absent,
        Some(_) if partial => L4Csum::Partial(at),
        Some(0) if udp => L4Csum::Absent,
        Some(_) => L4Csum::Full(at),
    }
}

fn rewrite_endpoint(
    frame: &mut [u8],
    addr_off: usize,
    port: Port,
    to: Endpoint,
    changes: &mut Changes,
) {
    let Some(old_ip) = read32(frame, IP + addr_off) else {
        return;
    };
    let new_ip = u32::from(to.ip);
    if old_ip != new_ip {
        write32(frame, IP + addr_off, new_ip);
        changes.addrs = changes.addrs.plus(Diff::u32(old_ip, new_ip));
    }
    match port {
        Port::Transport(at) => {
            let Some(old) = read16(frame, at) else { return };
            if old != to.port {
                write16(frame, at, to.port);
                changes.ports = changes.ports.plus(Diff::u16(old, to.port));
            }
        }
        Port::IcmpIdent { ident, csum } => {
            let Some(old) = read16(frame, ident) else {
                return;
            };
            if old != to.port {
                write16(frame, ident, to.port);
                let before = changes.ident.map_or(Diff::default(), |(_, d)| d);
                changes.ident = Some((csum, before.plus(Diff::u16(old, to.port))));
            }
        }
        Port::Absent => {}
    }
}

/// Updates a complete transport checksum; 0 is sent as 0xFFFF (the same value in ones'
/// complement, and for UDP the only one that does not mean "no checksum").
fn update_l4(frame: &mut [u8], at: usize, f: impl FnOnce(u16) -> u16) {
    update_csum(frame, at, |c| match f(c) {
        0 => 0xFFFF,
        v => v,
    });
}

fn update_csum(frame: &mut [u8], at: usize, f: impl FnOnce(u16) -> u16) {
    if let Some(old) = read16(frame, at) {
        write16(frame, at, f(old));
    }
}

/// Translates an ICMP error related to a connection. `meta.nat` is the translation of the
/// direction the error travels in: its destination (if set) is where the error must go; its
/// source (if set) replaces the outer source only when the error comes from the endpoint the
/// quoted datagram was sent to (a backend refusing a port: the client must see the VIP); the
/// quoted datagram is translated the opposite way (its source becomes `nat.dst`, its
/// destination `nat.src`). The quoted IP header checksum is updated, the ICMP checksum is
/// recomputed over the message (errors are short). Returns false, frame untouched, when the
/// quote is not there as parse saw it.
pub fn translate_icmp_error(frame: &mut [u8], meta: &Meta) -> bool {
    let nat = meta.nat;
    let icmp = usize::from(meta.l4_offset);
    let inner = icmp + ICMPV4_HEADER_LEN;
    let Some(&ver_ihl) = frame.get(inner) else {
        return false;
    };
    let inner_hl = usize::from(ver_ihl & 0x0f) * 4;
    let inner_l4 = inner + inner_hl;
    let (Some(inner_src), Some(inner_dst), Some(&inner_proto)) = (
        read32(frame, inner + IP_SRC),
        read32(frame, inner + IP_DST),
        frame.get(inner + 9),
    ) else {
        return false;
    };
    if icmp == 0 || inner_hl < 20 || frame.len() < inner_l4 + 4 {
        return false;
    }
    let inner_proto = IpProtocol(inner_proto);
    let outer_src = read32(frame, IP + IP_SRC).unwrap_or(0);
    // Outer header: a packet of this direction.
    let outer = Nat {
        src: nat.src.filter(|_| outer_src == inner_dst),
        dst: nat.dst,
    };
    for (off, to) in [(IP_SRC, outer.src), (IP_DST, outer.dst)] {
        if let Some(to) = to {
            let old = read32(frame, IP + off).unwrap_or(0);
            let new = u32::from(to.ip);
            write32(frame, IP + off, new);
            update_csum(frame, IP + IP_CSUM, |c| checksum::update_u32(c, old, new));
        }
    }
    // The quote: the opposite direction.
    let ports = inner_proto == IpProtocol::TCP || inner_proto == IpProtocol::UDP;
    let sides = [
        (IP_SRC, 0, nat.dst, inner_src),
        (IP_DST, 2, nat.src, inner_dst),
    ];
    for (addr_off, port_off, to, old) in sides {
        let Some(to) = to else { continue };
        let new = u32::from(to.ip);
        write32(frame, inner + addr_off, new);
        update_csum(frame, inner + IP_CSUM, |c| {
            checksum::update_u32(c, old, new)
        });
        if ports {
            write16(frame, inner_l4 + port_off, to.port);
        } else if inner_proto == IpProtocol::ICMP {
            write16(frame, inner_l4 + 4, to.port);
        }
    }
    // The quoted transport checksum is not verified by receivers (they match on addresses
    // and ports) and is often cut off: it is left as it was. The ICMP checksum covers the
    // quote, so it is recomputed.
    let icmp_end = usize::from(read16(frame, IP + 2).unwrap_or(0)) + IP;
    let Some(msg) = frame.get_mut(icmp..icmp_end.min(frame.len())) else {
        return true;
    };
    msg[2] = 0;
    msg[3] = 0;
    let sum = checksum::checksum(msg);
    msg[2..4].copy_from_slice(&sum.to_be_bytes());
    true
}

/// The address a packet leaves with as its destination, after `nat`.
#[inline]
pub fn translated_dst(meta: &Meta) -> Ipv4Addr {
    meta.nat.dst.map_or(meta.flow.dst_ip, |e| e.ip)
}

fn read16(frame: &[u8], at: usize) -> Option<u16> {
    let b = frame.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn read32(frame: &[u8], at: usize) -> Option<u32> {
    let b = frame.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn write16(frame: &mut [u8], at: usize, v: u16) {
    if let Some(b) = frame.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

fn write32(frame: &mut [u8], at: usize, v: u32) {
    if let Some(b) = frame.get_mut(at..at + 4) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{Offload, L3};
    use crate::testkit::*;
    use podswitch_packet::{Ipv4Packet, PartialCsum, TcpPacket, UdpPacket};

    const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
    const BACKEND: Endpoint = Endpoint {
        ip: POD_B_IP,
        port: 8080,
    };

    fn meta_of(frame: &[u8]) -> Meta {
        let mut h = Harness::new();
        h.run_meta(POD_A, frame, crate::pipeline::parse::run)
    }

    fn dnat(frame: &mut [u8]) -> Meta {
        let mut meta = meta_of(frame);
        assert_eq!(meta.l3, L3::Ipv4);
        meta.nat.dst = Some(BACKEND);
        translate(frame, &meta);
        meta
    }

    /// Random TCP and UDP packets (addresses, ports, payload) under random translations of one
    /// side or both, each field sometimes unchanged: every checksum verifies after the fused
    /// update, complete ones by a full recomputation, partial ones against the new
    /// pseudo-header sum.
    #[test]
    fn random_translations_leave_every_checksum_right() {
        let mut next = crate::testkit::xorshift(0x9e37_79b9_7f4a_7c15u64);
        for round in 0..4000 {
            let r = next();
            let udp = r & 1 == 1;
            let partial = r & 2 == 2;
            let (src, dst) = (Ipv4Addr::from(next() as u32), Ipv4Addr::from(next() as u32));
            let mut f = if udp {
                udp_frame(POD_A_MAC, GW_MAC, src, dst, 64, (next() % 200) as usize)
            } else {
                tcp_syn_frame(POD_A_MAC, GW_MAC, src, dst)
            };
            let l4 = 14 + 20;
            let payload_from = l4 + if udp { 8 } else { 20 };
            for b in &mut f[payload_from..] {
                *b = next() as u8;
            }
            f[l4..l4 + 4].copy_from_slice(&(next() as u32).to_be_bytes()); // both ports
            let csum_at = l4 + if udp { 6 } else { 16 };
            let l4_len = (f.len() - l4) as u16;
            let proto = if udp {
                IpProtocol::UDP
            } else {
                IpProtocol::TCP
            };
            {
                let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
                if udp {
                    UdpPacket::new_unchecked(ip.payload_mut()).fill_checksum(src, dst);
                } else {
                    TcpPacket::new_unchecked(ip.payload_mut()).fill_checksum(src, dst);
                }
            }
            if partial {
                let pseudo = checksum::pseudo_header_ipv4(src, dst, proto, l4_len);
                f[csum_at..csum_at + 2].copy_from_slice(&pseudo.to_be_bytes());
            }
            let mut meta = meta_of(&f);
            assert_eq!(meta.l3, L3::Ipv4, "round {round}");
            if partial {
                meta.offload = Offload {
                    csum_start: l4 as u16,
                    csum_offset: if udp { 6 } else { 16 },
                    flags: podswitch_packet::virtio_net::FLAG_NEEDS_CSUM,
                    ..Offload::NONE
                };
            }
            let (old_src_port, old_dst_port) = match meta.flow.l4 {
                crate::batch::L4Key::Tcp {
                    src_port, dst_port, ..
                }
                | crate::batch::L4Key::Udp { src_port, dst_port } => (src_port, dst_port),
                _ => unreachable!("a TCP or UDP frame"),
            };
            // Each side: untouched, or to an endpoint that keeps the address or the port now
            // and then.
            let sides = next() % 3;
            let mut endpoint = |ip: Ipv4Addr, port: u16| {
                let r = next();
                Endpoint {
                    ip: if r & 4 == 4 {
                        ip
                    } else {
                        Ipv4Addr::from(next() as u32)
                    },
                    port: if r & 8 == 8 { port } else { next() as u16 },
                }
            };
            meta.nat = Nat {
                src: (sides != 1).then(|| endpoint(src, old_src_port)),
                dst: (sides != 0).then(|| endpoint(dst, old_dst_port)),
            };
            let udp_had_none = udp && !partial && f[csum_at..csum_at + 2] == [0, 0];
            translate(&mut f, &meta);
            let new_src = meta.nat.src.map_or(src, |e| e.ip);
            let new_dst = meta.nat.dst.map_or(dst, |e| e.ip);
            let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
            assert!(ip.verify_checksum(), "round {round}: IP header checksum");
            assert_eq!((ip.src(), ip.dst()), (new_src, new_dst), "round {round}");
            if partial {
                let want = checksum::pseudo_header_ipv4(new_src, new_dst, proto, l4_len);
                assert_eq!(
                    f[csum_at..csum_at + 2],
                    want.to_be_bytes(),
                    "round {round}: partial checksum holds the new pseudo-header sum"
                );
            } else if udp {
                let udp = UdpPacket::new_checked(ip.payload()).unwrap();
                assert_eq!(
                    udp.checksum() == 0,
                    udp_had_none,
                    "round {round}: 0 stays 0"
                );
                assert!(
                    udp_had_none || udp.verify_checksum(new_src, new_dst),
                    "round {round}: UDP checksum"
                );
            } else {
                let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
                assert!(
                    tcp.verify_checksum(new_src, new_dst),
                    "round {round}: TCP checksum"
                );
            }
        }
    }

    #[test]
    fn dnat_of_a_tcp_segment_leaves_every_checksum_valid() {
        let mut f = tcp_syn_frame(POD_A_MAC, GW_MAC, POD_A_IP, VIP);
        {
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            TcpPacket::new_unchecked(ip.payload_mut()).fill_checksum(POD_A_IP, VIP);
        }
        dnat(&mut f);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.dst(), POD_B_IP);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.dst_port(), 8080);
        assert!(tcp.verify_checksum(POD_A_IP, POD_B_IP));
    }

    #[test]
    fn snat_and_dnat_of_a_udp_datagram_with_checksum_verify() {
        let mut f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, VIP, 64, 30);
        // Give it a real checksum (the fixture sends 0).
        {
            let (src, dst) = (POD_A_IP, VIP);
            let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
            UdpPacket::new_unchecked(ip.payload_mut()).fill_checksum(src, dst);
        }
        let mut meta = meta_of(&f);
        meta.nat = Nat {
            src: Some(Endpoint { ip: GW_IP, port: 1 }),
            dst: Some(BACKEND),
        };
        translate(&mut f, &meta);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        let udp = UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!((udp.src_port(), udp.dst_port()), (1, 8080));
        assert!(udp.verify_checksum(GW_IP, POD_B_IP));
    }

    #[test]
    fn a_udp_datagram_without_checksum_keeps_none() {
        let mut f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, VIP, 64, 30);
        dnat(&mut f);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(UdpPacket::new_checked(ip.payload()).unwrap().checksum(), 0);
    }

    #[test]
    fn a_partial_checksum_gets_the_new_pseudo_header_sum_and_completes_right() {
        let mut f = tcp_syn_frame(POD_A_MAC, GW_MAC, POD_A_IP, VIP);
        let l4 = 14 + 20;
        // Make it partial as an offloading sender would: the field holds the pseudo-header sum.
        let tcp_len = (f.len() - l4) as u16;
        let pseudo = checksum::pseudo_header_ipv4(POD_A_IP, VIP, IpProtocol::TCP, tcp_len);
        f[l4 + 16..l4 + 18].copy_from_slice(&pseudo.to_be_bytes());
        let mut meta = meta_of(&f);
        meta.offload = Offload {
            csum_start: l4 as u16,
            csum_offset: 16,
            flags: podswitch_packet::virtio_net::FLAG_NEEDS_CSUM,
            ..Offload::NONE
        };
        meta.nat.dst = Some(BACKEND);
        translate(&mut f, &meta);
        let expected = checksum::pseudo_header_ipv4(POD_A_IP, POD_B_IP, IpProtocol::TCP, tcp_len);
        assert_eq!(
            &f[l4 + 16..l4 + 18],
            &expected.to_be_bytes(),
            "pseudo-header sum updated"
        );
        PartialCsum {
            start: l4 as u16,
            offset: 16,
        }
        .complete(&mut f)
        .unwrap();
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert!(tcp.verify_checksum(POD_A_IP, POD_B_IP));
        assert_eq!(tcp.dst_port(), 8080);
    }

    #[test]
    fn an_echo_request_gets_its_identifier_translated_with_the_icmp_checksum() {
        let mut f = echo_request(POD_A_MAC, GW_MAC, POD_A_IP, VIP, 64);
        let mut meta = meta_of(&f);
        meta.nat.src = Some(Endpoint {
            ip: GW_IP,
            port: 0x4242,
        });
        translate(&mut f, &meta);
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(ip.src(), GW_IP);
        assert_eq!(&ip.payload()[4..6], &0x4242u16.to_be_bytes());
        assert_eq!(
            checksum::checksum(ip.payload()),
            0,
            "ICMP checksum verifies"
        );
    }

    #[test]
    fn a_port_unreachable_from_the_backend_is_translated_back_to_the_vip() {
        // The backend refuses the DNATed datagram client:4000 → backend:8080.
        let datagram = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 10);
        let mut quote = datagram[14..14 + 28].to_vec();
        quote[22..24].copy_from_slice(&8080u16.to_be_bytes()); // its dst port
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&quote);
        let s = checksum::checksum(&icmp);
        icmp[2..4].copy_from_slice(&s.to_be_bytes());
        let mut f = ipv4_frame(
            POD_B_MAC,
            GW_MAC,
            POD_B_IP,
            POD_A_IP,
            64,
            IpProtocol::ICMP,
            &icmp,
        );
        let mut meta = meta_of(&f);
        // Reply direction of the connection: source back to the VIP.
        meta.nat.src = Some(Endpoint { ip: VIP, port: 53 });
        assert!(translate_icmp_error(&mut f, &meta));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src(), ip.dst()), (VIP, POD_A_IP));
        assert_eq!(
            checksum::checksum(ip.payload()),
            0,
            "ICMP checksum verifies"
        );
        let inner = Ipv4Packet::new_unchecked(&ip.payload()[8..]);
        assert!(inner.verify_checksum());
        assert_eq!((inner.src(), inner.dst()), (POD_A_IP, VIP));
        assert_eq!(&inner.payload()[2..4], &53u16.to_be_bytes());
    }
}
