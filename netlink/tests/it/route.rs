//! IPv4 routes in the main table: add, replace, delete, list, and their errors.

use std::net::Ipv4Addr;

use podswitch_netlink::{Netlink, RouteV4};

use crate::harness::{errno_of, veth_up, MISSING_INDEX};

const HOST_ADDR: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const GW: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
const GW2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 253);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 0);

/// psw0/psw0p up, psw0 with 10.0.0.1/24 (so 10.0.0.0/24 is connected). Returns psw0.
fn connected_link(nl: &mut Netlink) -> u32 {
    let (host, _) = veth_up(nl);
    nl.addr_add_v4(host, HOST_ADDR, 24).unwrap();
    host
}

fn route_to(nl: &mut Netlink, dst: Ipv4Addr, prefix_len: u8) -> Option<RouteV4> {
    let routes = nl.route_list_v4().unwrap();
    let mut matching = routes
        .into_iter()
        .filter(|r| r.dst == dst && r.prefix_len == prefix_len);
    let found = matching.next();
    assert!(matching.next().is_none(), "one route to {dst}/{prefix_len}");
    found
}

#[test]
fn connected_route_of_an_address_is_listed_with_scope_link() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let host = connected_link(&mut nl);
    assert_eq!(
        route_to(&mut nl, Ipv4Addr::new(10, 0, 0, 0), 24),
        Some(RouteV4 {
            dst: Ipv4Addr::new(10, 0, 0, 0),
            prefix_len: 24,
            gateway: None,
            oif: Some(host),
            scope_link: true,
            pref_src: Some(HOST_ADDR),
            metric: None,
        })
    );
    assert!(
        nl.route_list_v4()
            .unwrap()
            .iter()
            .all(|r| r.dst != HOST_ADDR),
        "local-table host routes are not listed"
    );
}

#[test]
fn gateway_route_is_added_listed_and_deleted() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let host = connected_link(&mut nl);
    nl.route_add_v4(REMOTE, 16, Some(GW), Some(host), false)
        .unwrap();
    assert_eq!(
        route_to(&mut nl, REMOTE, 16),
        Some(RouteV4 {
            dst: REMOTE,
            prefix_len: 16,
            gateway: Some(GW),
            oif: Some(host),
            scope_link: false,
            pref_src: None,
            metric: None,
        })
    );
    nl.route_del_v4(REMOTE, 16).unwrap();
    assert_eq!(route_to(&mut nl, REMOTE, 16), None);
}

#[test]
fn scope_link_route_makes_an_off_subnet_gateway_reachable() {
    // The pod-side pattern: a /32 next hop on the link, then a default route through it.
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (_, pod) = veth_up(&mut nl);
    let next_hop = Ipv4Addr::new(169, 254, 1, 1);
    nl.addr_add_v4(pod, Ipv4Addr::new(10, 244, 1, 7), 32)
        .unwrap();

    let msg = errno_of(
        nl.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(next_hop), Some(pod), false),
        libc::ENETUNREACH,
    );
    assert!(
        msg.starts_with("add route 0.0.0.0/0 via 169.254.1.1 on psw0p: Network is unreachable"),
        "{msg}"
    );
    assert!(msg.contains("scope-link route to the gateway"), "{msg}");

    nl.route_add_v4(next_hop, 32, None, Some(pod), true)
        .unwrap();
    nl.route_add_v4(Ipv4Addr::UNSPECIFIED, 0, Some(next_hop), Some(pod), false)
        .unwrap();

    let on_link = route_to(&mut nl, next_hop, 32).expect("scope-link route listed");
    assert!(on_link.scope_link);
    assert_eq!((on_link.gateway, on_link.oif), (None, Some(pod)));
    let default = route_to(&mut nl, Ipv4Addr::UNSPECIFIED, 0).expect("default route listed");
    assert_eq!(default.gateway, Some(next_hop));
    assert!(!default.scope_link);
}

#[test]
fn replace_changes_the_gateway_where_add_fails() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let host = connected_link(&mut nl);
    nl.route_replace_v4(REMOTE, 16, Some(GW), Some(host), false)
        .expect("replace creates a missing route");
    let msg = errno_of(
        nl.route_add_v4(REMOTE, 16, Some(GW2), Some(host), false),
        libc::EEXIST,
    );
    assert!(msg.ends_with("use route_replace_v4"), "{msg}");

    nl.route_replace_v4(REMOTE, 16, Some(GW2), Some(host), false)
        .unwrap();
    assert_eq!(route_to(&mut nl, REMOTE, 16).unwrap().gateway, Some(GW2));
    nl.route_replace_v4(REMOTE, 16, Some(GW2), Some(host), false)
        .expect("replace is idempotent");
}

#[test]
fn deleting_a_missing_route_fails_with_esrch_and_a_hint() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let msg = errno_of(nl.route_del_v4(REMOTE, 16), libc::ESRCH);
    assert!(
        msg.starts_with("delete route 10.1.0.0/16: No such process (os error 3)"),
        "{msg}"
    );
    assert!(
        msg.ends_with("; there is no such route in the main table"),
        "{msg}"
    );
}

#[test]
fn route_through_a_missing_link_fails_with_enodev() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let msg = errno_of(
        nl.route_add_v4(REMOTE, 16, None, Some(MISSING_INDEX), true),
        libc::ENODEV,
    );
    assert!(
        msg.starts_with("add route 10.1.0.0/16 scope link on link index 9999: No such device"),
        "{msg}"
    );
}

#[test]
fn destination_with_host_bits_set_is_refused_with_the_kernels_reason() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let host = connected_link(&mut nl);
    let msg = errno_of(
        nl.route_add_v4(Ipv4Addr::new(10, 1, 2, 3), 16, Some(GW), Some(host), false),
        libc::EINVAL,
    );
    assert!(msg.contains("(kernel: "), "{msg}");
}

#[test]
fn a_table_larger_than_one_datagram_is_listed_whole() {
    // ~2000 routes make a dump of well over 64 KiB, several datagrams of NLM_F_MULTIPART.
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let host = connected_link(&mut nl);
    let count: u16 = 2000;
    for i in 0..count {
        let [hi, lo] = i.to_be_bytes();
        let dst = Ipv4Addr::new(10, 200, hi, lo);
        nl.route_add_v4(dst, 32, None, Some(host), true).unwrap();
    }
    let listed = nl.route_list_v4().unwrap();
    let ours = listed
        .iter()
        .filter(|r| r.dst.octets()[..2] == [10, 200] && r.prefix_len == 32)
        .count();
    assert_eq!(ours, usize::from(count));
}
