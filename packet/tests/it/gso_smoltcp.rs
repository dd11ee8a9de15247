//! Software segmentation checked against smoltcp: super-frames of random shape (payload up to
//! the 64 KB IPv4 limit, gso_size from 1 byte to jumbo, IPv4 and TCP options, every flag) are
//! built with smoltcp's setters, cut by our segmenter, and every segment must equal,
//! byte for byte, the segment smoltcp builds on its own from the rules Linux's
//! `tcp_gso_segment` follows; smoltcp must verify its checksums, and the payloads must
//! re-assemble to the original. Arbitrary bytes must be refused or cut, never panic.

use std::net::Ipv4Addr;
use std::vec::Vec;

use podswitch_packet::virtio_net::PartialCsum;
use podswitch_packet::{GsoError, SegmentChecksum, Segmenter};
use smoltcp::wire as sm;

use crate::smoltcp_differential::{ip, Rng};

/// The fields of a super-frame, from which both the frame and its expected segments are
/// built.
struct Spec {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ident: u16,
    ip_options: Vec<u8>,
    tcp_options: Vec<u8>,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    urgent: u16,
    payload: Vec<u8>,
}

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const URG: u8 = 0x20;
const ECE: u8 = 0x40;
const CWR: u8 = 0x80;

impl Spec {
    fn random(rng: &Rng) -> Spec {
        Spec::random_up_to(rng, usize::MAX)
    }

    /// A random spec with at most `limit` payload bytes.
    fn random_up_to(rng: &Rng, limit: usize) -> Spec {
        let ip_hl = 20 + 4 * rng.below(11);
        let tcp_hl = 20 + 4 * rng.below(11);
        let max_payload = (65535 - ip_hl - tcp_hl).min(limit);
        let payload_len = match rng.below(4) {
            0 => max_payload,
            1 => rng.below(3000),
            _ => rng.below(max_payload + 1),
        };
        Spec {
            src: rng.ip(),
            dst: rng.ip(),
            ident: rng.next() as u16,
            ip_options: rng.bytes(ip_hl - 20),
            tcp_options: rng.bytes(tcp_hl - 20),
            seq: rng.next() as u32,
            ack: rng.next() as u32,
            flags: rng.byte(),
            window: rng.next() as u16,
            urgent: rng.next() as u16,
            payload: rng.bytes(payload_len),
        }
    }

    /// Builds one frame with smoltcp: for `segment` `None` the super-frame, for
    /// `Some((index, count, gso_size))` that segment, as Linux cuts it.
    fn build(&self, segment: Option<(usize, usize, usize)>, checksum: SegmentChecksum) -> Vec<u8> {
        let (payload, ident, seq, flags) = match segment {
            None => (&self.payload[..], self.ident, self.seq, self.flags),
            Some((index, count, gso_size)) => {
                let start = (index * gso_size).min(self.payload.len());
                let end = (start + gso_size).min(self.payload.len());
                let mut flags = self.flags;
                if index + 1 < count {
                    flags &= !(FIN | PSH);
                }
                if index > 0 {
                    flags &= !CWR;
                }
                (
                    &self.payload[start..end],
                    self.ident.wrapping_add(index as u16),
                    self.seq.wrapping_add(start as u32),
                    flags,
                )
            }
        };
        let ip_hl = 20 + self.ip_options.len();
        let tcp_hl = 20 + self.tcp_options.len();
        let mut f = vec![0u8; 14 + ip_hl + tcp_hl + payload.len()];
        let mut eth = sm::EthernetFrame::new_unchecked(&mut f[..]);
        eth.set_dst_addr(sm::EthernetAddress([2, 0, 0, 0, 0, 9]));
        eth.set_src_addr(sm::EthernetAddress([2, 0, 0, 0, 0, 7]));
        eth.set_ethertype(sm::EthernetProtocol::Ipv4);
        let mut ipp = sm::Ipv4Packet::new_unchecked(&mut f[14..]);
        ipp.set_version(4);
        ipp.set_header_len(ip_hl as u8);
        ipp.set_total_len((ip_hl + tcp_hl + payload.len()) as u16);
        ipp.set_ident(ident);
        ipp.clear_flags();
        ipp.set_dont_frag(true);
        ipp.set_hop_limit(64);
        ipp.set_next_header(sm::IpProtocol::Tcp);
        ipp.set_src_addr(self.src);
        ipp.set_dst_addr(self.dst);
        f[14 + 20..14 + ip_hl].copy_from_slice(&self.ip_options);
        sm::Ipv4Packet::new_unchecked(&mut f[14..]).fill_checksum();
        let l4 = 14 + ip_hl;
        let mut tcp = sm::TcpPacket::new_unchecked(&mut f[l4..]);
        tcp.set_src_port(40000);
        tcp.set_dst_port(5201);
        tcp.set_seq_number(sm::TcpSeqNumber(seq as i32));
        tcp.set_ack_number(sm::TcpSeqNumber(self.ack as i32));
        tcp.set_header_len(tcp_hl as u8);
        tcp.set_fin(flags & FIN != 0);
        tcp.set_syn(flags & SYN != 0);
        tcp.set_rst(flags & RST != 0);
        tcp.set_psh(flags & PSH != 0);
        tcp.set_ack(flags & ACK != 0);
        tcp.set_urg(flags & URG != 0);
        tcp.set_ece(flags & ECE != 0);
        tcp.set_cwr(flags & CWR != 0);
        tcp.set_window_len(self.window);
        tcp.set_urgent_at(self.urgent);
        tcp.options_mut().copy_from_slice(&self.tcp_options);
        tcp.payload_mut().copy_from_slice(payload);
        match checksum {
            SegmentChecksum::Full => tcp.fill_checksum(&ip(self.src), &ip(self.dst)),
            SegmentChecksum::Partial => {
                // The pseudo-header sum alone: smoltcp's checksum of an all-zero segment
                // of the same length is its complement.
                let mut zeros = vec![0u8; f.len() - l4];
                let mut z = sm::TcpPacket::new_unchecked(&mut zeros[..]);
                z.fill_checksum(&ip(self.src), &ip(self.dst));
                let pseudo = !z.checksum();
                sm::TcpPacket::new_unchecked(&mut f[l4..]).set_checksum(pseudo);
            }
        }
        f
    }
}

#[test]
fn tcp_segments_equal_smoltcp_built_segments_byte_for_byte() {
    let rng = Rng::new(0x650_7C90_0000_0001);
    let mut total_segments = 0;
    for case in 0..300 {
        let gso_size = match rng.below(4) {
            0 => 1448,
            1 => 1 + rng.below(64),
            _ => 1 + rng.below(9000),
        };
        // Tiny segments on a small payload only: thousands of them per frame add time, not
        // coverage.
        let spec = Spec::random_up_to(&rng, if gso_size < 64 { 3000 } else { usize::MAX });
        let mode = if rng.below(2) == 0 {
            SegmentChecksum::Full
        } else {
            SegmentChecksum::Partial
        };
        // The super-frame's own checksum is partial (as a TSO sender leaves it), or garbage:
        // neither may matter.
        let mut frame = spec.build(None, SegmentChecksum::Partial);
        if rng.below(3) == 0 {
            let at = 14 + 20 + spec.ip_options.len() + 16;
            frame[at] ^= 0x5A;
        }
        let mut seg = Segmenter::tcpv4(&frame, gso_size as u16, mode).unwrap();
        let count = spec.payload.len().div_ceil(gso_size).max(1);
        assert_eq!(seg.segment_count(), count, "case {case}");
        let mut buf = vec![0u8; seg.max_segment_len()];
        let mut reassembled = Vec::with_capacity(spec.payload.len());
        let mut index = 0;
        while let Some(len) = seg.next_into(&mut buf).unwrap() {
            let ours = &buf[..len];
            let expected = spec.build(Some((index, count, gso_size)), mode);
            assert!(
                ours == &expected[..],
                "case {case} segment {index}/{count} gso_size {gso_size}: bytes differ"
            );
            let mut done = ours.to_vec();
            if mode == SegmentChecksum::Partial {
                seg.partial_csum().complete(&mut done).unwrap();
            }
            let ipp = sm::Ipv4Packet::new_checked(&done[14..]).unwrap();
            assert!(ipp.verify_checksum());
            assert_eq!(usize::from(ipp.total_len()), len - 14);
            let tcp = sm::TcpPacket::new_checked(ipp.payload()).unwrap();
            assert!(tcp.verify_checksum(&ip(spec.src), &ip(spec.dst)));
            reassembled.extend_from_slice(tcp.payload());
            index += 1;
        }
        assert_eq!(index, count);
        assert!(
            reassembled == spec.payload,
            "case {case}: payload re-assembled"
        );
        total_segments += count;
    }
    assert!(
        total_segments > 3000,
        "only {total_segments} segments tried"
    );
}

#[test]
fn arbitrary_frames_are_refused_or_segmented_never_a_panic() {
    let rng = Rng::new(0x650_7C90_0000_0002);
    let mut accepted = 0;
    let mut buf = vec![0u8; 70_000];
    for _ in 0..3000 {
        let spec = Spec::random_up_to(&rng, 4000);
        let mut frame = spec.build(None, SegmentChecksum::Full);
        match rng.below(4) {
            0 => frame.truncate(rng.below(frame.len() + 1)),
            1 | 2 => {
                for _ in 0..=rng.below(4) {
                    let i = rng.below(frame.len().min(120));
                    frame[i] = rng.byte();
                }
            }
            _ => frame = rng.bytes(rng.below(200)),
        }
        let gso_size = rng.below(2000) as u16;
        let made = if rng.below(2) == 0 {
            Segmenter::tcpv4(&frame, gso_size, SegmentChecksum::Full)
        } else {
            Segmenter::udpv4(&frame, gso_size, SegmentChecksum::Full)
        };
        let Ok(mut seg) = made else { continue };
        accepted += 1;
        let mut n = 0;
        while let Some(len) = seg.next_into(&mut buf).unwrap() {
            assert!(sm::Ipv4Packet::new_checked(&buf[14..len])
                .unwrap()
                .verify_checksum());
            n += 1;
        }
        assert_eq!(n, seg.segment_count());
        // A short buffer is refused cleanly, whatever the frame.
        let mut seg = seg.clone();
        let _ = seg.next_into(&mut []);
    }
    assert!(accepted > 300, "only {accepted} accepted");
}

#[test]
fn completion_of_a_partial_checksum_agrees_with_smoltcp_fill() {
    let rng = Rng::new(0x650_7C90_0000_0003);
    for _ in 0..500 {
        let spec = Spec::random_up_to(&rng, 9000);
        let full = spec.build(None, SegmentChecksum::Full);
        let mut partial = spec.build(None, SegmentChecksum::Partial);
        let start = (14 + 20 + spec.ip_options.len()) as u16;
        PartialCsum { start, offset: 16 }
            .complete(&mut partial)
            .unwrap();
        // smoltcp writes 0 where the complement is 0; we write the equal 0xFFFF, as Linux.
        let at = usize::from(start) + 16;
        if full[at..at + 2] == [0, 0] {
            assert_eq!(partial[at..at + 2], [0xFF, 0xFF]);
            partial[at..at + 2].copy_from_slice(&[0, 0]);
        }
        assert!(partial == full);
    }
}

#[test]
fn gso_size_zero_is_refused() {
    let spec = Spec::random(&Rng::new(9));
    let frame = spec.build(None, SegmentChecksum::Full);
    assert_eq!(
        Segmenter::tcpv4(&frame, 0, SegmentChecksum::Full).unwrap_err(),
        GsoError::GsoSizeZero
    );
}
