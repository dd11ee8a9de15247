//! Software segmentation compared with the kernel's own (Linux 6.18, `tcp_gso_segment` and
//! `__udp_gso_segment`): the fixtures in `kernel_gso/` were captured with the scripts beside
//! them, by writing a super-frame with a virtio-net header into a tap and reading what the
//! kernel, forwarding it to a tap without offloads, segmented in software. Our segments of the
//! same super-frame, forwarded the same way (MACs, TTL − 1), must be the kernel's, byte for
//! byte: lengths, IP ids (wrapping), flags per segment, sequence numbers, checksums.

use std::vec::Vec;

use podswitch_packet::virtio_net::HeaderFormat;
use podswitch_packet::{
    GsoKind, Ipv4Packet, SegmentChecksum, Segmenter, VirtioNetPacket, VirtioNetRepr,
};

/// Frames of a fixture: hex lines, `#` comments skipped.
fn frames(fixture: &str) -> Vec<Vec<u8>> {
    fixture
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            (0..l.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
                .collect()
        })
        .collect()
}

/// What the kernel's forwarding did to the super-frame before segmenting it: out of tap C
/// (MAC 02:00:00:00:0c:01) to the neighbour 02:00:00:00:0c:02, TTL decremented.
fn forward(frame: &mut [u8]) {
    frame[0..6].copy_from_slice(&[2, 0, 0, 0, 0x0c, 2]);
    frame[6..12].copy_from_slice(&[2, 0, 0, 0, 0x0c, 1]);
    Ipv4Packet::new_checked(&mut frame[14..])
        .unwrap()
        .decrement_ttl();
}

fn ours(frame: &[u8], gso_size: u16, tcp: bool) -> Vec<Vec<u8>> {
    let mut s = if tcp {
        Segmenter::tcpv4(frame, gso_size, SegmentChecksum::Full)
    } else {
        Segmenter::udpv4(frame, gso_size, SegmentChecksum::Full)
    }
    .unwrap();
    let mut buf = vec![0u8; s.max_segment_len()];
    let mut out = Vec::new();
    while let Some(len) = s.next_into(&mut buf).unwrap() {
        out.push(buf[..len].to_vec());
    }
    out
}

fn assert_same(ours: &[Vec<u8>], kernel: &[Vec<u8>]) {
    assert_eq!(ours.len(), kernel.len(), "segment count");
    for (i, (a, b)) in ours.iter().zip(kernel).enumerate() {
        assert_eq!(a.len(), b.len(), "segment {i}: length");
        let first_diff = a.iter().zip(b).position(|(x, y)| x != y);
        assert_eq!(first_diff, None, "segment {i}: first differing byte");
    }
}

#[test]
fn tso4_segments_are_the_kernels() {
    let f = frames(include_str!("kernel_gso/tcp_5000_1448.txt"));
    let (mut frame, kernel) = (f[0].clone(), &f[1..]);
    forward(&mut frame);
    // 5000 bytes in 1448: three full segments and 656; CWR on the first, FIN|PSH on the last,
    // IP ids 0xfffe, 0xffff, 0, 1, sequence numbers across the 2^32 wrap.
    assert_eq!(kernel.len(), 4);
    assert_same(&ours(&frame, 1448, true), kernel);
}

#[test]
fn uso4_segments_are_the_kernels() {
    let f = frames(include_str!("kernel_gso/udp_2500_1000.txt"));
    let (mut frame, kernel) = (f[0].clone(), &f[1..]);
    forward(&mut frame);
    assert_eq!(kernel.len(), 3);
    assert_same(&ours(&frame, 1000, false), kernel);
}

#[test]
fn a_real_udp_segment_send_parses_and_segments_as_the_kernel_does() {
    let f = frames(include_str!("kernel_gso/udp_socket_2500_1000.txt"));
    // What the tap handed its reader for one 2500-byte send with UDP_SEGMENT 1000.
    let p = VirtioNetPacket::new_checked(&f[0][..], HeaderFormat::Legacy).unwrap();
    let repr = VirtioNetRepr::parse(&p).unwrap();
    let gso = repr.gso.unwrap();
    assert_eq!((gso.kind, gso.size, gso.ecn), (GsoKind::UdpL4, 1000, false));
    let csum = repr.partial_csum.unwrap();
    assert_eq!((csum.start, csum.offset, repr.hdr_len), (34, 6, 42));
    let mut frame = p.frame().to_vec();
    // The kernel's segments come from a second send (offloads off), whose IP id differs.
    let kernel = &f[1..];
    let id = Ipv4Packet::new_checked(&kernel[0][14..]).unwrap().ident();
    let mut ip = Ipv4Packet::new_checked(&mut frame[14..]).unwrap();
    ip.set_ident(id);
    ip.fill_checksum();
    assert_same(&ours(&frame, gso.size, false), kernel);
}
