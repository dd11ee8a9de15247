//! Links: create, look up, change, move, delete.

use std::fs::File;

use crate::harness::{errno_of, veth, veth_up, TestNetns, HOST, MISSING_INDEX, POD};

#[test]
fn veth_pair_is_created_down_and_found_by_name() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, pod) = veth(&mut nl);
    assert_ne!(host, pod);
    assert_eq!(nl.link_index(HOST).unwrap(), Some(host));
    assert_eq!(nl.link_index(POD).unwrap(), Some(pod));
    let link = nl.link(host).unwrap();
    assert_eq!((link.index, link.name.as_str()), (host, HOST));
    assert!(!link.up);
    assert_eq!(nl.link_name(pod).unwrap().as_deref(), Some(POD));
}

#[test]
fn unknown_name_has_no_index_and_loopback_is_there() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    assert_eq!(nl.link_index("nosuch0").unwrap(), None);
    assert_eq!(nl.link_index("lo").unwrap(), Some(1));
    assert_eq!(nl.link_mac(1).unwrap(), [0; 6]);
}

#[test]
fn mac_mtu_and_up_state_are_applied() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, pod) = veth(&mut nl);
    let mac = [0x02, 0x50, 0x53, 0x57, 0x00, 0x01];
    nl.link_set_mac(host, mac).unwrap();
    nl.link_set_mtu(host, 9000).unwrap();
    nl.link_set_up(host).unwrap();
    nl.link_set_up(pod).unwrap();

    let link = nl.link(host).unwrap();
    assert_eq!(link.mac, Some(mac));
    assert_eq!(nl.link_mac(host).unwrap(), mac);
    assert_eq!(link.mtu, 9000);
    assert!(link.up);
    assert!(link.lower_up, "a veth has carrier once both ends are up");

    nl.link_set_down(host).unwrap();
    let link = nl.link(host).unwrap();
    assert!(!link.up && !link.lower_up);
}

#[test]
fn mtu_beyond_the_device_maximum_is_refused_with_the_kernels_reason() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    let msg = errno_of(nl.link_set_mtu(host, 1 << 20), libc::EINVAL);
    assert!(
        msg.starts_with("set MTU 1048576 on psw0: Invalid argument (os error 22) (kernel: "),
        "{msg}"
    );
}

#[test]
fn multicast_mac_is_refused() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    let msg = errno_of(
        nl.link_set_mac(host, [0x01, 0, 0x5e, 0, 0, 1]),
        libc::EADDRNOTAVAIL,
    );
    assert!(
        msg.starts_with("set MAC address 01:00:5e:00:00:01 on psw0: "),
        "{msg}"
    );
}

#[test]
fn rename_keeps_the_index() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    nl.link_rename(host, "pod0").unwrap();
    assert_eq!(nl.link_index("pod0").unwrap(), Some(host));
    assert_eq!(nl.link_index(HOST).unwrap(), None);
    assert_eq!(nl.link(host).unwrap().name, "pod0");
}

#[test]
fn renaming_an_up_link_works_or_says_to_set_it_down_first() {
    // Linux 6.7 started renaming links that are up; older kernels answer EBUSY.
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth_up(&mut nl);
    match nl.link_rename(host, "pod0") {
        Ok(()) => assert_eq!(nl.link_index("pod0").unwrap(), Some(host)),
        Err(err) => {
            assert_eq!(err.errno(), Some(libc::EBUSY), "{err}");
            let msg = err.to_string();
            assert!(msg.starts_with("rename to pod0 on psw0: "), "{msg}");
            assert!(msg.ends_with("a link must be down to be renamed"), "{msg}");
        }
    }
}

#[test]
fn renaming_onto_an_existing_name_fails() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    let msg = errno_of(nl.link_rename(host, POD), libc::EEXIST);
    assert!(
        msg.starts_with("rename to psw0p on psw0: File exists"),
        "{msg}"
    );
}

#[test]
fn link_moved_by_netns_fd_appears_in_the_other_namespace() {
    let ns = netns_or_skip!();
    let other = TestNetns::new().unwrap();
    let mut nl = ns.netlink();
    let mut nl_other = other.netlink();
    let (host, pod) = veth(&mut nl);

    // Through a freshly opened file, as the CNI plugin will do with /var/run/netns/X.
    let target = File::open(other.path()).unwrap();
    nl.link_set_netns_fd(pod, &target).unwrap();

    assert_eq!(nl.link_index(POD).unwrap(), None);
    let moved = nl_other
        .link_index(POD)
        .unwrap()
        .expect("psw0p in the other namespace");
    assert_eq!(nl_other.link(moved).unwrap().name, POD);
    assert_eq!(nl.link(host).unwrap().name, HOST, "the host end stays");
}

#[test]
fn moving_onto_a_taken_name_fails_and_says_what_to_do() {
    let ns = netns_or_skip!();
    let other = TestNetns::new().unwrap();
    let mut nl = ns.netlink();
    let mut nl_other = other.netlink();
    let (_, pod) = veth(&mut nl);
    nl_other.link_add_veth(POD, "x0").unwrap();

    let msg = errno_of(nl.link_set_netns_fd(pod, other.file()), libc::EEXIST);
    assert!(
        msg.starts_with("move to another network namespace on psw0p: File exists"),
        "{msg}"
    );
    assert!(msg.contains("rename first"), "{msg}");
    assert_eq!(
        nl.link_index(POD).unwrap(),
        Some(pod),
        "the link did not move"
    );
}

#[test]
fn deleting_one_veth_end_deletes_both() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = veth(&mut nl);
    nl.link_del(host).unwrap();
    assert_eq!(nl.link_index(HOST).unwrap(), None);
    assert_eq!(nl.link_index(POD).unwrap(), None);
}

#[test]
fn creating_an_existing_pair_fails_with_eexist() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    veth(&mut nl);
    let msg = errno_of(nl.link_add_veth(HOST, POD), libc::EEXIST);
    assert!(
        msg.starts_with("create veth pair with peer psw0p on psw0: File exists (os error 17)"),
        "{msg}"
    );
    assert!(
        msg.ends_with("; a link with one of these names already exists"),
        "{msg}"
    );
}

#[test]
fn every_operation_on_a_missing_index_fails_with_enodev_naming_the_index() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let i = MISSING_INDEX;
    let msg = errno_of(nl.link_set_up(i), libc::ENODEV);
    assert!(
        msg.starts_with("set link up on link index 9999: No such device (os error 19)"),
        "{msg}"
    );
    errno_of(nl.link_set_down(i), libc::ENODEV);
    errno_of(nl.link_set_mac(i, [2, 0, 0, 0, 0, 1]), libc::ENODEV);
    errno_of(nl.link_set_mtu(i, 1400), libc::ENODEV);
    errno_of(nl.link_rename(i, "x0"), libc::ENODEV);
    errno_of(nl.link_set_netns_fd(i, ns.file()), libc::ENODEV);
    errno_of(nl.link_del(i), libc::ENODEV);
    errno_of(nl.link(i), libc::ENODEV);
    errno_of(nl.link_mac(i), libc::ENODEV);
    assert_eq!(nl.link_name(i).unwrap(), None);
}

#[test]
fn invalid_names_are_refused_before_reaching_the_kernel() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let err = nl.link_add_veth("sixteen-chars-xx", POD).unwrap_err();
    assert_eq!(err.errno(), None, "not a kernel error: {err}");
    assert!(err.to_string().contains("at most 15"), "{err}");
    let err = nl.link_index("a/b").unwrap_err();
    assert_eq!(err.errno(), None, "not a kernel error: {err}");
    assert!(err.to_string().contains("contains '/'"), "{err}");
    assert_eq!(nl.link_index(POD).unwrap(), None, "nothing was created");
}

#[test]
fn link_stats_count_traffic_through_the_link() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    nl.link_set_up(1).unwrap();
    let before = nl.link_stats(1).unwrap();
    podswitch_netlink::in_netns(&ns.path(), || {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let me = sock.local_addr().unwrap();
        for _ in 0..3 {
            sock.send_to(b"counted", me).unwrap();
        }
    })
    .unwrap();
    let after = nl.link_stats(1).unwrap();
    assert_eq!(after.tx_packets - before.tx_packets, 3, "{after:?}");
    assert_eq!(after.rx_packets - before.rx_packets, 3, "{after:?}");
    assert!(after.rx_bytes - before.rx_bytes >= 3 * 7, "{after:?}");
}

#[test]
fn link_stats_of_a_missing_link_is_an_error_naming_it() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let msg = errno_of(nl.link_stats(MISSING_INDEX), libc::ENODEV);
    assert!(msg.starts_with("read link statistics on "), "{msg}");
}
