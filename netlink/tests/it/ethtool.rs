//! Transmit offloads through the ethtool ioctl, read back from the kernel; and a veth made
//! with its far end directly in another namespace (how control attaches a veth-afxdp pod).

use std::fs::File;

use podswitch_netlink::{Ethtool, TxOffloads, VethPeer};

use crate::harness::TestNetns;

#[test]
fn a_veth_peer_is_created_in_the_other_namespace_with_its_mac_mtu_and_queues() {
    let ns = netns_or_skip!();
    let pod = TestNetns::new().unwrap();
    let mut nl = ns.netlink();
    let target = File::open(pod.path()).unwrap();
    let mac = [0x0a, 0x58, 10, 244, 1, 9];
    let peer = VethPeer {
        name: "eth0",
        netns: std::os::fd::AsFd::as_fd(&target),
        mac: Some(mac),
    };
    let host = nl.link_add_veth_into("pswtest0", &peer, 1400, 2).unwrap();
    assert_eq!(nl.link(host).unwrap().mtu, 1400);
    assert_eq!(nl.link_index("eth0").unwrap(), None, "the peer is not here");
    let mut nl_pod = pod.netlink();
    let index = nl_pod.link_index("eth0").unwrap().expect("eth0 in the pod");
    let link = nl_pod.link(index).unwrap();
    assert_eq!((link.mac, link.mtu), (Some(mac), 1400));

    // The same name again is refused, and says so.
    let err = nl
        .link_add_veth_into("pswtest0", &peer, 1400, 2)
        .unwrap_err();
    assert_eq!(err.errno(), Some(libc::EEXIST), "{err}");
    assert!(
        err.to_string().contains("already") || err.to_string().contains("exists"),
        "{err}"
    );
    // Deleting our end takes the pod's with it.
    nl.link_del(host).unwrap();
    assert_eq!(nl_pod.link_index("eth0").unwrap(), None);
}

#[test]
fn transmit_offloads_of_a_veth_are_switched_off_and_read_back() {
    let ns = netns_or_skip!();
    let mut nl = ns.netlink();
    let (host, _) = crate::harness::veth(&mut nl);
    let host_name = nl.link(host).unwrap().name;
    let ethtool = Ethtool::new_in_netns(&ns.path()).unwrap();
    let before = ethtool.tx_offloads(&host_name).unwrap();
    assert_eq!(
        before,
        TxOffloads {
            checksum: true,
            tso: true,
            gso: true
        },
        "a veth starts with all three"
    );
    ethtool.disable_tx_offloads(&host_name).unwrap();
    assert_eq!(ethtool.tx_offloads(&host_name).unwrap(), TxOffloads::NONE);
    // Idempotent.
    ethtool.disable_tx_offloads(&host_name).unwrap();
}

#[test]
fn an_unknown_interface_is_named_in_the_error() {
    let ns = netns_or_skip!();
    let ethtool = Ethtool::new_in_netns(&ns.path()).unwrap();
    let err = ethtool.tx_offloads("nosuch0").unwrap_err();
    assert_eq!(err.errno(), Some(libc::ENODEV), "{err}");
    assert!(err.to_string().contains("nosuch0"), "{err}");
    let err = ethtool
        .disable_tx_offloads("a-name-far-too-long")
        .unwrap_err();
    assert_eq!(err.errno(), None, "{err}");
}
