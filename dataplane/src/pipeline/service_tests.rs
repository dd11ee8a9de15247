//! The Service path through the whole pipeline on the standard test topology: DNAT of a new
//! connection, reverse NAT of its reply from the entry conntrack made, refusal without
//! endpoints, hairpin SNAT, and a dry run that changes nothing.

use crate::batch::{Next, Track};
use crate::counters::{DropReason, Event};
use crate::pipeline::{self, Mode};
use crate::tables::{ServiceEntry, Services};
use crate::testkit::*;
use podswitch_packet::{Ipv4Packet, TcpFlags, TcpPacket};
use podswitch_proto::{BackendSpec, L4Protocol, ServiceSpec};
use std::net::Ipv4Addr;
use std::sync::Arc;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

fn harness(backends: &[Ipv4Addr]) -> Harness {
    let backends = backends
        .iter()
        .map(|&ip| BackendSpec::ready(ip, 8080))
        .collect();
    let spec = ServiceSpec::cluster_ip("shop/web:http", L4Protocol::Tcp, VIP, 80, backends);
    let mut tables = tables_with(true, 1500, 0);
    tables.services = Arc::new(Services::new(
        vec![Arc::new(ServiceEntry::new(1, &spec))],
        None,
    ));
    Harness::from_tables(tables)
}

fn headers(frame: &[u8]) -> (Ipv4Addr, u16, Ipv4Addr, u16) {
    let ip = Ipv4Packet::new_checked(&frame[14..]).unwrap();
    assert!(ip.verify_checksum(), "IP checksum");
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert!(t.verify_checksum(ip.src(), ip.dst()), "TCP checksum");
    (ip.src(), t.src_port(), ip.dst(), t.dst_port())
}

#[test]
fn a_connection_to_the_vip_is_dnatted_and_its_reply_reverse_natted() {
    let mut h = harness(&[POD_B_IP]);
    let syn = tcp_segment(POD_A_IP, 40000, VIP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_B));
    assert_eq!(headers(&h.last_frame), (POD_A_IP, 40000, POD_B_IP, 8080));
    assert_eq!(h.flows.conntrack.len(), 1);

    let syn_ack = tcp_segment(
        POD_B_IP,
        8080,
        POD_A_IP,
        40000,
        TcpFlags::SYN | TcpFlags::ACK,
    );
    assert_eq!(
        h.run_one(POD_B, &syn_ack, pipeline::run),
        Next::Output(POD_A)
    );
    assert_eq!(headers(&h.last_frame), (VIP, 80, POD_A_IP, 40000));

    // The third packet finds the entry and its cached output.
    let ack = tcp_segment(POD_A_IP, 40000, VIP, 80, TcpFlags::ACK);
    let meta = h.run_meta(POD_A, &ack, pipeline::run);
    assert_eq!(meta.next, Next::Output(POD_B));
    assert!(
        matches!(
            meta.track,
            Track::Hit {
                cache_hop: false,
                ..
            }
        ),
        "{:?}",
        meta.track
    );
    assert_eq!(headers(&h.last_frame), (POD_A_IP, 40000, POD_B_IP, 8080));
}

#[test]
fn a_service_without_endpoints_answers_a_syn_with_a_reset_from_the_vip() {
    let mut h = harness(&[]);
    let syn = tcp_segment(POD_A_IP, 40000, VIP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_A));
    let (src, sport, dst, dport) = headers(&h.last_frame);
    assert_eq!((src, sport, dst, dport), (VIP, 80, POD_A_IP, 40000));
    let ip = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    let t = TcpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(t.flags(), TcpFlags::RST | TcpFlags::ACK);
    assert_eq!(t.ack_no(), 1, "SEG.SEQ (0) + 1 for the SYN");
    assert_eq!(h.ctr.drops[DropReason::NoEndpoints as usize], 1);
    assert_eq!(h.ctr.events[Event::TcpResetSent as usize], 1);
    assert_eq!(
        h.flows.conntrack.len(),
        0,
        "a refused connection is not tracked"
    );
}

#[test]
fn a_backend_reaching_its_own_service_is_snatted_to_the_gateway() {
    let mut h = harness(&[POD_B_IP]);
    let syn = tcp_segment(POD_B_IP, 41000, VIP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_B, &syn, pipeline::run), Next::Output(POD_B));
    assert_eq!(headers(&h.last_frame), (GW_IP, 41000, POD_B_IP, 8080));
    let syn_ack = tcp_segment(POD_B_IP, 8080, GW_IP, 41000, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        h.run_one(POD_B, &syn_ack, pipeline::run),
        Next::Output(POD_B)
    );
    assert_eq!(headers(&h.last_frame), (VIP, 80, POD_B_IP, 41000));
}

#[test]
fn a_dry_run_decides_like_forwarding_but_creates_nothing() {
    let mut h = harness(&[POD_B_IP]);
    h.mode = Mode::DryRun;
    let syn = tcp_segment(POD_A_IP, 40000, VIP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.flows.conntrack.len(), 0);
    let notes: Vec<String> = h
        .trace
        .entries()
        .iter()
        .map(|e| e.note.to_string())
        .collect();
    assert!(
        notes
            .iter()
            .any(|n| n.contains("shop/web:http") && n.contains("10.244.1.3:8080")),
        "{notes:?}"
    );
}

#[test]
fn an_untracked_segment_from_an_endpoint_is_held_back_not_leaked_untranslated() {
    let mut h = harness(&[POD_B_IP]);
    let stray = tcp_segment(POD_B_IP, 8080, POD_A_IP, 40000, TcpFlags::ACK);
    assert_eq!(
        h.run_one(POD_B, &stray, pipeline::run),
        Next::Drop(DropReason::UntrackedEndpointReply)
    );
}

fn udp_harness() -> Harness {
    let mut h = harness(&[POD_B_IP]);
    let mut spec = (*h.tables.services.iter().next().unwrap().spec).clone();
    spec.protocol = L4Protocol::Udp;
    spec.frontends[0].port = 5000;
    h.tables.services = Arc::new(Services::new(
        vec![Arc::new(ServiceEntry::new(1, &spec))],
        None,
    ));
    h
}

#[test]
fn a_port_unreachable_from_the_backend_reaches_the_client_from_the_vip() {
    let mut h = udp_harness();
    let dgram = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, VIP, 64, 10);
    assert_eq!(h.run_one(POD_A, &dgram, pipeline::run), Next::Output(POD_B));
    // What the backend's kernel answers: port unreachable quoting the datagram it got.
    let got = h.last_frame.clone();
    let err = port_unreachable_from_b(&got);
    assert_eq!(h.run_one(POD_B, &err, pipeline::run), Next::Output(POD_A));
    let ip = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.src(), ip.dst()),
        (VIP, POD_A_IP),
        "from the VIP to the client"
    );
    let quoted = Ipv4Packet::new_unchecked(&ip.payload()[8..]);
    assert_eq!(
        (quoted.src(), quoted.dst()),
        (POD_A_IP, VIP),
        "about the datagram it sent"
    );
    assert_eq!(&quoted.payload()[2..4], &5000u16.to_be_bytes());
    assert_eq!(podswitch_packet::checksum::checksum(ip.payload()), 0);
}

#[test]
fn later_fragments_follow_their_first_fragment_to_the_endpoint() {
    let mut h = udp_harness();
    let mut first = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, VIP, 64, 120);
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut first[14..]);
        ip.set_dont_frag(false);
        ip.set_more_frags(true);
        ip.fill_checksum();
    }
    let mut later = ipv4_frame(
        POD_A_MAC,
        GW_MAC,
        POD_A_IP,
        VIP,
        64,
        podswitch_packet::IpProtocol::UDP,
        &[7u8; 40],
    );
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut later[14..]);
        ip.set_dont_frag(false);
        ip.set_frag_offset(128);
        ip.fill_checksum();
    }
    // Before its first fragment, a later one cannot be matched: dropped, counted.
    assert_eq!(
        h.run_one(POD_A, &later, pipeline::run),
        Next::Drop(DropReason::FragmentBeforeFirst)
    );
    assert_eq!(h.run_one(POD_A, &first, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.run_one(POD_A, &later, pipeline::run), Next::Output(POD_B));
    let ip = Ipv4Packet::new_checked(&h.last_frame[14..]).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.dst(), POD_B_IP);
}

#[test]
fn a_full_conntrack_drops_new_connections_and_keeps_the_old_ones() {
    let mut h = harness(&[POD_B_IP]);
    h.flows = crate::pipeline::FlowState::new(16, 16);
    let mut admitted = 0;
    for port in 1000..1040 {
        let syn = tcp_segment(POD_A_IP, port, VIP, 80, TcpFlags::SYN);
        match h.run_one(POD_A, &syn, pipeline::run) {
            Next::Output(POD_B) => admitted += 1,
            Next::Drop(DropReason::ConntrackFull) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!((8..=16).contains(&admitted), "{admitted} admitted");
    assert_eq!(
        h.ctr.drops[DropReason::ConntrackFull as usize],
        40 - admitted
    );
    let ack = tcp_segment(POD_A_IP, 1000, VIP, 80, TcpFlags::ACK);
    assert_eq!(
        h.run_one(POD_A, &ack, pipeline::run),
        Next::Output(POD_B),
        "old flow goes on"
    );
}

/// The stage works on groups of packets, a level of lookups at a time: a batch of several
/// groups, new Service connections mixed with packets it must leave alone, must come out
/// as if each packet had been alone.
#[test]
fn a_batch_of_several_groups_translates_each_packet_as_if_alone() {
    let backends = [POD_B_IP, POD_A_IP, Ipv4Addr::new(10, 244, 1, 9)];
    let frames: Vec<Vec<u8>> = (0..70u16)
        .map(|i| match i % 5 {
            // Not a Service: a pod's own address, and a VIP port no Service has.
            3 => tcp_segment(POD_A_IP, 2000 + i, POD_B_IP, 80, TcpFlags::SYN),
            4 => tcp_segment(POD_A_IP, 2000 + i, VIP, 81, TcpFlags::SYN),
            _ => tcp_segment(POD_A_IP, 2000 + i, VIP, 80, TcpFlags::SYN),
        })
        .collect();
    let alone: Vec<(Next, Vec<u8>)> = frames
        .iter()
        .map(|f| {
            let mut h = harness(&backends);
            let next = h.run_one(POD_A, f, pipeline::run);
            (next, h.last_frame)
        })
        .collect();
    // Alone, the Service's connections went to every backend (10.244.1.9 is no pod: its
    // connections are answered with an ICMP error), so a packet given another's pick fails.
    let outcomes: std::collections::HashSet<_> = alone
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 < 3)
        .map(|(_, (next, f))| (format!("{next:?}"), f.len(), f[30..34].to_vec()))
        .collect();
    assert_eq!(outcomes.len(), backends.len(), "{outcomes:?}");
    let mut h = harness(&backends);
    h.pool = crate::buffer::Pool::new(128);
    let mut batch = crate::batch::Batch::new();
    batch.in_port = POD_A;
    for f in &frames {
        let mut buf = h.pool.get().unwrap();
        buf.fill(f);
        batch.push(buf).unwrap();
    }
    let mut cx = pipeline::Ctx::new(
        &h.tables,
        &h.flows,
        &mut h.ctr,
        &mut h.trace,
        &mut h.state,
        h.now,
        Mode::Forward,
    );
    pipeline::run(&mut batch, &mut cx);
    for (i, (p, (next, frame))) in batch.iter().zip(&alone).enumerate() {
        assert_eq!(p.meta.next, *next, "packet {i}");
        if let Next::Output(_) = next {
            assert_eq!(p.buf.frame(), &frame[..], "packet {i}");
        }
    }
}
