//! The daemon's configuration model — node, ports, routes — and the two things done with it:
//! applying a transaction's ops (validated one by one against a copy, so a failed transaction
//! leaves the original untouched) and compiling it into a [`Tables`] snapshot.

use crate::batch::PortId;
use crate::ports::PortQueue;
use crate::tables::{Binding, Fib, Node, PortEntry, Route, RouteTarget, Tables};
use podswitch_packet::MacAddr;
use podswitch_proto::{
    ifname_problem, Ipv4Prefix, NodeSpec, Op, PortRole, PortSpec, RouteTarget as ProtoTarget,
    MTU_RANGE,
};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// A port as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortConfig {
    /// Dataplane id.
    pub id: PortId,
    /// As requested.
    pub spec: PortSpec,
    /// MAC of the device on the other side (the pod's, or the host tap's).
    pub peer_mac: MacAddr,
}

/// Everything the daemon has been told.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// Generation of the last applied transaction.
    pub generation: u64,
    /// Node addressing.
    pub node: Option<NodeSpec>,
    /// Ports by name.
    pub ports: BTreeMap<String, PortConfig>,
    /// Static routes.
    pub routes: BTreeMap<Ipv4Prefix, ProtoTarget>,
    /// Where the search for a free port id starts: ids are handed out round-robin so that a
    /// freed id is reused as late as possible.
    pub next_id: usize,
}

/// A port created for a transaction: its queues (one per worker) and the peer's MAC.
#[derive(Debug)]
pub struct CreatedPort {
    /// One queue per worker, in worker order.
    pub queues: Vec<Box<dyn PortQueue>>,
    /// MAC of the device on the other side.
    pub peer_mac: MacAddr,
    /// Whether the factory created a persistent kernel device for this port (rather than
    /// re-attaching to one that was there, or opening one that vanishes with its queues):
    /// undoing the transaction must release it, or it outlives the rollback.
    pub new_device: bool,
}

/// Creates the I/O side of ports (tap devices in the daemon; memory queues in tests).
pub trait PortFactory {
    /// Creates port `id` as `spec` says, for a node addressed as `node`.
    fn create(
        &mut self,
        id: PortId,
        spec: &PortSpec,
        node: &NodeSpec,
    ) -> Result<CreatedPort, String>;
}

/// What a successful transaction changed in the I/O world.
#[derive(Debug, Default)]
pub struct Changes {
    /// New ports and their queues.
    pub added: Vec<(PortId, Vec<Box<dyn PortQueue>>)>,
    /// Removed ports.
    pub removed: Vec<PortId>,
    /// Removed ports whose kernel device a port of the new configuration took over (same
    /// device name in the same namespace): their device must not be released with them.
    pub kept_devices: Vec<PortId>,
    /// Added ports whose persistent device this transaction created (see
    /// [`CreatedPort::new_device`]): a rollback releases them.
    pub new_devices: Vec<PortId>,
}

impl Changes {
    /// Undoes the creation of the added ports: releases the devices this transaction created
    /// and closes every queue.
    pub fn discard_added(&mut self) {
        for (id, queues) in self.added.drain(..) {
            release_if_new(&self.new_devices, id, queues);
        }
    }
}

fn release_if_new(new_devices: &[PortId], id: PortId, mut queues: Vec<Box<dyn PortQueue>>) {
    if new_devices.contains(&id) {
        if let Some(q) = queues.first_mut() {
            q.release_device();
        }
    }
    drop(queues);
}

impl Config {
    /// Applies `ops` in order. On error nothing is changed (ports created so far are dropped,
    /// which closes them, and the persistent devices created for them are released) and the
    /// error names the op and the object.
    ///
    /// With `replace`, the ops describe the whole configuration: it is built from nothing, an
    /// `add_port` identical to a port that exists keeps that port (same id, same queues: its
    /// traffic is not disturbed), and every port the ops do not keep is removed.
    pub fn apply(
        &mut self,
        ops: &[Op],
        replace: bool,
        max_ports: usize,
        factory: &mut dyn PortFactory,
    ) -> Result<Changes, String> {
        let mut next = if replace {
            Config {
                generation: self.generation,
                next_id: self.next_id,
                ..Config::default()
            }
        } else {
            self.clone()
        };
        let previous = replace.then_some(&self.ports);
        let mut changes = Changes::default();
        for (i, op) in ops.iter().enumerate() {
            if let Err(e) = next.apply_one(op, max_ports, factory, &mut changes, previous) {
                changes.discard_added();
                return Err(format!("op {} ({}): {e}", i + 1, describe(op)));
            }
        }
        if replace {
            for (name, old) in &self.ports {
                if next.ports.get(name).is_none_or(|p| p.id != old.id) {
                    changes.removed.push(old.id);
                }
            }
        }
        let old_by_id = |id: PortId| self.ports.values().find(|p| p.id == id);
        changes.kept_devices = changes
            .removed
            .iter()
            .copied()
            .filter(|&id| {
                old_by_id(id).is_some_and(|old| {
                    next.ports
                        .values()
                        .any(|p| p.id != id && device(&p.spec) == device(&old.spec))
                })
            })
            .collect();
        *self = next;
        Ok(changes)
    }

    fn apply_one(
        &mut self,
        op: &Op,
        max_ports: usize,
        factory: &mut dyn PortFactory,
        changes: &mut Changes,
        previous: Option<&BTreeMap<String, PortConfig>>,
    ) -> Result<(), String> {
        match op {
            Op::SetNode(node) => self.set_node(node),
            Op::AddPort(spec) => {
                let node = self
                    .node
                    .clone()
                    .ok_or("set_node must come before any port")?;
                self.check_new_port(spec, &node)?;
                if let Some(same) = previous
                    .and_then(|p| p.get(&spec.name))
                    .filter(|p| p.spec == *spec)
                {
                    self.ports.insert(spec.name.clone(), same.clone());
                    return Ok(());
                }
                // Ids freed by this transaction stay taken: workers poll those ports until
                // the transaction is published. In a replace, so do all the current ones.
                let mut reserved = changes.removed.clone();
                reserved.extend(previous.into_iter().flat_map(|p| p.values().map(|p| p.id)));
                let id = self.free_id(max_ports, &reserved)?;
                let created = factory.create(id, spec, &node)?;
                self.ports.insert(
                    spec.name.clone(),
                    PortConfig {
                        id,
                        spec: spec.clone(),
                        peer_mac: created.peer_mac,
                    },
                );
                if created.new_device {
                    changes.new_devices.push(id);
                }
                changes.added.push((id, created.queues));
                Ok(())
            }
            Op::DelPort { name } => {
                let port = self
                    .ports
                    .get(name)
                    .ok_or_else(|| format!("no port named {name:?}"))?;
                if let Some((prefix, _)) = self
                    .routes
                    .iter()
                    .find(|(_, t)| matches!(t, ProtoTarget::Port { port } if port == name))
                {
                    return Err(format!(
                        "route {prefix} still uses port {name:?}; delete the route first"
                    ));
                }
                // A port added earlier in this transaction never reaches a worker: dropping
                // its queues closes it. Any other port is torn down after publication.
                let id = port.id;
                if let Some(i) = changes.added.iter().position(|(added, _)| *added == id) {
                    let (_, queues) = changes.added.remove(i);
                    release_if_new(&changes.new_devices, id, queues);
                    changes.new_devices.retain(|&d| d != id);
                } else {
                    changes.removed.push(id);
                }
                self.ports.remove(name);
                Ok(())
            }
            Op::AddRoute(route) => {
                if let ProtoTarget::Port { port } = &route.target {
                    match self.ports.get(port).map(|p| &p.spec.role) {
                        Some(PortRole::Pod { .. }) => {}
                        Some(PortRole::Host { .. }) => {
                            return Err(format!("port {port:?} is the host port; use target host"))
                        }
                        None => return Err(format!("no port named {port:?}")),
                    }
                }
                self.routes
                    .insert(route.prefix.network(), route.target.clone());
                Ok(())
            }
            Op::DelRoute { prefix } => self
                .routes
                .remove(&prefix.network())
                .map(drop)
                .ok_or_else(|| format!("no static route for {}", prefix.network())),
        }
    }

    fn set_node(&mut self, node: &NodeSpec) -> Result<(), String> {
        let cidr = node.pod_cidr;
        if cidr.len > 30 {
            return Err(format!(
                "pod_cidr {cidr} is too small: it needs room for a gateway and pods"
            ));
        }
        let net = cidr.network();
        if !cidr.is_host(node.gateway) {
            return Err(format!(
                "gateway {} is not a host address of pod_cidr {net}",
                node.gateway
            ));
        }
        if let Some(mac) = node.gateway_mac.filter(|m| !m.is_unicast()) {
            return Err(format!("gateway_mac {mac} is not a unicast MAC"));
        }
        let has_host = self
            .ports
            .values()
            .any(|p| matches!(p.spec.role, PortRole::Host { .. }));
        if has_host && self.node.as_ref().is_some_and(|n| n != node) {
            return Err(
                "the node addressing cannot change while a host port exists; delete it first"
                    .into(),
            );
        }
        self.node = Some(NodeSpec {
            pod_cidr: net,
            ..node.clone()
        });
        Ok(())
    }

    fn check_new_port(&self, spec: &PortSpec, node: &NodeSpec) -> Result<(), String> {
        if self.ports.contains_key(&spec.name) {
            return Err(format!("port {:?} already exists", spec.name));
        }
        if !MTU_RANGE.contains(&spec.mtu) {
            return Err(format!(
                "mtu {} is out of range {}..={}",
                spec.mtu,
                MTU_RANGE.start(),
                MTU_RANGE.end()
            ));
        }
        if let Some(problem) = ifname_problem(&spec.name) {
            return Err(format!("port name: {problem}"));
        }
        if let Some(problem) = spec.netns.as_ref().and_then(|a| ifname_problem(&a.ifname)) {
            return Err(format!("netns.ifname: {problem}"));
        }
        match &spec.role {
            PortRole::Pod { mac, ip, .. } => {
                if !mac.is_unicast() {
                    return Err(format!("pod MAC {mac} is not a unicast MAC"));
                }
                if *ip == node.gateway || !node.pod_cidr.is_host(*ip) {
                    return Err(format!(
                        "pod IP {ip} must be a host address in pod_cidr {} other than the gateway",
                        node.pod_cidr
                    ));
                }
                if let Some(other) = self.ports.values().find(|p| pod_ip(&p.spec) == Some(*ip)) {
                    return Err(format!(
                        "pod IP {ip} is already bound to port {:?}",
                        other.spec.name
                    ));
                }
            }
            PortRole::Host { .. } => {
                if let Some(other) = self
                    .ports
                    .values()
                    .find(|p| matches!(p.spec.role, PortRole::Host { .. }))
                {
                    return Err(format!(
                        "there is already a host port ({:?})",
                        other.spec.name
                    ));
                }
            }
        }
        Ok(())
    }

    fn free_id(&mut self, max_ports: usize, reserved: &[PortId]) -> Result<PortId, String> {
        let mut used: std::collections::BTreeSet<PortId> =
            self.ports.values().map(|p| p.id).collect();
        used.extend(reserved);
        let limit = max_ports.min(usize::from(PortId::MAX) + 1);
        let id = (0..limit)
            .map(|i| ((self.next_id + i) % limit) as PortId)
            .find(|id| !used.contains(id))
            .ok_or_else(|| format!("all {max_ports} ports are in use (max_ports)"))?;
        self.next_id = usize::from(id) + 1;
        Ok(id)
    }

    /// Compiles the configuration into the tables the pipeline reads. Connected /32 routes of
    /// pod ports are added after static routes, so they win over a static route for the same
    /// prefix.
    pub fn compile(&self, default_mac: MacAddr) -> Tables {
        let mut ports: Vec<Option<PortEntry>> = Vec::new();
        let mut host_port = None;
        for p in self.ports.values() {
            let id = usize::from(p.id);
            if ports.len() <= id {
                ports.resize(id + 1, None);
            }
            let binding = match p.spec.role {
                PortRole::Pod { ip, .. } => Binding::Pod { ip },
                PortRole::Host { .. } => {
                    host_port = Some(p.id);
                    Binding::Host
                }
            };
            ports[id] = Some(PortEntry {
                name: p.spec.name.as_str().into(),
                peer_mac: p.peer_mac,
                binding,
                mtu: p.spec.mtu,
            });
        }
        let static_routes = self.routes.iter().filter_map(|(prefix, target)| {
            let target = match target {
                ProtoTarget::Port { port } => RouteTarget::Port(self.ports.get(port)?.id),
                ProtoTarget::Host => RouteTarget::Host,
                ProtoTarget::Unreachable => RouteTarget::Unreachable,
            };
            Some(Route {
                prefix: prefix.addr,
                len: prefix.len,
                target,
            })
        });
        let connected = self.ports.values().filter_map(|p| {
            pod_ip(&p.spec).map(|ip| Route {
                prefix: ip,
                len: 32,
                target: RouteTarget::Port(p.id),
            })
        });
        Tables {
            generation: self.generation,
            node: self.node.as_ref().map(|n| Node {
                gateway_ip: n.gateway,
                gateway_mac: n.gateway_mac.unwrap_or(default_mac),
            }),
            ports,
            host_port,
            fib: Fib::new(static_routes.chain(connected)),
        }
    }
}

/// The kernel device behind a port: (namespace path, or `None` for the daemon's own; name).
fn device(spec: &PortSpec) -> (Option<&str>, &str) {
    match &spec.netns {
        Some(a) => (Some(a.path.as_str()), a.ifname.as_str()),
        None => (None, spec.name.as_str()),
    }
}

/// The IP a pod port is bound to.
pub fn pod_ip(spec: &PortSpec) -> Option<Ipv4Addr> {
    match spec.role {
        PortRole::Pod { ip, .. } => Some(ip),
        PortRole::Host { .. } => None,
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::SetNode(n) => format!("set_node {}", n.pod_cidr),
        Op::AddPort(p) => format!("add_port {:?}", p.name),
        Op::DelPort { name } => format!("del_port {name:?}"),
        Op::AddRoute(r) => format!("add_route {}", r.prefix),
        Op::DelRoute { prefix } => format!("del_route {prefix}"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::ports::memory::MemoryQueue;
    use crate::ports::PortIo;
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
        ) -> Result<CreatedPort, String> {
            let peer_mac = match spec.role {
                PortRole::Pod { mac, .. } => mac,
                PortRole::Host { mac } => mac.unwrap_or(MacAddr::new(2, 0, 0, 0, 0, 0xfe)),
            };
            Ok(CreatedPort {
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
        ) -> Result<CreatedPort, String> {
            if self.fail_on.as_deref() == Some(spec.name.as_str()) {
                return Err(format!("cannot create {}", spec.name));
            }
            let peer_mac = match spec.role {
                PortRole::Pod { mac, .. } => mac,
                PortRole::Host { mac } => mac.unwrap_or(MacAddr::new(2, 0, 0, 0, 0, 0xfe)),
            };
            Ok(CreatedPort {
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
            netns: None,
        })
    }

    fn apply(c: &mut Config, ops: &[Op]) -> Result<Changes, String> {
        c.apply(ops, false, 16, &mut Memory { fail_on: None })
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
        let t = c.compile(MacAddr::new(2, 0x50, 0x53, 0, 0, 1));
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
        assert!(err.contains("cannot create b"), "{err}");
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
        assert!(err.contains("max_ports"), "{err}");
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
        assert!(err.contains("op 2"), "{err}");
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
}
