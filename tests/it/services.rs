//! Services with real kernel traffic: pods attached through the CNI plugin, Services and
//! EndpointSlices applied through podswitch-control, and real TCP and UDP sockets talking to
//! the virtual IPs. The switch is kube-proxy here: it picks the endpoint, translates both
//! directions, refuses what has no endpoint, and tracks every connection.
//!
//! `endpoints` covers where endpoints come from and which take connections (named ports,
//! legacy Endpoints, conditions, affinity expiry, SCTP refused); `frontends` the frontends
//! beside the ClusterIP and the traffic policies.

mod endpoints;
mod frontends;

use podswitch_proto::{ConntrackFilter, L4Protocol};
use podswitch_tests::control::*;
use podswitch_tests::services::*;
use podswitch_tests::*;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 10);
const TARGET_PORT: u16 = 8080;

fn web(protocol: L4Protocol) -> ServiceManifest {
    ServiceManifest::new("web", protocol, VIP, 80, TARGET_PORT)
}

/// A ControlNode with a client pod and two backend pods `a` and `b`.
struct Cluster {
    cn: ControlNode,
    client: CniPod,
    a: CniPod,
    b: CniPod,
}

fn cluster_with(dataplane_args: &[&str]) -> Cluster {
    let cn = ControlNode::start_with(dataplane_args);
    let client = cn.add_pod("client");
    let a = cn.add_pod("backend-a");
    let b = cn.add_pod("backend-b");
    Cluster { cn, client, a, b }
}

fn cluster() -> Cluster {
    cluster_with(&[])
}

#[test]
fn clusterip_tcp_2000_connections_split_between_two_backends() {
    if !root_or_skip("clusterip_tcp_2000_connections_split_between_two_backends") {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    const N: usize = 2000;
    let results = connect_many(&client.ns, svc.vip(), N);
    let (failed, first) = failures(&results);
    assert_eq!(failed, 0, "every connection succeeds: {first:?}");
    let answers: Vec<Answer> = results.into_iter().map(Result::unwrap).collect();
    let split = by_backend(&answers);
    for name in ["a", "b"] {
        let share = split.get(name).copied().unwrap_or(0) * 100 / N;
        assert!(
            (40..=60).contains(&share),
            "backend {name} took {share}% of the connections: {split:?}"
        );
    }
    for ans in &answers {
        assert_eq!(ans.remote, svc.vip(), "getpeername is the VIP: {ans:?}");
        assert_eq!(
            ans.seen_peer, ans.local,
            "the backend sees the client's own address and port: {ans:?}"
        );
        assert_eq!(ans.seen_peer.ip(), client.ip);
    }
}

#[test]
fn removed_endpoint_gets_no_new_connections_while_its_established_one_finishes() {
    if !root_or_skip("removed_endpoint_gets_no_new_connections_while_its_established_one_finishes")
    {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    let mut old = connect(&client.ns, svc.vip()).unwrap();
    assert_eq!(old.echo(b"before").unwrap(), b"before");
    let (gone, kept, kept_ip) = if old.answer.backend == "a" {
        ("a", "b", b.ip)
    } else {
        ("b", "a", a.ip)
    };
    cn.apply_service(&svc, &[kept_ip]);

    let results = connect_many(&client.ns, svc.vip(), 200);
    let (failed, first) = failures(&results);
    assert_eq!(failed, 0, "new connections succeed: {first:?}");
    let split = by_backend(results.iter().flatten());
    assert_eq!(
        split.get(kept).copied(),
        Some(200),
        "every new connection goes to {kept}, none to the removed {gone}: {split:?}"
    );
    assert_eq!(
        old.echo(b"after the endpoint went").unwrap(),
        b"after the endpoint went",
        "the established connection to {gone} still carries data"
    );
    old.finish().unwrap();
}

#[test]
fn client_ip_affinity_pins_a_client_to_one_backend() {
    if !root_or_skip("client_ip_affinity_pins_a_client_to_one_backend") {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let mut svc = web(L4Protocol::Tcp);
    svc.affinity_timeout_secs = Some(600);
    let info = cn.apply_service(&svc, &[a.ip, b.ip]);
    assert_eq!(info.spec.affinity_timeout_secs, Some(600), "{info:?}");

    // Without affinity, 100 connections on Maglev all on one of two backends has odds of 2^-99.
    let results = connect_many(&client.ns, svc.vip(), 100);
    let (failed, first) = failures(&results);
    assert_eq!(failed, 0, "{first:?}");
    let split = by_backend(results.iter().flatten());
    assert_eq!(
        split.len(),
        1,
        "one backend took every connection: {split:?}"
    );
}

#[test]
fn udp_service_answers_through_the_vip() {
    if !root_or_skip("udp_service_answers_through_the_vip") {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = UdpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = UdpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Udp);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    // Each fresh socket is a new flow: 40 of them reach both backends but for odds of 2^-39.
    let answers: Vec<Answer> = (0..40)
        .map(|i| udp_ask(&client.ns, svc.vip(), 3).unwrap_or_else(|e| panic!("question {i}: {e}")))
        .collect();
    for ans in &answers {
        assert_eq!(
            ans.remote,
            svc.vip(),
            "the reply's source is the VIP: {ans:?}"
        );
        assert_eq!(ans.seen_peer, ans.local, "no source translation: {ans:?}");
    }
    let split = by_backend(&answers);
    assert_eq!(split.len(), 2, "both backends answered: {split:?}");
}

#[test]
fn hairpin_backend_reaches_its_own_service() {
    if !root_or_skip("hairpin_backend_reaches_its_own_service") {
        return;
    }
    let cn = ControlNode::start();
    let a = cn.add_pod("backend-a");
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let svc = web(L4Protocol::Tcp);
    cn.apply_service(&svc, &[a.ip]);

    let mut conn = connect(&a.ns, svc.vip()).unwrap();
    assert_eq!(conn.answer.backend, "a");
    assert_eq!(conn.answer.remote, svc.vip());
    assert_eq!(
        conn.answer.seen_peer.ip(),
        GATEWAY,
        "a backend's connection to itself through its Service is SNATed to the gateway, else \
         its reply would skip the switch: {:?}",
        conn.answer
    );
    assert_eq!(conn.echo(b"hairpin").unwrap(), b"hairpin");
    conn.finish().unwrap();
}

#[test]
fn clusterip_from_the_node_root_namespace() {
    if !root_or_skip("clusterip_from_the_node_root_namespace") {
        return;
    }
    let Cluster {
        cn,
        client: _,
        a,
        b,
    } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    let results = connect_many(&cn.node.ns, svc.vip(), 20);
    let (failed, first) = failures(&results);
    assert_eq!(
        failed,
        0,
        "the node reaches the VIP through psw0: {first:?}\nroutes: {}neighbours: {}",
        cn.node.ns.ip(&["-4", "route"]),
        cn.node.ns.ip(&["-4", "neigh"])
    );
    for ans in results.iter().flatten() {
        assert!(ans.backend == "a" || ans.backend == "b", "{ans:?}");
        assert_eq!(ans.remote, svc.vip());
        assert_eq!(ans.seen_peer, ans.local, "{ans:?}");
    }
}

#[test]
fn nodeport_from_the_node_through_its_address() {
    if !root_or_skip("nodeport_from_the_node_through_its_address") {
        return;
    }
    const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const NODE_PORT: u16 = 30080;
    let Cluster {
        cn,
        client: _,
        a,
        b,
    } = cluster();
    // The node's own address (its InternalIP), as kubelet's node would have on some interface.
    cn.node
        .ns
        .ip(&["addr", "add", &format!("{NODE_ADDR}/32"), "dev", "lo"]);
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let mut svc = web(L4Protocol::Tcp);
    svc.node_port = Some(NODE_PORT);
    let info = cn.apply_service(&svc, &[a.ip, b.ip]);
    assert!(
        info.spec.frontends.iter().any(|f| f.port == NODE_PORT),
        "a NodePort frontend: {info:?}"
    );
    let table = || {
        cn.node.ns.enter(|| {
            podswitch_netlink::Nftables::new()
                .unwrap()
                .has_nodeport_table()
                .unwrap()
        })
    };
    assert!(table(), "the NodePort table is programmed with the Service");

    let to = SocketAddr::from((NODE_ADDR, NODE_PORT));
    let results = connect_many(&cn.node.ns, to, 20);
    let (failed, first) = failures(&results);
    assert_eq!(failed, 0, "{first:?}\n{}", cn.node.log());
    for ans in results.iter().flatten() {
        assert!(ans.backend == "a" || ans.backend == "b", "{ans:?}");
        assert_eq!(
            ans.remote, to,
            "the client's socket stays connected to the node address"
        );
        assert!(
            [IpAddr::V4(NODE_ADDR), IpAddr::V4(GATEWAY)].contains(&ans.seen_peer.ip()),
            "the backend sees a node address: {ans:?}"
        );
    }
}

#[test]
fn service_without_endpoints_is_refused_at_once() {
    if !root_or_skip("service_without_endpoints_is_refused_at_once") {
        return;
    }
    let cn = ControlNode::start();
    let client = cn.add_pod("client");
    let tcp = ServiceManifest::new("empty-tcp", L4Protocol::Tcp, VIP, 80, TARGET_PORT);
    let udp = ServiceManifest::new(
        "empty-udp",
        L4Protocol::Udp,
        Ipv4Addr::new(10, 96, 0, 11),
        53,
        TARGET_PORT,
    );
    cn.apply_service(&tcp, &[]);
    cn.apply_service(&udp, &[]);

    let resets = cn.node.event("tcp_reset_sent");
    let err = connect_with(&client.ns, tcp.vip(), Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "refused at once, not timed out: {err}"
    );
    assert!(cn.node.event("tcp_reset_sent") > resets);

    let err = client
        .ns
        .enter(|| {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.connect(udp.vip())?;
            s.send(b"anyone?")?;
            s.recv(&mut [0u8; 64])
        })
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::ConnectionRefused,
        "ICMP port unreachable reached the connected socket: {err}"
    );
}

#[test]
fn conntrack_full_drops_new_flows_and_keeps_old_ones() {
    if !root_or_skip("conntrack_full_drops_new_flows_and_keeps_old_ones") {
        return;
    }
    const CAPACITY: usize = 32;
    let capacity = CAPACITY.to_string();
    let Cluster { cn, client, a, b } = cluster_with(&["--conntrack-capacity", &capacity]);
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    // Long-lived connections, each one entry, until the table takes no more.
    let mut held = Vec::new();
    let refused = loop {
        assert!(
            held.len() <= CAPACITY,
            "more connections than the table's capacity"
        );
        let before = cn.node.drops("conntrack_full");
        match connect_with(&client.ns, svc.vip(), Duration::from_secs(1)) {
            Ok(conn) => held.push(conn),
            Err(e) => break (e, before),
        }
    };
    let (err, before) = refused;
    assert!(!held.is_empty(), "the first connection fits: {err}");
    let after = cn.node.drops_above("conntrack_full", before);
    assert!(
        after > before,
        "the new flow failed ({err}) because the table is full: conntrack_full {before} → {after}"
    );
    let dump = cn.node.conntrack(ConntrackFilter::default());
    assert_eq!(dump.capacity, CAPACITY, "{dump:?}");
    assert!(dump.total <= CAPACITY, "{dump:?}");

    for (i, conn) in held.iter_mut().enumerate().step_by(7) {
        let msg = format!("old connection {i}");
        assert_eq!(
            conn.echo(msg.as_bytes()).unwrap(),
            msg.as_bytes(),
            "an established connection keeps working while the table is full"
        );
    }
}

#[test]
fn podswitchd_restart_keeps_a_long_connection_through_the_vip() {
    if !root_or_skip("podswitchd_restart_keeps_a_long_connection_through_the_vip") {
        return;
    }
    let Cluster {
        mut cn,
        client,
        a,
        b,
    } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let svc = web(L4Protocol::Tcp);
    let backends = svc.backends(&[a.ip, b.ip]);
    cn.apply_service(&svc, &[a.ip, b.ip]);

    let mut conn = connect(&client.ns, svc.vip()).unwrap();
    assert_eq!(conn.echo(b"before").unwrap(), b"before");
    cn.node.kill_daemon();
    cn.node.start_daemon();
    // Control finds the daemon empty and replays everything, the Service included.
    cn.wait_for_service(&svc, &backends);
    // TCP retransmits what the outage lost; a generous timeout covers the backoff.
    conn.stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let echoed = conn.echo(b"after the restart");
    assert!(
        matches!(&echoed, Ok(e) if e == b"after the restart"),
        "the connection to {} survived the restart: {echoed:?}\nconntrack now: {:?}",
        conn.answer.backend,
        cn.node.conntrack(ConntrackFilter::default())
    );
    conn.finish().unwrap();
    let fresh = connect(&client.ns, svc.vip()).unwrap();
    assert_eq!(fresh.answer.remote, svc.vip(), "new connections work too");
}

/// The harness's own check, without a Service: what the servers say is what the kernel saw,
/// so a failure above is the switch's, not the test's.
#[test]
fn backend_servers_answer_with_the_peer_they_see_pod_to_pod() {
    if !root_or_skip("backend_servers_answer_with_the_peer_they_see_pod_to_pod") {
        return;
    }
    let Cluster {
        cn: _cn,
        client,
        a,
        b: _,
    } = cluster();
    let _tcp = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _udp = UdpServer::start(&a.ns, TARGET_PORT, "a");
    let to = SocketAddr::from((a.ip, TARGET_PORT));
    let mut conn = connect(&client.ns, to).unwrap();
    assert_eq!(conn.answer.backend, "a");
    assert_eq!(
        (conn.answer.remote, conn.answer.seen_peer),
        (to, conn.answer.local)
    );
    assert_eq!(conn.echo(b"direct").unwrap(), b"direct");
    conn.finish().unwrap();
    let results = connect_many(&client.ns, to, 50);
    assert_eq!(failures(&results).0, 0, "{:?}", failures(&results).1);
    let ans = udp_ask(&client.ns, to, 3).unwrap();
    assert_eq!(
        (ans.backend.as_str(), ans.remote, ans.seen_peer),
        ("a", to, ans.local)
    );
}

/// The harness's manifests are valid Kubernetes objects to control, in every variant the
/// tests above use.
#[test]
fn harness_manifests_are_accepted_by_control() {
    if !root_or_skip("harness_manifests_are_accepted_by_control") {
        return;
    }
    let cn = ControlNode::start();
    let mut nodeport = web(L4Protocol::Tcp);
    nodeport.node_port = Some(30080);
    let mut sticky = ServiceManifest::new(
        "sticky",
        L4Protocol::Tcp,
        Ipv4Addr::new(10, 96, 0, 20),
        80,
        TARGET_PORT,
    );
    sticky.affinity_timeout_secs = Some(600);
    let udp = ServiceManifest::new(
        "dns",
        L4Protocol::Udp,
        Ipv4Addr::new(10, 96, 0, 30),
        53,
        TARGET_PORT,
    );
    let two = [Ipv4Addr::new(10, 244, 1, 2), Ipv4Addr::new(10, 244, 1, 3)];
    for (svc, endpoints) in [(&nodeport, &two[..]), (&sticky, &two[..1]), (&udp, &[][..])] {
        let yaml = svc.yaml(endpoints);
        let summary = cn
            .apply_manifests(&yaml)
            .unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(
            summary.iter().any(|l| l.contains("created")),
            "{summary:?}\n{yaml}"
        );
    }
}
