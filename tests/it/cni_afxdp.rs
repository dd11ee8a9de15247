//! veth-afxdp pods (issue 16): pods whose network config says `"attachment": "veth-afxdp"`,
//! attached through the CNI plugin as a runtime calls it. Control makes a veth pair, the
//! pod's end in the pod's namespace, the node end an `afxdp` port of podswitchd; they talk
//! to tap pods on the same node, back Services beside them, leave nothing behind on DEL, and
//! survive restarts of either process.

use podswitch_netlink::{Ethtool, Netlink, TxOffloads};
use podswitch_proto::{L4Protocol, PortKind, RequestBody, Response};
use podswitch_tests::control::*;
use podswitch_tests::services::*;
use podswitch_tests::*;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

const VETH: &str = "veth-afxdp";

/// The kind of podswitchd's port `name`, if it has one.
fn port_kind(cn: &ControlNode, name: &str) -> Option<PortKind> {
    let Response::Ports { ports } = cn.node.request(RequestBody::Ports) else {
        panic!("no ports dump")
    };
    ports.iter().find(|p| p.name == name).map(|p| p.kind)
}

/// Whether the node's namespace has a link `name`.
fn node_has_link(cn: &ControlNode, name: &str) -> bool {
    cn.node
        .ns
        .enter(|| Netlink::new().and_then(|mut nl| nl.link_index(name)))
        .unwrap()
        .is_some()
}

fn eth0_exists(ns: &Netns) -> bool {
    Netlink::new_in_netns(&ns.path())
        .and_then(|mut nl| nl.link_index("eth0"))
        .unwrap()
        .is_some()
}

fn ping_within(from: &Netns, dst: Ipv4Addr, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if from.ping(dst, &["-c", "1", "-W", "1"]).0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn a_veth_afxdp_pod_and_a_tap_pod_added_by_the_plugin_exchange_pings_and_exact_tcp_both_ways() {
    if !root_or_skip(
        "a_veth_afxdp_pod_and_a_tap_pod_added_by_the_plugin_exchange_pings_and_exact_tcp_both_ways",
    ) {
        return;
    }
    let cn = ControlNode::start_with(&["--workers", "2"]);
    let veth = cn.add_pod_attached("veth", VETH);
    let tap = cn.add_pod("tap");
    let veth_port = cn.port_of(&veth.container_id);
    assert_eq!(port_kind(&cn, &veth_port), Some(PortKind::Afxdp));
    assert_eq!(
        port_kind(&cn, &cn.port_of(&tap.container_id)),
        Some(PortKind::Tap)
    );
    assert!(
        node_has_link(&cn, &veth_port),
        "the node end is named like the port"
    );
    let offloads = Ethtool::new_in_netns(&veth.ns.path())
        .and_then(|e| e.tx_offloads("eth0"))
        .unwrap();
    assert_eq!(
        offloads,
        TxOffloads::NONE,
        "the pod's end sends whole frames"
    );
    let table = cn.node.podswitchctl(&["ports"]);
    assert!(
        table.contains(&format!("afxdp {veth_port}/0,1 ")),
        "one AF_XDP socket per worker, on queues 0 and 1: {table}"
    );
    let check = cn.check(&veth);
    assert_eq!(check.code, 0, "CHECK: {check:?}");

    let (ok, out) = veth.ns.ping(tap.ip, &["-c", "3"]);
    assert!(ok, "veth pod -> tap pod: {out}");
    let (ok, out) = tap.ns.ping(veth.ip, &["-c", "3"]);
    assert!(ok, "tap pod -> veth pod: {out}");
    const LEN: usize = 8 << 20;
    let v = tcp_transfer_verified(&veth.ns, &tap.ns, tap.ip, 5301, LEN);
    assert!(v.is_exact(LEN), "veth pod -> tap pod: {v:?}");
    let v = tcp_transfer_verified(&tap.ns, &veth.ns, veth.ip, 5302, LEN);
    assert!(v.is_exact(LEN), "tap pod -> veth pod: {v:?}");
    assert_eq!(cn.node.drops("xsk_tx_too_long"), 0);
}

#[test]
fn a_service_with_a_veth_afxdp_and_a_tap_backend_answers_both_kinds_of_client() {
    if !root_or_skip("a_service_with_a_veth_afxdp_and_a_tap_backend_answers_both_kinds_of_client") {
        return;
    }
    let cn = ControlNode::start();
    let veth_client = cn.add_pod_attached("veth-client", VETH);
    let tap_client = cn.add_pod("tap-client");
    let veth_backend = cn.add_pod_attached("veth-backend", VETH);
    let tap_backend = cn.add_pod("tap-backend");
    let _sv = TcpServer::start(&veth_backend.ns, 8080, "veth");
    let _st = TcpServer::start(&tap_backend.ns, 8080, "tap");
    let svc = ServiceManifest::new(
        "mixed",
        L4Protocol::Tcp,
        Ipv4Addr::new(10, 96, 0, 40),
        80,
        8080,
    );
    cn.apply_service(&svc, &[veth_backend.ip, tap_backend.ip]);
    for client in [&veth_client, &tap_client] {
        let results = connect_many(&client.ns, svc.vip(), 200);
        let (failed, first) = failures(&results);
        assert_eq!(failed, 0, "from {}: {first:?}", client.ip);
        let answers: Vec<Answer> = results.into_iter().map(Result::unwrap).collect();
        let split = by_backend(&answers);
        assert!(
            split.get("veth").is_some_and(|&n| n > 20) && split.get("tap").is_some_and(|&n| n > 20),
            "both backends answer {}: {split:?}",
            client.ip
        );
        for a in &answers {
            assert_eq!((a.remote, a.seen_peer), (svc.vip(), a.local), "{a:?}");
        }
        // A byte-exact echo through the VIP to whichever backend takes it.
        let mut conn = connect(&client.ns, svc.vip()).unwrap();
        let data = pattern(256 << 10, 7);
        assert!(conn.echo(&data).unwrap() == data, "echo from {}", client.ip);
        conn.finish().unwrap();
    }
}

#[test]
fn del_of_a_veth_afxdp_pod_leaves_no_veth_and_no_port_and_gc_removes_the_pair_too() {
    if !root_or_skip(
        "del_of_a_veth_afxdp_pod_leaves_no_veth_and_no_port_and_gc_removes_the_pair_too",
    ) {
        return;
    }
    let cn = ControlNode::start();
    let pod = cn.add_pod_attached("gone", VETH);
    let port = cn.port_of(&pod.container_id);
    assert!(node_has_link(&cn, &port) && eth0_exists(&pod.ns));
    let out = cn.del_pod(&pod.container_id, Some(&pod.netns()));
    assert_eq!(out.code, 0, "DEL: {out:?}");
    assert!(!node_has_link(&cn, &port), "the node end is gone");
    assert!(!eth0_exists(&pod.ns), "the pod's end is gone");
    assert_eq!(port_kind(&cn, &port), None, "podswitchd has no port for it");
    assert!(cn.pods().is_empty());
    let again = cn.del_pod(&pod.container_id, None);
    assert_eq!(again.code, 0, "a second DEL: {again:?}");

    // GC of one the runtime no longer knows removes its pair as well.
    let other = cn.add_pod_attached("forgotten", VETH);
    let port = cn.port_of(&other.container_id);
    let gc = cn.cni(
        "GC",
        &[],
        &serde_json::json!({
            "cniVersion": "1.1.0", "name": "podswitch", "type": "podswitch",
            "controlSocket": cn.control_socket, "cni.dev/valid-attachments": []
        })
        .to_string(),
    );
    assert_eq!(gc.code, 0, "GC: {gc:?}");
    assert!(!node_has_link(&cn, &port) && !eth0_exists(&other.ns));
    assert_eq!(port_kind(&cn, &port), None);
}

#[test]
fn a_veth_afxdp_pod_keeps_working_across_control_and_podswitchd_restarts() {
    if !root_or_skip("a_veth_afxdp_pod_keeps_working_across_control_and_podswitchd_restarts") {
        return;
    }
    let mut cn = ControlNode::start();
    let veth = cn.add_pod_attached("veth", VETH);
    let tap = cn.add_pod("tap");
    let before = cn.status();
    std::thread::scope(|s| {
        let transfer =
            s.spawn(|| tcp_transfer_verified(&tap.ns, &veth.ns, veth.ip, 5303, 16 << 20));
        cn.kill_control();
        assert!(
            veth.ns.ping(tap.ip, &["-c", "1"]).0,
            "forwarding without control"
        );
        cn.start_control();
        let v = transfer.join().unwrap();
        assert!(v.is_exact(16 << 20), "the transfer never noticed: {v:?}");
    });
    cn.wait_in_sync();
    assert_eq!(cn.status().generation, before.generation, "nothing pushed");
    let check = cn.check(&veth);
    assert_eq!(check.code, 0, "CHECK after the control restart: {check:?}");

    // podswitchd killed: control pushes again, the afxdp port binds the same veth again.
    let port = cn.port_of(&veth.container_id);
    cn.node.kill_daemon();
    cn.node.start_daemon();
    assert!(
        ping_within(&veth.ns, tap.ip, 10),
        "re-attached after a podswitchd restart: {}",
        cn.control_log()
    );
    assert_eq!(port_kind(&cn, &port), Some(PortKind::Afxdp));
    let v = tcp_transfer_verified(&veth.ns, &tap.ns, tap.ip, 5304, 4 << 20);
    assert!(v.is_exact(4 << 20), "{v:?}");
}
