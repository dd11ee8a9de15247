//! Receive coalescing through the worker on memory ports: a burst of a flow's MTU-sized
//! segments to a port with offloads leaves as GSO super-frames that stand for exactly the
//! frames the same worker sends a port without offloads, one by one; through a VXLAN uplink,
//! decapsulated segments reach the pod coalesced.

use podswitch_dataplane::batch::Offload;
use podswitch_dataplane::batch::PortId;
use podswitch_dataplane::counters::{Counters, Event};
use podswitch_dataplane::pipeline::FlowState;
use podswitch_dataplane::ports::memory::{MemoryQueue, Sink};
use podswitch_dataplane::ports::Uring;
use podswitch_dataplane::tables::{Encap, Tables};
use podswitch_dataplane::testkit::*;
use podswitch_packet::gso::{SegmentChecksum, Segmenter};
use podswitch_packet::virtio_net::{FLAG_NEEDS_CSUM, GSO_TCPV4};
use podswitch_packet::Ipv4Packet;
use std::sync::Arc;

const MSS: u16 = 1448;
const BURST: usize = 32;

type Sent = Vec<(Vec<u8>, Offload)>;

/// `frame` (a TSO frame with a partial checksum) cut into whole segments, full checksums.
fn cut(frame: &[u8], mss: u16) -> Vec<Vec<u8>> {
    let mut segs = Segmenter::tcpv4(frame, mss, SegmentChecksum::Full).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 2048];
    while let Some(n) = segs.next_into(&mut buf).unwrap() {
        out.push(buf[..n].to_vec());
    }
    out
}

/// Injects `frames` into port `from` of a worker on `tables` (burst 32), polls until they are
/// through, and returns what port `to` was sent and the worker's counters.
fn forward(
    tables: Tables,
    flows: Arc<FlowState>,
    from: PortId,
    to: PortId,
    frames: &[Vec<u8>],
) -> (Sent, Counters) {
    let rig = crate::rig_with_flows(BURST, 512, 8, flows);
    rig.tables.store(Arc::new(tables));
    let mut worker = rig.worker;
    let mut input = MemoryQueue::new(from);
    for f in frames {
        input.inject(f);
    }
    let sink = Sink::default();
    worker.add_queue(Box::new(input));
    worker.add_queue(Box::new(MemoryQueue::with_sink(to, sink.clone())));
    let mut ring = Uring::new(64, 128).unwrap();
    let snapshot = rig.tables.load_full();
    for _ in 0..frames.len().div_ceil(BURST) + 2 {
        worker.poll_once(&mut ring, &snapshot);
    }
    let sent = std::mem::take(&mut *sink.lock().unwrap());
    (sent, worker.counters().clone())
}

/// `tables` with port `id`'s offloads set to `on`.
fn offloads(mut t: Tables, id: PortId, on: bool) -> Tables {
    Arc::make_mut(&mut t.ports)[usize::from(id)]
        .as_mut()
        .unwrap()
        .offloads = on;
    t
}

/// Pod A sends wire-sized segments (a port without offloads: an AF_XDP pod, or a tap with
/// offloads off); pod B takes offloads or not.
fn pod_b_offloads(on: bool) -> Tables {
    offloads(
        offloads(tables_with(true, 1500, 0), POD_A, false),
        POD_B,
        on,
    )
}

/// Every frame of `sent`, super-frames cut back into the segments they stand for.
fn resegmented(sent: &Sent) -> Vec<Vec<u8>> {
    sent.iter()
        .flat_map(|(f, o)| {
            if o.is_gso() {
                cut(f, o.gso_size)
            } else {
                vec![f.clone()]
            }
        })
        .collect()
}

#[test]
fn a_flows_segments_to_a_port_with_offloads_leave_as_super_frames_standing_for_them() {
    // 64 000 bytes from a port without offloads: 45 segments, two bursts of the worker.
    let (tso, _) = tso4_frame(64_000, MSS);
    let segs = cut(&tso, MSS);
    assert_eq!(segs.len(), 45);
    let (plain, _) = forward(pod_b_offloads(false), Arc::default(), POD_A, POD_B, &segs);
    assert_eq!(plain.len(), 45, "one by one to a port without offloads");
    let (sent, c) = forward(pod_b_offloads(true), Arc::default(), POD_A, POD_B, &segs);
    assert_eq!(sent.len(), 2, "one super-frame per burst (32 + 13)");
    for (f, o) in &sent {
        assert_eq!(
            (o.gso_type, o.gso_size, o.flags),
            (GSO_TCPV4, MSS, FLAG_NEEDS_CSUM)
        );
        assert_eq!((o.csum_start, o.csum_offset), (34, 16));
        let ip = Ipv4Packet::new_checked(&f[14..]).unwrap();
        assert!(ip.verify_checksum() && ip.ttl() == 63);
    }
    let plain_frames: Vec<Vec<u8>> = plain.into_iter().map(|(f, _)| f).collect();
    assert_eq!(
        resegmented(&sent),
        plain_frames,
        "byte for byte what went one by one"
    );
    assert_eq!(c.events[Event::GroFrames as usize], 2);
    assert_eq!(c.events[Event::GroSegments as usize], 45);
    assert_eq!(
        c.ports[usize::from(POD_B)].tx_packets,
        2,
        "two frames written"
    );
    assert_eq!(c.drops.iter().sum::<u64>(), 0, "{:?}", c.drops);
}

#[test]
fn segments_from_a_port_with_offloads_are_not_offered_to_gro() {
    // A tap with offloads hands over its sender's super-frames already: what it sends as
    // wire-sized segments (a small window, a retransmission) is passed on as it came.
    let (tso, _) = tso4_frame(64_000, MSS);
    let segs = cut(&tso, MSS);
    let tables = offloads(pod_b_offloads(true), POD_A, true);
    let (sent, c) = forward(tables, Arc::default(), POD_A, POD_B, &segs);
    assert_eq!(sent.len(), 45);
    assert!(sent.iter().all(|(_, o)| !o.is_gso()));
    assert_eq!(c.events[Event::GroFrames as usize], 0);
}

#[test]
fn vxlan_segments_from_another_node_reach_the_pod_coalesced() {
    // Node 2's pod sends 30 segments through the tunnel to pod A.
    let (mut tso, _) = tso4_frame(30 * usize::from(MSS) - 100, MSS);
    let mut ip = Ipv4Packet::new_unchecked(&mut tso[14..]);
    ip.set_src(NODE2_POD_IP);
    ip.set_dst(POD_A_IP);
    ip.set_ttl(63);
    ip.fill_checksum();
    tso[0..6].copy_from_slice(&NODE2_VTEP_MAC.0);
    let inner = cut(&tso, MSS);
    let tunnelled: Vec<Vec<u8>> = inner.iter().map(|f| vxlan_from_node2(f, VNI)).collect();
    // The uplink is an AF_XDP port: no offloads.
    let tables = offloads(
        tables_multinode(Encap::Vxlan {
            vni: VNI,
            port: 4789,
        }),
        UPLINK,
        false,
    );
    let (sent, c) = forward(tables, Arc::default(), UPLINK, POD_A, &tunnelled);
    assert_eq!(c.events[Event::VxlanDecapsulated as usize], 30);
    assert_eq!(sent.len(), 1, "30 segments, one burst, one frame");
    assert!(sent[0].1.is_gso());
    let got = resegmented(&sent);
    assert_eq!(got.len(), 30);
    for (g, i) in got.iter().zip(&inner) {
        assert!(l4_checksum_ok(g));
        assert_eq!(&g[34..], &i[34..], "TCP header and payload as sent");
        assert_eq!(&g[0..12], &[POD_A_MAC.0, GW_MAC.0].concat()[..]);
        assert_eq!(Ipv4Packet::new_checked(&g[14..]).unwrap().ttl(), 62);
    }
    assert_eq!(c.events[Event::GroSegments as usize], 30);
}
