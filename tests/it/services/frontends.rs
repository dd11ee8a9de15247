//! The frontends other than a ClusterIP, and the traffic policies, with real traffic:
//! externalIPs and LoadBalancer ingress IPs reached from a pod and from the node,
//! `internalTrafficPolicy: Local` for ClusterIP clients, and `externalTrafficPolicy: Local` for
//! a NodePort reached by a client outside the node.
//!
//! "On this node" is what control decides from the endpoint's `nodeName` (the harness starts
//! it with `--node-name node-1`) or, without one, from its address being in the node's pod
//! CIDR. An endpoint on another node is played by a server in the node's own namespace at an
//! address outside the pod CIDR, with `nodeName: node-2`: the switch sends it out of the host
//! port as it would send a connection to another node's pod.

use super::{cluster, web, Cluster, TARGET_PORT};
use podswitch_proto::{FrontendKind, L4Protocol, ServiceInfo};
use podswitch_tests::services::*;
use podswitch_tests::*;
use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// This node's name, as the harness starts podswitch-control.
const THIS_NODE: &str = "node-1";
/// The endpoint standing for a pod on another node (see the module comment).
const REMOTE_ENDPOINT: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 20);

/// Every answer of `n` connections from `ns` to `to`; panics if any failed.
fn tcp_answers(ns: &Netns, to: SocketAddr, n: usize) -> Vec<Answer> {
    let results = connect_many(ns, to, n);
    let (failed, first) = failures(&results);
    assert_eq!(failed, 0, "every connection to {to} succeeds: {first:?}");
    results.into_iter().flatten().collect()
}

fn backends(answers: &[Answer]) -> BTreeSet<&str> {
    answers.iter().map(|a| a.backend.as_str()).collect()
}

/// Gives the node the remote endpoint's address and starts its server there.
fn remote_endpoint(cn: &podswitch_tests::control::ControlNode) -> TcpServer<'_> {
    cn.node
        .ns
        .ip(&["addr", "add", &format!("{REMOTE_ENDPOINT}/32"), "dev", "lo"]);
    TcpServer::start(&cn.node.ns, TARGET_PORT, "remote")
}

/// Whether podswitchd selects exactly the endpoints at `internal` for ClusterIP traffic and
/// those at `external` for the other frontends.
fn selects(info: &ServiceInfo, internal: &[Ipv4Addr], external: &[Ipv4Addr]) -> bool {
    info.spec.backends.iter().zip(&info.selected).all(|(b, s)| {
        s.internal == internal.contains(&b.ip) && s.external == external.contains(&b.ip)
    })
}

#[test]
fn external_ip_and_load_balancer_ip_reach_the_service_from_a_pod_and_from_the_node() {
    if !root_or_skip(
        "external_ip_and_load_balancer_ip_reach_the_service_from_a_pod_and_from_the_node",
    ) {
        return;
    }
    const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 10);
    const LB_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 10);
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let mut svc = web(L4Protocol::Tcp);
    svc.external_ips = vec![EXTERNAL_IP];
    svc.load_balancer_ips = vec![LB_IP];
    let info = cn.apply_service(&svc, &[a.ip, b.ip]);
    let kinds: Vec<(FrontendKind, Ipv4Addr)> =
        info.spec.frontends.iter().map(|f| (f.kind, f.ip)).collect();
    assert!(
        kinds.contains(&(FrontendKind::ExternalIp, EXTERNAL_IP))
            && kinds.contains(&(FrontendKind::LoadBalancer, LB_IP)),
        "{kinds:?}"
    );

    for ip in [EXTERNAL_IP, LB_IP] {
        let to = SocketAddr::from((ip, svc.port));
        for (from, ns) in [("a pod", &client.ns), ("the node", &cn.node.ns)] {
            let results = connect_many(ns, to, 20);
            let (failed, first) = failures(&results);
            assert_eq!(
                failed,
                0,
                "{from} reaches {to}: {first:?}\nnode routes: {}neighbours: {}drops: {:?}",
                cn.node.ns.ip(&["-4", "route"]),
                cn.node.ns.ip(&["-4", "neigh"]),
                cn.node
                    .counters()
                    .drops
                    .iter()
                    .filter(|d| d.count > 0)
                    .map(|d| (&d.reason, d.count))
                    .collect::<Vec<_>>()
            );
            let answers: Vec<Answer> = results.into_iter().flatten().collect();
            assert_eq!(
                backends(&answers),
                BTreeSet::from(["a", "b"]),
                "{from} → {to}"
            );
            for ans in &answers {
                assert_eq!(ans.remote, to, "the client's socket talks to {to}: {ans:?}");
                assert_eq!(
                    ans.seen_peer, ans.local,
                    "the backend sees the client itself: {ans:?}"
                );
            }
        }
    }
}

#[test]
fn internal_traffic_policy_local_uses_only_this_nodes_endpoints_and_refuses_without_one() {
    if !root_or_skip(
        "internal_traffic_policy_local_uses_only_this_nodes_endpoints_and_refuses_without_one",
    ) {
        return;
    }
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let _remote = remote_endpoint(&cn);
    let mut svc = web(L4Protocol::Tcp);
    // a names this node, b names none but is in this node's pod CIDR, the remote endpoint
    // names another node.
    let endpoints = [
        SliceEndpoint::ready(a.ip).on(THIS_NODE),
        SliceEndpoint::ready(b.ip),
        SliceEndpoint::ready(REMOTE_ENDPOINT).on("node-2"),
    ];
    let all = svc.backends(&[a.ip, b.ip, REMOTE_ENDPOINT]);
    let everyone = [a.ip, b.ip, REMOTE_ENDPOINT];

    // Policy Cluster: the remote endpoint is reachable and takes its share.
    cn.apply_and_wait(&svc.yaml_with(&endpoints), &svc, &all, |i| {
        selects(i, &everyone, &everyone)
    });
    assert_eq!(
        backends(&tcp_answers(&client.ns, svc.vip(), 60)),
        BTreeSet::from(["a", "b", "remote"])
    );

    svc.internal_local = true;
    cn.apply_and_wait(&svc.service_yaml(), &svc, &all, |i| {
        selects(i, &[a.ip, b.ip], &everyone)
    });
    assert_eq!(
        backends(&tcp_answers(&client.ns, svc.vip(), 40)),
        BTreeSet::from(["a", "b"]),
        "internalTrafficPolicy Local: only endpoints on this node"
    );

    // Only the remote endpoint left: refused, not sent to the other node.
    let remote_only = [SliceEndpoint::ready(REMOTE_ENDPOINT).on("node-2")];
    cn.apply_and_wait(
        &svc.slice_yaml_with(&remote_only),
        &svc,
        &svc.backends(&[REMOTE_ENDPOINT]),
        |i| selects(i, &[], &[REMOTE_ENDPOINT]),
    );
    let err = connect_with(&client.ns, svc.vip(), Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn external_traffic_policy_local_nodeport_keeps_the_client_address_and_uses_local_endpoints() {
    if !root_or_skip(
        "external_traffic_policy_local_nodeport_keeps_the_client_address_and_uses_local_endpoints",
    ) {
        return;
    }
    const NODE_PORT: u16 = 30080;
    let Cluster { cn, client, a, b } = cluster();
    let _sa = TcpServer::start(&a.ns, TARGET_PORT, "a");
    let _sb = TcpServer::start(&b.ns, TARGET_PORT, "b");
    let _remote = remote_endpoint(&cn);
    let outside = Outside::join(
        &cn.node.ns,
        Ipv4Addr::new(192, 168, 200, 1),
        Ipv4Addr::new(192, 168, 200, 2),
    );
    let mut svc = web(L4Protocol::Tcp);
    svc.node_port = Some(NODE_PORT);
    svc.external_local = true;
    let endpoints = [
        SliceEndpoint::ready(a.ip).on(THIS_NODE),
        SliceEndpoint::ready(b.ip).on(THIS_NODE),
        SliceEndpoint::ready(REMOTE_ENDPOINT).on("node-2"),
    ];
    let everyone = [a.ip, b.ip, REMOTE_ENDPOINT];
    cn.apply_and_wait(
        &svc.yaml_with(&endpoints),
        &svc,
        &svc.backends(&everyone),
        |i| selects(i, &everyone, &[a.ip, b.ip]),
    );

    let node_port = SocketAddr::from((outside.node_ip, NODE_PORT));
    let answers = tcp_answers(&outside.ns, node_port, 40);
    assert_eq!(
        backends(&answers),
        BTreeSet::from(["a", "b"]),
        "externalTrafficPolicy Local: only endpoints on this node"
    );
    for ans in &answers {
        assert_eq!(ans.remote, node_port, "{ans:?}");
        assert_eq!(
            ans.seen_peer,
            SocketAddr::from((IpAddr::V4(outside.ip), ans.local.port())),
            "the backend sees the outside client's own address and port: {ans:?}"
        );
    }
    // ClusterIP traffic follows internalTrafficPolicy (Cluster): the remote endpoint too.
    assert_eq!(
        backends(&tcp_answers(&client.ns, svc.vip(), 60)),
        BTreeSet::from(["a", "b", "remote"])
    );

    // No endpoint on this node: the NodePort refuses rather than send the client elsewhere.
    let remote_only = [SliceEndpoint::ready(REMOTE_ENDPOINT).on("node-2")];
    cn.apply_and_wait(
        &svc.slice_yaml_with(&remote_only),
        &svc,
        &svc.backends(&[REMOTE_ENDPOINT]),
        |i| selects(i, &[REMOTE_ENDPOINT], &[]),
    );
    let err = connect_with(&outside.ns, node_port, Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}
