//! Arbitrary frames through the coalescer at output (`pipeline::gro`), as one burst to ports
//! that take TSO frames.
//!
//! Input layout:
//! - byte 0, bit 0: every frame gets valid IPv4 and TCP checksums (so the fuzzer reaches the
//!   rules, not only the checksum refusal); bit 1: frames go to two ports by the low bit of
//!   their length (else all to pod B); bit 2: no large buffer in the pool.
//! - the rest: frames, separated by `PSW|`, at most `MAX_BURST` of them.
//!
//! After offering every frame and flushing: no panic; every buffer comes back; what left is
//! what came in — each super-frame has a valid IPv4 header and total length, its partial
//! checksum completes to a verifying TCP checksum, and cut by the software segmenter (the
//! kernel's own segmentation, checked elsewhere) it gives back exactly the frames that joined
//! it (IPv4 identification and header checksum aside: with DF, runs of equal ids are
//! accepted and the segmenter numbers them again), each to the port it was offered for.

#![no_main]

use libfuzzer_sys::fuzz_target;
use podswitch_dataplane::batch::{Offload, Packet, PortId, MAX_BURST};
use podswitch_dataplane::buffer::Pool;
use podswitch_dataplane::counters::Counters;
use podswitch_dataplane::pipeline::gro::Gro;
use podswitch_dataplane::testkit::{self, POD_A, POD_B};
use podswitch_packet::gso::{SegmentChecksum, Segmenter};
use podswitch_packet::virtio_net::PartialCsum;
use podswitch_packet::{Ipv4Packet, TcpPacket, ETHERNET_HEADER_LEN};

const SEPARATOR: &[u8] = b"PSW|";

fuzz_target!(|data: &[u8]| {
    let &[flags, ref frames @ ..] = data else {
        return;
    };
    let frames: Vec<Vec<u8>> = testkit::split_frames(frames, SEPARATOR)
        .take(MAX_BURST)
        .map(|f| {
            let mut f = f.to_vec();
            if flags & 1 != 0 {
                fill_checksums(&mut f);
            }
            f
        })
        .collect();
    let large = if flags & 4 != 0 { 0 } else { 4 };
    let mut pool = Pool::with_large(frames.len() + 1, large);
    let mut ctr = Counters::new(8);
    let mut gro = Gro::new();
    let mut sent: Vec<(PortId, Packet)> = Vec::new();
    let mut offered: Vec<(PortId, Vec<u8>)> = Vec::new();
    for f in &frames {
        if f.len() > podswitch_dataplane::buffer::MAX_FRAME {
            continue;
        }
        let Some(mut buf) = pool.get() else {
            continue;
        };
        buf.fill(f);
        let out = if flags & 2 != 0 && f.len() % 2 == 1 {
            POD_A
        } else {
            POD_B
        };
        offered.push((out, f.clone()));
        gro.offer(
            Packet::new(buf),
            out,
            &mut pool,
            &mut ctr,
            |_, _, port, p| sent.push((port, p)),
        );
    }
    gro.flush(&mut pool, &mut ctr, |_, _, port, p| sent.push((port, p)));
    assert_eq!(gro.held(), 0);
    let mut got: Vec<(PortId, Vec<u8>)> = Vec::new();
    for (port, p) in sent {
        let frame = p.buf.frame().to_vec();
        let o = p.meta.offload;
        pool.put(p.buf);
        if o == Offload::NONE {
            got.push((port, frame));
            continue;
        }
        // A super-frame: valid IPv4, a completable checksum, and the segments it stands for.
        let ip = Ipv4Packet::new_checked(&frame[ETHERNET_HEADER_LEN..]).expect("valid IPv4");
        assert!(ip.verify_checksum());
        assert_eq!(
            usize::from(ip.total_len()),
            frame.len() - ETHERNET_HEADER_LEN
        );
        let mut complete = frame.clone();
        PartialCsum {
            start: o.csum_start,
            offset: o.csum_offset,
        }
        .complete(&mut complete)
        .expect("the checksum field is inside the frame");
        let ip = Ipv4Packet::new_checked(&complete[ETHERNET_HEADER_LEN..]).unwrap();
        assert!(TcpPacket::new_unchecked(ip.payload()).verify_checksum(ip.src(), ip.dst()));
        let mut segs = Segmenter::tcpv4(&frame, o.gso_size, SegmentChecksum::Full).unwrap();
        let mut buf = vec![0u8; 2048];
        let mut n = 0;
        while let Some(len) = segs.next_into(&mut buf).unwrap() {
            got.push((port, buf[..len].to_vec()));
            n += 1;
        }
        assert!(n >= 2, "a super-frame holds two segments or more");
    }
    assert_eq!(
        pool.available(),
        pool.total(),
        "every small buffer came back"
    );
    assert_eq!(
        pool.available_large(),
        pool.total_large(),
        "every large one too"
    );
    let key = |(port, f): &(PortId, Vec<u8>)| {
        let mut f = f.clone();
        if f.len() >= ETHERNET_HEADER_LEN + 12 {
            // Identification and header checksum (see the module comment).
            f[ETHERNET_HEADER_LEN + 4..ETHERNET_HEADER_LEN + 6].fill(0);
            f[ETHERNET_HEADER_LEN + 10..ETHERNET_HEADER_LEN + 12].fill(0);
        }
        (*port, f)
    };
    let mut a: Vec<_> = offered.iter().map(key).collect();
    let mut b: Vec<_> = got.iter().map(key).collect();
    a.sort();
    b.sort();
    assert!(a == b, "what left is not what came in");
});

/// Valid IPv4 header and TCP checksums, where the frame has the headers for them.
fn fill_checksums(f: &mut [u8]) {
    let Some(ip_bytes) = f.get_mut(ETHERNET_HEADER_LEN..) else {
        return;
    };
    let Ok(mut ip) = Ipv4Packet::new_checked(&mut *ip_bytes) else {
        return;
    };
    ip.fill_checksum();
    let (src, dst) = (ip.src(), ip.dst());
    let total = usize::from(ip.total_len());
    let header = ip.header_len();
    if let Some(tcp) = ip_bytes.get_mut(header..total) {
        if let Ok(mut tcp) = TcpPacket::new_checked(tcp) {
            tcp.fill_checksum(src, dst);
        }
    }
}
