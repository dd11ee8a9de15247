//! IPv4 addresses: add, replace, delete, list, and their errors.

use std::net::Ipv4Addr;

use crate::harness::{errno_of, veth, MISSING_INDEX};

const A1: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const A2: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const B1: Ipv4Addr = Ipv4Addr::new(192, 168, 50, 1);

#[test]
fn added_addresses_are_listed_on_their_link_only() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, pod) = veth(&mut nl);
    nl.addr_add_v4(host, A1, 24).unwrap();
    nl.addr_add_v4(host, A2, 24).unwrap();
    nl.addr_add_v4(host, B1, 32).unwrap();
    nl.addr_add_v4(pod, Ipv4Addr::new(10, 9, 9, 9), 31).unwrap();

    let mut on_host = nl.addr_list_v4(host).unwrap();
    on_host.sort();
    assert_eq!(on_host, vec![(A1, 24), (A2, 24), (B1, 32)]);
    assert_eq!(
        nl.addr_list_v4(pod).unwrap(),
        vec![(Ipv4Addr::new(10, 9, 9, 9), 31)]
    );
}

#[test]
fn link_without_addresses_lists_none() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    assert_eq!(nl.addr_list_v4(host).unwrap(), vec![]);
}

#[test]
fn duplicate_address_error_names_the_interface() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    nl.addr_add_v4(host, A1, 24).unwrap();
    let msg = errno_of(nl.addr_add_v4(host, A1, 24), libc::EEXIST);
    // Then the kernel's own words (varying by version) and our hint.
    assert!(
        msg.starts_with("add address 10.0.0.1/24 on psw0: File exists (os error 17)"),
        "{msg}"
    );
    assert!(
        msg.ends_with("; the link already has this address"),
        "{msg}"
    );
}

#[test]
fn replace_is_idempotent() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    nl.addr_replace_v4(host, A1, 24).unwrap();
    nl.addr_replace_v4(host, A1, 24).unwrap();
    nl.addr_add_v4(host, A2, 24)
        .expect("replace does not block other addresses");
    nl.addr_replace_v4(host, A2, 24).unwrap();
    let mut listed = nl.addr_list_v4(host).unwrap();
    listed.sort();
    assert_eq!(listed, vec![(A1, 24), (A2, 24)]);
}

#[test]
fn deleted_address_is_gone_and_deleting_it_again_fails() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    nl.addr_add_v4(host, A1, 24).unwrap();
    nl.addr_add_v4(host, B1, 32).unwrap();
    nl.addr_del_v4(host, A1, 24).unwrap();
    assert_eq!(nl.addr_list_v4(host).unwrap(), vec![(B1, 32)]);
    let msg = errno_of(nl.addr_del_v4(host, A1, 24), libc::EADDRNOTAVAIL);
    assert!(
        msg.starts_with("delete address 10.0.0.1/24 on psw0: "),
        "{msg}"
    );
}

#[test]
fn address_operations_on_a_missing_link_fail_with_enodev() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let msg = errno_of(nl.addr_add_v4(MISSING_INDEX, A1, 24), libc::ENODEV);
    assert!(
        msg.starts_with("add address 10.0.0.1/24 on link index 9999: No such device (os error 19)"),
        "{msg}"
    );
    errno_of(nl.addr_replace_v4(MISSING_INDEX, A1, 24), libc::ENODEV);
    errno_of(nl.addr_list_v4(MISSING_INDEX), libc::ENODEV);
}

#[test]
fn prefix_longer_than_32_is_refused() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    let err = nl.addr_add_v4(host, A1, 33).unwrap_err();
    assert_eq!(err.errno(), None);
    assert_eq!(nl.addr_list_v4(host).unwrap(), vec![]);
}
