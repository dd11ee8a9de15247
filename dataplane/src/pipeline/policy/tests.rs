//! The policy stage through the whole pipeline on the standard test topology (pod A on port 1,
//! pod B on port 2, the host on port 0): isolation, replies, re-evaluation after a change,
//! Services judged at the endpoint, and what trace says.

use crate::batch::Next;
use crate::counters::DropReason;
use crate::pipeline::{self, Mode};
use crate::tables::policy::Policies;
use crate::tables::{ServiceEntry, Services, Tables};
use crate::testkit::*;
use podswitch_packet::{Ipv4Packet, TcpFlags};
use podswitch_proto::{
    BackendSpec, DirectionSpec, Ipv4Prefix, L4Protocol, PeerBlock, PolicyProtocol, PolicySpec,
    PortRange, RuleSpec, ServiceSpec,
};
use std::net::Ipv4Addr;
use std::sync::Arc;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// Pod B ingress-isolated by `shop/allow-a`, whose rule 0 lets pod A in on TCP `port`.
fn b_allows_a_on(port: u16) -> PolicySpec {
    PolicySpec {
        port: "b".into(),
        ingress: Some(DirectionSpec {
            policies: vec!["shop/allow-a".into()],
            rules: vec![RuleSpec {
                policy: 0,
                rule: 0,
                peers: Some(vec![PeerBlock {
                    cidr: Ipv4Prefix {
                        addr: POD_A_IP,
                        len: 32,
                    },
                    except: vec![],
                }]),
                ports: Some(vec![PortRange {
                    protocol: PolicyProtocol::Tcp,
                    first: port,
                    last: port,
                }]),
            }],
        }),
        egress: None,
    }
}

/// Pod A isolated both ways with no rule: `shop/deny-all`.
fn a_denies_all() -> PolicySpec {
    let deny = DirectionSpec {
        policies: vec!["shop/deny-all".into()],
        rules: vec![],
    };
    PolicySpec {
        port: "a".into(),
        ingress: Some(deny.clone()),
        egress: Some(deny),
    }
}

fn set_policies(tables: &mut Tables, specs: &[(Ipv4Addr, u16, PolicySpec)]) {
    let policies = Policies::new(
        specs.iter().map(|(ip, port, s)| (*ip, *port, s)),
        Some(GW_IP),
        &tables.policies,
    );
    tables.policies = Arc::new(policies);
    tables.policy_epoch += 1;
}

fn harness(specs: &[(Ipv4Addr, u16, PolicySpec)]) -> Harness {
    let mut tables = tables_with(true, 1500, 0);
    set_policies(&mut tables, specs);
    Harness::from_tables(tables)
}

fn notes(h: &Harness) -> Vec<String> {
    h.trace
        .entries()
        .iter()
        .map(|e| e.note.to_string())
        .collect()
}

#[test]
fn an_ingress_isolated_pod_gets_only_what_a_rule_allows_and_denials_are_counted_at_it() {
    let mut h = harness(&[(POD_B_IP, POD_B, b_allows_a_on(80))]);
    let denied = tcp_segment(POD_A_IP, 40000, POD_B_IP, 81, TcpFlags::SYN);
    assert_eq!(
        h.run_one(POD_A, &denied, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert_eq!(
        h.flows.conntrack.len(),
        0,
        "a denied connection is not tracked"
    );
    assert_eq!(h.ctr.port(usize::from(POD_B)).ingress_denied, 1);
    assert_eq!(h.ctr.drops[DropReason::PolicyDenied as usize], 1);

    let allowed = tcp_segment(POD_A_IP, 40001, POD_B_IP, 80, TcpFlags::SYN);
    assert_eq!(
        h.run_one(POD_A, &allowed, pipeline::run),
        Next::Output(POD_B)
    );
    assert_eq!(h.flows.conntrack.len(), 1);
    assert!(
        notes(&h)
            .iter()
            .any(|n| n.contains("shop/allow-a ingress rule 0")),
        "{:?}",
        notes(&h)
    );
}

#[test]
fn replies_pass_an_isolated_initiator_and_the_node_reaches_every_pod() {
    // A may not be reached by anyone, B lets A in on 80: A's connection and its replies work.
    let mut h = harness(&[
        (POD_B_IP, POD_B, b_allows_a_on(80)),
        (POD_A_IP, POD_A, {
            let mut s = a_denies_all();
            s.egress = None;
            s
        }),
    ]);
    let syn = tcp_segment(POD_A_IP, 40000, POD_B_IP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_B));
    let syn_ack = tcp_segment(POD_B_IP, 80, POD_A_IP, 40000, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(
        h.run_one(POD_B, &syn_ack, pipeline::run),
        Next::Output(POD_A)
    );
    // B opening its own connection to A is a new connection into A: denied.
    let b_to_a = tcp_segment(POD_B_IP, 40000, POD_A_IP, 22, TcpFlags::SYN);
    assert_eq!(
        h.run_one(POD_B, &b_to_a, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    // The node (source: the gateway address, through the host port) reaches A.
    let probe = tcp_syn_frame(HOST_MAC, GW_MAC, GW_IP, POD_A_IP);
    assert_eq!(h.run_one(HOST, &probe, pipeline::run), Next::Output(POD_A));
}

#[test]
fn egress_isolation_is_checked_at_the_source() {
    let mut h = harness(&[(POD_A_IP, POD_A, a_denies_all())]);
    let syn = tcp_segment(POD_A_IP, 40000, POD_B_IP, 80, TcpFlags::SYN);
    assert_eq!(
        h.run_one(POD_A, &syn, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert_eq!(h.ctr.port(usize::from(POD_A)).egress_denied, 1);
    assert!(
        notes(&h)
            .iter()
            .any(|n| n.contains("egress: DENIED") && n.contains("shop/deny-all")),
        "{:?}",
        notes(&h)
    );
}

#[test]
fn a_policy_change_stops_an_established_connection_both_ways_and_a_later_one_resumes_it() {
    let mut h = harness(&[]);
    let syn = tcp_segment(POD_A_IP, 40000, POD_B_IP, 80, TcpFlags::SYN);
    let ack = tcp_segment(POD_A_IP, 40000, POD_B_IP, 80, TcpFlags::ACK);
    let reply = tcp_segment(POD_B_IP, 80, POD_A_IP, 40000, TcpFlags::ACK);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.run_one(POD_B, &reply, pipeline::run), Next::Output(POD_A));

    set_policies(&mut h.tables, &[(POD_B_IP, POD_B, b_allows_a_on(443))]);
    assert_eq!(
        h.run_one(POD_B, &reply, pipeline::run),
        Next::Drop(DropReason::PolicyDenied),
        "the reply of a connection the new policy does not allow"
    );
    assert_eq!(
        h.run_one(POD_A, &ack, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert!(
        notes(&h)
            .iter()
            .any(|n| n.contains("checked again after a policy change: denied")),
        "{:?}",
        notes(&h)
    );

    set_policies(&mut h.tables, &[(POD_B_IP, POD_B, b_allows_a_on(80))]);
    assert_eq!(h.run_one(POD_A, &ack, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.run_one(POD_B, &reply, pipeline::run), Next::Output(POD_A));
    assert_eq!(
        h.flows.conntrack.len(),
        1,
        "the same connection, never a second one"
    );
}

#[test]
fn a_service_connection_is_judged_at_its_endpoint_not_at_the_vip() {
    let spec = ServiceSpec::cluster_ip(
        "shop/web:http",
        L4Protocol::Tcp,
        VIP,
        80,
        vec![BackendSpec::ready(POD_B_IP, 8080)],
    );
    let mut tables = tables_with(true, 1500, 0);
    tables.services = Arc::new(Services::new(
        vec![Arc::new(ServiceEntry::new(1, &spec))],
        None,
    ));
    set_policies(&mut tables, &[(POD_B_IP, POD_B, b_allows_a_on(8080))]);
    let mut h = Harness::from_tables(tables);
    let syn = tcp_segment(POD_A_IP, 40000, VIP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_B));

    set_policies(&mut h.tables, &[(POD_B_IP, POD_B, b_allows_a_on(80))]);
    let syn = tcp_segment(POD_A_IP, 40001, VIP, 80, TcpFlags::SYN);
    assert_eq!(
        h.run_one(POD_A, &syn, pipeline::run),
        Next::Drop(DropReason::PolicyDenied),
        "port 80 is the VIP's; the endpoint listens on 8080"
    );
}

#[test]
fn a_dry_run_explains_a_denial_and_an_allowance_and_creates_nothing() {
    let mut h = harness(&[(POD_B_IP, POD_B, b_allows_a_on(80))]);
    h.mode = Mode::DryRun;
    let syn = tcp_segment(POD_A_IP, 40000, POD_B_IP, 22, TcpFlags::SYN);
    assert_eq!(
        h.run_one(POD_A, &syn, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert!(
        notes(&h).iter().any(|n| n.starts_with("denied")
            && n.contains("ingress: DENIED")
            && n.contains("shop/allow-a")),
        "{:?}",
        notes(&h)
    );
    let syn = tcp_segment(POD_A_IP, 40000, POD_B_IP, 80, TcpFlags::SYN);
    assert_eq!(h.run_one(POD_A, &syn, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.flows.conntrack.len(), 0);
}

/// A UDP datagram from A to B as a first fragment (ports 5000 → `dport`) and a later one
/// (offset 128, IP id `id`).
fn udp_fragments(dport: u16, id: u16) -> (Vec<u8>, Vec<u8>) {
    let mut first = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 120);
    let mut later = ipv4_frame(
        POD_A_MAC,
        GW_MAC,
        POD_A_IP,
        POD_B_IP,
        64,
        podswitch_packet::IpProtocol::UDP,
        &[7u8; 40],
    );
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut first[14..]);
        ip.set_dont_frag(false);
        ip.set_more_frags(true);
        ip.set_ident(id);
        let ihl = ip.header_len();
        ip.fill_checksum();
        let udp = &mut first[14 + ihl..];
        udp[2..4].copy_from_slice(&dport.to_be_bytes());
        udp[6..8].copy_from_slice(&[0, 0]); // no checksum: the datagram is not whole here
    }
    {
        let mut ip = Ipv4Packet::new_unchecked(&mut later[14..]);
        ip.set_dont_frag(false);
        ip.set_frag_offset(128);
        ip.set_ident(id);
        ip.fill_checksum();
    }
    (first, later)
}

/// B ingress-isolated by `shop/dns`, whose rule lets anyone in on UDP 53.
fn b_allows_udp_53() -> PolicySpec {
    let mut spec = b_allows_a_on(53);
    if let Some(d) = spec.ingress.as_mut() {
        d.policies = vec!["shop/dns".into()];
        d.rules[0].peers = None;
        d.rules[0].ports = Some(vec![PortRange {
            protocol: PolicyProtocol::Udp,
            first: 53,
            last: 53,
        }]);
    }
    spec
}

#[test]
fn later_fragments_follow_an_allowed_first_fragment_and_nothing_else() {
    let mut h = harness(&[(POD_B_IP, POD_B, b_allows_udp_53())]);
    // Alone, a later fragment has no ports: a rule with ports cannot allow it.
    let (first, later) = udp_fragments(53, 7);
    assert_eq!(
        h.run_one(POD_A, &later, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert_eq!(h.run_one(POD_A, &first, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.run_one(POD_A, &later, pipeline::run), Next::Output(POD_B));
    // A second datagram of the now established flow: its fragments pass too.
    let (first, later) = udp_fragments(53, 8);
    assert_eq!(h.run_one(POD_A, &first, pipeline::run), Next::Output(POD_B));
    assert_eq!(h.run_one(POD_A, &later, pipeline::run), Next::Output(POD_B));
    // A datagram to a port no rule allows: its first fragment is denied and so is the rest.
    let (first, later) = udp_fragments(54, 9);
    assert_eq!(
        h.run_one(POD_A, &first, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert_eq!(
        h.run_one(POD_A, &later, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
}

#[test]
fn an_icmp_error_about_a_stopped_connection_is_dropped_with_it() {
    let mut h = harness(&[]);
    let datagram = udp_frame(POD_A_MAC, GW_MAC, POD_A_IP, POD_B_IP, 64, 20);
    assert_eq!(
        h.run_one(POD_A, &datagram, pipeline::run),
        Next::Output(POD_B)
    );
    set_policies(
        &mut h.tables,
        &[(POD_B_IP, POD_B, {
            let mut s = a_denies_all();
            s.port = "b".into();
            s.egress = None;
            s
        })],
    );
    assert_eq!(
        h.run_one(POD_A, &datagram, pipeline::run),
        Next::Drop(DropReason::PolicyDenied),
        "the connection is stopped"
    );
    // B's port unreachable about that datagram.
    let err = port_unreachable_from_b(&datagram);
    assert_eq!(
        h.run_one(POD_B, &err, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    // And a stopped connection's packets are dropped at the lookup: no second check.
    assert_eq!(
        h.run_one(POD_A, &datagram, pipeline::run),
        Next::Drop(DropReason::PolicyDenied)
    );
    assert!(
        notes(&h)
            .iter()
            .any(|n| n.contains("a policy change stopped: still denied")),
        "{:?}",
        notes(&h)
    );
}
