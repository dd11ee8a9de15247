//! The NodePort table against the real kernel: a node namespace whose own connection to one
//! of its addresses on a NodePort reaches a listener at `node_port_ip` behind the node's
//! Service CIDR route (as the switch would answer there), and is refused again once the
//! table is gone.
//!
//! Topology: node namespace with `psw0` (198.51.100.1/24), the "node address" 192.0.2.10/32
//! on `lo`, and `10.96.0.0/16 dev psw0 scope link` (the route podswitchd adds); the other
//! end, `psw0p`, sits in a "switch" namespace holding `node_port_ip` and a route back. The
//! prerouting test adds an "outside" namespace the node forwards for (see `outside_client`).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

use podswitch_netlink::{in_netns, Nftables, NodePortNat};

use crate::harness::{veth_up, TestNetns, POD};

const NODE_ADDR: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const NODE_PORT_IP: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 254);

/// Builds the two namespaces described in the module documentation.
fn topology(node: &TestNetns, switch: &TestNetns) {
    let mut nl = node.netlink();
    nl.link_set_up(1).unwrap();
    nl.addr_add_v4(1, NODE_ADDR, 32).unwrap();
    let (host, pod) = veth_up(&mut nl);
    nl.addr_add_v4(host, Ipv4Addr::new(198, 51, 100, 1), 24)
        .unwrap();
    nl.route_replace_v4(Ipv4Addr::new(10, 96, 0, 0), 16, None, Some(host), true)
        .unwrap();
    nl.link_set_netns_fd(pod, switch.file()).unwrap();

    let mut sw = switch.netlink();
    sw.link_set_up(1).unwrap();
    let pod = sw.link_index(POD).unwrap().unwrap();
    sw.addr_add_v4(pod, Ipv4Addr::new(198, 51, 100, 2), 24)
        .unwrap();
    sw.addr_add_v4(pod, NODE_PORT_IP, 32).unwrap();
    sw.link_set_up(pod).unwrap();
    sw.route_add_v4(
        Ipv4Addr::UNSPECIFIED,
        0,
        Some(Ipv4Addr::new(198, 51, 100, 1)),
        None,
        false,
    )
    .unwrap();
}

fn nftables_in(ns: &Path, f: impl FnOnce(&mut Nftables) + Send) {
    in_netns(ns, || f(&mut Nftables::new().unwrap())).unwrap();
}

/// A TCP connection from inside `ns` to `addr`: `Ok` with what the far end wrote, or the
/// error kind (refused, timed out).
fn connect_from(ns: &Path, addr: SocketAddr) -> Result<String, ErrorKind> {
    in_netns(ns, || {
        let mut s =
            TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).map_err(|e| e.kind())?;
        Ok(answer)
    })
    .unwrap()
}

/// A listener in `ns` on `NODE_PORT_IP:port` that answers each connection with the address
/// it was made to and the client's address.
fn listen_at_node_port_ip(ns: &Path, port: u16) {
    let listener = in_netns(ns, || TcpListener::bind((NODE_PORT_IP, port)).unwrap()).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut conn = conn;
            let line = format!(
                "{} from {}",
                conn.local_addr().unwrap(),
                conn.peer_addr().unwrap().ip()
            );
            let _ = conn.write_all(line.as_bytes());
        }
    });
}

#[test]
fn node_port_on_a_local_address_is_dnated_to_node_port_ip_until_the_table_is_deleted() {
    let node = netns_or_skip!();
    let switch = netns_or_skip!();
    topology(&node, &switch);
    listen_at_node_port_ip(&switch.path(), 30080);
    let target = SocketAddr::from((NODE_ADDR, 30080));
    assert_eq!(
        connect_from(&node.path(), target),
        Err(ErrorKind::ConnectionRefused)
    );

    nftables_in(&node.path(), |nft| {
        nft.replace_nodeport_table(&NodePortNat {
            node_port_ip: NODE_PORT_IP,
            tcp_ports: vec![30080, 31000],
            udp_ports: vec![30053],
        })
        .unwrap()
    });
    assert_eq!(
        connect_from(&node.path(), target),
        Ok(format!("{NODE_PORT_IP}:30080 from {NODE_ADDR}")),
        "the SYN went to node_port_ip, port kept"
    );

    nftables_in(&node.path(), |nft| {
        assert!(nft.has_nodeport_table().unwrap());
        nft.delete_nodeport_table().unwrap();
        assert!(!nft.has_nodeport_table().unwrap());
    });
    assert_eq!(
        connect_from(&node.path(), target),
        Err(ErrorKind::ConnectionRefused)
    );
}

/// An "outside" namespace behind the node: `eth1` (203.0.113.1/24) in the node, which
/// forwards; its peer (203.0.113.2/24, default route via the node) in `outside`.
fn outside_client(node: &TestNetns, outside: &TestNetns) {
    let mut nl = node.netlink();
    let (eth1, peer) = nl.link_add_veth("eth1", "eth1p").unwrap();
    nl.addr_add_v4(eth1, Ipv4Addr::new(203, 0, 113, 1), 24)
        .unwrap();
    nl.link_set_up(eth1).unwrap();
    nl.link_set_netns_fd(peer, outside.file()).unwrap();
    in_netns(&node.path(), || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").unwrap()
    })
    .unwrap();
    let mut out = outside.netlink();
    let peer = out.link_index("eth1p").unwrap().unwrap();
    out.addr_add_v4(peer, Ipv4Addr::new(203, 0, 113, 2), 24)
        .unwrap();
    out.link_set_up(peer).unwrap();
    out.route_add_v4(
        Ipv4Addr::UNSPECIFIED,
        0,
        Some(Ipv4Addr::new(203, 0, 113, 1)),
        None,
        false,
    )
    .unwrap();
}

#[test]
fn node_port_from_outside_the_node_is_dnated_in_prerouting() {
    let node = netns_or_skip!();
    let switch = netns_or_skip!();
    let outside = netns_or_skip!();
    topology(&node, &switch);
    outside_client(&node, &outside);
    listen_at_node_port_ip(&switch.path(), 30080);
    nftables_in(&node.path(), |nft| {
        nft.replace_nodeport_table(&NodePortNat {
            node_port_ip: NODE_PORT_IP,
            tcp_ports: vec![30080],
            udp_ports: vec![],
        })
        .unwrap()
    });
    // To the node's address on eth1: `fib daddr type local` holds for every local address.
    let target = SocketAddr::from((Ipv4Addr::new(203, 0, 113, 1), 30080));
    assert_eq!(
        connect_from(&outside.path(), target),
        Ok(format!("{NODE_PORT_IP}:30080 from 203.0.113.2"))
    );
}

#[test]
fn udp_node_port_is_dnated_and_the_reply_comes_back_from_the_address_asked() {
    let node = netns_or_skip!();
    let switch = netns_or_skip!();
    topology(&node, &switch);
    let server = in_netns(&switch.path(), || {
        UdpSocket::bind((NODE_PORT_IP, 30053)).unwrap()
    })
    .unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    nftables_in(&node.path(), |nft| {
        nft.replace_nodeport_table(&NodePortNat {
            node_port_ip: NODE_PORT_IP,
            tcp_ports: vec![],
            udp_ports: vec![30053],
        })
        .unwrap()
    });
    let client = in_netns(&node.path(), || UdpSocket::bind((NODE_ADDR, 0)).unwrap()).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    client.connect((NODE_ADDR, 30053)).unwrap();
    client.send(b"query").unwrap();
    let mut buf = [0u8; 16];
    let (n, from) = server
        .recv_from(&mut buf)
        .expect("the datagram reached node_port_ip");
    assert_eq!(&buf[..n], b"query");
    assert_eq!(from.ip(), std::net::IpAddr::V4(NODE_ADDR));
    server.send_to(b"answer", from).unwrap();
    let n = client
        .recv(&mut buf)
        .expect("the reply, un-NATed to the address the client sent to");
    assert_eq!(&buf[..n], b"answer");
}

#[test]
fn replacing_the_table_swaps_the_port_set_whole() {
    let node = netns_or_skip!();
    let switch = netns_or_skip!();
    topology(&node, &switch);
    listen_at_node_port_ip(&switch.path(), 30080);
    listen_at_node_port_ip(&switch.path(), 30081);
    let nat = |tcp_ports: Vec<u16>| NodePortNat {
        node_port_ip: NODE_PORT_IP,
        tcp_ports,
        udp_ports: vec![],
    };
    nftables_in(&node.path(), |nft| {
        nft.replace_nodeport_table(&nat(vec![30080])).unwrap();
        nft.replace_nodeport_table(&nat(vec![30081])).unwrap();
    });
    let to = |port| SocketAddr::from((NODE_ADDR, port));
    assert_eq!(
        connect_from(&node.path(), to(30080)),
        Err(ErrorKind::ConnectionRefused)
    );
    assert!(connect_from(&node.path(), to(30081)).is_ok());
}

#[test]
fn deleting_a_table_that_is_not_there_succeeds() {
    let node = netns_or_skip!();
    nftables_in(&node.path(), |nft| {
        nft.delete_nodeport_table().unwrap();
        nft.delete_nodeport_table().unwrap();
    });
}

#[test]
fn port_zero_is_refused_before_anything_is_sent() {
    let node = netns_or_skip!();
    nftables_in(&node.path(), |nft| {
        let err = nft
            .replace_nodeport_table(&NodePortNat {
                node_port_ip: NODE_PORT_IP,
                tcp_ports: vec![0],
                udp_ports: vec![],
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("port 0 is not a NodePort"),
            "{err}"
        );
    });
}

#[test]
fn kernel_refusal_names_the_failing_message() {
    // Without CAP_NET_ADMIN over the namespace nothing can be changed: drop it on a thread of
    // our own and read the error (nfnetlink refuses the batch at its BEGIN message).
    let node = netns_or_skip!();
    let err = in_netns(&node.path(), || {
        let mut nft = Nftables::new().unwrap();
        std::thread::spawn(move || {
            drop_net_admin();
            nft.delete_nodeport_table().unwrap_err().to_string()
        })
        .join()
        .unwrap()
    })
    .unwrap();
    assert!(
        err.starts_with(
            "delete nf_tables table ip podswitch: begin the batch: Operation not permitted"
        ),
        "{err}"
    );
    assert!(err.contains("CAP_NET_ADMIN"), "{err}");
}

/// Removes CAP_NET_ADMIN from the calling thread's effective set.
fn drop_net_admin() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_NET_ADMIN: u32 = 12;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget/capset read and write exactly the header and two data structs given.
    unsafe {
        assert_eq!(
            libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()),
            0
        );
        data[0].effective &= !(1 << CAP_NET_ADMIN);
        assert_eq!(
            libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()),
            0
        );
    }
}
