//! Multi-node output through the worker on memory ports: a pod's TSO super-frame to another
//! node's pod through a VXLAN uplink leaves as segments, each in its own outer headers (the
//! inner packet is cut first: no port takes a tunnelled super-frame), and routed (direct) to
//! an uplink with offloads it leaves whole, addressed to the next hop.

use podswitch_dataplane::batch::Offload;
use podswitch_dataplane::counters::Event;
use podswitch_dataplane::pipeline::FlowState;
use podswitch_dataplane::ports::memory::{MemoryQueue, Sink};
use podswitch_dataplane::ports::Uring;
use podswitch_dataplane::tables::{Encap, Tables};
use podswitch_dataplane::testkit::*;
use podswitch_dataplane::worker::Worker;
use podswitch_packet::vxlan::VxlanPacket;
use podswitch_packet::{Ipv4Packet, TcpPacket, UdpPacket};
use std::sync::Arc;

const PAYLOAD: usize = 20_000;

/// What left the uplink, with each frame's offload state.
type Sent = Vec<(Vec<u8>, Offload)>;
const MSS: u16 = 1398;

/// Sends pod A's TSO frame to node 2's pod through a worker whose neighbour table knows
/// node 2; returns what left the uplink.
/// Returns the frame sent, what left the uplink and how many frames were segmented.
fn through_uplink(encap: Encap) -> (Vec<u8>, Sent, u64) {
    let flows = Arc::new(FlowState::default());
    flows
        .neighbors
        .confirm(NODE2_IP, NODE2_MAC, std::time::Instant::now(), true);
    let rig = crate::rig_with_flows(32, 256, 8, flows);
    rig.tables.store(Arc::new(tables_multinode(encap)));
    let mut worker = rig.worker;
    let (mut frame, offload) = tso4_frame(PAYLOAD, MSS);
    // To node 2's pod: a new destination, the IP checksum and the pseudo-header sum with it.
    let mut ip = Ipv4Packet::new_unchecked(&mut frame[14..]);
    ip.set_dst(NODE2_POD_IP);
    ip.fill_checksum();
    let tcp_len = (frame.len() - 34) as u16;
    let pseudo = podswitch_packet::checksum::pseudo_header_ipv4(
        POD_A_IP,
        NODE2_POD_IP,
        podswitch_packet::IpProtocol::TCP,
        tcp_len,
    );
    frame[34 + 16..34 + 18].copy_from_slice(&pseudo.to_be_bytes());
    let mut a = MemoryQueue::new(POD_A);
    a.inject_offloaded(&frame, offload);
    let sent = polled_to_uplink(&mut worker, &rig.tables.load_full(), a);
    assert_eq!(worker.counters().drops.iter().sum::<u64>(), 0);
    let segmented = worker.counters().events[Event::GsoSegmentedSw as usize];
    (frame, sent, segmented)
}

/// Gives `worker` pod A's queue `a` and the uplink's, polls it four times under `snapshot`,
/// and returns what left the uplink.
fn polled_to_uplink(worker: &mut Worker, snapshot: &Arc<Tables>, a: MemoryQueue) -> Sent {
    let sink = Sink::default();
    worker.add_queue(Box::new(a));
    worker.add_queue(Box::new(MemoryQueue::with_sink(UPLINK, sink.clone())));
    let mut ring = Uring::new(64, 128).unwrap();
    for _ in 0..4 {
        worker.poll_once(&mut ring, snapshot);
    }
    let sent = std::mem::take(&mut *sink.lock().unwrap());
    sent
}

#[test]
fn a_tso_frame_through_a_vxlan_uplink_leaves_as_segments_each_in_its_own_outer_headers() {
    let (frame, sent, segmented) = through_uplink(Encap::Vxlan {
        vni: VNI,
        port: 4789,
    });
    assert_eq!(
        segmented, 1,
        "the uplink has offloads, but not for tunnelled frames"
    );
    assert_eq!(sent.len(), PAYLOAD.div_ceil(usize::from(MSS)));
    let mut payload = Vec::new();
    let mut sport = None;
    for (i, (seg, o)) in sent.iter().enumerate() {
        assert_eq!(*o, Offload::NONE, "segment {i}: nothing left for the port");
        assert!(
            seg.len() <= 1514,
            "segment {i} fits the uplink: {}",
            seg.len()
        );
        assert_eq!(&seg[0..12], &[NODE2_MAC.0, UPLINK_MAC.0].concat()[..]);
        let outer = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        assert!(outer.verify_checksum(), "segment {i}: outer IPv4 checksum");
        assert_eq!(usize::from(outer.total_len()), seg.len() - 14);
        assert_eq!((outer.src(), outer.dst()), (UPLINK_IP, NODE2_IP));
        let udp = UdpPacket::new_checked(outer.payload()).unwrap();
        assert_eq!(usize::from(udp.len()), seg.len() - 34);
        assert_eq!(udp.dst_port(), 4789);
        assert_eq!(
            *sport.get_or_insert(udp.src_port()),
            udp.src_port(),
            "one flow, one port"
        );
        assert_eq!(VxlanPacket::new_checked(&seg[42..]).unwrap().vni(), VNI);
        let inner = &seg[50..];
        assert_eq!(&inner[0..6], &NODE2_VTEP_MAC.0);
        assert!(l4_checksum_ok(inner), "segment {i}: inner checksums verify");
        let ip = Ipv4Packet::new_checked(&inner[14..]).unwrap();
        assert_eq!(ip.ttl(), 63);
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        payload.extend_from_slice(&ip.payload()[tcp.header_len()..]);
    }
    assert_eq!(&payload[..], &frame[14 + 20 + 32..], "byte-exact payload");
}

#[test]
fn a_tso_frame_routed_through_an_uplink_with_offloads_leaves_whole_to_the_next_hop() {
    let (frame, sent, segmented) = through_uplink(Encap::Direct);
    assert_eq!(segmented, 0);
    assert_eq!(sent.len(), 1);
    let (out, o) = &sent[0];
    assert!(o.is_gso(), "its offload state goes with it");
    assert_eq!(&out[0..12], &[NODE2_MAC.0, UPLINK_MAC.0].concat()[..]);
    assert_eq!(&out[34..], &frame[34..], "TCP header and payload untouched");
}

#[test]
fn a_stale_next_hop_gets_its_unicast_reprobe_from_the_worker_beside_the_packet() {
    let flows = Arc::new(FlowState::default());
    let long_ago = std::time::Instant::now()
        .checked_sub(
            podswitch_dataplane::neighbors::REACHABLE_TIME + std::time::Duration::from_secs(1),
        )
        .expect("the clock runs for more than 31 s");
    flows.neighbors.confirm(NODE2_IP, NODE2_MAC, long_ago, true);
    let rig = crate::rig_with_flows(32, 256, 8, flows.clone());
    rig.tables.store(Arc::new(tables_multinode(Encap::Direct)));
    let mut worker = rig.worker;
    let mut a = MemoryQueue::new(POD_A);
    a.inject(&udp_frame(
        POD_A_MAC,
        GW_MAC,
        POD_A_IP,
        NODE2_POD_IP,
        64,
        18,
    ));
    let sent = polled_to_uplink(&mut worker, &rig.tables.load_full(), a);
    assert_eq!(sent.len(), 2, "the packet and the probe");
    assert_eq!(
        &sent[0].0[0..6],
        &NODE2_MAC.0,
        "the packet, to the stale MAC"
    );
    let probe = &sent[1].0;
    assert_eq!(
        &probe[0..12],
        &[NODE2_MAC.0, UPLINK_MAC.0].concat()[..],
        "unicast"
    );
    let arp = podswitch_packet::ArpPacket::new_checked(&probe[14..]).unwrap();
    assert_eq!(arp.operation(), podswitch_packet::ArpOp::Request);
    assert_eq!((arp.sender_ip(), arp.target_ip()), (UPLINK_IP, NODE2_IP));
    assert_eq!(worker.counters().events[Event::ArpRequestSent as usize], 1);
}
