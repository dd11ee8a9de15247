//! Services in the dataplane alone, fed `set_service` ops directly (no control): real pods,
//! real kernel TCP and UDP through a VIP, the node's own namespace reaching a ClusterIP through
//! the host port. The full path through manifests and control is `services.rs`.

use podswitch_proto::{
    Algorithm, BackendSpec, Frontend, FrontendKind, L4Protocol, NodeSpec, Op, ServiceSpec,
};
use podswitch_tests::*;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
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

fn service(protocol: L4Protocol, backends: &[Ipv4Addr]) -> Op {
    Op::SetService(ServiceSpec {
        name: "default/web:http".into(),
        protocol,
        frontends: vec![Frontend {
            kind: FrontendKind::ClusterIp,
            ip: VIP,
            port: 80,
        }],
        backends: backends
            .iter()
            .map(|&ip| BackendSpec {
                ip,
                port: 8080,
                ready: true,
                serving: true,
                terminating: false,
                local: true,
                target: None,
            })
            .collect(),
        algorithm: Algorithm::Maglev,
        affinity_timeout_secs: None,
        internal_local: false,
        external_local: false,
    })
}

/// A TCP server in `pod` answering each connection with `name peer`.
fn tcp_server(ns: &Netns, ip: Ipv4Addr, name: &'static str) {
    let listener = ns
        .enter(|| TcpListener::bind(SocketAddr::from((ip, 8080))))
        .unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let peer = conn.peer_addr().map(|p| p.to_string()).unwrap_or_default();
            let _ = conn.write_all(format!("{name} {peer}\n").as_bytes());
        }
    });
}

/// Connects from `ns` to VIP:80 and returns the server's line and the local view of the peer.
fn ask(ns: &Netns) -> (String, SocketAddr) {
    let mut c = ns
        .enter(|| TcpStream::connect_timeout(&SocketAddr::from((VIP, 80)), Duration::from_secs(5)))
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let peer = c.peer_addr().unwrap();
    let mut line = String::new();
    c.read_to_string(&mut line).unwrap();
    (line.trim().to_string(), peer)
}

#[test]
fn tcp_to_a_vip_is_balanced_over_both_backends_and_replies_come_from_the_vip() {
    if !root_or_skip("tcp_to_a_vip_is_balanced_over_both_backends_and_replies_come_from_the_vip") {
        return;
    }
    let node = node();
    let client = node.add_pod(2);
    let (a, b) = (node.add_pod(3), node.add_pod(4));
    tcp_server(&a.ns, a.ip, "a");
    tcp_server(&b.ns, b.ip, "b");
    node.apply(vec![service(L4Protocol::Tcp, &[a.ip, b.ip])])
        .unwrap();
    let mut hits = [0u32; 2];
    for _ in 0..300 {
        let (line, peer) = ask(&client.ns);
        assert_eq!(
            peer,
            SocketAddr::from((VIP, 80)),
            "the client's peer is the VIP"
        );
        let (who, seen) = line.split_once(' ').unwrap();
        assert!(
            seen.starts_with(&format!("{}:", client.ip)),
            "backend saw {seen}"
        );
        hits[usize::from(who == "b")] += 1;
    }
    assert!(hits[0] >= 90 && hits[1] >= 90, "split {hits:?} of 300");
}

#[test]
fn the_node_reaches_a_cluster_ip_through_the_host_port() {
    if !root_or_skip("the_node_reaches_a_cluster_ip_through_the_host_port") {
        return;
    }
    let node = node();
    let a = node.add_pod(3);
    tcp_server(&a.ns, a.ip, "a");
    node.apply(vec![service(L4Protocol::Tcp, &[a.ip])]).unwrap();
    let (line, peer) = ask(&node.ns);
    assert_eq!(peer, SocketAddr::from((VIP, 80)));
    assert!(line.starts_with("a "), "{line}");
}

#[test]
fn udp_to_a_vip_is_answered_from_the_vip() {
    if !root_or_skip("udp_to_a_vip_is_answered_from_the_vip") {
        return;
    }
    let node = node();
    let client = node.add_pod(2);
    let a = node.add_pod(3);
    let server =
        a.ns.enter(|| UdpSocket::bind(SocketAddr::from((a.ip, 8080))))
            .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        while let Ok((n, from)) = server.recv_from(&mut buf) {
            let _ = server.send_to(&buf[..n], from);
        }
    });
    node.apply(vec![service(L4Protocol::Udp, &[a.ip])]).unwrap();
    let sock = client
        .ns
        .enter(|| UdpSocket::bind(SocketAddr::from((client.ip, 0))))
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.send_to(b"ping", SocketAddr::from((VIP, 80))).unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    assert_eq!(
        from,
        SocketAddr::from((VIP, 80)),
        "the answer comes from the VIP"
    );
}

/// `podswitchctl VERB...` against the node's daemon; its stdout.
fn ctl(node: &Node, args: &[&str]) -> String {
    let out = std::process::Command::new(binary("podswitchctl"))
        .arg("--socket")
        .arg(&node.socket)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "podswitchctl {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn trace_conntrack_and_services_explain_a_connection_through_the_vip() {
    if !root_or_skip("trace_conntrack_and_services_explain_a_connection_through_the_vip") {
        return;
    }
    let node = node();
    let client = node.add_pod(2);
    let a = node.add_pod(3);
    tcp_server(&a.ns, a.ip, "a");
    node.apply(vec![service(L4Protocol::Tcp, &[a.ip])]).unwrap();

    let trace = ctl(
        &node,
        &["trace", "--in-port", &client.port, "--dst", "10.96.0.10"],
    );
    assert!(
        trace.contains("default/web:http") && trace.contains(&format!("{}:8080", a.ip)),
        "{trace}"
    );
    assert!(
        trace.contains(&format!("verdict: output {}", a.port)),
        "{trace}"
    );
    let empty = ctl(&node, &["-o", "json", "conntrack"]);
    let v: serde_json::Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(v["total"], 0, "trace created no connection: {empty}");

    let _ = ask(&client.ns);
    let dump = ctl(
        &node,
        &["-o", "json", "conntrack", "--service", "default/web:http"],
    );
    let v: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let e = &v["entries"][0];
    assert_eq!(e["original"]["dst"], "10.96.0.10", "{dump}");
    assert_eq!(e["reply"]["src"], a.ip.to_string(), "{dump}");
    let services = ctl(&node, &["services"]);
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
    tcp_server(&a.ns, a.ip, "a");
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
    let mut c = node
        .ns
        .enter(|| {
            TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::new(192, 0, 2, 10), 30080)),
                Duration::from_secs(5),
            )
        })
        .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut line = String::new();
    c.read_to_string(&mut line).unwrap();
    assert!(line.starts_with("a "), "{line}");

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
