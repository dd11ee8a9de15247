//! Parse: validates every header the switch will act on, once, so later stages read fields
//! without checking, and extracts the packet's [`FlowKey`](crate::batch::FlowKey) into its metadata. Anything
//! malformed is dropped here with a precise reason: the Ethernet, ARP and IPv4 headers
//! (RFC 791 §3.1, options walked as it says), fragments (RFC 791 §3.2, RFC 1858), and the
//! transport header where one is due: TCP (RFC 9293 §3.1), UDP (RFC 768), ICMP (RFC 792,
//! errors must quote an IPv4 header and 8 bytes).
//!
//! Decisions (ARCHITECTURE.md, "The flow key"):
//! - Source-route options (LSRR, SSRR) are dropped, as Linux does by default
//!   (`accept_source_route = 0`); other well-formed options pass untouched.
//! - Fragments are forwarded without reassembly. The first carries the transport header and
//!   is parsed like a whole datagram, except that it must hold that header entirely (RFC 1858
//!   tiny fragments are dropped) and its UDP length covers the whole datagram; later ones have
//!   no ports (`Fragment::Later`, `L4Key::None`). A TCP fragment at offset 8 (RFC 1858 §3.2)
//!   and any fragment ending past 65535 bytes are dropped.
//! - A UDP length shorter than the IP payload is accepted and the packet forwarded as it is:
//!   the receiver trims the excess, as Linux does (`pskb_trim_rcsum`) and as Linux conntrack
//!   accepts it; a length below 8 or past the payload is dropped.

use super::Ctx;
use crate::batch::{Batch, Fragment, L4Key, Meta, Next, QuotedKey, L3};
use crate::counters::DropReason;
use crate::trace::Stage;
use podswitch_packet::{
    icmpv4, ArpPacket, EtherType, EthernetFrame, Icmpv4Packet, Icmpv4Type, IpProtocol, Ipv4Error,
    Ipv4Options, Ipv4Packet, TcpPacket, UdpPacket, ETHERNET_HEADER_LEN, IPV4_MIN_HEADER_LEN,
    TCP_MIN_HEADER_LEN, UDP_HEADER_LEN,
};

/// The largest IPv4 datagram: a fragment may not end past it (RFC 791 total length is 16 bits).
const MAX_DATAGRAM: usize = 65535;

/// Runs the stage.
pub fn run(batch: &mut Batch, cx: &mut Ctx) {
    let (tables, ctr, trace) = (cx.tables, &mut *cx.ctr, &mut *cx.trace);
    // Frames longer than this are jumbo frames the input port never allowed.
    let max_frame = tables
        .port(batch.in_port)
        .map_or(usize::MAX, |p| usize::from(p.mtu) + ETHERNET_HEADER_LEN);
    for (i, pkt) in batch.iter_mut().enumerate() {
        // Dropped by the tunnel stage already.
        if !pkt.pending() {
            continue;
        }
        let verdict = classify(pkt.buf.frame(), max_frame, &mut pkt.meta);
        match verdict {
            Ok(()) => trace.note(i, Stage::Parse, Next::Continue, "headers valid"),
            Err(reason) => {
                pkt.drop(reason, ctr);
                trace.note(i, Stage::Parse, pkt.meta.next, reason.description());
            }
        }
    }
}

fn classify(frame: &[u8], max_frame: usize, meta: &mut Meta) -> Result<(), DropReason> {
    if frame.len() < ETHERNET_HEADER_LEN {
        return Err(DropReason::Runt);
    }
    // A GSO super-frame is longer than the MTU by design: what must fit the MTU is each of
    // its segments, which L3 checks against the output port (as Linux does).
    if frame.len() > max_frame && !meta.offload.is_gso() {
        return Err(DropReason::FrameTooLong);
    }
    let eth = EthernetFrame::new_unchecked(frame);
    match eth.ethertype() {
        EtherType::IPV4 => {
            ipv4(&frame[ETHERNET_HEADER_LEN..], meta)?;
            if meta.offload.is_none() {
                Ok(())
            } else {
                offload(meta)
            }
        }
        EtherType::ARP => {
            if meta.offload.is_gso() {
                return Err(DropReason::GsoTypeMismatch);
            }
            // A checksum flag means nothing on ARP: the reply is built without it.
            meta.offload = crate::batch::Offload::NONE;
            let arp = ArpPacket::new_checked(&frame[ETHERNET_HEADER_LEN..])
                .map_err(|_| DropReason::ArpMalformed)?;
            meta.l3 = L3::Arp;
            meta.flow.src_ip = arp.sender_ip();
            meta.flow.dst_ip = arp.target_ip();
            Ok(())
        }
        _ => Err(DropReason::UnsupportedEtherType),
    }
}

fn ipv4(data: &[u8], meta: &mut Meta) -> Result<(), DropReason> {
    let ip = Ipv4Packet::new_checked(data).map_err(|e| match e {
        Ipv4Error::Truncated => DropReason::Ipv4Truncated,
        Ipv4Error::BadVersion => DropReason::Ipv4BadVersion,
        Ipv4Error::BadHeaderLen => DropReason::Ipv4BadHeaderLen,
        Ipv4Error::BadTotalLen => DropReason::Ipv4BadTotalLen,
    })?;
    if !ip.verify_checksum() {
        return Err(DropReason::Ipv4BadChecksum);
    }
    let header_len = ip.header_len();
    if header_len > IPV4_MIN_HEADER_LEN {
        match Ipv4Options::check(ip.options()) {
            Ok(false) => {}
            Ok(true) => return Err(DropReason::Ipv4SourceRoute),
            Err(_) => return Err(DropReason::Ipv4BadOption),
        }
    }
    let proto = ip.protocol();
    let payload = ip.payload();
    let offset = usize::from(ip.frag_offset());
    // One test of the flags word for the common case, a whole datagram.
    let frag = if !ip.is_fragment() {
        Fragment::None
    } else if offset + payload.len() > MAX_DATAGRAM {
        return Err(DropReason::Ipv4FragmentTooLong);
    } else if offset > 0 {
        Fragment::Later
    } else {
        Fragment::First
    };
    meta.l3 = L3::Ipv4;
    let flow = &mut meta.flow;
    flow.src_ip = ip.src();
    flow.dst_ip = ip.dst();
    flow.proto = proto;
    flow.frag = frag;
    if frag == Fragment::Later {
        // RFC 1858 §3.2: a TCP fragment at offset 8 can only serve to rewrite the flags of
        // the header the first fragment carried (the tiny-fragment overlap attack).
        if proto == IpProtocol::TCP && offset == 8 {
            return Err(DropReason::Ipv4TinyFragment);
        }
        flow.l4 = L4Key::None;
        meta.l4_offset = 0;
        return Ok(());
    }
    l4(proto, payload, frag, &mut flow.l4)?;
    // At most 14 + 60: fits.
    meta.l4_offset = (ETHERNET_HEADER_LEN + header_len) as u16;
    Ok(())
}

/// Checks the offload state of an IPv4 packet against its headers (ARCHITECTURE.md,
/// "Offloads"): a partial checksum must be the TCP or UDP checksum field of a whole datagram
/// (its L4 checksum field holds the pseudo-header sum and is never verified), and a GSO frame
/// must be TCP for `TCPV4`, UDP for `UDP_L4` — the two kinds the switch can segment.
fn offload(meta: &Meta) -> Result<(), DropReason> {
    use podswitch_packet::virtio_net::{
        GSO_ECN, GSO_TCPV4, GSO_UDP_L4, TCP_CSUM_OFFSET, UDP_CSUM_OFFSET,
    };
    let o = &meta.offload;
    let whole = meta.flow.frag == Fragment::None;
    if o.is_gso() {
        let ok = whole
            && match o.gso_type & !GSO_ECN {
                GSO_TCPV4 => meta.flow.proto == IpProtocol::TCP,
                GSO_UDP_L4 => meta.flow.proto == IpProtocol::UDP,
                _ => false,
            };
        if !ok {
            return Err(DropReason::GsoTypeMismatch);
        }
    }
    if o.needs_csum() {
        let field = match meta.flow.proto {
            IpProtocol::TCP => TCP_CSUM_OFFSET,
            IpProtocol::UDP => UDP_CSUM_OFFSET,
            _ => return Err(DropReason::BadCsumStart),
        };
        if !whole || o.csum_start != meta.l4_offset || o.csum_offset != field {
            return Err(DropReason::BadCsumStart);
        }
    }
    Ok(())
}

/// The transport header of a whole datagram or first fragment, validated.
/// Writes the key into `key` (in place: the key is larger than a return register pair).
fn l4(
    proto: IpProtocol,
    payload: &[u8],
    frag: Fragment,
    key: &mut L4Key,
) -> Result<(), DropReason> {
    // A first fragment that cannot hold the whole transport header is a tiny fragment
    // (RFC 1858 §3.1); a whole datagram that cannot is truncated.
    let short = |truncated| {
        if frag == Fragment::First {
            DropReason::Ipv4TinyFragment
        } else {
            truncated
        }
    };
    match proto {
        IpProtocol::TCP => {
            // The views read the fixed header (`first_chunk`: its length is known, so their
            // field accesses need no bounds checks); the data offset is checked against the
            // whole payload, as `TcpPacket::new_checked` does, but keeping apart a first
            // fragment too short for its options (a tiny fragment).
            let Some(h) = payload.first_chunk::<TCP_MIN_HEADER_LEN>() else {
                return Err(short(DropReason::TcpTruncated));
            };
            let tcp = TcpPacket::new_unchecked(&h[..]);
            let header_len = tcp.header_len();
            if header_len < TCP_MIN_HEADER_LEN {
                return Err(DropReason::TcpBadDataOffset);
            }
            if header_len > payload.len() {
                return Err(short(DropReason::TcpBadDataOffset));
            }
            *key = L4Key::Tcp {
                src_port: tcp.src_port(),
                dst_port: tcp.dst_port(),
                flags: tcp.flags(),
            };
        }
        IpProtocol::UDP => {
            let Some(h) = payload.first_chunk::<UDP_HEADER_LEN>() else {
                return Err(short(DropReason::UdpTruncated));
            };
            let udp = UdpPacket::new_unchecked(&h[..]);
            let len = usize::from(udp.len());
            // A first fragment's UDP length covers the whole datagram, not this fragment
            // (so not `UdpPacket::new_checked`, which holds it to the bytes present).
            if len < UDP_HEADER_LEN || (frag == Fragment::None && len > payload.len()) {
                return Err(DropReason::UdpBadLength);
            }
            *key = L4Key::Udp {
                src_port: udp.src_port(),
                dst_port: udp.dst_port(),
            };
        }
        IpProtocol::ICMP => {
            let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
                return Err(short(DropReason::IcmpTruncated));
            };
            let icmp_type = icmp.msg_type();
            let (ident, quoted) = if icmp.is_error() {
                let quote =
                    icmpv4::quoted_header(icmp.payload()).map_err(|_| DropReason::IcmpBadQuote)?;
                (0, Some(quoted_key(&quote)))
            } else if matches!(icmp_type, Icmpv4Type::ECHO_REQUEST | Icmpv4Type::ECHO_REPLY) {
                (icmp.echo_ident(), None)
            } else {
                (0, None)
            };
            *key = L4Key::Icmp {
                icmp_type: icmp_type.0,
                code: icmp.code(),
                ident,
                quoted,
            };
        }
        _ => *key = L4Key::None,
    }
    Ok(())
}

/// The key of the datagram an ICMP error quotes (checked by `quoted_header`: a header and at
/// least 8 bytes after it, so the ports are there unless it was itself a later fragment).
fn quoted_key(ip: &Ipv4Packet<&[u8]>) -> QuotedKey {
    let proto = ip.protocol();
    let t = ip.payload();
    let word = |at: usize| {
        t.get(at..at + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let (src_port, dst_port) = match proto {
        _ if ip.frag_offset() != 0 => (0, 0),
        IpProtocol::TCP | IpProtocol::UDP => (word(0), word(2)),
        IpProtocol::ICMP
            if matches!(
                t.first().map(|&b| Icmpv4Type(b)),
                Some(Icmpv4Type::ECHO_REQUEST | Icmpv4Type::ECHO_REPLY)
            ) =>
        {
            (word(4), 0)
        }
        _ => (0, 0),
    };
    QuotedKey {
        src_ip: ip.src(),
        dst_ip: ip.dst(),
        proto,
        src_port,
        dst_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::*;
    use podswitch_packet::TcpFlags;

    fn verdict(frame: &[u8]) -> Next {
        let mut h = Harness::new();
        h.run_one(POD_A, frame, run)
    }

    #[test]
    fn valid_ipv4_and_arp_continue_with_addresses_extracted() {
        let mut h = Harness::new();
        let frame = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
        let meta = h.run_meta(POD_A, &frame, run);
        assert_eq!(meta.next, Next::Continue);
        assert_eq!(
            (meta.l3, meta.flow.src_ip, meta.flow.dst_ip, meta.flow.proto),
            (L3::Ipv4, POD_A_IP, POD_B_IP, IpProtocol::UDP)
        );
        let arp = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
        assert_eq!(verdict(&arp), Next::Continue);
    }

    #[test]
    fn malformed_frames_are_dropped_by_reason() {
        let good = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
        assert_eq!(verdict(&good[..13]), Next::Drop(DropReason::Runt));
        assert_eq!(verdict(&good[..30]), Next::Drop(DropReason::Ipv4Truncated));
        let mut v = good.clone();
        v[14] = 0x65;
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadVersion));
        let mut v = good.clone();
        v[14] = 0x44;
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadHeaderLen));
        let mut v = good.clone();
        v[16..18].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadTotalLen));
        let mut v = good.clone();
        v[24] ^= 0xff;
        assert_eq!(verdict(&v), Next::Drop(DropReason::Ipv4BadChecksum));
        let mut v = good.clone();
        v[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(verdict(&v), Next::Drop(DropReason::UnsupportedEtherType));
        let arp = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
        assert_eq!(verdict(&arp[..30]), Next::Drop(DropReason::ArpMalformed));
        let jumbo = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 1600);
        assert_eq!(verdict(&jumbo), Next::Drop(DropReason::FrameTooLong));
    }

    #[test]
    fn ethernet_padding_after_the_ip_packet_is_accepted() {
        let mut f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 0);
        f.resize(60, 0);
        assert_eq!(verdict(&f), Next::Continue);
    }

    /// `ip_and_l4` (literal IPv4 header and payload, checksum field ignored) in an Ethernet
    /// frame from pod A to the gateway, with the IPv4 header checksum filled in: the tests
    /// below are about what follows a valid checksum.
    fn frame(ip_and_l4: &[u8]) -> Vec<u8> {
        let mut f = vec![
            0x02, 0x50, 0x53, 0x00, 0x00, 0x01, 0x02, 0x00, 0x0a, 0xf4, 0x01, 0x02, 0x08, 0x00,
        ];
        f.extend_from_slice(ip_and_l4);
        Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        f
    }

    fn dropped(ip_and_l4: &[u8]) -> Next {
        verdict(&frame(ip_and_l4))
    }

    fn meta_of(ip_and_l4: &[u8]) -> Meta {
        Harness::new().run_meta(POD_A, &frame(ip_and_l4), run)
    }

    /// IHL 6 (one option word) UDP 4000 → 5000, 8 bytes: the option word is the argument.
    fn udp_with_option(option: [u8; 4]) -> Vec<u8> {
        let mut p = vec![
            0x46, 0x00, 0x00, 0x20, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03,
        ];
        p.extend_from_slice(&option);
        p.extend_from_slice(&[0x0f, 0xa0, 0x13, 0x88, 0x00, 0x08, 0x00, 0x00]);
        p
    }

    #[test]
    fn ipv4_options_with_length_zero_one_or_past_the_header_are_dropped() {
        for option in [
            [0x88, 0x00, 0x00, 0x00], // length 0
            [0x88, 0x01, 0x00, 0x00], // length 1
            [0x88, 0xff, 0x00, 0x00], // length 255: past the header
            [0x88, 0x05, 0x00, 0x00], // one byte past the header
            [0x01, 0x01, 0x01, 0x44], // timestamp without its length octet
            [0x94, 0x02, 0x00, 0x00], // router alert must be 4 long
            [0x07, 0x03, 0x00, 0x00], // record route: pointer 0
        ] {
            assert_eq!(
                dropped(&udp_with_option(option)),
                Next::Drop(DropReason::Ipv4BadOption),
                "{option:x?}"
            );
        }
    }

    #[test]
    fn well_formed_options_pass() {
        for option in [
            [0x94, 0x04, 0x00, 0x00], // router alert
            [0x01, 0x01, 0x01, 0x00], // NOPs, EOL
            [0x00, 0xff, 0xff, 0xff], // EOL then padding that is not read
            [0x88, 0x04, 0x12, 0x34], // stream id: an option Linux does not parse
        ] {
            assert_eq!(
                dropped(&udp_with_option(option)),
                Next::Continue,
                "{option:x?}"
            );
        }
    }

    #[test]
    fn loose_and_strict_source_routes_are_dropped_as_linux_does() {
        // IHL 8: NOP, LSRR/SSRR length 7 pointer 4 with one hop 10.0.0.1, then EOL padding.
        for kind in [0x83, 0x89] {
            let mut p = vec![
                0x48, 0x00, 0x00, 0x28, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4,
                0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03,
            ];
            p.extend_from_slice(&[0x01, kind, 0x07, 0x04, 10, 0, 0, 1, 0x00, 0x00, 0x00, 0x00]);
            p.extend_from_slice(&[0x0f, 0xa0, 0x13, 0x88, 0x00, 0x08, 0x00, 0x00]);
            assert_eq!(dropped(&p), Next::Drop(DropReason::Ipv4SourceRoute));
        }
    }

    #[test]
    fn tcp_first_fragment_without_the_whole_tcp_header_is_a_tiny_fragment() {
        // MF set, offset 0, 16 bytes of TCP: the flags and data offset are not in it.
        let p = [
            0x45, 0x00, 0x00, 0x24, 0x12, 0x34, 0x20, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x00, 0x00, 0x00, 0x50, 0x02, 0xff, 0xff,
        ];
        assert_eq!(dropped(&p), Next::Drop(DropReason::Ipv4TinyFragment));
    }

    #[test]
    fn tcp_fragment_at_offset_8_is_a_tiny_fragment() {
        // Offset field 1 (8 bytes): would overwrite the first fragment's TCP flags.
        let p = [
            0x45, 0x00, 0x00, 0x24, 0x12, 0x34, 0x00, 0x01, 0x40, 0x06, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0x00, 0x00, 0x00, 0x00, 0x50, 0x03, 0xff, 0xff,
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        assert_eq!(dropped(&p), Next::Drop(DropReason::Ipv4TinyFragment));
    }

    #[test]
    fn udp_fragments_pass_the_first_with_ports_the_later_without() {
        // First: MF, offset 0, UDP length 1008 (the whole datagram), 8 bytes here.
        let first = [
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x20, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0x0f, 0xa0, 0x13, 0x88, 0x03, 0xf0, 0x00, 0x00,
        ];
        let m = meta_of(&first);
        assert_eq!(m.next, Next::Continue);
        assert_eq!(m.flow.frag, Fragment::First);
        assert_eq!(
            m.flow.l4,
            L4Key::Udp {
                src_port: 4000,
                dst_port: 5000
            }
        );
        // Later: offset 1000 (field 125), 8 bytes that are not a UDP header.
        let later = [
            0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x00, 0x7d, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x00, 0x00, 0x00,
        ];
        let m = meta_of(&later);
        assert_eq!(m.next, Next::Continue);
        assert_eq!(
            (m.flow.frag, m.flow.l4, m.l4_offset),
            (Fragment::Later, L4Key::None, 0)
        );
    }

    #[test]
    fn fragment_ending_past_65535_bytes_is_dropped() {
        // Offset 8189 * 8 = 65512, plus 32 bytes of payload: ends at 65544.
        let mut p = vec![
            0x45, 0x00, 0x00, 0x34, 0x12, 0x34, 0x1f, 0xfd, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03,
        ];
        p.extend_from_slice(&[0u8; 32]);
        assert_eq!(dropped(&p), Next::Drop(DropReason::Ipv4FragmentTooLong));
        // 16 bytes end at 65528: allowed.
        p[2..4].copy_from_slice(&36u16.to_be_bytes());
        p.truncate(36);
        assert_eq!(dropped(&p), Next::Continue);
    }

    /// A TCP SYN 40000 → 80 whose data-offset byte is the argument, `extra` bytes after it.
    fn tcp_with_offset_byte(offset: u8, extra: usize) -> Vec<u8> {
        let total = (20 + 20 + extra) as u16;
        let mut p = vec![
            0x45, 0x00, 0x00, 0x00, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0x9c, 0x40, 0x00, 0x50, 0x00, 0x00, 0x00, 0x01,
            0x00, 0x00, 0x00, 0x00, offset, 0x02, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00,
        ];
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p.resize(usize::from(total), 0x01);
        p
    }

    #[test]
    fn tcp_data_offset_below_five_or_past_the_segment_is_dropped() {
        assert_eq!(
            dropped(&tcp_with_offset_byte(0x40, 0)),
            Next::Drop(DropReason::TcpBadDataOffset)
        );
        assert_eq!(
            dropped(&tcp_with_offset_byte(0xf0, 20)),
            Next::Drop(DropReason::TcpBadDataOffset)
        );
        assert_eq!(dropped(&tcp_with_offset_byte(0x60, 4)), Next::Continue);
    }

    #[test]
    fn tcp_flow_key_has_ports_flags_and_the_l4_offset() {
        let m = meta_of(&tcp_with_offset_byte(0x50, 0));
        assert_eq!(
            m.flow.l4,
            L4Key::Tcp {
                src_port: 40000,
                dst_port: 80,
                flags: TcpFlags::SYN
            }
        );
        assert_eq!((m.flow.frag, m.l4_offset), (Fragment::None, 34));
    }

    #[test]
    fn transport_headers_missing_from_short_payloads_are_dropped_by_protocol() {
        let header = |proto: u8, payload: usize| {
            let mut p = vec![
                0x45, 0x00, 0x00, 0x00, 0x12, 0x34, 0x40, 0x00, 0x40, proto, 0x00, 0x00, 0x0a,
                0xf4, 0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03,
            ];
            p[2..4].copy_from_slice(&((20 + payload) as u16).to_be_bytes());
            p.resize(20 + payload, 0);
            p
        };
        for (proto, short, reason) in [
            (6, 19, DropReason::TcpTruncated),
            (17, 7, DropReason::UdpTruncated),
            (1, 7, DropReason::IcmpTruncated),
        ] {
            assert_eq!(
                dropped(&header(proto, 0)),
                Next::Drop(reason),
                "empty {proto}"
            );
            assert_eq!(
                dropped(&header(proto, short)),
                Next::Drop(reason),
                "{proto}"
            );
        }
        // Protocols without a parsed header pass with no key (the switch routes them).
        assert_eq!(dropped(&header(47, 0)), Next::Continue);
    }

    /// UDP 4000 → 5000 with UDP length `udp_len` and 8 payload bytes (IP payload 16).
    fn udp_with_len(udp_len: u16) -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x24, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0x0f, 0xa0, 0x13, 0x88, 0x00, 0x00, 0x00, 0x00,
            0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68,
        ];
        p[24..26].copy_from_slice(&udp_len.to_be_bytes());
        p
    }

    #[test]
    fn udp_length_below_8_or_past_the_ip_payload_is_dropped() {
        assert_eq!(
            dropped(&udp_with_len(7)),
            Next::Drop(DropReason::UdpBadLength)
        );
        assert_eq!(
            dropped(&udp_with_len(0)),
            Next::Drop(DropReason::UdpBadLength)
        );
        assert_eq!(
            dropped(&udp_with_len(17)),
            Next::Drop(DropReason::UdpBadLength)
        );
        assert_eq!(dropped(&udp_with_len(16)), Next::Continue);
    }

    #[test]
    fn udp_length_short_of_the_ip_payload_is_forwarded_for_the_receiver_to_trim() {
        assert_eq!(dropped(&udp_with_len(8)), Next::Continue);
    }

    /// An ICMP time exceeded (type 11) quoting `quote`.
    fn time_exceeded(quote: &[u8]) -> Vec<u8> {
        let mut p = vec![
            0x45, 0x00, 0x00, 0x00, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0x0a, 0xf4,
            0x01, 0x02, 0x0a, 0xf4, 0x01, 0x03, 0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        ];
        p.extend_from_slice(quote);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p
    }

    /// The quote of a UDP datagram 10.244.1.3:5000 → 10.244.1.2:4000 (pod B's, answered by A).
    const UDP_QUOTE: [u8; 28] = [
        0x45, 0x00, 0x00, 0x24, 0x00, 0x01, 0x40, 0x00, 0x01, 0x11, 0x00, 0x00, 0x0a, 0xf4, 0x01,
        0x03, 0x0a, 0xf4, 0x01, 0x02, 0x13, 0x88, 0x0f, 0xa0, 0x00, 0x10, 0x00, 0x00,
    ];

    #[test]
    fn icmp_error_quoting_garbage_is_dropped() {
        let garbage = [0xde; 28];
        assert_eq!(
            dropped(&time_exceeded(&garbage)),
            Next::Drop(DropReason::IcmpBadQuote)
        );
        let mut v6 = UDP_QUOTE;
        v6[0] = 0x65;
        assert_eq!(
            dropped(&time_exceeded(&v6)),
            Next::Drop(DropReason::IcmpBadQuote)
        );
        let mut ihl4 = UDP_QUOTE;
        ihl4[0] = 0x44;
        assert_eq!(
            dropped(&time_exceeded(&ihl4)),
            Next::Drop(DropReason::IcmpBadQuote)
        );
        assert_eq!(
            dropped(&time_exceeded(&UDP_QUOTE[..27])),
            Next::Drop(DropReason::IcmpBadQuote)
        );
        assert_eq!(
            dropped(&time_exceeded(&[])),
            Next::Drop(DropReason::IcmpBadQuote)
        );
    }

    #[test]
    fn icmp_error_carries_the_key_of_the_datagram_it_quotes() {
        let m = meta_of(&time_exceeded(&UDP_QUOTE));
        assert_eq!(m.next, Next::Continue);
        assert_eq!(
            m.flow.l4,
            L4Key::Icmp {
                icmp_type: 11,
                code: 0,
                ident: 0,
                quoted: Some(QuotedKey {
                    src_ip: POD_B_IP,
                    dst_ip: POD_A_IP,
                    proto: IpProtocol::UDP,
                    src_port: 5000,
                    dst_port: 4000,
                }),
            }
        );
    }

    #[test]
    fn icmp_echo_key_has_the_identifier() {
        let f = echo_request(POD_A_MAC, GW_MAC, POD_A_IP, GW_IP, 64);
        let m = Harness::new().run_meta(POD_A, &f, run);
        assert_eq!(
            m.flow.l4,
            L4Key::Icmp {
                icmp_type: 8,
                code: 0,
                ident: 0x4242,
                quoted: None
            }
        );
    }
}
