//! Offloads through the worker on memory ports: a pod's 64 KB TSO4 super-frame with a partial
//! checksum leaves whole (with its offload state) to a port with offloads, and as correct,
//! fully checksummed segments to one without; a partial checksum is completed for a port that
//! cannot; the MTU check uses the segment size; malformed offload state is dropped by reason.

use podswitch_dataplane::batch::Offload;
use podswitch_dataplane::counters::{DropReason, Event};
use podswitch_dataplane::ports::memory::{MemoryQueue, Sink};
use podswitch_dataplane::ports::Uring;
use podswitch_dataplane::tables::Tables;
use podswitch_dataplane::testkit::*;
use podswitch_packet::{Ipv4Packet, TcpPacket};

const PAYLOAD: usize = 64_000;
const MSS: u16 = 1448;

type Sent = Vec<(Vec<u8>, Offload)>;

/// Runs `frames` from pod A through a worker on `tables`; returns what pod B was sent and
/// the worker's counters.
fn forward(
    tables: Tables,
    frames: &[(Vec<u8>, Offload)],
) -> (Sent, podswitch_dataplane::counters::Counters) {
    let (b, _, c) = forward_both(tables, frames);
    (b, c)
}

/// [`forward`], also returning what pod A was sent back.
fn forward_both(
    tables: Tables,
    frames: &[(Vec<u8>, Offload)],
) -> (Sent, Sent, podswitch_dataplane::counters::Counters) {
    let rig = crate::rig(32, 256, 8);
    rig.tables.store(std::sync::Arc::new(tables));
    let mut worker = rig.worker;
    let sink_a = Sink::default();
    let mut a = MemoryQueue::with_sink(POD_A, sink_a.clone());
    for (f, o) in frames {
        a.inject_offloaded(f, *o);
    }
    let sink = Sink::default();
    worker.add_queue(Box::new(a));
    worker.add_queue(Box::new(MemoryQueue::with_sink(POD_B, sink.clone())));
    let mut ring = Uring::new(64, 128).unwrap();
    let snapshot = rig.tables.load_full();
    for _ in 0..4 {
        worker.poll_once(&mut ring, &snapshot);
    }
    let sent = std::mem::take(&mut *sink.lock().unwrap());
    let back = std::mem::take(&mut *sink_a.lock().unwrap());
    (sent, back, worker.counters().clone())
}

fn pod_b_offloads(on: bool, mtu: u16) -> Tables {
    let mut t = tables_with(true, mtu, 0);
    std::sync::Arc::make_mut(&mut t.ports)[usize::from(POD_B)]
        .as_mut()
        .unwrap()
        .offloads = on;
    t
}

#[test]
fn a_tso_frame_to_a_port_with_offloads_leaves_whole_with_its_offload_state() {
    let (frame, offload) = tso4_frame(PAYLOAD, MSS);
    let (sent, c) = forward(pod_b_offloads(true, 1500), &[(frame.clone(), offload)]);
    assert_eq!(sent.len(), 1, "one frame, unsegmented");
    let (out, out_offload) = &sent[0];
    assert_eq!(out.len(), frame.len());
    assert_eq!(*out_offload, offload, "the vnet header it leaves with");
    assert_eq!(
        &out[34..],
        &frame[34..],
        "transport header and payload untouched"
    );
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.ttl(), 63);
    assert_eq!(c.events[Event::GsoFramesRx as usize], 1);
    assert_eq!(c.events[Event::GsoSegmentedSw as usize], 0);
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
}

#[test]
fn a_tso_frame_to_a_port_without_offloads_leaves_as_correct_full_checksummed_segments() {
    let (frame, offload) = tso4_frame(PAYLOAD, MSS);
    let (sent, c) = forward(pod_b_offloads(false, 1500), &[(frame.clone(), offload)]);
    let n = PAYLOAD.div_ceil(usize::from(MSS));
    assert_eq!(sent.len(), n);
    let mut payload = Vec::new();
    let mut seq = 0xffff_f000u32;
    for (i, (seg, o)) in sent.iter().enumerate() {
        assert_eq!(*o, Offload::NONE, "segment {i} needs nothing from the port");
        assert!(seg.len() <= 1514, "segment {i} fits the MTU: {}", seg.len());
        assert!(l4_checksum_ok(seg), "segment {i}: checksums verify");
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(tcp.seq_no(), seq);
        let data = &ip.payload()[tcp.header_len()..];
        seq = seq.wrapping_add(data.len() as u32);
        payload.extend_from_slice(data);
    }
    assert_eq!(&payload[..], &frame[14 + 20 + 32..], "byte-exact payload");
    assert_eq!(c.events[Event::GsoSegmentedSw as usize], 1);
    assert_eq!(c.events[Event::GsoSegmentsSw as usize], n as u64);
    assert_eq!(
        c.ports[usize::from(POD_B)].tx_packets,
        n as u64,
        "segments counted"
    );
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
}

#[test]
fn a_partial_checksum_to_a_port_without_offloads_is_completed() {
    let (frame, offload) = tso4_frame(100, 0);
    assert!(!l4_checksum_ok(&frame), "partial: does not verify yet");
    let (sent, c) = forward(pod_b_offloads(false, 1500), &[(frame, offload)]);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, Offload::NONE);
    assert!(l4_checksum_ok(&sent[0].0), "completed in software");
    assert_eq!(c.events[Event::CsumCompletedSw as usize], 1);
    // To a port with offloads it stays partial, for the receiver's stack to accept as is.
    let (frame, offload) = tso4_frame(100, 0);
    let (sent, _) = forward(pod_b_offloads(true, 1500), &[(frame, offload)]);
    assert_eq!(sent[0].1, offload);
}

#[test]
fn the_mtu_check_of_a_gso_frame_uses_its_segment_size() {
    // 20 + 32 + 1348 = 1400: segments fit an MTU of 1400 though the frame is 64 KB.
    let (frame, offload) = tso4_frame(PAYLOAD, 1348);
    let (sent, c) = forward(pod_b_offloads(false, 1400), &[(frame, offload)]);
    assert_eq!(sent.len(), PAYLOAD.div_ceil(1348));
    assert!(sent.iter().all(|(s, _)| s.len() <= 1414));
    assert_eq!(c.drops[DropReason::MtuExceeded as usize], 0);
    // With 1448-byte segments they do not: dropped, frag-needed sent back (DF is set).
    let (frame, offload) = tso4_frame(PAYLOAD, MSS);
    let (sent, back, c) = forward_both(pod_b_offloads(true, 1400), &[(frame.clone(), offload)]);
    assert!(sent.is_empty());
    assert_eq!(c.drops[DropReason::MtuExceeded as usize], 1);
    assert_eq!(c.events[Event::IcmpUnreachableSent as usize], 1);
    // The error quotes the super-frame's first bytes and is a plain frame itself.
    assert_eq!(back.len(), 1);
    let (err, err_offload) = &back[0];
    assert_eq!(*err_offload, Offload::NONE);
    assert_icmp_error(err, &frame, 3, 4);
    assert_eq!(
        u16::from_be_bytes([err[14 + 20 + 6], err[14 + 20 + 7]]),
        1400,
        "next-hop MTU"
    );
}

#[test]
fn malformed_offload_state_is_dropped_by_reason() {
    let (frame, mut offload) = tso4_frame(PAYLOAD, MSS);
    offload.csum_start += 4;
    let (sent, c) = forward(pod_b_offloads(false, 1500), &[(frame, offload)]);
    assert!(sent.is_empty());
    assert_eq!(c.drops[DropReason::BadCsumStart as usize], 1);

    let (frame, mut offload) = tso4_frame(PAYLOAD, MSS);
    offload.gso_type = podswitch_packet::virtio_net::GSO_UDP_L4;
    offload.csum_offset = podswitch_packet::virtio_net::UDP_CSUM_OFFSET;
    let (sent, c) = forward(pod_b_offloads(false, 1500), &[(frame, offload)]);
    assert!(sent.is_empty());
    assert_eq!(c.drops[DropReason::GsoTypeMismatch as usize], 1);
}

#[test]
fn a_uso_datagram_to_a_port_without_offloads_leaves_as_checksummed_datagrams() {
    let (frame, offload) = uso4_frame(10_000, 1400);
    let (sent, c) = forward(pod_b_offloads(false, 1500), &[(frame.clone(), offload)]);
    assert_eq!(sent.len(), 10_000usize.div_ceil(1400));
    let mut payload = Vec::new();
    for (seg, o) in &sent {
        assert_eq!(*o, Offload::NONE);
        assert!(l4_checksum_ok(seg));
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        let udp = podswitch_packet::UdpPacket::new_checked(ip.payload()).unwrap();
        assert_eq!(
            usize::from(udp.len()),
            ip.payload().len(),
            "each its own datagram"
        );
        payload.extend_from_slice(&ip.payload()[8..]);
    }
    assert_eq!(&payload[..], &frame[14 + 20 + 8..]);
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
    // And whole to a port with offloads.
    let (sent, _) = forward(pod_b_offloads(true, 1500), &[(frame, offload)]);
    assert_eq!((sent.len(), sent[0].1), (1, offload));
}

/// Sets the IPv4 total length of `frame` to `len` and refreshes the header checksum.
fn set_total_len(frame: &mut [u8], len: u16) {
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_total_len(len);
    ip.fill_checksum();
}

#[test]
fn hostile_offload_state_never_panics_and_every_frame_is_forwarded_or_counted() {
    let mut cases: Vec<(&str, Vec<u8>, Offload)> = Vec::new();
    for size in [1u16, 7, 65535] {
        let (f, o) = tso4_frame(5_000, size);
        cases.push(("tso gso_size", f, o));
        let (f, o) = uso4_frame(3_000, size);
        cases.push(("uso gso_size", f, o));
    }
    // TCP data offset 60 bytes, past a frame with 10 bytes of payload.
    let (mut f, o) = tso4_frame(10, MSS);
    f[14 + 20 + 12] = 15 << 4;
    cases.push(("tcp data offset past the frame", f, o));
    // IPv4 total length shorter than the frame (trailing bytes) and longer (truncated).
    let (mut f, o) = tso4_frame(5_000, MSS);
    let n = f.len() as u16 - 14;
    set_total_len(&mut f, n - 1000);
    cases.push(("total length short of the frame", f, o));
    let (mut f, o) = tso4_frame(5_000, MSS);
    set_total_len(&mut f, n + 1000);
    cases.push(("total length past the frame", f, o));
    // Checksum fields out of range.
    for (start, offset) in [(u16::MAX, u16::MAX), (34, u16::MAX), (u16::MAX, 16), (0, 0)] {
        let (f, mut o) = tso4_frame(100, 0);
        (o.csum_start, o.csum_offset) = (start, offset);
        cases.push(("csum fields", f, o));
    }
    // A GSO type with no partial checksum, and one with an unknown type.
    let (f, mut o) = tso4_frame(5_000, MSS);
    o.flags = 0;
    cases.push(("gso without needs_csum", f, o));
    let (f, mut o) = tso4_frame(5_000, MSS);
    o.gso_type = 0x42;
    cases.push(("unknown gso type", f, o));
    // Frames at the small buffer's edge: 1920 and 1921 bytes.
    for total in [1920usize, 1921] {
        let (f, o) = tso4_frame(total - 14 - 20 - 32, 0);
        assert_eq!(f.len(), total);
        cases.push(("small buffer edge", f, o));
        let (f, o) = tso4_frame(total - 14 - 20 - 32, MSS);
        cases.push(("small buffer edge, gso", f, o));
    }
    for (what, frame, offload) in cases {
        for offloads in [false, true] {
            for mtu in [1500, 9000] {
                let (sent, back, c) =
                    forward_both(pod_b_offloads(offloads, mtu), &[(frame.clone(), offload)]);
                let dropped: u64 = c.drops.iter().sum();
                assert!(
                    !sent.is_empty() || !back.is_empty() || dropped > 0,
                    "{what} (offloads {offloads}, mtu {mtu}): vanished uncounted"
                );
                for (seg, o) in &sent {
                    let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
                    assert!(ip.verify_checksum(), "{what}: IPv4 checksum");
                    if !offloads {
                        assert_eq!(*o, Offload::NONE, "{what}: nothing left for the port");
                        assert!(l4_checksum_ok(seg), "{what}: L4 checksum");
                        assert!(seg.len() <= 14 + usize::from(mtu), "{what}: fits the MTU");
                    }
                }
            }
        }
    }
}

#[test]
fn a_uso_datagram_with_a_one_byte_gso_size_is_cut_into_bounded_counted_segments() {
    // 3000 one-byte datagrams: more segments than the pool has buffers (256): each is sent or
    // counted (here 256 sent, 2744 `gso_pool_empty`: the staging vector holds 256 and is only
    // flushed when full), none panics.
    let (frame, offload) = uso4_frame(3_000, 1);
    let (sent, c) = forward(pod_b_offloads(false, 1500), &[(frame, offload)]);
    let lost =
        c.drops[DropReason::GsoPoolEmpty as usize] + c.drops[DropReason::TxQueueFull as usize];
    assert_eq!(sent.len() as u64 + lost, 3_000, "{:?}", c.drops);
    assert!(sent.iter().all(|(s, _)| l4_checksum_ok(s)));
}

#[test]
fn a_partial_checksum_frame_with_ttl_1_gets_a_plain_time_exceeded() {
    let (mut frame, offload) = tso4_frame(100, 0);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_ttl(1);
    ip.fill_checksum();
    let (sent, back, c) = forward_both(pod_b_offloads(false, 1500), &[(frame.clone(), offload)]);
    assert!(sent.is_empty());
    assert_eq!(back.len(), 1, "{:?}", c.drops);
    assert_eq!(
        back[0].1,
        Offload::NONE,
        "the error carries no offload state"
    );
    assert_icmp_error(&back[0].0, &frame, 11, 0);
    // The same for a super-frame.
    let (mut frame, offload) = tso4_frame(PAYLOAD, MSS);
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_ttl(1);
    ip.fill_checksum();
    let (sent, back, _) = forward_both(pod_b_offloads(true, 1500), &[(frame.clone(), offload)]);
    assert!(sent.is_empty());
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].1, Offload::NONE);
    assert_icmp_error(&back[0].0, &frame, 11, 0);
}

#[test]
fn arp_with_a_checksum_flag_is_answered_plain_and_with_gso_dropped() {
    let arp = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
    let (_, o) = tso4_frame(100, 0);
    let (_, back, c) = forward_both(pod_b_offloads(true, 1500), &[(arp.clone(), o)]);
    assert_eq!(back.len(), 1, "{:?}", c.drops);
    assert_eq!(back[0].1, Offload::NONE);
    let (_, o) = tso4_frame(100, MSS);
    let (_, back, c) = forward_both(pod_b_offloads(true, 1500), &[(arp, o)]);
    assert!(back.is_empty());
    assert_eq!(c.drops[DropReason::GsoTypeMismatch as usize], 1);
}
