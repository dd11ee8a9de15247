//! L2 behaviour seen from pods: ARP for the gateway, anti-spoofing.

use podswitch_tests::*;

#[test]
fn pod_resolves_the_gateway_to_the_switch_mac() {
    if !root_or_skip("pod_resolves_the_gateway_to_the_switch_mac") {
        return;
    }
    let node = Node::start();
    let pod = node.add_pod(2);
    let (ok, out) = pod.ns.ping(GATEWAY, &[]);
    assert!(ok, "{out}");
    let neigh = pod.ns.ip(&["neigh", "show", "10.244.1.1"]);
    assert!(
        neigh.contains("02:50:53:00:00:01"),
        "gateway should resolve to the switch MAC: {neigh}"
    );
    let events = node.counters().events;
    let arp = events
        .iter()
        .find(|e| e.event == "arp_reply")
        .unwrap()
        .count;
    assert!(arp >= 1, "{events:?}");
}

#[test]
fn pod_gets_no_arp_answer_for_another_pod() {
    if !root_or_skip("pod_gets_no_arp_answer_for_another_pod") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let _b = node.add_pod(3);
    // Make pod A look for pod B on-link: the switch owns only the gateway, so no answer.
    run(&[
        "ip",
        "-n",
        &a.ns.name,
        "route",
        "add",
        "10.244.1.3",
        "dev",
        "eth0",
        "scope",
        "link",
    ]);
    let (ok, out) = a.ns.ping("10.244.1.3", &[]);
    assert!(!ok, "a pod must not resolve another pod directly: {out}");
    assert!(node.drops("arp_not_ours") >= 1, "{:?}", node.counters());
}

#[test]
fn spoofed_source_ip_is_dropped_and_counted() {
    if !root_or_skip("spoofed_source_ip_is_dropped_and_counted") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0, "baseline");
    assert_eq!(node.drops("spoofed_source_ip"), 0);
    // Pod A claims an address that is not its own.
    a.ns.ip(&["addr", "add", "10.244.1.50/32", "dev", "eth0"]);
    let (ok, out) = a.ns.ping(b.ip, &["-I", "10.244.1.50"]);
    assert!(!ok, "spoofed pings must not get through: {out}");
    assert!(
        node.drops("spoofed_source_ip") >= 2,
        "{:?}",
        node.counters().drops
    );
    // The operator's view says the same: podswitchctl against the live daemon.
    let dump: serde_json::Value =
        serde_json::from_str(&node.podswitchctl(&["-o", "json", "counters"])).unwrap();
    let drops = dump["drops"].as_array().unwrap();
    let spoofed = drops
        .iter()
        .find(|d| d["reason"] == "spoofed_source_ip")
        .unwrap();
    assert!(spoofed["count"].as_u64().unwrap() >= 2, "{spoofed}");
    assert!(node
        .podswitchctl(&["counters"])
        .contains("spoofed_source_ip"));
}

#[test]
fn spoofed_source_mac_is_dropped_and_counted() {
    if !root_or_skip("spoofed_source_mac_is_dropped_and_counted") {
        return;
    }
    let node = Node::start();
    let a = node.add_pod(2);
    let b = node.add_pod(3);
    assert!(a.ns.ping(b.ip, &[]).0, "baseline");
    a.ns.ip(&["link", "set", "eth0", "address", "02:00:00:00:be:ef"]);
    let (ok, out) = a.ns.ping(b.ip, &[]);
    assert!(!ok, "frames from a foreign MAC must not get through: {out}");
    assert!(
        node.drops("spoofed_source_mac") + node.drops("spoofed_arp") >= 1,
        "{:?}",
        node.counters().drops
    );
}
