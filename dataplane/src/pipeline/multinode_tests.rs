//! Multi-node forwarding through the whole pipeline on the standard topology plus an uplink
//! (`testkit::tables_multinode`): a pod reaching another node's pod, routed and in VXLAN;
//! another node's pod reaching a local pod, routed and decapsulated; the ARP resolution of the
//! next hop; the uplink's own ARP; the effective MTU; a cached output still encapsulated.

use crate::batch::{Next, Track};
use crate::counters::{DropReason, Event};
use crate::neighbors::{State, REACHABLE_TIME};
use crate::pipeline;
use crate::tables::{Encap, RouteTarget};
use crate::testkit::*;
use podswitch_packet::vxlan::VxlanPacket;
use podswitch_packet::{
    ArpOp, ArpPacket, EthernetFrame, IpProtocol, Ipv4Packet, MacAddr, UdpPacket,
};
use std::time::Duration;

const VXLAN: Encap = Encap::Vxlan {
    vni: VNI,
    port: 4789,
};

fn to_node2(len: usize) -> Vec<u8> {
    udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, NODE2_POD_IP, 64, len)
}

/// A harness whose next hop node 2 is already resolved (by its ARP reply on the uplink).
fn resolved(encap: Encap) -> Harness {
    let mut h = Harness::from_tables(tables_multinode(encap));
    let reply = arp_reply_to_uplink(NODE2_MAC, NODE2_IP);
    assert_eq!(
        h.run_one(UPLINK, &reply, pipeline::run),
        Next::Drop(DropReason::ArpLearned)
    );
    h
}

#[test]
fn first_packet_to_an_unresolved_next_hop_becomes_the_arp_request_and_the_reply_resolves_it() {
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    let f = to_node2(18);
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(UPLINK));
    let eth = EthernetFrame::new_checked(&h.last_frame[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (MacAddr::BROADCAST, UPLINK_MAC));
    let arp = ArpPacket::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!(arp.operation(), ArpOp::Request);
    assert_eq!((arp.sender_hw(), arp.sender_ip()), (UPLINK_MAC, UPLINK_IP));
    assert_eq!(arp.target_ip(), NODE2_IP);
    assert_eq!(h.ctr.drops[DropReason::NeighborUnresolved as usize], 1);
    assert_eq!(h.ctr.events[Event::ArpRequestSent as usize], 1);

    // Until the answer, packets are dropped without another request (one per second).
    assert_eq!(
        h.run_one(POD_A, &f, pipeline::run),
        Next::Drop(DropReason::NeighborUnresolved)
    );
    assert!(h.last_frame.is_empty());
    assert_eq!(h.ctr.events[Event::ArpRequestSent as usize], 1);

    let reply = arp_reply_to_uplink(NODE2_MAC, NODE2_IP);
    assert_eq!(
        h.run_one(UPLINK, &reply, pipeline::run),
        Next::Drop(DropReason::ArpLearned)
    );
    assert_eq!(h.ctr.events[Event::NeighborConfirmed as usize], 1);
    let entry = h.flows.neighbors.dump(h.now)[0];
    assert_eq!(
        (entry.ip, entry.mac, entry.state),
        (NODE2_IP, Some(NODE2_MAC), State::Reachable)
    );
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(UPLINK));
}

#[test]
fn direct_routing_sends_the_packet_to_the_next_hops_mac_from_the_uplinks() {
    let mut h = resolved(Encap::Direct);
    let f = to_node2(18);
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(UPLINK));
    let out = h.last_frame.clone();
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (NODE2_MAC, UPLINK_MAC));
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.ttl()), (POD_A_IP, NODE2_POD_IP, 63));
    assert!(ip.verify_checksum());
    assert_eq!(&out[14 + 20..], &f[14 + 20..], "payload untouched");
}

/// The frame pod A's datagram must leave as, built by hand: outer headers from the uplink to
/// node 2 (UDP source port as the switch chose it), the inner frame from the gateway MAC to
/// node 2's tunnel MAC with the TTL decremented.
fn expected_vxlan(inner_sent: &[u8], src_port: u16) -> Vec<u8> {
    let mut inner = inner_sent.to_vec();
    inner[0..6].copy_from_slice(&NODE2_VTEP_MAC.0);
    inner[6..12].copy_from_slice(&GW_MAC.0);
    let mut ip = Ipv4Packet::new_unchecked(&mut inner[14..]);
    ip.decrement_ttl();
    let mut f = vxlan_from_node2(&inner, VNI);
    // Turn node 2 → us into us → node 2: swap MACs and addresses, set the source port.
    f[0..6].copy_from_slice(&NODE2_MAC.0);
    f[6..12].copy_from_slice(&UPLINK_MAC.0);
    let mut outer = Ipv4Packet::new_unchecked(&mut f[14..34]);
    outer.set_src(UPLINK_IP);
    outer.set_dst(NODE2_IP);
    outer.fill_checksum();
    f[34..36].copy_from_slice(&src_port.to_be_bytes());
    f
}

#[test]
fn vxlan_encapsulates_with_the_outer_headers_a_hand_built_frame_has() {
    let mut h = resolved(VXLAN);
    let f = to_node2(18);
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(UPLINK));
    let out = h.last_frame.clone();
    let sport = u16::from_be_bytes([out[34], out[35]]);
    assert!(sport >= 49152, "source port in the dynamic range: {sport}");
    assert_eq!(out, expected_vxlan(&f, sport), "byte-exact");
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert!(outer.verify_checksum() && outer.dont_frag());
    assert_eq!(outer.protocol(), IpProtocol::UDP);
    let udp = UdpPacket::new_checked(outer.payload()).unwrap();
    assert_eq!((udp.dst_port(), udp.checksum()), (4789, 0));
    assert_eq!(VxlanPacket::new_checked(&out[42..]).unwrap().vni(), VNI);
    assert_eq!(h.ctr.events[Event::VxlanEncapsulated as usize], 1);

    // The same flow again: the same source port (entropy per flow, not per packet).
    h.run_one(POD_A, &f, pipeline::run);
    assert_eq!(&h.last_frame[34..36], &sport.to_be_bytes());
    // Another flow (other source port) very likely another.
    let mut g = f.clone();
    g[34..36].copy_from_slice(&4242u16.to_be_bytes());
    h.run_one(POD_A, &g, pipeline::run);
    assert_ne!(&h.last_frame[34..36], &sport.to_be_bytes());
}

#[test]
fn an_established_flow_with_a_cached_output_is_still_encapsulated() {
    let mut h = resolved(VXLAN);
    let f = to_node2(18);
    h.run_one(POD_A, &f, pipeline::run);
    let first = h.last_frame.clone();
    let meta = h.run_meta(POD_A, &f, pipeline::run);
    assert!(
        matches!(
            meta.track,
            Track::Hit {
                cache_hop: false,
                ..
            }
        ),
        "second packet took conntrack's cached output: {:?}",
        meta.track
    );
    assert_eq!(meta.next_hop, Some(0));
    assert_eq!(h.last_frame, first);
}

#[test]
fn a_cached_output_under_an_old_route_epoch_is_routed_again() {
    let mut h = resolved(Encap::Direct);
    let f = to_node2(18);
    h.run_one(POD_A, &f, pipeline::run);
    // Node 2 leaves: its route goes, the epoch moves; the flow's next packet is routed again.
    let mut t = tables_with(true, 1500, 0);
    t.route_epoch = h.tables.route_epoch + 1;
    h.tables = t;
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(HOST));
}

#[test]
fn a_routed_packet_from_another_nodes_pod_reaches_the_local_pod() {
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    let f = udp_frame(NODE2_MAC, UPLINK_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
    assert_eq!(h.run_one(UPLINK, &f, pipeline::run), Next::Output(POD_A));
    let eth = EthernetFrame::new_checked(&h.last_frame[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_A_MAC, GW_MAC));
    // Many MACs behind the uplink: another sender's MAC is as good.
    let g = udp_frame(
        MacAddr([2, 9, 9, 9, 9, 9]),
        UPLINK_MAC,
        NODE2_POD_IP,
        POD_B_IP,
        63,
        18,
    );
    assert_eq!(h.run_one(UPLINK, &g, pipeline::run), Next::Output(POD_B));
}

#[test]
fn the_underlay_can_neither_claim_a_local_pods_address_nor_send_to_other_macs() {
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    let f = udp_frame(NODE2_MAC, UPLINK_MAC, POD_B_IP, POD_A_IP, 63, 18);
    assert_eq!(
        h.run_one(UPLINK, &f, pipeline::run),
        Next::Drop(DropReason::SpoofedSourceIp)
    );
    let f = udp_frame(NODE2_MAC, GW_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
    assert_eq!(
        h.run_one(UPLINK, &f, pipeline::run),
        Next::Drop(DropReason::NotForSwitch)
    );
}

#[test]
fn vxlan_from_another_node_is_decapsulated_and_delivered_to_the_local_pod() {
    let mut h = Harness::from_tables(tables_multinode(VXLAN));
    // Node 2 addresses its inner frame to whatever it believes our tunnel MAC is.
    let inner = udp_frame(NODE2_VTEP_MAC, GW_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
    let f = vxlan_from_node2(&inner, VNI);
    assert_eq!(h.run_one(UPLINK, &f, pipeline::run), Next::Output(POD_A));
    let out = &h.last_frame;
    assert_eq!(out.len(), inner.len(), "outer headers gone");
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (POD_A_MAC, GW_MAC));
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst(), ip.ttl()), (NODE2_POD_IP, POD_A_IP, 62));
    assert_eq!(&out[34..], &inner[34..], "inner UDP untouched");
    assert_eq!(h.ctr.events[Event::VxlanDecapsulated as usize], 1);
    // The reply goes back in VXLAN once node 2 is resolved.
    let reply = arp_reply_to_uplink(NODE2_MAC, NODE2_IP);
    h.run_one(UPLINK, &reply, pipeline::run);
    let back = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, NODE2_POD_IP, 64, 18);
    assert_eq!(h.run_one(POD_A, &back, pipeline::run), Next::Output(UPLINK));
    assert_eq!(h.last_frame.len(), back.len() + 50);
}

#[test]
fn a_vxlan_uplink_drops_wrong_vnis_plain_ipv4_and_broken_tunnels_by_reason() {
    let mut h = Harness::from_tables(tables_multinode(VXLAN));
    let inner = udp_frame(NODE2_VTEP_MAC, GW_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
    let f = vxlan_from_node2(&inner, VNI + 1);
    assert_eq!(
        h.run_one(UPLINK, &f, pipeline::run),
        Next::Drop(DropReason::VxlanWrongVni)
    );
    let plain = udp_frame(NODE2_MAC, UPLINK_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
    assert_eq!(
        h.run_one(UPLINK, &plain, pipeline::run),
        Next::Drop(DropReason::VxlanNotTunneled)
    );
    let mut no_i = vxlan_from_node2(&inner, VNI);
    no_i[42] = 0;
    assert_eq!(
        h.run_one(UPLINK, &no_i, pipeline::run),
        Next::Drop(DropReason::VxlanMalformed)
    );
    let mut bad_csum = vxlan_from_node2(&inner, VNI);
    bad_csum[24] ^= 1;
    assert_eq!(
        h.run_one(UPLINK, &bad_csum, pipeline::run),
        Next::Drop(DropReason::VxlanMalformed)
    );
    // An inner frame cut short of an Ethernet header.
    let short = vxlan_from_node2(&inner[..10], VNI);
    assert_eq!(
        h.run_one(UPLINK, &short, pipeline::run),
        Next::Drop(DropReason::VxlanMalformed)
    );
    // A tunnelled packet claiming a local pod's address.
    let spoof = udp_frame(NODE2_VTEP_MAC, GW_MAC, POD_B_IP, POD_A_IP, 63, 18);
    assert_eq!(
        h.run_one(UPLINK, &vxlan_from_node2(&spoof, VNI), pipeline::run),
        Next::Drop(DropReason::SpoofedSourceIp)
    );
}

#[test]
fn the_switch_answers_arp_for_the_uplinks_address_and_learns_the_asker_if_it_is_a_next_hop() {
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    let ask = arp_request(NODE2_MAC, NODE2_IP, UPLINK_IP);
    assert_eq!(h.run_one(UPLINK, &ask, pipeline::run), Next::Output(UPLINK));
    let eth = EthernetFrame::new_checked(&h.last_frame[..]).unwrap();
    assert_eq!((eth.dst(), eth.src()), (NODE2_MAC, UPLINK_MAC));
    let arp = ArpPacket::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!(arp.operation(), ArpOp::Reply);
    assert_eq!((arp.sender_hw(), arp.sender_ip()), (UPLINK_MAC, UPLINK_IP));
    assert_eq!(h.flows.neighbors.dump(h.now)[0].mac, Some(NODE2_MAC));

    // Another host on the underlay: answered, not learnt (no route leads to it).
    let stranger = std::net::Ipv4Addr::new(192, 168, 1, 77);
    let ask = arp_request(MacAddr([2, 7, 7, 7, 7, 7]), stranger, UPLINK_IP);
    assert_eq!(h.run_one(UPLINK, &ask, pipeline::run), Next::Output(UPLINK));
    assert_eq!(h.flows.neighbors.dump(h.now).len(), 1);
    // A request for someone else's address: not ours.
    let ask = arp_request(MacAddr([2, 7, 7, 7, 7, 7]), stranger, NODE2_IP);
    assert_eq!(
        h.run_one(UPLINK, &ask, pipeline::run),
        Next::Drop(DropReason::ArpNotOurs)
    );
    // A gratuitous ARP from node 2 with a new MAC (a replaced NIC) is learnt.
    let new_mac = MacAddr([0x52, 0x54, 0, 0, 0, 0x22]);
    let garp = arp_request(new_mac, NODE2_IP, NODE2_IP);
    assert_eq!(
        h.run_one(UPLINK, &garp, pipeline::run),
        Next::Drop(DropReason::ArpLearned)
    );
    assert_eq!(h.flows.neighbors.dump(h.now)[0].mac, Some(new_mac));
}

#[test]
fn a_stale_next_hop_is_used_and_its_reprobe_left_to_the_worker() {
    let mut h = resolved(Encap::Direct);
    h.now += REACHABLE_TIME + Duration::from_secs(1);
    let f = to_node2(18);
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(UPLINK));
    assert_eq!(
        &h.last_frame[0..6],
        &NODE2_MAC.0,
        "forwarded with the stale MAC"
    );
    let probes: Vec<_> = h.state.arp_probes.take().collect();
    assert_eq!(probes, vec![(NODE2_IP, NODE2_MAC)]);
    assert_eq!(h.flows.neighbors.dump(h.now)[0].state, State::Probe);
    h.run_one(POD_A, &f, pipeline::run);
    assert_eq!(h.state.arp_probes.take().count(), 0, "one per second");
}

#[test]
fn the_mtu_through_a_vxlan_uplink_is_50_bytes_less_and_frag_needed_says_so() {
    let mut h = resolved(VXLAN);
    // 1450 bytes of IP fit; 1451 do not.
    let fits = to_node2(1450 - 28);
    assert_eq!(h.run_one(POD_A, &fits, pipeline::run), Next::Output(UPLINK));
    assert_eq!(h.last_frame.len(), 1450 + 14 + 50);
    let big = to_node2(1451 - 28);
    assert_eq!(h.run_one(POD_A, &big, pipeline::run), Next::Output(POD_A));
    assert_icmp_error(&h.last_frame, &big, 3, 4);
    assert_eq!(
        &h.last_frame[14 + 20 + 6..14 + 20 + 8],
        &1450u16.to_be_bytes()
    );
    // Routed, the whole 1500.
    let mut h = resolved(Encap::Direct);
    let full = to_node2(1500 - 28);
    assert_eq!(h.run_one(POD_A, &full, pipeline::run), Next::Output(UPLINK));
}

#[test]
fn a_dry_run_through_an_unresolved_next_hop_sends_nothing_and_learns_nothing() {
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    h.mode = crate::pipeline::Mode::DryRun;
    let f = to_node2(18);
    assert_eq!(
        h.run_one(POD_A, &f, pipeline::run),
        Next::Drop(DropReason::NeighborUnresolved)
    );
    assert!(h.flows.neighbors.dump(h.now).is_empty());
}

#[test]
fn without_an_uplink_a_route_to_another_node_is_dropped_as_no_uplink() {
    let mut t = tables_multinode(Encap::Direct);
    t.uplink = None;
    let mut h = Harness::from_tables(t);
    assert_eq!(
        h.run_one(POD_A, &to_node2(18), pipeline::run),
        Next::Drop(DropReason::NoUplink)
    );
}

#[test]
fn ingress_from_another_node_meets_policy_and_conntrack_like_any_other() {
    let mut t = tables_multinode(VXLAN);
    isolate_pod_b(&mut t);
    let mut h = Harness::from_tables(t);
    // Pod B admits only pod A: another node's pod is denied, decapsulated or not.
    let to_b = udp_frame(NODE2_VTEP_MAC, GW_MAC, NODE2_POD_IP, POD_B_IP, 63, 18);
    assert_eq!(
        h.run_one(UPLINK, &vxlan_from_node2(&to_b, VNI), pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    // Pod A is not isolated: the connection is tracked, and pod A's reply is its reply.
    let to_a = udp_frame(NODE2_VTEP_MAC, GW_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
    let meta = h.run_meta(UPLINK, &vxlan_from_node2(&to_a, VNI), pipeline::run);
    assert_eq!((meta.next, meta.track), (Next::Output(POD_A), Track::New));
    h.run_one(
        UPLINK,
        &arp_reply_to_uplink(NODE2_MAC, NODE2_IP),
        pipeline::run,
    );
    let mut reply = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, NODE2_POD_IP, 64, 18);
    // Swap the ports: the reply of the datagram above.
    let ports: Vec<u8> = reply[34..38].to_vec();
    reply[34..36].copy_from_slice(&ports[2..4]);
    reply[36..38].copy_from_slice(&ports[0..2]);
    let meta = h.run_meta(POD_A, &reply, pipeline::run);
    assert_eq!(meta.next, Next::Output(UPLINK));
    assert!(
        matches!(
            meta.track,
            Track::Hit {
                dir: crate::conntrack::Dir::Reply,
                ..
            }
        ),
        "{:?}",
        meta.track
    );
}

#[test]
fn congestion_marked_on_the_outer_header_reaches_an_ecn_capable_inner_packet() {
    let mut h = Harness::from_tables(tables_multinode(VXLAN));
    let ect = |tos: u8| {
        let mut inner = udp_frame(NODE2_VTEP_MAC, GW_MAC, NODE2_POD_IP, POD_A_IP, 63, 18);
        let mut ip = Ipv4Packet::new_unchecked(&mut inner[14..]);
        ip.set_dscp_ecn(tos);
        ip.fill_checksum();
        inner
    };
    let mut f = vxlan_from_node2(&ect(0b10), VNI); // ECT(0)
    let mut outer = Ipv4Packet::new_unchecked(&mut f[14..34]);
    outer.set_dscp_ecn(0b11); // CE
    outer.fill_checksum();
    assert_eq!(h.run_one(UPLINK, &f, pipeline::run), Next::Output(POD_A));
    let ip = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!(ip.dscp_ecn() & 3, 3, "CE propagated");
    assert!(ip.verify_checksum());
    // Without the mark outside, the inner field is left alone.
    let f = vxlan_from_node2(&ect(0b10), VNI);
    h.run_one(UPLINK, &f, pipeline::run);
    assert_eq!(
        Ipv4Packet::new_checked(&h.last_frame[14..])
            .unwrap()
            .dscp_ecn()
            & 3,
        0b10
    );
}

/// A client outside the cluster, on the underlay's segment.
const OUTSIDE_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(192, 168, 1, 100);
const OUTSIDE_MAC: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x00, 0x00, 0x64]);
const NODE_PORT: u16 = 30080;
const NODE_PORT_IP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 96, 255, 254);

/// The multi-node tables with a NodePort Service (`externalTrafficPolicy: Cluster`) whose one
/// endpoint is `endpoint:8080`.
fn nodeport_tables(encap: Encap, endpoint: std::net::Ipv4Addr) -> crate::tables::Tables {
    use crate::tables::{ServiceEntry, Services};
    use podswitch_proto::{BackendSpec, Frontend, FrontendKind, L4Protocol, ServiceSpec};
    let mut spec = ServiceSpec::cluster_ip(
        "default/web:http",
        L4Protocol::Tcp,
        std::net::Ipv4Addr::new(10, 96, 0, 10),
        80,
        vec![BackendSpec::ready(endpoint, 8080)],
    );
    spec.frontends.push(Frontend {
        kind: FrontendKind::NodePort,
        ip: std::net::Ipv4Addr::UNSPECIFIED,
        port: NODE_PORT,
    });
    let mut t = tables_multinode(encap);
    t.services = std::sync::Arc::new(Services::new(
        vec![std::sync::Arc::new(ServiceEntry::new(1, &spec))],
        Some(NODE_PORT_IP),
    ));
    t
}

/// A TCP segment between `src` and `dst` in a frame from `src_mac` to `dst_mac`.
fn tcp_between(
    (src_mac, src, sport): (MacAddr, std::net::Ipv4Addr, u16),
    (dst_mac, dst, dport): (MacAddr, std::net::Ipv4Addr, u16),
    flags: podswitch_packet::TcpFlags,
) -> Vec<u8> {
    let mut f = tcp_segment(src, sport, dst, dport, flags);
    f[0..6].copy_from_slice(&dst_mac.0);
    f[6..12].copy_from_slice(&src_mac.0);
    f
}

/// MACs, addresses and ports of a frame the switch sent, checksums verified.
fn tcp_headers(
    frame: &[u8],
) -> (
    (MacAddr, MacAddr),
    (std::net::Ipv4Addr, u16),
    (std::net::Ipv4Addr, u16),
) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    let t = podswitch_packet::TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum(ip.src(), ip.dst()));
    (
        (eth.src(), eth.dst()),
        (ip.src(), t.src_port()),
        (ip.dst(), t.dst_port()),
    )
}

#[test]
fn a_nodeport_at_the_uplinks_address_reaches_a_local_endpoint_and_replies_leave_by_the_uplink() {
    use podswitch_packet::TcpFlags;
    for encap in [Encap::Direct, VXLAN] {
        let mut h = Harness::from_tables(nodeport_tables(encap, POD_B_IP));
        let client = (OUTSIDE_MAC, OUTSIDE_IP, 40000);
        let syn = tcp_between(client, (UPLINK_MAC, UPLINK_IP, NODE_PORT), TcpFlags::SYN);
        // Plain IPv4 to the uplink's own address passes a VXLAN uplink too.
        assert_eq!(
            h.run_one(UPLINK, &syn, pipeline::run),
            Next::Output(POD_B),
            "{encap:?}"
        );
        let (_, src, dst) = tcp_headers(&h.last_frame);
        assert_eq!(
            (src, dst),
            ((OUTSIDE_IP, 40000), (POD_B_IP, 8080)),
            "DNAT only: the endpoint sees the client"
        );
        let syn_ack = tcp_between(
            (POD_B_MAC, POD_B_IP, 8080),
            (GW_MAC, OUTSIDE_IP, 40000),
            TcpFlags::SYN | TcpFlags::ACK,
        );
        resolve(&mut h, POD_B, &syn_ack, (OUTSIDE_MAC, OUTSIDE_IP));
        assert_eq!(
            h.run_one(POD_B, &syn_ack, pipeline::run),
            Next::Output(UPLINK)
        );
        let (macs, src, dst) = tcp_headers(&h.last_frame);
        assert_eq!(
            macs,
            (UPLINK_MAC, OUTSIDE_MAC),
            "{encap:?}: not encapsulated"
        );
        assert_eq!(
            (src, dst),
            ((UPLINK_IP, NODE_PORT), (OUTSIDE_IP, 40000)),
            "reverse NAT: from the node's address and NodePort"
        );
        assert_eq!(h.ctr.events[Event::VxlanEncapsulated as usize], 0);
    }
}

#[test]
fn an_outside_connection_to_another_nodes_endpoint_is_snatted_to_the_uplinks_address() {
    use podswitch_packet::TcpFlags;
    let mut h = resolved(Encap::Direct);
    h.tables = nodeport_tables(Encap::Direct, NODE2_POD_IP);
    let syn = tcp_between(
        (OUTSIDE_MAC, OUTSIDE_IP, 40000),
        (UPLINK_MAC, UPLINK_IP, NODE_PORT),
        TcpFlags::SYN,
    );
    assert_eq!(h.run_one(UPLINK, &syn, pipeline::run), Next::Output(UPLINK));
    let (macs, src, dst) = tcp_headers(&h.last_frame);
    assert_eq!(macs, (UPLINK_MAC, NODE2_MAC));
    assert_eq!(
        (src, dst),
        ((UPLINK_IP, 40000), (NODE2_POD_IP, 8080)),
        "SNAT to the node's address, so the reply comes back here"
    );
    // Node 2's endpoint answers the node's address; conntrack sends it on to the client.
    let syn_ack = tcp_between(
        (NODE2_MAC, NODE2_POD_IP, 8080),
        (UPLINK_MAC, UPLINK_IP, 40000),
        TcpFlags::SYN | TcpFlags::ACK,
    );
    resolve(&mut h, UPLINK, &syn_ack, (OUTSIDE_MAC, OUTSIDE_IP));
    assert_eq!(
        h.run_one(UPLINK, &syn_ack, pipeline::run),
        Next::Output(UPLINK)
    );
    let (macs, src, dst) = tcp_headers(&h.last_frame);
    assert_eq!(macs, (UPLINK_MAC, OUTSIDE_MAC));
    assert_eq!((src, dst), ((UPLINK_IP, NODE_PORT), (OUTSIDE_IP, 40000)));
}

#[test]
fn a_connection_from_another_nodes_address_is_answered_through_that_node() {
    use podswitch_packet::TcpFlags;
    // Node 2 SNATed an outside client's connection to its own address and sent it here
    // (VXLAN); the local endpoint's reply goes back to node 2 encapsulated, not to the host.
    let mut h = resolved(VXLAN);
    h.tables = nodeport_tables(VXLAN, POD_B_IP);
    let inner = tcp_between(
        (NODE2_VTEP_MAC, NODE2_IP, 40000),
        (GW_MAC, POD_B_IP, 8080),
        TcpFlags::SYN,
    );
    assert_eq!(
        h.run_one(UPLINK, &vxlan_from_node2(&inner, VNI), pipeline::run),
        Next::Output(POD_B)
    );
    let syn_ack = tcp_between(
        (POD_B_MAC, POD_B_IP, 8080),
        (GW_MAC, NODE2_IP, 40000),
        TcpFlags::SYN | TcpFlags::ACK,
    );
    assert_eq!(
        h.run_one(POD_B, &syn_ack, pipeline::run),
        Next::Output(UPLINK)
    );
    assert_eq!(h.ctr.events[Event::VxlanEncapsulated as usize], 1);
    let outer = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!((outer.src(), outer.dst()), (UPLINK_IP, NODE2_IP));
}

/// Pod A's TCP SYN to `dst`:443 from port 41000.
fn syn_from_pod_a(dst: std::net::Ipv4Addr) -> Vec<u8> {
    use podswitch_packet::TcpFlags;
    tcp_between(
        (POD_A_MAC, POD_A_IP, 41000),
        (GW_MAC, dst, 443),
        TcpFlags::SYN,
    )
}

/// Runs `pkt` from `port` until its next hop `who` (address and MAC) is resolved: the first
/// one becomes the ARP request for it out of the uplink, and `who` answers.
fn resolve(
    h: &mut Harness,
    port: crate::batch::PortId,
    pkt: &[u8],
    who: (MacAddr, std::net::Ipv4Addr),
) {
    assert_eq!(h.run_one(port, pkt, pipeline::run), Next::Output(UPLINK));
    let arp = ArpPacket::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!((arp.operation(), arp.target_ip()), (ArpOp::Request, who.1));
    let reply = arp_reply_to_uplink(who.0, who.1);
    assert_eq!(
        h.run_one(UPLINK, &reply, pipeline::run),
        Next::Drop(DropReason::ArpLearned)
    );
}

#[test]
fn egress_leaves_the_uplink_to_the_underlay_gateway_snatted_and_its_reply_finds_the_pod() {
    use podswitch_packet::TcpFlags;
    for encap in [Encap::Direct, VXLAN] {
        let mut h = Harness::from_tables(tables_egress(encap));
        let syn = syn_from_pod_a(INTERNET_IP);
        resolve(&mut h, POD_A, &syn, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
        assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(UPLINK));
        let (macs, src, dst) = tcp_headers(&h.last_frame);
        assert_eq!(
            macs,
            (UPLINK_MAC, UNDERLAY_GW_MAC),
            "{encap:?}: to the gateway"
        );
        assert_eq!(
            (src, dst),
            ((UPLINK_IP, 41000), (INTERNET_IP, 443)),
            "{encap:?}: the node's address, the pod's port kept"
        );
        assert_eq!(
            h.ctr.events[Event::VxlanEncapsulated as usize],
            0,
            "never encapsulated"
        );

        let syn_ack = tcp_between(
            (UNDERLAY_GW_MAC, INTERNET_IP, 443),
            (UPLINK_MAC, UPLINK_IP, 41000),
            TcpFlags::SYN | TcpFlags::ACK,
        );
        assert_eq!(
            h.run_one(UPLINK, &syn_ack, pipeline::run),
            Next::Output(POD_A),
            "{encap:?}: plain IPv4 to the uplink's address passes a VXLAN uplink"
        );
        let (macs, src, dst) = tcp_headers(&h.last_frame);
        assert_eq!(macs, (GW_MAC, POD_A_MAC));
        assert_eq!((src, dst), ((INTERNET_IP, 443), (POD_A_IP, 41000)));
    }
}

#[test]
fn egress_to_an_address_on_the_uplinks_segment_goes_to_its_own_mac() {
    let mut h = Harness::from_tables(tables_egress(VXLAN));
    let neighbour = (OUTSIDE_MAC, OUTSIDE_IP);
    let syn = syn_from_pod_a(OUTSIDE_IP);
    resolve(&mut h, POD_A, &syn, neighbour);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(UPLINK));
    let (macs, src, dst) = tcp_headers(&h.last_frame);
    assert_eq!(macs, (UPLINK_MAC, OUTSIDE_MAC));
    assert_eq!((src, dst), ((UPLINK_IP, 41000), (OUTSIDE_IP, 443)));
}

#[test]
fn a_node_behind_the_underlay_gateway_is_tunnelled_to_its_address_through_the_gateways_mac() {
    let mut h = Harness::from_tables(tables_egress(VXLAN));
    let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, NODE3_POD_IP, 64, 18);
    resolve(&mut h, POD_A, &f, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
    assert_eq!(h.run_one(POD_A, &f, pipeline::run), Next::Output(UPLINK));
    let out = h.last_frame.clone();
    let eth = EthernetFrame::new_checked(&out[..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (UPLINK_MAC, UNDERLAY_GW_MAC));
    let outer = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((outer.src(), outer.dst()), (UPLINK_IP, NODE3_IP));
    let inner = Ipv4Packet::new_checked(&out[14 + 50..]).unwrap();
    assert_eq!(
        (inner.src(), inner.dst()),
        (POD_A_IP, NODE3_POD_IP),
        "pod to pod: no SNAT"
    );
    assert_eq!(h.ctr.events[Event::VxlanEncapsulated as usize], 1);
}

#[test]
fn egress_drops_what_it_cannot_translate_transit_and_keeps_the_nodes_own_address_for_the_host() {
    let mut h = Harness::from_tables(tables_egress(Encap::Direct));
    // GRE from a pod: no ports to translate, and an untranslated reply could not find it.
    let gre = ipv4_frame(
        POD_A_MAC,
        GW_MAC,
        POD_A_IP,
        INTERNET_IP,
        64,
        IpProtocol(47),
        &[0; 8],
    );
    assert_eq!(
        h.run_one(POD_A, &gre, pipeline::run),
        Next::Drop(DropReason::EgressUntracked)
    );
    // The underlay sending the world through us: back out of the uplink, a loop.
    let transit = tcp_between(
        (
            UNDERLAY_GW_MAC,
            std::net::Ipv4Addr::new(198, 51, 100, 1),
            5000,
        ),
        (UPLINK_MAC, INTERNET_IP, 443),
        podswitch_packet::TcpFlags::SYN,
    );
    assert_eq!(
        h.run_one(UPLINK, &transit, pipeline::run),
        Next::Drop(DropReason::Hairpin)
    );
    // The node's own address is the host's, not the segment's.
    let syn = syn_from_pod_a(UPLINK_IP);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(HOST));
    let (_, src, _) = tcp_headers(&h.last_frame);
    assert_eq!(src, (POD_A_IP, 41000), "to the host: no SNAT");
}

#[test]
fn a_nodeport_client_behind_the_underlay_gateway_is_answered_through_the_gateway() {
    // With egress through the host port too: the uplink's own gateway decides.
    for tables in [tables_underlay_gateway(VXLAN), tables_egress(VXLAN)] {
        nodeport_client_behind_the_gateway(tables);
    }
}

fn nodeport_client_behind_the_gateway(tables: crate::tables::Tables) {
    use podswitch_packet::TcpFlags;
    let mut h = Harness::from_tables(tables);
    h.tables.services = nodeport_tables(VXLAN, POD_B_IP).services;
    let syn = tcp_between(
        (UNDERLAY_GW_MAC, INTERNET_IP, 40000),
        (UPLINK_MAC, UPLINK_IP, NODE_PORT),
        TcpFlags::SYN,
    );
    assert_eq!(h.run_one(UPLINK, &syn, pipeline::run), Next::Output(POD_B));
    let syn_ack = tcp_between(
        (POD_B_MAC, POD_B_IP, 8080),
        (GW_MAC, INTERNET_IP, 40000),
        TcpFlags::SYN | TcpFlags::ACK,
    );
    resolve(&mut h, POD_B, &syn_ack, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
    assert_eq!(
        h.run_one(POD_B, &syn_ack, pipeline::run),
        Next::Output(UPLINK)
    );
    let (macs, src, dst) = tcp_headers(&h.last_frame);
    assert_eq!(
        macs,
        (UPLINK_MAC, UNDERLAY_GW_MAC),
        "not to the client's own MAC"
    );
    assert_eq!((src, dst), ((UPLINK_IP, NODE_PORT), (INTERNET_IP, 40000)));
    // A route change (a node joins) leaves the reply's output alone: it names the uplink's
    // gateway, not a route.
    h.tables.route_epoch += 1;
    let ack = tcp_between(
        (POD_B_MAC, POD_B_IP, 8080),
        (GW_MAC, INTERNET_IP, 40000),
        TcpFlags::ACK,
    );
    assert_eq!(h.run_one(POD_B, &ack, pipeline::run), Next::Output(UPLINK));
    let (macs, ..) = tcp_headers(&h.last_frame);
    assert_eq!(
        macs,
        (UPLINK_MAC, UNDERLAY_GW_MAC),
        "after a route change too"
    );
}

#[test]
fn a_route_change_into_or_out_of_egress_ends_the_connections_it_would_mistranslate() {
    use podswitch_packet::TcpFlags;
    let ack = |dst| {
        tcp_between(
            (POD_A_MAC, POD_A_IP, 41000),
            (GW_MAC, dst, 443),
            TcpFlags::ACK,
        )
    };
    // Begun through the host port, untranslated: egress would send the pod's own address out.
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    let syn = syn_from_pod_a(INTERNET_IP);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(HOST));
    let epoch = h.tables.route_epoch;
    h.tables = tables_egress(Encap::Direct);
    h.tables.route_epoch = epoch + 1;
    assert_eq!(
        h.run_one(POD_A, &ack(INTERNET_IP), pipeline::run),
        Next::Drop(DropReason::EgressRerouted)
    );

    // Begun out of the uplink, translated to its address: the host port would get the node's
    // own address as the source.
    let mut h = Harness::from_tables(tables_egress(Encap::Direct));
    resolve(&mut h, POD_A, &syn, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(UPLINK));
    let epoch = h.tables.route_epoch;
    h.tables = tables_multinode(Encap::Direct);
    h.tables.route_epoch = epoch + 1;
    assert_eq!(
        h.run_one(POD_A, &ack(INTERNET_IP), pipeline::run),
        Next::Drop(DropReason::EgressRerouted)
    );
}

#[test]
fn an_egress_flow_to_the_segment_is_routed_again_when_the_routes_change() {
    let mut h = Harness::from_tables(tables_egress(Encap::Direct));
    let syn = syn_from_pod_a(OUTSIDE_IP);
    resolve(&mut h, POD_A, &syn, (OUTSIDE_MAC, OUTSIDE_IP));
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(UPLINK));
    // The address becomes unreachable: the cached output is not kept across the change (a
    // NodePort reply's on-link output is; it names no route).
    let unreachable = route(OUTSIDE_IP.octets(), 32, RouteTarget::Unreachable);
    reroute(&mut h.tables, |_| true, [unreachable]);
    h.tables.route_epoch += 1;
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_A));
    assert_eq!(h.ctr.drops[DropReason::Unreachable as usize], 1);
}

#[test]
fn egress_keeps_the_full_mtu_of_a_vxlan_uplink_and_errors_to_the_underlay_come_from_the_uplink() {
    let mut h = Harness::from_tables(tables_egress(VXLAN));
    // 1500 bytes of IP: too big for the tunnel (1450), not for the underlay itself.
    let big = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, INTERNET_IP, 64, 1500 - 28);
    resolve(&mut h, POD_A, &big, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
    assert_eq!(h.run_one(POD_A, &big, pipeline::run), Next::Output(UPLINK));
    assert_eq!(h.last_frame.len(), 14 + 1500);
    // An expiring packet from outside (routed: the underlay reaches pod addresses): time
    // exceeded back to the gateway, from the uplink's address and MAC (the pods' gateway
    // address means nothing there).
    let mut h = Harness::from_tables(tables_egress(Encap::Direct));
    let dying = udp_frame(UNDERLAY_GW_MAC, UPLINK_MAC, INTERNET_IP, POD_A_IP, 1, 18);
    assert_eq!(
        h.run_one(UPLINK, &dying, pipeline::run),
        Next::Output(UPLINK)
    );
    let eth = EthernetFrame::new_checked(&h.last_frame[..]).unwrap();
    assert_eq!((eth.src(), eth.dst()), (UPLINK_MAC, UNDERLAY_GW_MAC));
    let ip = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (UPLINK_IP, INTERNET_IP));
    let icmp = &h.last_frame[14 + 20..];
    assert_eq!((icmp[0], icmp[1]), (11, 0), "time exceeded in transit");
    assert_eq!(
        &icmp[8..8 + 20],
        &dying[14..14 + 20],
        "quotes the packet's header"
    );
}

#[test]
fn a_later_fragment_going_out_before_its_first_is_counted_as_such() {
    let mut h = Harness::from_tables(tables_egress(Encap::Direct));
    let mut frag = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, INTERNET_IP, 64, 64);
    let mut ip = Ipv4Packet::new_unchecked(&mut frag[14..]);
    ip.set_dont_frag(false);
    ip.set_frag_offset(1480);
    ip.fill_checksum();
    assert_eq!(
        h.run_one(POD_A, &frag, pipeline::run),
        Next::Drop(DropReason::FragmentBeforeFirst)
    );
}

#[test]
fn a_frag_needed_about_an_egress_connection_reaches_the_pod_translated_back() {
    // Path MTU discovery through the underlay: a router answers the SNATed packet; the error
    // comes to the uplink's address and must reach the pod quoting what the pod sent.
    let mut h = Harness::from_tables(tables_egress(Encap::Direct));
    let syn = syn_from_pod_a(INTERNET_IP);
    resolve(&mut h, POD_A, &syn, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(UPLINK));
    let sent = h.last_frame.clone();
    let mut icmp = vec![3u8, 4, 0, 0, 0, 0, 0x05, 0x78]; // frag-needed, next-hop MTU 1400
    icmp.extend_from_slice(&sent[14..14 + 28]);
    let sum = podswitch_packet::checksum::checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    let error = ipv4_frame(
        UNDERLAY_GW_MAC,
        UPLINK_MAC,
        UNDERLAY_GW_IP,
        UPLINK_IP,
        64,
        IpProtocol::ICMP,
        &icmp,
    );
    assert_eq!(
        h.run_one(UPLINK, &error, pipeline::run),
        Next::Output(POD_A)
    );
    let out = h.last_frame.clone();
    let ip = Ipv4Packet::new_checked(&out[14..]).unwrap();
    assert_eq!((ip.src(), ip.dst()), (UNDERLAY_GW_IP, POD_A_IP));
    let quoted = Ipv4Packet::new_unchecked(&out[14 + 20 + 8..]);
    assert_eq!(
        (quoted.src(), quoted.dst()),
        (POD_A_IP, INTERNET_IP),
        "the quote is the pod's own packet"
    );
    let port = u16::from_be_bytes([out[14 + 20 + 8 + 20], out[14 + 20 + 8 + 21]]);
    assert_eq!(port, 41000);
    assert_eq!(
        u16::from_be_bytes([out[14 + 20 + 6], out[14 + 20 + 7]]),
        1400
    );
}

#[test]
fn a_datagram_flow_moved_into_egress_starts_again_translated() {
    // UDP on fixed ports keeps sending: the dropped packet's entry goes, so the next one is a
    // new connection, translated for the route it has now (not dropped for ever).
    let mut h = Harness::from_tables(tables_multinode(Encap::Direct));
    let dgram = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, INTERNET_IP, 64, 18);
    assert_eq!(h.run_one(POD_A, &dgram, pipeline::run), Next::Output(HOST));
    let epoch = h.tables.route_epoch;
    h.tables = tables_egress(Encap::Direct);
    h.tables.route_epoch = epoch + 1;
    assert_eq!(
        h.run_one(POD_A, &dgram, pipeline::run),
        Next::Drop(DropReason::EgressRerouted)
    );
    resolve(&mut h, POD_A, &dgram, (UNDERLAY_GW_MAC, UNDERLAY_GW_IP));
    assert_eq!(
        h.run_one(POD_A, &dgram, pipeline::run),
        Next::Output(UPLINK)
    );
    let ip = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    assert_eq!(ip.src(), UPLINK_IP, "translated");
    assert_eq!(h.ctr.drops[DropReason::EgressRerouted as usize], 1, "once");
}
