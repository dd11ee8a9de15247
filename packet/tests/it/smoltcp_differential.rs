//! Differential tests against smoltcp's wire parsers: for a few thousand generated packets per
//! protocol (valid ones, and ones truncated, extended, byte-flipped or replaced by noise) our
//! accept/reject decision and every field both libraries define must agree, and so must
//! checksum verification and computation.

use std::cell::Cell;
use std::net::Ipv4Addr;
use std::vec::Vec;

use podswitch_packet::{
    ArpOp, ArpPacket, EthernetFrame, Icmpv4Packet, Ipv4Error, Ipv4Packet, TcpPacket, UdpPacket,
};
use smoltcp::wire as sm;

const CASES: usize = 5000;

/// xorshift64: deterministic, so a failure reproduces. A `Cell` so that calls can nest
/// (`rng.bytes(rng.below(8))`).
pub(crate) struct Rng(Cell<u64>);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(Cell::new(seed))
    }

    pub(crate) fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0.set(x);
        x
    }

    /// Uniform-ish in `0..n`; `n` must be non-zero.
    pub(crate) fn below(&self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn byte(&self) -> u8 {
        self.next() as u8
    }

    pub(crate) fn bytes(&self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.byte()).collect()
    }

    pub(crate) fn ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.next() as u32)
    }

    fn pick<T: Copy>(&self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Damages `buf` in one of several ways, or not at all. `hot` is how many leading bytes
/// (the header) byte flips aim at.
fn mutate(rng: &Rng, mut buf: Vec<u8>, hot: usize) -> Vec<u8> {
    match rng.below(10) {
        0..=3 => {}
        4 | 5 => {
            let n = rng.below(buf.len() + 1);
            buf.truncate(n);
        }
        6 | 7 => {
            for _ in 0..=rng.below(3) {
                let i = rng.below(buf.len().clamp(1, hot));
                if let Some(b) = buf.get_mut(i) {
                    *b = rng.byte();
                }
            }
        }
        8 => {
            let extra = rng.bytes(rng.below(20));
            buf.extend_from_slice(&extra);
        }
        _ => buf = rng.bytes(rng.below(hot + 40)),
    }
    buf
}

/// Counts accepted and rejected cases, so a generator that never exercises one side fails.
#[derive(Default)]
struct Tally {
    accepted: usize,
    rejected: usize,
}

impl Tally {
    fn note(&mut self, accepted: bool) {
        if accepted {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
    }

    fn assert_both_sides(&self, what: &str) {
        assert!(
            self.accepted > CASES / 5,
            "{what}: only {} accepted",
            self.accepted
        );
        assert!(
            self.rejected > CASES / 20,
            "{what}: only {} rejected",
            self.rejected
        );
    }
}

pub(crate) fn ip(addr: Ipv4Addr) -> sm::IpAddress {
    sm::IpAddress::Ipv4(addr)
}

#[test]
fn ethernet_agrees_with_smoltcp() {
    let rng = Rng::new(0x00E7_4E12_0000_0001);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let mut buf = rng.bytes(14 + rng.below(50));
        if rng.below(4) == 0 {
            buf[..6].fill(0xFF);
        }
        let ethertype: u16 = rng.pick(&[0x0800, 0x0806, 0x86DD, 0x8100, rng.next() as u16]);
        buf[12..14].copy_from_slice(&ethertype.to_be_bytes());
        let buf = mutate(&rng, buf, 14);

        let ours = EthernetFrame::new_checked(&buf[..]);
        let theirs = sm::EthernetFrame::new_checked(&buf[..]);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{buf:02x?}");
        tally.note(ours.is_ok());
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            continue;
        };
        assert_eq!(ours.dst().0, theirs.dst_addr().0);
        assert_eq!(ours.src().0, theirs.src_addr().0);
        assert_eq!(ours.dst().is_broadcast(), theirs.dst_addr().is_broadcast());
        assert_eq!(ours.dst().is_multicast(), theirs.dst_addr().is_multicast());
        assert_eq!(ours.dst().is_unicast(), theirs.dst_addr().is_unicast());
        assert_eq!(ours.ethertype().0, u16::from(theirs.ethertype()));
        assert_eq!(ours.payload(), theirs.payload());
    }
    tally.assert_both_sides("ethernet");
}

#[test]
fn arp_agrees_with_smoltcp() {
    let rng = Rng::new(0x0000_0A4F_0000_0002);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let mut buf = rng.bytes(28 + rng.below(19));
        buf[..6].copy_from_slice(&[0x00, 0x01, 0x08, 0x00, 0x06, 0x04]);
        let op = rng.pick(&[1u16, 2, 1, 2, rng.next() as u16]);
        buf[6..8].copy_from_slice(&op.to_be_bytes());
        let buf = mutate(&rng, buf, 8);

        let ours = ArpPacket::new_checked(&buf[..]);
        // smoltcp's Packet only checks lengths; its Repr is what rejects non-Ethernet/IPv4.
        let theirs = sm::ArpPacket::new_checked(&buf[..]);
        let theirs_repr = theirs.as_ref().ok().map(sm::ArpRepr::parse);
        assert_eq!(
            ours.is_ok(),
            matches!(theirs_repr, Some(Ok(_))),
            "{buf:02x?}"
        );
        if ours.is_ok() {
            assert!(
                theirs.is_ok(),
                "we accept only what smoltcp's length check accepts"
            );
        }
        tally.note(ours.is_ok());
        let (
            Ok(ours),
            Some(Ok(sm::ArpRepr::EthernetIpv4 {
                operation,
                source_hardware_addr,
                source_protocol_addr,
                target_hardware_addr,
                target_protocol_addr,
            })),
        ) = (ours, theirs_repr)
        else {
            continue;
        };
        assert_eq!(u16::from(ours.operation()), u16::from(operation));
        assert_eq!(
            ours.operation() == ArpOp::Request,
            operation == sm::ArpOperation::Request
        );
        assert_eq!(
            ours.operation() == ArpOp::Reply,
            operation == sm::ArpOperation::Reply
        );
        assert_eq!(ours.sender_hw().0, source_hardware_addr.0);
        assert_eq!(ours.sender_ip(), source_protocol_addr);
        assert_eq!(ours.target_hw().0, target_hardware_addr.0);
        assert_eq!(ours.target_ip(), target_protocol_addr);
    }
    tally.assert_both_sides("arp");
}

fn gen_ipv4(rng: &Rng) -> Vec<u8> {
    let ihl = if rng.below(3) == 0 {
        5 + rng.below(11)
    } else {
        5
    };
    let payload_len = rng.below(60);
    let total = ihl * 4 + payload_len;
    let mut buf = rng.bytes(total + rng.below(3) * rng.below(10));
    buf[0] = 0x40 | ihl as u8;
    buf[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    if rng.below(3) == 0 {
        buf[6] &= 0x40; // mostly unfragmented
        buf[7] = 0;
    }
    if rng.below(8) == 0 {
        buf[8] = rng.pick(&[0, 1, 255]);
    }
    if rng.below(4) != 0 {
        let mut p = sm::Ipv4Packet::new_unchecked(&mut buf[..]);
        p.fill_checksum();
    }
    buf
}

#[test]
fn ipv4_agrees_with_smoltcp() {
    let rng = Rng::new(0x0000_0004_0000_0003);
    let mut tally = Tally::default();
    let mut decrements = 0;
    for _ in 0..CASES {
        let buf = gen_ipv4(&rng);
        let buf = mutate(&rng, buf, 24);

        let ours = Ipv4Packet::new_checked(&buf[..]);
        let theirs = sm::Ipv4Packet::new_checked(&buf[..]);
        // smoltcp's check leaves version to its Repr and lets IHL < 5 through; we are
        // stricter by exactly those two conditions.
        let stricter = buf.len() >= 20 && (buf[0] >> 4 != 4 || buf[0] & 0x0F < 5);
        assert_eq!(ours.is_ok(), theirs.is_ok() && !stricter, "{buf:02x?}");
        if let Err(e) = ours {
            if buf.len() >= 20 && buf[0] >> 4 != 4 {
                assert_eq!(e, Ipv4Error::BadVersion);
            }
        }
        tally.note(ours.is_ok());
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            continue;
        };
        assert_eq!(ours.version(), theirs.version());
        assert_eq!(ours.header_len(), usize::from(theirs.header_len()));
        assert_eq!(ours.dscp_ecn(), theirs.dscp() << 2 | theirs.ecn());
        assert_eq!(ours.total_len(), theirs.total_len());
        assert_eq!(ours.ident(), theirs.ident());
        assert_eq!(ours.dont_frag(), theirs.dont_frag());
        assert_eq!(ours.more_frags(), theirs.more_frags());
        assert_eq!(ours.frag_offset(), theirs.frag_offset());
        assert_eq!(ours.ttl(), theirs.hop_limit());
        assert_eq!(ours.protocol().0, u8::from(theirs.next_header()));
        assert_eq!(ours.checksum(), theirs.checksum());
        assert_eq!(ours.src(), theirs.src_addr());
        assert_eq!(ours.dst(), theirs.dst_addr());
        assert_eq!(ours.payload(), theirs.payload());
        assert_eq!(
            ours.verify_checksum(),
            theirs.verify_checksum(),
            "{buf:02x?}"
        );

        let mut a = buf.clone();
        let mut b = buf.clone();
        Ipv4Packet::new_checked(&mut a[..]).unwrap().fill_checksum();
        sm::Ipv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        assert_eq!(a, b, "fill_checksum");

        // A correct checksum stays correct and canonical through our incremental TTL
        // decrement: it must equal smoltcp's full recompute.
        if ours.verify_checksum() && ours.ttl() > 0 {
            let mut a = buf.clone();
            let mut b = buf.clone();
            Ipv4Packet::new_checked(&mut a[..]).unwrap().decrement_ttl();
            let mut theirs = sm::Ipv4Packet::new_unchecked(&mut b[..]);
            theirs.set_hop_limit(theirs.hop_limit() - 1);
            theirs.fill_checksum();
            assert_eq!(a, b, "decrement_ttl of {buf:02x?}");
            decrements += 1;
        }
    }
    tally.assert_both_sides("ipv4");
    assert!(
        decrements > CASES / 5,
        "only {decrements} TTL decrements compared"
    );
}

#[test]
fn icmpv4_agrees_with_smoltcp() {
    let rng = Rng::new(0x0000_1C4F_0000_0004);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let mut buf = rng.bytes(8 + rng.below(40));
        buf[0] = rng.pick(&[0, 3, 8, 11, rng.byte()]);
        if rng.below(4) != 0 {
            sm::Icmpv4Packet::new_unchecked(&mut buf[..]).fill_checksum();
        }
        let buf = mutate(&rng, buf, 8);

        let ours = Icmpv4Packet::new_checked(&buf[..]);
        let theirs = sm::Icmpv4Packet::new_checked(&buf[..]);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{buf:02x?}");
        tally.note(ours.is_ok());
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            continue;
        };
        assert_eq!(ours.msg_type().0, u8::from(theirs.msg_type()));
        assert_eq!(ours.code(), theirs.msg_code());
        assert_eq!(ours.checksum(), theirs.checksum());
        assert_eq!(ours.echo_ident(), theirs.echo_ident());
        assert_eq!(ours.echo_seq_no(), theirs.echo_seq_no());
        assert_eq!(ours.verify_checksum(), theirs.verify_checksum());
        if theirs.header_len() == 8 {
            assert_eq!(ours.payload(), theirs.data());
        }

        let mut a = buf.clone();
        let mut b = buf.clone();
        Icmpv4Packet::new_checked(&mut a[..])
            .unwrap()
            .fill_checksum();
        sm::Icmpv4Packet::new_unchecked(&mut b[..]).fill_checksum();
        assert_eq!(a, b, "fill_checksum");
    }
    tally.assert_both_sides("icmpv4");
}

#[test]
fn udp_agrees_with_smoltcp() {
    let rng = Rng::new(0x0000_0D90_0000_0005);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let (src, dst) = (rng.ip(), rng.ip());
        let len = 8 + rng.below(40);
        let mut buf = rng.bytes(len + rng.below(2) * rng.below(6));
        buf[4..6].copy_from_slice(&(len as u16).to_be_bytes());
        match rng.below(4) {
            0 => buf[6..8].fill(0),
            1 => {}
            _ => sm::UdpPacket::new_unchecked(&mut buf[..]).fill_checksum(&ip(src), &ip(dst)),
        }
        let buf = mutate(&rng, buf, 8);

        let ours = UdpPacket::new_checked(&buf[..]);
        let theirs = sm::UdpPacket::new_checked(&buf[..]);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{buf:02x?}");
        tally.note(ours.is_ok());
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            continue;
        };
        assert_eq!(ours.src_port(), theirs.src_port());
        assert_eq!(ours.dst_port(), theirs.dst_port());
        assert_eq!(ours.len(), theirs.len());
        assert_eq!(ours.checksum(), theirs.checksum());
        assert_eq!(ours.payload(), theirs.payload());
        assert_eq!(
            ours.verify_checksum(src, dst),
            theirs.verify_checksum(&ip(src), &ip(dst)),
            "{buf:02x?}"
        );

        let mut a = buf.clone();
        let mut b = buf.clone();
        UdpPacket::new_checked(&mut a[..])
            .unwrap()
            .fill_checksum(src, dst);
        sm::UdpPacket::new_unchecked(&mut b[..]).fill_checksum(&ip(src), &ip(dst));
        assert_eq!(a, b, "fill_checksum");
        assert_eq!(
            ours.compute_checksum(src, dst),
            u16::from_be_bytes([a[6], a[7]])
        );
    }
    tally.assert_both_sides("udp");
}

#[test]
fn tcp_agrees_with_smoltcp() {
    let rng = Rng::new(0x0000_07C9_0000_0006);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let (src, dst) = (rng.ip(), rng.ip());
        let offset = if rng.below(3) == 0 {
            5 + rng.below(11)
        } else {
            5
        };
        let mut buf = rng.bytes(offset * 4 + rng.below(40));
        buf[12] = (offset as u8) << 4 | (buf[12] & 0x0F);
        if rng.below(4) != 0 {
            sm::TcpPacket::new_unchecked(&mut buf[..]).fill_checksum(&ip(src), &ip(dst));
        }
        let buf = mutate(&rng, buf, 20);

        let ours = TcpPacket::new_checked(&buf[..]);
        let theirs = sm::TcpPacket::new_checked(&buf[..]);
        assert_eq!(ours.is_ok(), theirs.is_ok(), "{buf:02x?}");
        tally.note(ours.is_ok());
        let (Ok(ours), Ok(theirs)) = (ours, theirs) else {
            continue;
        };
        assert_eq!(ours.src_port(), theirs.src_port());
        assert_eq!(ours.dst_port(), theirs.dst_port());
        assert_eq!(ours.seq_no() as i32, theirs.seq_number().0);
        assert_eq!(ours.ack_no() as i32, theirs.ack_number().0);
        assert_eq!(ours.header_len(), usize::from(theirs.header_len()));
        let f = ours.flags();
        use podswitch_packet::TcpFlags as F;
        assert_eq!(f.contains(F::FIN), theirs.fin());
        assert_eq!(f.contains(F::SYN), theirs.syn());
        assert_eq!(f.contains(F::RST), theirs.rst());
        assert_eq!(f.contains(F::PSH), theirs.psh());
        assert_eq!(f.contains(F::ACK), theirs.ack());
        assert_eq!(f.contains(F::URG), theirs.urg());
        assert_eq!(f.contains(F::ECE), theirs.ece());
        assert_eq!(f.contains(F::CWR), theirs.cwr());
        assert_eq!(ours.window(), theirs.window_len());
        assert_eq!(ours.checksum(), theirs.checksum());
        assert_eq!(ours.urgent(), theirs.urgent_at());
        assert_eq!(ours.options(), theirs.options());
        assert_eq!(ours.payload(), theirs.payload());
        assert_eq!(
            ours.verify_checksum(src, dst),
            theirs.verify_checksum(&ip(src), &ip(dst)),
            "{buf:02x?}"
        );

        let mut a = buf.clone();
        let mut b = buf.clone();
        TcpPacket::new_checked(&mut a[..])
            .unwrap()
            .fill_checksum(src, dst);
        sm::TcpPacket::new_unchecked(&mut b[..]).fill_checksum(&ip(src), &ip(dst));
        assert_eq!(a, b, "fill_checksum");
    }
    tally.assert_both_sides("tcp");
}
