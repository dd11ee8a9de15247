//! Software offloads from `podswitch-packet` alone (not wired into the pipeline yet): cutting a
//! 64 KB TCP/IPv4 super-frame into 1448-byte segments with full or partial checksums, and
//! completing the partial checksum of a whole super-frame. Throughput is in segments (or
//! frames), so the numbers read as the packets per second software GSO could feed an output.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use podswitch_packet::virtio_net::PartialCsum;
use podswitch_packet::{checksum, IpProtocol, Ipv4Packet, SegmentChecksum, Segmenter, TcpPacket};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

const SRC: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 7);
const DST: Ipv4Addr = Ipv4Addr::new(10, 244, 1, 9);
const MSS: u16 = 1448;
/// Ethernet + IPv4 + TCP with timestamps, as a Linux sender's TSO frame has.
const HEADERS: usize = 14 + 20 + 32;

/// The largest TSO4 super-frame: IPv4 total length 65535, the checksum left partial.
fn super_frame() -> Vec<u8> {
    let mut f = vec![0u8; 14 + 65535];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    for (i, b) in f[HEADERS..].iter_mut().enumerate() {
        *b = i as u8;
    }
    let mut ip = Ipv4Packet::new_unchecked(&mut f[14..]);
    ip.set_version_and_header_len(20);
    ip.set_total_len(65535);
    ip.set_dont_frag(true);
    ip.set_ttl(64);
    ip.set_protocol(IpProtocol::TCP);
    ip.set_src(SRC);
    ip.set_dst(DST);
    ip.fill_checksum();
    let mut tcp = TcpPacket::new_unchecked(&mut f[34..]);
    tcp.set_header_len(32);
    tcp.set_flags(podswitch_packet::TcpFlags::ACK | podswitch_packet::TcpFlags::PSH);
    tcp.set_checksum(checksum::pseudo_header_ipv4(
        SRC,
        DST,
        IpProtocol::TCP,
        65515,
    ));
    f
}

fn gso(c: &mut Criterion) {
    let frame = super_frame();
    let segments = (65535 - 20 - 32usize).div_ceil(usize::from(MSS));
    let mut g = c.benchmark_group("gso");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .throughput(Throughput::Elements(segments as u64));
    let mut out = vec![0u8; HEADERS + usize::from(MSS)];
    for (name, mode) in [
        ("tcpv4_64k_full_csum", SegmentChecksum::Full),
        ("tcpv4_64k_partial_csum", SegmentChecksum::Partial),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut n = 0;
                if let Ok(mut s) = Segmenter::tcpv4(black_box(&frame), MSS, mode) {
                    while let Ok(Some(len)) = s.next_into(&mut out) {
                        n += len;
                    }
                }
                // Every byte of the frame's payload left in some segment.
                assert_eq!(n, segments * HEADERS + 65535 - 20 - 32);
                black_box(n)
            })
        });
    }
    g.throughput(Throughput::Elements(1));
    let mut partial = frame.clone();
    g.bench_function("complete_partial_csum_64k", |b| {
        b.iter(|| {
            // Re-completing is fine: `complete` sums the field too, so restore it first.
            partial[50..52].copy_from_slice(&frame[50..52]);
            let done = PartialCsum {
                start: 34,
                offset: 16,
            }
            .complete(black_box(&mut partial));
            assert!(done.is_ok());
        })
    });
    g.finish();
}

criterion_group!(benches, gso);
criterion_main!(benches);
