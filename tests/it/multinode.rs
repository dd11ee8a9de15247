//! Another node through a tap uplink, with real kernel traffic: the node's namespace stands
//! for the underlay *and* the other node (no host port here, so its kernel routes the pod
//! CIDR only through the uplink): the kernel side of the uplink tap holds node 2's InternalIP
//! 192.168.1.2, and node 2's "pod" address 10.244.2.1 sits on its loopback (routed) or on a
//! kernel VXLAN device (VNI 42, UDP 4789) whose MAC is the inner MAC podswitch sends to by
//! default. A local pod pings it: the switch resolves 192.168.1.2 by ARP, routes or
//! encapsulates, and the kernel's reply comes back through the uplink (decapsulated) to the
//! pod. The switch's neighbour table then shows node 2 reachable. Through VXLAN also: the
//! effective MTU (frag-needed 1450); both ways, 4 MB of TCP each way, byte-exact.

use podswitch_proto::{Encap, Op, PortKind, PortRole, PortSpec, RouteTarget};
use podswitch_tests::{root_or_skip, route, Node, GATEWAY, POD_CIDR};

const UPLINK_MAC: &str = "0a:58:c0:a8:01:01";

fn two_node_setup(test: &str, encap: Encap) -> Option<(Node, podswitch_tests::Pod)> {
    if !root_or_skip(test) {
        return None;
    }
    let node = Node::bare(&[]);
    node.apply(vec![
        Node::base_ops().remove(0), // set_node, without the host port
        Op::AddPort(PortSpec {
            name: "up0".into(),
            kind: PortKind::Tap,
            role: PortRole::Uplink {
                mac: UPLINK_MAC.parse().unwrap(),
                ip: "192.168.1.1".parse().unwrap(),
                encap,
                gateway: None,
            },
            mtu: 1500,
            offloads: encap == Encap::Direct,
            netns: None,
            queue_ids: Vec::new(),
        }),
        route(POD_CIDR, RouteTarget::Unreachable),
        route(
            "10.244.2.0/24",
            RouteTarget::Node {
                ip: "192.168.1.2".parse().unwrap(),
                vtep_mac: None,
                gateway: None,
            },
        ),
    ])
    .unwrap();
    let pod = node.add_pod(2);
    node.ns.ip(&["addr", "add", "192.168.1.2/24", "dev", "up0"]);
    Some((node, pod))
}

/// Pings node 2's pod from the local pod: the first echo may be the one turned into the
/// ARP request (dropped, as documented), so one warm-up, then every one must come back.
fn ping_node2(node: &Node, pod: &podswitch_tests::Pod) {
    let _ = pod.ns.ping("10.244.2.1", &["-c", "1"]);
    let (ok, out) = pod.ns.ping("10.244.2.1", &["-c", "3"]);
    assert!(
        ok,
        "{out}\nneighbors:\n{}\ncounters:\n{}\nlog:\n{}",
        node.podswitchctl(&["neighbors"]),
        node.podswitchctl(&["counters"]),
        node.log()
    );
    let neighbors = node.podswitchctl(&["neighbors"]);
    let line = neighbors
        .lines()
        .find(|l| l.starts_with("192.168.1.2 "))
        .unwrap_or_else(|| panic!("node 2 not in the neighbour table:\n{neighbors}"));
    assert!(
        line.contains("nexthop") && line.contains("reachable"),
        "{line}"
    );
}

#[test]
fn a_pod_reaches_another_nodes_pod_routed_through_a_tap_uplink() {
    let Some((node, pod)) = two_node_setup(
        "a_pod_reaches_another_nodes_pod_routed_through_a_tap_uplink",
        Encap::Direct,
    ) else {
        return;
    };
    node.ns.ip(&["addr", "add", "10.244.2.1/32", "dev", "lo"]);
    // Node 2's pod answers and connects from its own address (this switch has no host port
    // here, so no route back to node 2's InternalIP).
    let via_uplink = ["via", "192.168.1.1", "dev", "up0", "src", "10.244.2.1"];
    node.ns
        .ip(&[&["route", "add", POD_CIDR][..], &via_uplink].concat());
    ping_node2(&node, &pod);
    assert!(node.event("arp_request_sent") >= 1);
    assert_eq!(node.event("vxlan_encapsulated"), 0);
    // TCP both ways; a routed tap uplink with offloads takes the pod's super-frames whole.
    let to_node2 = podswitch_tests::tcp_transfer_verified(
        &pod.ns,
        &node.ns,
        "10.244.2.1".parse().unwrap(),
        5201,
        4 << 20,
    );
    assert!(to_node2.is_exact(4 << 20), "{to_node2:?}");
    let from_node2 =
        podswitch_tests::tcp_transfer_verified(&node.ns, &pod.ns, pod.ip, 5202, 4 << 20);
    assert!(from_node2.is_exact(4 << 20), "{from_node2:?}");
}

#[test]
fn a_pod_reaches_another_nodes_pod_through_vxlan_to_a_kernel_vxlan_device() {
    let Some((node, pod)) = two_node_setup(
        "a_pod_reaches_another_nodes_pod_through_vxlan_to_a_kernel_vxlan_device",
        Encap::Vxlan {
            vni: 42,
            port: 4789,
        },
    ) else {
        return;
    };
    let ns = &node.ns;
    ns.ip(&[
        "link",
        "add",
        "vx0",
        "type",
        "vxlan",
        "id",
        "42",
        "local",
        "192.168.1.2",
        "dstport",
        "4789",
        "dev",
        "up0",
        "nolearning",
    ]);
    // The inner MAC podswitch sends to by default: 0a:58 + node 2's gateway 10.244.2.1.
    ns.ip(&["link", "set", "vx0", "address", "0a:58:0a:f4:02:01", "up"]);
    ns.ip(&["addr", "add", "10.244.2.1/24", "dev", "vx0"]);
    // Node 2's way back, as flannel programs it: our gateway as an on-link next hop on the
    // VXLAN device, its MAC (any: the switch does not check the inner destination) in the
    // neighbour table, and that MAC's tunnel endpoint in the FDB.
    let gw = GATEWAY.to_string();
    ns.ip(&["route", "add", POD_CIDR, "via", &gw, "dev", "vx0", "onlink"]);
    ns.ip(&[
        "neigh",
        "add",
        &gw,
        "lladdr",
        "0a:58:0a:f4:01:01",
        "dev",
        "vx0",
    ]);
    let out = ns.exec(&[
        "bridge",
        "fdb",
        "append",
        "0a:58:0a:f4:01:01",
        "dev",
        "vx0",
        "dst",
        "192.168.1.1",
    ]);
    assert!(out.status.success(), "{out:?}");
    ping_node2(&node, &pod);
    assert!(node.event("vxlan_encapsulated") >= 3);
    assert!(node.event("vxlan_decapsulated") >= 3);
    // Bigger than the tunnel takes with DF: frag-needed with 1450 from the gateway.
    let (ok, out) = pod
        .ns
        .ping("10.244.2.1", &["-c", "1", "-M", "do", "-s", "1450"]);
    assert!(!ok && out.contains("mtu = 1450"), "{out}");
    let (ok, out) = pod
        .ns
        .ping("10.244.2.1", &["-c", "2", "-M", "do", "-s", "1422"]);
    assert!(ok, "{out}");
}
