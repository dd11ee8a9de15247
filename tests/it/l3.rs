//! L3 behaviour seen from pods and the node: routing, ICMP from the gateway.

use podswitch_tests::*;

#[test]
fn pods_ping_each_other_and_the_gateway() {
    if !root_or_skip("pods_ping_each_other_and_the_gateway") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let (ok, out) = a.ns.ping(GATEWAY, &[]);
    assert!(
        ok && out.contains("ttl=64"),
        "gateway answers itself: {out}"
    );
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(
        ok && out.contains("ttl=63"),
        "routed, TTL decremented once: {out}"
    );
    let (ok, out) = b.ns.ping(a.ip, &[]);
    assert!(ok, "{out}");
    let echo = node
        .counters()
        .events
        .iter()
        .find(|e| e.event == "icmp_echo_reply")
        .unwrap()
        .count;
    assert_eq!(
        echo, 2,
        "the two pings to the gateway, answered by the switch"
    );
}

#[test]
fn node_and_pods_reach_each_other() {
    if !root_or_skip("node_and_pods_reach_each_other") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let (ok, out) = node.ns.ping(a.ip, &[]);
    assert!(ok, "node → pod: {out}");
    // Pod → node through the default route (an address of the node that is not the gateway).
    node.ns.ip(&["addr", "add", "192.0.2.10/32", "dev", "lo"]);
    let (ok, out) = a.ns.ping("192.0.2.10", &[]);
    assert!(ok, "pod → node address via the host port: {out}");
}

#[test]
fn unassigned_pod_address_gets_host_unreachable() {
    if !root_or_skip("unassigned_pod_address_gets_host_unreachable") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let (ok, out) = a.ns.ping("10.244.1.99", &[]);
    assert!(!ok);
    assert!(
        out.contains("From 10.244.1.1") && out.contains("Destination Host Unreachable"),
        "{out}"
    );
    assert!(node.drops("unreachable") >= 2);
}

#[test]
fn destination_without_route_gets_net_unreachable() {
    if !root_or_skip("destination_without_route_gets_net_unreachable") {
        return;
    }
    let node = Node::start();
    node.apply(vec![podswitch_proto::Op::DelRoute {
        prefix: "0.0.0.0/0".parse().unwrap(),
    }])
    .unwrap();
    let a = node.add_pod(2);
    let (ok, out) = a.ns.ping("198.51.100.7", &[]);
    assert!(!ok);
    assert!(
        out.contains("From 10.244.1.1") && out.contains("Destination Net Unreachable"),
        "{out}"
    );
    assert!(node.drops("no_route") >= 2);
}

#[test]
fn ttl_one_gets_time_exceeded_from_the_gateway() {
    if !root_or_skip("ttl_one_gets_time_exceeded_from_the_gateway") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    let (ok, out) = a.ns.ping(b.ip, &["-t", "1"]);
    assert!(!ok);
    assert!(
        out.contains("From 10.244.1.1") && out.contains("Time to live exceeded"),
        "{out}"
    );
    assert!(node.drops("ttl_expired") >= 2);
}
