//! Every view of `podswitch-packet` over arbitrary bytes.
//!
//! The crate promises (lib.rs) that after `new_checked` succeeds no accessor panics, and that
//! even a setter that breaks a length field cannot make a later accessor panic. So for each
//! protocol this target: wraps the input with `new_checked`; on success calls every getter and
//! `Repr::parse`; then, on a copy, calls every setter with values drawn from the input
//! (length-breaking ones included) and every getter again. The layers are also walked the way
//! the pipeline does (Ethernet → ARP / IPv4 → ICMPv4 / UDP / TCP).
//!
//! Beyond "never panics" it asserts properties that hold by construction, so that a failure is
//! a real bug: `Repr` emit/parse round trips, and `fill_checksum` (then the incremental
//! updates `decrement_ttl` and `make_echo_reply`) leaving a checksum that verifies.

#![no_main]

use core::net::Ipv4Addr;
use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use podswitch_packet::{
    checksum, icmpv4, ArpOp, ArpPacket, ArpRepr, EtherType, EthernetFrame, EthernetRepr,
    Icmpv4Packet, Icmpv4Repr, Icmpv4Type, IpProtocol, Ipv4Options, Ipv4Packet, Ipv4Repr, MacAddr,
    TcpFlags, TcpPacket, UdpPacket, ETHERNET_HEADER_LEN,
};

fuzz_target!(|data: &[u8]| {
    // Setter values come from the input too, read from its front; exhausted input gives zeros.
    let mut k = Knobs(Unstructured::new(data));

    // Every view straight over the input, whatever it holds.
    ethernet(data, &mut k);
    arp(data, &mut k);
    ipv4(data, &mut k);
    icmp(data, &mut k);
    udp(data, &mut k);
    tcp(data, &mut k);
    let _ = icmpv4::quote(data);
    quoted(data);
    options(data);
    checksums(data, &mut k);

    // And layer by layer, as the pipeline walks a frame.
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    match eth.ethertype() {
        EtherType::ARP => arp(eth.payload(), &mut k),
        EtherType::IPV4 => {
            let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
                return;
            };
            let (src, dst) = (ip.src(), ip.dst());
            match ip.protocol() {
                IpProtocol::ICMP => icmp(ip.payload(), &mut k),
                IpProtocol::UDP => udp_with(ip.payload(), src, dst, &mut k),
                IpProtocol::TCP => tcp_with(ip.payload(), src, dst, &mut k),
                _ => {}
            }
        }
        _ => {}
    }
});

/// Values for setters, drawn from the input.
struct Knobs<'a>(Unstructured<'a>);

impl Knobs<'_> {
    fn u8(&mut self) -> u8 {
        self.0.arbitrary().unwrap_or_default()
    }
    fn u16(&mut self) -> u16 {
        self.0.arbitrary().unwrap_or_default()
    }
    fn u32(&mut self) -> u32 {
        self.0.arbitrary().unwrap_or_default()
    }
    fn bool(&mut self) -> bool {
        self.0.arbitrary().unwrap_or_default()
    }
    fn ip(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.u32())
    }
    fn mac(&mut self) -> MacAddr {
        MacAddr(self.0.arbitrary().unwrap_or_default())
    }
    /// A header length as a setter takes it: anything up to 255, not only valid ones.
    fn header_len(&mut self) -> usize {
        usize::from(self.u8())
    }
}

fn ethernet(data: &[u8], k: &mut Knobs) {
    let Ok(frame) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (frame.dst(), frame.src(), frame.ethertype(), frame.payload());
    let _ = (frame.dst().is_broadcast(), frame.src().is_unicast());
    let _ = (frame.src().is_multicast(), frame.src().is_local());
    let _ = EthernetFrame::<&[u8]>::buffer_len(frame.payload().len());
    let repr = EthernetRepr::parse(&frame).expect("parse accepts what new_checked accepted");
    let _ = EthernetFrame::new_checked(data).map(EthernetFrame::into_payload);

    let mut buf = [0u8; ETHERNET_HEADER_LEN];
    repr.emit(&mut buf)
        .expect("a header fits its own buffer_len");
    let back = EthernetRepr::parse(&EthernetFrame::new_unchecked(&buf[..repr.buffer_len()]));
    assert_eq!(back, Ok(repr), "EthernetRepr emit/parse round trip");

    let mut copy = data.to_vec();
    let mut frame = EthernetFrame::new_checked(&mut copy[..]).expect("same bytes");
    frame.set_dst(k.mac());
    frame.set_src(k.mac());
    frame.set_ethertype(EtherType(k.u16()));
    let n = frame.payload_mut().len();
    assert_eq!(n, data.len() - ETHERNET_HEADER_LEN);
    let _ = (frame.dst(), frame.src(), frame.ethertype(), frame.payload());
    let _ = frame.into_inner();
}

fn arp(data: &[u8], k: &mut Knobs) {
    let Ok(packet) = ArpPacket::new_checked(data) else {
        return;
    };
    let _ = (packet.operation(), packet.sender_hw(), packet.sender_ip());
    let _ = (packet.target_hw(), packet.target_ip());
    let repr = ArpRepr::parse(&packet).expect("parse accepts what new_checked accepted");
    assert_eq!(u16::from(repr.operation), u16::from(packet.operation()));

    let mut buf = [0u8; podswitch_packet::ARP_LEN];
    repr.emit(&mut buf[..repr.buffer_len()]).expect("fits");
    let back = ArpPacket::new_checked(&buf[..]).map(|p| ArpRepr::parse(&p));
    assert_eq!(back, Ok(Ok(repr)), "ArpRepr emit/parse round trip");

    let mut copy = data.to_vec();
    let mut packet = ArpPacket::new_checked(&mut copy[..]).expect("same bytes");
    packet.set_operation(ArpOp::from(k.u16()));
    packet.set_sender_hw(k.mac());
    packet.set_sender_ip(k.ip());
    packet.set_target_hw(k.mac());
    packet.set_target_ip(k.ip());
    if k.bool() {
        let requested = packet.target_ip();
        let requester = (packet.sender_hw(), packet.sender_ip());
        let ours = k.mac();
        packet.make_reply(ours);
        assert_eq!(packet.operation(), ArpOp::Reply);
        assert_eq!((packet.sender_hw(), packet.sender_ip()), (ours, requested));
        assert_eq!((packet.target_hw(), packet.target_ip()), requester);
    }
    packet.set_ethernet_ipv4();
    let _ = (packet.operation(), packet.sender_hw(), packet.target_ip());
    let _ = packet.into_inner();
}

fn ipv4(data: &[u8], k: &mut Knobs) {
    let Ok(packet) = Ipv4Packet::new_checked(data) else {
        return;
    };
    ipv4_getters(&packet);
    let repr = Ipv4Repr::parse(&packet).expect("parse accepts what new_checked accepted");
    assert_eq!(
        repr.payload_len,
        packet.payload().len(),
        "payload_len is what payload() returns"
    );
    let _ = Ipv4Packet::new_checked(data).map(Ipv4Packet::into_payload);

    let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
    repr.emit(&mut buf).expect("a parsed header always fits");
    let emitted = Ipv4Packet::new_checked(&buf[..]).expect("emit writes a valid header");
    assert!(emitted.verify_checksum(), "emit fills the checksum");
    assert_eq!(Ipv4Repr::parse(&emitted), Ok(repr), "Ipv4Repr round trip");

    // Checksum, then an incremental TTL update: the checksum must still verify.
    let mut copy = data.to_vec();
    let mut packet = Ipv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    packet.fill_checksum();
    assert!(packet.verify_checksum(), "fill_checksum verifies");
    let ttl = packet.ttl();
    assert_eq!(packet.decrement_ttl(), ttl.saturating_sub(1));
    assert!(
        packet.verify_checksum(),
        "decrement_ttl keeps the checksum valid"
    );

    // Every setter, including ones that break the lengths new_checked validated.
    packet.set_dscp_ecn(k.u8());
    packet.set_ident(k.u16());
    packet.set_dont_frag(k.bool());
    packet.set_more_frags(k.bool());
    packet.set_frag_offset(k.u16());
    packet.set_ttl(k.u8());
    packet.set_protocol(IpProtocol(k.u8()));
    packet.set_src(k.ip());
    packet.set_dst(k.ip());
    packet.fill_checksum();
    assert!(
        packet.verify_checksum(),
        "fill_checksum verifies after setters"
    );
    packet.set_checksum(k.u16());
    packet.set_total_len(k.u16());
    packet.set_version_and_header_len(k.header_len());
    let _ = packet.decrement_ttl();
    packet.fill_checksum();
    let _ = (packet.options_mut().len(), packet.payload_mut().len());
    ipv4_getters(&packet);
    let _ = Ipv4Repr::parse(&packet);
    let _ = packet.into_inner();
}

/// The option walk: never panics, ends, and agrees with `check`; every option it yields lies
/// inside the list (data plus its type and length octets, or one octet for NOP).
fn options(data: &[u8]) {
    let mut consumed = 0usize;
    let mut first_err = None;
    let mut source_route = false;
    for o in Ipv4Options::new(data) {
        match o {
            Ok(o) => {
                consumed += if o.kind == 1 { 1 } else { o.data.len() + 2 };
                source_route |= o.is_source_route();
            }
            Err(e) => {
                first_err = Some(e);
                break;
            }
        }
    }
    assert!(consumed <= data.len(), "options walked past the list");
    let expected = match first_err {
        Some(e) => Err(e),
        None => Ok(source_route),
    };
    assert_eq!(
        Ipv4Options::check(data),
        expected,
        "check agrees with the walk"
    );
}

/// `quoted_header`: on success a header and 8 bytes are there, and every getter is safe.
fn quoted(data: &[u8]) {
    if let Ok(ip) = icmpv4::quoted_header(data) {
        assert!(data.len() >= ip.header_len() + 8 && ip.header_len() >= 20);
        assert_eq!(ip.version(), 4);
        ipv4_getters(&ip);
    }
}

fn ipv4_getters<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) {
    let _ = (
        p.version(),
        p.header_len(),
        p.dscp_ecn(),
        p.total_len(),
        p.ident(),
    );
    let _ = (
        p.dont_frag(),
        p.more_frags(),
        p.frag_offset(),
        p.is_fragment(),
    );
    let _ = (p.ttl(), p.protocol(), p.checksum(), p.src(), p.dst());
    let _ = (p.options(), p.payload(), p.verify_checksum());
}

fn icmp(data: &[u8], k: &mut Knobs) {
    let Ok(packet) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    icmp_getters(&packet);
    let _ = Icmpv4Packet::new_checked(data).map(Icmpv4Packet::into_payload);
    if let Ok(repr) = Icmpv4Repr::parse(&packet) {
        let mut buf = vec![0u8; repr.buffer_len()];
        repr.emit(&mut buf).expect("buffer_len is enough");
        let emitted = Icmpv4Packet::new_checked(&buf[..]).expect("at least a header");
        assert!(emitted.verify_checksum(), "emit fills the checksum");
        assert_eq!(
            Icmpv4Repr::parse(&emitted),
            Ok(repr),
            "Icmpv4Repr round trip"
        );
        assert!(
            repr.emit(&mut buf[..repr.buffer_len() - 1]).is_err(),
            "a short buffer is refused"
        );
    }

    let mut copy = data.to_vec();
    let mut packet = Icmpv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    packet.set_msg_type(Icmpv4Type::ECHO_REQUEST);
    packet.fill_checksum();
    assert!(packet.verify_checksum(), "fill_checksum verifies");
    packet.make_echo_reply();
    assert_eq!(packet.msg_type(), Icmpv4Type::ECHO_REPLY);
    assert!(
        packet.verify_checksum(),
        "make_echo_reply keeps the checksum valid"
    );
    let mut packet = Icmpv4Packet::new_checked(&mut copy[..]).expect("same bytes");
    packet.set_msg_type(Icmpv4Type(k.u8()));
    packet.set_code(k.u8());
    packet.set_echo_ident(k.u16());
    packet.set_echo_seq_no(k.u16());
    packet.set_next_hop_mtu(k.u16());
    packet.set_checksum(k.u16());
    let _ = packet.payload_mut().len();
    icmp_getters(&packet);
    let _ = packet.into_inner();
}

fn icmp_getters<T: AsRef<[u8]>>(p: &Icmpv4Packet<T>) {
    let _ = (p.msg_type(), p.code(), p.is_error(), p.checksum());
    let _ = (p.echo_ident(), p.echo_seq_no(), p.next_hop_mtu());
    let _ = (p.payload(), p.verify_checksum());
}

fn udp(data: &[u8], k: &mut Knobs) {
    let (src, dst) = (k.ip(), k.ip());
    udp_with(data, src, dst, k);
}

fn udp_with(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr, k: &mut Knobs) {
    let Ok(packet) = UdpPacket::new_checked(data) else {
        return;
    };
    udp_getters(&packet, src, dst);
    let _ = UdpPacket::new_checked(data).map(UdpPacket::into_payload);

    let mut copy = data.to_vec();
    let mut packet = UdpPacket::new_checked(&mut copy[..]).expect("same bytes");
    packet.fill_checksum(src, dst);
    assert_ne!(
        packet.checksum(),
        0,
        "0 means no checksum; 0xFFFF is sent instead"
    );
    assert!(packet.verify_checksum(src, dst), "fill_checksum verifies");
    packet.set_src_port(k.u16());
    packet.set_dst_port(k.u16());
    packet.set_checksum(k.u16());
    packet.set_len(k.u16());
    let _ = packet.payload_mut().len();
    packet.fill_checksum(src, dst);
    udp_getters(&packet, src, dst);
    let _ = packet.into_inner();
}

fn udp_getters<T: AsRef<[u8]>>(p: &UdpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) {
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.len(),
        p.is_empty(),
        p.checksum(),
    );
    let _ = (
        p.payload(),
        p.compute_checksum(src, dst),
        p.verify_checksum(src, dst),
    );
}

fn tcp(data: &[u8], k: &mut Knobs) {
    let (src, dst) = (k.ip(), k.ip());
    tcp_with(data, src, dst, k);
}

fn tcp_with(data: &[u8], src: Ipv4Addr, dst: Ipv4Addr, k: &mut Knobs) {
    let Ok(packet) = TcpPacket::new_checked(data) else {
        return;
    };
    tcp_getters(&packet, src, dst);
    let _ = TcpPacket::new_checked(data).map(TcpPacket::into_payload);

    let mut copy = data.to_vec();
    let mut packet = TcpPacket::new_checked(&mut copy[..]).expect("same bytes");
    packet.fill_checksum(src, dst);
    assert!(packet.verify_checksum(src, dst), "fill_checksum verifies");
    packet.set_src_port(k.u16());
    packet.set_dst_port(k.u16());
    packet.set_seq_no(k.u32());
    packet.set_ack_no(k.u32());
    let mut flags = TcpFlags(k.u8());
    flags.insert(TcpFlags::ACK);
    flags.remove(TcpFlags::RST);
    let _ = (
        flags.bits(),
        flags.is_empty(),
        flags.intersects(TcpFlags::SYN | TcpFlags::FIN),
    );
    let _ = (flags & !TcpFlags::PSH).contains(TcpFlags::ACK);
    packet.set_flags(flags);
    packet.set_window(k.u16());
    packet.set_urgent(k.u16());
    packet.set_checksum(k.u16());
    packet.set_header_len(k.header_len());
    let _ = packet.payload_mut().len();
    tcp_getters(&packet, src, dst);
    let _ = packet.into_inner();
}

fn tcp_getters<T: AsRef<[u8]>>(p: &TcpPacket<T>, src: Ipv4Addr, dst: Ipv4Addr) {
    let _ = (
        p.src_port(),
        p.dst_port(),
        p.seq_no(),
        p.ack_no(),
        p.header_len(),
    );
    let _ = (
        p.flags(),
        p.window(),
        p.checksum(),
        p.urgent(),
        p.options(),
        p.payload(),
    );
    let _ = (p.compute_checksum(src, dst), p.verify_checksum(src, dst));
    let _ = format!("{}{:?}", p.flags(), p.flags());
}

/// The checksum helpers: the incremental updates must agree with a full recomputation.
fn checksums(data: &[u8], k: &mut Knobs) {
    if data.len() < 4 || data.len() & 1 != 0 {
        return;
    }
    let mut buf = data.to_vec();
    buf[0..2].fill(0);
    let csum = checksum::checksum(&buf);
    buf[0..2].copy_from_slice(&csum.to_be_bytes());
    assert_eq!(checksum::sum(&buf), 0xFFFF, "a filled checksum verifies");

    let old = u16::from_be_bytes([buf[2], buf[3]]);
    let new = k.u16();
    buf[2..4].copy_from_slice(&new.to_be_bytes());
    let updated = checksum::update_u16(csum, old, new);
    buf[0..2].copy_from_slice(&updated.to_be_bytes());
    if !known_zero_checksum(&buf[2..], updated) {
        assert_eq!(
            checksum::sum(&buf),
            0xFFFF,
            "update_u16 (RFC 1624) verifies"
        );
    }

    if buf.len() >= 8 {
        let csum = updated;
        let old = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let new = k.u32();
        buf[4..8].copy_from_slice(&new.to_be_bytes());
        let updated = checksum::update_u32(csum, old, new);
        buf[0..2].copy_from_slice(&updated.to_be_bytes());
        if !known_zero_checksum(&buf[2..], updated) && !known_zero_checksum(&buf[2..], csum) {
            assert_eq!(
                checksum::sum(&buf),
                0xFFFF,
                "update_u32 (RFC 1624) verifies"
            );
        }
    }

    let (a, b) = buf.split_at((buf.len() / 2) & !1);
    assert_eq!(
        checksum::combine(&[checksum::sum(a), checksum::sum(b)]),
        checksum::sum(&buf),
        "sums of even-length parts combine"
    );
}

/// The documented exception of `checksum::update_u16`/`update_u32` (RFC 1624 eqn. 3): when
/// every covered byte but the checksum is zero, the update gives 0x0000 where a full
/// recomputation gives 0xFFFF. Callers for which that can happen (ICMP echo replies) handle it.
fn known_zero_checksum(data_without_checksum: &[u8], checksum: u16) -> bool {
    checksum == 0 && data_without_checksum.iter().all(|&b| b == 0)
}
