//! The node side of Services that podswitchd configures in the kernel: the Service CIDR is
//! routed into the host port (so host processes reach ClusterIPs through the switch) while
//! the host port exists, and the NodePort nf_tables table is what the configuration calls for
//! (the table's own behaviour is tested in `netlink/tests/it/nftables.rs`).

use podswitch_netlink::{Nftables, NodePortNat};
use podswitch_proto::{NodeSpec, Op};
use podswitch_tests::*;

fn ops_with_service_cidr() -> Vec<Op> {
    let mut ops = Node::base_ops();
    if let Some(Op::SetNode(node)) = ops.first_mut() {
        *node = NodeSpec {
            service_cidr: Some("10.96.0.0/16".parse().unwrap()),
            node_port_ip: Some("10.96.255.254".parse().unwrap()),
            ..node.clone()
        };
    }
    ops
}

#[test]
fn host_port_routes_the_service_cidr_to_itself_and_the_route_goes_with_it() {
    if !root_or_skip("host_port_routes_the_service_cidr_to_itself_and_the_route_goes_with_it") {
        return;
    }
    let node = Node::bare(&[]);
    let ops = ops_with_service_cidr();
    node.apply(ops.clone()).unwrap();
    let route = node.ns.ip(&["-4", "route", "show", "10.96.0.0/16"]);
    assert!(
        route.contains("dev psw0") && route.contains("scope link"),
        "Service CIDR routed into the host port: {route:?}"
    );
    let via = node.ns.ip(&["-4", "route", "get", "10.96.0.10"]);
    assert!(
        via.contains("dev psw0"),
        "a VIP leaves through psw0: {via:?}"
    );

    // The host port removed (the node spec alone is the whole configuration).
    node.replace(ops[..1].to_vec()).unwrap();
    let route = node.ns.ip(&["-4", "route", "show", "10.96.0.0/16"]);
    assert_eq!(route.trim(), "", "the route went with the host port");
}

#[test]
fn without_a_service_cidr_no_route_is_added() {
    if !root_or_skip("without_a_service_cidr_no_route_is_added") {
        return;
    }
    let node = Node::start();
    let routes = node.ns.ip(&["-4", "route", "show", "dev", "psw0"]);
    assert!(
        !routes.trim().is_empty() && routes.lines().all(|l| l.contains("proto kernel")),
        "only the connected route of the gateway address: {routes:?}"
    );
}

#[test]
fn nodeport_table_left_by_a_dead_daemon_is_removed_by_the_next_apply() {
    if !root_or_skip("nodeport_table_left_by_a_dead_daemon_is_removed_by_the_next_apply") {
        return;
    }
    let node = Node::bare(&[]);
    let has_table = || {
        node.ns
            .enter(|| Nftables::new().unwrap().has_nodeport_table().unwrap())
    };
    node.ns.enter(|| {
        Nftables::new()
            .unwrap()
            .replace_nodeport_table(&NodePortNat {
                node_port_ip: "10.96.255.254".parse().unwrap(),
                tcp_ports: vec![30080],
                udp_ports: vec![],
            })
            .unwrap()
    });
    assert!(has_table());
    // No Service holds a NodePort: the configuration calls for no table.
    node.apply(ops_with_service_cidr()).unwrap();
    assert!(!has_table(), "{}", node.log());
}
