//! Services in the dataplane alone, fed `set_service` ops directly (no control): real pods,
//! real kernel TCP and UDP through a VIP, the node's own namespace reaching a ClusterIP through
//! the host port. The full path through manifests and control is `services.rs`; the backend
//! servers and clients are that module's harness (`podswitch_tests::services`).

use podswitch_proto::{BackendSpec, Frontend, FrontendKind, L4Protocol, NodeSpec, Op, ServiceSpec};
use podswitch_tests::services::{by_backend, connect, connect_many, udp_ask, TcpServer, UdpServer};
use podswitch_tests::*;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);

/// A node whose SetNode carries a Service CIDR, so the host routes it into the switch.
fn node() -> Node {
    let node = Node::bare(&[]);
    let mut ops = Node::base_ops();
    if let Op::SetNode(n) = &mut ops[0] {
        *n = NodeSpec {
            service_cidr: Some("10.96.0.0/16".parse().unwrap()),
            node_port_ip: Some(Ipv4Addr::new(10, 96, 255, 254)),
            ..n.clone()
        };
    }
    node.apply(ops).unwrap();
    node
}

/// Service port `default/web:http` at VIP:80, endpoints `backends` on port 8080.
fn service(protocol: L4Protocol, backends: &[Ipv4Addr]) -> Op {
    let backends = backends
        .iter()
        .map(|&ip| BackendSpec::ready(ip, 8080))
        .collect();
    Op::SetService(ServiceSpec::cluster_ip(
        "default/web:http",
        protocol,
        VIP,
        80,
        backends,
    ))
}

fn vip() -> SocketAddr {
    SocketAddr::from((VIP, 80))
}

#[test]
fn tcp_to_a_vip_is_balanced_over_both_backends_and_replies_come_from_the_vip() {
    if !root_or_skip("tcp_to_a_vip_is_balanced_over_both_backends_and_replies_come_from_the_vip") {
        return;
    }
    let node = node();
    let client = node.add_pod(2);
    let (a, b) = (node.add_pod(3), node.add_pod(4));
    let _servers = (
        TcpServer::start(&a.ns, 8080, "a"),
        TcpServer::start(&b.ns, 8080, "b"),
    );
    node.apply(vec![service(L4Protocol::Tcp, &[a.ip, b.ip])])
        .unwrap();
    let answers: Vec<_> = connect_many(&client.ns, vip(), 300)
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    for answer in &answers {
        assert_eq!(answer.remote, vip(), "the client's peer is the VIP");
        assert_eq!(
            answer.seen_peer.ip(),
            client.ip,
            "backend saw {}",
            answer.seen_peer
        );
    }
    let hits = by_backend(&answers);
    let (to_a, to_b) = (hits.get("a").copied(), hits.get("b").copied());
    assert!(
        to_a.is_some_and(|n| n >= 90) && to_b.is_some_and(|n| n >= 90),
        "split {hits:?} of 300"
    );
}

#[test]
fn the_node_reaches_a_cluster_ip_through_the_host_port() {
    if !root_or_skip("the_node_reaches_a_cluster_ip_through_the_host_port") {
        return;
    }
    let node = node();
    let a = node.add_pod(3);
    let _server = TcpServer::start(&a.ns, 8080, "a");
    node.apply(vec![service(L4Protocol::Tcp, &[a.ip])]).unwrap();
    let answer = connect(&node.ns, vip()).unwrap().answer;
    assert_eq!(answer.remote, vip());
    assert_eq!(answer.backend, "a");
}

#[test]
fn udp_to_a_vip_is_answered_from_the_vip() {
    if !root_or_skip("udp_to_a_vip_is_answered_from_the_vip") {
        return;
    }
    let node = node();
    let client = node.add_pod(2);
    let a = node.add_pod(3);
    let _server = UdpServer::start(&a.ns, 8080, "a");
    node.apply(vec![service(L4Protocol::Udp, &[a.ip])]).unwrap();
    let answer = udp_ask(&client.ns, vip(), 3).unwrap();
    assert_eq!(answer.backend, "a");
    assert_eq!(answer.remote, vip(), "the answer comes from the VIP");
}

#[test]
fn trace_conntrack_and_services_explain_a_connection_through_the_vip() {
    if !root_or_skip("trace_conntrack_and_services_explain_a_connection_through_the_vip") {
        return;
    }
    let node = node();
    let client = node.add_pod(2);
    let a = node.add_pod(3);
    let _server = TcpServer::start(&a.ns, 8080, "a");
    node.apply(vec![service(L4Protocol::Tcp, &[a.ip])]).unwrap();

    let trace = node.podswitchctl(&["trace", "--in-port", &client.port, "--dst", "10.96.0.10"]);
    assert!(
        trace.contains("default/web:http") && trace.contains(&format!("{}:8080", a.ip)),
        "{trace}"
    );
    assert!(
        trace.contains(&format!("verdict: output {}", a.port)),
        "{trace}"
    );
    let empty = node.podswitchctl(&["-o", "json", "conntrack"]);
    let v: serde_json::Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(v["total"], 0, "trace created no connection: {empty}");

    connect(&client.ns, vip()).unwrap();
    let dump = node.podswitchctl(&["-o", "json", "conntrack", "--service", "default/web:http"]);
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let e = &v["entries"][0];
    assert_eq!(e["original"]["dst"], "10.96.0.10", "{dump}");
    assert_eq!(e["reply"]["src"], a.ip.to_string(), "{dump}");
    let services = node.podswitchctl(&["services"]);
    assert!(
        services.contains("default/web:http") && services.contains("ready"),
        "{services}"
    );
}

#[test]
fn a_nodeport_service_programs_the_node_and_sigterm_removes_the_table() {
    if !root_or_skip("a_nodeport_service_programs_the_node_and_sigterm_removes_the_table") {
        return;
    }
    use podswitch_netlink::Nftables;
    let mut node = node();
    let a = node.add_pod(3);
    let _server = TcpServer::start(&a.ns, 8080, "a");
    let Op::SetService(mut spec) = service(L4Protocol::Tcp, &[a.ip]) else {
        unreachable!()
    };
    spec.frontends.push(Frontend {
        kind: FrontendKind::NodePort,
        ip: Ipv4Addr::UNSPECIFIED,
        port: 30080,
    });
    node.apply(vec![Op::SetService(spec)]).unwrap();
    let has_table = |node: &Node| {
        node.ns
            .enter(|| Nftables::new().unwrap().has_nodeport_table().unwrap())
    };
    assert!(has_table(&node), "the NodePort table is there");
    // The node's own connection to one of its addresses on the NodePort reaches the backend.
    run(&[
        "ip",
        "-n",
        &node.ns.name,
        "addr",
        "add",
        "192.0.2.10/32",
        "dev",
        "lo",
    ]);
    let node_address = SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 30080));
    assert_eq!(connect(&node.ns, node_address).unwrap().answer.backend, "a");

    let pid = node.daemon_pid().unwrap();
    run(&["kill", "-TERM", &pid.to_string()]);
    let exit = node.daemon_exit_wait(Duration::from_secs(10));
    assert!(
        exit.is_some_and(|s| s.success()),
        "clean exit: {exit:?}\n{}",
        node.log()
    );
    assert!(!has_table(&node), "a clean exit removes the NodePort table");
}
