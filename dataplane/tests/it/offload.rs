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
    t.ports[usize::from(POD_B)].as_mut().unwrap().offloads = on;
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
