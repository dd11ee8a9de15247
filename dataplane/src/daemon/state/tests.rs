//! The configuration model's apply and validation, against memory and probe queues.

use super::*;
use crate::daemon::error::{OpError, PortError};
use crate::ports::memory::MemoryQueue;
use crate::ports::PortIo;
use crate::tables::{NextHops, RouteTarget};
use podswitch_proto::{PortKind, RouteSpec};
use std::sync::{Arc, Mutex};

/// What happened to probe queues, in order: `"released 3"`, `"dropped 3"`.
pub(crate) type ProbeLog = Arc<Mutex<Vec<String>>>;

/// A queue that records being released and dropped.
#[derive(Debug)]
pub(crate) struct Probe {
    id: PortId,
    log: ProbeLog,
}

impl PortQueue for Probe {
    fn port(&self) -> PortId {
        self.id
    }
    fn rx_burst(&mut self, _: &mut PortIo<'_>, _: &mut crate::batch::Batch) {}
    fn tx_burst(&mut self, io: &mut PortIo<'_>, pkts: &mut Vec<crate::batch::Packet>) {
        for p in pkts.drain(..) {
            io.pool.put(p.buf);
        }
    }
    fn release_device(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("released {}", self.id));
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.log
            .lock()
            .unwrap()
            .push(format!("dropped {}", self.id));
    }
}

/// Makes `queues` probe queues per port, each port a new persistent device.
pub(crate) struct ProbeFactory {
    pub(crate) log: ProbeLog,
    pub(crate) queues: usize,
}

impl PortFactory for ProbeFactory {
    fn create(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        _: &NodeSpec,
    ) -> Result<CreatedPort, PortError> {
        let peer_mac = match spec.role {
            PortRole::Pod { mac, .. } => mac,
            PortRole::Host { mac } => mac.unwrap_or(MacAddr::new(2, 0, 0, 0, 0, 0xfe)),
            PortRole::Uplink { .. } => MacAddr::new(2, 0, 0, 0, 0, 0xfd),
        };
        Ok(CreatedPort {
            afxdp: None,
            queues: (0..self.queues)
                .map(|_| {
                    Box::new(Probe {
                        id,
                        log: self.log.clone(),
                    }) as Box<dyn PortQueue>
                })
                .collect(),
            peer_mac,
            new_device: true,
        })
    }
}

struct Memory {
    fail_on: Option<String>,
}

impl PortFactory for Memory {
    fn create(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        _: &NodeSpec,
    ) -> Result<CreatedPort, PortError> {
        if self.fail_on.as_deref() == Some(spec.name.as_str()) {
            return Err(PortError::Refused(format!("cannot create {}", spec.name)));
        }
        let peer_mac = match spec.role {
            PortRole::Pod { mac, .. } => mac,
            PortRole::Host { mac } => mac.unwrap_or(MacAddr::new(2, 0, 0, 0, 0, 0xfe)),
            PortRole::Uplink { .. } => MacAddr::new(2, 0, 0, 0, 0, 0xfd),
        };
        Ok(CreatedPort {
            afxdp: None,
            queues: vec![Box::new(MemoryQueue::new(id))],
            peer_mac,
            new_device: false,
        })
    }
}

pub(crate) fn node() -> Op {
    Op::SetNode(NodeSpec {
        pod_cidr: "10.244.1.0/24".parse().unwrap(),
        gateway: "10.244.1.1".parse().unwrap(),
        gateway_mac: None,
        service_cidr: None,
        node_port_ip: None,
    })
}

pub(crate) fn pod(name: &str, ip: &str) -> Op {
    Op::AddPort(PortSpec {
        name: name.into(),
        kind: PortKind::Tap,
        role: PortRole::Pod {
            mac: "02:00:00:00:00:02".parse().unwrap(),
            ip: ip.parse().unwrap(),
            namespace: None,
            pod: None,
        },
        mtu: 1500,
        offloads: true,
        netns: None,
        queue_ids: Vec::new(),
    })
}

/// A node (pod CIDR 10.244.1.0/24, gateway .1, Service CIDR 10.96.0.0/16, NodePorts at
/// `node_port_ip`), with the host port `psw0` (id 0, uid 7) when `host_port`: the
/// configuration the daemon's kernel-side syncs (NodePort table, frontend routes) start from.
pub(crate) fn node_config(node_port_ip: Option<Ipv4Addr>, host_port: bool) -> Config {
    let mut c = Config {
        node: Some(NodeSpec {
            pod_cidr: "10.244.1.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 244, 1, 1),
            gateway_mac: None,
            service_cidr: Some("10.96.0.0/16".parse().unwrap()),
            node_port_ip,
        }),
        ..Config::default()
    };
    if host_port {
        let spec = PortSpec {
            name: "psw0".into(),
            kind: PortKind::default(),
            role: PortRole::Host { mac: None },
            mtu: 1500,
            netns: None,
            offloads: false,
            queue_ids: Vec::new(),
        };
        let port = PortConfig {
            afxdp: None,
            id: 0,
            spec,
            peer_mac: MacAddr([2, 0, 0, 0, 0, 1]),
            uid: 7,
        };
        Arc::make_mut(&mut c.ports).insert("psw0".into(), port);
    }
    c
}

/// An uplink port `name` at 192.168.1.1, routed or VXLAN (VNI 42).
pub(crate) fn uplink(name: &str, vxlan: bool) -> Op {
    Op::AddPort(PortSpec {
        name: name.into(),
        kind: PortKind::Tap,
        role: PortRole::Uplink {
            mac: "0a:58:c0:a8:01:01".parse().unwrap(),
            ip: Ipv4Addr::new(192, 168, 1, 1),
            encap: if vxlan {
                podswitch_proto::Encap::Vxlan {
                    vni: 42,
                    port: 4789,
                }
            } else {
                podswitch_proto::Encap::Direct
            },
            gateway: None,
        },
        mtu: 1500,
        offloads: false,
        netns: None,
        queue_ids: Vec::new(),
    })
}

fn node_route(prefix: &str, ip: &str) -> Op {
    Op::AddRoute(RouteSpec {
        prefix: prefix.parse().unwrap(),
        target: ProtoTarget::Node {
            ip: ip.parse().unwrap(),
            vtep_mac: None,
            gateway: None,
        },
    })
}

fn uplink_route(prefix: &str, gateway: Option<&str>) -> Op {
    Op::AddRoute(RouteSpec {
        prefix: prefix.parse().unwrap(),
        target: ProtoTarget::Uplink {
            gateway: gateway.map(|g| g.parse().unwrap()),
        },
    })
}

#[test]
fn an_uplink_and_routes_to_other_nodes_compile_into_next_hops_and_bad_ones_are_refused() {
    let mut c = Config::default();
    let mut up = uplink("up", true);
    let underlay_gateway = podswitch_proto::UplinkGateway {
        ip: Ipv4Addr::new(192, 168, 1, 254),
        segment: "192.168.1.0/24".parse().unwrap(),
    };
    if let Op::AddPort(PortSpec {
        role: PortRole::Uplink { gateway, .. },
        ..
    }) = &mut up
    {
        *gateway = Some(underlay_gateway);
    }
    apply(&mut c, &[node(), up]).unwrap();
    let epoch = c.route_epoch;
    apply(
        &mut c,
        &[
            node_route("10.244.2.0/24", "192.168.1.2"),
            node_route("10.244.3.0/24", "192.168.1.3"),
            node_route("10.244.4.0/24", "192.168.1.2"),
            Op::AddRoute(RouteSpec {
                prefix: "10.244.5.0/24".parse().unwrap(),
                target: ProtoTarget::Node {
                    ip: "192.168.5.5".parse().unwrap(),
                    vtep_mac: None,
                    gateway: Some("192.168.1.254".parse().unwrap()),
                },
            }),
            uplink_route("0.0.0.0/0", Some("192.168.1.254")),
            uplink_route("192.168.1.0/24", None),
        ],
    )
    .unwrap();
    assert_ne!(c.route_epoch, epoch, "cached outputs are routed again");
    let t = c.compile(MacAddr::new(2, 0, 0, 0, 0, 1), &Default::default(), None);
    let u = t.uplink.unwrap();
    assert_eq!((u.port, u.ip), (0, Ipv4Addr::new(192, 168, 1, 1)));
    assert_eq!(
        u.encap,
        crate::tables::Encap::Vxlan {
            vni: 42,
            port: 4789
        }
    );
    let hop = |dst: &str| match t.fib.lookup(dst.parse().unwrap()) {
        Some(RouteTarget::Node(i)) => *t.next_hops.get(i).unwrap(),
        other => panic!("{dst}: {other:?}"),
    };
    assert_eq!(hop("10.244.2.9").ip, Ipv4Addr::new(192, 168, 1, 2));
    assert_eq!(hop("10.244.3.9").ip, Ipv4Addr::new(192, 168, 1, 3));
    assert_eq!(
        hop("10.244.3.9").vtep_mac,
        Some(MacAddr::new(0x0a, 0x58, 10, 244, 3, 1)),
        "default inner MAC: the other node's gateway MAC"
    );
    assert_eq!(hop("10.244.3.9").via, Ipv4Addr::new(192, 168, 1, 3));
    // A node behind the underlay gateway: encapsulated to it, framed to the gateway.
    let far = hop("10.244.5.9");
    let gateway = Ipv4Addr::new(192, 168, 1, 254);
    assert_eq!((far.ip, far.via), (Ipv4Addr::new(192, 168, 5, 5), gateway));
    // Egress: to the gateway unencapsulated, or on the segment to the address itself.
    let to_gateway = match t.fib.lookup(Ipv4Addr::new(8, 8, 8, 8)) {
        Some(RouteTarget::Egress(i)) => *t.next_hops.get(i).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!((to_gateway.via, to_gateway.vtep_mac), (gateway, None));
    // The uplink's own gateway is the same hop, for the replies to outside clients.
    let (segment, hop) = t.uplink.unwrap().gateway.expect("the uplink's gateway");
    assert_eq!(segment, underlay_gateway.segment);
    assert_eq!(*t.next_hops.get(hop).unwrap(), to_gateway);
    assert_eq!(u.gateway_hop(), Some(hop));
    assert_eq!(
        u.reply_hop(Ipv4Addr::new(203, 0, 113, 9)),
        Some(NextHops::UPLINK_GATEWAY)
    );
    assert_eq!(
        u.reply_hop(Ipv4Addr::new(192, 168, 1, 9)),
        Some(NextHops::ON_LINK)
    );
    assert_eq!(
        t.fib.lookup(Ipv4Addr::new(192, 168, 1, 77)),
        Some(RouteTarget::Egress(NextHops::SEGMENT)),
        "on the segment: to the address itself"
    );
    // One next hop per (address, via, inner MAC): the third route's prefix gives another
    // MAC; the far node and the egress gateway are two more.
    assert_eq!(t.next_hops.iter().count(), 5);
    assert!(t.next_hops.contains(Ipv4Addr::new(192, 168, 1, 3)));
    assert!(
        t.next_hops.contains(gateway),
        "the gateway is resolved by ARP"
    );
    assert!(
        !t.next_hops.contains(Ipv4Addr::new(192, 168, 5, 5)),
        "a node behind the gateway is not"
    );
    assert_eq!(
        t.next_hops.index_of(gateway),
        None,
        "the gateway is no node (no tunnel to it)"
    );

    let before = c.clone();
    for (ops, needle) in [
        (
            vec![uplink("up2", false)],
            "already an uplink port (\"up\")",
        ),
        (
            vec![node_route("10.244.1.0/24", "192.168.1.9")],
            "this node's own pod CIDR",
        ),
        (
            vec![node_route("10.244.9.0/24", "10.244.1.5")],
            "inside this node's pod CIDR",
        ),
        (
            vec![node_route("10.244.9.0/24", "255.255.255.255")],
            "unicast",
        ),
        (
            vec![uplink_route("0.0.0.0/0", Some("224.0.0.1"))],
            "the gateway must be a unicast address",
        ),
        (
            vec![uplink_route("0.0.0.0/0", Some("10.244.1.9"))],
            "out of the uplink via 10.244.1.9: the gateway is inside this node's pod CIDR",
        ),
        (
            vec![uplink_route("10.244.1.0/24", None)],
            "route 10.244.1.0/24 out of the uplink: the prefix is this node's own pod CIDR",
        ),
        (
            vec![uplink_route("0.0.0.0/0", Some("192.168.1.1"))],
            "that is the uplink's own address",
        ),
        (
            vec![Op::AddRoute(RouteSpec {
                prefix: "10.244.9.0/24".parse().unwrap(),
                target: ProtoTarget::Port { port: "up".into() },
            })],
            "is the uplink",
        ),
    ] {
        let err = apply(&mut c, &ops).unwrap_err();
        assert!(err.contains(needle), "{err}");
        assert_eq!(c, before);
    }
    let mut d = Config::default();
    apply(&mut d, &[node()]).unwrap();
    let mut bad_ip = uplink("u", false);
    if let Op::AddPort(PortSpec {
        role: PortRole::Uplink { ip, .. },
        ..
    }) = &mut bad_ip
    {
        *ip = Ipv4Addr::new(10, 244, 1, 7);
    }
    assert!(apply(&mut d, &[bad_ip])
        .unwrap_err()
        .contains("inside the pod CIDR"));
    for (g, segment, needle) in [
        (
            "192.168.2.254",
            "192.168.2.0/24",
            "does not hold the uplink's address",
        ),
        ("192.168.1.1", "192.168.1.0/24", "other than the uplink's"),
        (
            "255.255.255.255",
            "192.168.1.0/24",
            "must be a unicast address",
        ),
    ] {
        let mut bad_gateway = uplink("u", false);
        if let Op::AddPort(PortSpec {
            role: PortRole::Uplink { gateway, .. },
            ..
        }) = &mut bad_gateway
        {
            *gateway = Some(podswitch_proto::UplinkGateway {
                ip: g.parse().unwrap(),
                segment: segment.parse().unwrap(),
            });
        }
        let e = apply(&mut d, &[bad_gateway]).unwrap_err();
        assert!(e.contains(needle), "{e}");
    }
    let mut bad_vni = uplink("u", true);
    if let Op::AddPort(PortSpec {
        role: PortRole::Uplink { encap, .. },
        ..
    }) = &mut bad_vni
    {
        *encap = podswitch_proto::Encap::Vxlan {
            vni: 1 << 24,
            port: 4789,
        };
    }
    assert!(apply(&mut d, &[bad_vni]).unwrap_err().contains("24-bit"));
}

fn apply(c: &mut Config, ops: &[Op]) -> Result<Changes, String> {
    c.apply(ops, false, 16, &mut Memory { fail_on: None })
        .map_err(|e| e.to_string())
}

#[test]
fn pods_get_connected_routes_and_ids() {
    let mut c = Config::default();
    let ch = apply(
        &mut c,
        &[node(), pod("a", "10.244.1.2"), pod("b", "10.244.1.3")],
    )
    .unwrap();
    assert_eq!(ch.added.len(), 2);
    let t = c.compile(
        MacAddr::new(2, 0x50, 0x53, 0, 0, 1),
        &crate::tables::Tables::default(),
        None,
    );
    assert_eq!(
        t.fib.lookup("10.244.1.3".parse().unwrap()),
        Some(RouteTarget::Port(1))
    );
    assert_eq!(
        t.node.unwrap().gateway_ip,
        "10.244.1.1".parse::<Ipv4Addr>().unwrap()
    );
}

#[test]
fn a_failing_op_leaves_everything_as_it_was() {
    let mut c = Config::default();
    apply(&mut c, &[node(), pod("a", "10.244.1.2")]).unwrap();
    let before = c.clone();
    let err = apply(&mut c, &[pod("b", "10.244.1.3"), pod("c", "10.244.1.2")]).unwrap_err();
    assert!(
        err.contains("op 2") && err.contains("already bound") && err.contains("\"a\""),
        "{err}"
    );
    assert_eq!(c, before);
    let err = c
        .apply(
            &[pod("b", "10.244.1.3")],
            false,
            16,
            &mut Memory {
                fail_on: Some("b".into()),
            },
        )
        .unwrap_err();
    assert_eq!(err.index, 1);
    assert!(
        matches!(&err.error, OpError::Create(e) if matches!(&**e, PortError::Refused(m) if m == "cannot create b")),
        "{err}"
    );
    assert_eq!(c, before);
}

#[test]
fn invalid_ops_are_refused_with_the_object_named() {
    let mut c = Config::default();
    assert!(apply(&mut c, &[pod("a", "10.244.1.2")])
        .unwrap_err()
        .contains("set_node"));
    apply(&mut c, &[node()]).unwrap();
    for (op, needle) in [
        (pod("a", "10.9.9.9"), "pod_cidr"),
        (pod("a", "10.244.1.1"), "gateway"),
        (pod("a", "10.244.1.0"), "host address"),
        (pod("a", "10.244.1.255"), "host address"),
        (Op::DelPort { name: "zz".into() }, "\"zz\""),
        (
            pod("a-name-of-16-byt", "10.244.1.2"),
            "16 bytes; Linux allows at most 15",
        ),
        (
            Op::AddRoute(RouteSpec {
                prefix: "0.0.0.0/0".parse().unwrap(),
                target: ProtoTarget::Port {
                    port: "nope".into(),
                },
            }),
            "nope",
        ),
        (
            Op::DelRoute {
                prefix: "10.0.0.0/8".parse().unwrap(),
            },
            "10.0.0.0/8",
        ),
        (
            Op::SetNode(NodeSpec {
                pod_cidr: "10.244.1.0/24".parse().unwrap(),
                gateway: "10.244.1.0".parse().unwrap(),
                gateway_mac: None,
                service_cidr: None,
                node_port_ip: None,
            }),
            "host address",
        ),
    ] {
        let err = apply(&mut c, &[op]).unwrap_err();
        assert!(err.contains(needle), "{err} should mention {needle}");
    }
}

#[test]
fn a_port_used_by_a_route_cannot_be_deleted_and_ids_are_not_reused_at_once() {
    let mut c = Config::default();
    apply(&mut c, &[node(), pod("a", "10.244.1.2")]).unwrap();
    let route = Op::AddRoute(RouteSpec {
        prefix: "192.168.0.0/16".parse().unwrap(),
        target: ProtoTarget::Port { port: "a".into() },
    });
    apply(&mut c, &[route]).unwrap();
    assert!(apply(&mut c, &[Op::DelPort { name: "a".into() }])
        .unwrap_err()
        .contains("192.168.0.0/16"));
    apply(
        &mut c,
        &[
            Op::DelRoute {
                prefix: "192.168.0.0/16".parse().unwrap(),
            },
            Op::DelPort { name: "a".into() },
        ],
    )
    .unwrap();
    apply(&mut c, &[pod("b", "10.244.1.3")]).unwrap();
    assert_eq!(
        c.ports["b"].id, 1,
        "freed id 0 is not handed out again right away"
    );
}

/// Found by fuzzing: with ids wrapping around, a transaction that deletes a port and adds
/// another must not hand the new port the id it just freed (its queues were lost).
#[test]
fn an_id_freed_in_a_transaction_is_not_reused_by_it() {
    let mut c = Config::default();
    let mut f = Memory { fail_on: None };
    c.apply(
        &[node(), pod("a", "10.244.1.2"), pod("b", "10.244.1.3")],
        false,
        2,
        &mut f,
    )
    .unwrap();
    let err = c
        .apply(
            &[Op::DelPort { name: "a".into() }, pod("c", "10.244.1.4")],
            false,
            2,
            &mut f,
        )
        .unwrap_err();
    assert!(matches!(err.error, OpError::NoFreeId(2)), "{err}");
    let ch = c
        .apply(&[Op::DelPort { name: "a".into() }], false, 2, &mut f)
        .unwrap();
    assert_eq!(ch.removed, vec![0]);
    let ch = c
        .apply(&[pod("c", "10.244.1.4")], false, 2, &mut f)
        .unwrap();
    assert_eq!(
        ch.added.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        vec![0]
    );
}

#[test]
fn a_port_added_and_deleted_in_one_transaction_reaches_no_worker() {
    let mut c = Config::default();
    let ch = apply(
        &mut c,
        &[
            node(),
            pod("a", "10.244.1.2"),
            Op::DelPort { name: "a".into() },
        ],
    )
    .unwrap();
    assert!(ch.added.is_empty() && ch.removed.is_empty());
    assert!(c.ports.is_empty());
}

#[test]
fn replace_keeps_unchanged_ports_and_removes_the_rest() {
    let mut c = Config::default();
    apply(
        &mut c,
        &[node(), pod("a", "10.244.1.2"), pod("b", "10.244.1.3")],
    )
    .unwrap();
    let (a, b) = (c.ports["a"].id, c.ports["b"].id);
    let mut f = Memory { fail_on: None };
    // The whole configuration again, minus b, plus c, with a unchanged.
    let ch = c
        .apply(
            &[node(), pod("a", "10.244.1.2"), pod("c", "10.244.1.4")],
            true,
            16,
            &mut f,
        )
        .unwrap();
    assert_eq!(c.ports["a"].id, a, "a kept its id and queues");
    assert_eq!(ch.added.len(), 1, "only c is new");
    assert_ne!(
        ch.added[0].0, b,
        "c does not take b's id while b is still polled"
    );
    assert_eq!(ch.removed, vec![b]);
    assert!(ch.kept_devices.is_empty());
    assert!(!c.ports.contains_key("b"));
}

#[test]
fn replace_recreates_a_changed_port_on_the_same_device() {
    let mut c = Config::default();
    apply(&mut c, &[node(), pod("a", "10.244.1.2")]).unwrap();
    let old = c.ports["a"].id;
    let mut f = Memory { fail_on: None };
    let ch = c
        .apply(&[node(), pod("a", "10.244.1.9")], true, 16, &mut f)
        .unwrap();
    assert_eq!(ch.removed, vec![old]);
    assert_eq!(
        ch.kept_devices,
        vec![old],
        "the new port uses the old one's device"
    );
    assert_eq!(ch.added.len(), 1);
}

#[test]
fn a_failing_replace_changes_nothing() {
    let mut c = Config::default();
    apply(&mut c, &[node(), pod("a", "10.244.1.2")]).unwrap();
    let before = c.clone();
    let mut f = Memory { fail_on: None };
    assert!(c
        .apply(
            &[node(), pod("a", "10.244.1.2"), pod("b", "10.244.1.2")],
            true,
            16,
            &mut f
        )
        .is_err());
    assert_eq!(c, before);
}

#[test]
fn a_failing_op_releases_the_devices_the_transaction_created() {
    let mut c = Config::default();
    let log = ProbeLog::default();
    let mut f = ProbeFactory {
        log: log.clone(),
        queues: 1,
    };
    c.apply(&[node()], false, 16, &mut f).unwrap();
    let before = c.clone();
    let err = c
        .apply(
            &[pod("a", "10.244.1.2"), pod("b", "10.244.1.2")],
            false,
            16,
            &mut f,
        )
        .unwrap_err();
    assert!(
        matches!(err.error, OpError::PodIpTaken { ref port, .. } if port == "a"),
        "{err}"
    );
    assert!(err
        .to_string()
        .starts_with("op 2 (add_port \"b\"): pod IP 10.244.1.2"));
    assert_eq!(c, before);
    assert_eq!(*log.lock().unwrap(), vec!["released 0", "dropped 0"]);
}

#[test]
fn a_port_added_and_deleted_in_one_transaction_releases_its_new_device() {
    let mut c = Config::default();
    let log = ProbeLog::default();
    let mut f = ProbeFactory {
        log: log.clone(),
        queues: 1,
    };
    let ch = c
        .apply(
            &[
                node(),
                pod("a", "10.244.1.2"),
                Op::DelPort { name: "a".into() },
            ],
            false,
            16,
            &mut f,
        )
        .unwrap();
    assert!(ch.added.is_empty() && ch.new_devices.is_empty());
    assert_eq!(*log.lock().unwrap(), vec!["released 0", "dropped 0"]);
}

/// What a compiled snapshot says, as comparable data: ports, host port, routes, epochs, the
/// Services (id, spec) and the policies' pods.
fn compiled_view(t: &crate::tables::Tables) -> String {
    let routes: Vec<_> = t.fib.routes().collect();
    let services: Vec<_> = t.services.iter().map(|e| (e.id, e.spec.clone())).collect();
    let mut policies: Vec<_> = t
        .policies
        .iter()
        .map(|(ip, p)| format!("{ip}: {p:?}"))
        .collect();
    policies.sort();
    format!(
        "{:?}\n{:?}\n{:?}\n{:?}\n{}/{}\n{:?}\n{policies:?}\n{:?} {:?}",
        t.node,
        t.ports,
        t.host_port,
        routes,
        t.route_epoch,
        t.policy_epoch,
        services,
        t.uplink,
        t.next_hops.iter().collect::<Vec<_>>()
    )
}

/// Random transactions (pods, routes, Services and policies coming and going, some refused):
/// compiling each configuration from the previous one and its snapshot, sharing what the
/// transaction did not touch, gives what compiling it from nothing gives.
#[test]
fn compiling_since_the_previous_configuration_equals_compiling_from_scratch() {
    let mac = MacAddr::new(2, 0x50, 0x53, 0, 0, 1);
    let mut next = crate::testkit::xorshift(0x2545_f491_4f6c_dd1du64);
    let mut config = Config::default();
    apply(&mut config, &[node()]).unwrap();
    let mut tables = config.compile(mac, &crate::tables::Tables::default(), None);
    let mut applied = 0;
    for round in 0..3000 {
        // One to three ops a transaction (a Service removed and another added keeps the count).
        let ops: Vec<Op> = (0..1 + next() % 3).map(|_| random_op(&mut next)).collect();
        let before = config.clone();
        if apply(&mut config, &ops).is_err() {
            assert_eq!(
                config, before,
                "round {round}: a refused transaction changed it"
            );
            continue;
        }
        let incremental = config.compile(mac, &tables, Some(&before));
        let scratch = config.compile(mac, &crate::tables::Tables::default(), None);
        assert_eq!(
            compiled_view(&incremental),
            compiled_view(&scratch),
            "round {round}: {ops:?}"
        );
        tables = incremental;
        applied += 1;
    }
    assert!(applied > 600, "only {applied} of 3000 transactions applied");
}

/// One op of [`compiling_since_the_previous_configuration_equals_compiling_from_scratch`]'s
/// transactions: pods, routes, Services and policies coming and going, some refused.
fn random_op(next: &mut impl FnMut() -> u64) -> Op {
    use podswitch_proto::{BackendSpec, DirectionSpec, L4Protocol, PolicySpec, ServiceSpec};
    let k = next() % 6;
    match next() % 9 {
        0 | 1 if k == 5 => uplink("p5", next() % 2 == 0),
        0 | 1 => pod(&format!("p{k}"), &format!("10.244.1.{}", 10 + k)),
        2 => Op::DelPort {
            name: format!("p{k}"),
        },
        3 if next() % 2 == 0 => Op::AddRoute(RouteSpec {
            prefix: format!("10.{k}.0.0/16").parse().unwrap(),
            target: ProtoTarget::Node {
                ip: Ipv4Addr::new(192, 168, 1, 2 + (next() % 3) as u8),
                vtep_mac: None,
                gateway: None,
            },
        }),
        3 => Op::AddRoute(RouteSpec {
            prefix: format!("10.{k}.0.0/16").parse().unwrap(),
            target: podswitch_proto::RouteTarget::Port {
                port: format!("p{}", next() % 6),
            },
        }),
        4 => Op::DelRoute {
            prefix: format!("10.{k}.0.0/16").parse().unwrap(),
        },
        // Six Service ports over four addresses: some transactions take another's frontend
        // (refused), some move one from a Service port to another.
        5 => Op::SetService(ServiceSpec::cluster_ip(
            format!("default/s{k}:http"),
            L4Protocol::Tcp,
            Ipv4Addr::new(10, 96, 0, 1 + (next() % 4) as u8),
            80,
            (0..next() % 3)
                .map(|j| BackendSpec::ready(Ipv4Addr::new(10, 244, 1, 10 + j as u8), 8080))
                .collect(),
        )),
        6 => Op::DelService {
            name: format!("default/s{k}:http"),
        },
        7 => Op::SetPolicy(PolicySpec {
            port: format!("p{k}"),
            ingress: Some(DirectionSpec {
                policies: vec![format!("default/np{}", next() % 3)],
                rules: Vec::new(),
            }),
            egress: None,
        }),
        _ => Op::DelPolicy {
            port: format!("p{k}"),
        },
    }
}
