//! One test per drop reason of l2 and l3 that had none: each builds the situation the reason
//! names on the standard test topology (`testkit`) and checks the verdict, that the reason was
//! counted exactly once, that nothing else was, and that no frame went out.

use crate::batch::{Next, PortId};
use crate::counters::DropReason;
use crate::pipeline;
use crate::tables::Tables;
use crate::testkit::*;
use podswitch_packet::{Ipv4Packet, ETHERNET_HEADER_LEN};
use std::net::Ipv4Addr;

/// Runs `frame`, received on `port`, through the whole pipeline with `tables`; asserts it was
/// dropped for `reason` alone, once.
fn assert_dropped_for(tables: Tables, port: PortId, frame: &[u8], reason: DropReason) {
    let mut h = Harness::from_tables(tables);
    let next = h.run_one(port, frame, pipeline::run);
    assert_eq!(next, Next::Drop(reason));
    assert_eq!(
        h.ctr.drops[reason as usize],
        1,
        "{} counted once",
        reason.name()
    );
    assert_eq!(
        h.ctr.drops.iter().sum::<u64>(),
        1,
        "no other reason counted: {:?}",
        h.ctr.drops
    );
    assert!(h.last_frame.is_empty(), "nothing was sent for it");
}

fn standard() -> Tables {
    tables_with(true, 1500, 0)
}

#[test]
fn packet_routed_back_out_of_its_input_port_is_dropped_as_hairpin() {
    // Pod A addressing itself through the gateway: the route leads back to pod A's port.
    let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_A_IP, 64, 18);
    assert_dropped_for(standard(), POD_A, &f, DropReason::Hairpin);
}

#[test]
fn packet_for_the_host_without_a_host_port_is_dropped_as_no_host_port() {
    let mut t = standard();
    t.host_port = None;
    std::sync::Arc::make_mut(&mut t.ports)[usize::from(HOST)] = None;
    let outside = Ipv4Addr::new(192, 0, 2, 9);
    let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, outside, 64, 18);
    assert_dropped_for(t, POD_A, &f, DropReason::NoHostPort);
}

#[test]
fn oversized_packet_without_df_is_dropped_as_mtu_exceeded_without_icmp() {
    let mut f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 1200);
    let mut ip = Ipv4Packet::new_unchecked(&mut f[ETHERNET_HEADER_LEN..]);
    ip.set_dont_frag(false);
    ip.fill_checksum();
    // The switch does not fragment, and without DF there is no frag-needed to send back.
    assert_dropped_for(
        tables_with(true, 1000, 0),
        POD_A,
        &f,
        DropReason::MtuExceeded,
    );
}

#[test]
fn every_frame_is_dropped_as_no_node_before_the_node_is_configured() {
    let mut t = standard();
    t.node = None;
    let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
    assert_dropped_for(t.clone(), POD_A, &f, DropReason::NoNode);
    let arp = arp_request(POD_A_MAC, POD_A_IP, GW_IP);
    assert_dropped_for(t, POD_A, &arp, DropReason::NoNode);
}

#[test]
fn route_to_a_removed_port_is_dropped_as_output_port_gone() {
    // The FIB still routes pod B's /32 to its port, whose entry is gone.
    let mut t = standard();
    std::sync::Arc::make_mut(&mut t.ports)[usize::from(POD_B)] = None;
    let f = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 18);
    assert_dropped_for(t, POD_A, &f, DropReason::OutputPortGone);
}
