//! Transactions of ops applied to `podswitchd`'s configuration model, then compiled to tables.
//!
//! Two input forms, picked by the first byte:
//! - `[`: the input is a JSON `Vec<Op>`, applied as one transaction to an empty configuration
//!   (max_ports 16), as a client would send it.
//! - anything else: the bytes drive a generator of up to 4 transactions of up to 8 ops each
//!   (the first mostly preceded by a valid `set_node`), drawn from small pools of names, addresses and MACs so that ops refer to each other
//!   (ports named by routes, pod IPs inside the pod CIDR, ...), with a small `max_ports` and a
//!   port name the factory refuses to create. Every generated op goes through JSON and back
//!   before it is applied, so only ops a client could send are used.
//!
//! Checked after every transaction:
//! - on `Err`, the configuration is exactly as before;
//! - on `Ok`, `compile` does not panic; every pod port has its /32 route to itself, which is
//!   also what a lookup of its IP finds; every port is in the tables with its binding;
//! - on `Ok`, the `Changes` handed to the workers cover the new configuration: every port
//!   that is new (a name or id not there before) is in `added` and not in `removed`, and every
//!   port that went away is in `removed` (the daemon adds queues first, removes ports last).

#![no_main]

use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use podswitch_dataplane::batch::PortId;
use podswitch_dataplane::daemon::error::PortError;
use podswitch_dataplane::daemon::state::{Changes, Config, CreatedPort, PortFactory};
use podswitch_dataplane::ports::memory::MemoryQueue;
use podswitch_dataplane::tables::{Binding, NextHops, Route, RouteTarget, Tables};
use podswitch_packet::MacAddr;
use podswitch_proto::{
    Ipv4Prefix, NodeSpec, Op, PortKind, PortRole, PortSpec, RouteSpec, RouteTarget as ProtoTarget,
};
use std::net::Ipv4Addr;

/// The daemon's MAC when `set_node` gives none.
const SWITCH_MAC: MacAddr = MacAddr([0x02, 0x50, 0x53, 0x00, 0x00, 0x01]);

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&b'[') {
        if let Ok(ops) = serde_json::from_slice::<Vec<Op>>(data) {
            let mut config = Config::default();
            apply_and_check(&mut config, &ops, false, 16, &mut Memory { fail_on: None });
        }
        return;
    }
    let _ = generated(&mut Unstructured::new(data));
});

fn generated(u: &mut Unstructured) -> arbitrary::Result<()> {
    let max_ports = u.int_in_range(1..=6)?;
    let mut factory = Memory {
        fail_on: if u.ratio(1, 4)? { Some(name(u)?) } else { None },
    };
    let mut config = Config::default();
    for tx in 0..u.int_in_range(1..=4)? {
        let mut ops = Vec::new();
        // Mostly start from the usual node, since no port can be added before one.
        if tx == 0 && u.ratio(7, 8)? {
            ops.push(Op::SetNode(NodeSpec {
                pod_cidr: Ipv4Prefix::new(Ipv4Addr::new(10, 244, 1, 0), 24).expect("valid"),
                gateway: Ipv4Addr::new(10, 244, 1, 1),
                gateway_mac: None,
                service_cidr: None,
                node_port_ip: None,
            }));
        }
        for _ in 0..u.int_in_range(0..=8)? {
            ops.push(through_json(&op(u)?));
        }
        // A quarter of the transactions describe the whole configuration (replace).
        let replace = u.ratio(1, 4)?;
        apply_and_check(&mut config, &ops, replace, max_ports, &mut factory);
    }
    Ok(())
}

/// A port factory on memory queues, as in the tests of `daemon::state`; it refuses to create
/// the port named `fail_on`, as a tap that cannot be created.
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
            queues: vec![Box::new(MemoryQueue::new(id))],
            peer_mac,
            new_device: false,
            afxdp: None,
        })
    }
}

fn apply_and_check(
    config: &mut Config,
    ops: &[Op],
    replace: bool,
    max_ports: usize,
    factory: &mut Memory,
) {
    let before = config.clone();
    match config.apply(ops, replace, max_ports, factory) {
        Err(_) => assert_eq!(*config, before, "a failed transaction changed the config"),
        Ok(changes) => {
            check_compiled(config);
            check_changes(&before, config, &changes, ops);
        }
    }
}

fn check_compiled(config: &Config) {
    let tables = config.compile(SWITCH_MAC, &Tables::default(), None);
    let routes: Vec<Route> = tables.fib.routes().collect();
    // Every index a route holds names a hop of its kind: a node's has a tunnel MAC, an
    // egress gateway's none; `SEGMENT` is the destination itself.
    for r in &routes {
        let hop = |i| tables.next_hops.get(i).copied();
        match r.target {
            RouteTarget::Node(i) => assert!(hop(i).is_some_and(|h| h.vtep_mac.is_some()), "{r:?}"),
            RouteTarget::Egress(i) => assert!(
                i == NextHops::SEGMENT || hop(i).is_some_and(|h| h.vtep_mac.is_none()),
                "{r:?}"
            ),
            RouteTarget::Port(_) | RouteTarget::Host | RouteTarget::Unreachable => {}
        }
    }
    for (name, port) in config.ports.iter() {
        let entry = tables
            .port(port.id)
            .unwrap_or_else(|| panic!("port {name:?} (id {}) missing from the tables", port.id));
        assert_eq!(&*entry.name, name.as_str());
        assert_eq!(entry.peer_mac, port.peer_mac);
        assert_eq!(entry.mtu, port.spec.mtu);
        match port.spec.role {
            PortRole::Pod { ip, .. } => {
                assert_eq!(entry.binding, Binding::Pod { ip });
                let connected = Route {
                    prefix: ip,
                    len: 32,
                    target: RouteTarget::Port(port.id),
                };
                assert!(
                    routes.contains(&connected),
                    "pod port {name:?} has no /32 route to {ip}: {routes:?}"
                );
                assert_eq!(
                    tables.fib.lookup(ip),
                    Some(RouteTarget::Port(port.id)),
                    "lookup of pod {name:?}'s IP {ip}"
                );
            }
            PortRole::Host { .. } => {
                assert_eq!(entry.binding, Binding::Host);
                assert_eq!(tables.host_port, Some(port.id));
            }
            PortRole::Uplink { ip, gateway, .. } => {
                assert_eq!(entry.binding, Binding::Uplink);
                assert_eq!(tables.uplink.map(|u| (u.port, u.ip)), Some((port.id, ip)));
                let hop = tables.uplink.and_then(|u| u.gateway).map(|(_, hop)| hop);
                let via = hop.and_then(|i| tables.next_hops.get(i)).map(|h| h.via);
                assert_eq!(
                    via,
                    gateway.map(|g| g.ip),
                    "the uplink's gateway is its hop"
                );
            }
        }
    }
    let in_tables = tables.ports.iter().filter(|p| p.is_some()).count();
    assert_eq!(in_tables, config.ports.len(), "ports share an id");
}

fn check_changes(before: &Config, after: &Config, changes: &Changes, ops: &[Op]) {
    let added: Vec<PortId> = changes.added.iter().map(|(id, _)| *id).collect();
    let same = |a: &Config, name: &str, id: PortId| a.ports.get(name).is_some_and(|p| p.id == id);
    for (name, port) in after.ports.iter() {
        if !same(before, name, port.id) {
            assert!(
                added.contains(&port.id) && !changes.removed.contains(&port.id),
                "new port {name:?} (id {}) never reaches the workers: added {added:?}, \
                 removed {:?}; ops {ops:?}",
                port.id,
                changes.removed
            );
        }
    }
    for (name, port) in before.ports.iter() {
        if !same(after, name, port.id) {
            assert!(
                changes.removed.contains(&port.id),
                "port {name:?} (id {}) went away but is not in removed {:?}",
                port.id,
                changes.removed
            );
        }
    }
}

/// `op` encoded as JSON and decoded again: what the daemon would receive.
fn through_json(op: &Op) -> Op {
    let json = serde_json::to_string(op).expect("ops serialize");
    let back: Op = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("an op does not survive JSON: {e}: {json}"));
    assert_eq!(
        serde_json::to_string(&back).expect("ops serialize"),
        json,
        "JSON round trip changed the op"
    );
    back
}

fn op(u: &mut Unstructured) -> arbitrary::Result<Op> {
    Ok(match u.int_in_range(0..=9)? {
        0 => Op::SetNode(NodeSpec {
            pod_cidr: if u.ratio(3, 4)? {
                Ipv4Prefix::new(Ipv4Addr::new(10, 244, 1, 0), 24).expect("valid")
            } else {
                prefix(u)?
            },
            gateway: ip(u)?,
            gateway_mac: if u.arbitrary()? { Some(mac(u)?) } else { None },
            service_cidr: None,
            node_port_ip: None,
        }),
        1..=4 => Op::AddPort(PortSpec {
            name: name(u)?,
            kind: PortKind::Tap,
            role: if u.ratio(1, 8)? {
                PortRole::Uplink {
                    mac: mac(u)?,
                    ip: ip(u)?,
                    encap: podswitch_proto::Encap::Direct,
                    gateway: if u.arbitrary()? {
                        Some(podswitch_proto::UplinkGateway {
                            ip: ip(u)?,
                            segment: prefix(u)?,
                        })
                    } else {
                        None
                    },
                }
            } else if u.ratio(1, 4)? {
                PortRole::Host {
                    mac: if u.arbitrary()? { Some(mac(u)?) } else { None },
                }
            } else {
                PortRole::Pod {
                    mac: mac(u)?,
                    ip: ip(u)?,
                    namespace: if u.arbitrary()? {
                        Some(u.arbitrary()?)
                    } else {
                        None
                    },
                    pod: if u.arbitrary()? {
                        Some(u.arbitrary()?)
                    } else {
                        None
                    },
                }
            },
            mtu: {
                let any = u.arbitrary()?;
                *u.choose(&[1500, 1500, 68, 67, 9000, 9001, any])?
            },
            offloads: u.arbitrary()?,
            // A few namespace attachments, so that ports share devices now and then.
            netns: if u.ratio(1, 3)? {
                Some(podswitch_proto::NetnsAttach {
                    path: format!("/run/netns/p{}", u.int_in_range(0..=2)?),
                    ifname: "eth0".into(),
                })
            } else {
                None
            },
            queue_ids: Vec::new(),
        }),
        5 | 6 => Op::DelPort { name: name(u)? },
        7 | 8 => Op::AddRoute(RouteSpec {
            prefix: prefix(u)?,
            target: match u.int_in_range(0..=4)? {
                0 => ProtoTarget::Port { port: name(u)? },
                1 => ProtoTarget::Host,
                2 => ProtoTarget::Node {
                    ip: ip(u)?,
                    vtep_mac: None,
                    gateway: if u.arbitrary()? { Some(ip(u)?) } else { None },
                },
                3 => ProtoTarget::Uplink {
                    gateway: if u.arbitrary()? { Some(ip(u)?) } else { None },
                },
                _ => ProtoTarget::Unreachable,
            },
        }),
        _ => Op::DelRoute { prefix: prefix(u)? },
    })
}

/// Mostly one of a few names, so that ops meet; sometimes anything.
fn name(u: &mut Unstructured) -> arbitrary::Result<String> {
    if u.ratio(7, 8)? {
        Ok((*u.choose(&["a", "b", "c", "d", "host"])?).to_string())
    } else {
        u.arbitrary()
    }
}

/// Mostly an address in 10.244.1.0/24 (the usual pod CIDR), its edges included.
fn ip(u: &mut Unstructured) -> arbitrary::Result<Ipv4Addr> {
    Ok(match u.int_in_range(0..=7)? {
        0 => Ipv4Addr::from(u.arbitrary::<u32>()?),
        1 => Ipv4Addr::new(10, 244, u.arbitrary()?, u.arbitrary()?),
        2 => *u.choose(&[
            Ipv4Addr::new(10, 244, 1, 0),
            Ipv4Addr::new(10, 244, 1, 1),
            Ipv4Addr::new(10, 244, 1, 255),
        ])?,
        _ => Ipv4Addr::new(10, 244, 1, u.int_in_range(1..=6)?),
    })
}

fn prefix(u: &mut Unstructured) -> arbitrary::Result<Ipv4Prefix> {
    let any = u.int_in_range(0..=32)?;
    let len = *u.choose(&[0, 8, 16, 24, 30, 31, 32, any])?;
    Ok(Ipv4Prefix::new(ip(u)?, len).expect("len is at most 32"))
}

/// Mostly one of a few unicast MACs; sometimes any six bytes (multicast ones are refused).
fn mac(u: &mut Unstructured) -> arbitrary::Result<MacAddr> {
    if u.ratio(3, 4)? {
        Ok(MacAddr([2, 0, 0, 0, 0, u.int_in_range(1..=4)?]))
    } else {
        Ok(MacAddr(u.arbitrary()?))
    }
}
